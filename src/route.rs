//! A route: destination prefix -> label stack and traffic class, and its
//! encoding as the dataplane's `struct route_value`.

use ipnetwork::IpNetwork;

use crate::abi::{types, MAX_LABELS, ROUTE_LOCAL};
use crate::label::{Label, LabelStack, LabelStackEntry, TrafficClass};

/// What the encapsulator pushes for one destination prefix.
///
/// ```
/// use lnetd_host_encap::{Route, LabelStack, TrafficClass};
/// let route = Route::new("0.0.0.0/0".parse()?, "1000000".parse::<LabelStack>()?);
/// assert_eq!(route.tc, TrafficClass::default());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination prefix (no host bits set).
    pub prefix: IpNetwork,
    /// Labels pushed, top first.
    pub stack: LabelStack,
    /// Traffic class written in every pushed entry.
    pub tc: TrafficClass,
}

impl Route {
    /// A route with traffic class 0.
    pub fn new(prefix: IpNetwork, stack: LabelStack) -> Route {
        Route { prefix, stack, tc: TrafficClass::default() }
    }

    /// The same route with another traffic class.
    pub fn with_tc(mut self, tc: TrafficClass) -> Route {
        self.tc = tc;
        self
    }

    /// The dataplane's value: entries pre-encoded with the TTL byte zero, since
    /// the TTL is per packet and ORed in by the program.
    pub(crate) fn encode_value(&self) -> types::route_value {
        let mut value = types::route_value { depth: self.stack.len() as u16, ..Default::default() };
        for (slot, entry) in value.entries.iter_mut().zip(self.stack.entries(self.tc, 0)) {
            // Stored as the wire bytes; the C side treats the u32 as network order.
            *slot = u32::from_ne_bytes(entry.encode());
        }
        value
    }

    /// The value that marks a host address: never labelled.
    pub(crate) fn local_value() -> types::route_value {
        types::route_value { flags: ROUTE_LOCAL, ..Default::default() }
    }

    /// Reads a value written by [`Route::encode_value`]; `None` if it is not
    /// one (host-address entries included).
    pub(crate) fn decode_value(prefix: IpNetwork, value: &types::route_value) -> Option<Route> {
        if value.flags != 0 {
            return None;
        }
        let depth = Some(usize::from(value.depth)).filter(|d| (1..=MAX_LABELS).contains(d))?;
        let entries: Vec<LabelStackEntry> =
            value.entries.iter().take(depth).map(|w| LabelStackEntry::decode(w.to_ne_bytes())).collect();
        let labels = entries.iter().map(|e| Label::new(e.label).ok()).collect::<Option<Vec<_>>>()?;
        let tc = TrafficClass::new(entries.first()?.tc).ok()?;
        Some(Route { prefix, stack: LabelStack::new(labels).ok()?, tc })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_and_marks_only_the_bottom() {
        let route = Route::new("192.0.2.0/24".parse().unwrap(), "16001/16002/1000000".parse().unwrap())
            .with_tc(TrafficClass::new(5).unwrap());
        let value = route.encode_value();
        assert_eq!(value.depth, 3);
        let wire: Vec<LabelStackEntry> =
            value.entries[..3].iter().map(|w| LabelStackEntry::decode(w.to_ne_bytes())).collect();
        assert_eq!(
            wire.iter().map(|e| (e.label, e.tc, e.bottom, e.ttl)).collect::<Vec<_>>(),
            [(16001, 5, false, 0), (16002, 5, false, 0), (1_000_000, 5, true, 0)]
        );
        assert!(value.entries[3..].iter().all(|w| *w == 0));
        assert_eq!(Route::decode_value(route.prefix, &value), Some(route));
    }

    #[test]
    fn foreign_values_are_not_decoded() {
        let prefix = "10.0.0.0/8".parse().unwrap();
        assert_eq!(Route::decode_value(prefix, &types::route_value { depth: 0, ..Default::default() }), None);
        assert_eq!(Route::decode_value(prefix, &types::route_value { depth: 17, ..Default::default() }), None);
        assert_eq!(Route::decode_value(prefix, &Route::local_value()), None);
    }
}
