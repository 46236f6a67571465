/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decapsulator's worker: pop the labels addressed to this host and hand
 * the packet to its stack.
 *
 * Pipeline: parse L2 (Ethernet + up to 2 VLAN tags) -> MPLS? -> walk the
 * stack against the pop set -> policy for other labels -> pop (move L2,
 * restore the ethertype from the IP version) -> pass. Each stage reports in
 * its own terms; this worker maps that onto a decap counter and jumps to the
 * one exit, which counts exactly that counter and turns it into XDP's
 * return code.
 *
 * Partial pops: when the top entries are in the set but a label that is not
 * follows (S=1 not reached), the entries in the set are popped and the rest
 * kept under ethertype 0x8847 (for an MPLS-aware stack), unless other labels
 * are dropped: then the frame is dropped untouched, as any frame carrying a
 * label the host was not told to pop.
 *
 * The IP header is never touched: no TTL is copied from the label (the
 * explicit nulls' usual short-pipe behaviour), no checksum changes.
 */
#ifndef LNETD_DECAP_WORKER_H
#define LNETD_DECAP_WORKER_H

#include "decap_config.h"
#include "decap_maps.h"
#include "hook_xdp.h"
#include "parsing.h"
#include "pop.h"

static __always_inline int decap(struct xdp_md *ctx)
{
	__u64 bytes = xdp_frame_len(ctx);
	struct pop_result res = {};
	enum decap_counter verdict;
	struct hdr_cursor c;
	struct ethhdr *eth;
	void *data, *data_end;
	__u32 vlan_tags;
	__u16 ethertype = ETH_P_MPLS_UC;
	int proto;

	xdp_frame_bounds(ctx, &data, &data_end);
	c.pos = data;
	proto = parse_ethernet(&c, data_end, &eth, &vlan_tags);
	if (proto == PARSE_INVALID) {
		verdict = DECAP_CNT_MALFORMED;
		goto out;
	}
	if (proto != ETH_P_MPLS_UC) {
		verdict = DECAP_CNT_NOT_MPLS;
		goto out;
	}
	switch (pop_walk(&c, data_end, &pop_labels, &res)) {
	case POP_WHOLE:
		ethertype = res.restored;
		verdict = DECAP_CNT_POPPED;
		break;
	case POP_PARTIAL:
		if (other_labels == DECAP_OTHER_DROP) {
			verdict = DECAP_CNT_OTHER_DROPPED;
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
	return decap_count_and_act(verdict, bytes);
}

#endif /* LNETD_DECAP_WORKER_H */
