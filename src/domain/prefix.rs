//! Prefixes: parsing and validation (no host bits).

use ipnetwork::IpNetwork;

/// Why a prefix was refused. More variants may come: match with a wildcard arm.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
/// use lnetd_host_encap::routes::prefix::check;
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
    let prefix = text.trim().parse::<IpNetwork>().map_err(|e| PrefixError::Parse {
        input: text.to_owned(),
        reason: reason(text.trim()).unwrap_or_else(|| e.to_string()),
    })?;
    check(prefix)
}

/// What is wrong with text ipnetwork refused, in the terms of its parts
/// (ipnetwork says "invalid address" for a bad length too), or `None` to
/// keep ipnetwork's words.
fn reason(text: &str) -> Option<String> {
    let (addr, len) = text.split_once('/').unwrap_or((text, ""));
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return Some(format!("{addr:?} is not an IPv4 or IPv6 address")),
    };
    match len.parse::<u32>() {
        Ok(n) if n > max => Some(format!("the length {n} is beyond {max}, the longest prefix of its family")),
        Ok(_) => None,
        Err(_) => Some(format!("the length {len:?} is not a number 0..={max}")),
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
        for (text, says) in [
            ("10.0.0.0/33", "the length 33 is beyond 32"),
            ("2001:db8::/129", "the length 129 is beyond 128"),
            ("10.0.0.300/24", "\"10.0.0.300\" is not an IPv4 or IPv6 address"),
            ("10.0.0.0/x", "the length \"x\" is not a number 0..=32"),
            ("10.0.0.0/", "the length \"\" is not a number 0..=32"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(&format!("{text:?}")), "{text}: {err}");
        }
        assert_eq!(parse("192.0.2.7"), Ok(net("192.0.2.7/32")));
        assert!(matches!(parse("192.0.2.7/8"), Err(PrefixError::HostBitsSet { .. })));
    }
}
