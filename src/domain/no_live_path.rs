//! What an SR policy with no live candidate path does with its routes'
//! packets (RFC 9256 section 5 leaves it to the headend), and the text that
//! says it.

use std::fmt;
use std::str::FromStr;

use crate::domain::policy::PolicyError;

/// What the packets of the routes steered into a policy with no live
/// candidate path do (RFC 9256 section 5 makes the policy invalid and leaves
/// its traffic to the headend): the agent's `[sbfd] no_live_path` and
/// `--sbfd-no-live-path`, and [`Policy::invalid_with`](crate::Policy::invalid_with).
///
/// Either way the routes stay on the policy's object, so going invalid and
/// coming back is one write however many routes the policy steers; a
/// covering route never takes their traffic.
///
/// ```
/// use lnetd_host_encap::{labels::NoLivePath, Policy};
/// let then: NoLivePath = "drop".parse()?;
/// let policy = Policy::invalid_with("blue", then)?;
/// assert_eq!((policy.to_string().as_str(), policy.when_invalid()), ("invalid drop", Some(NoLivePath::Drop)));
/// # Ok::<(), lnetd_host_encap::errors::PolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NoLivePath {
    /// Passed to the host's stack unlabelled, counted as
    /// [`crate::Stats::no_route`] (the default: the host routes them as it
    /// would without the encapsulator).
    #[default]
    Unlabelled,
    /// Dropped (XDP_DROP, or TC_ACT_SHOT on egress), counted as
    /// [`crate::Stats::no_live_path_dropped`]: nothing leaves on a path
    /// nobody chose for it.
    Drop,
}

impl fmt::Display for NoLivePath {
    /// `unlabelled` or `drop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoLivePath::Unlabelled => "unlabelled",
            NoLivePath::Drop => "drop",
        })
    }
}

impl FromStr for NoLivePath {
    type Err = PolicyError;
    /// `unlabelled` or `drop`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "unlabelled" => Ok(NoLivePath::Unlabelled),
            "drop" => Ok(NoLivePath::Drop),
            _ => Err(PolicyError::NoLivePathParse { input: s.to_owned() }),
        }
    }
}

/// The text of an invalid policy: `invalid` (unlabelled) or `invalid drop`.
pub(crate) const INVALID: &str = "invalid";

/// What the text of an invalid policy says its packets do; `None` for any
/// other text.
pub(crate) fn invalid_text(text: &str) -> Option<NoLivePath> {
    let mut words = text.split_whitespace();
    if words.next() != Some(INVALID) {
        return None;
    }
    match (words.next(), words.next()) {
        (None, _) => Some(NoLivePath::Unlabelled),
        (Some("drop"), None) => Some(NoLivePath::Drop),
        _ => None,
    }
}
