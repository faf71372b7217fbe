//! The listening socket and its accept loop.
//!
//! [`bind`] opens the socket with a deep backlog ([`LISTEN_BACKLOG`]), for reconnection
//! storms; [`set_connection_options`] sets what every connection's socket needs (set once on
//! the listener on Linux, where accepted sockets inherit it). [`accept_connections`] is the
//! loop `serve_with` (in `server.rs`) spawns: it takes connections from a [`Listener`], which
//! backs off on accept errors instead of spinning, and hands each to a task of its own that
//! `connection.rs` serves (or refuses, past the cap).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{Connections, Full};
use crate::metrics::Metrics;

/// How long written data may stay unacknowledged before the kernel declares the peer dead
/// (TCP_USER_TIMEOUT). Without it, a subscriber whose network vanished without a reset is only
/// given up after the kernel's retransmission limit, about 15 minutes; with it, the next
/// heartbeat after the cut finds it out within this bound, and its subscription ends [R30].
const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections the kernel may hold for the accept loop. After a deploy or a node's
/// death every subscriber reconnects at once; with tokio's default of 1,024 the queue overflows
/// during such a storm, and each dropped SYN makes its client wait a retransmission timeout
/// (1 s, then 3 s) before trying again (docs/benchmarks.md, "Connection storms"). The kernel
/// caps it at `net.core.somaxconn` (4,096 on current kernels).
pub const LISTEN_BACKLOG: u32 = 4096;

/// What every connection's socket is set to: no Nagle delay (an event goes out when written),
/// and a peer that acknowledges nothing for [`DEAD_PEER_TIMEOUT`] is given up.
pub(super) fn set_connection_options<S: std::os::fd::AsFd>(socket: &S) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_user_timeout(Some(DEAD_PEER_TIMEOUT))
}

/// Binds the hub's listening socket on `addr`, with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted hub can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until `accepting` is cancelled, each served by a task of its own; then
/// closes the listener and gives back the shutdown that waits for the connections.
pub(super) async fn accept_connections(
    mut listener: Listener,
    connections: Arc<Connections>,
    metrics: Arc<Metrics>,
    inherited: bool,
    stopping: CancellationToken,
    accepting: CancellationToken,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = accepting.cancelled() => break,
        };
        if !inherited {
            let _ = set_connection_options(&stream);
        }
        // Every connection holds a watcher, so that the graceful shutdown waits for it, and a
        // permit when connections are capped.
        let watcher = graceful.watcher();
        let connections = Arc::clone(&connections);
        let stopping = stopping.clone();
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            match connections.admit() {
                Ok(permit) => {
                    let open = metrics.connection_opened();
                    connections.serve(stream, peer, stopping).await;
                    drop(open);
                    drop(permit);
                }
                Err(Full) => {
                    Metrics::inc(&metrics.connections_refused);
                    // Boxed: a refusal (with its TLS handshake and hyper connection) is rare
                    // and must not size every connection's task.
                    Box::pin(connections.refuse(stream)).await;
                }
            }
            drop(watcher);
        });
    }
    drop(listener);
    graceful
}

/// The listening socket and how its accept loop behaves when accepting fails.
pub(super) struct Listener {
    /// Where connections arrive.
    listener: TcpListener,
    /// The pause after the last failed accept; zero after a success. Doubles on each failure
    /// in a row, from [`Listener::MIN_BACKOFF`] up to [`Listener::MAX_BACKOFF`], so that a
    /// hub out of file descriptors neither spins nor waits long once one is free.
    backoff: Duration,
    /// When a failure was last logged: at most one line per [`Listener::LOG_EVERY`].
    logged_at: Option<Instant>,
    /// Failures not logged since then, reported with the next line.
    unlogged: u64,
}

impl Listener {
    const MIN_BACKOFF: Duration = Duration::from_millis(5);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(1);

    pub(super) fn new(listener: TcpListener) -> Listener {
        Listener {
            listener,
            backoff: Duration::ZERO,
            logged_at: None,
            unlogged: 0,
        }
    }

    /// The next connection. Errors (EMFILE, ENFILE, ENOBUFS, a connection reset before it was
    /// accepted) are per connection or pass as connections close, so they are retried after a
    /// pause, never returned.
    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    self.backoff = Duration::ZERO;
                    return accepted;
                }
                Err(e) => {
                    self.backoff = (self.backoff * 2).clamp(Self::MIN_BACKOFF, Self::MAX_BACKOFF);
                    self.log(&e);
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }

    fn log(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < Self::LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            "accept failed: {e} ({} more since the last report); retrying in {:?}",
            self.unlogged,
            self.backoff
        );
        self.logged_at = Some(now);
        self.unlogged = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `serve_with` relies on to set the options once, on the listener.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_options() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        set_connection_options(&listener).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, (accepted, _)) = (client.unwrap(), accepted.unwrap());
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap());
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(DEAD_PEER_TIMEOUT));
    }
}
