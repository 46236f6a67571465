// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The S-BFD transmitter: run by BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES, `repeat` = the probes due this tick. Each run
 * writes the next due probe's prebuilt frame over the live frame and sends
 * it with XDP_TX, which live mode turns into a redirect out of the
 * interface named by the call's ingress_ifindex: no skb per probe, and one
 * system call per tick. The engine writes the templates, the due list and
 * the control word through mmap (every map here is BPF_F_MMAPABLE).
 */
#include "sbfd_shared.h"
#include <bpf/bpf_helpers.h>

/* The interface the probes leave by (set before load). */
const volatile __u32 sbfd_ifindex = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SBFD_TX_DEFAULT_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sbfd_template);
} sbfd_templates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SBFD_TX_DEFAULT_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} sbfd_due SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sbfd_control);
} sbfd_control SEC(".maps");

SEC("xdp")
int xdp_sbfd_tx(struct xdp_md *ctx)
{
	struct sbfd_template *t;
	struct sbfd_control *c;
	__u32 zero = 0, pos, *index, len, have;

	/*
	 * The program is also attached, to keep it in the kernel's XDP
	 * dispatcher, to the loopback of a private namespace that carries no
	 * traffic (see xdp_tx.rs); were a frame ever to reach it there, it is
	 * not a probe run and goes on untouched.
	 */
	if (ctx->ingress_ifindex != sbfd_ifindex)
		return XDP_PASS;
	c = bpf_map_lookup_elem(&sbfd_control, &zero);
	if (!c)
		return XDP_DROP;
	/* One caller at a time (the engine's thread), but runs of one call may
	 * be spread over batches: an atomic add keeps every position used once. */
	pos = __sync_fetch_and_add(&c->cursor, 1);
	if (pos >= c->count)
		goto error;
	index = bpf_map_lookup_elem(&sbfd_due, &pos);
	if (!index)
		goto error;
	t = bpf_map_lookup_elem(&sbfd_templates, index);
	if (!t)
		goto error;
	len = t->len;
	/* The helper takes a size the verifier can bound, and never zero. */
	if (len < 14 || len > SBFD_TX_FRAME_MAX)
		goto error;
	/*
	 * Live frames come from a page pool that recycles pages without
	 * restoring their bytes (only the pointers and length are reset to
	 * the call's input, SBFD_TX_FRAME_MAX bytes): the whole frame is
	 * written every run, and the tail cut to this probe's length.
	 */
	have = ctx->data_end - ctx->data;
	if (len < have && bpf_xdp_adjust_tail(ctx, (int)len - (int)have))
		goto error;
	if (bpf_xdp_store_bytes(ctx, 0, t->bytes, len))
		goto error;
	return XDP_TX;
error:
	__sync_fetch_and_add(&c->errors, 1);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
