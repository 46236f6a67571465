//! The engine's sockets: an AF_PACKET socket that sends whole probe frames
//! on the router-facing interface, and the UDP socket the reflectors'
//! answers arrive on; both with a batched path (sendmmsg/recvmmsg: one
//! system call for many packets) and a one-call-per-packet path (measured
//! against each other by benches/sbfd.rs).
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use super::packet::SOURCE_PORTS;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

/// Packets per sendmmsg/recvmmsg call.
pub const BATCH: usize = 64;
/// Room for one answer: a BFD control packet with the largest
/// authentication section is 24 + 28 bytes.
pub const RX_BUF: usize = 64;

/// Sends frames as they are out of one interface.
#[derive(Debug)]
pub struct PacketTx {
    fd: OwnedFd,
    ring: Option<super::ring::TxRing>,
}

impl PacketTx {
    /// An AF_PACKET socket bound to `ifindex`, receiving nothing (protocol 0).
    ///
    /// # Errors
    /// The errno of socket or bind (EPERM without CAP_NET_RAW).
    pub fn open(ifindex: u32) -> Result<PacketTx, Errno> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `raw` is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: all-zero bytes are a valid sockaddr_ll (a C struct of integers).
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x8847u16.to_be();
        sll.sll_ifindex = i32::try_from(ifindex).map_err(|_| Errno::EINVAL)?;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `sll` is an initialised sockaddr_ll of `len` bytes, alive for the call.
        let r = unsafe { libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), len) };
        if r < 0 {
            return Err(Errno::last());
        }
        // The probes are finished frames: straight to the driver, past the
        // qdisc and TC egress (where the encapsulator may be attached in
        // host mode, and which cost time per packet). Best effort: without
        // it they take the ordinary path.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from a live local.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(PacketTx { fd, ring: None })
    }

    /// Sends through a `PACKET_TX_RING` from now on ([`super::ring`]).
    ///
    /// # Errors
    /// The errno of setting the ring up.
    pub fn with_ring(mut self) -> Result<PacketTx, Errno> {
        self.ring = Some(super::ring::TxRing::new(self.fd.as_fd())?);
        Ok(self)
    }

    /// Sends every frame: through the ring when it has one (one send for
    /// all; fewer are sent when the ring is full), else one sendmmsg per
    /// [`BATCH`] frames when `batched`, else one send per frame. Returns how
    /// many left.
    ///
    /// # Errors
    /// The first failing call's errno (what was sent before it is lost to the count).
    pub fn send(&mut self, frames: &[&[u8]], batched: bool) -> Result<usize, Errno> {
        if let Some(ring) = &mut self.ring {
            return ring.send(self.fd.as_fd(), frames);
        }
        if !batched {
            for f in frames {
                // SAFETY: `f` is a live slice of `f.len()` bytes for the call.
                let r = unsafe { libc::send(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
                if r < 0 {
                    return Err(Errno::last());
                }
            }
            return Ok(frames.len());
        }
        let mut sent = 0;
        for chunk in frames.chunks(BATCH) {
            let mut iov: Vec<libc::iovec> =
                chunk.iter().map(|f| libc::iovec { iov_base: f.as_ptr() as *mut _, iov_len: f.len() }).collect();
            let mut msgs = mmsghdrs(&mut iov);
            let mut off = 0;
            while off < msgs.len() {
                let rest = msgs.get_mut(off..).unwrap_or_default();
                // SAFETY: `rest` holds initialised mmsghdrs whose iovecs point
                // into `frames`, all alive for the call; the kernel only reads them
                // (and writes msg_len).
                let r = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0) };
                if r <= 0 {
                    return Err(Errno::last());
                }
                off += r as usize;
            }
            sent += chunk.len();
        }
        Ok(sent)
    }
}

/// One message header per buffer of `iov`, for sendmmsg and recvmmsg; the
/// headers point into `iov`, which must outlive them.
fn mmsghdrs(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: all-zero bytes are a valid mmsghdr; the fields used are set here.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// Receives answers: the datagrams' payloads, up to [`RX_BUF`] bytes each.
#[derive(Debug)]
pub struct UdpRx {
    socket: UdpSocket,
    bufs: Vec<[u8; RX_BUF]>,
    lens: Vec<usize>,
}

impl UdpRx {
    /// Wraps a bound socket, its receive buffer grown to `bytes` (as far
    /// as net.core.rmem_max allows): the answers of a whole tick arrive
    /// between two reads.
    pub fn new(socket: UdpSocket, bytes: usize) -> UdpRx {
        let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt reads one c_int from a live local. A refusal
        // leaves the default buffer, which is only smaller.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        UdpRx { socket, bufs: vec![[0; RX_BUF]; BATCH], lens: Vec::with_capacity(BATCH) }
    }

    /// Takes up to [`BATCH`] queued datagrams without waiting: one recvmmsg
    /// call when `batched`, else one recv per datagram. Returns the payloads;
    /// fewer than [`BATCH`] means the queue is empty.
    ///
    /// # Errors
    /// A receive failure other than the timeout (EAGAIN) or a signal.
    pub fn recv(&mut self, batched: bool) -> Result<impl Iterator<Item = &[u8]>, Errno> {
        self.lens.clear();
        let fd = self.socket.as_raw_fd();
        if batched {
            let mut iov: Vec<libc::iovec> = self
                .bufs
                .iter_mut()
                .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: RX_BUF })
                .collect();
            let mut msgs = mmsghdrs(&mut iov);
            // SAFETY: each mmsghdr points at one live buffer of RX_BUF bytes;
            let r = unsafe {
                libc::recvmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if r < 0 {
                return match Errno::last() {
                    Errno::EAGAIN | Errno::EINTR => Ok(self.payloads()),
                    e => Err(e),
                };
            }
            self.lens.extend(msgs.iter().take(r as usize).map(|m| (m.msg_len as usize).min(RX_BUF)));
        } else {
            for buf in &mut self.bufs {
                // SAFETY: `buf` is a live buffer of RX_BUF bytes for the call.
                let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), RX_BUF, libc::MSG_DONTWAIT) };
                if r < 0 {
                    match Errno::last() {
                        Errno::EAGAIN | Errno::EINTR => break,
                        e => return Err(e),
                    }
                }
                self.lens.push((r as usize).min(RX_BUF));
            }
        }
        Ok(self.payloads())
    }

    /// Takes the answer filter off the socket: datagrams queue again.
    pub fn detach_filter(&self) {
        let zero: libc::c_int = 0;
        // SAFETY: setsockopt reads one c_int from a live local. A socket
        // without a filter refuses (ENOENT): nothing to undo then.
        unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DETACH_BPF,
                (&zero as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs.iter().zip(&self.lens).map(|(b, l)| b.get(..*l).unwrap_or(b))
    }
}

/// A UDP socket on a free port of 49152-65535 (IPv6 and, where the system
/// allows, IPv4-mapped; else IPv4 only), starting at a per-process offset
/// so that several initiators on one host rarely collide.
pub fn bind_source_port() -> Option<(UdpSocket, u16)> {
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let start = std::process::id() % span;
    for i in 0..span {
        let port = SOURCE_PORTS.start() + ((start + i) % span) as u16;
        let v6 = UdpSocket::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        let bound = v6.or_else(|_| UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)));
        if let Ok(s) = bound {
            return Some((s, port));
        }
    }
    None
}
