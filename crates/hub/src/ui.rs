//! The built-in web UI: a debugger and a playground, served at `/.well-known/mercure/ui/` when
//! [`HubConfig::ui`] is on.
//!
//! The pages are plain HTML, CSS and JavaScript from `crates/hub/ui/`, embedded in the binary with
//! `include_bytes!`: no build step, nothing loaded from anywhere else. Every UI response carries
//! its own strict Content-Security-Policy ([`CSP`]): scripts, styles and connections from the
//! hub's own origin only, no inline script or style, no framing. (The router's general policy,
//! `default-src 'none'`, applies to everything else; it is set only if a response has none.)
//!
//! `config.json` tells the pages what this hub allows (anonymous subscribers, the cookie name,
//! whether tokens can be minted). In development mode, and only when the publisher key is an
//! HMAC secret, `POST /.well-known/mercure/ui/token` signs tokens with that key so that a
//! newcomer can try publishing and private updates without minting a JWT by hand. It answers
//! same-origin requests only: the dev hub allows any CORS origin, and no other site should be
//! able to mint tokens from a developer's browser. It mints both editions: a draft-07 token (the
//! `mercure` claim) by default, or with `"format": "at+jwt"` a Mercure 1.0 access token whose
//! audience is the hub's URL (`--hub-url`) and whose issuer is one the hub trusts.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::{EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use herald_protocol::access_token::AUTHORIZATION_DETAIL_TYPE;

use crate::Hub;
use crate::config::{HubConfig, JwtKey};
use crate::rejection::Rejection;

/// Where the UI lives, under the hub's own namespace.
const UI_PATH: &str = "/.well-known/mercure/ui";

/// The policy of every UI response. `connect-src 'self'`: the pages talk to the hub that serves
/// them, and to nothing else.
pub(crate) const CSP: &str = "default-src 'self'; connect-src 'self'; script-src 'self'; \
                       style-src 'self'; img-src 'self' data:; object-src 'none'; \
                       base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Lifetime of a minted token when the request does not say.
const DEFAULT_TTL_SECONDS: u64 = 3600;
/// Longest lifetime a minted token may ask for: 30 days.
const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;
/// A token request is a few hundred bytes; a claim of a few thousand topics fits too.
const MAX_MINT_BODY: usize = 64 * 1024;

/// One embedded file of the UI.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../ui/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("playground.html", HTML),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("common.js", "text/javascript; charset=utf-8"),
    asset!("debugger.js", "text/javascript; charset=utf-8"),
    asset!("playground.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// The UI's routes: none unless `config.ui`; the token minter only in dev mode with an HMAC
/// publisher key.
pub(crate) fn router(config: &HubConfig) -> Router<Hub> {
    let mut router = Router::new();
    if !config.ui {
        return router;
    }
    router = router
        .route(
            UI_PATH,
            get(|| async { Redirect::permanent(&format!("{UI_PATH}/")) }),
        )
        .route(
            &format!("{UI_PATH}/"),
            get(|headers: HeaderMap| async move { serve(&ASSETS[0], &headers) }),
        )
        .route(&format!("{UI_PATH}/config.json"), get(ui_config));
    for asset in ASSETS {
        router = router.route(
            &format!("{UI_PATH}/{}", asset.name),
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        );
    }
    if minter_key(config).is_some() {
        router = router.route(&format!("{UI_PATH}/token"), post(mint));
    }
    router
}

/// The headers every UI response carries.
fn ui_headers(response: &mut Response, cache: &'static str) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// An embedded file, revalidated by the browser on each use (`no-cache` with an `ETag`), so that
/// a new binary's UI is picked up at once.
fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(asset.body));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    ui_headers(&mut response, "no-cache");
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// 64-bit FNV-1a: a stable fingerprint of an asset for its `ETag`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the pages need to know about this hub. Nothing secret: the same things a client learns
/// by trying.
async fn ui_config(State(hub): State<Hub>) -> Response {
    let config = hub.config();
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "hub_path": herald_protocol::HUB_PATH,
        "cookie_name": config.cookie_name,
        "anonymous": config.anonymous,
        "publishing": config.publisher_key.is_some() || config.publisher_jwks.is_some(),
        "subscriptions": config.subscriptions,
        "dev_mode": config.dev_mode,
        "minter": minter_key(config).is_some(),
        "access_tokens": config.hub_url.is_some() && config.protocols.v1,
    });
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response();
    ui_headers(&mut response, "no-store");
    response
}

/// The key the minter signs with: the publisher key, in dev mode, when it is an HMAC secret.
fn minter_key(config: &HubConfig) -> Option<&JwtKey> {
    use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
    config
        .publisher_key
        .as_ref()
        .filter(|_| config.ui && config.dev_mode)
        .filter(|key| matches!(key.algorithm, HS256 | HS384 | HS512))
}

/// The body of `POST .../ui/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    /// `draft-07` (the default) or `at+jwt` (Mercure 1.0).
    #[serde(default)]
    format: Option<String>,
    /// For `at+jwt`: how `publish` and `subscribe` match, `exact` (default) or `urlpattern`
    /// (`*` is every topic either way).
    #[serde(default)]
    match_type: Option<String>,
}

/// Reads a token request, bounded in size and in time like a publish body (the body timeout:
/// a client sending a byte a second does not hold the connection).
async fn read_mint_body(body: Body, config: &HubConfig) -> Result<Bytes, Rejection> {
    let timeout = config.timeouts.body;
    match tokio::time::timeout(timeout, Limited::new(body, MAX_MINT_BODY).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("token request unreadable or over {MAX_MINT_BODY} bytes"),
        )
        .with_detail(e.to_string())),
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {timeout:?}"),
        )),
    }
}

/// Signs a token with the publisher key (dev mode only).
async fn mint(
    State(hub): State<Hub>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Rejection> {
    let key = minter_key(hub.config())
        .ok_or_else(|| Rejection::new(StatusCode::NOT_FOUND, "the token minter is not enabled"))?;
    check_same_origin(&headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the token request as application/json",
        ));
    }
    let body = read_mint_body(body, hub.config()).await?;
    let request: MintRequest = serde_json::from_slice(&body).map_err(|e| {
        Rejection::bad_request(format!(
            "expected {{\"publish\": [..], \"subscribe\": [..], \"payload\": .., \
             \"ttl_seconds\": N}}: {e}"
        ))
    })?;
    let ttl = request.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(Rejection::bad_request(format!(
            "ttl_seconds must be between 1 and {MAX_TTL_SECONDS} (30 days)"
        )));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut header = Header::new(key.algorithm);
    let claims = match request.format.as_deref().unwrap_or("draft-07") {
        "draft-07" => draft07_claims(&request, now, ttl),
        "at+jwt" => {
            header.typ = Some("at+jwt".into());
            access_token_claims(hub.config(), &request, now, ttl)?
        }
        other => {
            return Err(Rejection::bad_request(format!(
                "format {other:?}: the formats are draft-07 and at+jwt"
            )));
        }
    };
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.key))
        .map_err(|e| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not sign the token",
            )
            .with_detail(e.to_string())
        })?;
    tracing::debug!(%claims, "dev mode: minted a token for the UI");
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json!({"token": token, "claims": claims, "expires_at": now + ttl}).to_string(),
    )
        .into_response();
    ui_headers(&mut response, "no-store");
    Ok(response)
}

/// The claims of a draft-07 token: the `mercure` claim.
fn draft07_claims(request: &MintRequest, now: u64, ttl: u64) -> Value {
    let mut mercure = Map::new();
    if !request.publish.is_empty() {
        mercure.insert("publish".into(), json!(request.publish));
    }
    if !request.subscribe.is_empty() {
        mercure.insert("subscribe".into(), json!(request.subscribe));
    }
    if let Some(payload) = request.payload.as_ref().filter(|p| !p.is_null()) {
        mercure.insert("payload".into(), payload.clone());
    }
    json!({"mercure": mercure, "iat": now, "exp": now + ttl})
}

/// The claims of a Mercure 1.0 access token for this hub [V2].
fn access_token_claims(
    config: &HubConfig,
    request: &MintRequest,
    now: u64,
    ttl: u64,
) -> Result<Value, Rejection> {
    let audience = config.hub_url.as_deref().ok_or_else(|| {
        Rejection::bad_request(
            "this hub has no --hub-url, so it cannot accept at+jwt tokens: start it with \
             --hub-url",
        )
    })?;
    let match_type = match request.match_type.as_deref().unwrap_or("exact") {
        t @ ("exact" | "urlpattern") => t,
        other => {
            return Err(Rejection::bad_request(format!(
                "match_type {other:?}: the types are exact and urlpattern"
            )));
        }
    };
    let topics = |list: &[String]| -> Vec<Value> {
        list.iter()
            .map(|m| match m.as_str() {
                "*" => json!({"match": "*"}),
                m => json!({"match": m, "match_type": match_type}),
            })
            .collect()
    };
    let mut details = Vec::new();
    if !request.publish.is_empty() {
        details.push(
            json!({"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
            "topics": topics(&request.publish)}),
        );
    }
    if !request.subscribe.is_empty() {
        let mut detail = json!({"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["subscribe"],
            "topics": topics(&request.subscribe)});
        if let Some(payload) = request.payload.as_ref().filter(|p| !p.is_null()) {
            detail["payload"] = payload.clone();
        }
        details.push(detail);
    }
    let mut claims = json!({
        "aud": audience, "iat": now, "exp": now + ttl, "sub": "herald-ui",
        "jti": herald_protocol::generate_id(), "authorization_details": details,
    });
    // An issuer both roles trust, else the publishers' first.
    let issuer = config
        .publisher_issuers
        .iter()
        .find(|i| config.subscriber_issuers.is_empty() || config.subscriber_issuers.contains(i))
        .or(config.publisher_issuers.first())
        .or(config.subscriber_issuers.first());
    if let Some(issuer) = issuer {
        claims["iss"] = json!(issuer);
    }
    Ok(claims)
}

/// Only the UI's own pages may mint: browsers say where a request comes from in
/// `Sec-Fetch-Site` and `Origin`. A request with neither (curl) comes from someone who can read
/// the dev banner's tokens anyway.
fn check_same_origin(headers: &HeaderMap) -> Result<(), Rejection> {
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Rejection::forbidden(
            "tokens are minted for the hub's own UI only (cross-site request)",
        )
        .with_detail(format!("Sec-Fetch-Site: {site}")));
    }
    if let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) {
        let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if !authority.eq_ignore_ascii_case(host) {
            return Err(Rejection::forbidden(
                "tokens are minted for the hub's own UI only (cross-origin request)",
            )
            .with_detail(format!("Origin {origin}, Host {host}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_lives_in_the_hub_namespace() {
        assert!(UI_PATH.starts_with(herald_protocol::HUB_PATH));
        assert_eq!(ASSETS[0].name, "index.html");
    }

    #[test]
    fn content_types_follow_extensions() {
        for asset in ASSETS {
            let expected = match asset.name.rsplit_once('.').map(|(_, ext)| ext) {
                Some("html") => HTML,
                Some("css") => "text/css; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("svg") => "image/svg+xml",
                other => panic!("no content type for {other:?}"),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.name);
        }
    }

    #[test]
    fn no_inline_script_or_style_in_pages() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            assert!(!text.contains("<style"), "{}: inline <style>", asset.name);
            assert!(
                !text.contains("style=\""),
                "{}: style attribute",
                asset.name
            );
            for script in text.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap();
                assert!(tag.contains("src="), "{}: inline <script>", asset.name);
            }
            let handler = text.match_indices(" on").any(|(at, _)| {
                let rest = &text[at + 3..];
                let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
                name > 0 && rest[name..].starts_with('=')
            });
            assert!(!handler, "{}: inline event handler", asset.name);
            for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
                assert!(!text.contains(attr), "{}: external URL", asset.name);
            }
        }
    }

    #[test]
    fn same_origin_check() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(check_same_origin(&headers(&[])).is_ok());
        assert!(
            check_same_origin(&headers(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:3000"),
                ("host", "127.0.0.1:3000"),
            ]))
            .is_ok()
        );
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(
            check_same_origin(&headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:3000"),
            ]))
            .is_err()
        );
    }
}
