/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * skb hook shim (TC / tcx): the frame's bounds, growth at the front and the
 * MTU, for __sk_buff. Same contract as hook_xdp.h.
 */
#ifndef LNETD_HOOK_SKB_H
#define LNETD_HOOK_SKB_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

/*
 * Direct packet access only reaches the linear part of an skb, and the parse
 * stage wants the whole IP packet there (it checks the datagram is complete),
 * so a non-linear skb is made linear first. That copies: a GSO super-packet
 * pays for it in full (see NOTES: TC egress). Called unconditionally: the
 * helper returns at once for a linear, unshared skb, and testing
 * data_end - data here let clang merge the two paths' ctx loads into one
 * through a computed ctx offset, which the verifier rejects.
 */
static __always_inline int skb_make_linear(struct __sk_buff *skb)
{
	return bpf_skb_pull_data(skb, skb->len) ? -1 : 0;
}

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
static __always_inline int skb_fits_mtu(struct __sk_buff *skb, __u32 l3_len)
{
	__u32 mtu = 0;

	if (skb->gso_size)
		return 1;
	/* Only fails for a device that vanished under us: treat as too big. */
	if (bpf_check_mtu(skb, 0, &mtu, 0, 0) < 0)
		mtu = 0;
	return l3_len <= mtu;
}

#endif /* LNETD_HOOK_SKB_H */
