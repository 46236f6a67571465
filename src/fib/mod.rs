//! The FIB: the kernel maps, written only as derived from the RIB. Every
//! change is made in the kernel first, in an order in which a packet sees the
//! old state or the new one, and recorded in the RIB only once the kernel
//! accepted it; a refused change leaves both as they were.

pub(crate) mod apply;
mod cache;
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

/// Per-route counters: what the route labelled, in total and per segment list.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RouteCounters {
    /// False when the route got no counter slot (more routes and lists than
    /// `EncapsulatorBuilder::max_counted_routes`): its counts then read zero.
    pub counted: bool,
    /// Everything the route labelled.
    pub labelled: Counter,
    /// Per segment list, in the policy's order (one entry for a plain route).
    pub lists: Vec<Counter>,
}

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

/// A route's counter slots; a route on a shared object counts its lists
/// there (shared by its routes).
fn slots_of(rib: &Rib, id: &RouteId) -> CounterSlots {
    let mut slots = rib.counters_of.get(id).cloned().unwrap_or_default();
    if let Some(o) = rib.object_of(id) {
        slots.lists = o.lists.clone();
    }
    slots
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

/// A route's counters from its slots, each read by `counter`.
fn counters_of(
    slots: &CounterSlots,
    counter: impl Fn(u32) -> Result<Counter, MapError>,
) -> Result<RouteCounters, MapError> {
    let labelled = counter(slots.route)?;
    let counted = slots.route != 0 && slots.lists.iter().all(|s| *s != 0);
    let lists = if slots.lists.is_empty() {
        vec![labelled]
    } else {
        slots.lists.iter().map(|s| counter(*s)).collect::<Result<_, _>>()?
    };
    Ok(RouteCounters { counted, labelled, lists })
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
    /// A writer adopted for a change of the routes of [`Fib::scope`] holds
    /// only those and every small set (a command's `set` at a million
    /// routes reads a few, not all): this reads the rest, when anything
    /// else is asked. Taken under the RIB's lock.
    whole: Mutex<Option<WholeLoader>>,
    /// The prefix whose routes, in every table, such a writer holds.
    scope: Option<IpNetwork>,
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

/// Whether changing route `id` to `route` (`None`: removing it) on a RIB
/// that holds only the routes of `id`'s prefix, every small set, the
/// store's counts and pools above every id in use makes what the whole RIB
/// would: not when a shared object is involved (its users are counted over
/// every route), nor a removal from a table a source selects (which must
/// keep a route), nor when the route needs counter slots and the only free
/// ones are below the pool's highest, known by number only.
fn one_change_fits(rib: &Rib, id: RouteId, route: Option<&Route>) -> bool {
    if rib.object_of(&id).is_some() || route.is_some_and(|r| r.policy.name().is_some()) {
        return false;
    }
    if route.is_none() && rib.sources.values().any(|t| *t == id.0) {
        return false;
    }
    let Some(route) = route else { return true };
    let lists = if route.policy.is_plain() { 0 } else { route.policy.lists().len() };
    let have = rib.counters_of.get(&id);
    let need = usize::from(have.is_none_or(|c| c.route == 0)) + lists.saturating_sub(have.map_or(0, |c| c.lists.len()));
    need <= rib.counter_slots.available_now() || !rib.counter_slots.has_unnamed()
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

/// The family named in a full source table's error.
pub(crate) fn source_family(prefix: &IpNetwork) -> &'static str {
    if prefix.is_ipv4() {
        "IPv4 source"
    } else {
        "IPv6 source"
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
            scope: None,
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
        fib.whole = Mutex::new(Some(whole));
        fib.scope = Some(scope);
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
            scope: None,
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
        if changing && self.read_only {
            return Err(RouteError::ReadOnly);
        }
        let mut rib = self.rib_lock();
        // A change is refused on a RIB it could not read whole.
        self.read_whole(&mut rib)?;
        self.read_pending(&mut rib);
        Ok(Changing { fib: self, rib })
    }

    /// The RIB locked for a change of route `id` to `route` (`None`: its
    /// removal): a writer adopted for `id`'s prefix changes the few routes
    /// it holds when that is the change the whole RIB would make
    /// ([`one_change_fits`]); anything else reads the RIB whole first.
    fn changer_for(&self, id: RouteId, route: Option<&Route>) -> Result<Changing<'_>, RouteError> {
        if self.read_only {
            return Err(RouteError::ReadOnly);
        }
        let mut rib = self.rib_lock();
        let holds_part = self.holds_part();
        if holds_part && !(self.scope == Some(id.1) && one_change_fits(&rib, id, route)) {
            self.read_whole(&mut rib)?;
        }
        let rib = Changing { fib: self, rib };
        self.begin_change()?;
        Ok(rib)
    }

    /// Reads the whole RIB now if it holds only the routes of one change:
    /// before what needs the state beside the pins while it is still there
    /// (a detach removes it).
    pub(crate) fn read_all(&self) -> Result<(), PinError> {
        self.read_whole_or(&mut self.rib_lock()).map_err(|(e, _)| e)
    }

    /// Whether the RIB holds only the routes of [`Fib::scope`].
    fn holds_part(&self) -> bool {
        self.whole.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    /// Reads the rest of a RIB that holds only the routes of one change,
    /// with its store (whose commits are in it).
    fn read_whole(&self, rib: &mut Rib) -> Result<(), RouteError> {
        self.read_whole_or(rib).map_err(|(e, saved)| match saved {
            true => RouteError::Unreadable(Box::new(e)),
            false => RouteError::NotSaved(Box::new(e)),
        })
    }

    /// [`Fib::read_whole`]; its error says whether this RIB's changes are saved.
    fn read_whole_or(&self, rib: &mut Rib) -> Result<(), (PinError, bool)> {
        let mut whole = self.whole.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(load) = whole.as_ref() else { return Ok(()) };
        let started = std::time::Instant::now();
        // A change this RIB holds and the store does not (its save failed)
        // is saved first: read back without it, it would be lost, and the
        // ids it holds handed out again.
        if let Some(store) = self.store_lock().as_mut() {
            store.commit(rib).map_err(|e| (e, false))?;
        }
        let (read, store) = load().map_err(|e| (e, true))?;
        *rib = read;
        *self.store_lock() = store;
        *whole = None;
        log::debug!("RIB read whole after a change of {:?} alone, in {:?}", self.scope, started.elapsed());
        Ok(())
    }

    /// Reads a lazily adopted reader's RIB, the first time it is needed.
    fn read_pending(&self, rib: &mut Rib) {
        let load = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(load) = load {
            let started = std::time::Instant::now();
            match load(None) {
                Ok(loaded) => *rib = loaded,
                // Only a reader loads lazily, after the state's checksum
                // passed at adoption; it changes nothing, so it goes on
                // with what it has and says so.
                Err(e) => log::error!("{e}: the routes shown are incomplete"),
            }
            log::debug!("RIB read on first use in {:?}", started.elapsed());
        }
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

    /// The RIB, locked and read whole (for what reads it).
    fn writer(&self) -> MutexGuard<'_, Rib> {
        let mut rib = self.rib_lock();
        if let Err(e) = self.read_whole(&mut rib) {
            // What reads goes on with what it has and says so; a change is refused (locked_to_check).
            log::error!("{e}: the routes shown are incomplete");
        }
        self.read_pending(&mut rib);
        rib
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

    /// Runs `f` on a RIB that holds every route covering one of `addrs`,
    /// every small set (sources, host addresses, objects) and perhaps more:
    /// while a reader's RIB is still to be read, only those routes are read
    /// (a destination's explanation at a million routes costs a scan of the
    /// snapshot, not a million allocations).
    pub(crate) fn read_covering<T>(&self, addrs: &[IpAddr], f: impl FnOnce(&Rib) -> T) -> T {
        let read = {
            let pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            pending.as_ref().is_some_and(|load| {
                let mut partial = self.partial.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if partial.as_ref().is_none_or(|(read, _)| read != addrs) {
                    let started = std::time::Instant::now();
                    let keep = Covering(addrs);
                    *partial = match load(Some(&keep)) {
                        Ok(rib) => Some((addrs.to_vec(), rib)),
                        Err(e) => {
                            log::debug!("reading the routes covering {addrs:?} alone: {e}; reading them all");
                            None
                        }
                    };
                    log::debug!("RIB read for {addrs:?} in {:?}", started.elapsed());
                }
                partial.is_some()
            })
        };
        if read {
            let partial = self.partial.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((_, rib)) = partial.as_ref().filter(|(read, _)| read == addrs) {
                return f(rib);
            }
        }
        self.read(f)
    }

    /// Runs `f` on the RIB, locked.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Rib) -> T) -> T {
        f(&self.writer())
    }

    /// Runs `f` on a RIB whose small sets (host addresses, set-aside
    /// routes, sources, objects) are whole, its routes perhaps not: a writer
    /// adopted for one change reads no more.
    fn read_small_sets<T>(&self, f: impl FnOnce(&Rib) -> T) -> T {
        if self.holds_part() {
            return f(&self.rib_lock());
        }
        self.read(f)
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

    fn sources_map(&self, prefix: &IpNetwork) -> (&BpfMap, u32) {
        if prefix.is_ipv4() {
            (&self.maps.sources_v4, self.config.max_routes_v4)
        } else {
            (&self.maps.sources_v6, self.config.max_routes_v6)
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

    /// Makes a change of route `id` (to `route`; `None`: its removal) with
    /// `change`, on the few routes a writer adopted for it holds where that
    /// is enough; a refusal there (a table full, or a kernel refusal: the
    /// ids or room it lacks may be known only to the whole RIB) is tried
    /// again on the whole RIB, whose answer stands.
    fn change_one<T>(
        &self,
        id: RouteId,
        route: Option<&Route>,
        change: impl Fn(&mut Changing<'_>) -> Result<T, RouteError>,
    ) -> Result<T, RouteError> {
        let mut rib = self.changer_for(id, route)?;
        match change(&mut rib) {
            Err(e @ (RouteError::TableFull { .. } | RouteError::Map(_))) if self.holds_part() => {
                drop(rib);
                log::debug!("{e}: tried again on the whole RIB");
                change(&mut self.changer()?)
            }
            result => result,
        }
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

    /// Points packets from `prefix` at an alternate table. The program is
    /// told to look at sources before the first one is in place (a lookup that
    /// finds nothing is harmless), and stops looking only after the last is gone.
    pub(crate) fn set_source(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut rib = self.changer()?;
        // One rule with apply's: a source selects an alternate table with routes.
        if table == Table::Main || table_routes(&rib, table).next().is_none() {
            return Err(RouteError::Invalid(crate::domain::desired::DesiredError {
                what: format!("source {prefix}"),
                reason: format!(
                    "table {} is not an alternate table with routes: add a route to it first (a source of an empty \
                     table would send its packets to the main table, and the state could not be applied back)",
                    table.id()
                ),
            }));
        }
        let (map, capacity) = self.sources_map(&prefix);
        let enabling = rib.sources.is_empty();
        if enabling {
            self.write_source_count(1)?;
        }
        let value = types::source_value { table: table.id() };
        if let Err(e) = map.update(RouteKey::new(prefix).bytes(), abi::bytes_of(&value)) {
            if enabling {
                if let Err(undo) = self.write_source_count(0) {
                    // Harmless: the program does one source lookup that finds nothing.
                    log::warn!("{undo} (the program keeps looking up sources)");
                }
            }
            return Err(full(source_family(&prefix), capacity)(e));
        }
        rib.sources.insert(prefix, table);
        if let Err(e) = self.write_settings(&rib) {
            // The count was raised before the source went in; it only saves a lookup when zero.
            log::warn!("{e} (the program may look up sources it need not)");
        }
        self.saved(&mut rib)
    }

    /// Stops selecting a table by `prefix`; `false` when it selected none.
    pub(crate) fn remove_source(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut rib = self.changer()?;
        if !rib.sources.contains_key(&prefix) {
            return Ok(false);
        }
        self.sources_map(&prefix).0.delete(RouteKey::new(prefix).bytes())?;
        rib.sources.remove(&prefix);
        if let Err(e) = self.write_settings(&rib) {
            // Harmless: the program does a source lookup that finds nothing.
            log::warn!("{e} (the program keeps looking up sources)");
        }
        self.saved(&mut rib)?;
        Ok(true)
    }

    fn write_source_count(&self, sources: u32) -> Result<(), MapError> {
        let value = types::settings { sources };
        self.maps.settings.update(&0u32.to_ne_bytes(), abi::bytes_of(&value))
    }

    /// Tells the program whether to look at sources at all (none: one lookup saved per packet).
    fn write_settings(&self, rib: &Rib) -> Result<(), MapError> {
        self.write_source_count(u32::try_from(rib.sources.len()).unwrap_or(u32::MAX))
    }

    /// What the route for exactly `prefix` labelled; `None` without such a route.
    pub(crate) fn route_counters(&self, table: Table, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        let prefix = prefix::check(prefix)?;
        let Some(slots) =
            self.read(|rib| rib.routes.contains_key(&(table, prefix)).then(|| slots_of(rib, &(table, prefix))))
        else {
            return Ok(None);
        };
        Ok(Some(counters_of(&slots, |slot| self.slot_counter(slot))?))
    }

    /// Every route of every table, resolved, with its counters: one pass
    /// over the RIB and one batched read of the counter pool, not a lock and
    /// a syscall per route.
    pub(crate) fn counted_routes(&self) -> Result<Vec<(Table, Route, RouteCounters, bool)>, MapError> {
        // Set-aside routes too (flagged): they are part of the state an
        // export must carry, or applying it would remove them.
        let rows: Vec<(Table, Route, CounterSlots, bool)> = self.read(|rib| {
            let in_force =
                rib.routes.iter().map(|(id, r)| (id.0, rib.resolve(id, r).into_owned(), slots_of(rib, id), false));
            let aside =
                rib.shadowed.iter().map(|(p, r)| (Table::Main, r.clone(), slots_of(rib, &(Table::Main, *p)), true));
            in_force.chain(aside).collect()
        });
        let last = rows.iter().flat_map(|(_, _, s, _)| std::iter::once(s.route).chain(s.lists.iter().copied())).max();
        let (values, per_slot) = match last {
            Some(last) if last > 0 => match self.maps.route_counters.percpu_array_values(last) {
                Ok(read) => read,
                // A kernel without batched lookups on arrays (ENOTSUPP, 524,
                // has no name here): a lookup per slot, which says what is wrong
                // if anything else is.
                Err(e) => {
                    log::debug!("{e}: the counters are read one slot at a time");
                    return rows
                        .into_iter()
                        .map(|(table, route, slots, aside)| {
                            Ok((table, route, counters_of(&slots, |s| self.slot_counter(s))?, aside))
                        })
                        .collect();
                }
            },
            _ => (Vec::new(), 0),
        };
        let stride = std::mem::size_of::<types::counter_value>().div_ceil(8) * 8;
        let slot = |slot: u32| -> Result<Counter, MapError> {
            let mut total = Counter::default();
            if slot == 0 || per_slot == 0 {
                return Ok(total);
            }
            let at = slot as usize * per_slot;
            for cpu in values.get(at..at + per_slot).unwrap_or_default().chunks(stride) {
                if let Some(v) = abi::from_bytes::<types::counter_value>(cpu) {
                    total = total.plus(Counter { packets: v.packets, bytes: v.bytes });
                }
            }
            Ok(total)
        };
        rows.into_iter()
            .map(|(table, route, slots, aside)| Ok((table, route, counters_of(&slots, slot)?, aside)))
            .collect()
    }

    /// One counter slot summed over CPUs; zero for slot 0 (not counted).
    fn slot_counter(&self, slot: u32) -> Result<Counter, MapError> {
        let mut total = Counter::default();
        if slot == 0 {
            return Ok(total);
        }
        for bytes in self.maps.route_counters.lookup_percpu(&slot.to_ne_bytes())? {
            if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                total = total.plus(Counter { packets: v.packets, bytes: v.bytes });
            }
        }
        Ok(total)
    }

    pub(crate) fn stats(&self) -> Result<Stats, MapError> {
        let mut stats = Stats::default();
        for index in 0..abi::COUNTERS {
            for bytes in self.maps.counters.lookup_percpu(&index.to_ne_bytes())? {
                if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                    stats.accumulate(index, Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        Ok(stats)
    }

    /// Makes the never-label host entries exactly `wanted`: new addresses are
    /// added before stale ones are removed, so an address that stays local is
    /// never briefly labelled. A route for the same /32 or /128 is set aside
    /// while the address is local and restored when it goes. If adding an
    /// entry fails, nothing of this call stays applied; a route that cannot
    /// be restored when its address goes is logged and kept set aside (the
    /// address's entry stays: never labelled, never black-holed).
    pub(crate) fn sync_local(&self, wanted: &BTreeSet<IpAddr>) -> Result<usize, RouteError> {
        // The common call (a netlink event that changed no address of this
        // host's) writes nothing: it must not begin a change either, which
        // would journal it and move the route cache's generation on (every
        // cached answer lost, a miss for every active flow).
        if let Some(n) = self.read_small_sets(|rib| (rib.local == *wanted).then_some(rib.local.len())) {
            return Ok(n);
        }
        let mut rib = self.changer()?;
        let adding: Vec<IpAddr> = wanted.difference(&rib.local).copied().collect();
        let removing: Vec<IpAddr> = rib.local.difference(wanted).copied().collect();
        if adding.is_empty() && removing.is_empty() {
            return Ok(rib.local.len());
        }
        // Said where an operator sees it: without an agent this is found by
        // whichever command adopts next (`repair` said "nothing to repair").
        let list = |v: &[IpAddr]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        // (The first reading, at attach, is no change.)
        let level = if rib.local.is_empty() { log::Level::Debug } else { log::Level::Warn };
        log::log!(
            level,
            "the host's addresses changed: never labelled now: {}; labelled again (no longer the host's): {}",
            list(&adding),
            list(&removing)
        );
        let mut added: Vec<IpNetwork> = Vec::new();
        for addr in adding {
            let host = IpNetwork::from(addr);
            if let Err(e) = self.write(Table::Main, &host, &encode::local()) {
                for host in added.into_iter().rev() {
                    self.rewrite_route(&rib, host);
                }
                return Err(e);
            }
            log::debug!("host address {addr}: never labelled");
            added.push(host);
        }
        for host in added {
            rib.local.insert(host.ip());
            let id = (Table::Main, host);
            if let Some(route) = rib.routes.remove(&id) {
                // Warned: a route stops being in force, maybe found by an
                // unrelated command's adoption.
                log::warn!("{host} is now a host address: its route is set aside until the address goes");
                rib.retire_policy(&id);
                rib.shadowed.insert(host, route);
            }
        }
        for addr in removing {
            let host = IpNetwork::from(addr);
            rib.local.remove(&addr);
            let hidden = rib.shadowed.remove(&host);
            self.unshadow(&mut rib, host, hidden);
        }
        self.saved(&mut rib)?;
        Ok(rib.local.len())
    }

    /// Puts back what the RIB says for a main-table host prefix whose entry
    /// was overwritten: its route as installed (same policy id and counter
    /// slots: nothing is allocated), or nothing.
    fn rewrite_route(&self, rib: &Rib, host: IpNetwork) {
        let written = match encode::installed_value(rib, &(Table::Main, host)) {
            Some(value) => self.write(Table::Main, &host, &value),
            None => self.delete_host(host),
        };
        if let Err(e) = written {
            log::warn!("rolling back the host entry {host} failed: {e} (verify() reports it)");
        }
    }

    fn delete_host(&self, host: IpNetwork) -> Result<(), RouteError> {
        self.routes_map(Table::Main, &host).0.delete(RouteKey::new(host).bytes())?;
        Ok(())
    }

    /// Replaces a host entry by the route it hid (through the apply's
    /// pipeline, keeping the route's origin), or deletes it.
    fn unshadow(&self, rib: &mut Rib, host: IpNetwork, hidden: Option<Route>) {
        // A set-aside route on a shared object comes back on the object as
        // it is now, not with the content it had when set aside.
        let hidden = hidden.map(|r| match r.policy.name().and_then(|n| rib.objects.named(n)) {
            Some((_, o)) if objects_same_kind(o.tc, r.tc) => Route { policy: o.policy.clone(), tc: o.tc, ..r },
            _ => r,
        });
        let id = (Table::Main, host);
        let result = match &hidden {
            Some(route) => {
                let patch: Patch = [(id, Some(route.clone()))].into();
                let origins: Origins = rib.origin_of.get(&id).map(|o| (id, *o)).into_iter().collect();
                self.apply_locked(rib, apply::Desired::Patch(&patch), false, None, Some(&origins)).map(|_| ())
            }
            None => self.delete_host(host),
        };
        if let Err(e) = result {
            log::warn!("restoring {host} after it stopped being a host address failed: {e}");
            // The address's entry stays: never labelled, never black-holed.
            if let Err(e) = self.write(Table::Main, &host, &encode::local()) {
                log::warn!("keeping {host} unlabelled failed: {e} (verify() reports it)");
            }
            rib.local.insert(host.ip());
            if let Some(route) = hidden {
                rib.shadowed.insert(host, route);
            }
        }
    }
}
