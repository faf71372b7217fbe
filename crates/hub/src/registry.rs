//! The registry: who is subscribed to what, and the dispatch of each update to them.
//!
//! The index is built so that one publish costs O(matching subscribers + distinct patterns), not
//! O(all subscribers) [R4]:
//! - exact topics are hashed, each to the subscribers that named it;
//! - `*` subscribers are one list;
//! - templates are grouped by their text, so that a pattern is checked once per topic (and that
//!   check is usually a cache hit, see [`crate::selector`]) however many subscribers share it.
//!
//! Dispatch pushes a clone of the update's pre-encoded frame into each matching subscriber's
//! [`Outbox`]; it never writes to a socket and never awaits, so it can run under the transport's
//! ordering lock without holding up anything but other dispatches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use indexmap::IndexMap;
use serde_json::Value;

use crate::outbox::{CloseReason, Outbox, Pushed};
use crate::selector::{PatternTable, Selector};
use crate::transport::Event;

/// What one subscriber asked for and what its token lets it see.
#[derive(Debug)]
pub struct Subscription {
    /// The `topic=` selectors: routing [R8].
    pub selectors: Vec<Selector>,
    /// The token's `mercure.subscribe` selectors: authorization for private updates [R20].
    pub rights: Vec<Selector>,
    /// The token's `mercure.payload`.
    pub payload: Option<Value>,
}

impl Subscription {
    /// Whether an update is for this subscriber: routed by a selector and, when private,
    /// authorized by a right [R8][R20]. Used for replay; live dispatch reaches the same verdict
    /// through the index.
    pub fn wants(&self, event: &Event) -> bool {
        let topics = &event.update.topics;
        self.selectors.iter().any(|s| s.matches_any(topics)) && self.may_receive(event)
    }

    fn may_receive(&self, event: &Event) -> bool {
        !event.update.private
            || self
                .rights
                .iter()
                .any(|r| r.matches_any(&event.update.topics))
    }
}

/// One connected subscriber, shared between the index and its stream.
pub struct Subscriber {
    id: u64,
    /// The subscriber's IRI (`urn:uuid:...`), unique per connection [R30].
    iri: String,
    subscription: Subscription,
    outbox: Outbox,
    /// The dispatch sequence number that last reached this subscriber: lets a dispatch skip a
    /// subscriber it already served through another selector or topic in O(1).
    last_dispatch: AtomicU64,
}

impl Subscriber {
    pub fn iri(&self) -> &str {
        &self.iri
    }

    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

type Members = IndexMap<u64, Arc<Subscriber>>;

#[derive(Default)]
struct Index {
    /// Every subscriber: the subscriptions API lists them, shutdown closes them.
    all: Members,
    exact: HashMap<Box<str>, Members>,
    any: Members,
    patterns: HashMap<Box<str>, PatternGroup>,
}

struct PatternGroup {
    pattern: Arc<crate::selector::Pattern>,
    members: Members,
}

/// A cheap `Clone` handle to the hub's subscribers.
#[derive(Clone)]
pub struct Registry {
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
}

impl Registry {
    /// A registry whose subscribers may each have `queue_bytes` of frames waiting, tracking at
    /// most `max_patterns` distinct topic templates.
    pub fn new(queue_bytes: usize, max_patterns: usize) -> Registry {
        Registry {
            shared: Arc::new(Shared {
                index: RwLock::new(Index::default()),
                patterns: PatternTable::new(max_patterns),
                next_id: AtomicU64::new(1),
                dispatch_seq: AtomicU64::new(0),
                subscribers: AtomicU64::new(0),
                last_event_id: Mutex::new(None),
                queue_bytes,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The pattern table, to intern selectors before registering them.
    pub fn patterns(&self) -> &PatternTable {
        &self.shared.patterns
    }

    /// How many subscribers are connected.
    pub fn len(&self) -> usize {
        self.shared.subscribers.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a subscriber. It receives every update dispatched from now on until the returned
    /// guard is dropped.
    pub fn register(&self, subscription: Subscription) -> Registration {
        let subscriber = Arc::new(Subscriber {
            id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
            iri: herald_protocol::generate_id(),
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
                    Selector::Pattern(pattern) => {
                        &mut index
                            .patterns
                            .entry(pattern.source().into())
                            .or_insert_with(|| PatternGroup {
                                pattern: pattern.clone(),
                                members: Members::default(),
                            })
                            .members
                    }
                };
                members.insert(subscriber.id, subscriber.clone());
            }
        }
        self.shared.subscribers.fetch_add(1, Ordering::Relaxed);
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
                    if let Some(group) = index.patterns.get_mut(pattern.source()) {
                        group.members.swap_remove(&subscriber.id);
                        if group.members.is_empty() {
                            index.patterns.remove(pattern.source());
                        }
                    }
                }
            }
        }
        self.shared.subscribers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Queues `event` for every subscriber it is for [R8][R20].
    ///
    /// Callers (the transports) call this in position order and never concurrently: that is
    /// what makes the per-subscriber order the history order, and what makes the
    /// `last_dispatch` de-duplication sound.
    pub fn dispatch(&self, event: &Event) {
        let seq = self.shared.dispatch_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let deliver = |subscriber: &Arc<Subscriber>| {
            if subscriber.last_dispatch.swap(seq, Ordering::Relaxed) == seq {
                return;
            }
            if !subscriber.subscription.may_receive(event) {
                return;
            }
            if subscriber.outbox.push(event.position, event.frame.clone()) == Pushed::Overflowed {
                tracing::debug!(
                    subscriber = subscriber.id,
                    "subscriber queue overflowed; disconnecting it (it resumes from history)"
                );
            }
        };
        let index = self.shared.index.read().unwrap();
        for topic in &event.update.topics {
            if let Some(members) = index.exact.get(topic.as_str()) {
                members.values().for_each(deliver);
            }
            for group in index.patterns.values() {
                if group.pattern.matches(topic) {
                    group.members.values().for_each(deliver);
                }
            }
        }
        index.any.values().for_each(deliver);
        drop(index);
        *self.shared.last_event_id.lock().unwrap() = Some(event.update.id.as_str().into());
    }

    /// The id of the last dispatched update, if any.
    pub fn last_event_id(&self) -> Option<Arc<str>> {
        self.shared.last_event_id.lock().unwrap().clone()
    }

    /// The connected subscribers, in arrival order.
    pub fn subscribers(&self) -> Vec<Arc<Subscriber>> {
        let mut all: Vec<_> = self
            .shared
            .index
            .read()
            .unwrap()
            .all
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Ends every stream, now and for subscribers that arrive later: the hub is shutting down.
    pub fn close_all(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let index = self.shared.index.read().unwrap();
        for subscriber in index.all.values() {
            subscriber.outbox.close(CloseReason::Shutdown);
        }
    }
}

/// Keeps a subscriber registered; dropping it (when the stream ends, for whatever reason)
/// removes the subscriber from the index.
pub struct Registration {
    registry: Registry,
    subscriber: Arc<Subscriber>,
}

impl Registration {
    pub fn subscriber(&self) -> &Arc<Subscriber> {
        &self.subscriber
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(&self.subscriber);
    }
}
