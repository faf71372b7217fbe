//! `herald-bench cluster-worker`: one load-generator process of `herald-bench cluster`.
//!
//! One process can hold at most its open-file limit of sockets (20,000 on the benchmark
//! machine), so the 100,000 subscribers of the cluster scenario are split over several of these
//! workers, which the coordinator ([`crate::cluster`]) starts and drives through their standard
//! input and output, one line per command:
//!
//! - at start the worker opens its subscribers (subscriber `i` goes to node `i mod nodes`, from
//!   source address `source_first + i mod sources`, bound before connect so that each source
//!   address has its own ephemeral ports) and prints `ready CONNECTED FAILED SECONDS`;
//! - `count` → `count DELIVERED STREAM_ERRORS`: progress of the current phase;
//! - `report N` → `report JSON` ([`PhaseTally`]): the phase's deliveries, how many subscribers
//!   received each of the N updates exactly once, and the latency histogram; then the phase's
//!   counters start again from zero;
//! - standard input closed (or `--hold-secs` passed) → the worker exits.
//!
//! Every update's data starts with `<send ns>.<seq>.`; the coordinator numbers the updates of
//! phase `p` from `64 p`, so `seq mod 64` is the update's place in its phase and one 64-bit mask
//! per subscriber tells which updates it received (and whether one came twice).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use crate::endpoint::Endpoint;
use crate::http::{Chunked, SseScanner};
use crate::now_ns;
use crate::run::{open_stream, sent_ns};

/// Most updates in one phase: one bit each in a subscriber's mask.
pub(crate) const MAX_PHASE_UPDATES: usize = 64;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct WorkerArgs {
    /// The nodes' addresses; subscriber i goes to node i mod len.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<SocketAddr>,
    /// The Mercure hub path.
    #[arg(long, default_value = "/.well-known/mercure")]
    pub hub_path: String,
    /// The topic every subscriber subscribes to.
    #[arg(long)]
    pub topic: String,
    /// Global index of this worker's first subscriber.
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Subscribers this worker holds.
    #[arg(long)]
    pub count: usize,
    /// This worker's first source address (loopback).
    #[arg(long, default_value = "127.0.0.2")]
    pub source_first: Ipv4Addr,
    /// Source addresses this worker uses, from --source-first on.
    #[arg(long, default_value_t = 4)]
    pub sources: u32,
    /// Most connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Longest the worker lives.
    #[arg(long, default_value_t = 1800.0)]
    pub hold_secs: f64,
}

/// What one worker saw of one phase: the coordinator sums these.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PhaseTally {
    pub deliveries: u64,
    /// Subscribers that received every update of the phase exactly once.
    pub complete: u64,
    /// Subscribers that missed at least one update.
    pub missing: u64,
    /// Deliveries of an update a subscriber had already received in this phase.
    pub duplicates: u64,
    pub stream_errors: u64,
    pub last_delivery_ns: u64,
    pub latency_sum_ns: u128,
    /// The latency histogram, as (nanoseconds, count) pairs.
    pub latency_ns: Vec<(u64, u64)>,
}

/// Counters of the current phase, shared by the subscriber tasks.
struct Phase {
    delivered: AtomicU64,
    duplicates: AtomicU64,
    stream_errors: AtomicU64,
    last_delivery_ns: AtomicU64,
    /// Per subscriber: bit `seq mod 64` set when update `seq` arrived.
    seen: Vec<AtomicU64>,
    latencies: Mutex<(Histogram<u64>, u128)>,
}

pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("valid bounds")
}

impl Phase {
    fn new(subscribers: usize) -> Phase {
        Phase {
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            stream_errors: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            seen: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            latencies: Mutex::new((latency_histogram(), 0)),
        }
    }

    fn record(&self, local: usize, seqs: &[u64], latencies: &[u64], now: u64) {
        for &seq in seqs {
            let bit = 1u64 << (seq % MAX_PHASE_UPDATES as u64);
            if self.seen[local].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.delivered
            .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
        let mut guard = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        for &latency in latencies {
            guard.0.saturating_record(latency.max(1_000));
            guard.1 += u128::from(latency);
        }
    }

    /// The phase's tally for `updates` updates, and a reset for the next phase.
    fn take(&self, updates: usize) -> PhaseTally {
        let all = if updates >= MAX_PHASE_UPDATES {
            u64::MAX
        } else {
            (1u64 << updates) - 1
        };
        let mut tally = PhaseTally {
            deliveries: self.delivered.swap(0, Ordering::Relaxed),
            duplicates: self.duplicates.swap(0, Ordering::Relaxed),
            stream_errors: self.stream_errors.swap(0, Ordering::Relaxed),
            last_delivery_ns: self.last_delivery_ns.swap(0, Ordering::Relaxed),
            ..PhaseTally::default()
        };
        for seen in &self.seen {
            if seen.swap(0, Ordering::Relaxed) & all == all {
                tally.complete += 1;
            } else {
                tally.missing += 1;
            }
        }
        let mut guard = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        tally.latency_ns = guard
            .0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        tally.latency_sum_ns = guard.1;
        guard.0.reset();
        guard.1 = 0;
        tally
    }
}

/// The sequence number of an update: the second dot-separated field of its data.
fn seq_of(data: &[u8]) -> Option<u64> {
    let mut fields = data.split(|&b| b == b'.');
    fields.next()?;
    std::str::from_utf8(fields.next()?).ok()?.parse().ok()
}

/// The open-file limit of this process, from /proc/self/limits.
pub(crate) fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// What the subscriber tasks of one worker share.
struct Worker {
    permits: Arc<Semaphore>,
    connected: AtomicUsize,
    failed: AtomicUsize,
    phase: Phase,
}

/// One subscriber: connect (holding a permit), then record each update until the stream ends.
async fn subscriber(
    worker: Arc<Worker>,
    endpoint: Arc<Endpoint>,
    request: Vec<u8>,
    from: Ipv4Addr,
    local: usize,
) {
    let permit = worker
        .permits
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore open");
    let opened = open_stream(&endpoint, Some(from.into()), &request).await;
    drop(permit);
    let Ok((mut conn, head)) = opened else {
        worker.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    worker.connected.fetch_add(1, Ordering::Relaxed);
    let phase = &worker.phase;
    let mut chunked = head.chunked.then(Chunked::default);
    let mut sse = SseScanner::default();
    let (mut seqs, mut latencies) = (Vec::new(), Vec::new());
    let mut end = conn.filled;
    loop {
        if end > 0 {
            let now = now_ns();
            let mut on_data = |data: &[u8]| {
                if let (Some(sent), Some(seq)) = (sent_ns(data), seq_of(data)) {
                    latencies.push(now.saturating_sub(sent));
                    seqs.push(seq);
                }
            };
            let bytes = &conn.buf[..end];
            match &mut chunked {
                Some(decoder) => {
                    decoder.feed(bytes, &mut |piece| sse.feed(piece, &mut on_data));
                }
                None => sse.feed(bytes, &mut on_data),
            }
            if !seqs.is_empty() {
                phase.record(local, &seqs, &latencies, now);
                seqs.clear();
                latencies.clear();
            }
            if chunked
                .as_ref()
                .is_some_and(|d| d.is_done() || d.is_error())
            {
                break;
            }
        }
        end = match tokio::io::AsyncReadExt::read(&mut conn.stream, &mut conn.buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
    }
    phase.stream_errors.fetch_add(1, Ordering::Relaxed);
}

async fn say(stdout: &mut tokio::io::Stdout, line: &str) -> Result<(), String> {
    stdout
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stdout.flush().await.map_err(|e| e.to_string())
}

pub(crate) async fn main(args: WorkerArgs) -> Result<(), String> {
    if let Some(limit) = open_file_limit()
        && (args.count as u64) + 32 > limit
    {
        return Err(format!(
            "{} subscribers do not fit this process's open-file limit of {limit}: raise `ulimit -n` or use more generators",
            args.count
        ));
    }
    let endpoints = args
        .nodes
        .iter()
        .map(|&addr| {
            Endpoint::new(&crate::cluster::server_args(addr, &args.hub_path, None)).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let requests: Vec<Vec<u8>> = endpoints
        .iter()
        .map(|e| e.subscribe_request(std::slice::from_ref(&args.topic), None))
        .collect();
    let worker = Arc::new(Worker {
        permits: Arc::new(Semaphore::new(args.connect_concurrency.max(1))),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        phase: Phase::new(args.count),
    });
    let (connected, failed, phase) = (&worker.connected, &worker.failed, &worker.phase);
    let started = Instant::now();
    let sources = args.sources.max(1);
    let tasks: Vec<_> = (0..args.count)
        .map(|local| {
            let global = args.first + local;
            let node = global % endpoints.len();
            let from = Ipv4Addr::from(u32::from(args.source_first) + (global as u32 % sources));
            tokio::spawn(subscriber(
                worker.clone(),
                endpoints[node].clone(),
                requests[node].clone(),
                from,
                local,
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs_f64(args.hold_secs);
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < args.count
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stdout = tokio::io::stdout();
    let ready = format!(
        "ready {} {} {:.3}",
        connected.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    say(&mut stdout, &ready).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let commands = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut words = line.split_whitespace();
            let answer = match (words.next(), words.next().and_then(|w| w.parse().ok())) {
                (Some("count"), _) => format!(
                    "count {} {}",
                    phase.delivered.load(Ordering::Relaxed),
                    phase.stream_errors.load(Ordering::Relaxed)
                ),
                (Some("report"), Some(updates)) => {
                    let tally = phase.take(updates);
                    format!(
                        "report {}",
                        serde_json::to_string(&tally).map_err(|e| e.to_string())?
                    )
                }
                _ => format!("error unknown command {line:?}"),
            };
            say(&mut stdout, &answer).await?;
        }
        Ok::<(), String>(())
    };
    let outcome = tokio::time::timeout_at(deadline.into(), commands).await;
    for task in tasks {
        task.abort();
    }
    outcome.unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers() {
        assert_eq!(seq_of(b"1700000000000000000.65.xxxx"), Some(65));
        assert_eq!(seq_of(b"1700000000000000000"), None);
        assert_eq!(seq_of(b"garbage"), None);
    }

    #[test]
    fn a_phase_counts_complete_missing_and_duplicates() {
        let phase = Phase::new(3);
        phase.record(0, &[64, 65], &[2_000, 3_000], 10);
        phase.record(1, &[64], &[2_000], 11);
        phase.record(2, &[65, 64, 65], &[1, 1, 1], 12);
        let tally = phase.take(2);
        assert_eq!(tally.deliveries, 6);
        assert_eq!((tally.complete, tally.missing, tally.duplicates), (2, 1, 1));
        assert_eq!(tally.last_delivery_ns, 12);
        assert_eq!(tally.latency_ns.iter().map(|v| v.1).sum::<u64>(), 6);
        let next = phase.take(2);
        assert_eq!((next.deliveries, next.complete, next.missing), (0, 0, 3));
    }
}
