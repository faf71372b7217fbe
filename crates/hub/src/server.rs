//! Serving a hub on a listener, with limits and graceful shutdown.
//!
//! `axum::serve` would do for the happy path, but a hub holds tens of thousands of long-lived
//! connections and must bound what a client controls, so the accept loop is our own (built on
//! hyper-util): a header read timeout against slowloris, `TCP_NODELAY` so small events leave at
//! once, accept errors (such as running out of file descriptors) that pause instead of killing
//! the server, and a shutdown that stops accepting, ends every stream cleanly so that clients
//! reconnect elsewhere, and waits a bounded time for connections to finish.
//!
//! HTTP/1 and HTTP/2 (prior knowledge) are both served. Which one a connection speaks is decided
//! by peeking at its first bytes (`MSG_PEEK`, nothing consumed) rather than by hyper-util's
//! `auto::Builder`, which reads them into a 24-byte prefix and hands them back to hyper first:
//! hyper's read buffer (8 KiB) then receives the prefix alone, and the next read, short of a full
//! 8 KiB of room, doubles it to 16 KiB, which an idle subscriber keeps for its whole life. Read
//! straight from the socket, the request head arrives in one read and the buffer stays at
//! 8 KiB; see docs/benchmarks.md, "Idle memory". A connection whose first bytes do not settle
//! the question (a partial HTTP/2 preface, an error, an immediate close) goes through
//! `auto::Builder` as before.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::Hub;
use crate::subscription_conn;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long written data may stay unacknowledged before the kernel declares the peer dead
/// (TCP_USER_TIMEOUT). Without it, a subscriber whose network vanished without a reset is only
/// given up after the kernel's retransmission limit, about 15 minutes; with it, the next
/// heartbeat after the cut finds it out within this bound, and its subscription ends [R30].
const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `hub` on `listener` until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = hub.router();
    let service = TowerToHyperService::new(router.clone());
    // The HTTP/1 settings, applied alike to the connections recognized by peeking and to the
    // ones left to `auto::Builder`.
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // Shared by the connection tasks: a pointer in each task rather than three builders.
    let builders = Arc::new(Builders {
        h1,
        h2: auto.clone().http2_only(),
        auto,
    });
    let graceful = GracefulShutdown::new();
    // Ends connections that hyper-util's graceful shutdown does not watch: those still being
    // peeked at, and the HTTP/1 connections served by hyper directly.
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // EMFILE and friends: wait for connections to close rather than spin or die.
                    tracing::warn!("accept failed: {e}; pausing 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(DEAD_PEER_TIMEOUT));
        // Every connection holds a watcher, so that the graceful shutdown waits for it.
        let watcher = graceful.watcher();
        let stopping = stopping.clone();
        let (builders, service, router) = (builders.clone(), service.clone(), router.clone());
        let task = async move {
            // A client that connects and sends nothing is dropped after the header read
            // timeout, as one that sends its head too slowly is by hyper.
            let version = tokio::select! {
                version = tokio::time::timeout(HEADER_READ_TIMEOUT, sniff(&stream)) => match version {
                    Ok(version) => version,
                    Err(_) => return,
                },
                () = stopping.cancelled() => return,
            };
            // Subscriptions over HTTP/1 are served without hyper's per-connection buffers.
            if matches!(version, Some(Version::Http1))
                && subscription_conn::is_subscription(&stream).await
            {
                subscription_conn::serve(stream, router, HEADER_READ_TIMEOUT).await;
                drop(watcher);
                return;
            }
            let io = TokioIo::new(stream);
            // The common case, HTTP/1, is polled in place; the others are boxed so that they do
            // not size every connection's task.
            let result: Result<(), Box<dyn std::error::Error + Send + Sync>> = match version {
                Some(Version::Http1) => {
                    let connection = builders.h1.serve_connection(io, service).with_upgrades();
                    tokio::pin!(connection);
                    let result = tokio::select! {
                        result = connection.as_mut() => result,
                        () = stopping.cancelled() => {
                            connection.as_mut().graceful_shutdown();
                            connection.await
                        }
                    };
                    drop(watcher);
                    result.map_err(Into::into)
                }
                Some(Version::Http2) => {
                    let connection = builders.h2.serve_connection(io, service).into_owned();
                    Box::pin(watcher.watch(connection)).await
                }
                None => {
                    let connection = builders
                        .auto
                        .serve_connection_with_upgrades(io, service)
                        .into_owned();
                    Box::pin(watcher.watch(connection)).await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended with an error: {e}");
            }
        };
        tokio::spawn(task);
    }
    drop(listener);
    tracing::info!(
        subscribers = hub.registry().len(),
        "shutting down: ending streams, waiting for connections"
    );
    hub.close_streams();
    let timeout = hub.config().shutdown_timeout;
    // The same signal as the graceful shutdown's, for the connections it does not watch.
    stopping.cancel();
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {timeout:?}; closing them");
    }
    Ok(())
}

/// How connections are served, by protocol.
struct Builders {
    /// HTTP/1, recognized by peeking.
    h1: http1::Builder,
    /// HTTP/2 (prior knowledge), recognized by peeking.
    h2: auto::Builder<TokioExecutor>,
    /// Connections whose first bytes did not tell: `auto::Builder` reads them and decides.
    auto: auto::Builder<TokioExecutor>,
}

/// The protocol a connection speaks, as its first bytes tell.
enum Version {
    Http1,
    Http2,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Looks at the connection's first bytes without consuming them: HTTP/2 if they are the whole
/// preface, HTTP/1 as soon as they differ from it; `None` (let `auto::Builder` decide, as it
/// always did) for a partial preface, an error or an immediate close.
async fn sniff(stream: &TcpStream) -> Option<Version> {
    let mut buf = [0; H2_PREFACE.len()];
    let n = stream.peek(&mut buf).await.ok()?;
    if n == 0 {
        None
    } else if buf[..n] != H2_PREFACE[..n] {
        Some(Version::Http1)
    } else if n == H2_PREFACE.len() {
        Some(Version::Http2)
    } else {
        None
    }
}
