// The discovery tier's gRPC service: envoy.service.discovery.v3.AggregatedDiscoveryService
// DeltaAggregatedResources serving Istio's WDS types (istio.workload.Address,
// istio.security.Authorization), as istiod serves ztunnel on 15012 beside the CA.
// Callers authenticate as they do to the CA (istiod: the same authenticators for XDS and CA; ztunnel
// sends its token as `authorization: Bearer`), through the CA's Authenticator (ca/server/auth.ts).
// The service holds no state of its own besides per-stream bookkeeping, so replicas fed by the same
// sources serve interchangeably.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { type Authenticator, bearerToken } from '../ca/server/auth.js';
import { CaError } from '../ca/errors.js';
import { formatSpiffeId } from '../core/identity/spiffe.js';
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from '../core/sources/wds-proto.js';
import { DeltaSubscription } from './delta.js';
import { type ChangedNames, WDS_TYPE_URLS, type WdsResources } from './resources.js';

export interface DiscoveryServiceDeps {
  resources: WdsResources;
  authenticator: Authenticator;
  logger: Logger;
  /** Sent as system_version_info, to tell replicas apart in logs (istiod: its pod name). */
  identifier?: string;
}

type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

/** One client stream: its subscriptions per type and its nonces. */
class DeltaStream {
  readonly #subs = new Map<string, DeltaSubscription>();
  #nonce = 0;

  constructor(
    private readonly call: DeltaCall,
    private readonly deps: DiscoveryServiceDeps,
    private readonly log: Logger,
  ) {}

  onRequest(req: DeltaDiscoveryRequest): void {
    const typeUrl = req.type_url;
    const table = this.deps.resources.table(typeUrl);
    if (!table) {
      // istiod answers an unknown type with nothing; a stream stays usable for the other types.
      this.log.warn({ type_url: typeUrl }, 'discovery: request for an unsupported type ignored');
      return;
    }
    let sub = this.#subs.get(typeUrl);
    const first = !sub;
    if (!sub) {
      sub = new DeltaSubscription(typeUrl);
      this.#subs.set(typeUrl, sub);
    }
    const { kind, refused } = sub.applyRequest(req);
    if (kind === 'nack') {
      this.log.warn(
        {
          type_url: typeUrl,
          nonce: req.response_nonce,
          error: req.error_detail?.message,
          resources: refused,
        },
        'discovery: client NACKed a response',
      );
      return;
    }
    if (kind === 'ack') return;
    // A (re)subscription: send what the client lacks. The first answer is sent even when empty,
    // since a client (ztunnel) is not ready until it has heard once per type.
    this.#send(sub, table, undefined, first);
  }

  onChanged(changed: ChangedNames): void {
    for (const [typeUrl, names] of changed) {
      const sub = this.#subs.get(typeUrl);
      const table = this.deps.resources.table(typeUrl);
      if (sub && table) this.#send(sub, table, names, false);
    }
  }

  #send(
    sub: DeltaSubscription,
    table: NonNullable<ReturnType<WdsResources['table']>>,
    names: Iterable<string> | undefined,
    evenIfEmpty: boolean,
  ): void {
    const nonce = String(++this.#nonce);
    const push = sub.push(table, nonce, names);
    if (!push && !evenIfEmpty) return;
    this.call.write({
      system_version_info: this.deps.identifier ?? '',
      type_url: sub.typeUrl,
      nonce,
      resources: push?.resources ?? [],
      removed_resources: push?.removed ?? [],
    });
    this.log.debug(
      {
        type_url: sub.typeUrl,
        nonce,
        resources: push?.resources.length ?? 0,
        removed: push?.removed.length ?? 0,
      },
      'discovery: pushed',
    );
  }
}

export class DiscoveryService {
  readonly #streams = new Set<DeltaCall>();

  constructor(private readonly deps: DiscoveryServiceDeps) {}

  /** Open streams (for tests and logs). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** grpc-js handlers for the AggregatedDiscoveryService definition (core/sources/wds-proto.ts). */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      DeltaAggregatedResources: (call: DeltaCall) => this.#serve(call),
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        // Istio's WDS is delta-only (istio/ztunnel src/xds/client.rs speaks DeltaAggregatedResources).
        call.emit('error', {
          code: grpc.status.UNIMPLEMENTED,
          details: 'state-of-the-world xDS is not served; use DeltaAggregatedResources',
        });
      },
    };
  }

  /** Ends every stream (clients reconnect, to this replica or another). */
  closeStreams(): void {
    for (const call of this.#streams) call.end();
    this.#streams.clear();
  }

  #serve(call: DeltaCall): void {
    const auth = call.metadata.get('authorization')[0];
    const peer = call.getPeer();
    const log = this.deps.logger.child({ peer });
    let stream: DeltaStream | undefined;
    const queued: DeltaDiscoveryRequest[] = [];
    let unsubscribe: (() => void) | undefined;
    const cleanup = (): void => {
      unsubscribe?.();
      this.#streams.delete(call);
    };
    call.on('data', (req: DeltaDiscoveryRequest) => {
      if (stream) {
        try {
          stream.onRequest(req);
        } catch (err) {
          log.error({ err }, 'discovery: request failed');
          call.emit('error', { code: grpc.status.INTERNAL, details: 'internal discovery error' });
        }
      } else queued.push(req);
    });
    call.on('end', () => {
      cleanup();
      call.end();
    });
    call.on('error', cleanup);
    call.on('cancelled', cleanup);
    // Fail closed: nothing is sent before the caller is known.
    this.deps.authenticator
      .authenticate(bearerToken(typeof auth === 'string' ? auth : auth?.toString()))
      .then(
        (caller) => {
          if (call.cancelled || call.destroyed) return;
          const who = formatSpiffeId(caller.identity);
          const s = new DeltaStream(call, this.deps, log.child({ caller: who }));
          stream = s;
          this.#streams.add(call);
          unsubscribe = this.deps.resources.onChange((changed) => s.onChanged(changed));
          log.info({ caller: who, node: caller.node }, 'discovery: client connected');
          for (const req of queued.splice(0)) s.onRequest(req);
        },
        (err: unknown) => {
          const unauthenticated = err instanceof CaError && err.code === 'UNAUTHENTICATED';
          const details = unauthenticated ? (err as Error).message : 'authentication failed';
          log.info({ reason: (err as Error).message }, 'discovery: client refused');
          call.emit('error', { code: grpc.status.UNAUTHENTICATED, details });
        },
      );
  }
}

export { WDS_TYPE_URLS };
