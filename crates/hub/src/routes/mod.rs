//! The HTTP surface: the hub endpoint [R1], `/healthz`, `/readyz`, and the layers around them.

mod publish;
mod subscribe;
mod subscriptions;

use axum::Router;
use axum::routing::get;
use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::Hub;
use crate::rejection::Rejection;
use crate::subscription_conn::MAX_HEAD_BYTES;

/// The hub's routes, with CORS and security headers.
pub(crate) fn router(hub: Hub) -> Router {
    let cors = cors_layer(&hub.config().cors_origins);
    Router::new()
        .route(
            herald_protocol::HUB_PATH,
            get(subscribe::subscribe)
                .head(subscribe::subscribe_head)
                .post(publish::publish)
                .fallback(wrong_method),
        )
        .route(
            crate::subscriptions::SUBSCRIPTIONS_PATH,
            get(subscriptions::subscriptions),
        )
        .route(
            "/.well-known/mercure/subscriptions/{*rest}",
            get(subscriptions::subscriptions),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(crate::metrics::endpoints::readyz))
        .merge(crate::ui::router(hub.config()))
        .merge(crate::front_page::router(hub.config()))
        .with_state(hub)
        .layer(cors)
        .layer(axum::middleware::map_request(limit_head))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
}

/// The edition a request speaks by its token: Mercure 1.0 when the token is a 1.0 access token
/// (`typ` `at+jwt` or `application/at+jwt`, ASCII case ignored) or arrives in 1.0's cookie;
/// draft-07 otherwise (no token included). Publishing and the subscriptions API, whose
/// parameters do not tell, go by this.
pub(super) fn token_edition(
    headers: &http::HeaderMap,
    query_token: Option<&str>,
    cookie_name: &str,
) -> herald_protocol::ProtocolVersion {
    use herald_protocol::ProtocolVersion;
    const V1_COOKIE: &str = "__Secure-mercure_access_token";
    let Ok(Some((token, _))) = crate::auth::find_token(headers, query_token, cookie_name) else {
        return ProtocolVersion::Draft07;
    };
    let v1_cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|pair| pair.trim_start().starts_with(&format!("{V1_COOKIE}=")))
    };
    let typ = jsonwebtoken::decode_header(&token)
        .ok()
        .and_then(|header| header.typ);
    let at_jwt = typ.is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    });
    if at_jwt || (headers.get(header::AUTHORIZATION).is_none() && v1_cookie()) {
        ProtocolVersion::V1
    } else {
        ProtocolVersion::Draft07
    }
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// CORS by allowlist [R23]. `*` allows any origin but, as browsers demand, without credentials;
/// an explicit list allows credentials (the authorization cookie).
fn cors_layer(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::HEAD, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CACHE_CONTROL,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::LINK,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("mercure-last-event-id"),
        ]);
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    if origins.is_empty() {
        // No browser origin is allowed: answer no CORS headers at all.
        return CorsLayer::new();
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer
        .allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
}

/// Any other method on the hub's URL: 405 saying which ones mean what.
async fn wrong_method(method: Method) -> Rejection {
    Rejection::method_not_allowed(
        format!(
            "{method} is not a hub method: subscribe with GET (an EventSource, or curl -N URL?topic=...), \
             publish with POST (curl -d topic=... -d data=... -H 'Authorization: Bearer TOKEN' URL)"
        ),
        "GET, HEAD, POST",
    )
}

/// Refuses a request whose head is over [`MAX_HEAD_BYTES`] with 431, whichever connection path
/// read it: the subscription fast path counts the bytes it reads, but hyper's own limit is on
/// its read buffer, which lets somewhat larger heads through; this makes both paths give the
/// same answer to the same request.
async fn limit_head(
    request: http::Request<axum::body::Body>,
) -> Result<http::Request<axum::body::Body>, Rejection> {
    let uri = request.uri().to_string().len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if uri.saturating_add(headers) > MAX_HEAD_BYTES {
        return Err(Rejection::new(
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large (the limit is 512 KiB)",
        )
        .with_detail(format!("{} bytes of headers", headers)));
    }
    Ok(request)
}
