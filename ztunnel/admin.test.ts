import { afterEach, describe, expect, it } from 'vitest';
import { fetchConfigDump, renderCertificates, renderWorkloads } from '../cli/ztunnel-config.js';
import { FlowEvents } from '../core/telemetry/flow-events.js';
import { TrafficMetrics } from '../core/telemetry/metrics.js';
import { AdminServer } from './admin.js';
import { LoggerFamily } from './logging.js';

let server: AdminServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(opts: { ready: boolean } = { ready: true }) {
  const logs = new LoggerFamily('info', { write() {} });
  let quits = 0;
  const metrics = new TrafficMetrics();
  const flows = new FlowEvents();
  server = new AdminServer({
    config: { node: 'node-a' },
    workloads: () => [
      {
        name: 'a',
        namespace: 'default',
        addresses: ['10.244.1.2'],
        node: 'node-a',
        tunnelProtocol: 'HBONE',
        serviceAccount: 'a',
        status: 'HEALTHY',
      },
    ],
    services: () => [],
    policies: () => [{ name: 'deny-all', namespace: 'default', action: 'DENY', scope: 'NAMESPACE' }],
    certificates: async () => [
      {
        identity: 'spiffe://cluster.local/ns/default/sa/a',
        state: 'Available',
        certChain: [
          {
            pem: '',
            serialNumber: 'ab12',
            validFrom: '2026-01-01T00:00:00.000Z',
            expirationTime: '2999-01-01T00:00:00.000Z',
          },
        ],
        rootCerts: [],
      },
    ],
    logger: logs.root,
    logLevel: () => logs.level,
    setLogLevel: (l) => logs.setLevel(l),
    metrics,
    flows,
    ready: () => opts.ready,
    quit: () => {
      quits++;
    },
  });
  await server.listen({
    adminAddress: '127.0.0.1',
    adminPort: 0,
    statsAddress: '127.0.0.1',
    statsPort: 0,
    readinessAddress: '127.0.0.1',
    readinessPort: 0,
  });
  return { ports: server.ports, logs, quits: () => quits, flows };
}

describe('ztunnel admin surfaces', () => {
  it('serves config_dump that ztunnel-config renders as istioctl-like tables', async () => {
    const { ports } = await start();
    const dump = await fetchConfigDump(`127.0.0.1:${ports.admin}`);
    expect(dump.policies[0]?.name).toBe('deny-all');
    const workloads = renderWorkloads(dump);
    expect(workloads.split('\n')[0]).toMatch(/^NAMESPACE\s+POD NAME\s+ADDRESS\s+NODE\s+WAYPOINT\s+PROTOCOL$/);
    expect(workloads).toMatch(/default\s+a\s+10\.244\.1\.2\s+node-a\s+None\s+HBONE/);
    expect(renderCertificates(dump)).toMatch(
      /spiffe:\/\/cluster.local\/ns\/default\/sa\/a\s+Leaf\s+Available\s+true\s+ab12/,
    );
  });

  it('changes the log level with POST /logging?level= and rejects unknown levels', async () => {
    const { ports, logs } = await start();
    const base = `http://127.0.0.1:${ports.admin}`;
    expect(await (await fetch(`${base}/logging`)).text()).toContain('info');
    const ok = await fetch(`${base}/logging?level=debug`, { method: 'POST' });
    expect(ok.status).toBe(200);
    expect(logs.level).toBe('debug');
    const bad = await fetch(`${base}/logging?level=loud`, { method: 'POST' });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('invalid level "loud"');
  });

  it('serves Prometheus text on /metrics and /stats/prometheus, readiness on /healthz/ready', async () => {
    const { ports, quits } = await start({ ready: false });
    for (const p of ['/metrics', '/stats/prometheus']) {
      const res = await fetch(`http://127.0.0.1:${ports.stats}${p}`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('istio_build{component="ztunnel"');
    }
    expect((await fetch(`http://127.0.0.1:${ports.readiness}/healthz/ready`)).status).toBe(503);
    expect((await fetch(`http://127.0.0.1:${ports.admin}/quitquitquit`, { method: 'POST' })).status).toBe(
      200,
    );
    expect(quits()).toBe(1);
  });

  it('streams connection events as JSON lines on /flows', async () => {
    const { ports, flows } = await start();
    const res = await fetch(`http://127.0.0.1:${ports.admin}/flows?history=0`);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const reader = res.body!.getReader();
    // Publish once the stream is attached (the listener registers when the response starts).
    await new Promise((r) => setTimeout(r, 50));
    flows.publish({
      id: 7,
      phase: 'open',
      time: new Date().toISOString(),
      direction: 'inbound',
      path: 'inbound',
      src: { addr: '10.0.0.1:1234' },
      dst: { addr: '10.0.0.2:15008' },
      securityPolicy: 'mutual_tls',
    });
    const { value } = await reader.read();
    const line = JSON.parse(new TextDecoder().decode(value).trim()) as { id: number; phase: string };
    expect(line).toMatchObject({ id: 7, phase: 'open' });
    await reader.cancel();
  });
});
