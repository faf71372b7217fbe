//! Who is asking: finding the token, verifying it, and the CSRF guard for cookies [R18]-[R22].
//!
//! The token is read from, in order [R19]: the `Authorization: Bearer` header; the
//! `authorization` query parameter; the cookie. With a header present the others are ignored.
//! A publish authenticated by cookie must come from an allowed `Origin` (or `Referer`) [R22]:
//! a cookie is sent by the browser whoever wrote the page, so without this check any site could
//! publish in the name of a logged-in user. Subscribing is a safe `GET` (and reading the
//! response cross-site is what CORS guards), so it has no such check, as in the reference hub.

use herald_protocol::Claims;
use http::{HeaderMap, header};

use crate::config::Verifiers;
use crate::jwks::KeySource;
use crate::rejection::Rejection;

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenSource {
    Header,
    Query,
    Cookie,
}

#[derive(Debug)]
pub(crate) struct Authorizer {
    verifiers: Verifiers,
    cookie_name: String,
    publish_origins: Vec<String>,
    anonymous: bool,
}

impl Authorizer {
    pub(crate) fn new(
        verifiers: Verifiers,
        cookie_name: String,
        publish_origins: Vec<String>,
        anonymous: bool,
    ) -> Authorizer {
        Authorizer {
            verifiers,
            cookie_name,
            publish_origins,
            anonymous,
        }
    }

    pub(crate) fn can_subscribe(&self) -> bool {
        self.anonymous || self.verifiers.subscriber.is_some()
    }

    /// The claims of the publisher, or why it may not publish [R15][R22].
    pub(crate) async fn publisher(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Claims, Rejection> {
        let verifier = self.verifiers.publisher.as_ref().ok_or_else(|| {
            Rejection::method_not_allowed(
                "publishing is disabled on this hub (it has no publisher key)",
                "GET, HEAD",
            )
        })?;
        let (token, source) =
            find_token(headers, query_token, &self.cookie_name)?.ok_or_else(|| {
                Rejection::unauthorized(
                    "no token: publishing needs a JWT in an \"Authorization: Bearer <token>\" \
                     header (curl -H \"Authorization: Bearer $TOKEN\"), the \"authorization\" \
                     query parameter or the cookie",
                )
                .with_detail("publish request without a token")
            })?;
        if source == TokenSource::Cookie {
            self.check_publish_origin(headers)?;
        }
        verify(verifier, &token, source, "publisher").await
    }

    /// The claims of the subscriber (`None` for an anonymous one), or why it may not subscribe
    /// [R18][R21].
    pub(crate) async fn subscriber(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Option<Claims>, Rejection> {
        match find_token(headers, query_token, &self.cookie_name)? {
            None if self.anonymous => Ok(None),
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
                .with_detail("subscribe request without a token"))
            }
            Some((token, source)) => {
                let verifier = self.verifiers.subscriber.as_ref().ok_or_else(|| {
                    Rejection::unauthorized(
                        "this hub has no subscriber key and cannot verify tokens: subscribe \
                         without one",
                    )
                    .with_detail(format!("token from {source:?} but no subscriber key"))
                })?;
                verify(verifier, &token, source, "subscriber")
                    .await
                    .map(Some)
            }
        }
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

async fn verify(
    verifier: &KeySource,
    token: &str,
    source: TokenSource,
    role: &str,
) -> Result<Claims, Rejection> {
    verifier.verify(token).await.map_err(|e| {
        Rejection::unauthorized(format!("invalid token: {e}{}", token_fix(&e, role)))
            .with_detail(format!("token from {source:?}: {e:?}"))
    })
}

/// What to do about a token the hub refused, for the usual causes.
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

/// Query parameters in which users put a token by mistake (other services read them).
const MISPLACED_TOKEN_PARAMETERS: &[&str] = &["token", "jwt", "access_token", "bearer", "auth"];

/// A request that carries no token where the hub reads one [R19], but has one in a query
/// parameter of another name (`?token=...`): refused with where to put it.
pub(crate) fn misplaced_token(
    headers: &HeaderMap,
    query: Option<&str>,
    cookie_name: &str,
) -> Option<Rejection> {
    if !matches!(
        find_token(headers, query_token(query).as_deref(), cookie_name),
        Ok(None)
    ) {
        return None;
    }
    let name = herald_protocol::form::pairs(query?.as_bytes())
        .filter_map(Result::ok)
        .map(|(name, _)| name)
        .find(|name| MISPLACED_TOKEN_PARAMETERS.contains(&name.as_str()))?;
    Some(
        Rejection::unauthorized(format!(
            "the token is in the \"{name}\" query parameter, which the hub does not read: send \
             it in an \"Authorization: Bearer <token>\" header, or as ?authorization=<token>"
        ))
        .with_detail(format!("token in ?{name}=")),
    )
}

/// The `authorization` query parameter, where a token may be sent [R19].
pub(crate) fn query_token(query: Option<&str>) -> Option<String> {
    herald_protocol::form::pairs(query?.as_bytes())
        .filter_map(Result::ok)
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value)
}

/// Finds the token in the request, in the order of [R19].
pub(crate) fn find_token(
    headers: &HeaderMap,
    query_token: Option<&str>,
    cookie_name: &str,
) -> Result<Option<(String, TokenSource)>, Rejection> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                let bare_jwt = value.trim().starts_with("eyJ") && value.matches('.').count() == 2;
                if bare_jwt {
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
        return Ok(Some((token.to_owned(), TokenSource::Header)));
    }
    if let Some(token) = query_token {
        return Ok(Some((token.to_owned(), TokenSource::Query)));
    }
    Ok(cookie(headers, cookie_name).map(|token| (token, TokenSource::Cookie)))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// `scheme://authority` of a URL, as browsers write `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn r19_header_wins_then_query_then_cookie() {
        let all = headers(&[
            (header::AUTHORIZATION, "Bearer h"),
            (header::COOKIE, "a=b; mercureAuthorization=c"),
        ]);
        let found = find_token(&all, Some("q"), "mercureAuthorization").unwrap();
        assert_eq!(found, Some(("h".into(), TokenSource::Header)));
        let no_header = headers(&[(header::COOKIE, "mercureAuthorization=c")]);
        let found = find_token(&no_header, Some("q"), "mercureAuthorization").unwrap();
        assert_eq!(found, Some(("q".into(), TokenSource::Query)));
        let found = find_token(&no_header, None, "mercureAuthorization").unwrap();
        assert_eq!(found, Some(("c".into(), TokenSource::Cookie)));
        assert_eq!(find_token(&HeaderMap::new(), None, "x").unwrap(), None);
    }

    #[test]
    fn r19_non_bearer_header_is_refused() {
        let basic = headers(&[(header::AUTHORIZATION, "Basic abc")]);
        assert!(find_token(&basic, None, "c").is_err());
    }

    #[test]
    fn referer_gives_its_origin() {
        assert_eq!(
            origin_of("https://example.com:8443/page?x=1").as_deref(),
            Some("https://example.com:8443")
        );
        assert_eq!(origin_of("nonsense"), None);
    }
}
