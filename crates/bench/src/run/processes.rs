//! `--processes`: helper processes that hold a share of the subscribers, so that one run can
//! pass one process's open-file limit.
//!
//! The main process starts each helper ([`spawn_helper`]: this same binary with
//! `--connections-only`) and waits for its `ready` line with what it connected; a helper
//! ([`hold`]) opens its share, reports, and holds the connections idle until its standard input
//! closes (or `--hold-secs` pass). A helper runs as many runtime threads as the main process, so
//! that every share connects with the same generator: with one thread, a helper was busy for the
//! whole of its share's connect, and that share measured the generator more than the server
//! (docs/benchmarks.md, "Connect time: the same generator for both halves of (c), and the idle
//! cores").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::subscribers::{open_subscribers, wait_connected};
use super::{Endpoint, RunArgs, Shared, Topics, layout};

/// A helper process holding subscribers.
pub(super) struct Helper {
    pub(super) child: tokio::process::Child,
    pub(super) connected: usize,
    pub(super) failed: usize,
    pub(super) retries: usize,
}

pub(super) async fn spawn_helper(
    args: &RunArgs,
    run_id: &str,
    offset: usize,
    count: usize,
) -> Result<Helper, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let s = &args.server;
    let target = s.target.name();
    let topics = match args.topics {
        Topics::One => "one",
        Topics::Many => "many",
        Topics::Template => "template",
    };
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("run")
        .args(["--connections-only", "--target", target])
        .args(["--addr", &s.addr.to_string(), "--hub-path", &s.hub_path])
        .args(["--nchan-sub", &s.nchan_sub, "--nchan-pub", &s.nchan_pub])
        .args(["--topics", topics, "--run-id", run_id])
        .args(["--subscribers", &count.to_string()])
        .args(["--index-offset", &offset.to_string()])
        .args(["--total-subscribers", &args.subscribers.to_string()])
        .args([
            "--connect-concurrency",
            &args.connect_concurrency.to_string(),
        ])
        .args(["--sources", &args.sources.to_string()])
        .args(["--connect-retries", &args.connect_retries.to_string()])
        .args(["--hold-secs", &args.hold_secs.to_string()])
        .args(["--threads", &args.server.threads.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start a helper: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
        .await
        .map_err(|_| "a helper did not connect in 300 s".to_owned())?
        .map_err(|e| e.to_string())?
        .ok_or("a helper exited before it was ready")?;
    let mut words = line.split_whitespace().skip(1);
    let mut number = || words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    Ok(Helper {
        connected: number(),
        failed: number(),
        retries: number(),
        child,
    })
}

/// `--connections-only`: hold the subscribers until stdin closes or --hold-secs pass.
pub(super) async fn hold(args: RunArgs) -> Result<(), String> {
    let endpoint = Arc::new(Endpoint::new(&args.server)?);
    let layout = layout(&args);
    let shared = Arc::new(Shared::default());
    let tasks = open_subscribers(
        &args,
        &endpoint,
        &layout,
        &shared,
        args.index_offset,
        args.subscribers,
        0,
    );
    wait_connected(&shared, args.subscribers).await;
    let mut stdout = tokio::io::stdout();
    let ready = format!(
        "ready {} {} {}\n",
        shared.connected.load(Ordering::Relaxed),
        shared.connect_failed.load(Ordering::Relaxed),
        shared.connect_retries.load(Ordering::Relaxed)
    );
    stdout
        .write_all(ready.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stdout.flush().await.map_err(|e| e.to_string())?;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let closed = async {
        while !matches!(
            tokio::io::AsyncReadExt::read(&mut stdin, &mut sink).await,
            Ok(0) | Err(_)
        ) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs_f64(args.hold_secs), closed).await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}
