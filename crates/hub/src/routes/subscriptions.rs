//! `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`: the active subscriptions
//! API [R31].
//!
//! Lists the live subscriptions of this hub (of every live node, on a Redis cluster) as JSON-LD.
//! The caller's token must hold a `mercure.subscribe` selector matching the requested path (as
//! requested, percent-encoded), so
//! the same claim that lets a client receive subscription events lets it read the API. Every
//! response carries the id of the last dispatched update as `lastEventID` and as its `ETag`; a
//! client can then subscribe from there and miss nothing in between.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::Hub;
use crate::rejection::Rejection;
use crate::subscriptions::{SUBSCRIPTIONS_PATH, document};

/// What the path asks for.
enum Resource {
    All,
    Topic(String),
    One { topic: String, subscriber: String },
}

pub(super) async fn subscriptions(
    State(hub): State<Hub>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    if !hub.config().subscriptions {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "the subscriptions API is disabled on this hub (start it with --subscriptions)",
        ));
    }
    let path = uri.path();
    let resource = parse(path)?;
    authorize(&hub, &headers, query.as_deref(), path).await?;

    let last_event_id = hub
        .registry()
        .last_event_id()
        .map_or_else(|| "earliest".to_owned(), |id| id.to_string());
    let etag = format!("\"{}\"", last_event_id.replace('"', "%22"));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }

    let documents = active_documents(&hub).await?;
    let field = |document: &Value, name: &str| document[name].as_str().map(str::to_owned);
    let mut body = match &resource {
        Resource::All => collection(path, documents),
        Resource::Topic(topic) => collection(
            path,
            documents
                .into_iter()
                .filter(|d| field(d, "topic").as_ref() == Some(topic))
                .collect(),
        ),
        Resource::One { topic, subscriber } => documents
            .into_iter()
            .find(|d| {
                field(d, "topic").as_ref() == Some(topic)
                    && field(d, "subscriber").as_ref() == Some(subscriber)
            })
            .ok_or_else(|| {
                Rejection::new(StatusCode::NOT_FOUND, "no such active subscription")
                    .with_detail(format!("topic {topic:?}, subscriber {subscriber:?}"))
            })?,
    };
    body["@context"] = json!("https://mercure.rocks/");
    body["lastEventID"] = json!(last_event_id);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/ld+json"),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"earliest\"")),
            ),
        ],
        body.to_string(),
    )
        .into_response())
}

/// The documents of the active subscriptions: of the whole cluster when the transport keeps
/// them (Redis), else of this hub, in arrival order.
async fn active_documents(hub: &Hub) -> Result<Vec<Value>, Rejection> {
    if let Some(directory) = hub.transport().subscription_directory() {
        let documents = directory.list().await.map_err(|e| {
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cluster's subscriptions cannot be read right now",
            )
            .with_detail(e.to_string())
        })?;
        return Ok(documents
            .iter()
            .filter_map(|document| serde_json::from_str(document).ok())
            .collect());
    }
    Ok(hub
        .registry()
        .subscribers()
        .iter()
        .flat_map(|subscriber| {
            subscriber
                .subscription()
                .selectors
                .iter()
                .map(move |selector| document(selector.as_str(), subscriber, true))
        })
        .collect())
}

fn collection(path: &str, subscriptions: Vec<Value>) -> Value {
    json!({
        "id": path,
        "type": "Subscriptions",
        "subscriptions": subscriptions,
    })
}

/// Splits the path after the prefix into its (percent-decoded) topic and subscriber.
fn parse(path: &str) -> Result<Resource, Rejection> {
    let rest = path
        .strip_prefix(SUBSCRIPTIONS_PATH)
        .unwrap_or_default()
        .trim_start_matches('/');
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| Rejection::bad_request("the path is not valid UTF-8 once decoded"))
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => Ok(Resource::All),
        [topic] => Ok(Resource::Topic(decode(topic)?)),
        [topic, subscriber] => Ok(Resource::One {
            topic: decode(topic)?,
            subscriber: decode(subscriber)?,
        }),
        _ => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "expected /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]] with \
             percent-encoded parts",
        )),
    }
}

/// The token's `mercure.subscribe` must match the requested path [R31].
async fn authorize(
    hub: &Hub,
    headers: &HeaderMap,
    query: Option<&str>,
    path: &str,
) -> Result<(), Rejection> {
    let hint = crate::auth::query_edition(query);
    let caller = hub
        .authorizer()
        .subscriber(headers, query, hint)
        .await?
        .ok_or_else(|| {
            Rejection::unauthorized(
                "the subscriptions API needs a token whose mercure.subscribe matches this URL",
            )
            .with_resource_metadata(hub.authorizer().resource_metadata())
        })?;
    let allowed = caller.claims.grants.subscribe;
    let selectors = crate::grants::rights(
        hub.registry().patterns(),
        &allowed,
        &hub.config().template_limits,
    )?;
    if selectors.iter().any(|s| s.matches(path)) {
        Ok(())
    } else {
        Err(Rejection::forbidden(format!(
            "the token's mercure.subscribe claim does not cover {path}"
        ))
        .with_detail(format!("subscribe grants = {allowed:?}"))
        .for_edition(caller.edition))
    }
}
