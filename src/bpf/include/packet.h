/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The first stage of every program: turn a frame into a `struct packet`, the
 * facts the later stages decide on. Hook-agnostic: it sees data/data_end only,
 * and reports what it found (enum packet_parse); each program maps that onto
 * its own counters.
 */
#ifndef LNETD_PACKET_H
#define LNETD_PACKET_H

#include "parsing.h"

enum packet_parse {
	PACKET_IP = 0,    /* IPv4 or IPv6, headers valid: `struct packet` filled */
	PACKET_NOT_IP,    /* a valid frame of another ethertype (ARP, LLDP, MPLS...) */
	PACKET_MALFORMED, /* truncated or invalid L2/L3 header */
};

struct packet {
	__u32 l2_len;    /* bytes before the IP header: 14 + 4 per VLAN tag */
	__u32 ip_len;    /* the IP packet's length (IPv4 total length, IPv6 40 + payload) */
	__u16 l3_proto;  /* ETH_P_IP or ETH_P_IPV6, host order */
	__u8 ttl;        /* IPv4 TTL or IPv6 hop limit */
	__u8 l2_multicast; /* destination MAC has the group bit (broadcast included) */
	__u8 dst[16];    /* destination address, network order; IPv4 fills dst[0..3] */
	__u8 src[16];    /* source address, likewise */
	__u8 l4_proto;   /* IPv4 protocol / IPv6 next header */
	__u8 has_ports;  /* ports read: TCP/UDP/SCTP, not a fragment */
	__u8 dscp;       /* the DSCP (the IP header's traffic class >> 2) */
	__u8 pad;
	__be32 ports;    /* source and destination port, as on the wire */
};

static __always_inline int l4_has_ports(__u8 proto)
{
	return proto == 6 || proto == 17 || proto == 132; /* TCP, UDP, SCTP */
}

/* The first 4 bytes of the L4 header, if they lie inside the IP packet (`end`). */
static __always_inline void read_ports(struct packet *pkt, void *l4, void *end, void *data_end)
{
	if (!l4_has_ports(pkt->l4_proto) || l4 + 4 > end || l4 + 4 > data_end)
		return;
	pkt->ports = *(__be32 *)l4;
	pkt->has_ports = 1;
}

/*
 * `frame_len` is the whole frame's length, which for an skb may exceed
 * data_end - data (the tail in pages): completeness is judged on it, every
 * read on data_end.
 */
static __always_inline enum packet_parse parse_packet(void *data, void *data_end, __u64 frame_len,
						      struct packet *pkt)
{
	struct hdr_cursor c = { .pos = data };
	struct ethhdr *eth;
	__u32 vlan_tags;
	int proto;

	proto = parse_ethernet(&c, data_end, &eth, &vlan_tags);
	if (proto == PARSE_INVALID)
		return PACKET_MALFORMED;
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return PACKET_NOT_IP;

	pkt->l2_len = sizeof(struct ethhdr) + vlan_tags * sizeof(struct vlan_hdr);
	if (frame_len < pkt->l2_len)
		return PACKET_MALFORMED;
	pkt->l3_proto = proto;
	pkt->l2_multicast = eth->h_dest[0] & 1;

	if (proto == ETH_P_IP) {
		struct iphdr *iph;

		if (parse_ipv4(&c, data_end, frame_len - pkt->l2_len, &iph) == PARSE_INVALID)
			return PACKET_MALFORMED;
		/* Trailing bytes (Ethernet padding, a trailer) are not part of the packet. */
		pkt->ip_len = bpf_ntohs(iph->tot_len);
		pkt->dscp = iph->tos >> 2;
		pkt->ttl = iph->ttl;
		__builtin_memcpy(pkt->dst, &iph->daddr, 4);
		__builtin_memcpy(pkt->src, &iph->saddr, 4);
		pkt->l4_proto = iph->protocol;
		/*
		 * Fragments hash on addresses and protocol only: later fragments carry
		 * no ports, and all fragments of a datagram must take the same path.
		 */
		if (!(bpf_ntohs(iph->frag_off) & 0x3fff)) /* neither MF nor an offset */
			read_ports(pkt, c.pos, (void *)iph + bpf_ntohs(iph->tot_len), data_end);
	} else {
		struct ipv6hdr *ip6h;

		if (parse_ipv6(&c, data_end, frame_len - pkt->l2_len, &ip6h) == PARSE_INVALID)
			return PACKET_MALFORMED;
		pkt->ip_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		/* The traffic class straddles the first two bytes. */
		pkt->dscp = ((ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4)) >> 2;
		pkt->ttl = ip6h->hop_limit;
		__builtin_memcpy(pkt->dst, &ip6h->daddr, 16);
		__builtin_memcpy(pkt->src, &ip6h->saddr, 16);
		pkt->l4_proto = ip6h->nexthdr;
		/* Extension headers are not walked: such packets hash on addresses and protocol. */
		read_ports(pkt, c.pos, c.pos + bpf_ntohs(ip6h->payload_len), data_end);
	}
	return PACKET_IP;
}

/* Broadcast or multicast by MAC, IPv4 224/4 or 255.255.255.255, IPv6 ff00::/8. */
static __always_inline int packet_is_multicast(const struct packet *pkt)
{
	if (pkt->l2_multicast)
		return 1;
	if (pkt->l3_proto == ETH_P_IP)
		return (pkt->dst[0] & 0xf0) == 0xe0 ||
		       (pkt->dst[0] == 0xff && pkt->dst[1] == 0xff && pkt->dst[2] == 0xff &&
			pkt->dst[3] == 0xff);
	return pkt->dst[0] == 0xff;
}

/*
 * Link-local, IPv4 169.254.0.0/16 and IPv6 fe80::/10: no router forwards
 * them (RFC 3927, RFC 4291), so a label could only carry them off the link
 * (a neighbour's NUD probe, a BGP session to the router's link-local
 * address, a cloud's metadata service).
 */
static __always_inline int packet_is_link_local(const struct packet *pkt)
{
	if (pkt->l3_proto == ETH_P_IP)
		return pkt->dst[0] == 169 && pkt->dst[1] == 254;
	return pkt->dst[0] == 0xfe && (pkt->dst[1] & 0xc0) == 0x80;
}

#endif /* LNETD_PACKET_H */
