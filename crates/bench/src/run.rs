//! `herald-bench run`: subscribers, publishers, and what the server spent on them.
//!
//! Phases: sample the server (baseline) → open the subscribers at a bounded connect rate (some
//! in helper processes with `--processes`) → wait `--idle-secs` and sample again (memory per
//! idle connection) → publish → wait until every expected delivery arrived (or nothing arrived
//! for `--settle-secs`) → sample again (CPU spent on the deliveries) → report.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

pub(crate) use crate::endpoint::Endpoint;
use crate::endpoint::Layout;
use crate::http::{self, Chunked, Conn, SseScanner};
use crate::procfs::Server;
use crate::report::{Percentiles, Report, ServerReport};
use crate::{ServerArgs, Target, now_ns};

/// How publishers talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PublishProtocol {
    /// Keep-alive HTTP/1.1 over plain TCP (hand-written, `http.rs`).
    Http1,
    /// Keep-alive HTTP/2 over TLS (hyper and rustls, `http2.rs`); needs --tls-ca.
    H2,
}

/// A publisher's connection, opened on first use and reopened after an error.
enum PublishConn {
    Http1(Option<Conn>),
    H2(Option<crate::http2::H2Conn>, Arc<rustls::ClientConfig>),
}

impl PublishConn {
    async fn publish(
        &mut self,
        endpoint: &Endpoint,
        topic: &str,
        data: &str,
    ) -> std::io::Result<u16> {
        match self {
            PublishConn::Http1(conn) => {
                let request = endpoint.publish_request(topic, data, None);
                http::exchange(conn, endpoint.addr, &request).await
            }
            PublishConn::H2(conn, config) => {
                if conn.is_none() {
                    *conn =
                        Some(crate::http2::H2Conn::connect(endpoint.addr, config.clone()).await?);
                }
                let c = conn.as_mut().expect("connected");
                c.exchange(endpoint.publish(topic, data, None)).await
            }
        }
    }

    fn reset(&mut self) {
        match self {
            PublishConn::Http1(conn) => *conn = None,
            PublishConn::H2(conn, _) => *conn = None,
        }
    }
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
    /// each process can open at most its open-file limit.
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

/// The `i`-th source address: 127.0.0.2, 127.0.0.3, ...
pub(crate) fn source(i: usize, sources: usize) -> Option<IpAddr> {
    (sources > 0).then(|| {
        let n = 2 + (i % sources) as u32;
        IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n))
    })
}

/// Connects, sends a subscription `request` and reads the response head, which must be 200.
pub(crate) async fn open_stream(
    endpoint: &Endpoint,
    from: Option<IpAddr>,
    request: &[u8],
) -> std::io::Result<(Conn, http::Head)> {
    let stream = http::connect(endpoint.addr, from).await?;
    let mut conn = Conn::new(stream, 4096);
    let head = conn.request_head(request).await?;
    if head.status != 200 {
        return Err(std::io::Error::other(format!("status {}", head.status)));
    }
    Ok((conn, head))
}

/// One subscriber: connect (holding a connect permit, retrying up to `retries` times), check
/// the response, then count the deliveries and their latencies until the task is aborted.
pub(crate) async fn subscriber(
    endpoint: Arc<Endpoint>,
    request: Vec<u8>,
    from: Option<IpAddr>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    retries: u32,
) {
    let mut attempt = 0;
    let (mut conn, head) = loop {
        let permit = permits.acquire().await.expect("semaphore open");
        let opened = open_stream(&endpoint, from, &request).await;
        drop(permit);
        match opened {
            Ok(opened) => break opened,
            Err(_) if attempt < retries => {
                attempt += 1;
                shared.connect_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(_) => {
                shared.connect_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut chunked = head.chunked.then(Chunked::default);
    let mut sse = SseScanner::default();
    let mut latencies = Vec::new();
    let mut start = 0;
    let mut end = conn.filled;
    loop {
        if end > start {
            let now = now_ns();
            let mut on_data = |data: &[u8]| {
                if let Some(sent) = sent_ns(data) {
                    latencies.push(now.saturating_sub(sent));
                }
            };
            let bytes = &conn.buf[start..end];
            match &mut chunked {
                Some(decoder) => {
                    decoder.feed(bytes, &mut |piece| sse.feed(piece, &mut on_data));
                }
                None => sse.feed(bytes, &mut on_data),
            }
            if !latencies.is_empty() {
                shared
                    .delivered
                    .fetch_add(latencies.len() as u64, Ordering::Relaxed);
                shared.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
                shared.latencies.lock().unwrap().append(&mut latencies);
            }
            if chunked
                .as_ref()
                .is_some_and(|d| d.is_done() || d.is_error())
            {
                shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        start = 0;
        end = match tokio::io::AsyncReadExt::read(&mut conn.stream, &mut conn.buf).await {
            Ok(0) | Err(_) => {
                shared.stream_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(n) => n,
        };
    }
}

/// One publisher: takes update numbers from `next` until `total`, paced by `rate`.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    endpoint: Arc<Endpoint>,
    layout: Arc<Layout>,
    shared: Arc<Shared>,
    next: Arc<AtomicUsize>,
    total: usize,
    rate: f64,
    start: Instant,
    payload: usize,
    mut conn: PublishConn,
) {
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= total {
            return;
        }
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(seq as f64 / rate)).into())
                .await;
        }
        let data = update_data(seq, payload);
        let sent = sent_ns(data.as_bytes()).unwrap_or_default();
        let outcome = conn.publish(&endpoint, &layout.topic(seq), &data).await;
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                shared.published.fetch_add(1, Ordering::Relaxed);
                let latency = now_ns().saturating_sub(sent);
                shared.publish_latencies.lock().unwrap().push(latency);
            }
            Ok(status) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                let mut first = shared.first_publish_error.lock().unwrap();
                first.get_or_insert_with(|| format!("status {status}"));
            }
            Err(e) => {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                let mut first = shared.first_publish_error.lock().unwrap();
                first.get_or_insert_with(|| e.to_string());
                drop(first);
                conn.reset();
            }
        }
    }
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

/// A helper process holding subscribers.
struct Helper {
    child: tokio::process::Child,
    connected: usize,
    failed: usize,
    retries: usize,
}

async fn spawn_helper(
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
        .args(["--hold-secs", &args.hold_secs.to_string(), "--threads", "1"])
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

/// Starts `count` subscribers numbered from `offset`, plus `templates` template subscribers.
fn open_subscribers(
    args: &RunArgs,
    endpoint: &Arc<Endpoint>,
    layout: &Layout,
    shared: &Arc<Shared>,
    offset: usize,
    count: usize,
    templates: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let permits = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let endpoints: Vec<Arc<Endpoint>> = std::iter::once(endpoint.clone())
        .chain(
            args.also_subscribe_at
                .iter()
                .map(|addr| Arc::new(endpoint.at(*addr))),
        )
        .collect();
    let selectors = (offset..offset + count)
        .map(|i| layout.subscriber(i))
        .chain((0..templates).map(|k| layout.template_subscriber(k)));
    selectors
        .enumerate()
        .map(|(n, selectors)| {
            let endpoint = &endpoints[(offset + n) % endpoints.len()];
            let request = endpoint.subscribe_request(&selectors, None);
            tokio::spawn(subscriber(
                endpoint.clone(),
                request,
                source(offset + n, args.sources),
                permits.clone(),
                shared.clone(),
                args.connect_retries,
            ))
        })
        .collect()
}

async fn wait_connected(shared: &Shared, count: usize) {
    while shared.connected.load(Ordering::Relaxed) + shared.connect_failed.load(Ordering::Relaxed)
        < count
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `--connections-only`: hold the subscribers until stdin closes or --hold-secs pass.
async fn hold(args: RunArgs) -> Result<(), String> {
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
