//! Where S-BFD meets the BGP table: which lists to probe (every usable list
//! of every valid candidate path for this host), and each policy list's
//! state for the metrics (`lnetd_host_encap_sbfd_*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use super::engine::{Engine, ListKey};
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
}

/// The S-BFD part of the BGP metrics: the engine (for its packet counts)
/// and the lists' states after the last computation.
#[derive(Debug, Default)]
pub struct SbfdStatus {
    /// The running engine, if S-BFD is on.
    pub engine: Option<Arc<Engine>>,
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
        let phases: BTreeMap<ListKey, &'static str> = match &self.engine {
            Some(e) => e.phases().into_iter().map(|(k, p)| (k, p.as_str())).collect(),
            None => BTreeMap::new(),
        };
        self.lists
            .iter()
            .map(|(color, key)| {
                let phase = phases.get(key).copied().unwrap_or("unprobed");
                ListStatus {
                    color: *color,
                    endpoint: key.endpoint,
                    list: key.stack.to_string(),
                    phase,
                    up: matches!(phase, "starting" | "up" | "unprobed"),
                }
            })
            .collect()
    }

    /// The Prometheus families: `lnetd_host_encap_sbfd_list_up{color,endpoint,list}`
    /// and the engine's packet counters; nothing when S-BFD is off.
    pub fn prometheus(&self, iface: &str) -> String {
        let mut out = String::new();
        let Some(engine) = &self.engine else { return out };
        let s = engine.stats();
        for (name, help, value) in [
            ("probes_sent_total", "S-BFD probes sent.", s.sent),
            ("send_errors_total", "S-BFD probes the interface refused.", s.send_errors),
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
        for l in self.lists() {
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
        out
    }
}
