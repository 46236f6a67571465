//! The one ethtool query the egress hook needs: whether the device segments
//! TCP itself (TSO). A labelled TSO super-packet would reach a NIC that may
//! not know where the TCP header is behind the labels (NOTES: TC egress).

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

/// `SIOCETHTOOL` and `ETHTOOL_GTSO` from linux/sockios.h and linux/ethtool.h.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTSO: u32 = 0x1e;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    _rest: [u8; 16],
}

/// Whether TCP segmentation offload is on for `iface` (in the calling
/// thread's network namespace).
pub(crate) fn tso_enabled(iface: &str) -> Result<bool, Errno> {
    let mut name = [0u8; libc::IFNAMSIZ];
    if iface.len() >= name.len() {
        return Err(Errno::ENODEV);
    }
    for (dst, src) in name.iter_mut().zip(iface.bytes()) {
        *dst = src;
    }
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a new fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut value = EthtoolValue { cmd: ETHTOOL_GTSO, data: 0 };
    let mut req = IfreqData { name, data: &mut value, _rest: [0; 16] };
    // SAFETY: SIOCETHTOOL reads the name and writes through ifr_data, which
    // points at `value`; both outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfreqData) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(value.data != 0)
}
