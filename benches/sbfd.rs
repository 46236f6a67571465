//! The CPU cost of S-BFD: 1,000 segment lists probed every 10 ms (100,000
//! probes and 100,000 answers a second), measured as the engine thread's
//! CPU time (getrusage RUSAGE_THREAD) over a timed window, once with
//! sendmmsg/recvmmsg batching, once with one system call per packet, once
//! through a PACKET_TX_RING and once as XDP live frames (one
//! BPF_PROG_TEST_RUN call a tick, no skb per probe), its answers through
//! recvmmsg and then counted by the socket filter, and printed against the
//! goal of 2% of one core and against each other.
//!
//! The lab: the engine in a host namespace sends each probe inside its
//! list's label (16000 + i) to a router namespace, whose Decapsulator pops
//! the label (XDP) and hands the inner packet to a reflector thread there
//! (its CPU is not counted).
//! Run as root: `cargo bench --bench sbfd` (LHE_BENCH_LISTS,
//! LHE_BENCH_SECONDS override the sizes; LHE_BENCH_ONLY=NAME[,NAME..] runs
//! the rows whose section and name contain every NAME, e.g. `nothing
//! answers,live frames/recvmmsg` to profile one).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lnetd_host_encap::bgp::sbfd::packet::{Control, SBFD_PORT};
use lnetd_host_encap::bgp::sbfd::{Engine, ListKey, SbfdConfig};
use lnetd_host_encap::testing::generator::ReturnCounter;
use lnetd_host_encap::testing::lab::VethLab;
use lnetd_host_encap::{decap::Decapsulator, encap::OtherLabels, Label, LabelStack, XdpMode};

const ENDPOINT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GOAL: f64 = 0.02;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The reflector, as a router runs it, answering as fast as it can: up to
/// 64 probes per recvmmsg, their answers in one sendmmsg (a router answers
/// in hardware or in its fast path; this one must simply not be the
/// bottleneck).
#[allow(unsafe_code)]
fn reflect(socket: UdpSocket, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) {
    use nix::libc;
    use std::os::fd::AsRawFd;
    const N: usize = 64;
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let fd = socket.as_raw_fd();
    let size: libc::c_int = 16 << 20;
    // SAFETY: setsockopt reads one c_int from a live local (SO_RCVBUFFORCE: root).
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&size as *const libc::c_int).cast(), 4);
    }
    let mut bufs = vec![[0u8; 128]; N];
    let mut outs = vec![[0u8; 24]; N];
    // SAFETY: zeroed sockaddr_in / iovec / mmsghdr are valid C values.
    let mut names: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; N];
    while !stop.load(Ordering::Relaxed) {
        let mut iov: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: 128 }).collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..N)
            .map(|i| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &mut iov[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m
            })
            .collect();
        // SAFETY: every header points at live buffers and names of the sizes given.
        let n = unsafe { libc::recvmmsg(fd, msgs.as_mut_ptr(), N as u32, libc::MSG_WAITFORONE, std::ptr::null_mut()) };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        let mut out_iov: Vec<libc::iovec> = Vec::with_capacity(n);
        let mut answers = 0;
        for i in 0..n {
            let len = msgs[i].msg_len as usize;
            let Ok(probe) = Control::decode(&bufs[i][..len]) else { continue };
            outs[answers] = probe.reflected(1_000).encode();
            names.swap(answers, i);
            answers += 1;
        }
        for o in outs.iter_mut().take(answers) {
            out_iov.push(libc::iovec { iov_base: o.as_mut_ptr().cast(), iov_len: 24 });
        }
        let mut out: Vec<libc::mmsghdr> = (0..answers)
            .map(|i| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &mut out_iov[i];
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m
            })
            .collect();
        // SAFETY: as above, for the answers.
        let sent = unsafe { libc::sendmmsg(fd, out.as_mut_ptr(), answers as u32, 0) };
        if sent > 0 {
            answered.fetch_add(sent as u64, Ordering::Relaxed);
        }
    }
}

struct Measured {
    cpu: f64,
    user: f64,
    sent: u64,
    sent_live: u64,
    answers: u64,
    up: usize,
}

/// One way of sending and receiving: (batched, tx_ring, live_frames, answer_filter).
type Path = (bool, bool, bool, bool);

fn measure(
    lab: &VethLab,
    iface: &str,
    lists: u32,
    window: Duration,
    (batched, tx_ring, live, filter): Path,
) -> Measured {
    let mut config = SbfdConfig::new(iface).with_timers(10, 3, 1_000).unwrap();
    config.batched = batched;
    config.tx_ring = tx_ring;
    config.live_frames = live;
    config.answer_filter = filter;
    config.router_mac = Some(VethLab::ROUTER_MAC);
    let engine = lab.host.run(move || Engine::start(config, || {})).unwrap().expect("engine");
    engine.set_lists((0..lists).map(|i| ListKey {
        endpoint: IpAddr::V4(ENDPOINT),
        stack: LabelStack::single(Label::new(16_000 + i).unwrap()),
    }));
    // Warm up past the first detection time (sessions starting, then up).
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, s0, t0) = (engine.cpu_time(), engine.stats(), Instant::now());
    std::thread::sleep(window);
    let (cpu1, s1, t1) = (engine.cpu_time(), engine.stats(), Instant::now());
    let up = engine.phases().iter().filter(|(_, p)| p.usable()).count();
    let wall = (t1 - t0).as_secs_f64();
    Measured {
        cpu: ((cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1)).as_secs_f64() / wall,
        user: (cpu1.0 - cpu0.0).as_secs_f64() / wall,
        sent: s1.sent - s0.sent,
        sent_live: s1.sent_live - s0.sent_live,
        answers: s1.answers - s0.answers,
        up,
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("benches/sbfd.rs needs root (namespaces, XDP, AF_PACKET)");
        std::process::exit(1);
    }
    let lists = env("LHE_BENCH_LISTS", 1_000) as u32;
    let window = Duration::from_secs(env("LHE_BENCH_SECONDS", 5));
    let lab = VethLab::new().expect("lab");
    lab.router.ip(&["addr", "add", &format!("{ENDPOINT}/32"), "dev", "lo"]).unwrap();
    let _decap = lab
        .router
        .run(|| {
            Decapsulator::builder()
                .pop_labels((0..lists).map(|i| Label::new(16_000 + i).unwrap()))
                .max_pop_labels(lists.max(1024))
                .other_labels(OtherLabels::Drop)
                .attach(VethLab::ROUTER_IF, XdpMode::Native)
        })
        .unwrap()
        .expect("decapsulator");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let socket = lab.router.run(|| UdpSocket::bind(SocketAddr::new(ENDPOINT.into(), SBFD_PORT)).unwrap()).unwrap();
    let reflector = {
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        std::thread::spawn(move || reflect(socket, stop, answered))
    };

    // A veth beside the lab's whose peer drops the frames at once (no MPLS
    // handler in the kernel), so the engine thread pays for its own work
    // and little else (on the lab's veth, the router namespace's receive
    // path runs in the sender's softirq and is charged to the engine thread
    // too). No dummy device: this kernel is built without it; and the
    // probes bypass the qdisc, which refuses frames for a peer that is down.
    lab.host.ip(&["link", "add", "sbfd0", "type", "veth", "peer", "name", "sbfd1"]).unwrap();
    lab.host.ip(&["link", "set", "sbfd1", "up"]).unwrap();
    lab.host.ip(&["addr", "add", "10.202.0.2/24", "dev", "sbfd0"]).unwrap();
    lab.host.ip(&["link", "set", "sbfd0", "up"]).unwrap();
    // The peer drops them in XDP: that also gives it the NAPI a veth needs
    // to take XDP-redirected frames (the live-frame row), and every row
    // pays the same for the peer.
    let _peer = lab.host.run(|| ReturnCounter::attach("sbfd1")).unwrap().expect("XDP drop on the peer");

    println!("S-BFD initiator CPU, {lists} segment lists every 10 ms (x 3), {window:?} window, engine thread only:");
    for (iface, what) in [
        (
            VethLab::HOST_IF,
            "veth to the router namespace, reflector answering (its receive path charged to the engine)",
        ),
        ("sbfd0", "a veth whose peer drops the frames, nothing answers (the initiator's own transmit and timer work)"),
    ] {
        println!(" {what}:");
        let mut rows = Vec::new();
        for (name, path) in [
            ("one call per packet", (false, false, false, false)),
            ("sendmmsg/recvmmsg", (true, false, false, false)),
            ("PACKET_TX_RING", (true, true, false, false)),
            ("live frames/recvmmsg", (true, false, true, false)),
            ("live frames/filter", (true, false, true, true)),
        ] {
            // LHE_BENCH_ONLY=NAME[,NAME..]: the rows whose section and name
            // contain every NAME (e.g. "nothing answers,live frames/recvmmsg": one row, to profile it).
            let row = format!("{what}: {name}");
            if std::env::var("LHE_BENCH_ONLY").is_ok_and(|only| !only.split(',').all(|o| row.contains(o))) {
                continue;
            }
            let before = answered.load(Ordering::Relaxed);
            let m = measure(&lab, iface, lists, window, path);
            let secs = window.as_secs_f64();
            println!(
                "  {name:>20}: {:6.2}% of one core ({:.2}x the 2% goal; user space {:.2}%), {:.0} probes/s ({:.0} as live frames), {:.0} answers/s, {}/{lists} lists usable (reflector answered {})",
                m.cpu * 100.0,
                m.cpu / GOAL,
                m.user * 100.0,
                m.sent as f64 / secs,
                m.sent_live as f64 / secs,
                m.answers as f64 / secs,
                m.up,
                answered.load(Ordering::Relaxed) - before
            );
            rows.push(m.cpu);
        }
        if let [per_packet, batched, ring, live, filter] = rows[..] {
            println!(
                "  batched / per packet: {:.2}; TX ring / batched: {:.2}; live frames / batched: {:.2}; live frames / TX ring: {:.2}; live frames + filter / batched: {:.2}; filter / recvmmsg (both live frames): {:.2}",
                batched / per_packet,
                ring / batched,
                live / batched,
                live / ring,
                filter / batched,
                filter / live
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    reflector.join().unwrap();
}
