//! Unit tests of [`super`]: sharing, caching, and the cost limits [R3][R4].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use herald_protocol::TopicSelector;
use http::StatusCode;

use super::pattern::RESULT_ENTRY_OVERHEAD;
use super::table::Admitted;
use super::*;
use crate::config::TemplateLimits;
use crate::peer::ClientAddress;
use crate::rejection::Rejection;

fn limits() -> TemplateLimits {
    TemplateLimits::default()
}

fn one(table: &PatternTable, selector: &str) -> Result<Selector, TemplateRefused> {
    Ok(table.intern_all(&[selector], &limits())?.remove(0))
}

fn admit(
    table: &PatternTable,
    client: ClientKey,
    selectors: &[String],
) -> Result<Admitted, TemplateRefused> {
    let selectors = selectors.iter().map(|s| TopicSelector::parse(s)).collect();
    table.admit(client, selectors, &[], &limits())
}

#[test]
fn r4_identical_templates_share_one_pattern() {
    let table = PatternTable::new(100);
    let a = one(&table, "https://example.com/books/{id}").unwrap();
    let b = one(&table, "https://example.com/books/{id}").unwrap();
    match (a, b) {
        (Selector::Pattern(a), Selector::Pattern(b)) => assert!(Arc::ptr_eq(&a, &b)),
        _ => panic!("expected patterns"),
    }
}

#[test]
fn r3_cached_results_are_the_uncached_ones() {
    let table = PatternTable::new(100);
    let s = one(&table, "https://example.com/books/{id}").unwrap();
    for _ in 0..2 {
        assert!(s.matches("https://example.com/books/1"));
        assert!(!s.matches("https://example.com/books/1/x"));
        assert!(s.matches("https://example.com/books/{id}"));
    }
}

#[test]
fn distinct_live_patterns_are_bounded() {
    let table = PatternTable::new(2);
    let a = one(&table, "/a/{x}").unwrap();
    let _b = one(&table, "/b/{x}").unwrap();
    // An existing pattern and exact topics are always fine.
    assert!(one(&table, "/a/{x}").is_ok());
    assert!(one(&table, "/exact").is_ok());
    assert_eq!(
        one(&table, "/c/{x}").unwrap_err(),
        TemplateRefused::TooManyPatterns(TooManyPatterns { max: 2 })
    );
    // Once a pattern is no longer used by anyone, its place is free again.
    drop(a);
    assert!(one(&table, "/c/{x}").is_ok());
}

#[test]
fn r4_a_costly_template_is_refused_with_what_to_simplify() {
    let table = PatternTable::new(100);
    // The second case: a hundred `{/v}` parts.
    let template: String = (0..100).map(|_| "{/v}").collect();
    let err = one(&table, &template).unwrap_err();
    assert!(matches!(err, TemplateRefused::TooCostly { .. }), "{err}");
    assert!(err.to_string().contains("fewer variables"), "{err}");
    assert_eq!(table.live.load(Ordering::Relaxed), 0, "nothing compiled");
    // Normal templates are well within the limit.
    for normal in [
        "https://example.com/books/{id}",
        "https://example.com{/path*}",
        "https://example.com/search{?q,lang}",
    ] {
        assert!(matches!(one(&table, normal).unwrap(), Selector::Pattern(_)));
    }
}

#[test]
fn r4_a_request_of_many_templates_is_refused_before_compiling() {
    let table = PatternTable::new(10_000);
    // The first case: a thousand `{a:128}/N`.
    let selectors: Vec<String> = (0..1000).map(|i| format!("{{a:128}}/{i}")).collect();
    let err = admit(
        &table,
        ClientKey::Anonymous(ClientAddress::Unknown),
        &selectors,
    )
    .unwrap_err();
    assert!(
        matches!(err, TemplateRefused::RequestTooCostly { .. }),
        "{err}"
    );
    assert_eq!(table.live.load(Ordering::Relaxed), 0, "nothing compiled");
    assert!(table.clients.lock().unwrap().is_empty(), "nothing charged");
    // The same template a thousand times costs once.
    let same = vec!["/books/{id}".to_owned(); 1000];
    assert_eq!(
        admit(&table, ClientKey::Anonymous(ClientAddress::Unknown), &same)
            .unwrap()
            .selectors
            .len(),
        1000
    );
}

#[test]
fn r4_a_client_pays_once_per_live_template_and_gets_it_back() {
    let table = PatternTable::new(10_000);
    let batch =
        |n: usize| -> Vec<String> { (0..50).map(|i| format!("/{n}/{{a}}/{i}/{{b}}")).collect() };
    let client = table.client_key(Some("a token"), ClientAddress::Unknown);
    let mut leases = Vec::new();
    let mut refused = None;
    for n in 0..1000 {
        match admit(&table, client, &batch(n)) {
            Ok(admitted) => leases.push(admitted),
            Err(e) => {
                refused = Some((n, e));
                break;
            }
        }
    }
    let (n, err) = refused.expect("the client budget ends it");
    assert!(
        matches!(err, TemplateRefused::ClientOverBudget { .. }),
        "{err}"
    );
    let response = axum::response::IntoResponse::into_response(Rejection::from(err.clone()));
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Templates it already keeps alive cost it nothing more; another client is unaffected.
    assert!(admit(&table, client, &batch(0)).is_ok());
    let other = table.client_key(Some("another token"), ClientAddress::Unknown);
    assert_ne!(client, other);
    assert!(admit(&table, other, &batch(n)).is_ok());
    // A subscription without templates opens no account.
    let third = table.client_key(Some("third"), ClientAddress::Unknown);
    let exact = admit(&table, third, &["/exact".to_owned()]).unwrap();
    let opened = table.clients.lock().unwrap().contains_key(&third);
    assert!(!opened);
    drop(exact);
    // Subscriptions ending give the budget back, and the patterns go.
    leases.clear();
    assert!(admit(&table, client, &batch(n)).is_ok());
    assert!(!table.clients.lock().unwrap().contains_key(&client));
    assert_eq!(table.live.load(Ordering::Relaxed), 0);
}

#[test]
fn cached_results_are_bounded_over_all_patterns_and_returned() {
    let table = PatternTable::with_result_cache(100, 10 * (RESULT_ENTRY_OVERHEAD + 20));
    // Costly enough to cache their results: twenty variables.
    let vars: String = (0..20).map(|v| format!("{{v{v}}}")).collect();
    let patterns: Vec<Selector> = (0..5)
        .map(|i| one(&table, &format!("/p{i}/{vars}")).unwrap())
        .collect();
    for round in 0..3 {
        for (i, pattern) in patterns.iter().enumerate() {
            for topic in 0..10 {
                let topic = format!("/p{i}/{topic:016}");
                assert!(pattern.matches(&topic), "round {round}");
                assert!(!pattern.matches(&format!("{topic}/x")));
            }
        }
        let used = table.results_budget.used.load(Ordering::Relaxed);
        assert!(used > 0 && used <= table.results_budget.max, "{used}");
    }
    drop(patterns);
    assert_eq!(table.results_budget.used.load(Ordering::Relaxed), 0);
}
