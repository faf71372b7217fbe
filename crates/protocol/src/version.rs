//! Which edition of the Mercure protocol a request speaks.
//!
//! Herald serves draft-07 (what deployed applications, Symfony and API Platform speak) and
//! Mercure 1.0 (draft-dunglas-mercure-08, what the reference hub's 1.0 releases implement) on the
//! same endpoint at the same time, deciding per request, so that a team migrates its clients one
//! by one. A request shows its edition by what it carries: 1.0 subscribe parameters (`match`,
//! `match_exact`, `match_urlpattern`, `last_event_id`), a 1.0 access token (`typ: at+jwt`) or the
//! `__Secure-mercure_access_token` cookie; draft-07 by `topic`, `lastEventID`, the
//! `authorization` query parameter or a token with a `mercure` claim. A request that mixes
//! the two is refused. Where nothing tells (an anonymous publish with neither), draft-07 answers,
//! as the deployed clients expect.

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

impl ProtocolVersion {
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
