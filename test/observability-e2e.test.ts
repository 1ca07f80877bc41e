// Issue 18 items 7 and 8, through the real mesh (test/waypoint-world.ts: two node netns, eBPF capture into a
// real `ambit ztunnel` per node, a real `ambit waypoint`, real apps):
//  - Tracing: a client's W3C traceparent crosses ztunnel → waypoint → ztunnel → app; the waypoint exports
//    its span over OTLP/HTTP to a receiver (test/otlp-receiver.ts, decoding with the OTLP protos) as a child
//    of the client's span, and the app sees the waypoint's span as its parent.
//  - Prometheus: Debian's real `prometheus` scrapes both ztunnels and the waypoint, and evaluates the PromQL
//    of Istio's own Grafana dashboards (istio/istio manifests/addons/dashboards: ztunnel.libsonnet,
//    istio-mesh.libsonnet, istio-workload-dashboard.json, istio-service-dashboard.json) — each returns data.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceivedSpan } from './otlp-receiver.js';
import { waitReady } from './harness/processes.js';
import { VIP_PRODUCTS, VIP_USERS, WaypointWorld } from './waypoint-world.js';

const root = process.getuid?.() === 0;
const PROMETHEUS = '/usr/bin/prometheus';
const OTLP_PORT = 4318;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (n: number) => randomBytes(n).toString('hex');

describe.skipIf(!root)('observability through real ztunnels and the waypoint', () => {
  let world: WaypointWorld;
  let receiver: ChildProcess;
  const spans: ReceivedSpan[] = [];

  beforeAll(async () => {
    world = await WaypointWorld.create('ebpf', (t) => [
      '--tracing-endpoint',
      `http://${t.node('b').gateway}:${OTLP_PORT}/v1/traces`,
      // Only requests that arrive with a sampled traceparent are traced: the untraced case below checks it.
      '--tracing-sampling',
      '0',
    ]);
    // The collector stands on node b (the waypoint pod's gateway address), outside the mesh.
    receiver = world.topo.spawnNode(world.topo.node('b').ns, 'test/otlp-receiver.ts', [String(OTLP_PORT)]);
    receiver.on('message', (m: { spans?: ReceivedSpan[] }) => {
      if (m.spans) spans.push(...m.spans);
    });
    await waitReady(receiver, 'otlp receiver');
  }, 120_000);

  afterAll(async () => {
    await world?.teardown();
  }, 60_000);

  describe('tracing', () => {
    it("exports the waypoint's span over OTLP, parented to the client's traceparent, and the app is its child", async () => {
      const traceId = hex(16);
      const clientSpan = hex(8);
      const c = world.client('a1');
      // First a request with no trace context: sampling 0 % leaves it untraced.
      const plain = await c.http(`http://${VIP_USERS}/untraced`);
      expect(plain.statuses).toEqual({ 200: 1 });
      const r = await c.http(`http://${VIP_USERS}/traced?x=1`, {
        headers: { traceparent: `00-${traceId}-${clientSpan}-01` },
      });
      expect(r.statuses).toEqual({ 200: 1 });
      const appSaw = (JSON.parse(r.first?.body ?? '{}') as { headers: Record<string, string> }).headers;

      // The batch exporter flushes every 5 s (OTel default): wait, bounded, for the span.
      const until = Date.now() + 20_000;
      let span: ReceivedSpan | undefined;
      while (!span && Date.now() < until) {
        span = spans.find((s) => s.traceId === traceId);
        if (!span) await sleep(200);
      }
      expect(span, 'no span of the trace reached the OTLP receiver in 20 s').toBeDefined();
      const s = span as ReceivedSpan;
      expect(s.parentSpanId).toBe(clientSpan);
      expect(s.kind).toBe(2); // SERVER
      expect(s.name).toBe(`${VIP_USERS}/traced`);
      expect(s.attributes['http.request.method']).toBe('GET');
      expect(s.attributes['http.response.status_code']).toBe(200);
      expect(s.attributes['istio.source_principal']).toBe('spiffe://cluster.local/ns/demo/sa/client');
      expect(s.resource['service.name']).toBe('waypoint.demo');

      // Through ztunnel b to the app: same trace, the waypoint's span as the parent, sampled.
      expect(appSaw.traceparent).toBe(`00-${traceId}-${s.spanId}-01`);
      // Unsampled by the 0 % root sampler: no span for the request without a trace context.
      expect(spans.some((x) => String(x.attributes['url.path']).startsWith('/untraced'))).toBe(false);
    }, 60_000);

    it('keeps the trace id of an unsampled traceparent towards the app and exports nothing for it', async () => {
      const traceId = hex(16);
      const r = await world
        .client('a1')
        .http(`http://${VIP_USERS}/unsampled`, { headers: { traceparent: `00-${traceId}-${hex(8)}-00` } });
      expect(r.statuses).toEqual({ 200: 1 });
      const appSaw = (JSON.parse(r.first?.body ?? '{}') as { headers: Record<string, string> }).headers;
      expect(appSaw.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
      // A sampled request after it: once that one is exported, the unsampled one would have been too.
      const marker = hex(16);
      await world
        .client('a1')
        .http(`http://${VIP_USERS}/marker`, { headers: { traceparent: `00-${marker}-${hex(8)}-01` } });
      const until = Date.now() + 20_000;
      while (!spans.some((s) => s.traceId === marker) && Date.now() < until) await sleep(200);
      expect(spans.some((s) => s.traceId === marker)).toBe(true);
      expect(spans.some((s) => s.traceId === traceId)).toBe(false);
    }, 60_000);
  });

  describe('tracing with the Telemetry API', () => {
    it('a Telemetry resource targeting the waypoint sets the sampling percentage: 100 % traces requests without a trace context', async () => {
      world.apply(
        'telemetry.yaml',
        'apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata:\n  name: trace-all\n  namespace: demo\nspec:\n  targetRefs:\n    - { group: gateway.networking.k8s.io, kind: Gateway, name: waypoint }\n  tracing:\n    - randomSamplingPercentage: 100\n',
      );
      try {
        // The waypoint picks the file up through its manifest watch; each try is a fresh path (bounded).
        const until = Date.now() + 30_000;
        let traced: ReceivedSpan | undefined;
        for (let i = 0; !traced && Date.now() < until; i++) {
          const path = `/by-telemetry-${i}`;
          const r = await world.client('a1').http(`http://${VIP_USERS}${path}`);
          expect(r.statuses).toEqual({ 200: 1 });
          const seen = Date.now() + 7000;
          while (!traced && Date.now() < seen) {
            traced = spans.find((x) => x.attributes['url.path'] === path);
            if (!traced) await sleep(250);
          }
        }
        expect(traced, 'no span for a request without traceparent after Telemetry set 100 %').toBeDefined();
        // A root span: the waypoint started the trace.
        expect(traced?.parentSpanId).toBe('');
      } finally {
        world.remove('telemetry.yaml');
      }
    }, 60_000);
  });

  describe.skipIf(!existsSync(PROMETHEUS))("Prometheus with Istio's dashboard queries", () => {
    let prom: ChildProcess | undefined;
    let promDir = '';
    const nodeA = () => world.topo.node('a').ns;

    /** Instant query through the Prometheus HTTP API (curl inside node a, where Prometheus listens). */
    const query = async (
      q: string,
    ): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
      const out = await world.topo.exec(nodeA(), 'curl', [
        '-sS',
        '--max-time',
        '5',
        '--get',
        '--data-urlencode',
        `query=${q}`,
        'http://127.0.0.1:9090/api/v1/query',
      ]);
      const r = JSON.parse(out.stdout) as { status: string; error?: string; data?: { result: [] } };
      if (r.status !== 'success') throw new Error(`${q}: ${r.error}`);
      return r.data?.result ?? [];
    };

    beforeAll(async () => {
      promDir = mkdtempSync(join(tmpdir(), 'ambit-prom-'));
      const t = world.topo;
      // What Istio's sample Prometheus (manifests/addons/values-prometheus.yaml, kubernetes-pods job) attaches to
      // every series from Kubernetes service discovery: pod, namespace and the pod's labels (app=ztunnel).
      // Static targets with those labels stand for the discovery; the scrape itself is real.
      const target = (addr: string, labels: Record<string, string>) =>
        `      - targets: ['${addr}']\n        labels: ${JSON.stringify(labels)}\n`;
      writeFileSync(
        join(promDir, 'prometheus.yml'),
        `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: kubernetes-pods\n    metrics_path: /stats/prometheus\n    static_configs:\n${target(`${t.node('a').ip}:15020`, { pod: 'ztunnel-a', namespace: 'istio-system', app: 'ztunnel' })}${target(`${t.node('b').ip}:15020`, { pod: 'ztunnel-b', namespace: 'istio-system', app: 'ztunnel' })}${target(`${t.pod('wp').ip}:15020`, { pod: 'waypoint-0', namespace: 'demo', app: 'waypoint' })}`,
      );
      prom = t.spawnIn(nodeA(), PROMETHEUS, [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        '--web.listen-address=127.0.0.1:9090',
        '--log.level=warn',
      ]);
      const until = Date.now() + 30_000;
      for (;;) {
        const ok = await world.topo
          .exec(nodeA(), 'curl', ['-sf', '--max-time', '2', 'http://127.0.0.1:9090/-/ready'])
          .then(() => true)
          .catch(() => false);
        if (ok) break;
        if (Date.now() > until || prom.exitCode !== null)
          throw new Error('prometheus did not become ready in 30 s');
        await sleep(300);
      }
    }, 60_000);

    afterAll(() => {
      if (prom && prom.exitCode === null) prom.kill('SIGKILL');
      if (promDir) rmSync(promDir, { recursive: true, force: true });
    });

    it('every ztunnel, mesh, workload and service dashboard query returns data', async () => {
      const c = world.client('a1');
      const failures: string[] = [];
      const traffic = async () => {
        const h = await c.http(`http://${VIP_USERS}/dash`, { count: 5, concurrency: 2 });
        if (h.statuses[200] !== 5) failures.push(`http ${JSON.stringify(h.statuses)}`);
        const g = await c.grpc(`${VIP_PRODUCTS}:9000`, 'getProduct', 'p1');
        if (!g.ok) failures.push(`grpc ${g.code} ${g.details}`);
        // ztunnel counts a connection's bytes when it closes (as istio/ztunnel does): the pooled clients above
        // keep theirs open, so one request per connection as well.
        const raw = await c.raw(
          VIP_USERS,
          80,
          'GET /close HTTP/1.1\r\nhost: users\r\nconnection: close\r\n\r\n',
        );
        if (!raw.text.startsWith('HTTP/1.1 200')) failures.push(`raw ${raw.text.slice(0, 40)}`);
      };
      // Traffic keeps flowing while Prometheus scrapes every second (irate() reads the last two samples);
      // bounded in time.
      const until = Date.now() + 90_000;
      let stop = false;
      const background = (async () => {
        while (!stop && Date.now() < until) await traffic();
      })();
      try {
        await dashboards(until);
      } finally {
        stop = true;
        await background;
      }
      expect(failures).toEqual([]);
    }, 150_000);

    async function dashboards(until: number): Promise<void> {
      // The dashboard's template variables, evaluated by their own queries (Grafana query_result()), once the
      // first scrapes are in.
      let ns: string[] = [];
      while (!ns.includes('demo') && Date.now() < until) {
        await sleep(500);
        ns = (
          await query(
            'sum(istio_requests_total) by (destination_workload_namespace) or sum(istio_tcp_sent_bytes_total) by (destination_workload_namespace)',
          )
        ).map((r) => r.metric.destination_workload_namespace ?? '');
      }
      expect(ns).toContain('demo');
      // The namespace can show up first through ztunnel's TCP series; the waypoint's request series may
      // land a scrape later.
      const usersQuery =
        'sum(istio_requests_total{destination_service_name="users"}) by (destination_workload, source_workload)';
      let users = await query(usersQuery);
      while (users.length === 0 && Date.now() < until) {
        await sleep(500);
        users = await query(usersQuery);
      }
      expect(users.length).toBeGreaterThan(0);
      const workload = users[0]!.metric.destination_workload!;
      const srcwl = users[0]!.metric.source_workload!;
      const service = `users.demo.svc.cluster.local`;
      const vars: Record<string, string> = {
        // Grafana's $__rate_interval: at least 4 scrape intervals.
        __rate_interval: '20s',
        namespace: 'demo',
        workload,
        srcns: 'demo',
        srcwl,
        dstns: 'demo',
        dstwl: workload,
        service,
      };
      const expand = (q: string, qrep: string) =>
        q.replace(/\$(\w+)/g, (_m, v: string) => (v === 'qrep' ? qrep : (vars[v] ?? `$${v}`)));

      // ztunnel.libsonnet, every panel whose metric a ztunnel serves. Not here: container_memory_working_set_bytes
      // and container_cpu_usage_seconds_total (the kubelet's cAdvisor, selected by container="istio-proxy",
      // the name the charts give), istio_dns_requests_total (Ambit has no DNS proxy) and
      // istio_xds_connection_terminations_total (a series appears only once a discovery stream has ended).
      const ztunnel = [
        'sum by (tag) (istio_build{component="ztunnel"})',
        'sum by (pod) (rate(istio_tcp_connections_opened_total{pod=~"ztunnel-.*"}[$__rate_interval]))',
        '-sum by (pod) (rate(istio_tcp_connections_closed_total{pod=~"ztunnel-.*"}[$__rate_interval]))',
        'sum by (pod) (rate(istio_tcp_sent_bytes_total{pod=~"ztunnel-.*"}[$__rate_interval]))',
        'sum by (pod) (rate(istio_tcp_received_bytes_total{pod=~"ztunnel-.*"}[$__rate_interval]))',
        // With the state from the discovery tier (the test worlds' default; AMBIT_TEST_STATE=manifests reads files).
        ...(process.env.AMBIT_TEST_STATE === 'manifests'
          ? []
          : ['sum by (url) (irate(istio_xds_message_total{pod=~"ztunnel-.*"}[$__rate_interval]))']),
        'sum by (pod) (workload_manager_active_proxy_count{pod=~"ztunnel-.*"})',
        'sum by (pod) (workload_manager_pending_proxy_count{pod=~"ztunnel-.*"})',
        'sum by (pod) (istio_tcp_connections_opened_total{app="ztunnel"}) - sum by (pod) (istio_tcp_connections_closed_total{app="ztunnel"})',
        'sum by (pod) (process_open_fds{app="ztunnel"})',
        'sum by (pod) (istio_tcp_sockets_open{app="ztunnel"})',
      ];
      // istio-mesh.libsonnet (reporter=~"source|waypoint": ztunnel's source side and the waypoint).
      const mesh = [
        'round(sum (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval])), 0.01)',
        'sum (rate(istio_requests_total{reporter=~"source|waypoint",response_code!~"5.."}[$__rate_interval])) / sum (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval]))',
        'round(sum (rate(istio_requests_total{reporter=~"source|waypoint",response_code=~"4.."}[$__rate_interval])), 0.01)or vector(0)',
        'round(sum (rate(istio_requests_total{reporter=~"source|waypoint",response_code=~"5.."}[$__rate_interval])), 0.01)or vector(0)',
        'label_join(sum by (destination_workload,destination_workload_namespace,destination_service) (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval])), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
        'label_join(histogram_quantile(0.5, sum by (le,destination_workload,destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint"}[$__rate_interval]))), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
        'label_join(histogram_quantile(0.99, sum by (le,destination_workload,destination_workload_namespace) (rate(istio_request_duration_milliseconds_bucket{reporter=~"source|waypoint"}[$__rate_interval]))), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
        'label_join(sum by (destination_workload,destination_workload_namespace) (rate(istio_requests_total{reporter=~"source|waypoint",response_code!~"5.."}[$__rate_interval]))/sum by (destination_workload,destination_workload_namespace) (rate(istio_requests_total{reporter=~"source|waypoint"}[$__rate_interval])), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
        'label_join(sum by (destination_workload,destination_workload_namespace,destination_service) (rate(istio_tcp_received_bytes_total{reporter=~"source|waypoint"}[$__rate_interval])), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
        'label_join(sum by (destination_workload,destination_workload_namespace,destination_service) (rate(istio_tcp_sent_bytes_total{reporter=~"source|waypoint"}[$__rate_interval])), "destination_workload_var", ".", "destination_workload", "destination_workload_namespace")',
        'sum by (component,tag) (istio_build)',
      ];
      // istio-workload-dashboard.json / istio-service-dashboard.json panels on "$qrep" (the Reporter picker):
      // L7 request panels with the reporter of ambient L7 metrics, the waypoint; L4 panels with ztunnel's.
      const l7 = [
        'round(sum(irate(istio_requests_total{reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload"}[$__rate_interval])), 0.001)',
        'sum(irate(istio_requests_total{reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload",response_code!~"5.*"}[$__rate_interval])) / sum(irate(istio_requests_total{reporter=~"$qrep",destination_workload_namespace=~"$namespace",destination_workload=~"$workload"}[$__rate_interval]))',
        '(histogram_quantile(0.50, sum(irate(istio_request_duration_milliseconds_bucket{reporter=~"$qrep",destination_workload=~"$workload", destination_workload_namespace=~"$namespace"}[$__rate_interval])) by (le)) / 1000) or histogram_quantile(0.50, sum(irate(istio_request_duration_seconds_bucket{reporter=~"$qrep",destination_workload=~"$workload", destination_workload_namespace=~"$namespace"}[$__rate_interval])) by (le))',
        'round(sum(irate(istio_requests_total{connection_security_policy="mutual_tls", destination_workload_namespace=~"$namespace", destination_workload=~"$workload", reporter=~"$qrep", source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, source_workload_namespace, response_code), 0.001)',
        'histogram_quantile(0.50, sum(irate(istio_request_bytes_bucket{reporter=~"$qrep", connection_security_policy="mutual_tls", destination_workload=~"$workload", destination_workload_namespace=~"$namespace", source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, source_workload_namespace, le))',
        'histogram_quantile(0.99, sum(irate(istio_response_bytes_bucket{reporter=~"$qrep", connection_security_policy="mutual_tls", destination_workload=~"$workload", destination_workload_namespace=~"$namespace", source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, source_workload_namespace, le))',
        'round(sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])), 0.001)',
        'sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service",response_code!~"5.*"}[$__rate_interval])) / (sum(irate(istio_requests_total{reporter=~"$qrep",destination_service="$service"}[$__rate_interval])) or on () vector(1))',
        'histogram_quantile(0.50, sum(irate(istio_request_bytes_bucket{reporter=~"$qrep", connection_security_policy="mutual_tls", destination_service="$service", source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, source_workload_namespace, le))',
        'histogram_quantile(0.50, sum(irate(istio_response_bytes_bucket{reporter=~"$qrep", connection_security_policy="mutual_tls", destination_service="$service", source_workload=~"$srcwl", source_workload_namespace=~"$srcns"}[$__rate_interval])) by (source_workload, source_workload_namespace, le))',
      ];
      const l4 = [
        'sum(irate(istio_tcp_sent_bytes_total{reporter=~"$qrep", destination_workload_namespace=~"$namespace", destination_workload=~"$workload"}[$__rate_interval])) + sum(irate(istio_tcp_received_bytes_total{reporter=~"$qrep", destination_workload_namespace=~"$namespace", destination_workload=~"$workload"}[$__rate_interval]))',
        'sum(irate(istio_tcp_received_bytes_total{reporter=~"$qrep", destination_service="$service"}[$__rate_interval]))',
        'sum(irate(istio_tcp_sent_bytes_total{reporter=~"$qrep", destination_service="$service"}[$__rate_interval]))',
      ];
      const all = [
        ...ztunnel.map((q) => expand(q, '')),
        ...mesh.map((q) => expand(q, '')),
        ...l7.map((q) => expand(q, 'waypoint')),
        ...l4.map((q) => expand(q, 'source|destination')),
      ];
      expect(all.every((q) => !q.includes('$'))).toBe(true);

      const empty = new Map<string, string>();
      do {
        empty.clear();
        for (const q of all) {
          const r = await query(q);
          // Data = at least one series with a number (NaN is what a quantile of no traffic gives).
          if (!r.some((x) => Number.isFinite(Number(x.value[1]))))
            empty.set(q, JSON.stringify(r).slice(0, 200));
        }
        if (empty.size > 0) await sleep(1000);
      } while (empty.size > 0 && Date.now() < until);
      expect(Object.fromEntries(empty)).toEqual({});

      // Both nodes' ztunnels are in the per-pod panels; the waypoint's request sizes are the POST bodies' (0)
      // and the echo app's JSON answers (> 0).
      const pods = (await query(expand(ztunnel[1]!, ''))).map((r) => r.metric.pod).sort();
      expect(pods).toEqual(['ztunnel-a', 'ztunnel-b']);
      const respSum = await query(
        `sum(istio_response_bytes_sum{reporter="waypoint",destination_service="${service}"})`,
      );
      expect(Number(respSum[0]?.value[1])).toBeGreaterThan(0);
      const active = await query('sum by (pod) (workload_manager_active_proxy_count{pod="ztunnel-b"})');
      expect(Number(active[0]?.value[1])).toBeGreaterThanOrEqual(3); // b1, b2, b3 are served on node b
    }
  });
});
