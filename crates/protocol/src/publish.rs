//! Reading a publish request body into an [`Update`] [R12][R13][R17].
//!
//! Two body formats are accepted: the protocol's `application/x-www-form-urlencoded` form, and,
//! beyond the reference hub, a JSON object of the same fields, the shape simple SSE tutorials
//! publish with. Both go through the same validation.

use serde::Deserialize;
use serde_json::Value;

use crate::{MAX_TOPICS, Update, generate_id};

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
    #[error("invalid \"type\": it must not contain CR, LF or NUL")]
    InvalidType,
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
                "topic" => request.topics.push(value),
                "data" => request.data = Some(value),
                "private" => request.private = true,
                "id" => request.id = Some(value),
                "type" => request.event_type = Some(value),
                "retry" => request.retry = Some(value),
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

    /// Validates the fields and builds the update, generating an id when none was given [R13].
    pub fn into_update(self) -> Result<Update, PublishError> {
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
        let id = match self.id {
            None => generate_id(),
            Some(id) => validate_id(id)?,
        };
        if self
            .event_type
            .as_deref()
            .is_some_and(has_line_break_or_nul)
        {
            return Err(PublishError::InvalidType);
        }
        let retry = match self.retry {
            None => None,
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| PublishError::InvalidRetry(text))?,
            ),
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
    if has_line_break_or_nul(&id) {
        return Err(PublishError::InvalidId("it must not contain CR, LF or NUL"));
    }
    Ok(id)
}

fn has_line_break_or_nul(value: &str) -> bool {
    value.contains(['\r', '\n', '\0'])
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
