//! JSON Web Key Sets over real TCP [R18]: a set in a file or served over HTTP, the key chosen
//! by `kid`, the algorithm checked against the key, and reloading for rotated keys.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use herald_hub::{Hub, HubConfig, JwksRefresh, JwksSource};
use herald_protocol::Algorithm;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const BOOK: &str = "https://example.com/books/1";

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
}

/// The public JWK of a private test key, with `kid` and, if `with_alg`, its `alg`.
fn jwk(private: &EncodingKey, alg: Algorithm, kid: &str, with_alg: bool) -> Value {
    let mut jwk = Jwk::from_encoding_key(private, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    if !with_alg {
        jwk.common.key_algorithm = None;
    }
    serde_json::to_value(jwk).unwrap()
}

/// An RS256 key (`kid` "rsa", `alg` RS256) and an ES256 key (`kid` "ec", no `alg`).
fn two_keys() -> Value {
    json!({"keys": [
        jwk(&rsa(), Algorithm::RS256, "rsa", true),
        jwk(&ec(), Algorithm::ES256, "ec", false),
    ]})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn publish_all() -> Value {
    json!({"mercure": {"publish": ["*"]}})
}

fn jwks_config(source: JwksSource, refresh: JwksRefresh) -> HubConfig {
    HubConfig {
        publisher_jwks: Some(source.clone()),
        subscriber_jwks: Some(source),
        jwks_refresh: refresh,
        ..HubConfig::default()
    }
}

/// A JWK Set file in a temporary directory (kept alive by the returned guard).
fn jwks_file(set: &Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, set.to_string()).unwrap();
    (dir, path)
}

async fn publish_status(hub: &TestHub, token: &str) -> (u16, String) {
    let response = hub
        .publish_with(token, &[("topic", BOOK), ("data", "x")])
        .await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A tiny JWK Set server on 127.0.0.1: serves whatever `body` holds (500 if empty) and counts
/// the fetches.
struct SetServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl SetServer {
    async fn start(set: &Value) -> SetServer {
        let body = Arc::new(Mutex::new(set.to_string()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (b, f) = (body.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (b, f) = (b.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = b.lock().unwrap().clone();
                    if body.is_empty() {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body)
                    } else {
                        (axum::http::StatusCode::OK, body)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        SetServer { url, body, fetches }
    }

    fn set(&self, set: &str) {
        *self.body.lock().unwrap() = set.to_owned();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn never() -> Duration {
    Duration::from_secs(3600)
}

// (a) A set in a file ---------------------------------------------------------------------------

#[tokio::test]
async fn r18_jwks_file_kid_selects_the_rs256_or_es256_key() {
    let (_dir, path) = jwks_file(&two_keys());
    let hub = TestHub::start(jwks_config(JwksSource::File(path), JwksRefresh::default())).await;
    let rs = sign(Algorithm::RS256, Some("rsa"), &rsa(), &publish_all());
    assert_eq!(publish_status(&hub, &rs).await.0, 200);
    let es = sign(Algorithm::ES256, Some("ec"), &ec(), &publish_all());
    assert_eq!(publish_status(&hub, &es).await.0, 200);
    // Subscribers too, with the private-update rights of their token.
    let subscriber = sign(
        Algorithm::ES256,
        Some("ec"),
        &ec(),
        &json!({"mercure": {"subscribe": ["*"]}}),
    );
    let response = hub
        .get("topic=*")
        .bearer_auth(subscriber)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn r18_jwks_unknown_kid_is_401() {
    let (_dir, path) = jwks_file(&two_keys());
    let hub = TestHub::start(jwks_config(JwksSource::File(path), JwksRefresh::default())).await;
    let token = sign(
        Algorithm::ES256,
        Some("rotated-away"),
        &ec(),
        &publish_all(),
    );
    let response = hub.publish_with(&token, &[("topic", BOOK)]).await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("unknown key id"), "{reason}");
    // Without kid, a set of two keys cannot say which one.
    let token = sign(Algorithm::ES256, None, &ec(), &publish_all());
    let response = hub.publish_with(&token, &[("topic", BOOK)]).await;
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("kid"), "{reason}");
}

#[tokio::test]
async fn r18_jwks_wrong_alg_for_the_key_is_401() {
    let (_dir, path) = jwks_file(&two_keys());
    let hub = TestHub::start(jwks_config(JwksSource::File(path), JwksRefresh::default())).await;
    // An ES256 token naming the RSA key.
    let token = sign(Algorithm::ES256, Some("rsa"), &ec(), &publish_all());
    let reason = expect_rejection(hub.publish_with(&token, &[("topic", BOOK)]).await, 401).await;
    assert!(reason.contains("ES256"), "{reason}");
    // The RSA key's JWK says RS256: PS256, though an RSA algorithm, is refused.
    let token = sign(Algorithm::PS256, Some("rsa"), &rsa(), &publish_all());
    let reason = expect_rejection(hub.publish_with(&token, &[("topic", BOOK)]).await, 401).await;
    assert!(reason.contains("RS256"), "{reason}");
    // An RS256 token naming the EC key.
    let token = sign(Algorithm::RS256, Some("ec"), &rsa(), &publish_all());
    expect_rejection(hub.publish_with(&token, &[("topic", BOOK)]).await, 401).await;
}

#[tokio::test]
async fn r18_jwks_hs256_token_with_the_kid_of_the_rsa_key_is_401() {
    // Algorithm confusion: the attacker knows the public key and uses it as an HMAC secret.
    let (_dir, path) = jwks_file(&two_keys());
    let hub = TestHub::start(jwks_config(JwksSource::File(path), JwksRefresh::default())).await;
    for alg in [Algorithm::HS256, Algorithm::HS512] {
        let secret = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
        let token = sign(alg, Some("rsa"), &secret, &publish_all());
        let reason =
            expect_rejection(hub.publish_with(&token, &[("topic", BOOK)]).await, 401).await;
        assert!(reason.contains("RS256"), "{reason}");
    }
}

#[tokio::test]
async fn r18_jwks_file_is_reread_for_an_unknown_kid_at_most_once_per_min_interval() {
    let only_ec = json!({"keys": [jwk(&ec(), Algorithm::ES256, "ec", true)]});
    let (_dir, path) = jwks_file(&only_ec);
    let refresh = JwksRefresh {
        min_interval: Duration::from_secs(2),
        ..JwksRefresh::default()
    };
    let hub = TestHub::start(jwks_config(JwksSource::File(path.clone()), refresh)).await;
    // The set of one key: a token without kid may use it.
    let no_kid = sign(Algorithm::ES256, None, &ec(), &publish_all());
    assert_eq!(publish_status(&hub, &no_kid).await.0, 200);
    std::fs::write(&path, two_keys().to_string()).unwrap();
    let rs = sign(Algorithm::RS256, Some("rsa"), &rsa(), &publish_all());
    // Loaded less than min_interval ago: not reread yet.
    let (status, reason) = publish_status(&hub, &rs).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("unknown key id"), "{reason}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, reason) = publish_status(&hub, &rs).await;
    assert_eq!(status, 200, "{reason}");
}

#[tokio::test]
async fn r18_jwks_unusable_file_refuses_to_start_naming_the_setting() {
    let oct = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]});
    let (_dir, path) = jwks_file(&oct);
    let config = HubConfig {
        subscriber_jwks: Some(JwksSource::File(path)),
        ..HubConfig::default()
    };
    let e = Hub::new(config).await.err().expect("an oct key is refused");
    let message = e.to_string();
    assert!(message.contains("subscriber-jwks"), "{message}");
    assert!(message.contains("symmetric"), "{message}");
    let config = HubConfig {
        publisher_jwks: Some(JwksSource::File("/nonexistent/jwks.json".into())),
        ..HubConfig::default()
    };
    let message = Hub::new(config).await.err().unwrap().to_string();
    assert!(message.contains("publisher-jwks"), "{message}");
}

// (b) A set served over HTTP ---------------------------------------------------------------------

// Multi-threaded: the set server runs on the test's runtime while the hub fetches from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_jwks_url_rotation_is_picked_up_on_an_unknown_kid() {
    let server =
        SetServer::start(&json!({"keys": [jwk(&ec(), Algorithm::ES256, "ec", true)]})).await;
    let refresh = JwksRefresh {
        min_interval: Duration::ZERO,
        interval: never(),
        ..JwksRefresh::default()
    };
    let hub = TestHub::start(jwks_config(JwksSource::Url(server.url.clone()), refresh)).await;
    assert_eq!(server.fetches(), 1, "one fetch for both roles");
    let es = sign(Algorithm::ES256, Some("ec"), &ec(), &publish_all());
    assert_eq!(publish_status(&hub, &es).await.0, 200);
    let rs = sign(Algorithm::RS256, Some("rsa"), &rsa(), &publish_all());
    let (status, reason) = publish_status(&hub, &rs).await;
    assert_eq!(status, 401, "{reason}");
    assert!(reason.contains("unknown key id"), "{reason}");
    assert_eq!(server.fetches(), 2, "the unknown kid made the hub refetch");
    // The identity provider rotates a key in.
    server.set(&two_keys().to_string());
    let (status, reason) = publish_status(&hub, &rs).await;
    assert_eq!(status, 200, "{reason}");
    assert_eq!(server.fetches(), 3);
    // Known kids never wait for the network.
    assert_eq!(publish_status(&hub, &es).await.0, 200);
    assert_eq!(server.fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_jwks_refetch_for_unknown_kids_is_rate_limited() {
    let server = SetServer::start(&two_keys()).await;
    let refresh = JwksRefresh {
        interval: never(),
        ..JwksRefresh::default()
    };
    let hub = TestHub::start(jwks_config(JwksSource::Url(server.url.clone()), refresh)).await;
    for i in 0..5 {
        let kid = format!("made-up-{i}");
        let token = sign(Algorithm::ES256, Some(&kid), &ec(), &publish_all());
        assert_eq!(publish_status(&hub, &token).await.0, 401);
    }
    assert_eq!(
        server.fetches(),
        1,
        "no refetch within 30 s of the last one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_jwks_url_is_refreshed_in_the_background_and_a_failed_refresh_keeps_the_set() {
    let server =
        SetServer::start(&json!({"keys": [jwk(&ec(), Algorithm::ES256, "ec", true)]})).await;
    let refresh = JwksRefresh {
        interval: Duration::from_millis(100),
        min_interval: never(),
        ..JwksRefresh::default()
    };
    let hub = TestHub::start(jwks_config(JwksSource::Url(server.url.clone()), refresh)).await;
    // The server fails: the hub keeps the set it has.
    server.set("");
    let before = server.fetches();
    tokio::time::timeout(WAIT, async {
        while server.fetches() < before + 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("periodic refetches");
    let es = sign(Algorithm::ES256, Some("ec"), &ec(), &publish_all());
    assert_eq!(publish_status(&hub, &es).await.0, 200);
    // A key rotated in is picked up by the background refresh alone (min_interval forbids
    // refetching for unknown kids).
    server.set(&two_keys().to_string());
    let rs = sign(Algorithm::RS256, Some("rsa"), &rsa(), &publish_all());
    tokio::time::timeout(WAIT, async {
        while publish_status(&hub, &rs).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the rotated key is accepted after a background refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_jwks_url_that_fails_at_start_refuses_to_start() {
    let server = SetServer::start(&two_keys()).await;
    server.set("");
    let config = jwks_config(JwksSource::Url(server.url.clone()), JwksRefresh::default());
    // `Hub::new` fetches on a blocking thread: the set server keeps running on this runtime.
    let message = Hub::new(config).await.err().unwrap().to_string();
    assert!(message.contains("publisher-jwks"), "{message}");
    assert!(message.contains("500"), "{message}");
}
