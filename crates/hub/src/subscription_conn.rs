//! HTTP/1 subscriptions served without hyper's connection buffers.
//!
//! A subscriber's connection carries one small request and then, for minutes or hours, a trickle
//! of events in one direction. hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for
//! every connection for its whole life; at tens of thousands of idle subscribers they are most of
//! the hub's memory (docs/benchmarks.md, "Idle memory"). So a connection whose first bytes are
//! `GET /.well-known/mercure` is served here instead: the request head is read into a temporary
//! buffer and parsed (`httparse`, the parser hyper uses), the request goes through the same axum
//! router as every other, and the response is written directly to the socket: the head once,
//! then each chunk of the event stream with one vectored write (chunk size, data, CRLF), with no
//! buffer kept in between.
//!
//! One request per connection: the response says `Connection: keep-alive` (as the protocol's
//! subscribers expect) but the hub closes the connection once the stream ends, which HTTP/1.1
//! allows and every client handles; `EventSource` opens a new connection to reconnect anyway.
//! Everything else (publishing, HEAD, CORS preflights, the UI, HTTP/2) goes to hyper.
//!
//! The stream is any `AsyncRead + AsyncWrite`: a TCP socket, whose first bytes are peeked at
//! (`server.rs`, [`starts_subscription`]), or a TLS stream that negotiated HTTP/1.1, whose first bytes cannot be
//! peeked at and are read instead ([`read_start`]) and handed on with the stream, to this path
//! or to hyper. Each write is flushed, which on TCP does nothing and over TLS sends the records
//! rustls could not write at once.
//!
//! On a plain TCP socket, the streaming phase shares the socket ([`SharedTcp`]) with the
//! dispatching side, which writes live events to it itself while the stream waits (delivery's
//! outbox.rs, "Direct writes"); the stream then frames its chunks itself and this module writes
//! them as they are, so that both writers' bytes are framed alike.
//!
//! Whichever path a request takes, it gets the same answer: which one serves it depends on how
//! its first bytes arrive, not on what they say. So the head is read and judged as hyper's
//! server does: parsed on the first read and whenever new bytes may end it (a blank line after
//! CRLF or bare LF line endings), the same head limit (512 KiB, 431), request-target limit
//! (64 KiB, 414), header count (100, 431) and request-line checks (400). A head that httparse
//! accepts but hyper would judge further (body framing headers, header values `http` refuses)
//! is handed back, with the bytes already read, to be served by hyper. A property test below
//! holds the verdicts to httparse's on arbitrary and mutated heads.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{BufMut, Bytes};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::delivery::registry::DirectTarget;

/// The first bytes of a request this module serves.
const PREFIXES: [&[u8]; 2] = [b"GET /.well-known/mercure?", b"GET /.well-known/mercure "];

/// The largest request head accepted, here and by hyper (server.rs sets its buffer limit to
/// this): a subscription with the maximum of 1000 long topic selectors fits. 431 above.
pub(crate) const MAX_HEAD_BYTES: usize = 512 * 1024;

/// The longest request target, as hyper and `http::Uri` allow; 414 above.
const MAX_URI_BYTES: usize = (u16::MAX - 1) as usize;

/// The most header lines in a request head (hyper's limit too); 431 above.
const MAX_HEADERS: usize = 100;

/// How many first bytes tell whether a request is a subscription.
pub(crate) const PREFIX_LEN: usize = PREFIXES[0].len();

/// Whether a connection's first bytes are a subscription; `false` (leave it to hyper) when
/// too few have arrived to tell.
pub(crate) fn starts_subscription(first: &[u8]) -> bool {
    PREFIXES.iter().any(|prefix| first == &prefix[..])
}

/// Reads the first bytes of a stream that cannot be peeked at (TLS) until they tell whether it
/// is a subscription: the bytes read, and the answer; `None` if it closed or failed first.
pub(crate) async fn read_start<S>(stream: &mut S) -> Option<(Vec<u8>, bool)>
where
    S: AsyncRead + Unpin,
{
    let mut bytes = Vec::with_capacity(4096);
    loop {
        match stream.read_buf(&mut bytes).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let n = bytes.len().min(PREFIXES[0].len());
        let matching = PREFIXES.iter().any(|prefix| bytes[..n] == prefix[..n]);
        if !matching || n == PREFIXES[0].len() {
            return Some((bytes, matching));
        }
    }
}

/// Serves one subscription request on `stream` (whose first bytes, already read, are
/// `prefix`), then closes it; or, for a request this path does not handle as hyper would,
/// gives the connection back with the bytes read so far, to be served by hyper. The request
/// head must be complete by `head_deadline`.
///
/// An idle subscriber's memory is mostly this future, kept for the stream's whole life, so it
/// is laid out in two phases: [`respond`] (the head, the route, the response head) and
/// [`stream_body`]. What the first phase holds (the head buffer, the request, the response's
/// header map) is gone before the second starts, rather than sized into it.
pub(crate) fn serve<S>(
    stream: S,
    prefix: Vec<u8>,
    peer: SocketAddr,
    router: Router,
    head_deadline: Instant,
) -> impl Future<Output = Option<Rewound<S>>>
where
    S: Streaming,
{
    // Boxed and created here, so that the stream's future holds a pointer to it, not its
    // arguments and state, and frees it once it is done.
    let responding = Box::pin(respond(stream, prefix, peer, router, head_deadline));
    async move {
        let (mut stream, body, framing, chunked) = match responding.await {
            Responded::Stream {
                stream,
                body,
                framing,
                chunked,
            } => (stream, body, framing, chunked),
            Responded::HandOff(rewound) => return Some(rewound),
            Responded::Done => return None,
        };
        if let Err(e) = stream_body(&mut stream, body, framing, chunked).await {
            tracing::debug!("subscription connection ended: {e}");
        }
        let _ = stream.shutdown().await;
        None
    }
}

/// A connection's stream as the streaming phase uses it: a plain TCP socket is shared with the
/// dispatching side, a TLS stream (whose records only its own task can write) is not.
pub(crate) trait Streaming: AsyncRead + AsyncWrite + Unpin {
    /// The stream the streaming phase writes to.
    type Shared: AsyncRead + AsyncWrite + Unpin;

    /// The stream to write to, and the socket to attach for direct writes, if any.
    fn share(self) -> (Self::Shared, Option<Arc<TcpStream>>);
}

impl Streaming for TcpStream {
    type Shared = SharedTcp;

    fn share(self) -> (SharedTcp, Option<Arc<TcpStream>>) {
        let socket = Arc::new(self);
        (SharedTcp(Arc::clone(&socket)), Some(socket))
    }
}

impl Streaming for tokio_rustls::server::TlsStream<TcpStream> {
    type Shared = Self;

    fn share(self) -> (Self, Option<Arc<TcpStream>>) {
        (self, None)
    }
}

/// A TCP socket its connection shares with the dispatching side: reads and writes go through
/// the socket's readiness and its `&self` methods, so that both can hold it.
pub(crate) struct SharedTcp(Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The readiness was stale: wait for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(Shutdown::Write))
    }
}

/// Who frames the bytes of an event stream's body on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    /// This module, as HTTP/1.1 chunks.
    Chunked,
    /// Nobody: HTTP/1.0, whose body ends when the connection closes.
    Identity,
    /// The stream (as chunks or not, as the connection's version says), because the
    /// dispatching side writes to the socket too: written as it is.
    ByStream,
}

/// Where [`respond`] leaves a connection.
enum Responded<S: Streaming> {
    /// The response head and the stream's first chunk are written; the rest of the body is
    /// an event stream, sent with chunked encoding (HTTP/1.1) or not (HTTP/1.0), over the
    /// stream as shared for direct writes.
    Stream {
        stream: S::Shared,
        body: Body,
        framing: BodyFraming,
        chunked: bool,
    },
    /// A head hyper must judge: the connection goes to hyper with the bytes read.
    HandOff(Rewound<S>),
    /// Answered whole (a rejection, an error, a response that is not a stream), or closed.
    Done,
}

/// Reads the head, routes the request and writes the response's head (or all of a response
/// that is not a stream).
async fn respond<S>(
    mut stream: S,
    prefix: Vec<u8>,
    peer: SocketAddr,
    router: Router,
    head_deadline: Instant,
) -> Responded<S>
where
    S: Streaming,
{
    let mut head = HeadBuffer {
        bytes: prefix,
        parsed: false,
    };
    let verdict = tokio::time::timeout_at(head_deadline, head.read(&mut stream)).await;
    let mut request = match verdict {
        Ok(Some(Verdict::Serve(request))) => {
            // Not kept for the subscription's life: that is the point of this path.
            drop(head);
            request
        }
        Ok(Some(Verdict::Reject(rejection))) => {
            tracing::debug!(
                status = rejection.0.as_u16(),
                "subscription request head refused: {}",
                rejection.1
            );
            let _ = write_plain(&mut stream, rejection.0, rejection.1).await;
            let _ = stream.shutdown().await;
            return Responded::Done;
        }
        Ok(Some(Verdict::HandOff)) => return Responded::HandOff(Rewound::new(head.bytes, stream)),
        // Closed, failed or too slow: hyper closes without an answer too.
        Ok(None) | Err(_) => return Responded::Done,
    };
    // The peer address, as the hyper path puts it (`peer.rs`).
    request.extensions_mut().insert(ConnectInfo(peer));
    let version = request.version();
    let Ok(response) = router.oneshot(request).await;
    match write_head(&mut stream, version, response).await {
        Ok(Some((head, mut body, chunked, target))) => {
            let (mut stream, socket) = stream.share();
            let framing = match (socket, target) {
                (Some(socket), Some(target)) => {
                    target.attach(socket, chunked);
                    BodyFraming::ByStream
                }
                _ if chunked => BodyFraming::Chunked,
                _ => BodyFraming::Identity,
            };
            match write_opening(&mut stream, &head, &mut body, framing).await {
                Ok(()) => Responded::Stream {
                    stream,
                    body,
                    framing,
                    chunked,
                },
                Err(e) => {
                    tracing::debug!("subscription connection ended: {e}");
                    Responded::Done
                }
            }
        }
        Ok(None) => {
            let _ = stream.shutdown().await;
            Responded::Done
        }
        Err(e) => {
            tracing::debug!("subscription connection ended: {e}");
            Responded::Done
        }
    }
}

/// What becomes of a request head.
// Short-lived, moved once: boxing the request would cost an allocation per subscription.
#[allow(clippy::large_enum_variant)]
enum Verdict {
    /// A request this path serves.
    Serve(Request<Body>),
    /// Refused, with the status hyper gives the same bytes, and a reason.
    Reject(BadRequest),
    /// Valid for httparse, but hyper has more to say (body framing headers, header values
    /// `http` refuses): hyper serves it, so that both paths answer alike.
    HandOff,
}

/// A request that could not be read: the status and the reason to answer with.
struct BadRequest(StatusCode, &'static str);

/// The bytes of a request head as they arrive, and when to parse them: as hyper does, on the
/// first read and then whenever the new bytes may end the head. The same verdict as hyper's
/// therefore comes at the same point, whatever the line endings (`\r\n` or a bare `\n`).
#[derive(Default)]
struct HeadBuffer {
    bytes: Vec<u8>,
    parsed: bool,
}

impl HeadBuffer {
    /// Reads until a verdict; `None` if the connection closed or failed first.
    async fn read<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> Option<Verdict> {
        // Bytes read before (the start of a TLS stream) are judged first.
        if !self.bytes.is_empty()
            && let Some(verdict) = self.verdict_after(0)
        {
            return Some(verdict);
        }
        loop {
            if self.bytes.len() >= MAX_HEAD_BYTES {
                return Some(Verdict::Reject(BadRequest(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                )));
            }
            let start = self.bytes.len();
            self.bytes.reserve(4096.min(MAX_HEAD_BYTES - start));
            // Never past the limit, so that a verdict depends on the first MAX_HEAD_BYTES only.
            let room = MAX_HEAD_BYTES - start;
            match stream.read_buf(&mut (&mut self.bytes).limit(room)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if let Some(verdict) = self.verdict_after(start) {
                return Some(verdict);
            }
        }
    }

    /// The verdict once bytes from `start` on have arrived, `None` while more are needed.
    fn verdict_after(&mut self, start: usize) -> Option<Verdict> {
        if self.parsed && !may_end_head(&self.bytes, start) {
            return None;
        }
        self.parsed = true;
        parse(&self.bytes)
    }
}

/// Whether the bytes from `start` on (with the three before) hold the blank line that ends a
/// head: `\r\n\r\n`, `\n\n` or `\n\r\n`. hyper's `is_complete_fast`.
fn may_end_head(bytes: &[u8], start: usize) -> bool {
    let bytes = &bytes[start.saturating_sub(3)..];
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'\n' && (bytes[i + 1..].starts_with(b"\n") || bytes[i + 1..].starts_with(b"\r\n"))
    })
}

/// Parses a head the way hyper's server does (httparse with the same header limit, then the
/// request line's checks); `None` if it is not complete yet.
fn parse(head: &[u8]) -> Option<Verdict> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let reject = |status, reason| Some(Verdict::Reject(BadRequest(status, reason)));
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header lines",
            );
        }
        Err(_) => return reject(StatusCode::BAD_REQUEST, "malformed request head"),
    }
    let (Some(method), Some(path), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return reject(StatusCode::BAD_REQUEST, "malformed request head");
    };
    if path.len() > MAX_URI_BYTES {
        return reject(StatusCode::URI_TOO_LONG, "request target too long");
    }
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), path.parse::<Uri>()) else {
        return reject(StatusCode::BAD_REQUEST, "malformed request target");
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = match version {
        1 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let map = request.headers_mut();
    map.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Some(Verdict::HandOff);
        };
        // A subscription has no body: framing headers (and the errors hyper finds in them)
        // are hyper's business.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return Some(Verdict::HandOff);
        }
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Some(Verdict::HandOff);
        };
        map.append(name, value);
    }
    Some(Verdict::Serve(request))
}

/// Writes a response that is not an event stream whole (`None`), or gives back, for one that
/// is, its head (to be written with the first chunk), its body, whether it is chunked, and its
/// subscriber's outbox.
async fn write_head<S: AsyncWrite + Unpin>(
    stream: &mut S,
    version: Version,
    response: Response<Body>,
) -> io::Result<Option<(Vec<u8>, Body, bool, Option<DirectTarget>)>> {
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (mut parts, body) = response.into_parts();
    if !is_stream {
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let head = head(version, parts.status, &parts.headers, Some(bytes.len()));
        write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&bytes)]).await?;
        return Ok(None);
    }
    // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
    let chunked = version == Version::HTTP_11;
    let head = head(version, parts.status, &parts.headers, None);
    let target = parts.extensions.remove::<DirectTarget>();
    Ok(Some((head, body, chunked, target)))
}

/// Writes an event stream's body chunk by chunk until it ends or the client goes.
async fn stream_body<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut body: Body,
    framing: BodyFraming,
    chunked: bool,
) -> io::Result<()> {
    let mut ended = http_body::Body::is_end_stream(&body);
    // Between writes, watch the socket too: a client that closes its end is found out at
    // once (its subscription ends now, not at the next heartbeat), as hyper does.
    let mut probe = [0u8; 1];
    while !ended {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // A subscriber has nothing more to send: its end closing (0), an error, or bytes
            // after the request (a pipelined request, which this path does not serve) all end
            // the connection.
            read = stream.read(&mut probe) => {
                return match read {
                    Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(_) => Err(io::Error::other("bytes after a subscription request")),
                    Err(e) => Err(e),
                };
            }
        };
        let Some(frame) = frame else {
            ended = true;
            continue;
        };
        let data = frame
            .map_err(io::Error::other)?
            .into_data()
            .unwrap_or_default();
        if !data.is_empty() {
            write_chunk(stream, &[], &data, framing == BodyFraming::Chunked).await?;
        }
    }
    if chunked {
        write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")]).await?;
    }
    Ok(())
}

/// Writes the response head with the stream's first chunk, the opening comment, which the
/// stream yields at once: one write where there were two. (Were it not ready, the head goes
/// alone, before anything else: a direct write only follows the stream's first wait.)
async fn write_opening<S: AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    body: &mut Body,
    framing: BodyFraming,
) -> io::Result<()> {
    let first = match body.frame().now_or_never() {
        Some(Some(frame)) => frame
            .map_err(io::Error::other)?
            .into_data()
            .unwrap_or_default(),
        _ => Bytes::new(),
    };
    write_chunk(stream, head, &first, framing == BodyFraming::Chunked).await
}

/// The status line and headers, with the framing header this module uses.
fn head(
    version: Version,
    status: StatusCode,
    headers: &http::HeaderMap,
    content_length: Option<usize>,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        // A whole response ends the connection here, and so does an HTTP/1.0 stream, whose
        // end is the connection's end.
        let closes = content_length.is_some() || version == Version::HTTP_10;
        let value = if name == header::CONNECTION && closes {
            &HeaderValue::from_static("close")
        } else {
            value
        };
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match content_length {
        Some(length) => {
            head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
            if !headers.contains_key(header::CONNECTION) {
                head.extend_from_slice(b"connection: close\r\n");
            }
        }
        None if version == Version::HTTP_11 => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        None => {}
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// `before` (a response head, or nothing), then one chunk (size line, data, CRLF; or the data
/// alone when not `chunked`; nothing when `data` is empty), in one vectored write when the
/// socket takes it all.
async fn write_chunk<S: AsyncWrite + Unpin>(
    stream: &mut S,
    before: &[u8],
    data: &Bytes,
    chunked: bool,
) -> io::Result<()> {
    let mut size = [0u8; 18];
    let (size, after): (&[u8], &[u8]) = if chunked && !data.is_empty() {
        let size = crate::delivery::outbox::chunk_size_line(data.len(), &mut size);
        (size, b"\r\n")
    } else {
        (&[], &[])
    };
    let mut slices = [
        IoSlice::new(before),
        IoSlice::new(size),
        IoSlice::new(data),
        IoSlice::new(after),
    ];
    write_all(stream, &mut slices).await
}

/// Writes every byte of `bufs`, with as few `writev` calls as the socket allows, and flushes
/// (nothing to do on TCP; over TLS, the records rustls could not write yet).
async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !bufs.is_empty() {
        let written = stream.write_vectored(bufs).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, written);
    }
    stream.flush().await
}

/// A short plain-text answer to a request that could not be read.
async fn write_plain<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: StatusCode,
    reason: &str,
) -> io::Result<()> {
    let body = format!("{reason}\n");
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    write_all(
        stream,
        &mut [IoSlice::new(head.as_bytes()), IoSlice::new(body.as_bytes())],
    )
    .await
}

/// A connection handed back to hyper: the bytes this module already read, then the socket.
pub(crate) struct Rewound<S> {
    /// The bytes read, freed once hyper has taken them all.
    prefix: Vec<u8>,
    /// How many of them hyper has taken.
    taken: usize,
    stream: S,
}

impl<S> Rewound<S> {
    pub(crate) fn new(prefix: Vec<u8>, stream: S) -> Rewound<S> {
        Rewound {
            prefix,
            taken: 0,
            stream,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.taken < this.prefix.len() {
            let rest = &this.prefix[this.taken..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.taken += n;
            if this.taken == this.prefix.len() {
                this.prefix = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_subscription_head() {
        let Some(Verdict::Serve(request)) = parse(
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
        ) else {
            panic!("not served");
        };
        assert_eq!(request.uri().query(), Some("topic=a"));
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(describe(&parse(b"GET nonsense\r\n\r\n")), "reject 400");
    }

    #[test]
    fn bare_lf_ends_a_head_as_crlf_does() {
        let head = b"GET /.well-known/mercure?topic=a HTTP/1.1\nHost: x\n\n";
        assert!(may_end_head(head, head.len() - 1));
        assert!(matches!(parse(head), Some(Verdict::Serve(_))));
        assert!(may_end_head(b"Host: x\n\r\n", 9));
        assert!(!may_end_head(b"Host: x\r\nA", 0));
    }

    #[test]
    fn a_long_target_is_414_and_body_framing_goes_to_hyper() {
        let long = format!("GET /?{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(describe(&parse(long.as_bytes())), "reject 414");
        let framed = b"GET /.well-known/mercure HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(describe(&parse(framed)), "hand off");
    }

    /// A verdict in words, to compare verdicts and show them when they differ.
    fn describe(verdict: &Option<Verdict>) -> String {
        match verdict {
            None => "need more".into(),
            Some(Verdict::Serve(r)) => format!(
                "serve {} {} {:?} {:?}",
                r.method(),
                r.uri(),
                r.version(),
                r.headers()
            ),
            Some(Verdict::Reject(BadRequest(status, _))) => format!("reject {}", status.as_u16()),
            Some(Verdict::HandOff) => "hand off".into(),
        }
    }

    /// Checks the subscription path's verdict on a whole buffer against httparse's on the same
    /// bytes, read the way hyper's server reads them (role.rs, `Server::parse`).
    fn agrees_with_httparse(bytes: &[u8]) {
        let ours = parse(bytes);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut theirs = httparse::Request::new(&mut headers);
        let status = theirs.parse(bytes);
        let verdict = describe(&ours);
        match (status, ours) {
            (Ok(httparse::Status::Partial), None) => {}
            (Err(httparse::Error::TooManyHeaders), Some(Verdict::Reject(BadRequest(s, _)))) => {
                assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            (Err(_), Some(Verdict::Reject(BadRequest(s, _)))) => {
                assert_eq!(s, StatusCode::BAD_REQUEST)
            }
            (Ok(httparse::Status::Complete(_)), Some(ours)) => {
                let method = theirs.method.unwrap();
                let path = theirs.path.unwrap();
                let valid =
                    Method::from_bytes(method.as_bytes()).is_ok() && path.parse::<Uri>().is_ok();
                match ours {
                    Verdict::Reject(BadRequest(s, _)) if s == StatusCode::URI_TOO_LONG => {
                        assert!(path.len() > MAX_URI_BYTES)
                    }
                    Verdict::Reject(BadRequest(s, _)) => {
                        assert_eq!(s, StatusCode::BAD_REQUEST);
                        assert!(path.len() <= MAX_URI_BYTES && !valid);
                    }
                    Verdict::HandOff => assert!(theirs.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("content-length")
                            || h.name.eq_ignore_ascii_case("transfer-encoding")
                            || HeaderValue::from_bytes(h.value).is_err()
                    })),
                    Verdict::Serve(request) => {
                        assert!(valid);
                        assert!(!request.headers().contains_key(header::CONTENT_LENGTH));
                        assert!(!request.headers().contains_key(header::TRANSFER_ENCODING));
                        assert_eq!(request.method().as_str(), method);
                        // What hyper would make of the same target: `http::Uri` normalizes it
                        // (drops a fragment, completes an authority form with `/`).
                        let target = path
                            .parse::<http::Uri>()
                            .map_or_else(|_| path.to_string(), |uri| uri.to_string());
                        assert_eq!(request.uri().to_string(), target);
                        let version = match theirs.version {
                            Some(1) => Version::HTTP_11,
                            _ => Version::HTTP_10,
                        };
                        assert_eq!(request.version(), version);
                        let ours: Vec<_> = request
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect();
                        let mut expected: Vec<_> = theirs
                            .headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                            .collect();
                        // `HeaderMap` groups the values of one name, in their order.
                        let mut ours_sorted = ours.clone();
                        ours_sorted.sort();
                        expected.sort();
                        assert_eq!(ours_sorted, expected);
                    }
                }
            }
            (status, _) => panic!("httparse says {status:?}, this path {verdict}"),
        }
    }

    /// Feeds `bytes` in pieces cut at `cuts` as reads would deliver them; the verdict, when one
    /// comes, is the one the bytes read so far get when parsed whole.
    fn incremental_agrees_with_whole(bytes: &[u8], cuts: &[usize]) {
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        ends.dedup();
        let mut buffer = HeadBuffer::default();
        for end in ends.into_iter().filter(|&e| e > 0) {
            let start = buffer.bytes.len();
            buffer.bytes.extend_from_slice(&bytes[start..end]);
            if let Some(verdict) = buffer.verdict_after(start) {
                assert_eq!(describe(&Some(verdict)), describe(&parse(&bytes[..end])));
                return;
            }
        }
        // No verdict: hyper would still be waiting too, unless the head is complete.
        assert!(!matches!(
            httparse::Request::new(&mut [httparse::EMPTY_HEADER; MAX_HEADERS]).parse(bytes),
            Ok(httparse::Status::Complete(_))
        ));
    }

    use proptest::prelude::*;

    /// Bytes that matter in a head, so that random heads reach the parser's every branch.
    fn head_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => prop::sample::select(b"\r\n :/?%GETHP1.0-aZ\t".to_vec()),
            1 => any::<u8>(),
        ]
    }

    /// A well-formed head: a request line and headers, with CRLF or bare LF line endings.
    fn valid_head() -> impl Strategy<Value = Vec<u8>> {
        let method = prop::sample::select(vec!["GET", "POST", "HEAD", "OPTIONS", "PATCH", "X-Y"]);
        let target = "/[a-zA-Z0-9._~%/?=&{}*-]{0,40}";
        let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]);
        let header = (
            "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
            "[ -~\t\u{80}-\u{ff}]{0,30}",
        );
        let headers = prop::collection::vec(header, 0..8);
        let eol = prop::sample::select(vec!["\r\n", "\n"]);
        (method, target, version, headers, eol).prop_map(|(m, t, v, headers, eol)| {
            let mut head = format!("{m} {t} {v}{eol}").into_bytes();
            for (name, value) in headers {
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b": ");
                // Latin-1, one byte per char: obs-text as httparse accepts it.
                head.extend(value.chars().map(|c| c as u32 as u8));
                head.extend_from_slice(eol.as_bytes());
            }
            head.extend_from_slice(eol.as_bytes());
            head
        })
    }

    /// A valid head with a few bytes replaced, inserted or removed.
    fn mutated_head() -> impl Strategy<Value = Vec<u8>> {
        let edits =
            prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, head_byte()), 1..4);
        (valid_head(), edits).prop_map(|(mut head, edits)| {
            for (at, op, byte) in edits {
                let i = at.index(head.len() + 1);
                match op {
                    0 if i < head.len() => head[i] = byte,
                    1 => head.insert(i, byte),
                    _ if i < head.len() => {
                        head.remove(i);
                    }
                    _ => head.push(byte),
                }
            }
            head
        })
    }

    proptest! {
        // Bounded, so that CI runs it on every change in a few seconds.
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_get_httparse_verdict(bytes in prop::collection::vec(head_byte(), 0..200)) {
            agrees_with_httparse(&bytes);
        }

        #[test]
        fn valid_heads_are_served_as_httparse_reads_them(head in valid_head()) {
            agrees_with_httparse(&head);
        }

        #[test]
        fn mutated_heads_get_httparse_verdict(head in mutated_head()) {
            agrees_with_httparse(&head);
        }

        #[test]
        fn a_head_read_in_pieces_gets_the_verdict_of_the_bytes_read(
            head in prop_oneof![valid_head(), mutated_head()],
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            incremental_agrees_with_whole(&head, &cuts);
        }
    }
}
