//! One subscriber's response body: replay first, then live frames, heartbeats, and an end.
//!
//! [`EventStream`] implements `http_body::Body` directly instead of going through a generic SSE
//! helper, for three reasons that matter at ten thousand connections: frames are already encoded
//! (no per-subscriber serialization), everything queued is written as one chunk (one syscall per
//! burst), and there is exactly one timer per connection, re-armed lazily, not one per event.
//!
//! The stream owns the subscriber's [`Registration`]: when hyper drops the body (the client went
//! away, the connection was cut, the hub shut down), the subscriber leaves the index. Dropping
//! it also counts the disconnect by its reason (and logs it at debug); the bytes it hands to the
//! connection and the delivery latency are counted once per chunk (crate::metrics).
//!
//! When the connection attached its socket to the outbox (outbox.rs, "Direct writes"), live
//! events mostly bypass the stream: it arms the outbox whenever it waits, disarms it before it
//! yields anything, yields first what a direct write left unfinished, and frames its own chunks
//! (`Framing`) so that its bytes and the flusher's make one well-formed body. Its heartbeat
//! counts the flusher's writes as writes. Dropping it detaches the socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use rand::Rng;
use tokio::time::{Instant, Sleep};

use super::outbox::{CloseReason, Drained, Framing, as_chunk, event_len_of_chunk};
use super::registry::Registration;
use super::{BoxFuture, Event, Position, REPLAY_PAGE_EVENTS, ReplaySource, TransportError};
use crate::metrics::{DisconnectReason, Metrics};

/// The timing of one stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamTiming {
    /// Idle period after which a heartbeat comment is written [R10]; `None` disables it.
    pub(crate) heartbeat: Option<Duration>,
    /// When the stream ends at the latest (token `exp`, maximum lifetime) [R11].
    pub(crate) ends_at: Option<Instant>,
    /// What reaching `ends_at` is: the lifetime or the token's expiry.
    pub(crate) end_reason: DisconnectReason,
    /// When the hub shuts down, the stream's last frame is a `retry:` field drawn at random
    /// up to this, so that clients spread their reconnections; zero: no `retry:` field.
    pub(crate) drain_spread: Duration,
}

/// The part of history still to be replayed, read a page at a time as the client drains it.
pub(crate) struct ReplayCursor {
    source: Arc<dyn ReplaySource>,
    after: Option<Position>,
    through: Position,
    pending: Option<BoxFuture<'static, Result<Vec<Arc<Event>>, TransportError>>>,
}

impl ReplayCursor {
    /// Replays the events after `after` (from the oldest when `None`) through `through`.
    pub(crate) fn new(
        source: Arc<dyn ReplaySource>,
        after: Option<Position>,
        through: Position,
    ) -> ReplayCursor {
        ReplayCursor {
            source,
            after,
            through,
            pending: None,
        }
    }

    /// Replays the events after `anchor` through `through`, reading the first page at once and
    /// from the anchor itself: returns the anchor's event (`None` if it is no longer retained)
    /// with the cursor, which holds the rest of that page. The subscribe route checks the
    /// anchor before it names it in the `Last-Event-ID` response header [R27], at the cost of
    /// no read that the replay would not make anyway.
    pub(crate) async fn after_anchor(
        source: Arc<dyn ReplaySource>,
        anchor: Position,
        through: Position,
    ) -> Result<(Option<Arc<Event>>, ReplayCursor), TransportError> {
        let from = anchor.0.checked_sub(1).map(Position);
        let mut page = source
            .replay_page(from, through, REPLAY_PAGE_EVENTS)
            .await?;
        let anchor_event = match page.first() {
            Some(event) if event.position == anchor => Some(page.remove(0)),
            _ => None,
        };
        let cursor = ReplayCursor {
            source,
            after: Some(anchor),
            through,
            pending: Some(Box::pin(std::future::ready(Ok(page)))),
        };
        Ok((anchor_event, cursor))
    }
}

/// A subscriber's response body.
pub(crate) struct EventStream {
    // Field order is drop order: the subscriber leaves the index before the end guard runs, so
    // that the subscriptions API never lists a subscription whose end was already announced.
    registration: Registration,
    /// Dropped when the stream ends, after the registration: what the caller wants to happen
    /// then (the subscriptions feature announces the subscription's end [R30]).
    _end_guard: Option<Box<dyn Send>>,
    /// Written before anything else: the opening comment [R7].
    opening: Option<Bytes>,
    /// History to send before any live event [R25].
    replay: Option<ReplayCursor>,
    /// Live events at or before this position are covered by the replay.
    replayed_through: Option<Position>,
    timing: StreamTiming,
    /// The one timer: fires at the next heartbeat or at the end, whichever is first.
    timer: Option<Pin<Box<Sleep>>>,
    /// When something was last written, to decide lazily whether a heartbeat is due.
    last_write: Instant,
    /// The buffer the outbox drains into, empty between polls and swapped with the outbox's
    /// queue on every drain, so that a subscriber that keeps up allocates no queue per event.
    drained: VecDeque<(Position, Bytes)>,
    /// Who frames what the stream yields: learnt from the outbox on the first poll, since
    /// the connection attaches its socket (or not) before polling.
    framing: Framing,
    done: bool,
    /// Why the stream ended, once it did; a stream dropped before that lost its client.
    ended: Option<DisconnectReason>,
}

/// A drained buffer larger than this (in frames) is freed rather than recycled, so that one
/// burst does not leave every subscriber holding a large queue.
const RECYCLE_MAX_FRAMES: usize = 32;

impl EventStream {
    pub(crate) fn new(
        registration: Registration,
        end_guard: Option<Box<dyn Send>>,
        replay: Option<ReplayCursor>,
        timing: StreamTiming,
    ) -> EventStream {
        let now = Instant::now();
        let mut stream = EventStream {
            registration,
            _end_guard: end_guard,
            opening: Some(Bytes::from_static(herald_protocol::sse::OPENING_COMMENT)),
            replayed_through: replay.as_ref().map(|cursor| cursor.through),
            replay,
            timing,
            timer: None,
            last_write: now,
            drained: VecDeque::new(),
            framing: Framing::ByConnection,
            done: false,
            ended: None,
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

    /// Joins the drained frames into one chunk, skipping what the replay already covered, and
    /// leaves the drained buffer empty; with the number of event bytes in it. (With direct
    /// writes on HTTP/1.1 the frames are already chunks, and so is what they join into.)
    fn coalesce(&mut self) -> Option<(Bytes, usize)> {
        let through = self.replayed_through;
        let fresh = |position: &Position| through.is_none_or(|through| *position > through);
        let chunks = self.framing == Framing::Chunked;
        let (count, total, events) = self
            .drained
            .iter()
            .filter(|(position, _)| fresh(position))
            .fold((0, 0, 0), |(count, total, events), (_, frame)| {
                let len = frame.len();
                let event = if chunks { event_len_of_chunk(len) } else { len };
                (count + 1, total + len, events + event)
            });
        let chunk = match count {
            0 => None,
            // The common case when the subscriber keeps up: no copy at all.
            1 => self
                .drained
                .drain(..)
                .find(|(position, _)| fresh(position))
                .map(|(_, frame)| frame),
            // One allocation of the exact size, one copy per frame.
            _ => {
                let mut chunk = BytesMut::with_capacity(total);
                for (_, frame) in self.drained.iter().filter(|(p, _)| fresh(p)) {
                    chunk.extend_from_slice(frame);
                }
                Some(chunk.freeze())
            }
        };
        self.drained.clear();
        if self.drained.capacity() > RECYCLE_MAX_FRAMES {
            self.drained = VecDeque::new();
        }
        chunk.map(|chunk| (chunk, events))
    }

    /// The next page of history, as one chunk of the frames this subscriber wants; `None` when
    /// the replay is over.
    fn poll_replay(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, TransportError>>> {
        let subscription = self.registration.subscriber().subscription();
        while let Some(cursor) = self.replay.as_mut() {
            let pending = cursor.pending.get_or_insert_with(|| {
                cursor
                    .source
                    .replay_page(cursor.after, cursor.through, REPLAY_PAGE_EVENTS)
            });
            let page = match pending.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(page)) => page,
            };
            cursor.pending = None;
            let Some(last) = page.last() else {
                self.replay = None;
                break;
            };
            cursor.after = Some(last.position);
            let mut chunk = BytesMut::new();
            let mut events = 0;
            for event in page.iter().filter(|event| subscription.wants(event)) {
                chunk.extend_from_slice(event.frame());
                events += 1;
            }
            if !chunk.is_empty() {
                let metrics = self.registration.metrics();
                metrics.replayed_events.fetch_add(events, Ordering::Relaxed);
                return Poll::Ready(Some(Ok(chunk.freeze())));
            }
        }
        Poll::Ready(None)
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
            // Direct writes count as writes: a heartbeat is due after the last of either.
            let outbox = self.registration.subscriber().outbox();
            if let Some(direct) = outbox.last_direct_write().map(Instant::from_std) {
                self.last_write = self.last_write.max(direct);
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

impl EventStream {
    /// Hands `chunk` to the connection, now.
    fn send(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.last_write = Instant::now();
        self.count_written(chunk)
    }

    fn count_written(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let metrics = self.registration.metrics();
        metrics
            .bytes_written
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(self.wire(chunk)))))
    }

    /// `data` as the connection must write it: as it is, or as one HTTP/1.1 chunk when the
    /// stream frames for a connection with direct writes (outbox.rs).
    fn wire(&self, data: Bytes) -> Bytes {
        if self.framing != Framing::Chunked || data.is_empty() {
            return data;
        }
        as_chunk(&data)
    }

    /// Hands live frames to the connection: the rest of a chunk a direct write began, then
    /// the drained frames joined (`events` bytes of events), both as they are on the wire.
    fn send_live(
        &mut self,
        unfinished: Option<Bytes>,
        joined: Option<(Bytes, usize)>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let joined = joined.map(|(joined, events)| {
            self.last_write = Instant::now();
            let metrics = self.registration.metrics();
            metrics
                .bytes_written
                .fetch_add(events as u64, Ordering::Relaxed);
            joined
        });
        let data = match (unfinished, joined) {
            (Some(unfinished), Some(joined)) => {
                let mut both = BytesMut::with_capacity(unfinished.len() + joined.len());
                both.extend_from_slice(&unfinished);
                both.extend_from_slice(&joined);
                both.freeze()
            }
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => Bytes::new(),
        };
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    /// Ends the stream (a complete response: the client reconnects) for `reason`.
    fn end(&mut self, reason: DisconnectReason) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.done = true;
        self.ended = Some(reason);
        Poll::Ready(None)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Nothing is written to the connection's socket from the dispatching side from here.
        self.registration.subscriber().outbox().detach();
        let closed = self.registration.subscriber().outbox().close_reason();
        let reason = self.ended.unwrap_or(match closed {
            // Its client went away before the stream saw the close.
            Some(CloseReason::Overflow) => DisconnectReason::SlowReader,
            Some(CloseReason::Shutdown) => DisconnectReason::Shutdown,
            None => DisconnectReason::ClientGone,
        });
        // A slow reader was counted when its queue overflowed (the registry).
        if reason != DisconnectReason::SlowReader {
            self.registration.metrics().disconnected(reason);
        }
        tracing::debug!(
            subscriber = self.registration.subscriber().iri(),
            reason = reason.as_str(),
            "subscriber disconnected"
        );
    }
}

/// The last frame of a stream ended by a shutdown: `retry: N` with N milliseconds drawn
/// uniformly up to `spread`. An `EventSource` waits that long before it reconnects (HTML's
/// "reconnection time"), so that the clients of a node that stops arrive at the surviving ones
/// spread over `spread` rather than in the same millisecond. It also stays the client's
/// reconnection time afterwards, which for a few seconds is harmless.
fn drain_retry(spread: Duration) -> Bytes {
    let max = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    let retry = rand::rng().random_range(0..=max);
    Bytes::from(format!("retry: {retry}\n\n"))
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(opening) = this.opening.take() {
            this.framing = this.registration.subscriber().outbox().framing();
            return this.send(opening);
        }
        match this.poll_replay(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => return this.send(chunk),
            Poll::Ready(Some(Err(e))) => {
                // The client reconnects with the last id it received and resumes from there.
                tracing::warn!("replay failed, ending the stream: {e}");
                Metrics::inc(&this.registration.metrics().transport_errors);
                return this.end(DisconnectReason::ReplayFailed);
            }
            Poll::Ready(None) => {}
        }
        loop {
            let outbox = this.registration.subscriber().outbox();
            match outbox.poll_drain(cx, &mut this.drained, this.replayed_through) {
                Poll::Ready(Drained::Frames { oldest, unfinished }) => {
                    let joined = this.coalesce();
                    if let (Some(oldest), Some(_)) = (oldest, &joined) {
                        this.registration
                            .metrics()
                            .delivery_latency
                            .observe(oldest.elapsed());
                    }
                    if unfinished.is_none() && joined.is_none() {
                        // Everything drained was a replay duplicate: look again.
                        continue;
                    }
                    return this.send_live(unfinished, joined);
                }
                Poll::Ready(Drained::Closed(reason)) => {
                    let reason = match reason {
                        CloseReason::Overflow => DisconnectReason::SlowReader,
                        CloseReason::Shutdown => DisconnectReason::Shutdown,
                    };
                    if reason == DisconnectReason::Shutdown && !this.timing.drain_spread.is_zero() {
                        // The last frame: then `done`, and the drop counts the reason.
                        this.done = true;
                        this.ended = Some(reason);
                        let retry = drain_retry(this.timing.drain_spread);
                        return this.count_written(retry);
                    }
                    return this.end(reason);
                }
                Poll::Pending => {}
            }
            let timer = this.poll_timer(cx);
            if timer.is_pending() {
                return Poll::Pending;
            }
            // The stream is about to write: no direct write may come in between, and what
            // one left (or frames queued meanwhile) goes first.
            if this.registration.subscriber().outbox().disarm() {
                continue;
            }
            return match timer {
                Poll::Ready(Some(heartbeat)) => this.count_written(heartbeat),
                _ => this.end(this.timing.end_reason),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
