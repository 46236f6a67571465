// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The encapsulator: label the packets the host routes and turn them around.
 *
 * Pipeline: parse -> multicast -> route lookup (local; the source's alternate
 * table, else the main one; plain or policy) -> segment list -> MTU -> push. Every
 * stage returns a verdict (a counter index) or CONTINUE; the entry point has
 * the one exit, which counts the verdict and maps it to an XDP action.
 */
#include "counters.h"
#include "flow_hash.h"
#include "label_push.h"
#include "maps.h"
#include "packet.h"

/*
 * Never read by the program: referencing the ABI enums here puts them into the
 * object's BTF, from which the skeleton generates them for Rust (a type reaches
 * BTF only when something uses it).
 */
const volatile struct {
	enum encap_limits limits;
	enum encap_counter counter;
	enum encap_route_flags route_flags;
} encap_abi = {};

static __always_inline void count_labelled(__u32 id, __u64 bytes)
{
	struct counter_value *c;

	if (!id)
		return;
	c = bpf_map_lookup_elem(&route_counters, &id);
	/* Per-CPU slot: plain increments are race-free. */
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

static __always_inline struct route_value *lookup_route(const struct packet *pkt)
{
	if (pkt->l3_proto == ETH_P_IP) {
		struct route_key_v4 key = { .prefixlen = 32 };

		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		return bpf_map_lookup_elem(&routes_v4, &key);
	} else {
		struct route_key_v6 key = { .prefixlen = 128 };

		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		return bpf_map_lookup_elem(&routes_v6, &key);
	}
}

/*
 * The alternate table's route for a packet whose source matches a source
 * prefix; NULL when sources are off, the source matches none, or the table has
 * no route for the destination (the main table then decides: never a black hole).
 */
static __always_inline struct route_value *lookup_alternate(const struct packet *pkt)
{
	struct source_value *src;
	struct settings *set;
	__u32 zero = 0;

	set = bpf_map_lookup_elem(&settings, &zero);
	if (!set || !set->sources)
		return NULL;
	if (pkt->l3_proto == ETH_P_IP) {
		struct route_key_v4 skey = { .prefixlen = 32 };
		struct alt_key_v4 key = { .prefixlen = 64 };

		__builtin_memcpy(skey.addr, pkt->src, sizeof(skey.addr));
		src = bpf_map_lookup_elem(&sources_v4, &skey);
		if (!src)
			return NULL;
		key.table = bpf_htonl(src->table);
		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		return bpf_map_lookup_elem(&alt_routes_v4, &key);
	} else {
		struct route_key_v6 skey = { .prefixlen = 128 };
		struct alt_key_v6 key = { .prefixlen = 160 };

		__builtin_memcpy(skey.addr, pkt->src, sizeof(skey.addr));
		src = bpf_map_lookup_elem(&sources_v6, &skey);
		if (!src)
			return NULL;
		key.table = bpf_htonl(src->table);
		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		return bpf_map_lookup_elem(&alt_routes_v6, &key);
	}
}

/* The TC bits for a DSCP, through the configured table. */
static __always_inline __be32 tc_from_dscp(__u8 dscp)
{
	__u32 zero = 0;
	struct dscp_map *map = bpf_map_lookup_elem(&dscp_tc, &zero);

	if (!map)
		return 0;
	return bpf_htonl((__u32)(map->tc[dscp & 63] & 7) << 9);
}

static __always_inline enum encap_counter encap_pipeline(struct xdp_md *ctx, __u64 bytes)
{
	struct policy_value *policy = NULL;
	const struct segment_list *list;
	struct route_value *route, *alternate;
	struct packet pkt = {};
	enum encap_counter verdict;
	__u32 hash = 0, idx = 0, slot;
	__be32 el_bits = 0, tc_bits = 0;

	verdict = parse_packet(ctx, &pkt);
	if (verdict != CONTINUE)
		return verdict;
	if (packet_is_multicast(&pkt))
		return ENCAP_CNT_PASS_MULTICAST;
	/* The main table first: it holds the host's addresses, which no source overrides. */
	route = lookup_route(&pkt);
	if (route && (route->flags & ENCAP_ROUTE_LOCAL))
		return ENCAP_CNT_PASS_LOCAL;
	alternate = lookup_alternate(&pkt);
	if (alternate)
		route = alternate;
	if (!route)
		return ENCAP_CNT_PASS_NO_ROUTE;

	list = &route->list;
	if (route->flags & ENCAP_ROUTE_POLICY) {
		policy = bpf_map_lookup_elem(&policies, &route->policy_id);
		/* Rust writes the policy before the route that names it: never expected. */
		if (!policy)
			return ENCAP_CNT_PASS_NO_ROUTE;
		hash = flow_hash(&pkt);
		slot = hash % ENCAP_POLICY_SLOTS;
		/* clang turns % into div/mul/sub, which loses the bound the verifier needs. */
		barrier_var(slot);
		if (slot >= ENCAP_POLICY_SLOTS)
			return ENCAP_CNT_ABORTED;
		idx = policy->slots[slot];
		if (idx >= ENCAP_MAX_SEGMENT_LISTS)
			return ENCAP_CNT_PASS_NO_ROUTE;
		list = &policy->lists[idx];
	}
	/* The hash and the EL's division only for the lists that carry one. */
	if (list->el_index) {
		if (!policy)
			hash = flow_hash(&pkt);
		el_bits = bpf_htonl(entropy_label(hash) << 12);
	}

	if (route->flags & ENCAP_ROUTE_TC_FROM_DSCP)
		tc_bits = tc_from_dscp(pkt.dscp);

	verdict = check_mtu(ctx, &pkt, list);
	if (verdict != CONTINUE)
		return verdict;
	verdict = push_label_stack(ctx, &pkt, list, el_bits, tc_bits);
	if (verdict == ENCAP_CNT_TX) {
		count_labelled(route->counter_id, bytes);
		if (policy)
			count_labelled(policy->list_counter[idx], bytes);
	}
	return verdict;
}

SEC("xdp")
int xdp_encap(struct xdp_md *ctx)
{
	__u64 bytes = ctx->data_end - ctx->data;

	return count_and_act(encap_pipeline(ctx, bytes), bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
