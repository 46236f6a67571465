//! Counters and stats: what the dataplane did, per outcome and per route.
//!
//! [`Stats`] sums the per-CPU outcome counters of the program (every packet
//! moves exactly one); [`RouteCounters`] counts what one route labelled, per
//! segment list; [`prometheus`] renders both as exposition text.
//!
//! ```
//! use lnetd_host_encap::counters::Counter;
//! use lnetd_host_encap::Stats;
//!
//! let before = Stats::default();
//! let mut after = Stats::default();
//! after.labelled = Counter { packets: 3, bytes: 300 };
//! assert_eq!(after.since(&before).labelled.packets, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::fib::RouteCounters;
pub use crate::metrics::{prometheus, CountedRoute};
pub use crate::stats::{Counter, Stats};
