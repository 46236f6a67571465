//! A route: destination prefix -> SR policy (one or more weighted label
//! stacks) and traffic class, in the table it belongs to.

use std::fmt;
use std::str::FromStr;

use ipnetwork::IpNetwork;

use crate::domain::label::{LabelError, LabelStack, TrafficClass};
use crate::domain::policy::Policy;

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
}

impl fmt::Display for Tc {
    /// `0`..`7`, or `dscp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tc::Fixed(tc) => write!(f, "{}", tc.value()),
            Tc::FromDscp => f.write_str("dscp"),
        }
    }
}

impl FromStr for Tc {
    type Err = LabelError;
    /// `0`..`7` (a fixed traffic class) or `dscp` (from each packet's DSCP).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "dscp" => Ok(Tc::FromDscp),
            n => Ok(Tc::Fixed(n.parse()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_text_round_trips() {
        for text in ["0", "7", "dscp"] {
            assert_eq!(text.parse::<Tc>().unwrap().to_string(), text);
        }
        assert!("8".parse::<Tc>().is_err());
        assert!("DSCP5".parse::<Tc>().is_err());
    }
}
