//! Durable history and zero-loss reconnection, with real `herald serve` processes.
//!
//! Each test runs the binary as a user would (default embedded transport, its own data
//! directory), talks to it over TCP, and kills or restarts it for real.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    HubProcess, KEY, event_ids, ids, publish, publish_all, publish_in_order, read_events, token,
};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r25_history_survives_kill_9_of_acknowledged_publishes() {
    let dir = data_dir();
    let hub = HubProcess::start(dir.path(), &[]);
    let published = ids("k9", 300);
    publish_all(&hub.url(), &published, 16).await;
    hub.kill9();

    let hub = HubProcess::start(dir.path(), &[]);
    let replayed = read_events(&hub.url(), "earliest", published.len()).await;
    let mut sorted = replayed.clone();
    sorted.sort();
    assert_eq!(
        sorted, published,
        "every acknowledged publish is back, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r25_order_ids_and_data_survive_a_clean_restart() {
    let dir = data_dir();
    let hub = HubProcess::start(dir.path(), &[]);
    let published = ids("clean", 50);
    publish_in_order(&hub.url(), &published).await;
    hub.terminate();

    let hub = HubProcess::start(dir.path(), &[]);
    assert_eq!(read_events(&hub.url(), "earliest", 50).await, published);
    // An id from before the restart is found in the index.
    assert_eq!(
        read_events(&hub.url(), &published[39], 10).await,
        published[40..]
    );
    // And data survives byte for byte.
    let response = crate::common::http_client()
        .get(format!("{}?topic=*", hub.url()))
        .header("Last-Event-ID", &published[48])
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") || !text.contains("id: ") {
        text.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
    }
    assert!(text.contains(&format!(
        "id: {}\ndata: data of {}\n\n",
        published[49], published[49]
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_hub_closes_its_history_file_and_a_killed_one_is_repaired_at_the_next_start() {
    let repaired = |hub: &HubProcess| {
        hub.startup_log
            .iter()
            .any(|line| line.contains("was not closed cleanly"))
    };
    let dir = data_dir();
    let hub = HubProcess::start(dir.path(), &[]);
    assert!(!repaired(&hub), "a new file needs no repair");
    let before = ids("closed", 20);
    publish_in_order(&hub.url(), &before).await;
    hub.terminate();

    // SIGTERM closes the file: the next start opens it as it is.
    let hub = HubProcess::start(dir.path(), &[]);
    assert!(
        !repaired(&hub),
        "a cleanly stopped hub leaves a closed file: {:?}",
        hub.startup_log
    );
    let after = ids("killed", 20);
    publish_in_order(&hub.url(), &after).await;
    hub.kill9();

    // kill -9 leaves it open: redb repairs it, the log says so, and nothing is lost.
    let hub = HubProcess::start(dir.path(), &[]);
    assert!(
        repaired(&hub),
        "the start after kill -9 says it repairs: {:?}",
        hub.startup_log
    );
    let everything: Vec<String> = before.into_iter().chain(after).collect();
    assert_eq!(read_events(&hub.url(), "earliest", 40).await, everything);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r28_replay_from_the_middle_of_a_large_history() {
    let dir = data_dir();
    let hub = HubProcess::start(dir.path(), &["--history-size", "100000"]);
    let published = ids("big", 20_000);
    publish_all(&hub.url(), &published, 32).await;
    // Concurrent publishers may be ordered either way: read the history's own order first.
    let order = read_events(&hub.url(), "earliest", published.len()).await;
    assert_eq!(order.len(), published.len());
    let middle = &order[12_345];
    let replayed = read_events(&hub.url(), middle, order.len() - 12_346).await;
    assert_eq!(
        replayed,
        order[12_346..],
        "the events after the id, in order, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r29_history_is_bounded_by_count_across_restarts() {
    let dir = data_dir();
    let hub = HubProcess::start(dir.path(), &["--history-size", "20"]);
    let published = ids("bound", 50);
    publish_in_order(&hub.url(), &published).await;
    hub.terminate();
    let hub = HubProcess::start(dir.path(), &["--history-size", "20"]);
    assert_eq!(
        read_events(&hub.url(), "earliest", 20).await,
        published[30..]
    );
}

/// Opens a raw subscription with a tiny receive buffer and does not read it: the hub's queue
/// for it fills up.
async fn stalled_subscriber(addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /.well-known/mercure?topic=* HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Decodes a chunked HTTP/1.1 response body (headers included in `raw`).
fn dechunk(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let (_, mut rest) = text.split_once("\r\n\r\n").expect("response headers");
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            body.push_str(&after[..size.min(after.len())]);
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_and_resumes_with_every_update_exactly_once() {
    let dir = data_dir();
    // `periodic` durability: this test is about the slow reader, and 1,500 sequential publishes
    // each waiting for an fsync would make it slow on a busy machine.
    let hub = HubProcess::start(
        dir.path(),
        &[
            "--subscriber-queue-size",
            "64KiB",
            "--max-body-size",
            "16KiB",
            "--durability",
            "periodic",
        ],
    );
    let mut slow = stalled_subscriber(&hub.addr).await;
    // Let the subscription register before the burst.
    let mut head = [0u8; 512];
    let _ = slow.read(&mut head).await.unwrap();
    let published = ids("burst", 1500);
    // 6 MB in all: more than the kernel can buffer for the stalled socket (tcp_wmem max 4 MiB).
    let padding = "x".repeat(4000);
    let client = crate::common::http_client();
    for id in &published {
        let response = publish(&client, &hub.url(), id, &padding).await;
        assert_eq!(response.status(), 200);
    }
    // Whatever arrived before the hub cut it off. The end may be a clean close or, when the
    // kernel gave up on the stalled connection first (TCP user timeout), a reset: either way
    // the subscriber keeps the complete events it got and resumes after the last one.
    let mut raw = head.to_vec();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), slow.read(&mut buf))
            .await
            .expect("the hub ended the slow subscriber's stream")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let first = event_ids(&dechunk(&raw));
    assert!(
        first.len() < published.len(),
        "the slow subscriber was disconnected before the end ({} events)",
        first.len()
    );
    assert_eq!(first, published[..first.len()], "in order, no gap");
    // It reconnects with its last id and gets exactly the rest.
    let last = first.last().cloned().unwrap_or_else(|| "earliest".into());
    let rest = read_events(&hub.url(), &last, published.len() - first.len()).await;
    let mut all = first;
    all.extend(rest);
    assert_eq!(all, published, "every update exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_resumes_with_every_update_exactly_once() {
    let dir = data_dir();
    let hub = HubProcess::start(dir.path(), &[]);
    let published = ids("cut", 200);
    let url = hub.url();
    // Subscribe, read the first 50, then cut the connection mid-stream while publishing goes on.
    let publisher = {
        let url = url.clone();
        let published = published.clone();
        tokio::spawn(async move { publish_in_order(&url, &published).await })
    };
    let first = read_events(&url, "earliest", 50).await;
    publisher.await.unwrap();
    let last = first.last().unwrap().clone();
    let rest = read_events(&url, &last, published.len() - first.len()).await;
    let mut all = first;
    all.extend(rest);
    assert_eq!(all, published);
}

/// Runs `herald serve` on `data_dir`, which must refuse to start: returns its stderr.
fn refused_start(data_dir: &Path) -> String {
    let mut child = common::herald()
        .args(["serve", "--listen", "127.0.0.1:0", "--jwt-key", KEY])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald binary runs");
    let stderr = common::lines_of(child.stderr.take().unwrap());
    let status = common::wait_with_timeout(&mut child, common::STARTUP)
        .expect("herald started on a damaged history file");
    let stderr: Vec<String> = stderr.iter().collect();
    let stderr = stderr.join("\n");
    assert_eq!(status.code(), Some(1), "refused with exit code 1: {stderr}");
    stderr
}

/// A real history file of 60 updates, left as a stopped hub leaves it.
async fn real_history(dir: &Path) -> Vec<u8> {
    let hub = HubProcess::start(dir, &[]);
    let client = crate::common::http_client();
    let padding = "h".repeat(2000);
    for i in 0..60 {
        let response = publish(&client, &hub.url(), &format!("real-{i}"), &padding).await;
        assert_eq!(response.status(), 200);
    }
    hub.terminate();
    std::fs::read(dir.join("history.redb")).unwrap()
}

/// A redb database written by another program: a valid file without Herald's tables.
fn foreign_redb_file(path: &Path) {
    const TABLE: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("settings");
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(TABLE)
        .unwrap()
        .insert("theme", "dark")
        .unwrap();
    txn.commit().unwrap();
}

/// Each kind of damage stops the start with its own one-line message naming the file and what
/// to do, and the file is never written to: not even the header bytes redb's repair rewrites.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_history_files_stop_the_start_each_with_its_own_message_and_are_not_modified() {
    let source = data_dir();
    let real = real_history(source.path()).await;
    let half = real[..real.len() / 2].to_vec();
    let mut random = vec![0u8; 64 * 1024];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for byte in &mut random {
        // xorshift: random-looking bytes, the same on every run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *byte = seed as u8;
    }
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(8192, 0);
    let foreign = {
        let dir = data_dir();
        let path = dir.path().join("other.redb");
        foreign_redb_file(&path);
        std::fs::read(path).unwrap()
    };
    // (damage, file content, what the message must say)
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("zero-length", Vec::new(), "is empty (0 bytes)"),
        ("truncated to half", half, "is truncated"),
        (
            "truncated inside the header",
            real[..100].to_vec(),
            "is truncated",
        ),
        ("random bytes", random, "match no known format"),
        ("a SQLite database", sqlite, "but a SQLite database"),
        (
            "another program's redb",
            foreign,
            "redb database of another program (tables: settings)",
        ),
    ];
    for (damage, content, says) in cases {
        let dir = data_dir();
        let path = dir.path().join("history.redb");
        std::fs::write(&path, &content).unwrap();
        let stderr = refused_start(dir.path());
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{damage}: one line: {stderr}"
        );
        assert!(
            stderr.contains(&path.display().to_string()),
            "{damage}: names the file: {stderr}"
        );
        assert!(stderr.contains(says), "{damage}: says {says:?}: {stderr}");
        assert!(
            stderr.contains("restore it from a backup") || stderr.contains("--data-dir of its own"),
            "{damage}: says what to do: {stderr}"
        );
        assert!(
            !stderr.contains("readable and writable"),
            "{damage}: no permissions hint: {stderr}"
        );
        assert!(stderr.contains("it was not modified"), "{damage}: {stderr}");
        assert!(
            std::fs::read(&path).unwrap() == content,
            "{damage}: the file was modified"
        );
    }
    // And the undamaged file still starts, with its history.
    let hub = HubProcess::start(source.path(), &[]);
    assert_eq!(read_events(&hub.url(), "earliest", 60).await.len(), 60);
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test needs root to mount a small tmpfs (CI runs as root)"
        );
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_makes_publishes_503_and_subscribers_keep_being_served() {
    let dir = data_dir();
    let _disk = SmallDisk::mount(dir.path(), "2m");
    let hub = HubProcess::start(dir.path(), &["--history-size", "1000000"]);
    let client = crate::common::http_client();
    let mut subscriber = crate::common::http_client()
        .get(format!("{}?topic=*", hub.url()))
        .bearer_auth(token())
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let padding = "y".repeat(60_000);
    let mut refused = None;
    for i in 0..200 {
        let response = publish(&client, &hub.url(), &format!("fill-{i}"), &padding).await;
        if response.status() != 200 {
            refused = Some((response.status(), response.text().await.unwrap()));
            break;
        }
    }
    let (status, reason) = refused.expect("a 2 MiB disk fills up");
    assert_eq!(status, 503);
    assert!(reason.contains("not stored"), "says why: {reason}");
    // The hub is still up: health, new subscribers, and the open stream is still open.
    let health = client
        .get(format!("http://{}/healthz", hub.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let late = crate::common::http_client()
        .get(format!("{}?topic=*", hub.url()))
        .header("Last-Event-ID", "fill-0")
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .expect("the open stream still delivers")
        .unwrap()
        .unwrap();
    assert!(!first.is_empty());
}
