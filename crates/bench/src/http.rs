//! Just enough HTTP/1.1 and SSE for a load generator: requests written as bytes, response heads
//! parsed by hand, a streaming chunked decoder and a line scanner that finds `data: ` lines.
//!
//! No HTTP client library: at ten thousand connections, the generator must cost less per
//! connection than the server it measures.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The status and the few headers the generator acts on. Only these are kept: the generator
/// reads ten thousand heads in a connection storm on the cores the server uses, and copying
/// every header of each would charge the server that sends more of them (security headers,
/// CORS) with the generator's own work.
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub close: bool,
    /// `Last-Event-ID` (a Mercure hub's answer to a reconnection), when sent.
    pub last_event_id: Option<String>,
}

/// Opens a TCP connection to `addr`, from `source` (port chosen by the kernel) when given.
pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection with its read buffer: `buf[..filled]` is read but not yet consumed.
pub(crate) struct Conn {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    pub filled: usize,
}

impl Conn {
    pub(crate) fn new(stream: TcpStream, capacity: usize) -> Conn {
        Conn {
            stream,
            buf: vec![0; capacity],
            filled: 0,
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buf.len() {
            if self.buf.len() >= 1 << 20 {
                return Err(io::Error::other("response head or body too large"));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.filled += n;
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Writes a request and reads the response head.
    pub(crate) async fn request_head(&mut self, request: &[u8]) -> io::Result<Head> {
        self.stream.write_all(request).await?;
        self.read_head().await
    }

    /// Reads a response head; what follows it stays in the buffer.
    pub(crate) async fn read_head(&mut self) -> io::Result<Head> {
        loop {
            if let Some(end) = find(&self.buf[..self.filled], b"\r\n\r\n") {
                let head = parse_head(&self.buf[..end])?;
                self.consume(end + 4);
                return Ok(head);
            }
            self.fill().await?;
        }
    }

    /// Reads a whole (non-streaming) response body.
    pub(crate) async fn read_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked {
            let mut decoder = Chunked::default();
            let mut body = Vec::new();
            loop {
                let used =
                    decoder.feed(&self.buf[..self.filled], &mut |d| body.extend_from_slice(d));
                self.consume(used);
                if decoder.is_done() {
                    return Ok(body);
                }
                if decoder.is_error() {
                    return Err(io::Error::other("bad chunked encoding"));
                }
                self.fill().await?;
            }
        }
        let len = match head.content_length {
            Some(len) => len,
            None if head.status == 204 || head.status == 304 || head.status < 200 => 0,
            None => return Err(io::Error::other("response without a length")),
        };
        while self.filled < len {
            self.fill().await?;
        }
        let body = self.buf[..len].to_vec();
        self.consume(len);
        Ok(body)
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(raw).map_err(|_| io::Error::other("response head not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("last-event-id") {
            head.last_event_id = Some(value.to_owned());
        }
    }
    Ok(head)
}

/// A streaming decoder of `Transfer-Encoding: chunked`.
#[derive(Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    size: usize,
    line: usize,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    Done,
    Error,
}

impl Chunked {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    pub(crate) fn is_error(&self) -> bool {
        self.state == ChunkState::Error
    }

    fn after_size(&mut self) {
        if self.size == 0 {
            self.state = ChunkState::Trailer;
            self.line = 0;
        } else {
            self.state = ChunkState::Data;
        }
    }

    /// Feeds raw bytes; the decoded data goes to `sink`. Returns how many bytes were used (all
    /// of them unless the body ended or was malformed).
    pub(crate) fn feed(&mut self, input: &[u8], sink: &mut impl FnMut(&[u8])) -> usize {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                ChunkState::Data => {
                    let n = self.size.min(input.len() - at);
                    sink(&input[at..at + n]);
                    at += n;
                    self.size -= n;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::Done | ChunkState::Error => break,
                _ => {}
            }
            let b = input[at];
            at += 1;
            self.state = match (self.state, b) {
                (ChunkState::Size, b'0'..=b'9') => {
                    self.size = self.size * 16 + usize::from(b - b'0');
                    ChunkState::Size
                }
                (ChunkState::Size, b'a'..=b'f') => {
                    self.size = self.size * 16 + usize::from(b - b'a' + 10);
                    ChunkState::Size
                }
                (ChunkState::Size, b'A'..=b'F') => {
                    self.size = self.size * 16 + usize::from(b - b'A' + 10);
                    ChunkState::Size
                }
                (ChunkState::Size, b'\r') => ChunkState::SizeLf,
                (ChunkState::Size, b';' | b' ' | b'\t') => ChunkState::Extension,
                (ChunkState::Size | ChunkState::Extension | ChunkState::SizeLf, b'\n') => {
                    self.after_size();
                    self.state
                }
                (ChunkState::Extension, _) => ChunkState::Extension,
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataCr | ChunkState::DataLf, b'\n') => {
                    self.size = 0;
                    ChunkState::Size
                }
                (ChunkState::Trailer, b'\n') if self.line == 0 => ChunkState::Done,
                (ChunkState::Trailer, b'\n') => {
                    self.line = 0;
                    ChunkState::Trailer
                }
                (ChunkState::Trailer, b'\r') => ChunkState::Trailer,
                (ChunkState::Trailer, _) => {
                    self.line += 1;
                    ChunkState::Trailer
                }
                _ => ChunkState::Error,
            };
        }
        at
    }
}

/// Finds `data: ` lines in an SSE stream fed in arbitrary pieces.
#[derive(Default)]
pub(crate) struct SseScanner {
    carry: Vec<u8>,
}

impl SseScanner {
    /// Calls `on_data` with the value of each complete `data:` line.
    pub(crate) fn feed(&mut self, mut input: &[u8], on_data: &mut impl FnMut(&[u8])) {
        if !self.carry.is_empty() {
            match input.iter().position(|&b| b == b'\n') {
                None => {
                    self.carry.extend_from_slice(input);
                    return;
                }
                Some(i) => {
                    self.carry.extend_from_slice(&input[..i]);
                    let line = std::mem::take(&mut self.carry);
                    line_data(&line, on_data);
                    self.carry = line;
                    self.carry.clear();
                    input = &input[i + 1..];
                }
            }
        }
        while let Some(i) = input.iter().position(|&b| b == b'\n') {
            line_data(&input[..i], on_data);
            input = &input[i + 1..];
        }
        self.carry.extend_from_slice(input);
    }
}

fn line_data(line: &[u8], on_data: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(value) = line.strip_prefix(b"data:") {
        on_data(value.strip_prefix(b" ").unwrap_or(value));
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one request on a keep-alive connection (opened, or reopened after the server closed
/// it, as needed), reads the whole response, and returns its status.
pub(crate) async fn exchange(
    conn: &mut Option<Conn>,
    addr: SocketAddr,
    request: &[u8],
) -> io::Result<u16> {
    if conn.is_none() {
        *conn = Some(Conn::new(connect(addr, None).await?, 4096));
    }
    let c = conn.as_mut().expect("connected");
    let head = c.request_head(request).await?;
    c.read_body(&head).await?;
    if head.close {
        *conn = None;
    }
    Ok(head.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut decoder = Chunked::default();
        let mut out = Vec::new();
        for piece in pieces {
            let used = decoder.feed(piece, &mut |d| out.extend_from_slice(d));
            assert_eq!(used, piece.len());
        }
        (out, decoder.is_done())
    }

    #[test]
    fn chunked_in_any_split() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let (out, done) = decode_all(&[&raw[..split], &raw[split..]]);
            assert_eq!(out, b"hello, world");
            assert!(done);
        }
    }

    #[test]
    fn sse_data_lines_across_pieces() {
        let raw = b":\n\nid: 1\ndata: 123.0.x\n\nid: 2\r\ndata: 456.1.x\r\n\r\n";
        for split in 0..raw.len() {
            let mut scanner = SseScanner::default();
            let mut seen = Vec::new();
            for piece in [&raw[..split], &raw[split..]] {
                scanner.feed(piece, &mut |d| seen.push(d.to_vec()));
            }
            assert_eq!(seen, vec![b"123.0.x".to_vec(), b"456.1.x".to_vec()]);
        }
    }

    #[test]
    fn heads() {
        let head = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nLast-Event-ID: x\r\nConnection: close",
        )
        .unwrap();
        assert_eq!(head.status, 200);
        assert!(head.chunked && head.close);
        assert_eq!(head.last_event_id.as_deref(), Some("x"));
    }
}
