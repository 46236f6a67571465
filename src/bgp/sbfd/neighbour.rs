//! What the engine learns about the router-facing interface: its index,
//! MAC and addresses (getifaddrs, in the calling thread's namespace), and
//! the router's MAC from the neighbour table.

use std::net::{IpAddr, Ipv4Addr};

use super::SbfdError;

/// The interface the probes leave by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its index.
    pub ifindex: u32,
    /// Its MAC: the probes' source.
    pub mac: [u8; 6],
    /// Its addresses: the probes' sources (the answers come back to them).
    pub addresses: Vec<IpAddr>,
}

/// Reads `name`'s index, MAC and addresses.
///
/// # Errors
/// [`SbfdError::Interface`] when it does not exist or has no MAC.
pub fn interface(name: &str) -> Result<Interface, SbfdError> {
    let missing = |why: &'static str| SbfdError::Interface { interface: name.to_owned(), why };
    let ifindex = nix::net::if_::if_nametoindex(name).map_err(|_| missing("no such interface"))?;
    let mut mac = None;
    let mut addresses = Vec::new();
    for a in nix::ifaddrs::getifaddrs().map_err(|_| missing("getifaddrs failed"))? {
        if a.interface_name != name {
            continue;
        }
        let Some(addr) = a.address else { continue };
        if let Some(link) = addr.as_link_addr() {
            mac = mac.or(link.addr());
        } else if let Some(v4) = addr.as_sockaddr_in() {
            addresses.push(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let ip = v6.ip();
            // A link-local source needs a scope the reflector cannot route back to.
            if ip.segments()[0] & 0xffc0 != 0xfe80 {
                addresses.push(IpAddr::V6(ip));
            }
        }
    }
    let mac = mac.filter(|m| *m != [0; 6]).ok_or(missing("it has no MAC address (not an Ethernet interface?)"))?;
    Ok(Interface { ifindex, mac, addresses })
}

/// The router's MAC on `iface`: the default gateway's entry of the IPv4
/// neighbour table when there is one, else the only complete entry on the
/// interface (the router-facing interface of a "router on a stick" has one
/// neighbour). Read from the calling thread's namespace
/// (`/proc/thread-self/net`).
///
/// # Errors
/// [`SbfdError::RouterMac`] when neither gives one MAC: configure it.
pub fn router_mac(iface: &str) -> Result<[u8; 6], SbfdError> {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap_or_default();
    let gateway = default_gateway(&read("route"), iface);
    let entries = arp_entries(&read("arp"), iface);
    let pick = match gateway.and_then(|g| entries.iter().find(|(ip, _)| *ip == g)) {
        Some((_, mac)) => Some(*mac),
        None if entries.len() == 1 => entries.first().map(|(_, m)| *m),
        None => None,
    };
    pick.ok_or(SbfdError::RouterMac { interface: iface.to_owned(), neighbours: entries.len() })
}

/// The default route's gateway on `iface`, from /proc/net/route (addresses
/// in host-order hex of the kernel's little-endian words).
fn default_gateway(route: &str, iface: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [dev, dst, gw, ..] if *dev == iface && *dst == "00000000" => {
                u32::from_str_radix(gw, 16).ok().map(|g| Ipv4Addr::from(g.swap_bytes())).filter(|g| !g.is_unspecified())
            }
            _ => None,
        }
    })
}

/// Complete (flags 0x2) entries of /proc/net/arp on `iface`.
fn arp_entries(arp: &str, iface: &str) -> Vec<(Ipv4Addr, [u8; 6])> {
    arp.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [ip, _hw, flags, mac, _mask, dev] = f.as_slice() else { return None };
            let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).is_ok_and(|v| v & 0x2 != 0);
            if *dev != iface || !complete {
                return None;
            }
            Some((ip.parse().ok()?, parse_mac(mac)?))
        })
        .collect()
}

/// A unicast MAC, `02:00:00:00:00:01`; `None` for anything else (zero, or
/// a group address: a router's is neither).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = s.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
    // Not zero, and unicast: a group address (the I/G bit) is no router's.
    <[u8; 6]>::try_from(bytes).ok().filter(|m| *m != [0; 6] && m[0] & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str = "IP address       HW type     Flags       HW address            Mask     Device
10.200.0.1       0x1         0x2         02:00:00:00:00:01     *        h0
10.200.0.9       0x1         0x0         00:00:00:00:00:00     *        h0
10.1.0.1         0x1         0x2         02:00:00:00:00:09     *        eth9
";
    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
h0\t00000000\t0100C80A\t0003\t0\t0\t0\t00000000\t0\t0\t0
h0\t0000C80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn reads_the_gateway_and_complete_neighbours() {
        assert_eq!(default_gateway(ROUTE, "h0"), Some(Ipv4Addr::new(10, 200, 0, 1)));
        assert_eq!(default_gateway(ROUTE, "eth9"), None);
        assert_eq!(arp_entries(ARP, "h0"), [(Ipv4Addr::new(10, 200, 0, 1), [2, 0, 0, 0, 0, 1])]);
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("00:00:00:00:00:00"), None);
        assert_eq!(parse_mac("01:00:5e:00:00:01"), None, "a multicast MAC is no router's");
    }
}
