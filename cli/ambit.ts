#!/usr/bin/env node
// `ambit`: the operator CLI. One file per command group registers its subcommands here.
// Groups are imported lazily: a long-running component (`ambit ztunnel`, `ambit waypoint`) loads only
// its own module graph, which keeps its idle RSS down (bench/ztunnel measured ~20 MB for the others).
// Conventions (cli/common/output.ts): exit 0 ok, 1 failure or finding, 2 usage; a typo prints one line
// and a hint, not the whole help; `--version`; `--log-level` before the command sets LOG_LEVEL for all.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT_FAILURE, EXIT_USAGE } from './common/output.js';

type Register = (program: Command) => void;

const GROUPS: Record<string, () => Promise<Register>> = {
  demo: async () => (await import('./demo.js')).registerDemo,
  'bpf-agent': async () => (await import('./bpf-agent.js')).registerBpfAgent,
  ca: async () => (await import('./ca.js')).registerCa,
  check: async () => (await import('./check.js')).registerCheck,
  completion: async () => (await import('./completion.js')).registerCompletion,
  observe: async () => (await import('./observe.js')).registerObserve,
  policy: async () => (await import('./policy.js')).registerPolicy,
  state: async () => (await import('./state.js')).registerState,
  waypoint: async () => (await import('./waypoint.js')).registerWaypoint,
  status: async () => (await import('./status.js')).registerStatus,
  ztunnel: async () => (await import('./ztunnel.js')).registerZtunnel,
  'ztunnel-config': async () => (await import('./ztunnel-config.js')).registerZtunnelConfig,
  'waypoint-controller': async () => (await import('./waypoint-controller.js')).registerWaypointController,
};

/** The package version, from the package.json next to dist/ (or to the sources under vitest). */
export function ambitVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const p = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (p.name === 'ambit' && p.version) return p.version;
    } catch {}
  }
  return 'unknown';
}

const LOG_LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'];

/** Builds the program with every group (help, completion) or only the one the first word names. */
export async function buildProgram(first?: string): Promise<Command> {
  const program = new Command();
  program
    .name('ambit')
    .description('Ambit: a sidecar-less (ambient) service mesh speaking Istio ambient contracts')
    .version(ambitVersion(), '-v, --version', 'print the version')
    .option('--log-level <level>', `log level of every component: ${LOG_LEVELS.join(' | ')}`)
    .showSuggestionAfterError(true)
    .showHelpAfterError("(run 'ambit --help' or 'ambit <command> --help' for usage)")
    .exitOverride()
    .hook('preAction', (cmd) => {
      const level = cmd.opts().logLevel as string | undefined;
      if (level === undefined) return;
      if (!LOG_LEVELS.includes(level)) {
        cmd.error(`--log-level "${level}": one of ${LOG_LEVELS.join(', ')}`, {
          exitCode: EXIT_USAGE,
          code: 'ambit.logLevel',
        });
      }
      process.env.LOG_LEVEL = level;
    });
  // `completion` describes every command, so it loads them all too.
  const wanted =
    first !== undefined && first in GROUPS && first !== 'completion' ? [first] : Object.keys(GROUPS);
  for (const name of wanted) (await GROUPS[name]!())(program);
  // Subcommands copy these settings only when created after them: apply them down the tree.
  const walk = (c: Command): void => {
    for (const sub of c.commands) {
      sub.exitOverride();
      sub.showHelpAfterError(`(run '${fullName(sub)} --help' for usage)`);
      walk(sub);
    }
  };
  walk(program);
  return program;
}

function fullName(c: Command): string {
  const names: string[] = [];
  for (let x: Command | null = c; x; x = x.parent) names.unshift(x.name());
  return names.join(' ');
}

async function main(): Promise<void> {
  // The first word (after global options) names the group; anything else (help, a typo) loads them all
  // so commander can list or suggest every command.
  const args = process.argv.slice(2);
  let i = 0;
  while (i < args.length && args[i]!.startsWith('-')) {
    // Set before the commands register: their own --log-level defaults read LOG_LEVEL.
    if (args[i] === '--log-level' && args[i + 1]) process.env.LOG_LEVEL = args[i + 1];
    i += args[i] === '--log-level' ? 2 : 1;
  }
  const first = args[i];
  // ztunnel's V8 tuning (ztunnel/runtime.ts) goes in before its module graph loads: the young
  // generation must not have grown yet when its growth is frozen.
  if (first === 'ztunnel') (await import('../ztunnel/runtime.js')).tuneZtunnelProcess();
  const program = await buildProgram(first);
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Help and --version exit 0; every other commander error is a usage mistake (it already printed it).
    const ok = ['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code);
    process.exit(ok ? 0 : EXIT_USAGE);
  }
  const e = err as { exitCode?: number; message?: string };
  console.error(`ambit: ${e?.message ?? String(err)}`);
  process.exit(typeof e?.exitCode === 'number' ? e.exitCode : EXIT_FAILURE);
});
