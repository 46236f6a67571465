/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The last stages: check the labelled frame fits, then push the stack. */
#ifndef LNETD_LABEL_PUSH_H
#define LNETD_LABEL_PUSH_H

#include "config.h"
#include "packet.h"

/* Largest L2 header we move: Ethernet plus MAX_VLAN_TAGS tags. */
#define MAX_L2_LEN (sizeof(struct ethhdr) + MAX_VLAN_TAGS * sizeof(struct vlan_hdr))

/*
 * The MTU bounds what follows the L2 header (VLAN tags are not part of it): the
 * label stack plus the IP packet (not any Ethernet padding after it). bpf_check_mtu() is asked only for
 * the device's current MTU so a later `ip link set mtu` is honoured at once.
 */
static __always_inline enum encap_counter check_mtu(struct xdp_md *ctx, const struct packet *pkt,
						    const struct segment_list *list)
{
	__u32 mtu = 0;

	/* Only fails for a device that vanished under us: treat as too big. */
	if (bpf_check_mtu(ctx, 0, &mtu, 0, 0) < 0)
		mtu = 0;
	if (pkt->ip_len + list->depth * 4 <= mtu)
		return CONTINUE;
	return mtu_policy == ENCAP_MTU_PASS ? ENCAP_CNT_MTU_PASS : ENCAP_CNT_MTU_DROP;
}

/*
 * Insert `list` between the L2 header and the IP header, swap the MACs and
 * send the frame back out ("router on a stick"). `el_bits` is the entropy label
 * for the EL entry (unused without one); `tc_bits` a TC to OR into every entry
 * (0 when the entries carry their route's fixed TC).
 *
 * bpf_xdp_adjust_head() grows the frame at the front, so the L2 header is saved,
 * the head moved, and the header rewritten at the new front; the IP packet is
 * never touched.
 */
static __always_inline enum encap_counter push_label_stack(struct xdp_md *ctx,
							   const struct packet *pkt,
							   const struct segment_list *list, __be32 el_bits,
							   __be32 tc_bits)
{
	__u8 l2[MAX_L2_LEN];
	__u32 depth = list->depth;
	__u32 el_index = list->el_index;
	__u32 l2_len = pkt->l2_len;
	__be32 ttl_bits;
	void *data, *data_end;
	__be32 *lse;

	/* Rust never writes such a value; a hand-edited map must not hurt traffic. */
	if (depth == 0 || depth > ENCAP_MAX_LABELS)
		return ENCAP_CNT_PASS_NO_ROUTE;
	if (l2_len > MAX_L2_LEN)
		return ENCAP_CNT_ABORTED;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* A parsed frame holds at least 14 + 20 bytes, so MAX_L2_LEN is always there. */
	if (data + MAX_L2_LEN > data_end)
		return ENCAP_CNT_ABORTED;
	__builtin_memcpy(l2, data, MAX_L2_LEN);

	if (bpf_xdp_adjust_head(ctx, -(int)(depth * 4)))
		return ENCAP_CNT_PASS_NO_HEADROOM;

	/* adjust_head invalidated every packet pointer: reload and re-check. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + MAX_L2_LEN > data_end)
		return ENCAP_CNT_ABORTED;

	/*
	 * Swapped MACs, the VLAN tags as they were, and the innermost ethertype now
	 * announcing MPLS. One branch per L2 length keeps every offset constant,
	 * which is what the verifier can prove in bounds.
	 */
	__builtin_memcpy(data, l2 + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(data + ETH_ALEN, l2, ETH_ALEN);
	if (l2_len == sizeof(struct ethhdr)) {
		*(__be16 *)(data + 12) = bpf_htons(ETH_P_MPLS_UC);
	} else if (l2_len == sizeof(struct ethhdr) + sizeof(struct vlan_hdr)) {
		__builtin_memcpy(data + 12, l2 + 12, 4);
		*(__be16 *)(data + 16) = bpf_htons(ETH_P_MPLS_UC);
	} else {
		__builtin_memcpy(data + 12, l2 + 12, 8);
		*(__be16 *)(data + 20) = bpf_htons(ETH_P_MPLS_UC);
	}

	ttl_bits = bpf_htonl(ttl_mode == ENCAP_TTL_FIXED ? fixed_ttl : pkt->ttl);
	lse = data + l2_len;
	for (__u32 i = 0; i < ENCAP_MAX_LABELS; i++) {
		if (i >= depth)
			break;
		if ((void *)(lse + i + 1) > data_end)
			return ENCAP_CNT_ABORTED;
		/* RFC 6790: the EL carries the flow's entropy and TTL 0. */
		lse[i] = list->entries[i] | tc_bits | (el_index && i == el_index ? el_bits : ttl_bits);
	}
	return ENCAP_CNT_TX;
}

#endif /* LNETD_LABEL_PUSH_H */
