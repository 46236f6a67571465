//! Diagnostics: what would happen to a packet ([`Probe`], [`Explanation`]),
//! the program run on a frame of your own ([`TestRun`]), how long it runs
//! ([`RunStats`]), how the kernel's tables differ from the bookkeeping
//! ([`Difference`]), and the routes counted by table and origin
//! ([`RouteCounts`]).
//!
//! ```
//! use lnetd_host_encap::diagnostics::Probe;
//!
//! let probe = Probe::udp("198.51.100.7".parse()?).from("10.0.0.1".parse()?).dport(443);
//! assert_eq!(probe.dport, 443);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::explain::{Explanation, Probe, ProbeProtocol};
pub use crate::fib::verify::{Difference, DifferenceKind};
pub use crate::handles::Diagnostics;
pub use crate::sys::test_run::{RunStats, RunTimeStats, TestRun, XdpAction, MAX_TEST_FRAME};

/// The routes counted by table and by recorded origin
/// ([`Diagnostics::route_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteCounts {
    /// Every route, set-aside ones included.
    pub total: u64,
    /// Routes per table; tables without routes are absent.
    pub by_table: std::collections::BTreeMap<crate::Table, u64>,
    /// Routes per origin (`static`, `agent`, `bgp`); origins without routes are absent.
    pub by_origin: std::collections::BTreeMap<String, u64>,
}
