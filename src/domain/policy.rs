//! SR policies (RFC 9256) on the host: weighted segment lists, entropy labels,
//! and the weighted-Maglev table that spreads flows over the lists.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::abi::{types, MAX_LABELS};
use crate::domain::label::{LabelError, LabelStack};
pub use crate::domain::no_live_path::NoLivePath;
use crate::domain::no_live_path::{invalid_text, INVALID};

/// Segment lists one policy may hold.
pub const MAX_SEGMENT_LISTS: usize = types::encap_limits::ENCAP_MAX_SEGMENT_LISTS.0 as usize;
/// Slots of a policy's flow table: a flow takes list `flow_table()[hash % POLICY_SLOTS]`.
pub const POLICY_SLOTS: usize = SLOTS;
pub(crate) const SLOTS: usize = types::encap_limits::ENCAP_POLICY_SLOTS.0 as usize;

/// Why a policy was refused. Every message that comes from text quotes it.
/// More variants may come: match with a wildcard arm.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// Text that is not `L1/L2@W1,L3@W2`: the whole text, and the segment
    /// list that is wrong. (A stack that is wrong is a [`PolicyError::Label`]
    /// quoting that stack.)
    #[error(
        "{input:?} is not a list of segment lists: segment list {index}, {part:?}, {problem} (expected e.g. \
         `16001/16002@7,16003@3`)"
    )]
    Parse {
        /// The whole text given.
        input: String,
        /// Which segment list, from 0 (as in every other policy error).
        index: usize,
        /// That list's text.
        part: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A list marked out of service that the policy does not have.
    #[error("segment list {index} is marked down, but the policy has {lists} lists (0 to {}): mark only lists it has", lists.saturating_sub(1))]
    NoSuchList {
        /// The index given (0-based).
        index: usize,
        /// How many lists the policy has.
        lists: usize,
    },
    /// Every list of the policy would be out of service.
    #[error("every segment list of the policy is down: it has no list left to carry flows; leave one up or remove the policy")]
    AllListsDown,
    /// Text that is not an entropy label placement.
    #[error("{input:?} is not an entropy label placement (expected `bottom` or a number N >= 1)")]
    EntropyLabelParse {
        /// The text given.
        input: String,
    },
    /// A policy name that cannot name a shared policy object.
    #[error("{name:?} is not a policy name: {problem} (use 1 to {MAX_NAME} printable characters, e.g. `blue-to-pe1`)")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Text that is not what a policy with no live path does.
    #[error("{input:?} is not what a policy with no live path does (expected `unlabelled` or `drop`)")]
    NoLivePathParse {
        /// The text given.
        input: String,
    },
    /// An invalid policy (no list: its routes go unlabelled) without a name:
    /// only a shared object can be invalid, since its routes stay on it.
    #[error("only a named policy can be invalid (`invalid` needs a policy name): give it one, or remove the routes")]
    InvalidWithoutName,
}

/// The longest policy name, in bytes.
pub const MAX_NAME: usize = 128;

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

impl fmt::Display for EntropyLabel {
    /// `bottom`, or N.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntropyLabel::Bottom => f.write_str("bottom"),
            EntropyLabel::After(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for EntropyLabel {
    type Err = PolicyError;
    /// `bottom`, or N >= 1 (under the first N labels).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "bottom" => Ok(EntropyLabel::Bottom),
            n => match n.parse::<usize>() {
                Ok(0) => Err(PolicyError::EntropyLabelOnTop { after: 0 }),
                Ok(n) => Ok(EntropyLabel::After(n)),
                Err(_) => Err(PolicyError::EntropyLabelParse { input: s.to_owned() }),
            },
        }
    }
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
/// # Ok::<(), lnetd_host_encap::errors::PolicyError>(())
/// ```
///
/// A policy may carry a name ([`Policy::with_name`]): every route whose
/// policy has the same name then points at one shared policy object in the
/// dataplane, and changing the named policy's lists is one map write however
/// many routes use it (docs/policy-objects.md).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "crate::domain::serde_forms::PolicyForm", try_from = "crate::domain::serde_forms::PolicyForm")]
pub struct Policy {
    /// Shared: a route table holds many clones of one policy.
    lists: Arc<[SegmentList]>,
    entropy: Option<EntropyLabel>,
    /// Bit i: list i is out of service (its path failed a liveness check);
    /// its flows go to the live lists, nobody else's move.
    down: u8,
    /// The shared object's name, if the policy is one.
    name: Option<Arc<str>>,
    /// What an invalid policy (no list) does with its packets.
    no_live: NoLivePath,
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
        Ok(Policy { lists: lists.into(), entropy, down: 0, name: None, no_live: NoLivePath::Unlabelled })
    }

    /// The same policy with the lists whose `down` entry is true out of
    /// service: their flows go to the live lists in proportion to the live
    /// weights, and no flow of a live list moves (unlike a policy built
    /// without them, see [`Policy::flow_table`]). Entries beyond the lists
    /// are ignored.
    ///
    /// # Errors
    /// [`PolicyError::AllListsDown`] when no list would be left.
    pub fn with_lists_down(mut self, down: &[bool]) -> Result<Policy, PolicyError> {
        let mask = down.iter().take(self.lists.len()).enumerate().fold(0u8, |m, (i, d)| m | (u8::from(*d) << i));
        if mask.count_ones() as usize == self.lists.len() && !self.lists.is_empty() {
            return Err(PolicyError::AllListsDown);
        }
        self.down = mask;
        Ok(self)
    }

    /// Whether list `index` is out of service.
    pub fn is_list_down(&self, index: usize) -> bool {
        index < 8 && self.down & (1 << index) != 0
    }

    /// One list, weight 1, no entropy label: a plain route.
    pub fn single(stack: LabelStack) -> Policy {
        Policy {
            lists: Arc::new([SegmentList { stack, weight: 1 }]),
            entropy: None,
            down: 0,
            name: None,
            no_live: NoLivePath::Unlabelled,
        }
    }

    /// The same policy, named: every route whose policy has this name shares
    /// one policy object (one id, one set of per-list counters), so changing
    /// the policy is one write for all of them. Names are global to an
    /// encapsulator (every table), 1 to [`MAX_NAME`] bytes, printable,
    /// without leading or trailing blanks.
    ///
    /// ```
    /// use lnetd_host_encap::Policy;
    /// let p = "16001/16002@7,16003@3".parse::<Policy>()?.with_name("blue")?;
    /// assert_eq!(p.name(), Some("blue"));
    /// assert_eq!(p.to_string(), "16001/16002@7,16003@3", "the text form is the lists only");
    /// # Ok::<(), lnetd_host_encap::errors::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// [`PolicyError::BadName`].
    pub fn with_name(mut self, name: &str) -> Result<Policy, PolicyError> {
        let bad = |problem| PolicyError::BadName { name: name.to_owned(), problem };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_NAME {
            return Err(bad("it is too long"));
        }
        if name.chars().any(char::is_control) {
            return Err(bad("it holds a control character"));
        }
        if name.trim() != name {
            return Err(bad("it starts or ends with a blank"));
        }
        self.name = Some(name.into());
        Ok(self)
    }

    /// The same policy without a name (a route of its own).
    pub fn without_name(mut self) -> Policy {
        self.name = None;
        self
    }

    /// The name of the shared policy object, if the policy has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A named policy in the invalid state (RFC 9256 section 5: no valid
    /// candidate path): it has no segment list, and packets of every route
    /// on it go unlabelled (counted as "no route") until it is valid again.
    /// The routes stay on the object, so turning it invalid and back is one
    /// write each. Its text form is `invalid`. Same as
    /// [`Policy::invalid_with`] with [`NoLivePath::Unlabelled`].
    ///
    /// # Errors
    /// [`PolicyError::BadName`].
    pub fn invalid(name: &str) -> Result<Policy, PolicyError> {
        Policy::invalid_with(name, NoLivePath::Unlabelled)
    }

    /// A named policy in the invalid state whose routes' packets do what
    /// `then` says: unlabelled as [`Policy::invalid`], or dropped
    /// ([`NoLivePath::Drop`], counted as [`crate::Stats::no_live_path_dropped`]).
    /// Either is one write to the policy's object, however many routes it
    /// steers, and so is coming back. Text form: `invalid` or `invalid drop`.
    ///
    /// ```
    /// use lnetd_host_encap::{labels::NoLivePath, Policy};
    /// let dropping = Policy::invalid_with("blue", NoLivePath::Drop)?;
    /// assert!(!dropping.is_valid());
    /// assert_ne!(dropping, Policy::invalid("blue")?, "a change of its object's content");
    /// # Ok::<(), lnetd_host_encap::errors::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// [`PolicyError::BadName`].
    pub fn invalid_with(name: &str, then: NoLivePath) -> Result<Policy, PolicyError> {
        Policy { lists: Arc::new([]), entropy: None, down: 0, name: None, no_live: then }.with_name(name)
    }

    /// A policy from the words of a desired-state entry: `text` (its lists,
    /// as [`FromStr`] reads them, or, with a name, `invalid` or `invalid
    /// drop`) and its `name`, if it has one.
    ///
    /// ```
    /// use lnetd_host_encap::{labels::NoLivePath, Policy};
    /// let p = Policy::from_text("invalid drop", Some("blue"))?;
    /// assert_eq!(p.when_invalid(), Some(NoLivePath::Drop));
    /// assert_eq!(Policy::from_text("16001@7,16002@3", None)?.lists().len(), 2);
    /// assert!(Policy::from_text("invalid", None).is_err(), "only a named policy can be invalid");
    /// # Ok::<(), lnetd_host_encap::errors::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// As [`FromStr`] and [`Policy::with_name`].
    pub fn from_text(text: &str, name: Option<&str>) -> Result<Policy, PolicyError> {
        match (name, invalid_text(text)) {
            (Some(name), Some(then)) => Policy::invalid_with(name, then),
            (Some(name), None) => text.parse::<Policy>()?.with_name(name),
            (None, _) => text.parse(),
        }
    }

    /// False for a policy in the invalid state ([`Policy::invalid`]).
    pub fn is_valid(&self) -> bool {
        !self.lists.is_empty()
    }

    /// What the packets of a policy in the invalid state do; `None` for a
    /// valid policy.
    pub fn when_invalid(&self) -> Option<NoLivePath> {
        (!self.is_valid()).then_some(self.no_live)
    }

    /// The same lists, entropy label, lists out of service and invalid
    /// state (the name aside).
    pub(crate) fn same_content(&self, other: &Policy) -> bool {
        (Arc::ptr_eq(&self.lists, &other.lists) || self.lists == other.lists)
            && self.entropy == other.entropy
            && self.down == other.down
            && self.no_live == other.no_live
    }

    /// The same policy with (or without) an entropy label.
    ///
    /// # Errors
    /// As [`Policy::new`].
    pub fn with_entropy_label(self, entropy: Option<EntropyLabel>) -> Result<Policy, PolicyError> {
        if self.lists.is_empty() {
            // An invalid policy pushes nothing: there is no stack to deepen.
            return Ok(self);
        }
        let (down, name) = (self.down, self.name);
        Policy::new(self.lists.to_vec(), entropy).map(|p| Policy { down, name, ..p })
    }

    /// The segment lists.
    pub fn lists(&self) -> &[SegmentList] {
        &self.lists
    }

    /// The entropy label placement, if any.
    pub fn entropy_label(&self) -> Option<EntropyLabel> {
        self.entropy
    }

    /// True for one list without an entropy label nor a name: pushed
    /// straight from the route, with no second lookup. (A named policy is
    /// always an object, so that changing it is one write.)
    pub(crate) fn is_plain(&self) -> bool {
        self.lists.len() == 1 && self.entropy.is_none() && self.name.is_none()
    }

    /// The table the dataplane uses to pick a list: a flow whose hash is `h`
    /// (see the crate docs for the hash) takes list `flow_table()[h % POLICY_SLOTS]`.
    /// The same lists and weights always give the same table, on every host.
    pub fn flow_table(&self) -> Vec<u8> {
        super::maglev::table_with_down(&self.lists, self.down)
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
        if invalid_text(s).is_some() {
            return Err(PolicyError::InvalidWithoutName);
        }
        let lists = s
            .split(',')
            .enumerate()
            .map(|(index, part)| {
                let parse_err =
                    |problem| PolicyError::Parse { input: s.to_owned(), index, part: part.to_owned(), problem };
                let (stack, weight) = match part.split_once('@') {
                    Some((stack, w)) => (
                        stack,
                        w.trim()
                            .parse::<u16>()
                            .map_err(|_| parse_err("has a weight that is not a number 1..=65535"))?,
                    ),
                    None => (part, 1),
                };
                if stack.trim().is_empty() {
                    return Err(parse_err("has no labels"));
                }
                Ok(SegmentList { stack: stack.parse()?, weight })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Policy::new(lists, None)
    }
}

impl fmt::Display for SegmentList {
    /// `STACK@WEIGHT`, e.g. `16001/16002@7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.stack, self.weight)
    }
}

impl fmt::Display for Policy {
    /// The lists as [`FromStr`] reads them (`16001/16002@7,16003@3`, with
    /// ` +EL` or ` +EL@N`), or `invalid` (`invalid drop`); the name is not part of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.when_invalid() {
            Some(NoLivePath::Unlabelled) => return f.write_str(INVALID),
            Some(NoLivePath::Drop) => return write!(f, "{INVALID} drop"),
            None => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_make_a_policy_an_object() {
        let p: Policy = "16001".parse().unwrap();
        assert!(p.is_plain());
        let named = p.clone().with_name("blue").unwrap();
        assert!(!named.is_plain(), "a named policy is always a shared object");
        assert_ne!(named, p, "the name is part of the route's value");
        assert!(named.same_content(&p));
        assert_eq!(named.clone().without_name(), p);
        for (bad, problem) in
            [("", "it is empty"), (" x", "it starts or ends with a blank"), ("a\nb", "it holds a control character")]
        {
            assert_eq!(p.clone().with_name(bad), Err(PolicyError::BadName { name: bad.into(), problem }));
        }
        assert!(p.clone().with_name(&"x".repeat(MAX_NAME + 1)).is_err());
        let invalid = Policy::invalid("blue").unwrap();
        assert!(!invalid.is_valid() && invalid.lists().is_empty());
        assert_eq!(invalid.to_string(), "invalid");
        assert!(invalid.clone().with_entropy_label(Some(EntropyLabel::Bottom)).is_ok());
        assert!(invalid.flow_table().iter().all(|s| *s == u8::MAX), "every slot names no list: PASS_NO_ROUTE");
        assert_eq!(invalid.when_invalid(), Some(NoLivePath::Unlabelled));
        assert_eq!(named.when_invalid(), None);
    }

    #[test]
    fn what_an_invalid_policy_does_is_part_of_its_content_and_text() {
        let drop = Policy::invalid_with("blue", NoLivePath::Drop).unwrap();
        let unlabelled = Policy::invalid("blue").unwrap();
        assert!(!drop.is_valid() && drop.lists().is_empty());
        assert!(!drop.same_content(&unlabelled), "switching what it does is a write to its object");
        assert_eq!(drop.to_string(), "invalid drop");
        for (text, want) in [
            ("invalid", Some(NoLivePath::Unlabelled)),
            (" invalid  drop ", Some(NoLivePath::Drop)),
            ("invalid drop now", None),
            ("invalid unlabelled", None),
            ("drop", None),
        ] {
            assert_eq!(invalid_text(text), want, "{text:?}");
        }
        assert_eq!(Policy::from_text("invalid drop", Some("blue")), Ok(drop.clone()));
        assert_eq!(Policy::from_text(&drop.to_string(), drop.name()), Ok(drop));
        assert_eq!(Policy::from_text("invalid", Some("blue")), Ok(unlabelled));
        assert_eq!("invalid drop".parse::<Policy>(), Err(PolicyError::InvalidWithoutName));
        assert!(matches!(Policy::from_text("invalid drop now", Some("blue")), Err(PolicyError::Label(_))));
        assert_eq!("drop".parse::<NoLivePath>(), Ok(NoLivePath::Drop));
        assert_eq!(" unlabelled".parse::<NoLivePath>(), Ok(NoLivePath::Unlabelled));
        let bad = "dropped".parse::<NoLivePath>().unwrap_err();
        assert_eq!(bad, PolicyError::NoLivePathParse { input: "dropped".into() });
        assert!(bad.to_string().contains("`unlabelled` or `drop`"), "{bad}");
        assert_eq!(NoLivePath::default(), NoLivePath::Unlabelled);
        assert_eq!(NoLivePath::Drop.to_string().parse::<NoLivePath>(), Ok(NoLivePath::Drop));
    }

    #[test]
    fn policy_rules() {
        assert!(matches!(Policy::new(vec![], None), Err(PolicyError::ListCount { count: 0, .. })));
        assert!(matches!(
            "1000@1,1001@1,1002,1003,1004,1005,1006,1007,1008".parse::<Policy>(),
            Err(PolicyError::ListCount { count: 9, .. })
        ));
        assert!(matches!("100@0".parse::<Policy>(), Err(PolicyError::ZeroWeight { index: 0 })));
        assert_eq!(
            "100@7,200@x".parse::<Policy>(),
            Err(PolicyError::Parse {
                input: "100@7,200@x".into(),
                index: 1,
                part: "200@x".into(),
                problem: "has a weight that is not a number 1..=65535"
            })
        );
        assert!(matches!(
            "100,,200".parse::<Policy>(),
            Err(PolicyError::Parse { index: 1, problem: "has no labels", .. })
        ));
        assert!(matches!("".parse::<Policy>(), Err(PolicyError::Parse { index: 0, .. })));
        let msg = "100@7,@3".parse::<Policy>().unwrap_err().to_string();
        assert!(
            msg.starts_with("\"100@7,@3\" is not a list of segment lists: segment list 1, \"@3\", has no labels"),
            "{msg}"
        );
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
        assert_eq!("invalid".parse::<Policy>(), Err(PolicyError::InvalidWithoutName));
        assert_eq!(p.lists()[0].to_string(), "16001/16002@7");
        assert!(matches!(
            p.with_entropy_label(Some(EntropyLabel::After(0))),
            Err(PolicyError::EntropyLabelOnTop { .. })
        ));
    }
}
