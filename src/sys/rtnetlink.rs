//! Routing netlink (NETLINK_ROUTE): one link (RTM_GETLINK) or the route to
//! one address (RTM_GETROUTE, what `ip route get` asks), in the namespace
//! of the thread that opened the socket.

use std::net::IpAddr;

use nix::errno::Errno;
use nix::libc;

use super::netlink::{find, read_u32, Netlink};

const IFINFOMSG: usize = 16;
const RTMSG: usize = 12;
/// linux/rtnetlink.h `enum rtattr_type_t`.
const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_VIA: u16 = 18;
const RTA_IP_PROTO: u16 = 27;
const RTA_SPORT: u16 = 28;
const RTA_DPORT: u16 = 29;
/// linux/rtnetlink.h `RTN_UNICAST`: a route to a gateway or a neighbour (not
/// local, broadcast, multicast, unreachable...).
const RTN_UNICAST: u8 = 1;

/// An RTM_NEWLINK answer: the attributes after the ifinfomsg.
pub(crate) struct Link {
    attrs: Vec<u8>,
}

impl Link {
    /// The payload of its attribute `kind` (IFLA_*), if it has one.
    pub(crate) fn attr(&self, kind: u16) -> Option<&[u8]> {
        find(&self.attrs, kind)
    }
}

/// The route the kernel would give a packet this host sends to an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteTo {
    /// A unicast route (`ip route get` shows no type): not the host's
    /// own (`local`), broadcast or multicast.
    pub unicast: bool,
    /// The interface it leaves by.
    pub oif: Option<u32>,
    /// It goes to a gateway (RTA_GATEWAY or RTA_VIA); without one the
    /// destination is an on-link neighbour.
    pub gateway: bool,
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub(crate) struct RtNetlink(Netlink);

impl RtNetlink {
    /// Opens one in the calling thread's network namespace.
    pub(crate) fn open() -> Result<RtNetlink, Errno> {
        Netlink::open(libc::NETLINK_ROUTE).map(RtNetlink)
    }

    /// RTM_GETLINK for `ifindex`, in the namespace `netnsid` names (ours if `None`).
    pub(crate) fn get_link(&mut self, ifindex: u32, netnsid: Option<i32>) -> Result<Link, Errno> {
        // ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
        let mut header = vec![0u8; 4];
        header.extend_from_slice(&i32::try_from(ifindex).map_err(|_| Errno::ENODEV)?.to_ne_bytes());
        header.extend_from_slice(&[0; 8]);
        let target = netnsid.map(i32::to_ne_bytes);
        let attrs: Vec<(u16, &[u8])> = target.iter().map(|id| (libc::IFLA_TARGET_NETNSID, &id[..])).collect();
        let body = self.0.request(libc::RTM_GETLINK, &header, &attrs, libc::RTM_NEWLINK)?;
        Ok(Link { attrs: body.get(IFINFOMSG..).ok_or(Errno::EIO)?.to_vec() })
    }

    /// RTM_GETROUTE for `dst` (from `src`, when given: a source-based `ip
    /// rule` then applies): the route the kernel's lookup gives a packet the
    /// host sends there (rules and tables applied, one next hop of a
    /// multipath route chosen), as `ip route get DST [from SRC]` shows it.
    /// ENETUNREACH (or EHOSTUNREACH) when none; EINVAL for a source of
    /// another family (or one the kernel refuses).
    pub(crate) fn route_to(&mut self, dst: IpAddr, src: Option<IpAddr>, l4: Option<L4>) -> Result<RouteTo, Errno> {
        let (family, len) = match dst {
            IpAddr::V4(_) => (libc::AF_INET as u8, 32),
            IpAddr::V6(_) => (libc::AF_INET6 as u8, 128),
        };
        let octets = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if src.is_some_and(|s| s.is_ipv4() != dst.is_ipv4()) {
            return Err(Errno::EINVAL);
        }
        let (dst, src) = (octets(dst), src.map(octets));
        let src_len = if src.is_some() { len } else { 0 };
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut header = vec![family, len, src_len, 0, 0, 0, 0, 0];
        header.extend_from_slice(&[0; 4]);
        let mut attrs: Vec<(u16, &[u8])> = vec![(RTA_DST, &dst)];
        attrs.extend(src.as_deref().map(|s| (RTA_SRC, s)));
        let proto = l4.map(|l| [l.protocol]);
        let ports = l4.and_then(|l| l.ports).map(|(s, d)| (s.to_be_bytes(), d.to_be_bytes()));
        attrs.extend(proto.as_ref().map(|p| (RTA_IP_PROTO, &p[..])));
        if let Some((sport, dport)) = &ports {
            attrs.extend([(RTA_SPORT, &sport[..]), (RTA_DPORT, &dport[..])]);
        }
        let body = self.0.request(libc::RTM_GETROUTE, &header, &attrs, libc::RTM_NEWROUTE)?;
        let attrs = body.get(RTMSG..).ok_or(Errno::EIO)?;
        Ok(RouteTo {
            unicast: body.get(7) == Some(&RTN_UNICAST),
            oif: find(attrs, RTA_OIF).and_then(read_u32),
            gateway: find(attrs, RTA_GATEWAY).is_some() || find(attrs, RTA_VIA).is_some(),
        })
    }
}

/// The transport of the flow a route is asked for (`ip route get ...
/// ipproto P sport S dport D`, Linux 4.17+): a multipath route that hashes
/// on it (`fib_multipath_hash_policy` 1) picks the next hop that flow takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct L4 {
    /// IP protocol number.
    pub(crate) protocol: u8,
    /// Source and destination port (TCP, UDP).
    pub(crate) ports: Option<(u16, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_a_loopback_address_is_the_hosts_own_by_lo() {
        let mut sock = RtNetlink::open().unwrap();
        let lo = nix::net::if_::if_nametoindex("lo").unwrap();
        let route = sock.route_to("127.0.0.1".parse().unwrap(), None, None).unwrap();
        assert_eq!(route, RouteTo { unicast: false, oif: Some(lo), gateway: false });
        // Answers are matched to their request, one after the other; a source may be given.
        assert_eq!(
            sock.route_to(
                "127.0.0.2".parse().unwrap(),
                Some("127.0.0.1".parse().unwrap()),
                Some(L4 { protocol: 17, ports: Some((49152, 4789)) })
            )
            .unwrap(),
            route
        );
        assert_eq!(sock.route_to("127.0.0.2".parse().unwrap(), Some("::1".parse().unwrap()), None), Err(Errno::EINVAL));
        match sock.route_to("::1".parse().unwrap(), None, Some(L4 { protocol: 58, ports: None })) {
            Ok(route) => assert_eq!(route, RouteTo { unicast: false, oif: Some(lo), gateway: false }),
            // A host with IPv6 disabled has no route to ::1.
            Err(Errno::ENETUNREACH | Errno::EAFNOSUPPORT) => {}
            Err(e) => panic!("::1: {e}"),
        }
    }
}
