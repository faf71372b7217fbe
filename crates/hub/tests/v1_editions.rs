//! Which edition a request speaks, and that every answer of the request takes its form, over
//! real TCP [V1]-[V5]. The rule (`herald_protocol::ProtocolVersion::of_request`): a request's
//! parameters and its token must agree when both tell; one alone decides; neither is draft-07.
//! Also every RFC 6750 error case of issue 11 ("Done when"), for subscribe and publish, with its
//! status and `WWW-Authenticate` header [V3].

mod common;

use common::*;
use herald_hub::HubConfig;
use serde_json::{Value, json};

const METADATA: &str =
    "https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure";
const TOPIC: &str = "https://example.com/a";

fn v1_config() -> HubConfig {
    HubConfig {
        hub_url: Some(V1_HUB_URL.into()),
        subscriptions: true,
        ..config()
    }
}

/// Asserts `response`'s status, `WWW-Authenticate` header and (for RFC 6750 answers) body.
async fn assert_answer(response: reqwest::Response, status: u16, challenge: &str) -> String {
    let got = response.status().as_u16();
    let header = www_authenticate(&response);
    let body = response.text().await.unwrap();
    assert_eq!(got, status, "body {body:?}");
    assert_eq!(header, challenge, "body {body:?}");
    body
}

fn v1_subscriber() -> String {
    v1_access_token(vec![v1_detail(&["subscribe"], &[("exact", "*")], None)])
}

fn v1_publisher() -> String {
    v1_access_token(vec![v1_detail(&["publish"], &[("exact", "*")], None)])
}

/// The challenge of a refusal that names no RFC 6750 error: where the metadata is.
fn metadata_only() -> String {
    format!(r#"Bearer resource_metadata="{METADATA}""#)
}

fn rfc6750(error: &str) -> String {
    format!(r#"Bearer error="{error}", resource_metadata="{METADATA}""#)
}

#[tokio::test]
async fn v1_parameters_and_token_of_different_editions_are_refused() {
    let hub = TestHub::start(v1_config()).await;
    let draft07_query = format!("topic={}", enc(TOPIC));
    let v1_query = format!("match={}", enc(TOPIC));

    // A draft-07 query with a 1.0 access token: a draft-07 answer, which names the fix.
    let response = hub
        .get(&draft07_query)
        .bearer_auth(v1_subscriber())
        .send()
        .await
        .unwrap();
    let body = assert_answer(response, 401, &metadata_only()).await;
    assert!(body.contains("match="), "{body}");
    // The same token in the draft-07 query parameter.
    let response = hub
        .get(&format!(
            "{draft07_query}&authorization={}",
            v1_subscriber()
        ))
        .send()
        .await
        .unwrap();
    let body = assert_answer(response, 401, &metadata_only()).await;
    assert!(body.contains("1.0 access token"), "{body}");

    // A 1.0 query with a draft-07 token: draft-08 accepts only `typ: at+jwt` tokens.
    let response = hub
        .get(&v1_query)
        .bearer_auth(subscriber_token(&["*"]))
        .send()
        .await
        .unwrap();
    let body = assert_answer(response, 401, &rfc6750("invalid_token")).await;
    assert_eq!(body, "invalid_token\n");

    // A subscriptions API path of three parts is 1.0's: a draft-07 token is refused the same way.
    let path = format!(
        "{}/.well-known/mercure/subscriptions/exact/{}/someone",
        hub.base,
        enc(TOPIC)
    );
    let response = hub
        .client
        .get(&path)
        .bearer_auth(subscriber_token(&["*"]))
        .send()
        .await
        .unwrap();
    assert_answer(response, 401, &rfc6750("invalid_token")).await;

    // Each with the other edition's token is fine.
    let mut v1 = hub
        .subscribe_with(hub.get(&v1_query).bearer_auth(v1_subscriber()))
        .await;
    let mut draft07 = hub
        .subscribe_with(
            hub.get(&draft07_query)
                .bearer_auth(subscriber_token(&["*"])),
        )
        .await;
    let id = hub
        .publish_ok(&[("topic", TOPIC), ("data", "x"), ("private", "on")])
        .await;
    assert_eq!(v1.next_event().await.id.as_deref(), Some(id.as_str()));
    assert_eq!(draft07.next_event().await.id.as_deref(), Some(id.as_str()));
}

/// A browser sends every cookie whatever the page does: a cookie whose token is of the other
/// edition than the query is skipped, not refused.
#[tokio::test]
async fn v1_a_cookie_of_the_other_edition_is_skipped() {
    let hub = TestHub::start(v1_config()).await;
    let cookies = format!(
        "mercureAuthorization={}; __Secure-mercure_access_token={}",
        subscriber_token(&["*"]),
        v1_subscriber()
    );
    for query in [
        format!("match={}", enc(TOPIC)),
        format!("topic={}", enc(TOPIC)),
    ] {
        let mut events = hub
            .subscribe_with(hub.get(&query).header("cookie", &cookies))
            .await;
        let id = hub.publish_ok(&[("topic", TOPIC), ("private", "on")]).await;
        assert_eq!(events.next_event().await.id.as_deref(), Some(id.as_str()));
    }
    // Only the other edition's cookie: as if there were none (this hub wants a token).
    let only_v1 = format!("__Secure-mercure_access_token={}", v1_subscriber());
    let response = hub
        .get(&format!("topic={}", enc(TOPIC)))
        .header("cookie", only_v1)
        .send()
        .await
        .unwrap();
    let body = assert_answer(response, 401, &metadata_only()).await;
    assert!(body.contains("no token"), "{body}");
}

/// Every answer of one request is of its edition: the stream's replay header and its
/// subscription events.
#[tokio::test]
async fn v1_every_answer_of_a_request_takes_its_edition() {
    let hub = TestHub::start(v1_config()).await;
    let first = hub.publish_ok(&[("topic", TOPIC), ("data", "1")]).await;
    let watcher_right = v1_access_token(vec![v1_detail(
        &["subscribe"],
        &[("urlpattern", "/.well-known/mercure/subscriptions*")],
        None,
    )]);
    let mut watcher = hub
        .subscribe_with(
            hub.get(&format!(
                "match_urlpattern={}",
                enc("/.well-known/mercure/subscriptions*")
            ))
            .bearer_auth(&watcher_right),
        )
        .await;

    let v1 = hub
        .subscribe_with(
            hub.get(&format!(
                "match={}&last_event_id={}",
                enc(TOPIC),
                enc(&first)
            ))
            .bearer_auth(v1_subscriber()),
        )
        .await;
    assert_eq!(v1.headers["mercure-last-event-id"], first.as_str());
    assert!(v1.headers.get("last-event-id").is_none());
    let draft07 = hub
        .subscribe_with(
            hub.get(&format!("topic={}&lastEventID={}", enc(TOPIC), enc(&first)))
                .bearer_auth(subscriber_token(&["*"])),
        )
        .await;
    assert_eq!(draft07.headers["last-event-id"], first.as_str());
    assert!(draft07.headers.get("mercure-last-event-id").is_none());

    // Their subscription events: 1.0's `event: mercure` plain JSON, draft-07's JSON-LD.
    let mut formats = Vec::new();
    while formats.len() < 2 {
        let event = watcher.next_event().await;
        let document: Value = serde_json::from_str(&event.data).unwrap();
        if document["match"] == TOPIC {
            assert_eq!(event.event.as_deref(), Some("mercure"));
            assert_eq!(document["type"], "subscription");
            formats.push("1.0");
        } else if document["topic"] == TOPIC {
            assert_eq!(event.event, None);
            assert_eq!(document["type"], "Subscription");
            assert_eq!(document["@context"], "https://mercure.rocks/");
            formats.push("draft-07");
        }
    }
    formats.sort();
    assert_eq!(formats, ["1.0", "draft-07"]);
}

/// issue 11, "Done when": every error case, for subscribe and publish, with its status and its
/// `WWW-Authenticate` header [V3].
#[tokio::test]
async fn v3_every_error_case_has_its_status_and_challenge() {
    let hub = TestHub::start(v1_config()).await;
    let subscribe = format!("match={}", enc(TOPIC));
    let publish = |builder: reqwest::RequestBuilder| builder.form(&[("topic", TOPIC)]);
    let post = |query: &str| hub.client.post(format!("{}?{query}", hub.url));
    let expired = v1_access_token_with(
        vec![v1_detail(
            &["publish", "subscribe"],
            &[("exact", "*")],
            None,
        )],
        json!({"exp": now_secs() - 10}),
    );
    let no_token = format!(r#"Bearer resource_metadata="{METADATA}""#);

    // No token.
    let response = hub.get(&subscribe).send().await.unwrap();
    assert_answer(response, 401, &no_token).await;
    let response = publish(hub.client.post(&hub.url)).send().await.unwrap();
    // Nothing in a publish without a token tells its edition: draft-07's reason in the body,
    // the challenge the same.
    assert_answer(response, 401, &no_token).await;

    // A bad token.
    let response = hub
        .get(&subscribe)
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_answer(response, 401, &rfc6750("invalid_token")).await;
    let response = publish(hub.client.post(&hub.url).bearer_auth(&expired))
        .send()
        .await
        .unwrap();
    assert_answer(response, 401, &rfc6750("invalid_token")).await;

    // A valid token without the grant. Subscribing needs none (a token only widens what is
    // received), so the subscribe-side case is the subscriptions API.
    let response = publish(hub.client.post(&hub.url).bearer_auth(v1_subscriber()))
        .send()
        .await
        .unwrap();
    assert_answer(response, 403, r#"Bearer error="insufficient_scope""#).await;
    let narrow = v1_access_token(vec![v1_detail(
        &["subscribe"],
        &[("exact", "https://example.com/other")],
        None,
    )]);
    let response = hub
        .client
        .get(format!("{}/.well-known/mercure/subscriptions", hub.base))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap();
    assert_answer(response, 403, r#"Bearer error="insufficient_scope""#).await;

    // Malformed presentations: two Authorization headers, another scheme.
    let two = |builder: reqwest::RequestBuilder, token: &str| {
        builder
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}"))
    };
    let response = two(hub.get(&subscribe), &v1_subscriber())
        .send()
        .await
        .unwrap();
    assert_answer(response, 400, &rfc6750("invalid_request")).await;
    let response = publish(two(hub.client.post(&hub.url), &v1_publisher()))
        .send()
        .await
        .unwrap();
    assert_answer(response, 400, &rfc6750("invalid_request")).await;
    let basic = |builder: reqwest::RequestBuilder, token: &str| {
        builder.header("authorization", format!("Basic {token}"))
    };
    let response = basic(hub.get(&subscribe), &v1_subscriber())
        .send()
        .await
        .unwrap();
    assert_answer(response, 400, &rfc6750("invalid_request")).await;
    let response = publish(basic(hub.client.post(&hub.url), &v1_publisher()))
        .send()
        .await
        .unwrap();
    assert_answer(response, 400, &rfc6750("invalid_request")).await;

    // A token in a query parameter of a 1.0 request: draft-07's `authorization`, RFC 6750's
    // `access_token`.
    for parameter in ["authorization", "access_token"] {
        let query = format!("{subscribe}&{parameter}={}", v1_subscriber());
        let response = hub.get(&query).send().await.unwrap();
        assert_answer(response, 400, &rfc6750("invalid_request")).await;
        let response = publish(post(&format!("{parameter}={}", v1_publisher())))
            .send()
            .await
            .unwrap();
        assert_answer(response, 400, &rfc6750("invalid_request")).await;
    }
}
