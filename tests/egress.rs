//! Host mode, egress: the host's OWN packets leaving an interface are
//! labelled by the tcx program, with the MACs the kernel chose kept, big
//! UDP datagrams fragmented by the kernel under the route MTU arrive as
//! labelled fragments, UDP_SEGMENT (GSO) sends are labelled per segment, and
//! a TSO-capable uplink is refused with a message that says what to change;
//! link-local destinations, and those the kernel sends to an on-link
//! neighbour rather than through a gateway, leave unlabelled whatever route
//! covers them.

mod common;

use lnetd_host_encap::{Route, Table};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::privileged;
use etherparse::{NetSlice, SlicedPacket};
use lnetd_host_encap::diagnostics::Probe;
use lnetd_host_encap::encap::{AttachedMode, EncapsulatorBuilder, Hook};
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::{errors::AttachError, Encapsulator, Error};

/// MTU the routes through h0 get: 1500 less two labels.
const ROUTE_MTU: usize = 1492;

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_hosts_own_packets_are_labelled_on_egress() {
    privileged("the_hosts_own_packets_are_labelled_on_egress");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    let router = VethLab::ROUTER_V4.to_string();
    lab.host
        .ip(&["route", "add", "198.51.100.0/24", "via", &router, "dev", h0, "mtu", &ROUTE_MTU.to_string()])
        .unwrap();
    lab.host.exec("ethtool", "ethtool", &["-K", h0, "tso", "on"]).unwrap();

    // A TSO device is refused, with what to do.
    match lab.host.run(|| Encapsulator::builder().attach(h0, Hook::Egress)).unwrap() {
        Err(Error::Attach(e @ AttachError::TsoEnabled { .. })) => {
            assert!(e.to_string().contains(&format!("ethtool -K {h0} tso off")), "{e}");
        }
        other => panic!("egress on a TSO device: {:?}", other.map(|e| e.attachment())),
    }
    // TSO off (as attach_egress asks) and UDP segmentation offload off: the
    // kernel then cuts super-packets in software after the hook (GSO stays
    // on), copying Ethernet and labels into every segment, which is what a
    // NIC without MPLS segmentation gets. A veth with the offloads on would
    // hand the super-packet on whole.
    lab.host.exec("ethtool", "ethtool", &["-K", h0, "tso", "off", "tx-udp-segmentation", "off"]).unwrap();
    let enc = lab.host.run(|| Encapsulator::builder().attach(h0, Hook::Egress)).unwrap().expect("attach egress");
    assert_eq!(enc.attachment().map(|a| a.mode), Some(AttachedMode::Egress));
    enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse().unwrap(), "16001/16002".parse().unwrap()))
        .unwrap();

    let capture =
        lab.router.run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(32 << 20))).unwrap().unwrap();
    let stop = AtomicBool::new(false);
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 9000);
    let (sent, frames) = std::thread::scope(|s| {
        let receiver = s.spawn(|| common::labelled_frames(&capture, &stop));
        let sent = lab.host.run(|| -> std::io::Result<()> {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            // Small datagrams, then one of 20,000 bytes the kernel fragments.
            for i in 0..10u8 {
                sock.send_to(&[i; 100], dst)?;
            }
            sock.send_to(&[0xab; 20_000], dst)?;
            // UDP_SEGMENT: one GSO send of 8 segments of 1,000 bytes.
            common::set_udp_segment(&sock, 1000)?;
            sock.send_to(&[0xcd; 8_000], dst)?;
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sent, receiver.join().unwrap())
    });
    sent.expect("namespace").expect("sends");
    let mut small = 0;
    let mut fragments = 0;
    let mut segments = 0;
    for (stack, inner) in &frames {
        let labels: Vec<u32> = stack.iter().map(|e| e.label).collect();
        assert_eq!(labels, [16001, 16002], "every frame carries the route's stack");
        assert!(inner.len() + 8 <= 1500, "a {}-byte IP packet under 8 bytes of labels exceeds the MTU", inner.len());
        assert_eq!(stack[0].ttl, 64, "TTL copied from the IP header");
        let packet = SlicedPacket::from_ip(inner).expect("an IP packet under the labels");
        let Some(NetSlice::Ipv4(ip)) = &packet.net else { panic!("IPv4 under the labels") };
        assert_eq!(ip.header().destination_addr(), Ipv4Addr::new(198, 51, 100, 7));
        let header = ip.header();
        if header.more_fragments() || header.fragments_offset().value() > 0 {
            fragments += 1;
        } else {
            match inner.len() - 20 - 8 {
                100 => small += 1,
                1000 => segments += 1,
                n => panic!("a {n}-byte datagram"),
            }
        }
    }
    assert_eq!(small, 10, "every small datagram labelled");
    assert_eq!(
        fragments,
        20_008usize.div_ceil((ROUTE_MTU - 20) / 8 * 8),
        "every fragment of the 20 kB datagram labelled"
    );
    assert_eq!(segments, 8, "every UDP_SEGMENT segment labelled");
    // The hook sees a GSO super-packet once (segmented after it): counted as
    // one packet of its full length.
    let c = enc.route_counters(Table::Main, "198.51.100.0/24".parse().unwrap()).unwrap().unwrap();
    assert_eq!(c.labelled.packets as usize, small + fragments + 1, "the route counted every packet the hook labelled");

    // A 70/30 policy: each flow (here, a source port) takes one list, in proportion.
    enc.set_route(
        Table::Main,
        &Route::with_policy("203.0.113.0/24".parse().unwrap(), "17001@7,17002@3".parse().unwrap()),
    )
    .unwrap();
    let stop = AtomicBool::new(false);
    let flows = 2_000;
    lab.host.ip(&["route", "add", "203.0.113.0/24", "via", &router, "dev", h0, "mtu", &ROUTE_MTU.to_string()]).unwrap();
    let (sent, frames) = std::thread::scope(|s| {
        let receiver = s.spawn(|| common::labelled_frames(&capture, &stop));
        let sent = lab.host.run(|| -> std::io::Result<()> {
            for _ in 0..flows {
                let sock = UdpSocket::bind("0.0.0.0:0")?;
                sock.send_to(b"flow", SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 9001))?;
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sent, receiver.join().unwrap())
    });
    sent.expect("namespace").expect("sends");
    assert_eq!(frames.len(), flows, "every flow's datagram labelled");
    let first = frames.iter().filter(|(stack, _)| stack[0].label == 17001).count();
    assert!(frames.iter().all(|(stack, _)| matches!(stack[0].label, 17001 | 17002)));
    let share = first as f64 / flows as f64;
    assert!((share - 0.7).abs() < 0.05, "the 7-weight list carried {share:.3} of the flows");
}

/// The host's egress encapsulator as `builder` attaches it (TSO off), under
/// default routes of label 16001 for both families.
fn egress_under_default_routes(lab: &VethLab, builder: EncapsulatorBuilder) -> Encapsulator {
    let h0 = VethLab::HOST_IF;
    lab.host.exec("ethtool", "ethtool", &["-K", h0, "tso", "off"]).unwrap();
    let enc = lab.host.run(|| builder.attach(h0, Hook::Egress)).unwrap().expect("attach egress");
    for default in ["0.0.0.0/0", "::/0"] {
        enc.set_route(Table::Main, &Route::new(default.parse().unwrap(), "16001".parse().unwrap())).unwrap();
    }
    enc
}

/// Three pings from the host to `dst`, all answered. The router namespace
/// takes no MPLS: a labelled echo request is never answered, so this
/// proves the requests left unlabelled.
fn ping_answered(lab: &VethLab, dst: &str) {
    lab.host
        .exec("ping", "iputils-ping", &["-c", "3", "-i", "0.2", "-W", "2", dst])
        .unwrap_or_else(|e| panic!("ping {dst} under default routes: {e}"));
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn link_local_destinations_leave_unlabelled_under_default_routes() {
    privileged("link_local_destinations_leave_unlabelled_under_default_routes");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    // Fixed link-local addresses (nodad: usable at once), as a router's
    // next hop learned from its advertisements would be.
    for (ns, iface, v6, v4) in [
        (&lab.host, h0, "fe80::2/64", "169.254.7.2/16"),
        (&lab.router, VethLab::ROUTER_IF, "fe80::1/64", "169.254.7.1/16"),
    ] {
        ns.ip(&["addr", "add", v6, "dev", iface, "nodad"]).unwrap();
        ns.ip(&["addr", "add", v4, "dev", iface]).unwrap();
    }
    // Link-local addresses are on-link too: labelling on-link neighbours
    // leaves the link-local stage alone to prove it.
    let enc = egress_under_default_routes(&lab, Encapsulator::builder().label_on_link(true));
    let before = enc.stats().unwrap();
    for dst in [format!("fe80::1%{h0}"), "169.254.7.1".into()] {
        ping_answered(&lab, &dst);
    }
    let after = enc.stats().unwrap();
    assert_eq!(after.labelled.packets, before.labelled.packets, "nothing link-local was labelled");
    assert!(after.local.packets >= before.local.packets + 6, "the echo requests counted as local: {after:?}");
    // The same host still labels what is not link-local.
    let explained = enc.explain(&Probe::to("fe80::1".parse().unwrap())).unwrap();
    assert_eq!((explained.outcome, explained.route), ("local", None), "explain agrees with the program");
    let routed = enc.explain(&Probe::to("fec0::1".parse().unwrap())).unwrap();
    assert_eq!(routed.outcome, "labelled", "just outside fe80::/10 the default route labels");
}

/// What the kernel hands to an on-link neighbour (no gateway in its route:
/// the router's own address, another host of the subnet) would reach that
/// neighbour's MAC with labels it does not switch: a default route must not
/// take the host's BGP session or SSH to its router with it. What goes
/// through the router as gateway is labelled as before.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn on_link_destinations_leave_unlabelled_under_default_routes_and_routed_ones_do_not() {
    privileged("on_link_destinations_leave_unlabelled_under_default_routes_and_routed_ones_do_not");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    // A second address of the subnet on the router's side: another neighbour.
    lab.router.ip(&["addr", "add", "10.200.0.9/24", "dev", VethLab::ROUTER_IF]).unwrap();
    lab.router.ip(&["addr", "add", "fd00:200::9/64", "dev", VethLab::ROUTER_IF, "nodad"]).unwrap();
    lab.host.ip(&["route", "add", "198.51.100.0/24", "via", &VethLab::ROUTER_V4.to_string(), "dev", h0]).unwrap();
    lab.host.ip(&["-6", "route", "add", "2001:db8:7::/48", "via", &VethLab::ROUTER_V6.to_string(), "dev", h0]).unwrap();
    let enc = egress_under_default_routes(&lab, Encapsulator::builder());
    assert_eq!(enc.diagnostics().labels_on_link(), Some(false), "the rule's default, as status shows it");
    let before = enc.stats().unwrap();
    for dst in
        [VethLab::ROUTER_V4.to_string(), "10.200.0.9".into(), VethLab::ROUTER_V6.to_string(), "fd00:200::9".into()]
    {
        ping_answered(&lab, &dst);
    }
    // TCP, as a BGP session or SSH to the router: its packets take the
    // socket's cached route (not the packet's own reference). A closed port
    // answers with a reset at once when the SYN arrives unlabelled; a
    // labelled SYN is never answered.
    for dst in [IpAddr::V4(VethLab::ROUTER_V4), IpAddr::V6(VethLab::ROUTER_V6)] {
        let tried =
            lab.host.run(|| std::net::TcpStream::connect_timeout(&SocketAddr::new(dst, 9), Duration::from_secs(3)));
        let err = tried.unwrap().expect_err("nothing listens on port 9");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "TCP to {dst} (on-link): {err}");
    }
    let after = enc.stats().unwrap();
    assert_eq!(after.labelled.packets, before.labelled.packets, "nothing on-link was labelled: {after:?}");
    assert!(after.local.packets >= before.local.packets + 14, "the echo requests and SYNs counted as local: {after:?}");
    // explain agrees with the wire (a probe has no kernel route of its own:
    // the library asks the kernel for it), and from outside the namespace.
    let explain = |dst: &str| enc.explain(&Probe::to(dst.parse().unwrap())).unwrap();
    for dst in
        [VethLab::ROUTER_V4.to_string(), "10.200.0.9".into(), VethLab::ROUTER_V6.to_string(), "fd00:200::9".into()]
    {
        let e = explain(&dst);
        assert_eq!((e.outcome, e.stack.len(), e.verdict()), ("local", 0, "TC_ACT_OK".to_owned()), "{dst}: {e}");
        assert!(e.route.is_some() && e.to_string().contains("on-link neighbour"), "{dst}: {e}");
    }
    for dst in ["198.51.100.7", "2001:db8:7::7"] {
        assert_eq!(explain(dst).outcome, "labelled", "{dst}: through the router as gateway");
    }
    // A source-based rule: from the host's address, 203.0.113.0/24 is on
    // the link (table 100); from elsewhere it goes through the router. The
    // probe's source is asked with.
    lab.host.ip(&["route", "add", "203.0.113.0/24", "dev", h0, "table", "100"]).unwrap();
    let host_v4 = VethLab::HOST_V4.to_string();
    lab.host.ip(&["rule", "add", "from", &host_v4, "to", "203.0.113.0/24", "lookup", "100"]).unwrap();
    let far: IpAddr = "203.0.113.5".parse().unwrap();
    assert_eq!(enc.explain(&Probe::to(far)).unwrap().outcome, "labelled", "through the router by the main table");
    let from_host = enc.explain(&Probe::to(far).from(IpAddr::V4(VethLab::HOST_V4))).unwrap();
    assert_eq!(from_host.outcome, "local", "on-link by the rule for the host's source: {from_host}");
    // Decided before the on-link stage, whatever the kernel's route says.
    for dst in ["224.0.0.5", "ff02::1"] {
        assert_eq!(explain(dst).outcome, "multicast", "{dst}");
    }
    assert_eq!(enc.stats().unwrap().labelled, after.labelled, "probes are not traffic");

    // Through the router as gateway: labelled by the same default routes.
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).unwrap().unwrap();
    let stop = AtomicBool::new(false);
    let routed: [IpAddr; 2] = ["198.51.100.7".parse().unwrap(), "2001:db8:7::7".parse().unwrap()];
    let (sent, frames) = std::thread::scope(|s| {
        let receiver = s.spawn(|| common::labelled_frames(&capture, &stop));
        let sent = lab.host.run(|| -> std::io::Result<()> {
            for dst in routed {
                let sock = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
                for i in 0..5u8 {
                    sock.send_to(&[i; 100], SocketAddr::new(dst, 9000))?;
                }
            }
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sent, receiver.join().unwrap())
    });
    sent.expect("namespace").expect("sends");
    let mut seen = Vec::new();
    for (stack, inner) in &frames {
        assert_eq!(stack.iter().map(|e| e.label).collect::<Vec<_>>(), [16001], "the default route's label");
        match SlicedPacket::from_ip(inner).expect("an IP packet under the label").net {
            Some(NetSlice::Ipv4(ip)) => seen.push(IpAddr::V4(ip.header().destination_addr())),
            Some(NetSlice::Ipv6(ip)) => seen.push(IpAddr::V6(ip.header().destination_addr())),
            other => panic!("{other:?} under the label"),
        }
    }
    for dst in routed {
        assert_eq!(seen.iter().filter(|d| **d == dst).count(), 5, "every datagram to {dst} labelled: {seen:?}");
    }
    assert_eq!(enc.stats().unwrap().labelled.packets, after.labelled.packets + 10, "the labelled counter agrees");
    enc.detach().unwrap();

    // Opted in (hosts on one link that pop): on-link is labelled too, and
    // stays so in the program an adopting handle loads from the store.
    let _pins = common::PinGuard(&lab.host, h0);
    lab.host
        .run(|| {
            let enc =
                Encapsulator::builder().pinned().label_on_link(true).attach(h0, Hook::Egress).expect("pinned egress");
            enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse().unwrap(), "16001".parse().unwrap())).unwrap();
        })
        .unwrap();
    let router = SocketAddr::new(IpAddr::V4(VethLab::ROUTER_V4), 9000);
    let labelled_to_router = || {
        lab.host.run(|| UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", router))).unwrap().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while let Some(f) = capture.next(deadline.saturating_duration_since(std::time::Instant::now())).unwrap() {
            if !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47][..]) {
                let (stack, inner) = lnetd_host_encap::labels::decode_stack(&f.bytes[14..]).unwrap();
                let dst = inner.get(16..20).map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]));
                return (stack.iter().map(|e| e.label).collect::<Vec<_>>(), dst);
            }
        }
        panic!("no labelled frame to the router's own address");
    };
    assert_eq!(labelled_to_router(), (vec![16001], Some(VethLab::ROUTER_V4)), "label_on_link(true)");
    let adopted = lab.host.run(|| Encapsulator::open(h0)).unwrap().expect("adopt");
    assert_eq!(adopted.diagnostics().labels_on_link(), Some(true), "the adopting handle says so");
    let e = adopted.explain(&Probe::to(IpAddr::V4(VethLab::ROUTER_V4))).unwrap();
    assert_eq!(e.outcome, "labelled", "opted in, explain says labelled too: {e}");
    assert_eq!(labelled_to_router(), (vec![16001], Some(VethLab::ROUTER_V4)), "kept by the adopting handle's program");
    adopted.detach().unwrap();
}

/// A multipath route whose next hops are the router (a gateway) and the
/// link itself, hashed on the ports (`fib_multipath_hash_policy` 1): each
/// flow is labelled or not by the next hop the kernel picks for it, and
/// `explain` of a probe with those ports says what `ip route get ... ipproto
/// udp sport S dport D` says (the kernel is asked with the probe's transport).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn explain_follows_the_kernels_multipath_choice_for_the_probes_ports() {
    privileged("explain_follows_the_kernels_multipath_choice_for_the_probes_ports");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    lab.host
        .run(|| std::fs::write("/proc/sys/net/ipv4/fib_multipath_hash_policy", "1"))
        .unwrap()
        .expect("hash on the ports in the lab's namespace");
    let router = VethLab::ROUTER_V4.to_string();
    lab.host
        .ip(&["route", "add", "192.0.2.128/25", "nexthop", "via", &router, "dev", h0, "nexthop", "dev", h0])
        .unwrap();
    let enc = egress_under_default_routes(&lab, Encapsulator::builder());
    let dst: IpAddr = "192.0.2.200".parse().unwrap();
    let (mut local, mut labelled) = (0, 0);
    for sport in 40_000..40_064u16 {
        let said = lab
            .host
            .run(|| {
                let args =
                    ["route", "get", "192.0.2.200", "ipproto", "udp", "sport", &sport.to_string(), "dport", "4789"];
                std::process::Command::new("ip").args(args).output()
            })
            .unwrap()
            .expect("ip route get");
        assert!(said.status.success(), "ip route get: {}", String::from_utf8_lossy(&said.stderr));
        let said = String::from_utf8_lossy(&said.stdout).into_owned();
        let through_router = said.contains(&format!("via {router}"));
        let e = enc.explain(&Probe::udp(dst).sport(sport)).unwrap();
        let want = if through_router { "labelled" } else { "local" };
        assert_eq!(e.outcome, want, "sport {sport}: the kernel says {said:?}; explain says {e}");
        if through_router {
            labelled += 1;
        } else {
            local += 1;
        }
    }
    // Both next hops were taken, or the comparison proved nothing.
    assert!(local > 0 && labelled > 0, "64 flows over two next hops: {local} on the link, {labelled} via the router");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_pinned_egress_dataplane_is_adopted_and_upgraded() {
    privileged("a_pinned_egress_dataplane_is_adopted_and_upgraded");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    let _pins = common::PinGuard(&lab.host, h0);
    let router = VethLab::ROUTER_V4.to_string();
    lab.host.ip(&["route", "add", "198.51.100.0/24", "via", &router, "dev", h0]).unwrap();
    lab.host.exec("ethtool", "ethtool", &["-K", h0, "tso", "off"]).unwrap();
    lab.host
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(h0, Hook::Egress).expect("pinned egress");
            enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse().unwrap(), "16001/16002".parse().unwrap()))
                .unwrap();
        })
        .unwrap();
    // The process's handle is gone; the egress program goes on labelling.
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).unwrap().unwrap();
    let send = || {
        lab.host
            .run(|| UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", "198.51.100.7:9000")))
            .unwrap()
            .unwrap();
    };
    let labels = |capture: &Capture| loop {
        let f = capture.next(Duration::from_secs(2)).unwrap().expect("a frame");
        if !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47][..]) {
            let (stack, _) = lnetd_host_encap::labels::decode_stack(&f.bytes[14..]).unwrap();
            return stack.iter().map(|e| e.label).collect::<Vec<_>>();
        }
    };
    send();
    assert_eq!(labels(&capture), [16001, 16002]);
    // Adopted by another handle: this build's tc program replaces the running one.
    let enc = lab.host.run(|| Encapsulator::open(h0)).unwrap().expect("adopt");
    assert_eq!(enc.attachment().map(|a| a.mode), Some(AttachedMode::Egress));
    assert_eq!(enc.routes(Table::Main).unwrap().len(), 1);
    enc.set_route(
        Table::Main,
        &Route::new("198.51.100.0/24".parse().unwrap(), lnetd_host_encap::Label::new(17001).unwrap().into()),
    )
    .unwrap();
    send();
    assert_eq!(labels(&capture), [17001]);
    enc.detach().unwrap();
    send();
    let f = capture.next(Duration::from_secs(2)).unwrap().expect("a frame");
    assert_ne!(f.bytes.get(12..14), Some(&[0x88, 0x47][..]), "unlabelled once detached");
}

/// On egress too, a packet whose IP length plus its labels exceeds the
/// device's MTU is dropped and counted, one that fits exactly is labelled:
/// with the MTU read in place (Linux 6.2+) and through bpf_check_mtu.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_mtu_check_holds_on_egress_both_ways_of_reading_the_mtu() {
    privileged("the_mtu_check_holds_on_egress_both_ways_of_reading_the_mtu");
    let lab = VethLab::new().expect("lab");
    let h0 = VethLab::HOST_IF;
    let router = VethLab::ROUTER_V4.to_string();
    // No route MTU: the host sends IP packets up to the device's 1500 bytes.
    lab.host.ip(&["route", "add", "198.51.100.0/24", "via", &router, "dev", h0]).unwrap();
    lab.host.exec("ethtool", "ethtool", &["-K", h0, "tso", "off"]).unwrap();
    let dst = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 9000);
    let send = |payload: usize| {
        lab.host
            .run(|| UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(&vec![7u8; payload], dst)))
            .unwrap()
            .unwrap();
    };
    for skip in [0, lnetd_host_encap::testing::stages::MTU_IN_PLACE] {
        let enc = lab
            .host
            .run(|| Encapsulator::builder().skip_stages(skip).attach(h0, Hook::Egress))
            .unwrap()
            .expect("attach egress");
        enc.set_route(Table::Main, &Route::new("198.51.100.0/24".parse().unwrap(), "16001/16002".parse().unwrap()))
            .unwrap();
        // The first send may wait for the router's address; it fits either way.
        send(100);
        std::thread::sleep(Duration::from_millis(200));
        let before = enc.stats().unwrap();
        // 1,492 + 8 bytes of labels = the MTU: labelled.
        send(1492 - 28);
        // 1,500 + 8 > the MTU: dropped.
        send(1500 - 28);
        std::thread::sleep(Duration::from_millis(200));
        let delta = enc.stats().unwrap().since(&before);
        assert_eq!(
            (delta.labelled.packets, delta.mtu_dropped.packets),
            (1, 1),
            "skip {skip}: one packet labelled, one dropped by the MTU check: {delta:?}"
        );
        enc.detach().unwrap();
    }
}
