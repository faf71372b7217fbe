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

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

// ---- tokens -----------------------------------------------------------------------------------

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn hs(alg: Algorithm, key: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
}

/// A valid publisher token (HS256, the hub's publisher key) with `claims`.
fn publisher(claims: Value) -> String {
    hs(Algorithm::HS256, KEY.as_bytes(), claims)
}

fn publish_all() -> String {
    publisher(json!({"mercure": {"publish": ["*"]}}))
}

/// A valid subscriber token (RS256, the hub's subscriber key).
fn subscriber(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned token: `alg: none`.
fn alg_none(claims: Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

// ---- requests, written by hand ---------------------------------------------------------------

fn publish_request(token: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {HUB} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn form(token: &str, body: &str) -> Vec<u8> {
    publish_request(token, "application/x-www-form-urlencoded", body.as_bytes())
}

/// A valid publish with extra fields appended to `topic=hostile&data=x`.
fn publish_with(fields: &str) -> Vec<u8> {
    form(&publish_all(), &format!("topic=hostile&data=x{fields}"))
}

fn subscribe(query: &str, headers: &str) -> Vec<u8> {
    format!("GET {HUB}?{query} HTTP/1.1\r\nHost: hub\r\n{headers}\r\n").into_bytes()
}

fn subscribe_with_token(token: &str) -> Vec<u8> {
    subscribe("topic=*", &format!("Authorization: Bearer {token}\r\n"))
}

fn topics(n: usize, selector: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| format!("topic={}", enc(&selector(i))))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

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

fn token_cases() -> Vec<Case> {
    use Expect::Status;
    let publish_claim = json!({"mercure": {"publish": ["*"]}});
    let with = |extra: Value| {
        let mut claims = publish_claim.clone();
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let body = "topic=hostile&data=x";
    vec![
        raw(
            "publish without a token",
            {
                let mut r = form("x", body);
                let text = String::from_utf8(r.clone())
                    .unwrap()
                    .replace("Authorization: Bearer x\r\n", "");
                r = text.into_bytes();
                r
            },
            Status(401),
        ),
        raw(
            "token alg none",
            form(&alg_none(publish_claim.clone()), body),
            Status(401),
        ),
        raw(
            "token alg none, no signature part",
            form(alg_none(publish_claim.clone()).trim_end_matches('.'), body),
            Status(401),
        ),
        raw(
            "token signed with the wrong key",
            form(
                &hs(
                    Algorithm::HS256,
                    b"not the hub's key at all",
                    publish_claim.clone(),
                ),
                body,
            ),
            Status(401),
        ),
        raw(
            "token HS384 for an HS256 key",
            form(
                &hs(Algorithm::HS384, KEY.as_bytes(), publish_claim.clone()),
                body,
            ),
            Status(401),
        ),
        raw(
            "token expired",
            form(&publisher(with(json!({"exp": now() - 10}))), body),
            Status(401),
        ),
        raw(
            "token nbf in the future",
            form(&publisher(with(json!({"nbf": now() + 3600}))), body),
            Status(401),
        ),
        raw(
            "token exp = i64::MAX (publish)",
            form(&publisher(with(json!({"exp": i64::MAX}))), body),
            Status(200),
        ),
        raw(
            "token exp = u64::MAX",
            form(&publisher(with(json!({"exp": u64::MAX}))), body),
            Status(200),
        ),
        // Past any date the hub can represent: refused rather than rounded.
        raw(
            "token exp = 1e300",
            form(&publisher(with(json!({"exp": 1e300}))), body),
            Status(401),
        ),
        raw(
            "token exp negative",
            form(&publisher(with(json!({"exp": -1}))), body),
            Status(401),
        ),
        raw(
            "token exp a string",
            form(&publisher(with(json!({"exp": "tomorrow"}))), body),
            Status(401),
        ),
        raw(
            "token mercure claim of the wrong type",
            form(&publisher(json!({"mercure": "everything"})), body),
            Status(401),
        ),
        raw(
            "token without the publish right",
            form(&publisher(json!({"mercure": {"subscribe": ["*"]}})), body),
            Status(403),
        ),
        raw(
            "token 200 KB long",
            form(
                &publisher(with(json!({"padding": "p".repeat(200_000)}))),
                body,
            ),
            Status(200),
        ),
        raw(
            "token bad base64",
            form("eyJhbGciOiJIUzI1NiJ9.%%%%.****", body),
            Status(401),
        ),
        raw("token of dots only", form("..", body), Status(401)),
        raw(
            "token with four parts",
            form(&format!("{}.x", publish_all()), body),
            Status(401),
        ),
        raw(
            "token with a mangled signature",
            form(&format!("{}A", publish_all()), body),
            Status(401),
        ),
        raw(
            "authorization Basic",
            {
                let text = String::from_utf8(form("x", body))
                    .unwrap()
                    .replace("Bearer x", "Basic dXNlcjpwYXNz");
                text.into_bytes()
            },
            Status(401),
        ),
        raw(
            "authorization Bearer with nothing after it",
            form("", body),
            Status(401),
        ),
        raw(
            "subscriber token exp = i64::MAX (the lifetime overflow)",
            subscribe_with_token(&subscriber(
                json!({"mercure": {"subscribe": ["*"]}, "exp": i64::MAX}),
            )),
            Status(200),
        ),
        raw(
            "subscriber HS256 token signed with the RS256 public key (confusion)",
            subscribe_with_token(&hs(
                Algorithm::HS256,
                RSA_PUBLIC.as_bytes(),
                json!({"mercure": {"subscribe": ["*"]}}),
            )),
            Status(401),
        ),
        raw(
            "subscriber token alg none (anonymous allowed, still 401)",
            subscribe_with_token(&alg_none(json!({"mercure": {"subscribe": ["*"]}}))),
            Status(401),
        ),
        raw(
            "subscriber token in a garbage cookie",
            subscribe("topic=*", "Cookie: mercureAuthorization=garbage\r\n"),
            Status(401),
        ),
        raw(
            "subscriber token with a jku header pointing elsewhere",
            subscribe_with_token(&{
                let mut header = Header::new(Algorithm::RS256);
                header.jku = Some("http://192.0.2.1/keys".into());
                jsonwebtoken::encode(
                    &header,
                    &json!({"mercure": {"subscribe": ["*"]}}),
                    &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
                )
                .unwrap()
            }),
            Status(200),
        ),
    ]
}

fn publish_cases() -> Vec<Case> {
    use Expect::Status;
    let token = publish_all();
    vec![
        raw(
            "publish data of 60 KB (under --max-body-size)",
            publish_with(&format!("&data={}", "d".repeat(60_000))),
            Status(200),
        ),
        raw(
            "publish body over --max-body-size",
            publish_with(&format!("&data={}", "d".repeat(70_000))),
            Status(413),
        ),
        raw(
            "publish 1000 topics",
            form(
                &token,
                &format!("{}&data=x", topics(1000, |i| format!("t/{i}"))),
            ),
            Status(200),
        ),
        raw(
            "publish 1001 topics",
            form(
                &token,
                &format!("{}&data=x", topics(1001, |i| format!("t/{i}"))),
            ),
            Status(400),
        ),
        raw(
            "publish CR/LF in id",
            publish_with("&id=a%0D%0Adata:%20injected"),
            Status(400),
        ),
        raw(
            "publish LF in type",
            publish_with("&type=a%0Aid:%20forged"),
            Status(400),
        ),
        raw("publish NUL in id", publish_with("&id=a%00b"), Status(400)),
        raw(
            "publish CR/LF in data (split into data lines)",
            publish_with("%0D%0A%0D%0Aid:%20forged%0D%0A%0D%0A"),
            Status(200),
        ),
        raw(
            "publish retry not a number",
            publish_with("&retry=soon"),
            Status(400),
        ),
        raw(
            "publish retry negative",
            publish_with("&retry=-5"),
            Status(400),
        ),
        raw(
            "publish retry over u64",
            publish_with("&retry=99999999999999999999999"),
            Status(400),
        ),
        raw(
            "publish id earliest (reserved)",
            publish_with("&id=earliest"),
            Status(400),
        ),
        raw(
            "publish id starting with #",
            publish_with("&id=%23x"),
            Status(400),
        ),
        raw(
            "publish empty topic",
            form(&token, "topic=&data=x"),
            Status(400),
        ),
        raw("publish no topic", form(&token, "data=x"), Status(400)),
        raw(
            "publish duplicate fields (the last wins)",
            publish_with("&id=one&id=two&data=y&type=a&type=b"),
            Status(200),
        ),
        raw(
            "publish percent-encoded invalid UTF-8",
            publish_with("&data=%FF%FE"),
            Status(400),
        ),
        raw(
            "publish raw invalid UTF-8",
            {
                let mut body = b"topic=hostile&data=".to_vec();
                body.extend_from_slice(&[0xC3, 0x28, 0xFF]);
                publish_request(&token, "application/x-www-form-urlencoded", &body)
            },
            Status(400),
        ),
        raw(
            "publish with content type text/plain",
            publish_request(&token, "text/plain", b"topic=hostile"),
            Status(415),
        ),
        raw(
            "publish with content type multipart",
            publish_request(&token, "multipart/form-data; boundary=x", b"--x--"),
            Status(415),
        ),
        raw(
            "publish malformed JSON",
            publish_request(&token, "application/json", b"{\"topic\":"),
            Status(400),
        ),
        raw(
            "publish JSON topic of the wrong type",
            publish_request(&token, "application/json", br#"{"topic": 5}"#),
            Status(400),
        ),
        raw(
            "publish JSON nested 10,000 deep",
            publish_request(
                &token,
                "application/json",
                format!(
                    "{{\"topic\":\"t\",\"data\":{}{}}}",
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                )
                .as_bytes(),
            ),
            Status(400),
        ),
        raw(
            "publish to the hub's own namespace",
            form(
                &token,
                "topic=%2F.well-known%2Fmercure%2Fsubscriptions%2Fx%2Fy&data=x",
            ),
            Status(403),
        ),
    ]
}

fn selector_cases() -> Vec<Case> {
    use Expect::{OneOf, Status};
    const REFUSED: &[u16] = &[400, 413, 414, 429, 503];
    vec![
        raw(
            "subscribe without topic",
            subscribe("lastEventID=x", ""),
            Status(400),
        ),
        raw(
            "subscribe with an empty topic",
            subscribe("topic=", ""),
            Status(400),
        ),
        raw(
            "subscribe with 1000 topics",
            subscribe(&topics(1000, |i| format!("t/{i}")), ""),
            Status(200),
        ),
        raw(
            "subscribe with 1001 topics",
            subscribe(&topics(1001, |i| format!("t/{i}")), ""),
            Status(400),
        ),
        raw(
            "subscribe with one 50 KB selector",
            subscribe(&format!("topic={}", "s".repeat(50_000)), ""),
            Status(200),
        ),
        raw(
            "subscribe with invalid UTF-8",
            subscribe("topic=%FF", ""),
            Status(400),
        ),
        raw(
            "subscribe with a 50 KB lastEventID",
            subscribe(&format!("topic=a&lastEventID={}", "i".repeat(50_000)), ""),
            Status(200),
        ),
        raw(
            "subscribe with a Last-Event-ID header that is not text",
            {
                let mut r = b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\nLast-Event-ID: \xFF\xFE\r\n\r\n".to_vec();
                r.shrink_to_fit();
                r
            },
            OneOf(&[200, 400]),
        ),
        raw(
            "subscribe with an unclosed template",
            subscribe(&format!("topic={}", enc("https://e/{unclosed")), ""),
            Status(200),
        ),
        raw(
            "subscribe with a template of prefix 9999",
            subscribe(&format!("topic={}", enc("https://e/{a:9999}")), ""),
            Status(200),
        ),
        raw(
            "subscribe with 1000 costly templates {a:128}/N",
            subscribe(&topics(1000, |i| format!("{{a:128}}/{i}")), ""),
            OneOf(REFUSED),
        ),
        raw(
            "subscribe with a template of 100 {/v} parts",
            subscribe(&topics(1, |_| "{/v}".repeat(100)), ""),
            OneOf(&[200, 400, 413, 414, 429, 503]),
        ),
        raw(
            "subscribe with 200 templates of 50 {/v,w} parts",
            subscribe(&topics(200, |i| format!("{}/{i}", "{/v,w}".repeat(50))), ""),
            OneOf(REFUSED),
        ),
    ]
}

fn head_cases() -> Vec<Case> {
    use Expect::{OneOf, Rejected, Status};
    let token = publish_all();
    vec![
        raw(
            "subscribe head with bare LF line endings",
            b"GET /.well-known/mercure?topic=a HTTP/1.1\nHost: hub\n\n".to_vec(),
            Status(200),
        ),
        raw(
            "publish head with bare LF line endings",
            {
                let body = "topic=hostile&data=x";
                format!("POST {HUB} HTTP/1.1\nHost: hub\nAuthorization: Bearer {token}\nContent-Type: application/x-www-form-urlencoded\nContent-Length: {}\nConnection: close\n\n{body}", body.len()).into_bytes()
            },
            Status(200),
        ),
        raw(
            "subscribe URI of 100 KB",
            subscribe(&format!("topic={}", "u".repeat(100_000)), ""),
            Status(414),
        ),
        raw(
            "publish URI of 100 KB",
            {
                let text = String::from_utf8(form(&token, "topic=hostile&data=x")).unwrap();
                text.replacen(HUB, &format!("{HUB}?pad={}", "u".repeat(100_000)), 1)
                    .into_bytes()
            },
            Status(414),
        ),
        raw(
            "subscribe head of 600 KB of headers",
            subscribe("topic=a", &format!("X-Pad: {}\r\n", "h".repeat(600_000))),
            Status(431),
        ),
        raw(
            "publish head of 600 KB of headers",
            {
                let text = String::from_utf8(form(&token, "topic=hostile&data=x")).unwrap();
                text.replacen(
                    "Host: hub\r\n",
                    &format!("Host: hub\r\nX-Pad: {}\r\n", "h".repeat(600_000)),
                    1,
                )
                .into_bytes()
            },
            Status(431),
        ),
        raw(
            "subscribe with 500 headers",
            subscribe(
                "topic=a",
                &(0..500)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>(),
            ),
            Status(431),
        ),
        raw(
            "request smuggling: Content-Length and Transfer-Encoding",
            {
                let smuggled = format!(
                    "0\r\n\r\nPOST {HUB} HTTP/1.1\r\nHost: hub\r\nContent-Length: 5\r\n\r\nxxxxx"
                );
                format!("POST {HUB} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}").into_bytes()
            },
            OneOf(&[400]),
        ),
        raw(
            "two different Content-Length headers",
            {
                format!("POST {HUB} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\nContent-Length: 5\r\n\r\ntopic=hostile&data=x").into_bytes()
            },
            Status(400),
        ),
        raw(
            "invalid chunk size",
            {
                format!("POST {HUB} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n").into_bytes()
            },
            Status(400),
        ),
        raw(
            "method PUT",
            format!("PUT {HUB} HTTP/1.1\r\nHost: hub\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            Status(405),
        ),
        raw(
            "method made up",
            format!("BREW {HUB} HTTP/1.1\r\nHost: hub\r\n\r\n").into_bytes(),
            Status(405),
        ),
        raw(
            "method with invalid characters",
            format!("G(T {HUB} HTTP/1.1\r\nHost: hub\r\n\r\n").into_bytes(),
            Rejected,
        ),
        raw(
            "HTTP/0.9 request",
            format!("GET {HUB}?topic=a\r\n").into_bytes(),
            Rejected,
        ),
        raw(
            "HTTP/1.0 subscription",
            format!("GET {HUB}?topic=a HTTP/1.0\r\n\r\n").into_bytes(),
            Status(200),
        ),
        raw(
            "HTTP/2.0 in an HTTP/1 request line",
            format!("GET {HUB}?topic=a HTTP/2.0\r\nHost: hub\r\n\r\n").into_bytes(),
            OneOf(&[400, 505]),
        ),
        raw(
            "HTTP/1.1 without a Host header",
            format!("GET {HUB}?topic=a HTTP/1.1\r\n\r\n").into_bytes(),
            OneOf(&[200, 400]),
        ),
        raw(
            "absolute-form request target",
            format!("GET http://elsewhere.example{HUB}?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n")
                .into_bytes(),
            OneOf(&[200, 400]),
        ),
        raw(
            "NUL in a header value",
            subscribe("topic=a", "X-Bad: a\0b\r\n"),
            Rejected,
        ),
        raw(
            "obsolete header folding",
            subscribe("topic=a", "X-Folded: a\r\n  b\r\n"),
            OneOf(&[200, 400]),
        ),
        raw(
            "space before the header colon",
            subscribe("topic=a", "X-Bad : v\r\n"),
            Rejected,
        ),
        raw(
            "garbage bytes",
            b"\x00\x01\x02\xFF\xFEgarbage\r\n\r\n".to_vec(),
            Rejected,
        ),
        raw(
            "a TLS ClientHello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            Rejected,
        ),
    ]
}

fn body_cases() -> Vec<Case> {
    use Expect::Status;
    let token = publish_all();
    let head = |length: &str| {
        format!("POST {HUB} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n").into_bytes()
    };
    vec![
        // No body is sent: the answer must come from the declared length alone.
        raw(
            "Content-Length: 999999999999 answered at once",
            head("999999999999"),
            Status(413),
        ),
        raw(
            "Content-Length over u64",
            head("99999999999999999999999"),
            Status(400),
        ),
        raw("Content-Length negative", head("-1"), Status(400)),
        raw(
            "chunked body over --max-body-size",
            {
                let mut r = format!("POST {HUB} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
                for _ in 0..20 {
                    r.extend_from_slice(format!("1000\r\n{}\r\n", "c".repeat(4096)).as_bytes());
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            },
            Status(413),
        ),
        slow(
            "lying Content-Length (10 of 100 bytes, then silence)",
            vec![head("100"), b"topic=host".to_vec()],
            Duration::from_millis(100),
        ),
        slow(
            "slow body, one byte every 400 ms",
            {
                let mut parts = vec![head("40")];
                parts.extend(
                    b"topic=hostile&data=slowly-slowly-slowly"
                        .iter()
                        .map(|&b| vec![b]),
                );
                parts
            },
            Duration::from_millis(400),
        ),
    ]
}

fn connection_cases() -> Vec<Case> {
    vec![
        slow("connect and send nothing", vec![], Duration::ZERO),
        slow("send one byte", vec![b"G".to_vec()], Duration::ZERO),
        slow("a partial request head, then silence", vec![b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\n".to_vec()], Duration::ZERO),
        slow("a request head one byte every 300 ms (slowloris)", b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: hub\r\nX-Slow: 0123456789012345678901234567890123456789\r\n\r\n".iter().map(|&b| vec![b]).collect(), Duration::from_millis(300)),
        slow("HTTP/2 preface first byte P only", vec![b"P".to_vec()], Duration::ZERO),
        slow("HTTP/2 preface only", vec![PREFACE.to_vec()], Duration::ZERO),
        slow("HTTP/2 preface and SETTINGS, then silence", vec![[PREFACE, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"].concat()], Duration::ZERO),
        slow("HTTP/2 garbage after the preface", vec![[PREFACE, b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF garbage"].concat()], Duration::ZERO),
        slow("HTTP/2 HEADERS with an invalid HPACK block", vec![[PREFACE, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", b"\x00\x00\x04\x01\x05\x00\x00\x00\x01\xFF\xFF\xFF\xFF"].concat()], Duration::ZERO),
        custom("connect and close at once, 200 times", |ctx| async move {
            for _ in 0..200 {
                drop(TcpStream::connect(&ctx.addr).await.map_err(|e| e.to_string())?);
            }
            Ok(())
        }),
        custom("a valid HTTP/2 subscription (prior knowledge)", |ctx| async move {
            let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
            let response = client.get(format!("{}?topic=a", ctx.url)).send().await.map_err(|e| e.to_string())?;
            match response.status().as_u16() {
                200 => Ok(()),
                s => Err(format!("expected 200, got {s}")),
            }
        }),
    ]
}

fn flood_cases() -> Vec<Case> {
    vec![
        custom("400 idle connections at once", |ctx| async move {
            let mut sockets = Vec::new();
            for _ in 0..400 {
                sockets.push(
                    TcpStream::connect(&ctx.addr)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            // Meanwhile the hub answers others.
            health(&ctx).await?;
            drop(sockets);
            Ok(())
        }),
        custom("300 subscriptions at once", |ctx| async move {
            let mut streams = Vec::new();
            for i in 0..300 {
                let request = subscribe(&format!("topic=flood/{i}"), "");
                let addr = ctx.addr.clone();
                streams.push(tokio::spawn(async move {
                    exchange(&addr, &[&request], Duration::ZERO, false, ANSWER).await
                }));
            }
            let mut held = Vec::new();
            for stream in streams {
                let outcome = stream.await.unwrap()?;
                check(Expect::Status(200), &outcome)?;
                held.push(outcome);
            }
            health(&ctx).await
        }),
        custom("100 publishes at once", |ctx| async move {
            let mut publishes = Vec::new();
            for i in 0..100 {
                let request = form(&publish_all(), &format!("topic=flood/{i}&data=x"));
                let addr = ctx.addr.clone();
                publishes.push(tokio::spawn(async move {
                    exchange(&addr, &[&request], Duration::ZERO, false, ANSWER).await
                }));
            }
            for publish in publishes {
                check(Expect::Status(200), &publish.await.unwrap()?)?;
            }
            Ok(())
        }),
        custom(
            "subscription events do not flush history (3 subscriptions of 1000 topics)",
            |ctx| async move {
                let marker = format!("marker-{}", now());
                let client = reqwest::Client::new();
                let published = client
                    .post(&ctx.url)
                    .bearer_auth(publish_all())
                    .form(&[("topic", "history/marker"), ("id", &marker), ("data", "m")])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if published.status() != 200 {
                    return Err(format!("marker publish: {}", published.status()));
                }
                for round in 0..3 {
                    let request = subscribe(&topics(1000, |i| format!("flush/{round}/{i}")), "");
                    let outcome =
                        exchange(&ctx.addr, &[&request], Duration::ZERO, false, ANSWER).await?;
                    check(Expect::Status(200), &outcome)?;
                }
                // The marker must still be in history (it is one of the last 2,000 real updates).
                let request = subscribe("topic=history/marker&lastEventID=earliest", "");
                let mut socket = TcpStream::connect(&ctx.addr)
                    .await
                    .map_err(|e| e.to_string())?;
                socket
                    .write_all(&request)
                    .await
                    .map_err(|e| e.to_string())?;
                read_until(
                    &mut socket,
                    &format!("id: {marker}"),
                    Duration::from_secs(5),
                )
                .await
                .map_err(|e| {
                    format!("the marker was flushed from history by subscription events: {e}")
                })
            },
        ),
    ]
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
    let response = reqwest::Client::new()
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

    let immediate: Vec<Case> = [
        token_cases(),
        publish_cases(),
        selector_cases(),
        head_cases(),
        body_cases(),
        flood_cases(),
    ]
    .into_iter()
    .flatten()
    .chain(connection_cases())
    .collect();
    let (waiting, immediate): (Vec<Case>, Vec<Case>) = immediate
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
