//! The dataplane's counters, summed over CPUs.

use std::fmt;

use crate::abi::decap::types::decap_counter;
use crate::abi::types::{self, encap_counter};
use crate::error::MapError;
use crate::sys::map::BpfMap;

/// Packets and bytes (frame length as received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes of the frames as they arrived (before any label was pushed).
    pub bytes: u64,
}

impl Counter {
    fn add(&mut self, other: Counter) {
        *self = self.plus(other);
    }

    /// Both counts added (saturating).
    pub fn plus(self, other: Counter) -> Counter {
        Counter { packets: self.packets.saturating_add(other.packets), bytes: self.bytes.saturating_add(other.bytes) }
    }
}

/// One counter per way out of the program; each packet increments exactly one,
/// so [`Stats::total`] is everything the program saw. Beside them, what only
/// the driver knows: the labelled frames it then failed to send
/// ([`Stats::tx_errors`]). Probes of [`crate::Encapsulator::explain`] are
/// never counted (docs/counters.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Labelled and handed to the driver to send back out of the interface
    /// (XDP_TX; on the egress hook: labelled and passed on). Whether the
    /// driver then sent them is [`Stats::tx_errors`].
    pub labelled: Counter,
    /// Passed: not IPv4/IPv6 (ARP, LLDP, already MPLS, more than two VLAN tags...).
    pub not_ip: Counter,
    /// Passed: truncated or invalid Ethernet/VLAN/IP header.
    pub malformed: Counter,
    /// Passed: broadcast or multicast, by MAC or IP destination.
    pub multicast: Counter,
    /// Passed: addressed to one of the host's own addresses, or link-local
    /// (169.254.0.0/16, fe80::/10), which no router forwards; on egress also
    /// what the kernel sends to an on-link neighbour (no gateway in its
    /// route), unless [`crate::encap::EncapsulatorBuilder::label_on_link`].
    pub local: Counter,
    /// Passed: no route covers the destination.
    pub no_route: Counter,
    /// Dropped: would have exceeded the MTU once labelled ([`crate::encap::MtuPolicy::Drop`]).
    pub mtu_dropped: Counter,
    /// Passed unlabelled: would have exceeded the MTU ([`crate::encap::MtuPolicy::Pass`]).
    pub mtu_passed: Counter,
    /// Passed unlabelled: the driver left no headroom to push into.
    pub no_headroom: Counter,
    /// Aborted: an internal inconsistency (never expected; report it).
    pub aborted: Counter,
    /// Dropped: the route's SR policy has no live candidate path and says
    /// drop ([`crate::labels::NoLivePath::Drop`]; with
    /// [`crate::labels::NoLivePath::Unlabelled`] such packets are passed and
    /// counted in [`Stats::no_route`]). Absent from the JSON of builds
    /// before it: read as 0.
    #[serde(default)]
    pub no_live_path_dropped: Counter,
    /// Frames the driver failed to send after the program returned XDP_TX
    /// (lost: the program cannot see this), from the driver's own
    /// statistics (`ethtool -S`, every `*xdp_tx_err*` field, e.g. a veth's
    /// `rx_queue_N_xdp_tx_errors`), counted by the kernel since the
    /// interface was created, for every program that ran on it. `None`
    /// where nobody can say: not attached, attached in generic mode or on
    /// egress (the frame is an skb sent by the stack, whose losses show as
    /// the device's `tx_dropped`, mixed with every other), or a driver
    /// that keeps no such counter.
    pub tx_errors: Option<u64>,
}

// A counter added on the C side must be given a field here: this fails to build until it is.
const _: () = assert!(encap_counter::ENCAP_CNT__MAX.0 == 11);

impl Stats {
    /// The slot for counter `index` of the dataplane's `enum encap_counter`.
    pub(crate) fn slot(&mut self, index: u32) -> Option<&mut Counter> {
        Some(match encap_counter(index) {
            encap_counter::ENCAP_CNT_TX => &mut self.labelled,
            encap_counter::ENCAP_CNT_PASS_NOT_IP => &mut self.not_ip,
            encap_counter::ENCAP_CNT_PASS_MALFORMED => &mut self.malformed,
            encap_counter::ENCAP_CNT_PASS_MULTICAST => &mut self.multicast,
            encap_counter::ENCAP_CNT_PASS_LOCAL => &mut self.local,
            encap_counter::ENCAP_CNT_PASS_NO_ROUTE => &mut self.no_route,
            encap_counter::ENCAP_CNT_MTU_DROP => &mut self.mtu_dropped,
            encap_counter::ENCAP_CNT_MTU_PASS => &mut self.mtu_passed,
            encap_counter::ENCAP_CNT_PASS_NO_HEADROOM => &mut self.no_headroom,
            encap_counter::ENCAP_CNT_ABORTED => &mut self.aborted,
            encap_counter::ENCAP_CNT_NO_LIVE_PATH_DROP => &mut self.no_live_path_dropped,
            _ => return None,
        })
    }

    pub(crate) fn accumulate(&mut self, index: u32, value: Counter) {
        if let Some(slot) = self.slot(index) {
            slot.add(value);
        }
    }

    /// Every counter with its name (the field's, as in JSON and metric names).
    pub fn named(&self) -> [(&'static str, Counter); 11] {
        [
            ("labelled", self.labelled),
            ("not_ip", self.not_ip),
            ("malformed", self.malformed),
            ("multicast", self.multicast),
            ("local", self.local),
            ("no_route", self.no_route),
            ("mtu_dropped", self.mtu_dropped),
            ("mtu_passed", self.mtu_passed),
            ("no_headroom", self.no_headroom),
            ("aborted", self.aborted),
            ("no_live_path_dropped", self.no_live_path_dropped),
        ]
    }

    /// All counters added up: every packet the program saw.
    pub fn total(&self) -> Counter {
        sum(&self.named())
    }

    /// The counters accumulated since `earlier` (saturating, so a reload does
    /// not underflow); [`Stats::tx_errors`] only where both have it.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut delta = since(*self, *earlier, encap_counter::ENCAP_CNT__MAX.0, Stats::slot);
        delta.tx_errors = self.tx_errors.zip(earlier.tx_errors).map(|(now, then)| now.saturating_sub(then));
        delta
    }

    /// The program's counters read from its `counters` map (per-CPU, summed);
    /// [`Stats::tx_errors`] is left `None`.
    pub(crate) fn read(map: &BpfMap) -> Result<Stats, MapError> {
        let mut stats = Stats::default();
        for index in 0..encap_counter::ENCAP_CNT__MAX.0 {
            for bytes in map.lookup_percpu(&index.to_ne_bytes())? {
                if let Some(v) = crate::abi::from_bytes::<types::counter_value>(&bytes) {
                    stats.accumulate(index, Counter { packets: v.packets, bytes: v.bytes });
                }
            }
        }
        Ok(stats)
    }
}

/// The decapsulator's counters, one per way out of its program; each packet
/// increments exactly one, by the bytes of the frame as it arrived (labels
/// included), so [`DecapStats::total`] is everything the program saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecapStats {
    /// Every entry down to the bottom of the stack popped, the IP ethertype
    /// restored; passed to the host's stack.
    pub popped: Counter,
    /// The top entries popped, a label not in the set kept below them (the
    /// frame stays MPLS); passed ([`crate::encap::OtherLabels::Pass`]).
    pub popped_partial: Counter,
    /// Passed untouched: not MPLS (ethertype after the VLAN tags is not 0x8847).
    pub not_mpls: Counter,
    /// Passed untouched: the top label is not in the pop set ([`crate::encap::OtherLabels::Pass`]).
    pub other_label_passed: Counter,
    /// Dropped: a label not in the pop set ([`crate::encap::OtherLabels::Drop`]).
    pub other_label_dropped: Counter,
    /// Passed untouched: truncated Ethernet/VLAN header or label stack, no
    /// bottom-of-stack bit within 16 entries, or neither IPv4 nor IPv6 under
    /// the stack.
    pub malformed: Counter,
    /// Aborted: an internal inconsistency (never expected; report it).
    pub aborted: Counter,
}

// A counter added on the C side must be given a field here: this fails to build until it is.
const _: () = assert!(decap_counter::DECAP_CNT__MAX.0 == 7);

impl DecapStats {
    fn slot(&mut self, index: u32) -> Option<&mut Counter> {
        Some(match decap_counter(index) {
            decap_counter::DECAP_CNT_POPPED => &mut self.popped,
            decap_counter::DECAP_CNT_POPPED_PARTIAL => &mut self.popped_partial,
            decap_counter::DECAP_CNT_NOT_MPLS => &mut self.not_mpls,
            decap_counter::DECAP_CNT_OTHER_PASSED => &mut self.other_label_passed,
            decap_counter::DECAP_CNT_OTHER_DROPPED => &mut self.other_label_dropped,
            decap_counter::DECAP_CNT_MALFORMED => &mut self.malformed,
            decap_counter::DECAP_CNT_ABORTED => &mut self.aborted,
            _ => return None,
        })
    }

    pub(crate) fn accumulate(&mut self, index: u32, value: Counter) {
        if let Some(slot) = self.slot(index) {
            slot.add(value);
        }
    }

    /// Every counter with its name (the field's).
    pub fn named(&self) -> [(&'static str, Counter); 7] {
        [
            ("popped", self.popped),
            ("popped_partial", self.popped_partial),
            ("not_mpls", self.not_mpls),
            ("other_label_passed", self.other_label_passed),
            ("other_label_dropped", self.other_label_dropped),
            ("malformed", self.malformed),
            ("aborted", self.aborted),
        ]
    }

    /// All counters added up: every packet the program saw.
    pub fn total(&self) -> Counter {
        sum(&self.named())
    }

    /// The counters accumulated since `earlier` (saturating).
    pub fn since(&self, earlier: &DecapStats) -> DecapStats {
        since(*self, *earlier, decap_counter::DECAP_CNT__MAX.0, DecapStats::slot)
    }
}

impl fmt::Display for Counter {
    /// `N packets, M bytes` (`1 packet`, `1 byte` in the singular).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        write!(f, "{} packet{}, {} byte{}", self.packets, s(self.packets), self.bytes, s(self.bytes))
    }
}

impl fmt::Display for Stats {
    /// The table `lnetd-host-encap stats` prints: a header, one line per
    /// counter (packets, bytes), then `tx_errors` (`unknown` where the driver
    /// does not say). Lines end in `\n` except the last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<20} {:>14} {:>16}", "COUNTER", "PACKETS", "BYTES")?;
        for (name, c) in self.named() {
            write!(f, "\n{name:<20} {:>14} {:>16}", c.packets, c.bytes)?;
        }
        let tx_errors = self.tx_errors.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        write!(f, "\n{:<20} {tx_errors:>14} {:>16}  (labelled frames the driver failed to send)", "tx_errors", "-")
    }
}

impl fmt::Display for DecapStats {
    /// One line per counter, as `lnetd-host-encap decap stats` prints them:
    /// name, packets, bytes. Lines end in `\n` except the last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, c)) in self.named().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{name:<20} {:>14} {:>16}", c.packets, c.bytes)?;
        }
        Ok(())
    }
}

fn sum(named: &[(&'static str, Counter)]) -> Counter {
    named.iter().fold(Counter::default(), |total, (_, c)| total.plus(*c))
}

/// `now - then`, counter by counter (saturating), for a set of `n` counters reached by `slot`.
fn since<T: Copy>(mut now: T, mut then: T, n: u32, slot: fn(&mut T, u32) -> Option<&mut Counter>) -> T {
    for i in 0..n {
        let before = slot(&mut then, i).copied();
        if let (Some(a), Some(b)) = (slot(&mut now, i), before) {
            *a = Counter { packets: a.packets.saturating_sub(b.packets), bytes: a.bytes.saturating_sub(b.bytes) };
        }
    }
    now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_index_has_a_distinct_slot() {
        let mut stats = Stats::default();
        for i in 0..encap_counter::ENCAP_CNT__MAX.0 {
            stats.accumulate(i, Counter { packets: 1 << i, bytes: 1 });
        }
        assert_eq!(stats.total(), Counter { packets: (1 << 11) - 1, bytes: 11 });
        assert!(stats.slot(encap_counter::ENCAP_CNT__MAX.0).is_none());
    }

    #[test]
    fn since_subtracts_per_counter() {
        let a = Stats { labelled: Counter { packets: 5, bytes: 500 }, ..Default::default() };
        let b = Stats {
            labelled: Counter { packets: 7, bytes: 800 },
            local: Counter { packets: 1, bytes: 60 },
            ..Default::default()
        };
        let d = b.since(&a);
        assert_eq!(d.labelled, Counter { packets: 2, bytes: 300 });
        assert_eq!(d.local, Counter { packets: 1, bytes: 60 });
        assert_eq!(a.since(&b).labelled, Counter::default());
        assert_eq!(d.tx_errors, None);
    }

    #[test]
    fn tx_errors_are_subtracted_only_where_both_are_known() {
        let a = Stats { tx_errors: Some(4), ..Default::default() };
        let b = Stats { tx_errors: Some(10), ..Default::default() };
        assert_eq!(b.since(&a).tx_errors, Some(6));
        assert_eq!(a.since(&b).tx_errors, Some(0));
        assert_eq!(b.since(&Stats::default()).tx_errors, None);
    }

    #[test]
    fn counter_display() {
        assert_eq!(Counter { packets: 29, bytes: 2900 }.to_string(), "29 packets, 2900 bytes");
        assert_eq!(Counter { packets: 1, bytes: 1 }.to_string(), "1 packet, 1 byte");
        assert_eq!(Counter::default().to_string(), "0 packets, 0 bytes");
    }

    #[test]
    fn stats_display_is_the_commands_table() {
        let mut stats = Stats::default();
        for (i, value) in (0..encap_counter::ENCAP_CNT__MAX.0).zip(1u64..) {
            stats.accumulate(i, Counter { packets: value, bytes: value * 100 });
        }
        let text = stats.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 13, "{text}");
        assert_eq!(lines[0], "COUNTER                     PACKETS            BYTES");
        assert_eq!(lines[1], "labelled                          1              100");
        assert!(lines.iter().all(|l| l.find(char::is_numeric).is_none_or(|at| at > 20)), "names fit their column");
        for ((name, c), line) in stats.named().iter().zip(&lines[1..]) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields, [*name, &c.packets.to_string(), &c.bytes.to_string()], "{line}");
        }
        assert!(lines[12].starts_with("tx_errors") && lines[12].contains("unknown"), "{}", lines[12]);
        let known = Stats { tx_errors: Some(29), ..stats }.to_string();
        assert_eq!(known.lines().last().and_then(|l| l.split_whitespace().nth(1)), Some("29"));
        assert!(!text.ends_with('\n'));
    }

    #[test]
    fn decap_stats_display_has_one_line_per_counter() {
        let stats = DecapStats { popped: Counter { packets: 3, bytes: 300 }, ..Default::default() };
        let text = stats.to_string();
        assert_eq!(text.lines().count(), 7);
        assert_eq!(
            text.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
            Some(vec!["popped", "3", "300"])
        );
        assert!(text.lines().skip(1).all(|l| l.ends_with(" 0")), "{text}");
    }

    #[test]
    fn every_decap_counter_index_has_a_distinct_slot() {
        let mut stats = DecapStats::default();
        for i in 0..decap_counter::DECAP_CNT__MAX.0 {
            stats.accumulate(i, Counter { packets: 1 << i, bytes: 1 });
        }
        assert_eq!(stats.total(), Counter { packets: (1 << 7) - 1, bytes: 7 });
        assert!(stats.slot(decap_counter::DECAP_CNT__MAX.0).is_none());
    }
}
