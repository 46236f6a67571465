//! The proof of concept's job: push a binding SID on everything the router
//! hands this host, and send it back ("router on a stick").
//!
//! With `--iface`, attaches there and prints one stats line a second until
//! SIGINT/SIGTERM. Without it, builds a throwaway veth lab in two network
//! namespaces, sends a few IPv4 and IPv6 packets through it (one with TTL 1,
//! like a traceroute probe), prints every frame that comes back the way
//! `tcpdump -e` would, prints the stats and removes the lab.
//!
//! ```text
//! cargo run --example static_bsid                       # the lab demo (root)
//! cargo run --example static_bsid -- --iface eth1 --route 198.51.100.0/24=16001/16002
//! cargo run --example static_bsid -- --iface eth1 --hook egress --route 198.51.100.0/24=16001 --pop 0,2,16002
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lnetd_host_encap::testing::lab::{traffic, Capture, VethLab};
use lnetd_host_encap::testing::PassProgram;
use lnetd_host_encap::{
    decap::Decapsulator, encap::TtlMode, labels::decode_stack, labels::EntropyLabel, routes::prefix, routes::Tc,
    Encapsulator, IpNetwork, Label, LabelStack, Policy, Route, Stats, Table, XdpMode,
};

#[derive(Parser, Debug)]
#[command(about = "Push an MPLS binding SID (or per-prefix label stacks and SR policies) on a host's traffic with XDP")]
struct Args {
    /// Interface facing the router. Without it, runs the veth lab demo.
    #[arg(long)]
    iface: Option<String>,
    /// The binding SID pushed on everything (0.0.0.0/0 and ::/0) unless --route is given.
    #[arg(long, default_value_t = 1_000_000)]
    label: u32,
    /// PREFIX=L1/L2[@W1],L3[@W2]...: segment lists (top label first) with weights
    /// (default 1); repeatable; replaces the default routes. After a --source,
    /// routes go to that source's alternate table.
    #[arg(long = "route", value_parser = parse_route)]
    routes: Vec<(IpNetwork, Policy)>,
    /// Push an entropy label pair (ELI + EL) in every route: at the bottom, or
    /// under the first N labels with --entropy-label=N.
    #[arg(long, num_args = 0..=1, default_missing_value = "bottom", require_equals = true)]
    entropy_label: Option<EntropyLabel>,
    /// Traffic class of every route: a fixed 0..=7, or `dscp` (from the packet's DSCP, DSCP >> 3).
    #[arg(long, default_value = "0")]
    tc: Tc,
    /// Packets from this source prefix use the routes that follow it on the
    /// command line (an alternate table), falling back to the main routes.
    #[arg(long = "source", value_parser = parse_prefix)]
    sources: Vec<IpNetwork>,
    /// native, generic or auto (native, falling back to generic).
    #[arg(long, default_value = "auto")]
    mode: XdpMode,
    /// With --iface: xdp (label what the router hands this host and send it
    /// back) or egress (label this host's own packets leaving the interface).
    #[arg(long, default_value = "xdp", value_parser = ["xdp", "egress"], requires = "iface")]
    hook: String,
    /// With --iface: pin the dataplane (maps, link, state) so that it keeps
    /// forwarding after this process exits; `Encapsulator::open` adopts it.
    /// On SIGINT/SIGTERM the example then exits and leaves it running.
    #[arg(long, requires = "iface")]
    pin: bool,
    /// copy (the IP TTL into every label; traceroute shows the hop) or a fixed TTL 1..=255.
    #[arg(long, default_value = "copy")]
    ttl: TtlMode,
    /// With --iface: also pop these labels (comma-separated, e.g. 0,2,16001)
    /// from what the interface receives, with a decapsulator (host mode).
    #[arg(long, value_delimiter = ',', requires = "iface")]
    pop: Vec<Label>,
    /// The decapsulator's hook: ingress (TC, beside either encapsulator hook;
    /// GSO super-packets popped whole) or xdp (beside --hook egress only: one
    /// XDP program per interface).
    #[arg(long, default_value = "ingress", value_parser = ["ingress", "xdp"], requires = "pop")]
    pop_hook: String,
}

fn parse_prefix(s: &str) -> Result<IpNetwork, String> {
    prefix::parse(s).map_err(|e| e.to_string())
}

fn parse_route(s: &str) -> Result<(IpNetwork, Policy), String> {
    let (p, lists) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected PREFIX=LABEL[/LABEL...]"))?;
    Ok((parse_prefix(p)?, lists.parse().map_err(|e: lnetd_host_encap::errors::PolicyError| e.to_string())?))
}

/// What to program: (table, route) pairs, and (source, table) pairs.
struct Plan {
    routes: Vec<(Table, Route)>,
    sources: Vec<(IpNetwork, Table)>,
}

/// Builds the plan from the arguments, in command-line order: each --source
/// opens alternate table n (from 1) for the --route values after it.
fn plan(args: &Args, matches: &clap::ArgMatches) -> Result<Plan> {
    let route_at: Vec<usize> = matches.indices_of("routes").map(|i| i.collect()).unwrap_or_default();
    let source_at: Vec<usize> = matches.indices_of("sources").map(|i| i.collect()).unwrap_or_default();
    let table_of = |index: usize| {
        let n = source_at.iter().filter(|s| **s < index).count() as u32;
        Table::alternate(n).unwrap_or(Table::Main)
    };
    let finish = |route: Route| -> Result<Route> {
        let policy = route.policy.clone().with_entropy_label(args.entropy_label)?;
        Ok(Route { policy, tc: args.tc, ..route })
    };
    let mut routes = Vec::new();
    for ((p, policy), at) in args.routes.iter().zip(route_at) {
        routes.push((table_of(at), finish(Route::with_policy(*p, policy.clone()))?));
    }
    if args.routes.is_empty() {
        let bsid = LabelStack::single(Label::new(args.label)?);
        for p in ["0.0.0.0/0", "::/0"] {
            routes.push((Table::Main, finish(Route::new(p.parse()?, bsid.clone()))?));
        }
    }
    let sources =
        args.sources.iter().enumerate().filter_map(|(i, p)| Table::alternate(i as u32 + 1).map(|t| (*p, t))).collect();
    Ok(Plan { routes, sources })
}

fn program(enc: &Encapsulator, plan: &Plan) -> Result<()> {
    for (table, route) in &plan.routes {
        enc.set_route(*table, route)?;
        let table = match table {
            Table::Main => String::new(),
            t => format!(" (table {})", t.id()),
        };
        println!("route {} -> {} (tc {}){table}", route.prefix, route.policy, route.tc);
    }
    for (source, table) in &plan.sources {
        enc.sources().set(*source, *table)?;
        println!("source {source} -> table {}", table.id());
    }
    Ok(())
}

fn stats_line(s: &Stats) -> String {
    format!(
        "labelled {} pkts {} B | passed: no route {}, local {}, multicast {}, not IP {}, malformed {} | mtu dropped {} passed {} | aborted {}",
        s.labelled.packets,
        s.labelled.bytes,
        s.no_route.packets,
        s.local.packets,
        s.multicast.packets,
        s.not_ip.packets,
        s.malformed.packets,
        s.mtu_dropped.packets,
        s.mtu_passed.packets,
        s.aborted.packets
    )
}

fn run_on_interface(iface: &str, args: &Args, plan: &Plan) -> Result<()> {
    let builder = Encapsulator::builder().ttl_mode(args.ttl);
    let builder = if args.pin { builder.pinned() } else { builder };
    let enc = if args.hook == "egress" {
        builder.attach(iface, lnetd_host_encap::encap::Hook::Egress)?
    } else {
        builder.attach(iface, args.mode)?
    };
    let attached = enc.attachment().context("attached")?;
    println!("attached to {iface} in {} mode", attached.mode);
    program(&enc, plan)?;
    if let Some(dir) = enc.diagnostics().pin_dir() {
        println!("pinned in {}", dir.display());
    }
    let dec = if args.pop.is_empty() {
        None
    } else {
        let builder = Decapsulator::builder().pop_labels(args.pop.iter().copied());
        let dec =
            if args.pop_hook == "xdp" { builder.attach(iface, args.mode)? } else { builder.attach_ingress(iface)? };
        let mode = dec.attachment().context("attached")?.mode;
        println!("popping {:?} on {iface} in {mode} mode", args.pop.iter().map(|l| l.value()).collect::<Vec<_>>());
        Some(dec)
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        println!("{}", stats_line(&enc.stats()?));
        if let Some(dec) = &dec {
            let d = dec.stats()?;
            println!(
                "popped {} pkts {} B | partial {} | not MPLS {} | other labels passed {} dropped {} | malformed {}",
                d.popped.packets,
                d.popped.bytes,
                d.popped_partial.packets,
                d.not_mpls.packets,
                d.other_label_passed.packets,
                d.other_label_dropped.packets,
                d.malformed.packets
            );
        }
    }
    // The decapsulator is not pinned: it goes with this process.
    drop(dec);
    if args.pin {
        println!("left running on {iface}, pinned");
        return Ok(());
    }
    enc.detach()?;
    println!("detached from {iface}");
    Ok(())
}

fn mac(m: &[u8]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// One line per frame, in the style of `tcpdump -e -n`.
fn describe(frame: &[u8]) -> String {
    let Some(ethertype) = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])) else {
        return "runt frame".into();
    };
    let head =
        format!("{} > {}, ethertype 0x{ethertype:04x}, length {}", mac(&frame[6..12]), mac(&frame[0..6]), frame.len());
    if ethertype == 0x0800 || ethertype == 0x86dd {
        return format!("{head}: {}", describe_ip(&frame[14..]));
    }
    if ethertype != 0x8847 {
        return head;
    }
    let Ok((stack, inner)) = decode_stack(&frame[14..]) else { return format!("{head}: MPLS (truncated)") };
    let labels: Vec<String> = stack.iter().map(|e| format!("MPLS {e}")).collect();
    format!("{head}: {} {}", labels.join(" "), describe_ip(inner))
}

fn describe_ip(packet: &[u8]) -> String {
    let Ok(p) = SlicedPacket::from_ip(packet) else { return "(not IP)".into() };
    let (src, dst, ttl, v) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), h.ttl(), "IP")
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), h.hop_limit(), "IP6")
        }
        _ => return "(not IP)".into(),
    };
    let l4 = match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            format!("{src}.{} > {dst}.{}: UDP, length {}", u.source_port(), u.destination_port(), u.payload().len())
        }
        Some(TransportSlice::Tcp(t)) => format!("{src}.{} > {dst}.{}: TCP", t.source_port(), t.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => format!("{src} > {dst}: ICMP type {}", i.type_u8()),
        Some(TransportSlice::Icmpv6(i)) => format!("{src} > {dst}: ICMP6 type {}", i.type_u8()),
        _ => format!("{src} > {dst}"),
    };
    format!("{v} (ttl {ttl}) {l4}")
}

fn run_lab(args: &Args, plan: &Plan) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab demo creates network namespaces and loads XDP programs: run it as root");
    }
    println!("building a veth lab: router ns (r0) <-> host ns (h0), the encapsulator on h0");
    let lab = VethLab::new()?;
    let _peer = lab.router.run(|| PassProgram::attach(VethLab::ROUTER_IF))??;
    let enc = lab.host.run(|| Encapsulator::builder().ttl_mode(args.ttl).attach(VethLab::HOST_IF, args.mode))??;
    println!("attached to h0 in {} mode", enc.attachment().context("attached")?.mode);
    program(&enc, plan)?;
    let capture = lab.router.run(|| Capture::open(VethLab::ROUTER_IF))??;

    let sends: Vec<(&str, IpAddr, u8)> = vec![
        ("UDP", "192.0.2.10".parse()?, 64),
        ("UDP, TTL 1 like a traceroute probe", "192.0.2.11".parse()?, 1),
        ("ICMP echo", "198.51.100.1".parse()?, 64),
        ("UDP", "2001:db8::10".parse()?, 64),
        ("ICMPv6 echo, hop limit 1", "2001:db8::11".parse()?, 1),
        ("UDP to the host's own address (never labelled)", IpAddr::V4(VethLab::HOST_V4), 64),
    ];
    lab.router.run(|| -> Result<()> {
        for (what, dst, ttl) in &sends {
            println!("router sends {what} to {dst}");
            if what.starts_with("ICMP") {
                traffic::ping(*dst, *ttl, 1)?;
            } else {
                traffic::udp(SocketAddr::new(*dst, 33434), *ttl, b"static_bsid demo")?;
            }
        }
        Ok(())
    })??;

    println!("\nframes the router received back on r0:");
    for f in capture.drain(Duration::from_millis(300), Duration::from_secs(5))?.iter().filter(|f| !f.outgoing) {
        println!("  {}", describe(&f.bytes));
    }
    println!("\nstats: {}", stats_line(&enc.stats()?));
    drop(enc);
    drop(lab);
    println!("lab removed");
    Ok(())
}

fn main() -> Result<()> {
    env_logger::init();
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches)?;
    // Validated before anything touches an interface.
    let plan = plan(&args, &matches)?;
    match &args.iface {
        Some(iface) => run_on_interface(iface, &args, &plan),
        None => run_lab(&args, &plan),
    }
}
