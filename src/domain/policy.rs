//! SR policies (RFC 9256) on the host: weighted segment lists, entropy labels,
//! and the weighted-Maglev table that spreads flows over the lists.

use std::fmt;
use std::str::FromStr;

use crate::abi::{types, MAX_LABELS};
use crate::label::{Label, LabelError, LabelStack, LabelStackEntry, TrafficClass};

/// Segment lists one policy may hold.
pub const MAX_SEGMENT_LISTS: usize = types::encap_limits::ENCAP_MAX_SEGMENT_LISTS.0 as usize;
/// Slots of a policy's flow table: a flow takes list `flow_table()[hash % POLICY_SLOTS]`.
pub const POLICY_SLOTS: usize = SLOTS;
pub(crate) const SLOTS: usize = types::encap_limits::ENCAP_POLICY_SLOTS.0 as usize;
const EL_BOTTOM: u8 = types::encap_limits::ENCAP_EL_BOTTOM.0 as u8;
/// The Entropy Label Indicator (RFC 6790).
const ELI: u32 = 7;

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No segment list, or more than eight.
    #[error("a policy holds 1 to {max} segment lists, not {count}")]
    ListCount {
        /// Lists given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A weight of 0 (RFC 9256: weights are positive).
    #[error("segment list {index} has weight 0; weights are 1..=65535")]
    ZeroWeight {
        /// Which list (0-based).
        index: usize,
    },
    /// The entropy label would make a stack deeper than the dataplane pushes.
    #[error(
        "segment list {index} has {labels} labels: with the entropy label pair it would be {} entries, \
         more than the {max} pushed; shorten the list or drop the entropy label",
        labels + 2
    )]
    TooDeepForEntropyLabel {
        /// Which list.
        index: usize,
        /// Its labels.
        labels: usize,
        /// The deepest stack.
        max: usize,
    },
    /// An entropy label above the first label would hide the path from the next router.
    #[error("the entropy label must go under at least one label (N >= 1), not {after}")]
    EntropyLabelOnTop {
        /// The N given.
        after: usize,
    },
    /// A label or stack in the text was refused.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// Text that is not `L1/L2@W1,L3@W2`.
    #[error("{input:?} is not a list of segment lists (expected e.g. `16001/16002@7,16003@3`)")]
    Parse {
        /// The text given.
        input: String,
    },
}

/// One segment list of a policy: a label stack (top first) and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentList {
    /// The labels, top first; the first is the first segment.
    pub stack: LabelStack,
    /// Share of the flows, relative to the other lists' weights (1..=65535).
    pub weight: u16,
}

/// Where the entropy label pair (ELI, EL) goes in every pushed stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EntropyLabel {
    /// Under all the labels (the default, RFC 6790's usual place).
    #[default]
    Bottom,
    /// Under the first N labels (N >= 1), so routers that hash on the top few
    /// labels see it; at the bottom of lists with N labels or fewer.
    After(usize),
}

/// An SR policy's candidate path as the host applies it: 1 to 8 weighted
/// segment lists, each flow pinned to one by a hash of its addresses,
/// protocol and ports, and optionally an entropy label.
///
/// ```
/// use lnetd_host_encap::Policy;
/// // The proof of concept's 70/30 policy, expanded on the host instead of the router.
/// let policy: Policy = "16001/16002@7,16003/16004@3".parse()?;
/// assert_eq!(policy.lists().len(), 2);
/// # Ok::<(), lnetd_host_encap::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    lists: Vec<SegmentList>,
    entropy: Option<EntropyLabel>,
}

impl Policy {
    /// A policy of `lists`, with an entropy label if `entropy` is given.
    ///
    /// # Errors
    /// [`PolicyError`]: no list or more than 8, a weight of 0, a list too deep
    /// for the entropy label pair, an entropy label on top.
    pub fn new(lists: Vec<SegmentList>, entropy: Option<EntropyLabel>) -> Result<Policy, PolicyError> {
        if lists.is_empty() || lists.len() > MAX_SEGMENT_LISTS {
            return Err(PolicyError::ListCount { count: lists.len(), max: MAX_SEGMENT_LISTS });
        }
        if let Some(index) = lists.iter().position(|l| l.weight == 0) {
            return Err(PolicyError::ZeroWeight { index });
        }
        if let Some(EntropyLabel::After(0)) = entropy {
            return Err(PolicyError::EntropyLabelOnTop { after: 0 });
        }
        if entropy.is_some() {
            if let Some((index, l)) = lists.iter().enumerate().find(|(_, l)| l.stack.len() + 2 > MAX_LABELS) {
                return Err(PolicyError::TooDeepForEntropyLabel { index, labels: l.stack.len(), max: MAX_LABELS });
            }
        }
        Ok(Policy { lists, entropy })
    }

    /// One list, weight 1, no entropy label: a plain route.
    pub fn single(stack: LabelStack) -> Policy {
        Policy { lists: vec![SegmentList { stack, weight: 1 }], entropy: None }
    }

    /// The same policy with (or without) an entropy label.
    ///
    /// # Errors
    /// As [`Policy::new`].
    pub fn with_entropy_label(self, entropy: Option<EntropyLabel>) -> Result<Policy, PolicyError> {
        Policy::new(self.lists, entropy)
    }

    /// The segment lists.
    pub fn lists(&self) -> &[SegmentList] {
        &self.lists
    }

    /// The entropy label placement, if any.
    pub fn entropy_label(&self) -> Option<EntropyLabel> {
        self.entropy
    }

    /// True for one list without an entropy label: pushed straight from the
    /// route, with no second lookup.
    pub(crate) fn is_plain(&self) -> bool {
        self.lists.len() == 1 && self.entropy.is_none()
    }

    /// The table the dataplane uses to pick a list: a flow whose hash is `h`
    /// (see the crate docs for the hash) takes list `flow_table()[h % POLICY_SLOTS]`.
    /// The same lists and weights always give the same table, on every host.
    pub fn flow_table(&self) -> Vec<u8> {
        maglev_table(&self.lists)
    }

    /// Each list's share of the flows, from the weights.
    pub fn shares(&self) -> Vec<f64> {
        let total: f64 = self.lists.iter().map(|l| f64::from(l.weight)).sum();
        self.lists.iter().map(|l| f64::from(l.weight) / total).collect()
    }
}

impl From<LabelStack> for Policy {
    fn from(stack: LabelStack) -> Self {
        Policy::single(stack)
    }
}

impl FromStr for Policy {
    type Err = PolicyError;
    /// `L1/L2[@W],L3[@W]...`: comma-separated lists, `@W` a weight (default 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse_err = || PolicyError::Parse { input: s.to_owned() };
        let lists = s
            .split(',')
            .map(|part| {
                let (stack, weight) = match part.split_once('@') {
                    Some((stack, w)) => (stack, w.trim().parse::<u16>().map_err(|_| parse_err())?),
                    None => (part, 1),
                };
                Ok(SegmentList { stack: stack.parse()?, weight })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Policy::new(lists, None)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.lists.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", l.stack)?;
            if self.lists.len() > 1 || l.weight != 1 {
                write!(f, "@{}", l.weight)?;
            }
        }
        match self.entropy {
            Some(EntropyLabel::Bottom) => f.write_str(" +EL"),
            Some(EntropyLabel::After(n)) => write!(f, " +EL@{n}"),
            None => Ok(()),
        }
    }
}

/// The dataplane's form of one list: entries with label, TC and S encoded,
/// TTL zero, the ELI and a zero EL placed where `entropy` says.
pub(crate) fn encode_list(stack: &LabelStack, tc: TrafficClass, entropy: Option<EntropyLabel>) -> types::segment_list {
    let labels: Vec<u32> = stack.labels().iter().map(|l| l.value()).collect();
    let (mut words, el_index, el_after) = match entropy {
        None => (labels, 0, 0),
        Some(e) => {
            let (after, config) = match e {
                EntropyLabel::Bottom => (labels.len(), EL_BOTTOM),
                EntropyLabel::After(n) => (n.min(labels.len()), n.min(usize::from(EL_BOTTOM - 1)) as u8),
            };
            let mut w = labels;
            w.splice(after..after, [ELI, 0]);
            (w, after + 1, config)
        }
    };
    words.truncate(MAX_LABELS);
    let mut out =
        types::segment_list { depth: words.len() as u16, el_index: el_index as u8, el_after, entries: [0; MAX_LABELS] };
    let last = words.len().saturating_sub(1);
    for (i, (slot, label)) in out.entries.iter_mut().zip(words).enumerate() {
        let entry = LabelStackEntry { label, tc: tc.value(), bottom: i == last, ttl: 0 };
        *slot = u32::from_ne_bytes(entry.encode());
    }
    out
}

/// Reads back what [`encode_list`] wrote: the stack, the TC and the entropy placement.
pub(crate) fn decode_list(list: &types::segment_list) -> Option<(LabelStack, TrafficClass, Option<EntropyLabel>)> {
    let depth = usize::from(list.depth);
    if !(1..=MAX_LABELS).contains(&depth) {
        return None;
    }
    let entries: Vec<LabelStackEntry> =
        list.entries.iter().take(depth).map(|w| LabelStackEntry::decode(w.to_ne_bytes())).collect();
    let el_index = usize::from(list.el_index);
    let (labels, entropy): (Vec<u32>, _) = if el_index == 0 {
        (entries.iter().map(|e| e.label).collect(), None)
    } else {
        let e =
            if list.el_after == EL_BOTTOM { EntropyLabel::Bottom } else { EntropyLabel::After(list.el_after.into()) };
        let labels = entries.iter().enumerate().filter(|(i, _)| *i + 1 != el_index && *i != el_index);
        (labels.map(|(_, e)| e.label).collect(), Some(e))
    };
    let labels = labels.into_iter().map(|l| Label::new(l).ok()).collect::<Option<Vec<_>>>()?;
    let tc = TrafficClass::new(entries.first()?.tc).ok()?;
    Some((LabelStack::new(labels).ok()?, tc, entropy))
}

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
pub(crate) fn maglev_table(lists: &[SegmentList]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let got = shares(&maglev_table(&ls), ls.len());
            for (g, w) in got.iter().zip(&weights) {
                assert!((g - f64::from(*w) / total).abs() < 0.005, "{weights:?}: {got:?}");
            }
        }
    }

    /// Share of slots whose list changes, against the share that had to.
    fn moved(a: &[SegmentList], b: &[SegmentList]) -> (f64, f64) {
        let (ta, tb) = (maglev_table(a), maglev_table(b));
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
        let mut worst: f64 = 0.0;
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
            worst = worst.max(moved - need);
            assert!(moved <= need + 0.05, "{before:?} -> {after:?}: moved {moved:.3}, needed {need:.3}");
        }
        assert!(worst >= 0.0);
    }

    #[test]
    fn policy_rules() {
        assert!(matches!(Policy::new(vec![], None), Err(PolicyError::ListCount { count: 0, .. })));
        assert!(matches!(
            "1000@1,1001@1,1002,1003,1004,1005,1006,1007,1008".parse::<Policy>(),
            Err(PolicyError::ListCount { count: 9, .. })
        ));
        assert!(matches!("100@0".parse::<Policy>(), Err(PolicyError::ZeroWeight { index: 0 })));
        assert!(matches!("100@x".parse::<Policy>(), Err(PolicyError::Parse { .. })));
        assert!(matches!("100@70000".parse::<Policy>(), Err(PolicyError::Parse { .. })));
        assert!(matches!("3@1".parse::<Policy>(), Err(PolicyError::Label(_))));
        let deep: Policy = [&["100"; 15][..]].concat().join("/").parse().unwrap();
        assert!(matches!(
            deep.clone().with_entropy_label(Some(EntropyLabel::Bottom)),
            Err(PolicyError::TooDeepForEntropyLabel { labels: 15, .. })
        ));
        let ok: Policy = [&["100"; 14][..]].concat().join("/").parse().unwrap();
        assert!(ok.with_entropy_label(Some(EntropyLabel::Bottom)).is_ok());
        let p: Policy = "16001/16002@7,16003@3".parse().unwrap();
        assert_eq!(p.to_string(), "16001/16002@7,16003@3");
        assert!(matches!(
            p.with_entropy_label(Some(EntropyLabel::After(0))),
            Err(PolicyError::EntropyLabelOnTop { .. })
        ));
    }

    #[test]
    fn lists_encode_the_entropy_label_pair_and_round_trip() {
        let stack: LabelStack = "100/200/300".parse().unwrap();
        let tc = TrafficClass::new(2).unwrap();
        for (entropy, want) in [
            (None, vec![100, 200, 300]),
            (Some(EntropyLabel::Bottom), vec![100, 200, 300, 7, 0]),
            (Some(EntropyLabel::After(1)), vec![100, 7, 0, 200, 300]),
            (Some(EntropyLabel::After(9)), vec![100, 200, 300, 7, 0]),
        ] {
            let list = encode_list(&stack, tc, entropy);
            let entries: Vec<LabelStackEntry> = list.entries[..usize::from(list.depth)]
                .iter()
                .map(|w| LabelStackEntry::decode(w.to_ne_bytes()))
                .collect();
            assert_eq!(entries.iter().map(|e| e.label).collect::<Vec<_>>(), want, "{entropy:?}");
            assert_eq!(entries.iter().filter(|e| e.bottom).count(), 1);
            assert!(entries.last().unwrap().bottom);
            if entropy.is_some() {
                assert_eq!(want[usize::from(list.el_index)], 0);
                assert_eq!(want[usize::from(list.el_index) - 1], 7);
            }
            assert_eq!(decode_list(&list), Some((stack.clone(), tc, entropy)));
        }
    }
}
