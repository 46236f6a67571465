/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The flow hash that picks a policy's segment list and the entropy label.
 *
 * MurmurHash3 (x86, 32-bit, seed 0) over 32-bit words, each word the
 * big-endian value of 4 bytes of the packet: IPv4 [src, dst, protocol, ports],
 * IPv6 [src (4 words), dst (4 words), next header, ports]; ports is
 * (source port << 16 | destination port) for TCP, UDP and SCTP when present and
 * the packet is not a fragment, else 0 (all fragments of a datagram hash alike,
 * so they take one path). The IPv6 flow label is left out: Linux
 * changes it when it re-routes a flow after a timeout, and a flow must keep its
 * path. No per-boot or per-CPU seed and no skb->hash, so a flow takes the same
 * list on every CPU, across restarts and on every host.
 */
#ifndef LNETD_FLOW_HASH_H
#define LNETD_FLOW_HASH_H

#include "packet.h"

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 murmur_round(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 murmur_finish(__u32 h, __u32 words)
{
	h ^= words * 4;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 word_at(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

/*
 * A subprogram, not inlined: inlined, its unrolled IPv6 rounds made the
 * pipeline spill past the 512-byte stack. Called only for policy and
 * entropy-label routes.
 */
static __noinline __u32 flow_hash(const struct packet *pkt)
{
	__u32 ports = pkt->has_ports ? bpf_ntohl(pkt->ports) : 0;
	__u32 h = 0, n;

	if (pkt->l3_proto == ETH_P_IP) {
		h = murmur_round(h, word_at(pkt->src));
		h = murmur_round(h, word_at(pkt->dst));
		n = 4;
	} else {
#pragma unroll
		for (int i = 0; i < 16; i += 4)
			h = murmur_round(h, word_at(pkt->src + i));
#pragma unroll
		for (int i = 0; i < 16; i += 4)
			h = murmur_round(h, word_at(pkt->dst + i));
		n = 10;
	}
	h = murmur_round(h, pkt->l4_proto);
	h = murmur_round(h, ports);
	return murmur_finish(h, n);
}

/* The entropy label for a flow: other bits of the hash, mapped into 16..=2^20-1. */
static __always_inline __u32 entropy_label(__u32 hash)
{
	return 16 + rotl32(hash, 16) % ((1 << 20) - 16);
}

#endif /* LNETD_FLOW_HASH_H */
