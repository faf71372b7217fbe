//! The embedded transport: history on local disk in one redb file, written by group commit.
//!
//! This is the default transport. Why redb: pure Rust (no C toolchain, no separate server),
//! crash-safe copy-on-write B-trees with checksummed commits, MVCC reads that never block the
//! writer, and a single-writer model that matches how a hub orders events anyway.
//!
//! # Group commit
//! Publishers do the per-update work themselves (encode the SSE frame, serialize the record) and
//! hand it to one writer thread through a channel. The writer takes everything waiting, writes it
//! in ONE transaction, commits once (one fsync for the whole batch under [`Durability::Sync`]),
//! then dispatches the batch to the registry in position order and acknowledges each publisher.
//! Under load, batches grow by themselves, so throughput is not bounded by the disk's sync rate.
//! Dispatching after the commit means a subscriber never sees an update that a crash could take
//! back.
//!
//! # Layout
//! - `events`: position (u64) -> record (see [`super::record`]).
//! - `ids`: update id -> position of its latest occurrence (the index of [R28]; draft-07
//!   requests resume after the newest of duplicates).
//! - `first_ids`: update id -> position of its oldest retained occurrence, for 1.0 requests
//!   ([`IdOccurrence`]); `GONE` (`file.rs`) once that one was trimmed while newer ones remain.
//!   A file written before this table existed starts it empty: its older ids count as unknown
//!   to 1.0 requests (a replay from the oldest retained event).
//! - `meta`: the next position, so that positions keep increasing across restarts even when
//!   history was trimmed empty.
//!
//! # Bounds
//! History is bounded by count and age [R29]. The writer trims the oldest events in the same
//! transaction as a batch, at most `TRIM_PER_BATCH` (`retention.rs`) at a time so that
//! trimming never makes a batch slow; an idle writer trims by age every 100 ms.
//!
//! # Modules
//! This file holds the handle ([`EmbeddedTransport`]) and what publishers do on their side;
//! the rest is one concept a file:
//! - `file.rs`: the tables above, and opening the file (after `inspect.rs` found it sound);
//! - `writer.rs`: the writer thread, its batches and commits, reopening after an I/O error;
//! - `retention.rs`: trimming by count and age;
//! - `replay.rs`: the replay plan and its pages, read from snapshots.

mod file;
mod inspect;
mod replay;
mod retention;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::{LastEventId, Update};
use redb::{Database, ReadableDatabase, ReadableTableMetadata};
use tokio::sync::oneshot;

use super::record;
use super::{
    BoxFuture, Dispatcher, Frame, HistoryLimits, IdOccurrence, Matcher, ReplayPlan, Route,
    Transport, TransportError,
};
use file::{EVENTS, open_database};
use writer::{Message, Request, Writer};

/// What an acknowledged publish survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Each batch is synced to disk (fsync) before its publishes are acknowledged: an
    /// acknowledged update survives a process crash, `kill -9` and a power loss.
    #[default]
    Sync,
    /// Batches are committed without a sync and acknowledged at once; a synced commit follows
    /// within 100 ms. A crash or power loss can lose the updates of the last 100 ms. For
    /// deployments that prefer throughput to the last fraction of a second of history.
    Periodic,
}

/// Why the history file could not be opened. The message names the file and what to do.
#[derive(Debug, thiserror::Error)]
#[error("history file {}: {problem}; {fix}", path.display())]
pub struct OpenError {
    /// The history file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// History in a redb file. A cheap `Clone` handle.
#[derive(Debug, Clone)]
pub struct EmbeddedTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<Store>,
    matcher: Matcher,
    /// Dropping the last handle drops this sender: the writer sees the channel close, commits
    /// what it has, and exits (the writer thread's drop guard).
    requests: Sender<Message>,
}

/// The database, replaceable after an I/O error (redb refuses further use of a database that
/// saw one until it is reopened).
#[derive(Debug)]
struct Store {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl Store {
    /// The database handle. While the writer reopens it (tens of milliseconds), waits up to
    /// two seconds rather than failing: callers run on blocking threads or the writer itself.
    fn db(&self) -> Result<Arc<Database>, TransportError> {
        for _ in 0..200 {
            if let Some(db) = self.db.read().unwrap().clone() {
                return Ok(db);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(TransportError::Storage(
            "the history file could not be reopened after an I/O error".into(),
        ))
    }
}

impl EmbeddedTransport {
    /// Opens (or creates) the history file at `path` and starts the writer thread.
    pub fn open(
        path: &Path,
        dispatcher: Dispatcher,
        limits: HistoryLimits,
        durability: Durability,
    ) -> Result<EmbeddedTransport, OpenError> {
        let db = open_database(path)?;
        let store = Arc::new(Store {
            path: path.to_owned(),
            db: RwLock::new(Some(Arc::new(db))),
        });
        let (requests, receiver) = mpsc::channel();
        let matcher = dispatcher.matcher();
        let writer = Writer {
            store: store.clone(),
            dispatcher,
            limits,
            durability,
            unsynced: false,
        };
        std::thread::Builder::new()
            .name("herald-history-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| OpenError {
                path: path.to_owned(),
                problem: format!("cannot start the writer thread: {e}"),
                fix: "check the process limits".into(),
            })?;
        Ok(EmbeddedTransport {
            inner: Arc::new(Inner {
                store,
                matcher,
                requests,
            }),
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn storage_error(e: impl Into<redb::Error>) -> TransportError {
    TransportError::Storage(e.into().to_string())
}

impl EmbeddedTransport {
    /// Hands an update to the writer thread and waits for its acknowledgement.
    fn submit(&self, update: Update, keep: bool) -> BoxFuture<'static, Result<(), TransportError>> {
        // The per-update work happens here, on the publisher's task, in parallel; the writer
        // thread only writes and dispatches. A cheap route is made right away, so that
        // publishes reach the writer in the order they are called; an expensive one (many
        // topics against many templates) on a blocking thread, holding up only this publish.
        if let Some(route) = self.inner.matcher.try_route(&update) {
            let acknowledged = self.send(update, route, keep);
            return Box::pin(acknowledged);
        }
        let this = self.clone();
        Box::pin(async move {
            let route = this.inner.matcher.route_off_thread(&update).await;
            this.send(update, route, keep).await
        })
    }

    fn send(
        &self,
        update: Update,
        route: Route,
        keep: bool,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static {
        let frame = Frame::encode(&update);
        let record = keep.then(|| record::encode(&update, now_ms()));
        let (done, acknowledged) = oneshot::channel();
        let sent = self.inner.requests.send(Message::Publish(Request {
            update,
            frame,
            route,
            record,
            done,
        }));
        async move {
            sent.map_err(|_| TransportError::Closed)?;
            acknowledged.await.map_err(|_| TransportError::Closed)?
        }
    }
}

impl Transport for EmbeddedTransport {
    fn publish(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>> {
        self.submit(update, true)
    }

    fn publish_live(&self, update: Update) -> BoxFuture<'static, Result<(), TransportError>> {
        self.submit(update, false)
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let (done, closed) = oneshot::channel();
        let sent = self.inner.requests.send(Message::Close(done));
        Box::pin(async move {
            if sent.is_ok() {
                let _ = closed.await;
            }
        })
    }

    fn replay(
        &self,
        from: &LastEventId,
        occurrence: IdOccurrence,
    ) -> BoxFuture<'static, Result<ReplayPlan, TransportError>> {
        let store = self.inner.store.clone();
        let from = from.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                Self::plan(&store, &from, occurrence).map_err(storage_error)
            })
            .await
            .map_err(|e| TransportError::Storage(e.to_string()))?
        })
    }

    /// Ready while the history file is open (it is closed for a moment while the writer
    /// reopens it after an I/O error, and stays so while that fails).
    fn check_ready(&self) -> BoxFuture<'static, Result<(), TransportError>> {
        let open = self.inner.store.db.read().unwrap().is_some();
        Box::pin(std::future::ready(if open {
            Ok(())
        } else {
            Err(TransportError::Storage(
                "the history file is not open (it is being reopened after an I/O error)".into(),
            ))
        }))
    }

    fn history_len(&self) -> BoxFuture<'static, Result<Option<u64>, TransportError>> {
        let store = self.inner.store.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let db = store.db()?;
                // The table's length is kept in its header: no scan.
                let read = db.begin_read().map_err(storage_error)?;
                let events = read.open_table(EVENTS).map_err(storage_error)?;
                Ok(Some(events.len().map_err(storage_error)?))
            })
            .await
            .map_err(|e| TransportError::Storage(e.to_string()))?
        })
    }
}
