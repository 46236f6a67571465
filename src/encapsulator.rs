//! [`Encapsulator`]: the public handle on one loaded dataplane.

#[cfg(feature = "bgp")]
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use ipnetwork::IpNetwork;
use nix::errno::Errno;

use crate::abi::types::encap_limits;
use crate::dataplane::pins::{OwnerLock, PinDir, PinRoots};
use crate::dataplane::{self, Loaded, Program};
use crate::desired::{ApplyInput, ApplyOptions, Input};
use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, TtlMode, XdpMode};
#[cfg(feature = "agent")]
use crate::domain::desired::ValidState;
use crate::domain::desired::{DesiredRoute, DesiredSource, DesiredState};
use crate::domain::label::DscpMap;
use crate::domain::policy::Policy;
use crate::domain::route::{Route, Table};
use crate::encap::Hook;
use crate::error::{AttachError, Error, LoadError, MapError, PinError, RouteError, TestRunError};
use crate::explain::{self, Explanation, Probe, ProbePins, ProbeProgram};
use crate::fib::apply::{ApplyReport, Desired};
use crate::fib::verify::Difference;
use crate::fib::{Fib, RouteCounters};
use crate::handles::{Diagnostics, Sources};
use crate::metrics::CountedRoute;
use crate::rib::store::{self, LoadConfig, OpenError, Store, Unreadable};
use crate::rib::Lookup;
use crate::stats::Stats;
use crate::sys::ethtool::{self, EthtoolSocket};
use crate::sys::link::{self, BpfLink};
use crate::sys::test_run::{self, RunStats, TestRun, XdpAction};

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
            ethtool: Mutex::new(EthtoolSocket::open().ok()),
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

/// Where an encapsulator is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Interface index.
    pub ifindex: u32,
    /// The mode obtained.
    pub mode: AttachedMode,
}

#[derive(Debug)]
struct Attached {
    info: Attachment,
    link: BpfLink,
    /// Where it is pinned, if it is.
    pins: Option<PinDir>,
    /// Held while this process owns the pinned dataplane.
    _owner: Option<OwnerLock>,
}

/// How [`AdoptOptions::open`] adopts a pinned dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptOptions {
    /// Where the pins are (default: [`PinRoots::default`]).
    pub roots: PinRoots,
    /// Move the link to this build's program (the default: how upgrades
    /// happen; a no-op where it already runs); false keeps the program
    /// running (for tools that only read).
    pub replace_program: bool,
    /// How long to wait for another process that owns the dataplane to let
    /// go (default: not at all: [`PinError::Busy`]).
    pub wait: std::time::Duration,
    /// Only read (routes, counters, explain): takes no ownership, so it works
    /// beside the owner (an agent); every change is refused with
    /// [`RouteError::ReadOnly`]. Implies `replace_program: false`.
    pub read_only: bool,
}

impl AdoptOptions {
    /// Adopts the dataplane pinned on `iface` with these options (see
    /// [`Encapsulator::open`], which uses the defaults), like
    /// `std::fs::OpenOptions::open`.
    ///
    /// ```no_run
    /// // Not run: needs root and a dataplane pinned on eth1.
    /// use lnetd_host_encap::encap::AdoptOptions;
    /// let reader = AdoptOptions { read_only: true, ..AdoptOptions::default() }.open("eth1")?;
    /// println!("{}", reader.stats()?);
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Encapsulator::open`].
    pub fn open(&self, iface: &str) -> Result<Encapsulator, Error> {
        Encapsulator::open_with(iface, self, None)
    }

    /// As [`AdoptOptions::open`], for a writer about to change the routes
    /// for `prefix` (in any table): it reads those routes from the state
    /// beside the pins, not the whole table, so that setting or removing one
    /// route costs the same at a million routes as at ten. Anything else
    /// asked of it (another prefix, an apply, the routes) reads the rest
    /// first, so it is an ordinary handle that is only fast at that one thing.
    ///
    /// ```no_run
    /// // Not run: needs root and a dataplane pinned on eth1.
    /// use lnetd_host_encap::{encap::AdoptOptions, Route, Table};
    /// let prefix = "198.51.100.0/24".parse()?;
    /// let enc = AdoptOptions::default().open_for("eth1", prefix)?;
    /// enc.set_route(Table::Main, &Route::new(prefix, "16001/16002".parse()?))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`AdoptOptions::open`].
    pub fn open_for(&self, iface: &str, prefix: ipnetwork::IpNetwork) -> Result<Encapsulator, Error> {
        Encapsulator::open_with(iface, self, Some(prefix))
    }

    /// Whether a dataplane is pinned on `iface` under these options' roots,
    /// in the calling thread's network namespace.
    ///
    /// # Errors
    /// [`PinError`] when the namespace cannot be read or the name is invalid.
    pub fn is_pinned(&self, iface: &str) -> Result<bool, PinError> {
        if self.roots == PinRoots::default() {
            return Encapsulator::is_pinned(iface);
        }
        PinDir::of(&self.roots, iface)?.exists()
    }
}

impl Default for AdoptOptions {
    fn default() -> Self {
        AdoptOptions {
            roots: PinRoots::default(),
            replace_program: true,
            wait: std::time::Duration::ZERO,
            read_only: false,
        }
    }
}

/// Pushes MPLS label stacks onto the IPv4/IPv6 packets an interface receives,
/// by longest-prefix match on the destination, and sends them back out of the
/// same interface (XDP_TX) with the MACs swapped: the "router on a stick"
/// topology, where the router expands a binding SID or follows the stack.
///
/// Never labelled, always passed to the host untouched: non-IP frames,
/// malformed frames, broadcast and multicast (by MAC or IP), packets to one of
/// the host's own addresses, link-local destinations (169.254.0.0/16,
/// fe80::/10, which no router forwards), and packets no route covers.
///
/// The program is attached through a BPF link: dropping the encapsulator, or
/// the process dying, detaches it. All methods take `&self`; it is `Send` and
/// `Sync`, so a controller thread can program routes while another reads stats.
///
/// Requires Linux 5.18+ (BPF links for XDP, `bpf_check_mtu`, live-frame test
/// runs), BTF, and CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN (or root).
///
/// ```no_run
/// use lnetd_host_encap::{Encapsulator, Label, XdpMode, Table, Route};
/// let enc = Encapsulator::builder().attach("eth0", XdpMode::Auto)?;
/// enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse()?, Label::new(1_000_000)?.into()))?;
/// enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse()?, "16001/16002".parse()?))?;
/// println!("{:?}", enc.stats()?.labelled);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Encapsulator {
    pub(crate) fib: Fib,
    prog: OwnedFd,
    attachment: Mutex<Option<Attached>>,
    /// Pin at attach, under these roots.
    pin: Option<PinRoots>,
    /// Egress on a TSO device is allowed.
    allow_tso: bool,
    /// Reads the driver's statistics in the attached interface's namespace
    /// (opened there at attach or adoption, used from any thread).
    ethtool: Mutex<Option<EthtoolSocket>>,
    /// The program `explain` runs, loaded at the first probe.
    probe: Mutex<Option<ProbeProgram>>,
}

impl Encapsulator {
    /// Settings for a new encapsulator.
    pub fn builder() -> EncapsulatorBuilder {
        EncapsulatorBuilder::default()
    }

    fn attached(&self) -> MutexGuard<'_, Option<Attached>> {
        // A panic while holding the lock cannot leave the Option half-written.
        self.attachment.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches to `iface` (in the calling thread's network namespace) and
    /// returns the mode obtained. The host-address table is refreshed first.
    ///
    /// # Errors
    /// [`AttachError::NoSuchInterface`], [`AttachError::AlreadyAttached`] (this
    /// encapsulator), [`AttachError::InterfaceBusy`] (another XDP program),
    /// [`AttachError::ModeUnsupported`], [`AttachError::Privileges`].
    ///
    /// [`XdpMode::Auto`] on a veth whose peer runs no native XDP program
    /// attaches in generic mode and logs a warning saying why (see
    /// [`XdpMode::Auto`]); [`XdpMode::Native`] there attaches as asked and
    /// logs a warning that labelled frames will be lost until the peer runs one.
    pub fn attach(&self, iface: &str, hook: impl Into<Hook>) -> Result<AttachedMode, AttachError> {
        match hook.into() {
            Hook::Xdp(mode) => self.attach_xdp(iface, mode),
            Hook::Egress => self.attach_egress(iface),
        }
    }

    fn attach_xdp(&self, iface: &str, mode: XdpMode) -> Result<AttachedMode, AttachError> {
        self.attach_with(iface, |ifindex| {
            let order = match mode {
                XdpMode::Auto => match crate::sys::veth_peer::veth_peer(ifindex) {
                    Ok(Some(peer)) if !peer.native_xdp => {
                        let at = peer.netnsid.map(|id| format!(" in namespace id {id}")).unwrap_or_default();
                        log::warn!(
                            "{iface} is a veth whose peer (ifindex {}{at}) runs no XDP program in native mode: \
                             in native mode every labelled frame would be dropped by the veth driver \
                             (xdp_tx_errors), so generic mode is used; attach an XDP program to the peer \
                             and ask for native mode explicitly to run natively",
                            peer.ifindex
                        );
                        XdpMode::Generic
                    }
                    Ok(_) => XdpMode::Auto,
                    Err(errno) => {
                        log::debug!("{iface}: the veth peer could not be read ({errno}); native first");
                        XdpMode::Auto
                    }
                },
                XdpMode::Native => {
                    // Asked for: kept, but never silently lossy.
                    if let Ok(Some(peer)) = crate::sys::veth_peer::veth_peer(ifindex) {
                        if !peer.native_xdp {
                            let at = peer.netnsid.map(|id| format!(" in namespace id {id}")).unwrap_or_default();
                            log::warn!(
                                "{iface} is a veth whose peer (ifindex {}{at}) runs no XDP program in native mode: \
                                 every labelled frame will be dropped by the veth driver (xdp_tx_errors, \
                                 `stats` tx_errors) until one runs there; attach an XDP program to the peer, \
                                 or use generic mode",
                                peer.ifindex
                            );
                        }
                    }
                    XdpMode::Native
                }
                other => other,
            };
            link::attach(self.prog.as_fd(), ifindex, order)
                .map_err(|tried| AttachError::from_attempts(iface, mode, tried))
        })
    }

    /// Attaches to `iface`'s egress (tcx, Linux 6.6+): the host's OWN
    /// packets leaving through it get the same routes, policies, stacks,
    /// TTL modes, traffic classes, entropy labels and counters as on the XDP
    /// path; the MACs the kernel chose are kept and the stack goes after L2
    /// (and VLAN tags). Super-packets stay correct: the push keeps the
    /// network header on IP, so software GSO copies Ethernet and labels into
    /// every segment. A device that segments TCP itself (TSO on) is refused
    /// unless [`EncapsulatorBuilder::allow_tso`] says it segments MPLS:
    /// turn TSO off (`ethtool -K IFACE tso off`; GSO stays on). Labelled
    /// segments need 4 bytes a label under the MTU: give the routes through
    /// the interface an MTU that leaves that room (README, "Host mode").
    ///
    /// # Errors
    /// As [`Encapsulator::attach`], and [`AttachError::TsoEnabled`].
    fn attach_egress(&self, iface: &str) -> Result<AttachedMode, AttachError> {
        // Inside attach_with: its checks (attached already, pinned already)
        // come first, and say what is wrong before TSO would.
        self.attach_with(iface, |ifindex| {
            let tso = crate::sys::ethtool::tso_enabled(iface)
                .map_err(|errno| AttachError::Ethtool { iface: iface.to_owned(), errno })?;
            if tso && !self.allow_tso {
                return Err(AttachError::TsoEnabled { iface: iface.to_owned() });
            }
            let tc =
                dataplane::load_program(self.fib.config(), self.fib.maps(), Program::TcEgress).map_err(Box::new)?;
            let link = link::attach_tcx_egress(tc.as_fd(), ifindex)
                .map_err(|errno| AttachError::from_tcx(iface, AttachedMode::Egress, errno))?;
            Ok((link, AttachedMode::Egress))
        })
    }

    /// The attach steps every hook shares: the interface, the host's
    /// addresses, the pins; `link` makes the attachment itself.
    fn attach_with(
        &self,
        iface: &str,
        link: impl FnOnce(u32) -> Result<(BpfLink, AttachedMode), AttachError>,
    ) -> Result<AttachedMode, AttachError> {
        let mut slot = self.attached();
        if let Some(current) = slot.as_ref() {
            return Err(AttachError::AlreadyAttached { iface: current.info.iface.clone() });
        }
        let ifindex = crate::sys::host_addresses::ifindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        self.refresh_local_addresses().map_err(|e| AttachError::HostAddresses(Box::new(e)))?;

        let pins = match &self.pin {
            Some(roots) => {
                let dir = PinDir::of(roots, iface)?;
                if dir.exists()? {
                    return Err(PinError::AlreadyPinned { dir: dir.pins().to_owned() }.into());
                }
                Some(dir)
            }
            None => None,
        };
        let (link, got) = link(ifindex)?;
        // The driver's statistics are read by name in this namespace, later from any thread.
        match EthtoolSocket::open() {
            Ok(sock) => *self.ethtool.lock().unwrap_or_else(|p| p.into_inner()) = Some(sock),
            Err(errno) => log::debug!("no ethtool socket ({errno}): tx_errors will not be known"),
        }
        let info = Attachment { iface: iface.to_owned(), ifindex, mode: got };
        let mut owner = None;
        if let Some(dir) = &pins {
            // The lock first: a process adopting meanwhile waits or is refused,
            // and never sees pins this attach may still take back.
            let pinned = dir
                .lock(std::time::Duration::ZERO)
                .and_then(|lock| {
                    owner = Some(lock);
                    dir.create_with(&self.fib.maps().all(), &link, |dir| {
                        let mut rib = self.fib.read(Clone::clone);
                        Store::create(dir.state_dir(), &mut rib, *self.fib.config(), store_attached(&info))
                    })
                })
                .map(|store| {
                    self.fib.set_store(Some(store));
                    dir.record_program(dataplane::fingerprint(self.fib.config(), Program::attached_as(got)), &link);
                });
            if let Err(e) = pinned {
                // Not attached unpinned when pinning was asked for: the link closes on return.
                if let Err(remove) = dir.remove() {
                    log::warn!("{remove}");
                }
                return Err(e.into());
            }
            log::info!("pinned in {}", dir.pins().display());
        }
        log::info!("encapsulator attached to {iface} (ifindex {ifindex}) in {got} mode");
        *slot = Some(Attached { info, link, pins, _owner: owner });
        Ok(got)
    }

    /// Where it is attached, if anywhere.
    pub fn attachment(&self) -> Option<Attachment> {
        self.attached().as_ref().map(|a| a.info.clone())
    }

    /// Detaches; routes and counters are kept, and it can be attached again.
    /// A pinned dataplane's pins and state file are removed. Returns the
    /// attachment removed, if any. An interface deleted meanwhile counts as
    /// detached.
    ///
    /// # Errors
    /// [`AttachError::Detach`] when the kernel refuses (the attachment is
    /// kept); [`AttachError::Pin`] when the pins cannot be removed (the
    /// program is detached).
    pub fn detach(&self) -> Result<Option<Attachment>, AttachError> {
        if self.fib.is_read_only() {
            return Err(AttachError::ReadOnly);
        }
        // A handle adopted for one prefix reads the rest of its RIB while the
        // state is there: unpinned, it goes on with every route (and a
        // later attach pins them all, not the few it read).
        self.fib.read_all()?;
        let mut slot = self.attached();
        let Some(current) = slot.as_ref() else { return Ok(None) };
        match current.link.detach() {
            Ok(()) | Err(Errno::ENOLINK | Errno::ENODEV | Errno::EINVAL) => {}
            Err(errno) => return Err(AttachError::Detach { iface: current.info.iface.clone(), errno }),
        }
        let Some(removed) = slot.take() else { return Ok(None) };
        log::info!("XDP encapsulator detached from {}", removed.info.iface);
        if let Some(dir) = &removed.pins {
            self.fib.set_store(None);
            dir.remove()?;
        }
        Ok(Some(removed.info))
    }

    /// Adopts the dataplane pinned on `iface` (in the calling thread's
    /// network namespace) by another process, with every route, policy,
    /// source, counter and id allocation intact (the host's addresses are
    /// re-read, as at attach: they may have changed since), and moves its
    /// link to this build's program atomically (a packet runs the old program
    /// or the new one, and the maps are kept): this is also how a newer build
    /// takes over a running dataplane. Forwarding never stops. Where this
    /// build's own program, with the same settings, already runs (recorded
    /// beside the pins at attach and at every move), it is kept: a restart
    /// does not verify an identical program again.
    ///
    /// ```no_run
    /// use lnetd_host_encap::{Encapsulator, Table};
    /// let enc = Encapsulator::open("eth1")?;
    /// for route in enc.routes(Table::Main)? {
    ///     println!("{} -> {}", route.prefix, route.policy);
    /// }
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`PinError::NotPinned`] when nothing is pinned there;
    /// [`PinError::Incompatible`] for state written by a build of another
    /// format (naming both versions); [`PinError::StaleInterface`] when the
    /// interface was recreated; [`PinError::StaleLink`] when the pinned link no
    /// longer attaches the live interface (deleted and recreated, with its
    /// namespace or alone); [`LoadError`] when this build's program cannot
    /// be loaded against the pinned maps; [`AttachError::Replace`].
    pub fn open(iface: &str) -> Result<Encapsulator, Error> {
        Encapsulator::open_with(iface, &AdoptOptions::default(), None)
    }

    /// As [`Encapsulator::open`], with options: other roots, keeping the
    /// program that runs, waiting for the current owner. One process owns a
    /// pinned dataplane at a time (a lock the kernel releases when it dies),
    /// so two never overwrite each other's state.
    ///
    /// # Errors
    /// As [`Encapsulator::open`], and [`PinError::Busy`] while another
    /// process owns it.
    /// With `scope`, a writer reads only the routes for that prefix
    /// ([`AdoptOptions::open_for`]).
    pub(crate) fn open_with(
        iface: &str,
        options: &AdoptOptions,
        scope: Option<IpNetwork>,
    ) -> Result<Encapsulator, Error> {
        let dir = PinDir::of(&options.roots, iface)?;
        if !dir.exists()? {
            // A misspelt name is said as such, not as "nothing pinned there".
            let ifindex = crate::sys::host_addresses::ifindex(iface)
                .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
            let other_program = link::attached_prog_id(ifindex).ok().flatten();
            return Err(
                PinError::NotPinned { iface: iface.to_owned(), dir: dir.pins().to_owned(), other_program }.into()
            );
        }
        let owner = if options.read_only { None } else { Some(dir.lock(options.wait)?) };
        let started = std::time::Instant::now();
        let unreadable = |e: OpenError| match e {
            OpenError::Pin(e) => e,
            OpenError::Unreadable(Unreadable::Version(found, written_by)) => PinError::Incompatible {
                found,
                written_by,
                ours: store::FORMAT,
                ours_version: env!("CARGO_PKG_VERSION"),
                dir: dir.pins().to_owned(),
            },
            OpenError::Unreadable(Unreadable::Invalid(reason)) => {
                PinError::Corrupt { path: dir.state_dir().to_owned(), reason }
            }
        };
        // A reader checks the state (format, checksum) now and decodes the
        // RIB only when it first needs it: `stats` never does. A writer
        // decodes it on a thread of its own while this one verifies the
        // program: the two halves of an agent's restart, overlapped.
        let peek = if options.read_only { Store::peek } else { Store::peek_head };
        let store::Peeked { config, attached, mut unfinished } = peek(dir.state_dir()).map_err(unreadable)?;
        let state_dir = dir.state_dir().to_owned();
        // A writer for one prefix reads its routes alone (None: the state
        // cannot be written from so few, e.g. a change left unfinished).
        let scope = scope.filter(|_| !options.read_only && !unfinished);
        let decoding = if options.read_only {
            None
        } else {
            let state_dir = state_dir.clone();
            Some(std::thread::spawn(move || match scope {
                Some(prefix) => match Store::open_for_change(&state_dir, &store::Covering(&[prefix.network()]))? {
                    Some((recovered, store)) => Ok((recovered, Some(store), Some(prefix))),
                    None => Store::open(&state_dir, true).map(|(r, s)| (r, s, None)),
                },
                None => Store::open(&state_dir, true).map(|(r, s)| (r, s, None)),
            }))
        };
        let read = started.elapsed();
        if attached.mode == AttachedMode::Ingress {
            // A decapsulator's hook: no encapsulator is ever attached there.
            let reason = "an encapsulator attached in ingress mode".to_owned();
            return Err(PinError::Corrupt { path: dir.pins().to_owned(), reason }.into());
        }
        let ifindex = crate::sys::host_addresses::ifindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        if ifindex != attached.ifindex {
            return Err(
                PinError::StaleInterface { iface: iface.to_owned(), pinned: attached.ifindex, now: ifindex }.into()
            );
        }
        let link = dir.open_link()?;
        dir.check_live(iface, ifindex, &link, attached.mode != AttachedMode::Egress)?;
        let maps = dir.open_maps()?;
        let program = Program::attached_as(attached.mode);
        // This build's own program, with these settings, already runs (a
        // restart, not an upgrade): an identical one would be verified for
        // nothing. The record names the running program's id, which the
        // kernel never gives two programs at once. Keeping it needs its fd,
        // which only CAP_SYS_ADMIN may take by id (BPF_PROG_GET_FD_BY_ID): an
        // agent with the unit's capabilities loads its own, as before.
        let writer = options.replace_program && !options.read_only;
        // Only a writer that may replace the program needs it (it reads the kernel's BTF).
        let ours = if writer { dataplane::fingerprint(&config, program) } else { 0 };
        let running_ours = writer && link.prog_id().is_ok_and(|id| dir.recorded_program() == Some((ours, id)));
        let kept = running_ours.then(|| link.prog().ok()).flatten();
        if running_ours {
            log::debug!("the running program is this build's: {}", if kept.is_some() { "kept" } else { "replaced" });
        }
        let replacement =
            if writer && kept.is_none() { Some(dataplane::load_program(&config, &maps, program)?) } else { None };
        // The RIB is read before the program is replaced: a state that
        // cannot be read leaves the running program alone.
        let (rib, store) = match decoding {
            None => {
                let load: crate::fib::RibLoader = Box::new(move |keep| {
                    let read = match keep {
                        None => Store::open(&state_dir, false).map(|(recovered, _)| recovered.rib),
                        Some(keep) => Store::read_if(&state_dir, keep),
                    };
                    read.map_err(|e| match e {
                        OpenError::Pin(e) => e.to_string(),
                        OpenError::Unreadable(Unreadable::Invalid(reason)) => {
                            format!("the state in {} cannot be read: {reason}", state_dir.display())
                        }
                        OpenError::Unreadable(Unreadable::Version(found, by)) => {
                            format!(
                                "the state in {} was replaced by format {found} (written by {by})",
                                state_dir.display()
                            )
                        }
                    })
                });
                (Err(load), None)
            }
            Some(decoding) => {
                // This thread reads the lookup table's bookkeeping back
                // while the other decodes the RIB.
                let table = match Fib::read_back_dir(&maps, &config, scope) {
                    Ok(table) => table,
                    Err(e) => {
                        // The decoder may be cutting the journal's torn tail:
                        // it finishes before the owner lock goes.
                        let _ = decoding.join();
                        return Err(e.into());
                    }
                };
                let decoded = decoding.join().unwrap_or_else(|_| {
                    Err(OpenError::Unreadable(Unreadable::Invalid("decoding it failed (a panic)".to_owned())))
                });
                let (recovered, store, scoped) = decoded.map_err(unreadable)?;
                unfinished = recovered.unfinished;
                (Ok((recovered.rib, table, scoped)), store)
            }
        };
        let prog = match replacement {
            Some(prog) => {
                link.update_prog(prog.as_fd())
                    .map_err(|errno| AttachError::Replace { iface: iface.to_owned(), errno })?;
                dir.record_program(ours, &link);
                ProbeProgram::remove_others(&config, &maps, &dir.probes_dir());
                prog
            }
            None => match kept {
                Some(fd) => fd,
                None => link.prog().map_err(|errno| Error::Sys { call: "bpf_link_get_info_by_fd", errno })?,
            },
        };
        let info = Attachment { iface: iface.to_owned(), ifindex, mode: attached.mode };
        let loaded = started.elapsed();
        let fib = match rib {
            Ok((rib, table, Some(scope))) => {
                let state_dir = dir.state_dir().to_owned();
                let whole: crate::fib::WholeLoader = Box::new(move || {
                    Store::open(&state_dir, true).map(|(recovered, store)| (recovered.rib, store)).map_err(
                        |e| match e {
                            OpenError::Pin(e) => e,
                            OpenError::Unreadable(reason) => {
                                let reason = match reason {
                                    Unreadable::Invalid(reason) => reason,
                                    Unreadable::Version(found, by) => {
                                        format!("replaced by format {found} (written by {by})")
                                    }
                                };
                                PinError::Corrupt { path: state_dir.clone(), reason }
                            }
                        },
                    )
                });
                Fib::adopted_for(maps, config, rib, table, scope, whole)?
            }
            Ok((rib, table, None)) => Fib::adopted(maps, config, rib, table)?,
            Err(load) => Fib::adopted_lazily(maps, config, load)?,
        };
        fib.set_store(store);
        log::debug!("adopt: state read {read:?}, program and maps until {loaded:?}, FIB until {:?}", started.elapsed());
        if unfinished && options.read_only {
            log::warn!(
                "the dataplane on {iface} was left in the middle of a change: the kernel may differ from what \
                 `routes` shows until the next writer adopts it (`verify` lists the differences)"
            );
        } else if unfinished {
            // A process died between a change's first kernel write and its
            // commit: the kernel may hold part of a change never acknowledged.
            // The RIB is the truth, so the kernel is brought back to it. Only
            // then: a clean adoption reads no map.
            let repaired = fib.repair()?;
            log::warn!(
                "the dataplane on {iface} was left in the middle of a change: {} entries repaired to match the RIB",
                repaired.len()
            );
        }
        log::info!("adopted the dataplane pinned in {}", dir.pins().display());
        let enc = Encapsulator {
            fib,
            prog,
            attachment: Mutex::new(Some(Attached { info, link, pins: Some(dir), _owner: owner })),
            pin: Some(options.roots.clone()),
            allow_tso: false,
            ethtool: Mutex::new(EthtoolSocket::open().ok()),
            probe: Mutex::new(None),
        };
        // Nothing follows the host's addresses between processes without an
        // agent: an address added since the attach was labelled and sent
        // away (and a removed one still handed to the host) until a re-attach.
        // Every writer brings them up to date; unchanged, this writes nothing.
        if !options.read_only {
            if let Err(e) = enc.refresh_local_addresses() {
                log::warn!("{iface}: the host's addresses could not be brought up to date: {e}");
            }
        }
        Ok(enc)
    }

    /// Whether a dataplane is pinned on `iface` in the calling thread's
    /// network namespace (under the default roots).
    ///
    /// # Errors
    /// [`PinError`] when the namespace cannot be read or the name is invalid.
    pub(crate) fn is_pinned(iface: &str) -> Result<bool, PinError> {
        PinDir::of(&PinRoots::default(), iface)?.exists()
    }

    /// Where this encapsulator's pins are, if it is pinned.
    pub(crate) fn pin_dir(&self) -> Option<std::path::PathBuf> {
        self.attached().as_ref().and_then(|a| a.pins.as_ref()).map(|d| d.pins().to_owned())
    }

    /// Where probe copies of the program are pinned, if this encapsulator is.
    fn probe_pins(&self) -> Option<ProbePins> {
        let attached = self.attached();
        let dir = attached.as_ref().and_then(|a| a.pins.as_ref())?;
        Some(ProbePins { probes: dir.probes_dir(), lock: dir.probe_lock() })
    }

    /// The routes (set-aside ones in the main table) counted by table and by
    /// the origin the RIB records for them: what the agent's `status` shows.
    /// One pass over the routes and one over the recorded origins, under the
    /// RIB's lock, allocating nothing per route (a million routes: tens of
    /// milliseconds, where asking each route's origin took most of a second).
    #[cfg(feature = "agent")]
    pub(crate) fn route_counts(&self) -> crate::rib::origins::Counted {
        self.fib.read(crate::rib::origins::Counted::of)
    }

    /// Kernel map ids of the IPv4 main table, the IPv4 alternate tables and
    /// the IPv4 source table: the ids the proof of concept's protocol names
    /// its tables by (`bpftool map show` lists them).
    #[cfg(feature = "agent")]
    pub(crate) fn table_map_ids(&self) -> Result<[u32; 3], MapError> {
        let m = self.fib.maps();
        Ok([m.routes_v4.id()?, m.alt_routes_v4.id()?, m.sources_v4.id()?])
    }

    /// Compares the kernel's maps with the RIB (what this library programmed)
    /// and returns every difference; empty when the dataplane does exactly
    /// what the RIB says. A difference means something else wrote the maps,
    /// or a process died between a kernel write and saving its state.
    ///
    /// # Errors
    /// [`MapError`] when a map cannot be read.
    pub(crate) fn verify(&self) -> Result<Vec<Difference>, MapError> {
        self.fib.verify()
    }

    /// Makes the kernel's maps agree with the RIB again and returns what
    /// differed (empty: nothing to do). [`Encapsulator::open`] does it on
    /// adoption, since a process killed between a kernel write and saving
    /// its state leaves the kernel one unacknowledged change ahead.
    ///
    /// # Errors
    /// [`RouteError::Map`] when the kernel refuses a write;
    /// [`RouteError::ReadOnly`] on a read-only handle.
    pub(crate) fn repair(&self) -> Result<Vec<Difference>, RouteError> {
        self.fib.repair()
    }

    /// The kernel memory of every map of this dataplane, by map name, in
    /// bytes (what each map allocated: fixed for arrays, per entry present
    /// for LPM tries and hash maps).
    ///
    /// # Errors
    /// [`MapError`] when a map's fdinfo cannot be read.
    pub(crate) fn map_memory(&self) -> Result<Vec<(&'static str, u64)>, MapError> {
        self.fib.maps().all().into_iter().map(|m| Ok((m.name(), m.memory()?))).collect()
    }

    /// Adds or atomically replaces a route (its policy and traffic class)
    /// for exactly its prefix: a packet sees the old route or the new, never
    /// none, in `table` ([`Table::Main`], or an alternate table selected by
    /// source prefix, see [`Encapsulator::sources`]).
    ///
    /// ```no_run
    /// // Not run: needs root (it loads the dataplane).
    /// use lnetd_host_encap::{Encapsulator, Label, Route, Table};
    /// let enc = Encapsulator::builder().load()?;
    /// // One label (the proof of concept's binding SID), a stack, a policy.
    /// enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse()?, Label::new(1_000_000)?.into()))?;
    /// enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse()?, "16001/16002".parse()?))?;
    /// let te = Route::with_policy("203.0.113.0/24".parse()?, "16001@7,16003@3".parse()?);
    /// enc.set_route(Table::Main, &te)?;
    /// // The same in alternate table 5 (selected by source prefix).
    /// enc.set_route(Table::alternate(5).ok_or("table 0")?, &te)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RouteError::Prefix`] for host bits set; [`RouteError::LocalAddress`]
    /// for a /32 or /128 of one of the host's own addresses (main table
    /// only); [`RouteError::TableFull`] (family "policy" when the policy
    /// table is full); [`RouteError::Map`]. The table is unchanged on error.
    pub fn set_route(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        self.set_route_in(table, route)
    }

    /// Changes a shared policy object: the routes whose policy has
    /// `policy`'s name (see [`Policy::with_name`]) all take its lists,
    /// weights, entropy label and lists out of service, through one write to
    /// the dataplane's policy table, however many they are; no route entry
    /// is rewritten. A [`Policy::invalid`] sends them unlabelled until the
    /// next change. Their traffic class stays. `None` when no route uses the
    /// name (nothing is written: the name's first route creates the object).
    ///
    /// ```no_run
    /// use lnetd_host_encap::{Encapsulator, Policy, Route, Table};
    /// let enc = Encapsulator::builder().load()?;
    /// let blue = "16001/16002".parse::<Policy>()?.with_name("blue")?;
    /// for i in 0..1000u32 {
    ///     let prefix = format!("10.{}.{}.0/24", i / 256, i % 256).parse()?;
    ///     enc.set_route(Table::Main, &Route::with_policy(prefix, blue.clone()))?;
    /// }
    /// let update = enc.update_policy(&"17001@1,17002@1".parse::<Policy>()?.with_name("blue")?)?;
    /// assert_eq!(update.map(|u| (u.routes, u.map_operations)), Some((1000, 1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RouteError::PolicyObject`] for a policy without a name;
    /// [`RouteError::Map`]; nothing changed then.
    pub fn update_policy(&self, policy: &Policy) -> Result<Option<crate::labels::PolicyUpdate>, RouteError> {
        self.fib.update_policy(policy)
    }

    /// Adds or atomically replaces a route in `table` (see [`Table`]).
    ///
    /// # Errors
    /// As [`Encapsulator::set_route`].
    fn set_route_in(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        // Checked where a user's route enters, not in the FIB: BGP's routes
        // pass through it too, and a controller's list is its own to send.
        route.check_explicit_null()?;
        self.fib.set_route(table, route)?;
        log::debug!("route {} -> {} ({:?})", route.prefix, route.policy, route.tc);
        Ok(())
    }

    /// Makes the tables (every route of every table, the policies, the
    /// sources, the DSCP table) equal to `desired`, with the fewest map
    /// operations, batched: routes that stay are not touched, routes that
    /// change are replaced in place (a packet sees the old stack or the new,
    /// never none), policies are written before the routes that name them,
    /// additions before deletions. The whole state is validated before the
    /// kernel is touched; a refused entry, a state that does not fit the
    /// tables, or a kernel refusal part-way (undone) leaves everything as it was.
    ///
    /// `desired` is a [`DesiredState`] (validated by the call) or a
    /// [`ValidState`](crate::desired::ValidState) (validate once with [`DesiredState::validate`], apply or
    /// dry-run it many times), borrowed or owned (an owned `ValidState`
    /// moves its routes into the bookkeeping instead of copying them).
    /// [`ApplyOptions::dry_run`] reports what would change without changing
    /// anything.
    ///
    /// ```no_run
    /// use lnetd_host_encap::{ApplyOptions, DesiredState, Encapsulator};
    /// let enc = Encapsulator::builder().load()?;
    /// let desired = DesiredState::from_toml(r#"
    ///     [[routes]]
    ///     prefix = "0.0.0.0/0"
    ///     policy = "1000000"
    ///     [[routes]]
    ///     prefix = "198.51.100.0/24"
    ///     policy = "16001/16002@7,16003@3"
    ///     entropy_label = "bottom"
    /// "#)?;
    /// println!("would: {}", enc.apply(&desired, ApplyOptions::default().dry_run(true))?);
    /// let valid = desired.validate()?;
    /// println!("{}", enc.apply(valid, ApplyOptions::default())?);
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`RouteError::Invalid`] naming the entry refused; [`RouteError::TableFull`];
    /// [`RouteError::Map`] (undone); [`RouteError::NotSaved`].
    pub fn apply<'a>(
        &self,
        desired: impl Into<ApplyInput<'a>>,
        options: ApplyOptions,
    ) -> Result<ApplyReport, RouteError> {
        let desired = match desired.into().0 {
            Input::Desired(desired) => Desired::Owned(desired.validate()?),
            Input::Valid(valid) => Desired::Borrowed(valid),
            // Owned, a large change moves its routes into the RIB instead of copying them.
            Input::ValidOwned(valid) => Desired::Owned(valid),
        };
        let report = self.fib.apply(desired, options)?;
        if !options.is_dry_run() {
            log::info!("apply: {report}");
        }
        Ok(report)
    }

    /// Applies the routes that change (an origin's delta), sources and DSCP
    /// table as they are: batched, ordered and undone on refusal like an
    /// apply, at the cost of the changes alone (no diff of the table).
    #[cfg(feature = "bgp")]
    pub(crate) fn apply_patch(
        &self,
        patch: &crate::rib::diff::Patch,
        origins: &crate::fib::apply::Origins,
    ) -> Result<ApplyReport, RouteError> {
        let report = self.fib.apply_from(Desired::Patch(patch), ApplyOptions::default(), Some(origins))?;
        log::debug!("patch: {report}");
        Ok(report)
    }

    /// As [`Encapsulator::apply`] of an owned state, recording the routes'
    /// origins (those absent are static).
    #[cfg(feature = "agent")]
    pub(crate) fn apply_from(
        &self,
        desired: ValidState,
        options: ApplyOptions,
        origins: &crate::fib::apply::Origins,
    ) -> Result<ApplyReport, RouteError> {
        self.fib.apply_from(Desired::Owned(desired), options, Some(origins))
    }

    /// As [`Encapsulator::set_route_in`], recording the route's origin (`None`: static).
    #[cfg(feature = "agent")]
    pub(crate) fn set_route_from(
        &self,
        table: Table,
        route: &Route,
        origin: Option<crate::rib::origins::Noted>,
    ) -> Result<(), RouteError> {
        self.fib.set_route_from(table, route, origin)
    }

    /// The origins the RIB records: of each route that is not static, and
    /// what the origins said of BGP's policies.
    #[cfg(feature = "agent")]
    pub(crate) fn origin_records(&self) -> (crate::fib::apply::Origins, Vec<u8>) {
        self.fib.read(|rib| (rib.origin_of.iter().map(|(id, o)| (*id, *o)).collect(), rib.origin_notes.clone()))
    }

    /// Visits every route in force (set-aside ones last), resolved, with the
    /// origin the RIB records for it, under the RIB's lock; returns what the
    /// origins said of BGP's policies. What an agent's start sorts into its
    /// origins' tables: one pass, no copy of the table in between.
    #[cfg(feature = "bgp")]
    pub(crate) fn visit_routes_with_origins(
        &self,
        mut visit: impl FnMut((Table, IpNetwork), Route, Option<crate::rib::origins::Noted>),
    ) -> Vec<u8> {
        self.fib.read(|rib| {
            // Both sorted by id: read in step, not looked up per route.
            let mut noted = rib.origin_of.iter().peekable();
            for (id, route) in rib.routes.iter() {
                while noted.next_if(|(n, _)| *n < id).is_some() {}
                let origin = noted.next_if(|(n, _)| *n == id).map(|(_, o)| *o);
                visit(*id, rib.resolve(id, route).into_owned(), origin);
            }
            for (prefix, route) in &rib.shadowed {
                let id = (Table::Main, *prefix);
                visit(id, route.clone(), rib.origin_of.get(&id).copied());
            }
            rib.origin_notes.clone()
        })
    }

    /// The origin the RIB records for the route `id` (none: static).
    #[cfg(all(feature = "agent", not(feature = "bgp")))]
    pub(crate) fn recorded_origin(&self, id: (Table, IpNetwork)) -> crate::rib::origins::Origin {
        self.fib.read(|rib| rib.origin_of.get(&id).map_or(crate::rib::origins::Origin::Static, |n| n.origin()))
    }

    /// As [`Encapsulator::origin_records`], of the routes covering `addr`
    /// only (a reader that has not read its RIB reads only those).
    #[cfg(feature = "bgp")]
    pub(crate) fn origin_records_covering(&self, addr: IpAddr) -> (crate::fib::apply::Origins, Vec<u8>) {
        self.fib.read_covering(&[addr], |rib| {
            let covering = rib.origin_of.iter().filter(|((_, prefix), _)| prefix.contains(addr));
            (covering.map(|(id, o)| (*id, *o)).collect(), rib.origin_notes.clone())
        })
    }

    /// Replaces what the origins say of BGP's policies (durable like a change).
    #[cfg(feature = "bgp")]
    pub(crate) fn set_origin_notes(&self, notes: Vec<u8>) -> Result<(), RouteError> {
        self.fib.set_origin_notes(notes)
    }

    /// The tables in force, typed: what an apply of it would leave
    /// unchanged (set-aside routes included, in the main table). For the
    /// agent without BGP (with BGP, the origins read the RIB through
    /// [`Encapsulator::visit_routes_with_origins`]); a library user reads
    /// `desired_state().validate()`.
    #[cfg(all(feature = "agent", not(feature = "bgp")))]
    pub(crate) fn valid_state(&self) -> ValidState {
        self.fib.read(|rib| {
            let mut routes = rib.resolved_routes();
            for (prefix, route) in &rib.shadowed {
                routes.insert((Table::Main, *prefix), route.clone());
            }
            ValidState::from_parts(routes, rib.sources.clone(), rib.dscp)
        })
    }

    /// The tables in force as a desired state: what `apply` of it would leave
    /// unchanged (set-aside routes included).
    pub fn desired_state(&self) -> DesiredState {
        self.fib.read(|rib| {
            // One writer of a route's words: the serde form of `Route`.
            let route =
                |table: Table, r: &Route| DesiredRoute { table: Some(table.id()).filter(|t| *t != 0), ..r.into() };
            let mut routes: Vec<DesiredRoute> =
                rib.routes.iter().map(|(id, r)| route(id.0, &rib.resolve(id, r))).collect();
            routes.extend(rib.shadowed.values().map(|r| route(Table::Main, r)));
            DesiredState {
                routes,
                sources: rib
                    .sources
                    .iter()
                    .map(|(p, t)| DesiredSource { prefix: p.to_string(), table: t.id() })
                    .collect(),
                dscp_map: Some(rib.dscp.values().to_vec()).filter(|v| v[..] != DscpMap::default().values()[..]),
            }
        })
    }

    /// What the route for exactly `prefix` in `table` has labelled, in total and per
    /// segment list; `None` when there is no such route. Counts are kept when
    /// the route or its policy is replaced (per list position) and start from
    /// zero for a route added anew.
    ///
    /// # Errors
    /// [`RouteError::Prefix`] for host bits set; [`RouteError::Map`].
    pub fn route_counters(&self, table: Table, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        self.route_counters_in(table, prefix)
    }

    /// As [`Encapsulator::route_counters`], for a route of `table`.
    ///
    /// # Errors
    /// As [`Encapsulator::route_counters`].
    fn route_counters_in(&self, table: Table, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        self.fib.route_counters(table, prefix)
    }

    /// Every route of every table with its counters (routes without a
    /// counter slot have `counted == false`), and the routes set aside for
    /// the host's own addresses (`set_aside`), which an export must carry.
    ///
    /// # Errors
    /// [`MapError`] when a counter cannot be read.
    pub fn counted_routes(&self) -> Result<Vec<CountedRoute>, MapError> {
        let rows = self.fib.counted_routes()?;
        Ok(rows
            .into_iter()
            .map(|(table, route, counters, set_aside)| CountedRoute { table, route, counters, set_aside })
            .collect())
    }

    /// Verify and repair, test runs, run time, map memory, pins (see
    /// [`Diagnostics`]).
    pub fn diagnostics(&self) -> Diagnostics<'_> {
        Diagnostics { enc: self }
    }

    /// What the dataplane does with `probe`: the real program runs on a
    /// frame built from it (BPF_PROG_TEST_RUN) and the answer says the
    /// verdict, the route and segment list chosen and the stack pushed. Like
    /// `ip route get`, for labels.
    ///
    /// Probes are not counted: no counter of [`Encapsulator::stats`] or
    /// [`Encapsulator::route_counters`] moves. They run in a copy of the
    /// program that shares the dataplane's tables but has counters of its
    /// own, loaded at the first call (one more verifier pass; held until
    /// the encapsulator is dropped, and pinned beside a pinned dataplane for
    /// the next process); probes are serialised, across processes too.
    ///
    /// ```no_run
    /// use lnetd_host_encap::{Encapsulator, diagnostics::Probe};
    /// let enc = Encapsulator::open("eth1")?;
    /// println!("{}", enc.explain(&Probe::to("198.51.100.7".parse().unwrap()))?);
    /// # Ok::<(), lnetd_host_encap::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`TestRunError`] when the program cannot be run; [`RouteError::Invalid`]
    /// for a probe that cannot be built (mixed families, DSCP above 63);
    /// [`LoadError`] when the probe copy cannot be loaded.
    pub fn explain(&self, probe: &Probe) -> Result<Explanation, Error> {
        let frame = probe.frame().map_err(|reason| {
            RouteError::Invalid(crate::domain::desired::DesiredError { what: "probe".into(), reason })
        })?;
        let mut slot = self.probe.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let program = match slot.take() {
            Some(program) => program,
            None => match self.probe_pins() {
                Some(pins) => ProbeProgram::open_or_load(self.fib.config(), self.fib.maps(), &pins)?,
                None => ProbeProgram::load(self.fib.config(), self.fib.maps())?,
            },
        };
        let ran = program.run(&frame);
        *slot = Some(program);
        drop(slot);
        let (run, moved) = ran?;
        let (route, fallback) =
            self.fib.read_covering(&[probe.dst], |rib| match rib.lookup(probe.source(), probe.dst) {
                Lookup::Route(table, route) => (Some((table, route.into_owned())), "no_route"),
                Lookup::Local => (None, "local"),
                Lookup::NoRoute => (None, "no_route"),
            });
        let stack = explain::pushed_stack(&run.frame);
        // The probe copy's counter says why; only if it moved none (never
        // expected) do the verdict and the RIB decide.
        let counted: Vec<&'static str> = moved.named().iter().filter(|(_, c)| c.packets > 0).map(|(n, _)| *n).collect();
        let outcome = match (counted.as_slice(), run.action) {
            ([one], _) => one,
            (_, XdpAction::Tx) => "labelled",
            (_, XdpAction::Aborted) => "aborted",
            _ if probe.dst.is_multicast() => "multicast",
            _ => fallback,
        };
        let list = route.as_ref().and_then(|(_, r)| explain::list_of(r, &stack));
        let egress = self.attachment().is_some_and(|a| a.mode == AttachedMode::Egress);
        Ok(Explanation { action: run.action, outcome, route, list, stack, egress })
    }

    /// Replaces the DSCP -> traffic class table used by routes with
    /// [`crate::routes::Tc::FromDscp`], atomically.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn set_dscp_map(&self, map: &DscpMap) -> Result<(), RouteError> {
        self.fib.set_dscp_map(map)
    }

    /// The DSCP -> traffic class table in force.
    pub fn dscp_map(&self) -> DscpMap {
        self.fib.read(|rib| rib.dscp)
    }

    /// Removes the route for exactly `prefix` from `table`; `Ok(false)` when
    /// there was none.
    ///
    /// # Errors
    /// [`RouteError::Prefix`] for host bits set; [`RouteError::Map`].
    pub fn remove(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        self.remove_in(table, prefix)
    }

    /// Removes the route for exactly `prefix` from `table`; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// As [`Encapsulator::remove`].
    fn remove_in(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let removed = self.fib.remove(table, prefix)?;
        log::debug!("route {prefix} removed from {table:?}: {removed}");
        Ok(removed)
    }

    /// Sends packets whose source address falls in `prefix` (longest match)
    /// through alternate `table`: its route for the destination if it has one,
    /// else the main table's. Replaces any table `prefix` selected.
    ///
    /// # Errors
    /// [`RouteError::Prefix`]; [`RouteError::TableFull`]; [`RouteError::Map`].
    pub(crate) fn set_source(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        self.fib.set_source(prefix, table)?;
        log::debug!("source {prefix} -> {table:?}");
        Ok(())
    }

    /// Stops selecting a table by `prefix`; `Ok(false)` when it selected none.
    ///
    /// # Errors
    /// [`RouteError::Prefix`]; [`RouteError::Map`].
    pub(crate) fn remove_source(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        self.fib.remove_source(prefix)
    }

    /// The source prefixes that select alternate tables: set, remove, list
    /// (see [`Sources`]).
    pub fn sources(&self) -> Sources<'_> {
        Sources { enc: self }
    }

    /// The source prefixes and the tables they select.
    pub(crate) fn source_list(&self) -> Vec<(IpNetwork, Table)> {
        self.fib.read(|rib| rib.sources.iter().map(|(p, t)| (*p, *t)).collect())
    }

    /// Every route of `table` in force (IPv4 first, by prefix), from the RIB
    /// ([`Table::Main`]: routes set aside by a host address are not listed).
    ///
    /// # Errors
    /// None today; the `Result` is kept so that reads may consult the kernel.
    pub fn routes(&self, table: Table) -> Result<Vec<Route>, MapError> {
        self.routes_in(table)
    }

    /// How many routes, every table (see [`Diagnostics::route_count`]).
    pub(crate) fn route_count(&self) -> usize {
        self.fib.read(|rib| rib.routes.len() + rib.shadowed.len())
    }

    /// Every route of `table` in force, from the RIB.
    ///
    /// # Errors
    /// As [`Encapsulator::routes`].
    fn routes_in(&self, table: Table) -> Result<Vec<Route>, MapError> {
        Ok(self.fib.read(|rib| rib.routes_in(table)))
    }

    /// The counters, summed over CPUs. They only grow; use [`Stats::since`]
    /// for rates. In native mode, [`Stats::tx_errors`] is read from the
    /// driver's statistics (`ethtool -S`): the labelled frames it failed to
    /// send; see docs/counters.md.
    ///
    /// # Errors
    /// [`MapError`] when the kernel refuses the lookup.
    pub fn stats(&self) -> Result<Stats, MapError> {
        let mut stats = self.fib.stats()?;
        // Only the driver knows what became of XDP_TX frames in native (or offloaded) mode.
        let ifindex = self
            .attached()
            .as_ref()
            .filter(|a| matches!(a.info.mode, AttachedMode::Native | AttachedMode::Offload))
            .map(|a| a.info.ifindex);
        let sock = self.ethtool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let (Some(ifindex), Some(sock)) = (ifindex, sock.as_ref()) {
            // By index: the interface may have been renamed since the attach.
            stats.tx_errors = match sock.name_of(ifindex).and_then(|name| sock.stats(&name)) {
                Ok(driver) => ethtool::xdp_tx_errors(&driver),
                Err(errno) => {
                    log::debug!("ifindex {ifindex}: ethtool statistics unreadable ({errno})");
                    None
                }
            };
        }
        Ok(stats)
    }

    /// Re-reads the host's addresses (every interface of the calling thread's
    /// network namespace, plus IPv4 broadcast addresses) and installs each as a
    /// never-label host entry in the route tables, and returns how many there
    /// are. Done at every attach and every writer's adoption; call it again
    /// after addresses change (e.g. from a netlink address monitor, as
    /// `AddressWatcher` of the `watch` feature does): the entries are not updated by
    /// themselves. A host address wins over a route for the same /32 or /128.
    ///
    /// # Errors
    /// [`Error::Sys`] when the addresses cannot be read, [`Error::Route`] when
    /// the tables cannot be written (full, or refused by the kernel).
    pub fn refresh_local_addresses(&self) -> Result<usize, Error> {
        let addrs = crate::sys::host_addresses::current().map_err(|errno| Error::Sys { call: "getifaddrs", errno })?;
        let n = self.fib.sync_local(&addrs)?;
        log::debug!("{n} host addresses excluded from labelling");
        Ok(n)
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN, without any
    /// interface: for tests of what a configuration does to a given frame. The
    /// counters count it. The MTU checked is that of the calling thread's
    /// network namespace's loopback device.
    ///
    /// # Errors
    /// [`TestRunError::FrameTooLarge`] above [`crate::diagnostics::MAX_TEST_FRAME`] bytes, or
    /// [`TestRunError::Kernel`].
    pub(crate) fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        test_run::test_run(self.prog.as_fd(), frame)
    }

    /// How often the program ran and the time it spent, as the kernel counts
    /// it while [`crate::diagnostics::RunTimeStats`] (or `sysctl kernel.bpf_stats_enabled`)
    /// is on; zeros otherwise. Test runs count too, which is how the
    /// benchmarks time the program alone, without the syscall around it.
    ///
    /// # Errors
    /// The kernel's errno when the program info cannot be read.
    pub(crate) fn run_stats(&self) -> Result<RunStats, Error> {
        test_run::run_stats(self.prog.as_fd()).map_err(|errno| Error::Sys { call: "bpf_prog_get_info_by_fd", errno })
    }
}

impl Drop for Encapsulator {
    fn drop(&mut self) {
        // A pinned dataplane outlives its handle: that is what pinning is for.
        if self.attached().as_ref().is_some_and(|a| a.pins.is_some()) {
            return;
        }
        if let Err(e) = self.detach() {
            // The link fd closes below regardless, which detaches in the kernel.
            log::warn!("{e}");
        }
    }
}

fn store_attached(info: &Attachment) -> store::Attached {
    store::Attached { iface: info.iface.clone(), ifindex: info.ifindex, mode: info.mode }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encapsulator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encapsulator>();
    }
}
