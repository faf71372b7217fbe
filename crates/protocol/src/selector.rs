//! Topic selectors: what a subscriber's `topic=` parameter and a token's `mercure.subscribe` /
//! `mercure.publish` entries are [R3].

use std::fmt;

use crate::template::TemplateSource;

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

    /// The selector as it was written.
    pub fn as_str(&self) -> &str {
        match self {
            TopicSelector::Any => "*",
            TopicSelector::Exact(topic) => topic,
            TopicSelector::Template(template) => template.as_str(),
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
    fn r3_invalid_template_is_an_exact_topic() {
        let s = TopicSelector::parse("https://example.com/{unclosed");
        assert!(matches!(s, TopicSelector::Exact(_)));
        assert!(s.matches("https://example.com/{unclosed"));
        assert!(!s.matches("https://example.com/x"));
    }
}
