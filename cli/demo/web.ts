// The flow view's web server, run by the demo process on 127.0.0.1 (never on other addresses: it shows
// identities and lets anyone ask policy questions). Serves the bundled page (cli/demo/web/, no CDN) and
//   GET  /api/topology  workloads, services, policies, waypoints from the watched manifests + the demo's nodes
//   GET  /api/flows     Server-Sent Events: recent flow rows, then live ones (from the proxies' admin streams)
//   POST /api/explain   the "what if" box: core/policy/explain for a source workload and a destination
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { repoRoot } from '../../netns/topology.js';
import { ExplainInputError, explain } from '../../core/policy/explain.js';
import { ManifestSource } from '../../core/sources/manifests.js';
import { identityOf, workloadIdentity } from '../../core/state/state.js';
import { meshFindings } from '../common/findings.js';
import type { FlowCollector } from './flows.js';
import type { DemoState } from './state-file.js';

const ASSETS: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
};
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

export interface WebViewOptions {
  port: number;
  manifests: string;
  state: () => DemoState;
  collector: FlowCollector;
  log: Logger;
}

export interface ExplainBody {
  /** Source workload uid (`ns/name` accepted too). */
  source: string;
  /** `ip:port` or `svc.ns:port`. */
  destination: string;
  method?: string;
  path?: string;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}

async function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ExplainInputError(`request body larger than ${limit} bytes`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}

export async function startWebView(o: WebViewOptions): Promise<{ url: string; close(): Promise<void> }> {
  const source = new ManifestSource(o.manifests, { logger: o.log.child({ component: 'web-manifests' }) });
  await source.start();
  const assetDir = join(repoRoot(), 'cli', 'demo', 'web');

  const topology = () => {
    const st = source.state;
    const s = o.state();
    const podNode = new Map(s.pods.map((p) => [`${p.namespace}/${p.name}`, p.node]));
    return {
      captureMode: s.captureMode ?? null,
      captureFallbackReason: s.captureFallbackReason ?? null,
      waypoint: s.waypoint ?? null,
      manifestsDir: s.manifestsDir,
      nodes: s.nodes.map((n) => ({ name: n.name, ip: n.ip })),
      workloads: st.workloads().map((w) => ({
        uid: w.uid,
        name: w.name,
        namespace: w.namespace,
        node: w.node ?? podNode.get(`${w.namespace}/${w.name}`) ?? null,
        ip: w.addresses[0] ?? null,
        identity: workloadIdentity(w),
        enrolled: w.tunnelProtocol === 'HBONE' && !w.nativeTunnel,
        isWaypoint: w.nativeTunnel,
        waypoint: w.waypoint?.hostname ?? null,
        labels: w.labels ?? {},
      })),
      services: st.services().map((sv) => ({
        name: sv.name,
        namespace: sv.namespace,
        hostname: sv.hostname,
        vips: sv.addresses,
        ports: sv.ports,
        waypoint: sv.waypoint?.hostname ?? null,
        endpoints: st.workloadsOfService(sv).map((w) => `${w.namespace}/${w.name}`),
      })),
      policies: [
        ...st
          .authorizations()
          .map((p) => ({ name: p.name, namespace: p.namespace, action: p.action, at: 'ztunnel' })),
        ...st
          .l7Policies()
          .map((p) => ({ name: p.name, namespace: p.namespace, action: p.action, at: 'waypoint' })),
      ],
      errors: source.errors().map((e) => e.message),
      // Status conditions the mesh would write (embedded mode has no API server): the banner shows them.
      findings: meshFindings(source.translator, []),
    };
  };

  const doExplain = (b: ExplainBody) => {
    if (typeof b.source !== 'string' || typeof b.destination !== 'string') {
      throw new ExplainInputError(
        'explain: body needs "source" (workload) and "destination" (ip:port or svc.ns:port)',
      );
    }
    const st = source.state;
    const w = st.workloads().find((x) => x.uid === b.source || `${x.namespace}/${x.name}` === b.source);
    if (!w)
      throw new ExplainInputError(
        `explain: source workload ${JSON.stringify(b.source)} is not in the mesh state`,
      );
    const ip = w.addresses[0];
    if (!ip) throw new ExplainInputError(`explain: source ${w.namespace}/${w.name} has no address`);
    const enrolled = w.tunnelProtocol === 'HBONE';
    const request =
      b.method || b.path
        ? { ...(b.method ? { method: b.method } : {}), ...(b.path ? { path: b.path } : {}) }
        : undefined;
    return explain(st, {
      // An enrolled source reaches the destination over mTLS with its identity; a non-mesh one as plaintext.
      ...(enrolled ? { sourceIdentity: identityOf(w) } : {}),
      sourceIp: ip,
      destination: b.destination.trim(),
      ...(request ? { request: request as never } : {}),
    });
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const asset = ASSETS[url.pathname];
    if (req.method === 'GET' && asset) {
      try {
        const body = readFileSync(join(assetDir, asset));
        res.writeHead(200, {
          'content-type': TYPES[asset.split('.').pop() ?? ''] ?? 'application/octet-stream',
        });
        res.end(body);
      } catch (err) {
        json(res, 500, { error: `asset ${asset}: ${(err as Error).message}` });
      }
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/topology') return json(res, 200, topology());
    if (req.method === 'GET' && url.pathname === '/api/flows') {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      for (const row of o.collector.recent().slice(-500)) res.write(`data: ${JSON.stringify(row)}\n\n`);
      const onFlow = (row: unknown) => res.write(`data: ${JSON.stringify(row)}\n\n`);
      o.collector.on('flow', onFlow);
      const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
      res.on('close', () => {
        clearInterval(ping);
        o.collector.off('flow', onFlow);
      });
      return;
    }
    if (req.method === 'POST' && url.pathname === '/api/explain') {
      readBody(req)
        .then((text) => json(res, 200, doExplain(JSON.parse(text) as ExplainBody)))
        .catch((err: unknown) => {
          const bad = err instanceof ExplainInputError || err instanceof SyntaxError;
          json(res, bad ? 400 : 500, { error: (err as Error).message });
        });
      return;
    }
    json(res, 404, { error: `no such path ${url.pathname}` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(`web view: 127.0.0.1:${o.port} is in use (choose another with --port)`)
          : err,
      ),
    );
    server.listen(o.port, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await source.stop();
    },
  };
}
