//! The host's own addresses: traffic to them is never labelled.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Every address configured on any interface of the calling thread's network
/// namespace, with the IPv4 directed-broadcast addresses.
pub(crate) fn current() -> nix::Result<BTreeSet<IpAddr>> {
    let mut out = BTreeSet::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        for addr in [ifa.address, ifa.broadcast].into_iter().flatten() {
            if let Some(v4) = addr.as_sockaddr_in() {
                out.insert(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                out.insert(IpAddr::V6(v6.ip()));
            }
        }
    }
    Ok(out)
}
