// The CA's two uses of the ASN.1 library (@peculiar/asn1-schema over asn1js) that need more than a
// one-line call: strict DER decoding of untrusted input, and splicing DER the library already
// produced into a larger structure without encoding it again.
import { AsnParser, type IAsnConvertible, AsnConvert } from '@peculiar/asn1-schema';
import * as asn1js from 'asn1js';

/**
 * Resource limits for decoding untrusted input. A workload CSR is ~400 bytes and ~30 ASN.1
 * elements (RSA-4096 with several SANs stays under 2 KiB); asn1js's defaults (depth 100,
 * 10 000 elements, 16 MiB) would let a hostile request make the parser walk far more.
 */
export const UNTRUSTED_LIMITS: Readonly<asn1js.FromBerOptions> = {
  maxDepth: 16,
  maxNodes: 512,
  maxContentLength: 16 * 1024,
};

/**
 * Decodes `der` as `type`, accepting DER only (as Go's encoding/asn1, which istiod's
 * x509.ParseCertificateRequest uses): no trailing bytes, no indefinite or non-minimal lengths, no
 * constructed strings. Throws a plain Error saying what is wrong; callers wrap it in their typed error.
 */
export function decodeDer<T>(der: Uint8Array, type: new () => T): T {
  const parsed = asn1js.fromBER(der, { ...UNTRUSTED_LIMITS });
  if (parsed.offset === -1) throw new Error(parsed.result.error || 'not ASN.1');
  if (parsed.offset !== der.length) throw new Error(`${der.length - parsed.offset} trailing bytes`);
  assertDer(parsed.result);
  return AsnParser.fromASN(parsed.result, type, { berOptions: { ...UNTRUSTED_LIMITS } });
}

/** Refuses BER-only forms: indefinite and non-minimal lengths, constructed strings. */
function assertDer(block: asn1js.AsnType): void {
  const b = block as asn1js.BaseBlock;
  if (b.lenBlock.isIndefiniteForm) throw new Error('indefinite length (not DER)');
  // X.690 §10.1: the length in the fewest octets. Computed here rather than read from asn1js's
  // warnings: asn1js 3.0 flags "needlessly long" when the LAST length octet is 0, so a valid
  // 256-byte element (82 01 00) would be refused.
  const { length, blockLength } = b.lenBlock;
  const minimal = length < 0x80 ? 1 : 1 + Math.ceil(length.toString(16).length / 2);
  if (blockLength !== minimal) throw new Error(`length ${length} not in its shortest form (not DER)`);
  // Only constructed encodings have children to check; asn1js also peeks inside primitive BIT and
  // OCTET STRINGs (key bits, signatures), whose contents are opaque here.
  if (!b.idBlock.isConstructed) return;
  // X.690 §10.2: DER encodes strings primitively; only SEQUENCE/SET and tagged types are constructed.
  if (b.idBlock.tagClass === 1 && b.idBlock.tagNumber !== 16 && b.idBlock.tagNumber !== 17)
    throw new Error(`constructed encoding of universal type ${b.idBlock.tagNumber} (not DER)`);
  const children = (b.valueBlock as { value?: unknown }).value;
  if (Array.isArray(children)) for (const c of children) assertDer(c as asn1js.AsnType);
}

/**
 * asn1js writes nested elements through a shared writer, which its own RawData ignores when it is
 * nested (asn1js 3.0); this one writes its bytes there.
 */
class DerBlock extends asn1js.RawData {
  override toBER(sizeOnly?: boolean, writer?: { write(buf: Uint8Array): void }): ArrayBuffer {
    if (!writer) return super.toBER(sizeOnly);
    writer.write(this.dataView);
    return new ArrayBuffer(0);
  }
}

/**
 * A value already DER-encoded, placed into a larger structure as it is: asn1-schema serializes any
 * IAsnConvertible by calling its toASN(). Used for what is the same in every leaf (encoded once per
 * signer: encoding it again per leaf costs more than the ECDSA signature, bench/ca.bench.ts) and to
 * wrap exactly the bytes that were signed (a TBSCertificate, a certificationRequestInfo).
 */
export class Encoded implements IAsnConvertible {
  constructor(readonly der: Uint8Array) {}

  /** Encodes a schema object (asn1-x509, asn1-csr ...) once. */
  static of(value: unknown): Encoded {
    return new Encoded(new Uint8Array(AsnConvert.serialize(value)));
  }

  toASN(): asn1js.AsnType {
    return new DerBlock({ data: this.der }) as unknown as asn1js.AsnType;
  }

  fromASN(): this {
    throw new Error('Encoded is write-only');
  }

  toSchema(): asn1js.BaseBlock {
    throw new Error('Encoded is write-only');
  }

  /** Typed as the schema class it stands for, so it can fill that field of a schema object. */
  as<T>(): T {
    return this as unknown as T;
  }
}
