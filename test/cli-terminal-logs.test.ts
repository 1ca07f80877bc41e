// Logs as a person reads them on a terminal, JSON lines for everything else (issue 18 §5): `ambit ca`
// run under a pseudo-terminal (util-linux `script`) prints pino-pretty lines; through a pipe, or with
// AMBIT_LOG_FORMAT=json on the terminal, the same lines are JSON a collector parses.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { distPath } from './harness/topology.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-tty-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `ambit ca` for ~2.5 s, under a pty when `tty`; its output (the pty merges stdout and stderr). */
function caOutput(tty: boolean, env: Record<string, string> = {}): Promise<string> {
  const cmd = `timeout -s INT 2.5 ${process.execPath} ${distPath('cli/ambit.ts')} ca --dir ${join(dir, String(Math.random()))} --listen 127.0.0.1:0`;
  const [file, args] = tty ? ['script', ['-qec', cmd, '/dev/null']] : ['sh', ['-c', `${cmd} 2>&1`]];
  return new Promise((resolve) => {
    execFile(file, args as string[], { timeout: 15_000, env: { ...process.env, ...env } }, (_e, stdout) =>
      resolve(String(stdout)),
    );
  });
}

describe('log format follows the terminal', () => {
  it('pretty on a terminal, JSON through a pipe and with AMBIT_LOG_FORMAT=json', async () => {
    const onTty = await caOutput(true);
    // pino-pretty: `[HH:MM:ss.mmm] INFO (ambit-ca): message`, coloured on a terminal.
    expect(onTty).toMatch(
      /\[\d\d:\d\d:\d\d\.\d{3}\] .*INFO.* \(ambit-ca\): .*ca: serving IstioCertificateService/,
    );
    expect(onTty).not.toContain('"level":');
    const piped = await caOutput(false);
    const line = piped.split('\n').find((l) => l.includes('serving IstioCertificateService'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ level: 30, name: 'ambit-ca' });
    const forced = await caOutput(true, { AMBIT_LOG_FORMAT: 'json' });
    expect(forced).toMatch(/\{"level":30,.*"msg":"ca: serving IstioCertificateService"/);
  }, 30_000);
});
