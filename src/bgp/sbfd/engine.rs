//! The S-BFD initiator: one thread that sends every segment list's probes
//! on time, reads the reflectors' answers, runs each list's [`Session`](super::Session),
//! and reports when a list becomes usable or unusable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::io::{PacketTx, UdpRx};
use super::session::{Phase, Timers};
use super::transmit::{Live, Transmit};
use super::worker::Worker;
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
    /// Of which sent as XDP live frames ([`SbfdConfig::live_frames`]).
    pub sent_live: u64,
    /// Probes the interface refused (counted, not retried).
    pub send_errors: u64,
    /// Live-frame runs the kernel failed; their probes went through the
    /// socket in the same tick (not counted in `send_errors`). A kernel that
    /// refuses live frames for good (EPERM, EACCES, EOPNOTSUPP, EINVAL)
    /// counts at most one, once the interface takes XDP frames: the engine
    /// uses its socket from then on.
    pub live_runs_failed: u64,
    /// Answers matched to a session.
    pub answers: u64,
    /// Of which counted by the answer filter in the kernel
    /// ([`SbfdConfig::answer_filter`]) rather than received.
    pub answers_filtered: u64,
    /// Datagrams that were not a valid answer to a running session.
    pub invalid: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) sent_live: AtomicU64,
    pub(super) send_errors: AtomicU64,
    pub(super) live_runs_failed: AtomicU64,
    pub(super) answers: AtomicU64,
    pub(super) answers_filtered: AtomicU64,
    pub(super) invalid: AtomicU64,
    /// The engine thread's CPU time in user space and in the kernel, microseconds.
    pub(super) user_micros: AtomicU64,
    pub(super) system_micros: AtomicU64,
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

/// Probes the live-frame path holds (more go through the socket).
const LIVE_SLOTS: usize = 16_384;

type Notify = Box<dyn Fn() + Send + Sync>;

/// What the engine's handle and its thread share.
pub(super) struct Shared {
    /// The lists to probe from the next tick on (taken by the thread).
    pub(super) wanted: Mutex<Option<Vec<ListKey>>>,
    /// Each probed list's state, as the thread last published it.
    pub(super) phases: Mutex<HashMap<ListKey, ListState>>,
    pub(super) stop: AtomicBool,
    pub(super) counters: Counters,
    pub(super) notify: Notify,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        let (live, mut answers) = if config.live_frames || config.answer_filter {
            match super::xdp_tx::XdpTx::open(local.ifindex, LIVE_SLOTS) {
                Ok((x, a)) => {
                    (config.live_frames.then(|| Live::new(x, local.ifindex)), config.answer_filter.then_some(a))
                }
                Err(e) => {
                    log::info!("S-BFD: probes and answers go through sockets: {e}");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let tx = Transmit::new(tx, live);
        let (socket, source_port) = super::io::bind_source_port().ok_or(SbfdError::NoSourcePort)?;
        // A quarter of the interval: every tick that sends costs a fixed
        // amount, and probes keep to the ticks (worker.rs `on_the_grid`).
        let tick = (config.timers.interval / 4).clamp(Duration::from_micros(500), Duration::from_millis(5));
        if let Some(a) = &answers {
            if let Err(errno) = a.attach(std::os::fd::AsFd::as_fd(&socket)) {
                log::info!("S-BFD: answers go through recvmmsg: attaching the answer filter: {errno}");
                answers = None;
            }
        }
        let rx = UdpRx::new(socket, 4 << 20);
        let shared = Arc::new(Shared {
            wanted: Mutex::new(None),
            phases: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            notify: Box::new(notify),
        });
        let mut worker =
            Worker::new(Arc::clone(&shared), config.clone(), (tx, rx, answers), tick, &local, router_mac, source_port);
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
            sent_live: c.sent_live.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            live_runs_failed: c.live_runs_failed.load(Ordering::Relaxed),
            answers: c.answers.load(Ordering::Relaxed),
            answers_filtered: c.answers_filtered.load(Ordering::Relaxed),
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
