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
//! Who holds a subscription and what it carries [V5]:
//! - **`subscriber`**: for a 1.0 token with a `sub`, that `sub` (draft-08: the identifier is
//!   derived from what the hub validated, "typically the `sub` claim", and a subscriber's
//!   connections share it); otherwise (anonymous, no `sub`, draft-07, whose tokens have no such
//!   claim) a fresh `urn:uuid` per connection, as the reference hub does.
//! - **`payload`**: draft-07's `mercure.payload` describes every subscription of the connection;
//!   1.0's is that of the first `subscribe` grant whose topics match the subscription's own
//!   matcher (`Grants::payload_for`); none when no grant matches, or when the first that does
//!   has no payload.
//!
//! Since several connections of one `sub` may name the same matcher, a subscription (its
//! topic, which draft-08 requires to be unique among active subscriptions) may be held by
//! several connections at once: [`ActiveSubscriptions`] counts its holders, announces it active
//! when the first arrives and ended when the last leaves, and keeps the document of its first
//! holder. It also lists the live subscriptions for the API (`routes/subscriptions.rs`) in
//! arrival order, when the transport keeps no cluster-wide directory. The count is per node: on
//! a Redis cluster, two nodes holding the same subscription each announce it, and the first to
//! see its holders leave announces its end.
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
//! timeout set on every connection (see `server/accept.rs`) when it answers nothing at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use herald_protocol::publish::RESERVED_EVENT_TYPE;
use herald_protocol::{Claims, Grants, MatchType, ProtocolVersion, Update, generate_id};
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

/// What a connection's token says about its subscriptions beyond what the registry keeps: who
/// holds them and the grants their 1.0 payloads come from.
#[derive(Debug, Default)]
pub(crate) struct Holder {
    /// A 1.0 token's `sub`.
    subject: Option<String>,
    /// A 1.0 token's grants (only their payloads are read).
    grants: Grants,
}

impl Holder {
    /// The holder a subscribe request's verified claims describe (`None`: anonymous).
    pub(crate) fn of(claims: Option<&Claims>) -> Holder {
        match claims {
            Some(claims) if claims.edition == ProtocolVersion::V1 => Holder {
                subject: claims.subject.clone(),
                grants: Grants {
                    payloads: claims.grants.payloads.clone(),
                    ..Grants::default()
                },
            },
            _ => Holder::default(),
        }
    }
}

/// The descriptions of `subscriber`'s subscriptions, one per selector.
fn described(subscriber: &Subscriber, holder: &Holder) -> Vec<Described> {
    let subscription = subscriber.subscription();
    let identifier = holder.subject.as_deref().unwrap_or(subscriber.iri());
    subscription
        .selectors
        .iter()
        .map(|selector| Described {
            match_type: selector.match_type(),
            matcher: selector.as_str().to_owned(),
            subscriber: identifier.to_owned(),
            active: true,
            payload: match subscription.version {
                ProtocolVersion::Draft07 => subscription.payload.clone(),
                ProtocolVersion::V1 => holder.grants.payload_for(selector.as_str()).cloned(),
            },
        })
        .collect()
}

/// The live subscriptions of this hub, each with the number of connections holding it.
#[derive(Debug, Default)]
pub(crate) struct ActiveSubscriptions {
    book: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    next: u64,
    /// By arrival.
    live: BTreeMap<u64, Held>,
    /// Subscription id (its events' topic) -> arrival number.
    by_id: HashMap<String, u64>,
}

#[derive(Debug)]
struct Held {
    described: Described,
    edition: ProtocolVersion,
    holders: usize,
}

impl ActiveSubscriptions {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live subscriptions, in arrival order.
    pub(crate) fn list(&self) -> Vec<Described> {
        self.book()
            .live
            .values()
            .map(|held| held.described.clone())
            .collect()
    }

    /// Counts one more holder of each subscription, announcing those it is the first of;
    /// returns their ids, for [`ActiveSubscriptions::release`].
    fn hold(
        &self,
        hub: &Hub,
        subscriptions: Vec<Described>,
        edition: ProtocolVersion,
    ) -> Vec<String> {
        let mut book = self.book();
        let mut ids = Vec::with_capacity(subscriptions.len());
        for described in subscriptions {
            let id = described.id(edition);
            let held = book.by_id.get(&id).copied();
            if let Some(held) = held.and_then(|n| book.live.get_mut(&n)) {
                held.holders += 1;
            } else {
                announce(hub, &id, &described, edition);
                let n = book.next;
                book.next += 1;
                book.by_id.insert(id.clone(), n);
                book.live.insert(
                    n,
                    Held {
                        described,
                        edition,
                        holders: 1,
                    },
                );
            }
            ids.push(id);
        }
        ids
    }

    /// Counts one holder less of each subscription of `ids`, announcing the end of those it
    /// was the last of.
    fn release(&self, hub: &Hub, ids: &[String]) {
        let mut book = self.book();
        for id in ids {
            let Some(n) = book.by_id.get(id).copied() else {
                continue;
            };
            let Some(held) = book.live.get_mut(&n) else {
                continue;
            };
            held.holders = held.holders.saturating_sub(1);
            if held.holders == 0 {
                book.by_id.remove(id);
                if let Some(held) = book.live.remove(&n) {
                    let ended = Described {
                        active: false,
                        ..held.described
                    };
                    announce(hub, id, &ended, held.edition);
                }
            }
        }
    }
}

/// Publishes the event of one subscription starting or ending, in the format of `edition`.
/// Called under the book's lock: the start and end of one subscription reach the transport in
/// the order they happened, even when two of its holders come and go at once.
fn announce(hub: &Hub, id: &str, described: &Described, edition: ProtocolVersion) {
    let mut data = described.document(edition);
    if let Some(directory) = hub.transport().subscription_directory() {
        if described.active {
            directory.started(id.to_owned(), data.to_string());
        } else {
            directory.ended(id.to_owned());
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
        topics: vec![id.to_owned()],
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

/// A connection's hold on its subscriptions: announced (if it is their first holder) when made,
/// released (and their end announced if it was the last) when dropped. It lives in the
/// subscriber's stream.
pub(crate) struct Presence {
    hub: Hub,
    ids: Vec<String>,
}

impl Presence {
    /// Holds `subscriber`'s subscriptions, as `holder` (its token) describes them.
    pub(crate) fn begin(hub: Hub, subscriber: &Subscriber, holder: &Holder) -> Presence {
        let edition = subscriber.subscription().version;
        let ids = hub
            .active_subscriptions()
            .hold(&hub, described(subscriber, holder), edition);
        Presence { hub, ids }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.hub
            .active_subscriptions()
            .release(&self.hub, &self.ids);
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
