//! `status`: what runs on the interface (attachment, program, pins), its
//! routes per table and origin, whether the kernel matches the RIB, and,
//! from the agent when one serves the interface, the BGP sessions and the
//! last change. Printed as text or as one JSON document; every field is
//! additive (docs/operations-json.md).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lnetd_host_encap::{encap::AdoptOptions, Table};
use serde::Serialize;

use super::{output, recover, Failure};

/// The XDP program on the interface.
#[derive(Serialize)]
struct Program {
    id: u32,
    name: String,
    /// One of this project's programs (the encapsulator's or the decapsulator's).
    ours: bool,
    /// "encapsulator", "decapsulator", or null for another project's program.
    role: Option<&'static str>,
}

impl Program {
    fn of((id, name): (u32, String)) -> Program {
        let role = if recover::OUR_PROGRAMS.contains(&name.as_str()) {
            Some("encapsulator")
        } else if recover::DECAP_PROGRAMS.contains(&name.as_str()) {
            Some("decapsulator")
        } else {
            None
        };
        Program { ours: role.is_some(), role, id, name }
    }
}

/// The decapsulator pinned on the interface (`pop attach`).
#[derive(Serialize)]
struct Decap {
    /// "native", "generic" (XDP) or "ingress" (tcx); null when it could not be read.
    mode: Option<String>,
    /// The labels it pops.
    labels: Vec<u32>,
    /// What it does with other labels: "pass" or "drop".
    other_labels: Option<String>,
    /// Why it could not be read (e.g. another process holds it), else null.
    error: Option<String>,
}

/// The agent serving the interface.
#[derive(Serialize, Default)]
struct Agent {
    socket: String,
    /// When it started (Unix ms; null when it did not answer `GetStatus`).
    started_unix_ms: Option<u64>,
    /// When it counted the routes reported (Unix ms; null from an older agent).
    counted_unix_ms: Option<u64>,
    /// Seconds between its background comparisons of the kernel with the
    /// RIB (0: none; null from an older agent).
    verify_interval_s: Option<u64>,
}

#[derive(Serialize, Default)]
struct Routes {
    total: u64,
    /// "main" and each alternate table's id.
    by_table: BTreeMap<String, u64>,
    /// "static", "agent", "bgp".
    by_origin: BTreeMap<String, u64>,
    sources: u64,
}

/// `based_on` when this command compared the kernel with the RIB itself.
const COMPARED_NOW: &str = "compared now";
/// `based_on` while the agent has not compared them yet.
const NOT_COMPARED: &str = "not compared";

#[derive(Serialize)]
struct Kernel {
    /// Whether every map entry is what the RIB says; null while an agent
    /// has not compared them yet (`based_on`: "not compared").
    matches: Option<bool>,
    differences: u64,
    /// The first difference, as text.
    example: Option<String>,
    /// What the answer is based on: "compared now" (this command read both,
    /// without an agent), the agent's last comparison: "background",
    /// "verify", "repair", or "not compared" (an agent that has not yet).
    based_on: String,
    /// When that comparison ended (Unix ms).
    at_unix_ms: u64,
    /// How long it took.
    took_ms: u64,
}

#[derive(Serialize)]
struct Session {
    neighbor: String,
    established: bool,
    /// Unix ms of the last change of state the agent saw (null: unknown).
    since_unix_ms: Option<u64>,
}

#[derive(Serialize, Default)]
struct Bgp {
    api_connected: bool,
    sessions: Vec<Session>,
    /// Routes kept from a session that is down or not yet resynchronised.
    routes_held: u64,
    /// SR Policy paths known now that are not for this host (RFC 9830
    /// acceptance), by reason (the metrics' labels); as the agent gives
    /// them, reasons above 0 only.
    policies_ignored: BTreeMap<String, u64>,
    /// The same, received since the agent started.
    policies_ignored_total: BTreeMap<String, u64>,
    /// Candidate paths for this host known now that are invalid, by reason.
    candidate_paths_invalid: BTreeMap<String, u64>,
    /// The same, received since the agent started.
    candidate_paths_invalid_total: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct LastChange {
    at_unix_ms: u64,
    origin: String,
    routes: u64,
}

/// Everything `status` says; what it does not know is null.
#[derive(Serialize, Default)]
struct Report {
    pinned: bool,
    attached: bool,
    mode: Option<String>,
    /// Egress only: whether what the host sends to an on-link neighbour is
    /// labelled (`attach --label-on-link`); null otherwise or unread.
    label_on_link: Option<bool>,
    program: Option<Program>,
    pins: Option<String>,
    /// The decapsulator pinned on the interface, or null.
    decapsulator: Option<Decap>,
    agent: Option<Agent>,
    routes: Option<Routes>,
    kernel: Option<Kernel>,
    /// null without an agent, or with one that does not learn from BGP.
    bgp: Option<Bgp>,
    /// The last change of the routes since the agent started (null without an agent).
    last_change: Option<LastChange>,
    /// The agent's S-BFD state (`output::liveness_value`); null without an
    /// agent or without S-BFD.
    sbfd: Option<serde_json::Value>,
    /// The same, as the agent answered, for the text.
    #[cfg(feature = "bgp")]
    #[serde(skip)]
    liveness: Option<Liveness>,
}

#[cfg(feature = "bgp")]
type Liveness = lnetd_host_encap::agent::proto::v1::LivenessReply;

/// `status`, as text or JSON.
pub fn run(iface: &str) -> Result<(), Failure> {
    let report = gather(iface)?;
    if output::json(false) {
        let body = serde_json::to_value(&report)?;
        output::print_document("status", iface, body);
    } else {
        print_text(iface, &report);
    }
    Ok(())
}

fn gather(iface: &str) -> Result<Report, Failure> {
    let mut report = Report {
        program: recover::attached_xdp(iface).map(Program::of),
        decapsulator: decapsulator(iface),
        ..Report::default()
    };
    let (agent, whole) = agent(iface, &mut report);
    report.agent = agent;
    #[cfg(feature = "bgp")]
    if let Some(a) = &report.agent {
        report.liveness = liveness(std::path::Path::new(&a.socket));
        report.sbfd = report.liveness.as_ref().map(output::liveness_value);
    }
    // An agent of this build said everything from memory: no table is read here.
    if whole {
        return Ok(report);
    }
    report.pinned = match lnetd_host_encap::encap::AdoptOptions::default().is_pinned(iface) {
        Ok(pinned) => pinned,
        // An agent answered, so it holds a pinned dataplane this user may not look at.
        Err(e) if report.routes.is_some() => {
            log::info!("looking for {iface}'s pins: {e}; status from the agent only");
            report.pinned = true;
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    if !report.pinned {
        // A misspelt name is said as such, not as "nothing pinned there".
        if report.agent.is_none() && nix::net::if_::if_nametoindex(iface).is_err() {
            return Err(lnetd_host_encap::errors::AttachError::NoSuchInterface { iface: iface.to_owned() }.into());
        }
        return Ok(report);
    }
    let enc = match (AdoptOptions { read_only: true, ..AdoptOptions::default() }).open(iface) {
        Ok(enc) => enc,
        // An agent answered: what it said is the status (reading the pins needs privileges).
        Err(e) if report.routes.is_some() => {
            log::info!("reading {iface}'s dataplane: {e}; status from the agent only");
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    };
    report.attached = enc.attachment().is_some();
    report.mode = enc.attachment().map(|a| a.mode.to_string());
    report.label_on_link = enc.diagnostics().labels_on_link();
    report.pins = enc.diagnostics().pin_dir().map(|p| p.display().to_string());
    // Counted from the RIB as the agent counts them: no route copied, none looked up.
    let counts = enc.diagnostics().route_counts();
    let mut counted = Routes {
        total: counts.total,
        sources: enc.sources().list().len() as u64,
        by_table: counts
            .by_table
            .into_iter()
            .map(|(t, n)| (if t == Table::Main { "main".to_owned() } else { t.id().to_string() }, n))
            .collect(),
        by_origin: counts.by_origin.into_iter().collect(),
    };
    // The agent knows the origins of the routes it holds; the record on disk may lag.
    if let Some(from_agent) = report.routes.take() {
        counted.by_origin = from_agent.by_origin;
    }
    report.routes = Some(counted);
    let started = std::time::Instant::now();
    let differences = enc.diagnostics().verify()?;
    report.kernel = Some(Kernel {
        matches: Some(differences.is_empty()),
        differences: differences.len() as u64,
        example: differences.first().map(ToString::to_string),
        based_on: COMPARED_NOW.to_owned(),
        at_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        took_ms: started.elapsed().as_millis() as u64,
    });
    Ok(report)
}

/// The decapsulator pinned on `iface`, if one is (the encapsulator's
/// status would otherwise show its XDP program as someone else's).
fn decapsulator(iface: &str) -> Option<Decap> {
    use lnetd_host_encap::{decap::Decapsulator, errors::PinError, Error};
    match Decapsulator::open(iface) {
        Ok(dec) => Some(Decap {
            mode: dec.attachment().map(|a| a.mode.to_string()),
            labels: dec.pop_labels().map(|l| l.iter().map(|l| l.value()).collect()).unwrap_or_default(),
            other_labels: Some(dec.other_labels().to_string()),
            error: None,
        }),
        // Not pinned, or not this user's to look at (the rest of the
        // status is null for such a user too).
        Err(Error::Pin(PinError::NotPinned { .. } | PinError::NoAccess { .. })) => None,
        Err(e) => Some(Decap { mode: None, labels: Vec::new(), other_labels: None, error: Some(e.to_string()) }),
    }
}

/// The agent's part: its socket and, if it answers `GetStatus`, the
/// routes per origin, BGP and the last change (into `report`); and whether
/// that is the whole status (an agent of this build also says the
/// attachment, the counts per table and its last comparison of the kernel
/// with the RIB).
#[cfg(feature = "agent")]
fn agent(iface: &str, report: &mut Report) -> (Option<Agent>, bool) {
    let (socket, reply) = match super::remote::agent_status(iface) {
        Ok(Some(found)) => found,
        Ok(None) => return (None, false),
        Err(e) => {
            log::warn!("asking the agent of {iface} for its status: {e}");
            return (None, false);
        }
    };
    let Some(s) = reply else { return (Some(Agent { socket, ..Agent::default() }), false) };
    let whole = s.counted_unix_ms != 0;
    report.routes = Some(Routes {
        total: s.routes,
        by_origin: s.routes_by_origin.iter().map(|(o, n)| (o.clone(), *n)).collect(),
        by_table: s.routes_by_table.iter().map(|(t, n)| (t.clone(), *n)).collect(),
        sources: s.sources,
    });
    if whole {
        report.pinned = !s.pin_dir.is_empty();
        report.pins = Some(s.pin_dir.clone()).filter(|p| !p.is_empty());
        report.attached = !s.mode.is_empty();
        report.mode = Some(s.mode.clone()).filter(|m| !m.is_empty());
        report.label_on_link = s.label_on_link;
        // Always present, as without an agent: "not compared" until its first comparison.
        report.kernel = Some(match s.last_verification.as_ref() {
            Some(v) => Kernel {
                matches: Some(v.differences == 0),
                differences: v.differences,
                example: Some(v.example.clone()).filter(|e| !e.is_empty()),
                based_on: v.trigger.clone(),
                at_unix_ms: v.at_unix_ms,
                took_ms: v.took_ms,
            },
            None => Kernel {
                matches: None,
                differences: 0,
                example: None,
                based_on: NOT_COMPARED.to_owned(),
                at_unix_ms: 0,
                took_ms: 0,
            },
        });
    }
    if s.bgp_enabled {
        report.bgp = Some(Bgp {
            api_connected: s.bgp_api_connected,
            sessions: s
                .bgp_sessions
                .iter()
                .map(|b| Session {
                    neighbor: b.neighbor.clone(),
                    established: b.established,
                    since_unix_ms: Some(b.since_unix_ms).filter(|ms| *ms != 0),
                })
                .collect(),
            routes_held: s.bgp_routes_held,
            policies_ignored: s.bgp_policies_ignored.iter().map(|(r, n)| (r.clone(), *n)).collect(),
            policies_ignored_total: s.bgp_policies_ignored_total.iter().map(|(r, n)| (r.clone(), *n)).collect(),
            candidate_paths_invalid: s.bgp_candidate_paths_invalid.iter().map(|(r, n)| (r.clone(), *n)).collect(),
            candidate_paths_invalid_total: s
                .bgp_candidate_paths_invalid_total
                .iter()
                .map(|(r, n)| (r.clone(), *n))
                .collect(),
        });
    }
    report.last_change =
        s.last_change.map(|c| LastChange { at_unix_ms: c.at_unix_ms, origin: c.origin, routes: c.routes });
    let agent = Agent {
        socket,
        started_unix_ms: Some(s.started_unix_ms),
        counted_unix_ms: whole.then_some(s.counted_unix_ms),
        verify_interval_s: whole.then_some(s.verify_interval_s),
    };
    (Some(agent), whole)
}

#[cfg(not(feature = "agent"))]
fn agent(_iface: &str, _report: &mut Report) -> (Option<Agent>, bool) {
    (None, false)
}

/// The lines for an XDP program that is not the encapsulator's, and for
/// the decapsulator.
fn print_xdp_and_decap(program: Option<&Program>, decap: Option<&Decap>) {
    if let Some(p) = program {
        let whose = match p.role {
            Some("encapsulator") => "the encapsulator's, without pins",
            Some(_) => "it is the decapsulator's",
            None => "not ours",
        };
        println!("  xdp:    program id {} ({}) is attached: {whose}", p.id, p.name);
    }
    match decap {
        Some(Decap { error: Some(e), .. }) => println!("  pop:    a decapsulator is pinned; reading it: {e}"),
        Some(d) => {
            let labels: Vec<String> = d.labels.iter().map(u32::to_string).collect();
            println!(
                "  pop:    decapsulator in {} mode, popping {}; other labels: {}",
                d.mode.as_deref().unwrap_or("?"),
                labels.join(","),
                d.other_labels.as_deref().unwrap_or("?")
            );
        }
        None => {}
    }
}

fn print_text(iface: &str, r: &Report) {
    if !r.pinned {
        println!("{iface}: no dataplane of lnetd-host-encap is pinned");
        print_xdp_and_decap(r.program.as_ref(), r.decapsulator.as_ref());
        if r.agent.is_none() {
            return;
        }
    } else {
        // The encapsulator's own XDP program goes on its line; in egress
        // mode it runs on tcx, and an XDP program there is another one's.
        let (program, other) = match &r.program {
            Some(p) if p.role == Some("encapsulator") => (format!(", program id {} ({})", p.id, p.name), false),
            Some(_) => (String::new(), true),
            None => (String::new(), false),
        };
        let mode = r.mode.as_deref().unwrap_or("?");
        let hook = if mode == "egress" { " (tcx egress)" } else { "" };
        println!("{iface}: attached in {mode} mode{hook}{program}");
        match r.label_on_link {
            Some(false) => println!("  on-link: unlabelled (what goes to a neighbour without a gateway)"),
            Some(true) => println!("  on-link: labelled like any destination the tables cover"),
            None => {}
        }
        println!("  pins:   {}", r.pins.as_deref().unwrap_or("?"));
        print_xdp_and_decap(r.program.as_ref().filter(|_| other), r.decapsulator.as_ref());
    }
    match &r.agent {
        Some(a) => {
            let since = a.started_unix_ms.map(|ms| format!(", started {}", when(ms))).unwrap_or_default();
            println!("  agent:  serving on {}{since}", a.socket);
        }
        None => println!("  agent:  none (commands change the dataplane themselves)"),
    }
    if let Some(routes) = &r.routes {
        // The main table first, then the alternate ones by id.
        let mut tables: Vec<(&String, &u64)> = routes.by_table.iter().collect();
        tables.sort_by_key(|(t, _)| (t.as_str() != "main", t.parse::<u32>().unwrap_or(0)));
        let per_table: Vec<String> = tables
            .into_iter()
            .map(|(t, n)| if t == "main" { format!("main {n}") } else { format!("table {t} {n}") })
            .collect();
        let per_origin: Vec<String> = routes.by_origin.iter().map(|(o, n)| format!("{o} {n}")).collect();
        let list = |v: Vec<String>| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
        println!(
            "  routes: {} ({}); by origin: {}; sources: {}",
            routes.total,
            list(per_table),
            list(per_origin),
            routes.sources
        );
    }
    match (&r.kernel, &r.agent) {
        (Some(k), Some(_)) if k.based_on == NOT_COMPARED => {
            println!("  kernel: not compared with the RIB yet since the agent started (`verify` compares now)")
        }
        // Compared by this command just now (without an agent, or with one
        // too old to say).
        (Some(k), _) if k.based_on == COMPARED_NOW => match k.matches {
            Some(true) => println!("  kernel: matches the RIB"),
            _ => println!(
                "  kernel: {} differences from the RIB (`verify` lists them, `repair` fixes them), e.g. {}",
                k.differences,
                k.example.as_deref().unwrap_or("?")
            ),
        },
        // The agent's last comparison: say which, and when.
        (Some(k), Some(a)) => {
            let by = match k.based_on.as_str() {
                "background" => match a.verify_interval_s {
                    Some(0) | None => "the agent's comparison at start".to_owned(),
                    Some(s) => format!("the agent's comparison, every {s} s"),
                },
                "repair" => "a repair through the agent".to_owned(),
                other => format!("a `{other}` through the agent"),
            };
            // The same words as the direct path, then which comparison and when.
            let found = if k.matches == Some(true) {
                "matches the RIB".to_owned()
            } else {
                format!(
                    "{} differences from the RIB (`verify` lists them, `repair` fixes them), e.g. {};",
                    k.differences,
                    k.example.as_deref().unwrap_or("?")
                )
            };
            // Changes since were made by the library, which writes the kernel
            // first: no reason to doubt, but the comparison did not see them.
            let since = match &r.last_change {
                Some(c) if c.at_unix_ms > k.at_unix_ms => ", before the last change",
                _ => "",
            };
            println!(
                "  kernel: {found} as of {}{since} (by {by}, took {} ms; `verify` compares now)",
                when(k.at_unix_ms),
                k.took_ms
            );
        }
        _ => {}
    }
    if let Some(b) = &r.bgp {
        let api = if b.api_connected { "connected to GoBGP" } else { "not connected to GoBGP" };
        let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        println!(
            "  bgp:    {api}; {}; {} held (kept from a session that is down or not yet resynchronised)",
            plural(b.sessions.len() as u64, "session", "sessions"),
            plural(b.routes_held, "route", "routes")
        );
        if let Some(line) = acceptance_line(b) {
            println!("          {line}");
        }
        for s in &b.sessions {
            let state = if s.established { "established" } else { "not established" };
            let since = s.since_unix_ms.map(|ms| format!(" since {}", when(ms))).unwrap_or_default();
            println!("          {} {state}{since}", s.neighbor);
        }
    }
    match &r.last_change {
        Some(c) => println!("  change: {} routes by {} at {}", c.routes, c.origin, when(c.at_unix_ms)),
        None if r.agent.is_some() => println!("  change: none since the agent started"),
        None => {}
    }
    #[cfg(feature = "bgp")]
    if let Some(l) = &r.liveness {
        print_liveness(l);
    }
}

/// The SR Policy paths ignored and the candidate paths invalid, now (by
/// reason) and since the agent started, e.g. `2 SR Policy paths ignored now
/// (no-route-target 1, route-target-mismatch 1), 5 since start`; `None`
/// when there were none of either (the usual case needs no line).
fn acceptance_line(b: &Bgp) -> Option<String> {
    let part = |now: &BTreeMap<String, u64>, total: &BTreeMap<String, u64>, one: &str, many: &str| {
        let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let (n, since) = (sum(now), sum(total));
        if n == 0 && since == 0 {
            return None;
        }
        let what = if n == 1 { one } else { many };
        let reasons: Vec<String> = now.iter().map(|(r, k)| format!("{r} {k}")).collect();
        let reasons = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
        Some(format!("{n} {what} now{reasons}, {since} since start"))
    };
    let parts: Vec<String> = [
        part(&b.policies_ignored, &b.policies_ignored_total, "SR Policy path ignored", "SR Policy paths ignored"),
        part(
            &b.candidate_paths_invalid,
            &b.candidate_paths_invalid_total,
            "candidate path invalid",
            "candidate paths invalid",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The agent's S-BFD state; `None` when it runs no S-BFD, is not
/// configured for it, or predates `GetLiveness`.
#[cfg(feature = "bgp")]
fn liveness(agent: &std::path::Path) -> Option<Liveness> {
    use lnetd_host_encap::agent::proto::v1 as pb;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let reply = super::remote::call(&rt, async {
        let mut client = lnetd_host_encap::agent::connect_local(agent).await.ok()?;
        client.get_liveness(pb::LivenessRequest::default()).await.ok().map(tonic::Response::into_inner)
    });
    reply.filter(|r| r.enabled || !r.not_running.is_empty())
}

/// The agent's S-BFD state, as `status` prints it: one line of totals, one
/// per list out of service; or why S-BFD, configured, is not running.
#[cfg(feature = "bgp")]
fn print_liveness(r: &Liveness) {
    if !r.enabled && !r.not_running.is_empty() {
        println!(
            "  sbfd:   NOT running (configured every {} ms x {}, hold-down {} ms): {}; retrying every second, segment lists used without a liveness check meanwhile",
            r.interval_ms, r.multiplier, r.hold_down_ms, r.not_running
        );
        return;
    }
    let count = |phase: &str| r.lists.iter().filter(|l| l.phase == phase).count();
    println!(
        "  sbfd:   every {} ms x {}, hold-down {} ms: {} lists: {} up, {} starting, {} down, {} returning, {} unprobed; {} probes sent, {} answers",
        r.interval_ms,
        r.multiplier,
        r.hold_down_ms,
        r.lists.len(),
        count("up"),
        count("starting"),
        count("down"),
        count("returning"),
        count("unprobed"),
        r.probes_sent,
        r.answers
    );
    for l in r.lists.iter().filter(|l| !l.up) {
        println!(
            "          color {} endpoint {}: {}",
            l.color,
            l.endpoint,
            lnetd_host_encap::agent::liveness::list_line(l)
        );
    }
}

/// A Unix time in ms as UTC and how long ago: `2026-12-06T09:05:01Z (12 s ago)`.
fn when(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let ago = SystemTime::now().duration_since(at).map(|d| format!(" ({} s ago)", d.as_secs())).unwrap_or_default();
    format!("{}{ago}", utc(ms / 1000))
}

/// Seconds since the epoch as an RFC 3339 UTC time (days to civil date:
/// Howard Hinnant's algorithm, no time zone database needed).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::{acceptance_line, utc, Bgp};

    #[test]
    fn ignored_and_invalid_paths_are_one_line_by_reason_and_keys_under_bgp() {
        let reasons = |pairs: &[(&str, u64)]| pairs.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
        assert_eq!(acceptance_line(&Bgp::default()), None, "nothing ignored or invalid: no line");
        let b = Bgp {
            policies_ignored: reasons(&[("route-target-mismatch", 1), ("no-route-target", 1)]),
            policies_ignored_total: reasons(&[("route-target-mismatch", 3), ("no-route-target", 2)]),
            candidate_paths_invalid_total: reasons(&[("no-tunnel-encapsulation", 1)]),
            ..Bgp::default()
        };
        assert_eq!(
            acceptance_line(&b).as_deref(),
            Some(
                "2 SR Policy paths ignored now (no-route-target 1, route-target-mismatch 1), 5 since start; \
                 0 candidate paths invalid now, 1 since start"
            )
        );
        let one = Bgp {
            candidate_paths_invalid: reasons(&[("no-usable-segment-list", 1)]),
            candidate_paths_invalid_total: reasons(&[("no-usable-segment-list", 1)]),
            ..Bgp::default()
        };
        assert_eq!(
            acceptance_line(&one).as_deref(),
            Some("1 candidate path invalid now (no-usable-segment-list 1), 1 since start")
        );
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["policies_ignored"]["no-route-target"], 1, "{json}");
        assert_eq!(json["policies_ignored_total"]["route-target-mismatch"], 3, "{json}");
        assert_eq!(json["candidate_paths_invalid"], serde_json::json!({}), "{json}");
        assert_eq!(json["candidate_paths_invalid_total"]["no-tunnel-encapsulation"], 1, "{json}");
    }

    #[test]
    fn utc_dates_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_547_901), "2026-12-06T09:05:01Z");
    }
}
