//! The in-memory transport: a bounded ring of recent events with an id index.
//!
//! For tests and for deployments where history need not survive a restart. Bounded by count and
//! optionally by age [R29]; looking an id up is a hash probe, never a scan [R28].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_protocol::{LastEventId, Update};

use super::{BoxFuture, Event, Position, Replay, ReplayStart, Transport, TransportError};
use crate::Registry;

/// How much history a transport keeps [R29].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most events kept; the oldest go first. 0 keeps no history at all.
    pub max_events: usize,
    /// Events older than this are dropped; `None` keeps them until `max_events` pushes them out.
    pub max_age: Option<Duration>,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_events: 10_000,
            max_age: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

#[derive(Debug)]
pub struct MemoryTransport {
    registry: Registry,
    limits: HistoryLimits,
    // A std Mutex: publish appends and dispatches under it (dispatch only pushes into queues and
    // never awaits), which is what keeps dispatch in position order; replay clones `Arc`s out.
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    events: VecDeque<(Instant, Arc<Event>)>,
    /// Update id -> position of its latest occurrence (duplicates resolve to the newest).
    ids: HashMap<String, Position>,
    next: u64,
}

impl History {
    fn front_position(&self) -> Option<Position> {
        self.events.front().map(|(_, event)| event.position)
    }

    fn head(&self) -> Option<Position> {
        self.events.back().map(|(_, event)| event.position)
    }

    fn trim(&mut self, limits: &HistoryLimits, now: Instant) {
        while let Some((stored_at, _)) = self.events.front() {
            let too_many = self.events.len() > limits.max_events;
            let too_old = limits
                .max_age
                .is_some_and(|age| now.duration_since(*stored_at) > age);
            if !too_many && !too_old {
                break;
            }
            let (_, event) = self.events.pop_front().expect("front exists");
            if self.ids.get(&event.update.id) == Some(&event.position) {
                self.ids.remove(&event.update.id);
            }
        }
    }

    /// The index in `events` of the event after position `after`.
    fn offset_after(&self, after: Position) -> usize {
        match self.front_position() {
            // Positions are contiguous in this ring, so the offset is arithmetic.
            Some(front) => (after.0 + 1).saturating_sub(front.0) as usize,
            None => 0,
        }
    }
}

impl MemoryTransport {
    pub fn new(registry: Registry, limits: HistoryLimits) -> MemoryTransport {
        MemoryTransport {
            registry,
            limits,
            history: Mutex::new(History::default()),
        }
    }

    fn publish_now(&self, update: Update) {
        let now = Instant::now();
        let mut history = self.history.lock().unwrap();
        let position = Position(history.next);
        history.next += 1;
        let event = Arc::new(Event::new(position, update));
        if self.limits.max_events > 0 {
            history.ids.insert(event.update.id.clone(), position);
            history.events.push_back((now, event.clone()));
        }
        history.trim(&self.limits, now);
        self.registry.dispatch(&event);
    }

    fn replay_now(&self, from: &LastEventId) -> Replay {
        let mut history = self.history.lock().unwrap();
        history.trim(&self.limits, Instant::now());
        let (start, offset) = match from {
            LastEventId::After(id) => match history.ids.get(id) {
                Some(&position) => (
                    ReplayStart::After(id.clone()),
                    history.offset_after(position),
                ),
                None => (ReplayStart::Earliest, 0),
            },
            LastEventId::Earliest => (ReplayStart::Earliest, 0),
        };
        Replay {
            start,
            events: history
                .events
                .range(offset..)
                .map(|(_, event)| event.clone())
                .collect(),
            head: history
                .head()
                .or_else(|| history.next.checked_sub(1).map(Position)),
        }
    }
}

impl Transport for MemoryTransport {
    fn publish(&self, update: Update) -> BoxFuture<'_, Result<(), TransportError>> {
        self.publish_now(update);
        Box::pin(std::future::ready(Ok(())))
    }

    fn replay(&self, from: &LastEventId) -> BoxFuture<'_, Result<Replay, TransportError>> {
        let replay = self.replay_now(from);
        Box::pin(std::future::ready(Ok(replay)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str) -> Update {
        Update {
            id: id.into(),
            topics: vec!["t".into()],
            data: String::new(),
            private: false,
            event_type: None,
            retry: None,
        }
    }

    fn ids(replay: &Replay) -> Vec<&str> {
        replay.events.iter().map(|e| e.update.id.as_str()).collect()
    }

    fn transport(max_events: usize) -> MemoryTransport {
        MemoryTransport::new(
            Registry::new(1 << 20),
            HistoryLimits {
                max_events,
                max_age: None,
            },
        )
    }

    #[test]
    fn r25_replays_after_an_id() {
        let t = transport(10);
        for id in ["a", "b", "c"] {
            t.publish_now(update(id));
        }
        let replay = t.replay_now(&LastEventId::After("a".into()));
        assert_eq!(ids(&replay), ["b", "c"]);
        assert_eq!(replay.start, ReplayStart::After("a".into()));
        assert_eq!(replay.head, Some(Position(2)));
    }

    #[test]
    fn r27_unknown_id_replays_everything_from_earliest() {
        let t = transport(10);
        t.publish_now(update("a"));
        let replay = t.replay_now(&LastEventId::After("zzz".into()));
        assert_eq!(ids(&replay), ["a"]);
        assert_eq!(replay.start, ReplayStart::Earliest);
    }

    #[test]
    fn r29_history_is_bounded_and_trimmed_ids_are_forgotten() {
        let t = transport(2);
        for id in ["a", "b", "c"] {
            t.publish_now(update(id));
        }
        assert_eq!(ids(&t.replay_now(&LastEventId::Earliest)), ["b", "c"]);
        assert_eq!(
            t.replay_now(&LastEventId::After("a".into())).start,
            ReplayStart::Earliest
        );
    }

    #[test]
    fn duplicate_ids_resolve_to_the_latest_occurrence() {
        let t = transport(10);
        for id in ["x", "a", "x", "b"] {
            t.publish_now(update(id));
        }
        assert_eq!(ids(&t.replay_now(&LastEventId::After("x".into()))), ["b"]);
    }

    #[test]
    fn no_history_still_reports_the_head() {
        let t = transport(0);
        t.publish_now(update("a"));
        let replay = t.replay_now(&LastEventId::Earliest);
        assert!(replay.events.is_empty());
        assert_eq!(replay.head, Some(Position(0)));
    }
}
