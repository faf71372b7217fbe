//! Unit tests of [`super`]; every-expansion-matches is the property test in
//! `tests/template_expansion.rs`.

use super::*;
use crate::template::TemplateCost;
use std::time::{Duration, Instant};

fn t(template: &str) -> UriTemplate {
    UriTemplate::parse(template).unwrap_or_else(|e| panic!("{template:?}: {e}"))
}

#[track_caller]
fn check(template: &str, matches: &[&str], non_matches: &[&str]) {
    let tpl = t(template);
    for uri in matches {
        assert!(tpl.is_match(uri), "{template:?} should match {uri:?}");
    }
    for uri in non_matches {
        assert!(!tpl.is_match(uri), "{template:?} should not match {uri:?}");
    }
}

#[test]
fn simple_expressions_match_unreserved_and_pct_encoded_but_no_slash() {
    let base = "https://example.com/books/";
    check(
        "https://example.com/books/{id}",
        &[
            &format!("{base}1"),
            &format!("{base}a%20b%2Fc"),
            &format!("{base}caf\u{e9}"),
            base,
        ],
        &[
            &format!("{base}1/2"),
            &format!("{base}a b"),
            &format!("{base}1?x"),
            "https://example.com/books",
        ],
    );
    check("{x,y}", &["1,2", "1", "", "a,b,c,d"], &["1;2", "%zz"]);
    check("{list*}", &["a,b,c", "a=1,b=2"], &["a/b"]);
}

#[test]
fn reserved_and_fragment_expressions_allow_reserved_characters() {
    check(
        "https://example.com/{+path}",
        &[
            "https://example.com/a/b/c?x=1&y=%20#f",
            "https://example.com/",
        ],
        &["https://example.com/a b", "https://example.com/a\"b"],
    );
    check(
        "/x{#frag}",
        &["/x", "/x#", "/x#a/b?c", "/x#a,b"],
        &["/xa", "/x#a b"],
    );
}

#[test]
fn label_and_path_expressions() {
    check(
        "file{.ext}",
        &["file", "file.json", "file.tar.gz", "file.a,b"],
        &["file/json", "filejson"],
    );
    check(
        "https://example.com/users/{id}/books{/bookId}",
        &[
            "https://example.com/users/1/books",
            "https://example.com/users/1/books/2",
        ],
        &[
            "https://example.com/users/1/books/2/3",
            "https://example.com/users/1/books2",
        ],
    );
    check("{/path*}", &["/a/b/c", "", "/k=v/k2=v2"], &["a/b"]);
    check("{/a,b}", &["/1/2", "/1", "/"], &["/1/2/3"]);
}

#[test]
fn named_expressions_check_names_and_order() {
    check(
        "{;x,y}",
        &[";x=1;y=2", ";x", ";y=2", ";x=1,2", ""],
        &[";z=1", ";y=2;x=1", ";x=1;x=2"],
    );
    check(
        "/chat/{room}{?lang}",
        &[
            "/chat/general",
            "/chat/general?lang=fr",
            "/chat/general?lang=",
        ],
        &[
            "/chat/general?other=fr",
            "/chat/general?lang",
            "/chat/general?lang=fr&x=1",
        ],
    );
    check(
        "{?a,b}",
        &["?a=1&b=2", "?b=2", "?a=1,2"],
        &["?b=2&a=1", "?a=1&"],
    );
    check(
        "{?params*}",
        &["?a=1&b=2", "?params=x&params=y", "?k="],
        &["?a", "?a=1&b"],
    );
    check(
        "?fixed=1{&x}",
        &["?fixed=1&x=2", "?fixed=1"],
        &["?fixed=1&y=2"],
    );
    check("{;list*}", &[";a=1;b", ";list=x;list=y"], &[";a=1/b"]);
    // A pct-encoded name matches as written and as re-encoded by some expanders.
    check("{?a%20b}", &["?a%20b=1", "?a%2520b=1"], &["?a b=1"]);
}

#[test]
fn prefix_modifier_bounds_characters_not_bytes() {
    check(
        "{id:3}",
        &["abc", "ab", "", "%C3%A9ab", "\u{e9}\u{e9}\u{e9}"],
        &["abcd", "a,b"],
    );
    check(
        "{+p:2}",
        &["a/", "/%2F", "%C3%A9\u{e9}"],
        &["a/b", "%C3%A9%C3%A9/"],
    );
    check("{?q:2}", &["?q=ab", "?q="], &["?q=abc"]);
    // Past a per-template budget, prefixes are treated as unbounded rather than unrolled.
    check("{id:9999}", &[&"a".repeat(20_000)], &["a/b"]);
    check(
        "{a:10}/{b:10}",
        &["a/b"],
        &[&format!("{}/b", "a".repeat(11))],
    );
    assert!(t("{a:10}/{b:10}").is_match(&format!("a/{}", "b".repeat(11))));
}

#[test]
fn literals_are_escaped_and_matched_exactly() {
    let tpl = t("https://example.com/a.b+c(d)");
    assert!(!tpl.has_expressions());
    assert_eq!(tpl.as_str(), "https://example.com/a.b+c(d)");
    assert!(tpl.is_match("https://example.com/a.b+c(d)"));
    assert!(!tpl.is_match("https://example.com/aXb+c(d)"));
    assert!(!tpl.is_match("https://example.com/a.b+c(d)/"));
    assert!(t("/{id}").has_expressions());
    assert!(t("").is_match(""));
}

#[test]
fn parse_errors_name_the_problem_and_offset() {
    use TemplateError::*;
    let cases = [
        ("/a/{id", UnclosedExpression { offset: 3 }),
        ("/a}", UnmatchedClosingBrace { offset: 2 }),
        ("{a}}", UnmatchedClosingBrace { offset: 3 }),
        ("x{}", EmptyExpression { offset: 1 }),
        ("{+}", EmptyExpression { offset: 0 }),
        ("{a,}", InvalidVariableName { offset: 3 }),
        ("{a-b}", InvalidVariableName { offset: 2 }),
        ("{.a.}", InvalidVariableName { offset: 3 }),
        ("{a..b}", InvalidVariableName { offset: 3 }),
        ("{%4g}", InvalidVariableName { offset: 1 }),
        ("{a{b}", InvalidVariableName { offset: 2 }),
        ("{a:0}", InvalidModifier { offset: 2 }),
        ("{a:10000}", InvalidModifier { offset: 2 }),
        ("{a:}", InvalidModifier { offset: 2 }),
        ("{a*b}", InvalidModifier { offset: 2 }),
        (
            "{=a}",
            ReservedOperator {
                operator: '=',
                offset: 1,
            },
        ),
        (
            "{,a}",
            ReservedOperator {
                operator: ',',
                offset: 1,
            },
        ),
        (
            "{!a}",
            ReservedOperator {
                operator: '!',
                offset: 1,
            },
        ),
        (
            "{@a}",
            ReservedOperator {
                operator: '@',
                offset: 1,
            },
        ),
        (
            "{|a}",
            ReservedOperator {
                operator: '|',
                offset: 1,
            },
        ),
    ];
    for (template, expected) in cases {
        assert_eq!(
            UriTemplate::parse(template).unwrap_err(),
            expected,
            "{template:?}"
        );
    }
    assert!(
        InvalidModifier { offset: 7 }
            .to_string()
            .contains("offset 7")
    );
}

#[test]
fn pathological_input_is_linear() {
    // Fifty adjacent, ambiguous expressions against 10 KB that almost matches: a
    // backtracking engine would never finish.
    let template: String = (0..50).map(|i| format!("{{v{i}}}{{/p{i}*}}")).collect();
    let tpl = t(&template);
    let topic = format!("{}!", "a/".repeat(5_000));
    let start = Instant::now();
    assert!(!tpl.is_match(&topic));
    assert!(tpl.is_match(&topic[..topic.len() - 1]));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn oversized_templates_are_rejected_not_compiled() {
    let template: String = (0..2000)
        .map(|i| format!("{{;a{i}:64,b{i},c{i}}}"))
        .collect();
    let source = TemplateSource::parse(&template).unwrap();
    assert!(source.cost().bytes() > MAX_TEMPLATE_COST);
    let start = Instant::now();
    assert_eq!(source.compile().unwrap_err(), TemplateError::TooComplex);
    assert!(start.elapsed() < Duration::from_millis(100));
}

/// The building blocks of the cost model, each alone and repeated, and realistic templates: the
/// model's bound holds for the compiled size, and the literal prefix and suffix are free.
#[test]
fn cost_bounds_the_compiled_size() {
    let blocks = [
        "{id}",
        "{+path}",
        "{#frag}",
        "{.ext}",
        "{/path*}",
        "{;list*}",
        "{?q,lang}",
        "{&x}",
        "{id:16}",
        "{id:1}",
        "{?a%20b}",
        "{x,y,z}",
        "{list*}",
        "{?params*}",
    ];
    let mut templates: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
    for block in blocks {
        templates.push(format!("/a{block}/b{block}/c{block}/"));
        templates.push(std::iter::repeat_n(block, 20).collect::<Vec<_>>().join("-"));
    }
    templates.push("https://example.com/books/{id}".into());
    templates.push("https://example.com/users/{user}/books{/id,rev}{?fields*}".into());
    templates.push(format!("{{a}}{}{{b}}", "x".repeat(2000)));
    templates.push((0..100).map(|_| "{/v}").collect());
    templates.push((0..10).map(|i| format!("{{v{i}:128}}/")).collect());
    for template in &templates {
        let tpl = t(template);
        let (cost, used) = (tpl.cost().bytes(), tpl.memory_usage() as u64);
        assert!(used <= cost, "{template:?}: {used} bytes > cost {cost}");
        // Not wildly above either: the model is a useful bound, not a blanket one.
        assert!(
            cost <= 4 * used + 8192,
            "{template:?}: cost {cost} for {used} bytes"
        );
    }
    let prefix_only = t(&format!("{}{{id}}{}", "x".repeat(5000), "y".repeat(5000)));
    assert_eq!(prefix_only.cost(), t("{id}").cost());
}

#[test]
fn costly_templates_say_what_to_simplify() {
    let prefixes = TemplateSource::parse("{a:16}").unwrap().cost();
    assert!(
        prefixes.advice().contains("prefix"),
        "{}",
        prefixes.advice()
    );
    let variables = TemplateSource::parse("{a,b,c,d,e,f}").unwrap().cost();
    assert!(variables.advice().contains("variables"));
    let literals = TemplateSource::parse(&format!("{{a}}{}{{b}}", "x".repeat(500)))
        .unwrap()
        .cost();
    assert!(literals.advice().contains("literal"));
    assert_eq!(TemplateCost::default().to_string(), "4 KiB");
}

#[test]
fn matching_with_a_cache_agrees_and_the_cache_stays_bounded() {
    let tpl = t("https://example.com/{a}/{b:3}{?q*}");
    let mut cache = tpl.new_cache();
    for uri in [
        "https://example.com/x/abc?q=1&r=2",
        "https://example.com/x/abcd",
        "https://example.com//",
        "http://example.com/x/y",
        "https://example.com/x/y#",
    ] {
        assert_eq!(
            tpl.is_match_with(&mut cache, uri),
            tpl.is_match(uri),
            "{uri}"
        );
    }
    let hostile = "%C3%A9a".repeat(2000);
    tpl.is_match_with(&mut cache, &format!("https://example.com/{hostile}/x"));
    assert!(cache.memory_usage() as u64 <= 3 * tpl.cost().bytes().max(32 << 10));
}
