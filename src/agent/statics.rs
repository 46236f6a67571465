//! The configuration file's static routes, an origin of the agent: applied
//! at start (after adoption or attach) and on every reload (SIGHUP or the
//! `Reload` RPC), through the same path as the agent's other origins. Routes
//! set through the API are kept; the file's routes replace the previous
//! file's. Settings that cannot change while the agent runs are reported,
//! never silently ignored.

#[cfg(not(feature = "bgp"))]
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

#[cfg(not(feature = "bgp"))]
use ipnetwork::IpNetwork;

use super::config::{AgentFile, ConfigError};
use super::Writes;
use crate::domain::desired::DesiredState;
#[cfg(not(feature = "bgp"))]
use crate::domain::route::Table;
use crate::error::RouteError;
use crate::fib::apply::ApplyReport;

/// A reload (or the start) refused; the routes in force are unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Its routes could not be applied.
    #[error("applying the static routes of {path}: {source}")]
    Apply {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RouteError,
    },
    /// The agent was started without a configuration file.
    #[error("the agent was started without --config: there is no file to reload; restart it with --config FILE")]
    NoConfig,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The file read.
    pub path: PathBuf,
    /// The routes' change; `None` when the file names no static routes
    /// (the routes in force were left alone).
    pub routes: Option<ApplyReport>,
    /// Settings the file changed that need a restart (`[listeners]`, ...):
    /// not applied.
    pub restart_needed: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reloaded {}: ", self.path.display())?;
        match &self.routes {
            Some(r) => write!(f, "static routes: {r}")?,
            None => f.write_str("no static routes in the file (routes left as they are)")?,
        }
        if !self.restart_needed.is_empty() {
            write!(f, "; changed but NOT applied (restart the agent): {}", self.restart_needed.join(", "))?;
        }
        Ok(())
    }
}

/// The file the agent was started with, and what its static routes put in.
#[derive(Debug)]
pub(crate) struct Statics {
    inner: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The file as read at start: settings are compared against it.
    started: AgentFile,
    /// The routes and sources the file applied last (without BGP's
    /// origins, the next reload replaces exactly these).
    #[cfg(not(feature = "bgp"))]
    applied: (BTreeSet<(Table, IpNetwork)>, BTreeSet<IpNetwork>),
}

impl Statics {
    pub(crate) fn new(file: AgentFile) -> Statics {
        Statics {
            inner: Mutex::new(State {
                started: file,
                #[cfg(not(feature = "bgp"))]
                applied: Default::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.lock().started.path.clone()
    }

    /// Applies the static routes of the file read at start.
    pub(crate) fn start(&self, writes: &Writes) -> Result<ReloadReport, ReloadError> {
        let file = self.lock().started.clone();
        self.apply(writes, &file, Vec::new())
    }

    /// Reads the file again and applies its static routes.
    pub(crate) fn reload(&self, writes: &Writes) -> Result<ReloadReport, ReloadError> {
        let path = self.path();
        let file = AgentFile::read(&path)?;
        // Nothing is applied from a file the next start would refuse.
        file.check()?;
        let restart_needed = self.lock().started.restart_needed(&file);
        self.apply(writes, &file, restart_needed)
    }

    fn apply(
        &self,
        writes: &Writes,
        file: &AgentFile,
        restart_needed: Vec<String>,
    ) -> Result<ReloadReport, ReloadError> {
        let routes = match file.static_routes()? {
            None => None,
            Some(desired) => Some(
                self.apply_routes(writes, &desired)
                    .map_err(|source| ReloadError::Apply { path: file.path.clone(), source })?,
            ),
        };
        for setting in &restart_needed {
            log::warn!("{}: {setting} changed: it takes effect at the next restart", file.path.display());
        }
        Ok(ReloadReport { path: file.path.clone(), routes, restart_needed })
    }

    fn apply_routes(&self, writes: &Writes, desired: &DesiredState) -> Result<ApplyReport, RouteError> {
        // One reload at a time.
        let mut state = self.lock();
        #[cfg(feature = "bgp")]
        {
            let _ = &mut state;
            writes.origins.apply_static(desired, crate::ApplyOptions::default())
        }
        #[cfg(not(feature = "bgp"))]
        {
            use crate::domain::desired::ValidState;
            use crate::domain::label::DscpMap;
            use std::collections::BTreeMap;
            // Without BGP nothing ranks the origins: the dataplane's routes
            // are the base; the previous file's are replaced by this one's,
            // the API's (recorded as the agent's) kept, and winning a key
            // both have, as the default precedence would have it.
            let valid = desired.validate()?;
            let (agent, _) = writes.enc.origin_records();
            let mut routes = writes.enc.valid_state().into_routes();
            routes.retain(|k, _| !state.applied.0.contains(k) || agent.contains_key(k));
            let ours: BTreeMap<_, _> =
                valid.routes().iter().filter(|(k, _)| !agent.contains_key(*k)).map(|(k, r)| (*k, r.clone())).collect();
            routes.extend(ours.iter().map(|(k, r)| (*k, r.clone())));
            let mut sources: BTreeMap<IpNetwork, Table> =
                writes.enc.sources().list().into_iter().filter(|(p, _)| !state.applied.1.contains(p)).collect();
            sources.extend(valid.sources().iter().map(|(p, t)| (*p, *t)));
            let dscp: DscpMap = if desired.dscp_map.is_some() { *valid.dscp() } else { writes.enc.dscp_map() };
            let merged = ValidState::new(routes, sources, dscp).map_err(RouteError::Invalid)?;
            let report = writes.enc.apply_from(merged, crate::ApplyOptions::default(), &agent)?;
            state.applied = (ours.into_keys().collect(), valid.sources().keys().copied().collect());
            Ok(report)
        }
    }
}
