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
