//! The HTTP surface: the hub endpoint [R1], the protected resource metadata [V6], `/healthz`,
//! `/readyz`, and the layers around them.

pub(crate) mod discovery;
mod layers;
mod publish;
mod subscribe;
mod subscriptions;

use axum::Router;
use axum::routing::get;
use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use tower::ServiceBuilder;

use self::layers::AroundLayer;
use crate::Hub;
use crate::rejection::Rejection;

/// The hub's routes, with CORS and security headers.
pub(crate) fn router(hub: Hub) -> Router {
    // One stack, outermost first, given to `layer` once (layers.rs says why).
    let layers = ServiceBuilder::new()
        .layer(AroundLayer(layers::SecurityHeaders))
        .layer(AroundLayer(layers::LimitHead))
        .layer(cors_layer(&hub.config().cors_origins))
        .layer(AroundLayer(layers::AddLinks::new(
            hub.config().hub_url.as_deref(),
        )));
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
        .route(discovery::METADATA_PATH, get(discovery::metadata))
        .route("/healthz", get(crate::metrics::endpoints::healthz))
        .route("/readyz", get(crate::metrics::endpoints::readyz))
        .merge(crate::ui::router(hub.config()))
        .merge(crate::front_page::router(hub.config()))
        .with_state(hub)
        .layer(layers)
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
            header::WWW_AUTHENTICATE,
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
