//! Mercure 1.0 subscribing over real TCP: `match` / `match_exact` / `match_urlpattern`, the
//! reserved `match` namespace, mixing with draft-07 on the same hub, and reconnection with
//! `last_event_id` and `Mercure-Last-Event-ID` [V1][V4].
//!
//! "Is not delivered" is checked without sleeping: publishing the update that must not arrive
//! and then a sentinel that must, the next event a subscriber reads is the sentinel.

mod common;

use common::*;
use herald_hub::HubConfig;
use herald_hub::config::TemplateLimits;

const BOOK_1: &str = "https://example.com/books/1";
const SENTINEL: &str = "https://example.com/sentinel";

/// A hub with [`config`] that also lets anonymous subscribers in.
async fn anonymous_hub() -> TestHub {
    TestHub::start(HubConfig {
        anonymous: true,
        ..config()
    })
    .await
}

/// `match=SENTINEL`, to add to a query.
fn sentinel() -> String {
    format!("match={}", enc(SENTINEL))
}

/// Publishes a public sentinel and asserts it is the next event `reader` gets.
async fn expect_sentinel_next(hub: &TestHub, reader: &mut EventReader) {
    let id = hub.publish_ok(&[("topic", SENTINEL)]).await;
    let event = reader.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()), "got {event:?}");
}

#[tokio::test]
async fn v1_match_is_exact_even_with_braces() {
    let hub = anonymous_hub().await;
    let literal = "https://example.com/books/{id}";
    let mut reader = hub
        .subscribe(&format!("match={}&{}", enc(literal), sentinel()))
        .await;
    // Not a template: books/1 is not delivered, the literal topic is.
    hub.publish_ok(&[("topic", BOOK_1)]).await;
    expect_sentinel_next(&hub, &mut reader).await;
    let id = hub.publish_ok(&[("topic", literal)]).await;
    assert_eq!(reader.next_event().await.id.as_deref(), Some(id.as_str()));
    // `match_exact` is the same matcher.
    let mut exact = hub.subscribe(&format!("match_exact={}", enc(BOOK_1))).await;
    let id = hub.publish_ok(&[("topic", BOOK_1)]).await;
    assert_eq!(exact.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn v1_match_urlpattern_and_several_matchers_at_once() {
    let hub = anonymous_hub().await;
    let query = format!(
        "match_urlpattern={}&match={}&{}",
        enc("https://example.com/books/:id"),
        enc("https://example.com/authors/7"),
        sentinel()
    );
    let mut reader = hub.subscribe(&query).await;
    let book = hub.publish_ok(&[("topic", BOOK_1)]).await;
    let author = hub
        .publish_ok(&[("topic", "https://example.com/authors/7")])
        .await;
    assert_eq!(ids_of(&reader.next_events(2).await), [book, author]);
    // Neither pattern nor exact matcher selects these.
    hub.publish_ok(&[("topic", "https://example.com/books/1/reviews")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/authors/8")])
        .await;
    expect_sentinel_next(&hub, &mut reader).await;
}

#[tokio::test]
async fn v1_relative_patterns_resolve_against_the_hub_url() {
    let hub = TestHub::start(HubConfig {
        hub_url: Some("https://hub.example/.well-known/mercure".into()),
        anonymous: true,
        ..config()
    })
    .await;
    let mut reader = hub
        .subscribe(&format!(
            "match_urlpattern={}&{}",
            enc("/books/:id"),
            sentinel()
        ))
        .await;
    let absolute = hub
        .publish_ok(&[("topic", "https://hub.example/books/2")])
        .await;
    let relative = hub.publish_ok(&[("topic", "/books/3")]).await;
    assert_eq!(ids_of(&reader.next_events(2).await), [absolute, relative]);
    hub.publish_ok(&[("topic", "https://other.example/books/2")])
        .await;
    expect_sentinel_next(&hub, &mut reader).await;
}

#[tokio::test]
async fn v1_draft07_and_v1_subscribers_side_by_side() {
    let hub = anonymous_hub().await;
    let mut draft07 = hub
        .subscribe(&topics_query(&["https://example.com/books/{id}"]))
        .await;
    let mut v1 = hub
        .subscribe(&format!(
            "match_urlpattern={}",
            enc("https://example.com/books/:id")
        ))
        .await;
    let id = hub.publish_ok(&[("topic", BOOK_1)]).await;
    assert_eq!(draft07.next_event().await.id.as_deref(), Some(id.as_str()));
    assert_eq!(v1.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn v1_private_updates_still_need_the_token_right() {
    // A hub that knows its URL, the audience of 1.0 access tokens.
    let hub = TestHub::start(HubConfig {
        anonymous: true,
        hub_url: Some(V1_HUB_URL.into()),
        ..config()
    })
    .await;
    let query = format!(
        "match_urlpattern={}&{}",
        enc("https://example.com/books/:id"),
        sentinel()
    );
    let mut reader = hub
        .subscribe_with(hub.get(&query).bearer_auth(v1_access_token(vec![v1_detail(
            &["subscribe"],
            &[("exact", BOOK_1)],
            None,
        )])))
        .await;
    // The routing pattern selects books/2, the token does not allow it [V1]: routing never
    // widens what a subscriber may read.
    hub.publish_ok(&[("topic", "https://example.com/books/2"), ("private", "on")])
        .await;
    let allowed = hub
        .publish_ok(&[("topic", BOOK_1), ("private", "on")])
        .await;
    assert_eq!(
        reader.next_event().await.id.as_deref(),
        Some(allowed.as_str())
    );
    expect_sentinel_next(&hub, &mut reader).await;
}

#[tokio::test]
async fn v1_bad_queries_are_refused_with_400() {
    let hub = anonymous_hub().await;
    let cases = [
        // Mixing editions in one request.
        format!("topic={}&match={}", enc(BOOK_1), enc(BOOK_1)),
        format!("match={}&lastEventID=x", enc(BOOK_1)),
        format!("topic={}&last_event_id=x", enc(BOOK_1)),
        // The reserved `match` namespace.
        format!("match_regex={}", enc(BOOK_1)),
        format!("matchURLPattern={}", enc(BOOK_1)),
        format!("Match={}", enc(BOOK_1)),
        format!("topic={}&matching=1", enc(BOOK_1)),
        // Malformed patterns.
        format!("match_urlpattern={}", enc("https://example.com/(")),
        format!("match_urlpattern={}", enc("https://example.com/:")),
        // Control characters.
        format!("match={}", enc("https://example.com/a\u{1}")),
        format!("match_urlpattern={}", enc("https://example.com/\u{85}")),
        "match=".to_owned(),
    ];
    for query in cases {
        let response = hub.get(&query).send().await.unwrap();
        let reason = expect_rejection(response, 400).await;
        assert!(!reason.is_empty(), "{query}");
    }
}

#[tokio::test]
async fn v1_pattern_cost_is_bounded_by_the_template_limits() {
    let hub = TestHub::start(HubConfig {
        template_limits: TemplateLimits {
            max_cost: 8 << 10,
            ..TemplateLimits::default()
        },
        anonymous: true,
        ..config()
    })
    .await;
    let response = hub
        .get(&format!(
            "match_urlpattern={}",
            enc("https://example.com/books/:id")
        ))
        .send()
        .await
        .unwrap();
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("too complex"), "{reason}");
    // A pattern whose regexp group compiles past the engine's limit is refused too.
    let hub = anonymous_hub().await;
    let response = hub
        .get(&format!(
            "match_urlpattern={}",
            enc("https://example.com/((a{100}){100}){100}")
        ))
        .send()
        .await
        .unwrap();
    expect_rejection(response, 400).await;
}

#[tokio::test]
async fn v4_last_event_id_parameter_and_response_header() {
    let hub = anonymous_hub().await;
    let first = hub.publish_ok(&[("topic", BOOK_1), ("data", "1")]).await;
    let second = hub.publish_ok(&[("topic", BOOK_1), ("data", "2")]).await;
    let query = format!("match={}", enc(BOOK_1));

    let mut v1 = hub
        .subscribe(&format!("{query}&last_event_id={}", enc(&first)))
        .await;
    assert_eq!(
        v1.headers
            .get("mercure-last-event-id")
            .and_then(|v| v.to_str().ok()),
        Some(first.as_str())
    );
    assert!(v1.headers.get("last-event-id").is_none());
    assert_eq!(v1.next_event().await.id.as_deref(), Some(second.as_str()));

    // The Last-Event-ID request header works for 1.0 too and wins over the parameter.
    let mut header = hub
        .subscribe_with(
            hub.get(&format!("{query}&last_event_id=earliest"))
                .header("Last-Event-ID", &second),
        )
        .await;
    assert_eq!(
        header
            .headers
            .get("mercure-last-event-id")
            .and_then(|v| v.to_str().ok()),
        Some(second.as_str())
    );
    let live = hub.publish_ok(&[("topic", BOOK_1)]).await;
    assert_eq!(header.next_event().await.id.as_deref(), Some(live.as_str()));

    // Unknown id: the whole history, said as `earliest` [V4].
    let mut unknown = hub
        .subscribe(&format!("{query}&last_event_id=urn%3Anothing"))
        .await;
    assert_eq!(
        unknown
            .headers
            .get("mercure-last-event-id")
            .and_then(|v| v.to_str().ok()),
        Some("earliest")
    );
    assert_eq!(
        ids_of(&unknown.next_events(3).await),
        [first.clone(), second.clone(), live]
    );

    // draft-07 keeps its parameter and header.
    let draft07 = hub
        .subscribe(&format!(
            "{}&lastEventID={}",
            topics_query(&[BOOK_1]),
            enc(&first)
        ))
        .await;
    assert_eq!(
        draft07
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok()),
        Some(first.as_str())
    );
    assert!(draft07.headers.get("mercure-last-event-id").is_none());
}
