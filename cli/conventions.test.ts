// The CLI conventions (issue 18 §5) on the built `ambit`: --version, exit 0/1/2, one-line typo errors
// with a hint, -o choices, shell completion scripts that bash/zsh/fish accept; and `ambit observe`'s
// filters on flow rows as the proxies report them.
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { FlowRow } from './demo/flows.js';
import { matchesFilter, renderRow } from './observe.js';
import { ambit as runAmbit } from '../test/demo-run.js';

const ambit = (...args: string[]) => runAmbit(args, { timeoutMs: 30_000 });

function sh(shell: string, script: string): Promise<number> {
  return new Promise((resolve) => {
    const c = execFile(shell, ['-n'], { timeout: 10_000 }, (err) =>
      resolve(err ? ((err as { code?: number }).code ?? 1) : 0),
    );
    c.stdin?.end(script);
  });
}

describe('ambit CLI conventions', () => {
  it('--version prints the package version and exits 0', async () => {
    const r = await ambit('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('a typo exits 2 with one line, a suggestion and a hint — not the whole help', async () => {
    const r = await ambit('ztunel-config');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'ztunel-config'\n\(Did you mean ztunnel-config\?\)/);
    expect(r.stderr).toMatch(/run 'ambit --help'/);
    expect(r.stderr.split('\n').length).toBeLessThan(5);
    const o = await ambit('ztunnel-config', 'workloads', '-o', 'xml');
    expect(o.code).toBe(2);
    expect(o.stderr).toMatch(/'xml' is invalid\. Allowed choices are table, json, yaml/);
  });

  it('ambit state: 0 for a valid directory, 2 for a missing one (1 for a rejected object: cli/state.test.ts)', async () => {
    expect((await ambit('state', '-m', 'examples/basic', '-o', 'yaml')).code).toBe(0);
    expect((await ambit('state', '-m', '/nonexistent')).code).toBe(2);
  });

  it('completion scripts parse in bash and list the commands and subcommands', async () => {
    const bash = await ambit('completion', 'bash');
    expect(bash.code).toBe(0);
    expect(bash.stdout).toMatch(
      /"ztunnel-config"\) words="workloads services policies certificates connections log all/,
    );
    expect(bash.stdout).toMatch(/"observe"\) words=".*--verdict/);
    expect(await sh('bash', bash.stdout)).toBe(0);
    const fish = await ambit('completion', 'fish');
    expect(fish.stdout).toMatch(/complete -c ambit -n '__fish_use_subcommand' -a observe/);
    expect((await ambit('completion', 'zsh')).stdout).toMatch(/^#compdef ambit/);
    expect((await ambit('completion', 'tcsh')).code).toBe(2);
  });
});

const row = (over: Partial<FlowRow>): FlowRow => ({
  seq: 1,
  time: '2026-01-01T00:00:00.000Z',
  reporter: 'ztunnel/node2',
  direction: 'inbound',
  src: {
    addr: '10.244.1.11:5000',
    workload: 'batch',
    namespace: 'shop',
    identity: 'spiffe://cluster.local/ns/shop/sa/batch',
  },
  dst: {
    addr: '10.244.2.11:15008',
    workload: 'catalog',
    namespace: 'shop',
    identity: 'spiffe://cluster.local/ns/shop/sa/catalog',
  },
  mtls: true,
  verdict: 'FORWARDED',
  ...over,
});

describe('ambit observe filters', () => {
  it('matches namespace, workload, identity, verdict, policy and protocol on either end', () => {
    const denied = row({ verdict: 'DENIED', policy: 'shop/deny-batch' });
    expect(matchesFilter(denied, { verdict: 'denied' })).toBe(true);
    expect(matchesFilter(denied, { verdict: 'forwarded' })).toBe(false);
    expect(matchesFilter(denied, { workload: 'shop/catalog' })).toBe(true);
    expect(matchesFilter(denied, { workload: 'legacy/catalog' })).toBe(false);
    expect(matchesFilter(denied, { identity: 'cluster.local/ns/shop/sa/batch' })).toBe(true);
    expect(matchesFilter(denied, { namespace: 'legacy' })).toBe(false);
    expect(matchesFilter(denied, { policy: 'shop/deny-batch' })).toBe(true);
    expect(matchesFilter(denied, { protocol: 'tcp' })).toBe(true);
    expect(matchesFilter(denied, { protocol: 'http' })).toBe(false);
    const web = row({ l7: { protocol: 'HTTP/1.1', method: 'GET', path: '/admin', status: 403 } });
    expect(matchesFilter(web, { protocol: 'http' })).toBe(true);
    expect(renderRow(denied)).toMatch(
      /ztunnel\/node2\s+shop\/batch \[cluster\.local\/ns\/shop\/sa\/batch\] -> shop\/catalog DENIED mTLS policy=shop\/deny-batch$/,
    );
  });
});
