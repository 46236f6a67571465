// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Helper programs for labs and benchmarks, not for production paths.
 *
 * xdp_pass: attached to the peer of a veth that receives XDP_TX frames; a veth
 * only delivers XDP_TX/redirected frames when its peer runs an XDP program.
 *
 * xdp_floor: the encapsulator's fixed costs without its work (same parser, MAC
 * swap, XDP_TX; no lookup, no push): the baseline the benchmarks divide by.
 *
 * xdp_generate: a traffic generator for BPF_PROG_TEST_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES: writes the next frame of `gen_frames` over the
 * live frame and sends it out with XDP_TX.
 *
 * xdp_min_push: the floor plus a constant one-label push, a benchmark's
 * lower bound for any encapsulator.
 *
 * xdp_count_returned: counts the frames that come back to an interface
 * (labelled ones apart) and drops them.
 *
 * xdp_recirculate: the generator for kernels that refuse live frames:
 * attached where xdp_count_returned would be, it counts what comes back as
 * that does, then writes the next frame over it and sends it out again, so
 * that a few seed frames keep the pair busy.
 *
 * tc_observe: on tcx ingress after another program, records what the
 * kernel will see of the last skb that carries a VLAN tag taken off on
 * receive (its tag, its protocol) and passes everything on.
 */
#include "hook.h"
#include "packet.h"
#include "reflect.h"

/* Largest generated frame, and how many distinct frames the generator cycles through. */
#define GEN_FRAME_MAX 256
#define GEN_FRAMES_MAX 65536

struct gen_frame {
	__u8 bytes[GEN_FRAME_MAX];
};

/* Bytes of a frame's patch (see gen_patches). */
#define GEN_PATCH_LEN 32

/*
 * How many frames are in use and their common length; with `patched`, the
 * frames are gen_frames[0] with gen_patches[i] written at `patch_off`.
 */
struct gen_config {
	__u32 frames;
	__u32 len;
	__u32 patched;
	__u32 patch_off;
	/* xdp_recirculate sends what comes back out again (else drops it). */
	__u32 recirculate;
};

/* A frame of this ethertype (IEEE 802 local experimental) seeds
 * xdp_recirculate: rewritten and sent, not counted as returned. */
#define GEN_SEED_ETHERTYPE 0x88B5

/* What sets frame i apart from frame 0, when that fits GEN_PATCH_LEN bytes. */
struct gen_patch {
	__u8 bytes[GEN_PATCH_LEN];
};

/* What came back to the counted interface, per CPU. */
struct returned_counts {
	__u64 frames;
	/* Frames whose outer ethertype is MPLS unicast (0x8847). */
	__u64 labelled;
	/* The first label stack entry of the last labelled frame, as on the wire. */
	__u32 last_top_entry;
	__u32 pad;
	/* Frames xdp_recirculate sent out again. */
	__u64 resent;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_FRAMES_MAX);
	__type(key, __u32);
	__type(value, struct gen_frame);
} gen_frames SEC(".maps");

/*
 * Frames that differ only in a few bytes (an address and a checksum) are
 * sent as frame 0 plus a patch: a 32-byte read per frame instead of a
 * 256-byte slot, so the generator sharing the CPU with the program under
 * test does not sweep its caches with 16 MiB of frames. A NIC's receive
 * ring recycles a bounded set of buffers; the whole-frame mode stays for
 * frames that differ more.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_FRAMES_MAX);
	__type(key, __u32);
	__type(value, struct gen_patch);
} gen_patches SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_config SEC(".maps");

/* Per CPU, so that generator threads on several CPUs do not share a cache line. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_cursor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct returned_counts);
} returned SEC(".maps");

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Drops everything: a live-frame run of it sends nothing (a probe of the kernel). */
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	struct packet pkt = {};
	void *data, *data_end;

	hook_frame(ctx, HOOK_XDP, &data, &data_end);
	if (parse_packet(data, data_end, data_end - data, &pkt) != PACKET_IP || reflect_macs(data, data_end))
		return XDP_PASS;
	return XDP_TX;
}

/*
 * The least any encapsulator on this hook does: the floor's parse and MAC
 * swap, room for one entry (bpf_xdp_adjust_head), the L2 header moved to the
 * new front and one constant label (16, S=1, the IP TTL) written: no lookup,
 * no MTU check, no counter. Its time over the floor bounds from below what
 * a real one can cost. Untagged frames only (it is a benchmark baseline).
 */
SEC("xdp")
int xdp_min_push(struct xdp_md *ctx)
{
	struct packet pkt = {};
	void *data, *data_end;
	__u16 *w, macs[MAC_WORDS];

	hook_frame(ctx, HOOK_XDP, &data, &data_end);
	if (parse_packet(data, data_end, data_end - data, &pkt) != PACKET_IP ||
	    pkt.l2_len != sizeof(struct ethhdr) || data + sizeof(struct ethhdr) > data_end)
		return XDP_PASS;
	/* The MACs, swapped, in 2-byte words (as the encapsulator moves them). */
	w = data;
	for (int i = 0; i < MAC_WORDS; i++)
		macs[i] = w[(i + MAC_WORDS / 2) % MAC_WORDS];
	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_PASS;
	hook_frame(ctx, HOOK_XDP, &data, &data_end);
	if (data + sizeof(struct ethhdr) + 4 > data_end)
		return XDP_ABORTED;
	w = data;
	for (int i = 0; i < MAC_WORDS; i++)
		w[i] = macs[i];
	w[6] = bpf_htons(ETH_P_MPLS_UC);
	*(__be32 *)(w + 7) = bpf_htonl(16 << 12 | 1 << 8 | pkt.ttl);
	return XDP_TX;
}

/* Writes the next frame of gen_frames over the frame at ctx, which must be
 * cfg->len bytes long, and sends it. */
static __always_inline int gen_write_next(struct xdp_md *ctx, struct gen_config *cfg)
{
	struct gen_frame *frame;
	__u32 zero = 0, i, len;
	__u32 *cursor;

	cursor = bpf_map_lookup_elem(&gen_cursor, &zero);
	if (!cursor || !cfg->frames)
		return XDP_ABORTED;
	i = *cursor;
	/* A cursor left beyond a smaller set of frames starts it over. */
	if (i >= cfg->frames)
		i = 0;
	*cursor = i + 1 >= cfg->frames ? 0 : i + 1;
	frame = bpf_map_lookup_elem(&gen_frames, cfg->patched ? &zero : &i);
	len = cfg->len;
	/* The helper takes a size the verifier can bound, and never zero. */
	if (!frame || len == 0 || len > GEN_FRAME_MAX)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, frame->bytes, len))
		return XDP_ABORTED;
	if (cfg->patched) {
		/* Four stores, not a second helper call: the generator is part of the floor. */
		struct gen_patch *patch = bpf_map_lookup_elem(&gen_patches, &i);
		void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
		__u64 *to = data + (cfg->patch_off & (GEN_FRAME_MAX - 1));
		const __u64 *from;

		if (!patch || (void *)(to + GEN_PATCH_LEN / 8) > data_end)
			return XDP_ABORTED;
		from = (const __u64 *)patch->bytes;
#pragma unroll
		for (int w = 0; w < GEN_PATCH_LEN / 8; w++)
			to[w] = from[w];
	}
	return XDP_TX;
}

/*
 * Live frames come from a page pool that recycles the pages the far side
 * returned without restoring their bytes (only the pointers are reset), and
 * the program under test rewrites them (MAC swap, label push). So every run
 * writes a whole frame again instead of trusting what the page holds; that
 * also lets one BPF_PROG_TEST_RUN call send many different frames.
 */
SEC("xdp")
int xdp_generate(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_config, &zero);

	if (!cfg)
		return XDP_ABORTED;
	return gen_write_next(ctx, cfg);
}

/* Counts a frame that came back (labelled ones apart). */
static __always_inline void count_returned(struct returned_counts *c, void *data, void *data_end)
{
	struct ethhdr *eth = data;

	c->frames++;
	if ((void *)(eth + 1) + sizeof(__u32) > data_end || eth->h_proto != bpf_htons(ETH_P_MPLS_UC))
		return;
	c->labelled++;
	c->last_top_entry = *(__u32 *)(eth + 1);
}

SEC("xdp")
int xdp_count_returned(struct xdp_md *ctx)
{
	struct returned_counts *c;
	void *data, *data_end;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&returned, &zero);
	if (!c)
		return XDP_DROP;
	hook_frame(ctx, HOOK_XDP, &data, &data_end);
	count_returned(c, data, data_end);
	return XDP_DROP;
}

/*
 * What comes back is counted, cut back to the generated frames' length (a
 * pushed label stack is taken off the front) and overwritten with the next
 * frame, so the pages circulate between the two ends of the pair as a live
 * frame run's would, with no system call per frame.
 */
SEC("xdp")
int xdp_recirculate(struct xdp_md *ctx)
{
	struct returned_counts *c;
	struct gen_config *cfg;
	void *data, *data_end;
	struct ethhdr *eth;
	int excess, action;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&returned, &zero);
	cfg = bpf_map_lookup_elem(&gen_config, &zero);
	if (!c || !cfg)
		return XDP_DROP;
	hook_frame(ctx, HOOK_XDP, &data, &data_end);
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(GEN_SEED_ETHERTYPE))
		count_returned(c, data, data_end);
	if (!cfg->recirculate)
		return XDP_DROP;
	/* A scalar length: the verifier refuses 32-bit arithmetic on packet pointers. */
	excess = (int)bpf_xdp_get_buff_len(ctx) - (int)cfg->len;
	if (excess && bpf_xdp_adjust_head(ctx, excess))
		return XDP_DROP;
	action = gen_write_next(ctx, cfg);
	if (action == XDP_TX)
		c->resent++;
	return action;
}

/* The last tagged skb tc_observe saw; protocol and vlan_proto in network order. */
struct observed_skb {
	__u32 seen;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 protocol;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct observed_skb);
} observed SEC(".maps");

SEC("tc")
int tc_observe(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct observed_skb *o = bpf_map_lookup_elem(&observed, &key);

	if (o && skb->vlan_present) {
		o->seen += 1;
		o->vlan_tci = skb->vlan_tci;
		o->vlan_proto = skb->vlan_proto;
		o->protocol = skb->protocol;
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
