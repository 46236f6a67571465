//! BPF_PROG_TEST_RUN table: every frame shape through the real program in the
//! real kernel, asserting the action, the exact output bytes and the counter.
//! The cases live in tests/fixtures, one module per feature (the benchmark
//! reuses them).
//!
//! Runs inside a private network namespace whose loopback (the test-run
//! ingress device) has MTU 1500, so the MTU rule is exercised as on Ethernet,
//! both ways the program reads the MTU: in place (Linux 6.2+) and through
//! bpf_check_mtu (older kernels).

mod common;
mod fixtures;

use lnetd_host_encap::Table;
use std::collections::{HashMap, HashSet};

use common::model::Verdict;
use common::{in_test_run_netns, privileged, Frame};
use fixtures::{Case, Config, Expect};
use lnetd_host_encap::testing::stages;
use lnetd_host_encap::{
    counters::Counter, diagnostics::XdpAction, encap::Ipv4Lookup, errors::TestRunError, Encapsulator, Route,
};

/// One encapsulator per configuration, under one IPv4 lookup structure;
/// `skip`: stages left out (`EncapsulatorBuilder::skip_stages`).
struct Harness {
    lookup: Ipv4Lookup,
    skip: u32,
    encaps: HashMap<Config, Encapsulator>,
}

impl Harness {
    fn encap(&mut self, config: Config) -> &Encapsulator {
        let (lookup, skip) = (self.lookup, self.skip);
        self.encaps.entry(config).or_insert_with(|| {
            let enc = Encapsulator::builder()
                .ttl_mode(config.0)
                .mtu_policy(config.1)
                .lookup(lookup)
                .skip_stages(skip)
                .load()
                .expect("load");
            enc.refresh_local_addresses().expect("host addresses");
            enc
        })
    }

    /// The encapsulator for `config` with exactly `routes` in its main table.
    fn program(&mut self, config: Config, routes: &[Route]) -> &Encapsulator {
        let enc = self.encap(config);
        for r in enc.routes(Table::Main).expect("routes") {
            enc.remove(Table::Main, r.prefix).expect("remove");
        }
        for route in routes {
            enc.set_route(Table::Main, route).expect("set_route");
        }
        enc
    }
}

/// Runs one frame, checks action, bytes and that exactly one counter moved by
/// exactly this frame. Returns a description of the first mismatch.
fn check(enc: &Encapsulator, name: &str, input: &Frame, expect: &Expect) -> Result<(), String> {
    let before = enc.stats().map_err(|e| e.to_string())?;
    let run = enc.diagnostics().test_run(&input.bytes).map_err(|e| format!("{name}: {e}"))?;
    let delta = enc.stats().map_err(|e| e.to_string())?.since(&before);
    let one = Counter { packets: 1, bytes: input.bytes.len() as u64 };
    let (action, frame, verdict) = (expect.action(), expect.output(input), expect.verdict());
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

/// Every case runs under every lookup structure of the main IPv4 table, then
/// under DIR-24-8 with the MTU through bpf_check_mtu: (lookup, stages left
/// out, what the failure says of the run).
const RUNS: [(Ipv4Lookup, u32, &str); 3] = [
    (Ipv4Lookup::Dir24_8, 0, ""),
    (Ipv4Lookup::LpmTrie, 0, ""),
    (Ipv4Lookup::Dir24_8, stages::MTU_IN_PLACE, ", MTU through bpf_check_mtu"),
];

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn packet_table() {
    privileged("packet_table");
    let cases = fixtures::all();
    let failures = in_test_run_netns("table", || {
        let mut failures = Vec::new();
        for (lookup, skip, how) in RUNS {
            let mut h = Harness { lookup, skip, encaps: HashMap::new() };
            for c in &cases {
                let enc = h.program(c.config, &c.routes);
                if let Err(e) = check(enc, &c.name, &c.input, &c.expect) {
                    failures.push(format!("{lookup}{how}: {e}"));
                }
            }
        }
        failures
    });
    let total = RUNS.len() * cases.len();
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
    // Kernels from 6.2 have the kfunc: the runs above read the MTU in place there.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("the kernel's release");
    let mut numbers = release.trim().split(['.', '-']).map(|n| n.parse::<u32>().unwrap_or(0));
    if (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (6, 2) {
        assert!(lnetd_host_encap::testing::mtu_read_in_place(), "Linux {} has bpf_cast_to_kern_ctx", release.trim());
    }
}

/// A fixture module: its name and its cases.
type Feature = (&'static str, fn() -> Vec<Case>);

/// Every verdict, checked complete by an exhaustive match: a new variant does
/// not compile until it is listed here (and then needs a case).
fn all_verdicts() -> Vec<Verdict> {
    use Verdict::*;
    let all = vec![Labelled, NotIp, Malformed, Multicast, Local, NoRoute, MtuDropped, MtuPassed, NoLivePathDropped];
    for v in &all {
        match v {
            Labelled | NotIp | Malformed | Multicast | Local | NoRoute | MtuDropped | MtuPassed | NoLivePathDropped => {
            }
        }
    }
    all
}

/// The table itself, without the kernel: names are unique (a failure names one
/// case), every verdict and every kind of expectation has a case, and no
/// feature module is empty.
#[test]
fn table_names_are_unique_and_cover_every_outcome() {
    let cases = fixtures::all();
    let mut names = HashSet::new();
    let duplicates: Vec<&str> = cases.iter().map(|c| c.name.as_str()).filter(|n| !names.insert(*n)).collect();
    assert!(duplicates.is_empty(), "case names used twice: {duplicates:?}");
    let covered: HashSet<Verdict> = cases.iter().map(|c| c.expect.verdict()).collect();
    let missing: Vec<Verdict> = all_verdicts().into_iter().filter(|v| !covered.contains(v)).collect();
    assert!(missing.is_empty(), "no case for {missing:?}");
    let kind = |e: &Expect| match e {
        Expect::Tx(_) => 0,
        Expect::Pass(_) => 1,
        Expect::Drop(_) => 2,
    };
    let kinds: HashSet<u8> = cases.iter().map(|c| kind(&c.expect)).collect();
    assert_eq!(kinds.len(), 3, "every Expect variant (Tx, Pass, Drop) has a case");
    let features: [Feature; 12] = [
        ("basic", fixtures::basic::cases),
        ("ttl", fixtures::ttl::cases),
        ("vlan", fixtures::vlan::cases),
        ("ip", fixtures::ip::cases),
        ("not_ip", fixtures::not_ip::cases),
        ("multicast", fixtures::multicast::cases),
        ("local", fixtures::local::cases),
        ("mtu", fixtures::mtu::cases),
        ("malformed", fixtures::malformed::cases),
        ("dscp", fixtures::dscp::cases),
        ("entropy", fixtures::entropy::cases),
        ("policy", fixtures::policy::cases),
    ];
    let per_feature: usize = features.iter().map(|(_, f)| f().len()).sum();
    assert_eq!(per_feature, cases.len(), "fixtures::all() runs every feature module once");
    for (name, f) in features {
        assert!(!f().is_empty(), "fixtures::{name} has no case");
    }
}

/// Every truncation of valid frames is passed untouched and counted as
/// malformed; below an Ethernet header the kernel itself refuses the run.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn every_truncation_passes_untouched() {
    privileged("every_truncation_passes_untouched");
    let frames = fixtures::truncation::frames();
    let failures = in_test_run_netns("table", || {
        let mut h = Harness { lookup: Ipv4Lookup::default(), skip: 0, encaps: HashMap::new() };
        let enc = h.program(fixtures::COPY, &fixtures::truncation::routes());
        let mut failures = Vec::new();
        let mut runs = 0;
        for (full, expect) in &frames {
            check(enc, "full frame", full, expect).unwrap_or_else(|e| failures.push(e));
            for len in 0..full.bytes.len() {
                let cut = Frame { bytes: full.bytes[..len].to_vec(), l2_len: full.l2_len };
                if len < 14 {
                    match enc.diagnostics().test_run(&cut.bytes) {
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
