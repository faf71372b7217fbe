//! The active subscriptions API [R31][V5]:
//! - draft-07: `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`, JSON-LD, the
//!   cursor as `lastEventID` in the body;
//! - Mercure 1.0: `GET /.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]]`,
//!   plain JSON (`application/json`, `type` `subscription` / `subscriptions`), the cursor as the
//!   `last-event-id` attribute of a `Link: <hub>; rel="mercure"` header.
//!
//! A request speaks 1.0 when its path has three parts (1.0 only; its token must then be a 1.0
//! access token) or, for shorter paths, when its token does (`Authorizer::edition`).
//! Both list every live subscription of this hub (of every live node, on a Redis cluster), each
//! in the requesting edition's format (draft-07 subscriptions appear in 1.0 as `exact`).
//! The caller's token must hold a `mercure.subscribe` selector matching the requested path (as
//! requested, percent-encoded), so the same claim that lets a client receive subscription
//! events lets it read the API. Every response carries the id of the last dispatched update as
//! its `ETag` and cursor; a client can then subscribe from there and miss nothing in between.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use herald_protocol::{MatchType, ProtocolVersion};

use crate::Hub;
use crate::rejection::Rejection;
use crate::subscriptions::{Described, SUBSCRIPTIONS_PATH};

/// What the path asks for. draft-07 paths have no matcher type: it is `None`.
enum Resource {
    All,
    Matcher {
        match_type: Option<MatchType>,
        matcher: String,
    },
    One {
        match_type: Option<MatchType>,
        matcher: String,
        subscriber: String,
    },
}

impl Resource {
    fn selects(&self, d: &Described) -> bool {
        let same_matcher = |match_type: &Option<MatchType>, matcher: &str| {
            d.matcher == matcher && match_type.is_none_or(|t| t == d.match_type)
        };
        match self {
            Resource::All => true,
            Resource::Matcher {
                match_type,
                matcher,
            } => same_matcher(match_type, matcher),
            Resource::One {
                match_type,
                matcher,
                subscriber,
            } => same_matcher(match_type, matcher) && d.subscriber == *subscriber,
        }
    }
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
    // A path of three parts is 1.0's alone; otherwise the token tells (`auth.rs`).
    let said = path_edition(path);
    let edition = hub.authorizer().edition(&headers, query.as_deref(), said);
    let resource = parse(path, edition)?;
    authorize(&hub, &headers, query.as_deref(), said, path).await?;

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

    let selected: Vec<Value> = active_subscriptions(&hub)
        .await?
        .into_iter()
        .filter(|d| resource.selects(d))
        .map(|d| d.document(edition))
        .collect();
    let mut body = match &resource {
        Resource::One { .. } => selected.into_iter().next().ok_or_else(|| {
            Rejection::new(StatusCode::NOT_FOUND, "no such active subscription")
                .with_detail(format!("path {path:?}"))
        })?,
        _ => collection(path, edition, selected),
    };
    let etag_header =
        HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"earliest\""));
    match edition {
        ProtocolVersion::Draft07 => {
            body["@context"] = json!("https://mercure.rocks/");
            body["lastEventID"] = json!(last_event_id);
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/ld+json"),
                    ),
                    (header::ETAG, etag_header),
                ],
                body.to_string(),
            )
                .into_response())
        }
        ProtocolVersion::V1 => {
            let hub_url = hub
                .config()
                .hub_url
                .as_deref()
                .unwrap_or(herald_protocol::HUB_PATH);
            let cursor = last_event_id.replace('\\', "\\\\").replace('"', "\\\"");
            let link = format!(
                "<{hub_url}>; rel=\"mercure\"; last-event-id=\"{cursor}\"; \
                 content-type=\"application/json\""
            );
            let link = HeaderValue::from_str(&link).map_err(|_| {
                Rejection::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cursor not representable",
                )
            })?;
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::ETAG, etag_header),
                    (header::LINK, link),
                ],
                body.to_string(),
            )
                .into_response())
        }
    }
}

/// The active subscriptions: of the whole cluster when the transport keeps them (Redis), else
/// of this hub, in arrival order.
async fn active_subscriptions(hub: &Hub) -> Result<Vec<Described>, Rejection> {
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
            .filter_map(|document| serde_json::from_str::<Value>(document).ok())
            .filter_map(|document| Described::from_document(&document))
            .collect());
    }
    Ok(hub.active_subscriptions().list())
}

fn collection(path: &str, edition: ProtocolVersion, subscriptions: Vec<Value>) -> Value {
    json!({
        "id": path,
        "type": match edition {
            ProtocolVersion::Draft07 => "Subscriptions",
            ProtocolVersion::V1 => "subscriptions",
        },
        "subscriptions": subscriptions,
    })
}

/// The parts of the path after the prefix, still percent-encoded.
fn parts(path: &str) -> Vec<&str> {
    path.strip_prefix(SUBSCRIPTIONS_PATH)
        .unwrap_or_default()
        .split('/')
        .filter(|p| !p.is_empty())
        .collect()
}

/// The edition the path speaks, if it tells: three parts (`{match_type}/{match}/{subscriber}`)
/// exist in 1.0 only; shorter paths exist in both.
fn path_edition(path: &str) -> Option<ProtocolVersion> {
    (parts(path).len() == 3).then_some(ProtocolVersion::V1)
}

/// What the path asks for, read as `edition` writes it (its parts percent-decoded).
fn parse(path: &str, edition: ProtocolVersion) -> Result<Resource, Rejection> {
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| Rejection::bad_request("the path is not valid UTF-8 once decoded"))
    };
    let parts = parts(path);
    let match_type = |name: &str| {
        MatchType::from_name(name).ok_or_else(|| {
            Rejection::new(
                StatusCode::NOT_FOUND,
                "unknown matcher type: expected exact or urlpattern",
            )
        })
    };
    let resource = match (edition, parts.as_slice()) {
        (_, []) => Resource::All,
        (ProtocolVersion::Draft07, [topic]) => Resource::Matcher {
            match_type: None,
            matcher: decode(topic)?,
        },
        (ProtocolVersion::Draft07, [topic, subscriber]) => Resource::One {
            match_type: None,
            matcher: decode(topic)?,
            subscriber: decode(subscriber)?,
        },
        (ProtocolVersion::V1, [kind, matcher]) => Resource::Matcher {
            match_type: Some(match_type(kind)?),
            matcher: decode(matcher)?,
        },
        (ProtocolVersion::V1, [kind, matcher, subscriber]) => Resource::One {
            match_type: Some(match_type(kind)?),
            matcher: decode(matcher)?,
            subscriber: decode(subscriber)?,
        },
        _ => {
            return Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "expected /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]] (draft-07) \
                 or /.well-known/mercure/subscriptions[/{match_type}/{match}[/{subscriber}]] \
                 (1.0), with percent-encoded parts",
            ));
        }
    };
    Ok(resource)
}

/// The token's `mercure.subscribe` must match the requested path [R31].
async fn authorize(
    hub: &Hub,
    headers: &HeaderMap,
    query: Option<&str>,
    said: Option<ProtocolVersion>,
    path: &str,
) -> Result<(), Rejection> {
    let caller = hub
        .authorizer()
        .subscriber(headers, query, said)
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
