// The nftables TPROXY fallback passes the same capture tests as eBPF. On node a it is chosen
// automatically: the agent runs in auto mode and cannot load the BPF object (its directory does not
// exist), so it falls back and says why in its status; node b forces it with --mode nftables.
import { defineCaptureSuite } from './bpf-capture-suite.js';

defineCaptureSuite('nftables TPROXY fallback capture of enrolled pods', {
  mode: 'nftables',
  agentOptions: (node) =>
    node === 'a' ? { mode: 'auto', objDir: '/nonexistent/ambit-bpf-objects' } : { mode: 'nftables' },
  expectFallback: /steer_tc\.bpf\.o is missing/,
});
