//! Active subscriptions in the Mercure 1.0 format over real TCP [V5]: events on
//! `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}` sent as
//! `event: mercure`, and the API in plain JSON with the cursor in a `Link` header, beside the
//! draft-07 JSON-LD format on the same hub.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// What a draft-07 watcher's token may read: every subscription resource, in both editions'
/// paths.
const RIGHT: &str = "/.well-known/mercure/subscriptions{/a}{/b}{/c}";
/// The same for a 1.0 token: a URL pattern, relative to the hub's URL.
const V1_RIGHT: &str = "/.well-known/mercure/subscriptions*";
const PATTERN: &str = "https://example.com/books/:id";

async fn hub() -> TestHub {
    let mut config = config();
    config.subscriptions = true;
    config.anonymous = true;
    config.heartbeat = Some(Duration::from_millis(200));
    config.hub_url = Some(V1_HUB_URL.into());
    TestHub::start(config).await
}

/// A 1.0 access token (`typ: at+jwt`) allowed to receive the updates of the URL patterns
/// `subscribe`, with `payload`.
fn v1_token(subscribe: &[&str], payload: Option<Value>) -> String {
    let topics: Vec<(&str, &str)> = subscribe.iter().map(|m| ("urlpattern", *m)).collect();
    v1_access_token(vec![v1_detail(&["subscribe"], &topics, payload)])
}

/// The next subscription event whose document's `match` is `matcher`, with its SSE event type.
async fn next_about(reader: &mut EventReader, matcher: &str) -> (Option<String>, Value) {
    loop {
        let event = reader.next_event().await;
        let document: Value = serde_json::from_str(&event.data).unwrap();
        if document["match"] == matcher {
            return (event.event, document);
        }
    }
}

/// Percent-encodes a path component as the hub does: everything but RFC 3986 unreserved.
fn component(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

async fn api(hub: &TestHub, path: &str, token: &str) -> reqwest::Response {
    hub.client
        .get(format!("{}{path}", hub.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn v5_events_and_api_in_the_1_0_format() {
    let hub = hub().await;
    let mut watcher = hub
        .subscribe_with(
            hub.get(&format!(
                "match_urlpattern={}",
                enc("/.well-known/mercure/subscriptions/:match_type/:match/:subscriber")
            ))
            .bearer_auth(v1_token(&[V1_RIGHT], None)),
        )
        .await;
    let subscriber = hub
        .subscribe_with(
            hub.get(&format!("match_urlpattern={}", enc(PATTERN)))
                .bearer_auth(v1_token(&[PATTERN], Some(json!({"user": "ada"})))),
        )
        .await;

    let (event_type, started) = next_about(&mut watcher, PATTERN).await;
    assert_eq!(event_type.as_deref(), Some("mercure"));
    assert_eq!(started["type"], "subscription");
    assert_eq!(started["match_type"], "urlpattern");
    assert_eq!(started["active"], true);
    assert_eq!(started["payload"], json!({"user": "ada"}));
    assert!(started.get("@context").is_none(), "plain JSON: {started}");
    let iri = started["subscriber"].as_str().unwrap().to_owned();
    let id = format!(
        "/.well-known/mercure/subscriptions/urlpattern/{}/{}",
        component(PATTERN),
        component(&iri)
    );
    assert_eq!(started["id"], id.as_str());

    // The API, asked with a 1.0 token: the collection, the matcher's, the one subscription.
    let reader = v1_token(&[V1_RIGHT], None);
    let all = api(&hub, "/.well-known/mercure/subscriptions", &reader).await;
    assert_eq!(all.status(), 200);
    assert_eq!(all.headers()["content-type"], "application/json");
    let link = all.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.contains("rel=\"mercure\""), "{link}");
    assert!(link.contains("last-event-id=\""), "{link}");
    let all: Value = all.json().await.unwrap();
    assert_eq!(all["type"], "subscriptions");
    assert!(all.get("lastEventID").is_none());
    let listed = all["subscriptions"].as_array().unwrap();
    assert!(listed.iter().any(|d| d == &started), "{all}");

    let matcher_path = format!(
        "/.well-known/mercure/subscriptions/urlpattern/{}",
        enc(PATTERN)
    );
    let of_matcher: Value = api(&hub, &matcher_path, &reader)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(of_matcher["subscriptions"], json!([started.clone()]));
    let one = api(&hub, &id, &reader).await;
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap(), started);
    // The same matcher under the other type is another subscription.
    let other = id.replacen("/urlpattern/", "/exact/", 1);
    expect_rejection(api(&hub, &other, &reader).await, 404).await;

    // A draft-07 token gets the draft-07 JSON-LD format of the same subscriptions.
    let draft07 = token(json!({"mercure": {"subscribe": [RIGHT]}}));
    let response = api(&hub, "/.well-known/mercure/subscriptions", &draft07).await;
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "Subscriptions");
    assert!(body["lastEventID"].is_string());
    assert!(
        body["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["topic"] == PATTERN),
        "{body}"
    );

    // The end of the subscription.
    drop(subscriber);
    let (event_type, ended) = next_about(&mut watcher, PATTERN).await;
    assert_eq!(event_type.as_deref(), Some("mercure"));
    assert_eq!(ended["active"], false);
    assert_eq!(ended["id"], id.as_str());
}

#[tokio::test]
async fn v5_draft07_subscriptions_keep_their_events() {
    let hub = hub().await;
    let mut watcher = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc(RIGHT)))
                .bearer_auth(token(json!({"mercure": {"subscribe": [RIGHT]}}))),
        )
        .await;
    let topic = "https://example.com/books/{id}";
    let _subscriber = hub.subscribe(&format!("topic={}", enc(topic))).await;
    loop {
        let event = watcher.next_event().await;
        let document: Value = serde_json::from_str(&event.data).unwrap();
        if document["topic"] == topic {
            assert_eq!(event.event, None);
            assert_eq!(document["type"], "Subscription");
            assert_eq!(document["@context"], "https://mercure.rocks/");
            break;
        }
    }
}
