//! The Mercure protocol as pure data and functions.
//!
//! This crate owns everything about Mercure that can be decided without a socket, a clock-driven
//! task or a runtime: what an [`Update`] is and how it is framed as a Server-Sent Event
//! ([`sse`]), how a topic selector matches a topic ([`TopicSelector`], [`template`]), how a
//! publish request body or a subscribe query is read ([`publish`], [`subscribe`]), what a
//! JSON Web Token grants ([`token`], [`access_token`] for Mercure 1.0) and which key of a JSON Web Key Set verifies it ([`jwks`]).
//!
//! It must not depend on tokio, hyper or axum: the hub (`herald-hub`), the client and the fuzz
//! targets all build on it, and keeping it pure keeps it easy to test exhaustively. Requirement
//! ids such as `[R9]` refer to the project's protocol checklist (docs/protocol.md).

pub mod access_token;
pub mod form;
pub mod jwks;
pub mod publish;
pub mod selector;
pub mod sse;
pub mod subscribe;
pub mod template;
pub mod token;
pub mod update;
pub mod url_pattern;
pub mod version;

pub use access_token::{Grants, PayloadGrant, TokenRules, TopicMatcher};
pub use jwks::{JwksError, KeySet};
pub use publish::{PublishError, PublishRequest};
pub use selector::{MatchType, TopicSelector};
pub use subscribe::{LastEventId, SubscribeError, SubscribeRequest};
pub use template::{MatchCache, TemplateCost, TemplateError, TemplateSource, UriTemplate};
pub use token::{Algorithm, Claims, KeyError, MercureClaim, TokenError, TokenVerifier};
pub use update::{Update, generate_id, is_reserved_topic, is_reserved_topic_at};
pub use url_pattern::{UrlPatternError, UrlPatternMatcher};
pub use version::{EditionMismatch, ProtocolSet, ProtocolVersion};

/// The path of the hub endpoint [R1].
pub const HUB_PATH: &str = "/.well-known/mercure";

/// The most topics one update or one subscription may carry [R6][R17] (the reference hub's limit).
pub const MAX_TOPICS: usize = 1000;
