//! Reading a publish request body into an [`Update`] [R12][R13][R17].
//!
//! Two body formats are accepted: the protocol's `application/x-www-form-urlencoded` form, and,
//! beyond the reference hub, a JSON object of the same fields, the shape simple SSE tutorials
//! publish with. Both go through the same validation.
//!
//! # The rules of each edition [V3]
//! Both editions refuse, with 400, control characters (C0, DEL, C1) in `topic`, `id` and `type`:
//! `id` and `type` are written into the SSE framing, where CR, LF or NUL would inject fields,
//! and no topic needs one; `type=mercure` (the event type of the hub's own subscription events
//! in 1.0); and, with 413, a `topic`, `id`, `type` or `retry` longer than [`MAX_FIELD_BYTES`].
//! Mercure 1.0 publishes ([`PublishRequest::into_update_for`]) also need exactly one `topic`
//! (draft-07's alternate topics are gone) and a `retry` of ASCII digits only; draft-07 keeps
//! its lenient `retry` (surrounding spaces, a JSON number). The reserved namespace is checked by
//! the hub, which knows its URL ([`crate::update::is_reserved_topic_at`]).

use serde::Deserialize;
use serde_json::Value;

use crate::subscribe::has_control_character;
use crate::{MAX_TOPICS, ProtocolVersion, Update, generate_id};

/// The longest `topic`, `id`, `type` or `retry` accepted, in bytes; past it the publish is
/// refused with 413 [V3].
pub const MAX_FIELD_BYTES: usize = 16 << 10;

/// The SSE event type of the hub's own 1.0 subscription events: publishers may not use it.
pub const RESERVED_EVENT_TYPE: &str = "mercure";

/// Why a publish body was refused. Each message is safe to show to the publisher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The body has no `topic` field [R12].
    #[error("missing \"topic\": an update needs at least one topic")]
    NoTopic,
    /// A `topic` field is empty.
    #[error("empty \"topic\": every topic must be a non-empty IRI")]
    EmptyTopic,
    /// More `topic` fields than the hub allows for one update.
    #[error("too many topics: {count} given, at most {max} allowed")]
    TooManyTopics {
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// The `id` cannot be an update id (reserved, control characters, ...); says why.
    #[error("invalid \"id\": {0}")]
    InvalidId(&'static str),
    /// The `type` would break the SSE framing.
    #[error("invalid \"type\": it must not contain control characters")]
    InvalidType,
    /// `type=mercure`, the type of the hub's own subscription events.
    #[error("invalid \"type\": \"mercure\" is reserved for the hub's subscription events")]
    ReservedType,
    /// A topic with a control character.
    #[error("invalid \"topic\": it must not contain control characters")]
    InvalidTopic,
    /// A 1.0 publish with more than one `topic`.
    #[error("too many \"topic\" fields: a Mercure 1.0 update has exactly one topic")]
    SeveralTopics,
    /// A field longer than [`MAX_FIELD_BYTES`] (413).
    #[error("field {field:?} too large: {len} bytes, at most {max} allowed")]
    FieldTooLarge {
        /// The field's name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The `retry` is not a number of milliseconds (the value given).
    #[error("invalid \"retry\": {0:?} is not a non-negative integer (milliseconds)")]
    InvalidRetry(String),
    /// A JSON body that does not parse or has the wrong shape (the parser's message).
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// A form body whose decoded text is not UTF-8.
    #[error("invalid form body: not UTF-8 after percent-decoding")]
    InvalidEncoding,
}

/// The fields of a publish request, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishRequest {
    /// The `topic` fields, in order [R12].
    pub topics: Vec<String>,
    /// The `data` field, if any.
    pub data: Option<String>,
    /// Whether a `private` field was present [R19].
    pub private: bool,
    /// The `id` field, if any [R13].
    pub id: Option<String>,
    /// The `type` field, if any.
    pub event_type: Option<String>,
    /// The `retry` field, as given, if any.
    pub retry: Option<String>,
}

impl PublishRequest {
    /// Reads an `application/x-www-form-urlencoded` body. `private` counts as set whatever its
    /// value, as the specification says [R12]; unknown fields are ignored; a repeated
    /// single-valued field keeps its last value.
    pub fn from_form(body: &[u8]) -> Result<PublishRequest, PublishError> {
        let mut request = PublishRequest::default();
        for pair in crate::form::pairs(body) {
            let (name, value) = pair.map_err(|_| PublishError::InvalidEncoding)?;
            match &*name {
                "topic" => request.topics.push(value.into_owned()),
                "data" => request.data = Some(value.into_owned()),
                "private" => request.private = true,
                "id" => request.id = Some(value.into_owned()),
                "type" => request.event_type = Some(value.into_owned()),
                "retry" => request.retry = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(request)
    }

    /// Reads a JSON body: `{"topic": "..." | ["..."], "data": ..., "private": bool, "id": "...",
    /// "type": "...", "retry": number}`. A `data` that is not a string is published as its JSON
    /// text, so `"data": {"status": "done"}` works as a user would hope.
    pub fn from_json(body: &[u8]) -> Result<PublishRequest, PublishError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Topics {
            One(String),
            Many(Vec<String>),
        }
        #[derive(Deserialize)]
        struct JsonBody {
            topic: Option<Topics>,
            data: Option<Value>,
            #[serde(default)]
            private: bool,
            id: Option<String>,
            #[serde(rename = "type")]
            event_type: Option<String>,
            retry: Option<Value>,
        }
        let body: JsonBody =
            serde_json::from_slice(body).map_err(|e| PublishError::InvalidJson(e.to_string()))?;
        Ok(PublishRequest {
            topics: match body.topic {
                None => Vec::new(),
                Some(Topics::One(topic)) => vec![topic],
                Some(Topics::Many(topics)) => topics,
            },
            data: body.data.map(|data| match data {
                Value::String(text) => text,
                other => other.to_string(),
            }),
            private: body.private,
            id: body.id,
            event_type: body.event_type,
            retry: body.retry.map(|retry| match retry {
                Value::String(text) => text,
                other => other.to_string(),
            }),
        })
    }

    /// Validates the fields by draft-07's rules and builds the update, generating an id when
    /// none was given [R13].
    pub fn into_update(self) -> Result<Update, PublishError> {
        self.into_update_for(ProtocolVersion::Draft07)
    }

    /// Validates the fields by the rules of `version` (see the module docs) and builds the
    /// update, generating an id when none was given [R13][V3].
    pub fn into_update_for(self, version: ProtocolVersion) -> Result<Update, PublishError> {
        if self.topics.is_empty() {
            return Err(PublishError::NoTopic);
        }
        if self.topics.iter().any(String::is_empty) {
            return Err(PublishError::EmptyTopic);
        }
        if self.topics.len() > MAX_TOPICS {
            return Err(PublishError::TooManyTopics {
                count: self.topics.len(),
                max: MAX_TOPICS,
            });
        }
        if version == ProtocolVersion::V1 && self.topics.len() > 1 {
            return Err(PublishError::SeveralTopics);
        }
        for topic in &self.topics {
            check_length("topic", topic)?;
            if has_control_character(topic) {
                return Err(PublishError::InvalidTopic);
            }
        }
        let id = match self.id {
            None => generate_id(),
            Some(id) => {
                check_length("id", &id)?;
                validate_id(id)?
            }
        };
        if let Some(event_type) = self.event_type.as_deref() {
            check_length("type", event_type)?;
            if has_control_character(event_type) {
                return Err(PublishError::InvalidType);
            }
            if event_type == RESERVED_EVENT_TYPE {
                return Err(PublishError::ReservedType);
            }
        }
        let retry = match self.retry {
            None => None,
            Some(text) => {
                check_length("retry", &text)?;
                let digits = match version {
                    ProtocolVersion::V1 => text.as_str(),
                    ProtocolVersion::Draft07 => text.trim(),
                };
                if version == ProtocolVersion::V1 && !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PublishError::InvalidRetry(text));
                }
                Some(
                    digits
                        .parse::<u64>()
                        .map_err(|_| PublishError::InvalidRetry(text.clone()))?,
                )
            }
        };
        Ok(Update {
            id,
            topics: self.topics,
            data: self.data.unwrap_or_default(),
            private: self.private,
            event_type: self.event_type.filter(|t| !t.is_empty()),
            retry,
        })
    }
}

fn validate_id(id: String) -> Result<String, PublishError> {
    if id.is_empty() {
        return Err(PublishError::InvalidId("it must not be empty"));
    }
    if id == crate::subscribe::EARLIEST {
        return Err(PublishError::InvalidId(
            "\"earliest\" is reserved: it asks for the whole history in Last-Event-ID",
        ));
    }
    if id.starts_with('#') {
        return Err(PublishError::InvalidId("it must not start with '#'"));
    }
    if has_control_character(&id) {
        return Err(PublishError::InvalidId(
            "it must not contain control characters",
        ));
    }
    Ok(id)
}

fn check_length(field: &'static str, value: &str) -> Result<(), PublishError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(PublishError::FieldTooLarge {
            field,
            len: value.len(),
            max: MAX_FIELD_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<Update, PublishError> {
        PublishRequest::from_form(body.as_bytes())?.into_update()
    }

    #[test]
    fn r12_form_fields() {
        let u = form("topic=a&topic=b&data=hello%0Aworld&private=&id=x1&type=t&retry=10&other=1")
            .unwrap();
        assert_eq!(u.topics, ["a", "b"]);
        assert_eq!(u.data, "hello\nworld");
        assert!(u.private);
        assert_eq!(u.id, "x1");
        assert_eq!(u.event_type.as_deref(), Some("t"));
        assert_eq!(u.retry, Some(10));
    }

    #[test]
    fn r12_private_any_value_counts() {
        assert!(form("topic=a&private=false").unwrap().private);
        assert!(!form("topic=a").unwrap().private);
    }

    #[test]
    fn r12_invalid_fields_are_refused() {
        assert_eq!(form("data=x"), Err(PublishError::NoTopic));
        assert!(matches!(
            form("topic=a&id=%23x"),
            Err(PublishError::InvalidId(_))
        ));
        assert!(matches!(
            form("topic=a&id=a%0Ab"),
            Err(PublishError::InvalidId(_))
        ));
        assert!(matches!(
            form("topic=a&id=a%00b"),
            Err(PublishError::InvalidId(_))
        ));
        assert_eq!(form("topic=a&type=a%0Db"), Err(PublishError::InvalidType));
        assert!(matches!(
            form("topic=a&retry=-1"),
            Err(PublishError::InvalidRetry(_))
        ));
        assert!(matches!(
            form("topic=a&retry=x"),
            Err(PublishError::InvalidRetry(_))
        ));
    }

    fn v1(body: &str) -> Result<Update, PublishError> {
        PublishRequest::from_form(body.as_bytes())?.into_update_for(ProtocolVersion::V1)
    }

    #[test]
    fn v3_control_characters_are_refused_in_both_editions() {
        for publish in [form, v1] {
            assert_eq!(publish("topic=a%09b"), Err(PublishError::InvalidTopic));
            assert_eq!(publish("topic=a%C2%85"), Err(PublishError::InvalidTopic));
            assert!(matches!(
                publish("topic=a&id=a%7Fb"),
                Err(PublishError::InvalidId(_))
            ));
            assert_eq!(publish("topic=a&type=a%01"), Err(PublishError::InvalidType));
            assert_eq!(
                publish("topic=a&type=mercure"),
                Err(PublishError::ReservedType)
            );
            assert!(publish("topic=a&type=mercure2").is_ok());
        }
    }

    #[test]
    fn v3_v1_rules_on_topics_and_retry() {
        assert_eq!(v1("topic=a&topic=b"), Err(PublishError::SeveralTopics));
        for retry in ["+5", "%205", "5%20", "-1", "0x10", "1.5", ""] {
            assert!(
                matches!(
                    v1(&format!("topic=a&retry={retry}")),
                    Err(PublishError::InvalidRetry(_))
                ),
                "{retry}"
            );
        }
        assert_eq!(v1("topic=a&retry=0150").unwrap().retry, Some(150));
        // draft-07 keeps its lenient reading.
        assert_eq!(form("topic=a&retry=%205").unwrap().retry, Some(5));
    }

    #[test]
    fn v3_oversized_fields_are_refused() {
        let long = "a".repeat(MAX_FIELD_BYTES + 1);
        for field in ["topic", "id", "type", "retry"] {
            let body = match field {
                "topic" => format!("topic={long}"),
                _ => format!("topic=t&{field}={long}"),
            };
            for publish in [form, v1] {
                assert!(
                    matches!(publish(&body), Err(PublishError::FieldTooLarge { .. })),
                    "{field}"
                );
            }
        }
    }

    #[test]
    fn r25_reserved_id_earliest_is_refused() {
        // A subscriber reconnecting with `Last-Event-ID: earliest` asks for the whole history,
        // so an update with that id could never be resumed after.
        assert!(matches!(
            form("topic=a&id=earliest"),
            Err(PublishError::InvalidId(_))
        ));
        assert_eq!(form("topic=a&id=earliest2").unwrap().id, "earliest2");
        assert!(matches!(
            PublishRequest::from_json(br#"{"topic":"a","id":"earliest"}"#)
                .unwrap()
                .into_update(),
            Err(PublishError::InvalidId(_))
        ));
    }

    #[test]
    fn r12_empty_topic_is_refused() {
        assert_eq!(form("topic="), Err(PublishError::EmptyTopic));
        assert_eq!(form("topic=a&topic"), Err(PublishError::EmptyTopic));
        assert_eq!(
            PublishRequest::from_json(br#"{"topic":["a",""]}"#)
                .unwrap()
                .into_update(),
            Err(PublishError::EmptyTopic)
        );
    }

    #[test]
    fn r12_invalid_utf8_is_refused() {
        assert_eq!(
            PublishRequest::from_form(b"topic=a&data=%FF"),
            Err(PublishError::InvalidEncoding)
        );
        assert_eq!(form("topic=a&data=%EF%BF%BD").unwrap().data, "\u{FFFD}");
    }

    #[test]
    fn r13_missing_id_is_generated() {
        assert!(form("topic=a").unwrap().id.starts_with("urn:uuid:"));
    }

    #[test]
    fn r17_topic_count_is_capped() {
        let body: String = (0..=MAX_TOPICS).map(|i| format!("topic={i}&")).collect();
        assert!(matches!(
            form(&body),
            Err(PublishError::TooManyTopics { .. })
        ));
    }

    #[test]
    fn json_body_accepts_one_or_many_topics_and_any_data() {
        let one = PublishRequest::from_json(br#"{"topic":"a","data":"x","private":true}"#)
            .unwrap()
            .into_update()
            .unwrap();
        assert_eq!(one.topics, ["a"]);
        assert!(one.private);
        let many = PublishRequest::from_json(br#"{"topic":["a","b"],"data":{"k":1},"retry":5}"#)
            .unwrap()
            .into_update()
            .unwrap();
        assert_eq!(many.topics, ["a", "b"]);
        assert_eq!(many.data, r#"{"k":1}"#);
        assert_eq!(many.retry, Some(5));
        assert!(matches!(
            PublishRequest::from_json(b"{"),
            Err(PublishError::InvalidJson(_))
        ));
    }
}
