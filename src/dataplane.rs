//! The loaded dataplane: the XDP program and its maps, held by fd so that it
//! can be shared between threads and outlive the libbpf object it came from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, Once};

use ipnetwork::IpNetwork;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, PrintLevel};
use nix::errno::Errno;

use crate::abi::{self, encap, types};
use crate::config::{MtuPolicy, TtlMode};
use crate::error::{LoadError, MapError, RouteError};
use crate::label::DscpMap;
use crate::map::BpfMap;
use crate::prefix::{self, RouteKey};
use crate::route::{Route, Table};
use crate::stats::{Counter, Stats};

/// libbpf writes to stderr unless told otherwise; the library never prints.
pub(crate) fn route_libbpf_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        fn forward(level: PrintLevel, msg: String) {
            let msg = msg.trim_end();
            match level {
                PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
                PrintLevel::Info => log::info!(target: "libbpf", "{msg}"),
                PrintLevel::Debug => log::debug!(target: "libbpf", "{msg}"),
            }
        }
        libbpf_rs::set_print(Some((PrintLevel::Debug, forward)));
    });
}

/// Load-time settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadConfig {
    pub ttl: TtlMode,
    pub mtu: MtuPolicy,
    pub max_routes_v4: u32,
    pub max_routes_v6: u32,
    pub max_policies: u32,
    pub max_counted_routes: u32,
}

pub(crate) struct Dataplane {
    prog: OwnedFd,
    routes_v4: BpfMap,
    routes_v6: BpfMap,
    policies: BpfMap,
    alt_routes_v4: BpfMap,
    alt_routes_v6: BpfMap,
    sources_v4: BpfMap,
    sources_v6: BpfMap,
    settings: BpfMap,
    dscp_tc: BpfMap,
    route_counters: BpfMap,
    counters: BpfMap,
    config: LoadConfig,
    /// Bookkeeping of what the tables hold, guarded together with every write
    /// to them so that writers never interleave.
    tables: Mutex<Tables>,
}

/// What user space must remember about the tables (the kernel holds the rest).
#[derive(Debug, Default)]
struct Tables {
    /// Host addresses installed as LOCAL entries.
    local: BTreeSet<IpAddr>,
    /// The policy id each policy route points to.
    policy_of: HashMap<(Table, IpNetwork), u32>,
    /// Source prefixes and the alternate table each selects.
    sources: BTreeMap<IpNetwork, Table>,
    /// Routes hidden by a host address that took their /32 or /128; restored
    /// when the address goes away.
    shadowed: HashMap<IpNetwork, Route>,
    /// The last policy id handed out.
    last_id: u32,
    /// Each route's slot in route_counters, kept across replacements.
    counter_of: HashMap<(Table, IpNetwork), u32>,
    /// Slots freed by removed routes (zeroed), and the next never used.
    free_counters: Vec<u32>,
    next_counter: u32,
}

impl Tables {
    /// The route's counter slot: its own if it has one, else a free one; 0
    /// (not counted) when all `capacity` slots are taken.
    fn counter_for(&mut self, key: (Table, IpNetwork), capacity: u32) -> u32 {
        if let Some(id) = self.counter_of.get(&key) {
            return *id;
        }
        let id = match self.free_counters.pop() {
            Some(id) => id,
            None if self.next_counter + 1 < capacity => {
                self.next_counter += 1;
                self.next_counter
            }
            None => return 0,
        };
        self.counter_of.insert(key, id);
        id
    }

    /// A fresh policy id. Ids are not reused until the u32 space wraps, so a
    /// packet still holding a just-replaced route never finds another route's
    /// policy under the old id.
    fn allocate_id(&mut self) -> u32 {
        loop {
            self.last_id = self.last_id.wrapping_add(1).max(1);
            if !self.policy_of.values().any(|id| *id == self.last_id) {
                return self.last_id;
            }
        }
    }
}

/// Per-route counters: what the route labelled, in total and per segment list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteCounters {
    /// False when the route got no counter slot (more routes than
    /// `EncapsulatorBuilder::max_counted_routes`): `labelled` is then zero.
    pub counted: bool,
    /// Everything the route labelled.
    pub labelled: Counter,
    /// Per segment list, in the policy's order (one entry for a plain route).
    pub lists: Vec<Counter>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane").field("config", &self.config).finish_non_exhaustive()
    }
}

fn kernel(step: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Kernel { step, source }
}

impl Dataplane {
    pub(crate) fn load(config: LoadConfig) -> Result<Dataplane, LoadError> {
        if let TtlMode::Fixed(0) = config.ttl {
            return Err(LoadError::Config("a fixed TTL of 0 expires at the first router; use 1..=255"));
        }
        if config.max_routes_v4 == 0 || config.max_routes_v6 == 0 || config.max_policies == 0 {
            return Err(LoadError::Config("route and policy table capacities must be at least 1"));
        }
        if let Some(missing) = crate::privileges::missing() {
            return Err(LoadError::Privileges(missing));
        }
        route_libbpf_log();

        let mut storage = MaybeUninit::uninit();
        let mut open = encap::EncapSkelBuilder::default().open(&mut storage).map_err(kernel("opening the object"))?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or(LoadError::Config("the object has no .rodata (build problem)"))?;
        (rodata.ttl_mode, rodata.fixed_ttl) = match config.ttl {
            TtlMode::Copy => (types::encap_ttl_mode::ENCAP_TTL_COPY, 0),
            TtlMode::Fixed(ttl) => (types::encap_ttl_mode::ENCAP_TTL_FIXED, ttl),
        };
        rodata.mtu_policy = match config.mtu {
            MtuPolicy::Drop => types::encap_mtu_policy::ENCAP_MTU_DROP,
            MtuPolicy::Pass => types::encap_mtu_policy::ENCAP_MTU_PASS,
        };
        open.maps.routes_v4.set_max_entries(config.max_routes_v4).map_err(kernel("sizing routes_v4"))?;
        open.maps.routes_v6.set_max_entries(config.max_routes_v6).map_err(kernel("sizing routes_v6"))?;
        open.maps.policies.set_max_entries(config.max_policies).map_err(kernel("sizing policies"))?;
        open.maps
            .route_counters
            .set_max_entries(config.max_counted_routes.max(1))
            .map_err(kernel("sizing route_counters"))?;
        open.maps.alt_routes_v4.set_max_entries(config.max_routes_v4).map_err(kernel("sizing alt_routes_v4"))?;
        open.maps.alt_routes_v6.set_max_entries(config.max_routes_v6).map_err(kernel("sizing alt_routes_v6"))?;
        let skel = open.load().map_err(|source| match source.kind() {
            ErrorKind::PermissionDenied => LoadError::Privileges(crate::privileges::MissingCapabilities(vec![
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_NET_ADMIN",
            ])),
            _ => LoadError::Kernel { step: "loading (verifier)", source },
        })?;

        let handle = |map: &libbpf_rs::Map<'_>, name| {
            BpfMap::new(map, name).map_err(|e| LoadError::Kernel {
                step: "opening a map",
                source: libbpf_rs::Error::from_raw_os_error(e.errno as i32),
            })
        };
        let dataplane = Dataplane {
            prog: skel
                .progs
                .xdp_encap
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| LoadError::Kernel { step: "duplicating the program fd", source: e.into() })?,
            routes_v4: handle(&skel.maps.routes_v4, "routes_v4")?,
            routes_v6: handle(&skel.maps.routes_v6, "routes_v6")?,
            policies: handle(&skel.maps.policies, "policies")?,
            dscp_tc: handle(&skel.maps.dscp_tc, "dscp_tc")?,
            route_counters: handle(&skel.maps.route_counters, "route_counters")?,
            alt_routes_v4: handle(&skel.maps.alt_routes_v4, "alt_routes_v4")?,
            alt_routes_v6: handle(&skel.maps.alt_routes_v6, "alt_routes_v6")?,
            sources_v4: handle(&skel.maps.sources_v4, "sources_v4")?,
            sources_v6: handle(&skel.maps.sources_v6, "sources_v6")?,
            settings: handle(&skel.maps.settings, "settings")?,
            counters: handle(&skel.maps.counters, "counters")?,
            config,
            tables: Mutex::new(Tables::default()),
        };
        dataplane.set_dscp_map(&DscpMap::default()).map_err(|e| LoadError::Kernel {
            step: "writing the DSCP table",
            source: libbpf_rs::Error::from_raw_os_error(e.errno as i32),
        })?;
        Ok(dataplane)
    }

    /// Replaces the DSCP -> TC table (one map update: packets see the old or the new).
    pub(crate) fn set_dscp_map(&self, map: &DscpMap) -> Result<(), MapError> {
        let value = types::dscp_map { tc: map.values() };
        self.dscp_tc.update(&0u32.to_ne_bytes(), abi::bytes_of(&value))
    }

    pub(crate) fn dscp_map(&self) -> Result<DscpMap, MapError> {
        let bytes = self.dscp_tc.lookup(&0u32.to_ne_bytes())?;
        let value = bytes.and_then(|b| abi::from_bytes::<types::dscp_map>(&b));
        Ok(value.and_then(|v| DscpMap::new(v.tc).ok()).unwrap_or_default())
    }

    pub(crate) fn prog(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    fn routes_map(&self, table: Table, prefix: &IpNetwork) -> (&BpfMap, &'static str, u32) {
        match (table, prefix) {
            (Table::Main, IpNetwork::V4(_)) => (&self.routes_v4, "IPv4", self.config.max_routes_v4),
            (Table::Main, IpNetwork::V6(_)) => (&self.routes_v6, "IPv6", self.config.max_routes_v6),
            (_, IpNetwork::V4(_)) => (&self.alt_routes_v4, "alternate IPv4", self.config.max_routes_v4),
            (_, IpNetwork::V6(_)) => (&self.alt_routes_v6, "alternate IPv6", self.config.max_routes_v6),
        }
    }

    /// Writes one trie entry; a full trie (E2BIG or ENOSPC, by kernel version) is `TableFull`.
    fn write(&self, table: Table, prefix: &IpNetwork, value: &types::route_value) -> Result<(), RouteError> {
        let (map, family, capacity) = self.routes_map(table, prefix);
        map.update(RouteKey::in_table(table.id(), *prefix).bytes(), abi::bytes_of(value)).map_err(|e| match e.errno {
            Errno::E2BIG | Errno::ENOSPC => RouteError::TableFull { family, capacity },
            _ => RouteError::Map(e),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Tables> {
        // The bookkeeping is updated only after the kernel accepted a change.
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds or atomically replaces one route: a packet sees the old route or
    /// the new one, never a mix. A policy is written under a fresh id before the
    /// route that names it, and the old policy removed after.
    pub(crate) fn set_route(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        prefix::check(route.prefix)?;
        let mut tables = self.writer();
        if table == Table::Main
            && route.prefix.prefix() == max_len(&route.prefix)
            && tables.local.contains(&route.prefix.ip())
        {
            return Err(RouteError::LocalAddress { prefix: route.prefix });
        }
        self.install(&mut tables, table, route)
    }

    fn install(&self, tables: &mut Tables, table: Table, route: &Route) -> Result<(), RouteError> {
        let id = if route.policy.is_plain() { 0 } else { tables.allocate_id() };
        let had_counter = tables.counter_of.contains_key(&(table, route.prefix));
        let counter = tables.counter_for((table, route.prefix), self.config.max_counted_routes);
        let (mut value, policy) = route.encode(id);
        value.counter_id = counter;
        let release = |tables: &mut Tables| {
            if !had_counter {
                self.release_counter(tables, (table, route.prefix));
            }
        };
        if let Some(p) = &policy {
            if let Err(e) = self.policies.update(&id.to_ne_bytes(), abi::bytes_of(p.as_ref())) {
                release(tables);
                return Err(match e.errno {
                    Errno::E2BIG | Errno::ENOSPC => {
                        RouteError::TableFull { family: "policy", capacity: self.config.max_policies }
                    }
                    _ => RouteError::Map(e),
                });
            }
        }
        if let Err(e) = self.write(table, &route.prefix, &value) {
            if policy.is_some() {
                self.forget_policy(id);
            }
            release(tables);
            return Err(e);
        }
        let old = match policy {
            Some(_) => tables.policy_of.insert((table, route.prefix), id),
            None => tables.policy_of.remove(&(table, route.prefix)),
        };
        if let Some(old) = old {
            self.forget_policy(old);
        }
        Ok(())
    }

    /// Zeroes a removed route's counter slot and frees it for another route.
    fn release_counter(&self, tables: &mut Tables, key: (Table, IpNetwork)) {
        let Some(id) = tables.counter_of.remove(&key) else { return };
        match self.route_counters.zero_percpu(&id.to_ne_bytes()) {
            Ok(()) => tables.free_counters.push(id),
            // Not reused: its old counts must not leak into another route.
            Err(e) => log::warn!("{e} (counter slot {id} retired)"),
        }
    }

    /// Deletes a policy no route names any more.
    fn forget_policy(&self, id: u32) {
        if let Err(e) = self.policies.delete(&id.to_ne_bytes()) {
            // Leaked, not reused: the table keeps working.
            log::warn!("{e} (policy {id} stays allocated)");
        }
    }

    /// Removes a route; `false` when there was none for exactly that prefix
    /// (a host address is not a route).
    pub(crate) fn remove(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut tables = self.writer();
        if table == Table::Main && prefix.prefix() == max_len(&prefix) && tables.local.contains(&prefix.ip()) {
            return Ok(false);
        }
        let removed = self.routes_map(table, &prefix).0.delete(RouteKey::in_table(table.id(), prefix).bytes())?;
        if let Some(id) = tables.policy_of.remove(&(table, prefix)) {
            self.forget_policy(id);
        }
        self.release_counter(&mut tables, (table, prefix));
        Ok(removed)
    }

    /// The route value stored for exactly `prefix`, if any (an LPM lookup
    /// answers with the longest covering entry, so the stored length is checked).
    fn exact(&self, table: Table, prefix: &IpNetwork) -> Result<Option<types::route_value>, MapError> {
        let value = self.routes_map(table, prefix).0.lookup(RouteKey::in_table(table.id(), *prefix).bytes())?;
        Ok(value
            .and_then(|v| abi::from_bytes::<types::route_value>(&v))
            .filter(|v| v.prefixlen == prefix.prefix() && v.flags & abi::ROUTE_LOCAL == 0))
    }

    fn policy(&self, value: &types::route_value) -> Result<Option<Box<types::policy_value>>, MapError> {
        if value.flags & abi::ROUTE_POLICY == 0 {
            return Ok(None);
        }
        let bytes = self.policies.lookup(&value.policy_id.to_ne_bytes())?;
        Ok(bytes.and_then(|b| abi::from_bytes::<types::policy_value>(&b)).map(Box::new))
    }

    /// Every route of `table`, IPv4 then IPv6, read back from the kernel.
    pub(crate) fn routes(&self, table: Table) -> Result<Vec<Route>, MapError> {
        type DecodeKey = fn(&[u8]) -> Option<(u32, IpNetwork)>;
        let main_v4: DecodeKey = |k| RouteKey::from_v4_bytes(k).map(|p| (0, p));
        let main_v6: DecodeKey = |k| RouteKey::from_v6_bytes(k).map(|p| (0, p));
        let tries: [(&BpfMap, DecodeKey, u32); 2] = match table {
            Table::Main => [
                (&self.routes_v4, main_v4, self.config.max_routes_v4),
                (&self.routes_v6, main_v6, self.config.max_routes_v6),
            ],
            Table::Alternate(_) => [
                (&self.alt_routes_v4, RouteKey::from_alt_v4_bytes, self.config.max_routes_v4),
                (&self.alt_routes_v6, RouteKey::from_alt_v6_bytes, self.config.max_routes_v6),
            ],
        };
        let mut out = Vec::new();
        for (map, decode_key, capacity) in tries {
            // Each restart of the walk re-visits at most the whole table.
            for key in map.keys(4 * capacity as usize + 1024)? {
                let Some((id, prefix)) = decode_key(&key) else {
                    log::warn!("{}: skipping a key this library did not write", map.name());
                    continue;
                };
                if id != table.id() {
                    continue;
                }
                // A route deleted between keys() and lookup() is gone; the trie
                // then answers with a covering route, which the length check skips.
                let Some(v) = map.lookup(&key)?.and_then(|v| abi::from_bytes::<types::route_value>(&v)) else {
                    continue;
                };
                if v.prefixlen != prefix.prefix() || v.flags == abi::ROUTE_LOCAL {
                    continue;
                }
                match Route::decode(prefix, &v, self.policy(&v)?.as_deref()) {
                    Some(route) => out.push(route),
                    None => log::warn!("{}: skipping {prefix}, an entry this library did not write", map.name()),
                }
            }
        }
        Ok(out)
    }

    /// Points packets from `prefix` at an alternate table.
    pub(crate) fn set_source(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut tables = self.writer();
        let map = if prefix.is_ipv4() { &self.sources_v4 } else { &self.sources_v6 };
        let value = types::source_value { table: table.id() };
        map.update(RouteKey::new(prefix).bytes(), abi::bytes_of(&value)).map_err(|e| match e.errno {
            Errno::E2BIG | Errno::ENOSPC => {
                RouteError::TableFull { family: "source", capacity: self.config.max_routes_v6 }
            }
            _ => RouteError::Map(e),
        })?;
        tables.sources.insert(prefix, table);
        self.write_settings(&tables)?;
        Ok(())
    }

    pub(crate) fn remove_source(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut tables = self.writer();
        let map = if prefix.is_ipv4() { &self.sources_v4 } else { &self.sources_v6 };
        let removed = map.delete(RouteKey::new(prefix).bytes())?;
        tables.sources.remove(&prefix);
        self.write_settings(&tables)?;
        Ok(removed)
    }

    pub(crate) fn sources(&self) -> Vec<(IpNetwork, Table)> {
        self.writer().sources.iter().map(|(p, t)| (*p, *t)).collect()
    }

    /// Tells the program whether to look at sources at all (none: one lookup saved per packet).
    fn write_settings(&self, tables: &Tables) -> Result<(), MapError> {
        let value = types::settings { sources: tables.sources.len() as u32 };
        self.settings.update(&0u32.to_ne_bytes(), abi::bytes_of(&value))
    }

    /// What the route for exactly `prefix` labelled; `None` without such a route.
    pub(crate) fn route_counters(&self, table: Table, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        let prefix = prefix::check(prefix)?;
        let Some(value) = self.exact(table, &prefix)? else { return Ok(None) };
        let mut labelled = Counter::default();
        if value.counter_id != 0 {
            for bytes in self.route_counters.lookup_percpu(&value.counter_id.to_ne_bytes())? {
                if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                    labelled = labelled.plus(Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        let counter = |c: &types::shared_counter| Counter { packets: c.packets, bytes: c.bytes };
        let lists = match self.policy(&value)? {
            Some(p) => p.labelled.iter().take(usize::from(p.n_lists)).map(counter).collect(),
            None => vec![labelled],
        };
        Ok(Some(RouteCounters { counted: value.counter_id != 0, labelled, lists }))
    }

    pub(crate) fn stats(&self) -> Result<Stats, MapError> {
        let mut stats = Stats::default();
        for index in 0..abi::COUNTERS {
            for bytes in self.counters.lookup_percpu(&index.to_ne_bytes())? {
                if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                    stats.accumulate(index, Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        Ok(stats)
    }

    /// Makes the LOCAL host entries exactly `wanted`: new addresses are added
    /// before stale ones are removed, so an address that stays local is never
    /// briefly labelled. A route for the same /32 or /128 is set aside while
    /// the address is local and restored when it goes. On error nothing of
    /// this call stays applied.
    pub(crate) fn sync_local(&self, wanted: &BTreeSet<IpAddr>) -> Result<usize, RouteError> {
        let mut tables = self.writer();
        let adding: Vec<IpAddr> = wanted.difference(&tables.local).copied().collect();
        let removing: Vec<IpAddr> = tables.local.difference(wanted).copied().collect();
        let mut added: Vec<(IpNetwork, Option<Route>)> = Vec::new();
        for addr in adding {
            let host = IpNetwork::from(addr);
            let hidden = match self.exact(Table::Main, &host) {
                Ok(Some(v)) => self.policy(&v).ok().and_then(|p| Route::decode(host, &v, p.as_deref())),
                _ => None,
            };
            let mut local: types::route_value = abi::zeroed();
            local.flags = abi::ROUTE_LOCAL;
            local.prefixlen = host.prefix();
            if let Err(e) = self.write(Table::Main, &host, &local) {
                for (host, hidden) in added.into_iter().rev() {
                    self.unshadow(&mut tables, host, hidden);
                }
                return Err(e);
            }
            log::debug!("host address {addr}: never labelled");
            added.push((host, hidden));
        }
        for (host, hidden) in added {
            tables.local.insert(host.ip());
            if let Some(route) = hidden {
                log::info!("{host} is now a host address: its route is set aside until the address goes");
                if let Some(id) = tables.policy_of.remove(&(Table::Main, host)) {
                    self.forget_policy(id);
                }
                tables.shadowed.insert(host, route);
            }
        }
        for addr in removing {
            let host = IpNetwork::from(addr);
            let hidden = tables.shadowed.remove(&host);
            self.unshadow(&mut tables, host, hidden);
            tables.local.remove(&addr);
        }
        Ok(tables.local.len())
    }

    /// Replaces a host entry by the route it hid, or deletes it.
    fn unshadow(&self, tables: &mut Tables, host: IpNetwork, hidden: Option<Route>) {
        let result = match &hidden {
            Some(route) => self.install(tables, Table::Main, route),
            None => self
                .routes_map(Table::Main, &host)
                .0
                .delete(RouteKey::new(host).bytes())
                .map(|_| ())
                .map_err(RouteError::from),
        };
        if let Err(e) = result {
            log::warn!("restoring {host} after it stopped being a host address failed: {e}");
            if let Some(route) = hidden {
                tables.shadowed.insert(host, route);
            }
        }
    }
}

fn max_len(prefix: &IpNetwork) -> u8 {
    if prefix.is_ipv4() {
        32
    } else {
        128
    }
}
