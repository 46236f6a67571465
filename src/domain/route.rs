//! A route: destination prefix -> SR policy (one or more weighted label
//! stacks) and traffic class, in the table it belongs to.

use std::fmt;
use std::str::FromStr;

use ipnetwork::IpNetwork;

use crate::domain::label::{Label, LabelError, LabelStack, TrafficClass};
use crate::domain::policy::{EntropyLabel, Policy, PolicyError};

/// What the encapsulator pushes for one destination prefix.
///
/// ```
/// use lnetd_host_encap::{Route, LabelStack, Policy, routes::Tc, labels::TrafficClass};
/// let bsid = Route::new("0.0.0.0/0".parse()?, "1000000".parse::<LabelStack>()?);
/// assert_eq!(bsid.tc, Tc::Fixed(TrafficClass::default()));
/// let te = Route::with_policy("198.51.100.0/24".parse()?, "16001/16002@7,16003@3".parse::<Policy>()?);
/// assert_eq!(te.policy.lists().len(), 2);
/// // Shown as the command shows it.
/// assert_eq!(te.with_tc(Tc::FromDscp).to_string(), "198.51.100.0/24 -> 16001/16002@7,16003@3 (tc dscp)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With serde, a route reads and writes as an entry of a desired-state file
/// (`{"prefix": .., "policy": .., "tc": .., "entropy_label": .., "policy_name": ..}`),
/// checked as such an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "crate::domain::desired::DesiredRoute", try_from = "crate::domain::desired::DesiredRoute")]
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

/// The traffic class of a route's pushed entries: the one type for a
/// route's `tc` (the files' `tc = 5` and `tc = "dscp"` read into it).
///
/// It is not a [`TrafficClass`]: that is the 3-bit field's value (what a
/// [`DscpMap`](crate::labels::DscpMap) maps a DSCP to, what a decoded entry
/// carries), and a route's rule may also be "from each packet's DSCP".
///
/// ```
/// use lnetd_host_encap::labels::TrafficClass;
/// use lnetd_host_encap::routes::Tc;
/// assert_eq!("dscp".parse::<Tc>()?, Tc::FromDscp);
/// assert_eq!("5".parse::<Tc>()?, Tc::Fixed(TrafficClass::new(5)?));
/// let err = "dscp".parse::<TrafficClass>().unwrap_err();
/// assert!(err.to_string().contains("Tc"), "the message names the type that reads it: {err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tc {
    /// This TC in every entry.
    Fixed(TrafficClass),
    /// The packet's DSCP mapped through the encapsulator's [`crate::labels::DscpMap`]
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

    /// The same route with this traffic class: a [`TrafficClass`] (fixed)
    /// or a [`Tc`] (fixed, or [`Tc::FromDscp`]).
    ///
    /// ```
    /// use lnetd_host_encap::{Route, routes::Tc, labels::TrafficClass};
    /// let route = Route::new("198.51.100.0/24".parse()?, "16001".parse()?);
    /// assert_eq!(route.clone().with_tc(TrafficClass::new(5)?).tc.to_string(), "5");
    /// assert_eq!(route.with_tc("dscp".parse::<Tc>()?).tc, Tc::FromDscp);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_tc(mut self, tc: impl Into<Tc>) -> Route {
        self.tc = tc.into();
        self
    }

    /// The same route with an entropy label pair (ELI, EL) pushed in every
    /// stack of its policy, at `placement`.
    ///
    /// # Errors
    /// [`PolicyError::TooDeepForEntropyLabel`] when a segment list is too deep
    /// to take the pair (more than 14 labels), [`PolicyError::EntropyLabelOnTop`]
    /// for `EntropyLabel::After(0)`.
    ///
    /// ```
    /// use lnetd_host_encap::{labels::EntropyLabel, errors::PolicyError, Route};
    /// let route = Route::new("198.51.100.0/24".parse()?, "16001/16002".parse()?)
    ///     .with_entropy_label(EntropyLabel::Bottom)?;
    /// assert_eq!(route.policy.entropy_label(), Some(EntropyLabel::Bottom));
    /// assert_eq!(route.to_string(), "198.51.100.0/24 -> 16001/16002 +EL (tc 0)");
    ///
    /// let deep = Route::new("198.51.100.0/24".parse()?, ["100"; 15].join("/").parse()?);
    /// assert!(matches!(
    ///     deep.with_entropy_label(EntropyLabel::Bottom),
    ///     Err(PolicyError::TooDeepForEntropyLabel { labels: 15, .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_entropy_label(mut self, placement: EntropyLabel) -> Result<Route, PolicyError> {
        self.policy = self.policy.with_entropy_label(Some(placement))?;
        Ok(self)
    }

    /// The same route with the traffic class taken from each packet's DSCP.
    pub fn with_tc_from_dscp(mut self) -> Route {
        self.tc = Tc::FromDscp;
        self
    }

    /// Refuses an explicit null of the other IP version at the bottom of a
    /// segment list: there it tells the egress router which header follows
    /// (RFC 3032 2.1: 0 is IPv4's, 2 is IPv6's), so an IPv4 packet under
    /// label 2 would be parsed as IPv6. Checked where a route enters a table.
    pub(crate) fn check_explicit_null(&self) -> Result<(), LabelError> {
        let (theirs, ours, family) = match self.prefix {
            IpNetwork::V4(_) => (Label::IPV6_EXPLICIT_NULL, Label::IPV4_EXPLICIT_NULL, "IPv4"),
            IpNetwork::V6(_) => (Label::IPV4_EXPLICIT_NULL, Label::IPV6_EXPLICIT_NULL, "IPv6"),
        };
        let wrong = self.policy.lists().iter().position(|l| l.stack.labels().last() == Some(&theirs));
        match wrong {
            None => Ok(()),
            Some(list) => Err(LabelError::ExplicitNullOfOtherFamily {
                prefix: self.prefix,
                list,
                label: theirs.value(),
                family,
                ours: ours.value(),
            }),
        }
    }
}

impl From<TrafficClass> for Tc {
    fn from(tc: TrafficClass) -> Tc {
        Tc::Fixed(tc)
    }
}

impl fmt::Display for Route {
    /// `PREFIX -> POLICY (tc TC)`, as `lnetd-host-encap set` prints a route:
    /// `198.51.100.0/24 -> 16001/16002@7,16003@3 +EL (tc dscp)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} (tc {})", self.prefix, self.policy, self.tc)
    }
}

impl fmt::Display for Table {
    /// `main table`, or `table N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Table::Main => f.write_str("main table"),
            Table::Alternate(id) => write!(f, "table {id}"),
        }
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
    ///
    /// # Errors
    /// [`LabelError::TcParse`] for other text, [`LabelError::TrafficClassOutOfRange`]
    /// for a number above 7.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "dscp" => Ok(Tc::FromDscp),
            n => match n.parse::<u8>() {
                Ok(value) => Ok(Tc::Fixed(TrafficClass::new(value)?)),
                Err(_) => Err(LabelError::TcParse { input: s.to_owned() }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_null_of_the_other_version_is_refused_at_the_bottom_only() {
        let route = |p: &str, policy: &str| Route::with_policy(p.parse().unwrap(), policy.parse().unwrap());
        for (p, policy, list) in
            [("100.68.0.0/16", "2", 0), ("2001:db8::/48", "16001/0", 0), ("10.0.0.0/8", "16001@1,16002/2@1", 1)]
        {
            let err = route(p, policy).check_explicit_null().unwrap_err();
            assert!(
                matches!(err, LabelError::ExplicitNullOfOtherFamily { list: l, .. } if l == list),
                "{p} {policy}: {err:?}"
            );
            assert!(err.to_string().contains("RFC 3032"), "{err}");
        }
        for (p, policy) in [
            ("100.68.0.0/16", "16001/0"),
            ("2001:db8::/48", "2"),
            ("10.0.0.0/8", "2/16001"),
            ("2001:db8::/48", "0/16001"),
        ] {
            assert_eq!(route(p, policy).check_explicit_null(), Ok(()), "{p} {policy}");
        }
        // Through the desired state's words too (the file, the agent's Apply).
        let state: crate::desired::DesiredState =
            serde_json::from_str(r#"{"routes": [{"prefix": "2001:db8:400::/48", "policy": "16001/0"}]}"#).unwrap();
        let refused = state.validate().unwrap_err().to_string();
        assert!(refused.contains("explicit null of the other IP version"), "{refused}");
    }

    #[test]
    fn tc_text_round_trips() {
        for text in ["0", "7", "dscp"] {
            assert_eq!(text.parse::<Tc>().unwrap().to_string(), text);
        }
        assert_eq!("8".parse::<Tc>(), Err(LabelError::TrafficClassOutOfRange { value: 8 }));
        assert_eq!("DSCP5".parse::<Tc>(), Err(LabelError::TcParse { input: "DSCP5".into() }));
        let msg = "x".parse::<Tc>().unwrap_err().to_string();
        assert!(msg.contains("\"x\"") && msg.contains("or `dscp`"), "{msg}");
    }

    fn route(policy: &str) -> Route {
        Route::with_policy("198.51.100.0/24".parse().unwrap(), policy.parse().unwrap())
    }

    #[test]
    fn route_display_is_the_commands_syntax() {
        assert_eq!(route("1000000").to_string(), "198.51.100.0/24 -> 1000000 (tc 0)");
        let te = route("16001/16002@7,16003@3").with_tc(Tc::FromDscp);
        assert_eq!(te.to_string(), "198.51.100.0/24 -> 16001/16002@7,16003@3 (tc dscp)");
        let el = route("16001/16002").with_tc(TrafficClass::new(5).unwrap());
        let el = el.with_entropy_label(EntropyLabel::After(1)).unwrap();
        assert_eq!(el.to_string(), "198.51.100.0/24 -> 16001/16002 +EL@1 (tc 5)");
        let v6 = Route::new("2001:db8::/32".parse().unwrap(), "24001".parse().unwrap());
        assert_eq!(v6.to_string(), "2001:db8::/32 -> 24001 (tc 0)");
    }

    #[test]
    fn table_display() {
        assert_eq!(Table::Main.to_string(), "main table");
        assert_eq!(Table::alternate(5).unwrap().to_string(), "table 5");
    }

    #[test]
    fn entropy_label_on_a_route_follows_the_policy_rules() {
        let deepest_ok = route(&["100"; 14].join("/")).with_entropy_label(EntropyLabel::Bottom).unwrap();
        assert_eq!(deepest_ok.policy.entropy_label(), Some(EntropyLabel::Bottom));
        assert_eq!(deepest_ok.prefix, "198.51.100.0/24".parse::<IpNetwork>().unwrap(), "the prefix is kept");
        assert_eq!(
            route(&["100"; 15].join("/")).with_entropy_label(EntropyLabel::Bottom),
            Err(PolicyError::TooDeepForEntropyLabel { index: 0, labels: 15, max: 16 })
        );
        assert_eq!(
            route("100/200").with_entropy_label(EntropyLabel::After(0)),
            Err(PolicyError::EntropyLabelOnTop { after: 0 })
        );
        let te = route("16001/16002@7,16003@3").with_tc(Tc::FromDscp).with_entropy_label(EntropyLabel::After(1));
        let te = te.unwrap();
        assert_eq!((te.tc, te.policy.lists().len()), (Tc::FromDscp, 2), "tc and lists are kept");
    }
}
