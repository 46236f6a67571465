/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The encapsulator's tables (its counters are in encap_counters.h).
 * Capacities are defaults; Rust may resize before load.
 */
#ifndef LNETD_ENCAP_MAPS_H
#define LNETD_ENCAP_MAPS_H

#include "../encap_shared.h"
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

/*
 * Destination prefix -> label stack, plus a LOCAL host route per host address.
 * LPM tries require BPF_F_NO_PREALLOC.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V4);
	__type(key, struct route_key_v4);
	__type(value, struct route_value);
} routes_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V6);
	__type(key, struct route_key_v6);
	__type(value, struct route_value);
} routes_v6 SEC(".maps");

/*
 * DIR-24-8 for the main IPv4 table (enum encap_lookup). Memory-mappable: user
 * space writes entries with plain stores, each an atomic 4- or 8-byte word.
 * Sized to one entry each when the LPM trie is chosen.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, (1 << 16) / DIR_BLOCK);
	__type(key, __u32);
	__type(value, struct dir_block);
} dir4_tbl16 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, (1 << 24) / DIR_BLOCK);
	__type(key, __u32);
	__type(value, struct dir_block);
} dir4_tbl24 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ENCAP_DEFAULT_DIR_GROUPS);
	__type(key, __u32);
	__type(value, struct dir_group);
} dir4_tbl8 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V4);
	__type(key, __u32);
	__type(value, struct dir_prefix);
} dir4_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, ENCAP_DEFAULT_ROUTE_VALUES);
	__type(key, __u32);
	__type(value, struct route_value);
} dir4_values SEC(".maps");

/*
 * Source-aware selection: a source prefix (LPM on the source address) names
 * an alternate table, whose routes live in alt_routes_* keyed by table id and
 * destination. Sized like the main tables; allocated on use.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V6);
	__type(key, struct route_key_v4);
	__type(value, struct source_value);
} sources_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V6);
	__type(key, struct route_key_v6);
	__type(value, struct source_value);
} sources_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V4);
	__type(key, struct alt_key_v4);
	__type(value, struct route_value);
} alt_routes_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_ROUTES_V6);
	__type(key, struct alt_key_v6);
	__type(value, struct route_value);
} alt_routes_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

/* Policy id -> SR policy. Allocated on use; ids are chosen by Rust. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, ENCAP_DEFAULT_MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct policy_value);
} policies SEC(".maps");

/* One entry: the DSCP -> TC table, written by Rust at load and on change. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dscp_map);
} dscp_tc SEC(".maps");

#endif /* LNETD_ENCAP_MAPS_H */
