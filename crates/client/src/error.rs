//! Typed errors: what went wrong, and the hub's own reason when it gave one.

use std::fmt;

/// Why a publish failed.
///
/// The HTTP refusals carry the hub's reason (the body of its response, trimmed): Herald always
/// says why it refused, other hubs sometimes do.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// 401: no token, or a token the hub cannot verify (bad signature, expired, wrong algorithm).
    #[error("the hub refused the token (401 Unauthorized){}", reason_suffix(.reason))]
    Unauthorized {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// 403: a valid token whose `mercure.publish` claim does not cover every topic of the update.
    #[error("the token may not publish to these topics (403 Forbidden){}", reason_suffix(.reason))]
    Forbidden {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// 400: the hub found the update malformed (no topic, an invalid id, a bad `retry`...).
    #[error("the hub rejected the update as malformed (400 Bad Request){}", reason_suffix(.reason))]
    BadRequest {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// 413: the update is larger than the hub's maximum body size.
    #[error("the update is larger than the hub accepts (413 Payload Too Large){}", reason_suffix(.reason))]
    TooLarge {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// Any other status that is not a success.
    #[error("the hub answered {status}{}", reason_suffix(.reason))]
    Status {
        /// The HTTP status code the hub answered.
        status: u16,
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// The hub could not be reached, or the connection failed before a complete answer.
    #[error("cannot reach the hub at {url}: {}", describe(.source))]
    Network {
        /// The URL the request was sent to.
        url: String,
        /// The HTTP client's error, with the cause (refused, timed out, TLS...).
        #[source]
        source: reqwest::Error,
    },
    /// The update cannot be sent as it is (checked before any request).
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    /// The publisher cannot be built as configured (a hub URL that is not one, no credentials).
    #[error("{0}")]
    Config(String),
    /// The publisher could not mint a token with its key.
    #[error("cannot mint a token: {0}")]
    Token(#[from] crate::token::MintError),
}

impl PublishError {
    /// The HTTP status of a refusal, `None` for a network or local error.
    pub fn status(&self) -> Option<u16> {
        match self {
            PublishError::Unauthorized { .. } => Some(401),
            PublishError::Forbidden { .. } => Some(403),
            PublishError::BadRequest { .. } => Some(400),
            PublishError::TooLarge { .. } => Some(413),
            PublishError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The hub's reason for a refusal (possibly empty), `None` for a network or local error.
    pub fn reason(&self) -> Option<&str> {
        match self {
            PublishError::Unauthorized { reason }
            | PublishError::Forbidden { reason }
            | PublishError::BadRequest { reason }
            | PublishError::TooLarge { reason }
            | PublishError::Status { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn from_status(status: u16, reason: String) -> PublishError {
        match status {
            401 => PublishError::Unauthorized { reason },
            403 => PublishError::Forbidden { reason },
            400 => PublishError::BadRequest { reason },
            413 => PublishError::TooLarge { reason },
            status => PublishError::Status { status, reason },
        }
    }
}

/// Why a subscription stopped.
///
/// A [`Subscriber`](crate::Subscriber)'s stream only yields errors it will not recover from by
/// reconnecting (a refusal of the token, a bad selector, a URL that is not a hub); after one the
/// stream ends. Network failures, server errors and streams closed by the hub are retried with
/// backoff, and reported only to [`SubscriberBuilder::on_reconnect`] or once
/// [`SubscriberBuilder::max_retries`] is exhausted.
///
/// [`SubscriberBuilder::on_reconnect`]: crate::SubscriberBuilder::on_reconnect
/// [`SubscriberBuilder::max_retries`]: crate::SubscriberBuilder::max_retries
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// 401: no token where one is required, or one the hub cannot verify.
    #[error("the hub refused the subscription (401 Unauthorized){}", reason_suffix(.reason))]
    Unauthorized {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// 403: the token is valid but does not allow this subscription.
    #[error("the subscription is forbidden (403 Forbidden){}", reason_suffix(.reason))]
    Forbidden {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// 400: a selector or a parameter the hub does not accept.
    #[error("the hub rejected the subscription as malformed (400 Bad Request){}", reason_suffix(.reason))]
    BadRequest {
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// Any other answer that is not a stream: a status, or a 200 that is not `text/event-stream`.
    #[error("the hub answered {status}{}", reason_suffix(.reason))]
    Status {
        /// The HTTP status code the hub answered.
        status: u16,
        /// The hub's reason: its response body on one line, cut at 300 characters; may be empty.
        reason: String,
    },
    /// A 200 whose content type is not `text/event-stream`: the URL is not a hub.
    #[error("{url} is not an event stream (Content-Type: {content_type})")]
    NotEventStream {
        /// The hub URL that answered.
        url: String,
        /// The `Content-Type` it answered with (empty when there was none).
        content_type: String,
    },
    /// The connection failed, or a read failed.
    #[error("cannot reach the hub at {url}: {}", describe(.source))]
    Network {
        /// The URL the request was sent to.
        url: String,
        /// The HTTP client's error, with the cause (refused, timed out, TLS...).
        #[source]
        source: reqwest::Error,
    },
    /// The hub ended the stream (it does so at the end of a subscription's lifetime, on
    /// shutdown, or when the subscriber is too slow); the subscriber reconnects.
    #[error("the hub closed the stream")]
    Closed,
    /// Nothing at all arrived for longer than the idle timeout.
    #[error("no data from the hub for {0:?}")]
    Idle(std::time::Duration),
    /// [`SubscriberBuilder::max_retries`](crate::SubscriberBuilder::max_retries) consecutive
    /// attempts failed; `last` is the last failure.
    #[error("gave up after {attempts} failed attempts: {last}")]
    GaveUp {
        /// How many consecutive attempts failed.
        attempts: u32,
        /// The failure of the last attempt.
        last: Box<SubscribeError>,
    },
    /// The subscription cannot be made as configured (no topic, an invalid URL...).
    #[error("invalid subscription: {0}")]
    Invalid(String),
}

impl SubscribeError {
    /// Whether the subscriber retries after this error (network failures, 5xx, 408, 429, closed
    /// or idle streams), rather than ending the stream.
    pub fn is_transient(&self) -> bool {
        match self {
            SubscribeError::Network { .. } | SubscribeError::Closed | SubscribeError::Idle(_) => {
                true
            }
            SubscribeError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => false,
        }
    }

    /// The HTTP status of a refusal, if the hub answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SubscribeError::Unauthorized { .. } => Some(401),
            SubscribeError::Forbidden { .. } => Some(403),
            SubscribeError::BadRequest { .. } => Some(400),
            SubscribeError::Status { status, .. } => Some(*status),
            SubscribeError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }

    pub(crate) fn from_status(status: u16, reason: String) -> SubscribeError {
        match status {
            401 => SubscribeError::Unauthorized { reason },
            403 => SubscribeError::Forbidden { reason },
            400 => SubscribeError::BadRequest { reason },
            status => SubscribeError::Status { status, reason },
        }
    }
}

/// Why discovery found no hub.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The resource could not be fetched.
    #[error("cannot fetch {url}: {}", describe(.source))]
    Network {
        /// The URL the request was sent to.
        url: String,
        /// The HTTP client's error, with the cause (refused, timed out, TLS...).
        #[source]
        source: reqwest::Error,
    },
    /// The resource answered an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The resource URL that was fetched.
        url: String,
        /// The HTTP status code it answered.
        status: u16,
    },
    /// No `Link: <...>; rel="mercure"` header.
    #[error("{url} advertises no Mercure hub (no Link header with rel=\"mercure\")")]
    NoHub {
        /// The resource URL that was fetched.
        url: String,
    },
    /// A URL that cannot be parsed.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The text given as a URL.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// An error and its sources on one line: reqwest's own message ("error sending request") says
/// little without the cause ("connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A network error in a few words: the root cause for a failed connection ("Connection
/// refused"), "timed out", else every cause.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    if error.is_connect() {
        let mut deepest: &dyn std::error::Error = error;
        while let Some(source) = deepest.source() {
            deepest = source;
        }
        return deepest.to_string();
    }
    error_chain(error)
}

/// A body read as a short, one-line reason.
pub(crate) fn reason_from_body(body: &str) -> String {
    let line = body.trim();
    let mut reason: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if line.chars().count() > 300 {
        reason.push('…');
    }
    reason
}

/// Used by `Debug` impls that must not print secrets.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
