//! The writer thread: takes what publishers queued, writes it by group commit, dispatches it.
//!
//! Publishers send [`Message`]s over a channel; the one [`Writer`] takes everything waiting
//! (up to [`MAX_BATCH`]), writes it in one transaction, commits, then dispatches the batch in
//! position order and acknowledges each publisher (see the parent's "Group commit"). When idle
//! it wakes every [`IDLE_TICK`] to trim by age (`retention.rs`) and, under `Periodic`, to sync.
//! After an I/O error it reopens the file (`file.rs`); at the end it closes it cleanly.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use herald_protocol::Update;
use redb::ReadableTable;
use tokio::sync::oneshot;

use super::file::{EVENTS, FIRST_IDS, IDS, META, NEXT_POSITION, open_database};
use super::retention::trim;
use super::{Durability, Store, now_ms};
use crate::transport::{Dispatcher, Event, Frame, HistoryLimits, Position, Route, TransportError};

/// Most updates one transaction carries.
const MAX_BATCH: usize = 8192;
/// How often an idle writer wakes up to trim by age (and, under `Periodic`, to sync).
const IDLE_TICK: Duration = Duration::from_millis(100);

/// What the writer thread is asked to do.
#[expect(
    clippy::large_enum_variant,
    reason = "publishes are the traffic; boxing them would allocate once more per publish"
)]
pub(super) enum Message {
    Publish(Request),
    /// Commit what came before, close the database cleanly and exit; answered once the file
    /// is closed.
    Close(oneshot::Sender<()>),
}

pub(super) struct Request {
    pub(super) update: Update,
    pub(super) frame: Frame,
    /// Made on the publisher's side: the writer thread does no template matching.
    pub(super) route: Route,
    /// The serialized record to store; `None` for an update that is delivered but not kept
    /// ([`Transport::publish_live`](crate::transport::Transport::publish_live)).
    pub(super) record: Option<Vec<u8>>,
    pub(super) done: oneshot::Sender<Result<(), TransportError>>,
}

/// The one thread that writes history.
pub(super) struct Writer {
    pub(super) store: Arc<Store>,
    /// Owned by the writer thread: dispatch happens here, after each commit, in position order.
    pub(super) dispatcher: Dispatcher,
    pub(super) limits: HistoryLimits,
    pub(super) durability: Durability,
    /// Under `Periodic`, whether commits were made since the last synced one.
    pub(super) unsynced: bool,
}

impl Writer {
    pub(super) fn run(mut self, requests: Receiver<Message>) {
        let mut closed = None;
        while closed.is_none() {
            let first = match requests.recv_timeout(IDLE_TICK) {
                Ok(Message::Publish(request)) => request,
                Ok(Message::Close(done)) => {
                    closed = Some(done);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(Message::Publish(request)) => batch.push(request),
                    Ok(Message::Close(done)) => {
                        closed = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        // The hub is gone: make what was acknowledged under `Periodic` durable too.
        if self.unsynced {
            let _ = self.sync();
        }
        if let Some(done) = closed {
            // Publishes sent after the close are refused when `requests` drops below.
            self.close_database();
            let _ = done.send(());
        }
    }

    /// Drops the database once readers (replays on blocking threads) let go of it, so that
    /// redb marks the file as cleanly closed and the next start needs no repair. A reader
    /// that holds on past a second leaves the file to the repair at the next start, as after a
    /// crash: nothing acknowledged is lost either way.
    fn close_database(&mut self) {
        let Some(mut db) = self.store.db.write().unwrap().take() else {
            return;
        };
        for _ in 0..100 {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    tracing::debug!("history file closed");
                    return;
                }
                Err(still_shared) => {
                    db = still_shared;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        tracing::warn!("history file left open by a reader: the next start will check it");
    }

    fn commit_batch(&mut self, batch: Vec<Request>) {
        if self.store.db.read().unwrap().is_none() {
            self.try_open();
        }
        match self.write(&batch) {
            Ok(first_position) => {
                let mut position = first_position;
                // One batch: a subscriber gets the batch's events in one write.
                let mut dispatch = self.dispatcher.batch();
                for request in batch {
                    if request.record.is_none() {
                        dispatch.dispatch_live(request.update);
                    } else {
                        let event =
                            Event::with_frame(Position(position), request.update, request.frame);
                        position += 1;
                        dispatch.dispatch_routed(&event, &request.route);
                    }
                    let _ = request.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(
                    "history write failed, {} publishes refused: {e}",
                    batch.len()
                );
                for request in batch {
                    let _ = request
                        .done
                        .send(Err(TransportError::Storage(e.to_string())));
                }
                self.reopen_after_error();
            }
        }
    }

    /// Writes a batch in one transaction; returns the position of its first update.
    fn write(&mut self, batch: &[Request]) -> Result<u64, redb::Error> {
        if batch.iter().all(|request| request.record.is_none()) {
            // Only live events: nothing to store, no commit to pay for.
            return Ok(0);
        }
        let db = self
            .store
            .db()
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        let mut txn = db.begin_write()?;
        let sync = self.durability == Durability::Sync;
        if !sync {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        }
        let first;
        {
            let mut meta = txn.open_table(META)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(IDS)?;
            let mut first_ids = txn.open_table(FIRST_IDS)?;
            first = meta.get(NEXT_POSITION)?.map_or(0, |v| v.value());
            let mut position = first;
            for request in batch {
                let Some(record) = &request.record else {
                    continue;
                };
                if self.limits.max_events > 0 {
                    events.insert(position, record.as_slice())?;
                    ids.insert(request.update.id.as_str(), position)?;
                    if first_ids.get(request.update.id.as_str())?.is_none() {
                        first_ids.insert(request.update.id.as_str(), position)?;
                    }
                }
                position += 1;
            }
            meta.insert(NEXT_POSITION, position)?;
            trim(
                &mut events,
                &mut ids,
                &mut first_ids,
                &self.limits,
                position,
                now_ms(),
            )?;
        }
        txn.commit()?;
        self.unsynced = !sync;
        Ok(first)
    }

    fn idle(&mut self) {
        if self.store.db.read().unwrap().is_none() {
            return self.try_open();
        }
        let result = self
            .trim_by_age()
            .and_then(|()| if self.unsynced { self.sync() } else { Ok(()) });
        if let Err(e) = result {
            tracing::error!("history maintenance failed: {e}");
            self.reopen_after_error();
        }
    }

    /// An empty synced commit: makes every earlier unsynced commit durable.
    fn sync(&mut self) -> Result<(), redb::Error> {
        let db = self
            .store
            .db()
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        db.begin_write()?.commit()?;
        self.unsynced = false;
        Ok(())
    }

    /// After an I/O error (a full disk, say) redb must be reopened before it can be used again.
    /// Readers holding the old handle finish first; until the reopen succeeds, publishes fail
    /// with 503 and the hub keeps serving subscribers.
    fn reopen_after_error(&mut self) {
        let old = self.store.db.write().unwrap().take();
        let Some(mut old) = old else {
            return self.try_open();
        };
        for _ in 0..100 {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    return self.try_open();
                }
                Err(still_shared) => {
                    old = still_shared;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // Readers held on for a second: put the handle back and try again after the next error.
        *self.store.db.write().unwrap() = Some(old);
    }

    fn try_open(&mut self) {
        match open_database(&self.store.path) {
            Ok(db) => {
                tracing::info!("history file reopened");
                *self.store.db.write().unwrap() = Some(Arc::new(db));
            }
            Err(e) => tracing::error!("cannot reopen the history file yet: {e}"),
        }
    }
}
