//! Transports: where updates are ordered, kept for replay, and handed to the registry.
//!
//! A transport owns the order of events. `publish` gives the update its [`Position`], stores it
//! in history, and — itself or through a reader task — hands it to
//! [`Registry::dispatch`](crate::Registry::dispatch), always in position order. That one rule is
//! what lets a reconnecting subscriber replay history and then switch to the live stream with
//! nothing lost and nothing twice [R7][R25]: the subscriber registers first (live events queue
//! up), then asks for a replay, whose `head` says up to which position history was read; the
//! stream skips queued live events at or before it.
//!
//! The trait is shaped for three implementations:
//! - [`memory`]: a bounded ring in RAM (tests, ephemeral deployments), today;
//! - an embedded on-disk store (history that survives restarts, group commit);
//! - Redis Streams, where `publish` is an `XADD` and a reader task on every node dispatches what
//!   `XREAD` returns, so that N hubs share one history and one order.
//!
//! Futures are boxed so that the hub can hold any transport as `Arc<dyn Transport>`.

pub mod embedded;
pub mod memory;
mod record;
pub mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{LastEventId, Update};

pub use embedded::{Durability, EmbeddedTransport};
pub use memory::MemoryTransport;
pub use redis::{RedisOptions, RedisStartError, RedisTransport};

/// How much history a transport keeps [R29].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most events kept; the oldest go first. 0 keeps no history at all.
    pub max_events: usize,
    /// Events older than this are dropped; `None` keeps them until `max_events` pushes them out.
    pub max_age: Option<std::time::Duration>,
}

impl Default for HistoryLimits {
    /// 100,000 events and 24 hours: a day of history for a small deployment, with a bound on
    /// disk and memory (about 100 MB at 1 KB per update) that nobody has to think about.
    fn default() -> Self {
        HistoryLimits {
            max_events: 100_000,
            max_age: Some(std::time::Duration::from_secs(24 * 3600)),
        }
    }
}

/// A boxed, sendable future, as the trait's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event's place in the transport's total order. Strictly increasing in dispatch order.
/// (A Redis stream id `ms-seq` maps to it as `ms << 20 | seq`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

/// An update with its position and its SSE frame, encoded once for every subscriber.
#[derive(Debug)]
pub struct Event {
    pub position: Position,
    pub update: Update,
    pub frame: Bytes,
}

impl Event {
    /// Wraps an update, encoding its frame.
    pub fn new(position: Position, update: Update) -> Event {
        let frame = herald_protocol::sse::encode(&update);
        Event {
            position,
            update,
            frame,
        }
    }
}

/// Where a replay started, for the `Last-Event-ID` response header [R27].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStart {
    /// The requested id was found; the replay holds the events after it.
    After(String),
    /// The replay holds the whole retained history: `earliest` was asked, or the requested id is
    /// not (or no longer) in history.
    Earliest,
}

/// What a replay will cover, decided by one id lookup; the events themselves are read page by
/// page with [`Transport::replay_page`] as the subscriber's stream drains, so that replaying a
/// large history never holds it all in memory.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    pub start: ReplayStart,
    /// Replay the events after this position; `None` starts at the oldest retained event.
    pub after: Option<Position>,
    /// The newest position in history when the plan was made: the replay stops there, and live
    /// events at or before it are already covered by the replay. `None`: nothing was ever
    /// published.
    pub head: Option<Position>,
}

/// How many events one replay page holds at most.
pub const REPLAY_PAGE_EVENTS: usize = 1024;

/// A transport failure, reported to the publisher as 503.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the hub is shutting down")]
    Closed,
    #[error("history storage failed: {0}")]
    Storage(String),
}

/// Orders, stores and dispatches updates. See the module documentation.
///
/// Futures are `'static` (implementations clone an inner `Arc`) so that a subscriber's stream
/// can hold a page request while hyper polls it.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Stores `update` and dispatches it. Resolves once the update is stored according to the
    /// transport's durability policy: an `Ok` is an acknowledgement that it will be delivered
    /// and replayed.
    fn publish(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>>;

    /// Plans a replay of the retained events after `from` [R25]-[R28]: an id lookup through the
    /// index, never a scan.
    fn replay(&self, from: &LastEventId) -> BoxFuture<'static, Result<ReplayPlan, TransportError>>;

    /// Up to `limit` retained events with a position after `after` (from the oldest when
    /// `None`) and at most `through`, in position order.
    fn replay_page(
        &self,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Arc<Event>>, TransportError>>;
}
