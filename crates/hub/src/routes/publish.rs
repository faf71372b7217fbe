//! `POST /.well-known/mercure`: publish [R12]-[R17], [V3].
//!
//! A publish speaks Mercure 1.0 when its token is a 1.0 access token (`typ: at+jwt`) or comes
//! in 1.0's cookie; otherwise draft-07 (the authorizer decides, `auth.rs`, and says so in
//! `Caller::edition`). The edition picks the body rules
//! (`PublishRequest::into_update_for`) and the answer to a topic in the hub's reserved
//! namespace: 400 for 1.0 [V3], 403 for draft-07 as before [R16]. Both resolve the topic
//! against the hub's URL first, so that a relative topic cannot reach the namespace either.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use herald_protocol::{
    ProtocolVersion, PublishRequest, TopicMatcher, Update, is_reserved_topic_at,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::metrics::PublishOutcome;
use crate::rejection::Rejection;
use crate::{Hub, HubConfig};

/// The body formats a publisher may send.
enum BodyFormat {
    Form,
    Json,
}

/// Why a publish was not acknowledged: refused before the transport, or not stored by it.
enum Refused {
    Rejected(Rejection),
    Failed(Rejection),
}

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Refused {
        Refused::Rejected(rejection)
    }
}

/// Publishes, and counts the outcome and the time to acknowledgement (crate::metrics).
pub(super) async fn publish(
    State(hub): State<Hub>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, Rejection> {
    if let Some(rejection) = hub
        .authorizer()
        .misplaced_token(&headers, query.as_deref(), None)
    {
        hub.metrics().publish_ended(
            PublishOutcome::Rejected(rejection.status()),
            Default::default(),
        );
        return Err(rejection);
    }
    let started = std::time::Instant::now();
    let result = store(&hub, headers, query, body).await;
    let (outcome, result) = match result {
        Ok(response) => (PublishOutcome::Accepted, Ok(response)),
        Err(Refused::Rejected(rejection)) => {
            (PublishOutcome::Rejected(rejection.status()), Err(rejection))
        }
        Err(Refused::Failed(rejection)) => (PublishOutcome::Failed, Err(rejection)),
    };
    hub.metrics().publish_ended(outcome, started.elapsed());
    result
}

async fn store(
    hub: &Hub,
    headers: HeaderMap,
    query: Option<String>,
    body: Body,
) -> Result<Response, Refused> {
    let caller = hub
        .authorizer()
        .publisher(&headers, query.as_deref())
        .await?;
    let version = caller.edition;
    let format = body_format(&headers)?;
    let body = read_body(body, &headers, hub.config()).await?;
    if matches!(format, BodyFormat::Form) && looks_like_json(&body) {
        return Err(Rejection::bad_request(
            "the body is JSON, but its Content-Type is application/x-www-form-urlencoded (what \
             curl -d sends): add -H 'Content-Type: application/json', or send form fields \
             (-d topic=URL -d data=TEXT)",
        )
        .into());
    }
    let request = match format {
        BodyFormat::Form => PublishRequest::from_form(&body),
        BodyFormat::Json => PublishRequest::from_json(&body),
    }
    .map_err(|e| publish_error(e, &format, &body))?;
    let update = request
        .into_update_for(version)
        .map_err(|e| publish_error(e, &format, &body))?;
    let grants = &caller.claims.grants;
    authorize_topics(hub, &update, version, &grants.publish)
        .map_err(|e| {
            let subscribers_token = version == ProtocolVersion::Draft07
                && grants.publish.is_empty()
                && !grants.subscribe.is_empty();
            if subscribers_token {
                Rejection::forbidden(
                    "the token's mercure.publish claim is missing or empty: this is a \
                     subscriber's token (its mercure claim has subscribe, not publish); publish \
                     with a token whose mercure.publish lists the topics, e.g. herald token \
                     --publish '*'",
                )
            } else {
                e
            }
        })
        .map_err(|e| e.for_edition(version))?;
    let id = update.id.clone();
    hub.transport().publish(update).await.map_err(|e| {
        Refused::Failed(
            Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("update not stored: {e}"),
            )
            .with_detail(format!("{e:?}")),
        )
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
            "send the update as application/x-www-form-urlencoded fields (curl -d topic=URL \
             -d data=TEXT), or as JSON with -H 'Content-Type: application/json'",
        )
        .with_detail(format!("content type {content_type:?}"))),
    }
}

/// A form-typed body that is a JSON object or array: the tutorials' `curl -d '{"topic": ...}'`,
/// which curl sends as a form. It is refused with the fix rather than read as JSON, so that a
/// body means one thing whatever the hub (the protocol's publish body is a form).
fn looks_like_json(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii_start();
    (trimmed.starts_with(b"{") || trimmed.starts_with(b"["))
        && serde_json::from_slice::<serde_json::Value>(body).is_ok()
}

/// A body the protocol refuses, with the fix for the usual mistakes.
fn publish_error(e: herald_protocol::PublishError, format: &BodyFormat, body: &[u8]) -> Rejection {
    if matches!(e, herald_protocol::PublishError::NoTopic) {
        let topics_instead = match format {
            BodyFormat::Form => herald_protocol::form::pairs(body)
                .filter_map(Result::ok)
                .any(|(name, _)| name == "topics" || name == "topic[]"),
            BodyFormat::Json => serde_json::from_slice::<serde_json::Value>(body)
                .is_ok_and(|v| v.get("topics").is_some()),
        };
        let fix = if topics_instead {
            "the field is named \"topic\", not \"topics\" (repeat it for several topics)"
        } else {
            "add one, e.g. -d topic=https://example.com/books/1"
        };
        return Rejection::bad_request(format!("{e}: {fix}"));
    }
    if matches!(e, herald_protocol::PublishError::FieldTooLarge { .. }) {
        return Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
    }
    Rejection::bad_request(e.to_string())
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
/// [R16][V3].
fn authorize_topics(
    hub: &Hub,
    update: &Update,
    version: ProtocolVersion,
    allowed: &[TopicMatcher],
) -> Result<(), Rejection> {
    if let Some(topic) = update
        .topics
        .iter()
        .find(|t| is_reserved_topic_at(t, hub.url_base()))
    {
        let reason =
            format!("topic {topic} is in the hub's reserved namespace /.well-known/mercure/");
        return Err(match version {
            ProtocolVersion::V1 => Rejection::bad_request(reason),
            ProtocolVersion::Draft07 => Rejection::forbidden(reason),
        });
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
