// The node agent: keeps the kernel's capture state equal to "the pods of my node and whether they are
// enrolled", live. Enrollment is a map write effective from the pod's next SYN; flows opened before
// keep going direct. Opt-out is DRAIN (new connections direct, proxied ones still steered), then the
// entry goes back to NONE once the node netns holds no socket of that pod any more — i.e. the proxy has
// no live connection for it — or after the grace period (docs/capture.md §4; deleting at once resets
// proxied flows). A pod is written to the maps as soon as the state has its IP and
// its veth exists, before its app can connect (no bypass at pod start, istio/istio#48286).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { CaptureBackend, DesiredPod, Uplink } from './capture.js';
import { runCommand } from './command.js';
import type { BpfAgentConfig } from './config.js';
import { EbpfCapture } from './ebpf-capture.js';
import { BpfAgentError } from './errors.js';
import { POD_CAPTURE, POD_DRAIN, POD_NONE, POD_PENDING, type PodState, podStateName } from './maps.js';
import { NftCapture } from './nft-capture.js';
import { RefuseTables } from './refuse.js';
import { ServiceLb } from './service-lb.js';
import { type NodePodSource, PodInterfaceFinder } from './pods.js';

export interface PodStatus {
  name: string;
  namespace: string;
  ip: string;
  state: string;
  dev?: string;
  ifindex?: number;
  /** The bridge the pod's veth is a port of (bridge CNIs). */
  bridge?: string;
  /** Why the pod is not programmed yet (e.g. its veth does not exist yet). */
  pending?: string;
  /** Set when an enrolled pod stayed uncapturable past the grace (`uncapturableAfterMs`): why. Its
   *  traffic is refused (fail closed) until the agent can capture it. */
  uncapturable?: string;
}

export interface AgentStatus {
  node: string;
  mode: 'ebpf' | 'nftables';
  /** Set when auto mode fell back to nftables: why eBPF could not load. */
  fallbackReason?: string;
  failOpen: boolean;
  pid: number;
  startedAt: string;
  updatedAt: string;
  generation: number;
  pods: PodStatus[];
  uplinks: string[];
  /** Pod veths held (SYNs dropped) until the state knows their pod. */
  unknownPodVeths: { ip: string; dev: string }[];
  /** Socket-level service LB, when enabled: the cgroups it serves and the VIP:ports programmed. */
  serviceLb?: { cgroups: string[]; services: number };
  devices: string[];
  createdQdiscs: string[];
  counters: Record<string, number>;
  lastError?: string;
}

interface Tracked {
  state: PodState;
  drainSince?: number;
}

export class BpfAgent {
  private backend!: CaptureBackend;
  private serviceLb: ServiceLb | undefined;
  private servicesProgrammed = 0;
  private fallbackReason: string | undefined;
  private readonly tracked = new Map<string, Tracked>();
  private unsubscribe: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private monitor: ChildProcess | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly startedAt = new Date().toISOString();
  private generation = 0;
  private lastStatus: AgentStatus | undefined;
  private lastError: string | undefined;
  private readonly warnedPending = new Set<string>();
  private readonly finder = new PodInterfaceFinder();
  private readonly refuse: RefuseTables;
  /** Enrolled pods without a capturable interface: since when (ms), and what was logged. */
  private readonly unresolvedSince = new Map<string, number>();
  private readonly reportedUncapturable = new Map<string, string>();
  /** Pods whose veth refused our hook, with the reason last logged. */
  private readonly reportedHookFailure = new Map<string, string>();

  constructor(
    private readonly cfg: BpfAgentConfig,
    private readonly source: NodePodSource,
    private readonly log: Logger,
  ) {
    this.refuse = new RefuseTables(cfg.nftPrefix);
  }

  get mode(): 'ebpf' | 'nftables' {
    return this.backend.mode;
  }

  async start(): Promise<void> {
    if (process.getuid?.() !== 0) {
      throw new BpfAgentError(
        'NOT_ROOT',
        'bpf-agent must run as root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)',
      );
    }
    if (this.cfg.failOpen) {
      this.log.warn(
        '!!! FAIL-OPEN is ON: while ztunnel is down, enrolled pods connect DIRECTLY, unauthenticated and unencrypted !!!',
      );
    }
    this.backend = await this.chooseBackend();
    if (this.cfg.serviceLbCgroups.length > 0) {
      if (this.backend.mode === 'ebpf') {
        this.serviceLb = new ServiceLb(this.cfg.pinDir, this.cfg.objDir, this.cfg.serviceLbCgroups, this.log);
        await this.serviceLb.setup();
      } else {
        this.log.error('service load balancing needs eBPF; not available in nftables mode');
      }
    }
    for (const [ip, state] of await this.backend.kernelPods()) {
      // A pod found DRAINing keeps draining (its grace restarts now); CAPTURE/NONE are re-derived.
      this.tracked.set(ip, state === POD_DRAIN ? { state, drainSince: Date.now() } : { state });
    }
    await this.reconcileNow();
    this.unsubscribe = this.source.onChange(() => this.schedule());
    this.timer = setInterval(() => this.schedule(), this.cfg.resyncMs);
    this.timer.unref();
    this.watchLinks();
  }

  /**
   * A pod's veth and /32 route appear when the CNI sets the pod up, before its app starts: react to
   * the kernel's link/route notifications at once instead of waiting for the next resync, so a pod
   * the state already knows is captured before its first connection (istio/istio#48286).
   */
  private watchLinks(): void {
    const child = spawn('ip', ['-o', 'monitor', 'link', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.monitor = child;
    child.stdout.on('data', () => this.schedule());
    child.on('error', (err) =>
      this.log.warn({ err: err.message }, 'ip monitor unavailable; relying on resync'),
    );
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
  }

  private previousQdiscs(): string[] {
    try {
      if (!existsSync(this.cfg.statusFile)) return [];
      const prev = JSON.parse(readFileSync(this.cfg.statusFile, 'utf8')) as Partial<AgentStatus>;
      return Array.isArray(prev.createdQdiscs) ? prev.createdQdiscs.filter((d) => typeof d === 'string') : [];
    } catch {
      return [];
    }
  }

  private async chooseBackend(): Promise<CaptureBackend> {
    if (this.cfg.mode !== 'nftables') {
      const ebpf = new EbpfCapture(this.cfg, this.log, this.previousQdiscs());
      try {
        await ebpf.setup();
        return ebpf;
      } catch (err) {
        if (this.cfg.mode === 'ebpf') throw err;
        this.fallbackReason = (err as Error).message;
        this.log.error(
          { err: this.fallbackReason },
          'eBPF capture unavailable: FALLING BACK to nftables TPROXY (same listeners, explicit reject keeps it fail-closed)',
        );
        await ebpf.teardown().catch(() => undefined);
      }
    }
    const nft = new NftCapture(this.cfg, this.log);
    try {
      await nft.setup();
    } catch (err) {
      throw new BpfAgentError(
        'NFT_UNAVAILABLE',
        `nftables capture could not be set up: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    this.log.info({ mode: 'nftables' }, 'capture mode');
    return nft;
  }

  /** Queue a reconcile; concurrent requests coalesce into one more pass. */
  schedule(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.reconcileOnce();
          this.lastError = undefined;
        } catch (err) {
          this.lastError = (err as Error).message;
          this.log.error({ err: this.lastError }, 'reconcile failed; retrying at next resync');
        }
      } while (this.again && !this.stopped);
      this.running = undefined;
    })();
  }

  /** Reconcile now and wait for it (and for any pass already running). */
  async reconcileNow(): Promise<void> {
    while (this.running) await this.running;
    this.schedule();
    while (this.running) await this.running;
    if (this.lastError) throw new BpfAgentError('COMMAND_FAILED', this.lastError);
  }

  private async hasLiveSockets(ip: string): Promise<boolean> {
    // Sockets of this pod in the node netns are exactly the proxy's connections for it (accepted
    // transparent sockets carry the pod IP as peer or as local address).
    const out = await runCommand('ss', ['-Htn', 'state', 'established', `( src ${ip} or dst ${ip} )`]);
    return out.trim().length > 0;
  }

  private async reconcileOnce(): Promise<void> {
    const { links, podIfs, gatewayDevs } = await this.finder.read();
    const ifByIp = new Map(podIfs.map((p) => [p.ip, p]));
    const now = Date.now();
    const desired: DesiredPod[] = [];
    const statuses: PodStatus[] = [];
    const refused: string[] = [];
    const seen = new Set<string>();
    for (const pod of this.source.pods()) {
      seen.add(pod.ip);
      const prev = this.tracked.get(pod.ip);
      let next: Tracked;
      if (pod.enrolled) next = { state: POD_CAPTURE };
      else if (prev?.state === POD_CAPTURE) next = { state: POD_DRAIN, drainSince: now };
      else if (prev?.state === POD_DRAIN) {
        const since = prev.drainSince ?? now;
        const expired = now - since >= this.cfg.drainGraceMs;
        next =
          expired || !(await this.hasLiveSockets(pod.ip))
            ? { state: POD_NONE }
            : { state: POD_DRAIN, drainSince: since };
      } else next = { state: POD_NONE };
      if (prev?.state !== next.state) {
        this.log.info(
          {
            pod: `${pod.namespace}/${pod.name}`,
            ip: pod.ip,
            from: podStateName(prev?.state ?? POD_NONE),
            to: podStateName(next.state),
          },
          'pod capture state',
        );
      }
      this.tracked.set(pod.ip, next);
      const base = { name: pod.name, namespace: pod.namespace, ip: pod.ip, state: podStateName(next.state) };
      const pif = ifByIp.get(pod.ip);
      if (!pif) {
        const why = `no veth in the node netns whose peer (pod side) holds ${pod.ip} yet`;
        if (!this.warnedPending.has(pod.ip)) this.log.warn({ pod: `${pod.namespace}/${pod.name}` }, why);
        this.warnedPending.add(pod.ip);
        const since = this.unresolvedSince.get(pod.ip) ?? now;
        this.unresolvedSince.set(pod.ip, since);
        if (pod.enrolled && now - since >= this.cfg.uncapturableAfterMs) {
          // Never a silent bypass: an enrolled pod the agent cannot capture is refused and reported.
          const reason =
            `cannot capture: no veth in the node netns leads to a netns holding ${pod.ip} ` +
            `(unknown topology, or a pod netns not under /var/run/netns) after ${this.cfg.uncapturableAfterMs} ms; its traffic is refused`;
          refused.push(pod.ip);
          if (this.reportedUncapturable.get(pod.ip) !== reason) {
            this.log.error(
              { pod: `${pod.namespace}/${pod.name}`, ip: pod.ip, reason },
              'pod cannot be captured',
            );
            this.reportedUncapturable.set(pod.ip, reason);
          }
          statuses.push({ ...base, pending: why, uncapturable: reason });
        } else statuses.push({ ...base, pending: why });
        continue;
      }
      this.warnedPending.delete(pod.ip);
      this.unresolvedSince.delete(pod.ip);
      if (this.reportedUncapturable.delete(pod.ip))
        this.log.info({ pod: `${pod.namespace}/${pod.name}`, dev: pif.dev }, 'pod capturable again');
      desired.push({
        ip: pod.ip,
        state: next.state,
        dev: pif.dev,
        ifindex: pif.ifindex,
        ...(pif.bridge ? { bridge: pif.bridge } : {}),
      });
      statuses.push({
        ...base,
        dev: pif.dev,
        ifindex: pif.ifindex,
        ...(pif.bridge ? { bridge: pif.bridge.dev } : {}),
      });
    }
    for (const ip of [...this.tracked.keys()]) if (!seen.has(ip)) this.tracked.delete(ip);
    for (const ip of [...this.unresolvedSince.keys()]) if (!seen.has(ip)) this.unresolvedSince.delete(ip);
    for (const ip of [...this.reportedUncapturable.keys()])
      if (!seen.has(ip)) this.reportedUncapturable.delete(ip);

    let uplinkNames = this.cfg.uplinks;
    if (uplinkNames.length === 0) {
      const defaults = gatewayDevs.filter((g) => g.isDefault).map((g) => g.dev);
      uplinkNames = [...new Set(defaults.length ? defaults : gatewayDevs.map((g) => g.dev))];
    }
    // Pod veths (a /32 route onto a veth into another netns) whose pod the state does not know yet.
    const unknown: { ip: string; dev: string }[] = [];
    if (this.cfg.holdUnknownPods) {
      const known = new Set(desired.map((p) => p.dev));
      for (const pif of podIfs) {
        const { ip, dev } = pif;
        // Only the host side of a veth into another netns can be a pod; never an uplink.
        if (seen.has(ip) || known.has(dev) || uplinkNames.includes(dev)) continue;
        desired.push({
          ip,
          state: POD_PENDING,
          dev,
          ifindex: pif.ifindex,
          ...(pif.bridge ? { bridge: pif.bridge } : {}),
        });
        unknown.push({ ip, dev });
        known.add(dev);
      }
      if (unknown.length > 0)
        this.log.info({ unknown }, 'holding SYNs of pod veths the mesh state does not know yet');
    }
    const podDevs = new Set(desired.map((p) => p.dev));
    const uplinks: Uplink[] = [];
    for (const name of uplinkNames) {
      const l = links.get(name);
      if (l && !podDevs.has(name)) uplinks.push({ dev: name, ifindex: l.ifindex });
      else if (!l) this.log.warn({ uplink: name }, 'uplink device not found');
    }

    const hookFailures = await this.backend.apply(desired, uplinks);
    this.reportHookFailures(desired, hookFailures, statuses, refused);
    await this.refuse.apply(this.cfg.failOpen ? [] : refused);
    if (this.serviceLb && this.source.services) {
      this.servicesProgrammed = await this.serviceLb.sync(this.source.services());
    }
    this.generation++;
    const counters = await this.backend.counters().catch(() => ({}));
    const att = this.backend.attachments();
    this.lastStatus = {
      node: this.cfg.node,
      mode: this.backend.mode,
      ...(this.fallbackReason ? { fallbackReason: this.fallbackReason } : {}),
      failOpen: this.cfg.failOpen,
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      generation: this.generation,
      pods: statuses.sort((a, b) => a.ip.localeCompare(b.ip)),
      uplinks: uplinks.map((u) => u.dev),
      unknownPodVeths: unknown,
      ...(this.serviceLb
        ? { serviceLb: { cgroups: this.cfg.serviceLbCgroups, services: this.servicesProgrammed } }
        : {}),
      devices: att.devices,
      createdQdiscs: att.createdQdiscs,
      counters,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
    await this.writeStatus(this.lastStatus);
  }

  /**
   * Never a silent bypass: an enrolled (or draining) pod whose veth refused our hook is not captured,
   * so its traffic is refused (with the pods the agent found no veth for) and reported — log line,
   * status `uncapturable` (→ metric, annotation and Event) — until a later pass installs the hook.
   */
  private reportHookFailures(
    desired: readonly DesiredPod[],
    failures: Map<string, string>,
    statuses: PodStatus[],
    refused: string[],
  ): void {
    for (const p of desired) {
      const err = failures.get(p.dev);
      if (err === undefined || (p.state !== POD_CAPTURE && p.state !== POD_DRAIN)) {
        if (this.reportedHookFailure.delete(p.ip))
          this.log.info({ ip: p.ip, dev: p.dev }, 'pod capturable again');
        continue;
      }
      const st = statuses.find((x) => x.ip === p.ip);
      const reason = `cannot capture: the capture hook could not be installed on ${p.dev} (${err}); its traffic is refused`;
      refused.push(p.ip);
      if (st) st.uncapturable = reason;
      if (this.reportedHookFailure.get(p.ip) !== reason) {
        this.log.error(
          { pod: st ? `${st.namespace}/${st.name}` : undefined, ip: p.ip, dev: p.dev, reason },
          'pod cannot be captured',
        );
        this.reportedHookFailure.set(p.ip, reason);
      }
    }
  }

  status(): AgentStatus | undefined {
    return this.lastStatus;
  }

  private async writeStatus(s: AgentStatus): Promise<void> {
    await mkdir(dirname(this.cfg.statusFile), { recursive: true });
    const tmp = `${this.cfg.statusFile}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(s, null, 2)}\n`);
    await rename(tmp, this.cfg.statusFile);
  }

  /**
   * Stop reconciling. By default the kernel objects stay: capture keeps working (and keeps failing
   * closed) while the agent restarts. With teardown, every object the agent owns is removed.
   */
  async stop(opts: { teardown?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    this.monitor?.kill();
    while (this.running) await this.running;
    if (opts.teardown) {
      await this.serviceLb?.teardown();
      await this.backend.teardown();
      await this.refuse.teardown();
      await rm(this.cfg.statusFile, { force: true });
      this.log.info('capture torn down');
    }
  }
}

/** Remove everything an agent with this config owns, whichever mode it ran in (`bpf-agent --teardown`). */
export async function teardownAll(cfg: BpfAgentConfig, log: Logger): Promise<void> {
  const errors: string[] = [];
  const prev = (() => {
    try {
      return (JSON.parse(readFileSync(cfg.statusFile, 'utf8')) as Partial<AgentStatus>).createdQdiscs ?? [];
    } catch {
      return [];
    }
  })();
  const prevLb = (() => {
    try {
      return (
        (JSON.parse(readFileSync(cfg.statusFile, 'utf8')) as Partial<AgentStatus>).serviceLb?.cgroups ?? []
      );
    } catch {
      return [];
    }
  })();
  const cgroups = [...new Set([...cfg.serviceLbCgroups, ...prevLb])];
  await new ServiceLb(cfg.pinDir, cfg.objDir, cgroups, log)
    .teardown()
    .catch((err: unknown) => errors.push((err as Error).message));
  for (const backend of [new EbpfCapture(cfg, log, prev), new NftCapture(cfg, log)]) {
    await backend.teardown().catch((err: unknown) => errors.push((err as Error).message));
  }
  await new RefuseTables(cfg.nftPrefix)
    .teardown()
    .catch((err: unknown) => errors.push((err as Error).message));
  await rm(cfg.statusFile, { force: true });
  if (errors.length > 0) throw new BpfAgentError('COMMAND_FAILED', `teardown: ${errors.join('; ')}`);
}
