//! What the command prints: tables a person reads, JSON a program reads.

use indicatif::{ProgressBar, ProgressStyle};
use lnetd_host_encap::{counters::CountedRoute, desired::ApplyReport, IpNetwork, Stats, Table};
use serde_json::{json, Value};

/// Above this many routes, an apply shows a spinner on a terminal.
const LARGE_APPLY: usize = 10_000;
/// Changes listed one by one up to this many per kind.
const LISTED: usize = 20;

/// The policy in the syntax `set` and `apply` take (no entropy label: it has its own field).
fn policy_text(r: &CountedRoute) -> String {
    if !r.route.policy.is_valid() {
        return r.route.policy.to_string();
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

/// A file at least this large is parsed with progress shown (on a terminal).
const LARGE_FILE: u64 = 1 << 20;

/// Whether an apply of `routes` routes from a file of `bytes` bytes is long
/// enough to show progress.
pub fn large_apply(routes: usize, bytes: Option<u64>) -> bool {
    routes >= LARGE_APPLY || bytes.is_some_and(|b| b >= LARGE_FILE)
}

/// The phases of a long operation on stderr, only when stderr is a
/// terminal: a spinner with the current phase, and one line per phase done
/// with its time. Nothing at all otherwise (a pipe or a file gets no noise).
#[derive(Default)]
pub struct Progress {
    bar: Option<ProgressBar>,
    current: Option<(String, std::time::Instant)>,
}

impl Progress {
    /// Starts the phase `what` (ending the previous one), showing it when
    /// the operation is `large` and stderr is a terminal.
    pub fn phase(&mut self, what: String, large: bool) {
        self.done();
        if self.bar.is_none() && large && super::stderr_is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(what.clone());
        }
        self.current = Some((what, std::time::Instant::now()));
    }

    /// Ends the current phase: one line saying how long it took.
    fn done(&mut self) {
        if let (Some(bar), Some((what, started))) = (&self.bar, self.current.take()) {
            bar.println(format!("{what}: {:.1} s", started.elapsed().as_secs_f64()));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

pub fn report(report: &ApplyReport) {
    println!("{report}");
    listed(report, [0; 3]);
}

/// The first routes `report` added, replaced and removed; `more`: how many
/// of each its lists leave out (an agent's unary reply lists 8192 of each).
pub fn listed(report: &ApplyReport, more: [usize; 3]) {
    let routes = |label: &str, items: &[(Table, IpNetwork)], more: usize| {
        for (table, prefix) in items.iter().take(LISTED) {
            println!("  {label} {prefix}{}", table_suffix(*table));
        }
        if items.len() + more > LISTED {
            println!("  ... and {} more {label}", items.len() + more - LISTED);
        }
    };
    routes("added", &report.added, more[0]);
    routes("replaced", &report.replaced, more[1]);
    routes("removed", &report.removed, more[2]);
    for p in report.set_aside.iter().take(LISTED) {
        println!("  set aside {p} (a host address: never labelled while it is one)");
    }
}

/// Where a route came from: (origin, for a BGP route its policy text and binding SID).
pub type OriginOf<'a> = &'a dyn Fn(Table, IpNetwork) -> (String, Option<String>, Option<u32>);

/// A route of the `routes` document (docs/operations-json.md): the
/// library's serde form of a [`CountedRoute`] (the route's keys, its table
/// and counters), and where it came from, which only the RIB knows.
#[derive(serde::Serialize)]
struct RouteDoc<'a> {
    #[serde(flatten)]
    route: &'a CountedRoute,
    origin: String,
    bgp_policy: Option<String>,
    binding_sid: Option<u32>,
}

#[derive(serde::Serialize)]
struct SourceDoc {
    prefix: String,
    table: u32,
}

/// The `routes` document, envelope first.
#[derive(serde::Serialize)]
struct RoutesDoc<'a> {
    schema: &'static str,
    command: &'static str,
    interface: &'a str,
    routes: Vec<RouteDoc<'a>>,
    sources: Vec<SourceDoc>,
}

/// Indents the document's outer levels as `to_string_pretty` does and
/// writes each route (and source) on one line: a million routes take half
/// the bytes and the time, and still read one per line.
#[derive(Default)]
struct OneRoutePerLine {
    depth: usize,
    pretty: serde_json::ser::PrettyFormatter<'static>,
    compact: serde_json::ser::CompactFormatter,
}

/// The levels indented: the document, and its lists of routes and sources.
const INDENTED: usize = 2;

/// Calls the pretty formatter at the indented levels, the compact one below.
macro_rules! by_depth {
    ($($name:ident($($arg:ident: $ty:ty),*) $(, $change:tt)?;)*) => {
        $(fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            by_depth!(@enter self $($change)?);
            let r = if self.depth <= INDENTED { self.pretty.$name(w $(, $arg)*) } else { self.compact.$name(w $(, $arg)*) };
            by_depth!(@leave self $($change)?);
            r
        })*
    };
    (@enter $s:ident +) => { $s.depth += 1; };
    (@enter $s:ident -) => {};
    (@enter $s:ident) => {};
    (@leave $s:ident -) => { $s.depth = $s.depth.saturating_sub(1); };
    (@leave $s:ident +) => {};
    (@leave $s:ident) => {};
}

impl serde_json::ser::Formatter for OneRoutePerLine {
    by_depth! {
        begin_array(), +;
        end_array(), -;
        begin_array_value(first: bool);
        end_array_value();
        begin_object(), +;
        end_object(), -;
        begin_object_key(first: bool);
        end_object_key();
        begin_object_value();
        end_object_value();
    }
}

/// Prints the `routes` document. Written straight from typed rows: a
/// million routes as a `serde_json::Value` tree and a pretty string cost
/// several gigabytes.
pub fn print_routes(
    iface: &str,
    routes: &[CountedRoute],
    sources: &[(IpNetwork, Table)],
    origin: OriginOf,
) -> std::io::Result<()> {
    use std::io::Write;
    let routes = routes
        .iter()
        .map(|r| {
            let (from, bgp_policy, binding_sid) = origin(r.table, r.route.prefix);
            RouteDoc { route: r, origin: from, bgp_policy, binding_sid }
        })
        .collect();
    let sources = sources.iter().map(|(p, t)| SourceDoc { prefix: p.to_string(), table: t.id() }).collect();
    let doc = RoutesDoc { schema: SCHEMA, command: "routes", interface: iface, routes, sources };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, OneRoutePerLine::default());
    serde::Serialize::serialize(&doc, &mut ser).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()
}

pub fn routes_table(routes: &[CountedRoute], sources: &[(IpNetwork, Table)], origin: OriginOf) -> std::io::Result<()> {
    use std::io::Write;
    // Buffered: stdout alone writes a line at a time (a million syscalls).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "{:<44} {:>5} {:<7} {:<40} {:>4} {:>6} {:>12} {:>14}",
        "PREFIX", "TABLE", "ORIGIN", "POLICY", "TC", "EL", "PACKETS", "BYTES"
    )?;
    for r in routes {
        let (packets, bytes) = if r.counters.counted {
            (r.counters.labelled.packets.to_string(), r.counters.labelled.bytes.to_string())
        } else {
            ("-".into(), "-".into())
        };
        let (from, bgp, _) = origin(r.table, r.route.prefix);
        writeln!(
            out,
            "{:<44} {:>5} {:<7} {:<40} {:>4} {:>6} {:>12} {:>14}{}",
            r.route.prefix.to_string(),
            if r.table == Table::Main { "main".to_owned() } else { r.table.id().to_string() },
            from,
            policy_text(r),
            r.route.tc.to_string(),
            r.route.policy.entropy_label().map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
            packets,
            bytes,
            match (bgp, r.set_aside) {
                (_, true) => "  (set aside: a host address, not in force)".to_owned(),
                (Some(p), false) => format!("  ({p})"),
                (None, false) => String::new(),
            },
        )?;
    }
    for (p, t) in sources {
        writeln!(out, "source {p} -> table {}", t.id())?;
    }
    out.flush()
}

/// The `stats` table: `Stats`'s own `Display`.
pub fn stats_table(stats: &Stats) {
    println!("{stats}");
}

pub fn rate_line(delta: &Stats) -> String {
    let passed: u64 = delta.named().iter().filter(|(n, _)| *n != "labelled").map(|(_, c)| c.packets).sum();
    let lost = delta.tx_errors.map(|n| format!(" | tx errors {n} pkt/s")).unwrap_or_default();
    format!(
        "labelled {} pkt/s {:.1} Mbit/s | no route {} | local {} | mtu {} | no live path, dropped {} | other passed {} \
         pkt/s{lost}",
        delta.labelled.packets,
        delta.labelled.bytes as f64 * 8.0 / 1e6,
        delta.no_route.packets,
        delta.local.packets,
        delta.mtu_dropped.packets + delta.mtu_passed.packets,
        delta.no_live_path_dropped.packets,
        passed
            - delta.no_route.packets
            - delta.local.packets
            - delta.mtu_dropped.packets
            - delta.mtu_passed.packets
            - delta.no_live_path_dropped.packets,
    )
}

/// `--output`: how a read command prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Tables and sentences for a person.
    #[default]
    Text,
    /// One JSON document (docs/operations-json.md); `watch` prints one per line.
    Json,
}

/// The format chosen for this process (set once, in `main`).
static FORMAT: std::sync::OnceLock<Format> = std::sync::OnceLock::new();

/// Sets the format of every read command's output.
pub fn set_format(format: Format) {
    let _already_set_by_an_earlier_call = FORMAT.set(format);
}

/// Whether read commands print JSON (`--output json`, or a command's own `--json`).
pub fn json(flag: bool) -> bool {
    flag || FORMAT.get() == Some(&Format::Json)
}

/// The schema every JSON document names; bumped only for an incompatible change.
pub const SCHEMA: &str = "lnetd-host-encap/v1";

/// One JSON document of the schema: `schema`, `command`, `interface`, then
/// the command's own keys (`body` is an object; anything else goes under `data`).
pub fn document(command: &str, iface: &str, body: Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("schema".into(), json!(SCHEMA));
    out.insert("command".into(), json!(command));
    out.insert("interface".into(), json!(iface));
    match body {
        Value::Object(map) => out.extend(map),
        other => {
            out.insert("data".into(), other);
        }
    }
    Value::Object(out)
}

/// Prints `document(...)` pretty, on one line for `watch` (JSON Lines).
pub fn print_document(command: &str, iface: &str, body: Value) {
    let doc = document(command, iface, body);
    let text = if command == "watch" { serde_json::to_string(&doc) } else { serde_json::to_string_pretty(&doc) };
    println!("{}", text.unwrap_or_default());
}

/// The counters of `stats` as the schema's keys: the library's own serde
/// form of [`Stats`] (`tx_errors` null when the driver does not say).
pub fn stats_value(stats: &Stats) -> Value {
    serde_json::to_value(stats).unwrap_or_default()
}

/// What `get` found, as the schema's keys.
pub struct Verdict<'a> {
    /// `XDP_TX`, `XDP_PASS`, ...
    pub action: String,
    /// The counter it moved.
    pub outcome: &'a str,
    /// The route matched, if any.
    pub route: Option<(Table, lnetd_host_encap::Route)>,
    /// The segment list taken.
    pub list: Option<usize>,
    /// The stack pushed, top first.
    pub stack: Vec<lnetd_host_encap::labels::LabelStackEntry>,
    /// Where the route came from.
    pub origin: Option<String>,
    /// As the text output says it.
    pub text: String,
    /// Through an agent: the S-BFD state of the policy the route is
    /// steered into ([`liveness_value`]), or null.
    pub liveness: Option<Value>,
}

/// An agent's `LivenessReply` as the JSON documents give it (`status`'s
/// `sbfd`, `get`'s `liveness`): whether S-BFD runs (and why not), its
/// timers and packet counts, and every list with its state.
#[cfg(feature = "agent")]
pub fn liveness_value(r: &lnetd_host_encap::agent::proto::v1::LivenessReply) -> Value {
    json!({
        "running": r.enabled,
        "not_running": Some(&r.not_running).filter(|w| !w.is_empty()),
        "interval_ms": r.interval_ms,
        "multiplier": r.multiplier,
        "hold_down_ms": r.hold_down_ms,
        "probes_sent": r.probes_sent,
        "send_errors": r.send_errors,
        "answers": r.answers,
        "invalid_answers": r.invalid_answers,
        "lists": r.lists.iter().map(|l| json!({
            "color": l.color,
            "endpoint": l.endpoint,
            "list": l.list,
            "phase": l.phase,
            "up": l.up,
            "phase_ms": l.phase_ms,
            "hold_down_left_ms": l.hold_down_left_ms,
            "down_transitions": l.down_transitions,
            "up_transitions": l.up_transitions,
        })).collect::<Vec<_>>(),
    })
}

pub fn verdict_value(v: &Verdict) -> Value {
    let route = v.route.as_ref().map(|(t, r)| {
        let lists = r.policy.lists();
        let one = lists.len() == 1;
        json!({
            "prefix": r.prefix.to_string(),
            "table": t.id(),
            "policy": lists.iter()
                .map(|l| if one && l.weight == 1 { l.stack.to_string() } else { format!("{}@{}", l.stack, l.weight) })
                .collect::<Vec<_>>().join(","),
            "tc": r.tc.to_string(),
            "entropy_label": r.policy.entropy_label().map(|e| e.to_string()),
        })
    });
    json!({
        "action": v.action,
        "outcome": v.outcome,
        "route": route,
        "list": v.list,
        "stack": v.stack.iter().map(|e| json!({
            "label": e.label, "tc": e.tc, "bottom": e.bottom, "ttl": e.ttl,
        })).collect::<Vec<_>>(),
        "origin": v.origin,
        "liveness": v.liveness,
        "text": v.text,
    })
}

/// One second of `watch`: rates per counter (packets and bytes per second).
pub fn rate_value(delta: &Stats) -> Value {
    json!({ "interval_s": 1, "rates": stats_value(delta) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lnetd_host_encap::counters::Counter;

    /// How the document wrote a counter before it was built from `Counter`'s serde form.
    fn counter(c: Counter) -> Value {
        json!({ "packets": c.packets, "bytes": c.bytes })
    }

    /// The routes document indents its outer levels and writes each route
    /// on one line: the same JSON value as the pretty form, line by line.
    #[test]
    fn one_route_per_line_is_the_pretty_documents_value() {
        let doc = json!({
            "schema": SCHEMA, "command": "routes", "interface": "eth1",
            "routes": [
                {"prefix": "10.0.0.0/8", "lists": [{"stack": "16001/16002", "weight": 1}], "labelled": {"packets": 1}},
                {"prefix": "2001:db8::/32", "lists": [], "origin": null},
            ],
            "sources": [{"prefix": "10.9.0.0/16", "table": 2}],
        });
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, OneRoutePerLine::default());
        serde::Serialize::serialize(&doc, &mut ser).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 12, "{text}");
        assert!(
            lines.iter().any(|l| l.starts_with("    {") && l.contains("10.0.0.0/8") && l.ends_with("},")),
            "{text}"
        );
        // Keys in the order written (preserve_order: the documented order).
        assert!(lines.contains(&"    {\"prefix\":\"2001:db8::/32\",\"lists\":[],\"origin\":null}"), "{text}");
        assert!(lines.contains(&"  \"sources\": ["), "{text}");
    }

    /// `stats --output json` is a contract (docs/operations-json.md): the
    /// serde form of `Stats` must give exactly the keys and values the
    /// document listed before it was built from it.
    #[test]
    fn stats_document_is_the_schemas() {
        let mut stats = Stats {
            labelled: Counter { packets: 3, bytes: 300 },
            not_ip: Counter { packets: 1, bytes: 60 },
            aborted: Counter { packets: 2, bytes: 128 },
            ..Stats::default()
        };
        for tx_errors in [None, Some(7)] {
            stats.tx_errors = tx_errors;
            let mut expected = serde_json::Map::new();
            for (name, c) in stats.named() {
                expected.insert(name.into(), counter(c));
            }
            expected.insert("tx_errors".into(), json!(stats.tx_errors));
            assert_eq!(stats_value(&stats), Value::Object(expected));
        }
    }
}
