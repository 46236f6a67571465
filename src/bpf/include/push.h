/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Label push stage: write a label stack between the L2 header and the IP
 * header, into room the hook shim already made at the front of the frame
 * (hook_grow_head). Knows nothing of the hook: it gets data/data_end.
 *
 * Growing at the front leaves the L2 header where it was, now behind the new
 * room, so the header is saved before the growth (l2_save) and rewritten at
 * the new front here; the IP packet is never touched.
 */
#ifndef LNETD_PUSH_H
#define LNETD_PUSH_H

#include "../encap_shared.h"
#include "packet.h"
#include "reflect.h"

/* Largest L2 header we move: Ethernet plus MAX_VLAN_TAGS tags. */
#define MAX_L2_LEN (sizeof(struct ethhdr) + MAX_VLAN_TAGS * sizeof(struct vlan_hdr))

/* Words for the moves (2-byte accesses: a sixth of the byte copies, and aligned
 * even where the verifier is strict: NET_IP_ALIGN is 2), bytes for whoever needs them. */
struct l2_copy {
	union {
		__u8 bytes[MAX_L2_LEN];
		__u16 words[MAX_L2_LEN / 2];
	};
};

/* The room `list` needs, in bytes; 0 for a depth no list may have. */
static __always_inline __u32 label_stack_len(const struct segment_list *list)
{
	__u32 depth = list->depth;

	/* Rust never writes such a value; a hand-edited map must not hurt traffic. */
	if (depth == 0 || depth > ENCAP_MAX_LABELS)
		return 0;
	return depth * 4;
}

/*
 * Copies MAX_L2_LEN bytes whatever the packet's L2 length: one constant-size
 * copy is what the verifier can bound. A parsed frame holds at least 14 + 20
 * bytes, so they are always there; -1 only if the caller skipped parsing.
 */
static __always_inline int l2_save(void *data, void *data_end, struct l2_copy *l2)
{
	const __u16 *w = data;

	if (data + MAX_L2_LEN > data_end)
		return -1;
#pragma unroll
	for (int i = 0; i < MAX_L2_LEN / 2; i++)
		l2->words[i] = w[i];
	return 0;
}

/*
 * With the room made, `data` is the new front: write the saved L2 header
 * there, its innermost ethertype now announcing MPLS, then the stack. The TTL
 * byte of every entry gets `ttl_bits`, except the EL entry, which gets
 * `el_bits` (the flow's entropy; RFC 6790: its TTL stays 0); `tc_bits` is ORed
 * into every entry (0 when the entries carry their route's fixed TC).
 * Returns 0, or -1 if the frame is shorter than the verifier must be shown.
 */
static __always_inline int push_label_stack(void *data, void *data_end, const struct l2_copy *l2,
					    __u32 l2_len, const struct segment_list *list,
					    __be32 ttl_bits, __be32 el_bits, __be32 tc_bits)
{
	__u32 depth = list->depth;
	__u32 el_index = list->el_index;
	__be32 *lse;
	__u16 *w;

	if (l2_len > MAX_L2_LEN)
		return -1;
	if (data + MAX_L2_LEN > data_end)
		return -1;

	/*
	 * The MACs and VLAN tags as they were, the innermost ethertype now MPLS.
	 * One branch per L2 length keeps every offset constant, which is what the
	 * verifier can prove in bounds.
	 */
	w = data;
#pragma unroll
	for (int i = 0; i < MAC_WORDS; i++)
		w[i] = l2->words[i];
	if (l2_len == sizeof(struct ethhdr)) {
		w[6] = bpf_htons(ETH_P_MPLS_UC);
	} else if (l2_len == sizeof(struct ethhdr) + sizeof(struct vlan_hdr)) {
		w[6] = l2->words[6];
		w[7] = l2->words[7];
		w[8] = bpf_htons(ETH_P_MPLS_UC);
	} else {
		w[6] = l2->words[6];
		w[7] = l2->words[7];
		w[8] = l2->words[8];
		w[9] = l2->words[9];
		w[10] = bpf_htons(ETH_P_MPLS_UC);
	}

	lse = data + l2_len;
	/* Bounded by the array, not by depth: the verifier needs a constant trip count. */
	for (__u32 i = 0; i < ENCAP_MAX_LABELS; i++) {
		if (i >= depth)
			break;
		if ((void *)(lse + i + 1) > data_end)
			return -1;
		lse[i] = list->entries[i] | tc_bits | (el_index && i == el_index ? el_bits : ttl_bits);
	}
	return 0;
}

#endif /* LNETD_PUSH_H */
