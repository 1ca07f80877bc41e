// The image, built and booted (issue 13): `npm run image` (image/build.sh) builds the Dockerfile with
// buildah on bases made here from Debian packages plus the pinned Node, then podman runs it:
// `ambit --version`, the CA as the non-root default user with no capability, and a ztunnel per node
// with only the capabilities the ztunnel chart grants, carrying a real pod-to-VIP connection over
// HBONE between two netns nodes. Start times and the image size are printed (figures, not asserted).
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mtlsClosedSeries } from './ztunnel-world.js';
import { APP_PORT, ImageWorld, MESH_UID, VIP, podmanArgs, podmanRunLimits } from './image-world.js';

const execFileP = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

const missing = ['buildah', 'podman', 'mmdebstrap', 'runc'].filter((tool) => {
  try {
    execFileSync(tool, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0)
  console.warn(`image test skipped: ${missing.join(', ')} not installed (bash .ci/setup installs them)`);

// CAP_NET_ADMIN (12) and CAP_NET_RAW (13): what charts/ambit-ztunnel grants, nothing else.
const ZTUNNEL_CAPS = (1n << 12n) | (1n << 13n);

function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );
}

describe.skipIf(missing.length > 0)('the image, built with buildah and booted with podman', () => {
  let image: string;
  let world: ImageWorld | undefined;

  beforeAll(async () => {
    const t0 = Date.now();
    const { stdout, stderr } = await execFileP('bash', [`${ROOT}image/build.sh`], {
      timeout: 1_500_000,
      maxBuffer: 64 * 1024 * 1024,
    }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`image/build.sh failed: ${err.message}\n${(err.stderr ?? '').slice(-4000)}`);
    });
    image = /^IMAGE=(.+)$/m.exec(stdout)![1]!;
    const size = Number(/^SIZE_BYTES=(\d+)$/m.exec(stdout)![1]);
    console.log(
      `${stderr.trim()}\nimage: ${image}, ${(size / 1e6).toFixed(1)} MB uncompressed, ready in ${Math.round((Date.now() - t0) / 1000)} s`,
    );
  }, 1_600_000);

  afterAll(async () => {
    await world?.teardown();
  });

  it('runs `ambit --version` as the non-root default user', async () => {
    const t0 = Date.now();
    const { stdout } = await execFileP(
      'podman',
      [...podmanArgs(), 'run', ...podmanRunLimits(), '--rm', '--network', 'none', image, '--version'],
      {
        timeout: 60_000,
      },
    );
    console.log(`image: podman run ${image} --version took ${Date.now() - t0} ms`);
    expect(stdout.trim()).toBe(VERSION);
    const user = (await execFileP('podman', ['image', 'inspect', '--format', '{{.Config.User}}', image]))
      .stdout;
    expect(user.trim()).toBe(`${MESH_UID}:${MESH_UID}`);
    const node = (
      await execFileP('podman', [
        ...podmanArgs(),
        'run',
        ...podmanRunLimits(),
        '--rm',
        '--network',
        'none',
        '--entrypoint',
        'node',
        image,
        '--version',
      ])
    ).stdout;
    expect(node.trim()).toBe(`v${process.env.AMBIT_EXPECT_NODE ?? readNodePin()}`);
  }, 120_000);

  it('boots the CA (uid 1337, no capability) and a ztunnel per node (NET_ADMIN + NET_RAW only) that carry a pod-to-VIP connection over HBONE', async () => {
    world = await ImageWorld.create(image);
    const w = world;
    for (const [role, c] of w.containers) console.log(`image: ${role} container ready in ${c.startMs} ms`);

    const ca = procStatus(w.pid('ca'));
    expect(ca.Uid?.split(/\s+/)[0]).toBe(String(MESH_UID));
    expect(BigInt(`0x${ca.CapEff}`)).toBe(0n);
    for (const n of ['a', 'b']) {
      const zt = procStatus(w.pid(`zt-${n}`));
      expect(zt.Uid?.split(/\s+/)[0]).toBe('0');
      expect(BigInt(`0x${zt.CapEff}`), `ztunnel on ${n}`).toBe(ZTUNNEL_CAPS);
      expect(BigInt(`0x${zt.CapBnd}`), `ztunnel on ${n}`).toBe(ZTUNNEL_CAPS);
    }

    const a1 = w.client!;
    const c = await a1.connect(VIP, 80);
    expect(c.ok, c.error).toBe(true);
    const who = await a1.send(c.conn!, 'whoami');
    if (who.line === undefined) {
      for (const [role, k] of w.containers)
        console.log(`--- ${role} container output:\n${k.logs().slice(-4000)}`);
      for (const [n, a] of w.agents) console.log(`--- agent ${n}:\n${a.logs().slice(-2000)}`);
    }
    expect(who.error).toBeUndefined();
    // The server app sees the source pod as its peer: the containers' ztunnels kept the source IP.
    expect(who.line).toMatch(
      new RegExp(`^peer ${w.ip('a1').replace(/\./g, '\\.')}:\\d+ local ${w.ip('b1')}:${APP_PORT}$`),
    );
    await a1.close(c.conn!);

    // Both container ztunnels count it as mutual TLS between the two SPIFFE identities.
    const { src, dst } = await mtlsClosedSeries((n) => w.curl(n, 'http://127.0.0.1:15020/metrics'));
    expect(src[0]?.value).toBeGreaterThanOrEqual(1);
    expect(dst[0]?.value).toBeGreaterThanOrEqual(1);
  }, 180_000);
});

function readNodePin(): string {
  const env = readFileSync(new URL('../.ci/node.env', import.meta.url), 'utf8');
  return /^NODE_VERSION=(.+)$/m.exec(env)![1]!.trim();
}
