/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decapsulator's worker: pop the labels addressed to this host and hand
 * the packet to its stack. One worker for both hooks (XDP, TC ingress); each
 * entry point passes a constant hook and keeps only its own branch.
 *
 * Pipeline: parse L2 (Ethernet + up to 2 VLAN tags) -> MPLS? -> walk the
 * stack against the pop set -> policy for other labels -> pop (move L2,
 * restore the ethertype from the IP version) -> pass. Each stage reports in
 * its own terms; this worker maps that onto a decap counter and jumps to the
 * one exit, which counts exactly that counter and turns it into the hook's
 * return code.
 *
 * On TC the pop works on the skb (include/pop_skb.h), so a GSO super-packet
 * is popped whole.
 *
 * Partial pops: when the top entries are in the set but a label that is not
 * follows (S=1 not reached), the entries in the set are popped and the rest
 * kept under ethertype 0x8847 (for an MPLS-aware stack), unless other labels
 * are dropped: then the frame is dropped untouched, as any frame carrying a
 * label the host was not told to pop. TC does not pop partially (its
 * removal needs an IP protocol): such a frame is an other-label frame there.
 *
 * The IP header is never touched: no TTL is copied from the label (the
 * explicit nulls' usual short-pipe behaviour), no checksum changes.
 */
#ifndef LNETD_DECAP_WORKER_H
#define LNETD_DECAP_WORKER_H

#include "decap_config.h"
#include "decap_maps.h"
#include "hook.h"
#include "parsing.h"
#include "pop.h"
#include "pop_skb.h"

/* Bytes the decapsulator reads: Ethernet, two tags, a full stack, the IP version byte. */
#define DECAP_HEADERS (14 + 2 * 4 + DECAP_MAX_DEPTH * 4 + 1)

enum decap_parse {
	DECAP_PARSE_WALKED,    /* the walk says what the stack holds */
	DECAP_PARSE_NOT_MPLS,  /* the ethertype after the VLAN tags is not 0x8847 */
	DECAP_PARSE_TRUNCATED, /* the L2 header is cut short */
};

/* L2, then the walk over the stack, on the bytes the program can read directly. */
static __always_inline enum decap_parse decap_parse(void *ctx, const enum hook hook, __u32 *vlan_tags,
						    struct pop_result *res, enum pop_walk *walk)
{
	struct hdr_cursor c;
	struct ethhdr *eth;
	void *data, *data_end;
	int proto;

	hook_frame(ctx, hook, &data, &data_end);
	c.pos = data;
	proto = parse_ethernet(&c, data_end, &eth, vlan_tags);
	if (proto == PARSE_INVALID)
		return DECAP_PARSE_TRUNCATED;
	if (proto != ETH_P_MPLS_UC)
		return DECAP_PARSE_NOT_MPLS;
	*walk = pop_walk(&c, data_end, &pop_labels, res);
	return DECAP_PARSE_WALKED;
}

static __always_inline int decap(void *ctx, const enum hook hook)
{
	/* As the frame arrived, so that both hooks count the same bytes. */
	__u64 bytes = hook == HOOK_SKB ? skb_wire_len(ctx) : xdp_frame_len(ctx);
	enum pop_walk walk = POP_MALFORMED;
	struct pop_result res = {};
	enum decap_counter verdict;
	enum decap_parse parsed;
	int ran_off;
	__u32 vlan_tags = 0;
	__u16 ethertype = ETH_P_MPLS_UC;

	/* The kernel has read the ethertype already: an skb that is not MPLS is not touched. */
	if (hook == HOOK_SKB && !skb_may_be_mpls(ctx)) {
		verdict = DECAP_CNT_NOT_MPLS;
		goto out;
	}
	parsed = decap_parse(ctx, hook, &vlan_tags, &res, &walk);
	ran_off = parsed == DECAP_PARSE_TRUNCATED || (parsed == DECAP_PARSE_WALKED && walk == POP_MALFORMED);
	switch (hook == HOOK_SKB ? skb_pull_to_reparse(ctx, ran_off, DECAP_HEADERS) : 0) {
	case 1:
		parsed = decap_parse(ctx, hook, &vlan_tags, &res, &walk);
		break;
	case -1:
		verdict = DECAP_CNT_MALFORMED;
		goto out;
	}
	if (parsed == DECAP_PARSE_TRUNCATED) {
		verdict = DECAP_CNT_MALFORMED;
		goto out;
	}
	if (parsed == DECAP_PARSE_NOT_MPLS) {
		verdict = DECAP_CNT_NOT_MPLS;
		goto out;
	}
	switch (walk) {
	case POP_WHOLE:
		ethertype = res.restored;
		verdict = DECAP_CNT_POPPED;
		break;
	case POP_PARTIAL:
		if (other_labels == DECAP_OTHER_DROP) {
			verdict = DECAP_CNT_OTHER_DROPPED;
			goto out;
		}
		if (hook == HOOK_SKB) {
			verdict = DECAP_CNT_OTHER_PASSED;
			goto out;
		}
		verdict = DECAP_CNT_POPPED_PARTIAL;
		break;
	case POP_OTHER:
		verdict = other_labels == DECAP_OTHER_DROP ? DECAP_CNT_OTHER_DROPPED : DECAP_CNT_OTHER_PASSED;
		goto out;
	default:
		verdict = DECAP_CNT_MALFORMED;
		goto out;
	}
	if (hook == HOOK_SKB) {
		/*
		 * A VLAN tag still in the frame at TC is the inner one of two (the
		 * kernel took the outer): adjust_room would leave the protocol VLAN
		 * over an IP packet. Attach to the VLAN device instead.
		 */
		if (vlan_tags) {
			verdict = DECAP_CNT_MALFORMED;
			goto out;
		}
		/* A refused step may have left a tag of ours in the frame: drop it. */
		if (skb_pop_entries(ctx, res.entries, ethertype))
			verdict = DECAP_CNT_ABORTED;
		goto out;
	}
	switch (pop_entries(ctx, vlan_tags, res.entries, ethertype)) {
	case 0:
		break;
	case -1:
		/* The kernel refused the move; the frame is as it arrived. */
		verdict = DECAP_CNT_MALFORMED;
		break;
	default:
		verdict = DECAP_CNT_ABORTED;
	}
out:
	return decap_count_and_act(hook, verdict, bytes);
}

#endif /* LNETD_DECAP_WORKER_H */
