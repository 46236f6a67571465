//! Host mode, proven with real traffic: two namespaces A -- veth -- B, each
//! labelling its own egress (tcx) toward the other and popping on ingress
//! (the decapsulator in XDP, or on TC ingress), IPv4 and IPv6. TCP transfers
//! each way whose bytes are checked one by one, ping with DF at every size up
//! to the route MTU, a 20 kB UDP datagram, UDP_SEGMENT sends; and a capture
//! on the wire shows every data frame labelled and none above the MTU (with
//! TSO off; with TSO on, veth hands the labelled super-packets to the peer
//! whole, and the TC decapsulator pops them whole).

mod common;

use lnetd_host_encap::{Route, Table};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::privileged;
use lnetd_host_encap::testing::lab::{Capture, Netns, VethLab};
use lnetd_host_encap::{decap::Decapsulator, Encapsulator, Label, XdpMode};

/// Bytes each TCP transfer carries (LHE_HOST_MODE_BYTES overrides; 1 GiB by default).
fn transfer_bytes() -> u64 {
    std::env::var("LHE_HOST_MODE_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30)
}

/// The route MTU toward the peer: 1500 less one label.
const ROUTE_MTU: u32 = 1496;

/// A deterministic byte stream (xorshift), so the receiver checks every byte it gets.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// One side of the lab: its namespace, interface, addresses and label.
struct Side<'a> {
    ns: &'a Netns,
    iface: &'static str,
    v4: IpAddr,
    v6: IpAddr,
    /// The label the peer pushes toward this side (this side pops it).
    label: u32,
}

/// Where each side pops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecapHook {
    Xdp,
    /// tcx ingress, with TSO left on (EncapsulatorBuilder::allow_tso): veth
    /// hands labelled super-packets to the peer whole.
    TcIngress,
}

/// Labels this side's egress toward `peer` and pops `own` labels on ingress.
fn host_mode(side: &Side<'_>, peer: &Side<'_>, hook: DecapHook) -> (Encapsulator, Decapsulator) {
    for (addr, family) in [(peer.v4, "-4"), (peer.v6, "-6")] {
        let host = if addr.is_ipv4() { format!("{addr}/32") } else { format!("{addr}/128") };
        side.ns.ip(&[family, "route", "add", &host, "dev", side.iface, "mtu", "lock", &ROUTE_MTU.to_string()]).unwrap();
    }
    // TSO needs tx checksumming, which the lab turns off on one side.
    let offloads: &[&str] = if hook == DecapHook::TcIngress { &["tx", "on", "tso", "on"] } else { &["tso", "off"] };
    side.ns.exec("ethtool", "ethtool", &[&["-K", side.iface][..], offloads].concat()).unwrap();
    side.ns
        .run(|| {
            let enc = Encapsulator::builder()
                .allow_tso(hook == DecapHook::TcIngress)
                // The peer is on the link and pops what this side pushes.
                .label_on_link(true)
                .attach(side.iface, lnetd_host_encap::encap::Hook::Egress)
                .expect("egress");
            for addr in [peer.v4, peer.v6] {
                let prefix = lnetd_host_encap::IpNetwork::from(addr);
                enc.set_route(Table::Main, &Route::new(prefix, Label::new(peer.label).unwrap().into()))
                    .expect("route to the peer");
            }
            let builder = Decapsulator::builder().pop_labels([
                Label::new(side.label).unwrap(),
                Label::new(0).unwrap(),
                Label::new(2).unwrap(),
            ]);
            let dec = match hook {
                DecapHook::Xdp => builder.attach(side.iface, XdpMode::Generic),
                DecapHook::TcIngress => builder.attach_ingress(side.iface),
            }
            .expect("decapsulator");
            (enc, dec)
        })
        .unwrap()
}

/// Sends `n` bytes over TCP from `from` to `to`'s listener; the receiver checks every byte.
fn transfer(from: &Netns, to: &Netns, dst: IpAddr, n: u64, seed: u64) -> Duration {
    let listener = to.run(|| TcpListener::bind(SocketAddr::new(dst, 0))).unwrap().expect("listen");
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            // The sender fills 64 KiB blocks from the same stream: so does the
            // receiver, comparing what arrives against the block, piece by piece.
            let mut expected = Stream(seed);
            let mut block = vec![0u8; 1 << 16];
            let mut at = block.len();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            while got < n {
                let k = conn.read(&mut buf).expect("read");
                assert!(k > 0, "the connection closed after {got} of {n} bytes");
                let mut piece = &buf[..k];
                while !piece.is_empty() {
                    if at == block.len() {
                        let left = (n - got).min(block.len() as u64) as usize;
                        block.truncate(left);
                        expected.fill(&mut block);
                        at = 0;
                    }
                    let take = piece.len().min(block.len() - at);
                    assert!(piece[..take] == block[at..at + take], "byte stream differs at offset {got}");
                    at += take;
                    got += take as u64;
                    piece = &piece[take..];
                }
            }
        });
        let mut conn = from.run(|| TcpStream::connect(SocketAddr::new(dst, port))).unwrap().expect("connect");
        let mut stream = Stream(seed);
        let mut buf = vec![0u8; 1 << 16];
        let mut sent = 0u64;
        while sent < n {
            let k = (n - sent).min(buf.len() as u64) as usize;
            stream.fill(&mut buf[..k]);
            conn.write_all(&buf[..k]).expect("write");
            sent += k as u64;
        }
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        receiver.join().expect("receiver");
    });
    started.elapsed()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn two_hosts_label_and_pop_their_own_traffic() {
    privileged("two_hosts_label_and_pop_their_own_traffic");
    two_hosts(DecapHook::Xdp);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn two_hosts_pop_on_tc_ingress() {
    privileged("two_hosts_pop_on_tc_ingress");
    two_hosts(DecapHook::TcIngress);
}

/// Sets the flag when dropped, panics included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Offload settings a transfer phase runs under: (tso, gso).
fn phases(hook: DecapHook) -> &'static [(&'static str, &'static str)] {
    match hook {
        // The design's offloads for a NIC (TSO off, GSO on), then GSO off.
        DecapHook::Xdp => &[("off", "on"), ("off", "off")],
        // Super-packets whole over veth, then as for a NIC, then GSO off.
        DecapHook::TcIngress => &[("on", "on"), ("off", "on"), ("off", "off")],
    }
}

fn two_hosts(hook: DecapHook) {
    let lab = VethLab::new().expect("lab");
    let a = Side {
        ns: &lab.host,
        iface: VethLab::HOST_IF,
        v4: IpAddr::V4(VethLab::HOST_V4),
        v6: IpAddr::V6(VethLab::HOST_V6),
        label: 16002,
    };
    let b = Side {
        ns: &lab.router,
        iface: VethLab::ROUTER_IF,
        v4: IpAddr::V4(VethLab::ROUTER_V4),
        v6: IpAddr::V6(VethLab::ROUTER_V6),
        label: 16001,
    };
    let (enc_a, dec_a) = host_mode(&a, &b, hook);
    let (enc_b, dec_b) = host_mode(&b, &a, hook);

    // What each side sends is captured as it leaves (after the egress hook):
    // what crosses the wire. (Arriving frames are seen after the XDP pop.)
    let captures = [
        lab.host.run(|| Capture::open(VethLab::HOST_IF).and_then(|c| c.with_buffer(64 << 20))).unwrap().unwrap(),
        lab.router.run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(64 << 20))).unwrap().unwrap(),
    ];
    let stop = AtomicBool::new(false);
    // The phase the watchers count frames for (TSO on may show super-packets).
    let phase = AtomicUsize::new(0);
    let n = transfer_bytes();
    let (frames, times) = std::thread::scope(|s| {
        let watchers: Vec<_> = captures
            .iter()
            .map(|capture| {
                let (stop, phase) = (&stop, &phase);
                s.spawn(move || {
                    let (mut labelled, mut unlabelled_data, mut oversize) = (0u64, 0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        while let Some(f) = capture.next(Duration::from_millis(50)).unwrap() {
                            if !f.outgoing {
                                continue;
                            }
                            let tso = phases(hook)[phase.load(Ordering::Relaxed)].0 == "on";
                            if f.bytes.len() > 1514 && !tso {
                                oversize += 1;
                            }
                            match f.bytes.get(12..14) {
                                Some([0x88, 0x47]) => labelled += 1,
                                Some([0x08, 0x00] | [0x86, 0xdd]) if f.bytes.len() > 200 => unlabelled_data += 1,
                                _ => {}
                            }
                        }
                    }
                    (labelled, unlabelled_data, oversize)
                })
            })
            .collect();
        // A failed assertion below must still end the watchers, or the scope never returns.
        let _stop = StopOnDrop(&stop);
        let mut times = Vec::new();
        for (i, (tso, gso)) in phases(hook).iter().enumerate() {
            for side in [&a, &b] {
                side.ns.exec("ethtool", "ethtool", &["-K", side.iface, "tso", tso, "gso", gso]).unwrap();
            }
            // Frames still in the capture queues belong to the phase before.
            std::thread::sleep(Duration::from_millis(200));
            phase.store(i, Ordering::Relaxed);
            for (from, to, dst, seed) in [(&a, &b, b.v4, 1), (&b, &a, a.v4, 2), (&a, &b, b.v6, 3), (&b, &a, a.v6, 4)] {
                // The full size each way, IPv4 and IPv6, in the first phase; a quarter for the other runs.
                let bytes = if i == 0 { n } else { n / 4 };
                let label = format!("{dst} (TSO {tso}, GSO {gso})");
                times.push((label, bytes, transfer(from.ns, to.ns, dst, bytes, seed)));
            }
            if hook == DecapHook::TcIngress && *tso == "on" {
                // Popped whole: the average popped packet is a super-packet.
                for (side, dec) in [("A", &dec_a), ("B", &dec_b)] {
                    let popped = dec.stats().unwrap().popped;
                    let average = popped.bytes / popped.packets.max(1);
                    println!("{side} popped {} packets, {average} bytes on average", popped.packets);
                    assert!(average > 1514 * 4, "{side} popped super-packets whole: {popped:?}");
                }
                // UDP_SEGMENT: eight 1,000-byte datagrams in one send cross as one
                // labelled super-packet, popped whole (gso_size kept), and the
                // kernel cuts them apart on delivery.
                for dst in [b.v4, b.v6] {
                    let rx = b.ns.run(|| UdpSocket::bind(SocketAddr::new(dst, 0))).unwrap().unwrap();
                    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let port = rx.local_addr().unwrap().port();
                    let before = dec_b.stats().unwrap().popped;
                    a.ns.run(|| {
                        let any: IpAddr =
                            if dst.is_ipv4() { [0, 0, 0, 0].into() } else { std::net::Ipv6Addr::UNSPECIFIED.into() };
                        let tx = UdpSocket::bind(SocketAddr::new(any, 0)).unwrap();
                        common::set_udp_segment(&tx, 1000).expect("UDP_SEGMENT");
                        tx.send_to(&[0x44; 8_000], SocketAddr::new(dst, port)).unwrap();
                    })
                    .unwrap();
                    let mut buf = vec![0u8; 4096];
                    for i in 0..8 {
                        let (k, _) = rx.recv_from(&mut buf).unwrap_or_else(|e| panic!("{dst} segment {i}: {e}"));
                        assert!(k == 1000 && buf[..k].iter().all(|b| *b == 0x44), "{dst} segment {i}");
                    }
                    let popped = dec_b.stats().unwrap().popped;
                    let (packets, bytes) = (popped.packets - before.packets, popped.bytes - before.bytes);
                    assert!(
                        bytes >= 8_000 && packets < 8,
                        "{dst}: the UDP_SEGMENT send was popped whole ({packets} packets, {bytes} bytes)"
                    );
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let counts: Vec<(u64, u64, u64)> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
        (counts, times)
    });
    for (dst, bytes, t) in &times {
        println!("TCP to {dst}: {bytes} bytes in {t:?} ({:.2} Gbit/s)", *bytes as f64 * 8.0 / t.as_secs_f64() / 1e9);
    }
    for (side, (labelled, unlabelled_data, oversize)) in ["A", "B"].iter().zip(frames) {
        println!("{side} sent {labelled} labelled frames, {unlabelled_data} unlabelled data frames, {oversize} above 1514 bytes");
        assert!(labelled > 0, "{side} sent labelled frames");
        assert_eq!(unlabelled_data, 0, "every data frame {side} sends carries labels");
        assert_eq!(oversize, 0, "no frame {side} sends is above the MTU");
    }

    // ping with DF at every size up to the route MTU, both families.
    for (from, dst) in [(&a, b.v4), (&a, b.v6)] {
        let max = ROUTE_MTU as usize - if dst.is_ipv4() { 28 } else { 48 };
        for size in [0, 1, 100, 1000, max - 1, max] {
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    from.ns.name(),
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "-M",
                    "do",
                    "-s",
                    &size.to_string(),
                    &dst.to_string(),
                ])
                .output()
                .expect("ping");
            assert!(out.status.success(), "ping -M do -s {size} {dst}: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    // A 20 kB UDP datagram (fragmented by the kernel under the route MTU) arrives whole.
    let rx = lab.router.run(|| UdpSocket::bind(SocketAddr::new(b.v4, 0))).unwrap().unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = rx.local_addr().unwrap().port();
    lab.host
        .run(|| UdpSocket::bind("0.0.0.0:0").unwrap().send_to(&[0x5a; 20_000], SocketAddr::new(b.v4, port)).unwrap())
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (k, _) = rx.recv_from(&mut buf).expect("the 20 kB datagram");
    assert_eq!(k, 20_000);
    assert!(buf[..k].iter().all(|b| *b == 0x5a));
    // UDP_SEGMENT: one send, eight 1,000-byte datagrams, each labelled and popped.
    lab.host
        .run(|| {
            let tx = UdpSocket::bind("0.0.0.0:0").unwrap();
            common::set_udp_segment(&tx, 1000).expect("UDP_SEGMENT");
            tx.send_to(&[0x33; 8_000], SocketAddr::new(b.v4, port)).unwrap();
        })
        .unwrap();
    for i in 0..8 {
        let (k, _) = rx.recv_from(&mut buf).unwrap_or_else(|e| panic!("segment {i}: {e}"));
        assert_eq!(k, 1000, "segment {i}");
    }

    let (sa, sb) = (dec_a.stats().unwrap(), dec_b.stats().unwrap());
    assert!(sa.popped.packets > 0 && sb.popped.packets > 0, "{sa:?} {sb:?}");
    assert!(enc_a.stats().unwrap().labelled.packets > 0 && enc_b.stats().unwrap().labelled.packets > 0);
}
