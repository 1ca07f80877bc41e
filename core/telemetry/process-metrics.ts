// Process gauges the Istio dashboards read from a proxy's own /metrics: the ztunnel dashboard's "Resource
// Usage" panel plots `process_open_fds{app="ztunnel"}` (istio/istio manifests/addons/dashboards/ztunnel.libsonnet).
// They are prom-client's own collectors (the standard Prometheus process_* names), loaded one module each
// for the reason core/telemetry/metrics.ts gives; process_cpu_seconds_total is left out because its module
// loads @opentelemetry/api.
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

const require = createRequire(import.meta.url);
type Collector = (registry: PromClient.Registry) => void;
const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;

/** process_open_fds, process_max_fds, process_resident_memory_bytes (+ heap, virtual), process_start_time_seconds. */
export function registerProcessMetrics(registry: PromClient.Registry): void {
  for (const m of [
    'processOpenFileDescriptors',
    'processMaxFileDescriptors',
    'osMemoryHeap',
    'processStartTime',
  ]) {
    (require(`prom-client/lib/metrics/${m}`) as Collector)(registry);
  }
}

/** A gauge read at scrape time (no timer, nothing to update on the data path). */
export function registerGauge(
  registry: PromClient.Registry,
  name: string,
  help: string,
  read: () => number,
): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/**
 * A counter family mirrored at scrape time from a running tally (label value → count) kept by its owner,
 * so the owner needs no prom-client: each scrape adds what grew since the last one.
 */
export function registerTallyCounter(
  registry: PromClient.Registry,
  name: string,
  help: string,
  label: string,
  tally: ReadonlyMap<string, number>,
): void {
  const seen = new Map<string, number>();
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      for (const [value, n] of tally) {
        const grew = n - (seen.get(value) ?? 0);
        if (grew > 0) this.inc({ [label]: value }, grew);
        seen.set(value, n);
      }
    },
  });
}
