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

/// A subscription's payload is that of the first `subscribe` grant whose topics match its own
/// matcher, in events and in the API; none when no grant matches (draft-08, "Payloads").
#[tokio::test]
async fn v5_payload_comes_from_the_grant_matching_each_subscription() {
    const FOO: &str = "https://example.com/foo";
    const OTHER: &str = "https://example.com/other";
    let hub = hub().await;
    let watch = "/.well-known/mercure/subscriptions/:match_type/:match/:subscriber";
    let reader = v1_token(&[V1_RIGHT], None);
    let mut watcher = hub
        .subscribe_with(
            hub.get(&format!("match_urlpattern={}", enc(watch)))
                .bearer_auth(&reader),
        )
        .await;
    let token = v1_access_token(vec![
        v1_detail(&["subscribe"], &[("exact", FOO)], Some(json!({"c": 1}))),
        v1_detail(
            &["subscribe"],
            &[("urlpattern", PATTERN)],
            Some(json!({"c": 2})),
        ),
        v1_detail(&["subscribe"], &[("exact", "*")], Some(json!({"c": 3}))),
    ]);
    let _subscriber = hub
        .subscribe_with(
            hub.get(&format!(
                "match={}&match_urlpattern={}&match={}",
                enc(FOO),
                enc(PATTERN),
                enc(OTHER)
            ))
            .bearer_auth(&token),
        )
        .await;
    let mut payloads = Vec::new();
    for matcher in [FOO, PATTERN, OTHER] {
        let (_, started) = next_about(&mut watcher, matcher).await;
        payloads.push(started["payload"].clone());
    }
    assert_eq!(
        payloads,
        [json!({"c": 1}), json!({"c": 2}), json!({"c": 3})]
    );
    let listed: Value = api(&hub, "/.well-known/mercure/subscriptions", &reader)
        .await
        .json()
        .await
        .unwrap();
    let payload_of = |matcher: &str| {
        listed["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["match"] == matcher)
            .map(|d| d["payload"].clone())
    };
    assert_eq!(payload_of(FOO), Some(json!({"c": 1})));
    assert_eq!(payload_of(PATTERN), Some(json!({"c": 2})));

    // No `*` default: a subscription no grant matches has no payload at all.
    let narrow = v1_access_token_with(
        vec![v1_detail(
            &["subscribe"],
            &[("exact", FOO)],
            Some(json!({"c": 1})),
        )],
        json!({"sub": "narrow"}),
    );
    let _other = hub
        .subscribe_with(
            hub.get(&format!("match={}", enc("https://example.com/unmatched")))
                .bearer_auth(&narrow),
        )
        .await;
    let (_, started) = next_about(&mut watcher, "https://example.com/unmatched").await;
    assert!(started.get("payload").is_none(), "{started}");
}

/// A 1.0 token's `sub` is the subscriber of its subscriptions, shared by its connections: a
/// subscription two of them hold is announced once, and ends when the last one leaves
/// (draft-08, "Subscription Events"). Anonymous subscribers get a `urn:uuid`.
#[tokio::test]
async fn v5_the_token_sub_identifies_the_subscriber() {
    const ADA: &str = "https://example.com/users/ada";
    const X: &str = "https://example.com/x";
    const Y: &str = "https://example.com/y";
    let hub = hub().await;
    let watch = "/.well-known/mercure/subscriptions/:match_type/:match/:subscriber";
    let mut watcher = hub
        .subscribe_with(
            hub.get(&format!("match_urlpattern={}", enc(watch)))
                .bearer_auth(v1_token(&[V1_RIGHT], None)),
        )
        .await;
    next_about(&mut watcher, watch).await;
    let ada = v1_access_token_with(vec![], json!({"sub": ADA}));
    let first = hub
        .subscribe_with(hub.get(&format!("match={}", enc(X))).bearer_auth(&ada))
        .await;
    let (_, started) = next_about(&mut watcher, X).await;
    assert_eq!(started["subscriber"], ADA);
    let id = format!(
        "/.well-known/mercure/subscriptions/exact/{}/{}",
        component(X),
        component(ADA)
    );
    assert_eq!(started["id"], id.as_str());
    let second = hub
        .subscribe_with(
            hub.get(&format!("match={}&match={}", enc(X), enc(Y)))
                .bearer_auth(&ada),
        )
        .await;
    let (_, started) = next_about(&mut watcher, Y).await;
    assert_eq!(started["subscriber"], ADA);
    // X was already held by ADA: not announced again.
    watcher.assert_no_event(Duration::from_millis(400)).await;

    // The first connection leaves; the second still holds X.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.hub.subscriber_count() > 2 {
        assert!(tokio::time::Instant::now() < deadline, "first never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.assert_no_event(Duration::from_millis(400)).await;
    let one = api(&hub, &id, &v1_token(&[V1_RIGHT], None)).await;
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap()["active"], true);

    // The last one leaves: both end.
    drop(second);
    let mut ended = Vec::new();
    for _ in 0..2 {
        let event = watcher.next_event().await;
        let document: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(document["active"], false);
        assert_eq!(document["subscriber"], ADA);
        ended.push(document["match"].as_str().unwrap().to_owned());
    }
    ended.sort();
    assert_eq!(ended, [X, Y]);

    // Without a `sub` (here anonymous), each connection is a subscriber of its own.
    let _anonymous = hub.subscribe(&format!("match={}", enc(X))).await;
    let (_, started) = next_about(&mut watcher, X).await;
    assert!(
        started["subscriber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:"),
        "{started}"
    );
}
