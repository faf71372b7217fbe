//! Who is asking: finding the token, verifying it, and the CSRF guard for cookies [R18]-[R22],
//! for both editions of the protocol [V2][V3].
//!
//! The token is read from, in order [R19]: the `Authorization: Bearer` header; the
//! `authorization` query parameter (draft-07 only); the cookie (`__Secure-mercure_access_token`
//! for 1.0, then the configured draft-07 cookie). With a header present the others are ignored
//! (a browser sends its cookies whatever the page does, so a cookie beside a header is no
//! mistake of the client). Reading each place is `auth/presentation.rs`'s; which one counts, and
//! what is refused, is this file's.
//!
//! Which edition a request speaks is decided by one rule, `ProtocolVersion::of_request`
//! (`herald_protocol::version`): the route's parameters (a subscribe query's, read by
//! `herald_protocol::subscribe::query_version`; a subscriptions API path of three parts) and the
//! token (`typ: at+jwt` is 1.0, read from its header before verifying) must agree when both
//! tell; one alone decides; neither is draft-07. [`Authorizer::present`] applies it to the
//! token it finds, and refuses a mismatch in the form of the parameters' edition; routes read
//! the result from [`Caller::edition`] or [`Authorizer::edition`] and answer in that form.
//!
//! A 1.0 request gets the RFC 6750 answers (`rejection.rs`) and may not present its token in the
//! query (400 `invalid_request`: URLs end up in logs), nor send two `Authorization` headers or a
//! header beside a query token; the `access_token` query parameter of RFC 6750 is refused for
//! the same reason. A cookie whose token speaks the other edition than the parameters is
//! skipped (a browser sends them all). draft-07 requests keep their answers, which name the fix
//! for the usual mistakes: a token without `Bearer `, a token signed with another key, a token
//! in a query parameter the hub does not read ([`Authorizer::misplaced_token`]), a browser's
//! cookie not sent, a 1.0 access token on a draft-07 query.
//!
//! A publish authenticated by cookie must come from an allowed `Origin` (or `Referer`) [R22]:
//! a cookie is sent by the browser whoever wrote the page, so without this check any site could
//! publish in the name of a logged-in user. Subscribing is a safe `GET` (and reading the
//! response cross-site is what CORS guards), so it has no such check, as in the reference hub.

mod presentation;

use std::sync::Arc;

use herald_protocol::{Claims, ProtocolVersion, TokenRules};
use http::{HeaderMap, header};

use self::presentation::{
    MISPLACED_TOKEN_PARAMETERS, QueryTokens, bearer_token, cookie, token_edition,
};
use crate::config::Verifiers;
use crate::jwks::KeySource;
use crate::rejection::{BearerError, Rejection};

/// The cookie a Mercure 1.0 browser client presents its access token in [V2].
pub(crate) const V1_COOKIE: &str = "__Secure-mercure_access_token";

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Header,
    Query,
    Cookie,
}

/// A token as the request presented it, and the edition the request speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Presented {
    pub token: String,
    pub source: TokenSource,
    pub edition: ProtocolVersion,
}

/// A caller whose token verified.
#[derive(Debug)]
pub(crate) struct Caller {
    pub claims: Claims,
    /// The token as presented (what the caller is charged by, see `selector.rs`).
    pub token: String,
    /// The edition the request speaks, which decides the form of later refusals.
    pub edition: ProtocolVersion,
}

/// What the authorizer needs beyond the keys: the 1.0 rules of each role and the hub's
/// protected resource metadata URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessSettings {
    pub publisher_rules: TokenRules,
    pub subscriber_rules: TokenRules,
    pub resource_metadata: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct Authorizer {
    verifiers: Verifiers,
    cookie_name: String,
    publish_origins: Vec<String>,
    anonymous: bool,
    access: AccessSettings,
}

impl Authorizer {
    pub(crate) fn new(
        verifiers: Verifiers,
        cookie_name: String,
        publish_origins: Vec<String>,
        anonymous: bool,
        access: AccessSettings,
    ) -> Authorizer {
        Authorizer {
            verifiers,
            cookie_name,
            publish_origins,
            anonymous,
            access,
        }
    }

    pub(crate) fn can_subscribe(&self) -> bool {
        self.anonymous || self.verifiers.subscriber.is_some()
    }

    /// The URL of the protected resource metadata, when the hub knows its own URL.
    pub(crate) fn resource_metadata(&self) -> Option<Arc<str>> {
        self.access.resource_metadata.clone()
    }

    /// The publisher, or why it may not publish [R15][R22][V3]. Nothing in a publish request
    /// but its token tells its edition, so a publish without a token gets draft-07's answer
    /// (with the metadata URL in its challenge).
    pub(crate) async fn publisher(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Caller, Rejection> {
        let verifier = self.verifiers.publisher.as_ref().ok_or_else(|| {
            Rejection::method_not_allowed(
                "publishing is disabled on this hub (it has no publisher key)",
                "GET, HEAD",
            )
        })?;
        let presented = self.present(headers, query, None)?.ok_or_else(|| {
            Rejection::unauthorized(
                "no token: publishing needs a JWT in an \"Authorization: Bearer <token>\" \
                     header (curl -H \"Authorization: Bearer $TOKEN\"), the \"authorization\" \
                     query parameter or the cookie",
            )
            .with_resource_metadata(self.resource_metadata())
            .with_detail("publish request without a token")
        })?;
        if presented.source == TokenSource::Cookie {
            self.check_publish_origin(headers)?;
        }
        self.verify(
            verifier,
            &self.access.publisher_rules,
            presented,
            "publisher",
        )
        .await
    }

    /// The subscriber (`None` for an anonymous one), or why it may not subscribe
    /// [R18][R21][V3]. `said` is the edition the request's parameters speak, if they tell.
    pub(crate) async fn subscriber(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        said: Option<ProtocolVersion>,
    ) -> Result<Option<Caller>, Rejection> {
        match self.present(headers, query, said)? {
            None if self.anonymous => Ok(None),
            None if said == Some(ProtocolVersion::V1) => Err(Rejection::bearer(
                None,
                self.resource_metadata(),
                "subscribe request without a token, and anonymous subscribers are not allowed",
            )),
            None => {
                // From a browser, the usual cause is a cookie the browser did not send.
                let browser_hint = if headers.contains_key(header::ORIGIN) {
                    format!(
                        "; a browser sends the {} cookie only with new EventSource(url, \
                         {{withCredentials: true}}), to a hub that lists the page's origin with \
                         --cors-origin (not *)",
                        self.cookie_name
                    )
                } else {
                    String::new()
                };
                Err(Rejection::unauthorized(format!(
                    "no token: this hub does not allow anonymous subscribers; send a JWT in an \
                     \"Authorization: Bearer\" header, the \"authorization\" query parameter or \
                     the cookie{browser_hint}"
                ))
                .with_resource_metadata(self.resource_metadata())
                .with_detail("subscribe request without a token"))
            }
            Some(presented) => {
                let Some(verifier) = self.verifiers.subscriber.as_ref() else {
                    let detail = format!("token from {:?} but no subscriber key", presented.source);
                    return Err(match presented.edition {
                        ProtocolVersion::V1 => Rejection::bearer(
                            Some(BearerError::InvalidToken),
                            self.resource_metadata(),
                            detail,
                        ),
                        ProtocolVersion::Draft07 => Rejection::unauthorized(
                            "this hub has no subscriber key and cannot verify tokens: subscribe \
                             without one",
                        )
                        .with_detail(detail),
                    });
                };
                self.verify(
                    verifier,
                    &self.access.subscriber_rules,
                    presented,
                    "subscriber",
                )
                .await
                .map(Some)
            }
        }
    }

    async fn verify(
        &self,
        verifier: &KeySource,
        rules: &TokenRules,
        presented: Presented,
        role: &str,
    ) -> Result<Caller, Rejection> {
        let Presented {
            token,
            source,
            edition,
        } = presented;
        match verifier.verify(&token, rules).await {
            Ok(claims) => {
                if claims.edition == ProtocolVersion::V1 {
                    tracing::debug!(
                        sub = claims.subject.as_deref().unwrap_or(""),
                        client_id = claims.client_id.as_deref().unwrap_or(""),
                        jti = claims.token_id.as_deref().unwrap_or(""),
                        iss = claims.issuer.as_deref().unwrap_or(""),
                        "access token verified"
                    );
                }
                Ok(Caller {
                    claims,
                    token,
                    edition,
                })
            }
            Err(e) => Err(match edition {
                ProtocolVersion::V1 => Rejection::bearer(
                    Some(BearerError::InvalidToken),
                    self.resource_metadata(),
                    format!("token from {source:?}: {e}"),
                ),
                ProtocolVersion::Draft07 => {
                    Rejection::unauthorized(format!("invalid token: {e}{}", token_fix(&e, role)))
                        .with_detail(format!("token from {source:?}: {e:?}"))
                }
            }),
        }
    }

    /// Finds the token, in the order of [R19], and the edition the request speaks: `said` is
    /// what the route's parameters say (`None`: they do not tell), and the token must agree
    /// ([`ProtocolVersion::of_request`], the one rule; see `herald_protocol::version`).
    pub(crate) fn present(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        said: Option<ProtocolVersion>,
    ) -> Result<Option<Presented>, Rejection> {
        let invalid_request = |reason: &str| {
            Rejection::bearer(
                Some(BearerError::InvalidRequest),
                self.resource_metadata(),
                reason.to_owned(),
            )
        };
        // The edition a request presenting `token` would speak before the two are checked to
        // agree: what decides how the token may be presented.
        let speaks = |token: Option<&str>| {
            said.or(token.map(token_edition))
                .unwrap_or(ProtocolVersion::Draft07)
        };
        let query_tokens = QueryTokens::read(query);
        // RFC 6750's query parameter is refused for 1.0 requests; for draft-07 ones it is a
        // parameter the hub does not read (see `misplaced_token`).
        if let Some(token) = query_tokens.access_token.as_deref()
            && speaks(Some(token)) == ProtocolVersion::V1
        {
            return Err(invalid_request(
                "the access_token query parameter is not accepted: send the token in an \
                 Authorization: Bearer header or the __Secure-mercure_access_token cookie",
            ));
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        if let Some(first) = values.next() {
            let value = first.to_str().unwrap_or("");
            let token = bearer_token(value);
            let several = values.next().is_some();
            // An access token behind another scheme (`Basic`) is a 1.0 client's mistake.
            let credential = value.split_once(' ').map_or(value, |(_, rest)| rest).trim();
            if speaks(token.or(Some(credential))) == ProtocolVersion::V1 {
                if several {
                    return Err(invalid_request("two Authorization headers"));
                }
                if token.is_none() {
                    return Err(invalid_request(
                        "Authorization header is not \"Bearer <token>\"",
                    ));
                }
                if query_tokens.authorization.is_some() {
                    return Err(invalid_request(
                        "a token in both the Authorization header and the query",
                    ));
                }
            }
            let token = token.ok_or_else(|| {
                let value = first.to_str().unwrap_or("").trim();
                if value.starts_with("eyJ") && value.matches('.').count() == 2 {
                    Rejection::unauthorized(
                        "the Authorization header holds a token without the \"Bearer \" prefix: \
                         send \"Authorization: Bearer <token>\"",
                    )
                } else {
                    Rejection::unauthorized(
                        "malformed Authorization header: expected \"Bearer <token>\"",
                    )
                }
            })?;
            return Ok(Some(Presented {
                edition: self.agree(said, token, TokenSource::Header)?,
                token: token.to_owned(),
                source: TokenSource::Header,
            }));
        }
        if let Some(token) = query_tokens.authorization {
            if speaks(Some(&token)) == ProtocolVersion::V1 {
                return Err(invalid_request(
                    "the authorization query parameter is a draft-07 form, refused for Mercure \
                     1.0 requests: send the token in an Authorization: Bearer header or the \
                     __Secure-mercure_access_token cookie",
                ));
            }
            return Ok(Some(Presented {
                edition: self.agree(said, &token, TokenSource::Query)?,
                token,
                source: TokenSource::Query,
            }));
        }
        // The 1.0 cookie first. A cookie whose token speaks the other edition than the
        // parameters is skipped: browsers send every cookie whatever the page does, so a page
        // migrated to 1.0 may still carry the draft-07 cookie, and the other way round.
        for name in [V1_COOKIE, self.cookie_name.as_str()] {
            if let Some(token) = cookie(headers, name) {
                let edition = token_edition(&token);
                if said.is_some_and(|said| said != edition) {
                    tracing::debug!(cookie = name, "cookie of the other edition ignored");
                    continue;
                }
                return Ok(Some(Presented {
                    token,
                    source: TokenSource::Cookie,
                    edition,
                }));
            }
        }
        Ok(None)
    }

    /// The edition of a request whose parameters say `said` and whose token is `token`, or the
    /// refusal of a request whose two disagree, in the form of its parameters' edition.
    fn agree(
        &self,
        said: Option<ProtocolVersion>,
        token: &str,
        source: TokenSource,
    ) -> Result<ProtocolVersion, Rejection> {
        ProtocolVersion::of_request(said, Some(token_edition(token))).map_err(|mismatch| {
            let detail = format!("token from {source:?}: {mismatch}");
            match mismatch.parameters {
                // draft-08: a token whose `typ` is not `at+jwt` fails validation.
                ProtocolVersion::V1 => Rejection::bearer(
                    Some(BearerError::InvalidToken),
                    self.resource_metadata(),
                    detail,
                ),
                ProtocolVersion::Draft07 => Rejection::unauthorized(
                    "this is a Mercure 1.0 access token (typ at+jwt) on a draft-07 request: \
                     subscribe with the 1.0 parameters (match=, match_urlpattern=, \
                     last_event_id=) instead of topic= and lastEventID=, or present a draft-07 \
                     token (with a mercure claim)",
                )
                .with_resource_metadata(self.resource_metadata())
                .with_detail(detail),
            }
        })
    }

    /// The edition a request speaks, for routes whose parameters may not tell (publishing, the
    /// subscriptions API): `said` when they do, else its token's; a request whose token cannot
    /// be found (or is refused) speaks `said`, or draft-07.
    pub(crate) fn edition(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        said: Option<ProtocolVersion>,
    ) -> ProtocolVersion {
        match self.present(headers, query, said) {
            Ok(Some(presented)) => presented.edition,
            // A refused presentation is refused again, in its edition's form, when the route
            // authorizes the request.
            Ok(None) | Err(_) => said.unwrap_or(ProtocolVersion::Draft07),
        }
    }

    /// A request that carries no token where the hub reads one [R19], but has one in a query
    /// parameter of another name (`?token=...`): refused with where to put it (a draft-07
    /// answer; `said` as for [`Authorizer::present`], which refuses 1.0 requests' query tokens
    /// itself).
    pub(crate) fn misplaced_token(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        said: Option<ProtocolVersion>,
    ) -> Option<Rejection> {
        if !matches!(self.present(headers, query, said), Ok(None)) {
            return None;
        }
        let name = herald_protocol::form::raw_pairs(query?.as_bytes())
            .filter_map(|pair| pair.name().ok())
            .find(|name| MISPLACED_TOKEN_PARAMETERS.contains(&name.as_ref()))?;
        Some(
            Rejection::unauthorized(format!(
                "the token is in the \"{name}\" query parameter, which the hub does not read: \
                 send it in an \"Authorization: Bearer <token>\" header, or as \
                 ?authorization=<token>"
            ))
            .with_detail(format!("token in ?{name}=")),
        )
    }

    /// The CSRF guard: `Origin`, else `Referer`'s origin, must be an allowed publish origin.
    fn check_publish_origin(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(header::REFERER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(origin_of)
            });
        let Some(origin) = origin else {
            return Err(Rejection::forbidden(
                "cookie authentication needs an Origin or Referer header (CSRF protection)",
            )
            .with_detail("cookie-authenticated publish without Origin or Referer"));
        };
        if self.publish_origins.contains(&origin) {
            Ok(())
        } else {
            Err(Rejection::forbidden(format!(
                "origin {origin} may not publish with cookie authentication (not a publish origin)"
            ))
            .with_detail(format!(
                "origin {origin} not in publish origins {:?}",
                self.publish_origins
            )))
        }
    }
}

/// What to do about a token the hub refused, for the usual causes (draft-07 answers).
fn token_fix(e: &herald_protocol::TokenError, role: &str) -> String {
    use herald_protocol::TokenError;
    match e {
        TokenError::BadSignature => format!(
            ": it was signed with another key than this hub's {role} key (a hub with separate \
             publisher and subscriber keys refuses one role's token for the other); mint it with \
             the hub's {role} key"
        ),
        TokenError::Expired => ": its exp claim is in the past; mint a new one".to_owned(),
        TokenError::Malformed(_) => {
            ": send the JWT itself (three base64url parts separated by dots), without quotes"
                .to_owned()
        }
        _ => String::new(),
    }
}

/// `scheme://authority` of a URL, as browsers write `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests;
