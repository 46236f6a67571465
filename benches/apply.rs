//! Programming at Internet scale: 1,000,000 IPv4 prefixes with a BGP-like
//! length mix plus 200,000 IPv6 programmed from empty with one `apply`; an
//! identical apply (the diff alone); an apply that changes 1% of the table;
//! kernel map memory per route (the maps' `memlock` in /proc/self/fdinfo) and
//! the process memory the RIB takes. Baselines in the same run: one
//! `set_route` syscall path per route, and one `bpftool map update` process
//! per route (the proof of concept's way). Run as root:
//! `cargo bench --bench apply`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::tables::{bgp_like_v4, bgp_like_v6};
use lnetd_host_encap::{
    desired::ValidState, encap::Ipv4Lookup, labels::DscpMap, Encapsulator, IpNetwork, Label, LabelStack, Policy, Route,
    Table,
};

/// Table sizes; LHE_BENCH_V4 / LHE_BENCH_V6 override them for quick runs.
fn sizes() -> (usize, usize) {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    (env("LHE_BENCH_V4", 1_000_000), env("LHE_BENCH_V6", 200_000))
}
/// Routes timed through the per-route baselines.
const PER_ROUTE: usize = 20_000;
const BPFTOOL_ROUTES: usize = 300;

fn label(i: usize) -> LabelStack {
    LabelStack::single(Label::new(16 + (i % 1_000_000) as u32).expect("a label"))
}

/// The desired state, its routes allocated in prefix order, as a controller
/// building it from a RIB dump (sorted by prefix) would; built from the
/// generator's random order instead, every comparison of the diff would
/// miss the cache (the identical apply then takes about 150 ms, not 60).
fn state(prefixes: &[IpNetwork], version: impl Fn(usize) -> usize) -> ValidState {
    let mut prefixes: Vec<(usize, IpNetwork)> = prefixes.iter().copied().enumerate().collect();
    prefixes.sort_by_key(|(_, p)| *p);
    let routes: BTreeMap<(Table, IpNetwork), Route> = prefixes
        .into_iter()
        .map(|(i, p)| ((Table::Main, p), Route::with_policy(p, Policy::single(label(version(i))))))
        .collect();
    ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("a valid state")
}

/// Kernel memory of every BPF map this process holds, from fdinfo's memlock.
fn map_memlock() -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/fdinfo").expect("fdinfo") {
        let Ok(text) = std::fs::read_to_string(entry.expect("entry").path()) else { continue };
        if !text.contains("map_type:") {
            continue;
        }
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// One `bpftool map update` process per route into a fresh encapsulator's
/// IPv4 trie (found by name, newest id).
fn bpftool_rate(prefixes: &[IpNetwork]) -> Option<f64> {
    let _enc = Encapsulator::builder().lookup(Ipv4Lookup::LpmTrie).load().ok()?;
    let shown = Command::new("bpftool").args(["-j", "map", "show"]).output().ok()?;
    let maps: serde_json::Value = serde_json::from_slice(&shown.stdout).ok()?;
    let id = maps.as_array()?.iter().filter(|m| m["name"] == "routes_v4").filter_map(|m| m["id"].as_u64()).max()?;
    // route_value: flags, pad, policy_id, segment_list (4 + 16 x 4), counter_id.
    let value = vec!["0"; 2 + 2 + 4 + 68 + 4].join(" ");
    let start = Instant::now();
    for p in prefixes.iter().take(BPFTOOL_ROUTES) {
        let IpNetwork::V4(v4) = p else { continue };
        let o = v4.network().octets();
        let key = format!("{} 0 0 0 {} {} {} {}", v4.prefix(), o[0], o[1], o[2], o[3]);
        let ok = Command::new("bpftool")
            .args(["map", "update", "id", &id.to_string(), "key"])
            .args(key.split(' '))
            .arg("value")
            .args(value.split(' '))
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
    }
    Some(per_sec(BPFTOOL_ROUTES, start.elapsed()))
}

fn main() {
    env_logger::init();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the apply benchmark loads BPF maps: run it as root");
        std::process::exit(1);
    }
    let t = Instant::now();
    let (n4, n6) = sizes();
    let v4 = bgp_like_v4(n4);
    let v6 = bgp_like_v6(n6);
    let all: Vec<IpNetwork> = v4.iter().chain(&v6).copied().collect();
    println!("generated {} IPv4 + {} IPv6 prefixes in {:.1} s", v4.len(), v6.len(), t.elapsed().as_secs_f64());
    let full = state(&all, |i| i);
    // 1%: a third relabelled, a third removed, a third new.
    let step = 100;
    let mut changed_routes = full.routes().clone();
    let mut n_changed = 0;
    for (i, p) in all.iter().enumerate().filter(|(i, _)| i % step == 0) {
        match (i / step) % 3 {
            0 => {
                changed_routes.insert((Table::Main, *p), Route::with_policy(*p, Policy::single(label(i + 7))));
            }
            1 => {
                changed_routes.remove(&(Table::Main, *p));
            }
            _ => {
                let IpNetwork::V4(v) = p else { continue };
                let extra = IpNetwork::V4(
                    ipnetwork::Ipv4Network::new(std::net::Ipv4Addr::from(u32::from(v.network()) ^ 0x0000_0080), 25)
                        .unwrap(),
                );
                changed_routes.insert((Table::Main, extra), Route::with_policy(extra, Policy::single(label(i))));
            }
        }
        n_changed += 1;
    }
    let changed = ValidState::new(changed_routes, BTreeMap::new(), DscpMap::default()).expect("a valid state");

    common::in_netns("bench-apply", |_| {
        let n = all.len();
        println!();
        println!("| IPv4 lookup | measurement | result |");
        println!("|---|---|---|");
        let mut from_empty_rate = 0.0;
        for lookup in [Ipv4Lookup::Dir24_8, Ipv4Lookup::LpmTrie] {
            let rss_before = rss();
            // A label per route: no two routes share a value (DIR-24-8's worst case).
            let enc = Encapsulator::builder().lookup(lookup).max_route_values(1_300_000).load().expect("load");
            let mem_empty = map_memlock();
            let owned = full.clone();
            let t = Instant::now();
            let report = enc.apply(owned, lnetd_host_encap::ApplyOptions::default()).expect("apply from empty");
            let from_empty = t.elapsed();
            assert_eq!(report.added.len(), all.len());
            let mem_full = map_memlock();
            let rss_after = rss();
            // The median of three runs.
            let mut times = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                let same = enc.apply(&full, lnetd_host_encap::ApplyOptions::default()).expect("identical apply");
                times.push(t.elapsed());
                assert_eq!(same.map_operations, 0);
            }
            times.sort();
            let identical = times[1];
            let t = Instant::now();
            let r = enc.apply(&changed, lnetd_host_encap::ApplyOptions::default()).expect("1% apply");
            let one_percent = t.elapsed();
            assert!(enc.diagnostics().verify().expect("verify").is_empty(), "the kernel holds what the RIB says");
            drop(enc);
            if lookup == Ipv4Lookup::Dir24_8 {
                from_empty_rate = per_sec(n, from_empty);
            }
            println!(
                "| {lookup} | apply from empty, {} IPv4 + {} IPv6 | {:.2} s, {:.0} routes/s |",
                v4.len(),
                v6.len(),
                from_empty.as_secs_f64(),
                per_sec(n, from_empty)
            );
            common::summary_row(
                "apply",
                &format!("bulk insert: apply from empty, {} IPv4 + {} IPv6 ({lookup})", v4.len(), v6.len()),
                &format!("{:.0} routes/s ({:.2} s)", per_sec(n, from_empty), from_empty.as_secs_f64()),
            );
            common::summary_row(
                "apply",
                &format!("incremental: apply changing 1% ({lookup})"),
                &format!(
                    "{:.0} routes/s ({n_changed} changes in {:.0} ms)",
                    per_sec(n_changed, one_percent),
                    one_percent.as_secs_f64() * 1e3
                ),
            );
            println!(
                "| {lookup} | identical apply (the diff alone) | {:.0} ms, 0 map operations |",
                identical.as_secs_f64() * 1e3
            );
            println!(
                "| {lookup} | apply changing 1% ({} changes: {} replaced, {} added, {} removed) | {:.0} ms, {} map operations |",
                n_changed,
                r.replaced.len(),
                r.added.len(),
                r.removed.len(),
                one_percent.as_secs_f64() * 1e3,
                r.map_operations
            );
            println!(
                "| {lookup} | kernel map memory (memlock) | {:.1} MiB at {n} routes ({:.1} MiB empty) |",
                mem_full as f64 / (1 << 20) as f64,
                mem_empty as f64 / (1 << 20) as f64
            );
            println!(
                "| {lookup} | process memory growth (RIB and allocator) | {:.0} MiB ({:.0} bytes/route) |",
                (rss_after.saturating_sub(rss_before)) as f64 / (1 << 20) as f64,
                rss_after.saturating_sub(rss_before) as f64 / n as f64
            );
        }

        let single = Encapsulator::builder().load().expect("load");
        let t = Instant::now();
        for p in all.iter().take(PER_ROUTE) {
            single.set_route(Table::Main, &Route::new(*p, label(1))).expect("set_route");
        }
        let per_route = per_sec(PER_ROUTE, t.elapsed());
        drop(single);
        let bpftool = bpftool_rate(&all);
        println!("| | baseline: set_route per route (first {PER_ROUTE}) | {per_route:.0} routes/s |");
        common::summary_row("apply", "incremental: set_route, one route a call", &format!("{per_route:.0} routes/s"));
        match bpftool {
            Some(rate) => {
                println!(
                    "| lpm | baseline: one bpftool process per route (first {BPFTOOL_ROUTES}) | {rate:.0} routes/s |"
                )
            }
            None => println!("| | baseline: one bpftool process per route | bpftool not available |"),
        }
        println!("| dir24-8 | apply / set_route per route | {:.1}x |", from_empty_rate / per_route);
        if let Some(rate) = bpftool {
            println!("| dir24-8 | apply / bpftool per route | {:.0}x |", from_empty_rate / rate);
        }
    });
}
