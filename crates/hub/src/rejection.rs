//! Refusing a request: the right status, a short reason in the body, the detail in the log [R24].
//!
//! Every handler returns `Result<_, Rejection>`. The body says what a client developer needs to
//! fix their request and nothing a client should not learn (no keys, no token contents); the
//! debug log line carries the full detail for the operator.
//!
//! Mercure 1.0 requests get the RFC 6750 forms instead [V3]: a `WWW-Authenticate: Bearer`
//! challenge with `error="invalid_request"` (400), `"invalid_token"` (401) or
//! `"insufficient_scope"` (403), or no error code when no token was presented (401), each with
//! `resource_metadata` pointing at the protected resource metadata when the hub knows its URL.
//! Their body is the error code only: one answer for every validation failure, so that a client
//! learns nothing of why its token failed; the reason is in the debug log.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use herald_protocol::ProtocolVersion;
use http::{HeaderValue, StatusCode, header};

#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    reason: String,
    detail: Option<String>,
    /// For 405: the methods that are allowed (RFC 9110 requires the `Allow` header).
    allow: Option<&'static str>,
    /// For Mercure 1.0 requests: the RFC 6750 answer, which replaces the body.
    challenge: Option<Challenge>,
    /// For a draft-07 401: the protected resource metadata to name in the challenge.
    resource_metadata: Option<Arc<str>>,
    /// For 429 and 503: when to come back, in seconds (`Retry-After`). A `u32` keeps every
    /// `Result<_, Rejection>` under clippy's large-error bound.
    retry_after: Option<u32>,
}

/// The error codes of RFC 6750, section 3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerError {
    /// 400: the token was presented wrongly (two tokens, a bad scheme, the query parameter).
    InvalidRequest,
    /// 401: the token failed validation, whatever the reason.
    InvalidToken,
    /// 403: a valid token without the grant for the operation.
    InsufficientScope,
}

impl BearerError {
    fn code(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            BearerError::InvalidRequest => StatusCode::BAD_REQUEST,
            BearerError::InvalidToken => StatusCode::UNAUTHORIZED,
            BearerError::InsufficientScope => StatusCode::FORBIDDEN,
        }
    }
}

/// An RFC 6750 `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone)]
struct Challenge {
    /// `None`: no token was presented (401, no error code).
    error: Option<BearerError>,
    /// The URL of the protected resource metadata (RFC 9728), when the hub knows its own URL.
    resource_metadata: Option<Arc<str>>,
}

impl Challenge {
    fn header(&self) -> Option<HeaderValue> {
        let mut params = Vec::new();
        if let Some(error) = self.error {
            params.push(format!("error=\"{}\"", error.code()));
        }
        if let Some(url) = &self.resource_metadata {
            params.push(format!("resource_metadata=\"{url}\""));
        }
        let value = if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        };
        HeaderValue::from_str(&value).ok()
    }
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            detail: None,
            allow: None,
            challenge: None,
            resource_metadata: None,
            retry_after: None,
        }
    }

    /// Names the protected resource metadata in a 401's challenge (RFC 9728), so that a client
    /// without a token learns where to get one, whichever edition it speaks.
    pub(crate) fn with_resource_metadata(mut self, url: Option<Arc<str>>) -> Rejection {
        self.resource_metadata = url;
        self
    }

    /// An RFC 6750 answer for a Mercure 1.0 request [V3]: `error` decides the status (`None`:
    /// no token was presented, 401); `reason` goes to the debug log only.
    pub(crate) fn bearer(
        error: Option<BearerError>,
        resource_metadata: Option<Arc<str>>,
        reason: impl Into<String>,
    ) -> Rejection {
        let status = error.map_or(StatusCode::UNAUTHORIZED, BearerError::status);
        Rejection {
            challenge: Some(Challenge {
                error,
                resource_metadata,
            }),
            ..Rejection::new(status, reason)
        }
    }

    /// For a 1.0 request, turns a 403 (a valid token without the grant) into RFC 6750's
    /// `insufficient_scope` [V3]; draft-07 requests keep the reason in the body.
    pub(crate) fn for_edition(mut self, edition: ProtocolVersion) -> Rejection {
        if edition == ProtocolVersion::V1
            && self.status == StatusCode::FORBIDDEN
            && self.challenge.is_none()
        {
            self.challenge = Some(Challenge {
                error: Some(BearerError::InsufficientScope),
                resource_metadata: None,
            });
        }
        self
    }

    /// A 405 with the methods the resource does allow.
    pub(crate) fn method_not_allowed(reason: impl Into<String>, allow: &'static str) -> Rejection {
        Rejection {
            allow: Some(allow),
            ..Rejection::new(StatusCode::METHOD_NOT_ALLOWED, reason)
        }
    }

    /// The status answered.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Adds detail for the debug log only.
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Rejection {
        self.detail = Some(detail.into());
        self
    }

    /// Tells the client to come back in `seconds` (`Retry-After`).
    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Rejection {
        self.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        self
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, reason)
    }

    pub(crate) fn unauthorized(reason: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::UNAUTHORIZED, reason)
    }

    pub(crate) fn forbidden(reason: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::FORBIDDEN, reason)
    }
}

impl From<crate::selector::TooManyPatterns> for Rejection {
    fn from(e: crate::selector::TooManyPatterns) -> Rejection {
        Rejection::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        tracing::debug!(
            status = self.status.as_u16(),
            reason = %self.reason,
            detail = self.detail.as_deref().unwrap_or(""),
            "request rejected"
        );
        if let Some(challenge) = &self.challenge {
            let body = match challenge.error {
                Some(error) => error.code(),
                None => "access token required",
            };
            let mut response = (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                format!("{body}\n"),
            )
                .into_response();
            if let Some(value) = challenge.header() {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            return response;
        }
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            format!("{}\n", self.reason),
        )
            .into_response();
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            let challenge = Challenge {
                error: None,
                resource_metadata: self.resource_metadata,
            };
            if let Some(value) = challenge.header() {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}
