//! `herald-bench plot`: delivery latency by percentile, as an SVG drawn by hand.
//!
//! The x axis is the percentile on a "nines" scale (50%, 90%, 99%, 99.9%, ... equally spaced,
//! i.e. -log10(1 - q)), so the tail is as readable as the median; the y axis is the latency in
//! milliseconds on a log scale. One line per JSON report; Herald blue, nchan orange, Pushpin
//! green.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

#[derive(clap::Args, Debug)]
pub(crate) struct PlotArgs {
    /// JSON reports (from `run --out`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The SVG file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The plot's title.
    #[arg(long, default_value = "Delivery latency by percentile")]
    pub title: String,
}

struct Series {
    label: String,
    color: &'static str,
    dash: &'static str,
    points: Vec<(f64, f64)>,
}

const W: f64 = 820.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 215.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const MAX_NINES: f64 = 5.0;

fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-5).log10()).min(MAX_NINES)
}

pub(crate) fn main(args: PlotArgs) -> Result<(), String> {
    let mut series = Vec::new();
    let mut runs: std::collections::HashMap<String, usize> = Default::default();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let target = value["target"].as_str().unwrap_or("?").to_owned();
        let run = runs.entry(target.clone()).or_default();
        *run += 1;
        let points: Vec<(f64, f64)> = value["latency_cdf"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    // From the first percentile: the fastest deliveries only stretch the axis.
                    .filter(|&(q, ms)| q >= 0.01 && ms > 0.0)
                    .map(|(q, ms)| (nines(q), ms))
                    .collect()
            })
            .unwrap_or_default();
        if points.is_empty() {
            continue;
        }
        let p99 = value
            .pointer("/latency_ms/p99")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        series.push(Series {
            label: format!("{target} {run}: p99 {p99:.0} ms"),
            color: match target.as_str() {
                "herald" => "#1f77b4",
                "nchan" => "#ff7f0e",
                _ => "#2ca02c",
            },
            dash: ["", "6,3", "2,3", "8,3,2,3"][(*run - 1) % 4],
            points,
        });
    }
    if series.is_empty() {
        return Err("no latency data in the reports".into());
    }
    let all = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (ylo, yhi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let px = |n: f64| LEFT + n / MAX_NINES * (W - LEFT - RIGHT);
    let py = |ms: f64| TOP + (yhi - ms.log10()) / (yhi - ylo) * (H - TOP - BOTTOM);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(&args.title)
    );
    for (n, label) in [
        (nines(0.01), "1%"),
        (nines(0.5), "50%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
    ] {
        let x = px(n);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    let mut decade = ylo;
    while decade <= yhi {
        for m in [1.0, 2.0, 5.0] {
            let ms = 10f64.powf(decade) * m;
            if ms.log10() > yhi + 1e-9 {
                break;
            }
            let y = py(ms);
            let stroke = if m == 1.0 { "#ccc" } else { "#eee" };
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                trim(ms)
            );
        }
        decade += 1.0;
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">delivery latency (ms, log scale)</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(n, ms)| format!("{:.1},{:.1}", px(n), py(ms)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" stroke-dasharray="{}" points="{}"/>"#,
            s.color,
            s.dash,
            path.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = W - RIGHT + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 22.0,
            s.color,
            s.dash,
            lx + 26.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    svg.push_str("</svg>\n");
    std::fs::write(&args.out, svg)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn trim(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
