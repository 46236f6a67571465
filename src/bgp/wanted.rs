//! What BGP wants installed, in the form it is learned in: the steered
//! routes (prefix -> policy key) and the active policies once each, with
//! what each says ([`PolicyInfo`]); the named policy every steered route of
//! one (color, endpoint, family) shares ([`object_name`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::enlp::{with_bottom_label, Enlp};
use super::select::PolicyKey;
use crate::domain::policy::{NoLivePath, Policy};
use crate::domain::route::Route;

/// The SR policy a BGP route is steered into, as selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The color.
    pub color: u32,
    /// The endpoint.
    pub endpoint: IpAddr,
    /// The active candidate path's preference.
    pub preference: u32,
    /// Its distinguisher.
    pub distinguisher: u32,
    /// Its binding SID, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_sid: Option<u32>,
    /// Its policy name (RFC 9830 sub-TLV 130), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its Explicit NULL Label Policy (1-4), if it has one: the explicit
    /// null it asks for is pushed at the bottom of the routes of that family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enlp: Option<Enlp>,
}

impl PolicyInfo {
    /// What a route of `prefix`'s family steered into `policy` pushes: the
    /// policy, with the explicit null the ENLP asks for at the bottom.
    /// `None` when a list has no room for it (selection leaves such lists out).
    pub fn policy_for(&self, policy: &Policy, prefix: IpNetwork) -> Option<Policy> {
        match self.enlp.and_then(|e| e.explicit_null(prefix.is_ipv6())) {
            None => Some(policy.clone()),
            Some(label) => with_bottom_label(policy, label).ok(),
        }
    }
}

impl fmt::Display for PolicyInfo {
    /// `policy color 100 endpoint 192.0.2.1 preference 200, from BGP (binding SID 24001), named "blue",
    /// ENLP 3 (IPv4 and IPv6 explicit null)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy color {} endpoint {} preference {}, from BGP", self.color, self.endpoint, self.preference)?;
        if let Some(b) = self.binding_sid {
            write!(f, " (binding SID {b})")?;
        }
        if let Some(name) = &self.name {
            write!(f, ", named {name:?}")?;
        }
        if let Some(e) = self.enlp {
            write!(f, ", {e}")?;
        }
        Ok(())
    }
}

/// What BGP wants installed: the steered routes and the policies they use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpTable {
    /// Steered routes: prefix -> the policy it uses.
    pub routes: BTreeMap<IpNetwork, PolicyKey>,
    /// The active policies: what they push, and what they say.
    pub policies: BTreeMap<PolicyKey, (Policy, PolicyInfo)>,
    /// Policies BGP has candidate paths for, none valid (e.g. GoBGP dropped
    /// their attribute, or S-BFD took every list down): the routes steered
    /// into one (and routes held from before that used one) point at its
    /// invalid object ([`Policy::invalid_with`]) and go unlabelled or are
    /// dropped (`no_live_path`), never kept with the lists they had, never
    /// handed to a covering route.
    pub invalid: BTreeSet<PolicyKey>,
    /// What the packets of an invalid policy's routes do (`[sbfd]
    /// no_live_path`). [`super::Origins::set_bgp`] takes it from the table
    /// it is given; [`super::Origins::update_bgp`] and
    /// [`super::Origins::set_bgp_policies`] keep the one in force.
    pub no_live_path: NoLivePath,
}

/// The name of the shared policy object that the routes of one family
/// steered into `key` point at: a preference switch, a list change or a list
/// out of service is then one write, however many routes use the policy
/// (docs/policy-objects.md). One per family, since ENLP can make them differ.
pub fn object_name(key: &PolicyKey, v6: bool) -> String {
    format!("bgp color {} endpoint {} {}", key.color, key.endpoint, if v6 { "ipv6" } else { "ipv4" })
}

/// Named policies already built, by policy and family (one name per
/// (color, endpoint, family), shared by a million routes).
pub(super) type NamedCache = HashMap<(PolicyKey, bool), Option<Policy>>;

impl BgpTable {
    /// The route BGP wants for `prefix`, if any.
    pub(super) fn route(&self, prefix: IpNetwork) -> Option<(Route, PolicyKey)> {
        self.route_cached(prefix, &mut NamedCache::new())
    }

    /// As [`BgpTable::route`], building each named policy once.
    pub(super) fn route_cached(&self, prefix: IpNetwork, cache: &mut NamedCache) -> Option<(Route, PolicyKey)> {
        let key = self.routes.get(&prefix)?;
        let v6 = prefix.is_ipv6();
        let policy = cache.entry((*key, v6)).or_insert_with(|| self.named_policy(key, v6)).clone()?;
        Some((Route::with_policy(prefix, policy), *key))
    }

    /// A held route (kept from before a resynchronisation) as merged with
    /// this table: on its own object when BGP now teaches other contents
    /// for the policy it was on, so that the held route keeps its lists and
    /// BGP's routes get the new ones (one name is one object).
    pub(super) fn held_route(&self, route: &Route, key: Option<PolicyKey>, cache: &mut NamedCache) -> Route {
        let v6 = route.prefix.is_ipv6();
        let taught = key.and_then(|k| cache.entry((k, v6)).or_insert_with(|| self.named_policy(&k, v6)).clone());
        // On a policy now invalid the held route goes unlabelled with BGP's.
        if let Some(p) = taught.as_ref().filter(|p| !p.is_valid()) {
            return Route::with_policy(route.prefix, p.clone());
        }
        let Some(name) = route.policy.name() else { return route.clone() };
        match taught {
            Some(p) if p == route.policy => route.clone(),
            // Other contents under its name, or none known now (routes held
            // at two resynchronisations may then hold two contents of one
            // name): an object of its own per content.
            Some(p) if p.name() != Some(name) => route.clone(),
            _ => {
                use std::hash::{Hash, Hasher};
                // The default hasher's keys are fixed: the same content gets the same name.
                let mut h = std::collections::hash_map::DefaultHasher::new();
                route.policy.hash(&mut h);
                let held = format!("{name} held {:016x}", h.finish());
                match route.policy.clone().with_name(&held) {
                    Ok(policy) => Route { policy, ..route.clone() },
                    Err(_) => Route { policy: route.policy.clone().without_name(), ..route.clone() },
                }
            }
        }
    }

    /// What the routes of one family steered into `key` push, named after
    /// their object: the invalid state (as `no_live_path` says) for an
    /// invalid policy; `None` when
    /// BGP has no such policy (or ENLP leaves no room).
    pub(super) fn named_policy(&self, key: &PolicyKey, v6: bool) -> Option<Policy> {
        if self.invalid.contains(key) {
            return Policy::invalid_with(&object_name(key, v6), self.no_live_path).ok();
        }
        let (policy, info) = self.policies.get(key)?;
        let any: IpNetwork = if v6 { "::/0" } else { "0.0.0.0/0" }.parse().ok()?;
        info.policy_for(policy, any)?.with_name(&object_name(key, v6)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_text_reads_as_the_issue_asks() {
        let info = PolicyInfo {
            color: 100,
            endpoint: "192.0.2.1".parse().unwrap(),
            preference: 200,
            distinguisher: 2,
            binding_sid: None,
            name: None,
            enlp: None,
        };
        assert_eq!(info.to_string(), "policy color 100 endpoint 192.0.2.1 preference 200, from BGP");
        let named = PolicyInfo { name: Some("blue".into()), enlp: Some(Enlp::Ipv4), binding_sid: Some(24002), ..info };
        assert_eq!(
            named.to_string(),
            "policy color 100 endpoint 192.0.2.1 preference 200, from BGP (binding SID 24002), named \"blue\", \
             ENLP 1 (IPv4 explicit null)"
        );
    }

    #[test]
    fn enlp_puts_the_explicit_null_of_the_route_family_at_the_bottom() {
        let endpoint = "192.0.2.1".parse().unwrap();
        let policy: Policy = "16001/16002@1,17001@1".parse().unwrap();
        // (ENLP, IPv4 route's stack, IPv6 route's stack)
        let table = [
            (None, "16001/16002@1,17001@1", "16001/16002@1,17001@1"),
            (Some(Enlp::Ipv4), "16001/16002/0@1,17001/0@1", "16001/16002@1,17001@1"),
            (Some(Enlp::Ipv6), "16001/16002@1,17001@1", "16001/16002/2@1,17001/2@1"),
            (Some(Enlp::Both), "16001/16002/0@1,17001/0@1", "16001/16002/2@1,17001/2@1"),
            (Some(Enlp::Neither), "16001/16002@1,17001@1", "16001/16002@1,17001@1"),
        ];
        for (enlp, v4, v6) in table {
            let key = PolicyKey { color: 100, endpoint };
            let info = PolicyInfo {
                color: 100,
                endpoint,
                preference: 100,
                distinguisher: 1,
                binding_sid: None,
                name: None,
                enlp,
            };
            let mut bgp = BgpTable::default();
            bgp.policies.insert(key, (policy.clone(), info));
            for p in ["198.51.100.0/24", "2001:db8:100::/48"] {
                bgp.routes.insert(p.parse().unwrap(), key);
            }
            let stack = |p: &str| bgp.route(p.parse().unwrap()).unwrap().0.policy.to_string();
            assert_eq!((stack("198.51.100.0/24").as_str(), stack("2001:db8:100::/48").as_str()), (v4, v6), "{enlp:?}");
        }
    }
}
