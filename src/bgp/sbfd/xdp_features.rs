//! Whether an interface takes frames redirected to it by XDP (its driver's
//! `ndo_xdp_xmit`), read from the kernel's `netdev` generic netlink family
//! (Linux 6.3+): the live-frame transmitter sends through that door, and a
//! frame the driver cannot take is dropped where no caller sees it.
//!
//! A veth advertises it only while its peer can receive such frames (the
//! peer runs an XDP program or has GRO on), so the answer can change while
//! the engine runs: it asks again every second.

use nix::errno::Errno;
use nix::libc;

use crate::sys::netlink::{find, Netlink};

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
const GENL_HDRLEN: usize = 4;

/// A generic netlink socket that asks the `netdev` family about one device.
#[derive(Debug)]
pub(super) struct XdpFeatures {
    sock: Netlink,
    family: u16,
}

impl XdpFeatures {
    /// Opens the socket and resolves the family.
    ///
    /// # Errors
    /// The errno of the socket, or ENOENT where the kernel has no `netdev`
    /// family (before 6.3): the features cannot be known there.
    pub(super) fn open() -> Result<XdpFeatures, Errno> {
        let mut this = XdpFeatures { sock: Netlink::open(libc::NETLINK_GENERIC)?, family: GENL_ID_CTRL };
        let reply = this.ask(CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME, b"netdev\0")?;
        let id = find(&reply, CTRL_ATTR_FAMILY_ID).and_then(|v| <[u8; 2]>::try_from(v.get(..2)?).ok());
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
        let features = find(&reply, NETDEV_A_DEV_XDP_FEATURES)
            .and_then(|v| <[u8; 8]>::try_from(v.get(..8)?).ok())
            .map(u64::from_ne_bytes)
            .ok_or(Errno::EPROTO)?;
        Ok(features & NETDEV_XDP_ACT_NDO_XMIT != 0)
    }

    /// Sends one request of the family with one attribute; returns the
    /// reply's attributes (past the genetlink header).
    fn ask(&mut self, cmd: u8, attr: u16, value: &[u8]) -> Result<Vec<u8>, Errno> {
        // genlmsghdr: the command, version 1, reserved.
        let reply = self.sock.request(self.family, &[cmd, 1, 0, 0], &[(attr, value)], self.family)?;
        Ok(reply.get(GENL_HDRLEN..).unwrap_or_default().to_vec())
    }
}
