//! Inspecting an existing history file before redb opens it for writing.
//!
//! redb repairs a file on open when its last writer did not close it cleanly (and Herald's
//! writer is usually stopped by the process exiting, so that is the common case). The repair
//! writes: it rewrites the header from the file's length, then walks the trees. On a damaged
//! file that means bytes of the only copy of someone's history are changed before the damage is
//! even reported, and the error that comes out (an I/O error past the end of a truncated file)
//! reads like a permissions problem.
//!
//! So an existing file is inspected first, and a damaged file is never opened for writing:
//! - its first bytes say whether it is empty, a redb database, or some other program's file;
//! - redb opens it read-only (which also finds out whether another process has it open);
//! - when redb would need to repair it, the repair is rehearsed on a [`DryRun`] backend, which
//!   reads the file and keeps every write in memory, so the file itself is not touched;
//! - the database must hold Herald's tables (or no table at all: a start that stopped before
//!   creating them), and its newest record must decode.
//!
//! Each kind of damage has its own [`Damage`] variant and its own one-line message naming what
//! is wrong and what to do. Only when the inspection passes does the caller open the file for
//! writing, and redb's repair, rehearsed here, then runs on the real file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{ReadableDatabase, ReadableTable, StorageBackend, TableHandle};

use super::OpenError;
use super::file::{EVENTS, open_error};
use crate::transport::record;

/// redb's signature, the first bytes of every redb file.
const REDB_MAGIC: &[u8] = b"redb\x1A\x0A\xA9\x0D\x0A";
/// The size of redb's file header (its magic, geometry and two commit slots).
const REDB_HEADER_LEN: u64 = 320;

/// What is wrong with an existing history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Damage {
    /// Zero bytes: whatever history there was is gone, and starting on it would hide that.
    Empty,
    /// The file ends before the data its header points to.
    Truncated { len: u64, detail: String },
    /// The signature of another program's file format.
    OtherFormat(&'static str),
    /// Neither redb's signature nor any other known one: random or overwritten bytes.
    Unrecognized,
    /// A valid redb database without Herald's tables: another program's.
    ForeignDatabase { tables: Vec<String> },
    /// A redb database whose pages or records do not check out.
    Corrupted(String),
}

impl Damage {
    /// The error the start stops with: one line, naming the file, the damage and what to do.
    pub(super) fn into_error(self, path: &Path) -> OpenError {
        const UNTOUCHED: &str = "it was not modified";
        match self {
            Damage::Empty => open_error(
                path,
                "is empty (0 bytes): the history it held is gone, so Herald does not start \
                 as if nothing had happened",
                format!(
                    "restore it from a backup, or delete it to start with an empty history; \
                     {UNTOUCHED}"
                ),
            ),
            Damage::Truncated { len, detail } => open_error(
                path,
                format!("is truncated: its end is missing ({len} bytes left; {detail})"),
                format!(
                    "restore it from a backup, or move it away to start with an empty \
                     history; {UNTOUCHED}"
                ),
            ),
            Damage::OtherFormat(format) => open_error(
                path,
                format!("is not a Herald history file but {format}"),
                format!(
                    "give Herald a --data-dir of its own, or move the file away to start \
                     with an empty history; {UNTOUCHED}"
                ),
            ),
            Damage::Unrecognized => open_error(
                path,
                "is not a Herald history file: its first bytes match no known format \
                 (overwritten, or random data)",
                format!(
                    "restore it from a backup, or move it away to start with an empty \
                     history; {UNTOUCHED}"
                ),
            ),
            Damage::ForeignDatabase { tables } => open_error(
                path,
                format!(
                    "is a redb database of another program (tables: {}), not a Herald \
                     history file",
                    tables.join(", ")
                ),
                format!(
                    "give Herald a --data-dir of its own, or move the file away to start \
                     with an empty history; {UNTOUCHED}"
                ),
            ),
            Damage::Corrupted(detail) => open_error(
                path,
                format!("is damaged ({detail})"),
                format!(
                    "restore it from a backup, or move it away to start with an empty \
                     history; {UNTOUCHED}"
                ),
            ),
        }
    }
}

/// Why an existing file could not be inspected: damage, or a reason that is not the file's
/// fault (another process has it, it cannot be read).
#[derive(Debug)]
pub(super) enum Refusal {
    Damaged(Damage),
    Other(OpenError),
}

impl From<Damage> for Refusal {
    fn from(damage: Damage) -> Refusal {
        Refusal::Damaged(damage)
    }
}

impl Refusal {
    pub(super) fn into_error(self, path: &Path) -> OpenError {
        match self {
            Refusal::Damaged(damage) => damage.into_error(path),
            Refusal::Other(error) => error,
        }
    }
}

/// What [`inspect`] found in a file redb may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inspection {
    /// No file yet, or one that was closed cleanly.
    Sound,
    /// Left open by a process that did not close it (killed, crashed): redb repairs it on
    /// open, and the repair was just rehearsed without writing.
    NeedsRepair,
}

/// Inspects the history file at `path`, if there is one, without writing to it. `Ok` means
/// that redb may open it for writing: it is absent, sound, or left by a crash in a state that
/// redb's repair was just seen to handle.
pub(super) fn inspect(path: &Path) -> Result<Inspection, Refusal> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Inspection::Sound),
        Err(e) => return Err(Refusal::Other(unreadable(path, &e))),
    };
    let len = file
        .metadata()
        .map_err(|e| Refusal::Other(unreadable(path, &e)))?
        .len();
    if len == 0 {
        return Err(Damage::Empty.into());
    }
    let mut head = Vec::with_capacity(REDB_HEADER_LEN as usize);
    (&mut file)
        .take(REDB_HEADER_LEN)
        .read_to_end(&mut head)
        .map_err(|e| Refusal::Other(unreadable(path, &e)))?;
    if !head.starts_with(REDB_MAGIC) {
        if REDB_MAGIC.starts_with(&head) {
            return Err(truncated(len, "shorter than redb's signature").into());
        }
        return Err(match other_format(&head) {
            Some(format) => Damage::OtherFormat(format),
            None => Damage::Unrecognized,
        }
        .into());
    }
    if len < REDB_HEADER_LEN {
        return Err(truncated(len, "shorter than redb's header").into());
    }
    match redb::Builder::new().open_read_only(path) {
        Ok(db) => check_contents(&db)
            .map(|()| Inspection::Sound)
            .map_err(Refusal::from),
        Err(redb::DatabaseError::RepairAborted) => {
            rehearse_repair(path, file, len).map(|()| Inspection::NeedsRepair)
        }
        Err(e) => Err(refusal(path, e, len, false)),
    }
}

/// Opens the file as redb would for writing, on a [`DryRun`] backend, and checks the result.
fn rehearse_repair(path: &Path, file: File, len: u64) -> Result<(), Refusal> {
    let dry_run = DryRun::new(file, len);
    let read_past_end = dry_run.read_past_end.clone();
    let opened = redb::Builder::new().create_with_backend(dry_run);
    let past_end = || read_past_end.load(Ordering::Relaxed);
    match opened {
        Ok(db) => check_contents(&db).map_err(|damage| match damage {
            Damage::Corrupted(detail) if past_end() => truncated(len, &detail).into(),
            other => other.into(),
        }),
        Err(e) => Err(refusal(path, e, len, past_end())),
    }
}

/// The tables must be Herald's (or none yet), and the newest record must decode.
fn check_contents(db: &impl ReadableDatabase) -> Result<(), Damage> {
    let corrupted = |e: &dyn std::fmt::Display| Damage::Corrupted(e.to_string());
    let read = db.begin_read().map_err(|e| corrupted(&e))?;
    let tables: Vec<String> = read
        .list_tables()
        .map_err(|e| corrupted(&e))?
        .map(|table| table.name().to_owned())
        .collect();
    if !tables.iter().any(|name| name == EVENTS.name()) {
        return match tables.is_empty() {
            // A first start stopped between creating the file and its tables: nothing to lose.
            true => Ok(()),
            false => Err(Damage::ForeignDatabase { tables }),
        };
    }
    let events = read.open_table(EVENTS).map_err(|e| match e {
        redb::TableError::TableTypeMismatch { .. } => Damage::ForeignDatabase {
            tables: tables.clone(),
        },
        other => corrupted(&other),
    })?;
    if let Some((_, value)) = events.last().map_err(|e| corrupted(&e))? {
        record::decode(value.value()).map_err(|e| corrupted(&e))?;
    }
    Ok(())
}

/// The refusal for an error of redb's while opening a file that has redb's signature.
fn refusal(path: &Path, error: redb::DatabaseError, len: u64, read_past_end: bool) -> Refusal {
    let detail = error.to_string();
    let damage = match error {
        redb::DatabaseError::DatabaseAlreadyOpen
        | redb::DatabaseError::LockProtocolMismatch
        | redb::DatabaseError::UpgradeRequired(_) => {
            return Refusal::Other(not_damage(path, error));
        }
        _ if read_past_end => truncated(len, &detail),
        // redb's words for a file whose length does not fit its header.
        _ if detail.contains("truncated") || detail.contains("valid region layout") => {
            truncated(len, &detail)
        }
        _ => Damage::Corrupted(detail),
    };
    Refusal::Damaged(damage)
}

fn truncated(len: u64, detail: &str) -> Damage {
    Damage::Truncated {
        len,
        detail: detail.to_owned(),
    }
}

/// Refusals that are not the file's damage.
fn not_damage(path: &Path, error: redb::DatabaseError) -> OpenError {
    let (problem, fix) = match error {
        redb::DatabaseError::UpgradeRequired(version) => (
            format!("was written in an older format (version {version})"),
            "move it away to start with an empty history",
        ),
        _ => (
            "is in use by another process".to_owned(),
            "stop the other herald, or give this one its own --data-dir",
        ),
    };
    open_error(path, problem, fix)
}

fn unreadable(path: &Path, error: &io::Error) -> OpenError {
    open_error(
        path,
        format!("cannot be read: {error}"),
        "check that the file and its directory are readable and writable by this user",
    )
}

/// The format whose signature starts `head`, as "a …" for the message.
fn other_format(head: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"SQLite format 3\0", "a SQLite database"),
        (b"\x1F\x8B", "a gzip archive"),
        (b"PK\x03\x04", "a zip archive"),
        (b"\x89PNG\r\n\x1A\n", "a PNG image"),
        (b"%PDF-", "a PDF document"),
        (b"\x7FELF", "an executable (ELF)"),
        (b"\xFD7zXZ\0", "an xz archive"),
        (b"\x28\xB5\x2F\xFD", "a zstd archive"),
    ];
    if let Some((_, name)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(name);
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // The header read may cut a character in two.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    text.chars()
        .all(|c| !c.is_control() || c.is_whitespace())
        .then_some("a text file")
}

/// A storage backend that reads the file and keeps writes in memory: redb can open, repair and
/// commit on it, and the file is unchanged.
#[derive(Debug)]
struct DryRun {
    file: Mutex<File>,
    overlay: Mutex<Overlay>,
    /// Set when redb reads beyond the end: the file is shorter than its pages say.
    read_past_end: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Overlay {
    /// The length redb sees.
    len: u64,
    /// How many bytes at the start are still the file's (a shrink hides the rest for good).
    file_visible: u64,
    /// Blocks written by redb, by block number.
    blocks: HashMap<u64, Box<[u8]>>,
}

const BLOCK: u64 = 4096;

impl DryRun {
    fn new(file: File, len: u64) -> DryRun {
        DryRun {
            file: Mutex::new(file),
            overlay: Mutex::new(Overlay {
                len,
                file_visible: len,
                blocks: HashMap::new(),
            }),
            read_past_end: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Reads `out` at `offset` as the file shows it: zeros past its visible end.
    fn read_file(&self, offset: u64, out: &mut [u8], file_visible: u64) -> io::Result<()> {
        let from_file = file_visible.saturating_sub(offset).min(out.len() as u64) as usize;
        if from_file > 0 {
            let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut out[..from_file])?;
        }
        out[from_file..].fill(0);
        Ok(())
    }

    /// The current content of block `number` as the file shows it.
    fn base_block(&self, number: u64, file_visible: u64) -> io::Result<Box<[u8]>> {
        let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
        self.read_file(number * BLOCK, &mut block, file_visible)?;
        Ok(block)
    }
}

impl StorageBackend for DryRun {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let overlay = self.lock();
        let end = offset.checked_add(out.len() as u64);
        if end.is_none_or(|end| end > overlay.len) {
            self.read_past_end.store(true, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end ({})",
                    out.len(),
                    overlay.len
                ),
            ));
        }
        // Runs of blocks redb has not written are read from the file in one call.
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let (number, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(out.len() - done);
            if let Some(block) = overlay.blocks.get(&number) {
                out[done..done + n].copy_from_slice(&block[within..within + n]);
                done += n;
                continue;
            }
            let mut run = n;
            while done + run < out.len()
                && !overlay
                    .blocks
                    .contains_key(&((offset + (done + run) as u64) / BLOCK))
            {
                run += (BLOCK as usize).min(out.len() - done - run);
            }
            self.read_file(at, &mut out[done..done + run], overlay.file_visible)?;
            done += run;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut overlay = self.lock();
        if len < overlay.len {
            overlay.blocks.retain(|&number, _| number * BLOCK < len);
            // The tail of the last block past the new end reads as zeros if it grows back.
            if !len.is_multiple_of(BLOCK) {
                let number = len / BLOCK;
                let visible = overlay.file_visible;
                let block = match overlay.blocks.remove(&number) {
                    Some(block) => block,
                    None => self.base_block(number, visible)?,
                };
                let mut block = block;
                block[(len % BLOCK) as usize..].fill(0);
                overlay.blocks.insert(number, block);
            }
            overlay.file_visible = overlay.file_visible.min(len);
        }
        overlay.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut overlay = self.lock();
        let end = offset + data.len() as u64;
        if end > overlay.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of the storage",
            ));
        }
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (number, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(data.len() - done);
            if !overlay.blocks.contains_key(&number) {
                let block = self.base_block(number, overlay.file_visible)?;
                overlay.blocks.insert(number, block);
            }
            let block = overlay.blocks.get_mut(&number).expect("inserted above");
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

impl DryRun {
    fn lock(&self) -> std::sync::MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognized_by_their_signature() {
        assert_eq!(
            other_format(b"SQLite format 3\0\x10\0"),
            Some("a SQLite database")
        );
        assert_eq!(other_format(b"hello, world\n"), Some("a text file"));
        assert_eq!(other_format(b"\x00\x9F\x13\xC0\xFF"), None);
    }

    #[test]
    fn dry_run_reads_the_file_and_keeps_writes_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let dry = DryRun::new(File::open(&path).unwrap(), original.len() as u64);
        dry.write(4090, &[0xAA; 10]).unwrap();
        let mut out = [0u8; 20];
        dry.read(4085, &mut out).unwrap();
        assert_eq!(&out[..5], &original[4085..4090]);
        assert_eq!(&out[5..15], &[0xAA; 10]);
        assert_eq!(&out[15..], &original[4100..4105]);
        // Shrink then grow: the hidden part reads as zeros.
        dry.set_len(5000).unwrap();
        dry.set_len(9000).unwrap();
        dry.read(4995, &mut out[..10]).unwrap();
        assert_eq!(&out[..5], &original[4995..5000]);
        assert_eq!(&out[5..10], &[0; 5]);
        assert!(!dry.read_past_end.load(Ordering::Relaxed));
        assert!(dry.read(8995, &mut out[..10]).is_err());
        assert!(dry.read_past_end.load(Ordering::Relaxed));
        assert_eq!(std::fs::read(&path).unwrap(), original);
    }
}
