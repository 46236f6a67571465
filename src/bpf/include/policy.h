/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Policy selection stage: which of an SR policy's segment lists a flow takes,
 * and the flow's entropy label. The policy comes from the caller's lookup, so
 * no program's maps are named here.
 */
#ifndef LNETD_POLICY_H
#define LNETD_POLICY_H

#include "../encap_shared.h"
#include "flow_hash.h"

enum policy_select {
	SELECT_OK = 0,
	SELECT_NO_LIST,   /* the slot names a list the policy does not have */
	SELECT_BAD_SLOT,  /* slot index out of bounds: unreachable unless the bound is lost */
	SELECT_DROP,      /* no live path, and the policy says drop (ENCAP_POLICY_DROP) */
};

/*
 * The index of the segment list for a flow `hash`, via the policy's slot
 * table. A policy that drops has no list to select: said before the table is
 * read, so no flow of it is hashed into "no route".
 */
static __always_inline enum policy_select select_segment_list(const struct policy_value *policy,
							      __u32 hash, __u32 *idx)
{
	__u32 slot = hash % ENCAP_POLICY_SLOTS;

	if (policy->flags & ENCAP_POLICY_DROP)
		return SELECT_DROP;

	/* clang turns % into div/mul/sub, which loses the bound the verifier needs. */
	barrier_var(slot);
	if (slot >= ENCAP_POLICY_SLOTS)
		return SELECT_BAD_SLOT;
	*idx = policy->slots[slot];
	/* Rust never writes such a slot; a hand-edited map must not read past lists[]. */
	if (*idx >= ENCAP_MAX_SEGMENT_LISTS)
		return SELECT_NO_LIST;
	return SELECT_OK;
}

/* The EL entry's label bits for a flow, in network order, ready to OR into the entry. */
static __always_inline __be32 entropy_label_bits(__u32 hash)
{
	return bpf_htonl(entropy_label(hash) << 12);
}

#endif /* LNETD_POLICY_H */
