//! The routes of every origin, and which one a route id takes.
//!
//! A host takes routes from several origins at once: the command line, a
//! file and library calls (`static`, and the agent's configuration file),
//! the agent's gRPC API, both protocols (`agent`), and BGP (`bgp`). Each
//! keeps its own table, changed only by itself; the route installed for an
//! id is the one of the highest origin in the [`Precedence`] that has one.
//! The default puts the local origins over BGP (an operator's explicit word
//! beats the fleet's, like an administrative distance): BGP's route is
//! installed where no local one exists and comes back, in place, when the
//! local one goes. BGP only ever fills the main table.
//!
//! The local tables are kept here as routes. BGP's is kept by `bgp/` in the
//! form it is learned in (prefix -> policy key, the policies once each): a
//! million routes on ten policies are not copied a million times, and a
//! policy's new content is one object write, not a walk of its routes. The
//! selection therefore takes BGP's candidate for an id from the caller.
//!
//! A change of any origin becomes a [`Patch`] of the ids whose selected
//! route changed, which the FIB applies at the cost of those changes alone.

// Without BGP the agent writes its routes straight through: nothing ranks them.
#![cfg_attr(not(feature = "bgp"), allow(dead_code))]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::diff::Patch;
use super::RouteId;
use crate::domain::route::{Route, Table};

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Set outside the agent (the command, a file, the library, the agent's
    /// configuration file).
    Static,
    /// Set through the agent's gRPC API (either protocol).
    Agent,
    /// Learned from BGP: a colored route steered into an SR policy.
    Bgp,
}

impl Origin {
    /// Every origin.
    pub const ALL: [Origin; 3] = [Origin::Static, Origin::Agent, Origin::Bgp];
}

impl fmt::Display for Origin {
    /// `static`, `agent` or `bgp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Static => "static",
            Origin::Agent => "agent",
            Origin::Bgp => "bgp",
        })
    }
}

/// A route's origin as the RIB records it beside the route (a `static`
/// route records nothing): the agent's, or BGP's with the (color,
/// endpoint) of the policy it is steered into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Noted {
    Agent,
    Bgp(Option<(u32, IpAddr)>),
}

impl Noted {
    /// The origin it records (a route that records none is static).
    pub(crate) fn origin(self) -> Origin {
        match self {
            Noted::Agent => Origin::Agent,
            Noted::Bgp(_) => Origin::Bgp,
        }
    }
}

/// Text that is not an origin precedence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not an origin precedence: {problem}; list each of static, agent and bgp once, highest first \
     (the default is agent,static,bgp)"
)]
pub struct PrecedenceError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Which origin's route a route id takes when several have one: the first
/// of the three in this order. Text form: `agent,static,bgp` (the default:
/// the agent's API over the static routes, both over BGP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precedence([Origin; 3]);

impl Default for Precedence {
    fn default() -> Precedence {
        Precedence([Origin::Agent, Origin::Static, Origin::Bgp])
    }
}

impl Precedence {
    /// The origins, highest first.
    pub fn order(&self) -> [Origin; 3] {
        self.0
    }

    /// Whether `a` wins over `b`.
    pub fn prefers(&self, a: Origin, b: Origin) -> bool {
        let rank = |o: Origin| self.0.iter().position(|x| *x == o).unwrap_or(usize::MAX);
        rank(a) < rank(b)
    }
}

impl FromStr for Precedence {
    type Err = PrecedenceError;

    /// `agent,static,bgp`, any order, each once.
    fn from_str(text: &str) -> Result<Precedence, PrecedenceError> {
        let bad = |problem: String| PrecedenceError { text: text.to_owned(), problem };
        let mut order = Vec::with_capacity(3);
        for word in text.split(',').map(str::trim) {
            let origin = match word {
                "static" => Origin::Static,
                "agent" => Origin::Agent,
                "bgp" => Origin::Bgp,
                other => return Err(bad(format!("{other:?} is not an origin"))),
            };
            if order.contains(&origin) {
                return Err(bad(format!("{origin} is named twice")));
            }
            order.push(origin);
        }
        match order.as_slice() {
            [a, b, c] => Ok(Precedence([*a, *b, *c])),
            _ => Err(bad(format!("it names {} of the 3 origins", order.len()))),
        }
    }
}

impl fmt::Display for Precedence {
    /// `agent,static,bgp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.0[0], self.0[1], self.0[2])
    }
}

impl Serialize for Precedence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Precedence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Precedence, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A RIB's routes (set-aside ones in the main table) counted by table and
/// by the origin recorded beside each: what the agent's `status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counted {
    pub total: u64,
    pub by_table: BTreeMap<Table, u64>,
    /// Origins with no route are absent.
    pub by_origin: BTreeMap<Origin, u64>,
}

impl Counted {
    /// Counts in one pass over the routes and one over the recorded
    /// origins, merged in their common order: nothing is looked up or
    /// allocated per route (asking each route its origin cost most of a
    /// second at a million routes, on every `status` after a change).
    pub(crate) fn of(rib: &super::Rib) -> Counted {
        let mut by_table: BTreeMap<Table, u64> = BTreeMap::new();
        // A table's routes are one run of the sorted map: one update per run.
        let mut run: Option<(Table, u64)> = None;
        for (table, _) in rib.routes.keys() {
            match &mut run {
                Some((t, n)) if t == table => *n += 1,
                _ => {
                    if let Some((t, n)) = run.replace((*table, 1)) {
                        by_table.insert(t, n);
                    }
                }
            }
        }
        if let Some((t, n)) = run {
            by_table.insert(t, n);
        }
        if !rib.shadowed.is_empty() {
            *by_table.entry(Table::Main).or_default() += rib.shadowed.len() as u64;
        }
        let total = (rib.routes.len() + rib.shadowed.len()) as u64;
        let (mut agent, mut bgp) = (0, 0);
        let mut routes = rib.routes.keys().peekable();
        for (id, noted) in rib.origin_of.iter() {
            while routes.next_if(|r| *r < id).is_some() {}
            // An origin recorded for a route no longer held counts for nothing.
            let held =
                routes.next_if(|r| *r == id).is_some() || (id.0 == Table::Main && rib.shadowed.contains_key(&id.1));
            match noted.origin() {
                _ if !held => {}
                Origin::Agent => agent += 1,
                _ => bgp += 1,
            }
        }
        let by_origin =
            [(Origin::Static, total.saturating_sub(agent + bgp)), (Origin::Agent, agent), (Origin::Bgp, bgp)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect();
        Counted { total, by_table, by_origin }
    }
}

/// The local origins' tables (static and agent, every table) and the
/// precedence; BGP's candidate for an id comes from its own table.
#[derive(Debug, Clone, Default)]
pub(crate) struct OriginTables {
    precedence: Precedence,
    statics: BTreeMap<RouteId, Route>,
    agent: BTreeMap<RouteId, Route>,
}

/// A local change to undo: the origin, the id, what it held before.
pub(crate) type LocalUndo = Vec<(Origin, RouteId, Option<Route>)>;

impl OriginTables {
    /// Empty tables under `precedence`.
    pub(crate) fn new(precedence: Precedence) -> OriginTables {
        OriginTables { precedence, ..OriginTables::default() }
    }

    /// The precedence in force.
    pub(crate) fn precedence(&self) -> Precedence {
        self.precedence
    }

    /// A local origin's table (BGP's is not kept here: empty).
    pub(crate) fn local(&self, origin: Origin) -> &BTreeMap<RouteId, Route> {
        static EMPTY: BTreeMap<RouteId, Route> = BTreeMap::new();
        match origin {
            Origin::Static => &self.statics,
            Origin::Agent => &self.agent,
            Origin::Bgp => &EMPTY,
        }
    }

    fn local_mut(&mut self, origin: Origin) -> Option<&mut BTreeMap<RouteId, Route>> {
        match origin {
            Origin::Static => Some(&mut self.statics),
            Origin::Agent => Some(&mut self.agent),
            Origin::Bgp => None,
        }
    }

    /// The route `id` takes and its origin; `bgp` gives BGP's candidate
    /// (asked only where BGP could win: the main table).
    pub(crate) fn select<'a>(
        &'a self,
        id: &RouteId,
        bgp: impl FnOnce() -> Option<Route>,
    ) -> Option<(Origin, Cow<'a, Route>)> {
        let mut bgp = Some(bgp);
        for origin in self.precedence.0 {
            let found = match origin {
                Origin::Bgp if id.0 == Table::Main => bgp.take().and_then(|f| f()).map(Cow::Owned),
                Origin::Bgp => None,
                local => self.local(local).get(id).map(Cow::Borrowed),
            };
            if let Some(route) = found {
                return Some((origin, route));
            }
        }
        None
    }

    /// Sets (`Some`) or removes (`None`) routes of the local origins; every
    /// id whose selected route changes goes into `patch` with its new route
    /// (`bgp` gives BGP's candidate). Returns what to undo if the patch is
    /// refused.
    pub(crate) fn change_local(
        &mut self,
        changes: impl IntoIterator<Item = (Origin, RouteId, Option<Route>)>,
        bgp: &dyn Fn(&RouteId) -> Option<Route>,
        patch: &mut Patch,
    ) -> LocalUndo {
        let mut undo = Vec::new();
        for (origin, id, route) in changes {
            let before = self.select(&id, || bgp(&id)).map(|(o, r)| (o, r.into_owned()));
            let Some(table) = self.local_mut(origin) else { continue };
            let old = match route {
                Some(r) => table.insert(id, r),
                None => table.remove(&id),
            };
            undo.push((origin, id, old));
            let after = self.select(&id, || bgp(&id)).map(|(o, r)| (o, r.into_owned()));
            if before != after {
                patch.insert(id, after.map(|(_, r)| r));
            }
        }
        undo
    }

    /// Puts back what [`OriginTables::change_local`] changed.
    pub(crate) fn undo(&mut self, undo: LocalUndo) {
        for (origin, id, old) in undo.into_iter().rev() {
            if let Some(table) = self.local_mut(origin) {
                match old {
                    Some(r) => table.insert(id, r),
                    None => table.remove(&id),
                };
            }
        }
    }

    /// Replaces a local origin's table whole; returns the old one.
    pub(crate) fn replace_local(
        &mut self,
        origin: Origin,
        table: BTreeMap<RouteId, Route>,
    ) -> BTreeMap<RouteId, Route> {
        match self.local_mut(origin) {
            Some(t) => std::mem::replace(t, table),
            None => BTreeMap::new(),
        }
    }

    /// Every selected route, with BGP's candidates `bgp` (main-table
    /// prefixes, sorted or not), and the origin of each that is not static:
    /// for an apply of the whole state.
    pub(crate) fn merge(
        &self,
        bgp: impl Iterator<Item = (ipnetwork::IpNetwork, Route)>,
    ) -> (BTreeMap<RouteId, Route>, Vec<(RouteId, Origin)>) {
        // Gathered, then built in bulk (sorting is cheap next to a million
        // one-by-one inserts); lower precedence first, so that a higher
        // one's route replaces it.
        let mut routes: Vec<(RouteId, Route, Origin)> = Vec::new();
        let mut order = self.precedence.0;
        order.reverse();
        let mut from = Vec::new();
        let mut bgp = Some(bgp);
        for origin in order {
            match origin {
                Origin::Bgp => {
                    for (prefix, route) in bgp.take().into_iter().flatten() {
                        routes.push(((Table::Main, prefix), route, Origin::Bgp));
                    }
                }
                local => routes.extend(self.local(local).iter().map(|(id, r)| (*id, r.clone(), local))),
            }
        }
        // A stable sort keeps the insertion order among equal ids: the last is the winner.
        routes.sort_by_key(|a| a.0);
        let mut merged: Vec<(RouteId, Route)> = Vec::with_capacity(routes.len());
        let mut origins: Vec<Origin> = Vec::with_capacity(routes.len());
        for (id, route, origin) in routes {
            match merged.last_mut() {
                Some(last) if last.0 == id => {
                    *last = (id, route);
                    if let Some(o) = origins.last_mut() {
                        *o = origin;
                    }
                }
                _ => {
                    merged.push((id, route));
                    origins.push(origin);
                }
            }
        }
        for ((id, _), origin) in merged.iter().zip(&origins) {
            if *origin != Origin::Static {
                from.push((*id, *origin));
            }
        }
        (merged.into_iter().collect(), from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str, l: &str) -> Route {
        Route::new(p.parse().unwrap(), l.parse().unwrap())
    }

    fn id(p: &str) -> RouteId {
        (Table::Main, p.parse().unwrap())
    }

    #[test]
    fn counts_follow_the_recorded_origins_of_the_routes_held() {
        let alt = Table::alternate(2).unwrap();
        let mut rib = super::super::Rib::new(16);
        for (t, p) in
            [(Table::Main, "10.0.0.0/8"), (Table::Main, "10.1.0.0/16"), (alt, "10.0.0.0/8"), (Table::Main, "::/0")]
        {
            rib.routes.insert((t, p.parse().unwrap()), route(p, "100"));
        }
        rib.shadowed.insert("192.0.2.1/32".parse().unwrap(), route("192.0.2.1/32", "100"));
        rib.origin_of.insert(id("10.1.0.0/16"), Noted::Agent);
        rib.origin_of.insert((alt, "10.0.0.0/8".parse().unwrap()), Noted::Agent);
        rib.origin_of.insert(id("::/0"), Noted::Bgp(None));
        rib.origin_of.insert(id("192.0.2.1/32"), Noted::Bgp(None));
        // Recorded, but no route is held there: counted for nothing.
        rib.origin_of.insert(id("10.2.0.0/16"), Noted::Agent);
        rib.origin_of.insert((alt, "::/0".parse().unwrap()), Noted::Bgp(None));
        let c = Counted::of(&rib);
        assert_eq!(c.total, 5);
        assert_eq!(c.by_table, [(Table::Main, 4), (alt, 1)].into());
        assert_eq!(c.by_origin, [(Origin::Static, 1), (Origin::Agent, 2), (Origin::Bgp, 2)].into());
        assert_eq!(Counted::of(&super::super::Rib::new(16)), Counted::default(), "nothing held: no origin listed");
    }

    #[test]
    fn the_precedence_reads_and_prints_and_refuses_what_is_not_one() {
        assert_eq!(Precedence::default().to_string(), "agent,static,bgp");
        let p: Precedence = "bgp, agent,static".parse().unwrap();
        assert_eq!(p.order(), [Origin::Bgp, Origin::Agent, Origin::Static]);
        assert!(p.prefers(Origin::Bgp, Origin::Static));
        for (text, problem) in [
            ("agent,static", "names 2 of the 3"),
            ("agent,agent,bgp", "agent is named twice"),
            ("agent,static,ospf", "\"ospf\" is not an origin"),
        ] {
            let e = text.parse::<Precedence>().unwrap_err();
            assert!(e.to_string().contains(problem), "{e}");
            assert!(e.to_string().contains("highest first"), "{e}");
        }
    }

    #[test]
    fn the_highest_origin_wins_and_a_change_patches_only_what_it_moves() {
        let mut t = OriginTables::default();
        let bgp = |id: &RouteId| (id.1.to_string() != "10.9.0.0/16").then(|| route(&id.1.to_string(), "17001"));
        let mut patch = Patch::new();
        t.change_local([(Origin::Static, id("10.0.0.0/8"), Some(route("10.0.0.0/8", "100")))], &bgp, &mut patch);
        assert_eq!(patch.len(), 1, "static over BGP: installed");
        patch.clear();
        // The agent's route wins over the static one; removing it brings the static back.
        t.change_local([(Origin::Agent, id("10.0.0.0/8"), Some(route("10.0.0.0/8", "200")))], &bgp, &mut patch);
        assert_eq!(patch[&id("10.0.0.0/8")].as_ref().unwrap().policy.to_string(), "200");
        patch.clear();
        let undo = t.change_local([(Origin::Agent, id("10.0.0.0/8"), None)], &bgp, &mut patch);
        assert_eq!(patch[&id("10.0.0.0/8")].as_ref().unwrap().policy.to_string(), "100");
        t.undo(undo);
        assert_eq!(t.select(&id("10.0.0.0/8"), || None).unwrap().0, Origin::Agent);
        // Removing every local route: BGP's comes back, or nothing.
        patch.clear();
        t.change_local([(Origin::Agent, id("10.0.0.0/8"), None)], &bgp, &mut patch);
        t.change_local([(Origin::Static, id("10.0.0.0/8"), None)], &bgp, &mut patch);
        assert_eq!(patch[&id("10.0.0.0/8")].as_ref().unwrap().policy.to_string(), "17001");
        patch.clear();
        t.change_local([(Origin::Static, id("10.9.0.0/16"), Some(route("10.9.0.0/16", "300")))], &bgp, &mut patch);
        t.change_local([(Origin::Static, id("10.9.0.0/16"), None)], &bgp, &mut patch);
        assert_eq!(patch[&id("10.9.0.0/16")], None);
        // BGP over the local origins, when configured so.
        let t = OriginTables { precedence: "bgp,agent,static".parse().unwrap(), ..t };
        assert_eq!(t.select(&id("10.0.0.0/8"), || Some(route("10.0.0.0/8", "17001"))).unwrap().0, Origin::Bgp);
    }

    #[test]
    fn the_merge_is_the_selection_of_every_id() {
        let mut t = OriginTables::default();
        let none = |_: &RouteId| None;
        let mut patch = Patch::new();
        t.change_local([(Origin::Static, id("10.0.0.0/8"), Some(route("10.0.0.0/8", "100")))], &none, &mut patch);
        t.change_local([(Origin::Agent, id("10.1.0.0/16"), Some(route("10.1.0.0/16", "200")))], &none, &mut patch);
        let bgp = ["10.0.0.0/8", "10.2.0.0/16"].map(|p| (p.parse().unwrap(), route(p, "17001")));
        let (routes, from) = t.merge(bgp.clone().into_iter());
        let got: Vec<String> = routes.values().map(|r| format!("{} {}", r.prefix, r.policy)).collect();
        assert_eq!(got, ["10.0.0.0/8 100", "10.1.0.0/16 200", "10.2.0.0/16 17001"]);
        assert_eq!(from, [(id("10.1.0.0/16"), Origin::Agent), (id("10.2.0.0/16"), Origin::Bgp)]);
        let t = OriginTables { precedence: "bgp,agent,static".parse().unwrap(), ..t };
        let (routes, from) = t.merge(bgp.into_iter());
        assert_eq!(routes[&id("10.0.0.0/8")].policy.to_string(), "17001");
        assert_eq!(from.iter().filter(|(_, o)| *o == Origin::Bgp).count(), 2);
    }
}
