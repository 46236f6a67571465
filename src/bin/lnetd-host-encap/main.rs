//! `lnetd-host-encap`: attach, program, inspect and detach the MPLS
//! encapsulator from a shell. Every subcommand works on one interface
//! (`--iface`, `-i`) in the current network namespace; the dataplane is
//! pinned, so it keeps forwarding between commands.
//!
//! Exit codes: 0 done, 1 failed (the message says why and what to do),
//! 2 usage (a bad flag or value).

mod apply;
mod args;
mod generate;
mod output;
mod recover;
#[cfg(feature = "agent")]
mod remote;
#[cfg(feature = "agent")]
mod serve;
mod status;
mod verify;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "agent")]
pub(crate) use args::BgpArgs;
pub(crate) use args::{Cli, Command, PopCommand};
use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser, Subcommand};
use lnetd_host_encap::{
    decap::Decapsulator, diagnostics::Probe, diagnostics::ProbeProtocol, encap::AdoptOptions, encap::Ipv4Lookup,
    encap::MtuPolicy, encap::OtherLabels, encap::TtlMode, labels::EntropyLabel, routes::prefix, routes::Tc,
    Encapsulator, Error, IpNetwork, Label, Policy, Route, Table, XdpMode,
};

/// The origin of a route where nothing ranks origins (an agent without BGP
/// or static routes in its file answers for none): `static`.
#[cfg(feature = "agent")]
fn static_origin(_table: Table, _prefix: IpNetwork) -> (String, Option<String>, Option<u32>) {
    ("static".to_owned(), None, None)
}

/// Where each route came from, as the RIB records it beside each route.
fn origins(enc: &Encapsulator) -> impl Fn(Table, IpNetwork) -> (String, Option<String>, Option<u32>) {
    origins_of(enc, None)
}

/// As [`origins`], of the routes covering `dst` only (`get`: a reader
/// then reads only those of a million routes).
fn origins_of(
    enc: &Encapsulator,
    _dst: Option<std::net::IpAddr>,
) -> impl Fn(Table, IpNetwork) -> (String, Option<String>, Option<u32>) {
    #[cfg(feature = "bgp")]
    let view = match _dst {
        Some(dst) => lnetd_host_encap::bgp::OriginsView::covering(enc, dst),
        None => lnetd_host_encap::bgp::OriginsView::of(enc),
    };
    #[cfg(not(feature = "bgp"))]
    let _ = enc;
    move |_table, _prefix| {
        #[cfg(feature = "bgp")]
        {
            let (origin, info) = view.origin(_table, _prefix);
            (origin.to_string(), view.bgp_policy(_table, _prefix), info.and_then(|i| i.binding_sid))
        }
        #[cfg(not(feature = "bgp"))]
        ("static".to_owned(), None, None)
    }
}

/// A failure, printed as one message; exit code 1.
type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as for any Unix tool.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    let _ =
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) };
    let cli = Cli::parse();
    env_logger::Builder::new().filter_level(cli.log).format_timestamp(None).init();
    // Generated from the definitions, for any interface: no --iface, no dataplane.
    let generated = match cli.command {
        Command::Completions { shell } => Some(generate::completions(shell)),
        Command::Man => Some(generate::man()),
        _ => None,
    };
    if let Some(result) = generated {
        return report(result);
    }
    if let Err(e) = output_accepted(cli.output, &cli.command).and_then(|()| hook_options_accepted(&cli.command)) {
        Cli::command().error(clap::error::ErrorKind::ArgumentConflict, e).exit();
    }
    output::set_format(cli.output);
    // An agent may take its interface from its configuration file instead.
    #[cfg(feature = "agent")]
    let from_file = match &cli.command {
        Command::Agent { config, .. } if cli.iface.is_none() => config.interface(),
        _ => None,
    };
    #[cfg(not(feature = "agent"))]
    let from_file = None;
    let Some(iface) = cli.iface.clone().or(from_file) else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--iface IFACE is required (for `agent`, or `interface` in its --config file)",
            )
            .exit();
    };
    report(run(&iface, cli.command))
}

/// An option of one hook given with the other is a usage error, not
/// silently ignored: `--mode native --hook egress` would otherwise attach
/// to tcx and let the operator believe it is native XDP.
fn hook_options_accepted(command: &Command) -> Result<(), String> {
    match command {
        Command::Attach { hook, mode: Some(_), .. } if hook == "egress" => {
            Err("--mode is for --hook xdp (an XDP attachment mode); --hook egress attaches to tcx".into())
        }
        Command::Attach { hook, label_on_link: true, .. } if hook == "xdp" => Err(
            "--label-on-link is for --hook egress (the kernel's route says what is on-link); --hook xdp labels by the \
             tables alone"
                .into(),
        ),
        Command::Attach { hook, allow_tso: true, .. } if hook == "xdp" => {
            Err("--allow-tso is for --hook egress (TCP the NIC segments after the label); --hook xdp sees \
                 frames already on the wire"
                .into())
        }
        Command::Pop { command: PopCommand::Attach { hook, mode: Some(_), .. } } if hook == "ingress" => {
            Err("--mode is for --hook xdp (an XDP attachment mode); --hook ingress attaches to tcx".into())
        }
        _ => Ok(()),
    }
}

/// `--output json` is for the commands that read (a usage error elsewhere).
fn output_accepted(format: output::Format, command: &Command) -> Result<(), String> {
    if format == output::Format::Text {
        return Ok(());
    }
    match command {
        Command::Status
        | Command::Routes { .. }
        | Command::Stats { prometheus: false, .. }
        | Command::Get { .. }
        | Command::Watch
        | Command::Verify
        | Command::Repair
        | Command::Pop { command: PopCommand::Labels | PopCommand::Stats { .. } } => Ok(()),
        Command::Stats { prometheus: true, .. } => Err("--prometheus and --output json: choose one".to_owned()),
        _ => Err("--output json is for the commands that read: status, routes, stats, get, watch, verify, repair, \
                  pop labels, pop stats"
            .to_owned()),
    }
}

/// `verify` and `repair` print with the global `--output`.
fn verify_output() -> verify::Output {
    if output::json(false) {
        verify::Output::Json
    } else {
        verify::Output::Text
    }
}

/// Exit code 0, or the failure as one message (with its causes) and exit code 1.
fn report(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                source = s.source();
            }
            eprintln!("lnetd-host-encap: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Adopts the pinned dataplane: to change it (waiting a little for another
/// command to finish), or only to read it (beside an agent that owns it).
///
/// Leaked, on purpose: a pinned dataplane's handle does nothing when dropped
/// (the pins keep it), every change is durable before its call returns, and
/// freeing a million-route RIB only delays the exit.
fn adopt(iface: &str, change: bool) -> Result<&'static Encapsulator, Error> {
    adopt_options(change).open(iface).map(|enc| &*Box::leak(Box::new(enc)))
}

/// A writer for the routes of `prefix` alone: it reads those, not the table
/// (`set`/`remove` at a million routes).
fn adopt_for(iface: &str, prefix: IpNetwork) -> Result<&'static Encapsulator, Error> {
    adopt_options(true).open_for(iface, prefix).map(|enc| &*Box::leak(Box::new(enc)))
}

fn adopt_options(change: bool) -> AdoptOptions {
    AdoptOptions { replace_program: false, wait: Duration::from_secs(5), read_only: !change, ..AdoptOptions::default() }
}

fn table(id: Option<u32>) -> Table {
    id.and_then(Table::alternate).unwrap_or(Table::Main)
}

/// A prefix argument (a bad one is a usage error: exit code 2).
fn parse_prefix(text: &str) -> Result<IpNetwork, String> {
    prefix::parse(text).map_err(|e| e.to_string())
}

/// `--mode`: the XDP modes a command attaches in (offload is for the library).
fn xdp_mode() -> impl TypedValueParser<Value = XdpMode> {
    clap::builder::PossibleValuesParser::new(["auto", "native", "generic"])
        .map(|s| s.parse::<XdpMode>().unwrap_or_default())
}

fn run(iface: &str, command: Command) -> Result<(), Failure> {
    // With an agent on the interface, it owns the dataplane: go through it.
    #[cfg(feature = "agent")]
    let command = match remote::through_agent(iface, command)? {
        None => return Ok(()),
        Some(command) => command,
    };
    match command {
        Command::Attach {
            hook,
            allow_tso,
            label_on_link,
            mode,
            ttl,
            mtu_policy,
            max_routes_v4,
            max_routes_v6,
            max_policies,
            max_counted_routes,
            lookup,
            max_route_values,
            dir_groups,
            route_cache,
            route_cache_min_routes,
        } => {
            let mut builder = Encapsulator::builder()
                .ttl_mode(ttl)
                .mtu_policy(mtu_policy)
                .allow_tso(allow_tso)
                .label_on_link(label_on_link)
                .lookup(lookup)
                .pinned();
            if let Some(n) = max_route_values {
                builder = builder.max_route_values(n);
            }
            if let Some(n) = dir_groups {
                builder = builder.dir_groups(n);
            }
            if let Some(n) = route_cache {
                builder = builder.route_cache(n);
            }
            if let Some(n) = route_cache_min_routes {
                builder = builder.route_cache_min_routes(n);
            }
            let defaults = (2_097_152, 524_288);
            if max_routes_v4.is_some() || max_routes_v6.is_some() {
                builder = builder.max_routes(max_routes_v4.unwrap_or(defaults.0), max_routes_v6.unwrap_or(defaults.1));
            }
            if let Some(n) = max_policies {
                builder = builder.max_policies(n);
            }
            if let Some(n) = max_counted_routes {
                builder = builder.max_counted_routes(n);
            }
            let enc = if hook == "egress" {
                builder.attach(iface, lnetd_host_encap::encap::Hook::Egress)?
            } else {
                builder.attach(iface, mode.unwrap_or_default())?
            };
            let mode = enc.attachment().map(|a| a.mode.to_string()).unwrap_or_default();
            let pins = enc.diagnostics().pin_dir().map(|p| p.display().to_string()).unwrap_or_default();
            println!("attached to {iface} in {mode} mode; pinned in {pins}");
        }
        Command::Pop { command } => pop(iface, command)?,
        Command::Detach { force: true } => recover::force_detach(iface)?,
        Command::Status => status::run(iface)?,
        Command::Verify => verify::verify(iface, verify_output())?,
        Command::Repair => verify::repair(iface, verify_output())?,
        Command::Detach { force: false } => {
            let enc = adopt(iface, true)?;
            enc.detach()?;
            println!("detached from {iface}; pins removed");
        }
        Command::Upgrade => {
            let enc = (AdoptOptions { wait: Duration::from_secs(5), ..Default::default() }).open(iface)?;
            // Every table's routes, set-aside ones included (as `status` counts them).
            println!("{iface} now runs this build's program ({} routes kept)", enc.diagnostics().route_count());
        }
        Command::Set { prefix, policy, tc, table: id, entropy_label } => {
            let route = Route { prefix, policy: policy.with_entropy_label(entropy_label)?, tc };
            adopt_for(iface, prefix)?.set_route(table(id), &route)?;
            println!("{} -> {} (tc {}{})", route.prefix, route.policy, route.tc, output::table_suffix(table(id)));
        }
        Command::Remove { prefix, table: id } => {
            if adopt_for(iface, prefix)?.remove(table(id), prefix)? {
                println!("removed {prefix}{}", output::table_suffix(table(id)));
            } else {
                return Err(
                    format!("no route for exactly {prefix}{}; see `routes`", output::table_suffix(table(id))).into()
                );
            }
        }
        Command::Source { prefix, table: id, remove } => {
            let enc = adopt(iface, true)?;
            match (remove, prefix, id) {
                (Some(p), _, _) => {
                    if !enc.sources().remove(p)? {
                        return Err(format!("{p} selects no table; see `routes`").into());
                    }
                    println!("source {p} removed");
                }
                (None, Some(p), Some(t)) => {
                    let t = Table::alternate(t)
                        .ok_or("--table 0 is the main table; a source selects an alternate table (1..)")?;
                    enc.sources().set(p, t)?;
                    println!("packets from {p} use table {}", t.id());
                }
                _ => return Err("give PREFIX --table N, or --remove PREFIX".into()),
            }
        }
        Command::Apply(args) => {
            let mut target = apply::Direct::new(iface, &args);
            apply::run(args, &mut target)?;
        }
        Command::Routes { json } => {
            let enc = adopt(iface, false)?;
            let routes = enc.counted_routes()?;
            let sources = enc.sources().list();
            let origin = origins(enc);
            if output::json(json) {
                output::print_routes(iface, &routes, &sources, &origin)?;
            } else {
                output::routes_table(&routes, &sources, &origin)?;
            }
        }
        Command::Stats { json, prometheus } => {
            let enc = adopt(iface, false)?;
            let stats = enc.stats()?;
            if prometheus {
                print!("{}", lnetd_host_encap::counters::prometheus(iface, &stats, &enc.counted_routes()?));
            } else if output::json(json) {
                output::print_document("stats", iface, output::stats_value(&stats));
            } else {
                output::stats_table(&stats);
            }
        }
        Command::Get { dst, src, proto, sport, dport, dscp } => {
            let enc = adopt(iface, false)?;
            let probe = Probe { src, dst, protocol: proto, sport, dport, dscp, ttl: 64 };
            let explanation = enc.explain(&probe)?;
            if output::json(false) {
                let origin = explanation.route.as_ref().map(|(table, route)| {
                    let (from, bgp, _) = origins_of(enc, Some(dst))(*table, route.prefix);
                    bgp.unwrap_or(from)
                });
                let verdict = output::Verdict {
                    action: explanation.verdict(),
                    outcome: explanation.outcome,
                    route: explanation.route.clone(),
                    list: explanation.list,
                    stack: explanation.stack.clone(),
                    origin,
                    text: explanation.to_string(),
                    liveness: None,
                };
                output::print_document("get", iface, output::verdict_value(&verdict));
                return Ok(());
            }
            println!("{explanation}");
            if let Some((table, route)) = &explanation.route {
                let (from, bgp, _) = origins_of(enc, Some(dst))(*table, route.prefix);
                println!("origin: {}", bgp.unwrap_or(from));
            }
            print_source_note(src, explanation.route.as_ref().map(|(_, r)| r));
        }
        #[cfg(feature = "agent")]
        Command::Agent { listeners, mode, bgp, config } => serve::agent(iface, listeners, mode, bgp, config)?,
        #[cfg(feature = "agent")]
        Command::Reload => {
            return Err(format!(
                "no agent serves {iface}: reload asks a running agent to read its --config again; start one \
                 (systemctl start lnetd-host-encap-agent@{iface}, or lnetd-host-encap -i {iface} agent --config FILE)"
            )
            .into())
        }
        // Handled in main before --iface is required; kept here so `run` stays total.
        Command::Completions { shell } => generate::completions(shell)?,
        Command::Man => generate::man()?,
        Command::Watch => {
            let enc = adopt(iface, false)?;
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop))?;
            }
            let mut last = enc.stats()?;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = enc.stats()?;
                if output::json(false) {
                    output::print_document("watch", iface, output::rate_value(&now.since(&last)));
                } else {
                    println!("{}", output::rate_line(&now.since(&last)));
                }
                last = now;
            }
        }
    }
    Ok(())
}

fn pop(iface: &str, command: PopCommand) -> Result<(), Failure> {
    match command {
        PopCommand::Attach { hook, labels, other, mode } => {
            let builder = Decapsulator::builder().pop_labels(labels).other_labels(other).pinned();
            let dec = if hook == "ingress" {
                builder.attach_ingress(iface)?
            } else {
                builder.attach(iface, mode.unwrap_or_default())?
            };
            let mode = dec.attachment().map(|a| a.mode.to_string()).unwrap_or_default();
            let labels: Vec<String> = dec.pop_labels()?.iter().map(|l| l.to_string()).collect();
            println!(
                "decapsulator attached to {iface} in {mode} mode, popping {}; other labels: {other}",
                labels.join(",")
            );
        }
        PopCommand::Detach => {
            Decapsulator::open(iface)?.detach()?;
            println!("decapsulator detached from {iface}; pins removed");
        }
        PopCommand::Add { label } => {
            Decapsulator::open(iface)?.add_pop_label(label)?;
            println!("popping {label} on {iface}");
        }
        PopCommand::Remove { label } => {
            if !Decapsulator::open(iface)?.remove_pop_label(label)? {
                return Err(format!("{label} is not popped on {iface}").into());
            }
            println!("no longer popping {label} on {iface}");
        }
        PopCommand::Labels if output::json(false) => {
            let labels: Vec<u32> = Decapsulator::open(iface)?.pop_labels()?.iter().map(|l| l.value()).collect();
            output::print_document("pop labels", iface, serde_json::json!({ "labels": labels }));
        }
        PopCommand::Labels => {
            for label in Decapsulator::open(iface)?.pop_labels()? {
                println!("{label}");
            }
        }
        PopCommand::Stats { json } => {
            let stats = Decapsulator::open(iface)?.stats()?;
            if output::json(json) {
                let map: serde_json::Map<String, serde_json::Value> = stats
                    .named()
                    .iter()
                    .map(|(n, c)| ((*n).to_owned(), serde_json::json!({ "packets": c.packets, "bytes": c.bytes })))
                    .collect();
                output::print_document("pop stats", iface, serde_json::Value::Object(map));
            } else {
                for (name, c) in stats.named() {
                    println!("{name:<20} {:>14} {:>16}", c.packets, c.bytes);
                }
            }
        }
    }
    Ok(())
}

/// Without `--src` the probe's source is the unspecified address, which
/// enters the flow hash: where a route's flows spread (several lists, an
/// entropy label), a real flow's list and entropy label differ, and `get`
/// said nothing of it.
fn print_source_note(src: Option<IpAddr>, route: Option<&lnetd_host_encap::Route>) {
    let spread = route.is_some_and(|r| r.policy.lists().len() > 1 || r.policy.entropy_label().is_some());
    if src.is_none() && spread {
        println!(
            "note: no --src, so the flow hash took the unspecified source address; a real flow's segment list and \
             entropy label depend on its source: give it with --src"
        );
    }
}

/// True when stderr is a terminal (progress is shown only there).
fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
