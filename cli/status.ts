// `ambit status`: what the local mesh (the one `ambit demo up` runs) is doing right now — which
// components run, the capture mode (eBPF or the nftables fallback, and why), which pods are enrolled,
// and each identity's certificate expiry as the ztunnels and the waypoints report it (admin
// /config_dump, the same data as `istioctl ztunnel-config certificates` / `istioctl proxy-config
// secret`). Sources: the demo state file, the agents' status files, and the admin APIs, reached inside
// each node's netns (ztunnel) and each waypoint pod's netns (waypoint): both listen on 127.0.0.1:15000.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { nsPath } from '../netns/topology.js';
import { loadManifestDirectory } from '../core/sources/manifests.js';
import { type Finding, meshFindings } from './common/findings.js';
import { EXIT_FAILURE, formatData, type OutputFormat, outputOption } from './common/output.js';
import {
  cmdlineOf,
  DEFAULT_DEMO_DIR,
  type DemoState,
  pidAlive,
  readDemoState,
  stateFileOf,
} from './demo/state-file.js';

interface AgentStatusView {
  mode: 'ebpf' | 'nftables';
  fallbackReason?: string;
  pid: number;
  pods: { name: string; namespace: string; ip: string; state: string; pending?: string }[];
}

interface CertView {
  identity: string;
  state: string;
  node: string;
  /** Who holds it: `ztunnel` (a node's ztunnel, for its workloads) or `waypoint <ns>/<name>`. */
  reporter: string;
  expires?: string;
}

/** ztunnel's admin port (istio/ztunnel) and the waypoint's (Envoy's admin port, waypoint/admin.ts). */
const ADMIN_PORT = 15000;

interface ConfigDumpCertificates {
  certificates: { identity: string; state: string; certChain: { expirationTime: string }[] }[];
}

export interface StatusReport {
  demo: { pid: number; running: boolean; startedAt: string; webUrl?: string; manifestsDir: string };
  components: { role: string; pid: number; running: boolean; netns?: string }[];
  capture: { node: string; mode: string; fallbackReason?: string; agentRunning: boolean }[];
  pods: {
    namespace: string;
    name: string;
    node: string;
    ip: string;
    enrolled: boolean;
    waypoint: boolean;
    capture?: string;
  }[];
  certificates: CertView[];
  /** Rejected manifests and False status conditions of the demo's live manifests. */
  findings: Finding[];
  problems: string[];
  /** What the report could not look at (not a finding). */
  notes: string[];
}

/** Alive and still the program the demo started (a crashed component's pid may be reused, or a zombie). */
function running(pid: number, expect = 'ambit'): boolean {
  if (!pidAlive(pid)) return false;
  const cmd = cmdlineOf(pid);
  return cmd.length > 0 && (cmd.includes(expect) || cmd.includes('.mjs'));
}

export function adminGet(netns: string, path: string, port = ADMIN_PORT): Promise<string> {
  return new Promise((res, rej) => {
    execFile(
      'nsenter',
      [`--net=${nsPath(netns)}`, 'curl', '-fsS', '--max-time', '3', `http://127.0.0.1:${port}${path}`],
      { timeout: 5000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        err ? rej(new Error(String(stderr).trim() || err.message)) : res(String(stdout)),
    );
  });
}

export async function collectStatus(state: DemoState): Promise<StatusReport> {
  const problems: string[] = [];
  const notes: string[] = [];
  const components = state.processes
    .filter((p) => !p.role.startsWith('app-'))
    .map((p) => ({
      role: p.role,
      pid: p.pid,
      running: running(p.pid),
      ...(p.netns ? { netns: p.netns } : {}),
    }));
  const apps = state.processes.filter((p) => p.role.startsWith('app-'));
  const appsUp = apps.filter((p) => running(p.pid)).length;
  components.push({
    role: `sample apps (${appsUp}/${apps.length} running)`,
    pid: 0,
    running: appsUp === apps.length && apps.length > 0,
  });
  const demoRunning = running(state.pid, 'demo');
  if (!demoRunning) {
    problems.push(
      `the demo process (pid ${state.pid}) is not running: it crashed or was killed; remove what it left with \`sudo ambit demo down\` (logs are kept)`,
    );
  }
  for (const c of components) {
    if (c.running) continue;
    const log = state.processes.find((p) => p.role === c.role)?.log;
    problems.push(
      `${c.role} is not running${log ? ` (see ${log})` : ''}${demoRunning ? '; restart the demo: `sudo ambit demo down` then `sudo npm start`' : ''}`,
    );
  }

  const capture: StatusReport['capture'] = [];
  const capturedPods = new Map<string, string>();
  for (const n of state.nodes) {
    try {
      const s = JSON.parse(readFileSync(n.agentStatusFile, 'utf8')) as AgentStatusView;
      capture.push({
        node: n.name,
        mode: s.mode,
        ...(s.fallbackReason ? { fallbackReason: s.fallbackReason } : {}),
        agentRunning: running(s.pid),
      });
      for (const p of s.pods)
        capturedPods.set(p.ip, p.pending ? `${p.state} (pending: ${p.pending})` : p.state);
    } catch (err) {
      capture.push({ node: n.name, mode: 'unknown', agentRunning: false });
      problems.push(
        `bpf-agent status of ${n.name} unreadable (${n.agentStatusFile}): ${(err as Error).message}`,
      );
    }
  }
  const certificates: CertView[] = [];
  const certRows = (dump: ConfigDumpCertificates, node: string, reporter: string) => {
    for (const c of dump.certificates) {
      certificates.push({
        identity: c.identity,
        state: c.state,
        node,
        reporter,
        ...(c.certChain[0] ? { expires: c.certChain[0].expirationTime } : {}),
      });
    }
  };
  const waypointPods = state.waypoint === 'running' ? state.pods.filter((p) => p.run === 'waypoint') : [];
  if (process.getuid?.() !== 0) {
    notes.push(
      'certificate expiry needs root (the ztunnel and waypoint admin APIs listen inside their netns)',
    );
  } else {
    for (const n of state.nodes) {
      try {
        certRows(
          JSON.parse(await adminGet(n.netns, '/config_dump')) as ConfigDumpCertificates,
          n.name,
          'ztunnel',
        );
      } catch (err) {
        problems.push(`ztunnel on ${n.name}: admin API not reachable: ${(err as Error).message}`);
      }
    }
    // The waypoint is a pod of its own (Istio's waypoint Deployment): its admin is on that pod's loopback.
    for (const p of waypointPods) {
      try {
        certRows(
          JSON.parse(await adminGet(p.netns, '/config_dump')) as ConfigDumpCertificates,
          p.node,
          `waypoint ${p.namespace}/${p.name}`,
        );
      } catch (err) {
        problems.push(
          `waypoint ${p.namespace}/${p.name}: admin API not reachable: ${(err as Error).message}`,
        );
      }
    }
  }
  // The live manifests as the mesh reads them: a rejected file or a policy that does not do what it
  // says is a finding (the ztunnels keep serving the last good state and only log the reason).
  let findings: Finding[] = [];
  try {
    const loaded = await loadManifestDirectory(state.manifestsDir);
    // File names relative to the manifests directory, as the operator dropped them there.
    const rel = `${state.manifestsDir.replace(/\/+$/, '')}/`;
    findings = meshFindings(
      loaded.translator,
      loaded.errors.map((e) => (e.message.startsWith(rel) ? e.message.slice(rel.length) : e.message)),
    );
  } catch (err) {
    problems.push(`manifests ${state.manifestsDir}: ${(err as Error).message}`);
  }
  for (const f of findings) problems.push(`${f.object}: ${f.type}=${f.status} ${f.reason}: ${f.message}`);
  return {
    demo: {
      pid: state.pid,
      running: demoRunning,
      startedAt: state.startedAt,
      ...(state.webUrl ? { webUrl: state.webUrl } : {}),
      manifestsDir: state.manifestsDir,
    },
    components,
    capture,
    pods: state.pods.map((p) => ({
      namespace: p.namespace,
      name: p.name,
      node: p.node,
      ip: p.ip,
      enrolled: p.enrolled,
      waypoint: p.run === 'waypoint',
      ...(capturedPods.has(p.ip) ? { capture: capturedPods.get(p.ip) } : {}),
    })),
    certificates,
    findings,
    problems,
    notes,
  };
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function untilText(iso: string): string {
  const ms = Date.parse(iso) - Date.now();
  if (ms <= 0) return 'EXPIRED';
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  return `in ${h}h${String(m).padStart(2, '0')}m`;
}

export function renderStatus(r: StatusReport): string {
  const out: string[] = [];
  out.push(
    `DEMO  pid ${r.demo.pid} ${r.demo.running ? 'running' : 'NOT RUNNING'} since ${r.demo.startedAt}${r.demo.webUrl ? `  flow view ${r.demo.webUrl}` : ''}`,
  );
  out.push(`      manifests ${r.demo.manifestsDir}`, '');
  out.push('COMPONENTS');
  out.push(
    table([
      ['COMPONENT', 'PID', 'STATE'],
      ...r.components.map((c) => [c.role, c.pid ? String(c.pid) : '-', c.running ? 'running' : 'DOWN']),
    ]),
  );
  out.push('', 'CAPTURE');
  out.push(
    table([
      ['NODE', 'MODE', 'AGENT', 'NOTE'],
      ...r.capture.map((c) => [
        c.node,
        c.mode === 'ebpf' ? 'eBPF' : c.mode === 'nftables' ? 'nftables (fallback)' : c.mode,
        c.agentRunning ? 'running' : 'DOWN',
        c.fallbackReason ?? '',
      ]),
    ]),
  );
  out.push('', 'PODS');
  out.push(
    table([
      ['NAMESPACE', 'NAME', 'NODE', 'IP', 'MESH', 'CAPTURE'],
      ...r.pods.map((p) => [
        p.namespace,
        p.name,
        p.node,
        p.ip,
        p.enrolled ? 'enrolled' : p.waypoint ? 'waypoint' : '-',
        p.capture ?? '-',
      ]),
    ]),
  );
  out.push('', 'CERTIFICATES');
  out.push(
    table([
      ['IDENTITY', 'NODE', 'HELD BY', 'STATE', 'EXPIRES'],
      ...r.certificates.map((c) => [
        c.identity,
        c.node,
        c.reporter,
        c.state,
        c.expires ? `${c.expires} (${untilText(c.expires)})` : '-',
      ]),
    ]),
  );
  if (r.problems.length > 0)
    out.push('', `PROBLEMS (${r.problems.length})`, ...r.problems.map((p) => `  - ${p}`));
  if (r.notes.length > 0) out.push('', 'NOTES', ...r.notes.map((p) => `  - ${p}`));
  return `${out.join('\n')}\n`;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      'components, capture mode, enrolled pods and certificate expiry of the local mesh (ambit demo)',
    )
    .option('--dir <dir>', 'the demo directory (state file)', process.env.AMBIT_DEMO_DIR ?? DEFAULT_DEMO_DIR)
    .addOption(outputOption())
    .action(async (f: { dir: string; output: OutputFormat }) => {
      const state = readDemoState(resolve(f.dir));
      if (!state) {
        console.error(
          `ambit status: no local mesh running (no ${stateFileOf(resolve(f.dir))}); start one with \`sudo npm start\``,
        );
        process.exit(1);
      }
      const report = await collectStatus(state);
      process.stdout.write(formatData(f.output, report, () => renderStatus(report)));
      // A problem is a finding: exit 1, so scripts and CI can wait on a healthy mesh.
      process.exit(report.problems.length > 0 ? EXIT_FAILURE : 0);
    });
}
