//! The per-packet cost of the encapsulator, as the kernel times the program
//! (BPF_ENABLE_STATS), against the floor program (same parser, MAC swap,
//! XDP_TX; no lookup, no push) in the same run: for each lookup structure of
//! the main IPv4 table (DIR-24-8, the LPM trie) at 1, 1,000, 100,000 and
//! 1,000,000 IPv4 + 200,000 IPv6 BGP-like routes, IPv4 and IPv6 traffic to
//! destinations spread over the table, stacks of 1, 4 and 16 labels, with
//! the route cache (the default: it serves a family from 4,096 routes) and
//! without it; what
//! each stage of the path costs (the full program minus a variant without
//! that stage); the kernel memory of each structure; then per feature of the
//! test fixtures (tests/fixtures). Run as root: `cargo bench --bench xdp_path`.
//!
//! Every run is its own BPF_PROG_TEST_RUN call with a fresh copy of the frame,
//! so the encapsulator really parses, looks up and pushes each time (with
//! `repeat` the kernel would hand it its own output, and live-frame mode
//! recycles rewritten frames; see NOTES). The time is the kernel's own
//! per-program run time, which leaves the syscall out but includes two
//! clock reads per run: the empty program's column is that overhead, and the
//! "excess" column subtracts the floor. Encap, floor and empty runs
//! interleave, frame by frame; medians over the rounds are reported.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;

use lnetd_host_encap::testing::{stages, BaselineProgram};
use lnetd_host_encap::{
    desired::ValidState, diagnostics::RunStats, diagnostics::RunTimeStats, diagnostics::XdpAction, encap::Ipv4Lookup,
    labels::DscpMap, Encapsulator, IpNetwork, Label, LabelStack, Route, Table,
};

const ROUNDS: usize = 7;
/// Destinations per configuration, spread over the table.
const FRAMES: usize = 64;
/// Runs per frame and round.
const RUNS: u32 = 400;
/// Rounds and runs per fixture case (many cases, each timed less).
const FIXTURE_ROUNDS: usize = 5;
const FIXTURE_RUNS: u32 = 1_000;

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

/// A stack of `n` labels.
fn stack(n: u32) -> LabelStack {
    LabelStack::new((0..n).map(|i| Label::new(16_000 + i).expect("label")).collect::<Vec<_>>()).expect("stack")
}

/// The table of a configuration: `v4` BGP-like IPv4 and `v6` IPv6 prefixes,
/// every route pushing `labels` labels.
fn table(v4: usize, v6: usize, labels: u32) -> ValidState {
    let s = stack(labels);
    let routes: BTreeMap<(Table, IpNetwork), Route> = fixtures::tables::bgp_like_v4(v4)
        .into_iter()
        .chain(fixtures::tables::bgp_like_v6(v6))
        .map(|p| ((Table::Main, p), Route::new(p, s.clone())))
        .collect();
    ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("valid")
}

/// The prefixes the frames go to: spread over `table`'s prefixes of one family.
fn targets(table: &ValidState, v6: bool) -> Vec<IpNetwork> {
    let prefixes: Vec<IpNetwork> = table.routes().keys().map(|(_, p)| *p).filter(|p| p.is_ipv6() == v6).collect();
    prefixes.iter().step_by((prefixes.len() / FRAMES).max(1)).take(FRAMES).copied().collect()
}

/// Frames to the [`targets`].
fn frames(table: &ValidState, v6: bool) -> Vec<Vec<u8>> {
    targets(table, v6).iter().map(|p| common::frame(&p.network().to_string()).payload(64).build().bytes).collect()
}

/// Median ns per packet of (empty, floor, encap) over `frames`, interleaved.
fn measure(
    enc: &Encapsulator,
    floor: &BaselineProgram,
    empty: &BaselineProgram,
    frames: &[Vec<u8>],
) -> (f64, f64, f64) {
    let (z, f, e, _) = measure_all(&[enc], floor, empty, &[], frames);
    (z, f, e[0])
}

/// As [`measure`] for several encapsulators at once, each timed right after
/// the others on the same frame in every round: what differs between them is
/// not the machine's load at the moment. `extra`: more baselines that send
/// the frame back (XDP_TX), timed alike; their medians come last.
fn measure_all(
    encs: &[&Encapsulator],
    floor: &BaselineProgram,
    empty: &BaselineProgram,
    extra: &[&BaselineProgram],
    frames: &[Vec<u8>],
) -> (f64, f64, Vec<f64>, Vec<f64>) {
    let before: Vec<u64> = encs.iter().map(|e| e.stats().expect("stats").labelled.packets).collect();
    let (mut z, mut f) = (Vec::new(), Vec::new());
    let mut e: Vec<Vec<f64>> = vec![Vec::new(); encs.len()];
    let mut x: Vec<Vec<f64>> = vec![Vec::new(); extra.len()];
    for _ in 0..ROUNDS {
        let (mut zr, mut fr) = (0.0, 0.0);
        let mut er = vec![0.0; encs.len()];
        let mut xr = vec![0.0; extra.len()];
        for frame in frames {
            let run = |p: &BaselineProgram| p.test_run(frame).expect("run").action;
            zr += timed(RUNS, || empty.run_stats().expect("stats"), || run(empty), XdpAction::Pass);
            fr += timed(RUNS, || floor.run_stats().expect("stats"), || run(floor), XdpAction::Tx);
            for (p, sum) in extra.iter().zip(xr.iter_mut()) {
                *sum += timed(RUNS, || p.run_stats().expect("stats"), || run(p), XdpAction::Tx);
            }
            for (enc, sum) in encs.iter().zip(er.iter_mut()) {
                *sum += timed(
                    RUNS,
                    || enc.diagnostics().run_stats().expect("stats"),
                    || enc.diagnostics().test_run(frame).expect("run").action,
                    XdpAction::Tx,
                );
            }
        }
        let n = frames.len() as f64;
        z.push(zr / n);
        f.push(fr / n);
        for (samples, sum) in e.iter_mut().zip(er) {
            samples.push(sum / n);
        }
        for (samples, sum) in x.iter_mut().zip(xr) {
            samples.push(sum / n);
        }
    }
    let runs = (ROUNDS * frames.len()) as u64 * u64::from(RUNS);
    for (enc, before) in encs.iter().zip(before) {
        let labelled = enc.stats().expect("stats").labelled.packets - before;
        assert!(labelled == runs || labelled == 0, "every run took the full encap path: {labelled} of {runs}");
    }
    (median(z), median(f), e.into_iter().map(median).collect(), x.into_iter().map(median).collect())
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
        // LHE_XDP_PATH=scale,stages,features (the default: all) picks the tables.
        let only = std::env::var("LHE_XDP_PATH").unwrap_or_else(|_| "scale,stages,features".into());
        if only.contains("scale") {
            scale(&floor, &empty);
        }
        if only.contains("stages") {
            stage_costs(&floor, &empty);
        }
        if only.contains("features") {
            features(&floor, &empty);
        }
    });
}

/// ns per packet against the table's size, its lookup structure, the
/// family and the stack depth.
fn scale(floor: &BaselineProgram, empty: &BaselineProgram) {
    println!("| IPv4 lookup | route cache | routes (IPv4 + IPv6) | traffic | labels | empty (ns) | floor (ns) | encap (ns) | encap - floor (ns) | kernel memory (MiB) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let sizes: [(usize, usize, &str); 4] = [
        (1, 1, "1 + 1"),
        (1_000, 1_000, "1k + 1k"),
        (100_000, 20_000, "100k + 20k"),
        (1_000_000, 200_000, "1M + 200k"),
    ];
    // The default (the route cache on) at every depth; without the cache, one label.
    let configs: [(Ipv4Lookup, bool, &[u32]); 4] = [
        (Ipv4Lookup::Dir24_8, true, &[1, 4, 16]),
        (Ipv4Lookup::LpmTrie, true, &[1, 4, 16]),
        (Ipv4Lookup::Dir24_8, false, &[1]),
        (Ipv4Lookup::LpmTrie, false, &[1]),
    ];
    for (lookup, cache, depths) in configs {
        let cached = if cache { "on" } else { "off" };
        for (v4, v6, what) in sizes {
            for &n in depths {
                let state = table(v4, v6, n);
                let mut builder = Encapsulator::builder().lookup(lookup);
                if !cache {
                    builder = builder.route_cache(0);
                }
                let enc = builder.load().expect("encapsulator");
                enc.apply(&state, lnetd_host_encap::ApplyOptions::default()).expect("apply");
                let mib = enc.diagnostics().map_memory().expect("memory").iter().map(|(_, b)| b).sum::<u64>() as f64
                    / 1048576.0;
                for family in [false, true] {
                    let (z, f, e) = measure(&enc, floor, empty, &frames(&state, family));
                    let traffic = if family { "IPv6" } else { "IPv4" };
                    println!(
                        "| {lookup} | {cached} | {what} | {traffic} | {n} | {z:.1} | {f:.1} | {e:.1} | {:.1} | {mib:.0} |",
                        e - f
                    );
                    // The suite's summary: the defaults (DIR-24-8, the route cache on).
                    if lookup == Ipv4Lookup::Dir24_8 && cache {
                        common::summary_row(
                            "xdp_path",
                            &format!("ns per packet, {what} routes, {traffic}, {n} label(s): floor / encap"),
                            &format!("{f:.1} / {e:.1} ({:+.1})", e - f),
                        );
                    }
                }
            }
        }
    }
}

/// How a stage-table row reads its variant's time.
enum Row {
    /// The variant's own time.
    Whole,
    /// The variant's time minus the whole program's (what doing this instead adds).
    Instead,
    /// The whole program's time minus the variant's (what the stage left out costs).
    Without,
}

/// What each stage costs: the full program minus a variant without it, at
/// one route and at 1,000,000 + 200,000, IPv4 (DIR-24-8) and IPv6 (LPM
/// trie); a policy's cost is a table of 70/30 policies minus a plain one.
fn stage_costs(floor: &BaselineProgram, empty: &BaselineProgram) {
    let min_push = BaselineProgram::min_push().expect("minimal push program");
    println!();
    println!("| stage | table | IPv4, DIR-24-8 (ns) | IPv6, LPM trie (ns) |");
    println!("|---|---|---|---|");
    let split = fixtures::policy::split().remove(0).policy;
    let sizes: &[(usize, usize, &str)] = match std::env::var("LHE_XDP_PATH_SMALL") {
        Ok(_) => &[(1, 1, "1 + 1")],
        Err(_) => &[(1, 1, "1 + 1"), (1_000_000, 200_000, "1M + 200k")],
    };
    for &(v4, v6, what) in sizes {
        let plain = table(v4, v6, 1);
        // The same table with the routes the frames go to made 70/30 policies.
        let targeted: std::collections::BTreeSet<IpNetwork> =
            targets(&plain, false).into_iter().chain(targets(&plain, true)).collect();
        let routes = plain
            .routes()
            .iter()
            .map(|(k, r)| match targeted.contains(&r.prefix) {
                true => (*k, Route::with_policy(r.prefix, split.clone())),
                false => (*k, r.clone()),
            })
            .collect();
        let policies = ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("valid");
        // Every variant loaded at once and timed frame by frame beside the others.
        // (row, stages left out, route cache on, table, how the row reads the times)
        let variants: Vec<(&str, u32, bool, &ValidState, Row)> = vec![
            ("whole program, plain route (route cache hit)", 0, true, &plain, Row::Whole),
            ("route lookup (a route cache hit)", stages::LOOKUP, true, &plain, Row::Without),
            ("a route cache miss instead (lookup and fill)", stages::CACHE_HIT, true, &plain, Row::Instead),
            ("whole program without the route cache", 0, false, &plain, Row::Whole),
            ("MTU check", stages::MTU, true, &plain, Row::Without),
            (
                "the MTU through bpf_check_mtu instead (as before Linux 6.2)",
                stages::MTU_IN_PLACE,
                true,
                &plain,
                Row::Instead,
            ),
            ("push (save L2, grow, write the stack)", stages::PUSH, true, &plain, Row::Without),
            ("counters", stages::COUNTERS, true, &plain, Row::Without),
            ("a 70/30 policy instead (flow hash, policy lookup, slot, list counter)", 0, true, &policies, Row::Instead),
        ];
        let encs: Vec<Encapsulator> = variants
            .iter()
            .map(|(_, skip, cache, state, _)| {
                // The cache at any table size: the rows time its hits and misses.
                let mut builder = Encapsulator::builder().skip_stages(*skip).route_cache_min_routes(0);
                if !cache {
                    builder = builder.route_cache(0);
                }
                let enc = builder.load().expect("variant");
                enc.apply(*state, lnetd_host_encap::ApplyOptions::default()).expect("apply");
                enc
            })
            .collect();
        let refs: Vec<&Encapsulator> = encs.iter().collect();
        let [v4, v6] = [false, true].map(|v6| measure_all(&refs, floor, empty, &[&min_push], &frames(&plain, v6)));
        println!("| floor (parse, MAC swap, XDP_TX) | {what} | {:.1} | {:.1} |", v4.1, v6.1);
        println!(
            "| the least any encapsulator does, over the floor (grow, move L2, one constant label) | {what} | {:.1} | \
             {:.1} |",
            v4.3[0] - v4.1,
            v6.3[0] - v6.1
        );
        for (i, (name, _, _, _, row)) in variants.iter().enumerate() {
            let (a, b) = match row {
                Row::Whole => (v4.2[i], v6.2[i]),
                Row::Instead => (v4.2[i] - v4.2[0], v6.2[i] - v6.2[0]),
                Row::Without => (v4.2[0] - v4.2[i], v6.2[0] - v6.2[i]),
            };
            println!("| {name} | {what} | {a:.1} | {b:.1} |");
        }
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
                enc.set_route(Table::Main, r).expect("fixture route");
            }
            let frame = &c.input.bytes;
            let out = enc.diagnostics().test_run(frame).expect("run");
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
                    || enc.diagnostics().run_stats().expect("stats"),
                    || enc.diagnostics().test_run(frame).expect("run").action,
                    XdpAction::Tx,
                ));
            }
        }
        let (zm, fm, em) = (median(z), median(f), median(e));
        println!("| {name} | {} | {zm:.1} | {fm:.1} | {em:.1} | {:.2} |", labelled.len(), em / fm);
    }
}
