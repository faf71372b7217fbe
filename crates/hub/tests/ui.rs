//! The built-in web UI over real HTTP: its files with their content types and its own strict
//! Content-Security-Policy, nothing at all without `ui`, and the token minter only in dev mode
//! with an HMAC key, only for the UI's own origin.

mod common;

use common::*;
use herald_hub::{HubConfig, JwtKey};
use herald_protocol::{Algorithm, TokenVerifier, TopicMatcher};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use serde_json::{Value, json};

const UI: &str = "/.well-known/mercure/ui";

fn ui_config() -> HubConfig {
    HubConfig {
        ui: true,
        ..config()
    }
}

fn dev_config() -> HubConfig {
    HubConfig {
        ui: true,
        dev_mode: true,
        anonymous: true,
        ..config()
    }
}

async fn get(hub: &TestHub, path: &str) -> reqwest::Response {
    hub.client
        .get(format!("{}{path}", hub.base))
        .send()
        .await
        .unwrap()
}

async fn mint(hub: &TestHub, body: Value) -> reqwest::Response {
    hub.client
        .post(format!("{}{UI}/token", hub.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// The directives of a CSP header, by name.
fn directives(csp: &str) -> Vec<(String, String)> {
    csp.split(';')
        .filter_map(|d| {
            let d = d.trim();
            let (name, value) = d.split_once(' ').unwrap_or((d, ""));
            (!name.is_empty()).then(|| (name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn ui_assets_are_served_with_content_types_and_a_strict_csp() {
    let hub = TestHub::start(ui_config()).await;
    let html = "text/html; charset=utf-8";
    let js = "text/javascript; charset=utf-8";
    for (path, content_type) in [
        ("/", html),
        ("/index.html", html),
        ("/playground.html", html),
        ("/style.css", "text/css; charset=utf-8"),
        ("/common.js", js),
        ("/debugger.js", js),
        ("/playground.js", js),
        ("/icon.svg", "image/svg+xml"),
        ("/config.json", "application/json"),
    ] {
        let response = get(&hub, &format!("{UI}{path}")).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, CONTENT_TYPE), content_type, "{path}");
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
        let csp = directives(header(&response, CONTENT_SECURITY_POLICY));
        let get = |name: &str| {
            csp.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{path}: no {name} in {csp:?}"))
        };
        assert_eq!(get("default-src"), "'self'", "{path}");
        assert_eq!(get("script-src"), "'self'", "{path}");
        assert_eq!(get("style-src"), "'self'", "{path}");
        assert_eq!(get("connect-src"), "'self'", "{path}");
        assert_eq!(get("img-src"), "'self' data:", "{path}");
        assert_eq!(get("frame-ancestors"), "'none'", "{path}");
        assert!(
            csp.iter().all(|(_, v)| !v.contains("unsafe")),
            "{path}: {csp:?}"
        );
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
}

#[tokio::test]
async fn ui_pages_reference_only_embedded_files() {
    let hub = TestHub::start(ui_config()).await;
    for page in ["/", "/playground.html"] {
        let text = get(&hub, &format!("{UI}{page}"))
            .await
            .text()
            .await
            .unwrap();
        let references: Vec<&str> = ["src=\"", "href=\""]
            .iter()
            .flat_map(|attr| text.split(attr).skip(1))
            .map(|rest| rest.split('"').next().unwrap())
            .filter(|r| !r.starts_with('#'))
            .collect();
        assert!(references.len() >= 4, "{page}: {references:?}");
        for reference in references {
            assert!(
                !reference.contains("//"),
                "{page} loads {reference} from elsewhere"
            );
            let path = match reference {
                "./" => format!("{UI}/"),
                other => format!("{UI}/{other}"),
            };
            assert_eq!(get(&hub, &path).await.status(), 200, "{page} -> {path}");
        }
    }
    // Scripts import each other by relative path: those files exist too.
    let debugger = get(&hub, &format!("{UI}/debugger.js"))
        .await
        .text()
        .await
        .unwrap();
    assert!(debugger.contains("from './common.js'"));
}

#[tokio::test]
async fn ui_without_trailing_slash_redirects_and_assets_revalidate() {
    let hub = TestHub::start(ui_config()).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("{}{UI}", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&response, LOCATION), format!("{UI}/"));

    let first = get(&hub, &format!("{UI}/style.css")).await;
    assert_eq!(header(&first, "cache-control"), "no-cache");
    let etag = header(&first, ETAG).to_owned();
    assert!(etag.starts_with('"'), "{etag:?}");
    let again = hub
        .client
        .get(format!("{}{UI}/style.css", hub.base))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());

    assert_eq!(get(&hub, &format!("{UI}/nope.js")).await.status(), 404);
}

#[tokio::test]
async fn ui_is_404_when_off() {
    let hub = TestHub::default().await;
    for path in [
        "",
        "/",
        "/index.html",
        "/playground.html",
        "/style.css",
        "/config.json",
    ] {
        assert_eq!(
            get(&hub, &format!("{UI}{path}")).await.status(),
            404,
            "{path}"
        );
    }
    // Not even in dev mode: the UI is its own switch.
    let dev_without_ui = TestHub::start(HubConfig {
        dev_mode: true,
        ..config()
    })
    .await;
    assert_eq!(get(&dev_without_ui, &format!("{UI}/")).await.status(), 404);
    let minted = mint(&dev_without_ui, json!({"publish": ["*"]})).await;
    assert_eq!(minted.status(), 404);
}

#[tokio::test]
async fn ui_config_says_what_the_hub_allows() {
    let hub = TestHub::start(HubConfig {
        cookie_name: "herald".into(),
        subscriptions: true,
        ..ui_config()
    })
    .await;
    let response = get(&hub, &format!("{UI}/config.json")).await;
    assert_eq!(header(&response, "cache-control"), "no-store");
    let config: Value = response.json().await.unwrap();
    assert_eq!(config["cookie_name"], "herald");
    assert_eq!(config["hub_path"], "/.well-known/mercure");
    assert_eq!(config["anonymous"], false);
    assert_eq!(config["publishing"], true);
    assert_eq!(config["subscriptions"], true);
    assert_eq!(config["dev_mode"], false);
    assert_eq!(config["minter"], false);

    let dev = TestHub::start(dev_config()).await;
    let config: Value = get(&dev, &format!("{UI}/config.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["dev_mode"], true);
    assert_eq!(config["minter"], true);
    assert_eq!(config["anonymous"], true);
}

#[tokio::test]
async fn ui_token_minter_only_in_dev_mode() {
    let hub = TestHub::start(ui_config()).await;
    let response = mint(&hub, json!({"publish": ["*"]})).await;
    assert_eq!(response.status(), 404, "no minter without dev mode");
}

#[tokio::test]
async fn ui_token_minter_signs_with_the_publisher_key() {
    let hub = TestHub::start(dev_config()).await;
    let response = mint(
        &hub,
        json!({
            "publish": ["https://example.com/books/{id}"],
            "subscribe": ["https://example.com/books/1"],
            "payload": {"user": "alice"},
            "ttl_seconds": 120,
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();

    // The hub's own verifier accepts it, with exactly the rights asked for.
    let claims = TokenVerifier::new(Algorithm::HS256, KEY.as_bytes())
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(
        claims.grants.publish,
        vec![TopicMatcher::Template(
            "https://example.com/books/{id}".into()
        )]
    );
    assert_eq!(
        claims.grants.subscribe,
        vec![TopicMatcher::Template("https://example.com/books/1".into())]
    );
    assert_eq!(claims.grants.payload(), Some(&json!({"user": "alice"})));
    let exp = body["expires_at"].as_u64().unwrap();
    let now = now_secs();
    assert!(
        (now + 110..=now + 130).contains(&exp),
        "exp {exp}, now {now}"
    );
    assert_eq!(body["claims"]["exp"], exp);

    // And it works: it publishes where it may, and receives the private update it may.
    let mut sub = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc("https://example.com/books/1")))
                .bearer_auth(&token),
        )
        .await;
    let published = hub
        .publish_with(
            &token,
            &[
                ("topic", "https://example.com/books/1"),
                ("data", "private"),
                ("private", "on"),
            ],
        )
        .await;
    assert_eq!(published.status(), 200);
    let id = published.text().await.unwrap();
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
    let elsewhere = hub
        .publish_with(&token, &[("topic", "https://example.com/authors/1")])
        .await;
    assert_eq!(elsewhere.status(), 403);
}

#[tokio::test]
async fn v2_ui_token_minter_mints_mercure_1_0_access_tokens() {
    let hub_url = "https://hub.example/.well-known/mercure";
    let hub = TestHub::start(HubConfig {
        hub_url: Some(hub_url.into()),
        publisher_issuers: vec!["https://app.example".into()],
        ..dev_config()
    })
    .await;
    let config: Value = get(&hub, &format!("{UI}/config.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["access_tokens"], true);
    let response = mint(
        &hub,
        json!({
            "format": "at+jwt",
            "match_type": "urlpattern",
            "publish": ["https://example.com/books/:id"],
            "subscribe": ["*"],
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let typ = jsonwebtoken::decode_header(&token).unwrap().typ;
    assert_eq!(typ.as_deref(), Some("at+jwt"));
    assert_eq!(body["claims"]["aud"], hub_url);
    assert_eq!(body["claims"]["iss"], "https://app.example");
    // The hub accepts it where its grants allow, and refuses it elsewhere in the 1.0 form.
    let ok = hub
        .publish_with(&token, &[("topic", "https://example.com/books/1")])
        .await;
    assert_eq!(ok.status(), 200);
    let elsewhere = hub
        .publish_with(&token, &[("topic", "https://example.com/authors/1")])
        .await;
    assert_eq!(elsewhere.status(), 403);
    assert_eq!(
        header(&elsewhere, "www-authenticate"),
        r#"Bearer error="insufficient_scope""#
    );
    // Without a hub URL there is no audience to mint for.
    let bare = TestHub::start(dev_config()).await;
    let response = mint(&bare, json!({"format": "at+jwt", "publish": ["*"]})).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn ui_token_minter_refuses_bad_requests() {
    let hub = TestHub::start(dev_config()).await;
    let url = format!("{}{UI}/token", hub.base);
    for (body, status) in [
        (json!({"ttl_seconds": 0}), 400),
        (json!({"ttl_seconds": 31 * 24 * 3600}), 400),
        (json!({"publish": "*"}), 400),
        (json!({"admin": true}), 400),
    ] {
        let response = mint(&hub, body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        assert!(!response.text().await.unwrap().trim().is_empty());
    }
    let form = hub
        .client
        .post(&url)
        .form(&[("publish", "*")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);

    // Only the UI's own pages may mint: not another site, whatever CORS allows.
    let cross_site = hub
        .client
        .post(&url)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"publish": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let other_origin = hub
        .client
        .post(&url)
        .header("origin", "http://evil.example")
        .json(&json!({"publish": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_origin.status(), 403);
    let same_origin = hub
        .client
        .post(&url)
        .header("origin", hub.base.as_str())
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"publish": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 200);
}

#[tokio::test]
async fn ui_token_minter_needs_an_hmac_publisher_key() {
    let hub = TestHub::start(HubConfig {
        publisher_key: Some(JwtKey {
            algorithm: Algorithm::ES256,
            key: EC_PUBLIC.as_bytes().to_vec(),
        }),
        ..dev_config()
    })
    .await;
    assert_eq!(mint(&hub, json!({"publish": ["*"]})).await.status(), 404);
    let config: Value = get(&hub, &format!("{UI}/config.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["minter"], false);
}

const EC_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIxdgDSrnM6e5M3IB+HEgBLynNG2c
2H/KfiqDS2x7hmI1jZEcuRownm8rd9IIMS96YwXP1uRV9O+pZwnOPFykUw==
-----END PUBLIC KEY-----
";
