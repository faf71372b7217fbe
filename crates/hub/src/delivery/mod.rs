//! Delivery: from an ordered event to the bytes on each subscriber's connection.
//!
//! This module is the hub's side of the line between *ordering* and *delivering*. A transport
//! (crate::transport, or one an embedding application supplies) decides the order of events
//! and keeps history; delivery takes events in that order and gets each one to every
//! subscriber it is for. The imports go one way only: transports use what this module defines
//! ([`Event`], [`Position`], [`Dispatcher`], [`ReplaySource`]) and nothing here knows about
//! transports, HTTP, authorization or the `Hub` handle.
//!
//! - [`Dispatcher`] (this file) is the only way to deliver: there is exactly one per hub, it is
//!   not `Clone`, and `dispatch` takes `&mut self`, so "one dispatcher, never concurrently, in
//!   position order" is a fact of the types rather than a comment. The transport that owns it
//!   calls it from its ordering point (under its history lock, from its writer thread, from
//!   its stream-tailing task).
//! - `registry` holds who is subscribed to what (a selector index) and pushes each event's
//!   pre-encoded frame into the matching subscribers' `outbox`es. Matching topics against
//!   templates, the costly part, can be done ahead, off the ordering path: a [`Matcher`] makes
//!   a [`Route`] on the publisher's side, and [`Dispatcher::dispatch_routed`] uses it.
//! - `outbox` is one subscriber's byte-bounded queue; `stream` is its response body, which
//!   writes the opening comment, then history read through a [`ReplaySource`], then the live
//!   frames queued meanwhile (skipping those the replay covered, by position).

pub(crate) mod outbox;
pub(crate) mod registry;
mod route;
pub(crate) mod stream;

pub use route::{Matcher, Route};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use herald_protocol::Update;

use registry::Registry;

/// A boxed, sendable future, as the transport traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event's place in the transport's total order. Strictly increasing in dispatch order.
///
/// Transports choose the numbering: the memory and embedded ones count from 0; a Redis stream
/// id `ms-seq` maps to `ms << 20 | seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

impl Position {
    /// The position of events that are not kept in history (see [`Dispatcher::dispatch_live`]):
    /// after everything, so that a stream never mistakes one for a replayed duplicate.
    pub(crate) const LIVE: Position = Position(u64::MAX);
}

/// An update's SSE frame, encoded once and shared by every subscriber and every replay.
///
/// The only way to make one is [`Frame::encode`], so that every transport and every replay
/// page writes the same bytes for the same update.
///
/// The event is encoded once, inside an HTTP/1.1 chunk: a connection that frames its body
/// as chunks itself (direct writes, outbox.rs) writes the chunk (`Frame::chunk`, crate-private)
/// as it is, every other writer [`Frame::bytes`]; both are views of one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    sse: Bytes,
    chunk: Bytes,
}

/// Room for the longest chunk-size line (16 hex digits and CRLF) before the event.
const CHUNK_PREFIX: usize = 18;

impl Frame {
    /// Encodes `update` as one SSE event [R6].
    pub fn encode(update: &Update) -> Frame {
        let mut buffer =
            BytesMut::with_capacity(CHUNK_PREFIX + update.data.len() + update.id.len() + 34);
        buffer.resize(CHUNK_PREFIX, 0);
        herald_protocol::sse::encode_into(update, &mut buffer);
        Frame::enclose(buffer)
    }

    /// A frame of these bytes, for unit tests of what carries frames.
    #[cfg(test)]
    pub(crate) fn of(sse: &[u8]) -> Frame {
        let mut buffer = BytesMut::with_capacity(CHUNK_PREFIX + sse.len() + 2);
        buffer.resize(CHUNK_PREFIX, 0);
        buffer.extend_from_slice(sse);
        Frame::enclose(buffer)
    }

    /// The frame whose event follows [`CHUNK_PREFIX`] bytes of room in `buffer`.
    fn enclose(mut buffer: BytesMut) -> Frame {
        let len = buffer.len() - CHUNK_PREFIX;
        buffer.extend_from_slice(b"\r\n");
        let mut size = [0u8; 18];
        let size = outbox::chunk_size_line(len, &mut size);
        let start = CHUNK_PREFIX - size.len();
        buffer[start..CHUNK_PREFIX].copy_from_slice(size);
        let buffer = buffer.freeze();
        Frame {
            sse: buffer.slice(CHUNK_PREFIX..CHUNK_PREFIX + len),
            chunk: buffer.slice(start..),
        }
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.sse
    }

    /// The encoded bytes as one HTTP/1.1 chunk (size line, event, CRLF).
    pub(crate) fn chunk(&self) -> &Bytes {
        &self.chunk
    }
}

/// An update with its position and its SSE frame.
#[derive(Debug)]
pub struct Event {
    /// Where the transport put it in its order.
    pub position: Position,
    /// The update as published.
    pub update: Update,
    frame: Frame,
}

impl Event {
    /// Wraps an update, encoding its frame.
    pub fn new(position: Position, update: Update) -> Event {
        let frame = Frame::encode(&update);
        Event::with_frame(position, update, frame)
    }

    /// Wraps an update whose frame was encoded earlier (off the ordering path, say).
    pub fn with_frame(position: Position, update: Update, frame: Frame) -> Event {
        Event {
            position,
            update,
            frame,
        }
    }

    /// The encoded SSE frame.
    pub fn frame(&self) -> &Bytes {
        self.frame.bytes()
    }

    /// The encoded SSE frame and its HTTP/1.1 chunk.
    pub(crate) fn encoded(&self) -> &Frame {
        &self.frame
    }
}

/// A transport failure: a publish refused (503) or a replay that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The transport was shut down.
    #[error("the hub is shutting down")]
    Closed,
    /// History storage (a file, a server) failed; the message says how.
    #[error("history storage failed: {0}")]
    Storage(String),
    /// The transport's backing service cannot be reached right now.
    #[error("the transport is unavailable: {0}")]
    Unavailable(String),
}

/// Where a subscriber's stream reads history from, page by page, as its client drains it.
///
/// Futures are `'static` (implementations clone an inner `Arc`) so that a stream can hold a
/// page request while the connection polls it.
pub trait ReplaySource: Send + Sync + fmt::Debug + 'static {
    /// Up to `limit` retained events with a position after `after` (from the oldest when
    /// `None`) and at most `through`, in position order [R25].
    fn replay_page(
        &self,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Arc<Event>>, TransportError>>;
}

/// How many events one replay page holds at most.
pub const REPLAY_PAGE_EVENTS: usize = 1024;

/// The one way to deliver events to this hub's subscribers.
///
/// A hub makes exactly one and hands it to its transport (see `HubBuilder::transport`). Every
/// guarantee a subscriber relies on (its events in history order, a replay followed by live
/// events with nothing lost and nothing twice [R25]) rests on dispatch happening at one place,
/// one event at a time, in strictly increasing position order; `&mut self` and the absence of
/// `Clone` make the first two a matter of types, and `dispatch` checks the third.
pub struct Dispatcher {
    registry: Registry,
    last: Option<Position>,
    /// Subscribers to write to once the current event or batch is dispatched.
    scheduled: registry::Scheduled,
    /// Events dispatched since the scheduled ones were last submitted.
    unsubmitted: usize,
}

/// A batch's scheduled writes are submitted at least every this many events, so that a long
/// batch neither holds back its first events nor piles up a subscriber's queue.
const SUBMIT_EVERY: usize = 64;

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub(crate) fn new(registry: Registry) -> Dispatcher {
        Dispatcher {
            registry,
            last: None,
            scheduled: registry::Scheduled::default(),
            unsubmitted: 0,
        }
    }

    /// Queues a retained event for every subscriber it is for [R8][R20].
    ///
    /// Positions must strictly increase from one call to the next; an event at or before the
    /// last one is a transport bug, and is dropped (with an error in the log) rather than
    /// delivered out of order.
    pub fn dispatch(&mut self, event: &Event) {
        self.batch().dispatch(event);
    }

    /// Like [`Dispatcher::dispatch`], with a route made earlier (by [`Dispatcher::matcher`]'s
    /// [`Matcher`], for this event's topics), so that the matching work was done off the
    /// ordering path. Templates that appeared since the route was made are matched here.
    pub fn dispatch_routed(&mut self, event: &Event, route: &Route) {
        self.batch().dispatch_routed(event, route);
    }

    /// Queues an update that is not kept in history (subscription events [R30]) for the
    /// subscribers connected now. It is never replayed, and never skipped as a replay
    /// duplicate.
    pub fn dispatch_live(&mut self, update: Update) {
        self.batch().dispatch_live(update);
    }

    /// Dispatches several events as one batch: a subscriber that several of them are for
    /// gets them in one write. The writes start when the batch is dropped (and every few
    /// dozen events of a long batch), so drop it as soon as its events are dispatched.
    pub fn batch(&mut self) -> DispatchBatch<'_> {
        DispatchBatch { dispatcher: self }
    }

    /// A handle that routes updates ahead of dispatch, from any thread.
    pub fn matcher(&self) -> Matcher {
        Matcher::new(self.registry.clone())
    }

    /// The position of the last retained event dispatched, if any.
    pub fn last_position(&self) -> Option<Position> {
        self.last
    }

    /// A handle that counts the transport's failures that no request sees (a lost connection
    /// to its backing service, say) in the hub's metrics, from any task or thread.
    pub fn error_counter(&self) -> ErrorCounter {
        ErrorCounter(self.registry.clone())
    }

    fn submit(&mut self) {
        self.unsubmitted = 0;
        self.registry.submit(&mut self.scheduled);
    }
}

/// Events dispatched together; see [`Dispatcher::batch`].
pub struct DispatchBatch<'a> {
    dispatcher: &'a mut Dispatcher,
}

impl fmt::Debug for DispatchBatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchBatch").finish_non_exhaustive()
    }
}

impl DispatchBatch<'_> {
    /// [`Dispatcher::dispatch`], in this batch.
    pub fn dispatch(&mut self, event: &Event) {
        let route = self.dispatcher.registry.route(&event.update.topics);
        self.dispatch_routed(event, &route);
    }

    /// [`Dispatcher::dispatch_routed`], in this batch.
    pub fn dispatch_routed(&mut self, event: &Event, route: &Route) {
        let dispatcher = &mut *self.dispatcher;
        if let Some(last) = dispatcher.last
            && event.position <= last
        {
            debug_assert!(false, "dispatch out of order: {event:?} after {last:?}");
            tracing::error!(
                position = event.position.0,
                last = last.0,
                "transport dispatched out of order; event dropped"
            );
            return;
        }
        dispatcher.last = Some(event.position);
        let Dispatcher {
            registry,
            scheduled,
            ..
        } = dispatcher;
        registry.deliver(event, route, true, scheduled);
        self.dispatched();
    }

    /// [`Dispatcher::dispatch_live`], in this batch.
    pub fn dispatch_live(&mut self, update: Update) {
        let event = Event::new(Position::LIVE, update);
        let Dispatcher {
            registry,
            scheduled,
            ..
        } = &mut *self.dispatcher;
        let route = registry.route(&event.update.topics);
        registry.deliver(&event, &route, false, scheduled);
        self.dispatched();
    }

    fn dispatched(&mut self) {
        self.dispatcher.unsubmitted += 1;
        if self.dispatcher.unsubmitted >= SUBMIT_EVERY {
            self.dispatcher.submit();
        }
    }
}

impl Drop for DispatchBatch<'_> {
    fn drop(&mut self) {
        self.dispatcher.submit();
    }
}

/// Counts transport failures in `herald_transport_errors_total`; see
/// [`Dispatcher::error_counter`].
#[derive(Clone)]
pub struct ErrorCounter(Registry);

impl fmt::Debug for ErrorCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorCounter").finish_non_exhaustive()
    }
}

impl ErrorCounter {
    /// Counts one failure.
    pub fn count(&self) {
        crate::metrics::Metrics::inc(&self.0.metrics().transport_errors);
    }
}
