//! The per-CPU route cache in front of the main table's lookup: that it
//! answers (a destination cached before a foreign delete of its route keeps
//! its label until the library changes a table), that every change through
//! the library is seen at once (relabel, delete, a longer prefix added under
//! a shorter one, removed, re-added, a policy), under both IPv4 lookups and
//! for IPv6, and that `route_cache(0)` has none. Frames go through
//! BPF_PROG_TEST_RUN on one CPU (the cache is per CPU): the thread is pinned.

mod common;

use std::net::IpAddr;

use common::{in_test_run_netns, privileged};
use ipnetwork::IpNetwork;
use lnetd_host_encap::testing::{delete_map_entry, write_map_entry};
use lnetd_host_encap::{Encapsulator, Ipv4Lookup, Label, LabelStack, Policy, Route, SegmentList, XdpAction};
use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Keeps every BPF_PROG_TEST_RUN of this thread on one CPU, so one per-CPU cache sees them all.
fn pin_to_one_cpu() {
    let mut set = CpuSet::new();
    set.set(0).expect("CPU 0");
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// The top label the program pushes for a packet to `dst`; `None` when it passes it unlabelled.
fn label_for(enc: &Encapsulator, dst: &str) -> Option<u32> {
    let frame = common::frame(dst).build();
    let out = enc.test_run(&frame.bytes).expect("test run");
    match out.action {
        XdpAction::Tx => {
            let entry: [u8; 4] = out.frame[14..18].try_into().unwrap();
            Some(u32::from_be_bytes(entry) >> 12)
        }
        _ => None,
    }
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
        pin_to_one_cpu();
        for lookup in [Ipv4Lookup::Dir24_8, Ipv4Lookup::LpmTrie] {
            for (prefix, dst, other, longer) in FAMILIES {
                let what = format!("{lookup}, {prefix}");
                let enc = Encapsulator::builder().lookup(lookup).route_cache(64).load().expect("load");
                enc.set_route(&route(prefix, 100)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(100), "{what}: labelled");

                // Served from the cache: the route is gone from the kernel table, the answer is not.
                foreign_delete(&enc, lookup, prefix);
                assert_eq!(label_for(&enc, dst), Some(100), "{what}: a cached destination keeps its route");
                assert_eq!(label_for(&enc, other), None, "{what}: the foreign delete took effect elsewhere");
                // Any change through the library forgets every answer.
                enc.set_route(&route("203.0.113.0/24", 9)).unwrap();
                assert_eq!(label_for(&enc, dst), None, "{what}: after a library change the cache forgot");
                assert_eq!(enc.repair().unwrap().len(), 1, "{what}: repair puts the route back");
                assert_eq!(label_for(&enc, dst), Some(100), "{what}: repaired");

                // Cached, then changed through the library: the change is seen by the next packet.
                assert_eq!(label_for(&enc, dst), Some(100));
                enc.set_route(&route(prefix, 200)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(200), "{what}: relabelled");
                enc.set_route(&route(longer, 300)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(300), "{what}: a longer prefix added under it");
                assert_eq!(label_for(&enc, other), Some(200), "{what}: outside the longer prefix");
                assert!(enc.remove(longer.parse().unwrap()).unwrap());
                assert_eq!(label_for(&enc, dst), Some(200), "{what}: the longer prefix removed");
                enc.set_route(&route(longer, 301)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(301), "{what}: re-added");
                let lists = [400, 401]
                    .map(|l| SegmentList { stack: LabelStack::new(vec![Label::new(l).unwrap()]).unwrap(), weight: 1 });
                let policy = Policy::new(lists.to_vec(), None).unwrap();
                enc.set_route(&Route::with_policy(longer.parse().unwrap(), policy)).unwrap();
                let top = label_for(&enc, dst);
                assert!(matches!(top, Some(400 | 401)), "{what}: made a policy route: {top:?}");
                assert!(enc.remove(longer.parse().unwrap()).unwrap());
                assert!(enc.remove(prefix.parse().unwrap()).unwrap());
                assert_eq!(label_for(&enc, dst), None, "{what}: no stale answer after a delete");
                assert_eq!(enc.verify().unwrap(), vec![], "{what}: kernel and RIB agree");

                // An apply is a change like any other.
                enc.set_route(&route(prefix, 500)).unwrap();
                assert_eq!(label_for(&enc, dst), Some(500));
                let mut desired = lnetd_host_encap::DesiredState::default();
                desired.routes.push(lnetd_host_encap::DesiredRoute {
                    prefix: prefix.into(),
                    policy: "501".into(),
                    tc: None,
                    table: None,
                    entropy_label: None,
                });
                enc.apply(&desired).unwrap();
                assert_eq!(label_for(&enc, dst), Some(501), "{what}: applied");
            }
        }
    });
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn route_cache_zero_has_none() {
    privileged("route_cache_zero_has_none");
    in_test_run_netns("rcacheoff", || {
        pin_to_one_cpu();
        for (prefix, dst, _, _) in FAMILIES {
            let enc = Encapsulator::builder().route_cache(0).load().expect("load");
            enc.set_route(&route(prefix, 100)).unwrap();
            assert_eq!(label_for(&enc, dst), Some(100));
            foreign_delete(&enc, Ipv4Lookup::Dir24_8, prefix);
            assert_eq!(label_for(&enc, dst), None, "{prefix}: without a cache the kernel table answers");
        }
        let enc = Encapsulator::builder().route_cache(3000).load().expect("load");
        let memory: std::collections::BTreeMap<String, u64> =
            enc.map_memory().unwrap().into_iter().map(|(m, b)| (m.to_string(), b)).collect();
        assert!(memory.contains_key("route_cache"), "its memory is reported: {memory:?}");
    });
}

/// Addresses a packet to one of the host's own addresses: local routes are cached like any other.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn host_addresses_stay_unlabelled_through_the_cache() {
    privileged("host_addresses_stay_unlabelled_through_the_cache");
    in_test_run_netns("rcachelocal", || {
        pin_to_one_cpu();
        let enc = Encapsulator::builder().load().expect("load");
        enc.refresh_local_addresses().expect("host addresses");
        enc.set_route(&route("0.0.0.0/0", 100)).unwrap();
        let local: IpAddr = common::LOCAL_V4.parse().unwrap();
        for _ in 0..3 {
            assert_eq!(label_for(&enc, &local.to_string()), None, "never labelled");
            assert_eq!(label_for(&enc, "192.0.2.56"), Some(100));
        }
        assert_eq!(enc.stats().unwrap().local.packets, 3);
    });
}
