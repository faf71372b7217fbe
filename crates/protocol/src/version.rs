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
