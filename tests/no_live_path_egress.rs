//! A policy with no live path that says drop, on the egress hook (tcx): the
//! host's own packets to its routes are shot (TC_ACT_SHOT) and counted as
//! `no_live_path_dropped`, none reaches the wire, labelled or not; the same
//! object made valid again (one write) labels them. The XDP side is in
//! tests/packet_table.rs (fixtures/policy.rs) and tests/sbfd.rs: the stage
//! is the same code for both hooks.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::privileged;
use lnetd_host_encap::encap::Hook;
use lnetd_host_encap::labels::NoLivePath;
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::{Encapsulator, Policy, Route, Table};

/// Frames of UDP to port 9000 that reached the router in `window`: (labelled, plain).
fn arrived(capture: &Capture, window: Duration) -> (usize, usize) {
    let (mut labelled, mut plain) = (0, 0);
    let end = std::time::Instant::now() + window;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let Ok(Some(f)) = capture.next(left.min(Duration::from_millis(50))) else { continue };
        if f.outgoing || f.bytes.len() < 14 {
            continue;
        }
        let (ip, is_labelled) = match [f.bytes[12], f.bytes[13]] {
            [0x88, 0x47] => match lnetd_host_encap::labels::decode_stack(&f.bytes[14..]) {
                Ok((_, ip)) => (ip.to_vec(), true),
                Err(_) => continue,
            },
            [0x08, 0x00] => (f.bytes[14..].to_vec(), false),
            _ => continue,
        };
        if ip.len() >= 24 && ip[9] == 17 && u16::from_be_bytes([ip[22], ip[23]]) == 9000 {
            if is_labelled {
                labelled += 1;
            } else {
                plain += 1;
            }
        }
    }
    (labelled, plain)
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn on_egress_a_dropping_policy_shoots_the_hosts_own_packets_and_counts_them() {
    privileged("on_egress_a_dropping_policy_shoots_the_hosts_own_packets_and_counts_them");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    let router = VethLab::ROUTER_V4.to_string();
    lab.host.ip(&["route", "add", "198.51.100.0/24", "via", &router, "dev", h0, "mtu", "1400"]).unwrap();
    lab.host.exec("ethtool", "ethtool", &["-K", h0, "tso", "off"]).unwrap();
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 9000);
    let socket = lab.host.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    // A shot datagram may be refused to the sender (ENOBUFS): that is the point.
    let send = |n: usize| {
        for _ in 0..n {
            let _ = socket.send_to(&[7u8; 64], dst);
        }
    };
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).unwrap().unwrap();
    let enc = lab.host.run(|| Encapsulator::builder().attach(h0, Hook::Egress)).unwrap().expect("attach egress");
    let prefix = "198.51.100.0/24".parse().unwrap();
    let dropping = Policy::invalid_with("blue", NoLivePath::Drop).unwrap();
    enc.set_route(Table::Main, &Route::with_policy(prefix, dropping)).unwrap();
    // The router's address is resolved on the first send, whatever becomes of it.
    send(1);
    std::thread::sleep(Duration::from_millis(200));
    while capture.next(Duration::from_millis(10)).ok().flatten().is_some() {}

    let before = enc.stats().unwrap();
    send(20);
    let (labelled, plain) = arrived(&capture, Duration::from_millis(300));
    let delta = enc.stats().unwrap().since(&before);
    assert_eq!((labelled, plain), (0, 0), "nothing leaves: {delta:?}");
    assert_eq!(delta.no_live_path_dropped.packets, 20, "each counted as dropped for want of a live path: {delta:?}");
    assert_eq!((delta.labelled.packets, delta.no_route.packets), (0, 0), "{delta:?}");

    // Valid again: one write to the object, and the same route labels.
    let update = enc.update_policy(&"16001".parse::<Policy>().unwrap().with_name("blue").unwrap()).unwrap();
    assert!(update.is_some_and(|u| u.routes == 1), "the route's object was rewritten");
    let before = enc.stats().unwrap();
    send(20);
    let (labelled, plain) = arrived(&capture, Duration::from_millis(300));
    let delta = enc.stats().unwrap().since(&before);
    assert_eq!((labelled, plain, delta.labelled.packets), (20, 0, 20), "{delta:?}");
    assert_eq!(delta.no_live_path_dropped.packets, 0, "{delta:?}");
    enc.detach().unwrap();
}
