//! Pins: where a dataplane that outlives its process keeps its maps, link
//! and bookkeeping (bpffs and a state directory), for
//! [`EncapsulatorBuilder::pinned_at`](crate::encap::EncapsulatorBuilder::pinned_at)
//! and [`AdoptOptions`](crate::encap::AdoptOptions).
//!
//! ```
//! use lnetd_host_encap::pins::{PinRoots, DEFAULT_BPFFS_ROOT};
//!
//! assert_eq!(PinRoots::default().bpffs, std::path::Path::new(DEFAULT_BPFFS_ROOT));
//! ```

pub use crate::dataplane::pins::{PinRoots, DEFAULT_BPFFS_ROOT, DEFAULT_STATE_ROOT};
