// `ambit policy check` (and the demo's what-if API, which calls the same explain) against the data
// path, over generated mesh states and connections: for every connection from an enrolled pod, explain
// must name the destination endpoint, the waypoint pod and the verdict that the data path's own functions
// produce — ztunnel's outbound plan, the waypoint's tunnel check, request authorizer and endpoint pick, and
// the destination ztunnel's L4 authorization. Pure functions over one MeshState: no process is started.
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseAuthority } from '../core/hbone/connect-request.js';
import { LOOP_GUARD_PORTS } from '../core/hbone/settings.js';
import { compileAuthorizationPolicy } from '../core/policy/compile.js';
import type { Connection, RequestContext } from '../core/policy/evaluate.js';
import { ExplainInputError, type Explanation, explain } from '../core/policy/explain.js';
import type { AuthorizationPolicySpec } from '../core/policy/istio-api.js';
import { formatAddr } from '../core/route/address.js';
import { waypointDestination } from '../core/route/inbound.js';
import { inboundTarget } from '../core/route/inbound.js';
import { planOutbound } from '../core/route/outbound.js';
import type { GatewayAddress, Service, Waypoint, Workload } from '../core/state/model.js';
import { GATEWAY_NAME_LABEL, MeshState, identityOf, serviceKey } from '../core/state/state.js';
import { testWorkload } from './mesh-model.js';
import { RequestAuthorizer } from '../waypoint/authz.js';
import { endpointOf, selectEndpoint } from '../waypoint/upstream.js';
import { authorize } from '../ztunnel/deliver.js';

const log = pino({ level: 'silent' });
const NAMESPACES = ['shop', 'bank'] as const;
const ACCOUNTS = ['web', 'api', 'batch'] as const;
const NODES = ['node-a', 'node-b'] as const;
const VIP = '10.96.0.10';
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const GW: GatewayAddress = {
  namespace: 'shop',
  hostname: 'waypoint.shop.svc.cluster.local',
  hboneMtlsPort: 15008,
};
const GATEWAY: Waypoint = {
  name: 'waypoint',
  namespace: 'shop',
  waypointFor: 'all',
  trafficType: 'all',
  hostname: GW.hostname,
};

interface PodSpec {
  namespace: (typeof NAMESPACES)[number];
  account: string;
  node: (typeof NODES)[number];
  enrolled: boolean;
  healthy: boolean;
  inService: boolean;
  usesWaypoint: boolean;
  capacity: number;
}

interface PolicySpec {
  namespace: (typeof NAMESPACES)[number];
  action: 'ALLOW' | 'DENY';
  principals: string[];
  ports: string[];
}

interface L7Spec {
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  principals: string[];
  methods: string[];
}

interface Scenario {
  pods: PodSpec[];
  serviceUsesWaypoint: boolean;
  /** The Service VIP is also a pod's IP: the lookup order (VIP first, istio/ztunnel fetch_upstream) decides. */
  vipIsPodIp: boolean;
  waypointPods: { healthy: boolean; node: (typeof NODES)[number] }[];
  policies: PolicySpec[];
  l7: L7Spec[];
  source: number;
  toVip: boolean;
  target: number;
  method: 'GET' | 'DELETE';
  draw: number;
}

const principal = fc.constantFrom(
  ...NAMESPACES.flatMap((ns) => ACCOUNTS.map((sa) => `cluster.local/ns/${ns}/sa/${sa}`)),
  'cluster.local/ns/shop/sa/waypoint',
);

const scenario: fc.Arbitrary<Scenario> = fc.record({
  pods: fc.array(
    fc.record({
      namespace: fc.constantFrom(...NAMESPACES),
      account: fc.constantFrom(...ACCOUNTS),
      node: fc.constantFrom(...NODES),
      enrolled: fc.constantFrom(true, true, true, false),
      healthy: fc.constantFrom(true, true, false),
      inService: fc.boolean(),
      usesWaypoint: fc.constantFrom(false, false, true),
      capacity: fc.integer({ min: 1, max: 3 }),
    }),
    { minLength: 2, maxLength: 6 },
  ),
  serviceUsesWaypoint: fc.boolean(),
  vipIsPodIp: fc.constantFrom(false, false, false, true),
  waypointPods: fc.array(fc.record({ healthy: fc.boolean(), node: fc.constantFrom(...NODES) }), {
    maxLength: 2,
  }),
  policies: fc.array(
    fc.record({
      namespace: fc.constantFrom(...NAMESPACES),
      action: fc.constantFrom('ALLOW' as const, 'DENY' as const),
      principals: fc.array(principal, { minLength: 1, maxLength: 2 }),
      ports: fc.subarray([String(TARGET_PORT), '9090']),
    }),
    { maxLength: 3 },
  ),
  l7: fc.array(
    fc.record({
      action: fc.constantFrom('ALLOW' as const, 'DENY' as const, 'AUDIT' as const),
      principals: fc.array(principal, { minLength: 1, maxLength: 2 }),
      methods: fc.subarray(['GET', 'DELETE']),
    }),
    { maxLength: 2 },
  ),
  source: fc.nat(),
  toVip: fc.boolean(),
  target: fc.nat(),
  method: fc.constantFrom('GET' as const, 'DELETE' as const),
  draw: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
});

function pod(
  name: string,
  ip: string,
  p: Omit<PodSpec, 'inService' | 'usesWaypoint'>,
  extra: Partial<Workload>,
): Workload {
  return testWorkload(name, ip, {
    namespace: p.namespace,
    node: p.node,
    serviceAccount: p.account,
    tunnelProtocol: p.enrolled ? 'HBONE' : 'NONE',
    labels: { 'ambit.dev/capacity': String(p.capacity) },
    status: p.healthy ? 'HEALTHY' : 'UNHEALTHY',
    ...extra,
  });
}

const podIp = (i: number): string => `10.0.1.${i + 1}`;

function build(s: Scenario): { state: MeshState; pods: Workload[]; service: Service } {
  const state = new MeshState();
  const service: Service = {
    name: 'backend',
    namespace: 'shop',
    hostname: 'backend.shop.svc.cluster.local',
    addresses: [s.vipIsPodIp ? podIp(0) : VIP],
    ports: [{ servicePort: SERVICE_PORT, targetPort: TARGET_PORT, appProtocol: 'HTTP11' }],
    subjectAltNames: [],
    labels: {},
    ...(s.serviceUsesWaypoint ? { waypoint: GW } : {}),
  };
  state.upsertService(service);
  state.upsertWaypoint(GATEWAY);
  const pods = s.pods.map((p, i) =>
    pod(`pod-${i}`, podIp(i), p, {
      ...(p.inService
        ? { services: { [serviceKey(service)]: [{ servicePort: SERVICE_PORT, targetPort: TARGET_PORT }] } }
        : {}),
      ...(p.usesWaypoint ? { waypoint: GW } : {}),
    }),
  );
  for (const w of pods) state.upsertWorkload(w);
  for (const [i, wp] of s.waypointPods.entries()) {
    state.upsertWorkload(
      pod(
        `waypoint-${i}`,
        `10.0.9.${i + 1}`,
        {
          namespace: 'shop',
          account: 'waypoint',
          node: wp.node,
          enrolled: true,
          healthy: wp.healthy,
          capacity: 1,
        },
        { labels: { [GATEWAY_NAME_LABEL]: 'waypoint' } },
      ),
    );
  }
  s.policies.forEach((p, i) => {
    const spec: AuthorizationPolicySpec = {
      action: p.action,
      rules: [
        {
          from: [{ source: { principals: p.principals } }],
          ...(p.ports.length > 0 ? { to: [{ operation: { ports: p.ports } }] } : {}),
        },
      ],
    };
    const c = compileAuthorizationPolicy(
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `l4-${i}`, namespace: p.namespace },
        spec,
      },
      { rootNamespace: 'istio-system' },
    );
    if (c.l4) state.upsertAuthorization(c.l4);
  });
  s.l7.forEach((p, i) => {
    const c = compileAuthorizationPolicy(
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `l7-${i}`, namespace: 'shop' },
        spec: {
          action: p.action,
          targetRefs: [{ kind: 'Service', group: '', name: 'backend' }],
          rules: [
            {
              from: [{ source: { principals: p.principals } }],
              ...(p.methods.length > 0 ? { to: [{ operation: { methods: p.methods } }] } : {}),
            },
          ],
        },
      },
      { rootNamespace: 'istio-system' },
    );
    if (c.l7) state.upsertL7Policy(c.l7);
  });
  return { state, pods, service };
}

/** What the data path decides, hop by hop, with each component's own function. */
interface PathOutcome {
  allow: boolean;
  /** `ns/name` of the pod the bytes reach (undefined when refused before an endpoint is picked). */
  endpoint?: string;
  /** The waypoint pod IP the source ztunnel dials, when one is in the path. */
  waypointPod?: string;
  /** Where it was refused. */
  at?: 'source ztunnel' | 'waypoint' | 'destination ztunnel';
}

const nameOf = (w: Workload): string => `${w.namespace}/${w.name}`;

function dataPath(
  state: MeshState,
  source: Workload,
  dst: { ip: string; port: number },
  request: RequestContext,
  draw: number,
): PathOutcome {
  const random = (): number => draw;
  const plan = planOutbound(state, {
    source,
    dst,
    node: source.node,
    illegalPorts: LOOP_GUARD_PORTS,
    random,
  });
  const ctx = { state, log };
  const l4 = (destination: Workload, conn: Connection): PathOutcome => {
    // The destination ztunnel (ztunnel/inbound.ts → deliver.ts): port from the authority, then L4 policy.
    const allow = authorize(ctx, destination, conn).allow;
    return { allow, endpoint: nameOf(destination), ...(allow ? {} : { at: 'destination ztunnel' as const }) };
  };
  const srcConn = { sourceIdentity: identityOf(source), sourceIp: source.addresses[0]! };
  switch (plan.kind) {
    case 'refuse':
      return { allow: false, at: 'source ztunnel' };
    case 'passthrough':
      throw new Error('unknown destinations are not generated');
    case 'plaintext':
      return { allow: true, endpoint: nameOf(plan.destination) };
    case 'local':
      return l4(plan.destination, {
        ...srcConn,
        destinationIp: plan.target.ip,
        destinationPort: plan.target.port,
      });
    case 'hbone': {
      const authority = parseAuthority(plan.authority);
      if (!plan.waypoint) {
        const port = inboundTarget(state, plan.destination, authority).port;
        return l4(plan.destination, {
          ...srcConn,
          destinationIp: plan.destination.addresses[0]!,
          destinationPort: port,
        });
      }
      // The waypoint (waypoint/waypoint.ts onTunnel): the tunnel's destination, then the request's authorization.
      const wpPod = plan.nextHop.ip;
      const target = waypointDestination(state, GATEWAY, authority);
      const authorizer = new RequestAuthorizer(state, () => GATEWAY, log);
      try {
        const decision = authorizer.authorize(
          { ...srcConn, destinationIp: target.ip, destinationPort: target.port },
          request,
          target.service,
        );
        if (!decision.allow) return { allow: false, waypointPod: wpPod, at: 'waypoint' };
      } finally {
        authorizer.close();
      }
      // Its upstream (waypoint/request.ts endpointPicker without routes): then the destination ztunnel sees the waypoint.
      let ep: ReturnType<typeof endpointOf>;
      try {
        ep = target.service
          ? selectEndpoint(state, target.service, target.port, random)
          : endpointOf(target.workload!, target.port);
      } catch {
        return { allow: false, waypointPod: wpPod, at: 'waypoint' };
      }
      if (!ep.hbone) return { allow: true, endpoint: nameOf(ep.workload), waypointPod: wpPod };
      return {
        ...l4(ep.workload, {
          sourceIdentity: identityOf(plan.waypoint.pod),
          sourceIp: wpPod,
          destinationIp: ep.ip,
          destinationPort: ep.targetPort,
        }),
        waypointPod: wpPod,
      };
    }
  }
}

/** The same connection as `ambit policy check` reports it. */
function explained(
  state: MeshState,
  source: Workload,
  dst: { ip: string; port: number },
  request: RequestContext,
  draw: number,
): PathOutcome {
  let e: Explanation;
  try {
    e = explain(state, {
      sourceIdentity: identityOf(source),
      sourceIp: source.addresses[0]!,
      destination: formatAddr(dst.ip, dst.port),
      request,
      random: () => draw,
    });
  } catch (err) {
    // A service with no healthy endpoint: explain says so as an input error; the data path refuses.
    if (err instanceof ExplainInputError && /no healthy endpoints/.test(err.message)) {
      return { allow: false, at: 'source ztunnel' };
    }
    throw err;
  }
  const at = e.decidingEndpoint.startsWith('source ztunnel')
    ? 'source ztunnel'
    : e.enforcedAt === 'waypoint'
      ? 'waypoint'
      : 'destination ztunnel';
  const endpoint = at === 'destination ztunnel' ? e.decidingEndpoint : undefined;
  return {
    allow: e.decision.allow,
    ...(endpoint ? { endpoint } : {}),
    ...(e.waypoint?.address ? { waypointPod: e.waypoint.address } : {}),
    ...(e.decision.allow ? {} : { at }),
  };
}

describe('ambit policy check agrees with the data path', () => {
  it('on destination endpoint, waypoint pod and verdict, for generated meshes and connections', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const { state, pods, service } = build(s);
        const sources = pods.filter((w) => w.tunnelProtocol === 'HBONE' && w.status === 'HEALTHY');
        fc.pre(sources.length > 0);
        const source = sources[s.source % sources.length]!;
        const dst = s.toVip
          ? { ip: service.addresses[0]!, port: SERVICE_PORT }
          : {
              ip: pods[s.target % pods.length]!.addresses[0]!,
              port: s.target % 2 ? TARGET_PORT : SERVICE_PORT,
            };
        const request = { method: s.method, path: '/' };
        const path = dataPath(state, source, dst, request, s.draw);
        const told = explained(state, source, dst, request, s.draw);
        // A refusal names no endpoint on either side; an allowed or L4-denied one names the same pod.
        expect(told).toEqual(path);
      }),
      { numRuns: 400 },
    );
  });
});
