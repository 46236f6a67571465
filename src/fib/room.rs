//! Room for an apply: which removals must run before the new routes are
//! written so that no trie ever holds more than its capacity.
//!
//! An apply writes new and replaced routes first and deletes last, so that a
//! packet never loses its route while its replacement is on the way. At its
//! peak a trie then holds the final routes plus those about to be removed;
//! when that exceeds the capacity (a table swapped for a different one near
//! its size), just enough removals are done first. Removing a prefix first
//! sends its packets to the route that covers it at that moment, so those
//! removals are picked where that cover is the packet's new route:
//!
//! - no route being added or replaced lies inside the prefix or covers it;
//! - the nearest route covering it that stays in the kernel is unchanged by
//!   the apply (then it is also the new table's route for those addresses),
//!   or, in the main table, nothing covers it in either table.
//!
//! When too few removals qualify, the shortest other ones are taken too: their
//! packets meet, for a moment, a route of the old table (the cover) that is
//! not their old or new route, or no route. Every entry a packet can meet is
//! still one of the old or the new table: nothing else is ever written.

use std::collections::BTreeSet;

use ipnetwork::IpNetwork;

use super::trie_index;
use crate::domain::route::Table;
use crate::rib::diff::Plan;
use crate::rib::{max_len, Rib, RouteId};

/// The removals to do before anything is written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Room {
    /// Removals done first, sorted.
    pub early: Vec<RouteId>,
    /// How many of them fall back to a route that is not the new one.
    pub unsafe_fallbacks: usize,
}

impl Room {
    /// Whether `id` is removed first.
    pub(crate) fn is_early(&self, id: &RouteId) -> bool {
        self.early.binary_search(id).is_ok()
    }
}

/// Entries the policy map holds at the peak of `plan`'s writes, retired
/// policies included: every policy in use stays until the commit retires it,
/// and a route that becomes a policy route, or changes its route-level value,
/// takes a fresh id (see `Fib::allocate`; an in-place rewrite takes none).
/// An estimate for waiting out retired policies, not a refusal: the kernel
/// has the last word.
pub(crate) fn policy_peak(rib: &Rib, plan: &Plan<'_>) -> usize {
    let fresh = plan
        .upserts
        .iter()
        .filter(|(id, route, _)| {
            let in_place = rib.policy_of.contains_key(id)
                && rib.routes.get(id).is_some_and(|old| super::same_route_value(old, route));
            !route.policy.is_plain() && route.policy.name().is_none() && !in_place
        })
        .count();
    let fresh_objects = plan.named.keys().filter(|name| rib.objects.named(name).is_none()).count();
    // Ids in use: one per route of its own, one per shared object however many routes use it.
    let on_objects: usize = rib.objects.iter().map(|(_, o)| o.users).sum();
    let in_use = rib.policy_of.len().saturating_sub(on_objects) + rib.objects.len();
    in_use + rib.graveyard.len() + fresh + fresh_objects
}

/// `prefix` shortened to `len` bits.
fn supernet(prefix: &IpNetwork, len: u8) -> Option<IpNetwork> {
    IpNetwork::new(prefix.ip(), len).ok().and_then(|n| IpNetwork::new(n.network(), len).ok())
}

/// The removals `plan` must do first to stay within `capacities` (by
/// [`trie_index`]); empty when the old and the new routes fit together.
pub(crate) fn plan_room(rib: &Rib, plan: &Plan<'_>, capacities: [u32; 4]) -> Room {
    // Entries at the peak: the final ones (host addresses included, as the
    // capacity check counts them) plus those still to be removed.
    let mut peak = plan.trie_entries;
    for addr in &rib.local {
        if let Some(n) = peak.get_mut(usize::from(addr.is_ipv6())) {
            *n += 1;
        }
    }
    for id in &plan.removes {
        if let Some(n) = peak.get_mut(trie_index(id.0, &id.1)) {
            *n += 1;
        }
    }
    let excess: Vec<usize> = peak.iter().zip(capacities).map(|(n, c)| n.saturating_sub(c as usize)).collect();
    if excess.iter().all(|e| *e == 0) {
        return Room::default();
    }

    let upserts: BTreeSet<RouteId> = plan.upserts.iter().map(|(id, _, _)| *id).collect();
    let removes: BTreeSet<RouteId> = plan.removes.iter().copied().collect();
    let mut early: BTreeSet<RouteId> = BTreeSet::new();
    let mut unsafe_fallbacks = 0;
    for (trie, want) in excess.iter().enumerate().filter(|(_, e)| **e > 0) {
        let mut candidates: Vec<&RouteId> = plan.removes.iter().filter(|id| trie_index(id.0, &id.1) == trie).collect();
        // Shortest first: a cover is decided before what it covers.
        candidates.sort_by_key(|id| (id.1.prefix(), **id));
        let mut taken = 0;
        let mut rest = Vec::new();
        for id in candidates {
            if taken == *want {
                break;
            }
            if falls_back_to_new(rib, &upserts, &removes, &early, id) {
                early.insert(*id);
                taken += 1;
            } else {
                rest.push(*id);
            }
        }
        for id in rest.into_iter().take(want - taken) {
            early.insert(id);
            unsafe_fallbacks += 1;
        }
    }
    Room { early: early.into_iter().collect(), unsafe_fallbacks }
}

/// Whether removing `id` now sends its packets to their route in the new
/// table (see the module docs), `early` being removed already.
fn falls_back_to_new(
    rib: &Rib,
    upserts: &BTreeSet<RouteId>,
    removes: &BTreeSet<RouteId>,
    early: &BTreeSet<RouteId>,
    id: &RouteId,
) -> bool {
    let (table, prefix) = *id;
    // Anything new inside it: those addresses' new route is not written yet.
    let Ok(last) = IpNetwork::new(broadcast(&prefix), max_len(&prefix)) else { return false };
    if upserts.range((table, prefix)..=(table, last)).next().is_some() {
        return false;
    }
    let mut cover = None;
    for len in (0..prefix.prefix()).rev() {
        let Some(up) = supernet(&prefix, len) else { return false };
        let key = (table, up);
        if upserts.contains(&key) {
            return false;
        }
        if cover.is_none() && rib.routes.contains_key(&key) && !early.contains(&key) {
            cover = Some(key);
        }
    }
    match cover {
        // Staying (no upsert covers it): the new table's route here too, unless it goes later.
        Some(key) => !removes.contains(&key),
        // Nothing covers it now or later; an alternate table falls back to
        // the main one, whose route may be changing.
        None => table == Table::Main,
    }
}

fn broadcast(prefix: &IpNetwork) -> std::net::IpAddr {
    match prefix {
        IpNetwork::V4(p) => p.broadcast().into(),
        IpNetwork::V6(p) => p.broadcast().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::desired::{DesiredState, ValidState};
    use crate::rib::diff;

    fn state(routes: &[(&str, &str)]) -> ValidState {
        let routes: Vec<String> = routes.iter().map(|(p, l)| format!(r#"{{"prefix":"{p}","policy":"{l}"}}"#)).collect();
        DesiredState::from_json(&format!(r#"{{"routes":[{}]}}"#, routes.join(","))).unwrap().validate().unwrap()
    }

    fn rib_of(v: &ValidState) -> Rib {
        let mut rib = Rib::new(10);
        rib.routes = v.routes().clone().into();
        rib
    }

    fn names(room: &Room) -> Vec<String> {
        room.early.iter().map(|id| id.1.to_string()).collect()
    }

    const CAP: [u32; 4] = [5, 5, 5, 5];

    #[test]
    fn the_policy_peak_counts_what_stays_until_the_commit() {
        let old = state(&[("10.0.0.0/24", "16@1,17@1"), ("10.0.1.0/24", "18@1,19@1")]);
        // One rewritten in place (no fresh id), one removed (its policy stays
        // until the commit), one new.
        let new = state(&[("10.0.0.0/24", "20@1,21@1"), ("10.0.2.0/24", "22@1,23@1")]);
        let mut rib = rib_of(&old);
        for (n, id) in old.routes().keys().enumerate() {
            rib.policy_of.insert(*id, n as u32 + 1);
        }
        rib.graveyard.push((7, crate::rib::alloc::Boottime::now()));
        assert_eq!(policy_peak(&rib, &diff::plan(&rib, &new)), 2 + 1 + 1);
    }

    #[test]
    fn nothing_first_when_old_and_new_fit_together() {
        let old = state(&[("10.0.0.0/24", "100"), ("10.0.1.0/24", "101")]);
        let new = state(&[("10.0.2.0/24", "102"), ("10.0.3.0/24", "103")]);
        let rib = rib_of(&old);
        assert_eq!(plan_room(&rib, &diff::plan(&rib, &new), CAP), Room::default());
    }

    #[test]
    fn a_swap_removes_just_enough_first_under_an_unchanged_cover() {
        // 4 routes (default + 3) swapped for 3 others in a table of 5: a peak of 7, 2 removed first.
        let old = state(&[("0.0.0.0/0", "16"), ("10.0.0.0/24", "100"), ("10.0.1.0/24", "101"), ("10.0.2.0/24", "102")]);
        let new = state(&[("0.0.0.0/0", "16"), ("10.1.0.0/24", "200"), ("10.1.1.0/24", "201"), ("10.1.2.0/24", "202")]);
        let rib = rib_of(&old);
        let room = plan_room(&rib, &diff::plan(&rib, &new), CAP);
        assert_eq!(names(&room), ["10.0.0.0/24", "10.0.1.0/24"]);
        assert_eq!(room.unsafe_fallbacks, 0);
        assert!(room.is_early(&room.early[0]));
    }

    #[test]
    fn removals_whose_cover_changes_or_covers_new_routes_come_last() {
        // 10.0.0.0/16 covers a new /24; 10.2.0.0/24's cover is replaced; the others fall back
        // to the unchanged default (10.3.0.0/24 once 10.3.0.0/16 went first).
        let old = state(&[
            ("0.0.0.0/0", "16"),
            ("10.0.0.0/16", "100"),
            ("10.2.0.0/16", "102"),
            ("10.2.0.0/24", "103"),
            ("10.3.0.0/16", "104"),
            ("10.3.0.0/24", "105"),
            ("10.4.0.0/24", "106"),
        ]);
        let new = state(&[("0.0.0.0/0", "16"), ("10.0.5.0/24", "200"), ("10.2.0.0/16", "999")]);
        let rib = rib_of(&old);
        let plan = diff::plan(&rib, &new);
        // Peak: 3 final + 5 removed = 8.
        let room = plan_room(&rib, &plan, [7, 5, 5, 5]);
        assert_eq!((names(&room), room.unsafe_fallbacks), (vec!["10.3.0.0/16".to_string()], 0));
        let room = plan_room(&rib, &plan, [5, 5, 5, 5]);
        assert_eq!(
            (names(&room), room.unsafe_fallbacks),
            (vec!["10.3.0.0/16".into(), "10.3.0.0/24".into(), "10.4.0.0/24".into()], 0)
        );
        // One more than the safe ones: the shortest other is taken.
        let room = plan_room(&rib, &plan, [4, 5, 5, 5]);
        assert_eq!(names(&room), ["10.0.0.0/16", "10.3.0.0/16", "10.3.0.0/24", "10.4.0.0/24"]);
        assert_eq!(room.unsafe_fallbacks, 1);
    }
}
