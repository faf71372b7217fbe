//! [`Pattern`]: one compiled template or URL pattern, shared by every selector and grant that
//! names it, with the cache of its match results and the budget ([`ResultBudget`]) that caps the
//! results of all patterns together. The table (`table.rs`) makes and interns them; this file
//! owns what one costs once it is live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use herald_protocol::{MatchCache, UriTemplate, UrlPatternMatcher};

use super::{PatternKey, PatternKind};

/// How many distinct topics one pattern remembers before it forgets them all and starts again.
/// A plain clear is crude but bounded and allocation-free on the hot path; topics in real
/// deployments repeat (a document, a user), so the cache refills with the live ones quickly.
const MATCH_CACHE_ENTRIES: usize = 4096;

/// Templates cheaper than this (bytes of [`herald_protocol::TemplateCost`]) do not cache their
/// results: their matcher, a lazy DFA whose states are already built for the topics' shapes,
/// answers in about the time of a hash lookup (0.1 us for a 30-byte topic), and remembering
/// each new topic would cost an allocation per pattern.
const CACHE_RESULTS_FROM_COST: u64 = 32 << 10;

/// Most bytes of cached match results over all patterns: the topic text of each entry plus
/// [`RESULT_ENTRY_OVERHEAD`].
pub(crate) const RESULT_CACHE_BYTES: usize = 32 << 20;

/// What a cached result costs besides its topic's bytes: the boxed key, the flag, the hash
/// table's control bytes and the allocator's header, rounded up.
pub(super) const RESULT_ENTRY_OVERHEAD: usize = 64;

/// A pattern's compiled matcher.
#[derive(Debug)]
pub(super) enum Compiled {
    Template(UriTemplate),
    UrlPattern(Arc<UrlPatternMatcher>),
}

/// A compiled URI template or URL pattern with its match cache and a cache of its results.
#[derive(Debug)]
pub(crate) struct Pattern {
    key: PatternKey,
    compiled: Compiled,
    // A std Mutex: a match is a hash probe or a bounded automaton run, never an await.
    state: Mutex<PatternState>,
    /// The table's count of live patterns, decremented when this one is dropped.
    live: Arc<AtomicUsize>,
    results_budget: Arc<ResultBudget>,
}

#[derive(Debug, Default)]
struct PatternState {
    /// Made on the first miss: patterns only used for a few checks never allocate one.
    matcher: Option<MatchCache>,
    results: HashMap<Box<str>, bool>,
    /// Bytes of `results` reserved in the table's [`ResultBudget`].
    result_bytes: usize,
}

impl Drop for Pattern {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.results_budget.release(state.result_bytes);
    }
}

impl Pattern {
    /// A live pattern of `key`, counted in `live` until it is dropped, its cached results
    /// charged to `results_budget`.
    pub(super) fn new(
        key: PatternKey,
        compiled: Compiled,
        live: Arc<AtomicUsize>,
        results_budget: Arc<ResultBudget>,
    ) -> Pattern {
        live.fetch_add(1, Ordering::Relaxed);
        Pattern {
            key,
            compiled,
            state: Mutex::default(),
            live,
            results_budget,
        }
    }

    pub(crate) fn source(&self) -> &str {
        &self.key.source
    }

    pub(crate) fn key(&self) -> &PatternKey {
        &self.key
    }

    fn cost(&self) -> u64 {
        match &self.compiled {
            Compiled::Template(template) => template.cost().bytes(),
            Compiled::UrlPattern(pattern) => pattern.cost(),
        }
    }

    pub(crate) fn matches(&self, topic: &str) -> bool {
        // A template also matches itself as a literal [R3]; a URL pattern does not [V1].
        if self.key.kind == PatternKind::Template && self.source() == topic {
            return true;
        }
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        if let Some(&hit) = state.results.get(topic) {
            return hit;
        }
        let hit = match &self.compiled {
            Compiled::Template(template) => {
                let matcher = state.matcher.get_or_insert_with(|| template.new_cache());
                template.is_match_with(matcher, topic)
            }
            Compiled::UrlPattern(pattern) => pattern.is_match(topic),
        };
        if self.cost() < CACHE_RESULTS_FROM_COST {
            return hit;
        }
        let entry_bytes = topic.len().saturating_add(RESULT_ENTRY_OVERHEAD);
        if state.results.len() >= MATCH_CACHE_ENTRIES || !self.results_budget.reserve(entry_bytes) {
            // Forget our own results, then try once more: a pattern never holds results while
            // the budget refuses it the first one.
            state.results = HashMap::new();
            self.results_budget
                .release(std::mem::take(&mut state.result_bytes));
            if !self.results_budget.reserve(entry_bytes) {
                return hit;
            }
        }
        state.results.insert(topic.into(), hit);
        state.result_bytes = state.result_bytes.saturating_add(entry_bytes);
        hit
    }
}

/// The bytes of cached results over all the table's patterns.
#[derive(Debug)]
pub(super) struct ResultBudget {
    pub(super) used: AtomicUsize,
    pub(super) max: usize,
}

impl ResultBudget {
    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}
