//! The ethtool queries the library needs (the SIOCETHTOOL ioctl): whether the
//! device segments TCP itself (TSO), for the egress hook, and the driver's
//! statistics (`ethtool -S`), for the XDP_TX failures only the driver counts.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

/// `SIOCETHTOOL` and the commands used, from linux/sockios.h and linux/ethtool.h.
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `SIOCGIFNAME`: an interface's name from its index.
const SIOCGIFNAME: libc::c_ulong = 0x8910;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
/// `ETH_SS_STATS`: the string set naming the statistics.
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// `struct ethtool_drvinfo`: cmd, driver[32], version[32], fw_version[32],
/// bus_info[32], erom_version[32], reserved2[12], then five u32 counts of
/// which `n_stats` is the second.
const DRVINFO_LEN: usize = 196;
const DRVINFO_N_STATS: usize = 4 + 5 * 32 + 12 + 4;
/// Room for statistics a driver adds between the count and the read (a
/// queue brought up meanwhile): the kernel writes as many as it has then.
const STATS_SLACK: usize = 64;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union (40 bytes on 64-bit).
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _rest: [u8; 16],
}

/// A socket for ethtool requests, bound to the network namespace of the
/// thread that opened it: interface names are looked up there, whichever
/// thread asks later.
#[derive(Debug)]
pub(crate) struct EthtoolSocket {
    fd: OwnedFd,
}

impl EthtoolSocket {
    /// Opens one in the calling thread's network namespace.
    pub(crate) fn open() -> Result<EthtoolSocket, Errno> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new fd nobody else owns.
        Ok(EthtoolSocket { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The current name of `ifindex` in the socket's namespace (ENODEV when
    /// it is gone): statistics are asked for by name, and a renamed or
    /// recreated interface must not be mistaken for ours.
    pub(crate) fn name_of(&self, ifindex: u32) -> Result<String, Errno> {
        #[repr(C)]
        struct IfreqIndex {
            name: [u8; libc::IFNAMSIZ],
            index: libc::c_int,
            _rest: [u8; 20],
        }
        let index = libc::c_int::try_from(ifindex).map_err(|_| Errno::ENODEV)?;
        let mut req = IfreqIndex { name: [0; libc::IFNAMSIZ], index, _rest: [0; 20] };
        // SAFETY: SIOCGIFNAME reads ifr_ifindex and writes ifr_name, both inside `req`.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), SIOCGIFNAME as _, &mut req as *mut IfreqIndex) };
        if rc < 0 {
            return Err(Errno::last());
        }
        let name = req.name.split(|b| *b == 0).next().unwrap_or_default();
        Ok(String::from_utf8_lossy(name).into_owned())
    }

    /// Every statistic the driver of `iface` reports (`ethtool -S`), by name,
    /// in the driver's order.
    pub(crate) fn stats(&self, iface: &str) -> Result<Vec<(String, u64)>, Errno> {
        let mut info = request(&[ETHTOOL_GDRVINFO], DRVINFO_LEN);
        ioctl(self.fd(), iface, &mut info)?;
        let n = read_u32(&info, DRVINFO_N_STATS).ok_or(Errno::EIO)? as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        let room = n + STATS_SLACK;

        // struct ethtool_gstrings { cmd, string_set, len, data[len * 32] }
        let mut strings = request(&[ETHTOOL_GSTRINGS, ETH_SS_STATS, n as u32], 12 + room * ETH_GSTRING_LEN);
        ioctl(self.fd(), iface, &mut strings)?;
        let names_len = (read_u32(&strings, 8).ok_or(Errno::EIO)? as usize).min(room);

        // struct ethtool_stats { cmd, n_stats, data[n_stats] (u64) }
        let mut values = request(&[ETHTOOL_GSTATS, n as u32], 8 + room * 8);
        ioctl(self.fd(), iface, &mut values)?;
        let values_len = (read_u32(&values, 4).ok_or(Errno::EIO)? as usize).min(room);
        if values_len != names_len {
            // The set changed between the two reads: names and values no longer pair up.
            return Err(Errno::EAGAIN);
        }
        let names = strings.get(12..).unwrap_or_default().chunks_exact(ETH_GSTRING_LEN);
        let numbers = values.get(8..).unwrap_or_default().chunks_exact(8);
        Ok(names
            .zip(numbers)
            .take(names_len)
            .map(|(name, value)| {
                let name = name.split(|b| *b == 0).next().unwrap_or_default();
                let word: [u8; 8] = value.try_into().unwrap_or_default();
                (String::from_utf8_lossy(name).into_owned(), u64::from_ne_bytes(word))
            })
            .collect())
    }
}

/// A command's structure: its leading u32 fields, zeroed up to `len` bytes.
fn request(head: &[u32], len: usize) -> Vec<u8> {
    let mut buf: Vec<u8> = head.iter().flat_map(|w| w.to_ne_bytes()).collect();
    buf.resize(len.max(buf.len()), 0);
    buf
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// SIOCETHTOOL on `iface` with `buf` as the command's structure.
fn ioctl(sock: BorrowedFd<'_>, iface: &str, buf: &mut [u8]) -> Result<(), Errno> {
    let name = ifname(iface)?;
    let mut req = IfreqData { name, data: buf.as_mut_ptr().cast(), _rest: [0; 16] };
    // SAFETY: SIOCETHTOOL reads the name and reads and writes the command's
    // structure through ifr_data; `buf` is sized for what the command
    // writes (the counts in it were set by the caller) and outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfreqData) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

fn ifname(iface: &str) -> Result<[u8; libc::IFNAMSIZ], Errno> {
    let mut name = [0u8; libc::IFNAMSIZ];
    if iface.len() >= name.len() {
        return Err(Errno::ENODEV);
    }
    for (dst, src) in name.iter_mut().zip(iface.bytes()) {
        *dst = src;
    }
    Ok(name)
}

/// Whether TCP segmentation offload is on for `iface` (in the calling
/// thread's network namespace).
pub(crate) fn tso_enabled(iface: &str) -> Result<bool, Errno> {
    let sock = EthtoolSocket::open()?;
    let mut value = EthtoolValue { cmd: ETHTOOL_GTSO, data: 0 };
    let mut req = IfreqData { name: ifname(iface)?, data: (&mut value as *mut EthtoolValue).cast(), _rest: [0; 16] };
    // SAFETY: SIOCETHTOOL reads the name and writes through ifr_data, which
    // points at `value`; both outlive the call.
    let rc = unsafe { libc::ioctl(sock.fd().as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfreqData) };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(value.data != 0)
}

/// The frames the driver failed to send after the XDP program returned
/// XDP_TX, from its statistics: every `*xdp_tx_err*` field (veth:
/// `rx_queue_N_xdp_tx_errors`; mlx5: `rx_xdp_tx_err` and `rxN_xdp_tx_err`).
/// A driver that reports a total beside its per-queue fields (a name
/// without a queue number) is read by the total, so nothing counts twice.
/// `None` when the driver has no such field: it does not say.
pub(crate) fn xdp_tx_errors(stats: &[(String, u64)]) -> Option<u64> {
    let matching: Vec<(&str, u64)> =
        stats.iter().filter(|(name, _)| name.contains("xdp_tx_err")).map(|(n, v)| (n.as_str(), *v)).collect();
    if matching.is_empty() {
        return None;
    }
    let is_total = |name: &str| !name.bytes().any(|b| b.is_ascii_digit());
    let totals = matching.iter().any(|(name, _)| is_total(name));
    Some(matching.iter().filter(|(name, _)| !totals || is_total(name)).fold(0u64, |sum, (_, v)| sum.saturating_add(*v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
    }

    #[test]
    fn veth_queues_are_summed_and_xmit_errors_are_not_tx_errors() {
        // The names `ethtool -S` prints for a two-queue veth (drivers/net/veth.c).
        let stats = named(&[
            ("peer_ifindex", 7),
            ("rx_queue_0_xdp_tx", 40),
            ("rx_queue_0_xdp_tx_errors", 29),
            ("rx_queue_1_xdp_tx_errors", 3),
            ("tx_queue_0_xdp_xmit_errors", 100),
        ]);
        assert_eq!(xdp_tx_errors(&stats), Some(32));
    }

    #[test]
    fn a_total_is_preferred_to_its_queues() {
        let stats = named(&[("rx_xdp_tx_err", 5), ("rx0_xdp_tx_err", 2), ("rx1_xdp_tx_err", 3)]);
        assert_eq!(xdp_tx_errors(&stats), Some(5));
    }

    #[test]
    fn a_driver_without_the_field_says_nothing() {
        let stats = named(&[("rx_packets", 5), ("tx_packets", 2)]);
        assert_eq!(xdp_tx_errors(&stats), None);
    }
}
