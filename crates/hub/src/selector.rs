//! Topic selectors as the hub holds them: templates compiled once and shared, with their match
//! results cached [R3][R4].
//!
//! Ten thousand browsers subscribed to `https://example.com/books/{id}` share one compiled
//! [`Pattern`]; the first update on `https://example.com/books/1` runs its regex once, and every
//! later check of that (pattern, topic) pair is a hash lookup. The [`PatternTable`] interns
//! patterns by their source text so that both routing selectors and authorization selectors
//! (`mercure.subscribe`) share the same cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use herald_protocol::{TopicSelector, UriTemplate};

/// How many distinct topics one pattern remembers before it forgets them all and starts again.
/// A plain clear is crude but bounded and allocation-free on the hot path; topics in real
/// deployments repeat (a document, a user), so the cache refills with the live ones quickly.
const MATCH_CACHE_ENTRIES: usize = 4096;

/// A selector ready for matching.
#[derive(Debug, Clone)]
pub enum Selector {
    Any,
    Exact(Box<str>),
    Pattern(Arc<Pattern>),
}

impl Selector {
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Selector::Any => true,
            Selector::Exact(exact) => &**exact == topic,
            Selector::Pattern(pattern) => pattern.matches(topic),
        }
    }

    pub fn matches_any(&self, topics: &[String]) -> bool {
        topics.iter().any(|topic| self.matches(topic))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(exact) => exact,
            Selector::Pattern(pattern) => pattern.template.as_str(),
        }
    }
}

/// A URI template with a cache of its results.
#[derive(Debug)]
pub struct Pattern {
    template: UriTemplate,
    // A std Mutex: lookups are a hash probe, never held across an await.
    cache: Mutex<HashMap<Box<str>, bool>>,
}

impl Pattern {
    pub fn source(&self) -> &str {
        self.template.as_str()
    }

    pub fn matches(&self, topic: &str) -> bool {
        // A template also matches itself as a literal [R3].
        if self.template.as_str() == topic {
            return true;
        }
        let mut cache = self.cache.lock().unwrap();
        if let Some(&hit) = cache.get(topic) {
            return hit;
        }
        let hit = self.template.is_match(topic);
        if cache.len() >= MATCH_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(topic.into(), hit);
        hit
    }
}

/// Interns patterns by source text.
#[derive(Debug, Default)]
pub struct PatternTable {
    patterns: Mutex<HashMap<Box<str>, Weak<Pattern>>>,
}

impl PatternTable {
    /// Turns a parsed selector into a matchable one, sharing the compiled pattern with every
    /// other selector of the same text.
    pub fn intern(&self, selector: TopicSelector) -> Selector {
        match selector {
            TopicSelector::Any => Selector::Any,
            TopicSelector::Exact(exact) => Selector::Exact(exact.into_boxed_str()),
            TopicSelector::Template(template) => Selector::Pattern(self.pattern(template)),
        }
    }

    /// Parses and interns each of `selectors`.
    pub fn intern_all<S: AsRef<str>>(&self, selectors: &[S]) -> Vec<Selector> {
        selectors
            .iter()
            .map(|s| self.intern(TopicSelector::parse(s.as_ref())))
            .collect()
    }

    fn pattern(&self, template: UriTemplate) -> Arc<Pattern> {
        let mut patterns = self.patterns.lock().unwrap();
        if let Some(existing) = patterns.get(template.as_str()).and_then(Weak::upgrade) {
            return existing;
        }
        // Drop the entries of patterns nobody uses any more before the table grows, so that it
        // stays proportional to the live patterns (amortized: only when it would reallocate).
        if patterns.len() == patterns.capacity() {
            patterns.retain(|_, weak| weak.strong_count() > 0);
        }
        let source: Box<str> = template.as_str().into();
        let pattern = Arc::new(Pattern {
            template,
            cache: Mutex::new(HashMap::new()),
        });
        patterns.insert(source, Arc::downgrade(&pattern));
        pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_identical_templates_share_one_pattern() {
        let table = PatternTable::default();
        let a = table.intern(TopicSelector::parse("https://example.com/books/{id}"));
        let b = table.intern(TopicSelector::parse("https://example.com/books/{id}"));
        match (a, b) {
            (Selector::Pattern(a), Selector::Pattern(b)) => assert!(Arc::ptr_eq(&a, &b)),
            _ => panic!("expected patterns"),
        }
    }

    #[test]
    fn r3_cached_results_are_the_uncached_ones() {
        let table = PatternTable::default();
        let s = table.intern(TopicSelector::parse("https://example.com/books/{id}"));
        for _ in 0..2 {
            assert!(s.matches("https://example.com/books/1"));
            assert!(!s.matches("https://example.com/books/1/x"));
            assert!(s.matches("https://example.com/books/{id}"));
        }
    }
}
