//! The operator's endpoints: `/metrics`, `/healthz` and `/readyz`.
//!
//! `/healthz` says the process serves HTTP; `/readyz` says it can do its job: not shutting
//! down, history open, the transport's backing service reachable (a Redis PING, bounded by
//! [`READY_TIMEOUT`]). Both are on the hub's own listener (for load balancers) and on the
//! metrics listener (`--metrics-listen`, for the monitoring system), which alone serves
//! `/metrics`, so that metrics are not public by accident.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use tokio::net::TcpListener;

use super::States;
use crate::Hub;
use crate::rejection::Rejection;

/// How long `/readyz` waits for the transport before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a scrape waits for the transport's history size before leaving it out.
const HISTORY_LEN_TIMEOUT: Duration = Duration::from_secs(1);

/// The metrics listener's routes.
pub(crate) fn router(hub: Hub) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(hub)
}

/// Liveness: the process is up and serving HTTP.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 `ready`, or 503 with what is wrong.
pub(crate) async fn readyz(State(hub): State<Hub>) -> Result<&'static str, Rejection> {
    let unready = |reason: String| Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason);
    if hub.registry().is_closed() {
        return Err(unready("not ready: shutting down".into()));
    }
    match tokio::time::timeout(READY_TIMEOUT, hub.transport().check_ready()).await {
        Ok(Ok(())) => Ok("ready\n"),
        Ok(Err(e)) => Err(unready(format!("not ready: {e}")).with_detail(format!("{e:?}"))),
        Err(_) => Err(unready(format!(
            "not ready: the transport did not answer within {READY_TIMEOUT:?}"
        ))),
    }
}

/// The Prometheus exposition.
async fn metrics(State(hub): State<Hub>) -> Response {
    let history_events =
        match tokio::time::timeout(HISTORY_LEN_TIMEOUT, hub.transport().history_len()).await {
            Ok(Ok(events)) => events,
            Ok(Err(e)) => {
                tracing::debug!("history size not read for the metrics: {e}");
                None
            }
            Err(_) => None,
        };
    let states = States {
        subscribers_connected: hub.subscriber_count() as u64,
        history_events,
        connections_max: hub.config().max_connections.map(|max| max as u64),
    };
    let text = hub.metrics().snapshot(states).render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(super::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// Binds `addr` for the metrics listener, or says which setting to fix.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {addr} for --metrics-listen: {e}; choose a free address \
                 (IP:PORT) or leave it unset"
            ),
        )
    })
}

/// Serves `/metrics`, `/healthz` and `/readyz` of `hub` on `listener` until `shutdown`
/// resolves. [`crate::serve`] runs this on `HubConfig::metrics_listen`; an application serving
/// the hub itself can run it on a listener of its own.
pub async fn serve_metrics(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(hub))
        .with_graceful_shutdown(shutdown)
        .await
}
