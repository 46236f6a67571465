/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Label pop on the skb path (TC ingress), GSO super-packets kept whole.
 *
 * The only helper that removes bytes after an skb's MAC header and keeps a
 * GSO skb valid is bpf_skb_adjust_room, and it refuses any skb whose
 * protocol is not IPv4 or IPv6; a program cannot write skb->protocol (NOTES).
 * The VLAN helpers can: popping a VLAN tag that sits in the frame sets
 * skb->protocol from the ethertype under it (vlan_set_encap_proto). So the
 * frame's ethertype is rewritten to the IP version found under the stack,
 * the frame is given a tag for a moment (two pushes: the second moves the
 * first, or the tag the kernel took off on receive, into the frame, above
 * that ethertype), and the tags are popped again: the protocol is now IP,
 * the L2 header (and a received VLAN tag) is as it was, and adjust_room can
 * remove the entries.
 */
#ifndef LNETD_POP_SKB_H
#define LNETD_POP_SKB_H

#include "../decap_shared.h"
#include "hook_skb.h"

/*
 * Makes skb->protocol `ethertype` (host order) and writes it as the frame's
 * ethertype, for a frame with no VLAN tag in its bytes. The ethertype is
 * written while it is still part of the MAC header, which a
 * CHECKSUM_COMPLETE skb's csum does not cover at TC ingress; the VLAN
 * helpers keep the csum right for what they move. Returns 0, or -1 when the
 * kernel refused a step (the frame may then carry a tag of ours: drop it).
 */
static __always_inline int skb_set_protocol(struct __sk_buff *skb, __u16 ethertype)
{
	__be16 proto = bpf_htons(ethertype);
	__u32 tagged = skb->vlan_present;

	if (bpf_skb_store_bytes(skb, 2 * ETH_ALEN, &proto, sizeof(proto), 0))
		return -1;
	if (!tagged && bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 0))
		return -1;
	/* Moves the tag into the frame, above the ethertype just written. */
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 0))
		return -1;
	/* The tag in the frame goes back to where it was (or away), the protocol is `ethertype`. */
	if (bpf_skb_vlan_pop(skb))
		return -1;
	if (!tagged && bpf_skb_vlan_pop(skb))
		return -1;
	/* The helpers' internals are what this relies on: a kernel that differs fails here, loudly. */
	if (skb->protocol != bpf_htons(ethertype) || skb->vlan_present != tagged)
		return -1;
	return 0;
}

/*
 * Removes `entries` label stack entries after the Ethernet header of a frame
 * with no VLAN tag in its bytes and restores `ethertype` (host order), gso_size
 * kept: the segments' payload does not change. GSO types other than TCP and
 * UDP (SCTP, ESP) are refused by the kernel. Returns 0, or -1 when the
 * kernel refused (drop: the frame may be part-way changed).
 */
static __always_inline int skb_pop_entries(struct __sk_buff *skb, __u32 entries, __u16 ethertype)
{
	if (skb_set_protocol(skb, ethertype))
		return -1;
	if (bpf_skb_adjust_room(skb, -(int)(entries * 4), BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_NO_CSUM_RESET))
		return -1;
	return 0;
}

#endif /* LNETD_POP_SKB_H */
