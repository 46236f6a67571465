//! [`Encapsulator`]: the public handle on one loaded dataplane. Built by
//! [`EncapsulatorBuilder`] ([`builder`]), attached and pinned ([`attach`]),
//! or adopted from pins ([`adopt`]); this file holds what it does once it
//! has a dataplane: routes, apply, counters, diagnostics.

mod adopt;
mod attach;
mod builder;
mod diagnostics;
mod origins;

pub use adopt::AdoptOptions;
use attach::Attached;
pub use attach::Attachment;
pub use builder::EncapsulatorBuilder;

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
use crate::sys::rtnetlink::RtNetlink;
use crate::sys::test_run::{self, RunStats, TestRun, XdpAction};

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
    /// Sockets of the attached interface's namespace.
    netns: NetnsSockets,
    /// The program `explain` runs, loaded at the first probe.
    probe: Mutex<Option<ProbeProgram>>,
}

/// Sockets bound to the network namespace of the thread that opened them,
/// opened where the interface is (at attach or adoption) and used from any
/// thread: a caller that later runs elsewhere still reads that namespace.
/// Each has its own lock: a slow answer to one never holds up the other.
#[derive(Debug, Default)]
pub(crate) struct NetnsSockets {
    /// The driver's statistics (`ethtool -S`).
    pub(crate) ethtool: Mutex<Option<EthtoolSocket>>,
    /// The kernel's route to a destination (`explain` on egress).
    pub(crate) routes: Mutex<Option<RtNetlink>>,
}

impl NetnsSockets {
    /// Opens both in the calling thread's namespace; one that cannot be
    /// opened is missing, and what needs it is not known.
    pub(crate) fn open() -> NetnsSockets {
        let ethtool = EthtoolSocket::open()
            .inspect_err(|errno| log::debug!("no ethtool socket ({errno}): tx_errors will not be known"))
            .ok();
        let routes = RtNetlink::open()
            .inspect_err(|errno| log::debug!("no routing netlink socket ({errno}): explain reads no kernel route"))
            .ok();
        NetnsSockets { ethtool: Mutex::new(ethtool), routes: Mutex::new(routes) }
    }

    /// Replaces both by sockets of the calling thread's namespace.
    pub(crate) fn reopen(&self) {
        fn put<T>(into: &Mutex<Option<T>>, from: Mutex<Option<T>>) {
            *into.lock().unwrap_or_else(|p| p.into_inner()) = from.into_inner().unwrap_or_else(|p| p.into_inner());
        }
        let fresh = NetnsSockets::open();
        put(&self.ethtool, fresh.ethtool);
        put(&self.routes, fresh.routes);
    }
}

impl Encapsulator {
    /// Settings for a new encapsulator.
    pub fn builder() -> EncapsulatorBuilder {
        EncapsulatorBuilder::default()
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
        let sock = self.netns.ethtool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encapsulator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encapsulator>();
    }
}
