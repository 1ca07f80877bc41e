// One client stream's subscription to one type, in Envoy's incremental (delta) xDS protocol
// (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds):
// - the first request subscribes; no names (or "*") is a wildcard subscription, as ztunnel sends;
//   "*" in both subscribe and unsubscribe is ztunnel's on-demand "subscribe to nothing";
// - initial_resource_versions says what the client already holds, so a reconnecting client is sent
//   only resources whose version differs and removals of names it holds that are gone;
// - a request carrying response_nonce ACKs that response, or NACKs it when error_detail is set. A
//   NACKed resource keeps the client's previous version; it is sent again only when it changes.
import type { DeltaDiscoveryRequest, ProtoResource } from '../core/sources/wds-proto.js';
import type { ResourceEntry } from './resources.js';

export interface DeltaPush {
  resources: ProtoResource[];
  removed: string[];
}

export type RequestKind = 'subscribe' | 'ack' | 'nack';

export class DeltaSubscription {
  #wildcard = false;
  readonly #names = new Set<string>();
  /**
   * name → version the client holds, as far as this stream knows. A wildcard stream stops keeping it
   * once its first full answer is out: from then on it holds every resource of the table except the
   * refused ones, and each change names only resources whose version changed — so a node's stream
   * costs the discovery tier nothing per resource (thousands of ztunnels × every pod otherwise).
   */
  readonly #known = new Map<string, string>();
  #tracking = true;
  /** name → version the client refused; not pushed again until the version changes. */
  readonly #refused = new Map<string, string>();
  /** nonce → the resources (name → version) that response carried, until ACKed or NACKed. */
  readonly #inFlight = new Map<string, Map<string, string>>();
  #started = false;

  constructor(readonly typeUrl: string) {}

  get wildcard(): boolean {
    return this.#wildcard;
  }

  /** Applies one request; says whether it (re)subscribed, ACKed or NACKed, and what was NACKed. */
  applyRequest(req: DeltaDiscoveryRequest): { kind: RequestKind; refused?: string[] } {
    if (!this.#started) {
      this.#started = true;
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {}))
        this.#known.set(name, version);
      if (req.resource_names_subscribe.length === 0 && req.resource_names_unsubscribe.length === 0)
        this.#wildcard = true;
    }
    for (const name of req.resource_names_subscribe) {
      if (name === '*') this.#wildcard = true;
      else this.#names.add(name);
    }
    for (const name of req.resource_names_unsubscribe) {
      if (name === '*') {
        this.#wildcard = false;
        this.#tracking = true;
      } else {
        this.#names.delete(name);
        this.#known.delete(name);
      }
    }
    if (req.response_nonce) {
      const sent = this.#inFlight.get(req.response_nonce);
      this.#inFlight.delete(req.response_nonce);
      if (req.error_detail && (req.error_detail.code !== 0 || req.error_detail.message)) {
        // The client kept its previous versions of everything in that response.
        for (const [name, version] of sent ?? []) {
          if (this.#tracking) this.#known.delete(name);
          this.#refused.set(name, version);
        }
        return { kind: 'nack', refused: [...(sent?.keys() ?? [])] };
      }
      return { kind: 'ack' };
    }
    return { kind: 'subscribe' };
  }

  #wants(name: string): boolean {
    return this.#wildcard || this.#names.has(name);
  }

  /**
   * What to send for `names` (all subscribed resources when undefined), or undefined when nothing.
   * Records the push under `nonce` and assumes the client holds it (Envoy: versions are sent
   * optimistically; a NACK rolls the bookkeeping back).
   */
  push(
    table: ReadonlyMap<string, ResourceEntry>,
    nonce: string,
    names?: Iterable<string>,
  ): DeltaPush | undefined {
    // Untracked (synced wildcard): changes arrive by name; a full pass has nothing new to say.
    if (!this.#tracking && !names) return undefined;
    const resources: ProtoResource[] = [];
    const removed: string[] = [];
    const consider = (name: string): void => {
      const entry = table.get(name);
      if (!entry || !this.#wants(name)) {
        // Untracked, a removal is sent even if the client never took the resource (refused it):
        // delta xDS clients ignore removals of names they do not hold.
        if (this.#known.delete(name) || !this.#tracking) removed.push(name);
        return;
      }
      if (this.#tracking && this.#known.get(name) === entry.version) return;
      if (this.#refused.get(name) === entry.version) return;
      this.#refused.delete(name);
      resources.push({ name, version: entry.version, resource: entry.resource });
    };
    if (names) for (const n of names) consider(n);
    else {
      for (const n of table.keys()) consider(n);
      for (const n of [...this.#known.keys()]) if (!table.has(n)) consider(n);
    }
    const sent = new Map<string, string>();
    for (const r of resources) {
      if (this.#tracking) this.#known.set(r.name, r.version);
      sent.set(r.name, r.version);
    }
    if (!names && this.#wildcard) {
      this.#tracking = false;
      this.#known.clear();
    }
    if (resources.length === 0 && removed.length === 0) return undefined;
    this.#inFlight.set(nonce, sent);
    return { resources, removed };
  }

  /** Entries kept for this stream (0 for a synced wildcard stream). */
  get trackedCount(): number {
    return this.#known.size;
  }
}
