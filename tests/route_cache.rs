//! The route cache in front of the main table's LPM tries: that it answers
//! (a destination cached before a foreign delete of its route keeps its
//! label until the library changes a table), that every change through the
//! library is seen at once (relabel, delete, a longer prefix added under a
//! shorter one, removed, re-added, a policy, an apply), for IPv6 and for
//! IPv4 under both lookups; that what DIR-24-8's /16 summary answers alone
//! is not cached; that a family's lookups go through it only while its main
//! table holds `route_cache_min_routes`; and that `route_cache(0)` has none. Frames go through
//! BPF_PROG_TEST_RUN.

mod common;

use common::{in_test_run_netns, privileged};
use ipnetwork::IpNetwork;
use lnetd_host_encap::testing::{delete_map_entry, write_map_entry};
use lnetd_host_encap::Table;
use lnetd_host_encap::{
    diagnostics::XdpAction, encap::EncapsulatorBuilder, encap::Ipv4Lookup, labels::SegmentList, Encapsulator, Label,
    LabelStack, Policy, Route,
};

fn label_for(enc: &Encapsulator, dst: &str) -> Option<u32> {
    common::top_label(enc, dst)
}

fn route(prefix: &str, label: u32) -> Route {
    Route::new(prefix.parse().unwrap(), LabelStack::new(vec![Label::new(label).unwrap()]).unwrap())
}

/// Deletes `prefix`'s entry from the kernel table behind the library's back.
fn foreign_delete(enc: &Encapsulator, lookup: Ipv4Lookup, prefix: &str) {
    match prefix.parse::<IpNetwork>().unwrap() {
        IpNetwork::V4(p) if lookup == Ipv4Lookup::Dir24_8 => {
            assert_eq!(p.prefix(), 24, "the test zeroes one /24's tbl24 block");
            let index = (u32::from(p.network()) >> 8) / 16;
            write_map_entry(enc, "dir4_tbl24", &index.to_ne_bytes(), &[0u8; 64]).unwrap();
        }
        IpNetwork::V4(p) => {
            let mut key = u32::from(p.prefix()).to_ne_bytes().to_vec();
            key.extend(p.network().octets());
            delete_map_entry(enc, "routes_v4", &key).unwrap();
        }
        IpNetwork::V6(p) => {
            let mut key = u32::from(p.prefix()).to_ne_bytes().to_vec();
            key.extend(p.network().octets());
            delete_map_entry(enc, "routes_v6", &key).unwrap();
        }
    }
}

/// A builder whose cache serves a main table of any size: these tests' tables are small.
fn small_table_cached() -> EncapsulatorBuilder {
    Encapsulator::builder().route_cache_min_routes(0)
}

/// (prefix, a destination in it, another destination in it, a longer prefix around the first destination)
const FAMILIES: [(&str, &str, &str, &str); 2] = [
    ("198.51.100.0/24", "198.51.100.7", "198.51.100.200", "198.51.100.0/28"),
    ("2001:db8:77::/48", "2001:db8:77::7", "2001:db8:77:ff::1", "2001:db8:77::/64"),
];

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_cache_answers_and_every_library_change_is_seen_at_once() {
    privileged("the_cache_answers_and_every_library_change_is_seen_at_once");
    in_test_run_netns("rcache", || {
        for lookup in [Ipv4Lookup::Dir24_8, Ipv4Lookup::LpmTrie] {
            for (prefix, dst, other, longer) in FAMILIES {
                let what = format!("{lookup}, {prefix}");
                let enc = small_table_cached().lookup(lookup).route_cache(64).load().expect("load");
                enc.set_route(Table::Main, &route(prefix, 100)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(100), "{what}: labelled");

                // Served from the cache: the route is gone from the kernel table, the answer is not.
                foreign_delete(&enc, lookup, prefix);
                assert_eq!(label_for(&enc, dst), Some(100), "{what}: a cached destination keeps its route");
                assert_eq!(label_for(&enc, other), None, "{what}: the foreign delete took effect elsewhere");
                // Any change through the library forgets every answer.
                enc.set_route(Table::Main, &route("203.0.113.0/24", 99)).unwrap();
                assert_eq!(label_for(&enc, dst), None, "{what}: after a library change the cache forgot");
                assert_eq!(enc.diagnostics().repair().unwrap().len(), 1, "{what}: repair puts the route back");
                assert_eq!(label_for(&enc, dst), Some(100), "{what}: repaired");

                // Cached, then changed through the library: the change is seen by the next packet.
                assert_eq!(label_for(&enc, dst), Some(100));
                enc.set_route(Table::Main, &route(prefix, 200)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(200), "{what}: relabelled");
                enc.set_route(Table::Main, &route(longer, 300)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(300), "{what}: a longer prefix added under it");
                assert_eq!(label_for(&enc, other), Some(200), "{what}: outside the longer prefix");
                assert!(enc.remove(Table::Main, longer.parse().unwrap()).unwrap());
                assert_eq!(label_for(&enc, dst), Some(200), "{what}: the longer prefix removed");
                enc.set_route(Table::Main, &route(longer, 301)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(301), "{what}: re-added");
                let lists = [400, 401]
                    .map(|l| SegmentList { stack: LabelStack::new(vec![Label::new(l).unwrap()]).unwrap(), weight: 1 });
                let policy = Policy::new(lists.to_vec(), None).unwrap();
                enc.set_route(Table::Main, &Route::with_policy(longer.parse().unwrap(), policy)).unwrap();
                let top = label_for(&enc, dst);
                assert!(matches!(top, Some(400 | 401)), "{what}: made a policy route: {top:?}");
                assert!(enc.remove(Table::Main, longer.parse().unwrap()).unwrap());
                assert!(enc.remove(Table::Main, prefix.parse().unwrap()).unwrap());
                assert_eq!(label_for(&enc, dst), None, "{what}: no stale answer after a delete");
                assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "{what}: kernel and RIB agree");

                // An apply is a change like any other.
                enc.set_route(Table::Main, &route(prefix, 500)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(500));
                let mut desired = lnetd_host_encap::DesiredState::default();
                desired.routes.push(lnetd_host_encap::desired::DesiredRoute {
                    prefix: prefix.into(),
                    policy: "501".into(),
                    tc: None,
                    table: None,
                    entropy_label: None,
                    policy_name: None,
                });
                enc.apply(&desired, lnetd_host_encap::ApplyOptions::default()).unwrap();
                assert_eq!(label_for(&enc, dst), Some(501), "{what}: applied");
            }
        }
    });
}

/// A destination DIR-24-8's /16 summary answers alone (no prefix longer than
/// /16 in its /16) is looked up every time: that read is cheaper than the cache's.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn dir24_8_short_prefixes_are_not_cached() {
    privileged("dir24_8_short_prefixes_are_not_cached");
    in_test_run_netns("rcacheshort", || {
        let enc = Encapsulator::builder().load().expect("load");
        enc.set_route(Table::Main, &route("10.0.0.0/8", 100)).unwrap();
        assert_eq!(label_for(&enc, "10.1.2.3"), Some(100));
        // 10.0.0.0/8's 256 /16 summary entries, 16 to an array element, zeroed behind the library.
        for element in (10u32 << 8) / 16..(11u32 << 8) / 16 {
            write_map_entry(&enc, "dir4_tbl16", &element.to_ne_bytes(), &[0u8; 64]).unwrap();
        }
        assert_eq!(label_for(&enc, "10.1.2.3"), None, "the summary answered, not a cache");
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn route_cache_zero_has_none() {
    privileged("route_cache_zero_has_none");
    in_test_run_netns("rcacheoff", || {
        for (prefix, dst, _, _) in FAMILIES {
            let enc = Encapsulator::builder().lookup(Ipv4Lookup::LpmTrie).route_cache(0).load().expect("load");
            enc.set_route(Table::Main, &route(prefix, 100)).unwrap();
            assert_eq!(label_for(&enc, dst), Some(100));
            foreign_delete(&enc, Ipv4Lookup::LpmTrie, prefix);
            assert_eq!(label_for(&enc, dst), None, "{prefix}: without a cache the kernel table answers");
        }
        let enc = Encapsulator::builder().route_cache(3000).load().expect("load");
        let memory: std::collections::BTreeMap<String, u64> =
            enc.diagnostics().map_memory().unwrap().into_iter().map(|(m, b)| (m.to_string(), b)).collect();
        // Rounded up to 4,096 entries: 1,024 buckets of 64 bytes.
        assert!(memory.get("route_cache").is_some_and(|&b| b >= 1024 * 64), "its memory is reported: {memory:?}");
    });
}

/// Addresses a packet to one of the host's own addresses: local routes are cached like any other.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn host_addresses_stay_unlabelled_through_the_cache() {
    privileged("host_addresses_stay_unlabelled_through_the_cache");
    in_test_run_netns("rcachelocal", || {
        let enc = small_table_cached().load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        enc.set_route(Table::Main, &route("0.0.0.0/0", 100)).unwrap();
        enc.set_route(Table::Main, &route("::/0", 100)).unwrap();
        for _ in 0..3 {
            for (local, neighbour) in [(common::LOCAL_V4, "192.0.2.56"), (common::LOCAL_V6, "2001:db8:ffff::56")] {
                assert_eq!(label_for(&enc, local), None, "{local}: never labelled");
                assert_eq!(label_for(&enc, neighbour), Some(100));
            }
        }
        assert_eq!(enc.stats().unwrap().local.packets, 6);
    });
}

/// One cache entry shared by every destination and by two threads (on both
/// CPUs when the scheduler spreads them): every fill overwrites another
/// destination's, so each frame's whole stack is checked to be its own. This
/// proves the tag and generation checks under contention; a torn copy (a
/// writer on another CPU inside the ~20 ns copy) is a race a test this slow
/// rarely meets, which is why the seqlock's reasoning is in route_cache.h.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn one_entry_fought_over_by_two_threads_serves_each_destination_its_own_route() {
    privileged("one_entry_fought_over_by_two_threads_serves_each_destination_its_own_route");
    in_test_run_netns("rcachetorn", || {
        let enc = small_table_cached().lookup(Ipv4Lookup::LpmTrie).route_cache(1).load().expect("load");
        // Destination i: 1 + i % 16 labels, each 1000 * (i + 1) + position.
        let stack = |i: u32| -> Vec<u32> { (0..1 + i % 16).map(|k| 1000 * (i + 1) + k).collect() };
        let dsts: Vec<String> =
            (0..32u32).map(|i| if i % 2 == 0 { format!("10.{i}.0.1") } else { format!("2001:db8:{i:x}::1") }).collect();
        for (i, dst) in dsts.iter().enumerate() {
            let prefix = if dst.contains(':') { dst.replace("::1", "::/48") } else { dst.replace(".0.1", ".0.0/16") };
            let labels: Vec<Label> = stack(i as u32).into_iter().map(|l| Label::new(l).unwrap()).collect();
            enc.set_route(Table::Main, &Route::new(prefix.parse().unwrap(), LabelStack::new(labels).unwrap())).unwrap();
        }
        let frames: Vec<Vec<u8>> = dsts.iter().map(|d| common::frame(d).build().bytes).collect();
        let checked: usize = std::thread::scope(|s| {
            let workers: Vec<_> = (0..2usize)
                .map(|t| {
                    let (enc, frames, dsts) = (&enc, &frames, &dsts);
                    s.spawn(move || {
                        let mut n = 0;
                        for round in 0..10_000usize {
                            let i = (round * 7 + t * 13) % frames.len();
                            let out = enc.diagnostics().test_run(&frames[i]).expect("test run");
                            assert_eq!(out.action, XdpAction::Tx);
                            let want = stack(i as u32);
                            let got: Vec<u32> = out.frame[14..14 + 4 * want.len()]
                                .chunks(4)
                                .map(|e| u32::from_be_bytes(e.try_into().unwrap()) >> 12)
                                .collect();
                            let bottom = u32::from_be_bytes(
                                out.frame[10 + 4 * want.len()..14 + 4 * want.len()].try_into().unwrap(),
                            );
                            assert_eq!(got, want, "thread {t}, round {round}: {} got another's stack", dsts[i]);
                            assert_ne!(bottom & 0x100, 0, "S set on the last of exactly {} entries", want.len());
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("worker")).sum()
        });
        assert_eq!(checked, 20_000);
    });
}

/// Below `route_cache_min_routes` (the default, 4,096) a family's table is
/// looked up every time; from it on, the cache serves it; below it again, not.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_family_goes_through_the_cache_only_from_its_minimum_table_size() {
    privileged("a_family_goes_through_the_cache_only_from_its_minimum_table_size");
    in_test_run_netns("rcachemin", || {
        // IPv4 under both lookups, and IPv6.
        let fillers =
            |i: u32| -> [String; 2] { [format!("10.{}.{}.0/24", i / 256, i % 256), format!("2001:db8:1:{i:x}::/64")] };
        for (lookup, family) in [(Ipv4Lookup::Dir24_8, 0), (Ipv4Lookup::LpmTrie, 0), (Ipv4Lookup::Dir24_8, 1)] {
            let (prefix, dst, _, _) = FAMILIES[family];
            let enc = Encapsulator::builder().lookup(lookup).load().expect("load");
            let mut desired = lnetd_host_encap::DesiredState::default();
            let mut add = |prefix: String, label: u32| {
                desired.routes.push(lnetd_host_encap::desired::DesiredRoute {
                    prefix,
                    policy: label.to_string(),
                    tc: None,
                    table: None,
                    entropy_label: None,
                    policy_name: None,
                })
            };
            add(prefix.to_string(), 100);
            // The other family's table is big: it does not turn this one's cache on.
            (0..4094).for_each(|i| add(fillers(i)[family].clone(), 16 + i));
            (0..5000).for_each(|i| add(fillers(i)[1 - family].clone(), 16 + i));
            enc.apply(&desired, lnetd_host_encap::ApplyOptions::default()).unwrap();
            let uncached = |what: &str| {
                assert_eq!(label_for(&enc, dst), Some(100), "{lookup}, {prefix}, {what}: labelled");
                foreign_delete(&enc, lookup, prefix);
                assert_eq!(label_for(&enc, dst), None, "{lookup}, {prefix}, {what}: looked up, not cached");
                assert_eq!(enc.diagnostics().repair().unwrap().len(), 1);
            };
            uncached("4,095 routes");
            enc.set_route(Table::Main, &route(&fillers(4094)[family], 99)).unwrap();
            assert_eq!(label_for(&enc, dst), Some(100));
            foreign_delete(&enc, lookup, prefix);
            assert_eq!(label_for(&enc, dst), Some(100), "{lookup}, {prefix}, 4,096 routes: served from the cache");
            assert_eq!(enc.diagnostics().repair().unwrap().len(), 1);
            assert!(enc.remove(Table::Main, fillers(4094)[family].parse().unwrap()).unwrap());
            uncached("4,095 routes again");
        }
    });
}

/// The labels of `dst`'s whole stack (top first), and the TC of the top entry.
#[track_caller]
fn stack_for(enc: &Encapsulator, frame: &[u8]) -> (Vec<u32>, u32) {
    let out = enc.diagnostics().test_run(frame).expect("test run");
    assert_eq!(out.action, XdpAction::Tx);
    let mut labels = vec![];
    for e in out.frame[14..].chunks(4) {
        let e = u32::from_be_bytes(e.try_into().unwrap());
        labels.push(e >> 12);
        if e & 0x100 != 0 {
            break;
        }
    }
    let top = u32::from_be_bytes(out.frame[14..18].try_into().unwrap());
    (labels, (top >> 9) & 7)
}

/// Every kind of way the compact cache holds (route_cache.h): a one-label
/// route inline (with its TC fixed, or from the DSCP), a stack of several
/// entries by its DIR-24-8 value index, a policy by its id. Each is served
/// from the cache (its kernel entry deleted behind the library's back),
/// and each is forgotten at the next change through the library; a route on
/// a policy object follows the object's update at once.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn each_kind_of_cached_route_is_served_whole_and_forgotten_at_a_change() {
    privileged("each_kind_of_cached_route_is_served_whole_and_forgotten_at_a_change");
    in_test_run_netns("rcachekinds", || {
        let labels =
            |l: &[u32]| LabelStack::new(l.iter().map(|&l| Label::new(l).unwrap()).collect::<Vec<_>>()).unwrap();
        let enc = small_table_cached().route_cache(64).load().expect("load");
        let (prefix, dst) = ("198.51.100.0/24", "198.51.100.7");
        let frame = common::frame(dst).dscp(46).build().bytes;
        let cases: Vec<(&str, Route, Vec<u32>, u32)> = vec![
            ("one label", route(prefix, 100), vec![100], 0),
            ("one label, TC from the DSCP", route(prefix, 101).with_tc_from_dscp(), vec![101], 46 >> 3),
            (
                "a stack of three (a value index)",
                Route::new(prefix.parse().unwrap(), labels(&[102, 103, 104])),
                vec![102, 103, 104],
                0,
            ),
            (
                "a stack of two, TC from the DSCP (a value index)",
                Route::new(prefix.parse().unwrap(), labels(&[105, 106])).with_tc_from_dscp(),
                vec![105, 106],
                46 >> 3,
            ),
        ];
        for (what, r, want, tc) in cases {
            enc.set_route(Table::Main, &r).unwrap();
            assert_eq!(stack_for(&enc, &frame), (want.clone(), tc), "{what}: looked up");
            foreign_delete(&enc, Ipv4Lookup::Dir24_8, prefix);
            assert_eq!(stack_for(&enc, &frame), (want, tc), "{what}: served from the cache, whole");
            enc.set_route(Table::Main, &route("203.0.113.0/24", 99)).unwrap();
            assert_eq!(label_for(&enc, dst), None, "{what}: forgotten at the next change");
            assert_eq!(enc.diagnostics().repair().unwrap().len(), 1, "{what}: repaired");
        }

        // A policy object (a way names its id) changed in place: its cached routes follow it at once.
        let named = |p: &str| p.parse::<Policy>().unwrap().with_name("blue").unwrap();
        enc.set_route(Table::Main, &Route::with_policy(prefix.parse().unwrap(), named("200/201"))).unwrap();
        assert_eq!(stack_for(&enc, &frame).0, vec![200, 201]);
        foreign_delete(&enc, Ipv4Lookup::Dir24_8, prefix);
        assert_eq!(stack_for(&enc, &frame).0, vec![200, 201], "served from the cache");
        assert_eq!(enc.diagnostics().repair().unwrap().len(), 1, "repaired");
        assert_eq!(stack_for(&enc, &frame).0, vec![200, 201], "cached again");
        enc.update_policy(&named("202/203/204")).unwrap().expect("the object");
        assert_eq!(stack_for(&enc, &frame).0, vec![202, 203, 204], "the object's update is seen at once");
        assert_eq!(enc.diagnostics().verify().unwrap(), vec![], "kernel and RIB agree");
    });
}

/// An IPv6 stack of several entries has no value index to be named by: it
/// is looked up every time (never stale, never torn), while a one-label
/// IPv6 route beside it is served from the cache.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn ipv6_stacks_of_several_entries_are_looked_up_every_time() {
    privileged("ipv6_stacks_of_several_entries_are_looked_up_every_time");
    in_test_run_netns("rcachev6", || {
        let enc = small_table_cached().route_cache(64).load().expect("load");
        let stack = LabelStack::new(vec![Label::new(300).unwrap(), Label::new(301).unwrap()]).unwrap();
        enc.set_route(Table::Main, &Route::new("2001:db8:1::/48".parse().unwrap(), stack)).unwrap();
        enc.set_route(Table::Main, &route("2001:db8:2::/48", 302)).unwrap();
        let (deep, single) =
            (common::frame("2001:db8:1::7").build().bytes, common::frame("2001:db8:2::7").build().bytes);
        assert_eq!(stack_for(&enc, &deep).0, vec![300, 301]);
        assert_eq!(stack_for(&enc, &single).0, vec![302]);
        foreign_delete(&enc, Ipv4Lookup::Dir24_8, "2001:db8:1::/48");
        foreign_delete(&enc, Ipv4Lookup::Dir24_8, "2001:db8:2::/48");
        assert_eq!(label_for(&enc, "2001:db8:1::7"), None, "not cached: the trie answers");
        assert_eq!(stack_for(&enc, &single).0, vec![302], "cached");
    });
}

/// A cache of 4 entries is one bucket of 4 IPv4 ways, and of 8 one pair of
/// buckets of 2 IPv6 ways each: 4 destinations, each in its own route, all
/// stay in it; a 5th takes one of their ways, and every destination is
/// still answered with its own route.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn one_bucket_holds_four_ipv4_destinations_and_a_pair_four_ipv6() {
    privileged("one_bucket_holds_four_ipv4_destinations_and_a_pair_four_ipv6");
    in_test_run_netns("rcacheways", || {
        type Name = fn(u32) -> String;
        let families: [(u32, Name, Name); 2] = [
            (4, |i| format!("10.{i}.0.0/24"), |i| format!("10.{i}.0.9")),
            (8, |i| format!("2001:db8:{i}::/48"), |i| format!("2001:db8:{i}::9")),
        ];
        for (entries, prefix, dst) in families {
            let enc = small_table_cached().route_cache(entries).load().expect("load");
            (0..5).for_each(|i| enc.set_route(Table::Main, &route(&prefix(i), 100 + i)).unwrap());
            (0..4).for_each(|i| assert_eq!(label_for(&enc, &dst(i)), Some(100 + i)));
            (0..4).for_each(|i| foreign_delete(&enc, Ipv4Lookup::Dir24_8, &prefix(i)));
            for i in 0..4 {
                assert_eq!(label_for(&enc, &dst(i)), Some(100 + i), "{}: in its own way", dst(i));
            }
            // The 5th evicts one of the four (whose route is gone from the kernel table).
            assert_eq!(label_for(&enc, &dst(4)), Some(104));
            let answered: Vec<Option<u32>> = (0..4).map(|i| label_for(&enc, &dst(i))).collect();
            assert_eq!(answered.iter().filter(|a| a.is_none()).count(), 1, "one way was taken: {answered:?}");
            for (i, a) in answered.iter().enumerate() {
                assert!(a.is_none() || *a == Some(100 + i as u32), "{}: its own route or none: {a:?}", dst(i as u32));
            }
            assert_eq!(label_for(&enc, &dst(4)), Some(104), "the 5th is answered");
        }
    });
}

/// Buckets keep the generation's low 32 bits: when those wrap, the cache is
/// emptied, so a bucket left alone across 2^32 changes does not answer again.
/// The generation is moved near the wrap by hand (`route_cache_ctl`).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_bucket_does_not_outlive_the_generation_wrapping() {
    privileged("a_bucket_does_not_outlive_the_generation_wrapping");
    in_test_run_netns("rcachewrap", || {
        let (prefix, dst) = (FAMILIES[0].0, FAMILIES[0].1);
        let enc = small_table_cached().route_cache(64).load().expect("load");
        enc.set_route(Table::Main, &route(prefix, 100)).unwrap();
        let set_generation = |g: u64| {
            let mut ctl = g.to_ne_bytes().to_vec();
            ctl.extend(3u32.to_ne_bytes()); // both families
            ctl.extend(0u32.to_ne_bytes());
            write_map_entry(&enc, "route_cache_ctl", &0u32.to_ne_bytes(), &ctl).unwrap();
        };
        set_generation(5);
        assert_eq!(label_for(&enc, dst), Some(100), "cached under generation 5");
        foreign_delete(&enc, Ipv4Lookup::Dir24_8, prefix);
        assert_eq!(label_for(&enc, dst), Some(100), "served from the cache");
        // As if 2^32 - 6 changes had gone by: the next one wraps the low half.
        set_generation(0xffff_ffff);
        assert_eq!(label_for(&enc, dst), None, "another generation: looked up");
        for i in 0..5 {
            enc.set_route(Table::Main, &route(&format!("203.0.{i}.0/24"), 99)).unwrap();
        }
        // Now at 0x1_0000_0005: the bucket's 5 would match, had it not been emptied.
        assert_eq!(label_for(&enc, dst), None, "no answer from before the wrap");
    });
}

/// A host-address refresh that finds the addresses as they were (any netlink
/// event on the host) writes nothing, so it keeps every cached answer: the
/// route is deleted behind the library's back, and the cache alone still
/// answers after the refresh.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_refresh_that_changes_no_address_keeps_the_cache() {
    privileged("a_refresh_that_changes_no_address_keeps_the_cache");
    in_test_run_netns("rcacherefresh", || {
        let (prefix, dst) = (FAMILIES[0].0, FAMILIES[0].1);
        let enc = small_table_cached().route_cache(64).load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        enc.set_route(Table::Main, &route(prefix, 100)).unwrap();
        assert_eq!(label_for(&enc, dst), Some(100), "cached");
        foreign_delete(&enc, Ipv4Lookup::Dir24_8, prefix);
        for _ in 0..3 {
            enc.refresh_local_addresses().expect("host addresses");
        }
        assert_eq!(label_for(&enc, dst), Some(100), "still served from the cache");
        // A change does move the generation on: the kernel's table answers again.
        enc.set_route(Table::Main, &route("203.0.9.0/24", 99)).unwrap();
        assert_eq!(label_for(&enc, dst), None, "another generation: looked up");
    });
}
