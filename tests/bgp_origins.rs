//! The per-origin merge against a real (loaded, unattached) dataplane: 300
//! random steps of BGP tables replaced (patched in place after the first),
//! agent routes set and removed, BGP routes held over a resynchronisation and
//! released; after every step the dataplane's routes and the origins shown
//! equal a model written here from the rules (a local route wins its prefix,
//! then BGP's current table, then what is held), and every 25 steps the
//! kernel's maps match the RIB.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use common::privileged;
use lnetd_host_encap::bgp::{BgpTable, Origin, Origins, PolicyInfo, PolicyKey};
use lnetd_host_encap::{Encapsulator, IpNetwork, Policy, Route, Table};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn key(color: u32) -> PolicyKey {
    PolicyKey { color, endpoint: IpAddr::from([192, 0, 2, 1]) }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn origins_merge_matches_a_model_through_random_changes() {
    privileged("origins_merge_matches_a_model_through_random_changes");
    common::in_netns("origins", |_| {
        let enc = Arc::new(Encapsulator::builder().load().expect("load"));
        let prefixes: Vec<IpNetwork> = (0..48).map(|i| format!("10.0.{i}.0/24").parse().unwrap()).collect();
        // A static route from before the origins existed.
        enc.set_route(Table::Main, &Route::new(prefixes[0], "777".parse().unwrap())).unwrap();
        let origins = Origins::new(Arc::clone(&enc), None);

        let mut rng = StdRng::seed_from_u64(12);
        let mut local: BTreeMap<IpNetwork, (Route, Origin)> = BTreeMap::new();
        local.insert(prefixes[0], (Route::new(prefixes[0], "777".parse().unwrap()), Origin::Static));
        let mut bgp: BTreeMap<IpNetwork, Route> = BTreeMap::new();
        let mut held: BTreeMap<IpNetwork, Route> = BTreeMap::new();
        let random_table = |rng: &mut StdRng, step: u32| {
            let mut t = BgpTable::default();
            for color in 1..=5u32 {
                if rng.random_bool(0.8) {
                    let lists = if rng.random_bool(0.5) {
                        format!("{}/16999", 16_000 + color * 10 + step % 3)
                    } else {
                        format!("{}@1,{}@{}", 17_000 + color, 17_100 + color, 1 + step % 4)
                    };
                    let info = PolicyInfo {
                        color,
                        endpoint: key(color).endpoint,
                        preference: 100,
                        distinguisher: 1,
                        binding_sid: None,
                        name: None,
                        enlp: None,
                    };
                    t.policies.insert(key(color), (lists.parse::<Policy>().unwrap(), info));
                }
            }
            let colors: Vec<u32> = t.policies.keys().map(|k| k.color).collect();
            if !colors.is_empty() {
                for p in &prefixes {
                    if rng.random_bool(0.6) {
                        t.routes.insert(*p, key(colors[rng.random_range(0..colors.len())]));
                    }
                }
            }
            t
        };
        let routes_of = |t: &BgpTable| -> BTreeMap<IpNetwork, Route> {
            t.routes.iter().map(|(p, k)| (*p, Route::with_policy(*p, t.policies[k].0.clone()))).collect()
        };

        let mut last = BgpTable::default();
        for step in 0..300u32 {
            match rng.random_range(0..11) {
                0..=3 => {
                    let t = random_table(&mut rng, step);
                    bgp = routes_of(&t);
                    held.clear();
                    last = t.clone();
                    origins.set_bgp(t, true).unwrap();
                }
                10 => {
                    // A batch that steers no route again: other lists for the
                    // same policies, handed over alone (shared objects, one write each).
                    let other = random_table(&mut rng, step);
                    let mut t = last.clone();
                    for (k, (p, _)) in t.policies.iter_mut() {
                        if let Some((q, _)) = other.policies.get(k) {
                            *p = q.clone();
                        }
                    }
                    bgp = routes_of(&t);
                    origins.set_bgp_policies(t.policies.clone(), t.invalid.clone()).unwrap();
                    last = t;
                }
                4 => {
                    // A resynchronisation under `keep`: what is installed from BGP is held.
                    for (p, r) in &bgp {
                        if !local.contains_key(p) {
                            held.insert(*p, r.clone());
                        }
                    }
                    origins.hold_installed();
                    let t = random_table(&mut rng, step);
                    bgp = routes_of(&t);
                    last = t.clone();
                    origins.set_bgp(t, false).unwrap();
                }
                5..=7 => {
                    let p = prefixes[rng.random_range(0..prefixes.len())];
                    let route = Route::new(p, format!("{}", 90_000 + step).parse().unwrap());
                    origins.set_route(Table::Main, &route).unwrap();
                    local.insert(p, (route, Origin::Agent));
                }
                _ => {
                    let p = prefixes[rng.random_range(0..prefixes.len())];
                    let removed = origins.remove_route(Table::Main, p).unwrap();
                    assert_eq!(removed, local.remove(&p).is_some(), "step {step}: remove {p}");
                }
            }
            let mut expected: BTreeMap<IpNetwork, (String, Origin)> = BTreeMap::new();
            for p in &prefixes {
                let chosen = local
                    .get(p)
                    .map(|(r, o)| (r.clone(), *o))
                    .or_else(|| bgp.get(p).map(|r| (r.clone(), Origin::Bgp)))
                    .or_else(|| held.get(p).map(|r| (r.clone(), Origin::Bgp)));
                if let Some((r, o)) = chosen {
                    expected.insert(*p, (r.policy.to_string(), o));
                }
            }
            let view = origins.view();
            let actual: BTreeMap<IpNetwork, (String, Origin)> = enc
                .routes(Table::Main)
                .unwrap()
                .into_iter()
                .map(|r| (r.prefix, (r.policy.to_string(), view.origin(Table::Main, r.prefix).0)))
                .collect();
            assert_eq!(actual, expected, "step {step}");
            // The kernel's maps against the RIB: every 25 steps (a full compare
            // is slow next to one step).
            if step % 25 == 24 {
                assert!(enc.diagnostics().verify().unwrap().is_empty(), "step {step}: the maps match the RIB");
            }
        }
    });
}
