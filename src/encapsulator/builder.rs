//! [`EncapsulatorBuilder`]: the settings a dataplane is loaded with, and
//! the two ways to get one (loaded alone, or attached).

use super::*;

/// The route cache's default size, where its invalidation is proven: x86's
/// loads are not reordered with each other (see route_cache.h).
const DEFAULT_ROUTE_CACHE: u32 =
    if cfg!(target_arch = "x86_64") { encap_limits::ENCAP_DEFAULT_ROUTE_CACHE.0 } else { 0 };
/// The largest route cache [`EncapsulatorBuilder::route_cache`] makes.
const MAX_ROUTE_CACHE: u32 = 1 << 20;
/// Main-table routes of a family from which the cache serves it by default:
/// below, an LPM trie's walk is cheaper than the cache's entries for many
/// destinations (benches/wire.rs, `LHE_WIRE_V6_SIZES`; README, Performance).
const DEFAULT_ROUTE_CACHE_MIN_ROUTES: u32 = 4096;

/// Settings for [`Encapsulator`], applied when the program is loaded.
///
/// ```no_run
/// use lnetd_host_encap::{Encapsulator, encap::MtuPolicy, encap::TtlMode, XdpMode};
/// let enc = Encapsulator::builder()
///     .ttl_mode(TtlMode::Fixed(255))
///     .mtu_policy(MtuPolicy::Pass)
///     .attach("eth0", XdpMode::Auto)?;
/// # Ok::<(), lnetd_host_encap::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct EncapsulatorBuilder {
    config: LoadConfig,
    pin: Option<PinRoots>,
    allow_tso: bool,
}

impl Default for EncapsulatorBuilder {
    fn default() -> Self {
        EncapsulatorBuilder {
            config: LoadConfig {
                ttl: TtlMode::default(),
                mtu: MtuPolicy::default(),
                max_routes_v4: encap_limits::ENCAP_DEFAULT_MAX_ROUTES_V4.0,
                max_routes_v6: encap_limits::ENCAP_DEFAULT_MAX_ROUTES_V6.0,
                max_policies: encap_limits::ENCAP_DEFAULT_MAX_POLICIES.0,
                max_counted_routes: encap_limits::ENCAP_DEFAULT_COUNTED_ROUTES.0,
                lookup: Ipv4Lookup::default(),
                dir_groups: encap_limits::ENCAP_DEFAULT_DIR_GROUPS.0,
                route_values: encap_limits::ENCAP_DEFAULT_ROUTE_VALUES.0,
                route_cache: DEFAULT_ROUTE_CACHE,
                route_cache_min_routes: DEFAULT_ROUTE_CACHE_MIN_ROUTES,
                label_on_link: false,
                skip_stages: 0,
            },
            pin: None,
            allow_tso: false,
        }
    }
}

impl EncapsulatorBuilder {
    /// How label TTLs are set (default [`TtlMode::Copy`]).
    pub fn ttl_mode(mut self, ttl: TtlMode) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// What happens to packets too big once labelled (default [`MtuPolicy::Drop`]).
    pub fn mtu_policy(mut self, mtu: MtuPolicy) -> Self {
        self.config.mtu = mtu;
        self
    }

    /// Leaves stages out of the program (bits of [`crate::testing::stages`]):
    /// for benchmarks that find what each stage costs, never for traffic.
    #[cfg(feature = "testing")]
    pub fn skip_stages(mut self, stages: u32) -> Self {
        self.config.skip_stages = stages;
        self
    }

    /// How the main IPv4 table is looked up (default [`Ipv4Lookup::Dir24_8`]:
    /// flat cost, fixed memory; [`Ipv4Lookup::LpmTrie`] where memory is tight).
    pub fn lookup(mut self, lookup: Ipv4Lookup) -> Self {
        self.config.lookup = lookup;
        self
    }

    /// DIR-24-8: how many /24s may hold prefixes longer than /24 (host
    /// routes and host addresses count), 1 KiB each (default 8,191).
    pub fn dir_groups(mut self, n: u32) -> Self {
        self.config.dir_groups = n.saturating_add(1);
        self
    }

    /// DIR-24-8: how many distinct IPv4 route values (label stack, policy,
    /// traffic class) the table holds, 80 bytes each (default 131,071);
    /// routes with the same value share one whatever their prefix.
    pub fn max_route_values(mut self, n: u32) -> Self {
        self.config.route_values = n.saturating_add(1);
        self
    }

    /// Entries of the route cache in front of the main table's lookup (past
    /// DIR-24-8's /16 summary for IPv4; see also
    /// [`route_cache_min_routes`](Self::route_cache_min_routes)): the last answer per
    /// destination address, set-associative, shared by every CPU, invalidated
    /// by every change the library makes to the main table (default 524,288
    /// on x86_64: 8 MiB in 64-byte buckets of 4 IPv4 or 2 IPv6 destinations,
    /// for about 65,536 active destinations (docs/per-packet.md); rounded up
    /// to a power of two, at most 1,048,576; 0 turns it off). A hit costs the same whatever the
    /// table's size; a miss costs the lookup plus filling the entry. The
    /// default is 0 on other architectures: the invalidation relies on x86's
    /// load and store ordering.
    pub fn route_cache(mut self, entries: u32) -> Self {
        self.config.route_cache = match entries {
            0 => 0,
            n => n.min(MAX_ROUTE_CACHE).next_power_of_two(),
        };
        self
    }

    /// How many routes a family's main table must hold before its lookups go
    /// through the route cache (default 4,096; 0: always). Below it, the
    /// lookup itself is cheap and its few entries stay in the CPU's caches,
    /// while the route cache's entries for thousands of destinations do not:
    /// on the wire a small table is as fast or faster without the cache
    /// (README, Performance).
    pub fn route_cache_min_routes(mut self, routes: u32) -> Self {
        self.config.route_cache_min_routes = routes;
        self
    }

    /// Capacity of the IPv4 and IPv6 route tables (defaults 2,097,152 and
    /// 524,288). LPM tries use memory per route present; DIR-24-8 16 bytes
    /// per IPv4 route of capacity.
    pub fn max_routes(mut self, v4: u32, v6: u32) -> Self {
        self.config.max_routes_v4 = v4;
        self.config.max_routes_v6 = v6;
        self
    }

    /// Capacity of the policy table (default 65,536): one entry per route
    /// with more than one segment list or an entropy label, about 1.7 KB each,
    /// allocated on use.
    pub fn max_policies(mut self, n: u32) -> Self {
        self.config.max_policies = n;
        self
    }

    /// How many counter slots routes and policy lists share (default 65,535):
    /// a per-CPU slot each, 16 bytes per CPU, allocated up front. Routes
    /// beyond it work but are not counted ([`RouteCounters::counted`] is false).
    pub fn max_counted_routes(mut self, n: u32) -> Self {
        self.config.max_counted_routes = n.saturating_add(1);
        self
    }

    /// Lets [`Encapsulator::attach`] with [`Hook::Egress`] attach to a device with TCP
    /// segmentation offload on: only for NICs known to segment MPLS
    /// super-packets correctly (most do not; veth hands them on whole).
    pub fn allow_tso(mut self, allow: bool) -> Self {
        self.allow_tso = allow;
        self
    }

    /// On egress, whether a packet the kernel hands to an on-link neighbour
    /// (its route has no gateway: the router's own address, another host of
    /// the subnet) is labelled like any other (default `false`: it leaves
    /// unlabelled, counted in [`crate::Stats`]'s `local`, since a labelled
    /// frame goes to that neighbour's MAC and only a neighbour that pops the
    /// labels takes it: a default route would otherwise cut the host off
    /// from its router). `true` for hosts on one link that label toward each
    /// other and pop what they receive. No effect on XDP, which sees no
    /// kernel route.
    pub fn label_on_link(mut self, label: bool) -> Self {
        self.config.label_on_link = label;
        self
    }

    /// Pins the dataplane when it is attached: its maps and its link under
    /// `/sys/fs/bpf/lnetd-host-encap/net<netns>/<iface>/`, and the RIB (every
    /// route, policy, source, host address and id allocation) in
    /// `/run/lnetd-host-encap/net<netns>/<iface>/` (a snapshot and a journal:
    /// every change appends one synced record, see docs/store.md). Forwarding then continues after the process exits or is
    /// killed, and [`Encapsulator::open`] adopts it from another process;
    /// [`Encapsulator::detach`] removes program and pins. Directories are
    /// mode 0700, files root-only.
    ///
    /// Without it (the default), dropping the encapsulator or the process
    /// dying detaches the program and leaves nothing behind.
    pub fn pinned(self) -> Self {
        self.pinned_at(PinRoots::default())
    }

    /// As [`EncapsulatorBuilder::pinned`], under other roots (a bpffs
    /// directory for the pins, any directory for the state).
    pub fn pinned_at(mut self, roots: PinRoots) -> Self {
        self.pin = Some(roots);
        self
    }

    /// Loads the program into the kernel without attaching it: routes can be
    /// programmed before any traffic sees them, and
    /// [`Diagnostics::test_run`] works.
    ///
    /// # Errors
    /// [`LoadError`]: missing capabilities (named), a fixed TTL of 0, a zero
    /// capacity, or the kernel refusing the program.
    pub fn load(self) -> Result<Encapsulator, LoadError> {
        let Loaded { prog, maps } = dataplane::load(&self.config)?;
        let fib = Fib::fresh(maps, self.config)?;
        log::debug!("XDP encapsulator loaded ({:?})", self.config);
        Ok(Encapsulator {
            fib,
            prog,
            attachment: Mutex::new(None),
            pin: self.pin,
            allow_tso: self.allow_tso,
            netns: NetnsSockets::open(),
            probe: Mutex::new(None),
        })
    }

    /// Loads, then attaches to `iface` (see [`Encapsulator::attach`]).
    ///
    /// # Errors
    /// Any [`LoadError`] or [`AttachError`].
    pub fn attach(self, iface: &str, hook: impl Into<Hook>) -> Result<Encapsulator, Error> {
        let enc = self.load()?;
        enc.attach(iface, hook)?;
        Ok(enc)
    }
}
