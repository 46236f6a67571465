//! Where S-BFD meets the BGP table: which lists to probe (every usable list
//! of every valid candidate path for this host), and each policy list's
//! state for the metrics (`lnetd_host_encap_sbfd_*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::engine::{Engine, ListKey, ListState};
use crate::bgp::select::Candidate;

/// One segment list of a policy, as the metrics and logs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStatus {
    /// The policy's color.
    pub color: u32,
    /// Its endpoint.
    pub endpoint: IpAddr,
    /// The list's labels, `16001/16002`.
    pub list: String,
    /// The session's phase: `starting`, `up`, `down`, `returning`, or
    /// `unprobed` (no reflector discriminator or source for its family yet).
    pub phase: &'static str,
    /// Whether its flows may use it.
    pub up: bool,
    /// How long it has been in this phase (zero when unprobed).
    pub phase_for: Duration,
    /// While `returning`: how much of its hold-down is left.
    pub hold_down_left: Option<Duration>,
    /// Times it went from usable to unusable since it was first probed.
    pub down_transitions: u64,
    /// Times it went from unusable to usable again.
    pub up_transitions: u64,
}

/// The S-BFD part of the BGP metrics: the engine (for its packet counts)
/// and the lists' states after the last computation.
#[derive(Debug, Default)]
pub struct SbfdStatus {
    /// The running engine, if S-BFD is on.
    pub engine: Option<Arc<Engine>>,
    /// The configured timers, whenever S-BFD is configured (running or not).
    pub configured: Option<super::Timers>,
    /// While S-BFD is configured but its engine could not start (the
    /// learner retries every second): why, as the last attempt said.
    pub not_running: Option<super::SbfdError>,
    /// Every list of every valid candidate path, with its policy's color.
    pub lists: Vec<(u32, ListKey)>,
}

/// The lists to probe: every usable list of every valid candidate path.
/// Not only the active path's: when the active path dies, the next one is
/// already known to be live (or not), and when it comes back its lists
/// have been answering through their hold-down.
pub fn lists_to_probe<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> Vec<ListKey> {
    let mut keys: Vec<ListKey> = candidates
        .into_iter()
        .flat_map(|c| c.usable_stacks().into_iter().map(|stack| ListKey { endpoint: c.key.endpoint, stack }))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Each (color, list) of the valid candidate paths.
pub fn policy_lists<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> Vec<(u32, ListKey)> {
    let mut out: Vec<(u32, ListKey)> = candidates
        .into_iter()
        .flat_map(|c| {
            c.usable_stacks().into_iter().map(|stack| (c.key.color, ListKey { endpoint: c.key.endpoint, stack }))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl SbfdStatus {
    /// Each (color, endpoint, list) and its state now.
    pub fn lists(&self) -> Vec<ListStatus> {
        let (states, hold_down): (BTreeMap<ListKey, ListState>, Duration) = match &self.engine {
            Some(e) => (e.states().into_iter().collect(), e.timers().hold_down),
            None => (BTreeMap::new(), Duration::ZERO),
        };
        let now = Instant::now();
        self.lists
            .iter()
            .map(|(color, key)| {
                let state = states.get(key);
                let phase = state.map_or("unprobed", |s| s.phase.as_str());
                let hold_down_left = match state.map(|s| s.phase) {
                    Some(super::Phase::Returning { since, .. }) => {
                        Some((since + hold_down).saturating_duration_since(now))
                    }
                    _ => None,
                };
                ListStatus {
                    color: *color,
                    endpoint: key.endpoint,
                    list: key.stack.to_string(),
                    phase,
                    up: matches!(phase, "starting" | "up" | "unprobed"),
                    phase_for: state.map_or(Duration::ZERO, |s| now.saturating_duration_since(s.since)),
                    hold_down_left,
                    down_transitions: state.map_or(0, |s| s.downs),
                    up_transitions: state.map_or(0, |s| s.ups),
                }
            })
            .collect()
    }

    /// The lists of the policy (`color`, `endpoint`) only.
    pub fn policy(&self, color: u32, endpoint: IpAddr) -> Vec<ListStatus> {
        self.lists().into_iter().filter(|l| l.color == color && l.endpoint == endpoint).collect()
    }

    /// The Prometheus families: `lnetd_host_encap_sbfd_running` (with the
    /// reason while it is not), `lnetd_host_encap_sbfd_list_up{color,endpoint,list}`
    /// and the engine's packet counters; nothing when S-BFD is not configured.
    pub fn prometheus(&self, iface: &str) -> String {
        let mut out = String::new();
        if self.configured.is_none() && self.engine.is_none() {
            return out;
        }
        // Configured but not running must be visible: otherwise the lists
        // are used unchecked and nothing says so but one log line.
        let _ = writeln!(
            out,
            "# HELP lnetd_host_encap_sbfd_running 1 while the S-BFD engine runs; 0 while it is configured but \
             could not start (reason: interface, router_mac, socket, source_port; retried every second, the \
             segment lists used without a liveness check meanwhile)."
        );
        let _ = writeln!(out, "# TYPE lnetd_host_encap_sbfd_running gauge");
        let reason = match (&self.engine, &self.not_running) {
            (None, Some(e)) => e.reason(),
            _ => "",
        };
        let _ = writeln!(
            out,
            "lnetd_host_encap_sbfd_running{{interface=\"{iface}\",reason=\"{reason}\"}} {}",
            u8::from(self.engine.is_some())
        );
        let Some(engine) = &self.engine else { return out };
        let s = engine.stats();
        for (name, help, value) in [
            ("probes_sent_total", "S-BFD probes sent.", s.sent),
            ("send_errors_total", "S-BFD probes the interface refused.", s.send_errors),
            (
                "live_runs_failed_total",
                "XDP live-frame runs the kernel failed (their probes went through the socket).",
                s.live_runs_failed,
            ),
            ("answers_total", "S-BFD answers matched to a segment list.", s.answers),
            ("invalid_answers_total", "Datagrams on the S-BFD port that answer no probed list.", s.invalid),
        ] {
            let _ = writeln!(out, "# HELP lnetd_host_encap_sbfd_{name} {help}");
            let _ = writeln!(out, "# TYPE lnetd_host_encap_sbfd_{name} counter");
            let _ = writeln!(out, "lnetd_host_encap_sbfd_{name}{{interface=\"{iface}\"}} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP lnetd_host_encap_sbfd_list_up 1 while the segment list may carry flows (S-BFD answered, \
             hold-down over), 0 while it is down or in its hold-down."
        );
        let _ = writeln!(out, "# TYPE lnetd_host_encap_sbfd_list_up gauge");
        let lists = self.lists();
        for l in &lists {
            let _ = writeln!(
                out,
                "lnetd_host_encap_sbfd_list_up{{interface=\"{iface}\",color=\"{}\",endpoint=\"{}\",list=\"{}\",phase=\"{}\"}} {}",
                l.color,
                l.endpoint,
                l.list,
                l.phase,
                u8::from(l.up)
            );
        }
        let _ = writeln!(
            out,
            "# HELP lnetd_host_encap_sbfd_list_transitions_total Times the segment list went down (to=\"down\": \
             taken out of service) and came back (to=\"up\": in service again after its hold-down)."
        );
        let _ = writeln!(out, "# TYPE lnetd_host_encap_sbfd_list_transitions_total counter");
        for l in &lists {
            for (to, n) in [("down", l.down_transitions), ("up", l.up_transitions)] {
                let _ = writeln!(
                    out,
                    "lnetd_host_encap_sbfd_list_transitions_total{{interface=\"{iface}\",color=\"{}\",endpoint=\"{}\",list=\"{}\",to=\"{to}\"}} {n}",
                    l.color, l.endpoint, l.list
                );
            }
        }
        out
    }
}
