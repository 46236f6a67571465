//! Shared policy objects (docs/policy-objects.md): routes whose policy has
//! one name point at one policy entry; changing it is one write to the
//! policy table, the routes' entries stay byte for byte, and every route's
//! packets take the new lists (or go unlabelled while it is invalid).

mod common;

use common::{frame, in_netns, privileged, L4};
use lnetd_host_encap::testing::map_entries;
use lnetd_host_encap::Table;
use lnetd_host_encap::{
    diagnostics::XdpAction, encap::Ipv4Lookup, errors::RouteError, labels::decode_stack, routes::Tc, DesiredState,
    Encapsulator, Policy, Route,
};

const ROUTES: u32 = 1_000;

fn prefix(i: u32) -> String {
    format!("10.{}.{}.0/24", i / 256, i % 256)
}

fn named(lists: &str, name: &str) -> Policy {
    lists.parse::<Policy>().unwrap().with_name(name).unwrap()
}

/// The top label of a few flows toward route `i`'s prefix (`None`: unlabelled).
fn tops(enc: &Encapsulator, i: u32) -> Vec<Option<u32>> {
    (0..8u16)
        .map(|f| {
            let dst = format!("10.{}.{}.7", i / 256, i % 256);
            let run = enc
                .diagnostics()
                .test_run(&frame(&dst).l4(L4::Udp { sport: 2000 + f, dport: 443 }).build().bytes)
                .unwrap();
            match run.action {
                XdpAction::Tx => Some(decode_stack(&run.frame[14..]).expect("labels").0[0].label),
                XdpAction::Pass => None,
                other => panic!("route {i}: {other:?}"),
            }
        })
        .collect()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_named_policy_change_is_one_write_and_every_route_follows() {
    privileged("a_named_policy_change_is_one_write_and_every_route_follows");
    in_netns("objects", |_| {
        let enc = Encapsulator::builder().lookup(Ipv4Lookup::LpmTrie).load().expect("load");
        let blue = named("16001/100@1,16002/100@1", "blue");
        for i in 0..ROUTES {
            enc.set_route(Table::Main, &Route::with_policy(prefix(i).parse().unwrap(), blue.clone())).unwrap();
        }
        let routes_before = map_entries(&enc, "routes_v4").unwrap();
        let policies_before = map_entries(&enc, "policies").unwrap();
        assert_eq!(routes_before.len(), ROUTES as usize);
        assert_eq!(policies_before.len(), 1, "{ROUTES} routes, one policy object");
        for i in [0, 499, ROUTES - 1] {
            assert!(tops(&enc, i).iter().all(|t| matches!(t, Some(16001 | 16002))), "route {i} before");
        }

        // A preference switch: other lists, one write.
        let update = enc.update_policy(&named("17001/200@3,17002/200@1", "blue")).unwrap().expect("the object");
        assert_eq!((update.routes, update.map_operations), (ROUTES as usize, 1));
        assert_eq!(map_entries(&enc, "routes_v4").unwrap(), routes_before, "no route entry was rewritten");
        let policies_after = map_entries(&enc, "policies").unwrap();
        assert_eq!(policies_after.len(), 1);
        assert_eq!(policies_after[0].0, policies_before[0].0, "the same object id");
        assert_ne!(policies_after[0].1, policies_before[0].1, "its content rewritten");
        for i in 0..ROUTES {
            let got = tops(&enc, i);
            assert!(got.iter().all(|t| matches!(t, Some(17001 | 17002))), "route {i} after the switch: {got:?}");
        }
        assert!(enc.diagnostics().verify().unwrap().is_empty(), "{:?}", enc.diagnostics().verify());
        let state = enc.desired_state();
        assert!(state
            .routes
            .iter()
            .all(|r| r.policy == "17001/200@3,17002/200@1" && r.policy_name.as_deref() == Some("blue")));

        // Invalid: every route unlabelled, still one write; valid again: labelled.
        let update = enc.update_policy(&Policy::invalid("blue").unwrap()).unwrap().unwrap();
        assert_eq!(update.map_operations, 1);
        for i in [0, 500, ROUTES - 1] {
            assert!(tops(&enc, i).iter().all(Option::is_none), "route {i} while invalid");
        }
        assert_eq!(map_entries(&enc, "routes_v4").unwrap(), routes_before);
        enc.update_policy(&named("18001", "blue")).unwrap();
        assert!(tops(&enc, 3).iter().all(|t| *t == Some(18001)));
        assert!(enc.diagnostics().verify().unwrap().is_empty());
        assert!(enc.update_policy(&named("16", "nobody")).unwrap().is_none(), "no route, no object");
        assert!(matches!(enc.update_policy(&"100".parse().unwrap()), Err(RouteError::PolicyObject { .. })));
    });
}

fn state(lists: &str, name: &str, routes: u32) -> DesiredState {
    let routes: Vec<String> = (0..routes)
        .map(|i| format!(r#"{{"prefix":"{}","policy":"{lists}","policy_name":"{name}"}}"#, prefix(i)))
        .collect();
    DesiredState::from_json(&format!(r#"{{"routes":[{}]}}"#, routes.join(","))).unwrap()
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn an_apply_changing_a_named_policy_writes_it_once_and_round_trips() {
    privileged("an_apply_changing_a_named_policy_writes_it_once_and_round_trips");
    in_netns("objects", |_| {
        let enc = Encapsulator::builder().lookup(Ipv4Lookup::LpmTrie).max_policies(4).load().expect("load");
        let report =
            enc.apply(state("16001@1,16002@1", "green", ROUTES), lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!(report.map_operations, ROUTES as usize + 1, "the routes and one policy: {report}");
        let routes_before = map_entries(&enc, "routes_v4").unwrap();
        let report = enc
            .apply(state("16003@1,16004@1,16005@2", "green", ROUTES), lnetd_host_encap::ApplyOptions::default())
            .unwrap();
        assert_eq!(report.map_operations, 1, "one policy write: {report}");
        assert_eq!(report.replaced.len(), ROUTES as usize);
        assert_eq!(map_entries(&enc, "routes_v4").unwrap(), routes_before);
        assert!(tops(&enc, 42).iter().all(|t| matches!(t, Some(16003..=16005))));
        // What routes --json prints, apply takes back unchanged.
        let export = serde_json::to_string(&enc.desired_state()).unwrap();
        assert!(export.contains(r#""policy_name":"green""#), "{export}");
        let back =
            enc.apply(DesiredState::from_json(&export).unwrap(), lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!((back.map_operations, back.unchanged), (0, ROUTES as usize), "{back}");
        // A traffic class kind change takes a fresh object; the old one is retired.
        let mut dscp = state("16003@1,16004@1,16005@2", "green", ROUTES);
        dscp.routes.iter_mut().for_each(|r| r.tc = Some("dscp".into()));
        enc.apply(&dscp, lnetd_host_encap::ApplyOptions::default()).unwrap();
        assert_eq!(enc.routes(Table::Main).unwrap()[0].tc, Tc::FromDscp);
        assert!(enc.diagnostics().verify().unwrap().is_empty());
        // One route cannot take the name back to a fixed traffic class under
        // the others: refused before any write, and nothing moves.
        let mut one = enc.routes(Table::Main).unwrap()[0].clone();
        one.tc = Tc::default();
        let before = map_entries(&enc, "policies").unwrap();
        assert!(matches!(enc.set_route(Table::Main, &one), Err(RouteError::PolicyObject { .. })));
        assert_eq!(map_entries(&enc, "policies").unwrap(), before);
        assert!(enc.routes(Table::Main).unwrap().iter().all(|r| r.tc == Tc::FromDscp));
        // Everything gone: the objects leave after their grace period (max_policies 4 never fills).
        for round in 0..3 {
            enc.apply(DesiredState::default(), lnetd_host_encap::ApplyOptions::default()).unwrap();
            enc.apply(state("20001", &format!("n{round}"), 10), lnetd_host_encap::ApplyOptions::default()).unwrap();
        }
        assert!(enc.diagnostics().verify().unwrap().is_empty());
    });
}

#[test]
fn one_name_with_two_contents_is_refused_with_what_to_do() {
    let text = r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"100","policy_name":"red"},
        {"prefix":"10.1.0.0/16","policy":"200","policy_name":"red"}]}"#;
    let err = DesiredState::from_json(text).unwrap().validate().unwrap_err();
    assert!(err.to_string().contains("\"red\"") && err.to_string().contains("different names"), "{err}");
    let invalid = r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"invalid","policy_name":"red"}]}"#;
    let valid = DesiredState::from_json(invalid).unwrap().validate().unwrap();
    assert!(!valid.routes().values().next().unwrap().policy.is_valid());
    let unnamed = r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"invalid"}]}"#;
    assert!(DesiredState::from_json(unnamed).unwrap().validate().is_err(), "invalid needs a name");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn objects_survive_adoption_and_a_change_is_one_small_journal_record() {
    privileged("objects_survive_adoption_and_a_change_is_one_small_journal_record");
    use lnetd_host_encap::testing::lab::VethLab;
    use lnetd_host_encap::XdpMode;
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    lab.host
        .run(|| {
            let enc = Encapsulator::builder().pinned().attach(VethLab::HOST_IF, XdpMode::Generic).expect("attach");
            let red = named("16001@1,16002@1", "red");
            for i in 0..200 {
                enc.set_route(Table::Main, &Route::with_policy(prefix(i).parse().unwrap(), red.clone())).unwrap();
            }
            let pins = enc.diagnostics().pin_dir().unwrap();
            let state = std::path::PathBuf::from(lnetd_host_encap::pins::DEFAULT_STATE_ROOT)
                .join(pins.parent().unwrap().file_name().unwrap())
                .join(pins.file_name().unwrap());
            let journal = state.join("rib.journal");
            let before = std::fs::metadata(&journal).unwrap().len();
            let down = named("16001@1,16002@1", "red").with_lists_down(&[true]).unwrap();
            assert_eq!(enc.update_policy(&down).unwrap().unwrap().map_operations, 1);
            let grown = std::fs::metadata(&journal).unwrap().len() - before;
            assert!(grown < 256, "a content change of 200 routes' object appended {grown} bytes");
            let desired = enc.desired_state();
            let counters = enc.route_counters(Table::Main, prefix(7).parse().unwrap()).unwrap().unwrap();
            assert_eq!(counters.lists.len(), 2, "the object's lists");
            drop(enc);

            // Format 5 read back: the name, the lists out of service, the object, its routes.
            let enc = Encapsulator::open(VethLab::HOST_IF).expect("adopt");
            assert_eq!(enc.desired_state(), desired);
            assert_eq!(enc.diagnostics().verify().unwrap(), vec![]);
            assert!(tops(&enc, 5).iter().all(|t| *t == Some(16002)), "list 0 is out of service");
            let update = enc.update_policy(&red).unwrap().unwrap();
            assert_eq!((update.routes, update.map_operations), (200, 1), "its routes were counted back");
            for i in 0..200 {
                enc.remove(Table::Main, prefix(i).parse().unwrap()).unwrap();
            }
            assert!(enc.update_policy(&red).unwrap().is_none(), "the last route took the object with it");
            enc.detach().unwrap();
        })
        .unwrap();
}

/// The command, in `ns`, on the lab's interface.
fn command(ns: &lnetd_host_encap::testing::lab::Netns, args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg(env!("CARGO_BIN_EXE_lnetd-host-encap"))
        .args(["-i", lnetd_host_encap::testing::lab::VethLab::HOST_IF])
        .args(args)
        .output()
        .expect("run lnetd-host-encap");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_commands_export_of_named_routes_applies_back_unchanged() {
    privileged("the_commands_export_of_named_routes_applies_back_unchanged");
    use lnetd_host_encap::testing::lab::VethLab;
    let lab = VethLab::new().expect("lab");
    let _pins = common::PinGuard(&lab.host, VethLab::HOST_IF);
    let dir = std::env::temp_dir().join(format!("lhe-objects-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (file, export_file) = (dir.join("named.json"), dir.join("export.json"));
    std::fs::write(
        &file,
        r#"{"routes": [
            {"prefix": "198.51.100.0/24", "policy": "16001/16002@7,16003@3", "policy_name": "blue"},
            {"prefix": "203.0.113.0/24", "policy": "16001/16002@7,16003@3", "policy_name": "blue"},
            {"prefix": "192.0.2.0/24", "policy": "invalid", "policy_name": "gone"},
            {"prefix": "192.0.2.128/25", "policy": "invalid drop", "policy_name": "gone, dropping"},
            {"prefix": "10.0.0.0/8", "policy": "17001"}
        ]}"#,
    )
    .unwrap();
    command(&lab.host, &["attach", "--mode", "generic"]);
    command(&lab.host, &["apply", file.to_str().unwrap()]);
    let export = command(&lab.host, &["routes", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&export).unwrap();
    let names: Vec<Option<&str>> = v["routes"].as_array().unwrap().iter().map(|r| r["policy_name"].as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == Some("blue")).count(), 2, "{export}");
    let policies: Vec<&str> = v["routes"].as_array().unwrap().iter().filter_map(|r| r["policy"].as_str()).collect();
    assert!(policies.contains(&"invalid") && policies.contains(&"invalid drop"), "{export}");
    std::fs::write(&export_file, &export).unwrap();
    let plan = command(&lab.host, &["apply", export_file.to_str().unwrap(), "--dry-run"]);
    assert!(plan.contains("0 added, 0 replaced, 0 removed, "), "{plan}");
    command(&lab.host, &["detach"]);
    let _ = std::fs::remove_dir_all(&dir);
}
