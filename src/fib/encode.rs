//! How a route becomes the dataplane's values: label stack entries encoded
//! once, here, so the hot path only ORs in what depends on the packet. The
//! encoding is one-way: what was configured lives in the RIB.

use crate::abi::{self, types, MAX_LABELS, POLICY_DROP, ROUTE_LOCAL, ROUTE_POLICY, ROUTE_TC_FROM_DSCP};
use crate::domain::label::{LabelStack, LabelStackEntry, TrafficClass};
use crate::domain::policy::EntropyLabel;
use crate::domain::policy::{NoLivePath, Policy};
use crate::domain::route::{Route, Tc};
use crate::rib::objects::Object;
use crate::rib::{Rib, RouteId};

/// The Entropy Label Indicator (RFC 6790).
const ELI: u32 = 7;

/// The dataplane's form of one list: entries with label, TC and S encoded,
/// TTL zero, the ELI and a zero EL placed where `entropy` says.
pub(crate) fn segment_list(stack: &LabelStack, tc: TrafficClass, entropy: Option<EntropyLabel>) -> types::segment_list {
    let mut words: Vec<u32> = stack.labels().iter().map(|l| l.value()).collect();
    let el_index = entropy.map_or(0, |e| {
        let after = match e {
            EntropyLabel::Bottom => words.len(),
            EntropyLabel::After(n) => n.min(words.len()),
        };
        words.splice(after..after, [ELI, 0]);
        after + 1
    });
    words.truncate(MAX_LABELS);
    let mut out: types::segment_list = abi::zeroed();
    out.depth = words.len() as u16;
    out.el_index = el_index as u8;
    let last = words.len().saturating_sub(1);
    for (i, (slot, label)) in out.entries.iter_mut().zip(words).enumerate() {
        let entry = LabelStackEntry { label, tc: tc.value(), bottom: i == last, ttl: 0 };
        *slot = u32::from_ne_bytes(entry.encode());
    }
    out
}

/// A route's value; for a policy route (`policy_id` given), also the policy's
/// value, to be stored under that id before the route names it. Counter slots
/// are the caller's: `route_slot` for the route, `list_slots` per list.
pub(crate) fn route(
    route: &Route,
    policy_id: Option<u32>,
    route_slot: u32,
    list_slots: &[u32],
) -> (types::route_value, Option<Box<types::policy_value>>) {
    let value = route_value(route, policy_id, route_slot);
    let policy = (value.flags & ROUTE_POLICY != 0).then(|| policy_value(&route.policy, entry_tc(route.tc), list_slots));
    (value, policy)
}

/// A route's own value, without its policy's (which a route on a shared
/// object does not need: computing a flow table per route would cost a
/// million of them for one object).
pub(crate) fn route_value(route: &Route, policy_id: Option<u32>, route_slot: u32) -> types::route_value {
    let mut value: types::route_value = abi::zeroed();
    value.counter_id = route_slot;
    // From the DSCP: the entries carry TC 0 and the program ORs in the packet's.
    if route.tc == Tc::FromDscp {
        value.flags |= ROUTE_TC_FROM_DSCP;
    }
    let policy = &route.policy;
    let Some(id) = policy_id.filter(|_| !policy.is_plain()) else {
        if let Some(l) = policy.lists().first() {
            value.list = segment_list(&l.stack, entry_tc(route.tc), None);
        }
        return value;
    };
    value.flags |= ROUTE_POLICY;
    value.policy_id = id;
    value
}

/// A policy's value: its lists encoded with `tc`, its flow table, its
/// per-list counter slots. A policy in the invalid state (no list) has
/// n_lists 0 and every slot naming no list (255): the program then passes
/// its routes' packets unlabelled, counted as "no route" (policy.h:
/// SELECT_NO_LIST); one that says drop also has ENCAP_POLICY_DROP, which
/// the program reads before the slots (SELECT_DROP).
pub(crate) fn policy_value(policy: &Policy, tc: TrafficClass, list_slots: &[u32]) -> Box<types::policy_value> {
    let mut p: Box<types::policy_value> = Box::new(abi::zeroed());
    p.n_lists = policy.lists().len() as u16;
    if policy.when_invalid() == Some(NoLivePath::Drop) {
        p.flags |= POLICY_DROP;
    }
    for (slot, l) in p.lists.iter_mut().zip(policy.lists().iter()) {
        *slot = segment_list(&l.stack, tc, policy.entropy_label());
    }
    for (dst, src) in p.slots.iter_mut().zip(policy.flow_table()) {
        *dst = src;
    }
    for (dst, src) in p.list_counter.iter_mut().zip(list_slots).take(policy.lists().len()) {
        *dst = *src;
    }
    p
}

/// The traffic class a route's entries are encoded with (0 when the
/// program ORs in the packet's, from the DSCP).
pub(crate) fn entry_tc(tc: Tc) -> TrafficClass {
    match tc {
        Tc::Fixed(tc) => tc,
        Tc::FromDscp => TrafficClass::default(),
    }
}

/// A shared object's policy value.
pub(crate) fn object(o: &Object) -> Box<types::policy_value> {
    policy_value(&o.policy, entry_tc(o.tc), &o.lists)
}

/// The values the RIB says the kernel holds for an installed route: its
/// route value and, for a policy route, its policy value. `None` when the
/// RIB has no such route.
pub(crate) fn installed(rib: &Rib, id: &RouteId) -> Option<(types::route_value, Option<Box<types::policy_value>>)> {
    let route = rib.routes.get(id)?;
    let slots = rib.counters_of.get(id).cloned().unwrap_or_default();
    let policy_id = rib.policy_of.get(id).copied();
    match rib.object_of(id) {
        Some(o) => Some((route_value(route, policy_id, slots.route), Some(object(o)))),
        None => Some(self::route(route, policy_id, slots.route, &slots.lists)),
    }
}

/// The route value alone that the RIB says the kernel holds for `id`.
pub(crate) fn installed_value(rib: &Rib, id: &RouteId) -> Option<types::route_value> {
    let route = rib.routes.get(id)?;
    let slot = rib.counters_of.get(id).map_or(0, |s| s.route);
    Some(route_value(route, rib.policy_of.get(id).copied(), slot))
}

/// The never-label entry of a host address.
pub(crate) fn local() -> types::route_value {
    let mut value: types::route_value = abi::zeroed();
    value.flags = ROUTE_LOCAL;
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(list: &types::segment_list) -> Vec<LabelStackEntry> {
        list.entries.iter().take(usize::from(list.depth)).map(|w| LabelStackEntry::decode(w.to_ne_bytes())).collect()
    }

    #[test]
    fn plain_routes_are_inline() {
        let route = Route::new("192.0.2.0/24".parse().unwrap(), "16001/16002/1000000".parse().unwrap())
            .with_tc(TrafficClass::new(5).unwrap());
        let (value, policy) = super::route(&route, None, 9, &[]);
        assert!(policy.is_none());
        assert_eq!((value.flags, value.list.depth, value.counter_id), (0, 3, 9));
        assert_eq!(
            labels(&value.list).iter().map(|e| (e.label, e.tc, e.bottom, e.ttl)).collect::<Vec<_>>(),
            [(16001, 5, false, 0), (16002, 5, false, 0), (1_000_000, 5, true, 0)]
        );
        assert!(value.list.entries[3..].iter().all(|w| *w == 0));
    }

    #[test]
    fn policy_routes_name_their_policy() {
        let policy: Policy = "16001/16002@7,16003@3".parse().unwrap();
        let route = Route::with_policy(
            "2001:db8::/32".parse().unwrap(),
            policy.with_entropy_label(Some(EntropyLabel::After(1))).unwrap(),
        );
        let (value, p) = super::route(&route, Some(42), 1, &[2, 3]);
        let p = p.expect("a policy value");
        assert_eq!((value.flags, value.policy_id), (ROUTE_POLICY, 42));
        assert_eq!((p.n_lists, p.list_counter[0], p.list_counter[1], p.list_counter[2]), (2, 2, 3, 0));
        assert_eq!(p.slots.to_vec(), route.policy.flow_table());
        assert_eq!(labels(&p.lists[1]).iter().map(|e| e.label).collect::<Vec<_>>(), [16003, 7, 0]);
    }

    #[test]
    fn an_invalid_policy_says_what_its_packets_do_in_its_flags() {
        for (then, flags) in [(NoLivePath::Unlabelled, 0), (NoLivePath::Drop, POLICY_DROP)] {
            let p = policy_value(&Policy::invalid_with("blue", then).unwrap(), TrafficClass::default(), &[]);
            assert_eq!((p.n_lists, p.flags), (0, flags), "{then}");
            assert!(p.slots.iter().all(|s| *s == u8::MAX), "no slot names a list");
        }
        let valid = policy_value(&"16001@1,16002@1".parse().unwrap(), TrafficClass::default(), &[]);
        assert_eq!(valid.flags, 0);
    }

    #[test]
    fn tc_from_dscp_sets_the_flag_and_tc_zero() {
        let route = Route::new("10.0.0.0/8".parse().unwrap(), "100".parse().unwrap()).with_tc_from_dscp();
        let (value, _) = super::route(&route, None, 0, &[]);
        assert_eq!(value.flags, ROUTE_TC_FROM_DSCP);
        assert_eq!(labels(&value.list)[0].tc, 0);
    }

    #[test]
    fn lists_encode_the_entropy_label_pair() {
        let stack: LabelStack = "100/200/300".parse().unwrap();
        let tc = TrafficClass::new(2).unwrap();
        for (entropy, want) in [
            (None, vec![100, 200, 300]),
            (Some(EntropyLabel::Bottom), vec![100, 200, 300, 7, 0]),
            (Some(EntropyLabel::After(1)), vec![100, 7, 0, 200, 300]),
            (Some(EntropyLabel::After(9)), vec![100, 200, 300, 7, 0]),
        ] {
            let list = segment_list(&stack, tc, entropy);
            let entries = labels(&list);
            assert_eq!(entries.iter().map(|e| e.label).collect::<Vec<_>>(), want, "{entropy:?}");
            assert_eq!(entries.iter().filter(|e| e.bottom).count(), 1);
            assert!(entries.last().unwrap().bottom);
            assert!(entries.iter().all(|e| e.tc == 2));
            if entropy.is_some() {
                assert_eq!(want[usize::from(list.el_index)], 0);
                assert_eq!(want[usize::from(list.el_index) - 1], 7);
            } else {
                assert_eq!(list.el_index, 0);
            }
        }
    }
}
