//! Serving one accepted connection, from its first bytes to its end.
//!
//! [`Connections`] holds what every connection is served with (the router, the hyper builders,
//! the timeouts, the TLS acceptor, the permits under the connection cap). A connection is
//! admitted or refused ([`Full`]: 503 within the header timeout); an admitted one's first bytes
//! are read and tell what it is ([`Start`]): a subscription (`subscription_conn/`), another
//! HTTP/1 request, HTTP/2, or undecided (`auto::Builder`). Over TLS the handshake comes first
//! and ALPN decides. The parent's overview (`server.rs`) says why each path is boxed and who
//! bounds which phase.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Timeouts;
use crate::deadline::{self, Activity, Tracked};
use crate::peer::WithPeer;
use crate::subscription_conn::{self, MAX_HEAD_BYTES, Rewound};
use crate::tls::{ALPN_ACME, ALPN_H2, TlsAcceptor};
use crate::{Hub, HubConfig};

/// What every connection is served with, shared by the connection tasks.
pub(super) struct Connections {
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
    pub(super) fn new(hub: &Hub, tls: Option<TlsAcceptor>) -> Connections {
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
    pub(super) fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Full> {
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
    pub(super) async fn refuse(&self, stream: TcpStream) {
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
    pub(super) async fn serve(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        stopping: CancellationToken,
    ) {
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
pub(super) struct Full;

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
