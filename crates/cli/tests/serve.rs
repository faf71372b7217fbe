//! `herald serve` as a user runs it: the real binary as a process, its settings from flags,
//! environment and a TOML file, its one-line errors, `--dev`, and a clean stop on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{STOP, Server, assert_names, herald, read_until, refused};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const KEY: &str = "serve-test-key-0123456789abcdef0123";
const TUTORIAL_KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
const TOPIC: &str = "https://example.com/books/1";

fn sign(alg: Algorithm, key: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn publisher(key: &str) -> String {
    sign(
        Algorithm::HS256,
        key,
        json!({"mercure": {"publish": ["*"]}}),
    )
}

fn subscriber(key: &str) -> String {
    sign(
        Algorithm::HS256,
        key,
        json!({"mercure": {"subscribe": ["*"]}}),
    )
}

/// Whether the server ends `response` within `timeout` (its body finishes or errors).
async fn stream_ends(response: &mut reqwest::Response, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return true,
        }
    }
}

/// Publishes `data` with `publisher_token` and asserts `stream` receives it.
async fn round_trip(
    server: &Server,
    publisher_token: &str,
    stream: &mut reqwest::Response,
    data: &str,
) {
    let response = server
        .publish(publisher_token, &[("topic", TOPIC), ("data", data)])
        .await;
    assert_eq!(response.status(), 200);
    let id = response.text().await.unwrap();
    let text = read_until(stream, &format!("data: {data}\n")).await;
    assert!(text.contains(&format!("id: {id}\n")), "{text:?}");
}

// (a) Bad settings: exit code 2 and one line naming the setting -----------------------------

#[test]
fn bad_heartbeat_exits_2_naming_heartbeat() {
    let line = refused(
        &[
            "--jwt-key",
            KEY,
            "--heartbeat",
            "5x",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "heartbeat");
    assert!(line.contains("5x"), "{line}");
}

#[test]
fn bad_publisher_jwt_alg_exits_2_naming_publisher_jwt_alg() {
    let line = refused(
        &[
            "--jwt-key",
            KEY,
            "--publisher-jwt-alg",
            "XX256",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "publisher-jwt-alg");
    assert!(line.contains("XX256"), "{line}");
}

#[test]
fn missing_jwt_key_file_exits_2_naming_a_key_setting_and_the_path() {
    let line = refused(
        &[
            "--jwt-key",
            "@/nonexistent/key.pem",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(
        line.contains("invalid setting ") && line.contains("jwt-key:"),
        "{line}"
    );
    assert!(line.contains("/nonexistent/key.pem"), "{line}");
}

#[test]
fn missing_jwt_key_file_names_jwt_key_itself() {
    let line = refused(
        &[
            "--jwt-key",
            "@/nonexistent/key.pem",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "jwt-key");
}

#[test]
fn missing_jwks_file_exits_2_naming_jwks_and_the_path() {
    let line = refused(&["--jwks", "/nonexistent", "--listen", "127.0.0.1:0"], &[]);
    assert_names(&line, "jwks");
    assert!(line.contains("/nonexistent"), "{line}");
}

#[test]
fn jwks_with_jwt_key_exits_2_naming_jwks() {
    let line = refused(
        &[
            "--jwt-key",
            KEY,
            "--jwks",
            "/nonexistent",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "jwks");
    let line = refused(
        &[
            "--subscriber-jwt-key",
            KEY,
            "--subscriber-jwks",
            "https://idp.example.com/jwks.json",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "subscriber-jwks");
}

#[test]
fn no_key_at_all_exits_2_naming_jwt_key() {
    let line = refused(&["--listen", "127.0.0.1:0"], &[]);
    assert_names(&line, "jwt-key");
}

#[test]
fn bad_listen_exits_2_naming_listen() {
    let line = refused(&["--jwt-key", KEY, "--listen", "nonsense"], &[]);
    assert_names(&line, "listen");
    assert!(line.contains("nonsense"), "{line}");
}

#[test]
fn cors_origin_with_a_path_exits_2_naming_cors_origin() {
    let line = refused(
        &[
            "--jwt-key",
            KEY,
            "--cors-origin",
            "https://a.com/path",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "cors-origin");
    assert!(line.contains("https://a.com/path"), "{line}");
}

#[test]
fn config_file_with_an_unknown_key_exits_2_naming_config_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(
        &path,
        "jwt-key = \"k\"\nlisten = \"127.0.0.1:0\"\nhartbeat = \"5s\"\n",
    )
    .unwrap();
    let line = refused(&["--config", path.to_str().unwrap()], &[]);
    assert_names(&line, "config");
    assert!(line.contains("hartbeat"), "{line}");
}

#[test]
fn unreadable_config_file_exits_2_naming_config() {
    let line = refused(
        &[
            "--config",
            "/nonexistent/herald.toml",
            "--jwt-key",
            KEY,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_names(&line, "config");
    assert!(line.contains("/nonexistent/herald.toml"), "{line}");
}

#[test]
fn bad_setting_from_the_environment_exits_2_naming_it() {
    let line = refused(
        &["--listen", "127.0.0.1:0"],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", KEY),
            ("MERCURE_PUBLISHER_JWT_ALG", "HS999"),
        ],
    );
    assert_names(&line, "publisher-jwt-alg");
}

// (b) Serving, and a clean stop on SIGTERM ---------------------------------------------------

#[tokio::test]
async fn serve_publishes_and_subscribes_then_exits_0_on_sigterm_ending_streams() {
    let mut server = Server::start(&["--jwt-key", KEY], &[]);
    let mut stream = server.subscribe(Some(&subscriber(KEY))).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    round_trip(
        &server,
        &publisher(KEY),
        &mut stream,
        "hello from the binary",
    )
    .await;
    // A bad token is refused by the binary's hub too.
    let response = server
        .publish(&publisher("another key"), &[("topic", TOPIC)])
        .await;
    assert_eq!(response.status(), 401);

    let started = Instant::now();
    let status = server
        .terminate()
        .expect("herald did not exit within 10 s of SIGTERM with a stream open");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}; log {:?}",
        server.log
    );
    assert!(started.elapsed() < STOP);
    assert!(
        stream_ends(&mut stream, Duration::from_secs(2)).await,
        "the subscriber's stream should end when the hub stops"
    );
    assert!(
        server
            .wait_for_log("SIGTERM", Duration::from_secs(1))
            .is_some(),
        "{:?}",
        server.log
    );
}

// (c) The reference image's environment variables --------------------------------------------

#[tokio::test]
async fn mercure_publisher_and_subscriber_key_variables_are_honoured() {
    const PUBLISHER_KEY: &str = "env-publisher-key-0123456789abcd";
    const SUBSCRIBER_KEY: &str = "env-subscriber-key-0123456789abc";
    let server = Server::start(
        &[],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", PUBLISHER_KEY),
            ("MERCURE_PUBLISHER_JWT_ALG", "HS512"),
            ("MERCURE_SUBSCRIBER_JWT_KEY", SUBSCRIBER_KEY),
        ],
    );
    let publisher_token = sign(
        Algorithm::HS512,
        PUBLISHER_KEY,
        json!({"mercure": {"publish": ["*"]}}),
    );
    // Each key verifies its own side only.
    assert_eq!(
        server
            .subscribe(Some(&subscriber(PUBLISHER_KEY)))
            .await
            .status(),
        401
    );
    let response = server
        .publish(&publisher(SUBSCRIBER_KEY), &[("topic", TOPIC)])
        .await;
    assert_eq!(response.status(), 401);
    // The publisher key's algorithm came from MERCURE_PUBLISHER_JWT_ALG.
    let response = server
        .publish(&publisher(PUBLISHER_KEY), &[("topic", TOPIC)])
        .await;
    assert_eq!(response.status(), 401);

    let mut stream = server.subscribe(Some(&subscriber(SUBSCRIBER_KEY))).await;
    assert_eq!(stream.status(), 200);
    round_trip(&server, &publisher_token, &mut stream, "via env keys").await;
}

// (d) A TOML settings file, and flags over it ------------------------------------------------

#[tokio::test]
async fn config_file_is_honoured() {
    const FILE_KEY: &str = "file-key-0123456789abcdef0123456";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\njwt-key = \"{FILE_KEY}\"\nanonymous = true\n\
             cookie-name = \"fileCookie\"\ncors-origin = [\"https://app.example.com\"]\n"
        ),
    )
    .unwrap();
    let server = Server::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    // anonymous = true
    let mut stream = server.subscribe(None).await;
    assert_eq!(stream.status(), 200);
    // jwt-key
    round_trip(&server, &publisher(FILE_KEY), &mut stream, "file key").await;
    // cookie-name: a garbage token in that cookie is read (and refused), under another name not.
    let with_cookie = |name: &str| {
        server
            .client
            .get(format!("{}?topic=*", server.url))
            .header("cookie", format!("{name}=garbage"))
    };
    assert_eq!(
        with_cookie("fileCookie").send().await.unwrap().status(),
        401
    );
    let anonymous = with_cookie("mercureAuthorization").send().await.unwrap();
    assert_eq!(anonymous.status(), 200);
    // cors-origin
    let response = server
        .client
        .post(&server.url)
        .bearer_auth(publisher(FILE_KEY))
        .header("origin", "https://app.example.com")
        .form(&[("topic", TOPIC)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[tokio::test]
async fn flags_override_the_config_file() {
    const FILE_KEY: &str = "file-key-0123456789abcdef0123456";
    const FLAG_KEY: &str = "flag-key-0123456789abcdef0123456";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    // The file's listen address is not even valid: the flag's must win before it is parsed.
    std::fs::write(
        &path,
        format!("listen = \"not an address\"\njwt-key = \"{FILE_KEY}\"\nheartbeat = \"40s\"\n"),
    )
    .unwrap();
    let server = Server::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--jwt-key",
            FLAG_KEY,
        ],
        &[],
    );
    let response = server
        .publish(&publisher(FILE_KEY), &[("topic", TOPIC)])
        .await;
    assert_eq!(response.status(), 401, "the file's key must be overridden");
    let mut stream = server.subscribe(Some(&subscriber(FLAG_KEY))).await;
    assert_eq!(stream.status(), 200);
    round_trip(&server, &publisher(FLAG_KEY), &mut stream, "flag key").await;
}

// (e) --help -----------------------------------------------------------------------------------

#[test]
fn serve_help_mentions_every_flag() {
    let output = herald().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "--jwt-key",
        "--publisher-jwt-key",
        "--subscriber-jwt-key",
        "--publisher-jwt-alg",
        "--subscriber-jwt-alg",
        "--anonymous",
        "--cors-origin",
        "--publish-origin",
        "--cookie-name",
        "--heartbeat",
        "--write-timeout",
        "--dev",
        "--config",
    ] {
        let listed = help.lines().any(|line| {
            line.trim_start()
                .strip_prefix(flag)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        });
        assert!(listed, "{flag} missing from herald serve --help:\n{help}");
    }
}

// (f) --dev ------------------------------------------------------------------------------------

/// The value after `label` on one of `lines`.
fn banner_value(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in the banner: {lines:?}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn dev_prints_working_tokens_and_a_curl_example() {
    let mut server = Server::start(&["--dev"], &[]);
    let mut banner = server.stdout_until("Subscriber token:");
    banner.extend(server.stdout_until("curl"));
    let publisher_token = banner_value(&banner, "Publisher token:");
    let subscriber_token = banner_value(&banner, "Subscriber token:");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("curl") && l.contains("-N")),
        "{banner:?}"
    );
    assert!(banner.iter().any(|l| l.contains(&server.url)), "{banner:?}");

    // Anonymous subscribers are on in dev mode; the printed tokens work.
    let mut anonymous = server.subscribe(None).await;
    assert_eq!(anonymous.status(), 200);
    let mut authorized = server.subscribe(Some(&subscriber_token)).await;
    assert_eq!(authorized.status(), 200);
    let response = server
        .publish(
            &publisher_token,
            &[("topic", TOPIC), ("data", "private one"), ("private", "on")],
        )
        .await;
    assert_eq!(response.status(), 200);
    read_until(&mut authorized, "data: private one\n").await;
    let response = server
        .publish(
            &publisher_token,
            &[("topic", TOPIC), ("data", "public one")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let seen = read_until(&mut anonymous, "data: public one\n").await;
    assert!(!seen.contains("private one"), "{seen:?}");
}

#[tokio::test]
async fn dev_with_the_tutorial_key_warns() {
    let mut server = Server::start(&["--dev", "--jwt-key", TUTORIAL_KEY], &[]);
    let warning = server
        .wait_for_log(TUTORIAL_KEY, Duration::from_secs(1))
        .unwrap_or_else(|| panic!("no warning naming the key; stderr: {:?}", server.log));
    assert!(warning.contains("WARN"), "{warning}");
    // The hub runs with that key, and the printed token is signed with it.
    let banner = server.stdout_until("Publisher token:");
    let printed = banner_value(&banner, "Publisher token:");
    let response = server.publish(&printed, &[("topic", TOPIC)]).await;
    assert_eq!(response.status(), 200);
    let response = server
        .publish(&publisher(TUTORIAL_KEY), &[("topic", TOPIC)])
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn without_dev_no_tokens_are_printed() {
    let mut server = Server::start(&["--jwt-key", KEY], &[]);
    let response = server.publish(&publisher(KEY), &[("topic", TOPIC)]).await;
    assert_eq!(response.status(), 200);
    assert!(server.terminate().is_some());
    let stdout: Vec<String> = server.stdout.iter().collect();
    assert!(
        !stdout.iter().any(|l| l.contains("token")),
        "no banner without --dev: {stdout:?}"
    );
}
