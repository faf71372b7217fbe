//! The client against a real hub over TCP (`herald_hub::serve` on a free loopback port), and,
//! for what Herald never does (replaying events the client already has), against a small fake
//! SSE server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_client::token::{AccessGrants, Algorithm, MercureClaim, TokenMinter, TopicMatch};
use herald_client::{
    Discovery, Event, EventStream, Publication, PublishError, Publisher, SubscribeError,
    Subscriber, Update,
};
use herald_hub::{Hub, HubConfig, JwtKey};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const KEY: &str = "herald-client-test-key-0123456789";
const WAIT: Duration = Duration::from_secs(5);

fn config() -> HubConfig {
    let key = JwtKey {
        algorithm: Algorithm::HS256,
        key: KEY.as_bytes().to_vec(),
    };
    HubConfig {
        publisher_key: Some(key.clone()),
        subscriber_key: Some(key),
        anonymous: true,
        ..HubConfig::default()
    }
}

struct TestHub {
    url: String,
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(config: HubConfig) -> TestHub {
    let hub = Hub::new(config).await.expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(herald_hub::serve(listener, hub, async {
        let _ = stopped.await;
    }));
    TestHub {
        url: format!("{base}/.well-known/mercure"),
        base,
        _stop: stop,
    }
}

fn minter() -> TokenMinter {
    TokenMinter::hmac(KEY)
}

fn token(claim: MercureClaim) -> String {
    minter()
        .mint(&claim, Some(Duration::from_secs(600)))
        .unwrap()
}

fn publisher(hub: &TestHub) -> Publisher {
    Publisher::with_key(&hub.url, KEY).unwrap()
}

async fn next(events: &mut EventStream) -> Event {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("no error")
}

async fn assert_quiet(events: &mut EventStream, within: Duration) {
    if let Ok(item) = tokio::time::timeout(within, events.next()).await {
        panic!("expected nothing, got {item:?}");
    }
}

// ---- publishing and receiving ----

#[tokio::test]
async fn a_published_update_reaches_the_subscriber_with_every_field() {
    let hub = start(config()).await;
    let mut events = Subscriber::new(&hub.url)
        .topic("https://example.com/books/{id}")
        .connect()
        .await
        .unwrap();
    let publisher = Publisher::new(&hub.url, token(MercureClaim::publisher(["*"]))).unwrap();
    let id = publisher
        .publish(
            Publication::new("https://example.com/books/1")
                .topic("https://example.com/authors/7")
                .data("line one\nline two")
                .event_type("book")
                .retry(2500),
        )
        .await
        .unwrap();
    assert!(id.starts_with("urn:uuid:"), "{id}");
    let event = next(&mut events).await;
    assert_eq!(
        event,
        Event {
            id: Some(id.clone()),
            event_type: Some("book".into()),
            data: "line one\nline two".into(),
            retry: Some(Duration::from_millis(2500)),
        }
    );
    assert_eq!(events.last_event_id(), Some(id));
}

#[tokio::test]
async fn v1_matchers_subscribe_with_match_parameters() {
    let hub = start(config()).await;
    let mut events = Subscriber::new(&hub.url)
        .match_urlpattern("https://example.com/books/:id")
        .match_exact("https://example.com/authors/{id}")
        .connect()
        .await
        .unwrap();
    let publisher = publisher(&hub);
    // Not selected: a URL pattern does not cross `/`, and an exact matcher is no template.
    publisher
        .publish(Publication::new("https://example.com/books/1/reviews"))
        .await
        .unwrap();
    publisher
        .publish(Publication::new("https://example.com/authors/1"))
        .await
        .unwrap();
    let book = publisher
        .publish(Publication::new("https://example.com/books/1"))
        .await
        .unwrap();
    let literal = publisher
        .publish(Publication::new("https://example.com/authors/{id}"))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await.id, Some(book));
    assert_eq!(next(&mut events).await.id, Some(literal));
    // One edition per subscription: the mix is refused before any request.
    let mixed = Subscriber::new(&hub.url)
        .topic("a")
        .match_exact("b")
        .stream()
        .map(|_| ())
        .unwrap_err();
    assert!(mixed.to_string().contains("not both"), "{mixed}");
}

#[tokio::test]
async fn a_protocol_update_and_a_chosen_id_are_published_as_given() {
    let hub = start(config()).await;
    let mut events = Subscriber::new(&hub.url)
        .topic("*")
        .connect()
        .await
        .unwrap();
    let update = Update {
        id: "https://example.com/events/42".into(),
        topics: vec!["https://example.com/books/1".into()],
        data: json!({"title": "Dune"}).to_string(),
        private: false,
        event_type: None,
        retry: None,
    };
    let id = publisher(&hub).publish(&update).await.unwrap();
    assert_eq!(id, "https://example.com/events/42");
    let event = next(&mut events).await;
    assert_eq!(event.id.as_deref(), Some("https://example.com/events/42"));
    assert_eq!(event.json::<serde_json::Value>().unwrap()["title"], "Dune");
}

#[tokio::test]
async fn private_updates_reach_only_authorized_subscribers() {
    let hub = start(config()).await;
    let mut anonymous = Subscriber::new(&hub.url)
        .topic("https://example.com/users/42/inbox")
        .connect()
        .await
        .unwrap();
    let mut authorized = Subscriber::new(&hub.url)
        .topic("https://example.com/users/42/inbox")
        .token(token(MercureClaim::subscriber([
            "https://example.com/users/42/{+rest}",
        ])))
        .connect()
        .await
        .unwrap();
    let publisher = publisher(&hub);
    let secret = publisher
        .publish(
            Publication::new("https://example.com/users/42/inbox")
                .data("secret")
                .private(),
        )
        .await
        .unwrap();
    let public = publisher
        .publish(Publication::new("https://example.com/users/42/inbox").data("public"))
        .await
        .unwrap();
    assert_eq!(next(&mut authorized).await.id, Some(secret));
    assert_eq!(next(&mut authorized).await.id, Some(public.clone()));
    assert_eq!(next(&mut anonymous).await.id, Some(public));
    assert_quiet(&mut anonymous, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn v2_the_client_presents_mercure_1_0_access_tokens() {
    const HUB_URL: &str = "https://hub.example/.well-known/mercure";
    let hub = start(HubConfig {
        hub_url: Some(HUB_URL.into()),
        ..config()
    })
    .await;
    let grants = |publish: Vec<TopicMatch>, subscribe: Vec<TopicMatch>| AccessGrants {
        publish,
        subscribe,
        audience: HUB_URL.into(),
        ..AccessGrants::default()
    };
    let access_token = |grants: AccessGrants| {
        minter()
            .mint_access_token(&grants, Duration::from_secs(600))
            .unwrap()
    };
    let topic = "https://example.com/users/42/inbox";
    // A 1.0 token goes with the 1.0 parameters (a draft-07 `topic=` query is refused with it).
    let mut authorized = Subscriber::new(&hub.url)
        .match_exact(topic)
        .token(access_token(grants(
            vec![],
            vec![TopicMatch::UrlPattern(
                "https://example.com/users/42/:box".into(),
            )],
        )))
        .connect()
        .await
        .unwrap();
    let publisher = Publisher::new(
        &hub.url,
        access_token(grants(vec![TopicMatch::Exact("*".into())], vec![])),
    )
    .unwrap();
    let id = publisher
        .publish(Publication::new(topic).data("secret").private())
        .await
        .unwrap();
    assert_eq!(next(&mut authorized).await.id, Some(id));
}

#[tokio::test]
async fn a_key_publisher_can_be_narrowed_and_use_another_algorithm() {
    let hub = start(config()).await;
    let narrow = Publisher::builder(&hub.url)
        .minter(TokenMinter::new(Algorithm::HS256, KEY.as_bytes()).unwrap())
        .publish_selectors(["https://example.com/books/{id}"])
        .token_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    narrow
        .publish(Publication::new("https://example.com/books/1"))
        .await
        .unwrap();
    let err = narrow
        .publish(Publication::new("https://example.com/users/1"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Forbidden { .. }), "{err}");
}

// ---- typed errors ----

#[tokio::test]
async fn refusals_are_typed_and_carry_the_hubs_reason() {
    let hub = start(HubConfig {
        max_body_bytes: 1024,
        ..config()
    })
    .await;

    let bad_token = Publisher::new(&hub.url, "not-a-jwt").unwrap();
    let err = bad_token
        .publish(Publication::new("https://example.com/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unauthorized { .. }), "{err}");
    assert_eq!(err.status(), Some(401));
    assert!(!err.reason().unwrap().is_empty(), "{err}");

    let wrong_key = Publisher::with_key(&hub.url, "some-other-key").unwrap();
    let err = wrong_key
        .publish(Publication::new("https://example.com/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");

    let subscriber_only = Publisher::new(&hub.url, token(MercureClaim::subscriber(["*"]))).unwrap();
    let err = subscriber_only
        .publish(Publication::new("https://example.com/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Forbidden { .. }), "{err}");
    assert_eq!(err.status(), Some(403));

    let publisher = publisher(&hub);
    let err = publisher
        .publish(Publication::new("https://example.com/a").id("#fragment"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::BadRequest { .. }), "{err}");
    assert!(!err.reason().unwrap().is_empty(), "{err}");

    let err = publisher
        .publish(Publication::new("https://example.com/a").data("x".repeat(4096)))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::TooLarge { .. }), "{err}");
    assert_eq!(err.status(), Some(413));

    let err = publisher
        .publish(Publication {
            topics: vec![],
            ..Publication::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::InvalidUpdate(_)), "{err}");

    let elsewhere = Publisher::with_key(&format!("{}/not-a-hub", hub.base), KEY).unwrap();
    let err = elsewhere
        .publish(Publication::new("https://example.com/a"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::Status {
                status: 404 | 405,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_hub_is_a_network_error_naming_the_url() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let err = Publisher::with_key(&url, KEY)
        .unwrap()
        .publish(Publication::new("https://example.com/a"))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Network { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(err.status(), None);

    let err = Subscriber::new(&url)
        .topic("*")
        .reconnect_delay(Duration::from_millis(10))
        .max_retries(2)
        .connect()
        .await
        .unwrap_err();
    match &err {
        SubscribeError::GaveUp { attempts, last } => {
            assert_eq!(*attempts, 3);
            assert!(matches!(**last, SubscribeError::Network { .. }), "{err}");
        }
        other => panic!("expected GaveUp, got {other}"),
    }

    assert!(matches!(
        Publisher::with_key("localhost:3000", KEY),
        Err(PublishError::Config(_))
    ));
    assert!(matches!(
        Subscriber::new(&url).stream(),
        Err(SubscribeError::Invalid(_))
    ));
}

#[tokio::test]
async fn subscription_refusals_end_the_stream_with_a_typed_error() {
    let hub = start(HubConfig {
        anonymous: false,
        ..config()
    })
    .await;
    let err = Subscriber::new(&hub.url)
        .topic("*")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, SubscribeError::Unauthorized { .. }), "{err}");

    // Lazily, through the stream: one error, then the end.
    let mut events = Subscriber::new(&hub.url)
        .topic("*")
        .token("not-a-jwt")
        .stream()
        .unwrap();
    let item = tokio::time::timeout(WAIT, events.next()).await.unwrap();
    let err = item.unwrap().unwrap_err();
    assert!(matches!(err, SubscribeError::Unauthorized { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(
        tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .is_none()
    );

    let err = Subscriber::new(&format!("{}/healthz", hub.base))
        .topic("*")
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubscribeError::NotEventStream { .. }),
        "{err}"
    );
}

// ---- reconnection ----

/// A hub whose streams end after about `lifetime` (jittered down by up to 20%).
fn short_lived(lifetime: Duration) -> HubConfig {
    HubConfig {
        write_timeout: Some(lifetime),
        heartbeat: None,
        ..config()
    }
}

#[tokio::test]
async fn after_the_hub_ends_the_stream_missed_events_arrive_exactly_once() {
    let hub = start(short_lived(Duration::from_millis(600))).await;
    let (reconnects_tx, mut reconnects) = mpsc::unbounded_channel();
    let mut events = Subscriber::new(&hub.url)
        .topic("https://example.com/books/{id}")
        .reconnect_delay(Duration::from_millis(700))
        .on_reconnect(move |r| {
            let _ = reconnects_tx.send((r.error.to_string(), r.last_event_id.map(str::to_owned)));
        })
        .connect()
        .await
        .unwrap();
    let publisher = publisher(&hub);
    let publish = |n: u32| {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish(
                    Publication::new(format!("https://example.com/books/{n}"))
                        .data(format!("book {n}")),
                )
                .await
                .unwrap()
        }
    };
    let first = publish(1).await;
    assert_eq!(next(&mut events).await.id, Some(first.clone()));

    // Consume in the background. The hook fires when the hub ends the stream, before the
    // reconnection delay, during which these updates are published, and missed.
    let (received_tx, mut received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = events.next().await {
            let _ = received_tx.send(item.unwrap().id.unwrap());
        }
    });
    let (why, resume_from) = tokio::time::timeout(WAIT, reconnects.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(why.contains("closed"), "{why}");
    assert_eq!(resume_from, Some(first));
    let mut expected = vec![publish(2).await, publish(3).await];
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(WAIT, received.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got, expected, "the missed events, in order");
    expected.push(publish(4).await);
    got.push(
        tokio::time::timeout(WAIT, received.recv())
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(got, expected);
    // Through several more reconnections, nothing comes twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!reconnects.is_empty(), "the hub kept ending streams");
    assert!(received.is_empty(), "duplicates: {:?}", {
        let mut extra = Vec::new();
        while let Ok(id) = received.try_recv() {
            extra.push(id);
        }
        extra
    });
}

#[tokio::test]
async fn the_retry_field_sets_the_reconnection_delay() {
    let hub = start(short_lived(Duration::from_millis(500))).await;
    let (reconnects_tx, mut reconnects) = mpsc::unbounded_channel();
    let mut events = Subscriber::new(&hub.url)
        .topic("*")
        .reconnect_delay(Duration::from_millis(20))
        .on_reconnect(move |r| {
            let _ = reconnects_tx.send((Instant::now(), r.delay));
        })
        .connect()
        .await
        .unwrap();
    let publisher = publisher(&hub);
    publisher
        .publish(Publication::new("https://example.com/a").retry(1500))
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await.retry,
        Some(Duration::from_millis(1500))
    );

    let pump = tokio::spawn(async move {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        (Instant::now(), event)
    });
    let (disconnected_at, delay) = tokio::time::timeout(WAIT, reconnects.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        delay >= Duration::from_millis(1500) && delay <= Duration::from_millis(1800),
        "the delay honours retry (+ up to 20% jitter): {delay:?}"
    );
    let missed = publisher
        .publish(Publication::new("https://example.com/b"))
        .await
        .unwrap();
    let (received_at, event) = pump.await.unwrap();
    assert_eq!(event.id, Some(missed));
    assert!(
        received_at - disconnected_at >= Duration::from_millis(1500),
        "reconnected after {:?}",
        received_at - disconnected_at
    );
}

// ---- a fake hub that replays everything, always ----

/// An SSE endpoint that sends every event it has on each connection, whatever the
/// `Last-Event-ID`, then closes (or answers 204 once `stop_after` connections were made).
async fn replaying_server(stop_after: usize) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    let requests: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = requests.clone();
    let app = axum::Router::new().route(
        "/.well-known/mercure",
        axum::routing::get(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let last = headers
                    .get("last-event-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                let connection = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(last);
                    seen.len()
                };
                if connection > stop_after {
                    return StatusCode::NO_CONTENT.into_response();
                }
                let mut body = String::from(":\n\nretry: 10\n\n");
                for n in 1..=connection {
                    body.push_str(&format!("id: e{n}\ndata: event {n}\n\n"));
                }
                // An event cut by the disconnection: not delivered, not resumed from.
                body.push_str("id: partial\ndata: cut");
                ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/mercure",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, requests)
}

#[tokio::test]
async fn events_replayed_again_by_a_hub_are_not_yielded_twice() {
    let (url, requests) = replaying_server(4).await;
    let events: Vec<Event> = tokio::time::timeout(
        WAIT,
        Subscriber::new(&url)
            .topic("*")
            .stream()
            .unwrap()
            .map(Result::unwrap)
            .collect(),
    )
    .await
    .expect("the 204 ends the stream");
    let ids: Vec<_> = events.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    assert_eq!(
        *requests.lock().unwrap(),
        [
            None,
            Some("e1".to_string()),
            Some("e2".to_string()),
            Some("e3".to_string()),
            Some("e4".to_string())
        ],
        "each reconnection resumes from the last complete event"
    );
}

// ---- discovery ----

#[tokio::test]
async fn discovery_finds_the_hub_and_topic_of_a_resource_and_subscribing_there_works() {
    let hub = start(config()).await;
    let hub_url = hub.url.clone();
    let app = axum::Router::new().route(
        "/books/1",
        axum::routing::get(move || {
            let link = format!(
                r#"<https://cdn.example.com/app.css>; rel=preload, <{hub_url}>; rel="mercure", </books/1>; rel="self""#
            );
            async move { ([("Link", link)], r#"{"title":"Dune"}"#) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let book = format!("http://{}/books/1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let found = Discovery::fetch(&book).await.unwrap();
    assert_eq!(found.hub().as_str(), hub.url);
    let topic = found.topic.clone().unwrap();
    assert_eq!(topic.as_str(), book);

    let mut events = Subscriber::new(found.hub().as_str())
        .topic(topic.as_str())
        .connect()
        .await
        .unwrap();
    let id = publisher(&hub)
        .publish(Publication::new(topic.as_str()).data("{\"title\":\"Dune Messiah\"}"))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await.id, Some(id));

    // A resource without the header says so.
    let err = Discovery::fetch(&format!("{}/healthz", hub.base))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no Link header"), "{err}");
}
