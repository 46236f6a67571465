/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between the dataplane and the Rust library: the one source of truth.
 *
 * The values carry only what the program reads: user space keeps what it
 * configured (weights, entropy placement, prefixes) in its RIB, not here.
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
	/* Segment lists one SR policy may split traffic over. */
	ENCAP_MAX_SEGMENT_LISTS = 8,
	/*
	 * Slots of a policy's lookup table (flow hash % slots -> segment list),
	 * filled by Rust with weighted Maglev. Prime, and large enough that a
	 * weight share is met to 0.1%.
	 */
	ENCAP_POLICY_SLOTS = 1021,
	/* Default capacity of the policy table (policies are allocated on use). */
	ENCAP_DEFAULT_MAX_POLICIES = 1 << 16,
	/* Default size of the per-route counter array (index 0: not counted). */
	ENCAP_DEFAULT_COUNTED_ROUTES = 1 << 16,
	/*
	 * DIR-24-8 (the main IPv4 table, see struct dir_prefix): default number
	 * of 256-entry groups for prefixes longer than /24, and of distinct route
	 * values (routes with the same labels share one).
	 */
	ENCAP_DEFAULT_DIR_GROUPS = 1 << 13,
	ENCAP_DEFAULT_ROUTE_VALUES = 1 << 17,
	/*
	 * Default entries of the route cache (route_cache.h): IPv4 destinations
	 * it holds, ROUTE_CACHE_WAYS_V4 to a 64-byte bucket: 131,072 buckets, 8
	 * MiB. At 65,536 active destinations each in a different route (1M + 200k
	 * routes) it returned more than 262,144 entries (4 MiB; IPv6 misses more)
	 * and no less than 1,048,576 (16 MiB; more pages): docs/per-packet.md.
	 */
	ENCAP_DEFAULT_ROUTE_CACHE = 1 << 19,
};

/*
 * The route cache's control word (map `route_cache_ctl`, one entry; see
 * include/route_cache.h), rewritten by user space after every change to the
 * main tables: the generation cache entries answer under (its low 32 bits,
 * never 0: user space empties the cache when they would wrap to 0), and the
 * families (enum route_cache_family) whose lookups go through the cache at all.
 */
struct route_cache_ctl {
	__u64 generation;
	__u32 families;
	__u32 pad;
};

enum route_cache_family {
	ROUTE_CACHE_IPV4 = 1 << 0,
	ROUTE_CACHE_IPV6 = 1 << 1,
};

/*
 * The route cache (include/route_cache.h): buckets of one cache line, each
 * a seqlock, the generation and family its ways were filled under, and the
 * ways: destination -> route reference and counter slot. Compact: up to 4
 * destinations a line, so fewer of a packet's reads miss the core's caches.
 */
enum route_cache_geometry {
	ROUTE_CACHE_WAYS_V4 = 4,
	ROUTE_CACHE_WAYS_V6 = 2,
};

/*
 * A route reference (a way's `ref`; 0: an empty way). The low 2 bits say
 * what the rest is; ROUTE_REF_DSCP marks a route whose TC comes from the
 * DSCP (ENCAP_ROUTE_TC_FROM_DSCP).
 *  - ROUTE_REF_LABEL: a one-entry route inline: the bits above the low
 *    byte are its label stack entry (label, TC, S) in host order, TTL 0.
 *  - ROUTE_REF_POLICY: a policy route: ref >> ROUTE_REF_SHIFT is its policy id.
 *  - ROUTE_REF_VALUE: any other IPv4 route of DIR-24-8: ref >> ROUTE_REF_SHIFT
 *    is its index in dir4_values (never 0).
 *  - ROUTE_REF_LOCAL: a host address (never labelled).
 * IPv6 routes of other kinds (plain stacks of 2+ entries, or with an entropy
 * label) have no index: they are not cached.
 */
enum route_cache_ref {
	ROUTE_REF_VALUE = 0,
	ROUTE_REF_LABEL = 1,
	ROUTE_REF_POLICY = 2,
	ROUTE_REF_LOCAL = 3,
	ROUTE_REF_KIND = 3,
	ROUTE_REF_DSCP = 4,
	ROUTE_REF_SHIFT = 3,
};

struct route_cache_way_v4 {
	__u32 dst; /* network order */
	__u32 ref; /* enum route_cache_ref */
	__u32 counter_id;
};

struct route_cache_way_v6 {
	__u64 dst[2];
	__u32 ref;
	__u32 counter_id;
};

struct route_cache_bucket {
	__u32 seq;        /* odd while being written */
	__u32 generation; /* low 32 bits of route_cache_ctl.generation when filled; 0: empty */
	__u32 family;     /* ETH_P_IP or ETH_P_IPV6 */
	__u32 pad;
	union {
		struct route_cache_way_v4 v4[ROUTE_CACHE_WAYS_V4];
		struct route_cache_way_v6 v6[ROUTE_CACHE_WAYS_V6];
	};
};

/*
 * How the main IPv4 table is looked up (rodata `lookup_v4`).
 *
 * DIR-24-8: `dir4_tbl24` has one u32 entry per /24 (indexed by the top 24
 * bits of the destination); an entry with DIR_GROUP set points at a group of
 * 256 entries in `dir4_tbl8` (indexed by the last 8 bits) for /24s that hold
 * longer prefixes. Any other non-zero entry is a leaf: DIR_DEPTH_SHIFT holds
 * the covering prefix's length (user space's bookkeeping, ignored here) and
 * the low bits the prefix's slot in `dir4_prefixes` (slot 0: no route).
 *
 * In front, `dir4_tbl16` summarizes each /16: the leaf all its /24s share
 * when no prefix longer than /16 lies in it, else DIR_GROUP (read tbl24).
 * A table of short prefixes (a default route) is then answered from 256 KiB
 * that stay in cache, not from 64 MiB that miss it. Three array reads at
 * most, whatever the table size; user space derives every entry from its RIB.
 */
enum encap_lookup {
	ENCAP_LOOKUP_LPM = 0,   /* the kernel's LPM trie (memory follows the routes) */
	ENCAP_LOOKUP_DIR24 = 1, /* DIR-24-8 in array maps (64 MiB fixed, flat cost) */
};

enum encap_dir {
	DIR_GROUP = 1u << 31,
	DIR_DEPTH_SHIFT = 24,
	DIR_SLOT_MASK = (1u << 24) - 1,
	/* tbl24 entries per array element (array elements are 8-byte aligned:
	 * one u32 per element would double the memory). */
	DIR_BLOCK = 16,
	/* A tbl16 entry that says "read tbl24". */
	DIR_DESCEND = 1u << 31,
};

/* DIR_BLOCK consecutive tbl24 entries. */
struct dir_block {
	__u32 entry[DIR_BLOCK];
};

/* The 256 entries of one /24 that holds prefixes longer than /24. */
struct dir_group {
	__u32 entry[256];
};

/* route_value.flags */
enum encap_route_flags {
	/*
	 * A host route for one of the host's own addresses: never label. Kept in
	 * the same trie as the routes so one lookup per packet answers both
	 * questions (a separate hash lookup cost as much as the LPM lookup).
	 */
	ENCAP_ROUTE_LOCAL = 1,
	/* Traffic takes one of the segment lists of policies[policy_id], by flow hash. */
	ENCAP_ROUTE_POLICY = 2,
	/* The TC of every entry comes from the packet's DSCP through dscp_tc (entries carry TC 0). */
	ENCAP_ROUTE_TC_FROM_DSCP = 4,
};

/* DSCP -> MPLS traffic class, for ENCAP_ROUTE_TC_FROM_DSCP routes. */
struct dscp_map {
	__u8 tc[64];
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
	ENCAP_CNT_PASS_LOCAL,       /* to one of the host's own addresses, link-local, or (skb) an on-link next hop */
	ENCAP_CNT_PASS_NO_ROUTE,    /* no route covers the destination */
	ENCAP_CNT_MTU_DROP,         /* would exceed the MTU once labelled; dropped */
	ENCAP_CNT_MTU_PASS,         /* would exceed the MTU once labelled; passed unlabelled */
	ENCAP_CNT_PASS_NO_HEADROOM, /* the driver gave no room to push; passed unlabelled */
	ENCAP_CNT_ABORTED,          /* internal inconsistency; XDP_ABORTED (traced by the kernel) */
	ENCAP_CNT_NO_LIVE_PATH_DROP, /* its policy has no live path and says drop (ENCAP_POLICY_DROP) */
	ENCAP_CNT__MAX,
};

/*
 * Stages a benchmark variant leaves out (rodata `skip_stages`; 0 in every
 * program the library attaches, and the verifier prunes the tests away).
 * The cost of a stage is the full program's time minus the variant's.
 */
enum encap_skip {
	ENCAP_SKIP_LOOKUP = 1,   /* the route is dir4_values[1], read directly */
	ENCAP_SKIP_MTU = 2,      /* no MTU check */
	ENCAP_SKIP_PUSH = 4,     /* no grow, no push: the frame goes back with its MACs swapped */
	ENCAP_SKIP_COUNTERS = 8, /* no counter updated */
	ENCAP_SKIP_CACHE_HIT = 16, /* the route cache never answers (every packet a miss that fills it) */
	ENCAP_SKIP_MTU_IN_PLACE = 32, /* the MTU through bpf_check_mtu even where it can be read in place (rodata mtu_in_place 0) */
	/*
	 * DIR-24-8's last two reads, each replaced by a read of entry 1 (one
	 * line that stays in cache) once the entry before it has been read:
	 * what the prefix slot and the value cost (docs/per-packet.md).
	 */
	ENCAP_SKIP_DIR_PREFIX = 64,
	ENCAP_SKIP_DIR_VALUE = 128,
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

/*
 * Key of the alternate route tries: the table id, then the destination, as one
 * bit string; prefixlen = 32 + the destination prefix length, so a lookup only
 * ever matches routes of its own table.
 */
struct alt_key_v4 {
	__u32 prefixlen;
	__be32 table;
	__u8 addr[4];
};

struct alt_key_v6 {
	__u32 prefixlen;
	__be32 table;
	__u8 addr[16];
};

/* A source prefix's value: the alternate table its packets use (>= 1). */
struct source_value {
	__u32 table;
};

/* Run-time settings (one entry). */
struct settings {
	__u32 sources; /* source prefixes programmed: 0 skips the source lookup */
};

/* Key of the IPv6 LPM trie. */
struct route_key_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * A label stack ready to copy onto the wire: `entries[0]` is the top of the
 * stack; each entry is in network byte order with label, TC and S already
 * encoded by Rust (S only on entries[depth-1]) and the TTL byte zero, because
 * the TTL depends on the packet and is ORed in on the fast path.
 *
 * With an entropy label, Rust also placed the ELI (label 7) and, at `el_index`,
 * the EL entry with its label bits zero: the program ORs in the flow's entropy
 * (RFC 6790: the EL's TTL stays 0) instead of the TTL.
 */
struct segment_list {
	__u16 depth;    /* entries pushed, ELI and EL included: 1..=ENCAP_MAX_LABELS */
	__u8 el_index;  /* index of the EL entry, 0 when there is none (the ELI precedes it) */
	__u8 pad;
	__be32 entries[ENCAP_MAX_LABELS];
};

/*
 * The value of a route. A plain route pushes `list` (no second lookup: the fast
 * path); an ENCAP_ROUTE_POLICY route pushes one of its policy's lists; an
 * ENCAP_ROUTE_LOCAL entry never labels. What the route labelled is counted in
 * route_counters[counter_id] (0: not counted), and what each of a policy's lists
 * labelled in route_counters[list_counter[i]]. The counters live apart, per CPU,
 * because an LPM trie stores IPv4 values 4 bytes off 8-byte alignment: an atomic
 * add there can straddle a cache line and cost microseconds (a split lock), and
 * a per-CPU slot is never contended.
 */
struct route_value {
	__u16 flags;     /* enum encap_route_flags */
	__u16 pad;
	__u32 policy_id; /* with ENCAP_ROUTE_POLICY */
	struct segment_list list;
	__u32 counter_id; /* index into route_counters; 0: not counted */
};

/* policy_value.flags */
enum encap_policy_flags {
	/*
	 * The policy has no live candidate path (n_lists 0, RFC 9256 section 5)
	 * and its routes' packets are dropped (XDP_DROP / TC_ACT_SHOT), counted
	 * in ENCAP_CNT_NO_LIVE_PATH_DROP. Without it such a policy passes them
	 * unlabelled (no slot names a list: ENCAP_CNT_PASS_NO_ROUTE). A flag of
	 * the object, not of its routes: going invalid is one write however many
	 * routes it steers.
	 */
	ENCAP_POLICY_DROP = 1,
};

/*
 * An SR policy: segment lists and the table that spreads flows over them.
 * An invalid policy (no live candidate path) has no list, and `flags` says
 * what its routes' packets do.
 */
struct policy_value {
	__u16 n_lists; /* 0 (invalid) or 1..=ENCAP_MAX_SEGMENT_LISTS */
	__u8 slots[ENCAP_POLICY_SLOTS]; /* segment list index per flow-hash slot (weights realised) */
	__u8 flags; /* enum encap_policy_flags */
	struct segment_list lists[ENCAP_MAX_SEGMENT_LISTS];
	__u32 list_counter[ENCAP_MAX_SEGMENT_LISTS]; /* route_counters slots per list; 0: not counted */
};

/*
 * A DIR-24-8 prefix: its route value (shared by every prefix with the same
 * labels) and its counter slot, read by the program as one 8-byte word so a
 * route change (both rewritten by one 8-byte store) is atomic per packet. The
 * prefix itself is user space's, to find its slots again after adoption.
 */
struct dir_prefix {
	__u32 value;      /* index into dir4_values */
	__u32 counter_id; /* index into route_counters; 0: not counted */
	__u8 addr[4];     /* the prefix (network order); not read by the program */
	__u8 len;         /* its length; 0xff: a free slot */
	__u8 pad[3];
};

/* Per-CPU counter value. */
struct counter_value {
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct route_key_v4) == 8, "route_key_v4 layout");
_Static_assert(sizeof(struct route_key_v6) == 20, "route_key_v6 layout");
_Static_assert(sizeof(struct alt_key_v4) == 12, "alt_key_v4 layout");
_Static_assert(sizeof(struct alt_key_v6) == 24, "alt_key_v6 layout");
_Static_assert(sizeof(struct segment_list) == 4 + 4 * ENCAP_MAX_LABELS, "segment_list layout");
_Static_assert(sizeof(struct route_value) == 8 + sizeof(struct segment_list) + 4, "route_value layout");
_Static_assert(sizeof(struct policy_value) == 1024 + 8 * sizeof(struct segment_list) + 8 * 4,
	       "policy_value layout");
_Static_assert(sizeof(struct counter_value) == 16, "counter_value layout");
_Static_assert(sizeof(struct dir_prefix) == 16, "dir_prefix layout");
_Static_assert(sizeof(struct dir_block) == 64, "dir_block layout");
_Static_assert(sizeof(struct dir_group) == 1024, "dir_group layout");
_Static_assert(sizeof(struct dscp_map) == 64, "dscp_map layout");
_Static_assert(sizeof(struct route_cache_bucket) == 64, "route_cache_bucket: one cache line");

#endif /* LNETD_ENCAP_SHARED_H */
