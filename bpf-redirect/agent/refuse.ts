// Fail closed for pods the agent cannot capture (no veth leads to them — an unknown topology, a netns
// the agent cannot see — or their hooks cannot be installed): every packet from or to such an enrolled
// pod is refused, in both capture modes, until the agent can capture it. TCP gets a reset (a fast,
// visible refusal instead of a silent bypass); anything else is dropped. The inet table sees routed
// traffic; a bridge-family table drops what a bridge would switch between its ports at L2.
import { deleteNftTable, replaceNftTable } from './routing.js';

export function renderRefuseTable(ips: readonly string[]): string {
  const elems = ips.length ? `    elements = { ${ips.join(', ')} }\n` : '';
  return [
    `  set refused {\n    type ipv4_addr;\n${elems}  }`,
    '  counter refused {}',
    // Before the capture table's raw-priority anti-spoofing: on a bridge CNI the IP stack sees every
    // bridged pod on the bridge device, and a pod the agent found no veth for would be dropped there as
    // a spoofer — silently (a timeout) instead of with the visible reset below.
    '  chain prerouting {',
    '    type filter hook prerouting priority -310; policy accept;',
    '    ip saddr @refused meta l4proto tcp counter name refused reject with tcp reset',
    '    ip saddr @refused counter name refused drop',
    '  }',
    ...['forward', 'input'].flatMap((hook) => [
      `  chain ${hook} {`,
      `    type filter hook ${hook} priority -10; policy accept;`,
      '    ip saddr @refused meta l4proto tcp counter name refused reject with tcp reset',
      '    ip daddr @refused meta l4proto tcp counter name refused reject with tcp reset',
      '    ip saddr @refused counter name refused drop',
      '    ip daddr @refused counter name refused drop',
      '  }',
    ]),
  ].join('\n');
}

export function renderRefuseBridgeTable(ips: readonly string[]): string {
  const elems = ips.length ? `    elements = { ${ips.join(', ')} }\n` : '';
  return [
    `  set refused {\n    type ipv4_addr;\n${elems}  }`,
    '  chain forward {',
    '    type filter hook forward priority -10; policy accept;',
    '    ether type ip ip saddr @refused drop',
    '    ether type ip ip daddr @refused drop',
    '  }',
  ].join('\n');
}

export class RefuseTables {
  private rendered: string | undefined;
  constructor(private readonly prefix: string) {}

  async apply(ips: readonly string[]): Promise<void> {
    const key = [...ips].sort().join(',');
    if (key === this.rendered) return;
    if (ips.length === 0) await this.teardown();
    else {
      await replaceNftTable('inet', `${this.prefix}_refuse`, renderRefuseTable(ips));
      await replaceNftTable('bridge', `${this.prefix}_refuse`, renderRefuseBridgeTable(ips));
    }
    this.rendered = key;
  }

  async teardown(): Promise<void> {
    await deleteNftTable('inet', `${this.prefix}_refuse`);
    await deleteNftTable('bridge', `${this.prefix}_refuse`);
    this.rendered = undefined;
  }
}
