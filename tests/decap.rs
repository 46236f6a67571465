//! The decapsulator: a BPF_PROG_TEST_RUN table (every stack shape through
//! the real program, asserting the action, the exact output bytes and the
//! one counter that moved), the pop set's API, and a wire test where the
//! router sends labelled frames and a UDP socket on the host receives the
//! datagrams they carry.
//!
//! Expected frames are written from RFC 3032 and the issue: the input frame
//! is built as the IP frame it must become, then labelled by hand.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{frame, in_test_run_netns, privileged, raw_frame, FrameSpec};
use lnetd_host_encap::testing::lab::{traffic, VethLab};
use lnetd_host_encap::{
    counters::Counter, decap::DecapStats, decap::Decapsulator, diagnostics::XdpAction, encap::AttachedMode,
    encap::OtherLabels, labels::LabelStackEntry, Label, XdpMode,
};

/// One entry: label, S bit, TTL 64, TC 0.
fn lse(label: u32, bottom: bool) -> LabelStackEntry {
    LabelStackEntry { label, tc: 0, bottom, ttl: 64 }
}

/// `labels` as a stack, S on the last.
fn stack(labels: &[u32]) -> Vec<LabelStackEntry> {
    labels.iter().enumerate().map(|(i, &l)| lse(l, i + 1 == labels.len())).collect()
}

/// The frame `spec` builds, with `entries` between its L2 header (innermost
/// ethertype now 0x8847) and its IP packet.
fn labelled(spec: &FrameSpec, entries: &[LabelStackEntry]) -> Vec<u8> {
    let ip = spec.build();
    let mut out = ip.bytes[..ip.l2_len - 2].to_vec();
    out.extend_from_slice(&0x8847u16.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out.extend_from_slice(&ip.bytes[ip.l2_len..]);
    out
}

/// An MPLS frame (no VLAN) with `entries`, then `payload`, nothing else (no padding).
fn mpls_raw(entries: &[LabelStackEntry], payload: &[u8]) -> Vec<u8> {
    let mut out = [&common::DST_MAC[..], &common::SRC_MAC[..], &0x8847u16.to_be_bytes()[..]].concat();
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out.extend_from_slice(payload);
    out
}

/// Which counter a case must move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Popped,
    PoppedPartial,
    NotMpls,
    OtherPassed,
    OtherDropped,
    Malformed,
}

impl Verdict {
    fn counter(self, s: &DecapStats) -> Counter {
        match self {
            Verdict::Popped => s.popped,
            Verdict::PoppedPartial => s.popped_partial,
            Verdict::NotMpls => s.not_mpls,
            Verdict::OtherPassed => s.other_label_passed,
            Verdict::OtherDropped => s.other_label_dropped,
            Verdict::Malformed => s.malformed,
        }
    }
}

struct Case {
    name: &'static str,
    pop: &'static [u32],
    other: OtherLabels,
    input: Vec<u8>,
    /// The frame handed on: `None` for a drop; the input itself when untouched.
    output: Option<Vec<u8>>,
    verdict: Verdict,
}

const NULLS: &[u32] = &[0, 2];

fn untouched(name: &'static str, other: OtherLabels, input: Vec<u8>, verdict: Verdict) -> Case {
    Case { name, pop: NULLS, other, output: Some(input.clone()), input, verdict }
}

fn cases() -> Vec<Case> {
    let v4 = frame("10.200.0.2");
    let v6 = frame("fd00:200::2");
    let v4_vlan = frame("10.200.0.2").vlan(0x8100, 100);
    let v6_qinq = frame("fd00:200::2").vlan(0x88a8, 200).vlan(0x8100, 100);
    let pass = OtherLabels::Pass;
    let drop = OtherLabels::Drop;
    let mut sixteen = vec![0u32; 15];
    sixteen.push(2);
    let zeros_no_s: Vec<LabelStackEntry> = (0..16).map(|_| lse(0, false)).collect();
    let mut seventeen = zeros_no_s.clone();
    seventeen.push(lse(0, true));
    vec![
        Case {
            name: "label 0 over IPv4: popped, 0x0800",
            pop: NULLS,
            other: pass,
            input: labelled(&v4, &stack(&[0])),
            output: Some(v4.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            name: "label 2 over IPv6: popped, 0x86dd",
            pop: NULLS,
            other: pass,
            input: labelled(&v6, &stack(&[2])),
            output: Some(v6.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            // The label does not decide the ethertype: the IP version does.
            name: "label 0 over IPv6: popped, 0x86dd from the version nibble",
            pop: NULLS,
            other: pass,
            input: labelled(&v6, &stack(&[0])),
            output: Some(v6.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            name: "[5000, 2] with 5000 configured: both popped",
            pop: &[0, 2, 5000],
            other: drop,
            input: labelled(&v6, &stack(&[5000, 2])),
            output: Some(v6.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            name: "16 entries, all in the set, S on the 16th: all popped",
            pop: NULLS,
            other: pass,
            input: labelled(&v4, &stack(&sixteen)),
            output: Some(v4.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            name: "one VLAN tag: popped, tag kept, 0x0800 inside it",
            pop: NULLS,
            other: pass,
            input: labelled(&v4_vlan, &stack(&[0])),
            output: Some(v4_vlan.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            name: "two VLAN tags (QinQ) and [5000, 2]: popped, tags kept, 0x86dd inside",
            pop: &[0, 2, 5000],
            other: pass,
            input: labelled(&v6_qinq, &stack(&[5000, 2])),
            output: Some(v6_qinq.build().bytes),
            verdict: Verdict::Popped,
        },
        Case {
            // Documented choice: the entries in the set are popped, the rest stays MPLS.
            name: "[0, 1000] with only 0 in the set (pass): 0 popped, 1000 kept under 0x8847",
            pop: NULLS,
            other: pass,
            input: labelled(&v4, &stack(&[0, 1000])),
            output: Some(labelled(&v4, &[lse(1000, true)])),
            verdict: Verdict::PoppedPartial,
        },
        Case {
            name: "[0, 1000] with only 0 in the set, VLAN (pass): tag kept, 1000 kept",
            pop: NULLS,
            other: pass,
            input: labelled(&v4_vlan, &stack(&[0, 1000])),
            output: Some(labelled(&v4_vlan, &[lse(1000, true)])),
            verdict: Verdict::PoppedPartial,
        },
        Case {
            name: "[0, 1000] with only 0 in the set (drop): dropped",
            pop: NULLS,
            other: drop,
            input: labelled(&v4, &stack(&[0, 1000])),
            output: None,
            verdict: Verdict::OtherDropped,
        },
        untouched(
            "top label 1000 not in the set (pass): untouched",
            pass,
            labelled(&v4, &stack(&[1000])),
            Verdict::OtherPassed,
        ),
        untouched(
            "top label 1000 over label 0 (pass): untouched",
            pass,
            labelled(&v4, &stack(&[1000, 0])),
            Verdict::OtherPassed,
        ),
        Case {
            name: "top label 1000 not in the set (drop): dropped",
            pop: NULLS,
            other: drop,
            input: labelled(&v4, &stack(&[1000])),
            output: None,
            verdict: Verdict::OtherDropped,
        },
        Case {
            name: "label 5000 once removed from the set (drop): dropped",
            pop: &[2],
            other: drop,
            input: labelled(&v6, &stack(&[5000, 2])),
            output: None,
            verdict: Verdict::OtherDropped,
        },
        untouched("stack truncated inside the first entry", pass, mpls_raw(&[], &[0x00, 0x00]), Verdict::Malformed),
        untouched(
            "stack truncated: label 0 without S, then the frame ends",
            pass,
            mpls_raw(&[lse(0, false)], &[]),
            Verdict::Malformed,
        ),
        untouched(
            "stack truncated after two entries without S (drop policy too)",
            drop,
            mpls_raw(&[lse(0, false), lse(2, false)], &[0x00]),
            Verdict::Malformed,
        ),
        untouched("label 0 with S and nothing under it", pass, mpls_raw(&[lse(0, true)], &[]), Verdict::Malformed),
        untouched(
            "S never set within 16 entries (16 zeros, then IPv4)",
            pass,
            [&mpls_raw(&zeros_no_s, &[])[..], &v4.ip_packet()].concat(),
            Verdict::Malformed,
        ),
        untouched(
            "S on the 17th entry: beyond the walk",
            pass,
            [&mpls_raw(&seventeen, &[])[..], &v4.ip_packet()].concat(),
            Verdict::Malformed,
        ),
        untouched(
            "payload neither IPv4 nor IPv6 (version 0)",
            pass,
            mpls_raw(&[lse(0, true)], &[0x00; 40]),
            Verdict::Malformed,
        ),
        untouched(
            "payload neither IPv4 nor IPv6 (version 5)",
            drop,
            mpls_raw(&[lse(2, true)], &[0x50; 40]),
            Verdict::Malformed,
        ),
        untouched("IPv4 frame: not MPLS", pass, v4.build().bytes, Verdict::NotMpls),
        untouched(
            "IPv6 frame in a VLAN: not MPLS",
            drop,
            frame("fd00:200::2").vlan(0x8100, 7).build().bytes,
            Verdict::NotMpls,
        ),
        untouched("ARP: not MPLS", drop, raw_frame(0x0806, &[0; 28]).bytes, Verdict::NotMpls),
        untouched(
            "multicast MPLS (0x8848): not ours",
            pass,
            raw_frame(0x8848, &[&lse(0, true).encode()[..], &v4.ip_packet()].concat()).bytes,
            Verdict::NotMpls,
        ),
        untouched(
            "three VLAN tags: not parsed past two",
            pass,
            labelled(&frame("10.200.0.2").vlan(0x88a8, 1).vlan(0x8100, 2).vlan(0x8100, 3), &stack(&[0])),
            Verdict::NotMpls,
        ),
        untouched(
            "VLAN tag truncated",
            pass,
            [&common::DST_MAC[..], &common::SRC_MAC[..], &[0x81, 0x00, 0x00]].concat(),
            Verdict::Malformed,
        ),
    ]
}

/// Runs one case; returns a description of the first mismatch.
fn check(dec: &Decapsulator, case: &Case, ingress: bool) -> Result<(), String> {
    let name = case.name;
    let before = dec.stats().map_err(|e| e.to_string())?;
    let run = if ingress { dec.test_run_ingress(&case.input) } else { dec.test_run(&case.input) }
        .map_err(|e| format!("{name}: {e}"))?;
    let delta = dec.stats().map_err(|e| e.to_string())?.since(&before);
    let one = Counter { packets: 1, bytes: case.input.len() as u64 };
    let action = if case.output.is_some() { XdpAction::Pass } else { XdpAction::Drop };
    if run.action != action {
        return Err(format!("{name}: action {:?}, expected {action:?}", run.action));
    }
    if let Some(want) = &case.output {
        if &run.frame != want {
            return Err(format!("{name}: output differs\n got  {:02x?}\n want {:02x?}", run.frame, want));
        }
    }
    if case.verdict.counter(&delta) != one || delta.total() != one {
        return Err(format!("{name}: counters moved {delta:?}, expected only {:?} by {one:?}", case.verdict));
    }
    Ok(())
}

fn labels(values: &[u32]) -> Vec<Label> {
    values.iter().map(|&v| Label::new(v).expect("test label")).collect()
}

/// Runs every case through a decapsulator of its policy, in XDP or on TC ingress.
fn run_table(cases: &[Case], ingress: bool) {
    let failures = in_test_run_netns("decap", || {
        let mut decaps: HashMap<OtherLabels, Decapsulator> = HashMap::new();
        let mut failures = Vec::new();
        for case in cases {
            let dec = decaps
                .entry(case.other)
                .or_insert_with(|| Decapsulator::builder().other_labels(case.other).load().expect("load"));
            dec.set_pop_labels(&labels(case.pop)).expect("pop set");
            if let Err(e) = check(dec, case, ingress) {
                failures.push(e);
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_packet_table() {
    privileged("decap_packet_table");
    run_table(&cases(), false);
}

/// The same table on TC ingress, where two cases differ by design: no
/// partial pops (an other-label frame), and a stack under a VLAN tag still in
/// the frame is not popped (malformed). In a test run every tag is still in
/// the frame; on an interface the kernel takes the outer one off first, so
/// single-tagged frames are popped there.
fn ingress_cases() -> Vec<Case> {
    cases()
        .into_iter()
        .map(|mut case| {
            let tagged = matches!(case.input.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]));
            let changed = match case.verdict {
                Verdict::PoppedPartial => Some(Verdict::OtherPassed),
                Verdict::Popped if tagged => Some(Verdict::Malformed),
                _ => None,
            };
            if let Some(verdict) = changed {
                case.verdict = verdict;
                case.output = Some(case.input.clone());
            }
            case
        })
        .collect()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_ingress_packet_table() {
    privileged("decap_ingress_packet_table");
    let cases = ingress_cases();
    assert!(cases.iter().filter(|c| c.verdict == Verdict::Popped).count() >= 5, "the table still pops on TC");
    run_table(&cases, true);
}

#[test]
fn case_names_are_unique() {
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "case name used twice: {}", c.name);
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_pop_set_api() {
    privileged("decap_pop_set_api");
    in_test_run_netns("decap-api", || {
        let dec = Decapsulator::builder().load().expect("load");
        assert_eq!(dec.other_labels(), OtherLabels::Pass);
        assert_eq!(dec.pop_labels().expect("read"), labels(&[0, 2]), "default: the explicit nulls");
        let l5000 = Label::new(5000).expect("label");
        assert!(dec.add_pop_label(l5000).expect("add"));
        assert!(!dec.add_pop_label(l5000).expect("add again"));
        assert_eq!(dec.pop_labels().expect("read"), labels(&[0, 2, 5000]));
        assert!(dec.remove_pop_label(Label::IPV4_EXPLICIT_NULL).expect("remove"));
        assert!(!dec.remove_pop_label(Label::IPV4_EXPLICIT_NULL).expect("remove again"));
        dec.set_pop_labels(&labels(&[16, 1_048_575])).expect("set");
        assert_eq!(dec.pop_labels().expect("read"), labels(&[16, 1_048_575]));

        // A full set refuses with the kernel's errno, and keeps what it had.
        let small = Decapsulator::builder().max_pop_labels(2).load().expect("load");
        let err = small.add_pop_label(l5000).expect_err("full");
        assert_eq!(err.errno, nix::errno::Errno::E2BIG, "{err}");
        assert_eq!(small.pop_labels().expect("read"), labels(&[0, 2]));
        assert!(Decapsulator::builder().pop_labels(labels(&[0, 2, 16])).max_pop_labels(2).load().is_err());
        assert!(Decapsulator::builder().max_pop_labels(0).load().is_err());

        // The set changed at run time is the one the program reads.
        let frame = labelled(&frame("10.200.0.2"), &stack(&[16]));
        assert_eq!(dec.test_run(&frame).expect("run").action, XdpAction::Pass);
        assert_eq!(dec.stats().expect("stats").popped.packets, 1);
    });
}

/// Where the decapsulator runs in a wire test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Xdp(XdpMode),
    /// tcx ingress.
    Ingress,
}

/// The router sends labelled frames carrying UDP datagrams to the host's
/// addresses; the host's decapsulator pops the labels and a UDP socket bound
/// in the host namespace receives the datagrams: the kernel accepted the
/// restored IP packets. A frame with a label not in the set is not delivered.
fn run_wire(hook: Hook, expected: AttachedMode) {
    let lab = VethLab::new().expect("veth lab");
    let dec = lab
        .host
        .run(|| {
            let builder = Decapsulator::builder().pop_labels(labels(&[0, 2, 5000]));
            match hook {
                Hook::Xdp(mode) => builder.attach(VethLab::HOST_IF, mode),
                Hook::Ingress => builder.attach_ingress(VethLab::HOST_IF),
            }
        })
        .expect("ns")
        .expect("attach");
    assert_eq!(dec.attachment().map(|a| a.mode), Some(expected));
    let port = 5301;
    let (sock4, sock6) = lab
        .host
        .run(|| {
            let s4 = UdpSocket::bind(SocketAddr::new(VethLab::HOST_V4.into(), port)).expect("bind v4");
            let s6 = UdpSocket::bind(SocketAddr::new(VethLab::HOST_V6.into(), port)).expect("bind v6");
            for s in [&s4, &s6] {
                s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
            }
            (s4, s6)
        })
        .expect("ns");

    let to_host = |v6: bool, payload: usize| {
        let dst = VethLab::host_addr(v6).to_string();
        let mut spec = frame(&dst).l4(common::L4::Udp { sport: 40000, dport: port }).payload(payload);
        spec.src = if v6 { VethLab::ROUTER_V6.into() } else { VethLab::ROUTER_V4.into() };
        spec.src_mac = VethLab::ROUTER_MAC;
        spec.dst_mac = VethLab::HOST_MAC;
        spec
    };
    let sends: Vec<(Vec<u8>, bool, usize)> = vec![
        (labelled(&to_host(false, 10), &stack(&[0])), true, 10),
        (labelled(&to_host(true, 11), &stack(&[2])), true, 11),
        (labelled(&to_host(false, 12), &stack(&[5000, 0])), true, 12),
        // Not ours: passed untouched, and the host (no MPLS stack) does not deliver it.
        (labelled(&to_host(false, 13), &stack(&[1000])), false, 13),
        // Ours on top of one that is not: popped partially (XDP) or passed as an
        // other label (TC); either way it stays MPLS and is not delivered.
        (labelled(&to_host(false, 14), &stack(&[5000, 1000])), false, 14),
        (labelled(&to_host(true, 1400), &stack(&[5000, 2])), true, 1400),
    ];
    let mut bytes_popped = 0u64;
    for (bytes, _, _) in &sends {
        lab.router.run(|| traffic::raw_frame(VethLab::ROUTER_IF, bytes)).expect("ns").expect("send");
    }
    // Tagged frames (802.1Q 100 with priority 5, 802.1ad 200): XDP keeps the
    // tag in the frame; on TC the kernel has taken it off before the program,
    // which must put it back as it was. What the stack gets, seen by an
    // observer after the decapsulator: the tag, and IPv4 as the protocol. (No
    // VLAN device here to deliver to: this kernel has no 802.1Q module.)
    let observer = lab
        .host
        .run(|| lnetd_host_encap::testing::observer::IngressObserver::attach(VethLab::HOST_IF))
        .expect("ns")
        .expect("observer");
    let mut vlan_bytes = 0u64;
    for (i, (tpid, tci)) in [(0x8100u16, (5u16 << 13) | 100), (0x88a8, 200)].into_iter().enumerate() {
        let bytes = labelled(&to_host(false, 30).vlan(tpid, tci), &stack(&[0]));
        lab.router.run(|| traffic::raw_frame(VethLab::ROUTER_IF, &bytes)).expect("ns").expect("send");
        vlan_bytes += bytes.len() as u64;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let seen = loop {
            let seen = observer.read().expect("observed");
            if seen.seen as usize > i || std::time::Instant::now() > deadline {
                break seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            (seen.seen as usize, seen.vlan_proto, seen.vlan_tci, seen.protocol),
            (i + 1, tpid, tci, 0x0800),
            "{hook:?}: the tag as received, the protocol IPv4"
        );
    }
    drop(observer);
    let mut got: Vec<usize> = Vec::new();
    for sock in [&sock4, &sock6] {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert_eq!(from.port(), 40000, "from the router's datagram");
            assert_eq!(&buf[..n], &(0..n).map(|i| i as u8).collect::<Vec<_>>()[..], "payload intact");
            got.push(n);
        }
    }
    got.sort_unstable();
    let mut expected_got: Vec<usize> = sends.iter().filter(|s| s.1).map(|s| s.2).collect();
    expected_got.sort_unstable();
    assert_eq!(got, expected_got, "the datagrams of the popped frames, and only those, are received");
    for (bytes, delivered, _) in &sends {
        if *delivered {
            bytes_popped += bytes.len() as u64;
        }
    }
    bytes_popped += vlan_bytes;
    let stats = dec.stats().expect("stats");
    assert_eq!(stats.popped, Counter { packets: 6, bytes: bytes_popped }, "{stats:?}");
    let (partial, other) = if hook == Hook::Ingress { (0, 2) } else { (1, 1) };
    assert_eq!(stats.popped_partial.packets, partial, "{stats:?}");
    assert_eq!(stats.other_label_passed.packets, other, "{stats:?}");
    assert_eq!(stats.malformed.packets + stats.aborted.packets + stats.other_label_dropped.packets, 0, "{stats:?}");

    assert!(dec.detach().expect("detach").is_some());
    assert!(dec.attachment().is_none());
    assert_eq!(
        lab.host
            .run(|| lnetd_host_encap::testing::lab::attached_xdp_program(VethLab::HOST_IF))
            .expect("ns")
            .expect("query"),
        None,
        "nothing left attached"
    );
    // Detached from either hook: a labelled frame is neither popped nor delivered.
    lab.router.run(|| traffic::raw_frame(VethLab::ROUTER_IF, &sends[0].0)).expect("ns").expect("send");
    let mut buf = [0u8; 2048];
    assert!(sock4.recv_from(&mut buf).is_err(), "nothing popped after detach");
    assert_eq!(dec.stats().expect("stats").popped.packets, 6, "the program no longer runs");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_native_delivers_popped_datagrams() {
    privileged("decap_native_delivers_popped_datagrams");
    run_wire(Hook::Xdp(XdpMode::Native), AttachedMode::Native);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_generic_delivers_popped_datagrams() {
    privileged("decap_generic_delivers_popped_datagrams");
    run_wire(Hook::Xdp(XdpMode::Generic), AttachedMode::Generic);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_ingress_delivers_popped_datagrams() {
    privileged("decap_ingress_delivers_popped_datagrams");
    run_wire(Hook::Ingress, AttachedMode::Ingress);
}

/// Removes a test's own pin roots when dropped (even when the test fails).
struct RootsGuard(lnetd_host_encap::pins::PinRoots);

impl Drop for RootsGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0.bpffs);
        let _ = std::fs::remove_dir_all(&self.0.state);
    }
}

/// A pinned decapsulator keeps popping after its handle is gone, is adopted
/// by `open_at` with its policy, pop set and counters, refuses a second pinned
/// attach, lives apart from an encapsulator's pins, and `detach` removes
/// program and pins.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn decap_pinned_survives_its_handle_and_is_adopted() {
    privileged("decap_pinned_survives_its_handle_and_is_adopted");
    use lnetd_host_encap::{errors::AttachError, errors::PinError, pins::PinRoots, Error};
    use std::os::unix::fs::MetadataExt;

    let id = std::process::id();
    let roots = PinRoots {
        bpffs: format!("/sys/fs/bpf/lhe-test-decap-{id}").into(),
        state: std::env::temp_dir().join(format!("lhe-test-decap-{id}")),
    };
    let _cleanup = RootsGuard(roots.clone());
    let lab = VethLab::new().expect("veth lab");
    let netns = lab.host.run(|| std::fs::metadata("/proc/thread-self/ns/net").expect("netns").ino()).expect("ns");
    let pinned = || Decapsulator::builder().pop_labels(labels(&[0, 5000])).other_labels(OtherLabels::Drop);

    let dec = lab
        .host
        .run(|| pinned().pinned_at(roots.clone()).attach(VethLab::HOST_IF, XdpMode::Generic))
        .expect("ns")
        .expect("attach pinned");
    let dir = roots.bpffs.join("decap").join(format!("net{netns}")).join(VethLab::HOST_IF);
    assert_eq!(dec.pin_dir(), Some(dir.clone()));
    for pin in ["link", "maps/pop_labels", "maps/decap_counters"] {
        assert!(dir.join(pin).exists(), "{pin} pinned in {}", dir.display());
    }
    assert!(!roots.bpffs.join(format!("net{netns}")).exists(), "nothing where an encapsulator pins");
    drop(dec);

    // The program keeps popping with no handle left.
    let sock = lab
        .host
        .run(|| {
            let s = UdpSocket::bind(SocketAddr::new(VethLab::HOST_V4.into(), 5302)).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            s
        })
        .expect("ns");
    let mut spec = frame(&VethLab::HOST_V4.to_string()).l4(common::L4::Udp { sport: 40001, dport: 5302 });
    spec.src_mac = VethLab::ROUTER_MAC;
    spec.dst_mac = VethLab::HOST_MAC;
    let bytes = labelled(&spec, &stack(&[5000, 0]));
    lab.router.run(|| traffic::raw_frame(VethLab::ROUTER_IF, &bytes)).expect("ns").expect("send");
    let mut buf = [0u8; 256];
    let (n, _) = sock.recv_from(&mut buf).expect("the datagram, popped by the pinned program");
    assert_eq!(n, spec.payload_len);

    // Adopted with its policy, pop set and counters; a second pinned attach is refused.
    let adopted = lab.host.run(|| Decapsulator::open_at(VethLab::HOST_IF, &roots)).expect("ns").expect("open");
    assert_eq!(adopted.other_labels(), OtherLabels::Drop);
    assert_eq!(adopted.pop_labels().expect("read"), labels(&[0, 5000]));
    assert_eq!(adopted.attachment().map(|a| a.mode), Some(AttachedMode::Generic));
    assert_eq!(adopted.stats().expect("stats").popped, Counter { packets: 1, bytes: bytes.len() as u64 });
    let again = lab.host.run(|| pinned().pinned_at(roots.clone()).attach(VethLab::HOST_IF, XdpMode::Generic));
    assert!(
        matches!(again.expect("ns"), Err(Error::Attach(AttachError::Pin(PinError::AlreadyPinned { .. })))),
        "a second pinned decapsulator on the same interface is refused"
    );
    let busy = lab.host.run(|| Decapsulator::open_at(VethLab::HOST_IF, &roots)).expect("ns");
    assert!(matches!(busy, Err(Error::Pin(PinError::Busy { .. }))), "one owner at a time: {busy:?}");

    // Detach removes program and pins; there is nothing left to adopt.
    assert!(adopted.detach().expect("detach").is_some());
    assert!(!dir.exists(), "pins removed");
    assert_eq!(
        lab.host
            .run(|| lnetd_host_encap::testing::lab::attached_xdp_program(VethLab::HOST_IF))
            .expect("ns")
            .expect("query"),
        None
    );
    let gone = lab.host.run(|| Decapsulator::open_at(VethLab::HOST_IF, &roots)).expect("ns");
    assert!(matches!(gone, Err(Error::Pin(PinError::NotPinned { .. }))), "{gone:?}");
}
