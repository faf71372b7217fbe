//! Topic selectors as the hub holds them: templates compiled once and shared, with their match
//! results cached [R3][R4].
//!
//! Ten thousand browsers subscribed to `https://example.com/books/{id}` share one compiled
//! [`Pattern`]; the first update on `https://example.com/books/1` runs its regex once, and every
//! later check of that (pattern, topic) pair is a hash lookup. The [`PatternTable`] interns
//! patterns by their source text so that both routing selectors and authorization selectors
//! (`mercure.subscribe`) share the same cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The table's count of live patterns, decremented when this one is dropped.
    live: Arc<AtomicUsize>,
}

impl Drop for Pattern {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
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

/// The hub already tracks as many distinct templates as it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this hub already tracks {max} distinct topic templates, its limit")]
pub struct TooManyPatterns {
    pub max: usize,
}

/// Interns patterns by source text, up to a number of distinct live patterns.
///
/// The bound matters because a publish checks every distinct pattern once: without it, clients
/// allowed to subscribe could make every publish slower by subscribing with many different
/// templates.
#[derive(Debug)]
pub struct PatternTable {
    patterns: Mutex<HashMap<Box<str>, Weak<Pattern>>>,
    live: Arc<AtomicUsize>,
    max: usize,
}

impl PatternTable {
    /// A table allowing at most `max` distinct live patterns.
    pub fn new(max: usize) -> PatternTable {
        PatternTable {
            patterns: Mutex::new(HashMap::new()),
            live: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Turns a parsed selector into a matchable one, sharing the compiled pattern with every
    /// other selector of the same text.
    pub fn intern(&self, selector: TopicSelector) -> Result<Selector, TooManyPatterns> {
        Ok(match selector {
            TopicSelector::Any => Selector::Any,
            TopicSelector::Exact(exact) => Selector::Exact(exact.into_boxed_str()),
            TopicSelector::Template(template) => Selector::Pattern(self.pattern(template)?),
        })
    }

    /// Parses and interns each of `selectors`.
    pub fn intern_all<S: AsRef<str>>(
        &self,
        selectors: &[S],
    ) -> Result<Vec<Selector>, TooManyPatterns> {
        selectors
            .iter()
            .map(|s| self.intern(TopicSelector::parse(s.as_ref())))
            .collect()
    }

    fn pattern(&self, template: UriTemplate) -> Result<Arc<Pattern>, TooManyPatterns> {
        let mut patterns = self.patterns.lock().unwrap();
        if let Some(existing) = patterns.get(template.as_str()).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        if self.live.load(Ordering::Relaxed) >= self.max {
            return Err(TooManyPatterns { max: self.max });
        }
        // Drop the entries of patterns nobody uses any more before the table grows, so that it
        // stays proportional to the live patterns (amortized: only when it would reallocate).
        if patterns.len() == patterns.capacity() {
            patterns.retain(|_, weak| weak.strong_count() > 0);
        }
        let source: Box<str> = template.as_str().into();
        self.live.fetch_add(1, Ordering::Relaxed);
        let pattern = Arc::new(Pattern {
            template,
            cache: Mutex::new(HashMap::new()),
            live: self.live.clone(),
        });
        patterns.insert(source, Arc::downgrade(&pattern));
        Ok(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r4_identical_templates_share_one_pattern() {
        let table = PatternTable::new(100);
        let a = table
            .intern(TopicSelector::parse("https://example.com/books/{id}"))
            .unwrap();
        let b = table
            .intern(TopicSelector::parse("https://example.com/books/{id}"))
            .unwrap();
        match (a, b) {
            (Selector::Pattern(a), Selector::Pattern(b)) => assert!(Arc::ptr_eq(&a, &b)),
            _ => panic!("expected patterns"),
        }
    }

    #[test]
    fn r3_cached_results_are_the_uncached_ones() {
        let table = PatternTable::new(100);
        let s = table
            .intern(TopicSelector::parse("https://example.com/books/{id}"))
            .unwrap();
        for _ in 0..2 {
            assert!(s.matches("https://example.com/books/1"));
            assert!(!s.matches("https://example.com/books/1/x"));
            assert!(s.matches("https://example.com/books/{id}"));
        }
    }

    #[test]
    fn distinct_live_patterns_are_bounded() {
        let table = PatternTable::new(2);
        let a = table.intern(TopicSelector::parse("/a/{x}")).unwrap();
        let _b = table.intern(TopicSelector::parse("/b/{x}")).unwrap();
        // An existing pattern and exact topics are always fine.
        assert!(table.intern(TopicSelector::parse("/a/{x}")).is_ok());
        assert!(table.intern(TopicSelector::parse("/exact")).is_ok());
        assert_eq!(
            table.intern(TopicSelector::parse("/c/{x}")).unwrap_err(),
            TooManyPatterns { max: 2 }
        );
        // Once a pattern is no longer used by anyone, its place is free again.
        drop(a);
        assert!(table.intern(TopicSelector::parse("/c/{x}")).is_ok());
    }
}
