//! Several `herald serve` processes on one real Redis behave as one hub, and lose nothing they
//! acknowledged when a node or Redis fails [R7][R25][R28].
//!
//! Each test starts its own `redis-server` (Debian package `redis-server`; the tests fail, not
//! skip, without it) on a free port with its own directory, and real herald processes with
//! `--transport redis://...`; nodes are killed with SIGKILL and Redis is stopped for real.

mod common;

use std::time::Duration;

use common::nginx::Nginx;
use common::redis::{Persistence, RedisServer};
use common::{HubProcess, Subscription, ids, publish, publish_all, publish_in_order};

fn node(redis: &RedisServer, extra: &[&str]) -> HubProcess {
    let url = redis.url();
    let mut args = vec!["--transport", url.as_str()];
    args.extend_from_slice(extra);
    HubProcess::start_with(&args)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Publishes `ids` concurrently, round-robin over `urls`, asserting each is acknowledged.
async fn publish_spread(urls: &[String], ids: &[String], concurrency: usize) {
    let client = crate::common::http_client();
    let targets: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), urls[i % urls.len()].clone()))
        .collect();
    futures_util::stream::iter(targets)
        .for_each_concurrent(concurrency, |(id, url)| {
            let client = client.clone();
            async move {
                let response = publish(&client, &url, &id, &format!("data of {id}")).await;
                assert_eq!(response.status(), 200, "publish {id} on {url}");
            }
        })
        .await;
}

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_everything_in_one_order() {
    let redis = RedisServer::start(Persistence::None);
    let nodes: Vec<_> = (0..3).map(|_| node(&redis, &[])).collect();
    let urls: Vec<_> = nodes.iter().map(HubProcess::url).collect();
    let mut subscribers = Vec::new();
    for url in &urls {
        subscribers.push(Subscription::open(url, None).await);
    }
    let published = ids("spread", 150);
    publish_spread(&urls, &published, 16).await;
    let mut orders = Vec::new();
    for subscriber in &mut subscribers {
        orders.push(subscriber.wait_for(published.len()).await);
    }
    assert_eq!(sorted(orders[0].clone()), published, "everything, once");
    assert_eq!(orders[1], orders[0], "node 2 delivers in node 1's order");
    assert_eq!(orders[2], orders[0], "node 3 delivers in node 1's order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r25_last_event_id_resumes_on_another_node() {
    let redis = RedisServer::start(Persistence::None);
    let (a, b, c) = (node(&redis, &[]), node(&redis, &[]), node(&redis, &[]));
    let first = ids("first", 20);
    publish_in_order(&a.url(), &first).await;
    // A client that had received first[..10] from node A reconnects to node B.
    let mut resumed = Subscription::open(&b.url(), Some(&first[9])).await;
    assert_eq!(resumed.replay_start.as_deref(), Some(first[9].as_str()));
    // Publishing goes on, on node C, while it replays.
    let more = ids("more", 20);
    publish_in_order(&c.url(), &more).await;
    let expected: Vec<_> = first[10..].iter().chain(&more).cloned().collect();
    assert_eq!(
        resumed.wait_for(expected.len()).await,
        expected,
        "replay then live: nothing twice, nothing missed"
    );
    // And an id nobody published replays everything kept [R27].
    let everything = Subscription::open(&c.url(), Some("never-published")).await;
    assert_eq!(everything.replay_start.as_deref(), Some("earliest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_its_subscribers_resume_elsewhere_exactly_once() {
    let redis = RedisServer::start(Persistence::None);
    let doomed = node(&redis, &[]);
    let (b, c) = (node(&redis, &[]), node(&redis, &[]));
    let mut subscriber = Subscription::open(&doomed.url(), None).await;
    let published = ids("k9", 400);
    let publishing = {
        let urls = vec![b.url(), c.url()];
        let published = published.clone();
        tokio::spawn(async move { publish_spread(&urls, &published, 8).await })
    };
    // Node A dies while the others publish.
    subscriber.wait_for(50).await;
    doomed.kill9();
    let before = subscriber.wait_for_end().await;
    assert!(before.len() < published.len(), "killed mid-way");
    // The client reconnects to node B with the last id it received.
    let last = before.last().unwrap().clone();
    let mut resumed = Subscription::open(&b.url(), Some(&last)).await;
    publishing.await.unwrap();
    let after = resumed.wait_for(published.len() - before.len()).await;
    let mut all = before;
    all.extend(after);
    assert_eq!(all.len(), published.len(), "nothing twice");
    assert_eq!(sorted(all), published, "every acknowledged update");
}

/// Publishes until the hub acknowledges one (Redis is back and the node reconnected); returns
/// the acknowledged ids.
async fn publish_until_acknowledged(url: &str, prefix: &str) -> Vec<String> {
    let client = crate::common::http_client();
    for attempt in 0..200 {
        let id = format!("{prefix}-{attempt}");
        if publish(&client, url, &id, "probe").await.status() == 200 {
            return vec![id];
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node never published again after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_publishes_fail_fast_streams_stay_open_and_resume_when_it_is_back() {
    let mut redis = RedisServer::start(Persistence::None);
    let (a, b) = (
        node(&redis, &["--heartbeat", "1s"]),
        node(&redis, &["--heartbeat", "1s"]),
    );
    let mut subscriber = Subscription::open(&b.url(), None).await;
    let mut acknowledged = ids("before", 5);
    publish_in_order(&a.url(), &acknowledged).await;
    subscriber.wait_for(5).await;

    redis.kill9();
    let client = crate::common::http_client();
    let started = std::time::Instant::now();
    let response = publish(&client, &a.url(), "while-down", "lost").await;
    assert_eq!(response.status(), 503);
    let reason = response.text().await.unwrap();
    assert!(reason.contains("Redis"), "says why: {reason}");
    // Fast: bounded by the hub's Redis timeouts, not hanging (a generous bound, not a timing).
    assert!(started.elapsed() < Duration::from_secs(15));
    // The open stream stays open: heartbeats keep coming.
    let heartbeats = subscriber.text.matches(":\n").count();
    assert!(
        subscriber
            .read_until(Duration::from_secs(10), |text| text.matches(":\n").count()
                >= heartbeats + 2)
            .await,
        "the stream stays open while Redis is down"
    );

    redis.restart();
    acknowledged.extend(publish_until_acknowledged(&a.url(), "back-a").await);
    acknowledged.extend(publish_until_acknowledged(&b.url(), "back-b").await);
    let after = ids("after", 5);
    publish_in_order(&b.url(), &after).await;
    acknowledged.extend(after);
    assert_eq!(
        subscriber.wait_for(acknowledged.len()).await,
        acknowledged,
        "the connected subscriber missed nothing acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_replays_the_history_already_in_redis() {
    let redis = RedisServer::start(Persistence::None);
    let early = node(&redis, &[]);
    let published = ids("early", 30);
    publish_in_order(&early.url(), &published).await;
    let late = node(&redis, &[]);
    let mut everything = Subscription::open(&late.url(), Some("earliest")).await;
    assert_eq!(everything.wait_for(30).await, published);
    let mut rest = Subscription::open(&late.url(), Some(&published[14])).await;
    assert_eq!(rest.wait_for(15).await, published[15..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_updates_survive_a_redis_kill_with_aof_always() {
    let mut redis = RedisServer::start(Persistence::AofAlways);
    let hub = node(&redis, &[]);
    let published = ids("aof", 200);
    publish_all(&hub.url(), &published, 16).await;
    redis.kill9();
    redis.restart();
    // The same node, reconnected, and a node started after the restart both replay it all.
    let fresh = node(&redis, &[]);
    let mut replayed = Subscription::open(&fresh.url(), Some("earliest")).await;
    let order = replayed.wait_for(200).await;
    assert_eq!(sorted(order.clone()), published);
    let probe = publish_until_acknowledged(&hub.url(), "after-restart").await;
    let mut again = Subscription::open(&hub.url(), Some(&order[0])).await;
    let expected: Vec<_> = order[1..].iter().chain(&probe).cloned().collect();
    assert_eq!(again.wait_for(200).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r29_history_is_bounded_by_count_in_redis_with_the_index() {
    let redis = RedisServer::start(Persistence::None);
    let hub = node(&redis, &["--history-size", "20"]);
    let published = ids("bound", 50);
    publish_in_order(&hub.url(), &published).await;
    let mut kept = Subscription::open(&hub.url(), Some("earliest")).await;
    assert_eq!(kept.wait_for(20).await, published[30..]);
    assert_eq!(redis.cli(&["XLEN", "herald"]), "20");
    assert_eq!(
        redis.cli(&["HLEN", "herald:ids"]),
        "20",
        "the index is trimmed too"
    );
    // A trimmed id replays from the earliest kept [R27].
    let trimmed = Subscription::open(&hub.url(), Some(&published[3])).await;
    assert_eq!(trimmed.replay_start.as_deref(), Some("earliest"));
}

#[test]
fn a_bad_redis_url_or_an_unreachable_redis_stops_the_start_with_one_line() {
    let run = |transport: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--jwt-key", common::KEY])
            .args(["--transport", transport])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run("redis://:secret@127.0.0.1:notaport");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("transport"), "names the setting: {stderr}");
    assert!(
        !stderr.contains("secret"),
        "never prints the password: {stderr}"
    );
    let port = common::redis::free_port();
    let (code, stderr) = run(&format!("redis://:secret@127.0.0.1:{port}"));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "never prints the password: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_two_nodes_without_sticky_sessions() {
    let redis = RedisServer::start(Persistence::None);
    let (a, b) = (node(&redis, &[]), node(&redis, &[]));
    let proxy = Nginx::start(&[&a.addr, &b.addr]);
    // Round robin: these subscriptions land on both nodes.
    let mut subscribers = Vec::new();
    for _ in 0..4 {
        subscribers.push(Subscription::open(&proxy.url(), None).await);
    }
    // And so do these publishes.
    let published = ids("proxied", 40);
    publish_in_order(&proxy.url(), &published).await;
    for subscriber in &mut subscribers {
        assert_eq!(
            subscriber.wait_for(40).await,
            published,
            "streamed through nginx"
        );
    }
    // A client that reconnects through the proxy resumes wherever it lands.
    for _ in 0..2 {
        let mut resumed = Subscription::open(&proxy.url(), Some(&published[29])).await;
        assert_eq!(resumed.wait_for(10).await, published[30..]);
    }
    // A node dies: its subscribers reconnect through nginx, which sends them to the other.
    a.kill9();
    let last = subscribers[0].ids().last().unwrap().clone();
    let more = ids("after-a", 10);
    publish_in_order(&proxy.url(), &more).await;
    let mut resumed = Subscription::open(&proxy.url(), Some(&last)).await;
    assert_eq!(resumed.wait_for(10).await, more);
    drop(b);
}

/// The topics of the active subscriptions the API of `node` lists [R31].
async fn listed_topics(node: &HubProcess) -> Vec<String> {
    let response = crate::common::http_client()
        .get(format!("{}/subscriptions", node.url()))
        .bearer_auth(common::token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let mut topics: Vec<String> = body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap().to_owned())
        .collect();
    topics.sort();
    topics
}

/// Polls the API of `node` until it lists exactly `expected` (sorted), or panics after 30 s.
async fn wait_for_listed(node: &HubProcess, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let topics = listed_topics(node).await;
        if topics == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listed {topics:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r30_r31_subscriptions_of_the_whole_cluster_and_of_a_killed_node() {
    const X: &str = "https://example.com/x";
    const Y: &str = "https://example.com/y";
    let redis = RedisServer::start(Persistence::None);
    let start = || node(&redis, &["--subscriptions"]);
    let (a, b, c) = (start(), start(), start());
    // A watcher of subscription events on node C (its token's rights cover them).
    let mut watcher = Subscription::open(&c.url(), None).await;
    let _x = Subscription::open_query(&a.url(), &format!("topic={X}"), None).await;
    let _y = Subscription::open_query(&b.url(), &format!("topic={Y}"), None).await;
    // Subscription events reach watchers on any node [R30].
    let started = |topic: &'static str| {
        move |text: &str| {
            text.lines().any(|line| {
                line.contains(&format!("\"topic\":\"{topic}\"")) && line.contains("\"active\":true")
            })
        }
    };
    assert!(
        watcher
            .read_until(Duration::from_secs(10), started(X))
            .await
    );
    assert!(
        watcher
            .read_until(Duration::from_secs(10), started(Y))
            .await
    );
    // The API of every node lists every node's subscriptions (the watcher's `*` too) [R31].
    for node in [&a, &b, &c] {
        wait_for_listed(node, &["*", X, Y]).await;
    }

    // Node A dies without a word: once its lease runs out, a survivor announces the end of its
    // subscriptions, and the API stops listing them.
    a.kill9();
    let ended = |text: &str| {
        text.lines().any(|line| {
            line.contains(&format!("\"topic\":\"{X}\"")) && line.contains("\"active\":false")
        })
    };
    assert!(
        watcher.read_until(Duration::from_secs(30), ended).await,
        "the end of the dead node's subscription is announced"
    );
    wait_for_listed(&b, &["*", Y]).await;
    wait_for_listed(&c, &["*", Y]).await;
}
