// Service scaling: what a new connection from a pod pays, and what programming N services costs, for
// kube-proxy-style iptables chains, an nftables verdict map (kube-proxy's nftables mode) and Ambit's
// eBPF service map (svc_connect4: one hash lookup at connect(), Cilium socket-LB style). Reproduces
// the measurement of issue 5. Targets (issue 5): eBPF p50 at 20k within 15% of 10; adding one
// service at 20k < 5 ms. Writes bench/results/bpf.md and bench/results/bpf.svg.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureBpffs, run, Topology } from '../test/harness/topology.js';
import { MapWriter } from '../bpf-redirect/agent/map-writer.js';
import { svcKey, svcValue } from '../bpf-redirect/agent/service-lb.js';
import type { BenchScenario } from './run.js';

const SIZES = [10, 1000, 5000, 10_000, 20_000];
const CONNECTS = Number(process.env.AMBIT_BENCH_CONNECTS ?? 2000);
const WARMUP = 200;
const REPEATS = 3;
const BACKEND_PORT = 8080;

// A blocking connect() loop in C: Node's event loop would add more jitter than the thing measured.
const CLIENT_C = String.raw`
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: %s targets-file count warmup seed\n", argv[0]); return 2; }
  FILE *f = fopen(argv[1], "r"); if (!f) { perror(argv[1]); return 2; }
  int cap = 1 << 16, n = 0; struct sockaddr_in *t = calloc(cap, sizeof *t);
  char ip[64]; int port;
  while (n < cap && fscanf(f, "%63s %d", ip, &port) == 2) {
    t[n].sin_family = AF_INET; t[n].sin_port = htons(port); inet_pton(AF_INET, ip, &t[n].sin_addr); n++;
  }
  int count = atoi(argv[2]), warm = atoi(argv[3]); srand(atoi(argv[4]));
  double *lat = calloc(count, sizeof *lat); int failed = 0;
  for (int i = 0; i < warm + count; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in *d = &t[rand() % n];
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    int r = connect(fd, (struct sockaddr *)d, sizeof *d);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (r != 0) failed++;
    struct linger lg = {1, 0}; setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);  /* RST: no TIME_WAIT */
    close(fd);
    if (i >= warm) lat[i - warm] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
  }
  qsort(lat, count, sizeof *lat, cmp);
  printf("%.2f %.2f %d\n", lat[count / 2], lat[(int)(count * 0.99)], failed);
  return failed ? 1 : 0;
}
`;

type Mode = 'iptables' | 'nft-vmap' | 'ebpf';
const MODES: Mode[] = ['iptables', 'nft-vmap', 'ebpf'];

interface Row {
  mode: Mode;
  n: number;
  p50: number;
  p99: number;
  programMs: number;
  addOneMs: number;
}

const vip = (i: number): string => `10.96.${(i >> 8) & 0xff}.${i & 0xff}`;
const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function timedAsync(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function timed(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function cgroup2Root(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (fstype === 'cgroup2' && mnt) return mnt;
  }
  throw new Error('no cgroup2 mount in /proc/mounts (the eBPF service map attaches to a cgroup)');
}

/** kube-proxy's iptables shape: KUBE-SERVICES match → KUBE-SVC (mark-masq + jump) → KUBE-SEP (masq mark + DNAT). */
function iptablesRestore(n: number, backend: string, from = 0): string {
  const lines = ['*nat'];
  if (from === 0) {
    lines.push(':KUBE-SERVICES - [0:0]', ':KUBE-MARK-MASQ - [0:0]');
    lines.push('-A PREROUTING -j KUBE-SERVICES', '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000');
  }
  for (let i = from; i < from + n; i++) {
    lines.push(`:KUBE-SVC-${i} - [0:0]`, `:KUBE-SEP-${i} - [0:0]`);
  }
  for (let i = from; i < from + n; i++) {
    lines.push(
      `-A KUBE-SERVICES -d ${vip(i)}/32 -p tcp -m comment --comment "ns/svc-${i}:http" -m tcp --dport 80 -j KUBE-SVC-${i}`,
      `-A KUBE-SVC-${i} ! -s 10.244.0.0/16 -d ${vip(i)}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ`,
      `-A KUBE-SVC-${i} -j KUBE-SEP-${i}`,
      `-A KUBE-SEP-${i} -s ${backend}/32 -j KUBE-MARK-MASQ`,
      `-A KUBE-SEP-${i} -p tcp -m tcp -j DNAT --to-destination ${backend}:${BACKEND_PORT}`,
    );
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** kube-proxy's nftables shape: one verdict map daddr . proto . dport → goto a per-service chain. */
function nftScript(table: string, n: number, backend: string, from = 0): string {
  const out: string[] = [];
  if (from === 0) {
    out.push(
      `table ip ${table} {`,
      '  map services { type ipv4_addr . inet_proto . inet_service : verdict; }',
      '  chain prerouting { type nat hook prerouting priority -100; policy accept;',
      '    ip daddr . meta l4proto . th dport vmap @services',
      '  }',
      '}',
    );
  }
  for (let i = from; i < from + n; i++) out.push(`add chain ip ${table} svc-${i}`);
  for (let i = from; i < from + n; i++)
    out.push(`add rule ip ${table} svc-${i} meta l4proto tcp dnat to ${backend}:${BACKEND_PORT}`);
  for (let i = from; i < from + n; i += 1000) {
    const elems: string[] = [];
    for (let j = i; j < Math.min(from + n, i + 1000); j++) elems.push(`${vip(j)} . tcp . 80 : goto svc-${j}`);
    out.push(`add element ip ${table} services { ${elems.join(', ')} }`);
  }
  return `${out.join('\n')}\n`;
}

function svgChart(rows: Row[]): string {
  const W = 720;
  const H = 420;
  const pad = { l: 70, r: 170, t: 40, b: 60 };
  const colors: Record<Mode, string> = { iptables: '#d62728', 'nft-vmap': '#1f77b4', ebpf: '#2ca02c' };
  const maxY = Math.max(...rows.map((r) => r.p50)) * 1.15;
  const x = (idx: number) => pad.l + (idx * (W - pad.l - pad.r)) / (SIZES.length - 1);
  const y = (v: number) => H - pad.b - (v / maxY) * (H - pad.t - pad.b);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - 60}" y="22" font-size="15">connect() p50 from a pod vs number of services</text>`,
    `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="black"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="black"/>`,
    `<text x="${W / 2 - 60}" y="${H - 15}">services (N)</text>`,
    `<text x="15" y="${H / 2}" transform="rotate(-90 15 ${H / 2})">µs</text>`,
  ];
  SIZES.forEach((n, i) => {
    parts.push(`<text x="${x(i) - 15}" y="${H - pad.b + 18}">${n >= 1000 ? `${n / 1000}k` : n}</text>`);
  });
  for (let k = 0; k <= 4; k++) {
    const v = (maxY * k) / 4;
    parts.push(`<text x="${pad.l - 45}" y="${y(v) + 4}">${v.toFixed(0)}</text>`);
    parts.push(`<line x1="${pad.l}" y1="${y(v)}" x2="${W - pad.r}" y2="${y(v)}" stroke="#eee"/>`);
  }
  MODES.forEach((m, mi) => {
    const pts = SIZES.map((n, i) => {
      const r = rows.find((row) => row.mode === m && row.n === n);
      return r ? `${x(i)},${y(r.p50)}` : '';
    }).filter(Boolean);
    parts.push(`<polyline fill="none" stroke="${colors[m]}" stroke-width="2.5" points="${pts.join(' ')}"/>`);
    parts.push(
      `<rect x="${W - pad.r + 20}" y="${pad.t + mi * 22}" width="14" height="4" fill="${colors[m]}"/>`,
    );
    parts.push(`<text x="${W - pad.r + 40}" y="${pad.t + mi * 22 + 6}">${m}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

async function runBench(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skipped: needs root (netns, BPF, netfilter)');
    return;
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const repo = here.includes('/dist/') ? resolve(here, '../..') : resolve(here, '..');
  const obj = join(repo, 'bpf-redirect/build/sock_connect.bpf.o');
  if (!existsSync(obj)) throw new Error(`${obj} missing: run npm run build:bpf`);
  const work = mkdtempSync(join(tmpdir(), 'ambit-bpfbench-'));
  const client = join(work, 'connect_latency');
  writeFileSync(`${client}.c`, CLIENT_C);
  execFileSync('cc', ['-O2', '-o', client, `${client}.c`]);

  await ensureBpffs();
  const topo = await Topology.create();
  const cg = join(cgroup2Root(), `${topo.prefix}-bench`);
  const pin = topo.pinDir('bench');
  const nftTable = `${topo.prefix}_svc`;
  const rows: Row[] = [];
  let writeMethod = 'bpftool';
  try {
    const node = await topo.addNode('n');
    const pod = await topo.addPod('n', 'client');
    const backend = node.gateway; // an address of the node netns, reachable from the pod
    topo.spawnIn(node.ns, process.execPath, [
      '-e',
      `require('net').createServer((s) => { s.on('error', () => {}); s.destroy(); }).listen(${BACKEND_PORT}, '0.0.0.0')`,
    ]);
    mkdirSync(cg);
    await run('bpftool', ['prog', 'loadall', obj, pin, 'type', 'cgroup/connect4', 'pinmaps', `${pin}/maps`]);
    const mapPin = `${pin}/maps/ambit_svcs`;
    const inNode = (cmd: string, args: string[], input?: string) =>
      execFileSync('nsenter', [`--net=/var/run/netns/${node.ns}`, cmd, ...args], {
        input,
        stdio: ['pipe', 'pipe', 'pipe'],
        maxBuffer: 1 << 26,
      });
    // Wait for the backend (bounded).
    for (let i = 0; i < 50; i++) {
      const ok = await run('nsenter', [
        `--net=/var/run/netns/${pod.ns}`,
        'bash',
        '-c',
        `exec 3<>/dev/tcp/${backend}/${BACKEND_PORT}`,
      ]).then(
        () => true,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }

    const measure = (n: number, inCgroup: boolean): { p50: number; p99: number } => {
      const targets = join(work, 'targets');
      writeFileSync(targets, Array.from({ length: n }, (_, i) => `${vip(i)} 80`).join('\n'));
      const p50s: number[] = [];
      const p99s: number[] = [];
      for (let r = 0; r < REPEATS; r++) {
        const cmd = `${inCgroup ? `echo $$ > ${cg}/cgroup.procs && ` : ''}exec nsenter --net=/var/run/netns/${pod.ns} ${client} ${targets} ${CONNECTS} ${WARMUP} ${r + 1}`;
        const out = execFileSync('sh', ['-c', cmd], { timeout: 120_000 }).toString().trim().split(' ');
        p50s.push(Number(out[0]));
        p99s.push(Number(out[1]));
      }
      return { p50: median(p50s), p99: median(p99s) };
    };

    for (const mode of MODES) {
      for (const n of SIZES) {
        let programMs = 0;
        let addOneMs = 0;
        if (mode === 'iptables') {
          programMs = timed(() => inNode('iptables-restore', [], iptablesRestore(n, backend)));
          addOneMs = timed(() => inNode('iptables-restore', ['--noflush'], iptablesRestore(1, backend, n)));
        } else if (mode === 'nft-vmap') {
          programMs = timed(() => inNode('nft', ['-f', '-'], nftScript(nftTable, n, backend)));
          addOneMs = timed(() => inNode('nft', ['-f', '-'], nftScript(nftTable, 1, backend, n)));
        } else {
          // The agent's own write path (bpf-redirect/agent/map-writer.ts): in-process bpf(2) when the
          // addon is built, else bpftool.
          const writer = new MapWriter(join(repo, 'bpf-redirect/build'));
          writeMethod = writer.method;
          const entry = (i: number) => ({
            pin: mapPin,
            key: svcKey(vip(i), 80),
            value: svcValue([{ ip: backend, port: BACKEND_PORT }]),
          });
          programMs = await timedAsync(() => writer.apply(Array.from({ length: n }, (_, i) => entry(i))));
          await run('bpftool', ['cgroup', 'attach', cg, 'connect4', 'pinned', `${pin}/svc_connect4`]);
          // Median of 9 single adds to damp machine noise.
          const adds: number[] = [];
          for (let k = 0; k < 9; k++) adds.push(await timedAsync(() => writer.apply([entry(n + k)])));
          writer.close();
          addOneMs = median(adds);
        }
        const lat = measure(n, mode === 'ebpf');
        rows.push({ mode, n, ...lat, programMs, addOneMs });
        console.log(
          `${mode.padEnd(9)} N=${String(n).padStart(6)}  p50 ${lat.p50.toFixed(1)} µs  p99 ${lat.p99.toFixed(1)} µs  program ${programMs.toFixed(1)} ms  add one ${addOneMs.toFixed(2)} ms`,
        );
        // Reset for the next size.
        if (mode === 'iptables') {
          inNode('iptables', ['-t', 'nat', '-F']);
          inNode('iptables', ['-t', 'nat', '-X']);
        } else if (mode === 'nft-vmap') inNode('nft', ['delete', 'table', 'ip', nftTable]);
        else {
          await run('bpftool', ['cgroup', 'detach', cg, 'connect4', 'pinned', `${pin}/svc_connect4`]);
          rmSync(pin, { recursive: true, force: true });
          await run('bpftool', [
            'prog',
            'loadall',
            obj,
            pin,
            'type',
            'cgroup/connect4',
            'pinmaps',
            `${pin}/maps`,
          ]);
        }
      }
    }
    // iptables-nft leaves an empty `table ip nat` behind (docs/capture.md §7).
    try {
      inNode('nft', ['delete', 'table', 'ip', 'nat']);
    } catch {
      // not there
    }
  } finally {
    try {
      execFileSync('bpftool', ['cgroup', 'detach', cg, 'connect4', 'pinned', `${pin}/svc_connect4`], {
        stdio: 'ignore',
      });
    } catch {
      // not attached
    }
    await topo.teardown();
    try {
      execFileSync('rmdir', [cg], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    rmSync(work, { recursive: true, force: true });
  }

  const table = [
    '| mode | N | connect p50 µs | p99 µs | program N ms | add one at N ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${r.n} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.programMs.toFixed(1)} | ${r.addOneMs.toFixed(2)} |`,
    ),
  ].join('\n');
  const e10 = rows.find((r) => r.mode === 'ebpf' && r.n === 10);
  const e20k = rows.find((r) => r.mode === 'ebpf' && r.n === 20_000);
  const flat = e10 && e20k ? e20k.p50 / e10.p50 : Number.NaN;
  const verdicts = [
    `eBPF flat: p50 at 20k / p50 at 10 = ${flat.toFixed(3)} (target ≤ 1.15): ${flat <= 1.15 ? 'PASS' : 'FAIL'}`,
    `eBPF add one service at 20k: ${e20k?.addOneMs.toFixed(2)} ms (target < 5 ms): ${(e20k?.addOneMs ?? 99) < 5 ? 'PASS' : 'FAIL'}`,
  ];
  const resultsDir = join(repo, 'bench/results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    join(resultsDir, 'bpf.md'),
    `# bpf-redirect service scaling (${new Date().toISOString()})\n\n${CONNECTS} connects × ${REPEATS} runs per cell (median of run medians), random service among N. eBPF map writes: ${writeMethod}.\n\n${table}\n\n${verdicts.map((v) => `- ${v}`).join('\n')}\n`,
  );
  writeFileSync(join(resultsDir, 'bpf.svg'), svgChart(rows));
  console.log(`\n${table}\n\n${verdicts.join('\n')}\nwrote ${join(resultsDir, 'bpf.md')} and bpf.svg`);
}

const scenario: BenchScenario = {
  name: 'bpf-redirect service scaling: iptables vs nft vmap vs eBPF map',
  run: runBench,
};
export default scenario;
