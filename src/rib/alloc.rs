//! Ids handed out to the dataplane (policy ids, counter slots): taken from a
//! pool, given back after a grace period so that a packet still reading the
//! old value never meets the new owner.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a freed id or slot waits before reuse: far longer than any program
/// run, so a packet that read the old value never meets the new owner.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// Ids 1..capacity, freed ones reused oldest first and only after [`GRACE`].
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    next: u32,
    capacity: u32,
    free: VecDeque<(u32, Instant)>,
}

impl Slots {
    pub(crate) fn new(capacity: u32) -> Slots {
        Slots { next: 0, capacity, free: VecDeque::new() }
    }

    /// A free id, or `None` when every id is taken or still in its grace period.
    pub(crate) fn take(&mut self) -> Option<u32> {
        if self.free.front().is_some_and(|(_, at)| at.elapsed() >= GRACE) {
            return self.free.pop_front().map(|(id, _)| id);
        }
        if self.next.saturating_add(1) < self.capacity {
            self.next += 1;
            return Some(self.next);
        }
        None
    }

    /// A free id, waiting out the grace period of the oldest freed one when
    /// nothing else is left (a table at its capacity that just let go of an
    /// entry); `None` when every id is taken.
    pub(crate) fn take_or_wait(&mut self) -> Option<u32> {
        if let Some(id) = self.take() {
            return Some(id);
        }
        let (_, freed) = self.free.front()?;
        std::thread::sleep(GRACE.saturating_sub(freed.elapsed()));
        self.take()
    }

    pub(crate) fn give_back(&mut self, id: u32) {
        if id != 0 {
            self.free.push_back((id, Instant::now()));
        }
    }

    /// (highest id ever handed out, capacity, freed ids oldest first): what
    /// is persisted. Grace periods are not: they restart on restore.
    pub(crate) fn snapshot(&self) -> (u32, u32, Vec<u32>) {
        (self.next, self.capacity, self.free.iter().map(|(id, _)| *id).collect())
    }

    /// The inverse of [`Slots::snapshot`]; every freed id starts a new grace
    /// period, which is never shorter than the one it had.
    pub(crate) fn restore(next: u32, capacity: u32, free: Vec<u32>) -> Slots {
        let now = Instant::now();
        Slots { next, capacity, free: free.into_iter().map(|id| (id, now)).collect() }
    }
}

/// A route's counter slots: its total, and one per segment list of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CounterSlots {
    pub route: u32,
    pub lists: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_only_after_the_grace_period() {
        let mut s = Slots::new(3);
        assert_eq!((s.take(), s.take(), s.take()), (Some(1), Some(2), None));
        s.give_back(1);
        assert_eq!(s.take(), None, "still in its grace period");
        std::thread::sleep(GRACE);
        assert_eq!(s.take(), Some(1));
    }

    #[test]
    fn restored_slots_keep_allocations_and_restart_grace() {
        let mut s = Slots::new(10);
        let _ = (s.take(), s.take(), s.take());
        s.give_back(2);
        let (next, cap, free) = s.snapshot();
        let mut r = Slots::restore(next, cap, free);
        assert_eq!(r.take(), Some(4), "2 is still in its grace period, 1 and 3 are taken");
        std::thread::sleep(GRACE);
        assert_eq!(r.take(), Some(2));
    }
}
