//! `lnetd-host-encap agent`: where it listens, who may do what, and the run
//! until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lnetd_host_encap::agent::config::AgentFile;
use lnetd_host_encap::agent::{self, AgentConfig, LocalSocket, ReadAccess, TlsConfig};
use lnetd_host_encap::{
    encap::AdoptOptions, encap::EncapsulatorBuilder, encap::Ipv4Lookup, encap::MtuPolicy, encap::TtlMode, Encapsulator,
    XdpMode,
};

use super::{BgpArgs, Failure};

/// A line on stdout that the agent survives losing: SIGPIPE is ignored
/// here (sockets), so `println!` panicked, killing the agent, once stdout's
/// reader went away (`agent | head -1`, a supervisor's pipe).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Where the agent serves and who may use it.
#[derive(clap::Args, Debug)]
pub struct Listeners {
    /// The group whose members may change routes through the local socket
    /// (root and the agent's own user always may); the socket's group.
    #[arg(long, value_name = "NAME")]
    write_group: Option<String>,
    /// What other local users may do on the local socket: all (read routes,
    /// counters, explain; socket mode 0666) or none (socket mode 0660).
    /// Default: all.
    #[arg(long, value_name = "all|none")]
    read_access: Option<ReadAccess>,
    /// Also serve gRPC on TCP at ADDR: with --tls-cert and --tls-key (and
    /// --tls-client-ca) for remote controllers; plaintext only on loopback and
    /// only with --insecure-local-tcp. Local clients use the Unix socket.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve plaintext gRPC on loopback TCP (--listen, default 127.0.0.1:50051)
    /// for a client that cannot use the local socket (the original
    /// controller). It authenticates nobody: ANY local user can then program
    /// this host.
    #[arg(long)]
    insecure_local_tcp: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (default address
    /// 127.0.0.1:9469); off loopback only with --metrics-public.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = agent::DEFAULT_METRICS)]
    metrics: Option<SocketAddr>,
    /// Allow --metrics off loopback: the endpoint lists every prefix to
    /// anyone who reaches it (a warning is logged).
    #[arg(long)]
    metrics_public: bool,
    /// The server certificate (PEM) for TLS on --listen.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The server key (PEM) for TLS.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Seconds between the agent's background comparisons of the kernel's
    /// maps with its RIB (`status` reports the last; the first runs a
    /// minute after the start, or one interval if shorter); 0: only on
    /// `verify` and `repair`. Each costs seconds of CPU at a million
    /// routes. Default 3600.
    #[arg(long, value_name = "SECONDS")]
    verify_interval: Option<u64>,
    /// The most a client may send in one ApplyStream (bytes of encoded
    /// messages; refused with OUT_OF_RANGE beyond). Default 1073741824 (1 GiB,
    /// about 25 million routes); 0: no limit.
    #[arg(long, value_name = "BYTES")]
    max_apply_bytes: Option<u64>,
}

impl Listeners {
    /// The flags over the file's `[listeners]`: a flag given wins; a switch
    /// given on either side is on.
    fn merged(mut self, file: &AgentFile) -> Result<Listeners, Failure> {
        let l = &file.listeners;
        self.write_group = self.write_group.or_else(|| l.write_group.clone());
        self.read_access = match self.read_access {
            Some(r) => Some(r),
            None => file.value("listeners.read_access", l.read_access.as_deref())?,
        };
        self.listen = self.listen.or(l.listen);
        self.insecure_local_tcp |= l.insecure_local_tcp.unwrap_or(false);
        self.metrics = self.metrics.or(l.metrics);
        self.metrics_public |= l.metrics_public.unwrap_or(false);
        self.tls_cert = self.tls_cert.or_else(|| l.tls_cert.clone());
        self.tls_key = self.tls_key.or_else(|| l.tls_key.clone());
        self.tls_client_ca = self.tls_client_ca.or_else(|| l.tls_client_ca.clone());
        self.verify_interval = self.verify_interval.or(l.verify_interval);
        self.max_apply_bytes = self.max_apply_bytes.or(l.max_apply_bytes);
        if self.metrics_public && self.metrics.is_none() {
            return Err("--metrics-public (listeners.metrics_public) needs --metrics (listeners.metrics)".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some()
            || (self.tls_client_ca.is_some() && self.tls_cert.is_none())
        {
            return Err("TLS needs both --tls-cert and --tls-key (listeners.tls_cert, listeners.tls_key)".into());
        }
        Ok(self)
    }

    /// The library's configuration, checked (nothing is attached before).
    fn config(self, iface: &str) -> Result<AgentConfig, Failure> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert_pem: read(cert)?,
                key_pem: read(key)?,
                client_ca_pem: self.tls_client_ca.as_deref().map(read).transpose()?,
            }),
            _ => None,
        };
        let default_tcp = || agent::DEFAULT_LISTEN.parse().ok();
        let listen =
            self.listen.or_else(|| if tls.is_some() || self.insecure_local_tcp { default_tcp() } else { None });
        let config = AgentConfig {
            local: Some(LocalSocket {
                path: agent::socket_path(iface).map_err(|e| format!("the local socket of {iface}: {e}"))?,
                write_group: self.write_group,
                read_access: self.read_access.unwrap_or(ReadAccess::All),
            }),
            listen,
            insecure_local_tcp: self.insecure_local_tcp,
            metrics: self.metrics,
            metrics_public: self.metrics_public,
            tls,
            verify_interval: match self.verify_interval {
                None => Some(agent::DEFAULT_VERIFY_INTERVAL),
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
            },
            max_apply_bytes: match self.max_apply_bytes {
                None => Some(agent::DEFAULT_MAX_APPLY_BYTES),
                Some(0) => None,
                Some(n) => Some(n),
            },
        };
        config.check()?;
        Ok(config)
    }
}

/// The configuration file's options.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Read settings and static routes from FILE (TOML; docs/operations.md,
    /// contrib/lnetd-host-encap.example.toml). Flags given here win over the
    /// file. SIGHUP or `lnetd-host-encap reload` applies an edited file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// As --config, but a missing FILE means no configuration file (the
    /// unit passes /etc/lnetd-host-encap/IFACE.toml this way).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    config_if_exists: Option<PathBuf>,
}

impl ConfigArgs {
    /// The file's `interface`, for an agent started without `-i` (a file
    /// that cannot be read says so when [`ConfigArgs::read`] reads it).
    pub fn interface(&self) -> Option<String> {
        let path = self.config.as_ref().or(self.config_if_exists.as_ref())?;
        AgentFile::read(path).ok()?.interface
    }

    /// The file, read and checked; `None` without one.
    fn read(&self, iface: &str) -> Result<Option<AgentFile>, Failure> {
        let path = match (&self.config, &self.config_if_exists) {
            (Some(p), _) => p,
            (None, Some(p)) if p.exists() => p,
            (None, Some(p)) => {
                say!("no configuration file at {}: flags only", p.display());
                return Ok(None);
            }
            (None, None) => return Ok(None),
        };
        // Relative routes_file paths resolve against the file's directory,
        // which a reload must find again whatever the working directory.
        let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = AgentFile::read(&path)?;
        if let Some(name) = file.interface.as_deref().filter(|n| *n != iface) {
            return Err(format!(
                "{}: interface = {name:?}, but the agent was started with -i {iface}: fix one of them",
                path.display()
            )
            .into());
        }
        // Checked now, not at the first reload (or only when it attaches): a
        // file the agent cannot apply stops the start.
        file.check()?;
        file.static_routes()?.map(|d| d.validate()).transpose().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(file))
    }
}

/// A fresh dataplane as the file's `[attach]` says (`mode` from the flag wins).
fn attach(iface: &str, file: Option<&AgentFile>, mode: Option<XdpMode>) -> Result<Encapsulator, Failure> {
    let default = AgentFile::default();
    let file = file.unwrap_or(&default);
    let a = &file.attach;
    let mut builder = Encapsulator::builder()
        .pinned()
        .allow_tso(a.allow_tso.unwrap_or(false))
        .label_on_link(a.label_on_link.unwrap_or(false));
    if let Some(ttl) = file.value::<TtlMode>("attach.ttl", a.ttl.as_deref())? {
        builder = builder.ttl_mode(ttl);
    }
    if let Some(mtu) = file.value::<MtuPolicy>("attach.mtu_policy", a.mtu_policy.as_deref())? {
        builder = builder.mtu_policy(mtu);
    }
    if let Some(lookup) = file.value::<Ipv4Lookup>("attach.lookup", a.lookup.as_deref())? {
        builder = builder.lookup(lookup);
    }
    let sizes = [
        (a.max_route_values, EncapsulatorBuilder::max_route_values as fn(EncapsulatorBuilder, u32) -> _),
        (a.dir_groups, EncapsulatorBuilder::dir_groups),
        (a.route_cache, EncapsulatorBuilder::route_cache),
        (a.route_cache_min_routes, EncapsulatorBuilder::route_cache_min_routes),
        (a.max_policies, EncapsulatorBuilder::max_policies),
        (a.max_counted_routes, EncapsulatorBuilder::max_counted_routes),
    ];
    for (value, set) in sizes {
        if let Some(n) = value {
            builder = set(builder, n);
        }
    }
    if a.max_routes_v4.is_some() || a.max_routes_v6.is_some() {
        builder = builder.max_routes(a.max_routes_v4.unwrap_or(2_097_152), a.max_routes_v6.unwrap_or(524_288));
    }
    let mode = match mode {
        Some(m) => m,
        None => file.value("attach.mode", a.mode.as_deref())?.unwrap_or_default(),
    };
    Ok(match a.hook.as_deref() {
        None | Some("xdp") => builder.attach(iface, mode)?,
        Some("egress") => builder.attach(iface, lnetd_host_encap::encap::Hook::Egress)?,
        Some(other) => {
            return Err(format!("{}: attach.hook = {other:?}: xdp or egress", file.path.display()).into());
        }
    })
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn agent(
    iface: &str,
    listeners: Listeners,
    mode: Option<XdpMode>,
    bgp: BgpArgs,
    config: ConfigArgs,
) -> Result<(), Failure> {
    // A client that hangs up mid-reply must cost a write error (EPIPE), not
    // the agent: Unix-socket writes raise SIGPIPE, which `main` restored to
    // its default (terminate) for the command's pipes.
    // SAFETY: setting a signal's disposition to ignore, before any thread starts.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }?;
    let file = config.read(iface)?;
    if let (Some(_), Some(f)) = (mode, file.as_ref().filter(|f| f.attach.hook.as_deref() == Some("egress"))) {
        return Err(format!(
            "--mode is for hook = \"xdp\" (an XDP attachment mode); {} says hook = \"egress\", which attaches to tcx",
            f.path.display()
        )
        .into());
    }
    let listeners = listeners.merged(file.as_ref().unwrap_or(&AgentFile::default()))?;
    let bgp = bgp.merged(file.as_ref())?;
    // Built (and its timers checked) before anything is attached: a refusal
    // after the attach left an XDP program pinned with no agent.
    #[cfg(feature = "bgp")]
    let sbfd = match bgp.sbfd_interval_ms {
        Some(ms) => {
            let mut c = lnetd_host_encap::bgp::sbfd::SbfdConfig::new(iface).with_timers(
                ms,
                bgp.sbfd_multiplier.unwrap_or(3),
                bgp.sbfd_hold_down_ms.unwrap_or(5000),
            )?;
            c.reflectors.extend(bgp.sbfd_reflectors.iter().map(|r| (r.endpoint, r.discriminator)));
            c.router_mac = bgp.sbfd_router_mac;
            Some(c)
        }
        None => None,
    };
    let config = listeners.config(iface)?;
    let enc = if lnetd_host_encap::encap::AdoptOptions::default().is_pinned(iface)? {
        let enc = (AdoptOptions { wait: Duration::from_secs(10), ..Default::default() }).open(iface)?;
        say!("adopted the dataplane pinned on {iface} ({} routes, every table)", enc.diagnostics().route_count());
        enc
    } else {
        let enc = attach(iface, file.as_ref(), mode)?;
        say!("attached to {iface} and pinned");
        enc
    };
    let enc = Arc::new(enc);
    // Host addresses come and go while the agent runs: the never-label
    // entries follow them (netlink), with no API call.
    let _watcher = lnetd_host_encap::encap::AddressWatcher::start(&enc)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    #[allow(unused_mut)]
    let mut extras = agent::Extras::default();
    #[cfg(feature = "bgp")]
    let (_stop_bgp, bgp_stopped) = tokio::sync::watch::channel(false);
    // The API's routes, the file's static routes and BGP's are origins, each
    // its own table, ranked by the precedence: a route set through the API
    // is the agent's whatever else runs, and a reload (or a restart with
    // another file) replaces the file's routes and keeps the API's.
    #[cfg(feature = "bgp")]
    if bgp.api.is_none() {
        let precedence = bgp.precedence.unwrap_or_default();
        extras.origins = Some(Arc::new(lnetd_host_encap::bgp::Origins::with_precedence(Arc::clone(&enc), precedence)));
    }
    #[cfg(feature = "bgp")]
    if let Some(api) = bgp.api {
        use lnetd_host_encap::bgp::{self, BgpConfig, BgpCounters, Origins};
        let precedence = bgp.precedence.unwrap_or_default();
        let origins = Arc::new(Origins::with_precedence(Arc::clone(&enc), precedence));
        let counters = Arc::new(BgpCounters::default());
        let config = BgpConfig {
            session_down: bgp.session_down.unwrap_or_default(),
            stale_time: Duration::from_secs_f64(bgp.stale_time.unwrap_or(5.0).max(0.0)),
            router_id: bgp.router_id,
            sbfd,
            no_live_path: bgp.sbfd_no_live_path.unwrap_or_default(),
            ..BgpConfig::new(api.clone())
        };
        extras.origins = Some(Arc::clone(&origins));
        extras.liveness = Some(Arc::clone(&counters));
        extras.bgp = Some(Arc::clone(&counters));
        let (c, name) = (Arc::clone(&counters), iface.to_owned());
        extras.metrics = Some(Arc::new(move || c.prometheus(&name)));
        say!(
            "learning SR policies and colored routes from GoBGP at {api} (session down: {})",
            bgp.session_down.unwrap_or_default()
        );
        runtime.spawn(bgp::learn::run(config, origins, counters, bgp_stopped));
    }
    #[cfg(not(feature = "bgp"))]
    let _ = bgp;
    extras.config = file;
    systemd(&runtime, &enc, &mut extras);
    let mut serving: Vec<String> = config.local.iter().map(|l| l.path.display().to_string()).collect();
    serving.extend(config.listen.map(|a| a.to_string()));
    runtime.block_on(async move {
        let shutdown = async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    log::error!("SIGTERM handler: {e}");
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        say!("serving on {}", serving.join(" and "));
        agent::serve_with(enc, config, extras, shutdown).await
    })?;
    say!("stopped; the dataplane keeps forwarding (pinned)");
    Ok(())
}

/// Under systemd (Type=notify): READY=1 once the listeners are bound, and,
/// with WatchdogSec=, WATCHDOG=1 at half the interval while the dataplane's
/// maps answer (a stuck or broken agent is restarted; forwarding goes on).
/// Elsewhere, nothing.
fn systemd(runtime: &tokio::runtime::Runtime, enc: &Arc<Encapsulator>, extras: &mut agent::Extras) {
    use sd_notify::NotifyState;
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    extras.on_ready = Some(Arc::new(|| {
        if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready]) {
            log::warn!("telling systemd the agent is ready: {e}");
        }
    }));
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) {
        return;
    }
    let enc = Arc::clone(enc);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
        loop {
            tick.tick().await;
            let enc = Arc::clone(&enc);
            match tokio::task::spawn_blocking(move || enc.stats()).await {
                Ok(Ok(_)) => {
                    if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                        log::warn!("systemd watchdog: {e}");
                    }
                }
                Ok(Err(e)) => log::error!("the dataplane's counters do not answer ({e}): not petting the watchdog"),
                Err(e) => log::error!("watchdog check: {e}"),
            }
        }
    });
}
