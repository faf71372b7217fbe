//! The first hour of a new user, and of a user of the reference hub moving to Herald, against
//! the real `herald` binary over real TCP: rejections that name the fix, the dev key kept across
//! restarts, weak keys refused, errors at start that name what to change, and the reference
//! image's variables and Caddyfile directives (one test per row of the table in
//! docs/migrating-from-mercure.md).

mod common;

use std::time::Duration;

use common::{Herald, Server, assert_names, herald, read_until, refused};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const KEY: &str = "newcomer-test-key-0123456789abcdef";
const OTHER_KEY: &str = "newcomer-other-key-0123456789abcdef";
const TOPIC: &str = "https://example.com/books/1";

fn sign(key: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn publisher(key: &str) -> String {
    sign(key, json!({"mercure": {"publish": ["*"]}}))
}

fn subscriber(key: &str) -> String {
    sign(key, json!({"mercure": {"subscribe": ["*"]}}))
}

/// Status and body of a response.
async fn answer(response: reqwest::RequestBuilder) -> (u16, String) {
    let response = response.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn assert_says(got: &(u16, String), status: u16, needle: &str) {
    assert_eq!(got.0, status, "{got:?}");
    assert!(got.1.contains(needle), "expected {needle:?} in {got:?}");
}

// (1) Rejections that name the fix ------------------------------------------------------------

#[tokio::test]
async fn publishing_mistakes_are_answered_with_the_fix() {
    let server = Server::start(&["--jwt-key", KEY, "--transport", "memory"], &[]);
    let post = || server.client.post(&server.url);
    let token = publisher(KEY);

    // The tutorials' `curl -d '{"topic":...}'`: curl sends it as a form.
    let tutorial = post()
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"topic":"robot","data":"hi robot"}"#);
    assert_says(
        &answer(tutorial).await,
        400,
        "-H 'Content-Type: application/json'",
    );
    // With the header it is published.
    let fixed = post()
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"topic":"robot","data":"hi robot"}"#);
    assert_eq!(answer(fixed).await.0, 200);

    let text_plain = post()
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body("topic=a");
    assert_says(&answer(text_plain).await, 415, "application/json");
    let no_topic = post().bearer_auth(&token).form(&[("data", "x")]);
    assert_says(&answer(no_topic).await, 400, "-d topic=");
    let topics = post()
        .bearer_auth(&token)
        .form(&[("topics", TOPIC), ("data", "x")]);
    assert_says(&answer(topics).await, 400, "not \"topics\"");
    let put = server.client.put(&server.url).bearer_auth(&token);
    let put = answer(put).await;
    assert_says(&put, 405, "publish with POST");

    // Tokens: none, no "Bearer ", wrong key, expired, a subscriber's.
    assert_says(
        &answer(post().form(&[("topic", TOPIC)])).await,
        401,
        "Authorization: Bearer",
    );
    let in_the_query = server
        .client
        .post(format!("{}?token={token}", server.url))
        .form(&[("topic", TOPIC)]);
    assert_says(&answer(in_the_query).await, 401, "?authorization=<token>");
    let bare = post()
        .header("authorization", token.as_str())
        .form(&[("topic", TOPIC)]);
    assert_says(&answer(bare).await, 401, "without the \"Bearer \" prefix");
    let wrong_key = post()
        .bearer_auth(publisher(OTHER_KEY))
        .form(&[("topic", TOPIC)]);
    assert_says(&answer(wrong_key).await, 401, "another key");
    let expired = sign(
        KEY,
        json!({"mercure": {"publish": ["*"]}, "exp": 1_000_000}),
    );
    let expired = post().bearer_auth(expired).form(&[("topic", TOPIC)]);
    assert_says(&answer(expired).await, 401, "mint a new one");
    let subscribers_only = post()
        .bearer_auth(subscriber(KEY))
        .form(&[("topic", TOPIC)]);
    assert_says(
        &answer(subscribers_only).await,
        403,
        "this is a subscriber's token",
    );
}

#[tokio::test]
async fn subscribing_mistakes_are_answered_with_the_fix() {
    let server = Server::start(
        &[
            "--jwt-key",
            KEY,
            "--transport",
            "memory",
            "--cors-origin",
            "https://app.example.com",
        ],
        &[],
    );
    let in_the_query = server.client.get(format!(
        "{}?topic=*&access_token={}",
        server.url,
        subscriber(KEY)
    ));
    assert_says(
        &answer(in_the_query).await,
        401,
        "\"access_token\" query parameter",
    );
    let topics = server.client.get(format!("{}?topics=*", server.url));
    assert_says(&answer(topics).await, 400, "not \"topics\"");
    // A browser page whose cookie was not sent (no withCredentials).
    let from_a_page = server
        .client
        .get(format!("{}?topic=*", server.url))
        .header("origin", "https://app.example.com");
    assert_says(&answer(from_a_page).await, 401, "withCredentials: true");
}

// (2) Dev mode keeps its key --------------------------------------------------------------------

fn banner_value(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in the banner: {lines:?}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn dev_tokens_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = herald();
        command.current_dir(dir.path());
        Herald::start_command(command, &["--dev"])
    };
    let mut first = start();
    let banner = first.stdout_until("Mint more tokens:");
    let token = banner_value(&banner, "Publisher token:");
    let key_line = banner_value(&banner, "Key:");
    assert!(key_line.starts_with("herald-data/dev-key"), "{key_line}");
    assert!(
        banner
            .iter()
            .any(|l| l.contains("herald token --jwt-key \"$(cat herald-data/dev-key)\"")),
        "{banner:?}"
    );
    let key_file = dir.path().join("herald-data/dev-key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
    }
    assert!(first.terminate().is_some());

    let second = start();
    let client = common::http_client();
    let published = client
        .post(&second.url)
        .bearer_auth(&token)
        .form(&[("topic", TOPIC)]);
    assert_eq!(answer(published).await.0, 200, "the first start's token");
    // The key in the file mints tokens the hub accepts, as the banner says.
    let key = std::fs::read_to_string(&key_file).unwrap();
    let minted = client
        .post(&second.url)
        .bearer_auth(publisher(key.trim()))
        .form(&[("topic", TOPIC)]);
    assert_eq!(answer(minted).await.0, 200);
}

#[test]
fn dev_with_a_memory_transport_writes_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = herald();
    command.current_dir(dir.path());
    let mut hub = Herald::start_command(command, &["--dev", "--transport", "memory"]);
    let banner = hub.stdout_until("Mint more tokens:");
    assert!(banner_value(&banner, "Key:").contains("in memory only"));
    assert!(!dir.path().join("herald-data").exists());
}

// (4) Weak keys -------------------------------------------------------------------------------

#[test]
fn weak_and_well_known_keys_are_refused_with_the_fix() {
    let listen = ["--listen", "127.0.0.1:0", "--transport", "memory"];
    let line = refused(&[&["--jwt-key", "abc"][..], &listen].concat(), &[]);
    assert_names(&line, "jwt-key");
    assert!(line.contains("openssl rand -base64 32"), "{line}");
    let line = refused(
        &[&["--jwt-key", "0123456789abcdef0123456789"][..], &listen].concat(),
        &[],
    );
    assert!(line.contains("26 bytes"), "{line}");
    let line = refused(
        &listen,
        &[
            (
                "MERCURE_PUBLISHER_JWT_KEY",
                "!ChangeThisMercureHubJWTSecretKey!",
            ),
            ("MERCURE_SUBSCRIBER_JWT_KEY", KEY),
        ],
    );
    assert_names(&line, "publisher-jwt-key");
    assert!(line.contains("set by MERCURE_PUBLISHER_JWT_KEY"), "{line}");
}

#[tokio::test]
async fn allow_weak_key_starts_anyway() {
    let server = Server::start(
        &[
            "--jwt-key",
            "abc",
            "--allow-weak-key",
            "--transport",
            "memory",
        ],
        &[],
    );
    let response = server.publish(&publisher("abc"), &[("topic", TOPIC)]).await;
    assert_eq!(response.status(), 200);
    let from_env = Server::start(
        &["--jwt-key", "abc", "--transport", "memory"],
        &[("HERALD_ALLOW_WEAK_KEY", "yes")],
    );
    let response = from_env
        .publish(&publisher("abc"), &[("topic", TOPIC)])
        .await;
    assert_eq!(response.status(), 200);
}

// (3) and (5): variables and errors at start ------------------------------------------------------

#[tokio::test]
async fn boolean_variables_accept_1_and_name_the_variable_when_wrong() {
    let server = Server::start(
        &["--jwt-key", KEY, "--transport", "memory"],
        &[("HERALD_ANONYMOUS", "1")],
    );
    assert_eq!(server.subscribe(None).await.status(), 200);
    let line = refused(
        &["--jwt-key", KEY, "--listen", "127.0.0.1:0"],
        &[("HERALD_ANONYMOUS", "maybe")],
    );
    assert!(
        line.contains("HERALD_ANONYMOUS=\"maybe\"") && line.contains("1, true, yes or on"),
        "{line}"
    );
}

#[test]
fn address_in_use_names_listen() {
    let first = Herald::start(&["--jwt-key", KEY, "--transport", "memory"]);
    let output = herald()
        .args(["serve", "--jwt-key", KEY, "--transport", "memory"])
        .args(["--listen", &first.addr])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen") && stderr.contains("HERALD_LISTEN"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_file_names_its_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, format!("jwt-key = \"{KEY}\"\nheartbeat = 40\n")).unwrap();
    let line = refused(&["--config", path.to_str().unwrap()], &[]);
    assert_names(&line, "config");
    assert!(line.contains("herald.toml:2:13, key heartbeat"), "{line}");
}

// (3) The reference hub's configuration: one test per directive of the table ------------------

/// A hub configured by `MERCURE_EXTRA_DIRECTIVES` (and the key variables).
fn mercure_hub(directives: &str) -> Server {
    Server::start(
        &["--transport", "memory"],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", KEY),
            ("MERCURE_SUBSCRIBER_JWT_KEY", KEY),
            ("MERCURE_EXTRA_DIRECTIVES", directives),
        ],
    )
}

#[tokio::test]
async fn directive_anonymous() {
    assert_eq!(mercure_hub("anonymous").subscribe(None).await.status(), 200);
    assert_eq!(mercure_hub("ui").subscribe(None).await.status(), 401);
}

#[tokio::test]
async fn directive_subscriptions() {
    let server = mercure_hub("subscriptions");
    let api = server
        .client
        .get(format!("{}/subscriptions", server.url))
        .bearer_auth(subscriber(KEY));
    assert_eq!(answer(api).await.0, 200);
}

#[tokio::test]
async fn directive_ui_and_demo() {
    for directive in ["ui", "demo"] {
        let server = mercure_hub(directive);
        let page = server.client.get(format!("{}/ui/", server.url));
        assert_eq!(answer(page).await.0, 200, "{directive}");
    }
    let mut demo = mercure_hub("demo\ndispatch_timeout 5s");
    let warning = demo
        .wait_for_log("does not apply", Duration::from_secs(5))
        .unwrap();
    assert!(
        warning.contains("demo") && warning.contains("dispatch_timeout 5s"),
        "{warning}"
    );
}

#[tokio::test]
async fn directive_cors_origins() {
    let server = mercure_hub("anonymous\ncors_origins https://a.example https://b.example");
    for origin in ["https://a.example", "https://b.example"] {
        let response = server
            .client
            .get(format!("{}?topic=*", server.url))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], origin);
        assert_eq!(headers["access-control-allow-credentials"], "true");
    }
}

#[tokio::test]
async fn directives_publish_origins_and_cookie_name() {
    let server = mercure_hub("publish_origins https://app.example\ncookie_name herald_auth");
    let with_cookie = |name: &str, origin: &str| {
        server
            .client
            .post(&server.url)
            .header("cookie", format!("{name}={}", publisher(KEY)))
            .header("origin", origin)
            .form(&[("topic", TOPIC)])
    };
    assert_eq!(
        answer(with_cookie("herald_auth", "https://app.example"))
            .await
            .0,
        200
    );
    assert_eq!(
        answer(with_cookie("herald_auth", "https://evil.example"))
            .await
            .0,
        403
    );
    assert_eq!(
        answer(with_cookie("mercureAuthorization", "https://app.example"))
            .await
            .0,
        401,
        "the default cookie name is no longer read"
    );
}

#[tokio::test]
async fn directive_heartbeat() {
    let server = mercure_hub("anonymous\nheartbeat 200ms");
    let mut stream = server.subscribe(None).await;
    // The opening comment, then a heartbeat comment on the idle stream.
    read_until(&mut stream, ":\n:\n\n").await;
}

#[tokio::test]
async fn directive_write_timeout() {
    let server = mercure_hub("anonymous\nwrite_timeout 1s");
    let mut stream = server.subscribe(None).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends after its write timeout");
}

#[tokio::test]
async fn directive_max_request_body_size() {
    let server = mercure_hub("max_request_body_size 100");
    let big = "x".repeat(200);
    let response = server
        .publish(&publisher(KEY), &[("topic", TOPIC), ("data", &big)])
        .await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn directives_publisher_jwt_and_subscriber_jwt() {
    let server = Server::start(
        &["--transport", "memory"],
        &[(
            "MERCURE_EXTRA_DIRECTIVES",
            &format!("publisher_jwt {KEY} HS256\nsubscriber_jwt {OTHER_KEY}"),
        )],
    );
    let response = server.publish(&publisher(KEY), &[("topic", TOPIC)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        server
            .subscribe(Some(&subscriber(OTHER_KEY)))
            .await
            .status(),
        200
    );
    assert_eq!(server.subscribe(Some(&subscriber(KEY))).await.status(), 401);
}

#[test]
fn directives_publisher_and_subscriber_jwks_url() {
    for (directive, setting) in [
        ("publisher_jwks_url", "publisher-jwks"),
        ("subscriber_jwks_url", "subscriber-jwks"),
    ] {
        // The set is read at start: an unreadable one names the setting and the directive.
        let line = refused(
            &["--listen", "127.0.0.1:0", "--transport", "memory"],
            &[(
                "MERCURE_EXTRA_DIRECTIVES",
                &format!("{directive} /nonexistent/jwks.json"),
            )],
        );
        assert_names(&line, setting);
        assert!(line.contains("MERCURE_EXTRA_DIRECTIVES"), "{line}");
    }
}

#[test]
fn directives_transport_and_transport_url() {
    for (directives, on_disk) in [
        ("transport local", false),
        ("transport_url local://local", false),
        ("transport bolt {\n  size 100\n}", true),
        ("transport_url bolt://mercure.db?size=100", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = herald();
        command
            .current_dir(dir.path())
            .env("MERCURE_PUBLISHER_JWT_KEY", KEY)
            .env("MERCURE_EXTRA_DIRECTIVES", directives);
        let hub = Herald::start_command(command, &[]);
        let history = dir.path().join("herald-data/history.redb");
        assert_eq!(history.exists(), on_disk, "{directives}");
        drop(hub);
    }
}

#[tokio::test]
async fn server_name_sets_the_listen_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(
        &["--transport", "memory"],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", KEY),
            ("SERVER_NAME", &format!("http://localhost:{port}")),
        ],
    );
    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn herald_settings_win_over_mercure_ones() {
    // A bad directive value is never read when the Herald setting is given.
    let server = Server::start(
        &["--transport", "memory", "--heartbeat", "40s"],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", KEY),
            ("MERCURE_EXTRA_DIRECTIVES", "anonymous\nheartbeat 5x"),
        ],
    );
    assert_eq!(server.subscribe(None).await.status(), 200);
    let line = refused(
        &["--listen", "127.0.0.1:0", "--transport", "memory"],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", KEY),
            ("MERCURE_EXTRA_DIRECTIVES", "anonymous\nheartbeat 5x"),
        ],
    );
    assert_names(&line, "heartbeat");
    assert!(
        line.contains("set by MERCURE_EXTRA_DIRECTIVES (line 2): `heartbeat 5x`"),
        "{line}"
    );
}

#[tokio::test]
async fn a_caddyfile_mercure_block_configures_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(
        &caddyfile,
        format!(
            "{{\n\torder mercure after encode\n}}\n\n127.0.0.1:{port} {{\n\tencode zstd gzip\n\
             \tmercure {{\n\t\t# Publisher JWT key\n\t\tpublisher_jwt {{env.NEWCOMER_KEY}} \
             {{env.NEWCOMER_ALG}}\n\t\tsubscriber_jwt \"{KEY}\"\n\t\tanonymous\n\
             \t\ttopic_selector_cache 10000\n\t}}\n\trespond \"Not Found\" 404\n}}\n"
        ),
    )
    .unwrap();
    let mut server = Server::start(
        &[
            "--transport",
            "memory",
            "--mercure-config",
            caddyfile.to_str().unwrap(),
        ],
        &[("NEWCOMER_KEY", KEY)],
    );
    assert_eq!(server.addr, format!("127.0.0.1:{port}"));
    assert_eq!(server.subscribe(None).await.status(), 200);
    let response = server.publish(&publisher(KEY), &[("topic", TOPIC)]).await;
    assert_eq!(response.status(), 200);
    let warning = server
        .wait_for_log("does not apply", Duration::from_secs(5))
        .unwrap();
    assert!(warning.contains("topic_selector_cache 10000"), "{warning}");
}
