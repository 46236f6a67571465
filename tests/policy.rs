//! SR policies: flows spread over weighted segment lists as the weights say,
//! stay on their list, move little when a policy changes and not at all when
//! another route changes; per-route and per-list counters; the same on the
//! wire with real sockets.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{frame, in_netns, privileged, L4};
use lnetd_host_encap::testing::lab::{Capture, Netns, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{
    diagnostics::XdpAction, labels::decode_stack, Encapsulator, IpNetwork, Policy, Route, Table, XdpMode,
};

const FLOWS: u32 = 100_000;

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

/// Flow `i`: a distinct (source address, source port) toward `dst`.
fn flow(i: u32, dst: &str) -> Vec<u8> {
    let mut spec = frame(dst).l4(L4::Udp { sport: 1024 + (i % 50_000) as u16, dport: 443 });
    spec.src = IpAddr::V4(Ipv4Addr::from(0x0ac8_0000 + i / 50_000));
    spec.build().bytes
}

/// The top label each flow is sent with.
fn top_labels(enc: &Encapsulator, dst: &str, flows: u32) -> Vec<u32> {
    (0..flows)
        .map(|i| {
            let run = enc.diagnostics().test_run(&flow(i, dst)).expect("test run");
            assert_eq!(run.action, XdpAction::Tx);
            let (stack, _) = decode_stack(&run.frame[14..]).expect("labels");
            stack[0].label
        })
        .collect()
}

fn shares(tops: &[u32]) -> HashMap<u32, f64> {
    let mut count: HashMap<u32, f64> = HashMap::new();
    for t in tops {
        *count.entry(*t).or_default() += 1.0;
    }
    count.values_mut().for_each(|c| *c /= tops.len() as f64);
    count
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn flows_split_as_the_weights_say() {
    privileged("flows_split_as_the_weights_say");
    in_netns("policy", |_| {
        let enc = Encapsulator::builder().load().expect("load");
        for (policy, want) in [
            ("16001/100@7,16002/100@3", vec![(16001, 0.7), (16002, 0.3)]),
            ("16001@1,16002@1,16003@1", vec![(16001, 1.0 / 3.0), (16002, 1.0 / 3.0), (16003, 1.0 / 3.0)]),
            ("16001@1,16002@99", vec![(16001, 0.01), (16002, 0.99)]),
        ] {
            enc.set_route(Table::Main, &Route::with_policy(net("0.0.0.0/0"), policy.parse().unwrap())).unwrap();
            let got = shares(&top_labels(&enc, "198.51.100.1", FLOWS));
            for (label, share) in want {
                let g = got.get(&label).copied().unwrap_or(0.0);
                assert!((g - share).abs() <= 0.015, "{policy}: list {label} took {g:.4}, weight share {share:.4}");
                assert!(g > share / 2.0, "{policy}: list {label} took {g:.4}: a small weight still gets its flows");
            }
        }
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_flow_keeps_its_list_and_changes_move_few_flows() {
    privileged("a_flow_keeps_its_list_and_changes_move_few_flows");
    in_netns("policy", |_| {
        let enc = Encapsulator::builder().load().expect("load");
        let base: Policy = "16001@1,16002@1,16003@1".parse().unwrap();
        enc.set_route(Table::Main, &Route::with_policy(net("198.51.100.0/24"), base)).unwrap();
        enc.set_route(Table::Main, &Route::with_policy(net("203.0.113.0/24"), "24001@7,24002@3".parse().unwrap()))
            .unwrap();
        let flows = 20_000;
        let before = top_labels(&enc, "198.51.100.1", flows);
        assert_eq!(before, top_labels(&enc, "198.51.100.1", flows), "the same flow takes the same list");
        // A restart: a freshly loaded program with the same policy pins every flow to the same list.
        let restarted = Encapsulator::builder().load().expect("load");
        restarted
            .set_route(
                Table::Main,
                &Route::with_policy(net("198.51.100.0/24"), "16001@1,16002@1,16003@1".parse().unwrap()),
            )
            .unwrap();
        assert_eq!(top_labels(&restarted, "198.51.100.1", flows), before, "the same list after a restart");
        drop(restarted);
        let other = top_labels(&enc, "203.0.113.1", flows);

        // (new policy, share of flows that must move at the least)
        for (after, need) in [
            ("16001@1,16002@1,16003@1,16004@1", 0.25),
            ("16001@1,16003@1", 1.0 / 3.0),
            ("16001@2,16002@1,16003@1", 0.5 - 1.0 / 3.0),
        ] {
            enc.set_route(Table::Main, &Route::with_policy(net("198.51.100.0/24"), after.parse().unwrap())).unwrap();
            let now = top_labels(&enc, "198.51.100.1", flows);
            let moved = before.iter().zip(&now).filter(|(a, b)| a != b).count() as f64 / f64::from(flows);
            assert!(moved <= need + 0.05, "{after}: {moved:.3} of flows moved, {need:.3} had to");
            assert_eq!(top_labels(&enc, "203.0.113.1", flows), other, "another route's flows never move");
            enc.set_route(
                Table::Main,
                &Route::with_policy(net("198.51.100.0/24"), "16001@1,16002@1,16003@1".parse().unwrap()),
            )
            .unwrap();
            assert_eq!(top_labels(&enc, "198.51.100.1", flows), before, "the same policy gives the same table");
        }
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn per_route_and_per_list_counters() {
    privileged("per_route_and_per_list_counters");
    in_netns("policy", |_| {
        let enc = Encapsulator::builder().load().expect("load");
        enc.set_route(Table::Main, &Route::with_policy(net("198.51.100.0/24"), "16001@7,16002@3".parse().unwrap()))
            .unwrap();
        enc.set_route(Table::Main, &Route::new(net("203.0.113.0/24"), "24001".parse().unwrap())).unwrap();
        let tops = top_labels(&enc, "198.51.100.1", 1000);
        let frame_len = flow(0, "198.51.100.1").len() as u64;
        for i in 0..10 {
            enc.diagnostics().test_run(&flow(i, "203.0.113.1")).unwrap();
        }
        let c = enc.route_counters(Table::Main, net("198.51.100.0/24")).unwrap().expect("route");
        assert_eq!((c.labelled.packets, c.labelled.bytes), (1000, 1000 * frame_len));
        let first = tops.iter().filter(|t| **t == 16001).count() as u64;
        assert_eq!(c.lists.iter().map(|l| l.packets).collect::<Vec<_>>(), [first, 1000 - first]);
        let plain = enc.route_counters(Table::Main, net("203.0.113.0/24")).unwrap().expect("route");
        assert_eq!((plain.labelled.packets, plain.lists.len()), (10, 1));
        assert_eq!(enc.route_counters(Table::Main, net("192.0.2.0/24")).unwrap(), None);
        assert_eq!(
            enc.route_counters(Table::Main, net("198.51.0.0/16")).unwrap(),
            None,
            "only an exact prefix has counters"
        );
        assert_eq!(enc.stats().unwrap().labelled.packets, 1010);

        // A replaced policy keeps its counts, in total and per list.
        enc.set_route(Table::Main, &Route::with_policy(net("198.51.100.0/24"), "16001@1,16002@1".parse().unwrap()))
            .unwrap();
        let kept = enc.route_counters(Table::Main, net("198.51.100.0/24")).unwrap().expect("route");
        assert_eq!(kept.labelled.packets, 1000);
        assert_eq!(kept.lists.iter().map(|l| l.packets).collect::<Vec<_>>(), [first, 1000 - first]);
        // A replaced route keeps its count; a removed one's slot comes back zeroed.
        enc.set_route(Table::Main, &Route::new(net("203.0.113.0/24"), "24002".parse().unwrap())).unwrap();
        assert_eq!(enc.route_counters(Table::Main, net("203.0.113.0/24")).unwrap().unwrap().labelled.packets, 10);
        assert!(enc.remove(Table::Main, net("203.0.113.0/24")).unwrap());
        enc.set_route(Table::Main, &Route::new(net("192.0.2.0/24"), "24003".parse().unwrap())).unwrap();
        let fresh = enc.route_counters(Table::Main, net("192.0.2.0/24")).unwrap().unwrap();
        assert!(fresh.counted && fresh.labelled.packets == 0, "{fresh:?}");
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn routes_beyond_the_counted_capacity_still_work() {
    privileged("routes_beyond_the_counted_capacity_still_work");
    in_netns("policy", |_| {
        let enc = Encapsulator::builder().max_counted_routes(1).load().expect("load");
        enc.set_route(Table::Main, &Route::new(net("198.51.100.0/24"), "16001".parse().unwrap())).unwrap();
        enc.set_route(Table::Main, &Route::new(net("203.0.113.0/24"), "16002".parse().unwrap())).unwrap();
        assert_eq!(top_labels(&enc, "203.0.113.1", 3), [16002; 3], "an uncounted route still labels");
        assert!(enc.route_counters(Table::Main, net("198.51.100.0/24")).unwrap().unwrap().counted);
        let second = enc.route_counters(Table::Main, net("203.0.113.0/24")).unwrap().unwrap();
        assert!(!second.counted && second.labelled.packets == 0, "{second:?}");
    });
}

/// The same split on the wire: real UDP flows from the router's kernel sockets.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn flows_split_on_the_wire() {
    privileged("flows_split_on_the_wire");
    let lab = VethLab::new().expect("lab");
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().unwrap();
    let enc = lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().unwrap();
    enc.set_route(
        Table::Main,
        &Route::with_policy(net("198.51.100.0/24"), "16001/16100@7,16002/16100@3".parse().unwrap()),
    )
    .unwrap();
    let capture =
        lab.router.run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(256 << 20))).unwrap().unwrap();
    // Flows differ by source port (the kernel picks one per socket) and destination.
    let sent = lab
        .router
        .run(|| {
            let mut sent = 0u32;
            for batch in 0..150 {
                let sockets: Vec<UdpSocket> = (0..200).map(|_| UdpSocket::bind("0.0.0.0:0").unwrap()).collect();
                for (i, s) in sockets.iter().enumerate() {
                    let dst = Ipv4Addr::new(198, 51, 100, 1 + ((batch * 200 + i) % 250) as u8);
                    s.send_to(b"flow", SocketAddr::new(dst.into(), 443)).unwrap();
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
        .unwrap();
    let frames = capture.drain(Duration::from_millis(500), Duration::from_secs(20)).unwrap();
    let tops: Vec<u32> = frames
        .iter()
        .filter(|f| !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47]))
        .filter_map(|f| decode_stack(&f.bytes[14..]).ok().map(|(s, _)| s[0].label))
        .collect();
    assert_eq!(tops.len() as u32, sent, "every flow came back labelled");
    let got = shares(&tops);
    let first = got.get(&16001).copied().unwrap_or(0.0);
    assert!((first - 0.7).abs() <= 0.015, "{sent} real flows: {first:.4} took the weight-7 list");
    let c = enc.route_counters(Table::Main, net("198.51.100.0/24")).unwrap().unwrap();
    assert_eq!(c.labelled.packets, u64::from(sent));
}

/// Source-aware selection: a source prefix picks an alternate table, which
/// falls back to the main table for destinations it lacks; host addresses are
/// never labelled, whatever the source.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn source_prefixes_select_alternate_tables() {
    privileged("source_prefixes_select_alternate_tables");
    let ns = Netns::new("source").expect("namespace");
    ns.ip(&["addr", "add", "192.0.2.55/32", "dev", "lo"]).unwrap();
    ns.run(|| {
        let enc = Encapsulator::builder().load().expect("load");
        enc.refresh_local_addresses().unwrap();
        let premium = Table::alternate(1).unwrap();
        let premium6 = Table::alternate(2).unwrap();
        enc.set_route(Table::Main, &Route::new(net("0.0.0.0/0"), "1000000".parse().unwrap())).unwrap();
        enc.set_route(Table::Main, &Route::new(net("198.51.100.0/24"), "16001".parse().unwrap())).unwrap();
        enc.set_route(Table::Main, &Route::new(net("::/0"), "1000000".parse().unwrap())).unwrap();
        enc.set_route(premium, &Route::new(net("198.51.100.0/24"), "777/778".parse().unwrap())).unwrap();
        enc.set_route(premium6, &Route::new(net("2001:db8::/32"), "888".parse().unwrap())).unwrap();
        enc.sources().set(net("10.200.0.0/24"), premium).unwrap();
        enc.sources().set(net("fd00:200::/64"), premium6).unwrap();
        assert_eq!(enc.sources().list().len(), 2);
        assert_eq!(enc.routes(premium).unwrap(), vec![Route::new(net("198.51.100.0/24"), "777/778".parse().unwrap())]);

        let labels_for = |spec: common::FrameSpec| -> Option<Vec<u32>> {
            let run = enc.diagnostics().test_run(&spec.build().bytes).expect("test run");
            (run.action == XdpAction::Tx)
                .then(|| decode_stack(&run.frame[14..]).unwrap().0.iter().map(|e| e.label).collect())
        };
        let from = |src: &str, dst: &str| {
            let mut f = frame(dst);
            f.src = src.parse().unwrap();
            f
        };
        assert_eq!(
            labels_for(from("10.200.0.1", "198.51.100.9")),
            Some(vec![777, 778]),
            "premium source, premium route"
        );
        assert_eq!(labels_for(from("10.200.0.1", "192.0.2.9")), Some(vec![1_000_000]), "falls back to the main table");
        assert_eq!(labels_for(from("10.9.9.9", "198.51.100.9")), Some(vec![16001]), "other sources: main table");
        assert_eq!(labels_for(from("10.200.0.1", "192.0.2.55")), None, "a host address is never labelled");
        assert_eq!(labels_for(from("fd00:200::1", "2001:db8::9")), Some(vec![888]), "IPv6 source");
        assert_eq!(labels_for(from("fd00:300::1", "2001:db8::9")), Some(vec![1_000_000]));
        let c = enc.route_counters(premium, net("198.51.100.0/24")).unwrap().expect("route");
        assert_eq!(c.labelled.packets, 1);

        assert!(enc.sources().remove(net("10.200.0.0/24")).unwrap());
        assert_eq!(labels_for(from("10.200.0.1", "198.51.100.9")), Some(vec![16001]), "source removed");
        assert!(enc.remove(premium, net("198.51.100.0/24")).unwrap());
        assert!(enc.routes(premium).unwrap().is_empty());
    })
    .expect("enter namespace");
}
