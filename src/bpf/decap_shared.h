/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between the decapsulator (decap.bpf.c) and the Rust library: the one
 * source of truth for its keys, values, counter indices and knobs.
 *
 * As in encap_shared.h, constants are enums so that they reach Rust through
 * the skeleton's BTF-generated `types` module (a #define would not); Rust
 * never restates a size, an index or a layout by hand. The per-CPU counter
 * value is the encapsulator's `struct counter_value` (one layout for every
 * counter of the crate).
 */
#ifndef LNETD_DECAP_SHARED_H
#define LNETD_DECAP_SHARED_H

#include "encap_shared.h"
#include "kernel_types.h"

enum decap_limits {
	/*
	 * Deepest stack the program walks: at most this many entries are popped,
	 * and a stack whose first DECAP_MAX_DEPTH entries are all in the pop set
	 * without one carrying S=1 is malformed. Same depth the encapsulator pushes.
	 */
	DECAP_MAX_DEPTH = 16,
	/* Default capacity of the pop set (labels the host pops). */
	DECAP_DEFAULT_MAX_POP_LABELS = 1024,
};

/*
 * One counter per way out of the program. Exactly one is incremented per
 * packet, by the bytes of the frame as it arrived (labels included), so the
 * counters add up to the traffic seen.
 */
enum decap_counter {
	DECAP_CNT_POPPED = 0,      /* whole stack popped, IP ethertype restored, passed */
	DECAP_CNT_POPPED_PARTIAL,  /* top entries popped, a label not in the set remains
				    * (ethertype stays MPLS), passed (other labels: pass) */
	DECAP_CNT_NOT_MPLS,        /* ethertype (after VLAN tags) is not 0x8847: passed untouched */
	DECAP_CNT_OTHER_PASSED,    /* top label not in the pop set: passed untouched */
	DECAP_CNT_OTHER_DROPPED,   /* a label not in the pop set, other labels: drop: dropped */
	DECAP_CNT_MALFORMED,       /* truncated L2 or stack, no S within DECAP_MAX_DEPTH entries,
				    * or not IPv4/IPv6 under the stack: passed untouched */
	DECAP_CNT_ABORTED,         /* internal inconsistency; XDP_ABORTED (traced by the kernel) */
	DECAP_CNT__MAX,
};

/* What happens to a frame carrying a label that is not in the pop set. */
enum decap_other_labels {
	DECAP_OTHER_PASS = 0, /* hand it to the host's stack (untouched if it is the top label) */
	DECAP_OTHER_DROP = 1, /* drop it (counted) */
};

/* Key of the pop set: the label value (20 bits), host byte order. */
struct pop_label_key {
	__u32 label;
};

/* Value of the pop set: nothing yet (presence is the answer); zero. */
struct pop_label_value {
	__u32 reserved;
};

_Static_assert(sizeof(struct pop_label_key) == 4, "pop_label_key layout");
_Static_assert(sizeof(struct pop_label_value) == 4, "pop_label_value layout");

#endif /* LNETD_DECAP_SHARED_H */
