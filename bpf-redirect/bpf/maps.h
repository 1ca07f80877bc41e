/* Maps shared by every attachment of steer_tc (pinned once by the agent with
 * `bpftool prog loadall ... pinmaps <dir>`, then every `tc filter ... bpf da pinned` uses the same set)
 * and the value layouts the agent writes (bpf-redirect/agent/maps.ts mirrors them byte for byte).
 * Names carry an `ambit_` prefix: a bare `config` clashes with a vmlinux.h type (docs/capture.md §7). */
#ifndef AMBIT_MAPS_H
#define AMBIT_MAPS_H

/* ambit_pods value.state */
#define POD_NONE 0    /* known local pod, not in the mesh: only anti-spoofing applies */
#define POD_CAPTURE 1 /* enrolled: new connections go to the proxy */
#define POD_DRAIN 2   /* leaving: flows the proxy owns keep flowing, new ones go direct */
#define POD_PENDING 3 /* a new pod veth the mesh state does not know yet: its SYNs are held (dropped,
		       * the client retries) until the agent knows whether it is enrolled, so an app that
		       * starts before the agent learns of its pod cannot bypass capture (istio#48286) */

/* ambit_ifaces value.kind */
#define IFACE_POD 1    /* host side of a pod veth: every IPv4 source must be the pod's IP */
#define IFACE_UPLINK 2 /* node uplink: inbound capture only */
#define IFACE_BRIDGE 3 /* a bridge whose ports are pod veths: pods' packets arrive here from their port */

struct redir_cfg {
	__u16 out_port;   /* 15001, ztunnel outbound capture */
	__u16 in_port;    /* 15006, inbound plaintext */
	__u16 hbone_port; /* 15008, inbound HBONE */
	__u16 pad;
	__u32 mark;      /* set on packets handed to the proxy; `ip rule fwmark` routes them locally */
	__u32 fail_open; /* 1: proxy missing -> let SYNs go direct (operator switch, logged loudly) */
};

struct pod_info {
	__u32 state;   /* POD_* */
	__u32 ifindex; /* host veth the pod's packets must arrive on */
};

struct iface_info {
	__u32 pod_ip; /* network order; 0 for an uplink */
	__u32 kind;   /* IFACE_* */
};

/* The L3 gateway of a pod veth enslaved to a bridge (flannel/k3s/kubenet `cni0`): the bridge's MAC.
 * A frame the proxy must see gets this destination MAC, so the bridge passes it up to the node's IP
 * stack instead of switching it to a pod on the same bridge at L2 (past the proxy). */
struct l2_gw {
	__u8 mac[6];
	__u16 pad;
	__u32 bridge_ifindex; /* the bridge itself, where the frame then enters the IP stack */
};

enum ambit_stat {
	STAT_ASSIGNED_OUT = 0, /* SYN from an enrolled pod handed to the outbound listener */
	STAT_ASSIGNED_IN,      /* SYN to an enrolled pod handed to an inbound listener */
	STAT_PROXY_OWNED,      /* packet of a flow the proxy owns, routed locally */
	STAT_PASS,             /* enrolled pod's packet left alone (pre-existing flow, non-SYN) */
	STAT_DRAIN_PASS,       /* SYN of a draining pod sent direct */
	STAT_PROXY_MISSING,    /* no listener: dropped (fail closed) */
	STAT_FAIL_OPEN,        /* no listener: sent direct because fail_open = 1 */
	STAT_ASSIGN_FAILED,    /* bpf_sk_assign refused: dropped */
	STAT_SPOOFED,          /* source IP does not belong to the veth it came from: dropped */
	STAT_HELD_UNKNOWN,     /* SYN from a pod the agent does not know yet: dropped, client retries */
	STAT_IPV6_DROPPED,     /* IPv6 TCP of an enrolled pod: not captured yet, so dropped (fail closed) */
	STAT_BYPASS,           /* audit: TCP from an enrolled pod forwarded out of an interface, not by
				* the proxy (no local socket): traffic that left outside HBONE */
	STAT_MAX,
};

#ifndef AMBIT_NO_STEER_MAPS /* sock_connect.bpf.c needs only the service map */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct redir_cfg);
} ambit_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* pod IPv4, network order */
	__type(value, struct pod_info);
} ambit_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* ifindex in the node netns */
	__type(value, struct iface_info);
} ambit_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* ifindex of a pod veth that is a bridge port */
	__type(value, struct l2_gw);
} ambit_l2gw SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ambit_stats SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&ambit_stats, &idx);
	if (v)
		*v += 1;
}
#endif

/* Service map for O(1) VIP:port -> backend translation at connect() (sock_connect.bpf.c). */
#define SVC_MAX_BACKENDS 8

struct svc_key {
	__u32 vip;   /* network order */
	__u16 port;  /* network order */
	__u16 pad;
};

struct svc_backend {
	__u32 ip;   /* network order */
	__u16 port; /* network order */
	__u16 pad;
};

struct svc_value {
	__u32 count; /* backends in use, 1..SVC_MAX_BACKENDS */
	__u32 pad;
	struct svc_backend backends[SVC_MAX_BACKENDS];
};

#endif
