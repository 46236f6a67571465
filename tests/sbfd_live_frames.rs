//! The S-BFD probes sent as XDP live frames are, on the wire, the bytes the
//! socket path sends. One engine, one set of lists (1, 2 and 5 labels, IPv4
//! and IPv6 endpoints), captured on the router's end of the veth: first
//! while that end runs no XDP program (a veth then takes no XDP-redirected
//! frames, the engine must see it and send through its socket), then after
//! an XDP_PASS program is attached there (the engine must move to live
//! frames on its own, within its one-second recheck). Nothing answers, so
//! every probe keeps announcing Down and each list's frame is constant:
//! the two captures must hold the same frames, byte for byte.
//!
//! And the answer filter: answers are counted in the kernel only when they
//! carry our discriminator and the reflector's; others are counted invalid
//! and bring no list up.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::privileged;
use lnetd_host_encap::bgp::sbfd::packet::{Control, SBFD_PORT};
use lnetd_host_encap::bgp::sbfd::{Engine, EngineStats, ListKey, Phase, SbfdConfig};
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{decap::Decapsulator, encap::OtherLabels, Label, LabelStack};

const V6_ENDPOINT: &str = "2001:db8::1";

fn lists() -> Vec<ListKey> {
    [("192.0.2.1", "16001"), ("192.0.2.1", "16001/16002"), ("192.0.2.9", "16001/16002/16003/16004/16005")]
        .into_iter()
        .chain([(V6_ENDPOINT, "16001/16007")])
        .map(|(e, s)| ListKey { endpoint: e.parse().unwrap(), stack: s.parse().unwrap() })
        .collect()
}

/// The distinct labelled frames `capture` receives over `window`.
fn probes(capture: &Capture, window: Duration) -> BTreeSet<Vec<u8>> {
    capture
        .drain(Duration::from_millis(100), window)
        .unwrap()
        .into_iter()
        .filter(|f| !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47]))
        .map(|f| f.bytes)
        .collect()
}

fn delta(a: EngineStats, b: EngineStats) -> (u64, u64, u64) {
    (b.sent - a.sent, b.sent_live - a.sent_live, b.send_errors - a.send_errors)
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn live_frames_put_the_socket_paths_bytes_on_the_wire_and_fall_back_when_the_peer_cannot_take_them() {
    privileged("live_frames_put_the_socket_paths_bytes_on_the_wire_and_fall_back_when_the_peer_cannot_take_them");
    let lab = VethLab::new().expect("lab");
    let r = VethLab::ROUTER_IF;
    let capture = lab.router.run(|| Capture::open(r).and_then(|c| c.with_buffer(16 << 20))).unwrap().unwrap();
    let mut config = SbfdConfig::new(VethLab::HOST_IF).with_timers(10, 3, 1_000).unwrap();
    config.router_mac = Some(VethLab::ROUTER_MAC);
    config.reflectors.insert(V6_ENDPOINT.parse::<IpAddr>().unwrap(), 7);
    assert!(config.live_frames, "live frames are the default");
    let engine = lab.host.run(move || Engine::start(config, || {})).unwrap().expect("engine");
    engine.set_lists(lists());

    // The peer runs no XDP: the socket carries every probe.
    std::thread::sleep(Duration::from_millis(200));
    let _ = capture.drain(Duration::from_millis(5), Duration::from_millis(50));
    let before = engine.stats();
    let by_socket = probes(&capture, Duration::from_millis(400));
    let (sent, live, errors) = delta(before, engine.stats());
    assert!(sent > 0, "probes left while the peer runs no XDP program");
    assert_eq!((live, errors), (0, 0), "no live frames (nor losses) while the veth cannot take them: {sent} sent");

    // The peer runs an XDP program: the engine moves to live frames, where
    // the kernel runs them; where it refuses them (EPERM even to root on
    // some builds), the engine must find out and lose no probe doing so.
    let _pass = lab.router.run(|| PassProgram::attach(r)).unwrap().unwrap();
    if let Some(refused) = common::live_frames_refused() {
        println!("this kernel refuses live frames ({refused}): checking that the engine keeps to its socket");
        std::thread::sleep(Duration::from_millis(1_500));
        let _ = capture.drain(Duration::from_millis(5), Duration::from_millis(50));
        let before = engine.stats();
        let after_refusal = probes(&capture, Duration::from_millis(400));
        let (sent, live, errors) = delta(before, engine.stats());
        assert!(sent > 0, "probes still leave after the kernel refused a live-frame run");
        assert_eq!((live, errors), (0, 0), "none as live frames, none lost: {sent} sent");
        assert_eq!(after_refusal, by_socket, "the same frames through the socket");
        assert_eq!(engine.stats().send_errors, 0, "the refused run cost no probe");
        // Many ticks since the peer's program: the first refusal ended the live path.
        assert_eq!(engine.stats().live_runs_failed, 1, "one refused run, then no more tried");
        return;
    }
    let t0 = Instant::now();
    let mut moved = engine.stats();
    while moved.sent_live == 0 && t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
        moved = engine.stats();
    }
    assert!(moved.sent_live > 0, "the engine moved to live frames within 3 s of the peer's XDP program");
    println!("moved to live frames {:?} after the peer's XDP program", t0.elapsed());
    std::thread::sleep(Duration::from_millis(50));
    let _ = capture.drain(Duration::from_millis(5), Duration::from_millis(50));
    let before = engine.stats();
    let live_frames = probes(&capture, Duration::from_millis(400));
    let (sent, live, errors) = delta(before, engine.stats());
    println!(
        "socket path: {} distinct frames; live frames: {} distinct, {sent} sent",
        by_socket.len(),
        live_frames.len()
    );
    assert!(
        sent > 0 && live == sent && errors == 0,
        "every probe as a live frame: {sent} sent, {live} live, {errors} errors"
    );
    assert_eq!(engine.stats().live_runs_failed, 0, "no live-frame run failed where the kernel runs them");

    assert_eq!(by_socket.len(), lists().len(), "one constant frame per list through the socket");
    assert_eq!(live_frames, by_socket, "live frames carry exactly the socket path's bytes");
    let lengths: BTreeSet<usize> = live_frames.iter().map(Vec::len).collect();
    assert_eq!(lengths.len(), 4, "frames of four lengths (1, 2 and 5 labels, IPv6): the tail is cut per probe");
}

/// How the test reflector answers.
const RIGHT: u8 = 0;
const WRONG_REFLECTOR: u8 = 1;
const WRONG_LOCAL: u8 = 2;

/// A lab whose router reflects the probes to 192.0.2.1 of the lists of
/// `labels` (which its decapsulator pops), answering as `mode` says, and an
/// engine on the host counting the answers with the filter. Dropping it
/// stops the reflector first.
struct FilterLab {
    engine: Engine,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    reflector: Option<std::thread::JoinHandle<()>>,
    _decap: Decapsulator,
    _pass: PassProgram,
    _lab: VethLab,
}

impl FilterLab {
    fn new(labels: &[Label], mode: u8) -> FilterLab {
        let lab = VethLab::new().expect("lab");
        let r = VethLab::ROUTER_IF;
        let endpoint = Ipv4Addr::new(192, 0, 2, 1);
        lab.router.ip(&["addr", "add", &format!("{endpoint}/32"), "dev", "lo"]).unwrap();
        let pass = lab.router.run(|| PassProgram::attach(r)).unwrap().unwrap();
        let decap = lab
            .router
            .run(|| {
                Decapsulator::builder()
                    .max_pop_labels(labels.len() as u32)
                    .pop_labels(labels.to_vec())
                    .other_labels(OtherLabels::Drop)
                    .attach_ingress(r)
            })
            .unwrap()
            .unwrap();
        let mode = Arc::new(AtomicU8::new(mode));
        let stop = Arc::new(AtomicBool::new(false));
        let socket = lab.router.run(|| UdpSocket::bind(SocketAddr::new(endpoint.into(), SBFD_PORT)).unwrap()).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let reflector = {
            let (mode, stop) = (Arc::clone(&mode), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 128];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                    let Ok(probe) = Control::decode(&buf[..n]) else { continue };
                    let mut answer = probe.reflected(1_000);
                    match mode.load(Ordering::Relaxed) {
                        WRONG_REFLECTOR => answer.my_discriminator ^= 1,
                        WRONG_LOCAL => answer.your_discriminator = answer.your_discriminator.wrapping_add(16_384),
                        _ => {}
                    }
                    let _ = socket.send_to(&answer.encode(), from);
                }
            })
        };
        let mut config = SbfdConfig::new(VethLab::HOST_IF).with_timers(10, 3, 0).unwrap();
        config.router_mac = Some(VethLab::ROUTER_MAC);
        config.answer_filter = true;
        let engine = lab.host.run(move || Engine::start(config, || {})).unwrap().expect("engine");
        engine.set_lists(labels.iter().map(|l| ListKey { endpoint: endpoint.into(), stack: LabelStack::single(*l) }));
        FilterLab { engine, mode, stop, reflector: Some(reflector), _decap: decap, _pass: pass, _lab: lab }
    }
}

impl Drop for FilterLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.reflector.take() {
            let _ = t.join();
        }
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_answer_filter_counts_only_answers_that_carry_both_discriminators() {
    privileged("the_answer_filter_counts_only_answers_that_carry_both_discriminators");
    let lab = FilterLab::new(&[Label::new(16001).unwrap()], WRONG_REFLECTOR);
    let (engine, mode) = (&lab.engine, &lab.mode);
    let phase = |engine: &Engine| engine.phases().first().map(|(_, p)| *p);

    for wrong in [WRONG_REFLECTOR, WRONG_LOCAL] {
        mode.store(wrong, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let (before, t) = (engine.stats(), Instant::now());
        std::thread::sleep(Duration::from_millis(200));
        let after = engine.stats();
        assert!(
            matches!(phase(engine), Some(Phase::Down { .. })),
            "answers with a wrong discriminator ({wrong}) bring no list up"
        );
        assert_eq!(after.answers, before.answers, "no answer counted ({wrong})");
        assert!(after.invalid > before.invalid, "the wrong answers counted invalid ({wrong}) over {:?}", t.elapsed());
    }
    mode.store(RIGHT, Ordering::Relaxed);
    let t = Instant::now();
    while !matches!(phase(engine), Some(Phase::Up { .. })) && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(phase(engine), Some(Phase::Up { .. })), "the right answers bring the list up");
    let stats = engine.stats();
    assert!(stats.answers > 0 && stats.answers_filtered == stats.answers, "answers counted by the filter: {stats:?}");
}

/// Many lists, so that their answer records span many words of the
/// answered bitmap: every list comes up through the filter (a bitmap read
/// with the wrong stride lost every other word's lists).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_answer_filter_brings_up_every_one_of_many_lists() {
    privileged("the_answer_filter_brings_up_every_one_of_many_lists");
    const LISTS: u32 = 300;
    let labels: Vec<Label> = (0..LISTS).map(|n| Label::new(16_001 + n).unwrap()).collect();
    let lab = FilterLab::new(&labels, RIGHT);
    let engine = &lab.engine;
    // Ever seen up, not all up at once: the lab's one-thread reflector can
    // fall 30 ms behind on this machine, and a list it left unanswered that
    // long is rightly down until its next answer.
    let mut seen_up = BTreeSet::new();
    let t = Instant::now();
    while seen_up.len() < LISTS as usize && t.elapsed() < Duration::from_secs(10) {
        seen_up.extend(engine.phases().into_iter().filter(|(_, p)| matches!(p, Phase::Up { .. })).map(|(k, _)| k));
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = engine.stats();
    let never: Vec<String> = labels
        .iter()
        .filter(|l| !seen_up.iter().any(|k| k.stack == LabelStack::single(**l)))
        .map(|l| l.to_string())
        .collect();
    assert!(never.is_empty(), "every list answered comes up; never seen up: {never:?} ({stats:?})");
    assert!(stats.answers > 0 && stats.answers_filtered == stats.answers, "answers counted by the filter: {stats:?}");
}
