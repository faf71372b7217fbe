//! An incremental Server-Sent Events parser, as the WHATWG HTML standard describes it.
//!
//! Bytes go in as they arrive, in chunks cut anywhere (even inside a UTF-8 character or between
//! the CR and LF of a line ending); complete events come out. Deliberately independent of the
//! hub's encoder: the client must read what any Mercure hub writes.

use std::collections::VecDeque;
use std::time::Duration;

/// One event received from the hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field of this event (Mercure hubs set one on every update).
    pub id: Option<String>,
    /// The `event:` field: the update's type, `None` for a plain message.
    pub event_type: Option<String>,
    /// The data: the `data:` lines joined with `\n`.
    pub data: String,
    /// The `retry:` field of this event: the reconnection delay the publisher asked for.
    pub retry: Option<Duration>,
}

impl Event {
    /// The data parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(&self.data)
    }
}

/// The parser of one connection.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of a line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a LF starting the next one belongs to that line end.
    after_cr: bool,
    /// Whether the start of the stream (and its optional BOM) has been passed.
    started: bool,
    // The event being built.
    data: String,
    has_data: bool,
    event_type: Option<String>,
    id: Option<String>,
    retry: Option<Duration>,
    /// The last event id buffer: persists across events, as in `EventSource` (`Some("")`: reset).
    last_event_id: Option<String>,
    /// The latest `retry:` seen on this connection, whether or not its event was dispatched.
    reconnection_time: Option<Duration>,
    ready: VecDeque<Event>,
}

impl Parser {
    /// A parser at the start of a stream (a leading UTF-8 BOM is skipped), with no last
    /// event id.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feeds bytes; complete events become available from [`Parser::next_event`].
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if !self.started {
            // A UTF-8 BOM may start the stream; wait for three bytes to decide.
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(chunk);
            if head.len() < 3 && b"\xEF\xBB\xBF".starts_with(&head) {
                self.line = head;
                return;
            }
            self.started = true;
            let start = if head.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            self.feed_started(&head[start..]);
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = chunk {
                chunk = rest;
            }
        }
        self.feed_started(chunk);
    }

    fn feed_started(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&rest[..at]);
            let is_cr = rest[at] == b'\r';
            rest = &rest[at + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            self.process_line(&line);
        }
        self.line.extend_from_slice(rest);
    }

    fn process_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (name, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        match name {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event_type = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    let retry = Duration::from_millis(ms);
                    self.retry = Some(retry);
                    self.reconnection_time = Some(retry);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let data = std::mem::take(&mut self.data);
        let event_type = self.event_type.take().filter(|t| !t.is_empty());
        let id = self.id.take();
        let retry = self.retry.take();
        // The standard sets the last event id as soon as the `id:` line is read; it is set here
        // only once the event is complete, so that an event cut by a disconnection is not
        // counted as received (the reconnection asks for it again).
        if let Some(id) = &id {
            self.last_event_id = Some(id.clone());
        }
        if !std::mem::take(&mut self.has_data) {
            // Per the standard, an event without data is not dispatched (its id and retry still
            // count).
            return;
        }
        self.ready.push_back(Event {
            id,
            event_type,
            data,
            retry,
        });
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    /// The last event id seen on this connection (`id:` of any complete event, dispatched or
    /// not): `None` if there was none, `Some("")` if the last one reset it.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The latest reconnection time (`retry:`) the stream asked for.
    pub fn reconnection_time(&self) -> Option<Duration> {
        self.reconnection_time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk);
            while let Some(event) = parser.next_event() {
                events.push(event);
            }
        }
        events
    }

    fn event(id: &str, data: &str) -> Event {
        Event {
            id: Some(id.into()),
            data: data.into(),
            ..Event::default()
        }
    }

    #[test]
    fn parses_a_mercure_frame() {
        let events = parse_all(&[
            b":\n\nevent: book\nretry: 1500\nid: urn:uuid:1\ndata: {\"a\":1}\ndata: \ndata:  x\n\n",
        ]);
        assert_eq!(
            events,
            vec![Event {
                id: Some("urn:uuid:1".into()),
                event_type: Some("book".into()),
                data: "{\"a\":1}\n\n x".into(),
                retry: Some(Duration::from_millis(1500)),
            }]
        );
    }

    #[test]
    fn any_cut_of_the_bytes_gives_the_same_events() {
        let stream: &[u8] =
            "\u{feff}id: 1\r\ndata: é\r\n\r\nid: 2\rdata: b\r\rid: 3\ndata: c\n\n".as_bytes();
        let whole = parse_all(&[stream]);
        assert_eq!(
            whole,
            vec![event("1", "é"), event("2", "b"), event("3", "c")]
        );
        for cut in 0..stream.len() {
            assert_eq!(
                parse_all(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn comments_incomplete_events_and_dataless_events_are_not_dispatched() {
        let mut parser = Parser::new();
        parser.feed(b": hello\n\nid: 7\nretry: 250\n\nretry: x\nid: 8\ndata: partial");
        assert_eq!(parser.next_event(), None);
        assert_eq!(parser.last_event_id(), Some("7"));
        assert_eq!(parser.reconnection_time(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_field_without_colon_and_an_unknown_field_are_handled() {
        let events = parse_all(&[b"data\nfoo: bar\ndata:x\n\n"]);
        assert_eq!(
            events,
            vec![Event {
                data: "\nx".into(),
                ..Event::default()
            }]
        );
    }
}
