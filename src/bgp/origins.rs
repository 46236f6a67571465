//! Where each route came from, and which source wins a prefix.
//!
//! A host takes routes from several sources at once: the command line and
//! library calls before the agent started (`static`), the agent's gRPC API
//! (`agent`) and BGP (`bgp`). Each keeps its own table, replaced only by
//! itself; the tables in force are their merge, handed to
//! [`Encapsulator::apply_valid_owned`] in one piece, so a change of any
//! source is atomic and never half-applied. For a prefix of the main table,
//! `static` and `agent` routes win over BGP's (an operator's explicit word
//! beats the fleet's, like an administrative distance): BGP's route is
//! installed where no local one exists, and comes back when the local one is
//! removed. BGP only ever fills the main table.
//!
//! The agent records the origins beside the dataplane's state
//! (`/run/lnetd-host-encap/origins/net<netns>/<iface>/origins.json`), so the
//! command's `routes` and `get` show them while the agent runs
//! ([`OriginsView`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::select::PolicyKey;
use crate::domain::desired::{DesiredState, ValidState};
use crate::domain::route::{Route, Table};
use crate::encapsulator::Encapsulator;
use crate::error::RouteError;
use crate::fib::apply::ApplyReport;

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Set outside the agent (the command, a file, the library) and adopted by it.
    Static,
    /// Set through the agent's gRPC API.
    Agent,
    /// Learned from BGP: a colored route steered into an SR policy.
    Bgp,
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

/// The SR policy a BGP route is steered into, as selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The color.
    pub color: u32,
    /// The endpoint.
    pub endpoint: IpAddr,
    /// The active candidate path's preference.
    pub preference: u32,
    /// Its distinguisher.
    pub distinguisher: u32,
    /// Its binding SID, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_sid: Option<u32>,
}

impl fmt::Display for PolicyInfo {
    /// `policy color 100 endpoint 192.0.2.1 preference 200 (binding SID 24001), from BGP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy color {} endpoint {} preference {}", self.color, self.endpoint, self.preference)?;
        if let Some(b) = self.binding_sid {
            write!(f, " (binding SID {b})")?;
        }
        f.write_str(", from BGP")
    }
}

/// What BGP wants installed: the steered routes and the policies they use.
#[derive(Debug, Clone, Default)]
pub struct BgpTable {
    /// Steered routes by prefix, with the policy each uses.
    pub routes: BTreeMap<IpNetwork, (Route, PolicyKey)>,
    /// The active policies.
    pub policies: BTreeMap<PolicyKey, PolicyInfo>,
}

/// One route's key: table and prefix.
type RouteId = (Table, IpNetwork);

#[derive(Debug, Default)]
struct Inner {
    /// Static and agent routes, every table.
    local: BTreeMap<RouteId, (Route, Origin)>,
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

/// The per-origin tables of one encapsulator and their merge (see the module docs).
#[derive(Debug)]
pub struct Origins {
    enc: Arc<Encapsulator>,
    file: Option<PathBuf>,
    inner: Mutex<Inner>,
}

/// The origins file: what `routes` and `get` read.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OriginsFile {
    /// Routes set through the agent: (table, prefix).
    agent: Vec<(u32, String)>,
    /// The policies BGP routes use.
    policies: Vec<PolicyInfo>,
    /// Main-table prefixes holding a BGP route, with the index of their policy in `policies`.
    bgp: Vec<(String, Option<usize>)>,
}

/// Where an interface's origins file is.
///
/// # Errors
/// The namespace cannot be read.
pub fn origins_path(iface: &str) -> std::io::Result<PathBuf> {
    let ns = crate::sys::bpffs::netns_id()?;
    Ok(crate::PinRoots::default().state.join("origins").join(format!("net{ns}")).join(iface).join("origins.json"))
}

impl Origins {
    /// The origins of `enc`'s routes: those the last agent recorded in `file`
    /// (routes it set, routes BGP taught), every other route `static`. Routes
    /// BGP taught before are held (kept as they are) until the first
    /// [`Origins::set_bgp`] with `release_held`.
    pub fn new(enc: Arc<Encapsulator>, file: Option<PathBuf>) -> Origins {
        let recorded = file.as_deref().and_then(read_file).unwrap_or_default();
        let agent: BTreeSet<RouteId> = recorded
            .agent
            .iter()
            .filter_map(|(t, p)| Some((Table::alternate(*t).unwrap_or(Table::Main), p.parse().ok()?)))
            .collect();
        let bgp: BTreeMap<IpNetwork, Option<usize>> =
            recorded.bgp.iter().filter_map(|(p, i)| Some((p.parse().ok()?, *i))).collect();
        let mut inner = Inner::default();
        for ((table, prefix), route) in enc.valid_state().into_routes() {
            if table == Table::Main {
                if let Some(index) = bgp.get(&prefix) {
                    let info = index.and_then(|i| recorded.policies.get(i));
                    let key = info.map(|p| PolicyKey { color: p.color, endpoint: p.endpoint });
                    if let (Some(k), Some(p)) = (key, info) {
                        inner.held_policies.insert(k, p.clone());
                    }
                    inner.held.insert(prefix, (route, key));
                    inner.installed.insert(prefix, key);
                    continue;
                }
            }
            let origin = if agent.contains(&(table, prefix)) { Origin::Agent } else { Origin::Static };
            inner.local.insert((table, prefix), (route, origin));
        }
        Origins { enc, file, inner: Mutex::new(inner) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces BGP's table and applies the merge. `release_held`: routes
    /// held from before are dropped (BGP has had its time to teach them again).
    ///
    /// # Errors
    /// As [`Encapsulator::apply_valid_owned`]; nothing changed then.
    pub fn set_bgp(&self, table: BgpTable, release_held: bool) -> Result<ApplyReport, RouteError> {
        let mut inner = self.lock();
        let empty = BTreeMap::new();
        let held = if release_held { &empty } else { &inner.held };
        let (report, installed) = self.apply_merged(&inner.local, &table, held, None)?;
        inner.bgp = table;
        if release_held {
            inner.held.clear();
            inner.held_policies.clear();
        }
        inner.installed = installed;
        self.save(&inner);
        Ok(report)
    }

    /// Keeps every BGP route installed now as it is until the next
    /// [`Origins::set_bgp`] with `release_held` (a resynchronisation under the
    /// session-down policy `keep`).
    pub fn hold_installed(&self) {
        let mut inner = self.lock();
        let Inner { bgp, held, held_policies, installed, .. } = &mut *inner;
        for (prefix, (route, key)) in &bgp.routes {
            if installed.contains_key(prefix) {
                held.insert(*prefix, (route.clone(), Some(*key)));
                if let Some(p) = bgp.policies.get(key) {
                    held_policies.insert(*key, p.clone());
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

    /// Adds or replaces a route through the agent's API.
    ///
    /// # Errors
    /// As [`Encapsulator::set_route_in`].
    pub fn set_route(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        let mut inner = self.lock();
        self.enc.set_route_in(table, route)?;
        inner.local.insert((table, route.prefix), (route.clone(), Origin::Agent));
        if table == Table::Main {
            inner.installed.remove(&route.prefix);
        }
        self.save(&inner);
        Ok(())
    }

    /// Removes a static or agent route; where BGP has a route for the
    /// prefix, BGP's takes its place (replaced in place: no moment without a
    /// route). `Ok(false)` when there was no local route (a BGP route is
    /// withdrawn in BGP, not here).
    ///
    /// # Errors
    /// As [`Encapsulator::remove_in`] / [`Encapsulator::set_route_in`].
    pub fn remove_route(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let mut inner = self.lock();
        if !inner.local.contains_key(&(table, prefix)) {
            return Ok(false);
        }
        let from_bgp = (table == Table::Main)
            .then(|| {
                inner
                    .bgp
                    .routes
                    .get(&prefix)
                    .map(|(r, k)| (r.clone(), Some(*k)))
                    .or_else(|| inner.held.get(&prefix).cloned())
            })
            .flatten();
        match &from_bgp {
            Some((route, _)) => self.enc.set_route_in(table, route)?,
            None => {
                self.enc.remove_in(table, prefix)?;
            }
        }
        inner.local.remove(&(table, prefix));
        if let Some((_, key)) = from_bgp {
            inner.installed.insert(prefix, key);
        }
        self.save(&inner);
        Ok(true)
    }

    /// Makes the static and agent tables equal to `desired` (all of them
    /// become `agent` routes), merged with BGP's as always.
    ///
    /// # Errors
    /// As [`Encapsulator::apply`].
    pub fn apply_local(&self, desired: &DesiredState, dry_run: bool) -> Result<ApplyReport, RouteError> {
        let valid = desired.validate()?;
        let mut inner = self.lock();
        let local: BTreeMap<RouteId, (Route, Origin)> =
            valid.routes().iter().map(|(id, r)| (*id, (r.clone(), Origin::Agent))).collect();
        let (report, installed) = self.apply_merged(&local, &inner.bgp, &inner.held, Some((&valid, dry_run)))?;
        if !dry_run {
            inner.local = local;
            inner.installed = installed;
            self.save(&inner);
        }
        Ok(report)
    }

    /// Applies the merge of `local`, `bgp` and `held` (with `desired`'s
    /// sources and DSCP table, or the ones in force).
    fn apply_merged(
        &self,
        local: &BTreeMap<RouteId, (Route, Origin)>,
        bgp: &BgpTable,
        held: &BTreeMap<IpNetwork, (Route, Option<PolicyKey>)>,
        desired: Option<(&ValidState, bool)>,
    ) -> Result<(ApplyReport, BTreeMap<IpNetwork, Option<PolicyKey>>), RouteError> {
        let (routes, installed) = merge(local, bgp, held);
        let (sources, dscp) = match desired {
            Some((v, _)) => (v.sources().clone(), *v.dscp()),
            None => (self.enc.sources().into_iter().collect(), self.enc.dscp_map()),
        };
        let state = ValidState::new(routes, sources, dscp).map_err(RouteError::Invalid)?;
        let report = match desired {
            Some((_, true)) => self.enc.apply_valid_dry_run(state),
            _ => self.enc.apply_valid_owned(state),
        }?;
        Ok((report, installed))
    }

    /// Writes the origins file (a failure is logged: forwarding does not depend on it).
    fn save(&self, inner: &Inner) {
        let Some(path) = &self.file else { return };
        let mut policies: Vec<PolicyInfo> = Vec::new();
        let mut index: BTreeMap<PolicyKey, usize> = BTreeMap::new();
        let mut bgp = Vec::with_capacity(inner.installed.len());
        for (prefix, key) in &inner.installed {
            let i = key.and_then(|k| {
                if let Some(i) = index.get(&k) {
                    return Some(*i);
                }
                let info = inner.bgp.policies.get(&k).or_else(|| inner.held_policies.get(&k))?;
                policies.push(info.clone());
                index.insert(k, policies.len() - 1);
                Some(policies.len() - 1)
            });
            bgp.push((prefix.to_string(), i));
        }
        let file = OriginsFile {
            agent: inner
                .local
                .iter()
                .filter(|(_, (_, o))| *o == Origin::Agent)
                .map(|((t, p), _)| (t.id(), p.to_string()))
                .collect(),
            policies,
            bgp,
        };
        if let Err(e) = write_file(path, &file) {
            log::warn!("writing {}: {e} (the origins shown by `routes` may be out of date)", path.display());
        }
    }

    /// The origin of each route in force, for the agent's `ListRoutes`.
    pub fn view(&self) -> OriginsView {
        let inner = self.lock();
        let mut view = OriginsView::default();
        for ((t, p), (_, o)) in &inner.local {
            view.local.insert((*t, *p), *o);
        }
        for (prefix, key) in &inner.installed {
            let info = key.and_then(|k| inner.bgp.policies.get(&k).or_else(|| inner.held_policies.get(&k))).cloned();
            view.bgp.insert(*prefix, info);
        }
        view
    }
}

/// The merged routes, and the main-table prefixes that took BGP's route.
fn merge(
    local: &BTreeMap<RouteId, (Route, Origin)>,
    bgp: &BgpTable,
    held: &BTreeMap<IpNetwork, (Route, Option<PolicyKey>)>,
) -> (BTreeMap<RouteId, Route>, BTreeMap<IpNetwork, Option<PolicyKey>>) {
    // Gathered, then built in bulk (sorting is cheap next to a million
    // one-by-one inserts).
    let mut routes: Vec<(RouteId, Route)> = local.iter().map(|(id, (r, _))| (*id, r.clone())).collect();
    let mut installed = Vec::new();
    let bgp_routes = bgp.routes.iter().map(|(p, (r, k))| (p, r, Some(*k)));
    let held_routes = held.iter().filter(|(p, _)| !bgp.routes.contains_key(p)).map(|(p, (r, k))| (p, r, *k));
    for (prefix, route, key) in bgp_routes.chain(held_routes) {
        if !local.contains_key(&(Table::Main, *prefix)) {
            routes.push(((Table::Main, *prefix), route.clone()));
            installed.push((*prefix, key));
        }
    }
    (routes.into_iter().collect(), installed.into_iter().collect())
}

fn read_file(path: &Path) -> Option<OriginsFile> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn!("{} is not an origins file ({e}); every route counts as static", path.display());
            None
        }
    }
}

fn write_file(path: &Path, file: &OriginsFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::sys::bpffs::create_private_dir(dir)?;
    let tmp = dir.join(format!(".origins.json.{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(file).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// The origins of the routes of one interface, as the agent last recorded
/// them: what `lnetd-host-encap routes` and `get` show.
#[derive(Debug, Clone, Default)]
pub struct OriginsView {
    local: BTreeMap<RouteId, Origin>,
    bgp: BTreeMap<IpNetwork, Option<PolicyInfo>>,
}

impl OriginsView {
    /// Reads what the agent recorded for `iface` (in the calling thread's
    /// network namespace); empty when no agent with BGP recorded anything.
    pub fn load(iface: &str) -> OriginsView {
        let Some(file) = origins_path(iface).ok().as_deref().and_then(read_file) else {
            return OriginsView::default();
        };
        let mut view = OriginsView::default();
        for (t, p) in &file.agent {
            if let Ok(p) = p.parse() {
                view.local.insert((Table::alternate(*t).unwrap_or(Table::Main), p), Origin::Agent);
            }
        }
        for (p, i) in &file.bgp {
            if let Ok(p) = p.parse() {
                view.bgp.insert(p, i.and_then(|i| file.policies.get(i)).cloned());
            }
        }
        view
    }

    /// Where the route for `prefix` in `table` came from, and for a BGP
    /// route the policy it is steered into.
    pub fn origin(&self, table: Table, prefix: IpNetwork) -> (Origin, Option<&PolicyInfo>) {
        if let Some(o) = self.local.get(&(table, prefix)) {
            return (*o, None);
        }
        match (table, self.bgp.get(&prefix)) {
            (Table::Main, Some(info)) => (Origin::Bgp, info.as_ref()),
            _ => (Origin::Static, None),
        }
    }
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
        let mut local = BTreeMap::new();
        local.insert((Table::Main, "10.0.0.0/8".parse().unwrap()), (route("10.0.0.0/8", "16001"), Origin::Agent));
        let mut bgp = BgpTable::default();
        for (p, l) in [("10.0.0.0/8", "17001"), ("10.1.0.0/16", "17002")] {
            bgp.routes.insert(p.parse().unwrap(), (route(p, l), key));
        }
        let mut held = BTreeMap::new();
        held.insert("10.2.0.0/16".parse().unwrap(), (route("10.2.0.0/16", "18000"), None));
        held.insert("10.1.0.0/16".parse().unwrap(), (route("10.1.0.0/16", "18001"), None));
        let (routes, installed) = merge(&local, &bgp, &held);
        let got: Vec<String> = routes.values().map(|r| format!("{} {}", r.prefix, r.policy)).collect();
        assert_eq!(got, ["10.0.0.0/8 16001", "10.1.0.0/16 17002", "10.2.0.0/16 18000"]);
        let prefixes: Vec<String> = installed.keys().map(|p| p.to_string()).collect();
        assert_eq!(prefixes, ["10.1.0.0/16", "10.2.0.0/16"]);
    }

    #[test]
    fn the_policy_text_reads_as_the_issue_asks() {
        let info = PolicyInfo {
            color: 100,
            endpoint: "192.0.2.1".parse().unwrap(),
            preference: 200,
            distinguisher: 2,
            binding_sid: None,
        };
        assert_eq!(info.to_string(), "policy color 100 endpoint 192.0.2.1 preference 200, from BGP");
    }
}
