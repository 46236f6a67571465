//! The agent: a daemon a controller drives over gRPC. It serves the proof of
//! concept's protocol unchanged (package `counters`, [`proto::counters`]) and
//! this project's own (package `lnetd.encap.v1`, [`proto::v1`]), and
//! Prometheus metrics over HTTP.
//!
//! Where it serves (docs/operations.md says more):
//! - a local Unix socket ([`socket_path`]), always: root, the agent's own
//!   user and a write group may change routes; other local users may read,
//!   or nothing ([`authz`]);
//! - TCP with TLS (and a client CA) for remote controllers, when asked;
//! - plaintext TCP on loopback only as an explicit opt-in
//!   ([`AgentConfig::insecure_local_tcp`]): any local user can then program
//!   the host. The proof of concept's client needs it.
//!
//! Both generated clients are public, so a Rust controller needs no code
//! generation of its own:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lnetd_host_encap::agent::proto::v1::Route;
//! let path = lnetd_host_encap::agent::socket_path("eth1")?;
//! let mut client = lnetd_host_encap::agent::connect_local(&path).await?;
//! client.set_route(Route { prefix: "198.51.100.0/24".into(), policy: "16001/16002@7,16003@3".into(), ..Default::default() }).await?;
//! # Ok(()) }
//! ```

mod activity;
mod applying;
mod audit;
pub mod authz;
pub mod config;
pub mod details;
#[cfg(feature = "bgp")]
pub mod liveness;
mod local;
mod metrics_http;
mod original;
mod service;
mod statics;

pub use authz::{Access, Authorization, ReadAccess, METHODS};
pub use local::{socket_path, socket_path_in, LocalSocket, Peer, PeerStream};
pub use statics::{ReloadError, ReloadReport};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, Endpoint, Identity, Server, ServerTlsConfig};

use crate::domain::route::{Route, Table};
use crate::encapsulator::Encapsulator;
use crate::error::RouteError;

/// The generated protocol code: messages, servers and clients.
pub mod proto {
    /// The proof of concept's protocol (package `counters`).
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    pub mod counters {
        tonic::include_proto!("counters");
    }
    /// This project's protocol, version 1 (package `lnetd.encap.v1`).
    #[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    pub mod v1 {
        tonic::include_proto!("lnetd.encap.v1");
    }
}

/// The default TCP address (the proof of concept's): served only with TLS,
/// or with [`AgentConfig::insecure_local_tcp`].
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The default metrics address.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9469";

/// TLS for the gRPC listener, PEM-encoded.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The server certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// When given, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

/// Where and how the agent serves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The local Unix socket, with its authorization (the normal way in).
    pub local: Option<LocalSocket>,
    /// A TCP address for gRPC: with [`AgentConfig::tls`] (remote
    /// controllers), or plaintext on loopback with
    /// [`AgentConfig::insecure_local_tcp`].
    pub listen: Option<SocketAddr>,
    /// Allows a plaintext TCP listener on loopback: it authenticates nobody,
    /// so any local user can then program the host.
    pub insecure_local_tcp: bool,
    /// The Prometheus endpoint (`/metrics`), if any; loopback unless
    /// [`AgentConfig::metrics_public`].
    pub metrics: Option<SocketAddr>,
    /// Allows the metrics endpoint off loopback (it lists every prefix).
    pub metrics_public: bool,
    /// TLS for the TCP listener.
    pub tls: Option<TlsConfig>,
    /// Between two background comparisons of the kernel's maps with the
    /// RIB (`status` reports the last); the first runs a minute after the
    /// start (or one interval, if shorter). None: only when a client calls
    /// `Verify` or `Repair`. Each costs seconds of CPU at a million routes
    /// (the RIB's lock is held to copy what it implies, and throughout only
    /// when the first pass found a difference).
    pub verify_interval: Option<std::time::Duration>,
    /// The most an `ApplyStream` may send, in bytes of encoded messages over
    /// all its chunks: a writer over it is refused with OUT_OF_RANGE before
    /// anything is applied (the agent holds the whole stream in memory until
    /// it applies it). None: no limit.
    pub max_apply_bytes: Option<u64>,
}

/// [`AgentConfig::verify_interval`]'s default: an hour: each comparison pauses changes for its duration (seconds at a million routes).
pub const DEFAULT_VERIFY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// [`AgentConfig::max_apply_bytes`]'s default: 1 GiB, about 25 million
/// routes as the command sends them.
pub const DEFAULT_MAX_APPLY_BYTES: u64 = 1 << 30;

impl Default for AgentConfig {
    /// Nothing to serve yet; the defaults of the verification interval and
    /// of the apply's size.
    fn default() -> AgentConfig {
        AgentConfig {
            local: None,
            listen: None,
            insecure_local_tcp: false,
            metrics: None,
            metrics_public: false,
            tls: None,
            verify_interval: Some(DEFAULT_VERIFY_INTERVAL),
            max_apply_bytes: Some(DEFAULT_MAX_APPLY_BYTES),
        }
    }
}

impl AgentConfig {
    /// Refuses what would open the host to others without saying so: a
    /// plaintext listener off loopback, or on loopback without the opt-in; a
    /// metrics endpoint off loopback without [`AgentConfig::metrics_public`];
    /// nothing to serve at all; a write group that does not exist. ([`serve`] logs a warning for each exposure
    /// it allows.)
    ///
    /// # Errors
    /// [`AgentError`] naming the flag that allows it, or the safer choice.
    pub fn check(&self) -> Result<(), AgentError> {
        if let Some(addr) = self.listen {
            if self.tls.is_none() && !addr.ip().is_loopback() {
                return Err(AgentError::PlaintextOffLoopback { addr });
            }
            if self.tls.is_none() && !self.insecure_local_tcp {
                return Err(AgentError::PlaintextNeedsOptIn { addr });
            }
        }
        if let Some(addr) = self.metrics {
            if !addr.ip().is_loopback() && !self.metrics_public {
                return Err(AgentError::MetricsOffLoopback { addr });
            }
        }
        if self.local.is_none() && self.listen.is_none() {
            return Err(AgentError::NothingToServe);
        }
        // Checked here, before anything is attached: a missing group found
        // only when the socket is bound would leave a dataplane behind.
        if let Some(group) = self.local.as_ref().and_then(|l| l.write_group.as_deref()) {
            local::group_id(group)?;
        }
        Ok(())
    }
}

/// The agent could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A non-loopback gRPC address without TLS: anyone on the network could program the host.
    #[error(
        "{addr} is not a loopback address: serving the API there without TLS would let anyone on the network \
         program this host; give --tls-cert and --tls-key (and --tls-client-ca to require client certificates), \
         or listen on 127.0.0.1"
    )]
    PlaintextOffLoopback {
        /// The address given.
        addr: SocketAddr,
    },
    /// A plaintext loopback listener without the opt-in.
    #[error(
        "plaintext gRPC on {addr} authenticates nobody: any local user could program this host; local clients \
         use the agent's Unix socket (no flag needed); add --insecure-local-tcp only for a client that must use \
         TCP (the original controller), or give --tls-cert and --tls-key"
    )]
    PlaintextNeedsOptIn {
        /// The address given.
        addr: SocketAddr,
    },
    /// Metrics off loopback without the opt-in.
    #[error(
        "metrics on {addr} would list every prefix to anyone who reaches it; serve them on 127.0.0.1 \
         (and scrape through a proxy), or add --metrics-public"
    )]
    MetricsOffLoopback {
        /// The address given.
        addr: SocketAddr,
    },
    /// Neither the local socket nor a TCP listener.
    #[error("nothing to serve: no local socket and no TCP listener")]
    NothingToServe,
    /// The write group does not exist.
    #[error("group {group:?} does not exist: create it (groupadd {group}) or give another --write-group")]
    NoSuchGroup {
        /// The name given.
        group: String,
    },
    /// Another agent answers on the local socket.
    #[error("another agent already serves {path}: stop it first (systemctl stop lnetd-host-encap-agent@IFACE)")]
    SocketInUse {
        /// The socket.
        path: std::path::PathBuf,
    },
    /// The local socket could not be set up.
    #[error("{op} {path}: {source}")]
    Socket {
        /// What failed.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("listening on {addr} failed: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration refused: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// The server stopped with an error.
    #[error("the gRPC server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    /// The configuration file's static routes were refused at start.
    #[error(transparent)]
    Config(#[from] ReloadError),
    /// The encapsulator is not attached (the agent serves an attached one).
    #[error("the encapsulator is not attached to an interface")]
    NotAttached,
}

/// The interface an encapsulator serves.
fn interface(enc: &Encapsulator) -> Result<String, AgentError> {
    enc.attachment().map(|a| a.iface).ok_or(AgentError::NotAttached)
}

/// Serves `enc` until `shutdown` completes: gRPC on `config.listen` (both
/// protocols), metrics on `config.metrics`. The dataplane is not touched
/// when it returns: pinned, it keeps forwarding.
///
/// # Errors
/// [`AgentError`]: a plaintext non-loopback address, an address in use, TLS
/// refused, the server failing.
pub async fn serve(
    enc: Arc<Encapsulator>,
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    serve_with(enc, config, Extras::default(), shutdown).await
}

/// More text for the metrics endpoint, appended to the dataplane's families.
pub type MetricsText = Arc<dyn Fn() -> String + Send + Sync>;

/// What else the agent serves beside the dataplane.
#[derive(Clone, Default)]
pub struct Extras {
    /// The per-origin tables, ranked by their precedence; given none, the
    /// agent makes them with the default precedence. The API's changes are
    /// `agent` routes in them, merged with the static and BGP ones.
    #[cfg(feature = "bgp")]
    pub origins: Option<Arc<crate::bgp::Origins>>,
    /// The BGP learner's counters: `GetLiveness` and `Explain` read the
    /// segment lists' S-BFD state from them.
    #[cfg(feature = "bgp")]
    pub liveness: Option<Arc<crate::bgp::BgpCounters>>,
    /// More metrics (e.g. [`crate::bgp::BgpCounters::prometheus`]).
    pub metrics: Option<MetricsText>,
    /// Called once every listener is bound, before the first request is
    /// served (e.g. to tell systemd the agent is ready).
    pub on_ready: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The configuration file (`agent --config`): its static routes are
    /// applied before anything is served, and again on SIGHUP and on the
    /// `Reload` RPC ([`config`]).
    pub config: Option<config::AgentFile>,
    /// The BGP learner's counters: with them, `GetStatus` reports the
    /// sessions and BGP's last change.
    #[cfg(feature = "bgp")]
    pub bgp: Option<Arc<crate::bgp::BgpCounters>>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("metrics", &self.metrics.is_some())
            .field("on_ready", &self.on_ready.is_some())
            .field("config", &self.config.as_ref().map(|c| c.path.display().to_string()))
            .finish_non_exhaustive()
    }
}

/// The API's route changes, of both protocols: one path, whatever the
/// agent serves beside them. Each is an `agent` route, recorded as such in
/// the RIB beside the route, so that `ListRoutes`, `GetStatus`, the
/// command's `routes` and the next agent (which keeps them over the
/// configuration file's static routes) all see where it came from.
///
/// With BGP built in, every change goes through the per-origin tables
/// ([`crate::bgp::Origins`]), BGP running or not (the agent makes them
/// when it is given none). Without it, nothing else ranks routes: the
/// changes go straight to the encapsulator, with the same record.
#[derive(Clone)]
pub(crate) struct Writes {
    #[cfg(not(feature = "bgp"))]
    enc: Arc<Encapsulator>,
    statics: Option<Arc<statics::Statics>>,
    #[cfg(feature = "bgp")]
    origins: Arc<crate::bgp::Origins>,
    /// The last change made here, for `status`.
    activity: Arc<activity::Activity>,
    /// The counts and the last comparison, for `status`.
    audit: Arc<audit::Audit>,
    /// Held by an apply with a removal guard from its count to its change.
    applying: Arc<std::sync::Mutex<()>>,
    #[cfg(feature = "bgp")]
    bgp: Option<Arc<crate::bgp::BgpCounters>>,
}

impl Writes {
    pub(crate) fn set_route_in(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        route.check_explicit_null()?;
        #[cfg(feature = "bgp")]
        self.origins.set_route(table, route)?;
        #[cfg(not(feature = "bgp"))]
        self.enc.set_route_from(table, route, Some(crate::rib::origins::Noted::Agent))?;
        self.activity.record("agent", 1);
        Ok(())
    }

    pub(crate) fn remove_in(&self, table: Table, prefix: ipnetwork::IpNetwork) -> Result<bool, RouteError> {
        #[cfg(feature = "bgp")]
        let removed = self.origins.remove_route(table, prefix)?;
        #[cfg(not(feature = "bgp"))]
        let removed = self.enc.remove(table, prefix)?;
        self.activity.record("agent", u64::from(removed));
        Ok(removed)
    }

    pub(crate) fn apply(
        &self,
        desired: &crate::DesiredState,
        options: crate::ApplyOptions,
    ) -> Result<crate::desired::ApplyReport, RouteError> {
        #[cfg(feature = "bgp")]
        let report = self.origins.apply_local(desired, options)?;
        #[cfg(not(feature = "bgp"))]
        let report = {
            // Every route of an apply through the API is the agent's.
            let valid = desired.validate()?;
            let origins: crate::fib::apply::Origins =
                valid.routes().keys().map(|id| (*id, crate::rib::origins::Noted::Agent)).collect();
            self.enc.apply_from(valid, options, &origins)?
        };
        self.activity.record_apply("agent", &report);
        Ok(report)
    }

    /// Reads the configuration file again and applies its static routes.
    pub(crate) fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let report = self.statics.as_ref().ok_or(ReloadError::NoConfig)?.reload(self)?;
        if let Some(r) = &report.routes {
            self.activity.record_apply("static", r);
        }
        Ok(report)
    }

    /// What identifies the routes' state now: it moves with every change
    /// (`status` counts the routes once per value).
    pub(crate) fn stamp(&self) -> audit::Stamp {
        #[cfg(feature = "bgp")]
        let bgp = self
            .bgp
            .as_ref()
            .and_then(|b| *b.last_change.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .map(|(at, _)| at);
        #[cfg(not(feature = "bgp"))]
        let bgp = None;
        (self.activity.generation(), bgp)
    }

    /// What `get` says of one route's origin (its BGP policy's text where
    /// it has one), and that policy's key, looked up alone: the map of
    /// every route's origin ([`Writes::origin`]) cost `get` a second at a
    /// million routes.
    #[cfg(feature = "bgp")]
    pub(crate) fn origin_said(
        &self,
        table: Table,
        prefix: ipnetwork::IpNetwork,
    ) -> (String, Option<crate::bgp::PolicyKey>) {
        let view = self.origins.view_of(table, prefix);
        let said = view.bgp_policy(table, prefix).unwrap_or_else(|| view.origin(table, prefix).0.to_string());
        (said, view.policy_key(table, prefix))
    }

    /// As above, without BGP: the origin the RIB records (a BGP route is
    /// one an agent built with BGP taught), or static.
    #[cfg(not(feature = "bgp"))]
    pub(crate) fn origin_said(
        &self,
        table: Table,
        prefix: ipnetwork::IpNetwork,
    ) -> (String, Option<std::convert::Infallible>) {
        (self.enc.recorded_origin((table, prefix)).to_string(), None)
    }

    /// Each route's origin and, for BGP's, its policy and binding SID.
    pub(crate) fn origin(&self) -> impl Fn(Table, ipnetwork::IpNetwork) -> (String, String, Option<u32>) {
        #[cfg(feature = "bgp")]
        {
            let view = self.origins.view();
            move |table, prefix| {
                let (origin, info) = view.origin(table, prefix);
                let policy = view.bgp_policy(table, prefix).unwrap_or_default();
                (origin.to_string(), policy, info.and_then(|i| i.binding_sid))
            }
        }
        #[cfg(not(feature = "bgp"))]
        {
            // Without BGP a route's origin is the one the RIB records, or static.
            let recorded = self.enc.origin_records().0;
            move |table, prefix| {
                let origin = recorded.get(&(table, prefix)).map_or(crate::rib::origins::Origin::Static, |n| n.origin());
                (origin.to_string(), String::new(), None)
            }
        }
    }
}

/// As [`serve`], with [`Extras`].
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    enc: Arc<Encapsulator>,
    config: AgentConfig,
    extras: Extras,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    config.check()?;
    warn_exposures(&config);
    let writes = Writes {
        #[cfg(not(feature = "bgp"))]
        enc: Arc::clone(&enc),
        statics: extras.config.clone().map(|c| Arc::new(statics::Statics::new(c))),
        // Given (the command's, with its precedence, or BGP's), or made
        // here: the API's routes are `agent` routes either way.
        #[cfg(feature = "bgp")]
        origins: extras.origins.clone().unwrap_or_else(|| Arc::new(crate::bgp::Origins::new(Arc::clone(&enc)))),
        activity: Arc::new(activity::Activity::new()),
        audit: Arc::new(audit::Audit::new(Arc::clone(&enc), config.verify_interval)),
        applying: Arc::new(std::sync::Mutex::new(())),
        #[cfg(feature = "bgp")]
        bgp: extras.bgp.clone(),
    };
    let iface = interface(&enc)?;
    // SIGHUP would end the agent by default: it reloads instead, from the start.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| AgentError::Socket { op: "handling SIGHUP for", path: "the agent".into(), source })?;
    if let Some(s) = &writes.statics {
        // Once, before anything is served: blocking this worker costs no client.
        let report = s.start(&writes)?;
        if let Some(r) = &report.routes {
            writes.activity.record_apply("static", r);
        }
        log::info!("{report}");
    }
    // Everything is bound before anything is served: a refusal leaves nothing half up.
    let tcp = match config.listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| AgentError::Bind { addr, source })?),
        None => None,
    };
    let local = match &config.local {
        Some(l) => {
            let gid = l.write_group.as_deref().map(local::group_id).transpose()?;
            let listener = local::bind(&l.path, l.read_access, gid)?;
            let rules = Authorization {
                owner_uid: nix::unistd::geteuid().as_raw(),
                write_group: l.write_group.clone().zip(gid),
                read_access: l.read_access,
            };
            Some((listener, rules, l.path.clone()))
        }
        None => None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = match config.metrics {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(|source| AgentError::Bind { addr, source })?;
            log::info!("metrics on http://{addr}/metrics");
            Some(tokio::spawn(metrics_http::serve(
                Arc::clone(&enc),
                iface.clone(),
                extras.metrics.clone(),
                listener,
                stopped.clone(),
            )))
        }
        None => None,
    };
    if let Some(ready) = &extras.on_ready {
        ready();
    }
    let int_map = proto::counters::int_map_server::IntMapServer::new(original::Original::new(
        Arc::clone(&enc),
        writes.clone(),
        &iface,
    ));
    let update_map = proto::counters::int_update_map_server::IntUpdateMapServer::new(original::Original::new(
        Arc::clone(&enc),
        writes.clone(),
        &iface,
    ));
    let v1 = service::Service::new(Arc::clone(&enc), writes.clone(), &iface, config.max_apply_bytes);
    #[cfg(feature = "bgp")]
    let v1 = v1.with_liveness(extras.liveness.clone());
    let v1 = proto::v1::encapsulator_server::EncapsulatorServer::new(v1);
    let when_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let tcp_server = async {
        let Some(listener) = tcp else { return Ok(()) };
        let mut server = Server::builder();
        if let Some(tls) = &config.tls {
            let mut tls_config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
            if let Some(ca) = &tls.client_ca_pem {
                tls_config = tls_config.client_ca_root(Certificate::from_pem(ca));
            }
            server = server.tls_config(tls_config).map_err(AgentError::Tls)?;
        }
        log::info!(
            "serving {iface} on {} ({})",
            listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            if config.tls.is_some() { "TLS" } else { "plaintext, loopback, --insecure-local-tcp" }
        );
        server
            .add_service(int_map.clone())
            .add_service(update_map.clone())
            .add_service(v1.clone())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                when_stopped(stopped.clone()),
            )
            .await
            .map_err(AgentError::Serve)
    };
    let local_path = local.as_ref().map(|(_, _, path)| path.clone());
    let local_server = async {
        let Some((listener, rules, path)) = local else { return Ok(()) };
        log::info!("serving {iface} on {} ({:?}, others: {})", path.display(), rules.write_group, rules.read_access);
        let result = Server::builder()
            .layer(authz::AuthorizeLayer::new(rules))
            .add_service(int_map.clone())
            .add_service(update_map.clone())
            .add_service(v1.clone())
            .serve_with_incoming_shutdown(local::incoming(listener), when_stopped(stopped.clone()))
            .await
            .map_err(AgentError::Serve);
        local::remove(&path);
        result
    };
    let reloads = tokio::spawn(reload_on_hangup(hangup, writes.clone()));
    let audits = tokio::spawn(audit::run(Arc::clone(&writes.audit), writes.clone()));
    let stop = Arc::new(stop);
    let trigger = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
    };
    // Both servers drain on shutdown; one failing drops the other. A client
    // that keeps its connection open does not hold the stop for longer than
    // DRAIN: its connection is closed (a stop hung for as long as one stayed).
    let servers = async { tokio::try_join!(tcp_server, local_server).map(|_| ()) };
    let deadline = async {
        when_stopped(stopped.clone()).await;
        tokio::time::sleep(DRAIN).await;
    };
    let result = tokio::select! {
        result = servers => result,
        () = deadline => {
            log::warn!("stopping: connections still open {DRAIN:?} after the stop are closed");
            if let Some(path) = &local_path {
                local::remove(path);
            }
            Ok(())
        }
    };
    let _ = stop.send(true);
    trigger.abort();
    reloads.abort();
    audits.abort();
    if let Some(task) = metrics {
        if let Err(e) = task.await {
            log::warn!("metrics server: {e}");
        }
    }
    result
}

/// How long a stop waits for open connections to finish their calls.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGHUP: the configuration file is read again and its changes applied
/// (a refusal is logged; the routes in force stay).
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, writes: Writes) {
    while hangup.recv().await.is_some() {
        let w = writes.clone();
        match tokio::task::spawn_blocking(move || w.reload()).await {
            Ok(Ok(report)) if report.restart_needed.is_empty() => log::info!("SIGHUP: {report}"),
            Ok(Ok(report)) => log::warn!("SIGHUP: {report}"),
            Ok(Err(e)) => log::error!("SIGHUP: reload refused, nothing changed: {e}"),
            Err(e) => log::error!("SIGHUP: reload: {e}"),
        }
    }
}

/// A warning for each listener that lets in more than the local socket would.
fn warn_exposures(config: &AgentConfig) {
    if let Some(addr) = config.listen {
        match &config.tls {
            None => {
                log::warn!("plaintext gRPC on {addr} (--insecure-local-tcp): any local user can program this host")
            }
            Some(t) if t.client_ca_pem.is_none() => {
                log::warn!("TLS on {addr} without --tls-client-ca: any client that reaches it can program this host")
            }
            Some(_) => {}
        }
    }
    if let Some(addr) = config.metrics.filter(|a| !a.ip().is_loopback()) {
        log::warn!("metrics on {addr} (--metrics-public): anyone who reaches it can read every prefix");
    }
}

/// A client of the agent's v1 protocol over its local socket.
///
/// # Errors
/// The socket cannot be reached (no agent, or not allowed to connect).
pub async fn connect_local(
    path: &std::path::Path,
) -> Result<proto::v1::encapsulator_client::EncapsulatorClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("unix:{}", path.display()))?.connect().await?;
    Ok(proto::v1::encapsulator_client::EncapsulatorClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// The gRPC status for a refused or failed change, with the library's message.
pub(crate) fn status(e: RouteError) -> tonic::Status {
    use tonic::Status;
    let msg = e.to_string();
    match e {
        RouteError::Prefix(_)
        | RouteError::Label(_)
        | RouteError::Policy(_)
        | RouteError::Invalid(_)
        | RouteError::LocalAddress { .. } => Status::invalid_argument(msg),
        RouteError::TableFull { .. } => Status::resource_exhausted(msg),
        RouteError::ReadOnly | RouteError::PolicyObject { .. } => Status::failed_precondition(msg),
        RouteError::RemovalRefused { .. } => applying::refusal(&e).unwrap_or_else(|| Status::failed_precondition(msg)),
        RouteError::Map(_) | RouteError::NotSaved(_) | RouteError::Unreadable(_) => Status::internal(msg),
        // docs/bgp.md: a BGP route cannot be removed through the API (NOT_FOUND).
        RouteError::BgpRoute { .. } => Status::not_found(msg),
    }
}

/// The top label of a route's first list (the proof of concept's one label).
pub(crate) fn top_label(route: &Route) -> i32 {
    route.policy.lists().first().and_then(|l| l.stack.labels().first()).map_or(0, |l| l.value() as i32)
}

/// Alternate table 1: the proof of concept's `priority_dst`.
pub(crate) fn priority_table() -> Table {
    Table::alternate(1).unwrap_or(Table::Main)
}
