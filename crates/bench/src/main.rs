//! `herald-bench`: a load generator for Herald, and for nchan and Pushpin side by side.
//!
//! - `run`: N SSE subscribers (one topic, one topic each, or URI templates), M updates from P
//!   publishers at a rate or as fast as possible; reports deliveries/s, delivery latency, the
//!   server's CPU seconds and memory (from /proc), errors; `--connections-only` just holds idle
//!   subscribers (a helper process, so that one test can pass one process's open-file limit);
//!   on a cluster, `--publish-addr` publishes to another node than the subscribers' and
//!   `--also-subscribe-at` spreads subscribers over several nodes; `--publish-protocol h2`
//!   publishes over keep-alive HTTP/2 with TLS (`h2.rs`) instead of HTTP/1.1.
//! - `replay`: fills a history, then measures reconnections with `Last-Event-ID` near its end.
//! - `hostile-templates`: the worst one anonymous client can do with topic templates, and a
//!   normal publisher's latency meanwhile.
//! - `soak`: 10,000 subscribers and a steady publish rate for a set time; the hub's RSS, open
//!   files and CPU every second to a CSV and an SVG plot, and a verdict (RSS flat after warm-up,
//!   no delivery lost). `bench/soak.sh` runs it against a fresh release hub.
//! - `cluster`: 100,000 subscribers (or `--subscribers`) over the nodes of a cluster, held by
//!   several generator processes (`cluster-worker`, each under its open-file limit, each from its
//!   own loopback source addresses); a paced load and a burst; connect time, RSS per node,
//!   deliveries per server CPU-second, latency, and a check that every subscriber got every
//!   update. `bench/cluster-100k.sh` runs it against Redis and 6 fresh nodes.
//! - `table`: a table of medians (and ratios against Herald: Herald/nchan, Herald/Pushpin) over
//!   the JSON reports of several runs.
//! - `plot`: an SVG latency-percentile plot from JSON reports.
//!
//! Raw tokio TCP and hand-written HTTP/1.1: per connection the generator holds a socket, a read
//! buffer and a few counters, nothing more. It depends on no Herald crate: it drives any
//! Mercure hub, nchan with `--target nchan` and Pushpin with `--target pushpin` (publishing to
//! Pushpin's HTTP publish endpoint, given with `--publish-addr`). Only the HTTP/2 publisher uses
//! a client library (hyper over rustls): HTTP/2 framing and HPACK by hand would be a second
//! implementation to trust, and it drives a few dozen connections, not thousands.

mod cluster;
mod cluster_report;
mod cluster_worker;
mod endpoint;
mod hostile;
mod http;
mod http2;
mod plot;
mod procfs;
mod replay;
mod report;
mod run;
mod soak;
mod soak_report;

/// jemalloc, as the hub: in a connection storm the generator makes and frees tens of thousands
/// of small allocations (a task, a request, a read buffer per subscriber); glibc's malloc and
/// free were 6% of its CPU (perf, 10,000 subscribers), CPU the server it measures shares.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Load generator for Herald (and nchan, Pushpin)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscribers and publishers: fan-out, many topics, idle memory, publish throughput.
    Run(run::RunArgs),
    /// Replay from Last-Event-ID in a large history.
    Replay(replay::ReplayArgs),
    /// Hostile topic templates from one anonymous client: RSS, CPU, a publisher's latency.
    HostileTemplates(hostile::HostileArgs),
    /// A long steady load: RSS, open files and CPU sampled every second, and a verdict.
    Soak(soak::SoakArgs),
    /// Subscribers spread over a cluster's nodes by several generator processes; a paced
    /// load and a burst.
    Cluster(cluster::ClusterArgs),
    /// One generator process of `cluster` (started by it).
    #[command(hide = true)]
    ClusterWorker(cluster_worker::WorkerArgs),
    /// Medians over several JSON reports, with ratios against Herald.
    Table(report::TableArgs),
    /// An SVG plot of delivery latency percentiles from JSON reports.
    Plot(plot::PlotArgs),
}

/// Which server's URLs and body formats to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A Mercure hub: `GET /.well-known/mercure?topic=...`, form `POST` with a bearer token.
    Herald,
    /// nchan: `GET /sub?id=CHANNEL` (EventSource), `POST /pub?id=CHANNEL` with the data as body.
    Nchan,
    /// Pushpin: `GET /sub?id=CHANNEL` (held as an SSE stream by the GRIP origin of
    /// bench/pushpin), `POST /publish/` with GRIP JSON items (`http-stream` format) to its HTTP
    /// publish endpoint.
    Pushpin,
}

impl Target {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Herald => "herald",
            Target::Nchan => "nchan",
            Target::Pushpin => "pushpin",
        }
    }
}

/// Where and how to talk to the server.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// What the server is.
    #[arg(long, value_enum, default_value = "herald")]
    pub target: Target,
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// The Mercure hub path (Herald).
    #[arg(long, default_value = "/.well-known/mercure")]
    pub hub_path: String,
    /// nchan's subscriber location.
    #[arg(long, default_value = "/sub")]
    pub nchan_sub: String,
    /// nchan's publisher location.
    #[arg(long, default_value = "/pub")]
    pub nchan_pub: String,
    /// Pushpin's publish path (on its HTTP publish endpoint, `--publish-addr`).
    #[arg(long, default_value = "/publish/")]
    pub pushpin_publish: String,
    /// HS256 key: publishers send a token minted with it (`mercure.publish: ["*"]`).
    #[arg(long, env = "HERALD_JWT_KEY")]
    pub jwt_key: Option<String>,
    /// The server's PIDs, comma-separated (their children are counted too): a server made of
    /// several process trees (Pushpin: its runner, zurl, the GRIP origin) is their sum. Default:
    /// whoever listens on --addr.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Name of the scenario, recorded in the report.
    #[arg(long, default_value = "custom")]
    pub scenario: String,
    /// Prints the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also writes the JSON report to this file.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Nanoseconds since the Unix epoch: the clock every process of a run shares.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos() as u64
}

/// A publisher token for `key`: `{"mercure": {"publish": ["*"]}}`, HS256.
pub fn publisher_token(key: &str) -> Result<String, String> {
    let claims = serde_json::json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .map_err(|e| format!("cannot mint a token: {e}"))
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => runtime(args.server.threads).block_on(run::main(args)),
        Command::Replay(args) => runtime(args.server.threads).block_on(replay::main(args)),
        Command::HostileTemplates(args) => {
            runtime(args.server.threads).block_on(hostile::main(args))
        }
        Command::Soak(args) => runtime(args.server.threads).block_on(soak::main(args)),
        Command::Cluster(args) => runtime(2).block_on(cluster::main(args)),
        Command::ClusterWorker(args) => runtime(1).block_on(cluster_worker::main(args)),
        Command::Table(args) => report::table(args),
        Command::Plot(args) => plot::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
