// The demo's state file: everything `ambit demo up` created, written BEFORE each thing is created, so
// `ambit demo down` (and `ambit status`) can find and remove it all even after a crash or `kill -9`
// of the demo process. Kernel objects are also found by name prefix, so a stale or partial file is enough.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The fixed prefix of every netns, veth and BPF pin the demo creates (`down` finds them by it). */
export const DEMO_PREFIX = 'ambdemo';
/** Where the demo keeps its state file, working manifests, CA files and logs. */
export const DEFAULT_DEMO_DIR = '/run/ambit-demo';

export class DemoError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'DemoError';
  }
}

export interface DemoProcess {
  role: string;
  pid: number;
  /** The netns it runs in (absent: the root netns). */
  netns?: string;
  log?: string;
}

export interface DemoNode {
  name: string;
  netns: string;
  ip: string;
  pinDir: string;
  agentStatusFile: string;
}

export interface DemoPod {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  netns: string;
  enrolled: boolean;
  identity: string;
  run?: string;
}

export interface DemoState {
  version: 1;
  /** The `ambit demo up` process. */
  pid: number;
  startedAt: string;
  prefix: string;
  dir: string;
  manifestsDir: string;
  fabricNetns: string;
  webUrl?: string;
  caAddress?: string;
  captureMode?: 'ebpf' | 'nftables';
  captureFallbackReason?: string;
  waypoint?: 'running' | 'unavailable';
  nodes: DemoNode[];
  pods: DemoPod[];
  processes: DemoProcess[];
  /** Bpffs directories the demo (or its agents) pin into. */
  pinDirs: string[];
  /** Set once every step of `up` completed. */
  ready?: boolean;
}

export function stateFileOf(dir: string): string {
  return join(dir, 'state.json');
}

export function readDemoState(dir: string): DemoState | undefined {
  const file = stateFileOf(dir);
  if (!existsSync(file)) return undefined;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as DemoState;
    if (s.version !== 1 || typeof s.prefix !== 'string') {
      throw new DemoError('BAD_STATE', `${file}: not an ambit demo state file (version/prefix missing)`);
    }
    return s;
  } catch (err) {
    if (err instanceof DemoError) throw err;
    throw new DemoError('BAD_STATE', `${file}: unreadable demo state: ${(err as Error).message}`);
  }
}

/** Atomic write (rename), so a crash never leaves half a file for `down` to choke on. */
export function writeDemoState(state: DemoState): void {
  const file = stateFileOf(state.dir);
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, file);
}

/** Whether a pid is alive (signal 0); a zombie or a reused pid cannot be told apart cheaply, so callers
 *  also check /proc/<pid>/cmdline before killing. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}
