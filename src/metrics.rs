//! Prometheus text exposition (format 0.0.4) of the counters: one metric
//! family per counter, labelled by interface; per route and per segment list,
//! labelled by prefix, table and list. Written here, once, for the command's
//! `stats --prometheus` and the agent's `/metrics`.

use std::fmt::Write;

use crate::domain::route::{Route, Table};
use crate::fib::RouteCounters;
use crate::stats::Stats;

/// A route with its counters, as [`crate::Encapsulator::counted_routes`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedRoute {
    /// The table.
    pub table: Table,
    /// The route.
    pub route: Route,
    /// Its counters.
    pub counters: RouteCounters,
    /// A main-table route for one of the host's own addresses: kept, but not
    /// in force while the address is local (its packets are never
    /// labelled); it is in force again when the address goes.
    pub set_aside: bool,
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

// `writeln!` into a String cannot fail; its `Result` is discarded knowingly.

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
}

/// The exposition text for `iface`'s counters and routes.
pub fn prometheus(iface: &str, stats: &Stats, routes: &[CountedRoute]) -> String {
    let mut out = String::new();
    let iface = escape(iface);
    for (name, counter) in stats.named() {
        for (unit, value) in [("packets", counter.packets), ("bytes", counter.bytes)] {
            let metric = format!("lnetd_host_encap_{name}_{unit}_total");
            family(
                &mut out,
                &metric,
                &format!("{unit} counted as {name} by the encapsulator (frame bytes as received)"),
            );
            let _ = writeln!(out, "{metric}{{interface=\"{iface}\"}} {value}");
        }
    }
    // Only where the driver keeps the count: an absent series is "unknown", never 0.
    if let Some(errors) = stats.tx_errors {
        let metric = "lnetd_host_encap_tx_errors_total";
        family(
            &mut out,
            metric,
            "labelled frames the driver failed to send after XDP_TX (the driver's own count, since the interface was created)",
        );
        let _ = writeln!(out, "{metric}{{interface=\"{iface}\"}} {errors}");
    }
    let label =
        |r: &CountedRoute| format!("interface=\"{iface}\",prefix=\"{}\",table=\"{}\"", r.route.prefix, r.table.id());
    for unit in ["packets", "bytes"] {
        let metric = format!("lnetd_host_encap_route_{unit}_total");
        family(&mut out, &metric, &format!("{unit} labelled by each counted route"));
        for r in routes.iter().filter(|r| r.counters.counted) {
            let c = r.counters.labelled;
            let _ = writeln!(out, "{metric}{{{}}} {}", label(r), if unit == "packets" { c.packets } else { c.bytes });
        }
    }
    for unit in ["packets", "bytes"] {
        let metric = format!("lnetd_host_encap_segment_list_{unit}_total");
        family(&mut out, &metric, &format!("{unit} labelled with each segment list of each counted route"));
        for r in routes.iter().filter(|r| r.counters.counted) {
            for (i, (c, list)) in r.counters.lists.iter().zip(r.route.policy.lists()).enumerate() {
                let value = if unit == "packets" { c.packets } else { c.bytes };
                let _ = writeln!(out, "{metric}{{{},list=\"{i}\",stack=\"{}\"}} {value}", label(r), list.stack);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counter;

    #[test]
    fn families_and_labels() {
        let stats = Stats { labelled: Counter { packets: 3, bytes: 300 }, ..Default::default() };
        let route = Route::with_policy("10.0.0.0/8".parse().unwrap(), "100@1,200@3".parse().unwrap());
        let counted = CountedRoute {
            table: Table::Main,
            route,
            counters: RouteCounters {
                counted: true,
                labelled: Counter { packets: 3, bytes: 300 },
                lists: vec![Counter { packets: 1, bytes: 100 }, Counter { packets: 2, bytes: 200 }],
            },
            set_aside: false,
        };
        let text = prometheus("eth\"0", &stats, &[counted]);
        assert!(text.contains("lnetd_host_encap_labelled_packets_total{interface=\"eth\\\"0\"} 3\n"), "{text}");
        assert!(text.contains("lnetd_host_encap_no_route_bytes_total{interface=\"eth\\\"0\"} 0\n"));
        assert!(text.contains(
            "lnetd_host_encap_segment_list_packets_total{interface=\"eth\\\"0\",prefix=\"10.0.0.0/8\",table=\"0\",list=\"1\",stack=\"200\"} 2\n"
        ));
        assert!(text.contains("lnetd_host_encap_no_live_path_dropped_packets_total{interface=\"eth\\\"0\"} 0\n"));
        // Two families per program counter (11), two per route, two per segment list.
        assert_eq!(text.matches("# TYPE").count(), 26);
        assert!(!text.contains("tx_errors"), "an unknown count is not exported as 0");

        let lossy = Stats { tx_errors: Some(29), ..stats };
        let text = prometheus("veth0", &lossy, &[]);
        assert!(text.contains("lnetd_host_encap_tx_errors_total{interface=\"veth0\"} 29\n"), "{text}");
        assert!(text.contains("# TYPE lnetd_host_encap_tx_errors_total counter\n"));
    }
}
