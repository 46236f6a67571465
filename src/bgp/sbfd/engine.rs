//! The S-BFD initiator: one thread that sends every segment list's probes
//! on time, reads the reflectors' answers, runs each list's [`Session`],
//! and reports when a list becomes usable or unusable.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::io::{PacketTx, UdpRx};
use super::packet::Control;
use super::probe::{self, Addressing};
use super::session::{Phase, Session, Timers};
use super::wheel::{Kind, Timer, Wheel};
use super::{SbfdConfig, SbfdError};
use crate::domain::label::{Label, LabelStack};

/// A probed segment list: toward which endpoint, along which labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    /// The policy's endpoint, where the reflector runs.
    pub endpoint: IpAddr,
    /// The list's labels, top first.
    pub stack: LabelStack,
}

impl Ord for ListKey {
    /// By endpoint, then labels.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let labels = |k: &ListKey| k.stack.labels().iter().map(|l| l.value()).collect::<Vec<u32>>();
        (self.endpoint, labels(self)).cmp(&(other.endpoint, labels(other)))
    }
}

impl PartialOrd for ListKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Packet counts since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Probes sent.
    pub sent: u64,
    /// Probes the interface refused (counted, not retried).
    pub send_errors: u64,
    /// Answers matched to a session.
    pub answers: u64,
    /// Datagrams that were not a valid answer to a running session.
    pub invalid: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    send_errors: AtomicU64,
    answers: AtomicU64,
    invalid: AtomicU64,
    /// The engine thread's CPU time in user space and in the kernel, microseconds.
    user_micros: AtomicU64,
    system_micros: AtomicU64,
}

/// Where a probed list stands, with its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListState {
    /// Its session's phase.
    pub phase: Phase,
    /// When it entered this phase (`starting`, `up`, `down`, `returning`).
    pub since: Instant,
    /// Times it went from usable to unusable since it was first probed.
    pub downs: u64,
    /// Times it went from unusable to usable again.
    pub ups: u64,
}

type Notify = Box<dyn Fn() + Send + Sync>;

struct Shared {
    wanted: Mutex<Option<Vec<ListKey>>>,
    phases: Mutex<HashMap<ListKey, ListState>>,
    stop: AtomicBool,
    counters: Counters,
    notify: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running initiator; stops its thread when dropped.
pub struct Engine {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    source_port: u16,
    timers: Timers,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("source_port", &self.source_port).finish_non_exhaustive()
    }
}

struct Probe {
    key: ListKey,
    session: Session,
    frame: Vec<u8>,
    /// The state the frame announces (rebuilt when it changes).
    announced: super::packet::State,
    reflector: u32,
    local: u32,
    /// When its first probe leaves.
    next_tx: Instant,
    /// Whether a check of its clock is on the wheel.
    check_pending: bool,
    /// What is published of it.
    state: ListState,
}

impl Engine {
    /// Starts the initiator on `config.interface` of the calling thread's
    /// network namespace (the thread it spawns stays there). `notify` is
    /// called, on the engine's thread, whenever a list becomes usable or
    /// unusable: it must be quick (wake someone up).
    ///
    /// # Errors
    /// [`SbfdError`]: the interface is unknown or has no MAC, the router's
    /// MAC cannot be learned, no UDP source port in 49152-65535 is free, a
    /// socket cannot be opened (CAP_NET_RAW).
    pub fn start(config: SbfdConfig, notify: impl Fn() + Send + Sync + 'static) -> Result<Engine, SbfdError> {
        let local = super::neighbour::interface(&config.interface)?;
        let router_mac = match config.router_mac {
            Some(m) => m,
            None => super::neighbour::router_mac(&config.interface)?,
        };
        let mut tx = PacketTx::open(local.ifindex)
            .map_err(|errno| SbfdError::Socket { what: "AF_PACKET socket on the interface", errno })?;
        if config.tx_ring {
            tx = tx.with_ring().map_err(|errno| SbfdError::Socket { what: "PACKET_TX_RING on the socket", errno })?;
        }
        let (socket, source_port) = super::io::bind_source_port().ok_or(SbfdError::NoSourcePort)?;
        let tick = (config.timers.interval / 10).clamp(Duration::from_micros(500), Duration::from_millis(5));
        let rx = UdpRx::new(socket, 4 << 20);
        let shared = Arc::new(Shared {
            wanted: Mutex::new(None),
            phases: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            notify: Box::new(notify),
        });
        let now = Instant::now();
        let mut worker = Worker {
            shared: Arc::clone(&shared),
            config: config.clone(),
            tx,
            rx,
            wheel: Wheel::new(tick, config.timers.detection().max(config.timers.interval) * 2, now),
            changed: Vec::new(),
            probes: Vec::new(),
            by_local: HashMap::default(),
            next_local: 1,
            host_mac: local.mac,
            router_mac,
            sources: local.addresses,
            source_port,
            seed: 0x9e37_79b9_7f4a_7c15 ^ u64::from(source_port),
        };
        let thread = std::thread::Builder::new()
            .name("sbfd".into())
            .spawn(move || worker.run())
            .map_err(|e| SbfdError::Socket { what: "spawn the engine thread", errno: errno_of(&e) })?;
        log::info!(
            "S-BFD: initiator on {} (router {}), UDP source port {source_port}, every {:?} x {}, hold-down {:?}",
            config.interface,
            mac_text(router_mac),
            config.timers.interval,
            config.timers.multiplier,
            config.timers.hold_down
        );
        Ok(Engine { shared, thread: Some(thread), source_port, timers: config.timers })
    }

    /// The lists to probe from now on: sessions of lists already probed go
    /// on, new lists start (usable until their first detection time passes
    /// unanswered), others stop.
    pub fn set_lists(&self, lists: impl IntoIterator<Item = ListKey>) {
        let mut lists: Vec<ListKey> = lists.into_iter().collect();
        lists.sort();
        lists.dedup();
        *lock(&self.shared.wanted) = Some(lists);
    }

    /// Whether the list may carry flows: false while it is down or in its
    /// hold-down; true for a list not probed (yet).
    pub fn usable(&self, endpoint: IpAddr, labels: &[Label]) -> bool {
        let Ok(stack) = LabelStack::new(labels.to_vec()) else { return true };
        lock(&self.shared.phases).get(&ListKey { endpoint, stack }).is_none_or(|s| s.phase.usable())
    }

    /// Every probed list and where its session stands.
    pub fn phases(&self) -> Vec<(ListKey, Phase)> {
        self.states().into_iter().map(|(k, s)| (k, s.phase)).collect()
    }

    /// Every probed list, where its session stands, since when, and how
    /// often it went down and came back (as of the end of the engine's last
    /// tick that changed it).
    pub fn states(&self) -> Vec<(ListKey, ListState)> {
        let mut all: Vec<(ListKey, ListState)> =
            lock(&self.shared.phases).iter().map(|(k, s)| (k.clone(), *s)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The timers the sessions run with.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// Packet counts.
    pub fn stats(&self) -> EngineStats {
        let c = &self.shared.counters;
        EngineStats {
            sent: c.sent.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            answers: c.answers.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
        }
    }

    /// The engine thread's CPU time so far, in user space and in the kernel
    /// (getrusage of the thread, sampled every 100 ms by the thread itself).
    pub fn cpu_time(&self) -> (Duration, Duration) {
        let c = &self.shared.counters;
        (
            Duration::from_micros(c.user_micros.load(Ordering::Relaxed)),
            Duration::from_micros(c.system_micros.load(Ordering::Relaxed)),
        )
    }

    /// The UDP port the answers arrive on.
    pub fn source_port(&self) -> u16 {
        self.source_port
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn errno_of(e: &std::io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
}

pub(super) fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

struct Worker {
    shared: Arc<Shared>,
    config: SbfdConfig,
    tx: PacketTx,
    rx: UdpRx,
    /// The engine's clock, one slot per tick (a tenth of the interval):
    /// each tick the due probes leave, the due clocks run, and the answers
    /// are read in batches; the thread sleeps in between rather than waking
    /// per packet. Every session's next probe and next check is on it.
    wheel: Wheel,
    probes: Vec<Probe>,
    /// Sessions by our discriminator, looked up once per answer.
    by_local: HashMap<u32, usize, BuildHasherDefault<Discriminators>>,
    next_local: u32,
    host_mac: [u8; 6],
    router_mac: [u8; 6],
    sources: Vec<IpAddr>,
    source_port: u16,
    seed: u64,
    /// Probes whose phase changed since the last publication.
    changed: Vec<usize>,
}

impl Worker {
    fn run(&mut self) {
        let mut next_usage = Instant::now();
        let mut due: Vec<Timer> = Vec::new();
        let mut send: Vec<usize> = Vec::new();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let next_tick = self.wheel.next_tick();
            let now = Instant::now();
            if next_tick > now {
                std::thread::sleep(next_tick - now);
            }
            // Woken much later than asked: this thread was not scheduled,
            // no probe left meanwhile; that silence is ours, not the paths'.
            let late = Instant::now().saturating_duration_since(next_tick);
            if late > self.config.timers.interval / 2 {
                log::debug!("S-BFD: the engine ran {late:?} late; its sessions' clocks are moved by as much");
                for p in &mut self.probes {
                    p.session.stalled(late);
                }
            }
            // New lists start usable and dropped ones no longer matter: a
            // new set changes no list's usability, so nobody is woken.
            if self.take_wanted() {
                self.publish_all();
            }
            let now = Instant::now();
            due.clear();
            send.clear();
            self.wheel.expire(now, &mut due);
            for timer in due.iter().filter(|t| t.kind == Kind::Probe) {
                let next = now + self.jittered();
                self.wheel.schedule(Timer { at: next, ..*timer });
                send.push(timer.index as usize);
            }
            let frames: Vec<&[u8]> =
                send.iter().filter_map(|i| self.probes.get(*i)).map(|p| p.frame.as_slice()).collect();
            if !frames.is_empty() {
                match self.tx.send(&frames, self.config.batched) {
                    Ok(n) => {
                        // A full ring: the rest did not leave this tick.
                        let refused = (frames.len() - n) as u64;
                        self.shared.counters.send_errors.fetch_add(refused, Ordering::Relaxed);
                        self.shared.counters.sent.fetch_add(n as u64, Ordering::Relaxed)
                    }
                    Err(e) => {
                        log::debug!("S-BFD: sending probes: {e}");
                        self.shared.counters.send_errors.fetch_add(frames.len() as u64, Ordering::Relaxed)
                    }
                };
            }
            // The answers queued since the last tick first, then the
            // clocks: an answer that arrived in time is never judged missing
            // because this thread read it late.
            let mut usability = self.receive();
            let now = Instant::now();
            for timer in due.iter().filter(|t| t.kind == Kind::Check) {
                let i = timer.index as usize;
                let Some(p) = self.probes.get_mut(i) else { continue };
                p.check_pending = false;
                let before = p.session.phase();
                usability |= p.session.tick(now);
                self.after(i, before);
            }
            if !self.changed.is_empty() {
                self.publish_changed();
            }
            if usability {
                (self.shared.notify)();
            }
            if now >= next_usage {
                next_usage = now + Duration::from_millis(100);
                self.sample_cpu();
            }
        }
    }

    /// After session `i` may have moved from `before`: the phase's start and
    /// transitions, its frame's state, its next check, its publication.
    fn after(&mut self, i: usize, before: Phase) {
        let Some(p) = self.probes.get_mut(i) else { return };
        let phase = p.session.phase();
        if std::mem::discriminant(&phase) != std::mem::discriminant(&before) {
            p.state.since = Instant::now();
            match (before.usable(), phase.usable()) {
                (true, false) => p.state.downs += 1,
                (false, true) => p.state.ups += 1,
                _ => {}
            }
            if before.usable() != phase.usable() {
                log_change(p);
            }
            self.changed.push(i);
        }
        p.state.phase = phase;
        if !p.check_pending {
            if let Some(at) = next_check(&p.session, &self.config) {
                p.check_pending = true;
                self.wheel.schedule(Timer { at, index: i as u32, kind: Kind::Check });
            }
        }
        // Probes announce Up once answered (RFC 5880's Sta): rebuilt on change.
        if p.announced != phase.state() {
            self.rebuild(i);
        }
    }

    /// Reads every queued answer and runs their sessions; true when a
    /// list's usability changed.
    fn receive(&mut self) -> bool {
        let batched = self.config.batched;
        let now = Instant::now();
        let mut usability = false;
        let mut invalid = 0u64;
        let mut answers = 0u64;
        let mut touched: Vec<(usize, Phase)> = Vec::new();
        loop {
            let mut got = 0;
            match self.rx.recv(batched) {
                Ok(payloads) => {
                    for payload in payloads {
                        got += 1;
                        let Ok(c) = Control::decode(payload) else {
                            invalid += 1;
                            continue;
                        };
                        // Our discriminator comes back as Your Discriminator; the
                        // reflector's must be the one the list probes.
                        let found = self.by_local.get(&c.your_discriminator).copied();
                        match found.and_then(|i| self.probes.get_mut(i).map(|p| (i, p))) {
                            Some((i, p)) if p.reflector == c.my_discriminator => {
                                answers += 1;
                                let before = p.session.phase();
                                usability |= p.session.answered(&c, now);
                                let after = p.session.phase();
                                if std::mem::discriminant(&before) != std::mem::discriminant(&after) || !p.check_pending
                                {
                                    touched.push((i, before));
                                }
                            }
                            _ => invalid += 1,
                        }
                    }
                }
                Err(e) => log::debug!("S-BFD: receiving answers: {e}"),
            }
            if got < super::io::BATCH {
                break;
            }
        }
        for (i, before) in touched {
            self.after(i, before);
        }
        self.shared.counters.answers.fetch_add(answers, Ordering::Relaxed);
        self.shared.counters.invalid.fetch_add(invalid, Ordering::Relaxed);
        usability
    }

    fn jittered(&mut self) -> Duration {
        // RFC 5880 section 6.8.7: each interval is reduced by 0-25% at
        // random, so that probes of many sessions do not synchronise.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let cut = (self.seed % 2501) as u32; // in 1/10,000
        self.config.timers.interval * (10_000 - cut) / 10_000
    }

    fn take_wanted(&mut self) -> bool {
        let Some(wanted) = lock(&self.shared.wanted).take() else { return false };
        let now = Instant::now();
        let mut old: HashMap<ListKey, Probe> = self.probes.drain(..).map(|p| (p.key.clone(), p)).collect();
        let count = wanted.len().max(1) as u32;
        for (n, key) in wanted.into_iter().enumerate() {
            let probe = match old.remove(&key) {
                Some(p) => Some(p),
                None => {
                    // New sessions are spread over one interval, not sent in a burst.
                    let phase = self.config.timers.interval * (n as u32) / count;
                    self.new_probe(key, now, now + phase)
                }
            };
            self.probes.extend(probe);
        }
        self.by_local = self.probes.iter().enumerate().map(|(i, p)| (p.local, i)).collect();
        // The indices moved: every timer is laid again.
        self.wheel.clear();
        self.changed.clear();
        for (i, p) in self.probes.iter_mut().enumerate() {
            let index = i as u32;
            self.wheel.schedule(Timer { at: p.next_tx.max(now), index, kind: Kind::Probe });
            p.check_pending = false;
            if let Some(at) = next_check(&p.session, &self.config) {
                p.check_pending = true;
                self.wheel.schedule(Timer { at, index, kind: Kind::Check });
            }
        }
        true
    }

    fn new_probe(&mut self, key: ListKey, now: Instant, next_tx: Instant) -> Option<Probe> {
        let reflector = self.config.reflector(key.endpoint)?;
        let local = self.next_local;
        self.next_local = self.next_local.wrapping_add(1).max(1);
        let session = Session::new(self.config.timers, now);
        let state = ListState { phase: session.phase(), since: now, downs: 0, ups: 0 };
        let mut p = Probe {
            key,
            session,
            frame: Vec::new(),
            announced: session.phase().state(),
            reflector,
            local,
            next_tx,
            check_pending: false,
            state,
        };
        if !self.build(&mut p) {
            return None;
        }
        Some(p)
    }

    fn rebuild(&mut self, i: usize) {
        if let Some(mut p) = self.probes.get(i).map(|p| Probe { frame: Vec::new(), key: p.key.clone(), ..*p }) {
            if self.build(&mut p) {
                if let Some(slot) = self.probes.get_mut(i) {
                    *slot = p;
                }
            }
        }
    }

    /// Builds a probe's frame for its session's state; false when the
    /// endpoint's family has no source address on the interface (logged).
    fn build(&self, p: &mut Probe) -> bool {
        let Some(source) = self.config.source_for(p.key.endpoint, &self.sources) else {
            log::warn!(
                "S-BFD: no {} address on {} to probe {} from: the list {} is not probed",
                if p.key.endpoint.is_ipv6() { "IPv6" } else { "IPv4" },
                self.config.interface,
                p.key.endpoint,
                p.key.stack
            );
            return false;
        };
        let state = p.session.phase().state();
        let us = u32::try_from(self.config.timers.interval.as_micros()).unwrap_or(u32::MAX);
        let control = Control {
            diag: 0,
            state,
            poll: false,
            final_: false,
            detect_mult: self.config.timers.multiplier,
            my_discriminator: p.local,
            your_discriminator: p.reflector,
            desired_min_tx_us: us,
            required_min_rx_us: us,
            required_min_echo_rx_us: 0,
        };
        let a = Addressing {
            router_mac: self.router_mac,
            host_mac: self.host_mac,
            source,
            endpoint: p.key.endpoint,
            source_port: self.source_port,
        };
        match probe::frame(&p.key.stack, &a, &control) {
            Ok(f) => {
                p.frame = f;
                p.announced = state;
                true
            }
            Err(e) => {
                log::warn!("S-BFD: list {} to {}: {e}", p.key.stack, p.key.endpoint);
                false
            }
        }
    }

    /// Publishes every list (after the set changed).
    fn publish_all(&mut self) {
        let states: HashMap<ListKey, ListState> = self.probes.iter().map(|p| (p.key.clone(), p.state)).collect();
        *lock(&self.shared.phases) = states;
        self.changed.clear();
    }

    /// Publishes the lists whose phase changed: readers see each change
    /// at the end of the tick that made it, and nothing is copied otherwise.
    fn publish_changed(&mut self) {
        let mut published = lock(&self.shared.phases);
        for i in self.changed.drain(..) {
            if let Some(p) = self.probes.get(i) {
                if let Some(s) = published.get_mut(&p.key) {
                    *s = p.state;
                }
            }
        }
    }

    fn sample_cpu(&self) {
        if let Ok(u) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD) {
            let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            self.shared.counters.user_micros.store(micros(u.user_time()), Ordering::Relaxed);
            self.shared.counters.system_micros.store(micros(u.system_time()), Ordering::Relaxed);
        }
    }
}

/// When the session's clock must run next: when its detection time would
/// pass without an answer, or its hold-down end; none while it is down
/// (only an answer moves it).
fn next_check(session: &Session, config: &SbfdConfig) -> Option<Instant> {
    let detection = config.timers.detection();
    // A session is silent only once strictly more than the detection time
    // has passed.
    let after = |t: Instant| t + detection + Duration::from_micros(1);
    match session.phase() {
        Phase::Starting { since } => Some(after(since)),
        Phase::Up { last } => Some(after(last)),
        Phase::Returning { since, last } => Some(after(last).min(since + config.timers.hold_down)),
        Phase::Down { .. } => None,
    }
}

/// A hasher for our own discriminators (sequential numbers that nobody
/// else picks): one multiplication (Fibonacci hashing) instead of SipHash,
/// which the answers' lookups spent most of their user-space time on.
#[derive(Debug, Default)]
struct Discriminators(u64);

impl Hasher for Discriminators {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn log_change(p: &Probe) {
    let phase = p.session.phase();
    if phase.usable() {
        log::info!("S-BFD: segment list {} to {} is {}: in use again", p.key.stack, p.key.endpoint, phase.as_str());
    } else {
        log::warn!(
            "S-BFD: segment list {} to {} is {}: its flows move to the live lists",
            p.key.stack,
            p.key.endpoint,
            phase.as_str()
        );
    }
}
