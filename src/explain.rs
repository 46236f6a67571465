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

use etherparse::PacketBuilder;

use crate::dataplane::{self, EncapMaps};
use crate::domain::label::{decode_stack, LabelStackEntry};
use crate::domain::route::{Route, Table};
use crate::error::{Error, LoadError};
use crate::rib::persist::LoadConfig;
use crate::stats::Stats;
use crate::sys::map::BpfMap;
use crate::sys::test_run::{self, TestRun, XdpAction};

/// The probe copy of the XDP program and its own counters.
#[derive(Debug)]
pub(crate) struct ProbeProgram {
    prog: OwnedFd,
    counters: BpfMap,
}

impl ProbeProgram {
    /// Loads the copy against `maps`' tables (one verifier pass, as long as
    /// the dataplane's own load).
    pub(crate) fn load(config: &LoadConfig, maps: &EncapMaps) -> Result<ProbeProgram, LoadError> {
        let (prog, counters) = dataplane::load_probe(config, maps)?;
        log::debug!("explain: probe program loaded (counters of its own)");
        Ok(ProbeProgram { prog, counters })
    }

    /// Runs `frame` once; returns the run and the counters it moved (one,
    /// unless two runs of this copy overlap: the caller serialises them).
    pub(crate) fn run(&self, frame: &[u8]) -> Result<(TestRun, Stats), Error> {
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

/// A packet to explain.
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
    /// A UDP probe to `dst`, ports 49152 -> 4789, DSCP 0, TTL 64.
    pub fn to(dst: IpAddr) -> Probe {
        Probe { src: None, dst, protocol: ProbeProtocol::Udp, sport: 49152, dport: 4789, dscp: 0, ttl: 64 }
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
        if self.dscp > 63 {
            return Err(format!("DSCP {} is out of range (0..=63)", self.dscp));
        }
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = match (self.source(), self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = etherparse::Ipv4Header::new(0, self.ttl, etherparse::IpNumber::UDP, s.octets(), d.octets())
                    .map_err(|e| e.to_string())?;
                h.dscp = etherparse::IpDscp::try_new(self.dscp).map_err(|e| e.to_string())?;
                eth.ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = etherparse::Ipv6Header {
                    traffic_class: self.dscp << 2,
                    flow_label: Default::default(),
                    payload_length: 0,
                    next_header: etherparse::IpNumber::UDP,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                };
                eth.ip(etherparse::IpHeaders::Ipv6(h, Default::default()))
            }
            (s, d) => return Err(format!("source {s} and destination {d} are of different families")),
        };
        let payload = [0u8; 32];
        let mut out = Vec::new();
        let written = match self.protocol {
            ProbeProtocol::Udp => {
                let b = ip.udp(self.sport, self.dport);
                out.reserve(b.size(payload.len()));
                b.write(&mut out, &payload)
            }
            ProbeProtocol::Tcp => {
                let b = ip.tcp(self.sport, self.dport, 1, 64240).syn();
                out.reserve(b.size(payload.len()));
                b.write(&mut out, &payload)
            }
            ProbeProtocol::Icmp if self.dst.is_ipv4() => {
                let b = ip.icmpv4_echo_request(1, 1);
                out.reserve(b.size(payload.len()));
                b.write(&mut out, &payload)
            }
            ProbeProtocol::Icmp => {
                let b = ip.icmpv6_echo_request(1, 1);
                out.reserve(b.size(payload.len()));
                b.write(&mut out, &payload)
            }
        };
        written.map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// What the program did with a probe, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The program's verdict.
    pub action: XdpAction,
    /// The counter it moved: `labelled`, `local`, `no_route`, `mtu_dropped`...
    pub outcome: &'static str,
    /// The route chosen and its table, if a route matched.
    pub route: Option<(Table, Route)>,
    /// Which of the route's segment lists the flow took (policy order).
    pub list: Option<usize>,
    /// The label stack pushed, top first (ELI and EL included).
    pub stack: Vec<LabelStackEntry>,
}

impl fmt::Display for Explanation {
    /// Two lines: the verdict with its route and list, then the stack as
    /// `label/tc/S/ttl` entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            XdpAction::Tx => "labelled and sent back (XDP_TX)",
            XdpAction::Pass => "passed to the host unlabelled (XDP_PASS)",
            XdpAction::Drop => "dropped (XDP_DROP)",
            XdpAction::Aborted => "aborted (XDP_ABORTED)",
            XdpAction::Redirect => "redirected (XDP_REDIRECT)",
            XdpAction::Other(_) => "an unknown verdict",
        };
        let why = match self.outcome {
            "labelled" => None,
            "local" => Some("it is addressed to one of the host's own addresses"),
            "multicast" => Some("it is broadcast or multicast"),
            "no_route" => Some("no route covers the destination"),
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
