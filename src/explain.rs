//! What the dataplane does with a packet, found by running the real program
//! on a synthesized frame (BPF_PROG_TEST_RUN): like `ip route get`, for labels.
//!
//! Probes are not traffic: they run in a probe copy of the program, loaded
//! once (on the first probe) against the dataplane's own tables (routes,
//! policies, sources, host addresses, DSCP map, route cache) but with
//! counter maps of its own, so no counter of the dataplane moves, and the
//! copy's counters say exactly which way out the probe took, even under
//! live traffic. The production program is not changed at all: no flag is
//! tested per packet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::dataplane::{self, EncapMaps};
use crate::domain::label::{decode_stack, LabelStackEntry};
use crate::domain::route::{Route, Table};
use crate::error::{Error, LoadError};
use crate::rib::store::LoadConfig;
use crate::stats::Stats;
use crate::sys::bpffs;
use crate::sys::map::BpfMap;
use crate::sys::test_run::{self, TestRun, XdpAction};

mod frame;

/// The probe copy of the XDP program and its own counters.
#[derive(Debug)]
pub(crate) struct ProbeProgram {
    prog: OwnedFd,
    counters: BpfMap,
    /// A pinned copy is shared by every process that explains: a lock file
    /// that serialises their runs, so each reads only its own probe's counter.
    shared: Option<PathBuf>,
}

/// Where a pinned dataplane keeps its probe copies: on bpffs, and the lock
/// file (in its state directory) that serialises their runs across processes.
#[derive(Debug)]
pub(crate) struct ProbePins {
    pub probes: PathBuf,
    pub lock: PathBuf,
}

impl ProbeProgram {
    /// Loads the copy against `maps`' tables (one verifier pass, as long as
    /// the dataplane's own load).
    pub(crate) fn load(config: &LoadConfig, maps: &EncapMaps) -> Result<ProbeProgram, LoadError> {
        let (prog, counters) = dataplane::load_probe(config, maps)?;
        log::debug!("explain: probe program loaded (counters of its own)");
        Ok(ProbeProgram { prog, counters, shared: None })
    }

    /// The directory name of this build's probe copy for `maps` (a new
    /// attachment has new maps, so a copy bound to old ones is never found).
    fn pin_name(config: &LoadConfig, maps: &EncapMaps) -> Option<String> {
        let dataplane = maps.settings.id().ok()?;
        Some(format!("{:016x}", dataplane::probe_id(config, dataplane)))
    }

    /// The probe copy pinned by an earlier process of this build for this
    /// dataplane, or a new one, pinned for the next: a command's `get` then
    /// costs no verifier pass. Pinning is best effort (a probe that cannot
    /// be pinned still runs).
    pub(crate) fn open_or_load(
        config: &LoadConfig,
        maps: &EncapMaps,
        pins: &ProbePins,
    ) -> Result<ProbeProgram, LoadError> {
        let Some(name) = Self::pin_name(config, maps) else { return Self::load(config, maps) };
        let dir = pins.probes.join(&name);
        if let (Ok(prog), Ok(counters)) = (bpffs::get(&dir.join("prog")), bpffs::get(&dir.join("counters"))) {
            if let Ok(counters) = BpfMap::from_fd(counters, "counters") {
                log::debug!("explain: probe program reused from {}", dir.display());
                return Ok(ProbeProgram { prog, counters, shared: Some(pins.lock.clone()) });
            }
        }
        let mut probe = ProbeProgram::load(config, maps)?;
        match probe.pin(&pins.probes, &name) {
            Ok(()) => {
                log::debug!("explain: probe program pinned in {}", dir.display());
                probe.shared = Some(pins.lock.clone());
            }
            Err(e) => log::debug!("explain: probe program not pinned in {}: {e}", dir.display()),
        }
        Ok(probe)
    }

    /// Pins the copy as `probes/name`, whole or not at all: both objects go
    /// into a directory of this process's own, renamed into place (a process
    /// killed half way leaves no half copy under the name). `probes` is
    /// created only inside existing pins: never again after a `detach`.
    fn pin(&self, probes: &Path, name: &str) -> std::io::Result<()> {
        match std::fs::DirBuilder::new().mode(0o700).create(probes) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        // bpffs refuses names with a dot.
        let building = probes.join(format!("{name}-pinning-{}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&building)?;
        let pinned = bpffs::pin(self.counters.fd(), &building.join("counters"))
            .and_then(|()| bpffs::pin(self.prog.as_fd(), &building.join("prog")))
            .map_err(std::io::Error::from)
            .and_then(|()| std::fs::rename(&building, probes.join(name)));
        if pinned.is_err() {
            // Another process may have pinned its copy first: the same program.
            let _ = std::fs::remove_dir_all(&building);
        }
        pinned
    }

    /// Removes the probe copies pinned under `probes` other than this
    /// build's for `maps` (a program was replaced: theirs explain a program
    /// that no longer runs).
    pub(crate) fn remove_others(config: &LoadConfig, maps: &EncapMaps, probes: &Path) {
        let ours = Self::pin_name(config, maps).unwrap_or_default();
        let Ok(entries) = std::fs::read_dir(probes) else { return };
        for entry in entries.flatten().filter(|e| e.file_name() != ours.as_str()) {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                log::warn!("removing the probe copy {}: {e}", entry.path().display());
            }
        }
    }

    /// Runs `frame` once; returns the run and the counters it moved (one:
    /// the caller serialises the runs of its process, and a pinned copy's
    /// lock those of every process).
    pub(crate) fn run(&self, frame: &[u8]) -> Result<(TestRun, Stats), Error> {
        let _serialised = self.shared.as_ref().and_then(|path| {
            let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path);
            // Without the lock (the state directory went with a detach) a
            // concurrent probe may add its counter: the verdict then falls
            // back to the program's action, as documented.
            file.ok().and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok())
        });
        let before = Stats::read(&self.counters)?;
        let run = test_run::test_run(self.prog.as_fd(), frame)?;
        let moved = Stats::read(&self.counters)?.since(&before);
        Ok((run, moved))
    }
}

/// The transport of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeProtocol {
    /// UDP (the default).
    #[default]
    Udp,
    /// TCP (a SYN).
    Tcp,
    /// ICMP / ICMPv6 echo request.
    Icmp,
}

impl fmt::Display for ProbeProtocol {
    /// `udp`, `tcp` or `icmp`, as `FromStr` reads them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeProtocol::Udp => "udp",
            ProbeProtocol::Tcp => "tcp",
            ProbeProtocol::Icmp => "icmp",
        })
    }
}

impl std::str::FromStr for ProbeProtocol {
    type Err = String;
    /// `udp`, `tcp` or `icmp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udp" => Ok(ProbeProtocol::Udp),
            "tcp" => Ok(ProbeProtocol::Tcp),
            "icmp" => Ok(ProbeProtocol::Icmp),
            _ => Err(format!("{s:?} is not a protocol: expected udp, tcp or icmp")),
        }
    }
}

/// A packet to explain: built with [`Probe::udp`], [`Probe::tcp`] or
/// [`Probe::icmp`] and the setters below, or written out (the fields are
/// public).
///
/// ```
/// use lnetd_host_encap::{diagnostics::Probe, diagnostics::ProbeProtocol};
/// let https = Probe::tcp("198.51.100.7".parse()?).from("10.0.0.5".parse()?).dport(443).dscp(46);
/// assert_eq!((https.protocol, https.dport, https.dscp), (ProbeProtocol::Tcp, 443, 46));
/// assert_eq!(https.source().to_string(), "10.0.0.5");
///
/// let quic = Probe::udp("2001:db8::7".parse()?).sport(50000).dport(443).ttl(1);
/// assert_eq!((quic.sport, quic.dport, quic.ttl), (50000, 443, 1));
/// assert_eq!(quic.source().to_string(), "::", "no source: the unspecified address");
///
/// // Probe::to is Probe::udp.
/// assert_eq!(Probe::to("192.0.2.1".parse()?), Probe::udp("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Nothing is checked here: [`crate::Encapsulator::explain`] refuses a
/// probe whose source and destination are of different families, or whose
/// DSCP is above 63 ([`crate::errors::RouteError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Source address (default: the unspecified address of the family).
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport.
    pub protocol: ProbeProtocol,
    /// Source port (TCP, UDP).
    pub sport: u16,
    /// Destination port (TCP, UDP).
    pub dport: u16,
    /// DSCP, 0..=63.
    pub dscp: u8,
    /// IP TTL / hop limit.
    pub ttl: u8,
}

impl Probe {
    /// A UDP probe to `dst`, ports 49152 -> 4789, DSCP 0, TTL 64: the same
    /// as [`Probe::udp`].
    pub fn to(dst: IpAddr) -> Probe {
        Probe::udp(dst)
    }

    /// A UDP datagram to `dst`, ports 49152 -> 4789, DSCP 0, TTL 64, from
    /// the unspecified address.
    pub fn udp(dst: IpAddr) -> Probe {
        Probe { src: None, dst, protocol: ProbeProtocol::Udp, sport: 49152, dport: 4789, dscp: 0, ttl: 64 }
    }

    /// A TCP SYN to `dst`, otherwise as [`Probe::udp`] (ports 49152 -> 4789).
    pub fn tcp(dst: IpAddr) -> Probe {
        Probe { protocol: ProbeProtocol::Tcp, ..Probe::udp(dst) }
    }

    /// An ICMP (ICMPv6 for an IPv6 `dst`) echo request to `dst`; the ports
    /// are not used.
    pub fn icmp(dst: IpAddr) -> Probe {
        Probe { protocol: ProbeProtocol::Icmp, ..Probe::udp(dst) }
    }

    /// The same probe from `src` (it selects the alternate table of a
    /// matching source prefix).
    pub fn from(mut self, src: IpAddr) -> Probe {
        self.src = Some(src);
        self
    }

    /// The same probe with this transport.
    pub fn protocol(mut self, protocol: ProbeProtocol) -> Probe {
        self.protocol = protocol;
        self
    }

    /// The same probe from source port `port` (TCP, UDP).
    pub fn sport(mut self, port: u16) -> Probe {
        self.sport = port;
        self
    }

    /// The same probe to destination port `port` (TCP, UDP).
    pub fn dport(mut self, port: u16) -> Probe {
        self.dport = port;
        self
    }

    /// The same probe with DSCP `dscp` (0..=63: `explain` refuses more),
    /// which a route with [`crate::routes::Tc::FromDscp`] maps to its traffic class.
    pub fn dscp(mut self, dscp: u8) -> Probe {
        self.dscp = dscp;
        self
    }

    /// The same probe with this IP TTL / hop limit (copied into the labels
    /// under [`crate::encap::TtlMode::Copy`]).
    pub fn ttl(mut self, ttl: u8) -> Probe {
        self.ttl = ttl;
        self
    }

    /// The IP protocol number of its transport (ICMPv6 for an IPv6 echo).
    pub(crate) fn ip_protocol(&self) -> u8 {
        match self.protocol {
            ProbeProtocol::Udp => frame::IPPROTO_UDP,
            ProbeProtocol::Tcp => frame::IPPROTO_TCP,
            ProbeProtocol::Icmp if self.dst.is_ipv4() => frame::IPPROTO_ICMP,
            ProbeProtocol::Icmp => frame::IPPROTO_ICMPV6,
        }
    }

    /// Its source and destination ports, for the transports that have them.
    pub(crate) fn ports(&self) -> Option<(u16, u16)> {
        (self.protocol != ProbeProtocol::Icmp).then_some((self.sport, self.dport))
    }

    /// The source used: the one given, or the family's unspecified address.
    pub fn source(&self) -> IpAddr {
        self.src.unwrap_or(match self.dst {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        })
    }

    /// The Ethernet frame, or why there is none (mixed families, DSCP above 63).
    pub(crate) fn frame(&self) -> Result<Vec<u8>, String> {
        frame::build(self)
    }
}

/// What the program did with a probe, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The program's verdict.
    pub action: XdpAction,
    /// The counter it moved: `labelled`, `local`, `no_route`, `mtu_dropped`...
    /// On tcx egress, `local` with a [`Explanation::route`] is a
    /// destination the kernel hands to an on-link neighbour (its route has
    /// no gateway), which host mode leaves unlabelled whatever route covers it.
    pub outcome: &'static str,
    /// The route chosen and its table, if a route matched.
    pub route: Option<(Table, Route)>,
    /// Which of the route's segment lists the flow took (policy order).
    pub list: Option<usize>,
    /// The label stack pushed, top first (ELI and EL included).
    pub stack: Vec<LabelStackEntry>,
    /// The dataplane runs on the egress hook: the same stages, and the
    /// verdict read as that hook's (labelled: passed on; passed: on,
    /// unlabelled; dropped: TC_ACT_SHOT).
    pub egress: bool,
}

impl Explanation {
    /// The verdict in the words of the hook the dataplane runs on:
    /// `XDP_TX`, `XDP_PASS`, ... for XDP; on egress `TC_ACT_OK` (labelled
    /// or not: [`Explanation::outcome`] says which) or `TC_ACT_SHOT`. A
    /// verdict the egress program never gives (aborted, a redirect) keeps
    /// its XDP name.
    pub fn verdict(&self) -> String {
        match self.action {
            XdpAction::Tx | XdpAction::Pass if self.egress => "TC_ACT_OK".to_owned(),
            XdpAction::Drop if self.egress => "TC_ACT_SHOT".to_owned(),
            action => action.to_string(),
        }
    }
}

impl fmt::Display for Explanation {
    /// Two lines: the verdict with its route and list, then the stack as
    /// `label/tc/S/ttl` entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            XdpAction::Tx if self.egress => "labelled and passed on (egress)",
            XdpAction::Pass if self.egress => "passed on unlabelled (egress)",
            XdpAction::Drop if self.egress => "dropped (egress: TC_ACT_SHOT)",
            XdpAction::Tx => "labelled and sent back (XDP_TX)",
            XdpAction::Pass => "passed to the host unlabelled (XDP_PASS)",
            XdpAction::Drop => "dropped (XDP_DROP)",
            XdpAction::Aborted => "aborted (XDP_ABORTED)",
            XdpAction::Redirect => "redirected (XDP_REDIRECT)",
            XdpAction::Other(_) => "an unknown verdict",
        };
        let invalid = self.route.as_ref().is_some_and(|(_, r)| !r.policy.is_valid());
        let why = match self.outcome {
            "labelled" => None,
            "local" if self.egress && self.route.is_some() => {
                Some("the kernel hands it to an on-link neighbour (its route has no gateway), which host mode leaves unlabelled")
            }
            "local" => Some("it is for the host or its link: one of the host's own addresses, or link-local"),
            "multicast" => Some("it is broadcast or multicast"),
            "no_route" if invalid => Some("its SR policy has no live candidate path (its routes go unlabelled)"),
            "no_route" => Some("no route covers the destination"),
            "no_live_path_dropped" => Some("its SR policy has no live candidate path, and drops its routes' packets"),
            "mtu_passed" | "mtu_dropped" => Some("it would exceed the MTU once labelled"),
            "aborted" => Some("an internal inconsistency (report it)"),
            _ => Some("see the counters"),
        };
        f.write_str(action)?;
        if let Some(why) = why {
            write!(f, ": {why}")?;
        }
        if let Some((table, route)) = &self.route {
            let table = match table {
                Table::Main => "main table".to_owned(),
                Table::Alternate(id) => format!("table {id}"),
            };
            write!(f, "; route {} ({table}) -> {}, tc {}", route.prefix, route.policy, route.tc)?;
            if let (Some(i), true) = (self.list, route.policy.lists().len() > 1) {
                write!(f, "; segment list {i}")?;
            }
        }
        if !self.stack.is_empty() {
            let entries: Vec<String> =
                self.stack.iter().map(|e| format!("{}/{}/{}/{}", e.label, e.tc, u8::from(e.bottom), e.ttl)).collect();
            write!(f, "\nstack (label/tc/S/ttl): {}", entries.join(" "))?;
        }
        Ok(())
    }
}

/// Reads the pushed stack from a frame the program sent back.
pub(crate) fn pushed_stack(frame: &[u8]) -> Vec<LabelStackEntry> {
    let mut at = 12;
    // Past VLAN tags (802.1Q, 802.1ad) to the ethertype.
    while let Some(tpid) = frame.get(at..at + 2) {
        if tpid == [0x81, 0x00] || tpid == [0x88, 0xa8] {
            at += 4;
        } else {
            break;
        }
    }
    if frame.get(at..at + 2) != Some(&[0x88, 0x47][..]) {
        return Vec::new();
    }
    frame.get(at + 2..).and_then(|rest| decode_stack(rest).ok()).map(|(s, _)| s).unwrap_or_default()
}

/// Which list of `route` produced `stack` (the ELI/EL pair ignored).
pub(crate) fn list_of(route: &Route, stack: &[LabelStackEntry]) -> Option<usize> {
    let mut labels: Vec<u32> = Vec::with_capacity(stack.len());
    let mut skip_el = false;
    for e in stack {
        if skip_el {
            skip_el = false;
            continue;
        }
        if e.label == 7 && route.policy.entropy_label().is_some() {
            skip_el = true;
            continue;
        }
        labels.push(e.label);
    }
    route.policy.lists().iter().position(|l| l.stack.labels().iter().map(|x| x.value()).eq(labels.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_builder_sets_each_field_and_keeps_the_others() {
        let base = Probe::udp(v4("198.51.100.7"));
        assert_eq!(base, Probe::to(v4("198.51.100.7")));
        let built = base.clone().from(v4("10.0.0.5")).sport(1234).dport(443).dscp(46).ttl(3);
        assert_eq!(
            built,
            Probe { src: Some(v4("10.0.0.5")), sport: 1234, dport: 443, dscp: 46, ttl: 3, ..base.clone() }
        );
        assert_eq!(Probe::tcp(v4("198.51.100.7")), Probe { protocol: ProbeProtocol::Tcp, ..base.clone() });
        assert_eq!(Probe::icmp(v4("198.51.100.7")), base.clone().protocol(ProbeProtocol::Icmp));
        for p in [ProbeProtocol::Udp, ProbeProtocol::Tcp, ProbeProtocol::Icmp] {
            assert_eq!(p.to_string().parse::<ProbeProtocol>(), Ok(p));
        }
    }

    /// The frame carries what the builder set: ports, DSCP, TTL, source.
    #[test]
    fn the_frame_carries_the_built_fields() {
        let probe = Probe::tcp(v4("198.51.100.7")).from(v4("10.0.0.5")).sport(1234).dport(443).dscp(46).ttl(3);
        let frame = probe.frame().unwrap();
        let ip = frame.get(14..34).unwrap();
        assert_eq!((ip[1] >> 2, ip[8], ip[9]), (46, 3, 6), "DSCP, TTL, protocol TCP");
        assert_eq!(&ip[12..16], &[10, 0, 0, 5]);
        assert_eq!(frame.get(34..38), Some(&[0x04, 0xd2, 0x01, 0xbb][..]), "ports 1234 -> 443");
        assert!(Probe::udp(v4("198.51.100.7")).dscp(64).frame().is_err());
        assert!(Probe::udp(v4("198.51.100.7")).from("2001:db8::1".parse().unwrap()).frame().is_err());
    }
}
