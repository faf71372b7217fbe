//! The cases of the hostile-input suite, by family: tokens, publish fields, selectors, request
//! heads, bodies, connection phases (HTTP/1 and HTTP/2) and floods. Each names what it sends
//! and what the hub must answer; `hostile.rs` runs them, each with its canary.
//!
//! A long file on purpose: it is a table, one entry per attack, read one entry at a time.

use super::*;

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

pub(super) fn publish_all() -> String {
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

pub(super) fn subscribe(query: &str, headers: &str) -> Vec<u8> {
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
            let client = crate::common::http_client_builder().http2_prior_knowledge().build().unwrap();
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
        custom(
            "300 subscriptions at once (429 past --max-subscriptions-per-client)",
            |ctx| async move {
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
                    check(Expect::OneOf(&[200, 429]), &outcome)?;
                    held.push(outcome);
                }
                health(&ctx).await
            },
        ),
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
                let client = crate::common::http_client();
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

/// Every case, in the order the families are listed above.
pub(super) fn all_cases() -> Vec<Case> {
    [
        token_cases(),
        publish_cases(),
        selector_cases(),
        head_cases(),
        body_cases(),
        connection_cases(),
        flood_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
