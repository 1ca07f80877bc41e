import net from 'node:net';
import { getDefaultHighWaterMark, setDefaultHighWaterMark } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RELAY_HIGH_WATER_MARK, relay } from './relay.js';

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function listen(onSocket: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, onSocket);
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** A proxy on loopback that relays each accepted socket to `upstreamPort`, reporting what relay() saw. */
async function proxy(upstreamPort: number) {
  const seen: { request: number; response: number; error?: string }[] = [];
  const ups: net.Socket[] = [];
  const port = await listen(async (down) => {
    const up = await dial(upstreamPort);
    ups.push(up);
    const counts = { request: 0, response: 0 };
    const r = await relay(down, up, {
      onRequestBytes: (n) => {
        counts.request += n;
      },
      onResponseBytes: (n) => {
        counts.response += n;
      },
    });
    seen.push({ ...counts, ...(r.error ? { error: r.error.message } : {}) });
  });
  return { port, seen, ups };
}

describe('relay', () => {
  it('maps a client FIN to a half-close upstream and still delivers the answer, counting both ways', async () => {
    // The server answers only after the client finished sending: it needs the half-close to arrive.
    const upstream = await listen((s) => {
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
      });
      s.on('end', () => s.end(`got ${n} bytes`));
    });
    const p = await proxy(upstream);
    const client = await dial(p.port);
    const payload = Buffer.alloc(300_000, 7);
    client.end(payload);
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      client.on('data', (d: Buffer) => {
        text += d.toString();
      });
      client.on('end', () => resolve(text));
    });
    expect(answer).toBe('got 300000 bytes');
    for (let i = 0; i < 100 && p.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(p.seen).toEqual([{ request: 300_000, response: 'got 300000 bytes'.length }]);
  });

  it('turns an upstream reset into a reset of the client and reports it', async () => {
    const upstream = await listen((s) => {
      s.once('data', () => s.resetAndDestroy());
    });
    const p = await proxy(upstream);
    const client = await dial(p.port);
    const outcome = await new Promise<string>((resolve) => {
      client.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      client.on('close', () => resolve('closed'));
      client.write('hello');
    });
    expect(outcome).toBe('ECONNRESET');
    for (let i = 0; i < 100 && p.seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(p.seen[0]?.error).toMatch(/ECONNRESET|reset/i);
  });

  it('delivers the bytes read from the upstream before it failed, then resets the client', async () => {
    // The upstream's last bytes and its failure reach the relay in one loop turn (as an HTTP/2 server's
    // GOAWAY and then its reset do): the bytes after the turn's first are still in the relay's corked
    // batch when it learns of the failure. Resetting the client at once dropped them.
    const chunk = (n: number) => Buffer.alloc(16 * 1024, n);
    const upstream = await listen((s) => {
      s.once('data', async () => {
        // Three separate reads' worth, so they sit in the proxy's buffer as three chunks.
        for (let i = 1; i <= 3; i++) {
          s.write(chunk(i));
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      s.on('error', () => undefined);
    });
    const seen: { response: number; error?: string }[] = [];
    const port = await listen(async (down) => {
      const up = await dial(upstream);
      // A previous reader (the waypoint's protocol detection) held the upstream paused: its chunks are
      // emitted in one turn when the relay takes it over.
      up.pause();
      up.write('go');
      for (let i = 0; i < 100 && up.readableLength < 3 * 16 * 1024; i++)
        await new Promise((r) => setTimeout(r, 10));
      let response = 0;
      const relayed = relay(down, up, {
        onRequestBytes: () => undefined,
        onResponseBytes: (n) => {
          response += n;
        },
      });
      // Registered after the relay's own listener: the upstream fails right after its second chunk.
      let chunks = 0;
      up.on('data', () => {
        if (++chunks === 2) up.destroy(new Error('upstream failed'));
      });
      const r = await relayed;
      seen.push({ response, ...(r.error ? { error: r.error.message } : {}) });
    });
    const client = await dial(port);
    const received: Buffer[] = [];
    const outcome = await new Promise<string>((resolve) => {
      client.on('data', (d: Buffer) => received.push(d));
      client.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      client.on('end', () => resolve('end'));
    });
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    // Every byte the relay read from the upstream (its second chunk, and what Node still emitted in that
    // turn), in order.
    const relayed = seen[0]?.response ?? 0;
    expect(relayed).toBeGreaterThanOrEqual(2 * 16 * 1024);
    const sent = Buffer.concat([chunk(1), chunk(2), chunk(3)]).subarray(0, relayed);
    expect(Buffer.concat(received).length).toBe(relayed);
    expect(Buffer.concat(received).equals(sent)).toBe(true);
    // A reset stays a reset, after the bytes, and the relay reports why.
    expect(outcome).toBe('ECONNRESET');
    expect(seen[0]?.error).toBe('upstream failed');
  });

  describe('with the buffer limit runZtunnel sets for the process', () => {
    const before = getDefaultHighWaterMark(false);
    beforeAll(() => setDefaultHighWaterMark(false, RELAY_HIGH_WATER_MARK));
    afterAll(() => setDefaultHighWaterMark(false, before));

    it('holds a bounded amount for a destination that stops reading, then delivers every byte in order', async () => {
      // The upstream reads nothing until told to: the relay must pause the client, not buffer it all.
      let upstreamSocket: net.Socket | undefined;
      const received: Buffer[] = [];
      const upstream = await listen((s) => {
        upstreamSocket = s;
        s.pause();
        s.on('data', (d: Buffer) => received.push(d));
      });
      const p = await proxy(upstream);
      const client = await dial(p.port);
      const total = 64 * 1024 * 1024;
      const payload = Buffer.alloc(total);
      for (let i = 0; i < total; i += 4) payload.writeUInt32BE(i / 4, i);
      client.write(payload);
      // Wait (bounded) until the client's send buffer stops shrinking: the relay paused it.
      let last = -1;
      for (let i = 0; i < 100 && client.writableLength !== last; i++) {
        last = client.writableLength;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(client.writableLength).toBeGreaterThan(0);
      const held = p.ups[0]?.writableLength ?? Number.NaN;
      expect(held).toBeLessThanOrEqual(4 * RELAY_HIGH_WATER_MARK);
      // Now read: everything arrives, intact.
      upstreamSocket?.resume();
      client.end();
      await new Promise<void>((resolve) => upstreamSocket?.once('end', () => resolve()));
      expect(Buffer.concat(received).equals(payload)).toBe(true);
      upstreamSocket?.end();
    });
  });
});
