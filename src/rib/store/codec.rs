//! The compact binary encoding of the store's values: LEB128 varints,
//! prefixes as a length byte and only the address bytes the length covers,
//! routes as their labels and weights. Every decoded value is validated by
//! the domain type's own constructor, so a value that would not pass
//! validation cannot be restored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use super::Unreadable;
use crate::domain::label::{Label, LabelStack, TrafficClass};
use crate::domain::policy::{EntropyLabel, NoLivePath, Policy, SegmentList};
use crate::domain::route::{Route, Table, Tc};
use crate::rib::alloc::CounterSlots;

/// The tag byte of an IPv6 prefix is its length plus this (IPv4: the length).
const V6_TAG: u8 = 33;
/// The traffic class byte of a route whose TC comes from the DSCP table.
const TC_FROM_DSCP: u8 = 8;

/// Appends encoded values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u32_le(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64_le(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub(crate) fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn addr(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => {
                self.u8(4);
                self.buf.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.buf.extend_from_slice(&a.octets());
            }
        }
    }

    pub(crate) fn prefix(&mut self, p: &IpNetwork) {
        let len = p.prefix();
        let covered = usize::from(len).div_ceil(8);
        match p {
            IpNetwork::V4(n) => {
                self.u8(len);
                self.buf.extend_from_slice(n.network().octets().get(..covered).unwrap_or_default());
            }
            IpNetwork::V6(n) => {
                self.u8(V6_TAG + len);
                self.buf.extend_from_slice(n.network().octets().get(..covered).unwrap_or_default());
            }
        }
    }

    pub(crate) fn table(&mut self, t: Table) {
        self.varint(u64::from(t.id()));
    }

    /// A route without its prefix (the record's key carries it).
    pub(crate) fn route_body(&mut self, r: &Route) {
        self.u8(match r.tc {
            Tc::Fixed(tc) => tc.value(),
            Tc::FromDscp => TC_FROM_DSCP,
        });
        self.varint(match r.policy.entropy_label() {
            None => 0,
            Some(EntropyLabel::Bottom) => 1,
            Some(EntropyLabel::After(n)) => n as u64 + 2,
        });
        let lists = r.policy.lists();
        self.len(lists.len());
        for l in lists {
            self.len(l.stack.len());
            for label in l.stack.labels() {
                self.varint(u64::from(label.value()));
            }
            self.varint(u64::from(l.weight));
        }
        // Format 5: the lists out of service and the shared object's name.
        // An invalid policy has no list to mask: its byte says what its
        // packets do (0: unlabelled, as every record before format 8 says).
        let down = match r.policy.when_invalid() {
            Some(then) => u8::from(then == NoLivePath::Drop),
            None => (0..lists.len()).fold(0u8, |m, i| m | (u8::from(r.policy.is_list_down(i)) << i)),
        };
        self.u8(down);
        self.bytes(r.policy.name().unwrap_or_default().as_bytes());
    }

    pub(crate) fn counters(&mut self, c: &CounterSlots) {
        self.varint(u64::from(c.route));
        self.len(c.lists.len());
        for s in &c.lists {
            self.varint(u64::from(*s));
        }
    }
}

/// Reads encoded values from a slice; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    pub rest: &'a [u8],
}

fn invalid(what: impl std::fmt::Display) -> Unreadable {
    Unreadable::Invalid(what.to_string())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Unreadable> {
        if self.rest.len() < n {
            return Err(invalid(format!("truncated: {n} bytes wanted, {} left", self.rest.len())));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Unreadable> {
        let (&first, rest) = self.rest.split_first().ok_or_else(|| invalid("truncated: 1 byte wanted, 0 left"))?;
        self.rest = rest;
        Ok(first)
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, Unreadable> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(invalid)?))
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, Unreadable> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(invalid)?))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Unreadable> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("a varint longer than 64 bits"))
    }

    pub(crate) fn u32v(&mut self) -> Result<u32, Unreadable> {
        u32::try_from(self.varint()?).map_err(|_| invalid("a 32-bit value out of range"))
    }

    /// A count, bounded by what is left (each element takes a byte at least).
    pub(crate) fn len(&mut self) -> Result<usize, Unreadable> {
        let n = self.varint()?;
        usize::try_from(n).ok().filter(|n| *n <= self.rest.len()).ok_or_else(|| invalid(format!("a count of {n}")))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Unreadable> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn addr(&mut self) -> Result<IpAddr, Unreadable> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(self.take(4)?).map_err(invalid)?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).map_err(invalid)?))),
            tag => Err(invalid(format!("address family tag {tag}"))),
        }
    }

    pub(crate) fn prefix(&mut self) -> Result<IpNetwork, Unreadable> {
        let net = self.prefix_unchecked()?;
        crate::domain::prefix::check(net).map_err(invalid)
    }

    /// A prefix whose host bits are not checked: enough to decide whether
    /// a record is wanted (one that is goes through [`Reader::prefix`]'s check).
    pub(crate) fn prefix_unchecked(&mut self) -> Result<IpNetwork, Unreadable> {
        let tag = self.u8()?;
        let (len, v6) = if tag < V6_TAG { (tag, false) } else { (tag - V6_TAG, true) };
        let covered = self.take(usize::from(len).div_ceil(8))?;
        let addr = if v6 {
            let mut o = [0u8; 16];
            o.get_mut(..covered.len()).ok_or_else(|| invalid("IPv6 prefix length"))?.copy_from_slice(covered);
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            let mut o = [0u8; 4];
            o.get_mut(..covered.len()).ok_or_else(|| invalid("IPv4 prefix length"))?.copy_from_slice(covered);
            IpAddr::V4(Ipv4Addr::from(o))
        };
        IpNetwork::new(addr, len).map_err(invalid)
    }

    pub(crate) fn table(&mut self) -> Result<Table, Unreadable> {
        Ok(Table::alternate(self.u32v()?).unwrap_or(Table::Main))
    }

    pub(crate) fn route_body(&mut self, prefix: IpNetwork) -> Result<Route, Unreadable> {
        let tc = match self.u8()? {
            TC_FROM_DSCP => Tc::FromDscp,
            v => Tc::Fixed(TrafficClass::new(v).map_err(invalid)?),
        };
        let entropy = match self.varint()? {
            0 => None,
            1 => Some(EntropyLabel::Bottom),
            n => Some(EntropyLabel::After(usize::try_from(n - 2).map_err(invalid)?)),
        };
        let n = self.len()?;
        let mut lists = Vec::with_capacity(n);
        for _ in 0..n {
            let depth = self.len()?;
            let mut labels = Vec::with_capacity(depth);
            for _ in 0..depth {
                labels.push(Label::new(self.u32v()?).map_err(invalid)?);
            }
            let weight = u16::try_from(self.varint()?).map_err(invalid)?;
            lists.push(SegmentList { stack: LabelStack::new(labels).map_err(invalid)?, weight });
        }
        let down = self.u8()?;
        let name = std::str::from_utf8(self.bytes()?).map_err(invalid)?;
        let policy = if lists.is_empty() && !name.is_empty() {
            let then = match down {
                0 => NoLivePath::Unlabelled,
                1 => NoLivePath::Drop,
                other => return Err(invalid(format!("an invalid policy's byte {other}"))),
            };
            return Ok(Route { prefix, policy: Policy::invalid_with(name, then).map_err(invalid)?, tc });
        } else if lists.len() == 1 && entropy.is_none() && lists.first().is_some_and(|l| l.weight == 1) {
            // The common case skips the checks that only concern several lists.
            Policy::single(lists.swap_remove(0).stack)
        } else {
            Policy::new(lists, entropy).map_err(invalid)?
        };
        let policy = match down {
            0 => policy,
            mask => {
                let down: Vec<bool> = (0..8).map(|i| mask & (1 << i) != 0).collect();
                policy.with_lists_down(&down).map_err(invalid)?
            }
        };
        let policy = if name.is_empty() { policy } else { policy.with_name(name).map_err(invalid)? };
        Ok(Route { prefix, policy, tc })
    }

    /// Steps over what [`Reader::route_body`] reads, building nothing: how a
    /// reader that wants a few routes passes the others.
    pub(crate) fn skip_route_body(&mut self) -> Result<(), Unreadable> {
        self.u8()?;
        self.varint()?;
        for _ in 0..self.len()? {
            for _ in 0..self.len()? {
                self.varint()?;
            }
            self.varint()?;
        }
        self.u8()?;
        self.bytes().map(|_| ())
    }

    /// Steps over what [`Reader::counters`] reads.
    pub(crate) fn skip_counters(&mut self) -> Result<(), Unreadable> {
        self.varint()?;
        for _ in 0..self.len()? {
            self.varint()?;
        }
        Ok(())
    }

    pub(crate) fn counters(&mut self) -> Result<CounterSlots, Unreadable> {
        let route = self.u32v()?;
        let n = self.len()?;
        let lists = (0..n).map(|_| self.u32v()).collect::<Result<_, _>>()?;
        Ok(CounterSlots { route, lists })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_route(prefix: &str, policy: &str, tc: Tc) {
        let prefix: IpNetwork = prefix.parse().unwrap();
        round_trip(Route { prefix, policy: policy.parse().unwrap(), tc });
    }

    fn round_trip(route: Route) {
        let prefix = route.prefix;
        let mut w = Writer::default();
        w.prefix(&prefix);
        w.route_body(&route);
        let mut r = Reader::new(&w.buf);
        let p = r.prefix().unwrap();
        assert_eq!(r.route_body(p).unwrap(), route);
        assert!(r.is_empty());
    }

    #[test]
    fn routes_round_trip() {
        round_trip_route("0.0.0.0/0", "1000000", Tc::default());
        round_trip_route("198.51.100.0/24", "16001/16002@7,16003@3", Tc::FromDscp);
        round_trip_route("10.1.2.3/32", "16", Tc::Fixed(TrafficClass::new(5).unwrap()));
        round_trip_route("2001:db8:1::/48", "16001/16002/16003", Tc::default());
        round_trip_route("::/0", "100@2", Tc::default());
        round_trip_route("2001:db8::1/128", "17001,17002", Tc::default());
        let with_el: Policy = Policy::new(
            vec![SegmentList { stack: "16001/16002".parse().unwrap(), weight: 1 }],
            Some(EntropyLabel::After(1)),
        )
        .unwrap();
        round_trip(Route { prefix: "192.0.2.0/25".parse().unwrap(), policy: with_el.clone(), tc: Tc::default() });
        let bottom = with_el.with_entropy_label(Some(EntropyLabel::Bottom)).unwrap();
        round_trip(Route { prefix: "192.0.2.128/25".parse().unwrap(), policy: bottom.clone(), tc: Tc::FromDscp });
        let named = bottom.with_name("color 7 endpoint 192.0.2.1").unwrap();
        round_trip(Route { prefix: "192.0.2.0/24".parse().unwrap(), policy: named, tc: Tc::default() });
        round_trip(Route {
            prefix: "192.0.2.0/24".parse().unwrap(),
            policy: Policy::invalid("gone").unwrap(),
            tc: Tc::default(),
        });
        round_trip(Route {
            prefix: "192.0.2.0/24".parse().unwrap(),
            policy: Policy::invalid_with("gone", NoLivePath::Drop).unwrap(),
            tc: Tc::default(),
        });
        let down: Policy = "100@1,200@1,300@2".parse().unwrap();
        round_trip(Route {
            prefix: "10.0.0.0/8".parse().unwrap(),
            policy: down.with_lists_down(&[false, true]).unwrap().with_name("s-bfd").unwrap(),
            tc: Tc::default(),
        });
    }

    #[test]
    fn a_plain_ipv4_route_takes_few_bytes() {
        let prefix: IpNetwork = "203.0.113.0/24".parse().unwrap();
        let mut w = Writer::default();
        w.prefix(&prefix);
        w.route_body(&Route::new(prefix, "1000000".parse().unwrap()));
        // prefix, tc, entropy, lists, depth, label, weight, lists down, name (empty)
        assert_eq!(w.buf.len(), 4 + 1 + 1 + 1 + 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn varints_and_counters_round_trip() {
        let mut w = Writer::default();
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            w.varint(v);
        }
        w.counters(&CounterSlots { route: 70_000, lists: vec![1, 0, 300] });
        w.addr("192.0.2.1".parse().unwrap());
        w.addr("2001:db8::1".parse().unwrap());
        let mut r = Reader::new(&w.buf);
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(r.varint().unwrap(), v);
        }
        assert_eq!(r.counters().unwrap(), CounterSlots { route: 70_000, lists: vec![1, 0, 300] });
        assert_eq!(r.addr().unwrap(), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.addr().unwrap(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert!(r.is_empty());
    }

    #[test]
    fn bad_bytes_are_refused_not_panicked_on() {
        // A label above 2^20, a prefix longer than 32, host bits, a truncated varint.
        let mut w = Writer::default();
        w.u8(0);
        w.varint(0);
        w.len(1);
        w.len(1);
        w.varint(1 << 21);
        w.varint(1);
        w.u8(0);
        w.len(0);
        assert!(Reader::new(&w.buf).route_body("10.0.0.0/8".parse().unwrap()).is_err());
        assert!(Reader::new(&[32, 10]).prefix().is_err(), "a /32 needs 4 bytes");
        assert!(Reader::new(&[8, 10 | 1]).prefix().is_ok());
        assert!(Reader::new(&[7, 11]).prefix().is_err(), "host bits set");
        assert!(Reader::new(&[V6_TAG + 129]).prefix().is_err());
        assert!(Reader::new(&[0x80, 0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
    }
}
