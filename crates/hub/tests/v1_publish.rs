//! The publishing rules of Mercure 1.0 (draft-08) over real TCP, and which of them draft-07
//! publishes share [V3].
//!
//! A publish speaks 1.0 when its token is a 1.0 access token (`typ: at+jwt`, grants in
//! `authorization_details`).

mod common;

use common::*;
use herald_hub::HubConfig;

/// A 1.0 access token allowed to publish everywhere.
fn v1_publisher_token() -> String {
    v1_access_token(vec![v1_detail(&["publish"], &[("exact", "*")], None)])
}

async fn hub() -> TestHub {
    TestHub::start(HubConfig {
        hub_url: Some(V1_HUB_URL.into()),
        ..config()
    })
    .await
}

#[tokio::test]
async fn v3_v1_publish_rules() {
    let hub = hub().await;
    let token = v1_publisher_token();
    let long = "a".repeat(herald_protocol::publish::MAX_FIELD_BYTES + 1);
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("topic", "https://example.com/a\u{7}")], 400),
        (
            vec![("topic", "https://example.com/a"), ("id", "x\u{0}y")],
            400,
        ),
        (
            vec![("topic", "https://example.com/a"), ("type", "a\u{9f}")],
            400,
        ),
        (
            vec![("topic", "https://example.com/a"), ("type", "mercure")],
            400,
        ),
        (vec![("topic", "/.well-known/mercure/subscriptions/x")], 400),
        (
            vec![(
                "topic",
                "https://hub.example/.well-known/mercure/subscriptions/a/b/c",
            )],
            400,
        ),
        // Relative, resolved against the hub URL: inside the namespace.
        (vec![("topic", "mercure/subscriptions/exact/a/b")], 400),
        (
            vec![("topic", "https://example.com/a"), ("retry", "+5")],
            400,
        ),
        (
            vec![("topic", "https://example.com/a"), ("retry", " 5")],
            400,
        ),
        (vec![("topic", "a"), ("topic", "b")], 400),
        (vec![("topic", long.as_str())], 413),
        (
            vec![("topic", "https://example.com/a"), ("id", long.as_str())],
            413,
        ),
    ];
    for (fields, status) in cases {
        let response = hub.publish_with(&token, &fields).await;
        let reason = expect_rejection(response, status).await;
        assert!(!reason.is_empty(), "{fields:?}");
    }
    let ok = hub
        .publish_with(
            &token,
            &[
                ("topic", "https://example.com/a"),
                ("retry", "1500"),
                ("type", "x"),
            ],
        )
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn v3_rules_draft07_publishes_share() {
    let hub = hub().await;
    // Control characters break the SSE framing (id, type) and have no place in a topic; the
    // hub's own event type is reserved; fields have the same length limit.
    for (fields, status) in [
        (vec![("topic", "https://example.com/a\u{1}")], 400),
        (
            vec![("topic", "https://example.com/a"), ("type", "mercure")],
            400,
        ),
        (
            vec![("topic", "https://example.com/a"), ("id", "a\u{7f}")],
            400,
        ),
    ] {
        expect_rejection(hub.publish(&fields).await, status).await;
    }
    // The reserved namespace stays 403 for draft-07 [R16], relative topics included.
    for topic in ["/.well-known/mercure/x", "mercure/subscriptions/a/b"] {
        expect_rejection(hub.publish(&[("topic", topic)]).await, 403).await;
    }
    // draft-07 keeps alternate topics and a lenient retry.
    let response = hub
        .publish(&[("topic", "a"), ("topic", "b"), ("retry", " 5")])
        .await;
    assert_eq!(response.status(), 200);
}
