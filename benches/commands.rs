//! The command as an operator runs it: `lnetd-host-encap -i IFACE
//! set/remove/get/stats`, each timed as a whole process (start to exit,
//! adoption of the pinned dataplane included), against a pinned dataplane
//! holding 1,000,000 IPv4 (BGP-like lengths) + 200,000 IPv6 routes, in a
//! veth namespace. Baseline in the same run: the same commands against the
//! same dataplane while its table is empty. Run as root, after
//! `cargo build --release --all-features` (the bench runs that binary):
//! `cargo bench --bench commands`. `upgrade` stands for an agent's restart
//! (adopting as the writer, before serving; the program is replaced only when
//! it is not this build's). LHE_BENCH_V4 / LHE_BENCH_V6 change the
//! table's size; LHE_BENCH_RUNS the runs per command (median shown).
//! LHE_BENCH_BASELINE=/path/to/another/lnetd-host-encap times that build too,
//! on the same table in the same runs (interleaved, so both see the same
//! machine): how a change to the command is measured before and after.
//! LHE_BENCH_HOLD=SECS keeps the full table pinned that long before timing
//! (it prints the namespace), to run a command by hand with `--log debug`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::tables::{bgp_like_v4, bgp_like_v6};
use lnetd_host_encap::testing::lab::{Netns, VethLab};
use lnetd_host_encap::{
    desired::ValidState, labels::DscpMap, Encapsulator, IpNetwork, Label, LabelStack, Policy, Route, Table,
};

fn env(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// The commands timed, in the order they run (`remove` takes back what
/// `set` added, so every run starts from the same table).
const COMMANDS: [(&str, &[&str]); 7] = [
    ("set one route", &["set", "192.0.2.0/24", "16001/16002"]),
    ("remove one route", &["remove", "192.0.2.0/24"]),
    ("set a policy route", &["set", "192.0.2.0/24", "16001@1,16002@1"]),
    ("remove it", &["remove", "192.0.2.0/24"]),
    ("get (explain one destination)", &["get", "198.51.100.7"]),
    ("routes --output json (every route, counters included)", &["routes", "--output", "json"]),
    // What an agent's restart does before it serves: adopt as the writer
    // (this build's program, found running, is kept; another's is replaced).
    ("upgrade (adopt as writer)", &["upgrade"]),
];

const THIS_BUILD: &str = env!("CARGO_BIN_EXE_lnetd-host-encap");

fn run(ns: &Netns, bin: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg(bin)
        .args(["-i", VethLab::HOST_IF])
        .args(args)
        .output()
        .expect("run lnetd-host-encap");
    let took = start.elapsed();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// Median time of each command (and `stats`) over `runs` runs, for each
/// binary (the runs interleaved).
fn time_all(ns: &Netns, bins: &[&str], runs: usize) -> Vec<Vec<(String, Duration)>> {
    let names: Vec<String> = COMMANDS.iter().map(|(n, _)| n.to_string()).chain(["stats".to_string()]).collect();
    let mut all: Vec<Vec<Vec<Duration>>> = vec![vec![Vec::new(); names.len()]; bins.len()];
    for _ in 0..runs {
        for (b, bin) in bins.iter().enumerate() {
            for (i, (_, args)) in COMMANDS.iter().enumerate() {
                all[b][i].push(run(ns, bin, args));
            }
            all[b][names.len() - 1].push(run(ns, bin, &["stats"]));
        }
    }
    all.into_iter()
        .map(|per_bin| {
            per_bin
                .into_iter()
                .zip(&names)
                .map(|(mut d, n)| {
                    d.sort();
                    (n.clone(), d[d.len() / 2])
                })
                .collect()
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the commands benchmark pins a dataplane: run it as root");
        std::process::exit(1);
    }
    let (n4, n6, runs) = (env("LHE_BENCH_V4", 1_000_000), env("LHE_BENCH_V6", 200_000), env("LHE_BENCH_RUNS", 5));
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let enc = lab
        .host
        .run(|| Encapsulator::builder().pinned().attach(VethLab::HOST_IF, lnetd_host_encap::XdpMode::Generic))
        .unwrap()
        .expect("attach pinned");
    drop(enc);
    let baseline = std::env::var("LHE_BENCH_BASELINE").ok();
    let mut bins = vec![THIS_BUILD];
    bins.extend(baseline.as_deref());
    let empty = time_all(&lab.host, &[THIS_BUILD], runs).remove(0);

    let prefixes: Vec<IpNetwork> = bgp_like_v4(n4).into_iter().chain(bgp_like_v6(n6)).collect();
    let routes: BTreeMap<(Table, IpNetwork), Route> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Labels from a pool of 65,536, as in issue 20's measurements.
            let stack = LabelStack::single(Label::new(16 + (i % 65_536) as u32).expect("a label"));
            ((Table::Main, *p), Route::with_policy(*p, Policy::single(stack)))
        })
        .collect();
    let state = ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("valid");
    let t = Instant::now();
    lab.host
        .run(|| {
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            enc.apply(state, lnetd_host_encap::ApplyOptions::default()).expect("apply the table");
        })
        .unwrap();
    println!("pinned table: {n4} IPv4 + {n6} IPv6 routes, applied in {:.1} s", t.elapsed().as_secs_f64());
    if let Ok(secs) = std::env::var("LHE_BENCH_HOLD") {
        println!("holding netns {} for {secs} s", lab.host.name());
        std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(60)));
    }
    let full = time_all(&lab.host, &bins, runs);

    let before = if baseline.is_some() { " | baseline build | baseline / this" } else { "" };
    println!("\n| command (whole process, median of {runs}) | empty table | {n4} + {n6} routes | ratio{before} |");
    println!("|---|---|---|---|{}", if baseline.is_some() { "---|---|" } else { "" });
    for (i, (name, e)) in empty.iter().enumerate() {
        let f = full[0][i].1;
        let ratio = f.as_secs_f64() / e.as_secs_f64();
        let against = match full.get(1) {
            Some(base) => format!(" | {} | {:.1}x", ms(base[i].1), base[i].1.as_secs_f64() / f.as_secs_f64()),
            None => String::new(),
        };
        println!("| {name} | {} | {} | {ratio:.1}x{against} |", ms(*e), ms(f));
        common::summary_row("commands", &format!("{name} at {n4} + {n6} routes"), &ms(f));
    }
    lab.host.run(|| Encapsulator::open(VethLab::HOST_IF).and_then(|e| Ok(e.detach()?))).unwrap().expect("detach");
}
