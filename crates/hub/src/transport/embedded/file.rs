//! The history file on disk: its tables, and opening (or creating) it.
//!
//! The tables are described in the parent's overview (`embedded.rs`, "Layout"). Opening
//! inspects an existing file first (`inspect.rs`), so that a damaged one is refused with a
//! message of its own and never opened for writing; the writer reopens through here after an
//! I/O error.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{OpenError, inspect};
use crate::transport::record;

pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub(super) const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
pub(super) const FIRST_IDS: TableDefinition<&str, u64> = TableDefinition::new("first_ids");
/// In `first_ids`: the oldest occurrence was trimmed, newer ones remain.
pub(super) const GONE: u64 = u64::MAX;
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const NEXT_POSITION: &str = "next_position";

pub(super) fn open_error(
    path: &Path,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> OpenError {
    OpenError {
        path: path.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Opens (or creates) the history file. An existing file is inspected first ([`inspect`]): a
/// damaged one is refused with a message of its own and never opened for writing.
pub(super) fn open_database(path: &Path) -> Result<Database, OpenError> {
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
