//! BGP's paths as the learner keeps them: every best path of interest by
//! NLRI, with who taught it and whether its peer went down; which SR Policy
//! paths are for this host (RFC 9830 section 4.2.1) and which are invalid;
//! and the selection and steering computed from them, incrementally.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use super::accept::{accept, Ignored};
use super::counters::{add, set, BgpCounters};
use super::origins::{BgpTable, PolicyInfo};
use super::select::{select_live, Candidate, Invalid, PolicyKey, Selected};
use super::steer::{policy_for, steer, ColoredRoute};
use super::wire::{Learned as Said, Nlri, PathUpdate};
use crate::domain::label::Label;
use crate::domain::policy::{NoLivePath, MAX_SEGMENT_LISTS};

/// A path as kept: what it says, who taught it, whether its peer went down.
#[derive(Debug)]
pub(super) struct Entry<T> {
    value: T,
    neighbor: String,
    stale: bool,
}

/// Every best path of interest, by NLRI, and the last steering computed
/// from them (kept, so that a batch recomputes only the routes it touches).
#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) candidates: HashMap<(u32, PolicyKey), Entry<Candidate>>,
    pub(super) routes: HashMap<IpNetwork, Entry<ColoredRoute>>,
    /// Routes by the (color, next hop) pairs they could be steered by.
    by_key: HashMap<PolicyKey, HashSet<IpNetwork>>,
    /// Routes added, changed or removed since the last computation.
    dirty: HashSet<IpNetwork>,
    /// The last computation: each steered route's policy, and the selection.
    steered: BTreeMap<IpNetwork, PolicyKey>,
    selected: BTreeMap<PolicyKey, Selected>,
    /// False until the first computation (and after a wholesale replacement):
    /// then everything is recomputed.
    incremental: bool,
    /// What the steering moved since it was last taken: each prefix's
    /// policy now (`None`: unsteered); `None` after a whole recomputation.
    moved: Option<BTreeMap<IpNetwork, Option<PolicyKey>>>,
    /// This host's BGP identifier, which route targets must name.
    pub(super) router_id: Option<Ipv4Addr>,
    /// SR Policy paths not for this host, and why (each logged once).
    pub(super) ignored: HashMap<(u32, PolicyKey), Ignored>,
    /// Invalid candidate paths for this host, and why (each logged once).
    pub(super) invalid: HashMap<(u32, PolicyKey), Invalid>,
    /// What the packets of a policy with no live path do (`[sbfd] no_live_path`).
    pub(super) no_live_path: NoLivePath,
    /// The routes kept stale (their peer, or GoBGP, went away): kept as a
    /// set beside the entries' flags so that the held gauge, read at every
    /// batch, costs what is held and not the whole table.
    stale_routes: HashSet<IpNetwork>,
}

/// What [`Table::drop_stale`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Dropped {
    /// Colored routes.
    pub(super) routes: usize,
    /// SR Policy candidate paths.
    pub(super) paths: usize,
}

/// What one neighbor taught, as the table has it now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Taught {
    /// Colored routes.
    pub(super) routes: usize,
    /// SR Policy candidate paths (for this host).
    pub(super) paths: usize,
}

/// For a path with no usable segment list, which rule each list broke (the
/// reason alone read the same for a weight 0, 17 labels and a reserved
/// label); empty for the other reasons.
fn list_problems_text(c: &Candidate, reason: Invalid) -> String {
    if reason != Invalid::NoUsableSegmentList {
        return String::new();
    }
    if c.lists.is_empty() {
        return "; it has no segment list".to_owned();
    }
    let lists: Vec<String> = c.list_problems().iter().map(|(i, p)| format!("list {}: {p}", i + 1)).collect();
    format!("; {}", lists.join("; "))
}

/// Who sent a path, for the logs.
pub(super) fn sender(neighbor: &str) -> String {
    if neighbor.is_empty() {
        "GoBGP itself (a local path)".to_owned()
    } else {
        format!("peer {neighbor}")
    }
}

/// The (color, next hop) pairs a route could be steered by.
fn keys_of(route: &ColoredRoute) -> impl Iterator<Item = PolicyKey> + '_ {
    route.colors.iter().map(|&color| PolicyKey { color, endpoint: route.next_hop })
}

impl Table {
    /// An empty table matching route targets against `router_id`, whose
    /// invalid policies' packets do what `no_live_path` says.
    pub(super) fn new(router_id: Option<Ipv4Addr>, no_live_path: NoLivePath) -> Table {
        Table { router_id, no_live_path, ..Table::default() }
    }

    /// Applies one update. `down`: neighbors whose withdrawals are kept.
    pub(super) fn update(&mut self, u: PathUpdate, down: &HashSet<String>, counters: &BgpCounters) {
        let neighbor = u.neighbor;
        match (u.nlri, u.learned) {
            (Nlri::SrPolicy { distinguisher, key }, Some(Said::Candidate(c))) => {
                add(&counters.updates, 1);
                let id = (distinguisher, key);
                if let Err(reason) = accept(&c.addressing, self.router_id) {
                    counters.policies_ignored_total.add(reason.index(), 1);
                    if self.ignored.insert(id, reason) != Some(reason) {
                        let text = format!(
                            "BGP: SR policy {key} distinguisher {distinguisher} from {} ({}) is not for this host \
                             (BGP identifier {}), ignored: {reason}",
                            sender(&neighbor),
                            c.addressing,
                            self.router_id.map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
                        );
                        // Behind a route reflector every host hears every
                        // headend's paths: a mismatch is the normal case.
                        if reason == Ignored::RouteTargetMismatch {
                            log::info!("{text}");
                        } else {
                            log::warn!("{text}");
                        }
                    }
                    // Whatever this NLRI said before no longer holds here.
                    self.candidates.remove(&id);
                    self.invalid.remove(&id);
                    return;
                }
                self.ignored.remove(&id);
                match c.invalid() {
                    Some(reason) => {
                        counters.candidate_paths_invalid_total.add(reason.index(), 1);
                        if self.invalid.insert(id, reason) != Some(reason) {
                            log::warn!(
                                "BGP: SR policy {key} distinguisher {distinguisher} from {} is an invalid candidate \
                                 path, never active: {reason}{}",
                                sender(&neighbor),
                                list_problems_text(&c, reason)
                            );
                        }
                    }
                    None => {
                        if self.invalid.remove(&id).is_some() {
                            log::info!(
                                "BGP: SR policy {key} distinguisher {distinguisher} from {} is valid again",
                                sender(&neighbor)
                            );
                        }
                    }
                }
                let usable = c.usable_lists();
                if usable > MAX_SEGMENT_LISTS && self.candidates.get(&id).map(|e| &e.value) != Some(&c) {
                    add(&counters.segment_lists_cut, 1);
                    log::warn!(
                        "BGP: SR policy {key} distinguisher {distinguisher} from {} has {usable} usable segment \
                         lists: only the first {MAX_SEGMENT_LISTS} are used (a policy holds at most \
                         {MAX_SEGMENT_LISTS}); the others carry no traffic",
                        sender(&neighbor)
                    );
                }
                if let Some(name) = &c.name {
                    log::debug!("BGP: SR policy {key} distinguisher {distinguisher} is named {name:?}");
                }
                if let Some(sid) = c.srv6_binding_sid {
                    // Logged when first seen for this path, not at every re-announcement.
                    let known = self.candidates.get(&id).is_some_and(|e| e.value.srv6_binding_sid == Some(sid));
                    if !known {
                        log::info!(
                            "BGP: SR policy {key} distinguisher {distinguisher} from {} has the SRv6 binding SID {sid}: \
                             not used (this headend pushes SR-MPLS labels)",
                            sender(&neighbor)
                        );
                    }
                }
                if c.ignored_segments > 0 {
                    add(&counters.ignored_segments, u64::from(c.ignored_segments));
                    log::warn!(
                        "SR policy {key} distinguisher {distinguisher}: {} segment(s) of types other than SR-MPLS \
                         labels; the segment lists holding them are not used",
                        c.ignored_segments
                    );
                }
                self.candidates.insert((distinguisher, key), Entry { value: c, neighbor, stale: false });
            }
            (Nlri::Unicast(prefix), Some(Said::Route { next_hop, colors })) => {
                add(&counters.updates, 1);
                let entry = Entry { value: ColoredRoute { next_hop, colors }, neighbor, stale: false };
                self.put_route(prefix, entry);
            }
            (Nlri::SrPolicy { distinguisher, key }, None) => {
                add(&counters.withdrawals, 1);
                let id = (distinguisher, key);
                self.ignored.remove(&id);
                withdraw(&mut self.candidates, &id, down, counters);
                if !self.candidates.contains_key(&id) {
                    self.invalid.remove(&id);
                }
            }
            (Nlri::Unicast(prefix), None) => {
                add(&counters.withdrawals, 1);
                match withdraw(&mut self.routes, &prefix, down, counters) {
                    Some(e) => {
                        self.stale_routes.remove(&prefix);
                        self.unindex(prefix, &e.value);
                    }
                    None if self.routes.get(&prefix).is_some_and(|e| e.stale) => {
                        self.stale_routes.insert(prefix);
                    }
                    None => {}
                }
            }
            // An NLRI that says something of the other kind: ignore.
            _ => {}
        }
    }

    /// Removes the stale paths of `neighbor` (every stale path for `None`);
    /// how many went, for the log.
    pub(super) fn drop_stale(&mut self, neighbor: Option<&str>) -> Dropped {
        fn gone<T>(e: &Entry<T>, neighbor: Option<&str>) -> bool {
            e.stale && neighbor.is_none_or(|n| e.neighbor == n)
        }
        let paths_before = self.candidates.len();
        self.candidates.retain(|_, e| !gone(e, neighbor));
        let paths = paths_before - self.candidates.len();
        self.invalid.retain(|id, _| self.candidates.contains_key(id));
        let removed: Vec<IpNetwork> = self
            .stale_routes
            .iter()
            .filter(|p| self.routes.get(p).is_some_and(|e| gone(e, neighbor)))
            .copied()
            .collect();
        for prefix in &removed {
            self.stale_routes.remove(prefix);
            if let Some(e) = self.routes.remove(prefix) {
                self.unindex(*prefix, &e.value);
            }
        }
        Dropped { routes: removed.len(), paths }
    }

    /// The routes and candidate paths `neighbor` taught that the table holds
    /// now (fresh or stale).
    pub(super) fn taught_by(&self, neighbor: &str) -> Taught {
        Taught {
            routes: self.routes.values().filter(|e| e.neighbor == neighbor).count(),
            paths: self.candidates.values().filter(|e| e.neighbor == neighbor).count(),
        }
    }

    /// The routes kept stale now: withdrawn while their session was down, or
    /// not taught again since GoBGP came back.
    pub(super) fn stale_routes(&self) -> &HashSet<IpNetwork> {
        &self.stale_routes
    }

    /// Takes over `old`'s stale paths that this table (a fresh snapshot)
    /// lacks, except SR Policy paths the snapshot says are not for this
    /// host: under `keep` they stay until the release.
    pub(super) fn keep_stale_from(&mut self, old: &mut Table) {
        for (k, e) in old.candidates.drain() {
            if e.stale && !self.ignored.contains_key(&k) {
                self.candidates.entry(k).or_insert(e);
            }
        }
        for (prefix, e) in old.routes.drain() {
            if e.stale && !self.routes.contains_key(&prefix) {
                self.stale_routes.insert(prefix);
                self.routes.insert(prefix, e);
            }
        }
        old.stale_routes.clear();
    }

    /// Adds or replaces a route, keeping the index.
    fn put_route(&mut self, prefix: IpNetwork, entry: Entry<ColoredRoute>) {
        for key in keys_of(&entry.value) {
            self.by_key.entry(key).or_default().insert(prefix);
        }
        self.stale_routes.remove(&prefix);
        if let Some(old) = self.routes.insert(prefix, entry) {
            let kept: Vec<PolicyKey> =
                self.routes.get(&prefix).map(|e| keys_of(&e.value).collect()).unwrap_or_default();
            for key in keys_of(&old.value).filter(|k| !kept.contains(k)) {
                self.unindex_key(prefix, key);
            }
        }
        self.dirty.insert(prefix);
    }

    fn unindex(&mut self, prefix: IpNetwork, route: &ColoredRoute) {
        for key in keys_of(route) {
            self.unindex_key(prefix, key);
        }
        self.dirty.insert(prefix);
    }

    fn unindex_key(&mut self, prefix: IpNetwork, key: PolicyKey) {
        if let Some(set) = self.by_key.get_mut(&key) {
            set.remove(&prefix);
            if set.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Every candidate path kept (for this host, valid or not).
    pub(super) fn candidate_paths(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates.values().map(|e| &e.value)
    }

    /// Marks every path stale (GoBGP went away under `keep`).
    pub(super) fn mark_all_stale(&mut self) {
        self.candidates.values_mut().for_each(|e| e.stale = true);
        self.routes.values_mut().for_each(|e| e.stale = true);
        self.stale_routes = self.routes.keys().copied().collect();
    }

    /// The steered routes and active policies, and the gauges. Only the
    /// routes changed since the last computation, and those of a (color,
    /// endpoint) whose policy became valid or invalid, are steered again.
    #[cfg(test)]
    pub(super) fn compute(&mut self, counters: &BgpCounters) -> BgpTable {
        self.compute_live(counters, &|_, _| false)
    }

    /// As `compute`, with the segment lists `down` names out of service
    /// (S-BFD): see [`select_live`].
    #[cfg(test)]
    pub(super) fn compute_live(&mut self, counters: &BgpCounters, down: &dyn Fn(IpAddr, &[Label]) -> bool) -> BgpTable {
        self.steer_live(down);
        self.table(counters, true)
    }

    /// Selects and steers again what changed (see `compute`); whether any
    /// route was steered again. When none was, the routes handed over last
    /// stand and only the policies can have changed (a preference switch, a
    /// weight, a list down, the policy becoming invalid or valid again): the
    /// learner then hands over the policies alone.
    pub(super) fn steer_live(&mut self, down: &dyn Fn(IpAddr, &[Label]) -> bool) -> bool {
        let selected = select_live(self.candidates.values().map(|e| &e.value), down);
        let mut resteered = true;
        if self.incremental {
            // Known and valid, known and invalid, or unknown: a route of a
            // key that went from one to another may be steered elsewhere.
            let state = |m: &BTreeMap<PolicyKey, Selected>, k: &PolicyKey| m.get(k).map(|s| s.policy.is_some());
            let flipped: Vec<PolicyKey> = self
                .selected
                .keys()
                .chain(selected.keys())
                .filter(|k| state(&self.selected, k) != state(&selected, k))
                .copied()
                .collect();
            let dirty = std::mem::take(&mut self.dirty);
            // A route added, changed or withdrawn is handed over in any case;
            // a flip re-steers its routes, most of which stay on the same key
            // (a policy turning invalid keeps them, on its invalid object).
            resteered = !dirty.is_empty();
            let mut again = dirty;
            for key in flipped {
                if let Some(set) = self.by_key.get(&key) {
                    again.extend(set.iter().copied());
                }
            }
            for prefix in again {
                let now = self.routes.get(&prefix).and_then(|e| policy_for(&e.value, &selected));
                let before = match now {
                    Some(key) => self.steered.insert(prefix, key),
                    None => self.steered.remove(&prefix),
                };
                if before != now {
                    resteered = true;
                    if let Some(moved) = self.moved.as_mut() {
                        moved.insert(prefix, now);
                    }
                }
            }
        } else {
            self.steered = steer(self.routes.iter().map(|(p, e)| (p, &e.value)), &selected).0;
            self.by_key.clear();
            for (prefix, e) in &self.routes {
                for key in keys_of(&e.value) {
                    self.by_key.entry(key).or_default().insert(*prefix);
                }
            }
            self.dirty.clear();
            self.incremental = true;
            self.moved = None;
        }
        self.selected = selected;
        resteered
    }

    /// What the steering moved since the last call (prefix -> its policy
    /// now, `None`: unsteered), or `None` when it was recomputed whole since
    /// (then the whole table is to be handed over).
    pub(super) fn take_moved(&mut self) -> Option<BTreeMap<IpNetwork, Option<PolicyKey>>> {
        self.moved.replace(BTreeMap::new())
    }

    /// BGP's table from the last [`Table::steer_live`], with the gauges;
    /// `with_routes` false leaves the steered routes out (they stand).
    pub(super) fn table(&self, counters: &BgpCounters, with_routes: bool) -> BgpTable {
        let selected = &self.selected;
        let routes = if with_routes { self.steered.clone() } else { BTreeMap::new() };
        let unsteered = self.routes.len() - self.steered.len();
        let policies = selected
            .iter()
            .filter_map(|(k, s)| {
                let info = PolicyInfo {
                    color: k.color,
                    endpoint: k.endpoint,
                    preference: s.preference,
                    distinguisher: s.distinguisher.unwrap_or_default(),
                    binding_sid: s.binding_sid,
                    name: s.name.clone(),
                    enlp: s.enlp,
                };
                Some((*k, (s.policy.clone()?, info)))
            })
            .collect::<BTreeMap<_, _>>();
        set(&counters.policies_active, policies.len() as u64);
        set(&counters.policies_invalid, (selected.len() - policies.len()) as u64);
        set(&counters.candidate_paths, self.candidates.len() as u64);
        set(&counters.routes_steered, self.steered.len() as u64);
        set(&counters.routes_unsteered, unsteered as u64);
        for reason in Ignored::ALL {
            let n = self.ignored.values().filter(|r| **r == reason).count();
            counters.policies_ignored.set(reason.index(), n as u64);
        }
        for reason in Invalid::ALL {
            let n = self.invalid.values().filter(|r| **r == reason).count();
            counters.candidate_paths_invalid.set(reason.index(), n as u64);
        }
        let invalid = self.selected.iter().filter(|(_, s)| s.policy.is_none()).map(|(k, _)| *k).collect();
        BgpTable { routes, policies, invalid, no_live_path: self.no_live_path }
    }
}

/// Withdraws `key`: removed (and returned), or kept stale when its peer is `down`.
fn withdraw<K: std::hash::Hash + Eq, T>(
    map: &mut HashMap<K, Entry<T>>,
    key: &K,
    down: &HashSet<String>,
    counters: &BgpCounters,
) -> Option<Entry<T>> {
    match map.get_mut(key) {
        Some(e) if down.contains(&e.neighbor) => {
            e.stale = true;
            add(&counters.withdrawals_kept, 1);
            None
        }
        Some(_) => map.remove(key),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::accept::Addressing;
    use crate::bgp::select::{select, CandidateList};

    fn key() -> PolicyKey {
        PolicyKey { color: 100, endpoint: "192.0.2.1".parse().unwrap() }
    }

    fn announce(nlri: Nlri, neighbor: &str) -> PathUpdate {
        let learned = match nlri {
            Nlri::SrPolicy { distinguisher, key } => Said::Candidate(Candidate {
                lists: vec![CandidateList { weight: 1, labels: vec![16001], unsupported: 0 }],
                addressing: Addressing::peer(),
                ..Candidate::new(distinguisher, key)
            }),
            Nlri::Unicast(_) => Said::Route { next_hop: key().endpoint, colors: vec![100] },
        };
        PathUpdate { nlri, neighbor: neighbor.into(), learned: Some(learned) }
    }

    #[test]
    fn incremental_steering_equals_steering_everything() {
        // A small deterministic generator (no dependency): xorshift.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let none = HashSet::new();
        let endpoint = |i: u64| -> IpAddr { IpAddr::from([192, 0, 2, 1 + (i % 2) as u8]) };
        let mut mirror: BTreeMap<IpNetwork, PolicyKey> = BTreeMap::new();
        for step in 0..2000 {
            match next(6) {
                0 | 1 => {
                    let prefix: IpNetwork = format!("10.{}.0.0/16", next(60)).parse().unwrap();
                    let colors = (0..next(3)).map(|_| 1 + next(5) as u32).collect();
                    let learned = Some(Said::Route { next_hop: endpoint(next(2)), colors });
                    t.update(
                        PathUpdate { nlri: Nlri::Unicast(prefix), neighbor: "n".into(), learned },
                        &none,
                        &counters,
                    );
                }
                2 => {
                    let prefix: IpNetwork = format!("10.{}.0.0/16", next(60)).parse().unwrap();
                    t.update(
                        PathUpdate { nlri: Nlri::Unicast(prefix), neighbor: "n".into(), learned: None },
                        &none,
                        &counters,
                    );
                }
                3 => {
                    let key = PolicyKey { color: 1 + next(5) as u32, endpoint: endpoint(next(2)) };
                    let weight = next(2) as u32; // 0: invalid
                    let c = Candidate {
                        lists: vec![CandidateList { weight, labels: vec![16001 + step], unsupported: 0 }],
                        addressing: Addressing::peer(),
                        ..Candidate::new(1, key)
                    };
                    let nlri = Nlri::SrPolicy { distinguisher: 1, key };
                    t.update(
                        PathUpdate { nlri, neighbor: "n".into(), learned: Some(Said::Candidate(c)) },
                        &none,
                        &counters,
                    );
                }
                4 => {
                    let key = PolicyKey { color: 1 + next(5) as u32, endpoint: endpoint(next(2)) };
                    let nlri = Nlri::SrPolicy { distinguisher: 1, key };
                    t.update(PathUpdate { nlri, neighbor: "n".into(), learned: None }, &none, &counters);
                }
                _ => {
                    let got = t.compute(&counters).routes;
                    let selected = select(t.candidates.values().map(|e| &e.value));
                    let want = steer(t.routes.iter().map(|(p, e)| (p, &e.value)), &selected).0;
                    assert_eq!(got, want, "step {step}");
                    // What the learner hands over instead of the table: the moves.
                    match t.take_moved() {
                        Some(moved) => {
                            for (p, k) in moved {
                                match k {
                                    Some(k) => mirror.insert(p, k),
                                    None => mirror.remove(&p),
                                };
                            }
                        }
                        None => mirror = got,
                    }
                    assert_eq!(mirror, want, "step {step}: the moves replayed");
                }
            }
        }
    }

    /// A table a peer (10.201.0.1) taught a policy and two routes colored for it.
    fn taught(counters: &BgpCounters) -> (Table, [Nlri; 3]) {
        let mut t = Table::default();
        let policy = Nlri::SrPolicy { distinguisher: 1, key: key() };
        let (a, b) = (Nlri::Unicast("10.0.0.0/8".parse().unwrap()), Nlri::Unicast("10.1.0.0/16".parse().unwrap()));
        for n in [policy, a, b] {
            t.update(announce(n, "10.201.0.1"), &HashSet::new(), counters);
        }
        (t, [policy, a, b])
    }

    #[test]
    fn withdrawals_of_a_down_peer_are_kept_stale_until_released() {
        let counters = BgpCounters::default();
        let none = HashSet::new();
        let (mut t, [policy, a, b]) = taught(&counters);
        assert_eq!(t.compute(&counters).routes.len(), 2);
        // The peer is down: its withdrawals are kept, stale.
        let down: HashSet<String> = ["10.201.0.1".to_owned()].into();
        for n in [policy, a, b] {
            t.update(PathUpdate { nlri: n, neighbor: "10.201.0.1".into(), learned: None }, &down, &counters);
        }
        assert_eq!(t.compute(&counters).routes.len(), 2);
        assert_eq!(counters.withdrawals_kept.load(std::sync::atomic::Ordering::Relaxed), 3);
        // Back: it teaches the policy and one route again; the other goes at the release.
        t.update(announce(policy, "10.201.0.1"), &none, &counters);
        t.update(announce(a, "10.201.0.1"), &none, &counters);
        t.drop_stale(Some("10.201.0.1"));
        let routes = t.compute(&counters).routes;
        assert_eq!(routes.keys().map(|p| p.to_string()).collect::<Vec<_>>(), ["10.0.0.0/8"]);
        // A withdrawal from a peer that is up is applied at once.
        t.update(PathUpdate { nlri: a, neighbor: "10.201.0.1".into(), learned: None }, &none, &counters);
        assert!(t.compute(&counters).routes.is_empty());
    }

    /// An invalid path's WARN names each list and the rule it broke.
    #[test]
    fn an_invalid_paths_log_names_each_lists_problem() {
        let mut c = Candidate::new(1, key());
        c.lists = vec![
            CandidateList { weight: 0, labels: vec![16001], unsupported: 0 },
            CandidateList { weight: 1, labels: vec![16001, 3], unsupported: 0 },
        ];
        let text = list_problems_text(&c, Invalid::NoUsableSegmentList);
        assert!(text.starts_with("; list 1: weight 0 (a list needs a weight above 0); list 2: label 3 is"), "{text}");
        assert_eq!(
            list_problems_text(&Candidate::new(1, key()), Invalid::NoUsableSegmentList),
            "; it has no segment list"
        );
        assert_eq!(list_problems_text(&c, Invalid::NoTunnelEncapsulation), "");
    }

    /// More than 8 usable lists were cut to 8 silently: counted (and
    /// logged) once per change of the path, not at every re-announcement.
    #[test]
    fn more_than_eight_usable_lists_are_cut_and_counted_once_per_change() {
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let none = HashSet::new();
        let nine = |w: u32| {
            let mut u = candidate(1, 16001, Addressing::peer());
            if let Some(Said::Candidate(c)) = &mut u.learned {
                c.lists =
                    (0..9).map(|i| CandidateList { weight: w, labels: vec![17000 + i], unsupported: 0 }).collect();
            }
            u
        };
        t.update(nine(1), &none, &counters);
        t.update(nine(1), &none, &counters);
        assert_eq!(counters.segment_lists_cut.load(std::sync::atomic::Ordering::Relaxed), 1);
        t.update(nine(2), &none, &counters);
        assert_eq!(counters.segment_lists_cut.load(std::sync::atomic::Ordering::Relaxed), 2);
        let table = t.compute(&counters);
        assert_eq!(table.policies.values().next().map(|(p, _)| p.lists().len()), Some(8));
        t.update(candidate(1, 16001, Addressing::peer()), &none, &counters);
        assert_eq!(counters.segment_lists_cut.load(std::sync::atomic::Ordering::Relaxed), 2, "one list: not cut");
    }

    /// The held gauge counts these: withdrawn while the session was down,
    /// or not taught again since GoBGP came back (it stayed 0 through a
    /// session loss). The release says how many went.
    #[test]
    fn stale_routes_are_tracked_and_the_release_counts_what_it_removed() {
        let counters = BgpCounters::default();
        let none = HashSet::new();
        let (mut t, [policy, a, b]) = taught(&counters);
        assert_eq!(t.taught_by("10.201.0.1"), Taught { routes: 2, paths: 1 });
        assert!(t.stale_routes().is_empty());
        let down: HashSet<String> = ["10.201.0.1".to_owned()].into();
        for n in [policy, a, b] {
            t.update(PathUpdate { nlri: n, neighbor: "10.201.0.1".into(), learned: None }, &down, &counters);
        }
        assert_eq!(t.stale_routes().len(), 2);
        t.update(announce(a, "10.201.0.1"), &none, &counters);
        assert_eq!(t.stale_routes().len(), 1, "taught again: no longer held");
        assert_eq!(t.drop_stale(Some("10.201.0.9")), Dropped::default(), "another session's");
        assert_eq!(t.drop_stale(Some("10.201.0.1")), Dropped { routes: 1, paths: 1 });
        assert!(t.stale_routes().is_empty());
        // GoBGP away and back: the snapshot teaches one route again; the other stays held.
        t.update(announce(b, "10.201.0.1"), &none, &counters);
        t.mark_all_stale();
        assert_eq!(t.stale_routes().len(), 2);
        let mut fresh = Table::default();
        fresh.update(announce(a, "10.201.0.1"), &none, &counters);
        fresh.keep_stale_from(&mut t);
        assert_eq!(fresh.stale_routes().iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["10.1.0.0/16"]);
        assert_eq!(fresh.drop_stale(None), Dropped { routes: 1, paths: 0 });
        assert_eq!(fresh.routes.len(), 1);
    }

    /// The learner's computation with S-BFD's word: a route stays steered
    /// while one path has a live list, through the backup path, and stays on
    /// the policy, then invalid (its object passes packets unlabelled), when
    /// none has.
    #[test]
    fn liveness_moves_routes_to_the_backup_path_then_onto_the_invalid_policy() {
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let none = HashSet::new();
        let mut primary = candidate(2, 16002, Addressing::peer());
        if let Some(Said::Candidate(c)) = &mut primary.learned {
            c.preference = 200;
            c.lists.push(CandidateList { weight: 1, labels: vec![16012], unsupported: 0 });
        }
        t.update(primary, &none, &counters);
        t.update(candidate(1, 16001, Addressing::peer()), &none, &counters);
        t.update(announce(Nlri::Unicast("10.0.0.0/8".parse().unwrap()), "10.201.0.1"), &none, &counters);
        let dead = |labels: &'static [u32]| move |_: IpAddr, l: &[Label]| labels.contains(&l[0].value());
        let all = t.compute_live(&counters, &dead(&[]));
        assert_eq!(labels(&all), ["16002@1,16012@1"]);
        let one = t.compute_live(&counters, &dead(&[16012]));
        let (policy, info) = one.policies.values().next().unwrap();
        assert!(policy.is_list_down(1) && !policy.is_list_down(0));
        assert_eq!(info.distinguisher, 2);
        let backup = t.compute_live(&counters, &dead(&[16002, 16012]));
        assert_eq!((labels(&backup), backup.routes.len()), (vec!["16001".to_owned()], 1));
        let gone = t.compute_live(&counters, &dead(&[16001, 16002, 16012]));
        // Still steered: into the policy's invalid object (unlabelled).
        assert!(gone.policies.is_empty() && gone.invalid.contains(&key()));
        assert_eq!(gone.routes.values().collect::<Vec<_>>(), [&key()]);
        let back = t.compute_live(&counters, &dead(&[]));
        assert_eq!((labels(&back), back.routes.len()), (vec!["16002@1,16012@1".to_owned()], 1));
    }

    /// `no_live_path = "drop"`: the same steering, and the invalid policy's
    /// object drops its routes' packets (the unlabelled one by default).
    #[test]
    fn the_table_says_what_an_invalid_policys_packets_do() {
        let counters = BgpCounters::default();
        let none = HashSet::new();
        let prefix: IpNetwork = "10.0.0.0/8".parse().unwrap();
        for (then, text) in [(NoLivePath::Unlabelled, "invalid"), (NoLivePath::Drop, "invalid drop")] {
            let mut t = Table::new(None, then);
            t.update(candidate(1, 16001, Addressing::peer()), &none, &counters);
            t.update(announce(Nlri::Unicast(prefix), "10.201.0.1"), &none, &counters);
            let gone = t.compute_live(&counters, &|_, _| true);
            assert_eq!(gone.no_live_path, then);
            let (route, k) = gone.route(prefix).expect("still steered");
            assert_eq!(
                (route.policy.to_string(), route.policy.when_invalid(), k),
                (text.to_owned(), Some(then), key())
            );
            let live = t.compute_live(&counters, &|_, _| false);
            assert_eq!(live.route(prefix).map(|(r, _)| r.policy.to_string()), Some("16001".to_owned()), "{then}");
        }
        assert_eq!(Table::default().no_live_path, NoLivePath::Unlabelled, "the default");
    }

    /// What decides the learner's fast path (policies alone, no route
    /// handed over): a batch that moves no route to another policy.
    #[test]
    fn a_switch_or_a_list_down_steers_nothing_again_a_route_or_a_validity_flip_does() {
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let none = HashSet::new();
        t.update(candidate(1, 16001, Addressing::peer()), &none, &counters);
        t.update(announce(Nlri::Unicast("10.0.0.0/8".parse().unwrap()), "10.201.0.1"), &none, &counters);
        let live = |_: IpAddr, _: &[Label]| false;
        assert!(t.steer_live(&live), "the first computation steers everything");
        let mut better = candidate(2, 16002, Addressing::peer());
        if let Some(Said::Candidate(c)) = &mut better.learned {
            c.preference = 200;
            c.lists.push(CandidateList { weight: 1, labels: vec![16012], unsupported: 0 });
        }
        t.update(better, &none, &counters);
        assert!(!t.steer_live(&live), "a preference switch moves no route");
        let one_down = |_: IpAddr, l: &[Label]| l[0].value() == 16012;
        assert!(!t.steer_live(&one_down), "a list out of service moves no route");
        assert!(t.table(&counters, false).policies.values().all(|(p, _)| p.is_list_down(1)));
        assert!(!t.steer_live(&live));
        let policies = t.table(&counters, false);
        assert!(policies.routes.is_empty(), "the routes stand: not copied");
        assert_eq!(labels(&policies), ["16002@1,16012@1"]);
        assert_eq!(t.table(&counters, true).routes.len(), 1);
        t.update(announce(Nlri::Unicast("10.1.0.0/16".parse().unwrap()), "10.201.0.1"), &none, &counters);
        assert!(t.steer_live(&live), "a new colored route is steered");
        assert!(!t.steer_live(&live));
        let dead = |_: IpAddr, _: &[Label]| true;
        assert!(!t.steer_live(&dead), "every list down: the policy is invalid, its routes stay on it");
        assert!(t.table(&counters, false).invalid.contains(&key()));
        assert!(!t.steer_live(&live), "valid again: still no route moves");
        t.update(
            PathUpdate {
                nlri: Nlri::SrPolicy { distinguisher: 1, key: key() },
                neighbor: "10.201.0.1".into(),
                learned: None,
            },
            &none,
            &counters,
        );
        t.update(
            PathUpdate {
                nlri: Nlri::SrPolicy { distinguisher: 2, key: key() },
                neighbor: "10.201.0.1".into(),
                learned: None,
            },
            &none,
            &counters,
        );
        assert!(t.steer_live(&live), "the policy withdrawn: its routes are unsteered");
    }

    fn candidate(distinguisher: u32, label: u32, addressing: Addressing) -> PathUpdate {
        let c = Candidate {
            lists: vec![CandidateList { weight: 1, labels: vec![label], unsupported: 0 }],
            addressing,
            ..Candidate::new(distinguisher, key())
        };
        let nlri = Nlri::SrPolicy { distinguisher, key: key() };
        PathUpdate { nlri, neighbor: "10.201.0.1".into(), learned: Some(Said::Candidate(c)) }
    }

    fn labels(table: &BgpTable) -> Vec<String> {
        table.policies.values().map(|(p, _)| p.to_string()).collect()
    }

    #[test]
    fn only_the_paths_addressed_to_this_host_are_candidates() {
        let counters = BgpCounters::default();
        let me: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let mut t = Table { router_id: Some(me), ..Table::default() };
        let none = HashSet::new();
        // The same (color, endpoint), one path per headend, the other's preferred.
        let mine = candidate(2, 16002, Addressing::to(me));
        let mut theirs = candidate(3, 16003, Addressing::to("10.0.0.3".parse().unwrap()));
        if let Some(Said::Candidate(c)) = &mut theirs.learned {
            c.preference = 300;
        }
        t.update(mine, &none, &counters);
        t.update(theirs.clone(), &none, &counters);
        t.update(theirs, &none, &counters);
        t.update(candidate(4, 16004, Addressing::default()), &none, &counters);
        assert_eq!(labels(&t.compute(&counters)), ["16002"]);
        let reason = |r: Ignored| counters.policies_ignored_total.get(r.index());
        let now = |r: Ignored| counters.policies_ignored.get(r.index());
        assert_eq!((reason(Ignored::RouteTargetMismatch), now(Ignored::RouteTargetMismatch)), (2, 1));
        assert_eq!((reason(Ignored::NoRouteTarget), now(Ignored::NoRouteTarget)), (1, 1));
        // A path that was mine, re-announced for another host: gone, not kept.
        t.update(candidate(2, 16002, Addressing::to("10.0.0.9".parse().unwrap())), &none, &counters);
        assert!(labels(&t.compute(&counters)).is_empty());
        assert_eq!(now(Ignored::RouteTargetMismatch), 2);
        // Withdrawn: no longer counted as ignored now.
        t.update(
            PathUpdate { nlri: Nlri::SrPolicy { distinguisher: 3, key: key() }, neighbor: "x".into(), learned: None },
            &none,
            &counters,
        );
        t.compute(&counters);
        assert_eq!(now(Ignored::RouteTargetMismatch), 1);
    }

    #[test]
    fn a_path_whose_attribute_was_dropped_replaces_its_lists_and_is_counted() {
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let none = HashSet::new();
        t.update(candidate(1, 16001, Addressing::peer()), &none, &counters);
        t.update(candidate(2, 16002, Addressing::peer()), &none, &counters);
        assert_eq!(labels(&t.compute(&counters)), ["16002"]);
        // Distinguisher 2 again, without its Tunnel Encapsulation attribute.
        let mut dropped = candidate(2, 16002, Addressing::peer());
        if let Some(Said::Candidate(c)) = &mut dropped.learned {
            c.lists.clear();
            c.problem = Some(Invalid::NoTunnelEncapsulation);
        }
        t.update(dropped, &none, &counters);
        assert_eq!(labels(&t.compute(&counters)), ["16001"], "never the last known lists of distinguisher 2");
        let i = Invalid::NoTunnelEncapsulation.index();
        assert_eq!((counters.candidate_paths_invalid_total.get(i), counters.candidate_paths_invalid.get(i)), (1, 1));
        // Good again.
        t.update(candidate(2, 16012, Addressing::peer()), &none, &counters);
        assert_eq!(labels(&t.compute(&counters)), ["16012"]);
        assert_eq!(counters.candidate_paths_invalid.get(i), 0);
    }
}
