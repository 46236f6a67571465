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

pub use crate::domain::desired::{DesiredFormat, DesiredRoute, DesiredSource, DesiredState, ValidState};
pub use crate::fib::apply::ApplyReport;

use std::borrow::Cow;

/// How [`Encapsulator::apply`](crate::Encapsulator::apply) applies a state.
///
/// ```
/// use lnetd_host_encap::ApplyOptions;
/// let what_if = ApplyOptions::default().dry_run(true);
/// assert!(what_if.is_dry_run() && !ApplyOptions::default().is_dry_run());
/// // Refused, with nothing written, if it would remove more than half the routes in force.
/// let guarded = ApplyOptions::default().max_remove_share(0.5);
/// assert_eq!(guarded.removal_guard(), Some(0.5));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct ApplyOptions {
    dry_run: bool,
    /// The share's bits (an `f64` is neither `Eq` nor `Hash`).
    max_remove_share: Option<u64>,
    /// Routes in force the guard leaves out of its count: those another
    /// origin (BGP) holds, which an apply of the local tables does not govern.
    pub(crate) uncounted: usize,
}

impl ApplyOptions {
    /// With `true`, compute the report (what would be added, replaced and
    /// removed, and whether it fits) without touching the kernel or the
    /// bookkeeping.
    pub fn dry_run(mut self, dry_run: bool) -> ApplyOptions {
        self.dry_run = dry_run;
        self
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Refuses the apply, before anything is written, when it would remove
    /// more than `share` (0..=1) of the routes in force:
    /// [`RouteError::RemovalRefused`](crate::errors::RouteError::RemovalRefused)
    /// says how many and which. The guard against a truncated or wrong file
    /// emptying the table, checked on the apply's own plan (no second
    /// comparison of the tables). A dry run reports and never refuses; a
    /// share outside 0..=1 is refused as
    /// [`RouteError::Invalid`](crate::errors::RouteError::Invalid).
    pub fn max_remove_share(mut self, share: f64) -> ApplyOptions {
        self.max_remove_share = Some(share.to_bits());
        self
    }

    /// The removal guard, if any ([`ApplyOptions::max_remove_share`]).
    pub fn removal_guard(&self) -> Option<f64> {
        self.max_remove_share.map(f64::from_bits)
    }
}

/// What [`Encapsulator::apply`](crate::Encapsulator::apply) takes: a
/// [`DesiredState`] (validated by the call) or a [`ValidState`] (validated
/// once, beforehand), borrowed or owned. An owned `ValidState` lets a large
/// change move its routes into the bookkeeping instead of copying them.
#[derive(Debug)]
pub struct ApplyInput<'a>(pub(crate) Input<'a>);

#[derive(Debug)]
pub(crate) enum Input<'a> {
    Desired(Cow<'a, DesiredState>),
    Valid(&'a ValidState),
    ValidOwned(ValidState),
}

impl<'a> From<&'a DesiredState> for ApplyInput<'a> {
    fn from(desired: &'a DesiredState) -> Self {
        ApplyInput(Input::Desired(Cow::Borrowed(desired)))
    }
}

impl From<DesiredState> for ApplyInput<'_> {
    fn from(desired: DesiredState) -> Self {
        ApplyInput(Input::Desired(Cow::Owned(desired)))
    }
}

impl<'a> From<&'a ValidState> for ApplyInput<'a> {
    fn from(valid: &'a ValidState) -> Self {
        ApplyInput(Input::Valid(valid))
    }
}

impl From<ValidState> for ApplyInput<'_> {
    fn from(valid: ValidState) -> Self {
        ApplyInput(Input::ValidOwned(valid))
    }
}
