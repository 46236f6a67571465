// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The decapsulator's entry points: one worker (include/decap_worker.h), one
 * constant hook flag each. XDP or TC ingress: it receives labelled traffic
 * and hands it to the host's stack.
 */
#include "decap_abi.h"
#include "decap_worker.h"

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	return decap(ctx, HOOK_XDP);
}

SEC("tc")
int tc_decap(struct __sk_buff *skb)
{
	return decap(skb, HOOK_SKB);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
