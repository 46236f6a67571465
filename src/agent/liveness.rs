//! `GetLiveness` and the liveness lines of `Explain`: the S-BFD state of the
//! segment lists of the policies learned from BGP (docs/liveness.md), read
//! from the BGP learner's counters.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::Status;

use super::proto::v1 as pb;
use crate::bgp::sbfd::ListStatus;
use crate::bgp::BgpCounters;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The reply to `GetLiveness` from the learner's counters (`None`: no BGP).
///
/// # Errors
/// INVALID_ARGUMENT: an endpoint that is not an address.
pub(crate) fn reply(
    counters: Option<&Arc<BgpCounters>>,
    iface: &str,
    request: &pb::LivenessRequest,
) -> Result<pb::LivenessReply, Status> {
    let endpoint: Option<IpAddr> = match request.endpoint.as_str() {
        "" => None,
        e => Some(e.parse().map_err(|err| Status::invalid_argument(format!("endpoint {e:?}: {err}")))?),
    };
    let mut reply = pb::LivenessReply { interface: iface.to_owned(), ..Default::default() };
    let Some(counters) = counters else { return Ok(reply) };
    let status = counters.sbfd.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let set_timers = |reply: &mut pb::LivenessReply, timers: crate::bgp::sbfd::Timers| {
        reply.interval_ms = u32::try_from(timers.interval.as_millis()).unwrap_or(u32::MAX);
        reply.multiplier = u32::from(timers.multiplier);
        reply.hold_down_ms = u32::try_from(timers.hold_down.as_millis()).unwrap_or(u32::MAX);
    };
    let Some(engine) = &status.engine else {
        if let (Some(timers), Some(why)) = (status.configured, &status.not_running) {
            set_timers(&mut reply, timers);
            reply.not_running = why.to_string();
        }
        return Ok(reply);
    };
    let stats = engine.stats();
    reply.enabled = true;
    set_timers(&mut reply, engine.timers());
    reply.probes_sent = stats.sent;
    reply.send_errors = stats.send_errors;
    reply.answers = stats.answers;
    reply.invalid_answers = stats.invalid;
    reply.lists = status
        .lists()
        .into_iter()
        .filter(|l| request.color == 0 || l.color == request.color)
        .filter(|l| endpoint.is_none_or(|e| e == l.endpoint))
        .map(|l| message(&l))
        .collect();
    Ok(reply)
}

fn message(l: &ListStatus) -> pb::SegmentListLiveness {
    pb::SegmentListLiveness {
        color: l.color,
        endpoint: l.endpoint.to_string(),
        list: l.list.clone(),
        phase: l.phase.to_owned(),
        up: l.up,
        phase_ms: millis(l.phase_for),
        hold_down_left_ms: l.hold_down_left.map_or(0, millis),
        down_transitions: l.down_transitions,
        up_transitions: l.up_transitions,
    }
}

/// One list as `get` and `status` print it: `16001/16002: down for 2.1 s
/// (went down 3 times)`, `16003: returning, 1.2 s of hold-down left (went
/// down once)`.
pub fn list_line(l: &pb::SegmentListLiveness) -> String {
    let mut line = format!("{}: {}", l.list, l.phase);
    match l.phase.as_str() {
        "returning" => {
            let _ = write!(line, ", {:.1} s of hold-down left", l.hold_down_left_ms as f64 / 1000.0);
        }
        "unprobed" => line.push_str(" (no reflector discriminator or source address: used, not checked)"),
        _ => {
            let _ = write!(line, " for {:.1} s", l.phase_ms as f64 / 1000.0);
        }
    }
    match l.down_transitions {
        0 => {}
        1 => line.push_str(" (went down once)"),
        n => {
            let _ = write!(line, " (went down {n} times)");
        }
    }
    line
}

/// The S-BFD state of the policy (`color`, `endpoint`) for `Explain`:
/// `None` when S-BFD is not configured.
pub(crate) fn for_policy(
    counters: Option<&Arc<BgpCounters>>,
    color: u32,
    endpoint: IpAddr,
) -> Option<pb::LivenessReply> {
    let request = pb::LivenessRequest { color, endpoint: endpoint.to_string() };
    reply(counters, "", &request).ok().filter(|r| r.enabled || !r.not_running.is_empty())
}

/// The lines `get` adds for a route steered into policy (`color`,
/// `endpoint`): each list of its valid candidate paths and its state, or
/// why S-BFD, configured, is not running. Empty when S-BFD is off.
pub(crate) fn explain_lines(counters: Option<&Arc<BgpCounters>>, color: u32, endpoint: IpAddr) -> String {
    let Some(reply) = for_policy(counters, color, endpoint) else { return String::new() };
    if !reply.not_running.is_empty() {
        return format!(
            "\nliveness: S-BFD is configured but not running ({}): the segment lists are used without a liveness check",
            reply.not_running
        );
    }
    let mut text = format!(
        "\nliveness (S-BFD every {} ms x {}, hold-down {} ms):",
        reply.interval_ms, reply.multiplier, reply.hold_down_ms
    );
    for l in &reply.lists {
        let _ = write!(text, "\n  {}", list_line(l));
    }
    if reply.lists.is_empty() {
        text.push_str("\n  no segment list probed for this policy");
    }
    text
}
