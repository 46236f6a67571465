//! The typed constructors refuse bad values themselves, before any table or
//! kernel is involved: one row per class of bad input in docs/design.md's Bad input table
//! that fails in `Label::new`, a stack, policy or prefix parse, `Policy::new`,
//! `TrafficClass::new` or `DscpMap::new`, with the specific error variant and
//! what its message says. Pure: no root, no BPF. The refusals that need a
//! loaded encapsulator (and the routes-unchanged check) are in bad_input.rs.

use lnetd_host_encap::{
    errors::LabelError, errors::PolicyError, errors::PrefixError, errors::RouteError, labels::DscpMap,
    labels::EntropyLabel, labels::SegmentList, labels::TrafficClass, labels::MAX_SEGMENT_LISTS, routes::prefix,
    routes::Tc, Error, IpNetwork, Label, LabelStack, Policy, Route, Table,
};

struct Row {
    input: &'static str,
    /// The constructor call alone.
    attempt: fn() -> Result<(), Error>,
    /// The specific variant, with its fields.
    expect: fn(&Error) -> bool,
    /// Parts of the message a user reads.
    says: &'static [&'static str],
}

fn net(s: &str) -> IpNetwork {
    s.parse().expect("test network")
}

fn stack(labels: &[u32]) -> LabelStack {
    LabelStack::new(labels.iter().map(|&v| Label::new(v).expect("test label")).collect::<Vec<_>>()).expect("stack")
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            input: "label 1048576",
            attempt: || Label::new(1_048_576).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::OutOfRange { value: 1_048_576 }))),
            says: &["label 1048576", "MPLS labels are 0..=1048575 (20 bits)"],
        },
        Row {
            input: "label text `1048576`",
            attempt: || "1048576".parse::<Label>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::OutOfRange { value: 1_048_576 }))),
            says: &["0..=1048575"],
        },
        Row {
            input: "label text `abc`",
            attempt: || "abc".parse::<Label>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::Parse { input })) if input == "abc"),
            says: &["\"abc\" is not a label or a label stack"],
        },
        Row {
            input: "label text `-1`",
            attempt: || "-1".parse::<Label>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::Parse { input })) if input == "-1"),
            says: &["is not a label or a label stack"],
        },
        Row {
            input: "stack text `abc`",
            attempt: || "abc".parse::<LabelStack>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::Parse { input })) if input == "abc"),
            says: &["is not a label or a label stack", "expected e.g. `1000000` or `16001/16002`"],
        },
        Row {
            input: "stack text `100//200`",
            attempt: || "100//200".parse::<LabelStack>().map(drop).map_err(Error::from),
            // The whole text, and which label of it is wrong.
            expect: |e| {
                matches!(e, Error::Route(RouteError::Label(LabelError::StackParse { input, position: 2, part }))
                    if input == "100//200" && part.is_empty())
            },
            says: &["\"100//200\" is not a label stack: label 2 of 3 is empty", "e.g. `16001/16002`"],
        },
        Row {
            input: "stack text `16001/16002/x`",
            attempt: || "16001/16002/x".parse::<LabelStack>().map(drop).map_err(Error::from),
            expect: |e| {
                matches!(e, Error::Route(RouteError::Label(LabelError::StackParse { input, position: 3, part }))
                    if input == "16001/16002/x" && part == "x")
            },
            says: &["\"16001/16002/x\" is not a label stack: label 3 of 3, \"x\", is not a label (a number 0..=1048575)"],
        },
        Row {
            input: "stack text `/16001` (leading slash)",
            attempt: || "/16001".parse::<LabelStack>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::StackParse { position: 1, .. }))),
            says: &["\"/16001\" is not a label stack: label 1 of 2 is empty"],
        },
        Row {
            input: "label 7 (ELI) inside a stack `100/7/200`",
            attempt: || "100/7/200".parse::<LabelStack>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::SpecialPurpose { value: 7, .. }))),
            says: &["Entropy Label Indicator", "use a label of 16 or above"],
        },
        Row {
            input: "empty stack",
            attempt: || LabelStack::new(vec![]).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::EmptyStack))),
            says: &["needs at least one label"],
        },
        Row {
            input: "17 labels (text)",
            attempt: || ["100"; 17].join("/").parse::<LabelStack>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::StackTooDeep { depth: 17, max: 16 }))),
            says: &["17 labels", "at most 16 are pushed"],
        },
        Row {
            input: "17 labels (LabelStack::new)",
            attempt: || LabelStack::new(vec![Label::new(100).unwrap(); 17]).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::StackTooDeep { depth: 17, max: 16 }))),
            says: &["at most 16 are pushed"],
        },
        Row {
            input: "traffic class 8",
            attempt: || TrafficClass::new(8).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::TrafficClassOutOfRange { value: 8 }))),
            says: &["traffic class 8", "the TC field is 3 bits (0..=7)"],
        },
        Row {
            input: "traffic class text `dscp` (a Tc, not a class value)",
            attempt: || "dscp".parse::<TrafficClass>().map(drop).map_err(Error::from),
            expect: |e| {
                matches!(e, Error::Route(RouteError::Label(LabelError::TrafficClassParse { input })) if input == "dscp")
            },
            says: &["\"dscp\" is not a traffic class: expected 0..=7", "parse a Tc"],
        },
        Row {
            input: "route traffic class text `x` (Tc)",
            attempt: || "x".parse::<Tc>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::TcParse { input })) if input == "x"),
            says: &["\"x\" is not a traffic class: expected 0..=7, or `dscp`"],
        },
        Row {
            input: "DSCP table value 8 everywhere",
            attempt: || DscpMap::new([8; 64]).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::TrafficClassOutOfRange { value: 8 }))),
            says: &["(0..=7)"],
        },
        Row {
            input: "DSCP table value 200 in the last slot only",
            attempt: || {
                let mut values = [0; 64];
                values[63] = 200;
                DscpMap::new(values).map(drop).map_err(Error::from)
            },
            expect: |e| matches!(e, Error::Route(RouteError::Label(LabelError::TrafficClassOutOfRange { value: 200 }))),
            says: &["traffic class 200", "(0..=7)"],
        },
        Row {
            input: "policy weight 0 (`100@7,200@0`)",
            attempt: || "100@7,200@0".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Policy(PolicyError::ZeroWeight { index: 1 }))),
            says: &["segment list 1 has weight 0", "weights are 1..=65535"],
        },
        Row {
            input: "policy weight 70000 (`100@70000`)",
            attempt: || "100@70000".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| {
                matches!(e, Error::Route(RouteError::Policy(PolicyError::Parse { input, index: 0, .. })) if input == "100@70000")
            },
            says: &["\"100@70000\" is not a list of segment lists: segment list 0, \"100@70000\", has a weight that is not a number 1..=65535"],
        },
        Row {
            input: "policy text `100@x`",
            attempt: || "100@x".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Policy(PolicyError::Parse { input, .. })) if input == "100@x"),
            says: &["\"100@x\" is not a list of segment lists", "expected e.g. `16001/16002@7,16003@3`"],
        },
        Row {
            input: "policy text with an empty segment list (`16001@7,,16003@3`)",
            attempt: || "16001@7,,16003@3".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| {
                matches!(e, Error::Route(RouteError::Policy(PolicyError::Parse { input, index: 1, part, .. }))
                    if input == "16001@7,,16003@3" && part.is_empty())
            },
            says: &["\"16001@7,,16003@3\" is not a list of segment lists: segment list 1, \"\", has no labels"],
        },
        Row {
            input: "policy text with a bad stack (`16001@7,100//200@3`)",
            attempt: || "16001@7,100//200@3".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| {
                matches!(e, Error::Route(RouteError::Policy(PolicyError::Label(LabelError::StackParse { input, position: 2, .. })))
                    if input == "100//200")
            },
            says: &["\"100//200\" is not a label stack: label 2 of 3 is empty"],
        },
        Row {
            input: "entropy label on a 15-label route (Route::with_entropy_label)",
            attempt: || {
                let route = Route::new(net("198.51.100.0/24"), stack(&[100; 15]));
                route.with_entropy_label(EntropyLabel::Bottom).map(drop).map_err(Error::from)
            },
            expect: |e| {
                matches!(
                    e,
                    Error::Route(RouteError::Policy(PolicyError::TooDeepForEntropyLabel { index: 0, labels: 15, max: 16 }))
                )
            },
            says: &["with the entropy label pair it would be 17 entries"],
        },
        Row {
            input: "policy with label 3 (`16001@1,3@1`)",
            attempt: || "16001@1,3@1".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| {
                matches!(
                    e,
                    Error::Route(RouteError::Policy(PolicyError::Label(LabelError::SpecialPurpose { value: 3, .. })))
                )
            },
            says: &["Implicit NULL"],
        },
        Row {
            input: "policy of 0 segment lists",
            attempt: || Policy::new(vec![], None).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Policy(PolicyError::ListCount { count: 0, max: 8 }))),
            says: &["a policy holds 1 to 8 segment lists, not 0"],
        },
        Row {
            input: "policy of 9 segment lists",
            attempt: || "16,17,18,19,20,21,22,23,24".parse::<Policy>().map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Policy(PolicyError::ListCount { count: 9, max: 8 }))),
            says: &["a policy holds 1 to 8 segment lists, not 9"],
        },
        Row {
            input: "entropy label on a 15-label list",
            attempt: || {
                let p: Policy = ["100"; 15].join("/").parse()?;
                p.with_entropy_label(Some(EntropyLabel::Bottom)).map(drop).map_err(Error::from)
            },
            expect: |e| {
                matches!(
                    e,
                    Error::Route(RouteError::Policy(PolicyError::TooDeepForEntropyLabel {
                        index: 0,
                        labels: 15,
                        max: 16
                    }))
                )
            },
            says: &["with the entropy label pair it would be 17 entries", "more than the 16 pushed"],
        },
        Row {
            input: "entropy label on the second list of a policy, 15 labels deep",
            attempt: || {
                let lists = vec![
                    SegmentList { stack: stack(&[16]), weight: 1 },
                    SegmentList { stack: stack(&[100; 15]), weight: 1 },
                ];
                Policy::new(lists, Some(EntropyLabel::After(2))).map(drop).map_err(Error::from)
            },
            expect: |e| {
                matches!(
                    e,
                    Error::Route(RouteError::Policy(PolicyError::TooDeepForEntropyLabel {
                        index: 1,
                        labels: 15,
                        max: 16
                    }))
                )
            },
            says: &["segment list 1 has 15 labels"],
        },
        Row {
            input: "entropy label on top (N = 0)",
            attempt: || {
                let p: Policy = "100/200".parse()?;
                p.with_entropy_label(Some(EntropyLabel::After(0))).map(drop).map_err(Error::from)
            },
            expect: |e| matches!(e, Error::Route(RouteError::Policy(PolicyError::EntropyLabelOnTop { after: 0 }))),
            says: &["N >= 1"],
        },
        Row {
            input: "prefix 10.0.0.0/33",
            attempt: || prefix::parse("10.0.0.0/33").map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::Parse { input, .. })) if input == "10.0.0.0/33"),
            says: &["\"10.0.0.0/33\" is not a prefix", "expected e.g. `10.0.0.0/8`"],
        },
        Row {
            input: "prefix 2001:db8::/129",
            attempt: || prefix::parse("2001:db8::/129").map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::Parse { input, .. })) if input == "2001:db8::/129"),
            says: &["is not a prefix"],
        },
        Row {
            input: "prefix `ten`",
            attempt: || prefix::parse("ten").map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::Parse { input, .. })) if input == "ten"),
            says: &["\"ten\" is not a prefix"],
        },
        Row {
            input: "prefix text 10.0.0.1/24 (host bits)",
            attempt: || prefix::parse("10.0.0.1/24").map(drop).map_err(Error::from),
            expect: |e| {
                matches!(e, Error::Route(RouteError::Prefix(PrefixError::HostBitsSet { given, meant }))
                    if *given == net("10.0.0.1/24") && *meant == net("10.0.0.0/24"))
            },
            says: &["10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?"],
        },
        Row {
            input: "prefix 2001:db8::1/32 (host bits), checked",
            attempt: || prefix::check(net("2001:db8::1/32")).map(drop).map_err(Error::from),
            expect: |e| matches!(e, Error::Route(RouteError::Prefix(PrefixError::HostBitsSet { meant, .. })) if *meant == net("2001:db8::/32")),
            says: &["did you mean 2001:db8::/32?"],
        },
    ]
}

#[test]
fn every_bad_value_is_refused_by_its_constructor() {
    let mut failures = Vec::new();
    let rows = rows();
    for row in &rows {
        match (row.attempt)() {
            Ok(()) => failures.push(format!("{}: accepted", row.input)),
            Err(e) if !(row.expect)(&e) => failures.push(format!("{}: wrong error {e:#?}", row.input)),
            Err(e) => {
                let text = e.to_string();
                for says in row.says {
                    if !text.contains(says) {
                        failures.push(format!("{}: message {text:?} lacks {says:?}", row.input));
                    }
                }
            }
        }
    }
    let mut names = std::collections::HashSet::new();
    failures.extend(rows.iter().filter(|r| !names.insert(r.input)).map(|r| format!("{}: row twice", r.input)));
    assert!(failures.is_empty(), "{} of {} rows:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

/// Every special-purpose label a host must not push, each named in the
/// message; the unassigned ones (4-6, 8-12) too: a router drops them.
#[test]
fn special_purpose_labels_are_refused_by_name() {
    for (value, name) in [
        (1, "Router Alert"),
        (3, "Implicit NULL"),
        (7, "Entropy Label Indicator"),
        (13, "Generic Associated Channel (GAL)"),
        (14, "OAM Alert"),
        (15, "Extension"),
        (4, "unassigned"),
        (12, "unassigned"),
    ] {
        for err in [Label::new(value).unwrap_err(), value.to_string().parse::<Label>().unwrap_err()] {
            assert!(
                matches!(err, LabelError::SpecialPurpose { value: v, meaning } if v == value && meaning == name),
                "{value}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(name) && text.contains("use a label of 16 or above"), "{value}: {text}");
        }
    }
}

/// The limits themselves pass, so the refusals above are the limits and not
/// a constructor that refuses everything.
#[test]
fn the_limits_themselves_are_accepted() {
    for value in [0, 2, 16, 1_000_000, Label::MAX] {
        assert_eq!(Label::new(value).map(Label::value), Ok(value));
    }
    assert_eq!(TrafficClass::new(7).map(TrafficClass::value), Ok(7));
    assert_eq!(DscpMap::new([7; 64]).map(|m| m.get(63).value()), Ok(7));
    let deepest = ["100"; 16].join("/").parse::<LabelStack>().expect("16 labels");
    assert_eq!(deepest.len(), LabelStack::MAX_DEPTH);
    let eight = "16,17,18,19,20,21,22,23@65535".parse::<Policy>().expect("8 lists");
    assert_eq!(eight.lists().len(), MAX_SEGMENT_LISTS);
    assert_eq!(eight.lists()[7].weight, 65535);
    let fourteen: Policy = ["100"; 14].join("/").parse().expect("14 labels");
    assert!(fourteen.with_entropy_label(Some(EntropyLabel::Bottom)).is_ok(), "14 labels + ELI + EL = 16 entries");
    let under_one: Policy = "100/200".parse().expect("policy");
    assert!(under_one.with_entropy_label(Some(EntropyLabel::After(1))).is_ok());
    assert_eq!(prefix::parse("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
    assert_eq!(prefix::parse("2001:db8::/32"), Ok(net("2001:db8::/32")));
    assert_eq!(prefix::parse("192.0.2.7"), Ok(net("192.0.2.7/32")), "a bare address is a host route");
}

/// Table 0 is the main table: there is no alternate table 0.
#[test]
fn alternate_table_zero_does_not_exist() {
    assert_eq!(Table::alternate(0), None);
    assert_eq!(Table::alternate(1).map(Table::id), Some(1));
}

/// The BGP sample the benchmark programs (tests/fixtures): every line a
/// prefix the library accepts (IPv4, no host bits), none twice.
#[test]
fn the_bgp_fixture_is_valid_prefixes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bgp-prefixes-sample.csv");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let p = prefix::parse(line).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1));
        assert!(p.is_ipv4(), "{path}:{}: {p} is not IPv4", i + 1);
        assert!(seen.insert(p), "{path}:{}: {p} twice", i + 1);
    }
    assert_eq!(seen.len(), 1479, "the sample's size (docs/performance.md)");
}

/// What `fn main() -> Result<(), Error>` prints after `Error: ` is the
/// message, not the variant tree; `{:#?}` still shows the variant, then each
/// area's error by its type's name and message.
#[test]
fn errors_read_as_their_message_in_main() {
    let label = Error::from(Label::new(1 << 20).expect_err("out of range"));
    assert_eq!(format!("{label:?}"), "label 1048576 is out of range: MPLS labels are 0..=1048575 (20 bits)");
    assert!(format!("{label:#?}").starts_with("Route(\n    RouteError: label 1048576 is out of range"), "{label:#?}");
    let attach = Error::from(lnetd_host_encap::errors::AttachError::NoSuchInterface { iface: "nope0".into() });
    assert_eq!(format!("{attach:?}"), "no interface named \"nope0\" in this network namespace (see `ip link`)");
    // The same through a Box<dyn Error>, as `main` returning one prints it.
    let boxed: Box<dyn std::error::Error> = attach.into();
    assert_eq!(format!("{boxed:?}"), boxed.to_string());
    let stack = Error::from("16001//16002".parse::<LabelStack>().expect_err("empty label"));
    assert_eq!(
        format!("{stack:?}"),
        "\"16001//16002\" is not a label stack: label 2 of 3 is empty (expected labels separated by `/`, e.g. `16001/16002`)"
    );
}
