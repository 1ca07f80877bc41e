// The discovery tier's table of WDS resources, kept current from a MeshState (fed by the manifests
// directory or Kubernetes): one encoded Any per resource name and type, re-encoded only for the keys a
// state change names. Versions are a hash of the encoded bytes, so every replica fed by the same
// sources gives a resource the same version, and a client that reconnects to another replica with
// initial_resource_versions is sent only what really differs.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Waypoint } from '../core/state/model.js';
import { type MeshState, type StateChange, policyKey, serviceKey } from '../core/state/state.js';
import {
  ADDRESS_TYPE_URL,
  AUTHORIZATION_TYPE_URL,
  type ProtoAny,
  wdsCodecs,
} from '../core/sources/wds-proto.js';
import { authorizationToProto, serviceToProto, workloadToProto } from './encode.js';

export interface ResourceEntry {
  name: string;
  version: string;
  resource: ProtoAny;
}

export const WDS_TYPE_URLS = [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL] as const;

/** Names whose resource changed or went away, per type URL. */
export type ChangedNames = Map<string, Set<string>>;

function versionOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('base64url').slice(0, 16);
}

export class WdsResources {
  readonly #tables = new Map<string, Map<string, ResourceEntry>>(WDS_TYPE_URLS.map((t) => [t, new Map()]));
  /** Waypoint key ns/name → the Address resource that carries it (ns/hostname). */
  readonly #waypointResource = new Map<string, string>();
  readonly #listeners = new Set<(changed: ChangedNames) => void>();
  readonly #unsubscribe: () => void;

  constructor(
    private readonly state: MeshState,
    private readonly logger: Logger,
  ) {
    const all: ChangedNames = new Map();
    for (const w of state.workloads()) this.#refreshWorkload(w.uid, all);
    for (const s of state.services()) this.#refreshService(serviceKey(s), all);
    for (const w of state.waypoints()) this.#refreshWaypoint(policyKey(w), all);
    for (const a of state.authorizations()) this.#refreshAuthorization(policyKey(a), all);
    this.#unsubscribe = state.onChange((changes) => this.#apply(changes));
  }

  /** The current resources of one type, by name. */
  table(typeUrl: string): ReadonlyMap<string, ResourceEntry> | undefined {
    return this.#tables.get(typeUrl);
  }

  /** Subscribe to changed names (one call per state batch); returns an unsubscribe function. */
  onChange(listener: (changed: ChangedNames) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#unsubscribe();
    this.#listeners.clear();
  }

  #apply(changes: readonly StateChange[]): void {
    const changed: ChangedNames = new Map();
    for (const c of changes) {
      if (c.kind === 'workload') this.#refreshWorkload(c.key, changed);
      else if (c.kind === 'service') this.#refreshService(c.key, changed);
      else if (c.kind === 'waypoint') this.#refreshWaypoint(c.key, changed);
      else if (c.kind === 'authorization') this.#refreshAuthorization(c.key, changed);
    }
    if (changed.size === 0) return;
    for (const l of [...this.#listeners]) {
      try {
        l(changed);
      } catch (err) {
        this.logger.error({ err }, 'discovery: a resource listener failed');
      }
    }
  }

  /** Puts (or, with `bytes` undefined, removes) one resource; records the name if it really changed. */
  #put(typeUrl: string, name: string, bytes: Uint8Array | undefined, changed: ChangedNames): void {
    const table = this.#tables.get(typeUrl)!;
    const mark = (): void => {
      const set = changed.get(typeUrl) ?? new Set<string>();
      changed.set(typeUrl, set);
      set.add(name);
    };
    if (bytes === undefined) {
      if (table.delete(name)) mark();
      return;
    }
    const version = versionOf(bytes);
    if (table.get(name)?.version === version) return;
    table.set(name, { name, version, resource: { type_url: typeUrl, value: bytes } });
    mark();
  }

  /** Encodes with `encode`; on failure the last good version keeps serving and the error is logged. */
  #encode(what: string, encode: () => Uint8Array): Uint8Array | null {
    try {
      return encode();
    } catch (err) {
      this.logger.error({ resource: what, err: (err as Error).message }, 'discovery: resource not served');
      return null;
    }
  }

  #refreshWorkload(uid: string, changed: ChangedNames): void {
    const w = this.state.workloadByUid(uid);
    const bytes = w
      ? this.#encode(uid, () => wdsCodecs().address.encode({ workload: workloadToProto(w) }))
      : undefined;
    if (bytes !== null) this.#put(ADDRESS_TYPE_URL, uid, bytes, changed);
  }

  /** The waypoint (if any) whose hostname is this service resource's. */
  #waypointAt(name: string): Waypoint | undefined {
    const slash = name.indexOf('/');
    const wp = this.state.waypointFor({ hostname: name.slice(slash + 1) });
    return wp && wp.namespace === name.slice(0, slash) ? wp : undefined;
  }

  #refreshService(name: string, changed: ChangedNames): void {
    const service = this.state.serviceByKey(name);
    const waypoint = this.#waypointAt(name);
    const bytes =
      service || waypoint
        ? this.#encode(name, () => wdsCodecs().address.encode({ service: serviceToProto(service, waypoint) }))
        : undefined;
    if (bytes !== null) this.#put(ADDRESS_TYPE_URL, name, bytes, changed);
  }

  #refreshWaypoint(key: string, changed: ChangedNames): void {
    const before = this.#waypointResource.get(key);
    const wp = this.state.waypointByKey(key);
    const now = wp ? serviceKey(wp) : undefined;
    if (now) this.#waypointResource.set(key, now);
    else this.#waypointResource.delete(key);
    if (before && before !== now) this.#refreshService(before, changed);
    if (now) this.#refreshService(now, changed);
  }

  #refreshAuthorization(key: string, changed: ChangedNames): void {
    const a = this.state.authorizationByKey(key);
    const bytes = a
      ? this.#encode(key, () => wdsCodecs().authorization.encode(authorizationToProto(a)))
      : undefined;
    if (bytes !== null) this.#put(AUTHORIZATION_TYPE_URL, key, bytes, changed);
  }
}
