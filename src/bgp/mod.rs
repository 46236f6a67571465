//! SR policies and colored routes learned from BGP, through GoBGP (feature
//! `bgp`).
//!
//! The host runs GoBGP (`gobgpd`) beside the agent; GoBGP peers with the
//! network's route reflectors or controllers and receives SR Policies (SAFI
//! 73, RFC 9830) and colored IPv4/IPv6 unicast routes; the agent follows
//! GoBGP's best paths over its gRPC API ([`learn`]), keeps the SR Policy
//! paths addressed to this host ([`accept`], RFC 9830 section 4.2.1), selects the active
//! candidate path of every (color, endpoint) ([`select`], RFC 9256), steers
//! each colored route into its policy ([`steer`], RFC 9256 section 8.4), and
//! installs the result merged with the routes of the other origins
//! ([`origins`]) through the encapsulator's atomic `apply`.
//!
//! ```no_run
//! # async fn demo(enc: std::sync::Arc<lnetd_host_encap::Encapsulator>) {
//! use std::sync::Arc;
//! use lnetd_host_encap::bgp::{self, BgpConfig, BgpCounters, Origins};
//! let origins = Arc::new(Origins::new(Arc::clone(&enc)));
//! let counters = Arc::new(BgpCounters::default());
//! let (_stop, stopped) = tokio::sync::watch::channel(false);
//! bgp::learn::run(BgpConfig::new("127.0.0.1:50052"), origins, counters, stopped).await;
//! # }
//! ```

pub mod accept;
pub mod counters;
pub mod enlp;
pub mod learn;
pub mod origins;
pub mod sbfd;
pub mod select;
pub mod steer;
mod table;
mod wanted;
pub mod wire;

use crate::domain::policy::NoLivePath;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

pub use counters::BgpCounters;
pub use origins::{object_name, BgpTable, Origin, Origins, OriginsView, PolicyInfo, Precedence, PrecedenceError};
pub use select::{Candidate, CandidateList, PolicyKey, Selected};

/// The subset of GoBGP's API this crate uses (package `apipb`, mirroring
/// GoBGP 3.10.0; see `proto/gobgp/gobgp.proto`): a client, and the messages.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub mod proto {
    tonic::include_proto!("apipb");
}

/// What happens to the routes a BGP peer (or GoBGP itself) taught when the
/// session goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionDown {
    /// Keep the last known state (the safer default for forwarding): the
    /// routes stay until the session is back and BGP has had the stale time
    /// to teach them again.
    #[default]
    Keep,
    /// Withdraw them at once: their packets go unlabelled.
    Withdraw,
}

impl fmt::Display for SessionDown {
    /// `keep` or `withdraw`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionDown::Keep => "keep",
            SessionDown::Withdraw => "withdraw",
        })
    }
}

/// A session-down policy that is neither `keep` nor `withdraw`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session-down policy {0:?}: say keep (keep the last known routes) or withdraw")]
pub struct SessionDownError(pub String);

impl FromStr for SessionDown {
    type Err = SessionDownError;
    /// `keep` or `withdraw`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "keep" => Ok(SessionDown::Keep),
            "withdraw" => Ok(SessionDown::Withdraw),
            other => Err(SessionDownError(other.to_owned())),
        }
    }
}

/// How the agent learns from BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// GoBGP's gRPC API address, `host:port` (gobgpd `--api-hosts`).
    pub api: String,
    /// What a session loss does to the routes it taught.
    pub session_down: SessionDown,
    /// A batch of events is applied once GoBGP has been quiet this long.
    pub debounce: Duration,
    /// ... or at the latest this long after its first event.
    pub max_delay: Duration,
    /// Under [`SessionDown::Keep`]: how long a peer (or GoBGP) that came back
    /// has to teach its routes again before the ones it did not are removed.
    pub stale_time: Duration,
    /// This host's BGP identifier, which SR Policy route targets must name
    /// (RFC 9830 section 4.2.1); `None`: GoBGP's router ID (`GetBgp`), read
    /// at every connection.
    pub router_id: Option<Ipv4Addr>,
    /// Segment-list liveness with S-BFD (`--sbfd-*`); `None`: off, every
    /// usable list is used.
    pub sbfd: Option<sbfd::SbfdConfig>,
    /// What the packets of the routes steered into a policy with no live
    /// candidate path do (`--sbfd-no-live-path`): unlabelled (the default)
    /// or dropped, by one write to the policy's object either way. It
    /// applies to every policy left without a valid path, whether S-BFD
    /// took its lists down or BGP's paths are invalid (with S-BFD off).
    pub no_live_path: NoLivePath,
}

impl BgpConfig {
    /// GoBGP at `api`, with the defaults: keep on session loss, 150 ms
    /// debounce, 500 ms maximum delay, 5 s stale time, GoBGP's router ID,
    /// no S-BFD, an invalid policy's packets unlabelled.
    pub fn new(api: impl Into<String>) -> BgpConfig {
        BgpConfig {
            api: api.into(),
            session_down: SessionDown::Keep,
            debounce: Duration::from_millis(150),
            max_delay: Duration::from_millis(500),
            stale_time: Duration::from_secs(5),
            router_id: None,
            sbfd: None,
            no_live_path: NoLivePath::Unlabelled,
        }
    }
}
