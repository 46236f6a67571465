//! The agent: a daemon a controller drives over gRPC. It serves the proof of
//! concept's protocol unchanged (package `counters`, [`proto::counters`]) and
//! this project's own (package `lnetd.encap.v1`, [`proto::v1`]), and
//! Prometheus metrics over HTTP. Both generated clients are public, so a Rust
//! controller needs no code generation of its own:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use lnetd_host_encap::agent::proto::v1::{encapsulator_client::EncapsulatorClient, Route};
//! let mut client = EncapsulatorClient::connect("http://127.0.0.1:50051").await?;
//! client.set_route(Route { prefix: "198.51.100.0/24".into(), policy: "16001/16002@7,16003@3".into(), ..Default::default() }).await?;
//! # Ok(()) }
//! ```

mod metrics_http;
mod original;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

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

/// The default gRPC address (the proof of concept's).
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
    /// The gRPC address; non-loopback only with [`AgentConfig::tls`].
    pub listen: SocketAddr,
    /// The Prometheus endpoint (`/metrics`), if any.
    pub metrics: Option<SocketAddr>,
    /// TLS for gRPC.
    pub tls: Option<TlsConfig>,
}

/// The agent could not serve.
#[derive(Debug, thiserror::Error)]
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
    /// The per-origin tables: with them, the API's changes are `agent`
    /// routes merged with BGP's, and `ListRoutes` says each route's origin.
    #[cfg(feature = "bgp")]
    pub origins: Option<Arc<crate::bgp::Origins>>,
    /// More metrics (e.g. [`crate::bgp::BgpCounters::prometheus`]).
    pub metrics: Option<MetricsText>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras").field("metrics", &self.metrics.is_some()).finish_non_exhaustive()
    }
}

/// The API's route changes: straight to the encapsulator, or, with origins,
/// into the `agent` table merged with BGP's.
#[derive(Clone)]
pub(crate) struct Writes {
    enc: Arc<Encapsulator>,
    #[cfg(feature = "bgp")]
    origins: Option<Arc<crate::bgp::Origins>>,
}

impl Writes {
    pub(crate) fn set_route_in(&self, table: Table, route: &Route) -> Result<(), RouteError> {
        #[cfg(feature = "bgp")]
        if let Some(o) = &self.origins {
            return o.set_route(table, route);
        }
        self.enc.set_route_in(table, route)
    }

    pub(crate) fn remove_in(&self, table: Table, prefix: ipnetwork::IpNetwork) -> Result<bool, RouteError> {
        #[cfg(feature = "bgp")]
        if let Some(o) = &self.origins {
            return o.remove_route(table, prefix);
        }
        self.enc.remove_in(table, prefix)
    }

    pub(crate) fn apply(&self, desired: &crate::DesiredState, dry_run: bool) -> Result<crate::ApplyReport, RouteError> {
        #[cfg(feature = "bgp")]
        if let Some(o) = &self.origins {
            return o.apply_local(desired, dry_run);
        }
        if dry_run {
            self.enc.apply_dry_run(desired)
        } else {
            self.enc.apply(desired)
        }
    }

    /// Each route's origin and, for BGP's, its policy (empty without origins).
    pub(crate) fn origin(&self) -> impl Fn(Table, ipnetwork::IpNetwork) -> (String, String, Option<u32>) {
        #[cfg(feature = "bgp")]
        let view = self.origins.as_ref().map(|o| o.view());
        move |_table, _prefix| {
            #[cfg(feature = "bgp")]
            if let Some(v) = &view {
                let (origin, info) = v.origin(_table, _prefix);
                return (
                    origin.to_string(),
                    info.map(|i| i.to_string()).unwrap_or_default(),
                    info.and_then(|i| i.binding_sid),
                );
            }
            (String::new(), String::new(), None)
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
    let writes = Writes {
        enc: Arc::clone(&enc),
        #[cfg(feature = "bgp")]
        origins: extras.origins.clone(),
    };
    let iface = interface(&enc)?;
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
        return Err(AgentError::PlaintextOffLoopback { addr: config.listen });
    }
    let listener =
        TcpListener::bind(config.listen).await.map_err(|source| AgentError::Bind { addr: config.listen, source })?;
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics = match config.metrics {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(|source| AgentError::Bind { addr, source })?;
            log::info!("metrics on http://{addr}/metrics");
            Some(tokio::spawn(metrics_http::serve(
                Arc::clone(&enc),
                iface.clone(),
                extras.metrics.clone(),
                listener,
                metrics_stopped,
            )))
        }
        None => None,
    };
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
        config.listen,
        if config.tls.is_some() { "TLS" } else { "plaintext, loopback" }
    );
    let result = server
        .add_service(proto::counters::int_map_server::IntMapServer::new(original::Original::new(
            Arc::clone(&enc),
            writes.clone(),
            &iface,
        )))
        .add_service(proto::counters::int_update_map_server::IntUpdateMapServer::new(original::Original::new(
            Arc::clone(&enc),
            writes.clone(),
            &iface,
        )))
        .add_service(proto::v1::encapsulator_server::EncapsulatorServer::new(service::Service::new(
            Arc::clone(&enc),
            writes.clone(),
            &iface,
        )))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(AgentError::Serve);
    let _ = stop_metrics.send(true);
    if let Some(task) = metrics {
        if let Err(e) = task.await {
            log::warn!("metrics server: {e}");
        }
    }
    result
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
        RouteError::ReadOnly => Status::failed_precondition(msg),
        RouteError::Map(_) | RouteError::NotSaved(_) => Status::internal(msg),
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
