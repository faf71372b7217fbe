//! How connections are served: subscriptions over HTTP/1 take their own path (no hyper buffers,
//! see `subscription_conn.rs`); these tests hold it to HTTP's rules with raw TCP, check that
//! both paths answer the same bytes alike, and that every phase of every connection has a
//! deadline (docs/operations.md, "Connections and timeouts"). Deadlines are set short here so
//! that each test takes about a second.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw(hub: &TestHub, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(hub.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection (or `within` passes).
async fn read_until_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

fn anonymous_config() -> herald_hub::HubConfig {
    let mut config = config();
    config.anonymous = true;
    config
}

/// A hub with every connection deadline at `SHORT`.
fn short_deadlines() -> herald_hub::HubConfig {
    let mut config = anonymous_config();
    config.timeouts.header = SHORT;
    config.timeouts.body = SHORT;
    config.timeouts.http2_idle = SHORT;
    // Long enough not to end the connections the idle deadline is tested on.
    config.timeouts.http2_keep_alive = Duration::from_secs(30);
    config
}

const SHORT: Duration = Duration::from_millis(400);

/// Whether the server closes `stream` within [`WAIT`] (reading and dropping what it sends).
async fn closes(stream: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test]
async fn r5_http_1_1_stream_is_chunked_and_ends_with_the_last_chunk() {
    let mut config = anonymous_config();
    config.write_timeout = Some(Duration::from_millis(500));
    let hub = TestHub::start(config).await;
    let mut stream = raw(
        &hub,
        b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n",
    )
    .await;
    let text = read_until_close(&mut stream, WAIT).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(
        text.contains("content-type: text/event-stream\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\n\r\n2\r\n:\n\r\n"),
        "the opening comment as a chunk: {text}"
    );
    assert!(
        text.ends_with("0\r\n\r\n"),
        "a complete chunked body: {text:?}"
    );
}

#[tokio::test]
async fn r5_http_1_0_stream_is_delimited_by_the_connection() {
    let mut config = anonymous_config();
    config.write_timeout = Some(Duration::from_millis(500));
    let hub = TestHub::start(config).await;
    let mut stream = raw(&hub, b"GET /.well-known/mercure?topic=a HTTP/1.0\r\n\r\n").await;
    let text = read_until_close(&mut stream, WAIT).await;
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n:\n"), "the raw stream: {text:?}");
}

#[tokio::test]
async fn malformed_subscription_head_is_a_400_with_a_reason() {
    let hub = TestHub::start(anonymous_config()).await;
    let mut stream = raw(&hub, b"GET /.well-known/mercure?topic=a HTTP/9\r\n\r\n").await;
    let text = read_until_close(&mut stream, WAIT).await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.ends_with("malformed request head\n"), "{text}");
}

#[tokio::test]
async fn oversized_subscription_head_is_a_431() {
    let hub = TestHub::start(anonymous_config()).await;
    let mut stream = TcpStream::connect(hub.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let huge = format!(
        "GET /.well-known/mercure?topic={} HTTP/1.1\r\n",
        "a".repeat(600 * 1024)
    );
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(huge.as_bytes()).await;
    let text = read_until_close(&mut stream, WAIT).await;
    assert!(
        text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_closes_leaves_at_once() {
    let hub = TestHub::start(anonymous_config()).await;
    let stream = raw(
        &hub,
        b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n",
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.hub.subscriber_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No heartbeat comes for 40 s: the hub must notice the close by reading.
    drop(stream);
    while hub.hub.subscriber_count() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn rejections_on_the_subscription_path_keep_their_reason_and_status() {
    let hub = TestHub::default().await;
    let mut stream = raw(
        &hub,
        b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n",
    )
    .await;
    let text = read_until_close(&mut stream, WAIT).await;
    assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
    assert!(text.contains("www-authenticate: Bearer\r\n"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains("no token"), "{body}");
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len());
}

// ---- Deadlines on every phase of a connection [issue 13]. ----

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let hub = TestHub::start(short_deadlines()).await;
    let mut stream = raw(&hub, b"").await;
    assert!(closes(&mut stream).await);
}

#[tokio::test]
async fn one_byte_of_the_http2_preface_is_closed_after_the_header_timeout() {
    let hub = TestHub::start(short_deadlines()).await;
    let mut stream = raw(&hub, b"P").await;
    assert!(closes(&mut stream).await, "a lone `P` held the connection");
}

#[tokio::test]
async fn the_whole_http2_preface_then_nothing_is_closed() {
    let hub = TestHub::start(short_deadlines()).await;
    let mut stream = raw(&hub, H2_PREFACE).await;
    assert!(
        closes(&mut stream).await,
        "a lone preface held the connection"
    );
}

#[tokio::test]
async fn http2_settings_then_no_request_is_closed() {
    let hub = TestHub::start(short_deadlines()).await;
    let mut stream = raw(&hub, &[H2_PREFACE, &frame(SETTINGS, 0, 0, &[])].concat()).await;
    assert!(closes(&mut stream).await);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_its_last_stream() {
    let hub = TestHub::start(short_deadlines()).await;
    let mut stream = raw(&hub, &h2_request("/healthz")).await;
    let frames = read_frames(&mut stream).await;
    assert!(
        frames.iter().any(|f| f.kind == HEADERS && f.stream == 1),
        "no response: {frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.kind == GOAWAY),
        "closed without a GOAWAY: {frames:?}"
    );
}

#[tokio::test]
async fn an_http2_stream_in_progress_is_not_idle() {
    let mut config = short_deadlines();
    config.write_timeout = Some(Duration::from_millis(1500));
    let hub = TestHub::start(config).await;
    let mut stream = raw(&hub, &h2_request("/.well-known/mercure?topic=a")).await;
    let started = tokio::time::Instant::now();
    read_frames(&mut stream).await;
    // Open until the subscription's lifetime ends, not cut at the idle deadline.
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn an_http2_peer_that_does_not_answer_pings_is_disconnected() {
    let mut config = short_deadlines();
    config.timeouts.http2_keep_alive = SHORT;
    let hub = TestHub::start(config).await;
    // A subscription keeps the connection busy: only the unanswered PING can end it.
    let mut stream = raw(&hub, &h2_request("/.well-known/mercure?topic=a")).await;
    let frames = read_frames(&mut stream).await;
    assert!(frames.iter().any(|f| f.kind == PING), "{frames:?}");
}

#[tokio::test]
async fn a_partial_head_is_closed_after_the_header_timeout_on_both_paths() {
    let hub = TestHub::start(short_deadlines()).await;
    for head in [
        &b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: h"[..],
        b"GET /healthz HTTP/1.1\r\nHost: h",
    ] {
        let mut stream = raw(&hub, head).await;
        assert!(
            closes(&mut stream).await,
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let hub = TestHub::start(short_deadlines()).await;
    let mut stream = raw(&hub, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n").await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(read.is_ok(), "the idle connection stayed open");
}

/// Sends `head`, then its 100-byte body a byte every 100 ms (`filler`); returns what the hub
/// answered, and whether it closed the connection within [`WAIT`].
async fn trickle_body(hub: &TestHub, head: &str, filler: &'static [u8]) -> (String, bool) {
    let stream = raw(hub, head.as_bytes()).await;
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(filler).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut received = Vec::new();
    let closed = tokio::time::timeout(WAIT, reader.read_to_end(&mut received)).await;
    trickle.abort();
    (
        String::from_utf8_lossy(&received).into_owned(),
        closed.is_ok(),
    )
}

#[tokio::test]
async fn a_publish_body_sent_a_byte_at_a_time_is_cut_with_408() {
    let hub = TestHub::start(short_deadlines()).await;
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
        publisher_token()
    );
    let (text, closed) = trickle_body(&hub, &head, b"t").await;
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("request body not received within"), "{text}");
    assert!(closed, "the connection stayed open");
}

#[tokio::test]
async fn a_token_request_to_the_dev_ui_sent_a_byte_at_a_time_is_cut_with_408() {
    let mut config = short_deadlines();
    config.ui = true;
    config.dev_mode = true;
    let hub = TestHub::start(config).await;
    let head = "POST /.well-known/mercure/ui/token HTTP/1.1\r\nHost: hub\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let (text, closed) = trickle_body(&hub, head, b" ").await;
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(closed, "the connection stayed open");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let hub = TestHub::default().await;
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 999999999999\r\n\r\n",
        publisher_token()
    );
    let mut stream = raw(&hub, head.as_bytes()).await;
    let text = read_until_close(&mut stream, WAIT).await;
    assert!(
        text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("update too large: the limit is"), "{text}");
}

// ---- Both paths answer the same bytes alike [issue 13]. ----

/// How the request is sent, which decides who serves a subscription.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// In one write: the first read sees a subscription, `subscription_conn/` serves it.
    Fast,
    /// One byte, a pause, then the rest: the first read sees too little to tell a
    /// subscription, so hyper serves it.
    Hyper,
}

/// Sends `request` by `path` and returns the response head (or everything, if the server
/// closes first).
async fn answer(hub: &TestHub, request: &[u8], path: Path) -> String {
    let mut stream = TcpStream::connect(hub.addr()).await.unwrap();
    let rest = match path {
        Path::Fast => request,
        Path::Hyper => {
            stream.write_all(&request[..1]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
            &request[1..]
        }
    };
    // The server may answer and close before it has read everything: ignore write errors.
    let (mut reader, mut writer) = stream.into_split();
    let rest = rest.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&rest).await;
        writer
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    drop(writing.await);
    String::from_utf8_lossy(&received).into_owned()
}

/// The status line of each path's answer, checking that each path is the one meant (hyper
/// sends a `date` header, the subscription path does not).
async fn status_on_both_paths(hub: &TestHub, request: &[u8]) -> [String; 2] {
    let fast = answer(hub, request, Path::Fast).await;
    let hyper = answer(hub, request, Path::Hyper).await;
    assert!(
        !fast.contains("\r\ndate: "),
        "not the subscription path: {fast}"
    );
    assert!(hyper.contains("\r\ndate: "), "not hyper: {hyper}");
    [fast, hyper].map(|text| status_line(&text))
}

fn status_line(response: &str) -> String {
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_head_with_bare_lf_line_endings_is_served_on_both_paths() {
    let hub = TestHub::start(anonymous_config()).await;
    let request = b"GET /.well-known/mercure?topic=a HTTP/1.1\nHost: hub\n\n";
    assert_eq!(
        status_on_both_paths(&hub, request).await,
        ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
    );
}

#[tokio::test]
async fn a_uri_over_64_kib_is_414_on_both_paths() {
    let hub = TestHub::start(anonymous_config()).await;
    let request = format!(
        "GET /.well-known/mercure?topic={} HTTP/1.1\r\nHost: hub\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(
        status_on_both_paths(&hub, request.as_bytes()).await,
        ["HTTP/1.1 414 URI Too Long", "HTTP/1.1 414 URI Too Long"]
    );
}

#[tokio::test]
async fn heads_up_to_512_kib_are_served_on_both_paths_and_431_above() {
    let hub = TestHub::start(anonymous_config()).await;
    let padded = |size: usize| {
        let start = "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\nX-Pad: ";
        let pad = size - start.len() - "\r\n\r\n".len();
        format!("{start}{}\r\n\r\n", "p".repeat(pad))
    };
    assert_eq!(
        status_on_both_paths(&hub, padded(512 * 1024).as_bytes()).await,
        ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
    );
    let too_large = "HTTP/1.1 431 Request Header Fields Too Large";
    assert_eq!(
        status_on_both_paths(&hub, padded(512 * 1024 + 1).as_bytes()).await,
        [too_large, too_large]
    );
}

#[tokio::test]
async fn body_framing_errors_are_judged_alike_on_both_paths() {
    let hub = TestHub::start(anonymous_config()).await;
    for framing in [
        "Content-Length: abc",
        "Content-Length: 1\r\nContent-Length: 2",
        "Transfer-Encoding: gzip",
    ] {
        let request =
            format!("GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\n{framing}\r\n\r\n");
        // The subscription path hands these to hyper, so both answers come from hyper.
        let fast = status_line(&answer(&hub, request.as_bytes(), Path::Fast).await);
        let hyper = status_line(&answer(&hub, request.as_bytes(), Path::Hyper).await);
        assert_eq!(fast, hyper, "{framing}");
        assert_eq!(fast, "HTTP/1.1 400 Bad Request", "{framing}");
    }
}

// ---- Raw HTTP/2 frames, for the deadlines only hand-made frames can reach. ----

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// The preface, empty SETTINGS and a GET of `path` on stream 1 (HPACK without Huffman).
fn h2_request(path: &str) -> Vec<u8> {
    // :method GET, :scheme http (static table 2 and 6), :path as a literal with name index 4.
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend(path.as_bytes());
    let end_stream_and_headers = 0x1 | 0x4;
    [
        H2_PREFACE,
        &frame(SETTINGS, 0, 0, &[]),
        &frame(HEADERS, end_stream_and_headers, 1, &block),
    ]
    .concat()
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    stream: u32,
}

/// The frames the server sends until it closes the connection; fails the test if it does not
/// within [`WAIT`].
async fn read_frames(stream: &mut TcpStream) -> Vec<Frame> {
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .expect("the server kept the connection open")
        .ok();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        frames.push(Frame {
            kind: rest[3],
            stream,
        });
        rest = &rest[(9 + length).min(rest.len())..];
    }
    frames
}

// ---- The accept loop when the process is out of file descriptors [issue 13]. ----

/// Set in the child process [`accept_errors_back_off_and_are_logged_once_a_second`] starts.
const EMFILE_CHILD: &str = "HERALD_TEST_EMFILE_CHILD";

/// Runs a hub in a child process limited to 64 open files (`ulimit -n`, so that this process
/// keeps its own limit), opens more connections to it than it can accept, and reads its log:
/// accept errors must back off and be logged at most once a second, not every 100 ms; once
/// connections close, the hub serves again.
#[tokio::test]
async fn accept_errors_back_off_and_are_logged_once_a_second() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        return emfile_child().await;
    }
    use std::process::Stdio;
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--exact",
            "accept_errors_back_off_and_are_logged_once_a_second",
            "--nocapture",
        ])
        .env(EMFILE_CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("ADDR ") {
                return addr.to_owned();
            }
        }
        panic!("the child hub did not start");
    })
    .await
    .unwrap();
    // More connections than the child can hold: the rest wait in the backlog while it
    // retries accepting.
    let flooded = tokio::time::Instant::now();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    held.truncate(20);
    let out_of_files = flooded.elapsed();
    let mut healthz = raw_to(&addr, b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n").await;
    let text = read_until_close_or_head(&mut healthz).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    drop(child.stdin.take());
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let reports = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(reports >= 1, "the child never ran out of files: {log}");
    // One report a second at most (and one at the start).
    let allowed = out_of_files.as_secs_f64().ceil() as usize + 1;
    assert!(
        reports <= allowed,
        "{reports} reports in {out_of_files:?}: {log}"
    );
}

async fn emfile_child() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter("herald_hub=warn")
        .init();
    let hub = TestHub::start(config()).await;
    println!("ADDR {}", hub.addr());
    // Until the parent closes stdin.
    tokio::task::spawn_blocking(|| std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]))
        .await
        .unwrap()
        .ok();
}

async fn raw_to(addr: &str, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

async fn read_until_close_or_head(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}
