//! The loaded dataplane: the XDP program and its maps, held by fd so that it
//! can be shared between threads and outlive the libbpf object it came from.

use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Instant;

use ipnetwork::IpNetwork;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, PrintLevel};
use nix::errno::Errno;

use crate::abi::{self, encap, types};
use crate::bookkeeping::Tables;
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

/// Per-route counters: what the route labelled, in total and per segment list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteCounters {
    /// False when the route got no counter slot (more routes and lists than
    /// `EncapsulatorBuilder::max_counted_routes`): its counts then read zero.
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
        open.maps.sources_v4.set_max_entries(config.max_routes_v4).map_err(kernel("sizing sources_v4"))?;
        open.maps.sources_v6.set_max_entries(config.max_routes_v6).map_err(kernel("sizing sources_v6"))?;
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
            tables: Mutex::new(Tables::new(config.max_counted_routes)),
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
    /// the new one, never a mix.
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

    /// Writes a route. A policy keeps its id while its route stays a policy
    /// route and is updated in place (the hash map swaps the value whole), so a
    /// packet always finds the policy its route names; a policy no longer named
    /// is deleted only after a grace period.
    fn install(&self, tables: &mut Tables, table: Table, route: &Route) -> Result<(), RouteError> {
        self.bury_policies(tables);
        let key = (table, route.prefix);
        let lists = if route.policy.is_plain() { 0 } else { route.policy.lists().len() };
        let (slots, fresh) = tables.counters_for(key, lists);
        let give_back = |tables: &mut Tables| fresh.iter().for_each(|s| tables.counter_slots.give_back(*s));
        for s in &fresh {
            // A reused slot still holds its last owner's counts.
            if let Err(e) = self.route_counters.zero_percpu(&s.to_ne_bytes()) {
                give_back(tables);
                return Err(e.into());
            }
        }
        let old_id = tables.policy_of.get(&key).copied();
        let new_id = match (lists, old_id) {
            (0, _) => None,
            (_, Some(id)) => Some(id),
            (_, None) => match tables.policy_ids.take() {
                Some(id) => Some(id),
                None => {
                    give_back(tables);
                    return Err(RouteError::TableFull { family: "policy", capacity: self.config.max_policies });
                }
            },
        };
        let (mut value, policy) = route.encode(new_id.unwrap_or(0));
        value.counter_id = slots.route;
        if let (Some(id), Some(mut p)) = (new_id, policy) {
            for (dst, src) in p.list_counter.iter_mut().zip(&slots.lists) {
                *dst = *src;
            }
            if let Err(e) = self.policies.update(&id.to_ne_bytes(), abi::bytes_of(p.as_ref())) {
                if old_id.is_none() {
                    tables.policy_ids.give_back(id);
                }
                give_back(tables);
                return Err(match e.errno {
                    Errno::E2BIG | Errno::ENOSPC => {
                        RouteError::TableFull { family: "policy", capacity: self.config.max_policies }
                    }
                    _ => RouteError::Map(e),
                });
            }
        }
        if let Err(e) = self.write(table, &route.prefix, &value) {
            if let (Some(id), None) = (new_id, old_id) {
                self.forget_policy(tables, id);
            }
            give_back(tables);
            return Err(e);
        }
        match new_id {
            Some(id) => {
                tables.policy_of.insert(key, id);
            }
            None => {
                if let Some(old) = tables.policy_of.remove(&key) {
                    tables.graveyard.push((old, Instant::now()));
                }
            }
        }
        tables.keep_counters(key, slots, lists);
        Ok(())
    }

    /// Deletes the policies whose grace period is over.
    fn bury_policies(&self, tables: &mut Tables) {
        for id in tables.expired_policies() {
            self.forget_policy(tables, id);
        }
    }

    /// Deletes a policy and frees its id.
    fn forget_policy(&self, tables: &mut Tables, id: u32) {
        match self.policies.delete(&id.to_ne_bytes()) {
            Ok(_) => tables.policy_ids.give_back(id),
            // Leaked, not reused: the table keeps working.
            Err(e) => log::warn!("{e} (policy {id} stays allocated)"),
        }
    }

    /// Removes a route; `false` when there was none for exactly that prefix.
    /// A route set aside by a host address is removed for good.
    pub(crate) fn remove(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut tables = self.writer();
        let key = (table, prefix);
        if table == Table::Main && prefix.prefix() == max_len(&prefix) && tables.local.contains(&prefix.ip()) {
            let hidden = tables.shadowed.remove(&prefix).is_some();
            tables.drop_counters(&key);
            return Ok(hidden);
        }
        let removed = self.routes_map(table, &prefix).0.delete(RouteKey::in_table(table.id(), prefix).bytes())?;
        if let Some(id) = tables.policy_of.remove(&key) {
            tables.graveyard.push((id, Instant::now()));
        }
        tables.drop_counters(&key);
        self.bury_policies(&mut tables);
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

    /// Points packets from `prefix` at an alternate table. The program is
    /// told to look at sources only once the source is in place, and the
    /// source is taken out again if that fails.
    pub(crate) fn set_source(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut tables = self.writer();
        let (map, capacity) = self.sources_map(&prefix);
        let key = RouteKey::new(prefix);
        let value = types::source_value { table: table.id() };
        map.update(key.bytes(), abi::bytes_of(&value)).map_err(|e| match e.errno {
            Errno::E2BIG | Errno::ENOSPC => RouteError::TableFull { family: "source", capacity },
            _ => RouteError::Map(e),
        })?;
        let previous = tables.sources.insert(prefix, table);
        if let Err(e) = self.write_settings(&tables) {
            match previous {
                Some(old) => {
                    let value = types::source_value { table: old.id() };
                    let _ = map.update(key.bytes(), abi::bytes_of(&value));
                    tables.sources.insert(prefix, old);
                }
                None => {
                    let _ = map.delete(key.bytes());
                    tables.sources.remove(&prefix);
                }
            }
            return Err(e.into());
        }
        Ok(())
    }

    pub(crate) fn remove_source(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let mut tables = self.writer();
        let removed = self.sources_map(&prefix).0.delete(RouteKey::new(prefix).bytes())?;
        tables.sources.remove(&prefix);
        self.write_settings(&tables)?;
        Ok(removed)
    }

    fn sources_map(&self, prefix: &IpNetwork) -> (&BpfMap, u32) {
        if prefix.is_ipv4() {
            (&self.sources_v4, self.config.max_routes_v4)
        } else {
            (&self.sources_v6, self.config.max_routes_v6)
        }
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
        let labelled = self.slot_counter(value.counter_id)?;
        let mut counted = value.counter_id != 0;
        let lists = match self.policy(&value)? {
            Some(p) => {
                let slots: Vec<u32> = p.list_counter.iter().take(usize::from(p.n_lists)).copied().collect();
                counted &= slots.iter().all(|s| *s != 0);
                slots.into_iter().map(|s| self.slot_counter(s)).collect::<Result<Vec<_>, _>>()?
            }
            None => vec![labelled],
        };
        Ok(Some(RouteCounters { counted, labelled, lists }))
    }

    /// One counter slot summed over CPUs; zero for slot 0 (not counted).
    fn slot_counter(&self, slot: u32) -> Result<Counter, MapError> {
        let mut total = Counter::default();
        if slot == 0 {
            return Ok(total);
        }
        for bytes in self.route_counters.lookup_percpu(&slot.to_ne_bytes())? {
            if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                total = total.plus(Counter { packets: v.packets, bytes: v.bytes });
            }
        }
        Ok(total)
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
            // An entry that cannot be read is not overwritten: nothing is lost unseen.
            let hidden = match self.exact(Table::Main, &host).and_then(|v| match v {
                Some(v) => self.policy(&v).map(|p| Route::decode(host, &v, p.as_deref())),
                None => Ok(None),
            }) {
                Ok(hidden) => hidden,
                Err(e) => {
                    for (host, hidden) in added.into_iter().rev() {
                        self.unshadow(&mut tables, host, hidden);
                    }
                    return Err(e.into());
                }
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
                    tables.graveyard.push((id, Instant::now()));
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
