// ztunnel's three small HTTP surfaces, as istio/ztunnel src/admin.rs, src/metrics/server.rs and
// src/readiness/server.rs lay them out:
//   127.0.0.1:15000  /config_dump, /logging, /quitquitquit, /flows (ours: live connection events)
//   0.0.0.0:15020    /metrics and /stats/prometheus
//   0.0.0.0:15021    /healthz/ready
// The admin port stays on localhost: config_dump lists every local workload and certificate.
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { CertificateDump } from '../core/identity/certificate-dump.js';
import type { FlowEvents } from '../core/telemetry/flow-events.js';
import type { TrafficMetrics } from '../core/telemetry/metrics.js';

/** What the admin surface reads; the composition root (ztunnel.ts) supplies it. */
export interface AdminSources {
  config: unknown;
  workloads(): unknown[];
  services(): unknown[];
  policies(): unknown[];
  certificates(): Promise<CertificateDump[]>;
  logger: Logger;
  /** Current level in Istio's words (off|error|warn|info|debug|trace). */
  logLevel(): string;
  /** Changes the level of every ztunnel logger (pino children do not follow their parent). */
  setLogLevel(level: string): void;
  metrics: TrafficMetrics;
  flows: FlowEvents;
  ready(): boolean;
  /** Graceful shutdown (drain, then exit). */
  quit(): void;
}

// The certificate description moved to core/identity/certificate-dump.ts (the waypoint's admin uses it too);
// re-exported so ztunnel's composition root keeps importing it from here.
export { type CertDumpEntry, type CertificateDump, describePem } from '../core/identity/certificate-dump.js';

export const LOG_LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'] as const;

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, `${JSON.stringify(value, null, 2)}\n`, 'application/json');
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export interface AdminAddresses {
  adminAddress: string;
  adminPort: number;
  statsAddress: string;
  statsPort: number;
  readinessAddress: string;
  readinessPort: number;
}

export class AdminServer {
  private readonly admin: Server;
  private readonly stats: Server;
  private readonly readiness: Server;
  /** Bound ports (useful when configured as 0). */
  ports = { admin: 0, stats: 0, readiness: 0 };

  constructor(private readonly src: AdminSources) {
    this.admin = createServer((req, res) => {
      this.handleAdmin(req, res).catch((err: unknown) => {
        this.src.logger.error({ err, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, `internal error: ${String(err)}\n`);
        else res.destroy();
      });
    });
    this.stats = createServer((req, res) => {
      this.handleStats(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, `internal error: ${String(err)}\n`);
      });
    });
    this.readiness = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (path !== '/healthz/ready') return send(res, 404, 'not found\n');
      if (this.src.ready()) send(res, 200, 'ready\n');
      else send(res, 503, 'not ready\n');
    });
  }

  async listen(a: AdminAddresses): Promise<void> {
    this.ports.admin = await listen(this.admin, a.adminAddress, a.adminPort);
    this.ports.stats = await listen(this.stats, a.statsAddress, a.statsPort);
    this.ports.readiness = await listen(this.readiness, a.readinessAddress, a.readinessPort);
  }

  async close(): Promise<void> {
    await Promise.all(
      [this.admin, this.stats, this.readiness].map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
            // Streaming /flows clients keep connections open; end them so close() returns.
            s.closeAllConnections();
          }),
      ),
    );
  }

  private async handleStats(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/metrics' && path !== '/stats/prometheus') return send(res, 404, 'not found\n');
    const body = await this.src.metrics.render();
    send(res, 200, body, this.src.metrics.contentType);
  }

  private async handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    switch (url.pathname) {
      case '/':
        return send(
          res,
          200,
          'ambit ztunnel admin\n  /config_dump\n  /logging[?level=info]\n  /quitquitquit (POST)\n  /flows (ndjson stream)\n',
        );
      case '/config_dump':
        return sendJson(res, 200, {
          workloads: this.src.workloads(),
          services: this.src.services(),
          policies: this.src.policies(),
          certificates: await this.src.certificates(),
          config: this.src.config,
          version: 'ambit',
        });
      case '/logging': {
        const level = url.searchParams.get('level');
        if (level !== null) {
          if (req.method !== 'POST') return send(res, 405, 'use POST to change the log level\n');
          if (!(LOG_LEVELS as readonly string[]).includes(level)) {
            return send(res, 400, `invalid level "${level}": one of ${LOG_LEVELS.join(', ')}\n`);
          }
          this.src.setLogLevel(level);
          this.src.logger.warn({ level }, 'log level changed through admin');
        }
        return send(res, 200, `current log level is ${this.src.logLevel()}\n`);
      }
      case '/quitquitquit':
        if (req.method !== 'POST') return send(res, 405, 'use POST\n');
        send(res, 200, 'shutting down\n');
        this.src.quit();
        return;
      case '/flows':
        this.src.flows.serve(req, res);
        return;
      default:
        return send(res, 404, 'not found\n');
    }
  }
}
