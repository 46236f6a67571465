//! Choices made when an encapsulator is loaded or attached.

use std::fmt;

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
    #[default]
    Auto,
}

/// The mode an attachment actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// Generic (skb) XDP.
    Generic,
    /// Offloaded to the NIC.
    Offload,
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
        })
    }
}
