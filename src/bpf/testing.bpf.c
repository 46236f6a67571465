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
#include "hook.h"
#include "packet.h"
#include "reflect.h"

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	struct packet pkt = {};
	void *data, *data_end;

	hook_frame(ctx, HOOK_XDP, &data, &data_end);
	if (parse_packet(data, data_end, data_end - data, &pkt) != PACKET_IP || reflect_macs(data, data_end))
		return XDP_PASS;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
