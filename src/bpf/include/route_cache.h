/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Route cache stage: a set-associative cache of the main table's answer per
 * destination address, shared by every CPU, in front of the lookup.
 *
 * Why: the IPv6 LPM trie's walk grows with the table (about 180 ns at
 * 200,000 routes, and far more once its nodes miss the CPU cache), and
 * DIR-24-8's /24 table and prefix slots miss the cache and the TLB once
 * routes are spread over them; a host talks to far fewer destinations than
 * its table holds. A destination DIR-24-8's /16 summary answers alone (short
 * prefixes: a default route) is not cached: that read is cheaper.
 *
 * Compact, because at full-table scale each read that misses the CPU's
 * caches costs more than the rest of the packet's work (docs/per-packet.md):
 * a bucket is one 64-byte line of 4 IPv4 or 2 IPv6 ways, a way 12 or 24
 * bytes: up to 4 destinations a line, where a copy took 112 bytes. A way holds
 * a reference, not a copy: the common routes (one label, a policy, a host
 * address) are inline in it, so a hit reads that line and nothing else; other
 * IPv4 routes name their index in dir4_values (few distinct values, warm).
 *
 * Per family, user space turns the cache on only while the main table is
 * big enough to need it (`families`): a small LPM trie's few nodes stay in
 * the CPU's caches and its walk beats the cache for thousands of
 * destinations (measured on the wire: README, Performance).
 *
 * One array for all CPUs, not one per CPU: the hit rate depends on entries
 * per destination, and per-CPU copies would multiply the memory by the CPU
 * count for the same rate.
 *
 * Invalidation is by generation: user space bumps the generation in
 * `route_cache_ctl` after every change it made to the main tables, and a
 * bucket answers only under the generation it was filled in. The generation
 * is read before the lookup whose answer is filled in, so an answer read
 * before a change is stored under the old generation and never served after
 * the bump. Buckets keep its low 32 bits; user space empties the cache
 * before they wrap (so a bucket left alone for 2^32 changes cannot match).
 *
 * Buckets are a seqlock: a writer takes an even `seq` to odd with a
 * compare-and-swap (so two CPUs never write one bucket at once), writes, and
 * makes it even again; a reader reads the way and checks that `seq` was even
 * and did not move, so a packet never takes a torn way. Both the
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

/* Sized by Rust (`route_cache_buckets`, a power of two); one bucket when off. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	/* Mapped by user space only to empty it (generation wrap); page-aligned
	 * elements also put every 64-byte bucket on one cache line. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct route_cache_bucket);
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

/* What a lookup is cached under: the destination as two words, and its bucket. */
struct route_cache_key {
	__u64 dst[2];
	__u32 family;
	__u32 index;
	__u32 generation;
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

	/* Set on every path: clang may otherwise spill an undefined value here, which the verifier refuses. */
	k->generation = 0;
	if (!route_cache_buckets)
		return 0;
	ctl = bpf_map_lookup_elem(&route_cache_ctl, &zero);
	if (!ctl)
		return 0;
	family = pkt->l3_proto == ETH_P_IP ? ROUTE_CACHE_IPV4 : ROUTE_CACHE_IPV6;
	if (!(*(volatile __u32 *)&ctl->families & family))
		return 0;
	k->generation = (__u32) * (volatile __u64 *)&ctl->generation;
	return 1;
}

/* The rest of the key: the destination and its bucket, only once the cache is consulted. */
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
	k->index = (__u32)(((__u64)h * 0x9e3779b97f4a7c15ull) >> 32) & (route_cache_buckets - 1);
}

/*
 * The route a reference names, in `copy` where it is inline (which the
 * caller owns for the rest of the packet); NULL when it names nothing.
 * Branch-free for the inline kinds: one state for the verifier to follow
 * through the rest of the program, not one per kind (with the TC hook's
 * paths, that was past its limit).
 */
static __always_inline struct route_value *route_cache_deref(__u32 ref, const struct dir4_tables *dir,
							     struct route_value *copy)
{
	__u32 index = ref >> ROUTE_REF_SHIFT, kind = ref & ROUTE_REF_KIND;
	/* ROUTE_REF_POLICY (2): 1 only for kind 2; ROUTE_REF_LOCAL (3): 1 only for kind 3. */
	__u32 policy = (kind >> 1) & ~kind & 1, local = kind & (kind >> 1) & 1;

	_Static_assert(ROUTE_REF_DSCP == ENCAP_ROUTE_TC_FROM_DSCP, "the DSCP bit is the route flag");
	if (kind == ROUTE_REF_VALUE)
		/* Only DIR-24-8 fills it; its values outlive a packet by a grace period. */
		return dir ? bpf_map_lookup_elem(dir->values, &index) : NULL;
	copy->flags = (ref & ROUTE_REF_DSCP) | policy * ENCAP_ROUTE_POLICY | local * ENCAP_ROUTE_LOCAL;
	copy->policy_id = index;
	copy->list.depth = 1;
	copy->list.el_index = 0;
	copy->list.entries[0] = bpf_htonl(ref & ~0xffu);
	return copy;
}

/*
 * The reference a route is cached under, 0 when it cannot be (an IPv6 or
 * LPM-trie route of several entries: no index to name it by). `value`: its
 * index in dir4_values, 0 when it has none.
 */
static __always_inline __u32 route_cache_ref(const struct route_value *route, __u32 value)
{
	__u32 dscp = route->flags & ENCAP_ROUTE_TC_FROM_DSCP ? ROUTE_REF_DSCP : 0;
	__u32 other = route->flags & ~(__u32)ENCAP_ROUTE_TC_FROM_DSCP;

	if (route->flags & ENCAP_ROUTE_LOCAL)
		return ROUTE_REF_LOCAL;
	if (other == ENCAP_ROUTE_POLICY && route->policy_id < 1u << (32 - ROUTE_REF_SHIFT))
		return route->policy_id << ROUTE_REF_SHIFT | dscp | ROUTE_REF_POLICY;
	if (!other && route->list.depth == 1 && !route->list.el_index)
		return (bpf_ntohl(route->list.entries[0]) & ~0xffu) | dscp | ROUTE_REF_LABEL;
	if (value && value < 1u << (32 - ROUTE_REF_SHIFT))
		return value << ROUTE_REF_SHIFT | ROUTE_REF_VALUE;
	return 0;
}

/*
 * The reference bucket `index` holds for `k` and its counter slot; 0 when
 * it holds none. One read of one cache line: the bucket's seqlock,
 * generation, family and ways.
 */
static __always_inline __u32 route_cache_probe(const struct route_cache_key *k, __u32 index, __u32 *counter_id)
{
	struct route_cache_bucket *b = bpf_map_lookup_elem(&route_cache, &index);
	__u32 seq, ref = 0, counter = 0;

	if (!b)
		return 0;
	seq = *(volatile __u32 *)&b->seq;
	if ((seq & 1) || b->generation != k->generation || b->family != k->family)
		return 0;
	if (k->family == ETH_P_IP) {
#pragma unroll
		for (int i = 0; i < ROUTE_CACHE_WAYS_V4; i++) {
			if (b->v4[i].dst == (__u32)k->dst[0] && b->v4[i].ref) {
				ref = b->v4[i].ref;
				counter = b->v4[i].counter_id;
				break;
			}
		}
	} else {
#pragma unroll
		for (int i = 0; i < ROUTE_CACHE_WAYS_V6; i++) {
			if (b->v6[i].dst[0] == k->dst[0] && b->v6[i].dst[1] == k->dst[1] && b->v6[i].ref) {
				ref = b->v6[i].ref;
				counter = b->v6[i].counter_id;
				break;
			}
		}
	}
	ROUTE_CACHE_BARRIER();
	if (*(volatile __u32 *)&b->seq != seq)
		return 0;
	*counter_id = counter;
	return ref;
}

/*
 * The cached reference for `k` and its counter slot; 0 on a miss. A global
 * function, as is route_cache_put: the verifier checks each once, not once
 * per path of the program through it (the TC hook's paths with their ways
 * and kinds were past its limit). IPv4: its
 * bucket. IPv6, whose ways are twice as wide: the aligned pair of buckets
 * its index falls in (4 ways, as many as IPv4's), the second read only when
 * the first misses; both lines share a page, and the CPU's adjacent-line
 * prefetch often brings the second with the first.
 */
__noinline __u32 route_cache_get(const struct route_cache_key *k, __u32 *counter_id)
{
	__u32 ref;

	/* A global function is verified once, apart: its arguments may be NULL there. */
	if (!k || !counter_id)
		return 0;
	if (k->family == ETH_P_IP)
		return route_cache_probe(k, k->index, counter_id);
	ref = route_cache_probe(k, k->index & ~1u, counter_id);
	return ref ? ref : route_cache_probe(k, k->index | 1, counter_id);
}

/* A bucket a fill can take a way of without evicting a live one (ways fill in order). */
static __always_inline int route_cache_room(const struct route_cache_bucket *b, const struct route_cache_key *k)
{
	if (b->generation != k->generation || b->family != k->family)
		return 1;
	if (k->family == ETH_P_IP)
		return !b->v4[ROUTE_CACHE_WAYS_V4 - 1].ref;
	return !b->v6[ROUTE_CACHE_WAYS_V6 - 1].ref;
}

/*
 * Remembers `ref` (the main table's answer for `k`, found under
 * k->generation). A bucket filled under another generation or family holds
 * nothing of use: it is emptied first. Ways fill in order, so a bucket whose
 * last way is taken is full; then a random way goes: destinations that
 * share a bucket in a cycle then keep most of their ways, where replacing
 * in turn would evict each just before its next use. IPv6 fills the first
 * bucket of its pair with room, else either.
 */
__noinline int route_cache_put(const struct route_cache_key *k, __u32 ref, __u32 counter_id)
{
	__u32 seq, way, index, random = bpf_get_prandom_u32();
	struct route_cache_bucket *b;

	if (!k || !ref)
		return 0;
	index = k->index;
	if (k->family != ETH_P_IP) {
		index &= ~1u;
		b = bpf_map_lookup_elem(&route_cache, &index);
		if (!b)
			return 0;
		if (!route_cache_room(b, k)) {
			index |= 1;
			b = bpf_map_lookup_elem(&route_cache, &index);
			if (!b || (!route_cache_room(b, k) && (random & 4)))
				index &= ~1u;
		}
	}
	b = bpf_map_lookup_elem(&route_cache, &index);
	if (!b)
		return 0;
	seq = *(volatile __u32 *)&b->seq;
	/* Odd, or taken meanwhile: another run is writing it; leave it to that run. */
	if ((seq & 1) || __sync_val_compare_and_swap(&b->seq, seq, seq + 1) != seq)
		return 0;
	if (b->generation != k->generation || b->family != k->family) {
		__builtin_memset(&b->v4, 0, sizeof(b->v4));
		b->generation = k->generation;
		b->family = k->family;
	}
	if (k->family == ETH_P_IP) {
		way = random & (ROUTE_CACHE_WAYS_V4 - 1);
#pragma unroll
		for (int i = ROUTE_CACHE_WAYS_V4 - 1; i >= 0; i--)
			if (!b->v4[i].ref)
				way = i;
		b->v4[way & (ROUTE_CACHE_WAYS_V4 - 1)] = (struct route_cache_way_v4){
			.dst = (__u32)k->dst[0],
			.ref = ref,
			.counter_id = counter_id,
		};
	} else {
		way = random & (ROUTE_CACHE_WAYS_V6 - 1);
#pragma unroll
		for (int i = ROUTE_CACHE_WAYS_V6 - 1; i >= 0; i--)
			if (!b->v6[i].ref)
				way = i;
		b->v6[way & (ROUTE_CACHE_WAYS_V6 - 1)] = (struct route_cache_way_v6){
			.dst = { k->dst[0], k->dst[1] },
			.ref = ref,
			.counter_id = counter_id,
		};
	}
	ROUTE_CACHE_BARRIER();
	*(volatile __u32 *)&b->seq = seq + 2;
	return 0;
}

/*
 * The main table's route for the packet (`dir`: DIR-24-8 for IPv4, else the
 * LPM trie), through the cache where it serves; NULL if no route covers the
 * destination. A hit's inline route is built in `copy`. `counter_id` gets
 * the route's counter slot.
 */
static __always_inline struct route_value *lookup_main(const struct packet *pkt, void *v4, void *v6,
						       const struct dir4_tables *dir, struct route_value *copy,
						       __u32 *counter_id)
{
	struct route_cache_key k;
	struct route_value *route;
	__u32 addr = 0, slot = 0, value = 0, ref;
	/* First: the generation is read before any table the answer comes from. */
	int cached = route_cache_generation(pkt, &k);
	int dir4 = dir && pkt->l3_proto == ETH_P_IP;

	if (dir4) {
		if (dir4_summary(pkt->dst, dir, &addr, &slot))
			return NULL;
		/* The /16 summary answers alone: one read, cheaper than the cache's. */
		if (!(slot & DIR_DESCEND))
			return dir4_resolve(addr, slot, dir, counter_id, &value);
	}
	if (cached)
		route_cache_locate(pkt, &k);
	if (cached && !(skip_stages & ENCAP_SKIP_CACHE_HIT)) {
		ref = route_cache_get(&k, counter_id);
		if (ref)
			return route_cache_deref(ref, dir, copy);
	}
	route = dir4 ? dir4_resolve(addr, slot, dir, counter_id, &value) : lookup_trie(pkt, v4, v6, counter_id);
	if (route && cached)
		route_cache_put(&k, route_cache_ref(route, dir4 ? value : 0), *counter_id);
	return route;
}

#endif /* LNETD_ROUTE_CACHE_H */
