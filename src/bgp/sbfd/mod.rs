//! Segment-list liveness with Seamless BFD (RFC 7880, RFC 7881), this host
//! as the initiator.
//!
//! Every usable segment list of every valid candidate path addressed to
//! this host is probed: an S-BFD control packet ([`packet`]) inside that
//! list's own label stack ([`probe`]), sent on the router-facing interface
//! to the router's MAC, so it takes the path the list's flows take. The
//! list's last segment delivers it to the policy's endpoint, whose S-BFD
//! reflector (IOS-XR, Junos: `sbfd` with a local discriminator) swaps the
//! discriminators and answers with plain IP/UDP to the probe's source port.
//! A list whose answers stop for interval x multiplier is down
//! ([`session`]): selection ([`crate::bgp::select::select_live`]) then takes
//! it out of service (its flows, and only its flows, move to the live lists
//! of the same candidate path), and a candidate path with no live list gives
//! way to the next valid one (RFC 9256 section 5); with none, the policy is
//! invalid and its routes go unlabelled. A list that answers again is used
//! again after a hold-down. The [`engine`] runs all of it on one thread.
//!
//! ```no_run
//! use std::time::Duration;
//! use lnetd_host_encap::bgp::sbfd::{Engine, ListKey, SbfdConfig};
//! let mut config = SbfdConfig::new("eth1");
//! config.reflectors.insert("192.0.2.1".parse()?, 0xc000_0201);
//! let engine = Engine::start(config, || { /* recompute the policies */ })?;
//! engine.set_lists([ListKey { endpoint: "192.0.2.1".parse()?, stack: "16001/16002".parse()? }]);
//! std::thread::sleep(Duration::from_millis(100));
//! for (list, phase) in engine.phases() {
//!     println!("{} to {}: {}", list.stack, list.endpoint, phase.as_str());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod answers;
pub mod engine;
mod io;
pub mod neighbour;
pub mod packet;
pub mod probe;
mod ring;
pub mod session;
pub mod status;
mod transmit;
mod wheel;
mod worker;
mod xdp_features;
mod xdp_tx;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

pub use engine::{Engine, EngineStats, ListKey, ListState};
pub use session::{Phase, Session, Timers};
pub use status::{ListStatus, SbfdStatus};

/// Why S-BFD cannot run, or a setting is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SbfdError {
    /// The router-facing interface is unusable.
    #[error("S-BFD on {interface}: {why}")]
    Interface {
        /// The interface.
        interface: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The router's MAC is not in the neighbour table.
    #[error(
        "S-BFD on {interface}: cannot tell the router's MAC from the neighbour table ({neighbours} complete IPv4 \
         entries on the interface, no default gateway among them); give it with --sbfd-router-mac"
    )]
    RouterMac {
        /// The interface.
        interface: String,
        /// Complete neighbour entries found there.
        neighbours: usize,
    },
    /// A socket could not be opened or set up.
    #[error("S-BFD: {what}: {errno} (the agent needs CAP_NET_RAW for S-BFD)")]
    Socket {
        /// Which step.
        what: &'static str,
        /// The errno.
        errno: nix::errno::Errno,
    },
    /// Every UDP port of 49152-65535 is taken.
    #[error("S-BFD: no free UDP source port in 49152-65535 (RFC 7881) to receive the answers on")]
    NoSourcePort,
    /// A `--sbfd-reflector` value is not `ENDPOINT=DISCRIMINATOR`.
    #[error(
        "S-BFD reflector {input:?}: expected ENDPOINT=DISCRIMINATOR, the discriminator a number 1..=4294967295 or \
         an IPv4 address (e.g. 192.0.2.1=3221225985 or 192.0.2.1=192.0.2.1)"
    )]
    Reflector {
        /// The text given.
        input: String,
    },
    /// Timers out of range.
    #[error("S-BFD timers: {why}")]
    Timers {
        /// What is wrong.
        why: &'static str,
    },
}

impl SbfdError {
    /// A short, stable name of what is wrong, for a metric's label (the
    /// message itself says the details): `interface`, `router_mac`,
    /// `socket`, `source_port`, `reflector`, `timers`.
    pub fn reason(&self) -> &'static str {
        match self {
            SbfdError::Interface { .. } => "interface",
            SbfdError::RouterMac { .. } => "router_mac",
            SbfdError::Socket { .. } => "socket",
            SbfdError::NoSourcePort => "source_port",
            SbfdError::Reflector { .. } => "reflector",
            SbfdError::Timers { .. } => "timers",
        }
    }
}

/// One `--sbfd-reflector ENDPOINT=DISCRIMINATOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflector {
    /// The policy endpoint whose reflector this is.
    pub endpoint: IpAddr,
    /// Its S-BFD discriminator (never 0).
    pub discriminator: u32,
}

impl FromStr for Reflector {
    type Err = SbfdError;
    /// `192.0.2.1=3221225985`, or the discriminator written as an IPv4 address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SbfdError::Reflector { input: s.to_owned() };
        let (endpoint, disc) = s.split_once('=').ok_or_else(err)?;
        let endpoint: IpAddr = endpoint.trim().parse().map_err(|_| err())?;
        let disc = disc.trim();
        let discriminator =
            disc.parse::<u32>().ok().or_else(|| disc.parse::<Ipv4Addr>().ok().map(u32::from)).ok_or_else(err)?;
        if discriminator == 0 {
            return Err(err());
        }
        Ok(Reflector { endpoint, discriminator })
    }
}

/// How the initiator runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbfdConfig {
    /// The router-facing interface (where the encapsulator is attached).
    pub interface: String,
    /// Interval, multiplier, hold-down.
    pub timers: Timers,
    /// Reflector discriminators by endpoint; an IPv4 endpoint not listed
    /// uses its own address as a 32-bit number (IOS-XR's default local
    /// discriminator); an IPv6 endpoint not listed is not probed.
    pub reflectors: BTreeMap<IpAddr, u32>,
    /// The router's MAC; `None`: learned from the neighbour table.
    pub router_mac: Option<[u8; 6]>,
    /// Send and receive with sendmmsg/recvmmsg (the default) rather than one
    /// call per packet.
    pub batched: bool,
    /// Send the probes through a `PACKET_TX_RING` (one system call a tick,
    /// no copy from user space per probe) instead of sendmmsg. Off by
    /// default: benches/sbfd.rs measures it against sendmmsg.
    pub tx_ring: bool,
    /// Send the probes as XDP live frames (BPF_PROG_TEST_RUN with
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18+; one system call a tick
    /// and no socket buffer per probe) while the interface takes XDP
    /// redirects (its driver's `ndo_xdp_xmit`, as the kernel reports it
    /// since Linux 6.3; a veth only while its peer runs an XDP program or
    /// has GRO on); through the socket otherwise. On by default; the wire
    /// sees the same bytes either way. Needs CAP_BPF, CAP_NET_ADMIN and
    /// CAP_SYS_ADMIN (a private network namespace, see docs/liveness.md).
    pub live_frames: bool,
    /// Count the answers in the kernel: a socket filter on the answer
    /// socket checks each answer, counts it for its list in an mmapable
    /// array and drops it, and the engine reads the counts each tick (no
    /// receive system call, no copy, no queueing per answer). Off by
    /// default (recvmmsg): the kernel counts every answer the filter drops
    /// as a UDP receive error (`nstat UdpInErrors`, 100,000 a second at
    /// 1,000 lists every 10 ms), which would set off a host's alerts on
    /// that counter; turn it on where nothing watches it.
    pub answer_filter: bool,
}

impl SbfdConfig {
    /// S-BFD on `interface` with the defaults: 50 ms x 3, hold-down 5 s,
    /// default discriminators, router MAC learned, batched.
    pub fn new(interface: impl Into<String>) -> SbfdConfig {
        SbfdConfig {
            interface: interface.into(),
            timers: Timers { interval: Duration::from_millis(50), multiplier: 3, hold_down: Duration::from_secs(5) },
            reflectors: BTreeMap::new(),
            router_mac: None,
            batched: true,
            tx_ring: false,
            live_frames: true,
            answer_filter: false,
        }
    }

    /// Checks and sets the timers (`--sbfd-interval-ms`, `--sbfd-multiplier`,
    /// `--sbfd-hold-down-ms`).
    ///
    /// # Errors
    /// [`SbfdError::Timers`]: an interval under 1 ms or over 60 s, a
    /// multiplier of 0.
    pub fn with_timers(mut self, interval_ms: u64, multiplier: u8, hold_down_ms: u64) -> Result<SbfdConfig, SbfdError> {
        if !(1..=60_000).contains(&interval_ms) {
            return Err(SbfdError::Timers { why: "the interval must be 1 to 60000 ms" });
        }
        if multiplier == 0 {
            return Err(SbfdError::Timers { why: "the multiplier must be 1 to 255" });
        }
        self.timers = Timers {
            interval: Duration::from_millis(interval_ms),
            multiplier,
            hold_down: Duration::from_millis(hold_down_ms),
        };
        Ok(self)
    }

    /// The reflector discriminator probes toward `endpoint` carry.
    pub fn reflector(&self, endpoint: IpAddr) -> Option<u32> {
        self.reflectors.get(&endpoint).copied().or(match endpoint {
            IpAddr::V4(v4) => Some(u32::from(v4)).filter(|d| *d != 0),
            IpAddr::V6(_) => None,
        })
    }

    /// The probe source for `endpoint`: the first of `sources` of its family.
    pub fn source_for(&self, endpoint: IpAddr, sources: &[IpAddr]) -> Option<IpAddr> {
        sources.iter().copied().find(|s| s.is_ipv6() == endpoint.is_ipv6())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflectors_parse_as_numbers_or_addresses_and_default_to_the_ipv4_endpoint() {
        let r: Reflector = "192.0.2.1=7".parse().unwrap();
        assert_eq!((r.endpoint.to_string(), r.discriminator), ("192.0.2.1".to_owned(), 7));
        let r: Reflector = "2001:db8::1 = 10.0.0.1".parse().unwrap();
        assert_eq!(r.discriminator, 0x0a00_0001);
        for bad in ["192.0.2.1", "192.0.2.1=0", "192.0.2.1=x", "nope=1", "192.0.2.1=4294967296"] {
            assert!(matches!(bad.parse::<Reflector>(), Err(SbfdError::Reflector { .. })), "{bad}");
        }
        let mut c = SbfdConfig::new("eth1");
        c.reflectors.insert("192.0.2.9".parse().unwrap(), 99);
        assert_eq!(c.reflector("192.0.2.1".parse().unwrap()), Some(0xc000_0201));
        assert_eq!(c.reflector("192.0.2.9".parse().unwrap()), Some(99));
        assert_eq!(c.reflector("2001:db8::1".parse().unwrap()), None);
    }

    #[test]
    fn timers_are_checked() {
        let c = SbfdConfig::new("eth1").with_timers(10, 3, 500).unwrap();
        assert_eq!(c.timers.detection(), Duration::from_millis(30));
        assert!(SbfdConfig::new("e").with_timers(0, 3, 0).is_err());
        assert!(SbfdConfig::new("e").with_timers(10, 0, 0).is_err());
    }
}
