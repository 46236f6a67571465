//! Weighted Maglev (Eisenbud et al., NSDI 2016): the table that spreads a
//! policy's flows over its segment lists in proportion to their weights and
//! moves few flows when the lists change.

use super::policy::{SegmentList, SLOTS};

/// 64-bit FNV-1a: a stable identity for a list, so its Maglev permutation
/// stays the same when other lists come and go.
fn fnv1a(words: impl IntoIterator<Item = u32>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for w in words {
        for b in w.to_be_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The flow table: slot -> list index, by weighted Maglev (Eisenbud et al.,
/// NSDI 2016). Each list walks its own permutation of the slots and claims
/// free ones, as often as its weight allows; a change to one list's weight,
/// or adding or removing a list, moves few flows beyond those that must move.
pub(crate) fn table(lists: &[SegmentList]) -> Vec<u8> {
    struct Walker {
        offset: u64,
        skip: u64,
        next: u64,
        credit: u64,
        weight: u64,
    }
    let m = SLOTS as u64;
    let mut walkers: Vec<Walker> = lists
        .iter()
        .enumerate()
        .map(|(i, l)| {
            // Identical stacks in one policy still get distinct permutations.
            let twins = lists.iter().take(i).filter(|o| o.stack == l.stack).count() as u32;
            let h = fnv1a(l.stack.labels().iter().map(|x| x.value()).chain([twins]));
            Walker { offset: h % m, skip: (h >> 32) % (m - 1) + 1, next: 0, credit: 0, weight: u64::from(l.weight) }
        })
        .collect();
    let max_weight = walkers.iter().map(|w| w.weight).max().unwrap_or(1);
    let mut table = vec![u8::MAX; SLOTS];
    let mut filled = 0;
    while filled < SLOTS && !walkers.is_empty() {
        for (i, w) in walkers.iter_mut().enumerate() {
            w.credit += w.weight;
            while w.credit >= max_weight && filled < SLOTS {
                w.credit -= max_weight;
                // Each walk visits every slot within m steps (m prime, skip < m), so a free one is found.
                while let Some(slot) = table.get_mut(((w.offset + w.next * w.skip) % m) as usize) {
                    w.next += 1;
                    if *slot == u8::MAX {
                        *slot = i as u8;
                        filled += 1;
                        break;
                    }
                }
            }
        }
    }
    table
}

/// The flow table of `lists` with the lists whose bit is set in `down` out
/// of service (S-BFD found their path dead): the slots of a live list stay
/// its own, and only the dead lists' slots are handed out, each to the live
/// list that the table of the live lists alone gives it. Recomputing the
/// table without the dead lists would also move some flows between live
/// lists (Maglev's fill order shifts); this moves exactly the flows that
/// must move. With every list down (refused by `Policy`), the full table.
pub(crate) fn table_with_down(lists: &[SegmentList], down: u8) -> Vec<u8> {
    let full = table(lists);
    let is_down = |i: usize| i < 8 && down & (1 << i) != 0;
    let live: Vec<usize> = (0..lists.len()).filter(|i| !is_down(*i)).collect();
    if live.len() == lists.len() || live.is_empty() {
        return full;
    }
    let subset: Vec<SegmentList> = live.iter().filter_map(|i| lists.get(*i).cloned()).collect();
    let fallback = table(&subset);
    full.iter()
        .zip(&fallback)
        .map(
            |(&own, &other)| {
                if is_down(usize::from(own)) {
                    live.get(usize::from(other)).map_or(own, |i| *i as u8)
                } else {
                    own
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::label::{Label, LabelStack};

    fn lists(spec: &[(&str, u16)]) -> Vec<SegmentList> {
        spec.iter().map(|(s, w)| SegmentList { stack: s.parse().unwrap(), weight: *w }).collect()
    }

    fn shares(table: &[u8], n: usize) -> Vec<f64> {
        (0..n).map(|i| table.iter().filter(|x| **x as usize == i).count() as f64 / table.len() as f64).collect()
    }

    #[test]
    fn maglev_meets_the_weights() {
        for weights in [vec![7u16, 3], vec![1, 1, 1], vec![1, 99], vec![5, 1, 1, 1, 1, 1, 1, 1]] {
            let ls: Vec<SegmentList> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| SegmentList { stack: LabelStack::single(Label::new(16 + i as u32).unwrap()), weight: *w })
                .collect();
            let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
            let got = shares(&table(&ls), ls.len());
            for (g, w) in got.iter().zip(&weights) {
                assert!((g - f64::from(*w) / total).abs() < 0.005, "{weights:?}: {got:?}");
            }
        }
    }

    /// Share of slots whose list changes, against the share that had to.
    fn moved(a: &[SegmentList], b: &[SegmentList]) -> (f64, f64) {
        let (ta, tb) = (table(a), table(b));
        let name = |ls: &[SegmentList], i: u8| ls[i as usize].stack.clone();
        let moved = ta.iter().zip(&tb).filter(|(x, y)| name(a, **x) != name(b, **y)).count() as f64 / SLOTS as f64;
        // The least that must move: the total share that changed owner.
        let share = |ls: &[SegmentList], s: &LabelStack| {
            let total: f64 = ls.iter().map(|l| f64::from(l.weight)).sum();
            ls.iter().filter(|l| &l.stack == s).map(|l| f64::from(l.weight)).sum::<f64>() / total
        };
        let all: Vec<LabelStack> = a.iter().chain(b).map(|l| l.stack.clone()).collect();
        let need = all
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .iter()
            .map(|s| (share(a, s) - share(b, s)).max(0.0))
            .sum();
        (moved, need)
    }

    #[test]
    fn maglev_moves_little_more_than_it_must() {
        let base = lists(&[("100", 1), ("200", 1), ("300", 1)]);
        let cases = [
            lists(&[("100", 1), ("200", 1), ("300", 1), ("400", 1)]),
            lists(&[("100", 1), ("300", 1)]),
            lists(&[("100", 2), ("200", 1), ("300", 1)]),
            lists(&[("100", 7), ("200", 3), ("300", 1)]),
        ];
        for after in cases {
            let (moved, need) = moved(&base, &after);
            assert!(moved <= need + 0.05, "{after:?}: moved {moved:.3}, needed {need:.3}");
        }
    }

    /// Recomputing without a list moves other flows too; taking a list out
    /// of service moves only its own, and spreads them by the live weights.
    #[test]
    fn a_list_out_of_service_moves_only_its_own_flows() {
        let ls = lists(&[("100", 1), ("200", 1), ("300", 2)]);
        let full = table(&ls);
        let name = |ls: &[SegmentList], i: u8| ls[i as usize].stack.clone();
        let without: Vec<SegmentList> = vec![ls[0].clone(), ls[2].clone()];
        let recomputed = table(&without);
        let collateral =
            full.iter().zip(&recomputed).filter(|(a, b)| **a != 1 && name(&ls, **a) != name(&without, **b)).count();
        // Not a claim about Maglev, the reason for table_with_down: record what it does.
        println!("recomputing without list 1 moves {collateral} slots of live lists");
        let masked = table_with_down(&ls, 0b010);
        for (a, b) in full.iter().zip(&masked) {
            if *a == 1 {
                assert_ne!(*b, 1, "a slot of the dead list stayed on it");
            } else {
                assert_eq!(a, b, "a slot of a live list moved");
            }
        }
        let got = shares(&masked, 3);
        assert!((got[0] - 1.0 / 3.0).abs() < 0.02 && (got[2] - 2.0 / 3.0).abs() < 0.02, "{got:?}");
        assert_eq!(table_with_down(&ls, 0), full);
        assert_eq!(table_with_down(&ls, 0b111), full);
    }

    /// Random policies of up to 8 lists, changed at random (a weight, a list
    /// added, a list removed): never more than 5 points beyond what must move.
    #[test]
    fn maglev_disruption_property() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let n = 1 + next(8) as usize;
            let mut before: Vec<SegmentList> = (0..n)
                .map(|i| {
                    let range = if next(2) == 0 { 10 } else { 1000 };
                    SegmentList {
                        stack: LabelStack::single(Label::new(100 + i as u32).unwrap()),
                        weight: 1 + next(range) as u16,
                    }
                })
                .collect();
            let mut after = before.clone();
            match next(3) {
                0 => {
                    let i = next(n as u64) as usize;
                    after[i].weight = 1 + next(1000) as u16;
                }
                1 if n < 8 => after.push(SegmentList {
                    stack: LabelStack::single(Label::new(900).unwrap()),
                    weight: 1 + next(100) as u16,
                }),
                _ if n > 1 => {
                    after.remove(next(n as u64) as usize);
                }
                _ => before.push(SegmentList { stack: LabelStack::single(Label::new(901).unwrap()), weight: 5 }),
            }
            let (moved, need) = moved(&before, &after);
            assert!(moved <= need + 0.05, "{before:?} -> {after:?}: moved {moved:.3}, needed {need:.3}");
        }
    }
}
