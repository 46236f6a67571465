//! BPF_PROG_TEST_RUN table: every frame shape through the real program in the
//! real kernel, asserting the action, the exact output bytes and the counter.
//!
//! Runs inside a private network namespace whose loopback (the test-run
//! ingress device) has MTU 1500, so the MTU rule is exercised as on Ethernet.

mod common;

use std::collections::{HashMap, HashSet};

use common::model::{entropy_label, flow_hash, list_for, Verdict};
use common::{
    entries, frame, in_test_run_netns, labelled, privileged, raw_frame, Frame, FrameSpec, L4, LOCAL_V4, LOCAL_V6,
};
use lnetd_host_encap::{
    Counter, Encapsulator, EntropyLabel, IpNetwork, MtuPolicy, Policy, Route, TestRunError, TrafficClass, TtlMode,
    XdpAction,
};

/// What must come out.
#[derive(Debug, Clone)]
enum Expect {
    /// XDP_TX with these entries pushed.
    Tx(Vec<lnetd_host_encap::LabelStackEntry>),
    /// XDP_PASS, frame untouched.
    Pass(Verdict),
    /// XDP_DROP.
    Drop(Verdict),
}

struct Case {
    name: String,
    input: Frame,
    routes: &'static [(&'static str, &'static str)],
    tc: u8,
    config: (TtlMode, MtuPolicy),
    expect: Expect,
}

const BASE: &[(&str, &str)] = &[
    ("10.0.0.0/8", "100"),
    ("10.1.0.0/16", "200"),
    ("10.1.2.3/32", "300"),
    ("2001:db8::/32", "400"),
    ("2001:db8:1::/48", "500"),
    ("2001:db8:1::7/128", "600"),
];
const DEFAULT: &[(&str, &str)] = &[("0.0.0.0/0", "1000000"), ("::/0", "1000000")];
const TWO: &[(&str, &str)] = &[("0.0.0.0/0", "16001/16002"), ("::/0", "16001/16002")];
const SIXTEEN: &[(&str, &str)] = &[("198.51.100.0/24", "16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/1048575")];

const COPY: (TtlMode, MtuPolicy) = (TtlMode::Copy, MtuPolicy::Drop);
/// `Case::tc` value meaning "TC from the DSCP".
const DSCP: u8 = u8::MAX;

fn case(
    name: impl Into<String>,
    input: Frame,
    routes: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    Case { name: name.into(), input, routes, tc: 0, config: COPY, expect }
}

fn tx(labels: &[u32], ttl: u8) -> Expect {
    Expect::Tx(entries(labels, 0, ttl))
}

fn cases() -> Vec<Case> {
    use Expect::{Drop, Pass};
    use Verdict::*;
    let bcast = [0xff; 6];
    let mut v = vec![
        case("v4 exact /32", frame("10.1.2.3").build(), BASE, tx(&[300], 64)),
        case("v4 shorter prefix /8", frame("10.200.1.1").build(), BASE, tx(&[100], 64)),
        case("v4 longest match /16 wins over /8", frame("10.1.9.9").build(), BASE, tx(&[200], 64)),
        case("v4 miss", frame("192.0.2.1").build(), BASE, Pass(NoRoute)),
        case("v4 default route (static BSID)", frame("192.0.2.1").build(), DEFAULT, tx(&[1_000_000], 64)),
        case("v6 exact /128", frame("2001:db8:1::7").build(), BASE, tx(&[600], 64)),
        case("v6 shorter prefix /32", frame("2001:db8:9::1").build(), BASE, tx(&[400], 64)),
        case("v6 longest match /48 wins over /32", frame("2001:db8:1::8").build(), BASE, tx(&[500], 64)),
        case("v6 miss", frame("2001:db9::1").build(), BASE, Pass(NoRoute)),
        case("v6 default route (static BSID)", frame("2001:db9::1").build(), DEFAULT, tx(&[1_000_000], 64)),
        case("two labels", frame("192.0.2.9").build(), TWO, tx(&[16001, 16002], 64)),
        case(
            "sixteen labels",
            frame("198.51.100.20").build(),
            SIXTEEN,
            tx(&[16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 1_048_575], 64),
        ),
        case("v6 two labels", frame("2001:db8:5::1").build(), TWO, tx(&[16001, 16002], 64)),
        case("copy TTL 1 (traceroute probe)", frame("192.0.2.9").ttl(1).build(), DEFAULT, tx(&[1_000_000], 1)),
        case("copy TTL 255", frame("192.0.2.9").ttl(255).build(), DEFAULT, tx(&[1_000_000], 255)),
        case("copy TTL into every entry", frame("192.0.2.9").ttl(9).build(), TWO, tx(&[16001, 16002], 9)),
        case("copy hop limit 1", frame("2001:db9::1").ttl(1).build(), DEFAULT, tx(&[1_000_000], 1)),
        case("one VLAN tag", frame("10.1.2.3").vlan(0x8100, 42).build(), BASE, tx(&[300], 64)),
        case(
            "two VLAN tags (802.1ad + 802.1Q)",
            frame("10.1.2.3").vlan(0x88a8, 100).vlan(0x8100, 42).build(),
            BASE,
            tx(&[300], 64),
        ),
        case("v6 one VLAN tag", frame("2001:db8:1::7").vlan(0x8100, 7).build(), BASE, tx(&[600], 64)),
        case(
            "three VLAN tags are not parsed",
            frame("10.1.2.3").vlan(0x88a8, 1).vlan(0x8100, 2).vlan(0x8100, 3).build(),
            BASE,
            Pass(NotIp),
        ),
        case(
            "IPv4 options (record route, 8 bytes)",
            frame("10.1.2.3").options(&[7, 7, 4, 0, 0, 0, 0, 1]).build(),
            BASE,
            tx(&[300], 64),
        ),
        case("IPv4 options, 40 bytes (ihl 15)", frame("10.1.2.3").options(&[1; 40]).build(), BASE, tx(&[300], 64)),
        case("first fragment", frame("10.1.2.3").fragment(0, true).build(), BASE, tx(&[300], 64)),
        case("non-first fragment", frame("10.1.2.3").fragment(185, false).build(), BASE, tx(&[300], 64)),
        case("ICMP echo", frame("10.1.2.3").l4(L4::IcmpEcho).build(), BASE, tx(&[300], 64)),
        case("TCP SYN", frame("10.1.2.3").l4(L4::TcpSyn { sport: 40001, dport: 80 }).build(), BASE, tx(&[300], 64)),
        case("ICMPv6 echo", frame("2001:db8:1::7").l4(L4::IcmpEcho).build(), BASE, tx(&[600], 64)),
        case("ARP", raw_frame(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1]), DEFAULT, Pass(NotIp)),
        case("LLDP", raw_frame(0x88cc, &[2, 7, 4]), DEFAULT, Pass(NotIp)),
        case("already MPLS", raw_frame(0x8847, &[0x03, 0xe8, 0x01, 0x40, 0x45]), DEFAULT, Pass(NotIp)),
        case("broadcast MAC", frame("10.1.2.3").dst_mac(bcast).build(), BASE, Pass(Multicast)),
        case(
            "multicast MAC and IP",
            frame("224.0.0.5").dst_mac([0x01, 0, 0x5e, 0, 0, 5]).build(),
            DEFAULT,
            Pass(Multicast),
        ),
        case("IPv4 multicast to a unicast MAC", frame("239.1.1.1").build(), DEFAULT, Pass(Multicast)),
        case("IPv4 limited broadcast", frame("255.255.255.255").build(), DEFAULT, Pass(Multicast)),
        case("IPv6 multicast", frame("ff02::1").dst_mac([0x33, 0x33, 0, 0, 0, 1]).build(), DEFAULT, Pass(Multicast)),
        case("IPv6 multicast to a unicast MAC", frame("ff0e::1").build(), DEFAULT, Pass(Multicast)),
        case("local IPv4 destination", frame(LOCAL_V4).build(), DEFAULT, Pass(Local)),
        case("local IPv6 destination", frame(LOCAL_V6).build(), DEFAULT, Pass(Local)),
        case("loopback destination is local", frame("127.0.0.1").build(), DEFAULT, Pass(Local)),
        case(
            "fits exactly: 1496-byte packet + 1 label = MTU 1500",
            frame("192.0.2.9").payload(1496 - 28).build(),
            DEFAULT,
            tx(&[1_000_000], 64),
        ),
        case("oversize after push: dropped", frame("192.0.2.9").payload(1497 - 28).build(), DEFAULT, Drop(MtuDropped)),
        case("oversize, two labels", frame("192.0.2.9").payload(1493 - 28).build(), TWO, Drop(MtuDropped)),
        case("v6 oversize after push", frame("2001:db9::1").payload(1500 - 48).build(), DEFAULT, Drop(MtuDropped)),
    ];

    v.push(Case {
        config: (TtlMode::Fixed(255), MtuPolicy::Drop),
        ..case("fixed TTL 255 over IP TTL 1", frame("192.0.2.9").ttl(1).build(), TWO, tx(&[16001, 16002], 255))
    });
    v.push(Case {
        config: (TtlMode::Fixed(255), MtuPolicy::Drop),
        ..case("fixed TTL 255 over IP TTL 64", frame("192.0.2.9").build(), DEFAULT, tx(&[1_000_000], 255))
    });
    v.push(Case {
        config: (TtlMode::Fixed(1), MtuPolicy::Drop),
        ..case("fixed TTL 1 over hop limit 255", frame("2001:db9::1").ttl(255).build(), DEFAULT, tx(&[1_000_000], 1))
    });
    v.push(Case {
        config: (TtlMode::Copy, MtuPolicy::Pass),
        ..case("oversize with the pass policy", frame("192.0.2.9").payload(1497 - 28).build(), DEFAULT, Pass(MtuPassed))
    });
    v.push(Case {
        tc: 5,
        ..case(
            "traffic class 5 in every entry",
            frame("192.0.2.9").build(),
            TWO,
            Expect::Tx(entries(&[16001, 16002], 5, 64)),
        )
    });

    // Header corruptions the parser must refuse without touching the frame.
    let mut bad_ihl = frame("10.1.2.3").build();
    bad_ihl.bytes[14] = 0x44;
    v.push(case("IPv4 ihl below 5", bad_ihl, BASE, Pass(Malformed)));
    let mut bad_version = frame("10.1.2.3").build();
    bad_version.bytes[14] = 0x65;
    v.push(case("ethertype IPv4, version 6", bad_version, BASE, Pass(Malformed)));
    let mut long_tot_len = frame("10.1.2.3").build();
    long_tot_len.bytes[16..18].copy_from_slice(&1000u16.to_be_bytes());
    v.push(case("IPv4 total length beyond the frame", long_tot_len, BASE, Pass(Malformed)));
    let mut long_payload = frame("2001:db8:1::7").build();
    long_payload.bytes[18..20].copy_from_slice(&1000u16.to_be_bytes());
    v.push(case("IPv6 payload length beyond the frame", long_payload, BASE, Pass(Malformed)));
    let mut padded = frame("10.1.2.3").payload(0).build();
    padded.bytes.resize(60, 0);
    v.push(case("Ethernet padding after a short packet", padded, BASE, tx(&[300], 64)));

    // The MTU bounds the IP packet plus the labels: not VLAN tags, not a trailer.
    v.push(case(
        "VLAN frame whose packet + label fits the MTU",
        frame("192.0.2.9").vlan(0x8100, 5).payload(1496 - 28).build(),
        DEFAULT,
        tx(&[1_000_000], 64),
    ));
    v.push(case(
        "VLAN frame one byte over the MTU",
        frame("192.0.2.9").vlan(0x8100, 5).payload(1497 - 28).build(),
        DEFAULT,
        Drop(MtuDropped),
    ));
    let mut trailer = frame("192.0.2.9").payload(1496 - 28).build();
    trailer.bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    v.push(case("a trailer after a packet at the MTU is not counted", trailer, DEFAULT, tx(&[1_000_000], 64)));

    // SR policies: entropy labels (RFC 6790) and weighted segment lists.
    const EL_BOTTOM: &[(&str, &str)] = &[("0.0.0.0/0", "16001/16002 +EL"), ("::/0", "16001/16002 +EL")];
    const EL_AFTER1: &[(&str, &str)] = &[("0.0.0.0/0", "16001/16002/16003 +EL@1")];
    const EL_DEEP: &[(&str, &str)] = &[("0.0.0.0/0", "16001 +EL@3")];
    let f = frame("192.0.2.9").ttl(9);
    v.push(case("entropy label at the bottom", f.build(), EL_BOTTOM, with_el(&[16001, 16002], 2, hash_of(&f), 0, 9)));
    let f6 = frame("2001:db9::1");
    v.push(case("IPv6 entropy label", f6.build(), EL_BOTTOM, with_el(&[16001, 16002], 2, hash_of(&f6), 0, 64)));
    let f = frame("192.0.2.9").l4(L4::TcpSyn { sport: 1234, dport: 443 });
    v.push(case(
        "entropy label under the first label",
        f.build(),
        EL_AFTER1,
        with_el(&[16001, 16002, 16003], 1, hash_of(&f), 0, 64),
    ));
    let f = frame("192.0.2.9");
    v.push(case(
        "entropy label under more labels than the list has: at the bottom",
        f.build(),
        EL_DEEP,
        with_el(&[16001], 1, hash_of(&f), 0, 64),
    ));
    let f = frame("192.0.2.9").vlan(0x8100, 9);
    v.push(Case {
        tc: 5,
        ..case(
            "entropy label with TC 5 under a VLAN tag",
            f.build(),
            EL_BOTTOM,
            with_el(&[16001, 16002], 2, hash_of(&f), 5, 64),
        )
    });
    let f = frame("192.0.2.9").fragment(0, true);
    let g = frame("192.0.2.9").fragment(100, false);
    assert_eq!(hash_of(&f), hash_of(&g));
    v.push(case(
        "first fragment: entropy without ports",
        f.build(),
        EL_BOTTOM,
        with_el(&[16001, 16002], 2, hash_of(&f), 0, 64),
    ));
    v.push(case(
        "later fragment: the same entropy",
        g.build(),
        EL_BOTTOM,
        with_el(&[16001, 16002], 2, hash_of(&g), 0, 64),
    ));

    // TC from the DSCP, through the default table (DSCP >> 3) and a changed one.
    let ef = frame("192.0.2.9").dscp(46);
    v.push(Case {
        tc: DSCP,
        ..case("TC from DSCP 46 (EF): 5", ef.build(), TWO, Expect::Tx(entries(&[16001, 16002], 5, 64)))
    });
    v.push(Case { tc: DSCP, ..case("TC from DSCP 0: 0", frame("192.0.2.9").build(), TWO, tx(&[16001, 16002], 64)) });
    let af11 = frame("2001:db9::1").dscp(10);
    v.push(Case {
        tc: DSCP,
        ..case("IPv6 TC from DSCP 10 (AF11): 1", af11.build(), TWO, Expect::Tx(entries(&[16001, 16002], 1, 64)))
    });
    let f = frame("192.0.2.9").dscp(63);
    v.push(Case {
        tc: DSCP,
        ..case(
            "TC from DSCP with an entropy label",
            f.build(),
            EL_BOTTOM,
            with_el(&[16001, 16002], 2, hash_of(&f), 7, 64),
        )
    });

    const SPLIT: &[(&str, &str)] = &[("0.0.0.0/0", "16001/16002@7,16003@3"), ("::/0", "24001@1,24002@1,24003/24004@1")];
    for sport in [1000u16, 2000, 3000, 4000] {
        let f = frame("198.51.100.1").l4(L4::Udp { sport, dport: 53 });
        let labels = list_of(SPLIT[0].1, &f);
        v.push(case(format!("70/30 policy: the flow's list (source port {sport})"), f.build(), SPLIT, tx(&labels, 64)));
        let f6 = frame("2001:db8:77::1").l4(L4::Udp { sport, dport: 53 });
        let labels = list_of(SPLIT[1].1, &f6);
        v.push(case(
            format!("IPv6 1/1/1 policy: the flow's list (source port {sport})"),
            f6.build(),
            SPLIT,
            tx(&labels, 64),
        ));
    }
    v
}

/// `L1/L2@W,L3@W` with an optional ` +EL` (at the bottom) or ` +EL@N` (under N labels).
fn policy(spec: &str) -> Policy {
    let (lists, el) = match spec.split_once(" +EL") {
        Some((lists, "")) => (lists, Some(EntropyLabel::Bottom)),
        Some((lists, n)) => (lists, Some(EntropyLabel::After(n.trim_start_matches('@').parse().expect("N")))),
        None => (spec, None),
    };
    lists.parse::<Policy>().expect("policy").with_entropy_label(el).expect("entropy label")
}

/// The flow hash of a frame built from `spec` (the documented definition, in the model).
fn hash_of(spec: &FrameSpec) -> u32 {
    let (proto, ports) = match spec.l4 {
        L4::Udp { sport, dport } => (17, Some((u32::from(sport) << 16) | u32::from(dport))),
        L4::TcpSyn { sport, dport } => (6, Some((u32::from(sport) << 16) | u32::from(dport))),
        L4::IcmpEcho => (if spec.dst.is_ipv6() { 58 } else { 1 }, None),
    };
    let ports = if spec.fragment.is_some() { None } else { ports };
    flow_hash(spec.src, spec.dst, proto, ports)
}

/// Expected entries for `labels` with an entropy label pair at `at`, TTL `ttl`, TC `tc`.
fn with_el(labels: &[u32], at: usize, hash: u32, tc: u8, ttl: u8) -> Expect {
    let mut all = labels.to_vec();
    all.splice(at..at, [7, entropy_label(hash)]);
    let mut e = entries(&all, tc, ttl);
    e[at + 1].ttl = 0;
    Expect::Tx(e)
}

/// The list a flow takes under `spec` (through the model's flow table).
fn list_of(spec: &str, flow: &FrameSpec) -> Vec<u32> {
    list_for(&policy(spec), hash_of(flow))
}

fn prefix(s: &str) -> IpNetwork {
    s.parse().expect("table prefix")
}

struct Harness {
    encaps: HashMap<(TtlMode, MtuPolicy), Encapsulator>,
}

impl Harness {
    fn encap(&mut self, config: (TtlMode, MtuPolicy)) -> &Encapsulator {
        self.encaps.entry(config).or_insert_with(|| {
            let enc = Encapsulator::builder().ttl_mode(config.0).mtu_policy(config.1).load().expect("load");
            enc.refresh_local_addresses().expect("host addresses");
            enc
        })
    }

    fn program(&mut self, config: (TtlMode, MtuPolicy), routes: &[(&str, &str)], tc: u8) -> &Encapsulator {
        let enc = self.encap(config);
        for r in enc.routes().expect("routes") {
            enc.remove(r.prefix).expect("remove");
        }
        for (p, spec) in routes {
            let route = Route::with_policy(prefix(p), policy(spec));
            let route =
                if tc == DSCP { route.with_tc_from_dscp() } else { route.with_tc(TrafficClass::new(tc).expect("tc")) };
            enc.set_route(&route).expect("set_route");
        }
        enc
    }
}

/// Runs one frame, checks action, bytes and that exactly one counter moved by
/// exactly this frame. Returns a description of the first mismatch.
fn check(enc: &Encapsulator, name: &str, input: &Frame, expect: &Expect) -> Result<(), String> {
    let before = enc.stats().map_err(|e| e.to_string())?;
    let run = enc.test_run(&input.bytes).map_err(|e| format!("{name}: {e}"))?;
    let delta = enc.stats().map_err(|e| e.to_string())?.since(&before);
    let one = Counter { packets: 1, bytes: input.bytes.len() as u64 };
    let (action, frame, verdict) = match expect {
        Expect::Tx(e) => (XdpAction::Tx, labelled(input, e), Verdict::Labelled),
        Expect::Pass(v) => (XdpAction::Pass, input.bytes.clone(), *v),
        Expect::Drop(v) => (XdpAction::Drop, input.bytes.clone(), *v),
    };
    if run.action != action {
        return Err(format!("{name}: action {:?}, expected {action:?}", run.action));
    }
    if action != XdpAction::Drop && run.frame != frame {
        return Err(format!("{name}: output differs\n got  {:02x?}\n want {:02x?}", run.frame, frame));
    }
    if verdict.counter(&delta) != one || delta.total() != one {
        return Err(format!("{name}: counters moved {delta:?}, expected only {verdict:?} by {one:?}"));
    }
    Ok(())
}

/// Which counter a case's frame must land in.
fn verdict(expect: &Expect) -> Verdict {
    match expect {
        Expect::Tx(_) => Verdict::Labelled,
        Expect::Pass(v) | Expect::Drop(v) => *v,
    }
}

/// Every verdict, checked complete by an exhaustive match: a new variant does
/// not compile until it is listed here (and then needs a case).
fn all_verdicts() -> Vec<Verdict> {
    use Verdict::*;
    let all = vec![Labelled, NotIp, Malformed, Multicast, Local, NoRoute, MtuDropped, MtuPassed];
    for v in &all {
        match v {
            Labelled | NotIp | Malformed | Multicast | Local | NoRoute | MtuDropped | MtuPassed => {}
        }
    }
    all
}

/// The table itself, without the kernel: names are unique (a failure names one
/// case), every verdict and every kind of expectation has a case.
#[test]
fn table_names_are_unique_and_cover_every_outcome() {
    let cases = cases();
    let mut names = HashSet::new();
    let duplicates: Vec<&str> = cases.iter().map(|c| c.name.as_str()).filter(|n| !names.insert(*n)).collect();
    assert!(duplicates.is_empty(), "case names used twice: {duplicates:?}");
    let covered: HashSet<Verdict> = cases.iter().map(|c| verdict(&c.expect)).collect();
    let missing: Vec<Verdict> = all_verdicts().into_iter().filter(|v| !covered.contains(v)).collect();
    assert!(missing.is_empty(), "no case for {missing:?}");
    let kind = |e: &Expect| match e {
        Expect::Tx(_) => 0,
        Expect::Pass(_) => 1,
        Expect::Drop(_) => 2,
    };
    let kinds: HashSet<u8> = cases.iter().map(|c| kind(&c.expect)).collect();
    assert_eq!(kinds.len(), 3, "every Expect variant (Tx, Pass, Drop) has a case");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn packet_table() {
    privileged("packet_table");
    let cases = cases();
    let failures = in_test_run_netns("table", || {
        let mut h = Harness { encaps: HashMap::new() };
        let mut failures = Vec::new();
        for c in &cases {
            let enc = h.program(c.config, c.routes, c.tc);
            if let Err(e) = check(enc, &c.name, &c.input, &c.expect) {
                failures.push(e);
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Every truncation of valid frames is passed untouched and counted as
/// malformed; below an Ethernet header the kernel itself refuses the run.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn every_truncation_passes_untouched() {
    privileged("every_truncation_passes_untouched");
    let frames = [
        frame("10.1.2.3").vlan(0x8100, 42).options(&[7, 7, 4, 0, 0, 0, 0, 1]).build(),
        frame("2001:db8:1::7").vlan(0x88a8, 1).vlan(0x8100, 2).build(),
        frame("10.1.2.3").l4(L4::TcpSyn { sport: 1, dport: 2 }).build(),
    ];
    let failures = in_test_run_netns("table", || {
        let mut h = Harness { encaps: HashMap::new() };
        let enc = h.program(COPY, DEFAULT, 0);
        let mut failures = Vec::new();
        let mut runs = 0;
        for full in &frames {
            check(enc, "full frame", full, &tx(&[1_000_000], 64)).unwrap_or_else(|e| failures.push(e));
            for len in 0..full.bytes.len() {
                let cut = Frame { bytes: full.bytes[..len].to_vec(), l2_len: full.l2_len };
                if len < 14 {
                    match enc.test_run(&cut.bytes) {
                        Err(TestRunError::Kernel(_)) => {}
                        other => failures.push(format!("{len} bytes: kernel should refuse, got {other:?}")),
                    }
                    continue;
                }
                runs += 1;
                let name = format!("truncated to {len} of {}", full.bytes.len());
                check(enc, &name, &cut, &Expect::Pass(Verdict::Malformed)).unwrap_or_else(|e| failures.push(e));
            }
        }
        assert!(runs > 150, "only {runs} truncations ran");
        failures
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
