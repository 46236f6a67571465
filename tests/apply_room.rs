//! An apply that swaps a table filling 90% of its capacity for a different
//! one: old and new never fit at once, so some removals go first. Under
//! traffic, with both lookups, every datagram comes back labelled with its
//! old route's stack or its new route's (here the default route, which covers
//! the removed prefixes), never another.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{privileged, PinGuard};
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{desired::DesiredRoute, encap::Ipv4Lookup, DesiredState, Encapsulator, XdpMode};

const CAPACITY: u32 = 1000;
/// Routes of each table besides the default: with it, 90% of the capacity.
const N: u32 = 899;
const DEFAULT_LABEL: u32 = 999_999;

fn route(prefix: String, label: u32) -> DesiredRoute {
    DesiredRoute { prefix, policy: label.to_string(), tc: None, table: None, entropy_label: None, policy_name: None }
}

/// The prefix of route `i` of a table starting at `10.<second>.0.0`.
fn prefix_octets(second: u8, i: u32) -> [u8; 3] {
    [10, second + (i / 256) as u8, (i % 256) as u8]
}

/// The default route and `N` /24s from `10.<second>.0.0/24` on, labels from `base`.
fn table(second: u8, base: u32) -> DesiredState {
    let mut routes = vec![route("0.0.0.0/0".into(), DEFAULT_LABEL)];
    routes.extend((0..N).map(|i| {
        let [a, b, c] = prefix_octets(second, i);
        route(format!("{a}.{b}.{c}.0/24"), base + i)
    }));
    DesiredState { routes, ..DesiredState::default() }
}

/// Which table and route a destination belongs to, if any.
fn owner(dst: Ipv4Addr, tables: &[(u8, u32)]) -> Option<u32> {
    let [a, b, c, _] = dst.octets();
    tables.iter().find_map(|(second, base)| {
        let i = (u32::from(b) - u32::from(*second)) * 256 + u32::from(c);
        (a == 10 && b >= *second && i < N).then_some(base + i)
    })
}

fn swap_under_traffic(lookup: Ipv4Lookup) {
    let (a, b) = ((0u8, 100_000u32), (8u8, 300_000u32));
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");
    let enc = lab
        .host
        .run(|| {
            Encapsulator::builder().lookup(lookup).max_routes(CAPACITY, 64).attach(VethLab::HOST_IF, XdpMode::Native)
        })
        .unwrap()
        .unwrap();
    enc.apply(table(a.0, a.1), lnetd_host_encap::ApplyOptions::default()).unwrap();
    let capture =
        lab.router.run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(64 << 20))).unwrap().unwrap();
    let socket = lab.router.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    let stop = AtomicBool::new(false);
    let (sent, got) = std::thread::scope(|s| {
        let receiver = s.spawn(|| common::labelled_ipv4(&capture, &stop));
        let sender = s.spawn(|| {
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Alternately into the old table's prefixes and the new one's.
                let (second, _) = if sent % 2 == 0 { a } else { b };
                let [x, y, z] = prefix_octets(second, sent.wrapping_mul(7919) % N);
                let dst = Ipv4Addr::new(x, y, z, 9);
                socket.send_to(b"x", SocketAddr::new(IpAddr::V4(dst), 9)).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(300));
        for (from, to) in [(a, b), (b, a), (a, b)] {
            let report = enc
                .apply(table(to.0, to.1), lnetd_host_encap::ApplyOptions::default())
                .unwrap_or_else(|e| panic!("{lookup:?}: {e}"));
            assert_eq!((report.added.len(), report.removed.len()), (N as usize, N as usize), "{from:?} -> {to:?}");
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{lookup:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (sender.join().unwrap(), receiver.join().unwrap())
    });
    assert_eq!(got.len() as u32, sent, "{lookup:?}: every datagram came back labelled");
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for (dst, stack) in &got {
        let own = owner(*dst, &[a, b]).expect("a destination of one of the tables");
        let what = match stack[..] {
            [l] if l == own => "its own route",
            [DEFAULT_LABEL] => "the default route",
            _ => panic!("{lookup:?}: {dst} came back with {stack:?}: neither its old nor its new route"),
        };
        *seen.entry(what).or_insert(0) += 1;
    }
    // Traffic ran through the swaps: both outcomes were met.
    assert_eq!(seen.len(), 2, "{lookup:?}: {seen:?}");
    println!("{lookup:?}: {sent} datagrams during 3 swaps of {N} routes in {CAPACITY}: {seen:?}");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn swapping_a_table_at_90_percent_of_capacity_fits_and_never_mislabels() {
    privileged("swapping_a_table_at_90_percent_of_capacity_fits_and_never_mislabels");
    swap_under_traffic(Ipv4Lookup::Dir24_8);
    swap_under_traffic(Ipv4Lookup::LpmTrie);
}
