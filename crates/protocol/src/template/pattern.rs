//! The regex a template compiles to: what each expression can expand to (RFC 6570 section 3),
//! between the literal prefix and suffix that [`split_literals`] takes off.

use std::fmt::Write as _;

use super::{Expression, Modifier, Operator, Part, VarSpec};

/// The template's literal prefix, the parts in between, and its literal suffix. Every expansion
/// is the prefix, then an expansion of the middle, then the suffix.
pub(super) fn split_literals<'p, 'a>(parts: &'p [Part<'a>]) -> (&'a str, &'p [Part<'a>], &'a str) {
    let mut middle = parts;
    let mut prefix = "";
    let mut suffix = "";
    if let [Part::Literal(lit), rest @ ..] = middle {
        prefix = lit;
        middle = rest;
    }
    if let [rest @ .., Part::Literal(lit)] = middle {
        suffix = lit;
        middle = rest;
    }
    (prefix, middle, suffix)
}

/// The anchored regex of `parts`.
pub(super) fn regex_of(parts: &[Part<'_>]) -> String {
    let mut pattern = String::from(r"\A");
    for part in parts {
        match part {
            Part::Literal(lit) => pattern.push_str(&regex_syntax::escape(lit)),
            Part::Expression(expr) => expr.write_regex(&mut pattern),
        }
    }
    pattern.push_str(r"\z");
    pattern
}

/// One value character that needs no further encoding: unreserved (plus reserved for `+` and
/// `#`), a pct-encoded triplet, or any non-ASCII character. RFC 6570 expands to URIs and so
/// pct-encodes non-ASCII, but Mercure topics are IRIs and expanders targeting IRIs (e.g.
/// iri-string's `IriSpec`) leave such characters as they are; we accept both forms.
pub(super) const VALUE_CHAR: &str = r"(?:[A-Za-z0-9\-._~\x{80}-\x{10FFFF}]|%[0-9A-Fa-f]{2})";
pub(super) const VALUE_CHAR_RESERVED: &str =
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
pub(super) const PREFIX_UNIT: &str = prefix_unit!(r"A-Za-z0-9\-._~\x{80}-\x{10FFFF}");
pub(super) const PREFIX_UNIT_RESERVED: &str =
    prefix_unit!(r"A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=\x{80}-\x{10FFFF}");

impl Expression<'_> {
    /// Appends the regex of everything this expression can expand to. The expansion is empty
    /// when every variable is undefined, otherwise `first` followed by the expansions of the
    /// defined variables, in order, joined by `sep` (RFC 6570 section 3.2.1).
    pub(super) fn write_regex(&self, out: &mut String) {
        let op = self.op;
        // The ordered, non-empty subsequences of items i.. joined by sep, built right to left as
        // `B(i) = I(i) | (?:I(i) sep)? B(i+1)`: B(i+1) appears once, so the pattern stays linear
        // in the number of variables (the naive alternation of all subsets is exponential).
        let sep = regex_syntax::escape(op.sep());
        let mut chain = String::new();
        for (i, var) in self.vars.iter().enumerate().rev() {
            let item = var.item_regex(op);
            chain = if i + 1 == self.vars.len() {
                item
            } else {
                format!("(?:{item}|(?:{item}{sep})?{chain})")
            };
        }
        let _ = write!(out, "(?:{}{chain})?", regex_syntax::escape(op.first()));
    }
}

impl VarSpec<'_> {
    /// The regex of what this one defined variable expands to, whatever its value's type.
    fn item_regex(&self, op: Operator) -> String {
        let (ch, unit) = if op.allow_reserved() {
            (VALUE_CHAR_RESERVED, PREFIX_UNIT_RESERVED)
        } else {
            (VALUE_CHAR, PREFIX_UNIT)
        };
        let value = format!("{ch}*");
        // A string, or a non-exploded list `a,b` or associative array `k1,v1,k2,v2`.
        let joined = format!("{value}(?:,{value})*");
        // RFC 6570 2.4.1: prefixes do not apply to lists and associative arrays, so only the
        // string form is accepted; iri-string rejects such values, and so do we.
        let prefixed = |n: Option<u16>| match n {
            Some(n) => format!("{unit}{{0,{n}}}"),
            None => format!("{unit}*"),
        };
        let sep = regex_syntax::escape(op.sep());
        if !op.named() {
            return match self.modifier {
                Modifier::None => joined,
                Modifier::Prefix(n) => prefixed(Some(n)),
                Modifier::UnboundedPrefix => prefixed(None),
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
            Modifier::Prefix(n) => format!("{}{}", self.name_regex(), eq(&prefixed(Some(n)))),
            Modifier::UnboundedPrefix => format!("{}{}", self.name_regex(), eq(&prefixed(None))),
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
        let name = regex_syntax::escape(self.name);
        if self.name.contains('%') {
            format!(
                "(?:{name}|{})",
                regex_syntax::escape(&self.name.replace('%', "%25"))
            )
        } else {
            name
        }
    }
}
