//! Host mode throughput: TCP from A to B over a veth pair, with A labelling
//! its egress (tcx) and B popping on ingress, in XDP or on TC (tcx), against
//! the same lab without them under the same offloads, rounds interleaved in
//! one run. Two offload settings: TSO off and GSO on (what a NIC that cannot
//! segment behind labels needs), and TSO on (veth hands super-packets to its
//! peer whole; the TC decapsulator pops them whole). Under TSO on, two
//! methods: pairs of transfers, each on its own connection, and one long
//! connection whose segments alternate between the programs attached and
//! not (the switch loses nothing: B pops before A labels and after A
//! stops), each labelled segment against the unlabelled ones on either
//! side. Run as root: `cargo bench --bench host_mode`;
//! `LHE_HOST_MODE=alternating` runs only the long connection;
//! `LHE_HOST_MODE=variants` instead splits the TSO-on cost: B's
//! decapsulator alone, A's encapsulator attached with no route (nothing
//! pushed) plus B's, and both at work, each as a ratio to the same lab
//! without programs. TCP uses the host's congestion control, printed first.

#[path = "../tests/common/mod.rs"]
mod common;

use lnetd_host_encap::{Route, Table};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use lnetd_host_encap::testing::lab::VethLab;
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{decap::Decapsulator, Encapsulator, IpNetwork, Label, XdpMode};

const ROUNDS: usize = 5;
/// Pairs of transfers (without, with) under TSO on.
const PAIRS: usize = 16;
const BYTES: u64 = 2 << 30;

/// One TCP connection from the host side to the router side whose far end
/// reads `total` bytes: `send` writes them; its result once all have arrived.
fn connection<T>(lab: &VethLab, total: u64, send: impl FnOnce(&mut dyn FnMut(u64)) -> T) -> T {
    let dst = IpAddr::V4(VethLab::ROUTER_V4);
    let listener = lab.router.run(|| TcpListener::bind(SocketAddr::new(dst, 0))).unwrap().unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::scope(|s| {
        let sink = s.spawn(|| {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 1 << 18];
            let mut got = 0u64;
            while got < total {
                let k = c.read(&mut buf).unwrap();
                assert!(k > 0, "closed early");
                got += k as u64;
            }
        });
        let mut c = lab.host.run(|| TcpStream::connect(SocketAddr::new(dst, port))).unwrap().unwrap();
        let buf = vec![0x42u8; 1 << 18];
        let mut write = |bytes: u64| {
            let mut sent = 0u64;
            while sent < bytes {
                c.write_all(&buf).unwrap();
                sent += buf.len() as u64;
            }
        };
        let out = send(&mut write);
        sink.join().unwrap();
        out
    })
}

/// One transfer of BYTES from the host side to the router side; Gbit/s.
fn throughput(lab: &VethLab) -> f64 {
    // From the connected socket's first write until the far end has read the last byte.
    let started = connection(lab, BYTES, |write| {
        let started = Instant::now();
        write(BYTES);
        started
    });
    BYTES as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

/// Bytes of one segment of the alternating connection.
const SEGMENT: u64 = 512 << 20;
/// Timed segments of the alternating connection (half with the programs).
const SEGMENTS: usize = 48;

/// A's encap (allow_tso) and B's TC decap on or off. B's decapsulator is
/// attached before A labels and detached after labelled frames still in
/// flight have reached it, so switching loses nothing.
fn set_programs(lab: &VethLab, programs: &Programs, on: bool) {
    if on {
        lab.router.run(|| programs.tc.attach_ingress(VethLab::ROUTER_IF)).unwrap().unwrap();
        lab.host
            .run(|| programs.enc_tso.attach(VethLab::HOST_IF, lnetd_host_encap::encap::Hook::Egress))
            .unwrap()
            .unwrap();
    } else {
        programs.enc_tso.detach().unwrap();
    }
    // Both ways the same pause (the frames in flight reach B's decapsulator
    // before it goes), so every segment starts with the send buffer drained alike.
    std::thread::sleep(std::time::Duration::from_millis(20));
    if !on {
        programs.tc.detach().unwrap();
    }
}

/// One TCP connection A->B of SEGMENTS timed segments of SEGMENT bytes
/// (after one untimed, for slow start), the programs attached for every
/// other one: the rates (Gbit/s) of the segments, in order, and whether each
/// was labelled. The rate is taken at the sender, from the end of the switch
/// to the segment's last write.
fn alternating(lab: &VethLab, programs: &Programs) -> Vec<(bool, f64)> {
    connection(lab, SEGMENT * (SEGMENTS as u64 + 1), |write| {
        write(SEGMENT);
        let mut rates = Vec::new();
        for i in 0..SEGMENTS {
            let labelled = i % 2 == 1;
            if labelled {
                set_programs(lab, programs, true);
            }
            let before = programs.tc.stats().unwrap().popped;
            let started = Instant::now();
            write(SEGMENT);
            let rate = SEGMENT as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9;
            println!("segment {i}: {} {rate:.2} Gbit/s", if labelled { "labelled" } else { "without" });
            rates.push((labelled, rate));
            if labelled {
                // A labelled segment's bytes crossed labelled: most of them were popped.
                let popped = programs.tc.stats().unwrap().popped.bytes - before.bytes;
                assert!(popped >= SEGMENT / 2, "segment {i}: only {popped} bytes popped");
                set_programs(lab, programs, false);
            }
        }
        rates
    })
}

/// Each labelled segment against the mean of the unlabelled segments on
/// either side of it (which cancels a steady drift of the machine's rate).
/// Printed as well.
fn neighbour_ratios(rates: &[(bool, f64)]) -> Vec<f64> {
    let ratios: Vec<f64> = (1..rates.len().saturating_sub(1))
        .filter(|&i| rates[i].0 && !rates[i - 1].0 && !rates[i + 1].0)
        .map(|i| rates[i].1 / ((rates[i - 1].1 + rates[i + 1].1) / 2.0))
        .collect();
    println!("segment ratios: {ratios:.2?}");
    ratios
}

fn median(v: Vec<f64>) -> f64 {
    quantile(&v, 0.5)
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Where B pops.
#[derive(Clone, Copy)]
enum Decap {
    Xdp,
    TcIngress,
}

/// A's egress encapsulator and B's decapsulators, loaded once: attaching
/// for a transfer and detaching after it is all a round changes (loading
/// the encapsulator allocates its tables, which would disturb the next
/// transfer).
struct Programs {
    enc: Encapsulator,
    /// Only for a TSO-on attach.
    enc_tso: Encapsulator,
    xdp: Decapsulator,
    tc: Decapsulator,
}

impl Programs {
    fn load() -> Programs {
        let label = Label::new(16001).unwrap();
        let enc = |allow_tso: bool| {
            // The peer is on the link and pops: labelled like any destination.
            let enc = Encapsulator::builder().allow_tso(allow_tso).label_on_link(true).load().unwrap();
            enc.set_route(Table::Main, &Route::new(IpNetwork::from(IpAddr::V4(VethLab::ROUTER_V4)), label.into()))
                .unwrap();
            enc
        };
        let dec = || Decapsulator::builder().pop_labels([label]).load().unwrap();
        Programs { enc: enc(false), enc_tso: enc(true), xdp: dec(), tc: dec() }
    }
}

/// One transfer with A's encap and B's decap; Gbit/s and the average popped packet's bytes.
fn with(lab: &VethLab, programs: &Programs, allow_tso: bool, decap: Decap) -> (f64, u64) {
    let enc = if allow_tso { &programs.enc_tso } else { &programs.enc };
    lab.host.run(|| enc.attach(VethLab::HOST_IF, lnetd_host_encap::encap::Hook::Egress)).unwrap().unwrap();
    let dec = match decap {
        Decap::Xdp => {
            lab.router.run(|| programs.xdp.attach(VethLab::ROUTER_IF, XdpMode::Generic)).unwrap().unwrap();
            &programs.xdp
        }
        Decap::TcIngress => {
            lab.router.run(|| programs.tc.attach_ingress(VethLab::ROUTER_IF)).unwrap().unwrap();
            &programs.tc
        }
    };
    let before = dec.stats().unwrap().popped;
    let rate = throughput(lab);
    let after = dec.stats().unwrap().popped;
    let popped = (after.packets - before.packets, after.bytes - before.bytes);
    assert!(popped.0 > 0, "the decapsulator popped the labelled traffic");
    enc.detach().unwrap();
    dec.detach().unwrap();
    (rate, popped.1 / popped.0)
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
    let programs = Programs::load();
    let cc = lab.host.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")).unwrap();
    println!("TCP congestion control: {}", cc.map(|c| c.trim().to_string()).unwrap_or_else(|e| e.to_string()));
    // Which part of the encap + decap cost is whose: the hooks' presence, or the push and pop.
    if std::env::var("LHE_HOST_MODE").as_deref() == Ok("alternating") {
        set_offloads(&lab, "on");
        let ratios = neighbour_ratios(&alternating(&lab, &programs));
        println!("median {:.2}", median(ratios));
        return;
    }
    if std::env::var("LHE_HOST_MODE").as_deref() == Ok("variants") {
        set_offloads(&lab, "on");
        let none = Encapsulator::builder().allow_tso(true).label_on_link(true).load().unwrap();
        for variant in ["decap only", "encap without routes + decap", "encap + decap"] {
            let mut ratios = Vec::new();
            for _ in 0..8 {
                let base = throughput(&lab);
                if variant != "decap only" {
                    let enc = if variant == "encap + decap" { &programs.enc_tso } else { &none };
                    lab.host
                        .run(|| enc.attach(VethLab::HOST_IF, lnetd_host_encap::encap::Hook::Egress))
                        .unwrap()
                        .unwrap();
                }
                lab.router.run(|| programs.tc.attach_ingress(VethLab::ROUTER_IF)).unwrap().unwrap();
                let r = throughput(&lab);
                let _ = programs.enc_tso.detach();
                let _ = none.detach();
                programs.tc.detach().unwrap();
                ratios.push(r / base);
            }
            println!("{variant}: {ratios:.2?} median {:.2}", median(ratios.clone()));
        }
        return;
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
        let (xdp, xdp_avg) = with(&lab, &programs, false, Decap::Xdp);
        nic[2].push(xdp);
        let (tc, tc_avg) = with(&lab, &programs, false, Decap::TcIngress);
        nic[3].push(tc);
        println!(
            "round {round}: TSO off: without {:.2} Gbit/s, XDP_PASS on B {:.2}, XDP decap {xdp:.2} ({xdp_avg} B a \
             popped packet), TC decap {tc:.2} ({tc_avg} B)",
            nic[0][round], nic[1][round]
        );
    }
    // TSO on: veth hands super-packets to its peer whole, labelled ones too
    // (allow_tso), and B's TC decapsulator pops them whole. A transfer takes
    // about a second here, so many pairs, each back to back, in turns.
    set_offloads(&lab, "on");
    for pair in 0..PAIRS {
        let run = |labelled: bool| {
            if labelled {
                with(&lab, &programs, true, Decap::TcIngress)
            } else {
                (throughput(&lab), 0)
            }
        };
        let (first, second) = if pair % 2 == 0 { (run(false), run(true)) } else { (run(true), run(false)) };
        let ((without, _), (labelled, avg)) = if pair % 2 == 0 { (first, second) } else { (second, first) };
        veth[0].push(without);
        veth[1].push(labelled);
        println!("pair {pair}: TSO on: without {without:.2} Gbit/s, TC decap {labelled:.2} ({avg} B a popped packet)");
    }
    // One connection, the programs switched on and off between its segments.
    let segments = alternating(&lab, &programs);
    let ratios = neighbour_ratios(&segments);
    let unlabelled: Vec<f64> = segments.iter().filter(|s| !s.0).map(|s| s.1).collect();
    let labelled: Vec<f64> = segments.iter().filter(|s| s.0).map(|s| s.1).collect();
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
    println!("| *TSO on: {PAIRS} pairs of transfers* | | |");
    row("TSO on, GSO on: without encap/decap", &veth[0], &veth[0]);
    row("TSO on, GSO on: A's egress encap (allow_tso) + B's TC ingress decap", &veth[1], &veth[0]);
    println!(
        "| *TSO on: one connection, {SEGMENTS} segments of {} MiB, the programs on in every other one* | | |",
        SEGMENT >> 20
    );
    println!("| TSO on, GSO on: without encap/decap | {:.2} | 1.00 |", median(unlabelled));
    println!(
        "| TSO on, GSO on: A's egress encap (allow_tso) + B's TC ingress decap | {:.2} | {:.2} (each segment against \
         its neighbours; quartiles {:.2} .. {:.2}) |",
        median(labelled),
        median(ratios.clone()),
        quantile(&ratios, 0.25),
        quantile(&ratios, 0.75)
    );
}
