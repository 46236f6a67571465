//! SR policies and colored routes learned from BGP: a real GoBGP (Debian's
//! gobgpd) in a controller namespace originates them (injected through its
//! gRPC API), the host namespace's gobgpd peers with it over a veth, and the
//! agent follows the host gobgpd's API and programs the XDP dataplane on the
//! host's router-facing veth; packets from the router namespace come back
//! labelled as the policies say, captured and decoded.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{privileged, ChildGuard, PinGuard};
use lnetd_host_encap::agent::proto::v1 as pb;
use lnetd_host_encap::agent::proto::v1::encapsulator_client::EncapsulatorClient;
use lnetd_host_encap::bgp::accept::Addressing;
use lnetd_host_encap::bgp::enlp::Enlp;
use lnetd_host_encap::bgp::proto as gobgp;
use lnetd_host_encap::bgp::proto::gobgp_api_client::GobgpApiClient;
use lnetd_host_encap::bgp::wire::{candidate_path, colored_route_path};
use lnetd_host_encap::bgp::{Candidate, CandidateList, PolicyKey};
use lnetd_host_encap::testing::lab::{Capture, Netns, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{labels::decode_stack, IpNetwork};

const BIN: &str = env!("CARGO_BIN_EXE_lnetd-host-encap");
/// The controller's BGP address and the host's, on the veth between them.
const CTL_ADDR: &str = "10.201.0.1";
const HOST_BGP_ADDR: &str = "10.201.0.2";
/// GoBGP's gRPC API in each namespace (the agent's own API keeps 50051).
const CTL_API: &str = "127.0.0.1:50051";
const HOST_API: &str = "127.0.0.1:50052";
/// The policy endpoint: the colored routes' next hop.
const ENDPOINT: &str = "192.0.2.1";
const AGENT_METRICS: &str = "127.0.0.1:9469";

/// gobgpd must be there: scripts/deps.sh installs it. A missing daemon is a failure, never a skip.
fn require_gobgpd() {
    let ok = Command::new("gobgpd").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "gobgpd is not installed: run scripts/deps.sh (apt-get install gobgpd)");
}

fn nsenter(ns: &Netns, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", ns.name())).arg(program);
    c
}

/// A gobgpd in `ns`, peering with `neighbor` (iBGP, AS 65000) for IPv4/IPv6
/// unicast and SR Policy, its API on `api`. Killed and reaped when dropped;
/// its config file removed.
struct Gobgpd {
    child: ChildGuard,
    config: std::path::PathBuf,
}

impl Drop for Gobgpd {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn gobgpd(ns: &Netns, tag: &str, local: &str, neighbor: &str, api: &str) -> Gobgpd {
    gobgpd_with(ns, tag, local, &[(local, neighbor, false)], api)
}

/// A gobgpd with router ID `router_id` and one iBGP session per `(local
/// address, neighbor, route-reflector client)`.
fn gobgpd_with(ns: &Netns, tag: &str, router_id: &str, sessions: &[(&str, &str, bool)], api: &str) -> Gobgpd {
    let config = std::env::temp_dir().join(format!("lhe-gobgpd-{}-{}-{tag}.toml", std::process::id(), ns.name()));
    let families = ["ipv4-unicast", "ipv6-unicast", "ipv4-srpolicy", "ipv6-srpolicy"]
        .iter()
        .map(|f| {
            format!("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{f}\"\n")
        })
        .collect::<String>();
    let listen = sessions.iter().map(|(l, _, _)| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
    let mut text =
        format!("[global.config]\n  as = 65000\n  router-id = \"{router_id}\"\n  local-address-list = [{listen}]\n\n");
    for (local, neighbor, client) in sessions {
        text += &format!(
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{neighbor}\"\n    peer-as = 65000\n\
             \x20 [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    keepalive-interval = 3\n\
             \x20 [neighbors.transport.config]\n    local-address = \"{local}\"\n{families}"
        );
        if *client {
            text += &format!(
                "  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    \
                 route-reflector-cluster-id = \"{router_id}\"\n"
            );
        }
    }
    std::fs::write(&config, text).expect("gobgpd config");
    let child = nsenter(ns, "gobgpd")
        .args(["-f", config.to_str().unwrap(), "--api-hosts", api, "--pprof-disable", "-p", "-l", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gobgpd");
    let daemon = Gobgpd { child: ChildGuard(child), config };
    wait_for(Duration::from_secs(10), &format!("gobgpd's API on {api} in {tag}"), || {
        ns.run(|| TcpStream::connect(api).is_ok()).unwrap()
    });
    daemon
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `limit`.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs an async block on a fresh runtime on a thread inside `ns` (so its sockets are there).
fn in_ns<T: Send>(ns: &Netns, f: impl std::future::Future<Output = T> + Send) -> T {
    ns.run(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)).unwrap()
}

/// Injects (or withdraws) paths into the gobgpd whose API is `api` in `ns`.
fn gobgp_paths(ns: &Netns, api: &str, paths: Vec<gobgp::Path>, add: bool) {
    let url = format!("http://{api}");
    in_ns(ns, async move {
        let mut c = GobgpApiClient::connect(url).await.expect("gobgpd API");
        for path in paths {
            if add {
                c.add_path(gobgp::AddPathRequest { path: Some(path), ..Default::default() }).await.expect("AddPath");
            } else {
                let family = path.family;
                c.delete_path(gobgp::DeletePathRequest { family, path: Some(path), ..Default::default() })
                    .await
                    .expect("DeletePath");
            }
        }
    });
}

fn endpoint() -> IpAddr {
    ENDPOINT.parse().unwrap()
}

fn policy(distinguisher: u32, color: u32, preference: u32, bsid: u32, lists: &[(u32, &[u32])]) -> gobgp::Path {
    policy_to(endpoint(), distinguisher, color, preference, bsid, lists)
}

fn policy_to(
    endpoint: IpAddr,
    distinguisher: u32,
    color: u32,
    preference: u32,
    bsid: u32,
    lists: &[(u32, &[u32])],
) -> gobgp::Path {
    let c = Candidate {
        preference,
        binding_sid: Some(bsid),
        lists: lists.iter().map(|(w, l)| CandidateList { weight: *w, labels: l.to_vec(), unsupported: 0 }).collect(),
        // The controller is the host's direct peer: no route target, NO_ADVERTISE (RFC 9830 4.2.1).
        addressing: Addressing::peer(),
        ..Candidate::new(distinguisher, PolicyKey { color, endpoint })
    };
    candidate_path(&c, CTL_ADDR.parse().unwrap())
}

fn route(prefix: &str, colors: &[u32]) -> gobgp::Path {
    let prefix: IpNetwork = prefix.parse().unwrap();
    let nh: IpAddr = if prefix.is_ipv6() { "2001:db8::1".parse().unwrap() } else { endpoint() };
    colored_route_path(prefix, nh, colors)
}

/// The lab: router ns (traffic) -- veth -- host ns (gobgpd + agent, XDP on h0) -- veth -- controller ns (gobgpd).
struct Lab {
    veth: VethLab,
    capture: Capture,
    _peer: PassProgram,
    /// The controller's namespace (`None`: a second host, linked to another lab's controller).
    ctl: Option<Netns>,
}

impl Lab {
    fn ctl(&self) -> &Netns {
        self.ctl.as_ref().expect("this lab has the controller")
    }
}

/// Removes the agents' local socket for the lab's namespace (the namespace,
/// and so its directory, is the test's own).
struct OriginsGuard<'a>(&'a Netns);

impl Drop for OriginsGuard<'_> {
    fn drop(&mut self) {
        // An agent killed with SIGKILL leaves its local socket (and the
        // namespace's directory of sockets) behind.
        let socket = self.0.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF));
        if let Some(ns_dir) = socket.ok().and_then(Result::ok).as_deref().and_then(|f| f.parent()) {
            let _ = std::fs::remove_dir_all(ns_dir);
        }
    }
}

/// A veth between the controller's namespace (`c_if`, `c_addr`) and a host's (`h_if`, `h_addr`), /30s.
fn link(ctl: &Netns, host: &Netns, (c_if, c_addr): (&str, &str), (h_if, h_addr): (&str, &str)) {
    ctl.ip(&["link", "add", c_if, "type", "veth", "peer", "name", h_if, "netns", host.name()]).unwrap();
    ctl.ip(&["addr", "add", &format!("{c_addr}/30"), "dev", c_if]).unwrap();
    ctl.ip(&["link", "set", c_if, "up"]).unwrap();
    host.ip(&["addr", "add", &format!("{h_addr}/30"), "dev", h_if]).unwrap();
    host.ip(&["link", "set", h_if, "up"]).unwrap();
}

/// A host and its router, without a controller.
fn host_lab() -> Lab {
    let veth = VethLab::new().expect("lab");
    let peer = veth.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");
    let capture = veth.router.run(|| Capture::open(VethLab::ROUTER_IF)).unwrap().expect("capture");
    Lab { veth, capture, _peer: peer, ctl: None }
}

fn lab() -> Lab {
    let mut lab = host_lab();
    let ctl = Netns::new("c").expect("controller namespace");
    link(&ctl, &lab.veth.host, ("c0", CTL_ADDR), ("hc0", HOST_BGP_ADDR));
    lab.ctl = Some(ctl);
    lab
}

fn start_agent(lab: &Lab, session_down: &str) -> ChildGuard {
    start_agent_with(lab, session_down, None)
}

/// The lines an agent wrote on stderr so far (at its default level, warn);
/// each is printed too, as when its stderr is inherited.
#[derive(Clone, Default)]
struct AgentLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl AgentLog {
    fn lines_with(&self, text: &str) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|l| l.contains(text)).cloned().collect()
    }
}

fn start_agent_with(lab: &Lab, session_down: &str, log: Option<&AgentLog>) -> ChildGuard {
    let mut child = nsenter(&lab.veth.host, BIN)
        .args(["-i", VethLab::HOST_IF, "agent", "--mode", "native", "--metrics", AGENT_METRICS, "--insecure-local-tcp"])
        .args(["--bgp-api", HOST_API, "--bgp-session-down", session_down, "--bgp-stale-time", "2"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(if log.is_some() { Stdio::piped() } else { Stdio::inherit() })
        .spawn()
        .expect("spawn the agent");
    if let (Some(log), Some(stderr)) = (log, child.stderr.take()) {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                log.0.lock().unwrap().push(line);
            }
        });
    }
    let mut agent = ChildGuard(child);
    wait_for(Duration::from_secs(20), "the agent's API", || {
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        lab.veth.host.run(|| TcpStream::connect("127.0.0.1:50051").is_ok()).unwrap()
    });
    agent
}

/// A UDP socket on `addr`. The port was free a moment ago, but once in a CI
/// run its bind failed with EADDRINUSE right after the socket last bound to
/// it was closed: a few retries, then the error.
fn bind_udp(addr: &str) -> UdpSocket {
    for _ in 0..50 {
        match UdpSocket::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => std::thread::sleep(Duration::from_millis(10)),
            other => return other.unwrap(),
        }
    }
    UdpSocket::bind(addr).unwrap()
}

/// Sends one datagram per source port from the router side to `dst`; the
/// label stacks that came back (an empty one for a datagram not labelled).
fn stacks(lab: &Lab, dst: IpAddr, sports: std::ops::Range<u16>) -> Vec<Vec<u32>> {
    let n = sports.len();
    lab.veth
        .router
        .run(|| {
            for sport in sports {
                let bind = if dst.is_ipv6() { format!("[::]:{sport}") } else { format!("0.0.0.0:{sport}") };
                let s = bind_udp(&bind);
                s.send_to(b"bgp", SocketAddr::new(dst, 7000)).unwrap();
            }
        })
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(300 + n as u64);
    while got.len() < n {
        match lab.capture.next(deadline.saturating_duration_since(Instant::now())).unwrap() {
            Some(f) if f.outgoing => {}
            Some(f) if f.bytes.get(12..14) == Some(&[0x88, 0x47][..]) => {
                got.push(decode_stack(&f.bytes[14..]).unwrap().0.iter().map(|e| e.label).collect())
            }
            // Unlabelled: passed to the host's stack, which routes it nowhere back to r0; count it as empty.
            Some(_) => {}
            None => break,
        }
    }
    got.resize(n.max(got.len()), Vec::new());
    got
}

fn labels(lab: &Lab, dst: &str) -> Vec<u32> {
    stacks(lab, dst.parse().unwrap(), 40000..40001).pop().unwrap_or_default()
}

/// Waits until a datagram to `dst` comes back with `want` (empty: unlabelled); how long it took.
fn until_labels(lab: &Lab, dst: &str, want: &[u32], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let last = labels(lab, dst);
        if last == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{dst}: labels {last:?}, not {want:?}, after {limit:?}");
    }
}

fn cli(lab: &Lab, args: &[&str]) -> String {
    let out = nsenter(&lab.veth.host, BIN).args(["-i", VethLab::HOST_IF]).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The agent's BGP metrics, by name, then `/neighbor` or `/reason` when labelled so.
fn metrics(lab: &Lab) -> BTreeMap<String, f64> {
    metrics_text(lab)
        .lines()
        .filter(|l| l.starts_with("lnetd_host_encap_bgp_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let name = k.split('{').next()?.to_owned();
            let label = ["neighbor=\"", "reason=\""]
                .iter()
                .find_map(|l| k.split(l).nth(1))
                .map(|n| format!("/{}", n.split('"').next().unwrap_or_default()))
                .unwrap_or_default();
            Some((name + &label, v.parse().ok()?))
        })
        .collect()
}

/// The reasons above 0 of a `{reason}`-labelled family in `metrics`, as
/// `status` gives them.
fn above_0(m: &BTreeMap<String, f64>, family: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{family}/");
    m.iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), *v as u64)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The four ignored/invalid families, by reason, from the metrics page and
/// from `GetStatus` and `status --output json` read right after: the same
/// counters, so the same counts once nothing changes between the reads.
fn ignored_and_invalid_agree(lab: &Lab) -> bool {
    const FAMILIES: [&str; 4] =
        ["policies_ignored", "policies_ignored_total", "candidate_paths_invalid", "candidate_paths_invalid_total"];
    let m = metrics(lab);
    let from_metrics: Vec<BTreeMap<String, u64>> =
        FAMILIES.iter().map(|f| above_0(&m, &format!("lnetd_host_encap_bgp_{f}"))).collect();
    let s = in_ns(&lab.veth.host, async {
        let mut c = EncapsulatorClient::connect("http://127.0.0.1:50051").await.unwrap();
        c.get_status(pb::StatusRequest {}).await.unwrap().into_inner()
    });
    let sorted = |m: &std::collections::HashMap<String, u64>| m.clone().into_iter().collect::<BTreeMap<_, _>>();
    let from_status = [
        sorted(&s.bgp_policies_ignored),
        sorted(&s.bgp_policies_ignored_total),
        sorted(&s.bgp_candidate_paths_invalid),
        sorted(&s.bgp_candidate_paths_invalid_total),
    ];
    let json: serde_json::Value = serde_json::from_str(&cli(lab, &["status", "--output", "json"])).unwrap();
    let from_json: Vec<BTreeMap<String, u64>> =
        FAMILIES.iter().map(|f| serde_json::from_value(json["bgp"][f].clone()).unwrap()).collect();
    let agree = from_metrics == from_status && from_metrics == from_json;
    if !agree {
        eprintln!("metrics {from_metrics:?}, GetStatus {from_status:?}, status --output json {from_json:?}");
    }
    agree
}

/// The agent's metrics page.
fn metrics_text(lab: &Lab) -> String {
    let body = common::http_get(&lab.veth.host, AGENT_METRICS, "/metrics");
    body.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn bgp_sr_policies_steer_colored_routes_end_to_end() {
    privileged("bgp_sr_policies_steer_colored_routes_end_to_end");
    require_gobgpd();
    let lab = lab();
    let _pins = PinGuard(&lab.veth.host, VethLab::HOST_IF);
    let _origins = OriginsGuard(&lab.veth.host);
    let ctl = gobgpd(lab.ctl(), "ctl", CTL_ADDR, HOST_BGP_ADDR, CTL_API);
    let host_bgp = gobgpd(&lab.veth.host, "host", HOST_BGP_ADDR, CTL_ADDR, HOST_API);
    let log = AgentLog::default();
    let _agent = start_agent_with(&lab, "keep", Some(&log));

    // Policy (100, 192.0.2.1), one candidate path; a route colored 100, one colored 200 (no such policy).
    gobgp_paths(
        lab.ctl(),
        CTL_API,
        vec![
            policy(1, 100, 100, 24001, &[(1, &[16001, 16002])]),
            route("198.51.100.0/24", &[100]),
            route("203.0.113.0/24", &[200]),
        ],
        true,
    );
    let took = until_labels(&lab, "198.51.100.7", &[16001, 16002], Duration::from_secs(10));
    eprintln!("first policy and route programmed {took:?} after injection (session setup included)");
    assert_eq!(labels(&lab, "203.0.113.7"), Vec::<u32>::new(), "a color without a policy stays unlabelled");
    let one_second = Duration::from_secs(1);

    // A second candidate path with a higher preference becomes active.
    gobgp_paths(lab.ctl(), CTL_API, vec![policy(2, 100, 200, 24002, &[(1, &[17001])])], true);
    let took = until_labels(&lab, "198.51.100.7", &[17001], one_second);
    eprintln!("preference change: {took:?}");

    // Its weights change to 1:3: flows move in proportion.
    gobgp_paths(lab.ctl(), CTL_API, vec![policy(2, 100, 200, 24002, &[(1, &[17001]), (3, &[17002])])], true);
    let took = wait_for(one_second, "the 1:3 lists", || {
        stacks(&lab, "198.51.100.7".parse().unwrap(), 41000..41040).iter().any(|s| s == &[17002])
    });
    eprintln!("weight change: {took:?}");
    let flows: Vec<Vec<u32>> =
        (0..8).flat_map(|i| stacks(&lab, "198.51.100.7".parse().unwrap(), 42000 + i * 50..42050 + i * 50)).collect();
    let (a, b) = (flows.iter().filter(|s| *s == &[17001]).count(), flows.iter().filter(|s| *s == &[17002]).count());
    assert_eq!(a + b, 400, "every flow labelled by one of the two lists: {flows:?}");
    let share = b as f64 / 400.0;
    assert!((0.66..=0.84).contains(&share), "list 2 took {b} of 400 flows, not about 3/4");

    // Where it came from: `routes` (text and JSON) and `get`.
    let text = "policy color 100 endpoint 192.0.2.1 preference 200, from BGP (binding SID 24002)";
    let mut routes = String::new();
    wait_for(Duration::from_secs(2), "the origin in `routes`", || {
        routes = cli(&lab, &["routes"]);
        routes.lines().any(|l| l.starts_with("198.51.100.0/24") && l.contains(" bgp ") && l.contains(text))
    });
    let json: serde_json::Value = serde_json::from_str(&cli(&lab, &["routes", "--json"])).unwrap();
    let r = json["routes"].as_array().unwrap().iter().find(|r| r["prefix"] == "198.51.100.0/24").unwrap();
    assert_eq!((r["origin"].as_str(), r["binding_sid"].as_u64()), (Some("bgp"), Some(24002)), "{r}");
    let get = cli(&lab, &["get", "198.51.100.7"]);
    assert!(get.contains(&format!("origin: {text}")), "{get}");
    // `status` through the agent: the session and since when, BGP's last change, routes per origin.
    let status: serde_json::Value = serde_json::from_str(&cli(&lab, &["status", "--output", "json"])).unwrap();
    let sessions = status["bgp"]["sessions"].as_array().unwrap_or_else(|| panic!("no BGP sessions: {status}"));
    let up = |s: &&serde_json::Value| s["neighbor"] == CTL_ADDR && s["established"] == true;
    assert!(sessions.iter().find(up).is_some_and(|s| s["since_unix_ms"].as_u64().is_some()), "{status}");
    assert_eq!((&status["bgp"]["api_connected"], &status["last_change"]["origin"]), (&true.into(), &"bgp".into()));
    assert!(status["routes"]["by_origin"]["bgp"].as_u64().is_some_and(|n| n >= 1), "{status}");
    let text_status = cli(&lab, &["status"]);
    assert!(text_status.contains(&format!("{CTL_ADDR} established since 20")), "{text_status}");
    let explained = in_ns(&lab.veth.host, async {
        let mut c = EncapsulatorClient::connect("http://127.0.0.1:50051").await.unwrap();
        c.explain(pb::ExplainRequest { dst: "198.51.100.7".into(), ..Default::default() }).await.unwrap().into_inner()
    });
    assert!(explained.text.contains(&format!("origin: {text}")), "{}", explained.text);

    // `remove` of BGP's route is refused as BGP's (it said "no route for
    // exactly" while `routes` listed it), by the command and by the API (NOT_FOUND, as documented).
    let out =
        nsenter(&lab.veth.host, BIN).args(["-i", VethLab::HOST_IF, "remove", "198.51.100.0/24"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("198.51.100.0/24 is BGP's route (origin bgp, policy color 100"),
        "{err}"
    );
    assert!(err.contains("withdraw it in BGP, or override it with `set`"), "{err}");
    let refused = in_ns(&lab.veth.host, async {
        let mut c = EncapsulatorClient::connect("http://127.0.0.1:50051").await.unwrap();
        c.remove_route(pb::RouteKey { prefix: "198.51.100.0/24".into(), table: 0 }).await.unwrap_err()
    });
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    assert!(refused.message().contains("is BGP's route (origin bgp"), "{refused:?}");

    // The agent's API wins over BGP for a prefix, and BGP's route comes back when it is removed.
    let listed = in_ns(&lab.veth.host, async {
        let mut c = EncapsulatorClient::connect("http://127.0.0.1:50051").await.unwrap();
        let route = pb::Route { prefix: "198.51.100.0/24".into(), policy: "99001".into(), ..Default::default() };
        c.set_route(route).await.unwrap();
        c.list_routes(pb::ListRoutesRequest {}).await.unwrap().into_inner()
    });
    let mine = listed.routes.iter().find(|r| r.route.as_ref().unwrap().prefix == "198.51.100.0/24").unwrap();
    assert_eq!(mine.origin, "agent");
    let other = listed.routes.iter().find(|r| r.route.as_ref().unwrap().prefix == "203.0.113.0/24");
    assert!(other.is_none(), "a route no policy takes is not installed");
    assert_eq!(labels(&lab, "198.51.100.7"), [99001]);
    in_ns(&lab.veth.host, async {
        let mut c = EncapsulatorClient::connect("http://127.0.0.1:50051").await.unwrap();
        c.remove_route(pb::RouteKey { prefix: "198.51.100.0/24".into(), table: 0 }).await.unwrap();
    });
    let back = labels(&lab, "198.51.100.7");
    assert!(back == [17001] || back == [17002], "BGP's route is back: {back:?}");

    // IPv6: a route colored 100 toward an IPv6 endpoint, its own policy (ipv6-srpolicy).
    let v6_endpoint: IpAddr = "2001:db8::1".parse().unwrap();
    gobgp_paths(
        lab.ctl(),
        CTL_API,
        vec![policy_to(v6_endpoint, 1, 100, 100, 24006, &[(1, &[18001, 18002])]), route("2001:db8:100::/48", &[100])],
        true,
    );
    until_labels(&lab, "2001:db8:100::7", &[18001, 18002], Duration::from_secs(2));

    // A preference change under traffic: every datagram comes back labelled,
    // with the old path or the new one, never none and never a mix.
    let old = labels(&lab, "198.51.100.7");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sent, frames) = std::thread::scope(|s| {
        let frames = s.spawn(|| common::labelled_frames(&lab.capture, &stop));
        let sender = s.spawn(|| {
            lab.veth
                .router
                .run(|| {
                    let sock = bind_udp("0.0.0.0:40000");
                    let start = Instant::now();
                    let mut sent = 0;
                    while start.elapsed() < Duration::from_millis(900) {
                        sock.send_to(b"switch", SocketAddr::new("198.51.100.7".parse().unwrap(), 7000)).unwrap();
                        sent += 1;
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    sent
                })
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(200));
        gobgp_paths(lab.ctl(), CTL_API, vec![policy(1, 100, 300, 24001, &[(1, &[16001, 16002])])], true);
        let sent = sender.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sent, frames.join().unwrap())
    });
    let stacks: Vec<Vec<u32>> = frames.iter().map(|(s, _)| s.iter().map(|e| e.label).collect()).collect();
    assert_eq!(stacks.len(), sent, "every datagram came back labelled");
    let (olds, news) =
        (stacks.iter().filter(|s| **s == old).count(), stacks.iter().filter(|s| *s == &[16001, 16002]).count());
    assert_eq!(olds + news, sent, "old or new stack only: {stacks:?}");
    assert!(olds > 0 && news > 0, "the switch happened under traffic: {olds} old, {news} new");
    eprintln!("preference change under traffic: {sent} datagrams, {olds} on the old path then {news} on the new, none unlabelled");
    assert!(stacks.windows(2).all(|w| !(w[0] == [16001, 16002] && w[1] == old)), "never back to the old path");
    gobgp_paths(lab.ctl(), CTL_API, vec![policy(1, 100, 100, 24001, &[(1, &[16001, 16002])])], true);
    until_labels(&lab, "198.51.100.7", &old, one_second);

    // Withdrawing the policy leaves its colored routes unlabelled.
    gobgp_paths(
        lab.ctl(),
        CTL_API,
        vec![
            policy(1, 100, 100, 24001, &[(1, &[16001, 16002])]),
            policy(2, 100, 200, 24002, &[(1, &[17001]), (3, &[17002])]),
        ],
        false,
    );
    let took = until_labels(&lab, "198.51.100.7", &[], one_second);
    eprintln!("policy withdrawal: {took:?}");
    let m = metrics(&lab);
    assert_eq!(m.get("lnetd_host_encap_bgp_routes_unsteered"), Some(&2.0), "{m:?}");
    assert_eq!(m.get("lnetd_host_encap_bgp_policies_active"), Some(&1.0), "{m:?}");
    assert_eq!(m.get(&format!("lnetd_host_encap_bgp_session_up/{CTL_ADDR}")), Some(&1.0), "{m:?}");

    // The policy back, then the route withdrawn: it is removed.
    gobgp_paths(lab.ctl(), CTL_API, vec![policy(1, 100, 100, 24001, &[(1, &[16001, 16002])])], true);
    until_labels(&lab, "198.51.100.7", &[16001, 16002], one_second);
    gobgp_paths(lab.ctl(), CTL_API, vec![route("198.51.100.0/24", &[100])], false);
    let took = until_labels(&lab, "198.51.100.7", &[], one_second);
    eprintln!("route withdrawal: {took:?}");
    assert!(!cli(&lab, &["routes"]).contains("198.51.100.0/24"));

    // The controller's gobgpd killed: under `keep`, what it taught stays.
    gobgp_paths(lab.ctl(), CTL_API, vec![route("198.51.100.0/24", &[100])], true);
    until_labels(&lab, "198.51.100.7", &[16001, 16002], one_second);
    drop(ctl);
    wait_for(Duration::from_secs(3), "the session down in the metrics", || {
        metrics(&lab).get(&format!("lnetd_host_encap_bgp_session_up/{CTL_ADDR}")) == Some(&0.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(labels(&lab, "198.51.100.7"), [16001, 16002], "kept while the session is down");
    assert_eq!(labels(&lab, "2001:db8:100::7"), [18001, 18002], "kept while the session is down");
    let m = metrics(&lab);
    assert!(m["lnetd_host_encap_bgp_withdrawals_kept_total"] >= 4.0, "{m:?}");
    // What is held shows, as a gauge and in `status` (three routes: the two
    // steered and the one colored 200 no policy takes), and the loss is one
    // WARN at the default level saying so and until when.
    assert_eq!(m.get("lnetd_host_encap_bgp_routes_held"), Some(&3.0), "{m:?}");
    let status: serde_json::Value = serde_json::from_str(&cli(&lab, &["status", "--output", "json"])).unwrap();
    assert_eq!(status["bgp"]["routes_held"], 3, "{status}");
    assert!(cli(&lab, &["status"]).contains("3 routes held"));
    let lost = log.lines_with(&format!("session with {CTL_ADDR} down"));
    assert_eq!(lost.len(), 1, "one line per loss: {lost:?}");
    assert!(
        lost[0].contains("WARN")
            && lost[0].contains("the 3 routes and 2 SR policy candidate paths it taught are kept")
            && lost[0].contains("until 2 s after it is established again"),
        "{lost:?}"
    );

    // It comes back and teaches all but the IPv6 route again: that one goes after the stale time (2 s).
    let ctl = gobgpd(lab.ctl(), "ctl2", CTL_ADDR, HOST_BGP_ADDR, CTL_API);
    gobgp_paths(
        lab.ctl(),
        CTL_API,
        vec![
            policy(1, 100, 100, 24001, &[(1, &[16001, 16002])]),
            route("198.51.100.0/24", &[100]),
            policy_to(v6_endpoint, 1, 100, 100, 24006, &[(1, &[18001, 18002])]),
        ],
        true,
    );
    wait_for(Duration::from_secs(10), "the session back", || {
        metrics(&lab).get(&format!("lnetd_host_encap_bgp_session_up/{CTL_ADDR}")) == Some(&1.0)
    });
    until_labels(&lab, "2001:db8:100::7", &[], Duration::from_secs(5));
    assert_eq!(labels(&lab, "198.51.100.7"), [16001, 16002], "taught again: still labelled");
    // The IPv6 route and the one colored 200 were not taught again.
    let removed = log.lines_with(&format!("session {CTL_ADDR} did not teach again within 2 s were removed"));
    assert!(
        removed.len() == 1 && removed[0].contains("WARN") && removed[0].contains("BGP: 2 routes and 0 SR"),
        "{removed:?}"
    );
    assert_eq!(metrics(&lab).get("lnetd_host_encap_bgp_routes_held"), Some(&0.0));

    // The host's own gobgpd stopped under `keep`: everything stays; back, the
    // agent resynchronises (ListPath) and keeps what is taught again.
    drop(host_bgp);
    wait_for(Duration::from_secs(3), "GoBGP's API lost", || {
        metrics(&lab).get("lnetd_host_encap_bgp_api_connected") == Some(&0.0)
    });
    assert_eq!(labels(&lab, "198.51.100.7"), [16001, 16002], "kept while GoBGP is away");
    // And said to be held (the gauge and `status` said 0 until GoBGP came back).
    let held = metrics(&lab)["lnetd_host_encap_bgp_routes_held"];
    assert!(held >= 1.0, "routes held while GoBGP is away: {held}");
    let status: serde_json::Value = serde_json::from_str(&cli(&lab, &["status", "--output", "json"])).unwrap();
    assert_eq!(status["bgp"]["routes_held"], held as u64, "{status}");
    let host_bgp = gobgpd(&lab.veth.host, "host2", HOST_BGP_ADDR, CTL_ADDR, HOST_API);
    wait_for(Duration::from_secs(10), "resynchronised", || {
        let m = metrics(&lab);
        m.get("lnetd_host_encap_bgp_api_connected") == Some(&1.0) && m["lnetd_host_encap_bgp_resyncs_total"] >= 2.0
    });
    wait_for(Duration::from_secs(15), "the session back", || {
        metrics(&lab).get(&format!("lnetd_host_encap_bgp_session_up/{CTL_ADDR}")) == Some(&1.0)
    });
    std::thread::sleep(Duration::from_secs(3)); // past the stale time: held routes released
    assert_eq!(labels(&lab, "198.51.100.7"), [16001, 16002], "taught again after the resync");
    assert_eq!(metrics(&lab)["lnetd_host_encap_bgp_routes_held"], 0.0);

    // Under `withdraw`, the session going down withdraws what it taught, and it comes back with it.
    // (An agent route first: its origin must survive the agent's restart.)
    in_ns(&lab.veth.host, async {
        let mut c = EncapsulatorClient::connect("http://127.0.0.1:50051").await.unwrap();
        let route = pb::Route { prefix: "192.0.2.128/25".into(), policy: "99002".into(), ..Default::default() };
        c.set_route(route).await.unwrap();
    });
    drop(_agent);
    let _agent = start_agent(&lab, "withdraw");
    until_labels(&lab, "198.51.100.7", &[16001, 16002], Duration::from_secs(3));
    // The origins come back once the new agent has its BGP session again (its
    // setup took 6 s at the start on a loaded machine, and once more than
    // 20 s while other builds ran): a generous limit, and what it saw if not.
    let start = Instant::now();
    loop {
        let last = cli(&lab, &["routes"]);
        let origin = |prefix: &str| {
            last.lines().find(|l| l.starts_with(prefix)).map(|l| l.split_whitespace().nth(2).unwrap_or("").to_owned())
        };
        if origin("198.51.100.0/24").as_deref() == Some("bgp") && origin("192.0.2.128/25").as_deref() == Some("agent") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "origins after the agent's restart: not within 40 s; routes:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(ctl);
    let took = until_labels(&lab, "198.51.100.7", &[], Duration::from_secs(2));
    eprintln!("session down (withdraw): routes removed {took:?} after the kill");
    let ctl = gobgpd(lab.ctl(), "ctl3", CTL_ADDR, HOST_BGP_ADDR, CTL_API);
    gobgp_paths(
        lab.ctl(),
        CTL_API,
        vec![policy(1, 100, 100, 24001, &[(1, &[16001, 16002])]), route("198.51.100.0/24", &[100])],
        true,
    );
    let took = until_labels(&lab, "198.51.100.7", &[16001, 16002], Duration::from_secs(10));
    eprintln!("session back: labelled again {took:?} after the restart");
    let m = metrics(&lab);
    assert!(
        m["lnetd_host_encap_bgp_updates_total"] >= 2.0 && m["lnetd_host_encap_bgp_withdrawals_total"] >= 2.0,
        "{m:?}"
    );
    assert!(m["lnetd_host_encap_bgp_applies_total"] >= 2.0, "{m:?}");

    // And the host's gobgpd stopped under `withdraw`: every BGP route goes; back, they return.
    drop(host_bgp);
    let took = until_labels(&lab, "198.51.100.7", &[], Duration::from_secs(3));
    eprintln!("GoBGP stopped (withdraw): routes removed {took:?} after");
    let _host_bgp = gobgpd(&lab.veth.host, "host3", HOST_BGP_ADDR, CTL_ADDR, HOST_API);
    let took = until_labels(&lab, "198.51.100.7", &[16001, 16002], Duration::from_secs(20));
    eprintln!("GoBGP back: labelled again {took:?} after its restart");
    assert!(metrics(&lab)["lnetd_host_encap_bgp_api_disconnects_total"] >= 1.0);

    // A reboot, simulated: the agent and the host's gobgpd die, bpffs and /run
    // lose the pins, the state and the origins (what `detach --force`
    // removes), and the unit starts gobgpd and then the agent with its
    // configuration file: the static routes come back from the file, BGP's
    // from BGP.
    drop(_agent);
    drop(_host_bgp);
    cli(&lab, &["detach", "--force"]);
    assert!(cli(&lab, &["status"]).contains("no dataplane of lnetd-host-encap is pinned"));
    let config = ConfigFile::new(&format!(
        "interface = \"{}\"\n[attach]\nmode = \"native\"\n[listeners]\ninsecure_local_tcp = true\n\
         metrics = \"{AGENT_METRICS}\"\n[bgp]\napi = \"{HOST_API}\"\nsession_down = \"withdraw\"\n\
         [[routes]]\nprefix = \"203.0.113.0/24\"\npolicy = \"99003\"\n",
        VethLab::HOST_IF
    ));
    let _host_bgp = gobgpd(&lab.veth.host, "host4", HOST_BGP_ADDR, CTL_ADDR, HOST_API);
    let child = nsenter(&lab.veth.host, BIN)
        .args(["agent", "--config"])
        .arg(&config.0)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the agent with its configuration");
    let _agent = ChildGuard(child);
    let took = until_labels(&lab, "203.0.113.7", &[99003], Duration::from_secs(20));
    eprintln!("after the reboot: the static route labelled {took:?} after the agent's start");
    let took = until_labels(&lab, "198.51.100.7", &[16001, 16002], Duration::from_secs(40));
    eprintln!("after the reboot: the BGP route labelled {took:?} after the static one");
    let routes = cli(&lab, &["routes"]);
    let origin = |prefix: &str| {
        routes.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
    };
    assert_eq!(origin("203.0.113.0/24").as_deref(), Some("static"), "{routes}");
    assert_eq!(origin("198.51.100.0/24").as_deref(), Some("bgp"), "{routes}");
    drop(ctl);
}

/// A configuration file of the test's own, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("lnetd-bgp-reboot-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write the configuration file");
        ConfigFile(path)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Host B's addresses on its link to the controller (host A is HOST_BGP_ADDR, behind CTL_ADDR).
const CTL_ADDR_B: &str = "10.202.0.1";
const HOST_B_BGP_ADDR: &str = "10.202.0.2";

/// A candidate path for (100, ENDPOINT) from the controller, addressed as `addressing`.
fn addressed(distinguisher: u32, preference: u32, label: u32, addressing: Addressing) -> Candidate {
    Candidate {
        preference,
        lists: vec![CandidateList { weight: 1, labels: vec![label], unsupported: 0 }],
        addressing,
        ..Candidate::new(distinguisher, PolicyKey { color: 100, endpoint: endpoint() })
    }
}

/// `c` as a path whose segment list GoBGP 3.10 cannot parse (a type-C
/// segment, sent raw as an unknown sub-TLV 128): the receiving gobgpd
/// discards the whole Tunnel Encapsulation attribute and hands over the NLRI alone.
fn with_unparsable_segment_list(c: &Candidate) -> gobgp::Path {
    use prost::Message;
    let mut path = candidate_path(c, CTL_ADDR.parse().unwrap());
    let tea_any = path.pattrs.iter_mut().find(|a| a.type_url.ends_with(".TunnelEncapAttribute")).unwrap();
    let mut tea = gobgp::TunnelEncapAttribute::decode(tea_any.value.as_slice()).unwrap();
    // Reserved octet, then segment type C (3), length 6: flags, algorithm, IPv4 node 10.0.0.1.
    let raw = gobgp::TunnelEncapSubTlvUnknown { r#type: 128, value: vec![0, 3, 6, 0, 0, 10, 0, 0, 1] };
    tea.tlvs[0].tlvs.retain(|t| !t.type_url.ends_with(".TunnelEncapSubTLVSRSegmentList"));
    tea.tlvs[0].tlvs.push(lnetd_host_encap::bgp::wire::pack("TunnelEncapSubTLVUnknown", &raw));
    *tea_any = lnetd_host_encap::bgp::wire::pack("TunnelEncapAttribute", &tea);
    path
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn bgp_behind_a_route_reflector_each_host_installs_its_own_candidate_path() {
    privileged("bgp_behind_a_route_reflector_each_host_installs_its_own_candidate_path");
    require_gobgpd();
    // The controller is the route reflector of two hosts, A and B.
    let a = lab();
    let b = host_lab();
    link(a.ctl(), &b.veth.host, ("c1", CTL_ADDR_B), ("hc1", HOST_B_BGP_ADDR));
    let (_pins_a, _pins_b) = (PinGuard(&a.veth.host, VethLab::HOST_IF), PinGuard(&b.veth.host, VethLab::HOST_IF));
    let (_origins_a, _origins_b) = (OriginsGuard(&a.veth.host), OriginsGuard(&b.veth.host));
    let _rr = gobgpd_with(
        a.ctl(),
        "rr",
        CTL_ADDR,
        &[(CTL_ADDR, HOST_BGP_ADDR, true), (CTL_ADDR_B, HOST_B_BGP_ADDR, true)],
        CTL_API,
    );
    // Each host's BGP identifier is its gobgpd's router ID (GetBgp).
    let _bgp_a = gobgpd(&a.veth.host, "ha", HOST_BGP_ADDR, CTL_ADDR, HOST_API);
    let _bgp_b = gobgpd(&b.veth.host, "hb", HOST_B_BGP_ADDR, CTL_ADDR_B, HOST_API);
    let (_agent_a, _agent_b) = (start_agent(&a, "keep"), start_agent(&b, "keep"));

    // One (color, endpoint), a candidate path per headend; the ones for
    // nobody (no target, another's, an AS-specific target) have the highest
    // preferences (whoever took them would show it).
    let for_a = Candidate {
        enlp: Some(Enlp::Ipv4),
        name: Some("dc2-via-a".into()),
        ..addressed(11, 100, 21001, Addressing::to(HOST_BGP_ADDR.parse().unwrap()))
    };
    let for_b = addressed(12, 200, 22001, Addressing::to(HOST_B_BGP_ADDR.parse().unwrap()));
    let unaddressed = addressed(13, 300, 23001, Addressing::default());
    let for_nobody = addressed(14, 400, 24001, Addressing::to("10.9.9.9".parse().unwrap()));
    let ctl_addr: IpAddr = CTL_ADDR.parse().unwrap();
    let mut paths: Vec<gobgp::Path> =
        [&for_a, &for_b, &unaddressed, &for_nobody].iter().map(|c| candidate_path(c, ctl_addr)).collect();
    // A route target of the two-octet AS type (65000:2) cannot name a BGP identifier.
    let mut as_target = candidate_path(&addressed(15, 500, 25001, Addressing::default()), ctl_addr);
    let rt = gobgp::TwoOctetAsSpecificExtended { is_transitive: true, sub_type: 2, asn: 65000, local_admin: 2 };
    let communities = vec![lnetd_host_encap::bgp::wire::pack("TwoOctetAsSpecificExtended", &rt)];
    as_target.pattrs.push(lnetd_host_encap::bgp::wire::pack(
        "ExtendedCommunitiesAttribute",
        &gobgp::ExtendedCommunitiesAttribute { communities },
    ));
    paths.push(as_target);
    paths.push(route("198.51.100.0/24", &[100]));
    gobgp_paths(a.ctl(), CTL_API, paths, true);

    // Each installs exactly its own; A's asks for an IPv4 explicit null (ENLP 1) at the bottom.
    let took = until_labels(&a, "198.51.100.7", &[21001, 0], Duration::from_secs(15));
    eprintln!("host A on its own candidate path {took:?} after injection (sessions included)");
    let took = until_labels(&b, "198.51.100.7", &[22001], Duration::from_secs(15));
    eprintln!("host B on its own candidate path {took:?} after A");
    for (host, lab, id) in [("A", &a, HOST_BGP_ADDR), ("B", &b, HOST_B_BGP_ADDR)] {
        let mut m = BTreeMap::new();
        wait_for(Duration::from_secs(3), &format!("host {host}'s ignored paths in its metrics"), || {
            m = metrics(lab);
            m.get("lnetd_host_encap_bgp_policies_ignored/route-target-mismatch") == Some(&2.0)
        });
        assert_eq!(m.get("lnetd_host_encap_bgp_policies_ignored/no-route-target"), Some(&1.0), "{host}: {m:?}");
        assert!(m["lnetd_host_encap_bgp_policies_ignored_total/route-target-mismatch"] >= 2.0, "{host}: {m:?}");
        assert!(m["lnetd_host_encap_bgp_policies_ignored_total/no-route-target"] >= 1.0, "{host}: {m:?}");
        assert_eq!(m.get("lnetd_host_encap_bgp_policies_ignored/route-target-not-ipv4"), Some(&1.0), "{host}: {m:?}");
        assert_eq!(m.get("lnetd_host_encap_bgp_candidate_paths"), Some(&1.0), "{host}: only its own: {m:?}");
        wait_for(Duration::from_secs(3), &format!("host {host}'s status saying the metrics' counts"), || {
            ignored_and_invalid_agree(lab)
        });
        let text = cli(lab, &["status"]);
        assert!(
            text.contains(
                "4 SR Policy paths ignored now (no-route-target 1, route-target-mismatch 2, route-target-not-ipv4 1)"
            ),
            "{host}: {text}"
        );
        let text = metrics_text(lab);
        assert!(text.contains(&format!("router_id=\"{id}\"}} 1")), "{host}: the BGP identifier from GetBgp: {text}");
        // The end-of-initial-list marker is not a peer: every session_up series names an address.
        let sessions: Vec<&str> = text.lines().filter(|l| l.starts_with("lnetd_host_encap_bgp_session_up{")).collect();
        assert_eq!(sessions.len(), 1, "{host}: one session: {sessions:?}");
        for l in &sessions {
            let neighbor = l.split("neighbor=\"").nth(1).and_then(|n| n.split('"').next()).unwrap_or_default();
            assert!(neighbor.parse::<IpAddr>().is_ok(), "{host}: a session_up series for {neighbor:?}: {l}");
        }
    }
    // A's policy is shown with its name and ENLP.
    let mut routes = String::new();
    wait_for(Duration::from_secs(2), "the policy name in `routes`", || {
        routes = cli(&a, &["routes"]);
        routes
            .lines()
            .any(|l| l.starts_with("198.51.100.0/24") && l.contains("named \"dc2-via-a\"") && l.contains("ENLP 1"))
    });

    // A's path again, with a segment list GoBGP 3.10 cannot parse: A's gobgpd
    // drops the attribute; A must not keep the last known lists (and no other
    // path is for A): unlabelled, counted. B is untouched.
    gobgp_paths(a.ctl(), CTL_API, vec![with_unparsable_segment_list(&for_a)], true);
    let took = until_labels(&a, "198.51.100.7", &[], Duration::from_secs(3));
    eprintln!("host A off its path {took:?} after its attribute was dropped");
    // Still BGP's, steered into its invalid policy: shown with the policy
    // (`routes` showed no origin text, `bgp_policy` was null).
    let json: serde_json::Value = serde_json::from_str(&cli(&a, &["routes", "--json"])).unwrap();
    let r = json["routes"].as_array().unwrap().iter().find(|r| r["prefix"] == "198.51.100.0/24").unwrap();
    let shown = "policy color 100 endpoint 192.0.2.1, from BGP: no valid candidate path";
    assert_eq!((r["origin"].as_str(), r["bgp_policy"].as_str()), (Some("bgp"), Some(shown)), "{r}");
    assert!(cli(&a, &["routes"]).contains(&format!("({shown})")));
    assert!(cli(&a, &["get", "198.51.100.7"]).contains(&format!("origin: {shown}")));
    let m = metrics(&a);
    assert!(m["lnetd_host_encap_bgp_candidate_paths_invalid_total/no-tunnel-encapsulation"] >= 1.0, "{m:?}");
    assert_eq!(m.get("lnetd_host_encap_bgp_candidate_paths_invalid/no-tunnel-encapsulation"), Some(&1.0), "{m:?}");
    wait_for(Duration::from_secs(3), "host A's status saying its invalid path", || ignored_and_invalid_agree(&a));
    let text = cli(&a, &["status"]);
    assert!(text.contains("; 1 candidate path invalid now (no-tunnel-encapsulation 1), "), "{text}");
    assert_eq!(labels(&b, "198.51.100.7"), [22001]);
    let m = metrics(&b);
    assert_eq!(m.get("lnetd_host_encap_bgp_candidate_paths_invalid/no-tunnel-encapsulation"), Some(&0.0), "{m:?}");
    // Sent whole again: A is back on it.
    gobgp_paths(a.ctl(), CTL_API, vec![candidate_path(&for_a, ctl_addr)], true);
    until_labels(&a, "198.51.100.7", &[21001, 0], Duration::from_secs(3));
}

/// What `keep` covers behind a route reflector was not said: the controller
/// failing is not a session loss at the host (the reflector's session stays
/// up and sends real withdrawals). The help says so (docs/bgp.md too).
#[test]
fn the_session_down_help_says_what_keep_covers_behind_a_route_reflector() {
    let out = Command::new(BIN).args(["agent", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "Behind a route reflector, keep covers this host's session or its gobgpd going down, not the \
             controller failing"
        ),
        "{help}"
    );
}
