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

/*
 * On a frame or on a saved copy of its header (data..data_end either way).
 * Returns 0, or -1 if there is less than an Ethernet header.
 */
static __always_inline int reflect_macs(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return 0;
}

#endif /* LNETD_REFLECT_H */
