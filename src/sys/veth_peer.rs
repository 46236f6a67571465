//! Whether a veth's peer can receive the frames an XDP program sends back
//! with XDP_TX, asked of the kernel through rtnetlink (RTM_GETLINK).
//!
//! A veth hands XDP_TX frames to its peer's XDP receive ring, which exists
//! only while the peer runs an XDP program in native mode (drivers/net/veth.c,
//! `veth_xdp_xmit`: no NAPI on the peer's queue, the frames are dropped and
//! counted in `rx_queue_N_xdp_tx_errors`). The peer usually lives in another
//! network namespace (a container, a lab's router): its ifindex and that
//! namespace's id come with our link (IFLA_LINK, IFLA_LINK_NETNSID), and
//! RTM_GETLINK with IFLA_TARGET_NETNSID (Linux 4.20+) reads the peer's XDP
//! state there without entering it.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const NLM_F_REQUEST: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// IFLA_XDP's nested attributes (linux/if_link.h).
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
/// IFLA_XDP_ATTACHED values.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_MULTI: u8 = 4;

/// A veth's peer, as our side of the pair sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VethPeer {
    /// Its ifindex, in its own namespace.
    pub ifindex: u32,
    /// Our id for its namespace; `None` when it is ours.
    pub netnsid: Option<i32>,
    /// It runs an XDP program in native mode: XDP_TX frames are delivered.
    pub native_xdp: bool,
}

/// The peer of `ifindex` (of the calling thread's namespace) when it is a
/// veth; `None` for any other kind of device.
pub(crate) fn veth_peer(ifindex: u32) -> Result<Option<VethPeer>, Errno> {
    let sock = NetlinkRoute::open()?;
    let ours = sock.get_link(ifindex, None)?;
    let kind = ours.attr(libc::IFLA_LINKINFO).and_then(|info| find(info, libc::IFLA_INFO_KIND));
    if kind.map(|k| k.strip_suffix(b"\0").unwrap_or(k)) != Some(b"veth") {
        return Ok(None);
    }
    let Some(peer) = ours.attr(libc::IFLA_LINK).and_then(read_u32).filter(|i| *i != 0) else {
        // A veth whose peer is gone (being deleted): nothing receives.
        return Ok(None);
    };
    let netnsid = ours.attr(libc::IFLA_LINK_NETNSID).and_then(read_u32).map(|v| v as i32);
    let theirs = sock.get_link(peer, netnsid)?;
    let native_xdp = theirs.attr(libc::IFLA_XDP).is_some_and(|xdp| {
        match find(xdp, IFLA_XDP_ATTACHED).and_then(|v| v.first().copied()) {
            Some(XDP_ATTACHED_DRV) => true,
            Some(XDP_ATTACHED_MULTI) => find(xdp, IFLA_XDP_DRV_PROG_ID).and_then(read_u32).is_some_and(|id| id != 0),
            _ => false,
        }
    });
    Ok(Some(VethPeer { ifindex: peer, netnsid, native_xdp }))
}

/// An RTM_NEWLINK answer: the attributes after the ifinfomsg.
struct Link {
    attrs: Vec<u8>,
}

impl Link {
    fn attr(&self, kind: u16) -> Option<&[u8]> {
        find(&self.attrs, kind)
    }
}

/// The payload of the first attribute of `kind` in a run of rtattrs.
fn find(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while let Some(&[l0, l1, t0, t1]) = attrs.first_chunk::<4>() {
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        let ty = u16::from_ne_bytes([t0, t1]) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == kind {
            return attrs.get(4..len);
        }
        attrs = attrs.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn read_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

struct NetlinkRoute {
    fd: OwnedFd,
}

impl NetlinkRoute {
    fn open() -> Result<NetlinkRoute, Errno> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new fd nobody else owns.
        Ok(NetlinkRoute { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// RTM_GETLINK for `ifindex`, in the namespace `netnsid` names (ours if `None`).
    fn get_link(&self, ifindex: u32, netnsid: Option<i32>) -> Result<Link, Errno> {
        let mut req = Vec::with_capacity(NLMSG_HDR + IFINFOMSG + 8);
        let attr_len = if netnsid.is_some() { 8 } else { 0 };
        req.extend_from_slice(&((NLMSG_HDR + IFINFOMSG + attr_len) as u32).to_ne_bytes());
        req.extend_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
        req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        req.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel assigns ours
                                                    // ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
        req.extend_from_slice(&[0, 0, 0, 0]);
        req.extend_from_slice(&i32::try_from(ifindex).map_err(|_| Errno::ENODEV)?.to_ne_bytes());
        req.extend_from_slice(&[0; 8]);
        if let Some(id) = netnsid {
            req.extend_from_slice(&8u16.to_ne_bytes());
            req.extend_from_slice(&libc::IFLA_TARGET_NETNSID.to_ne_bytes());
            req.extend_from_slice(&id.to_ne_bytes());
        }
        // SAFETY: zeroed sockaddr_nl with the family set addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `req` and `to` outlive the call and their lengths are given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: `buf` outlives the call and its length is given.
            let got = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    e => return Err(e),
                }
            }
            let msg = buf.get(..got as usize).ok_or(Errno::EIO)?;
            let len = read_u32(msg).ok_or(Errno::EIO)? as usize;
            let ty = msg.get(4..6).and_then(|t| t.try_into().ok()).map(u16::from_ne_bytes).ok_or(Errno::EIO)?;
            let body = msg.get(NLMSG_HDR..len.min(msg.len())).ok_or(Errno::EIO)?;
            if i32::from(ty) == libc::NLMSG_ERROR {
                let code = body.get(..4).and_then(|c| c.try_into().ok()).map(i32::from_ne_bytes).ok_or(Errno::EIO)?;
                return Err(if code < 0 { Errno::from_raw(-code) } else { Errno::EIO });
            }
            if ty == libc::RTM_NEWLINK {
                return Ok(Link { attrs: body.get(IFINFOMSG..).ok_or(Errno::EIO)?.to_vec() });
            }
            // Anything else (a notification cannot arrive: we joined no group) is skipped.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_found_by_type_past_padding_and_nesting_bits() {
        // A 5-byte attribute (padded to 8), then a nested one (NLA_F_NESTED set).
        let mut attrs = vec![5, 0, 3, 0, b'v', 0, 0, 0];
        attrs.extend_from_slice(&[8, 0, 18, 0x80, 1, 2, 3, 4]);
        assert_eq!(find(&attrs, 3), Some(&b"v"[..]));
        assert_eq!(find(&attrs, 18), Some(&[1, 2, 3, 4][..]));
        assert_eq!(find(&attrs, 7), None);
        // A length running past the end is not trusted.
        assert_eq!(find(&[40, 0, 1, 0, 0, 0], 1), None);
    }
}
