//! Steering (RFC 9256 section 8.4): a BGP route with color extended
//! community C and next hop E uses SR policy (C, E) when that policy exists
//! and is valid; with several such colors, the highest color wins. A route
//! whose policies all exist but none is valid stays steered into the highest
//! of them, which is then the policy's *invalid* object: its packets go
//! unlabelled, never into a black hole and never by a covering route that
//! another path chose, and the policy turning valid again is one object
//! write, not a rewrite of its routes (docs/policy-objects.md). A route whose
//! colors name no policy BGP knows is not installed from BGP at all.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::select::{PolicyKey, Selected};

/// A colored route as learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColoredRoute {
    /// The next hop: the endpoint of the policies it may use.
    pub next_hop: IpAddr,
    /// Its color extended communities.
    pub colors: Vec<u32>,
}

/// The policy a route is steered into (the highest valid color, else the
/// highest known invalid one), or `None` when its colors name no known policy.
pub fn policy_for(route: &ColoredRoute, policies: &BTreeMap<PolicyKey, Selected>) -> Option<PolicyKey> {
    route
        .colors
        .iter()
        .map(|&color| PolicyKey { color, endpoint: route.next_hop })
        .filter_map(|key| policies.get(&key).map(|s| (s.policy.is_some(), key)))
        .max_by_key(|(valid, key)| (*valid, key.color))
        .map(|(_, key)| key)
}

/// Every steered route, by prefix, with the policy it uses; and how many
/// routes were left unsteered.
pub fn steer<'a>(
    routes: impl IntoIterator<Item = (&'a IpNetwork, &'a ColoredRoute)>,
    policies: &BTreeMap<PolicyKey, Selected>,
) -> (BTreeMap<IpNetwork, PolicyKey>, usize) {
    let mut unsteered = 0;
    // Collected, not inserted one by one: the map is then built in bulk from
    // sorted entries (a million routes arrive in hash order).
    let steered = routes
        .into_iter()
        .filter_map(|(prefix, route)| {
            let key = policy_for(route, policies);
            if key.is_none() {
                unsteered += 1;
            }
            key.map(|k| (*prefix, k))
        })
        .collect();
    (steered, unsteered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::select::{select, Candidate, CandidateList};

    fn policy(color: u32, endpoint: &str, label: u32) -> Candidate {
        Candidate {
            lists: vec![CandidateList { weight: 1, labels: vec![label], unsupported: 0 }],
            ..Candidate::new(1, PolicyKey { color, endpoint: endpoint.parse().unwrap() })
        }
    }

    #[test]
    fn routes_follow_color_and_next_hop_and_the_highest_color_wins() {
        let policies = select(&[
            policy(100, "192.0.2.1", 16100),
            policy(200, "192.0.2.1", 16200),
            policy(300, "192.0.2.9", 16300),
        ]);
        let nh: IpAddr = "192.0.2.1".parse().unwrap();
        let routes: Vec<(IpNetwork, ColoredRoute)> = vec![
            ("198.51.100.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![100] }),
            ("198.51.101.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![300, 200, 100] }),
            // Color 300 exists, but toward another endpoint.
            ("198.51.102.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![300] }),
            ("198.51.103.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![] }),
        ];
        let (steered, unsteered) = steer(routes.iter().map(|(p, r)| (p, r)), &policies);
        let got: Vec<(String, u32)> = steered.iter().map(|(p, k)| (p.to_string(), k.color)).collect();
        assert_eq!(got, [("198.51.100.0/24".to_owned(), 100), ("198.51.101.0/24".to_owned(), 200)]);
        assert_eq!(unsteered, 2);
    }

    #[test]
    fn an_invalid_policy_keeps_its_routes_unless_another_color_is_valid() {
        let mut invalid = policy(200, "192.0.2.1", 16200);
        invalid.lists[0].weight = 0;
        let policies = select(&[policy(100, "192.0.2.1", 16100), invalid]);
        assert!(policies.values().any(|s| s.policy.is_none()), "color 200 is known and invalid");
        let nh: IpAddr = "192.0.2.1".parse().unwrap();
        let routes: Vec<(IpNetwork, ColoredRoute)> = vec![
            // Only the invalid policy: stays on it (its invalid object, unlabelled).
            ("198.51.100.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![200] }),
            // A valid color below the invalid one wins.
            ("198.51.101.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![200, 100] }),
            // No known policy: not installed.
            ("198.51.102.0/24".parse().unwrap(), ColoredRoute { next_hop: nh, colors: vec![300] }),
        ];
        let (steered, unsteered) = steer(routes.iter().map(|(p, r)| (p, r)), &policies);
        let got: Vec<(String, u32)> = steered.iter().map(|(p, k)| (p.to_string(), k.color)).collect();
        assert_eq!(got, [("198.51.100.0/24".to_owned(), 200), ("198.51.101.0/24".to_owned(), 100)]);
        assert_eq!(unsteered, 1);
    }
}
