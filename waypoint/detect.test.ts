import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { H2_PREFACE, classify, detectProtocol } from './detect.js';

describe('protocol detection inside a tunnel', () => {
  it('recognises the HTTP/2 prior-knowledge preface only when complete', () => {
    expect(classify(H2_PREFACE)).toBe('http2');
    expect(classify(H2_PREFACE.subarray(0, 10))).toBeUndefined();
  });

  it('recognises an HTTP/1.1 request line by its method token', () => {
    expect(classify(Buffer.from('GET / HTTP/1.1\r\n'))).toBe('http1');
    expect(classify(Buffer.from('DELETE /x HTTP/1.1\r\n'))).toBe('http1');
    expect(classify(Buffer.from('GE'))).toBeUndefined();
  });

  it('treats anything else as opaque TCP', () => {
    expect(classify(Buffer.from('hello\n'))).toBe('tcp');
    expect(classify(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))).toBe('tcp'); // a TLS ClientHello
    expect(classify(Buffer.from('get key\r\n'))).toBe('tcp');
  });

  it('waits for the whole line when the method is not upper case, and takes it as HTTP/1.1 if it ends in HTTP/1.x (Envoy http_inspector)', () => {
    expect(classify(Buffer.from('get / HTTP/1.1'))).toBeUndefined();
    expect(classify(Buffer.from('get / HTTP/1.1\r\n'))).toBe('http1');
    expect(classify(Buffer.from('GeT /x HTTP/1.0\r\n'))).toBe('http1');
  });

  it('puts the sniffed bytes back so the protocol handler sees the stream from its first byte', async () => {
    const s = new PassThrough();
    s.write('GET /a HTTP/1.1\r\n');
    const r = await detectProtocol(s, 1000);
    expect(r.protocol).toBe('http1');
    expect((s.read() as Buffer).toString()).toBe('GET /a HTTP/1.1\r\n');
  });

  it('calls a silent client (server-first protocol) TCP after the timeout', async () => {
    const s = new PassThrough();
    expect((await detectProtocol(s, 20)).protocol).toBe('tcp');
  });
});
