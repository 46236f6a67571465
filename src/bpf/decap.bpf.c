// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The decapsulator's entry point: one worker (include/decap_worker.h). XDP
 * only: it receives labelled traffic and hands it to the host's stack.
 */
#include "decap_abi.h"
#include "decap_worker.h"

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	return decap(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
