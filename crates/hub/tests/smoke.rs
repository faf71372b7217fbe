//! The shortest path through the hub: one subscriber, one publish, one event.

mod common;

use common::*;

#[tokio::test]
async fn r8_published_update_reaches_a_matching_subscriber() {
    let hub = TestHub::default().await;
    let mut sub = hub
        .subscribe_with(
            hub.get(&format!("topic={}", enc("https://example.com/books/{id}")))
                .bearer_auth(subscriber_token(&[])),
        )
        .await;
    let id = hub
        .publish_ok(&[("topic", "https://example.com/books/1"), ("data", "hello")])
        .await;
    let event = sub.next_event().await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()));
    assert_eq!(event.data, "hello");
}
