//! Refusing a request: the right status, a short reason in the body, the detail in the log [R24].
//!
//! Every handler returns `Result<_, Rejection>`. The body says what a client developer needs to
//! fix their request and nothing a client should not learn (no keys, no token contents); the
//! debug log line carries the full detail for the operator.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    reason: String,
    detail: Option<String>,
    /// For 405: the methods that are allowed (RFC 9110 requires the `Allow` header).
    allow: Option<&'static str>,
    /// For 429 and 503: when to come back, in seconds (`Retry-After`).
    retry_after: Option<u64>,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
            detail: None,
            allow: None,
            retry_after: None,
        }
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
        self.retry_after = Some(seconds);
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
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
