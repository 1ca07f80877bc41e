// Node set-up shared by both capture modes. bpf_sk_assign and TPROXY both need the packets they hand
// to a local socket to be routed locally, for every packet of the flow (docs/capture.md §1; kernel
// commit "bpf: Add socket assign support": "must be routed towards that socket via local route"):
// `ip rule fwmark M/M lookup T` → table T holds `local 0.0.0.0/0 dev lo` (Cilium does the same).
// In eBPF mode a raw-table `notrack` for marked packets keeps kube-proxy's DNAT away from flows the
// proxy owns, so the proxy sees the ClusterIP as original destination (docs/capture.md §1).
import { parseJson, runCommand } from './command.js';
import { BpfAgentError } from './errors.js';

export interface MarkRouting {
  mark: number;
  table: number;
  pref: number;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export async function ensureMarkRouting(r: MarkRouting): Promise<void> {
  const rules = parseJson<{ priority?: number; fwmark?: string; table?: string }[]>(
    'ip rule show',
    await runCommand('ip', ['-j', 'rule', 'show']),
  );
  const ours = (rules ?? []).filter((x) => x.priority === r.pref);
  const right = ours.some((x) => Number(x.fwmark) === r.mark && String(x.table) === String(r.table));
  if (!right) {
    for (const _ of ours) await runCommand('ip', ['rule', 'del', 'pref', String(r.pref)]);
    await runCommand('ip', [
      'rule',
      'add',
      'fwmark',
      `${hex(r.mark)}/${hex(r.mark)}`,
      'lookup',
      String(r.table),
      'pref',
      String(r.pref),
    ]);
  }
  await runCommand('ip', ['route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(r.table)]);
}

export async function removeMarkRouting(r: MarkRouting): Promise<void> {
  const rules = parseJson<{ priority?: number; fwmark?: string }[]>(
    'ip rule show',
    await runCommand('ip', ['-j', 'rule', 'show']),
  );
  for (const x of rules ?? []) {
    if (x.priority === r.pref && Number(x.fwmark) === r.mark)
      await runCommand('ip', ['rule', 'del', 'pref', String(r.pref)]);
  }
  await runCommand('ip', ['route', 'flush', 'table', String(r.table)]).catch((err: unknown) => {
    if (!(err instanceof BpfAgentError && /does not exist|No such/i.test(err.message))) throw err;
  });
}

/** Replace (atomically, one `nft -f`) a whole table we own. */
export async function replaceNftTable(
  family: 'ip' | 'inet' | 'bridge' | 'netdev',
  name: string,
  body: string,
): Promise<void> {
  const script = `table ${family} ${name} {}\ndelete table ${family} ${name}\ntable ${family} ${name} {\n${body}\n}\n`;
  await runCommand('nft', ['-f', '-'], { input: script });
}

export async function deleteNftTable(
  family: 'ip' | 'inet' | 'bridge' | 'netdev',
  name: string,
): Promise<void> {
  await runCommand('nft', ['delete', 'table', family, name]).catch((err: unknown) => {
    if (!(err instanceof BpfAgentError && /No such file|does not exist/i.test(err.message))) throw err;
  });
}

export async function nftTableExists(
  family: 'ip' | 'inet' | 'bridge' | 'netdev',
  name: string,
): Promise<boolean> {
  try {
    await runCommand('nft', ['list', 'table', family, name]);
    return true;
  } catch {
    return false;
  }
}

export function notrackTableBody(mark: number): string {
  return [
    '  chain prerouting {',
    '    type filter hook prerouting priority raw; policy accept;',
    `    meta mark & ${hex(mark)} == ${hex(mark)} notrack`,
    '  }',
  ].join('\n');
}
