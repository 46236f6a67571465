//! The command as a process, through the agent's local socket, against the
//! same command adopting the dataplane itself (the only way before the
//! socket, and still the way without an agent), at 1,000,000 IPv4 +
//! 200,000 IPv6 routes (BGP-like lengths): `set` and `get`, the median of
//! several runs of each, both spawned the same way (nsenter into the lab's
//! namespace); `status` too (through the agent: its counts and last
//! comparison from memory; without: the whole state read and compared), and
//! through the agent right after a change (the routes counted again).
//! Then the agent's write rate: 50 concurrent gRPC clients
//! each sending 200 `SetRoute` over the socket, every change acknowledged
//! only once durable, against the library's own `set_route` loop on the
//! same table in the same run. LHE_BENCH_V4 / LHE_BENCH_V6 set smaller
//! tables for quick runs. Run as root: `cargo bench --bench socket`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixtures::tables::{bgp_like_v4, bgp_like_v6};
use lnetd_host_encap::testing::lab::VethLab;
use lnetd_host_encap::{
    desired::ValidState, labels::DscpMap, pins::PinRoots, Encapsulator, IpNetwork, Label, LabelStack, Policy, Route,
    Table, XdpMode,
};

const BIN: &str = env!("CARGO_BIN_EXE_lnetd-host-encap");
/// Runs per measure through the agent, and without it (each of those reads the whole state).
const RUNS_AGENT: usize = 21;
const RUNS_DIRECT: usize = 5;
/// The write load: this many clients at once, each this many changes.
const CLIENTS: usize = 50;
const PER_CLIENT: usize = 200;

fn sizes() -> (usize, usize) {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    (env("LHE_BENCH_V4", 1_000_000), env("LHE_BENCH_V6", 200_000))
}

fn state(prefixes: &[IpNetwork]) -> ValidState {
    let routes: BTreeMap<(Table, IpNetwork), Route> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let label = LabelStack::single(Label::new(16 + (i % 1000) as u32).expect("a label"));
            ((Table::Main, *p), Route::with_policy(*p, Policy::single(label)))
        })
        .collect();
    ValidState::new(routes, BTreeMap::new(), DscpMap::default()).expect("a valid state")
}

/// The wall time of one run of the command with `args`, as a process in the lab's namespace.
fn run_once(lab: &VethLab, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.host.name()))
        .arg(BIN)
        .args(["-i", VethLab::HOST_IF])
        .args(args)
        .output()
        .expect("run the command");
    let took = t.elapsed();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    took
}

/// The median wall time of `runs` runs of the command with `args`.
fn median(lab: &VethLab, runs: usize, args: &[&str]) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| run_once(lab, args)).collect();
    times.sort();
    times[runs / 2]
}

/// The median wall time of `status` as a process run right after a `set`
/// that changed a route: the first `status` after a change counts the
/// routes again (the agent keeps its counts per change), which is what a
/// user who checks their change meets.
fn median_status_after_a_change(lab: &VethLab, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let label = (20_000 + i).to_string();
            run_once(lab, &["set", "198.18.0.0/15", &label]);
            run_once(lab, &["status"])
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The route client `c` sets in its `i`-th change: a /32 of its own.
fn churn_route(c: usize, i: usize) -> Route {
    let prefix: IpNetwork = format!("198.18.{c}.{i}/32").parse().expect("a prefix");
    let stack = LabelStack::single(Label::new(17_000 + (i % 1000) as u32).expect("a label"));
    Route::with_policy(prefix, Policy::single(stack))
}

/// `CLIENTS` concurrent clients of the agent's socket, `PER_CLIENT`
/// `SetRoute` each: the wall time of the whole load and every call's latency.
fn concurrent_set_routes(path: &std::path::Path) -> (Duration, Vec<Duration>) {
    use lnetd_host_encap::agent::proto::v1 as pb;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let mut clients = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            clients.push(lnetd_host_encap::agent::connect_local(path).await.expect("connect to the agent"));
        }
        let t = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(c, mut client)| {
                tokio::spawn(async move {
                    let mut took = Vec::with_capacity(PER_CLIENT);
                    for i in 0..PER_CLIENT {
                        let route = churn_route(c, i);
                        let msg = pb::Route {
                            prefix: route.prefix.to_string(),
                            policy: route.policy.to_string(),
                            ..Default::default()
                        };
                        let at = Instant::now();
                        client.set_route(msg).await.expect("SetRoute");
                        took.push(at.elapsed());
                    }
                    took
                })
            })
            .collect();
        let mut all = Vec::with_capacity(CLIENTS * PER_CLIENT);
        for task in tasks {
            all.extend(task.await.expect("a client"));
        }
        (t.elapsed(), all)
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("socket: SKIPPED, needs root (CAP_BPF, CAP_NET_ADMIN)");
        return;
    }
    let (v4, v6) = sizes();
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let mut prefixes = bgp_like_v4(v4);
    prefixes.extend(bgp_like_v6(v6));
    let full = state(&prefixes);
    let filled = lab
        .host
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic).expect("attach");
            let t = Instant::now();
            enc.apply(&full, lnetd_host_encap::ApplyOptions::default()).expect("apply");
            t.elapsed()
        })
        .expect("namespace");
    println!("socket: {} routes ({v4} IPv4 + {v6} IPv6) applied in {}", prefixes.len(), ms(filled));
    // The baseline of the write rate: the library's own loop, durable change by change.
    let library = lab
        .host
        .run(|| {
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            let t = Instant::now();
            for c in 0..CLIENTS {
                for i in 0..PER_CLIENT {
                    enc.set_route(Table::Main, &churn_route(c, i)).expect("set_route");
                }
            }
            t.elapsed() // `enc` is dropped after the measure: it releases the store's lock
        })
        .expect("namespace");

    let set = ["set", "198.18.0.0/15", "16001/16002"];
    let get = ["get", "198.18.1.1"];
    let status = ["status"];
    let direct_set = median(&lab, RUNS_DIRECT, &set);
    let direct_get = median(&lab, RUNS_DIRECT, &get);
    // Without an agent, status reads the whole state and compares every entry itself.
    let direct_status = median(&lab, RUNS_DIRECT, &status);

    let agent = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.host.name()))
        .arg(BIN)
        .args(["-i", VethLab::HOST_IF, "agent", "--mode", "generic"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the agent");
    let mut agent = common::ChildGuard(agent);
    let path = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF)).unwrap().unwrap();
    let t = Instant::now();
    while !lab.host.run(|| std::os::unix::net::UnixStream::connect(&path).is_ok()).unwrap() {
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("socket: the agent adopted the table and answered after {}", ms(t.elapsed()));
    // Its first comparison of the kernel with the RIB runs as it starts and
    // holds the RIB's lock: the measures begin once status reports it.
    let verified = loop {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.host.name()))
            .arg(BIN)
            .args(["-i", VethLab::HOST_IF, "status", "--output", "json"])
            .output()
            .expect("status");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(took) = doc["kernel"]["took_ms"].as_u64() {
            break took;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no comparison within 120 s: {doc}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("socket: the agent's first comparison of the kernel with the RIB took {verified} ms");
    let agent_set = median(&lab, RUNS_AGENT, &set);
    let agent_get = median(&lab, RUNS_AGENT, &get);
    let agent_status = median(&lab, RUNS_AGENT, &status);
    let agent_status_changed = median_status_after_a_change(&lab, RUNS_AGENT);
    let (load, mut latencies) = concurrent_set_routes(&path);
    latencies.sort();
    let n = latencies.len();
    let rate = n as f64 / load.as_secs_f64();
    let library_rate = n as f64 / library.as_secs_f64();
    println!(
        "socket: {CLIENTS} clients x {PER_CLIENT} SetRoute through the socket: {rate:.0} changes/s (p50 {}, p99 {}); \
         the library's set_route loop: {library_rate:.0} changes/s ({:.2}x)",
        ms(latencies[n / 2]),
        ms(latencies[n * 99 / 100]),
        rate / library_rate
    );
    common::summary_row(
        "socket",
        &format!("SetRoute, {CLIENTS} concurrent clients, at {} routes", prefixes.len()),
        &format!("{rate:.0} changes/s, p99 {} (library loop {library_rate:.0}/s)", ms(latencies[n * 99 / 100])),
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.0.id() as i32), nix::sys::signal::Signal::SIGTERM).ok();
    let _ = agent.0.wait();

    let ratio = agent_status_changed.as_secs_f64() / agent_status.as_secs_f64();
    println!(
        "socket: `status` right after a `set`, through the agent: {} (the routes counted again), \
         {} with the counts kept ({ratio:.1}x)",
        ms(agent_status_changed),
        ms(agent_status)
    );
    common::summary_row(
        "socket",
        &format!("`status` process right after a change, at {} routes", prefixes.len()),
        &format!("{} via the agent ({ratio:.1}x the counts kept)", ms(agent_status_changed)),
    );
    for (what, direct, through) in
        [("set", direct_set, agent_set), ("get", direct_get, agent_get), ("status", direct_status, agent_status)]
    {
        let ratio = direct.as_secs_f64() / through.as_secs_f64();
        println!(
            "socket: `{what}` as a process: {} through the agent's socket, {} adopting the dataplane itself ({ratio:.0}x)",
            ms(through),
            ms(direct)
        );
        common::summary_row(
            "socket",
            &format!("`{what}` process at {} routes", prefixes.len()),
            &format!("{} via the agent, {} direct ({ratio:.0}x)", ms(through), ms(direct)),
        );
    }
    let _ = lab.host.run(|| lnetd_host_encap::testing::remove_pins(&PinRoots::default(), VethLab::HOST_IF));
}
