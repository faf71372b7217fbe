//! Subscribing: a `Stream` of events that survives disconnections.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use rand::Rng;

use crate::error::{Redacted, SubscribeError, error_chain, reason_from_body};
use crate::sse::{Event, Parser};

/// What [`Subscriber::on_reconnect`] is told before each reconnection.
#[derive(Debug)]
pub struct Reconnect<'a> {
    /// Consecutive failed attempts so far (0 when a healthy stream simply ended).
    pub failures: u32,
    /// How long the subscriber waits before connecting again.
    pub delay: Duration,
    /// Why the previous connection ended or failed.
    pub error: &'a SubscribeError,
    /// The id the reconnection resumes after (`Last-Event-ID`).
    pub last_event_id: Option<&'a str>,
}

type ReconnectHook = Arc<dyn Fn(&Reconnect<'_>) + Send + Sync>;

/// A subscription to one or more topic selectors of a hub, ready to be opened as a stream of
/// [`Event`]s with [`Subscriber::stream`].
///
/// The stream reconnects by itself when the connection fails or the hub ends it: it waits
/// (the `retry` the hub last sent, or [`Subscriber::reconnect_delay`]; doubled after each
/// consecutive failure, capped by [`Subscriber::max_reconnect_delay`], with up to 20% of
/// random jitter added so that many clients do not reconnect in step) and resumes with the
/// `Last-Event-ID` of the last event it saw, so that the hub replays what was missed. An event
/// is never yielded twice across a reconnection: after reconnecting, an event whose id was
/// already yielded (among the last 10,000) is skipped.
///
/// It ends with an error only when reconnecting cannot help: the hub refused the token or the
/// selectors (401, 403, 400 and other 4xx), the URL is not an event stream, or
/// [`Subscriber::max_retries`] consecutive attempts failed. A `204 No Content` ends it without
/// error, as it stops an `EventSource`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use herald_hub::{Hub, HubConfig, JwtKey};
/// # let key = JwtKey { algorithm: herald_client::token::Algorithm::HS256, key: b"your-hub-secret".to_vec() };
/// # let hub = Hub::new(HubConfig { publisher_key: Some(key), anonymous: true, ..HubConfig::default() }).await?;
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let hub_url = format!("http://{}/.well-known/mercure", listener.local_addr()?);
/// # tokio::spawn(herald_hub::serve(listener, hub, std::future::pending()));
/// # let publisher = herald_client::Publisher::with_key(&hub_url, "your-hub-secret")?;
/// # tokio::spawn(async move { loop {
/// #     let update = herald_client::Publication::new("https://example.com/books/1").data(r#"{"title":"Dune"}"#);
/// #     let _ = publisher.publish(update).await;
/// #     tokio::time::sleep(std::time::Duration::from_millis(50)).await;
/// # } });
/// use futures_util::StreamExt;
/// use herald_client::Subscriber;
/// use serde_json::Value;
///
/// // hub_url: "https://hub.example.com/.well-known/mercure"
/// let mut events = Subscriber::new(&hub_url)
///     .topic("https://example.com/books/{id}")
///     .stream()?;
/// while let Some(event) = events.next().await {
///     let event = event?;
///     let book: Value = event.json()?;
///     println!("{:?}: {}", event.id, book["title"]);
/// #   assert_eq!(book["title"], "Dune");
/// #   break;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct Subscriber {
    hub: String,
    topics: Vec<String>,
    /// Mercure 1.0 matchers: the query parameter name and its value.
    matchers: Vec<(&'static str, String)>,
    token: Option<String>,
    last_event_id: Option<String>,
    http: Option<reqwest::Client>,
    reconnect_delay: Duration,
    max_reconnect_delay: Duration,
    max_retries: Option<u32>,
    idle_timeout: Option<Duration>,
    on_reconnect: Option<ReconnectHook>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("hub", &self.hub)
            .field("topics", &self.topics)
            .field("matchers", &self.matchers)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("last_event_id", &self.last_event_id)
            .field("reconnect_delay", &self.reconnect_delay)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("max_retries", &self.max_retries)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// How many yielded ids a stream remembers to skip duplicates after a reconnection: the hub's
/// default history size, the most a replay from `earliest` can send again.
const SEEN_CAPACITY: usize = 10_000;

/// A connection that ends before this without delivering an event counts as a failure for the
/// backoff, so that a hub closing every stream at once is not hammered.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(5);

impl Subscriber {
    /// A subscription to the hub at `hub` (its full URL, `.../.well-known/mercure`).
    pub fn new(hub: &str) -> Subscriber {
        Subscriber {
            hub: hub.to_owned(),
            topics: Vec::new(),
            matchers: Vec::new(),
            token: None,
            last_event_id: None,
            http: None,
            reconnect_delay: Duration::from_secs(1),
            max_reconnect_delay: Duration::from_secs(30),
            max_retries: None,
            idle_timeout: None,
            on_reconnect: None,
        }
    }

    /// Adds a topic selector: a topic, a URI template such as `https://example.com/books/{id}`,
    /// or `*`.
    pub fn topic(mut self, selector: impl Into<String>) -> Self {
        self.topics.push(selector.into());
        self
    }

    /// Adds a Mercure 1.0 exact matcher (`match=`): the topic, compared byte for byte (`*`:
    /// every topic). A subscription has either 1.0 matchers or draft-07 topic selectors, and a
    /// token of the same edition: a 1.0 access token (`typ: at+jwt`) with 1.0 matchers, a
    /// draft-07 token with topic selectors (a hub refuses the mix).
    pub fn match_exact(mut self, topic: impl Into<String>) -> Self {
        self.matchers.push(("match", topic.into()));
        self
    }

    /// Adds a Mercure 1.0 URL Pattern matcher (`match_urlpattern=`), such as
    /// `https://example.com/books/:id`; a relative pattern resolves against the hub's URL.
    pub fn match_urlpattern(mut self, pattern: impl Into<String>) -> Self {
        self.matchers.push(("match_urlpattern", pattern.into()));
        self
    }

    /// Adds several topic selectors.
    pub fn topics<S: Into<String>>(mut self, selectors: impl IntoIterator<Item = S>) -> Self {
        self.topics.extend(selectors.into_iter().map(Into::into));
        self
    }

    /// Sends this token (`Authorization: Bearer`): needed for private updates, and on hubs
    /// that refuse anonymous subscribers.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Starts after this event id (the hub replays what followed it), or `earliest` for the
    /// whole retained history.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// The HTTP client to use (it must have no overall request timeout: a stream lasts).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The delay before reconnecting when the hub sent no `retry` (default 1 s).
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.reconnect_delay = delay;
        self
    }

    /// The longest delay exponential backoff reaches (default 30 s; a larger `retry` from the
    /// hub still wins).
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// Gives up with [`SubscribeError::GaveUp`] after this many consecutive failed attempts
    /// (default: never).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Reconnects when nothing (not even a heartbeat) arrives for this long (default: never).
    /// Set it above the hub's heartbeat period to detect connections that died silently.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Calls `hook` before each reconnection (to log it, for instance).
    pub fn on_reconnect(mut self, hook: impl Fn(&Reconnect<'_>) + Send + Sync + 'static) -> Self {
        self.on_reconnect = Some(Arc::new(hook));
        self
    }

    /// Opens the subscription now and returns its stream once the hub has accepted it: from
    /// then on, nothing published to the selectors is missed. Transient failures are retried
    /// as the stream retries them (see [`Subscriber::max_retries`]); a refusal is returned.
    pub async fn connect(&self) -> Result<EventStream, SubscribeError> {
        let mut state = self.state()?;
        while let Err(error) = state.connect().await {
            if let Some(error) = state.failed(error) {
                return Err(error);
            }
        }
        Ok(EventStream::new(state))
    }

    /// The stream of events. It connects when first polled: use [`Subscriber::connect`] to be
    /// sure the subscription is open before publishing.
    pub fn stream(&self) -> Result<EventStream, SubscribeError> {
        Ok(EventStream::new(self.state()?))
    }

    fn state(&self) -> Result<State, SubscribeError> {
        if self.topics.is_empty() && self.matchers.is_empty() {
            return Err(SubscribeError::Invalid(
                "subscribe to at least one topic selector".into(),
            ));
        }
        if !self.topics.is_empty() && !self.matchers.is_empty() {
            return Err(SubscribeError::Invalid(
                "a subscription has either draft-07 topic selectors or Mercure 1.0 matchers, \
                 not both (hubs refuse the mix)"
                    .into(),
            ));
        }
        let mut url = crate::parse_hub_url(&self.hub).map_err(SubscribeError::Invalid)?;
        {
            let mut query = url.query_pairs_mut();
            for topic in &self.topics {
                query.append_pair("topic", topic);
            }
            for (name, value) in &self.matchers {
                query.append_pair(name, value);
            }
        }
        let http = match &self.http {
            Some(http) => http.clone(),
            None => crate::http_client_builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| {
                    SubscribeError::Invalid(format!(
                        "cannot build an HTTP client: {}",
                        error_chain(&e)
                    ))
                })?,
        };
        Ok(State {
            config: self.clone(),
            http,
            url,
            body: None,
            parser: Parser::new(),
            last_event_id: self.last_event_id.clone(),
            shared_last_event_id: Arc::new(Mutex::new(self.last_event_id.clone())),
            retry: None,
            failures: 0,
            connections: 0,
            pending_error: None,
            connected_at: Instant::now(),
            delivered: false,
            seen: Seen::default(),
            done: false,
        })
    }
}

/// The events of a subscription; see [`Subscriber`].
pub struct EventStream {
    inner: BoxStream<'static, Result<Event, SubscribeError>>,
    last_event_id: Arc<Mutex<Option<String>>>,
}

impl EventStream {
    fn new(state: State) -> EventStream {
        let last_event_id = state.shared_last_event_id.clone();
        let inner = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed();
        EventStream {
            inner,
            last_event_id,
        }
    }

    /// The id of the last event received: where a new subscription would resume.
    pub fn last_event_id(&self) -> Option<String> {
        self.last_event_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("last_event_id", &self.last_event_id())
            .finish_non_exhaustive()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, SubscribeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Ids already yielded, bounded, oldest forgotten first.
#[derive(Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            if self.order.len() > SEEN_CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.set.remove(&oldest);
            }
        }
    }
}

struct State {
    config: Subscriber,
    http: reqwest::Client,
    url: reqwest::Url,
    body: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    parser: Parser,
    /// Where a reconnection resumes.
    last_event_id: Option<String>,
    shared_last_event_id: Arc<Mutex<Option<String>>>,
    /// The latest `retry` the hub sent.
    retry: Option<Duration>,
    /// Consecutive failed attempts.
    failures: u32,
    /// Connections opened so far.
    connections: u32,
    /// Why the previous connection ended, when a reconnection is due.
    pending_error: Option<SubscribeError>,
    connected_at: Instant,
    /// Whether the current connection yielded an event.
    delivered: bool,
    seen: Seen,
    done: bool,
}

impl State {
    async fn next(&mut self) -> Option<Result<Event, SubscribeError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.parser.next_event() {
                if let Some(id) = &event.id {
                    // The hub replays after Last-Event-ID, so this is a guard, for hubs that
                    // replay from further back (an unknown id, another node...).
                    if self.connections > 1 && self.seen.contains(id) {
                        continue;
                    }
                    self.seen.insert(id);
                }
                self.delivered = true;
                return Some(Ok(event));
            }
            match self.body.as_mut() {
                Some(body) => {
                    let next = match self.config.idle_timeout {
                        Some(limit) => match tokio::time::timeout(limit, body.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                self.disconnected(SubscribeError::Idle(limit));
                                continue;
                            }
                        },
                        None => body.next().await,
                    };
                    match next {
                        Some(Ok(chunk)) => {
                            self.parser.feed(&chunk);
                            self.sync_from_parser();
                        }
                        Some(Err(source)) => self.disconnected(SubscribeError::Network {
                            url: self.config.hub.clone(),
                            source,
                        }),
                        None => self.disconnected(SubscribeError::Closed),
                    }
                }
                None => {
                    if let Err(error) = self.connect().await
                        && let Some(error) = self.failed(error)
                    {
                        self.done = true;
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    /// Takes the last event id and the reconnection time from what the parser has read.
    fn sync_from_parser(&mut self) {
        if let Some(id) = self.parser.last_event_id() {
            let id = (!id.is_empty()).then(|| id.to_owned());
            if id != self.last_event_id {
                self.last_event_id = id.clone();
                *self
                    .shared_last_event_id
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = id;
            }
        }
        if let Some(retry) = self.parser.reconnection_time() {
            self.retry = Some(retry);
        }
    }

    /// The current connection ended: schedule a reconnection.
    fn disconnected(&mut self, error: SubscribeError) {
        self.body = None;
        let healthy = self.delivered || self.connected_at.elapsed() >= HEALTHY_CONNECTION;
        self.failures = if healthy { 0 } else { self.failures + 1 };
        self.pending_error = Some(error);
    }

    /// An attempt failed: `Some(error)` to end the stream with, or `None` to retry.
    fn failed(&mut self, error: SubscribeError) -> Option<SubscribeError> {
        if !error.is_transient() {
            return Some(error);
        }
        self.failures += 1;
        if let Some(max) = self.config.max_retries
            && self.failures > max
        {
            return Some(SubscribeError::GaveUp {
                attempts: self.failures,
                last: Box::new(error),
            });
        }
        self.pending_error = Some(error);
        None
    }

    /// The wait before the next attempt.
    fn delay(&self) -> Duration {
        let base = self.retry.unwrap_or(self.config.reconnect_delay);
        let mut delay = if self.failures <= 1 {
            base
        } else {
            let floor = base.max(Duration::from_millis(100));
            let exponent = (self.failures - 1).min(20);
            floor.saturating_mul(1 << exponent)
        };
        let cap = self.config.max_reconnect_delay.max(base);
        delay = delay.min(cap);
        let jitter = rand::rng().random_range(0.0..0.2);
        delay.mul_f64(1.0 + jitter).min(cap.max(base))
    }

    /// Waits if this is a reconnection, then opens a connection.
    async fn connect(&mut self) -> Result<(), SubscribeError> {
        if let Some(error) = self.pending_error.take() {
            let delay = self.delay();
            if let Some(hook) = &self.config.on_reconnect {
                hook(&Reconnect {
                    failures: self.failures,
                    delay,
                    error: &error,
                    last_event_id: self.last_event_id.as_deref(),
                });
            }
            tokio::time::sleep(delay).await;
        }
        self.connections += 1;
        let mut request = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header(reqwest::header::CACHE_CONTROL, "no-cache");
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = &self.last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request
            .send()
            .await
            .map_err(|source| SubscribeError::Network {
                url: self.config.hub.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if status == 204 {
            self.done = true;
            return Ok(());
        }
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Err(SubscribeError::from_status(status, reason_from_body(&body)));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(SubscribeError::NotEventStream {
                url: self.config.hub.clone(),
                content_type,
            });
        }
        self.body = Some(response.bytes_stream().boxed());
        self.parser = Parser::new();
        self.connected_at = Instant::now();
        self.delivered = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(retry: Option<Duration>, failures: u32) -> State {
        let config = Subscriber::new("http://127.0.0.1:1/.well-known/mercure")
            .reconnect_delay(Duration::from_millis(100))
            .max_reconnect_delay(Duration::from_secs(2));
        State {
            config,
            http: crate::http_client_builder().build().unwrap(),
            url: "http://127.0.0.1:1/".parse().unwrap(),
            body: None,
            parser: Parser::new(),
            last_event_id: None,
            shared_last_event_id: Arc::default(),
            retry,
            failures,
            connections: 0,
            pending_error: None,
            connected_at: Instant::now(),
            delivered: false,
            seen: Seen::default(),
            done: false,
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_upwards() {
        for _ in 0..50 {
            let first = state(None, 0).delay();
            assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(120));
            let third = state(None, 3).delay();
            assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(480));
            assert_eq!(state(None, 30).delay(), Duration::from_secs(2));
        }
    }

    #[test]
    fn the_hubs_retry_replaces_the_base_delay_even_past_the_cap() {
        let retry = Some(Duration::from_millis(700));
        assert!(state(retry, 1).delay() >= Duration::from_millis(700));
        let long = Some(Duration::from_secs(5));
        assert_eq!(state(long, 6).delay(), Duration::from_secs(5));
    }

    #[test]
    fn seen_ids_are_bounded() {
        let mut seen = Seen::default();
        for i in 0..SEEN_CAPACITY + 5 {
            seen.insert(&i.to_string());
        }
        assert!(!seen.contains("0"));
        assert!(seen.contains(&(SEEN_CAPACITY + 4).to_string()));
        assert_eq!(seen.set.len(), SEEN_CAPACITY);
    }
}
