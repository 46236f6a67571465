/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Cursor-based header parsers. Every parser takes the cursor and data_end,
 * bounds-checks right next to the access, advances the cursor past the header
 * and returns the next protocol in HOST byte order, or PARSE_INVALID when the
 * header is truncated or not valid.
 */
#ifndef LNETD_PARSING_H
#define LNETD_PARSING_H

#include "kernel_types.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define PARSE_INVALID (-1)

/* 802.1Q and 802.1ad (QinQ): the outer S-tag plus the inner C-tag. */
#define MAX_VLAN_TAGS 2

struct hdr_cursor {
	void *pos;
};

static __always_inline int proto_is_vlan(int proto)
{
	return proto == ETH_P_8021Q || proto == ETH_P_8021AD;
}

/*
 * Ethernet plus up to MAX_VLAN_TAGS VLAN tags. Returns the innermost
 * ethertype; *eth points at the Ethernet header, *vlan_tags counts the tags.
 * A third tag is left in place and its TPID returned, which no caller treats
 * as IP.
 */
static __always_inline int parse_ethernet(struct hdr_cursor *c, void *data_end,
					  struct ethhdr **eth, __u32 *vlan_tags)
{
	struct ethhdr *e = c->pos;
	int proto;

	if ((void *)(e + 1) > data_end)
		return PARSE_INVALID;
	c->pos = e + 1;
	*eth = e;
	*vlan_tags = 0;
	proto = bpf_ntohs(e->h_proto);

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vh = c->pos;

		if (!proto_is_vlan(proto))
			break;
		if ((void *)(vh + 1) > data_end)
			return PARSE_INVALID;
		proto = bpf_ntohs(vh->h_vlan_encapsulated_proto);
		c->pos = vh + 1;
		*vlan_tags += 1;
	}
	return proto;
}

/*
 * IPv4, options included. Valid means: version 4, 20 <= ihl*4 <= tot_len, and
 * the whole datagram (tot_len bytes) present in the frame: `avail` is the
 * frame's length from this header on, which for an skb counts bytes beyond
 * data_end (the tail may sit in pages the program does not read). Bytes past
 * tot_len are Ethernet padding. Returns the L4 protocol.
 */
static __always_inline int parse_ipv4(struct hdr_cursor *c, void *data_end, __u32 avail, struct iphdr **out)
{
	struct iphdr *iph = c->pos;
	__u32 hdr_len, tot_len;

	if ((void *)(iph + 1) > data_end)
		return PARSE_INVALID;
	if (iph->version != 4)
		return PARSE_INVALID;
	hdr_len = iph->ihl * 4;
	tot_len = bpf_ntohs(iph->tot_len);
	if (hdr_len < sizeof(*iph) || tot_len < hdr_len)
		return PARSE_INVALID;
	if (tot_len > avail || c->pos + hdr_len > data_end)
		return PARSE_INVALID;
	c->pos += hdr_len;
	*out = iph;
	return iph->protocol;
}

/*
 * IPv6 fixed header. Valid means: version 6 and the 40 + payload_len bytes
 * present in the frame (`avail`, as for IPv4). Extension headers are not
 * walked: the destination is all we route on. Returns the next header.
 */
static __always_inline int parse_ipv6(struct hdr_cursor *c, void *data_end, __u32 avail, struct ipv6hdr **out)
{
	struct ipv6hdr *ip6h = c->pos;

	if ((void *)(ip6h + 1) > data_end)
		return PARSE_INVALID;
	if (ip6h->version != 6)
		return PARSE_INVALID;
	if (sizeof(*ip6h) + (__u32)bpf_ntohs(ip6h->payload_len) > avail)
		return PARSE_INVALID;
	c->pos = ip6h + 1;
	*out = ip6h;
	return ip6h->nexthdr;
}

/* Bottom-of-stack bit of a label stack entry in host order (RFC 3032). */
#define MPLS_LSE_BOTTOM 0x100
#define MPLS_LSE_LABEL_SHIFT 12

/*
 * One MPLS label stack entry. Unlike the other parsers it returns 0 (or
 * PARSE_INVALID when truncated) and hands the entry out in HOST byte order
 * through *lse: a 32-bit entry does not fit beside a negative sentinel.
 */
static __always_inline int parse_mpls_entry(struct hdr_cursor *c, void *data_end, __u32 *lse)
{
	__be32 *e = c->pos;

	if ((void *)(e + 1) > data_end)
		return PARSE_INVALID;
	*lse = bpf_ntohl(*e);
	c->pos = e + 1;
	return 0;
}

#endif /* LNETD_PARSING_H */
