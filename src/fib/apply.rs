//! Applying a whole desired state: the changes the diff found, batched, in
//! an order in which no packet meets a route that is neither the old nor the
//! new one, and undone if the kernel refuses any of them.
//!
//! Order: the DSCP table; routes removed first only where a trie cannot hold
//! the old and the new routes at once (see `room.rs`: just enough, chosen
//! where a packet falls back to its new route); policies (before the routes
//! that name them); routes added or replaced, written in place (never deleted
//! first); sources (after the alternate routes they select); sources removed;
//! the other routes removed (after everything that could lead packets to them).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use ipnetwork::IpNetwork;

use super::key::RouteKey;
use super::{encode, full, room, source_family, Fib};
use crate::abi::{self, types};
use crate::desired::ApplyOptions;
use crate::domain::desired::ValidState;
use crate::domain::route::{Route, Table};
use nix::errno::Errno;

use super::objects::{self, Staged};
use super::table::RouteTable;
use crate::error::{MapError, RouteError};
use crate::rib::alloc::CounterSlots;
use crate::rib::diff::{self, Patch, Plan};
use crate::rib::origins::Noted;
use crate::rib::tracked::Tracked;
use crate::rib::{Rib, RouteId};
use crate::sys::map::BpfMap;

/// The origin of each route that is not static.
pub(crate) type Origins = BTreeMap<RouteId, Noted>;

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
    /// Routes (set-aside ones included) already as wanted; sources are not
    /// counted here.
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

/// Writes to undo: keys laid end to end, and what each had before (`None`: nothing).
pub(super) struct Undo<'a> {
    pub(super) map: &'a dyn RouteTable,
    pub(super) keys: Vec<u8>,
    pub(super) olds: Vec<Option<Vec<u8>>>,
}

impl Undo<'_> {
    /// Puts back what was there, last write first; failures are logged
    /// (verify() reports what could not be restored).
    fn run(self) {
        let key_size = self.keys.len() / self.olds.len().max(1);
        for (key, old) in self.keys.chunks(key_size.max(1)).zip(self.olds).rev() {
            let result = match &old {
                Some(old) => self.map.update(key, old),
                None => self.map.delete(key).map(|_| ()),
            };
            if let Err(e) = result {
                log::error!("undoing a refused apply: {e} (verify() reports it)");
            }
        }
    }
}

/// Routes a writer thread takes at a time: large enough that the syscall
/// cost vanishes, small enough that writing overlaps encoding.
const CHUNK: usize = 65_536;

/// The chunks the writer threads took: the map, the chunk, what the kernel said.
type Sent<'m> = Mutex<Vec<(&'m dyn RouteTable, Batch, Result<(), RouteError>)>>;

/// A thread that writes one trie's chunks as they come, in order; after a
/// refusal it writes no more, but records every chunk for the undo.
fn spawn_writer<'scope, 'env: 'scope, 'm: 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    map: &'m dyn RouteTable,
    family: &'static str,
    capacity: u32,
    sent: &'env Sent<'m>,
    refused: &'env AtomicBool,
) -> mpsc::Sender<Batch> {
    let (tx, rx) = mpsc::channel::<Batch>();
    scope.spawn(move || {
        for mut batch in rx {
            let result = if refused.load(Ordering::Relaxed) {
                Err(RouteError::Map(MapError { map: map.name(), op: "update_batch", errno: Errno::ECANCELED }))
            } else {
                map.update_batch(&batch.keys, &batch.values).map_err(full(family, capacity))
            };
            if result.is_err() {
                refused.store(true, Ordering::Relaxed);
            }
            // The undo needs the keys and the old values, not the new ones.
            batch.values = Vec::new();
            sent.lock().unwrap_or_else(|p| p.into_inner()).push((map, batch, result));
        }
    });
    tx
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
pub(super) struct Taken {
    pub(super) policy_ids: Vec<u32>,
    pub(super) counter_slots: Vec<u32>,
    /// How many of `counter_slots` are zeroed already.
    zeroed: usize,
}

impl Taken {
    /// Zeroes the counter slots taken since the last call (a reused slot
    /// still holds its last owner's counts): before anything that names
    /// them is written where a packet can meet it.
    pub(super) fn zero_fresh(&mut self, counters: &BpfMap) -> Result<(), MapError> {
        counters.zero_percpu_batch(self.counter_slots.get(self.zeroed..).unwrap_or_default())?;
        self.zeroed = self.counter_slots.len();
        Ok(())
    }
}

/// The bytes the kernel holds for a route the RIB has installed (for the undo).
pub(super) fn route_value(rib: &Rib, id: &RouteId) -> Option<Vec<u8>> {
    encode::installed_value(rib, id).map(|value| abi::bytes_of(&value).to_vec())
}

/// The bytes of an installed policy route's policy (for the undo).
fn policy_value(rib: &Rib, id: &RouteId) -> Option<Vec<u8>> {
    encode::installed(rib, id).and_then(|(_, p)| p).map(|p| abi::bytes_of(p.as_ref()).to_vec())
}

/// The desired state, borrowed or owned: an owned one's route map becomes
/// the RIB's as it is, without a copy. Or only the routes that change (an
/// origin's delta): planned and recorded per change, sources and DSCP
/// table as they are.
pub(crate) enum Desired<'a> {
    Borrowed(&'a ValidState),
    Owned(ValidState),
    // Only the origins hand over patches (feature bgp).
    #[cfg_attr(not(feature = "bgp"), allow(dead_code))]
    Patch(&'a Patch),
}

impl<'a> Desired<'a> {
    /// The changes from `rib` to this.
    fn plan(&'a self, rib: &Rib) -> Plan<'a> {
        match self {
            Desired::Borrowed(s) => diff::plan(rib, s),
            Desired::Owned(s) => diff::plan(rib, s),
            Desired::Patch(p) => diff::plan_patch(rib, p),
        }
    }
}

/// A plan applied, without borrows, for the RIB to record.
struct Outcome {
    /// Shared objects written or found as wanted (recorded before the routes bind to them).
    objects: Staged,
    written: Vec<(RouteId, Written)>,
    /// The routes written, when few enough to record one by one.
    changed: Option<Vec<(RouteId, Route)>>,
    removes: Vec<RouteId>,
    set_aside: Vec<Route>,
    set_aside_removed: Vec<IpNetwork>,
}

impl Fib {
    /// Makes the tables equal to `desired` (see the module docs for the order).
    pub(crate) fn apply(&self, desired: Desired<'_>, options: ApplyOptions) -> Result<ApplyReport, RouteError> {
        self.apply_from(desired, options, None)
    }

    /// As [`Fib::apply`], recording each route's origin in the same commit
    /// (`origins`: the routes that are not static; `None`: all static).
    pub(crate) fn apply_from(
        &self,
        desired: Desired<'_>,
        options: ApplyOptions,
        origins: Option<&Origins>,
    ) -> Result<ApplyReport, RouteError> {
        let dry_run = options.is_dry_run();
        let guard = match options.removal_guard() {
            Some(share) if !(0.0..=1.0).contains(&share) => {
                return Err(RouteError::Invalid(crate::domain::desired::DesiredError {
                    what: "max_remove_share".into(),
                    reason: format!("{share} is not a share: give one from 0 to 1 (0.5: at most half the routes)"),
                }))
            }
            guard => guard.filter(|_| !dry_run),
        };
        // Begun in apply_locked, once its checks have passed.
        let mut rib = self.locked_to_check(!dry_run)?;
        let guard = guard.map(|share| (share, options.uncounted));
        let (report, changed) = self.apply_locked(&mut rib, desired, dry_run, guard, origins)?;
        if changed {
            self.saved(&mut rib)?;
        }
        Ok(report)
    }

    /// The apply's pipeline on a RIB already locked for a change (or, dry,
    /// to look): plan, guard, room, capacity, execute (undone on a refusal),
    /// commit to the RIB. Whether the RIB changed, for the caller to save:
    /// a change of several steps (a host address going) saves once.
    pub(super) fn apply_locked(
        &self,
        rib: &mut Rib,
        desired: Desired<'_>,
        dry_run: bool,
        guard: Option<(f64, usize)>,
        origins: Option<&Origins>,
    ) -> Result<(ApplyReport, bool), RouteError> {
        let started = std::time::Instant::now();
        let mut plan = desired.plan(rib);
        let planned = started.elapsed();
        if let Some((max_share, uncounted)) = guard {
            removal_guard(&plan, (rib.routes.len() + rib.shadowed.len()).saturating_sub(uncounted), max_share)?;
        }
        if let Some((a, b)) = plan.conflict {
            let name = a.policy.name().unwrap_or_default();
            return Err(RouteError::PolicyObject {
                name: name.to_owned(),
                problem: format!("the routes for {} and {} name it with other contents", a.prefix, b.prefix),
                remedy: "routes sharing a name share one policy object: give them the same lists, entropy label and \
                         tc, or different names",
            });
        }
        if let Some((route, object_tc)) = plan.kind_conflict {
            return Err(objects::tc_kind_refused(route.policy.name().unwrap_or_default(), object_tc, route.tc));
        }
        if !dry_run {
            // The first write is just below (the graveyard's deletions).
            self.begin_change()?;
            // Retired policies past their grace period make room first; those
            // still in it are waited for (at most a grace period) when only
            // they stand in the way.
            self.bury_policies(rib);
            let max = self.config.max_policies as usize;
            // The final state's policies, or the write's peak (every policy in
            // use stays until the commit retires it: room.rs), whichever is more.
            let wanted = plan.policy_ids();
            let peak = room::policy_peak(rib, &plan);
            let excess = (wanted + rib.graveyard.len()).max(peak).saturating_sub(max);
            let excess = excess.min(rib.graveyard.len());
            if excess > 0 && wanted <= max {
                self.wait_for_graveyard(rib, excess);
            }
        }
        // A dry run does not wait for the graveyard; the apply it previews
        // would (see above), so retired policies do not count against it.
        let retired = if dry_run { 0 } else { rib.graveyard.len() };
        self.check_capacity(rib, &plan, retired)?;
        let checked = started.elapsed();
        let mut report = report_of(&plan);
        report.dry_run = dry_run;
        if dry_run {
            log::debug!("apply: diff {planned:?}, nothing to write (dry run)");
            return Ok((report, false));
        }
        // Routes left uncounted while the counter pool was full (an apply
        // adds before it removes, so the slots it frees come too late for
        // its own new routes) take the slots free since, when the state is
        // applied again unchanged: never a wait, never another change's cost.
        if plan.upserts.is_empty() && plan.removes.is_empty() {
            plan.upserts.extend(uncounted(rib, &desired, rib.counter_slots.available_now()));
            if !plan.upserts.is_empty() {
                log::info!("apply: {} uncounted routes get counter slots", plan.upserts.len());
            }
        }
        if plan.is_empty() {
            // No route changed, but who asked for them may have: the store
            // must say so, or a restart would hand them to the wrong origin.
            let changed = reconcile_origins(rib, &desired, origins);
            log::debug!("apply: diff {planned:?}, nothing to write");
            return Ok((report, changed));
        }
        let mut undo: Vec<Undo<'_>> = Vec::new();
        let mut taken = Taken::default();
        let mut staged = Staged::default();
        match self.execute(rib, &plan, &mut undo, &mut taken, &mut staged) {
            Ok((ops, slots)) => {
                let written = started.elapsed();
                report.map_operations = ops;
                // Few changes are recorded one by one; many, by taking the desired map whole.
                let few = matches!(desired, Desired::Patch(_))
                    || plan.upserts.len() + plan.removes.len() <= rib.routes.len() / 8;
                let outcome = Outcome {
                    objects: staged,
                    written: plan.upserts.iter().map(|(id, _, _)| *id).zip(slots).collect(),
                    changed: few.then(|| plan.upserts.iter().map(|(id, r, _)| (*id, (*r).clone())).collect()),
                    removes: plan.removes,
                    set_aside: plan.set_aside.into_iter().map(|(r, _)| r.clone()).collect(),
                    set_aside_removed: plan.set_aside_removed,
                };
                let few_changed = outcome.changed.is_some();
                if few_changed {
                    // Recorded one by one, the changed routes carry their origin;
                    // the unchanged ones may have changed hands.
                    reconcile_origins(rib, &desired, origins);
                }
                commit(rib, outcome, desired, origins);
                let committed = started.elapsed();
                if let Err(e) = self.write_settings(rib) {
                    // Sources were written before; the count only saves a lookup when zero.
                    log::warn!("{e} (the program may look up sources it need not)");
                }
                log::debug!(
                    "apply: diff {planned:?}, capacity checked at {checked:?}, kernel writes until {written:?}, RIB until {committed:?}"
                );
                Ok((report, true))
            }
            Err(e) => {
                undo.into_iter().rev().for_each(Undo::run);
                taken.policy_ids.into_iter().for_each(|p| rib.policy_ids.give_back(p));
                taken.counter_slots.into_iter().for_each(|s| rib.counter_slots.give_back(s));
                if let Err(settings) = self.write_settings(rib) {
                    log::warn!("{settings}");
                }
                Err(e)
            }
        }
    }

    /// Refuses, before anything is written, a state that does not fit (the
    /// diff counted the entries as it walked).
    fn check_capacity(&self, rib: &Rib, plan: &Plan<'_>, retired: usize) -> Result<(), RouteError> {
        let mut count = plan.trie_entries;
        for addr in &rib.local {
            if let Some(c) = count.get_mut(usize::from(addr.is_ipv6())) {
                *c += 1;
            }
        }
        for (n, (_, family, capacity)) in count.into_iter().zip(self.tries()) {
            if n > capacity as usize {
                return Err(RouteError::full(family, capacity));
            }
        }
        // Retired policies hold their ids through their grace period.
        if plan.policy_ids() + retired > self.config.max_policies as usize {
            return Err(RouteError::full("policy", self.config.max_policies));
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
        staged: &mut Staged,
    ) -> Result<(usize, Vec<Written>), RouteError> {
        let mut ops = 0;
        let m = self.maps();
        if let Some(dscp) = &plan.dscp {
            let key = 0u32.to_ne_bytes().to_vec();
            let old = abi::bytes_of(&types::dscp_map { tc: rib.dscp.values() }).to_vec();
            m.dscp_tc.update(&key, abi::bytes_of(&types::dscp_map { tc: dscp.values() }))?;
            undo.push(Undo { map: &m.dscp_tc, keys: key, olds: vec![Some(old)] });
            ops += 1;
        }

        // Where a trie cannot hold the old and the new routes at once, some
        // removals come first (room.rs picks them).
        let room = room::plan_room(rib, plan, self.tries().map(|(_, _, capacity)| capacity));
        if !room.early.is_empty() {
            log::debug!(
                "apply: {} removals first to stay within capacity ({} falling back to a route that is not their new one)",
                room.early.len(),
                room.unsafe_fallbacks
            );
            ops += self.delete_routes(rib, room.early.iter(), undo)?;
        }

        // Routes are encoded here and written by one thread per trie as
        // chunks fill: the kernel's insertions (most of a large apply)
        // overlap the encoding, and the tries are written in parallel. Every
        // chunk a writer took is recorded, written or not, so that a refusal
        // anywhere undoes all of it (rewriting what was not written is harmless).
        let sent: Sent<'a> = Mutex::new(Vec::new());
        let refused = AtomicBool::new(false);
        let mut slots_of = Vec::with_capacity(plan.upserts.len());
        let encoded = std::thread::scope(|scope| -> Result<(), RouteError> {
            let mut writers: BTreeMap<&'static str, mpsc::Sender<Batch>> = BTreeMap::new();
            let mut pending: BTreeMap<&'static str, (&'a dyn RouteTable, Batch, &'static str, u32)> = BTreeMap::new();
            for (id, route, _) in &plan.upserts {
                if refused.load(Ordering::Relaxed) {
                    break;
                }
                let (value, written) = if route.policy.name().is_some() {
                    // On a shared object, written once per apply; the route's
                    // own entry only when its value changes.
                    match self.stage_named(rib, *id, route, staged, undo, taken, &mut ops)? {
                        (p, None) => {
                            let slots = rib.counters_of.get(id).cloned().unwrap_or_default();
                            slots_of.push(Written { slots, lists: 0, policy_id: Some(p) });
                            continue;
                        }
                        (p, Some((value, slots))) => (value, Written { slots, lists: 0, policy_id: Some(p) }),
                    }
                } else {
                    let a = self.allocate(rib, *id, route)?;
                    taken.counter_slots.extend_from_slice(&a.fresh);
                    if let (Some(p), false) = (a.policy_id, a.in_place) {
                        taken.policy_ids.push(p);
                    }
                    let (slots, lists, policy_id, in_place) = (a.slots, a.lists, a.policy_id, a.in_place);
                    let (value, policy) = encode::route(route, policy_id, slots.route, &slots.lists);
                    if let (Some(p), Some(policy)) = (policy_id, policy) {
                        if in_place {
                            // The policy is live as soon as it is written (its route
                            // already points at it): its new lists' slots start from zero first.
                            taken.zero_fresh(&m.route_counters)?;
                        }
                        let key = p.to_ne_bytes().to_vec();
                        let old = if in_place { policy_value(rib, id) } else { None };
                        let written = m.policies.update(&key, abi::bytes_of(policy.as_ref()));
                        undo.push(Undo { map: &m.policies, keys: key, olds: vec![old] });
                        written.map_err(full("policy", self.config.max_policies))?;
                        ops += 1;
                    }
                    (value, Written { slots, lists, policy_id })
                };
                let (map, family, capacity) = self.routes_map(id.0, &id.1);
                let (_, batch, _, _) =
                    pending.entry(map.name()).or_insert_with(|| (map, Batch::default(), family, capacity));
                batch.keys.extend_from_slice(RouteKey::in_table(id.0.id(), id.1).bytes());
                batch.values.extend_from_slice(abi::bytes_of(&value));
                batch.undo_old.push(route_value(rib, id));
                slots_of.push(written);
                if batch.undo_old.len() >= CHUNK {
                    let full_batch = std::mem::take(batch);
                    // The counter slots this chunk names start from zero before any packet meets them.
                    taken.zero_fresh(&m.route_counters)?;
                    let tx = writers
                        .entry(map.name())
                        .or_insert_with(|| spawn_writer(scope, map, family, capacity, &sent, &refused));
                    if tx.send(full_batch).is_err() {
                        break;
                    }
                }
            }
            taken.zero_fresh(&m.route_counters)?;
            for (name, (map, batch, family, capacity)) in pending {
                if batch.undo_old.is_empty() {
                    continue;
                }
                let tx =
                    writers.entry(name).or_insert_with(|| spawn_writer(scope, map, family, capacity, &sent, &refused));
                if tx.send(batch).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut failed = encoded.err();
        for (map, batch, result) in sent.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let written = batch.undo_old.len();
            undo.push(Undo { map, keys: batch.keys, olds: batch.undo_old });
            match result {
                Ok(()) => ops += written,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
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
                .map_err(full(source_family(prefix), capacity))?;
            undo.push(Undo { map, keys: key, olds: vec![old] });
            ops += 1;
        }
        for prefix in &plan.source_removes {
            let (map, _) = self.sources_map(prefix);
            let key = RouteKey::new(*prefix).bytes().to_vec();
            let old = rib.sources.get(prefix).map(|t| abi::bytes_of(&types::source_value { table: t.id() }).to_vec());
            map.delete(&key)?;
            undo.push(Undo { map, keys: key, olds: vec![old] });
            ops += 1;
        }

        // Last: the sources removed above no longer lead here, and every
        // route that replaces these (a shorter prefix) is already in place.
        ops += self.delete_routes(rib, plan.removes.iter().filter(|id| !room.is_early(id)), undo)?;
        Ok((ops, slots_of))
    }

    /// Deletes routes, batched per map, recording the undo; returns the
    /// entries deleted.
    fn delete_routes<'a, 'i>(
        &'a self,
        rib: &Rib,
        ids: impl Iterator<Item = &'i RouteId>,
        undo: &mut Vec<Undo<'a>>,
    ) -> Result<usize, RouteError> {
        let mut deletes: BTreeMap<&'static str, (&dyn RouteTable, Batch)> = BTreeMap::new();
        for id in ids {
            let (map, _, _) = self.routes_map(id.0, &id.1);
            let entry = deletes.entry(map.name()).or_insert_with(|| (map, Batch::default()));
            entry.1.keys.extend_from_slice(RouteKey::in_table(id.0.id(), id.1).bytes());
            entry.1.undo_old.push(route_value(rib, id));
        }
        let mut ops = 0;
        for (map, batch) in deletes.into_values() {
            let deleted = batch.undo_old.len();
            let result = map.delete_batch(&batch.keys);
            // A refused batch may have deleted a prefix of its keys: undo all
            // of it (rewriting what was not deleted is harmless).
            undo.push(Undo { map, keys: batch.keys, olds: batch.undo_old });
            result?;
            ops += deleted;
        }
        Ok(ops)
    }
}

/// Refuses `plan` when it removes more than `max_share` of the `current`
/// routes in force (set-aside ones included): the removal guard, checked on
/// the apply's own plan before anything is written.
fn removal_guard(plan: &Plan, current: usize, max_share: f64) -> Result<(), RouteError> {
    let removed = plan.removes.len() + plan.set_aside_removed.len();
    if !exceeds(removed, current, max_share) {
        return Ok(());
    }
    let replaced = plan.upserts.iter().filter(|(_, _, replaced)| *replaced).count();
    Err(RouteError::RemovalRefused {
        removed,
        current,
        max_share,
        sample: plan
            .removes
            .iter()
            .copied()
            .chain(plan.set_aside_removed.iter().map(|p| (Table::Main, *p)))
            .take(REFUSAL_SAMPLE)
            .collect(),
        added: plan.upserts.len() - replaced,
        replaced,
    })
}

/// Whether removing `removed` of `current` routes goes past a guard of
/// `max_share` (an empty table loses nothing).
fn exceeds(removed: usize, current: usize, max_share: f64) -> bool {
    current > 0 && removed as f64 > max_share * current as f64
}

/// The routes a removal guard's refusal names.
const REFUSAL_SAMPLE: usize = 10;

fn report_of(plan: &Plan) -> ApplyReport {
    let mut report = ApplyReport { dscp_changed: plan.dscp.is_some(), unchanged: plan.unchanged, ..Default::default() };
    for (id, _, replaced) in &plan.upserts {
        if *replaced { &mut report.replaced } else { &mut report.added }.push(*id);
    }
    report.removed = plan.removes.clone();
    // A set-aside route the desired state lacks goes too: say so.
    report.removed.extend(plan.set_aside_removed.iter().map(|p| (Table::Main, *p)));
    report.set_aside = plan.set_aside.iter().map(|(r, _)| r.prefix).collect();
    report.sources_set = plan.source_upserts.iter().map(|(p, _, _)| *p).collect();
    report.sources_removed = plan.source_removes.clone();
    report
}

/// Up to `n` routes of `desired` (a whole state) that the RIB holds without
/// a counter slot, as upserts rewriting them in place: plain routes only (a
/// policy route would take a new policy id to change its counter).
fn uncounted<'a>(rib: &Rib, desired: &'a Desired<'_>, n: usize) -> Vec<(RouteId, &'a Route, bool)> {
    let routes = match desired {
        Desired::Borrowed(s) => s.routes(),
        Desired::Owned(s) => s.routes(),
        Desired::Patch(_) => return Vec::new(),
    };
    if n == 0 {
        return Vec::new();
    }
    rib.routes
        .iter()
        .filter(|(id, r)| r.policy.is_plain() && rib.counters_of.get(id).is_none_or(|s| s.route == 0))
        .filter_map(|(id, _)| routes.get(id).map(|r| (*id, r, true)))
        .take(n)
        .collect()
}

/// Records the origin `origins` gives every route `desired` names whose
/// recorded origin differs (a route the diff left alone may now be another
/// origin's: the same route re-applied by the agent, or a local route taking
/// a prefix over from BGP). Whether anything changed.
fn reconcile_origins(rib: &mut Rib, desired: &Desired<'_>, origins: Option<&Origins>) -> bool {
    let Some(origins) = origins else { return false };
    let differing = match desired {
        // A patch names few ids: one lookup each.
        Desired::Patch(patch) => patch
            .iter()
            .filter(|(_, r)| r.is_some())
            .map(|(id, _)| (*id, origins.get(id).copied()))
            .filter(|(id, want)| rib.origin_of.get(id).copied() != *want)
            .collect(),
        Desired::Borrowed(state) => differing_origins(origins, &rib.origin_of, |id| state.routes().contains_key(id)),
        Desired::Owned(state) => differing_origins(origins, &rib.origin_of, |id| state.routes().contains_key(id)),
    };
    let mut changed = false;
    for (id, want) in differing {
        // A route set aside for a host address is held too: its origin is
        // what a restarted agent sorts it by.
        let held = rib.routes.contains_key(&id) || (id.0 == Table::Main && rib.shadowed.contains_key(&id.1));
        if want.is_none() || held {
            super::note_origin(rib, id, want);
            changed = true;
        }
    }
    changed
}

/// The ids of `desired` routes whose origin in `want` is not the one in
/// `have`, with the wanted one. Both maps are sorted by id, so one lockstep
/// walk finds them: an identical apply of a million routes costs two
/// sequential iterations, not two million tree lookups; only the ids that
/// differ are looked up in the desired state.
fn differing_origins(
    want: &Origins,
    have: &Origins,
    desired: impl Fn(&RouteId) -> bool,
) -> Vec<(RouteId, Option<Noted>)> {
    let mut out = Vec::new();
    let (mut w, mut h) = (want.iter().peekable(), have.iter().peekable());
    loop {
        match (w.peek().copied(), h.peek().copied()) {
            (None, None) => break,
            (Some((a, wa)), Some((b, hb))) if a == b => {
                if wa != hb {
                    out.push((*a, Some(*wa)));
                }
                w.next();
                h.next();
            }
            (Some((a, wa)), None) => {
                out.push((*a, Some(*wa)));
                w.next();
            }
            (Some((a, wa)), Some((b, _))) if a < b => {
                out.push((*a, Some(*wa)));
                w.next();
            }
            (_, Some((b, _))) => {
                out.push((*b, None));
                h.next();
            }
        }
    }
    out.retain(|(id, _)| desired(id));
    out
}

/// Records an applied plan in the RIB (the kernel accepted all of it): the
/// RIB's tables become the desired ones.
fn commit(rib: &mut Rib, outcome: Outcome, desired: Desired<'_>, origins: Option<&Origins>) {
    let origin = |id: &RouteId| origins.and_then(|o| o.get(id)).copied();
    for o in outcome.objects.by_name.into_values() {
        objects::record(rib, o.id, &o.policy, o.tc, o.lists);
    }
    rib.bind_policies(outcome.written.iter().map(|(id, w)| (*id, w.policy_id)));
    for (id, w) in outcome.written {
        if w.slots != CounterSlots::default() || rib.counters_of.contains_key(&id) {
            rib.keep_counters(id, w.slots, w.lists);
        }
    }
    for id in &outcome.removes {
        rib.retire_policy(id);
        rib.drop_counters(id);
    }
    for prefix in outcome.set_aside_removed {
        rib.shadowed.remove(&prefix);
        rib.drop_counters(&(Table::Main, prefix));
        rib.origin_of.remove(&(Table::Main, prefix));
    }
    let state = match &desired {
        Desired::Borrowed(state) => Some(*state),
        Desired::Owned(state) => Some(state),
        Desired::Patch(_) => None,
    };
    if let Some(state) = state {
        rib.dscp = *state.dscp();
        rib.sources = state.sources().clone();
    }
    match outcome.changed {
        Some(changed) => {
            for id in &outcome.removes {
                rib.routes.remove(id);
                rib.origin_of.remove(id);
            }
            for (id, _) in &changed {
                super::note_origin(rib, *id, origin(id));
            }
            rib.routes.extend(changed);
        }
        None => {
            let whole = match desired {
                Desired::Owned(state) => Some(state.into_routes()),
                Desired::Borrowed(state) => Some(state.routes().clone()),
                // Never whole (see `few`): a patch names only what changes.
                Desired::Patch(_) => None,
            };
            if let Some(routes) = whole {
                let noted = routes.keys().filter_map(|id| Some((*id, origin(id)?))).collect();
                rib.origin_of = Tracked::clean(noted);
                rib.origin_of.dirty.mark_all();
                rib.routes = routes.into();
                // The desired routes for host addresses are set aside, never in the tries.
                let hosts: Vec<IpNetwork> = rib.local.iter().map(|a| IpNetwork::from(*a)).collect();
                for host in hosts {
                    if let Some(route) = rib.routes.remove(&(Table::Main, host)) {
                        rib.shadowed.insert(host, route);
                    }
                }
            }
        }
    }
    for route in outcome.set_aside {
        let id = (Table::Main, route.prefix);
        rib.routes.remove(&id);
        // Set aside, it keeps its origin: a restarted agent knows BGP's
        // route for a host address as BGP's (and withdraws it with BGP).
        super::note_origin(rib, id, origin(&id));
        rib.shadowed.insert(route.prefix, route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Table;

    fn id(p: &str) -> RouteId {
        (Table::Main, p.parse().unwrap())
    }

    #[test]
    fn the_removal_guard_lets_its_share_go_and_no_more() {
        assert!(!exceeds(2, 4, 0.5), "half of the table is allowed by 50%");
        assert!(exceeds(3, 4, 0.5));
        assert!(!exceeds(0, 0, 0.0), "an empty table loses nothing");
        assert!(exceeds(1, 4, 0.0));
        assert!(!exceeds(4, 4, 1.0));
    }

    #[test]
    fn the_lockstep_walk_finds_every_origin_that_differs_and_only_for_desired_routes() {
        let bgp = Noted::Bgp(None);
        let want: Origins =
            [(id("10.0.0.0/8"), Noted::Agent), (id("10.1.0.0/16"), bgp), (id("10.3.0.0/16"), Noted::Agent)].into();
        let have: Origins =
            [(id("10.0.0.0/8"), Noted::Agent), (id("10.1.0.0/16"), Noted::Agent), (id("10.2.0.0/16"), bgp)].into();
        let all = differing_origins(&want, &have, |_| true);
        assert_eq!(
            all,
            [(id("10.1.0.0/16"), Some(bgp)), (id("10.2.0.0/16"), None), (id("10.3.0.0/16"), Some(Noted::Agent))]
        );
        // What a lookup per desired id finds, and nothing for ids outside the desired state.
        let desired = [id("10.1.0.0/16"), id("10.3.0.0/16"), id("10.4.0.0/16")];
        let by_lookup: Vec<_> =
            desired.iter().map(|i| (*i, want.get(i).copied())).filter(|(i, w)| have.get(i).copied() != *w).collect();
        assert_eq!(differing_origins(&want, &have, |i| desired.contains(i)), by_lookup);
        assert!(differing_origins(&want, &want, |_| true).is_empty());
    }
}
