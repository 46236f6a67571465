//! The command's grammar: its flags, subcommands and their arguments (clap),
//! with the help text a user reads.

use super::*;

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
pub(crate) struct Cli {
    /// The interface the dataplane runs on (the router-facing NIC).
    #[arg(short, long, global = true, value_name = "IFACE")]
    pub(crate) iface: Option<String>,
    /// How much the library logs on stderr: error, warn, info, debug.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub(crate) log: log::LevelFilter,
    /// How read commands (status, routes, stats, get, watch, pop labels,
    /// pop stats) print: text, or json (one document with the schema's
    /// envelope, docs/operations-json.md; watch prints one per line).
    #[arg(long, global = true, value_enum, default_value = "text", value_name = "FORMAT")]
    pub(crate) output: output::Format,
    #[command(subcommand)]
    pub(crate) command: Command,
}

// One value, parsed once per process: the agent's many options cost nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
        /// With --hook egress: label what the kernel sends to an on-link
        /// neighbour too (by default it leaves unlabelled: the router's own
        /// address, other hosts of the subnet); for hosts on one link that
        /// label toward each other and pop.
        #[arg(long)]
        label_on_link: bool,
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
        /// see where that flow goes (on egress, source-based `ip rule`s too).
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
pub(crate) struct BgpArgs {
    /// GoBGP's gRPC API (gobgpd --api-hosts), e.g. 127.0.0.1:50052: learn SR
    /// policies (SAFI 73) and colored routes from its best paths.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-api", value_name = "HOST:PORT")]
    pub(crate) api: Option<String>,
    /// When a BGP session (or GoBGP) goes down: keep the routes it taught
    /// (until it is back and has had --bgp-stale-time to teach them again),
    /// or withdraw them at once. Default: keep. Behind a route reflector,
    /// keep covers this host's session or its gobgpd going down, not the
    /// controller failing: the reflector's session stays up and passes on
    /// real withdrawals, which are applied.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-session-down", value_name = "keep|withdraw")]
    pub(crate) session_down: Option<lnetd_host_encap::bgp::SessionDown>,
    /// Seconds a returning session has to teach its routes again (keep). Default: 5.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-stale-time", value_name = "SECONDS")]
    pub(crate) stale_time: Option<f64>,
    /// This host's BGP identifier: SR policies with route targets are used
    /// only when one names it (RFC 9830 4.2.1). Default: GoBGP's router ID.
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-router-id", value_name = "A.B.C.D")]
    pub(crate) router_id: Option<std::net::Ipv4Addr>,
    /// Which origin's route a prefix takes when several have one, highest
    /// first: each of agent, static and bgp once. Default: agent,static,bgp
    /// (the local origins over BGP).
    #[cfg(feature = "bgp")]
    #[arg(long = "bgp-precedence", value_name = "ORIGINS")]
    pub(crate) precedence: Option<lnetd_host_encap::bgp::Precedence>,
    /// Check every segment list with S-BFD (RFC 7880) every MS milliseconds;
    /// a list unanswered for MS x --sbfd-multiplier is taken out of service.
    /// Off when not given. See docs/liveness.md.
    #[cfg(feature = "bgp")]
    // Ranges checked while parsing: a bad flag must stop the agent before
    // it attaches anything.
    #[arg(long = "sbfd-interval-ms", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub(crate) sbfd_interval_ms: Option<u64>,
    /// S-BFD detection multiplier. Default: 3.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-multiplier", value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    pub(crate) sbfd_multiplier: Option<u8>,
    /// How long a segment list that answers again waits before it is used
    /// again. Default: 5000.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-hold-down-ms", value_name = "MS")]
    pub(crate) sbfd_hold_down_ms: Option<u64>,
    /// An endpoint's S-BFD reflector discriminator (repeatable); default: the
    /// endpoint's IPv4 address as a 32-bit number (IOS-XR's default).
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-reflector", value_name = "ENDPOINT=DISCRIMINATOR")]
    pub(crate) sbfd_reflectors: Vec<lnetd_host_encap::bgp::sbfd::Reflector>,
    /// The router's MAC, where probes are sent; default: from the neighbour table.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-router-mac", value_name = "MAC",
          value_parser = |s: &str| lnetd_host_encap::bgp::sbfd::neighbour::parse_mac(s).ok_or("expected a unicast MAC such as 02:00:00:00:00:01"))]
    pub(crate) sbfd_router_mac: Option<[u8; 6]>,
    /// What the packets of the routes steered into an SR policy with no live
    /// candidate path (every list down, or no valid path) do: unlabelled
    /// (passed to the host's stack) or drop. Default: unlabelled.
    #[cfg(feature = "bgp")]
    #[arg(long = "sbfd-no-live-path", value_name = "unlabelled|drop")]
    pub(crate) sbfd_no_live_path: Option<lnetd_host_encap::labels::NoLivePath>,
}

impl BgpArgs {
    /// The flags over the file's `[bgp]` (a flag given wins).
    #[cfg(feature = "agent")]
    #[cfg_attr(not(feature = "bgp"), allow(clippy::unnecessary_wraps, unused_mut))]
    pub(crate) fn merged(
        mut self,
        file: Option<&lnetd_host_encap::agent::config::AgentFile>,
    ) -> Result<BgpArgs, Failure> {
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

#[derive(Subcommand, Debug)]
pub(crate) enum PopCommand {
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
