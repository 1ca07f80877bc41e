// eBPF capture (docs/capture.md §1): the pinned `steer` program on tc ingress of every pod veth
// and uplink, driven through the pinned maps. Restart-safe: maps are reused, the new program
// generation replaces the old one with `tc filter replace`, and only our filter (pref/handle) and
// qdiscs we created are ever removed.
import type { Logger } from 'pino';
import type { CaptureBackend, DesiredPod, Uplink } from './capture.js';
import { parseJson, runCommand } from './command.js';
import type { BpfAgentConfig } from './config.js';
import { BpfAgentError } from './errors.js';
import { loadSteer, pruneGenerations, removePins } from './loader.js';
import { type MapWrite, MapWriter } from './map-writer.js';
import {
  BpfMaps,
  IFACE_BRIDGE,
  IFACE_POD,
  IFACE_UPLINK,
  ifaceValue,
  l2gwValue,
  type PodState,
  podValue,
} from './maps.js';
import {
  deleteNftTable,
  ensureMarkRouting,
  notrackTableBody,
  removeMarkRouting,
  replaceNftTable,
} from './routing.js';
import { attachIngress, deleteClsactIfEmpty, detachIngress, ensureClsact, ourFilter } from './tc.js';

export class EbpfCapture implements CaptureBackend {
  readonly mode = 'ebpf' as const;
  readonly maps: BpfMaps;
  private progPin = '';
  /** The `audit` program (tc egress): counts enrolled pods' TCP leaving outside the proxy. */
  private auditPin = '';
  /** ifindex → bridge MAC written to ambit_l2gw. */
  private l2gw = new Map<number, string>();
  private generation = '';
  private readonly attached = new Set<string>();
  private readonly createdQdiscs: Set<string>;
  /** Devices that carried our filter when we started (from `tc -j filter show`). */
  private readonly recovered = new Set<string>();
  private pods = new Map<string, { state: PodState; ifindex: number }>();
  private ifaces = new Map<number, { podIp: string | undefined; kind: number }>();
  private pruned = false;
  private readonly writer: MapWriter;

  constructor(
    private readonly cfg: BpfAgentConfig,
    private readonly log: Logger,
    previousQdiscs: readonly string[] = [],
  ) {
    this.maps = new BpfMaps(`${cfg.pinDir}/maps`);
    this.writer = new MapWriter(cfg.objDir);
    this.createdQdiscs = new Set(previousQdiscs);
  }

  private get routing() {
    return { mark: this.cfg.mark, table: this.cfg.routeTable, pref: this.cfg.rulePref };
  }

  async setup(): Promise<void> {
    const loaded = await loadSteer(this.cfg.pinDir, this.cfg.objDir);
    this.progPin = loaded.progPin;
    this.auditPin = loaded.progPin.replace(/steer$/, 'audit');
    this.generation = loaded.generation;
    this.log.info(
      { prog: loaded.progPin, reusedMaps: loaded.reusedMaps, mapWrites: this.writer.method },
      'steer program loaded',
    );
    // cfg before any pod entry: steer passes everything while cfg is missing.
    await this.maps.setConfig({
      outboundPort: this.cfg.outboundPort,
      inboundPort: this.cfg.inboundPort,
      hbonePort: this.cfg.hbonePort,
      mark: this.cfg.mark,
      failOpen: this.cfg.failOpen,
    });
    await ensureMarkRouting(this.routing);
    try {
      await replaceNftTable('ip', `${this.cfg.nftPrefix}_raw`, notrackTableBody(this.cfg.mark));
    } catch (err) {
      // Without kube-proxy (no conntrack NAT) steering works without it; say so and continue.
      this.log.warn(
        { err: (err as Error).message },
        'raw notrack table not installed: ClusterIP flows may hang under kube-proxy',
      );
    }
    for (const p of await this.maps.pods()) this.pods.set(p.ip, { state: p.state, ifindex: p.ifindex });
    for (const i of await this.maps.ifaces()) this.ifaces.set(i.ifindex, { podIp: i.podIp, kind: i.kind });
    const links =
      parseJson<{ ifname: string }[]>('ip link show', await runCommand('ip', ['-j', 'link', 'show'])) ?? [];
    for (const l of links) {
      if (await ourFilter(l.ifname, this.cfg.tcPref, this.cfg.tcHandle)) this.recovered.add(l.ifname);
    }
    if (this.recovered.size > 0)
      this.log.info({ devices: [...this.recovered] }, 'recovered tc filters from a previous agent');
  }

  async apply(pods: readonly DesiredPod[], uplinks: readonly Uplink[]): Promise<Map<string, string>> {
    // 1. Maps first: by the time the filter sees a pod's packets its entry is there.
    const wantIfaces = new Map<number, { podIp: string | undefined; kind: number }>();
    for (const u of uplinks) wantIfaces.set(u.ifindex, { podIp: undefined, kind: IFACE_UPLINK });
    const bridges = new Map(pods.flatMap((p) => (p.bridge ? [[p.bridge.dev, p.bridge] as const] : [])));
    for (const b of bridges.values()) wantIfaces.set(b.ifindex, { podIp: undefined, kind: IFACE_BRIDGE });
    for (const p of pods) wantIfaces.set(p.ifindex, { podIp: p.ip, kind: IFACE_POD });
    const writes: MapWrite[] = [];
    const podsPin = this.maps.path('ambit_pods');
    const ifacesPin = this.maps.path('ambit_ifaces');
    for (const [ifindex, v] of wantIfaces) {
      const cur = this.ifaces.get(ifindex);
      if (cur && cur.podIp === v.podIp && cur.kind === v.kind) continue;
      writes.push({ pin: ifacesPin, key: BpfMaps.ifaceKey(ifindex), value: ifaceValue(v.podIp, v.kind) });
    }
    const wantPods = new Map(pods.map((p) => [p.ip, p]));
    for (const p of pods) {
      const cur = this.pods.get(p.ip);
      if (cur && cur.state === p.state && cur.ifindex === p.ifindex) continue;
      writes.push({ pin: podsPin, key: BpfMaps.podKey(p.ip), value: podValue(p.state, p.ifindex) });
    }
    const l2gwPin = this.maps.path('ambit_l2gw');
    const wantL2 = new Map(
      pods.flatMap((p) => (p.bridge ? [[p.ifindex, `${p.bridge.mac}/${p.bridge.ifindex}`] as const] : [])),
    );
    for (const [ifindex, gw] of wantL2) {
      const [mac = '', brIndex = '0'] = gw.split('/');
      if (this.l2gw.get(ifindex) !== gw)
        writes.push({ pin: l2gwPin, key: BpfMaps.ifaceKey(ifindex), value: l2gwValue(mac, Number(brIndex)) });
    }
    for (const ifindex of this.l2gw.keys())
      if (!wantL2.has(ifindex)) writes.push({ pin: l2gwPin, key: BpfMaps.ifaceKey(ifindex) });
    const gonePods = [...this.pods.keys()].filter((ip) => !wantPods.has(ip));
    const goneIfaces = [...this.ifaces.keys()].filter((i) => !wantIfaces.has(i));
    for (const ip of gonePods) writes.push({ pin: podsPin, key: BpfMaps.podKey(ip) });
    for (const i of goneIfaces) writes.push({ pin: ifacesPin, key: BpfMaps.ifaceKey(i) });
    await this.writer.apply(writes);
    for (const [ifindex, v] of wantIfaces) this.ifaces.set(ifindex, v);
    for (const p of pods) this.pods.set(p.ip, { state: p.state, ifindex: p.ifindex });
    for (const ip of gonePods) this.pods.delete(ip);
    for (const i of goneIfaces) this.ifaces.delete(i);
    this.l2gw = new Map(wantL2);

    // 2. Filters: every pod veth (enrolled or not: a non-enrolled pod's traffic TO an enrolled one is
    //    captured inbound on its veth) and every uplink.
    const devs = new Set([...pods.map((p) => p.dev), ...bridges.keys(), ...uplinks.map((u) => u.dev)]);
    const failed = new Map<string, string>();
    for (const dev of devs) {
      if (this.attached.has(dev)) continue;
      try {
        if (await ensureClsact(dev)) this.createdQdiscs.add(dev);
        await attachIngress(dev, this.progPin, this.cfg.tcPref, this.cfg.tcHandle);
        await attachIngress(dev, this.auditPin, this.cfg.tcPref, this.cfg.tcHandle, 'egress');
      } catch (err) {
        // One veth that refuses our hook (another tool's filter at our pref, a vanished link) must not
        // leave every other pod unprogrammed: report it, undo what half-attached, retry next pass.
        if (!(err instanceof BpfAgentError)) throw err;
        failed.set(dev, err.message);
        await this.detach(dev).catch(() => undefined);
        continue;
      }
      this.attached.add(dev);
      this.recovered.delete(dev);
    }
    for (const dev of [...this.attached, ...this.recovered]) {
      if (devs.has(dev)) continue;
      await this.detach(dev);
    }
    if (!this.pruned && this.recovered.size === 0) {
      const removed = await pruneGenerations(this.cfg.pinDir, this.generation);
      if (removed.length > 0) this.log.info({ removed }, 'older program generations unpinned');
      this.pruned = true;
    }
    return failed;
  }

  private async detach(dev: string): Promise<void> {
    await detachIngress(dev, this.cfg.tcPref, this.cfg.tcHandle);
    await detachIngress(dev, this.cfg.tcPref, this.cfg.tcHandle, 'egress');
    if (this.createdQdiscs.has(dev)) {
      await deleteClsactIfEmpty(dev);
      this.createdQdiscs.delete(dev);
    }
    this.attached.delete(dev);
    this.recovered.delete(dev);
  }

  async kernelPods(): Promise<Map<string, PodState>> {
    return new Map([...this.pods].map(([ip, v]) => [ip, v.state]));
  }

  async counters(): Promise<Record<string, number>> {
    return this.maps.stats();
  }

  attachments() {
    return { devices: [...this.attached].sort(), createdQdiscs: [...this.createdQdiscs].sort() };
  }

  async teardown(): Promise<void> {
    const errors: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    const links =
      parseJson<{ ifname: string }[]>('ip link show', await runCommand('ip', ['-j', 'link', 'show'])) ?? [];
    for (const l of links) {
      if (this.attached.has(l.ifname) || (await ourFilter(l.ifname, this.cfg.tcPref, this.cfg.tcHandle))) {
        this.attached.add(l.ifname);
        await step(`detach ${l.ifname}`, () => this.detach(l.ifname));
      }
    }
    await step('ip rule', () => removeMarkRouting(this.routing));
    await step('notrack table', () => deleteNftTable('ip', `${this.cfg.nftPrefix}_raw`));
    this.writer.close();
    await step('pins', () => removePins(this.cfg.pinDir));
    this.pods.clear();
    this.ifaces.clear();
    if (errors.length > 0)
      throw new BpfAgentError('COMMAND_FAILED', `teardown incomplete: ${errors.join('; ')}`);
  }
}
