//! The request head of a subscription, read and judged as hyper's server judges it.
//!
//! [`HeadBuffer`] reads until a verdict, parsing on the first read and whenever new bytes may
//! end the head (a blank line after CRLF or bare LF line endings), with hyper's limits: head
//! size (512 KiB, 431), request target (64 KiB, 414), header count (100, 431) and the request
//! line's checks (400). A head that httparse accepts but hyper would judge further (body
//! framing headers, header values `http` refuses) is handed to hyper. The property tests below
//! hold the verdicts to httparse's on arbitrary and mutated heads.

use axum::body::Body;
use bytes::{BufMut, Bytes};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest request head accepted, here and by hyper (server/connection.rs sets its buffer
/// limit to this): a subscription with the maximum of 1000 long topic selectors fits. 431 above.
pub(crate) const MAX_HEAD_BYTES: usize = 512 * 1024;

/// The longest request target, as hyper and `http::Uri` allow; 414 above.
const MAX_URI_BYTES: usize = (u16::MAX - 1) as usize;

/// The most header lines in a request head (hyper's limit too); 431 above.
const MAX_HEADERS: usize = 100;

/// What becomes of a request head.
// Short-lived, moved once: boxing the request would cost an allocation per subscription.
#[allow(clippy::large_enum_variant)]
pub(super) enum Verdict {
    /// A request this path serves.
    Serve(Request<Body>),
    /// Refused, with the status hyper gives the same bytes, and a reason.
    Reject(BadRequest),
    /// Valid for httparse, but hyper has more to say (body framing headers, header values
    /// `http` refuses): hyper serves it, so that both paths answer alike.
    HandOff,
}

/// A request that could not be read: the status and the reason to answer with.
pub(super) struct BadRequest(pub(super) StatusCode, pub(super) &'static str);

/// The bytes of a request head as they arrive, and when to parse them: as hyper does, on the
/// first read and then whenever the new bytes may end the head. The same verdict as hyper's
/// therefore comes at the same point, whatever the line endings (`\r\n` or a bare `\n`).
#[derive(Default)]
pub(super) struct HeadBuffer {
    pub(super) bytes: Vec<u8>,
    pub(super) parsed: bool,
}

impl HeadBuffer {
    /// Reads until a verdict; `None` if the connection closed or failed first.
    pub(super) async fn read<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> Option<Verdict> {
        // Bytes read before (the start of a TLS stream) are judged first.
        if !self.bytes.is_empty()
            && let Some(verdict) = self.verdict_after(0)
        {
            return Some(verdict);
        }
        loop {
            if self.bytes.len() >= MAX_HEAD_BYTES {
                return Some(Verdict::Reject(BadRequest(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request head too large",
                )));
            }
            let start = self.bytes.len();
            self.bytes.reserve(4096.min(MAX_HEAD_BYTES - start));
            // Never past the limit, so that a verdict depends on the first MAX_HEAD_BYTES only.
            let room = MAX_HEAD_BYTES - start;
            match stream.read_buf(&mut (&mut self.bytes).limit(room)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if let Some(verdict) = self.verdict_after(start) {
                return Some(verdict);
            }
        }
    }

    /// The verdict once bytes from `start` on have arrived, `None` while more are needed.
    fn verdict_after(&mut self, start: usize) -> Option<Verdict> {
        if self.parsed && !may_end_head(&self.bytes, start) {
            return None;
        }
        self.parsed = true;
        // Parsed from shared bytes, so that the request's target and header values are slices
        // of the head, not copies of their own. Whatever is not served keeps its bytes: more
        // may come, or hyper reads them.
        let head = Bytes::from(std::mem::take(&mut self.bytes));
        let verdict = parse(&head);
        if !matches!(verdict, Some(Verdict::Serve(_))) {
            self.bytes = Vec::from(head);
        }
        verdict
    }
}

/// Whether the bytes from `start` on (with the three before) hold the blank line that ends a
/// head: `\r\n\r\n`, `\n\n` or `\n\r\n`. hyper's `is_complete_fast`.
fn may_end_head(bytes: &[u8], start: usize) -> bool {
    let bytes = &bytes[start.saturating_sub(3)..];
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'\n' && (bytes[i + 1..].starts_with(b"\n") || bytes[i + 1..].starts_with(b"\r\n"))
    })
}

/// Parses a head the way hyper's server does (httparse with the same header limit, then the
/// request line's checks); `None` if it is not complete yet.
fn parse(head: &Bytes) -> Option<Verdict> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let reject = |status, reason| Some(Verdict::Reject(BadRequest(status, reason)));
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return reject(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header lines",
            );
        }
        Err(_) => return reject(StatusCode::BAD_REQUEST, "malformed request head"),
    }
    let (Some(method), Some(path), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return reject(StatusCode::BAD_REQUEST, "malformed request head");
    };
    if path.len() > MAX_URI_BYTES {
        return reject(StatusCode::URI_TOO_LONG, "request target too long");
    }
    let uri = Uri::from_maybe_shared(head.slice_ref(path.as_bytes()));
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), uri) else {
        return reject(StatusCode::BAD_REQUEST, "malformed request target");
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = match version {
        1 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let map = request.headers_mut();
    map.reserve(parsed.headers.len());
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Some(Verdict::HandOff);
        };
        // A subscription has no body: framing headers (and the errors hyper finds in them)
        // are hyper's business.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return Some(Verdict::HandOff);
        }
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice_ref(h.value)) else {
            return Some(Verdict::HandOff);
        };
        map.append(name, value);
    }
    Some(Verdict::Serve(request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_subscription_head() {
        let Some(Verdict::Serve(request)) = parse(&Bytes::from_static(
            b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
        )) else {
            panic!("not served");
        };
        assert_eq!(request.uri().query(), Some("topic=a"));
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(
            describe(&parse(&Bytes::from_static(b"GET nonsense\r\n\r\n"))),
            "reject 400"
        );
    }

    #[test]
    fn bare_lf_ends_a_head_as_crlf_does() {
        let head = b"GET /.well-known/mercure?topic=a HTTP/1.1\nHost: x\n\n";
        assert!(may_end_head(head, head.len() - 1));
        assert!(matches!(
            parse(&Bytes::from_static(head)),
            Some(Verdict::Serve(_))
        ));
        assert!(may_end_head(b"Host: x\n\r\n", 9));
        assert!(!may_end_head(b"Host: x\r\nA", 0));
    }

    #[test]
    fn a_long_target_is_414_and_body_framing_goes_to_hyper() {
        let long = format!("GET /?{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_BYTES));
        assert_eq!(describe(&parse(&Bytes::from(long))), "reject 414");
        let framed = b"GET /.well-known/mercure HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(describe(&parse(&Bytes::from_static(framed))), "hand off");
    }

    /// A verdict in words, to compare verdicts and show them when they differ.
    fn describe(verdict: &Option<Verdict>) -> String {
        match verdict {
            None => "need more".into(),
            Some(Verdict::Serve(r)) => format!(
                "serve {} {} {:?} {:?}",
                r.method(),
                r.uri(),
                r.version(),
                r.headers()
            ),
            Some(Verdict::Reject(BadRequest(status, _))) => format!("reject {}", status.as_u16()),
            Some(Verdict::HandOff) => "hand off".into(),
        }
    }

    /// Checks the subscription path's verdict on a whole buffer against httparse's on the same
    /// bytes, read the way hyper's server reads them (role.rs, `Server::parse`).
    fn agrees_with_httparse(bytes: &[u8]) {
        let ours = parse(&Bytes::copy_from_slice(bytes));
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut theirs = httparse::Request::new(&mut headers);
        let status = theirs.parse(bytes);
        let verdict = describe(&ours);
        match (status, ours) {
            (Ok(httparse::Status::Partial), None) => {}
            (Err(httparse::Error::TooManyHeaders), Some(Verdict::Reject(BadRequest(s, _)))) => {
                assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            (Err(_), Some(Verdict::Reject(BadRequest(s, _)))) => {
                assert_eq!(s, StatusCode::BAD_REQUEST)
            }
            (Ok(httparse::Status::Complete(_)), Some(ours)) => {
                let method = theirs.method.unwrap();
                let path = theirs.path.unwrap();
                let valid =
                    Method::from_bytes(method.as_bytes()).is_ok() && path.parse::<Uri>().is_ok();
                match ours {
                    Verdict::Reject(BadRequest(s, _)) if s == StatusCode::URI_TOO_LONG => {
                        assert!(path.len() > MAX_URI_BYTES)
                    }
                    Verdict::Reject(BadRequest(s, _)) => {
                        assert_eq!(s, StatusCode::BAD_REQUEST);
                        assert!(path.len() <= MAX_URI_BYTES && !valid);
                    }
                    Verdict::HandOff => assert!(theirs.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("content-length")
                            || h.name.eq_ignore_ascii_case("transfer-encoding")
                            || HeaderValue::from_bytes(h.value).is_err()
                    })),
                    Verdict::Serve(request) => {
                        assert!(valid);
                        assert!(!request.headers().contains_key(header::CONTENT_LENGTH));
                        assert!(!request.headers().contains_key(header::TRANSFER_ENCODING));
                        assert_eq!(request.method().as_str(), method);
                        // What hyper would make of the same target: `http::Uri` normalizes it
                        // (drops a fragment, completes an authority form with `/`).
                        let target = path
                            .parse::<http::Uri>()
                            .map_or_else(|_| path.to_string(), |uri| uri.to_string());
                        assert_eq!(request.uri().to_string(), target);
                        let version = match theirs.version {
                            Some(1) => Version::HTTP_11,
                            _ => Version::HTTP_10,
                        };
                        assert_eq!(request.version(), version);
                        let ours: Vec<_> = request
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect();
                        let mut expected: Vec<_> = theirs
                            .headers
                            .iter()
                            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                            .collect();
                        // `HeaderMap` groups the values of one name, in their order.
                        let mut ours_sorted = ours.clone();
                        ours_sorted.sort();
                        expected.sort();
                        assert_eq!(ours_sorted, expected);
                    }
                }
            }
            (status, _) => panic!("httparse says {status:?}, this path {verdict}"),
        }
    }

    /// Feeds `bytes` in pieces cut at `cuts` as reads would deliver them; the verdict, when one
    /// comes, is the one the bytes read so far get when parsed whole.
    fn incremental_agrees_with_whole(bytes: &[u8], cuts: &[usize]) {
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        ends.dedup();
        let mut buffer = HeadBuffer::default();
        for end in ends.into_iter().filter(|&e| e > 0) {
            let start = buffer.bytes.len();
            buffer.bytes.extend_from_slice(&bytes[start..end]);
            if let Some(verdict) = buffer.verdict_after(start) {
                assert_eq!(
                    describe(&Some(verdict)),
                    describe(&parse(&Bytes::copy_from_slice(&bytes[..end])))
                );
                return;
            }
        }
        // No verdict: hyper would still be waiting too, unless the head is complete.
        assert!(!matches!(
            httparse::Request::new(&mut [httparse::EMPTY_HEADER; MAX_HEADERS]).parse(bytes),
            Ok(httparse::Status::Complete(_))
        ));
    }

    use proptest::prelude::*;

    /// Bytes that matter in a head, so that random heads reach the parser's every branch.
    fn head_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            4 => prop::sample::select(b"\r\n :/?%GETHP1.0-aZ\t".to_vec()),
            1 => any::<u8>(),
        ]
    }

    /// A well-formed head: a request line and headers, with CRLF or bare LF line endings.
    fn valid_head() -> impl Strategy<Value = Vec<u8>> {
        let method = prop::sample::select(vec!["GET", "POST", "HEAD", "OPTIONS", "PATCH", "X-Y"]);
        let target = "/[a-zA-Z0-9._~%/?=&{}*-]{0,40}";
        let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]);
        let header = (
            "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
            "[ -~\t\u{80}-\u{ff}]{0,30}",
        );
        let headers = prop::collection::vec(header, 0..8);
        let eol = prop::sample::select(vec!["\r\n", "\n"]);
        (method, target, version, headers, eol).prop_map(|(m, t, v, headers, eol)| {
            let mut head = format!("{m} {t} {v}{eol}").into_bytes();
            for (name, value) in headers {
                head.extend_from_slice(name.as_bytes());
                head.extend_from_slice(b": ");
                // Latin-1, one byte per char: obs-text as httparse accepts it.
                head.extend(value.chars().map(|c| c as u32 as u8));
                head.extend_from_slice(eol.as_bytes());
            }
            head.extend_from_slice(eol.as_bytes());
            head
        })
    }

    /// A valid head with a few bytes replaced, inserted or removed.
    fn mutated_head() -> impl Strategy<Value = Vec<u8>> {
        let edits =
            prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, head_byte()), 1..4);
        (valid_head(), edits).prop_map(|(mut head, edits)| {
            for (at, op, byte) in edits {
                let i = at.index(head.len() + 1);
                match op {
                    0 if i < head.len() => head[i] = byte,
                    1 => head.insert(i, byte),
                    _ if i < head.len() => {
                        head.remove(i);
                    }
                    _ => head.push(byte),
                }
            }
            head
        })
    }

    proptest! {
        // Bounded, so that CI runs it on every change in a few seconds.
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_get_httparse_verdict(bytes in prop::collection::vec(head_byte(), 0..200)) {
            agrees_with_httparse(&bytes);
        }

        #[test]
        fn valid_heads_are_served_as_httparse_reads_them(head in valid_head()) {
            agrees_with_httparse(&head);
        }

        #[test]
        fn mutated_heads_get_httparse_verdict(head in mutated_head()) {
            agrees_with_httparse(&head);
        }

        #[test]
        fn a_head_read_in_pieces_gets_the_verdict_of_the_bytes_read(
            head in prop_oneof![valid_head(), mutated_head()],
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            incremental_agrees_with_whole(&head, &cuts);
        }
    }
}
