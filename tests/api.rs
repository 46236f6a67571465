//! The API's refusals and lifecycle against the real kernel: typed errors,
//! tables unchanged after every refused request, capacity, a second program on
//! the interface, a deleted interface, drop and SIGKILL detaching.

mod common;

use lnetd_host_encap::Table;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_netns, privileged};
use lnetd_host_encap::testing::lab::{attached_xdp_program, traffic, Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{
    encap::TtlMode, errors::AttachError, errors::LoadError, errors::PrefixError, errors::RouteError, Encapsulator,
    Error, Label, LabelStack, Route, XdpMode,
};

fn net(s: &str) -> lnetd_host_encap::IpNetwork {
    s.parse().expect("test prefix")
}

fn stack(s: &str) -> LabelStack {
    s.parse().expect("test stack")
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn refused_routes_change_nothing() {
    privileged("refused_routes_change_nothing");
    in_netns("api", |_| refused_routes_change_nothing_here());
}

fn refused_routes_change_nothing_here() {
    let enc = Encapsulator::builder().load().expect("load");
    enc.set_route(Table::Main, &Route::new(net("10.0.0.0/8"), stack("100/200"))).unwrap();
    enc.set_route(Table::Main, &Route::new(net("2001:db8::/32"), stack("300"))).unwrap();
    enc.refresh_local_addresses().expect("host addresses");
    let before = enc.routes(Table::Main).unwrap();
    assert_eq!(before.len(), 2, "host addresses are not listed as routes: {before:?}");

    match enc.set_route(Table::Main, &Route::new(net("10.0.0.1/8"), stack("999"))) {
        Err(RouteError::Prefix(PrefixError::HostBitsSet { meant, .. })) => assert_eq!(meant, net("10.0.0.0/8")),
        other => panic!("host bits: {other:?}"),
    }
    match enc.set_route(Table::Main, &Route::new(net("127.0.0.1/32"), Label::new(999).unwrap().into())) {
        Err(e @ RouteError::LocalAddress { .. }) => assert!(e.to_string().contains("own addresses"), "{e}"),
        other => panic!("local address: {other:?}"),
    }
    assert!(!enc.remove(Table::Main, net("127.0.0.1/32")).unwrap(), "a host address is not a removable route");
    assert!(!enc.remove(Table::Main, net("192.0.2.0/24")).unwrap(), "nothing to remove");
    assert!(matches!(enc.remove(Table::Main, net("10.0.0.1/8")), Err(RouteError::Prefix(_))));
    assert_eq!(enc.routes(Table::Main).unwrap(), before);

    // Replacing is atomic and keeps the other routes.
    enc.set_route(Table::Main, &Route::new(net("10.0.0.0/8"), stack("101"))).unwrap();
    let after = enc.routes(Table::Main).unwrap();
    assert!(after.contains(&Route::new(net("10.0.0.0/8"), stack("101"))));
    assert!(after.contains(&Route::new(net("2001:db8::/32"), stack("300"))));
    assert!(enc.remove(Table::Main, net("10.0.0.0/8")).unwrap());
    assert_eq!(enc.routes(Table::Main).unwrap(), vec![Route::new(net("2001:db8::/32"), stack("300"))]);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_full_table_is_a_typed_error_and_keeps_its_routes() {
    privileged("a_full_table_is_a_typed_error_and_keeps_its_routes");
    in_netns("api", |_| a_full_table_here());
}

fn a_full_table_here() {
    let enc = Encapsulator::builder().max_routes(3, 1).load().expect("load");
    for p in ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"] {
        enc.set_route(Table::Main, &Route::new(net(p), stack("100"))).unwrap();
    }
    let err = enc.set_route(Table::Main, &Route::new(net("10.3.0.0/16"), stack("100"))).unwrap_err();
    assert!(
        matches!(err, RouteError::TableFull { family: "IPv4", capacity: 3, knob } if knob.starts_with("--max-routes-v4")),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_routes"), "the message says what to do: {err}");
    enc.set_route(Table::Main, &Route::new(net("2001:db8::/32"), stack("16"))).unwrap();
    assert!(matches!(
        enc.set_route(Table::Main, &Route::new(net("2001:db9::/32"), stack("16"))),
        Err(RouteError::TableFull { family: "IPv6", .. })
    ));
    assert_eq!(enc.routes(Table::Main).unwrap().len(), 4, "what was programmed is kept");
    // A full table still accepts replacing an existing route.
    enc.set_route(Table::Main, &Route::new(net("10.0.0.0/8"), stack("200"))).unwrap();
    assert!(enc.routes(Table::Main).unwrap().contains(&Route::new(net("10.0.0.0/8"), stack("200"))));
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn impossible_configurations_are_refused() {
    privileged("impossible_configurations_are_refused");
    assert!(matches!(Encapsulator::builder().ttl_mode(TtlMode::Fixed(0)).load(), Err(LoadError::Config(_))));
    assert!(matches!(Encapsulator::builder().max_routes(0, 10).load(), Err(LoadError::Config(_))));
    // DIR-24-8 names slots and groups in 24 bits.
    assert!(matches!(Encapsulator::builder().max_routes(1 << 24, 10).load(), Err(LoadError::Config(_))));
    assert!(matches!(Encapsulator::builder().dir_groups(1 << 24).load(), Err(LoadError::Config(_))));
    assert!(matches!(Encapsulator::builder().max_route_values(0).load(), Err(LoadError::Config(_))));
}

/// A route for a /32 that becomes a host address is set aside, not lost, and
/// comes back when the address goes.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_host_address_sets_a_route_aside_and_gives_it_back() {
    privileged("a_host_address_sets_a_route_aside_and_gives_it_back");
    in_netns("api", |ns| {
        let enc = Encapsulator::builder().load().expect("load");
        let host = net("192.0.2.77/32");
        let route = Route::with_policy(host, "100@7,200@3".parse().unwrap());
        enc.set_route(Table::Main, &route).unwrap();
        enc.set_route(Table::Main, &Route::new(net("10.0.0.0/8"), stack("300"))).unwrap();
        ns.ip(&["addr", "add", "192.0.2.77/32", "dev", "lo"]).unwrap();
        enc.refresh_local_addresses().unwrap();
        assert!(!enc.routes(Table::Main).unwrap().contains(&route), "set aside while the address is local");
        assert!(matches!(enc.set_route(Table::Main, &route), Err(RouteError::LocalAddress { .. })));
        ns.ip(&["addr", "del", "192.0.2.77/32", "dev", "lo"]).unwrap();
        enc.refresh_local_addresses().unwrap();
        let routes = enc.routes(Table::Main).unwrap();
        assert!(routes.contains(&route), "restored: {routes:?}");
        assert!(routes.contains(&Route::new(net("10.0.0.0/8"), stack("300"))));

        // Removing a route while it is set aside removes it for good.
        ns.ip(&["addr", "add", "192.0.2.77/32", "dev", "lo"]).unwrap();
        enc.refresh_local_addresses().unwrap();
        assert!(enc.remove(Table::Main, host).unwrap(), "the set-aside route is removed");
        ns.ip(&["addr", "del", "192.0.2.77/32", "dev", "lo"]).unwrap();
        enc.refresh_local_addresses().unwrap();
        assert!(!enc.routes(Table::Main).unwrap().iter().any(|r| r.prefix == host), "a removed route stays removed");
    });
}

/// A refresh that does not fit leaves the tables as they were.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_failed_refresh_changes_nothing() {
    privileged("a_failed_refresh_changes_nothing");
    in_netns("api", |ns| {
        for a in ["192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"] {
            ns.ip(&["addr", "add", a, "dev", "lo"]).unwrap();
        }
        let enc = Encapsulator::builder().max_routes(3, 8).load().expect("load");
        enc.set_route(Table::Main, &Route::new(net("10.0.0.0/8"), stack("300"))).unwrap();
        let before = enc.routes(Table::Main).unwrap();
        let err = enc.refresh_local_addresses().unwrap_err();
        assert!(matches!(err, Error::Route(RouteError::TableFull { .. })), "{err:?}");
        assert_eq!(enc.routes(Table::Main).unwrap(), before);
        // Nothing of the failed refresh stayed: the table still has room for two more routes.
        enc.set_route(Table::Main, &Route::new(net("10.1.0.0/16"), stack("301"))).unwrap();
        enc.set_route(Table::Main, &Route::new(net("10.2.0.0/16"), stack("302"))).unwrap();
    });
}

/// Sends one UDP packet from the router side; true if it came back labelled.
fn comes_back_labelled(lab: &VethLab, capture: &Capture) -> bool {
    lab.router
        .run(|| traffic::udp(SocketAddr::new("192.0.2.1".parse().unwrap(), 9), 64, b"probe"))
        .expect("ns")
        .expect("udp");
    let frames = capture.drain(Duration::from_millis(300), Duration::from_secs(3)).expect("capture");
    frames.iter().any(|f| !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47]))
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn attach_errors_are_typed_and_the_first_program_keeps_working() {
    privileged("attach_errors_are_typed_and_the_first_program_keeps_working");
    let lab = VethLab::new().expect("lab");
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().unwrap();
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).unwrap().unwrap();
    let (first, second, missing, again) = lab
        .host
        .run(|| {
            let first = Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native);
            let second = Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Auto);
            let missing = Encapsulator::builder().attach("nope0", XdpMode::Auto);
            let again = match &first {
                Ok(enc) => enc.attach(VethLab::HOST_IF, XdpMode::Native).err().map(|e| e.to_string()),
                Err(_) => None,
            };
            (first, second, missing, again)
        })
        .unwrap();
    let first = first.expect("first attach");
    first.set_route(Table::Main, &Route::new(net("0.0.0.0/0"), Label::new(1_000_000).unwrap().into())).unwrap();
    match second {
        Err(Error::Attach(e @ AttachError::InterfaceBusy { .. })) => {
            assert!(e.to_string().contains("already has an XDP program"), "{e}")
        }
        other => panic!("second program: {other:?}"),
    }
    assert!(matches!(missing, Err(Error::Attach(AttachError::NoSuchInterface { .. }))), "{missing:?}");
    assert!(again.as_deref().is_some_and(|m| m.contains("already attached to h0")), "{again:?}");
    assert!(comes_back_labelled(&lab, &capture), "the first encapsulator still labels");

    // Detach, re-attach generically: routes survive.
    assert!(first.detach().unwrap().is_some());
    assert!(!comes_back_labelled(&lab, &capture), "detached means not labelling");
    lab.host.run(|| first.attach(VethLab::HOST_IF, XdpMode::Generic)).unwrap().expect("re-attach");
    assert!(comes_back_labelled(&lab, &capture), "routes survive a detach");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_deleted_interface_leaves_a_usable_handle() {
    privileged("a_deleted_interface_leaves_a_usable_handle");
    let lab = VethLab::new().expect("lab");
    let enc = lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().unwrap();
    lab.host.ip(&["link", "del", VethLab::HOST_IF]).expect("delete h0");
    enc.set_route(Table::Main, &Route::new(net("0.0.0.0/0"), Label::new(16).unwrap().into()))
        .expect("routes still programmable");
    enc.stats().expect("stats still readable");
    assert!(enc.detach().expect("detach after the interface is gone").is_some());
    drop(enc);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn drop_detaches() {
    privileged("drop_detaches");
    let lab = VethLab::new().expect("lab");
    lab.host
        .run(|| {
            let enc = Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Native).expect("attach");
            assert!(attached_xdp_program(VethLab::HOST_IF).unwrap().is_some());
            drop(enc);
            assert_eq!(attached_xdp_program(VethLab::HOST_IF).unwrap(), None);
        })
        .unwrap();
}

fn example_binary() -> PathBuf {
    // target/<profile>/deps/api-<hash> -> target/<profile>/examples/static_bsid
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("examples/static_bsid")
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn sigkill_leaves_no_program_attached() {
    privileged("sigkill_leaves_no_program_attached");
    let bin = example_binary();
    assert!(bin.exists(), "cargo test builds the example: {}", bin.display());
    let lab = VethLab::new().expect("lab");
    let mut child = Command::new("ip")
        .args(["netns", "exec", lab.host.name()])
        .arg(&bin)
        .args(["--iface", VethLab::HOST_IF, "--mode", "native"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the example");
    let attached = |want: bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap().is_some() == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    let was_attached = attached(true);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(was_attached, "the example attached");
    assert!(attached(false), "a killed process leaves no program attached");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn without_privileges_the_error_names_the_capability() {
    privileged("without_privileges_the_error_names_the_capability");
    let bin = example_binary();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&bin)
        .args(["--iface", "nope0"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CAP_BPF") && stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}

/// The example in host mode: its encapsulator (XDP) and, with `--pop`, a
/// decapsulator on TC ingress beside it; a labelled datagram from the router
/// reaches a socket on the host, and the example's stats line counts it.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_example_pops_beside_its_encapsulator() {
    privileged("the_example_pops_beside_its_encapsulator");
    use std::io::Read;
    let bin = example_binary();
    assert!(bin.exists(), "cargo test builds the example: {}", bin.display());
    let lab = VethLab::new().expect("lab");
    let sock = lab
        .host
        .run(|| {
            let s = std::net::UdpSocket::bind(SocketAddr::new(VethLab::HOST_V4.into(), 5310)).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
            s
        })
        .unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", lab.host.name()])
        .arg(&bin)
        .args(["--iface", VethLab::HOST_IF, "--mode", "generic", "--pop", "0,16002"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the example");
    // Frame: the router's UDP datagram to the host, label 16002 (S=1) after the MACs.
    let mut spec = common::frame(&VethLab::HOST_V4.to_string()).l4(common::L4::Udp { sport: 40002, dport: 5310 });
    spec.src_mac = VethLab::ROUTER_MAC;
    spec.dst_mac = VethLab::HOST_MAC;
    let ip = spec.build();
    let mut bytes = ip.bytes[..12].to_vec();
    bytes.extend_from_slice(&[0x88, 0x47]);
    bytes.extend_from_slice(&((16002u32 << 12) | 0x100 | 64).to_be_bytes());
    bytes.extend_from_slice(&ip.bytes[14..]);
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(20);
    let received = loop {
        // Until the example has attached both programs, the frame is not popped.
        lab.router.run(|| traffic::raw_frame(VethLab::ROUTER_IF, &bytes)).unwrap().expect("send");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            break Some(n);
        }
        if Instant::now() > deadline {
            break None;
        }
    };
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    let status = child.wait().expect("reap");
    assert_eq!(received, Some(spec.payload_len), "the popped datagram reached the host's socket\n{out}");
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("popping [0, 16002] on {} in ingress mode", VethLab::HOST_IF)), "{out}");
    let popped = out
        .lines()
        .filter_map(|l| l.strip_prefix("popped "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .max();
    assert!(popped.is_some_and(|n| n >= 1), "the stats line counts the popped frame\n{out}");
}
