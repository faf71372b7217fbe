//! The hostile-input suite (issue 13): what an attacker, or a broken client, sends to the real
//! `herald` binary over real TCP.
//!
//! One hub process serves every case. Each case opens a canary subscriber first, does its
//! damage, asserts the answer (a status, or that the hub closes the connection within a
//! deadline), then publishes to the canary's topic and asserts that the canary still receives
//! it: whatever one client sent, the hub keeps serving everybody else.
//!
//! Cases whose answer is immediate run one after the other; cases that wait for a deadline
//! (slow or silent connections) run all at once, so the suite takes seconds, not minutes.
//! Failures are collected and reported together, so one run names every failing case.
//!
//! Requests are written by hand (bytes on a socket), because the point is to send what a
//! well-behaved HTTP client never would.

#[path = "hostile/cases.rs"]
mod cases;
mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cases::{all_cases, publish_all, subscribe};
use common::Herald;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

const KEY: &str = "hostile-suite-publisher-key-0123456789";
const RSA_PRIVATE: &str = include_str!("../../protocol/tests/keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../protocol/tests/keys/rsa_public.pem");
const RSA_PUBLIC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/keys/rsa_public.pem"
);
const HUB: &str = "/.well-known/mercure";
/// The HTTP/2 connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a case whose answer is immediate may take to get it.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a silent or slow connection may stay open when the hub runs with the short
/// timeouts below (1 s head, 2 s body, 1 s HTTP/2 idle), with room for a busy machine.
const CUT: Duration = Duration::from_secs(6);

// ---- what a case expects ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// This status on the first response.
    Status(u16),
    /// One of these statuses.
    OneOf(&'static [u16]),
    /// No response (or a 400, or a 408 after the head timeout) and the connection closed.
    Rejected,
    /// The hub closes the connection within [`CUT`], with or without a response first.
    CutWithin,
}

/// What happened on one raw connection.
#[derive(Debug)]
struct Outcome {
    status: Option<u16>,
    /// Everything read.
    text: String,
    closed: bool,
}

/// Writes `request` in `parts` separated by `pause` and reads until the response head is
/// complete and `until_close` is false, or until the connection closes, or `limit`.
async fn exchange(
    addr: &str,
    parts: &[&[u8]],
    pause: Duration,
    until_close: bool,
    limit: Duration,
) -> Result<Outcome, String> {
    let mut socket = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let deadline = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut closed = false;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // While pausing, notice a close.
            let mut buf = [0u8; 4096];
            match timeout(pause, socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        // The hub may close before reading everything (413 at once): not an error here.
        if socket.write_all(part).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    while !closed {
        let head_done = raw.windows(4).any(|w| w == b"\r\n\r\n");
        if head_done && !until_close {
            break;
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => closed = true,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok());
    Ok(Outcome {
        status,
        text,
        closed,
    })
}

fn check(expect: Expect, outcome: &Outcome) -> Result<(), String> {
    let ok = match expect {
        Expect::Status(code) => outcome.status == Some(code),
        Expect::OneOf(codes) => outcome.status.is_some_and(|s| codes.contains(&s)),
        Expect::Rejected => outcome.closed && matches!(outcome.status, None | Some(400 | 408)),
        Expect::CutWithin => outcome.closed,
    };
    if ok {
        return Ok(());
    }
    let head: String = outcome.text.chars().take(300).collect();
    Err(format!(
        "expected {expect:?}, got status {:?}, closed: {}, response: {head:?}",
        outcome.status, outcome.closed
    ))
}

// ---- the cases --------------------------------------------------------------------------------

type Check = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

enum Probe {
    /// One request, answered at once.
    Raw(Vec<u8>, Expect),
    /// A request sent in parts, `pause` apart, then read until the hub closes it.
    Slow(Vec<Vec<u8>>, Duration, Expect),
    /// Anything else.
    Custom(Box<dyn Fn(Arc<Ctx>) -> Check + Send + Sync>),
}

struct Case {
    name: &'static str,
    probe: Probe,
}

struct Ctx {
    addr: String,
    url: String,
    /// Whether the hub runs with short connection timeouts (flags from the connection-deadline
    /// work); without them, the deadline cases cannot pass within the suite's time.
    short_timeouts: bool,
}

fn raw(name: &'static str, request: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        probe: Probe::Raw(request, expect),
    }
}

fn slow(name: &'static str, parts: Vec<Vec<u8>>, pause: Duration) -> Case {
    Case {
        name,
        probe: Probe::Slow(parts, pause, Expect::CutWithin),
    }
}

fn custom<F, Fut>(name: &'static str, f: F) -> Case
where
    F: Fn(Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Case {
        name,
        probe: Probe::Custom(Box::new(move |ctx| Box::pin(f(ctx)))),
    }
}

async fn health(ctx: &Ctx) -> Result<(), String> {
    let response = reqwest::get(format!("http://{}/healthz", ctx.addr))
        .await
        .map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        200 => Ok(()),
        s => Err(format!("/healthz answered {s}")),
    }
}

async fn read_until(socket: &mut TcpStream, needle: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if String::from_utf8_lossy(&raw).contains(needle) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return Err(format!("{needle:?} not received within {limit:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(format!("stream ended before {needle:?}")),
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether `herald serve` knows `flag` (settings that other branches are adding).
fn serve_supports(flag: &str) -> bool {
    let output = common::herald()
        .args(["serve", "--help"])
        .output()
        .expect("herald binary runs");
    String::from_utf8_lossy(&output.stdout).contains(flag)
}

// ---- running a case with its canary -----------------------------------------------------------

/// Opens the canary subscription of case `n`: the stream is open once this returns.
async fn open_canary(ctx: &Ctx, n: usize) -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(&ctx.addr)
        .await
        .map_err(|e| format!("canary connect: {e}"))?;
    socket
        .write_all(&subscribe(&format!("topic=canary/{n}"), ""))
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut socket, "\r\n\r\n", ANSWER)
        .await
        .map_err(|e| format!("canary did not open: {e}"))?;
    Ok(socket)
}

/// Publishes to the canary's topic and waits for it to arrive.
async fn canary_still_receives(ctx: &Ctx, n: usize, mut canary: TcpStream) -> Result<(), String> {
    let id = format!("canary-{n}");
    let response = crate::common::http_client()
        .post(&ctx.url)
        .bearer_auth(publish_all())
        .form(&[
            ("topic", format!("canary/{n}")),
            ("id", id.clone()),
            ("data", "still here".into()),
        ])
        .send()
        .await
        .map_err(|e| format!("canary publish: {e}"))?;
    if response.status() != 200 {
        return Err(format!("canary publish answered {}", response.status()));
    }
    read_until(&mut canary, &format!("id: {id}"), ANSWER)
        .await
        .map_err(|e| format!("canary: {e}"))
}

async fn run_case(ctx: Arc<Ctx>, n: usize, case: Case) -> Result<(), String> {
    let canary = open_canary(&ctx, n).await?;
    match case.probe {
        Probe::Raw(request, expect) => {
            let outcome = exchange(
                &ctx.addr,
                &[&request],
                Duration::ZERO,
                matches!(expect, Expect::Rejected),
                ANSWER,
            )
            .await?;
            check(expect, &outcome)?;
        }
        Probe::Slow(parts, pause, expect) => {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let limit = CUT + pause * parts.len() as u32;
            let outcome = exchange(&ctx.addr, &parts, pause, true, limit).await?;
            check(expect, &outcome).map_err(|e| match ctx.short_timeouts {
                true => e,
                false => format!("{e} (TODO: needs --header-timeout/--body-timeout/--http2-idle-timeout, from the connection-deadline work)"),
            })?;
        }
        Probe::Custom(f) => f(ctx.clone()).await?,
    }
    canary_still_receives(&ctx, n, canary).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_takes_the_hub_down_for_anyone_else() {
    let timeouts = ["--header-timeout", "--body-timeout", "--http2-idle-timeout"];
    let short_timeouts = timeouts.iter().all(|flag| serve_supports(flag));
    let mut args = vec![
        "--transport",
        "memory",
        "--publisher-jwt-key",
        KEY,
        "--subscriber-jwt-key",
        &*Box::leak(format!("@{RSA_PUBLIC_PATH}").into_boxed_str()),
        "--subscriber-jwt-alg",
        "RS256",
        "--anonymous",
        "--subscriptions",
        "--max-body-size",
        "64KiB",
        "--history-size",
        "2000",
    ];
    if short_timeouts {
        args.extend([
            "--header-timeout",
            "1s",
            "--body-timeout",
            "2s",
            "--http2-idle-timeout",
            "1s",
        ]);
    }
    let mut hub = Herald::start(&args);
    let ctx = Arc::new(Ctx {
        addr: hub.addr.clone(),
        url: hub.url.clone(),
        short_timeouts,
    });

    let (waiting, immediate): (Vec<Case>, Vec<Case>) = all_cases()
        .into_iter()
        .partition(|case| matches!(case.probe, Probe::Slow(..)));
    let total = waiting.len() + immediate.len();
    assert!(total >= 60, "at least 60 cases, got {total}");

    let mut failures = Vec::new();
    // The deadline cases all at once, while the others run one by one.
    let mut waiting_tasks = Vec::new();
    for (i, case) in waiting.into_iter().enumerate() {
        let ctx = ctx.clone();
        let name = case.name;
        waiting_tasks.push((name, tokio::spawn(run_case(ctx, 10_000 + i, case))));
    }
    for (i, case) in immediate.into_iter().enumerate() {
        let name = case.name;
        let started = Instant::now();
        if let Err(e) = run_case(ctx.clone(), i, case).await {
            failures.push(format!("{name}: {e}"));
        }
        if started.elapsed() > Duration::from_secs(1) {
            eprintln!("slow case: {name}: {:?}", started.elapsed());
        }
        assert!(
            hub.child.try_wait().unwrap().is_none(),
            "the hub exited during {name:?}"
        );
    }
    for (name, task) in waiting_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(e) => failures.push(format!("{name}: panicked: {e}")),
        }
    }
    assert!(
        hub.child.try_wait().unwrap().is_none(),
        "the hub is still running"
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
