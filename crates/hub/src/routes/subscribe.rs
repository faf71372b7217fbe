//! `GET /.well-known/mercure`: subscribe [R5]-[R11], [R25]-[R27], [V1][V4].
//!
//! The query says which edition the request speaks (`herald_protocol::subscribe`): draft-07
//! (`topic`, `lastEventID`, answered with a `Last-Event-ID` header) or 1.0 (`match*`,
//! `last_event_id`, answered with `Mercure-Last-Event-ID`); both take the `Last-Event-ID`
//! request header, which wins over the query parameter.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use herald_protocol::{Claims, LastEventId, ProtocolVersion, SubscribeRequest, TopicSelector};
use http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use http_body_util::BodyExt;
use rand::Rng;
use tokio::time::Instant;

use crate::Hub;
use crate::delivery::registry::Subscription;
use crate::delivery::stream::{EventStream, ReplayCursor, StreamTiming};
use crate::limits::ClientId;
use crate::metrics::{DisconnectReason, Metrics};
use crate::peer;
use crate::rejection::Rejection;
use crate::selector::ClientKey;
use crate::subscriptions::Presence;
use crate::transport::{IdOccurrence, ReplayStart, TransportError};

/// A validated, authorized subscribe request.
struct Subscribe {
    request: SubscribeRequest,
    /// Every selector of the request, URL patterns compiled.
    selectors: Vec<TopicSelector>,
    claims: Option<Claims>,
    /// Who pays for the subscription's templates: the token's holder, or the anonymous
    /// subscribers of its address.
    client: ClientKey,
    /// Who the per-client subscription cap counts (limits.rs).
    counted_as: ClientId,
    last_event_id: Option<LastEventId>,
}

async fn accept(
    hub: &Hub,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Subscribe, Rejection> {
    if !hub.authorizer().can_subscribe() {
        return Err(Rejection::method_not_allowed(
            "subscribing is disabled on this hub (no subscriber key and no anonymous access)",
            "POST",
        ));
    }
    // A 1.0 request is authorized first: a client without a valid token learns nothing about
    // its query (RFC 6750 answers carry no reason). A draft-07 one is parsed first, so that its
    // mistakes are named with their fix.
    let said = herald_protocol::subscribe::query_version(query.unwrap_or(""));
    let mut caller = None;
    if said == Some(ProtocolVersion::V1) {
        caller = Some(hub.authorizer().subscriber(headers, query, said).await?);
    }
    let request = SubscribeRequest::from_query(query.unwrap_or("")).map_err(|e| {
        let topics_instead = matches!(e, herald_protocol::SubscribeError::NoTopic)
            && herald_protocol::form::pairs(query.unwrap_or("").as_bytes())
                .filter_map(Result::ok)
                .any(|(name, _)| name == "topics" || name == "topic[]");
        if topics_instead {
            Rejection::bad_request(
                "missing \"topic\": the parameter is named \"topic\", not \"topics\" \
                 (repeat it for several selectors: ?topic=a&topic=b)",
            )
        } else {
            Rejection::bad_request(e.to_string())
        }
    })?;
    let selectors = request
        .selectors(hub.url_base())
        .map_err(|e| Rejection::bad_request(e.to_string()))?;
    let caller = match caller {
        Some(caller) => caller,
        None => {
            if !hub.config().anonymous
                && let Some(rejection) =
                    hub.authorizer()
                        .misplaced_token(headers, query, Some(request.version))
            {
                return Err(rejection);
            }
            // The parsed query speaks its edition: the token must agree (`auth.rs`).
            hub.authorizer()
                .subscriber(headers, query, Some(request.version))
                .await?
        }
    };
    // The header wins over the query parameter [R25]. An empty one is no reconnection (as in
    // the reference hub): it falls back to the parameter.
    let last_event_id = match headers.get("last-event-id").filter(|v| !v.is_empty()) {
        Some(value) => Some(LastEventId::parse(value.to_str().map_err(|_| {
            Rejection::bad_request("Last-Event-ID header is not valid text")
        })?)),
        None => request.last_event_id.clone(),
    };
    let token = caller.as_ref().map(|caller| caller.token.as_str());
    let address = peer::client_address(peer, headers, &hub.config().trusted_proxies);
    let client = hub.registry().patterns().client_key(token, address);
    let counted_as = hub.limits().client(address, token);
    let claims = caller.map(|caller| caller.claims);
    Ok(Subscribe {
        request,
        selectors,
        claims,
        client,
        counted_as,
        last_event_id,
    })
}

pub(super) async fn subscribe(
    State(hub): State<Hub>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    version: Version,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    let Subscribe {
        request,
        selectors,
        claims,
        client,
        counted_as,
        last_event_id,
    } = accept(&hub, peer.as_deref(), &headers, query.as_deref()).await?;
    // The request's one edition: its parameters', which its token agreed with (`auth.rs`).
    // Every answer below takes its form.
    let edition = request.version;
    // Room under the caps on open subscriptions (503, 429), held for the stream's life.
    let slot = hub.limits().admit(counted_as)?;
    let holder = hub
        .config()
        .subscriptions
        .then(|| crate::subscriptions::Holder::of(claims.as_ref()));
    let (payload, rights, expires_at) = match claims {
        Some(claims) => (
            // draft-07's payload describes every subscription of the connection; 1.0's depend
            // on the selector (`subscriptions::Holder`).
            claims
                .grants
                .payload()
                .filter(|_| edition == ProtocolVersion::Draft07)
                .cloned(),
            claims.grants.subscribe,
            claims.expires_at,
        ),
        None => (None, Vec::new(), None),
    };
    // Templates are costed and the client charged before any is compiled [R4].
    let admitted = hub.registry().patterns().admit(
        client,
        selectors,
        &rights,
        &hub.config().template_limits,
    )?;
    let lease = admitted.lease;
    let subscription = Subscription {
        selectors: admitted.selectors,
        rights: admitted.rights,
        payload,
        version: edition,
    };
    // Register before reading history, so that nothing published in between is missed [R7].
    let registration = hub.registry().register(subscription);
    let mut start = None;
    let mut replay = None;
    if let Some(from) = &last_event_id {
        Metrics::inc(&hub.metrics().replays);
        // 1.0 resumes after the oldest occurrence of a duplicated id, draft-07 after the newest.
        let occurrence = match edition {
            ProtocolVersion::V1 => IdOccurrence::Earliest,
            ProtocolVersion::Draft07 => IdOccurrence::Latest,
        };
        let unavailable = |e: TransportError| {
            Metrics::inc(&hub.metrics().transport_errors);
            Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "history is unavailable")
                .with_detail(e.to_string())
        };
        let plan = hub
            .transport()
            .replay(from, occurrence)
            .await
            .map_err(unavailable)?;
        let source = hub.transport().clone();
        let (cursor, named) = match (plan.start, plan.after, plan.head) {
            (ReplayStart::After(id), Some(anchor), Some(head)) => {
                let (anchor_event, cursor) = ReplayCursor::after_anchor(source, anchor, head)
                    .await
                    .map_err(unavailable)?;
                // [R27][V4]: never name an event the subscriber may not read (a private
                // update its token does not cover: its id would tell that it exists, and,
                // with time-ordered ids, when). No further look back for a readable one (a
                // backward-scan limit of one event, in draft-08's words): `earliest` then,
                // and the replay is the same.
                let subscription = registration.subscriber().subscription();
                let readable = anchor_event.is_some_and(|event| subscription.may_receive(&event));
                let named = if readable {
                    ReplayStart::After(id)
                } else {
                    ReplayStart::Earliest
                };
                (Some(cursor), named)
            }
            (start, after, head) => (
                head.map(|head| ReplayCursor::new(source, after, head)),
                start,
            ),
        };
        replay = cursor;
        start = Some(named);
    }
    let (ends_at, end_reason) = ends_at(hub.config().write_timeout, expires_at);
    let timing = StreamTiming {
        heartbeat: hub.config().heartbeat,
        ends_at,
        end_reason,
        drain_spread: hub.config().drain_spread,
    };
    let presence = holder.map(|holder| {
        Box::new(Presence::begin(
            hub.clone(),
            registration.subscriber(),
            &holder,
        )) as Box<dyn Send>
    });
    let direct = registration.direct_target();
    let stream = EventStream::new(registration, presence, replay, timing);
    // The client stays charged for its templates, and counted under the caps, for as long as
    // the stream lives.
    let stream = stream.map_frame(move |frame| {
        let _ = (&lease, &slot);
        frame
    });
    let mut response = Response::new(Body::new(stream));
    // Room for every header the answer gets, the layers' included (security headers, CORS,
    // `Link`), allocated once rather than grown twice on the way out.
    *response.headers_mut() = HeaderMap::with_capacity(STREAM_HEADERS);
    response.extensions_mut().insert(direct);
    set_stream_headers(response.headers_mut(), version);
    if let Some(start) = start {
        // [R27]: where this replay started.
        let value = match start {
            ReplayStart::After(id) => id,
            ReplayStart::Earliest => "earliest".to_owned(),
        };
        let name = match edition {
            ProtocolVersion::Draft07 => "last-event-id",
            ProtocolVersion::V1 => "mercure-last-event-id",
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// `HEAD`: the same checks and headers as `GET`, without opening a stream [R5].
pub(super) async fn subscribe_head(
    State(hub): State<Hub>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    version: Version,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Rejection> {
    accept(&hub, peer.as_deref(), &headers, query.as_deref()).await?;
    let mut response = Response::new(Body::from(Bytes::new()));
    set_stream_headers(response.headers_mut(), version);
    Ok(response)
}

/// How many headers an event stream's answer gets with everything on but a replay: the four
/// below, the three security headers, `Vary` and three CORS headers, and `Link` (a replay's
/// `Last-Event-ID` makes thirteen, and the map grows once).
const STREAM_HEADERS: usize = 12;

fn set_stream_headers(headers: &mut HeaderMap, version: Version) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    // Reverse proxies (nginx) must not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if version <= Version::HTTP_11 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
}

/// When a stream ends at the latest: the token's `exp`, or the jittered maximum lifetime,
/// whichever comes first [R11]; and which of the two that is, for the metrics.
///
/// `exp` is the client's number: it may be anything up to `u64::MAX` (`i64::MAX` is a common
/// "never"), so every step is checked; an instant too far to represent means no end from `exp`.
fn ends_at(
    write_timeout: Option<Duration>,
    expires_at: Option<u64>,
) -> (Option<Instant>, DisconnectReason) {
    let now = Instant::now();
    let lifetime = write_timeout.map(|max| max.mul_f64(rand::rng().random_range(0.8..=1.0)));
    let until_exp = expires_at.and_then(|exp| {
        let exp = UNIX_EPOCH.checked_add(Duration::from_secs(exp))?;
        Some(exp.duration_since(SystemTime::now()).unwrap_or_default())
    });
    let (first, reason) = match (lifetime, until_exp) {
        (Some(a), Some(b)) if b < a => (Some(b), DisconnectReason::TokenExpired),
        (None, Some(b)) => (Some(b), DisconnectReason::TokenExpired),
        (a, _) => (a, DisconnectReason::Lifetime),
    };
    (first.and_then(|d| now.checked_add(d)), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exp_at_the_end_of_time_does_not_panic() {
        // Issue 13, failure 3: `i64::MAX` as "never" overflowed the instant arithmetic.
        for exp in [i64::MAX as u64, u64::MAX, u64::MAX / 1000] {
            let end = ends_at(None, Some(exp)).0;
            assert!(end.is_none_or(|end| end > Instant::now()));
            let (capped, reason) = ends_at(Some(Duration::from_secs(60)), Some(exp));
            assert!(capped.unwrap() <= Instant::now() + Duration::from_secs(60));
            assert_eq!(reason, DisconnectReason::Lifetime);
        }
        let (end, reason) = ends_at(None, Some(0));
        assert!(end.unwrap() <= Instant::now());
        assert_eq!(reason, DisconnectReason::TokenExpired);
    }
}
