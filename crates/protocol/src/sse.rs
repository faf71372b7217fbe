//! Server-Sent Events framing [R9][R10].
//!
//! An update is encoded once into a [`Bytes`] frame when it is published; every subscriber's
//! queue then holds a reference-counted clone of the same bytes. That is why this module returns
//! `Bytes` and not a writer-based API: the hot path never serializes per subscriber.

use bytes::{BufMut, Bytes, BytesMut};

use crate::Update;

/// The comment written as soon as a stream opens, so that a browser's `EventSource.onopen` fires
/// without waiting for the first event [R7].
pub const OPENING_COMMENT: &[u8] = b":\n";

/// The comment written when a stream has been idle for the heartbeat period [R10].
pub const HEARTBEAT_COMMENT: &[u8] = b":\n\n";

/// Encodes `update` as one SSE event: `event:` (if set), `retry:` (if set), `id:`, one `data:`
/// line per line of data, and a blank line.
///
/// Lines are split on CRLF, CR and LF, as the SSE parser in browsers will split them; an empty
/// line becomes `data: ` so that blank lines survive. Leading spaces survive because every value
/// is written after exactly one space, which the SSE parser strips.
///
/// Whatever the update, the frame is exactly one event: the id and the type are single-line
/// fields, and a line break in them would start fields (or events) of its own. Publish
/// validation refuses such values ([`crate::PublishError`]); this function cannot fail, so a
/// line break that still reaches it (an embedder's own update) is written as U+FFFD.
pub fn encode(update: &Update) -> Bytes {
    let mut frame = BytesMut::with_capacity(update.data.len() + update.id.len() + 32);
    encode_into(update, &mut frame);
    frame.freeze()
}

/// [`encode`], appending to `frame`: for a caller that puts something before or after it in
/// the same buffer (an HTTP/1.1 chunk's framing, say).
pub fn encode_into(update: &Update, frame: &mut BytesMut) {
    if let Some(event_type) = &update.event_type {
        put_single_line_field(frame, b"event", event_type);
    }
    if let Some(retry) = update.retry {
        put_field(frame, b"retry", &retry.to_string());
    }
    put_single_line_field(frame, b"id", &update.id);
    for line in data_lines(&update.data) {
        put_field(frame, b"data", line);
    }
    frame.put_u8(b'\n');
}

fn put_field(frame: &mut BytesMut, name: &[u8], value: &str) {
    frame.put_slice(name);
    frame.put_slice(b": ");
    frame.put_slice(value.as_bytes());
    frame.put_u8(b'\n');
}

/// Writes a field whose value must stay on one line: CR and LF become U+FFFD.
fn put_single_line_field(frame: &mut BytesMut, name: &[u8], value: &str) {
    if !value.contains(['\r', '\n']) {
        return put_field(frame, name, value);
    }
    put_field(frame, name, &value.replace(['\r', '\n'], "\u{FFFD}"));
}

/// Splits data the way an SSE parser splits lines: on `\r\n`, `\r` or `\n`. Empty data is one
/// empty line, so that the event still carries a `data:` field and is dispatched by browsers.
fn data_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(data: &str) -> Update {
        Update {
            id: "urn:uuid:1".into(),
            topics: vec!["t".into()],
            data: data.into(),
            private: false,
            event_type: None,
            retry: None,
        }
    }

    fn encoded(u: &Update) -> String {
        String::from_utf8(encode(u).to_vec()).unwrap()
    }

    #[test]
    fn r9_single_line() {
        assert_eq!(encoded(&update("hello")), "id: urn:uuid:1\ndata: hello\n\n");
    }

    #[test]
    fn r9_every_line_ending_splits_and_empty_lines_survive() {
        assert_eq!(
            encoded(&update("a\nb\r\nc\rd\n\ne")),
            "id: urn:uuid:1\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \ndata: e\n\n"
        );
    }

    #[test]
    fn r9_trailing_newline_gives_a_trailing_empty_data_line() {
        assert_eq!(
            encoded(&update("a\n")),
            "id: urn:uuid:1\ndata: a\ndata: \n\n"
        );
    }

    #[test]
    fn r9_empty_data_still_has_a_data_field() {
        assert_eq!(encoded(&update("")), "id: urn:uuid:1\ndata: \n\n");
    }

    #[test]
    fn r9_leading_spaces_survive() {
        assert_eq!(encoded(&update("  x")), "id: urn:uuid:1\ndata:   x\n\n");
    }

    #[test]
    fn r9_line_breaks_in_id_or_type_never_start_another_field() {
        let mut u = update("x");
        u.id = "a\n\ndata: injected\r".into();
        u.event_type = Some("t\r\nid: forged".into());
        assert_eq!(
            encoded(&u),
            "event: t\u{FFFD}\u{FFFD}id: forged\nid: a\u{FFFD}\u{FFFD}data: injected\u{FFFD}\ndata: x\n\n"
        );
    }

    #[test]
    fn r9_type_and_retry_come_first() {
        let mut u = update("{}");
        u.event_type = Some("book".into());
        u.retry = Some(1500);
        assert_eq!(
            encoded(&u),
            "event: book\nretry: 1500\nid: urn:uuid:1\ndata: {}\n\n"
        );
    }
}
