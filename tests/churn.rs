//! Route churn under traffic: a sender streams UDP to 10,000 destinations
//! while routes covering them are added, replaced and deleted continuously.
//! Every frame that comes back must carry the labels of a route that was the
//! longest match for its destination at some moment of its flight, and no
//! frame may be lost: a default route is always there, so the old and the new
//! table would both have labelled every one.
//!
//! `LHE_CHURN_SECS` (default 30) sets the duration.

mod common;

use lnetd_host_encap::{Route, Table};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::privileged;
use ipnetwork::{IpNetwork, Ipv4Network};
use lnetd_host_encap::testing::lab::{Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{labels::decode_stack, Encapsulator, Label, LabelStack, XdpMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DESTINATIONS: u32 = 10_000;
const FIRST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
const VERSIONS: u32 = 20_000;
const DEFAULT_LABEL: u32 = 1_000_000;
/// The second label of every stack: proves stacks are replaced whole.
const BOTTOM: u32 = 16;

fn candidates() -> Vec<Ipv4Network> {
    let mut out: Vec<Ipv4Network> =
        (0..40).map(|i| Ipv4Network::new(Ipv4Addr::new(10, 1, i, 0), 24).unwrap()).collect();
    for third in [0, 16, 32] {
        out.push(Ipv4Network::new(Ipv4Addr::new(10, 1, third, 0), 20).unwrap());
    }
    out.push("10.1.0.0/16".parse().unwrap());
    out.push("10.0.0.0/8".parse().unwrap());
    out
}

fn label(index: usize, version: u32) -> u32 {
    assert!(version < VERSIONS);
    16 + 1 + index as u32 * VERSIONS + version
}

fn stack(top: u32) -> LabelStack {
    LabelStack::new(vec![Label::new(top).unwrap(), Label::new(BOTTOM).unwrap()]).unwrap()
}

/// One route change: done somewhere in [before, after].
struct Op {
    before: Instant,
    after: Instant,
    prefix: usize,
    version: Option<u32>,
}

struct History {
    prefixes: Vec<Ipv4Network>,
    /// Per prefix: (op index, version after it), starting with (0, Some(0)).
    changes: Vec<Vec<(usize, Option<u32>)>>,
    ops: Vec<Op>,
}

impl History {
    /// The route in force after the first `applied` ops: (prefix index, version) or None for the default.
    fn lpm(&self, dst: Ipv4Addr, applied: usize) -> Option<(usize, u32)> {
        let mut best: Option<(u8, usize, u32)> = None;
        for (i, p) in self.prefixes.iter().enumerate() {
            if !p.contains(dst) || best.is_some_and(|(len, _, _)| len >= p.prefix()) {
                continue;
            }
            let ch = &self.changes[i];
            let pos = ch.partition_point(|(op, _)| *op <= applied);
            if let Some((_, Some(version))) = pos.checked_sub(1).map(|k| ch[k]) {
                best = Some((p.prefix(), i, version));
            }
        }
        best.map(|(_, i, v)| (i, v))
    }

    /// True if `got` was the longest match for `dst` at some moment of [sent, received].
    fn plausible(&self, dst: Ipv4Addr, sent: Instant, received: Instant, got: Option<(usize, u32)>) -> bool {
        // Ops finished before the send were in force; ops begun before the receipt may have been.
        let lo = self.ops.partition_point(|op| op.after < sent);
        let hi = self.ops.partition_point(|op| op.before < received);
        (lo..=hi).any(|applied| self.lpm(dst, applied) == got)
    }
}

#[test]
#[ignore = "needs root (CAP_BPF, CAP_NET_ADMIN): run bash scripts/test.sh as root"]
fn route_churn_under_traffic() {
    privileged("route_churn_under_traffic");
    let secs: u64 = std::env::var("LHE_CHURN_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let lab = VethLab::new().expect("lab");
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF)).unwrap().unwrap();
    // Through the route cache (the table is too small for it by default): its
    // answers must never outlive a change.
    let builder = Encapsulator::builder().route_cache_min_routes(0);
    let enc = lab.host.run(|| builder.attach(VethLab::HOST_IF, XdpMode::Native)).unwrap().unwrap();
    let prefixes = candidates();
    enc.set_route(Table::Main, &Route::new("0.0.0.0/0".parse().unwrap(), stack(DEFAULT_LABEL))).unwrap();
    for (i, p) in prefixes.iter().enumerate() {
        enc.set_route(Table::Main, &Route::new(IpNetwork::V4(*p), stack(label(i, 0)))).unwrap();
    }
    let capture = lab
        .router
        .run(|| Capture::open(VethLab::ROUTER_IF).and_then(|c| c.with_buffer(256 << 20)))
        .unwrap()
        .expect("capture");
    let socket = lab.router.run(|| UdpSocket::bind("0.0.0.0:0")).unwrap().expect("udp socket");

    let stop = AtomicBool::new(false);
    let seed: u64 = rand::random();
    println!("churn: {secs} s, seed {seed}");
    let (sent_at, ops, frames) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut frames = Vec::new();
            loop {
                // Once the sender has stopped, half a second of silence ends the capture.
                let stopping = stop.load(Ordering::Relaxed);
                match capture.next(Duration::from_millis(500)).expect("capture") {
                    Some(f) if !f.outgoing && f.bytes.get(12..14) == Some(&[0x88, 0x47]) => {
                        frames.push((Instant::now(), f.bytes))
                    }
                    Some(_) => {}
                    None if stopping => return frames,
                    None => {}
                }
            }
        });
        let churner = s.spawn(|| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut versions = vec![0u32; prefixes.len()];
            let mut ops = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = rng.random_range(0..prefixes.len());
                let before = Instant::now();
                let version = if rng.random_bool(0.6) {
                    versions[i] += 1;
                    enc.set_route(Table::Main, &Route::new(IpNetwork::V4(prefixes[i]), stack(label(i, versions[i]))))
                        .expect("replace");
                    Some(versions[i])
                } else {
                    enc.remove(Table::Main, IpNetwork::V4(prefixes[i])).expect("delete");
                    None
                };
                ops.push(Op { before, after: Instant::now(), prefix: i, version });
                std::thread::sleep(Duration::from_micros(300));
            }
            ops
        });
        let mut sent_at = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(secs);
        'send: while Instant::now() < deadline {
            for _ in 0..64 {
                let seq = sent_at.len() as u64;
                let dst = Ipv4Addr::from(u32::from(FIRST) + (seq % u64::from(DESTINATIONS)) as u32);
                sent_at.push(Instant::now());
                if socket.send_to(&seq.to_be_bytes(), SocketAddr::new(dst.into(), 9)).is_err() {
                    sent_at.pop();
                    continue 'send;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        let ops = churner.join().unwrap();
        (sent_at, ops, receiver.join().unwrap())
    });

    let mut changes: Vec<Vec<(usize, Option<u32>)>> = vec![vec![(0, Some(0))]; prefixes.len()];
    for (k, op) in ops.iter().enumerate() {
        changes[op.prefix].push((k + 1, op.version));
    }
    let history = History { prefixes: prefixes.clone(), changes, ops };
    let by_label: HashMap<u32, (usize, u32)> =
        (0..prefixes.len()).flat_map(|i| (0..VERSIONS).map(move |v| (label(i, v), (i, v)))).collect();

    let mut bad = Vec::new();
    let mut seen = vec![false; sent_at.len()];
    for (received, bytes) in &frames {
        let (entries, inner) = decode_stack(&bytes[14..]).expect("a label stack");
        let dst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
        let seq = u64::from_be_bytes(inner[28..36].try_into().unwrap()) as usize;
        seen[seq] = true;
        let labels: Vec<u32> = entries.iter().map(|e| e.label).collect();
        let got = match labels.as_slice() {
            [DEFAULT_LABEL, BOTTOM] => None,
            [top, BOTTOM] => match by_label.get(top) {
                Some(r) => Some(*r),
                None => {
                    bad.push(format!("seq {seq}: unknown label {top}"));
                    continue;
                }
            },
            other => {
                bad.push(format!("seq {seq}: stack {other:?} is not one that was ever programmed"));
                continue;
            }
        };
        if !history.plausible(dst, sent_at[seq], *received, got) {
            bad.push(format!("seq {seq} to {dst}: labels {labels:?} were never its longest match during its flight"));
        }
    }
    let stats = enc.stats().unwrap();
    let lost = seen.iter().filter(|s| !**s).count();
    println!(
        "churn: {} packets sent, {} route changes, {} labelled frames captured, {} not captured, {} wrong; {stats:?}",
        sent_at.len(),
        history.ops.len(),
        frames.len(),
        lost,
        bad.len()
    );
    assert!(bad.is_empty(), "{} wrong frames, e.g.:\n{}", bad.len(), bad[..bad.len().min(10)].join("\n"));
    assert!(history.ops.len() > 1000, "routes changed continuously");
    assert_eq!(stats.no_route.packets + stats.aborted.packets + stats.mtu_dropped.packets, 0, "{stats:?}");
    assert_eq!(stats.labelled.packets, sent_at.len() as u64, "every packet sent was labelled by the program");
    assert_eq!(lost, 0, "every labelled frame came back on the wire");
}
