//! Property tests of the parsers and encoders a client's bytes reach (issue 13): publish bodies
//! (form and JSON), SSE framing, subscribe queries and tokens.
//!
//! Each property runs a bounded number of cases, so that the whole file runs in seconds in a
//! debug build and can run in CI on every change. What they assert:
//! - no input panics a parser;
//! - what a parser accepts round-trips: encoding it again and parsing gives the same request;
//! - an update that validation accepts, once SSE-encoded, reads back through a WHATWG parser
//!   (written here, independently of the client's) as exactly one event with the same id, type,
//!   retry and data [R9]; two frames back to back read as exactly two events;
//! - a token that differs from a valid one never verifies [R18].
//!
//! URI templates have their own property tests (`template_expansion.rs` and the template
//! module's).

use herald_protocol::{
    Algorithm, LastEventId, PublishRequest, SubscribeRequest, TokenVerifier, TopicSelector, Update,
    sse,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---- strategies ------------------------------------------------------------------------------

/// Text that often holds what parsers split on or refuse: CR, LF, NUL, `&`, `=`, `+`, `%`, `:`,
/// `#`, spaces, non-ASCII; and sometimes anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => r"[a-z0-9 \r\n\x00&=+%:#{}/\x{e9}\x{FEFF}]{0,24}",
        1 => any::<String>(),
        1 => Just("earliest".to_owned()),
    ]
}

fn request() -> impl Strategy<Value = PublishRequest> {
    (
        proptest::collection::vec(text(), 0..4),
        proptest::option::of(text()),
        any::<bool>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            text()
        ]),
    )
        .prop_map(
            |(topics, data, private, id, event_type, retry)| PublishRequest {
                topics,
                data,
                private,
                id,
                event_type,
                retry,
            },
        )
}

// ---- publish bodies ---------------------------------------------------------------------------

fn enc(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// The form body a publisher would send for `request` (each field once, `private` as a flag).
fn form_body(request: &PublishRequest) -> String {
    let mut pairs: Vec<String> = request
        .topics
        .iter()
        .map(|topic| format!("topic={}", enc(topic)))
        .collect();
    let fields = [
        ("data", &request.data),
        ("id", &request.id),
        ("type", &request.event_type),
        ("retry", &request.retry),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            pairs.push(format!("{name}={}", enc(value)));
        }
    }
    if request.private {
        pairs.push("private=on".into());
    }
    pairs.join("&")
}

/// The JSON body a publisher would send for `request` (data as a string).
fn json_body(request: &PublishRequest) -> Vec<u8> {
    let mut body = json!({ "topic": request.topics, "private": request.private });
    let fields = [
        ("data", &request.data),
        ("id", &request.id),
        ("type", &request.event_type),
        ("retry", &request.retry),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            body[name] = Value::String(value.clone());
        }
    }
    serde_json::to_vec(&body).unwrap()
}

/// What validation must do with an accepted request: keep every field as given.
fn assert_update_keeps_the_fields(request: &PublishRequest, update: &Update) {
    assert_eq!(update.topics, request.topics);
    assert_eq!(update.data, request.data.clone().unwrap_or_default());
    assert_eq!(update.private, request.private);
    if let Some(id) = &request.id {
        assert_eq!(&update.id, id);
    }
    assert_ne!(update.id, "earliest", "the reserved id is never accepted");
    assert!(update.topics.iter().all(|topic| !topic.is_empty()));
    assert_eq!(
        update.event_type,
        request.event_type.clone().filter(|t| !t.is_empty())
    );
    assert_eq!(
        update.retry,
        request.retry.as_ref().map(|r| r.trim().parse().unwrap())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn form_bodies_never_panic_and_accepted_ones_round_trip(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(request) = PublishRequest::from_form(&body) {
            let again = PublishRequest::from_form(form_body(&request).as_bytes()).unwrap();
            // A repeated single-valued field keeps its last value, and `private` is a flag.
            prop_assert_eq!(&again, &request);
            let _ = request.into_update();
        }
    }

    #[test]
    fn form_bodies_of_known_bytes_never_panic(body in "(topic|data|id|type|retry|private|%|%F|%FF|%0A|%00|&|=|\\+|[a-z])*") {
        if let Ok(request) = PublishRequest::from_form(body.as_bytes()) {
            let _ = request.into_update();
        }
    }

    #[test]
    fn generated_form_requests_round_trip_and_validation_keeps_the_fields(request in request()) {
        let parsed = PublishRequest::from_form(form_body(&request).as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &request);
        if let Ok(update) = parsed.into_update() {
            assert_update_keeps_the_fields(&request, &update);
        }
    }

    #[test]
    fn json_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(request) = PublishRequest::from_json(&body) {
            let _ = request.into_update();
        }
    }

    #[test]
    fn json_shaped_bodies_never_panic(body in r#"[{}\[\]",:0-9a-z \\]{0,60}"#) {
        if let Ok(request) = PublishRequest::from_json(body.as_bytes()) {
            let _ = request.into_update();
        }
    }

    #[test]
    fn generated_json_requests_round_trip_and_validation_keeps_the_fields(request in request()) {
        let parsed = PublishRequest::from_json(&json_body(&request)).unwrap();
        prop_assert_eq!(&parsed, &request);
        if let Ok(update) = parsed.into_update() {
            assert_update_keeps_the_fields(&request, &update);
        }
    }

    #[test]
    fn json_data_that_is_not_a_string_is_published_as_its_json_text(n in any::<i64>(), s in text()) {
        let data = json!({"n": n, "s": s, "list": [n, null, true]});
        let body = serde_json::to_vec(&json!({"topic": "t", "data": data})).unwrap();
        let update = PublishRequest::from_json(&body).unwrap().into_update().unwrap();
        prop_assert_eq!(serde_json::from_str::<Value>(&update.data).unwrap(), data);
    }
}

// ---- SSE framing [R9] -------------------------------------------------------------------------

/// One event as an `EventSource` dispatches it.
#[derive(Debug, PartialEq, Eq)]
struct Dispatched {
    event_type: String,
    data: String,
    last_event_id: String,
    /// The reconnection time after this event's fields were read.
    retry: Option<u128>,
}

/// The WHATWG HTML "event stream interpretation", whole-stream: a deliberately plain reading
/// of the standard's steps, independent of the hub's encoder and of the client's parser.
fn whatwg_parse(stream: &[u8]) -> Vec<Dispatched> {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut events = Vec::new();
    let (mut data, mut event_type, mut last_event_id) =
        (String::new(), String::new(), String::new());
    let mut retry = None;
    // Lines end with CRLF, LF or CR; a last line without an end is never processed.
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            // Dispatch.
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            events.push(Dispatched {
                event_type: if event_type.is_empty() {
                    "message".into()
                } else {
                    event_type.clone()
                },
                data: std::mem::take(&mut data),
                last_event_id: last_event_id.clone(),
                retry,
            });
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_event_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok();
            }
            _ => {}
        }
    }
    events
}

/// The data an `EventSource` sees: every line ending becomes LF.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

fn expected(update: &Update) -> Dispatched {
    Dispatched {
        event_type: update
            .event_type
            .clone()
            .unwrap_or_else(|| "message".into()),
        data: normalized(&update.data),
        last_event_id: update.id.clone(),
        retry: update.retry.map(u128::from),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn r9_every_accepted_update_reads_back_as_exactly_one_identical_event(request in request()) {
        let Ok(update) = request.into_update() else { return Ok(()) };
        let frame = sse::encode(&update);
        prop_assert_eq!(whatwg_parse(&frame), vec![expected(&update)]);
    }

    #[test]
    fn r9_two_frames_read_back_as_exactly_two_events(first in request(), second in request()) {
        let (Ok(first), Ok(second)) = (first.into_update(), second.into_update()) else {
            return Ok(());
        };
        let mut stream = sse::OPENING_COMMENT.to_vec();
        stream.extend_from_slice(&sse::encode(&first));
        stream.extend_from_slice(sse::HEARTBEAT_COMMENT);
        stream.extend_from_slice(&sse::encode(&second));
        let mut second_expected = expected(&second);
        // The reconnection time is per connection: the first event's retry stays in force.
        second_expected.retry = second_expected.retry.or(first.retry.map(u128::from));
        prop_assert_eq!(whatwg_parse(&stream), vec![expected(&first), second_expected]);
    }

    #[test]
    fn r9_any_update_even_unvalidated_reads_back_as_exactly_one_event(
        data in text(), event_type in proptest::option::of(text()), id in text(), retry in any::<Option<u64>>(),
    ) {
        // Straight to the encoder, without validation (as an embedder may call it): one frame
        // is one event, with line breaks in the single-line fields written as U+FFFD.
        let update = Update { id, topics: vec!["t".into()], data, private: false, event_type, retry };
        let one_line = |value: &str| value.replace(['\r', '\n'], "\u{FFFD}");
        let id = one_line(&update.id);
        let want = Dispatched {
            event_type: update.event_type.as_deref().map(one_line).filter(|t| !t.is_empty()).unwrap_or_else(|| "message".into()),
            data: normalized(&update.data),
            // A browser ignores an id with NUL: the last event id stays what it was.
            last_event_id: if id.contains('\0') { String::new() } else { id },
            retry: update.retry.map(u128::from),
        };
        prop_assert_eq!(whatwg_parse(&sse::encode(&update)), vec![want]);
    }
}

#[test]
fn whatwg_parser_follows_the_standard() {
    // The standard's own examples: data lines join with LF, a final line without a blank line
    // is not dispatched, a field without a colon has an empty value, one space is stripped.
    let events = whatwg_parse(
        b"data: YHOO\ndata: +2\ndata: 10\n\n:c\nid\ndata\ndata\n\ndata:  x\r\rdata: lost",
    );
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].data, "YHOO\n+2\n10");
    assert_eq!(events[1].data, "\n");
    assert_eq!(events[1].last_event_id, "");
    assert_eq!(events[2].data, " x");
    assert_eq!(whatwg_parse(b"retry: 1x\ndata: a\n\n")[0].retry, None);
    assert_eq!(
        whatwg_parse(b"event: e\n\ndata: a\n\n")[0].event_type,
        "message"
    );
}

// ---- subscribe queries [R6][R25] --------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn subscribe_queries_never_panic(query in "(topic|lastEventID|authorization|%|%F|%FF|%7B|%7D|\\{|\\}|&|=|\\+|\\*|[a-z/:])*") {
        if let Ok(request) = SubscribeRequest::from_query(&query) {
            prop_assert!(!request.selectors.is_empty());
            prop_assert!(request.selectors.iter().all(|s| !s.as_str().is_empty()));
        }
    }

    #[test]
    fn subscribe_queries_of_any_text_never_panic(query in any::<String>()) {
        let _ = SubscribeRequest::from_query(&query);
    }

    #[test]
    fn generated_subscribe_queries_round_trip(
        topics in proptest::collection::vec(text(), 1..6),
        last_event_id in proptest::option::of(text()),
        authorization in proptest::option::of(text()),
    ) {
        let mut pairs: Vec<String> = topics.iter().map(|t| format!("topic={}", enc(t))).collect();
        if let Some(id) = &last_event_id {
            pairs.push(format!("lastEventID={}", enc(id)));
        }
        if let Some(token) = &authorization {
            pairs.push(format!("authorization={}", enc(token)));
        }
        match SubscribeRequest::from_query(&pairs.join("&")) {
            Ok(request) => {
                let selectors: Vec<&str> = request.selectors.iter().map(TopicSelector::as_str).collect();
                prop_assert_eq!(selectors, topics.iter().map(String::as_str).collect::<Vec<_>>());
                let expected_id = last_event_id.filter(|id| !id.is_empty()).map(|id| LastEventId::parse(&id));
                prop_assert_eq!(request.last_event_id, expected_id);
                prop_assert_eq!(request.authorization, authorization);
            }
            // The only refusal of valid UTF-8: an empty selector.
            Err(_) => prop_assert!(topics.iter().any(String::is_empty)),
        }
    }

    #[test]
    fn r3_any_selector_parses_and_matches_its_own_text(selector in text()) {
        prop_assert!(TopicSelector::parse(&selector).matches(&selector));
    }
}

// ---- tokens [R18] -----------------------------------------------------------------------------

const HS_KEY: &[u8] = b"property-test-secret-property-test-secret";
const ED_PRIVATE: &str = include_str!("keys/ed_private.pem");
const ED_PUBLIC: &str = include_str!("keys/ed_public.pem");

fn sign(alg: Algorithm, claims: &Value) -> String {
    let key = match alg {
        Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_secret(HS_KEY),
    };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &key).unwrap()
}

fn verifier(alg: Algorithm) -> TokenVerifier {
    match alg {
        Algorithm::EdDSA => TokenVerifier::new(alg, ED_PUBLIC.as_bytes()).unwrap(),
        _ => TokenVerifier::new(alg, HS_KEY).unwrap(),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the character at this index (modulo the length) with this one.
    Replace(usize, char),
    Delete(usize),
    Insert(usize, char),
    Truncate(usize),
    /// Swap two of the three parts.
    SwapParts(usize, usize),
    /// Replace one part with the same part of another valid token.
    SplicePart(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token_char = prop_oneof![
        proptest::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()),
        Just('-'),
        Just('_'),
        Just('.'),
        Just('='),
        Just('+'),
        Just('/'),
        Just(' '),
        Just('\0'),
    ];
    prop_oneof![
        4 => (any::<usize>(), token_char.clone()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        2 => any::<usize>().prop_map(Mutation::Delete),
        2 => (any::<usize>(), token_char).prop_map(|(i, c)| Mutation::Insert(i, c)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapParts(a, b)),
        1 => (0..3usize).prop_map(Mutation::SplicePart),
    ]
}

fn mutate(token: &str, other: &str, mutation: &Mutation) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    match *mutation {
        Mutation::Replace(i, c) => {
            let i = i % chars.len();
            chars[i] = c;
        }
        Mutation::Delete(i) => {
            chars.remove(i % chars.len());
        }
        Mutation::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
        Mutation::Truncate(i) => chars.truncate(i % chars.len()),
        Mutation::SwapParts(a, b) => {
            let mut parts: Vec<&str> = token.split('.').collect();
            parts.swap(a, b);
            return parts.join(".");
        }
        Mutation::SplicePart(i) => {
            let mut parts: Vec<&str> = token.split('.').collect();
            parts[i] = other.split('.').nth(i).unwrap();
            return parts.join(".");
        }
    }
    chars.into_iter().collect()
}

fn claims() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec("[a-z*{}/:]{1,12}", 0..3),
        proptest::option::of(0u64..4_000_000_000),
    )
        .prop_map(|(publish, exp)| {
            let mut claims = json!({"mercure": {"publish": publish, "subscribe": ["*"]}});
            if let Some(exp) = exp {
                // In the future, so that the valid token verifies.
                claims["exp"] = json!(jsonwebtoken::get_current_timestamp() + 3600 + exp);
            }
            claims
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn r18_arbitrary_strings_never_verify_or_panic(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,40}",
        "eyJ[A-Za-z0-9_\\-=+/]{0,60}(\\.[A-Za-z0-9_\\-=+/]{0,60}){0,3}",
    ]) {
        prop_assert!(verifier(Algorithm::HS256).verify(&token).is_err());
        prop_assert!(verifier(Algorithm::EdDSA).verify(&token).is_err());
    }

    #[test]
    fn r18_mutated_hs256_tokens_never_verify(claims in claims(), other in claims(), mutation in mutation()) {
        let token = sign(Algorithm::HS256, &claims);
        let verifier = verifier(Algorithm::HS256);
        prop_assert!(verifier.verify(&token).is_ok());
        let mutated = mutate(&token, &sign(Algorithm::HS256, &other), &mutation);
        if mutated != token {
            prop_assert!(verifier.verify(&mutated).is_err(), "{:?} verified: {}", mutation, mutated);
        }
    }
}

proptest! {
    // Signature checks are slower in a debug build: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(60))]

    #[test]
    fn r18_mutated_eddsa_tokens_never_verify(claims in claims(), other in claims(), mutation in mutation()) {
        let token = sign(Algorithm::EdDSA, &claims);
        let verifier = verifier(Algorithm::EdDSA);
        prop_assert!(verifier.verify(&token).is_ok());
        let mutated = mutate(&token, &sign(Algorithm::EdDSA, &other), &mutation);
        if mutated != token {
            prop_assert!(verifier.verify(&mutated).is_err(), "{:?} verified: {}", mutation, mutated);
        }
        // And an HS256 verifier never takes it, whatever it became (algorithm confusion).
        prop_assert!(TokenVerifier::new(Algorithm::HS256, ED_PUBLIC.as_bytes()).unwrap().verify(&mutated).is_err());
    }
}
