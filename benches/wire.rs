//! On the wire: the packet rate the encapsulator returns on a veth pair,
//! against the floor program (same parser, MAC swap, XDP_TX; no lookup, no
//! push), interleaved in rounds in one run: a default route only, the
//! 1,479-prefix BGP sample, and 1,000,000 BGP-like IPv4 + 200,000 IPv6
//! routes (loaded with one apply); IPv4 and IPv6 traffic. Run as root:
//! `cargo bench --bench wire`.
//!
//! ```text
//!  [ns A] generator --live frames, XDP_TX--> r0 ===veth=== h0 --> floor | encapsulator   [ns B]
//!         counter (XDP on r0: counts, drops) <======== XDP_TX =========/   (native XDP)
//! ```
//!
//! The generator (`testing::generator`) is BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES on r0, cycling through up to 4,096 frames
//! (UDP, 18-byte payload: 60-byte IPv4, 80-byte IPv6 frames) whose
//! destinations are spread over the configuration's table (each the network
//! address of one of its prefixes, so each hits a route). The rate is the
//! frames counted back on r0 over the turn's wall time. A round is a turn of
//! the floor then a turn of the encapsulator, each attached to h0 for its
//! turn; the ratio is the median of the per-round ratios. The encapsulator's
//! turns must come back labelled (checked on r0: MPLS ethertype, a route's
//! label on top, S=1; and its own labelled counter) and the floor's not.
//!
//! One generator thread by default: the generator, h0's receive (the
//! program under test) and r0's receive (the counter) then run in turn on
//! that thread's CPU (veth receive runs in the softirq of the CPU that queued
//! the frames), every frame sent comes back, and the other CPU stays free
//! for the rest of the machine. Knobs: LHE_WIRE_SECS (seconds a turn,
//! default 1), LHE_WIRE_ROUNDS (default 11), LHE_WIRE_THREADS (generator
//! threads, default 1; more share h0's one receive queue, lose frames and
//! measure noisier), LHE_WIRE_DESTINATIONS (distinct frames, default 4,096),
//! LHE_WIRE_V6_SIZES (e.g. `1,1024,16384`: instead of the rows above, IPv6
//! tables of those sizes, each a default route under the first of the full
//! table's prefixes, with the full table's destinations: where the route
//! cache starts to pay, `route_cache_min_routes`), LHE_WIRE_ROWS (which of
//! the rows above: `default,sample,full,spread`, the default all four;
//! `spread` is the full table with 65,536 destinations, each inside a
//! different route, IPv4 then IPv6: `spread_destinations`),
//! LHE_WIRE_SECOND_CACHE (the second encapsulator's route cache entries,
//! default 0: without the cache; e.g. 8192 times a smaller cache against
//! the default in the same run), LHE_WIRE_SECOND_SKIP (the second
//! encapsulator's `skip_stages` bits, default 0: A/B variants that leave a
//! stage out, docs/per-packet.md), LHE_WIRE_SECOND_COUNTED (the second
//! encapsulator's `max_counted_routes`, default the library's: `0` counts
//! no route, every labelled packet still counted by its verdict),
//! LHE_WIRE_SPREAD (the families of the
//! `spread` rows, default `ipv4,ipv6`), LHE_WIRE_ORDER (`shuffled`: the
//! `spread` rows' destinations in a fixed random order, not the table's),
//! LHE_WIRE_GENERATOR (`whole`: every frame read from its own 256-byte slot,
//! as before the generator sent patches; `Generator::set_frames`).
//!
//! Kernels that refuse live frames (EPERM even to root: the 6.18.44 build
//! of 2026-12-07) get the recirculating generator instead, chosen on its
//! own and said so on stderr (LHE_WIRE_SOURCE=`recirculate` or `live`
//! forces one): r0 runs `xdp_recirculate` in the counter's place, which
//! counts what comes back and sends it out again as the next frame;
//! LHE_WIRE_SEEDS frames (default 128) sent out of h0 start each turn.
//! No system call per frame and no page-pool setup: its floor runs about
//! twice as fast as the live-frame one (18 against 8 Mpps here), so each
//! program's own cost is a larger part of the ratio, and ratios from the
//! two generators are not comparable.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fixtures::tables::{bgp_like_v4, bgp_like_v6, bgp_sample};
use lnetd_host_encap::testing::generator::{spread_destinations, Generator, ReturnCounter, Returned};
use lnetd_host_encap::testing::lab::VethLab;
use lnetd_host_encap::testing::BaselineProgram;
use lnetd_host_encap::{
    desired::ValidState, labels::DscpMap, Encapsulator, IpNetwork, Label, LabelStack, Policy, Route, Table, XdpMode,
};

/// Seconds per BPF_PROG_TEST_RUN call: each call also pays ~24 ms of
/// page-pool teardown, so a call must last far longer than that, and as long
/// for the floor as for the encapsulator (so the teardown weighs the same):
/// calls are sized from the time per frame of the program's previous call.
const CALL_TIME: f64 = 0.25;
const DEFAULT_V4: u32 = 1_000_000;
const DEFAULT_V6: u32 = 1_000_001;
/// Labels of table routes: 16 + (route index modulo this). Real tables
/// share labels between many prefixes (one per egress or policy); 65,536
/// distinct stacks stay within the DIR-24-8 table's default 131,071 values.
const TABLE_LABELS: u32 = 65_536;
/// Frames a recirculating turn starts with (LHE_WIRE_SEEDS).
const SEEDS: u32 = 128;

/// Destinations of the `spread` rows (issue 22), each in a different route.
const SPREAD: usize = 65_536;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The table's header, the columns `Bench::measure` prints after `first`;
/// `second`: what the second encapsulator is.
fn print_header(first: &str, second: &str) {
    println!(
        "| {first} | traffic | floor (Mpps) | encap (Mpps) | encap / floor | per-round range | {second}: encap / \
         floor | minimal push / floor | came back (floor / encap) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A table of `prefixes`, route `i` labelled 16 + i (modulo TABLE_LABELS).
fn table(prefixes: &[IpNetwork]) -> ValidState {
    let routes: BTreeMap<(Table, IpNetwork), Route> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let label = Label::new(16 + (i as u32 % TABLE_LABELS)).expect("a label");
            ((Table::Main, *p), Route::with_policy(*p, Policy::single(LabelStack::single(label))))
        })
        .collect();
    ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("a valid state")
}

/// Frames to destinations spread over `prefixes` (the network address of
/// every (len / n)th prefix), at most `n`.
fn frames(prefixes: &[IpNetwork], n: usize) -> Vec<Vec<u8>> {
    let step = (prefixes.len() / n).max(1);
    prefixes
        .iter()
        .step_by(step)
        .take(n)
        .map(|p| common::frame(&p.network().to_string()).payload(18).build().bytes)
        .collect()
}

/// Frames to `n` destinations, each answered by a different prefix of
/// `prefixes` (`spread_destinations`): as many routes as destinations.
/// `shuffled`: in a fixed random order instead of the table's (address)
/// order, in which consecutive frames read neighbouring entries of every
/// table indexed by address (DIR-24-8's tbl24, the prefix slots) and the
/// CPU's prefetchers and TLB hide much of the memory's cost.
fn spread_frames(prefixes: &[IpNetwork], n: usize, shuffled: bool) -> Vec<Vec<u8>> {
    use rand::{seq::SliceRandom, SeedableRng};
    let mut d = spread_destinations(prefixes, n);
    assert_eq!(d.len(), n, "{n} prefixes with an address of their own");
    if shuffled {
        d.shuffle(&mut rand::rngs::StdRng::seed_from_u64(22));
    }
    d.iter().map(|a| common::frame(&a.to_string()).payload(18).build().bytes).collect()
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

struct Bench {
    lab: VethLab,
    generator: Generator,
    /// Counts what comes back to r0 (live frames; `None` when recirculating).
    counter: Option<ReturnCounter>,
    /// Seed frames a turn, when the generator recirculates on r0 (a kernel
    /// that refuses live frames, or LHE_WIRE_SOURCE=recirculate).
    seeds: Option<u32>,
    floor: BaselineProgram,
    /// The floor plus a constant one-label push: the least any encapsulator does.
    min_push: BaselineProgram,
    /// The encapsulator as loaded by default (route cache on), and a second
    /// one (by default without the route cache: LHE_WIRE_SECOND_CACHE).
    enc: Encapsulator,
    second: Encapsulator,
    /// What the second encapsulator is, for the table and the log.
    second_is: String,
    /// The second encapsulator skips the counters (LHE_WIRE_SECOND_SKIP).
    second_uncounted: bool,
    threads: usize,
    secs: f64,
    rounds: usize,
    /// Seconds per frame in the last call of a floor turn and of an encap turn.
    floor_pace: Mutex<f64>,
    encap_pace: Mutex<f64>,
    second_pace: Mutex<f64>,
    min_push_pace: Mutex<f64>,
}

impl Bench {
    /// One turn: every generator thread sends until `secs` have passed.
    fn turn(&self, secs: f64, pace: &Mutex<f64>) -> Turn {
        let Some(counter) = &self.counter else {
            return self.recirculating_turn(secs, self.seeds.unwrap_or(SEEDS));
        };
        counter.reset().expect("reset the counter");
        let start = Instant::now();
        let deadline = Duration::from_secs_f64(secs);
        let sent: u64 = self
            .lab
            .router
            .run(|| {
                std::thread::scope(|s| {
                    let workers: Vec<_> = (0..self.threads)
                        .map(|_| {
                            s.spawn(|| {
                                // Highest nice level: the builds sharing the machine then
                                // preempt the generator (and the XDP processing it drives
                                // on its CPU) less.
                                // SAFETY: plain syscall; `0` is the calling thread on Linux.
                                unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, -20) };
                                let (mut sent, mut per_frame) = (0u64, *pace.lock().unwrap());
                                while start.elapsed() < deadline {
                                    let size = (CALL_TIME / per_frame).clamp(1e4, 1e8) as u32;
                                    let t = Instant::now();
                                    self.generator.send(VethLab::ROUTER_IF, size).expect("live frames");
                                    sent += u64::from(size);
                                    per_frame = t.elapsed().as_secs_f64() / f64::from(size);
                                }
                                (sent, per_frame)
                            })
                        })
                        .collect();
                    let mut sent = 0;
                    for w in workers {
                        let (n, per_frame) = w.join().expect("generator thread");
                        sent += n;
                        *pace.lock().unwrap() = per_frame;
                    }
                    sent
                })
            })
            .expect("enter namespace A");
        let wall = start.elapsed();
        // Frames still in the veth rings when the last call returned.
        std::thread::sleep(Duration::from_millis(20));
        Turn { returned: counter.read().expect("counter"), sent, wall }
    }

    /// One turn of the recirculating generator: `seeds` frames sent from
    /// h0's side go round between r0 (rewritten into the next frame) and
    /// h0 (the program under test) until `secs` have passed.
    fn recirculating_turn(&self, secs: f64, seeds: u32) -> Turn {
        self.generator.reset_returned().expect("reset the counts");
        let start = Instant::now();
        self.lab
            .host
            .run(|| {
                // The frames go round on the CPU that sends the seeds: the
                // highest one this process may use, the same every turn.
                let me = nix::unistd::Pid::from_raw(0);
                let allowed = nix::sched::sched_getaffinity(me).expect("the CPUs allowed");
                let last = (0..nix::sched::CpuSet::count()).rev().find(|c| allowed.is_set(*c).unwrap_or(false));
                let mut cpu = nix::sched::CpuSet::new();
                cpu.set(last.expect("an allowed CPU")).expect("a CPU");
                nix::sched::sched_setaffinity(me, &cpu).expect("pin the seeding thread");
                self.generator.start_recirculating(VethLab::HOST_IF, seeds)
            })
            .expect("enter namespace B")
            .expect("seed frames");
        std::thread::sleep(Duration::from_secs_f64(secs).saturating_sub(start.elapsed()));
        self.generator.stop_recirculating().expect("stop");
        let wall = start.elapsed();
        // Frames still going round when it stopped: counted, then dropped.
        std::thread::sleep(Duration::from_millis(20));
        let returned = self.generator.returned().expect("counts");
        // Every frame that went through the program under test was one r0
        // sent (the seeds reach r0 first, without passing it).
        Turn { returned, sent: returned.resent, wall }
    }

    /// Which generator ran: ratios of the two are not comparable.
    fn source(&self) -> String {
        match self.seeds {
            Some(seeds) => format!("recirculating generator, {seeds} seed frames"),
            None => format!("live-frame generator, {} thread(s)", self.threads),
        }
    }

    fn floor_turn(&self, secs: f64) -> Turn {
        self.baseline_turn(&self.floor, secs, &self.floor_pace)
    }

    fn baseline_turn(&self, program: &BaselineProgram, secs: f64, pace: &Mutex<f64>) -> Turn {
        let attached =
            self.lab.host.run(|| program.attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().expect("baseline");
        let t = self.turn(secs, pace);
        drop(attached);
        t
    }

    /// An encapsulator turn (`default`: the default one, else the second
    /// one), and the packets it counted as labelled.
    fn encap_turn(&self, secs: f64, default: bool) -> (Turn, u64) {
        let (enc, pace) = match default {
            true => (&self.enc, &self.encap_pace),
            false => (&self.second, &self.second_pace),
        };
        self.lab.host.run(|| enc.attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().expect("encapsulator");
        let before = enc.stats().expect("stats").labelled.packets;
        let t = self.turn(secs, pace);
        let labelled = enc.stats().expect("stats").labelled.packets - before;
        self.lab.host.run(|| enc.detach()).unwrap().expect("detach");
        (t, labelled)
    }

    /// Both encapsulators take the same routes.
    fn apply(&self, state: &ValidState) {
        for enc in [&self.enc, &self.second] {
            enc.apply(state, lnetd_host_encap::ApplyOptions::default()).expect("apply");
        }
    }

    /// One configuration's rounds (frames already set); prints its row.
    /// `min_push`: a third arm, the minimal push, in every third round.
    fn measure(&self, what: &str, labels: RangeInclusive<u32>, min_push: bool) {
        // A half turn of each first, not counted: first touch of the frames
        // and of the encapsulator's maps.
        self.encap_turn(self.secs / 2.0, true);
        self.encap_turn(self.secs / 2.0, false);
        if min_push {
            self.baseline_turn(&self.min_push, self.secs / 2.0, &self.min_push_pace);
        }
        self.floor_turn(self.secs / 2.0);
        let (mut f, mut e, mut ratios, mut fd, mut ed) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut second_ratios, mut min_push_ratios) = (vec![], vec![]);
        let arms = if min_push { 3 } else { 2 };
        for round in 0..self.rounds * arms {
            // A floor turn, then in turn: the default encapsulator, the second (, the minimal push).
            let default = round % arms == 0;
            let ft = self.floor_turn(self.secs);
            assert!(ft.returned.frames > 0, "{what}: the floor sent frames back");
            assert_eq!(ft.returned.labelled, 0, "{what}: the floor does not label");
            if round % arms == 2 {
                let mt = self.baseline_turn(&self.min_push, self.secs, &self.min_push_pace);
                assert!(
                    mt.returned.labelled + 100 + mt.returned.frames / 10_000 >= mt.returned.frames,
                    "{what}: the minimal push labels what it returns"
                );
                let top = mt.returned.last_top_entry.expect("a labelled frame came back");
                assert_eq!(top >> 12, 16, "{what}: the minimal push's constant label");
                eprintln!(
                    "{what}: floor {:.3} Mpps, minimal push {:.3} Mpps, ratio {:.3}",
                    ft.mpps(),
                    mt.mpps(),
                    mt.mpps() / ft.mpps()
                );
                min_push_ratios.push(mt.mpps() / ft.mpps());
                continue;
            }

            let (et, labelled) = self.encap_turn(self.secs, default);
            // A few frames of h0's own stack (IPv6 neighbour and multicast
            // listener messages, which the programs pass) come back unlabelled.
            let unlabelled = et.returned.frames - et.returned.labelled;
            assert!(
                unlabelled <= 100 + et.returned.frames / 10_000,
                "{what}: the encapsulator returned {unlabelled} of {} frames unlabelled",
                et.returned.frames
            );
            // A variant that skips the counters counts nothing.
            assert!(
                labelled >= et.returned.labelled || (!default && self.second_uncounted),
                "{what}: the encapsulator counted {labelled} labelled, {} came back labelled",
                et.returned.labelled
            );
            let top = et.returned.last_top_entry.expect("a labelled frame came back");
            assert!(
                labels.contains(&(top >> 12)) && top & 0x100 != 0,
                "{what}: top entry {top:#010x} carries a route's label, S=1"
            );

            eprintln!(
                "{what}: floor {:.3} Mpps ({:.1}% of sent came back), encap{} {:.3} Mpps ({:.1}%), ratio {:.3}",
                ft.mpps(),
                100.0 * ft.delivered(),
                if default { String::new() } else { format!(" {}", self.second_is) },
                et.mpps(),
                100.0 * et.delivered(),
                et.mpps() / ft.mpps()
            );
            if !default {
                second_ratios.push(et.mpps() / ft.mpps());
                continue;
            }
            ratios.push(et.mpps() / ft.mpps());
            f.push(ft.mpps());
            e.push(et.mpps());
            fd.push(ft.delivered());
            ed.push(et.delivered());
        }
        let (lo, hi) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let min_push = (!min_push_ratios.is_empty()).then(|| median(min_push_ratios));
        let (fm, em, ratio, second) = (median(f), median(e), median(ratios), median(second_ratios));
        println!(
            "| {what} | {fm:.2} | {em:.2} | {ratio:.2} | {lo:.2} .. {hi:.2} | {second:.2} | {} | {:.0}% / {:.0}% |",
            min_push.map_or("-".to_string(), |m| format!("{m:.2}")),
            100.0 * median(fd),
            100.0 * median(ed),
        );
        common::summary_row(
            "wire",
            &format!("encap / floor, {}", what.replace(" | ", ", ")),
            &format!(
                "{ratio:.2} (floor {fm:.2} Mpps, encap {em:.2} Mpps; {} {second:.2}{}; {})",
                self.second_is,
                min_push.map_or(String::new(), |m| format!("; minimal push {m:.2}")),
                self.source(),
            ),
        );
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the wire benchmark builds a namespace lab and runs live frames: run it as root");
        std::process::exit(1);
    }
    let started = Instant::now();
    let destinations: usize = env_or("LHE_WIRE_DESTINATIONS", 4096);
    let v4 = bgp_like_v4(1_000_000);
    let v6 = bgp_like_v6(200_000);
    let sample = bgp_sample();
    let full: Vec<IpNetwork> = v4.iter().chain(&v6).copied().collect();
    let (full_table, sample_table) = (table(&full), table(&sample));
    let (frames_v4, frames_v6, frames_sample) =
        (frames(&v4, destinations), frames(&v6, destinations), frames(&sample, destinations));
    eprintln!("tables and frames generated in {:.1} s", started.elapsed().as_secs_f64());

    let second_cache: u32 = env_or("LHE_WIRE_SECOND_CACHE", 0);
    let second_skip: u32 = env_or("LHE_WIRE_SECOND_SKIP", 0);
    let second_counted: Option<u32> = std::env::var("LHE_WIRE_SECOND_COUNTED").ok().and_then(|v| v.parse().ok());
    let shuffled = std::env::var("LHE_WIRE_ORDER").is_ok_and(|o| o == "shuffled");
    let spread_families = std::env::var("LHE_WIRE_SPREAD").unwrap_or_else(|_| "ipv4,ipv6".to_string());
    const ROWS: [&str; 4] = ["default", "sample", "full", "spread"];
    let rows = std::env::var("LHE_WIRE_ROWS").unwrap_or_else(|_| ROWS.join(","));
    let rows: Vec<&str> = rows.split(',').map(str::trim).collect();
    if let Some(bad) = rows.iter().find(|r| !ROWS.contains(r)) {
        eprintln!("LHE_WIRE_ROWS: no row {bad:?}; rows are {}", ROWS.join(","));
        std::process::exit(2);
    }
    let row = |name: &str| rows.contains(&name);
    let lab = VethLab::new().expect("lab");
    let mut generator = Generator::load().expect("generator");
    generator.whole_frames(std::env::var("LHE_WIRE_GENERATOR").is_ok_and(|g| g == "whole"));
    let recirculate = match std::env::var("LHE_WIRE_SOURCE").as_deref() {
        Ok("recirculate") => true,
        Ok("live") => false,
        _ => match generator.live_frames() {
            Ok(()) => false,
            Err(e) => {
                eprintln!("this kernel refuses live frames ({e}): the generator recirculates on r0");
                true
            }
        },
    };
    let (counter, seeds) = if recirculate {
        lab.router.run(|| generator.recirculate_on(VethLab::ROUTER_IF)).unwrap().expect("recirculate on r0");
        (None, Some(env_or("LHE_WIRE_SEEDS", SEEDS)))
    } else {
        (Some(lab.router.run(|| ReturnCounter::attach(VethLab::ROUTER_IF)).unwrap().expect("counter on r0")), None)
    };
    let mut second = Encapsulator::builder().route_cache(second_cache).skip_stages(second_skip);
    if let Some(n) = second_counted {
        second = second.max_counted_routes(n);
    }
    let mut bench = Bench {
        counter,
        seeds,
        lab,
        generator,
        floor: BaselineProgram::floor().expect("floor"),
        min_push: BaselineProgram::min_push().expect("minimal push"),
        enc: Encapsulator::builder().load().expect("encapsulator"),
        second: second.load().expect("the second encapsulator"),
        second_is: match (second_cache, second_skip) {
            (0, 0) => "without the route cache".to_string(),
            (0, s) => format!("without the route cache, skip_stages {s}"),
            (n, 0) => format!("with a route cache of {n} entries"),
            (n, s) => format!("with a route cache of {n} entries, skip_stages {s}"),
        } + &second_counted.map(|n| format!(", at most {n} routes counted")).unwrap_or_default(),
        second_uncounted: second_skip & 8 != 0,
        threads: env_or("LHE_WIRE_THREADS", 1),
        secs: env_or("LHE_WIRE_SECS", 1.0),
        rounds: env_or("LHE_WIRE_ROUNDS", 11),
        // 2 Mpps until measured.
        floor_pace: Mutex::new(5e-7),
        encap_pace: Mutex::new(5e-7),
        second_pace: Mutex::new(5e-7),
        min_push_pace: Mutex::new(5e-7),
    };
    let table_labels = 16..=16 + TABLE_LABELS - 1;

    // Where the route cache starts to pay for an LPM trie: IPv6 tables of the
    // given sizes only (LHE_WIRE_V6_SIZES=1,16,256), then exit.
    let v6_traffic = || format!("IPv6, 80-byte frames, {} destinations", frames_v6.len());
    if let Ok(sizes) = std::env::var("LHE_WIRE_V6_SIZES") {
        print_header("IPv6 routes", &bench.second_is);
        for n in sizes.split(',').map(|n| n.trim().parse::<usize>().expect("LHE_WIRE_V6_SIZES: sizes, comma-separated"))
        {
            // A default route under the first n of the full table's prefixes,
            // and the full table's destinations: as many whatever n.
            let mut prefixes = bgp_like_v6(n.saturating_sub(1));
            prefixes.push("::/0".parse().expect("a prefix"));
            bench.apply(&table(&prefixes));
            bench.generator.set_frames(&frames_v6).expect("frames");
            bench.measure(&format!("{n} | {}", v6_traffic()), table_labels.clone(), false);
        }
        return;
    }

    print_header("routes", &bench.second_is);
    let v4_traffic = format!("IPv4, 60-byte frames, {} destinations", frames_v4.len());
    let v6_traffic = format!("IPv6, 80-byte frames, {} destinations", frames_v6.len());
    if row("default") {
        for enc in [&bench.enc, &bench.second] {
            enc.set_route(
                Table::Main,
                &Route::new("0.0.0.0/0".parse().unwrap(), Label::new(DEFAULT_V4).unwrap().into()),
            )
            .expect("default route");
            enc.set_route(Table::Main, &Route::new("::/0".parse().unwrap(), Label::new(DEFAULT_V6).unwrap().into()))
                .expect("default route");
        }
        bench.generator.set_frames(&frames_v4).expect("frames");
        bench.measure(&format!("a default route only | {v4_traffic}"), DEFAULT_V4..=DEFAULT_V4, true);
        bench.generator.set_frames(&frames_v6).expect("frames");
        bench.measure(&format!("a default route only | {v6_traffic}"), DEFAULT_V6..=DEFAULT_V6, true);
    }

    if row("sample") {
        bench.apply(&sample_table);
        bench.generator.set_frames(&frames_sample).expect("frames");
        let sample_traffic = format!("IPv4, 60-byte frames, {} destinations", frames_sample.len());
        let what = format!("the {}-prefix BGP sample | {sample_traffic}", sample.len());
        bench.measure(&what, table_labels.clone(), false);
    }

    if row("full") || row("spread") {
        let t = Instant::now();
        bench.apply(&full_table);
        eprintln!("applied {} routes twice in {:.1} s", full.len(), t.elapsed().as_secs_f64());
        assert_eq!((v4.len(), v6.len()), (1_000_000, 200_000));
        let what = "1,000,000 IPv4 + 200,000 IPv6";
        if row("full") {
            bench.generator.set_frames(&frames_v4).expect("frames");
            bench.measure(&format!("{what} | {v4_traffic}"), table_labels.clone(), false);
            bench.generator.set_frames(&frames_v6).expect("frames");
            bench.measure(&format!("{what} | {v6_traffic}"), table_labels.clone(), false);
        }
        if row("spread") {
            // Issue 22: a busy host's many peers, each in a different route.
            let n: usize = env_or("LHE_WIRE_SPREAD_N", SPREAD);
            for (prefixes, family, size) in [(&v4, "IPv4", 60), (&v6, "IPv6", 80)] {
                if !spread_families.to_lowercase().contains(&family.to_lowercase()) {
                    continue;
                }
                bench.generator.set_frames(&spread_frames(prefixes, n, shuffled)).expect("frames");
                let order = if shuffled { ", shuffled" } else { "" };
                let traffic =
                    format!("{family}, {size}-byte frames, {n} destinations, each in a different route{order}");
                bench.measure(&format!("{what} | {traffic}"), table_labels.clone(), false);
            }
        }
    }
    println!();
    println!(
        "{} rounds per row and encapsulator, each {} s floor then {} s encap, the two encapsulators in \
         alternate rounds (in turn with the minimal push in the default-route rows; medians; ratio: median of the per-round ratios); {}; whole run {:.0} s",
        bench.rounds,
        bench.secs,
        bench.secs,
        bench.source(),
        started.elapsed().as_secs_f64()
    );
}
