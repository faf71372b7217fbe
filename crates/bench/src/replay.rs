//! `herald-bench replay`: reconnection with `Last-Event-ID` in a large history.
//!
//! Fills the history with `--history` updates (ids `<run>-<n>`) from `--publishers` keep-alive
//! connections, then, `--probes` times, subscribes with `Last-Event-ID` set to the id `--back`
//! events before the end and measures the time to the first replayed event (the id lookup plus
//! the first read of history) and to the last one. Each probe checks that the first replayed
//! event is the one right after the id.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http::{self, Chunked, Conn, SseScanner};
use crate::procfs::Server;
use crate::report::Percentiles;
use crate::run::{Endpoint, Shared, progress, rate_of, update_data};
use crate::{ServerArgs, Target, now_ns};

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Updates published into the history before measuring.
    #[arg(long, default_value_t = 1000)]
    pub history: usize,
    /// Publisher connections filling the history.
    #[arg(long, default_value_t = 16)]
    pub publishers: usize,
    /// The Last-Event-ID is this many events before the end of the history.
    #[arg(long, default_value_t = 10)]
    pub back: usize,
    /// Reconnections measured (one after the other).
    #[arg(long, default_value_t = 50)]
    pub probes: usize,
    /// Bytes of data per update.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Names the topic and ids of this run (default: from the clock).
    #[arg(long)]
    pub run_id: Option<String>,
}

#[derive(Serialize)]
struct ReplayReport {
    scenario: String,
    target: Target,
    run_id: String,
    command: String,
    history: usize,
    fill_secs: f64,
    fill_per_sec: f64,
    fill_errors: u64,
    fill_cpu_secs: f64,
    back: usize,
    probes: usize,
    /// From connect to the response head.
    head_ms: Option<Percentiles>,
    /// From connect to the first replayed event.
    first_event_ms: Option<Percentiles>,
    /// From connect to the last of the `back` replayed events.
    all_events_ms: Option<Percentiles>,
    probe_cpu_secs: f64,
    server_rss_bytes: u64,
    errors: u64,
}

async fn fill(
    endpoint: Arc<Endpoint>,
    shared: Arc<Shared>,
    next: Arc<AtomicUsize>,
    limit: usize,
    args: Arc<ReplayArgs>,
    topic: Arc<String>,
    run_id: Arc<String>,
) {
    let mut conn: Option<Conn> = None;
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= limit {
            next.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let data = update_data(seq, args.payload);
        let id = format!("{run_id}-{seq}");
        let request = endpoint.publish_request(&topic, &data, Some(&id));
        let outcome = http::exchange(&mut conn, endpoint.addr, &request).await;
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

/// One reconnection: (head, first event, all events) times in ns.
async fn probe(
    endpoint: &Endpoint,
    request: &[u8],
    expected_first: usize,
    back: usize,
) -> Result<(u64, u64, u64), String> {
    let start = Instant::now();
    let stream = http::connect(endpoint.addr, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = Conn::new(stream, 16384);
    let head = conn
        .request_head(request)
        .await
        .map_err(|e| e.to_string())?;
    let head_ns = start.elapsed().as_nanos() as u64;
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    if head.last_event_id.as_deref() == Some("earliest") {
        return Err("the hub did not find the Last-Event-ID (replayed from the earliest)".into());
    }
    let mut chunked = head.chunked.then(Chunked::default);
    let mut sse = SseScanner::default();
    let mut seen = 0usize;
    let mut first_ns = 0;
    let mut first_seq = None;
    let mut start_at = 0;
    let mut end_at = conn.filled;
    loop {
        let mut on_data = |data: &[u8]| {
            if seen == 0 {
                first_ns = start.elapsed().as_nanos() as u64;
                first_seq = std::str::from_utf8(data)
                    .ok()
                    .and_then(|d| d.split('.').nth(1)?.parse::<usize>().ok());
            }
            seen += 1;
        };
        let bytes = &conn.buf[start_at..end_at];
        match &mut chunked {
            Some(decoder) => {
                decoder.feed(bytes, &mut |piece| sse.feed(piece, &mut on_data));
            }
            None => sse.feed(bytes, &mut on_data),
        }
        if seen >= back {
            if first_seq != Some(expected_first) {
                return Err(format!(
                    "first replayed event is {first_seq:?}, expected {expected_first}"
                ));
            }
            return Ok((head_ns, first_ns, start.elapsed().as_nanos() as u64));
        }
        start_at = 0;
        end_at = match tokio::io::AsyncReadExt::read(&mut conn.stream, &mut conn.buf).await {
            Ok(0) => return Err("stream ended".into()),
            Err(e) => return Err(e.to_string()),
            Ok(n) => n,
        };
    }
}

pub(crate) async fn main(args: ReplayArgs) -> Result<(), String> {
    if args.server.target != Target::Herald {
        return Err("replay measures a Mercure hub's Last-Event-ID: use --target herald".into());
    }
    if args.back == 0 || args.back > args.history {
        return Err("--back must be between 1 and --history".into());
    }
    let endpoint = Arc::new(Endpoint::new(&args.server)?);
    let server = Server::find(&args.server.server_pid, args.server.addr)?;
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{:x}", now_ns() / 1000 % 0xffff_ffff));
    let topic = Arc::new(format!("https://example.com/bench/{run_id}/replay"));
    let shared = Arc::new(Shared::default());
    let progress = progress(
        shared.clone(),
        0,
        args.history,
        args.server.scenario.clone(),
    );
    let before = server.sample();
    let fill_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let args = Arc::new(args);
    let run_id = Arc::new(run_id);
    // Concurrent publishers store their updates in whatever order the hub receives them, so
    // the last `back + 1` updates are published one after the other, after all the others: the
    // history then ends with exactly them, in order, and the probes know what to expect.
    let concurrent = args.history - args.back - 1;
    let fillers: Vec<_> = (0..args.publishers.max(1))
        .map(|_| {
            tokio::spawn(fill(
                endpoint.clone(),
                shared.clone(),
                next.clone(),
                concurrent,
                args.clone(),
                topic.clone(),
                run_id.clone(),
            ))
        })
        .collect();
    for filler in fillers {
        let _ = filler.await;
    }
    fill(
        endpoint.clone(),
        shared.clone(),
        next.clone(),
        args.history,
        args.clone(),
        topic.clone(),
        run_id.clone(),
    )
    .await;
    let fill_secs = fill_start.elapsed().as_secs_f64();
    progress.abort();
    let filled = server.sample();
    let published = shared.published.load(Ordering::Relaxed);
    let fill_errors = shared.publish_errors.load(Ordering::Relaxed);
    eprintln!(
        "[{}] history filled: {published} events in {fill_secs:.1} s ({fill_errors} errors); probing",
        args.server.scenario
    );

    let after = args.history - args.back - 1;
    let request = endpoint.subscribe_request(
        std::slice::from_ref(&*topic),
        Some(&format!("{run_id}-{after}")),
    );
    let (mut heads, mut firsts, mut alls) = (Vec::new(), Vec::new(), Vec::new());
    let mut errors = fill_errors;
    for _ in 0..args.probes {
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            probe(&endpoint, &request, after + 1, args.back),
        )
        .await
        .unwrap_or_else(|_| Err("timed out after 10 s".into()));
        match result {
            Ok((head, first, all)) => {
                heads.push(head);
                firsts.push(first);
                alls.push(all);
            }
            Err(e) => {
                eprintln!("probe failed: {e}");
                errors += 1;
            }
        }
    }
    let end = server.sample();
    let report = ReplayReport {
        scenario: args.server.scenario.clone(),
        target: args.server.target,
        run_id: run_id.to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        history: args.history,
        fill_secs,
        fill_per_sec: rate_of(published, fill_secs),
        fill_errors,
        fill_cpu_secs: filled.cpu_secs - before.cpu_secs,
        back: args.back,
        probes: args.probes,
        head_ms: Percentiles::of(&heads),
        first_event_ms: Percentiles::of(&firsts),
        all_events_ms: Percentiles::of(&alls),
        probe_cpu_secs: end.cpu_secs - filled.cpu_secs,
        server_rss_bytes: end.rss_bytes,
        errors,
    };
    crate::report::emit(&report, &args.server)
}
