//! The registry: who is subscribed to what, and the dispatch of each update to them.
//!
//! The index is built so that one publish costs O(matching subscribers + distinct patterns), not
//! O(all subscribers) [R4]:
//! - exact topics are hashed, each to the subscribers that named it;
//! - `*` subscribers are one list;
//! - templates are grouped by their text, so that a pattern is checked once per topic (and that
//!   check is usually a cache hit, see [`crate::selector`]) however many subscribers share it.
//!
//! Delivering pushes a clone of the update's pre-encoded frame into each matching subscriber's
//! [`Outbox`]; it never writes to a socket and never awaits, so it can run under the transport's
//! ordering lock without holding up anything but other dispatches. Only the hub's one
//! [`Dispatcher`] (made together with the registry by [`Registry::new`]) may deliver.
//!
//! Outboxes whose connection waits on an attached socket (outbox.rs, "Direct writes") are not
//! woken: the pushes that schedule them collect them in a [`Scheduled`] list, which the
//! dispatcher submits after each event or each batch of events ([`super::DispatchBatch`]):
//! shards of [`FLUSH_SHARD`] subscribers, each one task on the runtime that writes to all of
//! them ([`Outbox::flush`]), so that the writes are spread over the runtime's workers, off the
//! ordering path, and a subscriber gets the events of one batch in one write.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::runtime::Handle;

use herald_protocol::ProtocolVersion;
use indexmap::IndexMap;
use serde_json::Value;

use super::outbox::{CloseReason, FlushTally, Outbox, Pushed};
use super::route::Route;
use super::{Dispatcher, Event};
use crate::metrics::Metrics;
use crate::selector::{Pattern, PatternKey, PatternTable, Selector};

/// What one subscriber asked for and what its token lets it see.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// The `topic=` selectors: routing [R8].
    pub(crate) selectors: Vec<Selector>,
    /// The token's `mercure.subscribe` selectors: authorization for private updates [R20].
    pub(crate) rights: Vec<crate::grants::Right>,
    /// The token's `mercure.payload`.
    pub(crate) payload: Option<Value>,
    /// The edition the subscribe request spoke: which format its subscription events take.
    pub(crate) version: ProtocolVersion,
}

impl Subscription {
    /// Whether an update is for this subscriber: routed by a selector and, when private,
    /// authorized by a right [R8][R20]. Used for replay; live dispatch reaches the same verdict
    /// through the index.
    pub(crate) fn wants(&self, event: &Event) -> bool {
        let topics = &event.update.topics;
        self.selectors.iter().any(|s| s.matches_any(topics)) && self.may_receive(event)
    }

    /// Whether the token lets this subscriber read `event`: it is public, or a right covers one
    /// of its topics [R20].
    pub(crate) fn may_receive(&self, event: &Event) -> bool {
        !event.update.private
            || self
                .rights
                .iter()
                .any(|r| r.matches_any(&event.update.topics))
    }
}

/// One connected subscriber, shared between the index and its stream.
pub(crate) struct Subscriber {
    id: u64,
    /// The subscriber's IRI (`urn:uuid:...`), unique per connection [R30]: made when first
    /// asked for (by the subscriptions API or a log line), which most subscribers never are.
    iri: OnceLock<String>,
    subscription: Subscription,
    outbox: Outbox,
    /// The dispatch sequence number that last reached this subscriber: lets a dispatch skip a
    /// subscriber it already served through another selector or topic in O(1).
    last_dispatch: AtomicU64,
}

impl Subscriber {
    pub(crate) fn iri(&self) -> &str {
        self.iri.get_or_init(herald_protocol::generate_id)
    }

    pub(crate) fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// The subscribers of one selector (or all of them), in the order they came. Keyed by the
/// registry's own sequential ids, never by what a client sends: so hashed with
/// foldhash, not the standard library's SipHash, whose resistance to crafted keys is paid on
/// every insert and removal (twice per subscription and selector).
type Members = IndexMap<u64, Arc<Subscriber>, foldhash::fast::RandomState>;

#[derive(Default)]
struct Index {
    /// Every subscriber: the subscriptions API lists them, shutdown closes them.
    all: Members,
    exact: HashMap<Box<str>, Members>,
    any: Members,
    patterns: HashMap<PatternKey, PatternGroup>,
    /// The live pattern groups by the generation they were created in: routing snapshots it,
    /// and delivery matches the groups created after a route was made itself.
    generations: BTreeMap<u64, Arc<Pattern>>,
    /// Counts pattern-group creations.
    generation: u64,
}

struct PatternGroup {
    members: Members,
    generation: u64,
}

impl Index {
    /// The members of `pattern`'s group, creating the group (in a new generation) if needed.
    fn pattern_group(&mut self, pattern: &Arc<Pattern>) -> &mut Members {
        if !self.patterns.contains_key(pattern.key()) {
            self.generation += 1;
            self.generations.insert(self.generation, pattern.clone());
            self.patterns.insert(
                pattern.key().clone(),
                PatternGroup {
                    members: Members::default(),
                    generation: self.generation,
                },
            );
        }
        &mut self
            .patterns
            .get_mut(pattern.key())
            .expect("inserted above")
            .members
    }
}

/// A cheap `Clone` handle to the hub's subscribers.
#[derive(Clone)]
pub(crate) struct Registry {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("subscribers", &self.len())
            .finish_non_exhaustive()
    }
}

struct Shared {
    // A std RwLock: dispatch takes it for reading and never awaits under it; subscribe and
    // unsubscribe take it for writing for a few hash-map operations.
    index: RwLock<Index>,
    patterns: PatternTable,
    next_id: AtomicU64,
    dispatch_seq: AtomicU64,
    subscribers: AtomicU64,
    /// The id of the last dispatched update, for the subscriptions API's `lastEventID` [R31].
    // A std Mutex holding an `Arc<str>`: dispatch swaps a pointer, readers clone it.
    last_event_id: Mutex<Option<Arc<str>>>,
    queue_bytes: usize,
    closed: AtomicBool,
    /// What the hub counts: dispatch adds its deliveries once per event.
    metrics: Arc<Metrics>,
    /// The runtime the flush tasks run on: the one of the first connection that attached a
    /// socket (and only attached outboxes are ever flushed).
    runtime: OnceLock<Handle>,
}

/// How many scheduled subscribers one flush task writes to.
const FLUSH_SHARD: usize = 256;

/// Subscribers whose outbox a dispatch scheduled: they wait for [`Registry::submit`].
#[derive(Default)]
pub(crate) struct Scheduled(Vec<Arc<Subscriber>>);

impl Registry {
    /// A registry whose subscribers may each have `queue_bytes` of frames waiting, tracking at
    /// most `max_patterns` distinct topic templates, and the one [`Dispatcher`] that delivers to
    /// it.
    pub(crate) fn new(queue_bytes: usize, max_patterns: usize) -> (Registry, Dispatcher) {
        let registry = Registry {
            shared: Arc::new(Shared {
                index: RwLock::new(Index::default()),
                patterns: PatternTable::new(max_patterns),
                next_id: AtomicU64::new(1),
                dispatch_seq: AtomicU64::new(0),
                subscribers: AtomicU64::new(0),
                last_event_id: Mutex::new(None),
                queue_bytes,
                closed: AtomicBool::new(false),
                metrics: Arc::new(Metrics::new()),
                runtime: OnceLock::new(),
            }),
        };
        (registry.clone(), Dispatcher::new(registry))
    }

    /// The pattern table, to intern selectors before registering them.
    pub(crate) fn patterns(&self) -> &PatternTable {
        &self.shared.patterns
    }

    /// The hub's counters.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Whether the hub is shutting down ([`Registry::close_all`] was called).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// How many subscribers are connected.
    pub(crate) fn len(&self) -> usize {
        self.shared.subscribers.load(Ordering::Relaxed) as usize
    }

    /// Adds a subscriber. It receives every update dispatched from now on until the returned
    /// guard is dropped.
    pub(crate) fn register(&self, subscription: Subscription) -> Registration {
        let subscriber = Arc::new(Subscriber {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            iri: OnceLock::new(),
            subscription,
            outbox: Outbox::new(self.shared.queue_bytes),
            last_dispatch: AtomicU64::new(0),
        });
        {
            let mut index = self.shared.index.write().unwrap();
            index.all.insert(subscriber.id, subscriber.clone());
            for selector in &subscriber.subscription.selectors {
                let members = match selector {
                    Selector::Any => &mut index.any,
                    Selector::Exact(topic) => index.exact.entry(topic.clone()).or_default(),
                    Selector::Pattern(pattern) => index.pattern_group(pattern),
                };
                members.insert(subscriber.id, subscriber.clone());
            }
        }
        self.shared.subscribers.fetch_add(1, Ordering::Relaxed);
        Metrics::inc(&self.shared.metrics.subscribers_total);
        // A subscriber that arrives while the hub shuts down is closed straight away.
        if self.shared.closed.load(Ordering::Acquire) {
            subscriber.outbox.close(CloseReason::Shutdown);
        }
        Registration {
            registry: self.clone(),
            subscriber,
        }
    }

    fn unregister(&self, subscriber: &Subscriber) {
        let mut index = self.shared.index.write().unwrap();
        index.all.swap_remove(&subscriber.id);
        for selector in &subscriber.subscription.selectors {
            match selector {
                Selector::Any => {
                    index.any.swap_remove(&subscriber.id);
                }
                Selector::Exact(topic) => {
                    if let Some(members) = index.exact.get_mut(topic) {
                        members.swap_remove(&subscriber.id);
                        if members.is_empty() {
                            index.exact.remove(topic);
                        }
                    }
                }
                Selector::Pattern(pattern) => {
                    if let Some(group) = index.patterns.get_mut(pattern.key()) {
                        group.members.swap_remove(&subscriber.id);
                        if group.members.is_empty() {
                            let generation = group.generation;
                            index.patterns.remove(pattern.key());
                            index.generations.remove(&generation);
                        }
                    }
                }
            }
        }
        self.shared.subscribers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Which pattern groups match any of `topics`, with the generation the answer holds for.
    ///
    /// This is the expensive part of a publish (one template match per distinct pattern and
    /// topic), and it needs no ordering: transports run it on the publisher's side, in
    /// parallel, so that one update with many topics never holds up the others' dispatch. The
    /// index is only read-locked to snapshot the patterns, never while matching.
    pub(super) fn route(&self, topics: &[String]) -> Route {
        let (generation, patterns) = {
            let index = self.shared.index.read().unwrap();
            if index.generations.is_empty() {
                return Route::empty(index.generation);
            }
            let patterns: Vec<Arc<Pattern>> = index.generations.values().cloned().collect();
            (index.generation, patterns)
        };
        let matched = patterns
            .into_iter()
            .filter(|pattern| topics.iter().any(|topic| pattern.matches(topic)))
            .collect();
        Route::new(generation, matched)
    }

    /// How many template checks routing `topics` would take now: transports route updates
    /// above a threshold on a blocking thread.
    pub(super) fn routing_work(&self, topics: &[String]) -> usize {
        let patterns = self.shared.index.read().unwrap().generations.len();
        patterns.saturating_mul(topics.len())
    }

    /// Queues `event` for every subscriber it is for [R8][R20], using `route` (made by
    /// [`Registry::route`] for this event's topics, at any time before) for the pattern groups
    /// that existed when it was made, and matching the ones created since here. A `retained`
    /// event also becomes the API's `lastEventID` [R31].
    ///
    /// Only the [`Dispatcher`] calls this, one event at a time in position order: that is what
    /// makes the per-subscriber order the history order, and what makes the `last_dispatch`
    /// de-duplication sound.
    pub(super) fn deliver(
        &self,
        event: &Event,
        route: &Route,
        retained: bool,
        scheduled: &mut Scheduled,
    ) {
        let seq = self.shared.dispatch_seq.fetch_add(1, Ordering::Relaxed) + 1;
        // Once per event, not per subscriber: the instant the delivery latency counts from,
        // and the deliveries, added to the shared counter once at the end.
        let dispatched = Instant::now();
        let mut queued = 0u64;
        let mut deliver = |subscriber: &Arc<Subscriber>| {
            if subscriber.last_dispatch.swap(seq, Ordering::Relaxed) == seq {
                return;
            }
            if !subscriber.subscription.may_receive(event) {
                return;
            }
            match subscriber
                .outbox
                .push(event.position, event.encoded(), dispatched)
            {
                Pushed::Queued => queued += 1,
                Pushed::Scheduled => {
                    queued += 1;
                    scheduled.0.push(Arc::clone(subscriber));
                }
                Pushed::Overflowed => {
                    // Counted now: its connection may not notice until its client reads.
                    self.shared
                        .metrics
                        .disconnected(crate::metrics::DisconnectReason::SlowReader);
                    tracing::debug!(
                        subscriber = subscriber.iri(),
                        "subscriber queue overflowed; disconnecting it (it resumes from history)"
                    );
                }
                Pushed::Closed => {}
            }
        };
        let topics = &event.update.topics;
        let index = self.shared.index.read().unwrap();
        for topic in topics {
            if let Some(members) = index.exact.get(topic.as_str()) {
                members.values().for_each(&mut deliver);
            }
        }
        for pattern in route.matched() {
            if let Some(group) = index.patterns.get(pattern.key())
                && group.generation <= route.generation()
            {
                group.members.values().for_each(&mut deliver);
            }
        }
        // Groups created after the route was made (a subscriber that arrived meanwhile).
        for (_, pattern) in index.generations.range(route.generation() + 1..) {
            if topics.iter().any(|topic| pattern.matches(topic))
                && let Some(group) = index.patterns.get(pattern.key())
            {
                group.members.values().for_each(&mut deliver);
            }
        }
        index.any.values().for_each(&mut deliver);
        drop(index);
        let metrics = &self.shared.metrics;
        metrics.deliveries.fetch_add(queued, Ordering::Relaxed);
        if retained {
            Metrics::inc(&metrics.updates_dispatched);
            *self.shared.last_event_id.lock().unwrap() = Some(event.update.id.as_str().into());
        }
    }

    /// Hands the scheduled subscribers to flush tasks, [`FLUSH_SHARD`] per task.
    pub(super) fn submit(&self, scheduled: &mut Scheduled) {
        while !scheduled.0.is_empty() {
            let rest = scheduled.0.len().saturating_sub(FLUSH_SHARD);
            let shard = scheduled.0.split_off(rest);
            let metrics = Arc::clone(&self.shared.metrics);
            let flush = move || {
                let mut tally = FlushTally::new();
                for subscriber in &shard {
                    subscriber.outbox.flush(&mut tally);
                }
                tally.record(&metrics);
            };
            match self.shared.runtime.get() {
                Some(runtime) => drop(runtime.spawn(async move { flush() })),
                // Unreachable (only attached outboxes are scheduled), but never leave one
                // waiting.
                None => flush(),
            }
        }
    }

    /// The id of the last dispatched update, if any.
    pub(crate) fn last_event_id(&self) -> Option<Arc<str>> {
        self.shared.last_event_id.lock().unwrap().clone()
    }

    /// Ends every stream, now and for subscribers that arrive later: the hub is shutting down.
    pub(crate) fn close_all(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let index = self.shared.index.read().unwrap();
        for subscriber in index.all.values() {
            subscriber.outbox.close(CloseReason::Shutdown);
        }
    }
}

/// Keeps a subscriber registered; dropping it (when the stream ends, for whatever reason)
/// removes the subscriber from the index.
pub(crate) struct Registration {
    registry: Registry,
    subscriber: Arc<Subscriber>,
}

impl Registration {
    pub(crate) fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }

    /// What the subscriber's connection attaches its socket to.
    pub(crate) fn direct_target(&self) -> DirectTarget {
        DirectTarget {
            registry: self.registry.clone(),
            subscriber: Arc::clone(&self.subscriber),
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        self.registry.metrics()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(&self.subscriber);
    }
}

/// A subscriber's outbox, for its connection to attach its socket to (outbox.rs, "Direct
/// writes"): the subscribe route puts one in the extensions of a stream's response, and a
/// connection that can be written to from the dispatching side takes it out.
#[derive(Clone)]
pub(crate) struct DirectTarget {
    registry: Registry,
    subscriber: Arc<Subscriber>,
}

impl DirectTarget {
    /// From now on the stream frames its chunks itself (`chunked`: as HTTP/1.1 chunks), and the
    /// flusher writes to `socket` whenever the stream waits. Call it on the runtime that serves
    /// the connection, before the stream is first polled.
    pub(crate) fn attach(self, socket: Arc<TcpStream>, chunked: bool) {
        self.registry.shared.runtime.get_or_init(Handle::current);
        self.subscriber.outbox.attach(socket, chunked);
    }
}
