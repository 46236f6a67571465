//! The loaded dataplane: the XDP program and its maps, held by fd so that it
//! can be shared between threads and outlive the libbpf object it came from.

use std::collections::BTreeSet;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, Once};

use ipnetwork::IpNetwork;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, MapCore, MapFlags, MapHandle, PrintLevel};

use crate::abi::{self, encap, types};
use crate::config::{MtuPolicy, TtlMode};
use crate::error::{LoadError, MapError, RouteError};
use crate::prefix::{self, RouteKey};
use crate::route::Route;
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
}

pub(crate) struct Dataplane {
    prog: OwnedFd,
    routes_v4: MapHandle,
    routes_v6: MapHandle,
    counters: MapHandle,
    config: LoadConfig,
    /// The host addresses installed as LOCAL entries, guarded together with
    /// every write to the tries so a route update cannot race a refresh.
    local: Mutex<BTreeSet<IpAddr>>,
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
        if config.max_routes_v4 == 0 || config.max_routes_v6 == 0 {
            return Err(LoadError::Config("route table capacities must be at least 1"));
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
        let skel = open.load().map_err(|source| match source.kind() {
            ErrorKind::PermissionDenied => LoadError::Privileges(crate::privileges::MissingCapabilities(vec![
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_NET_ADMIN",
            ])),
            _ => LoadError::Kernel { step: "loading (verifier)", source },
        })?;

        let handle = |map: &libbpf_rs::Map<'_>, step| MapHandle::try_from(map).map_err(kernel(step));
        Ok(Dataplane {
            prog: skel
                .progs
                .xdp_encap
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| LoadError::Kernel { step: "duplicating the program fd", source: e.into() })?,
            routes_v4: handle(&skel.maps.routes_v4, "opening routes_v4")?,
            routes_v6: handle(&skel.maps.routes_v6, "opening routes_v6")?,
            counters: handle(&skel.maps.counters, "opening counters")?,
            config,
            local: Mutex::new(BTreeSet::new()),
        })
    }

    pub(crate) fn prog(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    fn routes_map(&self, prefix: &IpNetwork) -> (&MapHandle, &'static str, &'static str, u32) {
        match prefix {
            IpNetwork::V4(_) => (&self.routes_v4, "routes_v4", "IPv4", self.config.max_routes_v4),
            IpNetwork::V6(_) => (&self.routes_v6, "routes_v6", "IPv6", self.config.max_routes_v6),
        }
    }

    fn writer(&self) -> MutexGuard<'_, BTreeSet<IpAddr>> {
        // The set is only replaced whole after the kernel accepted the change.
        self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds or atomically replaces one route (a single map update: a packet
    /// sees the old stack or the new one, never a mix).
    pub(crate) fn set_route(&self, route: &Route) -> Result<(), RouteError> {
        prefix::check(route.prefix)?;
        let local = self.writer();
        if route.prefix.prefix() == max_len(&route.prefix) && local.contains(&route.prefix.ip()) {
            return Err(RouteError::LocalAddress { prefix: route.prefix });
        }
        let (map, name, family, capacity) = self.routes_map(&route.prefix);
        let value = route.encode_value();
        map.update(RouteKey::new(route.prefix).bytes(), abi::bytes_of(&value), MapFlags::ANY).map_err(|source| {
            match source.kind() {
                ErrorKind::TooBig | ErrorKind::OutOfMemory => RouteError::TableFull { family, capacity },
                _ => RouteError::Map(MapError { map: name, op: "update", source }),
            }
        })
    }

    /// Removes a route; `false` when there was none for exactly that prefix
    /// (a host address is not a route).
    pub(crate) fn remove(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        let prefix = prefix::check(prefix)?;
        let local = self.writer();
        if prefix.prefix() == max_len(&prefix) && local.contains(&prefix.ip()) {
            return Ok(false);
        }
        let (map, name, _, _) = self.routes_map(&prefix);
        match map.delete(RouteKey::new(prefix).bytes()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(source) => Err(RouteError::Map(MapError { map: name, op: "delete", source })),
        }
    }

    /// Every programmed route, IPv4 then IPv6, read back from the kernel.
    pub(crate) fn routes(&self) -> Result<Vec<Route>, MapError> {
        let mut out = Vec::new();
        type DecodeKey = fn(&[u8]) -> Option<IpNetwork>;
        let tables: [(&MapHandle, &'static str, DecodeKey); 2] = [
            (&self.routes_v4, "routes_v4", RouteKey::from_v4_bytes),
            (&self.routes_v6, "routes_v6", RouteKey::from_v6_bytes),
        ];
        for (map, name, decode_key) in tables {
            for key in map.keys() {
                // A route deleted between keys() and lookup() is simply gone.
                let Some(value) =
                    map.lookup(&key, MapFlags::ANY).map_err(|source| MapError { map: name, op: "lookup", source })?
                else {
                    continue;
                };
                let decoded = decode_key(&key).zip(abi::from_bytes::<types::route_value>(&value));
                match decoded {
                    Some((_, v)) if v.flags == abi::ROUTE_LOCAL => {}
                    Some((prefix, v)) if Route::decode_value(prefix, &v).is_some() => {
                        out.extend(Route::decode_value(prefix, &v));
                    }
                    _ => log::warn!("{name}: skipping an entry this library did not write"),
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn stats(&self) -> Result<Stats, MapError> {
        let mut stats = Stats::default();
        for index in 0..abi::COUNTERS {
            let per_cpu = self
                .counters
                .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
                .map_err(|source| MapError { map: "counters", op: "lookup", source })?
                .unwrap_or_default();
            for bytes in per_cpu {
                if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                    stats.accumulate(index, Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        Ok(stats)
    }

    /// Makes the LOCAL host entries exactly `wanted`: new addresses are added
    /// before stale ones are removed, so an address that stays local is never
    /// briefly labelled. A host address takes precedence over a route for the
    /// same /32 or /128, which it replaces.
    pub(crate) fn sync_local(&self, wanted: &BTreeSet<IpAddr>) -> Result<usize, RouteError> {
        let mut installed = self.writer();
        let local = Route::local_value();
        for addr in wanted.difference(&installed.clone()) {
            let host = IpNetwork::from(*addr);
            let (map, name, family, capacity) = self.routes_map(&host);
            let key = RouteKey::new(host);
            log::debug!("host address {addr}: never labelled");
            map.update(key.bytes(), abi::bytes_of(&local), MapFlags::ANY).map_err(|source| match source.kind() {
                ErrorKind::TooBig | ErrorKind::OutOfMemory => RouteError::TableFull { family, capacity },
                _ => RouteError::Map(MapError { map: name, op: "update", source }),
            })?;
            installed.insert(*addr);
        }
        for addr in installed.difference(wanted).copied().collect::<Vec<_>>() {
            let host = IpNetwork::from(addr);
            let (map, name, _, _) = self.routes_map(&host);
            match map.delete(RouteKey::new(host).bytes()) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => return Err(RouteError::Map(MapError { map: name, op: "delete", source })),
            }
            installed.remove(&addr);
        }
        Ok(installed.len())
    }
}

fn max_len(prefix: &IpNetwork) -> u8 {
    if prefix.is_ipv4() {
        32
    } else {
        128
    }
}
