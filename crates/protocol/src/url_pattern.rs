//! WHATWG URL Pattern matching of topics, the Mercure 1.0 matcher type `urlpattern` [V1][V2].
//!
//! One compiled form, [`CompiledUrlPattern`], and one matching function, [`url_pattern_matches`],
//! serve both uses: the grants of a 1.0 access token (`match_type: urlpattern`) and the
//! `match_urlpattern` subscribe parameter. Patterns compile through the `urlpattern` crate onto
//! the `regex` crate, whose matching time is linear in the topic's length (the spec requires a
//! linear-time engine or a cost limit); the pattern's length is bounded by
//! [`MAX_URL_PATTERN_BYTES`], which bounds the compiled regexes too.
//!
//! Relative patterns and relative topics are resolved against the hub's URL (`--hub-url`), as
//! the spec requires; a topic that is not a URL (even after resolution) matches no URL pattern.
//! `ignoreCase` is never enabled.

use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

/// The longest URL pattern accepted, in bytes.
pub const MAX_URL_PATTERN_BYTES: usize = 2048;

/// Why a URL pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPatternError {
    /// Longer than [`MAX_URL_PATTERN_BYTES`].
    #[error("URL pattern longer than {MAX_URL_PATTERN_BYTES} bytes")]
    TooLong,
    /// A relative pattern, and no hub URL to resolve it against.
    #[error("relative URL pattern, but the hub has no URL to resolve it against (--hub-url)")]
    NeedsBase,
    /// Not a URL pattern; holds the parser's message (for the debug log only).
    #[error("not a valid URL pattern: {0}")]
    Invalid(String),
}

/// A URL pattern ready to match topics.
#[derive(Debug)]
pub struct CompiledUrlPattern {
    source: String,
    pattern: UrlPattern,
    /// What relative topics resolve against: the hub's URL.
    base: Option<Url>,
}

impl CompiledUrlPattern {
    /// Compiles `source`; a relative pattern resolves against `base` (the hub's URL).
    pub fn compile(
        source: &str,
        base: Option<&Url>,
    ) -> Result<CompiledUrlPattern, UrlPatternError> {
        if source.len() > MAX_URL_PATTERN_BYTES {
            return Err(UrlPatternError::TooLong);
        }
        let init = UrlPatternInit::parse_constructor_string::<regex::Regex>(source, base.cloned())
            .map_err(|e| match e {
                urlpattern::Error::BaseUrlRequired => UrlPatternError::NeedsBase,
                e => UrlPatternError::Invalid(e.to_string()),
            })?;
        let pattern = UrlPattern::parse(init, UrlPatternOptions::default())
            .map_err(|e| UrlPatternError::Invalid(e.to_string()))?;
        Ok(CompiledUrlPattern {
            source: source.to_owned(),
            pattern,
            base: base.cloned(),
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `topic` matches (see [`url_pattern_matches`]).
    pub fn matches(&self, topic: &str) -> bool {
        url_pattern_matches(self, topic)
    }
}

/// Whether `topic` matches `pattern`: the one place a topic is tested against a URL pattern.
/// A relative topic is resolved against the hub's URL first; a topic that is no URL matches
/// nothing.
pub fn url_pattern_matches(pattern: &CompiledUrlPattern, topic: &str) -> bool {
    let url = match &pattern.base {
        Some(base) => base.join(topic),
        None => Url::parse(topic),
    };
    let Ok(url) = url else {
        return false;
    };
    pattern
        .pattern
        .test(UrlPatternMatchInput::Url(url))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Url {
        Url::parse("https://hub.example/.well-known/mercure").unwrap()
    }

    #[test]
    fn v2_absolute_pattern_matches_its_urls_only() {
        let p = CompiledUrlPattern::compile("https://example.com/books/:id", None).unwrap();
        assert!(p.matches("https://example.com/books/1"));
        assert!(!p.matches("https://example.com/books/1/reviews"));
        assert!(!p.matches("https://example.com/Books/1"));
        assert!(!p.matches("not a url"));
    }

    #[test]
    fn v2_relative_pattern_and_topic_resolve_against_the_hub() {
        assert_eq!(
            CompiledUrlPattern::compile("/books/:id", None).unwrap_err(),
            UrlPatternError::NeedsBase
        );
        let p = CompiledUrlPattern::compile("/books/:id", Some(&hub())).unwrap();
        assert!(p.matches("/books/7"));
        assert!(p.matches("https://hub.example/books/7"));
        assert!(!p.matches("https://other.example/books/7"));
    }

    #[test]
    fn v2_bad_and_long_patterns_are_refused() {
        assert!(matches!(
            CompiledUrlPattern::compile("https://example.com/(unclosed", None),
            Err(UrlPatternError::Invalid(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_PATTERN_BYTES));
        assert_eq!(
            CompiledUrlPattern::compile(&long, None).unwrap_err(),
            UrlPatternError::TooLong
        );
    }
}
