//! The encapsulator and how it is loaded, attached and adopted: the handle
//! ([`Encapsulator`]), its builder, the hook modes, and the settings fixed at
//! load time.
//!
//! [`XdpMode`] is what you ask for (including `Auto`); [`AttachedMode`] is
//! what an attachment got (never `Auto`, and also the TC hooks), so they
//! stay two types.
//!
//! ```no_run
//! // Not run: needs root and an interface named eth1.
//! use lnetd_host_encap::encap::{MtuPolicy, TtlMode};
//! use lnetd_host_encap::{Encapsulator, XdpMode};
//!
//! let enc = Encapsulator::builder().ttl_mode(TtlMode::Copy).mtu_policy(MtuPolicy::Drop).attach("eth1", XdpMode::Auto)?;
//! # let _ = enc;
//! # Ok::<(), lnetd_host_encap::Error>(())
//! ```

pub use crate::domain::config::{AttachedMode, Ipv4Lookup, MtuPolicy, OtherLabels, TtlMode, XdpMode};
pub use crate::encapsulator::{AdoptOptions, Attachment, Encapsulator, EncapsulatorBuilder};
#[cfg(feature = "watch")]
pub use crate::watch::AddressWatcher;

/// Where [`Encapsulator::attach`] hooks the program: XDP (received frames,
/// sent back out with XDP_TX) in an [`XdpMode`], or the interface's egress
/// (tcx, Linux 6.6+: the host's own packets). An `XdpMode` converts into
/// `Hook::Xdp`, so `attach(iface, XdpMode::Auto)` reads as before.
///
/// ```no_run
/// // Not run: needs root and an interface named eth1.
/// use lnetd_host_encap::encap::Hook;
/// use lnetd_host_encap::{Encapsulator, XdpMode};
/// let router_on_a_stick = Encapsulator::builder().attach("eth1", XdpMode::Auto)?;
/// let host_mode = Encapsulator::builder().attach("eth2", Hook::Egress)?;
/// # let _ = (router_on_a_stick, host_mode);
/// # Ok::<(), lnetd_host_encap::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hook {
    /// XDP, in this mode.
    Xdp(XdpMode),
    /// The interface's egress (tcx): the host's OWN packets leaving through
    /// it get the same routes, policies and counters as on the XDP path; see
    /// docs/host-mode.md for TSO and the MTU.
    Egress,
}

impl From<XdpMode> for Hook {
    fn from(mode: XdpMode) -> Hook {
        Hook::Xdp(mode)
    }
}
