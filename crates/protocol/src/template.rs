//! RFC 6570 URI template *matching*: does a topic belong to the set a template describes?
//!
//! Mercure topic selectors may be URI templates [R3] (`https://example.com/books/{id}`): a
//! subscriber receives an update when one of its topics is one of the template's possible
//! expansions, and the same test decides what a JWT's `mercure.subscribe` selectors authorize.
//! No maintained crate matches level-4 templates, so this module parses the template itself and
//! compiles it, once, into a single anchored regex, like the reference hub does with
//! `yosida95/uritemplate`'s `Regexp()`.
//!
//! # What a template costs
//!
//! Templates come straight from anonymous subscribers' query strings, so what one costs is
//! known *before* it is compiled: [`TemplateSource::parse`] validates the text and computes a
//! [`TemplateCost`] from its parsed form (see `cost.rs`), an upper bound, in bytes, on the
//! compiled matcher's memory; [`TemplateSource::compile`] builds the matcher. Callers (the hub)
//! refuse templates, requests and clients whose costs exceed their limits without compiling
//! anything. The bound holds by construction and is checked by a property test:
//! - the matcher's memory (forward and reverse NFAs) is at most the cost, and compile time is
//!   proportional to it;
//! - matching runs a lazy DFA whose cache is capped at the cost too ([`MatchCache`]), falling
//!   back to a PikeVM when the cache thrashes, so the time per topic byte is at worst
//!   proportional to the cost, and never exponential: the `regex-automata` engines do not
//!   backtrack without bound [R4];
//! - only the first 16 prefix characters (`PREFIX_BUDGET`) of a template are unrolled (a prefix
//!   character is the costliest building block); longer prefixes match values of any length.
//! - the literal text before the first and after the last expression is not compiled: it is
//!   compared directly, which also rejects most non-matching topics without running the
//!   automaton.
//!
//! The contract is "every expansion matches": for each expression the regex accepts everything
//! that any value (undefined, string, list or associative array) could expand to, and as little
//! else as a regular language allows, since over-matching leaks updates to unauthorized
//! subscribers. Where the RFC or implementations disagree we accept every variant.

mod cost;
mod pattern;

use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Input, meta};

pub use cost::TemplateCost;

/// A template that has been validated and costed, but not compiled.
///
/// Cheap to make (linear in the text) and cheap to hold: the hub looks a source up in its table
/// of compiled patterns and compiles it only when no identical template is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    source: String,
    cost: TemplateCost,
    has_expressions: bool,
}

/// A parsed RFC 6570 URI template, compiled to a matcher.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    source: String,
    cost: TemplateCost,
    /// Literal text every expansion starts with and ends with: compared, not compiled.
    prefix: Box<str>,
    suffix: Box<str>,
    /// Matches what lies between `prefix` and `suffix`.
    regex: meta::Regex,
    has_expressions: bool,
}

/// The mutable state one match needs (the lazy DFA's cache, the PikeVM's), bounded by the
/// template's cost. Whoever matches often keeps one per template; [`UriTemplate::is_match`]
/// borrows one from a per-regex pool instead.
#[derive(Debug, Clone)]
pub struct MatchCache(meta::Cache);

impl MatchCache {
    /// Heap bytes this cache holds now.
    pub fn memory_usage(&self) -> usize {
        self.0.memory_usage()
    }
}

/// Why a string is not a valid URI template. Offsets are byte offsets into the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` that is never closed.
    #[error("unclosed expression: the `{{` at offset {offset} has no matching `}}`")]
    UnclosedExpression {
        /// Where, in bytes from the start of the template.
        offset: usize,
    },
    /// A `}` with no `{` before it.
    #[error("unexpected `}}` at offset {offset} outside of an expression")]
    UnmatchedClosingBrace {
        /// Where, in bytes from the start of the template.
        offset: usize,
    },
    /// `{}` with nothing inside.
    #[error("empty expression at offset {offset}")]
    EmptyExpression {
        /// Where, in bytes from the start of the template.
        offset: usize,
    },
    /// A variable name with characters RFC 6570 does not allow.
    #[error("invalid variable name at offset {offset}")]
    InvalidVariableName {
        /// Where, in bytes from the start of the template.
        offset: usize,
    },
    /// A modifier that is neither `*` nor `:N` with N from 1 to 9999.
    #[error("invalid modifier at offset {offset}: expected `*` or `:` and a length from 1 to 9999")]
    InvalidModifier {
        /// Where, in bytes from the start of the template.
        offset: usize,
    },
    /// An operator RFC 6570 reserves for future use (`=`, `,`, `!`, `@`, `|`).
    #[error("operator `{operator}` at offset {offset} is reserved by RFC 6570 and not supported")]
    ReservedOperator {
        /// The operator.
        operator: char,
        /// Where, in bytes from the start of the template.
        offset: usize,
    },
    /// The template's cost is past [`MAX_TEMPLATE_COST`], or the regex engine refused it anyway.
    #[error("template too complex to compile into a matcher")]
    TooComplex,
}

/// The most any template may cost (bytes, see [`TemplateCost`]) for [`TemplateSource::compile`]
/// to compile it, whatever the caller's own limit: a ceiling for configurable limits.
pub const MAX_TEMPLATE_COST: u64 = 16 << 20;

impl TemplateSource {
    /// Parses and costs `source` without compiling it. Errors when it is not a valid RFC 6570
    /// template (unclosed `{`, a stray `}`, an empty expression, a bad variable name, a bad
    /// modifier, a reserved operator like `=`, `,`, `!`, `@`, `|`).
    ///
    /// Literal parts are not checked against the RFC's `literals` rule: Mercure topics are
    /// arbitrary strings, and a literal only ever matches itself, so rejecting e.g. a space
    /// would gain nothing.
    pub fn parse(source: &str) -> Result<TemplateSource, TemplateError> {
        let parts = parse_parts(source)?;
        Ok(TemplateSource {
            source: source.to_owned(),
            cost: TemplateCost::of(&parts),
            has_expressions: parts.iter().any(|p| matches!(p, Part::Expression(_))),
        })
    }

    /// The template as written.
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// What compiling and matching this template costs (computed from its parsed form).
    pub fn cost(&self) -> TemplateCost {
        self.cost
    }

    /// Whether the template has at least one expression.
    pub fn has_expressions(&self) -> bool {
        self.has_expressions
    }

    /// Compiles the matcher. Refuses templates costing more than [`MAX_TEMPLATE_COST`].
    pub fn compile(&self) -> Result<UriTemplate, TemplateError> {
        let cost = self.cost;
        if cost.bytes() > MAX_TEMPLATE_COST {
            return Err(TemplateError::TooComplex);
        }
        let parts = parse_parts(&self.source)?;
        let (prefix, middle, suffix) = pattern::split_literals(&parts);
        let regex = meta::Builder::new()
            .configure(
                meta::Config::new()
                    // Only "is it a match" is ever asked: no capture states.
                    .which_captures(WhichCaptures::None)
                    // The one-pass DFA only helps captures, and a full DFA may take time
                    // exponential in the NFA to build: neither is worth it here.
                    .onepass(false)
                    .dfa(false)
                    // The cost model bounds both; these are the engine's own guards should
                    // the model ever be wrong (the property test says it is not).
                    .nfa_size_limit(Some(cost.nfa_limit()))
                    .hybrid_cache_capacity(cost.cache_capacity()),
            )
            .build(&pattern::regex_of(middle))
            .map_err(|_| TemplateError::TooComplex)?;
        Ok(UriTemplate {
            source: self.source.clone(),
            cost,
            prefix: prefix.into(),
            suffix: suffix.into(),
            regex,
            has_expressions: self.has_expressions,
        })
    }
}

impl UriTemplate {
    /// Parses and compiles `source`, whatever it costs up to [`MAX_TEMPLATE_COST`]; see
    /// [`TemplateSource::parse`] for what is valid.
    pub fn parse(source: &str) -> Result<UriTemplate, TemplateError> {
        TemplateSource::parse(source)?.compile()
    }

    /// True when `uri` is one of the possible expansions of the template.
    pub fn is_match(&self, uri: &str) -> bool {
        self.middle(uri)
            .is_some_and(|middle| self.regex.is_match(middle))
    }

    /// [`UriTemplate::is_match`] with a cache of the caller's, made by
    /// [`UriTemplate::new_cache`] for this template.
    pub fn is_match_with(&self, cache: &mut MatchCache, uri: &str) -> bool {
        self.middle(uri)
            .is_some_and(|middle| self.regex.is_match_with(&mut cache.0, &Input::new(middle)))
    }

    /// A cache for [`UriTemplate::is_match_with`]; it starts empty and grows up to a bound set
    /// by the template's cost.
    pub fn new_cache(&self) -> MatchCache {
        MatchCache(self.regex.create_cache())
    }

    /// `uri` without the template's literal prefix and suffix, or `None` when it lacks one.
    fn middle<'u>(&self, uri: &'u str) -> Option<&'u str> {
        let rest = uri.strip_prefix(&*self.prefix)?;
        rest.strip_suffix(&*self.suffix)
    }

    /// Whether the template has at least one expression (a string without `{` is a valid template
    /// but only matches itself; callers use this to treat it as an exact topic).
    pub fn has_expressions(&self) -> bool {
        self.has_expressions
    }

    /// What compiling and matching this template costs.
    pub fn cost(&self) -> TemplateCost {
        self.cost
    }

    /// The compiled matcher's heap bytes (without any [`MatchCache`]).
    pub fn memory_usage(&self) -> usize {
        self.regex.memory_usage()
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[derive(Debug)]
enum Part<'a> {
    Literal(&'a str),
    Expression(Expression<'a>),
}

#[derive(Debug)]
struct Expression<'a> {
    op: Operator,
    vars: Vec<VarSpec<'a>>,
}

#[derive(Debug)]
struct VarSpec<'a> {
    name: &'a str,
    modifier: Modifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    None,
    Explode,
    /// `:n`, compiled as "at most n characters".
    Prefix(u16),
    /// `:n` past the template's [`PREFIX_BUDGET`]: compiled as "any length".
    UnboundedPrefix,
}

/// How many prefix characters per template compile to a bounded repetition (`unit{0,n}` unrolls
/// into n copies of a unit of ~3.7 KB); prefixes beyond the budget, e.g. `{v:9999}`, are treated
/// as unbounded. The precision lost (accepting a longer value) has no practical consequence, and
/// the reference hub ignores prefixes altogether.
const PREFIX_BUDGET: u16 = 16;

/// The eight operators of RFC 6570 (appendix A table), `Simple` being "no operator".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Simple,
    Reserved,
    Fragment,
    Label,
    Path,
    PathParam,
    Query,
    QueryContinuation,
}

impl Operator {
    fn from_char(c: char) -> Option<Operator> {
        Some(match c {
            '+' => Operator::Reserved,
            '#' => Operator::Fragment,
            '.' => Operator::Label,
            '/' => Operator::Path,
            ';' => Operator::PathParam,
            '?' => Operator::Query,
            '&' => Operator::QueryContinuation,
            _ => return None,
        })
    }

    /// Written before the first defined variable.
    fn first(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved => "",
            Operator::Fragment => "#",
            Operator::Label => ".",
            Operator::Path => "/",
            Operator::PathParam => ";",
            Operator::Query => "?",
            Operator::QueryContinuation => "&",
        }
    }

    /// Written between defined variables, and between exploded items.
    fn sep(self) -> &'static str {
        match self {
            Operator::Simple | Operator::Reserved | Operator::Fragment => ",",
            Operator::Label => ".",
            Operator::Path => "/",
            Operator::PathParam => ";",
            Operator::Query | Operator::QueryContinuation => "&",
        }
    }

    fn named(self) -> bool {
        matches!(
            self,
            Operator::PathParam | Operator::Query | Operator::QueryContinuation
        )
    }

    fn allow_reserved(self) -> bool {
        matches!(self, Operator::Reserved | Operator::Fragment)
    }
}

fn parse_parts(source: &str) -> Result<Vec<Part<'_>>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest_start = 0;
    while rest_start < source.len() {
        let rest = &source[rest_start..];
        let Some(brace) = rest.find(['{', '}']) else {
            parts.push(Part::Literal(rest));
            break;
        };
        let brace_offset = rest_start + brace;
        if rest.as_bytes()[brace] == b'}' {
            return Err(TemplateError::UnmatchedClosingBrace {
                offset: brace_offset,
            });
        }
        if brace > 0 {
            parts.push(Part::Literal(&rest[..brace]));
        }
        let Some(len) = rest[brace + 1..].find('}') else {
            return Err(TemplateError::UnclosedExpression {
                offset: brace_offset,
            });
        };
        let body = &rest[brace + 1..brace + 1 + len];
        parts.push(Part::Expression(parse_expression(body, brace_offset)?));
        rest_start = brace_offset + len + 2;
    }
    apply_prefix_budget(&mut parts);
    Ok(parts)
}

/// Turns the prefixes past [`PREFIX_BUDGET`] into unbounded ones, in the order the regex is
/// built (expressions left to right, variables right to left), so that the cost model and the
/// regex see the same modifiers.
fn apply_prefix_budget(parts: &mut [Part<'_>]) {
    let mut budget = PREFIX_BUDGET;
    for part in parts {
        let Part::Expression(expr) = part else {
            continue;
        };
        for var in expr.vars.iter_mut().rev() {
            if let Modifier::Prefix(n) = var.modifier {
                if n <= budget {
                    budget -= n;
                } else {
                    var.modifier = Modifier::UnboundedPrefix;
                }
            }
        }
    }
}

/// Parses the text between `{` and `}`; `brace_offset` is where the `{` is, for errors.
fn parse_expression(body: &str, brace_offset: usize) -> Result<Expression<'_>, TemplateError> {
    let mut offset = brace_offset + 1;
    let mut list = body;
    let op = match body.chars().next() {
        None => {
            return Err(TemplateError::EmptyExpression {
                offset: brace_offset,
            });
        }
        Some(c @ ('=' | ',' | '!' | '@' | '|')) => {
            return Err(TemplateError::ReservedOperator {
                operator: c,
                offset,
            });
        }
        Some(c) => match Operator::from_char(c) {
            Some(op) => {
                list = &body[1..];
                offset += 1;
                op
            }
            None => Operator::Simple,
        },
    };
    if list.is_empty() {
        return Err(TemplateError::EmptyExpression {
            offset: brace_offset,
        });
    }
    let mut vars = Vec::new();
    for spec in list.split(',') {
        vars.push(parse_varspec(spec, offset)?);
        offset += spec.len() + 1;
    }
    Ok(Expression { op, vars })
}

/// `varspec = varname [ ":" max-length / "*" ]`.
fn parse_varspec(spec: &str, offset: usize) -> Result<VarSpec<'_>, TemplateError> {
    let name_len = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%')))
        .unwrap_or(spec.len());
    let name = &spec[..name_len];
    validate_varname(name, offset)?;
    let modifier_offset = offset + name_len;
    let modifier = match &spec[name_len..] {
        "" => Modifier::None,
        "*" => Modifier::Explode,
        m if m.starts_with('*') => {
            return Err(TemplateError::InvalidModifier {
                offset: modifier_offset,
            });
        }
        m if m.starts_with(':') => {
            // max-length = %x31-39 0*3DIGIT: 1 to 9999, without leading zero.
            let digits = &m[1..];
            let valid = (1..=4).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            if !valid {
                return Err(TemplateError::InvalidModifier {
                    offset: modifier_offset,
                });
            }
            Modifier::Prefix(digits.parse().expect("1 to 4 ASCII digits fit in u16"))
        }
        // Any other character (`-`, `{`, a space, non-ASCII...) cannot be part of a name.
        _ => {
            return Err(TemplateError::InvalidVariableName {
                offset: modifier_offset,
            });
        }
    };
    Ok(VarSpec { name, modifier })
}

/// `varname = varchar *( ["."] varchar )`, `varchar = ALPHA / DIGIT / "_" / pct-encoded`.
/// The caller guarantees `name` only holds alphanumerics, `_`, `.` and `%`.
fn validate_varname(name: &str, offset: usize) -> Result<(), TemplateError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(TemplateError::InvalidVariableName { offset });
    }
    let mut i = 0;
    let mut after_varchar = false;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(TemplateError::InvalidVariableName { offset: offset + i });
                }
                i += 3;
                after_varchar = true;
            }
            // A dot only ever joins two varchars: no leading, trailing or doubled dots.
            b'.' if !after_varchar || i + 1 == bytes.len() => {
                return Err(TemplateError::InvalidVariableName { offset: offset + i });
            }
            b'.' => {
                i += 1;
                after_varchar = false;
            }
            _ => {
                i += 1;
                after_varchar = true;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
