// `ambit demo down`: removes everything `ambit demo up` created, from its state file AND by the demo's
// name prefix, so it also works after a crash or `kill -9` of the demo (the state file may be stale or
// half-written; kernel objects are found by name). Order matters: processes first (a live socket keeps
// a deleted netns alive: network_namespaces(7)), then BPF pins, then the namespaces,
// whose deletion takes their veths, routes, ip rules, tc filters and nft tables with them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../netns/topology.js';
import {
  cmdlineOf,
  DEMO_PREFIX,
  type DemoState,
  pidAlive,
  readDemoState,
  stateFileOf,
} from './state-file.js';

const NETNS_DIR = '/var/run/netns';
const BPFFS = '/sys/fs/bpf';
const CGROUP_ROOT = '/sys/fs/cgroup';

function ls(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function killNow(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  let left = pids.filter(pidAlive);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(pidAlive);
  }
  return left;
}

/** Pids of every process whose network namespace is `ns` (`ip netns pids`). */
function pidsIn(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { timeout: 5000, encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

export interface DownReport {
  prefix: string;
  killed: number;
  netns: string[];
  pins: string[];
  other: string[];
  /** Pid of a running demo that stopped (and cleaned up) itself when asked. */
  stoppedDemo?: number;
  /** Where this run's logs were moved. */
  keptLogs?: string;
  /** What could not be removed (the caller reports it and exits non-zero). */
  residue: string[];
}

/** Remove everything of the demo that used `dir` (state file) and/or `prefix`. Idempotent. */
/** Where `down` keeps the logs of stopped demos: next to the demo directory (`/run/ambit-demo-logs`). */
export function keptLogsDir(dir: string): string {
  return `${dir.replace(/\/+$/, '')}-logs`;
}

export async function demoDown(opts: {
  dir: string;
  prefix?: string;
  self?: number;
  /** Remove the logs too (default: moved to keptLogsDir). */
  purge?: boolean;
}): Promise<DownReport> {
  let state: DemoState | undefined;
  try {
    state = readDemoState(opts.dir);
  } catch {
    state = undefined; // a corrupt state file must not stop the clean-up: the prefix scan still runs
  }
  const prefix = opts.prefix ?? state?.prefix ?? DEMO_PREFIX;
  const mine = (name: string) => name.startsWith(`${prefix}-`);
  const report: DownReport = { prefix, killed: 0, netns: [], pins: [], other: [], residue: [] };

  // 1. Processes. A live demo process is asked first (SIGTERM: it says it stops and cleans up
  //    itself); then whatever is left is killed: what the state recorded and anything inside its netns.
  const victims = new Set<number>();
  if (
    state &&
    state.pid !== (opts.self ?? process.pid) &&
    pidAlive(state.pid) &&
    cmdlineOf(state.pid).includes('demo')
  ) {
    try {
      process.kill(state.pid, 'SIGTERM');
    } catch {}
    if ((await waitGone([state.pid], 10_000)).length > 0) victims.add(state.pid);
    else report.stoppedDemo = state.pid;
  }
  for (const p of state?.processes ?? []) {
    if (p.pid !== process.pid && pidAlive(p.pid) && /node|nsenter|curl/.test(cmdlineOf(p.pid)))
      victims.add(p.pid);
  }
  const namespaces = ls(NETNS_DIR).filter(mine);
  for (const ns of namespaces) for (const pid of pidsIn(ns)) if (pid !== process.pid) victims.add(pid);
  for (const pid of victims) if (killNow(pid)) report.killed++;
  const stuck = await waitGone([...victims], 5000);
  for (const pid of stuck) report.residue.push(`process ${pid} (${cmdlineOf(pid).slice(0, 80)})`);

  // 2. BPF pins (bpffs is global, not per netns): the agents' pin dirs carry the prefix.
  const pins = new Set([
    ...(state?.pinDirs ?? []),
    ...ls(BPFFS)
      .filter(mine)
      .map((p) => join(BPFFS, p)),
  ]);
  for (const pin of pins) {
    if (!existsSync(pin)) continue;
    rmSync(pin, { recursive: true, force: true });
    report.pins.push(pin);
  }

  // 3. Namespaces: their veths, routes, ip rules, tc filters and nft tables go with them.
  for (const ns of new Set([...namespaces, ...(state?.nodes.map((n) => n.netns) ?? [])])) {
    if (!existsSync(join(NETNS_DIR, ns))) continue;
    await run('ip', ['netns', 'del', ns]).catch((err: unknown) => {
      report.residue.push(`netns ${ns}: ${(err as Error).message}`);
    });
    report.netns.push(ns);
  }

  // 4. Anything named with the prefix in the root netns (none is created there, but a crash in a
  //    future version must not leave it): links, nft tables, cgroups.
  const links = await run('ip', ['-j', 'link', 'show']).catch(() => ({ stdout: '[]' }));
  for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[]) {
    if (!mine(l.ifname)) continue;
    await run('ip', ['link', 'del', l.ifname]).catch(() => undefined);
    report.other.push(`link ${l.ifname}`);
  }
  const tables = await run('nft', ['-j', 'list', 'tables']).catch(() => ({ stdout: '{"nftables":[]}' }));
  for (const t of (
    JSON.parse(tables.stdout || '{"nftables":[]}') as {
      nftables: { table?: { family: string; name: string } }[];
    }
  ).nftables) {
    if (!t.table?.name.startsWith(prefix)) continue;
    await run('nft', ['delete', 'table', t.table.family, t.table.name]).catch(() => undefined);
    report.other.push(`nft table ${t.table.name}`);
  }
  for (const cg of ls(CGROUP_ROOT).filter(mine)) {
    try {
      rmSync(join(CGROUP_ROOT, cg), { recursive: false });
      report.other.push(`cgroup ${cg}`);
    } catch (err) {
      report.residue.push(`cgroup ${cg}: ${(err as Error).message}`);
    }
  }

  // 5. Verify: what is still there is residue.
  for (const ns of ls(NETNS_DIR).filter(mine)) report.residue.push(`netns ${ns}`);
  for (const pin of ls(BPFFS).filter(mine)) report.residue.push(`pin ${join(BPFFS, pin)}`);

  // 6. The working directory last (the state file goes only when everything else went). Its logs are
  // moved aside first, one directory per run, so a crash can still be read after `down`; --purge
  // removes them (and every earlier run's).
  if (report.residue.length === 0 && (state || existsSync(stateFileOf(opts.dir)))) {
    const logs = join(opts.dir, 'logs');
    if (!opts.purge && existsSync(logs) && ls(logs).length > 0) {
      const stamp = (state?.startedAt ?? new Date().toISOString()).replace(/[:.]/g, '-');
      const kept = join(keptLogsDir(opts.dir), stamp);
      try {
        mkdirSync(keptLogsDir(opts.dir), { recursive: true });
        renameSync(logs, kept);
        report.keptLogs = kept;
      } catch (err) {
        report.other.push(`logs not kept (${(err as Error).message})`);
      }
    }
    rmSync(opts.dir, { recursive: true, force: true });
  }
  if (opts.purge) rmSync(keptLogsDir(opts.dir), { recursive: true, force: true });
  return report;
}
