/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decapsulator's maps: the labels it pops and its counters (one per way
 * out, enum decap_counter), with its counted exit.
 */
#ifndef LNETD_DECAP_MAPS_H
#define LNETD_DECAP_MAPS_H

#include "../decap_shared.h"
#include "verdict.h"

/* The pop set: label -> nothing. Written by Rust at any time; resizable before load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DECAP_DEFAULT_MAX_POP_LABELS);
	__type(key, struct pop_label_key);
	__type(value, struct pop_label_value);
} pop_labels SEC(".maps");

/* Indexed by enum decap_counter; per-CPU so the hot path needs no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_CNT__MAX);
	__type(key, __u32);
	__type(value, struct counter_value);
} decap_counters SEC(".maps");

static __always_inline enum verdict decap_verdict(enum decap_counter c)
{
	switch (c) {
	case DECAP_CNT_OTHER_DROPPED:
		return VERDICT_DROP;
	case DECAP_CNT_ABORTED:
		return VERDICT_ABORTED;
	default:
		return VERDICT_PASS;
	}
}

/* `bytes` is the frame length on arrival, so the counters sum to what was seen. */
static __always_inline int decap_count_and_act(const enum hook hook, enum decap_counter c, __u64 bytes)
{
	counter_add(&decap_counters, c, bytes);
	return verdict_action(hook, decap_verdict(c));
}

#endif /* LNETD_DECAP_MAPS_H */
