//! Serving a hub on a listener, with limits and graceful shutdown.
//!
//! `axum::serve` would do for the happy path, but a hub holds tens of thousands of long-lived
//! connections and must bound what a client controls, so the accept loop is our own (built on
//! hyper-util): a header read timeout against slowloris, `TCP_NODELAY` so small events leave at
//! once, accept errors (such as running out of file descriptors) that pause instead of killing
//! the server, and a shutdown that stops accepting, ends every stream cleanly so that clients
//! reconnect elsewhere, and waits a bounded time for connections to finish.

use std::future::Future;
use std::io;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::Hub;

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
    let service = TowerToHyperService::new(hub.router());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
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
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service.clone())
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!(
        subscribers = hub.registry().len(),
        "shutting down: ending streams, waiting for connections"
    );
    hub.close_streams();
    let timeout = hub.config().shutdown_timeout;
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {timeout:?}; closing them");
    }
    Ok(())
}
