/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The encapsulator's counters: one per way out (enum encap_counter, the ABI),
 * what each route and policy list labelled, and the counted exit.
 */
#ifndef LNETD_ENCAP_COUNTERS_H
#define LNETD_ENCAP_COUNTERS_H

#include "../encap_shared.h"
#include "encap_config.h"
#include "verdict.h"

/* Indexed by enum encap_counter; per-CPU so the hot path needs no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENCAP_CNT__MAX);
	__type(key, __u32);
	__type(value, struct counter_value);
} counters SEC(".maps");

/* What each route and each policy list labelled, per CPU; slots chosen by Rust. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENCAP_DEFAULT_COUNTED_ROUTES);
	__type(key, __u32);
	__type(value, struct counter_value);
} route_counters SEC(".maps");

static __always_inline enum verdict encap_verdict(enum encap_counter c)
{
	switch (c) {
	case ENCAP_CNT_TX:
		return VERDICT_TX;
	case ENCAP_CNT_MTU_DROP:
	case ENCAP_CNT_NO_LIVE_PATH_DROP:
		return VERDICT_DROP;
	case ENCAP_CNT_ABORTED:
		return VERDICT_ABORTED;
	default:
		return VERDICT_PASS;
	}
}

/* `bytes` is the frame length on arrival, so the counters sum to what was seen. */
static __always_inline int encap_count_and_act(const enum hook hook, enum encap_counter c, __u64 bytes)
{
	if (!(skip_stages & ENCAP_SKIP_COUNTERS))
		counter_add(&counters, c, bytes);
	return verdict_action(hook, encap_verdict(c));
}

/* Slot 0 is "not counted": most routes are, and the lookup is skipped for them. */
static __always_inline void encap_count_labelled(__u32 id, __u64 bytes)
{
	if (id && !(skip_stages & ENCAP_SKIP_COUNTERS))
		counter_add(&route_counters, id, bytes);
}

#endif /* LNETD_ENCAP_COUNTERS_H */
