//! The agent's guards on `apply` (issue 21, parts 4 and 5): the removal
//! guard is checked by the agent with the change (one round trip: the
//! command's `apply` without `--force` sends the share it allows, the agent
//! refuses with the counts and a sample, nothing changed); an `ApplyStream`
//! over the agent's `--max-apply-bytes` is refused with OUT_OF_RANGE before
//! anything is applied; `status` through the agent says which comparison of
//! the kernel with the RIB its answer is based on.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{command, privileged, run, ChildGuard, PinGuard, TempFile};
use lnetd_host_encap::agent::proto::v1 as pb;
use lnetd_host_encap::testing::lab::{Netns, VethLab};
use serde_json::Value;
use tonic::Code;

fn ok(ns: &Netns, args: &[&str]) -> String {
    let out = run(ns, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Removes whatever the command and the agent left, when dropped.
struct ForceDetach<'a>(&'a Netns);

impl Drop for ForceDetach<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, &["detach", "--force"]);
    }
}

/// The routes in force, as `routes --output json` lists them (prefix, policy).
fn routes(ns: &Netns) -> Vec<(String, String)> {
    let doc: Value = serde_json::from_str(&ok(ns, &["routes", "--output", "json"])).unwrap();
    let mut v: Vec<(String, String)> = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["prefix"].as_str().unwrap().to_owned(), r["policy"].as_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

/// `status --output json`, once the agent has compared the kernel with the RIB.
fn status_once_verified(ns: &Netns) -> Value {
    let asked = Instant::now();
    loop {
        let status: Value = serde_json::from_str(&ok(ns, &["status", "--output", "json"])).unwrap();
        if status["kernel"]["based_on"] != "not compared" || asked.elapsed() > Duration::from_secs(10) {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn the_agent_guards_removals_and_the_size_of_a_stream() {
    privileged("the_agent_guards_removals_and_the_size_of_a_stream");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _reset = ForceDetach(&lab.host);
    let ns = &lab.host;
    ok(ns, &["attach", "--mode", "native"]);
    let four = TempFile::new(
        "four.json",
        r#"{"routes": [
            {"prefix": "198.51.100.0/24", "policy": "16001"},
            {"prefix": "198.51.101.0/24", "policy": "16002"},
            {"prefix": "198.51.102.0/24", "policy": "16003"},
            {"prefix": "198.51.103.0/24", "policy": "16004"}]}"#,
    );
    ok(ns, &["apply", four.path()]);
    // A stream of 20,000 bytes at most: a 1,000-route apply is over it.
    // A comparison of the kernel with the RIB every second (the first a second after the start).
    let agent = command(ns, &["agent", "--mode", "native", "--max-apply-bytes", "20000", "--verify-interval", "1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the agent");
    let mut agent = ChildGuard(agent);
    let path = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF)).unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.host.run(|| std::os::unix::net::UnixStream::connect(&path).is_ok()).unwrap() {
        assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
        assert!(Instant::now() < deadline, "the agent did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = routes(ns);
    assert_eq!(before.len(), 4);

    // The command through the agent: 3 of 4 removed is over the default 50%.
    let one = TempFile::new("one.json", r#"{"routes": [{"prefix": "198.51.100.0/24", "policy": "16001"}]}"#);
    let out = run(ns, &["apply", one.path()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("removes 3 of 4 routes (75%), more than --max-remove-share 50%"), "{stderr}");
    assert!(stderr.contains("e.g. 198.51.101.0/24, 198.51.102.0/24, 198.51.103.0/24"), "{stderr}");
    assert!(stderr.contains("nothing changed; check it with --dry-run, then pass --force"), "{stderr}");
    assert_eq!(routes(ns), before, "a refused apply changed the table");
    // A larger share lets it through; so does --force.
    let out = ok(ns, &["apply", one.path(), "--max-remove-share", "80%", "--dry-run"]);
    assert!(out.contains("3 removed") && out.contains("of 4 routes now"), "{out}");
    assert_eq!(routes(ns), before, "a dry run changed the table");

    // A client of the API: the same refusal, with its counts in the status details.
    let sock = path.clone();
    let (refused, over, at_limit) = lab
        .host
        .run(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut c = lnetd_host_encap::agent::connect_local(&sock).await.unwrap();
                let route = |p: &str| pb::Route { prefix: p.into(), policy: "16001".into(), ..Default::default() };
                let request = pb::ApplyRequest {
                    routes: vec![route("198.51.100.0/24")],
                    max_remove_share: Some(0.5),
                    ..Default::default()
                };
                let refused = c.apply(request).await.map(|_| ()).unwrap_err();
                // 1,000 routes, about 25 bytes each: over 20,000 bytes in all, in chunks of 100.
                let many: Vec<pb::Route> =
                    (0..1000).map(|i| route(&format!("10.{}.{}.0/24", i / 256, i % 256))).collect();
                let chunks: Vec<pb::ApplyRequest> =
                    many.chunks(100).map(|r| pb::ApplyRequest { routes: r.to_vec(), ..Default::default() }).collect();
                let over = c.apply_stream(tokio_stream::iter(chunks)).await.map(|_| ()).unwrap_err();
                // Under the limit, a stream is applied (the four routes, unchanged).
                let same: Vec<pb::ApplyRequest> = before_routes()
                    .into_iter()
                    .map(|(p, pol)| pb::ApplyRequest {
                        routes: vec![pb::Route { prefix: p, policy: pol, ..Default::default() }],
                        max_remove_share: Some(0.0),
                        ..Default::default()
                    })
                    .collect();
                let at_limit = c.apply_stream(tokio_stream::iter(same)).await.map(|r| r.into_inner());
                let at_limit = match at_limit {
                    Ok(mut replies) => Ok(replies.message().await.unwrap().unwrap()),
                    Err(s) => Err(s),
                };
                (refused, over, at_limit)
            })
        })
        .unwrap();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let details = lnetd_host_encap::agent::details::removal_refused(&refused).expect("a RemovalRefused in the details");
    assert_eq!((details.removed, details.current, details.max_remove_share), (3, 4, 0.5), "{details:?}");
    assert_eq!((details.added, details.replaced), (0, 0), "{details:?}");
    let sample: Vec<&str> = details.sample.iter().map(|k| k.prefix.as_str()).collect();
    assert_eq!(sample, ["198.51.101.0/24", "198.51.102.0/24", "198.51.103.0/24"]);
    assert_eq!(over.code(), Code::OutOfRange, "{over:?}");
    assert!(over.message().contains("--max-apply-bytes"), "{}", over.message());
    let same = at_limit.expect("a stream under the limit is applied");
    assert_eq!((same.unchanged, same.added.len(), same.removed.len()), (4, 0, 0), "{same:?}");
    assert_eq!(routes(ns), before, "a refused stream changed the table");

    // --force applies without the guard.
    let out = ok(ns, &["apply", one.path(), "--force"]);
    assert!(out.contains("3 removed"), "{out}");
    assert_eq!(routes(ns).len(), 1);

    // status: the kernel line is the agent's last comparison, and says so.
    let status = status_once_verified(ns);
    assert_eq!(status["kernel"]["matches"], true, "{status}");
    assert_eq!(status["kernel"]["based_on"], "background", "{status}");
    assert_eq!(status["agent"]["verify_interval_s"], 1, "{status}");
    assert_eq!(status["routes"]["total"], 1, "counted after the last change: {status}");
    let text = ok(ns, &["status"]);
    assert!(text.contains("kernel: matches the RIB as of 20"), "{text}");
    assert!(text.contains("by the agent's comparison, every 1 s"), "{text}");
    drop(agent);
    // Without the schedule, a `verify` through the agent is the comparison status reports.
    let agent = command(ns, &["agent", "--mode", "native", "--verify-interval", "0"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the agent");
    let agent = ChildGuard(agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.host.run(|| std::os::unix::net::UnixStream::connect(&path).is_ok()).unwrap() {
        assert!(Instant::now() < deadline, "the agent did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status: Value = serde_json::from_str(&ok(ns, &["status", "--output", "json"])).unwrap();
    assert_eq!(
        (&status["kernel"]["based_on"], &status["kernel"]["matches"], &status["agent"]["verify_interval_s"]),
        (&"not compared".into(), &Value::Null, &0.into()),
        "{status}"
    );
    assert!(ok(ns, &["status"]).contains("kernel: not compared with the RIB yet"));
    assert!(ok(ns, &["verify"]).contains("matches the RIB"));
    let status: Value = serde_json::from_str(&ok(ns, &["status", "--output", "json"])).unwrap();
    assert_eq!(status["kernel"]["based_on"], "verify", "{status}");
    drop(agent);
}

/// The four routes the test starts with.
fn before_routes() -> Vec<(String, String)> {
    (0..4).map(|i| (format!("198.51.10{i}.0/24"), format!("1600{}", i + 1))).collect()
}
