import { describe, expect, it } from 'vitest';
import type { DeltaDiscoveryRequest } from '../core/sources/wds-proto.js';
import { DeltaSubscription } from './delta.js';
import type { ResourceEntry } from './resources.js';

const T = 'type.googleapis.com/istio.workload.Address';
const req = (r: Partial<DeltaDiscoveryRequest>): DeltaDiscoveryRequest => ({
  type_url: T,
  resource_names_subscribe: [],
  resource_names_unsubscribe: [],
  initial_resource_versions: {},
  response_nonce: '',
  ...r,
});
const table = (entries: Record<string, string>): Map<string, ResourceEntry> =>
  new Map(
    Object.entries(entries).map(([name, version]) => [
      name,
      { name, version, resource: { type_url: T, value: new Uint8Array() } },
    ]),
  );
const names = (p: ReturnType<DeltaSubscription['push']>) => p?.resources.map((r) => r.name);

describe('delta xDS subscription bookkeeping', () => {
  it('treats a first request without names as wildcard and sends everything once', () => {
    const s = new DeltaSubscription(T);
    expect(s.applyRequest(req({}))).toEqual({ kind: 'subscribe' });
    expect(s.wildcard).toBe(true);
    const t = table({ a: '1', b: '1' });
    expect(names(s.push(t, '1'))).toEqual(['a', 'b']);
    expect(s.push(t, '2')).toBeUndefined();
    // Synced: nothing kept per resource; a change is sent by name, a removal as removed.
    expect(s.trackedCount).toBe(0);
    expect(names(s.push(table({ a: '2', b: '1' }), '3', ['a']))).toEqual(['a']);
    expect(s.push(table({ a: '2' }), '4', ['b'])?.removed).toEqual(['b']);
  });

  it('sends a reconnecting client only resources whose version differs, and removals of what it holds', () => {
    const s = new DeltaSubscription(T);
    s.applyRequest(req({ initial_resource_versions: { a: '1', b: '1', gone: '1' } }));
    const p = s.push(table({ a: '1', b: '2', c: '1' }), '1');
    expect(names(p)).toEqual(['b', 'c']);
    expect(p?.removed).toEqual(['gone']);
  });

  it("subscribes to nothing with ztunnel's on-demand '*' in both lists, then to named resources", () => {
    const s = new DeltaSubscription(T);
    s.applyRequest(req({ resource_names_subscribe: ['*'], resource_names_unsubscribe: ['*'] }));
    const t = table({ a: '1', b: '1' });
    expect(s.push(t, '1')).toBeUndefined();
    s.applyRequest(req({ resource_names_subscribe: ['b'] }));
    expect(names(s.push(t, '2'))).toEqual(['b']);
  });

  it('does not push a NACKed version again, but does push the next version', () => {
    const s = new DeltaSubscription(T);
    s.applyRequest(req({}));
    s.push(table({ a: '1' }), '1');
    expect(s.applyRequest(req({ response_nonce: '1' }))).toEqual({ kind: 'ack' });
    s.push(table({ a: '2' }), '2', ['a']);
    const nack = s.applyRequest(req({ response_nonce: '2', error_detail: { code: 3, message: 'bad' } }));
    expect(nack).toEqual({ kind: 'nack', refused: ['a'] });
    expect(s.push(table({ a: '2' }), '3', ['a'])).toBeUndefined();
    expect(names(s.push(table({ a: '3' }), '4', ['a']))).toEqual(['a']);
  });
});
