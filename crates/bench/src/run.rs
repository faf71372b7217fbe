//! `herald-bench run`: subscribers, publishers, and what the server spent on them.
//!
//! Phases: sample the server (baseline) → open the subscribers at a bounded connect rate (some
//! in helper processes with `--processes`), then sample the server, the generator's own CPU and
//! the machine's idle cores (what the connect time is made of) → wait `--idle-secs` and sample
//! again (memory per idle connection) → publish → wait until every expected delivery arrived (or nothing arrived
//! for `--settle-secs`) → sample again (CPU spent on the deliveries) → report.
//!
//! This file holds the command's arguments, the counters every task shares, the data format of
//! an update, and [`main`], which runs the phases and builds the report (the server's CPU and
//! memory come from `procfs.rs`). The rest is one concept a file:
//! - `subscribers.rs`: opening the subscribers and counting their deliveries;
//! - `publishers.rs`: the publishers and their connections;
//! - `processes.rs`: the helper processes of `--processes` (`--connections-only`).

mod processes;
mod publishers;
mod subscribers;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;

pub(crate) use crate::endpoint::Endpoint;
use crate::endpoint::Layout;
use crate::procfs::{MachineTicks, Server, process_cpu_secs};
use crate::report::{ConnectLoad, Percentiles, Report, ServerReport};
use crate::{ServerArgs, Target, now_ns};
use processes::{hold, spawn_helper};
use publishers::{PublishConn, publisher};
pub(crate) use subscribers::{open_stream, source};
use subscribers::{open_subscribers, wait_connected};

/// How publishers talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PublishProtocol {
    /// Keep-alive HTTP/1.1 over plain TCP (hand-written, `http.rs`).
    Http1,
    /// Keep-alive HTTP/2 over TLS (hyper and rustls, `http2.rs`); needs --tls-ca.
    H2,
}

/// What the subscribers subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Topics {
    /// Every subscriber on one topic; every update to it.
    One,
    /// Subscriber i on its own topic i; update j to topic j mod N. With `--templates K`, K more
    /// subscribers each hold one of K distinct URI templates, each matching 1/K of the topics.
    Many,
    /// Every subscriber holds the same URI template, which matches every update's topic.
    Template,
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Subscriber connections in all (split over --processes).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Topic layout.
    #[arg(long, value_enum, default_value = "one")]
    pub topics: Topics,
    /// With `--topics many`: template subscribers added (Herald only).
    #[arg(long, default_value_t = 0)]
    pub templates: usize,
    /// Updates to publish in all (0: none, e.g. to measure idle memory).
    #[arg(long, default_value_t = 100)]
    pub updates: usize,
    /// Updates per second in all; 0 publishes as fast as the publishers can.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Publisher connections (keep-alive).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Bytes of data per update (at least the send time and sequence number).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Most connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// A subscriber whose connection or subscription fails (refused, cut, or answered with
    /// another status than 200) tries again this many times, after 100 ms, 200 ms, ...: what an
    /// EventSource does. Pushpin answers 500/502 when its internal queues are full during a
    /// connection burst. Retries are counted in the report; only the last failure counts as a
    /// failed connect.
    #[arg(long, default_value_t = 0)]
    pub connect_retries: u32,
    /// Loopback source addresses for subscribers (127.0.0.2, 127.0.0.3, ...); 0 lets the
    /// kernel choose.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// Processes holding the subscribers (this one plus helpers in --connections-only mode):
    /// each process can open at most its open-file limit. The helpers connect first, one after
    /// the other, each with as many runtime threads (--threads) as this process.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Only open the subscribers and hold them, idle, until standard input closes (or
    /// --hold-secs): a helper of --processes.
    #[arg(long)]
    pub connections_only: bool,
    /// Longest a --connections-only process holds its connections.
    #[arg(long, default_value_t = 600.0)]
    pub hold_secs: f64,
    /// Index of this process's first subscriber (set for helpers).
    #[arg(long, default_value_t = 0, hide = true)]
    pub index_offset: usize,
    /// Total subscribers across processes, for topic numbering (set for helpers).
    #[arg(long, hide = true)]
    pub total_subscribers: Option<usize>,
    /// Seconds to wait after connecting before the memory sample.
    #[arg(long, default_value_t = 2.0)]
    pub idle_secs: f64,
    /// After publishing: how long to wait without a new delivery before giving up on missing
    /// ones.
    #[arg(long, default_value_t = 5.0)]
    pub settle_secs: f64,
    /// Names the topics of this run (default: from the clock), so runs never see each other.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Cluster runs: publishers send to this node instead of --addr, so that latency is
    /// publish-to-delivery across nodes.
    #[arg(long)]
    pub publish_addr: Option<std::net::SocketAddr>,
    /// Cluster runs: this process's subscribers are spread round-robin over --addr and these
    /// nodes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub also_subscribe_at: Vec<std::net::SocketAddr>,
    /// How the publishers connect: keep-alive HTTP/1.1, or keep-alive HTTP/2 over TLS (one
    /// connection per publisher).
    #[arg(long, value_enum, default_value = "http1")]
    pub publish_protocol: PublishProtocol,
    /// With `--publish-protocol h2`: the PEM certificate to trust (the server's, self-signed);
    /// it must name the IP address of the publish address.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
}

/// Counters shared by every task of the run.
#[derive(Default)]
pub(crate) struct Shared {
    pub connected: AtomicUsize,
    pub connect_failed: AtomicUsize,
    pub connect_retries: AtomicUsize,
    pub stream_errors: AtomicU64,
    pub delivered: AtomicU64,
    pub last_delivery_ns: AtomicU64,
    pub latencies: Mutex<Vec<u64>>,
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    /// The first failed publish's status or error, for the report.
    pub first_publish_error: Mutex<Option<String>>,
    pub publish_latencies: Mutex<Vec<u64>>,
}

/// The send time carried at the start of an update's data: `<ns>.<seq>.<padding>`.
pub(crate) fn sent_ns(data: &[u8]) -> Option<u64> {
    let end = data.iter().position(|&b| b == b'.').unwrap_or(data.len());
    std::str::from_utf8(&data[..end]).ok()?.parse().ok()
}

/// The data of update `seq`, sent now, padded to `payload` bytes.
pub(crate) fn update_data(seq: usize, payload: usize) -> String {
    let mut data = format!("{}.{seq}.", now_ns());
    while data.len() < payload {
        data.push('x');
    }
    data
}

/// A line on stderr every second while the run goes on.
pub(crate) fn progress(
    shared: Arc<Shared>,
    subscribers: usize,
    updates: usize,
    label: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let line = format!(
                "[{label} {:>5.1}s] subscribers {}/{} (failed {}), published {}/{} (errors {}), delivered {}, stream errors {}",
                started.elapsed().as_secs_f64(),
                shared.connected.load(Ordering::Relaxed),
                subscribers,
                shared.connect_failed.load(Ordering::Relaxed),
                shared.published.load(Ordering::Relaxed),
                updates,
                shared.publish_errors.load(Ordering::Relaxed),
                shared.delivered.load(Ordering::Relaxed),
                shared.stream_errors.load(Ordering::Relaxed),
            );
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        }
    })
}
fn layout(args: &RunArgs) -> Layout {
    Layout {
        target: args.server.target,
        mode: args.topics,
        total: args.total_subscribers.unwrap_or(args.subscribers),
        templates: args.templates,
        run_id: args
            .run_id
            .clone()
            .unwrap_or_else(|| format!("{:x}", now_ns() / 1000 % 0xffff_ffff)),
    }
}

pub(crate) async fn main(mut args: RunArgs) -> Result<(), String> {
    if args.connections_only {
        return hold(args).await;
    }
    if args.server.target != Target::Herald
        && (args.templates > 0 || args.topics == Topics::Template)
    {
        return Err(format!(
            "{} has no URI templates: use --topics one|many without --templates",
            args.server.target.name()
        ));
    }
    if args.server.target == Target::Pushpin && args.updates > 0 && args.publish_addr.is_none() {
        return Err("Pushpin publishes on another port: give --publish-addr (its HTTP publish endpoint, push_in_http_port)".into());
    }
    let tls = match (args.publish_protocol, &args.tls_ca) {
        (PublishProtocol::Http1, _) => None,
        (PublishProtocol::H2, Some(ca)) => Some(crate::http2::client_config(ca)?),
        (PublishProtocol::H2, None) => {
            return Err("--publish-protocol h2 needs --tls-ca (the server's certificate)".into());
        }
    };
    let endpoint = Arc::new(Endpoint::new(&args.server)?);
    let layout = Arc::new(layout(&args));
    args.run_id = Some(layout.run_id.clone());
    let server = Server::find(&args.server.server_pid, args.server.addr)?;
    let shared = Arc::new(Shared::default());
    let total_subs = args.subscribers + args.templates;
    let progress = progress(
        shared.clone(),
        total_subs,
        args.updates,
        args.server.scenario.clone(),
    );
    let baseline = server.sample();
    let machine_before = MachineTicks::now();
    let generator_before = process_cpu_secs(std::process::id());

    // Connect: helpers first (each holds its share), then this process's share.
    let processes = args.processes.max(1);
    let share = args.subscribers / processes;
    let connect_start = Instant::now();
    let mut helpers = Vec::new();
    for h in 0..processes - 1 {
        let helper = spawn_helper(&args, &layout.run_id, h * share, share).await?;
        shared
            .connected
            .fetch_add(helper.connected, Ordering::Relaxed);
        shared
            .connect_failed
            .fetch_add(helper.failed, Ordering::Relaxed);
        shared
            .connect_retries
            .fetch_add(helper.retries, Ordering::Relaxed);
        helpers.push(helper);
    }
    let local_offset = share * (processes - 1);
    let local = args.subscribers - local_offset;
    let tasks = open_subscribers(
        &args,
        &endpoint,
        &layout,
        &shared,
        local_offset,
        local,
        args.templates,
    );
    wait_connected(&shared, total_subs).await;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let after_connect = server.sample();
    let machine = MachineTicks::now().since(&machine_before);
    // Each helper started after the baseline and idles once connected: its whole CPU time.
    let generator_cpu_secs = process_cpu_secs(std::process::id()) - generator_before
        + helpers
            .iter()
            .filter_map(|helper| helper.child.id())
            .map(process_cpu_secs)
            .sum::<f64>();
    tokio::time::sleep(Duration::from_secs_f64(args.idle_secs)).await;
    let idle = server.sample();
    let connected = shared.connected.load(Ordering::Relaxed);

    // Publish.
    let publish_start_ns = now_ns();
    let publish_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let publish_endpoint = args
        .publish_addr
        .map_or_else(|| endpoint.clone(), |addr| Arc::new(endpoint.at(addr)));
    let publishers: Vec<_> = (0..args.publishers.max(1))
        .map(|_| {
            let conn = match &tls {
                None => PublishConn::Http1(None),
                Some(config) => PublishConn::H2(None, config.clone()),
            };
            tokio::spawn(publisher(
                publish_endpoint.clone(),
                layout.clone(),
                shared.clone(),
                next.clone(),
                args.updates,
                args.rate,
                publish_start,
                args.payload,
                conn,
            ))
        })
        .collect();
    if args.updates > 0 {
        for publisher in publishers {
            let _ = publisher.await;
        }
    }
    let publish_secs = publish_start.elapsed().as_secs_f64();
    let expected = layout.expected(args.updates, local);
    let settle = Duration::from_secs_f64(args.settle_secs);
    let mut seen = shared.delivered.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while args.updates > 0 && seen < expected && last_progress.elapsed() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            last_progress = Instant::now();
        }
    }
    let end = server.sample();
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    for task in &tasks {
        task.abort();
    }
    for mut helper in helpers {
        drop(helper.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), helper.child.wait())
            .await
            .is_err()
        {
            let _ = helper.child.start_kill();
        }
    }

    let deliveries = shared.delivered.load(Ordering::Relaxed);
    let last_delivery = shared.last_delivery_ns.load(Ordering::Relaxed);
    let delivery_secs = if deliveries > 0 {
        last_delivery.saturating_sub(publish_start_ns) as f64 / 1e9
    } else {
        0.0
    };
    let latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    let publish_latencies = std::mem::take(&mut *shared.publish_latencies.lock().unwrap());
    let published = shared.published.load(Ordering::Relaxed);
    let cpu_secs = end.cpu_secs - idle.cpu_secs;
    let per_connection = |after: u64, before: u64| {
        (connected > 0).then(|| (after as f64 - before as f64) / connected as f64)
    };
    let report = Report {
        scenario: args.server.scenario.clone(),
        target: args.server.target,
        run_id: layout.run_id.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        subscribers: total_subs,
        connected,
        connect_failures: shared.connect_failed.load(Ordering::Relaxed),
        connect_retries: shared.connect_retries.load(Ordering::Relaxed),
        connect_secs,
        connect_load: ConnectLoad {
            generator_cpu_secs,
            idle_cores: machine.map(|m| m.idle_cores),
            steal_cores: machine.map(|m| m.steal_cores),
        },
        updates: args.updates,
        rate: args.rate,
        publishers: args.publishers,
        published,
        publish_errors: shared.publish_errors.load(Ordering::Relaxed),
        first_publish_error: shared.first_publish_error.lock().unwrap().take(),
        publish_secs,
        publishes_per_sec: rate_of(published, publish_secs),
        publish_latency_ms: Percentiles::of(&publish_latencies),
        expected_deliveries: expected,
        deliveries,
        delivery_secs,
        deliveries_per_sec: rate_of(deliveries, delivery_secs),
        latency_ms: Percentiles::of(&latencies),
        latency_cdf: crate::report::cdf(&latencies),
        stream_errors: shared.stream_errors.load(Ordering::Relaxed),
        errors: shared.connect_failed.load(Ordering::Relaxed) as u64
            + shared.publish_errors.load(Ordering::Relaxed)
            + shared.stream_errors.load(Ordering::Relaxed)
            + expected.saturating_sub(deliveries),
        server: ServerReport {
            pids: server.pids.clone(),
            baseline,
            after_connect,
            idle,
            end,
            connect_cpu_secs: after_connect.cpu_secs - baseline.cpu_secs,
            cpu_secs,
            deliveries_per_cpu_sec: (cpu_secs > 0.0 && deliveries > 0)
                .then(|| deliveries as f64 / cpu_secs),
            publishes_per_cpu_sec: (cpu_secs > 0.0 && published > 0)
                .then(|| published as f64 / cpu_secs),
            rss_per_connection: per_connection(idle.rss_bytes, baseline.rss_bytes),
            pss_per_connection: per_connection(idle.pss_bytes, baseline.pss_bytes),
        },
    };
    report.emit(&args.server)
}

pub(crate) fn rate_of(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
