//! One subscriber's response body: replay first, then live frames, heartbeats, and an end.
//!
//! [`EventStream`] implements `http_body::Body` directly instead of going through a generic SSE
//! helper, for three reasons that matter at ten thousand connections: frames are already encoded
//! (no per-subscriber serialization), everything queued is written as one chunk (one syscall per
//! burst), and there is exactly one timer per connection, re-armed lazily, not one per event.
//!
//! The stream owns the subscriber's [`Registration`]: when hyper drops the body (the client went
//! away, the connection was cut, the hub shut down), the subscriber leaves the index.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::outbox::Drained;
use crate::registry::Registration;
use crate::transport::Position;

/// The timing of one stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// Idle period after which a heartbeat comment is written [R10]; `None` disables it.
    pub heartbeat: Option<Duration>,
    /// When the stream ends at the latest (token `exp`, maximum lifetime) [R11].
    pub ends_at: Option<Instant>,
}

pub struct EventStream {
    registration: Registration,
    /// Written before anything else: the opening comment and the replayed events [R7].
    opening: Option<Bytes>,
    /// Live events at or before this position were already sent as part of the replay.
    replayed_through: Option<Position>,
    timing: StreamTiming,
    /// The one timer: fires at the next heartbeat or at the end, whichever is first.
    timer: Option<Pin<Box<Sleep>>>,
    /// When something was last written, to decide lazily whether a heartbeat is due.
    last_write: Instant,
    done: bool,
}

impl EventStream {
    pub fn new(
        registration: Registration,
        opening: Bytes,
        replayed_through: Option<Position>,
        timing: StreamTiming,
    ) -> EventStream {
        let now = Instant::now();
        let mut stream = EventStream {
            registration,
            opening: Some(opening),
            replayed_through,
            timing,
            timer: None,
            last_write: now,
            done: false,
        };
        stream.timer = stream
            .next_wake()
            .map(|at| Box::pin(tokio::time::sleep_until(at)));
        stream
    }

    fn next_wake(&self) -> Option<Instant> {
        let heartbeat = self.timing.heartbeat.map(|period| self.last_write + period);
        match (heartbeat, self.timing.ends_at) {
            (Some(h), Some(e)) => Some(h.min(e)),
            (h, e) => h.or(e),
        }
    }

    /// Joins the drained frames into one chunk, skipping what the replay already covered.
    fn coalesce(&self, frames: std::collections::VecDeque<(Position, Bytes)>) -> Option<Bytes> {
        let fresh = |(position, _): &(Position, Bytes)| {
            self.replayed_through
                .is_none_or(|through| *position > through)
        };
        let mut frames = frames.into_iter().filter(fresh);
        let first = frames.next()?.1;
        let Some((_, second)) = frames.next() else {
            // The common case when the subscriber keeps up: no copy at all.
            return Some(first);
        };
        let mut chunk = BytesMut::with_capacity(first.len() + second.len());
        chunk.extend_from_slice(&first);
        chunk.extend_from_slice(&second);
        for (_, frame) in frames {
            chunk.extend_from_slice(&frame);
        }
        Some(chunk.freeze())
    }

    fn rearm(&mut self, at: Instant) {
        if let Some(timer) = self.timer.as_mut() {
            timer.as_mut().reset(at);
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            let Some(timer) = self.timer.as_mut() else {
                return Poll::Pending;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if self.timing.ends_at.is_some_and(|end| now >= end) {
                return Poll::Ready(None);
            }
            if let Some(period) = self.timing.heartbeat
                && now >= self.last_write + period
            {
                self.last_write = now;
                let next = self.next_wake().expect("heartbeat is set");
                self.rearm(next);
                return Poll::Ready(Some(Bytes::from_static(
                    herald_protocol::sse::HEARTBEAT_COMMENT,
                )));
            }
            // Something was written since the timer was armed: re-arm it from then and poll
            // again so that the waker is registered.
            let next = self.next_wake().expect("a timer implies a wake time");
            self.rearm(next);
        }
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(opening) = this.opening.take() {
            this.last_write = Instant::now();
            return Poll::Ready(Some(Ok(Frame::data(opening))));
        }
        loop {
            match this.registration.subscriber().outbox().poll_drain(cx) {
                Poll::Ready(Drained::Frames(frames)) => {
                    if let Some(chunk) = this.coalesce(frames) {
                        this.last_write = Instant::now();
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    // Everything drained was a replay duplicate: look again.
                }
                Poll::Ready(Drained::Closed(reason)) => {
                    tracing::debug!(?reason, "ending subscriber stream");
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        match this.poll_timer(cx) {
            Poll::Ready(Some(heartbeat)) => Poll::Ready(Some(Ok(Frame::data(heartbeat)))),
            Poll::Ready(None) => {
                tracing::debug!("subscriber stream reached its end of life");
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
