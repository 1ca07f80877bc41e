// Realistic Kubernetes objects for the scale benchmark (bench/scale.bench.ts): what a Deployment's
// pod looks like on a real API server — ownerReferences, probes, resources, env, a projected service
// account volume, tolerations, four status conditions, a container status and the two managedFields
// entries (kube-controller-manager for the spec, kubelet for the status) — about 7.3 KB of JSON, plus
// one Service and one EndpointSlice (as the EndpointSlice controller writes it) per 5 pods.
export const PODS_PER_SERVICE = 5;
export const NODES = 100;
/** Pods per namespace (namespaces are labelled ambient). */
export const PODS_PER_NAMESPACE = 1000;

export const nodeName = (i: number) => `node-${i % NODES}`;
export const namespaceName = (i: number) => `ns-${Math.floor(i / PODS_PER_NAMESPACE)}`;
export const serviceName = (i: number) => `svc-${Math.floor(i / PODS_PER_SERVICE)}`;
export const podName = (i: number) =>
  `${serviceName(i)}-7d9c6b5f4-${(i % PODS_PER_SERVICE).toString(36)}x${i.toString(36)}`;
/** Pod IPs 10.128.0.0/9 by index (150k pods fit). */
export const podIp = (i: number) => `10.${128 + ((i >> 16) & 127)}.${(i >> 8) & 255}.${i & 255}`;

const ts = '2026-11-30T09:12:44Z';

/** Application settings from a ConfigMap, as most services carry a few. */
const CONFIG_ENV = [
  'DATABASE_URL',
  'CACHE_ADDRESS',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'FEATURE_FLAGS',
  'HTTP_TIMEOUT',
  'MAX_CONNECTIONS',
];

function managedFields(status: boolean): unknown[] {
  const spec = {
    manager: 'kube-controller-manager',
    operation: 'Update',
    apiVersion: 'v1',
    time: ts,
    fieldsType: 'FieldsV1',
    fieldsV1: {
      'f:metadata': {
        'f:generateName': {},
        'f:labels': { '.': {}, 'f:app': {}, 'f:pod-template-hash': {}, 'f:version': {} },
        'f:ownerReferences': { '.': {}, 'k:{"uid":"5c1e0e51-7d0c-4a8e-9b0c-2f1d5e4a3b21"}': {} },
      },
      'f:spec': {
        'f:containers': {
          'k:{"name":"app"}': {
            '.': {},
            'f:env': {
              '.': {},
              'k:{"name":"LOG_LEVEL"}': { '.': {}, 'f:name': {}, 'f:value': {} },
              ...Object.fromEntries(
                CONFIG_ENV.map((n) => [
                  `k:{"name":"${n}"}`,
                  { '.': {}, 'f:name': {}, 'f:valueFrom': { '.': {}, 'f:configMapKeyRef': {} } },
                ]),
              ),
              'k:{"name":"POD_NAME"}': {
                '.': {},
                'f:name': {},
                'f:valueFrom': { '.': {}, 'f:fieldRef': {} },
              },
              'k:{"name":"POD_NAMESPACE"}': {
                '.': {},
                'f:name': {},
                'f:valueFrom': { '.': {}, 'f:fieldRef': {} },
              },
            },
            'f:image': {},
            'f:imagePullPolicy': {},
            'f:livenessProbe': {
              '.': {},
              'f:failureThreshold': {},
              'f:httpGet': { '.': {}, 'f:path': {}, 'f:port': {}, 'f:scheme': {} },
              'f:periodSeconds': {},
              'f:successThreshold': {},
              'f:timeoutSeconds': {},
            },
            'f:name': {},
            'f:ports': {
              '.': {},
              'k:{"containerPort":8080,"protocol":"TCP"}': {
                '.': {},
                'f:containerPort': {},
                'f:name': {},
                'f:protocol': {},
              },
            },
            'f:readinessProbe': {
              '.': {},
              'f:failureThreshold': {},
              'f:httpGet': { '.': {}, 'f:path': {}, 'f:port': {}, 'f:scheme': {} },
              'f:periodSeconds': {},
              'f:successThreshold': {},
              'f:timeoutSeconds': {},
            },
            'f:resources': {
              '.': {},
              'f:limits': { '.': {}, 'f:memory': {} },
              'f:requests': { '.': {}, 'f:cpu': {}, 'f:memory': {} },
            },
            'f:terminationMessagePath': {},
            'f:terminationMessagePolicy': {},
          },
        },
        'f:dnsPolicy': {},
        'f:enableServiceLinks': {},
        'f:restartPolicy': {},
        'f:schedulerName': {},
        'f:securityContext': {},
        'f:serviceAccount': {},
        'f:serviceAccountName': {},
        'f:terminationGracePeriodSeconds': {},
      },
    },
  };
  const kubelet = {
    manager: 'kubelet',
    operation: 'Update',
    apiVersion: 'v1',
    time: ts,
    fieldsType: 'FieldsV1',
    fieldsV1: {
      'f:status': {
        'f:conditions': {
          'k:{"type":"ContainersReady"}': {
            '.': {},
            'f:lastProbeTime': {},
            'f:lastTransitionTime': {},
            'f:status': {},
            'f:type': {},
          },
          'k:{"type":"Initialized"}': {
            '.': {},
            'f:lastProbeTime': {},
            'f:lastTransitionTime': {},
            'f:status': {},
            'f:type': {},
          },
          'k:{"type":"PodReadyToStartContainers"}': {
            '.': {},
            'f:lastProbeTime': {},
            'f:lastTransitionTime': {},
            'f:status': {},
            'f:type': {},
          },
          'k:{"type":"Ready"}': {
            '.': {},
            'f:lastProbeTime': {},
            'f:lastTransitionTime': {},
            'f:status': {},
            'f:type': {},
          },
        },
        'f:containerStatuses': {},
        'f:hostIP': {},
        'f:hostIPs': {},
        'f:phase': {},
        'f:podIP': {},
        'f:podIPs': { '.': {}, 'k:{"ip":"10.128.0.1"}': { '.': {}, 'f:ip': {} } },
        'f:startTime': {},
      },
    },
    subresource: 'status',
  };
  return status ? [spec, kubelet] : [spec];
}

function condition(type: string, status: string) {
  return { type, status, lastProbeTime: null, lastTransitionTime: ts };
}

/** Pod `i`: Pending (scheduled, no IP yet) or Running with its IP and Ready. */
export function realisticPod(
  i: number,
  phase: 'Pending' | 'Running' = 'Running',
  ownerUid = '5c1e0e51-7d0c-4a8e-9b0c-2f1d5e4a3b21',
): Record<string, unknown> {
  const name = podName(i);
  const svc = serviceName(i);
  const ip = podIp(i);
  const node = nodeName(i);
  const hostIp = `172.16.${Math.floor((i % NODES) / 250)}.${(i % NODES) % 250}`;
  const running = phase === 'Running';
  const status: Record<string, unknown> = running
    ? {
        phase: 'Running',
        conditions: [
          condition('PodReadyToStartContainers', 'True'),
          condition('Initialized', 'True'),
          condition('Ready', 'True'),
          condition('ContainersReady', 'True'),
          condition('PodScheduled', 'True'),
        ],
        hostIP: hostIp,
        hostIPs: [{ ip: hostIp }],
        podIP: ip,
        podIPs: [{ ip }],
        startTime: ts,
        containerStatuses: [
          {
            name: 'app',
            state: { running: { startedAt: ts } },
            lastState: {},
            ready: true,
            restartCount: 0,
            image: `registry.example.com/shop/${svc}:1.24.3`,
            imageID: `registry.example.com/shop/${svc}@sha256:4f5c2e8a9b1d3c7e6f0a2b4c8d9e1f3a5b7c9d0e2f4a6b8c0d1e3f5a7b9c2d4e`,
            containerID: `containerd://${(i * 2654435761).toString(16).padStart(16, '0').repeat(4)}`,
            started: true,
          },
        ],
        qosClass: 'Burstable',
      }
    : { phase: 'Pending', conditions: [condition('PodScheduled', 'True')], qosClass: 'Burstable' };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      generateName: `${svc}-7d9c6b5f4-`,
      namespace: namespaceName(i),
      labels: { app: svc, 'pod-template-hash': '7d9c6b5f4', version: 'v1' },
      annotations: {
        'kubectl.kubernetes.io/restartedAt': ts,
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9090',
      },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: `${svc}-7d9c6b5f4`,
          uid: ownerUid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: managedFields(running),
    },
    spec: {
      volumes: [
        {
          name: 'kube-api-access-x7k2p',
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              {
                downwardAPI: {
                  items: [
                    { path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
                  ],
                },
              },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers: [
        {
          name: 'app',
          image: `registry.example.com/shop/${svc}:1.24.3`,
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
          env: [
            { name: 'LOG_LEVEL', value: 'info' },
            ...CONFIG_ENV.map((n) => ({
              name: n,
              valueFrom: { configMapKeyRef: { name: `${svc}-config`, key: n.toLowerCase() } },
            })),
            { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
            {
              name: 'POD_NAMESPACE',
              valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } },
            },
          ],
          resources: { limits: { memory: '256Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
          volumeMounts: [
            {
              name: 'kube-api-access-x7k2p',
              readOnly: true,
              mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            },
          ],
          livenessProbe: {
            httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' },
            timeoutSeconds: 1,
            periodSeconds: 10,
            successThreshold: 1,
            failureThreshold: 3,
          },
          readinessProbe: {
            httpGet: { path: '/ready', port: 8080, scheme: 'HTTP' },
            timeoutSeconds: 1,
            periodSeconds: 5,
            successThreshold: 1,
            failureThreshold: 3,
          },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: svc,
      serviceAccount: svc,
      nodeName: node,
      securityContext: {},
      schedulerName: 'default-scheduler',
      tolerations: [
        {
          key: 'node.kubernetes.io/not-ready',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
        {
          key: 'node.kubernetes.io/unreachable',
          operator: 'Exists',
          effect: 'NoExecute',
          tolerationSeconds: 300,
        },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status,
  };
}

/** Service of pods [5s, 5s+5). */
/** The ReplicaSet that owns the pods of Service `s` (the API server's garbage collector needs it). */
export function realisticReplicaSet(s: number): Record<string, unknown> {
  const first = s * PODS_PER_SERVICE;
  const name = serviceName(first);
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name: `${name}-7d9c6b5f4`, namespace: namespaceName(first), labels: { app: name } },
    spec: {
      replicas: PODS_PER_SERVICE,
      selector: { matchLabels: { app: name, 'pod-template-hash': '7d9c6b5f4' } },
    },
  };
}

export function realisticService(s: number): Record<string, unknown> {
  const first = s * PODS_PER_SERVICE;
  const name = serviceName(first);
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: namespaceName(first), labels: { app: name } },
    spec: {
      selector: { app: name },
      clusterIP: `10.96.${(s >> 8) & 255}.${s & 255}`,
      clusterIPs: [`10.96.${(s >> 8) & 255}.${s & 255}`],
      type: 'ClusterIP',
      sessionAffinity: 'None',
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
    },
  };
}

export function sliceEndpoint(i: number, ready = true): Record<string, unknown> {
  return {
    addresses: [podIp(i)],
    conditions: { ready, serving: ready, terminating: false },
    nodeName: nodeName(i),
    targetRef: { kind: 'Pod', namespace: namespaceName(i), name: podName(i), uid: `uid-${i}` },
  };
}

/** The EndpointSlice of Service `s`, with its 5 pods (those < `pods`). */
export function realisticSlice(s: number, pods: number): Record<string, unknown> {
  const first = s * PODS_PER_SERVICE;
  const name = serviceName(first);
  const endpoints: Record<string, unknown>[] = [];
  for (let i = first; i < Math.min(pods, first + PODS_PER_SERVICE); i++) endpoints.push(sliceEndpoint(i));
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${name}-x7f2k`,
      generateName: `${name}-`,
      namespace: namespaceName(first),
      labels: {
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        'kubernetes.io/service-name': name,
        app: name,
      },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': ts },
    },
    addressType: 'IPv4',
    endpoints,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}
