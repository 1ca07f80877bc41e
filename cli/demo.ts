// `ambit demo up|down`: the one-machine mesh (docs/architecture.md §8, issue 8). The work is in cli/demo/: plan.ts
// (manifests → nodes/pods), up.ts (build and run), down.ts (remove everything, also after a crash),
// flows.ts + web.ts + web/ (the flow view). `ambit demo ca-server` is the CA process `up` starts.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { repoRoot } from '../netns/topology.js';
import { runDemoCa } from './demo/ca-process.js';
import { demoDown, keptLogsDir } from './demo/down.js';
import { DEFAULT_DEMO_DIR, DEMO_PREFIX, DemoError } from './demo/state-file.js';
import { demoUp } from './demo/up.js';

interface UpFlags {
  dir: string;
  manifests?: string;
  port: string;
  prefix: string;
  capture: string;
}

function checkPrefix(prefix: string): string {
  // Kernel names are `<prefix>-n-<node>` / `<prefix>-p-<pod>`; the harness allows 3-8 characters.
  if (!/^[a-z][a-z0-9]{2,7}$/.test(prefix)) {
    throw new DemoError(
      'BAD_FLAG',
      `--prefix "${prefix}": 3-8 lowercase letters/digits, starting with a letter`,
    );
  }
  return prefix;
}

function fail(err: unknown): never {
  console.error(`ambit demo: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}

export function registerDemo(program: Command): void {
  const demo = program.command('demo').description('the one-machine mesh demo (needs root)');
  demo
    .command('up')
    .description(
      'build two nodes and their pods as network namespaces, run the CA, ztunnels, capture agent, waypoint and sample apps, and serve the flow view',
    )
    .option(
      '--dir <dir>',
      'state file, working manifests, CA files and logs',
      process.env.AMBIT_DEMO_DIR ?? DEFAULT_DEMO_DIR,
    )
    .option('-m, --manifests <dir>', 'manifests to copy into the working directory (default examples/demo)')
    .option(
      '--port <port>',
      'flow view port on 127.0.0.1 (0 = any free port)',
      process.env.AMBIT_DEMO_PORT ?? '15080',
    )
    .option(
      '--prefix <name>',
      'name prefix of every netns / BPF pin the demo creates',
      process.env.AMBIT_DEMO_PREFIX ?? DEMO_PREFIX,
    )
    .option(
      '--capture <mode>',
      'auto | ebpf | nftables (auto: eBPF, nftables TPROXY when eBPF cannot load)',
      'auto',
    )
    .action(async (f: UpFlags) => {
      try {
        const port = Number(f.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new DemoError('BAD_FLAG', `--port "${f.port}" is not 0-65535`);
        if (!['auto', 'ebpf', 'nftables'].includes(f.capture)) {
          throw new DemoError('BAD_FLAG', `--capture "${f.capture}": one of auto, ebpf, nftables`);
        }
        await demoUp({
          dir: resolve(f.dir),
          prefix: checkPrefix(f.prefix),
          manifests: resolve(f.manifests ?? `${repoRoot()}/examples/demo`),
          port,
          captureMode: f.capture,
          out: (line) => console.log(line),
        });
        process.exit(0);
      } catch (err) {
        fail(err);
      }
    });
  demo
    .command('down')
    .description(
      'remove everything the demo created (processes, netns, veths, BPF pins, tc, ip rules, nft), also after a crash',
    )
    .option('--dir <dir>', 'the demo directory (state file)', process.env.AMBIT_DEMO_DIR ?? DEFAULT_DEMO_DIR)
    .option(
      '--prefix <name>',
      'name prefix to sweep (default: from the state file, else ambdemo)',
      process.env.AMBIT_DEMO_PREFIX,
    )
    .option('--purge', 'also delete the logs (default: moved to <dir>-logs/<start time>)')
    .action(async (f: { dir: string; prefix?: string; purge?: boolean }) => {
      try {
        if (process.getuid?.() !== 0)
          throw new DemoError(
            'NOT_ROOT',
            'ambit demo down must run as root (it deletes network namespaces and BPF pins)',
          );
        const r = await demoDown({
          dir: resolve(f.dir),
          ...(f.prefix ? { prefix: checkPrefix(f.prefix) } : {}),
          ...(f.purge ? { purge: true } : {}),
        });
        if (r.residue.length > 0) throw new DemoError('RESIDUE', `could not remove: ${r.residue.join('; ')}`);
        const what = `${r.netns.length} network namespaces, ${r.pins.length} BPF pin dirs, ${r.killed} processes${r.other.length ? `, ${r.other.join(', ')}` : ''}`;
        console.log(
          r.stoppedDemo !== undefined
            ? `ambit demo down: the running demo (pid ${r.stoppedDemo}) stopped and removed what it created; swept ${what} more (prefix ${r.prefix}); nothing left`
            : `ambit demo down: removed ${what} (prefix ${r.prefix}); nothing left`,
        );
        const kept = r.keptLogs ?? (f.purge ? undefined : keptLogsDir(resolve(f.dir)));
        if (kept && existsSync(kept))
          console.log(`logs kept in ${kept} (\`ambit demo down --purge\` deletes them)`);
      } catch (err) {
        fail(err);
      }
    });
  demo
    .command('ca-server', { hidden: true })
    .description('the demo CA process (started by `ambit demo up`)')
    .requiredOption('--dir <dir>')
    .requiredOption('--tokens <file>')
    .requiredOption('--listen <host:port>')
    .requiredOption('-m, --manifests <dir>')
    .action(async (f: { dir: string; tokens: string; listen: string; manifests: string }) => {
      await runDemoCa(f);
    });
}
