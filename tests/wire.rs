//! Namespace tests: the encapsulator attached to a real veth, real packets
//! from kernel sockets, and the frames that really come back, captured with
//! AF_PACKET and parsed with etherparse (MPLS with the crate's own decoder).

mod common;

use lnetd_host_encap::Label;
use lnetd_host_encap::{Route, Table};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::privileged;
use etherparse::{EtherType, Ethernet2Slice, NetSlice, SlicedPacket};
use lnetd_host_encap::testing::lab::{traffic, Capture, Captured, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{encap::AttachedMode, labels::decode_stack, labels::LabelStackEntry, Encapsulator, XdpMode};

/// What one sent packet must look like on the way back.
struct Probe {
    dst: IpAddr,
    ttl: u8,
    /// Labels expected, top first; empty: must not come back labelled.
    labels: &'static [u32],
    send: fn(IpAddr, u8),
}

fn udp(dst: IpAddr, ttl: u8) {
    traffic::udp(SocketAddr::new(dst, 5001), ttl, b"lnetd-host-encap wire test").expect("udp");
}
fn ping(dst: IpAddr, ttl: u8) {
    traffic::ping(dst, ttl, 1).expect("ping");
}
/// TCP leaves with the system default TTL / hop limit (64): probes give 64.
fn syn(dst: IpAddr, _ttl: u8) {
    traffic::tcp_syn(SocketAddr::new(dst, 80), Duration::from_millis(300));
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("probe address")
}

fn probes() -> Vec<Probe> {
    vec![
        Probe { dst: ip("198.51.100.7"), ttl: 64, labels: &[16001, 16002], send: udp },
        Probe { dst: ip("203.0.113.9"), ttl: 1, labels: &[1_000_000], send: udp },
        Probe { dst: ip("203.0.113.10"), ttl: 33, labels: &[1_000_000], send: ping },
        Probe { dst: ip("198.51.100.8"), ttl: 64, labels: &[16001, 16002], send: syn },
        Probe { dst: ip("2001:db8:100::7"), ttl: 64, labels: &[24001, 24002, 24003], send: udp },
        Probe { dst: ip("2001:db9::1"), ttl: 1, labels: &[1_000_000], send: udp },
        Probe { dst: ip("2001:db8:100::8"), ttl: 200, labels: &[24001, 24002, 24003], send: ping },
        Probe { dst: ip("2001:db9::2"), ttl: 64, labels: &[1_000_000], send: syn },
        // The host's own addresses: delivered to its stack, never labelled.
        Probe { dst: IpAddr::V4(VethLab::HOST_V4), ttl: 64, labels: &[], send: udp },
        Probe { dst: IpAddr::V6(VethLab::HOST_V6), ttl: 64, labels: &[], send: udp },
    ]
}

/// The IP packet of a frame and its ethertype, after the Ethernet header.
fn l3(frame: &[u8]) -> Option<(EtherType, &[u8])> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).ok()?;
    Some((eth.ether_type(), eth.payload_slice()))
}

fn destination(ip_packet: &[u8]) -> Option<IpAddr> {
    match SlicedPacket::from_ip(ip_packet).ok()?.net? {
        NetSlice::Ipv4(v4) => Some(IpAddr::V4(v4.header().destination_addr())),
        NetSlice::Ipv6(v6) => Some(IpAddr::V6(v6.header().destination_addr())),
        _ => None,
    }
}

fn run_lab(mode: XdpMode, expected_mode: AttachedMode) {
    let lab = VethLab::new().expect("veth lab");
    // A veth delivers XDP_TX frames only if its peer runs XDP.
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).expect("ns").expect("xdp on r0");
    let enc = lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, mode)).expect("ns").expect("attach");
    assert_eq!(enc.attachment().map(|a| a.mode), Some(expected_mode));
    enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse().unwrap(), Label::new(1_000_000).unwrap().into()))
        .unwrap();
    enc.set_route(Table::Main, &Route::new("::/0".parse().unwrap(), Label::new(1_000_000).unwrap().into())).unwrap();
    enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse().unwrap(), "16001/16002".parse().unwrap()))
        .unwrap();
    enc.set_route(Table::Main, &Route::new("2001:db8:100::/48".parse().unwrap(), "24001/24002/24003".parse().unwrap()))
        .unwrap();

    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).expect("ns").expect("capture");
    let probes = probes();
    lab.router
        .run(|| {
            for p in &probes {
                (p.send)(p.dst, p.ttl);
            }
        })
        .expect("ns");
    let frames = capture.drain(Duration::from_millis(500), Duration::from_secs(10)).expect("capture");
    let sent: Vec<&Captured> = frames.iter().filter(|f| f.outgoing).collect();
    let labelled: Vec<&Captured> =
        frames.iter().filter(|f| !f.outgoing && l3(&f.bytes).is_some_and(|(t, _)| t == EtherType(0x8847))).collect();

    let mut labelled_bytes_in = 0u64;
    for p in &probes {
        let out: Vec<&[u8]> = sent
            .iter()
            .filter_map(|f| l3(&f.bytes))
            .filter(|(_, pkt)| destination(pkt) == Some(p.dst))
            .map(|(_, pkt)| pkt)
            .collect();
        assert_eq!(out.len(), 1, "{}: exactly one packet should leave the router", p.dst);
        let original = out[0];
        let back: Vec<(&[u8], Vec<LabelStackEntry>, &[u8])> = labelled
            .iter()
            .filter_map(|f| {
                let (_, payload) = l3(&f.bytes)?;
                let (stack, inner) = decode_stack(payload).ok()?;
                (destination(inner) == Some(p.dst)).then_some((f.bytes.as_slice(), stack, inner))
            })
            .collect();
        if p.labels.is_empty() {
            assert!(back.is_empty(), "{}: a local destination came back labelled", p.dst);
            continue;
        }
        assert_eq!(back.len(), 1, "{}: exactly one labelled frame expected, got {}", p.dst, back.len());
        let (frame, stack, inner) = &back[0];
        assert_eq!(frame[0..6], VethLab::ROUTER_MAC, "{}: destination MAC must be the router (swapped)", p.dst);
        assert_eq!(frame[6..12], VethLab::HOST_MAC, "{}: source MAC must be the host (swapped)", p.dst);
        assert_eq!(stack.iter().map(|e| e.label).collect::<Vec<_>>(), p.labels, "{}: labels", p.dst);
        let bottoms: Vec<bool> = stack.iter().map(|e| e.bottom).collect();
        assert_eq!(bottoms.iter().filter(|b| **b).count(), 1, "{}: one S bit", p.dst);
        assert_eq!(bottoms.last(), Some(&true), "{}: S on the last entry", p.dst);
        assert!(stack.iter().all(|e| e.ttl == p.ttl && e.tc == 0), "{}: TTL copied into every entry: {stack:?}", p.dst);
        assert_eq!(*inner, original, "{}: the inner packet must be byte-identical to what was sent", p.dst);
        labelled_bytes_in += (frame.len() - 4 * stack.len()) as u64;
    }

    let stats = enc.stats().expect("stats");
    assert_eq!(stats.labelled.packets, labelled.len() as u64, "stats agree with the capture: {stats:?}");
    assert_eq!(stats.labelled.bytes, labelled_bytes_in, "labelled bytes are the frames as received");
    assert_eq!(stats.local.packets, 2, "the two packets to the host's addresses are counted local: {stats:?}");
    assert_eq!(stats.no_route.packets + stats.aborted.packets + stats.mtu_dropped.packets, 0, "{stats:?}");

    assert!(enc.detach().expect("detach").is_some());
    assert!(enc.attachment().is_none());

    // tcpdump, an independent decoder, reads the captured frames as MPLS.
    let pcap = std::env::temp_dir().join(format!("lhe-wire-{}-{mode}.pcap", std::process::id()));
    lnetd_host_encap::testing::lab::write_pcap(&pcap, &labelled.iter().map(|f| f.bytes.clone()).collect::<Vec<_>>())
        .expect("pcap");
    let out = std::process::Command::new("tcpdump").args(["-e", "-vv", "-n", "-r"]).arg(&pcap).output();
    let _ = std::fs::remove_file(&pcap);
    let out = out.expect("tcpdump (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MPLS (label 16001, tc 0, ttl 64)"), "{text}");
    assert!(text.contains("(label 16002, tc 0, [S], ttl 64)"), "{text}");
    assert!(text.contains("(label 1000000, tc 0, [S], ttl 1)"), "{text}");
    assert!(text.contains("(label 24003, tc 0, [S], ttl 200)"), "{text}");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn native_xdp_labels_real_traffic() {
    privileged("native_xdp_labels_real_traffic");
    run_lab(XdpMode::Native, AttachedMode::Native);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn generic_xdp_labels_real_traffic() {
    privileged("generic_xdp_labels_real_traffic");
    run_lab(XdpMode::Generic, AttachedMode::Generic);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn auto_mode_reports_native_on_veth() {
    privileged("auto_mode_reports_native_on_veth");
    run_lab(XdpMode::Auto, AttachedMode::Native);
}
