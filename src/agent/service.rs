//! This project's own protocol (package `lnetd.encap.v1`): every library
//! operation, in the library's text syntaxes, with gRPC status codes.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::proto::v1 as pb;
use super::proto::v1::encapsulator_server::Encapsulator as Api;
use super::{applying, status};
use crate::domain::desired::DesiredState;
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
    /// The most an `ApplyStream` may send (encoded bytes over its chunks).
    max_apply_bytes: Option<u64>,
    /// The full comparisons: one at a time, whoever asks (held while one runs).
    verified: Arc<tokio::sync::Mutex<Verified>>,
    #[cfg(feature = "bgp")]
    liveness: Option<Arc<crate::bgp::BgpCounters>>,
}

/// How often callers that may only read start a full comparison, at most.
const READER_VERIFY_EVERY: Duration = Duration::from_secs(5);

/// The agent's full comparisons of the kernel with the RIB.
#[derive(Debug, Default)]
struct Verified {
    /// The last one: when it started, what it found.
    last: Option<(Instant, Arc<Vec<crate::diagnostics::Difference>>)>,
    /// When a caller that may only read last started one.
    reader_started: Option<Instant>,
}

impl Service {
    pub(crate) fn new(
        enc: Arc<Encapsulator>,
        writes: super::Writes,
        iface: &str,
        max_apply_bytes: Option<u64>,
    ) -> Service {
        Service {
            enc,
            writes,
            iface: iface.to_owned(),
            max_apply_bytes,
            verified: Arc::default(),
            #[cfg(feature = "bgp")]
            liveness: None,
        }
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
    let name = Some(r.policy_name.as_str()).filter(|n| !n.is_empty());
    let policy = Policy::from_text(&r.policy, name).map_err(|e| invalid("policy", e))?;
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
            r.policy.to_string()
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
        set_aside: c.set_aside,
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

/// An apply this large (routes sent or changed) hands the memory it freed
/// back to the system after it ([`crate::sys::heap::give_back`]).
const LARGE: usize = 10_000;

impl Service {
    /// Applies `desired` as one change (what `Apply` and `ApplyStream` do),
    /// behind the removal guard when `max_remove_share` is given.
    async fn apply_desired(
        &self,
        desired: DesiredState,
        dry_run: bool,
        max_remove_share: Option<f64>,
    ) -> Result<Response<pb::ApplyReply>, Status> {
        let max = applying::guard_share(max_remove_share)?;
        let writes = self.writes.clone();
        let (report, desired) =
            tokio::task::spawn_blocking(move || (writes.apply_guarded(&desired, dry_run, max), desired))
                .await
                .map_err(|e| Status::internal(format!("worker: {e}")))?;
        // Freeing a million routes' strings takes a while: not before the
        // reply. What a large apply freed goes back to the system.
        let changed = report.as_ref().map_or(0, |r| r.added.len() + r.replaced.len() + r.removed.len());
        tokio::task::spawn_blocking(move || {
            let large = desired.routes.len().max(changed) >= LARGE;
            drop(desired);
            if large {
                crate::sys::heap::give_back();
            }
        });
        Ok(Response::new(applying::apply_reply(&report?)))
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
            // Worded as the command words it: it prints this message (a BGP route's refusal is NOT_FOUND too).
            let suffix = if key.table == 0 { String::new() } else { format!(" in table {}", key.table) };
            return Err(Status::not_found(format!("no route for exactly {prefix}{suffix}")));
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
        self.writes.activity.touch();
        Ok(Response::new(pb::SetSourceReply {}))
    }

    async fn remove_source(&self, request: Request<pb::SourceKey>) -> Result<Response<pb::RemoveSourceReply>, Status> {
        let prefix = prefix::parse(&request.get_ref().prefix).map_err(|e| invalid("prefix", e))?;
        if !self.with(move |enc| enc.remove_source(prefix).map_err(status)).await? {
            return Err(Status::not_found(format!("{prefix} selects no table")));
        }
        self.writes.activity.touch();
        Ok(Response::new(pb::RemoveSourceReply {}))
    }

    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyReply>, Status> {
        let req = request.into_inner();
        let (dry_run, max) = (req.dry_run, req.max_remove_share);
        let reply = self.apply_desired(applying::desired_of(req), dry_run, max).await?;
        Ok(reply.map(applying::capped))
    }

    type ApplyStreamStream = ApplyReplies;

    async fn apply_stream(
        &self,
        request: Request<tonic::Streaming<pb::ApplyRequest>>,
    ) -> Result<Response<ApplyReplies>, Status> {
        let all = applying::gather(&mut request.into_inner(), self.max_apply_bytes).await?;
        let (dry_run, max) = (all.dry_run, all.max_remove_share);
        let reply = self.apply_desired(applying::desired_of(all), dry_run, max).await?.into_inner();
        Ok(Response::new(Box::pin(tokio_stream::iter(applying::reply_chunks(reply).into_iter().map(Ok)))))
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
        let writes = self.writes.clone();
        let stamp = writes.stamp();
        // Counted once per change, not per call (audit.rs): usually stored already.
        let summary = blocking(move || Ok(writes.audit.summary(stamp))).await?;
        let activity = &self.writes.activity;
        #[cfg_attr(not(feature = "bgp"), allow(unused_mut))]
        let mut last_change = activity.last().map(|c| pb::LastChange {
            at_unix_ms: unix_ms(c.at),
            origin: c.origin.to_owned(),
            routes: c.routes,
        });
        let attachment = self.enc.attachment();
        #[cfg_attr(not(feature = "bgp"), allow(unused_mut))]
        let mut reply = pb::StatusReply {
            interface: self.iface.clone(),
            routes: summary.routes,
            routes_by_origin: summary.by_origin.into_iter().collect(),
            started_unix_ms: unix_ms(activity.started()),
            mode: attachment.map(|a| a.mode.to_string()).unwrap_or_default(),
            pin_dir: self.enc.pin_dir().map(|p| p.display().to_string()).unwrap_or_default(),
            routes_by_table: summary.by_table.into_iter().collect(),
            sources: summary.sources,
            counted_unix_ms: summary.at.map_or(0, unix_ms),
            last_verification: self.writes.audit.last_verification().map(|v| pb::Verification {
                at_unix_ms: unix_ms(v.at),
                took_ms: v.took.as_millis() as u64,
                differences: v.differences,
                example: v.example.unwrap_or_default(),
                trigger: v.trigger.to_owned(),
            }),
            verify_interval_s: self.writes.audit.interval.map_or(0, |i| i.as_secs().max(1)),
            guards_removals: true,
            label_on_link: self.enc.diagnostics().labels_on_link(),
            ..Default::default()
        };
        #[cfg(feature = "bgp")]
        if let Some(bgp) = &self.writes.bgp {
            reply.bgp_enabled = true;
            reply.bgp_api_connected = bgp.api_connected.load(std::sync::atomic::Ordering::Relaxed) == 1;
            reply.bgp_routes_held = bgp.routes_held.load(std::sync::atomic::Ordering::Relaxed);
            {
                use crate::bgp::counters::{ignored_by_reason, invalid_by_reason};
                // The metrics list every reason, 0 included; a reply only those that happened.
                let above_0 = |by_reason: &mut dyn Iterator<Item = (&'static str, u64)>| {
                    by_reason.filter(|(_, n)| *n > 0).map(|(r, n)| (r.to_owned(), n)).collect()
                };
                reply.bgp_policies_ignored = above_0(&mut ignored_by_reason(&bgp.policies_ignored));
                reply.bgp_policies_ignored_total = above_0(&mut ignored_by_reason(&bgp.policies_ignored_total));
                reply.bgp_candidate_paths_invalid = above_0(&mut invalid_by_reason(&bgp.candidate_paths_invalid));
                reply.bgp_candidate_paths_invalid_total =
                    above_0(&mut invalid_by_reason(&bgp.candidate_paths_invalid_total));
            }
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
            routes: report.routes.as_ref().map(|r| applying::capped(applying::apply_reply(r))),
            restart_needed: report.restart_needed.clone(),
            summary: report.to_string(),
        }))
    }

    async fn verify(&self, request: Request<pb::VerifyRequest>) -> Result<Response<pb::VerifyReply>, Status> {
        // A caller that may only read starts a comparison at most every
        // READER_VERIFY_EVERY (it waits for its turn, outside the lock): no
        // local user keeps a core comparing (root's writes waited behind it),
        // and no one is answered from before their question.
        if request.extensions().get::<super::authz::ReadOnlyPeer>().is_some() {
            let last = self.verified.lock().await.reader_started;
            let wait = last.map_or(Duration::ZERO, |at| READER_VERIFY_EVERY.saturating_sub(at.elapsed()));
            tokio::time::sleep(wait).await;
            self.verified.lock().await.reader_started = Some(Instant::now());
        }
        let arrived = Instant::now();
        // One comparison at a time: callers that waited for one that started
        // after they asked take its answer.
        let mut verified = self.verified.lock().await;
        if let Some((started, found)) = verified.last.as_ref().filter(|(started, _)| *started >= arrived) {
            return Ok(Response::new(pb::VerifyReply {
                differences: found.iter().map(difference).collect(),
                compared_ms_ago: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }));
        }
        let started = Instant::now();
        let found = self.with(|enc| enc.verify().map_err(|e| Status::internal(e.to_string()))).await?;
        self.writes.audit.record(super::audit::Verification::of(&found, started, "verify"));
        let reply = pb::VerifyReply { differences: found.iter().map(difference).collect(), compared_ms_ago: 0 };
        verified.last = Some((started, Arc::new(found)));
        Ok(Response::new(reply))
    }

    async fn repair(&self, _: Request<pb::RepairRequest>) -> Result<Response<pb::RepairReply>, Status> {
        let started = std::time::Instant::now();
        let fixed = self.with(|enc| enc.repair().map_err(status)).await?;
        // Repaired: the kernel matches the RIB now.
        self.writes.audit.record(super::audit::Verification::of(&[], started, "repair"));
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
        // Where the route came from, and its policy's key (by the key, not
        // the description: a policy whose every list is down has none, and
        // its liveness is what explains it then). Off the async workers: the
        // origins' lock may be held through a whole apply.
        let writes = self.writes.clone();
        let id = explanation.route.as_ref().map(|(t, r)| (*t, r.prefix));
        let (said, policy) =
            blocking(move || Ok(id.map(|(t, p)| writes.origin_said(t, p)).unwrap_or_default())).await?;
        #[cfg(feature = "bgp")]
        let liveness = policy.and_then(|k| super::liveness::for_policy(self.liveness.as_ref(), k.color, k.endpoint));
        #[cfg(not(feature = "bgp"))]
        let liveness = policy.map(|never| match never {});
        Ok(Response::new(pb::ExplainReply {
            liveness,
            action: explanation.verdict(),
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
                if !said.is_empty() {
                    text.push_str(&format!("\norigin: {said}"));
                }
                #[cfg(feature = "bgp")]
                if let Some(k) = policy {
                    text.push_str(&super::liveness::explain_lines(self.liveness.as_ref(), k.color, k.endpoint));
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
        // `routes` lists the routes in force: this one is not set aside.
        Ok(Response::new(counted(&CountedRoute { table: t, route, counters, set_aside: false })))
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
