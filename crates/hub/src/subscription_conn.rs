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

use std::io::{self, IoSlice};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// The first bytes of a request this module serves.
const PREFIXES: [&[u8]; 2] = [b"GET /.well-known/mercure?", b"GET /.well-known/mercure "];

/// The largest request head accepted (hyper's default limit is about 400 KiB; a subscription
/// with the maximum of 1000 long topic selectors fits).
const MAX_HEAD_BYTES: usize = 512 * 1024;

/// The most header lines in a request head.
const MAX_HEADERS: usize = 100;

/// Whether the connection's first bytes are a subscription. Looks without consuming; `false`
/// (leave it to hyper) when too few bytes have arrived to tell.
pub async fn is_subscription(stream: &TcpStream) -> bool {
    let mut first = [0u8; 25];
    match stream.peek(&mut first).await {
        Ok(n) => PREFIXES.iter().any(|prefix| first[..n] == prefix[..]),
        Err(_) => false,
    }
}

/// Serves one subscription request on `stream`, then closes it.
pub async fn serve(mut stream: TcpStream, router: Router, header_timeout: Duration) {
    let request = match tokio::time::timeout(header_timeout, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(rejection)) => {
            let _ = write_plain(&mut stream, rejection.0, rejection.1).await;
            return;
        }
        Err(_) => return,
    };
    let version = request.version();
    let Ok(response) = router.oneshot(request).await;
    if let Err(e) = write_response(&mut stream, version, response).await {
        tracing::debug!("subscription connection ended: {e}");
    }
    let _ = stream.shutdown().await;
}

/// A request that could not be read: the status and the reason to answer with.
struct BadRequest(StatusCode, &'static str);

/// Reads and parses the request head. A body is not expected on a subscription and is ignored
/// (the connection is closed after the response).
async fn read_request(stream: &mut TcpStream) -> Result<Request<Body>, BadRequest> {
    let mut head = Vec::with_capacity(1024);
    loop {
        if head.len() >= MAX_HEAD_BYTES {
            return Err(BadRequest(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            ));
        }
        let start = head.len();
        head.reserve(4096.min(MAX_HEAD_BYTES - start));
        let read = stream
            .read_buf(&mut head)
            .await
            .map_err(|_| BadRequest(StatusCode::BAD_REQUEST, "could not read the request"))?;
        if read == 0 {
            return Err(BadRequest(
                StatusCode::BAD_REQUEST,
                "incomplete request head",
            ));
        }
        // Only the new bytes (and the three before them) can complete the blank line.
        if head[start.saturating_sub(3)..]
            .windows(4)
            .any(|w| w == b"\r\n\r\n")
        {
            return parse(&head);
        }
    }
}

fn parse(head: &[u8]) -> Result<Request<Body>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(BadRequest(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header lines",
            ));
        }
        _ => {
            return Err(BadRequest(
                StatusCode::BAD_REQUEST,
                "malformed request head",
            ));
        }
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(version);
    for h in parsed.headers.iter() {
        request = request.header(h.name, h.value);
    }
    request
        .body(Body::empty())
        .map_err(|_| BadRequest(StatusCode::BAD_REQUEST, "malformed request head"))
}

/// Writes the response: a stream chunk by chunk, anything else whole.
async fn write_response(
    stream: &mut TcpStream,
    version: Version,
    response: Response<Body>,
) -> io::Result<()> {
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (parts, mut body) = response.into_parts();
    if !is_stream {
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let head = head(version, parts.status, &parts.headers, Some(bytes.len()));
        return write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&bytes)]).await;
    }
    // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
    let chunked = version == Version::HTTP_11;
    let head = head(version, parts.status, &parts.headers, None);
    write_all(stream, &mut [IoSlice::new(&head)]).await?;
    drop(head);
    // Between writes, watch the socket too: a client that closes its end is found out at
    // once (its subscription ends now, not at the next heartbeat), as hyper does.
    let mut probe = [0u8; 1];
    loop {
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
        let Some(frame) = frame else { break };
        let data = frame
            .map_err(io::Error::other)?
            .into_data()
            .unwrap_or_default();
        if !data.is_empty() {
            write_chunk(stream, &data, chunked).await?;
        }
    }
    if chunked {
        write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")]).await?;
    }
    Ok(())
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

/// One chunk: size line, data, CRLF, in one vectored write when the socket takes it all.
async fn write_chunk(stream: &mut TcpStream, data: &Bytes, chunked: bool) -> io::Result<()> {
    if !chunked {
        return write_all(stream, &mut [IoSlice::new(data)]).await;
    }
    let mut size = [0u8; 18];
    let size = chunk_size_line(data.len(), &mut size);
    write_all(
        stream,
        &mut [
            IoSlice::new(size),
            IoSlice::new(data),
            IoSlice::new(b"\r\n"),
        ],
    )
    .await
}

/// `{len:X}\r\n` into `buf`, without allocating.
fn chunk_size_line(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut count = 0;
    loop {
        digits[count] = HEX[n & 0xF];
        count += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[i] = digits[count - 1 - i];
    }
    buf[count] = b'\r';
    buf[count + 1] = b'\n';
    &buf[..count + 2]
}

/// Writes every byte of `bufs`, with as few `writev` calls as the socket allows.
async fn write_all(stream: &mut TcpStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        let written = stream.write_vectored(bufs).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, written);
    }
    Ok(())
}

/// A short plain-text answer to a request that could not be read.
async fn write_plain(stream: &mut TcpStream, status: StatusCode, reason: &str) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_uppercase_hex() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size_line(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size_line(255, &mut buf), b"FF\r\n");
        assert_eq!(chunk_size_line(4096, &mut buf), b"1000\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut buf),
            b"FFFFFFFFFFFFFFFF\r\n"
        );
    }

    #[test]
    fn parses_a_subscription_head() {
        let request = parse(
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
        )
        .ok()
        .unwrap();
        assert_eq!(request.uri().query(), Some("topic=a"));
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.version(), Version::HTTP_11);
        assert!(parse(b"GET nonsense\r\n\r\n").is_err());
    }
}
