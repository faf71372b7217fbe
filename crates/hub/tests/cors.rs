//! CORS over real TCP: the allowlist, credentials, preflight and exposed headers [R23].

mod common;

use common::*;
use herald_hub::HubConfig;
use reqwest::Method;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, ORIGIN, VARY,
};

const APP: &str = "https://app.example.com";
const OTHER_APP: &str = "http://localhost:5173";

async fn cors_hub(origins: &[&str]) -> TestHub {
    TestHub::start(HubConfig {
        cors_origins: origins.iter().map(|o| o.to_string()).collect(),
        ..config()
    })
    .await
}

/// A browser's preflight for a request from `origin` with `method` and the headers an
/// EventSource polyfill or a publishing page sends.
async fn preflight(hub: &TestHub, origin: &str, method: &str) -> reqwest::Response {
    hub.client
        .request(Method::OPTIONS, &hub.url)
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(
            ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,cache-control,last-event-id",
        )
        .send()
        .await
        .unwrap()
}

/// The comma-separated values of `name`, lowercased.
fn list(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

fn header(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn r23_preflight_from_an_allowed_origin_is_answered() {
    let hub = cors_hub(&[APP, OTHER_APP]).await;
    for (origin, method) in [(APP, "GET"), (APP, "POST"), (OTHER_APP, "GET")] {
        let response = preflight(&hub, origin, method).await;
        assert!(response.status().is_success(), "{}", response.status());
        let headers = response.headers();
        assert_eq!(
            header(headers, ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(origin),
            "the origin itself is echoed, never the whole list"
        );
        assert_eq!(
            header(headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        let allowed = list(headers, ACCESS_CONTROL_ALLOW_HEADERS);
        for needed in ["authorization", "cache-control", "last-event-id"] {
            assert!(
                allowed.iter().any(|h| h == needed),
                "{needed} not in {allowed:?}"
            );
        }
        let methods = list(headers, ACCESS_CONTROL_ALLOW_METHODS);
        for needed in ["get", "post"] {
            assert!(
                methods.iter().any(|m| m == needed),
                "{needed} not in {methods:?}"
            );
        }
        // The answer depends on Origin: caches must know.
        assert!(
            list(headers, VARY).iter().any(|v| v == "origin"),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn r23_disallowed_origin_gets_no_allow_origin() {
    let hub = cors_hub(&[APP]).await;
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com.evil.com",
        "null",
    ] {
        let response = preflight(&hub, origin, "GET").await;
        assert_eq!(
            header(response.headers(), ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "{origin}"
        );
        let response = hub
            .client
            .head(format!("{}?topic=*", hub.url))
            .bearer_auth(subscriber_token(&[]))
            .header(ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(response.headers(), ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn r23_no_configured_origin_allows_none() {
    let hub = TestHub::default().await;
    let response = preflight(&hub, APP, "GET").await;
    assert_eq!(
        header(response.headers(), ACCESS_CONTROL_ALLOW_ORIGIN),
        None
    );
}

#[tokio::test]
async fn r23_star_allows_any_origin_without_credentials() {
    let hub = cors_hub(&["*"]).await;
    let response = preflight(&hub, "https://anywhere.example.org", "GET").await;
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(header(headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert_eq!(
        header(headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
        None,
        "never * with credentials"
    );
    let allowed = list(headers, ACCESS_CONTROL_ALLOW_HEADERS);
    assert!(allowed.iter().any(|h| h == "authorization"), "{allowed:?}");

    let response = hub
        .client
        .post(&hub.url)
        .bearer_auth(publisher_token())
        .header(ORIGIN, "https://anywhere.example.org")
        .form(&[("topic", "https://example.com/a")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("*")
    );
    assert_eq!(
        header(response.headers(), ACCESS_CONTROL_ALLOW_CREDENTIALS),
        None
    );
}

#[tokio::test]
async fn r23_subscribe_response_allows_the_origin_and_exposes_link() {
    let hub = cors_hub(&[APP]).await;
    let sub = hub
        .subscribe_with(
            hub.get("topic=*")
                .bearer_auth(subscriber_token(&[]))
                .header(ORIGIN, APP),
        )
        .await;
    assert_eq!(header(&sub.headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
    assert_eq!(
        header(&sub.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
        Some("true")
    );
    let exposed = list(&sub.headers, ACCESS_CONTROL_EXPOSE_HEADERS);
    assert!(exposed.iter().any(|h| h == "link"), "{exposed:?}");
    // So that a page can read where a replay started [R27].
    assert!(exposed.iter().any(|h| h == "last-event-id"), "{exposed:?}");
}

#[tokio::test]
async fn r23_publish_response_allows_the_origin_and_exposes_link() {
    let hub = cors_hub(&[APP]).await;
    let response = hub
        .client
        .post(&hub.url)
        .bearer_auth(publisher_token())
        .header(ORIGIN, APP)
        .form(&[("topic", "https://example.com/a")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(header(headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
    assert_eq!(
        header(headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
        Some("true")
    );
    let exposed = list(headers, ACCESS_CONTROL_EXPOSE_HEADERS);
    assert!(exposed.iter().any(|h| h == "link"), "{exposed:?}");
}

#[tokio::test]
async fn r23_rejections_carry_cors_headers_so_browsers_can_read_the_reason() {
    let hub = cors_hub(&[APP]).await;
    let response = hub
        .client
        .get(format!("{}?topic=*", hub.url))
        .header(ORIGIN, APP)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(response.headers(), ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(APP)
    );
    expect_rejection(response, 401).await;
    let response = hub
        .client
        .post(&hub.url)
        .header(ORIGIN, APP)
        .form(&[("topic", "https://example.com/a")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(response.headers(), ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(APP)
    );
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn security_headers_on_non_stream_responses() {
    let hub = TestHub::default().await;
    let publish = hub.publish(&[("topic", "https://example.com/a")]).await;
    let rejected = hub
        .client
        .get(format!("{}?topic=*", hub.url))
        .send()
        .await
        .unwrap();
    for response in [publish, rejected] {
        let headers = response.headers();
        assert_eq!(header(headers, "x-frame-options"), Some("DENY"));
        assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
        let csp = header(headers, "content-security-policy").unwrap_or("");
        assert!(csp.contains("default-src 'none'"), "{csp:?}");
    }
}
