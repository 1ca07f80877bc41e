import net from 'node:net';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  NativeAddonError,
  createTransparentSocket,
  listenInNetns,
  nativeAvailable,
  setIpTransparent,
} from './index.js';

const root = process.getuid?.() === 0;
const hasV6Loopback = Object.values(os.networkInterfaces()).some((ifs) =>
  (ifs ?? []).some((i) => i.family === 'IPv6' && i.address === '::1'),
);

/** Connects to host:port and returns everything the server sent before it closed. */
function readReply(port: number, host: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const c = net.connect(port, host);
    let buf = '';
    c.on('data', (d) => {
      buf += d;
    });
    c.on('end', () => resolve(buf));
    c.on('error', reject);
  });
}

describe.skipIf(!nativeAvailable() || !root)('ambit native addon', () => {
  it('sets IP_TRANSPARENT on a listening server', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      expect(() => setIpTransparent(server)).not.toThrow();
    } finally {
      server.close();
    }
  });

  it('binds a transparent socket to an address this host does not own', () => {
    // 203.0.113.7 (TEST-NET-3) is not local: plain bind() would fail with EADDRNOTAVAIL.
    const fd = createTransparentSocket('203.0.113.7', 0);
    const s = new net.Socket({ fd });
    s.destroy();
  });

  it('names the bad argument in its error', () => {
    expect(() => createTransparentSocket('not-an-ip', 0)).toThrow(/not-an-ip.*not an IPv4 or IPv6 address/);
    expect(() => setIpTransparent(999_999)).toThrow(NativeAddonError);
    expect(() => listenInNetns('/nonexistent/netns', '0.0.0.0', 0)).toThrow(/ENOENT|No such file/);
  });

  it('listens in its own namespace when no netns path is given', async () => {
    const fd = listenInNetns(undefined, '127.0.0.1', 0, { transparent: true });
    const server = net.createServer((s) => s.end('ok'));
    await new Promise<void>((r) => server.listen({ fd }, r));
    const port = (server.address() as net.AddressInfo).port;
    const reply = await readReply(port, '127.0.0.1');
    server.close();
    expect(reply).toBe('ok');
  });

  it.skipIf(!hasV6Loopback)('does the same for IPv6 (IPV6_TRANSPARENT)', async () => {
    const fd = listenInNetns(undefined, '::1', 0, { transparent: true });
    const server = net.createServer((s) => s.end(s.remoteAddress ?? ''));
    await new Promise<void>((r) => server.listen({ fd }, r));
    const port = (server.address() as net.AddressInfo).port;
    // A client bound to a v6 address this host does not own (documentation prefix 2001:db8::/32).
    const cfd = createTransparentSocket('2001:db8::7', 0);
    new net.Socket({ fd: cfd }).destroy();
    const reply = await readReply(port, '::1');
    server.close();
    expect(reply).toBe('::1');
  });
});
