//! What the BGP side did, for the metrics endpoint: Prometheus families
//! `lnetd_host_encap_bgp_*`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::accept::Ignored;
use super::select::Invalid;

/// Counters and gauges of the BGP learner. Counters only grow; gauges are
/// the state after the last change.
#[derive(Debug, Default)]
pub struct BgpCounters {
    /// Paths announced by GoBGP (best-path events and full-sync paths).
    pub updates: AtomicU64,
    /// Paths withdrawn.
    pub withdrawals: AtomicU64,
    /// Paths received in events, counted on arrival (before batching).
    pub paths_received: AtomicU64,
    /// Withdrawals kept (session-down policy `keep`, the peer was down).
    pub withdrawals_kept: AtomicU64,
    /// Peer state events.
    pub peer_events: AtomicU64,
    /// Full synchronisations (ListPath) after connecting to GoBGP.
    pub resyncs: AtomicU64,
    /// Connections to GoBGP's API lost.
    pub api_disconnects: AtomicU64,
    /// Paths that could not be read.
    pub decode_errors: AtomicU64,
    /// Segments of a type other than A (SR-MPLS label) received: their lists are not used.
    pub ignored_segments: AtomicU64,
    /// Candidate paths with more usable segment lists than a policy holds
    /// (8): cut to the first 8, counted once per change of such a path.
    pub segment_lists_cut: AtomicU64,
    /// Merged states applied, and refused.
    pub applies: AtomicU64,
    /// Applies refused by the dataplane.
    pub apply_errors: AtomicU64,
    /// 1 while connected to GoBGP's API.
    pub api_connected: AtomicU64,
    /// SR policies (color, endpoint) with a valid active candidate path.
    pub policies_active: AtomicU64,
    /// SR policies whose candidate paths are all invalid.
    pub policies_invalid: AtomicU64,
    /// Candidate paths learned.
    pub candidate_paths: AtomicU64,
    /// Colored routes steered into a policy.
    pub routes_steered: AtomicU64,
    /// Routes learned that no valid policy takes (left unlabelled).
    pub routes_unsteered: AtomicU64,
    /// Routes held now: kept from a session that is down, or from before
    /// a resynchronisation, until BGP teaches them again or the stale time
    /// after the session is back ends.
    pub routes_held: AtomicU64,
    /// BGP routes in the dataplane after the last apply (steered and held,
    /// less those a static or agent route overrides).
    pub routes_installed: AtomicU64,
    /// How long the last apply took, in microseconds.
    pub last_apply_micros: AtomicU64,
    /// How long the last selection and steering took, in microseconds.
    pub last_compute_micros: AtomicU64,
    /// Session state per neighbor (1 established, 0 not).
    pub peers: Mutex<BTreeMap<String, bool>>,
    /// SR Policy announcements not for this host (RFC 9830 section 4.2.1),
    /// by [`Ignored`] reason (indexed by [`Ignored::index`]).
    pub policies_ignored_total: PerReason<{ Ignored::ALL.len() }>,
    /// SR Policy paths not for this host now, by reason.
    pub policies_ignored: PerReason<{ Ignored::ALL.len() }>,
    /// Invalid candidate path announcements (for this host), by [`Invalid`]
    /// reason (indexed by [`Invalid::index`]).
    pub candidate_paths_invalid_total: PerReason<{ Invalid::ALL.len() }>,
    /// Invalid candidate paths now, by reason.
    pub candidate_paths_invalid: PerReason<{ Invalid::ALL.len() }>,
    /// The BGP identifier route targets are matched against, once known.
    pub router_id: Mutex<Option<Ipv4Addr>>,
    /// Segment-list liveness (S-BFD), when it runs.
    pub sbfd: Mutex<super::sbfd::SbfdStatus>,
    /// When each neighbor's session last changed state (for `status`).
    pub peers_since: Mutex<BTreeMap<String, std::time::SystemTime>>,
    /// The last apply of BGP's routes that changed the dataplane: when, and
    /// how many routes it added, replaced or removed (for `status`).
    pub last_change: Mutex<Option<(std::time::SystemTime, u64)>>,
}

/// A counter or gauge per reason, by the reason's index.
#[derive(Debug)]
pub struct PerReason<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for PerReason<N> {
    fn default() -> Self {
        PerReason(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> PerReason<N> {
    /// The value for the reason at `index` (0 for an index out of range).
    pub fn get(&self, index: usize) -> u64 {
        self.0.get(index).map_or(0, get)
    }

    pub(crate) fn add(&self, index: usize, n: u64) {
        if let Some(a) = self.0.get(index) {
            add(a, n);
        }
    }

    pub(crate) fn set(&self, index: usize, n: u64) {
        if let Some(a) = self.0.get(index) {
            set(a, n);
        }
    }
}

/// Every [`Ignored`] reason's label and its value in `per`
/// (`policies_ignored` or `policies_ignored_total`): what the metrics list
/// and `status` shows, read from the one place.
pub fn ignored_by_reason(per: &PerReason<{ Ignored::ALL.len() }>) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    Ignored::ALL.iter().map(|r| (r.as_str(), per.get(r.index())))
}

/// Every [`Invalid`] reason's label and its value in `per`
/// (`candidate_paths_invalid` or its total), as [`ignored_by_reason`].
pub fn invalid_by_reason(per: &PerReason<{ Invalid::ALL.len() }>) -> impl Iterator<Item = (&'static str, u64)> + '_ {
    Invalid::ALL.iter().map(|r| (r.as_str(), per.get(r.index())))
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

pub(crate) fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn set(a: &AtomicU64, n: u64) {
    a.store(n, Ordering::Relaxed);
}

impl BgpCounters {
    /// The Prometheus text exposition of these counters, labelled by `interface`.
    pub fn prometheus(&self, interface: &str) -> String {
        let mut out = String::new();
        let iface = interface.replace('\\', "\\\\").replace('"', "\\\"");
        let mut family = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP lnetd_host_encap_bgp_{name} {help}");
            let _ = writeln!(out, "# TYPE lnetd_host_encap_bgp_{name} {kind}");
            let _ = writeln!(out, "lnetd_host_encap_bgp_{name}{{interface=\"{iface}\"}} {value}");
        };
        family("updates_total", "counter", "Paths announced by BGP.", get(&self.updates));
        family("withdrawals_total", "counter", "Paths withdrawn by BGP.", get(&self.withdrawals));
        family("paths_received_total", "counter", "Paths received in GoBGP's events.", get(&self.paths_received));
        family(
            "withdrawals_kept_total",
            "counter",
            "Withdrawals from a peer that went down, kept (session-down policy keep).",
            get(&self.withdrawals_kept),
        );
        family("peer_events_total", "counter", "BGP peer state events.", get(&self.peer_events));
        family("resyncs_total", "counter", "Full synchronisations with GoBGP (ListPath).", get(&self.resyncs));
        family("api_disconnects_total", "counter", "Connections to GoBGP's API lost.", get(&self.api_disconnects));
        family("decode_errors_total", "counter", "Paths from GoBGP that could not be read.", get(&self.decode_errors));
        family(
            "ignored_segments_total",
            "counter",
            "Segments of types other than SR-MPLS labels; their segment lists are not used.",
            get(&self.ignored_segments),
        );
        family(
            "segment_lists_cut_total",
            "counter",
            "Candidate paths with more than 8 usable segment lists, cut to the first 8 (once per change of such a path).",
            get(&self.segment_lists_cut),
        );
        family("applies_total", "counter", "Merged states applied to the dataplane.", get(&self.applies));
        family("apply_errors_total", "counter", "Merged states the dataplane refused.", get(&self.apply_errors));
        family("api_connected", "gauge", "1 while connected to GoBGP's API.", get(&self.api_connected));
        family(
            "policies_active",
            "gauge",
            "SR policies with a valid active candidate path.",
            get(&self.policies_active),
        );
        family("policies_invalid", "gauge", "SR policies with no valid candidate path.", get(&self.policies_invalid));
        family("candidate_paths", "gauge", "SR policy candidate paths learned.", get(&self.candidate_paths));
        family("routes_steered", "gauge", "Colored routes steered into an SR policy.", get(&self.routes_steered));
        family(
            "routes_unsteered",
            "gauge",
            "Routes learned that no valid SR policy takes (left unlabelled).",
            get(&self.routes_unsteered),
        );
        family(
            "routes_installed",
            "gauge",
            "BGP routes in the dataplane after the last apply.",
            get(&self.routes_installed),
        );
        family(
            "routes_held",
            "gauge",
            "BGP routes held: kept from a session that is down or not yet resynchronised, until taught again or \
             the stale time ends.",
            get(&self.routes_held),
        );
        family(
            "last_compute_microseconds",
            "gauge",
            "How long the last selection and steering of BGP's paths took.",
            get(&self.last_compute_micros),
        );
        family(
            "last_apply_microseconds",
            "gauge",
            "How long the last apply of BGP's routes took.",
            get(&self.last_apply_micros),
        );
        let mut by_reason = |name: &str, kind: &str, help: &str, values: &mut dyn Iterator<Item = (&str, u64)>| {
            let _ = writeln!(out, "# HELP lnetd_host_encap_bgp_{name} {help}");
            let _ = writeln!(out, "# TYPE lnetd_host_encap_bgp_{name} {kind}");
            for (reason, value) in values {
                let _ =
                    writeln!(out, "lnetd_host_encap_bgp_{name}{{interface=\"{iface}\",reason=\"{reason}\"}} {value}");
            }
        };
        by_reason(
            "policies_ignored_total",
            "counter",
            "SR Policy paths received that are not for this host (RFC 9830 4.2.1: no route target naming its BGP \
             identifier, or none and no NO_ADVERTISE), by reason.",
            &mut ignored_by_reason(&self.policies_ignored_total),
        );
        by_reason(
            "policies_ignored",
            "gauge",
            "SR Policy paths known now that are not for this host, by reason.",
            &mut ignored_by_reason(&self.policies_ignored),
        );
        by_reason(
            "candidate_paths_invalid_total",
            "counter",
            "SR Policy paths for this host received invalid (no Tunnel Encapsulation attribute, no SR Policy \
             tunnel in it, no usable segment list), by reason; they are never active.",
            &mut invalid_by_reason(&self.candidate_paths_invalid_total),
        );
        by_reason(
            "candidate_paths_invalid",
            "gauge",
            "Invalid candidate paths for this host known now, by reason.",
            &mut invalid_by_reason(&self.candidate_paths_invalid),
        );
        let router_id = *self.router_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP lnetd_host_encap_bgp_router_id The BGP identifier SR Policy route targets must name (1), or none known (0)."
        );
        let _ = writeln!(out, "# TYPE lnetd_host_encap_bgp_router_id gauge");
        let _ = writeln!(
            out,
            "lnetd_host_encap_bgp_router_id{{interface=\"{iface}\",router_id=\"{}\"}} {}",
            router_id.map(|r| r.to_string()).unwrap_or_default(),
            u8::from(router_id.is_some())
        );
        let peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP lnetd_host_encap_bgp_session_up 1 while the BGP session with the neighbor is established."
        );
        let _ = writeln!(out, "# TYPE lnetd_host_encap_bgp_session_up gauge");
        for (neighbor, up) in peers.iter() {
            let _ = writeln!(
                out,
                "lnetd_host_encap_bgp_session_up{{interface=\"{iface}\",neighbor=\"{neighbor}\"}} {}",
                u8::from(*up)
            );
        }
        drop(peers);
        out.push_str(&self.sbfd.lock().unwrap_or_else(std::sync::PoisonError::into_inner).prometheus(&iface));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exposed_and_the_router_id_is_labelled() {
        let c = BgpCounters::default();
        c.policies_ignored_total.add(Ignored::NoRouteTarget.index(), 3);
        c.candidate_paths_invalid.set(Invalid::NoTunnelEncapsulation.index(), 1);
        let text = c.prometheus("eth1");
        for r in Ignored::ALL {
            let want = u64::from(r == Ignored::NoRouteTarget) * 3;
            let line = format!(
                "lnetd_host_encap_bgp_policies_ignored_total{{interface=\"eth1\",reason=\"{}\"}} {want}",
                r.as_str()
            );
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        for r in Invalid::ALL {
            let want = u64::from(r == Invalid::NoTunnelEncapsulation);
            let line = format!(
                "lnetd_host_encap_bgp_candidate_paths_invalid{{interface=\"eth1\",reason=\"{}\"}} {want}",
                r.as_str()
            );
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.contains("lnetd_host_encap_bgp_router_id{interface=\"eth1\",router_id=\"\"} 0\n"), "{text}");
        *c.router_id.lock().unwrap() = Some("10.0.0.2".parse().unwrap());
        assert!(c
            .prometheus("eth1")
            .contains("lnetd_host_encap_bgp_router_id{interface=\"eth1\",router_id=\"10.0.0.2\"} 1\n"));
        assert_eq!(c.policies_ignored_total.get(99), 0, "an index out of range reads 0");
    }
}
