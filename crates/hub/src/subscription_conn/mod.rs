//! HTTP/1 subscriptions served without hyper's connection buffers.
//!
//! A subscriber's connection carries one small request and then, for minutes or hours, a trickle
//! of events in one direction. hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for
//! every connection for its whole life; at tens of thousands of idle subscribers they are most of
//! the hub's memory (docs/benchmarks.md, "Idle memory"). So a connection whose first bytes are
//! `GET /.well-known/mercure` is served here instead: the request head is read into a temporary
//! buffer and parsed (`httparse`, the parser hyper uses), the request goes through the same axum
//! router as every other, and the response is written directly to the socket: the head together
//! with the stream's opening comment, then each chunk of the event stream with one vectored
//! write (chunk size, data, CRLF, or a chunk the stream framed itself), with no buffer kept in
//! between.
//!
//! One request per connection: the response says `Connection: keep-alive` (as the protocol's
//! subscribers expect) but the hub closes the connection once the stream ends, which HTTP/1.1
//! allows and every client handles; `EventSource` opens a new connection to reconnect anyway.
//! Everything else (publishing, HEAD, CORS preflights, the UI, HTTP/2) goes to hyper.
//!
//! The stream is any `AsyncRead + AsyncWrite`: a TCP socket or a TLS stream that negotiated
//! HTTP/1.1. Its first bytes are read before anything else ([`read_some`]:
//! `server/connection.rs` for TCP, [`read_start`] for TLS) and tell whether it is a
//! subscription ([`starts_subscription`]); they are handed on with the stream, to this path or
//! to hyper. Each write is flushed, which on TCP does nothing and over TLS sends the records
//! rustls could not write at once.
//!
//! On a plain TCP socket, the streaming phase shares the socket (`streams.rs`) with the
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
//! is handed back, with the bytes already read, to be served by hyper (`head.rs`, whose
//! property tests hold the verdicts to httparse's on arbitrary and mutated heads).

use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::delivery::registry::DirectTarget;

mod head;
mod streams;

pub(crate) use head::MAX_HEAD_BYTES;
use head::{HeadBuffer, Verdict};
pub(crate) use streams::{Rewound, Streaming};

/// The first bytes of a request this module serves.
const PREFIXES: [&[u8]; 2] = [b"GET /.well-known/mercure?", b"GET /.well-known/mercure "];

/// Whether a connection's first bytes are a subscription; `false` (leave it to hyper) when
/// too few have arrived to tell.
pub(crate) fn starts_subscription(first: &[u8]) -> bool {
    PREFIXES.iter().any(|prefix| first.starts_with(prefix))
}

/// Reads the first bytes of a TLS stream until they tell whether it is a subscription: the
/// bytes read, and the answer; `None` if it closed or failed first.
pub(crate) async fn read_start<S>(stream: &mut S) -> Option<(Vec<u8>, bool)>
where
    S: AsyncRead + Unpin,
{
    let mut bytes = Vec::new();
    loop {
        match read_some(stream, &mut bytes).await {
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

/// How many bytes one read of a connection's first bytes takes at most: a request head
/// usually arrives whole in one read, and what does not fit is read later.
const FIRST_READ: usize = 4096;

/// Reads what has arrived, up to [`FIRST_READ`] bytes, and appends it to `bytes`: how many
/// bytes were read (0: the stream ended). The read goes into a buffer on the thread's stack,
/// not in the connection's future, and `bytes` grows by what was read, not by the buffer's
/// size: a subscription's head is a few hundred bytes, and the allocator serves that from its
/// small bins rather than with a 4 KiB request (and the consolidation glibc does before one).
pub(crate) async fn read_some<S>(stream: &mut S, bytes: &mut Vec<u8>) -> io::Result<usize>
where
    S: AsyncRead + Unpin,
{
    std::future::poll_fn(|cx| {
        let mut buffer = [MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut read = ReadBuf::uninit(&mut buffer);
        std::task::ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
        bytes.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
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
