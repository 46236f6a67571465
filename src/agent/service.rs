//! This project's own protocol (package `lnetd.encap.v1`): every library
//! operation, in the library's text syntaxes, with gRPC status codes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::proto::v1 as pb;
use super::proto::v1::encapsulator_server::Encapsulator as Api;
use super::status;
use crate::domain::desired::{DesiredRoute, DesiredSource, DesiredState};
use crate::domain::policy::{EntropyLabel, Policy};
use crate::domain::prefix;
use crate::domain::route::{Route, Table, Tc};
use crate::encapsulator::Encapsulator;
use crate::error::RouteError;
use crate::explain::{Probe, ProbeProtocol};
use crate::metrics::CountedRoute;
use crate::stats::{Counter, Stats};

pub(crate) struct Service {
    enc: Arc<Encapsulator>,
    writes: super::Writes,
    iface: String,
    #[cfg(feature = "bgp")]
    liveness: Option<Arc<crate::bgp::BgpCounters>>,
}

impl Service {
    pub(crate) fn new(enc: Arc<Encapsulator>, writes: super::Writes, iface: &str) -> Service {
        #[cfg(feature = "bgp")]
        return Service { enc, writes, iface: iface.to_owned(), liveness: None };
        #[cfg(not(feature = "bgp"))]
        Service { enc, writes, iface: iface.to_owned() }
    }

    /// `GetLiveness` and `Explain` read the S-BFD state from these counters.
    #[cfg(feature = "bgp")]
    pub(crate) fn with_liveness(mut self, counters: Option<Arc<crate::bgp::BgpCounters>>) -> Service {
        self.liveness = counters;
        self
    }

    /// Runs a library call on the blocking pool: it takes the RIB lock and
    /// writes maps and the state file, which must not stall the async workers.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Encapsulator) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let enc = Arc::clone(&self.enc);
        blocking(move || f(&enc)).await
    }
}

fn stats_message(iface: &str, stats: &Stats) -> pb::Stats {
    let counters: HashMap<String, pb::Counter> =
        stats.named().iter().map(|(n, c)| ((*n).to_owned(), counter(*c))).collect();
    pb::Stats { interface: iface.to_owned(), counters }
}

fn counter(c: Counter) -> pb::Counter {
    pb::Counter { packets: c.packets, bytes: c.bytes }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{what}: {e}"))
}

fn table(id: u32) -> Table {
    Table::alternate(id).unwrap_or(Table::Main)
}

/// A route message as the library's route.
fn route_of(r: &pb::Route) -> Result<(Table, Route), Status> {
    let prefix = prefix::parse(&r.prefix).map_err(|e| invalid("prefix", e))?;
    let policy: Policy = match r.policy_name.as_str() {
        "" => r.policy.parse(),
        name if r.policy.trim() == "invalid" => Policy::invalid(name),
        name => r.policy.parse().and_then(|p: Policy| p.with_name(name)),
    }
    .map_err(|e| invalid("policy", e))?;
    let entropy = match r.entropy_label.as_str() {
        "" => None,
        text => Some(text.parse::<EntropyLabel>().map_err(|e| invalid("entropy_label", e))?),
    };
    let policy = policy.with_entropy_label(entropy).map_err(|e| invalid("policy", e))?;
    let tc = match r.tc.as_str() {
        "" => Tc::default(),
        text => text.parse::<Tc>().map_err(|e| invalid("tc", e))?,
    };
    Ok((table(r.table), Route { prefix, policy, tc }))
}

/// The library's route as a message, in the text syntaxes `set` takes.
fn route_message(table: Table, r: &Route) -> pb::Route {
    let lists = r.policy.lists();
    let one = lists.len() == 1;
    pb::Route {
        prefix: r.prefix.to_string(),
        policy: if r.policy.is_valid() {
            lists
                .iter()
                .map(|l| if one && l.weight == 1 { l.stack.to_string() } else { format!("{}@{}", l.stack, l.weight) })
                .collect::<Vec<_>>()
                .join(",")
        } else {
            "invalid".to_owned()
        },
        tc: r.tc.to_string(),
        table: table.id(),
        entropy_label: r.policy.entropy_label().map(|e| e.to_string()).unwrap_or_default(),
        policy_name: r.policy.name().unwrap_or_default().to_owned(),
    }
}

fn counted(c: &CountedRoute) -> pb::CountedRoute {
    pb::CountedRoute {
        route: Some(route_message(c.table, &c.route)),
        counted: c.counters.counted,
        labelled: Some(counter(c.counters.labelled)),
        lists: c.counters.lists.iter().map(|l| counter(*l)).collect(),
        ..Default::default()
    }
}

/// A difference between the kernel and the RIB as a message.
fn difference(d: &crate::diagnostics::Difference) -> pb::Difference {
    pb::Difference {
        map: d.map.to_owned(),
        entry: d.entry.clone(),
        kind: d.kind.name().to_owned(),
        text: d.to_string(),
    }
}

/// Runs a blocking library call off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Status::internal(format!("worker: {e}")))?
}

/// An apply's report as the protocol's reply.
fn apply_reply(report: &crate::fib::apply::ApplyReport) -> pb::ApplyReply {
    let keys = |v: &[(Table, ipnetwork::IpNetwork)]| {
        v.iter().map(|(t, p)| pb::RouteKey { prefix: p.to_string(), table: t.id() }).collect()
    };
    pb::ApplyReply {
        added: keys(&report.added),
        replaced: keys(&report.replaced),
        removed: keys(&report.removed),
        unchanged: report.unchanged as u64,
        map_operations: report.map_operations as u64,
        dry_run: report.dry_run,
        summary: report.to_string(),
        set_aside: report.set_aside.iter().map(ToString::to_string).collect(),
        sources_set: report.sources_set.iter().map(ToString::to_string).collect(),
        sources_removed: report.sources_removed.iter().map(ToString::to_string).collect(),
        dscp_changed: report.dscp_changed,
    }
}

/// An `ApplyRequest` as the library's desired state (checked when applied).
fn desired_of(req: pb::ApplyRequest) -> DesiredState {
    DesiredState {
        routes: req
            .routes
            .into_iter()
            .map(|r| DesiredRoute {
                prefix: r.prefix,
                policy: r.policy,
                tc: Some(r.tc).filter(|t| !t.is_empty()),
                table: Some(r.table),
                entropy_label: Some(r.entropy_label).filter(|e| !e.is_empty()),
                policy_name: Some(r.policy_name).filter(|n| !n.is_empty()),
            })
            .collect(),
        sources: req.sources.into_iter().map(|s| DesiredSource { prefix: s.prefix, table: s.table }).collect(),
        dscp_map: Some(req.dscp_map)
            .filter(|d| !d.is_empty())
            .map(|d| d.into_iter().map(|v| u8::try_from(v).unwrap_or(u8::MAX)).collect()),
    }
}

impl Service {
    /// Applies `desired` as one change (what `Apply` and `ApplyStream` do).
    async fn apply_desired(&self, desired: DesiredState, dry_run: bool) -> Result<Response<pb::ApplyReply>, Status> {
        let writes = self.writes.clone();
        let report = blocking(move || writes.apply(&desired, dry_run).map_err(status)).await?;
        Ok(Response::new(apply_reply(&report)))
    }

    /// Every route with its counters and origin, and the sources: what
    /// `ListRoutes` answers and `StreamRoutes` sends in chunks.
    async fn listed(&self) -> Result<pb::ListRoutesReply, Status> {
        let enc = Arc::clone(&self.enc);
        let routes = blocking(move || enc.counted_routes().map_err(|e| Status::internal(e.to_string()))).await?;
        let sources = self
            .enc
            .sources()
            .list()
            .into_iter()
            .map(|(p, t)| pb::Source { prefix: p.to_string(), table: t.id() })
            .collect();
        let origin = self.writes.origin();
        let routes = routes
            .iter()
            .map(|c| {
                let mut m = counted(c);
                (m.origin, m.origin_detail, m.binding_sid) = origin(c.table, c.route.prefix);
                m
            })
            .collect();
        Ok(pb::ListRoutesReply { routes, sources })
    }
}

/// Routes per `StreamRoutes` message: a counted route is a few dozen bytes, so
/// a chunk stays far under the 4 MB default limit of gRPC clients.
const ROUTES_PER_CHUNK: usize = 1024;

type RoutesStream = Pin<Box<dyn Stream<Item = Result<pb::ListRoutesReply, Status>> + Send + 'static>>;

type CountersStream = Pin<Box<dyn Stream<Item = Result<pb::RouteCountersChunk, Status>> + Send + 'static>>;

type ApplyReplies = Pin<Box<dyn Stream<Item = Result<pb::ApplyReply, Status>> + Send + 'static>>;

/// Entries of each list per `ApplyStream` reply message (a key is a few
/// dozen bytes: a message stays far under 4 MB).
const KEYS_PER_REPLY: usize = 8192;

/// `reply` as messages of at most [`KEYS_PER_REPLY`] entries per list; the
/// first has the scalar fields.
fn reply_chunks(mut reply: pb::ApplyReply) -> Vec<pb::ApplyReply> {
    fn take<T>(v: &mut Vec<T>) -> Vec<T> {
        let n = v.len().min(KEYS_PER_REPLY);
        v.drain(..n).collect()
    }
    let longest = [reply.added.len(), reply.replaced.len(), reply.removed.len(), reply.set_aside.len()]
        .into_iter()
        .chain([reply.sources_set.len(), reply.sources_removed.len()])
        .max()
        .unwrap_or(0);
    let mut chunks = Vec::with_capacity(longest.div_ceil(KEYS_PER_REPLY).max(1));
    loop {
        let mut chunk = if chunks.is_empty() {
            pb::ApplyReply {
                summary: std::mem::take(&mut reply.summary),
                unchanged: reply.unchanged,
                map_operations: reply.map_operations,
                dry_run: reply.dry_run,
                dscp_changed: reply.dscp_changed,
                ..Default::default()
            }
        } else {
            pb::ApplyReply::default()
        };
        chunk.added = take(&mut reply.added);
        chunk.replaced = take(&mut reply.replaced);
        chunk.removed = take(&mut reply.removed);
        chunk.set_aside = take(&mut reply.set_aside);
        chunk.sources_set = take(&mut reply.sources_set);
        chunk.sources_removed = take(&mut reply.sources_removed);
        chunks.push(chunk);
        if chunks.len() * KEYS_PER_REPLY >= longest {
            return chunks;
        }
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::Stats, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Api for Service {
    async fn set_route(&self, request: Request<pb::Route>) -> Result<Response<pb::SetRouteReply>, Status> {
        let (table, route) = route_of(request.get_ref())?;
        let writes = self.writes.clone();
        blocking(move || writes.set_route_in(table, &route).map_err(status)).await?;
        Ok(Response::new(pb::SetRouteReply {}))
    }

    async fn remove_route(&self, request: Request<pb::RouteKey>) -> Result<Response<pb::RemoveRouteReply>, Status> {
        let key = request.get_ref();
        let prefix = prefix::parse(&key.prefix).map_err(|e| invalid("prefix", e))?;
        let t = table(key.table);
        let writes = self.writes.clone();
        if !blocking(move || writes.remove_in(t, prefix).map_err(status)).await? {
            return Err(Status::not_found(format!("no route for exactly {prefix} in table {}", key.table)));
        }
        Ok(Response::new(pb::RemoveRouteReply {}))
    }

    async fn list_routes(&self, _: Request<pb::ListRoutesRequest>) -> Result<Response<pb::ListRoutesReply>, Status> {
        Ok(Response::new(self.listed().await?))
    }

    type StreamRoutesStream = RoutesStream;

    async fn stream_routes(&self, _: Request<pb::ListRoutesRequest>) -> Result<Response<RoutesStream>, Status> {
        let pb::ListRoutesReply { routes, sources } = self.listed().await?;
        let mut chunks = Vec::with_capacity(routes.len().div_ceil(ROUTES_PER_CHUNK).max(1));
        let mut routes = routes.into_iter().peekable();
        let mut sources = Some(sources);
        // Always one chunk at least, so an empty table still sends its sources.
        while sources.is_some() || routes.peek().is_some() {
            let chunk: Vec<_> = routes.by_ref().take(ROUTES_PER_CHUNK).collect();
            chunks.push(Ok(pb::ListRoutesReply { routes: chunk, sources: sources.take().unwrap_or_default() }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn set_source(&self, request: Request<pb::Source>) -> Result<Response<pb::SetSourceReply>, Status> {
        let s = request.get_ref();
        let prefix = prefix::parse(&s.prefix).map_err(|e| invalid("prefix", e))?;
        let t = Table::alternate(s.table).ok_or_else(|| {
            Status::invalid_argument("table 0 is the main table; a source selects an alternate table (1..)")
        })?;
        self.with(move |enc| enc.set_source(prefix, t).map_err(status)).await?;
        Ok(Response::new(pb::SetSourceReply {}))
    }

    async fn remove_source(&self, request: Request<pb::SourceKey>) -> Result<Response<pb::RemoveSourceReply>, Status> {
        let prefix = prefix::parse(&request.get_ref().prefix).map_err(|e| invalid("prefix", e))?;
        if !self.with(move |enc| enc.remove_source(prefix).map_err(status)).await? {
            return Err(Status::not_found(format!("{prefix} selects no table")));
        }
        Ok(Response::new(pb::RemoveSourceReply {}))
    }

    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyReply>, Status> {
        let req = request.into_inner();
        let dry_run = req.dry_run;
        self.apply_desired(desired_of(req), dry_run).await
    }

    type ApplyStreamStream = ApplyReplies;

    async fn apply_stream(
        &self,
        request: Request<tonic::Streaming<pb::ApplyRequest>>,
    ) -> Result<Response<ApplyReplies>, Status> {
        let mut stream = request.into_inner();
        let mut all = pb::ApplyRequest::default();
        let mut first = true;
        // Everything is received before anything is applied: a broken
        // stream (an error here) changes nothing.
        while let Some(chunk) = stream.message().await? {
            if !chunk.dscp_map.is_empty() && !all.dscp_map.is_empty() {
                return Err(invalid("dscp_map", "given in more than one chunk: give it once"));
            }
            if first {
                all.dry_run = chunk.dry_run;
                first = false;
            }
            all.routes.extend(chunk.routes);
            all.sources.extend(chunk.sources);
            if !chunk.dscp_map.is_empty() {
                all.dscp_map = chunk.dscp_map;
            }
        }
        if first {
            return Err(invalid("ApplyStream", "no chunk received: send at least one (routes may be empty)"));
        }
        let dry_run = all.dry_run;
        let reply = self.apply_desired(desired_of(all), dry_run).await?.into_inner();
        Ok(Response::new(Box::pin(tokio_stream::iter(reply_chunks(reply).into_iter().map(Ok)))))
    }

    type StreamRouteCountersStream = CountersStream;

    async fn stream_route_counters(
        &self,
        request: Request<pb::StreamRouteCountersRequest>,
    ) -> Result<Response<CountersStream>, Status> {
        let only = request.get_ref().table.map(table);
        let enc = Arc::clone(&self.enc);
        let routes = blocking(move || enc.counted_routes().map_err(|e| Status::internal(e.to_string()))).await?;
        let origin = self.writes.origin();
        let mut chunks = Vec::new();
        let mut chunk = Vec::with_capacity(ROUTES_PER_CHUNK);
        for c in routes.iter().filter(|c| only.is_none_or(|t| t == c.table)) {
            let mut m = counted(c);
            (m.origin, m.origin_detail, m.binding_sid) = origin(c.table, c.route.prefix);
            chunk.push(m);
            if chunk.len() == ROUTES_PER_CHUNK {
                chunks.push(Ok(pb::RouteCountersChunk { routes: std::mem::take(&mut chunk) }));
            }
        }
        // An empty table still answers one (empty) chunk.
        if !chunk.is_empty() || chunks.is_empty() {
            chunks.push(Ok(pb::RouteCountersChunk { routes: chunk }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn get_status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusReply>, Status> {
        use super::activity::unix_ms;
        let enc = Arc::clone(&self.enc);
        let keys: Vec<(Table, ipnetwork::IpNetwork)> =
            blocking(move || Ok(enc.valid_state().routes().keys().copied().collect())).await?;
        let origin = self.writes.origin();
        let mut routes_by_origin: HashMap<String, u64> = HashMap::new();
        for (t, p) in &keys {
            let (from, _, _) = origin(*t, *p);
            // An agent without origins knows of no other: every route is the file's or the API's.
            let from = if from.is_empty() { "static".to_owned() } else { from };
            *routes_by_origin.entry(from).or_default() += 1;
        }
        let activity = &self.writes.activity;
        #[cfg_attr(not(feature = "bgp"), allow(unused_mut))]
        let mut last_change = activity.last().map(|c| pb::LastChange {
            at_unix_ms: unix_ms(c.at),
            origin: c.origin.to_owned(),
            routes: c.routes,
        });
        #[cfg_attr(not(feature = "bgp"), allow(unused_mut))]
        let mut reply = pb::StatusReply {
            interface: self.iface.clone(),
            routes: keys.len() as u64,
            routes_by_origin,
            started_unix_ms: unix_ms(activity.started()),
            ..Default::default()
        };
        #[cfg(feature = "bgp")]
        if let Some(bgp) = &self.writes.bgp {
            reply.bgp_enabled = true;
            reply.bgp_api_connected = bgp.api_connected.load(std::sync::atomic::Ordering::Relaxed) == 1;
            let since = bgp.peers_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            reply.bgp_sessions = bgp
                .peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(n, up)| pb::BgpSession {
                    neighbor: n.clone(),
                    established: *up,
                    since_unix_ms: since.get(n).map_or(0, |t| unix_ms(*t)),
                })
                .collect();
            let bgp_last = *bgp.last_change.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, routes)) = bgp_last {
                if last_change.as_ref().is_none_or(|c| c.at_unix_ms <= unix_ms(at)) {
                    last_change = Some(pb::LastChange { at_unix_ms: unix_ms(at), origin: "bgp".into(), routes });
                }
            }
        }
        reply.last_change = last_change;
        Ok(Response::new(reply))
    }

    async fn reload(&self, _request: Request<pb::ReloadRequest>) -> Result<Response<pb::ReloadReply>, Status> {
        use super::ReloadError;
        let writes = self.writes.clone();
        let report = blocking(move || {
            writes.reload().map_err(|e| match e {
                ReloadError::NoConfig => Status::failed_precondition(e.to_string()),
                ReloadError::Apply { source: RouteError::Map(_) | RouteError::NotSaved(_), .. } => {
                    Status::internal(e.to_string())
                }
                _ => Status::invalid_argument(e.to_string()),
            })
        })
        .await?;
        Ok(Response::new(pb::ReloadReply {
            config: report.path.display().to_string(),
            has_static_routes: report.routes.is_some(),
            routes: report.routes.as_ref().map(apply_reply),
            restart_needed: report.restart_needed.clone(),
            summary: report.to_string(),
        }))
    }

    async fn verify(&self, _: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyReply>, Status> {
        let found = self.with(|enc| enc.verify().map_err(|e| Status::internal(e.to_string()))).await?;
        Ok(Response::new(pb::VerifyReply { differences: found.iter().map(difference).collect() }))
    }

    async fn repair(&self, _: Request<pb::RepairRequest>) -> Result<Response<pb::RepairReply>, Status> {
        let fixed = self.with(|enc| enc.repair().map_err(status)).await?;
        Ok(Response::new(pb::RepairReply { repaired: fixed.iter().map(difference).collect() }))
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainReply>, Status> {
        let r = request.get_ref();
        let dst = r.dst.parse().map_err(|e| invalid("dst", e))?;
        let src = match r.src.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|e| invalid("src", e))?),
        };
        let protocol = match r.protocol.as_str() {
            "" => ProbeProtocol::Udp,
            p => p.parse().map_err(|e: String| Status::invalid_argument(e))?,
        };
        let port = |p: u32, what| u16::try_from(p).map_err(|_| invalid(what, "ports are 0..=65535"));
        let dscp = u8::try_from(r.dscp).ok().filter(|d| *d <= 63).ok_or_else(|| invalid("dscp", "0..=63"))?;
        let mut probe = Probe::to(dst);
        probe.src = src;
        probe.protocol = protocol;
        if r.sport != 0 {
            probe.sport = port(r.sport, "sport")?;
        }
        if r.dport != 0 {
            probe.dport = port(r.dport, "dport")?;
        }
        probe.dscp = dscp;
        let explanation = self
            .with(move |enc| {
                enc.explain(&probe).map_err(|e| match e {
                    crate::Error::Route(e) => status(e),
                    other => Status::internal(other.to_string()),
                })
            })
            .await?;
        Ok(Response::new(pb::ExplainReply {
            action: explanation.action.to_string(),
            outcome: explanation.outcome.to_owned(),
            route: explanation.route.as_ref().map(|(t, r)| route_message(*t, r)),
            list: explanation.list.map(|l| l as u32),
            stack: explanation
                .stack
                .iter()
                .map(|e| pb::LabelStackEntry {
                    label: e.label,
                    tc: u32::from(e.tc),
                    bottom: e.bottom,
                    ttl: u32::from(e.ttl),
                })
                .collect(),
            text: {
                // As the command's `get`: where the route came from, with an agent that knows.
                let mut text = explanation.to_string();
                if let Some((t, r)) = &explanation.route {
                    let (origin, detail, _) = self.writes.origin()(*t, r.prefix);
                    let said = if detail.is_empty() { origin } else { detail };
                    if !said.is_empty() {
                        text.push_str(&format!("\norigin: {said}"));
                    }
                    #[cfg(feature = "bgp")]
                    if let Some(view) = self.writes.origins.as_ref().map(|o| o.view()) {
                        if let (_, Some(info)) = view.origin(*t, r.prefix) {
                            let lines =
                                super::liveness::explain_lines(self.liveness.as_ref(), info.color, info.endpoint);
                            text.push_str(&lines);
                        }
                    }
                }
                text
            },
        }))
    }

    async fn get_route_counters(&self, request: Request<pb::RouteKey>) -> Result<Response<pb::CountedRoute>, Status> {
        let key = request.get_ref();
        let prefix = prefix::parse(&key.prefix).map_err(|e| invalid("prefix", e))?;
        let t = table(key.table);
        let table_id = key.table;
        let found = self
            .with(move |enc| {
                let counters = enc.route_counters(t, prefix).map_err(status)?;
                let route =
                    enc.routes(t).map_err(|e| status(RouteError::Map(e)))?.into_iter().find(|r| r.prefix == prefix);
                Ok(counters.zip(route))
            })
            .await?;
        let (counters, route) =
            found.ok_or_else(|| Status::not_found(format!("no route for exactly {prefix} in table {table_id}")))?;
        Ok(Response::new(counted(&CountedRoute { table: t, route, counters })))
    }

    async fn get_stats(&self, _: Request<pb::StatsRequest>) -> Result<Response<pb::Stats>, Status> {
        let iface = self.iface.clone();
        let stats = self.with(|enc| enc.stats().map_err(|e| Status::internal(e.to_string()))).await?;
        Ok(Response::new(stats_message(&iface, &stats)))
    }

    async fn get_liveness(&self, request: Request<pb::LivenessRequest>) -> Result<Response<pb::LivenessReply>, Status> {
        #[cfg(feature = "bgp")]
        return super::liveness::reply(self.liveness.as_ref(), &self.iface, request.get_ref()).map(Response::new);
        #[cfg(not(feature = "bgp"))]
        {
            // No BGP, no S-BFD: the reply says so (enabled = false).
            let _ = request;
            Ok(Response::new(pb::LivenessReply { interface: self.iface.clone(), ..Default::default() }))
        }
    }

    type WatchStatsStream = StatsStream;

    async fn watch_stats(&self, request: Request<pb::WatchStatsRequest>) -> Result<Response<StatsStream>, Status> {
        let interval = match request.get_ref().interval_ms {
            0 => Duration::from_secs(1),
            ms @ 100..=60_000 => Duration::from_millis(u64::from(ms)),
            ms => return Err(invalid("interval_ms", format!("{ms} is outside 100..=60000"))),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let enc = Arc::clone(&self.enc);
        let iface = self.iface.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let item = enc.stats().map(|s| stats_message(&iface, &s)).map_err(|e| Status::internal(e.to_string()));
                if tx.send(item).await.is_err() {
                    // The client went away.
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, base: u32) -> Vec<pb::RouteKey> {
        (0..n).map(|i| pb::RouteKey { prefix: format!("10.0.{i}.0/24"), table: base }).collect()
    }

    #[test]
    fn a_large_reply_is_cut_into_messages_that_concatenate_back() {
        let reply = pb::ApplyReply {
            added: keys(KEYS_PER_REPLY * 2 + 1, 0),
            removed: keys(3, 1),
            summary: "20000 added".into(),
            unchanged: 7,
            dry_run: true,
            ..Default::default()
        };
        let chunks = reply_chunks(reply.clone());
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.added.len() <= KEYS_PER_REPLY));
        assert_eq!((chunks[0].summary.as_str(), chunks[0].unchanged, chunks[0].dry_run), ("20000 added", 7, true));
        assert!(chunks[1..].iter().all(|c| c.summary.is_empty() && c.unchanged == 0));
        let mut back = chunks[0].clone();
        for c in &chunks[1..] {
            back.added.extend(c.added.iter().cloned());
            back.removed.extend(c.removed.iter().cloned());
        }
        assert_eq!(back, reply);
        // An empty reply is still one message (it carries the summary).
        assert_eq!(reply_chunks(pb::ApplyReply::default()).len(), 1);
    }
}
