//! Desired state and apply: the whole state at once, validated as a whole,
//! applied with the fewest map operations.
//!
//! A [`DesiredState`] (TOML or JSON, unknown keys refused) is what a
//! controller hands to [`Encapsulator::apply`](crate::Encapsulator::apply);
//! [`ValidState`] is the same once checked, to validate once and apply (or
//! dry-run) many times; [`ApplyReport`] says what changed.
//!
//! ```
//! use lnetd_host_encap::desired::ValidState;
//! use lnetd_host_encap::DesiredState;
//!
//! let desired = DesiredState::from_toml("[[routes]]\nprefix = \"0.0.0.0/0\"\npolicy = \"1000000\"")?;
//! let valid: ValidState = desired.validate()?;
//! assert_eq!(valid.routes().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::domain::desired::{
    DesiredFormat, DesiredRoute, DesiredSource, DesiredState, EntropySpec, TcSpec, ValidState,
};
pub use crate::fib::apply::ApplyReport;
