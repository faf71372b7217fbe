//! `herald serve --tls-cert --tls-key` as clients meet it: `curl` over HTTP/2 (ALPN) and
//! HTTP/1.1, certificates reloaded on change and on SIGHUP (the serial `openssl s_client` sees),
//! the header timeout over the handshake, bad settings refused, and `herald publish` /
//! `herald subscribe` over HTTPS with `--cacert`. Certificates come from a test CA made with
//! `openssl` at test time.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::tls::{Leaf, TestCa, served};
use common::{Herald, assert_names, herald, lines_of, refused};

const KEY: &str = "tls-test-key-0123456789abcdefghij";
const WAIT: Duration = Duration::from_secs(15);

fn publisher_token() -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}}),
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

/// `herald serve` over TLS with `leaf`, anonymous subscribers allowed.
fn start(leaf: &Leaf, extra: &[&str]) -> Herald {
    let mut args = vec![
        "--transport",
        "memory",
        "--jwt-key",
        KEY,
        "--anonymous",
        "--tls-cert",
        leaf.cert.to_str().unwrap(),
        "--tls-key",
        leaf.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let hub = Herald::start(&args);
    assert!(hub.url.starts_with("https://"), "{}", hub.url);
    hub
}

/// A `curl` process, killed when dropped, with its output read line by line.
struct Curl {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Curl {
    /// `curl -sS -v --cacert CA ARGS`.
    fn spawn(ca: &TestCa, args: &[&str]) -> Curl {
        let mut child = Command::new("curl")
            .args(["-sS", "-v", "--no-buffer", "--cacert"])
            .arg(&ca.cert)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl runs (apt-get install curl)");
        Curl {
            stdout: lines_of(child.stdout.take().unwrap()),
            stderr: lines_of(child.stderr.take().unwrap()),
            child,
        }
    }

    /// Waits for a line containing `needle` on `lines`; every line read, or a panic.
    fn wait(lines: &Receiver<String>, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no {needle:?} from curl; got {seen:?}"),
            }
        }
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `data` on `topic` with curl over `version` (`--http2` or `--http1.1`); returns
/// the HTTP version curl used.
fn publish(ca: &TestCa, url: &str, version: &str, topic: &str, data: &str) -> String {
    let auth = format!("Authorization: Bearer {}", publisher_token());
    let output = Command::new("curl")
        .args(["-sS", "--fail-with-body", version, "--cacert"])
        .arg(&ca.cert)
        .args(["-H", &auth, "-d", &format!("topic={topic}"), "-d"])
        .arg(format!("data={data}"))
        .args(["-o", "/dev/null", "-w", "%{http_version}", url])
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn curl_subscribes_and_publishes_over_http2_and_http1_1() {
    let mut ca = TestCa::new();
    let leaf = ca.issue();
    let hub = start(&leaf, &[]);
    // By name and by address: the certificate covers both.
    let by_name = hub.url.replace("127.0.0.1", "localhost");
    let h2 = Curl::spawn(&ca, &["--http2", "-N", &format!("{by_name}?topic=tls")]);
    let h1 = Curl::spawn(&ca, &["--http1.1", "-N", &format!("{}?topic=tls", hub.url)]);
    // ALPN chose the protocol each client asked for [R3: the hub serves SSE over HTTP/2 too].
    let h2_log = Curl::wait(&h2.stderr, "< HTTP/");
    assert!(
        h2_log.last().unwrap().contains("< HTTP/2 200"),
        "{h2_log:?}"
    );
    assert!(
        h2_log
            .iter()
            .any(|l| l.contains("ALPN: server accepted h2")),
        "{h2_log:?}"
    );
    let h1_log = Curl::wait(&h1.stderr, "< HTTP/");
    assert!(
        h1_log.last().unwrap().contains("< HTTP/1.1 200"),
        "{h1_log:?}"
    );
    // The opening comment: both streams are registered before the publish.
    Curl::wait(&h2.stdout, ":");
    Curl::wait(&h1.stdout, ":");
    assert_eq!(publish(&ca, &hub.url, "--http2", "tls", "over-h2"), "2");
    assert_eq!(publish(&ca, &hub.url, "--http1.1", "tls", "over-h1"), "1.1");
    for stream in [&h2, &h1] {
        Curl::wait(&stream.stdout, "data: over-h2");
        Curl::wait(&stream.stdout, "data: over-h1");
    }
}

#[test]
fn certificate_reloads_when_the_files_change_and_on_sighup_keeping_the_old_one_if_bad() {
    let mut ca = TestCa::new();
    let first = ca.issue();
    // The hub reads the files it was given: copies that the test replaces.
    let dir = tempfile::tempdir().unwrap();
    let live = Leaf {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        serial: first.serial.clone(),
    };
    install(&first, &live);
    let mut hub = start(&live, &[]);
    assert_eq!(served(&hub.addr), Some((first.serial.clone(), "h2".into())));

    // A new pair (written elsewhere, renamed over the old files): the next handshake has it.
    let second = ca.issue();
    assert_ne!(second.serial, first.serial);
    install(&second, &live);
    hub.wait_for_log("TLS certificate reloaded (files changed)", WAIT)
        .expect("reload logged");
    assert_eq!(served(&hub.addr).unwrap().0, second.serial);

    // A broken certificate: logged, and the previous one still served.
    std::fs::write(&live.cert, "not a certificate\n").unwrap();
    hub.wait_for_log("TLS certificate not reloaded", WAIT)
        .expect("failed reload logged");
    assert_eq!(served(&hub.addr).unwrap().0, second.serial);

    // SIGHUP reloads at once (here the third pair, written in place).
    let third = ca.issue();
    std::fs::copy(&third.key, &live.key).unwrap();
    std::fs::copy(&third.cert, &live.cert).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &hub.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    hub.wait_for_log("TLS certificate reloaded (SIGHUP)", WAIT)
        .expect("SIGHUP reload logged");
    assert_eq!(served(&hub.addr).unwrap().0, third.serial);
    assert!(
        hub.child.try_wait().unwrap().is_none(),
        "SIGHUP ended herald"
    );
}

/// Replaces `live`'s files with `leaf`'s, each by a rename (as certbot and Kubernetes do).
fn install(leaf: &Leaf, live: &Leaf) {
    for (from, to) in [(&leaf.key, &live.key), (&leaf.cert, &live.cert)] {
        let staged = to.with_extension("new");
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(&staged, to).unwrap();
    }
}

#[test]
fn a_client_that_stalls_before_or_during_the_handshake_is_closed_after_the_header_timeout() {
    let mut ca = TestCa::new();
    let leaf = ca.issue();
    let hub = start(&leaf, &["--header-timeout", "1s"]);
    let silent = TcpStream::connect(&hub.addr).unwrap();
    let mut half = TcpStream::connect(&hub.addr).unwrap();
    // The first bytes of a ClientHello record (handshake, TLS 1.0 record version, a length
    // of 512) and nothing more.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .unwrap();
    for mut stream in [silent, half] {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = std::io::Read::read(&mut stream, &mut buf);
        // Closed (EOF or reset), not timed out on our side.
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "{read:?}"
        );
        assert!(
            started.elapsed() < WAIT,
            "closed only after {:?}",
            started.elapsed()
        );
    }
}

/// Past `--max-connections` open subscriptions, a new one over TLS gets 503 (HTTP/2 and
/// HTTP/1.1 alike), as over plain HTTP; publishes are still served.
#[test]
fn past_max_connections_a_tls_subscription_gets_503() {
    let mut ca = TestCa::new();
    let leaf = ca.issue();
    let hub = start(&leaf, &["--max-connections", "1"]);
    let held = Curl::spawn(&ca, &["--http2", "-N", &format!("{}?topic=held", hub.url)]);
    Curl::wait(&held.stderr, "< HTTP/2 200");
    for version in ["--http2", "--http1.1"] {
        let output = Command::new("curl")
            .args(["-sS", version, "--cacert"])
            .arg(&ca.cert)
            .args([
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{}?topic=refused", hub.url),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "503", "{output:?}");
    }
    // A publish is not a subscription: it is answered (here 401, no token).
    let output = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca.cert)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &hub.url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "401", "{output:?}");
}

#[test]
fn tls_settings_that_cannot_work_refuse_to_start_naming_the_flag() {
    let mut ca = TestCa::new();
    let leaf = ca.issue();
    let other = ca.issue();
    let (cert, key) = (leaf.cert.to_str().unwrap(), leaf.key.to_str().unwrap());
    let base = [
        "--jwt-key",
        KEY,
        "--listen",
        "127.0.0.1:0",
        "--transport",
        "memory",
    ];
    let with = |extra: &[&str]| -> String {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        refused(&args, &[])
    };
    assert_names(&with(&["--tls-cert", cert]), "tls-key");
    assert_names(&with(&["--tls-key", key]), "tls-cert");
    let missing = with(&["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key]);
    assert_names(&missing, "tls-cert");
    assert!(missing.contains("/nonexistent/cert.pem"), "{missing}");
    assert_names(&with(&["--tls-cert", key, "--tls-key", key]), "tls-cert");
    let mismatch = with(&["--tls-cert", cert, "--tls-key", other.key.to_str().unwrap()]);
    assert_names(&mismatch, "tls-key");
    assert!(
        mismatch.contains("cannot serve the certificate"),
        "{mismatch}"
    );
}

#[test]
fn herald_publish_and_subscribe_reach_an_https_hub_with_cacert() {
    let mut ca = TestCa::new();
    let leaf = ca.issue();
    let hub = start(&leaf, &[]);
    let ca_path = ca.cert.to_str().unwrap();
    let mut subscriber = herald()
        .args([
            "subscribe",
            "--hub",
            &hub.url,
            "--topic",
            "cli",
            "--cacert",
            ca_path,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(subscriber.stdout.take().unwrap());
    let errors = lines_of(subscriber.stderr.take().unwrap());
    // Published until the subscriber has it: it may still be connecting at the first try.
    let deadline = Instant::now() + WAIT;
    // The first line of the event (`id: ...`) shows the subscriber has it; its data follows.
    let received = loop {
        let output = herald()
            .args([
                "publish", "--hub", &hub.url, "--topic", "cli", "--data", "over-tls",
            ])
            .args(["--jwt-key", KEY, "--cacert", ca_path])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "subscriber got nothing; stderr {:?}",
            errors.try_iter().collect::<Vec<_>>()
        );
    };
    assert!(received.starts_with("id: "), "{received}");
    let data = lines.recv_timeout(WAIT).unwrap();
    assert_eq!(data, "data: over-tls");
    let _ = subscriber.kill();
    let _ = subscriber.wait();

    // Without the CA the certificate is not trusted: exit 1 and a line that says so.
    let output = herald()
        .args([
            "publish", "--hub", &hub.url, "--topic", "cli", "--data", "x",
        ])
        .args(["--jwt-key", KEY])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}
