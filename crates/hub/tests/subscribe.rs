//! The subscribe side over real TCP: selectors, headers, the opening comment, delivery rules,
//! SSE framing and anonymous access [R3]-[R9][R20][R21].
//!
//! "Is not delivered" is checked without sleeping: the hub dispatches in publication order, so
//! publishing the update that must not arrive and then a sentinel that must, the next event a
//! subscriber reads is the sentinel.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use herald_hub::HubConfig;

const BOOKS: &str = "https://example.com/books/{id}";
const BOOK_1: &str = "https://example.com/books/1";
const SENTINEL: &str = "https://example.com/sentinel";

/// Publishes a public sentinel and asserts it is the next event `reader` gets.
async fn expect_sentinel_next(hub: &TestHub, reader: &mut EventReader) {
    let id = hub
        .publish_ok(&[("topic", SENTINEL), ("data", "sentinel")])
        .await;
    let event = reader.next_event().await;
    assert_eq!(
        event.id.as_deref(),
        Some(id.as_str()),
        "expected the sentinel, got {event:?}"
    );
}

/// Asserts `got == expected`, pointing at the first difference (the lists can be long).
fn assert_same_sequence(got: &[String], expected: &[String], context: &str) {
    if let Some(at) = (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i)) {
        let window =
            |list: &[String]| list[at.saturating_sub(2)..(at + 3).min(list.len())].to_vec();
        panic!(
            "{context}: sequences differ at index {at} (got {} events, expected {}): got {:?}, \
             expected {:?}",
            got.len(),
            expected.len(),
            window(got),
            window(expected)
        );
    }
}

// ---- [R3] selector matching ----

#[tokio::test]
async fn r3_star_selector_receives_every_topic() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    let a = hub
        .publish_ok(&[("topic", "https://example.com/a"), ("data", "a")])
        .await;
    let b = hub.publish_ok(&[("topic", "urn:anything:else")]).await;
    assert_eq!(ids_of(&sub.next_events(2).await), [a, b]);
}

#[tokio::test]
async fn r3_exact_selector_receives_only_the_identical_topic() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&[BOOK_1, SENTINEL], &[]).await;
    hub.publish_ok(&[("topic", "https://example.com/books/2")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/books/1/")])
        .await;
    hub.publish_ok(&[("topic", "HTTPS://EXAMPLE.COM/books/1")])
        .await;
    let id = hub.publish_ok(&[("topic", BOOK_1)]).await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
    expect_sentinel_next(&hub, &mut sub).await;
}

#[tokio::test]
async fn r3_uri_template_matches_its_expansions_only() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&[BOOKS], &[]).await;
    hub.publish_ok(&[("topic", "https://example.com/books/1/reviews")])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/authors/1")])
        .await;
    let one = hub.publish_ok(&[("topic", BOOK_1)]).await;
    let two = hub
        .publish_ok(&[("topic", "https://example.com/books/two")])
        .await;
    // Nothing for /books/1/reviews nor /authors/1: the first events are the matching ones.
    assert_eq!(ids_of(&sub.next_events(2).await), [one, two]);
}

#[tokio::test]
async fn r3_uri_template_matches_itself_literally() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&[BOOKS], &[]).await;
    let id = hub
        .publish_ok(&[("topic", BOOKS), ("data", "literal")])
        .await;
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data, "literal");
}

#[tokio::test]
async fn r3_invalid_template_is_an_exact_selector() {
    let hub = TestHub::default().await;
    let invalid = "https://example.com/books/{id";
    let mut sub = hub.subscribe_to(&[invalid, SENTINEL], &[]).await;
    // Not a template, so neither an "expansion" nor a prefix match.
    hub.publish_ok(&[("topic", BOOK_1)]).await;
    let id = hub.publish_ok(&[("topic", invalid)]).await;
    let event = sub.next_event().await;
    assert_eq!(
        event.id.as_deref(),
        Some(id.as_str()),
        "only the identical topic is delivered, got {event:?}"
    );
    expect_sentinel_next(&hub, &mut sub).await;
}

#[tokio::test]
async fn r3_r8_alternate_topic_routes_the_update() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_to(&["https://example.com/alternate"], &[])
        .await;
    let id = hub
        .publish_ok(&[
            ("topic", "https://example.com/canonical"),
            ("topic", "https://example.com/alternate"),
            ("data", "via the second topic"),
        ])
        .await;
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data, "via the second topic");
}

#[tokio::test]
async fn r8_alternate_topic_matches_a_template_selector() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&[BOOKS], &[]).await;
    let id = hub
        .publish_ok(&[("topic", "urn:canonical:x"), ("topic", BOOK_1)])
        .await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

// ---- [R5] headers, HEAD ----

fn assert_stream_headers(headers: &reqwest::header::HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("missing {name} header in {headers:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(get("content-type"), "text/event-stream");
    assert_eq!(
        get("cache-control"),
        "private, no-cache, no-store, must-revalidate, max-age=0"
    );
    assert_eq!(get("x-accel-buffering"), "no");
    // The test client speaks HTTP/1.1.
    assert_eq!(get("connection"), "keep-alive");
}

#[tokio::test]
async fn r5_get_answers_an_event_stream_with_the_required_headers() {
    let hub = TestHub::default().await;
    let sub = hub.subscribe_to(&["*"], &[]).await;
    assert_stream_headers(&sub.headers);
    assert_eq!(
        hub.hub.subscriber_count(),
        1,
        "GET registers the subscriber"
    );
}

#[tokio::test]
async fn r5_head_answers_the_same_headers_without_body_or_registration() {
    let hub = TestHub::default().await;
    let response = hub
        .client
        .head(format!("{}?{}", hub.url, topics_query(&["*"])))
        .bearer_auth(subscriber_token(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_stream_headers(response.headers());
    let body = tokio::time::timeout(WAIT, response.bytes())
        .await
        .expect("a HEAD response ends at once")
        .unwrap();
    assert!(body.is_empty(), "HEAD has no body: {body:?}");
    assert_eq!(hub.hub.subscriber_count(), 0, "HEAD must not register");
}

#[tokio::test]
async fn r5_head_refuses_what_get_refuses() {
    let hub = TestHub::default().await;
    let response = hub
        .client
        .head(format!("{}?{}", hub.url, topics_query(&["*"])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no token, no anonymous access");
}

// ---- [R6] topic parameters ----

#[tokio::test]
async fn r6_no_topic_is_a_400_with_a_reason() {
    let hub = TestHub::default().await;
    for query in ["", "lastEventID=earliest", "topics=x"] {
        let response = hub
            .get(query)
            .bearer_auth(subscriber_token(&[]))
            .send()
            .await
            .unwrap();
        let reason = expect_rejection(response, 400).await;
        assert!(reason.contains("topic"), "reason names topic: {reason:?}");
    }
    assert_eq!(hub.hub.subscriber_count(), 0);
}

fn many_topics(n: usize) -> String {
    (0..n)
        .map(|i| format!("topic=t{i}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn r6_more_than_1000_topics_is_a_400() {
    let hub = TestHub::default().await;
    let response = hub
        .get(&many_topics(1001))
        .bearer_auth(subscriber_token(&[]))
        .send()
        .await
        .unwrap();
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("1000"), "reason gives the cap: {reason:?}");
    assert_eq!(hub.hub.subscriber_count(), 0);
}

#[tokio::test]
async fn r6_1000_topics_are_accepted() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_with(
            hub.get(&many_topics(1000))
                .bearer_auth(subscriber_token(&[])),
        )
        .await;
    let id = hub.publish_ok(&[("topic", "t999")]).await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

// ---- [R7] opening, registration before replay ----

#[tokio::test]
async fn r7_stream_opens_with_a_comment_before_any_event() {
    let hub = TestHub::default().await;
    // The response (EventSource.onopen) must not wait for a first event.
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        hub.get(&topics_query(&["*"]))
            .bearer_auth(subscriber_token(&[]))
            .send(),
    )
    .await
    .expect("headers arrive without any event published")
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut sub = EventReader::new(response);
    assert!(sub.wait_for_raw(":\n", Duration::from_secs(2)).await);
    assert_eq!(sub.raw, ":\n", "the first bytes are the comment line");
}

#[tokio::test]
async fn r7_subscribe_is_registered_when_the_response_arrives() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    // No wait between subscribe and publish: the first update must not be missed.
    let id = hub.publish_ok(&[("topic", "x")]).await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn r7_r25_reconnect_during_concurrent_publishing_loses_and_repeats_nothing() {
    const TOTAL: usize = 300;
    let hub = TestHub::default().await;
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let client = hub.client.clone();
        let url = hub.url.clone();
        let published = published.clone();
        tokio::spawn(async move {
            let token = publisher_token();
            for i in 0..TOTAL {
                let id = format!("c{i}");
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .form(&[("topic", "concurrent"), ("id", &id), ("data", &id)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                published.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    // Reconnect at several points while updates keep coming.
    let mut readers = Vec::new();
    for after in [5, 40, 90, 150, 220] {
        while published.load(Ordering::SeqCst) <= after + 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let reader = hub
            .subscribe_with(
                hub.get("topic=concurrent")
                    .bearer_auth(subscriber_token(&[]))
                    .header("Last-Event-ID", format!("c{after}")),
            )
            .await;
        assert_eq!(
            reader.headers.get("last-event-id").unwrap(),
            &format!("c{after}")
        );
        readers.push((after, reader));
    }
    publisher.await.unwrap();
    for (after, mut reader) in readers {
        let expected: Vec<String> = (after + 1..TOTAL).map(|i| format!("c{i}")).collect();
        let got = ids_of(&reader.next_events(expected.len()).await);
        assert_same_sequence(&got, &expected, &format!("reconnected after c{after}"));
        reader.assert_no_event(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_r25_registration_and_replay_race_with_a_fast_publisher() {
    // The window between registering a subscriber and reading history is microseconds wide:
    // while each reconnection is in flight, publish a burst from a dedicated thread as fast as
    // the hub takes updates, so that many reconnections get updates inside that window, and
    // check that each got everything after its id exactly once, in order.
    const RECONNECTIONS: usize = 20;
    const BURST: usize = 1000;
    let hub = TestHub::default().await;
    let published = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(AtomicUsize::new(10));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (hub, published, budget, stop) = (
            hub.hub.clone(),
            published.clone(),
            budget.clone(),
            stop.clone(),
        );
        let runtime = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                if i >= budget.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                let update = herald_protocol::Update {
                    id: format!("f{i}"),
                    topics: vec!["fast".into()],
                    data: String::new(),
                    private: false,
                    event_type: None,
                    retry: None,
                };
                runtime.block_on(hub.publish(update)).unwrap();
                i += 1;
                published.store(i, Ordering::SeqCst);
            }
            i
        })
    };
    while published.load(Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut readers = Vec::new();
    for _ in 0..RECONNECTIONS {
        let after = published.load(Ordering::SeqCst) - 1;
        budget.store(after + 1 + BURST, Ordering::SeqCst);
        let reader = hub
            .subscribe_with(
                hub.get("topic=fast")
                    .bearer_auth(subscriber_token(&[]))
                    .header("Last-Event-ID", format!("f{after}")),
            )
            .await;
        readers.push((after, reader));
    }
    stop.store(true, Ordering::SeqCst);
    let total = publisher.join().unwrap();
    for (after, mut reader) in readers {
        let expected: Vec<String> = (after + 1..total).map(|i| format!("f{i}")).collect();
        let got = ids_of(&reader.next_events(expected.len()).await);
        assert_same_sequence(&got, &expected, &format!("reconnected after f{after}"));
        reader.assert_no_event(Duration::from_millis(20)).await;
    }
}

// ---- [R8] delivery ----

#[tokio::test]
async fn r8_private_update_reaches_only_authorized_subscribers() {
    let hub = TestHub::default().await;
    let mut authorized = hub.subscribe_to(&[BOOKS, SENTINEL], &[BOOKS]).await;
    let mut unauthorized = hub.subscribe_to(&[BOOKS, SENTINEL], &[]).await;
    let private = hub
        .publish_ok(&[("topic", BOOK_1), ("private", "on"), ("data", "secret")])
        .await;
    let public = hub.publish_ok(&[("topic", BOOK_1), ("data", "open")]).await;
    assert_eq!(
        ids_of(&authorized.next_events(2).await),
        [private.clone(), public.clone()]
    );
    let event = unauthorized.next_event().await;
    assert_eq!(
        event.id.as_deref(),
        Some(public.as_str()),
        "the private update must be skipped, got {event:?}"
    );
}

#[tokio::test]
async fn r8_private_field_with_any_value_makes_the_update_private() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    for value in ["", "false", "0", "off"] {
        hub.publish_ok(&[("topic", BOOK_1), ("private", value)])
            .await;
    }
    expect_sentinel_next(&hub, &mut sub).await;
}

#[tokio::test]
async fn r8_update_is_delivered_once_when_several_selectors_and_topics_match() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_to(
            &[
                "*",
                BOOKS,
                BOOK_1,
                "https://example.com/books/2",
                "https://example.com/{kind}/{id}",
                SENTINEL,
            ],
            &["*"],
        )
        .await;
    let public = hub
        .publish_ok(&[
            ("topic", BOOK_1),
            ("topic", "https://example.com/books/2"),
            ("topic", "https://example.com/books/3"),
        ])
        .await;
    let private = hub
        .publish_ok(&[
            ("topic", BOOK_1),
            ("topic", "https://example.com/books/2"),
            ("private", "on"),
        ])
        .await;
    assert_eq!(ids_of(&sub.next_events(2).await), [public, private]);
    expect_sentinel_next(&hub, &mut sub).await;
}

#[tokio::test]
async fn r8_each_subscriber_gets_its_own_copy() {
    let hub = TestHub::default().await;
    let mut a = hub.subscribe_to(&[BOOKS], &[]).await;
    let mut b = hub.subscribe_to(&[BOOKS], &[]).await;
    let mut c = hub.subscribe_to(&["*"], &[]).await;
    let id = hub.publish_ok(&[("topic", BOOK_1), ("data", "x")]).await;
    for sub in [&mut a, &mut b, &mut c] {
        assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
    }
}

// ---- [R9] framing ----

#[tokio::test]
async fn r9_full_frame_is_byte_exact_on_the_wire() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    hub.publish_ok(&[
        ("topic", BOOK_1),
        ("id", "frame-1"),
        ("type", "book"),
        ("retry", "1500"),
        ("data", "  leading\r\ncrlf\rcr\nlf\n\nafter empty"),
    ])
    .await;
    let event = sub.next_event().await;
    assert_eq!(
        sub.raw,
        ":\n\
         event: book\n\
         retry: 1500\n\
         id: frame-1\n\
         data:   leading\n\
         data: crlf\n\
         data: cr\n\
         data: lf\n\
         data: \n\
         data: after empty\n\
         \n"
    );
    assert_eq!(
        event,
        SseEvent {
            id: Some("frame-1".into()),
            event: Some("book".into()),
            retry: Some("1500".into()),
            data: "  leading\ncrlf\ncr\nlf\n\nafter empty".into(),
        }
    );
}

#[tokio::test]
async fn r9_multiline_data_is_split_into_data_lines() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    hub.publish_ok(&[("topic", "t"), ("id", "m"), ("data", "one\ntwo\nthree")])
        .await;
    sub.next_event().await;
    assert!(
        sub.raw
            .ends_with("id: m\ndata: one\ndata: two\ndata: three\n\n"),
        "{:?}",
        sub.raw
    );
}

#[tokio::test]
async fn r9_type_and_retry_lines_only_when_set() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    hub.publish_ok(&[("topic", "t"), ("id", "plain"), ("data", "d")])
        .await;
    let event = sub.next_event().await;
    assert_eq!(sub.raw, ":\nid: plain\ndata: d\n\n");
    assert_eq!(event.event, None);
    assert_eq!(event.retry, None);
}

#[tokio::test]
async fn r9_empty_and_absent_data_still_give_a_data_line() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    hub.publish_ok(&[("topic", "t"), ("id", "absent")]).await;
    hub.publish_ok(&[("topic", "t"), ("id", "empty"), ("data", "")])
        .await;
    hub.publish_ok(&[("topic", "t"), ("id", "trailing"), ("data", "a\n")])
        .await;
    let events = sub.next_events(3).await;
    assert_eq!(
        sub.raw,
        ":\nid: absent\ndata: \n\nid: empty\ndata: \n\nid: trailing\ndata: a\ndata: \n\n"
    );
    assert_eq!(events[2].data, "a\n");
}

#[tokio::test]
async fn r9_every_event_carries_an_id_generated_when_absent() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &[]).await;
    let id = hub.publish_ok(&[("topic", "t"), ("data", "x")]).await;
    let event = sub.next_event().await;
    assert!(id.starts_with("urn:uuid:"), "{id}");
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
}

// ---- [R20] private routing and authorization ----

#[tokio::test]
async fn r20_authorization_without_routing_delivers_nothing() {
    let hub = TestHub::default().await;
    let a = "https://example.com/a";
    let b = "https://example.com/b";
    // Authorized for A, subscribed to B (and the sentinel).
    let mut sub = hub.subscribe_to(&[b, SENTINEL], &[a]).await;
    hub.publish_ok(&[("topic", a), ("private", "on")]).await;
    hub.publish_ok(&[("topic", a)]).await;
    expect_sentinel_next(&hub, &mut sub).await;
}

#[tokio::test]
async fn r20_routing_without_authorization_delivers_no_private_update() {
    let hub = TestHub::default().await;
    let a = "https://example.com/a";
    let b = "https://example.com/b";
    // Subscribed to A, authorized for B only.
    let mut sub = hub.subscribe_to(&[a, SENTINEL], &[b]).await;
    hub.publish_ok(&[("topic", a), ("private", "on")]).await;
    expect_sentinel_next(&hub, &mut sub).await;
    // A right on any of the update's topics authorizes it: this one routes on A and is
    // authorized through its alternate topic B.
    let id = hub
        .publish_ok(&[("topic", a), ("topic", b), ("private", "on")])
        .await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn r20_template_claim_authorizes_private_updates_on_its_expansions() {
    let hub = TestHub::default().await;
    let users = "https://example.com/users/{id}";
    let mut sub = hub
        .subscribe_to(&["https://example.com/users/1", SENTINEL], &[users])
        .await;
    let id = hub
        .publish_ok(&[
            ("topic", "https://example.com/users/1"),
            ("private", "on"),
            ("data", "for user 1"),
        ])
        .await;
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data, "for user 1");
    // An update outside the claim stays private.
    let mut all = hub.subscribe_to(&["*"], &[users]).await;
    hub.publish_ok(&[
        ("topic", "https://example.com/users/1/secrets"),
        ("private", "on"),
    ])
    .await;
    expect_sentinel_next(&hub, &mut all).await;
}

#[tokio::test]
async fn r20_star_claim_authorizes_every_private_update() {
    let hub = TestHub::default().await;
    let mut sub = hub.subscribe_to(&["*"], &["*"]).await;
    let id = hub
        .publish_ok(&[("topic", "urn:x"), ("private", "on")])
        .await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

// ---- [R21] anonymous subscribers ----

fn anonymous_config() -> HubConfig {
    HubConfig {
        anonymous: true,
        ..config()
    }
}

#[tokio::test]
async fn r21_no_token_is_401_when_anonymous_is_off() {
    let hub = TestHub::default().await;
    let response = hub.get("topic=*").send().await.unwrap();
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
    let reason = expect_rejection(response, 401).await;
    assert!(reason.contains("token"), "{reason:?}");
    assert_eq!(hub.hub.subscriber_count(), 0);
}

#[tokio::test]
async fn r21_anonymous_subscriber_gets_public_updates_only() {
    let hub = TestHub::start(anonymous_config()).await;
    let mut sub = hub.subscribe("topic=*").await;
    hub.publish_ok(&[("topic", BOOK_1), ("private", "on")])
        .await;
    let id = hub
        .publish_ok(&[("topic", BOOK_1), ("data", "public")])
        .await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn r21_invalid_token_is_401_even_with_anonymous_access() {
    let hub = TestHub::start(anonymous_config()).await;
    let forged = token_with(
        herald_protocol::Algorithm::HS256,
        b"not-the-hub-key-0123456789abcdef",
        serde_json::json!({"mercure": {"subscribe": ["*"]}}),
    );
    for request in [
        hub.get("topic=*").bearer_auth(&forged),
        hub.get(&format!("topic=*&authorization={}", enc(&forged))),
        hub.get("topic=*").bearer_auth("not.a.jwt"),
    ] {
        let response = request.send().await.unwrap();
        expect_rejection(response, 401).await;
    }
    assert_eq!(hub.hub.subscriber_count(), 0);
}

#[tokio::test]
async fn r21_valid_token_still_authorizes_private_updates_in_anonymous_mode() {
    let hub = TestHub::start(anonymous_config()).await;
    let mut sub = hub.subscribe_to(&["*"], &[BOOKS]).await;
    let id = hub
        .publish_ok(&[("topic", BOOK_1), ("private", "on")])
        .await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn r21_anonymous_only_hub_serves_subscribers_without_a_subscriber_key() {
    let hub = TestHub::start(HubConfig {
        subscriber_key: None,
        anonymous: true,
        ..config()
    })
    .await;
    let mut sub = hub.subscribe("topic=*").await;
    let id = hub.publish_ok(&[("topic", "t")]).await;
    assert_eq!(sub.next_event().await.id.as_deref(), Some(id.as_str()));
    // A token cannot be verified here: refused rather than silently ignored.
    let response = hub
        .get("topic=*")
        .bearer_auth(subscriber_token(&["*"]))
        .send()
        .await
        .unwrap();
    expect_rejection(response, 401).await;
}

#[tokio::test]
async fn subscribing_is_disabled_without_subscriber_key_or_anonymous_access() {
    let hub = TestHub::start(HubConfig {
        subscriber_key: None,
        anonymous: false,
        ..config()
    })
    .await;
    let response = hub
        .get("topic=*")
        .bearer_auth(subscriber_token(&["*"]))
        .send()
        .await
        .unwrap();
    let reason = expect_rejection(response, 405).await;
    assert!(reason.contains("disabled"), "{reason:?}");
}

#[tokio::test]
async fn r4_distinct_templates_are_bounded_with_a_clear_503() {
    let mut config = config();
    config.anonymous = true;
    config.max_templates = 2;
    let hub = TestHub::start(config).await;
    let _first = hub.subscribe(&topics_query(&["/a/{x}", "/b/{x}"])).await;
    // The same templates again, and exact topics, are always fine.
    let _again = hub.subscribe(&topics_query(&["/a/{x}", "/exact"])).await;
    let response = hub.get(&topics_query(&["/c/{x}"])).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let reason = response.text().await.unwrap();
    assert!(reason.contains("distinct topic templates"), "{reason}");
    // When nobody uses a template any more, its place is free again.
    drop(_first);
    drop(_again);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = hub
            .get(&topics_query(&["/c/{x}"]))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
