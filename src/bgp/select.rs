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

use super::accept::Addressing;
use super::enlp::Enlp;
use crate::domain::label::{Label, LabelError, LabelStack};
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

/// Why a candidate path addressed to this host is invalid (RFC 9256
/// section 5.1): it stays known (so it replaces what its NLRI said before,
/// never leaving the last known lists in force) but is never active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invalid {
    /// The path came without a Tunnel Encapsulation attribute: GoBGP 3.10
    /// discards one it cannot parse (segment types C-K, malformed sub-TLVs)
    /// and hands over the NLRI alone.
    NoTunnelEncapsulation,
    /// The attribute has no SR Policy tunnel (type 15).
    NoSrPolicyTunnel,
    /// No segment list is usable (none, weight 0, other segment types,
    /// reserved labels, too deep).
    NoUsableSegmentList,
}

impl Invalid {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Invalid; 3] =
        [Invalid::NoTunnelEncapsulation, Invalid::NoSrPolicyTunnel, Invalid::NoUsableSegmentList];

    /// The reason as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::NoTunnelEncapsulation => "no-tunnel-encapsulation",
            Invalid::NoSrPolicyTunnel => "no-sr-policy-tunnel",
            Invalid::NoUsableSegmentList => "no-usable-segment-list",
        }
    }

    /// Its index in [`Invalid::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Invalid {
    /// What is wrong, and where to look.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::NoTunnelEncapsulation => {
                "it came without a Tunnel Encapsulation attribute (GoBGP 3.10 drops one it cannot parse: segment \
                 types C-K or a malformed sub-TLV; check what the controller sent)"
            }
            Invalid::NoSrPolicyTunnel => "its Tunnel Encapsulation attribute has no SR Policy tunnel (type 15)",
            Invalid::NoUsableSegmentList => {
                "none of its segment lists is usable (SR-MPLS labels only, 1 to 16 of them with room for an \
                 explicit null when ENLP asks for one, weight above 0)"
            }
        })
    }
}

/// Why one segment list of a candidate path is not usable: the rule it
/// broke, for the log (a path with no usable list is invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListProblem {
    /// It has no segment.
    Empty,
    /// Its weight is 0.
    WeightZero,
    /// It has segments of other types than SR-MPLS labels (type A): SRv6
    /// SIDs or addresses to resolve, which this headend cannot push.
    OtherSegmentTypes(u32),
    /// More labels than the dataplane pushes.
    TooDeep {
        /// Its labels.
        labels: usize,
        /// The most it may have: 16, or 15 when the path's ENLP puts an
        /// explicit null at the bottom.
        max: usize,
    },
    /// A label that cannot be pushed (a reserved value, or out of range).
    Label(LabelError),
}

impl fmt::Display for ListProblem {
    /// The rule broken, e.g. `weight 0 (a list needs a weight above 0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListProblem::Empty => f.write_str("no segment (a list needs 1 to 16 labels)"),
            ListProblem::WeightZero => f.write_str("weight 0 (a list needs a weight above 0)"),
            ListProblem::OtherSegmentTypes(n) => {
                write!(f, "{n} segment(s) of types other than SR-MPLS labels (type A), which this headend cannot push")
            }
            ListProblem::TooDeep { labels, max } if *max < LabelStack::MAX_DEPTH => write!(
                f,
                "{labels} labels, more than {max} (at most {}, less one for the explicit null its ENLP asks for)",
                LabelStack::MAX_DEPTH
            ),
            ListProblem::TooDeep { labels, max } => write!(f, "{labels} labels, more than the {max} pushed"),
            ListProblem::Label(e) => write!(f, "{e}"),
        }
    }
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
    /// An SRv6 binding SID (sub-TLV 20, or 13 with 16 octets): reported,
    /// not used (this headend pushes SR-MPLS labels).
    pub srv6_binding_sid: Option<std::net::Ipv6Addr>,
    /// The segment lists.
    pub lists: Vec<CandidateList>,
    /// Segments of types other than A, over all lists (counted, logged).
    pub ignored_segments: u32,
    /// Its route targets and NO_ADVERTISE: which headend it is for.
    pub addressing: Addressing,
    /// Its Explicit NULL Label Policy, if it has one.
    pub enlp: Option<Enlp>,
    /// Its policy name (sub-TLV 130), if it has one.
    pub name: Option<String>,
    /// Set when the path could not carry a candidate path at all (no
    /// Tunnel Encapsulation attribute, or no SR Policy tunnel in it).
    pub problem: Option<Invalid>,
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
    /// The active path's Explicit NULL Label Policy.
    pub enlp: Option<Enlp>,
    /// The active path's policy name.
    pub name: Option<String>,
}

impl Candidate {
    /// A candidate path with no segment list yet: preference 100, no binding
    /// SID, no addressing, no ENLP, no name.
    pub fn new(distinguisher: u32, key: PolicyKey) -> Candidate {
        Candidate {
            distinguisher,
            key,
            preference: 100,
            binding_sid: None,
            srv6_binding_sid: None,
            lists: Vec::new(),
            ignored_segments: 0,
            addressing: Addressing::default(),
            enlp: None,
            name: None,
            problem: None,
        }
    }

    /// Why `list` (one of its lists) is not usable, if it is not: the first
    /// rule it breaks.
    pub fn list_problem(&self, list: &CandidateList) -> Option<ListProblem> {
        // An explicit null goes at the bottom of every list: it needs room.
        let max = LabelStack::MAX_DEPTH - usize::from(self.enlp.is_some_and(Enlp::pushes));
        if list.unsupported > 0 {
            Some(ListProblem::OtherSegmentTypes(list.unsupported))
        } else if list.labels.is_empty() {
            Some(ListProblem::Empty)
        } else if list.weight == 0 {
            Some(ListProblem::WeightZero)
        } else if list.labels.len() > max {
            Some(ListProblem::TooDeep { labels: list.labels.len(), max })
        } else {
            list.labels.iter().find_map(|v| Label::new(*v).err()).map(ListProblem::Label)
        }
    }

    /// Its lists that are not usable, by position (0 first), with why.
    pub fn list_problems(&self) -> Vec<(usize, ListProblem)> {
        self.lists.iter().enumerate().filter_map(|(i, l)| Some((i, self.list_problem(l)?))).collect()
    }

    /// How many of its lists are usable (more than a policy holds are cut:
    /// see [`MAX_SEGMENT_LISTS`]).
    pub fn usable_lists(&self) -> usize {
        self.lists.iter().filter(|l| self.list_problem(l).is_none()).count()
    }

    /// Why it is invalid, if it is.
    pub fn invalid(&self) -> Option<Invalid> {
        self.problem.or_else(|| self.policy().is_none().then_some(Invalid::NoUsableSegmentList))
    }

    /// The policy this candidate path would install, if it is valid.
    pub fn policy(&self) -> Option<Policy> {
        self.live_policy(&|_: &[Label]| false)
    }

    /// Its usable lists, top label first, in the order the policy holds
    /// them: the lists S-BFD probes.
    pub fn usable_stacks(&self) -> Vec<LabelStack> {
        self.policy().map(|p| p.lists().iter().map(|l| l.stack.clone()).collect()).unwrap_or_default()
    }

    /// The policy this candidate path installs when the lists for which
    /// `down` says true are out of service (their liveness check failed):
    /// `None` when it is invalid or none of its usable lists is live
    /// (RFC 9256 section 5: a candidate path with no valid segment list is
    /// invalid). The dead lists stay in the policy, out of service, so that
    /// the flows of the live ones do not move.
    pub fn live_policy(&self, down: &dyn Fn(&[Label]) -> bool) -> Option<Policy> {
        if self.problem.is_some() {
            return None;
        }
        let usable: Vec<(u32, LabelStack)> = self
            .lists
            .iter()
            .filter(|l| self.list_problem(l).is_none())
            .filter_map(|l| {
                let labels: Option<Vec<Label>> = l.labels.iter().map(|v| Label::new(*v).ok()).collect();
                Some((l.weight, LabelStack::new(labels?).ok()?))
            })
            .take(MAX_SEGMENT_LISTS)
            .collect();
        let max = usable.iter().map(|(w, _)| *w).max()?;
        let scale = max.div_ceil(u32::from(u16::MAX)).max(1);
        let dead: Vec<bool> = usable.iter().map(|(_, stack)| down(stack.labels())).collect();
        let lists = usable
            .into_iter()
            .map(|(w, stack)| SegmentList { stack, weight: u16::try_from((w / scale).max(1)).unwrap_or(u16::MAX) })
            .collect();
        let policy = Policy::new(lists, None).ok()?;
        if dead.contains(&true) {
            // Every list dead: Err, and the path is not live.
            policy.with_lists_down(&dead).ok()
        } else {
            Some(policy)
        }
    }
}

/// Selects the active candidate path of every (color, endpoint) that has
/// candidates.
pub fn select<'a>(candidates: impl IntoIterator<Item = &'a Candidate>) -> BTreeMap<PolicyKey, Selected> {
    select_live(candidates, &|_, _| false)
}

/// As [`select`], with the segment lists for which `down(endpoint, labels)`
/// is true out of service (S-BFD): a candidate path with no live list gives
/// way to the next valid one (RFC 9256 section 5), and a policy with none
/// is invalid (its routes are not installed).
pub fn select_live<'a>(
    candidates: impl IntoIterator<Item = &'a Candidate>,
    down: &dyn Fn(IpAddr, &[Label]) -> bool,
) -> BTreeMap<PolicyKey, Selected> {
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
            let active = cands.iter().find_map(|c| c.live_policy(&|l| down(key.endpoint, l)).map(|p| (*c, p)));
            let selected = match active {
                Some((c, policy)) => Selected {
                    distinguisher: Some(c.distinguisher),
                    preference: c.preference,
                    binding_sid: c.binding_sid,
                    policy: Some(policy),
                    candidates: count,
                    enlp: c.enlp,
                    name: c.name.clone(),
                },
                None => Selected {
                    distinguisher: None,
                    preference: 0,
                    binding_sid: None,
                    policy: None,
                    candidates: count,
                    enlp: None,
                    name: None,
                },
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
            preference: pref,
            binding_sid: Some(24000 + d),
            lists: lists
                .iter()
                .map(|(w, l)| CandidateList { weight: *w, labels: l.to_vec(), unsupported: 0 })
                .collect(),
            ..Candidate::new(d, PolicyKey { color: 100, endpoint: "192.0.2.1".parse().unwrap() })
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

    /// The log said the same generic rule for a weight 0, 17 labels and a
    /// reserved label: each list now says which rule it broke.
    #[test]
    fn each_unusable_list_says_which_rule_it_broke() {
        let deep: Vec<u32> = (16001..16018).collect();
        let mut c = cand(1, 100, &[(0, &[16001]), (1, &deep), (1, &[16001, 3]), (1, &[]), (1, &[16002])]);
        c.lists.push(CandidateList { weight: 1, labels: vec![16003], unsupported: 1 });
        let text: Vec<String> = c.list_problems().iter().map(|(i, p)| format!("{i}: {p}")).collect();
        assert_eq!(
            text,
            [
                "0: weight 0 (a list needs a weight above 0)",
                "1: 17 labels, more than the 16 pushed",
                "2: label 3 is the special-purpose Implicit NULL label, which a host neither pushes nor pops; use a \
                 label of 16 or above (0 and 2, the explicit nulls, are allowed)",
                "3: no segment (a list needs 1 to 16 labels)",
                "5: 1 segment(s) of types other than SR-MPLS labels (type A), which this headend cannot push",
            ]
        );
        assert_eq!(c.usable_lists(), 1);
        // With an explicit null to push, 16 labels are one too many.
        let mut c = cand(1, 100, &[(1, &deep[..16])]);
        c.enlp = Some(Enlp::Both);
        assert_eq!(
            c.list_problems()[0].1.to_string(),
            "16 labels, more than 15 (at most 16, less one for the explicit null its ENLP asks for)"
        );
        assert_eq!(c.invalid(), Some(Invalid::NoUsableSegmentList));
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
    fn a_path_without_its_attribute_is_invalid_and_never_active() {
        let good = cand(1, 100, &[(1, &[16001])]);
        // The same NLRI's next announcement came without the attribute: the
        // lists it held before are gone with it, and a lower path takes over.
        let dropped = Candidate { problem: Some(Invalid::NoTunnelEncapsulation), ..cand(2, 200, &[]) };
        assert_eq!(dropped.invalid(), Some(Invalid::NoTunnelEncapsulation));
        assert_eq!(dropped.policy(), None);
        assert_eq!(active(&[good.clone(), dropped.clone()]).distinguisher, Some(1));
        let s = active(&[dropped]);
        assert_eq!((s.distinguisher, s.policy), (None, None));
        assert_eq!(cand(3, 100, &[(0, &[16001])]).invalid(), Some(Invalid::NoUsableSegmentList));
        assert_eq!(good.invalid(), None);
    }

    #[test]
    fn enlp_needs_room_for_the_explicit_null() {
        let full: Vec<u32> = (16001..16001 + LabelStack::MAX_DEPTH as u32).collect();
        let mut c = cand(1, 100, &[(1, &full), (1, &[17001])]);
        assert_eq!(c.policy().unwrap().lists().len(), 2);
        c.enlp = Some(Enlp::Both);
        assert_eq!(c.policy().unwrap().to_string(), "17001");
        c.enlp = Some(Enlp::Neither);
        assert_eq!(c.policy().unwrap().lists().len(), 2);
    }

    /// S-BFD's word on the lists: a dead list is out of service (its flows
    /// alone move), a path with none live gives way to the next, and with
    /// no live path the policy is invalid.
    #[test]
    fn dead_lists_are_out_of_service_and_dead_paths_give_way() {
        let primary = cand(2, 200, &[(1, &[16001]), (1, &[16002]), (2, &[16003])]);
        let backup = cand(1, 100, &[(1, &[17001])]);
        let cands = [primary.clone(), backup];
        let live = |dead: &'static [u32]| move |_: IpAddr, l: &[Label]| dead.contains(&l[0].value());
        let all = select_live(&cands, &live(&[])).into_values().next().unwrap();
        let one_dead = select_live(&cands, &live(&[16002])).into_values().next().unwrap();
        assert_eq!(one_dead.distinguisher, Some(2));
        let (before, after) = (all.policy.unwrap().flow_table(), one_dead.policy.clone().unwrap().flow_table());
        assert!(one_dead.policy.as_ref().unwrap().is_list_down(1));
        let moved_live = before.iter().zip(&after).filter(|(b, a)| **b != 1 && b != a).count();
        assert_eq!(moved_live, 0, "flows of live lists moved");
        assert!(!after.contains(&1), "flows stayed on the dead list");
        let path_dead = select_live(&cands, &live(&[16001, 16002, 16003])).into_values().next().unwrap();
        assert_eq!((path_dead.distinguisher, path_dead.policy.unwrap().to_string()), (Some(1), "17001".to_owned()));
        let none = select_live(&cands, &live(&[16001, 16002, 16003, 17001])).into_values().next().unwrap();
        assert_eq!((none.distinguisher, none.policy), (None, None));
        assert_eq!(select(&cands), select_live(&cands, &live(&[])));
    }

    #[test]
    fn large_weights_are_scaled_in_proportion() {
        let c = cand(1, 100, &[(300_000, &[16001]), (100_000, &[16002])]);
        let p = c.policy().unwrap();
        let w: Vec<u16> = p.lists().iter().map(|l| l.weight).collect();
        assert_eq!(w, [60_000, 20_000]);
    }
}
