// Socket-level service load balancing with the pinned service map (bpf/sock_connect.bpf.c): a
// connect() to a ClusterIP:port from a process in one of the given cgroups is rewritten to a backend
// with one hash lookup (Cilium's socket LB; flat in the number of services, docs/capture.md §6 and
// bench/bpf.bench.ts). Off unless cgroups are given: it is a kube-proxy replacement for pods OUTSIDE
// the mesh — an enrolled pod must keep dialling the VIP so ztunnel sees the service (waypoints, SANs).
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { runCommand } from './command.js';
import { BpfAgentError } from './errors.js';
import { ensureBpffs } from './loader.js';
import { type MapWrite, MapWriter } from './map-writer.js';
import { ipv4Bytes } from './maps.js';

export const SOCK_OBJECT = 'sock_connect.bpf.o';
/** SVC_MAX_BACKENDS in maps.h */
export const MAX_BACKENDS = 8;

export interface ServiceBackends {
  vip: string;
  port: number;
  backends: { ip: string; port: number }[];
}

const be16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

/** struct svc_key {vip (net), port (net), pad}. */
export const svcKey = (vip: string, port: number): Buffer =>
  Buffer.concat([ipv4Bytes(vip), be16(port), Buffer.alloc(2)]);

/** struct svc_value {u32 count (host order), pad, backends[8] {ip (net), port (net), pad}}. */
export function svcValue(backends: { ip: string; port: number }[]): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32LE(Math.min(backends.length, MAX_BACKENDS));
  const slots = [];
  for (let i = 0; i < MAX_BACKENDS; i++) {
    const b = backends[i];
    slots.push(b ? Buffer.concat([ipv4Bytes(b.ip), be16(b.port), Buffer.alloc(2)]) : Buffer.alloc(8));
  }
  return Buffer.concat([count, Buffer.alloc(4), ...slots]);
}

export class ServiceLb {
  private readonly dir: string;
  private progPin = '';
  /** hex(key) → hex(value) as in the map. */
  private readonly entries = new Map<string, string>();
  private readonly writer: MapWriter;

  constructor(
    pinDir: string,
    private readonly objDir: string,
    private readonly cgroups: readonly string[],
    private readonly log: Logger,
  ) {
    this.dir = join(pinDir, 'svc');
    this.writer = new MapWriter(objDir);
  }

  private get mapPin(): string {
    return join(this.dir, 'maps', 'ambit_svcs');
  }

  /** Load a new generation (reusing the pinned map) and attach it to every cgroup (replaces ours). */
  async setup(): Promise<void> {
    const obj = join(this.objDir, SOCK_OBJECT);
    if (!existsSync(obj))
      throw new BpfAgentError('BPF_UNAVAILABLE', `${obj} is missing: run \`npm run build:bpf\``);
    for (const cg of this.cgroups) {
      if (!existsSync(join(cg, 'cgroup.procs'))) {
        throw new BpfAgentError(
          'BAD_CONFIG',
          `bpf-agent: --service-lb-cgroup ${cg} is not a cgroup v2 directory`,
        );
      }
    }
    await ensureBpffs();
    const gen = join(this.dir, 'progs', `g${Date.now().toString(36)}`);
    await mkdir(join(this.dir, 'progs'), { recursive: true });
    const reuse = existsSync(this.mapPin);
    const mapArgs = reuse
      ? ['map', 'name', 'ambit_svcs', 'pinned', this.mapPin]
      : ['pinmaps', join(this.dir, 'maps')];
    await runCommand('bpftool', ['prog', 'loadall', obj, gen, 'type', 'cgroup/connect4', ...mapArgs]);
    this.progPin = join(gen, 'svc_connect4');
    for (const cg of this.cgroups)
      await runCommand('bpftool', ['cgroup', 'attach', cg, 'connect4', 'pinned', this.progPin]);
    for (const g of await readdir(join(this.dir, 'progs'))) {
      if (join(this.dir, 'progs', g) !== gen)
        await rm(join(this.dir, 'progs', g), { recursive: true, force: true });
    }
    if (reuse) {
      const dump = JSON.parse(await runCommand('bpftool', ['-j', 'map', 'dump', 'pinned', this.mapPin])) as {
        key: string[];
        value: string[];
      }[];
      for (const e of dump)
        this.entries.set(e.key.map((h) => h.slice(2)).join(' '), e.value.map((h) => h.slice(2)).join(' '));
    }
    this.log.info({ cgroups: this.cgroups, reusedMap: reuse }, 'service load balancing attached');
  }

  /** Make the service map hold exactly these services (in-process writes, or one bpftool batch). */
  async sync(services: readonly ServiceBackends[]): Promise<number> {
    const want = new Map<string, { key: Buffer; value: Buffer }>();
    for (const s of services) {
      if (s.backends.length === 0) continue;
      const key = svcKey(s.vip, s.port);
      want.set(key.toString('hex'), { key, value: svcValue(s.backends) });
    }
    const writes: MapWrite[] = [];
    for (const [k, v] of want) {
      if (this.entries.get(k) !== v.value.toString('hex'))
        writes.push({ pin: this.mapPin, key: v.key, value: v.value });
    }
    for (const k of this.entries.keys()) {
      if (!want.has(k)) writes.push({ pin: this.mapPin, key: Buffer.from(k, 'hex') });
    }
    await this.writer.apply(writes);
    this.entries.clear();
    for (const [k, v] of want) this.entries.set(k, v.value.toString('hex'));
    return want.size;
  }

  async teardown(): Promise<void> {
    this.writer.close();
    const progs = await readdir(join(this.dir, 'progs')).catch(() => [] as string[]);
    for (const cg of this.cgroups) {
      for (const g of progs) {
        await runCommand('bpftool', [
          'cgroup',
          'detach',
          cg,
          'connect4',
          'pinned',
          join(this.dir, 'progs', g, 'svc_connect4'),
        ]).catch(() => undefined);
      }
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
