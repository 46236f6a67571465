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

use super::label::DscpMap;
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
    /// Traffic class: 0..=7 or `"dscp"` (default 0), the text of a
    /// [`Tc`]; the file may write the number bare (`tc = 5`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "number_or_text")]
    pub tc: Option<String>,
    /// Alternate table id (1..); absent or 0: the main table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Entropy label: `"bottom"` or N (under the first N labels), the text
    /// of an [`EntropyLabel`]; the file may write the number bare.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "number_or_text")]
    pub entropy_label: Option<String>,
    /// The name of a shared policy object (docs/policy-objects.md): every
    /// route with the same name points at one policy, changed by one write.
    /// With a name, `policy` may be `"invalid"` (its routes go unlabelled) or
    /// `"invalid drop"` (their packets are dropped): a policy with no live path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
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

/// `tc = 5` or `tc = "dscp"` (and `entropy_label = 2` or `"bottom"`): a
/// number or a text, kept as the text the domain type parses, so that a bad
/// value is refused by `validate` naming its entry.
pub(crate) fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    Ok(Option::<NumberOrText>::deserialize(d)?.map(|v| match v {
        NumberOrText::Number(n) => n.to_string(),
        NumberOrText::Text(t) => t,
    }))
}

/// An entry of a desired state that was refused; nothing was applied.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct DesiredError {
    /// Which entry, e.g. `routes[3] (198.51.100.0/24)`.
    pub what: String,
    /// Why, in the words of the type that refused it.
    pub reason: String,
}

/// The text format of a desired-state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredFormat {
    /// TOML (`[[routes]]` tables).
    Toml,
    /// JSON (`{"routes": [...]}`).
    Json,
}

/// A desired-state file refused before any route is compared: reading it
/// would have removed every route, most likely by mistake.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DesiredFileError {
    /// Nothing in the file (0 bytes, or only blanks).
    #[error(
        "the file is empty: applying it would remove every route; write `routes = []` (TOML) or \
         `{{\"routes\": []}}` (JSON) to mean that, or pass --allow-empty"
    )]
    Empty,
    /// Not a table or object (e.g. `[]`).
    #[error(
        "the file holds {found}, not a table of routes, sources and dscp_map: applying it would remove every \
         route; write `{{\"routes\": [...]}}`, or pass --allow-empty for an empty list"
    )]
    NotAnObject {
        /// What it holds instead: "an empty list", "a list", "a number"...
        found: &'static str,
    },
    /// A table without a `routes` key (e.g. `{}`).
    #[error(
        "the file has no `routes` key{}: applying it would remove every route; write `routes = []` to mean \
         that, or pass --allow-empty",
        if keys.is_empty() { String::new() } else { format!(" (it has: {})", keys.join(", ")) }
    )]
    NoRoutes {
        /// The keys it has instead.
        keys: Vec<String>,
    },
    /// A syntax error, an unknown key or a wrong type.
    #[error(transparent)]
    Invalid(#[from] DesiredError),
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
    #[cfg(all(feature = "agent", not(feature = "bgp")))]
    pub(crate) fn from_parts(
        routes: BTreeMap<(Table, IpNetwork), Route>,
        sources: BTreeMap<IpNetwork, Table>,
        dscp: DscpMap,
    ) -> ValidState {
        ValidState { routes, sources, dscp }
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
        check_policy_names(&routes)?;
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

/// Refuses two routes whose policies have one name and different contents:
/// the name is one shared policy object, which holds one content.
fn check_policy_names(routes: &BTreeMap<(Table, IpNetwork), Route>) -> Result<(), DesiredError> {
    let mut first: std::collections::HashMap<&str, &Route> = std::collections::HashMap::new();
    for ((table, prefix), route) in routes {
        let Some(name) = route.policy.name() else { continue };
        let seen = *first.entry(name).or_insert(route);
        if seen.policy != route.policy || seen.tc != route.tc {
            return Err(DesiredError {
                what: format!("route {prefix} (table {})", table.id()),
                reason: format!(
                    "its policy is named {name:?} like the route for {}, with other contents ({} tc {} here, {} tc {} \
                     there): routes sharing a name share one policy object; give them the same lists, entropy \
                     label and tc, or different names",
                    seen.prefix, route.policy, route.tc, seen.policy, seen.tc
                ),
            });
        }
    }
    Ok(())
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
        // A full table names few distinct policies: each text (with its
        // name, entropy label and tc) is parsed once, and its routes share
        // the result (the lists are behind an `Arc`).
        type Text<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let mut parsed: std::collections::HashMap<Text<'_>, (Policy, Tc)> = std::collections::HashMap::new();
        let mut rows: Vec<((Table, IpNetwork), usize, Route)> = Vec::with_capacity(self.routes.len());
        let mut named = false;
        for (i, r) in self.routes.iter().enumerate() {
            let bad = |reason: String| DesiredError { what: format!("routes[{i}] ({})", r.prefix), reason };
            let prefix = prefix::parse(&r.prefix).map_err(|e| bad(e.to_string()))?;
            let text = (r.policy.as_str(), r.policy_name.as_deref(), r.entropy_label.as_deref(), r.tc.as_deref());
            let (policy, tc) = match parsed.get(&text) {
                Some(known) => known.clone(),
                None => {
                    let policy =
                        Policy::from_text(&r.policy, r.policy_name.as_deref()).map_err(|e| bad(e.to_string()))?;
                    let entropy = match &r.entropy_label {
                        None => None,
                        Some(t) => Some(t.parse::<EntropyLabel>().map_err(|e| bad(e.to_string()))?),
                    };
                    let policy = policy.with_entropy_label(entropy).map_err(|e| bad(e.to_string()))?;
                    let tc = match &r.tc {
                        None => Tc::default(),
                        Some(t) => t.parse::<Tc>().map_err(|e| bad(e.to_string()))?,
                    };
                    parsed.insert(text, (policy.clone(), tc));
                    (policy, tc)
                }
            };
            named |= policy.name().is_some();
            let table = Table::alternate(r.table.unwrap_or(0)).unwrap_or(Table::Main);
            let route = Route { prefix, policy, tc };
            route.check_explicit_null().map_err(|e| bad(e.to_string()))?;
            rows.push(((table, prefix), i, route));
        }
        // Usually in order already (an export is): a stable sort of sorted
        // input is one pass, and the map is then built in bulk, not by a
        // million inserts. Equal ids stay in input order, so the refusal
        // names the first entry that repeats an earlier one.
        rows.sort_by_key(|r| r.0);
        let repeated =
            rows.iter().zip(rows.iter().skip(1)).filter(|(a, b)| a.0 == b.0).map(|(_, b)| (b.1, b.0 .1)).min();
        if let Some((i, prefix)) = repeated {
            let text = self.routes.get(i).map(|r| r.prefix.as_str()).unwrap_or_default();
            return Err(DesiredError {
                what: format!("routes[{i}] ({text})"),
                reason: format!("a second route for {prefix} in the same table"),
            });
        }
        let routes: BTreeMap<(Table, IpNetwork), Route> = rows.into_iter().map(|(id, _, route)| (id, route)).collect();
        if named {
            check_policy_names(&routes)?;
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

    /// Reads a desired-state file's text, refusing what would remove every
    /// route without saying so: an empty file, a value that is not a table
    /// (`[]`), a table without a `routes` key (`{}`). An explicit empty list
    /// (`routes = []`) is accepted; `allow_empty` accepts the others as an
    /// empty state (a non-empty list stays refused: it is not this format).
    /// In JSON, the fields `routes --json` adds to describe a route
    /// (origin, bgp_policy, binding_sid, counted, labelled, lists,
    /// set_aside) are
    /// ignored, and so is its document's envelope (schema, command,
    /// interface, when `schema` names this command's), so an export applies
    /// as it is.
    ///
    /// ```
    /// use lnetd_host_encap::{errors::DesiredFileError, desired::DesiredFormat, DesiredState};
    /// assert_eq!(DesiredState::from_file_text("", DesiredFormat::Toml, false), Err(DesiredFileError::Empty));
    /// assert!(DesiredState::from_file_text("routes = []", DesiredFormat::Toml, false)?.routes.is_empty());
    /// assert!(DesiredState::from_file_text("{}", DesiredFormat::Json, true)?.routes.is_empty());
    /// # Ok::<(), DesiredFileError>(())
    /// ```
    ///
    /// # Errors
    /// [`DesiredFileError`].
    pub fn from_file_text(
        text: &str,
        format: DesiredFormat,
        allow_empty: bool,
    ) -> Result<DesiredState, DesiredFileError> {
        let guard = |e: DesiredFileError| if allow_empty { Ok(DesiredState::default()) } else { Err(e) };
        if text.trim().is_empty() {
            return guard(DesiredFileError::Empty);
        }
        let mut export = None;
        let keys: Vec<String> = match format {
            DesiredFormat::Toml => {
                let table: toml::Table =
                    toml::from_str(text).map_err(|e| DesiredError { what: "TOML".into(), reason: e.to_string() })?;
                table.keys().cloned().collect()
            }
            DesiredFormat::Json => {
                // The common case, a plain file, is read typed in one more
                // pass over the text; a whole `serde_json::Value` of a
                // million routes (a map per route) costs seconds.
                if let Some(state) = typed_json(text) {
                    return Ok(state);
                }
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| DesiredError { what: "JSON".into(), reason: e.to_string() })?;
                match value {
                    serde_json::Value::Object(mut map) => {
                        // The envelope of `routes --output json` goes first, so a document
                        // of nothing but an envelope is refused as a file without routes.
                        let enveloped = strip_envelope(&mut map);
                        let keys = map.keys().cloned().collect();
                        if strip_export_fields(&mut map) || enveloped {
                            export = Some(map);
                        }
                        keys
                    }
                    serde_json::Value::Array(a) if a.is_empty() => {
                        return guard(DesiredFileError::NotAnObject { found: "an empty list" })
                    }
                    other => {
                        let found = match other {
                            serde_json::Value::Array(_) => "a list",
                            serde_json::Value::Null => "null",
                            serde_json::Value::Bool(_) => "a boolean",
                            serde_json::Value::Number(_) => "a number",
                            _ => "a string",
                        };
                        return Err(DesiredFileError::NotAnObject { found });
                    }
                }
            }
        };
        if !keys.iter().any(|k| k == "routes") {
            // Unknown keys are reported as such by the parser below (a typo of `routes` among them).
            if keys.iter().all(|k| k == "sources" || k == "dscp_map") {
                return guard(DesiredFileError::NoRoutes { keys });
            }
        }
        Ok(match (format, export) {
            (DesiredFormat::Json, Some(map)) => serde_json::from_value(serde_json::Value::Object(map))
                .map_err(|e| DesiredError { what: "JSON".into(), reason: e.to_string() })?,
            (DesiredFormat::Toml, _) => DesiredState::from_toml(text)?,
            (DesiredFormat::Json, None) => DesiredState::from_json(text)?,
        })
    }

    /// Reads a desired state from JSON text.
    ///
    /// # Errors
    /// [`DesiredError`] for a syntax error or an unknown key.
    pub fn from_json(text: &str) -> Result<DesiredState, DesiredError> {
        serde_json::from_str(text).map_err(|e| DesiredError { what: "JSON".into(), reason: e.to_string() })
    }
}

/// A JSON file with a `routes` key, plain or an export of `routes
/// --output json` (the command's envelope, each route's
/// [`EXPORT_ONLY_FIELDS`]), read typed in one pass: the export's fields are
/// skipped, not built. None for anything else: the caller's general path
/// then says what is wrong. (An export of 1.2 million routes, 366 MB, took
/// 43 s and 5.4 GB as a `serde_json::Value`.)
fn typed_json(text: &str) -> Option<DesiredState> {
    use serde::de::IgnoredAny;
    /// Present (even `null`), as the general path counts a key.
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
        serde_json::Value::deserialize(d).map(Some)
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Document {
        #[serde(default, deserialize_with = "present")]
        schema: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "present")]
        command: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "present")]
        interface: Option<serde_json::Value>,
        routes: Option<Vec<Entry>>,
        #[serde(default)]
        sources: Vec<DesiredSource>,
        #[serde(default)]
        dscp_map: Option<Vec<u8>>,
    }
    /// A [`DesiredRoute`] and the words an export adds to it (read to be
    /// accepted, never used: hence the allowance).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Entry {
        prefix: String,
        policy: String,
        #[serde(default, deserialize_with = "number_or_text")]
        tc: Option<String>,
        #[serde(default)]
        table: Option<u32>,
        #[serde(default, deserialize_with = "number_or_text")]
        entropy_label: Option<String>,
        #[serde(default)]
        policy_name: Option<String>,
        origin: Option<IgnoredAny>,
        bgp_policy: Option<IgnoredAny>,
        binding_sid: Option<IgnoredAny>,
        counted: Option<IgnoredAny>,
        labelled: Option<IgnoredAny>,
        lists: Option<IgnoredAny>,
        set_aside: Option<IgnoredAny>,
    }
    let doc: Document = serde_json::from_str(text).ok()?;
    // An envelope only under the command's own schema (else `schema` is an
    // unknown key, which the general path reports).
    let ours =
        doc.schema.as_ref().and_then(serde_json::Value::as_str).is_some_and(|s| s.starts_with("lnetd-host-encap/"));
    if !ours && (doc.schema.is_some() || doc.command.is_some() || doc.interface.is_some()) {
        return None;
    }
    let routes = doc
        .routes?
        .into_iter()
        .map(|e| DesiredRoute {
            prefix: e.prefix,
            policy: e.policy,
            tc: e.tc,
            table: e.table,
            entropy_label: e.entropy_label,
            policy_name: e.policy_name,
        })
        .collect();
    Some(DesiredState { routes, sources: doc.sources, dscp_map: doc.dscp_map })
}

/// The fields `lnetd-host-encap routes --json` adds to each route to
/// describe it (where it came from, its counters): not part of the desired
/// state, so an export applies as it is (`routes --json | apply -`).
const EXPORT_ONLY_FIELDS: &[&str] =
    &["origin", "bgp_policy", "binding_sid", "counted", "labelled", "lists", "set_aside"];

/// The keys every JSON document of the command starts with
/// (docs/operations-json.md): not part of the desired state.
const ENVELOPE_FIELDS: &[&str] = &["schema", "command", "interface"];

/// Removes the [`ENVELOPE_FIELDS`] of a document that names the command's
/// schema (`"schema": "lnetd-host-encap/..."`); whether it did.
fn strip_envelope(map: &mut serde_json::Map<String, serde_json::Value>) -> bool {
    let ours =
        map.get("schema").and_then(serde_json::Value::as_str).is_some_and(|s| s.starts_with("lnetd-host-encap/"));
    if ours {
        for field in ENVELOPE_FIELDS {
            map.remove(*field);
        }
    }
    ours
}

/// Removes the [`EXPORT_ONLY_FIELDS`] from every route; whether there were any.
fn strip_export_fields(map: &mut serde_json::Map<String, serde_json::Value>) -> bool {
    let mut stripped = false;
    if let Some(serde_json::Value::Array(routes)) = map.get_mut("routes") {
        for route in routes.iter_mut().filter_map(serde_json::Value::as_object_mut) {
            for field in EXPORT_ONLY_FIELDS {
                stripped |= route.remove(*field).is_some();
            }
        }
    }
    stripped
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    /// The typed path takes every export-only field (one list of them,
    /// [`EXPORT_ONLY_FIELDS`], checked against the other) and reads what the
    /// general path reads, envelope or not.
    #[test]
    fn an_export_is_read_typed_as_the_general_path_reads_it() {
        let fields: Vec<String> = EXPORT_ONLY_FIELDS.iter().map(|f| format!("\"{f}\": null")).collect();
        let route = format!(r#"{{"prefix": "10.0.0.0/8", "policy": "16001@1", "tc": 5, {}}}"#, fields.join(", "));
        for head in ["", r#""schema": "lnetd-host-encap/v1", "command": "routes", "interface": "h0", "#] {
            let text = format!(r#"{{{head}"routes": [{route}], "sources": []}}"#);
            let typed = typed_json(&text).unwrap_or_else(|| panic!("not read typed: {text}"));
            let mut general: serde_json::Value = serde_json::from_str(&text).unwrap();
            let map = general.as_object_mut().unwrap();
            strip_envelope(map);
            strip_export_fields(map);
            assert_eq!(typed, serde_json::from_value::<DesiredState>(general).unwrap(), "{text}");
            assert_eq!(typed.routes[0].tc.as_deref(), Some("5"));
        }
        // Another program's envelope, an unknown key: left to the general path, which names it.
        assert!(typed_json(r#"{"schema": "other/v1", "routes": []}"#).is_none());
        for key in ["schema", "command", "interface"] {
            let text = format!(r#"{{"{key}": null, "routes": []}}"#);
            assert!(typed_json(&text).is_none(), "{text}");
            assert!(DesiredState::from_file_text(&text, DesiredFormat::Json, false).is_err(), "{text}");
        }
        assert!(typed_json(r#"{"routes": [{"prefix": "10.0.0.0/8", "policy": "1", "colour": 1}]}"#).is_none());
        let e = DesiredState::from_file_text(r#"{"schema": "other/v1", "routes": []}"#, DesiredFormat::Json, false);
        assert!(e.unwrap_err().to_string().contains("unknown field `schema`"));
    }

    #[test]
    fn nothing_said_is_refused_an_explicit_empty_list_is_not() {
        use DesiredFormat::{Json, Toml};
        for (text, format) in [("", Toml), ("  \n", Json), ("", Json)] {
            assert_eq!(DesiredState::from_file_text(text, format, false), Err(DesiredFileError::Empty), "{text:?}");
        }
        assert_eq!(
            DesiredState::from_file_text("[]", Json, false),
            Err(DesiredFileError::NotAnObject { found: "an empty list" })
        );
        assert_eq!(DesiredState::from_file_text("{}", Json, false), Err(DesiredFileError::NoRoutes { keys: vec![] }));
        assert_eq!(
            DesiredState::from_file_text("# nothing yet\n", Toml, false),
            Err(DesiredFileError::NoRoutes { keys: vec![] })
        );
        let e = DesiredState::from_file_text(r#"{"sources": []}"#, Json, false).unwrap_err();
        assert!(e.to_string().contains("(it has: sources)") && e.to_string().contains("--allow-empty"), "{e}");
        // A typo is an unknown key, not "no routes".
        let e = DesiredState::from_file_text("rotues = []", Toml, false).unwrap_err();
        assert!(matches!(e, DesiredFileError::Invalid(_)) && e.to_string().contains("unknown field"), "{e}");
        assert!(matches!(
            DesiredState::from_file_text("[1]", Json, true),
            Err(DesiredFileError::NotAnObject { found: "a list" })
        ));
        for (text, format) in [("routes = []", Toml), (r#"{"routes": []}"#, Json)] {
            assert_eq!(DesiredState::from_file_text(text, format, false), Ok(DesiredState::default()), "{text}");
        }
        for (text, format) in [("", Toml), ("[]", Json), ("{}", Json)] {
            assert_eq!(DesiredState::from_file_text(text, format, true), Ok(DesiredState::default()), "{text}");
        }
        let export = r#"{"routes": [{"prefix": "10.0.0.0/8", "origin": "bgp", "bgp_policy": "policy color 1",
            "binding_sid": null, "table": 0, "policy": "100", "tc": "dscp", "entropy_label": null, "counted": true,
            "labelled": {"packets": 1, "bytes": 2}, "lists": []}], "sources": []}"#;
        let read = DesiredState::from_file_text(export, Json, false).unwrap();
        assert_eq!((read.routes.len(), read.routes[0].tc.clone()), (1, Some("dscp".to_owned())));
        // Only the export's own fields: any other stays an unknown field.
        let typo = export.replace("\"policy\": \"100\"", "\"polcy\": \"100\"");
        assert!(DesiredState::from_file_text(&typo, Json, false).unwrap_err().to_string().contains("polcy"));
        let one = DesiredState::from_file_text("[[routes]]\nprefix = \"10.0.0.0/8\"\npolicy = \"100\"\n", Toml, false);
        assert_eq!(one.map(|d| d.routes.len()), Ok(1));
    }
    #[test]
    fn the_commands_envelope_is_ignored_but_an_envelope_alone_is_no_routes() {
        use DesiredFormat::Json;
        let doc = r#"{"schema": "lnetd-host-encap/v1", "command": "routes", "interface": "eth1",
            "routes": [{"prefix": "10.0.0.0/8", "policy": "100", "origin": "static"}], "sources": []}"#;
        assert_eq!(DesiredState::from_file_text(doc, Json, false).map(|d| d.routes.len()), Ok(1));
        let bare = r#"{"schema": "lnetd-host-encap/v1", "command": "stats", "interface": "eth1"}"#;
        assert!(matches!(DesiredState::from_file_text(bare, Json, false), Err(DesiredFileError::NoRoutes { .. })));
        // Another schema's keys stay unknown fields.
        let other = r#"{"schema": "other/v1", "routes": []}"#;
        assert!(DesiredState::from_file_text(other, Json, false).unwrap_err().to_string().contains("schema"));
    }
}
