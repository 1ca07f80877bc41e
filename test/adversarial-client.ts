// Clients for the adversarial suite (test/adversarial-*.test.ts): bytes written as an attacker would,
// over a real HBONE tunnel to the real waypoint, and HTTP/2 requests from node:http2 with headers a
// well-behaved client would never send. Every wait is bounded.
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { LoopbackWorld } from './waypoint-loopback-world.js';

/** Status codes of the HTTP/1.1 responses in `text`, in order. */
export const statuses = (text: string): number[] =>
  [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

/**
 * Writes `bytes` on a fresh tunnel to `authority` and reads until `enough(text)` holds, the tunnel
 * closes, or `ms` pass; returns what came back (no throw on timeout: the caller asserts on it).
 */
export async function rawExchange(
  w: LoopbackWorld,
  authority: string,
  bytes: string | Buffer,
  enough: (text: string) => boolean,
  ms = 5000,
): Promise<string> {
  const t: Duplex = await w.tunnel(authority);
  let text = '';
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      t.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (enough(text)) done();
      });
      t.once('close', done);
      t.once('error', done);
      t.write(bytes);
    });
  } finally {
    t.destroy();
  }
  return text;
}

export interface H2Answer {
  status?: number;
  body: string;
  /** RST_STREAM code or session error when the request was refused below HTTP. */
  reset?: string;
}

/** One HTTP/2 request with the given header block over the client relay; bounded by `ms`. */
export async function h2Request(
  base: string,
  headers: http2.OutgoingHttpHeaders,
  ms = 5000,
): Promise<H2Answer> {
  const session = http2.connect(base);
  session.on('error', () => undefined);
  try {
    return await new Promise<H2Answer>((resolve) => {
      const timer = setTimeout(() => resolve({ body: '', reset: 'timeout' }), ms);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: true });
      } catch (err) {
        clearTimeout(timer);
        resolve({ body: '', reset: `client refused to send: ${(err as Error).message}` });
        return;
      }
      let status: number | undefined;
      let body = '';
      stream.on('response', (h) => {
        status = Number(h[':status']);
      });
      stream.on('data', (c: Buffer) => {
        body += c.toString();
      });
      stream.on('error', () => undefined);
      stream.on('close', () => {
        clearTimeout(timer);
        resolve(status === undefined ? { body, reset: `RST_STREAM ${stream.rstCode}` } : { status, body });
      });
    });
  } finally {
    session.destroy();
  }
}

export interface RawH2Answer {
  /** :status when the response header block starts with an indexed static-table status (RFC 7541 App. A). */
  status?: number;
  /** The first byte of the response header block, when it did not name a static status. */
  headerByte?: number;
  reset?: number;
  goaway?: number;
}

const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};

/** HPACK literal header fields without indexing, new names (RFC 7541 §6.2.2): any bytes, no client checks. */
const literalBlock = (headers: [string, string][]): Buffer =>
  Buffer.concat(
    headers.flatMap(([k, v]) => {
      const name = Buffer.from(k, 'latin1');
      const value = Buffer.from(v, 'latin1');
      if (name.length > 126 || value.length > 126) throw new Error('test header too long for this encoder');
      return [Buffer.from([0x00, name.length]), name, Buffer.from([value.length]), value];
    }),
  );

/**
 * One HTTP/2 request written as raw frames (prior knowledge) on a fresh tunnel: the header block is sent
 * exactly as given, so the waypoint, not a client library, decides what to do with invalid headers.
 */
export async function rawH2(
  w: LoopbackWorld,
  authority: string,
  headers: [string, string][],
  ms = 5000,
): Promise<RawH2Answer> {
  const t: Duplex = await w.tunnel(authority);
  const answer: RawH2Answer = {};
  let buf = Buffer.alloc(0);
  try {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      t.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3);
          if (buf.length < 9 + len) break;
          const [type, flags = 0] = [buf[3], buf[4]];
          const stream = buf.readUInt32BE(5) & 0x7fffffff;
          const payload = buf.subarray(9, 9 + len);
          buf = buf.subarray(9 + len);
          if (type === 4 && (flags & 1) === 0) t.write(frame(4, 1, 0, Buffer.alloc(0)));
          else if (type === 1 && stream === 1) {
            const at = (flags & 0x8) !== 0 ? 1 : 0;
            const b = payload[at] ?? 0;
            // indexed :status, or a literal with :status's name (index 8) and a plain 3-digit value
            const literal = (b === 0x48 || b === 0x08 || b === 0x18) && payload[at + 1] === 3;
            const st =
              b & 0x80
                ? STATIC_STATUS[b & 0x7f]
                : literal
                  ? Number(payload.toString('latin1', at + 2, at + 5))
                  : undefined;
            if (st !== undefined) answer.status = st;
            else answer.headerByte = b;
            done();
          } else if (type === 3 && stream === 1) {
            answer.reset = payload.readUInt32BE(0);
            done();
          } else if (type === 7) {
            answer.goaway = payload.readUInt32BE(4);
            done();
          }
        }
      });
      t.once('close', done);
      t.once('error', done);
      t.write(
        Buffer.concat([
          Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
          frame(4, 0, 0, Buffer.alloc(0)),
          frame(1, 0x5, 1, literalBlock(headers)),
        ]),
      );
    });
  } finally {
    t.destroy();
  }
  return answer;
}

/** Refused below or at HTTP: a 4xx, a stream reset, or the session closed (never a served response). */
export const refusedH2 = (a: RawH2Answer): boolean =>
  (a.status !== undefined && a.status >= 400 && a.status < 500) ||
  a.reset !== undefined ||
  a.goaway !== undefined;

/** Envoy's answer to a malformed request: 400, or a reset/GOAWAY from the HTTP/2 layer below it. */
export const badRequestH2 = (a: RawH2Answer): boolean =>
  a.status === 400 || a.reset !== undefined || a.goaway !== undefined;

/** The "billion laughs" in YAML: 9 levels of 9 aliases each = 9^9 strings once expanded. */
export function aliasBomb(): string {
  const lines = ['apiVersion: v1', 'kind: ConfigMap', 'metadata: { name: bomb, namespace: demo }', 'data:'];
  lines.push('  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]');
  const names = 'abcdefghi';
  for (let i = 1; i < names.length; i++) {
    const p = names[i - 1];
    lines.push(`  ${names[i]}: &${names[i]} [${Array(9).fill(`*${p}`).join(',')}]`);
  }
  return `${lines.join('\n')}\n`;
}
