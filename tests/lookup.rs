//! The main table's lookup structures against a reference longest-prefix
//! match written here in plain Rust: for IPv4 a full BGP-like table
//! (1,000,000 prefixes plus nested longer ones), every address of dense
//! ranges, and the edits that make DIR-24-8 hard (a long prefix added under a
//! short one, removed, re-added; parents removed under children); for IPv6
//! nested edits and 1,100 /16s. Each answer is the real program's: a frame
//! through BPF_PROG_TEST_RUN, the pushed label naming the route that matched.

mod common;
#[path = "fixtures/mod.rs"]
mod fixtures;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use common::{in_test_run_netns, privileged};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use lnetd_host_encap::{
    desired::ValidState, encap::Ipv4Lookup, labels::DscpMap, Encapsulator, Label, LabelStack, Route, Table,
};

/// Longest-prefix match over a set of prefixes, by testing each length.
struct ReferenceLpm {
    by_len: Vec<HashMap<u32, u32>>,
}

impl Default for ReferenceLpm {
    fn default() -> Self {
        ReferenceLpm { by_len: vec![HashMap::new(); 33] }
    }
}

impl ReferenceLpm {
    fn insert(&mut self, p: Ipv4Network, label: u32) {
        self.by_len[usize::from(p.prefix())].insert(u32::from(p.network()), label);
    }

    fn remove(&mut self, p: Ipv4Network) {
        self.by_len[usize::from(p.prefix())].remove(&u32::from(p.network()));
    }

    fn lookup(&self, addr: Ipv4Addr) -> Option<u32> {
        // Link-local (169.254.0.0/16) is never labelled, whatever covers it.
        if addr.is_link_local() {
            return None;
        }
        let a = u32::from(addr);
        (0..=32u32).rev().find_map(|len| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            self.by_len[len as usize].get(&(a & mask)).copied()
        })
    }
}

/// The top label the program pushes for a packet to `addr`.
fn program_label(enc: &Encapsulator, addr: Ipv4Addr) -> Option<u32> {
    common::top_label(enc, &addr.to_string())
}

fn v4(p: &IpNetwork) -> Ipv4Network {
    match p {
        IpNetwork::V4(p) => *p,
        IpNetwork::V6(_) => unreachable!("IPv4 prefixes only"),
    }
}

fn plain(p: Ipv4Network, label: u32) -> Route {
    Route::new(IpNetwork::V4(p), LabelStack::new(vec![Label::new(label).unwrap()]).unwrap())
}

fn state(routes: &BTreeMap<Ipv4Network, u32>) -> ValidState {
    let routes = routes.iter().map(|(p, l)| ((Table::Main, IpNetwork::V4(*p)), plain(*p, *l))).collect();
    ValidState::new(routes, BTreeMap::new(), DscpMap::default()).unwrap()
}

/// xorshift64*: reproducible addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Checks `addrs` against the reference; returns how many were checked.
fn check(enc: &Encapsulator, reference: &ReferenceLpm, addrs: impl Iterator<Item = Ipv4Addr>, what: &str) -> usize {
    let mut n = 0;
    for addr in addrs {
        assert_eq!(program_label(enc, addr), reference.lookup(addr), "{what}: {addr}");
        n += 1;
    }
    n
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn dir24_8_matches_a_reference_lpm_over_a_full_table() {
    privileged("dir24_8_matches_a_reference_lpm_over_a_full_table");
    in_test_run_netns("lookup", || {
        let enc = Encapsulator::builder()
            .lookup(Ipv4Lookup::Dir24_8)
            .max_route_values(1_100_000)
            .dir_groups(32_768)
            .load()
            .expect("load");
        // 1,000,000 BGP-like prefixes, then 20,000 longer ones (/25-/32)
        // nested in them, and a dense region of nested prefixes /16-/32.
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut routes: BTreeMap<Ipv4Network, u32> = BTreeMap::new();
        let bgp: Vec<Ipv4Network> = fixtures::tables::bgp_like_v4(1_000_000).iter().map(v4).collect();
        for p in &bgp {
            routes.insert(*p, 16 + routes.len() as u32);
        }
        for _ in 0..20_000 {
            let parent = bgp[(rng.next() % bgp.len() as u64) as usize];
            let len = 25 + (rng.next() % 8) as u8;
            let addr = u32::from(parent.network()) | ((rng.next() as u32) & !(u32::MAX << (32 - parent.prefix())));
            let p = Ipv4Network::new(Ipv4Addr::from(addr), len).unwrap();
            let p = Ipv4Network::new(p.network(), len).unwrap();
            let label = 16 + routes.len() as u32;
            routes.entry(p).or_insert(label);
        }
        let dense = Ipv4Network::new(Ipv4Addr::new(100, 77, 0, 0), 16).unwrap();
        for _ in 0..2_000 {
            let len = 16 + (rng.next() % 17) as u8;
            let addr = u32::from(dense.network()) | ((rng.next() as u32) & 0xffff);
            let p = Ipv4Network::new(Ipv4Addr::from(addr), len).unwrap();
            let p = Ipv4Network::new(p.network(), len).unwrap();
            let label = 16 + routes.len() as u32;
            routes.entry(p).or_insert(label);
        }
        let mut reference = ReferenceLpm::default();
        routes.iter().for_each(|(p, l)| reference.insert(*p, *l));
        enc.apply(state(&routes), lnetd_host_encap::ApplyOptions::default()).expect("apply the full table");
        assert!(enc.diagnostics().verify().unwrap().is_empty(), "the kernel holds what the RIB says");

        let listed: Vec<Ipv4Network> = routes.keys().copied().collect();
        let random = |rng: &mut Rng, n: usize| -> Vec<Ipv4Addr> {
            (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        Ipv4Addr::from(rng.next() as u32)
                    } else {
                        // Inside a route, anywhere in it.
                        let p = listed[(rng.next() % listed.len() as u64) as usize];
                        Ipv4Addr::from(u32::from(p.network()) | ((rng.next() as u32) & !p.mask().to_bits()))
                    }
                })
                .collect()
        };
        let sample = random(&mut rng, 60_000);
        let mut checked = check(&enc, &reference, sample.into_iter(), "full table");
        // Every address of the dense /20 and of a /22 around a nested long prefix.
        let first = u32::from(dense.network());
        checked += check(&enc, &reference, (first..first + 4096).map(Ipv4Addr::from), "dense range");

        // 10% removed (parents with their children and without), 5% relabelled.
        let mut next: BTreeMap<Ipv4Network, u32> = BTreeMap::new();
        for (i, (p, l)) in routes.iter().enumerate() {
            match i % 20 {
                0 | 7 => reference.remove(*p),
                3 => {
                    next.insert(*p, l + 1_000);
                    reference.insert(*p, l + 1_000);
                }
                _ => {
                    next.insert(*p, *l);
                }
            }
        }
        enc.apply(state(&next), lnetd_host_encap::ApplyOptions::default()).expect("apply the change");
        assert!(enc.diagnostics().verify().unwrap().is_empty(), "no stale entry after the change");
        let sample = random(&mut rng, 40_000);
        checked += check(&enc, &reference, sample.into_iter(), "after removals");
        checked += check(&enc, &reference, (first..first + 4096).map(Ipv4Addr::from), "dense range after removals");
        assert!(checked >= 100_000);
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn nested_prefixes_added_removed_and_readded_under_both_lookups() {
    privileged("nested_prefixes_added_removed_and_readded_under_both_lookups");
    in_test_run_netns("nested", || {
        for lookup in [Ipv4Lookup::Dir24_8, Ipv4Lookup::LpmTrie] {
            let enc = Encapsulator::builder().lookup(lookup).load().expect("load");
            let mut reference = ReferenceLpm::default();
            let net = |s: &str| -> Ipv4Network { s.parse().unwrap() };
            let region = net("203.0.112.0/22");
            let every = || (u32::from(region.network())..u32::from(region.network()) + 1024).map(Ipv4Addr::from);
            let set = |enc: &Encapsulator, reference: &mut ReferenceLpm, p: &str, label: u32| {
                enc.set_route(Table::Main, &plain(net(p), label)).unwrap();
                reference.insert(net(p), label);
            };
            let unset = |enc: &Encapsulator, reference: &mut ReferenceLpm, p: &str| {
                assert!(enc.remove(Table::Main, IpNetwork::V4(net(p))).unwrap());
                reference.remove(net(p));
            };
            let steps: &[(&str, &str, u32)] = &[
                ("set", "203.0.112.0/22", 100),
                ("set", "203.0.113.128/28", 101),
                ("set", "203.0.113.129/32", 102),
                ("set", "203.0.113.0/24", 103),
                ("unset", "203.0.113.128/28", 0),
                ("set", "203.0.113.128/28", 104),
                ("unset", "203.0.113.0/24", 0),
                ("unset", "203.0.112.0/22", 0),
                ("set", "0.0.0.0/0", 105),
                ("unset", "203.0.113.129/32", 0),
                ("unset", "203.0.113.128/28", 0),
                ("set", "203.0.113.0/25", 106),
                ("set", "203.0.113.0/25", 107),
                ("unset", "0.0.0.0/0", 0),
            ];
            for (i, (op, p, label)) in steps.iter().enumerate() {
                match *op {
                    "set" => set(&enc, &mut reference, p, *label),
                    _ => unset(&enc, &mut reference, p),
                }
                check(&enc, &reference, every(), &format!("{lookup}: step {i} ({op} {p})"));
                assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{lookup}: step {i}: kernel and RIB agree");
            }
        }
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_foreign_write_into_dir24_8_is_found_and_repaired() {
    privileged("a_foreign_write_into_dir24_8_is_found_and_repaired");
    in_test_run_netns("dirrepair", || {
        let enc = Encapsulator::builder().load().expect("load");
        enc.set_route(Table::Main, &plain("198.51.100.0/24".parse().unwrap(), 500)).unwrap();
        enc.set_route(Table::Main, &plain("198.51.100.64/26".parse().unwrap(), 501)).unwrap();
        // The element holding 198.51.100.0/24's entry, zeroed: its traffic is no longer labelled.
        let index = ((198u32 << 16) | (51 << 8) | 100) / 16;
        lnetd_host_encap::testing::write_map_entry(&enc, "dir4_tbl24", &index.to_ne_bytes(), &[0u8; 64]).unwrap();
        let addr = Ipv4Addr::new(198, 51, 100, 1);
        assert_eq!(program_label(&enc, addr), None, "the foreign write took effect");
        let found = enc.diagnostics().verify().unwrap();
        assert_eq!(
            found.iter().map(|d| (d.map, d.entry.as_str())).collect::<Vec<_>>(),
            [("dir4_tbl24", "198.51.100.0/24")],
            "exactly the /24 that was overwritten"
        );
        assert_eq!(enc.diagnostics().repair().unwrap().len(), 1);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        assert_eq!(program_label(&enc, addr), Some(500));
        assert_eq!(program_label(&enc, Ipv4Addr::new(198, 51, 100, 65)), Some(501));
    });
}

/// verify checks DIR-24-8's prefixes and values in place; a value someone
/// else overwrote is still named, by prefix, and repaired.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_foreign_write_into_dir24_8_values_is_found_and_repaired() {
    privileged("a_foreign_write_into_dir24_8_values_is_found_and_repaired");
    in_test_run_netns("dirvalues", || {
        use lnetd_host_encap::diagnostics::DifferenceKind;
        use lnetd_host_encap::testing::{map_entries, write_map_entry};
        let enc = Encapsulator::builder().load().expect("load");
        // The value entries each route adds: what was not there before it.
        let mut added = Vec::new();
        for (prefix, label) in [("198.51.100.0/24", 500), ("198.51.100.64/26", 501), ("203.0.113.0/24", 502)] {
            let before: std::collections::HashSet<_> = map_entries(&enc, "dir4_values").unwrap().into_iter().collect();
            enc.set_route(Table::Main, &plain(prefix.parse().unwrap(), label)).unwrap();
            let after = map_entries(&enc, "dir4_values").unwrap();
            let new: Vec<_> = after.into_iter().filter(|e| !before.contains(e)).collect();
            assert_eq!(new.len(), 1, "{prefix}: one new value");
            added.extend(new);
        }
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        // The values of 500 and 501 zeroed (the tables still point at them); 502's kept.
        for (key, value) in &added[..2] {
            write_map_entry(&enc, "dir4_values", key, &vec![0u8; value.len()]).unwrap();
        }
        let found = enc.diagnostics().verify().unwrap();
        assert_eq!(
            found.iter().map(|d| (d.map, d.entry.as_str(), d.kind)).collect::<Vec<_>>(),
            [
                ("dir4", "198.51.100.0/24", DifferenceKind::Differs),
                ("dir4", "198.51.100.64/26", DifferenceKind::Differs)
            ],
            "exactly the two prefixes whose values were overwritten"
        );
        assert_eq!(enc.diagnostics().repair().unwrap(), found);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
        assert_eq!(program_label(&enc, Ipv4Addr::new(198, 51, 100, 1)), Some(500));
        assert_eq!(program_label(&enc, Ipv4Addr::new(198, 51, 100, 65)), Some(501));
        assert_eq!(program_label(&enc, Ipv4Addr::new(203, 0, 113, 1)), Some(502));
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn dir24_8_limits_are_typed_errors_that_change_nothing() {
    privileged("dir24_8_limits_are_typed_errors_that_change_nothing");
    in_test_run_netns("dirlimits", || {
        let net = |s: &str| -> Ipv4Network { s.parse().unwrap() };
        // One group: a second /24 holding a longer prefix does not fit.
        let enc = Encapsulator::builder().dir_groups(1).load().expect("load");
        enc.set_route(Table::Main, &plain(net("198.51.100.7/32"), 600)).unwrap();
        enc.set_route(Table::Main, &plain(net("198.51.100.8/32"), 601)).unwrap();
        match enc.set_route(Table::Main, &plain(net("203.0.113.9/32"), 602)) {
            Err(lnetd_host_encap::errors::RouteError::TableFull { family, capacity: 1, knob }) => {
                assert!(family.contains("groups") && knob.starts_with("--dir-groups"), "{family} {knob}")
            }
            other => panic!("a second group: {other:?}"),
        }
        assert_eq!(enc.routes(Table::Main).unwrap().len(), 2);
        assert_eq!(program_label(&enc, Ipv4Addr::new(198, 51, 100, 8)), Some(601));
        assert_eq!(program_label(&enc, Ipv4Addr::new(203, 0, 113, 9)), None);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);

        // One value: routes with the same labels share it, another value does not fit.
        let enc = Encapsulator::builder().max_route_values(1).max_counted_routes(0).load().expect("load");
        enc.set_route(Table::Main, &plain(net("10.0.0.0/8"), 700)).unwrap();
        enc.set_route(Table::Main, &plain(net("172.16.0.0/12"), 700)).unwrap();
        match enc.set_route(Table::Main, &plain(net("192.168.0.0/16"), 701)) {
            Err(lnetd_host_encap::errors::RouteError::TableFull { family, capacity: 1, knob }) => {
                assert!(family.contains("values") && knob.starts_with("--max-route-values"), "{family} {knob}")
            }
            other => panic!("a second value: {other:?}"),
        }
        assert_eq!(program_label(&enc, Ipv4Addr::new(172, 16, 1, 1)), Some(700));
        assert_eq!(program_label(&enc, Ipv4Addr::new(192, 168, 1, 1)), None);
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
    });
}

/// Longest-prefix match over IPv6 prefixes, by testing each length.
#[derive(Default)]
struct ReferenceLpm6 {
    routes: HashMap<(u128, u8), u32>,
}

impl ReferenceLpm6 {
    fn lookup(&self, addr: Ipv6Addr) -> Option<u32> {
        // Link-local (fe80::/10) is never labelled, whatever covers it.
        if addr.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
        let a = u128::from(addr);
        (0..=128u32).rev().find_map(|len| {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            self.routes.get(&(a & mask, len as u8)).copied()
        })
    }
}

/// The IPv6 table through the program, against the reference, at `addrs`.
fn check6(enc: &Encapsulator, reference: &ReferenceLpm6, addrs: &[Ipv6Addr], what: &str) {
    let wrong: Vec<String> = addrs
        .iter()
        .filter_map(|a| {
            let (got, want) = (common::top_label(enc, &a.to_string()), reference.lookup(*a));
            (got != want).then(|| format!("{a}: program {got:?}, reference {want:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{what}: {} of {} addresses differ:\n{}", wrong.len(), addrs.len(), wrong.join("\n"));
}

/// Addresses at the edges and inside every prefix of `prefixes`, and a few
/// elsewhere. Not multicast (ff00::/8), which the program never labels. Not multicast
/// (ff00::/8), which the program never labels.
fn probes6(prefixes: &[Ipv6Network]) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = [
        "::1",
        "1::1",
        "2000::1",
        "2001::1",
        "2001:db8::1",
        "2001:db9::1",
        "2001:ffff::1",
        "2003::1",
        "3000::1",
        "feff::1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for p in prefixes {
        let (first, last) = (u128::from(p.network()), u128::from(p.broadcast()));
        for a in
            [first, first + 1, last, last - 1, first + (last - first) / 2, last.wrapping_add(1), first.wrapping_sub(1)]
        {
            out.push(Ipv6Addr::from(a));
        }
    }
    out.retain(|a| !a.is_multicast());
    out
}

/// The main IPv6 table answers what a longest-prefix match says through
/// every kind of edit: short prefixes (a default route, a /16, a /3) and
/// long ones added under them, replaced, removed, in both orders; then
/// 1,100 /16s from one apply, longer prefixes inside two of them, and half
/// of the /16s removed.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn ipv6_matches_a_reference_lpm_through_edits() {
    privileged("ipv6_matches_a_reference_lpm_through_edits");
    in_test_run_netns("lpm6", || {
        for lookup in [Ipv4Lookup::Dir24_8, Ipv4Lookup::LpmTrie] {
            let enc = Encapsulator::builder().lookup(lookup).load().expect("load");
            let mut reference = ReferenceLpm6::default();
            let net = |s: &str| -> Ipv6Network { s.parse().unwrap() };
            let steps: &[(&str, &str, u32)] = &[
                ("set", "::/0", 100),
                ("set", "2001:db8::/32", 101),
                ("set", "2001::/16", 102),
                ("set", "2000::/3", 103),
                ("set", "::/0", 104),
                ("set", "2001:db8:1::/48", 105),
                ("unset", "2001:db8::/32", 0),
                ("set", "2001::/16", 106),
                ("unset", "2001:db8:1::/48", 0),
                ("unset", "2001::/16", 0),
                ("set", "3000::/4", 107),
                ("unset", "::/0", 0),
                ("set", "3000:1::/32", 108),
                ("unset", "3000::/4", 0),
                ("unset", "2000::/3", 0),
                ("unset", "3000:1::/32", 0),
            ];
            let all: Vec<Ipv6Network> = steps.iter().map(|(_, p, _)| net(p)).collect();
            let addrs = probes6(&all);
            check6(&enc, &reference, &addrs, &format!("{lookup}: empty"));
            for (i, (op, p, label)) in steps.iter().enumerate() {
                let p = net(p);
                if *op == "set" {
                    enc.set_route(
                        Table::Main,
                        &Route::new(IpNetwork::V6(p), LabelStack::single(Label::new(*label).unwrap())),
                    )
                    .unwrap();
                    reference.routes.insert((u128::from(p.network()), p.prefix()), *label);
                } else {
                    assert!(enc.remove(Table::Main, IpNetwork::V6(p)).unwrap());
                    reference.routes.remove(&(u128::from(p.network()), p.prefix()));
                }
                let what = format!("{lookup}: step {i} ({op} {p})");
                check6(&enc, &reference, &addrs, &what);
                assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{what}: kernel and RIB agree");
            }

            // One /16 each from 4000::/16 on, then a long one inside the first and the last.
            let sixteens: Vec<Ipv6Network> =
                (0..1100u128).map(|i| Ipv6Network::new(Ipv6Addr::from((0x4000 + i) << 112), 16).unwrap()).collect();
            let routes: BTreeMap<(Table, IpNetwork), Route> = sixteens
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let route = Route::new(IpNetwork::V6(*p), LabelStack::single(Label::new(1000 + i as u32).unwrap()));
                    ((Table::Main, IpNetwork::V6(*p)), route)
                })
                .collect();
            enc.apply(
                ValidState::new(routes, BTreeMap::new(), DscpMap::default()).unwrap(),
                lnetd_host_encap::ApplyOptions::default(),
            )
            .unwrap();
            let mut reference = ReferenceLpm6::default();
            for (i, p) in sixteens.iter().enumerate() {
                reference.routes.insert((u128::from(p.network()), 16), 1000 + i as u32);
            }
            for long in ["4000:1::/32", "444b:1::/32"] {
                let p = net(long);
                enc.set_route(
                    Table::Main,
                    &Route::new(IpNetwork::V6(p), LabelStack::single(Label::new(2000).unwrap())),
                )
                .unwrap();
                reference.routes.insert((u128::from(p.network()), p.prefix()), 2000);
            }
            let sample: Vec<Ipv6Network> = sixteens.iter().step_by(7).chain(sixteens.last()).copied().collect();
            let mut addrs = probes6(&sample);
            addrs.extend(["4000:1::1", "444b:1::1", "444b:2::1"].map(|s| s.parse::<Ipv6Addr>().unwrap()));
            check6(&enc, &reference, &addrs, &format!("{lookup}: 1,100 /16s"));
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{lookup}: 1,100 /16s: kernel and RIB agree");
            // Half of them gone.
            for p in sixteens.iter().step_by(2) {
                assert!(enc.remove(Table::Main, IpNetwork::V6(*p)).unwrap());
                reference.routes.remove(&(u128::from(p.network()), 16));
            }
            check6(&enc, &reference, &addrs, &format!("{lookup}: half of the /16s removed"));
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{lookup}: half removed: kernel and RIB agree");
        }
    });
}
