// The capture suite with pods wired by the real CNI plugins (containernetworking-plugins), in both
// capture modes: `bridge` + host-local (flannel, k3s, kubenet: pod veths are ports of one bridge, no
// per-pod route; the node has br_netfilter with bridge-nf-call-iptables=1, as Kubernetes requires)
// and `ptp` + host-local (kindnet; Calico-style routed veths).
import { defineCaptureSuite } from './bpf-capture-suite.js';

for (const cni of ['bridge', 'ptp'] as const) {
  defineCaptureSuite(`eBPF capture of enrolled pods on the ${cni} CNI`, { mode: 'ebpf', cni });
  defineCaptureSuite(`nftables TPROXY capture of enrolled pods on the ${cni} CNI`, { mode: 'nftables', cni });
}
