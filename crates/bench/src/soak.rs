//! `herald-bench soak`: a long steady load, sampled every second, to show that the hub's memory,
//! open files and CPU stay flat and that no delivery is lost.
//!
//! The load: `--subscribers` SSE subscribers (one process: keep it under its open-file limit)
//! spread over `--topics` topics in two families (`rooms/N`, `news/N`) and two URI templates
//! (`rooms/{id}`: every room; `{kind}/{id}`: everything), and one publisher at `--rate` updates
//! per second, each to the next topic in turn, of a few hundred bytes, each with its own id.
//! Subscriptions end by themselves (`--write-timeout`): a subscriber reconnects at once with the
//! `Last-Event-ID` of the last update it received, as an EventSource would, so a subscription's
//! end must not lose an update either.
//!
//! Every second a row goes to the CSV (see [`crate::soak_report::Row`]): the hub's RSS, open
//! files and CPU (from /proc), and the generator's counters. At the end, after the deliveries
//! settle, every subscriber's count is checked against the updates meant for it (the
//! acknowledged publishes to its topics), the RSS slope after warm-up is fitted, and
//! [`crate::soak_report`] writes the summary, the verdict and the SVG plot.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::endpoint::Endpoint;
use crate::http::{self, Chunked, Conn, SseScanner};
use crate::procfs::Server;
use crate::run::{open_stream, source};
use crate::soak_report::{self, Row, Totals};
use crate::{ServerArgs, now_ns};

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SoakArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Subscriber connections in all (templates included).
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Topics, half `rooms/N` and half `news/N`; the single-topic subscribers are spread evenly.
    #[arg(long, default_value_t = 32)]
    pub topics: usize,
    /// Subscribers of the template `rooms/{id}` (every room topic).
    #[arg(long, default_value_t = 500)]
    pub room_watchers: usize,
    /// Subscribers of the template `{kind}/{id}` (every topic).
    #[arg(long, default_value_t = 200)]
    pub all_watchers: usize,
    /// Length of the publishing phase, in minutes.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Updates per second (one publisher, keep-alive).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Smallest update payload, in bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_min: usize,
    /// Largest update payload, in bytes.
    #[arg(long, default_value_t = 600)]
    pub payload_max: usize,
    /// Share of the publishing phase treated as warm-up (not in the RSS slope).
    #[arg(long, default_value_t = 0.2)]
    pub warmup: f64,
    /// Verdict: RSS is flat when its fitted growth over the window after warm-up is at most this
    /// percentage of the window's mean RSS.
    #[arg(long, default_value_t = 5.0)]
    pub max_growth_pct: f64,
    /// After the last publish: the longest wait for the missing deliveries.
    #[arg(long, default_value_t = 60.0)]
    pub settle_secs: f64,
    /// Most connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Loopback source addresses for subscribers (127.0.0.2, ...); 0 lets the kernel choose.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// The per-second CSV.
    #[arg(long)]
    pub csv: PathBuf,
    /// The summary and verdict, as JSON.
    #[arg(long)]
    pub summary: PathBuf,
    /// The plot of RSS, open files, CPU and deliveries over time (SVG).
    #[arg(long)]
    pub svg: PathBuf,
}

/// What subscriber `i` listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interest {
    /// One topic, by number.
    Topic(usize),
    /// `rooms/{id}`: the even-numbered topics.
    Rooms,
    /// `{kind}/{id}`: every topic.
    All,
}

/// Topic names of one soak run: topic `t` is `rooms/t` when `t` is even, `news/t` when odd.
struct Plan {
    prefix: String,
    topics: usize,
    subscribers: usize,
    room_watchers: usize,
    all_watchers: usize,
}

impl Plan {
    fn topic(&self, t: usize) -> String {
        let kind = if t.is_multiple_of(2) { "rooms" } else { "news" };
        format!("{}/{kind}/{t}", self.prefix)
    }

    fn interest(&self, i: usize) -> Interest {
        let singles = self.subscribers - self.room_watchers - self.all_watchers;
        if i < singles {
            Interest::Topic(i % self.topics)
        } else if i < singles + self.room_watchers {
            Interest::Rooms
        } else {
            Interest::All
        }
    }

    fn selector(&self, interest: Interest) -> String {
        match interest {
            Interest::Topic(t) => self.topic(t),
            Interest::Rooms => format!("{}/rooms/{{id}}", self.prefix),
            Interest::All => format!("{}/{{kind}}/{{id}}", self.prefix),
        }
    }

    /// Updates meant for `interest`, given the acknowledged publishes per topic.
    fn expected(&self, interest: Interest, acked: &[u64]) -> u64 {
        match interest {
            Interest::Topic(t) => acked[t],
            Interest::Rooms => acked.iter().step_by(2).sum(),
            Interest::All => acked.iter().sum(),
        }
    }
}

/// The id of update `seq`: subscribers rebuild it from the sequence number in the data to resume.
fn update_id(run_id: &str, seq: u64) -> String {
    format!("urn:soak:{run_id}:{seq}")
}

/// `<sent ns>.<seq>.<padding>` → (sent ns, seq).
fn parse_data(data: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// One subscriber's counters, read by the sampler and by the final check.
#[derive(Default)]
struct Counts {
    received: AtomicU64,
    /// Updates received again, or out of order (a sequence number not above the last one).
    repeated: AtomicU64,
}

/// Counters shared by every task of the run.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    open_streams: AtomicUsize,
    ever_connected: AtomicUsize,
    connect_failures: AtomicU64,
    stream_ends: AtomicU64,
    reconnects: AtomicU64,
    delivered: AtomicU64,
    /// Largest delivery latency since the sampler last read it.
    max_latency_ns: AtomicU64,
    published: AtomicU64,
    publish_errors: AtomicU64,
}

/// One subscriber: connects, counts deliveries, and on every end of its stream reconnects with
/// `Last-Event-ID`, until the run stops. Bounded: it gives up after 100 failed attempts in a row.
async fn subscriber(
    endpoint: Arc<Endpoint>,
    selector: String,
    run_id: Arc<str>,
    from: Option<IpAddr>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    counts: Arc<Counts>,
) {
    let mut last_seq: Option<u64> = None;
    let mut connected_before = false;
    let mut failures_in_a_row = 0u32;
    while !shared.stop.load(Ordering::Relaxed) && failures_in_a_row < 100 {
        // After a first connection, resume: from the last update received, or from the
        // beginning of history if none was (the publishing may have started meanwhile).
        let resume = match last_seq {
            Some(seq) => Some(update_id(&run_id, seq)),
            None if connected_before => Some("earliest".to_owned()),
            None => None,
        };
        let request =
            endpoint.subscribe_request(std::slice::from_ref(&selector), resume.as_deref());
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let opened = open_stream(&endpoint, from, &request);
        let opened = tokio::time::timeout(Duration::from_secs(30), opened).await;
        drop(permit);
        let Ok(Ok((mut conn, head))) = opened else {
            shared.connect_failures.fetch_add(1, Ordering::Relaxed);
            failures_in_a_row += 1;
            let backoff = 100 * u64::from(failures_in_a_row.min(30));
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            continue;
        };
        failures_in_a_row = 0;
        if connected_before {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.ever_connected.fetch_add(1, Ordering::Relaxed);
        }
        connected_before = true;
        shared.open_streams.fetch_add(1, Ordering::Relaxed);
        read_stream(&mut conn, head.chunked, &shared, &counts, &mut last_seq).await;
        shared.open_streams.fetch_sub(1, Ordering::Relaxed);
        shared.stream_ends.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the updates of one stream until it ends (or errs).
async fn read_stream(
    conn: &mut Conn,
    chunked: bool,
    shared: &Shared,
    counts: &Counts,
    last_seq: &mut Option<u64>,
) {
    let mut chunked = chunked.then(Chunked::default);
    let mut sse = SseScanner::default();
    let mut end = conn.filled;
    loop {
        if end > 0 {
            let now = now_ns();
            let (mut fresh, mut repeated, mut max_latency) = (0u64, 0u64, 0u64);
            let mut on_data = |data: &[u8]| {
                let Some((sent, seq)) = parse_data(data) else {
                    return;
                };
                if last_seq.is_some_and(|last| seq <= last) {
                    repeated += 1;
                } else {
                    *last_seq = Some(seq);
                    fresh += 1;
                    max_latency = max_latency.max(now.saturating_sub(sent));
                }
            };
            let bytes = &conn.buf[..end];
            match &mut chunked {
                Some(decoder) => {
                    decoder.feed(bytes, &mut |piece| sse.feed(piece, &mut on_data));
                }
                None => sse.feed(bytes, &mut on_data),
            }
            if fresh > 0 {
                counts.received.fetch_add(fresh, Ordering::Relaxed);
                shared.delivered.fetch_add(fresh, Ordering::Relaxed);
                shared
                    .max_latency_ns
                    .fetch_max(max_latency, Ordering::Relaxed);
            }
            if repeated > 0 {
                counts.repeated.fetch_add(repeated, Ordering::Relaxed);
            }
            if chunked
                .as_ref()
                .is_some_and(|d| d.is_done() || d.is_error())
            {
                return;
            }
        }
        end = match tokio::io::AsyncReadExt::read(&mut conn.stream, &mut conn.buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
    }
}

/// The publisher: update `seq` at `start + seq / rate`, to topic `seq mod topics`, until
/// `duration`. Counts the acknowledged publishes per topic.
async fn publisher(
    endpoint: Arc<Endpoint>,
    plan: Arc<Plan>,
    args: SoakArgs,
    run_id: Arc<str>,
    shared: Arc<Shared>,
    start: Instant,
) -> Vec<u64> {
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let spread = args.payload_max.saturating_sub(args.payload_min) + 1;
    let mut acked = vec![0u64; plan.topics];
    let mut conn: Option<Conn> = None;
    for seq in 0u64.. {
        let due = start + Duration::from_secs_f64(seq as f64 / args.rate);
        if due.duration_since(start) >= duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let topic = (seq % plan.topics as u64) as usize;
        let payload = args.payload_min + (seq as usize).wrapping_mul(7919) % spread;
        let data = crate::run::update_data(seq as usize, payload);
        let id = update_id(&run_id, seq);
        let request = endpoint.publish_request(&plan.topic(topic), &data, Some(&id));
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            http::exchange(&mut conn, endpoint.addr, &request),
        )
        .await;
        match outcome {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                acked[topic] += 1;
                shared.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(_)) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) | Err(_) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
    acked
}

/// Samples the hub and the counters once a second, appending each row to the CSV.
async fn sampler(
    server: Server,
    shared: Arc<Shared>,
    started: Instant,
    mut csv: std::io::BufWriter<std::fs::File>,
) -> Result<Vec<Row>, String> {
    use std::io::Write as _;
    let mut rows = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(f64, f64, u64)> = None;
    writeln!(csv, "{}", Row::CSV_HEADER).map_err(|e| e.to_string())?;
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        let sample = server.sample();
        let delivered = shared.delivered.load(Ordering::Relaxed);
        let (cpu_pct, deliveries_per_sec) = match last {
            Some((t0, cpu0, delivered0)) if t > t0 => (
                100.0 * (sample.cpu_secs - cpu0) / (t - t0),
                (delivered - delivered0) as f64 / (t - t0),
            ),
            _ => (0.0, 0.0),
        };
        last = Some((t, sample.cpu_secs, delivered));
        let row = Row {
            t_secs: t,
            rss_kib: sample.rss_bytes / 1024,
            pss_kib: sample.pss_bytes / 1024,
            open_files: server.open_files(),
            threads: server.threads(),
            cpu_secs: sample.cpu_secs,
            cpu_pct,
            open_streams: shared.open_streams.load(Ordering::Relaxed) as u64,
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            connect_failures: shared.connect_failures.load(Ordering::Relaxed),
            published: shared.published.load(Ordering::Relaxed),
            publish_errors: shared.publish_errors.load(Ordering::Relaxed),
            delivered,
            deliveries_per_sec,
            max_latency_ms: shared.max_latency_ns.swap(0, Ordering::Relaxed) as f64 / 1e6,
            generator_rss_kib: crate::procfs::own_rss_bytes() / 1024,
        };
        writeln!(csv, "{}", row.csv()).map_err(|e| e.to_string())?;
        csv.flush().map_err(|e| e.to_string())?;
        if rows.len() % 10 == 0 {
            eprintln!("{}", row.progress());
        }
        rows.push(row);
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(rows);
        }
    }
}

pub(crate) async fn main(args: SoakArgs) -> Result<(), String> {
    let room_and_all = args.room_watchers + args.all_watchers;
    if args.topics < 2 || args.subscribers < room_and_all + args.topics {
        return Err("--subscribers must cover --room-watchers + --all-watchers + --topics (at least 2 topics)".into());
    }
    if !(args.rate > 0.0 && args.minutes > 0.0 && args.payload_min <= args.payload_max) {
        return Err(
            "--rate and --minutes must be positive, --payload-min at most --payload-max".into(),
        );
    }
    if args.payload_min < 40 {
        return Err(
            "--payload-min must be at least 40 (the data carries a time and a number)".into(),
        );
    }
    let endpoint = Arc::new(Endpoint::new(&args.server)?);
    let server = Server::find(&args.server.server_pid, args.server.addr)?;
    let run_id: Arc<str> = format!("{:x}", now_ns() / 1000 % 0xffff_ffff).into();
    let plan = Arc::new(Plan {
        prefix: format!("https://example.com/soak/{run_id}"),
        topics: args.topics,
        subscribers: args.subscribers,
        room_watchers: args.room_watchers,
        all_watchers: args.all_watchers,
    });
    let shared = Arc::new(Shared::default());
    let csv = std::fs::File::create(&args.csv)
        .map_err(|e| format!("cannot write {}: {e}", args.csv.display()))?;
    let started = Instant::now();
    let sampling = tokio::spawn(sampler(
        server.clone(),
        shared.clone(),
        started,
        std::io::BufWriter::new(csv),
    ));

    // Connect everyone before publishing: the publishing phase is the steady state.
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let counts: Vec<Arc<Counts>> = (0..args.subscribers).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = (0..args.subscribers)
        .map(|i| {
            tokio::spawn(subscriber(
                endpoint.clone(),
                plan.selector(plan.interest(i)),
                run_id.clone(),
                source(i, args.sources),
                permits.clone(),
                shared.clone(),
                counts[i].clone(),
            ))
        })
        .collect();
    let connect_deadline = Instant::now() + Duration::from_secs(300);
    while shared.ever_connected.load(Ordering::Relaxed) < args.subscribers {
        if Instant::now() > connect_deadline {
            shared.stop.store(true, Ordering::Relaxed);
            return Err(format!(
                "only {} of {} subscribers connected in 300 s",
                shared.ever_connected.load(Ordering::Relaxed),
                args.subscribers
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish_start_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {} subscribers connected in {publish_start_secs:.1} s; publishing {} updates/s for {} min",
        args.subscribers, args.rate, args.minutes
    );

    let acked = tokio::spawn(publisher(
        endpoint.clone(),
        plan.clone(),
        args.clone(),
        run_id.clone(),
        shared.clone(),
        Instant::now(),
    ))
    .await
    .map_err(|e| format!("the publisher failed: {e}"))?;
    let publish_end_secs = started.elapsed().as_secs_f64();

    // Settle: wait until every subscriber has what was meant for it, or --settle-secs.
    let expected: Vec<u64> = (0..args.subscribers)
        .map(|i| plan.expected(plan.interest(i), &acked))
        .collect();
    let settle_deadline = Instant::now() + Duration::from_secs_f64(args.settle_secs);
    let missing = || -> u64 {
        counts
            .iter()
            .zip(&expected)
            .map(|(c, &e)| e.saturating_sub(c.received.load(Ordering::Relaxed)))
            .sum()
    };
    while missing() > 0 && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settle_secs = started.elapsed().as_secs_f64() - publish_end_secs;
    shared.stop.store(true, Ordering::Relaxed);
    let rows = sampling
        .await
        .map_err(|e| format!("the sampler failed: {e}"))??;
    for task in &tasks {
        task.abort();
    }

    let mut totals = Totals {
        subscribers: args.subscribers,
        topics: args.topics,
        room_watchers: args.room_watchers,
        all_watchers: args.all_watchers,
        rate: args.rate,
        minutes: args.minutes,
        payload_min: args.payload_min,
        payload_max: args.payload_max,
        publish_start_secs,
        publish_end_secs,
        settle_secs,
        published: shared.published.load(Ordering::Relaxed),
        publish_errors: shared.publish_errors.load(Ordering::Relaxed),
        connect_failures: shared.connect_failures.load(Ordering::Relaxed),
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        stream_ends: shared.stream_ends.load(Ordering::Relaxed),
        ..Totals::default()
    };
    for (c, &e) in counts.iter().zip(&expected) {
        let received = c.received.load(Ordering::Relaxed);
        totals.expected_deliveries += e;
        totals.deliveries += received;
        totals.lost += e.saturating_sub(received);
        totals.unexpected += received.saturating_sub(e);
        totals.repeated += c.repeated.load(Ordering::Relaxed);
        totals.subscribers_short += u64::from(received < e);
    }
    soak_report::finish(&args, &server.pids, totals, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            prefix: "https://example.com/soak/x".into(),
            topics: 4,
            subscribers: 10,
            room_watchers: 2,
            all_watchers: 1,
        }
    }

    #[test]
    fn interests_and_expectations() {
        let plan = plan();
        let interests: Vec<Interest> = (0..10).map(|i| plan.interest(i)).collect();
        assert_eq!(interests[0], Interest::Topic(0));
        assert_eq!(interests[6], Interest::Topic(2));
        assert_eq!(interests[7], Interest::Rooms);
        assert_eq!(interests[9], Interest::All);
        let acked = [5, 6, 7, 8];
        assert_eq!(plan.expected(Interest::Topic(1), &acked), 6);
        assert_eq!(plan.expected(Interest::Rooms, &acked), 5 + 7);
        assert_eq!(plan.expected(Interest::All, &acked), 26);
        assert_eq!(plan.topic(2), "https://example.com/soak/x/rooms/2");
        assert_eq!(plan.topic(3), "https://example.com/soak/x/news/3");
    }

    #[test]
    fn data_carries_time_and_sequence() {
        let data = crate::run::update_data(42, 200);
        assert_eq!(data.len(), 200);
        let (sent, seq) = parse_data(data.as_bytes()).unwrap();
        assert_eq!(seq, 42);
        assert!(sent > 0);
        assert_eq!(parse_data(b"garbage"), None);
    }
}
