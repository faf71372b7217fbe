//! The report of `herald-bench cluster` ([`crate::cluster`]): what each process (node, Redis,
//! the generators together) spent, what each phase delivered, and how it is printed.
//!
//! Latencies come from the generators as histograms ([`PhaseTally`]), merged here, so that a
//! percentile over 2,000,000 deliveries costs no more than one over 2,000.

use serde::Serialize;

use crate::cluster::ClusterArgs;
use crate::cluster_worker::{PhaseTally, latency_histogram};
use crate::procfs::{Sample, Server};
use crate::report::Percentiles;

/// One process (a node, Redis, or the generators together): its samples over the run.
#[derive(Debug, Serialize)]
pub(crate) struct ProcessFigures {
    pub name: String,
    pub pids: Vec<u32>,
    /// Subscribers it holds (nodes) or 0.
    pub subscribers: usize,
    pub baseline: Sample,
    /// After the subscribers were idle for --idle-secs: the memory figure.
    pub idle: Sample,
    pub connect_cpu_secs: f64,
    /// CPU seconds of each phase, in the order of `phases`.
    pub phase_cpu_secs: Vec<f64>,
    #[serde(skip)]
    pub server: Server,
}

#[derive(Debug, Serialize)]
pub(crate) struct PhaseReport {
    pub name: String,
    pub updates: usize,
    /// Updates per second; 0: all at once.
    pub rate: f64,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_ack_ms: Option<Percentiles>,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    /// Subscribers that received every update of the phase exactly once.
    pub subscribers_complete: u64,
    pub subscribers_missing: u64,
    pub duplicates: u64,
    pub stream_errors: u64,
    /// From the first publish to the last delivery.
    pub delivery_secs: f64,
    pub deliveries_per_sec: f64,
    /// CPU seconds of the nodes and Redis, from the first publish to the last delivery.
    pub server_cpu_secs: f64,
    pub deliveries_per_server_cpu_sec: Option<f64>,
    pub generator_cpu_secs: f64,
    pub latency_ms: Option<Percentiles>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ClusterReport {
    pub scenario: String,
    pub command: String,
    pub run_id: String,
    pub subscribers: usize,
    pub connected: usize,
    pub connect_failures: usize,
    /// From starting the generators to the last one holding all its subscribers.
    pub connect_secs: f64,
    /// CPU seconds of the nodes and Redis while the subscribers connected.
    pub connect_server_cpu_secs: f64,
    /// Sum of the nodes' RSS with the subscribers idle.
    pub nodes_rss_idle_bytes: u64,
    /// (nodes' idle RSS - their RSS before) / connected subscribers.
    pub nodes_rss_per_subscriber: Option<f64>,
    /// The machine's MemAvailable before the subscribers connected minus with them idle:
    /// every process and the kernel's sockets (and whatever else the machine ran meanwhile).
    pub machine_memory_used_bytes: i64,
    /// Memory of the kernel's TCP buffers with the subscribers idle (`/proc/net/sockstat`).
    pub kernel_tcp_memory_bytes: u64,
    /// Connection attempts the kernel dropped because a listen queue was full while the
    /// subscribers connected (`TcpExtListenOverflows`, machine-wide): each costs the client a
    /// SYN retransmission, 1 s or more.
    pub listen_overflows: u64,
    pub nodes: Vec<ProcessFigures>,
    pub redis: Option<ProcessFigures>,
    pub generators: ProcessFigures,
    pub phases: Vec<PhaseReport>,
}

/// `MemAvailable` of /proc/meminfo, in bytes.
pub(crate) fn memory_available() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The pages of TCP buffers the kernel holds (`TCP: ... mem N` of /proc/net/sockstat), in
/// bytes.
pub(crate) fn kernel_tcp_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|&w| w == "mem")?;
            words.get(at + 1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    pages * 4096
}

/// The machine's count of connection attempts dropped on a full listen queue
/// (`ListenOverflows` of the `TcpExt:` lines of /proc/net/netstat).
pub(crate) fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn figures(name: String, server: Server, subscribers: usize) -> ProcessFigures {
    let baseline = server.sample();
    ProcessFigures {
        name,
        pids: server.pids.clone(),
        subscribers,
        baseline,
        idle: baseline,
        connect_cpu_secs: 0.0,
        phase_cpu_secs: Vec::new(),
        server,
    }
}

pub(crate) fn percentiles(tallies: &[PhaseTally]) -> Option<Percentiles> {
    let mut histogram = latency_histogram();
    let mut sum = 0u128;
    for tally in tallies {
        for &(value, count) in &tally.latency_ns {
            histogram.saturating_record_n(value, count);
        }
        sum += tally.latency_sum_ns;
    }
    let count = histogram.len();
    let ms = |ns: u64| ns as f64 / 1e6;
    (count > 0).then(|| Percentiles {
        count,
        mean: sum as f64 / count as f64 / 1e6,
        p50: ms(histogram.value_at_quantile(0.5)),
        p90: ms(histogram.value_at_quantile(0.9)),
        p99: ms(histogram.value_at_quantile(0.99)),
        p999: ms(histogram.value_at_quantile(0.999)),
        max: ms(histogram.max()),
    })
}

pub(crate) fn emit(report: &ClusterReport, args: &ClusterArgs) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{json}");
        return Ok(());
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("{} ({} nodes):", report.scenario, report.nodes.len());
    println!(
        "  subscribers connected          {} of {} ({} failed) in {:.2} s; nodes+redis CPU {:.2} s",
        report.connected,
        report.subscribers,
        report.connect_failures,
        report.connect_secs,
        report.connect_server_cpu_secs
    );
    for p in report.nodes.iter().chain(report.redis.as_ref()) {
        println!(
            "  RSS idle {:<22} {:>8.1} MiB (before: {:.1} MiB)",
            p.name,
            mib(p.idle.rss_bytes),
            mib(p.baseline.rss_bytes)
        );
    }
    if let Some(per) = report.nodes_rss_per_subscriber {
        println!("  nodes' RSS per subscriber      {per:.0} bytes");
    }
    println!(
        "  generators' RSS idle           {:.1} MiB",
        mib(report.generators.idle.rss_bytes)
    );
    if report.listen_overflows > 0 {
        println!(
            "  listen-queue overflows         {} while connecting (machine-wide)",
            report.listen_overflows
        );
    }
    println!(
        "  machine memory used            {:.1} MiB (kernel TCP buffers {:.1} MiB)",
        report.machine_memory_used_bytes as f64 / 1048576.0,
        mib(report.kernel_tcp_memory_bytes)
    );
    for phase in &report.phases {
        let lat = |f: fn(&Percentiles) -> f64| phase.latency_ms.as_ref().map_or(f64::NAN, f);
        println!(
            "  {:<6} {} updates: {} of {} deliveries, {} subscribers complete, {} missing, {} duplicates, {} streams cut",
            phase.name,
            phase.published,
            phase.deliveries,
            phase.expected_deliveries,
            phase.subscribers_complete,
            phase.subscribers_missing,
            phase.duplicates,
            phase.stream_errors
        );
        println!(
            "         latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; last delivery after {:.2} s",
            lat(|p| p.p50),
            lat(|p| p.p99),
            lat(|p| p.max),
            phase.delivery_secs
        );
        println!(
            "         nodes+redis CPU {:.2} s: {:.0} deliveries per server CPU-second (generators {:.2} s)",
            phase.server_cpu_secs,
            phase.deliveries_per_server_cpu_sec.unwrap_or(0.0),
            phase.generator_cpu_secs
        );
    }
    Ok(())
}
