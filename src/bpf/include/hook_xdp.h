/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* XDP hook shim: the frame's bounds, growth at the front and the MTU, for xdp_md. */
#ifndef LNETD_HOOK_XDP_H
#define LNETD_HOOK_XDP_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

static __always_inline void xdp_frame_bounds(struct xdp_md *ctx, void **data, void **data_end)
{
	*data = (void *)(long)ctx->data;
	*data_end = (void *)(long)ctx->data_end;
}

/* The frame as it arrived: what the counters add up. */
static __always_inline __u64 xdp_frame_len(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

/*
 * Moves the frame's start `len` bytes back into the driver's headroom. Fails
 * (no change) when the driver left less headroom than that.
 */
static __always_inline int xdp_grow_head(struct xdp_md *ctx, __u32 len, void **data, void **data_end)
{
	if (bpf_xdp_adjust_head(ctx, -(int)len))
		return -1;
	/* adjust_head invalidated every packet pointer: the verifier wants them reloaded. */
	xdp_frame_bounds(ctx, data, data_end);
	return 0;
}

/*
 * Whether `l3_len` bytes after the L2 header fit the device's MTU, read at
 * every packet so a later `ip link set mtu` is honoured at once. `in_place`:
 * read the receiving device's `mtu` through the kernel's xdp_buff, three
 * loads; else ask bpf_check_mtu() for it (not for a verdict on the frame as
 * it is): the same value through a helper call, about 8 ns more where calls
 * pay for the kernel's Spectre mitigations (README, Performance).
 */
static __always_inline int xdp_fits_mtu(struct xdp_md *ctx, __u32 l3_len, int in_place)
{
	__u32 mtu = 0;

	if (in_place) {
		struct xdp_buff *xdp = bpf_cast_to_kern_ctx(ctx);

		mtu = xdp->rxq->dev->mtu;
	} else if (bpf_check_mtu(ctx, 0, &mtu, 0, 0) < 0) {
		/* Not expected with ifindex 0 and no flags; if it ever fails: too big. */
		mtu = 0;
	}
	return l3_len <= mtu;
}

/*
 * Moves the frame's start `len` bytes forward (the bytes before it become
 * headroom). Fails (no change) when less than an Ethernet header would be left.
 */
static __always_inline int xdp_shrink_head(struct xdp_md *ctx, __u32 len, void **data, void **data_end)
{
	if (bpf_xdp_adjust_head(ctx, (int)len))
		return -1;
	/* adjust_head invalidated every packet pointer: the verifier wants them reloaded. */
	xdp_frame_bounds(ctx, data, data_end);
	return 0;
}

#endif /* LNETD_HOOK_XDP_H */
