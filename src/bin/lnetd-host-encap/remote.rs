//! The command as a client of the agent that owns the interface: when an
//! agent serves the interface's local socket, `set`, `remove`, `source`,
//! `apply`, `routes`, `stats`, `get`, `verify` and `repair` go through it (its authorization
//! decides), and print what the direct path prints. Only when no agent
//! answers does the command adopt the dataplane itself.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use lnetd_host_encap::agent::proto::v1 as pb;
use lnetd_host_encap::agent::proto::v1::encapsulator_client::EncapsulatorClient;
use lnetd_host_encap::{
    counters::CountedRoute, counters::Counter, counters::RouteCounters, desired::ApplyReport,
    diagnostics::ProbeProtocol, routes::prefix, DesiredState, IpNetwork, Policy, Route, Stats, Table,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{apply, output, table, verify, Command, Failure};

/// Runs `command` through the agent that serves `iface`, if one does and the
/// command is one it serves; gives the command back otherwise.
///
/// # Errors
/// The agent refused or failed; or it runs but this user may not connect.
pub fn through_agent(iface: &str, command: Command) -> Result<Option<Command>, Failure> {
    let served = matches!(
        command,
        Command::Set { .. }
            | Command::Remove { .. }
            | Command::Source { .. }
            | Command::Apply(_)
            | Command::Routes { .. }
            | Command::Stats { .. }
            | Command::Get { .. }
            | Command::Reload
            | Command::Verify
            | Command::Repair
    );
    if !served {
        return Ok(Some(command));
    }
    let Some(path) = agent_socket(iface)? else { return Ok(Some(command)) };
    log::info!("an agent serves {iface}: going through {}", path.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = call(&rt, lnetd_host_encap::agent::connect_local(&path))
        .map_err(|e| format!("connecting to the agent of {iface} on {}: {e}", path.display()))?;
    let mut remote = Remote { rt, client, path, iface };
    remote.run(command)?;
    Ok(None)
}

/// The socket of the agent serving `iface`, if one answers.
fn agent_socket(iface: &str) -> Result<Option<PathBuf>, Failure> {
    let Ok(path) = lnetd_host_encap::agent::socket_path(iface) else { return Ok(None) };
    match UnixStream::connect(&path) {
        Ok(_) => Ok(Some(path)),
        // No agent, or a socket left by one that was killed.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => Ok(None),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(format!(
            "an agent serves {iface} on {}, and uid {} may not connect to it (the agent runs with --read-access \
             none): ask to be added to its --write-group, or run as root",
            path.display(),
            nix::unistd::geteuid()
        )
        .into()),
        Err(e) => Err(format!("connecting to the agent of {iface} on {}: {e}", path.display()).into()),
    }
}

struct Remote<'a> {
    rt: tokio::runtime::Runtime,
    client: EncapsulatorClient<Channel>,
    path: PathBuf,
    iface: &'a str,
}

/// Runs `f` on `rt` with SIGPIPE ignored. A write to the agent's socket
/// after the agent died raised SIGPIPE, whose default action (main restores
/// it, so that `| head` ends quietly) killed the command without a word;
/// ignored, the write fails and the call reports the broken connection.
pub(super) fn call<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: sets a disposition (ignore, then default); no handler code runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let out = rt.block_on(f);
    // SAFETY: as above.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    out
}

/// The agent's refusal as the command's failure: its message, for a
/// refusal by authorization where it came from, and for a connection that
/// broke (the agent stopped or was killed during the call) what that means
/// for a change (it said only "transport error", or nothing at all).
fn failure(path: &Path, status: Status) -> Failure {
    match status.code() {
        Code::PermissionDenied => format!("refused by the agent on {}: {}", path.display(), status.message()).into(),
        Code::Unavailable | Code::Unknown | Code::Cancelled => format!(
            "the connection to the agent on {} broke during the call ({}): the agent stopped or was killed; a \
             change sent may or may not be in force: `routes` or `verify` says which once it is back (or, \
             without an agent, at once)",
            path.display(),
            status.message()
        )
        .into(),
        _ => status.message().to_owned().into(),
    }
}

/// A route in the v1 protocol's text syntaxes.
fn route_message(table: Table, route: &Route) -> pb::Route {
    pb::Route {
        prefix: route.prefix.to_string(),
        policy: policy_text(&route.policy),
        tc: route.tc.to_string(),
        table: table.id(),
        entropy_label: route.policy.entropy_label().map(|e| e.to_string()).unwrap_or_default(),
        policy_name: route.policy.name().unwrap_or_default().to_owned(),
    }
}

/// The policy's lists, each with its weight (no entropy label: it has its own field).
fn policy_text(policy: &Policy) -> String {
    if !policy.is_valid() {
        return policy.to_string();
    }
    policy.lists().iter().map(|l| format!("{}@{}", l.stack, l.weight)).collect::<Vec<_>>().join(",")
}

fn route_of(r: &pb::Route) -> Result<(Table, Route), Failure> {
    let prefix = prefix::parse(&r.prefix)?;
    let policy = Policy::from_text(&r.policy, Some(r.policy_name.as_str()).filter(|n| !n.is_empty()))?;
    let entropy = match r.entropy_label.as_str() {
        "" => None,
        text => Some(text.parse()?),
    };
    let tc = if r.tc.is_empty() { Default::default() } else { r.tc.parse()? };
    Ok((table(Some(r.table)), Route { prefix, policy: policy.with_entropy_label(entropy)?, tc }))
}

fn line(d: pb::Difference) -> verify::Line {
    verify::Line { map: d.map, entry: d.entry, kind: d.kind, text: d.text }
}

fn counter(c: Option<pb::Counter>) -> Counter {
    c.map(|c| Counter { packets: c.packets, bytes: c.bytes }).unwrap_or_default()
}

fn keys(v: &[pb::RouteKey]) -> Result<Vec<(Table, IpNetwork)>, Failure> {
    v.iter().map(|k| Ok((table(Some(k.table)), prefix::parse(&k.prefix)?))).collect()
}

fn prefixes(v: &[String]) -> Result<Vec<IpNetwork>, Failure> {
    v.iter().map(|p| Ok(prefix::parse(p)?)).collect()
}

fn report_of(r: &pb::ApplyReply) -> Result<ApplyReport, Failure> {
    Ok(ApplyReport {
        added: keys(&r.added)?,
        replaced: keys(&r.replaced)?,
        removed: keys(&r.removed)?,
        set_aside: prefixes(&r.set_aside)?,
        sources_set: prefixes(&r.sources_set)?,
        sources_removed: prefixes(&r.sources_removed)?,
        dscp_changed: r.dscp_changed,
        unchanged: r.unchanged as usize,
        map_operations: r.map_operations as usize,
        dry_run: r.dry_run,
    })
}

fn apply_request(desired: &DesiredState, dry_run: bool, max_remove_share: Option<f64>) -> pb::ApplyRequest {
    pb::ApplyRequest {
        routes: desired
            .routes
            .iter()
            .map(|r| pb::Route {
                prefix: r.prefix.clone(),
                policy: r.policy.clone(),
                tc: r.tc.clone().unwrap_or_default(),
                table: r.table.unwrap_or(0),
                entropy_label: r.entropy_label.clone().unwrap_or_default(),
                policy_name: r.policy_name.clone().unwrap_or_default(),
            })
            .collect(),
        sources: desired.sources.iter().map(|s| pb::Source { prefix: s.prefix.clone(), table: s.table }).collect(),
        dscp_map: desired.dscp_map.iter().flatten().map(|v| u32::from(*v)).collect(),
        dry_run,
        max_remove_share,
    }
}

fn stats_of(reply: &pb::Stats) -> Stats {
    let mut stats = Stats::default();
    for (name, c) in &reply.counters {
        let c = counter(Some(*c));
        match name.as_str() {
            "labelled" => stats.labelled = c,
            "not_ip" => stats.not_ip = c,
            "malformed" => stats.malformed = c,
            "multicast" => stats.multicast = c,
            "local" => stats.local = c,
            "no_route" => stats.no_route = c,
            "mtu_dropped" => stats.mtu_dropped = c,
            "mtu_passed" => stats.mtu_passed = c,
            "no_headroom" => stats.no_headroom = c,
            "aborted" => stats.aborted = c,
            "no_live_path_dropped" => stats.no_live_path_dropped = c,
            other => log::debug!("the agent reports a counter this command does not know: {other}"),
        }
    }
    stats
}

type Origin = (String, Option<String>, Option<u32>);

/// What `ListRoutes` answered: the routes, the sources, the origins the agent knows.
struct Listed {
    routes: Vec<CountedRoute>,
    sources: Vec<(IpNetwork, Table)>,
    origins: HashMap<(Table, IpNetwork), Origin>,
}

/// Every route: streamed in chunks (a large table does not fit one 4 MB
/// message), or in one `ListRoutes` reply from an agent that predates
/// `StreamRoutes`.
async fn list_routes(client: &mut EncapsulatorClient<Channel>) -> Result<pb::ListRoutesReply, Status> {
    let mut stream = match client.stream_routes(pb::ListRoutesRequest {}).await {
        Ok(stream) => stream.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => {
            return Ok(client.list_routes(pb::ListRoutesRequest {}).await?.into_inner())
        }
        Err(s) => return Err(s),
    };
    let mut all = pb::ListRoutesReply::default();
    while let Some(chunk) = stream.message().await? {
        all.routes.extend(chunk.routes);
        all.sources.extend(chunk.sources);
    }
    Ok(all)
}

/// Routes per `ApplyStream` chunk: about 300 KB, far under the 4 MB limit.
const APPLY_CHUNK: usize = 8192;

/// `request` as a stream of chunks of [`APPLY_CHUNK`] routes; the first
/// carries the sources, the DSCP table and `dry_run`.
fn apply_chunks(request: pb::ApplyRequest) -> Vec<pb::ApplyRequest> {
    let pb::ApplyRequest { routes, sources, dscp_map, dry_run, max_remove_share } = request;
    let mut chunks = vec![pb::ApplyRequest { routes: Vec::new(), sources, dscp_map, dry_run, max_remove_share }];
    let mut routes = routes.into_iter().peekable();
    chunks[0].routes.extend(routes.by_ref().take(APPLY_CHUNK));
    while routes.peek().is_some() {
        chunks.push(pb::ApplyRequest {
            routes: routes.by_ref().take(APPLY_CHUNK).collect(),
            dry_run,
            ..Default::default()
        });
    }
    chunks
}

/// Applies `request` as one change through `ApplyStream` (no table is too
/// large for it), or through `Apply` with an agent that predates it.
async fn apply_streamed(
    client: &mut EncapsulatorClient<Channel>,
    request: impl Fn() -> pb::ApplyRequest,
) -> Result<pb::ApplyReply, Status> {
    // The request is built again for the fallback rather than copied for it
    // (a table of a million routes; an agent without ApplyStream predates them).
    match client.apply_stream(tokio_stream::iter(apply_chunks(request()))).await {
        Ok(replies) => {
            let mut replies = replies.into_inner();
            let mut all = replies.message().await?.ok_or_else(|| Status::internal("ApplyStream: no reply"))?;
            while let Some(more) = replies.message().await? {
                all.added.extend(more.added);
                all.replaced.extend(more.replaced);
                all.removed.extend(more.removed);
                all.set_aside.extend(more.set_aside);
                all.sources_set.extend(more.sources_set);
                all.sources_removed.extend(more.sources_removed);
            }
            Ok(all)
        }
        Err(s) if s.code() == Code::Unimplemented => Ok(client.apply(request()).await?.into_inner()),
        Err(s) => Err(s),
    }
}

/// The removal guard's refusal, from a FAILED_PRECONDITION's details.
fn refused(status: &Status) -> Option<apply::Refused> {
    if status.code() != Code::FailedPrecondition {
        return None;
    }
    let r = lnetd_host_encap::agent::details::removal_refused(status)?;
    Some(apply::Refused { removed: r.removed as usize, current: r.current as usize, sample: keys(&r.sample).ok()? })
}

impl apply::Target for Remote<'_> {
    fn plan(&mut self, desired: &DesiredState) -> Result<ApplyReport, Failure> {
        let reply = call(&self.rt, apply_streamed(&mut self.client, || apply_request(desired, true, None)))
            .map_err(|s| failure(&self.path, s))?;
        report_of(&reply)
    }

    fn apply(
        &mut self,
        desired: &DesiredState,
        max_remove_share: Option<f64>,
    ) -> Result<ApplyReport, apply::NotApplied> {
        let mut max_remove_share = max_remove_share;
        if let Some(max) = max_remove_share {
            // An agent of an older build ignores the share and would apply
            // unguarded: then the guard runs here, from its dry run.
            let guards = match call(&self.rt, self.client.get_status(pb::StatusRequest {})) {
                Ok(reply) => reply.into_inner().guards_removals,
                Err(s) if s.code() == Code::Unimplemented => false,
                Err(s) => return Err(apply::NotApplied::Failed(failure(&self.path, s))),
            };
            if !guards {
                apply::guard(&self.plan(desired)?, desired, max)?;
                max_remove_share = None;
            }
        }
        let request = || apply_request(desired, false, max_remove_share);
        match call(&self.rt, apply_streamed(&mut self.client, request)) {
            Ok(reply) => Ok(report_of(&reply)?),
            Err(s) => match refused(&s) {
                Some(r) => Err(apply::NotApplied::Guard(r)),
                None => Err(apply::NotApplied::Failed(failure(&self.path, s))),
            },
        }
    }
}

/// The agent serving `iface`, if one answers: its socket and its
/// `GetStatus` (None from an agent that predates it).
///
/// # Errors
/// The agent runs but refused the connection or the call.
pub fn agent_status(iface: &str) -> Result<Option<(String, Option<pb::StatusReply>)>, Failure> {
    let Some(path) = agent_socket(iface)? else { return Ok(None) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reply = call(&rt, async {
        let mut client = lnetd_host_encap::agent::connect_local(&path).await?;
        match client.get_status(pb::StatusRequest {}).await {
            Ok(reply) => Ok(Some(reply.into_inner())),
            Err(s) if s.code() == Code::Unimplemented => Ok(None),
            Err(s) => Err(Failure::from(failure(&path, s))),
        }
    })?;
    Ok(Some((path.display().to_string(), reply)))
}

impl Remote<'_> {
    /// A refusal, or an agent of an older build that lacks the RPC.
    fn older(&self, status: Status) -> Failure {
        if status.code() != Code::Unimplemented {
            return failure(&self.path, status);
        }
        format!(
            "the agent serving {iface} is of an older build without Verify and Repair (it answered \
             UNIMPLEMENTED): restart it with this build (systemctl restart lnetd-host-encap-agent@{iface})",
            iface = self.iface
        )
        .into()
    }

    fn routes(&mut self) -> Result<Listed, Failure> {
        let reply = call(&self.rt, list_routes(&mut self.client)).map_err(|s| failure(&self.path, s))?;
        let mut routes = Vec::with_capacity(reply.routes.len());
        let mut origins = HashMap::new();
        for r in reply.routes {
            let (table, route) = route_of(r.route.as_ref().ok_or("the agent sent a route without its route")?)?;
            if !r.origin.is_empty() {
                let detail = Some(r.origin_detail).filter(|d| !d.is_empty());
                origins.insert((table, route.prefix), (r.origin, detail, r.binding_sid));
            }
            let counters = RouteCounters {
                counted: r.counted,
                labelled: counter(r.labelled),
                lists: r.lists.into_iter().map(|c| counter(Some(c))).collect(),
            };
            routes.push(CountedRoute { table, route, counters, set_aside: r.set_aside });
        }
        let sources = reply
            .sources
            .iter()
            .map(|s| Ok((prefix::parse(&s.prefix)?, table(Some(s.table)))))
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(Listed { routes, sources, origins })
    }

    fn stats(&mut self) -> Result<Stats, Failure> {
        let reply = call(&self.rt, self.client.get_stats(pb::StatsRequest {})).map_err(|s| failure(&self.path, s))?;
        Ok(stats_of(reply.get_ref()))
    }

    fn run(&mut self, command: Command) -> Result<(), Failure> {
        let path = self.path.clone();
        let fail = |s: Status| failure(&path, s);
        match command {
            Command::Set { prefix, policy, tc, table: id, entropy_label } => {
                let route = Route { prefix, policy: policy.with_entropy_label(entropy_label)?, tc };
                call(&self.rt, self.client.set_route(route_message(table(id), &route))).map_err(fail)?;
                println!("{} -> {} (tc {}{})", route.prefix, route.policy, route.tc, output::table_suffix(table(id)));
            }
            Command::Remove { prefix, table: id } => {
                let key = pb::RouteKey { prefix: prefix.to_string(), table: table(id).id() };
                match call(&self.rt, self.client.remove_route(key)) {
                    Ok(_) => println!("removed {prefix}{}", output::table_suffix(table(id))),
                    // The agent says why: no such route, or one that is BGP's (withdrawn in BGP).
                    Err(s) if s.code() == Code::NotFound => {
                        return Err(format!("{}; see `routes`", s.message()).into());
                    }
                    Err(s) => return Err(fail(s)),
                }
            }
            Command::Source { prefix, table: id, remove } => match (remove, prefix, id) {
                (Some(p), _, _) => {
                    match call(&self.rt, self.client.remove_source(pb::SourceKey { prefix: p.to_string() })) {
                        Ok(_) => println!("source {p} removed"),
                        Err(s) if s.code() == Code::NotFound => {
                            return Err(format!("{p} selects no table; see `routes`").into())
                        }
                        Err(s) => return Err(fail(s)),
                    }
                }
                (None, Some(p), Some(t)) => {
                    let t = Table::alternate(t)
                        .ok_or("--table 0 is the main table; a source selects an alternate table (1..)")?;
                    call(&self.rt, self.client.set_source(pb::Source { prefix: p.to_string(), table: t.id() }))
                        .map_err(fail)?;
                    println!("packets from {p} use table {}", t.id());
                }
                _ => return Err("give PREFIX --table N, or --remove PREFIX".into()),
            },
            Command::Apply(args) => apply::run(args, self)?,
            Command::Routes { json } => {
                let Listed { routes, sources, origins } = self.routes()?;
                let local = super::static_origin;
                let origin = |t: Table, p: IpNetwork| origins.get(&(t, p)).cloned().unwrap_or_else(|| local(t, p));
                if output::json(json) {
                    output::print_routes(self.iface, &routes, &sources, &origin)?;
                } else {
                    output::routes_table(&routes, &sources, &origin)?;
                }
            }
            Command::Stats { json, prometheus } => {
                let stats = self.stats()?;
                if prometheus {
                    let routes = self.routes()?.routes;
                    print!("{}", lnetd_host_encap::counters::prometheus(self.iface, &stats, &routes));
                } else if output::json(json) {
                    output::print_document("stats", self.iface, output::stats_value(&stats));
                } else {
                    output::stats_table(&stats);
                }
            }
            Command::Get { dst, src, proto, sport, dport, dscp } => {
                let request = pb::ExplainRequest {
                    dst: dst.to_string(),
                    src: src.map(|s| s.to_string()).unwrap_or_default(),
                    protocol: match proto {
                        ProbeProtocol::Tcp => "tcp",
                        ProbeProtocol::Icmp => "icmp",
                        _ => "udp",
                    }
                    .to_owned(),
                    sport: u32::from(sport),
                    dport: u32::from(dport),
                    dscp: u32::from(dscp),
                };
                let reply = call(&self.rt, self.client.explain(request)).map_err(fail)?.into_inner();
                if output::json(false) {
                    let route = reply.route.as_ref().map(route_of).transpose()?;
                    // The origin is its line only: the liveness lines under it have their own key.
                    let origin = match (&route, reply.text.split_once("\norigin: ")) {
                        (_, Some((_, said))) => Some(said.split('\n').next().unwrap_or_default().to_owned()),
                        (Some((t, r)), None) => {
                            let (from, bgp, _) = super::static_origin(*t, r.prefix);
                            Some(bgp.unwrap_or(from))
                        }
                        (None, None) => None,
                    };
                    let verdict = output::Verdict {
                        action: reply.action.clone(),
                        outcome: &reply.outcome,
                        route,
                        list: reply.list.map(|l| l as usize),
                        stack: reply
                            .stack
                            .iter()
                            .map(|e| lnetd_host_encap::labels::LabelStackEntry {
                                label: e.label,
                                tc: e.tc as u8,
                                bottom: e.bottom,
                                ttl: e.ttl as u8,
                            })
                            .collect(),
                        origin,
                        text: reply.text.split("\norigin: ").next().unwrap_or_default().to_owned(),
                        liveness: reply.liveness.as_ref().map(output::liveness_value),
                    };
                    output::print_document("get", self.iface, output::verdict_value(&verdict));
                    return Ok(());
                }
                println!("{}", reply.text);
                // An agent that names no origin (one older than origins for every agent): the route is static.
                if let Some(r) = reply.route.as_ref().filter(|_| !reply.text.contains("\norigin: ")) {
                    let (t, route) = route_of(r)?;
                    let (from, bgp, _) = super::static_origin(t, route.prefix);
                    println!("origin: {}", bgp.unwrap_or(from));
                }
                let route = reply.route.as_ref().map(route_of).transpose()?;
                super::print_source_note(src, route.as_ref().map(|(_, r)| r));
            }
            Command::Reload => {
                let reply = call(&self.rt, self.client.reload(pb::ReloadRequest {})).map_err(fail)?.into_inner();
                println!("{}", reply.summary);
                // The summary has the whole counts; the lists may be cut (a unary reply).
                if let Some(r) = &reply.routes {
                    let more = [r.added_left_out, r.replaced_left_out, r.removed_left_out];
                    output::listed(&report_of(r)?, more.map(|n| n as usize));
                }
                for setting in &reply.restart_needed {
                    println!("  not applied: {setting} changed (restart the agent: systemctl restart lnetd-host-encap-agent@{})", self.iface);
                }
            }
            Command::Verify => {
                let output = super::verify_output();
                let reply =
                    call(&self.rt, self.client.verify(pb::VerifyRequest {})).map_err(|s| self.older(s))?.into_inner();
                let found: Vec<verify::Line> = reply.differences.into_iter().map(line).collect();
                verify::print_verify(self.iface, &found, output)?;
            }
            Command::Repair => {
                let output = super::verify_output();
                let reply =
                    call(&self.rt, self.client.repair(pb::RepairRequest {})).map_err(|s| self.older(s))?.into_inner();
                let fixed: Vec<verify::Line> = reply.repaired.into_iter().map(line).collect();
                verify::print_repair(self.iface, &fixed, output);
            }
            other => return Err(format!("{other:?} is not served through the agent").into()),
        }
        Ok(())
    }
}
