//! `herald serve` with `--metrics-listen` (or `HERALD_METRICS_LISTEN`) and `--log-format json`,
//! as an operator runs it: the real binary, its metrics listener found from its log, a scrape
//! after real traffic, and one JSON log line per disconnect with its reason.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Herald, STARTUP, herald, token, wait_with_timeout};
use serde_json::Value;

/// `herald serve ARGS` must refuse to start: exit code 2, one line naming `setting`.
fn assert_refused(args: &[&str], setting: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = herald()
        .current_dir(dir.path())
        .arg("serve")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::lines_of(child.stderr.take().unwrap());
    let status = wait_with_timeout(&mut child, STARTUP).expect("herald refused to start");
    let lines: Vec<String> = stderr.iter().collect();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(
        lines[0].contains(&format!("invalid setting {setting}:")),
        "names {setting}: {lines:?}"
    );
}

#[test]
fn bad_metrics_listen_and_log_format_are_refused_by_name() {
    assert_refused(
        &["--jwt-key", common::KEY, "--metrics-listen", "nowhere"],
        "metrics-listen",
    );
    assert_refused(
        &["--jwt-key", common::KEY, "--log-format", "xml"],
        "log-format",
    );
}

// Multi-threaded: waiting for a log line blocks a thread, and the client's connection tasks
// (closing the dropped stream's connection) must run meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_serves_counts_health_and_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = herald();
    command
        .current_dir(dir.path())
        .env("HERALD_METRICS_LISTEN", "127.0.0.1:0");
    let mut hub = Herald::start_command(
        command,
        &[
            "--jwt-key",
            common::KEY,
            "--transport",
            "memory",
            "--log-format",
            "json",
            "--log",
            "info,herald_hub=debug",
        ],
    );
    let line = hub
        .wait_for_log("metrics on http://", STARTUP)
        .expect("the metrics listener is announced");
    let log: Value = serde_json::from_str(&line).expect("a JSON log line");
    let message = log["fields"]["message"].as_str().unwrap();
    let metrics = message.strip_prefix("metrics on ").unwrap().to_owned();
    let base = metrics.strip_suffix("/metrics").unwrap().to_owned();
    let main = hub
        .url
        .strip_suffix("/.well-known/mercure")
        .unwrap()
        .to_owned();
    let client = common::http_client();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    // Health on both listeners; metrics only on their own.
    for base in [&main, &base] {
        assert_eq!(get(format!("{base}/healthz")).await, (200, "ok\n".into()));
        assert_eq!(get(format!("{base}/readyz")).await, (200, "ready\n".into()));
    }
    assert_eq!(get(format!("{main}/metrics")).await.0, 404);

    // One subscriber, one update, then the subscriber goes away.
    let mut stream = client
        .get(format!("{}?topic=*", hub.url))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let published = client
        .post(&hub.url)
        .bearer_auth(token())
        .form(&[("topic", "https://example.com/1"), ("data", "hello")])
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let mut text = String::new();
    while !text.contains("data: hello\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
            .await
            .expect("the update arrives")
            .unwrap()
            .expect("the stream is open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(stream);
    let line = hub
        .wait_for_log("subscriber disconnected", STARTUP)
        .unwrap_or_else(|| panic!("one debug line per disconnect: {:?}", hub.log));
    let log: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(log["level"], "DEBUG", "{line}");
    assert_eq!(log["fields"]["reason"], "client_gone", "{line}");
    assert!(
        log["fields"]["subscriber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:"),
        "{line}"
    );

    let (status, scrape) = get(metrics).await;
    assert_eq!(status, 200);
    for series in [
        "mercure_subscribers_connected 0",
        "mercure_subscribers_total 1",
        "mercure_updates_total 1",
        "herald_publishes_total{result=\"accepted\"} 1",
        "herald_deliveries_total 1",
        "herald_subscribers_disconnected_total{reason=\"client_gone\"} 1",
        "herald_history_events 1",
    ] {
        assert!(scrape.lines().any(|l| l == series), "{series} in\n{scrape}");
    }

    // Every line the hub logged is one JSON object.
    for line in &hub.log {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert_eq!(hub.terminate().and_then(|s| s.code()), Some(0));
}
