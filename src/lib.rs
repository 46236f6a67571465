//! Steer a Linux host's traffic into SR-MPLS / SR-TE paths: an XDP program
//! pushes MPLS label stacks chosen by longest-prefix match on the destination,
//! and this crate is its typed control surface.
//!
//! The topology is the "router on a stick": the router hands the host packets
//! (for instance everything it would send toward a destination), the host's
//! XDP program pushes the label stack for the destination, swaps the MACs and
//! sends the frame straight back (XDP_TX); the router then forwards on the top
//! label (a prefix SID, an adjacency SID, or a binding SID it expands into an
//! SR policy).
//!
//! ```no_run
//! use lnetd_host_encap::{Encapsulator, Label, XdpMode};
//!
//! let enc = Encapsulator::builder().attach("eth1", XdpMode::Auto)?;
//! // The proof of concept's static binding SID, as an ordinary default route.
//! enc.set_label("0.0.0.0/0".parse()?, Label::new(1_000_000)?)?;
//! // A specific prefix through an explicit two-segment path.
//! enc.set_labels("198.51.100.0/24".parse()?, "16001/16002".parse()?)?;
//! let stats = enc.stats()?;
//! println!("labelled {} packets", stats.labelled.packets);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate never prints: it returns errors and logs through the `log`
//! facade (libbpf's own messages included, under the target `libbpf`).
//!
//! # Errors
//!
//! Every fallible call returns a typed error of its area ([`LabelError`],
//! [`PolicyError`], [`PrefixError`], [`RouteError`], [`AttachError`], ...),
//! each convertible into [`enum@Error`]. The enums are `#[non_exhaustive]`:
//! match with a wildcard arm. Messages say what was wrong, quoting the text
//! given, and what to do. `fn main() -> Result<(), Error>` prints the message
//! (`Error`'s `Debug` is the message and its causes), and the errors work with
//! any reporter of `std::error::Error` chains, `anyhow` for instance:
//!
//! ```
//! use anyhow::Context;
//! use lnetd_host_encap::{Error, LabelError, LabelStack, Policy, Route, RouteError};
//!
//! fn route_from_config(prefix: &str, stack: &str) -> anyhow::Result<Route> {
//!     let prefix = lnetd_host_encap::prefix::parse(prefix)?;
//!     let stack: LabelStack = stack.parse().with_context(|| format!("the route for {prefix}"))?;
//!     Ok(Route::new(prefix, stack))
//! }
//!
//! let err = route_from_config("198.51.100.0/24", "16001//16002").unwrap_err();
//! // `{:#}` prints the chain on one line; `{:?}` on several, as `main` does.
//! assert_eq!(
//!     format!("{err:#}"),
//!     "the route for 198.51.100.0/24: \"16001//16002\" is not a label stack: label 2 of 3 is empty \
//!      (expected labels separated by `/`, e.g. `16001/16002`)"
//! );
//! // A label error stays a label error under the context.
//! assert!(matches!(err.downcast_ref::<LabelError>(), Some(LabelError::StackParse { position: 2, .. })));
//!
//! // Through this crate's `Error`, it is one path: `Error::Route(RouteError::Label(..))`.
//! fn checked(text: &str) -> Result<Policy, Error> {
//!     Ok(text.parse::<Policy>()?)
//! }
//! let err = anyhow::Error::from(checked("16001@7,16002@0").unwrap_err()).context("policy of 198.51.100.0/24");
//! // `{err:?}` prints "policy of 198.51.100.0/24", then "Caused by:" and this:
//! let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
//! assert_eq!(chain, ["policy of 198.51.100.0/24", "segment list 1 has weight 0; weights are 1..=65535"]);
//! assert!(matches!(err.downcast_ref::<Error>(), Some(Error::Route(RouteError::Policy(_)))));
//! ```
//!
//! A match without a wildcard arm does not compile, so a new variant never
//! breaks a dependent:
//!
//! ```compile_fail,E0004
//! use lnetd_host_encap::PrefixError;
//! fn what(e: &PrefixError) -> &'static str {
//!     match e {
//!         PrefixError::HostBitsSet { .. } => "host bits",
//!         PrefixError::Parse { .. } => "not a prefix",
//!     }
//! }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod abi;
#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "bgp")]
pub mod bgp;
mod dataplane;
mod decapsulator;
mod display;
mod domain;
mod encapsulator;
mod error;
mod explain;
mod fib;
mod metrics;
mod rib;
mod stats;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "watch")]
mod watch;

pub use dataplane::pins::{PinRoots, DEFAULT_BPFFS_ROOT, DEFAULT_STATE_ROOT};
pub use decapsulator::{Decapsulator, DecapsulatorBuilder};
pub use domain::config::{AttachedMode, ConfigParseError, Ipv4Lookup, MtuPolicy, OtherLabels, TtlMode, XdpMode};
pub use domain::desired::{
    DesiredError, DesiredFileError, DesiredFormat, DesiredRoute, DesiredSource, DesiredState, EntropySpec, TcSpec,
    ValidState,
};
pub use domain::label::{decode_stack, DscpMap, Label, LabelError, LabelStack, LabelStackEntry, TrafficClass};
pub use domain::policy::{EntropyLabel, Policy, PolicyError, SegmentList, MAX_SEGMENT_LISTS, POLICY_SLOTS};
pub use domain::prefix::{self, PrefixError};
pub use domain::route::{Route, Table, Tc};
pub use encapsulator::{AdoptOptions, Attachment, Encapsulator, EncapsulatorBuilder};
pub use error::{AttachError, Error, LoadError, MapError, PinError, RouteError, TestRunError};
pub use explain::{Explanation, Probe, ProbeProtocol};
pub use fib::apply::ApplyReport;
pub use fib::verify::{Difference, DifferenceKind};
pub use fib::RouteCounters;
pub use ipnetwork::IpNetwork;
pub use metrics::{prometheus, CountedRoute};
pub use stats::{Counter, DecapStats, Stats};
pub use sys::privileges::MissingCapabilities;
pub use sys::test_run::{RunStats, RunTimeStats, TestRun, XdpAction, MAX_TEST_FRAME};
#[cfg(feature = "testing")]
pub use testing::lab;
#[cfg(feature = "watch")]
pub use watch::AddressWatcher;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The examples of the guides in docs/, compiled as doctests.
#[cfg(doctest)]
pub mod docs_doctests {
    #[doc = include_str!("../docs/design.md")]
    pub struct Design;
    #[doc = include_str!("../docs/host-mode.md")]
    pub struct HostMode;
    #[doc = include_str!("../docs/agent.md")]
    pub struct Agent;
    #[doc = include_str!("../docs/bgp.md")]
    pub struct Bgp;
}
