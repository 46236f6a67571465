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
//! to [`crate::Encapsulator::apply_valid_owned`] (atomic, no moment
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use tonic::transport::{Channel, Endpoint};

use super::counters::{add, set, BgpCounters};
use super::origins::{BgpTable, Origins, PolicyInfo};
use super::proto as api;
use super::select::{select, Candidate, PolicyKey, Selected};
use super::steer::{policy_for, steer, ColoredRoute};
use super::wire::{read_path, Learned as Said, Nlri, PathUpdate};
use super::{BgpConfig, SessionDown};

type Client = api::gobgp_api_client::GobgpApiClient<Channel>;

/// A path as kept: what it says, who taught it, whether its peer went down.
#[derive(Debug)]
struct Entry<T> {
    value: T,
    neighbor: String,
    stale: bool,
}

/// Every best path of interest, by NLRI, and the last steering computed
/// from them (kept, so that a batch recomputes only the routes it touches).
#[derive(Debug, Default)]
struct Table {
    candidates: HashMap<(u32, PolicyKey), Entry<Candidate>>,
    routes: HashMap<IpNetwork, Entry<ColoredRoute>>,
    /// Routes by the (color, next hop) pairs they could be steered by.
    by_key: HashMap<PolicyKey, HashSet<IpNetwork>>,
    /// Routes added, changed or removed since the last computation.
    dirty: HashSet<IpNetwork>,
    /// The last computation: each steered route's policy, and the selection.
    steered: BTreeMap<IpNetwork, PolicyKey>,
    selected: BTreeMap<PolicyKey, Selected>,
    /// False until the first computation (and after a wholesale replacement):
    /// then everything is recomputed.
    incremental: bool,
}

/// The (color, next hop) pairs a route could be steered by.
fn keys_of(route: &ColoredRoute) -> impl Iterator<Item = PolicyKey> + '_ {
    route.colors.iter().map(|&color| PolicyKey { color, endpoint: route.next_hop })
}

impl Table {
    /// Applies one update. `down`: neighbors whose withdrawals are kept.
    fn update(&mut self, u: PathUpdate, down: &HashSet<String>, counters: &BgpCounters) {
        let neighbor = u.neighbor;
        match (u.nlri, u.learned) {
            (Nlri::SrPolicy { distinguisher, key }, Some(Said::Candidate(c))) => {
                add(&counters.updates, 1);
                if c.ignored_segments > 0 {
                    add(&counters.ignored_segments, u64::from(c.ignored_segments));
                    log::warn!(
                        "SR policy {key} distinguisher {distinguisher}: {} segment(s) of types other than SR-MPLS \
                         labels; the segment lists holding them are not used",
                        c.ignored_segments
                    );
                }
                self.candidates.insert((distinguisher, key), Entry { value: c, neighbor, stale: false });
            }
            (Nlri::Unicast(prefix), Some(Said::Route { next_hop, colors })) => {
                add(&counters.updates, 1);
                let entry = Entry { value: ColoredRoute { next_hop, colors }, neighbor, stale: false };
                self.put_route(prefix, entry);
            }
            (Nlri::SrPolicy { distinguisher, key }, None) => {
                add(&counters.withdrawals, 1);
                withdraw(&mut self.candidates, &(distinguisher, key), down, counters);
            }
            (Nlri::Unicast(prefix), None) => {
                add(&counters.withdrawals, 1);
                if let Some(e) = withdraw(&mut self.routes, &prefix, down, counters) {
                    self.unindex(prefix, &e.value);
                }
            }
            // An NLRI that says something of the other kind: ignore.
            _ => {}
        }
    }

    /// Removes the stale paths of `neighbor` (every stale path for `None`).
    fn drop_stale(&mut self, neighbor: Option<&str>) {
        fn gone<T>(e: &Entry<T>, neighbor: Option<&str>) -> bool {
            e.stale && neighbor.is_none_or(|n| e.neighbor == n)
        }
        self.candidates.retain(|_, e| !gone(e, neighbor));
        let removed: Vec<IpNetwork> = self.routes.iter().filter(|(_, e)| gone(e, neighbor)).map(|(p, _)| *p).collect();
        for prefix in removed {
            if let Some(e) = self.routes.remove(&prefix) {
                self.unindex(prefix, &e.value);
            }
        }
    }

    /// Adds or replaces a route, keeping the index.
    fn put_route(&mut self, prefix: IpNetwork, entry: Entry<ColoredRoute>) {
        for key in keys_of(&entry.value) {
            self.by_key.entry(key).or_default().insert(prefix);
        }
        if let Some(old) = self.routes.insert(prefix, entry) {
            let kept: Vec<PolicyKey> =
                self.routes.get(&prefix).map(|e| keys_of(&e.value).collect()).unwrap_or_default();
            for key in keys_of(&old.value).filter(|k| !kept.contains(k)) {
                self.unindex_key(prefix, key);
            }
        }
        self.dirty.insert(prefix);
    }

    fn unindex(&mut self, prefix: IpNetwork, route: &ColoredRoute) {
        for key in keys_of(route) {
            self.unindex_key(prefix, key);
        }
        self.dirty.insert(prefix);
    }

    fn unindex_key(&mut self, prefix: IpNetwork, key: PolicyKey) {
        if let Some(set) = self.by_key.get_mut(&key) {
            set.remove(&prefix);
            if set.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Marks every path stale (GoBGP went away under `keep`).
    fn mark_all_stale(&mut self) {
        self.candidates.values_mut().for_each(|e| e.stale = true);
        self.routes.values_mut().for_each(|e| e.stale = true);
    }

    /// The steered routes and active policies, and the gauges. Only the
    /// routes changed since the last computation, and those of a (color,
    /// endpoint) whose policy became valid or invalid, are steered again.
    fn compute(&mut self, counters: &BgpCounters) -> BgpTable {
        let selected = select(self.candidates.values().map(|e| &e.value));
        if self.incremental {
            let valid = |m: &BTreeMap<PolicyKey, Selected>, k: &PolicyKey| m.get(k).is_some_and(|s| s.policy.is_some());
            let flipped: Vec<PolicyKey> = self
                .selected
                .keys()
                .chain(selected.keys())
                .filter(|k| valid(&self.selected, k) != valid(&selected, k))
                .copied()
                .collect();
            let mut again = std::mem::take(&mut self.dirty);
            for key in flipped {
                if let Some(set) = self.by_key.get(&key) {
                    again.extend(set.iter().copied());
                }
            }
            for prefix in again {
                match self.routes.get(&prefix).and_then(|e| policy_for(&e.value, &selected)) {
                    Some(key) => self.steered.insert(prefix, key),
                    None => self.steered.remove(&prefix),
                };
            }
        } else {
            self.steered = steer(self.routes.iter().map(|(p, e)| (p, &e.value)), &selected).0;
            self.by_key.clear();
            for (prefix, e) in &self.routes {
                for key in keys_of(&e.value) {
                    self.by_key.entry(key).or_default().insert(*prefix);
                }
            }
            self.dirty.clear();
            self.incremental = true;
        }
        let routes = self.steered.clone();
        let unsteered = self.routes.len() - routes.len();
        let policies = selected
            .iter()
            .filter_map(|(k, s)| {
                let info = PolicyInfo {
                    color: k.color,
                    endpoint: k.endpoint,
                    preference: s.preference,
                    distinguisher: s.distinguisher.unwrap_or_default(),
                    binding_sid: s.binding_sid,
                };
                Some((*k, (s.policy.clone()?, info)))
            })
            .collect::<BTreeMap<_, _>>();
        set(&counters.policies_active, policies.len() as u64);
        set(&counters.policies_invalid, (selected.len() - policies.len()) as u64);
        set(&counters.candidate_paths, self.candidates.len() as u64);
        set(&counters.routes_steered, routes.len() as u64);
        set(&counters.routes_unsteered, unsteered as u64);
        self.selected = selected;
        BgpTable { routes, policies }
    }
}

/// Withdraws `key`: removed (and returned), or kept stale when its peer is `down`.
fn withdraw<K: std::hash::Hash + Eq, T>(
    map: &mut HashMap<K, Entry<T>>,
    key: &K,
    down: &HashSet<String>,
    counters: &BgpCounters,
) -> Option<Entry<T>> {
    match map.get_mut(key) {
        Some(e) if down.contains(&e.neighbor) => {
            e.stale = true;
            add(&counters.withdrawals_kept, 1);
            None
        }
        Some(_) => map.remove(key),
        None => None,
    }
}

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
    let mut learner = Learner {
        keep: config.session_down == SessionDown::Keep,
        config,
        origins,
        counters,
        table: Table::default(),
        releases: Vec::new(),
        peers: HashMap::new(),
        release_on_established: false,
    };
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match learner.session(first, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                if !first || !e.is_empty() {
                    log::warn!("BGP: {e}; retrying in 1 s");
                }
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

struct Learner {
    config: BgpConfig,
    keep: bool,
    origins: Arc<Origins>,
    counters: Arc<BgpCounters>,
    table: Table,
    releases: Vec<(Instant, Release)>,
    /// Session state per neighbor.
    peers: HashMap<String, bool>,
    /// Release what is held once a session is established (after a (re)connection under `keep`).
    release_on_established: bool,
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
        let snapshot = self.list_all(&mut client).await?;
        set(&self.counters.api_connected, 1);
        add(&self.counters.resyncs, 1);
        log::info!("BGP: connected to GoBGP at {}, {} best paths", self.config.api, snapshot.len());

        // The snapshot replaces what was known; under `keep` the routes
        // installed now stay until BGP has had the stale time to teach them.
        if self.keep && !first {
            self.table.mark_all_stale();
            self.origins.hold_installed();
        }
        let mut fresh = Table::default();
        let none = HashSet::new();
        for u in snapshot {
            fresh.update(u, &none, &self.counters);
        }
        if self.keep {
            // Stale paths the snapshot lacks stay until the release.
            for (k, e) in self.table.candidates.drain() {
                fresh.candidates.entry(k).or_insert(e);
            }
            for (k, e) in self.table.routes.drain() {
                fresh.routes.entry(k).or_insert(e);
            }
        }
        self.table = fresh;
        // Under `keep`, what is held (or stale) is released the stale time
        // after a session is established again, not before: GoBGP back
        // without its peers must not empty the table.
        self.releases.retain(|(_, r)| *r != Release::Held);
        self.release_on_established = self.keep && (self.origins.holding() || !first);
        self.flush(!self.keep).await;

        let mut pending: Vec<Pending> = Vec::new();
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
                                self.table.drop_stale(None);
                            }
                            Release::Neighbor(n) => self.table.drop_stale(Some(&n)),
                        }
                    }
                    // A batch is due, or a release: either way the table changed.
                    let batch = std::mem::take(&mut pending);
                    first_at = None;
                    self.absorb(batch, &mut client).await;
                    self.flush(release_held).await;
                }
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
    fn queue(&self, event: api::WatchEventResponse, pending: &mut Vec<Pending>) {
        use api::watch_event_response::Event;
        match event.event {
            Some(Event::Table(t)) => {
                add(&self.counters.paths_received, t.paths.len() as u64);
                let mut updates = Vec::with_capacity(t.paths.len());
                for path in &t.paths {
                    match read_path(path) {
                        Ok(Some(u)) => updates.push(u),
                        Ok(None) => {}
                        Err(e) => {
                            add(&self.counters.decode_errors, 1);
                            log::warn!("BGP: {e}");
                        }
                    }
                }
                pending.push(Pending::Paths(updates));
            }
            Some(Event::Peer(p)) => {
                let Some(peer) = p.peer else { return };
                let neighbor = neighbor_of(&peer);
                if neighbor.is_empty() {
                    return;
                }
                let established = peer
                    .state
                    .as_ref()
                    .is_some_and(|s| s.session_state == api::peer_state::SessionState::Established as i32);
                pending.push(Pending::Peer { neighbor, established });
            }
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
                    let was = self.peers.insert(neighbor.clone(), *established);
                    log::info!("BGP: session with {neighbor} {}", if *established { "established" } else { "down" });
                    if *established && was != Some(true) && self.keep {
                        self.releases.retain(|(_, r)| *r != Release::Neighbor(neighbor.clone()));
                        self.releases.push((now + self.config.stale_time, Release::Neighbor(neighbor.clone())));
                        if std::mem::take(&mut self.release_on_established) {
                            self.releases.push((now + self.config.stale_time, Release::Held));
                        }
                    }
                }
                Pending::Paths(u) => withdrawals |= u.iter().any(|u| u.learned.is_none()),
            }
        }
        // GoBGP withdraws a peer's paths before it reports the peer down:
        // ask it which sessions are up now.
        let mut down = HashSet::new();
        if self.keep && withdrawals {
            if let Ok(reply) = client.list_peer(api::ListPeerRequest::default()).await {
                let mut stream = reply.into_inner();
                while let Ok(Some(r)) = stream.message().await {
                    if let Some(peer) = r.peer {
                        let up = peer
                            .state
                            .as_ref()
                            .is_some_and(|s| s.session_state == api::peer_state::SessionState::Established as i32);
                        let n = neighbor_of(&peer);
                        if !up {
                            down.insert(n.clone());
                        }
                        self.peers.insert(n, up);
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

    /// Computes BGP's table and applies the merge (on the blocking pool).
    async fn flush(&mut self, release_held: bool) {
        let started = Instant::now();
        let table = self.table.compute(&self.counters);
        set(&self.counters.last_compute_micros, started.elapsed().as_micros() as u64);
        let origins = Arc::clone(&self.origins);
        let counters = Arc::clone(&self.counters);
        let result = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let r = origins.set_bgp(table, release_held);
            set(&counters.last_apply_micros, started.elapsed().as_micros() as u64);
            set(&counters.routes_held, origins.held_count() as u64);
            set(&counters.routes_installed, origins.installed_count() as u64);
            r
        })
        .await;
        match result {
            Ok(Ok(report)) => {
                add(&self.counters.applies, 1);
                log::info!("BGP: {report}");
            }
            Ok(Err(e)) => {
                add(&self.counters.apply_errors, 1);
                log::error!("BGP: the dataplane refused BGP's routes: {e}");
            }
            Err(e) => log::error!("BGP: apply worker: {e}"),
        }
    }

    /// GoBGP's API went away.
    async fn lost(&mut self) {
        set(&self.counters.api_connected, 0);
        add(&self.counters.api_disconnects, 1);
        // Peer states are learned anew from the next connection's events.
        self.peers.clear();
        self.counters.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        if self.keep {
            log::warn!("BGP: GoBGP went away; keeping the routes it taught (session-down policy keep)");
        } else {
            log::warn!("BGP: GoBGP went away; withdrawing the routes it taught (session-down policy withdraw)");
            self.table = Table::default();
            self.flush(true).await;
        }
    }
}

/// A peer's address as GoBGP names it in paths' `neighbor_ip`.
fn neighbor_of(peer: &api::Peer) -> String {
    let from_state = peer.state.as_ref().map(|s| s.neighbor_address.clone()).unwrap_or_default();
    let addr = if from_state.is_empty() {
        peer.conf.as_ref().map(|c| c.neighbor_address.clone()).unwrap_or_default()
    } else {
        from_state
    };
    // Normalise the text (GoBGP may print an IPv6 address in another form).
    addr.parse::<IpAddr>().map(|a| a.to_string()).unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::select::CandidateList;

    fn key() -> PolicyKey {
        PolicyKey { color: 100, endpoint: "192.0.2.1".parse().unwrap() }
    }

    fn announce(nlri: Nlri, neighbor: &str) -> PathUpdate {
        let learned = match nlri {
            Nlri::SrPolicy { distinguisher, key } => Said::Candidate(Candidate {
                distinguisher,
                key,
                preference: 100,
                binding_sid: None,
                lists: vec![CandidateList { weight: 1, labels: vec![16001], unsupported: 0 }],
                ignored_segments: 0,
            }),
            Nlri::Unicast(_) => Said::Route { next_hop: key().endpoint, colors: vec![100] },
        };
        PathUpdate { nlri, neighbor: neighbor.into(), learned: Some(learned) }
    }

    #[test]
    fn incremental_steering_equals_steering_everything() {
        // A small deterministic generator (no dependency): xorshift.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let none = HashSet::new();
        let endpoint = |i: u64| -> IpAddr { IpAddr::from([192, 0, 2, 1 + (i % 2) as u8]) };
        for step in 0..2000 {
            match next(6) {
                0 | 1 => {
                    let prefix: IpNetwork = format!("10.{}.0.0/16", next(60)).parse().unwrap();
                    let colors = (0..next(3)).map(|_| 1 + next(5) as u32).collect();
                    let learned = Some(Said::Route { next_hop: endpoint(next(2)), colors });
                    t.update(
                        PathUpdate { nlri: Nlri::Unicast(prefix), neighbor: "n".into(), learned },
                        &none,
                        &counters,
                    );
                }
                2 => {
                    let prefix: IpNetwork = format!("10.{}.0.0/16", next(60)).parse().unwrap();
                    t.update(
                        PathUpdate { nlri: Nlri::Unicast(prefix), neighbor: "n".into(), learned: None },
                        &none,
                        &counters,
                    );
                }
                3 => {
                    let key = PolicyKey { color: 1 + next(5) as u32, endpoint: endpoint(next(2)) };
                    let weight = next(2) as u32; // 0: invalid
                    let c = Candidate {
                        distinguisher: 1,
                        key,
                        preference: 100,
                        binding_sid: None,
                        lists: vec![CandidateList { weight, labels: vec![16001 + step], unsupported: 0 }],
                        ignored_segments: 0,
                    };
                    let nlri = Nlri::SrPolicy { distinguisher: 1, key };
                    t.update(
                        PathUpdate { nlri, neighbor: "n".into(), learned: Some(Said::Candidate(c)) },
                        &none,
                        &counters,
                    );
                }
                4 => {
                    let key = PolicyKey { color: 1 + next(5) as u32, endpoint: endpoint(next(2)) };
                    let nlri = Nlri::SrPolicy { distinguisher: 1, key };
                    t.update(PathUpdate { nlri, neighbor: "n".into(), learned: None }, &none, &counters);
                }
                _ => {
                    let got = t.compute(&counters).routes;
                    let selected = select(t.candidates.values().map(|e| &e.value));
                    let want = steer(t.routes.iter().map(|(p, e)| (p, &e.value)), &selected).0;
                    assert_eq!(got, want, "step {step}");
                }
            }
        }
    }

    #[test]
    fn withdrawals_of_a_down_peer_are_kept_stale_until_released() {
        let counters = BgpCounters::default();
        let mut t = Table::default();
        let policy = Nlri::SrPolicy { distinguisher: 1, key: key() };
        let (a, b) = (Nlri::Unicast("10.0.0.0/8".parse().unwrap()), Nlri::Unicast("10.1.0.0/16".parse().unwrap()));
        let none = HashSet::new();
        for n in [policy, a, b] {
            t.update(announce(n, "10.201.0.1"), &none, &counters);
        }
        assert_eq!(t.compute(&counters).routes.len(), 2);
        // The peer is down: its withdrawals are kept, stale.
        let down: HashSet<String> = ["10.201.0.1".to_owned()].into();
        for n in [policy, a, b] {
            t.update(PathUpdate { nlri: n, neighbor: "10.201.0.1".into(), learned: None }, &down, &counters);
        }
        assert_eq!(t.compute(&counters).routes.len(), 2);
        assert_eq!(counters.withdrawals_kept.load(std::sync::atomic::Ordering::Relaxed), 3);
        // Back: it teaches the policy and one route again; the other goes at the release.
        t.update(announce(policy, "10.201.0.1"), &none, &counters);
        t.update(announce(a, "10.201.0.1"), &none, &counters);
        t.drop_stale(Some("10.201.0.1"));
        let routes = t.compute(&counters).routes;
        assert_eq!(routes.keys().map(|p| p.to_string()).collect::<Vec<_>>(), ["10.0.0.0/8"]);
        // A withdrawal from a peer that is up is applied at once.
        t.update(PathUpdate { nlri: a, neighbor: "10.201.0.1".into(), learned: None }, &none, &counters);
        assert!(t.compute(&counters).routes.is_empty());
    }
}
