//! The graceful drain (issue 12, item 4), on the real binary: on SIGTERM `herald serve` stops
//! accepting, ends every stream with a `retry:` field spread at random over `--drain-spread`
//! (so that clients do not all reconnect at the same millisecond), lets a publish in flight
//! finish and be acknowledged, and exits 0 within `--shutdown-timeout`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Herald, KEY, Subscription, token, wait_with_timeout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUBSCRIBERS: usize = 50;
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

/// The `retry:` value of a stream's text, if its last field is one.
fn last_retry(text: &str) -> Option<u64> {
    let last = text.trim_end().lines().last()?;
    last.strip_prefix("retry: ")?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_streams_with_spread_retries_and_finishes_publishes() {
    let mut herald = Herald::start(&[
        "--jwt-key",
        KEY,
        "--transport",
        "memory",
        "--drain-spread",
        "3s",
        "--shutdown-timeout",
        "8s",
    ]);
    let url = herald.url.clone();
    let mut streams = Vec::new();
    for _ in 0..SUBSCRIBERS {
        streams.push(Subscription::open(&url, None).await);
    }
    // A publish in flight: its head and half its body sent before the signal.
    let body = "topic=https%3A%2F%2Fexample.com%2Ft&id=in-flight&data=finished+after+SIGTERM";
    let (first, rest) = body.split_at(body.len() / 2);
    let mut publish = TcpStream::connect(&herald.addr).await.unwrap();
    let head = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{first}",
        token(),
        body.len()
    );
    publish.write_all(head.as_bytes()).await.unwrap();

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &herald.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // Every stream ends, its last field a `retry:`.
    let mut retries = Vec::new();
    for stream in &mut streams {
        stream.read_until(Duration::from_secs(5), |_| false).await;
        assert!(stream.ended(), "a stream did not end on SIGTERM");
        let retry = last_retry(&stream.text)
            .unwrap_or_else(|| panic!("no retry: before the end: {:?}", stream.text));
        assert!(retry <= 3000, "retry {retry} ms is over --drain-spread");
        retries.push(retry);
    }
    let distinct: BTreeSet<u64> = retries.iter().copied().collect();
    assert!(
        distinct.len() > SUBSCRIBERS / 2,
        "retries should be spread, got {retries:?}"
    );

    // The publish started before the signal is finished and acknowledged.
    publish.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), publish.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("in-flight"), "{answer}");

    // And the process exits 0 within --shutdown-timeout.
    let exit = tokio::task::spawn_blocking(move || {
        let status =
            wait_with_timeout(&mut herald.child, SHUTDOWN_TIMEOUT + Duration::from_secs(2));
        (status, herald)
    });
    let (status, _herald) = exit.await.unwrap();
    let status = status.expect("herald did not exit after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < SHUTDOWN_TIMEOUT,
        "exited {:?} after SIGTERM, --shutdown-timeout is {SHUTDOWN_TIMEOUT:?}",
        signalled.elapsed()
    );
}
