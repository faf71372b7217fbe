//! Replay from the history file: the plan (where a reconnecting subscriber resumes) and pages.
//!
//! Both read a redb snapshot on a blocking thread, so they never wait for the writer nor hold
//! it up (MVCC). The plan looks `Last-Event-ID` up in `ids` (draft-07) or `first_ids` (1.0)
//! and reads the head from `meta`; pages are ranges of `events`.

use std::sync::Arc;

use herald_protocol::LastEventId;
use redb::ReadableDatabase;

use super::file::{EVENTS, FIRST_IDS, GONE, IDS, META, NEXT_POSITION};
use super::{EmbeddedTransport, Store, storage_error};
use crate::transport::{
    BoxFuture, Event, IdOccurrence, Position, ReplayPlan, ReplaySource, ReplayStart,
    TransportError, record,
};

impl EmbeddedTransport {
    pub(super) fn plan(
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
