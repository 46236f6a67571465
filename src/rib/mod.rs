//! The RIB: the one source of truth in user space. It holds what was asked
//! for (routes per table, sources, the DSCP table), what the host is (its
//! addresses, and the routes they set aside) and what was handed to the
//! kernel (policy ids, counter slots). Every map entry is derived from it
//! (see [`crate::fib`]); reads answer from it, never from the maps; it is
//! what a pinned dataplane saves beside its pins ([`store`]: a snapshot and
//! a journal of what changed) and what a second process adopts.
//!
//! It changes only after the kernel accepted a change, so it never claims
//! what the dataplane does not do.

pub(crate) mod alloc;
pub(crate) mod diff;
pub(crate) mod objects;
pub(crate) mod origins;
pub(crate) mod routes;
pub(crate) mod store;
pub(crate) mod tracked;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::domain::label::DscpMap;
use crate::domain::route::{Route, Table};
use alloc::{Boottime, CounterSlots, Slots};
use tracked::{Changed, Tracked};

/// A route's identity: its table and prefix.
pub(crate) type RouteId = (Table, IpNetwork);

#[derive(Debug, Clone)]
pub(crate) struct Rib {
    /// Installed routes, by table and prefix.
    pub routes: routes::Routes,
    /// Host addresses installed as never-label entries.
    pub local: BTreeSet<IpAddr>,
    /// Main-table routes set aside while a host address takes their /32 or /128.
    pub shadowed: BTreeMap<IpNetwork, Route>,
    /// Source prefixes and the alternate table each selects.
    pub sources: BTreeMap<IpNetwork, Table>,
    /// The DSCP -> TC table in force.
    pub dscp: DscpMap,
    /// The policy id of each installed policy route, kept while it stays
    /// one: its own, or its shared object's.
    pub policy_of: Tracked<u32>,
    /// The shared (named) policy objects, by id and name.
    pub objects: objects::Objects,
    pub policy_ids: Slots,
    /// Policies no route names any more, deleted once their grace period
    /// (from the stamp, on the clock every process shares) is over.
    pub graveyard: Vec<(u32, Boottime)>,
    /// Each route's counter slots (set-aside routes keep theirs).
    pub counters_of: Tracked<CounterSlots>,
    /// Each installed route's origin, where it is not `static` (stored with
    /// the route: the next agent knows which routes BGP taught).
    pub origin_of: Tracked<origins::Noted>,
    /// What the origins say of BGP's policies (preference, binding SID...),
    /// opaque here: written whole with the small sets when it changes.
    pub origin_notes: Vec<u8>,
    pub counter_slots: Slots,
}

impl Rib {
    pub(crate) fn new(counter_capacity: u32) -> Rib {
        Rib {
            routes: routes::Routes::default(),
            local: BTreeSet::new(),
            shadowed: BTreeMap::new(),
            sources: BTreeMap::new(),
            dscp: DscpMap::default(),
            policy_of: Tracked::default(),
            objects: objects::Objects::default(),
            policy_ids: Slots::new(u32::MAX),
            graveyard: Vec::new(),
            counters_of: Tracked::default(),
            origin_of: Tracked::default(),
            origin_notes: Vec::new(),
            counter_slots: Slots::new(counter_capacity),
        }
    }

    /// The routes of `table`, IPv4 first.
    pub(crate) fn routes_in(&self, table: Table) -> Vec<Route> {
        self.routes.iter().filter(|((t, _), _)| *t == table).map(|(id, r)| self.resolve(id, r).into_owned()).collect()
    }

    /// Whether `prefix` is the /32 or /128 of a host address.
    pub(crate) fn is_local_host(&self, prefix: &IpNetwork) -> bool {
        prefix.prefix() == max_len(prefix) && self.local.contains(&prefix.ip())
    }

    /// Policies whose grace period is over, removed from the graveyard.
    pub(crate) fn expired_policies(&mut self) -> Vec<u32> {
        let (expired, waiting): (Vec<_>, Vec<_>) = self.graveyard.drain(..).partition(|(_, at)| at.grace_over());
        self.graveyard = waiting;
        expired.into_iter().map(|(id, _)| id).collect()
    }

    /// A route's counter slots for `lists` segment lists (0 for a plain route):
    /// its own where it has them, new ones otherwise (0: none left). Returns the
    /// slots and those newly taken, which the caller zeroes or gives back.
    pub(crate) fn counters_for(&mut self, id: RouteId, lists: usize) -> (CounterSlots, Vec<u32>) {
        let mut slots = self.counters_of.get(&id).cloned().unwrap_or_default();
        let mut fresh = Vec::new();
        let mut take = |pool: &mut Slots| {
            // Slots retired by the change before wait out their grace (at most
            // GRACE) rather than leave this route uncounted.
            let s = pool.take_or_wait().unwrap_or(0);
            if s != 0 {
                fresh.push(s);
            }
            s
        };
        if slots.route == 0 {
            slots.route = take(&mut self.counter_slots);
        }
        while slots.lists.len() < lists {
            slots.lists.push(take(&mut self.counter_slots));
        }
        (slots, fresh)
    }

    /// Records a route's slots after the kernel accepted it; frees list slots
    /// beyond `lists`.
    pub(crate) fn keep_counters(&mut self, id: RouteId, mut slots: CounterSlots, lists: usize) {
        for s in slots.lists.drain(lists.min(slots.lists.len())..) {
            self.counter_slots.give_back(s);
        }
        self.counters_of.insert(id, slots);
    }

    /// Frees a removed route's slots.
    pub(crate) fn drop_counters(&mut self, id: &RouteId) {
        if let Some(slots) = self.counters_of.remove(id) {
            self.counter_slots.give_back(slots.route);
            for s in slots.lists {
                self.counter_slots.give_back(s);
            }
        }
    }

    /// Retires a route's policy id: the policy stays in the kernel through
    /// its grace period, for packets that already read the route. A shared
    /// object is retired (and its list slots freed) when its last route goes.
    pub(crate) fn retire_policy(&mut self, id: &RouteId) {
        if let Some(old) = self.policy_of.remove(id) {
            self.leave(old);
        }
    }

    /// One route less on policy id `p`.
    fn leave(&mut self, p: u32) {
        match self.objects.get_mut(p) {
            Some(o) if o.users > 1 => o.users -= 1,
            Some(_) => {
                if let Some(o) = self.objects.remove(p) {
                    o.lists.into_iter().for_each(|s| self.counter_slots.give_back(s));
                }
                self.graveyard.push((p, Boottime::now()));
            }
            None => self.graveyard.push((p, Boottime::now())),
        }
    }

    /// Points routes at their policy ids (`None`: none; their own, or an
    /// object already in [`Rib::objects`]), retiring those they had. Every
    /// route is counted on its new object before any is taken off its old one: an
    /// object that some routes leave while others join is never retired
    /// (and its id reused) under the ones that join.
    pub(crate) fn bind_policies(&mut self, binds: impl IntoIterator<Item = (RouteId, Option<u32>)>) {
        let mut left = Vec::new();
        for (id, p) in binds {
            let old = match p {
                Some(p) if self.policy_of.get(&id) == Some(&p) => continue,
                Some(p) => {
                    if let Some(o) = self.objects.get_mut(p) {
                        o.users += 1;
                    }
                    self.policy_of.insert(id, p)
                }
                None => self.policy_of.remove(&id),
            };
            left.extend(old);
        }
        for p in left {
            self.leave(p);
        }
    }

    /// The shared object a route points at, if any.
    pub(crate) fn object_of(&self, id: &RouteId) -> Option<&objects::Object> {
        self.policy_of.get(id).and_then(|p| self.objects.get(*p))
    }

    /// `route` (the RIB's, for `id`) as it is in force: a route on a shared
    /// object carries the object's content.
    pub(crate) fn resolve<'a>(&self, id: &RouteId, route: &'a Route) -> Cow<'a, Route> {
        if route.policy.name().is_none() {
            return Cow::Borrowed(route);
        }
        objects::resolve(route, self.object_of(id))
    }

    /// Every route in force, resolved, by table and prefix.
    #[cfg(all(feature = "agent", not(feature = "bgp")))]
    pub(crate) fn resolved_routes(&self) -> BTreeMap<RouteId, Route> {
        self.routes.iter().map(|(id, r)| (*id, self.resolve(id, r).into_owned())).collect()
    }

    /// The route ids whose route, policy id or counter slots changed since
    /// the last call (what the store writes), leaving none marked.
    pub(crate) fn take_changes(&mut self) -> Changed {
        let mut all = self.routes.dirty.take();
        for other in [self.policy_of.dirty.take(), self.counters_of.dirty.take(), self.origin_of.dirty.take()] {
            all = match (all, other) {
                (Changed::All, _) | (_, Changed::All) => Changed::All,
                (Changed::Ids(mut a), Changed::Ids(b)) => {
                    a.extend(b);
                    a.sort_unstable();
                    a.dedup();
                    Changed::Ids(a)
                }
            };
        }
        all
    }

    /// Marks `changes` again (a save that failed: the next one retries them).
    pub(crate) fn restore_changes(&mut self, changes: Changed) {
        self.routes.dirty.absorb(changes);
    }
}

/// Which route trie a route of `table` for `prefix` lives in: 0 main IPv4,
/// 1 main IPv6, 2 alternate IPv4, 3 alternate IPv6 (the RIB counts its
/// routes by trie for the capacity checks; the FIB picks its maps by it).
pub(crate) fn trie_index(table: Table, prefix: &IpNetwork) -> usize {
    usize::from(table != Table::Main) * 2 + usize::from(prefix.is_ipv6())
}

/// Link-local, 169.254.0.0/16 or fe80::/10: never routed, so the program
/// never labels it (packet.h's `packet_is_link_local`).
pub(crate) fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

pub(crate) fn max_len(prefix: &IpNetwork) -> u8 {
    if prefix.is_ipv4() {
        32
    } else {
        128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_looked_up_as_the_hosts_whatever_route_covers_it() {
        let mut rib = Rib::new(10);
        for p in ["0.0.0.0/0", "::/0", "169.254.0.0/16"] {
            let prefix: IpNetwork = p.parse().unwrap();
            rib.routes.insert((Table::Main, prefix), Route::new(prefix, "100".parse().unwrap()));
        }
        let src: IpAddr = "10.0.0.1".parse().unwrap();
        for dst in ["169.254.169.254", "169.254.0.0", "fe80::1", "febf:ffff::1"] {
            assert_eq!(rib.lookup(src, dst.parse().unwrap()), Lookup::Local, "{dst}");
        }
        for dst in ["169.253.255.255", "169.255.0.0", "fec0::1", "fe7f::1"] {
            assert!(matches!(rib.lookup(src, dst.parse().unwrap()), Lookup::Route(Table::Main, _)), "{dst}");
        }
    }

    #[test]
    fn routes_in_lists_one_table_v4_first() {
        let mut rib = Rib::new(10);
        let alt = Table::alternate(3).unwrap();
        for (t, p) in [(Table::Main, "2001:db8::/32"), (alt, "10.0.0.0/8"), (Table::Main, "10.0.0.0/8")] {
            let prefix: IpNetwork = p.parse().unwrap();
            rib.routes.insert((t, prefix), Route::new(prefix, "100".parse().unwrap()));
        }
        let main: Vec<String> = rib.routes_in(Table::Main).iter().map(|r| r.prefix.to_string()).collect();
        assert_eq!(main, ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(rib.routes_in(alt).len(), 1);
        assert!(rib.routes_in(Table::alternate(4).unwrap()).is_empty());
    }
}

/// Where a packet's lookup ends, as the program decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// A host address: never labelled.
    Local,
    /// The longest match, in the table it was found in (as in force).
    Route(Table, Cow<'a, Route>),
    /// No route covers the destination.
    NoRoute,
}

impl Rib {
    /// The longest match for `dst` in `table`.
    fn longest(&self, table: Table, dst: IpAddr) -> Option<Cow<'_, Route>> {
        let max = if dst.is_ipv4() { 32 } else { 128 };
        (0..=max).rev().find_map(|len| {
            let net = IpNetwork::new(dst, len).ok().and_then(|n| IpNetwork::new(n.network(), len).ok())?;
            let id = (table, net);
            self.routes.get(&id).map(|r| self.resolve(&id, r))
        })
    }

    /// The table a source selects: the longest source prefix's, else main.
    fn table_for(&self, src: IpAddr) -> Table {
        self.sources
            .iter()
            .filter(|(p, _)| p.contains(src))
            .max_by_key(|(p, _)| p.prefix())
            .map_or(Table::Main, |(_, t)| *t)
    }

    /// What the program looks up for a packet from `src` to `dst`: host
    /// addresses first, then the source's alternate table, then the main one.
    pub(crate) fn lookup(&self, src: IpAddr, dst: IpAddr) -> Lookup<'_> {
        if self.local.contains(&dst) || is_link_local(dst) {
            return Lookup::Local;
        }
        let table = self.table_for(src);
        if table != Table::Main {
            if let Some(route) = self.longest(table, dst) {
                return Lookup::Route(table, route);
            }
        }
        self.longest(Table::Main, dst).map_or(Lookup::NoRoute, |r| Lookup::Route(Table::Main, r))
    }
}
