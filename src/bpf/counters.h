/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The single exit of every program: count the verdict, return its action. */
#ifndef LNETD_COUNTERS_H
#define LNETD_COUNTERS_H

#include "maps.h"

static __always_inline int verdict_action(enum encap_counter verdict)
{
	switch (verdict) {
	case ENCAP_CNT_TX:
		return XDP_TX;
	case ENCAP_CNT_MTU_DROP:
		return XDP_DROP;
	case ENCAP_CNT_ABORTED:
		return XDP_ABORTED;
	default:
		return XDP_PASS;
	}
}

/* `bytes` is the frame length on arrival, so the counters sum to what was seen. */
static __always_inline int count_and_act(enum encap_counter verdict, __u64 bytes)
{
	__u32 key = verdict;
	struct counter_value *cnt = bpf_map_lookup_elem(&counters, &key);

	/* Per-CPU slot: plain increments are race-free (no preemption inside XDP). */
	if (cnt) {
		cnt->packets += 1;
		cnt->bytes += bytes;
	}
	return verdict_action(verdict);
}

#endif /* LNETD_COUNTERS_H */
