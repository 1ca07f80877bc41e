// What speaks inside a tunnel: HTTP/2 with prior knowledge (gRPC), HTTP/1.1, or anything else (opaque
// TCP, L4 policy only). Istio's waypoint sniffs the same way (Envoy http_inspector: the HTTP/2 connection
// preface, or an HTTP/1.x request line) when the Service port does not declare its protocol.
import type { Duplex } from 'node:stream';

export type DetectedProtocol = 'http2' | 'http1' | 'tcp';

/** RFC 9113 §3.4: every HTTP/2 prior-knowledge connection starts with exactly these 24 bytes. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

// Fast path: an upper-case method (RFC 9110 methods, WebDAV ones Envoy accepts) then a space.
const METHOD = /^[A-Z][A-Z_-]{1,15} $/;
const MAX_METHOD = 17;
// Otherwise, like Envoy's http_inspector, a whole request line ending in HTTP/1.x makes it HTTP/1.1, so a
// request whose method is not upper case (`get / HTTP/1.1`) reaches the HTTP parser and gets its 400
// instead of being relayed as opaque bytes; a text protocol (`get key\r\n`) stays TCP.
const TOKEN_START = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?: |$)/;
const REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ \S+ HTTP\/1\.[01]\r?\n/;
const MAX_LINE = 8192;
const PRINTABLE = /^[\t\r\x20-\x7e]*$/;

/** Classifies the first bytes; undefined = need more bytes. */
export function classify(head: Buffer): DetectedProtocol | undefined {
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    return head.length >= H2_PREFACE.length ? 'http2' : undefined;
  }
  const text = head.subarray(0, MAX_METHOD).toString('latin1');
  const space = text.indexOf(' ');
  if (space >= 0 && METHOD.test(text.slice(0, space + 1))) return 'http1';
  if (space < 0 && /^[A-Z_-]*$/.test(text) && text.length < MAX_METHOD) return undefined;
  const line = head.subarray(0, MAX_LINE).toString('latin1');
  if (!TOKEN_START.test(line)) return 'tcp';
  if (line.includes('\n')) return REQUEST_LINE.test(line) ? 'http1' : 'tcp';
  return head.length >= MAX_LINE || !PRINTABLE.test(line) ? 'tcp' : undefined;
}

/**
 * Reads until the protocol is known (or the client stays silent for `timeoutMs`: server-first protocols
 * are TCP), then puts the bytes back so the protocol handler sees the stream from its first byte.
 */
export function detectProtocol(
  stream: Duplex,
  timeoutMs: number,
): Promise<{ protocol: DetectedProtocol; ended: boolean; head: Buffer }> {
  return new Promise((resolve) => {
    let head = Buffer.alloc(0);
    let ended = false;
    const finish = (p: DetectedProtocol): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onEnd);
      stream.pause();
      // After 'end' a readable refuses unshift: the caller gets the bytes in `head` instead.
      if (head.length > 0 && !ended) stream.unshift(head);
      resolve({ protocol: p, ended, head });
    };
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const p = classify(head);
      if (p) finish(p);
    };
    const onEnd = (): void => {
      ended = true;
      finish('tcp');
    };
    const timer = setTimeout(() => finish('tcp'), timeoutMs);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onEnd);
  });
}
