//! ns per packet of the encapsulator against the floor program (same parser,
//! MAC swap, XDP_TX; no lookup, no push) in the same run, with 1, 1,000 and
//! 100,000 routes, and with 1,000 routes that are 70/30 policies or carry an
//! entropy label; then per feature of the test fixtures (tests/fixtures), over
//! that feature's labelled cases with their own routes and frames. Run as
//! root: `cargo bench --bench xdp_path`.
//!
//! Every run is its own BPF_PROG_TEST_RUN call with a fresh copy of the frame,
//! so the encapsulator really parses, looks up and pushes each time (with
//! `repeat` the kernel would hand it its own output, and live-frame mode
//! recycles rewritten frames; see NOTES). The time is the kernel's own
//! per-program run time (BPF_ENABLE_STATS), which leaves the syscall out but
//! includes two clock reads per run: the empty program's column is that
//! overhead, and "excess" ratios subtract it. Encap, floor and empty runs
//! interleave; medians over the rounds are reported. Frames come from the test
//! fixtures' builder (UDP, 64-byte payload) to destinations spread over the
//! table; the policies are the fixtures' (tests/fixtures/policy.rs's 70/30
//! list, the default route's label with an entropy label).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use lnetd_host_encap::testing::BaselineProgram;
use lnetd_host_encap::{Encapsulator, EntropyLabel, IpNetwork, Route, RunStats, RunTimeStats, XdpAction};

const ROUNDS: usize = 11;
const RUNS: u32 = 5_000;
/// Rounds and runs per fixture case (many cases, each timed less).
const FIXTURE_ROUNDS: usize = 5;
const FIXTURE_RUNS: u32 = 1_000;

/// BGP-like IPv4 prefixes (tests/fixtures/tables.rs): the public sample,
/// then synthetic ones with its length mix.
fn bgp_like(n: usize) -> Vec<IpNetwork> {
    fixtures::tables::bgp_like_v4(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns per run over `runs` fresh-frame runs, from the kernel's run-time stats.
fn timed(runs: u32, stats: impl Fn() -> RunStats, run: impl Fn() -> XdpAction, expect: XdpAction) -> f64 {
    let before = stats();
    for _ in 0..runs {
        assert_eq!(run(), expect);
    }
    let d = stats().since(&before);
    assert_eq!(d.runs, u64::from(runs), "every run counted");
    d.run_time.as_secs_f64() * 1e9 / d.runs as f64
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("xdp_path: needs root (BPF_PROG_TEST_RUN, BPF_ENABLE_STATS); nothing measured");
        std::process::exit(1);
    }
    // The namespace packet_table.rs runs the fixtures in: loopback MTU 1500
    // and the host addresses the fixtures expect.
    common::in_test_run_netns("bench", || {
        let _stats_on = RunTimeStats::enable().expect("BPF_ENABLE_STATS (CAP_SYS_ADMIN)");
        let floor = BaselineProgram::floor().expect("floor program");
        let empty = BaselineProgram::empty().expect("empty program");
        scale(&floor, &empty);
        features(&floor, &empty);
    });
}

/// ns per packet against the number of routes and their kind.
fn scale(floor: &BaselineProgram, empty: &BaselineProgram) {
    println!("| routes in the LPM trie | empty (ns) | floor (ns) | encap (ns) | encap / floor | excess over empty: encap / floor |");
    println!("|---|---|---|---|---|---|");
    let plain = fixtures::default_route().remove(0).policy;
    let split = fixtures::policy::split().remove(0).policy;
    let entropy = fixtures::with_entropy(fixtures::default_route(), EntropyLabel::Bottom).remove(0).policy;
    for (n, what, policy) in [
        (1usize, "1", &plain),
        (1_000, "1,000", &plain),
        (100_000, "100,000", &plain),
        (1_000, "1,000, each a 70/30 policy", &split),
        (1_000, "1,000, each with an entropy label", &entropy),
    ] {
        let enc = Encapsulator::builder().load().expect("encapsulator");
        let prefixes = bgp_like(n);
        for p in &prefixes {
            enc.set_route(&Route::with_policy(*p, policy.clone())).expect("route");
        }
        let frames: Vec<Vec<u8>> = prefixes
            .iter()
            .step_by((n / 8).max(1))
            .take(8)
            .map(|p| common::frame(&p.network().to_string()).payload(64).build().bytes)
            .collect();
        let (mut z, mut f, mut e) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            for frame in &frames {
                let run = |p: &BaselineProgram| p.test_run(frame).expect("run").action;
                z.push(timed(RUNS, || empty.run_stats().expect("stats"), || run(empty), XdpAction::Pass));
                f.push(timed(RUNS, || floor.run_stats().expect("stats"), || run(floor), XdpAction::Tx));
                e.push(timed(
                    RUNS,
                    || enc.run_stats().expect("stats"),
                    || enc.test_run(frame).expect("run").action,
                    XdpAction::Tx,
                ));
            }
        }
        let stats = enc.stats().expect("stats");
        let runs = (ROUNDS * frames.len()) as u64 * u64::from(RUNS);
        assert_eq!(stats.labelled.packets, runs, "every run must take the full encap path: {stats:?}");
        let (zm, fm, em) = (median(z), median(f), median(e));
        println!("| {what} | {zm:.1} | {fm:.1} | {em:.1} | {:.2} | {:.2} |", em / fm, (em - zm) / (fm - zm));
    }
}

/// ns per packet for each fixture feature's labelled (XDP_TX) cases, each
/// with its own routes, configuration and frame, its output checked first.
fn features(floor: &BaselineProgram, empty: &BaselineProgram) {
    println!();
    println!("| fixture feature | labelled cases | empty (ns) | floor (ns) | encap (ns) | encap / floor |");
    println!("|---|---|---|---|---|---|");
    let features: [(&str, Vec<fixtures::Case>); 8] = [
        ("basic", fixtures::basic::cases()),
        ("ttl", fixtures::ttl::cases()),
        ("vlan", fixtures::vlan::cases()),
        ("ip", fixtures::ip::cases()),
        ("mtu", fixtures::mtu::cases()),
        ("dscp", fixtures::dscp::cases()),
        ("entropy", fixtures::entropy::cases()),
        ("policy", fixtures::policy::cases()),
    ];
    for (name, cases) in features {
        let labelled: Vec<fixtures::Case> =
            cases.into_iter().filter(|c| matches!(c.expect, fixtures::Expect::Tx(_))).collect();
        let (mut z, mut f, mut e) = (Vec::new(), Vec::new(), Vec::new());
        for c in &labelled {
            let enc = Encapsulator::builder().ttl_mode(c.config.0).mtu_policy(c.config.1).load().expect("load");
            enc.refresh_local_addresses().expect("host addresses");
            for r in &c.routes {
                enc.set_route(r).expect("fixture route");
            }
            let frame = &c.input.bytes;
            let out = enc.test_run(frame).expect("run");
            assert_eq!(
                (out.action, out.frame),
                (XdpAction::Tx, c.expect.output(&c.input)),
                "{name}: {}: the benchmark must time the fixture's labelled path",
                c.name
            );
            let floor_action = floor.test_run(frame).expect("run").action;
            for _ in 0..FIXTURE_ROUNDS {
                let run = |p: &BaselineProgram| p.test_run(frame).expect("run").action;
                z.push(timed(FIXTURE_RUNS, || empty.run_stats().expect("stats"), || run(empty), XdpAction::Pass));
                f.push(timed(FIXTURE_RUNS, || floor.run_stats().expect("stats"), || run(floor), floor_action));
                e.push(timed(
                    FIXTURE_RUNS,
                    || enc.run_stats().expect("stats"),
                    || enc.test_run(frame).expect("run").action,
                    XdpAction::Tx,
                ));
            }
        }
        let (zm, fm, em) = (median(z), median(f), median(e));
        println!("| {name} | {} | {zm:.1} | {fm:.1} | {em:.1} | {:.2} |", labelled.len(), em / fm);
    }
}
