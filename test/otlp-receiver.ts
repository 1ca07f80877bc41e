// An OTLP/HTTP trace receiver for the tracing tests, standing for an OpenTelemetry collector: it accepts
// POST /v1/traces with `application/x-protobuf` bodies, decodes them with protobufjs from the OTLP .proto
// files in test/otlp/ (written from the public OpenTelemetry protocol specification), answers an encoded
// ExportTraceServiceResponse, and hands every decoded span to its parent over IPC.
//   node otlp-receiver.js PORT   → IPC {ready: port}, then {spans: ReceivedSpan[]} per export request
// Also importable (decodeExport) so a test can decode in-process.
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind number (2 = SERVER). */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
  status: { code: number; message: string };
}

/** test/otlp/ in the repo; from dist/test/ it is two levels further up. */
function otlpDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    for (const c of [join(dir, 'otlp'), join(dir, 'test', 'otlp')]) {
      if (existsSync(join(c, 'trace_service.proto'))) return c;
    }
    dir = dirname(dir);
  }
  throw new Error('test/otlp/trace_service.proto not found');
}

function loadTypes(): { request: protobuf.Type; response: protobuf.Type } {
  const dir = otlpDir();
  const root = new protobuf.Root();
  // Imports are written relative to test/otlp/ ("common.proto"): resolve them there.
  root.resolvePath = (_origin, target) => join(dir, target.replace(/^.*\//, ''));
  root.loadSync('trace_service.proto', { keepCase: false });
  return {
    request: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
    response: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
  };
}

interface KeyValue {
  key: string;
  value?: { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
}

function attrs(list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list ?? []) {
    const v = kv.value ?? {};
    out[kv.key] =
      v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue ?? ''));
  }
  return out;
}

const hex = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString('hex');

/** Decodes one OTLP/HTTP protobuf export body into flat spans. */
export function decodeExport(body: Buffer, types = loadTypes()): ReceivedSpan[] {
  const msg = types.request.toObject(types.request.decode(body), { longs: String, enums: Number }) as {
    resourceSpans?: {
      resource?: { attributes?: KeyValue[] };
      scopeSpans?: {
        spans?: {
          traceId?: Uint8Array;
          spanId?: Uint8Array;
          parentSpanId?: Uint8Array;
          name?: string;
          kind?: number;
          attributes?: KeyValue[];
          status?: { code?: number; message?: string };
        }[];
      }[];
    }[];
  };
  const spans: ReceivedSpan[] = [];
  for (const rs of msg.resourceSpans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        spans.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          name: s.name ?? '',
          kind: s.kind ?? 0,
          attributes: attrs(s.attributes),
          resource,
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
        });
      }
    }
  }
  return spans;
}

function main(port: number): void {
  const types = loadTypes();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404);
        res.end();
        return;
      }
      if (!String(req.headers['content-type']).startsWith('application/x-protobuf')) {
        res.writeHead(415);
        res.end();
        return;
      }
      try {
        const spans = decodeExport(Buffer.concat(chunks), types);
        process.send?.({ spans });
        const ok = types.response.encode(types.response.create({})).finish();
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end(Buffer.from(ok));
      } catch (err) {
        process.send?.({ error: (err as Error).message });
        res.writeHead(400);
        res.end();
      }
    });
  });
  server.listen(port, '0.0.0.0', () => process.send?.({ ready: port }));
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const port = Number(process.argv[2] ?? '4318');
  if (!Number.isInteger(port)) {
    console.error('usage: otlp-receiver PORT');
    process.exit(2);
  }
  main(port);
}
