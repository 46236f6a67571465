//! The Explicit NULL Label Policy (RFC 9256 section 4.1, RFC 9830 section
//! 2.4.5): whether an unlabelled packet steered into a policy gets an
//! explicit-null label at the bottom of its stack (label 0 for IPv4, 2 for
//! IPv6), so that the endpoint's penultimate hop never leaves it bare IP
//! (e.g. an IPv6 packet over an IPv4-only core).
//!
//! Without the sub-TLV (or with a reserved value, which RFC 9830 says to
//! ignore) this headend pushes none: the local default.

use std::fmt;

use crate::domain::label::{Label, LabelStack};
use crate::domain::policy::{Policy, PolicyError, SegmentList};

/// An ENLP value (1 to 4); serialised as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(into = "u32", try_from = "u32")]
pub enum Enlp {
    /// 1: an IPv4 explicit null on IPv4 packets, none on IPv6.
    Ipv4,
    /// 2: an IPv6 explicit null on IPv6 packets, none on IPv4.
    Ipv6,
    /// 3: both.
    Both,
    /// 4: none.
    Neither,
}

impl Enlp {
    /// The policy of an ENLP sub-TLV value; `None` for the reserved values
    /// (0, 5-255), which RFC 9830 section 2.4.5 says to ignore.
    pub fn from_value(value: u32) -> Option<Enlp> {
        match value {
            1 => Some(Enlp::Ipv4),
            2 => Some(Enlp::Ipv6),
            3 => Some(Enlp::Both),
            4 => Some(Enlp::Neither),
            _ => None,
        }
    }

    /// The sub-TLV value.
    pub fn value(self) -> u32 {
        match self {
            Enlp::Ipv4 => 1,
            Enlp::Ipv6 => 2,
            Enlp::Both => 3,
            Enlp::Neither => 4,
        }
    }

    /// The label pushed at the bottom of the stack of an IPv6 (`ipv6`) or
    /// IPv4 packet, if any.
    pub fn explicit_null(self, ipv6: bool) -> Option<Label> {
        match (self, ipv6) {
            (Enlp::Ipv4 | Enlp::Both, false) => Some(Label::IPV4_EXPLICIT_NULL),
            (Enlp::Ipv6 | Enlp::Both, true) => Some(Label::IPV6_EXPLICIT_NULL),
            _ => None,
        }
    }

    /// Whether it pushes a label for either family (a list then needs room
    /// for one more label).
    pub fn pushes(self) -> bool {
        self.explicit_null(false).is_some() || self.explicit_null(true).is_some()
    }
}

impl From<Enlp> for u32 {
    fn from(e: Enlp) -> u32 {
        e.value()
    }
}

/// An ENLP value outside 1-4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ENLP {0} is reserved: the values are 1 (IPv4 explicit null), 2 (IPv6), 3 (both), 4 (none)")]
pub struct ReservedEnlp(pub u32);

impl TryFrom<u32> for Enlp {
    type Error = ReservedEnlp;
    fn try_from(value: u32) -> Result<Enlp, ReservedEnlp> {
        Enlp::from_value(value).ok_or(ReservedEnlp(value))
    }
}

impl fmt::Display for Enlp {
    /// `ENLP 1 (IPv4 explicit null)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Enlp::Ipv4 => "IPv4 explicit null",
            Enlp::Ipv6 => "IPv6 explicit null",
            Enlp::Both => "IPv4 and IPv6 explicit null",
            Enlp::Neither => "no explicit null",
        };
        write!(f, "ENLP {} ({what})", self.value())
    }
}

/// `policy` with `label` pushed below every segment list's stack.
///
/// # Errors
/// [`PolicyError`] when a list has no room for one more label (selection
/// leaves such lists out, so this does not happen for a selected policy).
pub fn with_bottom_label(policy: &Policy, label: Label) -> Result<Policy, PolicyError> {
    let lists = policy
        .lists()
        .iter()
        .map(|l| {
            let mut labels = l.stack.labels().to_vec();
            labels.push(label);
            Ok(SegmentList { stack: LabelStack::new(labels)?, weight: l.weight })
        })
        .collect::<Result<Vec<_>, PolicyError>>()?;
    // Lists out of service (S-BFD) stay out of service with their null.
    let down: Vec<bool> = (0..lists.len()).map(|i| policy.is_list_down(i)).collect();
    let rebuilt = Policy::new(lists, policy.entropy_label())?;
    if down.contains(&true) {
        rebuilt.with_lists_down(&down)
    } else {
        Ok(rebuilt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enlp_values_give_the_explicit_null_of_the_family() {
        // (value, label for IPv4, label for IPv6)
        let table: [(u32, Option<u32>, Option<u32>); 4] =
            [(1, Some(0), None), (2, None, Some(2)), (3, Some(0), Some(2)), (4, None, None)];
        for (value, v4, v6) in table {
            let e = Enlp::from_value(value).unwrap();
            assert_eq!(e.value(), value);
            assert_eq!(e.explicit_null(false).map(Label::value), v4, "ENLP {value}, IPv4");
            assert_eq!(e.explicit_null(true).map(Label::value), v6, "ENLP {value}, IPv6");
            assert_eq!(e.pushes(), value != 4);
        }
        for reserved in [0, 5, 255] {
            assert_eq!(Enlp::from_value(reserved), None);
        }
    }

    #[test]
    fn the_label_goes_at_the_bottom_of_every_list() {
        let p: Policy = "16001/16002@3,17001@1".parse().unwrap();
        let q = with_bottom_label(&p, Label::IPV6_EXPLICIT_NULL).unwrap();
        assert_eq!(q.to_string(), "16001/16002/2@3,17001/2@1");
        let deep = Policy::single(LabelStack::new(vec![Label::new(16001).unwrap(); LabelStack::MAX_DEPTH]).unwrap());
        assert!(with_bottom_label(&deep, Label::IPV4_EXPLICIT_NULL).is_err());
    }
}
