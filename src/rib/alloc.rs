//! Ids handed out to the dataplane (policy ids, counter slots): taken from a
//! pool, given back after a grace period so that a packet still reading the
//! old value never meets the new owner.
//!
//! Grace periods are measured on CLOCK_BOOTTIME, which every process on the
//! host shares and which keeps counting through suspend: a stamp written by
//! one process is still meaningful to the next one that adopts the
//! dataplane, so a short-lived command no longer restarts every grace period
//! (and leaks the ids) when it adopts.

use std::collections::VecDeque;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// How long a freed id or slot waits before reuse: far longer than any program
/// run, so a packet that read the old value never meets the new owner.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// A point on CLOCK_BOOTTIME, in nanoseconds since boot: comparable across
/// processes (the state it is stored in does not survive a reboot either).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Boottime(pub u64);

impl Boottime {
    /// Long before anything: a stamp whose grace period is over.
    pub(crate) const EPOCH: Boottime = Boottime(0);

    pub(crate) fn now() -> Boottime {
        // CLOCK_BOOTTIME exists since Linux 2.6.39; it cannot fail for a valid id.
        clock_gettime(ClockId::CLOCK_BOOTTIME)
            .map(|t| Boottime(u64::try_from(Duration::from(t).as_nanos()).unwrap_or(u64::MAX)))
            .unwrap_or(Boottime(u64::MAX))
    }

    /// Time since the stamp (zero for a stamp in the future).
    pub(crate) fn elapsed(self) -> Duration {
        Duration::from_nanos(Boottime::now().0.saturating_sub(self.0))
    }

    /// Whether the grace period that started at this stamp is over.
    pub(crate) fn grace_over(self) -> bool {
        self.elapsed() >= GRACE
    }
}

/// Ids 1..capacity, freed ones reused oldest first and only after [`GRACE`].
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    next: u32,
    capacity: u32,
    free: VecDeque<(u32, Boottime)>,
    /// Free ids below `next` this pool cannot name (read for one change:
    /// [`Slots::above`]); never handed out, only counted.
    unnamed: u32,
}

impl Slots {
    pub(crate) fn new(capacity: u32) -> Slots {
        Slots { next: 0, capacity, free: VecDeque::new(), unnamed: 0 }
    }

    /// A pool that hands out only ids above `next` (the highest ever handed
    /// out), knowing `unnamed` ids below it are free but not which: what a
    /// process that reads the routes of one change, not the RIB, takes from.
    pub(crate) fn above(next: u32, capacity: u32, unnamed: u32) -> Slots {
        Slots { next, capacity, free: VecDeque::new(), unnamed }
    }

    /// Free ids, in their grace period or not, named or not.
    pub(crate) fn free_count(&self) -> usize {
        self.free.len() + self.unnamed as usize
    }

    /// Whether some free ids are known only by their number: a caller short
    /// of ids must read the whole RIB to find them.
    pub(crate) fn has_unnamed(&self) -> bool {
        self.unnamed > 0
    }

    /// The highest id ever handed out (what the store keeps of a pool).
    pub(crate) fn next(&self) -> u32 {
        self.next
    }

    /// A free id, or `None` when every id is taken or still in its grace period.
    pub(crate) fn take(&mut self) -> Option<u32> {
        if self.free.front().is_some_and(|(_, at)| at.grace_over()) {
            return self.free.pop_front().map(|(id, _)| id);
        }
        if self.next.saturating_add(1) < self.capacity {
            self.next += 1;
            return Some(self.next);
        }
        None
    }

    /// How many ids [`Slots::take`] would hand out now, without waiting.
    pub(crate) fn available_now(&self) -> usize {
        let unused = self.capacity.saturating_sub(1).saturating_sub(self.next) as usize;
        unused + self.free.iter().take_while(|(_, at)| at.grace_over()).count()
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

    /// Frees `id`; it is reused a grace period from now.
    pub(crate) fn give_back(&mut self, id: u32) {
        if id != 0 {
            self.free.push_back((id, Boottime::now()));
        }
    }

    /// Frees an id whose grace period is already over (a policy that
    /// waited its grace period in the graveyard): reusable at once.
    pub(crate) fn give_back_now(&mut self, id: u32) {
        if id != 0 {
            self.free.push_front((id, Boottime::EPOCH));
        }
    }

    /// A pool as a new process finds it: every id up to `next` not in
    /// `in_use` is free, its grace period counted from `freed_at` (the
    /// store's last write: the latest any of them can have been freed).
    /// With `trim`, `next` comes down to the highest id in use, for pools
    /// whose free ids all waited out their grace elsewhere.
    pub(crate) fn rebuild(
        next: u32,
        capacity: u32,
        in_use: impl IntoIterator<Item = u32>,
        freed_at: Boottime,
        trim: bool,
    ) -> Slots {
        let in_use: Vec<u32> = in_use.into_iter().filter(|id| *id != 0 && *id < capacity).collect();
        // An id in use above `next` (state written by hand, or damaged) is
        // never handed out twice: `next` rises to it.
        let highest = in_use.iter().copied().max().unwrap_or(0);
        let mut used = vec![false; next.max(highest) as usize + 1];
        for id in in_use {
            if let Some(u) = used.get_mut(id as usize) {
                *u = true;
            }
        }
        let next = if trim { highest } else { next.max(highest) };
        let free = (1..=next)
            .filter(|id| !used.get(*id as usize).copied().unwrap_or(false))
            .map(|id| (id, freed_at))
            .collect();
        Slots { next, capacity, free, unnamed: 0 }
    }
}

/// A route's counter slots: its total, and one per segment list of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CounterSlots {
    pub route: u32,
    pub lists: Vec<u32>,
}

impl CounterSlots {
    /// Every slot it holds (0: none).
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.route).chain(self.lists.iter().copied()).filter(|s| *s != 0)
    }
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
    fn rebuilt_slots_keep_allocations_and_the_grace_of_their_stamp() {
        let now = Boottime::now();
        let mut r = Slots::rebuild(3, 10, [1, 3], now, false);
        assert_eq!(r.take(), Some(4), "2 is free but still in the grace period of the last write");
        let mut old = Slots::rebuild(3, 10, [1, 3], Boottime(now.0.saturating_sub(2 * GRACE.as_nanos() as u64)), false);
        assert_eq!(old.take(), Some(2), "freed more than a grace period ago, whichever process looks");
    }

    #[test]
    fn trimmed_pools_start_above_the_highest_id_in_use() {
        let mut r = Slots::rebuild(1000, u32::MAX, [2, 5], Boottime::EPOCH, true);
        assert_eq!(r.next(), 5);
        let taken: Vec<_> = (0..4).map(|_| r.take().unwrap()).collect();
        assert_eq!(taken, [1, 3, 4, 6]);
    }

    #[test]
    fn available_now_is_what_take_hands_out_without_waiting() {
        let mut s = Slots::new(4);
        assert_eq!(s.available_now(), 3);
        let (a, _, _) = (s.take().unwrap(), s.take().unwrap(), s.take().unwrap());
        assert_eq!(s.available_now(), 0);
        s.give_back(a);
        assert_eq!(s.available_now(), 0, "in its grace period");
        std::thread::sleep(GRACE);
        assert_eq!(s.available_now(), 1);
        assert_eq!(s.take(), Some(a));
    }

    #[test]
    fn given_back_now_is_reused_first() {
        let mut s = Slots::new(10);
        let (a, b) = (s.take().unwrap(), s.take().unwrap());
        s.give_back(a);
        s.give_back_now(b);
        assert_eq!(s.take(), Some(b));
        assert_eq!(s.take(), Some(3), "a is still in its grace period");
    }
}
