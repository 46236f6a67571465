//! The address watcher (feature `watch`): addresses added to and removed from
//! the host are tracked with no API call, within a second, on the wire (real
//! packets from the router namespace through the attached program) and in
//! explain, and a route for exactly such an address is set aside while the
//! address exists and restored after.

mod common;

use lnetd_host_encap::{Route, Table};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::privileged;
use etherparse::{EtherType, Ethernet2Slice, NetSlice, SlicedPacket};
use lnetd_host_encap::testing::lab::{attached_xdp_program, traffic, Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{diagnostics::Probe, labels::decode_stack, Encapsulator, IpNetwork, Label, LabelStack, XdpMode};

/// The bound the issue sets on tracking an address change.
const WITHIN: Duration = Duration::from_secs(1);

/// What became of one datagram sent from the router to `dst`.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// It came back labelled with these labels, top first.
    Labelled(Vec<u32>),
    /// It left the router and did not come back labelled.
    NotLabelled,
}

fn destination(ip_packet: &[u8]) -> Option<IpAddr> {
    match SlicedPacket::from_ip(ip_packet).ok()?.net? {
        NetSlice::Ipv4(v4) => Some(IpAddr::V4(v4.header().destination_addr())),
        NetSlice::Ipv6(v6) => Some(IpAddr::V6(v6.header().destination_addr())),
        _ => None,
    }
}

/// Sends one UDP datagram with a unique payload from the router to `dst` and
/// reads what comes back on r0.
fn send(lab: &VethLab, capture: &Capture, dst: IpAddr) -> Fate {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let payload = format!("lnetd-host-encap address watch {}", SEQ.fetch_add(1, Ordering::Relaxed)).into_bytes();
    let has_payload = |frame: &[u8]| frame.windows(payload.len()).any(|w| w == payload.as_slice());
    lab.router.run(|| traffic::udp(SocketAddr::new(dst, 5001), 64, &payload)).expect("ns").expect("udp");
    let frames = capture.drain(Duration::from_millis(100), Duration::from_secs(2)).expect("capture");
    assert!(frames.iter().any(|f| f.outgoing && has_payload(&f.bytes)), "{dst}: the datagram did not leave the router");
    for f in frames.iter().filter(|f| !f.outgoing && has_payload(&f.bytes)) {
        let Ok(eth) = Ethernet2Slice::from_slice_without_fcs(&f.bytes) else { continue };
        if eth.ether_type() != EtherType(0x8847) {
            continue;
        }
        let (stack, inner) = decode_stack(eth.payload_slice()).expect("an MPLS frame decodes");
        assert_eq!(destination(inner), Some(dst), "the labelled packet's destination");
        return Fate::Labelled(stack.iter().map(|e| e.label).collect());
    }
    Fate::NotLabelled
}

/// Sends datagrams to `dst` until one meets `want`, and returns how long after
/// `since` that datagram was sent; fails past [`WITHIN`].
fn until(lab: &VethLab, capture: &Capture, dst: IpAddr, since: Instant, want: &Fate) -> Duration {
    loop {
        let sent = since.elapsed();
        let fate = send(lab, capture, dst);
        if fate == *want {
            return sent;
        }
        assert!(sent < WITHIN, "{dst}: still {fate:?} {sent:?} after the change, want {want:?}");
    }
}

fn outcome(enc: &Encapsulator, dst: IpAddr) -> &'static str {
    enc.explain(&Probe::to(dst)).expect("explain").outcome
}

fn has_route(enc: &Encapsulator, prefix: IpNetwork) -> bool {
    enc.routes(Table::Main).expect("routes").iter().any(|r| r.prefix == prefix)
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn host_addresses_are_tracked_without_an_api_call() {
    privileged("host_addresses_are_tracked_without_an_api_call");
    let lab = VethLab::new().expect("veth lab");
    // A veth delivers XDP_TX frames only if its peer runs XDP.
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).expect("ns").expect("xdp on r0");
    let enc = Arc::new(
        lab.host.run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Auto)).expect("ns").expect("attach"),
    );
    let default = Label::new(1_000_000).unwrap();
    enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse().unwrap(), default.into())).unwrap();
    enc.set_route(Table::Main, &Route::new("::/0".parse().unwrap(), default.into())).unwrap();
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).expect("ns").expect("capture");
    let watcher = lab.host.run(|| lnetd_host_encap::encap::AddressWatcher::start(&enc)).expect("ns").expect("watch");
    assert!(watcher.is_running());

    // Before: the addresses are not the host's, the default route labels them.
    let (v4, v6): (IpAddr, IpAddr) = ("10.77.0.5".parse().unwrap(), "2001:db8:77::5".parse().unwrap());
    for dst in [v4, v6] {
        assert_eq!(send(&lab, &capture, dst), Fate::Labelled(vec![1_000_000]), "{dst} before it is the host's");
    }

    // Added on h0, with no API call: delivered to the host, never labelled.
    for (dst, add) in
        [(v4, ["addr", "add", "10.77.0.5/32", "dev", "h0"]), (v6, ["addr", "add", "2001:db8:77::5/128", "dev", "h0"])]
    {
        let local_before = enc.stats().expect("stats").local.packets;
        let mut args = add.to_vec();
        if dst.is_ipv6() {
            args.push("nodad");
        }
        lab.host.ip(&args).expect("ip addr add");
        let added = Instant::now();
        let took = until(&lab, &capture, dst, added, &Fate::NotLabelled);
        assert_eq!(outcome(&enc, dst), "local", "{dst}: explain once the address exists");
        assert!(
            enc.stats().expect("stats").local.packets > local_before,
            "{dst}: the host received it (counted local)"
        );
        eprintln!("{dst}: added, not labelled {took:?} after");
    }

    // Removed: labelled again by the covering default route.
    for (dst, del) in [(v4, "10.77.0.5/32"), (v6, "2001:db8:77::5/128")] {
        lab.host.ip(&["addr", "del", del, "dev", "h0"]).expect("ip addr del");
        let took = until(&lab, &capture, dst, Instant::now(), &Fate::Labelled(vec![1_000_000]));
        assert_eq!(outcome(&enc, dst), "labelled", "{dst}: explain once the address is gone");
        eprintln!("{dst}: removed, labelled {took:?} after");
    }

    // A route for exactly the address: set aside while the address exists,
    // restored after.
    let exact: IpNetwork = "10.77.0.6/32".parse().unwrap();
    let dst = exact.ip();
    enc.set_route(Table::Main, &Route::new(exact, "16077/16078".parse::<LabelStack>().unwrap())).unwrap();
    assert_eq!(send(&lab, &capture, dst), Fate::Labelled(vec![16077, 16078]));
    lab.host.ip(&["addr", "add", "10.77.0.6/32", "dev", "h0"]).expect("ip addr add");
    let added = Instant::now();
    until(&lab, &capture, dst, added, &Fate::NotLabelled);
    assert_eq!(outcome(&enc, dst), "local");
    assert!(!has_route(&enc, exact), "the route for the address is set aside while the address exists");
    lab.host.ip(&["addr", "del", "10.77.0.6/32", "dev", "h0"]).expect("ip addr del");
    let removed = Instant::now();
    until(&lab, &capture, dst, removed, &Fate::Labelled(vec![16077, 16078]));
    assert!(has_route(&enc, exact), "the route is restored once the address is gone");
    assert_eq!(
        enc.explain(&Probe::to(dst)).expect("explain").route.map(|(_, r)| r.prefix),
        Some(exact),
        "the restored route is the one chosen"
    );

    assert!(watcher.refreshes() >= 6, "one refresh per change at least: {}", watcher.refreshes());
    assert_eq!(enc.diagnostics().verify().expect("verify"), vec![], "the maps are what the RIB says");
    let stopping = Instant::now();
    drop(watcher);
    assert!(stopping.elapsed() < Duration::from_secs(1), "the watcher stops promptly: {:?}", stopping.elapsed());
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_watcher_stops_once_the_encapsulator_is_gone() {
    privileged("the_watcher_stops_once_the_encapsulator_is_gone");
    let lab = VethLab::new().expect("veth lab");
    let enc = Arc::new(
        lab.host
            .run(|| Encapsulator::builder().attach(VethLab::HOST_IF, XdpMode::Generic))
            .expect("ns")
            .expect("attach"),
    );
    let watcher = lab.host.run(|| lnetd_host_encap::encap::AddressWatcher::start(&enc)).expect("ns").expect("watch");
    drop(enc);
    let attached = lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).expect("ns").expect("query");
    assert_eq!(attached, None, "dropping the encapsulator detached it: the watcher does not keep it alive");
    let deadline = Instant::now() + Duration::from_secs(2);
    while watcher.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!watcher.is_running(), "the watcher stops once the encapsulator is gone");
}
