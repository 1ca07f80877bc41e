// The two messages of IstioCertificateService.CreateCertificate (proto/ca.proto) in protobuf wire
// format, for the client side only. Why by hand: loading ca.proto at run time takes
// @grpc/proto-loader, protobufjs, long and lodash.camelcase (~430 KB of source, ~1.5 MiB of a
// ztunnel's idle heap) to encode three fields and decode one. ca-messages.test.ts checks both
// directions against protobufjs reading proto/ca.proto, and the CA server still decodes with it.
//
//   IstioCertificateRequest  { string csr = 1; int64 validity_duration = 3; google.protobuf.Struct metadata = 4; }
//   IstioCertificateResponse { repeated string cert_chain = 1; }
//   Struct { map<string, Value> fields = 1; }  (map entry: key = 1, value = 2)   Value { string string_value = 3; }

/** gRPC method path (package istio.v1.auth, service IstioCertificateService). */
export const CREATE_CERTIFICATE_METHOD = '/istio.v1.auth.IstioCertificateService/CreateCertificate';

export interface CertificateRequestFields {
  csrPem: string;
  validitySeconds: number;
  /** Sent as metadata.fields.ImpersonatedIdentity.string_value (istio/ztunnel caclient.rs). */
  impersonatedIdentity?: string;
}

/** A response that is not a well-formed IstioCertificateResponse. */
export class MalformedCaMessage extends Error {
  readonly code = 'CA_MESSAGE_MALFORMED';
  constructor(what: string) {
    super(`IstioCertificateResponse: ${what}`);
    this.name = 'MalformedCaMessage';
  }
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

function varint(n: number): Buffer {
  const out: number[] = [];
  // Not `>>>`: a validity in seconds may exceed 32 bits; every value here is a safe integer.
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}

function lengthDelimited(field: number, body: Buffer): Buffer {
  return Buffer.concat([varint((field << 3) | WIRE_LEN), varint(body.length), body]);
}

function stringField(field: number, value: string): Buffer {
  return lengthDelimited(field, Buffer.from(value, 'utf8'));
}

export function encodeCertificateRequest(req: CertificateRequestFields): Buffer {
  if (!Number.isSafeInteger(req.validitySeconds) || req.validitySeconds < 0)
    throw new RangeError(`validity_duration ${req.validitySeconds} is not a non-negative integer of seconds`);
  const parts = [stringField(1, req.csrPem)];
  // proto3: a zero scalar is not written.
  if (req.validitySeconds > 0) parts.push(varint((3 << 3) | WIRE_VARINT), varint(req.validitySeconds));
  if (req.impersonatedIdentity !== undefined) {
    const value = stringField(3, req.impersonatedIdentity);
    const entry = Buffer.concat([stringField(1, 'ImpersonatedIdentity'), lengthDelimited(2, value)]);
    parts.push(lengthDelimited(4, lengthDelimited(1, entry)));
  }
  return Buffer.concat(parts);
}

/** Reads cert_chain; unknown fields are skipped as protobuf requires, anything truncated is refused. */
export function decodeCertificateResponse(buf: Buffer): string[] {
  let pos = 0;
  const readVarint = (what: string): number => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) throw new MalformedCaMessage(`truncated ${what} at byte ${pos}`);
      const b = buf[pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 0x80;
    }
    throw new MalformedCaMessage(`${what} at byte ${pos} is longer than 10 bytes`);
  };
  const skip = (n: number, what: string): void => {
    if (n > buf.length - pos) throw new MalformedCaMessage(`truncated ${what} at byte ${pos}`);
    pos += n;
  };
  const chain: string[] = [];
  while (pos < buf.length) {
    const tag = readVarint('tag');
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === WIRE_LEN) {
      const len = readVarint(`length of field ${field}`);
      skip(len, `field ${field}`);
      if (field === 1) chain.push(buf.toString('utf8', pos - len, pos));
    } else if (wire === WIRE_VARINT) readVarint(`field ${field}`);
    else if (wire === WIRE_I64) skip(8, `field ${field}`);
    else if (wire === WIRE_I32) skip(4, `field ${field}`);
    else throw new MalformedCaMessage(`field ${field} has unsupported wire type ${wire}`);
    if (field === 1 && wire !== WIRE_LEN) throw new MalformedCaMessage('cert_chain is not a string');
  }
  return chain;
}
