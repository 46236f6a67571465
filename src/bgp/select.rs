//! RFC 9256 on the host: the candidate paths BGP taught, per (color,
//! endpoint), become at most one active policy.
//!
//! - A segment list is usable when it has 1 to 16 segments, all SR-MPLS
//!   label SIDs (type A) with valid labels, and a weight above 0. A list with
//!   another segment type (SRv6, or an IP address to resolve) is left out:
//!   this headend cannot push it, and half a list would be a wrong path.
//! - A candidate path is valid when at least one of its lists is usable
//!   (RFC 9256 section 5.1).
//! - The active candidate path is the valid one with the highest preference;
//!   a tie goes to the higher distinguisher (section 2.9's last tie-breaker;
//!   every path here has the same protocol-origin and originator: BGP via
//!   one daemon).
//! - The active path's usable lists and weights (at most 8: the first 8 are
//!   kept) become a [`Policy`]; weights above 65,535 are scaled down in
//!   proportion.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::domain::label::{Label, LabelStack};
use crate::domain::policy::{Policy, SegmentList, MAX_SEGMENT_LISTS};

/// An SR policy's identity on a headend: (color, endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// The color routes are steered by.
    pub color: u32,
    /// The endpoint (a route's next hop).
    pub endpoint: IpAddr,
}

impl fmt::Display for PolicyKey {
    /// `color 100 endpoint 192.0.2.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "color {} endpoint {}", self.color, self.endpoint)
    }
}

/// One segment list of a candidate path, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateList {
    /// Its weight (RFC 9830: absent means 1).
    pub weight: u32,
    /// Its type-A segments' labels, top first.
    pub labels: Vec<u32>,
    /// How many segments of other types it had (then it is not usable).
    pub unsupported: u32,
}

/// A candidate path (one SR Policy NLRI) as received from BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The NLRI's distinguisher.
    pub distinguisher: u32,
    /// Color and endpoint.
    pub key: PolicyKey,
    /// Its preference (default 100).
    pub preference: u32,
    /// The binding SID, when one was given as an MPLS label.
    pub binding_sid: Option<u32>,
    /// The segment lists.
    pub lists: Vec<CandidateList>,
    /// Segments of types other than A, over all lists (counted, logged).
    pub ignored_segments: u32,
}

/// The outcome of selection for one (color, endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The active candidate path's distinguisher (`None`: no valid candidate).
    pub distinguisher: Option<u32>,
    /// Its preference.
    pub preference: u32,
    /// Its binding SID.
    pub binding_sid: Option<u32>,
    /// The policy routes colored with this (color, endpoint) are steered into; `None`: invalid.
    pub policy: Option<Policy>,
    /// How many candidate paths were learned.
    pub candidates: usize,
}

impl Candidate {
    /// The policy this candidate path would install, if it is valid.
    pub fn policy(&self) -> Option<Policy> {
        let usable: Vec<(u32, LabelStack)> = self
            .lists
            .iter()
            .filter(|l| l.unsupported == 0 && l.weight > 0)
            .filter_map(|l| {
                let labels: Option<Vec<Label>> = l.labels.iter().map(|v| Label::new(*v).ok()).collect();
                Some((l.weight, LabelStack::new(labels?).ok()?))
            })
            .take(MAX_SEGMENT_LISTS)
            .collect();
        let max = usable.iter().map(|(w, _)| *w).max()?;
        let scale = max.div_ceil(u32::from(u16::MAX)).max(1);
        let lists = usable
            .into_iter()
            .map(|(w, stack)| SegmentList { stack, weight: u16::try_from((w / scale).max(1)).unwrap_or(u16::MAX) })
            .collect();
        Policy::new(lists, None).ok()
    }
}

/// Selects the active candidate path of every (color, endpoint) that has
/// candidates.
pub fn select<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> BTreeMap<PolicyKey, Selected> {
    let mut by_key: HashMap<PolicyKey, Vec<&Candidate>> = HashMap::new();
    for c in candidates {
        by_key.entry(c.key).or_default().push(c);
    }
    by_key
        .into_iter()
        .map(|(key, mut cands)| {
            let count = cands.len();
            // Highest preference first, then highest distinguisher.
            cands.sort_by_key(|c| std::cmp::Reverse((c.preference, c.distinguisher)));
            let active = cands.iter().find_map(|c| c.policy().map(|p| (*c, p)));
            let selected = match active {
                Some((c, policy)) => Selected {
                    distinguisher: Some(c.distinguisher),
                    preference: c.preference,
                    binding_sid: c.binding_sid,
                    policy: Some(policy),
                    candidates: count,
                },
                None => {
                    Selected { distinguisher: None, preference: 0, binding_sid: None, policy: None, candidates: count }
                }
            };
            (key, selected)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(d: u32, pref: u32, lists: &[(u32, &[u32])]) -> Candidate {
        Candidate {
            distinguisher: d,
            key: PolicyKey { color: 100, endpoint: "192.0.2.1".parse().unwrap() },
            preference: pref,
            binding_sid: Some(24000 + d),
            lists: lists
                .iter()
                .map(|(w, l)| CandidateList { weight: *w, labels: l.to_vec(), unsupported: 0 })
                .collect(),
            ignored_segments: 0,
        }
    }

    fn active(cands: &[Candidate]) -> Selected {
        select(cands).into_values().next().unwrap()
    }

    #[test]
    fn the_highest_preference_valid_candidate_is_active() {
        let s = active(&[cand(1, 100, &[(1, &[16001])]), cand(2, 200, &[(1, &[17001])])]);
        assert_eq!((s.distinguisher, s.preference, s.binding_sid), (Some(2), 200, Some(24002)));
        assert_eq!(s.policy.unwrap().to_string(), "17001");
        assert_eq!(s.candidates, 2);
    }

    #[test]
    fn an_invalid_candidate_gives_way_to_a_lower_preference() {
        // Weight 0, a reserved label (3), an empty list: nothing usable.
        let bad = cand(2, 200, &[(0, &[17001]), (1, &[3]), (1, &[])]);
        let s = active(&[cand(1, 100, &[(1, &[16001])]), bad.clone()]);
        assert_eq!(s.distinguisher, Some(1));
        let s = active(&[bad]);
        assert_eq!((s.distinguisher, s.policy), (None, None));
    }

    #[test]
    fn a_list_with_unsupported_segments_is_left_out() {
        let mut c = cand(1, 100, &[(1, &[16001]), (3, &[16002])]);
        c.lists[1].unsupported = 1;
        assert_eq!(c.policy().unwrap().to_string(), "16001");
        c.lists[0].unsupported = 1;
        assert_eq!(c.policy(), None);
    }

    #[test]
    fn ties_go_to_the_higher_distinguisher_and_weights_are_kept() {
        let s = active(&[cand(5, 100, &[(7, &[16001, 16002]), (3, &[16003])]), cand(4, 100, &[(1, &[1])])]);
        assert_eq!(s.distinguisher, Some(5));
        assert_eq!(s.policy.unwrap().to_string(), "16001/16002@7,16003@3");
    }

    #[test]
    fn large_weights_are_scaled_in_proportion() {
        let c = cand(1, 100, &[(300_000, &[16001]), (100_000, &[16002])]);
        let p = c.policy().unwrap();
        let w: Vec<u16> = p.lists().iter().map(|l| l.weight).collect();
        assert_eq!(w, [60_000, 20_000]);
    }
}
