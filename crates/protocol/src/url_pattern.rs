//! Mercure 1.0 `URLPattern` topic matchers (`match_urlpattern`) [V1]: one function to compile a
//! pattern, one to match a topic with it.
//!
//! Patterns follow the WHATWG URL Pattern standard through the `urlpattern` crate, with
//! `ignoreCase` off, as draft-08 requires. The standard compiles each of a pattern's eight
//! components to a regular expression, and a pattern may carry regexp groups of its own
//! (`/books/(\\d+)`), so patterns from anonymous query strings must not be able to cost
//! unbounded time or memory. Here every component's expression is compiled by regex-automata (the
//! engine of the `regex` crate: finite automata, linear in the input, no backtracking) with only
//! the PikeVM enabled and an NFA size limit per component; the pattern's cost is then what its
//! compiled expressions take, measured, which the hub checks against the same limits as a
//! draft-07 template's (`TemplateLimits`). A pattern past the engine's own limit is refused as
//! too complex.
//!
//! Relative patterns (`/books/:id`) and relative topics (`/.well-known/mercure/subscriptions/...`)
//! are resolved against the hub's URL, the base given to [`UrlPatternMatcher::compile`]. A topic
//! that is not a URL, even relative to the base, matches no pattern.

use std::fmt;

use regex_automata::meta;
use url::Url;
use urlpattern::RegexSyntax;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// The longest pattern accepted, in bytes (before any cost is computed).
pub const MAX_URL_PATTERN_BYTES: usize = 4096;

/// The largest NFA one component's expression may compile to: a pattern whose regexp groups
/// are larger is refused.
const COMPONENT_NFA_LIMIT: usize = 64 << 10;

/// The base used for relative patterns and topics when the hub has no configured URL.
pub const DEFAULT_BASE: &str = "https://localhost/.well-known/mercure";

/// Why a URL pattern was refused. Each message is safe to show to the subscriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPatternError {
    /// Longer than [`MAX_URL_PATTERN_BYTES`].
    #[error("URL pattern too long: {len} bytes, at most {max} allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Not a valid URL pattern (the parser's reason).
    #[error("invalid URL pattern {pattern:?}: {reason}")]
    Invalid {
        /// The pattern, shortened.
        pattern: String,
        /// Why.
        reason: String,
    },
}

/// One component's regular expression, compiled with bounded size (see the module docs).
#[derive(Debug)]
pub struct BoundedRegex {
    source: String,
    regex: meta::Regex,
}

impl urlpattern::regexp::RegExp for BoundedRegex {
    fn syntax() -> RegexSyntax {
        RegexSyntax::Rust
    }

    fn parse(pattern: &str, _flags: &str, _force_eval: bool) -> Result<Self, ()> {
        // `ignoreCase` is never enabled, so the flags are always "u" (Unicode, the default).
        let regex = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .nfa_size_limit(Some(COMPONENT_NFA_LIMIT))
                    // The PikeVM alone: no DFA (exponential to build), no lazy DFA cache, no
                    // backtracker visited set; time stays linear and memory small.
                    .dfa(false)
                    .hybrid(false)
                    .onepass(false)
                    .backtrack(false),
            )
            .build(pattern)
            .map_err(|_| ())?;
        Ok(BoundedRegex {
            source: pattern.to_owned(),
            regex,
        })
    }

    fn matches<'a>(&self, text: &'a str) -> Option<Vec<Option<&'a str>>> {
        let mut captures = self.regex.create_captures();
        self.regex.captures(text, &mut captures);
        if !captures.is_match() {
            return None;
        }
        Some(
            (1..captures.group_len())
                .map(|group| captures.get_group(group).map(|span| &text[span.range()]))
                .collect(),
        )
    }

    fn pattern_string(&self) -> &str {
        &self.source
    }
}

impl BoundedRegex {
    /// Bytes the expression and one search's state take (a PikeVM cache grows with the NFA).
    fn cost(&self) -> u64 {
        (self.regex.memory_usage() as u64).saturating_mul(3) + 1024
    }
}

/// A compiled `URLPattern` matcher with the base it resolves relative topics against.
pub struct UrlPatternMatcher {
    source: String,
    pattern: UrlPattern<BoundedRegex>,
    base: Url,
    cost: u64,
}

impl fmt::Debug for UrlPatternMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlPatternMatcher")
            .field("source", &self.source)
            .field("base", &self.base.as_str())
            .field("cost", &self.cost)
            .finish()
    }
}

impl UrlPatternMatcher {
    /// Compiles `source`, resolving it against `base` when relative. Errors when it is too
    /// long, not a valid URL pattern, or too complex for the engine's limits.
    pub fn compile(source: &str, base: &Url) -> Result<UrlPatternMatcher, UrlPatternError> {
        if source.len() > MAX_URL_PATTERN_BYTES {
            return Err(UrlPatternError::TooLong {
                len: source.len(),
                max: MAX_URL_PATTERN_BYTES,
            });
        }
        let invalid = |reason: String| UrlPatternError::Invalid {
            pattern: shortened(source),
            reason,
        };
        let init =
            UrlPatternInit::parse_constructor_string::<BoundedRegex>(source, Some(base.clone()))
                .map_err(|e| invalid(e.to_string()))?;
        let pattern = UrlPattern::<BoundedRegex>::parse(init, UrlPatternOptions::default())
            .map_err(|e| match e {
                urlpattern::Error::RegExp(()) => {
                    invalid("a regexp group is invalid or too complex".to_owned())
                }
                other => invalid(other.to_string()),
            })?;
        let components = [
            &pattern.protocol,
            &pattern.username,
            &pattern.password,
            &pattern.hostname,
            &pattern.port,
            &pattern.pathname,
            &pattern.search,
            &pattern.hash,
        ];
        let cost = components
            .iter()
            .map(|component| {
                let own = component.regexp.as_ref().map_or(0, BoundedRegex::cost);
                let matcher = match &component.matcher.inner {
                    urlpattern::matcher::InnerMatcher::RegExp { regexp } => {
                        regexp.as_ref().map_or(0, BoundedRegex::cost)
                    }
                    _ => 0,
                };
                own + matcher
            })
            .sum::<u64>()
            + source.len() as u64;
        Ok(UrlPatternMatcher {
            source: source.to_owned(),
            pattern,
            base: base.clone(),
            cost,
        })
    }

    /// Whether `topic` (resolved against the base when relative) matches the pattern.
    pub fn is_match(&self, topic: &str) -> bool {
        let Ok(url) = Url::options().base_url(Some(&self.base)).parse(topic) else {
            return false;
        };
        self.pattern
            .test(UrlPatternMatchInput::Url(url))
            .unwrap_or(false)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// What the compiled pattern costs in bytes, compared with the template limits.
    pub fn cost(&self) -> u64 {
        self.cost
    }
}

/// Parses a hub URL to resolve relative patterns against; `None` gives [`DEFAULT_BASE`].
pub fn base_url(hub_url: Option<&str>) -> Result<Url, url::ParseError> {
    Url::parse(hub_url.unwrap_or(DEFAULT_BASE))
}

fn shortened(text: &str) -> String {
    const SHOWN: usize = 60;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        base_url(Some("https://hub.example/.well-known/mercure")).unwrap()
    }

    fn matcher(source: &str) -> UrlPatternMatcher {
        UrlPatternMatcher::compile(source, &base()).unwrap()
    }

    #[test]
    fn v1_absolute_pattern_matches_named_groups() {
        let m = matcher("https://example.com/books/:id");
        assert!(m.is_match("https://example.com/books/1"));
        assert!(!m.is_match("https://example.com/books/1/reviews"));
        assert!(!m.is_match("https://example.com/authors/1"));
        assert!(!m.is_match("not a url"));
        // Paths are case-sensitive, hosts are not (URL canonicalization).
        assert!(!m.is_match("https://example.com/Books/1"));
        assert!(m.is_match("https://EXAMPLE.com/books/1"));
    }

    #[test]
    fn v1_relative_patterns_and_topics_resolve_against_the_hub_url() {
        let m = matcher("/.well-known/mercure/subscriptions/:type/:match/:subscriber");
        assert!(m.is_match("/.well-known/mercure/subscriptions/exact/a%2Fb/urn%3Auuid%3A1"));
        assert!(m.is_match(
            "https://hub.example/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1"
        ));
        assert!(!m.is_match("https://other.example/.well-known/mercure/subscriptions/e/a/b"));
    }

    #[test]
    fn v1_regexp_groups_and_wildcards() {
        let m = matcher("https://example.com/books/(\\d+)");
        assert!(m.is_match("https://example.com/books/42"));
        assert!(!m.is_match("https://example.com/books/x"));
        let any = matcher("https://example.com/*");
        assert!(any.is_match("https://example.com/a/b/c"));
    }

    #[test]
    fn v1_malformed_and_oversized_patterns_are_refused() {
        for bad in [
            "https://example.com/(",
            "https://example.com/:",
            "https://ex ample.com/{",
        ] {
            assert!(
                matches!(
                    UrlPatternMatcher::compile(bad, &base()),
                    Err(UrlPatternError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_PATTERN_BYTES));
        assert!(matches!(
            UrlPatternMatcher::compile(&long, &base()),
            Err(UrlPatternError::TooLong { .. })
        ));
        // A regexp group compiling past the NFA limit is refused, not compiled.
        let huge = "https://example.com/((a{100}){100}){100}";
        assert!(UrlPatternMatcher::compile(huge, &base()).is_err());
    }

    #[test]
    fn v1_costs_are_measured_and_bounded() {
        let simple = matcher("https://example.com/books/:id");
        assert!(simple.cost() > 0, "{}", simple.cost());
        let grouped = matcher("https://example.com/books/([a-z]{1,20})-([0-9]{1,10})");
        assert!(grouped.cost() > simple.cost());
        // Eight components at their limit, three times, is the ceiling.
        assert!(grouped.cost() < 8 * 2 * (3 * COMPONENT_NFA_LIMIT as u64 + 1024) + 4096);
    }
}
