import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { AccessLog } from './access-log.js';
import { Telemetry } from './connection-report.js';
import { type FlowEvent, FlowEvents } from './flow-events.js';
import { TrafficMetrics } from './metrics.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  return { lines, logger };
}

describe('connection telemetry', () => {
  it('counts an mTLS connection with Istio names, labels and flipped source byte counters', async () => {
    const { lines, logger } = capture();
    const metrics = new TrafficMetrics();
    const flows = new FlowEvents();
    const seen: FlowEvent[] = [];
    flows.on('flow', (e) => seen.push(e));
    const t = new Telemetry(metrics, new AccessLog(logger), flows);
    const r = t.begin({
      reporter: 'source',
      path: 'outbound',
      srcAddr: '10.0.0.1:40000',
      dstAddr: '10.0.1.2:15008',
      hboneAddr: '10.0.1.2:8080',
      source: {
        workload: 'sleep',
        namespace: 'default',
        principal: 'spiffe://cluster.local/ns/default/sa/sleep',
      },
      destination: {
        workload: 'httpbin',
        namespace: 'default',
        principal: 'spiffe://cluster.local/ns/default/sa/httpbin',
      },
      service: { hostname: 'httpbin.default.svc.cluster.local', namespace: 'default', name: 'httpbin' },
      securityPolicy: 'mutual_tls',
    });
    r.open();
    r.requestBytes = 100;
    r.responseBytes = 7;
    r.finish();
    r.finish();
    const text = await metrics.render();
    const opened = text.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{'));
    expect(opened).toContain('reporter="source"');
    expect(opened).toContain('source_principal="spiffe://cluster.local/ns/default/sa/sleep"');
    expect(opened).toContain('destination_principal="spiffe://cluster.local/ns/default/sa/httpbin"');
    expect(opened).toContain('connection_security_policy="mutual_tls"');
    expect(opened).toContain('destination_service="httpbin.default.svc.cluster.local"');
    expect(opened).toContain('source_app="unknown"');
    expect(opened?.endsWith(' 1')).toBe(true);
    expect(text).toMatch(/istio_tcp_connections_closed_total\{[^}]*\} 1\n/);
    // reporter=source: sent = request bytes (istio/istio#32399).
    expect(text).toMatch(/istio_tcp_sent_bytes_total\{[^}]*\} 100\n/);
    expect(text).toMatch(/istio_tcp_received_bytes_total\{[^}]*\} 7\n/);
    const done = lines.find((l) => l.msg === 'connection complete');
    expect(done?.['src.identity']).toBe('spiffe://cluster.local/ns/default/sa/sleep');
    expect(done?.['dst.hbone_addr']).toBe('10.0.1.2:8080');
    expect(done?.bytes_sent).toBe(100);
    expect(done?.direction).toBe('outbound');
    expect(seen.map((e) => e.phase)).toEqual(['open', 'close']);
  });

  it('logs a refused connection at error with its flag and counts it as failed', async () => {
    const { lines, logger } = capture();
    const metrics = new TrafficMetrics();
    const t = new Telemetry(metrics, new AccessLog(logger), new FlowEvents());
    const r = t.begin({
      reporter: 'destination',
      path: 'inbound-passthrough',
      srcAddr: '10.0.0.9:1234',
      dstAddr: '10.0.1.2:8080',
      source: {},
      destination: { workload: 'httpbin' },
      securityPolicy: 'unknown',
    });
    r.finish('connection closed due to policy rejection: allow policies exist, but none allowed', 'DENY');
    const text = await metrics.render();
    expect(text).toMatch(/istio_tcp_connections_failed_total\{[^}]*response_flags="DENY"[^}]*\} 1/);
    const line = lines.find((l) => l.msg === 'connection complete');
    expect(line?.level).toBe(50);
    expect(line?.error).toContain('allow policies exist, but none allowed');
    expect(line?.['src.identity']).toBeUndefined();
  });
});
