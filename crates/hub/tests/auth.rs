//! Authorization over real TCP: publishers' rights, tokens and their algorithms, where tokens
//! are read from, the namespaced claim, the cookie CSRF guard, and the reasons given
//! [R15][R18]-[R20][R22][R24].

mod common;

use common::*;
use herald_hub::{HubConfig, JwtKey};
use herald_protocol::Algorithm;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, COOKIE, ORIGIN, REFERER, WWW_AUTHENTICATE};
use serde_json::{Value, json};

const BOOK: &str = "https://example.com/books/1";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hmac(algorithm: Algorithm, key: &str) -> Option<JwtKey> {
    Some(JwtKey {
        algorithm,
        key: key.as_bytes().to_vec(),
    })
}

/// A hub whose publishers and subscribers are verified with `key`.
fn keyed(key: JwtKey) -> HubConfig {
    HubConfig {
        publisher_key: Some(key.clone()),
        subscriber_key: Some(key),
        ..HubConfig::default()
    }
}

fn pem_key(algorithm: Algorithm, public_pem: &str) -> JwtKey {
    JwtKey {
        algorithm,
        key: public_pem.as_bytes().to_vec(),
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn publish_all() -> Value {
    json!({"mercure": {"publish": ["*"]}})
}

/// base64url without padding, for hand-made tokens.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned token with header `header` and payload `claims`.
fn unsigned_token(header: Value, claims: Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// A POST of one update on [`BOOK`], for building requests with custom credentials.
fn publish_request(hub: &TestHub) -> reqwest::RequestBuilder {
    hub.client
        .post(&hub.url)
        .form(&[("topic", BOOK), ("data", "x")])
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

fn cookie(name: &str, token: &str) -> String {
    format!("{name}={token}")
}

/// Publishes a private update on [`BOOK`] and asserts that `sub` receives it (or, if
/// `expected` is false, that it does not, by publishing a public marker after it).
async fn assert_private_delivery(hub: &TestHub, sub: &mut EventReader, expected: bool) {
    assert_private_delivery_with(hub, &publisher_token(), sub, expected).await;
}

/// [`assert_private_delivery`], publishing with `publisher`.
async fn assert_private_delivery_with(
    hub: &TestHub,
    publisher: &str,
    sub: &mut EventReader,
    expected: bool,
) {
    let publish = |fields: &'static [(&'static str, &'static str)]| async move {
        let response = hub.publish_with(publisher, fields).await;
        assert_eq!(response.status(), 200, "publish failed");
        response.text().await.unwrap()
    };
    let id = publish(&[("topic", BOOK), ("data", "private"), ("private", "on")]).await;
    let marker = publish(&[("topic", BOOK), ("data", "public")]).await;
    let first = sub.next_event().await;
    if expected {
        assert_eq!(first.id.as_ref(), Some(&id), "private update expected");
        assert_eq!(sub.next_event().await.id.as_ref(), Some(&marker));
    } else {
        assert_eq!(first.id.as_ref(), Some(&marker), "private update leaked");
    }
}

fn book_topic_query() -> String {
    format!("topic={}", enc(BOOK))
}

// [R15] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r15_no_token_is_401_with_www_authenticate_bearer() {
    let hub = TestHub::default().await;
    let response = send(publish_request(&hub)).await;
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("no token"), "{reason}");
}

#[tokio::test]
async fn r15_bad_signature_is_401() {
    let hub = TestHub::default().await;
    let forged = token_with(
        Algorithm::HS256,
        b"not-the-hub-key-not-the-hub-key",
        publish_all(),
    );
    let response = send(publish_request(&hub).bearer_auth(forged)).await;
    assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("signature"), "{reason}");
    // A token whose payload was altered after signing.
    let genuine = token(json!({"mercure": {"publish": ["https://example.com/other"]}}));
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(publish_all().to_string().as_bytes()),
        parts[2]
    );
    let response = send(publish_request(&hub).bearer_auth(tampered)).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r15_garbage_token_is_401() {
    let hub = TestHub::default().await;
    for garbage in ["garbage", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9"] {
        let response = send(publish_request(&hub).bearer_auth(garbage)).await;
        expect_rejection(response, 401).await;
    }
    let response = send(publish_request(&hub).header(AUTHORIZATION, "Basic dXNlcjpwYXNz")).await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("Bearer"), "{reason}");
}

#[tokio::test]
async fn r15_token_without_publish_right_is_403() {
    let hub = TestHub::default().await;
    for claims in [
        json!({}),
        json!({"sub": "someone"}),
        json!({"mercure": {}}),
        json!({"mercure": {"publish": []}}),
        json!({"mercure": {"subscribe": ["*"]}}),
    ] {
        let response = send(publish_request(&hub).bearer_auth(token(claims.clone()))).await;
        let reason = expect_rejection(response, 403).await;
        assert!(reason.contains("mercure.publish"), "{claims}: {reason}");
    }
}

#[tokio::test]
async fn r15_claim_covering_only_one_of_two_topics_is_403() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_with(hub.get("topic=*").bearer_auth(subscriber_token(&["*"])))
        .await;
    let narrow = token(json!({"mercure": {"publish": [BOOK]}}));
    let uncovered = "https://example.com/authors/7";
    let response = hub
        .publish_with(&narrow, &[("topic", BOOK), ("topic", uncovered)])
        .await;
    let reason = expect_rejection(response, 403).await;
    assert!(
        reason.contains(uncovered),
        "the reason names the topic: {reason}"
    );
    // The alternate first, the covered one second: same answer.
    let response = hub
        .publish_with(&narrow, &[("topic", uncovered), ("topic", BOOK)])
        .await;
    expect_rejection(response, 403).await;
    // Nothing was published; the covered topic alone is fine.
    let id = hub.publish_with(&narrow, &[("topic", BOOK)]).await;
    assert_eq!(id.status(), 200);
    let id = id.text().await.unwrap();
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn r15_template_claim_allows_matching_topics_only() {
    let hub = TestHub::default().await;
    let templated = token(json!({"mercure": {"publish": ["https://example.com/books/{id}"]}}));
    for topic in [
        "https://example.com/books/1",
        "https://example.com/books/abc",
    ] {
        let response = hub.publish_with(&templated, &[("topic", topic)]).await;
        assert_eq!(response.status(), 200, "{topic}");
    }
    // The template itself, as a literal topic, is covered too [R3].
    let response = hub
        .publish_with(&templated, &[("topic", "https://example.com/books/{id}")])
        .await;
    assert_eq!(response.status(), 200);
    for topic in [
        "https://example.com/authors/1",
        "https://example.com/books/1/chapters/2",
        "https://example.com/books",
    ] {
        let response = hub.publish_with(&templated, &[("topic", topic)]).await;
        let reason = expect_rejection(response, 403).await;
        assert!(reason.contains(topic), "{reason}");
    }
}

#[tokio::test]
async fn r15_publish_claim_does_not_grant_subscribe_rights() {
    // mercure.publish is for publishing only: a private update is not delivered on it.
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_with(hub.get(&book_topic_query()).bearer_auth(publisher_token()))
        .await;
    assert_private_delivery(&hub, &mut sub, false).await;
}

// [R18] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r18_hs256_token_with_future_exp_is_accepted() {
    let hub = TestHub::default().await;
    let claims = json!({"mercure": {"publish": ["*"]}, "exp": now() + 600, "nbf": now() - 10});
    let response = hub.publish_with(&token(claims), &[("topic", BOOK)]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn r18_hs512_configured_accepts_hs512_tokens() {
    let hub = TestHub::start(keyed(hmac(Algorithm::HS512, KEY).unwrap())).await;
    let good = token_with(Algorithm::HS512, KEY.as_bytes(), publish_all());
    let response = hub.publish_with(&good, &[("topic", BOOK)]).await;
    assert_eq!(response.status(), 200);
    let subscriber = token_with(
        Algorithm::HS512,
        KEY.as_bytes(),
        json!({"mercure": {"subscribe": ["*"]}}),
    );
    let mut sub = hub
        .subscribe_with(hub.get(&book_topic_query()).bearer_auth(subscriber))
        .await;
    assert_private_delivery_with(&hub, &good, &mut sub, true).await;
}

#[tokio::test]
async fn r18_token_signed_with_another_hs_algorithm_is_401() {
    let hub = TestHub::start(keyed(hmac(Algorithm::HS512, KEY).unwrap())).await;
    for alg in [Algorithm::HS256, Algorithm::HS384] {
        let other = token_with(alg, KEY.as_bytes(), publish_all());
        let response = hub.publish_with(&other, &[("topic", BOOK)]).await;
        let reason = expect_rejection(response, 401).await;
        assert!(reason.contains("HS512"), "{alg:?}: {reason}");
        let response = send(hub.get(&book_topic_query()).bearer_auth(token_with(
            alg,
            KEY.as_bytes(),
            json!({"mercure": {}}),
        )))
        .await;
        expect_rejection(response, 401).await;
    }
    let hs256_hub = TestHub::default().await;
    let hs512 = token_with(Algorithm::HS512, KEY.as_bytes(), publish_all());
    let response = hs256_hub.publish_with(&hs512, &[("topic", BOOK)]).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r18_alg_none_token_is_401() {
    let hub = TestHub::default().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let forged = unsigned_token(json!({"alg": alg, "typ": "JWT"}), publish_all());
        let response = hub.publish_with(&forged, &[("topic", BOOK)]).await;
        let reason = expect_rejection(response, 401).await;
        assert!(reason.contains("invalid token"), "{alg}: {reason}");
        let forged = unsigned_token(
            json!({"alg": alg}),
            json!({"mercure": {"subscribe": ["*"]}}),
        );
        let response = send(hub.get(&book_topic_query()).bearer_auth(forged)).await;
        expect_rejection(response, 401).await;
    }
    // alg none with a signature from a genuine token glued on.
    let genuine = publisher_token();
    let signature = genuine.rsplit('.').next().unwrap();
    let forged = format!(
        "{}{signature}",
        unsigned_token(json!({"alg": "none"}), publish_all())
    );
    let response = hub.publish_with(&forged, &[("topic", BOOK)]).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r18_expired_token_is_401() {
    let hub = TestHub::default().await;
    let expired =
        token(json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}, "exp": now() - 5}));
    let response = hub.publish_with(&expired, &[("topic", BOOK)]).await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("expired"), "{reason}");
    let response = send(hub.get(&book_topic_query()).bearer_auth(&expired)).await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test]
async fn r18_nbf_in_the_future_is_401() {
    let hub = TestHub::default().await;
    let immature =
        token(json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}, "nbf": now() + 600}));
    let response = hub.publish_with(&immature, &[("topic", BOOK)]).await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("nbf"), "{reason}");
    let response = send(hub.get(&book_topic_query()).bearer_auth(&immature)).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r18_rs256_public_key_accepts_rs256_tokens() {
    let hub = TestHub::start(keyed(pem_key(Algorithm::RS256, RSA_PUBLIC))).await;
    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let publisher = sign(Algorithm::RS256, &private, publish_all());
    let subscriber = sign(
        Algorithm::RS256,
        &private,
        json!({"mercure": {"subscribe": [BOOK]}}),
    );
    let mut sub = hub
        .subscribe_with(hub.get(&book_topic_query()).bearer_auth(subscriber))
        .await;
    assert_private_delivery_with(&hub, &publisher, &mut sub, true).await;
    // RS512 with the same key is another algorithm.
    let rs512 = sign(Algorithm::RS512, &private, publish_all());
    let response = hub.publish_with(&rs512, &[("topic", BOOK)]).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r18_rs256_hub_rejects_hs256_token_signed_with_the_public_key() {
    // Algorithm confusion: the attacker knows the public key and uses it as an HMAC secret.
    let hub = TestHub::start(keyed(pem_key(Algorithm::RS256, RSA_PUBLIC))).await;
    for alg in [Algorithm::HS256, Algorithm::HS512] {
        let confused = token_with(alg, RSA_PUBLIC.as_bytes(), publish_all());
        let response = hub.publish_with(&confused, &[("topic", BOOK)]).await;
        let reason = expect_rejection(response, 401).await;
        assert!(reason.contains("RS256"), "{reason}");
        let confused = token_with(
            alg,
            RSA_PUBLIC.as_bytes(),
            json!({"mercure": {"subscribe": ["*"]}}),
        );
        let response = send(hub.get("topic=*").bearer_auth(confused)).await;
        expect_rejection(response, 401).await;
    }
}

#[tokio::test]
async fn r18_es256_public_key_accepts_es256_tokens_and_rejects_confusion() {
    let hub = TestHub::start(keyed(pem_key(Algorithm::ES256, EC_PUBLIC))).await;
    let private = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let publisher = sign(Algorithm::ES256, &private, publish_all());
    let subscriber = sign(
        Algorithm::ES256,
        &private,
        json!({"mercure": {"subscribe": ["https://example.com/books/{id}"]}}),
    );
    let mut sub = hub
        .subscribe_with(hub.get(&book_topic_query()).bearer_auth(subscriber))
        .await;
    assert_private_delivery_with(&hub, &publisher, &mut sub, true).await;
    let confused = token_with(Algorithm::HS256, EC_PUBLIC.as_bytes(), publish_all());
    let response = hub.publish_with(&confused, &[("topic", BOOK)]).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r18_eddsa_public_key_accepts_eddsa_tokens_and_rejects_confusion() {
    let hub = TestHub::start(keyed(pem_key(Algorithm::EdDSA, ED_PUBLIC))).await;
    let private = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let publisher = sign(Algorithm::EdDSA, &private, publish_all());
    let response = hub.publish_with(&publisher, &[("topic", BOOK)]).await;
    assert_eq!(response.status(), 200);
    let confused = token_with(Algorithm::HS256, ED_PUBLIC.as_bytes(), publish_all());
    let response = hub.publish_with(&confused, &[("topic", BOOK)]).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r18_separate_publisher_and_subscriber_keys() {
    const PUBLISHER_KEY: &str = "publisher-key-publisher-key-0001";
    const SUBSCRIBER_KEY: &str = "subscriber-key-subscriber-key-01";
    let hub = TestHub::start(HubConfig {
        publisher_key: hmac(Algorithm::HS256, PUBLISHER_KEY),
        subscriber_key: hmac(Algorithm::HS256, SUBSCRIBER_KEY),
        ..HubConfig::default()
    })
    .await;
    let both = json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}});
    let by_publisher_key = token_with(Algorithm::HS256, PUBLISHER_KEY.as_bytes(), both.clone());
    let by_subscriber_key = token_with(Algorithm::HS256, SUBSCRIBER_KEY.as_bytes(), both);
    let response = hub
        .publish_with(&by_subscriber_key, &[("topic", BOOK)])
        .await;
    expect_rejection(response, 401).await;
    let response = send(hub.get("topic=*").bearer_auth(&by_publisher_key)).await;
    expect_rejection(response, 401).await;
    let mut sub = hub
        .subscribe_with(hub.get("topic=*").bearer_auth(&by_subscriber_key))
        .await;
    let response = hub
        .publish_with(&by_publisher_key, &[("topic", BOOK), ("data", "ok")])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(sub.next_event().await.data, "ok");
}

// [R19] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r19_bearer_scheme_is_case_insensitive() {
    let hub = TestHub::default().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = send(
            publish_request(&hub).header(AUTHORIZATION, format!("{scheme} {}", publisher_token())),
        )
        .await;
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let response = send(publish_request(&hub).header(AUTHORIZATION, "Bearer ")).await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_publish_header_wins_over_query_and_cookie() {
    let hub = TestHub::default().await;
    let response = send(
        hub.client
            .post(format!("{}?authorization=garbage", hub.url))
            .bearer_auth(publisher_token())
            .header(COOKIE, cookie("mercureAuthorization", "garbage"))
            .form(&[("topic", BOOK)]),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn r19_publish_garbage_header_with_valid_query_or_cookie_is_401() {
    let hub = TestHub::default().await;
    let response = send(
        hub.client
            .post(format!("{}?authorization={}", hub.url, publisher_token()))
            .bearer_auth("garbage")
            .header(COOKIE, cookie("mercureAuthorization", &publisher_token()))
            .header(ORIGIN, "https://app.example.com")
            .form(&[("topic", BOOK)]),
    )
    .await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_publish_query_parameter_is_used_without_header() {
    let hub = TestHub::default().await;
    let response = send(
        hub.client
            .post(format!("{}?authorization={}", hub.url, publisher_token()))
            .form(&[("topic", BOOK)]),
    )
    .await;
    assert_eq!(response.status(), 200);
    // ... and wins over the cookie.
    let response = send(
        hub.client
            .post(format!("{}?authorization=garbage", hub.url))
            .header(COOKIE, cookie("mercureAuthorization", &publisher_token()))
            .form(&[("topic", BOOK)]),
    )
    .await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_publish_cookie_is_used_without_header_or_query() {
    let hub = TestHub::start(HubConfig {
        publish_origins: vec!["https://app.example.com".into()],
        ..config()
    })
    .await;
    let response = send(
        publish_request(&hub)
            .header(
                COOKIE,
                format!(
                    "theme=dark; mercureAuthorization={}; x=y",
                    publisher_token()
                ),
            )
            .header(ORIGIN, "https://app.example.com"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(
        publish_request(&hub)
            .header(COOKIE, cookie("mercureAuthorization", "garbage"))
            .header(ORIGIN, "https://app.example.com"),
    )
    .await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_publish_custom_cookie_name() {
    let hub = TestHub::start(HubConfig {
        publish_origins: vec!["https://app.example.com".into()],
        cookie_name: "heraldAuth".into(),
        ..config()
    })
    .await;
    let response = send(
        publish_request(&hub)
            .header(COOKIE, cookie("heraldAuth", &publisher_token()))
            .header(ORIGIN, "https://app.example.com"),
    )
    .await;
    assert_eq!(response.status(), 200);
    // The default name is not read any more.
    let response = send(
        publish_request(&hub)
            .header(COOKIE, cookie("mercureAuthorization", &publisher_token()))
            .header(ORIGIN, "https://app.example.com"),
    )
    .await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("no token"), "{reason}");
}

#[tokio::test]
async fn r19_subscribe_header_wins_over_query_and_cookie() {
    let hub = TestHub::default().await;
    // Valid header with rights + garbage query and cookie: subscribed, with the header's rights.
    let mut sub = hub
        .subscribe_with(
            hub.get(&format!("{}&authorization=garbage", book_topic_query()))
                .bearer_auth(subscriber_token(&["*"]))
                .header(COOKIE, cookie("mercureAuthorization", "garbage")),
        )
        .await;
    assert_private_delivery(&hub, &mut sub, true).await;
    // Valid header without rights + a query token with rights: the header's (lack of) rights.
    let mut sub = hub
        .subscribe_with(
            hub.get(&format!(
                "{}&authorization={}",
                book_topic_query(),
                subscriber_token(&["*"])
            ))
            .bearer_auth(subscriber_token(&[])),
        )
        .await;
    assert_private_delivery(&hub, &mut sub, false).await;
    // Garbage header + valid query: 401.
    let response = send(
        hub.get(&format!(
            "{}&authorization={}",
            book_topic_query(),
            subscriber_token(&["*"])
        ))
        .bearer_auth("garbage"),
    )
    .await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_subscribe_query_parameter_is_used_without_header() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe(&format!(
            "{}&authorization={}",
            book_topic_query(),
            subscriber_token(&["*"])
        ))
        .await;
    assert_private_delivery(&hub, &mut sub, true).await;
    // The query parameter wins over the cookie.
    let response = send(
        hub.get(&format!("{}&authorization=garbage", book_topic_query()))
            .header(
                COOKIE,
                cookie("mercureAuthorization", &subscriber_token(&["*"])),
            ),
    )
    .await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_subscribe_cookie_is_used_without_header_or_query() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_with(hub.get(&book_topic_query()).header(
            COOKIE,
            format!("a=b; mercureAuthorization={}", subscriber_token(&["*"])),
        ))
        .await;
    assert_private_delivery(&hub, &mut sub, true).await;
    let response = send(
        hub.get(&book_topic_query())
            .header(COOKIE, cookie("mercureAuthorization", "garbage")),
    )
    .await;
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn r19_subscribe_custom_cookie_name() {
    let hub = TestHub::start(HubConfig {
        cookie_name: "heraldAuth".into(),
        ..config()
    })
    .await;
    let mut sub = hub
        .subscribe_with(
            hub.get(&book_topic_query())
                .header(COOKIE, cookie("heraldAuth", &subscriber_token(&["*"]))),
        )
        .await;
    assert_private_delivery(&hub, &mut sub, true).await;
    let response = send(hub.get(&book_topic_query()).header(
        COOKIE,
        cookie("mercureAuthorization", &subscriber_token(&["*"])),
    ))
    .await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("no token"), "{reason}");
}

// [R20] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r20_namespaced_claim_is_accepted_for_publishing() {
    let hub = TestHub::default().await;
    let namespaced = token(json!({"https://mercure.rocks/": {"publish": [BOOK]}}));
    let response = hub.publish_with(&namespaced, &[("topic", BOOK)]).await;
    assert_eq!(response.status(), 200);
    let response = hub
        .publish_with(&namespaced, &[("topic", "https://example.com/other")])
        .await;
    expect_rejection(response, 403).await;
}

#[tokio::test]
async fn r20_namespaced_claim_is_accepted_for_subscribing() {
    let hub = TestHub::default().await;
    let namespaced = token(json!({"https://mercure.rocks/": {"subscribe": [BOOK]}}));
    let mut sub = hub
        .subscribe_with(hub.get(&book_topic_query()).bearer_auth(namespaced))
        .await;
    assert_private_delivery(&hub, &mut sub, true).await;
}

#[tokio::test]
async fn r20_malformed_mercure_claim_is_401() {
    let hub = TestHub::default().await;
    for claims in [
        json!({"mercure": {"publish": "*"}}),
        json!({"mercure": "publish"}),
        json!({"https://mercure.rocks/": {"publish": [1]}}),
    ] {
        let response = hub
            .publish_with(&token(claims.clone()), &[("topic", BOOK)])
            .await;
        let reason = expect_rejection(response, 401).await;
        assert!(reason.contains("claim"), "{claims}: {reason}");
    }
}

// [R22] --------------------------------------------------------------------------------------

const APP: &str = "https://app.example.com";

async fn csrf_hub() -> TestHub {
    TestHub::start(HubConfig {
        publish_origins: vec![APP.into(), "http://localhost:8080".into()],
        ..config()
    })
    .await
}

fn cookie_publish(hub: &TestHub) -> reqwest::RequestBuilder {
    publish_request(hub).header(COOKIE, cookie("mercureAuthorization", &publisher_token()))
}

#[tokio::test]
async fn r22_cookie_publish_without_origin_or_referer_is_403() {
    let hub = csrf_hub().await;
    let response = send(cookie_publish(&hub)).await;
    let reason = expect_rejection(response, 403).await;
    assert!(reason.contains("Origin"), "{reason}");
}

#[tokio::test]
async fn r22_cookie_publish_from_an_origin_not_allowed_is_403() {
    let hub = csrf_hub().await;
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        let response = send(cookie_publish(&hub).header(ORIGIN, origin)).await;
        let reason = expect_rejection(response, 403).await;
        assert!(reason.contains(origin), "{reason}");
    }
    let response =
        send(cookie_publish(&hub).header(REFERER, "https://evil.example.com/page")).await;
    expect_rejection(response, 403).await;
}

#[tokio::test]
async fn r22_cookie_publish_from_an_allowed_origin_is_200() {
    let hub = csrf_hub().await;
    for origin in [APP, "http://localhost:8080"] {
        let response = send(cookie_publish(&hub).header(ORIGIN, origin)).await;
        assert_eq!(response.status(), 200, "{origin}");
    }
}

#[tokio::test]
async fn r22_cookie_publish_with_referer_from_an_allowed_origin_is_200() {
    let hub = csrf_hub().await;
    let response =
        send(cookie_publish(&hub).header(REFERER, format!("{APP}/admin/books?x=1"))).await;
    assert_eq!(response.status(), 200);
    // Origin, when present, is what counts.
    let response = send(
        cookie_publish(&hub)
            .header(ORIGIN, "https://evil.example.com")
            .header(REFERER, format!("{APP}/admin")),
    )
    .await;
    expect_rejection(response, 403).await;
}

#[tokio::test]
async fn r22_cookie_publish_is_refused_when_no_publish_origin_is_configured() {
    let hub = TestHub::default().await;
    let response = send(cookie_publish(&hub).header(ORIGIN, APP)).await;
    expect_rejection(response, 403).await;
}

#[tokio::test]
async fn r22_header_or_query_authenticated_publish_needs_no_origin() {
    let hub = csrf_hub().await;
    let response = send(publish_request(&hub).bearer_auth(publisher_token())).await;
    assert_eq!(response.status(), 200);
    let response = send(
        publish_request(&hub)
            .bearer_auth(publisher_token())
            .header(ORIGIN, "https://evil.example.com"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = send(
        hub.client
            .post(format!("{}?authorization={}", hub.url, publisher_token()))
            .form(&[("topic", BOOK)]),
    )
    .await;
    assert_eq!(response.status(), 200);
}

// [R24] --------------------------------------------------------------------------------------

#[tokio::test]
async fn r24_rejections_say_why() {
    let hub = csrf_hub().await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (publish_request(&hub), 401, "no token"),
        (
            publish_request(&hub).bearer_auth(token(
                json!({"mercure": {"publish": ["*"]}, "exp": now() - 60}),
            )),
            401,
            "expired",
        ),
        (
            publish_request(&hub).bearer_auth(token_with(
                Algorithm::HS256,
                b"wrong-key-wrong-key-wrong-key-00",
                publish_all(),
            )),
            401,
            "signature",
        ),
        (
            publish_request(&hub).bearer_auth(token_with(
                Algorithm::HS384,
                KEY.as_bytes(),
                publish_all(),
            )),
            401,
            "HS384",
        ),
        (
            publish_request(&hub).bearer_auth(token(
                json!({"mercure": {"publish": ["https://example.com/authors/{id}"]}}),
            )),
            403,
            BOOK,
        ),
        (
            cookie_publish(&hub).header(ORIGIN, "https://evil.example.com"),
            403,
            "https://evil.example.com",
        ),
        (cookie_publish(&hub), 403, "Origin or Referer"),
        (hub.get(&book_topic_query()), 401, "no token"),
        (
            hub.get(&book_topic_query()).bearer_auth(token(
                json!({"mercure": {"subscribe": ["*"]}, "exp": now() - 60}),
            )),
            401,
            "expired",
        ),
    ];
    for (request, status, needle) in cases {
        let reason = expect_rejection(send(request).await, status).await;
        assert!(reason.contains(needle), "expected {needle:?} in {reason:?}");
        assert!(!reason.contains(KEY), "the reason must not leak the key");
    }
}

#[tokio::test]
async fn r24_reasons_do_not_echo_the_token() {
    let hub = TestHub::default().await;
    let expired = token(json!({"mercure": {"publish": ["*"]}, "exp": now() - 60}));
    let response = hub.publish_with(&expired, &[("topic", BOOK)]).await;
    let reason = expect_rejection(response, 401).await;
    assert!(!reason.contains(&expired), "{reason}");
}

// Routes exist only when configured ----------------------------------------------------------

#[tokio::test]
async fn subscribing_disabled_without_subscriber_key_or_anonymous_is_405() {
    let hub = TestHub::start(HubConfig {
        publisher_key: hmac(Algorithm::HS256, KEY),
        subscriber_key: None,
        anonymous: false,
        ..HubConfig::default()
    })
    .await;
    let response = send(hub.get("topic=*")).await;
    assert_eq!(response.headers()["allow"], "POST");
    let reason = expect_rejection(response, 405).await;
    assert!(reason.contains("subscribing is disabled"), "{reason}");
    let response = send(hub.get("topic=*").bearer_auth(subscriber_token(&["*"]))).await;
    expect_rejection(response, 405).await;
    // Publishing still works.
    let response = hub.publish(&[("topic", BOOK)]).await;
    assert_eq!(response.status(), 200);
}
