import { describe, expect, it } from 'vitest';
import { RequestMetrics } from './metrics.js';

describe('waypoint request metrics (Prometheus text)', () => {
  it('counts requests per label set with reporter="waypoint" and cumulative duration buckets', async () => {
    const m = new RequestMetrics();
    const base = {
      source: { principal: 'spiffe://cluster.local/ns/demo/sa/client', namespace: 'demo' },
      destination: { workload: 'users-v1' },
      service: { hostname: 'users.demo.svc.cluster.local', namespace: 'demo', name: 'users' },
      protocol: 'grpc' as const,
      grpcStatus: '0',
      responseFlags: '-',
    };
    m.record({ ...base, responseCode: 200, durationMs: 3 });
    m.record({ ...base, responseCode: 200, durationMs: 30 });
    m.record({ ...base, responseCode: 200, grpcStatus: '7', durationMs: 1 });
    expect(m.count({ reporter: 'waypoint', grpc_response_status: '0' })).toBe(2);
    expect(m.count({ grpc_response_status: '7', destination_service_name: 'users' })).toBe(1);
    const text = await m.render();
    expect(text).toContain('# TYPE istio_request_duration_milliseconds histogram');
    const bucket = (le: string) =>
      Number(
        text
          .split('\n')
          .find(
            (l) =>
              l.startsWith('istio_request_duration_milliseconds_bucket{') &&
              l.includes('grpc_response_status="0"') &&
              l.includes(`le="${le}"`),
          )
          ?.split(' ')
          .at(-1),
      );
    expect([bucket('1'), bucket('5'), bucket('25'), bucket('50'), bucket('+Inf')]).toEqual([0, 1, 1, 2, 2]);
    expect(text).toMatch(
      /istio_request_duration_milliseconds_sum\{[^}]*grpc_response_status="0"[^}]*\} 33\n/,
    );
    expect(text).toContain('source_workload="unknown"');
  });

  it('reports request and response body sizes as istio_request_bytes / istio_response_bytes histograms', async () => {
    const m = new RequestMetrics();
    const base = {
      source: { workload: 'client', namespace: 'demo' },
      destination: { workload: 'users-v1', namespace: 'demo' },
      service: { hostname: 'users.demo.svc.cluster.local', namespace: 'demo', name: 'users' },
      protocol: 'http' as const,
      grpcStatus: '',
      responseFlags: '-',
      responseCode: 200,
      durationMs: 2,
    };
    m.record({ ...base, requestBytes: 0, responseBytes: 700 });
    m.record({ ...base, requestBytes: 2000, responseBytes: 40 });
    const text = await m.render();
    const line = (name: string, suffix: string) =>
      text
        .split('\n')
        .find((l) => l.startsWith(`${name}${suffix}{`) && l.includes('request_protocol="http"'));
    expect(line('istio_request_bytes', '_sum')).toMatch(/ 2000$/);
    expect(line('istio_response_bytes', '_sum')).toMatch(/ 740$/);
    expect(line('istio_response_bytes', '_count')).toMatch(/ 2$/);
    const bucket = (name: string, le: string) =>
      text
        .split('\n')
        .find((l) => l.startsWith(`${name}_bucket{`) && l.includes(`le="${le}"`))
        ?.split(' ')
        .at(-1);
    expect([bucket('istio_request_bytes', '0.5'), bucket('istio_request_bytes', '2500')]).toEqual(['1', '2']);
    expect([bucket('istio_response_bytes', '50'), bucket('istio_response_bytes', '1000')]).toEqual([
      '1',
      '2',
    ]);
    expect(text).toContain('grpc_response_status=""');
  });
});
