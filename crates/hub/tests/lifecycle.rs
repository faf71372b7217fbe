//! A stream's life over real TCP: heartbeats [R10], lifetime [R11], graceful shutdown, the slow
//! subscriber that is cut off and resumes from history, `/healthz` and security headers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use herald_hub::{HistoryLimits, HubConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// The comment-only block a heartbeat writes.
const HEARTBEAT: &str = ":\n\n";

// ---- [R10] heartbeat ----

#[tokio::test]
async fn r10_idle_stream_receives_a_heartbeat_comment() {
    let hub = TestHub::start(HubConfig {
        heartbeat: Some(Duration::from_millis(200)),
        ..config()
    })
    .await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    let start = Instant::now();
    assert!(
        sub.wait_for_raw(HEARTBEAT, Duration::from_secs(2)).await,
        "no heartbeat; received {:?}",
        sub.raw
    );
    assert!(start.elapsed() >= Duration::from_millis(150));
    // The opening comment, then comment-only blocks: nothing an EventSource would dispatch.
    assert!(sub.raw.starts_with(":\n:\n\n"), "{:?}", sub.raw);
    // And it keeps coming.
    assert!(sub.wait_for_raw(":\n\n:\n\n", Duration::from_secs(2)).await);
    sub.assert_no_event(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn r10_heartbeat_disabled_sends_nothing() {
    let hub = TestHub::start(HubConfig {
        heartbeat: None,
        ..config()
    })
    .await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    assert!(!sub.wait_for_raw(HEARTBEAT, Duration::from_secs(1)).await);
    assert_eq!(sub.raw, ":\n", "only the opening comment");
}

#[tokio::test]
async fn r10_events_postpone_the_heartbeat() {
    let hub = TestHub::start(HubConfig {
        heartbeat: Some(Duration::from_millis(500)),
        ..config()
    })
    .await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    // An event every 100 ms for over two heartbeat periods: never idle long enough.
    for i in 0..12 {
        hub.publish_ok(&[("topic", "t"), ("data", &format!("e{i}"))])
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sub.next_events(12).await;
    assert!(!sub.raw.contains(HEARTBEAT), "{:?}", sub.raw);
    // Once idle, it comes.
    assert!(sub.wait_for_raw(HEARTBEAT, Duration::from_secs(2)).await);
}

// ---- [R11] lifetime ----

/// Waits for the end of `sub`'s stream, asserting it happens in `[earliest, latest]` after
/// `start`.
async fn assert_ends_between(
    sub: &mut EventReader,
    start: Instant,
    earliest: Duration,
    latest: Duration,
) {
    let before = earliest.saturating_sub(start.elapsed());
    assert!(
        !sub.wait_for_end(before).await,
        "the stream ended too early, after {:?}",
        start.elapsed()
    );
    let left = latest.saturating_sub(start.elapsed());
    assert!(
        sub.wait_for_end(left).await,
        "the stream still open after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn r11_write_timeout_ends_the_stream() {
    let hub = TestHub::start(HubConfig {
        heartbeat: None,
        write_timeout: Some(Duration::from_secs(1)),
        ..config()
    })
    .await;
    let start = Instant::now();
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    // Jittered down by up to 20%: between 0.8 s and 1 s.
    assert_ends_between(
        &mut sub,
        start,
        Duration::from_millis(700),
        Duration::from_millis(1500),
    )
    .await;
    // The subscriber left the registry.
    let deadline = Instant::now() + WAIT;
    while hub.hub.subscriber_count() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.hub.subscriber_count(), 0);
}

#[tokio::test]
async fn r11_write_timeout_is_not_reset_by_heartbeats_or_events() {
    let hub = TestHub::start(HubConfig {
        heartbeat: Some(Duration::from_millis(100)),
        write_timeout: Some(Duration::from_secs(1)),
        ..config()
    })
    .await;
    let start = Instant::now();
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    let publishing = async {
        for _ in 0..6 {
            hub.publish_ok(&[("topic", "t")]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((), ended) = tokio::join!(publishing, sub.wait_for_end(Duration::from_millis(1500)));
    assert!(ended, "still open after {:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_millis(700));
}

#[tokio::test]
async fn r11_stream_ends_at_the_token_expiry() {
    let hub = TestHub::start(HubConfig {
        heartbeat: None,
        ..config()
    })
    .await;
    let exp = now_secs() + 2;
    let token = token(json!({"mercure": {"subscribe": ["*"]}, "exp": exp}));
    let start = Instant::now();
    let mut sub = hub
        .subscribe_with(hub.get("topic=*").bearer_auth(token))
        .await;
    // `exp` is in whole seconds: between 1 s and 2 s from now.
    assert_ends_between(
        &mut sub,
        start,
        Duration::from_millis(900),
        Duration::from_millis(2500),
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        now.as_secs_f64() >= exp as f64 - 0.1,
        "ended {:?} before exp",
        Duration::from_secs(exp).saturating_sub(now)
    );
}

#[tokio::test]
async fn r11_expired_token_is_401() {
    let hub = TestHub::default().await;
    let expired = token(json!({"mercure": {"subscribe": ["*"]}, "exp": now_secs() - 60}));
    let response = hub
        .get("topic=*")
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("expired"), "{reason:?}");
    assert_eq!(hub.hub.subscriber_count(), 0);
}

// ---- graceful shutdown, /healthz, security headers ----

#[tokio::test]
async fn shutdown_ends_open_streams_and_the_server_returns() {
    let hub = TestHub::start(HubConfig {
        heartbeat: None,
        ..config()
    })
    .await;
    let mut a = hub.subscribe_to(&["*"], &[]).await;
    let mut b = hub.subscribe_to(&["https://example.com/{x}"], &["*"]).await;
    let id = hub.publish_ok(&[("topic", "https://example.com/1")]).await;
    assert_eq!(a.next_event().await.id.as_deref(), Some(id.as_str()));
    assert_eq!(b.next_event().await.id.as_deref(), Some(id.as_str()));
    let start = Instant::now();
    assert!(
        hub.stop_within(Duration::from_secs(3)).await,
        "the server task did not return cleanly"
    );
    // Well under the 10 s shutdown timeout: the streams ended, not the timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    for sub in [&mut a, &mut b] {
        assert!(sub.wait_for_end(Duration::from_secs(1)).await);
        // The drain's last block: when to reconnect (drain_spread), no event.
        let last = sub.next_event_within(Duration::ZERO).await;
        assert!(
            last.as_ref()
                .is_some_and(|b| b.retry.is_some() && b.id.is_none() && b.data.is_empty()),
            "{last:?}"
        );
        assert!(sub.next_event_within(Duration::ZERO).await.is_none());
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let hub = TestHub::default().await;
    let addr = hub.addr();
    assert!(hub.stop_within(Duration::from_secs(3)).await);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn healthz_answers_ok() {
    let hub = TestHub::default().await;
    let response = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().trim(), "ok");
}

fn assert_security_headers(headers: &reqwest::header::HeaderMap) {
    assert_eq!(headers.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    let csp = headers
        .get("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp:?}");
}

#[tokio::test]
async fn security_headers_on_non_stream_responses() {
    let hub = TestHub::default().await;
    let healthz = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .unwrap();
    assert_security_headers(healthz.headers());
    let rejected = hub.get("topic=*").send().await.unwrap();
    assert_eq!(rejected.status(), 401);
    assert_security_headers(rejected.headers());
    let published = hub.publish(&[("topic", "t")]).await;
    assert_eq!(published.status(), 200);
    assert_security_headers(published.headers());
}

// ---- slow subscriber: cut off, resumes from history ----

/// A subscriber over raw TCP with a tiny receive buffer, so that not reading really stops the
/// flow (reqwest would keep reading into its own buffers).
struct RawSubscriber {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    pending: Vec<u8>,
    /// The decoded body so far.
    body: Vec<u8>,
    /// The terminating chunk was read.
    ended: bool,
}

impl RawSubscriber {
    async fn open(addr: SocketAddr, path_and_query: &str, token: &str) -> RawSubscriber {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = RawSubscriber {
            stream,
            pending: Vec::new(),
            body: Vec::new(),
            ended: false,
        };
        let head_end = loop {
            if let Some(at) = raw.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(raw.read_some(WAIT).await, "no response head");
        };
        let head = String::from_utf8(raw.pending.drain(..head_end).collect()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        raw
    }

    /// Reads what is available; false on timeout or end of connection.
    async fn read_some(&mut self, timeout: Duration) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(timeout, self.stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
            _ => false,
        }
    }

    /// Decodes the complete chunks in `pending` into `body`.
    fn decode(&mut self) {
        while !self.ended {
            let Some(line_end) = self.pending.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.pending[..line_end]).unwrap();
            let size_text = size_text.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size_text, 16).unwrap();
            let total = line_end + 2 + size + 2;
            if self.pending.len() < total {
                return;
            }
            assert_eq!(&self.pending[total - 2..total], b"\r\n", "chunk framing");
            self.body
                .extend_from_slice(&self.pending[line_end + 2..line_end + 2 + size]);
            self.pending.drain(..total);
            if size == 0 {
                self.ended = true;
            }
        }
    }

    /// Reads until the body ends (the terminating chunk) or the connection closes; true if the
    /// server ended the stream within `timeout`.
    async fn read_to_end(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            if self.ended {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_some(left).await {
                // A closed connection ends the stream too.
                return !left.is_zero() && Instant::now() < deadline;
            }
        }
    }

    /// The complete events in the decoded body.
    fn events(&self) -> Vec<SseEvent> {
        let text = std::str::from_utf8(&self.body).unwrap();
        let complete = match text.rfind("\n\n") {
            Some(at) => &text[..at + 2],
            None => "",
        };
        complete
            .split_inclusive("\n\n")
            .filter_map(parse_block)
            .collect()
    }
}

/// A listener whose accepted sockets have a small send buffer (they inherit it), so that what
/// the kernel holds for a stalled subscriber is small and the hub's own queue has to fill up.
fn small_send_buffer_listener() -> tokio::net::TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket.listen(128).unwrap()
}

#[tokio::test]
async fn slow_subscriber_is_disconnected_and_resumes_from_history_without_loss() {
    const TOTAL: usize = 128;
    const DATA: usize = 8000;
    let listener = small_send_buffer_listener();
    let hub = TestHub::start_on(
        listener,
        HubConfig {
            heartbeat: None,
            max_body_bytes: 16 * 1024,
            queue_bytes: 64 * 1024,
            history: HistoryLimits {
                max_events: 1000,
                max_age: None,
            },
            ..config()
        },
    )
    .await;
    let topic = "https://example.com/firehose";
    let mut slow = RawSubscriber::open(
        hub.addr(),
        &format!("/.well-known/mercure?{}", topics_query(&[topic])),
        &subscriber_token(&[]),
    )
    .await;
    // A fast subscriber on the same topic, read concurrently, must get everything.
    let mut fast = hub.subscribe_to(&[topic], &[]).await;
    let ids: Vec<String> = (0..TOTAL).map(|i| format!("s{i}")).collect();
    let data = |i: usize| format!("{i}:{}", "x".repeat(DATA));
    let publishing = async {
        for (i, id) in ids.iter().enumerate() {
            hub.publish_ok(&[("topic", topic), ("id", id), ("data", &data(i))])
                .await;
        }
    };
    let ((), fast_events) = tokio::join!(publishing, fast.next_events(TOTAL));
    assert_eq!(
        ids_of(&fast_events),
        ids,
        "the fast subscriber got everything"
    );

    // The slow one now reads: what was in flight, then the end of its stream.
    assert!(
        slow.read_to_end(WAIT).await,
        "the slow subscriber was not disconnected; decoded {} bytes",
        slow.body.len()
    );
    let received = slow.events();
    let k = received.len();
    assert!(k < TOTAL, "the slow subscriber received everything");
    assert_eq!(
        ids_of(&received),
        ids[..k],
        "what it got is a gap-free prefix"
    );
    for (i, event) in received.iter().enumerate() {
        assert_eq!(event.data, data(i));
    }
    // It left the registry (the fast one is still there).
    let deadline = Instant::now() + WAIT;
    while hub.hub.subscriber_count() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.hub.subscriber_count(), 1);

    // Reconnecting with its last id: everything later, once, in order, then live.
    let last = received
        .last()
        .and_then(|e| e.id.clone())
        .unwrap_or_else(|| "earliest".into());
    let mut resumed = hub
        .subscribe_with(
            hub.get(&topics_query(&[topic]))
                .bearer_auth(subscriber_token(&[]))
                .header("Last-Event-ID", &last),
        )
        .await;
    assert_eq!(resumed.headers.get("last-event-id").unwrap(), &last);
    let live = hub
        .publish_ok(&[("topic", topic), ("id", "live"), ("data", "live")])
        .await;
    let mut expected: Vec<String> = ids[k..].to_vec();
    expected.push(live);
    let events = resumed.next_events(expected.len()).await;
    assert_eq!(ids_of(&events), expected);
    for (event, i) in events.iter().zip(k..TOTAL) {
        assert_eq!(event.data, data(i));
    }
    resumed.assert_no_event(Duration::from_millis(100)).await;
}

/// Live events reach a waiting subscriber's socket from the dispatching side (direct writes):
/// when its client stops reading, the socket fills, a write goes in part, and the connection
/// takes over; when the client reads again it gets every event, in order, in a body whose
/// chunks are all well framed, heartbeats included, and live events then flow again.
#[tokio::test]
async fn a_subscriber_that_pauses_reading_gets_every_event_in_order_in_well_framed_chunks() {
    const TOTAL: usize = 64;
    const DATA: usize = 8000;
    let listener = small_send_buffer_listener();
    let hub = TestHub::start_on(
        listener,
        HubConfig {
            heartbeat: Some(Duration::from_millis(20)),
            max_body_bytes: 16 * 1024,
            ..config()
        },
    )
    .await;
    let topic = "https://example.com/paused";
    let mut paused = RawSubscriber::open(
        hub.addr(),
        &format!("/.well-known/mercure?{}", topics_query(&[topic])),
        &subscriber_token(&[]),
    )
    .await;
    let ids: Vec<String> = (0..=TOTAL).map(|i| format!("p{i}")).collect();
    let data = |i: usize| format!("{i}:{}", "y".repeat(DATA));
    for (i, id) in ids[..TOTAL].iter().enumerate() {
        hub.publish_ok(&[("topic", topic), ("id", id), ("data", &data(i))])
            .await;
        if i % 16 == 0 {
            // Heartbeats come due between the events.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let read_events = async |paused: &mut RawSubscriber, count: usize| {
        let deadline = Instant::now() + WAIT;
        loop {
            paused.decode();
            if paused.events().len() >= count || Instant::now() >= deadline {
                return paused.events();
            }
            paused.read_some(WAIT).await;
        }
    };
    let received = read_events(&mut paused, TOTAL).await;
    assert_eq!(ids_of(&received), ids[..TOTAL], "every event, in order");
    for (i, event) in received.iter().enumerate() {
        assert_eq!(event.data, data(i));
    }
    // Caught up, the subscriber waits again: the next event is written directly.
    tokio::time::sleep(Duration::from_millis(50)).await;
    hub.publish_ok(&[("topic", topic), ("id", &ids[TOTAL]), ("data", "last")])
        .await;
    let received = read_events(&mut paused, TOTAL + 1).await;
    assert_eq!(ids_of(&received), ids, "and live events after");
    assert!(!paused.ended, "the stream goes on");
}
