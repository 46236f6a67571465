//! Per-route counters read from their slots, and the program's counters.

use super::*;

/// Per-route counters: what the route labelled, in total and per segment list.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RouteCounters {
    /// False when the route got no counter slot (more routes and lists than
    /// `EncapsulatorBuilder::max_counted_routes`): its counts then read zero.
    pub counted: bool,
    /// Everything the route labelled.
    pub labelled: Counter,
    /// Per segment list, in the policy's order (one entry for a plain route).
    pub lists: Vec<Counter>,
}

/// A route's counter slots; a route on a shared object counts its lists
/// there (shared by its routes).
pub(super) fn slots_of(rib: &Rib, id: &RouteId) -> CounterSlots {
    let mut slots = rib.counters_of.get(id).cloned().unwrap_or_default();
    if let Some(o) = rib.object_of(id) {
        slots.lists = o.lists.clone();
    }
    slots
}

/// A route's counters from its slots, each read by `counter`.
pub(super) fn counters_of(
    slots: &CounterSlots,
    counter: impl Fn(u32) -> Result<Counter, MapError>,
) -> Result<RouteCounters, MapError> {
    let labelled = counter(slots.route)?;
    let counted = slots.route != 0 && slots.lists.iter().all(|s| *s != 0);
    let lists = if slots.lists.is_empty() {
        vec![labelled]
    } else {
        slots.lists.iter().map(|s| counter(*s)).collect::<Result<_, _>>()?
    };
    Ok(RouteCounters { counted, labelled, lists })
}

impl Fib {
    /// What the route for exactly `prefix` labelled; `None` without such a route.
    pub(crate) fn route_counters(&self, table: Table, prefix: IpNetwork) -> Result<Option<RouteCounters>, RouteError> {
        let prefix = prefix::check(prefix)?;
        let Some(slots) =
            self.read(|rib| rib.routes.contains_key(&(table, prefix)).then(|| slots_of(rib, &(table, prefix))))
        else {
            return Ok(None);
        };
        Ok(Some(counters_of(&slots, |slot| self.slot_counter(slot))?))
    }

    /// Every route of every table, resolved, with its counters: one pass
    /// over the RIB and one batched read of the counter pool, not a lock and
    /// a syscall per route.
    pub(crate) fn counted_routes(&self) -> Result<Vec<(Table, Route, RouteCounters, bool)>, MapError> {
        // Set-aside routes too (flagged): they are part of the state an
        // export must carry, or applying it would remove them.
        let rows: Vec<(Table, Route, CounterSlots, bool)> = self.read(|rib| {
            let in_force =
                rib.routes.iter().map(|(id, r)| (id.0, rib.resolve(id, r).into_owned(), slots_of(rib, id), false));
            let aside =
                rib.shadowed.iter().map(|(p, r)| (Table::Main, r.clone(), slots_of(rib, &(Table::Main, *p)), true));
            in_force.chain(aside).collect()
        });
        let last = rows.iter().flat_map(|(_, _, s, _)| std::iter::once(s.route).chain(s.lists.iter().copied())).max();
        let (values, per_slot) = match last {
            Some(last) if last > 0 => match self.maps.route_counters.percpu_array_values(last) {
                Ok(read) => read,
                // A kernel without batched lookups on arrays (ENOTSUPP, 524,
                // has no name here): a lookup per slot, which says what is wrong
                // if anything else is.
                Err(e) => {
                    log::debug!("{e}: the counters are read one slot at a time");
                    return rows
                        .into_iter()
                        .map(|(table, route, slots, aside)| {
                            Ok((table, route, counters_of(&slots, |s| self.slot_counter(s))?, aside))
                        })
                        .collect();
                }
            },
            _ => (Vec::new(), 0),
        };
        let stride = std::mem::size_of::<types::counter_value>().div_ceil(8) * 8;
        let slot = |slot: u32| -> Result<Counter, MapError> {
            let mut total = Counter::default();
            if slot == 0 || per_slot == 0 {
                return Ok(total);
            }
            let at = slot as usize * per_slot;
            for cpu in values.get(at..at + per_slot).unwrap_or_default().chunks(stride) {
                if let Some(v) = abi::from_bytes::<types::counter_value>(cpu) {
                    total = total.plus(Counter { packets: v.packets, bytes: v.bytes });
                }
            }
            Ok(total)
        };
        rows.into_iter()
            .map(|(table, route, slots, aside)| Ok((table, route, counters_of(&slots, slot)?, aside)))
            .collect()
    }

    /// One counter slot summed over CPUs; zero for slot 0 (not counted).
    pub(super) fn slot_counter(&self, slot: u32) -> Result<Counter, MapError> {
        let mut total = Counter::default();
        if slot == 0 {
            return Ok(total);
        }
        for bytes in self.maps.route_counters.lookup_percpu(&slot.to_ne_bytes())? {
            if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                total = total.plus(Counter { packets: v.packets, bytes: v.bytes });
            }
        }
        Ok(total)
    }

    pub(crate) fn stats(&self) -> Result<Stats, MapError> {
        let mut stats = Stats::default();
        for index in 0..abi::COUNTERS {
            for bytes in self.maps.counters.lookup_percpu(&index.to_ne_bytes())? {
                if let Some(v) = abi::from_bytes::<types::counter_value>(&bytes) {
                    stats.accumulate(index, Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        Ok(stats)
    }
}
