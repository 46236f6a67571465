//! Diagnostics: what would happen to a packet ([`Probe`], [`Explanation`]),
//! the program run on a frame of your own ([`TestRun`]), how long it runs
//! ([`RunStats`]), and how the kernel's tables differ from the bookkeeping
//! ([`Difference`]).
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
