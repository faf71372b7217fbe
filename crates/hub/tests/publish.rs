//! Publishing over real TCP: the endpoint, the body formats and their validation, ids, the
//! success response, the reserved namespace and the limits [R1][R12]-[R14][R16][R17].
//!
//! Authorization of publishers is in auth.rs.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use herald_hub::{HubConfig, JwtKey};
use herald_protocol::Algorithm;
use serde_json::json;

/// A subscriber to every topic, allowed to receive private updates too.
async fn watch_all(hub: &TestHub) -> EventReader {
    hub.subscribe_with(hub.get("topic=*").bearer_auth(subscriber_token(&["*"])))
        .await
}

/// A POST with a raw body and content type, authorized to publish everywhere.
async fn post_raw(
    hub: &TestHub,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    hub.client
        .post(&hub.url)
        .bearer_auth(publisher_token())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Publishes a public marker and asserts it is the next event `sub` receives: whatever was
/// refused before it was not published.
async fn assert_next_is_marker(hub: &TestHub, sub: &mut EventReader) {
    let id = hub
        .publish_ok(&[("topic", "https://example.com/marker"), ("data", "marker")])
        .await;
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()), "got {event:?}");
    assert_eq!(event.data, "marker");
}

// [R1] ---------------------------------------------------------------------------------------

#[tokio::test]
async fn r1_hub_endpoint_is_well_known_mercure() {
    let hub = TestHub::default().await;
    assert!(hub.url.ends_with("/.well-known/mercure"));
    let mut sub = hub
        .subscribe_with(
            hub.client
                .get(format!("{}/.well-known/mercure?topic=*", hub.base))
                .bearer_auth(subscriber_token(&[])),
        )
        .await;
    let response = hub
        .client
        .post(format!("{}/.well-known/mercure", hub.base))
        .bearer_auth(publisher_token())
        .form(&[("topic", "https://example.com/a"), ("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sub.next_event().await.data, "x");
}

#[tokio::test]
async fn r1_other_paths_are_not_the_hub() {
    let hub = TestHub::default().await;
    for path in ["/mercure", "/.well-known/mercur", "/hub"] {
        let response = hub
            .client
            .post(format!("{}{path}", hub.base))
            .bearer_auth(publisher_token())
            .form(&[("topic", "https://example.com/a")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "POST {path}");
    }
}

// [R12] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r12_form_fields_reach_the_subscriber() {
    let hub = TestHub::default().await;
    let mut on_first = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc("https://example.com/first")))
                .bearer_auth(subscriber_token(&[])),
        )
        .await;
    let mut on_second = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc("https://example.com/second")))
                .bearer_auth(subscriber_token(&[])),
        )
        .await;
    let id = hub
        .publish_ok(&[
            ("topic", "https://example.com/first"),
            ("topic", "https://example.com/second"),
            ("data", "line one\nline two"),
            ("id", "my-id-1"),
            ("type", "book-updated"),
            ("retry", "2500"),
        ])
        .await;
    assert_eq!(id, "my-id-1");
    for sub in [&mut on_first, &mut on_second] {
        let event = sub.next_event().await;
        assert_eq!(event.id.as_deref(), Some("my-id-1"));
        assert_eq!(event.event.as_deref(), Some("book-updated"));
        assert_eq!(event.retry.as_deref(), Some("2500"));
        assert_eq!(event.data, "line one\nline two");
    }
}

#[tokio::test]
async fn r12_private_with_any_value_makes_the_update_private() {
    let hub = TestHub::default().await;
    let mut authorized = watch_all(&hub).await;
    let mut unauthorized = hub
        .subscribe_with(hub.get("topic=*").bearer_auth(subscriber_token(&[])))
        .await;
    let mut private_ids = Vec::new();
    for value in ["", "false", "0", "on"] {
        private_ids.push(
            hub.publish_ok(&[
                ("topic", "https://example.com/secret"),
                ("data", "secret"),
                ("private", value),
            ])
            .await,
        );
    }
    for id in &private_ids {
        assert_eq!(authorized.next_event().await.id.as_ref(), Some(id));
    }
    // The unauthorized subscriber gets none of them: its next event is the public marker.
    assert_next_is_marker(&hub, &mut unauthorized).await;
}

#[tokio::test]
async fn r12_charset_parameter_in_content_type_is_accepted() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for content_type in [
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/x-www-form-urlencoded;charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let body = format!(
            "topic={}&data={}",
            enc("https://example.com/a"),
            enc("café")
        );
        let response = post_raw(&hub, content_type, body).await;
        assert_eq!(response.status(), 200, "{content_type}");
        assert_eq!(sub.next_event().await.data, "café");
    }
}

#[tokio::test]
async fn r12_unknown_fields_are_ignored() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let id = hub
        .publish_ok(&[
            ("topic", "https://example.com/a"),
            ("data", "kept"),
            ("color", "blue"),
            ("lastEventID", "whatever"),
        ])
        .await;
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data, "kept");
}

#[tokio::test]
async fn r12_id_starting_with_hash_is_400() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let response = hub
        .publish(&[("topic", "https://example.com/a"), ("id", "#x")])
        .await;
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("id"), "{reason}");
    assert_next_is_marker(&hub, &mut sub).await;
}

#[tokio::test]
async fn r12_id_with_cr_lf_or_nul_is_400() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for id in ["a\rb", "a\nb", "a\r\nb", "a\0b", "\n"] {
        let response = hub
            .publish(&[("topic", "https://example.com/a"), ("id", id)])
            .await;
        let reason = expect_rejection(response, 400).await;
        assert!(reason.contains("id"), "{id:?}: {reason}");
    }
    assert_next_is_marker(&hub, &mut sub).await;
}

#[tokio::test]
async fn r12_type_with_cr_lf_or_nul_is_400() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for event_type in ["a\rb", "a\nb", "x\r\n", "a\0b"] {
        let response = hub
            .publish(&[("topic", "https://example.com/a"), ("type", event_type)])
            .await;
        let reason = expect_rejection(response, 400).await;
        assert!(reason.contains("type"), "{event_type:?}: {reason}");
    }
    assert_next_is_marker(&hub, &mut sub).await;
}

#[tokio::test]
async fn r12_negative_or_non_numeric_retry_is_400() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for retry in ["-1", "abc", "1.5", "99999999999999999999999"] {
        let response = hub
            .publish(&[("topic", "https://example.com/a"), ("retry", retry)])
            .await;
        let reason = expect_rejection(response, 400).await;
        assert!(reason.contains("retry"), "{retry:?}: {reason}");
    }
    assert_next_is_marker(&hub, &mut sub).await;
}

#[tokio::test]
async fn r12_no_topic_is_400() {
    let hub = TestHub::default().await;
    let response = hub.publish(&[("data", "orphan")]).await;
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("topic"), "{reason}");
    let empty = post_raw(&hub, "application/x-www-form-urlencoded", "").await;
    expect_rejection(empty, 400).await;
}

#[tokio::test]
async fn r12_unsupported_content_type_is_415() {
    let hub = TestHub::default().await;
    for content_type in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        let response = post_raw(&hub, content_type, "topic=https%3A%2F%2Fexample.com%2Fa").await;
        let reason = expect_rejection(response, 415).await;
        assert!(reason.contains("x-www-form-urlencoded"), "{reason}");
    }
    // No Content-Type at all.
    let response = hub
        .client
        .post(&hub.url)
        .bearer_auth(publisher_token())
        .body("topic=a")
        .send()
        .await
        .unwrap();
    expect_rejection(response, 415).await;
}

#[tokio::test]
async fn r12_json_body_publishes_like_a_form() {
    let hub = TestHub::default().await;
    let mut on_second = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc("https://example.com/second")))
                .bearer_auth(subscriber_token(&["*"])),
        )
        .await;
    let body = json!({
        "topic": ["https://example.com/first", "https://example.com/second"],
        "data": "line one\nline two",
        "private": true,
        "id": "json-1",
        "type": "created",
        "retry": 1000,
    });
    let response = post_raw(&hub, "application/json", body.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "json-1");
    let event = on_second.next_event().await;
    assert_eq!(event.id.as_deref(), Some("json-1"));
    assert_eq!(event.event.as_deref(), Some("created"));
    assert_eq!(event.retry.as_deref(), Some("1000"));
    assert_eq!(event.data, "line one\nline two");
}

#[tokio::test]
async fn r12_json_private_update_reaches_only_authorized_subscribers() {
    let hub = TestHub::default().await;
    let mut unauthorized = hub
        .subscribe_with(hub.get("topic=*").bearer_auth(subscriber_token(&[])))
        .await;
    let body = json!({"topic": "https://example.com/secret", "data": "s", "private": true});
    let response = post_raw(&hub, "application/json; charset=utf-8", body.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_next_is_marker(&hub, &mut unauthorized).await;
}

#[tokio::test]
async fn r12_json_single_topic_string_and_generated_id() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let body = json!({"topic": "https://example.com/one", "data": "d"});
    let response = post_raw(&hub, "application/json", body.to_string()).await;
    assert_eq!(response.status(), 200);
    let id = response.text().await.unwrap();
    assert!(id.starts_with("urn:uuid:"), "{id}");
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data, "d");
}

#[tokio::test]
async fn r12_json_object_data_is_published_as_its_json_text() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let body = json!({"topic": "https://example.com/a", "data": {"status": "done", "n": 3}});
    let response = post_raw(&hub, "application/json", body.to_string()).await;
    assert_eq!(response.status(), 200);
    let event = sub.next_event().await;
    let data: serde_json::Value = serde_json::from_str(&event.data).expect("data is JSON text");
    assert_eq!(data, json!({"status": "done", "n": 3}));
}

#[tokio::test]
async fn r12_json_unknown_fields_are_ignored() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let body = json!({"topic": "https://example.com/a", "data": "kept", "color": "blue"});
    let response = post_raw(&hub, "application/json", body.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sub.next_event().await.data, "kept");
}

#[tokio::test]
async fn r12_form_data_that_is_not_utf8_is_400() {
    let hub = TestHub::default().await;
    let response = post_raw(
        &hub,
        "application/x-www-form-urlencoded",
        "topic=https%3A%2F%2Fexample.com%2Fa&data=%FF%FE",
    )
    .await;
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("UTF-8"), "{reason}");
}

#[tokio::test]
async fn r12_malformed_json_is_400() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for body in [
        "{",
        "not json",
        r#"{"topic": 5}"#,
        r#"{"topic": "https://example.com/a", "private": "yes"}"#,
        "[]",
    ] {
        let response = post_raw(&hub, "application/json", body).await;
        let reason = expect_rejection(response, 400).await;
        assert!(reason.contains("JSON"), "{body}: {reason}");
    }
    assert_next_is_marker(&hub, &mut sub).await;
}

#[tokio::test]
async fn r12_json_invalid_fields_are_400() {
    let hub = TestHub::default().await;
    for body in [
        json!({"data": "no topic"}),
        json!({"topic": [], "data": "no topic"}),
        json!({"topic": "https://example.com/a", "id": "#x"}),
        json!({"topic": "https://example.com/a", "id": "a\nb"}),
        json!({"topic": "https://example.com/a", "type": "a\rb"}),
        json!({"topic": "https://example.com/a", "retry": -1}),
        json!({"topic": "https://example.com/a", "retry": "abc"}),
    ] {
        let response = post_raw(&hub, "application/json", body.to_string()).await;
        expect_rejection(response, 400).await;
    }
}

// [R13] --------------------------------------------------------------------------------------

/// The Unix time in milliseconds a UUIDv7 carries, or `None` if `uuid` is not one.
fn uuid_v7_millis(uuid: &str) -> Option<u64> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths != [8, 4, 4, 4, 12]
        || !groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        || uuid.bytes().any(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let version = groups[2].as_bytes()[0];
    let variant = groups[3].as_bytes()[0];
    if version != b'7' || !b"89ab".contains(&variant) {
        return None;
    }
    u64::from_str_radix(&format!("{}{}", groups[0], groups[1]), 16).ok()
}

#[tokio::test]
async fn r13_generated_id_is_urn_uuid_v7() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let first = hub.publish_ok(&[("topic", "https://example.com/a")]).await;
    let second = hub.publish_ok(&[("topic", "https://example.com/a")]).await;
    assert_ne!(first, second);
    for id in [&first, &second] {
        let uuid = id
            .strip_prefix("urn:uuid:")
            .unwrap_or_else(|| panic!("{id}"));
        let millis = uuid_v7_millis(uuid).unwrap_or_else(|| panic!("{id} is not a UUIDv7"));
        assert!(
            millis.abs_diff(now) < 60_000,
            "{id}: timestamp {millis} far from {now}"
        );
        assert_eq!(sub.next_event().await.id.as_ref(), Some(id));
    }
}

#[tokio::test]
async fn r13_client_ids_are_accepted_duplicates_included() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for (data, id) in [
        ("1", "https://example.com/events/1"),
        ("2", "https://example.com/events/1"),
        ("3", "plain-id"),
    ] {
        let response = hub
            .publish(&[
                ("topic", "https://example.com/a"),
                ("id", id),
                ("data", data),
            ])
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), id);
        let event = sub.next_event().await;
        assert_eq!(event.id.as_deref(), Some(id));
        assert_eq!(event.data, data);
    }
}

// [R14] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r14_success_is_200_text_plain_with_the_id_the_subscriber_sees() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    let response = hub
        .publish(&[("topic", "https://example.com/a"), ("data", "x")])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let id = response.text().await.unwrap();
    assert!(!id.is_empty() && !id.contains(['\n', '\r', ' ']), "{id:?}");
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

// [R16] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r16_topic_in_hub_namespace_is_403() {
    let hub = TestHub::default().await;
    let mut sub = watch_all(&hub).await;
    for topics in [
        vec!["/.well-known/mercure/subscriptions/x"],
        vec!["https://host/.well-known/mercure/x"],
        vec![
            "https://example.com/ok",
            "/.well-known/mercure/subscriptions/a/b",
        ],
    ] {
        let mut fields: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
        fields.push(("data", "forged"));
        let response = hub.publish(&fields).await;
        let reason = expect_rejection(response, 403).await;
        assert!(reason.contains("/.well-known/mercure"), "{reason}");
    }
    assert_next_is_marker(&hub, &mut sub).await;
}

// [R17] --------------------------------------------------------------------------------------

fn small_body_config(max_body_bytes: usize) -> HubConfig {
    HubConfig {
        max_body_bytes,
        ..config()
    }
}

#[tokio::test]
async fn r17_body_over_max_body_bytes_is_413() {
    let hub = TestHub::start(small_body_config(1024)).await;
    let prefix = "topic=a&data=";
    let at_limit = format!("{prefix}{}", "x".repeat(1024 - prefix.len()));
    assert_eq!(at_limit.len(), 1024);
    let response = post_raw(&hub, "application/x-www-form-urlencoded", at_limit).await;
    assert_eq!(
        response.status(),
        200,
        "a body of exactly the limit is accepted"
    );

    let over = format!("{prefix}{}", "x".repeat(1025 - prefix.len()));
    let response = post_raw(&hub, "application/x-www-form-urlencoded", over).await;
    let reason = expect_rejection(response, 413).await;
    assert!(reason.contains("1024"), "{reason}");

    let far_over = format!("{prefix}{}", "x".repeat(64 * 1024));
    let response = post_raw(&hub, "application/x-www-form-urlencoded", far_over).await;
    expect_rejection(response, 413).await;
}

#[tokio::test]
async fn r17_body_over_the_default_1_mib_is_413() {
    let hub = TestHub::default().await;
    let body = format!("topic=a&data={}", "x".repeat(2 << 20));
    let response = post_raw(&hub, "application/x-www-form-urlencoded", body).await;
    let reason = expect_rejection(response, 413).await;
    assert!(reason.contains(&(1usize << 20).to_string()), "{reason}");
}

#[tokio::test]
async fn r17_chunked_body_over_max_body_bytes_is_413() {
    // No Content-Length: the limit holds while the body streams in.
    let hub = TestHub::start(small_body_config(1024)).await;
    let chunks: Vec<Result<String, std::io::Error>> = std::iter::once("topic=a&data=".to_owned())
        .chain((0..8).map(|_| "x".repeat(512)))
        .map(Ok)
        .collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = post_raw(&hub, "application/x-www-form-urlencoded", body).await;
    expect_rejection(response, 413).await;
}

#[tokio::test]
async fn r17_json_body_over_max_body_bytes_is_413() {
    let hub = TestHub::start(small_body_config(1024)).await;
    let body = json!({"topic": "a", "data": "x".repeat(2048)}).to_string();
    let response = post_raw(&hub, "application/json", body).await;
    expect_rejection(response, 413).await;
}

#[tokio::test]
async fn r17_1001_topics_is_400_and_1000_is_accepted() {
    let hub = TestHub::default().await;
    let topics: Vec<String> = (0..1001)
        .map(|i| format!("https://example.com/t/{i}"))
        .collect();
    let fields = |n: usize| -> Vec<(&str, &str)> {
        topics[..n].iter().map(|t| ("topic", t.as_str())).collect()
    };
    let response = hub.publish(&fields(1001)).await;
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("1000"), "{reason}");
    let response = hub.publish(&fields(1000)).await;
    assert_eq!(response.status(), 200);
}

// Routes exist only when configured ----------------------------------------------------------

#[tokio::test]
async fn publishing_disabled_without_publisher_key_is_405() {
    let hub = TestHub::start(HubConfig {
        publisher_key: None,
        subscriber_key: Some(JwtKey {
            algorithm: Algorithm::HS256,
            key: KEY.as_bytes().to_vec(),
        }),
        ..HubConfig::default()
    })
    .await;
    let response = hub.publish(&[("topic", "https://example.com/a")]).await;
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let reason = expect_rejection(response, 405).await;
    assert!(reason.contains("publishing is disabled"), "{reason}");
    // Subscribing still works.
    hub.subscribe_with(hub.get("topic=*").bearer_auth(subscriber_token(&[])))
        .await;
}
