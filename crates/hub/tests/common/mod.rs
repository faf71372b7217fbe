//! Test support: a real hub on a free loopback port, tokens, and an SSE reader.
//!
//! Every integration test talks HTTP over real TCP to a hub served by [`herald_hub::serve`], the
//! same accept loop the `herald` binary runs.
#![allow(dead_code)]
// Helpers shared by the test files, not an API: `pub` lets each test file reach them.
#![allow(unreachable_pub)]

use std::time::Duration;

use futures_util::StreamExt;
use herald_hub::{Hub, HubConfig, JwtKey};
use herald_protocol::Algorithm;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The HMAC key test hubs verify with.
pub const KEY: &str = "herald-test-key-0123456789abcdef";

/// How long a test waits for something that should happen before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A hub configuration with [`KEY`] for publishers and subscribers.
pub fn config() -> HubConfig {
    let key = JwtKey {
        algorithm: Algorithm::HS256,
        key: KEY.as_bytes().to_vec(),
    };
    HubConfig {
        publisher_key: Some(key.clone()),
        subscriber_key: Some(key),
        ..HubConfig::default()
    }
}

/// A token signed with [`KEY`] carrying `claims` as its payload.
pub fn token(claims: Value) -> String {
    token_with(Algorithm::HS256, KEY.as_bytes(), claims)
}

pub fn token_with(alg: Algorithm, key: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
}

/// The hub URL of the Mercure 1.0 tests (`HubConfig::hub_url`): the `aud` of their access
/// tokens and the base of relative URL patterns.
pub const V1_HUB_URL: &str = "https://hub.example/.well-known/mercure";

/// A Mercure 1.0 access token (`typ: at+jwt`, `aud` [`V1_HUB_URL`], signed with [`KEY`]) with
/// these `authorization_details` [V2].
pub fn v1_access_token(details: Vec<Value>) -> String {
    v1_access_token_with(details, json!({}))
}

/// [`v1_access_token`] with the claims of `extra` on top (a `null` removes a claim: `sub`, say).
pub fn v1_access_token_with(details: Vec<Value>, extra: Value) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let mut claims = json!({
        "exp": now_secs() + 3600,
        "aud": V1_HUB_URL,
        "sub": "test",
        "authorization_details": details,
    });
    for (name, value) in extra.as_object().into_iter().flatten() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(KEY.as_bytes())).unwrap()
}

/// One Mercure authorization detail: `actions` on `topics`, each `(match_type, match)`, with
/// the subscriber's `payload` if any.
pub fn v1_detail(actions: &[&str], topics: &[(&str, &str)], payload: Option<Value>) -> Value {
    let topics: Vec<Value> = topics
        .iter()
        .map(|(match_type, matcher)| json!({"match_type": match_type, "match": matcher}))
        .collect();
    let mut detail = json!({
        "type": "https://mercure.rocks/authorization-detail",
        "actions": actions,
        "topics": topics,
    });
    if let Some(payload) = payload {
        detail["payload"] = payload;
    }
    detail
}

/// A token allowed to publish to every topic.
pub fn publisher_token() -> String {
    token(json!({"mercure": {"publish": ["*"]}}))
}

/// A token allowed to receive private updates on `selectors`.
pub fn subscriber_token(selectors: &[&str]) -> String {
    token(json!({"mercure": {"subscribe": selectors}}))
}

/// A hub served on 127.0.0.1 on a free port, shut down gracefully when dropped or by
/// [`TestHub::stop`].
pub struct TestHub {
    pub hub: Hub,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `http://127.0.0.1:PORT/.well-known/mercure`
    pub url: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    /// What must live as long as the hub (its history directory, say).
    keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// The transports a test suite can run on: the tests of history run on every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory ring (the library's default).
    Memory,
    /// A redb file in a temporary directory (the default of `herald serve`), committed without
    /// a sync per batch (`Durability::Periodic`): the history semantics are the same, and
    /// thousands of sequential fsyncs would make the suite slow; what `Sync` promises is tested
    /// with `kill -9` in crates/cli/tests/durability.rs.
    Embedded,
    /// A Redis stream on a `redis-server` of its own (started on a free port, killed with the
    /// hub; the Debian package `redis-server` must be installed).
    Redis,
}

/// The `redis-server` helper of the command-line tests, shared rather than copied.
#[path = "../../../cli/tests/common/redis.rs"]
pub mod redis_server;

impl Backend {
    /// Starts a hub with `config`, its storage set to this backend.
    pub async fn start(self, mut config: HubConfig) -> TestHub {
        let mut keep: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        config.storage = match self {
            Backend::Memory => herald_hub::Storage::Memory,
            Backend::Embedded => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("history.redb");
                keep.push(Box::new(dir));
                herald_hub::Storage::Embedded {
                    path,
                    durability: herald_hub::Durability::Periodic,
                }
            }
            Backend::Redis => {
                let server = redis_server::RedisServer::start(redis_server::Persistence::None);
                let options = herald_hub::RedisOptions::new(server.url());
                keep.push(Box::new(server));
                herald_hub::Storage::Redis(options)
            }
        };
        let mut hub = TestHub::start(config).await;
        hub.keep = keep;
        hub
    }
}

/// Generates, for each named `async fn name(backend: Backend)`, one `#[tokio::test]` per
/// backend: `memory::name`, `embedded::name`, `redis::name`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Memory).await })*
        }
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Embedded).await })*
        }
        mod redis {
            $(#[tokio::test] async fn $name() { super::$name($crate::common::Backend::Redis).await })*
        }
    };
}

impl TestHub {
    pub async fn start(config: HubConfig) -> TestHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        TestHub::start_on(listener, config).await
    }

    /// A hub with [`config`].
    pub async fn default() -> TestHub {
        TestHub::start(config()).await
    }

    /// Publishes form `fields` with a token allowed to publish everywhere.
    pub async fn publish(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        self.publish_with(&publisher_token(), fields).await
    }

    pub async fn publish_with(&self, token: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(&self.url)
            .bearer_auth(token)
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Publishes and returns the id, asserting success.
    pub async fn publish_ok(&self, fields: &[(&str, &str)]) -> String {
        let response = self.publish(fields).await;
        assert_eq!(response.status(), 200, "publish failed");
        response.text().await.unwrap()
    }

    /// A GET on the hub URL with `query` (already encoded, without `?`).
    pub fn get(&self, query: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}?{query}", self.url))
    }

    /// Subscribes with `query` and returns the open stream, asserting a 200.
    pub async fn subscribe(&self, query: &str) -> EventReader {
        self.subscribe_with(self.get(query)).await
    }

    pub async fn subscribe_with(&self, request: reqwest::RequestBuilder) -> EventReader {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "subscribe failed");
        EventReader::new(response)
    }

    /// Stops accepting, ends the streams, waits for the server task.
    pub async fn stop(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One parsed SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub retry: Option<String>,
    pub data: String,
}

/// Reads an SSE response: raw text and parsed events.
pub struct EventReader {
    pub headers: reqwest::header::HeaderMap,
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Everything received so far, verbatim.
    pub raw: String,
    ended: bool,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader {
            headers: response.headers().clone(),
            stream: response.bytes_stream().boxed(),
            buffer: String::new(),
            raw: String::new(),
            ended: false,
        }
    }

    /// Reads more bytes; false when the stream ended.
    async fn fill(&mut self, timeout: Duration) -> Option<bool> {
        match tokio::time::timeout(timeout, self.stream.next()).await {
            Err(_) => None,
            Ok(Some(Ok(chunk))) => {
                let text = std::str::from_utf8(&chunk).expect("UTF-8 stream");
                self.raw.push_str(text);
                self.buffer.push_str(text);
                Some(true)
            }
            Ok(Some(Err(_))) | Ok(None) => {
                self.ended = true;
                Some(false)
            }
        }
    }

    /// The next event (comments skipped), or `None` on timeout or end of stream.
    pub async fn next_event_within(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
            }
            if self.ended {
                return None;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.fill(left).await != Some(true) {
                return None;
            }
        }
    }

    /// The next event, failing the test if none arrives within [`WAIT`].
    pub async fn next_event(&mut self) -> SseEvent {
        self.next_event_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no event within {WAIT:?}; received so far: {:?}", self.raw))
    }

    /// Asserts that no event arrives within `within`.
    pub async fn assert_no_event(&mut self, within: Duration) {
        if let Some(event) = self.next_event_within(within).await {
            panic!("unexpected event {event:?}");
        }
    }

    /// Waits until the raw stream contains `needle`; false on timeout or end.
    pub async fn wait_for_raw(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.raw.contains(needle) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.fill(left).await != Some(true) {
                return self.raw.contains(needle);
            }
        }
        true
    }

    /// Waits for the server to end the stream; true if it did within `timeout`.
    pub async fn wait_for_end(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.ended {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.fill(left).await.is_none() {
                return self.ended;
            }
        }
        true
    }
}

/// Parses one event block; `None` for a block of comments only.
pub fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut data_lines = Vec::new();
    let mut any_field = false;
    for line in block.split('\n').filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any_field = true;
        match name {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "retry" => event.retry = Some(value.to_owned()),
            "data" => data_lines.push(value.to_owned()),
            _ => {}
        }
    }
    event.data = data_lines.join("\n");
    any_field.then_some(event)
}

/// Percent-encodes a query value.
pub fn enc(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Asserts that `response` is a rejection with `status` whose body is a short, non-empty
/// `text/plain` reason [R24], and returns that reason.
pub async fn expect_rejection(response: reqwest::Response, status: u16) -> String {
    let got = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {body:?}");
    assert!(
        content_type.starts_with("text/plain"),
        "a {status} should give its reason as text/plain, got {content_type:?}"
    );
    let reason = body.trim();
    assert!(!reason.is_empty(), "a {status} should say why in its body");
    assert!(reason.len() < 500, "the reason should be short: {reason:?}");
    reason.to_owned()
}

// ---- Helpers added for the subscribe-side tests (subscribe.rs, history.rs, lifecycle.rs). ----

/// A query string subscribing to each of `topics` (`topic=...&topic=...`), percent-encoded.
/// A response's `WWW-Authenticate` header, empty when it has none.
pub fn www_authenticate(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub fn topics_query(topics: &[&str]) -> String {
    topics
        .iter()
        .map(|t| format!("topic={}", enc(t)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The ids of `events`, `""` for an event without one.
pub fn ids_of(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.id.clone().unwrap_or_default())
        .collect()
}

/// Now, in seconds since the Unix epoch (for `exp` claims).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestHub {
    /// Like [`TestHub::start`], on a listener the test prepared (socket options, ...).
    pub async fn start_on(listener: TcpListener, config: HubConfig) -> TestHub {
        let hub = Hub::new(config).await.expect("valid test config");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(herald_hub::serve(listener, hub.clone(), async {
            let _ = stopped.await;
        }));
        let base = format!("http://{addr}");
        TestHub {
            hub,
            url: format!("{base}/.well-known/mercure"),
            base,
            client: reqwest::Client::builder().build().unwrap(),
            stop: Some(stop),
            task: Some(task),
            keep: Vec::new(),
        }
    }

    /// The hub's socket address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.strip_prefix("http://").unwrap().parse().unwrap()
    }

    /// Subscribes to `topics` with a token whose `mercure.subscribe` claim is `rights`.
    pub async fn subscribe_to(&self, topics: &[&str], rights: &[&str]) -> EventReader {
        self.subscribe_with(
            self.get(&topics_query(topics))
                .bearer_auth(subscriber_token(rights)),
        )
        .await
    }

    /// Signals shutdown and waits up to `limit` for the server task; true if it returned
    /// `Ok(())` in time.
    pub async fn stop_within(mut self, limit: Duration) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("server task");
        matches!(tokio::time::timeout(limit, task).await, Ok(Ok(Ok(()))))
    }
}

impl EventReader {
    /// The next `n` events, failing the test if they do not all arrive within [`WAIT`].
    pub async fn next_events(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            events.push(self.next_event().await);
        }
        events
    }

    /// Whether the server ended the stream (as far as read).
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

// Test keys, generated once with openssl for these tests only; the protocol crate's tests use
// the same files.
pub const RSA_PRIVATE: &str = include_str!("../../../protocol/tests/keys/rsa_private.pem");
pub const RSA_PUBLIC: &str = include_str!("../../../protocol/tests/keys/rsa_public.pem");
pub const EC_PRIVATE: &str = include_str!("../../../protocol/tests/keys/ec_private.pem");
pub const EC_PUBLIC: &str = include_str!("../../../protocol/tests/keys/ec_public.pem");
pub const ED_PRIVATE: &str = include_str!("../../../protocol/tests/keys/ed_private.pem");
pub const ED_PUBLIC: &str = include_str!("../../../protocol/tests/keys/ed_public.pem");
