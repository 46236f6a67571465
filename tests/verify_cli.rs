//! `verify` and `repair` as an operator runs them: entries deleted behind
//! the library's back are listed one per line (and as JSON) with exit code 1,
//! `status` says so, `repair` says what it fixed and `verify` is clean again;
//! through a running agent the same goes over its local socket, where
//! `Repair` is a change (refused to a user who may not write) and `Verify` a read.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{privileged, ChildGuard, PinGuard};
use lnetd_host_encap::testing::delete_map_entry;
use lnetd_host_encap::testing::lab::{Netns, VethLab};
use lnetd_host_encap::{encap::AdoptOptions, IpNetwork};

const BIN: &str = env!("CARGO_BIN_EXE_lnetd-host-encap");

fn command(ns: &Netns, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{}", ns.name())).arg(BIN).args(["-i", VethLab::HOST_IF]).args(args);
    c
}

fn run(ns: &Netns, args: &[&str]) -> (Option<i32>, String, String) {
    let Output { status, stdout, stderr } = command(ns, args).output().expect("run lnetd-host-encap");
    (status.code(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

fn ok(ns: &Netns, args: &[&str]) -> String {
    let (code, out, err) = run(ns, args);
    assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    out
}

/// Deletes the kernel entries of `prefixes` (LPM tries) as another process
/// would, through a reader's handle (an agent may own the dataplane).
fn delete_behind_the_back(ns: &Netns, prefixes: &[&str]) {
    ns.run(|| {
        let options = AdoptOptions { read_only: true, replace_program: false, ..AdoptOptions::default() };
        let enc = options.open(VethLab::HOST_IF).expect("adopt to read");
        for p in prefixes {
            let p: IpNetwork = p.parse().unwrap();
            let mut key = u32::from(p.prefix()).to_ne_bytes().to_vec();
            match p {
                IpNetwork::V4(n) => key.extend(n.network().octets()),
                IpNetwork::V6(n) => key.extend(n.network().octets()),
            }
            let map = if p.is_ipv4() { "routes_v4" } else { "routes_v6" };
            delete_map_entry(&enc, map, &key).expect("delete");
        }
    })
    .unwrap();
}

const MISSING_V4: &str = "routes_v4 10.1.0.0/24: missing from the kernel";
const MISSING_V6: &str = "routes_v6 2001:db8::/32: missing from the kernel";

/// Differences are found, listed and repaired; `expect_agent` says which path served.
fn find_and_repair(ns: &Netns, through_agent: bool) {
    let clean = format!("{}: the kernel matches the RIB\n", VethLab::HOST_IF);
    assert_eq!(ok(ns, &["verify"]), clean);
    delete_behind_the_back(ns, &["10.1.0.0/24", "2001:db8::/32"]);

    let (code, out, err) = run(ns, &["--log", "info", "verify"]);
    assert_eq!(code, Some(1), "verify with differences exits 1: {out}{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), [MISSING_V4, MISSING_V6], "{out}");
    assert!(err.contains("2 differences between the kernel and the RIB") && err.contains("repair"), "{err}");
    assert_eq!(err.contains("going through"), through_agent, "{err}");

    let (code, out, _) = run(ns, &["verify", "--output", "json"]);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let found = json["differences"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{json}");
    assert_eq!((found[0]["map"].as_str(), found[0]["entry"].as_str()), (Some("routes_v4"), Some("10.1.0.0/24")));
    assert!(found.iter().all(|d| d["kind"] == "missing"), "{json}");
    assert!(ok(ns, &["status"]).contains("kernel: 2 differences from the RIB"));

    let repaired = ok(ns, &["repair"]);
    assert!(repaired.contains(&format!("repaired: {MISSING_V4}")), "{repaired}");
    assert!(repaired.contains(&format!("repaired: {MISSING_V6}")), "{repaired}");
    assert!(repaired.contains("2 differences repaired"), "{repaired}");
    assert_eq!(ok(ns, &["verify"]), clean);
    assert!(ok(ns, &["status"]).contains("kernel: matches the RIB"));
    let json: serde_json::Value = serde_json::from_str(&ok(ns, &["repair", "--output", "json"])).unwrap();
    assert_eq!(json["repaired"], serde_json::json!([]), "{json}");
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn verify_lists_what_differs_and_repair_fixes_it() {
    privileged("verify_lists_what_differs_and_repair_fixes_it");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let ns = &lab.host;
    ok(ns, &["attach", "--lookup", "lpm", "--mode", "generic"]);
    ok(ns, &["set", "10.1.0.0/24", "16001"]);
    ok(ns, &["set", "2001:db8::/32", "16002/16003"]);
    find_and_repair(ns, false);
}

/// Removes the agent's socket (left by a killed agent) and whatever the agent pinned.
struct AgentLeftovers<'a>(&'a Netns, PathBuf);

impl Drop for AgentLeftovers<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
        let _ = command(self.0, &["detach", "--force"]).output();
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn through_the_agent_verify_is_a_read_and_repair_a_change() {
    privileged("through_the_agent_verify_is_a_read_and_repair_a_change");
    let lab = VethLab::new().expect("lab");
    let ns = &lab.host;
    let socket = ns.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF)).unwrap().unwrap();
    let _leftovers = AgentLeftovers(ns, socket.clone());
    // The LPM lookup (the test deletes trie entries); the agent adopts it.
    ok(ns, &["attach", "--lookup", "lpm", "--mode", "generic"]);
    let child = command(ns, &["agent", "--mode", "generic"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the agent");
    let mut agent = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns.run(|| std::os::unix::net::UnixStream::connect(&socket).is_ok()).unwrap() {
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        assert!(Instant::now() < deadline, "the agent did not listen within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(ns, &["set", "10.1.0.0/24", "16001"]);
    ok(ns, &["set", "2001:db8::/32", "16002/16003"]);
    find_and_repair(ns, true);

    // Another user (nobody, no groups): may read, may not repair.
    delete_behind_the_back(ns, &["10.1.0.0/24"]);
    let as_nobody = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .args(["-S", "65534", "-G", "65534", BIN, "-i", VethLab::HOST_IF])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_nobody(&["verify"]);
    assert_eq!((code, out.trim()), (Some(1), MISSING_V4), "{err}");
    let (code, _, err) = as_nobody(&["repair"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("refused by the agent") && err.contains("Repair"), "{err}");
    assert!(ok(ns, &["repair"]).contains(&format!("repaired: {MISSING_V4}")));
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent still runs");
}

/// A table of 21 (18 routes and the host's three entries: 10.200.0.2, its
/// subnet broadcast 10.200.0.255 and 127.0.0.1) holding 18 routes the RIB does not know while 18 it knows
/// are missing (the kernel one change ahead of the state, as after a restore
/// of the state or a kill mid-apply): writing what is missing first finds the
/// table full, so the repair deletes first, and ends with the RIB's table.
#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_repair_of_a_full_table_deletes_first() {
    privileged("a_repair_of_a_full_table_deletes_first");
    use std::os::unix::fs::MetadataExt;
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let ns = &lab.host;
    let dir = std::env::temp_dir().join(format!("lhe-fullrepair-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _dir = DirGuard(dir.clone());
    let table = |second: u8, base: u32| {
        let routes: Vec<String> =
            (0..18).map(|i| format!(r#"{{"prefix":"10.{second}.{i}.0/24","policy":"{}"}}"#, base + i)).collect();
        let path = dir.join(format!("{second}.json"));
        std::fs::write(&path, format!(r#"{{"routes":[{}]}}"#, routes.join(","))).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (a, b) = (table(0, 16_000), table(1, 17_000));
    // h0's IPv6 link-local address comes up on its own a moment after the
    // link (DAD): wait for it, or one arriving between the saved state and
    // the second apply is a 19th difference (a host entry the saved RIB lacks).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = ns
            .run(|| Command::new("ip").args(["-6", "addr", "show", "dev", VethLab::HOST_IF, "scope", "link"]).output())
            .expect("ns")
            .expect("ip");
        let text = String::from_utf8_lossy(&shown.stdout).into_owned();
        if text.contains("inet6 fe80") && !text.contains("tentative") {
            break;
        }
        assert!(Instant::now() < deadline, "no settled link-local address on h0: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(ns, &["attach", "--lookup", "lpm", "--max-routes-v4", "21", "--mode", "generic"]);
    ok(ns, &["apply", &a]);
    let before = ok(ns, &["routes", "--json"]);
    let ino = std::fs::metadata(format!("/run/netns/{}", ns.name())).unwrap().ino();
    let state = lnetd_host_encap::pins::PinRoots::default().state.join(format!("net{ino}")).join(VethLab::HOST_IF);
    let saved = dir.join("state");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let _ = std::fs::remove_dir_all(to);
        let out = Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap();
        assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    };
    copy(&state, &saved);
    ok(ns, &["apply", &b, "--force"]);
    copy(&saved, &state);

    let (code, out, err) = run(ns, &["verify"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(out.lines().filter(|l| l.ends_with("missing from the kernel")).count(), 18, "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with("in the kernel but not in the RIB")).count(), 18, "{out}");
    let repaired = ok(ns, &["repair"]);
    assert!(repaired.contains("36 differences repaired"), "{repaired}");
    assert_eq!(run(ns, &["verify"]).0, Some(0));
    assert_eq!(ok(ns, &["routes", "--json"]), before);
}

/// Removes a directory when dropped.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
