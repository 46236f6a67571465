//! The benchmarks' baseline programs do what the benchmarks say they do:
//! the floor swaps the MACs and sends the frame back untouched otherwise;
//! the minimal push adds exactly one label (16, S=1, the IP TTL). A ratio
//! against a baseline that did less (or more) would mean nothing.

mod common;

use common::{entries, frame, in_test_run_netns, labelled, privileged};
use lnetd_host_encap::diagnostics::XdpAction;
use lnetd_host_encap::testing::generator::Generator;
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::testing::{BaselineProgram, PassProgram};
use lnetd_host_encap::XdpMode;
use std::time::Duration;

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn floor_and_minimal_push_emit_what_the_benchmarks_assume() {
    privileged("floor_and_minimal_push_emit_what_the_benchmarks_assume");
    in_test_run_netns("baselines", || {
        let floor = BaselineProgram::floor().expect("floor");
        let min_push = BaselineProgram::min_push().expect("minimal push");
        for (dst, ttl) in [("198.51.100.7", 64), ("2001:db8::9", 7)] {
            let input = frame(dst).ttl(ttl).payload(64).build();

            let out = floor.test_run(&input.bytes).expect("floor run");
            assert_eq!(out.action, XdpAction::Tx, "{dst}: the floor sends back");
            let mut reflected = input.bytes.clone();
            reflected[..6].copy_from_slice(&input.bytes[6..12]);
            reflected[6..12].copy_from_slice(&input.bytes[..6]);
            assert_eq!(out.frame, reflected, "{dst}: the floor only swaps the MACs");

            let out = min_push.test_run(&input.bytes).expect("minimal push run");
            assert_eq!(out.action, XdpAction::Tx, "{dst}: the minimal push sends back");
            assert_eq!(out.frame, labelled(&input, &entries(&[16], 0, ttl)), "{dst}: one label, S=1, the IP TTL");
        }
        // A VLAN-tagged frame is not the minimal push's business: passed untouched.
        let tagged = frame("198.51.100.7").vlan(0x8100, 10).build();
        let out = min_push.test_run(&tagged.bytes).expect("minimal push run");
        assert_eq!((out.action, out.frame), (XdpAction::Pass, tagged.bytes.clone()));
    });
}

/// The generator the wire benchmarks drive sends every frame it is given,
/// byte for byte, whether it sends them whole or as the first frame plus a
/// patch (frames that differ only in an address and a checksum), as live
/// frames where the kernel runs them and recirculating on any kernel.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_generator_sends_each_frame_as_given_whole_or_patched() {
    privileged("the_generator_sends_each_frame_as_given_whole_or_patched");
    let lab = VethLab::new().expect("veth lab");
    // A veth delivers its peer's XDP_TX frames only while it runs XDP itself.
    let _pass = lab.host.run(|| PassProgram::attach(VethLab::HOST_IF)).expect("ns").expect("xdp on h0");
    let capture = lab.host.run(|| Capture::open(VethLab::HOST_IF)).expect("ns").expect("capture on h0");
    let mut generator = Generator::load().expect("generator");
    // The generated frames h0 received (not its own replies or seeds, nor other traffic), in order.
    let received = |len: usize| -> Vec<Vec<u8>> {
        capture
            .drain(Duration::from_millis(300), Duration::from_secs(3))
            .expect("capture")
            .into_iter()
            .filter(|c| !c.outgoing && c.bytes.len() == len && c.bytes[..6] == VethLab::HOST_MAC)
            .map(|c| c.bytes)
            .collect()
    };
    let live = generator.live_frames();
    match &live {
        Ok(()) => {
            for (what, frames, patched) in cases() {
                generator.whole_frames(!patched);
                generator.set_frames(&frames).expect("frames");
                while capture.next(Duration::from_millis(50)).expect("capture").is_some() {}
                lab.router
                    .run(|| generator.send(VethLab::ROUTER_IF, frames.len() as u32 * 2))
                    .expect("ns")
                    .expect("send");
                let got = received(frames[0].len());
                let want: Vec<Vec<u8>> = frames.iter().chain(&frames).cloned().collect();
                assert_eq!(got, want, "{what}: each frame in turn, twice, as given");
            }
            // A smaller set after 5 of 6 frames were sent: it starts from its first frame.
            generator.whole_frames(false);
            let six: Vec<Vec<u8>> = (1..=6).map(|i| to_host(&format!("198.51.100.{i}"), 64)).collect();
            let two: Vec<Vec<u8>> = (7..=8).map(|i| to_host(&format!("198.51.100.{i}"), 64)).collect();
            // The cursor is per CPU: both sends from CPU 0.
            let from_cpu0 = |generator: &Generator, n: u32| {
                pin_to_cpu0();
                generator.send(VethLab::ROUTER_IF, n)
            };
            generator.set_frames(&six).expect("frames");
            lab.router.run(|| from_cpu0(&generator, 5)).expect("ns").expect("send");
            generator.set_frames(&two).expect("frames");
            while capture.next(Duration::from_millis(300)).expect("capture").is_some() {}
            lab.router.run(|| from_cpu0(&generator, 2)).expect("ns").expect("send");
            assert_eq!(received(two[0].len()), two, "a cursor beyond the new set starts it over");
        }
        Err(e) => println!("this kernel refuses live frames ({e}): only the recirculating generator can run here"),
    }

    // Recirculating: each seed h0 sends is rewritten on r0 into the next
    // frame and sent back to h0, which passes it up to the capture. h0's
    // IPv6 stack would answer some of those (no route: ICMPv6), and r0
    // would turn the answers into more frames: it is switched off.
    lab.host
        .run(|| std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", VethLab::HOST_IF), "1"))
        .expect("ns")
        .expect("IPv6 off on h0");
    lab.router.run(|| generator.recirculate_on(VethLab::ROUTER_IF)).expect("ns").expect("recirculate on r0");
    for (what, frames, patched) in cases() {
        generator.whole_frames(!patched);
        generator.set_frames(&frames).expect("frames");
        generator.reset_returned().expect("reset");
        while capture.next(Duration::from_millis(50)).expect("capture").is_some() {}
        // The cursor is per CPU, and the frames are rewritten where the seeds were sent from.
        lab.host
            .run(|| {
                pin_to_cpu0();
                generator.start_recirculating(VethLab::HOST_IF, frames.len() as u32 * 2)
            })
            .expect("ns")
            .expect("seeds");
        let got = received(frames[0].len());
        generator.stop_recirculating().expect("stop");
        let want: Vec<Vec<u8>> = frames.iter().chain(&frames).cloned().collect();
        assert_eq!(got, want, "recirculating, {what}: each frame in turn, twice, as given");
        let counts = generator.returned().expect("counts");
        assert_eq!((counts.frames, counts.resent), (0, want.len() as u64), "{what}: seeds are sent on, not counted");
    }

    // With the floor on h0 the frames come back to r0 and go round until stopped.
    drop(_pass);
    let floor = BaselineProgram::floor().expect("floor");
    let _floor = lab.host.run(|| floor.attach(VethLab::HOST_IF, XdpMode::Native)).expect("ns").expect("floor on h0");
    let frames: Vec<Vec<u8>> = (1..=6).map(|i| to_host(&format!("198.51.100.{i}"), 64)).collect();
    generator.set_frames(&frames).expect("frames");
    generator.reset_returned().expect("reset");
    lab.host.run(|| generator.start_recirculating(VethLab::HOST_IF, 4)).expect("ns").expect("seeds");
    std::thread::sleep(Duration::from_millis(200));
    let going = generator.returned().expect("counts");
    generator.stop_recirculating().expect("stop");
    std::thread::sleep(Duration::from_millis(50));
    let stopped = generator.returned().expect("counts");
    std::thread::sleep(Duration::from_millis(100));
    assert!(going.frames > 10_000, "4 seeds went round {} times in 0.2 s", going.frames);
    assert_eq!(going.labelled, 0, "the floor labels nothing");
    // Going round is being sent again; r0 may still count a frame it did not
    // send (CI once counted 1 after the stop), never resent.
    let later = generator.returned().expect("counts");
    assert_eq!(later.resent, stopped.resent, "nothing goes round once stopped: {stopped:?}, then {later:?}");
    assert!(
        later.frames - stopped.frames <= 8,
        "at most a few of h0's own frames after the stop: {stopped:?}, then {later:?}"
    );
    // Every frame r0 sent came back; anything more r0 did not send (CI once
    // counted 2). Not ARP or multicast: counting only unicast non-ARP frames
    // left 1-2 extra in two runs of three (2026-12-08); what they are is open.
    assert!(
        stopped.resent <= stopped.frames && stopped.frames <= stopped.resent + 8,
        "each frame sent came back once, beside at most a few of h0's own: {stopped:?}"
    );
}

fn to_host(dst: &str, ttl: u8) -> Vec<u8> {
    frame(dst).dst_mac(VethLab::HOST_MAC).ttl(ttl).payload(30).build().bytes
}

fn cases() -> [(&'static str, Vec<Vec<u8>>, bool); 3] {
    [
        // Destinations and their checksums: within one patch.
        ("IPv4 destinations", (1..=6).map(|i| to_host(&format!("198.51.100.{i}"), 64)).collect(), true),
        ("IPv6 destinations", (1..=6).map(|i| to_host(&format!("2001:db8::{i:x}"), 64)).collect(), true),
        // A TTL and a destination 14 bytes apart plus the checksum: still one patch; whole when asked.
        ("sent whole", (1..=6).map(|i| to_host(&format!("198.51.100.{i}"), 60 + i)).collect(), false),
    ]
}

fn pin_to_cpu0() {
    let mut cpu0 = nix::sched::CpuSet::new();
    cpu0.set(0).expect("cpu 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu0).expect("pin to cpu 0");
}
