// bpf-redirect end to end with the real steer program loaded into the kernel (tc ingress +
// bpf_sk_assign into transparent listeners). Issue 5 "Done when", eBPF mode.
import { defineCaptureSuite } from './bpf-capture-suite.js';

defineCaptureSuite('eBPF capture of enrolled pods into the node proxy', { mode: 'ebpf' });
