//! What user space remembers about the tables: ids and counter slots it
//! handed out, host addresses, set-aside routes, source prefixes. The kernel
//! holds everything else.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::route::{Route, Table};

/// How long a freed id or slot waits before reuse: far longer than any program
/// run, so a packet that read the old value never meets the new owner.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// Ids 1..capacity, freed ones reused oldest first and only after [`GRACE`].
#[derive(Debug)]
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

    pub(crate) fn give_back(&mut self, id: u32) {
        if id != 0 {
            self.free.push_back((id, Instant::now()));
        }
    }
}

/// A route's identity: its table and prefix.
pub(crate) type RouteId = (Table, IpNetwork);

/// A route's counter slots: its total, and one per segment list of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CounterSlots {
    pub route: u32,
    pub lists: Vec<u32>,
}

#[derive(Debug)]
pub(crate) struct Tables {
    /// Host addresses installed as LOCAL entries.
    pub local: BTreeSet<IpAddr>,
    /// Routes hidden by a host address that took their /32 or /128.
    pub shadowed: HashMap<IpNetwork, Route>,
    /// Source prefixes and the alternate table each selects.
    pub sources: BTreeMap<IpNetwork, Table>,
    /// The policy id of each policy route, kept while it stays a policy route.
    pub policy_of: HashMap<RouteId, u32>,
    pub policy_ids: Slots,
    /// Policies no route names any more, deleted once their grace period is over.
    pub graveyard: Vec<(u32, Instant)>,
    /// Each route's counter slots, kept across replacements.
    pub counters_of: HashMap<RouteId, CounterSlots>,
    pub counter_slots: Slots,
}

impl Tables {
    pub(crate) fn new(counter_capacity: u32) -> Tables {
        Tables {
            local: BTreeSet::new(),
            shadowed: HashMap::new(),
            sources: BTreeMap::new(),
            policy_of: HashMap::new(),
            policy_ids: Slots::new(u32::MAX),
            graveyard: Vec::new(),
            counters_of: HashMap::new(),
            counter_slots: Slots::new(counter_capacity),
        }
    }

    /// Policies whose grace period is over, removed from the graveyard.
    pub(crate) fn expired_policies(&mut self) -> Vec<u32> {
        let (expired, waiting): (Vec<_>, Vec<_>) = self.graveyard.drain(..).partition(|(_, at)| at.elapsed() >= GRACE);
        self.graveyard = waiting;
        expired.into_iter().map(|(id, _)| id).collect()
    }

    /// A route's counter slots for `lists` segment lists (0 for a plain route):
    /// its own where it has them, new ones otherwise (0: none left). Returns the
    /// slots and those newly taken, which the caller zeroes or gives back.
    pub(crate) fn counters_for(&mut self, id: RouteId, lists: usize) -> (CounterSlots, Vec<u32>) {
        let mut slots = self.counters_of.get(&id).cloned().unwrap_or_default();
        let mut fresh = Vec::new();
        let mut take = |pool: &mut Slots| {
            let s = pool.take().unwrap_or(0);
            if s != 0 {
                fresh.push(s);
            }
            s
        };
        if slots.route == 0 {
            slots.route = take(&mut self.counter_slots);
        }
        while slots.lists.len() < lists {
            slots.lists.push(take(&mut self.counter_slots));
        }
        (slots, fresh)
    }

    /// Records a route's slots after the kernel accepted it; frees list slots
    /// beyond `lists`.
    pub(crate) fn keep_counters(&mut self, id: RouteId, mut slots: CounterSlots, lists: usize) {
        for s in slots.lists.drain(lists.min(slots.lists.len())..) {
            self.counter_slots.give_back(s);
        }
        self.counters_of.insert(id, slots);
    }

    /// Frees a removed route's slots.
    pub(crate) fn drop_counters(&mut self, id: &RouteId) {
        if let Some(slots) = self.counters_of.remove(id) {
            self.counter_slots.give_back(slots.route);
            for s in slots.lists {
                self.counter_slots.give_back(s);
            }
        }
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
}
