//! Topic selectors as the hub holds them: templates costed, compiled once and shared, with their
//! match results cached [R3][R4]. Mercure 1.0 URL patterns [V1] take the same path: they arrive
//! compiled within bounds (`herald_protocol::url_pattern`), their measured size is their cost
//! under the same limits, and they are interned apart from templates ([`PatternKey`]: the same
//! text means different things as a template and as a URL pattern).
//!
//! Ten thousand browsers subscribed to `https://example.com/books/{id}` share one compiled
//! [`Pattern`], whose matcher runs once per topic of an update. Costly patterns also cache
//! their results, so that a later check of the same (pattern, topic) pair is a hash lookup;
//! cheap ones answer as fast without. The [`PatternTable`]
//! interns patterns by their source text so that both routing selectors and authorization
//! selectors (`mercure.subscribe`) share the same compiled matcher and cache.
//!
//! # What one client can cost
//!
//! Templates come from anonymous query strings, so every template is costed from its parsed
//! form before anything is compiled ([`herald_protocol::TemplateCost`]: an upper bound on the
//! compiled matcher's bytes, which also bounds compile time and the worst per-byte match time).
//! [`PatternTable::admit`] then checks, still without compiling, three limits
//! ([`TemplateLimits`](crate::config::TemplateLimits)):
//! - one template's cost (400, with what to simplify);
//! - the distinct templates of one request together (400);
//! - the distinct templates one client keeps alive together, over all its subscriptions (429).
//!   A client is its token (a hash of it); an anonymous subscriber is its address (an IPv4
//!   address or an IPv6 /64, `peer.rs`; anonymous subscribers whose address is unknown share
//!   one budget), and a template already live for a client costs it nothing more, so many
//!   anonymous subscribers of the same few templates never reach it.
//!
//! # Memory
//!
//! Per live pattern: the matcher (at most its cost), its lazy DFA cache (capped at its cost or
//! 32 KiB, whichever is more, and grown only as topics need it), a PikeVM's state (in
//! proportion to the matcher) and, for costly ones, its cached results. The results of all
//! patterns together are capped at [`RESULT_CACHE_BYTES`](pattern::RESULT_CACHE_BYTES) (a pattern that would pass the cap
//! first forgets its own results, and caches nothing more while the others hold the rest);
//! everything is freed when the last subscription using the pattern ends.
//! So the templates of one client hold at most about twice `max_client_cost` plus 32 KiB per
//! template, and since the cheapest template costs 7 KiB, that is at most about 100 MB for the
//! default 16 MiB (1,530 cheap templates measured 36 MB, docs/benchmarks.md).
//!
//! # Where
//!
//! This file holds what a selector is ([`Selector`], and the [`PatternKey`] patterns are
//! interned by); `pattern.rs` one compiled pattern with its cached results and their budget;
//! `table.rs` the table that interns patterns and admits them against the limits above.

// Budgets add up what clients asked for: saturating arithmetic only.
#![deny(clippy::arithmetic_side_effects)]

mod pattern;
mod table;

use std::sync::Arc;

use herald_protocol::MatchType;

pub(crate) use pattern::Pattern;
pub(crate) use table::{ClientKey, PatternTable, TemplateRefused, TooManyPatterns};

/// A selector ready for matching.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    Any,
    Exact(Box<str>),
    Pattern(Arc<Pattern>),
}

impl Selector {
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(exact) => &**exact == topic,
            Selector::Pattern(pattern) => pattern.matches(topic),
        }
    }

    pub(crate) fn matches_any(&self, topics: &[String]) -> bool {
        topics.iter().any(|topic| self.matches(topic))
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(exact) => exact,
            Selector::Pattern(pattern) => pattern.source(),
        }
    }

    /// The 1.0 matcher type this selector is reported as in subscription events [V5]: URL
    /// patterns are `urlpattern`, everything else (draft-07 templates too) `exact`.
    pub(crate) fn match_type(&self) -> MatchType {
        match self {
            Selector::Pattern(pattern) if pattern.key().kind == PatternKind::UrlPattern => {
                MatchType::UrlPattern
            }
            _ => MatchType::Exact,
        }
    }
}

/// The kinds of compiled patterns: the same text means different things in each, so they are
/// interned apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PatternKind {
    /// A draft-07 RFC 6570 URI template.
    Template,
    /// A Mercure 1.0 WHATWG URL Pattern.
    UrlPattern,
}

/// What patterns are interned and grouped by: their kind and their text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PatternKey {
    pub(crate) kind: PatternKind,
    pub(crate) source: Box<str>,
}

impl PatternKey {
    fn new(kind: PatternKind, source: &str) -> PatternKey {
        PatternKey {
            kind,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests;
