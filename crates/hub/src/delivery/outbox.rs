//! A subscriber's queue of frames waiting to be written: bounded in bytes, drained whole.
//!
//! [`Dispatcher::dispatch`](super::Dispatcher::dispatch) pushes a cheap `Bytes` clone of the
//! update's frame into each matching subscriber's outbox; the subscriber's stream takes
//! *everything* queued at once and writes it as one chunk, so a burst of updates costs one
//! syscall per subscriber, not one per update.
//!
//! The bound is in bytes, not in updates, because that is what costs memory: a thousand tiny
//! updates are fine, ten one-megabyte ones are not. A push that would pass the bound closes the
//! outbox instead: the subscriber is disconnected, reconnects with its `Last-Event-ID` and
//! replays what it missed from history, so a slow reader loses nothing and cannot make the hub
//! hold an unbounded backlog for it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::Position;

/// Why an outbox stopped accepting frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The subscriber did not read fast enough and its queue passed the byte bound.
    Overflow,
    /// The hub is shutting down.
    Shutdown,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// This push overflowed the queue; the outbox is now closed.
    Overflowed,
    /// The outbox was already closed; the frame was dropped.
    Closed,
}

/// What the stream gets when it drains.
pub(crate) enum Drained {
    /// The queued frames were moved into the caller's buffer; the oldest was dispatched at
    /// this instant (the delivery latency counts from it).
    Frames(Instant),
    Closed(CloseReason),
}

pub(crate) struct Outbox {
    // A std Mutex, not tokio's: the critical sections are a few pointer moves and never span an
    // await, so blocking is shorter than any async lock's bookkeeping.
    state: Mutex<State>,
    capacity: usize,
}

struct State {
    frames: VecDeque<(Position, Bytes)>,
    bytes: usize,
    /// When the oldest frame queued was dispatched.
    oldest: Option<Instant>,
    closed: Option<CloseReason>,
    /// The stream's waker, taken by the next push so the stream is woken once per batch.
    waker: Option<Waker>,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                bytes: 0,
                oldest: None,
                closed: None,
                waker: None,
            }),
            capacity,
        }
    }

    /// Queues a frame dispatched at `dispatched`, or closes the outbox if the frame would pass
    /// the byte bound.
    pub(crate) fn push(&self, position: Position, frame: Bytes, dispatched: Instant) -> Pushed {
        let waker;
        let outcome;
        {
            let mut state = self.state.lock().unwrap();
            if state.closed.is_some() {
                return Pushed::Closed;
            }
            if state.bytes + frame.len() > self.capacity {
                state.closed = Some(CloseReason::Overflow);
                state.frames = VecDeque::new();
                state.bytes = 0;
                outcome = Pushed::Overflowed;
            } else {
                state.bytes += frame.len();
                state.oldest.get_or_insert(dispatched);
                state.frames.push_back((position, frame));
                outcome = Pushed::Queued;
            }
            waker = state.waker.take();
        }
        // Wake outside the lock so the woken task never contends with us for it.
        if let Some(waker) = waker {
            waker.wake();
        }
        outcome
    }

    /// Closes the outbox; the stream ends after it notices.
    pub(crate) fn close(&self, reason: CloseReason) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            state.closed.get_or_insert(reason);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Why the outbox was closed, if it was.
    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().unwrap().closed
    }

    /// Moves everything queued into `into`, or registers the task to be woken by the next push.
    ///
    /// `into` must be empty: the two buffers are swapped, so the outbox keeps `into`'s
    /// allocation for the next frames and a stream that recycles its buffer allocates nothing
    /// per event (a fresh queue per drain cost a malloc, a chain of reallocs while a burst
    /// queued, and a free).
    ///
    /// Frames queued before a close are dropped with it: the subscriber will replay them from
    /// history, and a slow subscriber is exactly the one we should not keep writing to.
    pub(crate) fn poll_drain(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<(Position, Bytes)>,
    ) -> Poll<Drained> {
        debug_assert!(into.is_empty(), "drain into an empty buffer");
        let mut state = self.state.lock().unwrap();
        if let Some(reason) = state.closed {
            return Poll::Ready(Drained::Closed(reason));
        }
        if !state.frames.is_empty() {
            state.bytes = 0;
            std::mem::swap(&mut state.frames, into);
            let oldest = state.oldest.take().unwrap_or_else(Instant::now);
            return Poll::Ready(Drained::Frames(oldest));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn drain(outbox: &Outbox) -> Poll<Drained> {
        drain_into(outbox, &mut VecDeque::new())
    }

    fn drain_into(outbox: &Outbox, into: &mut VecDeque<(Position, Bytes)>) -> Poll<Drained> {
        outbox.poll_drain(&mut Context::from_waker(Waker::noop()), into)
    }

    #[test]
    fn drains_everything_queued_at_once() {
        let outbox = Outbox::new(100);
        assert!(drain(&outbox).is_pending());
        assert_eq!(
            outbox.push(Position(1), Bytes::from_static(b"a"), Instant::now()),
            Pushed::Queued
        );
        assert_eq!(
            outbox.push(Position(2), Bytes::from_static(b"b"), Instant::now()),
            Pushed::Queued
        );
        let mut frames = VecDeque::new();
        assert!(matches!(
            drain_into(&outbox, &mut frames),
            Poll::Ready(Drained::Frames(_))
        ));
        assert_eq!(frames.len(), 2);
        assert!(drain(&outbox).is_pending());
    }

    #[test]
    fn drained_buffers_are_recycled() {
        let outbox = Outbox::new(100);
        let mut frames = VecDeque::with_capacity(8);
        let given = frames.capacity();
        outbox.push(Position(1), Bytes::from_static(b"a"), Instant::now());
        let _ = drain_into(&outbox, &mut frames);
        assert_eq!(frames.len(), 1);
        frames.clear();
        // The outbox now holds the buffer handed in: the next push needs no allocation.
        outbox.push(Position(2), Bytes::from_static(b"b"), Instant::now());
        let mut again = VecDeque::new();
        let _ = drain_into(&outbox, &mut again);
        assert_eq!(again.capacity(), given);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn overflow_closes_and_frees_the_queue() {
        let outbox = Outbox::new(10);
        assert_eq!(
            outbox.push(Position(1), Bytes::from(vec![0; 6]), Instant::now()),
            Pushed::Queued
        );
        assert_eq!(
            outbox.push(Position(2), Bytes::from(vec![0; 6]), Instant::now()),
            Pushed::Overflowed
        );
        assert_eq!(
            outbox.push(Position(3), Bytes::from(vec![0; 1]), Instant::now()),
            Pushed::Closed
        );
        assert!(matches!(
            drain(&outbox),
            Poll::Ready(Drained::Closed(CloseReason::Overflow))
        ));
    }

    #[test]
    fn the_bound_counts_bytes_drained_since() {
        let outbox = Outbox::new(10);
        outbox.push(Position(1), Bytes::from(vec![0; 8]), Instant::now());
        let _ = drain(&outbox);
        assert_eq!(
            outbox.push(Position(2), Bytes::from(vec![0; 8]), Instant::now()),
            Pushed::Queued
        );
    }
}
