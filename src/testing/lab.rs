//! Throwaway network labs: named network namespaces joined by a veth pair, for
//! the crate's tests and demo, and for users' own integration tests.
//!
//! A lab only ever touches its own namespaces (created with unique names,
//! removed on drop) and never the caller's: interfaces are created directly in
//! them, and every address lives inside them. It needs root and iproute2; the
//! veth lab also needs ethtool.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{self, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

/// A lab step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A command is not installed.
    #[error("`{tool}` is not installed; install the Debian package `{package}` (apt-get install {package})")]
    MissingTool {
        /// The command.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call failed.
    #[error("{call} failed: {errno}")]
    Sys {
        /// The call.
        call: &'static str,
        /// Its errno.
        errno: nix::errno::Errno,
    },
}

fn sys(call: &'static str) -> impl FnOnce(nix::errno::Errno) -> LabError {
    move |errno| LabError::Sys { call, errno }
}

/// Runs a command, failing with its stderr.
fn run(tool: &'static str, package: &'static str, args: &[&str]) -> Result<(), LabError> {
    let out = Command::new(tool).args(args).output().map_err(|_| LabError::MissingTool { tool, package })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("{tool} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

const NAME_PREFIX: &str = "lhe-";

/// Removes namespaces left by lab processes that no longer exist (a test
/// killed before its Drop ran), once they are an hour old: a runner in another
/// PID namespace sharing /run/netns is never that slow.
fn remove_orphans() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(NAME_PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            log::info!("removing orphaned lab namespace {name}");
            let _ = run("ip", "iproute2", &["netns", "del", &name]);
        }
    }
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `lhe-<pid>-<n>-<tag>` with its loopback up.
    ///
    /// # Errors
    /// [`LabError`] when `ip netns add` fails (not root, no iproute2).
    pub fn new(tag: &str) -> Result<Netns, LabError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_orphans();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}-{n}-{tag}", std::process::id());
        run("ip", "iproute2", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.forget_a_dead_namespaces_pins();
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Removes pins and state filed under this namespace's inode number: a
    /// new namespace has none, so they are a dead namespace's whose number
    /// the kernel reused (a lab that died before its guards ran), and they
    /// would make a first attach here find a dataplane "already pinned".
    fn forget_a_dead_namespaces_pins(&self) {
        use std::os::unix::fs::MetadataExt;
        let Ok(ino) = std::fs::metadata(format!("/run/netns/{}", self.name)).map(|m| m.ino()) else { return };
        let roots = crate::pins::PinRoots::default();
        for root in [&roots.bpffs, &roots.state] {
            for dir in [root.join(format!("net{ino}")), root.join("decap").join(format!("net{ino}"))] {
                if dir.exists() {
                    log::info!("removing {}: a dead namespace's pins (its inode number was reused)", dir.display());
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }

    /// The namespace's name (as `ip netns` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args>`.
    ///
    /// # Errors
    /// [`LabError::Command`] with ip's message.
    pub fn ip(&self, args: &[&str]) -> Result<(), LabError> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", "iproute2", &full)
    }

    /// Runs a program inside the namespace (`ip netns exec`).
    ///
    /// # Errors
    /// [`LabError`] when it is missing or fails.
    pub fn exec(&self, tool: &'static str, package: &'static str, args: &[&str]) -> Result<(), LabError> {
        let mut full = vec!["netns", "exec", &self.name, tool];
        full.extend_from_slice(args);
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(LabError::MissingTool { tool, package });
        }
        run("ip", "iproute2", &full)
    }

    /// Runs `f` on a thread that has entered the namespace, and returns its
    /// result. Sockets, BPF links and encapsulators created there stay bound
    /// to the namespace and may be used from any thread afterwards.
    ///
    /// # Errors
    /// [`LabError::Sys`] when the namespace cannot be entered.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        let path = format!("/run/netns/{}", self.name);
        let ns: OwnedFd = std::fs::File::open(&path)
            .map_err(|e| LabError::Sys {
                call: "open(/run/netns)",
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            })?
            .into();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(sys("setns"))?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // What the run directory keys by this namespace's inode dies with it:
        // an agent killed with SIGKILL leaves its socket's directory behind.
        if let Ok(meta) = std::fs::metadata(format!("/run/netns/{}", self.name)) {
            use std::os::unix::fs::MetadataExt;
            let sockets =
                std::path::Path::new(crate::pins::DEFAULT_STATE_ROOT).join("sock").join(format!("net{}", meta.ino()));
            let _absent_or_gone = std::fs::remove_dir_all(sockets);
        }
        if let Err(e) = run("ip", "iproute2", &["netns", "del", &self.name]) {
            log::warn!("lab cleanup: {e}");
        }
    }
}

/// Two namespaces joined by a veth pair: the "router" end `r0` and the "host"
/// end `h0`, where an encapsulator attaches.
///
/// ```text
///  [router ns] r0 10.200.0.1/24 fd00:200::1/64 --veth-- h0 10.200.0.2/24 fd00:200::2/64 [host ns]
///              default routes via the host
/// ```
///
/// Every destination the router sends to goes to the host's MAC (static
/// neighbours, so no ARP or ND delay); tx checksum offload is off on `r0` so the
/// frames carry real checksums, as on a wire.
#[derive(Debug)]
pub struct VethLab {
    /// The router side: sends traffic and captures what comes back.
    pub router: Netns,
    /// The host side, where the encapsulator runs.
    pub host: Netns,
}

impl VethLab {
    /// The router-side interface.
    pub const ROUTER_IF: &'static str = "r0";
    /// The host-side interface.
    pub const HOST_IF: &'static str = "h0";
    /// MAC of `r0`.
    pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    /// MAC of `h0`.
    pub const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
    /// IPv4 address of `r0`.
    pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    /// IPv4 address of `h0`.
    pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    /// IPv6 address of `r0`.
    pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    /// IPv6 address of `h0`.
    pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);

    /// Builds the lab.
    ///
    /// # Errors
    /// [`LabError`] for a missing tool or a failing step; whatever was created
    /// is removed.
    pub fn new() -> Result<VethLab, LabError> {
        let lab = VethLab { router: Netns::new("r")?, host: Netns::new("h")? };
        let (r, h) = (Self::ROUTER_IF, Self::HOST_IF);
        let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        let (rmac, hmac) = (mac(Self::ROUTER_MAC), mac(Self::HOST_MAC));
        lab.router.ip(&[
            "link",
            "add",
            r,
            "address",
            &rmac,
            "type",
            "veth",
            "peer",
            "name",
            h,
            "address",
            &hmac,
            "netns",
            lab.host.name(),
        ])?;
        for (ns, dev, v4, v6) in
            [(&lab.router, r, Self::ROUTER_V4, Self::ROUTER_V6), (&lab.host, h, Self::HOST_V4, Self::HOST_V6)]
        {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ns.ip(&["-6", "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        // Static neighbours both ways: no ARP or ND delay, no lost first packet.
        for (ns, dev, peer_v4, peer_v6, peer_mac) in [
            (&lab.router, r, Self::HOST_V4, Self::HOST_V6, &hmac),
            (&lab.host, h, Self::ROUTER_V4, Self::ROUTER_V6, &rmac),
        ] {
            for addr in [IpAddr::V4(peer_v4), IpAddr::V6(peer_v6)] {
                let family = if addr.is_ipv6() { "-6" } else { "-4" };
                let addr = addr.to_string();
                ns.ip(&[family, "neigh", "replace", &addr, "lladdr", peer_mac, "dev", dev, "nud", "permanent"])?;
            }
        }
        lab.router.ip(&["route", "add", "default", "via", &Self::HOST_V4.to_string(), "dev", r])?;
        lab.router.ip(&["-6", "route", "add", "default", "via", &Self::HOST_V6.to_string(), "dev", r])?;
        lab.router.exec("ethtool", "ethtool", &["-K", r, "tx", "off"])?;
        Ok(lab)
    }

    /// An address of the host end, by family.
    pub fn host_addr(v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Self::HOST_V6)
        } else {
            IpAddr::V4(Self::HOST_V4)
        }
    }
}

/// The id of the XDP program attached to `iface` of the calling thread's
/// namespace (any mode), or `None`.
///
/// # Errors
/// [`LabError::Sys`] when the interface does not exist or the query fails.
pub fn attached_xdp_program(iface: &str) -> Result<Option<u32>, LabError> {
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(sys("if_nametoindex"))?;
    crate::sys::link::attached_prog_id(ifindex).map_err(sys("bpf_xdp_query"))
}

/// A captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The frame, from the destination MAC on.
    pub bytes: Vec<u8>,
    /// Sent by the interface (true) or received by it (false).
    pub outgoing: bool,
}

/// The frames an interface sends and receives, read from an AF_PACKET socket.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
    ifindex: usize,
}

impl Capture {
    /// Opens a capture on `iface` of the calling thread's namespace.
    ///
    /// # Errors
    /// [`LabError::Sys`] (needs CAP_NET_RAW).
    pub fn open(iface: &str) -> Result<Capture, LabError> {
        let ifindex = nix::net::if_::if_nametoindex(iface).map_err(sys("if_nametoindex"))? as usize;
        let fd = socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::EthAll)
            .map_err(sys("socket(AF_PACKET)"))?;
        Ok(Capture { fd, ifindex })
    }

    /// Grows the socket's receive buffer (SO_RCVBUFFORCE) so that bursts are
    /// not dropped before they are read.
    ///
    /// # Errors
    /// [`LabError::Sys`].
    pub fn with_buffer(self, bytes: usize) -> Result<Capture, LabError> {
        socket::setsockopt(&self.fd, sockopt::RcvBufForce, &bytes).map_err(sys("setsockopt(SO_RCVBUFFORCE)"))?;
        Ok(self)
    }

    /// The next frame sent or received on the interface within `timeout`.
    ///
    /// # Errors
    /// [`LabError::Sys`] when the socket fails.
    pub fn next(&self, timeout: Duration) -> Result<Option<Captured>, LabError> {
        let deadline = deadline_after(timeout);
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let tv = TimeVal::new(left.as_secs() as _, left.subsec_micros().max(1) as _);
            socket::setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv).map_err(sys("setsockopt(SO_RCVTIMEO)"))?;
            match socket::recvfrom::<LinkAddr>(self.fd.as_raw_fd(), &mut buf) {
                Ok((len, Some(from))) if from.ifindex() == self.ifindex => {
                    let bytes = buf.get(..len).unwrap_or(&buf).to_vec();
                    return Ok(Some(Captured { bytes, outgoing: from.pkttype() == PACKET_OUTGOING }));
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(LabError::Sys { call: "recvfrom(AF_PACKET)", errno: e }),
            }
        }
    }

    /// Every frame until none arrives for `idle`, or `max` elapses.
    ///
    /// # Errors
    /// As [`Capture::next`].
    pub fn drain(&self, idle: Duration, max: Duration) -> Result<Vec<Captured>, LabError> {
        let deadline = deadline_after(max);
        let mut frames = Vec::new();
        while let Some(f) = self.next(idle.min(deadline.saturating_duration_since(Instant::now())))? {
            frames.push(f);
        }
        Ok(frames)
    }
}

/// Writes frames as a classic pcap file (Ethernet link type), for tcpdump or
/// Wireshark.
///
/// # Errors
/// [`LabError::Sys`] when the file cannot be written.
pub fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) -> Result<(), LabError> {
    let mut out = Vec::new();
    // Magic, version 2.4, GMT offset, accuracy, snap length, LINKTYPE_ETHERNET.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (i, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        for word in [i as u32, 0, len, len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(frame);
    }
    std::fs::write(path, out).map_err(|e| LabError::Sys {
        call: "write(pcap)",
        errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
    })
}

/// `timeout` from now; a timeout too large to represent means "a year".
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// `PACKET_OUTGOING` from linux/if_packet.h: a frame the interface sent.
const PACKET_OUTGOING: u8 = 4;

/// Traffic a lab sends through real kernel sockets, from the calling thread's
/// network namespace.
pub mod traffic {
    use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
    use std::time::Duration;

    use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage};

    use super::{sys, LabError};

    fn io(call: &'static str) -> impl FnOnce(std::io::Error) -> LabError {
        move |e| LabError::Sys { call, errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)) }
    }

    fn set_ttl(fd: &impl std::os::fd::AsFd, v6: bool, ttl: u8) -> Result<(), LabError> {
        if v6 {
            socket::setsockopt(fd, sockopt::Ipv6Ttl, &i32::from(ttl)).map_err(sys("setsockopt(IPV6_UNICAST_HOPS)"))
        } else {
            socket::setsockopt(fd, sockopt::Ipv4Ttl, &i32::from(ttl)).map_err(sys("setsockopt(IP_TTL)"))
        }
    }

    /// One UDP datagram with the given TTL / hop limit.
    ///
    /// # Errors
    /// [`LabError::Sys`].
    pub fn udp(dst: SocketAddr, ttl: u8, payload: &[u8]) -> Result<(), LabError> {
        let bind: SocketAddr = if dst.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }
            .map_err(|_| LabError::Sys { call: "parse", errno: nix::errno::Errno::EINVAL })?;
        let sock = UdpSocket::bind(bind).map_err(io("bind(udp)"))?;
        set_ttl(&sock, dst.is_ipv6(), ttl)?;
        sock.send_to(payload, dst).map_err(io("sendto(udp)"))?;
        Ok(())
    }

    /// One ICMP / ICMPv6 echo request (raw socket; the kernel fills the ICMPv6 checksum).
    ///
    /// # Errors
    /// [`LabError::Sys`] (needs CAP_NET_RAW).
    pub fn ping(dst: IpAddr, ttl: u8, seq: u16) -> Result<(), LabError> {
        let (family, proto, kind) = match dst {
            IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, 8u8),
            IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, 128u8),
        };
        let fd = socket::socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto).map_err(sys("socket(raw)"))?;
        set_ttl(&fd, dst.is_ipv6(), ttl)?;
        let body = [&[0x12, 0x34][..], &seq.to_be_bytes(), b"lnetd-host-encap"].concat();
        // The kernel computes ICMPv6 checksums on raw sockets itself.
        let sum = if dst.is_ipv4() { internet_checksum(&[&[kind, 0, 0, 0][..], &body].concat()) } else { 0 };
        let msg = [&[kind, 0][..], &sum.to_be_bytes(), &body].concat();
        let to = SockaddrStorage::from(SocketAddr::new(dst, 0));
        socket::sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), &msg, &to, MsgFlags::empty())
            .map_err(sys("sendto(raw)"))?;
        Ok(())
    }

    /// Sends `frame` (from the destination MAC on) as it is out of `iface`
    /// of the calling thread's namespace, through an AF_PACKET socket: for
    /// frames no socket of the kernel would build (an MPLS label stack, a
    /// malformed header). The frame must hold at least an Ethernet header.
    ///
    /// # Errors
    /// [`LabError::Sys`] (needs CAP_NET_RAW); EINVAL for a frame shorter than
    /// an Ethernet header.
    #[allow(unsafe_code)]
    pub fn raw_frame(iface: &str, frame: &[u8]) -> Result<(), LabError> {
        use nix::libc;
        use nix::sys::socket::{LinkAddr, SockaddrLike};

        let einval = LabError::Sys { call: "sendto(AF_PACKET)", errno: nix::errno::Errno::EINVAL };
        let ethertype = frame.get(12..14).and_then(|t| <[u8; 2]>::try_from(t).ok());
        let (Some(dst), Some(ethertype)) = (frame.first_chunk::<6>(), ethertype) else { return Err(einval) };
        let ifindex = nix::net::if_::if_nametoindex(iface).map_err(sys("if_nametoindex"))?;
        let fd = socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None)
            .map_err(sys("socket(AF_PACKET)"))?;
        // SAFETY: all-zero bytes are a valid sockaddr_ll (a plain C struct of integers).
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        // Network order, as the kernel reads it.
        sll.sll_protocol = u16::from_ne_bytes(ethertype);
        sll.sll_ifindex = i32::try_from(ifindex).map_err(|_| einval)?;
        sll.sll_halen = 6;
        for (slot, byte) in sll.sll_addr.iter_mut().zip(dst) {
            *slot = *byte;
        }
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `sll` is an initialised sockaddr_ll of `len` bytes that outlives the call.
        let to = unsafe { LinkAddr::from_raw((&sll as *const libc::sockaddr_ll).cast(), Some(len)) }
            .ok_or(LabError::Sys { call: "sockaddr_ll", errno: nix::errno::Errno::EINVAL })?;
        socket::sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), frame, &to, MsgFlags::empty())
            .map_err(sys("sendto(AF_PACKET)"))?;
        Ok(())
    }

    /// A TCP SYN: a connection attempt nobody answers, abandoned after `wait`
    /// (shorter than the 1 s retransmission timer, so exactly one SYN leaves).
    pub fn tcp_syn(dst: SocketAddr, wait: Duration) {
        let _ = TcpStream::connect_timeout(&dst, wait);
    }

    /// RFC 1071 checksum.
    fn internet_checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| match c {
                [a, b] => u32::from(u16::from_be_bytes([*a, *b])),
                [a] => u32::from(*a) << 8,
                _ => 0,
            })
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}
