//! A route: destination prefix -> SR policy (one or more weighted label
//! stacks) and traffic class, and its encoding as the dataplane's values.

use ipnetwork::IpNetwork;

use crate::abi::{self, types, ROUTE_POLICY, ROUTE_TC_FROM_DSCP};
use crate::label::{LabelStack, TrafficClass};
use crate::policy::{self, Policy, SegmentList, MAX_SEGMENT_LISTS};

/// What the encapsulator pushes for one destination prefix.
///
/// ```
/// use lnetd_host_encap::{Route, LabelStack, Policy, Tc, TrafficClass};
/// let bsid = Route::new("0.0.0.0/0".parse()?, "1000000".parse::<LabelStack>()?);
/// assert_eq!(bsid.tc, Tc::Fixed(TrafficClass::default()));
/// let te = Route::with_policy("198.51.100.0/24".parse()?, "16001/16002@7,16003@3".parse::<Policy>()?);
/// assert_eq!(te.policy.lists().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix (no host bits set).
    pub prefix: IpNetwork,
    /// The segment lists and how flows are spread over them.
    pub policy: Policy,
    /// Where the traffic class of every pushed entry comes from.
    pub tc: Tc,
}

/// A route table. Packets use the main table unless their source address
/// matches a source prefix, which names an alternate table (premium clients
/// on other paths); a destination the alternate table lacks falls back to the
/// main table, and the host's own addresses are never labelled whatever the
/// source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Table {
    /// The table every packet uses by default.
    #[default]
    Main,
    /// An alternate table, selected by source prefix; ids from 1.
    Alternate(std::num::NonZeroU32),
}

impl Table {
    /// Alternate table `id`; `None` for 0.
    pub fn alternate(id: u32) -> Option<Table> {
        std::num::NonZeroU32::new(id).map(Table::Alternate)
    }

    /// 0 for the main table, else the alternate table's id.
    pub fn id(self) -> u32 {
        match self {
            Table::Main => 0,
            Table::Alternate(id) => id.get(),
        }
    }
}

/// The traffic class of a route's pushed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tc {
    /// This TC in every entry.
    Fixed(TrafficClass),
    /// The packet's DSCP mapped through the encapsulator's [`crate::DscpMap`]
    /// (by default DSCP >> 3, the class selector).
    FromDscp,
}

impl Default for Tc {
    fn default() -> Self {
        Tc::Fixed(TrafficClass::default())
    }
}

impl Route {
    /// A route through one label stack, traffic class 0.
    pub fn new(prefix: IpNetwork, stack: LabelStack) -> Route {
        Route::with_policy(prefix, Policy::single(stack))
    }

    /// A route through an SR policy, traffic class 0.
    pub fn with_policy(prefix: IpNetwork, policy: Policy) -> Route {
        Route { prefix, policy, tc: Tc::default() }
    }

    /// The same route with a fixed traffic class.
    pub fn with_tc(mut self, tc: TrafficClass) -> Route {
        self.tc = Tc::Fixed(tc);
        self
    }

    /// The same route with the traffic class taken from each packet's DSCP.
    pub fn with_tc_from_dscp(mut self) -> Route {
        self.tc = Tc::FromDscp;
        self
    }

    /// The route's value; for a policy route, also the policy's value, to be
    /// stored under `policy_id` before the route.
    pub(crate) fn encode(&self, policy_id: u32) -> (types::route_value, Option<Box<types::policy_value>>) {
        let mut value: types::route_value = abi::zeroed();
        value.prefixlen = self.prefix.prefix();
        // From the DSCP: the entries carry TC 0 and the program ORs in the packet's.
        let tc = match self.tc {
            Tc::Fixed(tc) => tc,
            Tc::FromDscp => {
                value.flags |= ROUTE_TC_FROM_DSCP;
                TrafficClass::default()
            }
        };
        if self.policy.is_plain() {
            if let Some(l) = self.policy.lists().first() {
                value.list = policy::encode_list(&l.stack, tc, None);
            }
            return (value, None);
        }
        value.flags |= ROUTE_POLICY;
        value.policy_id = policy_id;
        let mut p: Box<types::policy_value> = Box::new(abi::zeroed());
        p.n_lists = self.policy.lists().len() as u16;
        for ((slot, weight), l) in p.lists.iter_mut().zip(p.weights.iter_mut()).zip(self.policy.lists()) {
            *slot = policy::encode_list(&l.stack, tc, self.policy.entropy_label());
            *weight = l.weight;
        }
        for (dst, src) in p.slots.iter_mut().zip(policy::maglev_table(self.policy.lists())) {
            *dst = src;
        }
        (value, Some(p))
    }

    /// Reads back a value written by [`Route::encode`]; `None` if it is not one.
    pub(crate) fn decode(
        prefix: IpNetwork,
        value: &types::route_value,
        policy: Option<&types::policy_value>,
    ) -> Option<Route> {
        let from_dscp = value.flags & ROUTE_TC_FROM_DSCP != 0;
        let tc = |fixed| if from_dscp { Tc::FromDscp } else { Tc::Fixed(fixed) };
        match (value.flags & !ROUTE_TC_FROM_DSCP, policy) {
            (0, _) => {
                let (stack, fixed, entropy) = policy::decode_list(&value.list)?;
                let policy = Policy::single(stack).with_entropy_label(entropy).ok()?;
                Some(Route { prefix, policy, tc: tc(fixed) })
            }
            (ROUTE_POLICY, Some(p)) => {
                let n = usize::from(p.n_lists).min(MAX_SEGMENT_LISTS);
                let mut fixed = TrafficClass::default();
                let mut entropy = None;
                let mut lists = Vec::with_capacity(n);
                for (l, weight) in p.lists.iter().zip(p.weights).take(n) {
                    let (stack, t, e) = policy::decode_list(l)?;
                    (fixed, entropy) = (t, e);
                    lists.push(SegmentList { stack, weight });
                }
                Some(Route { prefix, policy: Policy::new(lists, entropy).ok()?, tc: tc(fixed) })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::LabelStackEntry;
    use crate::policy::EntropyLabel;

    #[test]
    fn plain_routes_are_inline_and_round_trip() {
        let route = Route::new("192.0.2.0/24".parse().unwrap(), "16001/16002/1000000".parse().unwrap())
            .with_tc(TrafficClass::new(5).unwrap());
        let (value, policy) = route.encode(9);
        assert!(policy.is_none());
        assert_eq!((value.flags, value.prefixlen, value.list.depth), (0, 24, 3));
        let wire: Vec<LabelStackEntry> =
            value.list.entries[..3].iter().map(|w| LabelStackEntry::decode(w.to_ne_bytes())).collect();
        assert_eq!(
            wire.iter().map(|e| (e.label, e.tc, e.bottom, e.ttl)).collect::<Vec<_>>(),
            [(16001, 5, false, 0), (16002, 5, false, 0), (1_000_000, 5, true, 0)]
        );
        assert!(value.list.entries[3..].iter().all(|w| *w == 0));
        assert_eq!(Route::decode(route.prefix, &value, None), Some(route));
    }

    #[test]
    fn policy_routes_round_trip() {
        let policy: Policy = "16001/16002@7,16003@3".parse().unwrap();
        let route = Route::with_policy(
            "2001:db8::/32".parse().unwrap(),
            policy.with_entropy_label(Some(EntropyLabel::After(1))).unwrap(),
        );
        let (value, p) = route.encode(42);
        let p = p.expect("a policy value");
        assert_eq!((value.flags, value.policy_id), (ROUTE_POLICY, 42));
        assert_eq!((p.n_lists, p.weights[0], p.weights[1]), (2, 7, 3));
        assert!(p.slots.iter().all(|s| *s < 2));
        assert_eq!(Route::decode(route.prefix, &value, Some(&p)), Some(route));
    }

    #[test]
    fn tc_from_dscp_round_trips() {
        let route = Route::new("10.0.0.0/8".parse().unwrap(), "100".parse().unwrap()).with_tc_from_dscp();
        let (value, _) = route.encode(0);
        assert_eq!(value.flags, ROUTE_TC_FROM_DSCP);
        assert_eq!(Route::decode(route.prefix, &value, None), Some(route));
    }

    #[test]
    fn foreign_values_are_not_decoded() {
        let prefix = "10.0.0.0/8".parse().unwrap();
        let mut v: types::route_value = abi::zeroed();
        assert_eq!(Route::decode(prefix, &v, None), None);
        v.list.depth = 17;
        assert_eq!(Route::decode(prefix, &v, None), None);
        v.flags = ROUTE_POLICY;
        assert_eq!(Route::decode(prefix, &v, None), None);
    }
}
