//! Counters that only count what happened, through the public API: on a veth
//! pair in namespaces, what `stats()` says was labelled is what the peer
//! captured (native mode with the peer's XDP program, generic mode without
//! one); where the driver loses the frames (native, no peer program),
//! `tx_errors` says how many, and `XdpMode::Auto` does not go there; and
//! `explain` moves no counter.

mod common;

use lnetd_host_encap::{Route, Table};
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::{in_test_run_netns, privileged};
use lnetd_host_encap::testing::lab::{traffic, Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{diagnostics::Probe, encap::AttachedMode, Encapsulator, Label, Stats, XdpMode};

/// Datagrams sent per lab.
const SENT: u64 = 40;
const LABEL: u32 = 1_000_000;

/// What one lab run saw: the counters, and the labelled frames the router
/// (the peer) captured coming back.
struct Seen {
    mode: AttachedMode,
    stats: Stats,
    captured: u64,
    captured_bytes: u64,
}

/// Builds a lab, optionally with the peer's XDP_PASS program, attaches in
/// `mode`, sends [`SENT`] UDP datagrams from the router through the host and
/// counts what comes back labelled.
fn run_lab(lab: &VethLab, mode: XdpMode, peer_program: bool) -> (Encapsulator, Seen) {
    let _peer = peer_program
        .then(|| lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).expect("ns").expect("xdp on r0"));
    let enc = lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, mode)).expect("ns").expect("attach");
    let label = Label::new(LABEL).expect("label");
    enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse().expect("prefix"), label.into())).expect("route");
    let before = enc.stats().expect("stats");

    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).expect("ns").expect("capture");
    lab.router
        .run(|| {
            for i in 0..SENT {
                let dst = SocketAddr::new(IpAddr::from([198, 51, 100, (i % 200) as u8 + 1]), 5001);
                traffic::udp(dst, 64, b"lnetd-host-encap counters test").expect("udp");
            }
        })
        .expect("ns");
    let frames = capture.drain(Duration::from_millis(500), Duration::from_secs(10)).expect("capture");
    let labelled: Vec<&[u8]> = frames
        .iter()
        .filter(|f| !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47][..]))
        .map(|f| f.bytes.as_slice())
        .collect();
    let stats = enc.stats().expect("stats").since(&before);
    let mode = enc.attachment().expect("attached").mode;
    let seen = Seen {
        mode,
        stats,
        captured: labelled.len() as u64,
        // One label pushed: the frames as received were 4 bytes shorter.
        captured_bytes: labelled.iter().map(|f| f.len() as u64 - 4).sum(),
    };
    (enc, seen)
}

/// `ethtool -S h0` in the host namespace, read by the real tool: the sum of
/// every `rx_queue_N_xdp_tx_errors`.
fn ethtool_tx_errors(lab: &VethLab) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", lab.host.name(), "ethtool", "-S", VethLab::HOST_IF])
        .output()
        .expect("ethtool (scripts/deps.sh installs it)");
    assert!(out.status.success(), "ethtool -S: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(name, _)| name.starts_with("rx_queue_") && name.ends_with("_xdp_tx_errors"))
        .map(|(_, v)| v.trim().parse::<u64>().expect("a number"))
        .sum()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn native_with_the_peer_program_labelled_is_what_the_peer_captured() {
    privileged("native_with_the_peer_program_labelled_is_what_the_peer_captured");
    let lab = VethLab::new().expect("veth lab");
    // Auto, with the peer's program in place: native.
    let (_enc, seen) = run_lab(&lab, XdpMode::Auto, true);
    assert_eq!(seen.mode, AttachedMode::Native, "Auto with a peer program runs natively");
    assert_eq!(seen.captured, SENT, "every datagram came back labelled");
    assert_eq!(seen.stats.labelled.packets, seen.captured, "labelled == captured: {:?}", seen.stats);
    assert_eq!(seen.stats.labelled.bytes, seen.captured_bytes, "labelled bytes are the frames as received");
    assert_eq!(seen.stats.tx_errors, Some(0), "the driver lost nothing: {:?}", seen.stats);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn generic_labelled_is_what_the_peer_captured() {
    privileged("generic_labelled_is_what_the_peer_captured");
    let lab = VethLab::new().expect("veth lab");
    let (_enc, seen) = run_lab(&lab, XdpMode::Generic, false);
    assert_eq!(seen.mode, AttachedMode::Generic);
    assert_eq!(seen.captured, SENT, "every datagram came back labelled");
    assert_eq!(seen.stats.labelled.packets, seen.captured, "labelled == captured: {:?}", seen.stats);
    assert_eq!(seen.stats.labelled.bytes, seen.captured_bytes);
    assert_eq!(seen.stats.tx_errors, None, "generic mode: no driver counter says");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn native_without_the_peer_program_reports_every_lost_frame() {
    privileged("native_without_the_peer_program_reports_every_lost_frame");
    let lab = VethLab::new().expect("veth lab");
    let errors_before = ethtool_tx_errors(&lab);
    // Native asked for explicitly: attached natively, and every frame is lost.
    let (enc, seen) = run_lab(&lab, XdpMode::Native, false);
    assert_eq!(seen.mode, AttachedMode::Native);
    assert_eq!(seen.captured, 0, "a veth without a peer program delivers no XDP_TX frame");
    assert_eq!(seen.stats.labelled.packets, SENT, "the program labelled them all: {:?}", seen.stats);
    assert_eq!(seen.stats.tx_errors, Some(SENT), "and the driver says it lost them all: {:?}", seen.stats);
    // The same number as the kernel's own tool prints.
    assert_eq!(ethtool_tx_errors(&lab) - errors_before, SENT);
    assert_eq!(enc.stats().expect("stats").tx_errors, Some(ethtool_tx_errors(&lab)));
    let text = lnetd_host_encap::counters::prometheus(VethLab::HOST_IF, &enc.stats().expect("stats"), &[]);
    assert!(text.contains(&format!("lnetd_host_encap_tx_errors_total{{interface=\"h0\"}} {SENT}\n")), "{text}");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn auto_without_the_peer_program_chooses_generic_and_loses_nothing() {
    privileged("auto_without_the_peer_program_chooses_generic_and_loses_nothing");
    let lab = VethLab::new().expect("veth lab");
    let (_enc, seen) = run_lab(&lab, XdpMode::Auto, false);
    assert_eq!(seen.mode, AttachedMode::Generic, "native would lose every frame here");
    assert_eq!(seen.captured, SENT);
    assert_eq!(seen.stats.labelled.packets, seen.captured, "{:?}", seen.stats);
    assert_eq!(ethtool_tx_errors(&lab), 0, "nothing was lost in the driver");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn explain_moves_no_counter() {
    privileged("explain_moves_no_counter");
    in_test_run_netns("explain-counters", || {
        let enc = Encapsulator::builder().max_counted_routes(16).load().expect("load");
        // Not attached: the host's addresses are read on demand.
        enc.refresh_local_addresses().expect("host addresses");
        let counted: lnetd_host_encap::IpNetwork = "198.51.100.0/24".parse().unwrap();
        enc.set_route(Table::Main, &Route::new(counted, "16001/16002".parse().unwrap())).expect("route");
        enc.set_route(Table::Main, &Route::new("2001:db8::/32".parse().unwrap(), Label::new(24001).unwrap().into()))
            .expect("route");
        let routes = || enc.route_counters(Table::Main, counted).expect("route counters").expect("the route");
        assert!(routes().counted, "the route has a counter slot");

        let probes: [(IpAddr, &str); 4] = [
            ("198.51.100.7".parse().unwrap(), "labelled"),
            ("2001:db8::1".parse().unwrap(), "labelled"),
            ("203.0.113.1".parse().unwrap(), "no_route"),
            (common::LOCAL_V4.parse().unwrap(), "local"),
        ];
        let (stats_before, route_before) = (enc.stats().expect("stats"), routes());
        for round in 0..10 {
            for (dst, outcome) in probes {
                let explained = enc.explain(&Probe::to(dst)).expect("explain");
                assert_eq!(explained.outcome, outcome, "round {round}: {dst}: {explained}");
            }
        }
        assert_eq!(enc.stats().expect("stats"), stats_before, "40 probes moved a global counter");
        assert_eq!(routes(), route_before, "40 probes moved a route counter");

        // The same frame as real traffic (a test run of the dataplane's own
        // program) is counted: the counters above could have moved.
        enc.diagnostics().test_run(&common::frame("198.51.100.7").build().bytes).expect("test run");
        assert_eq!(enc.stats().expect("stats").since(&stats_before).labelled.packets, 1);
        assert_eq!(routes().labelled.packets, route_before.labelled.packets + 1);
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn auto_reads_a_peer_in_the_same_namespace_too() {
    privileged("auto_reads_a_peer_in_the_same_namespace_too");
    let ns = lnetd_host_encap::testing::lab::Netns::new("samens").expect("namespace");
    ns.ip(&["link", "add", "a0", "type", "veth", "peer", "name", "b0"]).expect("veth pair");
    for dev in ["a0", "b0"] {
        ns.ip(&["link", "set", dev, "up"]).expect("up");
    }
    let mode = |enc: &Encapsulator| enc.attachment().expect("attached").mode;
    let alone = ns.run(|| Encapsulator::builder().attach("a0", XdpMode::Auto)).expect("ns").expect("attach");
    assert_eq!(mode(&alone), AttachedMode::Generic, "b0 runs no XDP program");
    drop(alone);
    let _peer = ns.run(|| PassProgram::attach("b0")).expect("ns").expect("xdp on b0");
    let paired = ns.run(|| Encapsulator::builder().attach("a0", XdpMode::Auto)).expect("ns").expect("attach");
    assert_eq!(mode(&paired), AttachedMode::Native, "b0 runs a native XDP program");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn every_routes_counters_read_at_once_are_each_routes_own() {
    privileged("every_routes_counters_read_at_once_are_each_routes_own");
    in_test_run_netns("counted-batch", || {
        // More slots than one batched read takes (16,384), so the read spans batches.
        let enc = Encapsulator::builder().max_counted_routes(20_000).max_routes(40_000, 64).load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        let prefix =
            |i: u32| -> lnetd_host_encap::IpNetwork { format!("10.{}.{}.0/24", i >> 8, i & 255).parse().unwrap() };
        let desired = lnetd_host_encap::DesiredState::from_json(&format!(
            r#"{{"routes":[{}, {{"prefix":"198.51.100.0/24","policy":"16001@3,16002@1"}},
                {{"prefix":"203.0.113.0/24","policy":"17001@1,17002@1","policy_name":"blue"}},
                {{"prefix":"2001:db8::/32","policy":"24001"}}]}}"#,
            (0..18_000)
                .map(|i| format!(r#"{{"prefix":"{}","policy":"16001"}}"#, prefix(i)))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .expect("desired state");
        enc.apply(&desired, lnetd_host_encap::ApplyOptions::default()).expect("apply");
        // Traffic on routes spread over the slots (the last ones too), the policies and IPv6:
        // a different number of frames each.
        let mut destinations: Vec<String> = [0u32, 1, 16_383, 16_384, 17_999]
            .iter()
            .map(|i| {
                let p = prefix(*i);
                format!(
                    "{}",
                    match p.ip() {
                        IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a) + 9)),
                        v6 => v6,
                    }
                )
            })
            .collect();
        destinations.extend(["198.51.100.7", "203.0.113.9", "2001:db8::1"].map(String::from));
        for (n, dst) in destinations.iter().enumerate() {
            for _ in 0..=n {
                enc.diagnostics().test_run(&common::frame(dst).build().bytes).expect("test run");
            }
        }
        let all = enc.counted_routes().expect("counted routes");
        assert_eq!(all.len(), 18_003);
        for c in &all {
            let own = enc.route_counters(c.table, c.route.prefix).expect("route counters").expect("the route");
            assert_eq!(c.counters, own, "{}", c.route.prefix);
        }
        let moved: u64 = all.iter().map(|c| c.counters.labelled.packets).sum();
        assert_eq!(moved, (1..=destinations.len() as u64).sum::<u64>(), "every test run counted once");
    });
}

/// An apply adds before it removes, so with the counter pool full its new
/// routes cannot have the slots its removals free (those wait out their
/// grace period): they start uncounted. Applying the same state again once
/// the slots are free counts them (they stayed uncounted for good).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn routes_left_uncounted_by_a_full_pool_are_counted_when_the_state_is_applied_again() {
    privileged("routes_left_uncounted_by_a_full_pool_are_counted_when_the_state_is_applied_again");
    in_test_run_netns("counted-again", || {
        let enc = Encapsulator::builder().max_counted_routes(8).load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        let state = |first: u32, n: u32| {
            let routes: Vec<String> = (first..first + n)
                .map(|i| format!(r#"{{"prefix":"10.{i}.0.0/16","policy":"{}"}}"#, 16000 + i))
                .collect();
            lnetd_host_encap::DesiredState::from_json(&format!(r#"{{"routes":[{}]}}"#, routes.join(",")))
                .expect("desired state")
        };
        let uncounted = || enc.counted_routes().unwrap().iter().filter(|r| !r.counters.counted).count();
        let options = lnetd_host_encap::ApplyOptions::default;
        enc.apply(state(0, 6), options()).expect("six routes");
        assert_eq!(uncounted(), 0);
        enc.apply(state(100, 3), options()).expect("three others");
        assert!(uncounted() > 0, "the pool was full while the three were added");
        std::thread::sleep(Duration::from_millis(1_100));
        let again = enc.apply(state(100, 3), options()).expect("the same state");
        assert!(again.added.is_empty() && again.replaced.is_empty() && again.removed.is_empty(), "{again}");
        assert_eq!(uncounted(), 0, "counted once the freed slots waited out their grace");
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        let frame = common::frame("10.101.0.9").build();
        enc.diagnostics().test_run(&frame.bytes).expect("test run");
        let counters = enc.route_counters(Table::Main, "10.101.0.0/16".parse().unwrap()).unwrap().unwrap();
        assert_eq!(counters.labelled.packets, 1, "the new slot counts, from zero");
    });
}
