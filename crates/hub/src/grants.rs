//! A token's grants as the hub matches them [R15][R20][V2].
//!
//! A verified token of either edition yields [`herald_protocol::Grants`]: lists of
//! [`TopicMatcher`]s. The hub turns them into [`Right`]s the way it turns a subscription's
//! selectors into matchers: draft-07 templates, exact topics and 1.0 URL patterns (compiled and
//! bounded when the token was read, the same `UrlPatternMatcher` as a `match_urlpattern`
//! selector) all go through the [`PatternTable`] (costed, interned, their results cached,
//! `selector.rs`), so a grant and a subscription naming the same pattern share one compiled
//! matcher.

use herald_protocol::{TopicMatcher, TopicSelector};

use crate::config::TemplateLimits;
use crate::selector::{PatternTable, Selector, TemplateRefused};

/// One thing a token allows: an interned topic selector.
#[derive(Debug, Clone)]
pub(crate) enum Right {
    Selector(Selector),
}

impl Right {
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self {
            Right::Selector(selector) => selector.matches(topic),
        }
    }

    pub(crate) fn matches_any(&self, topics: &[String]) -> bool {
        topics.iter().any(|topic| self.matches(topic))
    }
}

/// The grants as the selectors the pattern table costs and interns.
pub(crate) fn selectors(grants: &[TopicMatcher]) -> Vec<TopicSelector> {
    grants
        .iter()
        .map(|grant| match grant {
            TopicMatcher::Any => TopicSelector::Any,
            TopicMatcher::Exact(topic) => TopicSelector::Exact(topic.clone()),
            TopicMatcher::Template(template) => TopicSelector::parse(template),
            TopicMatcher::UrlPattern(pattern) => TopicSelector::UrlPattern(pattern.clone()),
        })
        .collect()
}

/// The rights of `grants`, for a one-off check (a publish, a subscriptions API request).
pub(crate) fn rights(
    table: &PatternTable,
    grants: &[TopicMatcher],
    limits: &TemplateLimits,
) -> Result<Vec<Right>, TemplateRefused> {
    Ok(table
        .intern_selectors(selectors(grants), limits)?
        .into_iter()
        .map(Right::Selector)
        .collect())
}
