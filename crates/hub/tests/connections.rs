//! How connections are served: subscriptions over HTTP/1 take their own path (no hyper buffers,
//! see `subscription_conn.rs`); these tests hold it to HTTP's rules with raw TCP.

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
