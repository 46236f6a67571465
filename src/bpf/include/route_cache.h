/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Route cache stage: a direct-mapped cache of the main table's answer per
 * destination address, shared by every CPU, in front of the lookup.
 *
 * Why: the IPv6 LPM trie's walk grows with the table (about 180 ns at
 * 200,000 routes, and far more once its nodes miss the CPU cache), and
 * DIR-24-8's /24 table and prefix slots miss the cache and the TLB once
 * routes are spread over them; a host talks to far fewer destinations than
 * its table holds. A hit costs one array read (the JIT inlines array
 * lookups), a compare and an 80-byte copy, whatever the table. A
 * destination DIR-24-8's /16 summary answers alone (short prefixes: a
 * default route) is not cached: that read is cheaper than the cache's.
 *
 * Per family, user space turns the cache on only while the main table is
 * big enough to need it (`families`): a small LPM trie's few nodes stay in
 * the CPU's caches and its walk beats the cache's entries for thousands of
 * destinations, which do not (measured on the wire: README, Performance).
 *
 * One array for all CPUs, not one per CPU: the hit rate depends on entries
 * per destination, and per-CPU copies would multiply the memory by the CPU
 * count for the same rate.
 *
 * Invalidation is by generation: user space bumps the generation in
 * `route_cache_ctl` after every change it made to the main tables, and an
 * entry answers only under the generation it was filled in. The generation is read before the lookup
 * whose answer is filled in, so an answer read before a change is stored
 * under the old generation and never served after the bump.
 *
 * Entries are a seqlock: a writer takes an even `seq` to odd with a
 * compare-and-swap (so two CPUs never write one entry at once), writes, and
 * makes it even again; a reader copies the route out and checks that `seq`
 * was even and did not move, so a packet never takes a torn entry. Both the
 * generation's ordering and the seqlock rely on loads not being reordered
 * with loads, nor stores with stores: x86 (TSO) guarantees it, and Rust
 * turns the cache off by default elsewhere.
 */
#ifndef LNETD_ROUTE_CACHE_H
#define LNETD_ROUTE_CACHE_H

#include "../encap_shared.h"
#include "encap_config.h"
#include "lookup.h"
#include "packet.h"
#include <bpf/bpf_helpers.h>

/*
 * 112 bytes. Padding to 128 (one aligned pair of cache lines) measured
 * IPv6 0.10 -> 0.11-0.13 of the floor at 65,536 destinations, within this
 * VM's noise (docs/per-packet.md), and would change a pinned map's layout,
 * which an upgrade adopting the pinned maps cannot cross: not kept.
 */
struct route_cache_entry {
	__u64 generation; /* route_cache_gen when filled */
	__u32 seq;        /* odd while being written */
	__u32 family;     /* ETH_P_IP or ETH_P_IPV6; 0: never filled */
	__u64 dst[2];     /* the destination (IPv4: the first 4 bytes, the rest 0) */
	struct route_value route; /* counter_id: the route's counter slot */
};

/* Sized by Rust (`route_cache_slots`, a power of two); one entry when off. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct route_cache_entry);
} route_cache SEC(".maps");

/* One entry: the generation of the main tables and the cached families, written by Rust (mapped). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct route_cache_ctl);
} route_cache_ctl SEC(".maps");

#define ROUTE_CACHE_BARRIER() asm volatile("" ::: "memory")

/* What a lookup is cached under: the destination as two words, and its slot. */
struct route_cache_key {
	__u64 dst[2];
	__u32 family;
	__u32 index;
	__u64 generation;
};

/*
 * The cache's generation for the packet, read before any table the answer
 * comes from; 0 when the cache is off, or off for the packet's family, or
 * the control map cannot be read (never expected).
 */
static __always_inline int route_cache_generation(const struct packet *pkt, struct route_cache_key *k)
{
	__u32 zero = 0, family;
	struct route_cache_ctl *ctl;

	if (!route_cache_slots)
		return 0;
	ctl = bpf_map_lookup_elem(&route_cache_ctl, &zero);
	if (!ctl)
		return 0;
	family = pkt->l3_proto == ETH_P_IP ? ROUTE_CACHE_IPV4 : ROUTE_CACHE_IPV6;
	if (!(*(volatile __u32 *)&ctl->families & family))
		return 0;
	k->generation = *(volatile __u64 *)&ctl->generation;
	return 1;
}

/* The rest of the key: the destination and its slot, only once the cache is consulted. */
static __always_inline void route_cache_locate(const struct packet *pkt, struct route_cache_key *k)
{
	__u32 h;

	k->family = pkt->l3_proto;
	k->dst[1] = 0;
	if (pkt->l3_proto == ETH_P_IP) {
		__u32 a;

		__builtin_memcpy(&a, pkt->dst, 4);
		k->dst[0] = a;
	} else {
		__builtin_memcpy(k->dst, pkt->dst, 16);
	}
	/* Fibonacci hashing of the folded address (the product's high half): spreads neighbours. */
	h = (__u32)(k->dst[0] ^ (k->dst[0] >> 32) ^ k->dst[1] ^ (k->dst[1] >> 32));
	k->index = (__u32)(((__u64)h * 0x9e3779b97f4a7c15ull) >> 32) & (route_cache_slots - 1);
}

/*
 * The cached route for `k`, copied into `copy` (which the caller owns for the
 * rest of the packet); NULL on a miss. `counter_id` gets its counter slot.
 */
static __always_inline struct route_value *route_cache_get(const struct route_cache_key *k,
							   struct route_value *copy, __u32 *counter_id)
{
	struct route_cache_entry *e = bpf_map_lookup_elem(&route_cache, &k->index);
	__u32 seq;

	if (!e)
		return NULL;
	seq = *(volatile __u32 *)&e->seq;
	if ((seq & 1) || e->family != k->family || e->generation != k->generation || e->dst[0] != k->dst[0] ||
	    e->dst[1] != k->dst[1])
		return NULL;
	__builtin_memcpy(copy, &e->route, sizeof(*copy));
	ROUTE_CACHE_BARRIER();
	if (*(volatile __u32 *)&e->seq != seq)
		return NULL;
	*counter_id = copy->counter_id;
	return copy;
}

/* Remembers the main table's answer for `k` (a route found under k->generation). */
static __always_inline void route_cache_put(const struct route_cache_key *k, const struct route_value *route,
					   __u32 counter_id)
{
	struct route_cache_entry *e = bpf_map_lookup_elem(&route_cache, &k->index);
	__u32 seq;

	if (!e)
		return;
	seq = *(volatile __u32 *)&e->seq;
	/* Odd, or taken meanwhile: another run is writing it; leave it to that run. */
	if ((seq & 1) || __sync_val_compare_and_swap(&e->seq, seq, seq + 1) != seq)
		return;
	e->generation = k->generation;
	e->family = k->family;
	e->dst[0] = k->dst[0];
	e->dst[1] = k->dst[1];
	__builtin_memcpy(&e->route, route, sizeof(e->route));
	e->route.counter_id = counter_id;
	ROUTE_CACHE_BARRIER();
	*(volatile __u32 *)&e->seq = seq + 2;
}

/*
 * The main table's route for the packet (`dir`: DIR-24-8 for IPv4, else the
 * LPM trie), through the cache where it serves; NULL if no route covers the
 * destination. A hit is copied into `copy`. `counter_id` gets the route's
 * counter slot.
 */
static __always_inline struct route_value *lookup_main(const struct packet *pkt, void *v4, void *v6,
						       const struct dir4_tables *dir, struct route_value *copy,
						       __u32 *counter_id)
{
	struct route_cache_key k;
	struct route_value *route;
	__u32 addr = 0, slot = 0;
	/* First: the generation is read before any table the answer comes from. */
	int cached = route_cache_generation(pkt, &k);
	int dir4 = dir && pkt->l3_proto == ETH_P_IP;

	if (dir4) {
		if (dir4_summary(pkt->dst, dir, &addr, &slot))
			return NULL;
		/* The /16 summary answers alone: one read, cheaper than the cache's. */
		if (!(slot & DIR_DESCEND))
			return dir4_resolve(addr, slot, dir, counter_id);
	}
	if (cached)
		route_cache_locate(pkt, &k);
	if (cached && !(skip_stages & ENCAP_SKIP_CACHE_HIT)) {
		route = route_cache_get(&k, copy, counter_id);
		if (route)
			return route;
	}
	route = dir4 ? dir4_resolve(addr, slot, dir, counter_id) : lookup_trie(pkt, v4, v6, counter_id);
	if (route && cached)
		route_cache_put(&k, route, *counter_id);
	return route;
}

#endif /* LNETD_ROUTE_CACHE_H */
