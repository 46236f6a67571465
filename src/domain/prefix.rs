//! Destination prefixes: validation and their keys in the LPM tries.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use crate::abi::{self, types};

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Address bits beyond the prefix length are set, so the prefix is ambiguous.
    #[error("{given} has host bits set; did you mean {meant}?")]
    HostBitsSet {
        /// The prefix given.
        given: IpNetwork,
        /// The network it most likely means.
        meant: IpNetwork,
    },
    /// Text that is not `address/length`.
    #[error("{input:?} is not a prefix: {reason} (expected e.g. `10.0.0.0/8` or `2001:db8::/32`)")]
    Parse {
        /// The text given.
        input: String,
        /// What the parser said.
        reason: String,
    },
}

/// Checks that `prefix` has no host bits set.
///
/// # Errors
/// [`PrefixError::HostBitsSet`], naming the prefix probably meant.
///
/// ```
/// use lnetd_host_encap::prefix::check;
/// assert!(check("10.0.0.0/24".parse()?).is_ok());
/// let err = check("10.0.0.1/24".parse()?).unwrap_err();
/// assert_eq!(err.to_string(), "10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check(prefix: IpNetwork) -> Result<IpNetwork, PrefixError> {
    if prefix.ip() == prefix.network() {
        return Ok(prefix);
    }
    let meant = IpNetwork::new(prefix.network(), prefix.prefix()).unwrap_or(prefix);
    Err(PrefixError::HostBitsSet { given: prefix, meant })
}

/// Parses `address/length` (a bare address is a host route) and [`check`]s it.
///
/// # Errors
/// [`PrefixError::Parse`] or [`PrefixError::HostBitsSet`].
pub fn parse(text: &str) -> Result<IpNetwork, PrefixError> {
    let prefix = text
        .trim()
        .parse::<IpNetwork>()
        .map_err(|e| PrefixError::Parse { input: text.to_owned(), reason: e.to_string() })?;
    check(prefix)
}

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
    fn host_bits_are_refused_with_the_meant_prefix() {
        assert_eq!(check(net("10.0.0.0/24")), Ok(net("10.0.0.0/24")));
        assert_eq!(check(net("0.0.0.0/0")), Ok(net("0.0.0.0/0")));
        assert_eq!(check(net("10.0.0.1/32")), Ok(net("10.0.0.1/32")));
        assert_eq!(
            check(net("10.0.0.1/24")),
            Err(PrefixError::HostBitsSet { given: net("10.0.0.1/24"), meant: net("10.0.0.0/24") })
        );
        assert_eq!(
            check(net("2001:db8::1/64")),
            Err(PrefixError::HostBitsSet { given: net("2001:db8::1/64"), meant: net("2001:db8::/64") })
        );
        assert!(check(net("::/0")).is_ok());
    }

    #[test]
    fn parse_reports_the_input() {
        assert!(matches!(parse("10.0.0.0/33"), Err(PrefixError::Parse { input, .. }) if input == "10.0.0.0/33"));
        assert!(matches!(parse("nonsense"), Err(PrefixError::Parse { .. })));
        assert_eq!(parse("192.0.2.7"), Ok(net("192.0.2.7/32")));
        assert!(matches!(parse("192.0.2.7/8"), Err(PrefixError::HostBitsSet { .. })));
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
