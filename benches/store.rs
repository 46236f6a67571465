//! Durable state at full-table scale, two candidates in one run: this
//! crate's store (a binary snapshot plus a checksummed, fdatasync'd journal:
//! `lnetd_host_encap::testing::StoreBench`, the code a pinned dataplane runs)
//! against an embedded transactional database (redb, one table keyed by
//! route, the same compact record encoding, `Durability::Immediate`).
//!
//! Measured for each: writing 1,000,000 IPv4 (BGP-like lengths) + 200,000
//! IPv6 routes whole (a snapshot; redb: one transaction), its bytes per
//! route, reading it all back into the RIB's maps (routes, counter slots), one changed route made
//! durable (median of LHE_STORE_SINGLES), and a batch of 1,000 changed
//! routes made durable (median of LHE_STORE_BATCHES). Ratios are redb's time
//! over the store's. No root needed: `cargo bench --bench store`.
//! LHE_BENCH_V4 / LHE_BENCH_V6 change the table; LHE_STORE_DIR the
//! directory (default: the temporary directory; the crate keeps its state
//! under /run).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fixtures::tables::{bgp_like_v4, bgp_like_v6};
use lnetd_host_encap::testing::StoreBench;
use lnetd_host_encap::{IpNetwork, Label, LabelStack, Policy, Route};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

const ROUTES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("routes");

fn env(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn route(p: IpNetwork, i: usize) -> Route {
    // Labels from a pool of 65,536, as in issue 20's measurements.
    Route::with_policy(p, Policy::single(LabelStack::single(Label::new(16 + (i % 65_536) as u32).expect("label"))))
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|e| e.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// What one candidate measured.
struct Row {
    write: Duration,
    bytes: u64,
    load: Duration,
    single: Duration,
    batch: Duration,
}

fn journal_and_snapshot(dir: &Path, routes: &[Route], changes: &[Vec<Route>], singles: usize) -> Row {
    let mut store = StoreBench::new(routes.iter().cloned());
    let t = Instant::now();
    store.write(dir).expect("write the store");
    let write = t.elapsed();
    let bytes = dir_size(dir);
    let t = Instant::now();
    let n = StoreBench::load(dir).expect("load the store");
    let load = t.elapsed();
    assert_eq!(n, routes.len());
    let single = median(
        (0..singles)
            .map(|i| {
                let r = [changes[i % changes.len()][0].clone()];
                let t = Instant::now();
                store.set(&r).expect("one change");
                t.elapsed()
            })
            .collect(),
    );
    let batch = median(
        changes
            .iter()
            .map(|c| {
                let t = Instant::now();
                store.set(c).expect("a batch");
                t.elapsed()
            })
            .collect(),
    );
    // Everything written is read back, journal included.
    assert_eq!(StoreBench::load(dir).expect("reload"), routes.len());
    Row { write, bytes, load, single, batch }
}

fn redb(dir: &Path, routes: &[Route], changes: &[Vec<Route>], singles: usize) -> Row {
    let path = dir.join("routes.redb");
    let db = Database::create(&path).expect("create the database");
    let t = Instant::now();
    let put = |db: &Database, routes: &[Route]| {
        let mut txn = db.begin_write().expect("a write transaction");
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(ROUTES).expect("the table");
            for (i, r) in routes.iter().enumerate() {
                let (k, v) = StoreBench::encode(r, i as u32 + 1);
                table.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    };
    put(&db, routes);
    let write = t.elapsed();
    drop(db);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let db = Database::open(&path).expect("open the database");
    let read = db.begin_read().expect("a read transaction");
    let table = read.open_table(ROUTES).expect("the table");
    // What the RIB holds: the routes, and each one's counter slot.
    let (mut map, mut slots) = (BTreeMap::new(), BTreeMap::new());
    for entry in table.iter().expect("iterate") {
        let (k, v) = entry.expect("an entry");
        let (r, slot) = StoreBench::decode(k.value(), v.value()).expect("decode");
        slots.insert(r.prefix, slot);
        map.insert(r.prefix, r);
    }
    let load = t.elapsed();
    assert_eq!(map.len(), routes.len());
    assert_eq!(table.len().expect("len") as usize, routes.len());
    drop((table, read));
    let single = median(
        (0..singles)
            .map(|i| {
                let r = [changes[i % changes.len()][0].clone()];
                let t = Instant::now();
                put(&db, &r);
                t.elapsed()
            })
            .collect(),
    );
    let batch = median(
        changes
            .iter()
            .map(|c| {
                let t = Instant::now();
                put(&db, c);
                t.elapsed()
            })
            .collect(),
    );
    Row { write, bytes, load, single, batch }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let (n4, n6) = (env("LHE_BENCH_V4", 1_000_000), env("LHE_BENCH_V6", 200_000));
    let (singles, batches) = (env("LHE_STORE_SINGLES", 200), env("LHE_STORE_BATCHES", 20));
    let prefixes: Vec<IpNetwork> = bgp_like_v4(n4).into_iter().chain(bgp_like_v6(n6)).collect();
    let routes: Vec<Route> = prefixes.iter().enumerate().map(|(i, p)| route(*p, i)).collect();
    // Batches of 1,000 relabelled routes spread over the table.
    let stride = (routes.len() / (batches * 1000)).max(1);
    let changes: Vec<Vec<Route>> = (0..batches)
        .map(|b| (0..1000).map(|j| (b * 1000 + j) * stride % routes.len()).map(|i| route(prefixes[i], i + 7)).collect())
        .collect();
    let root = std::env::var("LHE_STORE_DIR").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let dir = |name: &str| {
        let d = root.join(format!("lhe-store-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("a bench directory");
        d
    };
    let (ours_dir, redb_dir) = (dir("journal"), dir("redb"));
    println!("{} routes ({n4} IPv4 + {n6} IPv6) in {}", routes.len(), root.display());
    let ours = journal_and_snapshot(&ours_dir, &routes, &changes, singles);
    let theirs = redb(&redb_dir, &routes, &changes, singles);
    let _ = std::fs::remove_dir_all(&ours_dir);
    let _ = std::fs::remove_dir_all(&redb_dir);

    let n = routes.len() as f64;
    println!("\n| measure | journal + snapshot | redb | redb / journal |");
    println!("|---|---|---|---|");
    let rows: [(&str, Duration, Duration); 4] = [
        ("write the whole table (snapshot / one transaction)", ours.write, theirs.write),
        ("load the whole table into the RIB's maps", ours.load, theirs.load),
        ("one change made durable (median)", ours.single, theirs.single),
        ("a batch of 1,000 changes made durable (median)", ours.batch, theirs.batch),
    ];
    for (what, a, b) in rows {
        println!("| {what} | {} | {} | {:.1}x |", ms(a), ms(b), b.as_secs_f64() / a.as_secs_f64());
    }
    let (a, b) = (ours.bytes as f64 / n, theirs.bytes as f64 / n);
    println!("| bytes per route on disk | {a:.1} | {b:.1} | {:.1}x |", b / a);
}
