import { describe, expect, it } from 'vitest';
import { caServiceDefinition } from '../proto.js';
import {
  CREATE_CERTIFICATE_METHOD,
  MalformedCaMessage,
  decodeCertificateResponse,
  encodeCertificateRequest,
} from './ca-messages.js';

// The reference: protobufjs reading proto/ca.proto through @grpc/proto-loader, as the CA server does.
const method = caServiceDefinition().CreateCertificate!;

describe('CreateCertificate messages', () => {
  it('uses the method path of proto/ca.proto', () => {
    expect(method.path).toBe(CREATE_CERTIFICATE_METHOD);
  });

  it('encodes a request the proto-defined decoder reads back field for field', () => {
    const csrPem = `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(300)}\n-----END CERTIFICATE REQUEST-----\n`;
    const bytes = encodeCertificateRequest({
      csrPem,
      validitySeconds: 86_400,
      impersonatedIdentity: 'spiffe://cluster.local/ns/demo/sa/client',
    });
    expect(method.requestDeserialize(bytes)).toMatchObject({
      csr: csrPem,
      validity_duration: '86400',
      metadata: {
        fields: {
          ImpersonatedIdentity: {
            stringValue: 'spiffe://cluster.local/ns/demo/sa/client',
            kind: 'stringValue',
          },
        },
      },
    });
  });

  it('encodes validities past 32 bits and omits metadata when not impersonating', () => {
    const decoded = method.requestDeserialize(
      encodeCertificateRequest({ csrPem: 'x', validitySeconds: 2 ** 40 + 3 }),
    ) as { validity_duration: string; metadata: unknown };
    expect(decoded.validity_duration).toBe(String(2 ** 40 + 3));
    expect(decoded.metadata).toBeNull();
  });

  it('refuses a negative or fractional validity', () => {
    expect(() => encodeCertificateRequest({ csrPem: 'x', validitySeconds: -1 })).toThrow(
      /validity_duration -1/,
    );
    expect(() => encodeCertificateRequest({ csrPem: 'x', validitySeconds: 1.5 })).toThrow(RangeError);
  });

  it('decodes the chain the proto-defined encoder writes, in order', () => {
    const chain = ['leaf ✓', 'intermediate', `${'r'.repeat(200)}\n`];
    const bytes = method.responseSerialize({ cert_chain: chain });
    expect(decodeCertificateResponse(bytes)).toEqual(chain);
    expect(decodeCertificateResponse(Buffer.alloc(0))).toEqual([]);
  });

  it('skips unknown fields of every wire type', () => {
    const known = method.responseSerialize({ cert_chain: ['a', 'b'] });
    const unknown = Buffer.concat([
      Buffer.from([0x10, 0x96, 0x01]), // field 2, varint 150
      Buffer.from([0x19, 1, 2, 3, 4, 5, 6, 7, 8]), // field 3, fixed64
      Buffer.from([0x22, 0x02, 0x68, 0x69]), // field 4, bytes "hi"
      Buffer.from([0x2d, 1, 2, 3, 4]), // field 5, fixed32
    ]);
    expect(decodeCertificateResponse(Buffer.concat([unknown, known]))).toEqual(['a', 'b']);
  });

  it('refuses truncated or malformed responses', () => {
    const good = method.responseSerialize({ cert_chain: ['abcdef'] });
    expect(() => decodeCertificateResponse(good.subarray(0, good.length - 1))).toThrow(MalformedCaMessage);
    expect(() => decodeCertificateResponse(Buffer.from([0x0a]))).toThrow(/truncated length of field 1/);
    expect(() => decodeCertificateResponse(Buffer.from([0x08, 0x01]))).toThrow(/cert_chain is not a string/);
    expect(() => decodeCertificateResponse(Buffer.from([0x0b]))).toThrow(/unsupported wire type 3/);
    expect(() => decodeCertificateResponse(Buffer.from(Array(11).fill(0xff)))).toThrow(
      /longer than 10 bytes/,
    );
  });
});
