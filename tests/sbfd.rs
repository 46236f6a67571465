//! Segment-list liveness with S-BFD, on the wire. The host namespace runs
//! the encapsulator and the S-BFD engine; the "router" namespace pops the
//! lists' labels with this crate's own Decapsulator (TC ingress, after the
//! capture tap, so the capture sees every labelled frame as it arrived) and
//! hands the inner packets to its stack, where a test-only S-BFD reflector
//! (RFC 7880 behaviour: swap the discriminators, answer Up) answers the
//! probes. Cutting a list = removing its label from the router's pop set:
//! its probes and its traffic die together, as on a real path.
//!
//! The policy: color 100 to 192.0.2.1, candidate path 2 (preference 200)
//! with lists 1001 and 1002, candidate path 1 (preference 100) with list
//! 1003. Selection and steering run through the bgp module's types
//! (`select_live`, `steer`, `Origins::set_bgp`), as the agent runs them
//! after a GoBGP event, without a gobgpd (slow to start).

mod common;

use lnetd_host_encap::Table;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::privileged;
use lnetd_host_encap::agent::proto::v1 as pb;
use lnetd_host_encap::agent::{AgentConfig, Extras, LocalSocket};
use lnetd_host_encap::bgp::accept::Addressing;
use lnetd_host_encap::bgp::sbfd::packet::{Control, SBFD_PORT};
use lnetd_host_encap::bgp::sbfd::status::{lists_to_probe, policy_lists};
use lnetd_host_encap::bgp::sbfd::{Engine, SbfdConfig};
use lnetd_host_encap::bgp::select::select_live;
use lnetd_host_encap::bgp::steer::{steer, ColoredRoute};
use lnetd_host_encap::bgp::BgpCounters;
use lnetd_host_encap::bgp::{BgpTable, Candidate, CandidateList, Origins, PolicyInfo, PolicyKey};
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{
    decap::Decapsulator, encap::OtherLabels, labels::decode_stack, labels::NoLivePath, Encapsulator, IpNetwork, Label,
    XdpMode,
};

const ENDPOINT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PREFIX: &str = "198.51.100.0/24";
const FLOWS: u16 = 16;
const INTERVAL_MS: u64 = 10;
const MULTIPLIER: u8 = 3;
const HOLD_DOWN: Duration = Duration::from_millis(400);
/// Scheduling slack allowed on top of a deadline (2 shared cores, other
/// builds running): the measured figures are printed.
const SLACK: Duration = Duration::from_millis(150);

fn key() -> PolicyKey {
    PolicyKey { color: 100, endpoint: IpAddr::V4(ENDPOINT) }
}

fn candidate(distinguisher: u32, preference: u32, lists: &[u32]) -> Candidate {
    Candidate {
        preference,
        lists: lists.iter().map(|l| CandidateList { weight: 1, labels: vec![*l], unsupported: 0 }).collect(),
        addressing: Addressing { no_advertise: true, ..Addressing::default() },
        ..Candidate::new(distinguisher, key())
    }
}

/// What BGP would install now, with the engine's word on the lists: the
/// agent's computation (select, steer) without its incremental caching.
fn bgp_table(candidates: &[Candidate], engine: &Engine) -> BgpTable {
    bgp_table_of(candidates, engine, &[PREFIX.parse().unwrap()], NoLivePath::Unlabelled)
}

/// As [`bgp_table`], with `prefixes` colored 100 toward the endpoint, and
/// an invalid policy's packets doing what `no_live_path` says.
fn bgp_table_of(
    candidates: &[Candidate],
    engine: &Engine,
    prefixes: &[IpNetwork],
    no_live_path: NoLivePath,
) -> BgpTable {
    let selected = select_live(candidates, &|endpoint, labels| !engine.usable(endpoint, labels));
    let route = ColoredRoute { next_hop: IpAddr::V4(ENDPOINT), colors: vec![100] };
    let (routes, _) = steer(prefixes.iter().map(|p| (p, &route)), &selected);
    let policies = selected
        .iter()
        .filter_map(|(k, s)| {
            let info = PolicyInfo {
                color: k.color,
                endpoint: k.endpoint,
                preference: s.preference,
                distinguisher: s.distinguisher?,
                binding_sid: None,
                name: None,
                enlp: None,
            };
            Some((*k, (s.policy.clone()?, info)))
        })
        .collect();
    let invalid = selected.iter().filter(|(_, s)| s.policy.is_none()).map(|(k, _)| *k).collect();
    BgpTable { routes, policies, invalid, no_live_path }
}

/// One labelled data frame as it reached the router.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    flow: u16,
    label: u32,
}

/// Reads the router's capture: data frames (UDP to port 443) with their
/// top label, stamped as read.
fn capture_thread(capture: Capture, stop: Arc<AtomicBool>, seen: Arc<Mutex<Vec<Seen>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(f)) = capture.next(Duration::from_millis(50)) else { continue };
            let at = Instant::now();
            if f.outgoing || f.bytes.get(12..14) != Some(&[0x88, 0x47]) {
                continue;
            }
            let Ok((stack, ip)) = decode_stack(&f.bytes[14..]) else { continue };
            // IPv4 without options, UDP: ports at 20..24.
            if ip.len() < 28 || ip[9] != 17 || u16::from_be_bytes([ip[22], ip[23]]) != 443 {
                continue;
            }
            let flow = u16::from_be_bytes([ip[20], ip[21]]);
            seen.lock().unwrap().push(Seen { at, flow, label: stack[0].label });
        }
    })
}

/// The label each flow used last before `t`.
fn labels_before(seen: &[Seen], t: Instant) -> BTreeMap<u16, u32> {
    seen.iter().filter(|s| s.at < t).map(|s| (s.flow, s.label)).collect()
}

/// The labels each flow used in [from, to).
fn labels_between(seen: &[Seen], from: Instant, to: Instant) -> BTreeMap<u16, BTreeSet<u32>> {
    let mut out: BTreeMap<u16, BTreeSet<u32>> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.at >= from && s.at < to) {
        out.entry(s.flow).or_default().insert(s.label);
    }
    out
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

const BIN: &str = env!("CARGO_BIN_EXE_lnetd-host-encap");

/// An agent serving the lab host's dataplane on its local socket, with the
/// BGP origin and the S-BFD state, as `agent --bgp-api ... --sbfd-*` serves
/// them; stopped (and its socket removed) when dropped, even on failure.
struct Agent {
    path: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(lab: &VethLab, enc: &Arc<Encapsulator>, origins: &Arc<Origins>, counters: &Arc<BgpCounters>) -> Agent {
        let path = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF).unwrap()).unwrap();
        let config = AgentConfig {
            local: Some(LocalSocket { path: path.clone(), write_group: None, read_access: Default::default() }),
            ..AgentConfig::default()
        };
        let extras =
            Extras { origins: Some(Arc::clone(origins)), liveness: Some(Arc::clone(counters)), ..Extras::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let enc = Arc::clone(enc);
        // A thread started from the namespace's thread stays in the namespace.
        let thread = lab
            .host
            .run(move || {
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Runtime::new().unwrap();
                    let shutdown = async {
                        let _ = stopped.await;
                    };
                    rt.block_on(lnetd_host_encap::agent::serve_with(enc, config, extras, shutdown)).unwrap();
                })
            })
            .unwrap();
        wait_for("the agent's socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&path).is_ok()
        });
        Agent { path, stop: Some(stop), thread: Some(thread) }
    }

    /// `GetLiveness` through a real gRPC client on the local socket.
    fn liveness(&self, color: u32, endpoint: &str) -> Result<pb::LivenessReply, tonic::Status> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut client = lnetd_host_encap::agent::connect_local(&self.path).await.unwrap();
            client
                .get_liveness(pb::LivenessRequest { color, endpoint: endpoint.to_owned() })
                .await
                .map(tonic::Response::into_inner)
        })
    }

    /// Each list's phase, by its label, as GetLiveness says.
    fn phases(&self) -> BTreeMap<String, (String, u64, u64)> {
        let reply = self.liveness(0, "").unwrap();
        reply.lists.into_iter().map(|l| (l.list, (l.phase, l.down_transitions, l.up_transitions))).collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The command in the lab's host namespace (it finds the agent's socket there).
fn command(lab: &VethLab, args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.host.name()))
        .arg(BIN)
        .args(["-i", VethLab::HOST_IF])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The S-BFD engine on the lab's host, at the lab's timers, and what its
/// list changes wake.
fn start_engine(lab: &VethLab) -> (Arc<Engine>, mpsc::Receiver<()>) {
    let (woke, wakes) = mpsc::channel::<()>();
    let config =
        SbfdConfig::new(VethLab::HOST_IF).with_timers(INTERVAL_MS, MULTIPLIER, HOLD_DOWN.as_millis() as u64).unwrap();
    let engine = lab
        .host
        .run(move || {
            Engine::start(config, move || {
                let _ = woke.send(());
            })
        })
        .unwrap()
        .expect("engine");
    (Arc::new(engine), wakes)
}

/// The router's S-BFD reflector (RFC 7880 section 7.3, as a router runs
/// it) on the endpoint's address, until `stop`.
fn reflector(lab: &VethLab, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let reflector = lab.router.run(|| UdpSocket::bind(SocketAddr::new(ENDPOINT.into(), SBFD_PORT)).unwrap()).unwrap();
    reflector.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = reflector.recv_from(&mut buf) else { continue };
            let Ok(probe) = Control::decode(&buf[..n]) else { continue };
            if probe.your_discriminator == u32::from(ENDPOINT) {
                let _ = reflector.send_to(&probe.reflected(1_000).encode(), from);
            }
        }
    })
}

/// FLOWS UDP flows from the router to PREFIX, one datagram per flow per
/// ms, until `stop`.
fn traffic(lab: &VethLab, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let sockets: Vec<UdpSocket> =
        lab.router.run(|| (0..FLOWS).map(|i| UdpSocket::bind(("0.0.0.0", 40_000 + i)).unwrap()).collect()).unwrap();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            for (i, s) in sockets.iter().enumerate() {
                let dst = SocketAddr::new(Ipv4Addr::new(198, 51, 100, 1 + i as u8).into(), 443);
                let _ = s.send_to(&n.to_be_bytes(), dst);
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

fn phase(engine: &Engine, label: u32) -> &'static str {
    let labels = [Label::new(label).unwrap()];
    engine.phases().into_iter().find(|(k, _)| k.stack.labels() == labels).map(|(_, p)| p.as_str()).unwrap_or("absent")
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn dead_lists_move_their_flows_and_come_back_after_the_hold_down() {
    privileged("dead_lists_move_their_flows_and_come_back_after_the_hold_down");
    let lab = VethLab::new().expect("lab");
    let r = VethLab::ROUTER_IF;
    // The endpoint lives on the router; popped data packets are not routed
    // back to the host (they would loop through the encapsulator).
    lab.router.ip(&["addr", "add", &format!("{ENDPOINT}/32"), "dev", "lo"]).unwrap();
    lab.router.ip(&["rule", "add", "iif", r, "to", PREFIX, "blackhole"]).unwrap();
    let _pass = lab.router.run(|| PassProgram::attach(r)).unwrap().unwrap();
    let decap = lab
        .router
        .run(|| {
            Decapsulator::builder()
                .pop_labels([1001, 1002, 1003].map(|l| Label::new(l).unwrap()))
                .other_labels(OtherLabels::Drop)
                .attach_ingress(r)
        })
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    let reflector_thread = reflector(&lab, &stop);

    // The host: encapsulator, the BGP origin, the engine and the loop that
    // recomputes the policy when the engine says a list changed.
    let enc =
        Arc::new(lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().unwrap());
    let origins = Arc::new(Origins::new(Arc::clone(&enc)));
    let candidates = vec![candidate(2, 200, &[1001, 1002]), candidate(1, 100, &[1003])];
    let (engine, wakes) = start_engine(&lab);
    engine.set_lists(lists_to_probe(&candidates));
    origins.set_bgp(bgp_table(&candidates, &engine), false).unwrap();
    // What the learner records for the metrics and the agent.
    let counters = Arc::new(BgpCounters::default());
    {
        let mut sbfd = counters.sbfd.lock().unwrap();
        sbfd.engine = Some(Arc::clone(&engine));
        sbfd.lists = policy_lists(&candidates);
    }
    let agent = Agent::start(&lab, &enc, &origins, &counters);
    let applier = {
        let (engine, origins, candidates, stop) =
            (Arc::clone(&engine), Arc::clone(&origins), candidates.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if wakes.recv_timeout(Duration::from_millis(50)).is_ok() {
                    origins.set_bgp(bgp_table(&candidates, &engine), false).unwrap();
                }
            }
        })
    };

    // Traffic: FLOWS UDP flows from the router, one datagram per flow per ms.
    let capture = lab.router.run(|| Capture::open(r).and_then(|c| c.with_buffer(64 << 20))).unwrap().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let capturer = capture_thread(capture, Arc::clone(&stop), Arc::clone(&seen));
    let sender = traffic(&lab, &stop);

    // Steady state: every list answered, both lists of the active path in use.
    wait_for("all lists up", Duration::from_secs(3), || [1001, 1002, 1003].iter().all(|l| phase(&engine, *l) == "up"));
    std::thread::sleep(Duration::from_millis(300));
    let before = labels_before(&seen.lock().unwrap(), Instant::now());
    assert_eq!(before.len(), FLOWS as usize, "every flow came back labelled: {before:?}");
    let on = |m: &BTreeMap<u16, u32>, l: u32| m.iter().filter(|(_, v)| **v == l).map(|(f, _)| *f).collect::<Vec<u16>>();
    let (on_a, on_b) = (on(&before, 1001), on(&before, 1002));
    assert!(!on_a.is_empty() && !on_b.is_empty() && on_a.len() + on_b.len() == FLOWS as usize, "{before:?}");

    // The state per list through the agent: its API, `get`, `status`, metrics.
    let reply = agent.liveness(0, "").unwrap();
    assert!(reply.enabled, "{reply:?}");
    assert_eq!((reply.interval_ms, reply.multiplier, reply.hold_down_ms), (10, 3, HOLD_DOWN.as_millis() as u32));
    assert!(reply.probes_sent > 0 && reply.answers > 0, "{reply:?}");
    let all_up = |p: &BTreeMap<String, (String, u64, u64)>, want: &[(&str, &str)]| {
        want.iter().all(|(l, ph)| p.get(*l).is_some_and(|(got, _, _)| got == ph))
    };
    assert!(all_up(&agent.phases(), &[("1001", "up"), ("1002", "up"), ("1003", "up")]), "{:?}", agent.phases());
    assert_eq!(agent.liveness(100, "192.0.2.1").unwrap().lists.len(), 3);
    assert!(agent.liveness(999, "").unwrap().lists.is_empty(), "another color has no list");
    let e = agent.liveness(0, "not-an-address").unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let get = command(&lab, &["get", "198.51.100.1"]);
    assert!(get.contains("origin: policy color 100 endpoint 192.0.2.1"), "{get}");
    assert!(get.contains("liveness (S-BFD every 10 ms x 3, hold-down 400 ms):"), "{get}");
    for l in ["1001: up for", "1002: up for", "1003: up for"] {
        assert!(get.contains(l), "{l} in\n{get}");
    }
    let status = command(&lab, &["status"]);
    assert!(status.contains("sbfd:   every 10 ms x 3, hold-down 400 ms: 3 lists: 3 up"), "{status}");

    // Cut list 1001.
    let cut = Instant::now();
    decap.remove_pop_label(Label::new(1001).unwrap()).unwrap();
    let detected = wait_for("1001 down", Duration::from_secs(2), || phase(&engine, 1001) == "down");
    let detection = Duration::from_millis(INTERVAL_MS * u64::from(MULTIPLIER));
    println!("cut: list 1001 down {:.1} ms after the cut (detection time {detection:?})", detected.as_secs_f64() * 1e3);
    assert!(detected <= detection + SLACK, "detected after {detected:?}");
    let p = agent.phases();
    assert_eq!(p.get("1001"), Some(&("down".to_owned(), 1, 0)), "{p:?}");
    let get = command(&lab, &["get", "198.51.100.1"]);
    assert!(get.contains("1001: down for") && get.contains("(went down once)"), "{get}");
    let status = command(&lab, &["status"]);
    assert!(status.contains("3 lists: 2 up, 0 starting, 1 down"), "{status}");
    assert!(status.contains("color 100 endpoint 192.0.2.1: 1001: down for"), "{status}");
    // The same in JSON: `status` has an `sbfd` key, `get` a `liveness` key
    // of its own, its `origin` only where the route came from.
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&command(&lab, &all)).unwrap()
    };
    let status = json(&["status"]);
    let sbfd = &status["sbfd"];
    assert_eq!(sbfd["running"], true, "{status}");
    assert_eq!(sbfd["not_running"], serde_json::Value::Null, "{status}");
    assert_eq!(sbfd["interval_ms"], 10, "{status}");
    let phases: BTreeMap<String, String> = sbfd["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["list"].as_str().unwrap().to_owned(), l["phase"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(phases.get("1001").map(String::as_str), Some("down"), "{status}");
    assert_eq!(phases.len(), 3, "{status}");
    let get = json(&["get", "198.51.100.1"]);
    assert_eq!(get["origin"], "policy color 100 endpoint 192.0.2.1 preference 200, from BGP", "{get}");
    let lists = get["liveness"]["lists"].as_array().unwrap();
    assert_eq!(lists.len(), 3, "{get}");
    assert!(lists.iter().any(|l| l["list"] == "1001" && l["phase"] == "down" && l["up"] == false), "{get}");
    let metrics = counters.prometheus("h0");
    let line = |list: &str, to: &str, n: u64| {
        format!(
            "lnetd_host_encap_sbfd_list_transitions_total{{interface=\"h0\",color=\"100\",endpoint=\"192.0.2.1\",list=\"{list}\",to=\"{to}\"}} {n}\n"
        )
    };
    assert!(metrics.contains(&line("1001", "down", 1)) && metrics.contains(&line("1002", "down", 0)), "{metrics}");
    assert!(metrics.contains("list=\"1001\",phase=\"down\"} 0\n"), "{metrics}");
    std::thread::sleep(Duration::from_millis(300));
    let after_cut = Instant::now();
    {
        let seen = seen.lock().unwrap();
        let moved = labels_between(&seen, cut + detected + Duration::from_millis(100), after_cut);
        for f in &on_b {
            let all_after: BTreeSet<u32> =
                seen.iter().filter(|s| s.flow == *f && s.at >= cut).map(|s| s.label).collect();
            assert_eq!(all_after, BTreeSet::from([1002]), "flow {f} of the live list moved");
        }
        let mut failovers = Vec::new();
        for f in &on_a {
            assert_eq!(moved.get(f), Some(&BTreeSet::from([1002])), "flow {f} of the dead list is on the live one");
            let last_dead = seen.iter().filter(|s| s.flow == *f && s.label == 1001).map(|s| s.at).max().unwrap();
            let first_live = seen
                .iter()
                .filter(|s| s.flow == *f && s.label == 1002 && s.at > last_dead)
                .map(|s| s.at)
                .min()
                .unwrap();
            failovers.push(first_live.duration_since(last_dead));
            // On the wire, the flow's loss: from the cut to its first packet on the live list.
            failovers.push(first_live.duration_since(cut));
        }
        let on_wire: Vec<f64> = failovers.chunks(2).map(|c| c[1].as_secs_f64() * 1e3).collect();
        let gap: Vec<f64> = failovers.chunks(2).map(|c| c[0].as_secs_f64() * 1e3).collect();
        println!(
            "failover of the {} flows of 1001 (10 ms x 3): cut -> first packet on 1002 max {:.1} ms, last on 1001 -> first on 1002 max {:.1} ms (goal 40 ms)",
            on_a.len(),
            on_wire.iter().copied().fold(0.0, f64::max),
            gap.iter().copied().fold(0.0, f64::max),
        );
    }

    // Restore: used again only after the hold-down, each flow on its own list again.
    let restored = Instant::now();
    decap.add_pop_label(Label::new(1001).unwrap()).unwrap();
    wait_for("1001 returning", Duration::from_secs(2), || phase(&engine, 1001) == "returning");
    let returning = agent.liveness(100, "192.0.2.1").unwrap();
    let l = returning.lists.iter().find(|l| l.list == "1001").unwrap();
    assert!(!l.up && l.hold_down_left_ms > 0 && l.hold_down_left_ms <= HOLD_DOWN.as_millis() as u64, "{l:?}");
    wait_for("1001 up again", HOLD_DOWN + Duration::from_secs(2), || phase(&engine, 1001) == "up");
    let back = restored.elapsed();
    println!(
        "restore: list 1001 in use again {:.1} ms after the restore (hold-down {HOLD_DOWN:?})",
        back.as_secs_f64() * 1e3
    );
    assert!(back >= HOLD_DOWN, "used again before the hold-down: {back:?}");
    wait_for("the agent sees 1001 back", Duration::from_secs(1), || {
        agent.phases().get("1001").is_some_and(|(p, _, up)| p == "up" && *up >= 1)
    });
    assert!(counters.prometheus("h0").contains(&line("1001", "up", 1)));
    std::thread::sleep(Duration::from_millis(300));
    {
        let seen = seen.lock().unwrap();
        let early: Vec<&Seen> =
            seen.iter().filter(|s| s.label == 1001 && s.at >= restored && s.at < restored + HOLD_DOWN).collect();
        assert!(early.is_empty(), "1001 carried flows during its hold-down: {} frames", early.len());
        let now = labels_before(&seen, Instant::now());
        assert_eq!(now, before, "after the hold-down every flow is back on its own list");
    }

    // Both lists of the active path down: the next candidate path (1003) takes over.
    decap.remove_pop_label(Label::new(1001).unwrap()).unwrap();
    decap.remove_pop_label(Label::new(1002).unwrap()).unwrap();
    let t = Instant::now();
    wait_for("backup path in use", Duration::from_secs(2), || {
        let seen = seen.lock().unwrap();
        let last = labels_before(&seen, Instant::now());
        last.len() == FLOWS as usize && last.values().all(|l| *l == 1003) && seen.last().is_some_and(|s| s.at > t)
    });
    let net: IpNetwork = PREFIX.parse().unwrap();
    assert!(enc.route_counters(Table::Main, net).unwrap().is_some(), "the route is installed on the backup path");

    // Every path down: the route stays on its policy's object, now invalid
    // (one write), and its packets go unlabelled; a covering route cannot take them.
    decap.remove_pop_label(Label::new(1003).unwrap()).unwrap();
    wait_for("policy invalid", Duration::from_secs(2), || {
        enc.routes(Table::Main).unwrap().iter().any(|r| r.prefix == net && r.policy.to_string() == "invalid")
    });
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let labelled_after: usize = seen.lock().unwrap().iter().filter(|s| s.at > t).count();
    assert_eq!(labelled_after, 0, "frames still labelled with no live path");
    // The policy is still named, and its lists said, exactly now that every
    // path is down (`get` ended with `origin: bgp`, `routes` had no note).
    wait_for("every list down", Duration::from_secs(2), || {
        [1001, 1002, 1003].iter().all(|l| phase(&engine, *l) == "down")
    });
    let get = command(&lab, &["get", "198.51.100.1"]);
    assert!(get.contains("origin: policy color 100 endpoint 192.0.2.1"), "{get}");
    for l in ["1001: down for", "1002: down for", "1003: down for"] {
        assert!(get.contains(l), "{l} in\n{get}");
    }
    let routes = command(&lab, &["routes"]);
    let line = routes.lines().find(|l| l.starts_with(PREFIX)).unwrap_or_default();
    assert!(line.contains("invalid") && line.contains("(policy color 100 endpoint 192.0.2.1"), "{routes}");
    let stats = engine.stats();
    let counts: HashMap<&str, u64> = [
        ("sent", stats.sent),
        ("sent_live", stats.sent_live),
        ("answers", stats.answers),
        ("answers_filtered", stats.answers_filtered),
    ]
    .into();
    println!("engine: {counts:?}");
    // The router's end runs XDP, so its veth takes redirected frames: the
    // probes went as live frames (after at most the first second's socket
    // sends), unless the kernel refuses those: then all through the socket.
    match common::live_frames_refused() {
        None => assert!(stats.sent_live * 2 > stats.sent, "most probes as XDP live frames: {counts:?}"),
        Some(why) => {
            println!("this kernel refuses live frames ({why}): the probes went through the socket");
            assert_eq!((stats.sent_live, stats.send_errors), (0, 0), "none live, none lost: {counts:?}");
        }
    }
    // The answers were received on the socket: the answer filter is off by
    // default (tests/sbfd_live_frames.rs runs the lab's answers through it).
    assert!(stats.answers > 0 && stats.answers_filtered == 0, "answers received, none filtered: {counts:?}");

    drop(agent);
    stop.store(true, Ordering::Relaxed);
    for t in [sender, capturer, applier, reflector_thread] {
        t.join().unwrap();
    }
}

/// The command in `lab`'s host namespace, whatever its outcome.
/// Starts `lnetd-host-encap -i HOST_IF ARGS` in the host namespace (stdout
/// discarded) and waits until it answers on `socket`.
fn spawn_agent(lab: &VethLab, socket: &std::path::Path, args: &[&str]) -> common::ChildGuard {
    let child = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.host.name()))
        .arg(BIN)
        .args(["-i", VethLab::HOST_IF])
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut agent = common::ChildGuard(child);
    wait_for("the agent's socket", Duration::from_secs(20), || {
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
    agent
}

fn command_output(lab: &VethLab, args: &[&str]) -> std::process::Output {
    std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.host.name()))
        .arg(BIN)
        .args(["-i", VethLab::HOST_IF])
        .args(args)
        .output()
        .unwrap()
}

/// Removes what the agent process leaves (pins, state, records, socket) when dropped.
struct Leftovers<'a>(&'a VethLab, std::path::PathBuf);

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        let _ = command_output(self.0, &["detach", "--force"]);
        let _ = std::fs::remove_file(&self.1);
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_sbfd_section_of_the_config_file_runs_liveness_flags_win_and_a_reload_names_it() {
    privileged("the_sbfd_section_of_the_config_file_runs_liveness_flags_win_and_a_reload_names_it");
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let dir = std::env::temp_dir().join(format!("lhe-sbfd-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("host.toml");
    let file = |hold_down_ms: u32| {
        format!(
            "interface = \"{}\"\n[bgp]\n# nothing listens there: the learner retries, S-BFD runs meanwhile\n\
             api = \"127.0.0.1:9\"\n[sbfd]\ninterval_ms = 20\nmultiplier = 4\nhold_down_ms = {hold_down_ms}\n\
             reflector = [\"192.0.2.1=7\"]\nrouter_mac = \"02:00:00:00:00:01\"\nno_live_path = \"drop\"\n",
            VethLab::HOST_IF
        )
    };
    std::fs::write(&path, file(800)).unwrap();
    let config = path.to_str().unwrap().to_owned();

    // Refused before anything is attached: [sbfd] without a BGP API, and an
    // S-BFD flag without an interval anywhere.
    let no_api = dir.join("no-api.toml");
    std::fs::write(&no_api, "[sbfd]\ninterval_ms = 10\n").unwrap();
    let out = command_output(&lab, &["agent", "--config", no_api.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--bgp-api"), "{stderr}");
    let out = command_output(&lab, &["agent", "--bgp-api", "127.0.0.1:9", "--sbfd-multiplier", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("need --sbfd-interval-ms"), "{stderr}");
    // What a policy with no live path does: needs the BGP API, and is one of two words.
    let out = command_output(&lab, &["agent", "--sbfd-no-live-path", "drop"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--sbfd-no-live-path need --bgp-api"), "{stderr}");
    let out = command_output(&lab, &["agent", "--bgp-api", "127.0.0.1:9", "--sbfd-no-live-path", "dropped"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`unlabelled` or `drop`"), "{stderr}");
    let bad = dir.join("bad-no-live-path.toml");
    std::fs::write(&bad, "[bgp]\napi = \"127.0.0.1:9\"\n[sbfd]\nno_live_path = \"dropped\"\n").unwrap();
    let out = command_output(&lab, &["agent", "--config", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("sbfd.no_live_path"), "{stderr}");

    // The file's [sbfd] with one flag over it.
    let socket = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF).unwrap()).unwrap();
    let _leftovers = Leftovers(&lab, socket.clone());
    let agent =
        spawn_agent(&lab, &socket, &["agent", "--mode", "native", "--config", &config, "--sbfd-multiplier", "5"]);
    let client = Agent { path: socket.clone(), stop: None, thread: None };
    wait_for("S-BFD running", Duration::from_secs(10), || client.liveness(0, "").is_ok_and(|r| r.enabled));
    let reply = client.liveness(0, "").unwrap();
    assert_eq!((reply.interval_ms, reply.multiplier, reply.hold_down_ms), (20, 5, 800), "{reply:?}");
    assert!(reply.lists.is_empty(), "no policy learned: {reply:?}");
    let status = command(&lab, &["status"]);
    assert!(status.contains("sbfd:   every 20 ms x 5, hold-down 800 ms: 0 lists"), "{status}");

    // A changed [sbfd] is not applied by a reload, and the reload says so.
    std::fs::write(&path, file(900)).unwrap();
    let reload = command(&lab, &["reload"]);
    assert!(reload.contains("not applied: [sbfd] changed"), "{reload}");
    assert_eq!(client.liveness(0, "").unwrap().hold_down_ms, 800, "still the timers it started with");
    drop(client);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data frame (UDP to port 443) that reached the router from the host,
/// labelled (its top label) or not.
type Arrival = (Instant, Option<u32>);

/// Reads the router's capture: every data frame from the host, labelled or
/// not (a frame the host let through unlabelled counts too).
fn arrivals_thread(
    capture: Capture,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Arrival>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(f)) = capture.next(Duration::from_millis(50)) else { continue };
            let at = Instant::now();
            let (label, ip) = match f.bytes.get(12..14) {
                _ if f.outgoing => continue,
                Some([0x88, 0x47]) => match decode_stack(&f.bytes[14..]) {
                    Ok((stack, ip)) => (Some(stack[0].label), ip),
                    Err(_) => continue,
                },
                Some([0x08, 0x00]) => (None, &f.bytes[14..]),
                _ => continue,
            };
            if ip.len() >= 28 && ip[9] == 17 && u16::from_be_bytes([ip[22], ip[23]]) == 443 {
                seen.lock().unwrap().push((at, label));
            }
        }
    })
}

/// `[sbfd] no_live_path = "drop"` on the wire. A policy steering 64 routes
/// (one carries traffic) with two candidate paths, each of one list: every
/// path down makes its object drop (one write, however many routes): no
/// frame of its routes leaves the host, labelled or not, and the program
/// counts them as dropped for want of a live path (never labelled, never
/// no route); a path coming back (after its hold-down) labels them again.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn with_no_live_path_drop_every_path_down_drops_in_one_write_and_a_path_back_labels_again() {
    privileged("with_no_live_path_drop_every_path_down_drops_in_one_write_and_a_path_back_labels_again");
    const ROUTES: usize = 64;
    let lab = VethLab::new().expect("lab");
    let r = VethLab::ROUTER_IF;
    lab.router.ip(&["addr", "add", &format!("{ENDPOINT}/32"), "dev", "lo"]).unwrap();
    lab.router.ip(&["rule", "add", "iif", r, "to", PREFIX, "blackhole"]).unwrap();
    let _pass = lab.router.run(|| PassProgram::attach(r)).unwrap().unwrap();
    let decap = lab
        .router
        .run(|| {
            Decapsulator::builder()
                .pop_labels([1001, 1003].map(|l| Label::new(l).unwrap()))
                .other_labels(OtherLabels::Drop)
                .attach_ingress(r)
        })
        .unwrap()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reflector_thread = reflector(&lab, &stop);

    let enc =
        Arc::new(lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().unwrap());
    let origins = Arc::new(Origins::new(Arc::clone(&enc)));
    let candidates = vec![candidate(2, 200, &[1001]), candidate(1, 100, &[1003])];
    let mut prefixes: Vec<IpNetwork> = vec![PREFIX.parse().unwrap()];
    prefixes.extend((1..ROUTES).map(|i| format!("10.77.{i}.0/24").parse::<IpNetwork>().unwrap()));
    let (engine, wakes) = start_engine(&lab);
    engine.set_lists(lists_to_probe(&candidates));
    origins.set_bgp(bgp_table_of(&candidates, &engine, &prefixes, NoLivePath::Drop), false).unwrap();
    // Each recomputation's report: (map writes, the policy invalid after it).
    let reports: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let applier = {
        let (engine, origins, stop, reports) =
            (Arc::clone(&engine), Arc::clone(&origins), Arc::clone(&stop), Arc::clone(&reports));
        let (candidates, prefixes) = (candidates.clone(), prefixes.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if wakes.recv_timeout(Duration::from_millis(50)).is_ok() {
                    let table = bgp_table_of(&candidates, &engine, &prefixes, NoLivePath::Drop);
                    let invalid = table.invalid.contains(&key());
                    let report = origins.set_bgp(table, false).unwrap();
                    reports.lock().unwrap().push((report.map_operations, invalid));
                }
            }
        })
    };
    let capture = lab.router.run(|| Capture::open(r).and_then(|c| c.with_buffer(64 << 20))).unwrap().unwrap();
    let seen: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let capturer = arrivals_thread(capture, Arc::clone(&stop), Arc::clone(&seen));
    let sender = traffic(&lab, &stop);
    let arrived_since = |t: Instant| -> Vec<Option<u32>> {
        seen.lock().unwrap().iter().filter(|(at, _)| *at >= t).map(|(_, l)| *l).collect()
    };

    // Steady state: the active path's list carries every flow.
    wait_for("both lists up", Duration::from_secs(3), || [1001, 1003].iter().all(|l| phase(&engine, *l) == "up"));
    let t = Instant::now();
    wait_for("traffic on 1001", Duration::from_secs(2), || arrived_since(t).len() > 100);
    assert!(arrived_since(t).iter().all(|l| *l == Some(1001)), "{:?}", arrived_since(t));

    // Every path down: the object drops, in one write for the 64 routes.
    decap.remove_pop_label(Label::new(1001).unwrap()).unwrap();
    decap.remove_pop_label(Label::new(1003).unwrap()).unwrap();
    let net: IpNetwork = PREFIX.parse().unwrap();
    wait_for("the policy drops", Duration::from_secs(2), || {
        enc.routes(Table::Main).unwrap().iter().any(|r| r.prefix == net && r.policy.to_string() == "invalid drop")
    });
    let on_object = enc.routes(Table::Main).unwrap().iter().filter(|r| r.policy.to_string() == "invalid drop").count();
    assert_eq!(on_object, ROUTES, "every steered route stays on the object, now dropping");
    // The applier records its report after the write the routes show: wait for it.
    wait_for("the switch's report", Duration::from_secs(2), || {
        reports.lock().unwrap().iter().any(|(_, invalid)| *invalid)
    });
    let switch = reports.lock().unwrap().iter().find(|(_, invalid)| *invalid).copied();
    let so_far = reports.lock().unwrap().clone();
    assert_eq!(switch, Some((1, true)), "going invalid is one write for {ROUTES} routes: {so_far:?}");
    // Frames in flight (captured before the write) are behind us after a few ms.
    std::thread::sleep(Duration::from_millis(20));
    let (t, before) = (Instant::now(), enc.stats().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let delta = enc.stats().unwrap().since(&before);
    let leaked = arrived_since(t);
    println!("every path down, 300 ms: {delta:?}; {} data frames reached the router", leaked.len());
    assert!(leaked.is_empty(), "no frame of the policy's routes leaves the host: {leaked:?}");
    assert!(delta.no_live_path_dropped.packets >= 100, "the drops are counted: {delta:?}");
    assert_eq!((delta.labelled.packets, delta.no_route.packets), (0, 0), "never labelled, never no route: {delta:?}");

    // A path back (the backup's list answers again): labelled after its hold-down.
    let writes_before = reports.lock().unwrap().len();
    let restored = Instant::now();
    decap.add_pop_label(Label::new(1003).unwrap()).unwrap();
    wait_for("labelled again", HOLD_DOWN + Duration::from_secs(2), || arrived_since(restored).contains(&Some(1003)));
    let back = restored.elapsed();
    println!(
        "a path back: labelled again {:.1} ms after the restore (hold-down {HOLD_DOWN:?})",
        back.as_secs_f64() * 1e3
    );
    assert!(back >= HOLD_DOWN, "labelled before the hold-down: {back:?}");
    wait_for("the path back's report", Duration::from_secs(2), || {
        reports.lock().unwrap()[writes_before..].iter().any(|(_, invalid)| !*invalid)
    });
    let valid_again = reports.lock().unwrap()[writes_before..].iter().find(|(_, invalid)| !*invalid).copied();
    // The object, and the counter slot of its list (new: zeroed), as tests/bgp_origins.rs sees it.
    assert!(valid_again.is_some_and(|(w, _)| w <= 2), "valid again in the object's writes: {valid_again:?}");
    std::thread::sleep(Duration::from_millis(20));
    let (t, before) = (Instant::now(), enc.stats().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let delta = enc.stats().unwrap().since(&before);
    let arrived = arrived_since(t);
    assert!(arrived.len() > 100 && arrived.iter().all(|l| *l == Some(1003)), "{arrived:?}");
    assert_eq!(delta.no_live_path_dropped.packets, 0, "{delta:?}");

    stop.store(true, Ordering::Relaxed);
    for t in [sender, capturer, applier, reflector_thread] {
        t.join().unwrap();
    }
}

/// `GET /metrics` from the agent's metrics listener in `lab`'s host namespace.
fn metrics_text(lab: &VethLab, addr: &str) -> String {
    common::http_get(&lab.host, addr, "/metrics")
}

/// At boot the router's MAC is often not yet in the neighbour table. The
/// agent keeps trying to start S-BFD (it used to give up at the first try
/// and run unchecked for its whole life), and while it is configured but
/// not running `status`, `GetLiveness` and the metrics say so and why.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn sbfd_waits_for_the_routers_mac_says_why_meanwhile_and_starts_once_it_is_known() {
    privileged("sbfd_waits_for_the_routers_mac_says_why_meanwhile_and_starts_once_it_is_known");
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let router = VethLab::ROUTER_V4.to_string();
    lab.host.ip(&["-4", "neigh", "del", &router, "dev", VethLab::HOST_IF]).unwrap();
    let socket = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF).unwrap()).unwrap();
    let _leftovers = Leftovers(&lab, socket.clone());
    const METRICS: &str = "127.0.0.1:19469";
    // Nothing listens there: the learner retries, S-BFD is independent of it.
    let agent = spawn_agent(
        &lab,
        &socket,
        &["agent", "--mode", "native", "--metrics", METRICS, "--bgp-api", "127.0.0.1:9", "--sbfd-interval-ms", "20"],
    );
    let client = Agent { path: socket.clone(), stop: None, thread: None };

    // Configured, not running, and saying why.
    let reply = client.liveness(0, "").unwrap();
    assert!(!reply.enabled, "{reply:?}");
    assert!(reply.not_running.contains("cannot tell the router's MAC"), "{reply:?}");
    assert_eq!((reply.interval_ms, reply.multiplier), (20, 3), "the configured timers: {reply:?}");
    let status = command(&lab, &["status"]);
    assert!(
        status
            .contains("sbfd:   NOT running (configured every 20 ms x 3, hold-down 5000 ms): S-BFD on h0: cannot tell"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&command(&lab, &["status", "--output", "json"])).unwrap();
    assert_eq!(json["sbfd"]["running"], false, "{json}");
    assert!(json["sbfd"]["not_running"].as_str().is_some_and(|w| w.contains("router's MAC")), "{json}");
    let metrics = metrics_text(&lab, METRICS);
    assert!(metrics.contains("lnetd_host_encap_sbfd_running{interface=\"h0\",reason=\"router_mac\"} 0"), "{metrics}");
    // Still not running a few attempts later: it keeps trying.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!client.liveness(0, "").unwrap().enabled);

    // The router's MAC appears (ARP at boot): S-BFD starts on its own.
    let mac = "02:00:00:00:00:01";
    lab.host
        .ip(&["-4", "neigh", "replace", &router, "lladdr", mac, "dev", VethLab::HOST_IF, "nud", "permanent"])
        .unwrap();
    let took = wait_for("S-BFD running", Duration::from_secs(5), || client.liveness(0, "").is_ok_and(|r| r.enabled));
    println!("S-BFD started {took:?} after the router's MAC appeared");
    let reply = client.liveness(0, "").unwrap();
    assert!(reply.not_running.is_empty(), "{reply:?}");
    let status = command(&lab, &["status"]);
    assert!(status.contains("sbfd:   every 20 ms x 3, hold-down 5000 ms: 0 lists"), "{status}");
    let metrics = metrics_text(&lab, METRICS);
    assert!(metrics.contains("lnetd_host_encap_sbfd_running{interface=\"h0\",reason=\"\"} 1"), "{metrics}");
    assert!(metrics.contains("lnetd_host_encap_sbfd_probes_sent_total{interface=\"h0\"}"), "{metrics}");
    drop(client);
    drop(agent);
}

/// A reload checks the whole file as a start would: a bad `[sbfd]` or
/// `[bgp]` value is refused with its key and value, the same words a start
/// gives, and nothing of the file is applied (its static routes neither).
/// Before, it said "[sbfd] changed, NOT applied (restart the agent)", and
/// the restart then failed and left no agent.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_reload_refuses_a_file_the_next_start_would_refuse_and_applies_none_of_it() {
    privileged("a_reload_refuses_a_file_the_next_start_would_refuse_and_applies_none_of_it");
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let dir = std::env::temp_dir().join(format!("lhe-sbfd-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("host.toml");
    let file = |sbfd: &str, bgp: &str, label: u32| {
        format!(
            "interface = \"{}\"\n[bgp]\napi = \"127.0.0.1:9\"\n{bgp}\n[sbfd]\ninterval_ms = 20\n\
             router_mac = \"02:00:00:00:00:01\"\n{sbfd}\n[[routes]]\nprefix = \"203.0.113.0/24\"\npolicy = \"{label}\"\n",
            VethLab::HOST_IF
        )
    };
    std::fs::write(&path, file("", "", 16001)).unwrap();
    let config = path.to_str().unwrap().to_owned();
    let socket = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF).unwrap()).unwrap();
    let _leftovers = Leftovers(&lab, socket.clone());
    let mut agent = spawn_agent(&lab, &socket, &["agent", "--mode", "generic", "--config", &config]);
    assert!(command(&lab, &["routes"]).contains("16001"));

    let bad = [
        ("multiplier = 0", "", "sbfd.multiplier = \"0\""),
        ("interval_ms = 0", "", "sbfd.interval_ms = \"0\""),
        ("reflector = [\"nonsense\"]", "", "sbfd.reflector = \"nonsense\""),
        ("", "session_down = \"bogus\"", "bgp.session_down = \"bogus\""),
    ];
    let mut refusals = Vec::new();
    for (sbfd, bgp, said) in bad {
        // `interval_ms = 0` replaces the good one: TOML refuses a key twice.
        let text = file(sbfd, bgp, 16002)
            .replace("interval_ms = 20\n", if sbfd.starts_with("interval_ms") { "" } else { "interval_ms = 20\n" });
        std::fs::write(&path, text).unwrap();
        let out = command_output(&lab, &["reload"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{sbfd} {bgp}: the reload was accepted: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains(said), "{said}: {stderr}");
        let routes = command(&lab, &["routes"]);
        assert!(routes.contains("16001") && !routes.contains("16002"), "nothing applied: {routes}");
        println!("reload refused: {}", stderr.trim());
        refusals.push((said, stderr));
    }
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent runs on");
    drop(agent);

    // A start gives the same words for the same file.
    for ((sbfd, bgp, said), (_, reloaded)) in bad.iter().zip(&refusals) {
        let text = file(sbfd, bgp, 16002)
            .replace("interval_ms = 20\n", if sbfd.starts_with("interval_ms") { "" } else { "interval_ms = 20\n" });
        std::fs::write(&path, text).unwrap();
        let out = command_output(&lab, &["agent", "--mode", "generic", "--config", &config]);
        let started = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}: the start was accepted");
        let line =
            |text: &str| text.lines().find(|l| l.contains(said)).map(|l| l[l.find(&config).unwrap_or(0)..].to_owned());
        assert_eq!(line(&started), line(reloaded), "start: {started}\nreload: {reloaded}");
        assert!(line(&started).is_some(), "{started}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad S-BFD flags stop the agent before it attaches anything (they were
/// refused only after the dataplane was attached and pinned, leaving an
/// XDP program with no agent), and the multiplier's range is said as the
/// one it is: 1..=255.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn bad_sbfd_flags_are_refused_before_anything_is_attached() {
    privileged("bad_sbfd_flags_are_refused_before_anything_is_attached");
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let socket = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF).unwrap()).unwrap();
    let _leftovers = Leftovers(&lab, socket);
    for (flags, said) in [
        (["--sbfd-interval-ms", "0", "--sbfd-multiplier", "3"], "0 is not in 1..=60000"),
        (["--sbfd-interval-ms", "60001", "--sbfd-multiplier", "3"], "60001 is not in 1..=60000"),
        (["--sbfd-interval-ms", "10", "--sbfd-multiplier", "0"], "0 is not in 1..=255"),
        (["--sbfd-interval-ms", "10", "--sbfd-multiplier", "256"], "256 is not in 1..=255"),
    ] {
        let mut args = vec!["agent", "--mode", "generic", "--bgp-api", "127.0.0.1:9"];
        args.extend(flags);
        let out = command_output(&lab, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(said), "{flags:?}: {stderr}");
        let attached = lab.host.run(|| lnetd_host_encap::testing::lab::attached_xdp_program(VethLab::HOST_IF)).unwrap();
        assert_eq!(attached.unwrap(), None, "{flags:?}: an XDP program was left attached");
        let status = command(&lab, &["status"]);
        assert!(status.contains("no dataplane of lnetd-host-encap is pinned"), "{flags:?}: {status}");
    }
}
