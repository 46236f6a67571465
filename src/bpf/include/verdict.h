/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Verdicts and the counted exit. A program's counter index says what happened
 * to a packet; each program maps it onto one of these verdicts, which becomes
 * the hook's return code here. Counting goes through counter_add() on the
 * program's own per-CPU map, once, at the program's single `out:` exit.
 */
#ifndef LNETD_VERDICT_H
#define LNETD_VERDICT_H

#include "../encap_shared.h"
#include "hook.h"

enum verdict {
	VERDICT_PASS,    /* on to the host's stack, unchanged */
	VERDICT_TX,      /* XDP: back out the interface it came in on; TC: on, as rewritten */
	VERDICT_DROP,
	VERDICT_ABORTED, /* an internal inconsistency: XDP_ABORTED is traced by the kernel */
};

static __always_inline int verdict_action(const enum hook hook, enum verdict v)
{
	if (hook == HOOK_XDP) {
		switch (v) {
		case VERDICT_TX:
			return XDP_TX;
		case VERDICT_DROP:
			return XDP_DROP;
		case VERDICT_ABORTED:
			return XDP_ABORTED;
		default:
			return XDP_PASS;
		}
	}
	/*
	 * TC has no "aborted": a broken packet is dropped like any other. On,
	 * it is TC_ACT_UNSPEC (tcx's TCX_NEXT), not TC_ACT_OK (TCX_PASS, which
	 * would skip every program after this one, a firewall's included).
	 */
	return v == VERDICT_DROP || v == VERDICT_ABORTED ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

/* Per-CPU counter slots (struct counter_value): plain increments are race-free. */
static __always_inline void counter_add(void *map, __u32 key, __u64 bytes)
{
	struct counter_value *c = bpf_map_lookup_elem(map, &key);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

#endif /* LNETD_VERDICT_H */
