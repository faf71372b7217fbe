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

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Timeouts;
use crate::deadline::{self, Activity, Tracked};
use crate::metrics::Metrics;
use crate::peer::WithPeer;
use crate::subscription_conn::{self, MAX_HEAD_BYTES, Rewound};
use crate::tls::{ALPN_ACME, ALPN_H2, Tls, TlsAcceptor};
use crate::{Hub, HubConfig};

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
fn set_connection_options<S: std::os::fd::AsFd>(socket: &S) -> io::Result<()> {
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

/// Accepts connections until `accepting` is cancelled, each served by a task of its own; then
/// closes the listener and gives back the shutdown that waits for the connections.
async fn accept_connections(
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

/// The listening socket and how its accept loop behaves when accepting fails.
struct Listener {
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

    fn new(listener: TcpListener) -> Listener {
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

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What every connection is served with, shared by the connection tasks.
struct Connections {
    /// One permit per connection served, when `max_connections` caps subscriptions (and so
    /// connections, at [`HubConfig::connection_cap`]).
    limit: Option<Arc<Semaphore>>,
    router: axum::Router,
    /// HTTP/1, recognized by its first bytes.
    h1: http1::Builder,
    /// HTTP/2 (prior knowledge), recognized by its first bytes.
    h2: auto::Builder<TokioExecutor>,
    /// Connections whose first bytes did not tell: `auto::Builder` reads them and decides.
    auto: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
    /// The TLS handshake every connection starts with, when the hub serves TLS.
    tls: Option<TlsAcceptor>,
}

impl Connections {
    fn new(hub: &Hub, tls: Option<TlsAcceptor>) -> Connections {
        let router = hub.router();
        let HubConfig { timeouts, .. } = *hub.config();
        // The HTTP/1 settings, applied alike to the connections recognized by their first
        // bytes and to the ones left to `auto::Builder`: the same head limit as the
        // subscription path's, so that both answer a head alike.
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(timeouts.header)
            .max_buf_size(MAX_HEAD_BYTES);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.header)
            .max_buf_size(MAX_HEAD_BYTES);
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(timeouts.http2_keep_alive)
            .keep_alive_timeout(timeouts.http2_keep_alive);
        Connections {
            limit: hub
                .config()
                .connection_cap()
                .map(|max| Arc::new(Semaphore::new(max))),
            router,
            h1,
            h2: auto.clone().http2_only(),
            auto,
            timeouts,
            tls,
        }
    }

    /// A permit to serve one more connection, if connections are capped and there is room.
    fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Full> {
        match &self.limit {
            None => Ok(None),
            Some(limit) => Arc::clone(limit)
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| Full),
        }
    }

    /// Answers every request of a connection past the cap with 503, within the header timeout.
    /// hyper reads the request first, so that the client sees the answer rather than a reset.
    async fn refuse(&self, stream: TcpStream) {
        tracing::debug!("connection refused: max-connections reached");
        let deadline = Instant::now() + self.timeouts.header;
        if let Some(tls) = &self.tls {
            // The answer needs the handshake first; both within the header timeout.
            if let Ok(Ok(stream)) = tokio::time::timeout_at(deadline, tls.accept(stream)).await {
                self.refuse_on(stream, deadline).await;
            }
            return;
        }
        self.refuse_on(stream, deadline).await;
    }

    async fn refuse_on<I>(&self, stream: I, deadline: Instant)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(|_request| async {
            let mut response = http::Response::new(axum::body::Body::from(
                "too many connections: retry later\n",
            ));
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            Ok::<_, std::convert::Infallible>(response)
        });
        let connection = self.auto.serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout_at(deadline, connection).await;
    }

    /// The router as a hyper service for one connection, telling each request its peer.
    fn service(&self, peer: SocketAddr) -> TowerToHyperService<WithPeer<axum::Router>> {
        TowerToHyperService::new(WithPeer::new(self.router.clone(), peer))
    }

    /// Serves one connection until it ends, or until `stopping` and its current request ends.
    async fn serve(&self, mut stream: TcpStream, peer: SocketAddr, stopping: CancellationToken) {
        let accepted = Instant::now();
        let head_deadline = accepted + self.timeouts.header;
        if let Some(tls) = &self.tls {
            // Boxed: a TLS stream and its paths do not size every plain connection's task.
            return Box::pin(self.serve_tls(tls, stream, peer, accepted, stopping)).await;
        }
        // A client that connects and sends nothing is dropped after the header timeout. Boxed,
        // as each path below: a task's future is as large as its largest phase, and an idle
        // subscriber's task must not keep room for what its connection no longer does (see
        // docs/benchmarks.md, "Idle memory: 3.0 KB per subscriber").
        let start = Box::pin(async {
            tokio::select! {
                start = tokio::time::timeout_at(head_deadline, read_start(&mut stream)) => {
                    start.ok().and_then(Result::ok).flatten()
                }
                () = stopping.cancelled() => None,
            }
        })
        .await;
        // Closed before a byte, failed, or silent past the header timeout.
        let Some((first, start)) = start else {
            return;
        };
        let result = match start {
            Start::Subscription => {
                Box::pin(self.serve_subscription(stream, first, peer, head_deadline, &stopping))
                    .await
            }
            Start::Http1 => {
                let connection = self
                    .h1
                    .serve_connection(
                        TokioIo::new(Rewound::new(first, stream)),
                        self.service(peer),
                    )
                    .with_upgrades();
                Box::pin(until_stopped(connection, &stopping)).await
            }
            Start::Http2 => {
                let stream = Rewound::new(first, stream);
                Box::pin(self.serve_http2(stream, peer, accepted, &stopping)).await
            }
            Start::Unknown => {
                let activity = Activity::since(accepted);
                let service = Tracked::new(self.service(peer), Arc::clone(&activity));
                let connection = self.auto.serve_connection_with_upgrades(
                    TokioIo::new(Rewound::new(first, stream)),
                    service,
                );
                Box::pin(deadline::serve(
                    connection,
                    &activity,
                    self.timeouts,
                    &stopping,
                ))
                .await
            }
        };
        if let Err(e) = result {
            tracing::debug!("connection ended with an error: {e}");
        }
    }

    /// Serves an HTTP/2 connection (prior knowledge or ALPN `h2`) under `deadline.rs`.
    async fn serve_http2<I>(
        &self,
        stream: I,
        peer: SocketAddr,
        accepted: Instant,
        stopping: &CancellationToken,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::since(accepted);
        let service = Tracked::new(self.service(peer), Arc::clone(&activity));
        let connection = self.h2.serve_connection(TokioIo::new(stream), service);
        Box::pin(deadline::serve(
            connection,
            &activity,
            self.timeouts,
            stopping,
        ))
        .await
    }

    /// A TLS connection: the handshake within the header timeout, then the protocol ALPN
    /// chose. HTTP/1.1 subscriptions keep their fast path; the first bytes are read and handed
    /// on with the stream, as on plain TCP.
    async fn serve_tls(
        &self,
        tls: &TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        accepted: Instant,
        stopping: CancellationToken,
    ) {
        let head_deadline = accepted + self.timeouts.header;
        let handshake = tokio::select! {
            handshake = tokio::time::timeout_at(head_deadline, tls.accept(stream)) => handshake,
            () = stopping.cancelled() => return,
        };
        let mut stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not done within the header timeout: closed");
                return;
            }
        };
        let result = match stream.get_ref().1.alpn_protocol() {
            Some(ALPN_H2) => self.serve_http2(stream, peer, accepted, &stopping).await,
            // A TLS-ALPN-01 validation: the handshake was the answer.
            Some(ALPN_ACME) => {
                let _ = stream.shutdown().await;
                Ok(())
            }
            _ => {
                let start = tokio::select! {
                    start = tokio::time::timeout_at(
                        head_deadline,
                        subscription_conn::read_start(&mut stream),
                    ) => start,
                    () = stopping.cancelled() => return,
                };
                let Ok(Some((prefix, is_subscription))) = start else {
                    return;
                };
                let rewound = if is_subscription {
                    let router = self.router.clone();
                    match subscription_conn::serve(stream, prefix, peer, router, head_deadline)
                        .await
                    {
                        Some(rewound) => rewound,
                        None => return,
                    }
                } else {
                    Rewound::new(prefix, stream)
                };
                let connection = self
                    .h1
                    .serve_connection(TokioIo::new(rewound), self.service(peer))
                    .with_upgrades();
                Box::pin(until_stopped(connection, &stopping)).await
            }
        };
        if let Err(e) = result {
            tracing::debug!("TLS connection ended with an error: {e}");
        }
    }

    /// A subscription over HTTP/1, served without hyper's per-connection buffers unless its
    /// head needs hyper's judgement. Not an `async fn`: the future keeps the subscription's
    /// future and what the hand-off needs, not a second copy of its arguments.
    fn serve_subscription<'a>(
        &'a self,
        stream: TcpStream,
        first: Vec<u8>,
        peer: SocketAddr,
        head_deadline: Instant,
        stopping: &'a CancellationToken,
    ) -> impl Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + 'a {
        let subscription =
            subscription_conn::serve(stream, first, peer, self.router.clone(), head_deadline);
        async move {
            let Some(rewound) = subscription.await else {
                return Ok(());
            };
            let connection = self
                .h1
                .serve_connection(TokioIo::new(rewound), self.service(peer))
                .with_upgrades();
            Box::pin(until_stopped(connection, stopping)).await
        }
    }
}

/// Serves an HTTP/1 connection, ending it gracefully (after its current request) on `stopping`.
async fn until_stopped<I, S, B>(
    connection: http1::UpgradeableConnection<I, S>,
    stopping: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    result.map_err(Into::into)
}

/// No room for one more connection under `max_connections`.
struct Full;

/// What a plain connection is, as its first bytes tell.
enum Start {
    /// An HTTP/1 subscription: `subscription_conn/` serves it.
    Subscription,
    /// Any other HTTP/1 request: hyper serves it.
    Http1,
    /// The HTTP/2 preface (prior knowledge).
    Http2,
    /// Not settled (a partial HTTP/2 preface, an error, an immediate close): `auto::Builder`
    /// reads the bytes and decides, as it always did.
    Unknown,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a connection's first bytes (what has arrived, up to 4 KiB) and tells what they start:
/// HTTP/2 if they hold the whole preface, HTTP/1 as soon as they differ from it, and a
/// subscription if they start like one. `None`: closed before the first byte.
async fn read_start(stream: &mut TcpStream) -> io::Result<Option<(Vec<u8>, Start)>> {
    let mut first = Vec::new();
    if subscription_conn::read_some(stream, &mut first).await? == 0 {
        return Ok(None);
    }
    let start = classify(&first);
    Ok(Some((first, start)))
}

/// What a connection's first bytes start.
fn classify(first: &[u8]) -> Start {
    let preface = first.len().min(H2_PREFACE.len());
    if first[..preface] == H2_PREFACE[..preface] {
        if preface == H2_PREFACE.len() {
            Start::Http2
        } else {
            Start::Unknown
        }
    } else if subscription_conn::starts_subscription(first) {
        Start::Subscription
    } else {
        Start::Http1
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
