//! The host's own addresses: never labelled, entries of their own in the
//! main tables, a route for the same /32 or /128 set aside while they last.

use super::*;

impl Fib {
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
    pub(super) fn rewrite_route(&self, rib: &Rib, host: IpNetwork) {
        let written = match encode::installed_value(rib, &(Table::Main, host)) {
            Some(value) => self.write(Table::Main, &host, &value),
            None => self.delete_host(host),
        };
        if let Err(e) = written {
            log::warn!("rolling back the host entry {host} failed: {e} (verify() reports it)");
        }
    }

    pub(super) fn delete_host(&self, host: IpNetwork) -> Result<(), RouteError> {
        self.routes_map(Table::Main, &host).0.delete(RouteKey::new(host).bytes())?;
        Ok(())
    }

    /// Replaces a host entry by the route it hid (through the apply's
    /// pipeline, keeping the route's origin), or deletes it.
    pub(super) fn unshadow(&self, rib: &mut Rib, host: IpNetwork, hidden: Option<Route>) {
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
