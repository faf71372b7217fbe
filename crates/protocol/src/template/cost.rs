//! The cost model: what a template will cost to compile and to match, from its parsed form.
//!
//! The compiled matcher is made of a few building blocks, and its size is, to a good
//! approximation, the sum of theirs (measured with `regex-automata` 0.4, forward and reverse
//! NFAs together, by the `cost_bounds_the_compiled_size` tests):
//! - a value character class repeated (`{id}` holds two: a value, then more after commas):
//!   about 1.4 KB each ([`VALUE_CLASS_BYTES`]);
//! - one character of a bounded prefix (`{id:5}` holds five): about 3.6 KB each
//!   ([`PREFIX_CHAR_BYTES`]), which is why prefixes are only unrolled up to a small budget;
//! - a literal byte between expressions (names of named variables, separators, text between
//!   two expressions): about 48 bytes ([`LITERAL_BYTE_BYTES`]); the text before the first and
//!   after the last expression is compared directly and costs nothing;
//! - a fixed overhead ([`BASE_BYTES`]).
//!
//! In a multi-variable expression `{a,b,c}` every variable but the last appears twice in the
//! regex (the subsequence chain in `pattern.rs`), and the model counts it twice.
//!
//! The cost bounds the matcher's memory, and its compile time, which is linear in that size;
//! the lazy DFA's cache is capped at the cost as well, and the per-byte match time, at worst
//! (a PikeVM over the whole NFA), is proportional to the number of NFA states, so to the cost.
//!
//! Every figure here grows with what a client wrote, so all arithmetic saturates (checked by
//! clippy's `arithmetic_side_effects`, denied in this module): an absurd template costs
//! `u64::MAX` and is refused, it never wraps around to a small cost.
#![deny(clippy::arithmetic_side_effects)]

use std::fmt;

use super::{Expression, Modifier, Part};

const BASE_BYTES: u64 = 4 << 10;
const VALUE_CLASS_BYTES: u64 = 1_600;
const PREFIX_CHAR_BYTES: u64 = 3_800;
const LITERAL_BYTE_BYTES: u64 = 64;
/// The lazy DFA's cache never gets less than this, so that small templates match at full speed.
const MIN_CACHE_BYTES: usize = 32 << 10;

/// What one template costs, as an upper bound in bytes of its compiled matcher, with what the
/// bytes come from (to tell a client what to simplify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TemplateCost {
    value_classes: u64,
    prefix_chars: u64,
    literal_bytes: u64,
}

impl TemplateCost {
    pub(super) fn of(parts: &[Part<'_>]) -> TemplateCost {
        let (_, middle, _) = super::pattern::split_literals(parts);
        let mut cost = TemplateCost::default();
        for part in middle {
            match part {
                Part::Literal(lit) => {
                    cost.literal_bytes = cost.literal_bytes.saturating_add(len(lit))
                }
                Part::Expression(expr) => cost.add_expression(expr),
            }
        }
        cost
    }

    fn add_expression(&mut self, expr: &Expression<'_>) {
        let op = expr.op;
        self.literal_bytes = self.literal_bytes.saturating_add(len(op.first()));
        let sep = len(op.sep());
        let last = expr.vars.len().saturating_sub(1);
        for (i, var) in expr.vars.iter().enumerate() {
            // Every item but the last appears twice in the chain, with a separator.
            let times = if i == last { 1 } else { 2 };
            let mut item = TemplateCost {
                literal_bytes: if i == last { 0 } else { sep },
                ..TemplateCost::default()
            };
            let name = if var.name.contains('%') {
                // Written as is and with each `%` re-encoded as `%25`.
                let percents = var.name.matches('%').count() as u64;
                len(var.name).saturating_add(percents).saturating_mul(2)
            } else {
                len(var.name)
            };
            let named = op.named();
            match var.modifier {
                Modifier::None => item.value_classes = 2,
                Modifier::Prefix(n) => item.prefix_chars = u64::from(n),
                Modifier::UnboundedPrefix => item.prefix_chars = 1,
                // `v(sep v)*|v=v(sep v=v)*` or `v=v(sep v=v)*`, with `=` and separators.
                Modifier::Explode if named => {
                    item.value_classes = 4;
                    item.literal_bytes = item.literal_bytes.saturating_add(sep.saturating_add(2));
                }
                Modifier::Explode => {
                    item.value_classes = 6;
                    item.literal_bytes = item
                        .literal_bytes
                        .saturating_add(sep.saturating_mul(3).saturating_add(3));
                }
            }
            if named && var.modifier != Modifier::Explode {
                item.literal_bytes = item.literal_bytes.saturating_add(name.saturating_add(1));
            }
            for _ in 0..times {
                self.add(&item);
            }
        }
    }

    fn add(&mut self, other: &TemplateCost) {
        self.value_classes = self.value_classes.saturating_add(other.value_classes);
        self.prefix_chars = self.prefix_chars.saturating_add(other.prefix_chars);
        self.literal_bytes = self.literal_bytes.saturating_add(other.literal_bytes);
    }

    /// The bound, in bytes, on the compiled matcher's size (and its compile time, in the same
    /// proportion).
    pub fn bytes(&self) -> u64 {
        BASE_BYTES
            .saturating_add(self.value_classes.saturating_mul(VALUE_CLASS_BYTES))
            .saturating_add(self.prefix_chars.saturating_mul(PREFIX_CHAR_BYTES))
            .saturating_add(self.literal_bytes.saturating_mul(LITERAL_BYTE_BYTES))
    }

    /// What to simplify first to make the template cheaper: its largest contributor.
    pub fn advice(&self) -> &'static str {
        let values = self.value_classes.saturating_mul(VALUE_CLASS_BYTES);
        let prefixes = self.prefix_chars.saturating_mul(PREFIX_CHAR_BYTES);
        let literals = self.literal_bytes.saturating_mul(LITERAL_BYTE_BYTES);
        if prefixes >= values && prefixes >= literals {
            "use fewer or shorter prefix modifiers (`:N`)"
        } else if values >= literals {
            "use fewer variables (in an expression of several variables, each but the last \
             counts twice) or split the template into several selectors"
        } else {
            "shorten the literal text between expressions (text before the first and after \
             the last expression is free)"
        }
    }

    /// The regex engine's own NFA size limit: a guard should the model be wrong.
    pub(super) fn nfa_limit(&self) -> usize {
        usize::try_from(self.bytes()).unwrap_or(usize::MAX)
    }

    /// The lazy DFA's cache capacity.
    pub(super) fn cache_capacity(&self) -> usize {
        self.nfa_limit().max(MIN_CACHE_BYTES)
    }
}

impl fmt::Display for TemplateCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KiB", self.bytes().div_ceil(1024))
    }
}

/// A length as a cost figure.
fn len(text: &str) -> u64 {
    u64::try_from(text.len()).unwrap_or(u64::MAX)
}
