//! Active subscriptions [R30]: an event when a subscription starts or ends.
//!
//! With `HubConfig::subscriptions` on, every subscription (one per topic selector of a
//! connection) is announced as a private update on
//! `/.well-known/mercure/subscriptions/{topic}/{subscriber}` (both percent-encoded) whose data is
//! the JSON-LD document of the subscription. These updates go through the transport, ordered
//! with the rest and delivered on every node, but are NOT kept in history
//! ([`Transport::publish_live`](crate::Transport::publish_live)): otherwise every anonymous
//! subscription would push published updates out of the bounded history. The API
//! (`routes/subscriptions.rs`) gives the current state; a watcher that reconnects fetches it
//! again. A subscriber whose token's `mercure.subscribe` matches (typically
//! `/.well-known/mercure/subscriptions{/topic}{/subscriber}`) receives them.
//!
//! The end of a subscription is announced when its stream is dropped, whatever the reason: the
//! client closed it, the hub ended it, or the connection died. A client that vanishes without
//! closing (a killed process, a cut network) is found out by the next heartbeat write: the
//! kernel reports the dead peer at once when it answered with a reset, and within the TCP user
//! timeout set on every connection (see `server.rs`) when it answers nothing at all.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::Hub;
use crate::delivery::registry::Subscriber;
use herald_protocol::{Update, generate_id};

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

/// `/.well-known/mercure/subscriptions/{topic}/{subscriber}`
pub(crate) fn subscription_id(topic: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}",
        encode_component(topic),
        encode_component(subscriber)
    )
}

/// The JSON-LD document of one subscription [R30].
pub(crate) fn document(topic: &str, subscriber: &Subscriber, active: bool) -> Value {
    let mut document = json!({
        "id": subscription_id(topic, subscriber.iri()),
        "type": "Subscription",
        "topic": topic,
        "subscriber": subscriber.iri(),
        "active": active,
    });
    if let Some(payload) = &subscriber.subscription().payload {
        document["payload"] = payload.clone();
    }
    document
}

/// Publishes one event per topic selector of `subscriber`.
pub(crate) fn announce(hub: &Hub, subscriber: &Subscriber, active: bool) {
    let directory = hub.transport().subscription_directory();
    for selector in &subscriber.subscription().selectors {
        let topic = selector.as_str();
        let mut data = document(topic, subscriber, active);
        if let Some(directory) = directory {
            let id = subscription_id(topic, subscriber.iri());
            if active {
                directory.started(id, data.to_string());
            } else {
                directory.ended(id);
            }
        }
        data["@context"] = json!("https://mercure.rocks/");
        let update = Update {
            id: generate_id(),
            topics: vec![subscription_id(topic, subscriber.iri())],
            data: data.to_string(),
            private: true,
            event_type: None,
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
