// `ambit check`: is this machine ready for Ambit, and is the installed mesh healthy (like `linkerd
// check` / `istioctl x precheck`). Every finding names its fix; exit 1 when any check fails.
//   pre-install (always): kernel and BPF (sk_assign at tc needs Linux 5.7+, a mounted bpffs), cgroup v2,
//                         nftables (the capture fallback), the node's CNI and whether capture supports it
//   local mesh (`ambit demo`, from its state file): demo and components alive, each node's ztunnel
//                         ready (/healthz/ready on 15021) and capture agent up, CA reachable, certificates
//                         valid and not near expiry, the capture bypass counters at 0, manifests accepted
//   cluster (--kubeconfig / --kubernetes): CRDs served (discovery), ztunnel and CA workloads ready
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { nsPath } from '../netns/topology.js';
import { adminRequest, demoDir } from './common/admin.js';
import { EXIT_FAILURE, formatData, type OutputFormat, outputOption } from './common/output.js';
import { readDemoState } from './demo/state-file.js';
import { collectStatus } from './status.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  group: string;
  name: string;
  status: CheckStatus;
  message: string;
  /** What to do about a warn or fail. */
  fix?: string;
}

const ok = (group: string, name: string, message: string): CheckResult => ({
  group,
  name,
  status: 'ok',
  message,
});
const bad = (
  group: string,
  name: string,
  status: CheckStatus,
  message: string,
  fix: string,
): CheckResult => ({
  group,
  name,
  status,
  message,
  fix,
});

/** CNI plugin types whose pods get a veth in the host netns: what the tc/nft capture attaches to. */
const VETH_CNIS = ['bridge', 'ptp', 'calico', 'flannel', 'kindnet', 'weave-net', 'antrea', 'kube-ovn'];

function kernelAtLeast(rel: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

function which(cmd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5000 }, (err, stdout) => resolve(err ? undefined : String(stdout)));
  });
}

/** The CNI plugin types configured on this node (/etc/cni/net.d, as the kubelet reads it). */
export function cniTypes(dir = '/etc/cni/net.d'): { file: string; types: string[] } | undefined {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir)
    .filter((f) => /\.(conflist|conf|json)$/.test(f))
    .sort();
  const file = files[0];
  if (!file) return undefined;
  try {
    const doc = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
      type?: string;
      plugins?: { type?: string }[];
    };
    const types = doc.plugins ? doc.plugins.map((p) => p.type ?? '?') : [doc.type ?? '?'];
    return { file: join(dir, file), types };
  } catch {
    return { file: join(dir, file), types: ['(unparsable)'] };
  }
}

export async function preInstallChecks(): Promise<CheckResult[]> {
  const g = 'pre-install';
  const out: CheckResult[] = [];
  const rel = release();
  out.push(
    kernelAtLeast(rel, 5, 7)
      ? ok(g, 'kernel', `Linux ${rel}: tc sk_assign available (eBPF capture)`)
      : bad(
          g,
          'kernel',
          'warn',
          `Linux ${rel} is older than 5.7: no bpf_sk_assign at tc`,
          'capture falls back to nftables TPROXY; upgrade the kernel for eBPF',
        ),
  );
  const mounts = readFileSync('/proc/mounts', 'utf8');
  out.push(
    /\sbpf\s/.test(mounts) || / \/sys\/fs\/bpf /.test(mounts)
      ? ok(g, 'bpffs', 'BPF filesystem mounted (/sys/fs/bpf)')
      : bad(
          g,
          'bpffs',
          'warn',
          'no BPF filesystem mounted',
          'mount -t bpf bpf /sys/fs/bpf (the agent pins its maps there)',
        ),
  );
  // cgroup v2 carries the optional service load balancing (cgroup/connect4); hybrid hosts mount it aside.
  const cg2 = /^\S+ (\S+) cgroup2 /m.exec(mounts)?.[1];
  out.push(
    cg2
      ? ok(
          g,
          'cgroup v2',
          cg2 === '/sys/fs/cgroup' ? 'unified hierarchy at /sys/fs/cgroup' : `hybrid: cgroup v2 at ${cg2}`,
        )
      : bad(
          g,
          'cgroup v2',
          'warn',
          'no cgroup v2 mounted: the service load balancing (--service-lb-cgroup) cannot attach',
          'boot with systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup/unified',
        ),
  );
  const nft = await which('nft', ['--version']);
  out.push(
    nft
      ? ok(g, 'nftables', `${nft.trim()} (capture fallback)`)
      : bad(
          g,
          'nftables',
          'warn',
          'nft not found: no capture fallback when eBPF cannot load',
          'apt-get install nftables',
        ),
  );
  const cni = cniTypes();
  if (!cni) {
    out.push(
      ok(
        g,
        'CNI',
        'no CNI configuration in /etc/cni/net.d (not a Kubernetes node: the demo makes its own veths)',
      ),
    );
  } else if (cni.types.some((t) => t === 'cilium-cni' || t === 'cilium')) {
    out.push(
      bad(
        g,
        'CNI',
        'warn',
        `${cni.file}: Cilium`,
        'set Cilium cni.exclusive=false and socketLB.hostNamespaceOnly=true (as Istio ambient requires), or capture misses pod traffic',
      ),
    );
  } else if (cni.types.some((t) => VETH_CNIS.includes(t))) {
    out.push(ok(g, 'CNI', `${cni.file}: ${cni.types.join(', ')} (veth per pod: capture supported)`));
  } else {
    out.push(
      bad(
        g,
        'CNI',
        'warn',
        `${cni.file}: ${cni.types.join(', ')} is not a CNI capture was tested with`,
        'run `ambit demo` or a test pod and check `ambit status` shows CAPTURE for it',
      ),
    );
  }
  return out;
}

function tcpReachable(netns: string, address: string): Promise<boolean> {
  return new Promise((resolve) => {
    // curl's exit 7 (refused) / 28 (timeout) mean unreachable; a TLS or HTTP/2 error means it answered.
    execFile(
      'nsenter',
      [`--net=${nsPath(netns)}`, 'curl', '-sk', '--max-time', '2', '-o', '/dev/null', `https://${address}/`],
      { timeout: 5000 },
      (err) => resolve(!err || ![7, 28].includes((err as { code?: number }).code ?? 0)),
    );
  });
}

const HOUR = 3_600_000;

export async function demoChecks(dir: string): Promise<CheckResult[]> {
  const g = 'local mesh';
  const st = readDemoState(dir);
  if (!st) return [];
  const out: CheckResult[] = [];
  const r = await collectStatus(st);
  out.push(
    r.demo.running
      ? ok(g, 'demo', `pid ${r.demo.pid} running since ${r.demo.startedAt}`)
      : bad(
          g,
          'demo',
          'fail',
          `the demo process ${r.demo.pid} is not running`,
          'sudo ambit demo down (removes what it left; logs are kept), then sudo npm start',
        ),
  );
  for (const c of r.components) {
    if (!c.running)
      out.push(
        bad(
          g,
          c.role,
          'fail',
          `${c.role} is not running`,
          'see its log in the demo directory; restart: sudo ambit demo down && sudo npm start',
        ),
      );
  }
  for (const n of st.nodes) {
    try {
      await adminRequest(
        { kind: 'netns', netns: n.netns, port: 15021, label: `ztunnel on ${n.name}` },
        '/healthz/ready',
      );
      out.push(ok(g, `ztunnel ${n.name}`, 'ready (/healthz/ready)'));
    } catch (err) {
      out.push(
        bad(
          g,
          `ztunnel ${n.name}`,
          'fail',
          (err as Error).message,
          `ambit ztunnel-config log --node ${n.name}; its log: ${join(dir, 'logs', `ztunnel-${n.name}.log`)}`,
        ),
      );
    }
    const cap = r.capture.find((c) => c.node === n.name);
    out.push(
      cap?.agentRunning
        ? ok(
            g,
            `capture ${n.name}`,
            `agent running, ${cap.mode === 'ebpf' ? 'eBPF' : `nftables fallback${cap.fallbackReason ? ` (${cap.fallbackReason})` : ''}`}`,
          )
        : bad(
            g,
            `capture ${n.name}`,
            'fail',
            'bpf-agent not running',
            `its log: ${join(dir, 'logs', `bpf-agent-${n.name}.log`)}`,
          ),
    );
    try {
      const s = JSON.parse(readFileSync(n.agentStatusFile, 'utf8')) as { counters?: Record<string, number> };
      const c = s.counters ?? {};
      // Packets of enrolled pods that went around ztunnel: fail-open passes and failed socket assigns.
      const bypass = (c.fail_open ?? 0) + (c.assign_failed ?? 0);
      out.push(
        bypass === 0
          ? ok(g, `bypass ${n.name}`, 'capture bypass counters at 0 (fail_open, assign_failed)')
          : bad(
              g,
              `bypass ${n.name}`,
              'fail',
              `${bypass} packets of enrolled pods bypassed ztunnel (fail_open ${c.fail_open ?? 0}, assign_failed ${c.assign_failed ?? 0})`,
              'check that the node ztunnel is ready; the agent log names the pods',
            ),
      );
    } catch {}
  }
  if (st.caAddress) {
    const first = st.nodes[0];
    out.push(
      first && (await tcpReachable(first.netns, st.caAddress))
        ? ok(g, 'CA', `reachable at ${st.caAddress}`)
        : bad(
            g,
            'CA',
            'fail',
            `CA at ${st.caAddress} not reachable from ${first?.name}`,
            `its log: ${join(dir, 'logs', 'ca.log')}`,
          ),
    );
  }
  const now = Date.now();
  const certs = r.certificates;
  const expired = certs.filter((c) => c.state !== 'Available' || !c.expires || Date.parse(c.expires) <= now);
  const soon = certs.filter(
    (c) => c.expires && Date.parse(c.expires) > now && Date.parse(c.expires) - now < HOUR,
  );
  if (certs.length > 0) {
    if (expired.length > 0)
      out.push(
        bad(
          g,
          'certificates',
          'fail',
          `not valid: ${expired.map((c) => `${c.identity} (${c.reporter}, ${c.state})`).join(', ')}`,
          'check the CA is reachable; the proxies retry with backoff',
        ),
      );
    else if (soon.length > 0)
      out.push(
        bad(
          g,
          'certificates',
          'warn',
          `expire within an hour: ${soon.map((c) => c.identity).join(', ')}`,
          'rotation happens at half-life; if it did not, check the CA log',
        ),
      );
    else out.push(ok(g, 'certificates', `${certs.length} valid, none expiring within an hour`));
  }
  const findings = r.findings;
  out.push(
    findings.length === 0
      ? ok(g, 'manifests', `every object in ${st.manifestsDir} accepted`)
      : bad(
          g,
          'manifests',
          'fail',
          findings.map((f) => `${f.object}: ${f.message}`).join('; '),
          `fix or remove the object (\`ambit state -m ${st.manifestsDir}\` lists them)`,
        ),
  );
  return out;
}

export async function clusterChecks(kubeconfig?: string): Promise<CheckResult[]> {
  const g = 'cluster';
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const out: CheckResult[] = [];
  const apis = kc.makeApiClient(k8s.ApisApi);
  let groups: string[] = [];
  try {
    groups = (await apis.getAPIVersions()).groups.flatMap((x) => x.versions.map((v) => v.groupVersion));
    out.push(ok(g, 'API server', `reachable at ${kc.getCurrentCluster()?.server}`));
  } catch (err) {
    return [
      bad(
        g,
        'API server',
        'fail',
        `not reachable: ${(err as Error).message}`,
        'check the kubeconfig (--kubeconfig) and the cluster',
      ),
    ];
  }
  for (const [gv, what] of [
    ['security.istio.io/v1', 'Istio security CRDs (AuthorizationPolicy, PeerAuthentication)'],
    ['gateway.networking.k8s.io/v1', 'Gateway API CRDs (Gateway, HTTPRoute, GRPCRoute)'],
  ] as const) {
    out.push(
      groups.includes(gv)
        ? ok(g, `CRDs ${gv}`, `${what} served`)
        : bad(
            g,
            `CRDs ${gv}`,
            'fail',
            `${gv} not served`,
            gv.startsWith('gateway')
              ? 'kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases (standard-install.yaml)'
              : 'helm install ambit charts/ambit (installs the Istio CRDs)',
          ),
    );
  }
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const nodes = (await core.listNode()).items.map((n) => n.metadata?.name ?? '?');
  for (const [name, what] of [
    ['ztunnel', 'ztunnel'],
    ['ambit-bpf-agent', 'capture agent'],
  ] as const) {
    try {
      const ds = await apps.readNamespacedDaemonSet({ name, namespace: 'istio-system' });
      const want = ds.status?.desiredNumberScheduled ?? 0;
      const ready = ds.status?.numberReady ?? 0;
      out.push(
        want > 0 && ready === want && want >= nodes.length
          ? ok(g, what, `DaemonSet istio-system/${name}: ${ready}/${want} ready on ${nodes.length} nodes`)
          : bad(
              g,
              what,
              'fail',
              `DaemonSet istio-system/${name}: ${ready}/${want} ready, ${nodes.length} nodes`,
              `kubectl -n istio-system describe daemonset ${name}`,
            ),
      );
    } catch {
      out.push(
        bad(g, what, 'fail', `DaemonSet istio-system/${name} not found`, 'helm install ambit charts/ambit'),
      );
    }
  }
  return out;
}

export function renderChecks(rs: CheckResult[]): string {
  const icon = { ok: '√', warn: '‼', fail: '×' } as const;
  const lines: string[] = [];
  let group = '';
  for (const r of rs) {
    if (r.group !== group) {
      group = r.group;
      lines.push(lines.length ? '' : '', group, '-'.repeat(group.length));
    }
    lines.push(`${icon[r.status]} ${r.name}: ${r.message}`);
    if (r.fix && r.status !== 'ok') lines.push(`    fix: ${r.fix}`);
  }
  const fails = rs.filter((r) => r.status === 'fail').length;
  const warns = rs.filter((r) => r.status === 'warn').length;
  lines.push(
    '',
    fails
      ? `Status check results are × (${fails} failed, ${warns} warnings)`
      : `Status check results are √${warns ? ` (${warns} warnings)` : ''}`,
  );
  return lines.join('\n').replace(/^\n/, '');
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check this machine and the installed mesh (like linkerd check): each finding names its fix')
    .option('--pre', 'only the pre-install checks')
    .option('--dir <dir>', 'the local demo directory (state file)')
    .option('--kubeconfig <file>', 'also check the cluster this kubeconfig names')
    .option('--kubernetes', 'also check the cluster of the default kubeconfig')
    .addOption(outputOption())
    .action(
      async (f: {
        pre?: boolean;
        dir?: string;
        kubeconfig?: string;
        kubernetes?: boolean;
        output: OutputFormat;
      }) => {
        const rs = await preInstallChecks();
        if (!f.pre) {
          rs.push(...(await demoChecks(demoDir(f.dir))));
          if (f.kubeconfig || f.kubernetes) rs.push(...(await clusterChecks(f.kubeconfig)));
        }
        process.stdout.write(formatData(f.output, rs, () => renderChecks(rs)));
        if (rs.some((r) => r.status === 'fail')) process.exitCode = EXIT_FAILURE;
      },
    );
}
