/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Puts the encapsulator's ABI enums into its object's BTF, for Rust. */
#ifndef LNETD_ENCAP_ABI_H
#define LNETD_ENCAP_ABI_H

#include "../encap_shared.h"

/*
 * Never read by the program: referencing the ABI enums here puts them into the
 * object's BTF, from which the skeleton generates them for Rust (a type reaches
 * BTF only when something uses it).
 */
const volatile struct {
	enum encap_limits limits;
	enum encap_counter counter;
	enum encap_route_flags route_flags;
	enum encap_policy_flags policy_flags;
	enum encap_dir dir;
	enum encap_skip skip;
	struct dir_block dir_block;
	struct dir_group dir_group;
	enum route_cache_family route_cache_family;
	enum route_cache_geometry route_cache_geometry;
	enum route_cache_ref route_cache_ref;
} encap_abi = {};

#endif /* LNETD_ENCAP_ABI_H */
