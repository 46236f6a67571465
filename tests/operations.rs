//! Operator comforts and large tables (issue 21, parts 5 and 7): every read
//! command's `--output json` is one document with the documented envelope
//! and keys (docs/operations-json.md), without an agent and through one;
//! `status` reports the agent's last change and routes per origin; a table
//! over gRPC's 4 MB message limit is applied through `ApplyStream` and its
//! counters listed through `StreamRouteCounters` by a client with the
//! default limits; `apply` shows its phases on a terminal and nothing on a pipe.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{command, privileged, run, ChildGuard, PinGuard, TempFile};
use lnetd_host_encap::agent::proto::v1 as pb;
use lnetd_host_encap::testing::lab::{Netns, VethLab};
use serde_json::Value;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_lnetd-host-encap");

fn ok(ns: &Netns, args: &[&str]) -> Output {
    let out = run(ns, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The command's stdout as one JSON document with the envelope for `command`.
fn document(ns: &Netns, args: &[&str], command: &str) -> Value {
    let out = ok(ns, args);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{args:?} printed no JSON document ({e}): {}", String::from_utf8_lossy(&out.stdout))
    });
    envelope(&doc, command);
    // As documented: the envelope's keys first, in this order, and indented
    // (the test's serde_json sorts keys, so the text is read).
    let text = String::from_utf8_lossy(&out.stdout);
    let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap_or(usize::MAX);
    let first_other =
        doc.as_object().unwrap().keys().filter(|k| !["schema", "command", "interface"].contains(&k.as_str()));
    let first_other = first_other.map(|k| at(k)).min().unwrap_or(usize::MAX);
    assert!(at("schema") < at("command") && at("command") < at("interface"), "{args:?}: {text}");
    assert!(at("interface") < first_other, "{args:?}: the envelope first: {text}");
    assert!(text.starts_with("{\n  \"schema\""), "{args:?}: indented: {text}");
    doc
}

/// The envelope every document starts with.
fn envelope(doc: &Value, command: &str) {
    assert_eq!(doc["schema"], "lnetd-host-encap/v1", "{doc}");
    assert_eq!(doc["command"], command, "{doc}");
    assert_eq!(doc["interface"], VethLab::HOST_IF, "{doc}");
}

/// Asserts `doc` has each of `keys` (a present null counts: it is documented as "unknown").
fn has_keys(doc: &Value, keys: &[&str], what: &str) {
    let object = doc.as_object().unwrap_or_else(|| panic!("{what}: not an object: {doc}"));
    for key in keys {
        assert!(object.contains_key(*key), "{what} lacks {key:?}: {doc}");
    }
}

/// The agent's socket, removed when dropped (a killed agent leaves it).
struct Agent(ChildGuard, PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0 .0.kill();
        let _ = self.0 .0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn start_agent(lab: &VethLab) -> Agent {
    // A comparison of the kernel with the RIB a second after the start (status reports it).
    let child = command(&lab.host, &["agent", "--mode", "native", "--verify-interval", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the agent");
    let mut child = ChildGuard(child);
    let path = lab.host.run(|| lnetd_host_encap::agent::socket_path(VethLab::HOST_IF)).unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lab.host.run(|| std::os::unix::net::UnixStream::connect(&path).is_ok()).unwrap() {
        assert!(child.0.try_wait().unwrap().is_none(), "the agent exited");
        assert!(Instant::now() < deadline, "the agent did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Until its first comparison is in: before it, status rightly says "not
    // compared". A comparison paints the whole DIR-24-8 table, seconds in a
    // debug build: a CI run under load still had none 10 s after the start.
    let agent = Agent(child, path);
    let deadline = Instant::now() + Duration::from_secs(120);
    while document(&lab.host, &["status", "--output", "json"], "status")["kernel"]["based_on"] != "background" {
        assert!(Instant::now() < deadline, "the agent compared nothing within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    agent
}

/// Removes whatever the command and the agent left, when dropped.
struct ForceDetach<'a>(&'a Netns);

impl Drop for ForceDetach<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, &["detach", "--force"]);
    }
}

/// The first line `watch --output json` prints (after a second), then it is stopped.
fn first_watch_line(ns: &Netns) -> Value {
    let child = command(ns, &["watch", "--output", "json"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut child = ChildGuard(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let doc: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("watch printed {line:?}: {e}"));
    envelope(&doc, "watch");
    doc
}

/// Every read command's document, checked against docs/operations-json.md.
/// Returns `status`'s.
fn every_read(ns: &Netns) -> Value {
    let routes = document(ns, &["routes", "--output", "json"], "routes");
    has_keys(&routes, &["routes", "sources"], "routes");
    let route = routes["routes"].as_array().unwrap().iter().find(|r| r["prefix"] == "198.51.100.0/24").unwrap();
    has_keys(
        route,
        &[
            "prefix",
            "table",
            "policy",
            "tc",
            "entropy_label",
            "origin",
            "bgp_policy",
            "binding_sid",
            "counted",
            "labelled",
            "lists",
            "set_aside",
        ],
        "a route",
    );
    assert_eq!(route["policy"], "16001/16002@7,16003@3");
    assert_eq!(routes["sources"], serde_json::json!([{"prefix": "10.200.0.0/24", "table": 3}]));
    // `--json` is the same document.
    assert_eq!(document(ns, &["routes", "--json"], "routes"), routes);

    let stats = document(ns, &["stats", "--output", "json"], "stats");
    has_keys(&stats, &["labelled", "not_ip", "malformed", "local", "no_route", "mtu_dropped", "tx_errors"], "stats");
    has_keys(&stats["labelled"], &["packets", "bytes"], "a counter");
    envelope(&document(ns, &["stats", "--json"], "stats"), "stats");

    let get = document(ns, &["get", "198.51.100.7", "--output", "json"], "get");
    has_keys(&get, &["action", "outcome", "route", "list", "stack", "origin", "liveness", "text"], "get");
    assert_eq!((get["action"].as_str(), get["outcome"].as_str()), (Some("XDP_TX"), Some("labelled")), "{get}");
    assert_eq!(get["route"]["prefix"], "198.51.100.0/24");
    let labels: Vec<u64> = get["stack"].as_array().unwrap().iter().filter_map(|e| e["label"].as_u64()).collect();
    assert!(labels == [16001, 16002] || labels == [16003], "{get}");
    let unrouted = document(ns, &["get", "192.0.2.7", "--output", "json"], "get");
    assert_eq!((unrouted["outcome"].as_str(), &unrouted["route"]), (Some("no_route"), &Value::Null), "{unrouted}");

    let watch = first_watch_line(ns);
    has_keys(&watch, &["interval_s", "rates"], "watch");
    has_keys(&watch["rates"], &["labelled", "no_route", "tx_errors"], "watch's rates");

    // Through an agent, the kernel's line is its last comparison: the first
    // runs as it starts, so it may be a moment away.
    let mut status = document(ns, &["status", "--output", "json"], "status");
    let asked = Instant::now();
    while status["kernel"]["based_on"] == "not compared" && asked.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        status = document(ns, &["status", "--output", "json"], "status");
    }
    has_keys(
        &status,
        &["pinned", "attached", "mode", "program", "pins", "agent", "routes", "kernel", "bgp", "last_change", "sbfd"],
        "status",
    );
    assert_eq!((status["pinned"].as_bool(), status["attached"].as_bool()), (Some(true), Some(true)), "{status}");
    assert_eq!(status["mode"], "native");
    has_keys(&status["program"], &["id", "name", "ours"], "status.program");
    assert_eq!(status["program"]["ours"], true);
    has_keys(&status["routes"], &["total", "by_table", "by_origin", "sources"], "status.routes");
    assert_eq!(status["routes"]["total"], 3, "{status}");
    assert_eq!(status["routes"]["by_table"], serde_json::json!({"main": 2, "3": 1}));
    assert_eq!(status["kernel"]["matches"], true, "{status}");
    has_keys(&status["kernel"], &["matches", "differences", "example", "based_on", "at_unix_ms", "took_ms"], "kernel");
    let based_on = if status["agent"].is_null() { "compared now" } else { "background" };
    assert_eq!(status["kernel"]["based_on"], based_on, "{status}");
    status
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn every_read_commands_json_has_the_documented_keys_with_and_without_an_agent() {
    privileged("every_read_commands_json_has_the_documented_keys_with_and_without_an_agent");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _reset = ForceDetach(&lab.host);
    let ns = &lab.host;
    ok(ns, &["attach", "--mode", "native"]);
    let desired = TempFile::new(
        "desired.toml",
        r#"
        [[routes]]
        prefix = "0.0.0.0/0"
        policy = "1000000"
        [[routes]]
        prefix = "198.51.100.0/24"
        policy = "16001/16002@7,16003@3"
        [[routes]]
        prefix = "203.0.113.0/24"
        policy = "18001"
        table = 3
        [[sources]]
        prefix = "10.200.0.0/24"
        table = 3
        "#,
    );
    ok(ns, &["apply", desired.path()]);
    ok(ns, &["remove", "0.0.0.0/0"]);
    ok(ns, &["set", "100.64.0.0/10", "1000000"]);

    // Without an agent: the command reads the dataplane itself.
    let status = every_read(ns);
    assert_eq!((&status["agent"], &status["bgp"], &status["last_change"]), (&Value::Null, &Value::Null, &Value::Null));
    // Refusals are usage errors: JSON is for reads.
    let out = run(ns, &["set", "10.0.0.0/8", "100", "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("for the commands that read"));
    assert_eq!(run(ns, &["stats", "--prometheus", "--output", "json"]).status.code(), Some(2));

    // Through the agent: the same documents, and status says what the agent did.
    let _agent = start_agent(&lab);
    let status = every_read(ns);
    assert!(status["agent"]["socket"].as_str().is_some_and(|s| s.ends_with(".sock")), "{status}");
    assert!(status["agent"]["started_unix_ms"].as_u64().is_some_and(|ms| ms > 0), "{status}");
    assert_eq!(status["last_change"], Value::Null, "nothing changed since the agent started: {status}");
    ok(ns, &["set", "192.0.2.0/25", "17001"]);
    let status = document(ns, &["status", "--output", "json"], "status");
    assert_eq!(status["last_change"]["origin"], "agent", "{status}");
    assert_eq!(status["last_change"]["routes"], 1, "{status}");
    let since_start =
        status["last_change"]["at_unix_ms"].as_u64().unwrap() >= status["agent"]["started_unix_ms"].as_u64().unwrap();
    assert!(since_start, "{status}");
    let by_origin = status["routes"]["by_origin"].as_object().unwrap();
    let counted: u64 = by_origin.values().filter_map(Value::as_u64).sum();
    assert_eq!(counted, 4, "every route has one origin: {status}");
    let text = String::from_utf8(ok(ns, &["status"]).stdout).unwrap();
    assert!(text.contains("change: 1 routes by agent at 20"), "{text}");

    // A user without privileges gets the agent's part of the status.
    let nobody = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .args(["-S", "65534", "-G", "65534", BIN, "-i", VethLab::HOST_IF, "status", "--output", "json"])
        .output()
        .unwrap();
    assert!(nobody.status.success(), "status as uid 65534: {}", String::from_utf8_lossy(&nobody.stderr));
    let limited: Value = serde_json::from_slice(&nobody.stdout).unwrap();
    envelope(&limited, "status");
    assert_eq!(
        (&limited["last_change"], &limited["routes"]["total"]),
        (&status["last_change"], &4.into()),
        "{limited}"
    );

    // An export applies as it is, envelope included, through the agent.
    let export =
        TempFile::new("export.json", &String::from_utf8(ok(ns, &["routes", "--output", "json"]).stdout).unwrap());
    let out = String::from_utf8(ok(ns, &["apply", export.path()]).stdout).unwrap();
    assert!(out.contains("0 added") && out.contains("0 removed"), "{out}");
}

/// `N` distinct /24s, one stack: a desired state over 4 MB as one message.
fn large_table(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{}.{}.{}.0/24", 20 + i / 65536, i / 256 % 256, i % 256)).collect()
}

fn routes_message(prefixes: &[String], policy: &str) -> Vec<pb::Route> {
    prefixes.iter().map(|p| pb::Route { prefix: p.clone(), policy: policy.into(), ..Default::default() }).collect()
}

fn json_file(name: &str, prefixes: &[String], policy: &str) -> TempFile {
    let routes: Vec<Value> = prefixes.iter().map(|p| serde_json::json!({"prefix": p, "policy": policy})).collect();
    TempFile::new(name, &serde_json::json!({ "routes": routes }).to_string())
}

/// `ApplyStream` of `chunks`; its reply's messages concatenated (the
/// first has the counts, each at most 8192 keys per list).
async fn streamed_apply(
    c: &mut lnetd_host_encap::agent::proto::v1::encapsulator_client::EncapsulatorClient<tonic::transport::Channel>,
    chunks: Vec<pb::ApplyRequest>,
) -> pb::ApplyReply {
    let mut replies = c.apply_stream(tokio_stream::iter(chunks)).await.unwrap().into_inner();
    let mut all = replies.message().await.unwrap().expect("a first reply");
    let mut messages = 1;
    while let Some(more) = replies.message().await.unwrap() {
        messages += 1;
        assert!(more.summary.is_empty(), "only the first message has the summary");
        all.added.extend(more.added);
        all.removed.extend(more.removed);
        all.replaced.extend(more.replaced);
        all.sources_set.extend(more.sources_set);
    }
    assert!(messages > 1 || all.added.len() <= 8192, "{messages} reply message(s) for {} keys", all.added.len());
    all
}

/// Runs the command under a pseudo-terminal (`script`): stdout and stderr both go to it.
fn on_a_terminal(ns: &Netns, args: &[&str]) -> String {
    let line = std::iter::once(BIN.to_owned())
        .chain(["-i", VethLab::HOST_IF].iter().chain(args).map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .args(["script", "-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{line}: {text}");
    text
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn a_table_over_the_message_limit_is_applied_as_a_stream_and_its_counters_streamed_back() {
    privileged("a_table_over_the_message_limit_is_applied_as_a_stream_and_its_counters_streamed_back");
    let lab = VethLab::new().expect("lab");
    let _pins = PinGuard(&lab.host, VethLab::HOST_IF);
    let _reset = ForceDetach(&lab.host);
    let ns = &lab.host;
    const N: usize = 300_000;
    let prefixes = large_table(N);
    ok(ns, &["attach", "--mode", "native"]);
    let agent = start_agent(&lab);
    let path: &Path = &agent.1;
    let (one, applied, dry, chunks, listed, only_table_3) = lab
        .host
        .run(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                // A generated client with gRPC's default limits (4 MB each way).
                let mut c = lnetd_host_encap::agent::connect_local(path)
                    .await
                    .unwrap()
                    .max_decoding_message_size(4 << 20)
                    .max_encoding_message_size(usize::MAX);
                let whole = pb::ApplyRequest { routes: routes_message(&prefixes, "16001/16002"), ..Default::default() };
                // One message is over the agent's limit: Apply cannot carry the table.
                let one = c.apply(whole.clone()).await.map(|_| ()).map_err(|s| s.code());
                let chunks = |dry_run: bool| {
                    let mut v: Vec<pb::ApplyRequest> = whole
                        .routes
                        .chunks(10_000)
                        .map(|r| pb::ApplyRequest { routes: r.to_vec(), dry_run, ..Default::default() })
                        .collect();
                    v[0].sources = vec![pb::Source { prefix: "10.200.0.0/24".into(), table: 3 }];
                    v.push(pb::ApplyRequest {
                        routes: vec![pb::Route {
                            table: 3,
                            ..routes_message(&["0.0.0.0/0".into()], "18001")[0].clone()
                        }],
                        dry_run,
                        ..Default::default()
                    });
                    v
                };
                // A dry run first: it says the same and changes nothing.
                let dry = streamed_apply(&mut c, chunks(true)).await;
                let applied = streamed_apply(&mut c, chunks(false)).await;
                let mut stream =
                    c.stream_route_counters(pb::StreamRouteCountersRequest { table: None }).await.unwrap().into_inner();
                let (mut n, mut listed) = (0, Vec::new());
                while let Some(chunk) = stream.message().await.unwrap() {
                    n += 1;
                    listed.extend(chunk.routes.into_iter().map(|r| {
                        let route = r.route.unwrap();
                        // Counted or not (the default counts 65,536 routes), each says its counters.
                        assert!(r.labelled.is_some(), "{route:?} without counters");
                        (route.table, route.prefix)
                    }));
                }
                let mut only = c
                    .stream_route_counters(pb::StreamRouteCountersRequest { table: Some(3) })
                    .await
                    .unwrap()
                    .into_inner();
                let mut only_table_3 = Vec::new();
                while let Some(chunk) = only.message().await.unwrap() {
                    only_table_3.extend(chunk.routes.into_iter().map(|r| r.route.unwrap().prefix));
                }
                (one, applied, dry, n, listed, only_table_3)
            })
        })
        .unwrap();
    assert_eq!(one, Err(Code::OutOfRange), "Apply of {N} routes fits one message: the test proves nothing");
    assert!(dry.dry_run && dry.added.len() == N + 1, "dry run: {} added", dry.added.len());
    assert_eq!((applied.dry_run, applied.added.len(), applied.sources_set.len()), (false, N + 1, 1));
    assert!(chunks > 1, "{chunks} chunk(s)");
    let mut got = listed.clone();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), listed.len(), "a route came twice");
    let mut want: Vec<(u32, String)> = prefixes.iter().map(|p| (0, p.clone())).collect();
    want.push((3, "0.0.0.0/0".into()));
    want.sort();
    assert_eq!(got, want, "the stream holds exactly the applied routes");
    assert_eq!(only_table_3, ["0.0.0.0/0"]);

    // The command's apply goes through the stream too (a table of this size
    // did not fit its old Apply), and says nothing on a pipe's stderr.
    let half = json_file("half.json", &prefixes[..N / 2], "16001");
    let out = ok(ns, &["apply", half.path(), "--force"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{} replaced", N / 2)), "{stdout}");
    assert!(out.stderr.is_empty(), "progress noise off a terminal: {}", String::from_utf8_lossy(&out.stderr));
    let status = document(ns, &["status", "--output", "json"], "status");
    assert_eq!(status["routes"]["total"], N / 2, "{status}");
    assert_eq!(status["last_change"]["routes"], N + 1, "replaced + removed: {status}");

    // On a terminal, apply shows each phase with its time.
    let back = json_file("back.json", &prefixes, "16001/16002");
    let terminal = on_a_terminal(ns, &["apply", back.path()]);
    for phase in ["parsing ", "applying 300000 routes: "] {
        assert!(terminal.contains(phase), "no {phase:?} on a terminal: {terminal}");
    }
}
