//! The on-disk form of an update in the embedded store.
//!
//! A small, versioned binary layout rather than JSON: it is written once per publish and read
//! once per replayed event, and the id comes first so that trimming can read it without decoding
//! the rest.
//!
//! ```text
//! u8   version (1)
//! u32  id length, id bytes
//! u64  stored at, milliseconds since the Unix epoch
//! u8   flags: 1 private, 2 has type, 4 has retry
//! u64  retry                  (if flag 4)
//! u32  type length, bytes     (if flag 2)
//! u32  topic count, then each: u32 length, bytes
//! u32  data length, bytes
//! ```
//! Integers are little-endian.

use herald_protocol::Update;

const VERSION: u8 = 1;
const PRIVATE: u8 = 1;
const HAS_TYPE: u8 = 2;
const HAS_RETRY: u8 = 4;

/// A record that cannot be read back: the store is damaged or was written by something else.
#[derive(Debug, thiserror::Error)]
#[error("unreadable history record: {0}")]
pub(super) struct RecordError(&'static str);

/// Encodes `update`, stored at `stored_at_ms`.
pub(super) fn encode(update: &Update, stored_at_ms: u64) -> Vec<u8> {
    let topics_len: usize = update.topics.iter().map(|t| t.len() + 4).sum();
    let mut out = Vec::with_capacity(
        32 + update.id.len()
            + topics_len
            + update.data.len()
            + update.event_type.as_ref().map_or(0, |t| t.len()),
    );
    out.push(VERSION);
    put_str(&mut out, &update.id);
    out.extend_from_slice(&stored_at_ms.to_le_bytes());
    let mut flags = 0;
    if update.private {
        flags |= PRIVATE;
    }
    if update.event_type.is_some() {
        flags |= HAS_TYPE;
    }
    if update.retry.is_some() {
        flags |= HAS_RETRY;
    }
    out.push(flags);
    if let Some(retry) = update.retry {
        out.extend_from_slice(&retry.to_le_bytes());
    }
    if let Some(event_type) = &update.event_type {
        put_str(&mut out, event_type);
    }
    out.extend_from_slice(&(update.topics.len() as u32).to_le_bytes());
    for topic in &update.topics {
        put_str(&mut out, topic);
    }
    put_str(&mut out, &update.data);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads the id alone (for trimming).
pub(super) fn decode_id(record: &[u8]) -> Result<&str, RecordError> {
    let mut reader = Reader::new(record)?;
    reader.str()
}

/// Reads a whole record: the update and when it was stored.
pub(super) fn decode(record: &[u8]) -> Result<(Update, u64), RecordError> {
    let mut reader = Reader::new(record)?;
    let id = reader.str()?.to_owned();
    let stored_at = reader.u64()?;
    let flags = reader.u8()?;
    let retry = if flags & HAS_RETRY != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let event_type = if flags & HAS_TYPE != 0 {
        Some(reader.str()?.to_owned())
    } else {
        None
    };
    let count = reader.u32()? as usize;
    let mut topics = Vec::with_capacity(count.min(herald_protocol::MAX_TOPICS));
    for _ in 0..count {
        topics.push(reader.str()?.to_owned());
    }
    let data = reader.str()?.to_owned();
    Ok((
        Update {
            id,
            topics,
            data,
            private: flags & PRIVATE != 0,
            event_type,
            retry,
        },
        stored_at,
    ))
}

/// Reads the storage time alone (for trimming by age).
pub(super) fn decode_stored_at(record: &[u8]) -> Result<u64, RecordError> {
    let mut reader = Reader::new(record)?;
    reader.str()?;
    reader.u64()
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(record: &'a [u8]) -> Result<Reader<'a>, RecordError> {
        match record.split_first() {
            Some((&VERSION, rest)) => Ok(Reader { rest }),
            Some(_) => Err(RecordError("unknown record version")),
            None => Err(RecordError("empty record")),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.rest.len() < n {
            return Err(RecordError("truncated record"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| RecordError("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let update = Update {
            id: "urn:uuid:x".into(),
            topics: vec!["a".into(), "é/b".into()],
            data: "line 1\nline 2".into(),
            private: true,
            event_type: Some("t".into()),
            retry: Some(1500),
        };
        let record = encode(&update, 42);
        assert_eq!(decode(&record).unwrap(), (update.clone(), 42));
        assert_eq!(decode_id(&record).unwrap(), "urn:uuid:x");
        assert_eq!(decode_stored_at(&record).unwrap(), 42);
        let minimal = Update {
            event_type: None,
            retry: None,
            private: false,
            ..update
        };
        assert_eq!(decode(&encode(&minimal, 0)).unwrap().0, minimal);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let record = encode(
            &Update {
                id: "a".into(),
                topics: vec!["t".into()],
                data: "d".into(),
                private: false,
                event_type: None,
                retry: None,
            },
            1,
        );
        for cut in 0..record.len() {
            assert!(decode(&record[..cut]).is_err());
        }
        assert!(decode(&[9, 0, 0]).is_err());
    }
}
