// Packaging (issue 13): `npm pack` holds what `ambit` needs at run time. The tarball of this (built)
// tree is installed into an empty directory the way a user installs it, and the installed copy —
// not the repository — answers `ambit --version`, finds its eBPF objects where the node agent looks
// by default, and loads its N-API addons (one real IP_TRANSPARENT setsockopt). A tree that is not
// built refuses to pack, naming each missing file.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const execFileP = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const VERSION = (await import('../package.json', { with: { type: 'json' } })).default.version;

let work: string;
let installed: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ambit-pack-'));
  const { stdout } = await execFileP('npm', ['pack', '--json', '--pack-destination', work], {
    cwd: ROOT,
    timeout: 120_000,
  });
  const tarball = join(work, (JSON.parse(stdout) as { filename: string }[])[0]!.filename);
  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), '{"name":"ambit-pack-check","private":true}\n');
  // Production dependencies only, from the npm cache `npm ci` filled (the registry when it lacks one).
  await execFileP(
    'npm',
    ['install', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', tarball],
    { cwd: app, timeout: 240_000 },
  );
  installed = join(app, 'node_modules', 'ambit');
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('npm pack', () => {
  it('the installed package runs `ambit --version` from its bin link', async () => {
    const { stdout } = await execFileP(join(installed, '..', '.bin', 'ambit'), ['--version'], {
      timeout: 30_000,
    });
    expect(stdout.trim()).toBe(VERSION);
  });

  it('the installed package finds its eBPF objects where the agent looks by default and loads its addons', async () => {
    const probe = join(work, 'probe.mjs');
    writeFileSync(
      probe,
      `import net from 'node:net';
import { createRequire } from 'node:module';
const pkg = process.argv[2];
const { defaultConfig } = await import(pkg + '/dist/bpf-redirect/agent/config.js');
const native = await import(pkg + '/dist/ztunnel/native/index.js');
const objDir = defaultConfig('n1').objDir;
const server = net.createServer().listen(0, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
native.setIpTransparent(server);
server.close();
createRequire(import.meta.url)(objDir + '/ambit_bpfmap.node');
console.log(JSON.stringify({ objDir, transparent: true }));
`,
    );
    const { stdout } = await execFileP(process.execPath, [probe, installed], { timeout: 30_000 });
    const r = JSON.parse(stdout) as { objDir: string; transparent: boolean };
    expect(r.objDir).toBe(join(installed, 'bpf-redirect', 'build'));
    expect(readdirSync(r.objDir).sort()).toEqual([
      'ambit_bpfmap.node',
      'sock_connect.bpf.o',
      'steer_tc.bpf.o',
    ]);
    expect(r.transparent).toBe(true);
    // The Kubernetes CA's gRPC definition travels with it.
    expect(readdirSync(join(installed, 'proto'))).toContain('ca.proto');
  });

  it('refuses to pack a tree that is not built, naming each missing file', async () => {
    const bare = join(work, 'bare');
    mkdirSync(join(bare, 'scripts'), { recursive: true });
    copyFileSync(join(ROOT, 'scripts/check-pack.mjs'), join(bare, 'scripts/check-pack.mjs'));
    const err = await execFileP(process.execPath, [join(bare, 'scripts/check-pack.mjs')]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    for (const f of [
      'dist/cli/ambit.js',
      'bpf-redirect/build/steer_tc.bpf.o',
      'bpf-redirect/build/sock_connect.bpf.o',
      'ztunnel/native/build/ambit_native.node',
    ])
      expect(err?.stderr).toContain(`missing ${f}`);
  });
});
