// Runs the real `ambit demo up` (the built CLI) for the demo tests, with a per-run prefix, directory and
// a free port so test files never collide with each other or with a user's demo, and `ambit demo down`.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DemoState } from '../cli/demo/state-file.js';
import { distPath } from './harness/topology.js';

export interface RunningDemo {
  child: ChildProcess;
  prefix: string;
  dir: string;
  url: string;
  manifests: string;
  output(): string;
  exited: Promise<number | null>;
  state(): DemoState;
}

/** `ambd` + 4 hex: can never start with the default `ambdemo-` prefix, nor be a harness `amb` + 4 prefix. */
export function demoPrefix(): string {
  return `ambd${randomBytes(2).toString('hex')}`;
}

export async function startDemo(
  prefix = demoPrefix(),
  timeoutMs = 110_000,
  extraArgs: string[] = [],
): Promise<RunningDemo> {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const child = spawn(
    process.execPath,
    [distPath('cli/ambit.ts'), 'demo', 'up', '--dir', dir, '--prefix', prefix, '--port', '0', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const until = Date.now() + timeoutMs;
  let url: string | undefined;
  while (!url) {
    url = /Flow view:\s+(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
    if (url) break;
    if (child.exitCode !== null) throw new Error(`ambit demo up exited ${child.exitCode}:\n${out}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`ambit demo up printed no flow view address in ${timeoutMs / 1000} s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const manifests = /Manifests:\s+(\S+)/.exec(out)?.[1] ?? join(dir, 'manifests');
  return {
    child,
    prefix,
    dir,
    url,
    manifests,
    output: () => out,
    exited,
    state: () => JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as DemoState,
  };
}

/** Runs the built `ambit` with `args`; resolves with its exit code (1 when it died otherwise) and output. */
export function ambit(
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [distPath('cli/ambit.ts'), ...args],
      { timeout: opts.timeoutMs ?? 60_000, ...(opts.env ? { env: opts.env } : {}) },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

export function demoDown(d: { dir: string; prefix: string }) {
  return ambit(['demo', 'down', '--dir', d.dir, '--prefix', d.prefix, '--purge']);
}
