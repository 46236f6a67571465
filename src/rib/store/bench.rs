//! The store driven without a dataplane, for `benches/store.rs`: the same
//! snapshot, journal and commit path a pinned encapsulator uses, on a RIB
//! of plain routes, and the store's record encoding for the candidates it
//! is compared with.

use std::path::Path;

use super::codec::{Reader, Writer};
use super::{Attached, LoadConfig, Store};
use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, TtlMode};
use crate::domain::route::{Route, Table};
use crate::error::PinError;
use crate::rib::alloc::CounterSlots;
use crate::rib::Rib;

/// A RIB and, once written, its store.
#[derive(Debug)]
pub struct StoreBench {
    store: Option<Store>,
    rib: Rib,
}

fn config(routes: u32) -> LoadConfig {
    LoadConfig {
        ttl: TtlMode::default(),
        mtu: MtuPolicy::default(),
        max_routes_v4: routes,
        max_routes_v6: routes,
        max_policies: 65_536,
        max_counted_routes: routes.saturating_add(2),
        lookup: Ipv4Lookup::Dir24_8,
        dir_groups: 8192,
        route_values: 131_072,
        route_cache: 0,
        route_cache_min_routes: 0,
        label_on_link: false,
        skip_stages: 0,
    }
}

impl StoreBench {
    /// A RIB of `routes` (main table, each with its own counter slot, as a
    /// counted route has), in memory only.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> StoreBench {
        let mut rib = Rib::new(u32::MAX);
        for route in routes {
            let id = (Table::Main, route.prefix);
            let slot = rib.counter_slots.take().unwrap_or(0);
            rib.counters_of.insert(id, CounterSlots { route: slot, lists: vec![] });
            rib.routes.insert(id, route);
        }
        let _ = rib.take_changes();
        StoreBench { store: None, rib }
    }

    /// Writes the RIB as a new store in `dir` (its first snapshot).
    ///
    /// # Errors
    /// [`PinError::Io`] when the files cannot be written.
    pub fn write(&mut self, dir: &Path) -> Result<(), PinError> {
        let n = u32::try_from(self.rib.routes.len()).unwrap_or(u32::MAX);
        let attached = Attached { iface: "bench0".into(), ifindex: 1, mode: AttachedMode::Generic };
        self.store = Some(Store::create(dir, &mut self.rib, config(n), attached)?);
        Ok(())
    }

    /// Sets `routes` as one change made durable: the INTENT, the RIB
    /// changed, the COMMIT synced (what a `set` or an apply does around its
    /// kernel writes).
    ///
    /// # Errors
    /// [`PinError::Io`] when the journal cannot be written, or before
    /// [`StoreBench::write`].
    pub fn set(&mut self, routes: &[Route]) -> Result<(), PinError> {
        let Some(store) = self.store.as_mut() else {
            let source = std::io::Error::other("StoreBench::write first");
            return Err(PinError::Io { op: "journal", path: Path::new("").to_owned(), source });
        };
        store.begin()?;
        for route in routes {
            let id = (Table::Main, route.prefix);
            if !self.rib.counters_of.contains_key(&id) {
                let slot = self.rib.counter_slots.take().unwrap_or(0);
                self.rib.counters_of.insert(id, CounterSlots { route: slot, lists: vec![] });
            }
            self.rib.routes.insert(id, route.clone());
        }
        store.commit(&mut self.rib)
    }

    /// Reads the store in `dir` back (snapshot, journal, allocators) and
    /// returns how many routes it holds.
    ///
    /// # Errors
    /// [`PinError::Io`] when a file cannot be read, [`PinError::Corrupt`]
    /// when its content cannot be restored.
    pub fn load(dir: &Path) -> Result<usize, PinError> {
        match Store::open(dir, false) {
            Ok((recovered, _)) => Ok(recovered.rib.routes.len()),
            Err(super::OpenError::Pin(e)) => Err(e),
            Err(super::OpenError::Unreadable(e)) => {
                Err(PinError::Corrupt { path: dir.to_owned(), reason: format!("{e:?}") })
            }
        }
    }

    /// A main-table route as this store encodes it: the key (table and
    /// prefix) and the value (the route and its counter slot).
    pub fn encode(route: &Route, counter_slot: u32) -> (Vec<u8>, Vec<u8>) {
        let (mut key, mut value) = (Writer::default(), Writer::default());
        key.table(Table::Main);
        key.prefix(&route.prefix);
        value.route_body(route);
        value.counters(&CounterSlots { route: counter_slot, lists: vec![] });
        (key.buf, value.buf)
    }

    /// The inverse of [`StoreBench::encode`]; `None` for bytes it did not write.
    pub fn decode(key: &[u8], value: &[u8]) -> Option<(Route, u32)> {
        let mut k = Reader::new(key);
        let _table = k.table().ok()?;
        let prefix = k.prefix().ok()?;
        let mut v = Reader::new(value);
        let route = v.route_body(prefix).ok()?;
        Some((route, v.counters().ok()?.route))
    }
}
