//! The update: what a publisher sends and every matching subscriber receives.

use uuid::Uuid;

/// One update, as published and as stored in history.
///
/// `topics[0]` is the canonical topic; the others are alternates [R8]. The id is always set by
/// the time an update reaches history: either the publisher's or one from [`generate_id`] [R13].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The update's IRI, sent as the SSE `id:` and used as `Last-Event-ID` to resume; empty
    /// until the hub assigns one.
    pub id: String,
    /// The topics the update is about: the canonical one first, then alternates [R8].
    pub topics: Vec<String>,
    /// The content delivered to subscribers as the SSE `data:` lines (may be empty).
    pub data: String,
    /// Whether only subscribers whose token's `mercure.subscribe` selectors match one of the
    /// topics receive it [R20].
    pub private: bool,
    /// The SSE `event:` field.
    pub event_type: Option<String>,
    /// The SSE `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

/// A fresh update id: `urn:uuid:` followed by a UUIDv7 [R13].
///
/// Version 7 is time-ordered, so ids sort roughly by publication time, which makes them pleasant
/// to read in logs and cheap to index.
pub fn generate_id() -> String {
    // Written into a buffer on the stack and copied once: one per subscription and per update.
    let mut buffer = Uuid::encode_buffer();
    Uuid::now_v7().urn().encode_lower(&mut buffer).to_owned()
}

/// Whether `topic` lies in the hub's own namespace, `/.well-known/mercure/...`, which publishers
/// may not write to [R16]: subscription events live there.
///
/// Both a bare path and an absolute IRI whose path starts there count.
pub fn is_reserved_topic(topic: &str) -> bool {
    let path = match topic.find("://") {
        Some(scheme_end) => {
            let after_scheme = &topic[scheme_end + 3..];
            match after_scheme.find('/') {
                Some(slash) => &after_scheme[slash..],
                None => return false,
            }
        }
        None => topic,
    };
    path == crate::HUB_PATH || path.starts_with("/.well-known/mercure/")
}

/// Whether `topic`, resolved as a URI reference against the hub's URL `base`, has a path in the
/// hub's namespace [V3], as draft-08 defines it: a relative `mercure/subscriptions/x` resolved
/// against `https://hub/.well-known/mercure` is reserved too. Adds nothing to
/// [`is_reserved_topic`] for absolute topics; a topic that is no URI reference is not reserved.
pub fn is_reserved_topic_at(topic: &str, base: &url::Url) -> bool {
    if is_reserved_topic(topic) {
        return true;
    }
    url::Url::options()
        .base_url(Some(base))
        .parse(topic)
        .is_ok_and(|url| {
            let path = url.path();
            path == crate::HUB_PATH || path.starts_with("/.well-known/mercure/")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r13_generated_ids_are_urn_uuid_v7() {
        let id = generate_id();
        let uuid = id.strip_prefix("urn:uuid:").expect("urn:uuid: prefix");
        let parsed = Uuid::parse_str(uuid).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_ne!(generate_id(), id);
    }

    #[test]
    fn r16_reserved_namespace_is_detected_in_paths_and_iris() {
        assert!(is_reserved_topic("/.well-known/mercure/subscriptions/a/b"));
        assert!(is_reserved_topic(
            "https://example.com/.well-known/mercure/subscriptions"
        ));
        assert!(is_reserved_topic("/.well-known/mercure"));
        assert!(!is_reserved_topic("https://example.com/books/1"));
        assert!(!is_reserved_topic("/.well-known/mercurex"));
        assert!(!is_reserved_topic("https://example.com"));
    }

    #[test]
    fn v3_reserved_namespace_after_resolution() {
        let base =
            crate::url_pattern::base_url(Some("https://hub.example/.well-known/mercure")).unwrap();
        for reserved in [
            "mercure/subscriptions/exact/a/b",
            "./mercure",
            "../.well-known/mercure/x",
            "/.well-known/./mercure/x",
            "https://other.example/.well-known/mercure/subscriptions",
        ] {
            assert!(is_reserved_topic_at(reserved, &base), "{reserved}");
        }
        for free in [
            "books/1",
            "https://example.com/books/1",
            "urn:uuid:1",
            "/.well-known/mercurex",
        ] {
            assert!(!is_reserved_topic_at(free, &base), "{free}");
        }
    }
}
