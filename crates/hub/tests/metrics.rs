//! Metrics, health and readiness over real TCP: real traffic, then a scrape of `/metrics` on the
//! metrics listener, checked to the exact count; `/readyz` when Redis goes away.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{Persistence, RedisServer};
use common::*;
use herald_hub::{HistoryLimits, HubConfig, RedisOptions, Storage};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;

const TOPIC: &str = "https://example.com/metrics";

/// The metrics listener of a test hub, served by `herald_hub::serve_metrics` on a free port
/// (what `serve` does on `HubConfig::metrics_listen`), stopped when dropped.
struct MetricsListener {
    base: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl MetricsListener {
    async fn start(hub: &TestHub) -> MetricsListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(herald_hub::serve_metrics(
            listener,
            hub.hub.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        MetricsListener {
            base,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn scrape(&self) -> Scrape {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        Scrape(response.text().await.unwrap())
    }

    /// Scrapes until `series` has `value`, failing the test past [`WAIT`]: for what the hub
    /// counts when it notices (a client that went away).
    async fn wait_for(&self, series: &str, value: f64) -> Scrape {
        let deadline = Instant::now() + WAIT;
        loop {
            let scrape = self.scrape().await;
            if scrape.value(series) == value || Instant::now() > deadline {
                assert_eq!(scrape.value(series), value, "{series}");
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One Prometheus text exposition.
struct Scrape(String);

impl Scrape {
    /// The value of one series, written as in the exposition (`name{label="v"}`); fails the
    /// test if it is not there.
    fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<f64>().unwrap())
            })
            .unwrap_or_else(|| panic!("no {series} in\n{}", self.0))
    }

    fn has(&self, name: &str) -> bool {
        self.0.lines().any(|line| line.starts_with(name))
    }
}

/// N updates to M subscribers, one subscriber gone, one replay, one rejected publish: every
/// count exact, on every transport.
async fn counts_real_traffic_exactly(backend: Backend) {
    const UPDATES: usize = 5;
    const SUBSCRIBERS: usize = 3;
    let hub = backend
        .start(HubConfig {
            heartbeat: None,
            ..config()
        })
        .await;
    let metrics = MetricsListener::start(&hub).await;
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        readers.push(hub.subscribe_to(&[TOPIC], &[]).await);
    }
    let mut ids = Vec::new();
    for i in 0..UPDATES {
        ids.push(
            hub.publish_ok(&[("topic", TOPIC), ("data", &format!("update {i}"))])
                .await,
        );
    }
    for reader in &mut readers {
        assert_eq!(ids_of(&reader.next_events(UPDATES).await), ids);
    }
    // A publish without a token: rejected, 401.
    let refused = hub
        .client
        .post(&hub.url)
        .form(&[("topic", TOPIC), ("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // One subscriber goes away.
    let gone = readers.pop().unwrap();
    let mut bytes: usize = gone.raw.len();
    drop(gone);
    metrics
        .wait_for(
            "herald_subscribers_disconnected_total{reason=\"client_gone\"}",
            1.0,
        )
        .await;

    // One replay, after the first update.
    let mut replay = hub
        .subscribe_with(
            hub.get(&topics_query(&[TOPIC]))
                .bearer_auth(subscriber_token(&[]))
                .header("Last-Event-ID", &ids[0]),
        )
        .await;
    assert_eq!(ids_of(&replay.next_events(UPDATES - 1).await), ids[1..]);
    bytes += readers.iter().map(|r| r.raw.len()).sum::<usize>() + replay.raw.len();

    let scrape = metrics.scrape().await;
    let expect = |series: &str, value: usize| {
        assert_eq!(scrape.value(series), value as f64, "{series}\n{}", scrape.0);
    };
    expect("mercure_subscribers_connected", SUBSCRIBERS - 1 + 1);
    expect("mercure_subscribers_total", SUBSCRIBERS + 1);
    expect("mercure_updates_total", UPDATES);
    expect("herald_publishes_total{result=\"accepted\"}", UPDATES);
    expect(
        "herald_publishes_total{result=\"rejected\",reason=\"unauthorized\"}",
        1,
    );
    expect(
        "herald_publishes_total{result=\"rejected\",reason=\"forbidden\"}",
        0,
    );
    expect("herald_publishes_total{result=\"failed\"}", 0);
    expect("herald_updates_dispatched_total", UPDATES);
    expect("herald_deliveries_total", UPDATES * SUBSCRIBERS);
    expect("herald_bytes_written_total", bytes);
    expect(
        "herald_subscribers_disconnected_total{reason=\"client_gone\"}",
        1,
    );
    for reason in [
        "slow_reader",
        "lifetime",
        "token_expired",
        "shutdown",
        "replay_failed",
    ] {
        expect(
            &format!("herald_subscribers_disconnected_total{{reason=\"{reason}\"}}"),
            0,
        );
    }
    expect("herald_replays_total", 1);
    expect("herald_replayed_events_total", UPDATES - 1);
    expect("herald_history_events", UPDATES);
    expect("herald_transport_errors_total", 0);
    expect("herald_publish_duration_seconds_count", UPDATES);
    // One observation per write: at least one per subscriber, at most one per delivery.
    let writes = scrape.value("herald_delivery_duration_seconds_count");
    assert!(
        (SUBSCRIBERS as f64..=(UPDATES * SUBSCRIBERS) as f64).contains(&writes),
        "{writes} writes"
    );
    expect(
        "herald_delivery_duration_seconds_bucket{le=\"+Inf\"}",
        writes as usize,
    );
    // Connections: the two subscribers left and the replay, plus the publishers' idle
    // keep-alive connection(s) in the client's pool; the scrape is on its own listener.
    let connections = scrape.value("herald_connections");
    assert!(
        (SUBSCRIBERS as f64..=SUBSCRIBERS as f64 + 2.0).contains(&connections),
        "{connections} connections"
    );
    assert!(!scrape.has("herald_connections_max"), "no cap set");
}

on_every_backend!(counts_real_traffic_exactly);

/// A subscriber that stops reading is cut off and counted as a slow reader; lifetime and token
/// expiry are counted apart [R11].
#[tokio::test]
async fn counts_each_disconnect_reason() {
    // Small send buffers on the hub's side, so that the stalled subscriber's queue fills.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hub = TestHub::start_on(
        socket.listen(128).unwrap(),
        HubConfig {
            heartbeat: None,
            max_body_bytes: 16 * 1024,
            queue_bytes: 64 * 1024,
            write_timeout: Some(Duration::from_secs(2)),
            history: HistoryLimits {
                max_events: 1000,
                max_age: None,
            },
            max_connections: Some(100),
            ..config()
        },
    )
    .await;
    let metrics = MetricsListener::start(&hub).await;

    // Ends at its token's expiry (1 s), before its lifetime (1.6 s to 2 s).
    let exp = now_secs() + 1;
    let expiring = token(json!({"mercure": {"subscribe": []}, "exp": exp}));
    let mut expiring = hub
        .subscribe_with(hub.get(&topics_query(&[TOPIC])).bearer_auth(expiring))
        .await;
    // Ends at its lifetime: its token has no expiry.
    let mut aging = hub.subscribe_to(&[TOPIC], &[]).await;

    // Connects with a tiny receive buffer and never reads.
    let stalled = TcpSocket::new_v4().unwrap();
    stalled.set_recv_buffer_size(4096).unwrap();
    let mut stalled = stalled.connect(hub.addr()).await.unwrap();
    let request = format!(
        "GET /.well-known/mercure?{} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\r\n",
        topics_query(&["https://example.com/firehose"]),
        subscriber_token(&[])
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while hub.hub.subscriber_count() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let data = "x".repeat(8000);
    for _ in 0..64 {
        hub.publish_ok(&[("topic", "https://example.com/firehose"), ("data", &data)])
            .await;
    }
    metrics
        .wait_for(
            "herald_subscribers_disconnected_total{reason=\"slow_reader\"}",
            1.0,
        )
        .await;

    assert!(
        expiring.wait_for_end(WAIT).await,
        "ended at its token's exp"
    );
    assert!(aging.wait_for_end(WAIT).await, "ended at its lifetime");
    metrics
        .wait_for(
            "herald_subscribers_disconnected_total{reason=\"token_expired\"}",
            1.0,
        )
        .await;
    let scrape = metrics
        .wait_for(
            "herald_subscribers_disconnected_total{reason=\"lifetime\"}",
            1.0,
        )
        .await;
    assert_eq!(
        scrape.value("herald_subscribers_disconnected_total{reason=\"client_gone\"}"),
        0.0
    );
    assert_eq!(scrape.value("herald_connections_max"), 100.0);
    assert_eq!(scrape.value("herald_connections_refused_total"), 0.0);
    drop(stalled);
}

/// `/healthz` and `/readyz` on both listeners; `/readyz` says 503 and why when Redis is down,
/// and the lost connection counts as a transport error.
#[tokio::test]
async fn readyz_is_503_while_redis_is_down() {
    let mut redis = RedisServer::start(Persistence::None);
    let hub = TestHub::start(HubConfig {
        storage: Storage::Redis(RedisOptions::new(redis.url())),
        ..config()
    })
    .await;
    let metrics = MetricsListener::start(&hub).await;
    let main_get = |path: &str| hub.client.get(format!("{}{path}", hub.base)).send();
    for path in ["/healthz", "/readyz"] {
        assert_eq!(main_get(path).await.unwrap().status(), 200, "{path}");
        assert_eq!(metrics.get(path).await.0, 200, "{path}");
    }
    assert_eq!(metrics.get("/readyz").await.1, "ready\n");

    redis.kill9();
    for (status, body) in [
        {
            let response = main_get("/readyz").await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        },
        metrics.get("/readyz").await,
    ] {
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("not ready:"), "{body}");
        assert!(body.contains("Redis"), "says why: {body}");
    }
    // Alive all the same.
    assert_eq!(main_get("/healthz").await.unwrap().status(), 200);
    assert_eq!(metrics.get("/healthz").await.0, 200);
    // The tail lost its connection.
    let deadline = Instant::now() + WAIT;
    while metrics
        .scrape()
        .await
        .value("herald_transport_errors_total")
        < 1.0
    {
        assert!(Instant::now() < deadline, "no transport error counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    redis.restart();
    let deadline = Instant::now() + WAIT * 2;
    while metrics.get("/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/readyz` says 503 once the hub shuts down, while streams drain.
#[tokio::test]
async fn readyz_is_503_while_shutting_down() {
    let hub = TestHub::default().await;
    let metrics = MetricsListener::start(&hub).await;
    assert_eq!(metrics.get("/readyz").await.0, 200);
    hub.hub.close_streams();
    let (status, body) = metrics.get("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body, "not ready: shutting down\n");
}
