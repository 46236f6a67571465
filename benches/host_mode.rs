//! Host mode throughput: TCP from A to B over a veth pair, with A labelling
//! its egress (tcx) and B popping on ingress, in XDP or on TC (tcx), against
//! the same lab without them under the same offloads, rounds interleaved in
//! one run. Two offload settings: TSO off and GSO on (what a NIC that cannot
//! segment behind labels needs), and TSO on (veth hands super-packets to its
//! peer whole; the TC decapsulator pops them whole). Run as root:
//! `cargo bench --bench host_mode`.

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

/// Where B pops.
#[derive(Clone, Copy)]
enum Decap {
    Xdp,
    TcIngress,
}

/// A's egress encapsulator and B's decapsulator, for one transfer.
fn encap_decap(lab: &VethLab, allow_tso: bool, decap: Decap) -> (Encapsulator, Decapsulator) {
    let enc = lab
        .host
        .run(|| Encapsulator::builder().allow_tso(allow_tso).attach_egress(VethLab::HOST_IF))
        .unwrap()
        .unwrap();
    enc.set_label(IpNetwork::from(IpAddr::V4(VethLab::ROUTER_V4)), Label::new(16001).unwrap()).unwrap();
    let dec = lab
        .router
        .run(|| {
            let builder = Decapsulator::builder().pop_labels([Label::new(16001).unwrap()]);
            match decap {
                Decap::Xdp => builder.attach(VethLab::ROUTER_IF, XdpMode::Generic),
                Decap::TcIngress => builder.attach_ingress(VethLab::ROUTER_IF),
            }
        })
        .unwrap()
        .unwrap();
    (enc, dec)
}

/// One transfer with A's encap and B's decap; Gbit/s and the average popped packet's bytes.
fn with(lab: &VethLab, allow_tso: bool, decap: Decap) -> (f64, u64) {
    let (enc, dec) = encap_decap(lab, allow_tso, decap);
    let rate = throughput(lab);
    let popped = dec.stats().unwrap().popped;
    assert!(popped.packets > 0, "the decapsulator popped the labelled traffic");
    drop((enc, dec));
    std::thread::sleep(Duration::from_millis(100));
    (rate, popped.bytes / popped.packets)
}

fn set_offloads(lab: &VethLab, tso: &str) {
    for (ns, dev) in [(&lab.host, VethLab::HOST_IF), (&lab.router, VethLab::ROUTER_IF)] {
        // TSO needs tx checksumming, which the lab turns off on the router side.
        ns.exec("ethtool", "ethtool", &["-K", dev, "tx", "on", "tso", tso, "gso", "on"]).unwrap();
    }
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
        ns.ip(&["route", "add", &format!("{peer}/32"), "dev", dev, "mtu", "lock", "1496"]).unwrap();
    }
    let mut nic = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut veth = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // TSO off, GSO on: what a NIC that cannot segment behind labels needs.
        set_offloads(&lab, "off");
        nic[0].push(throughput(&lab));
        // An XDP program on B that only passes: a veth whose peer runs XDP
        // loses its GSO features, and copies every frame into XDP's buffers.
        let pass = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().unwrap();
        nic[1].push(throughput(&lab));
        drop(pass);
        let (xdp, xdp_avg) = with(&lab, false, Decap::Xdp);
        nic[2].push(xdp);
        let (tc, tc_avg) = with(&lab, false, Decap::TcIngress);
        nic[3].push(tc);
        // TSO on: veth hands super-packets to its peer whole, labelled ones
        // too (allow_tso), and B's TC decapsulator pops them whole. These
        // transfers take a second each: two of each, in ABBA order.
        set_offloads(&lab, "on");
        let first = throughput(&lab);
        let (tso1, tso_avg) = with(&lab, true, Decap::TcIngress);
        let (tso2, _) = with(&lab, true, Decap::TcIngress);
        let last = throughput(&lab);
        veth[0].push((first + last) / 2.0);
        veth[1].push((tso1 + tso2) / 2.0);
        println!(
            "round {round}: TSO off: without {:.2} Gbit/s, XDP_PASS on B {:.2}, XDP decap {xdp:.2} ({xdp_avg} B a \
             popped packet), TC decap {tc:.2} ({tc_avg} B); TSO on: without {first:.2} {last:.2}, TC decap \
             {tso1:.2} {tso2:.2} ({tso_avg} B)",
            nic[0][round], nic[1][round]
        );
    }
    // Each round's ratio (its transfers ran back to back), then the median:
    // this shared machine's rate drifts more between rounds than within one.
    let ratio = |with: &[f64], without: &[f64]| median(with.iter().zip(without).map(|(w, wo)| w / wo).collect());
    let row = |name: &str, with: &[f64], without: &[f64]| {
        println!("| {name} | {:.2} | {:.2} |", median(with.to_vec()), ratio(with, without));
    };
    println!();
    println!(
        "| TCP A->B over veth, {} GiB a transfer, {ROUNDS} rounds | Gbit/s (median) | ratio to without (median of \
         the rounds') |",
        BYTES >> 30
    );
    println!("|---|---|---|");
    row("TSO off, GSO on: without encap/decap", &nic[0], &nic[0]);
    row("TSO off, GSO on: without, an XDP_PASS program on B", &nic[1], &nic[0]);
    row("TSO off, GSO on: A's egress encap + B's XDP decap", &nic[2], &nic[0]);
    row("TSO off, GSO on: A's egress encap + B's TC ingress decap", &nic[3], &nic[0]);
    row("TSO on, GSO on: without encap/decap", &veth[0], &veth[0]);
    row("TSO on, GSO on: A's egress encap (allow_tso) + B's TC ingress decap", &veth[1], &veth[0]);
}
