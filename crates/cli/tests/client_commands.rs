//! `herald publish`, `herald subscribe` and `herald token` as a user runs them: the real binary
//! against a real `herald serve --transport memory` process, exit codes and one-line errors.

mod common;

use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Herald, herald, lines_of};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const KEY: &str = "client-commands-test-key-0123456789";
const WAIT: Duration = Duration::from_secs(15);

/// A throwaway Ed25519 key pair, for these tests only.
const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKD5VUH8QHEgsIjwRvYrZYfo+bQo8tPelMgCUOIHkLLM
-----END PRIVATE KEY-----
";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAjn5RBjLanPo8FHcpQmjVwmVlqCxAb3RQfKnmYV7ZWDU=
-----END PUBLIC KEY-----
";

/// A `herald serve --transport memory` process on a free port, killed when dropped.
struct Hub;

impl Hub {
    fn start(extra: &[&str]) -> Herald {
        let mut args = vec!["--transport", "memory", "--jwt-key", KEY, "--anonymous"];
        args.extend_from_slice(extra);
        Herald::start(&args)
    }
}

/// Runs `herald ARGS` to completion (killed after [`WAIT`]).
fn run(args: &[&str]) -> Output {
    run_with_stdin(args, None)
}

fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = herald();
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("herald runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald {args:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts success and returns stdout without its final newline.
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr {:?}",
        output.status.code(),
        stderr(&output)
    );
    stdout(&output).trim_end_matches('\n').to_owned()
}

/// Asserts exit code `code` with exactly one line on stderr, starting with `herald: `, and
/// returns it.
fn fails(output: Output, code: i32) -> String {
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "stderr {err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err:?}");
    assert!(lines[0].starts_with("herald: "), "{err:?}");
    lines[0].to_owned()
}

fn publish(hub: &Herald, args: &[&str]) -> String {
    let mut all = vec!["publish", "--hub", &hub.url, "--jwt-key", KEY];
    all.extend_from_slice(args);
    ok(run(&all))
}

fn token(args: &[&str]) -> String {
    let mut all = vec!["token", "--jwt-key", KEY];
    all.extend_from_slice(args);
    ok(run(&all))
}

fn claims_of(token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(KEY.as_bytes()),
        &validation,
    )
    .expect("a token signed with the key")
    .claims
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running `herald subscribe`, its stdout read line by line.
struct Subscription {
    child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Subscription {
    fn start(hub: &Herald, args: &[&str]) -> Subscription {
        let mut child = herald()
            .args(["subscribe", "--hub", &hub.url])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald subscribe starts");
        Subscription {
            lines: lines_of(child.stdout.take().unwrap()),
            stderr: lines_of(child.stderr.take().unwrap()),
            child,
        }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("herald subscribe printed a line")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.line()).unwrap()
    }

    /// Waits for the process to exit and returns its code.
    fn exit_code(mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "herald subscribe did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn publish_prints_the_id_and_subscribe_prints_the_event_as_sse_text() {
    let hub = Hub::start(&[]);
    let subscription = Subscription::start(
        &hub,
        &[
            "--topic",
            "https://example.com/books/{id}",
            "--last-event-id",
            "earliest",
            "--count",
            "1",
        ],
    );
    let id = publish(
        &hub,
        &[
            "--topic",
            "https://example.com/books/1",
            "--topic",
            "https://example.com/authors/7",
            "--data",
            "{\"title\":\"Dune\"}\nsecond line",
            "--id",
            "https://example.com/events/1",
            "--type",
            "book",
            "--retry",
            "3000",
        ],
    );
    assert_eq!(id, "https://example.com/events/1");
    let printed: Vec<String> = (0..6).map(|_| subscription.line()).collect();
    assert_eq!(
        printed,
        [
            "event: book",
            "retry: 3000",
            "id: https://example.com/events/1",
            "data: {\"title\":\"Dune\"}",
            "data: second line",
            "",
        ]
    );
    assert_eq!(subscription.exit_code(), Some(0), "--count 1 stops it");
}

#[test]
fn subscribe_prints_live_events_as_json_lines_with_data_from_a_file_or_stdin() {
    let hub = Hub::start(&[]);
    let subscription = Subscription::start(
        &hub,
        &["--topic", "https://example.com/live", "--format", "json"],
    );
    // The subscriber connects at its own pace: publish until it has printed something.
    let first = loop {
        publish(
            &hub,
            &["--topic", "https://example.com/live", "--data", "ping"],
        );
        if let Ok(line) = subscription.lines.recv_timeout(Duration::from_millis(200)) {
            break serde_json::from_str::<Value>(&line).unwrap();
        }
    };
    assert_eq!(first["data"], "ping");
    assert_eq!(first["type"], Value::Null);
    // Skip pings that were in flight.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("book.json");
    std::fs::write(&file, "{\"title\": \"Dune\"}").unwrap();
    let from_file = publish(
        &hub,
        &[
            "--topic",
            "https://example.com/live",
            "--data-file",
            file.to_str().unwrap(),
            "--type",
            "book",
        ],
    );
    let from_stdin = ok(run_with_stdin(
        &[
            "publish",
            "--hub",
            &hub.url,
            "--jwt-key",
            KEY,
            "--topic",
            "https://example.com/live",
        ],
        Some("from stdin"),
    ));
    let mut events = Vec::new();
    while events.len() < 2 {
        let event = subscription.json();
        if event["data"] != "ping" {
            events.push(event);
        }
    }
    assert_eq!(
        events[0],
        json!({"id": from_file, "type": "book", "data": "{\"title\": \"Dune\"}", "retry": null})
    );
    assert_eq!(
        events[1],
        json!({"id": from_stdin, "type": null, "data": "from stdin", "retry": null})
    );
}

#[test]
fn private_updates_need_a_subscriber_token_minted_by_herald_token() {
    let hub = Hub::start(&[]);
    let topic = "https://example.com/users/42/inbox";
    let secret = publish(&hub, &["--topic", topic, "--data", "secret", "--private"]);
    let public = publish(&hub, &["--topic", topic, "--data", "public"]);

    let anonymous = Subscription::start(
        &hub,
        &[
            "--topic",
            topic,
            "--last-event-id",
            "earliest",
            "--format",
            "json",
            "--count",
            "1",
        ],
    );
    assert_eq!(anonymous.json()["id"], json!(public));
    assert_eq!(anonymous.exit_code(), Some(0));

    let subscriber = token(&["--subscribe", "https://example.com/users/42/{+rest}"]);
    let authorized = Subscription::start(
        &hub,
        &[
            "--topic",
            topic,
            "--token",
            &subscriber,
            "--last-event-id",
            "earliest",
            "--format",
            "json",
            "--count",
            "2",
        ],
    );
    assert_eq!(authorized.json()["id"], json!(secret));
    assert_eq!(authorized.json()["id"], json!(public));
    assert_eq!(authorized.exit_code(), Some(0));
}

#[test]
fn last_event_id_resumes_after_that_event() {
    let hub = Hub::start(&[]);
    let ids: Vec<String> = (1..=3)
        .map(|n| {
            publish(
                &hub,
                &["--topic", "https://example.com/t", "--data", &n.to_string()],
            )
        })
        .collect();
    let subscription = Subscription::start(
        &hub,
        &[
            "--topic",
            "https://example.com/t",
            "--last-event-id",
            &ids[0],
            "--format",
            "json",
            "--count",
            "2",
        ],
    );
    assert_eq!(subscription.json()["data"], "2");
    assert_eq!(subscription.json()["data"], "3");
    assert_eq!(subscription.exit_code(), Some(0));
}

#[test]
fn subscribe_reconnects_when_the_hub_ends_the_stream_and_misses_nothing() {
    let hub = Hub::start(&["--write-timeout", "1s"]);
    let topic = "https://example.com/reconnect";
    let first = publish(&hub, &["--topic", topic, "--data", "1"]);
    let subscription = Subscription::start(
        &hub,
        &[
            "--topic",
            topic,
            "--last-event-id",
            "earliest",
            "--format",
            "json",
            "--count",
            "3",
        ],
    );
    assert_eq!(subscription.json()["id"], json!(first));
    // The stream ends within a second; the subscriber waits a second before reconnecting.
    std::thread::sleep(Duration::from_millis(1200));
    let second = publish(&hub, &["--topic", topic, "--data", "2"]);
    assert_eq!(subscription.json()["id"], json!(second));
    std::thread::sleep(Duration::from_millis(1500));
    let third = publish(&hub, &["--topic", topic, "--data", "3"]);
    assert_eq!(subscription.json()["id"], json!(third));
    let reported = subscription.stderr.recv_timeout(WAIT).unwrap();
    assert!(
        reported.starts_with("herald: the hub closed the stream; reconnecting in ")
            && reported.contains(&format!("resuming after {first}")),
        "{reported}"
    );
    assert_eq!(subscription.exit_code(), Some(0));
}

#[test]
fn token_prints_a_jwt_with_the_mercure_claim() {
    let minted = token(&[
        "--publish",
        "https://example.com/books/{id}",
        "https://example.com/authors/{id}",
        "--subscribe",
        "*",
        "--payload",
        "{\"user\": \"https://example.com/users/42\"}",
        "--ttl",
        "2h",
    ]);
    let claims = claims_of(&minted);
    assert_eq!(
        claims["mercure"],
        json!({
            "publish": ["https://example.com/books/{id}", "https://example.com/authors/{id}"],
            "subscribe": ["*"],
            "payload": {"user": "https://example.com/users/42"},
        })
    );
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp.abs_diff(now() + 7200) <= 5, "exp {exp}");

    let forever = claims_of(&token(&["--subscribe", "*", "--ttl", "0s"]));
    assert_eq!(forever.get("exp"), None);
    assert_eq!(forever["mercure"], json!({"subscribe": ["*"]}));
}

#[test]
fn v2_token_format_at_jwt_mints_an_access_token_a_1_0_hub_accepts() {
    const HUB_URL: &str = "https://hub.example/.well-known/mercure";
    let minted = token(&[
        "--format",
        "at+jwt",
        "--audience",
        HUB_URL,
        "--issuer",
        "https://app.example",
        "--subject",
        "alice",
        "--publish",
        "https://example.com/a",
        "--publish-pattern",
        "https://example.com/books/:id",
        "--ttl",
        "10m",
    ]);
    let header = jsonwebtoken::decode_header(&minted).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let claims = claims_of(&minted);
    assert_eq!(claims["aud"], HUB_URL);
    assert_eq!(claims["iss"], "https://app.example");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims.get("mercure"), None);
    assert_eq!(
        claims["authorization_details"],
        json!([{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["publish"],
            "topics": [
                {"match": "https://example.com/a"},
                {"match": "https://example.com/books/:id", "match_type": "urlpattern"},
            ],
        }])
    );
    let hub = Hub::start(&["--hub-url", HUB_URL, "--issuer", "https://app.example"]);
    let id = ok(run(&[
        "publish",
        "--hub",
        &hub.url,
        "--token",
        &minted,
        "--topic",
        "https://example.com/books/7",
    ]));
    assert!(id.starts_with("urn:uuid:"), "{id}");
    // An access token needs its audience.
    let line = fails(
        run(&[
            "token",
            "--jwt-key",
            KEY,
            "--format",
            "at+jwt",
            "--publish",
            "*",
        ]),
        2,
    );
    assert!(line.contains("--audience"), "{line}");
}

#[test]
fn tokens_signed_with_a_pem_private_key_are_accepted_by_a_hub_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    std::fs::write(&private, ED25519_PRIVATE).unwrap();
    std::fs::write(&public, ED25519_PUBLIC).unwrap();
    let hub = Herald::start(&[
        "--transport",
        "memory",
        "--jwt-alg=EdDSA",
        &format!("--jwt-key=@{}", public.display()),
    ]);
    let key = format!("@{}", private.display());

    let minted = ok(run(&[
        "token",
        "--jwt-key",
        &key,
        "--alg",
        "EdDSA",
        "--publish",
        "*",
    ]));
    let id = ok(run(&[
        "publish",
        "--hub",
        &hub.url,
        "--token",
        &minted,
        "--topic",
        "https://example.com/a",
    ]));
    assert!(id.starts_with("urn:uuid:"), "{id}");
    // `publish` mints its own with the same key.
    ok(run(&[
        "publish",
        "--hub",
        &hub.url,
        "--jwt-key",
        &key,
        "--alg",
        "eddsa",
        "--topic",
        "https://example.com/a",
    ]));
    // An HMAC token is refused by this hub: exit 3.
    let line = fails(
        run(&[
            "publish",
            "--hub",
            &hub.url,
            "--jwt-key",
            KEY,
            "--topic",
            "https://example.com/a",
        ]),
        3,
    );
    assert!(line.contains("401"), "{line}");
}

#[test]
fn failures_are_one_line_with_a_documented_exit_code() {
    let hub = Hub::start(&[]);
    let topic = "https://example.com/a";

    // 3: credentials refused.
    let line = fails(
        run(&[
            "publish",
            "--hub",
            &hub.url,
            "--token",
            "not-a-jwt",
            "--topic",
            topic,
        ]),
        3,
    );
    assert!(line.contains("401"), "{line}");
    let subscriber_only = token(&["--subscribe", "*"]);
    let line = fails(
        run(&[
            "publish",
            "--hub",
            &hub.url,
            "--token",
            &subscriber_only,
            "--topic",
            topic,
        ]),
        3,
    );
    assert!(
        line.contains("403") && line.contains("mercure.publish"),
        "{line}"
    );
    let line = fails(
        run(&[
            "subscribe",
            "--hub",
            &hub.url,
            "--topic",
            "*",
            "--token",
            "not-a-jwt",
        ]),
        3,
    );
    assert!(line.contains("401"), "{line}");

    // 4: the request itself refused.
    let line = fails(
        run(&[
            "publish",
            "--hub",
            &hub.url,
            "--jwt-key",
            KEY,
            "--topic",
            topic,
            "--id",
            "#1",
        ]),
        4,
    );
    assert!(line.contains("400") && line.contains("id"), "{line}");
    let healthz = hub.url.replace("/.well-known/mercure", "/healthz");
    let line = fails(run(&["subscribe", "--hub", &healthz, "--topic", "*"]), 4);
    assert!(line.contains("not an event stream"), "{line}");

    // 1: the hub cannot be reached.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let line = fails(
        run(&[
            "publish",
            "--hub",
            &nowhere,
            "--jwt-key",
            KEY,
            "--topic",
            topic,
        ]),
        1,
    );
    assert!(
        line.contains(&nowhere) && line.contains("refused"),
        "{line}"
    );
    let output = run(&[
        "subscribe",
        "--hub",
        &nowhere,
        "--topic",
        "*",
        "--max-retries",
        "0",
    ]);
    let line = fails(output, 1);
    assert!(line.contains("gave up"), "{line}");

    // 2: the command line.
    let line = fails(
        run(&[
            "publish",
            "--hub",
            "localhost:3000",
            "--jwt-key",
            KEY,
            "--topic",
            topic,
        ]),
        2,
    );
    assert!(line.contains("--hub"), "{line}");
    let line = fails(
        run(&[
            "publish",
            "--hub",
            &hub.url,
            "--jwt-key",
            KEY,
            "--topic",
            topic,
            "--data-file",
            "/nonexistent/data",
        ]),
        2,
    );
    assert!(line.contains("/nonexistent/data"), "{line}");
    let line = fails(
        run(&["token", "--jwt-key", KEY, "--alg", "HS1", "--publish", "*"]),
        2,
    );
    assert!(line.contains("HS256"), "{line}");
    let line = fails(
        run(&[
            "token",
            "--jwt-key",
            KEY,
            "--payload",
            "{x",
            "--publish",
            "*",
        ]),
        2,
    );
    assert!(line.contains("--payload"), "{line}");
    let line = fails(run(&["token", "--jwt-key", KEY]), 2);
    assert!(line.contains("--publish"), "{line}");
    let line = fails(
        run(&[
            "token",
            "--jwt-key",
            KEY,
            "--alg",
            "RS256",
            "--publish",
            "*",
        ]),
        2,
    );
    assert!(line.contains("PEM"), "{line}");
    let line = fails(
        run(&[
            "token",
            "--jwt-key",
            "@/nonexistent/key.pem",
            "--publish",
            "*",
        ]),
        2,
    );
    assert!(line.contains("/nonexistent/key.pem"), "{line}");
    // No credentials at all.
    let output = run(&["publish", "--hub", &hub.url, "--topic", topic]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--token"), "{}", stderr(&output));
}

#[test]
fn credentials_can_come_from_the_environment_and_a_flag_wins() {
    let hub = Hub::start(&[]);
    let publisher = token(&["--publish", "*"]);
    let run_env = |env: &[(&str, &str)], extra: &[&str]| {
        let mut command = herald();
        command
            .args([
                "publish",
                "--hub",
                &hub.url,
                "--topic",
                "https://example.com/a",
            ])
            .args(extra)
            .envs(env.iter().copied());
        command.output().unwrap()
    };
    ok(run_env(&[("HERALD_TOKEN", &publisher)], &[]));
    ok(run_env(&[("HERALD_JWT_KEY", KEY)], &[]));
    // A flag wins over either variable.
    ok(run_env(&[("HERALD_TOKEN", "stale")], &["--jwt-key", KEY]));
    ok(run_env(
        &[("HERALD_JWT_KEY", "wrong")],
        &["--token", &publisher],
    ));
    fails(run_env(&[("HERALD_TOKEN", "stale")], &[]), 3);
    let output = run_env(&[], &[]);
    let line = fails(output, 2);
    assert!(
        line.contains("--token") && line.contains("HERALD_JWT_KEY"),
        "{line}"
    );
}
