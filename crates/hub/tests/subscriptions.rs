//! Active subscriptions: events [R30] and the API [R31], over real TCP.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const WATCH: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

async fn hub() -> TestHub {
    let mut config = config();
    config.subscriptions = true;
    config.anonymous = true;
    config.heartbeat = Some(Duration::from_millis(200));
    TestHub::start(config).await
}

fn watcher_token() -> String {
    token(json!({"mercure": {"subscribe": [WATCH]}}))
}

/// A subscriber to every subscription event.
async fn watch(hub: &TestHub) -> EventReader {
    hub.subscribe_with(
        hub.get(&format!("topic={}", enc(WATCH)))
            .bearer_auth(watcher_token()),
    )
    .await
}

/// The next subscription event about `topic` (other subscriptions' events are skipped).
async fn next_about(reader: &mut EventReader, topic: &str) -> Value {
    loop {
        let event = reader.next_event().await;
        let document: Value = serde_json::from_str(&event.data).unwrap();
        if document["topic"] == topic {
            return document;
        }
    }
}

async fn api(hub: &TestHub, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = hub.client.get(format!("{}{path}", hub.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn r30_start_and_end_of_a_subscription_are_announced_with_its_payload() {
    let hub = hub().await;
    let mut watcher = watch(&hub).await;
    let topic = "https://example.com/books/{id}";
    let subscriber_token = token(json!({"mercure": {"subscribe": [], "payload": {"user": "ada"}}}));
    let subscriber = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc(topic)))
                .bearer_auth(&subscriber_token),
        )
        .await;

    let started = next_about(&mut watcher, topic).await;
    assert_eq!(started["@context"], "https://mercure.rocks/");
    assert_eq!(started["type"], "Subscription");
    assert_eq!(started["active"], true);
    assert_eq!(started["payload"], json!({"user": "ada"}));
    let iri = started["subscriber"].as_str().unwrap().to_owned();
    assert!(iri.starts_with("urn:uuid:"));
    assert_eq!(
        started["id"],
        format!(
            "/.well-known/mercure/subscriptions/{}/{}",
            "https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D",
            iri.replace(':', "%3A")
        )
    );

    drop(subscriber);
    let ended = next_about(&mut watcher, topic).await;
    assert_eq!(ended["active"], false);
    assert_eq!(ended["subscriber"], iri.as_str());
}

#[tokio::test]
async fn r30_one_event_per_topic_selector_and_they_are_private() {
    let hub = hub().await;
    let mut watcher = watch(&hub).await;
    // An anonymous subscriber to everything must not see subscription events (private).
    let mut anonymous = hub.subscribe("topic=*").await;
    let _two = hub.subscribe("topic=a&topic=b").await;
    let a = next_about(&mut watcher, "a").await;
    let b = next_about(&mut watcher, "b").await;
    assert_eq!(a["subscriber"], b["subscriber"], "same connection, one IRI");
    anonymous.assert_no_event(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn r30_subscription_events_do_not_push_updates_out_of_history() {
    // Issue 13, failure 4: each selector of each anonymous subscription used to write an event
    // into history, so a few wide subscriptions evicted every published update.
    let mut config = config();
    config.subscriptions = true;
    config.anonymous = true;
    config.history = herald_hub::HistoryLimits {
        max_events: 10,
        max_age: None,
    };
    let hub = TestHub::start(config).await;
    let mut published = Vec::new();
    for i in 0..5 {
        published.push(
            hub.publish_ok(&[("topic", "kept"), ("data", &i.to_string())])
                .await,
        );
    }
    let query: Vec<String> = (0..20).map(|i| format!("topic=wide-{i}")).collect();
    let mut wide = Vec::new();
    for _ in 0..3 {
        wide.push(hub.subscribe(&query.join("&")).await);
    }
    drop(wide);
    let mut late = hub.subscribe("topic=kept&lastEventID=earliest").await;
    for id in &published {
        assert_eq!(late.next_event().await.id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test]
async fn r30_subscription_events_are_live_only() {
    let hub = hub().await;
    let _someone = hub.subscribe("topic=history-topic").await;
    // A watcher that asks for history gets none of the subscription events (they are not
    // kept), but receives the live ones.
    let mut late = hub
        .subscribe_with(
            hub.get(&format!("topic={}&lastEventID=earliest", enc(WATCH)))
                .bearer_auth(watcher_token()),
        )
        .await;
    let _another = hub.subscribe("topic=live-topic").await;
    let started = next_about(&mut late, "live-topic").await;
    assert_eq!(started["active"], true);
    assert!(!late.raw.contains("history-topic"), "{}", late.raw);
}

#[tokio::test]
async fn r31_api_lists_exactly_the_live_subscriptions() {
    let hub = hub().await;
    let first = hub.subscribe("topic=one").await;
    let _second = hub.subscribe("topic=two&topic=three").await;
    let token = watcher_token();

    let response = api(&hub, "/.well-known/mercure/subscriptions", Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["@context"], "https://mercure.rocks/");
    assert_eq!(body["type"], "Subscriptions");
    assert_eq!(body["id"], "/.well-known/mercure/subscriptions");
    assert!(body["lastEventID"].is_string());
    let mut topics: Vec<&str> = body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    topics.sort();
    assert_eq!(topics, ["one", "three", "two"]);

    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body: Value = api(&hub, "/.well-known/mercure/subscriptions", Some(&token))
            .await
            .json()
            .await
            .unwrap();
        let live = body["subscriptions"].as_array().unwrap().len();
        if live == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {live} listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn r31_encoded_topics_round_trip_through_the_api() {
    let hub = hub().await;
    let token = watcher_token();
    for topic in [
        "https://example.com/a/b",
        "https://example.com/a%2Fb",
        "with space",
        "https://example.com/{id}",
        "https://example.com/café/日本",
    ] {
        let mut watcher = watch(&hub).await;
        let _subscriber = hub.subscribe(&format!("topic={}", enc(topic))).await;
        let started = next_about(&mut watcher, topic).await;
        let iri = started["subscriber"].as_str().unwrap();

        let path = started["id"].as_str().unwrap();
        let one = api(&hub, path, Some(&token)).await;
        assert_eq!(one.status(), 200, "GET {path}");
        let document: Value = one.json().await.unwrap();
        assert_eq!(document["topic"], topic);
        assert_eq!(document["subscriber"], iri);
        assert_eq!(document["active"], true);
        assert_eq!(document["id"], path);

        let per_topic = format!("/.well-known/mercure/subscriptions/{}", enc(topic));
        let collection: Value = api(&hub, &per_topic, Some(&token))
            .await
            .json()
            .await
            .unwrap();
        let listed: Vec<&str> = collection["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subscriber"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [iri], "per-topic collection of {topic:?}");
    }
}

#[tokio::test]
async fn r31_unknown_subscription_is_404() {
    let hub = hub().await;
    let response = api(
        &hub,
        "/.well-known/mercure/subscriptions/nope/urn%3Auuid%3Ax",
        Some(&watcher_token()),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert!(!response.text().await.unwrap().trim().is_empty());
}

#[tokio::test]
async fn r31_etag_is_the_last_event_id_and_if_none_match_gives_304() {
    let hub = hub().await;
    hub.publish_ok(&[("topic", "x"), ("id", "marker")]).await;
    let token = watcher_token();
    let response = api(&hub, "/.well-known/mercure/subscriptions", Some(&token)).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["lastEventID"], "marker");
    assert_eq!(etag, "\"marker\"");
    let cached = hub
        .client
        .get(format!("{}/.well-known/mercure/subscriptions", hub.base))
        .bearer_auth(&token)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
}

#[tokio::test]
async fn r31_api_needs_a_token_whose_subscribe_claim_matches_the_url() {
    let hub = hub().await;
    let none = api(&hub, "/.well-known/mercure/subscriptions", None).await;
    assert_eq!(none.status(), 401);
    let other = token(json!({"mercure": {"subscribe": ["https://example.com/{x}"]}}));
    let forbidden = api(&hub, "/.well-known/mercure/subscriptions", Some(&other)).await;
    assert_eq!(forbidden.status(), 403);
    assert!(forbidden.text().await.unwrap().contains("subscriptions"));
}

#[tokio::test]
async fn r31_api_is_absent_unless_enabled() {
    let hub = TestHub::default().await;
    let response = api(
        &hub,
        "/.well-known/mercure/subscriptions",
        Some(&watcher_token()),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("--subscriptions"));
}

#[tokio::test]
async fn r30_a_killed_client_is_reported_inactive() {
    let hub = hub().await;
    let mut watcher = watch(&hub).await;
    // A real client process, killed with SIGKILL: it never closes its stream cleanly.
    let mut curl = std::process::Command::new("curl")
        .args(["-s", "-N", "-o", "/dev/null"])
        .arg(format!("{}?topic=killed", hub.url))
        .spawn()
        .expect("curl is installed");
    let started = next_about(&mut watcher, "killed").await;
    assert_eq!(started["active"], true);
    curl.kill().unwrap();
    curl.wait().unwrap();
    // Found out by the next heartbeat write (200 ms here), at the latest.
    let ended = tokio::time::timeout(Duration::from_secs(3), next_about(&mut watcher, "killed"))
        .await
        .expect("the killed client is reported within a few heartbeats");
    assert_eq!(ended["active"], false);
    assert_eq!(ended["subscriber"], started["subscriber"]);
}
