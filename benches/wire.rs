//! On the wire: the packet rate the encapsulator returns on a veth pair
//! against the floor program (same parser, MAC swap, XDP_TX; no lookup, no
//! push), interleaved in rounds in one run, with a default route only and
//! with 1,000,000 BGP-like IPv4 + 200,000 IPv6 routes, for IPv4 and IPv6
//! traffic. Run as root: `cargo bench --bench wire`.
//!
//! ```text
//!  [ns A] generator --live frames, XDP_TX--> r0 ===veth=== h0 --> floor | encapsulator (native XDP, XDP_TX)
//!         counter (XDP on r0, counts and drops) <=========/
//! ```
//!
//! The generator (`testing::generator`) is BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES on r0, one thread per CPU, cycling through
//! 4,096 frames (UDP, 18-byte payload: 60-byte IPv4, 80-byte IPv6 frames)
//! whose destinations are spread over the big table (each the network address
//! of one of its prefixes, so each hits a route). The rate is the frames
//! counted back on r0 over the round's wall time. Every round runs the floor
//! then the encapsulator for the same time, each attached for its turn; the
//! ratio is the median of the per-round ratios. The encapsulator's rounds
//! must come back labelled (checked on r0: MPLS ethertype, the route's label
//! on top) and the floor's unlabelled. LHE_WIRE_SECS (seconds per turn,
//! default 2) and LHE_WIRE_THREADS (generator threads, default: the CPUs)
//! override the defaults.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fixtures::tables::{bgp_like_v4, bgp_like_v6};
use lnetd_host_encap::lab::VethLab;
use lnetd_host_encap::testing::generator::{Generator, ReturnCounter, Returned};
use lnetd_host_encap::testing::BaselineProgram;
use lnetd_host_encap::{
    DscpMap, Encapsulator, IpNetwork, Label, LabelStack, Policy, Route, Table, ValidState, XdpMode,
};

const ROUNDS: usize = 7;
/// Frames per BPF_PROG_TEST_RUN call: each call also pays ~24 ms of
/// page-pool teardown, so a call must take far longer than that.
const CALL: u32 = 1 << 21;
/// Distinct frames (destinations) the generator cycles through.
const DESTINATIONS: usize = 4096;
const DEFAULT_V4: u32 = 1_000_000;
const DEFAULT_V6: u32 = 1_000_001;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The label of table route `i` (16 and up: never a special-purpose label).
fn label(i: usize) -> u32 {
    16 + (i % 900_000) as u32
}

/// One turn: every generator thread sends until `secs` have passed; the
/// returned frames, the frames sent, and the wall time.
fn turn(lab: &VethLab, generator: &Generator, counter: &ReturnCounter, threads: usize, secs: f64) -> Turn {
    let before = counter.read().expect("counter");
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    let calls: usize = lab
        .router
        .run(|| {
            std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            let mut calls = 0;
                            while start.elapsed() < deadline {
                                generator.send(VethLab::ROUTER_IF, CALL).expect("live frames");
                                calls += 1;
                            }
                            calls
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().expect("generator thread")).sum()
            })
        })
        .expect("enter namespace A");
    let wall = start.elapsed();
    // Frames still in the veth rings when the last call returned.
    std::thread::sleep(Duration::from_millis(20));
    let returned = counter.read().expect("counter").since(&before);
    Turn { returned, sent: calls as u64 * u64::from(CALL), wall }
}

struct Turn {
    returned: Returned,
    sent: u64,
    wall: Duration,
}

impl Turn {
    fn mpps(&self) -> f64 {
        self.returned.frames as f64 / self.wall.as_secs_f64() / 1e6
    }
    fn delivered(&self) -> f64 {
        self.returned.frames as f64 / self.sent as f64
    }
}

/// One configuration's rounds; prints its row.
#[allow(clippy::too_many_arguments)]
fn measure(
    what: &str,
    lab: &VethLab,
    generator: &Generator,
    counter: &ReturnCounter,
    floor: &BaselineProgram,
    enc: &Encapsulator,
    labels: std::ops::RangeInclusive<u32>,
    threads: usize,
    secs: f64,
) {
    let (mut f, mut e, mut ratios, mut fd, mut ed) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let attached = lab.host.run(|| floor.attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().expect("floor");
        let ft = turn(lab, generator, counter, threads, secs);
        drop(attached);
        assert!(ft.returned.frames > 0, "{what}: the floor sent frames back");
        assert_eq!(ft.returned.labelled, 0, "{what}: the floor does not label");

        lab.host.run(|| enc.attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().expect("encapsulator");
        let stats_before = enc.stats().expect("stats");
        let et = turn(lab, generator, counter, threads, secs);
        let stats = enc.stats().expect("stats");
        lab.host.run(|| enc.detach()).unwrap().expect("detach");
        let labelled = stats.labelled.packets - stats_before.labelled.packets;
        assert!(et.returned.frames > 0, "{what}: the encapsulator sent frames back");
        assert_eq!(
            et.returned.labelled, et.returned.frames,
            "{what}: every frame the encapsulator returned is labelled ({stats:?})"
        );
        assert!(
            labelled >= et.returned.frames,
            "{what}: the encapsulator counted {labelled} labelled, {} came back",
            et.returned.frames
        );
        let top = et.returned.last_top_entry.expect("a labelled frame was seen");
        assert!(
            labels.contains(&(top >> 12)) && top & 0x100 != 0,
            "{what}: top entry {top:#010x} carries a route's label, S=1"
        );

        ratios.push(et.mpps() / ft.mpps());
        f.push(ft.mpps());
        e.push(et.mpps());
        fd.push(ft.delivered());
        ed.push(et.delivered());
        eprintln!(
            "{what}: floor {:.3} Mpps ({:.1}% of sent came back), encap {:.3} Mpps ({:.1}%), ratio {:.3}",
            ft.mpps(),
            100.0 * ft.delivered(),
            et.mpps(),
            100.0 * et.delivered(),
            et.mpps() / ft.mpps()
        );
    }
    println!(
        "| {what} | {:.2} | {:.2} | {:.3} | {:.3} .. {:.3} | {:.0}% / {:.0}% |",
        median(f),
        median(e),
        median(ratios.clone()),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
        100.0 * median(fd),
        100.0 * median(ed),
    );
}

/// `n` frames to destinations spread over `prefixes` (the network address of
/// every (len / n)th prefix).
fn frames(prefixes: &[IpNetwork]) -> Vec<Vec<u8>> {
    let step = (prefixes.len() / DESTINATIONS).max(1);
    prefixes
        .iter()
        .step_by(step)
        .take(DESTINATIONS)
        .map(|p| common::frame(&p.network().to_string()).payload(18).build().bytes)
        .collect()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the wire benchmark builds a namespace lab and runs live frames: run it as root");
        std::process::exit(1);
    }
    let started = Instant::now();
    let secs: f64 = env_or("LHE_WIRE_SECS", 2.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: usize = env_or("LHE_WIRE_THREADS", cpus);

    let v4 = bgp_like_v4(1_000_000);
    let v6 = bgp_like_v6(200_000);
    let mut routes = BTreeMap::new();
    for (i, p) in v4.iter().chain(&v6).enumerate() {
        let stack = LabelStack::single(Label::new(label(i)).expect("a label"));
        routes.insert((Table::Main, *p), Route::with_policy(*p, Policy::single(stack)));
    }
    let table = ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("a valid state");
    let (frames_v4, frames_v6) = (frames(&v4), frames(&v6));
    eprintln!("tables and frames generated in {:.1} s", started.elapsed().as_secs_f64());

    let lab = VethLab::new().expect("lab");
    let counter = lab.router.run(|| ReturnCounter::attach(VethLab::ROUTER_IF)).unwrap().expect("counter on r0");
    let mut generator = Generator::load().expect("generator");
    let floor = BaselineProgram::floor().expect("floor");
    let enc = Encapsulator::builder().load().expect("encapsulator");
    enc.set_label("0.0.0.0/0".parse().unwrap(), Label::new(DEFAULT_V4).unwrap()).expect("default route");
    enc.set_label("::/0".parse().unwrap(), Label::new(DEFAULT_V6).unwrap()).expect("default route");

    println!(
        "| routes | traffic ({} destinations) | floor (Mpps) | encap (Mpps) | encap / floor (median) | per-round range | came back (floor / encap) |",
        DESTINATIONS
    );
    println!("|---|---|---|---|---|---|---|");
    for (v6, frames, label) in [(false, &frames_v4, DEFAULT_V4), (true, &frames_v6, DEFAULT_V6)] {
        generator.set_frames(frames).expect("frames");
        let what = format!("default route only | {}", if v6 { "IPv6, 80-byte frames" } else { "IPv4, 60-byte frames" });
        measure(&what, &lab, &generator, &counter, &floor, &enc, label..=label, threads, secs);
    }

    let t = Instant::now();
    let report = enc.apply_valid_owned(table).expect("apply the full table");
    eprintln!("applied {} routes in {:.1} s", report.added.len(), t.elapsed().as_secs_f64());
    for (v6, frames) in [(false, &frames_v4), (true, &frames_v6)] {
        generator.set_frames(frames).expect("frames");
        let what = format!(
            "1,000,000 IPv4 + 200,000 IPv6 | {}",
            if v6 { "IPv6, 80-byte frames" } else { "IPv4, 60-byte frames" }
        );
        measure(&what, &lab, &generator, &counter, &floor, &enc, 16..=16 + 899_999, threads, secs);
    }
    println!();
    println!(
        "{ROUNDS} rounds of {secs} s floor then {secs} s encap per row, {threads} generator thread(s), {cpus} CPU(s); whole run {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
