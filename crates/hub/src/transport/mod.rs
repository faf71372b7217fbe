//! Transports: where updates are ordered, kept for replay, and handed to delivery.
//!
//! A transport owns the order of events. `publish` gives the update its [`Position`], stores it
//! in history, and (itself, from a writer thread, or from a task tailing a shared log) hands it
//! to the hub's one [`Dispatcher`], always in position order. That one rule is what lets a
//! reconnecting subscriber replay history and then switch to the live stream with nothing lost
//! and nothing twice [R7][R25]: the subscriber registers first (live events queue up), then asks
//! for a replay, whose `head` says up to which position history was read; the stream skips
//! queued live events at or before it.
//!
//! A transport is built with the hub's [`Dispatcher`] (see `HubBuilder::transport`) and owns it;
//! it depends on `crate::delivery` and on nothing of the HTTP side. The ones here:
//! - [`memory`]: a bounded ring in RAM (the library's default: tests, ephemeral deployments);
//! - [`embedded`]: history on local disk in one redb file, written by group commit (the
//!   default of `herald serve`);
//! - [`redis`]: one Redis Stream shared by every node of a cluster, tailed by each node (so
//!   that N hubs deliver the same events in the same order);
//! - an application can supply its own by implementing [`Transport`] (and [`ReplaySource`]).
//!
//! Futures are boxed so that the hub can hold any transport as `Arc<dyn Transport>`.

pub mod embedded;
pub mod memory;
mod record;
pub mod redis;

use herald_protocol::{LastEventId, Update};

pub use crate::delivery::{
    BoxFuture, Dispatcher, ErrorCounter, Event, Frame, Matcher, Position, REPLAY_PAGE_EVENTS,
    ReplaySource, Route, TransportError,
};

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

/// Which occurrence of a duplicated update id a replay resumes after [R28][V4].
///
/// Every transport indexes both: draft-07 requests resume after the newest occurrence (Herald's
/// behaviour before 1.0), Mercure 1.0 requests after the oldest, as draft-08 requires. When the
/// oldest occurrence was trimmed while newer ones remain, the oldest retained one is not known
/// without a scan, so the id counts as unknown for [`IdOccurrence::Earliest`]: the replay starts
/// at the oldest retained event (a superset, never a loss) and says `earliest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdOccurrence {
    /// The newest occurrence (draft-07).
    #[default]
    Latest,
    /// The oldest occurrence (Mercure 1.0).
    Earliest,
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
/// page with [`ReplaySource::replay_page`] (the first page, after a found id, before the
/// response: it holds the anchor, for the `Last-Event-ID` header), then as the subscriber's
/// stream drains, so that replaying a large history never holds it all in memory.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// What the `Last-Event-ID` response header says [R27].
    pub start: ReplayStart,
    /// Replay the events after this position; `None` starts at the oldest retained event.
    pub after: Option<Position>,
    /// The newest position in history when the plan was made: the replay stops there, and live
    /// events at or before it are already covered by the replay. `None`: nothing was ever
    /// published.
    pub head: Option<Position>,
}

/// The active subscriptions of every node of a cluster [R30][R31], for transports that span
/// several nodes (see [`redis`]). A single-node hub has none: its registry is the whole truth.
///
/// The hub reports this node's subscriptions as they start and end; the transport keeps them
/// where every node can read them, and announces the end of the subscriptions of a node that
/// died (`active: false` events, through [`Transport::publish_live`]).
pub trait SubscriptionDirectory: Send + Sync + std::fmt::Debug {
    /// A subscription of this node started: `id` is its IRI
    /// (`/.well-known/mercure/subscriptions/{topic}/{subscriber}`), `document` its JSON-LD.
    /// Returns at once; the write happens in the background, in call order.
    fn started(&self, id: String, document: String);

    /// A subscription of this node ended (its end is announced by the hub).
    fn ended(&self, id: String);

    /// The JSON-LD documents of the subscriptions of every live node.
    fn list(&self) -> BoxFuture<'static, Result<Vec<String>, TransportError>>;
}

/// Orders, stores and dispatches updates. See the module documentation.
///
/// An implementation MUST dispatch through the [`Dispatcher`] it was built with, in position
/// order; it may trust the updates it is given (the HTTP side validated them, and
/// `Hub::publish` is the application's own code).
pub trait Transport: ReplaySource {
    /// Stores `update` and dispatches it. Resolves once the update is stored according to the
    /// transport's durability policy: an `Ok` is an acknowledgement that it will be delivered
    /// and replayed.
    fn publish(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>>;

    /// Delivers `update` to the subscribers connected now (on every node of a cluster), in
    /// order with the other events, without keeping it in history
    /// ([`Dispatcher::dispatch_live`]). The hub uses it for subscription events [R30], so that
    /// subscribers coming and going cannot push published updates out of history.
    fn publish_live(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>>;

    /// Plans a replay of the retained events after `from` [R25]-[R28], resuming after the
    /// `occurrence` of a duplicated id: an id lookup through the index, never a scan. The
    /// events are read with [`ReplaySource::replay_page`].
    fn replay(
        &self,
        from: &LastEventId,
        occurrence: IdOccurrence,
    ) -> BoxFuture<'static, Result<ReplayPlan, TransportError>>;

    /// Where the subscriptions of the whole cluster are kept, for a transport that spans nodes;
    /// `None` (the default) lists this node's own.
    fn subscription_directory(&self) -> Option<&dyn SubscriptionDirectory> {
        None
    }

    /// Stops the transport at the end of a graceful shutdown, after the last publish was
    /// answered: what was acknowledged is made durable and files are closed, so that the next
    /// start opens them without a repair. Publishes after it fail with
    /// [`TransportError::Closed`]. The default does nothing.
    fn close(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// Whether the transport can serve now (`/readyz`): its history is open and its backing
    /// service, if any, answers. The hub bounds the wait by [`crate::READY_TIMEOUT`]. The
    /// default says yes.
    fn check_ready(&self) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }

    /// How many events history holds now, for the metrics (`herald_history_events`); `None`
    /// (the default) when the transport does not say.
    fn history_len(&self) -> BoxFuture<'static, Result<Option<u64>, TransportError>> {
        Box::pin(async { Ok(None) })
    }
}
