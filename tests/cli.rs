//! The `lnetd-host-encap` command end to end, in a namespace lab: attach and
//! exit (forwarding goes on), set, apply, get, routes, stats (Prometheus text
//! read by a real parser, agreeing with the JSON), refusals with their exit
//! codes, and detach leaving nothing behind.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use common::{privileged, PinGuard};
use lnetd_host_encap::labels::decode_stack;
use lnetd_host_encap::testing::lab::{attached_xdp_program, traffic, Capture, Netns, VethLab};
use lnetd_host_encap::testing::PassProgram;

/// Runs the command in the host namespace (only the network namespace:
/// bpffs stays the machine's, as for a command run on a host).
fn cli(ns: &Netns, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .arg(env!("CARGO_BIN_EXE_lnetd-host-encap"))
        .args(["-i", VethLab::HOST_IF])
        .args(args)
        .output()
        .expect("run lnetd-host-encap")
}

fn ok(ns: &Netns, args: &[&str]) -> String {
    let out = cli(ns, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

fn fails(ns: &Netns, args: &[&str], code: i32, says: &str) {
    let out = cli(ns, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?} should say {says:?}: {stderr}");
}

/// Sends one datagram from the router side and returns the labels it came back with.
fn labels_for(lab: &VethLab, capture: &Capture, dst: Ipv4Addr) -> Vec<u32> {
    lab.router.run(|| traffic::udp(SocketAddr::new(IpAddr::V4(dst), 7000), 64, b"cli")).unwrap().unwrap();
    loop {
        let f = capture.next(Duration::from_secs(2)).unwrap().expect("a frame back");
        if !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47][..]) {
            return decode_stack(&f.bytes[14..]).unwrap().0.iter().map(|e| e.label).collect();
        }
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_command_end_to_end() {
    privileged("the_command_end_to_end");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().expect("xdp on r0");
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF)).unwrap().expect("capture");

    fails(&lab.host, &["routes"], 1, "no dataplane of lnetd-host-encap is pinned");
    fails(&lab.host, &["attach", "--lookup", "hash"], 2, "dir24-8 or lpm");
    let out = ok(
        &lab.host,
        &[
            "attach",
            "--mode",
            "native",
            "--ttl",
            "copy",
            "--mtu-policy",
            "drop",
            "--lookup",
            "dir24-8",
            "--max-route-values",
            "1000",
        ],
    );
    assert!(out.contains("attached to h0 in native mode"), "{out}");
    // The command exited; the dataplane is still there.
    assert!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap().is_some());
    fails(&lab.host, &["attach"], 1, "already pinned");

    ok(&lab.host, &["set", "0.0.0.0/0", "1000000"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "16001/16002"]);
    assert_eq!(labels_for(&lab, &capture, Ipv4Addr::new(198, 51, 100, 7)), [16001, 16002]);
    assert_eq!(labels_for(&lab, &capture, Ipv4Addr::new(192, 0, 2, 7)), [1_000_000]);

    let get = ok(&lab.host, &["get", "198.51.100.7", "--proto", "tcp", "--dport", "443"]);
    assert!(get.starts_with("labelled and sent back (XDP_TX); route 198.51.100.0/24 (main table)"), "{get}");
    assert!(get.contains("stack (label/tc/S/ttl): 16001/0/0/64 16002/0/1/64"), "{get}");
    let local = ok(&lab.host, &["get", &VethLab::HOST_V4.to_string()]);
    assert!(local.contains("XDP_PASS") && local.contains("host's own addresses"), "{local}");

    // apply from a TOML file: a policy with an entropy label, an alternate table and its source.
    let dir = std::env::temp_dir().join(format!("lhe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("desired.toml");
    std::fs::write(
        &file,
        r#"
        [[routes]]
        prefix = "0.0.0.0/0"
        policy = "1000000"
        [[routes]]
        prefix = "203.0.113.0/24"
        policy = "17001/17002@7,17003@3"
        entropy_label = "bottom"
        [[routes]]
        prefix = "203.0.113.0/24"
        policy = "18001"
        table = 3
        [[sources]]
        prefix = "10.200.0.0/24"
        table = 3
        "#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let dry = ok(&lab.host, &["apply", file, "--dry-run"]);
    assert!(dry.starts_with("dry run: 2 added, 0 replaced, 1 removed, 1 unchanged"), "{dry}");
    let applied = ok(&lab.host, &["apply", file]);
    assert!(applied.starts_with("2 added, 0 replaced, 1 removed, 1 unchanged; sources: 1 set"), "{applied}");
    // The router's own address is in the source prefix: its packets take table 3.
    assert_eq!(labels_for(&lab, &capture, Ipv4Addr::new(203, 0, 113, 9)), [18001]);
    let again = ok(&lab.host, &["apply", file]);
    assert!(again.contains("; 0 map operations"), "{again}");
    // Where flows spread, `get` says the source enters the hash unless given.
    let note = "note: no --src";
    let spread = ok(&lab.host, &["get", "203.0.113.9"]);
    assert!(spread.contains(note), "{spread}");
    let from = ok(&lab.host, &["get", "203.0.113.9", "--src", "192.0.2.1"]);
    assert!(!from.contains(note) && !get.contains(note), "{from}\n{get}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"routes":[{"prefix":"10.0.0.0/8","policy":"3"}]}"#).unwrap();
    fails(&lab.host, &["apply", bad.to_str().unwrap()], 1, "routes[0] (10.0.0.0/8)");
    std::fs::write(&bad, r#"{"routes":[],"colour":"red"}"#).unwrap();
    fails(&lab.host, &["apply", bad.to_str().unwrap()], 1, "unknown field");

    let routes: serde_json::Value = serde_json::from_str(&ok(&lab.host, &["routes", "--json"])).expect("routes JSON");
    let listed: Vec<(String, u64, String)> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["prefix"].as_str().unwrap().into(), r["table"].as_u64().unwrap(), r["policy"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("0.0.0.0/0".into(), 0, "1000000".into()),
            ("203.0.113.0/24".into(), 0, "17001/17002@7,17003@3".into()),
            ("203.0.113.0/24".into(), 3, "18001".into()),
        ]
    );
    let human = ok(&lab.host, &["routes"]);
    assert!(human.contains("source 10.200.0.0/24 -> table 3") && !human.contains("Some("), "{human}");

    // Prometheus text, read by a real parser, agrees with the JSON.
    let stats: serde_json::Value = serde_json::from_str(&ok(&lab.host, &["stats", "--json"])).expect("stats JSON");
    let text = ok(&lab.host, &["stats", "--prometheus"]);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition parses");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("interface") == Some("h0"))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v as u64,
                ref other => panic!("{name}: {other:?}"),
            })
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert!(value("lnetd_host_encap_labelled_packets_total") >= 3);
    assert_eq!(value("lnetd_host_encap_labelled_packets_total"), stats["labelled"]["packets"].as_u64().unwrap());
    assert_eq!(value("lnetd_host_encap_no_route_bytes_total"), stats["no_route"]["bytes"].as_u64().unwrap());
    let table3 = scrape
        .samples
        .iter()
        .find(|s| s.metric == "lnetd_host_encap_route_packets_total" && s.labels.get("table") == Some("3"))
        .expect("route counter of table 3");
    assert_eq!(table3.labels.get("prefix"), Some("203.0.113.0/24"));

    ok(&lab.host, &["source", "--remove", "10.200.0.0/24"]);
    ok(&lab.host, &["remove", "203.0.113.0/24"]);
    fails(&lab.host, &["remove", "203.0.113.0/24"], 1, "no route for exactly 203.0.113.0/24");
    fails(&lab.host, &["set", "10.0.0.1/8", "100"], 2, "did you mean 10.0.0.0/8");
    fails(&lab.host, &["set", "10.0.0.0/8", "100", "--tc", "9"], 2, "invalid value");
    fails(&lab.host, &["frobnicate"], 2, "unrecognized subcommand");

    // Guards on apply: a file that says nothing is refused, whatever its shape.
    let write = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f.to_str().unwrap().to_owned()
    };
    let now = |ns: &Netns| -> Vec<String> {
        let routes: serde_json::Value = serde_json::from_str(&ok(ns, &["routes", "--json"])).unwrap();
        routes["routes"].as_array().unwrap().iter().map(|r| r["prefix"].as_str().unwrap().to_owned()).collect()
    };
    let before = now(&lab.host);
    assert_eq!(before.len(), 2, "{before:?}");
    fails(&lab.host, &["apply", &write("empty.toml", "")], 1, "the file is empty");
    fails(&lab.host, &["apply", &write("empty.json", "")], 1, "--allow-empty");
    fails(&lab.host, &["apply", &write("list.json", "[]")], 1, "an empty list");
    fails(&lab.host, &["apply", &write("object.json", "{}")], 1, "no `routes` key");
    fails(&lab.host, &["apply", &write("sources.toml", "sources = []")], 1, "no `routes` key (it has: sources)");
    assert_eq!(now(&lab.host), before, "nothing refused changed anything");
    // An explicit empty list is a plan that removes everything: shown by --dry-run, applied only with --force.
    let none = write("none.toml", "routes = []");
    let plan = ok(&lab.host, &["apply", &none, "--dry-run"]);
    assert!(plan.starts_with("dry run: 0 added, 0 replaced, 2 removed, 0 unchanged"), "{plan}");
    assert!(plan.contains("plan: 0 added, 0 changed, 2 removed, 0 kept, of 2 routes now; removes 100%"), "{plan}");
    assert!(plan.contains("  removed 0.0.0.0/0") && plan.contains("will need --force"), "{plan}");
    fails(&lab.host, &["apply", &none], 1, "removes 2 of 2 routes (100%), more than --max-remove-share 50%");
    fails(&lab.host, &["apply", &none], 1, "pass --force");
    fails(&lab.host, &["apply", &none, "--max-remove-share", "2"], 2, "0..=1");
    assert_eq!(now(&lab.host), before);
    // Half the table is within the default share; the sample shows what is kept.
    let half = write("half.toml", "[[routes]]\nprefix = \"0.0.0.0/0\"\npolicy = \"1000000\"\n");
    let plan = ok(&lab.host, &["apply", &half, "--dry-run"]);
    assert!(
        plan.contains("1 removed, 1 kept, of 2 routes now; removes 50%") && plan.contains("  kept 0.0.0.0/0"),
        "{plan}"
    );
    assert!(!plan.contains("--force"), "{plan}");
    assert!(ok(&lab.host, &["apply", &half]).starts_with("0 added, 0 replaced, 1 removed, 1 unchanged"));
    // Said on purpose: an empty file with --allow-empty, a large removal with --force.
    let empty = write("empty.toml", "");
    fails(&lab.host, &["apply", &empty, "--allow-empty"], 1, "--force");
    assert!(ok(&lab.host, &["apply", &empty, "--allow-empty", "--force"]).starts_with("0 added, 0 replaced, 1 removed"));
    assert!(now(&lab.host).is_empty());

    // The routes' origins live in the RIB's store beside the pins: detach removes them with it.
    ok(&lab.host, &["detach"]);
    assert_eq!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap(), None);
    assert!(!lab
        .host
        .run(|| lnetd_host_encap::encap::AdoptOptions::default().is_pinned(VethLab::HOST_IF))
        .unwrap()
        .unwrap());
    fails(&lab.host, &["detach"], 1, "no dataplane of lnetd-host-encap is pinned");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_command_in_host_mode_egress_and_pop() {
    privileged("the_command_in_host_mode_egress_and_pop");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _decap_pins = DecapPinGuard(&lab.host);
    lab.host.exec("ethtool", "ethtool", &["-K", VethLab::HOST_IF, "tso", "on"]).unwrap();
    fails(&lab.host, &["attach", "--hook", "egress"], 1, "tso off");
    lab.host.exec("ethtool", "ethtool", &["-K", VethLab::HOST_IF, "tso", "off"]).unwrap();
    let out = ok(&lab.host, &["attach", "--hook", "egress"]);
    assert!(out.contains("attached to h0 in egress mode"), "{out}");
    ok(&lab.host, &["set", "198.51.100.0/24", "16001"]);
    let routes = ok(&lab.host, &["routes"]);
    assert!(routes.contains("198.51.100.0/24"), "{routes}");
    // `get` reads the verdict as the egress hook's (it said "sent back (XDP_TX)").
    let got = ok(&lab.host, &["get", "198.51.100.7"]);
    assert!(got.contains("labelled and passed on (egress)"), "{got}");
    // Its JSON in the egress hook's words too (it said "XDP_TX").
    let got: serde_json::Value =
        serde_json::from_str(&ok(&lab.host, &["get", "198.51.100.7", "--output", "json"])).unwrap();
    assert_eq!((&got["action"], &got["outcome"]), (&"TC_ACT_OK".into(), &"labelled".into()), "{got}");
    // Attached already: said so, whatever TSO is now (it said "TSO is on").
    lab.host.exec("ethtool", "ethtool", &["-K", VethLab::HOST_IF, "tso", "on"]).unwrap();
    fails(&lab.host, &["attach", "--hook", "egress"], 1, "already pinned");
    lab.host.exec("ethtool", "ethtool", &["-K", VethLab::HOST_IF, "tso", "off"]).unwrap();

    // The decapsulator beside it (XDP on the same interface).
    let out = ok(&lab.host, &["pop", "attach", "--labels", "0,2,16002", "--other", "drop", "--mode", "generic"]);
    assert!(out.contains("popping 0,2,16002") && out.contains("other labels: drop"), "{out}");
    ok(&lab.host, &["pop", "add", "16005"]);
    ok(&lab.host, &["pop", "remove", "16002"]);
    fails(&lab.host, &["pop", "remove", "16002"], 1, "is not popped");
    assert_eq!(ok(&lab.host, &["pop", "labels"]).lines().collect::<Vec<_>>(), ["0", "2", "16005"]);
    let stats: serde_json::Value = serde_json::from_str(&ok(&lab.host, &["pop", "stats", "--json"])).unwrap();
    assert!(stats["popped"]["packets"].is_u64(), "{stats}");
    // --output json: the same schema as every read (docs/operations-json.md).
    assert_eq!(
        (&stats["schema"], &stats["command"], &stats["interface"]),
        (&"lnetd-host-encap/v1".into(), &"pop stats".into(), &"h0".into())
    );
    let labels: serde_json::Value =
        serde_json::from_str(&ok(&lab.host, &["pop", "labels", "--output", "json"])).unwrap();
    assert_eq!((&labels["command"], &labels["labels"]), (&"pop labels".into(), &serde_json::json!([0, 2, 16005])));
    fails(&lab.host, &["pop", "add", "3"], 2, "Implicit NULL");
    // `status` names the encapsulator's hook and the decapsulator beside it
    // (it showed the decapsulator's XDP program as the encapsulator's, "ours": false).
    let status = ok(&lab.host, &["status"]);
    assert!(status.contains("attached in egress mode (tcx egress)\n"), "{status}");
    assert!(status.contains("\n  on-link: unlabelled"), "the default on-link rule: {status}");
    assert!(status.contains("(xdp_decap) is attached: it is the decapsulator's"), "{status}");
    assert!(status.contains("pop:    decapsulator in generic mode, popping 0,2,16005; other labels: drop"), "{status}");
    let status: serde_json::Value = serde_json::from_str(&ok(&lab.host, &["status", "--output", "json"])).unwrap();
    assert_eq!((&status["program"]["ours"], &status["program"]["role"]), (&true.into(), &"decapsulator".into()));
    assert_eq!(status["label_on_link"], false, "{status}");
    assert_eq!(
        status["decapsulator"],
        serde_json::json!({"mode": "generic", "labels": [0, 2, 16005], "other_labels": "drop", "error": null})
    );
    ok(&lab.host, &["pop", "detach"]);
    let status: serde_json::Value = serde_json::from_str(&ok(&lab.host, &["status", "--output", "json"])).unwrap();
    assert_eq!((&status["program"], &status["decapsulator"]), (&serde_json::Value::Null, &serde_json::Value::Null));
    // The same on TC ingress, adopted by the next command like the XDP one.
    let out = ok(&lab.host, &["pop", "attach", "--hook", "ingress", "--labels", "0,16002"]);
    assert!(out.contains("in ingress mode") && out.contains("popping 0,16002"), "{out}");
    ok(&lab.host, &["pop", "add", "16005"]);
    assert_eq!(ok(&lab.host, &["pop", "labels"]).lines().collect::<Vec<_>>(), ["0", "16002", "16005"]);
    ok(&lab.host, &["pop", "detach"]);
    fails(&lab.host, &["pop", "labels"], 1, "pop attach");
    ok(&lab.host, &["detach"]);
    assert_eq!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap(), None);
}

/// Without an agent, nothing followed the host's addresses after `attach`:
/// an address added later was labelled and sent away (a removed one still
/// handed to the host) until a re-attach. Every writer command brings them
/// up to date now. The subnet broadcast the kernel adds for an address given
/// without `brd` is never labelled either (it was).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_host_addresses_are_brought_up_to_date_by_every_writer_command() {
    privileged("the_host_addresses_are_brought_up_to_date_by_every_writer_command");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    ok(&lab.host, &["attach", "--mode", "generic"]);
    ok(&lab.host, &["set", "0.0.0.0/0", "1000000"]);
    let own = "one of the host's own addresses";
    // Given without `brd`: the kernel adds 192.0.3.255 as a broadcast anyway.
    lab.host.ip(&["addr", "add", "192.0.3.2/24", "dev", VethLab::HOST_IF]).unwrap();
    let before = ok(&lab.host, &["get", "192.0.3.2"]);
    assert!(before.starts_with("labelled and sent back"), "a reader changes nothing: {before}");
    // The writer that found the change says it (`repair` said "nothing to repair").
    let found = cli(&lab.host, &["set", "198.51.100.0/24", "16001"]);
    let said = String::from_utf8_lossy(&found.stderr);
    assert!(found.status.success() && said.contains("the host's addresses changed: never labelled now: "), "{said}");
    assert!(said.contains("192.0.3.2") && said.contains("192.0.3.255"), "{said}");
    for dst in ["192.0.3.2", "192.0.3.255"] {
        let after = ok(&lab.host, &["get", dst]);
        assert!(after.contains(own), "{dst} after a writer: {after}");
    }
    lab.host.ip(&["addr", "del", "192.0.3.2/24", "dev", VethLab::HOST_IF]).unwrap();
    ok(&lab.host, &["remove", "198.51.100.0/24"]);
    for dst in ["192.0.3.2", "192.0.3.255"] {
        let gone = ok(&lab.host, &["get", dst]);
        assert!(gone.starts_with("labelled and sent back"), "{dst} once removed: {gone}");
    }
    ok(&lab.host, &["detach"]);
}

/// An agent that dies during a call: the command says the connection
/// broke and what that means for a change (it died of SIGPIPE without a
/// word, or said only "transport error"). The "agent" here answers the
/// HTTP/2 handshake (an empty SETTINGS frame), then drops the connection
/// once the request comes.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_command_whose_agent_dies_during_the_call_says_so() {
    privileged("a_command_whose_agent_dies_during_the_call_says_so");
    let ns = Netns::new("dies").expect("namespace");
    let path = ns.run(|| lnetd_host_encap::agent::socket_path("lo")).unwrap().expect("socket path");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_dir(self.0.parent().unwrap());
        }
    }
    let _gone = Gone(path.clone());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
                std::thread::sleep(Duration::from_millis(100));
                let _ = conn.read(&mut buf);
            });
        }
    });
    for args in [&["set", "198.51.100.0/24", "16001"][..], &["routes"]] {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .arg(env!("CARGO_BIN_EXE_lnetd-host-encap"))
            .args(["-i", "lo"])
            .args(args)
            .output()
            .expect("run lnetd-host-encap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {:?} {stderr}", out.status);
        assert!(
            stderr.contains("the connection to the agent") && stderr.contains("may or may not be in force"),
            "{args:?}: {stderr}"
        );
    }
}

/// Removes the decapsulator's pins of the lab's host interface when the test ends.
struct DecapPinGuard<'a>(&'a Netns);

impl Drop for DecapPinGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(|| {
            if let Ok(dec) = lnetd_host_encap::decap::Decapsulator::open(VethLab::HOST_IF) {
                let _ = dec.detach();
            }
        });
    }
}

/// `get` pins the probe copy of the program beside the dataplane, so the
/// next process explains without a verifier pass; the copy reads the live
/// tables, counts nothing, survives an upgrade by the same build and goes
/// with its dataplane (a new attachment gets its own).
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn get_reuses_the_pinned_probe_copy_which_goes_with_its_dataplane() {
    privileged("get_reuses_the_pinned_probe_copy_which_goes_with_its_dataplane");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let probes = dataplane_dir(&lab, "/sys/fs/bpf/lnetd-host-encap").join("probe");
    let copies = || -> Vec<String> {
        let names = std::fs::read_dir(&probes).map(|d| d.flatten().map(|e| e.file_name().into_string().unwrap()));
        names.map(Iterator::collect).unwrap_or_default()
    };
    ok(&lab.host, &["attach", "--mode", "generic"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "16001"]);
    assert!(copies().is_empty());
    let first = ok(&lab.host, &["get", "198.51.100.7"]);
    assert!(first.contains("stack (label/tc/S/ttl): 16001/0/1/64"), "{first}");
    let pinned = copies();
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    assert!(probes.join(&pinned[0]).join("prog").exists() && probes.join(&pinned[0]).join("counters").exists());

    let out = cli(&lab.host, &["--log", "debug", "get", "198.51.100.7"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("probe program reused"), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), first);
    ok(&lab.host, &["set", "198.51.100.0/24", "16009"]);
    let now = ok(&lab.host, &["get", "198.51.100.7"]);
    assert!(now.contains("stack (label/tc/S/ttl): 16009/0/1/64"), "{now}");
    let stats: serde_json::Value = serde_json::from_str(&ok(&lab.host, &["stats", "--json"])).unwrap();
    assert_eq!(stats["labelled"]["packets"], 0, "probes are not traffic: {stats}");

    ok(&lab.host, &["upgrade"]);
    assert_eq!(copies(), pinned, "this build's copy stays valid across an upgrade by it");
    ok(&lab.host, &["detach"]);
    assert!(!probes.exists(), "the copy goes with its dataplane");
    ok(&lab.host, &["attach", "--mode", "generic"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "16001"]);
    assert!(ok(&lab.host, &["get", "198.51.100.7"]).contains("16001/0/1/64"));
    let again = copies();
    assert!(again.len() == 1 && again != pinned, "a new attachment's copy is its own: {again:?} {pinned:?}");
}

/// `<root>/net<netns inode>/h0` of the lab's host namespace.
fn dataplane_dir(lab: &VethLab, root: &str) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let ns = lab.host.run(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()).unwrap();
    std::path::Path::new(root).join(format!("net{ns}")).join(VethLab::HOST_IF)
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn status_and_detach_force_out_of_damaged_states() {
    privileged("status_and_detach_force_out_of_damaged_states");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let attached = || lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap();

    assert_eq!(ok(&lab.host, &["status"]), "h0: no dataplane of lnetd-host-encap is pinned\n");
    assert_eq!(ok(&lab.host, &["detach", "--force"]), "nothing of lnetd-host-encap on h0\n");
    ok(&lab.host, &["attach", "--mode", "generic"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "16001"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "17001", "--table", "2"]);
    let status = ok(&lab.host, &["status"]);
    let id = attached().expect("attached");
    assert!(status.starts_with(&format!("h0: attached in generic mode, program id {id} (xdp_encap)\n")), "{status}");
    assert!(!status.contains("on-link"), "XDP has no on-link rule to show: {status}");
    assert!(status.contains("routes: 2 (main 1, table 2 1); by origin: static 2; sources: 0"), "{status}");
    assert!(status.contains("agent:  none") && status.contains("kernel: matches the RIB"), "{status}");

    // The snapshot emptied: reads and changes fail, and so does a plain detach;
    // --force removes everything without reading it, and says what.
    let state = dataplane_dir(&lab, lnetd_host_encap::pins::DEFAULT_STATE_ROOT);
    let pins = dataplane_dir(&lab, lnetd_host_encap::pins::DEFAULT_BPFFS_ROOT);
    std::fs::write(state.join("rib.snapshot"), "").unwrap();
    assert!(!cli(&lab.host, &["routes"]).status.success());
    let out = ok(&lab.host, &["detach", "--force"]);
    assert!(out.starts_with("removed:\n"), "{out}");
    assert!(
        out.contains(&format!("  pins {}", pins.display())) && out.contains(&format!("  state {}", state.display())),
        "{out}"
    );
    assert_eq!(attached(), None, "the program went with the link's pin");
    assert!(!pins.exists() && !state.exists());
    assert_eq!(ok(&lab.host, &["status"]), "h0: no dataplane of lnetd-host-encap is pinned\n");

    // Pins without state, and the link pin gone: attach works again after --force.
    ok(&lab.host, &["attach", "--mode", "generic"]);
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_file(pins.join("link")).unwrap();
    let out = ok(&lab.host, &["detach", "--force"]);
    assert!(out.contains("  pins ") && !out.contains("  state "), "{out}");
    assert!(ok(&lab.host, &["attach", "--mode", "generic"]).contains("attached to h0"));
    ok(&lab.host, &["detach"]);
}

/// Runs `script` under `ip netns exec` in the lab's host namespace: a mount
/// namespace of its own, with /sys remounted.
fn under_ip_netns_exec(lab: &VethLab, script: &str) -> Output {
    Command::new("ip").args(["netns", "exec", lab.host.name(), "sh", "-c", script]).output().expect("run ip netns exec")
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn attach_under_ip_netns_exec_is_refused_with_the_nsenter_alternative() {
    privileged("attach_under_ip_netns_exec_is_refused_with_the_nsenter_alternative");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    // `ip netns exec` runs the command in a mount namespace of its own with
    // /sys remounted; mounting bpffs there (as the notes say one must) gives
    // a bpffs that vanishes with the shell.
    let script = format!(
        "mount -t bpf bpf /sys/fs/bpf && exec {} -i {} attach --mode generic",
        env!("CARGO_BIN_EXE_lnetd-host-encap"),
        VethLab::HOST_IF
    );
    let out = under_ip_netns_exec(&lab, &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not on the host's bpffs") && stderr.contains("nsenter --net"), "{stderr}");
    assert_eq!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap(), None, "nothing attached");
    // Without the mount, the same refusal (it said "mount one", which only led to the one above).
    let script =
        format!("exec {} -i {} attach --mode generic", env!("CARGO_BIN_EXE_lnetd-host-encap"), VethLab::HOST_IF);
    let out = under_ip_netns_exec(&lab, &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not on the host's bpffs") && stderr.contains("nsenter --net"), "{stderr}");
    // The alternative the message gives works.
    ok(&lab.host, &["attach", "--mode", "generic"]);
    // Reading the dataplane from there, without an agent, says the same (it
    // failed with a bare ENOENT on the link's pin: the state directory, not
    // under /sys, says a dataplane is pinned), with and without a bpffs mounted.
    for mount in ["mount -t bpf bpf /sys/fs/bpf && ", ""] {
        for command in ["status", "routes"] {
            let script =
                format!("{mount}exec {} -i {} {command}", env!("CARGO_BIN_EXE_lnetd-host-encap"), VethLab::HOST_IF);
            let out = under_ip_netns_exec(&lab, &script);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{mount}{command}: {stderr}");
            assert!(
                stderr.contains("not on the host's bpffs") && stderr.contains("nsenter --net"),
                "{mount}{command}: {stderr}"
            );
        }
    }
    // The decapsulator's commands from there say the same (a bare ENOENT on its maps' pins).
    ok(&lab.host, &["pop", "attach", "--hook", "ingress"]);
    let _decap_pins = DecapPinGuard(&lab.host);
    for command in ["pop labels", "pop add 16001"] {
        let script = format!("exec {} -i {} {command}", env!("CARGO_BIN_EXE_lnetd-host-encap"), VethLab::HOST_IF);
        let out = under_ip_netns_exec(&lab, &script);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not on the host's bpffs") && stderr.contains("nsenter --net"), "{command}: {stderr}");
    }
    ok(&lab.host, &["pop", "detach"]);
    // `detach --force` from there refuses: it said it removed the program and
    // exited 0 while the link pinned on the host's bpffs kept it attached.
    let script = format!("exec {} -i {} detach --force", env!("CARGO_BIN_EXE_lnetd-host-encap"), VethLab::HOST_IF);
    let out = under_ip_netns_exec(&lab, &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not on the host's bpffs"), "{stderr}");
    assert!(lab.host.run(|| attached_xdp_program(VethLab::HOST_IF)).unwrap().unwrap().is_some(), "still attached");
    ok(&lab.host, &["detach"]);
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn an_export_applies_back_unchanged() {
    privileged("an_export_applies_back_unchanged");
    use std::io::Write;
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    ok(&lab.host, &["attach", "--mode", "generic"]);
    ok(&lab.host, &["set", "0.0.0.0/0", "1000000"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "16001/16002@7,16003@3", "--tc", "dscp", "--entropy-label", "bottom"]);
    ok(&lab.host, &["set", "2001:db8::/32", "16005", "--tc", "5", "--entropy-label", "1"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "17001", "--table", "5"]);
    ok(&lab.host, &["source", "10.0.0.0/8", "--table", "5"]);
    let export = ok(&lab.host, &["routes", "--json"]);
    // The export keeps its describing fields for scripts...
    let v: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert!(v["routes"][0].get("origin").is_some() && v["routes"][0].get("labelled").is_some(), "{export}");
    // ...and applies back as it is: nothing changes.
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.host.name()))
        .arg(env!("CARGO_BIN_EXE_lnetd-host-encap"))
        .args(["-i", VethLab::HOST_IF, "apply", "-", "--dry-run"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(export.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("0 added, 0 replaced, 0 removed, ") && stdout.contains("sources: 0 set, 0 removed"),
        "{stdout}"
    );
    assert!(stdout.contains("plan: 0 added, 0 changed, 0 removed, 4 kept, of 4 routes now"), "{stdout}");
    assert!(stdout.contains("DSCP table unchanged"), "{stdout}");
    ok(&lab.host, &["detach"]);
}

/// Runs the command without a namespace or privileges: what any user (or a
/// packager building the completions and the man page) does.
fn unprivileged(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lnetd-host-encap")).args(args).output().expect("run lnetd-host-encap");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands `--help` lists (without `help`), read from the help text
/// rather than the code so the man page is checked against what users see.
fn subcommands(args: &[&str]) -> Vec<String> {
    let help = unprivileged(&[args, &["--help"]].concat());
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_for_each_shell() {
    let bash = unprivileged(&["completions", "bash"]);
    for word in ["attach", "--iface", "apply", "--dry-run", "--hook"] {
        assert!(bash.contains(word), "the bash completions do not mention {word}");
    }
    let zsh = unprivileged(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef lnetd-host-encap"), "zsh script header: {:?}", zsh.lines().next());
    let fish = unprivileged(&["completions", "fish"]);
    assert!(fish.contains("complete -c lnetd-host-encap") && fish.contains("attach"), "fish script:\n{fish}");
    // An unknown shell is a usage error (exit code 2), not a failure.
    let out = Command::new(env!("CARGO_BIN_EXE_lnetd-host-encap")).args(["completions", "csh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An option of the other hook is refused as a usage error before anything
/// is touched (it was silently ignored: `--hook egress --mode native`
/// attached to tcx), and so is a label stack where `pop add` takes one label.
#[test]
fn options_that_do_not_apply_are_usage_errors_that_say_why() {
    let rows: [(&[&str], &str); 5] = [
        (&["attach", "--hook", "egress", "--mode", "native"], "--mode is for --hook xdp"),
        (&["attach", "--allow-tso"], "--allow-tso is for --hook egress"),
        (&["attach", "--label-on-link"], "--label-on-link is for --hook egress"),
        (&["pop", "attach", "--hook", "ingress", "--mode", "generic"], "--mode is for --hook xdp"),
        (&["pop", "add", "16001/16002"], "\"16001/16002\" is a label stack where one label is expected"),
    ];
    for (args, says) in rows {
        let out = Command::new(env!("CARGO_BIN_EXE_lnetd-host-encap"))
            .args([&["-i", "lhe-nonexistent0"], args].concat())
            .output()
            .expect("run lnetd-host-encap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr:?} lacks {says:?}");
    }
}

#[test]
fn the_man_page_documents_every_subcommand() {
    let page = unprivileged(&["man"]);
    assert!(page.starts_with(".TH lnetd-host-encap 8"), "the page starts with {:?}", page.lines().next());
    let top = subcommands(&[]);
    assert!(top.len() > 10 && top.iter().any(|s| s == "attach"), "subcommands from --help: {top:?}");
    for name in &top {
        let section = format!(".SH \"{}\"", name.to_uppercase());
        assert!(page.contains(&section), "the man page has no section for `{name}`");
    }
    for name in subcommands(&["pop"]) {
        let section = format!(".SH \"POP {}\"", name.to_uppercase());
        assert!(page.contains(&section), "the man page has no section for `pop {name}`");
    }
    // A flag of a subcommand is documented under it.
    assert!(page.contains("\\-\\-allow\\-empty") || page.contains("\\-\\-dry\\-run"), "apply's flags are missing");
}

/// Without an agent, a user who may not read the pins is told that (it was
/// told nothing was pinned and that our own program, "not ours", should be
/// removed), and a misspelt interface is named as such, not as "nothing
/// pinned there".
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn an_unprivileged_user_and_a_misspelt_interface_are_told_so() {
    privileged("an_unprivileged_user_and_a_misspelt_interface_are_told_so");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    ok(&lab.host, &["attach", "--mode", "generic"]);
    ok(&lab.host, &["set", "198.51.100.0/24", "16001"]);

    // A copy of the command any user may run (the build directory may not be).
    let dir = std::env::temp_dir().join(format!("lhe-unprivileged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Removed(dir.clone());
    let bin = dir.join("lnetd-host-encap");
    std::fs::copy(env!("CARGO_BIN_EXE_lnetd-host-encap"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(&dir, 0o755), (&bin, 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.host.name()))
            .args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
            .arg(&bin)
            .args(["-i", VethLab::HOST_IF])
            .args(args)
            .output()
            .expect("run lnetd-host-encap as nobody")
    };
    for args in [&["routes"][..], &["status"], &["set", "192.0.2.0/24", "16002"]] {
        let out = as_nobody(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("permission denied") && stderr.contains("run this as root"), "{args:?}: {stderr}");
        assert!(!stderr.contains("not ours") && !stderr.contains("remove it"), "{args:?}: {stderr}");
    }
    assert!(ok(&lab.host, &["routes"]).contains("198.51.100.0/24"), "nothing changed");

    for args in [&["routes"][..], &["status"], &["detach"]] {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.host.name()))
            .arg(env!("CARGO_BIN_EXE_lnetd-host-encap"))
            .args(["-i", "nope0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("no interface named \"nope0\""), "{args:?}: {stderr}");
    }
}
