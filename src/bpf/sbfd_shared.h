/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between the S-BFD transmitter (sbfd.bpf.c) and the engine
 * (src/bgp/sbfd/xdp_tx.rs): the one source of truth for its values and
 * sizes. Constants are enums so that they reach Rust through the
 * skeleton's BTF-generated `types` module.
 */
#ifndef LNETD_SBFD_SHARED_H
#define LNETD_SBFD_SHARED_H

#include "kernel_types.h"

enum sbfd_tx_limits {
	/*
	 * Longest probe frame: Ethernet (14) + 16 label entries (64) + IPv6
	 * (40) + UDP (8) + a BFD control packet with the largest
	 * authentication section (52) = 178, rounded up so that a template
	 * is 8-byte aligned (the array's element stride).
	 */
	SBFD_TX_FRAME_MAX = 180,
	/* Default number of templates (segment lists) and due slots. */
	SBFD_TX_DEFAULT_SLOTS = 4096,
	/*
	 * Answer records, found by our discriminator modulo this power of two:
	 * the engine gives its lists discriminators whose records differ.
	 */
	SBFD_ANSWER_SLOTS = 16384,
	/*
	 * The answered bitmap: one bit per answer record, set by the filter
	 * with each answer it counts and taken (swapped to 0) by the engine,
	 * which then reads only the records that moved instead of all of them
	 * every tick. In 64-bit words: an array's elements are 8 bytes apart
	 * whatever their size, and both sides update a word whole.
	 */
	SBFD_ANSWERED_WORDS = SBFD_ANSWER_SLOTS / 64,
};

/* One probe's frame as it leaves, from the destination MAC on. */
struct sbfd_template {
	__u32 len;
	__u8 bytes[SBFD_TX_FRAME_MAX];
};

/*
 * One BPF_PROG_TEST_RUN call's work: runs `count` times, each run takes the
 * template named by sbfd_due[cursor] and advances `cursor`. The engine sets
 * both before the call and reads `cursor` after it (how many ran), and
 * `errors` counts runs that found no valid template. `invalid` counts the
 * datagrams the answer filter found to be no answer of a running list.
 */
struct sbfd_control {
	__u32 cursor;
	__u32 count;
	__u32 errors;
	__u32 invalid;
};

/*
 * A list's answers, counted by the socket filter on the answer socket
 * (the engine reads the counts each tick instead of receiving): written
 * by the engine (`local`, `reflector`: which answers count), the counts by
 * the filter. `local` 0: a free record.
 */
struct sbfd_answer {
	__u32 local;
	__u32 reflector;
	/* Valid answers (BFD version 1, no authentication, the discriminators). */
	__u32 answers;
	/* Of which announcing state Up. */
	__u32 up;
};

_Static_assert(sizeof(struct sbfd_template) == 184, "sbfd_template is 184 bytes: 8-byte stride");
_Static_assert(sizeof(struct sbfd_control) == 16, "sbfd_control is 16 bytes");
_Static_assert(sizeof(struct sbfd_answer) == 16, "sbfd_answer is 16 bytes");
_Static_assert((SBFD_ANSWER_SLOTS & (SBFD_ANSWER_SLOTS - 1)) == 0, "a power of two");
_Static_assert(SBFD_ANSWER_SLOTS % 64 == 0, "every record has its bit in the answered bitmap");

#endif /* LNETD_SBFD_SHARED_H */
