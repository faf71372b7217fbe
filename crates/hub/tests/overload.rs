//! Limits under overload (issue 12, item 3), over real TCP: past `max_connections` open
//! subscriptions a new one gets 503 with `Retry-After` while publishes and `/healthz` are still
//! served; past `max_subscriptions_per_client` a client gets 429 with `Retry-After`; a client is
//! its address (behind a trusted proxy, the one `X-Forwarded-For` names) with its token; the
//! sockets past the connection cap get 503 too; the anonymous template budget is per address.

mod common;

use std::time::Duration;

use common::*;
use herald_hub::HubConfig;
use herald_hub::config::TemplateLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn anonymous_config() -> HubConfig {
    HubConfig {
        anonymous: true,
        ..config()
    }
}

/// The `Retry-After` of `response`, in seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

/// Waits until the hub counts `n` subscribers.
async fn wait_for_subscribers(hub: &TestHub, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.hub.subscriber_count() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} subscribers, expected {n}",
            hub.hub.subscriber_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn subscriptions_past_max_connections_get_503_while_publishes_are_served() {
    let hub = TestHub::start(HubConfig {
        max_connections: Some(2),
        ..anonymous_config()
    })
    .await;
    let first = hub.subscribe("topic=a").await;
    let _second = hub.subscribe("topic=a").await;
    // Past the cap: 503, a reason, and a Retry-After spread over a few seconds.
    let mut waits = Vec::new();
    for _ in 0..5 {
        let refused = hub.get("topic=a").send().await.unwrap();
        waits.push(retry_after(&refused));
        let reason = expect_rejection(refused, 503).await;
        assert!(reason.contains("too many subscriptions"), "{reason}");
    }
    assert!(waits.iter().all(|s| (2..=10).contains(s)), "{waits:?}");
    // HEAD opens no stream: still answered.
    let head = hub.client.head(format!("{}?topic=a", hub.url)).send();
    assert_eq!(head.await.unwrap().status(), 200);
    // Publishing and health checks are not subscriptions.
    let mut reader = first;
    hub.publish_ok(&[("topic", "a"), ("data", "still served")])
        .await;
    assert_eq!(reader.next_event().await.data, "still served");
    let health = hub.client.get(format!("{}/healthz", hub.base)).send();
    assert_eq!(health.await.unwrap().status(), 200);
    // A subscription that ends makes room for the next.
    drop(reader);
    wait_for_subscribers(&hub, 1).await;
    hub.subscribe("topic=a").await;
}

#[tokio::test]
async fn sockets_past_the_connection_cap_get_503() {
    // One subscription allowed: 101 sockets (the cap plus 100 for publishers and probes).
    let hub = TestHub::start(HubConfig {
        max_connections: Some(1),
        ..anonymous_config()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..101 {
        idle.push(TcpStream::connect(hub.addr()).await.unwrap());
    }
    // Each idle socket holds its place until its header timeout; the next one is refused.
    let mut next = TcpStream::connect(hub.addr()).await.unwrap();
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, next.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("too many connections: retry later\n"),
        "{answer}"
    );
    drop(idle);
}

#[tokio::test]
async fn a_client_past_its_cap_gets_429_and_tokens_count_apart() {
    let hub = TestHub::start(HubConfig {
        max_subscriptions_per_client: Some(2),
        ..anonymous_config()
    })
    .await;
    let first = hub.subscribe("topic=a").await;
    let _second = hub.subscribe("topic=a").await;
    let refused = hub.get("topic=a").send().await.unwrap();
    assert_eq!(retry_after(&refused), 5);
    let reason = expect_rejection(refused, 429).await;
    assert!(
        reason.contains("too many subscriptions from this client (the limit is 2)"),
        "{reason}"
    );
    // The same address with a token is another client, with a cap of its own.
    let token = subscriber_token(&["*"]);
    let _with_token = hub
        .subscribe_with(hub.get("topic=a").bearer_auth(&token))
        .await;
    let _again = hub
        .subscribe_with(hub.get("topic=a").bearer_auth(&token))
        .await;
    let refused = hub.get("topic=a").bearer_auth(&token).send().await.unwrap();
    expect_rejection(refused, 429).await;
    // Publishing is not capped per client.
    hub.publish_ok(&[("topic", "a"), ("data", "x")]).await;
    // An anonymous subscription that ends gives its room back.
    drop(first);
    wait_for_subscribers(&hub, 3).await;
    hub.subscribe("topic=a").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_forwarded_address() {
    let hub = TestHub::start(HubConfig {
        max_subscriptions_per_client: Some(1),
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..anonymous_config()
    })
    .await;
    let from = |address: &str| hub.get("topic=a").header("x-forwarded-for", address);
    let _a = hub.subscribe_with(from("203.0.113.1")).await;
    let refused = from("203.0.113.1").send().await.unwrap();
    expect_rejection(refused, 429).await;
    // Another client behind the same proxy.
    let _b = hub.subscribe_with(from("203.0.113.2")).await;
    // What the client itself wrote left of the proxy's entry is not believed.
    let spoofed = from("198.51.100.7, 203.0.113.1").send().await.unwrap();
    expect_rejection(spoofed, 429).await;
    // An IPv6 client is its /64.
    let _c = hub.subscribe_with(from("2001:db8:0:1::1")).await;
    let refused = from("2001:db8:0:1::2").send().await.unwrap();
    expect_rejection(refused, 429).await;
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_for_is_ignored() {
    let hub = TestHub::start(HubConfig {
        max_subscriptions_per_client: Some(1),
        ..anonymous_config()
    })
    .await;
    let _a = hub
        .subscribe_with(hub.get("topic=a").header("x-forwarded-for", "203.0.113.1"))
        .await;
    let refused = hub
        .get("topic=a")
        .header("x-forwarded-for", "203.0.113.2")
        .send()
        .await
        .unwrap();
    expect_rejection(refused, 429).await;
}

#[tokio::test]
async fn r4_anonymous_template_budgets_are_per_address() {
    // `/n/{a}/{b}` costs about 10.5 KiB: five fit in a 56 KiB budget, not six.
    let hub = TestHub::start(HubConfig {
        template_limits: TemplateLimits {
            max_cost: 32 << 10,
            max_request_cost: 56 << 10,
            max_client_cost: 56 << 10,
        },
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        max_subscriptions_per_client: None,
        ..anonymous_config()
    })
    .await;
    let templates = |n: usize| {
        let templates: Vec<String> = (0..n).map(|i| format!("/{i}/{{a}}/{{b}}")).collect();
        topics_query(&templates.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let from = |address: &str, query: &str| hub.get(query).header("x-forwarded-for", address);
    let _full = hub.subscribe_with(from("203.0.113.1", &templates(5))).await;
    let sixth = topics_query(&["/5/{a}/{b}"]);
    let over = from("203.0.113.1", &sixth).send().await.unwrap();
    let reason = expect_rejection(over, 429).await;
    assert!(reason.contains("close subscriptions"), "{reason}");
    // Another anonymous client has a budget of its own.
    hub.subscribe_with(from("203.0.113.2", &templates(5))).await;
}
