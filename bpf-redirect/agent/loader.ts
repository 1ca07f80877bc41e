// Loads steer_tc.bpf.o once into a bpffs directory the agent owns and pins its maps, so every tc
// attachment shares one set of maps (`tc … bpf obj` would give each interface private copies,
// docs/capture.md §5). Each start loads a new program *generation* that reuses the pinned maps
// (`bpftool prog loadall … map name X pinned P`); the agent then `tc filter replace`s it onto every
// interface — an atomic swap that keeps map state, so an upgrade or a restart never drops a flow —
// and unpins older generations (attached filters hold their own reference).
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from './command.js';
import { BpfAgentError } from './errors.js';
import { MAP_NAMES } from './maps.js';

export const STEER_OBJECT = 'steer_tc.bpf.o';
const BPFFS = '/sys/fs/bpf';

/** Mount bpffs at /sys/fs/bpf when missing (not mounted by default here; docs/capture.md §5). */
export async function ensureBpffs(): Promise<void> {
  const found = await runCommand('findmnt', ['-n', '-t', 'bpf', BPFFS]).catch(() => '');
  if (found.trim()) return;
  try {
    await runCommand('mount', ['-t', 'bpf', 'bpf', BPFFS]);
  } catch (err) {
    const again = await runCommand('findmnt', ['-n', '-t', 'bpf', BPFFS]).catch(() => '');
    if (!again.trim())
      throw new BpfAgentError('BPF_UNAVAILABLE', `cannot mount bpffs at ${BPFFS}: ${String(err)}`);
  }
}

export interface LoadedSteer {
  progPin: string;
  generation: string;
  /** True when the maps already existed (agent restart / upgrade): their state was kept. */
  reusedMaps: boolean;
}

export async function loadSteer(pinDir: string, objDir: string): Promise<LoadedSteer> {
  const obj = join(objDir, STEER_OBJECT);
  if (!existsSync(obj)) {
    throw new BpfAgentError('BPF_UNAVAILABLE', `${obj} is missing: run \`npm run build:bpf\``);
  }
  await ensureBpffs();
  const mapsDir = join(pinDir, 'maps');
  const present = MAP_NAMES.filter((n) => existsSync(join(mapsDir, n)));
  if (present.length > 0 && present.length < MAP_NAMES.length) {
    // A crash between pins: an incomplete set cannot be shared consistently; start the maps afresh.
    await rm(mapsDir, { recursive: true, force: true });
  }
  const reusedMaps = present.length === MAP_NAMES.length;
  const generation = `g${Date.now().toString(36)}`;
  const genDir = join(pinDir, 'progs', generation);
  await mkdir(join(pinDir, 'progs'), { recursive: true });
  const mapArgs = reusedMaps
    ? MAP_NAMES.flatMap((n) => ['map', 'name', n, 'pinned', join(mapsDir, n)])
    : ['pinmaps', mapsDir];
  try {
    await runCommand('bpftool', ['prog', 'loadall', obj, genDir, 'type', 'tc', ...mapArgs], {
      timeoutMs: 30_000,
    });
  } catch (err) {
    await rm(genDir, { recursive: true, force: true }).catch(() => undefined);
    throw new BpfAgentError('BPF_UNAVAILABLE', `loading ${obj} failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { progPin: join(genDir, 'steer'), generation, reusedMaps };
}

/** Unpin program generations other than `keep` (call after every filter points at `keep`). */
export async function pruneGenerations(pinDir: string, keep: string): Promise<string[]> {
  const dir = join(pinDir, 'progs');
  const gens = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const g of gens) {
    if (g === keep) continue;
    await rm(join(dir, g), { recursive: true, force: true });
    removed.push(g);
  }
  return removed;
}

export async function removePins(pinDir: string): Promise<void> {
  await rm(pinDir, { recursive: true, force: true });
}
