//! What a soak run ([`crate::soak`]) leaves behind: the per-second CSV rows, the summary with its
//! verdict (JSON, and a few lines on stdout), and the SVG plot of the hub's RSS, open files, CPU
//! and the deliveries per second over time.
//!
//! The verdict has two parts. **Memory is flat**: over the window after warm-up (the publishing
//! phase less its first `--warmup` share), the least-squares slope of RSS, times the window's
//! length, is at most `--max-growth-pct` of the window's mean RSS. **Nothing is lost**: every
//! subscriber received every acknowledged update meant for it, and no publish failed.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::soak::SoakArgs;

/// One second of a soak run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// Seconds since the soak started (subscribers connect first, then the publishing).
    pub t_secs: f64,
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub open_files: u64,
    pub threads: u64,
    /// The hub's CPU seconds since it started.
    pub cpu_secs: f64,
    /// CPU over the last second, in % of one core.
    pub cpu_pct: f64,
    pub open_streams: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub delivered: u64,
    pub deliveries_per_sec: f64,
    /// The slowest delivery in the last second (publish to receipt), in ms.
    pub max_latency_ms: f64,
    pub generator_rss_kib: u64,
}

impl Row {
    pub(crate) const CSV_HEADER: &str = "t_secs,rss_kib,pss_kib,open_files,threads,cpu_secs,cpu_pct,open_streams,reconnects,connect_failures,published,publish_errors,delivered,deliveries_per_sec,max_latency_ms,generator_rss_kib";

    pub(crate) fn csv(&self) -> String {
        format!(
            "{:.1},{},{},{},{},{:.2},{:.1},{},{},{},{},{},{},{:.0},{:.1},{}",
            self.t_secs,
            self.rss_kib,
            self.pss_kib,
            self.open_files,
            self.threads,
            self.cpu_secs,
            self.cpu_pct,
            self.open_streams,
            self.reconnects,
            self.connect_failures,
            self.published,
            self.publish_errors,
            self.delivered,
            self.deliveries_per_sec,
            self.max_latency_ms,
            self.generator_rss_kib,
        )
    }

    pub(crate) fn progress(&self) -> String {
        format!(
            "[soak {:>6.0}s] hub RSS {:.1} MiB, open files {}, CPU {:.0}%; streams {}, reconnects {}, published {} (errors {}), delivered {} ({:.0}/s)",
            self.t_secs,
            self.rss_kib as f64 / 1024.0,
            self.open_files,
            self.cpu_pct,
            self.open_streams,
            self.reconnects,
            self.published,
            self.publish_errors,
            self.delivered,
            self.deliveries_per_sec,
        )
    }
}

/// The run's counts, filled in by [`crate::soak::main`].
#[derive(Debug, Default, Serialize)]
pub(crate) struct Totals {
    pub subscribers: usize,
    pub topics: usize,
    pub room_watchers: usize,
    pub all_watchers: usize,
    pub rate: f64,
    pub minutes: f64,
    pub payload_min: usize,
    pub payload_max: usize,
    pub publish_start_secs: f64,
    pub publish_end_secs: f64,
    pub settle_secs: f64,
    pub published: u64,
    pub publish_errors: u64,
    pub connect_failures: u64,
    pub reconnects: u64,
    pub stream_ends: u64,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    /// Deliveries expected but not received, summed over subscribers.
    pub lost: u64,
    /// Deliveries received beyond those expected (an update whose publish was not acknowledged).
    pub unexpected: u64,
    /// Updates a subscriber saw again (replayed after a reconnection) or out of order.
    pub repeated: u64,
    pub subscribers_short: u64,
}

/// The figures the verdict rests on.
#[derive(Debug, Serialize)]
pub(crate) struct Figures {
    pub window_start_secs: f64,
    pub window_end_secs: f64,
    pub rss_mib_at_publish_start: f64,
    pub rss_mib_at_window_start: f64,
    pub rss_mib_at_end: f64,
    pub rss_mib_peak: f64,
    pub rss_mib_window_mean: f64,
    /// Least-squares slope of RSS over the window.
    pub rss_slope_kib_per_min: f64,
    /// The slope times the window's length.
    pub rss_fitted_growth_mib: f64,
    /// Max minus min of RSS over the window.
    pub rss_band_mib: f64,
    pub open_files_at_publish_start: u64,
    pub open_files_at_end: u64,
    pub open_files_window_min: u64,
    pub open_files_window_max: u64,
    pub threads_at_end: u64,
    /// Mean CPU over the publishing phase, % of one core.
    pub cpu_pct_mean: f64,
    /// The busiest second of the publishing phase.
    pub cpu_pct_max: f64,
    pub deliveries_per_sec_mean: f64,
    pub max_latency_ms: f64,
    pub generator_rss_mib_at_end: f64,
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    command: String,
    server_pids: &'a [u32],
    totals: &'a Totals,
    figures: &'a Figures,
    rss_flat: bool,
    nothing_lost: bool,
    pass: bool,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Least-squares slope of `(x, y)` points; 0 with fewer than two distinct x.
pub(crate) fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den > 0.0 { num / den } else { 0.0 }
}

/// The figures over `rows`, with the window after `warmup` of the publishing phase.
pub(crate) fn figures(totals: &Totals, rows: &[Row], warmup: f64) -> Result<Figures, String> {
    let (start, end) = (totals.publish_start_secs, totals.publish_end_secs);
    let window_start = start + warmup.clamp(0.0, 0.95) * (end - start);
    let publishing: Vec<&Row> = rows
        .iter()
        .filter(|r| r.t_secs >= start && r.t_secs <= end)
        .collect();
    let window: Vec<&Row> = publishing
        .iter()
        .copied()
        .filter(|r| r.t_secs >= window_start)
        .collect();
    let (Some(first), Some(last), Some(window_first)) =
        (publishing.first(), publishing.last(), window.first())
    else {
        return Err("too few samples for a verdict: run for longer".into());
    };
    let points: Vec<(f64, f64)> = window
        .iter()
        .map(|r| (r.t_secs / 60.0, r.rss_kib as f64))
        .collect();
    let rss_slope = slope(&points);
    let window_minutes = (last.t_secs - window_first.t_secs) / 60.0;
    let rss = window.iter().map(|r| r.rss_kib);
    let (rss_min, rss_max) = (
        rss.clone().min().unwrap_or(0),
        rss.clone().max().unwrap_or(0),
    );
    let files = window.iter().map(|r| r.open_files);
    let publish_secs = last.t_secs - first.t_secs;
    Ok(Figures {
        window_start_secs: window_first.t_secs,
        window_end_secs: last.t_secs,
        rss_mib_at_publish_start: mib(first.rss_kib),
        rss_mib_at_window_start: mib(window_first.rss_kib),
        rss_mib_at_end: mib(last.rss_kib),
        rss_mib_peak: mib(rows.iter().map(|r| r.rss_kib).max().unwrap_or(0)),
        rss_mib_window_mean: rss.sum::<u64>() as f64 / window.len() as f64 / 1024.0,
        rss_slope_kib_per_min: rss_slope,
        rss_fitted_growth_mib: rss_slope * window_minutes / 1024.0,
        rss_band_mib: mib(rss_max - rss_min),
        open_files_at_publish_start: first.open_files,
        open_files_at_end: last.open_files,
        open_files_window_min: files.clone().min().unwrap_or(0),
        open_files_window_max: files.max().unwrap_or(0),
        threads_at_end: last.threads,
        cpu_pct_mean: if publish_secs > 0.0 {
            100.0 * (last.cpu_secs - first.cpu_secs) / publish_secs
        } else {
            0.0
        },
        cpu_pct_max: publishing.iter().map(|r| r.cpu_pct).fold(0.0, f64::max),
        deliveries_per_sec_mean: if publish_secs > 0.0 {
            (last.delivered - first.delivered) as f64 / publish_secs
        } else {
            0.0
        },
        max_latency_ms: rows.iter().map(|r| r.max_latency_ms).fold(0.0, f64::max),
        generator_rss_mib_at_end: mib(last.generator_rss_kib),
    })
}

/// Writes the summary and the plot, prints the verdict; an error if the soak failed.
pub(crate) fn finish(
    args: &SoakArgs,
    server_pids: &[u32],
    totals: Totals,
    rows: &[Row],
) -> Result<(), String> {
    let figures = figures(&totals, rows, args.warmup)?;
    let rss_flat =
        figures.rss_fitted_growth_mib <= args.max_growth_pct / 100.0 * figures.rss_mib_window_mean;
    let nothing_lost = totals.lost == 0 && totals.publish_errors == 0 && totals.published > 0;
    let pass = rss_flat && nothing_lost;
    let summary = Summary {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        server_pids,
        totals: &totals,
        figures: &figures,
        rss_flat,
        nothing_lost,
        pass,
    };
    let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    write(&args.summary, &json)?;
    write(&args.svg, &svg(&totals, &figures, rows, pass))?;

    let f = &figures;
    println!(
        "soak: {} subscribers, {} updates/s for {:.1} min: {} published ({} errors), {} of {} deliveries ({} lost, {} unexpected, {} replayed again), {} reconnections ({} failed attempts)",
        totals.subscribers,
        totals.rate,
        totals.minutes,
        totals.published,
        totals.publish_errors,
        totals.deliveries,
        totals.expected_deliveries,
        totals.lost,
        totals.unexpected,
        totals.repeated,
        totals.reconnects,
        totals.connect_failures,
    );
    println!(
        "hub RSS: {:.1} MiB at publish start, {:.1} MiB after warm-up, {:.1} MiB at the end (peak {:.1}); slope after warm-up {:+.1} KiB/min ({:+.2} MiB over the window), band {:.2} MiB",
        f.rss_mib_at_publish_start,
        f.rss_mib_at_window_start,
        f.rss_mib_at_end,
        f.rss_mib_peak,
        f.rss_slope_kib_per_min,
        f.rss_fitted_growth_mib,
        f.rss_band_mib,
    );
    println!(
        "hub open files: {} at publish start, {} at the end ({}..{} after warm-up); threads {}; CPU mean {:.1}% (busiest second {:.0}%); {:.0} deliveries/s; slowest delivery {:.0} ms",
        f.open_files_at_publish_start,
        f.open_files_at_end,
        f.open_files_window_min,
        f.open_files_window_max,
        f.threads_at_end,
        f.cpu_pct_mean,
        f.cpu_pct_max,
        f.deliveries_per_sec_mean,
        f.max_latency_ms,
    );
    println!(
        "verdict: {} (RSS {}, deliveries {})",
        if pass { "PASS" } else { "FAIL" },
        if rss_flat { "flat" } else { "growing" },
        if nothing_lost {
            "complete"
        } else {
            "lost or failed"
        },
    );
    if pass {
        Ok(())
    } else {
        Err("the soak failed (see the verdict)".into())
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

const W: f64 = 900.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const PANEL: f64 = 130.0;
const GAP: f64 = 34.0;

/// A panel of the plot: its label, its colour and the value it draws.
type Panel = (&'static str, &'static str, fn(&Row) -> f64);

/// A round step for about four ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Four panels over time (minutes): RSS (MiB, with the fitted line after warm-up), open files,
/// CPU (% of one core) and deliveries per second. Every y axis starts at 0, so that a flat line
/// looks flat at its true scale.
fn svg(totals: &Totals, f: &Figures, rows: &[Row], pass: bool) -> String {
    let panels: [Panel; 4] = [
        ("hub RSS (MiB)", "#1f77b4", |r| mib(r.rss_kib)),
        ("hub open files", "#2ca02c", |r| r.open_files as f64),
        ("hub CPU (% of one core)", "#d62728", |r| r.cpu_pct),
        ("deliveries / s", "#9467bd", |r| r.deliveries_per_sec),
    ];
    let h = TOP + 4.0 * (PANEL + GAP) + 20.0;
    let t_max = rows.last().map_or(1.0, |r| r.t_secs).max(1.0) / 60.0;
    let px = |minutes: f64| LEFT + minutes / t_max * (W - LEFT - RIGHT);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="DejaVu Sans, sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let title = format!(
        "Soak: {} subscribers, {} updates/s for {} min: {}",
        totals.subscribers,
        totals.rate,
        trim(totals.minutes),
        if pass { "PASS" } else { "FAIL" }
    );
    let subtitle = format!(
        "RSS slope after warm-up {:+.1} KiB/min, band {:.1} MiB; {} of {} deliveries, {} lost",
        f.rss_slope_kib_per_min,
        f.rss_band_mib,
        totals.deliveries,
        totals.expected_deliveries,
        totals.lost
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="22" font-size="15" text-anchor="middle">{title}</text><text x="{:.1}" y="40" font-size="12" fill="#444" text-anchor="middle">{subtitle}</text>"##,
        W / 2.0,
        W / 2.0
    );
    for (p, (label, color, value)) in panels.iter().enumerate() {
        let top = TOP + p as f64 * (PANEL + GAP);
        let bottom = top + PANEL;
        let max = rows.iter().map(value).fold(0.0, f64::max);
        let step = tick_step(max.max(1e-9) * 1.05);
        let y_max = (max * 1.05 / step).ceil().max(1.0) * step;
        let py = |v: f64| bottom - v / y_max * PANEL;
        // Warm-up (shaded) and the end of publishing (a dashed line).
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{PANEL}" fill="#f2f2f2"/>"##,
            px(0.0),
            px(f.window_start_secs / 60.0) - px(0.0)
        );
        let mut v = 0.0;
        while v <= y_max + step / 2.0 {
            let y = py(v);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                trim(v)
            );
            v += step;
        }
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold" fill="{color}">{label}</text>"##,
            top - 6.0
        );
        let x_end = px(totals.publish_end_secs / 60.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{x_end:.1}" y1="{top}" x2="{x_end:.1}" y2="{bottom}" stroke="#999" stroke-dasharray="4,3"/>"##
        );
        let points: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.1},{:.1}", px(r.t_secs / 60.0), py(value(r))))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{}"/>"#,
            points.join(" ")
        );
        if p == 0 {
            // The fitted line over the window, through the window's mean.
            let (x0, x1) = (f.window_start_secs / 60.0, f.window_end_secs / 60.0);
            let xm = (x0 + x1) / 2.0;
            let at = |x: f64| f.rss_mib_window_mean + f.rss_slope_kib_per_min / 1024.0 * (x - xm);
            let _ = writeln!(
                svg,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000" stroke-width="1.5" stroke-dasharray="6,3"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">fit after warm-up: {:+.1} KiB/min</text>"##,
                px(x0),
                py(at(x0)),
                px(x1),
                py(at(x1)),
                W - RIGHT - 4.0,
                bottom - 6.0,
                f.rss_slope_kib_per_min
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL}" fill="none" stroke="#888"/>"##,
            W - LEFT - RIGHT
        );
        let x_step = tick_step(t_max);
        let mut m = 0.0;
        while m <= t_max + 1e-9 {
            let x = px(m);
            let _ = writeln!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                bottom + 14.0,
                trim(m)
            );
            m += x_step;
        }
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">minutes since start (grey: connecting and warm-up; dashed: end of publishing)</text>"##,
        W / 2.0,
        h - 6.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn trim(v: f64) -> String {
    if v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let points: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 1.0)).collect();
        assert!((slope(&points) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 2.0)]), 0.0);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0), 50.0);
        assert_eq!(tick_step(30.0), 10.0);
        assert_eq!(tick_step(7.0), 2.0);
    }
}
