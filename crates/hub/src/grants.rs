//! A token's grants as the hub matches them [R15][R20][V2].
//!
//! A verified token of either edition yields [`herald_protocol::Grants`]: lists of
//! [`TopicMatcher`]s. The hub turns them into [`Right`]s: draft-07 templates and exact topics go
//! through the [`PatternTable`] like subscription selectors (costed, interned, their results
//! cached, `selector.rs`), and 1.0 URL patterns, already compiled (and bounded) when the token
//! was read, are matched by `herald_protocol::url_pattern`'s one function.

use std::sync::Arc;

use herald_protocol::url_pattern::CompiledUrlPattern;
use herald_protocol::{TopicMatcher, TopicSelector};

use crate::config::TemplateLimits;
use crate::selector::{PatternTable, Selector, TemplateRefused};

/// One thing a token allows: a topic selector or a URL pattern.
#[derive(Debug, Clone)]
pub(crate) enum Right {
    Selector(Selector),
    UrlPattern(Arc<CompiledUrlPattern>),
}

impl Right {
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Right::Selector(selector) => selector.matches(topic),
            Right::UrlPattern(pattern) => pattern.matches(topic),
        }
    }

    pub(crate) fn matches_any(&self, topics: &[String]) -> bool {
        topics.iter().any(|topic| self.matches(topic))
    }
}

/// Splits grants into the selectors the pattern table costs and interns, and the URL patterns
/// that are ready to match.
pub(crate) fn split(grants: &[TopicMatcher]) -> (Vec<TopicSelector>, Vec<Right>) {
    let mut selectors = Vec::new();
    let mut ready = Vec::new();
    for grant in grants {
        match grant {
            TopicMatcher::Any => selectors.push(TopicSelector::Any),
            TopicMatcher::Exact(topic) => selectors.push(TopicSelector::Exact(topic.clone())),
            TopicMatcher::Template(template) => selectors.push(TopicSelector::parse(template)),
            TopicMatcher::UrlPattern(pattern) => ready.push(Right::UrlPattern(pattern.clone())),
        }
    }
    (selectors, ready)
}

/// The rights of `grants`, for a one-off check (a publish, a subscriptions API request).
pub(crate) fn rights(
    table: &PatternTable,
    grants: &[TopicMatcher],
    limits: &TemplateLimits,
) -> Result<Vec<Right>, TemplateRefused> {
    let (selectors, mut ready) = split(grants);
    let mut rights: Vec<Right> = table
        .intern_selectors(selectors, limits)?
        .into_iter()
        .map(Right::Selector)
        .collect();
    rights.append(&mut ready);
    Ok(rights)
}
