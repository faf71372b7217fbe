//! `herald-bench cluster`: many subscribers on a cluster of nodes sharing one Redis, more than
//! one process can hold, fed a paced load and a burst.
//!
//! One process may hold at most its open-file limit of sockets (20,000 on the benchmark
//! machine), on the server side and on the generator side alike. This coordinator therefore
//! starts `--generators` worker processes ([`crate::cluster_worker`]), each holding its share of
//! the subscribers (subscriber `i` on node `i mod nodes`, every one on the same topic), from its
//! own loopback source addresses, and drives them over their standard input and output. It then
//! publishes, round-robin over the nodes (each update reaches the other nodes through Redis):
//!
//! 1. `paced`: `--paced-updates` at `--paced-rate` per second, one after the other;
//! 2. `burst`: `--burst-updates` at once, each on its own pre-opened connection.
//!
//! After each phase it waits until every subscriber has every update (or nothing arrived for
//! `--settle-secs`), and reports per phase: deliveries, subscribers that received every update
//! exactly once, publish-to-delivery latency percentiles (one clock: every process runs on this
//! machine) and the CPU seconds the nodes and Redis spent from the first publish to the last
//! delivery; and for the whole run: connect time of all subscribers, RSS of each node and of
//! Redis with the subscribers idle. `bench/cluster-100k.sh` starts Redis and the nodes and runs
//! this.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::cluster_report::{
    ClusterReport, PhaseReport, ProcessFigures, emit, figures, kernel_tcp_memory, listen_overflows,
    memory_available, percentiles,
};
use crate::cluster_worker::{MAX_PHASE_UPDATES, PhaseTally};
use crate::endpoint::{Endpoint, Layout};
use crate::http::{self, Conn};
use crate::procfs::{Sample, Server};
use crate::report::Percentiles;
use crate::run::{Topics, sent_ns, update_data};
use crate::{ServerArgs, Target, now_ns};

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ClusterArgs {
    /// The nodes' addresses (comma-separated); subscriber i goes to node i mod len.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<SocketAddr>,
    /// The nodes' PIDs, in the order of --nodes (default: whoever listens on each address).
    #[arg(long, value_delimiter = ',')]
    pub node_pids: Vec<u32>,
    /// Redis's PID, to count its CPU and memory with the nodes'.
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// HS256 key: publishers send a token minted with it.
    #[arg(long, env = "HERALD_JWT_KEY")]
    pub jwt_key: String,
    /// The Mercure hub path.
    #[arg(long, default_value = "/.well-known/mercure")]
    pub hub_path: String,
    /// Subscribers in all, all on one topic.
    #[arg(long, default_value_t = 100_000)]
    pub subscribers: usize,
    /// Load-generator processes holding the subscribers (default: one per node).
    #[arg(long)]
    pub generators: Option<usize>,
    /// Loopback source addresses per generator, from --source-first on: generator g uses
    /// --source-first + g * this, and the next ones.
    #[arg(long, default_value_t = 4)]
    pub sources_per_generator: u32,
    /// The first source address.
    #[arg(long, default_value = "127.0.0.2")]
    pub source_first: Ipv4Addr,
    /// Most connection attempts in flight at once, per generator.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Updates of the paced phase (0 skips it; at most 64).
    #[arg(long, default_value_t = 10)]
    pub paced_updates: usize,
    /// Updates per second of the paced phase.
    #[arg(long, default_value_t = 1.0)]
    pub paced_rate: f64,
    /// Updates of the burst phase, all published at once (0 skips it; at most 64).
    #[arg(long, default_value_t = 20)]
    pub burst_updates: usize,
    /// Bytes of data per update.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds the subscribers stay idle before the memory sample.
    #[arg(long, default_value_t = 3.0)]
    pub idle_secs: f64,
    /// After publishing: how long to wait without a new delivery before giving up on missing
    /// ones.
    #[arg(long, default_value_t = 10.0)]
    pub settle_secs: f64,
    /// Name of the scenario, recorded in the report.
    #[arg(long, default_value = "cluster")]
    pub scenario: String,
    /// Also writes the JSON report to this file.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Prints the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where and how to reach one node, in the shape the other scenarios use.
pub(crate) fn server_args(addr: SocketAddr, hub_path: &str, jwt_key: Option<&str>) -> ServerArgs {
    ServerArgs {
        target: Target::Herald,
        addr,
        hub_path: hub_path.to_owned(),
        nchan_sub: "/sub".into(),
        nchan_pub: "/pub".into(),
        pushpin_publish: "/publish/".into(),
        jwt_key: jwt_key.map(str::to_owned),
        server_pid: Vec::new(),
        scenario: String::new(),
        json: false,
        out: None,
        threads: 1,
    }
}

/// A worker process and its command pipe.
struct Generator {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Generator {
    async fn read_line(&mut self, within: Duration) -> Result<String, String> {
        tokio::time::timeout(within, self.lines.next_line())
            .await
            .map_err(|_| format!("a generator did not answer in {within:?}"))?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "a generator exited (see its message above)".to_owned())
    }

    async fn ask(&mut self, command: &str) -> Result<String, String> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| format!("a generator stopped listening: {e}"))?;
        self.read_line(Duration::from_secs(60)).await
    }
}

async fn spawn_generator(
    args: &ClusterArgs,
    topic: &str,
    index: usize,
    first: usize,
    count: usize,
) -> Result<Generator, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let nodes: Vec<String> = args.nodes.iter().map(ToString::to_string).collect();
    let source = u32::from(args.source_first) + index as u32 * args.sources_per_generator;
    let mut child = tokio::process::Command::new(exe)
        .arg("cluster-worker")
        .args(["--nodes", &nodes.join(","), "--hub-path", &args.hub_path])
        .args(["--topic", topic])
        .args(["--first", &first.to_string(), "--count", &count.to_string()])
        .args(["--source-first", &Ipv4Addr::from(source).to_string()])
        .args(["--sources", &args.sources_per_generator.to_string()])
        .args([
            "--connect-concurrency",
            &args.connect_concurrency.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start a generator: {e}"))?;
    let stdin = child.stdin.take().expect("piped");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    Ok(Generator {
        child,
        stdin,
        lines,
    })
}

/// Publishes updates numbered `first..first + count` round-robin over the nodes: one after the
/// other at `rate` per second, or all at once on pre-opened connections when `rate` is 0.
/// Returns the acknowledgement latencies and the number of failures.
async fn publish(
    endpoints: &[Arc<Endpoint>],
    topic: &str,
    first: usize,
    count: usize,
    rate: f64,
    payload: usize,
) -> Result<(Vec<u64>, u64), String> {
    let one = |endpoint: &Endpoint, seq: usize| {
        let data = update_data(seq, payload);
        let sent = sent_ns(data.as_bytes()).unwrap_or_default();
        (endpoint.publish_request(topic, &data, None), sent)
    };
    let connections = if rate > 0.0 { endpoints.len() } else { count };
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        let addr = endpoints[(first + i) % endpoints.len()].addr;
        let stream = http::connect(addr, None)
            .await
            .map_err(|e| format!("cannot connect a publisher to {addr}: {e}"))?;
        conns.push(Some(Conn::new(stream, 4096)));
    }
    let start = Instant::now();
    let mut acks = Vec::with_capacity(count);
    let mut errors = 0;
    if rate > 0.0 {
        for k in 0..count {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            tokio::time::sleep_until(at.into()).await;
            let node = (first + k) % endpoints.len();
            let (request, sent) = one(&endpoints[node], first + k);
            match http::exchange(&mut conns[k % connections], endpoints[node].addr, &request).await
            {
                Ok(status) if (200..300).contains(&status) => {
                    acks.push(now_ns().saturating_sub(sent));
                }
                _ => errors += 1,
            }
        }
    } else {
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(k, mut conn)| {
                let endpoint = endpoints[(first + k) % endpoints.len()].clone();
                let (request, sent) = one(&endpoint, first + k);
                tokio::spawn(async move {
                    let status = http::exchange(&mut conn, endpoint.addr, &request).await;
                    matches!(status, Ok(s) if (200..300).contains(&s))
                        .then(|| now_ns().saturating_sub(sent))
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(Some(ack)) => acks.push(ack),
                _ => errors += 1,
            }
        }
    }
    Ok((acks, errors))
}

/// The nodes, Redis and the generators of one run, and what the run measured so far.
struct Cluster {
    nodes: Vec<ProcessFigures>,
    redis: Option<ProcessFigures>,
    generator_figures: ProcessFigures,
    generators: Vec<Generator>,
    endpoints: Vec<Arc<Endpoint>>,
    topic: String,
    /// Subscribers the generators hold.
    connected: usize,
}

impl Cluster {
    /// Every process measured: the nodes, Redis if known, the generators.
    fn processes(&mut self) -> Vec<&mut ProcessFigures> {
        let mut all: Vec<&mut ProcessFigures> = self.nodes.iter_mut().collect();
        all.extend(self.redis.as_mut());
        all.push(&mut self.generator_figures);
        all
    }

    /// A sample of each process, in the order of [`Cluster::processes`].
    fn sample(&mut self) -> Vec<Sample> {
        self.processes().iter().map(|p| p.server.sample()).collect()
    }

    /// Reads each generator's `ready` line; returns the subscribers that failed to connect.
    async fn wait_ready(&mut self, start: Instant) -> Result<usize, String> {
        let mut failed = 0;
        for generator in &mut self.generators {
            let line = generator.read_line(Duration::from_secs(600)).await?;
            let mut words = line.split_whitespace().skip(1);
            let mut number = || {
                words
                    .next()
                    .and_then(|w| w.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            let (c, f) = (number(), number());
            self.connected += c;
            failed += f;
            eprintln!(
                "[{:>6.1}s] a generator holds {c} subscribers ({f} failed); {} in all",
                start.elapsed().as_secs_f64(),
                self.connected
            );
        }
        Ok(failed)
    }

    /// Asks every generator how many deliveries it has seen in the current phase.
    async fn delivered(&mut self) -> Result<u64, String> {
        let mut sum = 0;
        for generator in &mut self.generators {
            let answer = generator.ask("count").await?;
            sum += answer
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| format!("a generator answered {answer:?} to count"))?;
        }
        Ok(sum)
    }

    /// Phase number `index`: publishes `updates` updates at `rate` (0: at once), waits for the
    /// deliveries, and collects the generators' tallies.
    async fn phase(
        &mut self,
        args: &ClusterArgs,
        index: usize,
        name: &str,
        updates: usize,
        rate: f64,
    ) -> Result<PhaseReport, String> {
        eprintln!(
            "[{name}] {updates} updates to {} subscribers",
            self.connected
        );
        let before = self.sample();
        let publish_start_ns = now_ns();
        let first = index * MAX_PHASE_UPDATES;
        let (acks, publish_errors) = publish(
            &self.endpoints,
            &self.topic,
            first,
            updates,
            rate,
            args.payload,
        )
        .await?;
        let expected = (updates * self.connected) as u64;
        let settle = Duration::from_secs_f64(args.settle_secs);
        let hard_stop = Instant::now() + Duration::from_secs(600);
        let mut seen = self.delivered().await?;
        let mut last_progress = Instant::now();
        while seen < expected && last_progress.elapsed() < settle && Instant::now() < hard_stop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.delivered().await?;
            if now != seen {
                seen = now;
                last_progress = Instant::now();
            }
        }
        let after = self.sample();
        for ((p, b), a) in self.processes().into_iter().zip(&before).zip(&after) {
            p.phase_cpu_secs.push(a.cpu_secs - b.cpu_secs);
        }
        let mut tallies = Vec::new();
        for generator in &mut self.generators {
            let answer = generator.ask(&format!("report {updates}")).await?;
            let json = answer
                .strip_prefix("report ")
                .ok_or_else(|| format!("a generator answered {answer:?} to report"))?;
            tallies.push(serde_json::from_str::<PhaseTally>(json).map_err(|e| e.to_string())?);
        }
        let phase_cpu = |p: &ProcessFigures| p.phase_cpu_secs.last().copied().unwrap_or(0.0);
        let server_cpu_secs = self.nodes.iter().map(phase_cpu).sum::<f64>()
            + self.redis.as_ref().map_or(0.0, phase_cpu);
        let deliveries: u64 = tallies.iter().map(|t| t.deliveries).sum();
        let last_delivery = tallies
            .iter()
            .map(|t| t.last_delivery_ns)
            .max()
            .unwrap_or(0);
        let delivery_secs = last_delivery.saturating_sub(publish_start_ns) as f64 / 1e9;
        Ok(PhaseReport {
            name: name.into(),
            updates,
            rate,
            published: acks.len() as u64,
            publish_errors,
            publish_ack_ms: Percentiles::of(&acks),
            expected_deliveries: expected,
            deliveries,
            subscribers_complete: tallies.iter().map(|t| t.complete).sum(),
            // Subscribers that never connected are not counted as missing an update.
            subscribers_missing: tallies
                .iter()
                .map(|t| t.missing)
                .sum::<u64>()
                .saturating_sub((args.subscribers - self.connected) as u64),
            duplicates: tallies.iter().map(|t| t.duplicates).sum(),
            stream_errors: tallies.iter().map(|t| t.stream_errors).sum(),
            delivery_secs,
            deliveries_per_sec: crate::run::rate_of(deliveries, delivery_secs),
            server_cpu_secs,
            deliveries_per_server_cpu_sec: (server_cpu_secs > 0.0 && deliveries > 0)
                .then(|| deliveries as f64 / server_cpu_secs),
            generator_cpu_secs: phase_cpu(&self.generator_figures),
            latency_ms: percentiles(&tallies),
        })
    }
}

pub(crate) async fn main(args: ClusterArgs) -> Result<(), String> {
    if args.nodes.is_empty() {
        return Err("--nodes: give at least one node address".into());
    }
    if !args.node_pids.is_empty() && args.node_pids.len() != args.nodes.len() {
        return Err("--node-pids: give one PID per --nodes address, in the same order".into());
    }
    if args.paced_updates > MAX_PHASE_UPDATES || args.burst_updates > MAX_PHASE_UPDATES {
        return Err(format!(
            "--paced-updates and --burst-updates: at most {MAX_PHASE_UPDATES} each"
        ));
    }
    if args.paced_updates > 0 && args.paced_rate <= 0.0 {
        return Err("--paced-rate: give a positive rate".into());
    }
    let generator_count = args.generators.unwrap_or(args.nodes.len()).max(1);
    let last_source = u64::from(u32::from(args.source_first))
        + generator_count as u64 * u64::from(args.sources_per_generator.max(1));
    if !args.source_first.is_loopback()
        || last_source > u64::from(u32::from(Ipv4Addr::new(127, 255, 255, 255)))
    {
        return Err("--source-first: the source addresses must stay in 127.0.0.0/8".into());
    }

    let layout = Layout {
        target: Target::Herald,
        mode: Topics::One,
        total: args.subscribers,
        templates: 0,
        run_id: format!("{:x}", now_ns() / 1000 % 0xffff_ffff),
    };
    let topic = layout.topic(0);
    let endpoints = args
        .nodes
        .iter()
        .map(|&addr| {
            Endpoint::new(&server_args(addr, &args.hub_path, Some(&args.jwt_key))).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let per_node = |n: usize| {
        args.subscribers / args.nodes.len() + usize::from(n < args.subscribers % args.nodes.len())
    };
    let mut nodes = Vec::new();
    for (n, &addr) in args.nodes.iter().enumerate() {
        let server = Server::find(
            args.node_pids.get(n).map_or(&[], std::slice::from_ref),
            addr,
        )?;
        nodes.push(figures(format!("node {addr}"), server, per_node(n)));
    }
    let redis = match args.redis_pid {
        Some(pid) => Some(figures(
            "redis".into(),
            Server::find(&[pid], args.nodes[0])?,
            0,
        )),
        None => None,
    };

    // Connect: every generator at once; the connect time ends when the last one is ready.
    let memory_before = memory_available();
    let overflows_before = listen_overflows();
    let connect_start = Instant::now();
    let share = args.subscribers / generator_count;
    let mut generators = Vec::new();
    for g in 0..generator_count {
        let first = g * share;
        let count = if g + 1 == generator_count {
            args.subscribers - first
        } else {
            share
        };
        generators.push(spawn_generator(&args, &topic, g, first, count).await?);
    }
    let generator_pids: Vec<u32> = generators.iter().filter_map(|g| g.child.id()).collect();
    let mut generator_figures = figures(
        "generators".into(),
        Server::find(&generator_pids, args.nodes[0])?,
        0,
    );
    generator_figures.server.pids = generator_pids.clone();
    generator_figures.pids = generator_pids;
    let mut cluster = Cluster {
        nodes,
        redis,
        generator_figures,
        generators,
        endpoints,
        topic,
        connected: 0,
    };
    let failed = cluster.wait_ready(connect_start).await?;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let listen_overflows = listen_overflows().saturating_sub(overflows_before);
    let after_connect: Vec<Sample> = cluster.sample();
    for (p, s) in cluster.processes().into_iter().zip(&after_connect) {
        p.connect_cpu_secs = s.cpu_secs - p.baseline.cpu_secs;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.idle_secs)).await;
    let idle = cluster.sample();
    for (p, s) in cluster.processes().into_iter().zip(idle) {
        p.idle = s;
    }
    let machine_memory_used_bytes = memory_before - memory_available();
    let kernel_tcp_memory_bytes = kernel_tcp_memory();

    // Publish: each phase numbers its updates from 64 × its index.
    let mut phases = Vec::new();
    let plan = [
        ("paced", args.paced_updates, args.paced_rate),
        ("burst", args.burst_updates, 0.0),
    ];
    for (index, &(name, updates, rate)) in plan.iter().enumerate() {
        if updates > 0 {
            phases.push(cluster.phase(&args, index, name, updates, rate).await?);
        }
    }
    let Cluster {
        nodes,
        redis,
        generator_figures,
        generators,
        connected,
        ..
    } = cluster;
    for mut generator in generators {
        drop(generator.stdin);
        if tokio::time::timeout(Duration::from_secs(10), generator.child.wait())
            .await
            .is_err()
        {
            let _ = generator.child.start_kill();
        }
    }

    let rss = |f: fn(&ProcessFigures) -> u64| nodes.iter().map(f).sum::<u64>();
    let nodes_rss_idle_bytes = rss(|p| p.idle.rss_bytes);
    let nodes_rss_baseline = rss(|p| p.baseline.rss_bytes);
    let connect_server_cpu_secs = nodes.iter().map(|p| p.connect_cpu_secs).sum::<f64>()
        + redis.as_ref().map_or(0.0, |p| p.connect_cpu_secs);
    let report = ClusterReport {
        scenario: args.scenario.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        run_id: layout.run_id.clone(),
        subscribers: args.subscribers,
        connected,
        connect_failures: failed,
        connect_secs,
        connect_server_cpu_secs,
        nodes_rss_idle_bytes,
        nodes_rss_per_subscriber: (connected > 0)
            .then(|| (nodes_rss_idle_bytes as f64 - nodes_rss_baseline as f64) / connected as f64),
        machine_memory_used_bytes,
        kernel_tcp_memory_bytes,
        listen_overflows,
        nodes,
        redis,
        generators: generator_figures,
        phases,
    };
    emit(&report, &args)
}
