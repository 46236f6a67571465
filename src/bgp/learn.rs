//! The learner: watches GoBGP over its gRPC API and keeps BGP's table in the
//! [`Origins`] current.
//!
//! On connecting it subscribes to best-path and peer events (`WatchEvent`),
//! then reads every best path of IPv4/IPv6 unicast and SR Policy
//! (`ListPath`), and replays the events that arrived meanwhile on top. Events
//! are batched: a batch is applied once GoBGP has been quiet for the debounce
//! time (default 150 ms), or at the latest after the maximum delay (default
//! 500 ms), so a million routes program in a few large applies while a single
//! change lands well within a second. Each apply hands the whole merged state
//! to [`crate::Encapsulator::apply`] (an owned `ValidState`) (atomic, no moment
//! unlabelled).
//!
//! When a BGP session goes down, GoBGP withdraws what the peer taught. With
//! [`SessionDown::Keep`] (the default) those withdrawals are not applied: the
//! routes stay as last known (marked stale) until the peer is back and has
//! had the stale time (default 5 s) to teach them again; the ones it did not
//! are then removed. With [`SessionDown::Withdraw`] they are applied at once.
//! The same holds when GoBGP itself goes away: `keep` leaves everything in
//! place and resynchronises on return (routes not taught again within the
//! stale time after a session is established again are removed; with no
//! session, nothing is); `withdraw` removes every BGP route at once.
//!
//! At every connection the host's BGP identifier, which SR Policy route
//! targets must name (RFC 9830 section 4.2.1, see [`super::accept`]), is read
//! from GoBGP (`GetBgp`) unless [`BgpConfig::router_id`] sets it. When GoBGP
//! goes away the learner logs the sessions that were up and the last SR
//! Policy paths it reported, with their peers: GoBGP 3.10 can die of what a
//! peer sends.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use super::counters::{add, set, BgpCounters};
use super::origins::Origins;
use super::proto as api;
use super::sbfd::status::{lists_to_probe, policy_lists};
use super::sbfd::Engine;
use super::table::{sender, Table, Taught};
use super::wire::{read_path, Nlri, PathUpdate};
use super::{BgpConfig, SessionDown};

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type Client = api::gobgp_api_client::GobgpApiClient<Channel>;

/// An event waiting to be applied.
enum Pending {
    Paths(Vec<PathUpdate>),
    Peer { neighbor: String, established: bool },
}

/// What a deadline does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Release {
    /// Drop the routes held from before the last (re)synchronisation.
    Held,
    /// Drop the stale paths of a neighbor that came back.
    Neighbor(String),
}

/// Runs the learner until `shutdown` turns true: connects to GoBGP at
/// `config.api` (retrying every second), synchronises, follows events.
pub async fn run(
    config: BgpConfig,
    origins: Arc<Origins>,
    counters: Arc<BgpCounters>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let woken = Arc::new(tokio::sync::Notify::new());
    if let Some(sbfd) = config.sbfd.clone() {
        if let Err(e) = start_liveness(&sbfd, &counters, &woken) {
            log::error!("{e}: segment lists are used without a liveness check until it starts (retrying every second)");
            tokio::spawn(retry_liveness(sbfd, Arc::clone(&counters), Arc::clone(&woken), shutdown.clone()));
        }
    }
    let config_no_live_path = config.no_live_path;
    let mut learner = Learner {
        woken,
        keep: config.session_down == SessionDown::Keep,
        config,
        origins,
        counters,
        table: Table::new(None, config_no_live_path),
        releases: Vec::new(),
        peers: HashMap::new(),
        release_on_established: false,
        recent: VecDeque::new(),
        established_at: HashMap::new(),
        applied_once: false,
        outage: Outage::default(),
    };
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match learner.session(first, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => match learner.outage.failed(Instant::now()) {
                Failure::First => {
                    log::warn!("BGP: {e}; retrying every 1 s (logged again at most once a minute while it fails)")
                }
                Failure::Again { attempts, over } => log::warn!(
                    "BGP: {e}; still failing after {attempts} attempts over {} s; retrying every 1 s",
                    over.as_secs()
                ),
                Failure::Quiet => log::debug!("BGP: {e}; retrying in 1 s"),
            },
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts the S-BFD engine and publishes it in `counters` (where the
/// learner finds it at its next computation); on failure, publishes why.
fn start_liveness(
    sbfd: &super::sbfd::SbfdConfig,
    counters: &BgpCounters,
    woken: &Arc<tokio::sync::Notify>,
) -> Result<(), super::sbfd::SbfdError> {
    let notify = Arc::clone(woken);
    let started = Engine::start(sbfd.clone(), move || notify.notify_one());
    let mut status = lock(&counters.sbfd);
    status.configured = Some(sbfd.timers);
    match started {
        Ok(engine) => {
            status.engine = Some(Arc::new(engine));
            status.not_running = None;
            Ok(())
        }
        Err(e) => {
            status.not_running = Some(e.clone());
            Err(e)
        }
    }
}

/// Tries to start the S-BFD engine every second until it starts or the
/// agent stops. At boot the router's MAC is often not yet in the neighbour
/// table: giving up at the first try left the lists unchecked for the
/// agent's whole life.
async fn retry_liveness(
    sbfd: super::sbfd::SbfdConfig,
    counters: Arc<BgpCounters>,
    woken: Arc<tokio::sync::Notify>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = lock(&counters.sbfd).not_running.clone();
    let mut attempts = 1u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        attempts += 1;
        // Off the async workers: a start makes system calls and may load a program.
        let started = {
            let (sbfd, counters, woken) = (sbfd.clone(), Arc::clone(&counters), Arc::clone(&woken));
            tokio::task::spawn_blocking(move || start_liveness(&sbfd, &counters, &woken)).await
        };
        let Ok(started) = started else { return };
        match started {
            Ok(()) => {
                log::info!(
                    "S-BFD on {}: started after {attempts} attempts: segment lists are checked from now on",
                    sbfd.interface
                );
                // The learner hands the engine its lists at its next computation.
                woken.notify_one();
                return;
            }
            // Said once at error level; the same again every second would drown the log.
            Err(e) if last.as_ref() == Some(&e) => log::debug!("{e} (attempt {attempts}; retrying every second)"),
            Err(e) => {
                log::warn!("{e}: segment lists are still used without a liveness check (retrying every second)");
                last = Some(e);
            }
        }
    }
}

struct Learner {
    config: BgpConfig,
    /// Woken by the engine when a list becomes usable or unusable, and
    /// when the engine starts.
    woken: Arc<tokio::sync::Notify>,
    keep: bool,
    origins: Arc<Origins>,
    counters: Arc<BgpCounters>,
    table: Table,
    releases: Vec<(Instant, Release)>,
    /// Session state per neighbor.
    peers: HashMap<String, bool>,
    /// Release what is held once a session is established (after a (re)connection under `keep`).
    release_on_established: bool,
    /// The last SR Policy paths GoBGP reported, and from whom: logged when
    /// GoBGP goes away (it may have died of what a peer sent).
    recent: VecDeque<String>,
    /// When each established session came up (a daemon that dies right
    /// after a session comes up points at that peer).
    established_at: HashMap<String, Instant>,
    /// The origins hold the steering of `table`'s last computation (an apply
    /// of it succeeded and `table` was not replaced since): a batch that
    /// steers nothing again may then hand over the policies alone.
    applied_once: bool,
    /// GoBGP's API failing to answer, for the log.
    outage: Outage,
}

/// How often a failure to reach GoBGP's API is logged at warn while it
/// goes on: it is retried every second (3,600 lines an hour otherwise).
const OUTAGE_WARN_EVERY: Duration = Duration::from_secs(60);

/// GoBGP's API failing, as logged: the first failure at warn, then at most
/// one warn a minute (debug in between), and the return once.
#[derive(Debug, Default)]
struct Outage {
    /// The first failure of this outage.
    since: Option<Instant>,
    /// Failed attempts in this outage.
    attempts: u64,
    /// The last failure logged at warn.
    warned: Option<Instant>,
}

/// How one failure is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The first of an outage: warn.
    First,
    /// A minute or more after the last warn: warn again, with the count.
    Again {
        /// Failed attempts so far.
        attempts: u64,
        /// Since the first.
        over: Duration,
    },
    /// In between: debug.
    Quiet,
}

impl Outage {
    fn failed(&mut self, now: Instant) -> Failure {
        self.attempts += 1;
        let since = *self.since.get_or_insert(now);
        match self.warned {
            None => {
                self.warned = Some(now);
                Failure::First
            }
            Some(t) if now.duration_since(t) >= OUTAGE_WARN_EVERY => {
                self.warned = Some(now);
                Failure::Again { attempts: self.attempts, over: now.duration_since(since) }
            }
            Some(_) => Failure::Quiet,
        }
    }

    /// Connected: how long the outage lasted and how many attempts failed,
    /// if there was one; the next failure starts a new outage.
    fn ended(&mut self, now: Instant) -> Option<(Duration, u64)> {
        let Outage { since, attempts, .. } = std::mem::take(self);
        Some((now.duration_since(since?), attempts))
    }
}

/// How many recent SR Policy paths are kept for the log when GoBGP goes away.
const RECENT: usize = 8;

/// The BGP identifier in GoBGP's `GetBgp` answer; `None` when it has none
/// (`0.0.0.0`, empty) or says something that is not an IPv4 address.
fn router_id_of(reply: &api::GetBgpResponse) -> Option<Ipv4Addr> {
    let text = reply.global.as_ref().map(|g| g.router_id.as_str()).unwrap_or_default();
    text.parse::<Ipv4Addr>().ok().filter(|id| !id.is_unspecified())
}

/// The warning when `--bgp-router-id` is not GoBGP's own router ID: route
/// targets are matched against the flag's, so paths the controller
/// addressed to GoBGP's identifier are ignored (and the reverse).
fn router_id_mismatch(configured: Ipv4Addr, gobgps: Option<Ipv4Addr>) -> Option<String> {
    let theirs = gobgps.filter(|t| *t != configured)?;
    Some(format!(
        "BGP: --bgp-router-id ([bgp] router_id) {configured} is not GoBGP's router ID {theirs}: SR policies are used only when a route \
         target names {configured}, so paths addressed to {theirs} are ignored; give GoBGP's, or leave the flag out \
         to use it"
    ))
}

/// A peer event as a session change to queue; `None` for what is not one:
/// GoBGP's "end of initial list" marker, which carries an empty peer (its
/// address prints as `<nil>`), and any peer without a usable address.
fn peer_change(event: api::watch_event_response::PeerEvent) -> Option<Pending> {
    if event.r#type == api::watch_event_response::peer_event::Type::EndOfInit as i32 {
        return None;
    }
    let peer = event.peer?;
    let neighbor = neighbor_of(&peer)?;
    Some(Pending::Peer { neighbor, established: established(&peer) })
}

fn established(peer: &api::Peer) -> bool {
    peer.state.as_ref().is_some_and(|s| s.session_state == api::peer_state::SessionState::Established as i32)
}

impl Learner {
    /// One connection to GoBGP: `Ok` on shutdown, `Err` (why) when it ends otherwise.
    async fn session(&mut self, first: bool, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> Result<(), String> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.config.api))
            .map_err(|e| format!("--bgp-api {}: {e}", self.config.api))?
            .connect_timeout(Duration::from_secs(2));
        let mut client = Client::new(endpoint.connect().await.map_err(|e| {
            format!("cannot reach GoBGP's API at {} ({e}); is gobgpd running with --api-hosts there?", self.config.api)
        })?)
        .max_decoding_message_size(64 << 20);
        let request = api::WatchEventRequest {
            peer: Some(api::watch_event_request::Peer {}),
            table: Some(api::watch_event_request::Table {
                filters: vec![api::watch_event_request::table::Filter {
                    r#type: api::watch_event_request::table::filter::Type::Best as i32,
                    init: false,
                }],
            }),
        };
        let mut events =
            client.watch_event(request).await.map_err(|e| format!("WatchEvent refused: {}", e.message()))?.into_inner();
        // Read even when --bgp-router-id is given: a different one is worth saying.
        let gobgps = client.get_bgp(api::GetBgpRequest {}).await;
        let router_id = match self.config.router_id {
            Some(id) => {
                let theirs = gobgps.as_ref().ok().and_then(|reply| router_id_of(reply.get_ref()));
                if let Some(text) = router_id_mismatch(id, theirs) {
                    log::warn!("{text}");
                }
                Some(id)
            }
            None => match gobgps {
                Ok(reply) => {
                    let id = router_id_of(reply.get_ref());
                    if id.is_none() {
                        log::warn!(
                            "BGP: GoBGP at {} has no router ID; SR policies with route targets are ignored until \
                             it has one (or give --bgp-router-id)",
                            self.config.api
                        );
                    }
                    id
                }
                Err(e) => {
                    log::warn!(
                        "BGP: GetBgp at {} refused ({}); SR policies with route targets are ignored (give \
                         --bgp-router-id)",
                        self.config.api,
                        e.message()
                    );
                    None
                }
            },
        };
        {
            let mut known = self.counters.router_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *known != router_id {
                if let Some(id) = router_id {
                    log::info!("BGP: this host's BGP identifier is {id}: SR policies must name it in a route target");
                }
            }
            *known = router_id;
        }
        let snapshot = self.list_all(&mut client).await?;
        set(&self.counters.api_connected, 1);
        add(&self.counters.resyncs, 1);
        log::info!("BGP: connected to GoBGP at {}, {} best paths", self.config.api, snapshot.len());
        if let Some((lasted, attempts)) = self.outage.ended(Instant::now()) {
            // At warn: the outage was, so an operator reading warnings sees its end.
            log::warn!(
                "BGP: GoBGP's API at {} is back after {} s ({attempts} failed attempts)",
                self.config.api,
                lasted.as_secs()
            );
        }

        // The snapshot replaces what was known; under `keep` the routes
        // installed now stay until BGP has had the stale time to teach them.
        if self.keep && !first {
            self.table.mark_all_stale();
            self.origins.hold_installed();
        }
        let mut fresh = Table::new(router_id, self.config.no_live_path);
        let none = HashSet::new();
        for u in snapshot {
            fresh.update(u, &none, &self.counters);
        }
        if self.keep {
            fresh.keep_stale_from(&mut self.table);
        }
        self.table = fresh;
        self.applied_once = false;
        // Under `keep`, what is held (or stale) is released the stale time
        // after a session is established again, not before: GoBGP back
        // without its peers must not empty the table.
        self.releases.retain(|(_, r)| *r != Release::Held);
        self.release_on_established = self.keep && (self.origins.holding() || !first);
        self.flush(!self.keep).await;

        let mut pending: Vec<Pending> = Vec::new();
        let woken = Arc::clone(&self.woken);
        let mut first_at: Option<Instant> = None;
        let mut last_at = Instant::now();
        loop {
            let flush_at = first_at.map(|f| (f + self.config.max_delay).min(last_at + self.config.debounce));
            let release_at = self.releases.iter().map(|(t, _)| *t).min();
            let wake = [flush_at, release_at].into_iter().flatten().min();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = events.message() => match message {
                    Ok(Some(event)) => {
                        self.queue(event, &mut pending);
                        let now = Instant::now();
                        first_at.get_or_insert(now);
                        last_at = now;
                    }
                    Ok(None) | Err(_) => {
                        let why = match message {
                            Err(e) => e.message().to_owned(),
                            _ => "the event stream ended".to_owned(),
                        };
                        self.lost().await;
                        return Err(format!("lost GoBGP's API at {} ({why})", self.config.api));
                    }
                },
                () = sleep => {
                    let now = Instant::now();
                    let mut release_held = false;
                    let (due, later): (Vec<_>, Vec<_>) = self.releases.drain(..).partition(|(t, _)| *t <= now);
                    self.releases = later;
                    for (_, r) in due {
                        match r {
                            Release::Held => {
                                release_held = true;
                                let held = self.origins.held_count_beside(self.table.stale_routes());
                                let dropped = self.table.drop_stale(None);
                                let text = stale_removed_text(None, held, dropped.paths, self.config.stale_time);
                                if held + dropped.paths > 0 {
                                    log::warn!("{text}");
                                } else {
                                    log::info!("{text}");
                                }
                            }
                            Release::Neighbor(n) => {
                                let dropped = self.table.drop_stale(Some(&n));
                                let text =
                                    stale_removed_text(Some(&n), dropped.routes, dropped.paths, self.config.stale_time);
                                if dropped.routes + dropped.paths > 0 {
                                    log::warn!("{text}");
                                } else {
                                    log::info!("{text}");
                                }
                            }
                        }
                    }
                    // A batch is due, or a release: either way the table changed.
                    let batch = std::mem::take(&mut pending);
                    first_at = None;
                    self.absorb(batch, &mut client).await;
                    self.flush(release_held).await;
                }
                // A segment list died or came back: applied at once, not
                // debounced (the failover budget is the detection time).
                () = woken.notified() => self.flush(false).await,
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Every best path of the four families, read with ListPath.
    async fn list_all(&self, client: &mut Client) -> Result<Vec<PathUpdate>, String> {
        use api::family::{Afi, Safi};
        let mut out = Vec::new();
        for (afi, safi) in
            [(Afi::Ip, Safi::SrPolicy), (Afi::Ip6, Safi::SrPolicy), (Afi::Ip, Safi::Unicast), (Afi::Ip6, Safi::Unicast)]
        {
            let request = api::ListPathRequest {
                table_type: api::TableType::Global as i32,
                family: Some(api::Family { afi: afi as i32, safi: safi as i32 }),
                ..Default::default()
            };
            let mut stream = client
                .list_path(request)
                .await
                .map_err(|e| format!("ListPath {afi:?}/{safi:?} refused: {}", e.message()))?
                .into_inner();
            while let Some(reply) = stream.message().await.map_err(|e| format!("ListPath: {}", e.message()))? {
                for path in reply.destination.iter().flat_map(|d| &d.paths).filter(|p| p.best) {
                    match read_path(path) {
                        Ok(Some(u)) => out.push(u),
                        Ok(None) => {}
                        Err(e) => {
                            add(&self.counters.decode_errors, 1);
                            log::warn!("BGP: {e}");
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Queues one event.
    fn queue(&mut self, event: api::WatchEventResponse, pending: &mut Vec<Pending>) {
        use api::watch_event_response::Event;
        match event.event {
            Some(Event::Table(t)) => {
                add(&self.counters.paths_received, t.paths.len() as u64);
                let mut updates = Vec::with_capacity(t.paths.len());
                for path in &t.paths {
                    match read_path(path) {
                        Ok(Some(u)) => {
                            if let Nlri::SrPolicy { distinguisher, key } = u.nlri {
                                if self.recent.len() == RECENT {
                                    self.recent.pop_front();
                                }
                                let what = if u.learned.is_some() { "announced" } else { "withdrawn" };
                                self.recent.push_back(format!(
                                    "SR policy {key} distinguisher {distinguisher} {what} by {}",
                                    sender(&u.neighbor)
                                ));
                            }
                            updates.push(u);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            add(&self.counters.decode_errors, 1);
                            log::warn!("BGP: {e}");
                        }
                    }
                }
                pending.push(Pending::Paths(updates));
            }
            Some(Event::Peer(p)) => pending.extend(peer_change(p)),
            None => {}
        }
    }

    /// Applies a batch of events to the table.
    async fn absorb(&mut self, batch: Vec<Pending>, client: &mut Client) {
        let now = Instant::now();
        let mut withdrawals = false;
        for p in &batch {
            match p {
                Pending::Peer { neighbor, established } => {
                    add(&self.counters.peer_events, 1);
                    self.peer_state(neighbor, *established, now);
                }
                Pending::Paths(u) => withdrawals |= u.iter().any(|u| u.learned.is_none()),
            }
        }
        // GoBGP withdraws a peer's paths before it reports the peer down:
        // ask it which sessions are up now (under `withdraw` too, so that
        // the loss is logged with what the peer taught before it goes).
        let mut down = HashSet::new();
        if withdrawals {
            if let Ok(reply) = client.list_peer(api::ListPeerRequest::default()).await {
                let mut stream = reply.into_inner();
                while let Ok(Some(r)) = stream.message().await {
                    if let Some(peer) = r.peer {
                        let up = established(&peer);
                        let Some(n) = neighbor_of(&peer) else { continue };
                        if !up && self.keep {
                            down.insert(n.clone());
                        }
                        self.peer_state(&n, up, now);
                    }
                }
            }
        }
        {
            let mut peers = self.counters.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            peers.clear();
            peers.extend(self.peers.iter().map(|(n, up)| (n.clone(), *up)));
        }
        for p in batch {
            if let Pending::Paths(updates) = p {
                for u in updates {
                    self.table.update(u, &down, &self.counters);
                }
            }
        }
    }

    /// A session's state as GoBGP reports it (a peer event or ListPeer).
    /// GoBGP reports every FSM state a session that is down passes through
    /// (idle, active, connect, ...), and ListPeer says it again: only a
    /// change between established and not is acted on and logged, so one
    /// loss is one log line.
    fn peer_state(&mut self, neighbor: &str, up: bool, now: Instant) {
        let Some(change) = session_change(&mut self.peers, neighbor, up) else { return };
        lock(&self.counters.peers_since).insert(neighbor.to_owned(), std::time::SystemTime::now());
        if change == SessionChange::Established {
            self.established_at.entry(neighbor.to_owned()).or_insert(now);
            log::info!("BGP: session with {neighbor} established");
            if self.keep {
                let release = Release::Neighbor(neighbor.to_owned());
                self.releases.retain(|(_, r)| *r != release);
                self.releases.push((now + self.config.stale_time, release));
                if std::mem::take(&mut self.release_on_established) {
                    self.releases.push((now + self.config.stale_time, Release::Held));
                }
            }
        } else {
            self.established_at.remove(neighbor);
            if change == SessionChange::Lost {
                let taught = self.table.taught_by(neighbor);
                log::warn!("{}", session_lost_text(neighbor, taught, self.keep, self.config.stale_time));
            } else {
                // Seen for the first time, not established: nothing was lost.
                log::info!("BGP: session with {neighbor} not established");
            }
        }
    }

    /// Computes BGP's table and applies the merge (on the blocking pool).
    async fn flush(&mut self, release_held: bool) {
        let started = Instant::now();
        // Read at every computation: the engine may have started since the last.
        let liveness = lock(&self.counters.sbfd).engine.clone();
        let resteered = match &liveness {
            Some(engine) => {
                let resteered = self.table.steer_live(&|endpoint, labels| !engine.usable(endpoint, labels));
                let candidates = || self.table.candidate_paths();
                engine.set_lists(lists_to_probe(candidates()));
                lock(&self.counters.sbfd).lists = policy_lists(candidates());
                resteered
            }
            None => self.table.steer_live(&|_, _| false),
        };
        // With the steering standing, only policies changed: their objects
        // are written without handing over (or diffing) the routes.
        let policies_only = !resteered && !release_held && self.applied_once;
        // Otherwise, where the origins hold the last table, only the routes
        // the steering moved are handed over (no copy of the table).
        let moved = self.table.take_moved().filter(|_| self.applied_once && !release_held);
        let table = self.table.table(&self.counters, !policies_only && moved.is_none());
        set(&self.counters.last_compute_micros, started.elapsed().as_micros() as u64);
        let origins = Arc::clone(&self.origins);
        let counters = Arc::clone(&self.counters);
        // Usually empty: a copy only while routes are held.
        let stale = self.table.stale_routes().clone();
        let result = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let r = match moved {
                _ if policies_only => origins.set_bgp_policies(table.policies, table.invalid),
                Some(moved) => origins.update_bgp(moved, table.policies, table.invalid),
                None => origins.set_bgp(table, release_held),
            };
            set(&counters.last_apply_micros, started.elapsed().as_micros() as u64);
            set(&counters.routes_held, origins.held_count_beside(&stale) as u64);
            set(&counters.routes_installed, origins.installed_count() as u64);
            r
        })
        .await;
        match result {
            Ok(Ok(report)) => {
                self.applied_once = true;
                add(&self.counters.applies, 1);
                let changed = report.added.len() + report.replaced.len() + report.removed.len();
                if changed > 0 {
                    *lock(&self.counters.last_change) = Some((std::time::SystemTime::now(), changed as u64));
                }
                log::log!(report_level(changed), "BGP: {report}");
            }
            Ok(Err(e)) => {
                // The origins kept their last table: the next batch hands over everything.
                self.applied_once = false;
                add(&self.counters.apply_errors, 1);
                log::error!("BGP: the dataplane refused BGP's routes: {e}");
            }
            Err(e) => {
                self.applied_once = false;
                log::error!("BGP: apply worker: {e}");
            }
        }
    }

    /// GoBGP's API went away.
    async fn lost(&mut self) {
        set(&self.counters.api_connected, 0);
        add(&self.counters.api_disconnects, 1);
        // GoBGP 3.10 can die of what a peer sends (a zero-length binding SID,
        // see docs/bgp.md): say who was talking, as far as is known here.
        let now = Instant::now();
        let mut sessions: Vec<String> = self
            .established_at
            .iter()
            .map(|(n, t)| format!("{n} (seen established {:.1} s before)", now.duration_since(*t).as_secs_f64()))
            .collect();
        sessions.sort();
        log::warn!(
            "BGP: GoBGP at {} went away; sessions established then: [{}]; the last SR Policy paths it reported: [{}]",
            self.config.api,
            sessions.join(", "),
            self.recent.iter().cloned().collect::<Vec<_>>().join("; ")
        );
        self.established_at.clear();
        // Peer states are learned anew from the next connection's events.
        self.peers.clear();
        self.counters.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        let routes = self.table.routes.len();
        if self.keep {
            // Every route it taught is held now (the gauge and `status` said 0
            // until it came back).
            let kept: std::collections::HashSet<ipnetwork::IpNetwork> = self.table.routes.keys().copied().collect();
            set(&self.counters.routes_held, self.origins.held_count_beside(&kept) as u64);
            log::warn!(
                "BGP: GoBGP went away; keeping the {routes} routes it taught (session-down policy keep) until {} s \
                 after a session is established again once it is back; those not taught again by then are removed",
                secs(self.config.stale_time)
            );
        } else {
            log::warn!(
                "BGP: GoBGP went away; withdrawing the {routes} routes it taught (session-down policy withdraw)"
            );
            self.table = Table::default();
            self.applied_once = false;
            self.flush(true).await;
        }
    }
}

/// A session's state that changed, as the learner acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionChange {
    /// Established (again, or seen so for the first time).
    Established,
    /// It was established and is not any more: a loss.
    Lost,
    /// Seen for the first time, not established: nothing was lost.
    NotEstablished,
}

/// Records `neighbor`'s state in `peers`; the change, `None` when it is the
/// same as before (only established or not counts, not GoBGP's FSM state).
fn session_change(peers: &mut HashMap<String, bool>, neighbor: &str, up: bool) -> Option<SessionChange> {
    match (peers.insert(neighbor.to_owned(), up), up) {
        (Some(was), _) if was == up => None,
        (_, true) => Some(SessionChange::Established),
        (Some(true), false) => Some(SessionChange::Lost),
        (_, false) => Some(SessionChange::NotEstablished),
    }
}

/// The level of an apply's report: a batch that changed nothing (a
/// re-announcement, a withdrawal kept) is routine, not worth a line at info.
fn report_level(changed: usize) -> log::Level {
    if changed > 0 {
        log::Level::Info
    } else {
        log::Level::Debug
    }
}

/// A duration in seconds as an operator gave it (`5`, `0.5`).
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// The one WARN of a session loss: what it taught, and what becomes of it.
fn session_lost_text(neighbor: &str, taught: Taught, keep: bool, stale_time: Duration) -> String {
    let what = format!("the {} routes and {} SR policy candidate paths it taught", taught.routes, taught.paths);
    if keep {
        format!(
            "BGP: session with {neighbor} down: {what} are kept (session-down policy keep) until {} s after it is \
             established again; those it does not teach again by then are removed",
            secs(stale_time)
        )
    } else {
        format!("BGP: session with {neighbor} down: {what} are withdrawn (session-down policy withdraw)")
    }
}

/// What a release of stale paths removed: of `neighbor`'s session, or
/// (`None`) held over GoBGP's own absence.
fn stale_removed_text(neighbor: Option<&str>, routes: usize, paths: usize, stale_time: Duration) -> String {
    let s = secs(stale_time);
    match neighbor {
        Some(n) if routes + paths == 0 => {
            format!("BGP: session {n} taught again within {s} s everything kept while it was down")
        }
        Some(n) => format!(
            "BGP: {routes} routes and {paths} SR policy candidate paths session {n} did not teach again within {s} s \
             were removed"
        ),
        None if routes + paths == 0 => {
            format!("BGP: GoBGP taught again within {s} s of a session coming up everything held while it was away")
        }
        None => format!(
            "BGP: {routes} routes and {paths} SR policy candidate paths held while GoBGP was away, not taught again \
             within {s} s of a session coming up, were removed"
        ),
    }
}

/// A peer's address as GoBGP names it in paths' `neighbor_ip`; `None` when
/// it has none that is an IP address (GoBGP prints a missing one `<nil>`).
fn neighbor_of(peer: &api::Peer) -> Option<String> {
    let from_state = peer.state.as_ref().map(|s| s.neighbor_address.as_str()).unwrap_or_default();
    let addr = if from_state.is_empty() {
        peer.conf.as_ref().map(|c| c.neighbor_address.as_str()).unwrap_or_default()
    } else {
        from_state
    };
    // Normalised (GoBGP may print an IPv6 address in another form).
    addr.parse::<IpAddr>().ok().map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_initial_list_marker_is_not_a_peer() {
        use api::watch_event_response::{peer_event::Type, PeerEvent};
        let peer = |addr: &str, state: api::peer_state::SessionState| api::Peer {
            state: Some(api::PeerState {
                neighbor_address: addr.into(),
                session_state: state as i32,
                ..Default::default()
            }),
            conf: Some(api::PeerConf { neighbor_address: addr.into() }),
        };
        let event = |t: Type, p: api::Peer| PeerEvent { r#type: t as i32, peer: Some(p) };
        // What GoBGP 3.10 sends after the initial list: an empty peer, idle, its address `<nil>`.
        let marker = event(Type::EndOfInit, peer("<nil>", api::peer_state::SessionState::Unknown));
        assert!(peer_change(marker).is_none());
        assert!(peer_change(event(Type::State, peer("<nil>", api::peer_state::SessionState::Idle))).is_none());
        assert!(peer_change(event(Type::State, peer("", api::peer_state::SessionState::Idle))).is_none());
        let Some(Pending::Peer { neighbor, established }) =
            peer_change(event(Type::Init, peer("10.201.0.1", api::peer_state::SessionState::Established)))
        else {
            panic!("a real peer")
        };
        assert_eq!((neighbor.as_str(), established), ("10.201.0.1", true));
        let Some(Pending::Peer { neighbor, .. }) =
            peer_change(event(Type::State, peer("2001:db8:0:0::1", api::peer_state::SessionState::Active)))
        else {
            panic!("a real peer")
        };
        assert_eq!(neighbor, "2001:db8::1");
    }

    /// What the tester saw: "session ... down" 3-4 times for one loss, as
    /// GoBGP reports each FSM state of a session that is down, and ListPeer
    /// says it once more.
    #[test]
    fn one_loss_is_one_change_however_many_states_gobgp_reports() {
        let mut peers = HashMap::new();
        let n = "10.201.0.1";
        // Established, then idle, active, connect, active, and ListPeer's word.
        let states = [true, false, false, false, false, false, true, true, false, false];
        let changes: Vec<SessionChange> = states.iter().filter_map(|up| session_change(&mut peers, n, *up)).collect();
        use SessionChange::*;
        assert_eq!(changes, [Established, Lost, Established, Lost]);
        // A peer first seen down lost nothing.
        assert_eq!(session_change(&mut peers, "10.201.0.5", false), Some(NotEstablished));
    }

    #[test]
    fn a_session_loss_says_what_is_kept_and_until_when() {
        let taught = Taught { routes: 3, paths: 2 };
        let keep = session_lost_text("10.201.0.1", taught, true, Duration::from_secs(5));
        assert_eq!(
            keep,
            "BGP: session with 10.201.0.1 down: the 3 routes and 2 SR policy candidate paths it taught are kept \
             (session-down policy keep) until 5 s after it is established again; those it does not teach again by \
             then are removed"
        );
        let withdraw = session_lost_text("10.201.0.1", taught, false, Duration::from_secs(5));
        assert!(
            withdraw.contains("the 3 routes and 2 SR policy candidate paths it taught are withdrawn"),
            "{withdraw}"
        );
        let gone = stale_removed_text(Some("10.201.0.1"), 1, 0, Duration::from_millis(2500));
        assert_eq!(
            gone,
            "BGP: 1 routes and 0 SR policy candidate paths session 10.201.0.1 did not teach again within 2.5 s were \
             removed"
        );
        let held = stale_removed_text(None, 4, 1, Duration::from_secs(5));
        assert!(held.starts_with("BGP: 4 routes and 1 SR policy candidate paths held while GoBGP was away"), "{held}");
    }

    /// GoBGP down: the retry every second warned every second (3,600 lines
    /// an hour). First failure at warn, then once a minute, debug between;
    /// its end is said once, and the next failure starts afresh.
    #[test]
    fn an_outage_warns_once_then_once_a_minute_and_says_when_it_ended() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut o = Outage::default();
        let logged: Vec<(u64, Failure)> = (0..130).map(|s| (s, o.failed(at(s)))).collect();
        let warned: Vec<&(u64, Failure)> = logged.iter().filter(|(_, f)| *f != Failure::Quiet).collect();
        assert_eq!(
            warned,
            [
                &(0, Failure::First),
                &(60, Failure::Again { attempts: 61, over: Duration::from_secs(60) }),
                &(120, Failure::Again { attempts: 121, over: Duration::from_secs(120) }),
            ]
        );
        assert_eq!(o.ended(at(131)), Some((Duration::from_secs(131), 130)));
        assert_eq!(o.ended(at(132)), None, "said once");
        assert_eq!(o.failed(at(140)), Failure::First, "a new outage");
    }

    /// "BGP: 0 added, 0 replaced, 0 removed, 0 unchanged" was an INFO line
    /// for every batch that changed nothing.
    #[test]
    fn a_batch_that_changed_nothing_is_reported_at_debug() {
        assert_eq!(report_level(0), log::Level::Debug);
        assert_eq!(report_level(1), log::Level::Info);
    }

    /// A --bgp-router-id other than GoBGP's was accepted silently.
    #[test]
    fn a_router_id_flag_other_than_gobgps_is_named_with_both() {
        let (mine, theirs): (Ipv4Addr, Ipv4Addr) = ("10.0.0.9".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let text = router_id_mismatch(mine, Some(theirs)).expect("a warning");
        assert!(
            text.starts_with("BGP: --bgp-router-id ([bgp] router_id) 10.0.0.9 is not GoBGP's router ID 10.0.0.2")
                && text.contains("paths addressed to 10.0.0.2 are ignored"),
            "{text}"
        );
        assert_eq!(router_id_mismatch(mine, Some(mine)), None);
        assert_eq!(router_id_mismatch(mine, None), None, "GoBGP has none, or did not say");
    }

    #[test]
    fn the_router_id_comes_from_getbgp() {
        let reply =
            |id: &str| api::GetBgpResponse { global: Some(api::Global { router_id: id.into(), ..Default::default() }) };
        assert_eq!(router_id_of(&reply("10.0.0.2")), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(router_id_of(&reply("0.0.0.0")), None);
        assert_eq!(router_id_of(&reply("")), None);
        assert_eq!(router_id_of(&api::GetBgpResponse { global: None }), None);
    }
}
