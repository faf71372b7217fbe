//! A node's side of the stream: the tail, the live channel, trimming, and THE dispatcher.
//!
//! Two readers feed one dispatch task over a channel:
//! - the tail: blocking `XREAD` on its own connection (so that publishing never waits behind a
//!   read that blocks for seconds), from the last id it read, reconnecting with backoff; it
//!   also routes each event (topic matching), so the dispatch task only pushes into queues;
//! - the live reader: a pub/sub subscription to the live channel (events delivered, not kept).
//!
//! Publishes on this node come back through the tail like everyone else's.
//!
//! The dispatch task is the only holder of the dispatching handle, so dispatch is in stream
//! order and never concurrent, whatever the readers do. The channel is bounded: a dispatch that
//! falls behind slows the tail's reads, not memory.
//!
//! A maintenance task trims the stream by age (and by count, after the bound was lowered) once
//! a second, on the publishing connection.

use std::time::Duration;

use futures_util::StreamExt;
use herald_protocol::Update;
use redis::AsyncConnectionConfig;
use redis::aio::ConnectionManager;
use redis::streams::{StreamRangeReply, StreamReadReply};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::scripts::Scripts;
use super::{CONNECT_TIMEOUT, Keys, RedisTransport, TAIL_BATCH, decode_entry, position_of};
use crate::transport::record;
use crate::transport::{Dispatcher, ErrorCounter, Event, HistoryLimits, Matcher, Route};

/// How long one `XREAD` blocks on an idle stream.
const BLOCK: Duration = Duration::from_secs(5);
/// How often the stream is trimmed by age.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(1);
/// Most entries one maintenance step removes (one script run).
const MAINTENANCE_BUDGET: usize = 256;

/// What the readers hand to the dispatch task.
enum Delivery {
    /// Entries read from the stream, in stream order, routed by the reader.
    Retained(Vec<(Event, Route)>),
    /// An event from the live channel.
    Live(Update),
}

/// Everything the background tasks need.
pub(super) struct Tail {
    pub client: redis::Client,
    /// The publishing connection, shared (it is multiplexed).
    pub publisher: ConnectionManager,
    pub keys: Keys,
    /// The id after which the tail starts reading.
    pub after: String,
    pub limits: HistoryLimits,
    /// The hub's one dispatcher: moved into the dispatch task.
    pub dispatcher: Dispatcher,
    pub stop: CancellationToken,
}

/// Starts the tail, the live reader, the dispatch task and the maintenance task.
pub(super) fn spawn(tail: Tail) {
    let (deliveries, received) = mpsc::channel(64);
    let matcher = tail.dispatcher.matcher();
    let errors = tail.dispatcher.error_counter();
    tokio::spawn(dispatch(tail.dispatcher, received));
    tokio::spawn(read_stream(
        matcher,
        errors,
        tail.client.clone(),
        tail.keys.clone(),
        tail.after,
        deliveries.clone(),
        tail.stop.clone(),
    ));
    tokio::spawn(read_live(
        tail.client.clone(),
        tail.keys.live.clone(),
        deliveries,
        tail.stop.clone(),
    ));
    tokio::spawn(maintain(tail.publisher, tail.keys, tail.limits, tail.stop));
}

async fn dispatch(mut dispatcher: Dispatcher, mut received: mpsc::Receiver<Delivery>) {
    while let Some(delivery) = received.recv().await {
        match delivery {
            Delivery::Retained(events) => {
                let mut dispatch = dispatcher.batch();
                for (event, route) in &events {
                    dispatch.dispatch_routed(event, route);
                }
            }
            Delivery::Live(update) => dispatcher.dispatch_live(update),
        }
    }
}

/// Exponential backoff between reconnection attempts: 0.1 s doubling to 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    fn new() -> Backoff {
        Backoff { next: Self::MIN }
    }

    fn reset(&mut self) {
        self.next = Self::MIN;
    }

    /// Waits before the next attempt; `false` if the transport stopped meanwhile.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Reads the stream after `after`, forever, handing each batch to the dispatch task.
async fn read_stream(
    matcher: Matcher,
    errors: ErrorCounter,
    client: redis::Client,
    keys: Keys,
    mut after: String,
    deliveries: mpsc::Sender<Delivery>,
    stop: CancellationToken,
) {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(BLOCK + CONNECT_TIMEOUT);
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            c = client.get_multiplexed_async_connection_with_config(&config) => c,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                errors.count();
                if !failing {
                    tracing::warn!("Redis unreachable, the tail retries with backoff: {e}");
                    failing = true;
                }
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        if failing {
            tracing::info!("Redis is back: the tail resumes after {after}");
            warn_if_trimmed(&mut conn, &keys.stream, &after).await;
        }
        backoff.reset();
        loop {
            let mut xread = redis::cmd("XREAD");
            xread
                .arg("COUNT")
                .arg(TAIL_BATCH)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&keys.stream)
                .arg(&after);
            let read = xread.query_async::<Option<StreamReadReply>>(&mut conn);
            let reply = tokio::select! {
                () = stop.cancelled() => return,
                reply = read => reply,
            };
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    errors.count();
                    tracing::warn!("Redis tail interrupted, reconnecting: {e}");
                    failing = true;
                    break;
                }
            };
            let entries = reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids);
            let mut batch = Vec::new();
            for entry in entries {
                // Every entry advances the tail, even one that is skipped.
                after.clone_from(&entry.id);
                if let Some(event) = decode_entry(&entry) {
                    // Topic matching happens here, not in the dispatch task.
                    let route = matcher.route_off_thread(&event.update).await;
                    batch.push((event, route));
                }
            }
            if !batch.is_empty() && deliveries.send(Delivery::Retained(batch)).await.is_err() {
                return;
            }
        }
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// After an outage: says so if entries the tail had not read yet were trimmed meanwhile (or
/// Redis lost the stream), since connected subscribers then missed them.
async fn warn_if_trimmed(conn: &mut redis::aio::MultiplexedConnection, stream: &str, after: &str) {
    let first: Result<StreamRangeReply, _> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await;
    let (Ok(first), Some(after)) = (first, position_of(after)) else {
        return;
    };
    if let Some(first) = first.ids.first().and_then(|e| position_of(&e.id))
        && first.0 > after.0 + 1
    {
        tracing::warn!(
            "the stream's oldest entry is {} but the tail had read up to {}: if entries in \
             between were trimmed or lost with Redis, subscribers connected to this node \
             missed them",
            super::stream_id(first),
            super::stream_id(after)
        );
    }
}

/// Subscribes to the live channel, forever, handing each event to the dispatch task. Live
/// events published while this node is cut off from Redis are not delivered here: they are
/// not kept anywhere.
async fn read_live(
    client: redis::Client,
    channel: String,
    deliveries: mpsc::Sender<Delivery>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let subscribed = tokio::select! {
            () = stop.cancelled() => return,
            s = tokio::time::timeout(CONNECT_TIMEOUT, subscribed) => s,
        };
        if let Ok(Ok(pubsub)) = subscribed {
            backoff.reset();
            let mut messages = pubsub.into_on_message();
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    m = messages.next() => m,
                };
                let Some(message) = message else { break };
                match record::decode(message.get_payload_bytes()) {
                    Ok((update, _)) => {
                        if deliveries.send(Delivery::Live(update)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("live event skipped: {e}"),
                }
            }
        }
        if !backoff.wait(&stop).await {
            return;
        }
    }
}

/// Trims the stream by age and count, once a second, for as long as the transport lives.
///
/// It runs on the publishing connection on purpose: that connection is re-established only
/// when a request fails, so this once-a-second request is also what reconnects it soon after
/// Redis comes back, rather than at the expense of the next publish.
async fn maintain(
    mut publisher: ConnectionManager,
    keys: Keys,
    limits: HistoryLimits,
    stop: CancellationToken,
) {
    let scripts = Scripts::new();
    let max_age_ms = limits
        .max_age
        .map_or(0, |age| age.as_millis().max(1) as u64);
    let kept = RedisTransport::kept(&limits);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(MAINTENANCE_PERIOD) => {}
        }
        loop {
            let removed: redis::RedisResult<usize> = scripts
                .maintain
                .key(&keys.stream)
                .key(&keys.ids)
                .key(&keys.first)
                .arg(kept)
                .arg(max_age_ms)
                .arg(MAINTENANCE_BUDGET)
                .invoke_async(&mut publisher)
                .await;
            match removed {
                Ok(removed) if removed == MAINTENANCE_BUDGET => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!("stream trimming failed: {e}");
                    break;
                }
            }
        }
    }
}
