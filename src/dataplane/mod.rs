//! Loaders: the encapsulator's program with its map set, opened from the
//! embedded object and sized, or loaded against maps that already exist
//! (pinned by an earlier process) so that a new program takes over a running
//! dataplane's tables.

pub(crate) mod decap;
pub(crate) mod pins;

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::ErrorKind;
use nix::errno::Errno;

use crate::abi::{encap, types};
use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, TtlMode};
use crate::error::{LoadError, MapError};
use crate::rib::store::LoadConfig;
use crate::sys::map::BpfMap;
use crate::sys::{bpffs, libbpf_log, privileges};

/// Declares the encapsulator's map set once: the struct, and how it is taken
/// from a loaded skeleton, handed to a program being loaded, pinned and
/// adopted from pins. Names are the maps' names in the object and their pin
/// file names.
macro_rules! map_set {
    ($($map:ident),* $(,)?) => {
        /// The encapsulator's maps, each by its own fd.
        #[derive(Debug)]
        pub(crate) struct EncapMaps {
            $(pub $map: BpfMap,)*
        }

        impl EncapMaps {
            fn from_skel(maps: &encap::EncapMaps<'_>) -> Result<EncapMaps, MapError> {
                Ok(EncapMaps { $($map: BpfMap::new(&maps.$map, stringify!($map))?,)* })
            }

            /// Makes a program being loaded use these maps instead of creating
            /// its own, except the counters when `own_counters` (a probe's).
            fn reuse_in(&self, open: &mut encap::OpenEncapMaps<'_>, own_counters: bool) -> Result<(), LoadError> {
                $(
                    let counter_map = matches!(stringify!($map), "counters" | "route_counters");
                    if !(own_counters && counter_map) {
                        open.$map.reuse_fd(self.$map.fd()).map_err(kernel(concat!("reusing map ", stringify!($map))))?;
                    }
                )*
                Ok(())
            }

            /// Every map with its name.
            pub(crate) fn all(&self) -> Vec<&BpfMap> {
                vec![$(&self.$map),*]
            }

            /// Opens every map pinned in `dir`.
            pub(crate) fn from_pins(dir: &Path) -> Result<EncapMaps, (&'static str, Errno)> {
                Ok(EncapMaps {
                    $($map: {
                        let name = stringify!($map);
                        let fd = bpffs::get(&dir.join(name)).map_err(|e| (name, e))?;
                        BpfMap::from_fd(fd, name).map_err(|e| (name, e.errno))?
                    },)*
                })
            }
        }
    };
}

map_set!(
    routes_v4,
    dir4_tbl16,
    dir4_tbl24,
    dir4_tbl8,
    dir4_prefixes,
    dir4_values,
    routes_v6,
    sources_v4,
    sources_v6,
    alt_routes_v4,
    alt_routes_v6,
    settings,
    policies,
    route_counters,
    dscp_tc,
    counters,
    route_cache,
    route_cache_ctl,
);

/// Elements of `dir4_tbl16`: one per DIR_BLOCK /16s.
pub(crate) const DIR_TBL16_ELEMENTS: u32 = (1 << 16) / types::encap_dir::DIR_BLOCK.0;
/// Elements of `dir4_tbl24`: one per DIR_BLOCK /24s.
pub(crate) const DIR_TBL24_ELEMENTS: u32 = (1 << 24) / types::encap_dir::DIR_BLOCK.0;
/// Buckets of a route cache of `entries` (IPv4 destinations, a power of
/// two or 0): ROUTE_CACHE_WAYS_V4 to a bucket, at least one when on.
pub(crate) fn route_cache_buckets(entries: u32) -> u32 {
    entries.div_ceil(types::route_cache_geometry::ROUTE_CACHE_WAYS_V4.0)
}

/// Slots a DIR-24-8 entry can name (its low 24 bits; 0 is "no route").
pub(crate) const DIR_MAX_SLOTS: u32 = types::encap_dir::DIR_SLOT_MASK.0;

fn kernel(step: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Kernel { step, source }
}

/// The loaded encapsulator program and its maps.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub prog: OwnedFd,
    pub maps: EncapMaps,
}

/// Checks what can be checked before the kernel is asked.
pub(crate) fn validate(config: &LoadConfig) -> Result<(), LoadError> {
    if let TtlMode::Fixed(0) = config.ttl {
        return Err(LoadError::Config("a fixed TTL of 0 expires at the first router; use 1..=255"));
    }
    if config.max_routes_v4 == 0 || config.max_routes_v6 == 0 || config.max_policies == 0 {
        return Err(LoadError::Config("route and policy table capacities must be at least 1"));
    }
    if config.max_routes_v4 >= DIR_MAX_SLOTS && config.lookup == Ipv4Lookup::Dir24_8 {
        return Err(LoadError::Config("DIR-24-8 holds at most 16,777,214 IPv4 routes; lower max_routes"));
    }
    if config.dir_groups < 2 || config.route_values < 2 {
        return Err(LoadError::Config("DIR-24-8 needs at least 1 group and 1 route value"));
    }
    if config.dir_groups > DIR_MAX_SLOTS && config.lookup == Ipv4Lookup::Dir24_8 {
        return Err(LoadError::Config("DIR-24-8 holds at most 16,777,214 groups; lower dir_groups"));
    }
    // The program indexes it with a mask (a state file edited by hand could say otherwise).
    if !config.route_cache.is_power_of_two() && config.route_cache != 0 {
        return Err(LoadError::Config("the route cache's size must be a power of two (or 0: none)"));
    }
    Ok(())
}

/// The encapsulator's programs: one worker, one entry point per hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Program {
    /// `xdp_encap`: received frames, turned around (XDP_TX).
    Xdp,
    /// `tc_encap`: the host's own packets on egress (tcx).
    TcEgress,
    /// `xdp_encap` against the tables of a loaded dataplane but with
    /// counters of its own: what `explain` runs, so that probes are not
    /// counted as traffic.
    Probe,
}

impl Program {
    /// The program a dataplane attached in `mode` runs.
    pub(crate) fn attached_as(mode: AttachedMode) -> Program {
        match mode {
            AttachedMode::Egress => Program::TcEgress,
            _ => Program::Xdp,
        }
    }
}

/// Host mode's on-link rule as `program` loaded with `config` applies it:
/// what the kernel hands to an on-link neighbour leaves unlabelled. Only
/// the egress program has a kernel route to read, through kfuncs this
/// kernel must have; [`EncapsulatorBuilder::label_on_link`] opts out.
///
/// [`EncapsulatorBuilder::label_on_link`]: crate::encap::EncapsulatorBuilder::label_on_link
pub(crate) fn passes_on_link(config: &LoadConfig, program: Program) -> bool {
    program == Program::TcEgress && !config.label_on_link && crate::sys::kernel_btf::can_read_skb_route()
}

/// Loads the encapsulator with `config` and maps of its own (its XDP program).
pub(crate) fn load(config: &LoadConfig) -> Result<Loaded, LoadError> {
    let (prog, maps) = load_object(config, None, Program::Xdp)?;
    let maps = maps.ok_or(LoadError::Config("the object's maps were not opened (build problem)"))?;
    Ok(Loaded { prog, maps })
}

/// Loads `xdp_encap` against `maps`' tables with counter maps of its own
/// (per-route counting off: its `route_counters` has one, unused, slot), and
/// returns it with its own `counters` map.
pub(crate) fn load_probe(config: &LoadConfig, maps: &EncapMaps) -> Result<(OwnedFd, BpfMap), LoadError> {
    let (prog, own) = load_object(config, Some(maps), Program::Probe)?;
    let own = own.ok_or(LoadError::Config("the probe's maps were not opened (build problem)"))?;
    Ok((prog, own.counters))
}

/// What tells one probe copy from another: this build's object, the load
/// configuration and the dataplane (the id of one of its maps) (FNV-1a, 64
/// bits). A probe pinned by another build, for another configuration or
/// against the maps of an earlier attachment is never reused.
pub(crate) fn probe_id(config: &LoadConfig, dataplane: u32) -> u64 {
    const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/encap.bpf.o"));
    let config = format!("{config:?} {dataplane}");
    OBJECT
        .iter()
        .chain(config.as_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// What `program` loaded by this build with `config` is, as a number: this
/// build's object, the settings written into it, and the kernel feature it
/// is specialised by. Equal fingerprints load the same program, so an
/// adoption that finds its own program running (recorded beside the pins)
/// keeps it instead of verifying an identical one: a third of an agent's
/// restart on a full table. Another build, or other settings, differ.
pub(crate) fn fingerprint(config: &LoadConfig, program: Program) -> u64 {
    use std::hash::{Hash, Hasher};
    static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/encap.bpf.o"));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    OBJECT.hash(&mut h);
    format!("{config:?} {program:?}").hash(&mut h);
    crate::sys::kernel_btf::kfuncs().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    h.finish()
}

/// Loads one of the encapsulator's programs against `maps`, which an earlier
/// load with the same `config` created: the program a running dataplane is
/// moved to, or its egress program, tables and counters shared.
pub(crate) fn load_program(config: &LoadConfig, maps: &EncapMaps, program: Program) -> Result<OwnedFd, LoadError> {
    load_object(config, Some(maps), program).map(|(prog, _)| prog)
}

fn load_object(
    config: &LoadConfig,
    reuse: Option<&EncapMaps>,
    program: Program,
) -> Result<(OwnedFd, Option<EncapMaps>), LoadError> {
    validate(config)?;
    if let Some(missing) = privileges::missing() {
        return Err(LoadError::Privileges(missing));
    }
    libbpf_log::route();

    let mut storage = MaybeUninit::uninit();
    let mut open = encap::EncapSkelBuilder::default().open(&mut storage).map_err(kernel("opening the object"))?;
    let rodata =
        open.maps.rodata_data.as_deref_mut().ok_or(LoadError::Config("the object has no .rodata (build problem)"))?;
    (rodata.ttl_mode, rodata.fixed_ttl) = match config.ttl {
        TtlMode::Copy => (types::encap_ttl_mode::ENCAP_TTL_COPY, 0),
        TtlMode::Fixed(ttl) => (types::encap_ttl_mode::ENCAP_TTL_FIXED, ttl),
    };
    rodata.mtu_policy = match config.mtu {
        MtuPolicy::Drop => types::encap_mtu_policy::ENCAP_MTU_DROP,
        MtuPolicy::Pass => types::encap_mtu_policy::ENCAP_MTU_PASS,
    };
    rodata.lookup_v4 = match config.lookup {
        Ipv4Lookup::Dir24_8 => types::encap_lookup::ENCAP_LOOKUP_DIR24,
        Ipv4Lookup::LpmTrie => types::encap_lookup::ENCAP_LOOKUP_LPM,
    };
    rodata.skip_stages = match program {
        // A probe counts whatever a benchmark's variant skips: its counters say what happened.
        Program::Probe => config.skip_stages & !types::encap_skip::ENCAP_SKIP_COUNTERS.0,
        Program::Xdp | Program::TcEgress => config.skip_stages,
    };
    rodata.route_cache_buckets = route_cache_buckets(config.route_cache);
    let skip_in_place = config.skip_stages & types::encap_skip::ENCAP_SKIP_MTU_IN_PLACE.0 != 0;
    rodata.mtu_in_place = u8::from(crate::sys::kernel_btf::has_cast_to_kern_ctx() && !skip_in_place);
    // Host mode: a frame the kernel hands to an on-link neighbour goes out
    // unlabelled (XDP has no kernel route to read). Egress attaches need tcx
    // (Linux 6.6), which has both kfuncs: the fallback is for a kernel built
    // without them.
    let on_link_pass = passes_on_link(config, program);
    if program == Program::TcEgress && !config.label_on_link && !on_link_pass {
        log::warn!(
            "this kernel lacks bpf_cast_to_kern_ctx or bpf_rdonly_cast: on-link neighbours are labelled like any \
             destination the tables cover"
        );
    }
    rodata.on_link_pass = u8::from(on_link_pass);
    // The structure not chosen keeps one entry per map (maps cannot be absent).
    let dir = config.lookup == Ipv4Lookup::Dir24_8;
    let (lpm_v4, tbl16, tbl24, groups, prefixes, values) = match dir {
        true => (
            1,
            DIR_TBL16_ELEMENTS,
            DIR_TBL24_ELEMENTS,
            config.dir_groups,
            config.max_routes_v4.saturating_add(1),
            config.route_values,
        ),
        false => (config.max_routes_v4, 1, 1, 1, 1, 1),
    };
    // Slot 0 is "not counted" and every route id is past the probe's one slot.
    let route_counters = if program == Program::Probe { 1 } else { config.max_counted_routes.max(1) };
    let maps = &mut open.maps;
    for (map, entries, step) in [
        (&mut maps.routes_v4, lpm_v4, "sizing routes_v4"),
        (&mut maps.dir4_tbl16, tbl16, "sizing dir4_tbl16"),
        (&mut maps.dir4_tbl24, tbl24, "sizing dir4_tbl24"),
        (&mut maps.dir4_tbl8, groups, "sizing dir4_tbl8"),
        (&mut maps.dir4_prefixes, prefixes, "sizing dir4_prefixes"),
        (&mut maps.dir4_values, values, "sizing dir4_values"),
        (&mut maps.routes_v6, config.max_routes_v6, "sizing routes_v6"),
        (&mut maps.alt_routes_v4, config.max_routes_v4, "sizing alt_routes_v4"),
        (&mut maps.alt_routes_v6, config.max_routes_v6, "sizing alt_routes_v6"),
        (&mut maps.sources_v4, config.max_routes_v4, "sizing sources_v4"),
        (&mut maps.sources_v6, config.max_routes_v6, "sizing sources_v6"),
        (&mut maps.policies, config.max_policies, "sizing policies"),
        (&mut maps.route_counters, route_counters, "sizing route_counters"),
        (&mut maps.route_cache, route_cache_buckets(config.route_cache).max(1), "sizing route_cache"),
    ] {
        map.set_max_entries(entries).map_err(kernel(step))?;
    }
    if let Some(existing) = reuse {
        existing.reuse_in(&mut open.maps, program == Program::Probe)?;
    }
    // Only the program asked for is verified: each costs as much as the other.
    open.progs.xdp_encap.set_autoload(program != Program::TcEgress);
    open.progs.tc_encap.set_autoload(program == Program::TcEgress);
    let skel = open.load().map_err(|source| match source.kind() {
        ErrorKind::PermissionDenied => {
            LoadError::Privileges(privileges::MissingCapabilities(vec!["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]))
        }
        _ => LoadError::Kernel { step: "loading (verifier)", source },
    })?;
    let prog = match program {
        Program::Xdp | Program::Probe => skel.progs.xdp_encap.as_fd(),
        Program::TcEgress => skel.progs.tc_encap.as_fd(),
    }
    .try_clone_to_owned()
    .map_err(|e| LoadError::Kernel { step: "duplicating the program fd", source: e.into() })?;
    let maps = match (reuse, program) {
        // The skeleton's fds are the reused ones: the caller keeps its own set.
        (Some(_), Program::Xdp | Program::TcEgress) => None,
        (None, _) | (Some(_), Program::Probe) => {
            Some(EncapMaps::from_skel(&skel.maps).map_err(|source| LoadError::Map { source })?)
        }
    };
    Ok((prog, maps))
}
