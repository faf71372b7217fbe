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
//!   ([`IdOccurrence`]); [`GONE`] once that one was trimmed while newer ones remain. A file
//!   written before this table existed starts it empty: its older ids count as unknown to 1.0
//!   requests (a replay from the oldest retained event).
//! - `meta`: the next position, so that positions keep increasing across restarts even when
//!   history was trimmed empty.
//!
//! # Bounds
//! History is bounded by count and age [R29]. The writer trims the oldest events in the same
//! transaction as a batch, at most [`TRIM_PER_BATCH`] at a time so that trimming never makes a
//! batch slow; an idle writer trims by age once a second.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_protocol::{LastEventId, Update};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::record;
use super::{
    BoxFuture, Dispatcher, Event, Frame, HistoryLimits, IdOccurrence, Matcher, Position,
    ReplayPlan, ReplaySource, ReplayStart, Route, Transport, TransportError,
};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
const FIRST_IDS: TableDefinition<&str, u64> = TableDefinition::new("first_ids");
/// In `first_ids`: the oldest occurrence was trimmed, newer ones remain.
const GONE: u64 = u64::MAX;
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_POSITION: &str = "next_position";

/// Most events one batch trims, so that a large trim is spread over several batches.
const TRIM_PER_BATCH: usize = 4096;
/// Most updates one transaction carries.
const MAX_BATCH: usize = 8192;
/// How often an idle writer wakes up to trim by age (and, under `Periodic`, to sync).
const IDLE_TICK: Duration = Duration::from_millis(100);

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

/// What the writer thread is asked to do.
#[expect(
    clippy::large_enum_variant,
    reason = "publishes are the traffic; boxing them would allocate once more per publish"
)]
enum Message {
    Publish(Request),
    /// Commit what came before, close the database cleanly and exit; answered once the file
    /// is closed.
    Close(oneshot::Sender<()>),
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

struct Request {
    update: Update,
    frame: Frame,
    /// Made on the publisher's side: the writer thread does no template matching.
    route: Route,
    /// The serialized record to store; `None` for an update that is delivered but not kept
    /// ([`Transport::publish_live`]).
    record: Option<Vec<u8>>,
    done: oneshot::Sender<Result<(), TransportError>>,
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

fn open_error(path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> OpenError {
    OpenError {
        path: path.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

mod inspect;

/// Opens (or creates) the history file. An existing file is inspected first ([`inspect`]): a
/// damaged one is refused with a message of its own and never opened for writing.
fn open_database(path: &Path) -> Result<Database, OpenError> {
    let inspection = inspect::inspect(path).map_err(|refusal| refusal.into_error(path))?;
    if inspection == inspect::Inspection::NeedsRepair {
        // Not a problem (nothing acknowledged is lost), but a slow start with a large history,
        // and a sign that the previous run was killed rather than stopped.
        tracing::info!(
            "history file {} was not closed cleanly (the previous run was killed or crashed): \
             repairing it",
            path.display()
        );
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            open_error(
                path,
                format!("cannot create directory {}: {e}", dir.display()),
                "check --data-dir and its permissions",
            )
        })?;
    }
    let db = Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => open_error(
            path,
            "is in use by another process",
            "stop the other herald, or give this one its own --data-dir",
        ),
        redb::DatabaseError::UpgradeRequired(version) => open_error(
            path,
            format!("was written in an older format (version {version})"),
            "move it away to start with an empty history",
        ),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            open_error(
                path,
                format!("cannot be opened: {io}"),
                "check that the file and its directory are readable and writable by this user",
            )
        }
        other => open_error(
            path,
            format!("is damaged or is not a Herald history file ({other})"),
            "move it away (Herald then starts with an empty history) or restore a backup; \
             it was not modified",
        ),
    })?;
    initialize(&db).map_err(|e| {
        open_error(
            path,
            format!("cannot be read as a Herald history file ({e})"),
            "move it away (Herald then starts with an empty history) or restore a backup",
        )
    })?;
    Ok(db)
}

/// Creates the tables if needed and checks that the newest record is readable. Writes nothing
/// when the tables exist, so that reopening works on a full disk.
fn initialize(db: &Database) -> Result<(), redb::Error> {
    let read = db.begin_read()?;
    let events = match read.open_table(EVENTS) {
        Ok(events) => events,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            drop(read);
            let txn = db.begin_write()?;
            txn.open_table(EVENTS)?;
            txn.open_table(IDS)?;
            txn.open_table(FIRST_IDS)?;
            txn.open_table(META)?;
            txn.commit()?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some((_, value)) = events.last()? {
        record::decode(value.value()).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn storage_error(e: impl Into<redb::Error>) -> TransportError {
    TransportError::Storage(e.into().to_string())
}

/// The one thread that writes history.
struct Writer {
    store: Arc<Store>,
    /// Owned by the writer thread: dispatch happens here, after each commit, in position order.
    dispatcher: Dispatcher,
    limits: HistoryLimits,
    durability: Durability,
    /// Under `Periodic`, whether commits were made since the last synced one.
    unsynced: bool,
}

impl Writer {
    fn run(mut self, requests: Receiver<Message>) {
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

    fn trim_by_age(&mut self) -> Result<(), redb::Error> {
        let Some(max_age) = self.limits.max_age else {
            return Ok(());
        };
        let db = self
            .store
            .db()
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        // Look before writing: an idle hub with nothing to trim makes no commits at all.
        let cutoff = now_ms().saturating_sub(max_age.as_millis() as u64);
        let oldest = {
            let read = db.begin_read()?;
            let events = read.open_table(EVENTS)?;
            events
                .first()?
                .map(|(_, v)| record::decode_stored_at(v.value()).unwrap_or(0))
        };
        if oldest.is_none_or(|stored_at| stored_at >= cutoff) {
            return Ok(());
        }
        let mut txn = db.begin_write()?;
        if self.durability == Durability::Periodic {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            self.unsynced = true;
        }
        {
            let meta = txn.open_table(META)?;
            let next = meta.get(NEXT_POSITION)?.map_or(0, |v| v.value());
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(IDS)?;
            let mut first_ids = txn.open_table(FIRST_IDS)?;
            trim(
                &mut events,
                &mut ids,
                &mut first_ids,
                &self.limits,
                next,
                now_ms(),
            )?;
        }
        txn.commit()?;
        Ok(())
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

/// Drops the oldest events past the count or age bound, at most [`TRIM_PER_BATCH`].
fn trim(
    events: &mut redb::Table<u64, &[u8]>,
    ids: &mut redb::Table<&str, u64>,
    first_ids: &mut redb::Table<&str, u64>,
    limits: &HistoryLimits,
    next: u64,
    now_ms: u64,
) -> Result<(), redb::Error> {
    let keep_from = next.saturating_sub(limits.max_events as u64);
    let cutoff = limits
        .max_age
        .map(|age| now_ms.saturating_sub(age.as_millis() as u64));
    for _ in 0..TRIM_PER_BATCH {
        let Some((position, stored_at, id)) = (match events.first()? {
            None => None,
            Some((key, value)) => {
                let record = value.value();
                let stored_at = record::decode_stored_at(record).unwrap_or(0);
                let id = record::decode_id(record).unwrap_or_default().to_owned();
                Some((key.value(), stored_at, id))
            }
        }) else {
            break;
        };
        let too_many = position < keep_from;
        let too_old = cutoff.is_some_and(|cutoff| stored_at < cutoff);
        if !too_many && !too_old {
            break;
        }
        events.remove(position)?;
        if ids.get(id.as_str())?.map(|v| v.value()) == Some(position) {
            ids.remove(id.as_str())?;
            first_ids.remove(id.as_str())?;
        } else if first_ids.get(id.as_str())?.map(|v| v.value()) == Some(position) {
            first_ids.insert(id.as_str(), GONE)?;
        }
    }
    Ok(())
}

impl EmbeddedTransport {
    fn plan(
        store: &Store,
        from: &LastEventId,
        occurrence: IdOccurrence,
    ) -> Result<ReplayPlan, redb::Error> {
        let db = store
            .db()
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        let read = db.begin_read()?;
        let meta = read.open_table(META)?;
        let next = meta.get(NEXT_POSITION)?.map_or(0, |v| v.value());
        let head = next.checked_sub(1).map(Position);
        let found = match from {
            LastEventId::After(id) => {
                let ids = read.open_table(match occurrence {
                    IdOccurrence::Latest => IDS,
                    IdOccurrence::Earliest => FIRST_IDS,
                })?;
                ids.get(id.as_str())?
                    .map(|v| v.value())
                    .filter(|&position| position != GONE)
                    .map(|position| (id.clone(), position))
            }
            LastEventId::Earliest => None,
        };
        Ok(match found {
            Some((id, position)) => ReplayPlan {
                start: ReplayStart::After(id),
                after: Some(Position(position)),
                head,
            },
            None => ReplayPlan {
                start: ReplayStart::Earliest,
                after: None,
                head,
            },
        })
    }

    fn page(
        store: &Store,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>, TransportError> {
        let db = store.db()?;
        let read = db.begin_read().map_err(storage_error)?;
        let events = read.open_table(EVENTS).map_err(storage_error)?;
        let from = after.map_or(0, |p| p.0 + 1);
        if from > through.0 {
            return Ok(Vec::new());
        }
        let mut page = Vec::new();
        for entry in events
            .range(from..=through.0)
            .map_err(storage_error)?
            .take(limit)
        {
            let (key, value) = entry.map_err(storage_error)?;
            let (update, _) = record::decode(value.value())
                .map_err(|e| TransportError::Storage(e.to_string()))?;
            page.push(Arc::new(Event::new(Position(key.value()), update)));
        }
        Ok(page)
    }
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

impl ReplaySource for EmbeddedTransport {
    fn replay_page(
        &self,
        after: Option<Position>,
        through: Position,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Arc<Event>>, TransportError>> {
        let store = self.inner.store.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Self::page(&store, after, through, limit))
                .await
                .map_err(|e| TransportError::Storage(e.to_string()))?
        })
    }
}
