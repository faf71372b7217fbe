//! `POST /.well-known/mercure`: publish [R12]-[R17].

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use herald_protocol::{PublishRequest, TopicMatcher, Update, is_reserved_topic};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::rejection::Rejection;
use crate::{Hub, HubConfig};

/// The body formats a publisher may send.
enum BodyFormat {
    Form,
    Json,
}

pub(super) async fn publish(
    State(hub): State<Hub>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, Rejection> {
    let caller = hub
        .authorizer()
        .publisher(&headers, query.as_deref())
        .await?;
    let format = body_format(&headers)?;
    let body = read_body(body, &headers, hub.config()).await?;
    let request = match format {
        BodyFormat::Form => PublishRequest::from_form(&body),
        BodyFormat::Json => PublishRequest::from_json(&body),
    }
    .map_err(|e| Rejection::bad_request(e.to_string()))?;
    let update = request
        .into_update()
        .map_err(|e| Rejection::bad_request(e.to_string()))?;
    authorize_topics(&hub, &update, &caller.claims.grants.publish)
        .map_err(|e| e.for_edition(caller.edition))?;
    let id = update.id.clone();
    hub.transport().publish(update).await.map_err(|e| {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("update not stored: {e}"),
        )
        .with_detail(format!("{e:?}"))
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        id,
    )
        .into_response())
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
        "application/json" => Ok(BodyFormat::Json),
        _ => Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the update as application/x-www-form-urlencoded (or application/json)",
        )
        .with_detail(format!("content type {content_type:?}"))),
    }
}

/// Reads the body, bounded in size [R17] and in time. A declared `Content-Length` over the limit
/// is refused before reading anything; a body still incomplete after the body timeout (a
/// client sending a byte at a time) is refused with 408, and hyper closes the connection, whose
/// rest of body was not read.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    config: &HubConfig,
) -> Result<bytes::Bytes, Rejection> {
    let limit = config.max_body_bytes;
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("update too large: the limit is {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large().with_detail(format!("content-length {declared:?}")));
    }
    let timeout = config.timeouts.body;
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => {
            Err(Rejection::bad_request("could not read the request body")
                .with_detail(e.to_string()))
        }
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {timeout:?}"),
        )),
    }
}

/// Every topic must be allowed by the token's publish grants (draft-07 `mercure.publish`, 1.0
/// `publish` authorization details) [R15][V2], and none may lie in the hub's own namespace
/// [R16].
fn authorize_topics(hub: &Hub, update: &Update, allowed: &[TopicMatcher]) -> Result<(), Rejection> {
    if let Some(topic) = update.topics.iter().find(|t| is_reserved_topic(t)) {
        return Err(Rejection::forbidden(format!(
            "topic {topic} is in the hub's reserved namespace /.well-known/mercure/"
        )));
    }
    if allowed.is_empty() {
        return Err(Rejection::forbidden(
            "the token's mercure.publish claim is missing or empty: it allows no topic",
        ));
    }
    let selectors = crate::grants::rights(
        hub.registry().patterns(),
        allowed,
        &hub.config().template_limits,
    )?;
    for topic in &update.topics {
        if !selectors.iter().any(|s| s.matches(topic)) {
            return Err(Rejection::forbidden(format!(
                "the token's mercure.publish claim does not cover topic {topic}"
            ))
            .with_detail(format!("publish grants = {allowed:?}")));
        }
    }
    Ok(())
}
