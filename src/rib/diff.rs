//! Desired state vs RIB: the changes that make one the other, nothing more.

use std::collections::{BTreeMap, HashMap};

use ipnetwork::IpNetwork;

use super::{Rib, RouteId};
use crate::domain::desired::ValidState;
use crate::domain::label::DscpMap;
use crate::domain::route::{Route, Table, Tc};
use crate::rib::objects::same_tc_kind;

/// What an apply changes; routes are borrowed from the desired state.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    /// The DSCP table, when it changes.
    pub dscp: Option<DscpMap>,
    /// Routes to write: new (false) or replacing one that differs (true).
    pub upserts: Vec<(RouteId, &'a Route, bool)>,
    /// Main-table routes for host addresses: set aside, not written.
    pub set_aside: Vec<(&'a Route, bool)>,
    /// Set-aside routes no longer wanted.
    pub set_aside_removed: Vec<IpNetwork>,
    /// Sources to write: new (false) or replacing (true).
    pub source_upserts: Vec<(IpNetwork, Table, bool)>,
    pub source_removes: Vec<IpNetwork>,
    /// Routes to delete.
    pub removes: Vec<RouteId>,
    /// Routes and set-aside routes already as wanted.
    pub unchanged: usize,
    /// Entries the desired state puts in each trie, by [`super::trie_index`]
    /// (set-aside routes not counted).
    pub trie_entries: [usize; 4],
    /// Routes of the desired state that need a policy entry of their own.
    pub policies: usize,
    /// The names of the shared policy objects the desired state uses (one
    /// entry each), with the first route seen for each.
    pub named: std::collections::HashMap<&'a str, &'a Route>,
    /// Two routes of the desired state whose policies share a name but not
    /// their contents (refused: one name is one object).
    pub conflict: Option<(&'a Route, &'a Route)>,
    /// A route of a patch taking its name's object to another traffic class
    /// kind while routes outside the patch stay on it (refused: an apply
    /// moves all of a name's routes at once, one route cannot), and the
    /// object's traffic class.
    pub kind_conflict: Option<(&'a Route, Tc)>,
    /// Shared objects the RIB holds that stay in use and that `named` does
    /// not list (a patch names only the objects its own routes use).
    pub objects_kept: usize,
}

impl Plan<'_> {
    /// True when applying it would change nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.dscp.is_none()
            && self.upserts.is_empty()
            && self.set_aside.is_empty()
            && self.set_aside_removed.is_empty()
            && self.source_upserts.is_empty()
            && self.source_removes.is_empty()
            && self.removes.is_empty()
    }

    /// Policy ids the desired state holds: one per route with a policy of
    /// its own, one per shared object however many routes use it.
    pub(crate) fn policy_ids(&self) -> usize {
        self.policies + self.named.len() + self.objects_kept
    }
}

/// Route changes to make: a route for an id, or none (removed). What an
/// origin hands the RIB when a few of its routes change.
pub(crate) type Patch = BTreeMap<RouteId, Option<Route>>;

/// The changes `patch` makes to `rib`, sources and DSCP table unchanged:
/// one lookup per changed route, no walk of the table (the entries per trie
/// and the policy ids of the result are counted from the RIB's running
/// counts and the patch). A named route whose content differs from its
/// object's rewrites the object (every route on it follows), as a single
/// `set` does.
pub(crate) fn plan_patch<'a>(rib: &Rib, patch: &'a Patch) -> Plan<'a> {
    let mut plan = Plan { trie_entries: rib.routes.trie_counts(), ..Plan::default() };
    let on_objects: usize = rib.objects.iter().map(|(_, o)| o.users).sum();
    let mut own = rib.policy_of.len().saturating_sub(on_objects) as isize;
    // Routes leaving each object (removed, or moved to another policy).
    let mut leaving: HashMap<u32, usize> = HashMap::new();
    for (id, new) in patch {
        let host = id.0 == Table::Main && rib.is_local_host(&id.1);
        if host {
            match (new, rib.shadowed.get(&id.1)) {
                (Some(route), Some(hidden)) if hidden == route => plan.unchanged += 1,
                (Some(route), hidden) => plan.set_aside.push((route, hidden.is_some())),
                (None, Some(_)) => plan.set_aside_removed.push(id.1),
                (None, None) => {}
            }
            continue;
        }
        let old = rib.routes.get(id).map(|r| rib.resolve(id, r));
        let trie = plan.trie_entries.get_mut(super::trie_index(id.0, &id.1));
        if let Some(n) = trie {
            *n = (*n + usize::from(new.is_some())).saturating_sub(usize::from(old.is_some()));
        }
        if let Some(old) = &old {
            match (old.policy.name(), rib.policy_of.get(id)) {
                (Some(_), Some(p)) => *leaving.entry(*p).or_default() += 1,
                (None, Some(_)) => own -= 1,
                _ => {}
            }
        }
        let Some(route) = new else {
            if old.is_some() {
                plan.removes.push(*id);
            }
            continue;
        };
        if !note_named(&mut plan, route) {
            own += isize::from(!route.policy.is_plain());
        }
        match old {
            Some(old) if *old == *route => plan.unchanged += 1,
            old => plan.upserts.push((*id, route, old.is_some())),
        }
    }
    plan.kind_conflict = plan.named.values().find_map(|route| {
        let (p, o) = route.policy.name().and_then(|n| rib.objects.named(n))?;
        let others = o.users > leaving.get(&p).copied().unwrap_or(0);
        (others && !same_tc_kind(o.tc, route.tc)).then_some((*route, o.tc))
    });
    plan.policies = own.max(0) as usize;
    plan.objects_kept = rib
        .objects
        .iter()
        .filter(|(p, o)| !plan.named.contains_key(o.name()) && o.users > leaving.get(p).copied().unwrap_or(0))
        .count();
    plan
}

/// The changes from `rib` to `desired`. Both sides are maps sorted by
/// (table, prefix), so one merge walk finds them: no lookup per route. The
/// walk is split in two at a fixed key and the halves run in parallel (a
/// full table is mostly a cache-missing walk).
pub(crate) fn plan<'a>(rib: &Rib, desired: &'a ValidState) -> Plan<'a> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let split: RouteId =
        (Table::Main, IpNetwork::V4(ipnetwork::Ipv4Network::from(std::net::Ipv4Addr::new(128, 0, 0, 0))));
    let (low, high) = std::thread::scope(|s| {
        let low = s.spawn(|| walk(rib, desired, (Unbounded, Excluded(split))));
        let high = walk(rib, desired, (Included(split), Unbounded));
        (low.join(), high)
    });
    // The halves are disjoint ranges: concatenated, they are the one walk.
    let mut plan = low.unwrap_or_else(|_| walk(rib, desired, (Unbounded, Excluded(split))));
    plan.upserts.extend(high.upserts);
    plan.set_aside.extend(high.set_aside);
    plan.removes.extend(high.removes);
    plan.unchanged += high.unchanged;
    for (n, m) in plan.trie_entries.iter_mut().zip(high.trie_entries) {
        *n += m;
    }
    plan.policies += high.policies;
    for (name, route) in high.named {
        match plan.named.get(name) {
            Some(seen) if !same_object_content(seen, route) => plan.conflict = plan.conflict.or(Some((seen, route))),
            Some(_) => {}
            None => {
                plan.named.insert(name, route);
            }
        }
    }
    plan.conflict = plan.conflict.or(high.conflict);

    plan.dscp = Some(*desired.dscp()).filter(|d| *d != rib.dscp);
    // A host address's entry is never a route's to remove (the RIB keeps such routes set aside).
    plan.removes.retain(|id| !(id.0 == Table::Main && rib.is_local_host(&id.1)));
    plan.set_aside_removed =
        rib.shadowed.keys().filter(|p| !desired.routes().contains_key(&(Table::Main, **p))).copied().collect();
    for (prefix, table) in desired.sources() {
        match rib.sources.get(prefix) {
            // Sources as wanted are not counted: `unchanged` counts routes,
            // beside `added`, `replaced` and `removed`.
            Some(old) if old == table => {}
            old => plan.source_upserts.push((*prefix, *table, old.is_some())),
        }
    }
    plan.source_removes = rib.sources.keys().filter(|p| !desired.sources().contains_key(p)).copied().collect();
    plan
}

/// Whether two routes with one policy name would find one object's content.
fn same_object_content(a: &Route, b: &Route) -> bool {
    a.tc == b.tc && a.policy == b.policy
}

/// Notes the object a named route points at (a second content under one
/// name is the plan's conflict); whether the route is named at all.
fn note_named<'a>(plan: &mut Plan<'a>, route: &'a Route) -> bool {
    let Some(name) = route.policy.name() else { return false };
    match plan.named.get(name) {
        Some(seen) if !same_object_content(seen, route) => plan.conflict = plan.conflict.or(Some((*seen, route))),
        Some(_) => {}
        None => {
            plan.named.insert(name, route);
        }
    }
    true
}

/// The route part of the plan over one key range of both maps.
fn walk<'a>(
    rib: &Rib,
    desired: &'a ValidState,
    range: (std::ops::Bound<RouteId>, std::ops::Bound<RouteId>),
) -> Plan<'a> {
    let mut plan = Plan::default();
    let mut have = rib.routes.range(range).peekable();
    for (id, route) in desired.routes().range(range) {
        while let Some((old_id, _)) = have.next_if(|(old_id, _)| *old_id < id) {
            plan.removes.push(*old_id);
        }
        // A route on a shared object compares as in force (the object's content).
        let old = have.next_if(|(old_id, _)| *old_id == id).map(|(old_id, r)| rib.resolve(old_id, r));
        if id.0 == Table::Main && rib.is_local_host(&id.1) {
            match rib.shadowed.get(&id.1) {
                Some(hidden) if hidden == route => plan.unchanged += 1,
                hidden => plan.set_aside.push((route, hidden.is_some())),
            }
            continue;
        }
        if let Some(n) = plan.trie_entries.get_mut(super::trie_index(id.0, &id.1)) {
            *n += 1;
        }
        if !note_named(&mut plan, route) {
            plan.policies += usize::from(!route.policy.is_plain());
        }
        match old {
            Some(old) if *old == *route => plan.unchanged += 1,
            old => plan.upserts.push((*id, route, old.is_some())),
        }
    }
    plan.removes.extend(have.map(|(id, _)| *id));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::desired::DesiredState;

    fn state(json: &str) -> ValidState {
        DesiredState::from_json(json).unwrap().validate().unwrap()
    }

    fn rib_of(v: &ValidState) -> Rib {
        let mut rib = Rib::new(10);
        rib.routes = v.routes().clone().into();
        rib.sources = v.sources().clone();
        rib
    }

    #[test]
    fn identical_is_empty_and_changes_are_minimal() {
        let a = state(
            r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100"},{"prefix":"10.1.0.0/16","policy":"200"},
            {"prefix":"10.2.0.0/16","policy":"300","table":4}],"sources":[{"prefix":"192.0.2.0/24","table":4}]}"#,
        );
        let rib = rib_of(&a);
        let same = plan(&rib, &a);
        assert!(same.is_empty());
        assert_eq!(same.unchanged, 3, "three routes (the source is not counted)");

        let b = state(
            r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100"},{"prefix":"10.1.0.0/16","policy":"201"},
            {"prefix":"10.3.0.0/16","policy":"300","table":4}],"dscp_map":[0,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,2,2,2,2,2,2,2,2,3,3,3,3,3,3,3,3,4,4,4,4,4,4,4,4,5,5,5,5,5,5,5,5,6,6,6,6,6,6,6,6,7,7,7,7,7,7,7,5]}"#,
        );
        let p = plan(&rib, &b);
        assert_eq!(p.unchanged, 1);
        assert_eq!(
            p.upserts.iter().map(|(id, _, replace)| (id.1.to_string(), *replace)).collect::<Vec<_>>(),
            [("10.1.0.0/16".to_string(), true), ("10.3.0.0/16".to_string(), false)]
        );
        assert_eq!(p.removes.iter().map(|id| id.1.to_string()).collect::<Vec<_>>(), ["10.2.0.0/16"]);
        assert_eq!(p.source_removes.len(), 1);
        assert!(p.dscp.is_some());
    }

    #[test]
    fn host_address_routes_are_set_aside() {
        let a = state(r#"{"routes":[{"prefix":"192.0.2.1/32","policy":"100"}]}"#);
        let mut rib = Rib::new(10);
        rib.local.insert("192.0.2.1".parse().unwrap());
        let p = plan(&rib, &a);
        assert!(p.upserts.is_empty());
        assert_eq!(p.set_aside.len(), 1);
    }
}
