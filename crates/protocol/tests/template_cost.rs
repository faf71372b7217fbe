//! [R3][R4] Whatever a client sends as a template, parsing and costing it never panics, a
//! template the model allows compiles, and the compiled matcher stays within the model's bound:
//! its size at most the cost, its match cache at most a small multiple of it.
//!
//! Templates are drawn from the pieces that make templates interesting (braces, operators,
//! names, modifiers, pct-encoded triplets, non-ASCII) so that most are valid and many are
//! nearly valid; topics from the same kind of pieces.

use herald_protocol::template::{TemplateSource, UriTemplate};
use proptest::prelude::*;

const TEMPLATE_PIECES: &[&str] = &[
    "{",
    "}",
    "+",
    "#",
    ".",
    "/",
    ";",
    "?",
    "&",
    "=",
    ",",
    "!",
    "@",
    "|",
    "a",
    "id",
    "v.w",
    "%41",
    "%",
    ":",
    "1",
    "16",
    "128",
    "9999",
    "0",
    "*",
    "x",
    "-",
    " ",
    "\u{e9}",
    "https://e.com/",
];
const TOPIC_PIECES: &[&str] = &[
    "a",
    "1",
    "/",
    "?",
    "&",
    "=",
    ",",
    ";",
    ".",
    "#",
    "%41",
    "%C3%A9",
    "%",
    "\u{e9}",
    "{",
    "}",
    "https://e.com/",
    "id",
    "-",
    " ",
];

fn joined(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(pieces), 0..max).prop_map(|p| p.concat())
}

/// Templates made of many valid expressions, to reach the costly end of the model.
fn expressions() -> impl Strategy<Value = String> {
    let expression = (
        prop::sample::select(&["", "+", "#", ".", "/", ";", "?", "&"][..]),
        prop::collection::vec(
            (
                prop::sample::select(&["a", "b%41", "v.w"][..]),
                prop::sample::select(&["", "*", ":3", ":16", ":200"][..]),
            ),
            1..6,
        ),
        joined(TOPIC_PIECES, 3),
    )
        .prop_map(|(op, vars, literal)| {
            let vars: Vec<String> = vars.into_iter().map(|(n, m)| format!("{n}{m}")).collect();
            format!("{{{op}{}}}{literal}", vars.join(","))
        });
    prop::collection::vec(expression, 1..40).prop_map(|e| e.concat())
}

fn check(template: &str, topics: &[String]) -> Result<(), TestCaseError> {
    let Ok(source) = TemplateSource::parse(template) else {
        // An invalid template is an exact topic for the callers; nothing to compile.
        prop_assert!(UriTemplate::parse(template).is_err());
        return Ok(());
    };
    let cost = source.cost().bytes();
    let compiled = source.compile();
    prop_assert!(
        compiled.is_ok(),
        "{template:?} (cost {cost}) did not compile"
    );
    let tpl = compiled.unwrap();
    prop_assert!(
        tpl.memory_usage() as u64 <= cost,
        "{template:?}: {} bytes compiled, cost {cost}",
        tpl.memory_usage()
    );
    let mut cache = tpl.new_cache();
    for topic in topics {
        prop_assert_eq!(tpl.is_match_with(&mut cache, topic), tpl.is_match(topic));
    }
    let cache_bytes = cache.memory_usage() as u64;
    prop_assert!(
        cache_bytes <= 3 * cost.max(32 << 10),
        "{template:?}: cache of {cache_bytes} bytes for cost {cost}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn r4_any_template_string_is_costed_and_bounded(
        template in joined(TEMPLATE_PIECES, 40),
        topics in prop::collection::vec(joined(TOPIC_PIECES, 60), 1..6),
    ) {
        check(&template, &topics)?;
    }

    #[test]
    fn r4_long_valid_templates_stay_within_their_cost(
        template in expressions(),
        topics in prop::collection::vec(joined(TOPIC_PIECES, 200), 1..4),
    ) {
        check(&template, &topics)?;
    }
}
