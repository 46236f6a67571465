/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Reflect stage: swap the Ethernet addresses so the frame goes back to the
 * router it came from ("router on a stick", XDP_TX). A stage of its own
 * because only a hook that sends the frame back out wants it: on TC egress
 * the kernel already wrote the next hop's MAC.
 */
#ifndef LNETD_REFLECT_H
#define LNETD_REFLECT_H

#include "kernel_types.h"

/* The destination and source MACs, in the 2-byte words the L2 moves use. */
#define MAC_WORDS (2 * ETH_ALEN / 2)

/*
 * On a frame or on a saved copy of its header (data..data_end either way).
 * Returns 0, or -1 if there is less than an Ethernet header.
 */
static __always_inline int reflect_macs(void *data, void *data_end)
{
	__u16 *w = data, t0, t1, t2;

	if (data + sizeof(struct ethhdr) > data_end)
		return -1;
	/* In 2-byte words: the byte copies cost three times the instructions. */
	t0 = w[0];
	t1 = w[1];
	t2 = w[2];
	w[0] = w[3];
	w[1] = w[4];
	w[2] = w[5];
	w[3] = t0;
	w[4] = t1;
	w[5] = t2;
	return 0;
}

#endif /* LNETD_REFLECT_H */
