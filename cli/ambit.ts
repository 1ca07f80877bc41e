#!/usr/bin/env node
// `ambit`: the operator CLI. One file per command group registers its subcommands here.
// Groups are imported lazily: a long-running component (`ambit ztunnel`, `ambit waypoint`) loads only
// its own module graph, which keeps its idle RSS down (bench/ztunnel measured ~20 MB for the others).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

type Register = (program: Command) => void;

const GROUPS: Record<string, () => Promise<Register>> = {
  demo: async () => (await import('./demo.js')).registerDemo,
  'bpf-agent': async () => (await import('./bpf-agent.js')).registerBpfAgent,
  ca: async () => (await import('./ca.js')).registerCa,
  policy: async () => (await import('./policy.js')).registerPolicy,
  state: async () => (await import('./state.js')).registerState,
  waypoint: async () => (await import('./waypoint.js')).registerWaypoint,
  status: async () => (await import('./status.js')).registerStatus,
  ztunnel: async () => (await import('./ztunnel.js')).registerZtunnel,
  'ztunnel-config': async () => (await import('./ztunnel-config.js')).registerZtunnelConfig,
  'waypoint-controller': async () => (await import('./waypoint-controller.js')).registerWaypointController,
};

/** The version in the package's package.json (cli/ambit.ts and dist/cli/ambit.js both sit below it). */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (!existsSync(path)) continue;
    const pkg = JSON.parse(readFileSync(path, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'ambit' && pkg.version) return pkg.version;
  }
  return 'unknown';
}

async function main(): Promise<void> {
  const program = new Command();
  program
    .name('ambit')
    .description('Ambit: a sidecar-less (ambient) service mesh speaking Istio ambient contracts')
    .version(packageVersion(), '-V, --version', 'print the ambit version')
    .showHelpAfterError();

  // The first word names the group; anything else (help, a typo) loads them all so commander can
  // list or suggest every command.
  const first = process.argv[2];
  // ztunnel's V8 tuning (ztunnel/runtime.ts) goes in before its module graph loads: the young
  // generation must not have grown yet when its growth is frozen.
  if (first === 'ztunnel') (await import('../ztunnel/runtime.js')).tuneZtunnelProcess();
  const wanted =
    first === '--version' || first === '-V'
      ? []
      : first !== undefined && first in GROUPS
        ? [first]
        : Object.keys(GROUPS);
  for (const name of wanted) (await GROUPS[name]!())(program);

  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  console.error(`ambit: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(2);
});
