// Typed errors of the node agent. Each carries a code an operator can grep for; messages name the
// command, object and field involved on one line.

export type BpfAgentErrorCode =
  | 'COMMAND_FAILED' // a tool (bpftool, tc, ip, nft, ss) exited non-zero
  | 'COMMAND_TIMEOUT' // a tool did not finish in time
  | 'COMMAND_MISSING' // a tool is not installed
  | 'BPF_UNAVAILABLE' // programs could not be built/loaded: the nftables fallback takes over in auto mode
  | 'NFT_UNAVAILABLE' // the nftables fallback could not be installed either
  | 'BAD_CONFIG' // an option is out of range or malformed
  | 'NO_HOST_VETH' // a pod's host-side interface cannot be found by route lookup
  | 'NOT_ROOT'; // the data path needs CAP_NET_ADMIN/CAP_BPF/CAP_SYS_ADMIN

export class BpfAgentError extends Error {
  readonly code: BpfAgentErrorCode;
  constructor(code: BpfAgentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BpfAgentError';
    this.code = code;
  }
}
