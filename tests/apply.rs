//! Declarative apply: from empty, identical (no map operation), a 1% change,
//! full replacement, a policy turning into a plain stack and back, refused
//! states that leave everything as it was, and 10,000 routes replaced while
//! traffic streams with no packet unlabelled or carrying a stack of neither
//! version.

mod common;

use lnetd_host_encap::Table;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{in_netns, privileged};
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{desired::DesiredRoute, errors::RouteError, DesiredState, Encapsulator, XdpMode};

fn route(prefix: &str, policy: &str) -> DesiredRoute {
    DesiredRoute {
        prefix: prefix.into(),
        policy: policy.into(),
        tc: None,
        table: None,
        entropy_label: None,
        policy_name: None,
    }
}

/// `n` /24 routes under 10.0.0.0/8, label `base + i`.
fn table(n: u32, base: u32) -> DesiredState {
    DesiredState {
        routes: (0..n).map(|i| route(&format!("10.{}.{}.0/24", i / 256, i % 256), &(base + i).to_string())).collect(),
        ..DesiredState::default()
    }
}

fn listing(enc: &Encapsulator) -> Vec<String> {
    enc.routes(Table::Main).unwrap().iter().map(|r| format!("{} {} {}", r.prefix, r.policy, r.tc)).collect()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn apply_edge_cases() {
    privileged("apply_edge_cases");
    in_netns("apply", |_| {
        let enc = Encapsulator::builder().load().expect("load");
        // From empty: three tables' worth, a policy with an EL, TC from DSCP, a source.
        let text = r#"
            [[routes]]
            prefix = "0.0.0.0/0"
            policy = "1000000"
            [[routes]]
            prefix = "198.51.100.0/24"
            policy = "16001/16002@7,16003@3"
            tc = "dscp"
            entropy_label = "bottom"
            [[routes]]
            prefix = "2001:db8::/32"
            policy = "24001/24002"
            tc = 5
            [[routes]]
            prefix = "198.51.100.0/24"
            policy = "17001"
            table = 7
            [[sources]]
            prefix = "192.0.2.0/24"
            table = 7
        "#;
        let desired = DesiredState::from_toml(text).expect("toml");
        let report = enc.apply(&desired, lnetd_host_encap::ApplyOptions::default()).expect("apply from empty");
        assert_eq!((report.added.len(), report.removed.len(), report.sources_set.len()), (4, 0, 1), "{report}");
        assert_eq!(enc.routes(Table::Main).unwrap().len(), 3);
        assert_eq!(enc.routes(lnetd_host_encap::Table::alternate(7).unwrap()).unwrap().len(), 1);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);

        // Identical: nothing written.
        let again = enc.apply(&desired, lnetd_host_encap::ApplyOptions::default()).unwrap();
        // Four routes unchanged (the source is not a route).
        assert_eq!((again.map_operations, again.unchanged, again.added.len()), (0, 4, 0), "{again}");
        // What the encapsulator reports as its state applies as identical too.
        let exported = enc.desired_state();
        assert_eq!(enc.apply(&exported, lnetd_host_encap::ApplyOptions::default()).unwrap().map_operations, 0);

        // Refused states change nothing.
        let before = listing(&enc);
        let refused = [
            ("unknown key", r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100","colour":"red"}]}"#),
            ("label 3", r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"3"}]}"#),
            ("host bits", r#"{"routes":[{"prefix":"10.0.0.1/8","policy":"100"}]}"#),
            ("weight 0", r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100@0,200@1"}]}"#),
            (
                "unknown table",
                r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100"}],"sources":[{"prefix":"192.0.2.0/24","table":9}]}"#,
            ),
            ("tc 8", r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100","tc":8}]}"#),
            ("twice", r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100"},{"prefix":"10.0.0.0/8","policy":"200"}]}"#),
        ];
        for (what, json) in refused {
            let result = DesiredState::from_json(json)
                .map_err(RouteError::from)
                .and_then(|d| enc.apply(&d, lnetd_host_encap::ApplyOptions::default()));
            let err = result.expect_err(what);
            assert!(matches!(err, RouteError::Invalid(_)), "{what}: {err:?}");
            assert!(!err.to_string().is_empty());
            assert_eq!(listing(&enc), before, "{what} changed the routes");
        }
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);

        // A policy becomes a plain stack and back; counters kept per route.
        let mut d = desired.clone();
        d.routes[1].policy = "16001/16002".into();
        d.routes[1].entropy_label = None;
        let r = enc.apply(&d, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!((r.replaced.len(), r.unchanged), (1, 3), "{r}");
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        let r = enc.apply(&desired, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!(r.replaced.len(), 1);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        assert_eq!(
            enc.route_counters(Table::Main, "198.51.100.0/24".parse().unwrap()).unwrap().unwrap().lists.len(),
            2
        );

        // Full replacement, then a 1% change of 10,000 routes, then back to empty.
        let big = table(10_000, 100_000);
        let r = enc.apply(&big, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!((r.added.len(), r.removed.len(), r.sources_removed.len()), (10_000, 4, 1), "{r}");
        let mut changed = big.clone();
        for i in 0..50 {
            changed.routes[i * 100].policy = "555".into();
        }
        changed.routes.truncate(9_950);
        changed.routes.extend((0..50).map(|i| route(&format!("11.0.{i}.0/24"), "777")));
        let r = enc.apply(&changed, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!((r.replaced.len(), r.added.len(), r.removed.len(), r.unchanged), (50, 50, 50, 9_900), "{r}");
        assert_eq!(r.map_operations, 150, "only the changed entries are written");
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        let r = enc.apply(DesiredState::default(), lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!(r.removed.len(), 10_000);
        assert!(enc.routes(Table::Main).unwrap().is_empty());
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);

        // Dry run: reported, not done.
        let dry = enc.apply(&big, lnetd_host_encap::ApplyOptions::default().dry_run(true)).unwrap();
        assert!(dry.dry_run && dry.added.len() == 10_000);
        assert!(enc.routes(Table::Main).unwrap().is_empty());
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_state_that_does_not_fit_is_refused_whole() {
    privileged("a_state_that_does_not_fit_is_refused_whole");
    in_netns("applyfull", |_| {
        let enc = Encapsulator::builder().max_routes(100, 100).max_policies(2).load().expect("load");
        enc.apply(table(50, 1000), lnetd_host_encap::ApplyOptions::default()).unwrap();
        let before = listing(&enc);
        let err = enc.apply(table(150, 2000), lnetd_host_encap::ApplyOptions::default()).unwrap_err();
        assert!(matches!(err, RouteError::TableFull { capacity: 100, .. }), "{err:?}");
        let mut policies = table(3, 3000);
        for r in &mut policies.routes {
            r.policy = "100@1,200@1".into();
        }
        let err = enc.apply(&policies, lnetd_host_encap::ApplyOptions::default()).unwrap_err();
        assert!(matches!(err, RouteError::TableFull { family: "policy", .. }), "{err:?}");
        assert_eq!(listing(&enc), before);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn replacing_10000_routes_under_traffic_never_unlabels_or_mixes() {
    privileged("replacing_10000_routes_under_traffic_never_unlabels_or_mixes");
    const N: u32 = 10_000;
    let (a, b) = (table(N, 100_000), table(N, 300_000));
    let lab = VethLab::new().expect("lab");
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");
    let enc = lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().unwrap();
    enc.apply(&a, lnetd_host_encap::ApplyOptions::default()).unwrap();
    let capture =
        lab.router.run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(64 << 20))).unwrap().unwrap();
    let socket = lab.router.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    let stop = AtomicBool::new(false);
    let (sent, got) = std::thread::scope(|s| {
        let receiver = s.spawn(|| common::labelled_ipv4(&capture, &stop));
        let sender = s.spawn(|| {
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let i = sent.wrapping_mul(7919) % N;
                let dst = Ipv4Addr::new(10, (i / 256) as u8, (i % 256) as u8, 9);
                socket.send_to(b"x", SocketAddr::new(IpAddr::V4(dst), 9)).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..3 {
            let r = enc.apply(&b, lnetd_host_encap::ApplyOptions::default()).unwrap();
            assert_eq!(r.replaced.len(), N as usize);
            let r = enc.apply(&a, lnetd_host_encap::ApplyOptions::default()).unwrap();
            assert_eq!(r.replaced.len(), N as usize);
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (sender.join().unwrap(), receiver.join().unwrap())
    });
    assert_eq!(got.len() as u32, sent, "every datagram came back labelled");
    let mut versions = BTreeMap::new();
    for (dst, stack) in &got {
        let i = u32::from(dst.octets()[1]) * 256 + u32::from(dst.octets()[2]);
        let version = match stack[..] {
            [l] if l == 100_000 + i => "a",
            [l] if l == 300_000 + i => "b",
            _ => panic!("{dst} came back with {stack:?}: neither version's stack"),
        };
        *versions.entry(version).or_insert(0) += 1;
    }
    assert_eq!(versions.keys().copied().collect::<BTreeSet<_>>(), BTreeSet::from(["a", "b"]), "{versions:?}");
}

/// Review findings, kept as regressions: a route for a host address stays set
/// aside through large applies (it once leaked into the tries' RIB and a later
/// apply deleted the never-label entry); a policy route whose route-level
/// value changes (TC fixed -> from DSCP) never meets packets half-changed.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn host_routes_stay_set_aside_and_policy_changes_never_mix() {
    privileged("host_routes_stay_set_aside_and_policy_changes_never_mix");
    common::in_test_run_netns("applyregr", || {
        let enc = Encapsulator::builder().load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        let local = common::LOCAL_V4;
        let with_host = |extra: u32| {
            let mut d = table(extra, 50_000);
            d.routes.push(route("0.0.0.0/0", "1000"));
            d.routes.push(route(&format!("{local}/32"), "2000"));
            d
        };
        let r = enc.apply(with_host(0), lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!(r.set_aside.len(), 1, "{r}");
        enc.apply(with_host(20), lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert!(
            enc.routes(Table::Main).unwrap().iter().all(|r| r.prefix.to_string() != format!("{local}/32")),
            "set aside, not in force"
        );
        // The listing with counters carries it, flagged, so that its export
        // applied back keeps it (it once left it out, and the apply removed it).
        let listed = enc.counted_routes().unwrap();
        let aside: Vec<String> = listed.iter().filter(|r| r.set_aside).map(|r| r.route.prefix.to_string()).collect();
        assert_eq!(aside, [format!("{local}/32")]);
        let export = serde_json::json!({ "routes": listed }).to_string();
        let exported = DesiredState::from_file_text(&export, lnetd_host_encap::desired::DesiredFormat::Json, false)
            .expect("the export reads back");
        let again = enc.apply(exported, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert!(again.added.is_empty() && again.replaced.is_empty() && again.removed.is_empty(), "{again}");
        assert_eq!(enc.counted_routes().unwrap().iter().filter(|r| r.set_aside).count(), 1, "still set aside");
        let mut without = table(20, 50_000);
        without.routes.push(route("0.0.0.0/0", "1000"));
        let gone = enc.apply(&without, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!(
            gone.removed,
            [(Table::Main, format!("{local}/32").parse().unwrap())],
            "a set-aside route the state lacks is reported removed"
        );
        assert!(enc.counted_routes().unwrap().iter().all(|r| !r.set_aside));
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "the host's entry is still in the kernel");
        let frame = common::frame(local).build();
        let run = enc.diagnostics().test_run(&frame.bytes).unwrap();
        assert_eq!(
            run.action,
            lnetd_host_encap::diagnostics::XdpAction::Pass,
            "traffic to the host itself is never labelled"
        );

        // 3,000 policy routes at TC 2 become TC-from-DSCP while a thread runs
        // DSCP-46 packets: each one carries TC 2 (old) or 5 (new), never a mix.
        let policies = |tc: &str| DesiredState {
            routes: (0..3_000u32)
                .map(|i| DesiredRoute {
                    tc: Some(tc.into()),
                    ..route(&format!("10.{}.{}.0/24", i / 256, i % 256), "16001@1,16002@1")
                })
                .collect(),
            ..DesiredState::default()
        };
        enc.apply(policies("2"), lnetd_host_encap::ApplyOptions::default()).unwrap();
        let probe = common::frame("10.0.0.1").dscp(46).build();
        let stop = AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            let runner = s.spawn(|| {
                let mut seen = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let out = enc.diagnostics().test_run(&probe.bytes).unwrap();
                    let (stack, _) = lnetd_host_encap::labels::decode_stack(&out.frame[14..]).unwrap();
                    seen.insert(stack[0].tc);
                }
                seen
            });
            enc.apply(policies("dscp"), lnetd_host_encap::ApplyOptions::default()).unwrap();
            stop.store(true, Ordering::Relaxed);
            runner.join().unwrap()
        });
        assert!(seen.iter().all(|tc| *tc == 2 || *tc == 5), "TCs seen: {seen:?}");
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
    });
}

/// One rule for a source whatever sets it: it selects an alternate table with
/// routes. `source` and `remove` once allowed what `apply` refuses, so the
/// state in force could not be applied back.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_source_selects_a_table_with_routes_whichever_call_changes_it() {
    privileged("a_source_selects_a_table_with_routes_whichever_call_changes_it");
    common::in_test_run_netns("sourcerule", || {
        let enc = Encapsulator::builder().load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        let five = Table::alternate(5).unwrap();
        let net = |p: &str| -> lnetd_host_encap::IpNetwork { p.parse().unwrap() };
        let refused = |e: RouteError, says: &str| {
            assert!(matches!(e, RouteError::Invalid(_)) && e.to_string().contains(says), "{e}");
        };
        refused(
            enc.sources().set(net("10.0.0.0/8"), five).unwrap_err(),
            "table 5 is not an alternate table with routes",
        );
        enc.set_route(five, &lnetd_host_encap::Route::new(net("198.51.100.0/24"), "17001".parse().unwrap())).unwrap();
        enc.sources().set(net("10.0.0.0/8"), five).expect("table 5 has a route");
        refused(
            enc.remove(five, net("198.51.100.0/24")).unwrap_err(),
            "last route of table 5, which source 10.0.0.0/8 selects",
        );
        assert_eq!(enc.routes(five).unwrap().len(), 1, "nothing removed");
        let state = enc.desired_state();
        let again = enc.apply(state, lnetd_host_encap::ApplyOptions::default()).expect("the state applies back");
        assert_eq!(again.map_operations, 0, "{again}");
        assert!(enc.sources().remove(net("10.0.0.0/8")).unwrap());
        assert!(enc.remove(five, net("198.51.100.0/24")).unwrap(), "no source selects it any more");
    });
}
