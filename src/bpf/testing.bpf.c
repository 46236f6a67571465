// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Helper programs for labs and benchmarks, not for production paths.
 *
 * xdp_pass: attached to the peer of a veth that receives XDP_TX frames; a veth
 * only delivers XDP_TX/redirected frames when its peer runs an XDP program.
 *
 * xdp_floor: the encapsulator's fixed costs without its work (same parser, MAC
 * swap, XDP_TX; no lookup, no push): the baseline the benchmarks divide by.
 */
#include "packet.h"

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	struct packet pkt = {};
	struct ethhdr *eth = (void *)(long)ctx->data;
	__u8 tmp[ETH_ALEN];

	if (parse_packet(ctx, &pkt) != CONTINUE)
		return XDP_PASS;
	/* parse_packet() proved the Ethernet header is there; the verifier needs it again. */
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
