//! How a FIB holds its RIB: read lazily for a reader (only the routes
//! covering a destination, for `get`), whole for a writer, or only the
//! routes of one prefix for a writer adopted to change it
//! ([`Fib::adopted_for`]), read whole the moment anything else is asked.

use super::*;

/// Whether changing route `id` to `route` (`None`: removing it) on a RIB
/// that holds only the routes of `id`'s prefix, every small set, the
/// store's counts and pools above every id in use makes what the whole RIB
/// would: not when a shared object is involved (its users are counted over
/// every route), nor a removal from a table a source selects (which must
/// keep a route), nor when the route needs counter slots and the only free
/// ones are below the pool's highest, known by number only.
pub(super) fn one_change_fits(rib: &Rib, id: RouteId, route: Option<&Route>) -> bool {
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

impl Fib {
    /// The RIB locked for a change of route `id` to `route` (`None`: its
    /// removal): a writer adopted for `id`'s prefix changes the few routes
    /// it holds when that is the change the whole RIB would make
    /// ([`one_change_fits`]); anything else reads the RIB whole first.
    pub(super) fn changer_for(&self, id: RouteId, route: Option<&Route>) -> Result<Changing<'_>, RouteError> {
        let rib = self.locked_keeping(true, |rib, scope| scope == id.1 && one_change_fits(rib, id, route))?;
        self.begin_change()?;
        Ok(rib)
    }

    /// Reads the whole RIB now if it holds only the routes of one change:
    /// before what needs the state beside the pins while it is still there
    /// (a detach removes it).
    pub(crate) fn read_all(&self) -> Result<(), PinError> {
        self.read_whole_or(&mut self.rib_lock()).map_err(|(e, _)| e)
    }

    /// The prefix whose routes alone the RIB holds, if it holds only those.
    pub(super) fn part_of(&self) -> Option<IpNetwork> {
        self.whole.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref().map(|(scope, _)| *scope)
    }

    /// Reads the rest of a RIB that holds only the routes of one change,
    /// with its store (whose commits are in it).
    pub(super) fn read_whole(&self, rib: &mut Rib) -> Result<(), RouteError> {
        self.read_whole_or(rib).map_err(|(e, saved)| match saved {
            true => RouteError::Unreadable(Box::new(e)),
            false => RouteError::NotSaved(Box::new(e)),
        })
    }

    /// [`Fib::read_whole`]; its error says whether this RIB's changes are saved.
    pub(super) fn read_whole_or(&self, rib: &mut Rib) -> Result<(), (PinError, bool)> {
        let mut whole = self.whole.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((scope, load)) = whole.as_ref() else { return Ok(()) };
        let started = std::time::Instant::now();
        // A change this RIB holds and the store does not (its save failed)
        // is saved first: read back without it, it would be lost, and the
        // ids it holds handed out again.
        if let Some(store) = self.store_lock().as_mut() {
            store.commit(rib).map_err(|e| (e, false))?;
        }
        let (read, store) = load().map_err(|e| (e, true))?;
        log::debug!("RIB read whole after a change of {scope} alone, in {:?}", started.elapsed());
        *rib = read;
        *self.store_lock() = store;
        *whole = None;
        Ok(())
    }

    /// Reads a lazily adopted reader's RIB, the first time it is needed.
    pub(super) fn read_pending(&self, rib: &mut Rib) {
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

    /// The RIB, locked and read whole (for what reads it).
    pub(super) fn writer(&self) -> MutexGuard<'_, Rib> {
        let mut rib = self.rib_lock();
        if let Err(e) = self.read_whole(&mut rib) {
            // What reads goes on with what it has and says so; a change is refused (locked_to_check).
            log::error!("{e}: the routes shown are incomplete");
        }
        self.read_pending(&mut rib);
        rib
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
    pub(super) fn read_small_sets<T>(&self, f: impl FnOnce(&Rib) -> T) -> T {
        if self.part_of().is_some() {
            return f(&self.rib_lock());
        }
        self.read(f)
    }

    /// Makes a change of route `id` (to `route`; `None`: its removal) with
    /// `change`, on the few routes a writer adopted for it holds where that
    /// is enough; a refusal there (a table full, or a kernel refusal: the
    /// ids or room it lacks may be known only to the whole RIB) is tried
    /// again on the whole RIB, whose answer stands.
    pub(super) fn change_one<T>(
        &self,
        id: RouteId,
        route: Option<&Route>,
        change: impl Fn(&mut Changing<'_>) -> Result<T, RouteError>,
    ) -> Result<T, RouteError> {
        let mut rib = self.changer_for(id, route)?;
        match change(&mut rib) {
            Err(e @ (RouteError::TableFull { .. } | RouteError::Map(_))) if self.part_of().is_some() => {
                drop(rib);
                log::debug!("{e}: tried again on the whole RIB");
                change(&mut self.changer()?)
            }
            result => result,
        }
    }
}
