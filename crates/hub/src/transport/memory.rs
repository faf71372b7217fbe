//! The in-memory transport: a bounded ring of recent events with an id index.
//!
//! For tests and for deployments where history need not survive a restart. Bounded by count and
//! optionally by age [R29]; looking an id up is a hash probe, never a scan [R28].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use herald_protocol::{LastEventId, Update};

use super::{
    BoxFuture, Dispatcher, Event, HistoryLimits, IdOccurrence, Matcher, Position, ReplayPlan,
    ReplaySource, ReplayStart, Route, Transport, TransportError,
};

/// History in RAM. A cheap `Clone` handle.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: HistoryLimits,
    /// Routes updates before the lock is taken: template matching is not done under it.
    matcher: Matcher,
    // A std Mutex: publish appends and dispatches under it (dispatch only pushes into queues and
    // never awaits), which is what keeps dispatch in position order; replay clones `Arc`s out.
    history: Mutex<History>,
}

#[derive(Debug)]
struct History {
    /// Lives under the lock: holding the lock is what it takes to dispatch.
    dispatcher: Dispatcher,
    events: VecDeque<(Instant, Arc<Event>)>,
    /// Update id -> its occurrences (see [`IdOccurrence`]).
    ids: HashMap<String, Occurrences>,
    next: u64,
}

/// Where an id's oldest and newest retained occurrences are.
#[derive(Debug, Clone, Copy)]
struct Occurrences {
    /// `None` once the oldest was trimmed while newer ones remain.
    first: Option<Position>,
    latest: Position,
}

impl History {
    fn front_position(&self) -> Option<Position> {
        self.events.front().map(|(_, event)| event.position)
    }

    fn head(&self) -> Option<Position> {
        self.next.checked_sub(1).map(Position)
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
            if let Some(occurrences) = self.ids.get_mut(&event.update.id) {
                if occurrences.latest == event.position {
                    self.ids.remove(&event.update.id);
                } else if occurrences.first == Some(event.position) {
                    occurrences.first = None;
                }
            }
        }
    }

    /// The index in `events` of the first event after `after`.
    fn offset_after(&self, after: Option<Position>) -> usize {
        match (after, self.front_position()) {
            // Positions are contiguous in this ring, so the offset is arithmetic.
            (Some(after), Some(front)) => (after.0 + 1).saturating_sub(front.0) as usize,
            _ => 0,
        }
    }
}

impl MemoryTransport {
    /// A transport keeping `limits` of history, delivering through `dispatcher`.
    pub fn new(dispatcher: Dispatcher, limits: HistoryLimits) -> MemoryTransport {
        MemoryTransport {
            inner: Arc::new(Inner {
                limits,
                matcher: dispatcher.matcher(),
                history: Mutex::new(History {
                    dispatcher,
                    events: VecDeque::new(),
                    ids: HashMap::new(),
                    next: 0,
                }),
            }),
        }
    }

    fn publish_now(&self, update: Update, route: Route) {
        let inner = &self.inner;
        let now = Instant::now();
        let mut history = inner.history.lock().unwrap();
        let position = Position(history.next);
        history.next += 1;
        let event = Arc::new(Event::new(position, update));
        if inner.limits.max_events > 0 {
            history
                .ids
                .entry(event.update.id.clone())
                .and_modify(|occurrences| occurrences.latest = position)
                .or_insert(Occurrences {
                    first: Some(position),
                    latest: position,
                });
            history.events.push_back((now, event.clone()));
        }
        history.trim(&inner.limits, now);
        history.dispatcher.dispatch_routed(&event, &route);
    }

    fn publish_live_now(&self, update: Update) {
        // Under the lock, so that it is ordered with the retained events around it.
        self.inner
            .history
            .lock()
            .unwrap()
            .dispatcher
            .dispatch_live(update);
    }

    fn plan(&self, from: &LastEventId, occurrence: IdOccurrence) -> ReplayPlan {
        let mut history = self.inner.history.lock().unwrap();
        history.trim(&self.inner.limits, Instant::now());
        let (start, after) = match from {
            LastEventId::After(id) => {
                let found = history.ids.get(id).and_then(|o| match occurrence {
                    IdOccurrence::Latest => Some(o.latest),
                    IdOccurrence::Earliest => o.first,
                });
                match found {
                    Some(position) => (ReplayStart::After(id.clone()), Some(position)),
                    None => (ReplayStart::Earliest, None),
                }
            }
            LastEventId::Earliest => (ReplayStart::Earliest, None),
        };
        ReplayPlan {
            start,
            after,
            head: history.head(),
        }
    }

    fn page(&self, after: Option<Position>, through: Position, limit: usize) -> Vec<Arc<Event>> {
        let history = self.inner.history.lock().unwrap();
        let offset = history.offset_after(after);
        history
            .events
            .range(offset.min(history.events.len())..)
            .map(|(_, event)| event)
            .take_while(|event| event.position <= through)
            .take(limit)
            .cloned()
            .collect()
    }
}

impl Transport for MemoryTransport {
    fn publish(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>> {
        // Cheap routes are made here, so that publishes are ordered as they are called.
        if let Some(route) = self.inner.matcher.try_route(&update) {
            self.publish_now(update, route);
            return Box::pin(std::future::ready(Ok(())));
        }
        let this = self.clone();
        Box::pin(async move {
            let route = this.inner.matcher.route_off_thread(&update).await;
            this.publish_now(update, route);
            Ok(())
        })
    }

    fn publish_live(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>> {
        self.publish_live_now(update);
        Box::pin(std::future::ready(Ok(())))
    }

    fn replay(
        &self,
        from: &LastEventId,
        occurrence: IdOccurrence,
    ) -> BoxFuture<'static, Result<ReplayPlan, TransportError>> {
        Box::pin(std::future::ready(Ok(self.plan(from, occurrence))))
    }

    fn history_len(&self) -> BoxFuture<'static, Result<Option<u64>, TransportError>> {
        let mut history = self.inner.history.lock().unwrap();
        history.trim(&self.inner.limits, Instant::now());
        let events = history.events.len() as u64;
        Box::pin(std::future::ready(Ok(Some(events))))
    }
}

impl ReplaySource for MemoryTransport {
    fn replay_page(
        &self,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Arc<Event>>, TransportError>> {
        Box::pin(std::future::ready(Ok(self.page(after, through, limit))))
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

    impl MemoryTransport {
        fn publish_routed(&self, update: Update) {
            let route = self.inner.matcher.route(&update);
            self.publish_now(update, route);
        }
    }

    fn transport(max_events: usize) -> MemoryTransport {
        MemoryTransport::new(
            crate::delivery::registry::Registry::new(1 << 20, 100).1,
            HistoryLimits {
                max_events,
                max_age: None,
            },
        )
    }

    /// The ids a replay from `from` yields, read in pages of two.
    fn replayed(t: &MemoryTransport, from: LastEventId) -> (ReplayStart, Vec<String>) {
        let plan = t.plan(&from, IdOccurrence::Latest);
        let mut ids = Vec::new();
        let mut after = plan.after;
        if let Some(head) = plan.head {
            loop {
                let page = t.page(after, head, 2);
                let Some(last) = page.last() else { break };
                after = Some(last.position);
                ids.extend(page.iter().map(|e| e.update.id.clone()));
            }
        }
        (plan.start, ids)
    }

    #[test]
    fn r25_replays_after_an_id() {
        let t = transport(10);
        for id in ["a", "b", "c", "d"] {
            t.publish_routed(update(id));
        }
        let (start, ids) = replayed(&t, LastEventId::After("a".into()));
        assert_eq!(ids, ["b", "c", "d"]);
        assert_eq!(start, ReplayStart::After("a".into()));
    }

    #[test]
    fn r25_replay_stops_at_the_head_of_the_plan() {
        let t = transport(10);
        t.publish_routed(update("a"));
        let plan = t.plan(&LastEventId::Earliest, IdOccurrence::Latest);
        t.publish_routed(update("b"));
        let page = t.page(plan.after, plan.head.unwrap(), 10);
        assert_eq!(page.len(), 1);
    }

    #[test]
    fn r27_unknown_id_replays_everything_from_earliest() {
        let t = transport(10);
        t.publish_routed(update("a"));
        let (start, ids) = replayed(&t, LastEventId::After("zzz".into()));
        assert_eq!(ids, ["a"]);
        assert_eq!(start, ReplayStart::Earliest);
    }

    #[test]
    fn r29_history_is_bounded_and_trimmed_ids_are_forgotten() {
        let t = transport(2);
        for id in ["a", "b", "c"] {
            t.publish_routed(update(id));
        }
        assert_eq!(replayed(&t, LastEventId::Earliest).1, ["b", "c"]);
        assert_eq!(
            replayed(&t, LastEventId::After("a".into())).0,
            ReplayStart::Earliest
        );
    }

    #[test]
    fn duplicate_ids_resolve_to_the_latest_occurrence() {
        let t = transport(10);
        for id in ["x", "a", "x", "b"] {
            t.publish_routed(update(id));
        }
        assert_eq!(replayed(&t, LastEventId::After("x".into())).1, ["b"]);
    }

    #[test]
    fn no_history_still_reports_the_head() {
        let t = transport(0);
        t.publish_routed(update("a"));
        let plan = t.plan(&LastEventId::Earliest, IdOccurrence::Latest);
        assert_eq!(plan.head, Some(Position(0)));
        assert!(t.page(plan.after, Position(0), 10).is_empty());
    }
}
