//! Whether an interface takes frames redirected to it by XDP (its driver's
//! `ndo_xdp_xmit`), read from the kernel's `netdev` generic netlink family
//! (Linux 6.3+): the live-frame transmitter sends through that door, and a
//! frame the driver cannot take is dropped where no caller sees it.
//!
//! A veth advertises it only while its peer can receive such frames (the
//! peer runs an XDP program or has GRO on), so the answer can change while
//! the engine runs: it asks again every second.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

/// `GENL_ID_CTRL` and its `CTRL_CMD_GETFAMILY` / attributes (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The `netdev` family (linux/netdev.h, 6.3+): `NETDEV_CMD_DEV_GET`, its
/// attributes and the `NETDEV_XDP_ACT_NDO_XMIT` bit of the features.
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_XDP_ACT_NDO_XMIT: u64 = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;

/// A generic netlink socket that asks the `netdev` family about one device.
#[derive(Debug)]
pub(super) struct XdpFeatures {
    fd: OwnedFd,
    family: u16,
    seq: u32,
}

impl XdpFeatures {
    /// Opens the socket and resolves the family.
    ///
    /// # Errors
    /// The errno of the socket, or ENOENT where the kernel has no `netdev`
    /// family (before 6.3): the features cannot be known there.
    pub(super) fn open() -> Result<XdpFeatures, Errno> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_GENERIC) };
        if raw < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `raw` is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut this = XdpFeatures { fd, family: GENL_ID_CTRL, seq: 0 };
        let reply = this.ask(CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME, b"netdev\0")?;
        let id = attribute(&reply, CTRL_ATTR_FAMILY_ID).and_then(|v| <[u8; 2]>::try_from(v.get(..2)?).ok());
        this.family = u16::from_ne_bytes(id.ok_or(Errno::ENOENT)?);
        Ok(this)
    }

    /// Whether `ifindex` (of the calling thread's namespace) takes
    /// redirected frames now.
    ///
    /// # Errors
    /// The kernel's errno (ENODEV: no such device).
    pub(super) fn ndo_xmit(&mut self, ifindex: u32) -> Result<bool, Errno> {
        let reply = self.ask(NETDEV_CMD_DEV_GET, NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes())?;
        let features = attribute(&reply, NETDEV_A_DEV_XDP_FEATURES)
            .and_then(|v| <[u8; 8]>::try_from(v.get(..8)?).ok())
            .map(u64::from_ne_bytes)
            .ok_or(Errno::EPROTO)?;
        Ok(features & NETDEV_XDP_ACT_NDO_XMIT != 0)
    }

    /// Sends one request with one attribute; returns the reply's attributes.
    fn ask(&mut self, cmd: u8, attr: u16, value: &[u8]) -> Result<Vec<u8>, Errno> {
        self.seq = self.seq.wrapping_add(1);
        let attr_len = 4 + value.len();
        let len = NLMSG_HDRLEN + GENL_HDRLEN + attr_len.div_ceil(4) * 4;
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&self.family.to_ne_bytes());
        msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, 1, 0, 0]);
        msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        msg.extend_from_slice(&attr.to_ne_bytes());
        msg.extend_from_slice(value);
        msg.resize(len, 0);
        // SAFETY: `msg` is a live buffer of `msg.len()` bytes; the kernel is
        // the default destination of an unbound netlink socket's send.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if r < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is a live buffer of its length.
            let r = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r < 0 {
                return Err(Errno::last());
            }
            let got = buf.get(..r as usize).unwrap_or_default();
            let word = |at: usize| got.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok());
            let (Some(len), Some(kind_flags), Some(seq)) = (word(0), word(4), word(8)) else {
                return Err(Errno::EPROTO);
            };
            if u32::from_ne_bytes(seq) != self.seq {
                continue; // an answer to an earlier request that timed out
            }
            let kind = u16::from_ne_bytes([kind_flags[0], kind_flags[1]]);
            let end = (u32::from_ne_bytes(len) as usize).min(got.len());
            if kind == NLMSG_ERROR {
                let code = word(NLMSG_HDRLEN).map(i32::from_ne_bytes).unwrap_or(-libc::EPROTO);
                return Err(Errno::from_raw(-code));
            }
            return Ok(got.get(NLMSG_HDRLEN + GENL_HDRLEN..end).unwrap_or_default().to_vec());
        }
    }
}

/// The payload of the first attribute `kind` among `attrs`.
fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while let Some(&[l0, l1, t0, t1]) = attrs.first_chunk::<4>() {
        let len = usize::from(u16::from_ne_bytes([l0, l1]));
        // The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER.
        let ty = u16::from_ne_bytes([t0, t1]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == kind {
            return attrs.get(4..len);
        }
        attrs = attrs.get(len.div_ceil(4) * 4..).unwrap_or_default();
    }
    None
}
