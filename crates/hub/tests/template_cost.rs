//! [R3][R4] What topic templates may cost one request and one client (issue 13, failure 1):
//! hostile requests are refused before anything is compiled, with a reason that says what to
//! change, and normal templates keep working.

mod common;

use common::*;
use herald_hub::HubConfig;
use herald_hub::config::TemplateLimits;
use serde_json::json;

fn anonymous() -> HubConfig {
    HubConfig {
        anonymous: true,
        ..config()
    }
}

#[tokio::test]
async fn r4_a_thousand_prefix_templates_in_one_request_are_refused() {
    let hub = TestHub::start(anonymous()).await;
    let templates: Vec<String> = (0..1000).map(|i| format!("{{a:128}}/{i}")).collect();
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    let response = hub.get(&topics_query(&templates)).send().await.unwrap();
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("per request"), "{reason}");
    // Fewer of them are fine: the prefix past the budget costs little.
    let _ok = hub.subscribe(&topics_query(&templates[..50])).await;
}

#[tokio::test]
async fn r4_a_template_of_a_hundred_parts_is_refused_with_what_to_simplify() {
    let hub = TestHub::start(anonymous()).await;
    let template: String = (0..100).map(|_| "{/v}").collect();
    let response = hub.get(&topics_query(&[&template])).send().await.unwrap();
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("too complex"), "{reason}");
    assert!(reason.contains("fewer variables"), "{reason}");
}

#[tokio::test]
async fn r3_normal_templates_still_route_updates() {
    let hub = TestHub::start(anonymous()).await;
    let mut books = hub
        .subscribe(&topics_query(&["https://example.com/books/{id}"]))
        .await;
    let mut paths = hub
        .subscribe(&topics_query(&["https://paths.example.com{/path*}"]))
        .await;
    let mut search = hub
        .subscribe(&topics_query(&["https://example.com/search{?q,lang}"]))
        .await;
    for (reader, topic) in [
        (&mut books, "https://example.com/books/1"),
        (&mut paths, "https://paths.example.com/a/b/c"),
        (&mut search, "https://example.com/search?q=x&lang=fr"),
    ] {
        hub.publish_ok(&[("topic", topic), ("data", topic)]).await;
        assert_eq!(reader.next_event().await.data, topic);
    }
}

#[tokio::test]
async fn r4_a_token_with_a_costly_subscribe_claim_is_refused() {
    let hub = TestHub::default().await;
    let costly: String = (0..100).map(|_| "{/v}").collect();
    let response = hub
        .get("topic=*")
        .bearer_auth(subscriber_token(&[&costly]))
        .send()
        .await
        .unwrap();
    let reason = expect_rejection(response, 400).await;
    assert!(reason.contains("too complex"), "{reason}");
    let publisher = token(json!({"mercure": {"publish": [costly]}}));
    let response = hub
        .publish_with(&publisher, &[("topic", "/v"), ("data", "x")])
        .await;
    expect_rejection(response, 400).await;
}

#[tokio::test]
async fn r4_one_client_keeps_at_most_its_budget_of_templates_alive() {
    let hub = TestHub::start(HubConfig {
        template_limits: TemplateLimits {
            max_cost: 32 << 10,
            max_request_cost: 32 << 10,
            max_client_cost: 56 << 10,
        },
        ..anonymous()
    })
    .await;
    // `/n/{a}/{b}` costs about 10.5 KiB: five fit in the anonymous budget, not six.
    let template = |n: usize| format!("/{n}/{{a}}/{{b}}");
    let mut open = Vec::new();
    for n in 0..5 {
        open.push(hub.subscribe(&topics_query(&[&template(n)])).await);
    }
    let response = hub
        .get(&topics_query(&[&template(5)]))
        .send()
        .await
        .unwrap();
    let reason = expect_rejection(response, 429).await;
    assert!(reason.contains("close subscriptions"), "{reason}");
    // A template the client already keeps alive costs nothing more.
    let _again = hub.subscribe(&topics_query(&[&template(0)])).await;
    // A token holder is another client.
    let _other = hub
        .subscribe_with(
            hub.get(&topics_query(&[&template(5)]))
                .bearer_auth(subscriber_token(&[])),
        )
        .await;
    // Closing subscriptions gives the budget back.
    open.clear();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = hub
            .get(&topics_query(&[&template(6)]))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            response.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn template_limits_out_of_order_are_refused_naming_the_setting() {
    let with = |max_cost, max_request_cost, max_client_cost| HubConfig {
        template_limits: TemplateLimits {
            max_cost,
            max_request_cost,
            max_client_cost,
        },
        ..config()
    };
    let setting = |config: HubConfig| config.validate().err().map(|e| e.setting);
    assert_eq!(
        setting(with(0, 1 << 20, 16 << 20)),
        Some("max-template-cost")
    );
    assert_eq!(
        setting(with(128 << 10, 64 << 10, 16 << 20)),
        Some("max-request-template-cost")
    );
    assert_eq!(
        setting(with(128 << 10, 1 << 20, 512 << 10)),
        Some("max-client-template-cost")
    );
    assert_eq!(setting(with(128 << 10, 1 << 20, 16 << 20)), None);
}
