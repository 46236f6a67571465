//! Fleet scale through BGP: 10,000 SR policies and 1,000,000 colored routes
//! originated by a controller's gobgpd, learned over iBGP by the host's
//! gobgpd, followed over its gRPC API by the learner (in this process, on a
//! loaded, unattached dataplane) and programmed. Prints: time from the last
//! path handed to the controller's gobgpd to every route programmed; the
//! time one change (a preference change of one policy) takes at that scale;
//! the memory of both gobgpd and of this process. Run as root:
//! `cargo bench --bench bgp` (LHE_BENCH_ROUTES / LHE_BENCH_POLICIES override
//! the sizes for a quick run). `LHE_BENCH_AGENT_ONLY=1 LHE_BENCH_POLICIES=10`
//! measures issue 20's policy switch (per-route policies against shared
//! policy objects, map writes and time) without gobgpd.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use lnetd_host_encap::bgp::accept::Addressing;
use lnetd_host_encap::bgp::proto as gobgp;
use lnetd_host_encap::bgp::proto::gobgp_api_client::GobgpApiClient;
use lnetd_host_encap::bgp::wire::{candidate_path, colored_route_path};
use lnetd_host_encap::bgp::{self, BgpConfig, BgpCounters, Candidate, CandidateList, Origins, PolicyKey};
use lnetd_host_encap::testing::lab::Netns;
use lnetd_host_encap::Encapsulator;

const CTL_ADDR: &str = "10.201.0.1";
const HOST_BGP_ADDR: &str = "10.201.0.2";
const API: &str = "127.0.0.1:50051";
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

struct Daemon(Child, std::path::PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn gobgpd(ns: &Netns, local: &str, neighbor: &str) -> Daemon {
    let config = std::env::temp_dir().join(format!("lhe-bench-gobgpd-{}-{}.toml", std::process::id(), ns.name()));
    let families = ["ipv4-unicast", "ipv4-srpolicy"]
        .iter()
        .map(|f| {
            format!("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{f}\"\n")
        })
        .collect::<String>();
    let text = format!(
        "[global.config]\n  as = 65000\n  router-id = \"{local}\"\n  local-address-list = [\"{local}\"]\n\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{neighbor}\"\n    peer-as = 65000\n\
         \x20 [neighbors.timers.config]\n    connect-retry = 1\n\
         \x20 [neighbors.transport.config]\n    local-address = \"{local}\"\n{families}"
    );
    std::fs::write(&config, text).expect("config");
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .args(["gobgpd", "-f", config.to_str().unwrap(), "--api-hosts", API, "--pprof-disable", "-l", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gobgpd (apt-get install gobgpd)");
    let start = Instant::now();
    while !ns.run(|| TcpStream::connect(API).is_ok()).unwrap() {
        assert!(start.elapsed() < Duration::from_secs(10), "gobgpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon(child, config)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn policy(color: u32, preference: u32, label: u32) -> gobgp::Path {
    let c = Candidate {
        preference,
        lists: vec![CandidateList { weight: 1, labels: vec![label, 16_999], unsupported: 0 }],
        // The host's directly peered controller (RFC 9830 4.2.1).
        addressing: Addressing::peer(),
        ..Candidate::new(1, PolicyKey { color, endpoint: IpAddr::V4(ENDPOINT) })
    };
    candidate_path(&c, CTL_ADDR.parse().unwrap())
}

fn prefix(i: u32) -> IpNetwork {
    let a = Ipv4Addr::from((16u32 << 24) + (i << 8));
    IpNetwork::new(IpAddr::V4(a), 24).unwrap()
}

/// Streams `paths` into the controller's gobgpd (AddPathStream, 1,000 a message).
fn inject(ns: &Netns, paths: Vec<gobgp::Path>) {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let mut c = GobgpApiClient::connect(format!("http://{API}")).await.expect("controller API");
            let chunks: Vec<gobgp::AddPathStreamRequest> = paths
                .chunks(1000)
                .map(|c| gobgp::AddPathStreamRequest { paths: c.to_vec(), ..Default::default() })
                .collect();
            c.add_path_stream(tokio_stream::iter(chunks)).await.expect("AddPathStream");
        })
    })
    .unwrap();
}

/// The agent's side alone (no gobgpd): BGP's table handed to the merge and
/// applied, from empty, after one policy's preference change, and unchanged.
fn agent_only(routes: u32, policies: u32) {
    use lnetd_host_encap::bgp::{BgpTable, PolicyInfo};
    use lnetd_host_encap::Policy;
    // LHE_BENCH_PINNED: attached and pinned on a veth, as the agent runs
    // (the RIB's state file is then written after every apply).
    let lab = std::env::var_os("LHE_BENCH_PINNED").map(|_| {
        let ns = Netns::new("bp").expect("namespace");
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]).unwrap();
        ns.ip(&["link", "set", "v0", "up"]).unwrap();
        ns.ip(&["link", "set", "v1", "up"]).unwrap();
        ns
    });
    let enc = match &lab {
        Some(ns) => ns
            .run(|| {
                Encapsulator::builder()
                    .pinned()
                    .attach("v0", lnetd_host_encap::XdpMode::Generic)
                    .expect("attach pinned")
            })
            .unwrap(),
        None => Encapsulator::builder().load().expect("load the dataplane"),
    };
    let enc = Arc::new(enc);
    println!(
        "dataplane {}",
        if lab.is_some() { "attached and pinned (state file after each apply)" } else { "loaded, not pinned" }
    );
    let origins = Origins::new(Arc::clone(&enc));
    let table = |first_label: u32| {
        let mut t = BgpTable::default();
        for color in 1..=policies {
            let key = PolicyKey { color, endpoint: IpAddr::V4(ENDPOINT) };
            let label = if color == 1 { first_label } else { 16_000 + color % 100_000 };
            let policy: Policy = format!("{label}/16999").parse().unwrap();
            let info = PolicyInfo {
                color,
                endpoint: key.endpoint,
                preference: 100,
                distinguisher: 1,
                binding_sid: None,
                name: None,
                enlp: None,
            };
            t.policies.insert(key, (policy, info));
        }
        for i in 0..routes {
            t.routes.insert(prefix(i), PolicyKey { color: 1 + i % policies, endpoint: IpAddr::V4(ENDPOINT) });
        }
        t
    };
    // The learner's side of a change: selection over every candidate path
    // and steering of every colored route (what each batch recomputes).
    {
        use lnetd_host_encap::bgp::select::select;
        use lnetd_host_encap::bgp::steer::{steer, ColoredRoute};
        let candidates: Vec<Candidate> = (1..=policies)
            .map(|color| Candidate {
                lists: vec![CandidateList {
                    weight: 1,
                    labels: vec![16_000 + color % 100_000, 16_999],
                    unsupported: 0,
                }],
                ..Candidate::new(1, PolicyKey { color, endpoint: IpAddr::V4(ENDPOINT) })
            })
            .collect();
        let colored: std::collections::HashMap<IpNetwork, ColoredRoute> = (0..routes)
            .map(|i| (prefix(i), ColoredRoute { next_hop: IpAddr::V4(ENDPOINT), colors: vec![1 + i % policies] }))
            .collect();
        let t = Instant::now();
        let selected = select(&candidates);
        let selecting = t.elapsed();
        let (steered, _) = steer(&colored, &selected);
        println!("learner: select {selecting:.2?}, steer {:.2?} ({} routes)", t.elapsed() - selecting, steered.len());
    }
    let (a, b) = (table(16_001), table(15_000));
    if policies <= 100 {
        policy_switch(&enc, &origins, &a, &b, routes, policies);
        return;
    }
    let before = rss_kib(std::process::id(), "VmRSS:");
    let t = Instant::now();
    let report = origins.set_bgp(a.clone(), true).unwrap();
    println!("from empty: {:.2?} ({report})", t.elapsed());
    println!(
        "process memory: {} before (the two tables built), {} after the first apply",
        mib(before),
        mib(rss_kib(std::process::id(), "VmRSS:"))
    );
    let t = Instant::now();
    let report = origins.set_bgp(b, true).unwrap();
    println!("one policy changed: {:.2?} ({report})", t.elapsed());
    let t = Instant::now();
    let report = origins.set_bgp(a, true).unwrap();
    println!("changed back: {:.2?} ({report})", t.elapsed());
    if let Some(ns) = &lab {
        drop(origins);
        if let Ok(enc) = Arc::try_unwrap(enc) {
            ns.run(|| enc.detach()).unwrap().expect("detach");
        }
    }
}

/// Issue 20's goal: colored routes steered into a few policies, and a
/// preference switch of one of them. Before (main's model: every route its
/// own policy entry or inline stack, what an apply of the unnamed routes
/// does) and after (shared objects: the fast path BGP takes when no route is
/// steered again, and the full path for comparison), in one run.
fn policy_switch(
    enc: &Encapsulator,
    origins: &Origins,
    a: &lnetd_host_encap::bgp::BgpTable,
    b: &lnetd_host_encap::bgp::BgpTable,
    routes: u32,
    policies: u32,
) {
    use lnetd_host_encap::{desired::ValidState, Route, Table};
    let moved = routes / policies;
    // Main's model: each route carries its policy; a switch rewrites each.
    let unnamed = |t: &lnetd_host_encap::bgp::BgpTable| {
        let routes = t
            .routes
            .iter()
            .map(|(p, k)| ((Table::Main, *p), Route::with_policy(*p, t.policies[k].0.clone())))
            .collect();
        ValidState::new(routes, Default::default(), Default::default()).unwrap()
    };
    let (ua, ub) = (unnamed(a), unnamed(b));
    let t = Instant::now();
    enc.apply(&ua, lnetd_host_encap::ApplyOptions::default()).unwrap();
    println!("per-route policies (main's model): {routes} routes applied in {:.2?}", t.elapsed());
    let t = Instant::now();
    let before = enc.apply(&ub, lnetd_host_encap::ApplyOptions::default()).unwrap();
    let before_time = t.elapsed();
    println!("per-route policies: switch of one policy ({moved} routes): {before_time:.2?} ({before})");

    let t = Instant::now();
    let report = origins.set_bgp(a.clone(), true).unwrap();
    println!("shared objects: the same routes onto {} objects: {:.2?} ({report})", policies, t.elapsed());
    // A packet toward a route of policy 1, run through the program in a
    // loop: when its top label turns into the new path's, the switch is in
    // the dataplane.
    let probe = udp_frame(Ipv4Addr::new(16, 0, 0, 1));
    let top = |enc: &Encapsulator| {
        let run = enc.diagnostics().test_run(&probe).ok()?;
        lnetd_host_encap::labels::decode_stack(run.frame.get(14..)?).ok().map(|(s, _)| s[0].label)
    };
    assert_eq!(top(enc), Some(16_001), "policy 1's route before the switch");
    let (fast, fast_time, in_dataplane) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while top(enc) != Some(15_000) {
                assert!(Instant::now() < deadline, "the switch never reached the program");
                std::hint::spin_loop();
            }
            Instant::now()
        });
        let t = Instant::now();
        let fast = origins.set_bgp_policies(b.policies.clone(), b.invalid.clone()).unwrap();
        let fast_time = t.elapsed();
        let seen = watcher.join().unwrap();
        (fast, fast_time, seen.saturating_duration_since(t))
    });
    println!(
        "shared objects: switch, fast path (Origins::set_bgp_policies): {fast_time:.2?}, new label seen by the program {in_dataplane:.2?} after the call began ({fast})"
    );
    let t = Instant::now();
    let full = origins.set_bgp(a.clone(), false).unwrap();
    let full_time = t.elapsed();
    println!("shared objects: switch back, full path (Origins::set_bgp, diff of the table): {full_time:.2?} ({full})");
    assert!(enc.diagnostics().verify().unwrap().is_empty(), "the dataplane is what the RIB says");
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!();
    println!("Preference switch of one policy ({date}, {routes} colored routes, {policies} policies, {moved} routes moved, release build)");
    println!("| model | map writes | time (library call) | ratio |");
    println!("|---|---|---|---|");
    println!("(fast path: the program saw the new lists {in_dataplane:.2?} after the call began)");
    println!("| per-route (main) | {} | {before_time:.2?} | 1 |", before.map_operations);
    println!(
        "| shared objects, fast path | {} | {fast_time:.2?} | {:.0}x faster, {:.0}x fewer writes |",
        fast.map_operations,
        before_time.as_secs_f64() / fast_time.as_secs_f64().max(1e-9),
        before.map_operations as f64 / (fast.map_operations.max(1)) as f64
    );
    println!(
        "| shared objects, full path | {} | {full_time:.2?} | {:.1}x |",
        full.map_operations,
        before_time.as_secs_f64() / full_time.as_secs_f64().max(1e-9)
    );
}

/// An Ethernet + IPv4 + UDP frame toward `dst` (checksum filled in).
fn udp_frame(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let src = Ipv4Addr::new(192, 0, 2, 10);
    let mut ip = vec![0x45, 0, 0, 28 + 18, 0, 1, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb, 0, 26, 0, 0]);
    f.extend_from_slice(&[0u8; 18]);
    f
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the BGP benchmark needs root (namespaces, BPF): run it as root");
        std::process::exit(1);
    }
    let env = |k: &str, d: u32| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (routes, policies) = (env("LHE_BENCH_ROUTES", 1_000_000), env("LHE_BENCH_POLICIES", 10_000));
    env_logger::init();
    if std::env::var_os("LHE_BENCH_AGENT_ONLY").is_some() {
        return agent_only(routes, policies);
    }

    let ctl = Netns::new("bc").expect("namespace");
    let host = Netns::new("bh").expect("namespace");
    ctl.ip(&["link", "add", "c0", "type", "veth", "peer", "name", "hc0", "netns", host.name()]).unwrap();
    ctl.ip(&["addr", "add", &format!("{CTL_ADDR}/30"), "dev", "c0"]).unwrap();
    ctl.ip(&["link", "set", "c0", "up"]).unwrap();
    host.ip(&["addr", "add", &format!("{HOST_BGP_ADDR}/30"), "dev", "hc0"]).unwrap();
    host.ip(&["link", "set", "hc0", "up"]).unwrap();
    let ctl_bgp = gobgpd(&ctl, CTL_ADDR, HOST_BGP_ADDR);
    let host_bgp = gobgpd(&host, HOST_BGP_ADDR, CTL_ADDR);
    let base_rss = rss_kib(std::process::id(), "VmRSS:");

    // The learner, on a loaded dataplane, in the host namespace (its threads start there).
    let counters = Arc::new(BgpCounters::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let c = Arc::clone(&counters);
    let learner = host
        .run(move || {
            std::thread::spawn(move || {
                let enc = Arc::new(Encapsulator::builder().load().expect("load the dataplane"));
                let origins = Arc::new(Origins::new(Arc::clone(&enc)));
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                rt.block_on(bgp::learn::run(BgpConfig::new(API), origins, c, stopped));
                enc
            })
        })
        .unwrap();

    // The session up first: what is timed is learning, not session setup.
    let t = Instant::now();
    while !counters.peers.lock().unwrap().values().any(|up| *up) {
        assert!(t.elapsed() < Duration::from_secs(60), "the BGP session did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let mut paths: Vec<gobgp::Path> = (0..policies).map(|i| policy(i + 1, 100, 16_000 + i % 100_000)).collect();
    paths.extend((0..routes).map(|i| colored_route_path(prefix(i), IpAddr::V4(ENDPOINT), &[1 + i % policies])));
    let built = t.elapsed();
    let t = Instant::now();
    inject(&ctl, paths);
    let last_update = Instant::now();
    let injected = t.elapsed();
    let installed = || counters.routes_installed.load(Ordering::Relaxed);
    let learned = || counters.paths_received.load(Ordering::Relaxed);
    let mut all_learned: Option<Instant> = None;
    while installed() < u64::from(routes) {
        assert!(last_update.elapsed() < Duration::from_secs(1800), "only {} routes after 30 min", installed());
        if all_learned.is_none() && learned() >= u64::from(routes + policies) {
            all_learned = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = Instant::now();
    let programmed = done - last_update;
    // The last UPDATE as the agent saw it: the moment its event reached the learner.
    let after_last_event = all_learned.map_or(Duration::ZERO, |t| done - t);
    let peak_agent = rss_kib(std::process::id(), "VmHWM:");
    let agent_rss = rss_kib(std::process::id(), "VmRSS:");
    let (ctl_rss, host_rss) = (rss_kib(ctl_bgp.0.id(), "VmRSS:"), rss_kib(host_bgp.0.id(), "VmRSS:"));
    // Quiet first (the load's last batches applied), so the next apply is the change's.
    let mut applies_before = counters.applies.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = counters.applies.load(Ordering::Relaxed);
        if now == applies_before {
            break;
        }
        applies_before = now;
    }

    // One change at full scale: policy 1 gets a better candidate path.
    let t = Instant::now();
    inject(
        &ctl,
        vec![{
            let mut p = policy(1, 200, 15_000);
            if let Some(nlri) = p.nlri.as_mut() {
                // distinguisher 2: a second candidate path of (1, endpoint)
                let mut n: gobgp::SrPolicyNlri = prost::Message::decode(nlri.value.as_slice()).unwrap();
                n.distinguisher = 2;
                nlri.value = prost::Message::encode_to_vec(&n);
            }
            p
        }],
    );
    while counters.applies.load(Ordering::Relaxed) == applies_before
        || counters.candidate_paths.load(Ordering::Relaxed) <= u64::from(policies)
    {
        assert!(t.elapsed() < Duration::from_secs(120), "the change was not applied");
        std::thread::sleep(Duration::from_millis(5));
    }
    let one_change = t.elapsed();
    let last_apply = Duration::from_micros(counters.last_apply_micros.load(Ordering::Relaxed));
    let last_compute = Duration::from_micros(counters.last_compute_micros.load(Ordering::Relaxed));

    let _ = stop.send(true);
    drop(learner);
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("BGP at scale ({date}, gobgpd 3.10.0, release build)");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| SR policies / colored routes | {policies} / {routes} |");
    println!("| paths built / streamed into the controller's gobgpd (AddPathStream) | {built:.2?} / {injected:.2?} |");
    println!("| last path handed to the controller's gobgpd -> every route programmed | {programmed:.2?} |");
    println!(
        "| last UPDATE reached the agent (from the host's gobgpd) -> every route programmed | {after_last_event:.2?} |"
    );
    println!("| applies during the load | {applies_before} |");
    println!(
        "| one preference change handed to the controller's gobgpd -> applied | {one_change:.2?} (of which steering {last_compute:.2?}, apply {last_apply:.2?}) |"
    );
    println!("| gobgpd RSS, controller / host | {} / {} |", mib(ctl_rss), mib(host_rss));
    println!(
        "| this process (learner + RIB), RSS / peak / before | {} / {} / {} |",
        mib(agent_rss),
        mib(peak_agent),
        mib(base_rss)
    );
}
