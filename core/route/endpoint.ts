// Endpoint selection, one named policy for every proxy path: among the HEALTHY endpoints that have an
// address and a port for the service port, a random pick weighted by capacity — istio/ztunnel
// src/state.rs `load_balance` (Workload `capacity`, default 1). ztunnel's outbound path, the waypoint's
// per-request upstream and `ambit policy check` all draw from `candidateEndpoints`, so the set explained
// is the set the data path picks from.
import type { Service, Workload } from '../state/model.js';
import type { Endpoint, MeshState } from '../state/state.js';

/** Label holding a workload's relative capacity (istio.workload.Workload.capacity; default 1). */
export const CAPACITY_LABEL = 'ambit.dev/capacity';

/** The endpoints a connection to (service, servicePort) may reach: healthy, addressed, with a target port. */
export function candidateEndpoints(state: MeshState, service: Service, servicePort: number): Endpoint[] {
  return state.endpointsOf(service, servicePort).filter((e) => e.workload.addresses.length > 0);
}

function capacityOf(w: Workload): number {
  const raw = Number(w.labels[CAPACITY_LABEL] ?? '1');
  return Number.isFinite(raw) && raw > 0 ? raw : 1;
}

/**
 * The load-balancing policy "capacity-weighted random" over `endpoints` (already filtered by
 * candidateEndpoints). `random` returns [0,1) and is injectable so a test can name the pick.
 */
export function selectEndpoint(
  endpoints: readonly Endpoint[],
  random: () => number = Math.random,
): Endpoint | undefined {
  if (endpoints.length === 0) return undefined;
  let total = 0;
  for (const e of endpoints) total += capacityOf(e.workload);
  let pick = random() * total;
  for (const e of endpoints) {
    pick -= capacityOf(e.workload);
    if (pick < 0) return e;
  }
  return endpoints[endpoints.length - 1];
}
