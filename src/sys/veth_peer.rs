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

use nix::errno::Errno;
use nix::libc;

use super::netlink::{find, read_u32};
use super::rtnetlink::RtNetlink;

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
    let mut sock = RtNetlink::open()?;
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
