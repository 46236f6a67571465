//! The desired state a controller (or a person, in a file) hands to
//! [`crate::Encapsulator::apply`]: every route of every table, the sources,
//! the DSCP table. Read from TOML or JSON with serde; unknown keys are
//! refused. The text syntaxes are the domain types' own (`FromStr`).
//!
//! ```
//! use lnetd_host_encap::DesiredState;
//! let desired: DesiredState = serde_json::from_str(r#"{
//!     "routes": [
//!         { "prefix": "0.0.0.0/0", "policy": "1000000" },
//!         { "prefix": "198.51.100.0/24", "policy": "16001/16002@7,16003@3", "tc": "dscp", "entropy_label": "bottom" },
//!         { "prefix": "198.51.100.0/24", "policy": "17001", "table": 5, "tc": 5 }
//!     ],
//!     "sources": [ { "prefix": "10.0.0.0/8", "table": 5 } ]
//! }"#)?;
//! let valid = desired.validate()?;
//! assert_eq!(valid.routes().len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::label::{DscpMap, TrafficClass};
use super::policy::{EntropyLabel, Policy};
use super::prefix;
use super::route::{Route, Table, Tc};

/// The whole desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// Every route, of every table.
    #[serde(default)]
    pub routes: Vec<DesiredRoute>,
    /// Source prefixes that select alternate tables.
    #[serde(default)]
    pub sources: Vec<DesiredSource>,
    /// The DSCP -> TC table: 64 values 0..=7. Absent: the default (DSCP >> 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dscp_map: Option<Vec<u8>>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredRoute {
    /// Destination prefix, e.g. `198.51.100.0/24` (no host bits).
    pub prefix: String,
    /// Segment lists: `16001/16002` or `16001/16002@7,16003@3`.
    pub policy: String,
    /// Traffic class: 0..=7 or `"dscp"` (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tc: Option<TcSpec>,
    /// Alternate table id (1..); absent or 0: the main table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Entropy label: `"bottom"` or N (under the first N labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entropy_label: Option<EntropySpec>,
}

/// One source prefix and the alternate table it selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredSource {
    /// Source prefix.
    pub prefix: String,
    /// The alternate table (1..).
    pub table: u32,
}

/// `tc`: a number or `"dscp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TcSpec {
    /// A fixed traffic class.
    Fixed(u8),
    /// `"dscp"` (or a number written as text).
    Text(String),
}

/// `entropy_label`: a number or `"bottom"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntropySpec {
    /// Under the first N labels.
    After(usize),
    /// `"bottom"` (or a number written as text).
    Text(String),
}

/// An entry of a desired state that was refused; nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct DesiredError {
    /// Which entry, e.g. `routes[3] (198.51.100.0/24)`.
    pub what: String,
    /// Why, in the words of the type that refused it.
    pub reason: String,
}

/// A desired state that passed validation: every entry typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidState {
    routes: BTreeMap<(Table, IpNetwork), Route>,
    sources: BTreeMap<IpNetwork, Table>,
    dscp: DscpMap,
}

impl ValidState {
    /// The routes, by table and prefix.
    pub fn routes(&self) -> &BTreeMap<(Table, IpNetwork), Route> {
        &self.routes
    }

    /// The source prefixes.
    pub fn sources(&self) -> &BTreeMap<IpNetwork, Table> {
        &self.sources
    }

    /// The DSCP table.
    pub fn dscp(&self) -> &DscpMap {
        &self.dscp
    }

    /// A state from parts already known valid (the RIB's own).
    pub(crate) fn from_parts(
        routes: BTreeMap<(Table, IpNetwork), Route>,
        sources: BTreeMap<IpNetwork, Table>,
        dscp: DscpMap,
    ) -> ValidState {
        ValidState { routes, sources, dscp }
    }

    /// The routes, to patch in place (the caller keeps them valid: no host
    /// bits, each keyed by its own prefix).
    #[cfg(feature = "bgp")]
    pub(crate) fn routes_mut(&mut self) -> &mut BTreeMap<(Table, IpNetwork), Route> {
        &mut self.routes
    }

    /// Replaces the sources (the caller keeps them valid).
    #[cfg(feature = "bgp")]
    pub(crate) fn set_sources(&mut self, sources: BTreeMap<IpNetwork, Table>) {
        self.sources = sources;
    }

    /// Replaces the DSCP table.
    #[cfg(feature = "bgp")]
    pub(crate) fn set_dscp(&mut self, dscp: DscpMap) {
        self.dscp = dscp;
    }

    /// The routes, taken out.
    pub(crate) fn into_routes(self) -> BTreeMap<(Table, IpNetwork), Route> {
        self.routes
    }

    /// A valid state from typed parts: the values are valid by their types;
    /// what is checked here is what they cannot say (no host bits, a route's
    /// key matching its prefix, sources selecting alternate tables that have
    /// routes).
    ///
    /// # Errors
    /// [`DesiredError`] naming the first entry refused.
    pub fn new(
        routes: BTreeMap<(Table, IpNetwork), Route>,
        sources: BTreeMap<IpNetwork, Table>,
        dscp: DscpMap,
    ) -> Result<ValidState, DesiredError> {
        for ((table, prefix), route) in &routes {
            let what = || format!("route {prefix} (table {})", table.id());
            prefix::check(*prefix).map_err(|e| DesiredError { what: what(), reason: e.to_string() })?;
            if route.prefix != *prefix {
                return Err(DesiredError { what: what(), reason: format!("its route is for {}", route.prefix) });
            }
        }
        let tables: BTreeSet<Table> = routes.keys().map(|(t, _)| *t).collect();
        for (prefix, table) in &sources {
            let what = format!("source {prefix}");
            prefix::check(*prefix).map_err(|e| DesiredError { what: what.clone(), reason: e.to_string() })?;
            if *table == Table::Main || !tables.contains(table) {
                let reason = format!("selects table {}, which is not an alternate table with routes", table.id());
                return Err(DesiredError { what, reason });
            }
        }
        Ok(ValidState { routes, sources, dscp })
    }
}

impl DesiredState {
    /// Checks every entry and returns the typed state, or the first entry
    /// refused: bad prefixes (host bits), labels, stacks, policies, weights,
    /// traffic classes, entropy labels; the same route twice; a source listed
    /// twice or naming a table that has no routes; a DSCP table that is not 64
    /// values of 0..=7.
    ///
    /// # Errors
    /// [`DesiredError`], naming the entry and why.
    pub fn validate(&self) -> Result<ValidState, DesiredError> {
        let mut routes = BTreeMap::new();
        for (i, r) in self.routes.iter().enumerate() {
            let what = || format!("routes[{i}] ({})", r.prefix);
            let bad = |reason: String| DesiredError { what: what(), reason };
            let prefix = prefix::parse(&r.prefix).map_err(|e| bad(e.to_string()))?;
            let policy: Policy = r.policy.parse().map_err(|e: super::policy::PolicyError| bad(e.to_string()))?;
            let entropy = match &r.entropy_label {
                None => None,
                Some(EntropySpec::After(n)) => Some(EntropyLabel::After(*n)),
                Some(EntropySpec::Text(t)) => {
                    Some(t.parse().map_err(|e: super::policy::PolicyError| bad(e.to_string()))?)
                }
            };
            let policy = policy.with_entropy_label(entropy).map_err(|e| bad(e.to_string()))?;
            let tc = match &r.tc {
                None => Tc::default(),
                Some(TcSpec::Fixed(n)) => Tc::Fixed(TrafficClass::new(*n).map_err(|e| bad(e.to_string()))?),
                Some(TcSpec::Text(t)) => t.parse().map_err(|e: super::label::LabelError| bad(e.to_string()))?,
            };
            let table = Table::alternate(r.table.unwrap_or(0)).unwrap_or(Table::Main);
            if routes.insert((table, prefix), Route { prefix, policy, tc }).is_some() {
                return Err(bad(format!("a second route for {prefix} in the same table")));
            }
        }
        let tables: BTreeSet<Table> = routes.keys().map(|(t, _)| *t).collect();
        let mut sources = BTreeMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            let bad = |reason: String| DesiredError { what: format!("sources[{i}] ({})", s.prefix), reason };
            let prefix = prefix::parse(&s.prefix).map_err(|e| bad(e.to_string()))?;
            let table = Table::alternate(s.table)
                .ok_or_else(|| bad("table 0 is the main table; a source selects an alternate table (1..)".into()))?;
            if !tables.contains(&table) {
                return Err(bad(format!("selects table {}, which has no routes in this state", s.table)));
            }
            if sources.insert(prefix, table).is_some() {
                return Err(bad(format!("{prefix} is listed twice")));
            }
        }
        let dscp = match &self.dscp_map {
            None => DscpMap::default(),
            Some(values) => {
                let bad = |reason: String| DesiredError { what: "dscp_map".into(), reason };
                let values: [u8; 64] =
                    values.as_slice().try_into().map_err(|_| bad(format!("{} values, not 64", values.len())))?;
                DscpMap::new(values).map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(ValidState { routes, sources, dscp })
    }

    /// Reads a desired state from TOML text.
    ///
    /// # Errors
    /// [`DesiredError`] for a syntax error or an unknown key.
    pub fn from_toml(text: &str) -> Result<DesiredState, DesiredError> {
        toml::from_str(text).map_err(|e| DesiredError { what: "TOML".into(), reason: e.to_string() })
    }

    /// Reads a desired state from JSON text.
    ///
    /// # Errors
    /// [`DesiredError`] for a syntax error or an unknown key.
    pub fn from_json(text: &str) -> Result<DesiredState, DesiredError> {
        serde_json::from_str(text).map_err(|e| DesiredError { what: "JSON".into(), reason: e.to_string() })
    }
}
