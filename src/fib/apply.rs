//! Applying a whole desired state: the changes the diff found, batched, in
//! an order in which no packet meets a route that is neither the old nor the
//! new one, and undone if the kernel refuses any of them.
//!
//! Order: the DSCP table; policies (before the routes that name them); routes
//! added or replaced, written in place (never deleted first); sources (after
//! the alternate routes they select); sources removed; routes removed
//! (after everything that could lead packets to them).

use std::collections::BTreeMap;
use std::fmt;

use ipnetwork::IpNetwork;

use super::key::RouteKey;
use super::{encode, full, Fib};
use crate::abi::{self, types};
use crate::domain::desired::ValidState;
use crate::domain::route::Table;
use crate::error::{MapError, RouteError};
use crate::rib::alloc::CounterSlots;
use crate::rib::diff::{self, Plan};
use crate::rib::{Rib, RouteId};
use crate::sys::map::BpfMap;

/// What an apply did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Routes added, by table and prefix.
    pub added: Vec<(Table, IpNetwork)>,
    /// Routes replaced (another policy or traffic class).
    pub replaced: Vec<(Table, IpNetwork)>,
    /// Routes removed.
    pub removed: Vec<(Table, IpNetwork)>,
    /// Main-table routes for one of the host's own addresses: kept, set aside
    /// (never labelled) until the address goes.
    pub set_aside: Vec<IpNetwork>,
    /// Sources added or replaced.
    pub sources_set: Vec<IpNetwork>,
    /// Sources removed.
    pub sources_removed: Vec<IpNetwork>,
    /// Whether the DSCP table changed.
    pub dscp_changed: bool,
    /// Routes and sources already as wanted.
    pub unchanged: usize,
    /// Map writes and deletes done (batched entries count one each).
    pub map_operations: usize,
    /// True when nothing was changed because it was a dry run.
    pub dry_run: bool,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} added, {} replaced, {} removed, {} unchanged; sources: {} set, {} removed; DSCP table {}; {} map operations",
            if self.dry_run { "dry run: " } else { "" },
            self.added.len(),
            self.replaced.len(),
            self.removed.len(),
            self.unchanged,
            self.sources_set.len(),
            self.sources_removed.len(),
            if self.dscp_changed { "changed" } else { "unchanged" },
            self.map_operations,
        )?;
        if !self.set_aside.is_empty() {
            write!(f, "; {} set aside for host addresses", self.set_aside.len())?;
        }
        Ok(())
    }
}

/// A write to undo: the map, the key, and what was there before (`None`: nothing).
struct Undo<'a> {
    map: &'a BpfMap,
    key: Vec<u8>,
    old: Option<Vec<u8>>,
}

/// One map's batch: keys and values laid end to end, and the undo of each.
#[derive(Default)]
struct Batch {
    keys: Vec<u8>,
    values: Vec<u8>,
    undo_old: Vec<Option<Vec<u8>>>,
}

/// A route the apply wrote, with what the RIB records about it.
struct Written {
    slots: CounterSlots,
    lists: usize,
    policy_id: Option<u32>,
}

/// Ids taken during an apply, given back if it is undone.
#[derive(Default)]
struct Taken {
    policy_ids: Vec<u32>,
    counter_slots: Vec<u32>,
}

fn route_value(rib: &Rib, id: &RouteId) -> Option<Vec<u8>> {
    let route = rib.routes.get(id)?;
    let slots = rib.counters_of.get(id).cloned().unwrap_or_default();
    let (value, _) = encode::route(route, rib.policy_of.get(id).copied(), slots.route, &slots.lists);
    Some(abi::bytes_of(&value).to_vec())
}

fn policy_value(rib: &Rib, id: &RouteId) -> Option<Vec<u8>> {
    let route = rib.routes.get(id)?;
    let policy_id = rib.policy_of.get(id).copied()?;
    let slots = rib.counters_of.get(id).cloned().unwrap_or_default();
    let (_, policy) = encode::route(route, Some(policy_id), slots.route, &slots.lists);
    policy.map(|p| abi::bytes_of(p.as_ref()).to_vec())
}

impl Fib {
    /// Makes the tables equal to `desired` (see the module docs for the order).
    pub(crate) fn apply(&self, desired: &ValidState, dry_run: bool) -> Result<ApplyReport, RouteError> {
        let mut rib = if dry_run { self.writer() } else { self.changer()? };
        let plan = diff::plan(&rib, desired);
        self.check_capacity(&rib, desired)?;
        let mut report = report_of(&plan);
        report.dry_run = dry_run;
        if dry_run || plan.is_empty() {
            return Ok(report);
        }
        self.bury_policies(&mut rib);
        let mut undo: Vec<Undo<'_>> = Vec::new();
        let mut taken = Taken::default();
        match self.execute(&mut rib, &plan, &mut undo, &mut taken) {
            Ok((ops, slots)) => {
                report.map_operations = ops;
                commit(&mut rib, plan, slots);
                self.write_settings(&rib)?;
                self.saved(&rib)?;
                Ok(report)
            }
            Err(e) => {
                for u in undo.into_iter().rev() {
                    let result = match &u.old {
                        Some(old) => u.map.update(&u.key, old),
                        None => u.map.delete(&u.key).map(|_| ()),
                    };
                    if let Err(undo_error) = result {
                        log::error!("undoing a refused apply: {undo_error} (verify() reports it)");
                    }
                }
                taken.policy_ids.into_iter().for_each(|p| rib.policy_ids.give_back(p));
                taken.counter_slots.into_iter().for_each(|s| rib.counter_slots.give_back(s));
                if let Err(settings) = self.write_settings(&rib) {
                    log::warn!("{settings}");
                }
                Err(e)
            }
        }
    }

    /// Refuses, before anything is written, a state that does not fit.
    fn check_capacity(&self, rib: &Rib, desired: &ValidState) -> Result<(), RouteError> {
        let mut per_map: BTreeMap<&'static str, (usize, u32)> = BTreeMap::new();
        let mut policies = 0usize;
        for (table, prefix) in desired.routes().keys() {
            if *table == Table::Main && rib.is_local_host(prefix) {
                continue;
            }
            let (_, family, capacity) = self.routes_map(*table, prefix);
            per_map.entry(family).or_insert((0, capacity)).0 += 1;
        }
        for addr in &rib.local {
            let (_, family, capacity) = self.routes_map(Table::Main, &IpNetwork::from(*addr));
            per_map.entry(family).or_insert((0, capacity)).0 += 1;
        }
        for route in desired.routes().values() {
            policies += usize::from(!route.policy.is_plain());
        }
        for (family, (count, capacity)) in per_map {
            if count > capacity as usize {
                return Err(RouteError::TableFull { family, capacity });
            }
        }
        // Retired policies hold their ids through their grace period.
        if policies + rib.graveyard.len() > self.config.max_policies as usize {
            return Err(RouteError::TableFull { family: "policy", capacity: self.config.max_policies });
        }
        Ok(())
    }

    /// Writes the plan, recording how to undo each write. Returns the map
    /// operations done and the counter slots of every route written.
    fn execute<'a>(
        &'a self,
        rib: &mut Rib,
        plan: &Plan,
        undo: &mut Vec<Undo<'a>>,
        taken: &mut Taken,
    ) -> Result<(usize, Vec<Written>), RouteError> {
        let mut ops = 0;
        let m = self.maps();
        if let Some(dscp) = &plan.dscp {
            let key = 0u32.to_ne_bytes().to_vec();
            let old = abi::bytes_of(&types::dscp_map { tc: rib.dscp.values() }).to_vec();
            m.dscp_tc.update(&key, abi::bytes_of(&types::dscp_map { tc: dscp.values() }))?;
            undo.push(Undo { map: &m.dscp_tc, key, old: Some(old) });
            ops += 1;
        }

        let mut batches: BTreeMap<&'static str, (&BpfMap, Batch, &'static str, u32)> = BTreeMap::new();
        let mut slots_of = Vec::with_capacity(plan.upserts.len());
        for (id, route, _) in &plan.upserts {
            let lists = if route.policy.is_plain() { 0 } else { route.policy.lists().len() };
            let mut slots = rib.counters_of.get(id).cloned().unwrap_or_default();
            if slots.route == 0 {
                slots.route = rib.counter_slots.take().unwrap_or(0);
                taken.counter_slots.push(slots.route);
                self.zero_slot(slots.route)?;
            }
            while slots.lists.len() < lists {
                let s = rib.counter_slots.take().unwrap_or(0);
                taken.counter_slots.push(s);
                self.zero_slot(s)?;
                slots.lists.push(s);
            }
            let old_policy = rib.policy_of.get(id).copied();
            let policy_id = match (lists, old_policy) {
                (0, _) => None,
                (_, Some(p)) => Some(p),
                (_, None) => {
                    let p = rib
                        .policy_ids
                        .take()
                        .ok_or(RouteError::TableFull { family: "policy", capacity: self.config.max_policies })?;
                    taken.policy_ids.push(p);
                    Some(p)
                }
            };
            let (value, policy) = encode::route(route, policy_id, slots.route, &slots.lists);
            if let (Some(p), Some(policy)) = (policy_id, policy) {
                let key = p.to_ne_bytes().to_vec();
                let old = if old_policy.is_some() { policy_value(rib, id) } else { None };
                m.policies
                    .update(&key, abi::bytes_of(policy.as_ref()))
                    .map_err(full("policy", self.config.max_policies))?;
                undo.push(Undo { map: &m.policies, key, old });
                ops += 1;
            }
            let (map, family, capacity) = self.routes_map(id.0, &id.1);
            let batch = batches.entry(map.name()).or_insert_with(|| (map, Batch::default(), family, capacity));
            batch.1.keys.extend_from_slice(RouteKey::in_table(id.0.id(), id.1).bytes());
            batch.1.values.extend_from_slice(abi::bytes_of(&value));
            batch.1.undo_old.push(route_value(rib, id));
            slots_of.push(Written { slots, lists, policy_id });
        }
        // Alternate tables first, so a source never selects a table still being written.
        let order = ["alt_routes_v4", "alt_routes_v6", "routes_v4", "routes_v6"];
        for name in order {
            let Some((map, batch, family, capacity)) = batches.remove(name) else { continue };
            let written = batch.undo_old.len();
            let key_size = batch.keys.len() / written.max(1);
            map.update_batch(&batch.keys, &batch.values).map_err(full(family, capacity))?;
            for (key, old) in batch.keys.chunks(key_size.max(1)).zip(batch.undo_old) {
                undo.push(Undo { map, key: key.to_vec(), old });
            }
            ops += written;
        }

        if !plan.source_upserts.is_empty() && rib.sources.is_empty() {
            // Look at sources before the first is in place: a lookup that finds nothing is harmless.
            self.write_source_count(1)?;
        }
        for (prefix, table, _) in &plan.source_upserts {
            let (map, capacity) = self.sources_map(prefix);
            let key = RouteKey::new(*prefix).bytes().to_vec();
            let old = rib.sources.get(prefix).map(|t| abi::bytes_of(&types::source_value { table: t.id() }).to_vec());
            map.update(&key, abi::bytes_of(&types::source_value { table: table.id() }))
                .map_err(full("source", capacity))?;
            undo.push(Undo { map, key, old });
            ops += 1;
        }
        for prefix in &plan.source_removes {
            let (map, _) = self.sources_map(prefix);
            let key = RouteKey::new(*prefix).bytes().to_vec();
            let old = rib.sources.get(prefix).map(|t| abi::bytes_of(&types::source_value { table: t.id() }).to_vec());
            map.delete(&key)?;
            undo.push(Undo { map, key, old });
            ops += 1;
        }

        let mut deletes: BTreeMap<&'static str, (&BpfMap, Batch)> = BTreeMap::new();
        for id in &plan.removes {
            let (map, _, _) = self.routes_map(id.0, &id.1);
            let entry = deletes.entry(map.name()).or_insert_with(|| (map, Batch::default()));
            entry.1.keys.extend_from_slice(RouteKey::in_table(id.0.id(), id.1).bytes());
            entry.1.undo_old.push(route_value(rib, id));
        }
        // Last: the sources removed above no longer lead here, and every
        // route that replaces these (a shorter prefix) is already in place.
        for name in ["routes_v4", "routes_v6", "alt_routes_v4", "alt_routes_v6"] {
            let Some((map, batch)) = deletes.remove(name) else { continue };
            let deleted = batch.undo_old.len();
            let key_size = batch.keys.len() / deleted.max(1);
            map.delete_batch(&batch.keys)?;
            for (key, old) in batch.keys.chunks(key_size.max(1)).zip(batch.undo_old) {
                undo.push(Undo { map, key: key.to_vec(), old });
            }
            ops += deleted;
        }
        Ok((ops, slots_of))
    }

    fn zero_slot(&self, slot: u32) -> Result<(), MapError> {
        if slot == 0 {
            return Ok(());
        }
        self.maps().route_counters.zero_percpu(&slot.to_ne_bytes())
    }
}

fn report_of(plan: &Plan) -> ApplyReport {
    let mut report = ApplyReport { dscp_changed: plan.dscp.is_some(), unchanged: plan.unchanged, ..Default::default() };
    for (id, _, replaced) in &plan.upserts {
        if *replaced { &mut report.replaced } else { &mut report.added }.push(*id);
    }
    report.removed = plan.removes.clone();
    report.set_aside = plan.set_aside.iter().map(|(r, _)| r.prefix).collect();
    report.sources_set = plan.source_upserts.iter().map(|(p, _, _)| *p).collect();
    report.sources_removed = plan.source_removes.clone();
    report
}

/// Records an applied plan in the RIB (the kernel accepted all of it).
fn commit(rib: &mut Rib, plan: Plan, written: Vec<Written>) {
    if let Some(dscp) = plan.dscp {
        rib.dscp = dscp;
    }
    for ((id, route, _), w) in plan.upserts.into_iter().zip(written) {
        if let Some(p) = w.policy_id {
            rib.policy_of.insert(id, p);
        } else {
            rib.retire_policy(&id);
        }
        rib.keep_counters(id, w.slots, w.lists);
        rib.routes.insert(id, route);
    }
    for id in plan.removes {
        rib.routes.remove(&id);
        rib.retire_policy(&id);
        rib.drop_counters(&id);
    }
    for (route, _) in plan.set_aside {
        rib.shadowed.insert(route.prefix, route);
    }
    for prefix in plan.set_aside_removed {
        rib.shadowed.remove(&prefix);
        rib.drop_counters(&(Table::Main, prefix));
    }
    for (prefix, table, _) in plan.source_upserts {
        rib.sources.insert(prefix, table);
    }
    for prefix in plan.source_removes {
        rib.sources.remove(&prefix);
    }
}
