//! The engine's thread: every tick, the probes due leave, the answers are
//! read and the sessions' clocks due run (one timer wheel for all of them),
//! and what changed is published to the [`Engine`](super::Engine) handle.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answers::{AnswerTable, Discriminators};
use super::engine::{lock, ListKey, ListState, Shared};
use super::io::UdpRx;
use super::neighbour::Interface;
use super::packet::Control;
use super::probe::{self, Addressing};
use super::session::{next_check, Phase, Session};
use super::transmit::Transmit;
use super::wheel::{nanos, Kind, Timer, Wheel};
use super::SbfdConfig;

/// One probed list: its session and its prebuilt frame.
pub(super) struct Probe {
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
    /// Its answer counts (all, Up) as last read from the answer filter's record.
    seen: (u32, u32),
}

/// The engine's thread and everything it owns.
pub(super) struct Worker {
    shared: Arc<Shared>,
    config: SbfdConfig,
    tx: Transmit,
    rx: UdpRx,
    /// The answers as the socket filter counts them; `None`: recvmmsg.
    answers: Option<AnswerTable>,
    invalid_seen: u32,
    /// The engine's clock, one slot per tick (a quarter of the interval):
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
    /// How many ticks after one probe the next leaves (the jitter on the grid).
    gaps: Gaps,
    /// Probes whose phase changed since the last publication.
    changed: Vec<usize>,
    /// Sessions an answer moved this tick (kept to reuse its allocation).
    touched: Vec<(usize, Phase)>,
}

impl Worker {
    /// The thread's state before its first tick.
    pub(super) fn new(
        shared: Arc<Shared>,
        config: SbfdConfig,
        (tx, rx, answers): (Transmit, UdpRx, Option<AnswerTable>),
        tick: Duration,
        local: &Interface,
        router_mac: [u8; 6],
        source_port: u16,
    ) -> Worker {
        let wheel = Wheel::new(tick, config.timers.detection().max(config.timers.interval) * 2, Instant::now());
        let gaps = Gaps::new(config.timers.interval, wheel.tick());
        Worker {
            gaps,
            shared,
            config,
            tx,
            rx,
            answers,
            invalid_seen: 0,
            wheel,
            changed: Vec::new(),
            touched: Vec::new(),
            probes: Vec::new(),
            by_local: HashMap::default(),
            next_local: 1,
            host_mac: local.mac,
            router_mac,
            sources: local.addresses.clone(),
            source_port,
            seed: 0x9e37_79b9_7f4a_7c15 ^ u64::from(source_port),
        }
    }

    /// Ticks until the handle asks it to stop.
    pub(super) fn run(&mut self) {
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
            // From the tick these probes belong to, not from when this
            // thread woke: a whole number of ticks, never more than the
            // interval apart (`Gaps`), counted in ticks (no clock arithmetic
            // and no division per probe).
            let base = self.wheel.last_tick_number();
            for timer in due.iter().filter(|t| t.kind == Kind::Probe) {
                let draw = self.random();
                let gap = self.gaps.sample(draw);
                let next = self.wheel.schedule_at_tick(base + gap, timer.index, Kind::Probe);
                // Kept with the probe: a new set of lists lays it again where it was.
                if let Some(p) = self.probes.get_mut(timer.index as usize) {
                    p.next_tx = next;
                }
                send.push(timer.index as usize);
            }
            self.tx.refresh(now);
            if !send.is_empty() {
                let probes = &self.probes;
                let out = self.tx.send(&send, |i| probes.get(i).map(|p| p.frame.as_slice()), self.config.batched);
                let c = &self.shared.counters;
                c.sent.fetch_add(out.sent as u64, Ordering::Relaxed);
                c.sent_live.fetch_add(out.live as u64, Ordering::Relaxed);
                c.send_errors.fetch_add(out.errors as u64, Ordering::Relaxed);
                c.live_runs_failed.fetch_add(out.live_failed as u64, Ordering::Relaxed);
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
            if let Some(at) = next_check(&p.session, &self.config.timers) {
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
        if self.answers.is_some() {
            return self.count_answers();
        }
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

    /// As [`Worker::receive`], from the answer filter's counts: the
    /// records answered since the last tick (a bitmap of 2 kB read
    /// with plain loads, and the records it names).
    fn count_answers(&mut self) -> bool {
        let Some(table) = &self.answers else { return false };
        let now = Instant::now();
        // The filter checked the answer; the session needs only its state.
        let up = Control {
            diag: 0,
            state: super::packet::State::Up,
            poll: false,
            final_: false,
            detect_mult: 1,
            my_discriminator: 0,
            your_discriminator: 0,
            desired_min_tx_us: 0,
            required_min_rx_us: 0,
            required_min_echo_rx_us: 0,
        };
        let (mut usability, mut answers) = (false, 0u64);
        let touched = &mut self.touched;
        let (probes, by_local) = (&mut self.probes, &self.by_local);
        table.take_answered(|local, (all, ups)| {
            let Some((i, p)) = by_local.get(&local).and_then(|i| probes.get_mut(*i).map(|p| (*i, p))) else {
                return;
            };
            if (all, ups) == p.seen {
                return;
            }
            answers += u64::from(all.wrapping_sub(p.seen.0));
            let answered_up = ups != p.seen.1;
            p.seen = (all, ups);
            if answered_up {
                let before = p.session.phase();
                usability |= p.session.answered(&up, now);
                let after = p.session.phase();
                if std::mem::discriminant(&before) != std::mem::discriminant(&after) || !p.check_pending {
                    touched.push((i, before));
                }
            }
        });
        let invalid = table.invalid();
        let new_invalid = invalid.wrapping_sub(self.invalid_seen);
        self.invalid_seen = invalid;
        let mut touched = std::mem::take(&mut self.touched);
        for (i, before) in touched.drain(..) {
            self.after(i, before);
        }
        self.touched = touched;
        self.shared.counters.answers.fetch_add(answers, Ordering::Relaxed);
        self.shared.counters.answers_filtered.fetch_add(answers, Ordering::Relaxed);
        self.shared.counters.invalid.fetch_add(u64::from(new_invalid), Ordering::Relaxed);
        usability
    }

    /// Our next discriminator: one whose answer record no running list
    /// uses. With more lists than records, the filter is given up for
    /// recvmmsg.
    fn allocate_local(&mut self) -> u32 {
        let tries = self.answers.as_ref().map_or(1, |a| a.slots());
        for _ in 0..tries {
            let local = self.next_local;
            self.next_local = self.next_local.wrapping_add(1).max(1);
            if self.answers.as_ref().is_none_or(|a| a.free(local)) {
                return local;
            }
        }
        log::warn!("S-BFD: more lists than answer records: answers go through recvmmsg from now on");
        self.rx.detach_filter();
        self.answers = None;
        let local = self.next_local;
        self.next_local = self.next_local.wrapping_add(1).max(1);
        local
    }

    fn random(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
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
        if let Some(a) = &mut self.answers {
            for p in old.values() {
                a.close(p.local);
            }
        }
        self.by_local = self.probes.iter().enumerate().map(|(i, p)| (p.local, i)).collect();
        // The live path finds a probe's frame by its index, which moved.
        for (i, p) in self.probes.iter().enumerate() {
            self.tx.set(i, &p.frame);
        }
        self.tx.forget_from(self.probes.len());
        // The indices moved: every timer is laid again.
        self.wheel.clear();
        self.changed.clear();
        for (i, p) in self.probes.iter_mut().enumerate() {
            let index = i as u32;
            self.wheel.schedule(Timer { at: p.next_tx.max(now), index, kind: Kind::Probe });
            p.check_pending = false;
            if let Some(at) = next_check(&p.session, &self.config.timers) {
                p.check_pending = true;
                self.wheel.schedule(Timer { at, index, kind: Kind::Check });
            }
        }
        true
    }

    fn new_probe(&mut self, key: ListKey, now: Instant, next_tx: Instant) -> Option<Probe> {
        let reflector = self.config.reflector(key.endpoint)?;
        let local = self.allocate_local();
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
            seen: (0, 0),
        };
        if !self.build(&mut p) {
            return None;
        }
        if let Some(a) = &mut self.answers {
            a.open(local, reflector);
        }
        Some(p)
    }

    fn rebuild(&mut self, i: usize) {
        if let Some(mut p) = self.probes.get(i).map(|p| Probe { frame: Vec::new(), key: p.key.clone(), ..*p }) {
            if self.build(&mut p) {
                self.tx.set(i, &p.frame);
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

/// RFC 5880 section 6.8.7's jitter on the wheel's grid: each interval
/// reduced by 0-25% at random (so that probes of many sessions do not
/// synchronise), in 1/10,000ths, then [`on_the_grid`]. The distribution of
/// the resulting number of ticks is worked out once, exactly, so that a
/// probe costs one random number and a binary search over the outcomes
/// (two at 10 ms, three at 50 ms, one per 20 ms of interval beyond), not the
/// clock arithmetic and divisions of drawing it each time.
#[derive(Debug, Clone, PartialEq)]
struct Gaps {
    /// (draws below this, that many ticks), by increasing threshold; the
    /// last threshold is `u64::MAX`.
    outcomes: Vec<(u64, u64)>,
}

impl Gaps {
    /// The cut's steps: 0 to 25% of the interval in 1/10,000ths.
    const CUTS: u32 = 2_501;

    fn new(interval: Duration, tick: Duration) -> Gaps {
        let tick_ns = nanos(tick).max(1);
        // Probability mass per number of ticks, in 1/(CUTS * tick_ns)ths:
        // each cut is equally likely, and rounds up with probability
        // rest / tick (on_the_grid's `draw % tick < rest`).
        let mut mass: std::collections::BTreeMap<u64, u128> = std::collections::BTreeMap::new();
        for cut in 0..Gaps::CUTS {
            let jittered = interval * (10_000 - cut) / 10_000;
            let rest = u128::from(nanos(jittered) % tick_ns);
            let ticks = |draw| nanos(on_the_grid(jittered, tick, interval, draw)) / tick_ns;
            *mass.entry(ticks(tick_ns - 1)).or_default() += u128::from(tick_ns) - rest;
            *mass.entry(ticks(0)).or_default() += rest;
        }
        let total: u128 = mass.values().sum();
        let mut cumulative = 0u128;
        let mut outcomes: Vec<(u64, u64)> = mass
            .into_iter()
            .map(|(ticks, m)| {
                cumulative += m;
                // The share of the 2^64 draws below this outcome's upper end.
                let below = (cumulative << 64) / total.max(1);
                (u64::try_from(below).unwrap_or(u64::MAX), ticks)
            })
            .collect();
        if let Some(last) = outcomes.last_mut() {
            last.0 = u64::MAX;
        }
        Gaps { outcomes }
    }

    /// The number of ticks for the random `draw`.
    fn sample(&self, draw: u64) -> u64 {
        let at = self.outcomes.partition_point(|(below, _)| *below <= draw);
        self.outcomes.get(at).or(self.outcomes.last()).map_or(1, |o| o.1)
    }
}

/// `jittered` as a whole number of ticks, rounded up or down at random in
/// proportion (`draw`: a random number), so that the mean interval is the
/// jittered mean while probes leave only on ticks. A probe's next one is
/// never more than `interval` after it (RFC 5880: the interval is reduced,
/// never stretched, which rounding up alone would do by up to a tick), never
/// less than three quarters of it (reduced by at most 25%, which rounding
/// down alone would break where the tick does not divide that), unless a
/// tick is longer than the quarter (intervals under 2 ms), and never in the
/// same tick.
///
/// Why a grid: each tick that sends costs the kernel a fixed amount (one
/// BPF_PROG_TEST_RUN call, a fresh page pool of 64 pages, the thread's wake-up),
/// about as much as 150 probes. With ticks a quarter of the interval instead
/// of a tenth, 1,000 lists every 10 ms cost half as much (docs/liveness.md).
fn on_the_grid(jittered: Duration, tick: Duration, interval: Duration, draw: u64) -> Duration {
    // In 64 bits: a Duration's nanoseconds are 128, and dividing them a library call.
    let tick_ns = nanos(tick).max(1);
    let (whole, rest) = (nanos(jittered) / tick_ns, nanos(jittered) % tick_ns);
    let up = draw % tick_ns < rest;
    let most = (nanos(interval) / tick_ns).max(1);
    let least = (nanos(interval) / 4 * 3).div_ceil(tick_ns).clamp(1, most);
    let ticks = (whole + u64::from(up)).clamp(least, most);
    Duration::from_nanos(ticks.saturating_mul(tick_ns))
}

#[cfg(test)]
mod tests {
    use super::{on_the_grid, Gaps};
    use std::collections::BTreeMap;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// A xorshift stream from `seed`: repeatable draws.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn probes_leave_on_ticks_never_more_than_the_interval_apart_with_the_jittered_mean() {
        let (tick, interval) = (Duration::from_micros(2_500), 10 * MS);
        let mut random = xorshift(0x2545_f491_4f6c_dd1d);
        let (mut sum, n) = (Duration::ZERO, 100_000u32);
        for _ in 0..n {
            let jittered = interval * (10_000 - (random() % 2501) as u32) / 10_000;
            let got = on_the_grid(jittered, tick, interval, random());
            assert_eq!(got.as_nanos() % tick.as_nanos(), 0, "{got:?} is a whole number of ticks");
            assert!(got <= interval && got >= tick, "{got:?} for {jittered:?}");
            // Rounded to a neighbouring tick, never further.
            assert!(got.abs_diff(jittered) < tick, "{got:?} for {jittered:?}");
            sum += got;
        }
        // The jittered mean is 8.75 ms; rounding at random keeps it.
        let mean = sum / n;
        assert!(mean.abs_diff(Duration::from_micros(8_750)) < Duration::from_micros(50), "mean {mean:?}");
        // Exact multiples stay; an interval below one tick still leaves a tick apart.
        assert_eq!(on_the_grid(10 * MS, tick, interval, 7), 10 * MS);
        assert_eq!(on_the_grid(Duration::from_micros(7_500), tick, interval, 7), Duration::from_micros(7_500));
        assert_eq!(on_the_grid(Duration::from_micros(300), MS, Duration::from_micros(400), 0), MS);
        // Never above the interval, even where it is not a whole number of ticks.
        assert_eq!(on_the_grid(Duration::from_micros(9_900), 3 * MS, Duration::from_micros(9_900), 0), 9 * MS);
        // Never more than 25% below it where the tick (5 ms at most) is not a
        // quarter of it: 50 ms (the default) and 21 ms; 1 ms has 0.5 ms ticks.
        for (interval, tick) in [(50 * MS, 5 * MS), (21 * MS, 5 * MS), (MS, Duration::from_micros(500))] {
            for cut in [0u32, 1, 1_250, 2_499, 2_500] {
                let jittered = interval * (10_000 - cut) / 10_000;
                for draw in [0, 1, u64::MAX / 2, u64::MAX] {
                    let got = on_the_grid(jittered, tick, interval, draw);
                    assert!(got <= interval && got * 4 >= interval * 3, "{interval:?}: {got:?} for {jittered:?}");
                    assert_eq!(got.as_nanos() % tick.as_nanos(), 0);
                }
            }
        }
    }

    /// The engine draws each probe's gap from `Gaps`: the same distribution
    /// as drawing the cut and rounding with `on_the_grid` each time.
    #[test]
    fn the_precomputed_gaps_are_on_the_grids_distribution() {
        let mut random = xorshift(0x9e37_79b9_7f4a_7c15);
        for (interval, tick) in [
            (10 * MS, Duration::from_micros(2_500)),
            (50 * MS, 5 * MS),
            (21 * MS, 5 * MS),
            (MS, Duration::from_micros(500)),
        ] {
            let gaps = Gaps::new(interval, tick);
            let n = 200_000u32;
            let (mut drawn, mut reference) = (BTreeMap::<u64, u32>::new(), BTreeMap::<u64, u32>::new());
            for _ in 0..n {
                *drawn.entry(gaps.sample(random())).or_default() += 1;
                let jittered = interval * (10_000 - (random() % 2501) as u32) / 10_000;
                let got = on_the_grid(jittered, tick, interval, random());
                *reference.entry((got.as_nanos() / tick.as_nanos()) as u64).or_default() += 1;
            }
            assert_eq!(drawn.keys().collect::<Vec<_>>(), reference.keys().collect::<Vec<_>>(), "{interval:?}");
            for (ticks, count) in &drawn {
                let share = f64::from(*count) / f64::from(n);
                let expected = f64::from(reference[ticks]) / f64::from(n);
                assert!((share - expected).abs() < 0.01, "{interval:?}: {ticks} ticks {share} against {expected}");
                let gap = tick * *ticks as u32;
                assert!(gap <= interval && (gap * 4 >= interval * 3 || tick * 4 > interval), "{interval:?}: {gap:?}");
            }
        }
        // At 10 ms on 2.5 ms ticks: 3 or 4 ticks, half and half (mean 8.75 ms).
        let gaps = Gaps::new(10 * MS, Duration::from_micros(2_500));
        assert_eq!(gaps.outcomes.iter().map(|o| o.1).collect::<Vec<_>>(), [3, 4]);
        assert_eq!((gaps.sample(0), gaps.sample(u64::MAX)), (3, 4));
        let half = gaps.outcomes[0].0 as f64 / u64::MAX as f64;
        assert!((half - 0.5).abs() < 0.001, "{half}");
    }
}
