//! A dataplane that outlives its process: pinned by one process, adopted by
//! another (after SIGKILL) with every route and counter, its program replaced
//! under traffic, refused when its state is of another format, and removed
//! without a trace by detach. Traffic streams through the real veth lab
//! throughout, and every packet must come back labelled.

mod common;

use lnetd_host_encap::Label;
use lnetd_host_encap::{Route, Table};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{privileged, ChildGuard, PinGuard};
use etherparse::{SlicedPacket, TransportSlice};
use lnetd_host_encap::testing::lab::{attached_xdp_program, Capture, Netns, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{encap::AdoptOptions, errors::PinError, Encapsulator, Error, XdpMode};

/// The state directory of the dataplane pinned in `pins`.
fn state_dir(pins: &std::path::Path) -> PathBuf {
    PathBuf::from(lnetd_host_encap::pins::DEFAULT_STATE_ROOT)
        .join(pins.parent().unwrap().file_name().unwrap())
        .join(pins.file_name().unwrap())
}

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
    while !lab
        .host
        .run(|| lnetd_host_encap::encap::AdoptOptions::default().is_pinned(VethLab::HOST_IF))
        .unwrap()
        .unwrap()
    {
        assert!(child.0.try_wait().unwrap().is_none(), "the example exited before pinning");
        assert!(Instant::now() < deadline, "the example did not pin within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The example pins at attach, then programs its routes: wait until every
    // one is in the state a read-only adopter sees.
    let read_only = lnetd_host_encap::encap::AdoptOptions { read_only: true, ..Default::default() };
    while lab
        .host
        .run(|| read_only.open(VethLab::HOST_IF).map(|e| e.routes(Table::Main).map(|r| r.len())))
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

    let routes: Vec<String> =
        enc.routes(Table::Main).unwrap().iter().map(|r| format!("{}={}", r.prefix, r.policy)).collect();
    assert_eq!(routes, ROUTES);
    let policy = enc.route_counters(Table::Main, "198.51.100.0/24".parse().unwrap()).unwrap().expect("policy route");
    assert!(policy.counted && policy.lists.len() == 2);
    assert_eq!(policy.lists.iter().map(|c| c.packets).sum::<u64>(), policy.labelled.packets);
    // A third of the datagrams went to the policy route, before and after the kill.
    assert!(policy.labelled.packets >= sent / 3, "{} labelled of {sent} / 3", policy.labelled.packets);
    assert!(policy.lists.iter().all(|c| c.packets > 0), "both lists carried flows: {policy:?}");
    assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "the kernel holds exactly what the RIB says");
    let prog_after = lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap();
    // The example is this build too (same object, same settings): its
    // program, recorded beside the pins, is kept, not verified again.
    // Another build's is replaced (program_replacement_under_traffic_loses_nothing).
    assert_eq!(prog_before, prog_after, "the same build's program is kept across the adoption");

    // Adopted state is fully usable, and persists again.
    enc.set_route(Table::Main, &Route::new("203.0.113.0/24".parse().unwrap(), "17003".parse().unwrap())).unwrap();
    drop(enc);
    let again = lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt again");
    let r = again.routes(Table::Main).unwrap();
    assert_eq!(r.iter().find(|r| r.prefix.to_string() == "203.0.113.0/24").unwrap().policy.to_string(), "17003");

    let pins = again.diagnostics().pin_dir().expect("pinned");
    again.detach().expect("detach");
    assert!(!pins.exists(), "detach removes the pins");
    assert_eq!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap(), None);
    assert!(!lab
        .host
        .run(|| lnetd_host_encap::encap::AdoptOptions::default().is_pinned(VethLab::HOST_IF))
        .unwrap()
        .unwrap());
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn program_replacement_under_traffic_loses_nothing() {
    privileged("program_replacement_under_traffic_loses_nothing");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");
    let record = lab
        .host
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Native).expect("attach");
            for r in ROUTES {
                let (prefix, policy) = r.split_once('=').unwrap();
                enc.set_route(Table::Main, &Route::with_policy(prefix.parse().unwrap(), policy.parse().unwrap()))
                    .unwrap();
            }
            // Dropped: a pinned dataplane stays.
            state_dir(&enc.diagnostics().pin_dir().unwrap()).join("program")
        })
        .unwrap();
    let running = || lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap();
    // The same build adopting (a restart) keeps the program it finds running:
    // the record beside the pins names it and this build's settings.
    let attached = running();
    assert!(record.exists(), "the attach recorded its program");
    drop(lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt"));
    assert_eq!(running(), attached, "this build's own program is kept, not verified again");
    let stop = AtomicBool::new(false);
    let mut programs = BTreeSet::new();
    stream_until(&lab, &stop, || {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(200));
            // As another build finds it: a record that is not its own.
            std::fs::write(&record, "0 0\n").unwrap();
            let enc = lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt");
            programs.insert(running());
            drop(enc);
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(programs.len(), 5, "each adoption by another build replaced the program: {programs:?}");
    assert!(!programs.contains(&attached));
    let last = running();
    drop(lab.host.run(|| Encapsulator::open(VethLab::HOST_IF)).unwrap().expect("adopt"));
    assert_eq!(running(), last, "a replacement is recorded: the next adoption keeps it");
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
            enc.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), Label::new(100).unwrap().into()))
                .unwrap();
            let dir = enc.diagnostics().pin_dir().unwrap();
            drop(enc);

            // A second pinned attach to the same interface is refused, nothing touched.
            let second = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic);
            assert!(matches!(second, Err(Error::Attach(_)) | Err(Error::Pin(_))), "{second:?}");

            let state = state_dir(&dir);
            let snapshot = state.join("rib.snapshot");
            let original = std::fs::read(&snapshot).expect("snapshot");
            let journal = std::fs::read(state.join("rib.journal")).expect("journal");
            use std::os::unix::fs::PermissionsExt;
            for file in [&snapshot, &state.join("rib.journal")] {
                assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600, "state is root-only");
            }
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);

            // A snapshot of a future format: refused by its version, naming both builds.
            let mut future = original.clone();
            future[8..12].copy_from_slice(&999u32.to_le_bytes());
            std::fs::write(&snapshot, &future).unwrap();
            match Encapsulator::open(VethLab::HOST_IF) {
                Err(e @ Error::Pin(PinError::Incompatible { found: 999, .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains(env!("CARGO_PKG_VERSION")) && msg.contains("detach"), "{msg}");
                }
                other => panic!("open of a future format: {other:?}"),
            }
            // Snapshots of formats 4 (before shared policy objects), 5 (before routes carried
            // their origin), 6 (the route cache's 112-byte entries) and 7 (a counters map without the
            // no-live-path drop counter): refused as such, with what to do. (Format 8, the
            // same records without the tally, is read and rewritten: the store's unit tests.)
            for old in [4u32, 5, 6, 7] {
                let mut older = original.clone();
                older[8..12].copy_from_slice(&old.to_le_bytes());
                std::fs::write(&snapshot, &older).unwrap();
                match Encapsulator::open(VethLab::HOST_IF) {
                    Err(e @ Error::Pin(PinError::Incompatible { found, ours: 9, .. })) if found == old => {
                        let msg = e.to_string();
                        assert!(msg.contains("detach") && msg.contains(&format!("reads format {old}")), "{msg}");
                    }
                    other => panic!("open of a format {old} snapshot: {other:?}"),
                }
            }
            // The state.json of a build before the store: refused as format 3, with what to do.
            std::fs::remove_file(&snapshot).unwrap();
            std::fs::write(state.join("state.json"), r#"{"format": 3, "written_by": "0.0.9", "routes": []}"#).unwrap();
            match Encapsulator::open(VethLab::HOST_IF) {
                Err(e @ Error::Pin(PinError::Incompatible { found: 3, .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains("0.0.9") && msg.contains("format 9"), "{msg}");
                }
                other => panic!("open of a state.json: {other:?}"),
            }
            std::fs::remove_file(state.join("state.json")).unwrap();
            // A damaged snapshot: refused by its checksum.
            let mut damaged = original.clone();
            let middle = damaged.len() / 2;
            damaged[middle] ^= 0x10;
            std::fs::write(&snapshot, &damaged).unwrap();
            assert!(matches!(Encapsulator::open(VethLab::HOST_IF), Err(Error::Pin(PinError::Corrupt { .. }))));
            std::fs::write(&snapshot, &original).unwrap();
            std::fs::write(state.join("rib.journal"), &journal).unwrap();

            // The refused opens changed nothing: with the state back, all is there.
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            assert_eq!(enc.routes(Table::Main).unwrap().len(), 1);
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
            enc.detach().unwrap();
            assert!(!dir.exists() && !snapshot.exists());
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
                .lookup(lnetd_host_encap::encap::Ipv4Lookup::LpmTrie)
                .pinned()
                .attach(VethLab::HOST_IF, XdpMode::Generic)
                .expect("attach");
            enc.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), Label::new(100).unwrap().into()))
                .unwrap();
            enc.set_route(
                Table::Main,
                &Route::with_policy("2001:db8::/32".parse().unwrap(), "200@1,201@2".parse().unwrap()),
            )
            .unwrap();
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
            let routes_v4 =
                libbpf_rs::MapHandle::from_pinned_path(enc.diagnostics().pin_dir().unwrap().join("maps/routes_v4"))
                    .unwrap();
            let key = [&8u32.to_ne_bytes()[..], &[10, 0, 0, 0]].concat();
            routes_v4.delete(&key).unwrap();
            let found = enc.diagnostics().verify().unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!((found[0].map, found[0].entry.as_str()), ("routes_v4", "10.0.0.0/8"));
            assert_eq!(found[0].kind, lnetd_host_encap::diagnostics::DifferenceKind::Missing);
            assert_eq!(enc.diagnostics().repair().unwrap(), found, "repair puts back what the RIB says");
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
            assert!(routes_v4.lookup(&key, libbpf_rs::MapFlags::ANY).unwrap().is_some());
            enc.detach().unwrap();
        })
        .unwrap();
}

/// Appends to the journal the INTENT record a process writes before a
/// change's first kernel write (the store's framing: length, crc32 of the
/// payload, then kind 1, a sequence number, a CLOCK_BOOTTIME stamp).
fn append_intent(state: &std::path::Path) {
    let mut payload = vec![1u8];
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    let mut record = (payload.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(state.join("rib.journal")).unwrap().write_all(&record).unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_store_round_trips_every_part_of_the_rib_and_a_change_appends_one_small_record() {
    privileged("the_store_round_trips_every_part_of_the_rib_and_a_change_appends_one_small_record");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            use lnetd_host_encap::{labels::DscpMap, labels::TrafficClass, Route, Table};
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic).expect("attach");
            let alt = Table::alternate(3).unwrap();
            enc.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), Label::new(100).unwrap().into()))
                .unwrap();
            enc.set_route(
                Table::Main,
                &Route::with_policy("198.51.100.0/24".parse().unwrap(), "16001/16002@7,16003@3".parse().unwrap()),
            )
            .unwrap();
            enc.set_route(Table::Main, &Route::new("2001:db8::/32".parse().unwrap(), "200/201".parse().unwrap()))
                .unwrap();
            enc.set_route(alt, &Route::new("0.0.0.0/0".parse().unwrap(), "300".parse().unwrap())).unwrap();
            enc.sources().set("192.0.2.0/24".parse().unwrap(), alt).unwrap();
            let dscp = DscpMap::default().with(46, TrafficClass::new(5).unwrap());
            enc.set_dscp_map(&dscp).unwrap();
            // A replaced policy retires its id into the graveyard, which is stored too.
            enc.set_route(
                Table::Main,
                &Route::with_policy("198.51.100.0/24".parse().unwrap(), "16001@1,16004@1".parse().unwrap()),
            )
            .unwrap();
            enc.remove(Table::Main, "10.0.0.0/8".parse().unwrap()).unwrap();
            let state = state_dir(&enc.diagnostics().pin_dir().unwrap());
            let journal = state.join("rib.journal");
            let before = std::fs::metadata(&journal).unwrap().len();
            enc.set_route(Table::Main, &Route::new("10.1.0.0/16".parse().unwrap(), Label::new(101).unwrap().into()))
                .unwrap();
            let grown = std::fs::metadata(&journal).unwrap().len() - before;
            assert!(grown > 0 && grown < 128, "one route appended {grown} bytes to the journal");
            // An apply its removal guard refuses wrote nothing: not to the
            // kernel, and not to the journal either.
            let before = std::fs::metadata(&journal).unwrap().len();
            let empty =
                lnetd_host_encap::desired::ValidState::new(Default::default(), Default::default(), DscpMap::default())
                    .unwrap();
            let guarded = lnetd_host_encap::ApplyOptions::default().max_remove_share(0.5);
            assert!(enc.apply(&empty, guarded).is_err(), "removing every route is past a guard of half");
            assert_eq!(std::fs::metadata(&journal).unwrap().len(), before, "a refused apply leaves the journal alone");
            let desired = enc.desired_state();
            let counters = enc.route_counters(Table::Main, "198.51.100.0/24".parse().unwrap()).unwrap();
            drop(enc);

            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            assert_eq!(enc.desired_state(), desired, "routes, tables, sources and the DSCP table");
            assert_eq!(enc.dscp_map(), dscp);
            assert_eq!(
                enc.route_counters(Table::Main, "198.51.100.0/24".parse().unwrap()).unwrap(),
                counters,
                "counter slots"
            );
            assert_eq!(
                enc.diagnostics().verify().unwrap(),
                vec![],
                "the kernel holds what the RIB says, retired policy included"
            );
            // Changes after adoption go on in the same journal.
            enc.remove(Table::Main, "2001:db8::/32".parse().unwrap()).unwrap();
            drop(enc);
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt again");
            assert_eq!(enc.routes(Table::Main).unwrap().len(), 2, "10.1.0.0/16 and 198.51.100.0/24 in the main table");
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
            enc.detach().unwrap();
            assert!(!state.exists(), "detach removes the state");
        })
        .unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_torn_journal_tail_is_discarded_and_the_journal_goes_on_after_it() {
    privileged("a_torn_journal_tail_is_discarded_and_the_journal_goes_on_after_it");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic).expect("attach");
            enc.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), Label::new(100).unwrap().into()))
                .unwrap();
            let state = state_dir(&enc.diagnostics().pin_dir().unwrap());
            let journal = state.join("rib.journal");
            let whole = std::fs::read(&journal).unwrap();
            enc.set_route(Table::Main, &Route::new("10.1.0.0/16".parse().unwrap(), Label::new(101).unwrap().into()))
                .unwrap();
            drop(enc);
            // The last record cut in the middle, as a write interrupted by a crash leaves it.
            let with_second = std::fs::read(&journal).unwrap();
            let torn = &with_second[..whole.len() + (with_second.len() - whole.len()) / 2];
            std::fs::write(&journal, torn).unwrap();

            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt past a torn tail");
            let prefixes: Vec<String> = enc.routes(Table::Main).unwrap().iter().map(|r| r.prefix.to_string()).collect();
            assert_eq!(prefixes, ["10.0.0.0/8"], "the torn change is not there");
            enc.set_route(Table::Main, &Route::new("10.2.0.0/16".parse().unwrap(), Label::new(102).unwrap().into()))
                .unwrap();
            drop(enc);
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt again");
            let prefixes: Vec<String> = enc.routes(Table::Main).unwrap().iter().map(|r| r.prefix.to_string()).collect();
            assert_eq!(prefixes, ["10.0.0.0/8", "10.2.0.0/16"], "records after the cut are read");
            enc.detach().unwrap();
        })
        .unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_change_killed_between_intent_and_commit_is_repaired_and_a_clean_adoption_reads_no_map() {
    privileged("a_change_killed_between_intent_and_commit_is_repaired_and_a_clean_adoption_reads_no_map");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            use libbpf_rs::MapCore;
            let enc = Encapsulator::builder()
                .lookup(lnetd_host_encap::encap::Ipv4Lookup::LpmTrie)
                .pinned()
                .attach(VethLab::HOST_IF, XdpMode::Generic)
                .expect("attach");
            enc.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), Label::new(100).unwrap().into()))
                .unwrap();
            let pins = enc.diagnostics().pin_dir().unwrap();
            let state = state_dir(&pins);
            drop(enc);
            let routes_v4 = libbpf_rs::MapHandle::from_pinned_path(pins.join("maps/routes_v4")).unwrap();
            let key = |addr: [u8; 4], len: u32| [&len.to_ne_bytes()[..], &addr].concat();
            let value = routes_v4.lookup(&key([10, 0, 0, 0], 8), libbpf_rs::MapFlags::ANY).unwrap().unwrap();
            // The first kernel write of a change that never committed.
            let half = key([10, 9, 0, 0], 16);
            routes_v4.update(&half, &value, libbpf_rs::MapFlags::ANY).unwrap();

            // Without an unfinished change in the journal, adoption trusts the
            // maps (it reads none of them); verify still sees the stray entry.
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("clean adoption");
            assert_eq!(enc.diagnostics().verify().unwrap().len(), 1);
            drop(enc);
            // With the INTENT the killed process wrote, the next one repairs.
            append_intent(&state);
            let read_only = lnetd_host_encap::encap::AdoptOptions { read_only: true, ..Default::default() };
            let look = read_only.open(VethLab::HOST_IF).expect("read-only adoption");
            assert_eq!(look.diagnostics().verify().unwrap().len(), 1, "a reader repairs nothing");
            drop(look);
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adoption after a kill");
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "the kernel is back to what was acknowledged");
            let prefixes: Vec<String> = enc.routes(Table::Main).unwrap().iter().map(|r| r.prefix.to_string()).collect();
            assert_eq!(prefixes, ["10.0.0.0/8"]);
            drop(enc);
            // Repaired once: the journal says so, and the next adoption is clean.
            routes_v4.update(&half, &value, libbpf_rs::MapFlags::ANY).unwrap();
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adoption after the repair");
            assert_eq!(enc.diagnostics().verify().unwrap().len(), 1, "no second repair");
            enc.diagnostics().repair().unwrap();
            enc.detach().unwrap();
        })
        .unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn policy_ids_and_counter_slots_do_not_leak_through_short_lived_adopters() {
    privileged("policy_ids_and_counter_slots_do_not_leak_through_short_lived_adopters");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            use lnetd_host_encap::DesiredState;
            let policies = DesiredState::from_json(
                r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100@1,101@1"},{"prefix":"10.1.0.0/16","policy":"200@1,201@3"}]}"#,
            )
            .unwrap();
            let empty = DesiredState::from_json(r#"{"routes":[]}"#).unwrap();
            let enc = Encapsulator::builder()
                .max_policies(2)
                .max_counted_routes(8)
                .pinned()
                .attach(VethLab::HOST_IF, XdpMode::Generic)
                .expect("attach");
            drop(enc);
            // Each step is its own adopter, as a command is: the grace periods
            // of the ids it retires run on in the next one.
            for cycle in 0..4 {
                for (what, desired) in [("policies", &policies), ("empty", &empty)] {
                    let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
                    let report = enc.apply(desired, lnetd_host_encap::ApplyOptions::default()).unwrap_or_else(|e| panic!("cycle {cycle}, {what}: {e}"));
                    assert_eq!(report.removed.len() + report.added.len(), 2, "{report}");
                    if what == "policies" {
                        for prefix in ["10.0.0.0/8", "10.1.0.0/16"] {
                            let c = enc.route_counters(Table::Main, prefix.parse().unwrap()).unwrap().unwrap();
                            assert!(c.counted, "cycle {cycle}: {prefix} got counter slots");
                        }
                    }
                    assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "cycle {cycle}, {what}");
                }
            }
            // Every policy retired above is past its grace period now: a set of
            // one is accepted at once, by whichever process looks.
            std::thread::sleep(Duration::from_millis(1100));
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            enc.set_route(Table::Main, &Route::with_policy("10.2.0.0/16".parse().unwrap(), "300@1,301@1".parse().unwrap())).expect("set of a policy");
            enc.set_route(Table::Main, &Route::with_policy("10.3.0.0/16".parse().unwrap(), "400@1,401@1".parse().unwrap())).expect("a second one");
            match enc.set_route(Table::Main, &Route::with_policy("10.4.0.0/16".parse().unwrap(), "500@1,501@1".parse().unwrap())) {
                Err(lnetd_host_encap::errors::RouteError::TableFull { family: "policy", capacity: 2, knob }) => {
                    assert!(knob.contains("--max-policies") && knob.contains("max_policies"), "{knob}")
                }
                other => panic!("a third policy with --max-policies 2: {other:?}"),
            }
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
            enc.detach().unwrap();
        })
        .unwrap();
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_stale_link_is_refused_naming_its_pin_and_the_command_that_fixes_it() {
    privileged("a_stale_link_is_refused_naming_its_pin_and_the_command_that_fixes_it");
    const IFACE: &str = "lhe-stale0";
    let ns = Netns::new("stale").expect("namespace");
    let _pins = PinGuard(&ns, IFACE);
    // The same name and the same ifindex both times: only the link can tell.
    let create = || {
        ns.ip(&["link", "add", IFACE, "index", "4242", "type", "veth", "peer", "name", "lhe-stale1"]).expect("veth");
        ns.ip(&["link", "set", IFACE, "up"]).expect("up");
    };
    create();
    let link = ns
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(IFACE, XdpMode::Generic).expect("attach");
            enc.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), Label::new(100).unwrap().into()))
                .unwrap();
            let link = enc.diagnostics().pin_dir().unwrap().join("link");
            drop(enc);
            // A live pin is adopted, as a writer and as a reader.
            assert_eq!(Encapsulator::open(IFACE).expect("adopt a live pin").routes(Table::Main).unwrap().len(), 1);
            let read_only = AdoptOptions { read_only: true, ..AdoptOptions::default() };
            assert_eq!(read_only.open(IFACE).expect("read a live pin").routes(Table::Main).unwrap().len(), 1);
            link
        })
        .unwrap();
    ns.ip(&["link", "del", IFACE]).expect("delete the interface");
    create();
    ns.run(|| {
        assert_eq!(attached_xdp_program(IFACE).unwrap(), None, "the recreated interface runs nothing");
        let read_only = AdoptOptions { read_only: true, ..AdoptOptions::default() };
        for options in [AdoptOptions::default(), read_only] {
            match options.open(IFACE) {
                Err(e @ Error::Pin(PinError::StaleLink { .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&link.display().to_string()), "names the pin: {msg}");
                    assert!(msg.contains(&format!("lnetd-host-encap -i {IFACE} detach --force")), "{msg}");
                }
                other => panic!("adoption of a stale link ({options:?}): {other:?}"),
            }
        }
        // Refused means untouched: the stale link is still there to remove.
        assert!(link.exists());
    })
    .unwrap();
}

/// One step of [`a_writer_for_one_prefix_changes_what_the_whole_rib_would`].
#[derive(Debug, Clone)]
enum Step {
    Set(Table, Route),
    Remove(Table, lnetd_host_encap::IpNetwork),
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_writer_for_one_prefix_changes_what_the_whole_rib_would() {
    privileged("a_writer_for_one_prefix_changes_what_the_whole_rib_would");
    let _ = env_logger::builder().is_test(true).try_init();
    use lnetd_host_encap::{encap::Ipv4Lookup, ApplyOptions, DesiredState, Policy};
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    // Both IPv4 structures, every kind of route a writer for one prefix
    // makes alone or hands to the whole RIB (a named policy), then a
    // counter pool used up.
    for lookup in [Ipv4Lookup::Dir24_8, Ipv4Lookup::LpmTrie] {
        let lab = VethLab::new().expect("lab");
        let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
        lab.host
            .run(|| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(20261207);
                let alternate = Table::alternate(7).unwrap();
                // Prefixes of every length class DIR-24-8 treats apart (up to
                // /16, /17-/24, longer), nested in each other, and IPv6.
                let mut pool: Vec<lnetd_host_encap::IpNetwork> = Vec::new();
                for i in 0..60u32 {
                    let len = [8, 12, 16, 20, 23, 24, 25, 28, 30, 32][(i % 10) as usize];
                    let addr = Ipv4Addr::from(0x0a00_0000 | ((i * 0x0001_3579) & 0x00ff_ffff));
                    let p = lnetd_host_encap::IpNetwork::new(addr.into(), len).unwrap();
                    pool.push(lnetd_host_encap::IpNetwork::new(p.network(), len).unwrap());
                }
                for i in 0..12u16 {
                    pool.push(format!("2001:db8:{i:x}::/{}", 48 + i % 3 * 16).parse().unwrap());
                }
                pool.sort();
                pool.dedup();
                let policy = |rng: &mut rand::rngs::StdRng| -> Policy {
                    let base = rng.random_range(16..1_000_000u32);
                    match rng.random_range(0..10) {
                        0..=5 => format!("{base}").parse().unwrap(),
                        6..=7 => format!("{base}/{}", base + 1).parse().unwrap(),
                        8 => format!("{base}@3,{}@1", base + 1).parse().unwrap(),
                        _ => format!("{base}").parse::<Policy>().unwrap().with_name("shared").unwrap(),
                    }
                };
                let enc = Encapsulator::builder()
                    .lookup(lookup)
                    .max_routes(4096, 4096)
                    .max_counted_routes(1024)
                    .pinned()
                    .attach(VethLab::HOST_IF, XdpMode::Generic)
                    .expect("attach");
                let mut model: BTreeMap<(Table, lnetd_host_encap::IpNetwork), Route> = BTreeMap::new();
                let mut routes = Vec::new();
                for p in pool.iter().step_by(2) {
                    let route = Route::with_policy(*p, format!("{}", 100 + routes.len()).parse().unwrap());
                    model.insert((Table::Main, *p), route.clone());
                    routes.push(serde_json::json!({"prefix": p.to_string(), "policy": route.policy.to_string()}));
                }
                let desired = DesiredState::from_json(&serde_json::json!({ "routes": routes }).to_string()).unwrap();
                enc.apply(&desired, ApplyOptions::default()).expect("the first table");
                drop(enc);
                for step in 0..120 {
                    let prefix = pool[rng.random_range(0..pool.len())];
                    let table = if rng.random_range(0..6) == 0 { alternate } else { Table::Main };
                    let op = if rng.random_range(0..3) == 0 {
                        Step::Remove(table, prefix)
                    } else {
                        Step::Set(table, Route::with_policy(prefix, policy(&mut rng)))
                    };
                    // A writer for the one prefix, as `set` and `remove` adopt.
                    let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, prefix).expect("adopt for one prefix");
                    match &op {
                        Step::Set(table, route) => {
                            // A named policy's object may be rewritten for every route on it.
                            enc.set_route(*table, route).unwrap_or_else(|e| panic!("step {step}, {op:?}: {e}"));
                            if let Some(name) = route.policy.name() {
                                for r in model.values_mut().filter(|r| r.policy.name() == Some(name)) {
                                    r.policy = route.policy.clone();
                                }
                            }
                            model.insert((*table, route.prefix), route.clone());
                        }
                        Step::Remove(table, prefix) => {
                            let removed =
                                enc.remove(*table, *prefix).unwrap_or_else(|e| panic!("step {step}, {op:?}: {e}"));
                            assert_eq!(removed, model.remove(&(*table, *prefix)).is_some(), "step {step}, {op:?}");
                        }
                    }
                    drop(enc);
                    if step % 20 == 19 {
                        // A handle that reads the whole RIB: it and the kernel agree, and hold the model.
                        let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
                        assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{lookup:?}, step {step}");
                        for t in [Table::Main, alternate] {
                            let want: Vec<&Route> =
                                model.iter().filter(|((mt, _), _)| *mt == t).map(|(_, r)| r).collect();
                            let got = enc.routes(t).unwrap();
                            assert_eq!(got.iter().collect::<Vec<_>>(), want, "{lookup:?}, step {step}, table {t:?}");
                        }
                    }
                }
                Encapsulator::open(VethLab::HOST_IF).unwrap().detach().unwrap();
                // A counter pool used up: a new route goes uncounted, as the
                // whole RIB would leave it; a route removed by one writer
                // frees its slot, which only the whole RIB names: the next
                // writer's new route takes it (after its grace period).
                let enc = Encapsulator::builder()
                    .lookup(lookup)
                    .max_routes(4096, 4096)
                    .max_counted_routes(4)
                    .pinned()
                    .attach(VethLab::HOST_IF, XdpMode::Generic)
                    .expect("attach");
                drop(enc);
                let counted = |enc: &Encapsulator, p: lnetd_host_encap::IpNetwork| {
                    enc.route_counters(Table::Main, p).unwrap().expect("a route").counted
                };
                let prefixes: Vec<lnetd_host_encap::IpNetwork> =
                    (0..8).map(|i| format!("192.0.2.{}/32", i * 8).parse().unwrap()).collect();
                let mut uncounted = 0;
                for p in &prefixes {
                    let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, *p).unwrap();
                    enc.set_route(Table::Main, &Route::with_policy(*p, "555".parse().unwrap())).unwrap();
                    match counted(&enc, *p) {
                        true => assert_eq!(uncounted, 0, "{lookup:?}: {p} counted after one was not"),
                        false => uncounted += 1,
                    }
                }
                assert!(uncounted > 0 && counted(&Encapsulator::open(VethLab::HOST_IF).unwrap(), prefixes[0]));
                let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, prefixes[0]).unwrap();
                assert!(enc.remove(Table::Main, prefixes[0]).unwrap());
                drop(enc);
                let fresh: lnetd_host_encap::IpNetwork = "198.51.100.0/24".parse().unwrap();
                let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, fresh).unwrap();
                enc.set_route(Table::Main, &Route::with_policy(fresh, "556".parse().unwrap())).unwrap();
                assert!(counted(&enc, fresh), "{lookup:?}: the new route takes the slot freed by the removal");
                assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
                drop(enc);
                // Detached, a handle adopted for one prefix goes on with every
                // route; attached again, it pins them all, not the few it read.
                let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, fresh).unwrap();
                let before = Encapsulator::open(VethLab::HOST_IF).map(|e| e.routes(Table::Main).unwrap());
                assert!(before.is_err(), "owned by the handle above");
                enc.detach().unwrap();
                let held = enc.routes(Table::Main).unwrap();
                assert_eq!(held.len(), prefixes.len(), "{lookup:?}: every route, not the one read");
                enc.attach(VethLab::HOST_IF, XdpMode::Generic).unwrap();
                drop(enc);
                let enc = Encapsulator::open(VethLab::HOST_IF).unwrap();
                assert_eq!(enc.routes(Table::Main).unwrap(), held);
                assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
                enc.detach().unwrap();
                // A table used up to its highest slot, with one freed below
                // it: the new prefix takes it (after its grace period), as the
                // whole RIB would, instead of being refused as "full".
                let enc = Encapsulator::builder()
                    .lookup(lookup)
                    .max_routes(8, 8)
                    .pinned()
                    .attach(VethLab::HOST_IF, XdpMode::Generic)
                    .expect("attach");
                drop(enc);
                let mut added = Vec::new();
                for i in 0..16u32 {
                    let p: lnetd_host_encap::IpNetwork = format!("10.{i}.0.0/16").parse().unwrap();
                    let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, p).unwrap();
                    match enc.set_route(Table::Main, &Route::with_policy(p, "600".parse().unwrap())) {
                        Ok(()) => added.push(p),
                        Err(lnetd_host_encap::errors::RouteError::TableFull { family: "IPv4", .. }) => break,
                        Err(e) => panic!("{lookup:?}: {p}: {e}"),
                    }
                }
                assert!(!added.is_empty() && added.len() < 16, "{lookup:?}: {added:?}");
                let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, added[0]).unwrap();
                assert!(enc.remove(Table::Main, added[0]).unwrap());
                drop(enc);
                std::thread::sleep(Duration::from_millis(1100));
                let last: lnetd_host_encap::IpNetwork = "10.200.0.0/16".parse().unwrap();
                let enc = AdoptOptions::default().open_for(VethLab::HOST_IF, last).unwrap();
                enc.set_route(Table::Main, &Route::with_policy(last, "601".parse().unwrap()))
                    .unwrap_or_else(|e| panic!("{lookup:?}: a slot was freed: {e}"));
                assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
                enc.detach().unwrap();
            })
            .unwrap();
    }
}
