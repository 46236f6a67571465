//! Every class of bad input the README's table lists, one row each: the
//! typed error it gets, and the routes unchanged afterwards.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::privileged;
use lnetd_host_encap::lab::Netns;
use lnetd_host_encap::{
    prefix, AttachError, DscpMap, Encapsulator, EntropyLabel, Error, Label, LabelError, LabelStack, LoadError, Policy,
    PolicyError, PrefixError, Route, RouteError, Table, TestRunError, TrafficClass, TtlMode, XdpMode,
};

type Attempt = fn(&Encapsulator) -> Result<(), Error>;

struct Row {
    input: &'static str,
    attempt: Attempt,
    expect: fn(&Error) -> bool,
    /// Part of the message a user reads.
    says: &'static str,
}

fn route(p: &str, s: &str) -> Result<Route, Error> {
    Ok(Route::new(prefix::parse(p)?, s.parse::<LabelStack>()?))
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            input: "label 1048576",
            attempt: |e| Ok(e.set_label(prefix::parse("10.9.0.0/16")?, Label::new(1_048_576)?)?),
            expect: |e| matches!(e, Error::Label(LabelError::OutOfRange { value: 1_048_576 })),
            says: "0..=1048575",
        },
        Row {
            input: "label 3 (implicit null)",
            attempt: |e| Ok(e.set_label(prefix::parse("10.9.0.0/16")?, Label::new(3)?)?),
            expect: |e| matches!(e, Error::Label(LabelError::SpecialPurpose { value: 3, .. })),
            says: "Implicit NULL",
        },
        Row {
            input: "label 7 (ELI) inside a stack",
            attempt: |e| Ok(e.set_route(&route("10.9.0.0/16", "100/7/200")?)?),
            expect: |e| matches!(e, Error::Label(LabelError::SpecialPurpose { value: 7, .. })),
            says: "Entropy Label Indicator",
        },
        Row {
            input: "label text `abc`",
            attempt: |e| Ok(e.set_route(&route("10.9.0.0/16", "abc")?)?),
            expect: |e| matches!(e, Error::Label(LabelError::Parse { .. })),
            says: "not a label",
        },
        Row {
            input: "empty stack",
            attempt: |e| Ok(e.set_labels(prefix::parse("10.9.0.0/16")?, LabelStack::new(vec![])?)?),
            expect: |e| matches!(e, Error::Label(LabelError::EmptyStack)),
            says: "at least one label",
        },
        Row {
            input: "17 labels",
            attempt: |e| Ok(e.set_route(&route("10.9.0.0/16", &["100"; 17].join("/"))?)?),
            expect: |e| matches!(e, Error::Label(LabelError::StackTooDeep { depth: 17, max: 16 })),
            says: "at most 16",
        },
        Row {
            input: "stack text `100//200`",
            attempt: |e| Ok(e.set_route(&route("10.9.0.0/16", "100//200")?)?),
            expect: |e| matches!(e, Error::Label(LabelError::Parse { .. })),
            says: "not a label",
        },
        Row {
            input: "traffic class 8",
            attempt: |e| Ok(e.set_route(&route("10.9.0.0/16", "100")?.with_tc(TrafficClass::new(8)?))?),
            expect: |e| matches!(e, Error::Label(LabelError::TrafficClassOutOfRange { value: 8 })),
            says: "0..=7",
        },
        Row {
            input: "policy weight 0",
            attempt: |e| Ok(e.set_policy(prefix::parse("10.9.0.0/16")?, "100@7,200@0".parse::<Policy>()?)?),
            expect: |e| matches!(e, Error::Policy(PolicyError::ZeroWeight { index: 1 })),
            says: "weight 0",
        },
        Row {
            input: "policy of 9 segment lists",
            attempt: |e| {
                Ok(e.set_policy(prefix::parse("10.9.0.0/16")?, "16,17,18,19,20,21,22,23,24".parse::<Policy>()?)?)
            },
            expect: |e| matches!(e, Error::Policy(PolicyError::ListCount { count: 9, .. })),
            says: "1 to 8 segment lists",
        },
        Row {
            input: "entropy label on a 15-label list",
            attempt: |e| {
                let p: Policy = ["100"; 15].join("/").parse()?;
                Ok(e.set_policy(prefix::parse("10.9.0.0/16")?, p.with_entropy_label(Some(EntropyLabel::Bottom))?)?)
            },
            expect: |e| matches!(e, Error::Policy(PolicyError::TooDeepForEntropyLabel { labels: 15, .. })),
            says: "entropy label pair",
        },
        Row {
            input: "entropy label on top (N = 0)",
            attempt: |e| {
                let p: Policy = "100/200".parse()?;
                Ok(e.set_policy(prefix::parse("10.9.0.0/16")?, p.with_entropy_label(Some(EntropyLabel::After(0)))?)?)
            },
            expect: |e| matches!(e, Error::Policy(PolicyError::EntropyLabelOnTop { .. })),
            says: "N >= 1",
        },
        Row {
            input: "source prefix with host bits",
            attempt: |e| Ok(e.set_source("10.200.0.1/24".parse().unwrap(), Table::alternate(1).unwrap())?),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::HostBitsSet { .. }))),
            says: "did you mean 10.200.0.0/24?",
        },
        Row {
            input: "DSCP table value 8",
            attempt: |e| Ok(e.set_dscp_map(&DscpMap::new([8; 64])?)?),
            expect: |e| matches!(e, Error::Label(LabelError::TrafficClassOutOfRange { value: 8 })),
            says: "0..=7",
        },
        Row {
            input: "prefix 10.0.0.1/24 (host bits)",
            attempt: |e| Ok(e.set_label("10.0.0.1/24".parse().unwrap(), Label::new(100)?)?),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::HostBitsSet { .. }))),
            says: "did you mean 10.0.0.0/24?",
        },
        Row {
            input: "prefix 2001:db8::1/32 (host bits)",
            attempt: |e| Ok(e.remove("2001:db8::1/32".parse().unwrap()).map(|_| ())?),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::HostBitsSet { .. }))),
            says: "did you mean 2001:db8::/32?",
        },
        Row {
            input: "prefix 10.0.0.0/33",
            attempt: |e| Ok(e.set_route(&route("10.0.0.0/33", "100")?)?),
            expect: |e| matches!(e, Error::Prefix(PrefixError::Parse { .. })),
            says: "is not a prefix",
        },
        Row {
            input: "prefix `ten`",
            attempt: |e| Ok(e.set_route(&route("ten", "100")?)?),
            expect: |e| matches!(e, Error::Prefix(PrefixError::Parse { .. })),
            says: "is not a prefix",
        },
        Row {
            input: "host route of the host's own address (127.0.0.1/32)",
            attempt: |e| Ok(e.set_route(&route("127.0.0.1/32", "100")?)?),
            expect: |e| matches!(e, Error::Route(RouteError::LocalAddress { .. })),
            says: "own addresses",
        },
        Row {
            input: "a route beyond the table's capacity",
            attempt: |e| Ok(e.set_route(&route("10.10.0.0/16", "100")?)?),
            expect: |e| matches!(e, Error::Route(RouteError::TableFull { family: "IPv4", capacity: 4 })),
            says: "is full",
        },
        Row {
            input: "a 4000-byte frame to test_run",
            attempt: |e| Ok(e.test_run(&[0u8; 4000]).map(|_| ())?),
            expect: |e| matches!(e, Error::TestRun(TestRunError::FrameTooLarge { len: 4000, .. })),
            says: "too large",
        },
        Row {
            input: "attach to a missing interface",
            attempt: |e| Ok(e.attach("nope0", XdpMode::Auto).map(|_| ())?),
            expect: |e| matches!(e, Error::Attach(AttachError::NoSuchInterface { .. })),
            says: "no interface named \"nope0\"",
        },
        Row {
            input: "native XDP on a device without it (lo)",
            attempt: |e| Ok(e.attach("lo", XdpMode::Native).map(|_| ())?),
            expect: |e| matches!(e, Error::Attach(AttachError::ModeUnsupported { .. })),
            says: "use XdpMode::Generic or XdpMode::Auto",
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
            // Capacity 4: two routes, and the host's two loopback addresses after attach.
            let enc = Encapsulator::builder().max_routes(4, 4).load().expect("load");
            enc.set_labels("10.0.0.0/8".parse().unwrap(), "100/200".parse().unwrap()).unwrap();
            enc.set_labels("10.1.0.0/16".parse().unwrap(), "300".parse().unwrap()).unwrap();
            enc.set_labels("2001:db8::/32".parse().unwrap(), "400".parse().unwrap()).unwrap();
            enc.refresh_local_addresses().unwrap();
            enc.set_labels("10.2.0.0/16".parse().unwrap(), "500".parse().unwrap()).unwrap();
            let before = enc.routes().unwrap();
            let mut failures = Vec::new();
            for row in rows() {
                match (row.attempt)(&enc) {
                    Ok(()) => failures.push(format!("{}: accepted", row.input)),
                    Err(e) if !(row.expect)(&e) => failures.push(format!("{}: wrong error {e:?}", row.input)),
                    Err(e) if !e.to_string().contains(row.says) => {
                        failures.push(format!("{}: message {:?} lacks {:?}", row.input, e.to_string(), row.says))
                    }
                    Err(_) => {}
                }
                if enc.routes().unwrap() != before {
                    failures.push(format!("{}: routes changed", row.input));
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
    assert_eq!(mode.expect("attach").map(|a| a.mode), Some(lnetd_host_encap::AttachedMode::Generic));
}

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|d| d.parent()).expect("target dir").join("examples/static_bsid")
}

#[test]
fn bad_example_arguments_are_refused_with_a_reason() {
    let rows: [(&[&str], &str); 15] = [
        (&["--route", "10.0.0.0/8=100@0"], "weight 0"),
        (&["--route", "10.0.0.0/8=100@x"], "is not a list of segment lists"),
        (&["--route", "10.0.0.0/8=16,17,18,19,20,21,22,23,24"], "1 to 8 segment lists"),
        (&["--entropy-label=0"], "N >= 1"),
        (&["--tc", "9"], "the TC field is 3 bits (0..=7)"),
        (&["--tc", "x"], "expected a traffic class 0..=7 or `dscp`"),
        (
            &["--route", "10.0.0.0/8=16/17/18/19/20/21/22/23/24/25/26/27/28/29/30", "--entropy-label"],
            "entropy label pair",
        ),
        (&["--route", "10.0.0.0/8"], "expected PREFIX=LABEL"),
        (&["--route", "10.0.0.1/8=100"], "did you mean 10.0.0.0/8?"),
        (&["--route", "10.0.0.0/8=3"], "Implicit NULL"),
        (&["--route", "10.0.0.0/8=100//200"], "not a label"),
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
