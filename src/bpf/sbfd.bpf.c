// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The S-BFD transmitter: run by BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES, `repeat` = the probes due this tick. Each run
 * writes the next due probe's prebuilt frame over the live frame and sends
 * it with XDP_TX, which live mode turns into a redirect out of the
 * interface named by the call's ingress_ifindex: no skb per probe, and one
 * system call per tick. The engine writes the templates, the due list and
 * the control word through mmap (every map here is BPF_F_MMAPABLE).
 *
 * And the answer filter: a socket filter on the engine's UDP socket that
 * counts each reflector's answer in its list's record and drops it, so no
 * answer is queued, woken for or received by a system call.
 */
#include "sbfd_shared.h"
#include <bpf/bpf_endian.h>
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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SBFD_ANSWER_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sbfd_answer);
} sbfd_answers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SBFD_ANSWERED_WORDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} sbfd_answered SEC(".maps");

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

/* The BFD control packet's fields the filter checks (RFC 5880 section 4.1). */
struct bfd_head {
	__u8 version_diag;
	__u8 state_flags;
	__u8 detect_mult;
	__u8 length;
	__be32 my_discriminator;
	__be32 your_discriminator;
};

/*
 * On a UDP socket the filter sees the datagram from its UDP header on (the
 * IP header is already pulled). Returns 0 for every datagram: dropped
 * before the socket's queue (the kernel counts it in the socket's drops
 * and UDP InErrors).
 */
SEC("socket")
int sbfd_answer_filter(struct __sk_buff *skb)
{
	struct sbfd_control *c;
	struct sbfd_answer *a;
	struct bfd_head h;
	__u32 zero = 0, yours, slot, word;
	__u64 *bits;

	c = bpf_map_lookup_elem(&sbfd_control, &zero);
	if (!c)
		return 0;
	if (bpf_skb_load_bytes(skb, 8, &h, sizeof(h)))
		goto invalid;
	/* Version 1; a length of at least 24 that the datagram holds; no
	 * authentication (A) nor multipoint (M); Detect Mult not 0. */
	if (h.version_diag >> 5 != 1 || h.length < 24 || h.length > skb->len - 8 || (h.state_flags & 0x05) ||
	    !h.detect_mult)
		goto invalid;
	yours = bpf_ntohl(h.your_discriminator);
	slot = yours & (SBFD_ANSWER_SLOTS - 1);
	a = bpf_map_lookup_elem(&sbfd_answers, &slot);
	if (!a || !yours || a->local != yours || a->reflector != bpf_ntohl(h.my_discriminator))
		goto invalid;
	__sync_fetch_and_add(&a->answers, 1);
	if (h.state_flags >> 6 == 3)
		__sync_fetch_and_add(&a->up, 1);
	/*
	 * After the counts: an engine that takes the bit then reads them sees
	 * this answer now or, the bit set again, at its next tick. The
	 * returning form of the atomic (its result kept by the empty asm) is
	 * fully ordered in the kernel's BPF memory model, so the counts are
	 * visible before the bit on every JIT; the non-returning forms are
	 * unordered (arm64).
	 */
	word = slot / 64;
	bits = bpf_map_lookup_elem(&sbfd_answered, &word);
	if (bits) {
		__u64 was = __sync_fetch_and_or(bits, 1ull << (slot % 64));

		asm volatile("" : : "r"(was));
	}
	return 0;
invalid:
	__sync_fetch_and_add(&c->invalid, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
