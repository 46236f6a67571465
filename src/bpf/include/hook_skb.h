/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * skb hook shim (TC / tcx): the frame's bounds, growth at the front and the
 * MTU, for __sk_buff. Same contract as hook_xdp.h.
 */
#ifndef LNETD_HOOK_SKB_H
#define LNETD_HOOK_SKB_H

#include "kernel_types.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/*
 * Bytes the stages read: Ethernet, two VLAN tags, IPv4 with the longest
 * options (or IPv6) and the L4 ports; IPv6 needs less.
 */
#define SKB_HEADERS (14 + 2 * 4 + 60 + 4)

static __always_inline void skb_frame_bounds(struct __sk_buff *skb, void **data, void **data_end)
{
	*data = (void *)(long)skb->data;
	*data_end = (void *)(long)skb->data_end;
}

static __always_inline __u64 skb_frame_len(struct __sk_buff *skb)
{
	return skb->len;
}

/*
 * Direct packet access only reaches an skb's linear part, which usually holds
 * every header a program reads (TCP's and a veth super-packet's do). Pulling
 * more would move payload into it, and give a cloned skb (TCP's) a head of
 * its own, on every packet. So a program parses what is linear first, and
 * calls this when the parse `ran_off` its end: the first `headers` bytes (or
 * the whole frame, if shorter) are pulled when they were not all linear.
 * Returns 1: pulled, parse again (every packet pointer is invalid); 0: the
 * parse's answer stands; -1: the kernel could not pull. Completeness is
 * judged on skb->len (parse_packet's frame_len), never on data_end.
 */
static __always_inline int skb_pull_to_reparse(struct __sk_buff *skb, int ran_off, __u32 headers)
{
	__u32 want = skb->len < headers ? skb->len : headers;

	if (!ran_off || skb->data_end - skb->data >= want)
		return 0;
	return bpf_skb_pull_data(skb, want) ? -1 : 1;
}

/*
 * Whether the skb may be MPLS, by the protocol the kernel read from its
 * ethertype: MPLS, or a VLAN tag still in the frame (the inner of two).
 */
static __always_inline int skb_may_be_mpls(struct __sk_buff *skb)
{
	return skb->protocol == bpf_htons(ETH_P_MPLS_UC) || skb->protocol == bpf_htons(ETH_P_8021Q) ||
	       skb->protocol == bpf_htons(ETH_P_8021AD);
}

/* The frame's length on the wire: a VLAN tag the kernel took off on receive counts. */
static __always_inline __u64 skb_wire_len(struct __sk_buff *skb)
{
	return skb->len + (skb->vlan_present ? 4 : 0);
}

/*
 * bpf_skb_change_head(), not bpf_skb_adjust_room(): it adds the room at the
 * very front and resets only the MAC header, so the network header stays on
 * the IP header and software GSO still segments the packet (adjust_room moves
 * the network header onto the labels and GSO then drops the skb; NOTES).
 */
static __always_inline int skb_grow_head(struct __sk_buff *skb, __u32 len, void **data, void **data_end)
{
	if (bpf_skb_change_head(skb, len, 0))
		return -1;
	/* change_head may reallocate the head: every packet pointer is invalid. */
	skb_frame_bounds(skb, data, data_end);
	return 0;
}

/*
 * Whether `l3_len` bytes after the L2 header fit the device's MTU. A GSO skb
 * is segmented after the hook, into segments of gso_size set from the route
 * MTU, so its total length says nothing: it is let through, and the labels'
 * room under the MTU is the route MTU's business (NOTES: change_head caveats).
 */
static __always_inline int skb_fits_mtu(struct __sk_buff *skb, __u32 l3_len, int in_place)
{
	__u32 mtu = 0;

	if (skb->gso_size)
		return 1;
	if (in_place) {
		struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);

		mtu = kskb->dev->mtu;
	} else if (bpf_check_mtu(skb, 0, &mtu, 0, 0) < 0) {
		/* Not expected with ifindex 0 and no flags; if it ever fails: too big. */
		mtu = 0;
	}
	return l3_len <= mtu;
}

/*
 * Whether the route the kernel chose for this packet hands it to an on-link
 * neighbour (no gateway: the router's own address, another host of the
 * subnet) rather than to a router: a labelled frame would go to that
 * neighbour's MAC, which does not switch labels. 0 when it goes through a
 * gateway, and when the skb carries no IPv4/IPv6 route (nothing routed it:
 * an ingress hook, a packet socket's frame, a test run): the tables decide.
 * `enabled` is the rodata flag that says the kernel has both kfuncs.
 */
static __always_inline int skb_next_hop_on_link(struct __sk_buff *skb, int enabled)
{
	struct sk_buff *kskb;
	struct dst_entry *dst;
	unsigned long refdst;
	unsigned short family;

	if (!enabled)
		return 0;
	kskb = bpf_cast_to_kern_ctx(skb);
	/* Bit 0 (SKB_DST_NOREF) says only whether the skb holds a reference. */
	refdst = kskb->_skb_refdst & ~1UL;
	if (!refdst)
		return 0;
	dst = bpf_rdonly_cast((void *)refdst, bpf_core_type_id_kernel(struct dst_entry));
	family = dst->ops->family;
	if (family == AF_INET) {
		struct rtable *rt = bpf_rdonly_cast(dst, bpf_core_type_id_kernel(struct rtable));

		return rt->rt_gw_family == 0;
	}
	/* A kernel without IPv6 (or with it as a module) has no rt6_info in vmlinux: then no IPv6 route either. */
	if (family == AF_INET6 && bpf_core_type_exists(struct rt6_info)) {
		struct rt6_info *rt6 = bpf_rdonly_cast(dst, bpf_core_type_id_kernel(struct rt6_info));

		return !(rt6->rt6i_flags & RTF_GATEWAY);
	}
	return 0;
}

#endif /* LNETD_HOOK_SKB_H */
