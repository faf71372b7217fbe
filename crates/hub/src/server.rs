//! Serving a hub on a listener, with limits and graceful shutdown.
//!
//! `axum::serve` would do for the happy path, but a hub holds tens of thousands of long-lived
//! connections and must bound what a client controls, so the accept loop is our own (built on
//! hyper-util): a deadline on every phase of a connection (see [`Timeouts`]), `TCP_NODELAY` so
//! small events leave at once, accept errors (such as running out of file descriptors) that
//! back off instead of spinning or killing the server, an optional cap on connections
//! ([`HubConfig::connection_cap`], a guard on file descriptors set a little above
//! `max_connections`, which caps subscriptions in the routes: past it, a new connection's
//! request gets 503), the peer address put in every request (`peer.rs`), and a shutdown that
//! stops accepting, ends every stream cleanly (with a `retry:` hint spread over
//! `drain_spread`, so that clients do not all reconnect at once), and waits a bounded time for
//! connections to finish.
//!
//! With `HubConfig::metrics_listen`, a second listener serves `/metrics`, `/healthz` and
//! `/readyz` (crate::metrics::endpoints) for as long as this one, drain included; the accept loop
//! counts open and refused connections for it.
//!
//! HTTP/1 and HTTP/2 (prior knowledge) are both served. Which one a connection speaks is decided
//! by its first bytes, read here (one read of what has arrived, into a buffer on the thread's
//! stack, kept in a vector of their size) and handed on with the stream ([`Rewound`]): hyper
//! reads them before the socket. `auto::Builder` would read them into a 24-byte prefix and hand
//! that to hyper alone, whose next read, short of a full 8 KiB of room, doubles its buffer to
//! 16 KiB for the connection's life; handed on whole, the request head is one read and the
//! buffer stays at 8 KiB (docs/benchmarks.md, "Idle memory"). The same bytes tell a
//! subscription, which `subscription_conn/` serves. (They were peeked at, `MSG_PEEK`, before
//! the connect-time pass: reading them saves a system call per connection; docs/benchmarks.md,
//! "Connect time".) A connection whose first bytes do not settle the question (a partial
//! HTTP/2 preface) goes through `auto::Builder` as before.
//!
//! The accept loop is a task of the runtime ([`serve`] spawns it), so that each connection's
//! task is spawned from a worker thread into its own queue.
//!
//! A connection's task lives as long as the connection, and a task is one allocation sized for
//! its future's largest state: so each phase and path of a connection (the first bytes, a
//! subscription, hyper's HTTP/1 and HTTP/2, a refusal, TLS) is a boxed future of its own, and
//! an idle subscriber's task holds pointers, not room for paths it did not take (see
//! docs/benchmarks.md, "Idle memory: 3.0 KB per subscriber").
//!
//! Over TLS ([`serve_tls`], `tls.rs`) the handshake comes first, bounded by the same header
//! deadline from the accept; then ALPN decides: `h2` goes to the HTTP/2 builder, `http/1.1` (or
//! no ALPN) to the HTTP/1 path, where the first bytes are read and handed on with the stream.
//!
//! Who bounds which phase:
//! - the first bytes (and over TLS the handshake): [`Timeouts::header`] from the accept, here;
//! - an HTTP/1 head: `subscription_conn/` for subscriptions (from the accept), hyper's
//!   `header_read_timeout` otherwise (which also bounds the wait for the next request on a
//!   keep-alive connection);
//! - an HTTP/2 connection or an undecided one: `deadline.rs` (the preface, the settings
//!   exchange and the first request within the header timeout, then no longer than
//!   [`Timeouts::http2_idle`] without an open stream), plus hyper's keep-alive PINGs;
//! - a request body: the publish route (`routes/publish.rs`), [`Timeouts::body`].
//!
//! # Modules
//! - `accept.rs`: the listening socket ([`bind`]), the options every connection's socket gets,
//!   and the accept loop with its backoff;
//! - `connection.rs`: one connection: admission under the cap, its first bytes, the protocol
//!   paths, TLS, a refusal.
//!
//! This file starts and stops them: [`serve`] and [`serve_tls`], the metrics listener beside,
//! and the graceful shutdown.
//!
//! [`Timeouts`]: crate::config::Timeouts
//! [`Timeouts::header`]: crate::config::Timeouts::header
//! [`Timeouts::http2_idle`]: crate::config::Timeouts::http2_idle
//! [`Timeouts::body`]: crate::config::Timeouts::body
//! [`HubConfig::connection_cap`]: crate::HubConfig::connection_cap
//! [`Rewound`]: crate::subscription_conn::Rewound

mod accept;
mod connection;

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Hub;
use crate::tls::Tls;
pub use accept::{LISTEN_BACKLOG, bind};
use accept::{Listener, accept_connections, set_connection_options};
use connection::Connections;

/// Serves `hub` on `listener` until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, hub, None, shutdown).await
}

/// Serves `hub` over TLS on `listener` until `shutdown` resolves, then shuts down gracefully:
/// HTTP/2 and HTTP/1.1 by ALPN, with the certificate `tls` keeps current (see `tls.rs`).
pub async fn serve_tls(
    listener: TcpListener,
    hub: Hub,
    tls: Tls,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, hub, Some(tls), shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    hub: Hub,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (tls, maintenance) = match tls {
        Some(Tls {
            acceptor,
            maintenance,
        }) => (Some(acceptor), maintenance.map(tokio::spawn)),
        None => (None, None),
    };
    // Stops the certificate's upkeep when serving ends, whichever way.
    let _maintenance = maintenance.map(AbortOnDrop);
    let connections = Arc::new(Connections::new(&hub, tls));
    let metrics_server = start_metrics_listener(&hub).await?;
    // Accepted sockets inherit both options from the listener on Linux: two system calls
    // fewer per connection, which a reconnection storm counts in tens of thousands.
    let inherited = cfg!(target_os = "linux") && set_connection_options(&listener).is_ok();
    // Ends the connections, each at its next safe point; the graceful shutdown's watchers
    // count them.
    let stopping = CancellationToken::new();
    let accepting = CancellationToken::new();
    // The accept loop runs as a task of the runtime, not in the caller's future: whoever
    // awaits `serve` (`herald serve` blocks its main thread on it) is not one of the runtime's
    // workers, and a task spawned from outside them goes through the shared queue and wakes a
    // parked worker for every connection. Spawned from a worker, a connection's task starts in
    // that worker's own queue (docs/benchmarks.md, "Connect time").
    let accept_loop = tokio::spawn(accept_connections(
        Listener::new(listener),
        Arc::clone(&connections),
        Arc::clone(hub.metrics()),
        inherited,
        stopping.clone(),
        accepting.clone(),
    ));
    let stop_accepting = accepting.clone().drop_guard();
    shutdown.await;
    drop(stop_accepting);
    // The loop gives back the watchers' shutdown once it has closed the listener.
    let graceful = accept_loop.await.map_err(io::Error::other)?;
    tracing::info!(
        subscribers = hub.registry().len(),
        "shutting down: ending streams, waiting for connections"
    );
    hub.close_streams();
    let timeout = hub.config().shutdown_timeout;
    stopping.cancel();
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {timeout:?}; closing them");
    }
    hub.close().await;
    if let Some((stop, task)) = metrics_server {
        stop.cancel();
        let _ = task.await;
    }
    Ok(())
}

/// Binds and serves `HubConfig::metrics_listen`, if set, until the returned token is
/// cancelled: it stays up while the hub drains, its `/readyz` answering 503.
async fn start_metrics_listener(
    hub: &Hub,
) -> io::Result<Option<(CancellationToken, tokio::task::JoinHandle<io::Result<()>>)>> {
    let Some(addr) = hub.config().metrics_listen else {
        return Ok(None);
    };
    let listener = crate::metrics::endpoints::bind(addr).await?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::serve_metrics(
        listener,
        hub.clone(),
        stop.clone().cancelled_owned(),
    ));
    Ok(Some((stop, task)))
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
