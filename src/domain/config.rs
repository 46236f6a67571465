//! Choices made when an encapsulator is loaded or attached.

use std::fmt;
use std::str::FromStr;

/// How the TTL of every pushed label stack entry is chosen (RFC 3443).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TtlMode {
    /// Uniform model: the packet's IPv4 TTL / IPv6 hop limit, unchanged, in every
    /// entry. The default, and the proof of concept's behaviour: the router's
    /// traceroute then shows the labelled hop.
    #[default]
    Copy,
    /// Pipe model: this TTL in every entry (1..=255), hiding the MPLS hops.
    Fixed(u8),
}

/// What happens to a packet that would exceed the interface MTU once labelled.
///
/// Such a frame is never emitted. Either way it is counted (`Stats::mtu_dropped`
/// or `Stats::mtu_passed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MtuPolicy {
    /// Drop it. The default: the sender's PMTU discovery or the operator's MTU
    /// plan (interface MTU at least 1500 + 4 x labels toward the router) must
    /// prevent it; the counter shows it happening.
    #[default]
    Drop,
    /// Hand it to the host's own stack unlabelled, which forwards it by its
    /// routing table if forwarding is enabled (sending ICMP "too big" for DF
    /// packets) or drops it.
    Pass,
}

/// How the main IPv4 table is looked up per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ipv4Lookup {
    /// DIR-24-8 in array maps: one read for prefixes up to /24, two beyond,
    /// whatever the table size. The default. Fixed memory: 64 MiB for the
    /// /24 table, plus 1 KiB per /24 that holds longer prefixes
    /// ([`crate::encap::EncapsulatorBuilder::dir_groups`]), 16 bytes per route of
    /// capacity and 80 bytes per distinct route value
    /// ([`crate::encap::EncapsulatorBuilder::max_route_values`]).
    #[default]
    Dir24_8,
    /// The kernel's LPM trie: memory grows with the routes present (about
    /// 110 bytes each), lookups slow down as the table grows.
    LpmTrie,
}

/// What a [`crate::decap::Decapsulator`] does with a frame carrying a label that is
/// not in its pop set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OtherLabels {
    /// Hand it to the host's stack: untouched when its top label is not in
    /// the set; with the entries above that label popped when it is deeper
    /// (the rest of the stack stays, under ethertype 0x8847).
    #[default]
    Pass,
    /// Drop it, untouched, wherever in the stack the label is.
    Drop,
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// In the driver (XDP_FLAGS_DRV_MODE): fastest; needs driver support.
    Native,
    /// In the core stack after the skb is built (XDP_FLAGS_SKB_MODE): works on
    /// every interface, slower.
    Generic,
    /// On the NIC (XDP_FLAGS_HW_MODE): only NICs that offload BPF; this program
    /// uses helpers offload does not support, so expect an error explaining it.
    Offload,
    /// Native, falling back to generic when the driver has no native XDP. The
    /// mode obtained is reported.
    ///
    /// On a veth whose peer runs no XDP program in native mode, generic is
    /// chosen instead, with a warning in the log saying so: a veth delivers
    /// the frames a native program sends back (XDP_TX) only to a peer that
    /// runs one, and drops every other one in the driver, where the program
    /// cannot see it (they show as [`crate::Stats::tx_errors`]). The peer is
    /// looked up through rtnetlink, in its own namespace (Linux 4.20+). Ask
    /// for [`XdpMode::Native`] explicitly to attach natively anyway (e.g.
    /// when the peer's program is attached later).
    #[default]
    Auto,
}

/// The mode an attachment actually got. More hooks may come: match with a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// Generic (skb) XDP.
    Generic,
    /// Offloaded to the NIC.
    Offload,
    /// Not XDP: the host's own packets, on the interface's egress (tcx).
    Egress,
    /// Not XDP: received packets on the interface's ingress (tcx), on the skb
    /// path (the decapsulator's TC hook).
    Ingress,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Offload => "offload",
            XdpMode::Auto => "auto",
        })
    }
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
            AttachedMode::Offload => "offload",
            AttachedMode::Egress => "egress",
            AttachedMode::Ingress => "ingress",
        })
    }
}

/// A mode, TTL or policy name that is not one of the accepted words.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {what}: expected {expected}")]
pub struct ConfigParseError {
    /// What was being parsed.
    pub what: &'static str,
    /// The text given.
    pub input: String,
    /// The accepted forms.
    pub expected: &'static str,
}

fn parse_word<T: Copy>(
    s: &str,
    what: &'static str,
    expected: &'static str,
    words: &[(&str, T)],
) -> Result<T, ConfigParseError> {
    let word = s.trim().to_ascii_lowercase();
    words.iter().find(|(w, _)| *w == word).map(|(_, v)| *v).ok_or_else(|| ConfigParseError {
        what,
        input: s.to_owned(),
        expected,
    })
}

impl FromStr for XdpMode {
    type Err = ConfigParseError;
    /// `native`, `generic`, `offload` or `auto`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            "XDP mode",
            "native, generic or auto (or offload, on NICs that run BPF)",
            &[
                ("native", XdpMode::Native),
                ("generic", XdpMode::Generic),
                ("offload", XdpMode::Offload),
                ("auto", XdpMode::Auto),
            ],
        )
    }
}

impl FromStr for AttachedMode {
    type Err = ConfigParseError;
    /// `native`, `generic` or `offload`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            "attached XDP mode",
            "native, generic, offload, egress or ingress",
            &[
                ("native", AttachedMode::Native),
                ("generic", AttachedMode::Generic),
                ("offload", AttachedMode::Offload),
                ("egress", AttachedMode::Egress),
                ("ingress", AttachedMode::Ingress),
            ],
        )
    }
}

impl fmt::Display for MtuPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MtuPolicy::Drop => "drop",
            MtuPolicy::Pass => "pass",
        })
    }
}

impl FromStr for MtuPolicy {
    type Err = ConfigParseError;
    /// `drop` or `pass`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(s, "MTU policy", "drop or pass", &[("drop", MtuPolicy::Drop), ("pass", MtuPolicy::Pass)])
    }
}

impl fmt::Display for Ipv4Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ipv4Lookup::Dir24_8 => "dir24-8",
            Ipv4Lookup::LpmTrie => "lpm",
        })
    }
}

impl FromStr for Ipv4Lookup {
    type Err = ConfigParseError;
    /// `dir24-8` or `lpm`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(s, "lookup", "dir24-8 or lpm", &[("dir24-8", Ipv4Lookup::Dir24_8), ("lpm", Ipv4Lookup::LpmTrie)])
    }
}

impl fmt::Display for TtlMode {
    /// `copy`, or the fixed TTL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TtlMode::Copy => f.write_str("copy"),
            TtlMode::Fixed(ttl) => write!(f, "{ttl}"),
        }
    }
}

impl FromStr for TtlMode {
    type Err = ConfigParseError;
    /// `copy`, or a fixed TTL 1..=255.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "copy or a TTL of 1..=255";
        match s.trim() {
            "copy" => Ok(TtlMode::Copy),
            n => match n.parse::<u8>() {
                Ok(ttl) if ttl >= 1 => Ok(TtlMode::Fixed(ttl)),
                _ => Err(ConfigParseError { what: "TTL mode", input: s.to_owned(), expected: EXPECTED }),
            },
        }
    }
}

impl fmt::Display for OtherLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OtherLabels::Pass => "pass",
            OtherLabels::Drop => "drop",
        })
    }
}

impl FromStr for OtherLabels {
    type Err = ConfigParseError;
    /// `pass` or `drop`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            "policy for other labels",
            "pass or drop",
            &[("pass", OtherLabels::Pass), ("drop", OtherLabels::Drop)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_refusals() {
        for m in [XdpMode::Native, XdpMode::Generic, XdpMode::Offload, XdpMode::Auto] {
            assert_eq!(m.to_string().parse::<XdpMode>(), Ok(m));
        }
        for m in [
            AttachedMode::Native,
            AttachedMode::Generic,
            AttachedMode::Offload,
            AttachedMode::Egress,
            AttachedMode::Ingress,
        ] {
            assert_eq!(m.to_string().parse::<AttachedMode>(), Ok(m));
        }
        for p in [MtuPolicy::Drop, MtuPolicy::Pass] {
            assert_eq!(p.to_string().parse::<MtuPolicy>(), Ok(p));
        }
        for t in [TtlMode::Copy, TtlMode::Fixed(1), TtlMode::Fixed(255)] {
            assert_eq!(t.to_string().parse::<TtlMode>(), Ok(t));
        }
        assert!("0".parse::<TtlMode>().is_err());
        assert!("256".parse::<TtlMode>().is_err());
        let e = "fast".parse::<XdpMode>().unwrap_err();
        assert!(e.to_string().contains("expected native, generic or auto"), "{e}");
    }
}
