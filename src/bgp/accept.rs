//! Which headend an SR Policy path is for (RFC 9830 section 4.2.1).
//!
//! Behind a route reflector every host receives the candidate paths of
//! every headend; the controller addresses each to its headend with a Route
//! Target extended community of the IPv4-address-specific type whose global
//! administrator is that headend's BGP identifier. A path without any route
//! target is meant for the directly peered headend and must then carry the
//! NO_ADVERTISE community. Anything else is not usable here (it may still be
//! reflected by BGP): it is ignored, counted per reason and logged.

use std::fmt;
use std::net::Ipv4Addr;

/// The extended community sub-type of a Route Target (RFC 4360).
pub const SUBTYPE_ROUTE_TARGET: u32 = 0x02;

/// The well-known NO_ADVERTISE community (RFC 1997).
pub const NO_ADVERTISE: u32 = 0xFFFF_FF02;

/// What a path's communities say about the headend it is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressing {
    /// The global administrators of its IPv4-address-specific route targets.
    pub route_targets: Vec<Ipv4Addr>,
    /// How many route targets of other types (two- or four-octet AS
    /// specific) it carries: they cannot name a BGP identifier.
    pub other_route_targets: u32,
    /// It carries the NO_ADVERTISE community.
    pub no_advertise: bool,
}

impl Addressing {
    /// Addressed to the headend whose BGP identifier is `id`.
    pub fn to(id: Ipv4Addr) -> Addressing {
        Addressing { route_targets: vec![id], ..Addressing::default() }
    }

    /// For the directly peered headend: no route target, NO_ADVERTISE.
    pub fn peer() -> Addressing {
        Addressing { no_advertise: true, ..Addressing::default() }
    }

    /// Whether it carries a route target of any type.
    pub fn has_route_target(&self) -> bool {
        !self.route_targets.is_empty() || self.other_route_targets > 0
    }
}

impl fmt::Display for Addressing {
    /// `route targets 10.0.0.1, 10.0.0.2 (and 1 of another type), NO_ADVERTISE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.route_targets.is_empty() && self.other_route_targets == 0 {
            f.write_str("no route target")?;
        } else {
            f.write_str("route targets")?;
            for (i, rt) in self.route_targets.iter().enumerate() {
                write!(f, "{}{rt}", if i == 0 { " " } else { ", " })?;
            }
            if self.other_route_targets > 0 {
                write!(f, " ({} not IPv4-address-specific)", self.other_route_targets)?;
            }
        }
        if self.no_advertise {
            f.write_str(", NO_ADVERTISE")?;
        }
        Ok(())
    }
}

/// Why an SR Policy path is not usable on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ignored {
    /// Its IPv4-address-specific route targets name other headends.
    RouteTargetMismatch,
    /// Its route targets are all of other types (AS specific): none can
    /// name a BGP identifier.
    RouteTargetNotIpv4,
    /// No route target and no NO_ADVERTISE community.
    NoRouteTarget,
    /// It has route targets, but this host's BGP identifier is unknown
    /// (GoBGP did not say it, and `--bgp-router-id` was not given).
    RouterIdUnknown,
}

impl Ignored {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Ignored; 4] =
        [Ignored::RouteTargetMismatch, Ignored::RouteTargetNotIpv4, Ignored::NoRouteTarget, Ignored::RouterIdUnknown];

    /// The reason as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::RouteTargetMismatch => "route-target-mismatch",
            Ignored::RouteTargetNotIpv4 => "route-target-not-ipv4",
            Ignored::NoRouteTarget => "no-route-target",
            Ignored::RouterIdUnknown => "router-id-unknown",
        }
    }

    /// Its index in [`Ignored::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Ignored {
    /// What is wrong, and what would make the path usable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ignored::RouteTargetMismatch => {
                "its route targets name other headends, not this host's BGP identifier (meant for another host)"
            }
            Ignored::RouteTargetNotIpv4 => {
                "its route targets are not IPv4-address-specific, so none can name this host's BGP identifier"
            }
            Ignored::NoRouteTarget => {
                "it has no route target and no NO_ADVERTISE community (address it with a route target naming this \
                 host's BGP identifier)"
            }
            Ignored::RouterIdUnknown => {
                "this host's BGP identifier is unknown (GoBGP's GetBgp gave none): give --bgp-router-id"
            }
        })
    }
}

/// Whether a path with `addressing` is usable by the headend whose BGP
/// identifier is `router_id` (RFC 9830 section 4.2.1).
///
/// A path with a route target is usable only when one of its
/// IPv4-address-specific route targets equals the identifier (NO_ADVERTISE
/// does not help it); a path without any is usable only with NO_ADVERTISE.
///
/// # Errors
/// [`Ignored`]: why it is not.
///
/// ```
/// use lnetd_host_encap::bgp::accept::{accept, Addressing, Ignored};
/// let me = "10.0.0.2".parse().unwrap();
/// assert_eq!(accept(&Addressing::to(me), Some(me)), Ok(()));
/// assert_eq!(accept(&Addressing::to("10.0.0.3".parse().unwrap()), Some(me)), Err(Ignored::RouteTargetMismatch));
/// assert_eq!(accept(&Addressing::peer(), None), Ok(()));
/// assert_eq!(accept(&Addressing::default(), Some(me)), Err(Ignored::NoRouteTarget));
/// ```
pub fn accept(addressing: &Addressing, router_id: Option<Ipv4Addr>) -> Result<(), Ignored> {
    if !addressing.has_route_target() {
        return if addressing.no_advertise { Ok(()) } else { Err(Ignored::NoRouteTarget) };
    }
    if addressing.route_targets.is_empty() {
        return Err(Ignored::RouteTargetNotIpv4);
    }
    let Some(id) = router_id else { return Err(Ignored::RouterIdUnknown) };
    if addressing.route_targets.contains(&id) {
        Ok(())
    } else {
        Err(Ignored::RouteTargetMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_acceptance_table() {
        let me = Some(ip("10.0.0.2"));
        let rts =
            |list: &[&str]| Addressing { route_targets: list.iter().map(|s| ip(s)).collect(), ..Default::default() };
        type Case = (&'static str, Addressing, Option<Ipv4Addr>, Result<(), Ignored>);
        let cases: Vec<Case> = vec![
            ("route target match", rts(&["10.0.0.2"]), me, Ok(())),
            ("route target mismatch", rts(&["10.0.0.3"]), me, Err(Ignored::RouteTargetMismatch)),
            ("absent, NO_ADVERTISE", Addressing::peer(), me, Ok(())),
            ("absent, without NO_ADVERTISE", Addressing::default(), me, Err(Ignored::NoRouteTarget)),
            ("several targets, one matching", rts(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]), me, Ok(())),
            ("several targets, none matching", rts(&["10.0.0.1", "10.0.0.3"]), me, Err(Ignored::RouteTargetMismatch)),
            (
                "an AS-specific route target only",
                Addressing { other_route_targets: 1, ..Default::default() },
                me,
                Err(Ignored::RouteTargetNotIpv4),
            ),
            (
                "an AS-specific route target with NO_ADVERTISE",
                Addressing { other_route_targets: 1, no_advertise: true, ..Default::default() },
                me,
                Err(Ignored::RouteTargetNotIpv4),
            ),
            (
                "an AS-specific route target beside a matching one",
                Addressing { route_targets: vec![ip("10.0.0.2")], other_route_targets: 1, no_advertise: false },
                me,
                Ok(()),
            ),
            (
                "a mismatching route target with NO_ADVERTISE",
                Addressing { route_targets: vec![ip("10.0.0.3")], other_route_targets: 0, no_advertise: true },
                me,
                Err(Ignored::RouteTargetMismatch),
            ),
            ("a route target, the identifier unknown", rts(&["10.0.0.2"]), None, Err(Ignored::RouterIdUnknown)),
            ("NO_ADVERTISE, the identifier unknown", Addressing::peer(), None, Ok(())),
        ];
        for (name, addressing, id, want) in cases {
            assert_eq!(accept(&addressing, id), want, "{name}: {addressing}");
        }
    }

    #[test]
    fn reasons_have_distinct_labels_in_index_order() {
        for (i, r) in Ignored::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut labels: Vec<&str> = Ignored::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Ignored::ALL.len());
    }
}
