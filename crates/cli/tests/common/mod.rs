//! The one way these tests run the `herald` binary: a clean environment, stderr and stdout read
//! on threads (so that the process never blocks on a full pipe), and `herald serve` started on
//! a free port and waited for until it says where it listens; `redis` and `nginx` start the
//! servers the cluster tests put around it, and `HubProcess`/`Subscription` serve those tests.

#![allow(dead_code)] // each test file uses its own part of it
#![allow(unreachable_pub)] // helpers shared by the test files, not an API

pub mod nginx;
pub mod redis;
pub mod tls;

use std::io::{BufRead, BufReader, Read};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

/// A plain HTTP client for the tests. Built through this function because the workspace's
/// reqwest has rustls without a crypto provider (the CLI's HTTPS brings it in, on ring), and a
/// client built without a TLS configuration of its own needs the process's default provider.
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().unwrap()
}

/// [`http_client`]'s builder, for clients with other settings.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Whoever installed one first wins; ring is the workspace's provider either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// How long the binary gets to start, fail or stop.
pub const STARTUP: Duration = Duration::from_secs(20);
pub const STOP: Duration = Duration::from_secs(10);

/// `herald` with a clean environment: none of the test runner's HERALD_*, MERCURE_* or RUST_LOG
/// variables leak into the process under test.
pub fn herald() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("HERALD_") || name.starts_with("MERCURE_") || name == "RUST_LOG" {
            command.env_remove(&*name);
        }
    }
    command.env("NO_COLOR", "1").stdin(Stdio::null());
    command
}

/// Reads `reader` line by line on a thread, into a channel.
pub fn lines_of(reader: impl Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Waits up to `timeout` for `child` to exit; kills it past that and returns `None`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `herald serve`, killed when dropped.
pub struct Herald {
    pub child: Child,
    /// `http://127.0.0.1:PORT/.well-known/mercure` (`https://` with `--tls-cert`)
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub stderr: Receiver<String>,
    pub stdout: Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

impl Herald {
    /// Starts `herald serve ARGS`, on `--listen 127.0.0.1:0` unless ARGS sets `--listen` (or the
    /// command's environment sets `HERALD_LISTEN` or `SERVER_NAME`, or `--mercure-config` its
    /// Caddyfile's site address), and
    /// waits for its "listening on" line.
    pub fn start(args: &[&str]) -> Herald {
        Herald::start_command(herald(), args)
    }

    /// Like [`Herald::start`], with a command prepared by the caller (from [`herald`]: its
    /// working directory, environment, ...).
    pub fn start_command(mut command: Command, args: &[&str]) -> Herald {
        command.arg("serve").args(args);
        let listen_from_env = command.get_envs().any(|(name, value)| {
            value.is_some() && (name == "SERVER_NAME" || name == "HERALD_LISTEN")
        });
        if !listen_from_env
            && !args.contains(&"--listen")
            && !args.contains(&"--mercure-config")
            && !args.iter().any(|a| a.starts_with("--listen="))
        {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the herald binary runs");
        let stderr = lines_of(child.stderr.take().unwrap());
        let stdout = lines_of(child.stdout.take().unwrap());
        let mut herald = Herald {
            child,
            url: String::new(),
            addr: String::new(),
            stderr,
            stdout,
            log: Vec::new(),
        };
        let line = herald
            .wait_for_log("listening on http", STARTUP)
            .unwrap_or_else(|| panic!("herald did not start; stderr: {:?}", herald.log));
        let start = line.find("listening on ").unwrap() + "listening on ".len();
        herald.url = line[start..]
            // Text logs end the URL with a space or a colour code, JSON logs with a quote.
            .split(|c: char| c.is_whitespace() || c == '\x1b' || c == '"')
            .next()
            .unwrap()
            .to_owned();
        assert!(herald.url.ends_with("/.well-known/mercure"), "{line}");
        herald.addr = herald.url[herald.url.find("://").unwrap() + 3..]
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        herald
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Reads stdout until a line containing `needle`; returns every line read.
    pub fn stdout_until(&mut self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + STARTUP;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    lines.push(line);
                    if found {
                        return lines;
                    }
                }
                Err(_) => panic!("no {needle:?} on stdout; got {lines:?}"),
            }
        }
    }

    /// Sends SIGTERM (through `kill`, as a service manager would) and waits for the exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        wait_with_timeout(&mut self.child, STOP)
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- processes and streams of the durability and cluster tests ----

pub const KEY: &str = "durability-test-key-0123456789abcdef";

/// A token that may publish and receive everything.
pub fn token() -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

/// A `herald serve` process on a free port, killed when dropped.
pub struct HubProcess {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// What the hub logged before it said it listens.
    pub startup_log: Vec<String>,
}

impl HubProcess {
    /// A hub with its own data directory (the default embedded transport).
    pub fn start(data_dir: &Path, extra: &[&str]) -> HubProcess {
        let dir = data_dir.to_str().expect("UTF-8 temporary path");
        let mut args = vec!["--data-dir", dir];
        args.extend_from_slice(extra);
        HubProcess::start_with(&args)
    }

    /// A hub with these arguments after `serve --listen 127.0.0.1:0 --jwt-key KEY`; returns once
    /// it listens.
    pub fn start_with(args: &[&str]) -> HubProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0", "--jwt-key", KEY])
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut startup_log = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("herald exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
            startup_log.push(line);
        };
        // Keep draining stderr so the hub never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        HubProcess {
            child,
            addr,
            startup_log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/mercure", self.addr)
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean stop exits 0, got {status}");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn publish(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    data: &str,
) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(token())
        .form(&[
            ("topic", "https://example.com/t"),
            ("id", id),
            ("data", data),
        ])
        .send()
        .await
        .unwrap()
}

/// Publishes `ids` with `concurrency` publishers at a time, asserting each is acknowledged.
pub async fn publish_all(url: &str, ids: &[String], concurrency: usize) {
    let client = crate::common::http_client();
    futures_util::stream::iter(ids)
        .for_each_concurrent(concurrency, |id| {
            let client = client.clone();
            async move {
                let response = publish(&client, url, id, &format!("data of {id}")).await;
                assert_eq!(response.status(), 200, "publish {id}");
            }
        })
        .await;
}

/// Publishes `ids` one after the other (so their order in history is theirs).
pub async fn publish_in_order(url: &str, ids: &[String]) {
    let client = crate::common::http_client();
    for id in ids {
        let response = publish(&client, url, id, &format!("data of {id}")).await;
        assert_eq!(response.status(), 200, "publish {id}");
    }
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}

/// The ids of the complete events (ended by a blank line) in an SSE text.
pub fn event_ids(text: &str) -> Vec<String> {
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end + 2]);
    complete
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(str::to_owned)
        .collect()
}

/// An open subscription (`topic=*`, every right), read as it arrives.
pub struct Subscription {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    /// Everything received so far.
    pub text: String,
    /// The response's `Last-Event-ID` header (where a replay started), if any.
    pub replay_start: Option<String>,
    ended: bool,
}

impl Subscription {
    /// Subscribes to everything on `url`, after `last_event_id` when given.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Subscription {
        Subscription::open_query(url, "topic=*", last_event_id).await
    }

    /// Subscribes with this query string (`topic=...`).
    pub async fn open_query(url: &str, query: &str, last_event_id: Option<&str>) -> Subscription {
        let mut request = crate::common::http_client()
            .get(format!("{url}?{query}"))
            .bearer_auth(token());
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let replay_start = response
            .headers()
            .get("last-event-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut subscription = Subscription {
            stream: response.bytes_stream().boxed(),
            text: String::new(),
            replay_start,
            ended: false,
        };
        // The opening comment: the subscriber is registered from here on.
        subscription
            .read_until(Duration::from_secs(10), |text| !text.is_empty())
            .await;
        subscription
    }

    /// The ids of the complete events received so far.
    pub fn ids(&self) -> Vec<String> {
        event_ids(&self.text)
    }

    /// Reads until `done(text)`, the stream ends, or `timeout`; says whether `done` holds.
    pub async fn read_until(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.text) && !self.ended {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => break,
                Ok(Some(Ok(chunk))) => self.text.push_str(std::str::from_utf8(&chunk).unwrap()),
                // The hub went away (killed) or ended the stream.
                Ok(Some(Err(_)) | None) => self.ended = true,
            }
        }
        done(&self.text)
    }

    /// Reads until `count` events arrived, or panics after 60 s.
    pub async fn wait_for(&mut self, count: usize) -> Vec<String> {
        let arrived = self
            .read_until(Duration::from_secs(60), |text| {
                event_ids(text).len() >= count
            })
            .await;
        assert!(
            arrived,
            "{} of {count} events arrived (stream ended: {})",
            self.ids().len(),
            self.ended
        );
        self.ids()
    }

    /// Reads until the stream ends (the hub was killed), or panics after 60 s.
    pub async fn wait_for_end(&mut self) -> Vec<String> {
        self.read_until(Duration::from_secs(60), |_| false).await;
        assert!(self.ended, "the stream ended");
        self.ids()
    }

    pub fn ended(&self) -> bool {
        self.ended
    }
}

/// Reads a stream with `Last-Event-ID: after` (or `earliest`) until `count` events arrived.
pub async fn read_events(url: &str, after: &str, count: usize) -> Vec<String> {
    Subscription::open(url, Some(after))
        .await
        .wait_for(count)
        .await
}

// ---- `herald serve` in a directory of its own: refusals and a running server ----

/// Runs `herald serve ARGS` expecting it to refuse its settings: exit code 2 and exactly one
/// line on stderr, which is returned.
pub fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    // In an empty directory of its own, in case it starts and writes its data there.
    let dir = tempfile::tempdir().unwrap();
    let mut child = herald()
        .current_dir(dir.path())
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald binary runs");
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        pipe.read_to_string(&mut stderr).unwrap();
        stderr
    });
    let status = wait_with_timeout(&mut child, STARTUP)
        .unwrap_or_else(|| panic!("herald serve {args:?} kept running instead of refusing"));
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: exactly one line expected, got {stderr:?}"
    );
    lines[0].to_owned()
}

/// Asserts that the refusal `line` names `setting` (as `invalid setting NAME:`).
pub fn assert_names(line: &str, setting: &str) {
    assert!(
        line.contains(&format!("invalid setting {setting}:")),
        "expected the line to name {setting}: {line:?}"
    );
}

/// A running `herald serve` in a directory of its own, with an HTTP client.
pub struct Server {
    pub herald: Herald,
    /// The process's working directory, where it keeps its data by default: one per server, so
    /// that servers running in parallel share nothing.
    _dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Deref for Server {
    type Target = Herald;
    fn deref(&self) -> &Herald {
        &self.herald
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Herald {
        &mut self.herald
    }
}

impl Server {
    /// Starts `herald serve ARGS` (with `env`) in a fresh directory; see [`Herald::start`].
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut command = herald();
        command.current_dir(dir.path()).envs(env.iter().copied());
        Server {
            herald: Herald::start_command(command, args),
            _dir: dir,
            client: http_client(),
        }
    }

    pub async fn publish(&self, token: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(&self.url)
            .bearer_auth(token)
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Opens a stream on `topic=*`, with `token` if given.
    pub async fn subscribe(&self, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}?topic=*", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

/// Reads a stream until its text contains `needle`.
pub async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the stream; got {text:?}"))
            .expect("stream readable")
            .unwrap_or_else(|| panic!("stream ended before {needle:?}; got {text:?}"));
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}
