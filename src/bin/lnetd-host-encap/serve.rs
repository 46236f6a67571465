//! `lnetd-host-encap agent`: where it listens, who may do what, and the run
//! until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lnetd_host_encap::agent::{self, AgentConfig, LocalSocket, ReadAccess, TlsConfig};
use lnetd_host_encap::{AdoptOptions, Encapsulator, XdpMode};

use super::{BgpArgs, Failure};

/// Where the agent serves and who may use it.
#[derive(clap::Args, Debug)]
pub struct Listeners {
    /// The group whose members may change routes through the local socket
    /// (root and the agent's own user always may); the socket's group.
    #[arg(long, value_name = "NAME")]
    write_group: Option<String>,
    /// What other local users may do on the local socket: all (read routes,
    /// counters, explain; socket mode 0666) or none (socket mode 0660).
    #[arg(long, value_name = "all|none", default_value = "all")]
    read_access: ReadAccess,
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
    #[arg(long, requires = "metrics")]
    metrics_public: bool,
    /// The server certificate (PEM) for TLS on --listen.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server key (PEM) for TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

impl Listeners {
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
                read_access: self.read_access,
            }),
            listen,
            insecure_local_tcp: self.insecure_local_tcp,
            metrics: self.metrics,
            metrics_public: self.metrics_public,
            tls,
        };
        config.check()?;
        Ok(config)
    }
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn agent(iface: &str, listeners: Listeners, mode: XdpMode, bgp: BgpArgs) -> Result<(), Failure> {
    // A client that hangs up mid-reply must cost a write error (EPIPE), not
    // the agent: Unix-socket writes raise SIGPIPE, which `main` restored to
    // its default (terminate) for the command's pipes.
    // SAFETY: setting a signal's disposition to ignore, before any thread starts.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }?;
    let config = listeners.config(iface)?;
    let enc = if Encapsulator::is_pinned(iface)? {
        let enc =
            Encapsulator::open_with(iface, &AdoptOptions { wait: Duration::from_secs(10), ..Default::default() })?;
        println!("adopted the dataplane pinned on {iface} ({} routes)", enc.routes()?.len());
        enc
    } else {
        let enc = Encapsulator::builder().pinned().attach(iface, mode)?;
        println!("attached to {iface} and pinned");
        enc
    };
    let enc = Arc::new(enc);
    // Host addresses come and go while the agent runs: the never-label
    // entries follow them (netlink), with no API call.
    let _watcher = enc.watch_host_addresses()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    #[allow(unused_mut)]
    let mut extras = agent::Extras::default();
    #[cfg(feature = "bgp")]
    let (_stop_bgp, bgp_stopped) = tokio::sync::watch::channel(false);
    #[cfg(feature = "bgp")]
    if let Some(api) = bgp.api {
        use lnetd_host_encap::bgp::{self, BgpConfig, BgpCounters, Origins};
        let file = bgp::origins::origins_path(iface).map_err(|e| format!("reading the network namespace: {e}"))?;
        let origins = Arc::new(Origins::new(Arc::clone(&enc), Some(file)));
        let counters = Arc::new(BgpCounters::default());
        let config = BgpConfig {
            session_down: bgp.session_down,
            stale_time: Duration::from_secs_f64(bgp.stale_time.max(0.0)),
            router_id: bgp.router_id,
            sbfd: match bgp.sbfd_interval_ms {
                Some(ms) => {
                    let mut c = bgp::sbfd::SbfdConfig::new(iface).with_timers(
                        ms,
                        bgp.sbfd_multiplier,
                        bgp.sbfd_hold_down_ms,
                    )?;
                    c.reflectors.extend(bgp.sbfd_reflectors.iter().map(|r| (r.endpoint, r.discriminator)));
                    c.router_mac = bgp.sbfd_router_mac;
                    Some(c)
                }
                None => None,
            },
            ..BgpConfig::new(api.clone())
        };
        extras.origins = Some(Arc::clone(&origins));
        let (c, name) = (Arc::clone(&counters), iface.to_owned());
        extras.metrics = Some(Arc::new(move || c.prometheus(&name)));
        println!("learning SR policies and colored routes from GoBGP at {api} (session down: {})", bgp.session_down);
        runtime.spawn(bgp::learn::run(config, origins, counters, bgp_stopped));
    }
    #[cfg(not(feature = "bgp"))]
    let _ = bgp;
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
        println!("serving on {}", serving.join(" and "));
        agent::serve_with(enc, config, extras, shutdown).await
    })?;
    println!("stopped; the dataplane keeps forwarding (pinned)");
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
