//! Keeping history within its bounds [R29]: trimming the oldest events by count and age.
//!
//! The writer trims in the same transaction as each batch ([`trim`], at most
//! [`TRIM_PER_BATCH`] events, so that trimming never makes a batch slow), and by age when idle
//! ([`Writer::trim_by_age`]). Trimming an event keeps the id indexes right: an id whose latest
//! occurrence goes leaves both indexes; one whose oldest goes while newer ones remain is marked
//! [`GONE`] in `first_ids`.

use redb::{ReadableDatabase, ReadableTable};

use super::file::{EVENTS, FIRST_IDS, GONE, IDS, META, NEXT_POSITION};
use super::writer::Writer;
use super::{Durability, now_ms};
use crate::transport::{HistoryLimits, record};

/// Most events one batch trims, so that a large trim is spread over several batches.
const TRIM_PER_BATCH: usize = 4096;

impl Writer {
    pub(super) fn trim_by_age(&mut self) -> Result<(), redb::Error> {
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
}

/// Drops the oldest events past the count or age bound, at most [`TRIM_PER_BATCH`].
pub(super) fn trim(
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
