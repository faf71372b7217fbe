//! Mercure 1.0 access tokens, their presentation, RFC 6750 answers and discovery [V2][V3][V6],
//! side by side with draft-07 tokens, over real TCP.

mod common;

use common::{KEY, TestHub, config, publisher_token, subscriber_token, www_authenticate};
use herald_hub::HubConfig;
use herald_protocol::ProtocolSet;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const HUB_URL: &str = "https://hub.example/.well-known/mercure";
const ISSUER: &str = "https://app.example";
const METADATA: &str =
    "https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure";
const DETAIL: &str = "https://mercure.rocks/authorization-detail";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn v1_config() -> HubConfig {
    HubConfig {
        hub_url: Some(HUB_URL.into()),
        publisher_issuers: vec![ISSUER.into()],
        subscriber_issuers: vec![ISSUER.into()],
        ..config()
    }
}

/// An access token (`typ: at+jwt`) signed with the test key: the usual registered claims, then
/// `extra` on top (a `null` removes a claim).
fn access_token(extra: Value) -> String {
    access_token_typed("at+jwt", extra)
}

fn access_token_typed(typ: &str, extra: Value) -> String {
    let mut claims = json!({"iss": ISSUER, "aud": HUB_URL, "exp": now() + 600, "sub": "alice"});
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some(typ.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(KEY.as_bytes())).unwrap()
}

fn grant(actions: &[&str], topics: Value) -> Value {
    json!({"authorization_details": [{"type": DETAIL, "actions": actions, "topics": topics}]})
}

fn publish_everything() -> String {
    access_token(grant(&["publish"], json!([{"match": "*"}])))
}

async fn publish_as(hub: &TestHub, token: &str, topic: &str) -> reqwest::Response {
    hub.publish_with(token, &[("topic", topic), ("data", "x")])
        .await
}

#[tokio::test]
async fn v2_access_token_grants_publish_and_private_subscribe() {
    let hub = TestHub::start(v1_config()).await;
    let publisher = access_token(grant(
        &["publish"],
        json!([{"match": "https://example.com/books/:id", "match_type": "urlpattern"}]),
    ));
    let subscriber = access_token(grant(
        &["subscribe"],
        json!([{"match": "https://example.com/books/1"}]),
    ));
    let mut events = hub
        .subscribe_with(
            hub.get("match_urlpattern=https%3A%2F%2Fexample.com%2Fbooks%2F%3Aid")
                .bearer_auth(&subscriber),
        )
        .await;
    for book in ["2", "1"] {
        let response = hub
            .publish_with(
                &publisher,
                &[
                    ("topic", &format!("https://example.com/books/{book}")),
                    ("data", book),
                    ("private", "on"),
                ],
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(events.next_event().await.data, "1", "only the granted book");
    // The URL pattern does not cover another path.
    let response = publish_as(&hub, &publisher, "https://example.com/authors/1").await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        www_authenticate(&response),
        r#"Bearer error="insufficient_scope""#
    );
    assert_eq!(response.text().await.unwrap(), "insufficient_scope\n");
}

#[tokio::test]
async fn v2_draft07_and_v1_tokens_work_side_by_side() {
    let hub = TestHub::start(v1_config()).await;
    let mut old = hub.subscribe_to(&["https://example.com/a"], &["*"]).await;
    let mut new =
        hub.subscribe_with(hub.get("match=https%3A%2F%2Fexample.com%2Fa").bearer_auth(
            access_token(grant(
                &["subscribe"],
                json!([{"match": "*", "match_type": "urlpattern"}]),
            )),
        ))
        .await;
    let draft07 = publisher_token();
    let v1 = publish_everything();
    for token in [&draft07, &v1] {
        let response = hub
            .publish_with(
                token,
                &[("topic", "https://example.com/a"), ("private", "on")],
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    for events in [&mut old, &mut new] {
        events.next_event().await;
        events.next_event().await;
    }
    // A draft-07 refusal keeps its reason in the body.
    let response = publish_as(&hub, &subscriber_token(&["*"]), "https://example.com/a").await;
    assert_eq!(response.status(), 403);
    assert!(www_authenticate(&response).is_empty());
    assert!(response.text().await.unwrap().contains("mercure.publish"));
}

#[tokio::test]
async fn v2_typ_is_read_in_any_case() {
    let hub = TestHub::start(v1_config()).await;
    for typ in ["AT+JWT", "application/at+jwt"] {
        let token = access_token_typed(typ, grant(&["publish"], json!([{"match": "*"}])));
        assert_eq!(publish_as(&hub, &token, "t").await.status(), 200, "{typ}");
    }
}

#[tokio::test]
async fn v3_every_token_failure_gets_the_same_invalid_token_answer() {
    let hub = TestHub::start(v1_config()).await;
    let publish = grant(&["publish"], json!([{"match": "*"}]));
    let with = |extra: Value| {
        let mut claims = publish.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        access_token(claims)
    };
    let wrong_key = {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        let claims = json!({"iss": ISSUER, "aud": HUB_URL, "exp": now() + 600});
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"another key")).unwrap()
    };
    let bad_tokens = [
        ("expired", with(json!({"exp": now() - 1}))),
        ("no exp", with(json!({"exp": null}))),
        ("not yet valid", with(json!({"nbf": now() + 3600}))),
        (
            "another audience",
            with(json!({"aud": "https://other.example/.well-known/mercure"})),
        ),
        (
            "untrusted issuer",
            with(json!({"iss": "https://evil.example"})),
        ),
        ("no issuer", with(json!({"iss": null}))),
        ("bad signature", wrong_key),
        (
            "one bad detail",
            access_token(json!({"authorization_details": [
                {"type": DETAIL, "actions": ["publish"], "topics": [{"match": "*"}]},
                {"type": DETAIL, "actions": ["publish"], "topics": [{"match": "a", "match_type": "regex"}]},
            ]})),
        ),
        (
            "too many details",
            access_token(json!({"authorization_details":
                vec![json!({"type": DETAIL, "actions": ["publish"], "topics": [{"match": "*"}]}); 33]
            })),
        ),
    ];
    for (what, token) in bad_tokens {
        let response = publish_as(&hub, &token, "https://example.com/a").await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            www_authenticate(&response),
            format!(r#"Bearer error="invalid_token", resource_metadata="{METADATA}""#),
            "{what}"
        );
        assert_eq!(response.text().await.unwrap(), "invalid_token\n", "{what}");
    }
    // A little clock skew is tolerated on nbf.
    let skewed = with(json!({"nbf": now() + 2}));
    assert_eq!(publish_as(&hub, &skewed, "t").await.status(), 200);
}

#[tokio::test]
async fn v3_no_token_gets_a_challenge_with_the_metadata_url() {
    let hub = TestHub::start(v1_config()).await;
    // A 1.0 subscription (its parameters say so) without a token, on a hub that requires one.
    let response = hub
        .get("match=https%3A%2F%2Fexample.com%2Fa")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        www_authenticate(&response),
        format!(r#"Bearer resource_metadata="{METADATA}""#)
    );
    assert!(!www_authenticate(&response).contains("error="));
    // A publish without a token: nothing says its edition, so the draft-07 reason stays in the
    // body, and the challenge names the metadata too.
    let response = hub
        .client
        .post(&hub.url)
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        www_authenticate(&response),
        format!(r#"Bearer resource_metadata="{METADATA}""#)
    );
    assert!(response.text().await.unwrap().contains("no token"));
}

#[tokio::test]
async fn v3_malformed_presentations_are_invalid_request() {
    let hub = TestHub::start(v1_config()).await;
    let token = publish_everything();
    let invalid_request =
        format!(r#"Bearer error="invalid_request", resource_metadata="{METADATA}""#);
    // Two Authorization headers.
    let response = hub
        .client
        .post(&hub.url)
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .form(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(www_authenticate(&response), invalid_request);
    assert_eq!(response.text().await.unwrap(), "invalid_request\n");
    // A scheme other than Bearer, on a 1.0 subscription.
    let response = hub
        .get("match=a")
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(www_authenticate(&response), invalid_request);
    // The draft-07 query parameter and RFC 6750's on a 1.0 subscription (a 1.0 token in a
    // draft-07 query is the other edition's token: `v1_editions.rs`).
    for query in [
        format!("match=a&authorization={token}"),
        format!("match=a&access_token={token}"),
    ] {
        let response = hub.get(&query).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(www_authenticate(&response), invalid_request);
    }
    // The draft-07 query parameter with a draft-07 token keeps working.
    let draft07 = subscriber_token(&["*"]);
    let response = hub
        .get(&format!("topic=a&authorization={draft07}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn v2_the_secure_cookie_carries_a_v1_token() {
    let hub = TestHub::start(v1_config()).await;
    let token = access_token(grant(
        &["subscribe"],
        json!([{"match": "https://example.com/p"}]),
    ));
    let mut events = hub
        .subscribe_with(
            hub.get("match=https%3A%2F%2Fexample.com%2Fp")
                .header("cookie", format!("__Secure-mercure_access_token={token}")),
        )
        .await;
    hub.publish_ok(&[
        ("topic", "https://example.com/p"),
        ("data", "secret"),
        ("private", "on"),
    ])
    .await;
    assert_eq!(events.next_event().await.data, "secret");
}

#[tokio::test]
async fn v2_protocols_setting_turns_either_edition_off() {
    let only_v1 = TestHub::start(HubConfig {
        protocols: ProtocolSet::parse("1.0").unwrap(),
        ..v1_config()
    })
    .await;
    assert_eq!(
        publish_as(&only_v1, &publish_everything(), "t")
            .await
            .status(),
        200
    );
    let response = publish_as(&only_v1, &publisher_token(), "t").await;
    assert_eq!(response.status(), 401);

    let only_draft07 = TestHub::start(HubConfig {
        protocols: ProtocolSet::parse("draft-07").unwrap(),
        ..v1_config()
    })
    .await;
    assert_eq!(
        publish_as(&only_draft07, &publisher_token(), "t")
            .await
            .status(),
        200
    );
    let response = publish_as(&only_draft07, &publish_everything(), "t").await;
    assert_eq!(response.status(), 401);
    assert!(www_authenticate(&response).contains(r#"error="invalid_token""#));
    // No metadata is advertised for an edition the hub does not serve.
    let response = only_draft07
        .client
        .get(format!(
            "{}/.well-known/oauth-protected-resource/.well-known/mercure",
            only_draft07.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn v2_without_a_hub_url_access_tokens_are_refused() {
    let hub = TestHub::start(config()).await;
    let response = publish_as(&hub, &publish_everything(), "t").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        www_authenticate(&response),
        r#"Bearer error="invalid_token""#
    );
    // draft-07 is unchanged.
    assert_eq!(
        publish_as(&hub, &publisher_token(), "t").await.status(),
        200
    );
}

#[tokio::test]
async fn v6_protected_resource_metadata_and_link_headers() {
    let hub = TestHub::start(HubConfig {
        subscriber_issuers: vec![ISSUER.into(), "https://idp.example".into()],
        ..v1_config()
    })
    .await;
    let response = hub
        .client
        .get(format!(
            "{}/.well-known/oauth-protected-resource/.well-known/mercure",
            hub.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.headers()["link"],
        format!(r#"<{HUB_URL}>; rel="mercure""#)
    );
    let document: Value = response.json().await.unwrap();
    assert_eq!(
        document,
        json!({
            "resource": HUB_URL,
            "authorization_servers": [ISSUER, "https://idp.example"],
            "bearer_methods_supported": ["header"],
            "authorization_details_types_supported": [DETAIL],
            "mercure_cookie": "__Secure-mercure_access_token",
            "mercure_version": 8,
        })
    );
    // The hub's own responses name its URL.
    let response = publish_as(&hub, &publish_everything(), "t").await;
    assert_eq!(
        response.headers()["link"],
        format!(r#"<{HUB_URL}>; rel="mercure""#)
    );
    let events = hub
        .subscribe_with(hub.get("topic=t").bearer_auth(publisher_token()))
        .await;
    assert_eq!(
        events.headers["link"],
        format!(r#"<{HUB_URL}>; rel="mercure""#)
    );
    // Without a hub URL there is nothing to advertise.
    let bare = TestHub::start(config()).await;
    let response = bare
        .client
        .get(format!(
            "{}/.well-known/oauth-protected-resource/.well-known/mercure",
            bare.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
