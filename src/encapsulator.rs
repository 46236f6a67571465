//! [`Encapsulator`]: the public handle on one loaded dataplane.

use std::sync::{Mutex, MutexGuard};

use ipnetwork::IpNetwork;
use nix::errno::Errno;

use crate::abi::types::encap_limits;
use crate::config::{AttachedMode, MtuPolicy, TtlMode, XdpMode};
use crate::dataplane::{Dataplane, LoadConfig, RouteCounters};
use crate::error::{AttachError, Error, LoadError, MapError, RouteError, TestRunError};
use crate::label::{DscpMap, Label, LabelStack};
use crate::policy::Policy;
use crate::route::{Route, Table};
use crate::stats::Stats;
use crate::xdp::{self, TestRun, XdpLink};

/// Settings for [`Encapsulator`], applied when the program is loaded.
///
/// ```no_run
/// use lnetd_host_encap::{Encapsulator, MtuPolicy, TtlMode, XdpMode};
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
            },
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

    /// Capacity of the IPv4 and IPv6 route tables (defaults 2,097,152 and
    /// 524,288). Memory is used per route present, not per capacity.
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

    /// Loads the program into the kernel without attaching it: routes can be
    /// programmed before any traffic sees them, and
    /// [`Encapsulator::test_run`] works.
    ///
    /// # Errors
    /// [`LoadError`]: missing capabilities (named), a fixed TTL of 0, a zero
    /// capacity, or the kernel refusing the program.
    pub fn load(self) -> Result<Encapsulator, LoadError> {
        let dataplane = Dataplane::load(self.config)?;
        log::debug!("XDP encapsulator loaded ({:?})", self.config);
        Ok(Encapsulator { dataplane, attachment: Mutex::new(None) })
    }

    /// Loads, then attaches to `iface` (see [`Encapsulator::attach`]).
    ///
    /// # Errors
    /// Any [`LoadError`] or [`AttachError`].
    pub fn attach(self, iface: &str, mode: XdpMode) -> Result<Encapsulator, Error> {
        let enc = self.load()?;
        enc.attach(iface, mode)?;
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
    link: XdpLink,
}

/// Pushes MPLS label stacks onto the IPv4/IPv6 packets an interface receives,
/// by longest-prefix match on the destination, and sends them back out of the
/// same interface (XDP_TX) with the MACs swapped: the "router on a stick"
/// topology, where the router expands a binding SID or follows the stack.
///
/// Never labelled, always passed to the host untouched: non-IP frames,
/// malformed frames, broadcast and multicast (by MAC or IP), packets to one of
/// the host's own addresses, and packets no route covers.
///
/// The program is attached through a BPF link: dropping the encapsulator, or
/// the process dying, detaches it. All methods take `&self`; it is `Send` and
/// `Sync`, so a controller thread can program routes while another reads stats.
///
/// Requires Linux 5.18+ (BPF links for XDP, `bpf_check_mtu`, live-frame test
/// runs), BTF, and CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN (or root).
///
/// ```no_run
/// use lnetd_host_encap::{Encapsulator, Label, XdpMode};
/// let enc = Encapsulator::builder().attach("eth0", XdpMode::Auto)?;
/// enc.set_label("0.0.0.0/0".parse()?, Label::new(1_000_000)?)?;
/// enc.set_labels("198.51.100.0/24".parse()?, "16001/16002".parse()?)?;
/// println!("{:?}", enc.stats()?.labelled);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Encapsulator {
    dataplane: Dataplane,
    attachment: Mutex<Option<Attached>>,
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
    pub fn attach(&self, iface: &str, mode: XdpMode) -> Result<AttachedMode, AttachError> {
        let mut slot = self.attached();
        if let Some(current) = slot.as_ref() {
            return Err(AttachError::AlreadyAttached { iface: current.info.iface.clone() });
        }
        let ifindex = nix::net::if_::if_nametoindex(iface)
            .map_err(|_| AttachError::NoSuchInterface { iface: iface.to_owned() })?;
        self.refresh_local_addresses().map_err(|e| AttachError::HostAddresses(Box::new(e)))?;

        let (link, got) = xdp::attach(self.dataplane.prog(), ifindex, mode).map_err(|tried| {
            let iface = iface.to_owned();
            match tried.last().map(|t| t.1) {
                Some(errno @ (Errno::EBUSY | Errno::EEXIST)) => AttachError::InterfaceBusy { iface, errno },
                Some(Errno::EPERM | Errno::EACCES) => AttachError::Privileges {
                    iface,
                    missing: crate::privileges::missing().unwrap_or_else(|| {
                        crate::privileges::MissingCapabilities(vec!["CAP_NET_ADMIN"])
                    }),
                },
                Some(Errno::ENODEV) => AttachError::NoSuchInterface { iface },
                _ => AttachError::ModeUnsupported {
                    iface,
                    mode,
                    tried,
                    hint: match mode {
                        XdpMode::Native => "the driver has no native XDP; use XdpMode::Generic or XdpMode::Auto",
                        XdpMode::Offload => {
                            "offload needs a NIC that runs BPF and a program without helpers it lacks; use Native or Auto"
                        }
                        _ => "see the kernel log (dmesg) and the interface's driver",
                    },
                },
            }
        })?;
        log::info!("XDP encapsulator attached to {iface} (ifindex {ifindex}) in {got} mode");
        *slot = Some(Attached { info: Attachment { iface: iface.to_owned(), ifindex, mode: got }, link });
        Ok(got)
    }

    /// Where it is attached, if anywhere.
    pub fn attachment(&self) -> Option<Attachment> {
        self.attached().as_ref().map(|a| a.info.clone())
    }

    /// Detaches; routes and counters are kept, and it can be attached again.
    /// Returns the attachment removed, if any. An interface deleted meanwhile
    /// counts as detached.
    ///
    /// # Errors
    /// [`AttachError::Detach`] when the kernel refuses; the attachment is kept.
    pub fn detach(&self) -> Result<Option<Attachment>, AttachError> {
        let mut slot = self.attached();
        let Some(current) = slot.as_ref() else { return Ok(None) };
        match current.link.detach() {
            Ok(()) | Err(Errno::ENOLINK | Errno::ENODEV | Errno::EINVAL) => {}
            Err(errno) => return Err(AttachError::Detach { iface: current.info.iface.clone(), errno }),
        }
        let removed = slot.take().map(|a| a.info);
        if let Some(info) = &removed {
            log::info!("XDP encapsulator detached from {}", info.iface);
        }
        Ok(removed)
    }

    /// Sends packets to `prefix` through a single label (traffic class 0).
    /// Replaces any route for exactly that prefix, atomically.
    ///
    /// # Errors
    /// [`RouteError::Prefix`] for host bits set; [`RouteError::LocalAddress`]
    /// for a /32 or /128 of one of the host's own addresses;
    /// [`RouteError::TableFull`]; [`RouteError::Map`]. The table is unchanged
    /// on error.
    pub fn set_label(&self, prefix: IpNetwork, label: Label) -> Result<(), RouteError> {
        self.set_route(&Route::new(prefix, LabelStack::single(label)))
    }

    /// Sends packets to `prefix` through a stack of labels, top first
    /// (traffic class 0). Replaces any route for exactly that prefix, atomically.
    ///
    /// # Errors
    /// As [`Encapsulator::set_label`].
    pub fn set_labels(&self, prefix: IpNetwork, stack: LabelStack) -> Result<(), RouteError> {
        self.set_route(&Route::new(prefix, stack))
    }

    /// Adds or atomically replaces a route, traffic class included.
    ///
    /// # Errors
    /// As [`Encapsulator::set_label`].
    pub fn set_route(&self, route: &Route) -> Result<(), RouteError> {
        self.set_route_in(Table::Main, route)
    }

    /// Adds or atomically replaces a route in `table` (see [`Table`]).
    ///
    /// # Errors
    /// As [`Encapsulator::set_label`]; host addresses are refused in the main table only.
    pub fn set_route_in(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        self.dataplane.set_route(table, route)?;
        log::debug!("route {} -> {} ({:?})", route.prefix, route.policy, route.tc);
        Ok(())
    }

    /// Sends packets to `prefix` through an SR policy: each flow takes one of
    /// its segment lists, in proportion to the weights (traffic class 0).
    /// Replaces any route for exactly that prefix, atomically.
    ///
    /// # Errors
    /// As [`Encapsulator::set_label`], and [`RouteError::TableFull`] with
    /// family "policy" when the policy table is full.
    pub fn set_policy(&self, prefix: IpNetwork, policy: Policy) -> Result<(), RouteError> {
        self.set_route(&Route::with_policy(prefix, policy))
    }

    /// What the route for exactly `prefix` has labelled, in total and per
    /// segment list; `None` when there is no such route. Counts are kept when
    /// the route or its policy is replaced (per list position) and start from
    /// zero for a route added anew.
    ///
    /// # Errors
    /// [`RouteError::Prefix`] for host bits set; [`RouteError::Map`].
    pub fn route_counters(&self, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        self.dataplane.route_counters(Table::Main, prefix)
    }

    /// As [`Encapsulator::route_counters`], for a route of `table`.
    ///
    /// # Errors
    /// As [`Encapsulator::route_counters`].
    pub fn route_counters_in(&self, table: Table, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        self.dataplane.route_counters(table, prefix)
    }

    /// Replaces the DSCP -> traffic class table used by routes with
    /// [`crate::Tc::FromDscp`], atomically.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn set_dscp_map(&self, map: &DscpMap) -> Result<(), MapError> {
        self.dataplane.set_dscp_map(map)
    }

    /// The DSCP -> traffic class table in force.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn dscp_map(&self) -> Result<DscpMap, MapError> {
        self.dataplane.dscp_map()
    }

    /// Removes the route for exactly `prefix`; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// [`RouteError::Prefix`] for host bits set; [`RouteError::Map`].
    pub fn remove(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        self.remove_in(Table::Main, prefix)
    }

    /// Removes the route for exactly `prefix` from `table`; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// As [`Encapsulator::remove`].
    pub fn remove_in(&self, table: Table, prefix: IpNetwork) -> Result<bool, RouteError> {
        let removed = self.dataplane.remove(table, prefix)?;
        log::debug!("route {prefix} removed from {table:?}: {removed}");
        Ok(removed)
    }

    /// Sends packets whose source address falls in `prefix` (longest match)
    /// through alternate `table`: its route for the destination if it has one,
    /// else the main table's. Replaces any table `prefix` selected.
    ///
    /// # Errors
    /// [`RouteError::Prefix`]; [`RouteError::TableFull`]; [`RouteError::Map`].
    pub fn set_source(&self, prefix: IpNetwork, table: Table) -> Result<(), RouteError> {
        self.dataplane.set_source(prefix, table)?;
        log::debug!("source {prefix} -> {table:?}");
        Ok(())
    }

    /// Stops selecting a table by `prefix`; `Ok(false)` when it selected none.
    ///
    /// # Errors
    /// [`RouteError::Prefix`]; [`RouteError::Map`].
    pub fn remove_source(&self, prefix: IpNetwork) -> Result<bool, RouteError> {
        self.dataplane.remove_source(prefix)
    }

    /// The source prefixes and the tables they select.
    pub fn sources(&self) -> Vec<(IpNetwork, Table)> {
        self.dataplane.sources()
    }

    /// Every route, read back from the kernel's tables (IPv4 first). Under
    /// concurrent changes it reflects some interleaving of them.
    ///
    /// # Errors
    /// [`MapError`] when the kernel refuses a lookup.
    pub fn routes(&self) -> Result<Vec<Route>, MapError> {
        self.dataplane.routes(Table::Main)
    }

    /// Every route of `table`, read back from the kernel.
    ///
    /// # Errors
    /// [`MapError`] when the kernel refuses a lookup.
    pub fn routes_in(&self, table: Table) -> Result<Vec<Route>, MapError> {
        self.dataplane.routes(table)
    }

    /// The counters, summed over CPUs. They only grow; use [`Stats::since`]
    /// for rates.
    ///
    /// # Errors
    /// [`MapError`] when the kernel refuses the lookup.
    pub fn stats(&self) -> Result<Stats, MapError> {
        self.dataplane.stats()
    }

    /// Re-reads the host's addresses (every interface of the calling thread's
    /// network namespace, plus IPv4 broadcast addresses) and installs each as a
    /// never-label host entry in the route tables, and returns how many there
    /// are. Done at every attach; call it again after addresses change (e.g.
    /// from a netlink address monitor): the entries are not updated by
    /// themselves. A host address wins over a route for the same /32 or /128.
    ///
    /// # Errors
    /// [`Error::Sys`] when the addresses cannot be read, [`Error::Route`] when
    /// the tables cannot be written (full, or refused by the kernel).
    pub fn refresh_local_addresses(&self) -> Result<usize, Error> {
        let addrs = crate::host_addresses::current().map_err(|errno| Error::Sys { call: "getifaddrs", errno })?;
        let n = self.dataplane.sync_local(&addrs)?;
        log::debug!("{n} host addresses excluded from labelling");
        Ok(n)
    }

    /// Runs the program once on `frame` with BPF_PROG_TEST_RUN, without any
    /// interface: for tests of what a configuration does to a given frame. The
    /// counters count it. The MTU checked is that of the calling thread's
    /// network namespace's loopback device.
    ///
    /// # Errors
    /// [`TestRunError::FrameTooLarge`] above [`xdp::MAX_TEST_FRAME`] bytes, or
    /// [`TestRunError::Kernel`].
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, TestRunError> {
        xdp::test_run(self.dataplane.prog(), frame)
    }

    /// How often the program ran and the time it spent, as the kernel counts
    /// it while [`crate::RunTimeStats`] (or `sysctl kernel.bpf_stats_enabled`)
    /// is on; zeros otherwise. Test runs count too, which is how the
    /// benchmarks time the program alone, without the syscall around it.
    ///
    /// # Errors
    /// The kernel's errno when the program info cannot be read.
    pub fn run_stats(&self) -> Result<xdp::RunStats, Error> {
        xdp::run_stats(self.dataplane.prog()).map_err(|errno| Error::Sys { call: "bpf_prog_get_info_by_fd", errno })
    }
}

impl Drop for Encapsulator {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            // The link fd closes below regardless, which detaches in the kernel.
            log::warn!("{e}");
        }
    }
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
