// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The encapsulator's entry points: one worker (include/encap_worker.h), one
 * constant hook flag each, so each program keeps only its hook's code.
 */
#include "encap_abi.h"
#include "encap_worker.h"

SEC("xdp")
int xdp_encap(struct xdp_md *ctx)
{
	return encap(ctx, HOOK_XDP);
}

SEC("tc")
int tc_encap(struct __sk_buff *skb)
{
	return encap(skb, HOOK_SKB);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
