// What a capture backend (eBPF steering or the nftables TPROXY fallback) is asked to do. The agent
// computes the desired per-pod state; a backend makes the kernel match it and reports counters.
import type { PodState } from './maps.js';

export type CaptureModeName = 'ebpf' | 'nftables';

export interface DesiredPod {
  ip: string;
  state: PodState;
  /** Host-side veth of the pod in the node netns. */
  dev: string;
  ifindex: number;
  /** Set when the veth is a bridge port: the bridge (what the IP stack sees as input device) and its
   *  MAC (where captured frames are re-addressed so the bridge hands them up instead of switching). */
  bridge?: { dev: string; mac: string; ifindex: number };
}

export interface Uplink {
  dev: string;
  ifindex: number;
}

export interface CaptureBackend {
  readonly mode: CaptureModeName;
  /** Load/recover kernel objects (idempotent; safe over what a previous agent left). */
  setup(): Promise<void>;
  /**
   * Make the kernel match exactly these pods and uplinks. A device whose hook cannot be installed (a
   * tc error on that veth) does not stop the others: it is returned, device → error, and retried on the
   * next pass; the agent refuses and reports the pods behind it.
   */
  apply(pods: readonly DesiredPod[], uplinks: readonly Uplink[]): Promise<Map<string, string>>;
  /** Pod states found in the kernel (recovery after a restart: DRAIN must stay DRAIN). */
  kernelPods(): Promise<Map<string, PodState>>;
  counters(): Promise<Record<string, number>>;
  /** Devices carrying our hook, and qdiscs we created (persisted for the next agent). */
  attachments(): { devices: string[]; createdQdiscs: string[] };
  /** Remove every kernel object this agent owns. */
  teardown(): Promise<void>;
}
