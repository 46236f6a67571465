//! The engine's timers: one hashed timer wheel for every session's next
//! probe and next check, instead of visiting every session on every tick.
//!
//! With 1,000 lists every 10 ms and a 1 ms tick, the engine used to walk all
//! sessions three times per tick (which probes are due, which sessions
//! timed out, which frames are stale): 3 million visits a second for about
//! 200,000 events. The wheel visits only what is due: each tick drains one
//! slot. A timer further away than the wheel's span waits in its slot for
//! its round (it is looked at once per span, and put back).

use std::time::{Duration, Instant};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send the session's probe.
    Probe,
    /// Run the session's clock (detection time, hold-down).
    Check,
}

/// One timer: session `index` (the engine's probe index), at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    /// When it is due.
    pub at: Instant,
    /// The session's index in the engine.
    pub index: u32,
    /// What to do.
    pub kind: Kind,
}

/// A timer wheel of `2^bits` slots of one tick each.
#[derive(Debug)]
pub struct Wheel {
    tick: Duration,
    /// The same in nanoseconds: the per-timer arithmetic in 64 bits (a
    /// `Duration`'s `as_nanos` is 128 bits, and dividing it a library call).
    tick_ns: u64,
    origin: Instant,
    /// The next tick to run (ticks since `origin`).
    next: u64,
    slots: Vec<Vec<Timer>>,
}

impl Wheel {
    /// An empty wheel of `span` (rounded up to a power of two ticks), starting at `now`.
    pub fn new(tick: Duration, span: Duration, now: Instant) -> Wheel {
        let tick = tick.max(Duration::from_micros(1));
        let count = (span.as_nanos() / tick.as_nanos()).clamp(16, 1 << 16) as usize;
        Wheel { tick, tick_ns: nanos(tick), origin: now, next: 0, slots: vec![Vec::new(); count.next_power_of_two()] }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        // Rounded up: a timer never fires before it is due.
        nanos_since(self.origin, at).div_ceil(self.tick_ns)
    }

    /// Adds a timer; one due at or before the current tick runs at the next one.
    pub fn schedule(&mut self, timer: Timer) {
        let tick = self.tick_of(timer.at).max(self.next);
        let mask = self.slots.len() as u64 - 1;
        if let Some(slot) = self.slots.get_mut((tick & mask) as usize) {
            slot.push(timer);
        }
    }

    /// Adds a timer due exactly at tick number `tick` (ticks since the
    /// origin; one at or before the current tick runs at the next one) and
    /// returns its time: no division, for the probes, which keep to the
    /// ticks.
    pub fn schedule_at_tick(&mut self, tick: u64, index: u32, kind: Kind) -> Instant {
        let tick = tick.max(self.next);
        let at = self.origin + Duration::from_nanos(self.tick_ns.saturating_mul(tick));
        let mask = self.slots.len() as u64 - 1;
        if let Some(slot) = self.slots.get_mut((tick & mask) as usize) {
            slot.push(Timer { at, index, kind });
        }
        at
    }

    /// Removes every timer.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(Vec::clear);
    }

    /// Moves every timer due by `now` into `due` (in no particular order),
    /// and the wheel past `now`.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<Timer>) {
        // The last tick whose time has come.
        let last = nanos_since(self.origin, now) / self.tick_ns;
        if last < self.next {
            return;
        }
        let len = self.slots.len() as u64;
        // After a stall longer than the span every slot is looked at once.
        let first = self.next.max(last.saturating_sub(len - 1));
        for t in first..=last {
            if let Some(slot) = self.slots.get_mut((t & (len - 1)) as usize) {
                slot.retain(|timer| {
                    let ready = timer.at <= now;
                    if ready {
                        due.push(*timer);
                    }
                    !ready
                });
            }
        }
        self.next = last + 1;
    }

    /// The number of the last tick [`Wheel::expire`] reached (0 before the
    /// first).
    pub fn last_tick_number(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// The wheel's tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// When the next tick is.
    pub fn next_tick(&self) -> Instant {
        self.origin + Duration::from_nanos(self.tick_ns.saturating_mul(self.next))
    }
}

/// `d` in nanoseconds, in 64 bits (584 years).
pub fn nanos(d: Duration) -> u64 {
    d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()))
}

/// Nanoseconds from `from` to `to`, 0 if `to` is earlier.
fn nanos_since(from: Instant, to: Instant) -> u64 {
    nanos(to.saturating_duration_since(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timer(t0: Instant, ms: u64, index: u32) -> Timer {
        Timer { at: t0 + MS * ms as u32, index, kind: Kind::Probe }
    }

    fn fired(w: &mut Wheel, at: Instant) -> Vec<u32> {
        let mut due = Vec::new();
        w.expire(at, &mut due);
        let mut got: Vec<u32> = due.iter().map(|t| t.index).collect();
        got.sort_unstable();
        got
    }

    #[test]
    fn timers_fire_once_at_or_after_their_time_never_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(MS, 32 * MS, t0);
        w.schedule(timer(t0, 3, 1));
        w.schedule(Timer { at: t0 + MS * 3 + Duration::from_micros(10), index: 2, kind: Kind::Check });
        w.schedule(timer(t0, 5, 3));
        assert_eq!(fired(&mut w, t0 + 2 * MS), Vec::<u32>::new());
        assert_eq!(fired(&mut w, t0 + 3 * MS), [1]);
        assert_eq!(fired(&mut w, t0 + 4 * MS), [2], "10 µs late is the next tick");
        assert_eq!(fired(&mut w, t0 + 9 * MS), [3]);
        assert_eq!(fired(&mut w, t0 + 20 * MS), Vec::<u32>::new(), "each once");
    }

    #[test]
    fn timers_beyond_the_span_wait_for_their_round_and_a_stall_fires_everything_due() {
        let t0 = Instant::now();
        let mut w = Wheel::new(MS, 16 * MS, t0);
        w.schedule(timer(t0, 40, 7));
        w.schedule(timer(t0, 8, 8));
        assert_eq!(fired(&mut w, t0 + 24 * MS), [8], "slot 8 holds both; 40 ms is a later round");
        assert_eq!(fired(&mut w, t0 + 39 * MS), Vec::<u32>::new());
        assert_eq!(fired(&mut w, t0 + 40 * MS), [7]);
        // Past: scheduled at once for the next tick.
        w.schedule(timer(t0, 1, 9));
        w.schedule(timer(t0, 100, 10));
        assert_eq!(fired(&mut w, t0 + 500 * MS), [9, 10], "a stall of many spans");
        assert!(w.next_tick() > t0 + 500 * MS);
    }
}
