//! Topic selectors: what a subscriber's `topic=` (draft-07) or `match*=` (1.0) parameter and a
//! token's `mercure.subscribe` / `mercure.publish` entries are [R3][V1].
//!
//! draft-07 has one kind of selector string, read by [`TopicSelector::parse`]: `*`, a URI
//! template, or an exact topic. Mercure 1.0 names the kind with the matcher type
//! ([`MatchType`]): `exact` compares bytes (a `{` is just a character), `urlpattern` is a WHATWG
//! URL Pattern ([`crate::url_pattern`]); `*` is every topic whatever the type.

use std::fmt;
use std::sync::Arc;

use url::Url;

use crate::template::TemplateSource;
use crate::url_pattern::{UrlPatternError, UrlPatternMatcher};

/// A Mercure 1.0 topic matcher type [V1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// Byte-for-byte comparison: `match` / `match_exact`.
    Exact,
    /// A WHATWG URL Pattern: `match_urlpattern`.
    UrlPattern,
}

impl MatchType {
    /// The name on the wire: the suffix of `match_{name}`, the `match_type` of grants,
    /// subscription events and the subscriptions API.
    pub fn name(self) -> &'static str {
        match self {
            MatchType::Exact => "exact",
            MatchType::UrlPattern => "urlpattern",
        }
    }

    /// The type named `name` on the wire (case-sensitive), if any.
    pub fn from_name(name: &str) -> Option<MatchType> {
        match name {
            "exact" => Some(MatchType::Exact),
            "urlpattern" => Some(MatchType::UrlPattern),
            _ => None,
        }
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One topic selector, parsed.
///
/// Matching follows the order the specification gives [R3]: `*` matches everything; a
/// byte-identical string matches (so a template also matches itself as a literal); a valid RFC
/// 6570 template matches its expansions; anything else matches nothing.
#[derive(Debug, Clone)]
pub enum TopicSelector {
    /// `*`: every topic.
    Any,
    /// A string that is not a template (or not a valid one): only the identical topic.
    Exact(String),
    /// A valid URI template with at least one expression, parsed and costed but not compiled:
    /// whoever matches with it compiles it (the hub, once per distinct template, within its
    /// cost limits).
    Template(TemplateSource),
    /// A compiled Mercure 1.0 URL Pattern [V1] (never made by [`TopicSelector::parse`]).
    UrlPattern(Arc<UrlPatternMatcher>),
}

impl TopicSelector {
    /// Parses a selector. Never fails: a string that is not a valid template is an exact topic,
    /// as in the reference hub.
    pub fn parse(selector: &str) -> TopicSelector {
        if selector == "*" {
            return TopicSelector::Any;
        }
        if selector.contains('{')
            && let Ok(template) = TemplateSource::parse(selector)
            && template.has_expressions()
        {
            return TopicSelector::Template(template);
        }
        TopicSelector::Exact(selector.to_owned())
    }

    /// A Mercure 1.0 matcher of type `match_type` [V1]: `*` is every topic whatever the type;
    /// URL patterns are compiled, relative ones resolved against `base` (the hub's URL).
    pub fn with_type(
        match_type: MatchType,
        value: &str,
        base: &Url,
    ) -> Result<TopicSelector, UrlPatternError> {
        if value == "*" {
            return Ok(TopicSelector::Any);
        }
        Ok(match match_type {
            MatchType::Exact => TopicSelector::Exact(value.to_owned()),
            MatchType::UrlPattern => {
                TopicSelector::UrlPattern(Arc::new(UrlPatternMatcher::compile(value, base)?))
            }
        })
    }

    /// The selector as it was written.
    pub fn as_str(&self) -> &str {
        match self {
            TopicSelector::Any => "*",
            TopicSelector::Exact(topic) => topic,
            TopicSelector::Template(template) => template.as_str(),
            TopicSelector::UrlPattern(pattern) => pattern.as_str(),
        }
    }

    /// The 1.0 matcher type this selector is reported as: URL patterns are `urlpattern`, every
    /// other selector (draft-07 templates included) `exact`.
    pub fn match_type(&self) -> MatchType {
        match self {
            TopicSelector::UrlPattern(_) => MatchType::UrlPattern,
            _ => MatchType::Exact,
        }
    }

    /// Whether `topic` is selected. Compiles a template on each call: for one-off checks (the
    /// hub keeps compiled patterns and caches their results). A template too costly to compile
    /// matches only itself.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicSelector::Any => true,
            TopicSelector::Exact(exact) => exact == topic,
            TopicSelector::Template(template) => {
                template.as_str() == topic || template.compile().is_ok_and(|t| t.is_match(topic))
            }
            TopicSelector::UrlPattern(pattern) => pattern.is_match(topic),
        }
    }

    /// Whether any of `topics` is selected.
    pub fn matches_any<S: AsRef<str>>(&self, topics: &[S]) -> bool {
        topics.iter().any(|topic| self.matches(topic.as_ref()))
    }
}

impl fmt::Display for TopicSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r3_star_matches_everything() {
        assert!(TopicSelector::parse("*").matches("https://example.com/anything"));
    }

    #[test]
    fn r3_exact_matches_only_itself() {
        let s = TopicSelector::parse("https://example.com/books/1");
        assert!(s.matches("https://example.com/books/1"));
        assert!(!s.matches("https://example.com/books/10"));
    }

    #[test]
    fn r3_template_matches_expansions_and_itself() {
        let s = TopicSelector::parse("https://example.com/books/{id}");
        assert!(matches!(s, TopicSelector::Template(_)));
        assert!(s.matches("https://example.com/books/1"));
        assert!(s.matches("https://example.com/books/{id}"));
        assert!(!s.matches("https://example.com/books/1/reviews"));
        assert!(!s.matches("https://example.com/authors/1"));
    }

    #[test]
    fn v1_typed_matchers() {
        let base = crate::url_pattern::base_url(None).unwrap();
        let exact =
            TopicSelector::with_type(MatchType::Exact, "https://e.com/{id}", &base).unwrap();
        assert!(exact.matches("https://e.com/{id}"));
        assert!(
            !exact.matches("https://e.com/1"),
            "exact is never a template"
        );
        for t in [MatchType::Exact, MatchType::UrlPattern] {
            assert!(matches!(
                TopicSelector::with_type(t, "*", &base).unwrap(),
                TopicSelector::Any
            ));
        }
        let pattern =
            TopicSelector::with_type(MatchType::UrlPattern, "https://e.com/:id", &base).unwrap();
        assert!(pattern.matches("https://e.com/1"));
        assert_eq!(pattern.match_type(), MatchType::UrlPattern);
        assert_eq!(
            MatchType::from_name("urlpattern"),
            Some(MatchType::UrlPattern)
        );
        assert_eq!(MatchType::from_name("URLPattern"), None);
    }

    #[test]
    fn r3_invalid_template_is_an_exact_topic() {
        let s = TopicSelector::parse("https://example.com/{unclosed");
        assert!(matches!(s, TopicSelector::Exact(_)));
        assert!(s.matches("https://example.com/{unclosed"));
        assert!(!s.matches("https://example.com/x"));
    }
}
