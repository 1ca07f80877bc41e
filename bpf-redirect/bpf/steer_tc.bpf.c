/* steer: tc clsact ingress on the host side of every pod veth and on the node uplink.
 *
 * Hands new TCP connections of enrolled pods to the node proxy's transparent listeners, the way
 * Cilium's proxy redirect does (cilium/cilium bpf/lib/proxy.h assign_socket_tcp): find the listener by
 * port with bpf_skc_lookup_tcp, bpf_sk_assign the SYN to it, and mark the packet so `ip rule fwmark`
 * routes it to a `local 0.0.0.0/0` table (bpf_sk_assign requires a local route for the whole flow,
 * kernel commit "bpf: Add socket assign support"). Because the listener is IP_TRANSPARENT, the
 * accepted socket's local address IS the original destination and its peer the real client.
 *   outbound: SYN from an enrolled pod               -> out_port   (ztunnel 15001)
 *   inbound:  SYN to an enrolled pod, dport 15008     -> hbone_port (ztunnel 15008)
 *             SYN to an enrolled pod, any other port  -> in_port    (ztunnel 15006)
 * Later packets of a flow the proxy owns (an established/request socket exists in this netns) get the
 * mark too. Packets of flows that started before enrollment are left alone (no socket, not a SYN), so
 * enrolling never breaks a live connection; DRAIN stops new captures but keeps proxied flows flowing.
 * No listener (proxy down): drop the SYN (fail closed) unless cfg.fail_open.
 * A pod veth the agent found before the mesh state knew its pod (POD_PENDING): its SYNs are dropped
 * until the pod is known, so no app can connect around the mesh at pod start.
 * Anti-spoofing: a packet whose IPv4 source is not the pod of the veth it arrived on, or that carries
 * a local pod's address on another interface, is dropped and counted (STAT_SPOOFED).
 * Bridge CNIs (flannel, k3s, kubenet): the pod veth is a port of a bridge, and a frame to a pod on the
 * same bridge is switched at L2, never routed — so every packet handed to the proxy also gets the
 * bridge's MAC as destination (ambit_l2gw), which makes the bridge pass it up to the IP stack. steer
 * also runs on the bridge itself (IFACE_BRIDGE), where the frame enters the IP stack: an assignment
 * made on the port does not survive the trip through the bridge, so it is made again there; a pod's
 * packets are legitimate on the bridge its veth is a port of.
 *
 * audit: tc egress of the same interfaces. Counts TCP packets from an enrolled pod that the node
 * forwards (no local socket owns them, so the proxy did not send them): traffic leaving outside HBONE
 * (STAT_BYPASS, exported as ambit_capture_bypass_packets_total). A continuous self-check; never drops. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define NEXTHDR_ICMPV6 58
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* IPv6 is not captured yet (no pods6 map, no IPv6 listener lookup). An enrolled pod's IPv6 TCP would
 * leave around the mesh — and a peer's IPv6 SYN would reach it unproxied, since its SYN-ACK comes back
 * through here — so drop it, fail closed. ICMPv6 (neighbour discovery) and UDP pass, as UDP does on
 * IPv4; any other next header (TCP, or TCP hidden behind extension headers) is dropped. */
static __always_inline int steer_ipv6(struct __sk_buff *skb, struct ipv6hdr *ip6, void *data_end)
{
	if ((void *)(ip6 + 1) > data_end)
		return TC_ACT_OK;
	__u32 ifindex = skb->ifindex;
	struct iface_info *iface = bpf_map_lookup_elem(&ambit_ifaces, &ifindex);
	if (!iface || iface->kind != IFACE_POD)
		return TC_ACT_OK;
	__u32 pod_ip = iface->pod_ip;
	struct pod_info *pod = bpf_map_lookup_elem(&ambit_pods, &pod_ip);
	if (!pod || (pod->state != POD_CAPTURE && pod->state != POD_PENDING))
		return TC_ACT_OK;
	if (ip6->nexthdr == NEXTHDR_ICMPV6 || ip6->nexthdr == IPPROTO_UDP)
		return TC_ACT_OK;
	stat_inc(STAT_IPV6_DROPPED);
	return TC_ACT_SHOT;
}

/* Hand a packet to the node's IP stack: on a bridge port, address the frame to the bridge. */
static __always_inline void to_host(struct __sk_buff *skb, __u32 ifindex)
{
	struct l2_gw *gw = bpf_map_lookup_elem(&ambit_l2gw, &ifindex);
	if (gw)
		bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_dest), gw->mac, 6, 0);
}

SEC("tc")
int steer(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return steer_ipv6(skb, (void *)(eth + 1), data_end);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return TC_ACT_OK;

	__u32 ifindex = skb->ifindex;
	struct iface_info *iface = bpf_map_lookup_elem(&ambit_ifaces, &ifindex);
	if (iface && iface->kind == IFACE_POD && iface->pod_ip != ip->saddr) {
		stat_inc(STAT_SPOOFED);
		return TC_ACT_SHOT;
	}
	__u32 saddr = ip->saddr;
	struct pod_info *src = bpf_map_lookup_elem(&ambit_pods, &saddr);
	if (src && src->ifindex != ifindex) {
		int via_bridge = 0;
		if (iface && iface->kind == IFACE_BRIDGE) {
			__u32 port = src->ifindex;
			struct l2_gw *gw = bpf_map_lookup_elem(&ambit_l2gw, &port);
			via_bridge = gw && gw->bridge_ifindex == ifindex;
		}
		if (!via_bridge) {
			stat_inc(STAT_SPOOFED);
			return TC_ACT_SHOT;
		}
	}

	if (ip->protocol != IPPROTO_TCP || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return TC_ACT_OK;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return TC_ACT_OK;

	int outbound = src && src->state != POD_NONE;
	__u32 state = outbound ? src->state : POD_NONE;
	if (!outbound) {
		__u32 daddr = ip->daddr;
		struct pod_info *dst = bpf_map_lookup_elem(&ambit_pods, &daddr);
		if (!dst || dst->state == POD_NONE || dst->state == POD_PENDING)
			return TC_ACT_OK; /* neither end enrolled on this node */
		state = dst->state;
	}

	__u32 zero = 0;
	struct redir_cfg *cfg = bpf_map_lookup_elem(&ambit_cfg, &zero);
	if (!cfg)
		return TC_ACT_OK; /* agent has not configured us yet: it writes cfg before any pod */

	/* A flow the proxy already owns: mark every packet so it is routed locally (docs/capture.md §1). */
	struct bpf_sock_tuple tuple = {};
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = tcp->source;
	tuple.ipv4.dport = tcp->dest;
	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		int owned = sk->state != BPF_TCP_LISTEN;
		bpf_sk_release(sk);
		if (owned) {
			skb->mark |= cfg->mark;
			to_host(skb, ifindex);
			stat_inc(STAT_PROXY_OWNED);
			return TC_ACT_OK;
		}
	}

	if (!tcp->syn || tcp->ack) {
		stat_inc(STAT_PASS);
		return TC_ACT_OK;
	}
	if (state == POD_PENDING) {
		stat_inc(STAT_HELD_UNKNOWN);
		return TC_ACT_SHOT;
	}
	if (state != POD_CAPTURE) {
		stat_inc(STAT_DRAIN_PASS);
		return TC_ACT_OK;
	}

	__u16 port = outbound ? cfg->out_port
		     : (tcp->dest == bpf_htons(cfg->hbone_port) ? cfg->hbone_port : cfg->in_port);
	struct bpf_sock_tuple ltuple = {};
	ltuple.ipv4.dport = bpf_htons(port);
	struct bpf_sock *lsk = bpf_skc_lookup_tcp(skb, &ltuple, sizeof(ltuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (lsk && lsk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(lsk);
		lsk = NULL;
	}
	if (!lsk) {
		if (cfg->fail_open) {
			stat_inc(STAT_FAIL_OPEN);
			return TC_ACT_OK;
		}
		stat_inc(STAT_PROXY_MISSING);
		return TC_ACT_SHOT;
	}
	long err = bpf_sk_assign(skb, lsk, 0);
	bpf_sk_release(lsk);
	if (err) {
		stat_inc(STAT_ASSIGN_FAILED);
		return TC_ACT_SHOT;
	}
	skb->mark |= cfg->mark;
	to_host(skb, ifindex);
	stat_inc(outbound ? STAT_ASSIGNED_OUT : STAT_ASSIGNED_IN);
	return TC_ACT_OK;
}

SEC("tc")
int audit(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return TC_ACT_OK;
	/* Locally sent (the proxy's HBONE, or its source-preserving dials to pods): a socket owns it. */
	if (skb->sk)
		return TC_ACT_OK;
	__u32 saddr = ip->saddr;
	struct pod_info *src = bpf_map_lookup_elem(&ambit_pods, &saddr);
	if (src && src->state == POD_CAPTURE)
		stat_inc(STAT_BYPASS);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
