// Policy engine at scale (issue 2): `ambit policy check` against a generated directory of 10,000
// AuthorizationPolicies in 1,000 namespaces (load + decision, the built CLI as a child process), and the
// per-decision cost through MeshState.policiesFor + evaluate with 10 vs 10,000 policies in the mesh.
// Targets: load < 2 s; decision cost flat within 20% (a decision only looks at the destination's policies).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIdentityArg } from '../core/identity/spiffe.js';
import { compileAuthorizationPolicy } from '../core/policy/compile.js';
import { evaluate } from '../core/policy/evaluate.js';
import type { AuthorizationPolicy } from '../core/policy/istio-api.js';
import type { Workload } from '../core/state/model.js';
import { MeshState } from '../core/state/state.js';
import type { BenchScenario } from './run.js';

const NAMESPACES = 1000;
const POLICIES_PER_NAMESPACE = 10;
const LOAD_TARGET_MS = 2000;
const FLATNESS_TARGET = 0.2;

/** The 10 policies of one namespace: a mix of ALLOW/DENY, principals, namespaces, ports, CIDRs, L7 fields. */
function policySpecs(ns: string): { name: string; spec: AuthorizationPolicy['spec'] }[] {
  const out: { name: string; spec: AuthorizationPolicy['spec'] }[] = [];
  for (let i = 0; i < POLICIES_PER_NAMESPACE; i++) {
    const name = `policy-${i}`;
    switch (i % 5) {
      case 0:
        out.push({
          name,
          spec: {
            action: 'ALLOW',
            rules: [
              {
                from: [{ source: { principals: [`cluster.local/ns/${ns}/sa/client`] } }],
                to: [{ operation: { ports: ['8080'] } }],
              },
            ],
          },
        });
        break;
      case 1:
        out.push({
          name,
          spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: [`blocked-${i}`] } }] }] },
        });
        break;
      case 2:
        out.push({
          name,
          spec: {
            action: 'ALLOW',
            selector: { matchLabels: { app: `api-${i}` } },
            rules: [
              { from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }], to: [{ operation: { methods: ['GET'] } }] },
            ],
          },
        });
        break;
      case 3:
        out.push({
          name,
          spec: {
            action: 'DENY',
            rules: [
              {
                to: [{ operation: { notPorts: ['8080', '9090'] } }],
                when: [{ key: 'source.ip', values: ['192.168.0.0/16'] }],
              },
            ],
          },
        });
        break;
      default:
        out.push({
          name,
          spec: {
            action: 'ALLOW',
            rules: [{ from: [{ source: { serviceAccounts: ['client', 'ops/admin'] } }] }],
          },
        });
    }
  }
  return out;
}

function yamlPolicy(ns: string, p: { name: string; spec: AuthorizationPolicy['spec'] }): string {
  return JSON.stringify({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: p.name, namespace: ns },
    spec: p.spec,
  });
}

const podIp = (n: number, host: number) => `10.${Math.floor(n / 250)}.${n % 250}.${host}`;

/** One file per namespace (multi-document YAML; JSON is valid YAML). Pods and a Service in the first 3 only. */
export function generateDirectory(dir: string): void {
  for (let n = 0; n < NAMESPACES; n++) {
    const ns = `ns-${n}`;
    const docs = [
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { 'istio.io/dataplane-mode': 'ambient' } },
      }),
    ];
    for (const p of policySpecs(ns)) docs.push(yamlPolicy(ns, p));
    if (n < 3) {
      for (const [name, host] of [
        ['client', 10],
        ['server', 20],
      ] as const) {
        docs.push(
          JSON.stringify({
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name, namespace: ns, labels: { app: name } },
            spec: {
              nodeName: 'node-a',
              serviceAccountName: name,
              containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }],
            },
            status: {
              podIP: podIp(n, host),
              phase: 'Running',
              conditions: [{ type: 'Ready', status: 'True' }],
            },
          }),
        );
      }
      docs.push(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name: 'server', namespace: ns },
          spec: {
            selector: { app: 'server' },
            clusterIP: `10.96.${n}.10`,
            ports: [{ name: 'http', port: 80, targetPort: 8080 }],
          },
        }),
      );
    }
    writeFileSync(join(dir, `${ns}.yaml`), `${docs.join('\n---\n')}\n`);
  }
}

function workload(n: number): Workload {
  const ns = `ns-${n}`;
  return {
    uid: `Kubernetes//v1/Pod/${ns}/server`,
    name: 'server',
    namespace: ns,
    addresses: [podIp(n, 20)],
    node: 'node-a',
    serviceAccount: 'server',
    trustDomain: 'cluster.local',
    tunnelProtocol: 'HBONE',
    services: {},
    authorizationPolicies: [],
    labels: { app: 'server' },
    canonicalName: 'server',
    canonicalRevision: 'latest',
    workloadName: 'server',
    workloadType: 'DEPLOYMENT',
    status: 'HEALTHY',
    networkMode: 'STANDARD',
    nativeTunnel: false,
  };
}

/** A MeshState holding `namespaces` × 10 policies and one destination workload in ns-0. */
export function buildState(namespaces: number): { state: MeshState; dest: Workload } {
  const state = new MeshState();
  state.batch(() => {
    for (let n = 0; n < namespaces; n++) {
      const ns = `ns-${n}`;
      for (const p of policySpecs(ns)) {
        const c = compileAuthorizationPolicy(
          {
            apiVersion: 'security.istio.io/v1',
            kind: 'AuthorizationPolicy',
            metadata: { name: p.name, namespace: ns },
            spec: p.spec,
          },
          { rootNamespace: 'istio-system' },
        );
        if (c.l4) state.upsertAuthorization(c.l4);
      }
    }
    state.upsertWorkload(workload(0));
  });
  return { state, dest: workload(0) };
}

export function nsPerDecision(state: MeshState, dest: Workload, iterations: number): number {
  const conns = [
    {
      sourceIdentity: parseIdentityArg('ns-0/client'),
      sourceIp: '10.0.0.10',
      destinationIp: dest.addresses[0]!,
      destinationPort: 8080,
    },
    {
      sourceIdentity: parseIdentityArg('blocked-1/x'),
      sourceIp: '10.0.0.11',
      destinationIp: dest.addresses[0]!,
      destinationPort: 8080,
    },
    { sourceIp: '192.168.1.1', destinationIp: dest.addresses[0]!, destinationPort: 22 },
  ];
  let allowed = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    const c = conns[i % conns.length]!;
    const w = state.workloadByIp(c.destinationIp)!;
    if (evaluate(c, state.policiesFor(w)).allow) allowed++;
  }
  const elapsed = Number(process.hrtime.bigint() - start);
  if (allowed === 0) throw new Error('no decision allowed: the scenario is broken');
  return elapsed / iterations;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const scenario: BenchScenario = {
  name: 'policy: 10,000 AuthorizationPolicies in 1,000 namespaces',
  async run() {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-policy-bench-'));
    try {
      const t0 = performance.now();
      generateDirectory(dir);
      console.log(
        `generated ${NAMESPACES * POLICIES_PER_NAMESPACE} policies in ${NAMESPACES} namespaces (${NAMESPACES} files) in ${(performance.now() - t0).toFixed(0)} ms`,
      );

      // 1. The built CLI, end to end: node start + load + validate + compile + index + one decision.
      const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'ambit.js');
      const args = [
        cli,
        'policy',
        'check',
        '-m',
        dir,
        '--source-identity',
        'ns-0/client',
        '--source-ip',
        '10.0.0.10',
        '--destination',
        'server.ns-0:80',
        '-o',
        'json',
        '--timings',
      ];
      const runs: number[] = [];
      const loads: number[] = [];
      let result:
        | { decision: string; reason: string; timings?: { loadMs: number; decisionMs: number } }
        | undefined;
      for (let i = 0; i < 5; i++) {
        const s = performance.now();
        const out = execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
        runs.push(performance.now() - s);
        result = JSON.parse(out);
        if (result?.timings) loads.push(result.timings.loadMs);
      }
      const wall = median(runs);
      console.log(
        `ambit policy check, child process (5 runs): median ${wall.toFixed(0)} ms, best ${Math.min(...runs).toFixed(0)} ms  → ${result?.decision} (${result?.reason})`,
      );
      if (loads.length > 0) {
        console.log(
          `  of which load (read + validate + translate + compile + index): median ${median(loads).toFixed(0)} ms; decision ${result?.timings?.decisionMs.toFixed(2)} ms`,
        );
      }
      console.log(
        `  machine load average ${loadavg()[0]?.toFixed(2)} on ${cpus().length} CPUs (other work slows this)`,
      );
      console.log(
        `  target load < ${LOAD_TARGET_MS} ms (median wall time): ${wall < LOAD_TARGET_MS ? 'MET' : 'MISSED'}`,
      );

      // 2. Per-decision cost with 10 vs 10,000 policies in the mesh (same destination, same 10 local policies).
      const small = buildState(1);
      const large = buildState(NAMESPACES);
      const iterations = 300_000;
      nsPerDecision(small.state, small.dest, 50_000); // warm-up (JIT)
      nsPerDecision(large.state, large.dest, 50_000);
      const rounds = 5;
      const a: number[] = [];
      const b: number[] = [];
      for (let r = 0; r < rounds; r++) {
        a.push(nsPerDecision(small.state, small.dest, iterations));
        b.push(nsPerDecision(large.state, large.dest, iterations));
      }
      const s = median(a);
      const l = median(b);
      const diff = Math.abs(l - s) / s;
      console.log(`decision (policiesFor + evaluate), median of ${rounds}×${iterations}:`);
      console.log(`  10 policies in mesh:     ${s.toFixed(0)} ns/decision`);
      console.log(`  10,000 policies in mesh: ${l.toFixed(0)} ns/decision`);
      console.log(
        `  difference ${(diff * 100).toFixed(1)}%; target flat within ${FLATNESS_TARGET * 100}%: ${diff <= FLATNESS_TARGET ? 'MET' : 'MISSED'}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export default scenario;
