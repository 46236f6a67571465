/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Label pop stage: walk the top of an MPLS stack against a set of labels,
 * then remove the entries found by moving the L2 header forward over them.
 * Knows nothing of counters or policy: it reports what it found.
 */
#ifndef LNETD_POP_H
#define LNETD_POP_H

#include "../decap_shared.h"
#include "hook_xdp.h"
#include "parsing.h"

enum pop_walk {
	POP_WHOLE,     /* every entry down to S=1 is in the set; `restored` says the IP version */
	POP_PARTIAL,   /* 1+ top entries in the set, then one that is not (S not reached) */
	POP_OTHER,     /* the top entry is not in the set */
	POP_MALFORMED, /* truncated stack, no S within DECAP_MAX_DEPTH, or neither IPv4 nor IPv6 below */
};

struct pop_result {
	__u32 entries;  /* entries to pop (POP_WHOLE, POP_PARTIAL) */
	__u16 restored; /* POP_WHOLE: ETH_P_IP or ETH_P_IPV6, host order */
};

/*
 * `c` points at the first label stack entry. Pops consecutive entries whose
 * label is in `set`, from the top. Only the entries walked are checked: a
 * partial pop does not read what is below the first label it keeps.
 */
static __always_inline enum pop_walk pop_walk(struct hdr_cursor *c, void *data_end, void *set,
					      struct pop_result *res)
{
	__u8 *payload;
	__u32 lse;

	res->entries = 0;
	/* A constant bound, as the verifier needs; one map lookup per entry walked. */
	for (__u32 i = 0; i < DECAP_MAX_DEPTH; i++) {
		struct pop_label_key key = {};

		if (parse_mpls_entry(c, data_end, &lse) == PARSE_INVALID)
			return POP_MALFORMED;
		key.label = lse >> MPLS_LSE_LABEL_SHIFT;
		if (!bpf_map_lookup_elem(set, &key))
			return res->entries ? POP_PARTIAL : POP_OTHER;
		res->entries += 1;
		if (lse & MPLS_LSE_BOTTOM)
			goto bottom;
	}
	return POP_MALFORMED;

bottom:
	/* The label says nothing of what it carried: the IP version nibble does. */
	payload = c->pos;
	if ((void *)(payload + 1) > data_end)
		return POP_MALFORMED;
	switch (*payload >> 4) {
	case 4:
		res->restored = ETH_P_IP;
		return POP_WHOLE;
	case 6:
		res->restored = ETH_P_IPV6;
		return POP_WHOLE;
	default:
		return POP_MALFORMED;
	}
}

/* The MACs and VLAN tags (not the innermost ethertype), the largest case. */
#define POP_L2_KEEP (2 * ETH_ALEN + MAX_VLAN_TAGS * sizeof(struct vlan_hdr))

struct pop_l2 {
	__u8 bytes[POP_L2_KEEP];
};

/*
 * Removes `entries` label stack entries after an L2 header with `vlan_tags`
 * tags and writes `ethertype` (host order) as its innermost ethertype. The
 * header is saved, the frame's start moved forward over the entries
 * (bpf_xdp_adjust_head), and the header rewritten at the new start; the
 * payload is never touched. One branch per L2 length keeps every offset
 * constant, which is what the verifier can prove in bounds.
 * Returns 0; -1 with the frame unchanged when the kernel refused the move;
 * -2 when the frame is shorter than the verifier must be shown (the caller
 * parsed it, so never).
 */
static __always_inline int pop_entries(struct xdp_md *ctx, __u32 vlan_tags, __u32 entries, __u16 ethertype)
{
	void *data, *data_end;
	struct pop_l2 l2;

	xdp_frame_bounds(ctx, &data, &data_end);
	if (vlan_tags == 0) {
		if (data + 2 * ETH_ALEN > data_end)
			return -2;
		__builtin_memcpy(l2.bytes, data, 2 * ETH_ALEN);
	} else if (vlan_tags == 1) {
		if (data + 2 * ETH_ALEN + 4 > data_end)
			return -2;
		__builtin_memcpy(l2.bytes, data, 2 * ETH_ALEN + 4);
	} else {
		if (data + 2 * ETH_ALEN + 8 > data_end)
			return -2;
		__builtin_memcpy(l2.bytes, data, 2 * ETH_ALEN + 8);
	}
	if (xdp_shrink_head(ctx, entries * 4, &data, &data_end))
		return -1;
	if (vlan_tags == 0) {
		if (data + sizeof(struct ethhdr) > data_end)
			return -2;
		__builtin_memcpy(data, l2.bytes, 2 * ETH_ALEN);
		*(__be16 *)(data + 12) = bpf_htons(ethertype);
	} else if (vlan_tags == 1) {
		if (data + sizeof(struct ethhdr) + 4 > data_end)
			return -2;
		__builtin_memcpy(data, l2.bytes, 2 * ETH_ALEN + 4);
		*(__be16 *)(data + 16) = bpf_htons(ethertype);
	} else {
		if (data + sizeof(struct ethhdr) + 8 > data_end)
			return -2;
		__builtin_memcpy(data, l2.bytes, 2 * ETH_ALEN + 8);
		*(__be16 *)(data + 20) = bpf_htons(ethertype);
	}
	return 0;
}

#endif /* LNETD_POP_H */
