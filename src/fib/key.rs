//! A prefix as the key of its LPM trie: main table, or an alternate one (the
//! table id is then the key's first 32 bits).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::abi::{self, types};

/// A prefix as the key of its family's LPM trie (main table, or an alternate
/// one: the table id is the key's first 32 bits).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RouteKey {
    V4(types::route_key_v4),
    V6(types::route_key_v6),
    AltV4(types::alt_key_v4),
    AltV6(types::alt_key_v6),
}

impl RouteKey {
    /// The key of `prefix` in `table` (0: the main table).
    pub(crate) fn in_table(table: u32, prefix: IpNetwork) -> RouteKey {
        if table == 0 {
            return RouteKey::new(prefix);
        }
        let prefixlen = 32 + u32::from(prefix.prefix());
        let table = table.to_be();
        match prefix {
            IpNetwork::V4(p) => RouteKey::AltV4(types::alt_key_v4 { prefixlen, table, addr: p.network().octets() }),
            IpNetwork::V6(p) => RouteKey::AltV6(types::alt_key_v6 { prefixlen, table, addr: p.network().octets() }),
        }
    }

    /// (table, prefix) of an alternate-table key.
    pub(crate) fn from_alt_v4_bytes(bytes: &[u8]) -> Option<(u32, IpNetwork)> {
        let k: types::alt_key_v4 = abi::from_bytes(bytes)?;
        let len = u8::try_from(k.prefixlen.checked_sub(32)?).ok()?;
        Some((u32::from_be(k.table), Ipv4Network::new(Ipv4Addr::from(k.addr), len).ok().map(IpNetwork::V4)?))
    }

    pub(crate) fn from_alt_v6_bytes(bytes: &[u8]) -> Option<(u32, IpNetwork)> {
        let k: types::alt_key_v6 = abi::from_bytes(bytes)?;
        let len = u8::try_from(k.prefixlen.checked_sub(32)?).ok()?;
        Some((u32::from_be(k.table), Ipv6Network::new(Ipv6Addr::from(k.addr), len).ok().map(IpNetwork::V6)?))
    }

    pub(crate) fn new(prefix: IpNetwork) -> RouteKey {
        match prefix {
            IpNetwork::V4(p) => {
                RouteKey::V4(types::route_key_v4 { prefixlen: u32::from(p.prefix()), addr: p.network().octets() })
            }
            IpNetwork::V6(p) => {
                RouteKey::V6(types::route_key_v6 { prefixlen: u32::from(p.prefix()), addr: p.network().octets() })
            }
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            RouteKey::V4(k) => abi::bytes_of(k),
            RouteKey::V6(k) => abi::bytes_of(k),
            RouteKey::AltV4(k) => abi::bytes_of(k),
            RouteKey::AltV6(k) => abi::bytes_of(k),
        }
    }

    pub(crate) fn from_v4_bytes(bytes: &[u8]) -> Option<IpNetwork> {
        let k: types::route_key_v4 = abi::from_bytes(bytes)?;
        let len = u8::try_from(k.prefixlen).ok()?;
        Ipv4Network::new(Ipv4Addr::from(k.addr), len).ok().map(IpNetwork::V4)
    }

    pub(crate) fn from_v6_bytes(bytes: &[u8]) -> Option<IpNetwork> {
        let k: types::route_key_v6 = abi::from_bytes(bytes)?;
        let len = u8::try_from(k.prefixlen).ok()?;
        Ipv6Network::new(Ipv6Addr::from(k.addr), len).ok().map(IpNetwork::V6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn keys_round_trip() {
        for p in ["0.0.0.0/0", "198.51.100.0/24", "203.0.113.9/32"] {
            let key = RouteKey::new(net(p));
            assert_eq!(key.bytes().len(), 8);
            assert_eq!(RouteKey::from_v4_bytes(key.bytes()), Some(net(p)));
        }
        for p in ["::/0", "2001:db8:1::/48", "2001:db8::9/128"] {
            let key = RouteKey::new(net(p));
            assert_eq!(key.bytes().len(), 20);
            assert_eq!(RouteKey::from_v6_bytes(key.bytes()), Some(net(p)));
        }
        // prefixlen is host order, the address network order: what the kernel's LPM trie expects.
        assert_eq!(RouteKey::new(net("10.1.2.0/24")).bytes(), [&24u32.to_ne_bytes()[..], &[10, 1, 2, 0]].concat());
        // Alternate tables: the table id (big endian) leads the bit string.
        let alt = RouteKey::in_table(7, net("10.1.2.0/24"));
        assert_eq!(alt.bytes(), [&56u32.to_ne_bytes()[..], &[0, 0, 0, 7, 10, 1, 2, 0]].concat());
        assert_eq!(RouteKey::from_alt_v4_bytes(alt.bytes()), Some((7, net("10.1.2.0/24"))));
        let alt6 = RouteKey::in_table(9, net("2001:db8::/32"));
        assert_eq!(RouteKey::from_alt_v6_bytes(alt6.bytes()), Some((9, net("2001:db8::/32"))));
    }
}
