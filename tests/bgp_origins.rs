//! The per-origin merge against a real (loaded, unattached) dataplane, under
//! the default precedence and with BGP first: 300 random steps of BGP tables
//! replaced (whole, or as the moves the learner hands over), agent routes set
//! and removed, BGP routes held over a resynchronisation and released,
//! policies turning invalid (their routes onto the invalid object) and valid
//! again; after every step the dataplane's routes and the origins shown
//! equal a model written here from the rules (a local route wins its prefix,
//! then BGP's current table, then what is held), and every 25 steps the
//! kernel's maps match the RIB.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use common::privileged;
use lnetd_host_encap::bgp::{object_name, BgpTable, Origin, Origins, PolicyInfo, PolicyKey, Precedence};
use lnetd_host_encap::encap::Ipv4Lookup;
use lnetd_host_encap::testing::map_entries;
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
    model_run(Precedence::default());
    // The precedence turned round: BGP's route wins where it has one.
    model_run("bgp,agent,static".parse().unwrap());
}

fn model_run(precedence: Precedence) {
    let bgp_first = precedence.order()[0] == Origin::Bgp;
    common::in_netns("origins", |_| {
        let enc = Arc::new(Encapsulator::builder().load().expect("load"));
        let prefixes: Vec<IpNetwork> = (0..48).map(|i| format!("10.0.{i}.0/24").parse().unwrap()).collect();
        // A static route from before the origins existed.
        enc.set_route(Table::Main, &Route::new(prefixes[0], "777".parse().unwrap())).unwrap();
        let origins = Origins::with_precedence(Arc::clone(&enc), precedence);

        let mut rng = StdRng::seed_from_u64(12);
        let mut local: BTreeMap<IpNetwork, (Route, Origin)> = BTreeMap::new();
        local.insert(prefixes[0], (Route::new(prefixes[0], "777".parse().unwrap()), Origin::Static));
        let mut bgp: BTreeMap<IpNetwork, Route> = BTreeMap::new();
        let mut held: BTreeMap<IpNetwork, (Route, PolicyKey)> = BTreeMap::new();
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
                    if rng.random_bool(0.15) {
                        t.invalid.insert(key(color));
                    } else {
                        t.policies.insert(key(color), (lists.parse::<Policy>().unwrap(), info));
                    }
                }
            }
            let colors: Vec<u32> = t.policies.keys().chain(&t.invalid).map(|k| k.color).collect();
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
            let policy = |k: &PolicyKey| match t.policies.get(k) {
                Some((p, _)) => p.clone(),
                None => Policy::invalid(&object_name(k, false)).unwrap(),
            };
            t.routes.iter().map(|(p, k)| (*p, Route::with_policy(*p, policy(k)))).collect()
        };

        let mut last = BgpTable::default();
        for step in 0..300u32 {
            match rng.random_range(0..11) {
                0..=3 if rng.random_bool(0.5) => {
                    // What the learner hands over when it holds the last
                    // table: only the prefixes whose steering moved.
                    let t = random_table(&mut rng, step);
                    let mut moved = BTreeMap::new();
                    for (p, k) in &last.routes {
                        if t.routes.get(p) != Some(k) {
                            moved.insert(*p, t.routes.get(p).copied());
                        }
                    }
                    for (p, k) in &t.routes {
                        moved.entry(*p).or_insert(Some(*k));
                    }
                    bgp = routes_of(&t);
                    last = t.clone();
                    origins.update_bgp(moved, t.policies, t.invalid).unwrap();
                }
                0..=3 => {
                    let t = random_table(&mut rng, step);
                    bgp = routes_of(&t);
                    held.clear();
                    last = t.clone();
                    origins.set_bgp(t, true).unwrap();
                }
                10 => {
                    // A batch that steers no route again: other lists for the
                    // same policies, some turning invalid or valid again,
                    // handed over alone (shared objects, one write each).
                    let other = random_table(&mut rng, step);
                    let mut t = last.clone();
                    for (k, (p, _)) in t.policies.iter_mut() {
                        if let Some((q, _)) = other.policies.get(k) {
                            *p = q.clone();
                        }
                    }
                    let known: Vec<PolicyKey> = t.policies.keys().chain(&t.invalid).copied().collect();
                    for k in known {
                        if !rng.random_bool(0.2) {
                            continue;
                        }
                        if t.policies.remove(&k).is_some() {
                            t.invalid.insert(k);
                        } else {
                            t.invalid.remove(&k);
                            let info = PolicyInfo {
                                color: k.color,
                                endpoint: k.endpoint,
                                preference: 100,
                                distinguisher: 1,
                                binding_sid: None,
                                name: None,
                                enlp: None,
                            };
                            t.policies.insert(k, (format!("{}", 16_500 + step).parse::<Policy>().unwrap(), info));
                        }
                    }
                    bgp = routes_of(&t);
                    origins.set_bgp_policies(t.policies.clone(), t.invalid.clone()).unwrap();
                    last = t;
                }
                4 => {
                    // A resynchronisation under `keep`: what is installed from BGP is held
                    // (under the local routes, unless BGP comes first).
                    for (p, r) in &bgp {
                        if bgp_first || !local.contains_key(p) {
                            held.insert(*p, (r.clone(), last.routes[p]));
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
                    match origins.remove_route(Table::Main, p) {
                        Ok(removed) => {
                            let had = local.remove(&p).is_some();
                            assert_eq!(removed, had, "step {step}: remove {p}");
                            // Nothing to remove and BGP's route in force: refused as BGP's, never "no route".
                            assert!(had || !(bgp.contains_key(&p) || held.contains_key(&p)), "step {step}: {p}");
                        }
                        // Only BGP's route is there: refused as BGP's (withdrawn in BGP, not here).
                        Err(lnetd_host_encap::errors::RouteError::BgpRoute { .. }) => assert!(
                            !local.contains_key(&p) && (bgp.contains_key(&p) || held.contains_key(&p)),
                            "step {step}: remove {p} refused as BGP's"
                        ),
                        Err(e) => panic!("step {step}: remove {p}: {e}"),
                    }
                }
            }
            let mut expected: BTreeMap<IpNetwork, (String, Origin)> = BTreeMap::new();
            for p in &prefixes {
                let from_local = || local.get(p).map(|(r, o)| (r.clone(), *o));
                let from_bgp = || {
                    bgp.get(p).map(|r| (r.clone(), Origin::Bgp)).or_else(|| {
                        // A held route on a policy now invalid goes onto its invalid object.
                        held.get(p).map(|(r, k)| match last.invalid.contains(k) {
                            true => {
                                (Route::with_policy(*p, Policy::invalid(&object_name(k, false)).unwrap()), Origin::Bgp)
                            }
                            false => (r.clone(), Origin::Bgp),
                        })
                    })
                };
                let chosen = match bgp_first {
                    true => from_bgp().or_else(from_local),
                    false => from_local().or_else(from_bgp),
                };
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

/// The top label `enc` pushes on a UDP packet to `dst` (`None`: unlabelled).
fn top(enc: &Encapsulator, dst: &str) -> Option<u32> {
    let run = enc
        .diagnostics()
        .test_run(&common::frame(dst).l4(common::L4::Udp { sport: 2000, dport: 443 }).build().bytes)
        .unwrap();
    match run.action {
        lnetd_host_encap::diagnostics::XdpAction::Tx => {
            Some(lnetd_host_encap::labels::decode_stack(&run.frame[14..]).expect("labels").0[0].label)
        }
        lnetd_host_encap::diagnostics::XdpAction::Pass => None,
        other => panic!("{dst}: {other:?}"),
    }
}

/// A BGP policy that becomes invalid keeps its routes on its object, now
/// invalid: one policy write through the fast path, no route entry
/// rewritten, and their packets go unlabelled rather than by a covering
/// static route (which would send them where BGP never said). Valid again:
/// one write, labelled again.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_policy_turning_invalid_points_its_routes_at_its_invalid_object() {
    privileged("a_policy_turning_invalid_points_its_routes_at_its_invalid_object");
    common::in_netns("originsinv", |_| {
        // The LPM trie: its entries are the routes' own (DIR-24-8 paints tables).
        let enc = Arc::new(Encapsulator::builder().lookup(Ipv4Lookup::LpmTrie).load().expect("load"));
        let origins = Origins::new(Arc::clone(&enc));
        // The covering route a packet would fall to were the BGP routes removed.
        origins.set_route(Table::Main, &Route::new("10.0.0.0/8".parse().unwrap(), "777".parse().unwrap())).unwrap();
        let info = |color| PolicyInfo {
            color,
            endpoint: key(color).endpoint,
            preference: 100,
            distinguisher: 1,
            binding_sid: None,
            name: None,
            enlp: None,
        };
        let mut t = BgpTable::default();
        t.policies.insert(key(1), ("16001".parse::<Policy>().unwrap(), info(1)));
        t.policies.insert(key(2), ("16002".parse::<Policy>().unwrap(), info(2)));
        for i in 0..200u32 {
            t.routes.insert(format!("10.1.{i}.0/24").parse().unwrap(), key(1 + i % 2));
        }
        origins.set_bgp(t.clone(), true).unwrap();
        assert_eq!((top(&enc, "10.1.4.7"), top(&enc, "10.1.5.7")), (Some(16001), Some(16002)));
        let routes_before = map_entries(&enc, "routes_v4").unwrap();
        assert_eq!(routes_before.len(), 201);

        // Policy 1 loses its last valid candidate path: invalid.
        let mut invalid = t.policies.clone();
        invalid.remove(&key(1));
        let report = origins.set_bgp_policies(invalid.clone(), [key(1)].into()).unwrap();
        assert_eq!(report.map_operations, 1, "one object write: {report}");
        assert_eq!(map_entries(&enc, "routes_v4").unwrap(), routes_before, "no route entry rewritten");
        assert_eq!(top(&enc, "10.1.4.7"), None, "unlabelled, not by the covering 777");
        assert_eq!(top(&enc, "10.1.5.7"), Some(16002), "the other policy untouched");
        assert_eq!(top(&enc, "10.2.0.1"), Some(777));
        let view = origins.view();
        let on_invalid: Vec<Route> =
            enc.routes(Table::Main).unwrap().into_iter().filter(|r| r.policy.to_string() == "invalid").collect();
        assert_eq!(on_invalid.len(), 100, "the routes stay, on the invalid object");
        assert!(on_invalid.iter().all(|r| view.origin(Table::Main, r.prefix).0 == Origin::Bgp));
        // Shown with its color and endpoint (`routes` showed no policy for
        // them, `bgp_policy` null): by the agent's view, and from the RIB's
        // records as the command reads them.
        let (invalid_route, valid_route) = ("10.1.4.0/24".parse().unwrap(), "10.1.5.0/24".parse().unwrap());
        let recorded = lnetd_host_encap::bgp::OriginsView::of(&enc);
        for v in [&view, &recorded] {
            assert_eq!(
                v.bgp_policy(Table::Main, invalid_route).as_deref(),
                Some("policy color 1 endpoint 192.0.2.1, from BGP: no valid candidate path")
            );
            assert_eq!(
                v.bgp_policy(Table::Main, valid_route).as_deref(),
                Some("policy color 2 endpoint 192.0.2.1 preference 100, from BGP")
            );
        }
        assert_eq!(view.bgp_policy(Table::Main, "10.0.0.0/8".parse().unwrap()), None, "a local route");
        assert!(enc.diagnostics().verify().unwrap().is_empty(), "{:?}", enc.diagnostics().verify());

        // A full path while invalid (a route added) keeps them there, and
        // the new route joins them.
        let mut full =
            BgpTable { routes: t.routes.clone(), policies: invalid, invalid: [key(1)].into(), ..Default::default() };
        full.routes.insert("10.3.0.0/24".parse().unwrap(), key(1));
        origins.set_bgp(full, false).unwrap();
        assert_eq!((top(&enc, "10.1.4.7"), top(&enc, "10.3.0.7")), (None, None));

        // Valid again, through the fast path: one write, labelled again.
        let report = origins.set_bgp_policies(t.policies.clone(), Default::default()).unwrap();
        // The object, and the counter slot of its list (new: zeroed).
        assert_eq!(report.map_operations, 2, "{report}");
        assert_eq!(map_entries(&enc, "routes_v4").unwrap().len(), routes_before.len() + 1);
        assert_eq!((top(&enc, "10.1.4.7"), top(&enc, "10.3.0.7")), (Some(16001), Some(16001)));
        assert!(enc.diagnostics().verify().unwrap().is_empty(), "{:?}", enc.diagnostics().verify());
    });
}

/// The origins live in the RIB's store with the routes: a second process
/// (here a second adoption) sees which routes the agent set and which BGP
/// taught, with the policy BGP described, and a new `Origins` holds BGP's
/// routes until BGP teaches them again. No origins file is written.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn origins_survive_adoption_in_the_store() {
    privileged("origins_survive_adoption_in_the_store");
    use lnetd_host_encap::testing::lab::VethLab;
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            let enc = Encapsulator::builder()
                .pinned()
                .attach(VethLab::HOST_IF, lnetd_host_encap::XdpMode::Generic)
                .expect("attach pinned");
            enc.set_route(Table::Main, &Route::new("10.9.0.0/16".parse().unwrap(), "777".parse().unwrap())).unwrap();
            let enc = Arc::new(enc);
            let origins = Origins::new(Arc::clone(&enc));
            origins
                .set_route(Table::Main, &Route::new("10.8.0.0/16".parse().unwrap(), "888".parse().unwrap()))
                .unwrap();
            let info = PolicyInfo {
                color: 7,
                endpoint: key(7).endpoint,
                preference: 200,
                distinguisher: 3,
                binding_sid: Some(24_007),
                name: None,
                enlp: None,
            };
            let mut t = BgpTable::default();
            t.policies.insert(key(7), ("16007".parse::<Policy>().unwrap(), info));
            t.routes.insert("10.7.0.0/16".parse().unwrap(), key(7));
            // BGP's route for exactly a host address (an anycast loopback):
            // set aside while the address exists, and still BGP's.
            let host = IpNetwork::from(std::net::IpAddr::V4(VethLab::HOST_V4));
            t.routes.insert(host, key(7));
            origins.set_bgp(t, true).unwrap();
            drop(origins);
            drop(enc);

            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            let view = lnetd_host_encap::bgp::OriginsView::of(&enc);
            let p = |s: &str| s.parse::<IpNetwork>().unwrap();
            assert_eq!(view.origin(Table::Main, p("10.9.0.0/16")).0, Origin::Static);
            assert_eq!(view.origin(Table::Main, p("10.8.0.0/16")).0, Origin::Agent);
            let (origin, info) = view.origin(Table::Main, p("10.7.0.0/16"));
            assert_eq!(origin, Origin::Bgp);
            let info = info.expect("the policy BGP described");
            assert_eq!((info.preference, info.binding_sid), (200, Some(24_007)));
            assert_eq!(view.origin(Table::Main, host).0, Origin::Bgp, "set aside, it stays BGP's");
            // A new agent holds BGP's routes and releases them when BGP no longer has them.
            let enc = Arc::new(enc);
            let origins = Origins::new(Arc::clone(&enc));
            assert_eq!((origins.held_count(), origins.installed_count()), (2, 2));
            origins.set_bgp(BgpTable::default(), true).unwrap();
            let left: Vec<String> = enc.routes(Table::Main).unwrap().iter().map(|r| r.prefix.to_string()).collect();
            assert_eq!(left, ["10.8.0.0/16", "10.9.0.0/16"]);
            let held: Vec<String> = enc.desired_state().routes.iter().map(|r| r.prefix.clone()).collect();
            assert_eq!(held, ["10.8.0.0/16", "10.9.0.0/16"], "the set-aside route withdrawn with BGP");
            assert!(enc.diagnostics().verify().unwrap().is_empty());
            // The static route applied again by the agent: the kernel needs no
            // write, but the route is the agent's now, and a restart must know it.
            let desired = lnetd_host_encap::DesiredState::from_json(
                r#"{"routes": [{"prefix": "10.9.0.0/16", "policy": "777"}, {"prefix": "10.8.0.0/16", "policy": "888"}]}"#,
            )
            .unwrap();
            let report = origins.apply_local(&desired, lnetd_host_encap::ApplyOptions::default()).unwrap();
            assert!(report.added.is_empty() && report.replaced.is_empty() && report.removed.is_empty(), "{report}");
            drop(origins);
            drop(Arc::try_unwrap(enc).expect("the last handle"));
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt again");
            let view = lnetd_host_encap::bgp::OriginsView::of(&enc);
            assert_eq!(view.origin(Table::Main, p("10.9.0.0/16")).0, Origin::Agent, "the origin that took it over");
            assert_eq!(view.origin(Table::Main, p("10.8.0.0/16")).0, Origin::Agent);
            enc.detach().expect("detach");
        })
        .unwrap();
}

/// The removal guard of an apply of the local tables counts the routes that
/// apply governs: with far more BGP routes in force, an apply that drops
/// every agent route is still most of what it governs, and is refused.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_removal_guard_counts_the_local_routes_not_bgps() {
    privileged("the_removal_guard_counts_the_local_routes_not_bgps");
    common::in_netns("guardbgp", |_| {
        let enc = Arc::new(Encapsulator::builder().load().expect("load"));
        let origins = Origins::new(Arc::clone(&enc));
        let mut t = BgpTable::default();
        t.policies.insert(
            key(7),
            (
                "16007".parse::<Policy>().unwrap(),
                PolicyInfo {
                    color: 7,
                    endpoint: key(7).endpoint,
                    preference: 100,
                    distinguisher: 1,
                    binding_sid: None,
                    name: None,
                    enlp: None,
                },
            ),
        );
        for i in 0..200u32 {
            t.routes.insert(format!("10.{}.{}.0/24", 100 + i / 256, i % 256).parse().unwrap(), key(7));
        }
        origins.set_bgp(t, true).unwrap();
        let state = |n: u32| {
            let routes: Vec<String> =
                (0..n).map(|i| format!(r#"{{"prefix": "192.168.{i}.0/24", "policy": "900"}}"#)).collect();
            lnetd_host_encap::DesiredState::from_json(&format!(r#"{{"routes": [{}]}}"#, routes.join(","))).unwrap()
        };
        let guarded = lnetd_host_encap::ApplyOptions::default().max_remove_share(0.5);
        origins.apply_local(&state(10), guarded).expect("10 agent routes added");
        assert_eq!(enc.routes(Table::Main).unwrap().len(), 210);
        // 8 of the 10 agent routes go: 4% of the 210 in force, 80% of what this apply governs.
        let refused = origins.apply_local(&state(2), guarded).expect_err("refused");
        match refused {
            lnetd_host_encap::errors::RouteError::RemovalRefused { removed, current, .. } => {
                assert_eq!((removed, current), (8, 10), "{refused}")
            }
            other => panic!("not the guard: {other}"),
        }
        assert_eq!(enc.routes(Table::Main).unwrap().len(), 210, "nothing changed");
        origins.apply_local(&state(6), guarded).expect("4 of 10 removed: within the guard");
        assert_eq!(enc.routes(Table::Main).unwrap().len(), 206);
    });
}

/// `remove PREFIX` of a route BGP taught said "no route for exactly PREFIX"
/// while `routes` listed it: the removal is refused naming BGP, the policy,
/// and what to do (withdraw in BGP, or override with a local route, which
/// wins only where the precedence ranks the local origins above bgp).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn removing_a_bgp_route_is_refused_as_bgps() {
    privileged("removing_a_bgp_route_is_refused_as_bgps");
    for precedence in [Precedence::default(), "bgp,agent,static".parse().unwrap()] {
        common::in_netns("removebgp", |_| {
            let enc = Arc::new(Encapsulator::builder().load().expect("load"));
            let origins = Origins::with_precedence(Arc::clone(&enc), precedence);
            let mut t = BgpTable::default();
            let info = PolicyInfo {
                color: 7,
                endpoint: key(7).endpoint,
                preference: 100,
                distinguisher: 1,
                binding_sid: None,
                name: None,
                enlp: None,
            };
            t.policies.insert(key(7), ("16007".parse::<Policy>().unwrap(), info));
            let prefix: IpNetwork = "10.7.0.0/16".parse().unwrap();
            t.routes.insert(prefix, key(7));
            origins.set_bgp(t, true).unwrap();
            let refused = origins.remove_route(Table::Main, prefix).expect_err("BGP's route");
            let text = refused.to_string();
            assert!(
                matches!(refused, lnetd_host_encap::errors::RouteError::BgpRoute { prefix: p, .. } if p == prefix),
                "{text}"
            );
            assert!(
                text.starts_with("10.7.0.0/16 is BGP's route (origin bgp, policy color 7 endpoint 192.0.2.1")
                    && text.contains("withdraw it in BGP, or override it with `set`"),
                "{text}"
            );
            let local_first = precedence.order()[0] != Origin::Bgp;
            assert_eq!(text.contains("a local route wins over BGP's"), local_first, "{text}");
            assert_eq!(enc.routes(Table::Main).unwrap().len(), 1, "still in force");
            // No route at all, or one in another table: not found, as before.
            assert!(!origins.remove_route(Table::Main, "10.8.0.0/16".parse().unwrap()).unwrap());
            assert!(!origins.remove_route(Table::alternate(1).unwrap(), prefix).unwrap());
            // A local route over BGP's is removed (BGP's takes its place).
            origins.set_route(Table::Main, &Route::new(prefix, "900".parse().unwrap())).unwrap();
            assert!(origins.remove_route(Table::Main, prefix).unwrap());
            assert_eq!(enc.routes(Table::Main).unwrap().len(), 1);
        });
    }
}
