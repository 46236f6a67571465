//! Labels, label stacks and SR policies: the values a route pushes.
//!
//! A [`Label`] is a 20-bit MPLS label that may name a segment (not a special
//! purpose label); a [`LabelStack`] is 1 to 16 of them, top first; a
//! [`Policy`] is 1 to 8 weighted segment lists (RFC 9256) with an optional
//! [`EntropyLabel`]. Every value is checked when it is built, and the text
//! forms are the ones the command and the desired-state files use.
//!
//! ```
//! use lnetd_host_encap::labels::{EntropyLabel, SegmentList, TrafficClass};
//! use lnetd_host_encap::{Label, LabelStack, Policy};
//!
//! let stack: LabelStack = "16001/16002".parse()?;
//! assert_eq!(stack.labels()[0], Label::new(16001)?);
//! let policy: Policy = "16001/16002@7,16003@3".parse()?;
//! assert_eq!(policy.lists()[1], SegmentList { stack: "16003".parse()?, weight: 3 });
//! let el = policy.with_entropy_label(Some("bottom".parse::<EntropyLabel>()?))?;
//! assert_eq!(el.to_string(), "16001/16002@7,16003@3 +EL");
//! assert_eq!("5".parse::<TrafficClass>()?.value(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::domain::label::{decode_stack, DscpMap, Label, LabelStack, LabelStackEntry, TrafficClass};
pub use crate::domain::policy::{
    EntropyLabel, NoLivePath, Policy, SegmentList, MAX_NAME, MAX_SEGMENT_LISTS, POLICY_SLOTS,
};
pub use crate::fib::objects::PolicyUpdate;
