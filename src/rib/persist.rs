//! The RIB as a file beside the pins (JSON, versioned): what a second process
//! reads to adopt a running dataplane with every route, policy, source,
//! counter slot and id allocation intact.
//!
//! Everything is stored in the text syntaxes of the domain types (prefixes,
//! label stacks, traffic classes), so the file is readable by a person and by
//! `jq`, and a value that would not pass validation cannot be restored.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::alloc::{CounterSlots, Slots};
use super::Rib;
use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, TtlMode};
use crate::domain::label::DscpMap;
use crate::domain::policy::{EntropyLabel, Policy, SegmentList};
use crate::domain::route::{Route, Table, Tc};

/// The state file's format. Bump it when the file or the maps' layout change
/// in a way an older or newer build cannot read; the crate version is recorded
/// beside it for the error message.
pub(crate) const FORMAT: u32 = 3;

/// The load-time settings a dataplane was built with; an adopting process
/// loads its program with the same ones so that the pinned maps fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadConfig {
    #[serde(with = "text")]
    pub ttl: TtlMode,
    #[serde(with = "text")]
    pub mtu: MtuPolicy,
    pub max_routes_v4: u32,
    pub max_routes_v6: u32,
    pub max_policies: u32,
    pub max_counted_routes: u32,
    #[serde(with = "text")]
    pub lookup: Ipv4Lookup,
    /// DIR-24-8: groups of 256 entries for /24s holding longer prefixes.
    pub dir_groups: u32,
    /// DIR-24-8: distinct route values.
    pub route_values: u32,
    /// Entries of the route cache (a power of two; 0: none).
    pub route_cache: u32,
    /// Main-table routes of a family from which its lookups use the cache.
    pub route_cache_min_routes: u32,
    /// Stages left out (`encap_skip` bits): benchmark variants only, never
    /// pinned.
    #[serde(skip)]
    pub skip_stages: u32,
}

/// Where a pinned dataplane is attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Attached {
    pub iface: String,
    pub ifindex: u32,
    #[serde(with = "text")]
    pub mode: AttachedMode,
}

/// The whole state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    written_by: String,
    config: LoadConfig,
    attachment: Attached,
    routes: Vec<RouteRecord>,
    shadowed: Vec<RouteRecord>,
    local: Vec<IpAddr>,
    sources: Vec<SourceRecord>,
    dscp: Vec<u8>,
    counters: Vec<CounterRecord>,
    policy_ids: SlotsRecord,
    counter_slots: SlotsRecord,
    graveyard: Vec<u32>,
}

/// Just the version fields: read first, so that a file of another format is
/// refused by its version and not by whatever else changed in it.
#[derive(Deserialize)]
struct Version {
    format: u32,
    written_by: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRecord {
    table: u32,
    prefix: String,
    lists: Vec<ListRecord>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    entropy_label: Option<String>,
    tc: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    policy_id: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRecord {
    stack: String,
    weight: u16,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRecord {
    prefix: String,
    table: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterRecord {
    table: u32,
    prefix: String,
    route: u32,
    lists: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotsRecord {
    next: u32,
    capacity: u32,
    free: Vec<u32>,
}

/// Why a state file could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Written in another format (found, written by).
    Version(u32, String),
    /// Not a state file of this format, or a value in it does not validate.
    Invalid(String),
}

/// The state file's text.
pub(crate) fn save(rib: &Rib, config: &LoadConfig, attachment: &Attached) -> Result<String, serde_json::Error> {
    let route_record = |table: Table, route: &Route, policy_id: Option<u32>| RouteRecord {
        table: table.id(),
        prefix: route.prefix.to_string(),
        lists: route
            .policy
            .lists()
            .iter()
            .map(|l| ListRecord { stack: l.stack.to_string(), weight: l.weight })
            .collect(),
        entropy_label: route.policy.entropy_label().map(|e| e.to_string()),
        tc: route.tc.to_string(),
        policy_id,
    };
    let slots = |s: &Slots| {
        let (next, capacity, free) = s.snapshot();
        SlotsRecord { next, capacity, free }
    };
    let file = StateFile {
        format: FORMAT,
        written_by: env!("CARGO_PKG_VERSION").to_owned(),
        config: *config,
        attachment: attachment.clone(),
        routes: rib.routes.iter().map(|(id, r)| route_record(id.0, r, rib.policy_of.get(id).copied())).collect(),
        shadowed: rib.shadowed.values().map(|r| route_record(Table::Main, r, None)).collect(),
        local: rib.local.iter().copied().collect(),
        sources: rib.sources.iter().map(|(p, t)| SourceRecord { prefix: p.to_string(), table: t.id() }).collect(),
        dscp: rib.dscp.values().to_vec(),
        counters: rib
            .counters_of
            .iter()
            .map(|((t, p), c)| CounterRecord {
                table: t.id(),
                prefix: p.to_string(),
                route: c.route,
                lists: c.lists.clone(),
            })
            .collect(),
        policy_ids: slots(&rib.policy_ids),
        counter_slots: slots(&rib.counter_slots),
        // Still in their grace period: restored as retired now, deleted a grace period later.
        graveyard: rib.graveyard.iter().map(|(id, _)| *id).collect(),
    };
    serde_json::to_string_pretty(&file)
}

/// Reads a state file back.
pub(crate) fn load(text: &str) -> Result<(Rib, LoadConfig, Attached), Unreadable> {
    let version: Version =
        serde_json::from_str(text).map_err(|e| Unreadable::Invalid(format!("no format version: {e}")))?;
    if version.format != FORMAT {
        return Err(Unreadable::Version(version.format, version.written_by));
    }
    let file: StateFile = serde_json::from_str(text).map_err(|e| Unreadable::Invalid(e.to_string()))?;
    let invalid = |what: &str, e: &dyn std::fmt::Display| Unreadable::Invalid(format!("{what}: {e}"));
    let prefix = |text: &str| crate::domain::prefix::parse(text).map_err(|e| invalid("prefix", &e));
    let table = |id: u32| Table::alternate(id).unwrap_or(Table::Main);
    let route = |r: &RouteRecord| -> Result<Route, Unreadable> {
        let lists = r
            .lists
            .iter()
            .map(|l| {
                Ok(SegmentList { stack: l.stack.parse().map_err(|e| invalid("label stack", &e))?, weight: l.weight })
            })
            .collect::<Result<Vec<_>, Unreadable>>()?;
        let entropy = r
            .entropy_label
            .as_deref()
            .map(str::parse::<EntropyLabel>)
            .transpose()
            .map_err(|e| invalid("entropy label", &e))?;
        Ok(Route {
            prefix: prefix(&r.prefix)?,
            policy: Policy::new(lists, entropy).map_err(|e| invalid("policy", &e))?,
            tc: r.tc.parse::<Tc>().map_err(|e| invalid("traffic class", &e))?,
        })
    };

    let mut rib = Rib::new(file.config.max_counted_routes);
    for r in &file.routes {
        let route = route(r)?;
        let id = (table(r.table), route.prefix);
        if let Some(p) = r.policy_id {
            rib.policy_of.insert(id, p);
        }
        rib.routes.insert(id, route);
    }
    for r in &file.shadowed {
        let route = route(r)?;
        rib.shadowed.insert(route.prefix, route);
    }
    rib.local = file.local.into_iter().collect();
    for s in &file.sources {
        rib.sources.insert(prefix(&s.prefix)?, table(s.table));
    }
    let dscp: [u8; 64] =
        file.dscp.try_into().map_err(|v: Vec<u8>| Unreadable::Invalid(format!("{} DSCP entries, not 64", v.len())))?;
    rib.dscp = DscpMap::new(dscp).map_err(|e| invalid("DSCP table", &e))?;
    for c in file.counters {
        rib.counters_of.insert((table(c.table), prefix(&c.prefix)?), CounterSlots { route: c.route, lists: c.lists });
    }
    rib.policy_ids = Slots::restore(file.policy_ids.next, file.policy_ids.capacity, file.policy_ids.free);
    rib.counter_slots = Slots::restore(file.counter_slots.next, file.counter_slots.capacity, file.counter_slots.free);
    let now = std::time::Instant::now();
    rib.graveyard = file.graveyard.into_iter().map(|id| (id, now)).collect();
    Ok((rib, file.config, file.attachment))
}

/// Fields stored in their text syntax (`Display` out, `FromStr` in).
mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}
