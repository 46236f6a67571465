//! `/metrics` over HTTP: the Prometheus text exposition, the same families
//! as `lnetd-host-encap stats --prometheus`.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::encapsulator::Encapsulator;

async fn metrics(enc: Arc<Encapsulator>, iface: Arc<str>, extra: Option<super::MetricsText>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || {
        let stats = enc.stats().map_err(|e| e.to_string())?;
        let routes = enc.counted_routes().map_err(|e| e.to_string())?;
        let mut text = crate::metrics::prometheus(&iface, &stats, &routes);
        if let Some(extra) = extra {
            text.push_str(&extra());
        }
        Ok::<_, String>(text)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match text {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], e),
    }
}

/// Serves until `stop` turns true.
pub(crate) async fn serve(
    enc: Arc<Encapsulator>,
    iface: String,
    extra: Option<super::MetricsText>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let iface: Arc<str> = iface.into();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let (enc, iface, extra) = (Arc::clone(&enc), Arc::clone(&iface), extra.clone());
            async move { metrics(enc, iface, extra).await }
        }),
    );
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        log::warn!("metrics server stopped: {e}");
    }
}
