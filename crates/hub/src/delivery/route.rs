//! Routing: which topic templates an update matches, worked out before its turn to dispatch.
//!
//! Matching an update's topics against every distinct template is the one part of a publish
//! whose cost a client can drive up (many topics, many templates), and it needs no ordering.
//! So it is split from dispatch: a [`Matcher`] (a cheap `Clone` handle any thread may hold)
//! makes a [`Route`] on the publisher's side, and the [`Dispatcher`](super::Dispatcher) later
//! delivers with it, matching by itself only the templates that appeared in between. One
//! expensive update then costs its own publisher time, not every other publisher's.

use std::sync::Arc;

use herald_protocol::Update;

use super::registry::Registry;
use crate::selector::Pattern;

/// Routing `topics × templates` checks past this runs on a blocking thread
/// ([`Matcher::route_off_thread`]), so that it never stalls an async worker.
const INLINE_ROUTING_WORK: usize = 4096;

/// The templates an update's topics match, as of one state of the subscriber index.
#[derive(Debug, Clone)]
pub struct Route {
    generation: u64,
    matched: Vec<Arc<Pattern>>,
}

impl Route {
    pub(super) fn new(generation: u64, matched: Vec<Arc<Pattern>>) -> Route {
        Route {
            generation,
            matched,
        }
    }

    pub(super) fn empty(generation: u64) -> Route {
        Route::new(generation, Vec::new())
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn matched(&self) -> &[Arc<Pattern>] {
        &self.matched
    }
}

/// Makes [`Route`]s; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Matcher {
    registry: Registry,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher").finish_non_exhaustive()
    }
}

impl Matcher {
    pub(super) fn new(registry: Registry) -> Matcher {
        Matcher { registry }
    }

    /// Routes `update` on the calling thread, whatever it costs.
    pub fn route(&self, update: &Update) -> Route {
        self.registry.route(&update.topics)
    }

    /// Routes `update` here and now when that is cheap (few topics against few templates);
    /// `None` when it is expensive enough to belong on a blocking thread
    /// ([`Matcher::route_off_thread`]).
    pub fn try_route(&self, update: &Update) -> Option<Route> {
        (self.registry.routing_work(&update.topics) <= INLINE_ROUTING_WORK)
            .then(|| self.route(update))
    }

    /// Routes `update`, on a blocking thread when it is expensive, so that it never stalls an
    /// async worker.
    pub async fn route_off_thread(&self, update: &Update) -> Route {
        if let Some(route) = self.try_route(update) {
            return route;
        }
        let registry = self.registry.clone();
        let topics = update.topics.clone();
        match tokio::task::spawn_blocking(move || registry.route(&topics)).await {
            Ok(route) => route,
            // The blocking pool is gone (the runtime is shutting down): route here.
            Err(_) => self.route(update),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::{Context, Poll, Waker};

    use super::super::outbox::Drained;
    use super::super::registry::{Registration, Subscription};
    use super::super::{Event, Position};
    use super::*;

    fn update(topic: &str) -> Update {
        Update {
            id: format!("id-{topic}"),
            topics: vec![topic.into()],
            data: String::new(),
            private: false,
            event_type: None,
            retry: None,
        }
    }

    fn subscribe(registry: &Registry, selector: &str) -> Registration {
        let selector = registry
            .patterns()
            .intern_all(&[selector], &crate::config::TemplateLimits::default())
            .unwrap()
            .remove(0);
        registry.register(Subscription {
            selectors: vec![selector],
            rights: Vec::new(),
            payload: None,
            version: herald_protocol::ProtocolVersion::Draft07,
        })
    }

    fn received(registration: &Registration) -> usize {
        let mut frames = VecDeque::new();
        let mut cx = Context::from_waker(Waker::noop());
        match registration
            .subscriber()
            .outbox()
            .poll_drain(&mut cx, &mut frames, None)
        {
            Poll::Ready(Drained::Frames { .. }) => frames.len(),
            _ => 0,
        }
    }

    #[test]
    fn a_route_made_earlier_still_reaches_templates_that_appeared_since() {
        let (registry, mut dispatcher) = Registry::new(1 << 20, 100);
        let early = subscribe(&registry, "/books/{id}");
        let other = subscribe(&registry, "/authors/{id}");
        let update = update("/books/1");
        let route = dispatcher.matcher().route(&update);
        // Subscribers that arrive between routing and dispatch, with a new template and with
        // the template of a group that was dropped and made again.
        let late = subscribe(&registry, "/books/{+rest}");
        drop(other);
        let again = subscribe(&registry, "/authors/{id}");
        dispatcher.dispatch_routed(&Event::new(Position(0), update), &route);
        assert_eq!(received(&early), 1);
        assert_eq!(received(&late), 1);
        assert_eq!(received(&again), 0);
    }

    #[test]
    fn a_group_dropped_and_made_again_is_matched_at_dispatch() {
        let (registry, mut dispatcher) = Registry::new(1 << 20, 100);
        let first = subscribe(&registry, "/books/{id}");
        let update = update("/books/1");
        let route = dispatcher.matcher().route(&update);
        drop(first);
        let second = subscribe(&registry, "/books/{id}");
        dispatcher.dispatch_routed(&Event::new(Position(0), update), &route);
        assert_eq!(received(&second), 1, "delivered once, not lost nor doubled");
    }

    #[test]
    fn expensive_routes_are_not_made_inline() {
        let (registry, dispatcher) = Registry::new(1 << 20, 10_000);
        let _subs: Vec<_> = (0..100)
            .map(|i| subscribe(&registry, &format!("/t{i}/{{id}}")))
            .collect();
        let mut wide = update("/t1/x");
        wide.topics = (0..100).map(|i| format!("/t{i}/x")).collect();
        let matcher = dispatcher.matcher();
        assert!(matcher.try_route(&wide).is_none());
        assert!(matcher.try_route(&update("/t1/x")).is_some());
        assert_eq!(matcher.route(&wide).matched().len(), 100);
    }
}
