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

pub mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use herald_protocol::{LastEventId, Update};

pub use memory::MemoryTransport;

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

/// The events after a point in history.
#[derive(Debug)]
pub struct Replay {
    pub start: ReplayStart,
    /// Events after the start, in position order.
    pub events: Vec<Arc<Event>>,
    /// The position of the newest event history held when it was read; live events at or
    /// before it are already covered by this replay.
    pub head: Option<Position>,
}

/// A transport failure, reported to the publisher as 503.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the hub is shutting down")]
    Closed,
    #[error("history storage failed: {0}")]
    Storage(String),
}

/// Orders, stores and dispatches updates. See the module documentation.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Stores `update` and dispatches it. Resolves once the update is stored according to the
    /// transport's durability policy: an `Ok` is an acknowledgement that it will be delivered
    /// and replayed.
    fn publish(&self, update: Update) -> BoxFuture<'_, Result<(), TransportError>>;

    /// The retained events after `from`.
    fn replay(&self, from: &LastEventId) -> BoxFuture<'_, Result<Replay, TransportError>>;
}
