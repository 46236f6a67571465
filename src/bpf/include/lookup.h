/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Lookup stage: the route for a packet in a pair of LPM tries (IPv4, IPv6),
 * the alternate table a source selects, and the DSCP -> TC table.
 *
 * Maps are parameters, not names: a program passes its own (`&routes_v4`...),
 * so this header serves every program without pulling any program's maps in.
 * Once inlined the verifier still sees each as a constant map pointer.
 */
#ifndef LNETD_LOOKUP_H
#define LNETD_LOOKUP_H

#include "../encap_shared.h"
#include "encap_config.h"
#include "packet.h"
#include <bpf/bpf_helpers.h>

/* The DIR-24-8 maps of the main IPv4 table (see enum encap_lookup). */
struct dir4_tables {
	void *tbl16, *tbl24, *tbl8, *prefixes, *values;
};

/*
 * The entry for the first `bits` bits of `addr` (16 or 24) in a table of
 * blocks of DIR_BLOCK entries (tbl16, tbl24); -1 when the block is missing.
 */
_Static_assert(DIR_BLOCK == 1 << 4, "dir_block_entry indexes blocks by shifting 4 bits");

static __always_inline int dir_block_entry(void *table, __u32 addr, __u32 bits, __u32 *entry)
{
	__u32 index = addr >> (32 - bits) >> 4;
	struct dir_block *block = bpf_map_lookup_elem(table, &index);

	if (!block)
		return -1;
	*entry = block->entry[(addr >> (32 - bits)) & (DIR_BLOCK - 1)];
	return 0;
}

/*
 * DIR-24-8's first read: the /16 summary entry for an IPv4 destination (its
 * address in host order in `addr`); -1 when the block is missing. An entry
 * without DIR_DESCEND answers alone (short prefixes: a default route).
 */
static __always_inline int dir4_summary(const __u8 *dst, const struct dir4_tables *t, __u32 *addr, __u32 *slot)
{
	__be32 be;

	__builtin_memcpy(&be, dst, sizeof(be));
	*addr = bpf_ntohl(be);
	return dir_block_entry(t->tbl16, *addr, 16, slot);
}

/*
 * The route covering `addr` in DIR-24-8, from its /16 summary entry `slot`:
 * one read of tbl24 when the /16 holds prefixes longer than /16, one of
 * tbl8 when the /24 holds prefixes longer than /24, then the prefix's slot
 * and its (shared) value, whose index goes to `value` (for the route
 * cache). All array maps: the JIT inlines every lookup.
 */
static __always_inline struct route_value *dir4_resolve(__u32 addr, __u32 slot, const struct dir4_tables *t,
							__u32 *counter_id, __u32 *value)
{
	struct dir_prefix *prefix;
	struct dir_group *group;
	__u32 index;
	__u64 word;

	if ((slot & DIR_DESCEND) && dir_block_entry(t->tbl24, addr, 24, &slot))
		return NULL;
	if (slot & DIR_GROUP) {
		index = slot & DIR_SLOT_MASK;
		group = bpf_map_lookup_elem(t->tbl8, &index);
		if (!group)
			return NULL;
		slot = group->entry[addr & 0xff];
	}
	slot &= DIR_SLOT_MASK;
	if (!slot)
		return NULL;
	if (skip_stages & ENCAP_SKIP_DIR_PREFIX)
		slot = 1;
	prefix = bpf_map_lookup_elem(t->prefixes, &slot);
	if (!prefix)
		return NULL;
	/* Value and counter as one word: user space replaces both with one store. */
	word = *(volatile __u64 *)prefix;
	index = (__u32)word;
	*counter_id = (__u32)(word >> 32);
	if (skip_stages & ENCAP_SKIP_DIR_VALUE)
		index = 1;
	*value = index;
	return bpf_map_lookup_elem(t->values, &index);
}

/*
 * The longest-prefix route for the destination in the main table's LPM
 * tries, `v4` or `v6`; NULL if none covers it. `counter_id` gets the route's
 * counter slot. (DIR-24-8 and the route cache in front: route_cache.h.)
 */
static __always_inline struct route_value *lookup_trie(const struct packet *pkt, void *v4, void *v6,
						       __u32 *counter_id)
{
	struct route_value *route;

	if (pkt->l3_proto == ETH_P_IP) {
		struct route_key_v4 key = { .prefixlen = 32 };

		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		route = bpf_map_lookup_elem(v4, &key);
		/*
		 * Keeps clang from sinking both lookups into one call instruction:
		 * the verifier, seeing two maps there, would call the generic helper
		 * (an indirect call) instead of the trie's own lookup.
		 */
		barrier_var(route);
	} else {
		struct route_key_v6 key = { .prefixlen = 128 };

		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		route = bpf_map_lookup_elem(v6, &key);
	}
	if (route)
		*counter_id = route->counter_id;
	return route;
}

/* Source prefix tries and the alternate route tries they select. */
struct alternate_tables {
	void *sources_v4, *sources_v6;
	void *routes_v4, *routes_v6;
};

/*
 * The alternate table's route for a packet whose source matches a source
 * prefix; NULL when the source matches none or the table has no route for the
 * destination (the main table then decides: never a black hole).
 */
static __always_inline struct route_value *lookup_alternate(const struct packet *pkt,
							    const struct alternate_tables *t)
{
	struct source_value *src;

	if (pkt->l3_proto == ETH_P_IP) {
		struct route_key_v4 skey = { .prefixlen = 32 };
		struct alt_key_v4 key = { .prefixlen = 64 };

		__builtin_memcpy(skey.addr, pkt->src, sizeof(skey.addr));
		src = bpf_map_lookup_elem(t->sources_v4, &skey);
		if (!src)
			return NULL;
		key.table = bpf_htonl(src->table);
		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		return bpf_map_lookup_elem(t->routes_v4, &key);
	} else {
		struct route_key_v6 skey = { .prefixlen = 128 };
		struct alt_key_v6 key = { .prefixlen = 160 };

		__builtin_memcpy(skey.addr, pkt->src, sizeof(skey.addr));
		src = bpf_map_lookup_elem(t->sources_v6, &skey);
		if (!src)
			return NULL;
		key.table = bpf_htonl(src->table);
		__builtin_memcpy(key.addr, pkt->dst, sizeof(key.addr));
		return bpf_map_lookup_elem(t->routes_v6, &key);
	}
}

/* The TC bits (already in label-entry position) for a DSCP, through a one-entry dscp_map array. */
static __always_inline __be32 lookup_tc_bits(void *dscp_tc, __u8 dscp)
{
	__u32 zero = 0;
	struct dscp_map *map = bpf_map_lookup_elem(dscp_tc, &zero);

	if (!map)
		return 0;
	return bpf_htonl((__u32)(map->tc[dscp & 63] & 7) << 9);
}

#endif /* LNETD_LOOKUP_H */
