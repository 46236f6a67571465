//! Every class of bad input docs/design.md's Bad input table lists that reaches a loaded
//! encapsulator, one row each: the typed error the library gives, and the
//! routes unchanged afterwards. Every value a typed constructor refuses by
//! itself (labels, stacks, policies, prefix text, TC, DSCP table) is in
//! tests/validation.rs, which needs no root; here every row's constructors
//! succeed and the `Encapsulator` call is what refuses.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::privileged;
use lnetd_host_encap::testing::lab::Netns;
use lnetd_host_encap::{
    diagnostics::Probe, encap::TtlMode, errors::AttachError, errors::LoadError, errors::PrefixError,
    errors::RouteError, errors::TestRunError, Encapsulator, Error, IpNetwork, Label, LabelStack, Policy, Route, Table,
    XdpMode,
};

type Attempt = fn(&Encapsulator) -> Result<(), Error>;

struct Row {
    input: &'static str,
    attempt: Attempt,
    expect: fn(&Error) -> bool,
    /// Part of the message a user reads.
    says: &'static str,
}

/// A network as `ipnetwork` parses it: host bits allowed, so the library is
/// what must refuse them.
fn net(s: &str) -> IpNetwork {
    s.parse().expect("test network")
}

fn stack(s: &str) -> LabelStack {
    s.parse().expect("test stack")
}

fn policy(s: &str) -> Policy {
    s.parse().expect("test policy")
}

fn host_bits(e: &Error, meant: &str) -> bool {
    matches!(e, Error::Route(RouteError::Prefix(PrefixError::HostBitsSet { meant: m, .. })) if *m == net(meant))
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            input: "set_label on 10.0.0.1/24 (host bits)",
            attempt: |e| Ok(e.set_route(Table::Main, &Route::new(net("10.0.0.1/24"), Label::new(100)?.into()))?),
            expect: |e| host_bits(e, "10.0.0.0/24"),
            says: "did you mean 10.0.0.0/24?",
        },
        Row {
            input: "set_route of a Route for 10.9.0.1/16 (host bits)",
            attempt: |e| Ok(e.set_route(Table::Main, &Route::new(net("10.9.0.1/16"), stack("100")))?),
            expect: |e| host_bits(e, "10.9.0.0/16"),
            says: "did you mean 10.9.0.0/16?",
        },
        Row {
            input: "set_policy on 2001:db8:5::1/48 (host bits)",
            attempt: |e| {
                Ok(e.set_route(Table::Main, &Route::with_policy(net("2001:db8:5::1/48"), policy("16@1,17@1")))?)
            },
            expect: |e| host_bits(e, "2001:db8:5::/48"),
            says: "did you mean 2001:db8:5::/48?",
        },
        Row {
            input: "set_route_in an alternate table, 10.9.0.1/16 (host bits)",
            attempt: |e| {
                let table = Table::alternate(1).expect("table 1");
                Ok(e.set_route(table, &Route::new(net("10.9.0.1/16"), stack("100")))?)
            },
            expect: |e| host_bits(e, "10.9.0.0/16"),
            says: "did you mean 10.9.0.0/16?",
        },
        Row {
            input: "remove 2001:db8::1/32 (host bits)",
            attempt: |e| Ok(e.remove(Table::Main, net("2001:db8::1/32")).map(drop)?),
            expect: |e| host_bits(e, "2001:db8::/32"),
            says: "did you mean 2001:db8::/32?",
        },
        Row {
            input: "source prefix 10.200.0.1/24 (host bits)",
            attempt: |e| Ok(e.sources().set(net("10.200.0.1/24"), Table::alternate(1).expect("table 1"))?),
            expect: |e| host_bits(e, "10.200.0.0/24"),
            says: "did you mean 10.200.0.0/24?",
        },
        Row {
            input: "remove_source 10.200.0.1/24 (host bits)",
            attempt: |e| Ok(e.sources().remove(net("10.200.0.1/24")).map(drop)?),
            expect: |e| host_bits(e, "10.200.0.0/24"),
            says: "did you mean 10.200.0.0/24?",
        },
        Row {
            input: "host route of the host's own address (127.0.0.1/32)",
            attempt: |e| Ok(e.set_route(Table::Main, &Route::new(net("127.0.0.1/32"), stack("100")))?),
            expect: |e| matches!(e, Error::Route(RouteError::LocalAddress { prefix }) if *prefix == net("127.0.0.1/32")),
            says: "is one of this host's own addresses",
        },
        Row {
            input: "host route of the host's own IPv6 address (::1/128), as a policy",
            attempt: |e| Ok(e.set_route(Table::Main, &Route::with_policy(net("::1/128"), policy("16@1,17@1")))?),
            expect: |e| matches!(e, Error::Route(RouteError::LocalAddress { prefix }) if *prefix == net("::1/128")),
            says: "is one of this host's own addresses",
        },
        Row {
            input: "a route beyond the table's capacity",
            attempt: |e| Ok(e.set_route(Table::Main, &Route::new(net("10.10.0.0/16"), stack("100")))?),
            expect: |e| matches!(e, Error::Route(RouteError::TableFull { family: "IPv4", capacity: 4, knob }) if knob.starts_with("--max-routes-v4")),
            says: "load with a larger capacity: --max-routes-v4",
        },
        Row {
            input: "a policy beyond the policy table's capacity (replacing a plain route)",
            attempt: |e| Ok(e.set_route(Table::Main, &Route::with_policy(net("10.2.0.0/16"), policy("100@1,200@1")))?),
            expect: |e| matches!(e, Error::Route(RouteError::TableFull { family: "policy", capacity: 1, knob }) if knob.starts_with("--max-policies")),
            says: "is full",
        },
        Row {
            input: "a 4000-byte frame to test_run",
            attempt: |e| Ok(e.diagnostics().test_run(&[0u8; 4000]).map(drop)?),
            expect: |e| matches!(e, Error::TestRun(TestRunError::FrameTooLarge { len: 4000, .. })),
            says: "too large for BPF_PROG_TEST_RUN",
        },
        Row {
            input: "explain a probe with DSCP 64 (Probe builder)",
            attempt: |e| e.explain(&Probe::udp("10.0.0.1".parse().expect("ip")).dscp(64)).map(drop),
            expect: |e| matches!(e, Error::Route(RouteError::Invalid(d)) if d.what == "probe"),
            says: "DSCP 64 is out of range (0..=63)",
        },
        Row {
            input: "explain a probe from an IPv6 source to an IPv4 destination",
            attempt: |e| {
                let probe = Probe::tcp("10.0.0.1".parse().expect("ip")).from("2001:db8::1".parse().expect("ip"));
                e.explain(&probe).map(drop)
            },
            expect: |e| matches!(e, Error::Route(RouteError::Invalid(d)) if d.what == "probe"),
            says: "are of different families",
        },
        Row {
            input: "attach to a missing interface",
            attempt: |e| Ok(e.attach("nope0", XdpMode::Auto).map(drop)?),
            expect: |e| matches!(e, Error::Attach(AttachError::NoSuchInterface { .. })),
            says: "no interface named \"nope0\"",
        },
        Row {
            input: "native XDP on a device without it (lo)",
            attempt: |e| Ok(e.attach("lo", XdpMode::Native).map(drop)?),
            expect: |e| matches!(e, Error::Attach(AttachError::ModeUnsupported { .. })),
            says: "use generic or auto mode (`--mode generic`, XdpMode::Generic)",
        },
    ]
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn every_bad_input_gets_its_error_and_changes_nothing() {
    privileged("every_bad_input_gets_its_error_and_changes_nothing");
    let ns = Netns::new("bad").expect("namespace");
    let failures = ns
        .run(|| {
            // IPv4 capacity 4: three routes and the loopback's 127.0.0.1; policy
            // capacity 1, taken by 2001:db8:1::/48.
            let enc = Encapsulator::builder().max_routes(4, 4).max_policies(1).load().expect("load");
            enc.set_route(Table::Main, &Route::new(net("10.0.0.0/8"), stack("100/200"))).unwrap();
            enc.set_route(Table::Main, &Route::new(net("10.1.0.0/16"), stack("300"))).unwrap();
            enc.set_route(Table::Main, &Route::new(net("2001:db8::/32"), stack("400"))).unwrap();
            enc.set_route(Table::Main, &Route::with_policy(net("2001:db8:1::/48"), policy("16@1,17@1"))).unwrap();
            enc.refresh_local_addresses().unwrap();
            enc.set_route(Table::Main, &Route::new(net("10.2.0.0/16"), stack("500"))).unwrap();
            let before = enc.routes(Table::Main).unwrap();
            let sources = enc.sources().list();
            let alternate = || enc.routes(Table::alternate(1).expect("table 1")).unwrap();
            assert!(alternate().is_empty());
            assert_eq!(before.len(), 5, "the rows start from these routes: {before:?}");
            let mut failures = Vec::new();
            for row in rows() {
                match (row.attempt)(&enc) {
                    Ok(()) => failures.push(format!("{}: accepted", row.input)),
                    Err(e) if !(row.expect)(&e) => failures.push(format!("{}: wrong error {e:#?}", row.input)),
                    Err(e) if !e.to_string().contains(row.says) => {
                        failures.push(format!("{}: message {:?} lacks {:?}", row.input, e.to_string(), row.says))
                    }
                    Err(_) => {}
                }
                if enc.routes(Table::Main).unwrap() != before {
                    failures.push(format!("{}: routes changed", row.input));
                }
                if enc.sources().list() != sources || !alternate().is_empty() {
                    failures.push(format!("{}: source prefixes or the alternate table changed", row.input));
                }
            }
            failures
        })
        .expect("enter namespace");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn impossible_configurations_get_load_errors() {
    privileged("impossible_configurations_get_load_errors");
    let ttl0 = Encapsulator::builder().ttl_mode(TtlMode::Fixed(0)).load().unwrap_err();
    assert!(matches!(ttl0, LoadError::Config(_)) && ttl0.to_string().contains("1..=255"), "{ttl0}");
    let cap0 = Encapsulator::builder().max_routes(0, 1).load().unwrap_err();
    assert!(matches!(cap0, LoadError::Config(_)) && cap0.to_string().contains("at least 1"), "{cap0}");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn auto_falls_back_to_generic_where_native_is_missing() {
    privileged("auto_falls_back_to_generic_where_native_is_missing");
    let ns = Netns::new("auto").expect("namespace");
    let mode = ns.run(|| Encapsulator::builder().attach("lo", XdpMode::Auto).map(|e| e.attachment())).unwrap();
    assert_eq!(mode.expect("attach").map(|a| a.mode), Some(lnetd_host_encap::encap::AttachedMode::Generic));
}

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("examples/static_bsid")
}

#[test]
fn bad_example_arguments_are_refused_with_a_reason() {
    let rows: [(&[&str], &str); 17] = [
        (&["--route", "10.0.0.0/8=100@0"], "weight 0"),
        (&["--route", "10.0.0.0/8=100@x"], "\"100@x\" is not a list of segment lists: segment list 0, \"100@x\""),
        (&["--route", "10.0.0.0/8=16001@7,,16003"], "segment list 1, \"\", has no labels"),
        (&["--route", "10.0.0.0/8=16,17,18,19,20,21,22,23,24"], "1 to 8 segment lists"),
        (&["--entropy-label=0"], "N >= 1"),
        (&["--tc", "9"], "the TC field is 3 bits (0..=7)"),
        (&["--tc", "x"], "\"x\" is not a traffic class: expected 0..=7, or `dscp`"),
        (&["--tc", "DSCP"], "\"DSCP\" is not a traffic class"),
        (
            &["--route", "10.0.0.0/8=16/17/18/19/20/21/22/23/24/25/26/27/28/29/30", "--entropy-label"],
            "entropy label pair",
        ),
        (&["--route", "10.0.0.0/8"], "expected PREFIX=LABEL"),
        (&["--route", "10.0.0.1/8=100"], "did you mean 10.0.0.0/8?"),
        (&["--route", "10.0.0.0/8=3"], "Implicit NULL"),
        (&["--route", "10.0.0.0/8=100//200"], "\"100//200\" is not a label stack: label 2 of 3 is empty"),
        (&["--ttl", "0"], "expected copy or a TTL of 1..=255"),
        (&["--mode", "fast"], "expected native, generic or auto"),
        (&["--label", "2000000", "--iface", "nope0"], "out of range"),
        (&["--label", "x"], "invalid value 'x'"),
    ];
    let bin = example();
    assert!(bin.exists(), "cargo test builds the example: {}", bin.display());
    for (args, says) in rows {
        let out = Command::new(&bin).args(args).output().expect("run the example");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr:?} lacks {says:?}");
    }
}
