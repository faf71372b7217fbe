//! `herald-bench hostile-templates`: the worst one anonymous client can do with topic templates
//! (issue 13, failure 1), and what a normal publisher sees meanwhile.
//!
//! Phases, each sampled for the server's CPU seconds and RSS (from /proc):
//! 1. baseline: `--publishes` publishes of new topics, one after the other, with one normal
//!    template subscriber connected; their round-trip latency;
//! 2. `--prefix-requests` concurrent requests of 1,000 selectors `{a:128}/N` each;
//! 3. `--parts-requests` requests of one template of 100 `{/v}` parts each;
//! 4. cheap, distinct templates (`{a}N{b}`: no literal prefix or suffix, so that every new
//!    topic runs every one's matcher) opened `--batch` per subscription until the hub refuses
//!    or `--hold` are alive;
//! 5. the publishes of phase 1 again, with those templates alive;
//! 6. everything closed, RSS two seconds later.
//!
//! Every hostile request is anonymous and sent as is; the report counts the answers by status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ServerArgs;
use crate::http::{self, Conn};
use crate::procfs::{Sample, Server};
use crate::report::Percentiles;
use crate::run::Endpoint;

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct HostileArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Concurrent requests of 1,000 `{a:128}/N` selectors.
    #[arg(long, default_value_t = 4)]
    pub prefix_requests: usize,
    /// Requests of one 100-part `{/v}` template (sent 8 at a time).
    #[arg(long, default_value_t = 500)]
    pub parts_requests: usize,
    /// Most cheap distinct templates kept alive.
    #[arg(long, default_value_t = 10_000)]
    pub hold: usize,
    /// Templates per held subscription.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// New-topic publishes measured before and during the attack.
    #[arg(long, default_value_t = 200)]
    pub publishes: usize,
}

#[derive(Serialize)]
struct Phase {
    name: &'static str,
    secs: f64,
    /// Answers by HTTP status.
    statuses: BTreeMap<u16, usize>,
    /// The first refusal's reason.
    reason: Option<String>,
    cpu_secs: f64,
    rss_mb_after: f64,
}

#[derive(Serialize)]
struct HostileReport {
    scenario: &'static str,
    command: String,
    rss_mb_before: f64,
    phases: Vec<Phase>,
    templates_held: usize,
    publish_ms_baseline: Option<Percentiles>,
    publish_ms_under_attack: Option<Percentiles>,
    rss_mb_after_close: f64,
}

fn mb(sample: &Sample) -> f64 {
    sample.rss_bytes as f64 / 1e6
}

/// One subscribe request; the connection when the hub accepted it (kept open by the caller),
/// the status, and the reason of a refusal.
async fn subscribe(
    endpoint: &Endpoint,
    selectors: &[String],
) -> std::io::Result<(u16, Option<Conn>, Option<String>)> {
    let mut conn = Conn::new(http::connect(endpoint.addr, None).await?, 4096);
    let head = conn
        .request_head(&endpoint.subscribe_request(selectors, None))
        .await?;
    if head.status == 200 {
        return Ok((200, Some(conn), None));
    }
    let body = conn.read_body(&head).await.unwrap_or_default();
    let reason = String::from_utf8_lossy(&body).trim().to_owned();
    Ok((head.status, None, Some(reason)))
}

/// Sends each of `requests` (selector lists) on its own connection, all at once.
async fn subscribe_all(
    endpoint: &Arc<Endpoint>,
    requests: Vec<Vec<String>>,
) -> std::io::Result<Vec<(u16, Option<Conn>, Option<String>)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for selectors in requests {
        let endpoint = endpoint.clone();
        tasks.spawn(async move { subscribe(&endpoint, &selectors).await });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.map_err(std::io::Error::other)??);
    }
    Ok(answers)
}

/// Round-trip times of `count` publishes of new topics, in nanoseconds.
async fn publish_new_topics(endpoint: &Endpoint, run: &str, count: usize) -> Vec<u64> {
    let mut conn = None;
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let topic = format!("https://example.com/normal/{run}/{i}");
        let request = endpoint.publish_request(&topic, "x", None);
        let start = Instant::now();
        match http::exchange(&mut conn, endpoint.addr, &request).await {
            Ok(200) => samples.push(start.elapsed().as_nanos() as u64),
            Ok(status) => eprintln!("publish answered {status}"),
            Err(e) => eprintln!("publish failed: {e}"),
        }
    }
    samples
}

struct Meter<'a> {
    server: &'a Server,
    start: Instant,
    before: Sample,
}

impl Meter<'_> {
    fn start(server: &Server) -> Meter<'_> {
        Meter {
            server,
            start: Instant::now(),
            before: server.sample(),
        }
    }

    fn end(self, name: &'static str, answers: &[(u16, Option<String>)]) -> Phase {
        let after = self.server.sample();
        let mut statuses = BTreeMap::new();
        for (status, _) in answers {
            *statuses.entry(*status).or_default() += 1;
        }
        let phase = Phase {
            name,
            secs: self.start.elapsed().as_secs_f64(),
            statuses,
            reason: answers.iter().find_map(|(_, reason)| reason.clone()),
            cpu_secs: after.cpu_secs - self.before.cpu_secs,
            rss_mb_after: mb(&after),
        };
        eprintln!(
            "{name}: {:.2} s, statuses {:?}, server CPU {:.2} s, RSS {:.0} MB{}",
            phase.secs,
            phase.statuses,
            phase.cpu_secs,
            phase.rss_mb_after,
            phase
                .reason
                .as_deref()
                .map(|r| format!("\n  reason: {r}"))
                .unwrap_or_default()
        );
        phase
    }
}

pub(crate) async fn main(args: HostileArgs) -> Result<(), String> {
    let endpoint = Arc::new(Endpoint::new(&args.server)?);
    if args.server.jwt_key.is_none() {
        return Err("give --jwt-key (or HERALD_JWT_KEY): the normal publisher needs it".into());
    }
    let server = Server::find(&args.server.server_pid, args.server.addr)?;
    let run = format!("{}", crate::now_ns());
    let rss_before = mb(&server.sample());
    let mut phases = Vec::new();
    let mut held: Vec<Conn> = Vec::new();
    let (status, normal, _) = subscribe(&endpoint, &["https://example.com/normal/{a}/{b}".into()])
        .await
        .map_err(|e| format!("normal subscriber: {e}"))?;
    if status != 200 {
        return Err(format!("the normal subscriber was refused with {status}"));
    }
    held.extend(normal);

    let meter = Meter::start(&server);
    let baseline = publish_new_topics(&endpoint, &format!("{run}-a"), args.publishes).await;
    phases.push(meter.end("baseline publishes", &[]));

    let meter = Meter::start(&server);
    let prefix: Vec<String> = (0..1000).map(|i| format!("{{a:128}}/{i}")).collect();
    let mut answers = Vec::new();
    let results = subscribe_all(&endpoint, vec![prefix; args.prefix_requests])
        .await
        .map_err(|e| format!("prefix request: {e}"))?;
    for (status, conn, reason) in results {
        held.extend(conn);
        answers.push((status, reason));
    }
    phases.push(meter.end("1,000 x {a:128}/N per request", &answers));

    let meter = Meter::start(&server);
    let parts: String = (0..100).map(|_| "{/v}").collect();
    let mut answers = Vec::new();
    for chunk in (0..args.parts_requests).collect::<Vec<_>>().chunks(8) {
        // Distinct texts, so that nothing is shared: `{/v}...{/v}` then a number.
        let requests = chunk.iter().map(|i| vec![format!("{parts}{i}")]).collect();
        let results = subscribe_all(&endpoint, requests)
            .await
            .map_err(|e| format!("parts request: {e}"))?;
        for (status, conn, reason) in results {
            held.extend(conn);
            answers.push((status, reason));
        }
    }
    phases.push(meter.end("100 x {/v} per template", &answers));

    let meter = Meter::start(&server);
    let mut answers = Vec::new();
    let mut templates_held = 0;
    while templates_held < args.hold {
        let n = args.batch.min(args.hold - templates_held);
        let selectors: Vec<String> = (templates_held..templates_held + n)
            .map(|i| format!("{{a}}{i}{{b}}"))
            .collect();
        let (status, conn, reason) = subscribe(&endpoint, &selectors)
            .await
            .map_err(|e| format!("cheap templates: {e}"))?;
        answers.push((status, reason));
        match conn {
            Some(conn) => {
                held.push(conn);
                templates_held += n;
            }
            None => break,
        }
    }
    phases.push(meter.end("cheap distinct templates held", &answers));

    let meter = Meter::start(&server);
    let attacked = publish_new_topics(&endpoint, &format!("{run}-b"), args.publishes).await;
    phases.push(meter.end("publishes with the templates held", &[]));

    drop(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = HostileReport {
        scenario: "hostile-templates",
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rss_mb_before: rss_before,
        phases,
        templates_held,
        publish_ms_baseline: Percentiles::of(&baseline),
        publish_ms_under_attack: Percentiles::of(&attacked),
        rss_mb_after_close: mb(&server.sample()),
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if let Some(path) = &args.server.out {
        std::fs::write(path, &json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}
