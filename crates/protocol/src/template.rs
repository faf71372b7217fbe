//! RFC 6570 URI template *matching*: does a topic belong to the set a template describes?
//!
//! Mercure topic selectors may be URI templates [R3] (`https://example.com/books/{id}`): a
//! subscriber receives an update when one of its topics is one of the template's possible
//! expansions, and the same test decides what a JWT's `mercure.subscribe` selectors authorize.
//! No maintained crate matches level-4 templates, so this module parses the template itself and
//! compiles it, once, into a single anchored [`regex::Regex`], like the reference hub does with
//! `yosida95/uritemplate`'s `Regexp()`.
//!
//! Selector matching is the hub's hot path (every update is tested against every subscriber's
//! selectors; the hub caches results per (selector, topic)), and templates come straight from
//! subscribers' query strings. The `regex` crate matches in time linear in the topic, whatever
//! the pattern, so a hostile template cannot cause catastrophic backtracking [R4]; the compiled
//! size is capped too (see [`TemplateError::TooComplex`]).
//!
//! The contract is "every expansion matches": for each expression the regex accepts everything
//! that any value (undefined, string, list or associative array) could expand to, and as little
//! else as a regular language allows, since over-matching leaks updates to unauthorized
//! subscribers. Where the RFC or implementations disagree we accept every variant.

use std::fmt::Write as _;

use regex::{Regex, RegexBuilder};

/// A parsed RFC 6570 URI template, compiled to a matcher.
#[derive(Debug, Clone)]
pub struct UriTemplate {
    source: String,
    regex: Regex,
    has_expressions: bool,
}

/// Why a string is not a valid URI template. Offsets are byte offsets into the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed expression: the `{{` at offset {offset} has no matching `}}`")]
    UnclosedExpression { offset: usize },
    #[error("unexpected `}}` at offset {offset} outside of an expression")]
    UnmatchedClosingBrace { offset: usize },
    #[error("empty expression at offset {offset}")]
    EmptyExpression { offset: usize },
    #[error("invalid variable name at offset {offset}")]
    InvalidVariableName { offset: usize },
    #[error("invalid modifier at offset {offset}: expected `*` or `:` and a length from 1 to 9999")]
    InvalidModifier { offset: usize },
    #[error("operator `{operator}` at offset {offset} is reserved by RFC 6570 and not supported")]
    ReservedOperator { operator: char, offset: usize },
    #[error("template too complex to compile into a matcher")]
    TooComplex,
}

impl UriTemplate {
    /// Parses `source`. Errors when it is not a valid RFC 6570 template (unclosed `{`, a stray `}`,
    /// an empty expression, a bad variable name, a bad modifier, a reserved operator like `=`,
    /// `,`, `!`, `@`, `|`).
    ///
    /// Literal parts are not checked against the RFC's `literals` rule: Mercure topics are
    /// arbitrary strings, and a literal only ever matches itself, so rejecting e.g. a space
    /// would gain nothing.
    pub fn parse(source: &str) -> Result<UriTemplate, TemplateError> {
        let parts = parse_parts(source)?;
        let has_expressions = parts.iter().any(|p| matches!(p, Part::Expression(_)));
        let mut pattern = String::from(r"\A");
        let mut prefix_budget = PREFIX_BUDGET;
        for part in &parts {
            match part {
                Part::Literal(lit) => pattern.push_str(&regex::escape(lit)),
                Part::Expression(expr) => expr.write_regex(&mut pattern, &mut prefix_budget),
            }
        }
        pattern.push_str(r"\z");
        // Parsing a huge pattern only to hit the size limit would already take a while.
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(TemplateError::TooComplex);
        }
        let regex = RegexBuilder::new(&pattern)
            // Templates are untrusted input: bound the memory a compiled template may take
            // (the default limit is 10 MiB per template, too much for a per-subscriber object).
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|_| TemplateError::TooComplex)?;
        Ok(UriTemplate {
            source: source.to_owned(),
            regex,
            has_expressions,
        })
    }

    /// True when `uri` is one of the possible expansions of the template.
    pub fn is_match(&self, uri: &str) -> bool {
        self.regex.is_match(uri)
    }

    /// Whether the template has at least one expression (a string without `{` is a valid template
    /// but only matches itself; callers use this to treat it as an exact topic).
    pub fn has_expressions(&self) -> bool {
        self.has_expressions
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Compiled-size cap per template; plenty for any realistic selector (a 50-expression template
/// compiles to well under 1 MiB).
const REGEX_SIZE_LIMIT: usize = 2 << 20;
/// Regex source length past which the compiled size would exceed [`REGEX_SIZE_LIMIT`] anyway
/// (an expression costs ~30 bytes of NFA per byte of pattern).
const MAX_PATTERN_LEN: usize = 128 << 10;

/// How many prefix characters per template compile to a bounded repetition (`unit{0,n}` unrolls
/// into n copies of a few-KiB unit); prefixes beyond the budget, e.g. `{v:9999}`, are treated as
/// unbounded. The precision lost (accepting a longer value) has no practical consequence, and
/// the reference hub ignores prefixes altogether.
const PREFIX_BUDGET: u16 = 128;

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
    Prefix(u16),
}

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
    Ok(parts)
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

/// One value character that needs no further encoding: unreserved (plus reserved for `+` and
/// `#`), a pct-encoded triplet, or any non-ASCII character. RFC 6570 expands to URIs and so
/// pct-encodes non-ASCII, but Mercure topics are IRIs and expanders targeting IRIs (e.g.
/// iri-string's `IriSpec`) leave such characters as they are; we accept both forms.
const VALUE_CHAR: &str = r"(?:[A-Za-z0-9\-._~\x{80}-\x{10FFFF}]|%[0-9A-Fa-f]{2})";
const VALUE_CHAR_RESERVED: &str =
    r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=\x{80}-\x{10FFFF}]|%[0-9A-Fa-f]{2})";
/// What a prefix modifier counts as one character (RFC 6570 2.4.1 counts characters, not
/// octets): one literal character, or the pct-encoded UTF-8 sequence of one character (1 to 4
/// triplets, lead byte then continuation bytes), or any other single triplet, since expanders
/// count an undecodable triplet as one.
macro_rules! prefix_unit {
    ($class:literal) => {
        concat!(
            "(?:[",
            $class,
            r"]|%[0-9A-Fa-f]{2}",
            r"|%[CDcd][0-9A-Fa-f]%[89ABab][0-9A-Fa-f]",
            r"|%[Ee][0-9A-Fa-f](?:%[89ABab][0-9A-Fa-f]){2}",
            r"|%[Ff][0-7](?:%[89ABab][0-9A-Fa-f]){3})",
        )
    };
}
const PREFIX_UNIT: &str = prefix_unit!(r"A-Za-z0-9\-._~\x{80}-\x{10FFFF}");
const PREFIX_UNIT_RESERVED: &str =
    prefix_unit!(r"A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=\x{80}-\x{10FFFF}");

impl Expression<'_> {
    /// Appends the regex of everything this expression can expand to. The expansion is empty
    /// when every variable is undefined, otherwise `first` followed by the expansions of the
    /// defined variables, in order, joined by `sep` (RFC 6570 section 3.2.1).
    fn write_regex(&self, out: &mut String, prefix_budget: &mut u16) {
        let op = self.op;
        // The ordered, non-empty subsequences of items i.. joined by sep, built right to left as
        // `B(i) = I(i) | (?:I(i) sep)? B(i+1)`: B(i+1) appears once, so the pattern stays linear
        // in the number of variables (the naive alternation of all subsets is exponential).
        let sep = regex::escape(op.sep());
        let mut chain = String::new();
        for (i, var) in self.vars.iter().enumerate().rev() {
            let item = var.item_regex(op, prefix_budget);
            chain = if i + 1 == self.vars.len() {
                item
            } else {
                format!("(?:{item}|(?:{item}{sep})?{chain})")
            };
        }
        let _ = write!(out, "(?:{}{chain})?", regex::escape(op.first()));
    }
}

impl VarSpec<'_> {
    /// The regex of what this one defined variable expands to, whatever its value's type.
    fn item_regex(&self, op: Operator, prefix_budget: &mut u16) -> String {
        let (ch, unit) = if op.allow_reserved() {
            (VALUE_CHAR_RESERVED, PREFIX_UNIT_RESERVED)
        } else {
            (VALUE_CHAR, PREFIX_UNIT)
        };
        let value = format!("{ch}*");
        // A string, or a non-exploded list `a,b` or associative array `k1,v1,k2,v2`.
        let joined = format!("{value}(?:,{value})*");
        let mut prefixed = |n: u16| {
            // RFC 6570 2.4.1: prefixes do not apply to lists and associative arrays, so only the
            // string form is accepted; iri-string rejects such values, and so do we.
            if n <= *prefix_budget {
                *prefix_budget -= n;
                format!("{unit}{{0,{n}}}")
            } else {
                format!("{unit}*")
            }
        };
        let sep = regex::escape(op.sep());
        if !op.named() {
            return match self.modifier {
                Modifier::None => joined,
                Modifier::Prefix(n) => prefixed(n),
                // Exploded list `a<sep>b` or associative array `k1=v1<sep>k2=v2` (a string is a
                // one-item list).
                Modifier::Explode => {
                    format!("(?:{value}(?:{sep}{value})*|{value}={value}(?:{sep}{value}={value})*)")
                }
            };
        }
        // `;` writes `name` alone for an empty string (ifemp = ""), `?` and `&` write `name=`.
        // Some expanders (iri-string among them) write `;name=` for empty list items anyway, so
        // for `;` the `=` is always optional.
        let optional_eq = op == Operator::PathParam;
        let eq = |v: &str| {
            if optional_eq {
                format!("(?:={v})?")
            } else {
                format!("={v}")
            }
        };
        match self.modifier {
            Modifier::None => format!("{}{}", self.name_regex(), eq(&joined)),
            Modifier::Prefix(n) => format!("{}{}", self.name_regex(), eq(&prefixed(n))),
            Modifier::Explode => {
                // Exploded items are `name=v` for a list (or a string) but `key=v` for an
                // associative array, and keys are arbitrary: the name cannot be required.
                let item = format!("{value}{}", eq(&value));
                format!("{item}(?:{sep}{item})*")
            }
        }
    }

    /// The variable name as it appears in named expansions. Names may hold pct-encoded triplets,
    /// which some expanders (iri-string, in places) re-encode as `%25XX`: accept both spellings.
    fn name_regex(&self) -> String {
        let name = regex::escape(self.name);
        if self.name.contains('%') {
            format!(
                "(?:{name}|{})",
                regex::escape(&self.name.replace('%', "%25"))
            )
        } else {
            name
        }
    }
}

#[cfg(test)]
mod tests;
