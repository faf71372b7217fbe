//! Reconnection and history over real TCP [R25]-[R29][V4], on every transport: each test runs
//! once per [`Backend`] (`memory::NAME`, `embedded::NAME`, `redis::NAME`).

mod common;

use common::*;
use herald_hub::{HistoryLimits, HubConfig};

const TOPIC: &str = "https://example.com/history";

/// Publishes public updates on [`TOPIC`] with the given ids.
async fn publish_ids(hub: &TestHub, ids: &[&str]) {
    for id in ids {
        let got = hub
            .publish_ok(&[("topic", TOPIC), ("id", id), ("data", id)])
            .await;
        assert_eq!(got, *id);
    }
}

/// Subscribes to [`TOPIC`] with `configure` applied to the request.
async fn reconnect(
    hub: &TestHub,
    query: &str,
    configure: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> EventReader {
    let query = if query.is_empty() {
        topics_query(&[TOPIC])
    } else {
        format!("{}&{query}", topics_query(&[TOPIC]))
    };
    hub.subscribe_with(configure(
        hub.get(&query).bearer_auth(subscriber_token(&[])),
    ))
    .await
}

fn last_event_id_header(reader: &EventReader) -> Option<String> {
    reader
        .headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn small_history(max_events: usize) -> HubConfig {
    HubConfig {
        history: HistoryLimits {
            max_events,
            max_age: None,
        },
        ..config()
    }
}

// ---- [R25] replay after an id ----

async fn r25_last_event_id_header_replays_later_events_then_goes_live(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["h1", "h2", "h3"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "h1")).await;
    publish_ids(&hub, &["h4"]).await;
    let events = sub.next_events(3).await;
    assert_eq!(ids_of(&events), ["h2", "h3", "h4"]);
    assert_eq!(events[0].data, "h2");
    sub.assert_no_event(std::time::Duration::from_millis(100))
        .await;
}

async fn r25_last_event_id_query_parameter_replays_later_events(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["q1", "q2", "q3"]).await;
    let mut sub = reconnect(&hub, "lastEventID=q2", |r| r).await;
    publish_ids(&hub, &["q4"]).await;
    assert_eq!(ids_of(&sub.next_events(2).await), ["q3", "q4"]);
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("q2"));
}

async fn r25_header_wins_over_the_query_parameter(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["w1", "w2", "w3"]).await;
    let mut sub = reconnect(&hub, "lastEventID=w1", |r| r.header("Last-Event-ID", "w2")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("w2"));
    publish_ids(&hub, &["w4"]).await;
    assert_eq!(ids_of(&sub.next_events(2).await), ["w3", "w4"]);
}

async fn r25_replay_after_the_newest_event_sends_only_live_events(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["n1", "n2"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "n2")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("n2"));
    publish_ids(&hub, &["n3"]).await;
    assert_eq!(ids_of(&sub.next_events(1).await), ["n3"]);
}

async fn r25_replay_filters_by_selectors_and_private_authorization(backend: Backend) {
    let hub = backend.start(config()).await;
    let books = "https://example.com/books/{id}";
    let book = |n: u32| format!("https://example.com/books/{n}");
    let other = "https://example.com/authors/1";
    hub.publish_ok(&[("topic", "urn:start"), ("id", "start")])
        .await;
    let updates: [(&str, String, bool); 6] = [
        ("public-book", book(1), false),
        ("other-topic", other.to_owned(), false),
        ("private-book-2", book(2), true),
        ("private-book-1", book(1), true),
        ("private-other", other.to_owned(), true),
        ("public-book-3", book(3), false),
    ];
    for (id, topic, private) in &updates {
        let mut fields = vec![("topic", topic.as_str()), ("id", *id)];
        if *private {
            fields.push(("private", "on"));
        }
        hub.publish_ok(&fields).await;
    }
    // Subscribed to books, authorized for book 1 only.
    let mut sub = hub
        .subscribe_with(
            hub.get(&topics_query(&[books]))
                .bearer_auth(subscriber_token(&["https://example.com/books/1"]))
                .header("Last-Event-ID", "start"),
        )
        .await;
    hub.publish_ok(&[("topic", book(9).as_str()), ("id", "live")])
        .await;
    assert_eq!(
        ids_of(&sub.next_events(4).await),
        ["public-book", "private-book-1", "public-book-3", "live"]
    );
    // An anonymous-like subscriber (no rights) on everything sees the public ones only.
    let mut all = hub
        .subscribe_with(
            hub.get(&topics_query(&["*"]))
                .bearer_auth(subscriber_token(&[]))
                .header("Last-Event-ID", "start"),
        )
        .await;
    assert_eq!(
        ids_of(&all.next_events(4).await),
        ["public-book", "other-topic", "public-book-3", "live"]
    );
}

async fn r25_replay_keeps_the_full_frames(backend: Backend) {
    let hub = backend.start(config()).await;
    hub.publish_ok(&[("topic", TOPIC), ("id", "before")]).await;
    hub.publish_ok(&[
        ("topic", TOPIC),
        ("id", "framed"),
        ("type", "kind"),
        ("retry", "42"),
        ("data", "a\r\nb"),
    ])
    .await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "before")).await;
    let event = sub.next_event().await;
    assert_eq!(
        sub.raw,
        ":\nevent: kind\nretry: 42\nid: framed\ndata: a\ndata: b\n\n"
    );
    assert_eq!(event.data, "a\nb");
}

// ---- [R26] earliest ----

async fn r26_earliest_replays_the_whole_retained_history(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["e1", "e2", "e3"]).await;
    let mut by_query = reconnect(&hub, "lastEventID=earliest", |r| r).await;
    let mut by_header = reconnect(&hub, "", |r| r.header("Last-Event-ID", "earliest")).await;
    publish_ids(&hub, &["e4"]).await;
    for sub in [&mut by_query, &mut by_header] {
        assert_eq!(ids_of(&sub.next_events(4).await), ["e1", "e2", "e3", "e4"]);
        assert_eq!(last_event_id_header(sub).as_deref(), Some("earliest"));
    }
}

// ---- [R27] the Last-Event-ID response header ----

async fn r27_header_echoes_a_found_id(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["f1", "f2"]).await;
    let sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "f1")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("f1"));
}

async fn r27_unknown_id_gives_earliest_and_the_whole_history(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["u1", "u2"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "never-published")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("earliest"));
    assert_eq!(ids_of(&sub.next_events(2).await), ["u1", "u2"]);
}

async fn r27_empty_history_gives_earliest(backend: Backend) {
    let hub = backend.start(config()).await;
    let mut sub = reconnect(&hub, "lastEventID=whatever", |r| r).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("earliest"));
    publish_ids(&hub, &["first"]).await;
    assert_eq!(ids_of(&sub.next_events(1).await), ["first"]);
}

async fn r27_earliest_asked_gives_earliest(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["x1"]).await;
    let sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "earliest")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("earliest"));
}

async fn r27_header_absent_when_no_id_was_sent(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["a1"]).await;
    let mut sub = reconnect(&hub, "", |r| r).await;
    assert_eq!(last_event_id_header(&sub), None);
    // And nothing is replayed.
    publish_ids(&hub, &["a2"]).await;
    assert_eq!(ids_of(&sub.next_events(1).await), ["a2"]);
}

async fn r27_header_is_exposed_to_browsers_by_cors(backend: Backend) {
    let hub = backend
        .start(HubConfig {
            cors_origins: vec!["https://app.example.com".into()],
            ..config()
        })
        .await;
    publish_ids(&hub, &["c1"]).await;
    let sub = reconnect(&hub, "", |r| {
        r.header("Last-Event-ID", "c1")
            .header("Origin", "https://app.example.com")
    })
    .await;
    let exposed = sub
        .headers
        .get("access-control-expose-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(exposed.contains("last-event-id"), "{exposed:?}");
}

// ---- [R28] [R29] bounded, indexed history ----

async fn r29_history_keeps_only_the_newest_max_events(backend: Backend) {
    let hub = backend.start(small_history(3)).await;
    publish_ids(&hub, &["b1", "b2", "b3", "b4", "b5"]).await;
    let mut sub = reconnect(&hub, "lastEventID=earliest", |r| r).await;
    publish_ids(&hub, &["b6"]).await;
    assert_eq!(ids_of(&sub.next_events(4).await), ["b3", "b4", "b5", "b6"]);
}

async fn r28_r29_trimmed_id_gives_earliest_and_the_retained_events(backend: Backend) {
    let hub = backend.start(small_history(3)).await;
    publish_ids(&hub, &["t1", "t2", "t3", "t4", "t5"]).await;
    let mut trimmed = reconnect(&hub, "", |r| r.header("Last-Event-ID", "t1")).await;
    assert_eq!(last_event_id_header(&trimmed).as_deref(), Some("earliest"));
    assert_eq!(ids_of(&trimmed.next_events(3).await), ["t3", "t4", "t5"]);
    // The oldest retained id is still found.
    let mut kept = reconnect(&hub, "", |r| r.header("Last-Event-ID", "t3")).await;
    assert_eq!(last_event_id_header(&kept).as_deref(), Some("t3"));
    assert_eq!(ids_of(&kept.next_events(2).await), ["t4", "t5"]);
}

async fn r28_id_lookup_works_deep_in_a_large_history(backend: Backend) {
    // The reference hub gives up after 10,000 entries (its issue #1382).
    let hub = backend.start(small_history(20_000)).await;
    for i in 0..12_000u32 {
        hub.hub
            .publish(herald_protocol::Update {
                id: format!("deep{i}"),
                topics: vec![TOPIC.into()],
                data: String::new(),
                private: false,
                event_type: None,
                retry: None,
            })
            .await
            .unwrap();
    }
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "deep11997")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("deep11997"));
    assert_eq!(
        ids_of(&sub.next_events(2).await),
        ["deep11998", "deep11999"]
    );
    let mut old = reconnect(&hub, "", |r| r.header("Last-Event-ID", "deep5")).await;
    assert_eq!(last_event_id_header(&old).as_deref(), Some("deep5"));
    assert_eq!(old.next_event().await.id.as_deref(), Some("deep6"));
}

async fn r29_history_disabled_replays_nothing(backend: Backend) {
    let hub = backend.start(small_history(0)).await;
    publish_ids(&hub, &["z1", "z2"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "z1")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("earliest"));
    publish_ids(&hub, &["z3"]).await;
    assert_eq!(ids_of(&sub.next_events(1).await), ["z3"]);
}

async fn r13_r25_duplicate_ids_resolve_to_the_latest_occurrence(backend: Backend) {
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["dup", "d1", "dup", "d2"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "dup")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("dup"));
    publish_ids(&hub, &["d3"]).await;
    assert_eq!(ids_of(&sub.next_events(2).await), ["d2", "d3"]);
}

async fn r29_duplicate_id_whose_latest_occurrence_is_kept_after_trimming(backend: Backend) {
    let hub = backend.start(small_history(3)).await;
    // The first "dup" is trimmed; the second one is retained and must still be found.
    publish_ids(&hub, &["dup", "k1", "dup", "k2", "k3"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "dup")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("dup"));
    assert_eq!(ids_of(&sub.next_events(2).await), ["k2", "k3"]);
}

async fn r25_empty_last_event_id_is_no_reconnection(backend: Backend) {
    // As in the reference hub: an empty value is as if none was sent (no replay of the whole
    // history, no response header), and an empty header falls back to the query parameter.
    let hub = backend.start(config()).await;
    publish_ids(&hub, &["m1", "m2"]).await;
    let mut by_header = reconnect(&hub, "", |r| r.header("Last-Event-ID", "")).await;
    let mut by_query = reconnect(&hub, "lastEventID=", |r| r).await;
    publish_ids(&hub, &["live"]).await;
    for (name, sub) in [("header", &mut by_header), ("query", &mut by_query)] {
        assert_eq!(last_event_id_header(sub), None, "empty {name}");
        assert_eq!(ids_of(&sub.next_events(1).await), ["live"]);
    }
    let mut fallback = reconnect(&hub, "lastEventID=m1", |r| r.header("Last-Event-ID", "")).await;
    assert_eq!(last_event_id_header(&fallback).as_deref(), Some("m1"));
    assert_eq!(ids_of(&fallback.next_events(2).await), ["m2", "live"]);
}

async fn r29_history_is_bounded_by_age(backend: Backend) {
    let hub = backend
        .start(HubConfig {
            history: HistoryLimits {
                max_events: 100,
                max_age: Some(std::time::Duration::from_millis(200)),
            },
            ..config()
        })
        .await;
    publish_ids(&hub, &["old1", "old2"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    publish_ids(&hub, &["new1"]).await;
    let mut sub = reconnect(&hub, "", |r| r.header("Last-Event-ID", "old1")).await;
    assert_eq!(last_event_id_header(&sub).as_deref(), Some("earliest"));
    assert_eq!(ids_of(&sub.next_events(1).await), ["new1"]);
    publish_ids(&hub, &["new2"]).await;
    assert_eq!(ids_of(&sub.next_events(1).await), ["new2"]);
}

// ---- [V4] Mercure 1.0 reconnection ----

/// A hub that knows its URL, the audience of 1.0 access tokens.
fn v1_config(config: HubConfig) -> HubConfig {
    HubConfig {
        hub_url: Some(V1_HUB_URL.into()),
        ..config
    }
}

/// Subscribes as a 1.0 client (`match=TOPIC`) with `query` added, and `rights` (exact topics)
/// in its access token.
async fn v1_reconnect(hub: &TestHub, query: &str, rights: &[&str]) -> EventReader {
    let rights: Vec<(&str, &str)> = rights.iter().map(|topic| ("exact", *topic)).collect();
    let details = if rights.is_empty() {
        vec![]
    } else {
        vec![v1_detail(&["subscribe"], &rights, None)]
    };
    hub.subscribe_with(
        hub.get(&format!("match={}&{query}", enc(TOPIC)))
            .bearer_auth(v1_access_token(details)),
    )
    .await
}

fn v1_last_event_id_header(reader: &EventReader) -> Option<String> {
    reader
        .headers
        .get("mercure-last-event-id")
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn v4_last_event_id_parameter_replays_later_events(backend: Backend) {
    let hub = backend.start(v1_config(config())).await;
    publish_ids(&hub, &["v1", "v2", "v3"]).await;
    let mut sub = v1_reconnect(&hub, "last_event_id=v1", &[]).await;
    assert_eq!(v1_last_event_id_header(&sub).as_deref(), Some("v1"));
    assert_eq!(last_event_id_header(&sub), None);
    assert_eq!(ids_of(&sub.next_events(2).await), ["v2", "v3"]);
}

async fn v4_duplicate_ids_resolve_to_the_earliest_occurrence(backend: Backend) {
    let hub = backend.start(v1_config(config())).await;
    publish_ids(&hub, &["dup", "d1", "dup", "d2"]).await;
    let mut sub = v1_reconnect(&hub, "last_event_id=dup", &[]).await;
    assert_eq!(v1_last_event_id_header(&sub).as_deref(), Some("dup"));
    publish_ids(&hub, &["d3"]).await;
    assert_eq!(ids_of(&sub.next_events(4).await), ["d1", "dup", "d2", "d3"]);
    // draft-07 requests keep resolving to the latest occurrence on the same hub.
    let mut draft07 = reconnect(&hub, "", |r| r.header("Last-Event-ID", "dup")).await;
    assert_eq!(ids_of(&draft07.next_events(2).await), ["d2", "d3"]);
}

async fn v4_duplicate_whose_earliest_occurrence_was_trimmed_gives_earliest(backend: Backend) {
    let hub = backend.start(v1_config(small_history(3))).await;
    // The first "dup" is trimmed, the second is retained: the oldest retained occurrence is not
    // tracked, so 1.0 replays the whole retained history and says so.
    publish_ids(&hub, &["dup", "k1", "dup", "k2", "k3"]).await;
    let mut sub = v1_reconnect(&hub, "last_event_id=dup", &[]).await;
    assert_eq!(v1_last_event_id_header(&sub).as_deref(), Some("earliest"));
    assert_eq!(ids_of(&sub.next_events(3).await), ["dup", "k2", "k3"]);
    // Once every occurrence is trimmed, the id is unknown to both editions.
    publish_ids(&hub, &["k4", "k5", "k6"]).await;
    let mut gone = v1_reconnect(&hub, "last_event_id=dup", &[]).await;
    assert_eq!(v1_last_event_id_header(&gone).as_deref(), Some("earliest"));
    assert_eq!(ids_of(&gone.next_events(3).await), ["k4", "k5", "k6"]);
    // A new occurrence after that is found again.
    publish_ids(&hub, &["dup", "k7"]).await;
    let mut again = v1_reconnect(&hub, "last_event_id=dup", &[]).await;
    assert_eq!(v1_last_event_id_header(&again).as_deref(), Some("dup"));
    assert_eq!(ids_of(&again.next_events(1).await), ["k7"]);
}

async fn v4_unknown_id_gives_earliest(backend: Backend) {
    let hub = backend.start(v1_config(config())).await;
    publish_ids(&hub, &["u1", "u2"]).await;
    let mut sub = v1_reconnect(&hub, "last_event_id=nowhere", &[]).await;
    assert_eq!(v1_last_event_id_header(&sub).as_deref(), Some("earliest"));
    assert_eq!(ids_of(&sub.next_events(2).await), ["u1", "u2"]);
}

async fn v4_replay_is_reauthorized_against_the_current_token(backend: Backend) {
    let hub = backend.start(v1_config(config())).await;
    publish_ids(&hub, &["start"]).await;
    for id in ["secret-1", "secret-2"] {
        hub.publish_ok(&[("topic", TOPIC), ("id", id), ("private", "on")])
            .await;
    }
    publish_ids(&hub, &["public"]).await;
    // The token the private updates were meant for...
    let mut allowed = v1_reconnect(&hub, "last_event_id=start", &[TOPIC]).await;
    assert_eq!(
        ids_of(&allowed.next_events(3).await),
        ["secret-1", "secret-2", "public"]
    );
    // ...but a subscriber whose current token no longer covers the topic gets none of them.
    let mut revoked = v1_reconnect(&hub, "last_event_id=start", &[]).await;
    assert_eq!(ids_of(&revoked.next_events(1).await), ["public"]);
    publish_ids(&hub, &["after"]).await;
    assert_eq!(ids_of(&revoked.next_events(1).await), ["after"]);
}

async fn v4_r27_header_never_names_an_event_the_token_may_not_read(backend: Backend) {
    let hub = backend.start(v1_config(config())).await;
    publish_ids(&hub, &["before"]).await;
    hub.publish_ok(&[("topic", TOPIC), ("id", "secret"), ("private", "on")])
        .await;
    publish_ids(&hub, &["after"]).await;
    // A token that may read the private update: the header names it.
    let mut allowed = v1_reconnect(&hub, "last_event_id=secret", &[TOPIC]).await;
    assert_eq!(v1_last_event_id_header(&allowed).as_deref(), Some("secret"));
    assert_eq!(ids_of(&allowed.next_events(1).await), ["after"]);
    // One that may not: `earliest` (draft-08 "Reconciliation": the hub MUST NOT disclose the
    // id of an event the subscriber may not receive), and the replay is the same.
    let mut denied = v1_reconnect(&hub, "last_event_id=secret", &[]).await;
    assert_eq!(
        v1_last_event_id_header(&denied).as_deref(),
        Some("earliest")
    );
    assert_eq!(ids_of(&denied.next_events(1).await), ["after"]);
    denied
        .assert_no_event(std::time::Duration::from_millis(100))
        .await;
    // A public anchor is named to anyone; draft-07 requests follow the same rule.
    let public = v1_reconnect(&hub, "last_event_id=before", &[]).await;
    assert_eq!(v1_last_event_id_header(&public).as_deref(), Some("before"));
    let draft07 = reconnect(&hub, "", |r| r.header("Last-Event-ID", "secret")).await;
    assert_eq!(last_event_id_header(&draft07).as_deref(), Some("earliest"));
}

on_every_backend!(
    v4_r27_header_never_names_an_event_the_token_may_not_read,
    v4_last_event_id_parameter_replays_later_events,
    v4_duplicate_ids_resolve_to_the_earliest_occurrence,
    v4_duplicate_whose_earliest_occurrence_was_trimmed_gives_earliest,
    v4_unknown_id_gives_earliest,
    v4_replay_is_reauthorized_against_the_current_token,
    r25_last_event_id_header_replays_later_events_then_goes_live,
    r25_last_event_id_query_parameter_replays_later_events,
    r25_header_wins_over_the_query_parameter,
    r25_replay_after_the_newest_event_sends_only_live_events,
    r25_replay_filters_by_selectors_and_private_authorization,
    r25_replay_keeps_the_full_frames,
    r26_earliest_replays_the_whole_retained_history,
    r27_header_echoes_a_found_id,
    r27_unknown_id_gives_earliest_and_the_whole_history,
    r27_empty_history_gives_earliest,
    r27_earliest_asked_gives_earliest,
    r27_header_absent_when_no_id_was_sent,
    r27_header_is_exposed_to_browsers_by_cors,
    r29_history_keeps_only_the_newest_max_events,
    r28_r29_trimmed_id_gives_earliest_and_the_retained_events,
    r28_id_lookup_works_deep_in_a_large_history,
    r29_history_disabled_replays_nothing,
    r13_r25_duplicate_ids_resolve_to_the_latest_occurrence,
    r29_duplicate_id_whose_latest_occurrence_is_kept_after_trimming,
    r25_empty_last_event_id_is_no_reconnection,
    r29_history_is_bounded_by_age,
);
