/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The encapsulator's worker: label the packets the host routes and, on XDP,
 * turn them around.
 *
 * Pipeline: parse -> multicast -> link-local -> route lookup (the main
 * table through the route cache: local?; the source's alternate table, else
 * the main one; plain or policy) -> on-link next hop (skb: passed) ->
 * segment list (or the policy's drop) -> MTU -> save L2 -> reflect it (XDP
 * only) -> grow (hook) -> push. Each stage reports in
 * its own terms; this worker maps that onto an encap counter and jumps to the
 * one exit, which counts exactly that counter and turns it into the hook's
 * return code.
 */
#ifndef LNETD_ENCAP_WORKER_H
#define LNETD_ENCAP_WORKER_H

#include "encap_config.h"
#include "encap_counters.h"
#include "encap_maps.h"
#include "hook.h"
#include "lookup.h"
#include "packet.h"
#include "policy.h"
#include "push.h"
#include "reflect.h"
#include "route_cache.h"

static __always_inline int encap_sources_on(void)
{
	__u32 zero = 0;
	struct settings *set = bpf_map_lookup_elem(&settings, &zero);

	return set && set->sources;
}

static __always_inline int encap(void *ctx, const enum hook hook)
{
	const struct alternate_tables alt = {
		.sources_v4 = &sources_v4,
		.sources_v6 = &sources_v6,
		.routes_v4 = &alt_routes_v4,
		.routes_v6 = &alt_routes_v6,
	};
	const struct dir4_tables dir4 = {
		.tbl16 = &dir4_tbl16,
		.tbl24 = &dir4_tbl24,
		.tbl8 = &dir4_tbl8,
		.prefixes = &dir4_prefixes,
		.values = &dir4_values,
	};
	__u64 bytes = hook_frame_len(ctx, hook);
	struct policy_value *policy = NULL;
	const struct segment_list *list;
	struct route_value *route, *alternate, cached;
	struct packet pkt = {};
	enum packet_parse parsed;
	int ran_off;
	struct l2_copy l2;
	enum encap_counter verdict;
	__u32 hash = 0, idx = 0, room, counter_id = 0;
	__be32 el_bits = 0, tc_bits = 0, ttl_bits;
	void *data, *data_end;

	hook_frame(ctx, hook, &data, &data_end);
	parsed = parse_packet(data, data_end, bytes, &pkt);
	/* Ports it could not reach count as running off the linear part. */
	ran_off = parsed == PACKET_MALFORMED ||
		  (parsed == PACKET_IP && l4_has_ports(pkt.l4_proto) && !pkt.has_ports);
	switch (hook == HOOK_SKB ? skb_pull_to_reparse(ctx, ran_off, SKB_HEADERS) : 0) {
	case 1:
		hook_frame(ctx, hook, &data, &data_end);
		__builtin_memset(&pkt, 0, sizeof(pkt));
		parsed = parse_packet(data, data_end, bytes, &pkt);
		break;
	case -1:
		verdict = ENCAP_CNT_PASS_NO_HEADROOM;
		goto out;
	}
	switch (parsed) {
	case PACKET_IP:
		break;
	case PACKET_NOT_IP:
		verdict = ENCAP_CNT_PASS_NOT_IP;
		goto out;
	default:
		verdict = ENCAP_CNT_PASS_MALFORMED;
		goto out;
	}
	if (packet_is_multicast(&pkt)) {
		verdict = ENCAP_CNT_PASS_MULTICAST;
		goto out;
	}
	if (packet_is_link_local(&pkt)) {
		verdict = ENCAP_CNT_PASS_LOCAL;
		goto out;
	}

	/* The main table first: it holds the host's addresses, which no source overrides. */
	if (skip_stages & ENCAP_SKIP_LOOKUP) {
		__u32 first = 1;

		route = bpf_map_lookup_elem(&dir4_values, &first);
	} else {
		route = lookup_main(&pkt, &routes_v4, &routes_v6, lookup_v4 == ENCAP_LOOKUP_DIR24 ? &dir4 : NULL,
				    &cached, &counter_id);
	}
	if (route && (route->flags & ENCAP_ROUTE_LOCAL)) {
		verdict = ENCAP_CNT_PASS_LOCAL;
		goto out;
	}
	if (encap_sources_on()) {
		alternate = lookup_alternate(&pkt, &alt);
		if (alternate) {
			route = alternate;
			counter_id = alternate->counter_id;
		}
	}
	if (!route) {
		verdict = ENCAP_CNT_PASS_NO_ROUTE;
		goto out;
	}
	/*
	 * Only a packet that would be labelled pays for reading its kernel
	 * route; before the policy's drop, so that paths going down never cut
	 * the host off from its router.
	 */
	if (hook_next_hop_on_link(ctx, hook, on_link_pass)) {
		verdict = ENCAP_CNT_PASS_LOCAL;
		goto out;
	}

	list = &route->list;
	if (route->flags & ENCAP_ROUTE_POLICY) {
		policy = bpf_map_lookup_elem(&policies, &route->policy_id);
		/* Rust writes the policy before the route that names it: never expected. */
		if (!policy) {
			verdict = ENCAP_CNT_PASS_NO_ROUTE;
			goto out;
		}
		hash = flow_hash(&pkt);
		switch (select_segment_list(policy, hash, &idx)) {
		case SELECT_OK:
			break;
		case SELECT_BAD_SLOT:
			verdict = ENCAP_CNT_ABORTED;
			goto out;
		case SELECT_DROP:
			verdict = ENCAP_CNT_NO_LIVE_PATH_DROP;
			goto out;
		default:
			verdict = ENCAP_CNT_PASS_NO_ROUTE;
			goto out;
		}
		list = &policy->lists[idx];
	}
	/* The hash and the EL's division only for the lists that carry one. */
	if (list->el_index) {
		if (!policy)
			hash = flow_hash(&pkt);
		el_bits = entropy_label_bits(hash);
	}
	if (route->flags & ENCAP_ROUTE_TC_FROM_DSCP)
		tc_bits = lookup_tc_bits(&dscp_tc, pkt.dscp);

	/* The MTU bounds what follows the L2 header (VLAN tags are not part of it). */
	if (!(skip_stages & ENCAP_SKIP_MTU) && !hook_fits_mtu(ctx, hook, pkt.ip_len + list->depth * 4, mtu_in_place)) {
		verdict = mtu_policy == ENCAP_MTU_PASS ? ENCAP_CNT_MTU_PASS : ENCAP_CNT_MTU_DROP;
		goto out;
	}
	room = label_stack_len(list);
	if (!room) {
		verdict = ENCAP_CNT_PASS_NO_ROUTE;
		goto out;
	}
	if (skip_stages & ENCAP_SKIP_PUSH) {
		if (hook == HOOK_XDP && reflect_macs(data, data_end)) {
			verdict = ENCAP_CNT_ABORTED;
			goto out;
		}
		verdict = ENCAP_CNT_TX;
		goto out;
	}
	/* Reflected in the saved copy, which push writes anyway: no second pass over the frame. */
	if (l2_save(data, data_end, &l2) ||
	    (hook == HOOK_XDP && reflect_macs(l2.bytes, l2.bytes + sizeof(l2.bytes)))) {
		verdict = ENCAP_CNT_ABORTED;
		goto out;
	}
	if (hook_grow_head(ctx, hook, room, &data, &data_end)) {
		verdict = ENCAP_CNT_PASS_NO_HEADROOM;
		goto out;
	}
	ttl_bits = bpf_htonl(ttl_mode == ENCAP_TTL_FIXED ? fixed_ttl : pkt.ttl);
	if (push_label_stack(data, data_end, &l2, pkt.l2_len, list, ttl_bits, el_bits, tc_bits)) {
		verdict = ENCAP_CNT_ABORTED;
		goto out;
	}
	verdict = ENCAP_CNT_TX;
	encap_count_labelled(counter_id, bytes);
	if (policy)
		encap_count_labelled(policy->list_counter[idx], bytes);
out:
	return encap_count_and_act(hook, verdict, bytes);
}

#endif /* LNETD_ENCAP_WORKER_H */
