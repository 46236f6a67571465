//! The FIB: the kernel maps, written only as derived from the RIB. Every
//! change is made in the kernel first, in an order in which a packet sees the
//! old state or the new one, and recorded in the RIB only once the kernel
//! accepted it; a refused change leaves both as they were.

pub(crate) mod apply;
mod cache;
mod counters;
mod host;
mod reads;
mod sources;

pub use counters::RouteCounters;
pub(crate) use sources::source_family;
pub(crate) mod dir24_8;
pub(crate) mod encode;
pub(crate) mod key;
pub(crate) mod objects;
pub(crate) mod room;
pub(crate) mod table;
pub(crate) mod verify;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipnetwork::IpNetwork;
use nix::errno::Errno;

use crate::abi::{self, types};
use crate::dataplane::EncapMaps;
use crate::domain::config::Ipv4Lookup;
use crate::domain::label::DscpMap;
use crate::domain::prefix;
use crate::domain::route::{Route, Table};
use crate::error::{MapError, PinError, RouteError};
use crate::rib::alloc::{CounterSlots, GRACE};
use crate::rib::diff::Patch;
use crate::rib::objects::same_tc_kind as objects_same_kind;
use crate::rib::origins::Noted;
use crate::rib::store::{Covering, Keep, LoadConfig, Store};
use crate::rib::{Rib, RouteId};
use crate::stats::{Counter, Stats};
use crate::sys::map::BpfMap;
use crate::sys::mmap::MappedArray;
use apply::Origins;
use dir24_8::Dir24_8;
use key::RouteKey;
use table::RouteTable;

/// Whether two policy routes have the same route-level value (the policy
/// id and counter slot aside): only then may the policy change in place.
pub(crate) fn same_route_value(old: &Route, new: &Route) -> bool {
    use crate::domain::route::Tc;
    !old.policy.is_plain() && matches!(old.tc, Tc::FromDscp) == matches!(new.tc, Tc::FromDscp)
}

pub(crate) use crate::rib::trie_index;

/// Records `id`'s origin (`None`: static, which records nothing).
pub(crate) fn note_origin(rib: &mut Rib, id: RouteId, origin: Option<Noted>) {
    match origin {
        Some(o) if rib.origin_of.get(&id) != Some(&o) => {
            rib.origin_of.insert(id, o);
        }
        Some(_) => {}
        None => {
            rib.origin_of.remove(&id);
        }
    }
}

/// The routes of `table` in force, in order (a range of the RIB's map).
fn table_routes(rib: &Rib, table: Table) -> impl Iterator<Item = &RouteId> + '_ {
    // 0.0.0.0/0, the least prefix (IPv4 before IPv6, then by address and length).
    let least = ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::UNSPECIFIED, 0).map(IpNetwork::V4);
    least
        .into_iter()
        .flat_map(move |least| rib.routes.range((table, least)..))
        .map(|(id, _)| id)
        .take_while(move |id| id.0 == table)
}

/// What [`Fib::allocate`] handed a route about to be written.
pub(crate) struct Allocation {
    /// Its counter slots (kept ones and new ones).
    pub slots: CounterSlots,
    /// The slots newly taken (to zero, or to give back).
    pub fresh: Vec<u32>,
    /// Its segment lists (0: a plain route, no policy).
    pub lists: usize,
    /// Its policy id, for a policy route.
    pub policy_id: Option<u32>,
    /// The policy id is the route's current one, rewritten in place.
    pub in_place: bool,
}

/// Reads a RIB from where it is stored: whole, or (`Some(keep)`) only the
/// routes `keep` wants, with every small set.
pub(crate) type RibLoader = Box<dyn Fn(Option<Keep<'_>>) -> Result<Rib, String> + Send + Sync>;

/// Reads a writer's whole RIB and its store, for a handle adopted for the
/// change of one prefix's routes that is asked for more.
pub(crate) type WholeLoader = Box<dyn Fn() -> Result<(Rib, Option<Store>), PinError> + Send + Sync>;

pub(crate) struct Fib {
    maps: EncapMaps,
    config: LoadConfig,
    /// The RIB, guarded together with every write to the maps so that
    /// writers never interleave.
    rib: Mutex<Rib>,
    /// How to read the RIB when a reader first needs it: a reader adopted
    /// lazily (`stats` never looks at the RIB, so it never pays for
    /// decoding a million routes). Taken under the RIB's lock.
    pending: Mutex<Option<RibLoader>>,
    /// A RIB still pending read only for the routes covering some
    /// addresses (`get`): those addresses and that partial RIB.
    partial: Mutex<Option<(Vec<IpAddr>, Rib)>>,
    /// A writer adopted for a change of one prefix's routes holds only
    /// those (in every table) and every small set (a command's `set` at a
    /// million routes reads a few, not all): that prefix, and how to read
    /// the rest when anything else is asked. Taken under the RIB's lock.
    whole: Mutex<Option<(IpNetwork, WholeLoader)>>,
    /// A pinned dataplane's store: every change is begun and committed in
    /// its journal (locked after the RIB, always).
    store: Mutex<Option<Store>>,
    /// Adopted only to read: every change is refused.
    read_only: bool,
    /// The main IPv4 table, when it is DIR-24-8 (else the LPM trie `routes_v4`).
    dir: Option<Dir24_8>,
    /// `route_cache_ctl`, mapped: the generation moves on with a store, not
    /// a syscall, after every change.
    cache_ctl: MappedArray,
    /// A change holds the RIB and has not moved the generation on yet
    /// (set and cleared under the RIB's lock; a dry run never sets it).
    cache_stale: AtomicBool,
}

impl std::fmt::Debug for Fib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fib").field("config", &self.config).finish_non_exhaustive()
    }
}

fn full<E: Into<RouteError>>(family: &'static str, capacity: u32) -> impl FnOnce(E) -> RouteError {
    move |e| match e.into() {
        // A full LPM trie is ENOSPC on 6.18, E2BIG on older kernels and for hash maps.
        RouteError::Map(MapError { errno: Errno::E2BIG | Errno::ENOSPC, .. }) => RouteError::full(family, capacity),
        other => other,
    }
}

/// The RIB locked by [`Fib::locked`]. Released after a change that did not
/// reach [`Fib::saved`] (which moves it on itself), it moves the route
/// cache's generation on whatever the change did: an undone write may have
/// been cached meanwhile.
pub(crate) struct Changing<'a> {
    fib: &'a Fib,
    rib: MutexGuard<'a, Rib>,
}

impl std::ops::Deref for Changing<'_> {
    type Target = Rib;

    fn deref(&self) -> &Rib {
        &self.rib
    }
}

impl std::ops::DerefMut for Changing<'_> {
    fn deref_mut(&mut self) -> &mut Rib {
        &mut self.rib
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        if self.fib.cache_stale.load(Ordering::Relaxed) {
            self.fib.invalidate_route_cache(&self.rib);
        }
        // A change that did not reach its commit changed nothing (refused, or undone).
        if let Some(store) = self.fib.store_lock().as_mut() {
            store.end();
        }
    }
}

impl Fib {
    /// A FIB over freshly created maps: writes what the RIB says that is not
    /// a route (the DSCP table, the settings).
    pub(crate) fn fresh(maps: EncapMaps, config: LoadConfig) -> Result<Fib, MapError> {
        let dir = Self::dir(&maps, &config, false)?;
        let cache_ctl = Self::map_cache_ctl(&maps)?;
        let fib = Fib {
            maps,
            config,
            rib: Mutex::new(Rib::new(config.max_counted_routes)),
            pending: Mutex::new(None),
            partial: Mutex::new(None),
            whole: Mutex::new(None),
            store: Mutex::new(None),
            read_only: false,
            dir,
            cache_ctl,
            cache_stale: AtomicBool::new(false),
        };
        fib.write_dscp(&DscpMap::default())?;
        fib.write_settings(&Rib::new(0))?;
        Ok(fib)
    }

    /// The DIR-24-8 table of adopted maps (when the config chose it) with
    /// its bookkeeping read back now: a writer's adoption does this while
    /// its RIB decodes on another thread, so a change pays for neither twice.
    /// With `scope`, a writer's for a change of that prefix's routes: only
    /// what changing it needs (nothing for an IPv6 prefix).
    pub(crate) fn read_back_dir(
        maps: &EncapMaps,
        config: &LoadConfig,
        scope: Option<IpNetwork>,
    ) -> Result<Option<Dir24_8>, MapError> {
        let dir = Self::dir(maps, config, true)?;
        match (&dir, scope) {
            (Some(dir), None) => dir.read_back_now(),
            (Some(dir), Some(IpNetwork::V4(p))) => dir.read_back_for(p),
            _ => {}
        }
        Ok(dir)
    }

    /// A writer's FIB over maps that already hold what `rib` says (adopted
    /// from pins), with their DIR-24-8 table from [`Fib::read_back_dir`].
    pub(crate) fn adopted(
        maps: EncapMaps,
        config: LoadConfig,
        rib: Rib,
        dir: Option<Dir24_8>,
    ) -> Result<Fib, MapError> {
        Self::adopted_with(maps, config, rib, None, false, dir)
    }

    /// A writer's FIB over adopted maps for a change of `scope`'s routes:
    /// `rib` holds those (and every small set, with the store's counts and
    /// pools that hand out ids above any in use, [`Store::open_for_change`]);
    /// `whole` reads the rest when anything else is asked. `dir` is read back
    /// for `scope` alone ([`Fib::read_back_dir`]).
    pub(crate) fn adopted_for(
        maps: EncapMaps,
        config: LoadConfig,
        rib: Rib,
        dir: Option<Dir24_8>,
        scope: IpNetwork,
        whole: WholeLoader,
    ) -> Result<Fib, MapError> {
        let mut fib = Self::adopted_with(maps, config, rib, None, false, dir)?;
        fib.whole = Mutex::new(Some((scope, whole)));
        Ok(fib)
    }

    /// A read-only FIB over adopted maps whose RIB is read by `load` the
    /// first time something needs it.
    pub(crate) fn adopted_lazily(maps: EncapMaps, config: LoadConfig, load: RibLoader) -> Result<Fib, MapError> {
        let empty = Rib::new(config.max_counted_routes);
        let dir = Self::dir(&maps, &config, true)?;
        Self::adopted_with(maps, config, empty, Some(load), true, dir)
    }

    fn adopted_with(
        maps: EncapMaps,
        config: LoadConfig,
        rib: Rib,
        pending: Option<RibLoader>,
        read_only: bool,
        dir: Option<Dir24_8>,
    ) -> Result<Fib, MapError> {
        let cache_ctl = Self::map_cache_ctl(&maps)?;
        Ok(Fib {
            maps,
            config,
            rib: Mutex::new(rib),
            pending: Mutex::new(pending),
            partial: Mutex::new(None),
            whole: Mutex::new(None),
            store: Mutex::new(None),
            read_only,
            dir,
            cache_ctl,
            cache_stale: AtomicBool::new(false),
        })
    }

    /// The DIR-24-8 table over `maps`, when `config` chose it.
    fn dir(maps: &EncapMaps, config: &LoadConfig, adopt: bool) -> Result<Option<Dir24_8>, MapError> {
        match config.lookup {
            Ipv4Lookup::Dir24_8 => Dir24_8::open(maps, config, adopt).map(Some),
            Ipv4Lookup::LpmTrie => Ok(None),
        }
    }

    /// The DIR-24-8 table, when the main IPv4 table is one.
    pub(crate) fn dir24_8(&self) -> Option<&Dir24_8> {
        self.dir.as_ref()
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn maps(&self) -> &EncapMaps {
        &self.maps
    }

    pub(crate) fn config(&self) -> &LoadConfig {
        &self.config
    }

    /// The RIB, locked for a change; refused on a read-only handle.
    fn changer(&self) -> Result<Changing<'_>, RouteError> {
        self.locked(true)
    }

    /// The RIB, locked; for a change (`changing`: refused on a read-only
    /// handle) or only to look (a dry run).
    fn locked(&self, changing: bool) -> Result<Changing<'_>, RouteError> {
        let rib = self.locked_to_check(changing)?;
        if changing {
            self.begin_change()?;
        }
        Ok(rib)
    }

    /// The RIB, locked as [`Fib::locked`] but with the change not begun: a
    /// caller that may still refuse (an apply's guard, its capacity) calls
    /// [`Fib::begin_change`] before its first write, so a refusal leaves no
    /// trace in the journal and keeps the route cache.
    fn locked_to_check(&self, changing: bool) -> Result<Changing<'_>, RouteError> {
        self.locked_keeping(changing, |_, _| false)
    }

    /// As [`Fib::locked_to_check`], keeping a RIB that holds one prefix's
    /// routes (that prefix given) where `keep` says it is enough; anything
    /// else is read whole first, and a change is refused on a RIB that
    /// could not be.
    fn locked_keeping(
        &self,
        changing: bool,
        keep: impl FnOnce(&Rib, IpNetwork) -> bool,
    ) -> Result<Changing<'_>, RouteError> {
        if changing && self.read_only {
            return Err(RouteError::ReadOnly);
        }
        let mut rib = self.rib_lock();
        if !self.part_of().is_some_and(|scope| keep(&rib, scope)) {
            self.read_whole(&mut rib)?;
        }
        self.read_pending(&mut rib);
        Ok(Changing { fib: self, rib })
    }

    /// Marks a change as begun, before its first kernel write: a process
    /// killed from here on leaves the journal saying so (the next one
    /// repairs), and the route cache is moved on when the lock goes. Once per
    /// change: a second call before the commit does nothing.
    fn begin_change(&self) -> Result<(), RouteError> {
        if let Some(store) = self.store_lock().as_mut() {
            store.begin().map_err(|e| RouteError::NotSaved(Box::new(e)))?;
        }
        self.cache_stale.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Moves the route cache's generation on, so that no answer cached
    /// before this point is served again, and turns it on for the families
    /// whose main table in `rib` is big enough (route_cache.h). Called after
    /// the main tables were written and before anything slow (the state
    /// file); the stores are ordered after every earlier write.
    fn invalidate_route_cache(&self, rib: &Rib) {
        let min = self.config.route_cache_min_routes as usize;
        let big = |v6: bool| rib.routes.main_count(v6) >= min;
        let mut families = 0;
        if big(false) {
            families |= types::route_cache_family::ROUTE_CACHE_IPV4.0;
        }
        if big(true) {
            families |= types::route_cache_family::ROUTE_CACHE_IPV6.0;
        }
        self.cache_stale.store(false, Ordering::Relaxed);
        // Only this handle writes it, under the RIB's lock.
        let (generation, empty) = cache::next_generation(self.cache_ctl.load_u64(0).unwrap_or(0));
        if empty {
            if let Err(e) = cache::empty(&self.maps, self.config.route_cache) {
                // Not serving from a cache that cannot be emptied is always
                // right; the next change tries again from the same generation.
                log::error!("{e}: the route cache is off until a change empties it");
                self.cache_ctl.store_u32(0, std::mem::offset_of!(types::route_cache_ctl, families), 0);
                return;
            }
        }
        self.cache_ctl.store_u32(0, std::mem::offset_of!(types::route_cache_ctl, families), families);
        self.cache_ctl.store_u64(0, generation);
    }

    /// `route_cache_ctl`, mapped (its generation first, as store_u64 writes it).
    fn map_cache_ctl(maps: &EncapMaps) -> Result<MappedArray, MapError> {
        const _: () = assert!(std::mem::offset_of!(types::route_cache_ctl, generation) == 0);
        MappedArray::new(&maps.route_cache_ctl, 1, std::mem::size_of::<types::route_cache_ctl>())
    }

    /// The RIB's lock, without reading a RIB still pending.
    fn rib_lock(&self) -> MutexGuard<'_, Rib> {
        // Every change to the RIB follows an accepted kernel change and is
        // itself infallible, so a poisoned lock still guards a consistent RIB.
        self.rib.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store_lock(&self) -> MutexGuard<'_, Option<Store>> {
        // The store's writes are whole records or nothing: a poisoned lock still guards a usable store.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every change from now on durable in `store` (`None`: stop);
    /// returns the store replaced.
    pub(crate) fn set_store(&self, store: Option<Store>) -> Option<Store> {
        // The RIB's lock orders this with the commits; its content is not
        // needed, so a RIB still to be read stays unread.
        let _rib = self.rib_lock();
        std::mem::replace(&mut *self.store_lock(), store)
    }

    /// Commits the change in the store (the RIB still locked, so commits are
    /// ordered), after the route cache forgot what the change replaced.
    fn saved(&self, rib: &mut Rib) -> Result<(), RouteError> {
        self.invalidate_route_cache(rib);
        match self.store_lock().as_mut() {
            Some(store) => store.commit(rib).map_err(|e| {
                log::error!("{e}");
                RouteError::NotSaved(Box::new(e))
            }),
            None => {
                // Unpinned: nobody reads what changed.
                let _ = rib.take_changes();
                Ok(())
            }
        }
    }

    /// The route tries, in the order [`trie_index`] numbers them, each with
    /// its family (for "full" errors) and capacity.
    pub(crate) fn tries(&self) -> [(&dyn RouteTable, &'static str, u32); 4] {
        let m = &self.maps;
        let (v4, v6) = (self.config.max_routes_v4, self.config.max_routes_v6);
        let main_v4: &dyn RouteTable = match &self.dir {
            Some(dir) => dir,
            None => &m.routes_v4,
        };
        [
            (main_v4, "IPv4", v4),
            (&m.routes_v6, "IPv6", v6),
            (&m.alt_routes_v4, "alternate IPv4", v4),
            (&m.alt_routes_v6, "alternate IPv6", v6),
        ]
    }

    fn routes_map(&self, table: Table, prefix: &IpNetwork) -> (&dyn RouteTable, &'static str, u32) {
        let [main_v4, main_v6, alt_v4, alt_v6] = self.tries();
        match trie_index(table, prefix) {
            0 => main_v4,
            1 => main_v6,
            2 => alt_v4,
            _ => alt_v6,
        }
    }

    /// Writes one trie entry.
    fn write(&self, table: Table, prefix: &IpNetwork, value: &types::route_value) -> Result<(), RouteError> {
        let (map, family, capacity) = self.routes_map(table, prefix);
        map.update(RouteKey::in_table(table.id(), *prefix).bytes(), abi::bytes_of(value))
            .map_err(full(family, capacity))
    }

    fn write_dscp(&self, map: &DscpMap) -> Result<(), MapError> {
        let value = types::dscp_map { tc: map.values() };
        self.maps.dscp_tc.update(&0u32.to_ne_bytes(), abi::bytes_of(&value))
    }

    /// Replaces the DSCP -> TC table (one map update: packets see the old or the new).
    pub(crate) fn set_dscp_map(&self, map: &DscpMap) -> Result<(), RouteError> {
        let mut rib = self.changer()?;
        self.write_dscp(map)?;
        rib.dscp = *map;
        self.saved(&mut rib)
    }

    /// Adds or atomically replaces one route: a packet sees the old route or
    /// the new one, never a mix.
    pub(crate) fn set_route(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        self.set_route_from(table, route, None)
    }

    /// As [`Fib::set_route`], recording the route's origin (`None`: static)
    /// in the same commit.
    pub(crate) fn set_route_from(&self, table: Table, route: &Route, origin: Option<Noted>) -> Result<(), RouteError> {
        prefix::check(route.prefix)?;
        let id = (table, route.prefix);
        let set = |rib: &mut Changing<'_>| {
            if table == Table::Main && rib.is_local_host(&route.prefix) {
                return Err(RouteError::LocalAddress { prefix: route.prefix });
            }
            self.patch_locked(rib, id, Some(route.clone()), origin).map(|_| ())
        };
        self.change_one(id, Some(route), set)
    }

    /// Sets (`Some`) or removes (`None`) one route through the apply's
    /// pipeline (apply.rs: plan, room, execute with its undo, commit), on a
    /// RIB already locked for a change, and saves it: one write path for a
    /// route whatever asked for it. Whether anything changed.
    fn patch_locked(
        &self,
        rib: &mut Changing<'_>,
        id: RouteId,
        route: Option<Route>,
        origin: Option<Noted>,
    ) -> Result<bool, RouteError> {
        let patch: Patch = [(id, route)].into();
        let origins: Origins = origin.map(|o| (id, o)).into_iter().collect();
        let (_, changed) = self.apply_locked(rib, apply::Desired::Patch(&patch), false, None, Some(&origins))?;
        if changed {
            self.saved(rib)?;
        }
        Ok(changed)
    }

    /// Replaces what the origins say of BGP's policies (written with the
    /// small sets, at the next commit: this one).
    #[cfg(feature = "bgp")]
    pub(crate) fn set_origin_notes(&self, notes: Vec<u8>) -> Result<(), RouteError> {
        let mut rib = self.changer()?;
        if rib.origin_notes == notes {
            return Ok(());
        }
        rib.origin_notes = notes;
        self.saved(&mut rib)
    }

    /// A route's counter slots (its own, and new ones for what it lacks) and
    /// its policy id: the one it has, kept in place only when the route's own
    /// value stays byte for byte the same (then a packet sees the old policy
    /// or the new one through the unchanged route); otherwise a fresh id, so
    /// no packet meets the old route with the new policy. On error nothing
    /// is taken.
    pub(crate) fn allocate(&self, rib: &mut Rib, id: RouteId, route: &Route) -> Result<Allocation, RouteError> {
        let lists = if route.policy.is_plain() { 0 } else { route.policy.lists().len() };
        let (slots, fresh) = rib.counters_for(id, lists);
        let old_id = rib.policy_of.get(&id).copied();
        // A shared object is never rewritten as one route's own policy.
        let in_place = lists > 0
            && old_id.is_some_and(|p| !rib.objects.contains(p))
            && rib.counters_of.get(&id).is_some_and(|old| old.route == slots.route)
            && rib.routes.get(&id).is_some_and(|old| same_route_value(old, route));
        let policy_id = match (lists, in_place) {
            (0, _) => None,
            (_, true) => old_id,
            (_, false) => match rib.policy_ids.take() {
                Some(p) => Some(p),
                None => {
                    fresh.iter().for_each(|s| rib.counter_slots.give_back(*s));
                    return Err(RouteError::full("policy", self.config.max_policies));
                }
            },
        };
        Ok(Allocation { slots, fresh, lists, policy_id, in_place })
    }

    /// Waits until `n` retired policies have waited out their grace period
    /// (at most [`GRACE`]), and deletes them.
    pub(crate) fn wait_for_graveyard(&self, rib: &mut Rib, n: usize) {
        let mut stamps: Vec<_> = rib.graveyard.iter().map(|(_, at)| *at).collect();
        stamps.sort_unstable();
        if let Some(at) = stamps.get(n.saturating_sub(1)) {
            std::thread::sleep(GRACE.saturating_sub(at.elapsed()));
        }
        self.bury_policies(rib);
    }

    /// Deletes the policies whose grace period is over.
    fn bury_policies(&self, rib: &mut Rib) {
        for id in rib.expired_policies() {
            self.forget_policy(rib, id);
        }
    }

    /// Deletes a policy and frees its id.
    fn forget_policy(&self, rib: &mut Rib, id: u32) {
        match self.maps.policies.delete(&id.to_ne_bytes()) {
            // Its grace period was the graveyard's: reusable at once.
            Ok(_) => rib.policy_ids.give_back_now(id),
            // Leaked, not reused: the table keeps working, and verify() reports it.
            Err(e) => log::warn!("{e} (policy {id} stays allocated)"),
        }
    }

    /// Removes a route; `false` when there was none for exactly that prefix.
    /// A route set aside by a host address is removed for good.
    pub(crate) fn remove(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let id = (table, prefix);
        self.change_one(id, None, |rib| {
            let set_aside = table == Table::Main && rib.is_local_host(&prefix) && rib.shadowed.contains_key(&prefix);
            if !set_aside && !rib.routes.contains_key(&id) {
                return Ok(false);
            }
            // One rule with apply's: a source selects a table with routes (else
            // the state in force could not be applied back).
            if let Some((source, _)) = rib.sources.iter().find(|(_, t)| **t == table) {
                if table_routes(rib, table).nth(1).is_none() {
                    return Err(RouteError::Invalid(crate::domain::desired::DesiredError {
                        what: format!("route {prefix} (table {})", table.id()),
                        reason: format!(
                            "it is the last route of table {}, which source {source} selects: remove the source first",
                            table.id()
                        ),
                    }));
                }
            }
            self.patch_locked(rib, id, None, None)?;
            Ok(true)
        })
    }
}
