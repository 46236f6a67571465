/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Label pop on the skb path (TC ingress), in two passes through the same
 * program.
 *
 * Why two: the only helper that removes bytes after the MAC header of an skb
 * (keeping a GSO super-packet whole) is bpf_skb_adjust_room, and it refuses
 * any skb whose protocol is not IPv4 or IPv6; a program cannot set
 * skb->protocol (NOTES). So the first pass marks the frame (the IP ethertype
 * restored, a marker over the first entry) and redirects it to the same
 * device's ingress, where eth_type_trans sets the protocol from the new
 * ethertype; the second pass finds the marker and removes the entries. A GSO
 * super-packet is popped whole, which is the point: a veth whose peer runs
 * XDP loses its GSO features, one with a TC program does not.
 *
 * The marker's first byte has IP version 0, which no IP stack accepts, so a
 * marker can never be mistaken for a packet: a marked frame that missed its
 * second pass (the program detached in between) is dropped by the stack.
 */
#ifndef LNETD_POP_SKB_H
#define LNETD_POP_SKB_H

#include "../decap_shared.h"
#include "hook_skb.h"
#include "parsing.h"

/* Bytes the decapsulator reads: Ethernet, two tags, a full stack, the IP version byte. */
#define DECAP_HEADERS (14 + 2 * 4 + DECAP_MAX_DEPTH * 4 + 1)

enum pop_mark {
	POP_MARK_VERSION = 0x00, /* IP version 0: never a packet */
	POP_MARK_L = 'L',
	POP_MARK_E = 'E',
};

/*
 * First pass, after the walk: writes the marker (with the count of entries
 * to pop) over the first entry and `ethertype` (host order) as the frame's
 * ethertype, for a frame with no VLAN tag in its bytes (`l2_len` 14). The
 * caller redirects it to its own ingress. The entries are covered by a
 * CHECKSUM_COMPLETE skb's csum (kept right by the helper); the MAC header is
 * not. Returns 0, or -1 when the kernel refused a write.
 */
static __always_inline int skb_pop_mark(struct __sk_buff *skb, __u32 l2_len, __u32 entries, __u16 ethertype)
{
	__u8 marker[4] = { POP_MARK_VERSION, POP_MARK_L, POP_MARK_E, (__u8)entries };
	__be16 proto = bpf_htons(ethertype);

	if (bpf_skb_store_bytes(skb, l2_len, marker, sizeof(marker), BPF_F_RECOMPUTE_CSUM))
		return -1;
	if (bpf_skb_store_bytes(skb, l2_len - sizeof(proto), &proto, sizeof(proto), 0))
		return -1;
	return 0;
}

enum skb_pop_finish {
	SKB_POP_NOT_MARKED, /* an IP frame like any other */
	SKB_POP_DONE,       /* the marked entries are gone; the frame is the IP packet */
	SKB_POP_REFUSED,    /* marked, but the kernel refused to remove them */
};

/*
 * Second pass: `c` points right after an Ethernet header whose ethertype is
 * IPv4 or IPv6. A marker there means the first pass ran: the entries it
 * counts are removed (after the MAC header, gso_size kept: the segments'
 * payload does not change).
 */
static __always_inline enum skb_pop_finish skb_pop_finish(struct __sk_buff *skb, struct hdr_cursor *c,
							  void *data_end)
{
	__u8 *m = c->pos;
	__u32 entries;

	if ((void *)(m + 4) > data_end)
		return SKB_POP_NOT_MARKED;
	if (m[0] != POP_MARK_VERSION || m[1] != POP_MARK_L || m[2] != POP_MARK_E)
		return SKB_POP_NOT_MARKED;
	entries = m[3];
	if (entries == 0 || entries > DECAP_MAX_DEPTH)
		return SKB_POP_NOT_MARKED;
	if (bpf_skb_adjust_room(skb, -(int)(entries * 4), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return SKB_POP_REFUSED;
	return SKB_POP_DONE;
}

#endif /* LNETD_POP_SKB_H */
