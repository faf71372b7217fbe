//! Which edition of the Mercure protocol a request speaks.
//!
//! Herald serves draft-07 (what deployed applications, Symfony and API Platform speak) and
//! Mercure 1.0 (draft-dunglas-mercure-08, what the reference hub's 1.0 releases implement) on the
//! same endpoint at the same time, deciding per request, so that a team migrates its clients one
//! by one.
//!
//! The rule ([`ProtocolVersion::of_request`]) reads two things a request carries:
//! - its **parameters**, where the route has edition-specific ones: a subscribe query's 1.0
//!   parameters (`match`, `match_exact`, `match_urlpattern`, `last_event_id`) or draft-07 ones
//!   (`topic`, `lastEventID`); a subscriptions API path of three parts (1.0 only). Publishing
//!   has none.
//! - its **token**: a 1.0 access token (`typ: at+jwt`) or a draft-07 token (any other `typ`,
//!   read for its `mercure` claim).
//!
//! When both tell, they must agree: each edition defines its tokens (draft-08 "MUST verify that
//! the token header `typ` is `at+jwt`"; draft-07 reads the `mercure` claim) and its parameters
//! (draft-08 knows no `topic`), so a draft-07 query with an access token, or a 1.0 query with a
//! draft-07 token, is valid in neither edition and is refused, in the form of the edition its
//! parameters speak (401 `invalid_token` for 1.0, a draft-07 401 naming the fix). When only one
//! tells, it decides; when neither does (an anonymous publish), draft-07 answers, as the
//! deployed clients expect. Every answer of the request then takes that edition's form: the
//! stream's headers (`Mercure-Last-Event-ID` or `Last-Event-ID`), the replay after a duplicated
//! id, the errors (RFC 6750 or draft-07's reasons), its subscription events.
//!
//! Where the token is found is part of the request too (`crates/hub/src/auth.rs`): the
//! `authorization` query parameter is draft-07 only, RFC 6750's `access_token` parameter is
//! refused for 1.0; a cookie whose token speaks the other edition than the parameters is
//! ignored, as browsers send every cookie whatever the page does.

use std::fmt;

/// The edition of the protocol a request speaks, and so which answers it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProtocolVersion {
    /// draft-dunglas-mercure-07, the pre-standardization protocol of deployed clients.
    #[default]
    Draft07,
    /// Mercure 1.0, draft-dunglas-mercure-08.
    V1,
}

/// A request whose parameters and token speak different editions (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request's parameters speak {parameters} but its token is a {token} token: \
     use the parameters and the token of one edition"
)]
pub struct EditionMismatch {
    /// The edition of the request's parameters: the form its refusal takes.
    pub parameters: ProtocolVersion,
    /// The edition of its token.
    pub token: ProtocolVersion,
}

impl ProtocolVersion {
    /// The edition a request speaks, from what its parameters say (`None`: the route has none,
    /// or the request used none) and what its token says (`None`: no token). Both must agree
    /// when both tell; neither telling is draft-07.
    pub fn of_request(
        parameters: Option<ProtocolVersion>,
        token: Option<ProtocolVersion>,
    ) -> Result<ProtocolVersion, EditionMismatch> {
        match (parameters, token) {
            (Some(parameters), Some(token)) if parameters != token => {
                Err(EditionMismatch { parameters, token })
            }
            (Some(edition), _) | (None, Some(edition)) => Ok(edition),
            (None, None) => Ok(ProtocolVersion::Draft07),
        }
    }

    /// The name operators write in settings (`draft-07`, `1.0`).
    pub fn name(self) -> &'static str {
        match self {
            ProtocolVersion::Draft07 => "draft-07",
            ProtocolVersion::V1 => "1.0",
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The editions a hub serves (`--protocols draft-07,1.0`, both by default). A request or a
/// token of an edition the hub does not serve is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolSet {
    /// draft-07 requests and tokens (the `mercure` claim) are served.
    pub draft07: bool,
    /// Mercure 1.0 requests and access tokens (`typ: at+jwt`) are served.
    pub v1: bool,
}

impl Default for ProtocolSet {
    fn default() -> Self {
        ProtocolSet {
            draft07: true,
            v1: true,
        }
    }
}

impl ProtocolSet {
    /// Whether `version` is served.
    pub fn contains(self, version: ProtocolVersion) -> bool {
        match version {
            ProtocolVersion::Draft07 => self.draft07,
            ProtocolVersion::V1 => self.v1,
        }
    }

    /// Reads a comma-separated list of edition names (`draft-07`, `1.0`).
    pub fn parse(list: &str) -> Result<ProtocolSet, String> {
        let mut set = ProtocolSet {
            draft07: false,
            v1: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "draft-07" => set.draft07 = true,
                "1.0" => set.v1 = true,
                other => {
                    return Err(format!(
                        "unknown protocol {other:?}: the editions are draft-07 and 1.0"
                    ));
                }
            }
        }
        if !set.draft07 && !set.v1 {
            return Err("no protocol: name draft-07, 1.0 or both".to_owned());
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_parameters_and_token_must_agree() {
        use ProtocolVersion::{Draft07, V1};
        assert_eq!(ProtocolVersion::of_request(None, None), Ok(Draft07));
        assert_eq!(ProtocolVersion::of_request(Some(V1), None), Ok(V1));
        assert_eq!(ProtocolVersion::of_request(None, Some(V1)), Ok(V1));
        assert_eq!(ProtocolVersion::of_request(Some(V1), Some(V1)), Ok(V1));
        assert_eq!(
            ProtocolVersion::of_request(Some(Draft07), Some(Draft07)),
            Ok(Draft07)
        );
        assert_eq!(
            ProtocolVersion::of_request(Some(Draft07), Some(V1)),
            Err(EditionMismatch {
                parameters: Draft07,
                token: V1
            })
        );
        assert!(ProtocolVersion::of_request(Some(V1), Some(Draft07)).is_err());
    }
}
