// Process-wide tuning for a ztunnel process: stream buffering and the V8 garbage collector. Applied
// once by runZtunnel, before any connection; a library user embedding `Ztunnel` may call it too.
//
// Why (bench/ztunnel, `AZT_ZTUNNEL_NODE_ARGS=--trace-gc`, perf on both ztunnels of a bulk transfer):
// a relay allocates one ArrayBuffer per socket read and per HTTP/2 DATA chunk. After a few idle
// seconds V8 entered a loop of incremental marking: a full Mark-Compact of the whole ~19 MB heap every
// 100-150 ms of bulk transfer, freeing < 1 MB each time (scavenges promoted nothing). The marking
// (main thread plus concurrent-marking workers) was ~28 % of both ztunnels' CPU, and bulk throughput
// swung between 0.5x and 0.8x the stunnel pair with how long the process had idled before.
// Without incremental marking the heap is collected by scavenges, plus an atomic full GC when the old
// generation really fills (one 20 ms pause at a 72 MB heap over the whole benchmark): 3.3-3.6 CPU-s/GB
// instead of 4.4-5.9, and the same figure whether or not the process idled first.
//
// The young generation: V8 grows the semi-spaces from 1 MiB to 16 MiB (x3 resident: from, to and the
// large-object young space) as soon as many objects survive a scavenge, which 1,000 new connections
// do. That growth is a fixed cost, not a per-connection one, yet it added ~12 KiB to every idle
// tunneled connection's share of RSS (36 -> 20 KiB at 1,000) and ~10 MiB to idle RSS.
//
// Both are set at run time (v8.setFlagsFromString): `--no-incremental-marking` and
// `--semi-space-growth-factor` are read when V8 decides, so they take effect without a node command
// line flag, which `ambit ztunnel` users and the chart would otherwise all have to repeat. V8 reads
// `--max-semi-space-size` only at heap set-up, which is why the growth factor is the knob here.
import { setDefaultHighWaterMark } from 'node:stream';
import v8 from 'node:v8';
import { RELAY_HIGH_WATER_MARK } from '../core/relay/relay.js';

/** The V8 flags `tuneZtunnelProcess` sets, in order. */
export const ZTUNNEL_V8_FLAGS: readonly string[] = Object.freeze([
  '--no-incremental-marking',
  '--semi-space-growth-factor=1',
]);

let tuned = false;

/** Applies the stream high-water mark and V8 flags above. Idempotent. */
export function tuneZtunnelProcess(): void {
  if (tuned) return;
  tuned = true;
  setDefaultHighWaterMark(false, RELAY_HIGH_WATER_MARK);
  for (const flag of ZTUNNEL_V8_FLAGS) v8.setFlagsFromString(flag);
}
