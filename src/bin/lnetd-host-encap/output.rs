//! What the command prints: tables a person reads, JSON a program reads.

use indicatif::{ProgressBar, ProgressStyle};
use lnetd_host_encap::{ApplyReport, CountedRoute, Counter, IpNetwork, Stats, Table};
use serde_json::{json, Value};

/// Above this many routes, an apply shows a spinner on a terminal.
const LARGE_APPLY: usize = 10_000;
/// Changes listed one by one up to this many per kind.
const LISTED: usize = 20;

/// The policy in the syntax `set` and `apply` take (no entropy label: it has its own field).
fn policy_text(r: &CountedRoute) -> String {
    if !r.route.policy.is_valid() {
        return "invalid".into();
    }
    let lists = r.route.policy.lists();
    let one = lists.len() == 1;
    lists
        .iter()
        .map(|l| if one && l.weight == 1 { l.stack.to_string() } else { format!("{}@{}", l.stack, l.weight) })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn table_suffix(table: Table) -> String {
    match table {
        Table::Main => String::new(),
        Table::Alternate(id) => format!(" in table {id}"),
    }
}

pub fn spinner(routes: usize) -> Option<ProgressBar> {
    if routes < LARGE_APPLY || !super::stderr_is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("applying {routes} routes"));
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(bar)
}

pub fn report(report: &ApplyReport) {
    println!("{report}");
    let routes = |label: &str, items: &[(Table, IpNetwork)]| {
        for (table, prefix) in items.iter().take(LISTED) {
            println!("  {label} {prefix}{}", table_suffix(*table));
        }
        if items.len() > LISTED {
            println!("  ... and {} more {label}", items.len() - LISTED);
        }
    };
    routes("added", &report.added);
    routes("replaced", &report.replaced);
    routes("removed", &report.removed);
    for p in report.set_aside.iter().take(LISTED) {
        println!("  set aside {p} (a host address: never labelled while it is one)");
    }
}

fn counter(c: Counter) -> Value {
    json!({ "packets": c.packets, "bytes": c.bytes })
}

/// Where a route came from: (origin, for a BGP route its policy text and binding SID).
pub type OriginOf<'a> = &'a dyn Fn(Table, IpNetwork) -> (String, Option<String>, Option<u32>);

pub fn routes_json(routes: &[CountedRoute], sources: &[(IpNetwork, Table)], origin: OriginOf) -> String {
    let routes: Vec<Value> = routes
        .iter()
        .map(|r| {
            let (from, policy, bsid) = origin(r.table, r.route.prefix);
            json!({
                "prefix": r.route.prefix.to_string(),
                "origin": from,
                "bgp_policy": policy,
                "binding_sid": bsid,
                "table": r.table.id(),
                "policy": policy_text(r),
                "tc": r.route.tc.to_string(),
                "entropy_label": r.route.policy.entropy_label().map(|e| e.to_string()),
                "policy_name": r.route.policy.name(),
                "counted": r.counters.counted,
                "labelled": counter(r.counters.labelled),
                "lists": r.route.policy.lists().iter().zip(&r.counters.lists).map(|(l, c)| json!({
                    "stack": l.stack.to_string(), "weight": l.weight, "packets": c.packets, "bytes": c.bytes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let sources: Vec<Value> =
        sources.iter().map(|(p, t)| json!({ "prefix": p.to_string(), "table": t.id() })).collect();
    serde_json::to_string_pretty(&json!({ "routes": routes, "sources": sources })).unwrap_or_default()
}

pub fn routes_table(routes: &[CountedRoute], sources: &[(IpNetwork, Table)], origin: OriginOf) {
    println!(
        "{:<44} {:>5} {:<7} {:<40} {:>4} {:>6} {:>12} {:>14}",
        "PREFIX", "TABLE", "ORIGIN", "POLICY", "TC", "EL", "PACKETS", "BYTES"
    );
    for r in routes {
        let (packets, bytes) = if r.counters.counted {
            (r.counters.labelled.packets.to_string(), r.counters.labelled.bytes.to_string())
        } else {
            ("-".into(), "-".into())
        };
        let (from, bgp, _) = origin(r.table, r.route.prefix);
        println!(
            "{:<44} {:>5} {:<7} {:<40} {:>4} {:>6} {:>12} {:>14}{}",
            r.route.prefix.to_string(),
            if r.table == Table::Main { "main".to_owned() } else { r.table.id().to_string() },
            from,
            policy_text(r),
            r.route.tc.to_string(),
            r.route.policy.entropy_label().map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
            packets,
            bytes,
            bgp.map(|p| format!("  ({p})")).unwrap_or_default(),
        );
    }
    for (p, t) in sources {
        println!("source {p} -> table {}", t.id());
    }
}

pub fn stats_json(iface: &str, stats: &Stats) -> String {
    let mut out = serde_json::Map::new();
    out.insert("interface".into(), json!(iface));
    for (name, c) in stats.named() {
        out.insert(name.into(), counter(c));
    }
    // null: the driver does not say (generic mode, egress, or no such counter).
    out.insert("tx_errors".into(), json!(stats.tx_errors));
    serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
}

pub fn stats_table(stats: &Stats) {
    println!("{:<12} {:>14} {:>16}", "COUNTER", "PACKETS", "BYTES");
    for (name, c) in stats.named() {
        println!("{name:<12} {:>14} {:>16}", c.packets, c.bytes);
    }
    let tx_errors = stats.tx_errors.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    println!("{:<12} {tx_errors:>14} {:>16}  (labelled frames the driver failed to send)", "tx_errors", "-");
}

pub fn rate_line(delta: &Stats) -> String {
    let passed: u64 = delta.named().iter().filter(|(n, _)| *n != "labelled").map(|(_, c)| c.packets).sum();
    let lost = delta.tx_errors.map(|n| format!(" | tx errors {n} pkt/s")).unwrap_or_default();
    format!(
        "labelled {} pkt/s {:.1} Mbit/s | no route {} | local {} | mtu {} | other passed {} pkt/s{lost}",
        delta.labelled.packets,
        delta.labelled.bytes as f64 * 8.0 / 1e6,
        delta.no_route.packets,
        delta.local.packets,
        delta.mtu_dropped.packets + delta.mtu_passed.packets,
        passed - delta.no_route.packets - delta.local.packets - delta.mtu_dropped.packets - delta.mtu_passed.packets,
    )
}
