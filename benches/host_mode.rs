//! Host mode throughput: TCP from A to B over a veth pair, with A labelling
//! its egress and B popping on ingress (tcx + XDP), against the same lab
//! without them, same offloads (TSO off, GSO on), rounds interleaved in one
//! run. Run as root: `cargo bench --bench host_mode`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use lnetd_host_encap::lab::VethLab;
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{Decapsulator, Encapsulator, IpNetwork, Label, XdpMode};

const ROUNDS: usize = 5;
const BYTES: u64 = 2 << 30;

/// One transfer of BYTES from the host side to the router side; Gbit/s.
fn throughput(lab: &VethLab) -> f64 {
    let dst = IpAddr::V4(VethLab::ROUTER_V4);
    let listener = lab.router.run(|| TcpListener::bind(SocketAddr::new(dst, 0))).unwrap().unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::scope(|s| {
        let sink = s.spawn(|| {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 1 << 18];
            let mut got = 0u64;
            while got < BYTES {
                let k = c.read(&mut buf).unwrap();
                assert!(k > 0, "closed early");
                got += k as u64;
            }
        });
        let mut c = lab.host.run(|| TcpStream::connect(SocketAddr::new(dst, port))).unwrap().unwrap();
        let buf = vec![0x42u8; 1 << 18];
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < BYTES {
            c.write_all(&buf).unwrap();
            sent += buf.len() as u64;
        }
        sink.join().unwrap();
        BYTES as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the host-mode benchmark builds a namespace lab: run it as root");
        std::process::exit(1);
    }
    let lab = VethLab::new().expect("lab");
    for (ns, dev, peer) in
        [(&lab.host, VethLab::HOST_IF, VethLab::ROUTER_V4), (&lab.router, VethLab::ROUTER_IF, VethLab::HOST_V4)]
    {
        ns.exec("ethtool", "ethtool", &["-K", dev, "tso", "off", "gso", "on"]).unwrap();
        ns.ip(&["route", "add", &format!("{peer}/32"), "dev", dev, "mtu", "lock", "1496"]).unwrap();
    }
    let (mut with, mut without, mut xdp_pass) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        without.push(throughput(&lab));
        // The same, with an XDP program on B that only passes: a veth whose
        // peer runs XDP loses its GSO features, so A segments in software,
        // as it must once B runs the decapsulator.
        let pass = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().unwrap();
        xdp_pass.push(throughput(&lab));
        drop(pass);
        let enc = lab.host.run(|| Encapsulator::builder().attach_egress(VethLab::HOST_IF)).unwrap().unwrap();
        enc.set_label(IpNetwork::from(IpAddr::V4(VethLab::ROUTER_V4)), Label::new(16001).unwrap()).unwrap();
        let dec = lab
            .router
            .run(|| {
                Decapsulator::builder()
                    .pop_labels([Label::new(16001).unwrap()])
                    .attach(VethLab::ROUTER_IF, XdpMode::Generic)
            })
            .unwrap()
            .unwrap();
        with.push(throughput(&lab));
        assert!(dec.stats().unwrap().popped.packets > 0, "the decapsulator popped the labelled traffic");
        drop((enc, dec));
        std::thread::sleep(Duration::from_millis(100));
        println!(
            "round {round}: without {:.2} Gbit/s, XDP_PASS on B {:.2} Gbit/s, with {:.2} Gbit/s",
            without[round], xdp_pass[round], with[round]
        );
    }
    let (w, wo, xp) = (median(with), median(without), median(xdp_pass));
    println!();
    println!("| TCP A->B, {} GiB per transfer, median of {ROUNDS} | Gbit/s |", BYTES >> 30);
    println!("|---|---|");
    println!("| without encap/decap (TSO off, GSO on) | {wo:.2} |");
    println!("| without, an XDP_PASS program on B (A then segments in software) | {xp:.2} |");
    println!("| with egress encap + XDP decap | {w:.2} |");
    println!("| ratio to without | {:.2} |", w / wo);
    println!("| ratio to XDP_PASS on B | {:.2} |", w / xp);
}
