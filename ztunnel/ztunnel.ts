// The composition root: the one place that wires ztunnel's layers together — state, certificates,
// the HBONE server and client pool, the three capture listeners, telemetry, admin, policy re-checks
// and drain. Every other file gets what it needs passed in (linkerd2-proxy style: "small layers composed in one
// place", like linkerd2-proxy's app crate and istio/ztunnel src/app.rs).
import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import { certificatesFromCa } from '../ca/client/from-files.js';
import { HboneClientPool } from '../core/hbone/client-pool.js';
import { HboneServer } from '../core/hbone/server.js';
import type { HboneCertificate } from '../core/hbone/tls.js';
import { type SpiffeId, formatSpiffeId, parseSpiffeId } from '../core/identity/spiffe.js';
import type { Workload } from '../core/state/model.js';
import { socketAddr } from '../core/route/address.js';
import { type MeshState, type StateChange, identityOf, workloadIdentity } from '../core/state/state.js';
import { AccessLog } from '../core/telemetry/access-log.js';
import { Telemetry } from '../core/telemetry/connection-report.js';
import { FlowEvents } from '../core/telemetry/flow-events.js';
import { TrafficMetrics } from '../core/telemetry/metrics.js';
import {
  registerGauge,
  registerProcessMetrics,
  registerTallyCounter,
} from '../core/telemetry/process-metrics.js';
import { AdminServer, type CertificateDump, describePem } from './admin.js';
import { ConfigError, type ZtunnelConfig, illegalPorts } from './config.js';
import { ConnectionManager } from './connection-manager.js';
import { transparentSocketFactory } from './dial.js';
import { type Acceptor, Drain } from './drain.js';
import { messageOf } from './errors.js';
import type { CaptureContext, CaptureKind } from './capture.js';
import { handleInbound, ztunnelAuthorityCheck } from './inbound.js';
import { type CapturedConnection, handleInboundPlaintext } from './inbound-passthrough.js';
import { LoggerFamily } from './logging.js';
import { type HboneDialer, type OutboundContext, handleOutbound } from './outbound.js';
import { tuneZtunnelProcess } from './runtime.js';
import { TransparentListener } from './transparent-listener.js';
import { type OpenStateSourceOptions, openStateSource } from '../core/sources/open.js';

/** Workload certificates (ca/client CertificateManager, or a test double holding real certs). */
export interface CertificateProvider {
  /** The current certificate for `identity`, fetching (CSR → CA) when missing or due. */
  fetch(identity: SpiffeId): Promise<HboneCertificate>;
  /** Stop fetching/rotating for an identity no local workload has any more. */
  forget?(identity: SpiffeId): void;
  /** Stop rotation timers. */
  close?(): void;
}

export interface ZtunnelDeps {
  state: MeshState;
  certificates: CertificateProvider;
  /** The HBONE client pool (core/hbone HboneClientPool behind the outbound path's narrow interface). */
  hbone: HboneDialer & { close?(): Promise<void> | void; connectionCount?: number };
  logs?: LoggerFamily;
  /** Called after a drain triggered by SIGTERM or /quitquitquit. Default: process.exit. */
  exit?: (code: number) => void;
  /** When false, the state is not yet synced; readiness waits for it. */
  stateReady?: () => boolean;
  /** The discovery (WDS) client's tallies, when the state comes from the discovery tier. */
  discovery?: { messages: ReadonlyMap<string, number>; terminations: ReadonlyMap<string, number> };
}

interface CertState {
  identity: string;
  state: 'Initializing' | 'Available' | string;
  cert?: HboneCertificate;
}

/** The capture interface's listener as the drain sees it: stop accepting now, connections stay. */
function acceptorOf(l: TransparentListener): Acceptor {
  return {
    stopAccepting: () => {
      // close() resolves only once every accepted socket is gone; the drain owns those, so only
      // the listening socket is closed here (synchronously, inside close()).
      void l.close();
    },
  };
}

/** The capture interface's context in the data path's terms. */
function captured(socket: net.Socket, c: CaptureContext): CapturedConnection {
  return {
    socket,
    originalDst: socketAddr(c.originalDst.address, c.originalDst.port),
    source: socketAddr(c.source.address, c.source.port),
  };
}

export class Ztunnel {
  readonly logs: LoggerFamily;
  readonly metrics = new TrafficMetrics({ component: 'ztunnel' });
  readonly flows = new FlowEvents();
  readonly connections: ConnectionManager;
  readonly admin: AdminServer;
  readonly hboneServer: HboneServer;
  readonly drain: Drain;
  private readonly ctx: OutboundContext;
  private readonly outbound: TransparentListener;
  private readonly plaintext: TransparentListener;
  private readonly inbound: TransparentListener;
  private readonly certs = new Map<string, CertState>();
  /** Pods that left the mesh whose connections are running out their drain deadline. */
  private readonly drainingPods = new Set<string>();
  private ready = false;
  private unsubscribe: (() => void) | undefined;
  private readonly log;
  /** Bound ports (configured 0 → ephemeral, for tests). */
  ports = { outbound: 0, inboundPlaintext: 0, inbound: 0 };

  constructor(
    readonly config: ZtunnelConfig,
    private readonly deps: ZtunnelDeps,
  ) {
    this.logs = deps.logs ?? new LoggerFamily(config.logLevel);
    this.log = this.logs.child({ scope: 'ztunnel' });
    this.connections = new ConnectionManager(this.logs.child({ scope: 'connections' }));
    const telemetry = new Telemetry(
      this.metrics,
      new AccessLog(this.logs.child({ scope: 'access' })),
      this.flows,
    );
    this.ctx = {
      state: deps.state,
      config,
      illegalPorts: illegalPorts(config),
      telemetry,
      connections: this.connections,
      log: this.logs.child({ scope: 'proxy' }),
      accepting: () => !this.drain.draining,
      hbone: deps.hbone,
    };
    const run = (what: string, p: Promise<void>): void => {
      p.catch((err: unknown) => this.log.error({ err: messageOf(err) }, `${what} failed`));
    };
    // The three capture listeners (ztunnel/capture.ts interface): eBPF sk_assign steering and the
    // nftables TPROXY fallback both deliver here, with localAddress = original destination.
    const listener = (kind: CaptureKind, port: number): TransparentListener => {
      const l = new TransparentListener({
        kind,
        port,
        host: config.listenAddress,
        transparent: config.transparent,
        logger: this.logs.child({ scope: 'capture' }),
      });
      l.on('rejected', (r) =>
        this.log.warn({ kind: r.kind, reason: r.reason, error: r.message }, 'captured connection refused'),
      );
      l.on('error', (err) => this.log.error({ kind, err: err.message }, 'capture listener failed'));
      return l;
    };
    this.outbound = listener('outbound', config.outboundPort);
    this.outbound.on('connection', (socket, c) =>
      run('outbound', handleOutbound(this.ctx, captured(socket, c))),
    );
    this.plaintext = listener('inbound-plaintext', config.inboundPlaintextPort);
    this.plaintext.on('connection', (socket, c) =>
      run('inbound plaintext', handleInboundPlaintext(this.ctx, captured(socket, c))),
    );
    this.hboneServer = new HboneServer({
      // No SNI: the certificate is the one of the pod this connection was addressed to.
      certificateFor: (local) => this.certificateForIp(local.address),
      onConnect: (stream, info) => handleInbound(this.ctx, stream, info),
      // A service-hostname authority (east-west gateway form) is resolved by handleInbound.
      checkAuthority: ztunnelAuthorityCheck,
      logger: this.logs.child({ scope: 'hbone' }),
    });
    this.inbound = listener('inbound-hbone', config.inboundPort);
    this.inbound.on('connection', (socket) => this.hboneServer.serve(socket));
    this.drain = new Drain({
      deadlineMs: config.drainDeadlineMs,
      connections: this.connections,
      acceptors: () => [this.outbound, this.plaintext, this.inbound].map(acceptorOf),
      setReady: (r) => {
        this.ready = r;
      },
      log: this.logs.child({ scope: 'drain' }),
    });
    this.registerDashboardGauges();
    this.admin = new AdminServer({
      config,
      workloads: () => deps.state.workloads(),
      services: () =>
        deps.state.services().map((s) => ({ ...s, endpoints: deps.state.workloadsOfService(s).length })),
      policies: () => deps.state.authorizations(),
      certificates: async () => this.certificateDump(),
      logger: this.log,
      logLevel: () => this.logs.level,
      setLogLevel: (l) => this.logs.setLevel(l),
      metrics: this.metrics,
      flows: this.flows,
      ready: () => this.ready && (deps.stateReady?.() ?? true),
      quit: () => {
        void this.terminate('admin /quitquitquit');
      },
    });
  }

  /**
   * Gauges of Istio's ztunnel dashboard ("Workload Manager", "Resource Usage"), read at scrape time. istio/ztunnel
   * counts a pod's proxy as pending until it serves; here a local enrolled pod is served once its identity's
   * certificate is Available, so pending = local workloads still waiting for one.
   */
  private registerDashboardGauges(): void {
    const r = this.metrics.registry;
    registerProcessMetrics(r);
    const pending = (): number =>
      this.localWorkloads().filter((w) => this.certs.get(workloadIdentity(w))?.state !== 'Available').length;
    registerGauge(r, 'workload_manager_active_proxy_count', 'Local workloads this ztunnel serves', () =>
      Math.max(0, this.localWorkloads().length - pending()),
    );
    registerGauge(
      r,
      'workload_manager_pending_proxy_count',
      'Local workloads not yet served (certificate pending)',
      pending,
    );
    const d = this.deps.discovery;
    if (d) {
      // Istio's ztunnel dashboard "XDS Pushes" / "XDS Connections" panels.
      registerTallyCounter(
        r,
        'istio_xds_message_total',
        'Total number of xDS messages received',
        'url',
        d.messages,
      );
      registerTallyCounter(
        r,
        'istio_xds_connection_terminations_total',
        'Total number of xDS stream terminations',
        'reason',
        d.terminations,
      );
    }
  }

  /** Local enrolled workloads: the identities this ztunnel serves and fetches certificates for. */
  localWorkloads(): Workload[] {
    return this.deps.state
      .workloadsOnNode(this.config.node)
      .filter((w) => w.tunnelProtocol === 'HBONE' && w.networkMode !== 'HOST_NETWORK');
  }

  private async certificateForIp(ip: string): Promise<HboneCertificate | undefined> {
    const w = this.deps.state.workloadByIp(ip);
    if (!w || w.node !== this.config.node || w.tunnelProtocol !== 'HBONE') return undefined;
    return this.certificateFor(identityOf(w));
  }

  private async certificateFor(id: SpiffeId): Promise<HboneCertificate> {
    const key = formatSpiffeId(id);
    const entry = this.certs.get(key) ?? { identity: key, state: 'Initializing' };
    this.certs.set(key, entry);
    try {
      const cert = await this.deps.certificates.fetch(id);
      entry.cert = cert;
      entry.state = 'Available';
      return cert;
    } catch (err) {
      entry.state = `Unavailable: ${messageOf(err)}`;
      throw err;
    }
  }

  /** Fetch certificates for every local workload ahead of traffic (istio/ztunnel prefetches too). */
  private prefetchCertificates(): void {
    for (const w of this.localWorkloads()) {
      const id = identityOf(w);
      this.certificateFor(id).catch((err: unknown) =>
        this.log.warn({ identity: formatSpiffeId(id), err: messageOf(err) }, 'certificate prefetch failed'),
      );
    }
  }

  private certificateDump(): CertificateDump[] {
    return [...this.certs.values()]
      .sort((a, b) => a.identity.localeCompare(b.identity))
      .map((c) => ({
        identity: c.identity,
        state: c.state,
        certChain: c.cert ? c.cert.certChainPem.flatMap((p) => describePem(p)) : [],
        rootCerts: c.cert ? c.cert.rootsPem.flatMap((p) => describePem(p)) : [],
      }));
  }

  private onStateChange(changes: readonly StateChange[]): void {
    // istio/ztunnel PolicyWatcher: any change that can alter a decision re-checks live connections.
    // Workload changes count too: selector-scoped policy bindings live on the workload.
    if (changes.some((c) => c.kind === 'authorization' || c.kind === 'workload' || c.kind === 'namespace')) {
      const closed = this.connections.recheckAll();
      if (closed > 0) this.log.info({ closed }, 'policy change closed live connections');
    }
    if (changes.some((c) => c.kind === 'workload')) {
      this.prefetchCertificates();
      // istio/ztunnel stops managing certificates of identities that no longer run on this node.
      const localIds = new Set(this.localWorkloads().map((w) => workloadIdentity(w)));
      for (const key of [...this.certs.keys()]) {
        if (localIds.has(key)) continue;
        this.certs.delete(key);
        this.deps.certificates.forget?.(parseSpiffeId(key));
      }
      // Un-enrollment: a local pod that left the mesh keeps its connections until the drain deadline.
      const local = new Set(this.localWorkloads().flatMap((w) => w.addresses));
      for (const ip of this.connections.countsByPod().keys()) {
        if (local.has(ip) || this.drainingPods.has(ip)) continue;
        this.drainingPods.add(ip);
        void this.drain.drainPod(ip).finally(() => this.drainingPods.delete(ip));
      }
    }
  }

  async start(): Promise<void> {
    const c = this.config;
    for (const l of [this.outbound, this.plaintext, this.inbound]) await l.start();
    this.ports.outbound = this.outbound.address?.port ?? 0;
    this.ports.inboundPlaintext = this.plaintext.address?.port ?? 0;
    this.ports.inbound = this.inbound.address?.port ?? 0;
    await this.admin.listen(c);
    this.unsubscribe = this.deps.state.onChange((changes) => this.onStateChange(changes));
    this.prefetchCertificates();
    this.ready = true;
    this.log.info(
      {
        node: c.node,
        ports: this.ports,
        admin: this.admin.ports,
        local_workloads: this.localWorkloads().length,
      },
      'ztunnel started',
    );
  }

  /** Drain (readiness false, stop accepting, wait up to the deadline, close), then release everything. */
  async shutdown(reason: string): Promise<void> {
    this.stopping ??= this.doShutdown(reason);
    return this.stopping;
  }

  private stopping: Promise<void> | undefined;

  private async doShutdown(reason: string): Promise<void> {
    const result = await this.drain.run(reason);
    this.hboneServer.destroy();
    await this.deps.hbone.close?.();
    this.unsubscribe?.();
    this.deps.certificates.close?.();
    await this.admin.close();
    this.log.info({ reason, ...result }, 'ztunnel stopped');
  }

  /** Shutdown, then exit 0 (SIGTERM, /quitquitquit). */
  async terminate(reason: string): Promise<void> {
    await this.shutdown(reason);
    this.logs.flush();
    this.deps.exit?.(0);
  }

  /** Installs SIGTERM/SIGINT handlers that drain and exit 0 (Kubernetes pod termination). */
  handleSignals(): void {
    const onSignal = (sig: string) => () => {
      void this.terminate(sig);
    };
    process.once('SIGTERM', onSignal('SIGTERM'));
    process.once('SIGINT', onSignal('SIGINT'));
  }
}

/** The HBONE client pool with ztunnel's settings, dialing from the source pod's IP. */
export function createHbonePool(
  config: ZtunnelConfig,
  certificates: CertificateProvider,
  logs: LoggerFamily,
): HboneClientPool {
  return new HboneClientPool({
    certificateFor: (id) => certificates.fetch(id),
    ...(config.preserveSourceIp ? { createSocket: transparentSocketFactory } : {}),
    settings: {
      maxStreamsPerConnection: config.poolMaxStreamsPerConnection,
      idleReleaseMs: config.poolUnusedReleaseTimeoutMs,
      connectTimeoutMs: config.connectTimeoutMs,
    },
    logger: logs.child({ scope: 'hbone-pool' }),
  });
}

/**
 * Where ztunnel's state comes from: the discovery tier (Istio's WDS, istiod's role), verified with the CA
 * roots and authenticated with the node token, as istio/ztunnel does (XDS_ROOT_CA defaults to the CA's
 * roots; the same token for CA and XDS); else the Kubernetes API — informers on every kind, all pods of
 * the cluster: ztunnel routes to and verifies identities of pods on every node, so no node field
 * selector; else a manifest directory.
 */
function stateSourceOptions(config: ZtunnelConfig, logs: LoggerFamily): OpenStateSourceOptions {
  const base = {
    trustDomain: config.trustDomain,
    loggerFor: (scope: string) => logs.child({ scope }),
    configError: (m: string) => new ConfigError(m),
    component: 'ztunnel config',
  };
  if (config.discoveryAddress) {
    const { caRootFile, tokenFile } = config;
    if (!caRootFile || !tokenFile)
      throw new ConfigError(
        'ztunnel config: --discovery needs --ca-root and --token (they authenticate both ways)',
      );
    return {
      ...base,
      discovery: {
        address: config.discoveryAddress,
        rootsPem: () => readFile(caRootFile, 'utf8'),
        token: async () => (await readFile(tokenFile, 'utf8')).trim(),
        // istio/ztunnel node id: <type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local
        nodeId: `ztunnel~0.0.0.0~ztunnel-${config.node}.istio-system~istio-system.svc.cluster.local`,
        nodeMetadata: { NODE_NAME: config.node, CLUSTER_ID: config.clusterId },
        syncTimeoutMs: config.discoverySyncTimeoutMs,
      },
    };
  }
  if (config.kubernetes)
    return {
      ...base,
      kubernetes: {
        ...(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {}),
        ...(config.kubernetesSyncTimeoutMs ? { syncTimeoutMs: config.kubernetesSyncTimeoutMs } : {}),
      },
    };
  return { ...base, ...(config.manifestsDir ? { manifestsDir: config.manifestsDir } : {}) };
}

/**
 * Builds a whole ztunnel from its config — manifest source, CA client + certificate manager (the
 * node token impersonates local workloads, as istio/ztunnel does), HBONE pool — and starts it.
 * `ambit ztunnel` calls this; tests may build `Ztunnel` with their own deps instead.
 */
export async function runZtunnel(
  config: ZtunnelConfig,
  opts: { exit?: (code: number) => void; logs?: LoggerFamily } = {},
): Promise<{ ztunnel: Ztunnel; stop(): Promise<void> }> {
  const { manifestsDir, caAddress, caRootFile, tokenFile } = config;
  if (!manifestsDir && !config.kubernetes && !config.discoveryAddress)
    throw new ConfigError(
      'ztunnel config: manifestsDir: a discovery address (--discovery HOST:PORT), a manifest directory (-m DIR) or --kubernetes is required',
    );
  if (!caAddress)
    throw new ConfigError('ztunnel config: caAddress: the CA address (--ca HOST:PORT) is required');
  if (!caRootFile)
    throw new ConfigError('ztunnel config: caRootFile: the CA root file (--ca-root FILE) is required');
  if (!tokenFile)
    throw new ConfigError('ztunnel config: tokenFile: the node token file (--token FILE) is required');
  const logs = opts.logs ?? new LoggerFamily(config.logLevel);
  const source = await openStateSource(stateSourceOptions(config, logs));
  await source.start();
  // The relay tuning (runtime.ts) after the first sync: a first list is one burst of short-lived
  // objects, which V8's defaults (incremental marking, a growing young generation) collect as it
  // goes; under the relay tuning the 50k-pod sync peaked at 2.8x its settled heap (bench/scale).
  tuneZtunnelProcess();
  // The node token impersonates local workloads, as istio/ztunnel does.
  const certificates: CertificateProvider = certificatesFromCa({
    address: caAddress,
    rootFile: caRootFile,
    tokenFile,
    clusterId: config.clusterId,
    impersonate: true,
    logger: logs.child({ scope: 'certificates' }),
  });
  const pool = createHbonePool(config, certificates, logs);
  const ztunnel = new Ztunnel(config, {
    state: source.state,
    ...('messages' in source && 'terminations' in source ? { discovery: source } : {}),
    certificates,
    hbone: pool,
    logs,
    exit: (code) => {
      void source.stop().finally(() => {
        logs.flush();
        (opts.exit ?? process.exit)(code);
      });
    },
  });
  await ztunnel.start();
  return {
    ztunnel,
    stop: async () => {
      await ztunnel.shutdown('stop');
      await source.stop();
    },
  };
}
