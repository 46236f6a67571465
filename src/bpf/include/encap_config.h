/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The encapsulator's load-time knobs, set from Rust in the skeleton's rodata
 * before load. Being const, the verifier sees their values and prunes the
 * branches not taken.
 */
#ifndef LNETD_ENCAP_CONFIG_H
#define LNETD_ENCAP_CONFIG_H

#include "../encap_shared.h"

const volatile enum encap_ttl_mode ttl_mode = ENCAP_TTL_COPY;
const volatile __u8 fixed_ttl = 255;
const volatile enum encap_mtu_policy mtu_policy = ENCAP_MTU_DROP;
const volatile enum encap_lookup lookup_v4 = ENCAP_LOOKUP_LPM;
const volatile __u32 skip_stages = 0; /* enum encap_skip bits: benchmarks only */
/* Buckets of the route cache (a power of two); 0: no cache (route_cache.h). */
const volatile __u32 route_cache_buckets = 0;
/*
 * 1: the MTU is read in place (the kernel has bpf_cast_to_kern_ctx, and the
 * variant does not skip ENCAP_SKIP_MTU_IN_PLACE: Rust folds both); 0:
 * bpf_check_mtu (hook.h).
 */
const volatile __u8 mtu_in_place = 0;
/*
 * 1: an egress program passes what the kernel sends to an on-link neighbour
 * unlabelled (hook_skb.h skb_next_hop_on_link); Rust sets it for the TC
 * program, unless told to label on-link, where the kernel has the kfuncs
 * that read the packet's route.
 */
const volatile __u8 on_link_pass = 0;

#endif /* LNETD_ENCAP_CONFIG_H */
