// The composition root: the one place that wires the waypoint's layers together — HBONE termination
// (terminate.ts), protocol detection (detect.ts), HTTP/1.1 (http.ts) and HTTP/2 / gRPC (h2.ts) fronts,
// the request pipeline (request.ts: authz.ts → routes.ts → forward.ts → upstream.ts), opaque TCP
// (tcp.ts), metrics (metrics.ts) and the stats endpoint. docs/architecture.md §1 and §6.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Logger, pino } from 'pino';
import type { HboneDialer } from '../core/hbone/client-pool.js';
import { UnknownDestination } from '../core/hbone/errors.js';
import { HboneServer, type InboundConnect, canonicalIp } from '../core/hbone/server.js';
import type { HboneCertificate } from '../core/hbone/tls.js';
import { type SpiffeId, formatSpiffeId } from '../core/identity/spiffe.js';
import type { Waypoint as WaypointModel } from '../core/state/model.js';
import type { MeshState } from '../core/state/state.js';
import { FlowEvents } from '../core/telemetry/flow-events.js';
import { type PeerLabels, TrafficMetrics } from '../core/telemetry/metrics.js';
import { DEFAULT_ADMIN_PORT, WaypointAdmin, certificateDumpOf } from './admin.js';
import { RequestAuthorizer } from './authz.js';
import {
  type WaypointConfig,
  WaypointConfigError,
  type WaypointConfigInput,
  resolveConfig,
} from './config.js';
import { detectProtocol } from './detect.js';
import { H2Front } from './h2.js';
import { Http1Front } from './http.js';
import { RequestMetrics } from './metrics.js';
import { type TunnelContext, handleRequest, type RequestDeps } from './request.js';
import { Router } from './routes.js';
import { relayOpaque } from './tcp.js';
import { handleUpgrade } from './upgrade.js';
import { waypointDestination } from '../core/route/inbound.js';
import { tracingForWaypoint } from '../core/telemetry/telemetry-api.js';
import { DEFAULT_SAMPLING_PERCENT, type WaypointTracer, createTracer } from './tracing.js';
import { Upstream } from './upstream.js';
import { terminalLogStream } from '../core/telemetry/terminal-log.js';

/** The waypoint's own certificate (ca/client CertificateManager with impersonate:false, or a test CA). */
export interface WaypointCertificates {
  fetch(identity: SpiffeId): Promise<HboneCertificate>;
  close?(): void;
}

export interface WaypointDeps {
  state: MeshState;
  certificates: WaypointCertificates;
  /** HBONE client (core/hbone HboneClientPool). */
  hbone: HboneDialer & { close?(): void };
  logger?: Logger;
  /** Random source for endpoint and backend choice (tests pin it). */
  random?: () => number;
}

export class WaypointProxy {
  readonly config: WaypointConfig;
  readonly identity: SpiffeId;
  readonly metrics = new RequestMetrics();
  /** Istio's TCP metrics of the opaque TCP path (reporter="waypoint"), on the same registry. */
  readonly traffic = new TrafficMetrics({ component: 'waypoint', registry: this.metrics.registry });
  /** One event per request (method, path, status, deciding policy) for `ambit demo`'s flow view. */
  readonly flows = new FlowEvents();
  readonly hboneServer: HboneServer;
  private readonly log: Logger;
  private readonly authorizer: RequestAuthorizer;
  private readonly router: Router;
  private readonly upstream: Upstream;
  private readonly http1: Http1Front;
  private readonly h2: H2Front;
  private readonly requestDeps: RequestDeps;
  private stats: http.Server | undefined;
  private tracer: WaypointTracer | undefined;
  private stopTelemetryWatch: (() => void) | undefined;
  /** Bound ports (0 in the config → ephemeral, for tests); `admin` is set by runWaypoint when it serves one. */
  ports: { hbone: number; stats: number; admin?: number } = { hbone: 0, stats: 0 };
  /** Tunnels accepted so far, by detected protocol (admin and tests). */
  readonly tunnels = { http1: 0, http2: 0, tcp: 0 };

  constructor(
    input: WaypointConfigInput,
    private readonly deps: WaypointDeps,
  ) {
    this.config = resolveConfig(input);
    const c = this.config;
    this.log = deps.logger ?? pino({ level: c.logLevel, base: { component: 'waypoint' } });
    this.identity = { trustDomain: c.trustDomain, namespace: c.namespace, serviceAccount: c.name };
    const model = (): WaypointModel => this.model();
    this.authorizer = new RequestAuthorizer(
      deps.state,
      model,
      this.log.child({ scope: 'authz' }),
      c.rootNamespace,
    );
    this.router = new Router(deps.state, model, this.log.child({ scope: 'routes' }));
    this.upstream = new Upstream({
      state: deps.state,
      hbone: deps.hbone,
      identity: this.identity,
      hbonePort: c.upstreamHbonePort,
      ...(deps.random ? { random: deps.random } : {}),
    });
    this.requestDeps = {
      state: deps.state,
      authorizer: this.authorizer,
      router: this.router,
      upstream: this.upstream,
      metrics: this.metrics,
      accessLog: this.log.child({ scope: 'access' }),
      log: this.log.child({ scope: 'request' }),
      maxBufferedBodyBytes: c.maxBufferedBodyBytes,
      pathNormalization: c.pathNormalization,
      flows: this.flows,
    };
    const handle = (
      ctx: TunnelContext,
      req: http.IncomingMessage | import('node:http2').Http2ServerRequest,
      res: http.ServerResponse | import('node:http2').Http2ServerResponse,
    ) => handleRequest(this.requestDeps, ctx, req, res);
    this.http1 = new Http1Front(
      c.limits,
      handle,
      this.log.child({ scope: 'http1' }),
      (ctx, req, socket, held, resumeHttp) =>
        handleUpgrade(this.requestDeps, ctx, req, socket, held, resumeHttp),
    );
    this.h2 = new H2Front(c.limits, handle, this.log.child({ scope: 'http2' }));
    this.hboneServer = new HboneServer({
      certificateFor: () => deps.certificates.fetch(this.identity),
      // The authority is the ORIGINAL destination, not our address: it must be bound to this waypoint.
      checkAuthority: (authority) => {
        waypointDestination(deps.state, this.model(), authority);
      },
      onConnect: (stream, info) => this.onTunnel(stream, info),
      logger: this.log.child({ scope: 'hbone' }),
    });
  }

  /** This waypoint as the state declares it (its Gateway); a waypoint whose Gateway is gone serves nothing. */
  model(): WaypointModel {
    const c = this.config;
    const wp = this.deps.state.waypointByKey(`${c.namespace}/${c.name}`);
    if (wp) return wp;
    return {
      name: c.name,
      namespace: c.namespace,
      waypointFor: 'none',
      trafficType: 'none',
      hostname: `${c.name}.${c.namespace}.svc.cluster.local`,
    };
  }

  private sourceLabels(info: InboundConnect, ip: string): PeerLabels {
    const principal = formatSpiffeId(info.peerIdentity);
    const w = this.deps.state.workloadByIp(ip);
    // Labels from the workload only when it IS the identity that authenticated (no borrowed names).
    if (
      w &&
      w.serviceAccount === info.peerIdentity.serviceAccount &&
      w.namespace === info.peerIdentity.namespace
    ) {
      return {
        workload: w.workloadName || w.name,
        namespace: w.namespace,
        principal,
        canonicalService: w.canonicalName,
        canonicalRevision: w.canonicalRevision,
        cluster: this.config.clusterId,
      };
    }
    return { namespace: info.peerIdentity.namespace, principal };
  }

  private async onTunnel(_stream: unknown, info: InboundConnect): Promise<void> {
    const destination = waypointDestination(this.deps.state, this.model(), info.authority);
    if (!destination.service && !destination.workload) throw new UnknownDestination(info.authorityText);
    const sourceIp = canonicalIp(info.remoteAddress);
    const ctx: TunnelContext = {
      conn: {
        // istio/istio listener_waypoint.go `connect_terminate`: the source principal is the client's SPIFFE ID from the mTLS handshake.
        sourceIdentity: info.peerIdentity,
        sourceIp,
        destinationIp: destination.ip,
        destinationPort: destination.port,
      },
      destination,
      source: this.sourceLabels(info, sourceIp),
      sourcePrincipal: formatSpiffeId(info.peerIdentity),
    };
    const tunnel = info.accept();
    const { protocol, ended, head } = await detectProtocol(tunnel, this.config.limits.detectTimeoutMs);
    this.tunnels[protocol === 'http2' ? 'http2' : protocol === 'http1' ? 'http1' : 'tcp']++;
    if (protocol === 'http1') this.http1.serve(tunnel, ctx);
    else if (protocol === 'http2') this.h2.serve(tunnel, ctx);
    else
      void relayOpaque(
        {
          state: this.deps.state,
          authorizer: this.authorizer,
          upstream: this.upstream,
          log: this.log,
          traffic: this.traffic,
        },
        ctx,
        tunnel,
        head,
        ended,
      );
  }

  async start(): Promise<void> {
    const c = this.config;
    // Fetch our certificate first: a waypoint without its identity cannot serve anybody.
    await this.deps.certificates.fetch(this.identity);
    if (c.tracing) {
      const t = c.tracing;
      // Telemetry resources (telemetry.istio.io tracing[]) override the configured default, as they override
      // meshConfig in Istio; re-resolved when one changes, not per request.
      const state = this.deps.state;
      const resolve = () => tracingForWaypoint(state.telemetries(), c, c.rootNamespace);
      let telemetry = resolve();
      this.stopTelemetryWatch = state.onChange((changes) => {
        if (changes.some((x) => x.kind === 'telemetry')) telemetry = resolve();
      });
      // Istio names a proxy's spans after its workload: <canonical service>.<namespace>.
      this.tracer = await createTracer({
        endpoint: t.endpoint,
        samplingPercent: () =>
          telemetry.randomSamplingPercentage ?? t.samplingPercent ?? DEFAULT_SAMPLING_PERCENT,
        reportingDisabled: () => telemetry.disableSpanReporting === true,
        serviceName: `${c.name}.${c.namespace}`,
        resource: { 'k8s.namespace.name': c.namespace, 'istio.canonical_service': c.name },
      });
      this.requestDeps.tracer = this.tracer;
    }
    const a = await this.hboneServer.listen({ host: c.listenAddress, port: c.listenPort });
    this.ports.hbone = a.port;
    this.stats = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics' || path === '/stats/prometheus') {
        this.metrics.render().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
            res.end(text);
          },
          (err: Error) => {
            res.writeHead(500);
            res.end(err.message);
          },
        );
      } else if (path === '/flows') {
        // Like ztunnel's admin /flows, but this port listens on every address: local callers only.
        const peer = req.socket.remoteAddress ?? '';
        if (peer !== '127.0.0.1' && peer !== '::1' && peer !== '::ffff:127.0.0.1') {
          res.writeHead(403);
          res.end('flows: local callers only\n');
          return;
        }
        this.flows.serve(req, res);
      } else if (path === '/healthz/ready') {
        res.writeHead(200);
        res.end('ready\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.stats?.once('error', reject);
      this.stats?.listen({ host: c.statsAddress, port: c.statsPort }, resolve);
    });
    this.ports.stats = (this.stats.address() as AddressInfo).port;
    this.log.info(
      { identity: formatSpiffeId(this.identity), hbone: this.ports.hbone, stats: this.ports.stats },
      'waypoint ready',
    );
  }

  /** Stops accepting, gives live tunnels `drainMs` to finish, then closes everything. */
  async close(drainMs = 0): Promise<void> {
    if (drainMs > 0) {
      await Promise.race([
        this.hboneServer.close().catch(() => undefined),
        new Promise((r) => setTimeout(r, drainMs).unref()),
      ]);
    }
    this.hboneServer.destroy();
    this.http1.close();
    this.h2.close();
    await this.upstream.close();
    this.authorizer.close();
    this.router.close();
    this.deps.hbone.close?.();
    this.deps.certificates.close?.();
    this.stopTelemetryWatch?.();
    // Spans still batched are flushed (bounded by the exporter's own timeout).
    await this.tracer
      ?.close()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'tracing flush failed'));
    await new Promise<void>((resolve) => {
      if (!this.stats) return resolve();
      this.stats.closeAllConnections();
      this.stats.close(() => resolve());
    });
  }
}

export interface RunWaypointOptions extends WaypointConfigInput {
  /** Manifest directory that is the cluster (watched). Required unless `kubernetes`. */
  manifestsDir?: string;
  /** Read the state from the Kubernetes API instead (issue 7): in-cluster, or `kubeconfig`. */
  kubernetes?: boolean;
  /** With `kubernetes`: first-sync deadline in ms (core/sources/sync-timeout.ts; default 120 s). */
  syncTimeoutMs?: number;
  kubeconfig?: string;
  /** CA gRPC address host:port. */
  caAddress: string;
  /** PEM roots that signed the CA's serving certificate. */
  caRootFile: string;
  /** Token presented to the CA; it must map to this waypoint's own identity (no impersonation). */
  tokenFile: string;
  /**
   * Admin API (/config_dump, /ready, /quitquitquit) port, always on 127.0.0.1 (waypoint/admin.ts).
   * Default 15000, Envoy's admin port in Istio's waypoint pods; 0 = ephemeral.
   */
  adminPort?: number;
  /** Called on admin POST /quitquitquit (the CLI stops and exits); default: stop(). */
  onQuit?: () => void;
}

/** `ambit waypoint`: state from the manifest directory, its own certificate from the CA, then serve. */
export async function runWaypoint(
  opts: RunWaypointOptions,
): Promise<{ waypoint: WaypointProxy; admin: WaypointAdmin; stop(): Promise<void> }> {
  const { openStateSource } = await import('../core/sources/open.js');
  const { certificatesFromCa } = await import('../ca/client/from-files.js');
  const { HboneClientPool } = await import('../core/hbone/client-pool.js');
  const config = resolveConfig(opts);
  const logger = pino({ level: config.logLevel, base: { component: 'waypoint' } }, terminalLogStream(1));
  if (!opts.manifestsDir && !opts.kubernetes)
    throw new WaypointConfigError(
      'waypoint config: manifestsDir: a manifest directory (-m DIR) or --kubernetes is required',
    );
  const source = await openStateSource({
    ...(opts.kubernetes
      ? {
          kubernetes: {
            ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
            ...(opts.syncTimeoutMs ? { syncTimeoutMs: opts.syncTimeoutMs } : {}),
          },
        }
      : { manifestsDir: opts.manifestsDir! }),
    trustDomain: config.trustDomain,
    loggerFor: (scope) => logger.child({ scope }),
    configError: (m) => new WaypointConfigError(m),
    component: 'waypoint config',
  });
  await source.start();
  // A waypoint asks for its OWN identity with its own token: no ImpersonatedIdentity.
  const certificates = certificatesFromCa({
    address: opts.caAddress,
    rootFile: opts.caRootFile,
    tokenFile: opts.tokenFile,
    clusterId: config.clusterId,
    impersonate: false,
    logger: logger.child({ scope: 'certificates' }),
  });
  const manager = certificates.manager;
  const pool = new HboneClientPool({
    certificateFor: (id) => certificates.fetch(id),
    logger: logger.child({ scope: 'hbone-client' }),
  });
  const waypoint = new WaypointProxy(opts, { state: source.state, certificates, hbone: pool, logger });
  let draining = false;
  const stop = async (): Promise<void> => {
    // Admin stays up through the drain so /ready reports DRAINING (Envoy's admin does too).
    draining = true;
    await waypoint.close(5000);
    await admin.close();
    await source.stop();
  };
  const admin = new WaypointAdmin({
    identity: waypoint.identity,
    state: source.state,
    model: () => waypoint.model(),
    rootNamespace: waypoint.config.rootNamespace,
    config: waypoint.config,
    tunnels: () => ({ ...waypoint.tunnels }),
    // The manager's view (state, last error) and the certificate it serves right now.
    certificates: () => {
      const key = formatSpiffeId(waypoint.identity);
      const status = manager.describe().find((d) => d.identity === key);
      return [certificateDumpOf(waypoint.identity, status, manager.current(waypoint.identity))];
    },
    ready: () => !draining && waypoint.ports.hbone > 0,
    quit: () => (opts.onQuit ? opts.onQuit() : void stop()),
    logger: logger.child({ scope: 'admin' }),
  });
  try {
    await waypoint.start();
    waypoint.ports.admin = await admin.listen(opts.adminPort ?? DEFAULT_ADMIN_PORT);
  } catch (err) {
    await admin.close();
    await waypoint.close();
    await source.stop();
    throw err;
  }
  logger.info({ admin: `127.0.0.1:${waypoint.ports.admin}` }, 'waypoint admin listening');
  return { waypoint, admin, stop };
}
