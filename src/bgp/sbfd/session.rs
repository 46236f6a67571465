//! One segment list's S-BFD session as the initiator sees it (RFC 7880):
//! whether the list is usable, from the reflector's answers and the clock.
//!
//! ```text
//!   Starting ──answer──▶ Up ──no answer for the detection time──▶ Down
//!      │                  ▲                                        │
//!      └──no answer───────┼──────────────▶ Down ◀──no answer──┐    │ answer
//!                         │                                   │    ▼
//!                         └──────hold-down elapsed─────── Returning
//! ```
//!
//! A list is usable while Starting (a list BGP just taught is trusted until
//! its first detection time passes without an answer: a new policy is not
//! delayed by a round trip) and Up; not while Down or Returning (a list that
//! came back waits out the hold-down, so a flapping path does not pull its
//! flows back and forth). The clock is passed in: the tests drive it.

use std::time::{Duration, Instant};

use super::packet::{Control, State};

/// The timers every session runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Time between probes (before the RFC 5880 jitter).
    pub interval: Duration,
    /// Probes that may go unanswered before the list is down.
    pub multiplier: u8,
    /// How long a list that came back must stay answered before it is used again.
    pub hold_down: Duration,
}

impl Timers {
    /// The detection time: interval x multiplier.
    pub fn detection(&self) -> Duration {
        self.interval * u32::from(self.multiplier)
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Probing, no answer yet, since then: usable until the detection time passes.
    Starting {
        /// When probing began.
        since: Instant,
    },
    /// Answered within the detection time: usable.
    Up {
        /// The last answer.
        last: Instant,
    },
    /// Not answered within the detection time: not usable.
    Down {
        /// Since when.
        since: Instant,
    },
    /// Answering again, not yet for the whole hold-down: not usable.
    Returning {
        /// The first answer after it was down.
        since: Instant,
        /// The last answer.
        last: Instant,
    },
}

impl Phase {
    /// Whether the list's flows may use it.
    pub fn usable(&self) -> bool {
        matches!(self, Phase::Starting { .. } | Phase::Up { .. })
    }

    /// The state a probe announces (RFC 5880's Sta field): Up once answered.
    pub fn state(&self) -> State {
        match self {
            Phase::Up { .. } | Phase::Returning { .. } => State::Up,
            Phase::Starting { .. } | Phase::Down { .. } => State::Down,
        }
    }

    /// `starting`, `up`, `down` or `returning` (logs, status).
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Starting { .. } => "starting",
            Phase::Up { .. } => "up",
            Phase::Down { .. } => "down",
            Phase::Returning { .. } => "returning",
        }
    }
}

/// One list's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    phase: Phase,
    timers: Timers,
}

impl Session {
    /// A session that starts probing at `now`.
    pub fn new(timers: Timers, now: Instant) -> Session {
        Session { phase: Phase::Starting { since: now }, timers }
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the list may carry flows.
    pub fn usable(&self) -> bool {
        self.phase.usable()
    }

    /// A reflected packet for this session arrived at `now`. Only an Up
    /// answer proves the path (a reflector that answers AdminDown refuses
    /// this initiator: the list then goes down by its detection time).
    /// Returns true when the list's usability changed.
    pub fn answered(&mut self, reply: &Control, now: Instant) -> bool {
        if reply.state != State::Up {
            return false;
        }
        let was = self.usable();
        self.phase = match self.phase {
            Phase::Starting { .. } | Phase::Up { .. } => Phase::Up { last: now },
            Phase::Down { .. } => Phase::Returning { since: now, last: now },
            Phase::Returning { since, .. } => Phase::Returning { since, last: now },
        };
        // A zero hold-down: usable at the first answer.
        self.tick(now);
        was != self.usable()
    }

    /// The initiator itself did not run for `stalled` (its thread was not
    /// scheduled): its probes did not leave, so that silence is not the
    /// path's. The detection clock is moved forward by it; without this, a
    /// stall of the host longer than the detection time would take every
    /// list down at once.
    pub fn stalled(&mut self, stalled: Duration) {
        match &mut self.phase {
            Phase::Starting { since } => *since += stalled,
            Phase::Up { last } | Phase::Returning { last, .. } => *last += stalled,
            Phase::Down { .. } => {}
        }
    }

    /// Advances the clock to `now`: the detection time and the hold-down.
    /// Returns true when the list's usability changed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let was = self.usable();
        let detection = self.timers.detection();
        let silent = |last: Instant| now.saturating_duration_since(last) > detection;
        self.phase = match self.phase {
            Phase::Starting { since } if silent(since) => Phase::Down { since: now },
            Phase::Up { last } if silent(last) => Phase::Down { since: now },
            Phase::Returning { last, .. } if silent(last) => Phase::Down { since: now },
            Phase::Returning { since, last } if now.saturating_duration_since(since) >= self.timers.hold_down => {
                Phase::Up { last }
            }
            p => p,
        };
        was != self.usable()
    }
}

/// When the session's clock must run next: when its detection time would
/// pass without an answer, or its hold-down end; none while it is down
/// (only an answer moves it).
pub(super) fn next_check(session: &Session, timers: &Timers) -> Option<Instant> {
    let detection = timers.detection();
    // A session is silent only once strictly more than the detection time
    // has passed.
    let after = |t: Instant| t + detection + Duration::from_micros(1);
    match session.phase() {
        Phase::Starting { since } => Some(after(since)),
        Phase::Up { last } => Some(after(last)),
        Phase::Returning { since, last } => Some(after(last).min(since + timers.hold_down)),
        Phase::Down { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timers() -> Timers {
        Timers { interval: 10 * MS, multiplier: 3, hold_down: 100 * MS }
    }

    fn up() -> Control {
        Control {
            diag: 0,
            state: State::Up,
            poll: false,
            final_: false,
            detect_mult: 3,
            my_discriminator: 1,
            your_discriminator: 2,
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            required_min_echo_rx_us: 0,
        }
    }

    /// A fake clock: a base instant plus milliseconds.
    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_new_list_is_used_until_its_first_detection_time_passes_unanswered() {
        let t0 = Instant::now();
        let mut s = Session::new(timers(), t0);
        assert!(s.usable());
        assert!(!s.tick(at(t0, 30)), "exactly the detection time is not yet a miss");
        assert!(s.tick(at(t0, 31)));
        assert_eq!(s.phase().as_str(), "down");
    }

    #[test]
    fn an_answered_list_goes_down_after_interval_times_multiplier_of_silence() {
        let t0 = Instant::now();
        let mut s = Session::new(timers(), t0);
        assert!(!s.answered(&up(), at(t0, 5)), "starting -> up keeps it usable");
        for ms in [15, 25, 35] {
            s.answered(&up(), at(t0, ms));
        }
        assert!(!s.tick(at(t0, 65)));
        assert!(s.tick(at(t0, 66)));
        assert!(!s.usable());
    }

    #[test]
    fn a_list_that_comes_back_waits_out_the_hold_down() {
        let t0 = Instant::now();
        let mut s = Session::new(timers(), t0);
        s.tick(at(t0, 31));
        assert!(!s.answered(&up(), at(t0, 40)), "returning is not usable");
        assert_eq!(s.phase().as_str(), "returning");
        for ms in (50..140).step_by(10) {
            assert!(!s.answered(&up(), at(t0, ms)), "still in hold-down at {ms} ms");
        }
        assert!(s.answered(&up(), at(t0, 140)), "100 ms after the first answer");
        assert!(s.usable());
    }

    #[test]
    fn flapping_during_the_hold_down_starts_it_again() {
        let t0 = Instant::now();
        let mut s = Session::new(timers(), t0);
        s.tick(at(t0, 31));
        s.answered(&up(), at(t0, 40));
        s.answered(&up(), at(t0, 50));
        assert!(!s.tick(at(t0, 81)), "down again: was not usable, still not");
        assert_eq!(s.phase().as_str(), "down");
        s.answered(&up(), at(t0, 90));
        for ms in (100..190).step_by(10) {
            assert!(!s.answered(&up(), at(t0, ms)));
        }
        assert!(!s.tick(at(t0, 185)));
        assert!(s.tick(at(t0, 190)), "a full hold-down after the last comeback");
    }

    #[test]
    fn the_initiators_own_stall_is_not_the_paths_silence() {
        let t0 = Instant::now();
        let mut s = Session::new(timers(), t0);
        s.answered(&up(), at(t0, 10));
        // The thread ran nothing from 12 to 62 ms: 50 ms of its own silence.
        s.stalled(50 * MS);
        assert!(!s.tick(at(t0, 62)), "still up after a stall longer than the detection time");
        assert!(s.tick(at(t0, 91)), "a real silence after the stall still counts");
    }

    #[test]
    fn only_an_up_answer_counts_and_a_zero_hold_down_is_immediate() {
        let t0 = Instant::now();
        let mut s = Session::new(Timers { hold_down: Duration::ZERO, ..timers() }, t0);
        s.tick(at(t0, 31));
        let refused = Control { state: State::AdminDown, ..up() };
        assert!(!s.answered(&refused, at(t0, 35)));
        assert_eq!(s.phase().as_str(), "down");
        assert!(s.answered(&up(), at(t0, 36)));
        assert_eq!(s.phase().state(), State::Up);
    }
}
