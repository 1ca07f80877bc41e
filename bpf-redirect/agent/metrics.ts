// The node agent's Prometheus endpoint (`--metrics-port`, default 15014 like istio-cni's monitoring
// port): the capture counters of the running backend and the capture self-check.
//   ambit_capture_bypass_packets_total      TCP packets of enrolled pods the node forwarded outside
//                                           the proxy (the tc egress audit, or the nft forward hook);
//                                           stays 0 while capture works — the chart alerts on any rise
//   ambit_capture_packets_total{reason}     every other kernel counter (assigned, spoofed, held, ...)
//   ambit_capture_uncapturable_pods         enrolled pods the agent cannot capture (traffic refused)
//   ambit_capture_info{mode}                1, labelled with the capture mode in use
import { createServer, type Server } from 'node:http';
import type { AgentStatus } from './agent.js';

export function renderMetrics(s: AgentStatus | undefined): string {
  if (!s) return '';
  const node = s.node.replaceAll('\\', '\\\\').replaceAll('"', '\\"');
  const lines = [
    '# HELP ambit_capture_bypass_packets_total TCP packets from enrolled pods that left outside the proxy (HBONE).',
    '# TYPE ambit_capture_bypass_packets_total counter',
    `ambit_capture_bypass_packets_total{node="${node}"} ${s.counters.capture_bypass ?? 0}`,
    '# HELP ambit_capture_packets_total Packets counted by the capture programs or rules, by reason.',
    '# TYPE ambit_capture_packets_total counter',
    ...Object.entries(s.counters)
      .filter(([k]) => k !== 'capture_bypass')
      .map(([k, v]) => `ambit_capture_packets_total{node="${node}",reason="${k}"} ${v}`),
    '# HELP ambit_capture_uncapturable_pods Enrolled pods the agent cannot capture (their traffic is refused).',
    '# TYPE ambit_capture_uncapturable_pods gauge',
    `ambit_capture_uncapturable_pods{node="${node}"} ${s.pods.filter((p) => p.uncapturable).length}`,
    '# HELP ambit_capture_info Capture mode of the node agent.',
    '# TYPE ambit_capture_info gauge',
    `ambit_capture_info{node="${node}",mode="${s.mode}"} 1`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Serves /metrics from the agent's last status; resolves once listening. */
export async function serveMetrics(
  agent: { status(): AgentStatus | undefined },
  port: number,
  host = '0.0.0.0',
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(renderMetrics(agent.status()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  server.unref();
  return server;
}
