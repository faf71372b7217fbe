//! Active subscriptions [R30][V5]: an event when a subscription starts or ends.
//!
//! With `HubConfig::subscriptions` on, every subscription (one per selector of a connection) is
//! announced as a private update. Each takes the format of the edition its subscribe request
//! spoke:
//! - draft-07: topic `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, data the JSON-LD
//!   document (`type: "Subscription"`, `topic`, ...);
//! - Mercure 1.0: topic `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`,
//!   data plain JSON (`type: "subscription"`, `match_type`, `match`, ...), sent as SSE
//!   `event: mercure` (a type publishers may not use).
//!
//! Path components are percent-encoded once. These updates go through the transport, ordered
//! with the rest and delivered on every node, but are NOT kept in history
//! ([`Transport::publish_live`](crate::Transport::publish_live)): otherwise every anonymous
//! subscription would push published updates out of the bounded history. The API
//! (`routes/subscriptions.rs`) gives the current state, in the format of the edition that asks
//! ([`Described`] reads either); a watcher that reconnects fetches it again. A subscriber whose
//! token's `mercure.subscribe` matches the topic receives them.
//!
//! The end of a subscription is announced when its stream is dropped, whatever the reason: the
//! client closed it, the hub ended it, or the connection died. A client that vanishes without
//! closing (a killed process, a cut network) is found out by the next heartbeat write: the
//! kernel reports the dead peer at once when it answered with a reset, and within the TCP user
//! timeout set on every connection (see `server.rs`) when it answers nothing at all.

use herald_protocol::publish::RESERVED_EVENT_TYPE;
use herald_protocol::{MatchType, ProtocolVersion, Update, generate_id};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::Hub;
use crate::delivery::registry::Subscriber;

/// The prefix of every subscription topic and of the API's paths.
pub(crate) const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// Everything but RFC 3986 unreserved characters is encoded, so that a topic's `/` does not
/// split the path and the template `{/topic}` matches the encoded value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path component.
pub(crate) fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// One subscription as either edition describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Described {
    /// draft-07 selectors (templates too) are `exact`.
    pub(crate) match_type: MatchType,
    /// The selector as written (draft-07's `topic`, 1.0's `match`).
    pub(crate) matcher: String,
    pub(crate) subscriber: String,
    pub(crate) active: bool,
    pub(crate) payload: Option<Value>,
}

impl Described {
    /// Reads a document of either edition (as kept by a [`crate::transport::SubscriptionDirectory`]).
    pub(crate) fn from_document(document: &Value) -> Option<Described> {
        let text = |name: &str| document.get(name).and_then(Value::as_str);
        let (match_type, matcher) = match text("match_type") {
            Some(name) => (MatchType::from_name(name)?, text("match")?),
            None => (MatchType::Exact, text("topic")?),
        };
        Some(Described {
            match_type,
            matcher: matcher.to_owned(),
            subscriber: text("subscriber")?.to_owned(),
            active: document
                .get("active")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            payload: document.get("payload").cloned(),
        })
    }

    /// The subscription's IRI, which is its events' topic, in `edition`'s format.
    pub(crate) fn id(&self, edition: ProtocolVersion) -> String {
        match edition {
            ProtocolVersion::Draft07 => format!(
                "{SUBSCRIPTIONS_PATH}/{}/{}",
                encode_component(&self.matcher),
                encode_component(&self.subscriber)
            ),
            ProtocolVersion::V1 => format!(
                "{SUBSCRIPTIONS_PATH}/{}/{}/{}",
                self.match_type.name(),
                encode_component(&self.matcher),
                encode_component(&self.subscriber)
            ),
        }
    }

    /// The subscription's document in `edition`'s format (without a JSON-LD `@context`).
    pub(crate) fn document(&self, edition: ProtocolVersion) -> Value {
        let mut document = match edition {
            ProtocolVersion::Draft07 => json!({
                "id": self.id(edition),
                "type": "Subscription",
                "topic": self.matcher,
                "subscriber": self.subscriber,
                "active": self.active,
            }),
            ProtocolVersion::V1 => json!({
                "id": self.id(edition),
                "type": "subscription",
                "match_type": self.match_type.name(),
                "match": self.matcher,
                "subscriber": self.subscriber,
                "active": self.active,
            }),
        };
        if let Some(payload) = &self.payload {
            document["payload"] = payload.clone();
        }
        document
    }
}

/// The descriptions of `subscriber`'s subscriptions, one per selector.
pub(crate) fn described(subscriber: &Subscriber, active: bool) -> Vec<Described> {
    let subscription = subscriber.subscription();
    subscription
        .selectors
        .iter()
        .map(|selector| Described {
            match_type: selector.match_type(),
            matcher: selector.as_str().to_owned(),
            subscriber: subscriber.iri().to_owned(),
            active,
            payload: subscription.payload.clone(),
        })
        .collect()
}

/// Publishes one event per selector of `subscriber`, in the format of its edition.
pub(crate) fn announce(hub: &Hub, subscriber: &Subscriber, active: bool) {
    let edition = subscriber.subscription().version;
    let directory = hub.transport().subscription_directory();
    for described in described(subscriber, active) {
        let id = described.id(edition);
        let mut data = described.document(edition);
        if let Some(directory) = directory {
            if active {
                directory.started(id.clone(), data.to_string());
            } else {
                directory.ended(id.clone());
            }
        }
        let event_type = match edition {
            ProtocolVersion::Draft07 => {
                data["@context"] = json!("https://mercure.rocks/");
                None
            }
            ProtocolVersion::V1 => Some(RESERVED_EVENT_TYPE.to_owned()),
        };
        let update = Update {
            id: generate_id(),
            topics: vec![id],
            data: data.to_string(),
            private: true,
            event_type,
            retry: None,
        };
        let publish = hub.transport().publish_live(update);
        // Announcing must not hold up the subscriber (or, on drop, run inside a sync context).
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = publish.await {
                        tracing::warn!("subscription event not published: {e}");
                    }
                });
            }
            Err(_) => tracing::debug!("no runtime: subscription event dropped at exit"),
        }
    }
}

/// Announces the end of a subscription when dropped (it lives in the subscriber's stream).
pub(crate) struct Presence {
    hub: Hub,
    subscriber: std::sync::Arc<Subscriber>,
}

impl Presence {
    /// Announces the start of `subscriber`'s subscriptions; the end follows on drop.
    pub(crate) fn begin(hub: Hub, subscriber: std::sync::Arc<Subscriber>) -> Presence {
        announce(&hub, &subscriber, true);
        Presence { hub, subscriber }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        announce(&self.hub, &self.subscriber, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v5_documents_of_both_editions_read_back() {
        let described = Described {
            match_type: MatchType::UrlPattern,
            matcher: "https://example.com/:id".into(),
            subscriber: "urn:uuid:1".into(),
            active: true,
            payload: Some(json!({"a": 1})),
        };
        let v1 = described.document(ProtocolVersion::V1);
        assert_eq!(
            v1["id"],
            "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aid/urn%3Auuid%3A1"
        );
        assert_eq!(v1["type"], "subscription");
        assert_eq!(Described::from_document(&v1), Some(described.clone()));
        let draft07 = described.document(ProtocolVersion::Draft07);
        assert_eq!(draft07["topic"], "https://example.com/:id");
        let read = Described::from_document(&draft07).unwrap();
        assert_eq!(read.match_type, MatchType::Exact);
        assert_eq!(read.matcher, described.matcher);
    }
}
