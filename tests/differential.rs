//! Differential fuzzing: generated frames through the real program
//! (BPF_PROG_TEST_RUN) against the reference model (tests/common/model.rs),
//! over random route tables (plain stacks, weighted policies, entropy labels)
//! and configurations. Every frame's action and bytes
//! must match, and the counters must add up to the model's verdicts.
//!
//! `LHE_FUZZ_FRAMES` (default 50,000) and `LHE_FUZZ_SEED` (default: fresh,
//! printed) control a run. The long run:
//! `LHE_FUZZ_FRAMES=5000000 cargo test --release --test differential -- --include-ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::model::{is_local_host_route, Model, Verdict};
use common::{frame, in_test_run_netns, privileged, L4, LOCAL_V4, LOCAL_V6, MTU};
use ipnetwork::IpNetwork;
use lnetd_host_encap::{
    diagnostics::XdpAction, encap::Ipv4Lookup, encap::MtuPolicy, encap::TtlMode, errors::RouteError, labels::DscpMap,
    labels::EntropyLabel, labels::SegmentList, labels::TrafficClass, labels::MAX_SEGMENT_LISTS, Encapsulator, Label,
    LabelStack, Policy, Route, Table,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Frames per random table and configuration.
const FRAMES_PER_TABLE: usize = 2_000;

fn random_addr(rng: &mut StdRng, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))
    } else {
        IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
    }
}

/// An address inside `prefix`.
fn inside(rng: &mut StdRng, prefix: &IpNetwork) -> IpAddr {
    match prefix {
        IpNetwork::V4(p) => {
            let host_bits = 32 - u32::from(p.prefix());
            let mask = if host_bits == 32 { u32::MAX } else { (1u32 << host_bits) - 1 };
            IpAddr::V4(Ipv4Addr::from(u32::from(p.network()) | (rng.random::<u32>() & mask)))
        }
        IpNetwork::V6(p) => {
            let host_bits = 128 - u32::from(p.prefix());
            let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            IpAddr::V6(Ipv6Addr::from(u128::from(p.network()) | (rng.random::<u128>() & mask)))
        }
    }
}

fn random_prefix(rng: &mut StdRng, v6: bool, near: Option<&IpNetwork>) -> IpNetwork {
    let max = if v6 { 128 } else { 32 };
    // Nested prefixes: often a longer prefix inside an existing one.
    let (base, min_len) = match near {
        Some(p) if p.is_ipv6() == v6 && rng.random_bool(0.5) => (inside(rng, p), p.prefix()),
        _ => (random_addr(rng, v6), 0),
    };
    let len = rng.random_range(min_len..=max);
    let net = IpNetwork::new(base, len).expect("length in range");
    IpNetwork::new(net.network(), len).expect("length in range")
}

fn random_stack(rng: &mut StdRng) -> LabelStack {
    let depth = if rng.random_bool(0.7) { rng.random_range(1..=3) } else { rng.random_range(1..=16) };
    let labels: Vec<Label> = (0..depth)
        .map(|_| loop {
            let v = match rng.random_range(0..4) {
                0 => rng.random_range(0..=20),
                1 => Label::MAX,
                _ => rng.random_range(16..=Label::MAX),
            };
            if let Ok(l) = Label::new(v) {
                break l;
            }
        })
        .collect();
    LabelStack::new(labels).expect("1..=16 labels")
}

/// Mostly one stack; sometimes a weighted policy; sometimes an entropy label.
fn random_policy(rng: &mut StdRng) -> Policy {
    let n = if rng.random_bool(0.7) { 1 } else { rng.random_range(2..=MAX_SEGMENT_LISTS) };
    let entropy = match rng.random_range(0..10) {
        0 => Some(EntropyLabel::Bottom),
        1 => Some(EntropyLabel::After(rng.random_range(1..=4))),
        _ => None,
    };
    let lists = (0..n)
        .map(|_| {
            let mut stack = random_stack(rng);
            if entropy.is_some() && stack.len() > 14 {
                stack = LabelStack::new(stack.labels()[..14].to_vec()).unwrap();
            }
            let weight = if rng.random_bool(0.5) { 1 } else { rng.random_range(1..=u16::MAX) };
            SegmentList { stack, weight }
        })
        .collect();
    Policy::new(lists, entropy).expect("valid policy")
}

/// `policy` fit for a route of the family `prefix` is: a list ending with
/// the other IP version's explicit null is refused (RFC 3032), so that
/// label becomes 16.
fn for_family(policy: Policy, prefix: &IpNetwork) -> Policy {
    let theirs = if prefix.is_ipv4() { Label::IPV6_EXPLICIT_NULL } else { Label::IPV4_EXPLICIT_NULL };
    let lists = policy
        .lists()
        .iter()
        .map(|l| {
            let mut labels = l.stack.labels().to_vec();
            if labels.last() == Some(&theirs) {
                *labels.last_mut().unwrap() = Label::new(16).unwrap();
            }
            SegmentList { stack: LabelStack::new(labels).unwrap(), weight: l.weight }
        })
        .collect();
    Policy::new(lists, policy.entropy_label()).expect("valid policy")
}

/// A random policy for a route to `prefix`.
fn random_policy_for(rng: &mut StdRng, prefix: &IpNetwork) -> Policy {
    for_family(random_policy(rng), prefix)
}

fn random_table(rng: &mut StdRng) -> Vec<Route> {
    let n = rng.random_range(0..=64);
    let mut routes: Vec<Route> = Vec::new();
    if rng.random_bool(0.3) {
        let default = "0.0.0.0/0".parse().unwrap();
        routes.push(Route::with_policy(default, random_policy_for(rng, &default)));
    }
    if rng.random_bool(0.3) {
        let default = "::/0".parse().unwrap();
        routes.push(Route::with_policy(default, random_policy_for(rng, &default)));
    }
    for _ in 0..n {
        let v6 = rng.random_bool(0.5);
        let near = if routes.is_empty() { None } else { Some(routes[rng.random_range(0..routes.len())].prefix) };
        let prefix = random_prefix(rng, v6, near.as_ref());
        let tc = TrafficClass::new(if rng.random_bool(0.8) { 0 } else { rng.random_range(0..=7) }).unwrap();
        routes.retain(|r| r.prefix != prefix);
        let route = Route::with_policy(prefix, random_policy_for(rng, &prefix)).with_tc(tc);
        routes.push(if rng.random_bool(0.2) { route.with_tc_from_dscp() } else { route });
    }
    routes
}

fn ttl(rng: &mut StdRng) -> u8 {
    const EDGES: [u8; 7] = [0, 1, 2, 63, 64, 254, 255];
    if rng.random_bool(0.5) {
        EDGES[rng.random_range(0..EDGES.len())]
    } else {
        rng.random()
    }
}

fn destination(rng: &mut StdRng, routes: &[Route], local: &[IpAddr], v6: bool) -> IpAddr {
    let mine: Vec<&Route> = routes.iter().filter(|r| r.prefix.is_ipv6() == v6).collect();
    match rng.random_range(0..10) {
        0..=5 if !mine.is_empty() => {
            let i = rng.random_range(0..mine.len());
            inside(rng, &mine[i].prefix)
        }
        6 => *local.iter().filter(|a| a.is_ipv6() == v6).nth(rng.random_range(0..2)).unwrap_or(&local[0]),
        7 if v6 => IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, rng.random())),
        7 => IpAddr::V4(Ipv4Addr::new(rng.random_range(224..=239), rng.random(), rng.random(), rng.random())),
        8 if !v6 => IpAddr::V4(Ipv4Addr::BROADCAST),
        // Link-local (never labelled), and its edges.
        9 if v6 => IpAddr::V6(Ipv6Addr::new(
            [0xfe80, 0xfebf, 0xfec0, 0xfe7f][rng.random_range(0..4)],
            rng.random(),
            0,
            0,
            0,
            0,
            0,
            rng.random(),
        )),
        9 => IpAddr::V4(Ipv4Addr::new(169, rng.random_range(253..=255), rng.random(), rng.random())),
        _ => random_addr(rng, v6),
    }
}

/// IPv6 with a hop-by-hop and a destination-options header before UDP.
fn with_extension_headers(bytes: &mut Vec<u8>, l2_len: usize) {
    let ip = l2_len;
    let next = bytes[ip + 6];
    let ext = [[0u8, 0, 1, 4, 0, 0, 0, 0], [next, 0, 1, 4, 0, 0, 0, 0]];
    let mut hbh = ext[0];
    hbh[0] = 60; // next: destination options
    let mut out = bytes[..ip + 40].to_vec();
    out[ip + 6] = 0; // next: hop-by-hop
    out.extend_from_slice(&hbh);
    out.extend_from_slice(&ext[1]);
    out.extend_from_slice(&bytes[ip + 40..]);
    let payload = u16::from_be_bytes([out[ip + 4], out[ip + 5]]) + 16;
    out[ip + 4..ip + 6].copy_from_slice(&payload.to_be_bytes());
    *bytes = out;
}

fn random_frame(rng: &mut StdRng, routes: &[Route], local: &[IpAddr]) -> Vec<u8> {
    let kind = rng.random_range(0..100);
    if kind < 5 {
        // Random bytes.
        let len = rng.random_range(14..200);
        return (0..len).map(|_| rng.random()).collect();
    }
    if kind < 10 {
        // ARP, LLDP, MPLS, or any ethertype.
        let types = [0x0806u16, 0x88cc, 0x8847, 0x8848, rng.random()];
        let payload: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        return common::raw_frame(types[rng.random_range(0..types.len())], &payload).bytes;
    }
    let v6 = rng.random_bool(0.5);
    let dst = destination(rng, routes, local, v6);
    let mut spec = frame(&dst.to_string()).ttl(ttl(rng)).dscp(rng.random_range(0..64));
    if rng.random_bool(0.3) {
        // A source that configured source prefixes may or may not cover.
        spec.src = random_addr(rng, v6);
    }
    spec.l4 = match rng.random_range(0..3) {
        0 => L4::Udp { sport: rng.random(), dport: rng.random() },
        1 => L4::TcpSyn { sport: rng.random(), dport: rng.random() },
        _ => L4::IcmpEcho,
    };
    spec.payload_len = if rng.random_bool(0.1) { rng.random_range(1400..1560) } else { rng.random_range(0..200) };
    for _ in 0..rng.random_range(0..=3u8).saturating_sub(rng.random_range(0..=1)) {
        spec = spec.vlan(if rng.random_bool(0.5) { 0x8100 } else { 0x88a8 }, rng.random_range(0..4096));
    }
    if rng.random_bool(0.05) {
        spec = spec.dst_mac([0xff; 6]);
    } else if rng.random_bool(0.05) {
        spec = spec.dst_mac([0x01, 0x00, 0x5e, 0, 0, rng.random()]);
    }
    if !v6 && rng.random_bool(0.2) {
        let words = rng.random_range(1..=10);
        spec = spec.options(&(0..words * 4).map(|_| 1u8).collect::<Vec<_>>());
    }
    if !v6 && rng.random_bool(0.2) {
        spec = spec.fragment(rng.random_range(0..8191), rng.random());
    }
    let built = spec.build();
    let mut bytes = built.bytes;
    if v6 && rng.random_bool(0.2) {
        with_extension_headers(&mut bytes, built.l2_len);
    }
    if rng.random_bool(0.1) {
        bytes.truncate(rng.random_range(14..=bytes.len()));
    }
    if rng.random_bool(0.05) {
        let i = rng.random_range(0..bytes.len());
        bytes[i] = rng.random();
    }
    if rng.random_bool(0.05) {
        bytes.resize(bytes.len() + rng.random_range(1..32), 0); // trailing padding
    }
    bytes
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn differential_against_the_model() {
    privileged("differential_against_the_model");
    let frames: usize = std::env::var("LHE_FUZZ_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let seed: u64 = std::env::var("LHE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("differential: {frames} frames, LHE_FUZZ_SEED={seed}");
    let local: Vec<IpAddr> = ["127.0.0.1", LOCAL_V4, "::1", LOCAL_V6].iter().map(|a| a.parse().unwrap()).collect();

    let mismatches = in_test_run_netns("fuzz", || {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut mismatches = Vec::new();
        let mut done = 0;
        let mut verdicts: BTreeMap<Verdict, u64> = BTreeMap::new();
        while done < frames {
            let ttl_mode = if rng.random_bool(0.5) { TtlMode::Copy } else { TtlMode::Fixed(rng.random_range(1..=255)) };
            let mtu_policy = if rng.random_bool(0.5) { MtuPolicy::Drop } else { MtuPolicy::Pass };
            // Each table under one of the main IPv4 table's lookup structures.
            let lookup = if rng.random_bool(0.5) { Ipv4Lookup::Dir24_8 } else { Ipv4Lookup::LpmTrie };
            // Half the tables through the route cache (its tables are too small for it
            // by default), each frame then run twice: looked up, then answered by the cache.
            let cached = rng.random_bool(0.5);
            let builder = Encapsulator::builder().ttl_mode(ttl_mode).mtu_policy(mtu_policy).lookup(lookup);
            let enc = if cached { builder.route_cache_min_routes(0) } else { builder }.load().expect("load");
            enc.refresh_local_addresses().expect("host addresses");
            let dscp_map = if rng.random_bool(0.5) {
                DscpMap::default()
            } else {
                DscpMap::new(std::array::from_fn(|_| rng.random_range(0..=7))).unwrap()
            };
            enc.set_dscp_map(&dscp_map).expect("DSCP table");
            let mut model = Model {
                ttl: ttl_mode,
                mtu_policy,
                mtu: MTU,
                routes: Vec::new(),
                local: local.clone(),
                dscp_map,
                sources: Vec::new(),
                alternate: Default::default(),
            };
            for table in 1..=2u32 {
                let routes: Vec<Route> = random_table(&mut rng).into_iter().take(rng.random_range(0..8)).collect();
                for r in &routes {
                    enc.set_route(Table::alternate(table).unwrap(), r).expect("alternate route");
                }
                model.alternate.insert(table, routes);
            }
            // Sometimes source prefixes selecting alternate tables 1 and 2.
            for _ in 0..rng.random_range(0..=3u8).saturating_sub(1) {
                let v6 = rng.random_bool(0.5);
                let src: IpAddr = if v6 { "fd00:200::1".parse().unwrap() } else { "10.200.0.1".parse().unwrap() };
                let len = rng.random_range(0..=if v6 { 128 } else { 32 });
                let p = IpNetwork::new(src, len).unwrap();
                let p = IpNetwork::new(p.network(), len).unwrap();
                let table = rng.random_range(1..=2u32);
                // A source selects a table with routes (an empty one is refused).
                if model.alternate[&table].is_empty() {
                    continue;
                }
                enc.sources().set(p, Table::alternate(table).unwrap()).expect("source");
                model.sources.retain(|(q, _)| *q != p);
                model.sources.push((p, table));
            }
            for route in random_table(&mut rng) {
                match enc.set_route(Table::Main, &route) {
                    Ok(()) => model.routes.push(route),
                    Err(RouteError::LocalAddress { prefix }) => {
                        assert!(is_local_host_route(&prefix, &local), "{prefix} refused as local")
                    }
                    Err(e) => panic!("route {route:?}: {e}"),
                }
            }
            // Churn before traffic: some routes replaced or removed (policies
            // updated in place, ids and counter slots freed and reused).
            for _ in 0..rng.random_range(0..4) {
                if model.routes.is_empty() {
                    break;
                }
                let i = rng.random_range(0..model.routes.len());
                if rng.random_bool(0.5) {
                    let old = model.routes.remove(i);
                    assert!(enc.remove(Table::Main, old.prefix).expect("remove"));
                } else {
                    let prefix = model.routes[i].prefix;
                    let r = Route::with_policy(prefix, random_policy_for(&mut rng, &prefix));
                    enc.set_route(Table::Main, &r).expect("replace");
                    model.routes[i] = r;
                }
            }
            // Destinations are drawn from every table's routes.
            let targets: Vec<Route> = model.routes.iter().chain(model.alternate.values().flatten()).cloned().collect();
            let before = enc.stats().unwrap();
            let mut expected: BTreeMap<Verdict, u64> = BTreeMap::new();
            for _ in 0..FRAMES_PER_TABLE.min(frames - done) {
                let bytes = random_frame(&mut rng, &targets, &local);
                let want = model.run(&bytes);
                for run in 0..1 + usize::from(cached) {
                    *expected.entry(want.verdict).or_default() += 1;
                    let got = enc.diagnostics().test_run(&bytes).expect("test run");
                    let same = got.action == want.action && (want.action == XdpAction::Drop || got.frame == want.frame);
                    if !same && mismatches.len() < 20 {
                        mismatches.push(format!(
                            "seed {seed} frame {done} run {run} (cached: {cached}): {ttl_mode:?}/{mtu_policy:?}/{lookup}\n input {bytes:02x?}\n model {:?} {:02x?}\n kernel {:?} {:02x?}",
                            want.action, want.frame, got.action, got.frame
                        ));
                    }
                }
                done += 1;
            }
            let delta = enc.stats().unwrap().since(&before);
            for (verdict, n) in &expected {
                assert_eq!(verdict.counter(&delta).packets, *n, "seed {seed}: {verdict:?} counter: {delta:?}");
                *verdicts.entry(*verdict).or_default() += n;
            }
            assert_eq!(delta.total().packets, expected.values().sum::<u64>(), "seed {seed}: {delta:?}");
        }
        println!("differential: verdicts {verdicts:?}");
        mismatches
    });
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}
