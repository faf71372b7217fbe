//! A subscriber's queue of frames waiting to be written: bounded in bytes, drained whole, and,
//! for a connection the hub writes to itself, written from the dispatching side.
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
//!
//! # Direct writes
//!
//! Waking a subscriber's task for every update, so that it drains one frame and writes it,
//! costs a task wake, a poll through the connection's layers and two more locks per delivery:
//! at a steady pace of updates, as much CPU as the write itself. So an HTTP/1 subscription on a
//! plain TCP socket (the common case, `subscription_conn/`) *attaches* its socket here, and
//! while its connection waits with nothing to write, the outbox is *armed*: the first push then
//! only marks it scheduled, and the dispatcher hands it to a flush task (registry.rs), which,
//! on a runtime worker, writes everything queued ([`Outbox::flush`]) with one non-blocking
//! `send` (or `sendmsg` for several frames) under this outbox's lock. The lock is what keeps
//! one writer at a time: the connection disarms the outbox (under it) before it writes
//! anything itself, and only an armed outbox is written to here.
//!
//! With a socket attached on HTTP/1.1, the queue holds each frame as its HTTP/1.1 chunk
//! ([`Frame::chunk`], encoded once per update), so that one event is one buffer on the wire,
//! and the stream frames what it writes itself in the same way ([`Framing`]).
//!
//! When the socket would block, or takes only part of the chunk, the outbox disarms and wakes
//! the connection, which writes the rest as before: the part of a chunk not yet written
//! (`unfinished`, always first) and the queued frames, waiting for the socket to be writable,
//! under the same byte bound. So a slow reader is treated exactly as it was: its queue grows
//! until it drains or passes the bound.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::net::TcpStream;

use super::{Frame, Position};
use crate::metrics::{LatencyTally, Metrics};

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
    /// Queued in an armed outbox that had no flush pending: the caller must hand it to the
    /// flusher ([`Outbox::flush`]), which writes it; nobody else will.
    Scheduled,
    /// This push overflowed the queue; the outbox is now closed.
    Overflowed,
    /// The outbox was already closed; the frame was dropped.
    Closed,
}

/// What the stream gets when it drains.
pub(crate) enum Drained {
    /// The queued frames were moved into the caller's buffer. `oldest`: when the oldest was
    /// dispatched (the delivery latency counts from it), `None` if none was queued.
    /// `unfinished`: the rest of a chunk a direct write began, already framed; it goes on the
    /// wire before anything else.
    Frames {
        oldest: Option<Instant>,
        unfinished: Option<Bytes>,
    },
    Closed(CloseReason),
}

/// How the bytes a stream yields must be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The connection frames them (hyper, or a connection without direct writes).
    ByConnection,
    /// The stream frames them as HTTP/1.1 chunks itself, and the connection writes them as
    /// they are: direct writes and the connection's writes must agree on every byte.
    Chunked,
    /// As they are, on an HTTP/1.0 connection with direct writes (the body ends at close).
    Identity,
}

pub(crate) struct Outbox {
    // A std Mutex, not tokio's: the critical sections are a few pointer moves, and one
    // non-blocking write for an armed outbox, and never span an await, so blocking is shorter
    // than any async lock's bookkeeping.
    state: Mutex<State>,
    capacity: usize,
}

struct State {
    frames: VecDeque<(Position, Bytes)>,
    bytes: usize,
    /// When the oldest frame queued was dispatched.
    oldest: Option<Instant>,
    closed: Option<CloseReason>,
    /// The stream's waker. Taken by the next push when the outbox is not armed, so the stream
    /// is woken once per batch; kept while armed, for the flusher to wake it if it must.
    waker: Option<Waker>,
    /// The socket this outbox may write to itself, once one is attached. Inline, not boxed:
    /// the flusher touches it on every write, and one more pointer to follow is one more
    /// cache miss per delivery.
    direct: Option<Direct>,
}

/// An attached socket and what the writers of it must agree on.
struct Direct {
    socket: Arc<TcpStream>,
    /// HTTP/1.1: the queue holds frames as chunks ([`Frame::chunk`]), ready to be written.
    chunked: bool,
    /// The connection is waiting with nothing to write: the flusher may write.
    armed: bool,
    /// The outbox was handed to the flusher and not flushed yet.
    scheduled: bool,
    /// Frames at or before this position were written by the replay: skipped.
    through: Option<Position>,
    /// The part of a chunk that a direct write could not finish; the connection writes it
    /// before anything else.
    unfinished: Option<Bytes>,
    /// When the last direct write happened, for the stream's heartbeat.
    last_write: Option<Instant>,
}

/// What one flush task gathers while it writes to many outboxes, added to the metrics once at
/// its end ([`FlushTally::record`]): the event bytes written and the delivery latencies,
/// counted without atomics (two atomic adds per write, on cache lines that the flush tasks of
/// both workers add to, would move those lines between the cores on every delivery).
///
/// Its clock is read once every [`CLOCK_READ_EVERY`] writes, not on each, so that a delivery
/// costs a clock read and a duration's arithmetic less: the latency it counts is short by at
/// most the time the task's previous 15 writes took (about 0.1 ms, the histogram's first
/// bucket, when each is a small event's 5 µs on loopback).
pub(crate) struct FlushTally {
    bytes: u64,
    latencies: LatencyTally,
    clock: Instant,
    writes: u32,
}

/// How many writes of a flush task share one reading of the clock.
const CLOCK_READ_EVERY: u32 = 16;

impl FlushTally {
    pub(crate) fn new() -> FlushTally {
        FlushTally {
            bytes: 0,
            latencies: LatencyTally::default(),
            clock: Instant::now(),
            writes: 0,
        }
    }

    /// The time of a write, as this task's clock has it.
    fn now(&mut self) -> Instant {
        if self.writes == CLOCK_READ_EVERY {
            self.clock = Instant::now();
            self.writes = 0;
        }
        self.writes += 1;
        self.clock
    }

    /// The event bytes written so far.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds what this task counted to the hub's metrics.
    pub(crate) fn record(&self, metrics: &Metrics) {
        metrics
            .bytes_written
            .fetch_add(self.bytes, std::sync::atomic::Ordering::Relaxed);
        metrics.delivery_latency.add(&self.latencies);
    }

    #[cfg(test)]
    fn latencies(&self) -> &LatencyTally {
        &self.latencies
    }
}

/// The most frames a direct write passes to `sendmsg` one by one; more are joined first (a
/// burst), as the stream does.
const MAX_WRITE_FRAMES: usize = 16;

/// The length of the event in an HTTP/1.1 chunk `total` bytes long (size line, event, CRLF),
/// as [`Frame::chunk`] makes them: what the byte counters count, as for every other writer.
pub(crate) fn event_len_of_chunk(total: usize) -> usize {
    // The size line has `digits` hex digits: total = len + digits + 4.
    (1..=16)
        .map(|digits| total.saturating_sub(digits + 4))
        .find(|&len| hex_digits(len) + len + 4 == total)
        .unwrap_or(total)
}

fn hex_digits(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize
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
                direct: None,
            }),
            capacity,
        }
    }

    /// Queues a frame dispatched at `dispatched`, or closes the outbox if the frame would pass
    /// the byte bound.
    pub(crate) fn push(&self, position: Position, frame: &Frame, dispatched: Instant) -> Pushed {
        let waker;
        let outcome;
        {
            let mut state = self.state.lock().unwrap();
            if state.closed.is_some() {
                return Pushed::Closed;
            }
            let frame = match &state.direct {
                Some(direct) if direct.chunked => frame.chunk().clone(),
                _ => frame.bytes().clone(),
            };
            if state.bytes + frame.len() > self.capacity {
                state.closed = Some(CloseReason::Overflow);
                state.frames = VecDeque::new();
                state.bytes = 0;
                outcome = Pushed::Overflowed;
            } else {
                state.bytes += frame.len();
                state.oldest.get_or_insert(dispatched);
                state.frames.push_back((position, frame));
                if let Some(direct) = state.direct.as_mut().filter(|d| d.armed) {
                    // The flusher writes it; the connection stays asleep.
                    if direct.scheduled {
                        return Pushed::Queued;
                    }
                    direct.scheduled = true;
                    return Pushed::Scheduled;
                }
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
            if let Some(direct) = state.direct.as_mut() {
                direct.armed = false;
            }
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

    /// Lets the flusher write to `socket` whenever the stream is waiting (see the module
    /// docs). The connection calls it before it polls the stream, and from then on writes what
    /// the stream yields as it is: the stream frames it ([`Outbox::framing`]).
    pub(crate) fn attach(&self, socket: Arc<TcpStream>, chunked: bool) {
        let mut state = self.state.lock().unwrap();
        if chunked {
            // Frames queued since the subscriber registered become chunks like the next ones.
            for (_, frame) in state.frames.iter_mut() {
                *frame = as_chunk(frame);
            }
            state.bytes = state.frames.iter().map(|(_, frame)| frame.len()).sum();
        }
        state.direct = Some(Direct {
            socket,
            chunked,
            armed: false,
            scheduled: false,
            through: None,
            unfinished: None,
            last_write: None,
        });
    }

    /// Forgets the attached socket: nothing is written to it from here after this returns.
    pub(crate) fn detach(&self) {
        let direct = self.state.lock().unwrap().direct.take();
        // The socket (if this was the last reference) closes outside the lock.
        drop(direct);
    }

    /// How the stream must frame what it yields.
    pub(crate) fn framing(&self) -> Framing {
        match self.state.lock().unwrap().direct.as_ref() {
            None => Framing::ByConnection,
            Some(direct) if direct.chunked => Framing::Chunked,
            Some(_) => Framing::Identity,
        }
    }

    /// Stops direct writes because the connection is about to write; `true` if something is
    /// waiting to be drained first (the rest of a chunk, or frames).
    pub(crate) fn disarm(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        let Some(direct) = state.direct.as_mut() else {
            return false;
        };
        direct.armed = false;
        direct.unfinished.is_some() || !state.frames.is_empty()
    }

    /// When the flusher last wrote to the attached socket.
    pub(crate) fn last_direct_write(&self) -> Option<Instant> {
        let state = self.state.lock().unwrap();
        state.direct.as_ref().and_then(|direct| direct.last_write)
    }

    /// Moves everything queued into `into`, or registers the task to be woken by the next push
    /// and, with a socket attached, arms the outbox, skipping from then on the frames at or
    /// before `replayed_through`.
    ///
    /// `into` must be empty: the two buffers are swapped, so the outbox keeps `into`'s
    /// allocation for the next frames and a stream that recycles its buffer allocates nothing
    /// per event (a fresh queue per drain cost a malloc, a chain of reallocs while a burst
    /// queued, and a free).
    ///
    /// Frames queued before a close are dropped with it: the subscriber will replay them from
    /// history, and a slow subscriber is exactly the one we should not keep writing to. The
    /// rest of a chunk already begun is not: it comes first, so that the stream stays well
    /// framed.
    pub(crate) fn poll_drain(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<(Position, Bytes)>,
        replayed_through: Option<Position>,
    ) -> Poll<Drained> {
        debug_assert!(into.is_empty(), "drain into an empty buffer");
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        let unfinished = state.direct.as_mut().and_then(|direct| {
            direct.armed = false;
            direct.unfinished.take()
        });
        if unfinished.is_none()
            && let Some(reason) = state.closed
        {
            return Poll::Ready(Drained::Closed(reason));
        }
        if !state.frames.is_empty() || unfinished.is_some() {
            if state.closed.is_none() {
                state.bytes = 0;
                std::mem::swap(&mut state.frames, into);
            }
            let oldest = state.oldest.take().filter(|_| !into.is_empty());
            return Poll::Ready(Drained::Frames { oldest, unfinished });
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        if let Some(direct) = state.direct.as_mut() {
            direct.armed = true;
            direct.through = replayed_through;
        }
        Poll::Pending
    }

    /// Writes everything queued to the attached socket, if the outbox is armed: the
    /// flusher's side of direct writes. When the socket takes less than all of it, the
    /// outbox disarms and wakes the stream, which writes the rest. The event bytes written and
    /// the delivery's latency are counted in `tally`.
    pub(crate) fn flush(&self, tally: &mut FlushTally) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            let state = &mut *state;
            let Some(direct) = state.direct.as_mut() else {
                return;
            };
            direct.scheduled = false;
            if !direct.armed || state.closed.is_some() || state.frames.is_empty() {
                return;
            }
            let through = direct.through;
            let fresh = |(position, _): &&(Position, Bytes)| through.is_none_or(|t| *position > t);
            let mut total = 0;
            let mut events = 0;
            for (_, frame) in state.frames.iter().filter(fresh) {
                total += frame.len();
                events += if direct.chunked {
                    event_len_of_chunk(frame.len())
                } else {
                    frame.len()
                };
            }
            let joined;
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_FRAMES];
            let mut count = 0;
            if state.frames.len() <= MAX_WRITE_FRAMES {
                for (_, frame) in state.frames.iter().filter(fresh) {
                    slices[count] = IoSlice::new(frame);
                    count += 1;
                }
            } else {
                let mut chunk = BytesMut::with_capacity(total);
                for (_, frame) in state.frames.iter().filter(fresh) {
                    chunk.extend_from_slice(frame);
                }
                joined = chunk;
                slices[0] = IoSlice::new(&joined);
                count = 1;
            }
            let slices = &slices[..count];
            // Straight to the socket (`send`, `sendmsg`), not through the runtime's readiness:
            // when it would block, the connection finds that out itself on its next write.
            // rustix makes the system call itself: libc's wrappers are cancellation points,
            // whose bookkeeping cost a few percent of a delivery's CPU.
            let socket = &*direct.socket;
            let written = match slices {
                [] => Ok(0),
                [one] => rustix::net::send(socket, one, SendFlags::NOSIGNAL),
                _ => rustix::net::sendmsg(
                    socket,
                    slices,
                    &mut SendAncillaryBuffer::default(),
                    SendFlags::NOSIGNAL,
                ),
            };
            let complete = match written {
                Ok(n) if n == total => true,
                Ok(n) if n > 0 => {
                    direct.unfinished = Some(rest_after(slices, n));
                    true
                }
                // Would block (or failed): the frames stay queued for the connection, which
                // waits for the socket (or finds the error) itself.
                _ => false,
            };
            if complete {
                if total > 0 {
                    let now = tally.now();
                    if let Some(oldest) = state.oldest {
                        tally.latencies.observe_between(oldest, now);
                    }
                    direct.last_write = Some(now);
                }
                state.frames.clear();
                state.bytes = 0;
                state.oldest = None;
                tally.bytes += events as u64;
                if direct.unfinished.is_none() {
                    return;
                }
            }
            direct.armed = false;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// `frame` as one HTTP/1.1 chunk, copied.
pub(crate) fn as_chunk(frame: &[u8]) -> Bytes {
    let mut size = [0u8; 18];
    let size = chunk_size_line(frame.len(), &mut size);
    let mut chunk = BytesMut::with_capacity(size.len() + frame.len() + 2);
    chunk.extend_from_slice(size);
    chunk.extend_from_slice(frame);
    chunk.extend_from_slice(b"\r\n");
    chunk.freeze()
}

/// The bytes of `slices` after the first `written`, as one buffer.
fn rest_after(slices: &[IoSlice<'_>], mut written: usize) -> Bytes {
    let mut rest = BytesMut::new();
    for slice in slices {
        if written >= slice.len() {
            written -= slice.len();
        } else {
            rest.extend_from_slice(&slice[written..]);
            written = 0;
        }
    }
    rest.freeze()
}

/// `{len:X}\r\n` into `buf`, without allocating: an HTTP/1.1 chunk's size line.
pub(crate) fn chunk_size_line(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut count = 0;
    loop {
        digits[count] = HEX[n & 0xF];
        count += 1;
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[i] = digits[count - 1 - i];
    }
    buf[count] = b'\r';
    buf[count + 1] = b'\n';
    &buf[..count + 2]
}

#[cfg(test)]
mod tests;
