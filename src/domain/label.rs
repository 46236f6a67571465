//! MPLS labels, label stacks and the 32-bit label stack entry (RFC 3032).

use std::fmt;
use std::str::FromStr;

use crate::abi::MAX_LABELS;

/// Why a label, traffic class, stack or wire entry was refused. Every
/// message that comes from text quotes it. More variants may come: match
/// with a wildcard arm.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The value does not fit the 20-bit label field.
    #[error("label {value} is out of range: MPLS labels are 0..=1048575 (20 bits)")]
    OutOfRange {
        /// The value given.
        value: u32,
    },
    /// A special-purpose label a host must never push.
    #[error(
        "label {value} is the special-purpose {meaning} label, which a host neither pushes nor pops; \
         use a label of 16 or above (0 and 2, the explicit nulls, are allowed)"
    )]
    SpecialPurpose {
        /// The value given.
        value: u32,
        /// Its RFC name.
        meaning: &'static str,
    },
    /// A traffic class above 7.
    #[error("traffic class {value} is out of range: the TC field is 3 bits (0..=7)")]
    TrafficClassOutOfRange {
        /// The value given.
        value: u8,
    },
    /// A stack with no labels.
    #[error("a label stack needs at least one label")]
    EmptyStack,
    /// A stack deeper than the dataplane pushes.
    #[error("a label stack of {depth} labels is too deep: at most {max} are pushed")]
    StackTooDeep {
        /// The depth given.
        depth: usize,
        /// The deepest stack allowed.
        max: usize,
    },
    /// Text that is not a label (a number), nor a stack of one.
    #[error("{input:?} is not a label or a label stack (expected e.g. `1000000` or `16001/16002`)")]
    Parse {
        /// The text given.
        input: String,
    },
    /// A label stack (`16001/16002`) where one label is expected.
    #[error("{input:?} is a label stack where one label is expected (a number 0..=1048575, e.g. `16001`)")]
    OneLabelExpected {
        /// The text given.
        input: String,
    },
    /// Text of several `/`-separated parts, one of which is not a label
    /// (empty, not a number, or a number beyond 32 bits): the whole text and
    /// the part.
    #[error(
        "{input:?} is not a label stack: label {position} of {}{} (expected labels separated by `/`, e.g. \
         `16001/16002`)",
        .input.split('/').count(),
        if .part.trim().is_empty() { " is empty".to_owned() } else { format!(", {:?}, is not a label (a number 0..=1048575)", .part) }
    )]
    StackParse {
        /// The whole text given.
        input: String,
        /// Which part is wrong, from 1 (the top of the stack).
        position: usize,
        /// That part's text.
        part: String,
    },
    /// Text that is not a traffic class value (0..=7). `dscp` is not one:
    /// taking the class from each packet's DSCP is a route's choice,
    /// [`crate::routes::Tc::FromDscp`], which [`crate::routes::Tc`]'s `FromStr` accepts.
    #[error(
        "{input:?} is not a traffic class: expected 0..=7{}",
        if .input.trim().eq_ignore_ascii_case("dscp") {
            "; `dscp` (the class from each packet's DSCP) is a route's Tc, not a class value: parse a Tc \
             (\"dscp\".parse::<Tc>()) or use Route::with_tc(Tc::FromDscp)"
        } else {
            ""
        }
    )]
    TrafficClassParse {
        /// The text given.
        input: String,
    },
    /// Text that is not a route's traffic class ([`crate::routes::Tc`]): neither
    /// 0..=7 nor `dscp`.
    #[error("{input:?} is not a traffic class: expected 0..=7, or `dscp` to take it from each packet's DSCP")]
    TcParse {
        /// The text given.
        input: String,
    },
    /// An explicit null of the other IP version at the bottom of a segment
    /// list (RFC 3032 2.1: the egress router would parse the packet as the
    /// other version).
    #[error(
        "{prefix}: segment list {list} ends with label {label}, the explicit null of the other IP version; at the \
         bottom of the stack it says which header follows (RFC 3032), so {family} packets need {ours} there"
    )]
    ExplicitNullOfOtherFamily {
        /// The route's prefix.
        prefix: ipnetwork::IpNetwork,
        /// Which segment list, from 0.
        list: usize,
        /// The label found (0 or 2).
        label: u32,
        /// The route's family, "IPv4" or "IPv6".
        family: &'static str,
        /// The explicit null of that family.
        ours: u32,
    },
    /// Fewer than four bytes, or a stack whose bottom entry (S=1) is missing.
    #[error("truncated label stack: {reason}")]
    Truncated {
        /// What was missing.
        reason: &'static str,
    },
}

/// An MPLS label a host may push: 0..=1,048,575 except the special-purpose
/// values 1 (Router Alert), 3 (Implicit NULL, never on the wire), 7 (Entropy
/// Label Indicator), 13 (GAL), 14 (OAM Alert) and 15 (extension). The explicit
/// nulls 0 and 2 are allowed.
///
/// ```
/// use lnetd_host_encap::Label;
/// let bsid = Label::new(1_000_000)?;
/// assert_eq!(bsid.value(), 1_000_000);
/// assert!(Label::new(3).is_err());
/// assert!("16005".parse::<Label>().is_ok());
/// # Ok::<(), lnetd_host_encap::errors::LabelError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(u32);

impl Label {
    /// The largest label value (2^20 - 1).
    pub const MAX: u32 = (1 << 20) - 1;
    /// IPv4 Explicit NULL (0).
    pub const IPV4_EXPLICIT_NULL: Label = Label(0);
    /// IPv6 Explicit NULL (2).
    pub const IPV6_EXPLICIT_NULL: Label = Label(2);

    /// Checks `value` and makes a label of it.
    ///
    /// # Errors
    /// [`LabelError::OutOfRange`] above 1,048,575, [`LabelError::SpecialPurpose`]
    /// for 1 and 3 to 15: every special-purpose value (RFC 7274) but the
    /// explicit nulls, the unassigned ones (4-6, 8-12) included, which a
    /// router receiving them drops.
    pub const fn new(value: u32) -> Result<Label, LabelError> {
        let meaning = match value {
            1 => "Router Alert",
            3 => "Implicit NULL",
            7 => "Entropy Label Indicator",
            13 => "Generic Associated Channel (GAL)",
            14 => "OAM Alert",
            15 => "Extension",
            4..=6 | 8..=12 => "unassigned",
            v if v > Self::MAX => return Err(LabelError::OutOfRange { value }),
            _ => return Ok(Label(value)),
        };
        Err(LabelError::SpecialPurpose { value, meaning })
    }

    /// The label value.
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Label {
    type Error = LabelError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Label::new(value)
    }
}

impl From<Label> for u32 {
    fn from(label: Label) -> u32 {
        label.0
    }
}

impl FromStr for Label {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.trim().parse::<u32>().map_err(|_| match s.contains('/') {
            true => LabelError::OneLabelExpected { input: s.to_owned() },
            false => LabelError::Parse { input: s.to_owned() },
        })?;
        Label::new(value)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The 3-bit Traffic Class field (RFC 5462), 0..=7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TrafficClass(u8);

impl TrafficClass {
    /// Checks `value` (0..=7).
    ///
    /// # Errors
    /// [`LabelError::TrafficClassOutOfRange`] above 7.
    pub const fn new(value: u8) -> Result<TrafficClass, LabelError> {
        if value > 7 {
            return Err(LabelError::TrafficClassOutOfRange { value });
        }
        Ok(TrafficClass(value))
    }

    /// The field's value.
    pub const fn value(self) -> u8 {
        self.0
    }
}

impl FromStr for TrafficClass {
    type Err = LabelError;
    /// `0`..`7`. Not `dscp`, which is a [`crate::routes::Tc`] (the error says so).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.trim().parse::<u8>().map_err(|_| LabelError::TrafficClassParse { input: s.to_owned() })?;
        TrafficClass::new(value)
    }
}

impl fmt::Display for TrafficClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The DSCP -> traffic class table used by routes with [`crate::routes::Tc::FromDscp`].
/// The default maps each DSCP to its class selector (DSCP >> 3).
///
/// ```
/// use lnetd_host_encap::{labels::DscpMap, labels::TrafficClass};
/// let map = DscpMap::default().with(46, TrafficClass::new(5)?); // EF -> 5
/// assert_eq!(map.get(46).value(), 5);
/// assert_eq!(map.get(10).value(), 1);
/// # Ok::<(), lnetd_host_encap::errors::LabelError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DscpMap([TrafficClass; 64]);

impl Default for DscpMap {
    fn default() -> Self {
        let mut map = [TrafficClass::default(); 64];
        for (dscp, tc) in map.iter_mut().enumerate() {
            *tc = TrafficClass((dscp >> 3) as u8);
        }
        DscpMap(map)
    }
}

impl DscpMap {
    /// A table from 64 values, each 0..=7.
    ///
    /// # Errors
    /// [`LabelError::TrafficClassOutOfRange`] for a value above 7.
    pub fn new(values: [u8; 64]) -> Result<DscpMap, LabelError> {
        let mut map = [TrafficClass::default(); 64];
        for (slot, v) in map.iter_mut().zip(values) {
            *slot = TrafficClass::new(v)?;
        }
        Ok(DscpMap(map))
    }

    /// The same table with `dscp` (taken modulo 64) mapped to `tc`.
    pub fn with(mut self, dscp: u8, tc: TrafficClass) -> DscpMap {
        if let Some(slot) = self.0.get_mut(usize::from(dscp & 63)) {
            *slot = tc;
        }
        self
    }

    /// The TC for `dscp` (taken modulo 64).
    pub fn get(&self, dscp: u8) -> TrafficClass {
        self.0.get(usize::from(dscp & 63)).copied().unwrap_or_default()
    }

    /// The 64 values.
    pub fn values(&self) -> [u8; 64] {
        self.0.map(TrafficClass::value)
    }
}

/// A label stack of 1 to 16 labels; the first is the top of the stack (the
/// first segment of an SR path).
///
/// ```
/// use lnetd_host_encap::LabelStack;
/// let path: LabelStack = "16001/16002/24005".parse()?;
/// assert_eq!(path.len(), 3);
/// assert_eq!(path.to_string(), "16001/16002/24005");
/// # Ok::<(), lnetd_host_encap::errors::LabelError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelStack(Vec<Label>);

impl LabelStack {
    /// The deepest stack a route may push.
    pub const MAX_DEPTH: usize = MAX_LABELS;

    /// A stack of the given labels, top first.
    ///
    /// # Errors
    /// [`LabelError::EmptyStack`] or [`LabelError::StackTooDeep`].
    pub fn new(labels: impl Into<Vec<Label>>) -> Result<LabelStack, LabelError> {
        let labels = labels.into();
        if labels.is_empty() {
            return Err(LabelError::EmptyStack);
        }
        if labels.len() > Self::MAX_DEPTH {
            return Err(LabelError::StackTooDeep { depth: labels.len(), max: Self::MAX_DEPTH });
        }
        Ok(LabelStack(labels))
    }

    /// A stack of one label.
    pub fn single(label: Label) -> LabelStack {
        LabelStack(vec![label])
    }

    /// The labels, top first.
    pub fn labels(&self) -> &[Label] {
        &self.0
    }

    /// Number of labels (1..=16).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a stack holds at least one label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries this stack puts on the wire with the given TC and TTL: S set
    /// on the last one only.
    pub fn entries(&self, tc: TrafficClass, ttl: u8) -> Vec<LabelStackEntry> {
        let last = self.0.len().saturating_sub(1);
        self.0
            .iter()
            .enumerate()
            .map(|(i, label)| LabelStackEntry { label: label.value(), tc: tc.value(), bottom: i == last, ttl })
            .collect()
    }
}

impl From<Label> for LabelStack {
    fn from(label: Label) -> Self {
        LabelStack::single(label)
    }
}

impl FromStr for LabelStack {
    type Err = LabelError;
    /// Parses `L1/L2/...`, top first. A part that is not a number is
    /// reported with the whole text and its position
    /// ([`LabelError::StackParse`]); a number that is not a label, by its
    /// value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let several = s.contains('/');
        let labels = s
            .split('/')
            .enumerate()
            .map(|(i, part)| match part.parse::<Label>() {
                Err(LabelError::Parse { .. }) if several => {
                    Err(LabelError::StackParse { input: s.to_owned(), position: i + 1, part: part.to_owned() })
                }
                other => other,
            })
            .collect::<Result<Vec<Label>, _>>()?;
        LabelStack::new(labels)
    }
}

impl fmt::Display for LabelStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{label}")?;
        }
        Ok(())
    }
}

/// One 32-bit label stack entry as on the wire: label (20 bits), TC (3), S (1),
/// TTL (8), big endian.
///
/// Decoding accepts any label value, special-purpose ones included, because it
/// reads what is on the wire.
///
/// ```
/// use lnetd_host_encap::labels::LabelStackEntry;
/// let e = LabelStackEntry { label: 1_000_000, tc: 0, bottom: true, ttl: 64 };
/// let wire = e.encode();
/// assert_eq!(wire, [0xf4, 0x24, 0x01, 0x40]);
/// assert_eq!(LabelStackEntry::decode(wire), e);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelStackEntry {
    /// The label, 0..=1,048,575 (higher bits are dropped on encode).
    pub label: u32,
    /// Traffic class, 0..=7 (higher bits are dropped on encode).
    pub tc: u8,
    /// Bottom of stack (S bit).
    pub bottom: bool,
    /// Time to live.
    pub ttl: u8,
}

impl LabelStackEntry {
    /// The entry in network byte order.
    pub const fn encode(self) -> [u8; 4] {
        ((self.label & Label::MAX) << 12 | ((self.tc & 7) as u32) << 9 | (self.bottom as u32) << 8 | self.ttl as u32)
            .to_be_bytes()
    }

    /// An entry from four bytes in network byte order.
    pub const fn decode(bytes: [u8; 4]) -> LabelStackEntry {
        let word = u32::from_be_bytes(bytes);
        LabelStackEntry {
            label: word >> 12,
            tc: ((word >> 9) & 7) as u8,
            bottom: (word >> 8) & 1 == 1,
            ttl: word as u8,
        }
    }
}

impl fmt::Display for LabelStackEntry {
    /// tcpdump's notation: `(label 1000000, tc 0, [S], ttl 64)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.bottom { ", [S]" } else { "" };
        write!(f, "(label {}, tc {}{s}, ttl {})", self.label, self.tc, self.ttl)
    }
}

/// Reads a label stack from the start of `bytes` (the bytes after an 0x8847
/// ethertype) down to and including the entry with S set; returns the entries
/// and the rest (the payload).
///
/// # Errors
/// [`LabelError::Truncated`] when the bytes end before an entry with S=1.
///
/// ```
/// use lnetd_host_encap::{labels::decode_stack, labels::LabelStackEntry};
/// let wire = [0x03, 0xe8, 0x00, 0x40, 0x07, 0xd0, 0x01, 0x40, 0x45];
/// let (stack, payload) = decode_stack(&wire)?;
/// assert_eq!(stack.iter().map(|e| e.label).collect::<Vec<_>>(), [16000, 32000]);
/// assert_eq!(payload, &[0x45]);
/// # Ok::<(), lnetd_host_encap::errors::LabelError>(())
/// ```
pub fn decode_stack(mut bytes: &[u8]) -> Result<(Vec<LabelStackEntry>, &[u8]), LabelError> {
    let mut entries = Vec::new();
    loop {
        let Some((head, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(LabelError::Truncated { reason: "no entry with the bottom-of-stack bit before the end" });
        };
        let entry = LabelStackEntry::decode(*head);
        entries.push(entry);
        bytes = rest;
        if entry.bottom {
            return Ok((entries, bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_bounds_and_special_values() {
        assert_eq!(Label::new(0).map(Label::value), Ok(0));
        assert_eq!(Label::new(2).map(Label::value), Ok(2));
        assert_eq!(Label::new(16).map(Label::value), Ok(16));
        assert_eq!(Label::new(1_048_575).map(Label::value), Ok(1_048_575));
        assert_eq!(Label::new(1_048_576), Err(LabelError::OutOfRange { value: 1_048_576 }));
        // Every special-purpose value but the explicit nulls, unassigned ones included.
        for v in [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
            assert!(matches!(Label::new(v), Err(LabelError::SpecialPurpose { value, .. }) if value == v), "{v}");
        }
    }

    #[test]
    fn label_parse_errors_name_the_input() {
        assert_eq!("x1".parse::<Label>(), Err(LabelError::Parse { input: "x1".into() }));
        assert_eq!("-1".parse::<Label>(), Err(LabelError::Parse { input: "-1".into() }));
        assert!(matches!("7".parse::<Label>(), Err(LabelError::SpecialPurpose { value: 7, .. })));
        // A stack where one label is expected (`pop add 16001/16002`) says so, not "expected ... `16001/16002`".
        let stack = "16001/16002".parse::<Label>().unwrap_err();
        assert_eq!(stack, LabelError::OneLabelExpected { input: "16001/16002".into() });
        assert!(stack.to_string().contains("is a label stack where one label is expected"), "{stack}");
        let msg = Label::new(3).unwrap_err().to_string();
        assert!(msg.contains("Implicit NULL") && msg.contains("16 or above"), "{msg}");
    }

    #[test]
    fn stack_parse_errors_quote_the_text_and_the_part() {
        let empty = "100//200".parse::<LabelStack>().unwrap_err().to_string();
        assert!(empty.starts_with("\"100//200\" is not a label stack: label 2 of 3 is empty"), "{empty}");
        let word = "16001/x".parse::<LabelStack>().unwrap_err().to_string();
        assert!(
            word.starts_with("\"16001/x\" is not a label stack: label 2 of 2, \"x\", is not a label (a number"),
            "{word}"
        );
        let huge = "16001/99999999999".parse::<LabelStack>().unwrap_err();
        assert!(matches!(&huge, LabelError::StackParse { position: 2, part, .. } if part == "99999999999"), "{huge:?}");
        let trailing = "/16001".parse::<LabelStack>().unwrap_err();
        assert!(matches!(trailing, LabelError::StackParse { position: 1, .. }), "{trailing:?}");
    }

    #[test]
    fn dscp_is_not_a_traffic_class_and_the_error_says_where_it_belongs() {
        let e = "dscp".parse::<TrafficClass>().unwrap_err();
        assert_eq!(e, LabelError::TrafficClassParse { input: "dscp".into() });
        assert!(e.to_string().contains("parse a Tc"), "{e}");
        let other = "x".parse::<TrafficClass>().unwrap_err().to_string();
        assert_eq!(other, "\"x\" is not a traffic class: expected 0..=7");
    }

    #[test]
    fn traffic_class_bounds() {
        assert_eq!(TrafficClass::new(7).map(TrafficClass::value), Ok(7));
        assert_eq!(TrafficClass::new(8), Err(LabelError::TrafficClassOutOfRange { value: 8 }));
    }

    #[test]
    fn stack_depth_limits() {
        let l = Label::new(100).unwrap();
        assert_eq!(LabelStack::new(vec![]), Err(LabelError::EmptyStack));
        assert_eq!(LabelStack::new(vec![l; 16]).map(|s| s.len()), Ok(16));
        assert_eq!(LabelStack::new(vec![l; 17]), Err(LabelError::StackTooDeep { depth: 17, max: 16 }));
        assert_eq!("1/2".parse::<LabelStack>().map(|_| ()), Err(Label::new(1).unwrap_err()));
        assert_eq!(
            "100//200".parse::<LabelStack>(),
            Err(LabelError::StackParse { input: "100//200".into(), position: 2, part: String::new() })
        );
        assert!(matches!("abc".parse::<LabelStack>(), Err(LabelError::Parse { input }) if input == "abc"));
        assert_eq!("16001/16002".parse::<LabelStack>().unwrap().to_string(), "16001/16002");
    }

    #[test]
    fn entries_set_bottom_only_on_the_last() {
        let stack: LabelStack = "100/200/300".parse().unwrap();
        let entries = stack.entries(TrafficClass::new(5).unwrap(), 9);
        assert_eq!(entries.iter().map(|e| e.bottom).collect::<Vec<_>>(), [false, false, true]);
        assert!(entries.iter().all(|e| e.tc == 5 && e.ttl == 9));
    }

    #[test]
    fn entry_encoding_matches_rfc3032_bit_layout() {
        let e = LabelStackEntry { label: 0xABCDE, tc: 0b101, bottom: true, ttl: 0x7F };
        assert_eq!(u32::from_be_bytes(e.encode()), 0xABCDE << 12 | 0b101 << 9 | 1 << 8 | 0x7F);
        assert_eq!(LabelStackEntry::decode(e.encode()), e);
        for (label, tc, bottom, ttl) in [(0, 0, false, 0), (Label::MAX, 7, true, 255), (16, 3, false, 1)] {
            let e = LabelStackEntry { label, tc, bottom, ttl };
            assert_eq!(LabelStackEntry::decode(e.encode()), e);
        }
    }

    #[test]
    fn decode_stack_stops_at_bottom_and_reports_truncation() {
        let a = LabelStackEntry { label: 16001, tc: 0, bottom: false, ttl: 64 };
        let b = LabelStackEntry { label: 16002, tc: 0, bottom: true, ttl: 64 };
        let mut wire = [a.encode(), b.encode()].concat();
        wire.extend_from_slice(&[0x45, 0x00]);
        let (stack, rest) = decode_stack(&wire).unwrap();
        assert_eq!(stack, [a, b]);
        assert_eq!(rest, [0x45, 0x00]);
        assert!(matches!(decode_stack(&a.encode()), Err(LabelError::Truncated { .. })));
        assert!(matches!(decode_stack(&[1, 2, 3]), Err(LabelError::Truncated { .. })));
    }
}
