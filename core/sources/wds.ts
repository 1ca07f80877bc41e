// A state source fed by the discovery tier over Istio's Workload Discovery Service, as istio/ztunnel
// src/xds/client.rs consumes istiod: one DeltaAggregatedResources stream over TLS with
// `authorization: Bearer <token>`, a wildcard subscription per type (Address, Authorization), each
// response applied to the MeshState and ACKed, or NACKed (with the reason) for the resources that do
// not decode while the valid ones apply. When the stream breaks, the state stays as it was and the node
// keeps serving it; the client reconnects with exponential backoff and sends initial_resource_versions,
// so the server sends only what changed meanwhile.
import * as grpc from '@grpc/grpc-js';
import { type Logger, pino } from 'pino';
import { MeshState, policyKey, serviceKey } from '../state/state.js';
import type { InvalidObjectError } from './schema.js';
import type { StateSource } from './source.js';
import { authorizationFromProto, DecodeError, serviceFromProto, workloadFromProto } from './wds-decode.js';
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  adsServiceDefinition,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type ProtoResource,
  type ProtoStruct,
  wdsCodecs,
} from './wds-proto.js';

export interface WdsSourceOptions {
  /** host:port of the discovery tier (XDS_ADDRESS; istiod.istio-system.svc:15012 in Kubernetes). */
  address: string;
  /** PEM roots that signed the discovery server's certificate (XDS_ROOT_CA); re-read per connection. */
  rootsPem: () => string | Promise<string>;
  /** Bearer token, re-read per connection (kubelet rotates projected tokens). */
  token: () => string | undefined | Promise<string | undefined>;
  /** Name to verify in the serving certificate. Default istiod.istio-system.svc (as the CA client). */
  serverName?: string;
  /** Node id and metadata sent in the first request of each type (istio/ztunnel: "ztunnel~..."). */
  nodeId: string;
  nodeMetadata?: Record<string, string>;
  /** How long start() waits for the first answer of every type. Default 60 s. */
  syncTimeoutMs?: number;
  /** Reconnect backoff: first delay and cap. istio/ztunnel: 10 ms doubling to 15 s. Defaults 100 ms / 15 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  state?: MeshState;
  logger?: Logger;
}

export class WdsSyncTimeout extends Error {
  readonly code = 'WDS_SYNC_TIMEOUT';
  constructor(address: string, ms: number, last: string | undefined) {
    super(`discovery ${address}: no initial state within ${ms} ms${last ? ` (last error: ${last})` : ''}`);
    this.name = 'WdsSyncTimeout';
  }
}

const TYPES = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL] as const;

/** Largest DeltaDiscoveryResponse accepted: room for ~500k workloads. */
export const MAX_WDS_MESSAGE_BYTES = 200 * 1024 * 1024;

type DeltaClient = grpc.Client & {
  DeltaAggregatedResources(
    md: grpc.Metadata,
  ): grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;
};

export class WdsSource implements StateSource {
  readonly state: MeshState;
  readonly #opts: WdsSourceOptions;
  readonly #log: Logger;
  /** What this node holds: type → name → version (sent back as initial_resource_versions). */
  readonly #known = new Map<string, Map<string, string>>(TYPES.map((t) => [t, new Map()]));
  /** Address resource name → what it put in the state. */
  readonly #addressKind = new Map<
    string,
    { kind: 'workload' } | { kind: 'service'; service: boolean; waypoint?: string }
  >();
  readonly #refused = new Map<string, string>();
  readonly #heard = new Set<string>();
  #client: DeltaClient | undefined;
  #call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #backoff: number;
  #stopped = false;
  #connected = false;
  #lastError: string | undefined;
  #onSynced: (() => void) | undefined;
  /** Connections made (1 + reconnects), for tests and logs. */
  connections = 0;
  /**
   * Responses received per type URL and stream terminations per reason (Error | Complete): what istio/ztunnel
   * exports as istio_xds_message_total{url} and istio_xds_connection_terminations_total{reason}; ztunnel
   * reads them at scrape time.
   */
  readonly messages = new Map<string, number>();
  readonly terminations = new Map<string, number>();

  constructor(opts: WdsSourceOptions) {
    this.#opts = opts;
    this.state = opts.state ?? new MeshState();
    this.#log = opts.logger ?? pino({ name: 'ambit-wds' }, pino.destination(2));
    this.#backoff = opts.initialBackoffMs ?? 100;
  }

  /** True while a stream is up and has answered. */
  get connected(): boolean {
    return this.#connected;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    const ms = this.#opts.syncTimeoutMs ?? 60_000;
    const synced = new Promise<void>((resolve) => {
      this.#onSynced = resolve;
    });
    this.#connect();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new WdsSyncTimeout(this.#opts.address, ms, this.#lastError)), ms);
    });
    try {
      await Promise.race([synced, timeout]);
    } catch (err) {
      await this.stop();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#call?.cancel();
    this.#call = undefined;
    this.#client?.close();
    this.#client = undefined;
    this.#connected = false;
  }

  errors(): InvalidObjectError[] {
    // Validation happened in the discovery tier; what this node refused is in warnings().
    return [];
  }

  warnings(): string[] {
    return [...this.#refused.values()];
  }

  #connect(): void {
    if (this.#stopped) return;
    void this.#open().catch((err: unknown) => this.#retry(`could not connect: ${(err as Error).message}`));
  }

  async #open(): Promise<void> {
    const roots = await this.#opts.rootsPem();
    const token = await this.#opts.token();
    if (this.#stopped) return;
    this.#client?.close();
    const serverName = this.#opts.serverName ?? 'istiod.istio-system.svc';
    const Ctor = grpc.makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');
    const client = new Ctor(this.#opts.address, grpc.credentials.createSsl(Buffer.from(roots)), {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
      // The first answer holds the whole cluster (~420 bytes a workload: 4 MiB, gRPC's default receive
      // limit, is ~10k pods). The tier is authenticated by the mesh root, so its size is bounded only
      // to keep one answer from exhausting memory.
      'grpc.max_receive_message_length': MAX_WDS_MESSAGE_BYTES,
      // Notice a discovery tier that vanished without closing the connection.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    }) as unknown as DeltaClient;
    this.#client = client;
    const md = new grpc.Metadata();
    if (token) md.set('authorization', `Bearer ${token}`);
    const call = client.DeltaAggregatedResources(md);
    this.#call = call;
    this.connections++;
    call.on('data', (res: DeltaDiscoveryResponse) => this.#onResponse(call, res));
    const terminated = (reason: string): void => {
      this.terminations.set(reason, (this.terminations.get(reason) ?? 0) + 1);
    };
    call.on('error', (err: grpc.ServiceError) => {
      if (this.#call !== call) return;
      terminated('Error');
      this.#retry(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`);
    });
    call.on('end', () => {
      if (this.#call !== call) return;
      terminated('Complete');
      this.#retry('stream ended');
    });
    for (const typeUrl of TYPES) {
      call.write({
        node: { id: this.#opts.nodeId, metadata: metadataStruct(this.#opts.nodeMetadata ?? {}) },
        type_url: typeUrl,
        resource_names_subscribe: [],
        resource_names_unsubscribe: [],
        initial_resource_versions: Object.fromEntries(this.#known.get(typeUrl)!),
        response_nonce: '',
      });
    }
  }

  #retry(reason: string): void {
    if (this.#stopped) return;
    this.#call?.cancel();
    this.#call = undefined;
    const wasConnected = this.#connected;
    this.#connected = false;
    this.#lastError = reason;
    const delay = this.#backoff;
    this.#backoff = Math.min(this.#opts.maxBackoffMs ?? 15_000, this.#backoff * 2);
    this.#log[wasConnected ? 'warn' : 'debug'](
      { address: this.#opts.address, reason, retry_in_ms: delay },
      'discovery stream down; serving the last state',
    );
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #onResponse(
    call: grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>,
    res: DeltaDiscoveryResponse,
  ): void {
    this.messages.set(res.type_url, (this.messages.get(res.type_url) ?? 0) + 1);
    const known = this.#known.get(res.type_url);
    if (!known) {
      call.write(ackOf(res, `unsupported type ${res.type_url}`));
      return;
    }
    const problems: string[] = [];
    this.state.batch(() => {
      for (const r of res.resources) {
        try {
          this.#apply(res.type_url, r);
          known.set(r.name, r.version);
          this.#refused.delete(r.name);
        } catch (err) {
          const message = `discovery resource ${r.name} (${res.type_url}) refused: ${(err as Error).message}`;
          problems.push(message);
          this.#refused.set(r.name, message);
        }
      }
      for (const name of res.removed_resources) {
        this.#remove(res.type_url, name);
        known.delete(name);
        this.#refused.delete(name);
      }
    });
    for (const p of problems) this.#log.warn(p);
    call.write(ackOf(res, problems.length > 0 ? problems.join('; ') : undefined));
    if (!this.#connected) {
      this.#connected = true;
      this.#backoff = this.#opts.initialBackoffMs ?? 100;
      this.#log.info({ address: this.#opts.address, connection: this.connections }, 'discovery stream up');
    }
    this.#heard.add(res.type_url);
    if (TYPES.every((t) => this.#heard.has(t))) {
      this.#onSynced?.();
      this.#onSynced = undefined;
    }
  }

  #apply(typeUrl: string, r: ProtoResource): void {
    if (!r.resource) throw new DecodeError('no resource body');
    if (r.resource.type_url !== typeUrl)
      throw new DecodeError(`body is ${r.resource.type_url}, the response is ${typeUrl}`);
    const codecs = wdsCodecs();
    if (typeUrl === AUTHORIZATION_TYPE_URL) {
      const a = authorizationFromProto(codecs.authorization.decode(r.resource.value));
      if (policyKey(a) !== r.name) throw new DecodeError(`named ${r.name} but is ${policyKey(a)}`);
      this.state.upsertAuthorization(a);
      return;
    }
    const address = codecs.address.decode(r.resource.value);
    if (address.workload) {
      const w = workloadFromProto(address.workload);
      if (w.uid !== r.name) throw new DecodeError(`named ${r.name} but its uid is ${w.uid}`);
      this.state.upsertWorkload(w);
      this.#addressKind.set(r.name, { kind: 'workload' });
      return;
    }
    if (!address.service) throw new DecodeError('an Address with neither workload nor service');
    const { service, waypoint } = serviceFromProto(address.service);
    const key = serviceKey(address.service);
    if (key !== r.name) throw new DecodeError(`named ${r.name} but is ${key}`);
    const before = this.#addressKind.get(r.name);
    if (service) this.state.upsertService(service);
    else if (before?.kind === 'service' && before.service) this.state.removeService(key);
    const wpKey = waypoint ? policyKey(waypoint) : undefined;
    if (before?.kind === 'service' && before.waypoint && before.waypoint !== wpKey)
      this.state.removeWaypoint(before.waypoint);
    if (waypoint) this.state.upsertWaypoint(waypoint);
    this.#addressKind.set(r.name, {
      kind: 'service',
      service: service !== undefined,
      ...(wpKey ? { waypoint: wpKey } : {}),
    });
  }

  #remove(typeUrl: string, name: string): void {
    if (typeUrl === AUTHORIZATION_TYPE_URL) {
      this.state.removeAuthorization(name);
      return;
    }
    const kind = this.#addressKind.get(name);
    this.#addressKind.delete(name);
    if (kind?.kind === 'workload') this.state.removeWorkload(name);
    else if (kind?.kind === 'service') {
      if (kind.service) this.state.removeService(name);
      if (kind.waypoint) this.state.removeWaypoint(kind.waypoint);
    }
  }
}

function ackOf(res: DeltaDiscoveryResponse, error: string | undefined): DeltaDiscoveryRequest {
  return {
    type_url: res.type_url,
    response_nonce: res.nonce,
    resource_names_subscribe: [],
    resource_names_unsubscribe: [],
    initial_resource_versions: {},
    // google.rpc.Code INVALID_ARGUMENT (3), as istio/ztunnel NACKs undecodable resources.
    ...(error ? { error_detail: { code: 3, message: error } } : {}),
  };
}

function metadataStruct(m: Record<string, string>): ProtoStruct {
  return { fields: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, { stringValue: v }])) };
}
