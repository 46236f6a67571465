/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The hook shims behind one interface. A worker takes `const enum hook` and is
 * inlined into an entry point that passes a constant, so clang drops the other
 * hook's branch and each program only holds (and the verifier only checks)
 * the helpers its program type allows.
 */
#ifndef LNETD_HOOK_H
#define LNETD_HOOK_H

#include "hook_skb.h"
#include "hook_xdp.h"

enum hook {
	HOOK_XDP,
	HOOK_SKB,
};

static __always_inline void hook_frame(void *ctx, const enum hook hook, void **data, void **data_end)
{
	if (hook == HOOK_XDP)
		xdp_frame_bounds(ctx, data, data_end);
	else
		skb_frame_bounds(ctx, data, data_end);
}

static __always_inline __u64 hook_frame_len(void *ctx, const enum hook hook)
{
	return hook == HOOK_XDP ? xdp_frame_len(ctx) : skb_frame_len(ctx);
}

/* Grow the frame by `len` bytes at the front and reload the pointers; -1: no room. */
static __always_inline int hook_grow_head(void *ctx, const enum hook hook, __u32 len, void **data,
					  void **data_end)
{
	if (hook == HOOK_XDP)
		return xdp_grow_head(ctx, len, data, data_end);
	return skb_grow_head(ctx, len, data, data_end);
}

/* `in_place`: read the device's MTU through the kernel's context (Linux 6.2+), not bpf_check_mtu. */
static __always_inline int hook_fits_mtu(void *ctx, const enum hook hook, __u32 l3_len, int in_place)
{
	return hook == HOOK_XDP ? xdp_fits_mtu(ctx, l3_len, in_place) : skb_fits_mtu(ctx, l3_len, in_place);
}

/*
 * Whether the kernel's route hands the packet to an on-link neighbour
 * (`enabled`: the rodata flag for it); XDP runs before any route: never.
 */
static __always_inline int hook_next_hop_on_link(void *ctx, const enum hook hook, int enabled)
{
	return hook == HOOK_SKB && skb_next_hop_on_link(ctx, enabled);
}

#endif /* LNETD_HOOK_H */
