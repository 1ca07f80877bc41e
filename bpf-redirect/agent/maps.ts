// The pinned maps of bpf/maps.h, read and written with `bpftool map … pinned`. Byte layouts mirror
// the C structs exactly (host byte order for integers, network order for addresses and ports).
import { endianness } from 'node:os';
import { parseJson, runCommand } from './command.js';
import { BpfAgentError } from './errors.js';

export const POD_NONE = 0;
export const POD_CAPTURE = 1;
export const POD_DRAIN = 2;
export const POD_PENDING = 3;
export type PodState = typeof POD_NONE | typeof POD_CAPTURE | typeof POD_DRAIN | typeof POD_PENDING;
export const podStateName = (s: number): string =>
  ['NONE', 'CAPTURE', 'DRAIN', 'PENDING'][s] ?? `UNKNOWN(${s})`;

export const IFACE_POD = 1;
export const IFACE_UPLINK = 2;
export const IFACE_BRIDGE = 3;

/** Order of enum ambit_stat in maps.h. */
export const STAT_NAMES = [
  'assigned_outbound',
  'assigned_inbound',
  'proxy_owned',
  'pass',
  'drain_pass',
  'proxy_missing',
  'fail_open',
  'assign_failed',
  'spoofed',
  'held_unknown_pod',
  'ipv6_dropped',
  'capture_bypass',
] as const;
export type StatName = (typeof STAT_NAMES)[number];

export const MAP_NAMES = ['ambit_cfg', 'ambit_pods', 'ambit_ifaces', 'ambit_l2gw', 'ambit_stats'] as const;

const LE = endianness() === 'LE';

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  if (LE) b.writeUInt32LE(v >>> 0);
  else b.writeUInt32BE(v >>> 0);
  return b;
}
function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  if (LE) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  return b;
}

/** Dotted IPv4 → 4 bytes in network order (a __u32 read straight from the IP header). */
export function ipv4Bytes(ip: string): Buffer {
  const parts = ip.split('.');
  const nums = parts.map((p) => Number(p));
  if (parts.length !== 4 || nums.some((n, i) => !/^\d{1,3}$/.test(parts[i] ?? '') || n > 255)) {
    throw new BpfAgentError('BAD_CONFIG', `not an IPv4 address: "${ip}"`);
  }
  return Buffer.from(nums);
}

export const ipv4FromBytes = (b: Buffer): string => [...b.subarray(0, 4)].join('.');

export const hexArgs = (b: Buffer): string[] => [
  'hex',
  ...[...b].map((x) => x.toString(16).padStart(2, '0')),
];

export function cfgValue(c: {
  outboundPort: number;
  inboundPort: number;
  hbonePort: number;
  mark: number;
  failOpen: boolean;
}): Buffer {
  return Buffer.concat([
    u16(c.outboundPort),
    u16(c.inboundPort),
    u16(c.hbonePort),
    u16(0),
    u32(c.mark),
    u32(c.failOpen ? 1 : 0),
  ]);
}

export const podValue = (state: PodState, ifindex: number): Buffer =>
  Buffer.concat([u32(state), u32(ifindex)]);
export const ifaceValue = (podIp: string | undefined, kind: number): Buffer =>
  Buffer.concat([podIp ? ipv4Bytes(podIp) : Buffer.alloc(4), u32(kind)]);

/** struct l2_gw: the bridge's MAC ("aa:bb:cc:dd:ee:ff"), 2 bytes of padding, the bridge's ifindex. */
export function l2gwValue(mac: string, bridgeIfindex: number): Buffer {
  const b = mac.split(':').map((x) => Number.parseInt(x, 16));
  if (b.length !== 6 || b.some((x) => !Number.isInteger(x) || x < 0 || x > 255))
    throw new BpfAgentError('BAD_CONFIG', `not a MAC address: "${mac}"`);
  return Buffer.concat([Buffer.from(b), Buffer.alloc(2), u32(bridgeIfindex)]);
}

const readU32 = (b: Buffer, off: number): number => (LE ? b.readUInt32LE(off) : b.readUInt32BE(off));
const bytesOf = (hex: string[]): Buffer => Buffer.from(hex.map((h) => Number.parseInt(h, 16)));

export interface PodEntry {
  ip: string;
  state: PodState;
  ifindex: number;
}
export interface IfaceEntry {
  ifindex: number;
  podIp: string | undefined;
  kind: number;
}

interface DumpEntry {
  key: string[];
  value?: string[];
  values?: { cpu: number; value: string[] }[];
}

/** The agent's handle on the pinned maps under `<pinDir>/maps`. */
export class BpfMaps {
  static podKey = ipv4Bytes;
  static ifaceKey = u32;

  constructor(readonly mapsDir: string) {}

  path(name: (typeof MAP_NAMES)[number]): string {
    return `${this.mapsDir}/${name}`;
  }

  private update(name: (typeof MAP_NAMES)[number], key: Buffer, value: Buffer): Promise<string> {
    return runCommand('bpftool', [
      'map',
      'update',
      'pinned',
      this.path(name),
      'key',
      ...hexArgs(key),
      'value',
      ...hexArgs(value),
    ]);
  }

  private async remove(name: (typeof MAP_NAMES)[number], key: Buffer): Promise<void> {
    await runCommand('bpftool', ['map', 'delete', 'pinned', this.path(name), 'key', ...hexArgs(key)]).catch(
      (err: unknown) => {
        // Deleting an absent key is success for a reconciler.
        if (!(err instanceof BpfAgentError && /No such file|not found/i.test(err.message))) throw err;
      },
    );
  }

  private async dump(name: (typeof MAP_NAMES)[number]): Promise<DumpEntry[]> {
    const out = await runCommand('bpftool', ['-j', 'map', 'dump', 'pinned', this.path(name)]);
    return parseJson<DumpEntry[]>(`bpftool map dump ${name}`, out) ?? [];
  }

  async setConfig(c: Parameters<typeof cfgValue>[0]): Promise<void> {
    await this.update('ambit_cfg', u32(0), cfgValue(c));
  }

  async readConfig(): Promise<{ failOpen: boolean; mark: number } | undefined> {
    const [e] = await this.dump('ambit_cfg');
    if (!e?.value) return undefined;
    const v = bytesOf(e.value);
    return { mark: readU32(v, 8), failOpen: readU32(v, 12) === 1 };
  }

  async setPod(ip: string, state: PodState, ifindex: number): Promise<void> {
    await this.update('ambit_pods', ipv4Bytes(ip), podValue(state, ifindex));
  }

  deletePod(ip: string): Promise<void> {
    return this.remove('ambit_pods', ipv4Bytes(ip));
  }

  async pods(): Promise<PodEntry[]> {
    return (await this.dump('ambit_pods')).map((e) => {
      const v = bytesOf(e.value ?? []);
      return { ip: ipv4FromBytes(bytesOf(e.key)), state: readU32(v, 0) as PodState, ifindex: readU32(v, 4) };
    });
  }

  async setIface(ifindex: number, podIp: string | undefined, kind: number): Promise<void> {
    await this.update('ambit_ifaces', u32(ifindex), ifaceValue(podIp, kind));
  }

  deleteIface(ifindex: number): Promise<void> {
    return this.remove('ambit_ifaces', u32(ifindex));
  }

  async ifaces(): Promise<IfaceEntry[]> {
    return (await this.dump('ambit_ifaces')).map((e) => {
      const k = bytesOf(e.key);
      const v = bytesOf(e.value ?? []);
      const ip = ipv4FromBytes(v.subarray(0, 4));
      return { ifindex: readU32(k, 0), podIp: ip === '0.0.0.0' ? undefined : ip, kind: readU32(v, 4) };
    });
  }

  /** Per-CPU counters summed over CPUs, by name. */
  async stats(): Promise<Record<StatName, number>> {
    const out = Object.fromEntries(STAT_NAMES.map((n) => [n, 0])) as Record<StatName, number>;
    for (const e of await this.dump('ambit_stats')) {
      const idx = readU32(bytesOf(e.key), 0);
      const name = STAT_NAMES[idx];
      if (!name) continue;
      for (const c of e.values ?? []) {
        const b = bytesOf(c.value);
        out[name] += Number(LE ? b.readBigUInt64LE(0) : b.readBigUInt64BE(0));
      }
    }
    return out;
  }
}
