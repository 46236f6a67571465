//! BGP's side of the origins: what BGP wants installed ([`BgpTable`]: the
//! steered routes by prefix and policy key, the policies once each), the
//! routes held over a resynchronisation, and the handle ([`Origins`]) that
//! hands BGP's changes and the agent's to the RIB.
//!
//! Which origin a prefix takes is the RIB's (its per-origin tables and
//! [`Precedence`]: by default the local origins, `agent` then `static`, over
//! BGP). A change of any origin reaches the dataplane as what
//! it changes: a BGP batch rewrites the shared objects of the policies whose
//! content changed (one write each) and patches the prefixes whose route
//! changed; an agent's route is one route write; only a whole `Apply` (or
//! the configuration file) applies the whole table.
//!
//! The RIB records each installed route's origin with the route in its
//! store (and what BGP's policies said, for `routes` and `get`), so a
//! restarted agent knows which routes BGP taught and the command shows the
//! origins ([`OriginsView::of`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnetwork::IpNetwork;

use super::select::PolicyKey;
use super::wanted::NamedCache;
pub use super::wanted::{object_name, BgpTable, PolicyInfo};
use crate::desired::ApplyOptions;
use crate::domain::desired::{DesiredState, ValidState};
use crate::domain::policy::Policy;
use crate::domain::route::{Route, Table};
use crate::encapsulator::Encapsulator;
use crate::error::RouteError;
use crate::fib::apply::ApplyReport;
use crate::rib::diff::Patch;
use crate::rib::origins::{Noted, OriginTables};
pub use crate::rib::origins::{Origin, Precedence, PrecedenceError};

/// One route's key: table and prefix.
type RouteId = (Table, IpNetwork);

/// The route an id takes now.
struct Selection {
    route: Option<Route>,
    /// What the RIB records of its origin (`None`: static, or no route).
    noted: Option<Noted>,
    /// `Some` when it is BGP's, with its policy.
    bgp: Option<Option<PolicyKey>>,
}

/// What the RIB records of a route of `origin` (steered into `key`).
fn noted(origin: Origin, key: Option<PolicyKey>) -> Option<Noted> {
    match origin {
        Origin::Static => None,
        Origin::Agent => Some(Noted::Agent),
        Origin::Bgp => Some(Noted::Bgp(key.map(|k| (k.color, k.endpoint)))),
    }
}

/// Changed prefixes from which a BGP batch that changes most of the table
/// is applied whole (below it a patch is always cheaper).
const WHOLE_FROM: usize = 65_536;

#[derive(Debug, Default)]
struct Inner {
    /// The local origins' tables and the precedence (the RIB's).
    tables: OriginTables,
    /// What BGP wants now.
    bgp: BgpTable,
    /// BGP routes kept from before a (re)synchronisation (session-down policy
    /// `keep`) until BGP has had time to teach them again.
    held: BTreeMap<IpNetwork, (Route, Option<PolicyKey>)>,
    /// Policies the held routes used.
    held_policies: BTreeMap<PolicyKey, PolicyInfo>,
    /// Main-table prefixes holding a BGP route now, and its policy.
    installed: BTreeMap<IpNetwork, Option<PolicyKey>>,
}

impl Inner {
    /// BGP's candidate for `prefix`, from its table or held (`held`: whether
    /// held routes still count), whatever the local origins hold.
    fn bgp_candidate(
        &self,
        prefix: IpNetwork,
        held: bool,
        cache: &mut NamedCache,
    ) -> Option<(Route, Option<PolicyKey>)> {
        self.bgp.route_cached(prefix, cache).map(|(r, k)| (r, Some(k))).or_else(|| {
            let (route, key) = self.held.get(&prefix).filter(|_| held)?;
            Some((self.bgp.held_route(route, *key, cache), *key))
        })
    }

    /// The route `id` takes now, what the RIB records of its origin, and
    /// whether it is BGP's (with its policy).
    fn select(&self, id: &RouteId, held: bool, cache: &mut NamedCache) -> Selection {
        let mut key = None;
        let chosen = self.tables.select(id, || {
            let (route, k) = self.bgp_candidate(id.1, held, cache)?;
            key = Some(k);
            Some(route)
        });
        match chosen {
            Some((Origin::Bgp, route)) => {
                Selection { route: Some(route.into_owned()), noted: noted(Origin::Bgp, key.flatten()), bgp: key }
            }
            Some((o, route)) => Selection { route: Some(route.into_owned()), noted: noted(o, None), bgp: None },
            None => Selection { route: None, noted: None, bgp: None },
        }
    }

    /// Every BGP candidate (its table, then what is held), for a whole merge.
    fn bgp_candidates(&self, held: bool) -> Vec<(IpNetwork, Route, Option<PolicyKey>)> {
        let mut cache = NamedCache::new();
        let mut out: Vec<_> = self
            .bgp
            .routes
            .keys()
            .filter_map(|p| self.bgp.route_cached(*p, &mut cache).map(|(r, k)| (*p, r, Some(k))))
            .collect();
        if held {
            let mut held_cache = NamedCache::new();
            out.extend(
                self.held
                    .iter()
                    .filter(|(p, _)| !self.bgp.routes.contains_key(p))
                    .map(|(p, (r, k))| (*p, self.bgp.held_route(r, *k, &mut held_cache), *k)),
            );
        }
        out
    }

    /// What the policy `key` says, from BGP's table or what is held; none
    /// for an invalid policy, which has no active path to describe (not the
    /// one it had before).
    fn policy_info(&self, key: Option<PolicyKey>) -> Option<PolicyInfo> {
        key.filter(|k| !self.bgp.invalid.contains(k))
            .and_then(|k| self.bgp.policies.get(&k).map(|(_, i)| i).or_else(|| self.held_policies.get(&k)))
            .cloned()
    }

    fn view(&self) -> OriginsView {
        let mut view = OriginsView { local: self.local_origins(), ..OriginsView::default() };
        for (prefix, key) in &self.installed {
            view.bgp.insert(*prefix, (*key, self.policy_info(*key)));
        }
        view
    }

    /// [`Inner::view`] of one route only: what it says of that route, the
    /// rest empty.
    fn view_of(&self, table: Table, prefix: IpNetwork) -> OriginsView {
        let mut view = OriginsView::default();
        if let (Table::Main, Some(key)) = (table, self.installed.get(&prefix)) {
            view.bgp.insert(prefix, (*key, self.policy_info(*key)));
            return view;
        }
        let id = (table, prefix);
        if [Origin::Static, Origin::Agent].iter().any(|o| self.tables.local(*o).contains_key(&id)) {
            view.local.extend(self.tables.select(&id, || None).map(|(o, _)| (id, o)));
        }
        view
    }

    /// The selected local origin of every local route id (for the view).
    fn local_origins(&self) -> BTreeMap<RouteId, Origin> {
        let mut out = BTreeMap::new();
        for origin in [Origin::Static, Origin::Agent] {
            for id in self.tables.local(origin).keys() {
                if let Some((o, _)) = self.tables.select(id, || None) {
                    out.insert(*id, o);
                }
            }
        }
        out
    }
}

/// The per-origin tables of one encapsulator and their merge (see the module docs).
#[derive(Debug)]
pub struct Origins {
    enc: Arc<Encapsulator>,
    inner: Mutex<Inner>,
}

impl Origins {
    /// The origins of `enc`'s routes, as the RIB recorded them beside each
    /// route (the routes the agent set, those BGP taught; every other route
    /// `static`). Routes BGP taught before are held (kept as they are) until
    /// the first [`Origins::set_bgp`] with `release_held`. Local origins win
    /// over BGP.
    pub fn new(enc: Arc<Encapsulator>) -> Origins {
        Origins::with_precedence(enc, Precedence::default())
    }

    /// As [`Origins::new`], with the origins ranked by `precedence`.
    pub fn with_precedence(enc: Arc<Encapsulator>, precedence: Precedence) -> Origins {
        let mut inner = Inner { tables: OriginTables::new(precedence), ..Inner::default() };
        // Each table is built whole from pairs in id order, read straight
        // from the RIB into vectors sized by its count (a hint: a change in
        // between only resizes them): a copy of the whole table, a million
        // lookups of origins and a million inserts into growing maps were
        // half a second of an agent's restart on a full table.
        let n = enc.route_count();
        let (mut statics, mut agents, mut held) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let mut keys = std::collections::BTreeSet::new();
        let notes = enc.visit_routes_with_origins(|id, route, noted| match noted {
            Some(Noted::Bgp(key)) if id.0 == Table::Main => {
                let key = key.map(|(color, endpoint)| PolicyKey { color, endpoint });
                keys.extend(key);
                held.push((id.1, (route, key)));
            }
            Some(Noted::Agent) => agents.push((id, route)),
            _ => statics.push((id, route)),
        });
        let infos = read_notes(&notes);
        for k in keys {
            if let Some(info) = infos.get(&k) {
                inner.held_policies.insert(PolicyKey { color: info.color, endpoint: info.endpoint }, info.clone());
            }
        }
        inner.installed = held.iter().map(|(prefix, (_, key))| (*prefix, *key)).collect();
        inner.held = held.into_iter().collect();
        inner.tables.replace_local(Origin::Static, statics.into_iter().collect());
        inner.tables.replace_local(Origin::Agent, agents.into_iter().collect());
        Origins { enc, inner: Mutex::new(inner) }
    }

    /// The precedence in force.
    pub fn precedence(&self) -> Precedence {
        self.lock().tables.precedence()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces BGP's table and applies what changed. `release_held`: routes
    /// held from before are dropped (BGP has had its time to teach them again).
    ///
    /// What it costs is what changed: each policy whose content changed
    /// (lists, weights, turned invalid or valid again) is one write to its
    /// objects ([`Encapsulator::update_policy`]); the prefixes whose route
    /// changes (added, withdrawn, steered into another policy, their policy
    /// gone) go to the dataplane as one patch, ordered and undone on refusal
    /// like an apply. No merged table is built and the installed table is
    /// not diffed; what is walked is BGP's own old and new steering (the
    /// learner hands over only what moved instead: [`Origins::update_bgp`]).
    ///
    /// # Errors
    /// As [`Encapsulator::apply`]; nothing changed then.
    pub fn set_bgp(&self, table: BgpTable, release_held: bool) -> Result<ApplyReport, RouteError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let old = std::mem::replace(&mut inner.bgp, table);
        // The prefixes in one steering and not the other, or steered into another policy.
        let mut touched: Vec<IpNetwork> = Vec::new();
        let (mut a, mut b) = (old.routes.iter().peekable(), inner.bgp.routes.iter().peekable());
        loop {
            let next_a = a.peek().map(|(p, k)| (**p, **k));
            let next_b = b.peek().map(|(p, k)| (**p, **k));
            match (next_a, next_b) {
                (None, None) => break,
                (Some((pa, ka)), Some((pb, kb))) if pa == pb => {
                    if ka != kb {
                        touched.push(pa);
                    }
                    a.next();
                    b.next();
                }
                (Some((pa, _)), Some((pb, _))) if pa < pb => {
                    touched.push(pa);
                    a.next();
                }
                (Some((pa, _)), None) => {
                    touched.push(pa);
                    a.next();
                }
                (_, Some((pb, _))) => {
                    touched.push(pb);
                    b.next();
                }
            }
        }
        let BgpTable { routes, policies, invalid, no_live_path } = old;
        let was = BgpTable { routes: BTreeMap::new(), policies, invalid, no_live_path };
        let result = self.settle(inner, &was, touched, release_held);
        if result.is_err() {
            inner.bgp = BgpTable { routes, ..was };
        }
        result
    }

    /// What the learner hands over when its steering moved a few routes:
    /// `moved` (prefix -> its policy now, `None`: no longer steered) and the
    /// policies in force. Costs what moved: no table is copied or walked.
    ///
    /// # Errors
    /// As [`Origins::set_bgp`]; nothing changed then.
    pub fn update_bgp(
        &self,
        moved: BTreeMap<IpNetwork, Option<PolicyKey>>,
        policies: BTreeMap<PolicyKey, (Policy, PolicyInfo)>,
        invalid: BTreeSet<PolicyKey>,
    ) -> Result<ApplyReport, RouteError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut undo: Vec<(IpNetwork, Option<PolicyKey>)> = Vec::with_capacity(moved.len());
        for (prefix, key) in &moved {
            let before = match key {
                Some(k) => inner.bgp.routes.insert(*prefix, *k),
                None => inner.bgp.routes.remove(prefix),
            };
            undo.push((*prefix, before));
        }
        let was = BgpTable {
            routes: BTreeMap::new(),
            policies: std::mem::replace(&mut inner.bgp.policies, policies),
            invalid: std::mem::replace(&mut inner.bgp.invalid, invalid),
            no_live_path: inner.bgp.no_live_path,
        };
        let result = self.settle(inner, &was, moved.into_keys().collect(), false);
        if result.is_err() {
            for (prefix, before) in undo.into_iter().rev() {
                match before {
                    Some(k) => inner.bgp.routes.insert(prefix, k),
                    None => inner.bgp.routes.remove(&prefix),
                };
            }
            inner.bgp.policies = was.policies;
            inner.bgp.invalid = was.invalid;
        }
        result
    }

    /// Applies BGP's table now in `inner` after `was` (its policies before),
    /// `touched` being the prefixes whose steering changed. The caller puts
    /// the old table back on an error.
    fn settle(
        &self,
        inner: &mut Inner,
        was: &BgpTable,
        mut touched: Vec<IpNetwork>,
        release_held: bool,
    ) -> Result<ApplyReport, RouteError> {
        let keep_held = !release_held;
        // Objects whose content changed: rewritten in place (every route on
        // one follows). A family whose routes appear or vanish with the
        // change (ENLP leaving no room) re-routes its prefixes instead.
        let known = |t: &BgpTable| t.policies.keys().chain(&t.invalid).copied().collect::<BTreeSet<PolicyKey>>();
        let mut rewrites: Vec<(Policy, Policy)> = Vec::new();
        let mut rerouted: BTreeSet<PolicyKey> = BTreeSet::new();
        let mut changed_keys: BTreeSet<PolicyKey> = BTreeSet::new();
        for key in known(was).union(&known(&inner.bgp)) {
            for v6 in [false, true] {
                match (inner.bgp.named_policy(key, v6), was.named_policy(key, v6)) {
                    (Some(p), Some(o)) if p != o => {
                        changed_keys.insert(*key);
                        rewrites.push((p, o));
                    }
                    (Some(_), Some(_)) | (None, None) => {}
                    _ => {
                        changed_keys.insert(*key);
                        rerouted.insert(*key);
                    }
                }
            }
        }
        if !rerouted.is_empty() {
            // Rare (a policy appearing, vanishing, or ENLP leaving no room): a walk.
            touched.extend(inner.bgp.routes.iter().filter(|(_, k)| rerouted.contains(k)).map(|(p, _)| *p));
            touched.extend(
                inner.installed.iter().filter(|(_, k)| k.is_some_and(|k| rerouted.contains(&k))).map(|(p, _)| *p),
            );
        }
        if release_held {
            touched.extend(inner.held.keys().copied());
        } else if !changed_keys.is_empty() {
            // Held routes of a policy BGP now teaches differently leave its
            // object (see `BgpTable::held_route`), or go onto its invalid one.
            touched.extend(
                inner.held.iter().filter(|(_, (_, k))| k.is_some_and(|k| changed_keys.contains(&k))).map(|(p, _)| *p),
            );
        }
        touched.sort_unstable();
        touched.dedup();
        let info_changed =
            was.policies.iter().map(|(k, (_, i))| (k, i)).ne(inner.bgp.policies.iter().map(|(k, (_, i))| (k, i)));
        // A change of most of the table (the first batch, a resynchronisation
        // releasing everything) is cheaper as a whole apply, which takes the
        // merged map as the RIB's instead of recording each change.
        let size =
            inner.installed.len() + inner.tables.local(Origin::Static).len() + inner.tables.local(Origin::Agent).len();
        if touched.len() > WHOLE_FROM && touched.len() * 8 > size {
            let (report, installed) = self.apply_whole(inner, keep_held, None, ApplyOptions::default())?;
            if release_held {
                inner.held.clear();
                inner.held_policies.clear();
            }
            inner.installed = installed;
            self.save(inner);
            return Ok(report);
        }
        let mut patch = Patch::new();
        let mut origins = crate::fib::apply::Origins::new();
        let mut installed: Vec<(IpNetwork, Option<Option<PolicyKey>>)> = Vec::new();
        let mut cache = NamedCache::new();
        for prefix in touched {
            let id = (Table::Main, prefix);
            let Selection { route, noted, bgp } = inner.select(&id, keep_held, &mut cache);
            let was_bgp = inner.installed.contains_key(&prefix);
            if bgp.is_none() && !was_bgp {
                // A local route holds it, before and after: nothing to write.
                continue;
            }
            installed.push((prefix, bgp));
            patch.insert(id, route);
            if let Some(n) = noted {
                origins.insert(id, n);
            }
        }
        let report = self.rewrite_then_patch(&rewrites, &patch, &origins)?;
        let released = release_held && !inner.held_policies.is_empty();
        if release_held {
            inner.held.clear();
            inner.held_policies.clear();
        }
        for (prefix, key) in installed {
            match key {
                Some(k) => inner.installed.insert(prefix, k),
                None => inner.installed.remove(&prefix),
            };
        }
        // What `routes` and `get` say of a policy (its preference, binding SID).
        if info_changed || released {
            self.save(inner);
        }
        Ok(report)
    }

    /// Rewrites the objects (new content, old content), then applies the
    /// patch; on a refusal the objects are written back.
    fn rewrite_then_patch(
        &self,
        rewrites: &[(Policy, Policy)],
        patch: &Patch,
        origins: &crate::fib::apply::Origins,
    ) -> Result<ApplyReport, RouteError> {
        let mut report = ApplyReport::default();
        let mut undo: Vec<&Policy> = Vec::new();
        let back = |undo: &[&Policy]| {
            for old in undo.iter().rev() {
                if let Err(e) = self.enc.update_policy(old) {
                    log::error!("{e} (verify() reports the policy)");
                }
            }
        };
        for (policy, old) in rewrites {
            match self.enc.update_policy(policy) {
                Ok(Some(u)) => {
                    report.map_operations += u.map_operations;
                    report.unchanged += u.routes;
                    undo.push(old);
                }
                Ok(None) => {}
                Err(e) => {
                    back(&undo);
                    return Err(e);
                }
            }
        }
        if patch.is_empty() {
            return Ok(report);
        }
        match self.enc.apply_patch(patch, origins) {
            Ok(r) => {
                report.map_operations += r.map_operations;
                report.unchanged += r.unchanged;
                report.added = r.added;
                report.replaced = r.replaced;
                report.removed = r.removed;
                report.set_aside = r.set_aside;
                Ok(report)
            }
            Err(e) => {
                back(&undo);
                Err(e)
            }
        }
    }

    /// Replaces BGP's policies when its steering stands (no route moved to
    /// another policy): each policy whose content changed, including one
    /// that became invalid or valid again, is one write to its shared
    /// objects ([`Encapsulator::update_policy`]), with no walk or diff of
    /// the route table; a preference switch of a policy steering 100,000
    /// routes is in the dataplane within milliseconds. Anything else (a
    /// policy added or removed, an ENLP change) goes through
    /// [`Origins::set_bgp`] with the routes in force.
    ///
    /// # Errors
    /// As [`Encapsulator::update_policy`]; the policies written before the
    /// error are written back, and BGP's table stays as it was.
    pub fn set_bgp_policies(
        &self,
        policies: BTreeMap<PolicyKey, (Policy, PolicyInfo)>,
        invalid: BTreeSet<PolicyKey>,
    ) -> Result<ApplyReport, RouteError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let new = BgpTable { routes: BTreeMap::new(), policies, invalid, no_live_path: inner.bgp.no_live_path };
        let known = |t: &BgpTable| t.policies.keys().chain(&t.invalid).copied().collect::<BTreeSet<PolicyKey>>();
        // The RIB's copies of the routes on a rewritten object keep their old
        // content; every reader resolves them through the object.
        let same_enlp =
            new.policies.iter().all(|(k, (_, i))| inner.bgp.policies.get(k).is_none_or(|(_, j)| i.enlp == j.enlp));
        // Each object whose content changes: (new content, old content).
        let mut changes: Option<Vec<(Policy, Policy)>> = (same_enlp && known(&inner.bgp) == known(&new)).then(Vec::new);
        for key in known(&new) {
            for v6 in [false, true] {
                let Some(list) = changes.as_mut() else { break };
                match (new.named_policy(&key, v6), inner.bgp.named_policy(&key, v6)) {
                    (Some(p), Some(old)) if p != old => list.push((p, old)),
                    (a, b) if a.is_some() != b.is_some() => changes = None, // a route comes or goes
                    _ => {}
                }
            }
        }
        // Held routes keep the lists they had: when one is on a changed
        // policy's object, the full path moves it to an object of its own.
        let changed: BTreeSet<String> =
            changes.iter().flatten().filter_map(|(p, _)| p.name().map(str::to_owned)).collect();
        let held_on_changed = || {
            let cache = &mut NamedCache::new();
            inner.held.iter().any(|(p, (_, k))| {
                k.and_then(|k| {
                    cache.entry((k, p.is_ipv6())).or_insert_with(|| inner.bgp.named_policy(&k, p.is_ipv6())).clone()
                })
                .is_some_and(|o| o.name().is_some_and(|n| changed.contains(n)))
            })
        };
        let Some(changes) = changes.filter(|_| !held_on_changed()) else {
            let table = BgpTable { routes: inner.bgp.routes.clone(), ..new };
            drop(guard);
            return self.set_bgp(table, false);
        };
        // No route moves: the objects' rewrites alone, undone together on a refusal.
        let report = self.rewrite_then_patch(&changes, &Patch::new(), &Default::default())?;
        let info_changed =
            inner.bgp.policies.iter().map(|(k, (_, i))| (k, i)).ne(new.policies.iter().map(|(k, (_, i))| (k, i)));
        inner.bgp.policies = new.policies;
        inner.bgp.invalid = new.invalid;
        if info_changed {
            self.save(inner);
        }
        Ok(report)
    }

    /// Keeps every BGP route installed now as it is until the next
    /// [`Origins::set_bgp`] with `release_held` (a resynchronisation under the
    /// session-down policy `keep`).
    pub fn hold_installed(&self) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for (prefix, key) in &inner.bgp.routes {
            if inner.installed.contains_key(prefix) {
                if let Some((route, _)) = inner.bgp.route(*prefix) {
                    inner.held.insert(*prefix, (route, Some(*key)));
                }
                if let Some((_, info)) = inner.bgp.policies.get(key) {
                    inner.held_policies.insert(*key, info.clone());
                }
            }
        }
    }

    /// Whether routes are held.
    pub fn holding(&self) -> bool {
        !self.lock().held.is_empty()
    }

    /// How many main-table prefixes hold a BGP route.
    pub fn installed_count(&self) -> usize {
        self.lock().installed.len()
    }

    /// How many routes are held.
    pub fn held_count(&self) -> usize {
        self.lock().held.len()
    }

    /// How many BGP routes are held, counting `stale` (the routes BGP's
    /// learner keeps from a session that is down, or from before GoBGP came
    /// back) and those held here that BGP's current table does not replace:
    /// a held route BGP taught again is no longer held.
    pub fn held_count_beside(&self, stale: &std::collections::HashSet<IpNetwork>) -> usize {
        let inner = self.lock();
        let here = inner.held.keys().filter(|p| !inner.bgp.routes.contains_key(p) && !stale.contains(p)).count();
        stale.len() + here
    }

    /// Changes local routes and writes each id's selected route where it
    /// changed (one route at a time: through the single-route path, with its
    /// checks, e.g. a host's own address refused); undone on a refusal.
    fn change_local(
        &self,
        inner: &mut Inner,
        changes: Vec<(Origin, RouteId, Option<Route>)>,
    ) -> Result<(), RouteError> {
        let mut patch = Patch::new();
        let Inner { tables, bgp, held, .. } = inner;
        let cache = std::cell::RefCell::new(NamedCache::new());
        let candidate = |id: &RouteId| -> Option<Route> {
            let mut c = cache.borrow_mut();
            bgp.route_cached(id.1, &mut c).map(|(r, _)| r).or_else(|| {
                let (route, key) = held.get(&id.1)?;
                Some(bgp.held_route(route, *key, &mut c))
            })
        };
        let undo = tables.change_local(changes, &candidate, &mut patch);
        // What the RIB records of the route `id` takes under `tables`.
        let noted_of = |tables: &OriginTables, id: &RouteId| -> Option<Noted> {
            let (origin, _) = tables.select(id, || candidate(id))?;
            let key = bgp.routes.get(&id.1).copied().or_else(|| held.get(&id.1).and_then(|(_, k)| *k));
            noted(origin, key)
        };
        let mut done: Vec<RouteId> = Vec::new();
        for (id, route) in &patch {
            let result = match route {
                Some(r) => self.enc.set_route_from(id.0, r, noted_of(tables, id)),
                None => self.enc.remove(id.0, id.1).map(|_| ()),
            };
            if let Err(e) = result {
                tables.undo(undo);
                // What the kernel held: the selection before this change.
                for id in done.into_iter().rev() {
                    let before = tables.select(&id, || candidate(&id)).map(|(_, r)| r.into_owned());
                    let back = match &before {
                        Some(r) => self.enc.set_route_from(id.0, r, noted_of(tables, &id)),
                        None => self.enc.remove(id.0, id.1).map(|_| ()),
                    };
                    if let Err(back) = back {
                        log::error!("{back} (verify() reports the route)");
                    }
                }
                return Err(e);
            }
            done.push(*id);
        }
        let mut cache = NamedCache::new();
        for id in patch.keys().filter(|id| id.0 == Table::Main) {
            match inner.select(id, true, &mut cache).bgp {
                Some(key) => inner.installed.insert(id.1, key),
                None => inner.installed.remove(&id.1),
            };
        }
        Ok(())
    }

    /// Adds or replaces a route through the agent's API.
    ///
    /// # Errors
    /// As [`Encapsulator::set_route`].
    pub fn set_route(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        let mut guard = self.lock();
        self.change_local(&mut guard, vec![(Origin::Agent, (table, route.prefix), Some(route.clone()))])
    }

    /// Removes a static or agent route (both, where both origins have one);
    /// where BGP has a route for the prefix, BGP's takes its place (replaced
    /// in place: no moment without a route). `Ok(false)` when there was no
    /// route at all.
    ///
    /// # Errors
    /// [`RouteError::BgpRoute`] when the prefix has no local route but BGP's
    /// is in force (it is withdrawn in BGP, not here); otherwise as
    /// [`Encapsulator::remove`] / [`Encapsulator::set_route`].
    pub fn remove_route(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let mut guard = self.lock();
        let id = (table, prefix);
        let changes: Vec<(Origin, RouteId, Option<Route>)> = [Origin::Agent, Origin::Static]
            .into_iter()
            .filter(|o| guard.tables.local(*o).contains_key(&id))
            .map(|o| (o, id, None))
            .collect();
        if changes.is_empty() {
            return match guard.installed.get(&prefix).filter(|_| table == Table::Main) {
                Some(key) => {
                    // As `routes` and `get` name it (OriginsView::bgp_policy).
                    let policy = key.map(|k| {
                        guard.policy_info(Some(k)).map(|i| i.to_string()).unwrap_or_else(|| invalid_policy_text(&k))
                    });
                    let local_wins = guard.tables.precedence().prefers(Origin::Agent, Origin::Bgp);
                    Err(RouteError::BgpRoute { prefix, policy, local_wins })
                }
                None => Ok(false),
            };
        }
        self.change_local(&mut guard, changes)?;
        Ok(true)
    }

    /// Makes the static and agent tables equal to `desired` (all of them
    /// become `agent` routes), merged with BGP's as always. `options`' removal
    /// guard counts what the merge removes.
    ///
    /// # Errors
    /// As [`Encapsulator::apply`].
    pub fn apply_local(&self, desired: &DesiredState, options: ApplyOptions) -> Result<ApplyReport, RouteError> {
        let valid = desired.validate()?;
        self.replace_local(&valid, options, |_| (BTreeMap::new(), valid.routes().clone()))
    }

    /// Makes the `static` table equal to `desired` (the agent's configuration
    /// file), keeping every `agent` route (the precedence picks where both
    /// have one), merged with BGP's as always; the sources and DSCP table
    /// become `desired`'s.
    ///
    /// # Errors
    /// As [`Encapsulator::apply`]; nothing changed then.
    pub fn apply_static(&self, desired: &DesiredState, options: ApplyOptions) -> Result<ApplyReport, RouteError> {
        let valid = desired.validate()?;
        self.replace_local(&valid, options, |tables| (valid.routes().clone(), tables.local(Origin::Agent).clone()))
    }

    /// Replaces the local tables (static, agent) by what `local` makes of the
    /// current ones, merged with BGP's, with `valid`'s sources and DSCP
    /// table: a whole apply; recorded only once applied.
    fn replace_local(
        &self,
        valid: &ValidState,
        options: ApplyOptions,
        local: impl FnOnce(&OriginTables) -> (BTreeMap<RouteId, Route>, BTreeMap<RouteId, Route>),
    ) -> Result<ApplyReport, RouteError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        // The removal guard counts the routes this apply governs: not
        // those BGP holds.
        let mut options = options;
        options.uncounted = inner.installed.len();
        let (statics, agents) = local(&inner.tables);
        let mut tables = OriginTables::new(inner.tables.precedence());
        tables.replace_local(Origin::Static, statics);
        tables.replace_local(Origin::Agent, agents);
        let previous = std::mem::replace(&mut inner.tables, tables);
        match self.apply_whole(inner, true, Some(valid), options) {
            Ok((report, installed)) if !options.is_dry_run() => {
                inner.installed = installed;
                Ok(report)
            }
            result => {
                inner.tables = previous;
                result.map(|(report, _)| report)
            }
        }
    }

    /// Applies the whole merge of the tables (held routes counted when
    /// `held`), with `desired`'s sources and DSCP table or those in force;
    /// returns the prefixes that took BGP's route.
    fn apply_whole(
        &self,
        inner: &Inner,
        held: bool,
        desired: Option<&ValidState>,
        options: ApplyOptions,
    ) -> Result<(ApplyReport, BTreeMap<IpNetwork, Option<PolicyKey>>), RouteError> {
        let candidates = inner.bgp_candidates(held);
        let keys: BTreeMap<IpNetwork, Option<PolicyKey>> = candidates.iter().map(|(p, _, k)| (*p, *k)).collect();
        let (routes, from) = inner.tables.merge(candidates.into_iter().map(|(p, r, _)| (p, r)));
        let (sources, dscp) = match desired {
            Some(v) => (v.sources().clone(), *v.dscp()),
            None => (self.enc.sources().list().into_iter().collect(), self.enc.dscp_map()),
        };
        let state = ValidState::new(routes, sources, dscp).map_err(RouteError::Invalid)?;
        let key = |p: &IpNetwork| keys.get(p).copied().flatten();
        let origins: crate::fib::apply::Origins =
            from.iter().filter_map(|(id, o)| Some((*id, noted(*o, key(&id.1))?))).collect();
        let report = self.enc.apply_from(state, options, &origins)?;
        let installed = from.into_iter().filter(|(_, o)| *o == Origin::Bgp).map(|(id, _)| (id.1, key(&id.1))).collect();
        Ok((report, installed))
    }

    /// Records what BGP's policies say (preference, binding SID, ...) in the
    /// RIB, for `routes`, `get` and the next agent; a failure is logged (the
    /// routes are right, only their description may be out of date).
    fn save(&self, inner: &Inner) {
        let mut infos: BTreeMap<PolicyKey, PolicyInfo> = inner.held_policies.clone();
        infos.extend(inner.bgp.policies.iter().map(|(k, (_, i))| (*k, i.clone())));
        let notes = match serde_json::to_vec(&infos.into_values().collect::<Vec<_>>()) {
            Ok(n) => n,
            Err(e) => return log::warn!("recording BGP's policies: {e}"),
        };
        if let Err(e) = self.enc.set_origin_notes(notes) {
            log::warn!("recording BGP's policies: {e} (the policies shown by `routes` may be out of date)");
        }
    }

    /// [`Origins::view`] of the route for `prefix` in `table` only: what
    /// explaining one destination needs, without building the view of every
    /// route (which `get` did twice, for a second of CPU at a million routes
    /// with the lock held and every change waiting).
    pub fn view_of(&self, table: Table, prefix: IpNetwork) -> OriginsView {
        self.lock().view_of(table, prefix)
    }

    /// The origin of each route in force, for the agent's `ListRoutes`.
    pub fn view(&self) -> OriginsView {
        self.lock().view()
    }
}

/// What the RIB recorded of BGP's policies, by policy.
fn read_notes(notes: &[u8]) -> BTreeMap<PolicyKey, PolicyInfo> {
    if notes.is_empty() {
        return BTreeMap::new();
    }
    match serde_json::from_slice::<Vec<PolicyInfo>>(notes) {
        Ok(infos) => infos.into_iter().map(|i| (PolicyKey { color: i.color, endpoint: i.endpoint }, i)).collect(),
        Err(e) => {
            log::warn!("the RIB's record of BGP's policies cannot be read ({e}); shown without their details");
            BTreeMap::new()
        }
    }
}

/// The origins of the routes of one interface, as the agent last recorded
/// them: what `lnetd-host-encap routes` and `get` show.
#[derive(Debug, Clone, Default)]
pub struct OriginsView {
    local: BTreeMap<RouteId, Origin>,
    /// BGP's prefixes: the policy each is steered into (when known) and,
    /// while that policy has a valid candidate path, what it says.
    bgp: BTreeMap<IpNetwork, (Option<PolicyKey>, Option<PolicyInfo>)>,
}

impl OriginsView {
    /// The origins `enc`'s RIB records beside its routes: what the agent
    /// (or the last one) set and what BGP taught; every other route is
    /// `static`.
    pub fn of(enc: &Encapsulator) -> OriginsView {
        let (noted, notes) = enc.origin_records();
        Self::from_records(noted, &notes)
    }

    /// As [`OriginsView::of`], for the routes covering `addr` only: what
    /// explaining one destination needs. A handle that has not read its
    /// routes yet (a reader's, adopted to look) reads only those.
    pub fn covering(enc: &Encapsulator, addr: IpAddr) -> OriginsView {
        let (noted, notes) = enc.origin_records_covering(addr);
        Self::from_records(noted, &notes)
    }

    fn from_records(noted: crate::fib::apply::Origins, notes: &[u8]) -> OriginsView {
        let infos = read_notes(notes);
        let mut view = OriginsView::default();
        for (id, o) in noted {
            match o {
                Noted::Agent => {
                    view.local.insert(id, Origin::Agent);
                }
                Noted::Bgp(key) if id.0 == Table::Main => {
                    let key = key.map(|(color, endpoint)| PolicyKey { color, endpoint });
                    let info = key.and_then(|k| infos.get(&k)).cloned();
                    view.bgp.insert(id.1, (key, info));
                }
                Noted::Bgp(_) => {}
            }
        }
        view
    }

    /// Where the route for `prefix` in `table` came from, and for a BGP
    /// route the policy it is steered into.
    pub fn origin(&self, table: Table, prefix: IpNetwork) -> (Origin, Option<&PolicyInfo>) {
        // The prefixes listed as BGP's are those where BGP's route won.
        if let (Table::Main, Some((_, info))) = (table, self.bgp.get(&prefix)) {
            return (Origin::Bgp, info.as_ref());
        }
        (self.local.get(&(table, prefix)).copied().unwrap_or(Origin::Static), None)
    }

    /// For a BGP route, the SR policy (color, endpoint) it is steered
    /// into, valid or not: what its liveness is looked up by.
    pub fn policy_key(&self, table: Table, prefix: IpNetwork) -> Option<PolicyKey> {
        match table {
            Table::Main => self.bgp.get(&prefix)?.0,
            _ => None,
        }
    }

    /// For a BGP route, the SR policy it is steered into as `routes` and
    /// `get` show it: what [`OriginsView::origin`]'s [`PolicyInfo`] says,
    /// or, for a policy with no valid candidate path (which has no active
    /// path to describe), its color and endpoint and that it is invalid.
    /// `None` for a route that is not BGP's, or whose policy is not known.
    pub fn bgp_policy(&self, table: Table, prefix: IpNetwork) -> Option<String> {
        match (table, self.bgp.get(&prefix)?) {
            (Table::Main, (_, Some(info))) => Some(info.to_string()),
            (Table::Main, (Some(k), None)) => Some(invalid_policy_text(k)),
            _ => None,
        }
    }
}

/// How a BGP route's policy with no valid candidate path is shown.
fn invalid_policy_text(key: &PolicyKey) -> String {
    format!("policy color {} endpoint {}, from BGP: no valid candidate path", key.color, key.endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str, l: &str) -> Route {
        Route::new(p.parse().unwrap(), l.parse().unwrap())
    }

    #[test]
    fn local_routes_win_and_bgp_fills_the_rest() {
        let key = PolicyKey { color: 100, endpoint: "192.0.2.1".parse().unwrap() };
        let info = PolicyInfo {
            color: 100,
            endpoint: key.endpoint,
            preference: 100,
            distinguisher: 1,
            binding_sid: None,
            name: None,
            enlp: None,
        };
        let mut inner = Inner::default();
        let mut agent = BTreeMap::new();
        agent.insert((Table::Main, "10.0.0.0/8".parse().unwrap()), route("10.0.0.0/8", "16001"));
        inner.tables.replace_local(Origin::Agent, agent);
        let merge = |inner: &Inner| {
            let (routes, from_bgp) = inner.tables.merge(inner.bgp_candidates(true).into_iter().map(|(p, r, _)| (p, r)));
            let bgp = from_bgp.into_iter().filter(|(_, o)| *o == Origin::Bgp).map(|(id, _)| (id.1, ()));
            (routes, bgp.collect::<BTreeMap<IpNetwork, ()>>())
        };
        let mut bgp = BgpTable::default();
        bgp.policies.insert(key, ("17001".parse().unwrap(), info));
        for p in ["10.0.0.0/8", "10.1.0.0/16"] {
            bgp.routes.insert(p.parse().unwrap(), key);
        }
        let mut held = BTreeMap::new();
        held.insert("10.2.0.0/16".parse().unwrap(), (route("10.2.0.0/16", "18000"), None));
        held.insert("10.1.0.0/16".parse().unwrap(), (route("10.1.0.0/16", "18001"), None));
        (inner.bgp, inner.held) = (bgp, held);
        let (routes, installed) = merge(&inner);
        let got: Vec<String> = routes.values().map(|r| format!("{} {}", r.prefix, r.policy)).collect();
        assert_eq!(got, ["10.0.0.0/8 16001", "10.1.0.0/16 17001", "10.2.0.0/16 18000"]);
        let prefixes: Vec<String> = installed.keys().map(|p| p.to_string()).collect();
        assert_eq!(prefixes, ["10.1.0.0/16", "10.2.0.0/16"]);
        // A held route on a policy BGP now knows to be invalid is not kept
        // with its lists: it goes onto the policy's invalid object.
        let gone = PolicyKey { color: 200, endpoint: key.endpoint };
        let id = (Table::Main, "10.3.0.0/16".parse().unwrap());
        inner.held.insert(id.1, (route("10.3.0.0/16", "18003"), Some(gone)));
        inner.bgp.invalid.insert(gone);
        let (routes, _) = merge(&inner);
        assert_eq!(routes[&id].policy, Policy::invalid(&object_name(&gone, false)).unwrap());
        inner.bgp.invalid.clear();
        let (routes, installed) = merge(&inner);
        assert_eq!(routes[&id].policy.to_string(), "18003");
        // One route's origin, looked up alone, is what the view of every
        // route says (static and agent routes, BGP's, held, and none).
        let mut statics = BTreeMap::new();
        statics.insert((Table::Main, "10.4.0.0/16".parse().unwrap()), route("10.4.0.0/16", "16004"));
        inner.tables.replace_local(Origin::Static, statics);
        inner.installed = installed.keys().map(|p| (*p, Some(key))).collect();
        let view = inner.view();
        for p in ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "10.4.0.0/16", "10.9.0.0/16"] {
            let prefix: IpNetwork = p.parse().unwrap();
            for table in [Table::Main, Table::alternate(1).unwrap()] {
                let one = inner.view_of(table, prefix);
                assert_eq!(one.origin(table, prefix), view.origin(table, prefix), "{p} in {table:?}");
                assert_eq!(one.bgp_policy(table, prefix), view.bgp_policy(table, prefix), "{p} in {table:?}");
            }
        }
    }
}
