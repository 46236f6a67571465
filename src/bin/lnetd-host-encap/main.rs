//! `lnetd-host-encap`: attach, program, inspect and detach the MPLS
//! encapsulator from a shell. Every subcommand works on one interface
//! (`--iface`, `-i`) in the current network namespace; the dataplane is
//! pinned, so it keeps forwarding between commands.
//!
//! Exit codes: 0 done, 1 failed (the message says why and what to do),
//! 2 usage (a bad flag or value).

mod apply;
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

use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser, Subcommand};
use lnetd_host_encap::{
    decap::Decapsulator, diagnostics::Probe, diagnostics::ProbeProtocol, encap::AdoptOptions, encap::Ipv4Lookup,
    encap::MtuPolicy, encap::OtherLabels, encap::TtlMode, labels::EntropyLabel, routes::prefix, routes::Tc,
    Encapsulator, Error, IpNetwork, Label, Policy, Route, Table, XdpMode,
};

/// Push MPLS label stacks (SR-MPLS paths, SR policies) on the packets a router
/// hands this host, with XDP. The dataplane is pinned: it keeps forwarding
/// after each command exits, and any later command (or the agent) adopts it.
#[derive(Parser, Debug)]
#[command(
    name = "lnetd-host-encap",
    version,
    after_help = "Examples:\n  \
        lnetd-host-encap -i eth1 attach\n  \
        lnetd-host-encap -i eth1 set 0.0.0.0/0 1000000\n  \
        lnetd-host-encap -i eth1 set 198.51.100.0/24 16001/16002@7,16003@3 --entropy-label bottom\n  \
        lnetd-host-encap -i eth1 apply routes.toml --dry-run\n  \
        lnetd-host-encap -i eth1 get 198.51.100.7 --proto tcp --dport 443\n  \
        lnetd-host-encap -i eth1 stats --prometheus\n  \
        lnetd-host-encap -i eth1 detach\n\n\
        Exit codes: 0 done, 1 failed, 2 usage."
)]
struct Cli {
    /// The interface the dataplane runs on (the router-facing NIC).
    #[arg(short, long, global = true, value_name = "IFACE")]
    iface: Option<String>,
    /// How much the library logs on stderr: error, warn, info, debug.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    log: log::LevelFilter,
    /// How read commands (status, routes, stats, get, watch, pop labels,
    /// pop stats) print: text, or json (one document with the schema's
    /// envelope, docs/operations-json.md; watch prints one per line).
    #[arg(long, global = true, value_enum, default_value = "text", value_name = "FORMAT")]
    output: output::Format,
    #[command(subcommand)]
    command: Command,
}

// One value, parsed once per process: the agent's many options cost nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Load the encapsulator, pin it and attach it to IFACE; it keeps forwarding after this exits.
    Attach {
        /// xdp: label what the router hands this host and send it back (router on a
        /// stick); egress: label the host's own packets leaving IFACE (tcx).
        #[arg(long, default_value = "xdp", value_parser = ["xdp", "egress"])]
        hook: String,
        /// With --hook egress: attach even though the NIC segments TCP itself
        /// (only for NICs known to segment MPLS, or a veth whose peer pops
        /// with `pop attach --hook ingress`).
        #[arg(long)]
        allow_tso: bool,
        /// With --hook xdp: auto (native, falling back to generic), native or
        /// generic [default: auto].
        #[arg(long, value_parser = xdp_mode())]
        mode: Option<XdpMode>,
        /// copy (the IP TTL into every label: traceroute shows the hop) or a fixed TTL 1..=255.
        #[arg(long, default_value = "copy")]
        ttl: TtlMode,
        /// A packet too big once labelled: drop it, or pass it to the host unlabelled.
        #[arg(long = "mtu-policy", default_value = "drop")]
        mtu_policy: MtuPolicy,
        /// Capacity of the IPv4 route table.
        #[arg(long, value_name = "N")]
        max_routes_v4: Option<u32>,
        /// Capacity of the IPv6 route table.
        #[arg(long, value_name = "N")]
        max_routes_v6: Option<u32>,
        /// Capacity of the policy table (routes with several lists or an entropy label).
        #[arg(long, value_name = "N")]
        max_policies: Option<u32>,
        /// Routes and segment lists that get counters.
        #[arg(long, value_name = "N")]
        max_counted_routes: Option<u32>,
        /// The IPv4 lookup: dir24-8 (flat cost, fixed memory) or lpm (the kernel's LPM trie: memory per route).
        #[arg(long, default_value = "dir24-8")]
        lookup: Ipv4Lookup,
        /// DIR-24-8: distinct IPv4 route values (label stack, policy, traffic class) it holds.
        #[arg(long, value_name = "N")]
        max_route_values: Option<u32>,
        /// DIR-24-8: /24s that may hold prefixes longer than /24 (host routes and addresses count).
        #[arg(long, value_name = "N")]
        dir_groups: Option<u32>,
        /// Entries of the route cache in front of the lookup, shared by every CPU (rounded up to a
        /// power of two; 0: none; default 524288 on x86_64: 8 MiB in 64-byte buckets of 4).
        #[arg(long, value_name = "N")]
        route_cache: Option<u32>,
        /// Main-table routes a family needs before its lookups use the route cache (default 4096).
        #[arg(long, value_name = "N")]
        route_cache_min_routes: Option<u32>,
    },
    /// Detach from IFACE and remove the pins: traffic goes unlabelled.
    Detach {
        /// Remove whatever is there (pins, state, the agent's records, our XDP
        /// program) without reading any of it: the way out of a damaged or
        /// stale dataplane. Says what it removed.
        #[arg(long)]
        force: bool,
    },
    /// What runs on IFACE: attached or not, mode and program, the agent,
    /// routes per table and origin, and whether the kernel matches the RIB.
    Status,
    /// Compare the kernel's maps with the RIB (what `routes` shows): one
    /// difference a line; exit code 1 when there are any, 0 when none.
    Verify,
    /// Make the kernel's maps agree with the RIB again; says what it fixed.
    Repair,
    /// The decapsulator: pop labels on the packets IFACE receives.
    Pop {
        #[command(subcommand)]
        command: PopCommand,
    },
    /// Move the running dataplane to this build's program (atomic; tables and counters kept).
    Upgrade,
    /// Add or replace the route for PREFIX.
    Set {
        /// Destination prefix, e.g. 198.51.100.0/24 or 2001:db8::/32.
        #[arg(value_parser = parse_prefix)]
        prefix: IpNetwork,
        /// Segment lists, top label first: 16001/16002, or weighted: 16001/16002@7,16003@3.
        policy: Policy,
        /// Traffic class: 0..=7, or dscp (from the packet's DSCP).
        #[arg(long, default_value = "0")]
        tc: Tc,
        /// An alternate table (1..), selected by source prefixes; default: the main table.
        #[arg(long, value_name = "N")]
        table: Option<u32>,
        /// Push an entropy label: bottom, or under the first N labels.
        #[arg(long = "entropy-label", value_name = "bottom|N")]
        entropy_label: Option<EntropyLabel>,
    },
    /// Remove the route for exactly PREFIX.
    Remove {
        /// Destination prefix.
        #[arg(value_parser = parse_prefix)]
        prefix: IpNetwork,
        /// The alternate table it is in; default: the main table.
        #[arg(long, value_name = "N")]
        table: Option<u32>,
    },
    /// Make packets from PREFIX use alternate table N (falling back to the main table).
    Source {
        /// Source prefix.
        #[arg(required_unless_present = "remove", value_parser = parse_prefix)]
        prefix: Option<IpNetwork>,
        /// The alternate table (1..).
        #[arg(long, value_name = "N", required_unless_present = "remove", value_parser = clap::value_parser!(u32).range(1..))]
        table: Option<u32>,
        /// Stop selecting a table by this source prefix.
        #[arg(long, value_name = "PREFIX", conflicts_with_all = ["prefix", "table"], value_parser = parse_prefix)]
        remove: Option<IpNetwork>,
    },
    /// Make the tables equal to FILE (TOML or JSON by extension; - reads JSON from stdin).
    Apply(apply::ApplyArgs),
    /// List the routes of every table, with their counters.
    Routes {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the counters.
    Stats {
        /// As JSON.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// As Prometheus text exposition.
        #[arg(long)]
        prometheus: bool,
    },
    /// What the dataplane does with a packet to DST (runs the real program on a synthesized frame).
    Get {
        /// Destination address.
        dst: IpAddr,
        /// Source address: selects alternate tables, and enters the flow hash
        /// that picks the segment list and the entropy label [default: the
        /// unspecified address, 0.0.0.0 or ::]. Give a real flow's source to
        /// see where that flow goes.
        #[arg(long)]
        src: Option<IpAddr>,
        /// udp, tcp or icmp.
        #[arg(long, default_value = "udp")]
        proto: ProbeProtocol,
        /// Source port.
        #[arg(long, default_value_t = 49152)]
        sport: u16,
        /// Destination port.
        #[arg(long, default_value_t = 4789)]
        dport: u16,
        /// DSCP, 0..=63.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=63))]
        dscp: u8,
    },
    /// Print one line of rates a second until interrupted.
    Watch,
    /// Serve the gRPC API (the proof of concept's protocol and ours) and metrics until SIGINT/SIGTERM.
    ///
    /// Adopts the dataplane pinned on IFACE (moving it to this build's program,
    /// atomically), or attaches and pins one. Stopping or killing the agent never
    /// interrupts forwarding.
    #[cfg(feature = "agent")]
    Agent {
        #[command(flatten)]
        config: serve::ConfigArgs,
        #[command(flatten)]
        listeners: serve::Listeners,
        /// When nothing is pinned yet: the XDP mode to attach in (default auto).
        #[arg(long, value_parser = xdp_mode())]
        mode: Option<XdpMode>,
        #[command(flatten)]
        bgp: BgpArgs,
    },
    /// Make the agent serving IFACE read its --config file again and apply
    /// its static routes (as SIGHUP does); says what changed and which
    /// settings need a restart.
    #[cfg(feature = "agent")]
    Reload,
    /// Print a shell completion script for SHELL (bash, zsh, fish, elvish, powershell); needs no --iface.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout; needs no --iface.
    Man,
}

/// Learning SR policies and colored routes from BGP, through GoBGP.
#[derive(clap::Args, Debug)]
struct BgpArgs {
    /// GoBGP's gRPC API (gobgpd --api-hosts), e.g. 127.0.0.1:50052: learn SR
    /// policies (SAFI 73) and colored routes from its best paths.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-api", value_name = "HOST:PORT")]
    api: Option<String>,
    /// When a BGP session (or GoBGP) goes down: keep the routes it taught
    /// (until it is back and has had --bgp-stale-time to teach them again),
    /// or withdraw them at once. Default: keep. Behind a route reflector,
    /// keep covers this host's session or its gobgpd going down, not the
    /// controller failing: the reflector's session stays up and passes on
    /// real withdrawals, which are applied.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-session-down", value_name = "keep|withdraw")]
    session_down: Option<lnetd_host_encap::bgp::SessionDown>,
    /// Seconds a returning session has to teach its routes again (keep). Default: 5.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-stale-time", value_name = "SECONDS")]
    stale_time: Option<f64>,
    /// This host's BGP identifier: SR policies with route targets are used
    /// only when one names it (RFC 9830 4.2.1). Default: GoBGP's router ID.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-router-id", value_name = "A.B.C.D")]
    router_id: Option<std::net::Ipv4Addr>,
    /// Which origin's route a prefix takes when several have one, highest
    /// first: each of agent, static and bgp once. Default: agent,static,bgp
    /// (the local origins over BGP).
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-precedence", value_name = "ORIGINS")]
    precedence: Option<lnetd_host_encap::bgp::Precedence>,
    /// Check every segment list with S-BFD (RFC 7880) every MS milliseconds;
    /// a list unanswered for MS x --sbfd-multiplier is taken out of service.
    /// Off when not given. See docs/liveness.md.
    #[cfg(feature = "bgp")]
    // Ranges checked while parsing: a bad flag must stop the agent before
    // it attaches anything.
    #[arg(long = "sbfd-interval-ms", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    sbfd_interval_ms: Option<u64>,
    /// S-BFD detection multiplier. Default: 3.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-multiplier", value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    sbfd_multiplier: Option<u8>,
    /// How long a segment list that answers again waits before it is used
    /// again. Default: 5000.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-hold-down-ms", value_name = "MS")]
    sbfd_hold_down_ms: Option<u64>,
    /// An endpoint's S-BFD reflector discriminator (repeatable); default: the
    /// endpoint's IPv4 address as a 32-bit number (IOS-XR's default).
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-reflector", value_name = "ENDPOINT=DISCRIMINATOR")]
    sbfd_reflectors: Vec<lnetd_host_encap::bgp::sbfd::Reflector>,
    /// The router's MAC, where probes are sent; default: from the neighbour table.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-router-mac", value_name = "MAC",
          value_parser = |s: &str| lnetd_host_encap::bgp::sbfd::neighbour::parse_mac(s).ok_or("expected a unicast MAC such as 02:00:00:00:00:01"))]
    sbfd_router_mac: Option<[u8; 6]>,
    /// What the packets of the routes steered into an SR policy with no live
    /// candidate path (every list down, or no valid path) do: unlabelled
    /// (passed to the host's stack) or drop. Default: unlabelled.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-no-live-path", value_name = "unlabelled|drop")]
    sbfd_no_live_path: Option<lnetd_host_encap::labels::NoLivePath>,
}

impl BgpArgs {
    /// The flags over the file's `[bgp]` (a flag given wins).
    #[cfg(feature = "agent")]
    #[cfg_attr(not(feature = "bgp"), allow(clippy::unnecessary_wraps, unused_mut))]
    fn merged(mut self, file: Option<&lnetd_host_encap::agent::config::AgentFile>) -> Result<BgpArgs, Failure> {
        #[cfg(feature = "bgp")]
        {
            if let Some(f) = file {
                let b = &f.bgp;
                self.api = self.api.or_else(|| b.api.clone());
                if self.session_down.is_none() {
                    self.session_down = f.value("bgp.session_down", b.session_down.as_deref())?;
                }
                self.stale_time = self.stale_time.or(b.stale_time);
                self.router_id = self.router_id.or(b.router_id);
                if self.precedence.is_none() {
                    self.precedence = f.value("bgp.precedence", b.precedence.as_deref())?;
                }
                // Flags win: a --sbfd-reflector given replaces the file's list.
                let s = f.sbfd()?;
                self.sbfd_interval_ms = self.sbfd_interval_ms.or(s.interval_ms);
                self.sbfd_multiplier = self.sbfd_multiplier.or(s.multiplier);
                self.sbfd_hold_down_ms = self.sbfd_hold_down_ms.or(s.hold_down_ms);
                if self.sbfd_reflectors.is_empty() {
                    self.sbfd_reflectors = s.reflectors;
                }
                self.sbfd_router_mac = self.sbfd_router_mac.or(s.router_mac);
                self.sbfd_no_live_path = self.sbfd_no_live_path.or(s.no_live_path);
            }
            if self.sbfd_interval_ms.is_none()
                && (self.sbfd_multiplier.is_some()
                    || self.sbfd_hold_down_ms.is_some()
                    || !self.sbfd_reflectors.is_empty()
                    || self.sbfd_router_mac.is_some())
            {
                return Err(
                    "--sbfd-multiplier, --sbfd-hold-down-ms, --sbfd-reflector and --sbfd-router-mac (or \
                            their [sbfd] keys) need --sbfd-interval-ms (or sbfd.interval_ms): S-BFD is off without it"
                        .into(),
                );
            }
            // Checked here, not by clap: the API may come from the file.
            if self.api.is_none()
                && (self.session_down.is_some()
                    || self.stale_time.is_some()
                    || self.router_id.is_some()
                    || self.sbfd_interval_ms.is_some()
                    || self.sbfd_no_live_path.is_some())
            {
                return Err("--bgp-session-down, --bgp-stale-time, --bgp-router-id, --sbfd-interval-ms and \
                            --sbfd-no-live-path need --bgp-api (or bgp.api in --config)"
                    .into());
            }
        }
        #[cfg(not(feature = "bgp"))]
        if file.is_some_and(|f| f.bgp != Default::default() || f.sbfd != Default::default()) {
            return Err(
                "the configuration file has a [bgp] or [sbfd] section: this build has no BGP (feature bgp)".into()
            );
        }
        Ok(self)
    }
}

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

#[derive(Subcommand, Debug)]
enum PopCommand {
    /// Load the decapsulator, pin it and attach it to IFACE (XDP or TC ingress).
    Attach {
        /// xdp: pop before the kernel builds an skb (MTU-sized frames from a NIC);
        /// ingress: pop on the skb path (tcx), GSO super-packets whole (veth peers).
        #[arg(long, default_value = "xdp", value_parser = ["xdp", "ingress"])]
        hook: String,
        /// The labels to pop (comma-separated); default the explicit nulls 0 and 2.
        #[arg(long, value_delimiter = ',', default_value = "0,2")]
        labels: Vec<Label>,
        /// A frame whose top label is not in the set: pass it untouched, or drop it.
        #[arg(long, default_value = "pass")]
        other: OtherLabels,
        /// With --hook xdp: auto (native, falling back to generic), native or
        /// generic [default: auto].
        #[arg(long, value_parser = xdp_mode())]
        mode: Option<XdpMode>,
    },
    /// Detach the decapsulator and remove its pins.
    Detach,
    /// Pop LABEL too.
    Add {
        /// The label.
        label: Label,
    },
    /// Stop popping LABEL.
    Remove {
        /// The label.
        label: Label,
    },
    /// The labels popped.
    Labels,
    /// The decapsulator's counters.
    Stats {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
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
