//! How a request presents its token, read without judging it: the `Authorization: Bearer`
//! value, the tokens a query may carry, a cookie, and the edition a token's header says it
//! speaks. Which of them counts, and what is refused, is the [`Authorizer`]'s (`auth.rs`).
//!
//! [`Authorizer`]: super::Authorizer

use herald_protocol::ProtocolVersion;
use herald_protocol::access_token::is_access_token_type;
use http::{HeaderMap, header};

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
pub(super) fn bearer_token(value: &str) -> Option<&str> {
    value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// The tokens a query may carry: `authorization` (draft-07 [R19]) and RFC 6750's
/// `access_token` (refused).
pub(super) struct QueryTokens {
    pub(super) authorization: Option<String>,
    pub(super) access_token: Option<String>,
}

impl QueryTokens {
    pub(super) fn read(query: Option<&str>) -> QueryTokens {
        let mut tokens = QueryTokens {
            authorization: None,
            access_token: None,
        };
        let pairs = query
            .map(|q| herald_protocol::form::raw_pairs(q.as_bytes()))
            .into_iter()
            .flatten();
        // Only the two values read here are decoded.
        for pair in pairs {
            let Ok(name) = pair.name() else { continue };
            let slot = match &*name {
                "authorization" => &mut tokens.authorization,
                "access_token" => &mut tokens.access_token,
                _ => continue,
            };
            if slot.is_none()
                && let Ok(value) = pair.value()
            {
                *slot = Some(value.into_owned());
            }
        }
        tokens
    }
}

/// Query parameters in which users put a token by mistake (other services read them).
pub(super) const MISPLACED_TOKEN_PARAMETERS: &[&str] =
    &["token", "jwt", "access_token", "bearer", "auth"];

/// The value of the cookie `name` (without its quotes), from any of the `Cookie` headers.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The edition a token speaks, read from its header before any verification: 1.0 for an access
/// token (`typ: at+jwt`), draft-07 for anything else (a token that is no JWT at all included:
/// its verification fails in the form of the request's edition).
pub(super) fn token_edition(token: &str) -> ProtocolVersion {
    let access_token = jsonwebtoken::decode_header(token)
        .is_ok_and(|header| is_access_token_type(header.typ.as_deref()));
    if access_token {
        ProtocolVersion::V1
    } else {
        ProtocolVersion::Draft07
    }
}
