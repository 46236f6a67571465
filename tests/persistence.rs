//! A dataplane that outlives its process: pinned by one process, adopted by
//! another (after SIGKILL) with every route and counter, its program replaced
//! under traffic, refused when its state is of another format, and removed
//! without a trace by detach. Traffic streams through the real veth lab
//! throughout, and every packet must come back labelled.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{privileged, ChildGuard, PinGuard};
use etherparse::{SlicedPacket, TransportSlice};
use lnetd_host_encap::lab::{attached_xdp_program, Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{Encapsulator, Error, PinError, XdpMode};

fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("static_bsid");
    assert!(bin.exists(), "{} is missing: `cargo test` builds the examples; run the suite with it", bin.display());
    bin
}

/// The routes both processes work with, as the example's --route arguments.
const ROUTES: [&str; 3] = ["0.0.0.0/0=1000000", "198.51.100.0/24=16001/16002@7,16003@3", "203.0.113.0/24=17001/17002"];

/// The stacks a packet to 198.51.100.x or 203.0.113.x may carry.
fn expected_stack(dst: Ipv4Addr) -> Vec<Vec<u32>> {
    match dst.octets() {
        [198, 51, 100, _] => vec![vec![16001, 16002], vec![16003]],
        [203, 0, 113, _] => vec![vec![17001, 17002]],
        _ => vec![vec![1_000_000]],
    }
}

/// Streams numbered UDP datagrams from the router side until `stop`, and
/// checks that every one came back labelled with a stack its route allows.
/// Returns how many were sent.
fn stream_until(lab: &VethLab, stop: &AtomicBool, during: impl FnOnce()) -> u64 {
    let capture = lab
        .router
        .run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(64 << 20)))
        .unwrap()
        .expect("capture");
    let socket = lab.router.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().expect("udp socket");
    let done_sending = AtomicBool::new(false);
    let (sent, got) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let frames = common::labelled_frames(&capture, &done_sending);
            frames
                .into_iter()
                .filter_map(|(stack, inner)| {
                    let packet = SlicedPacket::from_ip(&inner).ok()?;
                    let Some(etherparse::NetSlice::Ipv4(ip)) = packet.net else { return None };
                    let Some(TransportSlice::Udp(udp)) = packet.transport else { return None };
                    let seq = udp.payload().try_into().map(u64::from_be_bytes).ok()?;
                    Some((seq, ip.header().destination_addr(), stack.iter().map(|e| e.label).collect::<Vec<u32>>()))
                })
                .collect::<Vec<_>>()
        });
        let sender = s.spawn(|| {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let dst = match seq % 3 {
                    0 => Ipv4Addr::new(198, 51, 100, (seq % 200) as u8 + 1),
                    1 => Ipv4Addr::new(203, 0, 113, 7),
                    _ => Ipv4Addr::new(192, 0, 2, 99),
                };
                socket.send_to(&seq.to_be_bytes(), SocketAddr::new(IpAddr::V4(dst), 4000 + (seq % 97) as u16)).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            seq
        });
        // A panic in `during` must still stop the sender, or the scope waits forever.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(during));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = outcome {
            done_sending.store(true, Ordering::Relaxed);
            std::panic::resume_unwind(panic);
        }
        let sent = sender.join().unwrap();
        done_sending.store(true, Ordering::Relaxed);
        (sent, receiver.join().unwrap())
    });
    let mut seen = BTreeSet::new();
    for (seq, dst, stack) in &got {
        assert!(expected_stack(*dst).contains(stack), "datagram {seq} to {dst} came back with {stack:?}");
        seen.insert(*seq);
    }
    let missing: Vec<u64> = (0..sent).filter(|s| !seen.contains(s)).take(20).collect();
    assert!(
        missing.is_empty(),
        "{} of {sent} datagrams did not come back labelled, e.g. {missing:?}",
        sent - seen.len() as u64
    );
    sent
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn sigkilled_owner_is_adopted_with_routes_and_counters_and_traffic_never_stops() {
    privileged("sigkilled_owner_is_adopted_with_routes_and_counters_and_traffic_never_stops");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");

    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.host.name())).arg(example_binary()).args([
        "--iface",
        VethLab::HOST_IF,
        "--pin",
        "--mode",
        "native",
    ]);
    for r in ROUTES {
        cmd.arg(format!("--route={r}"));
    }
    let mut child = ChildGuard(cmd.stdout(Stdio::null()).spawn().expect("spawn the example"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab.host.run(|| Encapsulator::is_pinned(VethLab::HOST_IF)).unwrap().unwrap() {
        assert!(child.0.try_wait().unwrap().is_none(), "the example exited before pinning");
        assert!(Instant::now() < deadline, "the example did not pin within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The example pins at attach, then programs its routes: wait until every
    // one is in the state a read-only adopter sees.
    let read_only = lnetd_host_encap::AdoptOptions { read_only: true, ..Default::default() };
    while lab
        .host
        .run(|| Encapsulator::open_with(VethLab::HOST_IF, &read_only).map(|e| e.routes().map(|r| r.len())))
        .unwrap()
        .ok()
        .and_then(Result::ok)
        != Some(ROUTES.len())
    {
        assert!(child.0.try_wait().unwrap().is_none(), "the example exited before programming its routes");
        assert!(Instant::now() < deadline, "the example did not program its routes within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let prog_before = lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap();

    let stop = AtomicBool::new(false);
    let mut adopted = None;
    let sent = stream_until(&lab, &stop, || {
        std::thread::sleep(Duration::from_millis(500));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .expect("SIGKILL");
        child.0.wait().expect("reap");
        std::thread::sleep(Duration::from_millis(500));
        adopted = Some(lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt"));
        std::thread::sleep(Duration::from_millis(500));
    });
    assert!(sent > 1000, "only {sent} datagrams sent");
    let enc = adopted.expect("adopted");

    let routes: Vec<String> = enc.routes().unwrap().iter().map(|r| format!("{}={}", r.prefix, r.policy)).collect();
    assert_eq!(routes, ROUTES);
    let policy = enc.route_counters("198.51.100.0/24".parse().unwrap()).unwrap().expect("policy route");
    assert!(policy.counted && policy.lists.len() == 2);
    assert_eq!(policy.lists.iter().map(|c| c.packets).sum::<u64>(), policy.labelled.packets);
    // A third of the datagrams went to the policy route, before and after the kill.
    assert!(policy.labelled.packets >= sent / 3, "{} labelled of {sent} / 3", policy.labelled.packets);
    assert!(policy.lists.iter().all(|c| c.packets > 0), "both lists carried flows: {policy:?}");
    assert_eq!(enc.verify().unwrap(), vec![], "the kernel holds exactly what the RIB says");
    let prog_after = lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap();
    assert_ne!(prog_before, prog_after, "the adopting build's program replaced the old one");

    // Adopted state is fully usable, and persists again.
    enc.set_labels("203.0.113.0/24".parse().unwrap(), "17003".parse().unwrap()).unwrap();
    drop(enc);
    let again = lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt again");
    let r = again.routes().unwrap();
    assert_eq!(r.iter().find(|r| r.prefix.to_string() == "203.0.113.0/24").unwrap().policy.to_string(), "17003");

    let pins = again.pin_dir().expect("pinned");
    again.detach().expect("detach");
    assert!(!pins.exists(), "detach removes the pins");
    assert_eq!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap(), None);
    assert!(!lab.host.run(|| Encapsulator::is_pinned(VethLab::HOST_IF)).unwrap().unwrap());
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn program_replacement_under_traffic_loses_nothing() {
    privileged("program_replacement_under_traffic_loses_nothing");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");
    lab.host
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Native).expect("attach");
            for r in ROUTES {
                let (prefix, policy) = r.split_once('=').unwrap();
                enc.set_policy(prefix.parse().unwrap(), policy.parse().unwrap()).unwrap();
            }
            // Dropped: a pinned dataplane stays.
        })
        .unwrap();
    let stop = AtomicBool::new(false);
    let mut programs = BTreeSet::new();
    stream_until(&lab, &stop, || {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(200));
            let enc = lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt");
            programs.insert(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap());
            drop(enc);
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(programs.len(), 5, "each adoption replaced the program: {programs:?}");
    lab.host.run(|| Encapsulator::open(VethLab::HOST_IF).unwrap().detach().unwrap()).unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn refusals_missing_pin_incompatible_state_and_pin_twice() {
    privileged("refusals_missing_pin_incompatible_state_and_pin_twice");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            match Encapsulator::open(VethLab::HOST_IF) {
                Err(Error::Pin(PinError::NotPinned { iface, .. })) => assert_eq!(iface, VethLab::HOST_IF),
                other => panic!("open with nothing pinned: {other:?}"),
            }
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic).expect("attach");
            enc.set_label("10.0.0.0/8".parse().unwrap(), 100.try_into().unwrap()).unwrap();
            let dir = enc.pin_dir().unwrap();
            drop(enc);

            // A second pinned attach to the same interface is refused, nothing touched.
            let second = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic);
            assert!(matches!(second, Err(Error::Attach(_)) | Err(Error::Pin(_))), "{second:?}");

            let state = PathBuf::from(lnetd_host_encap::DEFAULT_STATE_ROOT)
                .join(dir.parent().unwrap().file_name().unwrap())
                .join(VethLab::HOST_IF)
                .join("state.json");
            let original = std::fs::read_to_string(&state).expect("state file");
            let meta = std::fs::metadata(&state).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "state is root-only");
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
            let mut doc: serde_json::Value = serde_json::from_str(&original).expect("state JSON");
            doc["format"] = 999.into();
            doc["written_by"] = "9.9.9".into();
            let future = serde_json::to_string_pretty(&doc).unwrap();
            assert_ne!(future, original);
            std::fs::write(&state, &future).unwrap();
            match Encapsulator::open(VethLab::HOST_IF) {
                Err(e @ Error::Pin(PinError::Incompatible { found: 999, .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains("9.9.9") && msg.contains(env!("CARGO_PKG_VERSION")), "{msg}");
                }
                other => panic!("open of a future format: {other:?}"),
            }
            std::fs::write(&state, "{ not json").unwrap();
            assert!(matches!(Encapsulator::open(VethLab::HOST_IF), Err(Error::Pin(PinError::Corrupt { .. }))));

            // The refused opens changed nothing: with the state back, all is there.
            std::fs::write(&state, &original).unwrap();
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            assert_eq!(enc.routes().unwrap().len(), 1);
            assert_eq!(enc.verify().unwrap(), vec![]);
            enc.detach().unwrap();
            assert!(!dir.exists() && !state.exists());
        })
        .unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn verify_reports_what_someone_else_changed_in_the_maps() {
    privileged("verify_reports_what_someone_else_changed_in_the_maps");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            use libbpf_rs::MapCore;
            // The LPM trie, whose entries a foreign process can delete by key
            // (DIR-24-8's own foreign-write test is in tests/lookup.rs).
            let enc = Encapsulator::builder()
                .lookup(lnetd_host_encap::Ipv4Lookup::LpmTrie)
                .pinned()
                .attach(VethLab::HOST_IF, XdpMode::Generic)
                .expect("attach");
            enc.set_label("10.0.0.0/8".parse().unwrap(), 100.try_into().unwrap()).unwrap();
            enc.set_policy("2001:db8::/32".parse().unwrap(), "200@1,201@2".parse().unwrap()).unwrap();
            assert_eq!(enc.verify().unwrap(), vec![]);
            let routes_v4 =
                libbpf_rs::MapHandle::from_pinned_path(enc.pin_dir().unwrap().join("maps/routes_v4")).unwrap();
            let key = [&8u32.to_ne_bytes()[..], &[10, 0, 0, 0]].concat();
            routes_v4.delete(&key).unwrap();
            let found = enc.verify().unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!((found[0].map, found[0].entry.as_str()), ("routes_v4", "10.0.0.0/8"));
            assert_eq!(found[0].kind, lnetd_host_encap::DifferenceKind::Missing);
            assert_eq!(enc.repair().unwrap(), found, "repair puts back what the RIB says");
            assert_eq!(enc.verify().unwrap(), vec![]);
            assert!(routes_v4.lookup(&key, libbpf_rs::MapFlags::ANY).unwrap().is_some());
            enc.detach().unwrap();
        })
        .unwrap();
}
