//! How values read to a person, for the types whose own module has no
//! `Display` (the labels, policies, prefixes, modes and counters carry
//! theirs beside their parsers, and a value with a text form that the
//! library parses displays as exactly that text: the tests below check that
//! it reads back).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::diagnostics::{DifferenceKind, Probe, ProbeProtocol, RunStats, TestRun};
use crate::encap::{Attachment, Hook};
use crate::fib::RouteCounters;
use crate::labels::PolicyUpdate;
use crate::metrics::CountedRoute;

impl fmt::Display for RouteCounters {
    /// `N packets, M bytes` labelled; for a route of several segment lists,
    /// each list's share after it, in the policy's order; `not counted` for a
    /// route that got no counter slot (what the command shows as `-`).
    ///
    /// ```text
    /// 10 packets, 1000 bytes (list 0: 7 packets, 700 bytes; list 1: 3 packets, 300 bytes)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.counted {
            return f.write_str("not counted (no counter slot left: raise EncapsulatorBuilder::max_counted_routes)");
        }
        write!(f, "{}", self.labelled)?;
        if self.lists.len() > 1 {
            f.write_str(" (")?;
            for (i, c) in self.lists.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "list {i}: {c}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Display for CountedRoute {
    /// The route, its table when not the main one, then its counters, on
    /// one line:
    ///
    /// ```text
    /// 198.51.100.0/24 -> 16001@7,16003@3 (tc 0) in table 3: 10 packets, 1000 bytes (list 0: ...; list 1: ...)
    /// ```
    ///
    /// A route set aside for a host address ends with `(set aside: a host address)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.route)?;
        if let crate::Table::Alternate(id) = self.table {
            write!(f, " in table {id}")?;
        }
        write!(f, ": {}", self.counters)?;
        if self.set_aside {
            f.write_str(" (set aside: a host address)")?;
        }
        Ok(())
    }
}

impl fmt::Display for Probe {
    /// What the probe is, as `ss` writes a flow: `tcp 10.0.0.5:1234 ->
    /// 198.51.100.7:443, dscp 46, ttl 64` (IPv6 addresses in brackets; no
    /// ports for ICMP; the source is the one used, `0.0.0.0` or `::` when
    /// none was given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (src, dst) = (self.source(), self.dst);
        match self.protocol {
            ProbeProtocol::Icmp => {
                let proto = if dst.is_ipv4() { "icmp" } else { "icmpv6" };
                write!(f, "{proto} {src} -> {dst} echo request")?;
            }
            p => {
                let at = |ip: IpAddr, port| SocketAddr::new(ip, port);
                write!(f, "{p} {} -> {}", at(src, self.sport), at(dst, self.dport))?;
            }
        }
        write!(f, ", dscp {}, ttl {}", self.dscp, self.ttl)
    }
}

impl fmt::Display for Attachment {
    /// `eth1 (ifindex 3), native mode`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (ifindex {}), {} mode", self.iface, self.ifindex, self.mode)
    }
}

impl fmt::Display for Hook {
    /// `xdp native`, `xdp auto`, ..., or `egress`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::Xdp(mode) => write!(f, "xdp {mode}"),
            Hook::Egress => f.write_str("egress"),
        }
    }
}

impl fmt::Display for DifferenceKind {
    /// Its name in the command's JSON: `missing`, `unexpected` or `differs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for RunStats {
    /// `N runs, T total, A average` (`0 runs` alone when none was counted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.runs == 1 { "" } else { "s" };
        write!(f, "{} run{s}", self.runs)?;
        if self.runs > 0 {
            let nanos = self.run_time.as_nanos() / u128::from(self.runs);
            let average = std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            write!(f, ", {:?} total, {average:?} average", self.run_time)?;
        }
        Ok(())
    }
}

impl fmt::Display for PolicyUpdate {
    /// `N routes follow, M map operations` (0 operations: the object
    /// already held this content).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        let follow = if self.routes == 1 { "follows" } else { "follow" };
        write!(
            f,
            "{} route{} {follow}, {} map operation{}",
            self.routes,
            s(self.routes),
            self.map_operations,
            s(self.map_operations)
        )
    }
}

impl fmt::Display for TestRun {
    /// The verdict and the length of the frame the program left:
    /// `XDP_TX, 98-byte frame`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}-byte frame", self.action, self.frame.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counter;

    fn c(packets: u64) -> Counter {
        Counter { packets, bytes: packets * 100 }
    }

    #[test]
    fn route_counters_display() {
        let plain = RouteCounters { counted: true, labelled: c(10), lists: vec![c(10)] };
        assert_eq!(plain.to_string(), "10 packets, 1000 bytes");
        let policy = RouteCounters { counted: true, labelled: c(10), lists: vec![c(7), c(3)] };
        assert_eq!(
            policy.to_string(),
            "10 packets, 1000 bytes (list 0: 7 packets, 700 bytes; list 1: 3 packets, 300 bytes)"
        );
        let uncounted = RouteCounters { counted: false, labelled: c(0), lists: vec![c(0), c(0)] };
        assert!(uncounted.to_string().starts_with("not counted"), "{uncounted}");
    }

    /// `x.to_string().parse() == x` for every value with a text form the
    /// library reads, over values that exercise each branch of the text.
    fn reads_back<T>(texts: &[&str])
    where
        T: std::str::FromStr + fmt::Display + PartialEq + fmt::Debug,
        T::Err: fmt::Debug,
    {
        for text in texts {
            let value: T = text.parse().unwrap();
            let shown = value.to_string();
            assert_eq!(shown.parse::<T>().unwrap(), value, "{text:?} displayed as {shown:?}");
            assert!(!shown.contains('\n'), "one line: {shown:?}");
        }
    }

    #[test]
    fn every_text_form_reads_back() {
        use crate::encap::{AttachedMode, Ipv4Lookup, MtuPolicy, OtherLabels, TtlMode, XdpMode};
        use crate::labels::{EntropyLabel, Label, LabelStack, Policy, TrafficClass};
        use crate::routes::Tc;
        reads_back::<Label>(&["16", "16001", "1048575", " 24005 "]);
        reads_back::<LabelStack>(&["16001", "16001/16002/24005", "16/1048575"]);
        reads_back::<Policy>(&["16001", "16001/16002", "16001@7", "16001/16002@7,16003@3", "16001@1,16002@1"]);
        reads_back::<TrafficClass>(&["0", "7"]);
        reads_back::<Tc>(&["0", "5", "dscp"]);
        reads_back::<EntropyLabel>(&["bottom", "1", "3"]);
        reads_back::<XdpMode>(&["native", "generic", "offload", "auto"]);
        reads_back::<AttachedMode>(&["native", "generic", "offload", "egress", "ingress"]);
        reads_back::<TtlMode>(&["copy", "1", "255"]);
        reads_back::<MtuPolicy>(&["drop", "pass"]);
        reads_back::<Ipv4Lookup>(&["dir24-8", "lpm"]);
        reads_back::<ProbeProtocol>(&["udp", "tcp", "icmp"]);
        for text in ["0.0.0.0/0", "198.51.100.0/24", "10.1.2.3/32", "::/0", "2001:db8::/32", "2001:db8::1/128"] {
            let prefix = crate::routes::prefix::parse(text).unwrap();
            assert_eq!(prefix.to_string(), text);
            assert_eq!(crate::routes::prefix::parse(&prefix.to_string()).unwrap(), prefix);
        }
        for other in [OtherLabels::Pass, OtherLabels::Drop] {
            assert_eq!(other.to_string().parse::<OtherLabels>().unwrap(), other);
        }
    }

    /// The one place the text form and the display part: an entropy label
    /// is its own key in files and on the command line, so a policy shows
    /// it as a marker after the lists, which `Policy::from_str` does not read.
    #[test]
    fn a_policy_with_an_entropy_label_shows_it_after_the_lists() {
        use crate::labels::{EntropyLabel, Policy};
        let policy: Policy = "16001/16002@7,16003@3".parse().unwrap();
        let bottom = policy.clone().with_entropy_label(Some(EntropyLabel::Bottom)).unwrap();
        assert_eq!(bottom.to_string(), "16001/16002@7,16003@3 +EL");
        let after = policy.with_entropy_label(Some(EntropyLabel::After(2))).unwrap();
        assert_eq!(after.to_string(), "16001/16002@7,16003@3 +EL@2");
        let lists = after.to_string();
        let lists = lists.split(" +EL").next().unwrap();
        assert_eq!(lists.parse::<Policy>().unwrap().with_entropy_label(after.entropy_label()).unwrap(), after);
    }

    #[test]
    fn one_line_values_read_as_documented() {
        use crate::encap::{AttachedMode, XdpMode};
        use crate::{Route, Table};
        let route = Route::new("198.51.100.0/24".parse().unwrap(), "16001/16002".parse().unwrap());
        let counted = CountedRoute {
            table: Table::alternate(3).unwrap(),
            route: route.clone(),
            counters: RouteCounters { counted: true, labelled: c(2), lists: vec![c(2)] },
            set_aside: false,
        };
        assert_eq!(counted.to_string(), "198.51.100.0/24 -> 16001/16002 (tc 0) in table 3: 2 packets, 200 bytes");
        let main = CountedRoute { table: Table::Main, ..counted };
        assert_eq!(main.to_string(), "198.51.100.0/24 -> 16001/16002 (tc 0): 2 packets, 200 bytes");

        let v4 = Probe::tcp("198.51.100.7".parse().unwrap()).from("10.0.0.5".parse().unwrap()).sport(1234).dport(443);
        assert_eq!(v4.dscp(46).to_string(), "tcp 10.0.0.5:1234 -> 198.51.100.7:443, dscp 46, ttl 64");
        let v6 = Probe::udp("2001:db8::7".parse().unwrap()).ttl(1);
        assert_eq!(v6.to_string(), "udp [::]:49152 -> [2001:db8::7]:4789, dscp 0, ttl 1");
        let ping = Probe::icmp("2001:db8::7".parse().unwrap());
        assert_eq!(ping.to_string(), "icmpv6 :: -> 2001:db8::7 echo request, dscp 0, ttl 64");

        let at = Attachment { iface: "eth1".into(), ifindex: 3, mode: AttachedMode::Generic };
        assert_eq!(at.to_string(), "eth1 (ifindex 3), generic mode");
        assert_eq!(Hook::Xdp(XdpMode::Auto).to_string(), "xdp auto");
        assert_eq!(Hook::Egress.to_string(), "egress");
        for kind in [DifferenceKind::Missing, DifferenceKind::Unexpected, DifferenceKind::Differs] {
            assert_eq!(kind.to_string(), kind.name());
        }

        assert_eq!(PolicyUpdate { routes: 1, map_operations: 0 }.to_string(), "1 route follows, 0 map operations");
        assert_eq!(PolicyUpdate { routes: 3, map_operations: 1 }.to_string(), "3 routes follow, 1 map operation");
        let run = TestRun { action: crate::diagnostics::XdpAction::Tx, frame: vec![0; 98] };
        assert_eq!(run.to_string(), "XDP_TX, 98-byte frame");

        let none = RunStats::default();
        assert_eq!(none.to_string(), "0 runs");
        let some = RunStats { runs: 4, run_time: std::time::Duration::from_micros(10) };
        assert_eq!(some.to_string(), "4 runs, 10µs total, 2.5µs average");
    }
}
