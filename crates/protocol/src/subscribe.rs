//! Reading a subscribe request's query string [R6][R19][R25][R26][V1][V4].
//!
//! A query speaks draft-07 (`topic`, `lastEventID`) or Mercure 1.0 (`match`, `match_exact`,
//! `match_urlpattern`, `last_event_id`); one that mixes the two is refused, and so is any other
//! parameter in 1.0's reserved `match` namespace (a name starting with `match`, compared
//! ignoring ASCII case), so that a misspelled matcher type fails loudly. 1.0 matcher values must
//! not hold control characters (C0, DEL, C1). URL patterns are compiled by the hub, which knows
//! the base URL ([`SubscribeRequest::selectors`]).

use url::Url;

use crate::url_pattern::UrlPatternError;
use crate::{MAX_TOPICS, MatchType, ProtocolVersion, TopicSelector};

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
    /// The query mixes draft-07 and 1.0 parameters (the two names given).
    #[error(
        "the query mixes draft-07 ({draft07:?}) and Mercure 1.0 ({v1:?}) parameters: use \
         topic/lastEventID or match/match_urlpattern/last_event_id, not both"
    )]
    MixedEditions {
        /// A draft-07 parameter of the query.
        draft07: &'static str,
        /// A 1.0 parameter of the query.
        v1: &'static str,
    },
    /// A parameter in the reserved `match` namespace that names no matcher type [V1].
    #[error(
        "unknown parameter {0:?}: names starting with \"match\" are reserved for topic \
         matchers, use match, match_exact or match_urlpattern"
    )]
    UnknownMatcher(String),
    /// A 1.0 matcher value with a control character [V1].
    #[error("invalid {0:?} value: it must not contain control characters")]
    ControlCharacter(String),
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

/// One Mercure 1.0 topic matcher parameter, as given [V1].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatcherParam {
    /// `match` and `match_exact`: [`MatchType::Exact`]; `match_urlpattern`: URL pattern.
    pub match_type: MatchType,
    /// The parameter's value.
    pub value: String,
}

/// The parts of a subscribe query the hub acts on.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// Which edition the query speaks: 1.0 when it has a 1.0 parameter.
    pub version: ProtocolVersion,
    /// The draft-07 `topic` selectors, in order [R8] (none for 1.0).
    pub selectors: Vec<TopicSelector>,
    /// The 1.0 `match*` matchers, in order [V1] (none for draft-07).
    pub matchers: Vec<MatcherParam>,
    /// From the `lastEventID` (draft-07) or `last_event_id` (1.0) parameter; a `Last-Event-ID`
    /// header overrides it [R25][V4].
    pub last_event_id: Option<LastEventId>,
    /// The `authorization` parameter: a token, second in precedence after the header [R19].
    pub authorization: Option<String>,
}

impl SubscribeRequest {
    /// Parses the raw query string (without `?`). Unknown parameters are ignored, except in the
    /// reserved `match` namespace.
    pub fn from_query(query: &str) -> Result<SubscribeRequest, SubscribeError> {
        let mut selectors = Vec::new();
        let mut matchers = Vec::new();
        let mut last_event_id = None;
        let mut authorization = None;
        // The first parameter of each edition seen, to name them if they are mixed.
        let mut draft07 = None;
        let mut v1 = None;
        for pair in crate::form::pairs(query.as_bytes()) {
            let (name, value) = pair.map_err(|_| SubscribeError::InvalidEncoding)?;
            let match_type = match &*name {
                "match" | "match_exact" => Some(MatchType::Exact),
                "match_urlpattern" => Some(MatchType::UrlPattern),
                other if is_reserved_match_name(other) => {
                    return Err(SubscribeError::UnknownMatcher(shortened(other)));
                }
                _ => None,
            };
            if let Some(match_type) = match_type {
                v1.get_or_insert(static_name(&name));
                if value.is_empty() {
                    return Err(SubscribeError::EmptyTopic);
                }
                if has_control_character(&value) {
                    return Err(SubscribeError::ControlCharacter(name.into_owned()));
                }
                if matchers.len() == MAX_TOPICS {
                    return Err(SubscribeError::TooManyTopics {
                        count: count_params(query, is_reserved_match_name),
                        max: MAX_TOPICS,
                    });
                }
                matchers.push(MatcherParam {
                    match_type,
                    value: value.into_owned(),
                });
                continue;
            }
            match &*name {
                "topic" => {
                    draft07.get_or_insert("topic");
                    if value.is_empty() {
                        return Err(SubscribeError::EmptyTopic);
                    }
                    if selectors.len() == MAX_TOPICS {
                        return Err(SubscribeError::TooManyTopics {
                            count: count_params(query, |n| n == "topic"),
                            max: MAX_TOPICS,
                        });
                    }
                    selectors.push(TopicSelector::parse(&value));
                }
                "lastEventID" => {
                    draft07.get_or_insert("lastEventID");
                    // An empty value is no reconnection, as in the reference hub.
                    if !value.is_empty() {
                        last_event_id = Some(LastEventId::parse(&value));
                    }
                }
                "last_event_id" => {
                    v1.get_or_insert("last_event_id");
                    if !value.is_empty() {
                        last_event_id = Some(LastEventId::parse(&value));
                    }
                }
                "authorization" => authorization = Some(value.into_owned()),
                _ => {}
            }
        }
        let version = match (draft07, v1) {
            (Some(draft07), Some(v1)) => {
                return Err(SubscribeError::MixedEditions { draft07, v1 });
            }
            (None, Some(_)) => ProtocolVersion::V1,
            _ => ProtocolVersion::Draft07,
        };
        if selectors.is_empty() && matchers.is_empty() {
            return Err(SubscribeError::NoTopic);
        }
        Ok(SubscribeRequest {
            version,
            selectors,
            matchers,
            last_event_id,
            authorization,
        })
    }

    /// Every selector of the request, the 1.0 URL patterns compiled with `base` (the hub's URL)
    /// for relative ones; the error names the first refused pattern.
    pub fn selectors(&self, base: &Url) -> Result<Vec<TopicSelector>, UrlPatternError> {
        let mut all = self.selectors.clone();
        for matcher in &self.matchers {
            all.push(TopicSelector::with_type(
                matcher.match_type,
                &matcher.value,
                base,
            )?);
        }
        Ok(all)
    }
}

/// Whether `name` lies in 1.0's reserved `match` namespace (ASCII case ignored) [V1].
/// The edition a subscribe query's parameters speak, read from their names alone: draft-07 when
/// it has a draft-07 parameter (`topic`, `lastEventID`), else 1.0 when it has a 1.0 one
/// (`match*`, `last_event_id`), else `None` (the parameters do not tell). This is
/// [`SubscribeRequest::version`] for every query that parses (a query mixing both editions is
/// refused by [`SubscribeRequest::from_query`]), and it serves the hub before the query is
/// parsed, as the parameters' part of [`ProtocolVersion::of_request`] [V2][V3].
pub fn query_version(query: &str) -> Option<ProtocolVersion> {
    let mut v1 = false;
    for name in crate::form::raw_pairs(query.as_bytes()).filter_map(|pair| pair.name().ok()) {
        match &*name {
            "topic" | "lastEventID" => return Some(ProtocolVersion::Draft07),
            "last_event_id" => v1 = true,
            other if is_reserved_match_name(other) => v1 = true,
            _ => {}
        }
    }
    v1.then_some(ProtocolVersion::V1)
}

fn is_reserved_match_name(name: &str) -> bool {
    name.len() >= 5 && name.as_bytes()[..5].eq_ignore_ascii_case(b"match")
}

/// C0 controls, DEL and C1 controls: none may appear in a 1.0 topic or matcher [V1].
pub fn has_control_character(value: &str) -> bool {
    value
        .chars()
        .any(|c| c.is_control() && (c <= '\u{1f}' || ('\u{7f}'..='\u{9f}').contains(&c)))
}

fn static_name(name: &str) -> &'static str {
    match name {
        "match_exact" => "match_exact",
        "match_urlpattern" => "match_urlpattern",
        _ => "match",
    }
}

fn shortened(text: &str) -> String {
    text.chars().take(40).collect()
}

fn count_params(query: &str, is_counted: impl Fn(&str) -> bool) -> usize {
    query
        .split('&')
        .filter(|pair| is_counted(pair.split('=').next().unwrap_or("")))
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
    fn v1_match_parameters_make_a_v1_request() {
        let r = SubscribeRequest::from_query(
            "match=a&match_exact=%7Bb%7D&match_urlpattern=https%3A%2F%2Fe.com%2F%3Aid&last_event_id=x",
        )
        .unwrap();
        assert_eq!(r.version, ProtocolVersion::V1);
        assert!(r.selectors.is_empty());
        let types: Vec<_> = r.matchers.iter().map(|m| m.match_type).collect();
        assert_eq!(
            types,
            [MatchType::Exact, MatchType::Exact, MatchType::UrlPattern]
        );
        assert_eq!(r.matchers[1].value, "{b}");
        assert_eq!(r.last_event_id, Some(LastEventId::After("x".into())));
        let base = crate::url_pattern::base_url(None).unwrap();
        let selectors = r.selectors(&base).unwrap();
        assert!(matches!(selectors[1], TopicSelector::Exact(_)));
        assert!(matches!(selectors[2], TopicSelector::UrlPattern(_)));
        let draft07 = SubscribeRequest::from_query("topic=a&lastEventID=x").unwrap();
        assert_eq!(draft07.version, ProtocolVersion::Draft07);
    }

    #[test]
    fn v1_query_version_is_the_parsed_version() {
        for query in [
            "topic=a",
            "match=a",
            "match_urlpattern=https://e.example/:id",
            "topic=a&lastEventID=x",
            "match=a&last_event_id=x",
            "topic=a&authorization=t",
        ] {
            assert_eq!(
                query_version(query),
                Some(SubscribeRequest::from_query(query).unwrap().version),
                "{query}"
            );
        }
        assert_eq!(query_version("last_event_id=x"), Some(ProtocolVersion::V1));
        assert_eq!(
            query_version("topic=a&match=b"),
            Some(ProtocolVersion::Draft07)
        );
        assert_eq!(query_version(""), None);
        assert_eq!(query_version("authorization=t"), None);
    }

    #[test]
    fn v1_mixed_editions_are_refused() {
        for query in [
            "topic=a&match=b",
            "match=b&topic=a",
            "match=b&lastEventID=x",
            "topic=a&last_event_id=x",
        ] {
            assert!(
                matches!(
                    SubscribeRequest::from_query(query),
                    Err(SubscribeError::MixedEditions { .. })
                ),
                "{query}"
            );
        }
    }

    #[test]
    fn v1_reserved_match_namespace() {
        for query in [
            "match_urlPattern=x",
            "matchURLPattern=x",
            "match_regex=x",
            "Match=x",
            "MATCHES=x",
            "topic=a&matchy=1",
        ] {
            assert!(
                matches!(
                    SubscribeRequest::from_query(query),
                    Err(SubscribeError::UnknownMatcher(_))
                ),
                "{query}"
            );
        }
        // Names that only contain "match" further in are not reserved.
        assert!(SubscribeRequest::from_query("topic=a&rematch=1").is_ok());
    }

    #[test]
    fn v1_control_characters_are_refused() {
        for value in ["a%00", "a%0A", "a%0D", "%1F", "%7F", "a%C2%80", "%C2%9F"] {
            assert!(
                matches!(
                    SubscribeRequest::from_query(&format!("match={value}")),
                    Err(SubscribeError::ControlCharacter(_))
                ),
                "{value}"
            );
        }
        assert!(SubscribeRequest::from_query("match=%C2%A0").is_ok());
        assert_eq!(
            SubscribeRequest::from_query("match=").unwrap_err(),
            SubscribeError::EmptyTopic
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
