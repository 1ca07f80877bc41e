/* svc_connect4: cgroup/connect4 service translation (socket-level load balancing, the core of
 * Cilium's cil_sock4_connect in bpf/bpf_sock.c): a connect() to a service VIP:port is rewritten to one
 * of its backends with one hash lookup, before any packet or conntrack entry exists, so the cost stays
 * flat in the number of services (docs/capture.md §6). Used for ClusterIP translation where the node runs no
 * kube-proxy, and by bench/bpf.bench.ts. Capture into ztunnel stays in steer_tc (it also covers inbound
 * and cannot be bypassed by a pod's raw sockets); this hook does not redirect to the proxy. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AMBIT_NO_STEER_MAPS
#include "maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* 128k x 72-byte values: allocate on insert, not up front */
	__uint(max_entries, 131072);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
} ambit_svcs SEC(".maps");

SEC("cgroup/connect4")
int svc_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	struct svc_key key = {};
	key.vip = ctx->user_ip4;
	key.port = (__u16)ctx->user_port;
	struct svc_value *svc = bpf_map_lookup_elem(&ambit_svcs, &key);
	if (!svc || svc->count == 0)
		return 1;
	__u32 n = svc->count > SVC_MAX_BACKENDS ? SVC_MAX_BACKENDS : svc->count;
	__u32 i = bpf_get_prandom_u32() % n;
	/* The verifier loses the bound across the modulo; re-mask after a compiler barrier so clang
	 * cannot drop the (for it) redundant AND. SVC_MAX_BACKENDS is a power of two. */
	asm volatile("" : "+r"(i));
	i &= SVC_MAX_BACKENDS - 1;
	ctx->user_ip4 = svc->backends[i].ip;
	ctx->user_port = svc->backends[i].port;
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
