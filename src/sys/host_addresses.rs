//! The host's interfaces by name and its own addresses (traffic to them is
//! never labelled), read with libc: nix's wrappers need its `net` feature,
//! which brings its whole socket module into every dependent's build for
//! two calls; the features that use sockets turn it on.

#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nix::errno::Errno;
use nix::libc;

/// The index of the interface `name` in the calling thread's network
/// namespace (`if_nametoindex(3)`): `ENODEV` when there is none, `EINVAL`
/// for a name with a NUL byte.
pub(crate) fn ifindex(name: &str) -> Result<u32, Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(Errno::last()),
        index => Ok(index),
    }
}

/// Every address configured on any interface of the calling thread's network
/// namespace, with the IPv4 directed-broadcast addresses.
pub(crate) fn current() -> Result<BTreeSet<IpAddr>, Errno> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success `head` is a list that is ours until freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(Errno::last());
    }
    let mut out = BTreeSet::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list, which is not freed yet.
        let ifa = unsafe { &*at };
        // `ifa_ifu` is the broadcast address only under IFF_BROADCAST (a
        // point-to-point link's peer otherwise, which is not ours).
        let broadcast = ifa.ifa_flags & (libc::IFF_BROADCAST as u32) != 0;
        for sa in [ifa.ifa_addr, if broadcast { ifa.ifa_ifu } else { std::ptr::null_mut() }] {
            // SAFETY: a null or a sockaddr of the family it names, from getifaddrs.
            if let Some(ip) = unsafe { ip_of(sa) } {
                out.insert(ip);
            }
        }
        // SAFETY: as above.
        let (addr, mask) = unsafe { (ip_of(ifa.ifa_addr), ip_of(ifa.ifa_netmask)) };
        // Not 127/8's (127.255.255.255): no frame on a wire is for it.
        if let (Some(IpAddr::V4(addr)), Some(IpAddr::V4(mask))) = (addr, mask.filter(|_| !is_loopback(addr))) {
            if let Some(directed) = subnet_broadcast(addr, mask) {
                out.insert(IpAddr::V4(directed));
            }
        }
        at = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into it remains.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Whether `addr` is an IPv4 loopback address (127/8).
fn is_loopback(addr: Option<IpAddr>) -> bool {
    matches!(addr, Some(IpAddr::V4(a)) if a.is_loopback())
}

/// The subnet's broadcast address, which the kernel adds to its local table
/// for every IPv4 address of a prefix shorter than /31 (`fib_add_ifaddr`)
/// whether or not the address was given one (`brd`): getifaddrs reports
/// only the latter, so a subnet broadcast was labelled and sent away.
fn subnet_broadcast(addr: Ipv4Addr, mask: Ipv4Addr) -> Option<Ipv4Addr> {
    let mask = u32::from(mask);
    (mask.leading_ones() < 31 && mask.count_ones() == mask.leading_ones() && mask != 0)
        .then(|| Ipv4Addr::from(u32::from(addr) | !mask))
}

/// The address of an `AF_INET` or `AF_INET6` sockaddr; `None` for null and
/// other families.
///
/// # Safety
/// `sa` is null or points to a sockaddr as large as its family says.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // Unaligned reads: the storage is the C library's, typed only by its family.
    match i32::from(unsafe { std::ptr::read_unaligned(sa) }.sa_family) {
        libc::AF_INET => {
            let sin = unsafe { std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in>()) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            let sin6 = unsafe { std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    /// The same answers as nix's wrappers (what this replaced), which the
    /// `testing` feature still builds.
    #[test]
    fn the_same_as_nixs_wrappers() {
        let mut nix_said = BTreeSet::new();
        for ifa in nix::ifaddrs::getifaddrs().unwrap() {
            for addr in [ifa.address, ifa.broadcast].into_iter().flatten() {
                if let Some(v4) = addr.as_sockaddr_in() {
                    nix_said.insert(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    nix_said.insert(IpAddr::V6(v6.ip()));
                }
            }
            let v4 = |a: Option<nix::sys::socket::SockaddrStorage>| a.and_then(|a| a.as_sockaddr_in().map(|s| s.ip()));
            if let (Some(addr), Some(mask)) = (v4(ifa.address).filter(|a| !a.is_loopback()), v4(ifa.netmask)) {
                nix_said.extend(subnet_broadcast(addr, mask).map(IpAddr::V4));
            }
        }
        let ours = current().unwrap();
        assert!(ours.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ours:?}");
        assert_eq!(ours, nix_said);
        assert_eq!(ifindex("lo"), nix::net::if_::if_nametoindex("lo"));
        assert_eq!(ifindex("no-such-if0"), Err(Errno::ENODEV));
        assert_eq!(ifindex("a\0b"), Err(Errno::EINVAL));
    }

    #[test]
    fn the_subnet_broadcast_is_the_kernels_for_prefixes_shorter_than_31() {
        let b = |a: &str, m: &str| subnet_broadcast(a.parse().unwrap(), m.parse().unwrap()).map(|x| x.to_string());
        assert_eq!(b("192.0.2.2", "255.255.255.0").as_deref(), Some("192.0.2.255"));
        assert_eq!(b("10.1.2.3", "255.0.0.0").as_deref(), Some("10.255.255.255"));
        assert_eq!(b("192.0.2.9", "255.255.255.252").as_deref(), Some("192.0.2.11"));
        // /31 and /32 have none (RFC 3021), and neither has a malformed mask.
        assert_eq!(b("192.0.2.0", "255.255.255.254"), None);
        assert_eq!(b("192.0.2.1", "255.255.255.255"), None);
        assert_eq!(b("192.0.2.1", "255.0.255.0"), None);
    }
}
