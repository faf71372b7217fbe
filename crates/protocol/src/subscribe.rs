//! Reading a subscribe request's query string [R6][R19][R25][R26].

use crate::{MAX_TOPICS, TopicSelector};

/// Why a subscribe query was refused. Each message is safe to show to the subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The query has no `topic` parameter [R8].
    #[error("missing \"topic\": subscribe with at least one topic selector, e.g. ?topic=*")]
    NoTopic,
    /// A `topic` parameter is empty.
    #[error("empty \"topic\": every topic selector must be non-empty (use * for every topic)")]
    EmptyTopic,
    /// More selectors than one subscription may have.
    #[error("too many topic selectors: {count} given, at most {max} allowed")]
    TooManyTopics {
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A query whose decoded text is not UTF-8.
    #[error("invalid query string: not UTF-8 after percent-decoding")]
    InvalidEncoding,
}

/// The `Last-Event-ID` value that asks for the whole retained history [R26]. No update may
/// have it as its id.
pub const EARLIEST: &str = "earliest";

/// Where a reconnecting subscriber wants its replay to start [R25][R26].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastEventId {
    /// `earliest`: the whole retained history.
    Earliest,
    /// Every event after the one with this id.
    After(String),
}

impl LastEventId {
    /// Reads the value of a `Last-Event-ID` header or `lastEventID` parameter.
    pub fn parse(value: &str) -> LastEventId {
        if value == EARLIEST {
            LastEventId::Earliest
        } else {
            LastEventId::After(value.to_owned())
        }
    }
}

/// The parts of a subscribe query the hub acts on.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The `topic` selectors, in order [R8].
    pub selectors: Vec<TopicSelector>,
    /// From the `lastEventID` parameter; a `Last-Event-ID` header overrides it [R25].
    pub last_event_id: Option<LastEventId>,
    /// The `authorization` parameter: a token, second in precedence after the header [R19].
    pub authorization: Option<String>,
}

impl SubscribeRequest {
    /// Parses the raw query string (without `?`). Unknown parameters are ignored.
    pub fn from_query(query: &str) -> Result<SubscribeRequest, SubscribeError> {
        let mut selectors = Vec::new();
        let mut last_event_id = None;
        let mut authorization = None;
        for pair in crate::form::pairs(query.as_bytes()) {
            let (name, value) = pair.map_err(|_| SubscribeError::InvalidEncoding)?;
            match &*name {
                "topic" => {
                    if value.is_empty() {
                        return Err(SubscribeError::EmptyTopic);
                    }
                    if selectors.len() == MAX_TOPICS {
                        return Err(SubscribeError::TooManyTopics {
                            count: count_topics(query),
                            max: MAX_TOPICS,
                        });
                    }
                    selectors.push(TopicSelector::parse(&value));
                }
                // An empty value is no reconnection, as in the reference hub.
                "lastEventID" if value.is_empty() => {}
                "lastEventID" => last_event_id = Some(LastEventId::parse(&value)),
                "authorization" => authorization = Some(value),
                _ => {}
            }
        }
        if selectors.is_empty() {
            return Err(SubscribeError::NoTopic);
        }
        Ok(SubscribeRequest {
            selectors,
            last_event_id,
            authorization,
        })
    }
}

fn count_topics(query: &str) -> usize {
    query
        .split('&')
        .filter(|pair| *pair == "topic" || pair.starts_with("topic="))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r6_topics_are_required() {
        assert_eq!(
            SubscribeRequest::from_query("lastEventID=x").unwrap_err(),
            SubscribeError::NoTopic
        );
    }

    #[test]
    fn r6_empty_topic_is_refused() {
        for query in ["topic=", "topic", "topic=a&topic=", "topic=&topic=*"] {
            assert_eq!(
                SubscribeRequest::from_query(query).unwrap_err(),
                SubscribeError::EmptyTopic,
                "{query}"
            );
        }
    }

    #[test]
    fn r6_topic_count_is_capped() {
        let ok: String = (0..MAX_TOPICS).map(|i| format!("topic={i}&")).collect();
        assert_eq!(
            SubscribeRequest::from_query(&ok).unwrap().selectors.len(),
            MAX_TOPICS
        );
        let too_many = format!("{ok}topic=x");
        assert_eq!(
            SubscribeRequest::from_query(&too_many).unwrap_err(),
            SubscribeError::TooManyTopics {
                count: MAX_TOPICS + 1,
                max: MAX_TOPICS
            }
        );
    }

    #[test]
    fn r25_last_event_id_and_token_parameters() {
        let r = SubscribeRequest::from_query(
            "topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D&lastEventID=earliest&authorization=abc",
        )
        .unwrap();
        assert_eq!(r.selectors[0].as_str(), "https://example.com/books/{id}");
        assert_eq!(r.last_event_id, Some(LastEventId::Earliest));
        assert_eq!(r.authorization.as_deref(), Some("abc"));
    }
}
