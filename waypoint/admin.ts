// The waypoint's admin API. Istio's waypoint is Envoy, whose admin listens on 127.0.0.1:15000 in the
// waypoint pod (`istioctl proxy-config all <waypoint pod>` reads its /config_dump); ours has the same
// address and port, and the same rule: loopback only, because the dump names every service, route,
// policy and certificate the waypoint holds. The waypoint runs in its own pod (Deployment, demo pod
// netns), so 15000 does not meet ztunnel's admin there; `--admin-port` moves it when it must share.
//   GET  /config_dump   identity, bound services/workloads (authorities), routes as compiled, the L7
//                       AuthorizationPolicies in force, certificates (istio/ztunnel's certificate shape)
//   GET  /ready         Envoy admin /ready: LIVE once serving
//   POST /quitquitquit  graceful shutdown (drain, then exit), as Envoy's admin
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { type CertificateDump, describePem } from '../core/identity/certificate-dump.js';
import { formatSpiffeId, type SpiffeId } from '../core/identity/spiffe.js';
import { waypointPolicies } from '../core/policy/waypoint-policies.js';
import type { GatewayAddress, HttpRoute, L7AuthorizationPolicy, Waypoint } from '../core/state/model.js';
import type { MeshState } from '../core/state/state.js';
import { attachment, compileRule } from './routes.js';

/** Envoy's admin address: loopback only (istio/istio bootstrap `admin.address 127.0.0.1:15000`). */
export const ADMIN_ADDRESS = '127.0.0.1';
/** Envoy's admin port, which Istio's waypoint pods use. */
export const DEFAULT_ADMIN_PORT = 15000;

export class WaypointAdminError extends Error {
  readonly code = 'WAYPOINT_ADMIN_LISTEN';
  constructor(message: string) {
    super(message);
    this.name = 'WaypointAdminError';
  }
}

/** What the admin reads; the composition root (waypoint.ts runWaypoint) supplies it. */
export interface WaypointAdminSources {
  identity: SpiffeId;
  state: MeshState;
  /** This waypoint as the state declares it (WaypointProxy.model()). */
  model(): Waypoint;
  rootNamespace: string;
  config: unknown;
  /** Tunnels accepted so far by detected protocol. */
  tunnels(): Record<string, number>;
  certificates(): CertificateDump[];
  ready(): boolean;
  quit(): void;
  logger: Logger;
}

/** A certificate of ours as config_dump shows it: the state words istio/ztunnel uses, then the PEMs. */
export function certificateDumpOf(
  identity: SpiffeId,
  status: { state: 'Initializing' | 'Available' | 'Unavailable'; lastError?: string } | undefined,
  cert: { certChainPem: string[]; rootsPem: string[] } | undefined,
): CertificateDump {
  const state = status?.state ?? (cert ? 'Available' : 'Initializing');
  return {
    identity: formatSpiffeId(identity),
    state: state === 'Unavailable' && status?.lastError ? `Unavailable: ${status.lastError}` : state,
    certChain: cert ? cert.certChainPem.flatMap((p) => describePem(p)) : [],
    rootCerts: cert ? cert.rootsPem.flatMap((p) => describePem(p)) : [],
  };
}

const boundTo = (wp: Waypoint, addr: GatewayAddress | undefined): boolean =>
  addr !== undefined && addr.hostname === wp.hostname && addr.namespace === wp.namespace;

interface RouteDump {
  kind: HttpRoute['kind'];
  namespace: string;
  name: string;
  /** Why this waypoint serves it: `Service ns/name:port` or `Gateway ns/name`. */
  attachedTo: string[];
  rules?: unknown[];
  /** A route that does not compile is left out by the Router (logged); the dump says why. */
  error?: string;
}

function routeDump(r: HttpRoute, attachedTo: string[]): RouteDump {
  const base = { kind: r.kind, namespace: r.namespace, name: r.name, attachedTo };
  try {
    const rules = r.rules.map((raw, i) => {
      const { rule } = compileRule(r, raw, i);
      const matches = (raw as { matches?: unknown }).matches;
      return {
        ...rule,
        ...(matches !== undefined ? { matches } : {}),
        ...(rule.retry ? { retry: { ...rule.retry, codes: [...rule.retry.codes].sort() } } : {}),
      };
    });
    return { ...base, rules };
  } catch (err) {
    return { ...base, error: (err as Error).message };
  }
}

/** The `/config_dump` document: what this waypoint enforces right now. */
export function buildConfigDump(src: WaypointAdminSources) {
  const wp = src.model();
  const services = src.state.services().filter((s) => boundTo(wp, s.waypoint));
  const workloads = src.state.workloads().filter((w) => boundTo(wp, w.waypoint));
  const authorities = [
    ...services.flatMap((s) =>
      s.ports.flatMap((p) => [
        ...s.addresses.map((a) => `${a.includes(':') ? `[${a}]` : a}:${p.servicePort}`),
        `${s.hostname}:${p.servicePort}`,
      ]),
    ),
    // A pod-IP authority carries the pod's own port, so any port of a bound workload is served.
    ...workloads.flatMap((w) => w.addresses.map((a) => `${a.includes(':') ? `[${a}]` : a}:*`)),
  ];

  const routes: RouteDump[] = [];
  for (const r of src.state.routes()) {
    const attachedTo = new Set<string>();
    if (attachment(r, undefined, 0, wp) > 0) attachedTo.add(`Gateway ${wp.namespace}/${wp.name}`);
    for (const s of services) {
      for (const p of s.ports) {
        if (attachment(r, s, p.servicePort, wp) === 2)
          attachedTo.add(`Service ${s.namespace}/${s.name}:${p.servicePort}`);
      }
    }
    if (attachedTo.size > 0) routes.push(routeDump(r, [...attachedTo]));
  }

  // The same selection the RequestAuthorizer makes (core/policy/waypoint-policies.ts waypointPolicies): the
  // Gateway's and GatewayClass's policies for every destination, plus each bound Service's own.
  const appliesTo = new Map<string, { policy: L7AuthorizationPolicy; to: Set<string> }>();
  const policiesAll = waypointPolicies(src.state, wp, undefined, src.rootNamespace);
  const add = (p: L7AuthorizationPolicy, to: string) => {
    const key = `${p.namespace}/${p.name}`;
    const e = appliesTo.get(key) ?? { policy: p, to: new Set<string>() };
    e.to.add(to);
    appliesTo.set(key, e);
  };
  for (const p of policiesAll) add(p, 'every destination');
  for (const s of services) {
    for (const p of waypointPolicies(src.state, wp, s, src.rootNamespace)) {
      if (!policiesAll.includes(p)) add(p, `Service ${s.namespace}/${s.name}`);
    }
  }
  const policies = [...appliesTo.values()]
    .sort((a, b) =>
      `${a.policy.namespace}/${a.policy.name}`.localeCompare(`${b.policy.namespace}/${b.policy.name}`),
    )
    .map(({ policy: p, to }) => ({
      name: p.name,
      namespace: p.namespace,
      action: p.action,
      dryRun: p.dryRun,
      targetRefs: p.targetRefs,
      appliesTo: [...to],
      rules: p.rules,
    }));

  return {
    identity: formatSpiffeId(src.identity),
    waypoint: wp,
    bound: {
      services: services.map((s) => ({
        name: s.name,
        namespace: s.namespace,
        hostname: s.hostname,
        addresses: s.addresses,
        ports: s.ports,
      })),
      workloads: workloads.map((w) => ({ name: w.name, namespace: w.namespace, addresses: w.addresses })),
      authorities,
    },
    routes,
    policies,
    certificates: src.certificates(),
    tunnels: src.tunnels(),
    config: src.config,
    version: 'ambit',
  };
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export class WaypointAdmin {
  private readonly server: Server;
  port = 0;

  constructor(private readonly src: WaypointAdminSources) {
    this.server = createServer((req, res) => {
      try {
        this.handle(req, res);
      } catch (err) {
        src.logger.error({ err, path: req.url }, 'admin request failed');
        if (!res.headersSent) send(res, 500, `internal error: ${(err as Error).message}\n`);
        else res.destroy();
      }
    });
  }

  /** Binds 127.0.0.1:`port` (0 → ephemeral); never any other address. */
  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new WaypointAdminError(`waypoint admin: listen ${ADMIN_ADDRESS}:${port}: ${err.message}`));
      this.server.once('error', onError);
      this.server.listen(port, ADMIN_ADDRESS, () => {
        this.server.off('error', onError);
        this.port = (this.server.address() as AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/') {
      send(res, 200, 'ambit waypoint admin\n  /config_dump\n  /ready\n  /quitquitquit (POST)\n');
    } else if (path === '/config_dump') {
      send(res, 200, `${JSON.stringify(buildConfigDump(this.src), null, 2)}\n`, 'application/json');
    } else if (path === '/ready') {
      // Envoy's admin /ready: 200 LIVE while serving, 503 otherwise (here: draining).
      if (this.src.ready()) send(res, 200, 'LIVE\n');
      else send(res, 503, 'DRAINING\n');
    } else if (path === '/quitquitquit') {
      if (req.method !== 'POST') {
        send(res, 405, 'use POST\n');
        return;
      }
      send(res, 200, 'OK\n');
      this.src.logger.warn('shutdown requested through admin /quitquitquit');
      this.src.quit();
    } else {
      send(res, 404, 'not found\n');
    }
  }
}
