//! Shared by the integration tests and the benchmarks: a fluent frame builder
//! (etherparse writes the IP and L4 headers, checksums included), the expected
//! labelled frame, and the root guard for privileged tests.
#![allow(dead_code)]

pub mod model;

use std::net::IpAddr;

use etherparse::{IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder};
use lnetd_host_encap::labels::LabelStackEntry;
use lnetd_host_encap::testing::lab::Netns;

pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Addresses the test-run namespace puts on its loopback: "the host's own".
pub const LOCAL_V4: &str = "192.0.2.55";
pub const LOCAL_V6: &str = "2001:db8:ffff::55";
/// The test-run namespace's loopback MTU (the MTU BPF_PROG_TEST_RUN checks).
pub const MTU: usize = 1500;

/// Runs `f` on a thread inside a fresh namespace, handed the namespace.
pub fn in_netns<T: Send>(tag: &str, f: impl FnOnce(&Netns) -> T + Send) -> T {
    let ns = Netns::new(tag).expect("namespace");
    let nsr = &ns;
    ns.run(move || f(nsr)).expect("enter namespace")
}

/// As [`in_netns`], with the loopback at [`MTU`] and carrying [`LOCAL_V4`] and
/// [`LOCAL_V6`]: where the BPF_PROG_TEST_RUN tables and the fuzzer run.
pub fn in_test_run_netns<T: Send>(tag: &str, f: impl FnOnce() -> T + Send) -> T {
    let ns = Netns::new(tag).expect("namespace");
    ns.ip(&["link", "set", "lo", "mtu", &MTU.to_string()]).expect("lo mtu");
    ns.ip(&["addr", "add", &format!("{LOCAL_V4}/32"), "dev", "lo"]).expect("local v4");
    ns.ip(&["-6", "addr", "add", &format!("{LOCAL_V6}/128"), "dev", "lo"]).expect("local v6");
    ns.run(f).expect("enter namespace")
}

/// Why privileged tests are `#[ignore]`d: each carries
/// `#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]`
/// (an attribute takes a literal, so the text is repeated there; this is the same
/// text), so a plain `cargo test` reports them as ignored, not passed, and
/// scripts/test.sh runs them with `--include-ignored`.
pub const NEEDS_ROOT: &str = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root";

/// Why this kernel refuses XDP live frames (BPF_PROG_TEST_RUN's live mode),
/// or `None` when it runs them: some builds answer EPERM even to root.
pub fn live_frames_refused() -> Option<String> {
    let generator = lnetd_host_encap::testing::generator::Generator::load().expect("testing object");
    generator.live_frames().err().map(|e| e.to_string())
}

/// The first line of every privileged test: returns when the process is root,
/// panics otherwise. The test only runs when someone asked for ignored tests,
/// so without root that is a failure, never a silent pass (and under CI=true
/// the message says the CI cannot run the privileged tier).
pub fn privileged(test: &str) {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} {NEEDS_ROOT}; under CI=true a privileged test that cannot run is a failure");
    }
    panic!("{test} {NEEDS_ROOT} (it runs only with --ignored or --include-ignored)");
}

#[derive(Debug, Clone, Copy)]
pub enum L4 {
    Udp { sport: u16, dport: u16 },
    TcpSyn { sport: u16, dport: u16 },
    IcmpEcho,
}

/// A frame to build: Ethernet, 0-2 VLAN tags, IPv4 or IPv6, UDP/TCP/ICMP.
#[derive(Debug, Clone)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// (TPID, VLAN id), outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub l4: L4,
    pub payload_len: usize,
    pub ipv4_options: Vec<u8>,
    /// (offset in 8-byte units, more fragments)
    pub fragment: Option<(u16, bool)>,
    /// DSCP (0..=63) in the IPv4 TOS / IPv6 traffic class.
    pub dscp: u8,
}

/// A built frame and where its IP header starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub l2_len: usize,
}

/// The top label the program pushes for a frame to `dst` (through
/// BPF_PROG_TEST_RUN); `None` when it passes the frame unlabelled.
pub fn top_label(enc: &lnetd_host_encap::Encapsulator, dst: &str) -> Option<u32> {
    let out = enc.diagnostics().test_run(&frame(dst).build().bytes).expect("test run");
    match out.action {
        lnetd_host_encap::diagnostics::XdpAction::Tx => {
            let entry: [u8; 4] = out.frame[14..18].try_into().expect("a label stack entry");
            Some(u32::from_be_bytes(entry) >> 12)
        }
        _ => None,
    }
}

pub fn frame(dst: &str) -> FrameSpec {
    let dst: IpAddr = dst.parse().expect("test destination is an address");
    let src = if dst.is_ipv4() { "10.200.0.1".parse().unwrap() } else { "fd00:200::1".parse().unwrap() };
    FrameSpec {
        src_mac: SRC_MAC,
        dst_mac: DST_MAC,
        vlans: vec![],
        src,
        dst,
        ttl: 64,
        l4: L4::Udp { sport: 40000, dport: 5001 },
        payload_len: 18,
        ipv4_options: vec![],
        fragment: None,
        dscp: 0,
    }
}

impl FrameSpec {
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }
    pub fn vlan(mut self, tpid: u16, id: u16) -> Self {
        self.vlans.push((tpid, id));
        self
    }
    pub fn l4(mut self, l4: L4) -> Self {
        self.l4 = l4;
        self
    }
    pub fn payload(mut self, len: usize) -> Self {
        self.payload_len = len;
        self
    }
    pub fn options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        self
    }
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.fragment = Some((offset, more));
        self
    }
    pub fn dscp(mut self, dscp: u8) -> Self {
        self.dscp = dscp;
        self
    }
    pub fn dst_mac(mut self, mac: [u8; 6]) -> Self {
        self.dst_mac = mac;
        self
    }

    fn ip_headers(&self) -> IpHeaders {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = Ipv4Header::new(0, self.ttl, IpNumber::UDP, s.octets(), d.octets()).unwrap();
                h.options =
                    self.ipv4_options.as_slice().try_into().expect("options are a multiple of 4, at most 40 bytes");
                h.dscp = etherparse::IpDscp::try_new(self.dscp).expect("DSCP 0..=63");
                if let Some((offset, more)) = self.fragment {
                    h.fragment_offset = IpFragOffset::try_new(offset).unwrap();
                    h.more_fragments = more;
                }
                IpHeaders::Ipv4(h, Default::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: self.dscp << 2,
                    flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
                    payload_length: 0,
                    next_header: IpNumber::UDP,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                },
                Default::default(),
            ),
            _ => panic!("source and destination of different families"),
        }
    }

    /// The IP packet alone (what a socket would hand the kernel).
    pub fn ip_packet(&self) -> Vec<u8> {
        let payload: Vec<u8> = (0..self.payload_len).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let ip = PacketBuilder::ip(self.ip_headers());
        let v6 = self.dst.is_ipv6();
        match self.l4 {
            L4::Udp { sport, dport } => ip.udp(sport, dport).write(&mut out, &payload),
            L4::TcpSyn { sport, dport } => ip.tcp(sport, dport, 1, 64240).syn().write(&mut out, &payload),
            L4::IcmpEcho if v6 => ip.icmpv6_echo_request(7, 1).write(&mut out, &payload),
            L4::IcmpEcho => ip.icmpv4_echo_request(7, 1).write(&mut out, &payload),
        }
        .expect("etherparse writes the packet");
        out
    }

    pub fn build(&self) -> Frame {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&self.dst_mac);
        bytes.extend_from_slice(&self.src_mac);
        for (tpid, id) in &self.vlans {
            bytes.extend_from_slice(&tpid.to_be_bytes());
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        let ethertype: u16 = if self.dst.is_ipv6() { 0x86dd } else { 0x0800 };
        bytes.extend_from_slice(&ethertype.to_be_bytes());
        let l2_len = bytes.len();
        bytes.extend_from_slice(&self.ip_packet());
        Frame { bytes, l2_len }
    }
}

/// A raw Ethernet frame of any ethertype.
pub fn raw_frame(ethertype: u16, payload: &[u8]) -> Frame {
    let mut bytes = [&DST_MAC[..], &SRC_MAC[..], &ethertype.to_be_bytes()[..], payload].concat();
    bytes.resize(bytes.len().max(60), 0);
    Frame { bytes, l2_len: 14 }
}

/// The frame the encapsulator must emit for `input`: MACs swapped, VLAN tags
/// kept, the innermost ethertype 0x8847, the entries, then the IP packet
/// byte for byte. Written from RFC 3032 and the issue, not from the C.
pub fn labelled(input: &Frame, entries: &[LabelStackEntry]) -> Vec<u8> {
    let b = &input.bytes;
    let mut out = Vec::with_capacity(b.len() + 4 * entries.len());
    out.extend_from_slice(&b[6..12]);
    out.extend_from_slice(&b[0..6]);
    out.extend_from_slice(&b[12..input.l2_len - 2]);
    out.extend_from_slice(&0x8847u16.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.encode());
    }
    out.extend_from_slice(&b[input.l2_len..]);
    out
}

/// Entries for `labels` with one TTL and TC, S on the last.
pub fn entries(labels: &[u32], tc: u8, ttl: u8) -> Vec<LabelStackEntry> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &label)| LabelStackEntry { label, tc, bottom: i + 1 == labels.len(), ttl })
        .collect()
}

/// Removes the pins of an interface in a namespace when dropped: cleanup that
/// runs even when the test fails.
pub struct PinGuard<'a>(pub &'a Netns, pub &'static str);

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        let iface = self.1;
        let _ =
            self.0.run(|| lnetd_host_encap::testing::remove_pins(&lnetd_host_encap::pins::PinRoots::default(), iface));
    }
}

/// Kills and reaps a child process when dropped.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The MPLS frames coming back in on a capture (label stack, inner IP
/// packet), from now until `stop` is set and the link has been quiet for
/// half a second.
pub fn labelled_frames(
    capture: &lnetd_host_encap::testing::lab::Capture,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(Vec<LabelStackEntry>, Vec<u8>)> {
    use std::time::{Duration, Instant};
    let mut got = Vec::new();
    let mut idle: Option<Instant> = None;
    loop {
        match capture.next(Duration::from_millis(50)).expect("capture") {
            Some(f) if !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47][..]) => {
                idle = None;
                if let Ok((stack, inner)) = lnetd_host_encap::labels::decode_stack(&f.bytes[14..]) {
                    got.push((stack, inner.to_vec()));
                }
            }
            Some(_) => {}
            None if stop.load(std::sync::atomic::Ordering::Relaxed)
                && idle.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(500) =>
            {
                return got;
            }
            None => {}
        }
    }
}

/// As [`labelled_frames`], for IPv4 traffic: each frame's destination and
/// its labels, top first (what the swap-under-traffic tests judge).
pub fn labelled_ipv4(
    capture: &lnetd_host_encap::testing::lab::Capture,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(std::net::Ipv4Addr, Vec<u32>)> {
    use etherparse::{NetSlice, SlicedPacket};
    labelled_frames(capture, stop)
        .into_iter()
        .filter_map(|(stack, inner)| match SlicedPacket::from_ip(&inner) {
            Ok(SlicedPacket { net: Some(NetSlice::Ipv4(ip)), .. }) => {
                Some((ip.header().destination_addr(), stack.iter().map(|e| e.label).collect()))
            }
            _ => None,
        })
        .collect()
}

/// UDP_SEGMENT (linux/udp.h: 103) on a UDP socket: its sends become GSO
/// super-packets cut into `size`-byte datagrams in the kernel.
pub fn set_udp_segment(sock: &std::net::UdpSocket, size: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    const SOL_UDP: i32 = 17;
    const UDP_SEGMENT: i32 = 103;
    // SAFETY: a valid socket fd and a pointer to an int of the given length.
    let rc = unsafe {
        nix::libc::setsockopt(
            sock.as_raw_fd(),
            SOL_UDP,
            UDP_SEGMENT,
            (&size as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Adds one row to the benchmark suite's summary: `scripts/bench.sh` points
/// LHE_BENCH_SUMMARY at a file and prints its rows as one table at the end.
/// Nothing happens when the variable is unset (a benchmark run alone).
pub fn summary_row(benchmark: &str, measure: &str, result: &str) {
    use std::io::Write;
    let Ok(path) = std::env::var("LHE_BENCH_SUMMARY") else { return };
    let mut file =
        std::fs::OpenOptions::new().append(true).create(true).open(&path).expect("the benchmark summary file");
    writeln!(file, "| {benchmark} | {measure} | {result} |").expect("write the benchmark summary");
}

/// A temporary file (unique to this process), removed when dropped.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("lnetd-test-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The command on the veth lab's host interface, in `ns`'s network
/// namespace only (nsenter --net: the host's /sys and bpffs stay in view).
pub fn command(ns: &Netns, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", ns.name()))
        .arg(env!("CARGO_BIN_EXE_lnetd-host-encap"))
        .args(["-i", lnetd_host_encap::testing::lab::VethLab::HOST_IF])
        .args(args);
    c
}

/// [`command`], run to its end.
pub fn run(ns: &Netns, args: &[&str]) -> std::process::Output {
    command(ns, args).output().expect("run lnetd-host-encap")
}

/// `GET path` from `addr` inside `ns` (the agent's metrics listener), the
/// whole HTTP response as text.
pub fn http_get(ns: &Netns, addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    ns.run(|| {
        let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    })
    .unwrap()
}
