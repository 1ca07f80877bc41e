// The process tuning is process-wide, so each case runs in a child node process: one tuned through
// the built ztunnel/runtime.js exactly as runZtunnel does, one left at V8's defaults to show the
// workload does trigger what the tuning prevents (else the test could not fail).
import { execFileSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { distPath } from '../netns/topology.js';

interface Probe {
  hwm: number;
  newSpaceBefore: number;
  newSpaceAfter: number;
  incremental: number;
  scavenges: number;
}

/** Allocation like a relay under connection churn: many short-lived objects, a window of survivors. */
function probe(tuned: boolean): Probe {
  const runtime = pathToFileURL(distPath('ztunnel/runtime.ts')).href;
  const script = `
    import v8 from 'node:v8';
    import { getDefaultHighWaterMark } from 'node:stream';
    import { PerformanceObserver, constants } from 'node:perf_hooks';
    if (${tuned}) (await import(${JSON.stringify(runtime)})).tuneZtunnelProcess();
    const kinds = { incremental: 0, scavenges: 0 };
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.detail.kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) kinds.incremental++;
        if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) kinds.scavenges++;
      }
    }).observe({ entryTypes: ['gc'] });
    const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    const newSpaceBefore = newSpace();
    const window = new Array(200000);
    const old = [];
    for (let i = 0; i < 3000000; i++) {
      window[i % window.length] = { i, s: 'conn-' + i };
      if (i % 10 === 0) old.push({ i });
      if (old.length > 150000) old.length = 0;
    }
    await new Promise((r) => setTimeout(r, 50));
    console.log(JSON.stringify({ hwm: getDefaultHighWaterMark(false), newSpaceBefore, newSpaceAfter: newSpace(), ...kinds }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return JSON.parse(out) as Probe;
}

describe('ztunnel process tuning', () => {
  it('keeps the young generation at its start size and does no incremental marking', () => {
    const untuned = probe(false);
    const tuned = probe(true);
    // V8's defaults grow the semi-space many times over and start incremental marking under this load.
    expect(untuned.newSpaceAfter).toBeGreaterThanOrEqual(8 * untuned.newSpaceBefore);
    expect(untuned.incremental).toBeGreaterThan(0);
    // Tuned: at most one step of growth (V8 rounds the first resize), never incremental marking.
    expect(tuned.newSpaceAfter).toBeLessThanOrEqual(2 * tuned.newSpaceBefore);
    expect(tuned.incremental).toBe(0);
    expect(tuned.scavenges).toBeGreaterThan(0);
    expect(tuned.hwm).toBe(256 * 1024);
    // Node's own default: 16 KiB up to Node 20, 64 KiB since Node 22 (its changelog: "stream: bump
    // default highWaterMark", semver-major).
    const nodeMajor = Number(process.versions.node.split('.')[0]);
    expect(untuned.hwm).toBe(nodeMajor >= 22 ? 64 * 1024 : 16 * 1024);
  }, 120_000);
});
