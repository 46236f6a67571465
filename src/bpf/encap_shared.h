/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between the dataplane and the Rust library: the one source of truth.
 *
 * Everything here reaches Rust through the skeleton's BTF-generated `types`
 * module (constants are enums so that they are in BTF; a #define would not be).
 * Rust never restates a size, an index or a layout by hand.
 */
#ifndef LNETD_ENCAP_SHARED_H
#define LNETD_ENCAP_SHARED_H

#include "kernel_types.h"

enum encap_limits {
	/* Deepest label stack one route may push. */
	ENCAP_MAX_LABELS = 16,
	/* Default capacity of the IPv4 and IPv6 route tables (a full Internet
	 * table is about 1M IPv4 prefixes); Rust may raise or lower it before load. */
	ENCAP_DEFAULT_MAX_ROUTES_V4 = 1 << 21,
	ENCAP_DEFAULT_MAX_ROUTES_V6 = 1 << 19,
};

/* route_value.flags */
enum encap_route_flags {
	/*
	 * A host route for one of the host's own addresses: never label. Kept in
	 * the same trie as the routes so one lookup per packet answers both
	 * questions (a separate hash lookup cost as much as the LPM lookup).
	 */
	ENCAP_ROUTE_LOCAL = 1,
};

/*
 * One counter per way out of the program. Exactly one is incremented per packet,
 * by the bytes of the frame as it arrived, so the counters add up to the traffic
 * seen.
 */
enum encap_counter {
	ENCAP_CNT_TX = 0,           /* labelled and sent back out (XDP_TX) */
	ENCAP_CNT_PASS_NOT_IP,      /* ethertype is not IPv4/IPv6 (ARP, LLDP, MPLS...) */
	ENCAP_CNT_PASS_MALFORMED,   /* truncated or invalid L2/L3 header */
	ENCAP_CNT_PASS_MULTICAST,   /* broadcast or multicast, by MAC or IP */
	ENCAP_CNT_PASS_LOCAL,       /* addressed to one of the host's own addresses */
	ENCAP_CNT_PASS_NO_ROUTE,    /* no route covers the destination */
	ENCAP_CNT_MTU_DROP,         /* would exceed the MTU once labelled; dropped */
	ENCAP_CNT_MTU_PASS,         /* would exceed the MTU once labelled; passed unlabelled */
	ENCAP_CNT_PASS_NO_HEADROOM, /* the driver gave no room to push; passed unlabelled */
	ENCAP_CNT_ABORTED,          /* internal inconsistency; XDP_ABORTED (traced by the kernel) */
	ENCAP_CNT__MAX,
};

/* How the TTL of every pushed entry is chosen (RFC 3443). */
enum encap_ttl_mode {
	ENCAP_TTL_COPY = 0,  /* uniform: the IP TTL / hop limit, unchanged */
	ENCAP_TTL_FIXED = 1, /* pipe: the configured `fixed_ttl` */
};

/* What happens to a packet that would exceed the MTU once labelled. */
enum encap_mtu_policy {
	ENCAP_MTU_DROP = 0, /* drop it (counted) */
	ENCAP_MTU_PASS = 1, /* hand it to the host's stack unlabelled (counted) */
};

/* Key of the IPv4 LPM trie: prefix length in host order, address in network order. */
struct route_key_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

/* Key of the IPv6 LPM trie. */
struct route_key_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * A route's label stack, ready to copy onto the wire: `entries[0]` is the top
 * of the stack; each entry is in network byte order with label, TC and S already
 * encoded by Rust (S only on entries[depth-1]) and the TTL byte zero, because the
 * TTL depends on the packet and is ORed in on the fast path.
 */
struct route_value {
	__u16 depth; /* 1..=ENCAP_MAX_LABELS; 0 for ENCAP_ROUTE_LOCAL entries */
	__u16 flags; /* enum encap_route_flags */
	__be32 entries[ENCAP_MAX_LABELS];
};

/* Per-CPU counter value. */
struct counter_value {
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct route_key_v4) == 8, "route_key_v4 layout");
_Static_assert(sizeof(struct route_key_v6) == 20, "route_key_v6 layout");
_Static_assert(sizeof(struct route_value) == 4 + 4 * ENCAP_MAX_LABELS, "route_value layout");
_Static_assert(sizeof(struct counter_value) == 16, "counter_value layout");

#endif /* LNETD_ENCAP_SHARED_H */
