//! The Redis transport: N hubs share one history and one order through a Redis Stream.
//!
//! Every node publishes into one stream and every node tails it, dispatching what it reads to
//! its own subscribers; so a subscriber on any node receives what is published on any node, and
//! all nodes deliver in the same order, the stream's. Redis 6.2 or later (or Valkey); a single
//! Redis (with replicas and Sentinel in front if wanted), not Redis Cluster: one stream is one
//! key, which lives on one shard anyway.
//!
//! # Keys
//! With `stream` = `herald` (the `--redis-stream` setting):
//! - `herald`: the stream. Entry fields `i` (update id) and `r` (the record of
//!   [`super::record`]). It IS the history: replay reads it with `XRANGE`.
//! - `herald:ids`: a hash, update id -> stream id of its latest occurrence (the index of [R28],
//!   shared by every node, so `Last-Event-ID` works whichever node a client reconnects to). It
//!   is bounded like the stream: trimming deletes an entry's id with the entry.
//! - `herald:first`: a hash, update id -> stream id of its oldest retained occurrence, for 1.0
//!   requests (`IdOccurrence`); `-` once that one was trimmed while newer ones remain.
//! - `herald:live`: a pub/sub channel for events delivered but not kept (subscription events).
//! - `herald:nodes`, `herald:node:{id}`: with `--subscriptions`, each node's active
//!   subscriptions under a lease (see [`presence`]).
//!
//! # Publishing
//! A publish is one `EVALSHA` (see [`scripts`]): `XADD`, `HSET` of the id, trimming of the
//! oldest entries past `--history-size`. It is acknowledged when Redis answered, so an `Ok` means
//! the update is in the stream (and, with `appendfsync always`, on Redis's disk: see
//! docs/operations.md). Publishes share one multiplexed connection: concurrent publishes are
//! written back to back and their replies read in order, so many publishes in flight share round
//! trips; no lock is held per publish. The node does not dispatch its own publishes: it reads
//! them back from the stream like everyone else's, which is what gives all nodes one order.
//!
//! When Redis is unreachable, a publish fails within [`PUBLISH_TIMEOUT`] (503 with the reason);
//! the connection is re-established in the background on the next attempt.
//!
//! # Tailing
//! Each node reads the stream on a dedicated connection with blocking `XREAD` (batches of
//! [`TAIL_BATCH`]), from the end of the stream as it was when the node started. After a Redis
//! failure it reconnects with backoff (0.1 s doubling to 2 s) and resumes after the last id it
//! read: connected subscribers miss nothing the stream still holds. Events are dispatched by one
//! task, the only holder of the dispatching handle, in stream order.
//!
//! # Positions
//! A stream id `ms-seq` becomes the position `ms << 20 | seq`, which orders like the ids as long
//! as `seq < 2^20`: more than a million entries in one millisecond, about a thousand times what
//! one Redis accepts. An entry past that bound (only possible with ids chosen by hand) is
//! skipped with an error in the log. `ms` fits until the year 2527.
//!
//! # Bounds
//! Count: trimmed exactly at each publish (and in the background after `--history-size` is
//! lowered). Age, measured on Redis's clock: a little at each publish and each replay plan
//! (so that a replay never starts past the bound), the rest by every node once a second. With
//! `--history-size 0` nothing is replayed, but the stream still keeps the last
//! [`DELIVERY_BUFFER`] entries so that a node whose tail reconnects finds what it missed.
//!
//! # Replay
//! One script reads, at one instant, the index entry of `Last-Event-ID` and the stream's first
//! and last ids. The last id is the plan's `head` (read after the subscriber registered, as
//! the stream requires). An id that is not in the index, or whose entry is older than the
//! stream's first, replays from the earliest entry. Pages are `XRANGE` with an exclusive start.

mod presence;
mod scripts;
mod tail;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::{LastEventId, Update};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

use super::record;
use super::{
    BoxFuture, Dispatcher, Event, HistoryLimits, IdOccurrence, Position, ReplayPlan, ReplaySource,
    ReplayStart, SubscriptionDirectory, Transport, TransportError,
};
use scripts::Scripts;

/// The default `--redis-stream`: the stream's key, and the prefix of the other keys.
pub const DEFAULT_STREAM: &str = "herald";

/// How long a publish waits for Redis before it is refused with 503.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most entries one `XREAD` returns.
pub const TAIL_BATCH: usize = 1024;
/// Entries kept with `--history-size 0`, for tails that reconnect.
pub const DELIVERY_BUFFER: usize = 1024;

/// Bits of a position that hold the stream id's sequence number.
const SEQ_BITS: u32 = 20;

/// Where the Redis transport connects, and which keys it uses.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS.
    pub url: String,
    /// The stream's key, and the prefix of the other keys ([`DEFAULT_STREAM`]).
    pub stream: String,
}

impl RedisOptions {
    /// Options for the server at `url` (`redis://` or `rediss://`), with the default stream.
    pub fn new(url: impl Into<String>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            stream: DEFAULT_STREAM.into(),
        }
    }

    /// The URL with its user and password (if any) replaced by `***`, for logs and errors;
    /// also when the URL does not parse.
    pub fn redacted_url(&self) -> String {
        if let Some((scheme, rest)) = self.url.split_once("://") {
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            if let Some(at) = authority.rfind('@') {
                return format!("{scheme}://***@{}", &rest[at + 1..]);
            }
        }
        self.url.clone()
    }

    /// Parses the URL, or says what is wrong with it (without repeating a password).
    pub fn client(&self) -> Result<redis::Client, String> {
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(format!(
                "{} is not a Redis URL (redis:// or rediss://)",
                self.redacted_url()
            ));
        }
        redis::Client::open(self.url.as_str())
            .map_err(|e| format!("{} is not a valid Redis URL: {e}", self.redacted_url()))
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.redacted_url())
            .field("stream", &self.stream)
            .finish()
    }
}

/// Why the Redis transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    #[error(
        "invalid setting transport: {0}; write it as redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)"
    )]
    /// The URL cannot be used (the message says why; the password is never shown).
    Url(String),
    /// Redis did not answer at start.
    #[error("cannot reach Redis at {url}: {reason}; start Redis or correct --transport")]
    Unreachable {
        /// The server, without its password.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
}

/// The keys of one deployment.
#[derive(Debug, Clone)]
struct Keys {
    stream: String,
    ids: String,
    first: String,
    live: String,
}

impl Keys {
    fn new(stream: &str) -> Keys {
        Keys {
            stream: stream.to_owned(),
            ids: format!("{stream}:ids"),
            first: format!("{stream}:first"),
            live: format!("{stream}:live"),
        }
    }
}

/// History and order in a Redis Stream. A cheap `Clone` handle; dropping the last one stops the
/// node's tail.
#[derive(Debug, Clone)]
pub struct RedisTransport {
    inner: Arc<Inner>,
}

struct Inner {
    /// The publishing connection: multiplexed, re-established on the next use after a failure.
    publisher: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    limits: HistoryLimits,
    /// The cluster's active subscriptions, when the hub publishes them.
    directory: Option<presence::Directory>,
    /// Stops the background tasks when the transport is dropped.
    stop: CancellationToken,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTransport")
            .field("keys", &self.keys)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisTransport {
    /// Connects to Redis and starts tailing the stream from its current end. Fails (rather than
    /// retrying) when Redis cannot be reached: a node that cannot reach Redis at start is
    /// probably misconfigured. With `subscriptions`, the node also keeps its active
    /// subscriptions in Redis for the whole cluster (see [`presence`]).
    pub async fn connect(
        options: &RedisOptions,
        dispatcher: Dispatcher,
        limits: HistoryLimits,
        subscriptions: bool,
    ) -> Result<RedisTransport, RedisStartError> {
        let client = options.client().map_err(RedisStartError::Url)?;
        if options.url.starts_with("rediss://") {
            // The redis client builds its TLS configuration with the process-wide rustls
            // provider; the workspace compiles ring only, so this is the one it would pick
            // anyway. Installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let unreachable = |reason: String| RedisStartError::Unreachable {
            url: options.redacted_url(),
            reason,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(PUBLISH_TIMEOUT)
            .set_number_of_retries(0);
        let mut publisher = tokio::time::timeout(
            CONNECT_TIMEOUT * 3,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| unreachable("no answer".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let keys = Keys::new(&options.stream);
        let end: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&keys.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut publisher)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let start = end.ids.first().map_or("0-0".to_owned(), |e| e.id.clone());
        let stop = CancellationToken::new();
        tail::spawn(tail::Tail {
            client,
            publisher: publisher.clone(),
            keys: keys.clone(),
            after: start,
            limits,
            dispatcher,
            stop: stop.clone(),
        });
        let directory = subscriptions
            .then(|| presence::Directory::start(publisher.clone(), &keys, stop.clone()));
        Ok(RedisTransport {
            inner: Arc::new(Inner {
                publisher,
                keys,
                scripts: Scripts::new(),
                limits,
                directory,
                stop,
            }),
        })
    }

    /// Entries the stream keeps.
    fn kept(limits: &HistoryLimits) -> usize {
        if limits.max_events == 0 {
            DELIVERY_BUFFER
        } else {
            limits.max_events
        }
    }

    async fn plan(
        inner: Arc<Inner>,
        from: LastEventId,
        occurrence: IdOccurrence,
    ) -> Result<ReplayPlan, TransportError> {
        let wanted = match &from {
            LastEventId::After(id) => id.as_str(),
            LastEventId::Earliest => "",
        };
        let mut conn = inner.publisher.clone();
        let (found, first, last): (String, String, String) = with_timeout(
            inner
                .scripts
                .plan
                .key(&inner.keys.stream)
                .key(&inner.keys.ids)
                .key(&inner.keys.first)
                .arg(wanted)
                .arg(Self::kept(&inner.limits))
                .arg(max_age_ms(&inner.limits))
                .arg(match occurrence {
                    IdOccurrence::Latest => "latest",
                    IdOccurrence::Earliest => "first",
                })
                .invoke_async(&mut conn),
        )
        .await?;
        let head = if last.is_empty() {
            None
        } else {
            Some(position_of(&last).ok_or_else(|| bad_id(&last))?)
        };
        let found = position_of(&found);
        let first = position_of(&first);
        Ok(match (from, found) {
            (LastEventId::After(id), Some(found))
                if inner.limits.max_events > 0 && first.is_some_and(|first| found >= first) =>
            {
                ReplayPlan {
                    start: ReplayStart::After(id),
                    after: Some(found),
                    head,
                }
            }
            _ => ReplayPlan {
                start: ReplayStart::Earliest,
                after: None,
                head,
            },
        })
    }

    async fn page(
        inner: Arc<Inner>,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, TransportError> {
        if inner.limits.max_events == 0 || after.is_some_and(|after| after >= through) {
            return Ok(Vec::new());
        }
        let start = after.map_or("-".to_owned(), |after| format!("({}", stream_id(after)));
        let mut conn = inner.publisher.clone();
        let reply: StreamRangeReply = with_timeout(
            redis::cmd("XRANGE")
                .arg(&inner.keys.stream)
                .arg(start)
                .arg(stream_id(through))
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut conn),
        )
        .await?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|entry| decode_entry(entry).map(Arc::new))
            .collect())
    }
}

/// Bounds a Redis request by [`PUBLISH_TIMEOUT`] and says what went wrong in words a publisher
/// (or an operator reading the debug log) can act on.
async fn with_timeout<T>(
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => Err(
            TransportError::Unavailable(format!("Redis is unreachable ({e})")),
        ),
        Ok(Err(e)) => Err(TransportError::Storage(format!("Redis refused it ({e})"))),
        Err(_) => Err(TransportError::Unavailable(format!(
            "Redis did not answer within {} s",
            PUBLISH_TIMEOUT.as_secs()
        ))),
    }
}

/// The age bound in milliseconds as the scripts take it (0: none).
fn max_age_ms(limits: &HistoryLimits) -> u64 {
    limits
        .max_age
        .map_or(0, |age| (age.as_millis() as u64).max(1))
}

fn bad_id(id: &str) -> TransportError {
    TransportError::Storage(format!("unexpected stream id {id:?}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The position of a stream id `ms-seq`; `None` if it is not one, or past the bound on `seq`.
fn position_of(id: &str) -> Option<Position> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    if seq >= 1 << SEQ_BITS || ms >= 1 << (64 - SEQ_BITS) {
        return None;
    }
    Some(Position(ms << SEQ_BITS | seq))
}

/// The stream id of a position.
fn stream_id(position: Position) -> String {
    format!(
        "{}-{}",
        position.0 >> SEQ_BITS,
        position.0 & ((1 << SEQ_BITS) - 1)
    )
}

/// A stream entry as an event; `None` (logged) for an entry Herald did not write.
fn decode_entry(entry: &redis::streams::StreamId) -> Option<Event> {
    let Some(position) = position_of(&entry.id) else {
        tracing::error!(
            id = entry.id,
            "stream id out of Herald's range; entry skipped"
        );
        return None;
    };
    let record = match entry.map.get("r") {
        Some(redis::Value::BulkString(bytes)) => bytes,
        _ => {
            tracing::warn!(id = entry.id, "stream entry without a record; skipped");
            return None;
        }
    };
    match record::decode(record) {
        Ok((update, _)) => Some(Event::new(position, update)),
        Err(e) => {
            tracing::warn!(id = entry.id, "stream entry skipped: {e}");
            None
        }
    }
}

impl Transport for RedisTransport {
    fn publish(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let record = record::encode(&update, now_ms());
            let mut conn = inner.publisher.clone();
            let _stream_id: String = with_timeout(
                inner
                    .scripts
                    .publish
                    .key(&inner.keys.stream)
                    .key(&inner.keys.ids)
                    .key(&inner.keys.first)
                    .arg(&update.id)
                    .arg(record)
                    .arg(Self::kept(&inner.limits))
                    .arg(max_age_ms(&inner.limits))
                    .arg(u8::from(inner.limits.max_events > 0))
                    .invoke_async(&mut conn),
            )
            .await?;
            Ok(())
        })
    }

    fn publish_live(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let record = record::encode(&update, now_ms());
            let mut conn = inner.publisher.clone();
            let _receivers: usize = with_timeout(
                redis::cmd("PUBLISH")
                    .arg(&inner.keys.live)
                    .arg(record)
                    .query_async(&mut conn),
            )
            .await?;
            Ok(())
        })
    }

    fn replay(
        &self,
        from: &LastEventId,
        occurrence: IdOccurrence,
    ) -> BoxFuture<'static, Result<ReplayPlan, TransportError>> {
        Box::pin(Self::plan(self.inner.clone(), from.clone(), occurrence))
    }

    fn subscription_directory(&self) -> Option<&dyn SubscriptionDirectory> {
        self.inner
            .directory
            .as_ref()
            .map(|directory| directory as &dyn SubscriptionDirectory)
    }

    /// Ready when Redis answers a `PING` on the publishing connection.
    fn check_ready(&self) -> BoxFuture<'static, Result<(), TransportError>> {
        let mut conn = self.inner.publisher.clone();
        Box::pin(async move {
            let _pong: String = with_timeout(redis::cmd("PING").query_async(&mut conn)).await?;
            Ok(())
        })
    }

    /// `XLEN` of the stream (with `--history-size 0`, the entries kept for reconnecting
    /// tails, which are not replayed).
    fn history_len(&self) -> BoxFuture<'static, Result<Option<u64>, TransportError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut conn = inner.publisher.clone();
            let len: u64 = with_timeout(
                redis::cmd("XLEN")
                    .arg(&inner.keys.stream)
                    .query_async(&mut conn),
            )
            .await?;
            Ok(Some(len))
        })
    }
}

impl ReplaySource for RedisTransport {
    fn replay_page(
        &self,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Arc<Event>>, TransportError>> {
        Box::pin(Self::page(self.inner.clone(), after, through, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_like_stream_ids() {
        let ids = [
            "0-0",
            "0-1",
            "1-0",
            "1700000000000-0",
            "1700000000000-1048575",
            "1700000000001-0",
        ];
        let positions: Vec<_> = ids.iter().map(|id| position_of(id).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        for id in ids {
            assert_eq!(stream_id(position_of(id).unwrap()), id);
        }
    }

    #[test]
    fn ids_past_the_bound_are_refused() {
        assert_eq!(position_of("1-1048576"), None);
        assert_eq!(position_of(""), None);
        assert_eq!(position_of("12"), None);
        assert_eq!(position_of("a-b"), None);
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        let options = RedisOptions::new("redis://:s3cret@127.0.0.1:6379/2");
        assert!(!format!("{options:?}").contains("s3cret"));
        assert!(!options.redacted_url().contains("s3cret"));
        assert!(options.client().is_ok());
        assert!(RedisOptions::new("http://x").client().is_err());
        let bad = RedisOptions::new("redis://:s3cret@host:notaport");
        assert!(!bad.client().unwrap_err().contains("s3cret"));
    }
}
