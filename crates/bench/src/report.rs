//! Reports: one run's figures (table or JSON), and a table of medians over several runs with
//! ratios against Herald (Herald/nchan, Herald/Pushpin: above 1 means Herald's figure is the
//! larger, which is better for rates and worse for latencies, memory and CPU).

use std::collections::BTreeMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::procfs::Sample;
use crate::{ServerArgs, Target};

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn histogram(samples_ns: &[u64]) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1_000, 3_600_000_000_000, 3).expect("bounds");
    for &v in samples_ns {
        h.saturating_record(v.max(1_000));
    }
    h
}

impl Percentiles {
    pub(crate) fn of(samples_ns: &[u64]) -> Option<Percentiles> {
        if samples_ns.is_empty() {
            return None;
        }
        let h = histogram(samples_ns);
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
        let sum: u128 = samples_ns.iter().map(|&v| u128::from(v)).sum();
        Some(Percentiles {
            count: samples_ns.len() as u64,
            mean: sum as f64 / samples_ns.len() as f64 / 1e6,
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: *samples_ns.iter().max().expect("not empty") as f64 / 1e6,
        })
    }
}

/// `[quantile, milliseconds]` points of the latency distribution, dense in the tail.
pub(crate) fn cdf(samples_ns: &[u64]) -> Vec<[f64; 2]> {
    if samples_ns.is_empty() {
        return Vec::new();
    }
    let h = histogram(samples_ns);
    let mut quantiles: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
    quantiles.extend((1..10).map(|i| 0.99 + i as f64 / 1000.0));
    quantiles.extend([0.9995, 0.9999, 0.99999, 1.0]);
    quantiles
        .into_iter()
        .map(|q| [q, h.value_at_quantile(q) as f64 / 1e6])
        .collect()
}

#[derive(Debug, Serialize)]
pub(crate) struct ServerReport {
    pub pids: Vec<u32>,
    /// Before any subscriber connected.
    pub baseline: Sample,
    /// Right after the last subscriber connected.
    pub after_connect: Sample,
    /// After --idle-secs of idle connections: the memory figure.
    pub idle: Sample,
    /// After the last delivery (or the settle timeout).
    pub end: Sample,
    /// CPU seconds spent accepting the subscribers.
    pub connect_cpu_secs: f64,
    /// CPU seconds from the first publish to the end of the deliveries.
    pub cpu_secs: f64,
    pub deliveries_per_cpu_sec: Option<f64>,
    /// Acknowledged publishes per server CPU-second (the publish path's cost, whatever the
    /// machine's load does to the wall-clock rate).
    pub publishes_per_cpu_sec: Option<f64>,
    /// (idle RSS - baseline RSS) / connected subscribers, in bytes.
    pub rss_per_connection: Option<f64>,
    pub pss_per_connection: Option<f64>,
}

/// The rest of the machine during the connect phase: the load generator shares the server's
/// cores, so a connect time is the server's, the generator's and the idle cores' together.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectLoad {
    /// CPU seconds of the generator's processes (this one and its `--processes` helpers).
    pub generator_cpu_secs: f64,
    /// Cores idle on average (see [`crate::procfs::MachineShare`]); absent without /proc/stat.
    pub idle_cores: Option<f64>,
    /// Cores taken by the hypervisor on average.
    pub steal_cores: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub scenario: String,
    pub target: Target,
    pub run_id: String,
    pub command: String,
    pub subscribers: usize,
    pub connected: usize,
    pub connect_failures: usize,
    /// Connection attempts that failed and were tried again (`--connect-retries`).
    pub connect_retries: usize,
    pub connect_secs: f64,
    pub connect_load: ConnectLoad,
    pub updates: usize,
    pub rate: f64,
    pub publishers: usize,
    pub published: u64,
    pub publish_errors: u64,
    /// What the first failed publish got (a status or an I/O error), if any failed.
    pub first_publish_error: Option<String>,
    pub publish_secs: f64,
    pub publishes_per_sec: f64,
    pub publish_latency_ms: Option<Percentiles>,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub delivery_secs: f64,
    pub deliveries_per_sec: f64,
    pub latency_ms: Option<Percentiles>,
    pub latency_cdf: Vec<[f64; 2]>,
    pub stream_errors: u64,
    /// Failed connects + failed publishes + streams cut + missing deliveries.
    pub errors: u64,
    pub server: ServerReport,
}

/// Writes a report: JSON to --out, and a table (or JSON with --json) on stdout.
pub(crate) fn emit<T: Serialize>(report: &T, args: &ServerArgs) -> Result<(), String> {
    let value = serde_json::to_value(report).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        println!(
            "{} against {}:",
            value["scenario"].as_str().unwrap_or("run"),
            value["target"].as_str().unwrap_or("?")
        );
        for figure in FIGURES {
            if let Some(v) = figure.get(&value) {
                println!("  {:<44} {}", figure.name, format_number(v));
            }
        }
        if let Some(error) = value["first_publish_error"].as_str() {
            println!("  {:<44} {error}", "first publish error");
        }
    }
    Ok(())
}

impl Report {
    pub(crate) fn emit(&self, args: &ServerArgs) -> Result<(), String> {
        emit(self, args)
    }
}

struct Figure {
    name: &'static str,
    pointer: &'static str,
    scale: f64,
    /// Shown even when zero.
    always: bool,
}

impl Figure {
    fn get(&self, value: &Value) -> Option<f64> {
        let v = value.pointer(self.pointer)?.as_f64()? * self.scale;
        (self.always || v != 0.0).then_some(v)
    }
}

const fn fig(name: &'static str, pointer: &'static str) -> Figure {
    Figure {
        name,
        pointer,
        scale: 1.0,
        always: false,
    }
}

const FIGURES: &[Figure] = &[
    fig("subscribers connected", "/connected"),
    fig("connect time (s)", "/connect_secs"),
    fig("server CPU (s), connect", "/server/connect_cpu_secs"),
    fig(
        "generator CPU (s), connect",
        "/connect_load/generator_cpu_secs",
    ),
    Figure {
        always: true,
        ..fig("idle cores, connect", "/connect_load/idle_cores")
    },
    fig(
        "cores stolen by the hypervisor, connect",
        "/connect_load/steal_cores",
    ),
    Figure {
        always: true,
        ..fig("connect attempts retried", "/connect_retries")
    },
    fig("deliveries", "/deliveries"),
    fig("deliveries/s", "/deliveries_per_sec"),
    fig(
        "deliveries per server CPU-second",
        "/server/deliveries_per_cpu_sec",
    ),
    fig(
        "server CPU (s), publish to last delivery",
        "/server/cpu_secs",
    ),
    fig("latency p50 (ms)", "/latency_ms/p50"),
    fig("latency p99 (ms)", "/latency_ms/p99"),
    fig("latency p99.9 (ms)", "/latency_ms/p999"),
    fig("latency max (ms)", "/latency_ms/max"),
    fig("publishes acknowledged/s", "/publishes_per_sec"),
    fig("publish ack p50 (ms)", "/publish_latency_ms/p50"),
    fig("publish ack p99 (ms)", "/publish_latency_ms/p99"),
    fig(
        "publishes per server CPU-second",
        "/server/publishes_per_cpu_sec",
    ),
    Figure {
        scale: 1.0 / 1048576.0,
        ..fig(
            "server RSS, connections idle (MiB)",
            "/server/idle/rss_bytes",
        )
    },
    fig("RSS per connection (bytes)", "/server/rss_per_connection"),
    fig("PSS per connection (bytes)", "/server/pss_per_connection"),
    fig("history size (events)", "/history"),
    fig("history fill, publishes/s", "/fill_per_sec"),
    fig(
        "replay: first replayed event p50 (ms)",
        "/first_event_ms/p50",
    ),
    fig(
        "replay: first replayed event p99 (ms)",
        "/first_event_ms/p99",
    ),
    fig("replay: all replayed events p50 (ms)", "/all_events_ms/p50"),
    Figure {
        scale: 1.0 / 1048576.0,
        ..fig("server RSS after fill (MiB)", "/server_rss_bytes")
    },
    Figure {
        always: true,
        ..fig("errors", "/errors")
    },
];

fn format_number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct TableArgs {
    /// JSON reports written with --out.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The order of the table's columns: Herald first (the ratios are against it), then the peers.
const TARGET_ORDER: [&str; 3] = ["herald", "nchan", "pushpin"];

/// Prints, per scenario, the median of every figure over the runs of each target, and the
/// ratios Herald/peer where both ran. Only the targets present in the reports get a column.
pub(crate) fn table(args: TableArgs) -> Result<(), String> {
    let mut reports = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a report: {e}", path.display()))?;
        reports.push(value);
    }
    print!("{}", render_table(reports));
    Ok(())
}

/// The Markdown table of [`table`].
fn render_table(reports: Vec<Value>) -> String {
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<Value>>> = BTreeMap::new();
    for value in reports {
        let scenario = value["scenario"].as_str().unwrap_or("?").to_owned();
        let target = value["target"].as_str().unwrap_or("?").to_owned();
        groups
            .entry(scenario)
            .or_default()
            .entry(target)
            .or_default()
            .push(value);
    }
    let mut targets: Vec<String> = TARGET_ORDER
        .iter()
        .map(|t| (*t).to_owned())
        .filter(|t| groups.values().any(|g| g.contains_key(t)))
        .collect();
    for group in groups.values() {
        for t in group.keys() {
            if !targets.contains(t) {
                targets.push(t.clone());
            }
        }
    }
    let peers: Vec<&String> = targets.iter().filter(|t| *t != "herald").collect();
    let with_ratios = targets.iter().any(|t| t == "herald");
    let mut header = format!("| scenario | figure | {} |", targets.join(" | "));
    let mut rule = format!("|---|---|{}", "---:|".repeat(targets.len()));
    if with_ratios {
        for peer in &peers {
            header.push_str(&format!(" herald/{peer} |"));
            rule.push_str("---:|");
        }
    }
    let mut out = format!("{header}\n{rule}\n");
    for (scenario, runs) in &groups {
        let counts: Vec<String> = targets
            .iter()
            .map(|t| format!("{t} {}", runs.get(t).map_or(0, Vec::len)))
            .collect();
        let name = format!("{scenario} (runs: {})", counts.join(", "));
        let mut first = true;
        for figure in FIGURES {
            let med = |t: &str| {
                median(
                    runs.get(t)
                        .map(|reports| reports.iter().filter_map(|r| figure.get(r)).collect())
                        .unwrap_or_default(),
                )
            };
            let medians: Vec<Option<f64>> = targets.iter().map(|t| med(t)).collect();
            if medians.iter().all(Option::is_none) {
                continue;
            }
            let show = |v: &Option<f64>| v.map_or("-".to_owned(), format_number);
            let mut row = format!(
                "| {} | {} | {} |",
                if first { name.as_str() } else { "" },
                figure.name,
                medians.iter().map(show).collect::<Vec<_>>().join(" | ")
            );
            if with_ratios {
                let herald = med("herald");
                for peer in &peers {
                    let ratio = match (herald, med(peer)) {
                        (Some(h), Some(p)) if p != 0.0 => format!("{:.2}", h / p),
                        _ => "-".to_owned(),
                    };
                    row.push_str(&format!(" {ratio} |"));
                }
            }
            out.push_str(&row);
            out.push('\n');
            first = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(target: &str, per_cpu: f64) -> Value {
        serde_json::json!({
            "scenario": "a-burst",
            "target": target,
            "connected": 10000,
            "server": {"deliveries_per_cpu_sec": per_cpu},
            "errors": 0,
        })
    }

    #[test]
    fn three_targets_side_by_side_with_ratios_against_herald() {
        let table = render_table(vec![
            report("pushpin", 100_000.0),
            report("herald", 1_000_000.0),
            report("nchan", 200_000.0),
            report("herald", 3_000_000.0),
            report("herald", 2_000_000.0),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| scenario | figure | herald | nchan | pushpin | herald/nchan | herald/pushpin |"
        );
        let row = lines
            .iter()
            .find(|l| l.contains("deliveries per server CPU-second"))
            .expect("a row per figure");
        assert_eq!(
            *row,
            "|  | deliveries per server CPU-second | 2,000,000 | 200,000 | 100,000 | 10.00 | 20.00 |"
        );
        assert!(lines[2].starts_with("| a-burst (runs: herald 3, nchan 1, pushpin 1) |"));
    }

    #[test]
    fn herald_alone_has_no_ratio_columns() {
        let table = render_table(vec![report("herald", 5.0)]);
        assert!(table.starts_with("| scenario | figure | herald |\n|---|---|---:|\n"));
    }
}
