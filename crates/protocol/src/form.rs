//! `application/x-www-form-urlencoded` decoding that refuses invalid UTF-8.
//!
//! The `form_urlencoded` crate decodes lossily (invalid bytes become U+FFFD). Mercure carries
//! text, and silently altering a publisher's data is worse than refusing it, so both the publish
//! form and the subscribe query go through this strict decoder instead.

use std::borrow::Cow;
use std::str::Utf8Error;

/// Iterates over the `name=value` pairs of a form or query string, percent-decoded, `+` read as
/// a space. Empty pairs (`a=1&&b=2`) are skipped; a pair without `=` has an empty value.
pub fn pairs(
    input: &[u8],
) -> impl Iterator<Item = Result<(Cow<'_, str>, Cow<'_, str>), Utf8Error>> + '_ {
    raw_pairs(input).map(|pair| Ok((pair.name()?, pair.value()?)))
}

/// The pairs of a form or query string, not yet decoded: for a reader that wants a few of them.
/// A subscription's query is read several times (its edition, its token, its selectors), and
/// most readers only look at the names.
pub fn raw_pairs(input: &[u8]) -> impl Iterator<Item = RawPair<'_>> + '_ {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => RawPair {
                name: &pair[..eq],
                value: &pair[eq + 1..],
            },
            None => RawPair {
                name: pair,
                value: &[],
            },
        })
}

/// One `name=value` pair of a form, as it was sent.
#[derive(Clone, Copy, Debug)]
pub struct RawPair<'a> {
    name: &'a [u8],
    value: &'a [u8],
}

impl<'a> RawPair<'a> {
    /// The name, decoded.
    pub fn name(&self) -> Result<Cow<'a, str>, Utf8Error> {
        decode(self.name)
    }

    /// The value, decoded.
    pub fn value(&self) -> Result<Cow<'a, str>, Utf8Error> {
        decode(self.value)
    }
}

/// Decodes one component: borrowed when there is nothing to decode, else copied once into a
/// string of its decoded size (kept as it is, a topic is not reallocated to fit).
fn decode(component: &[u8]) -> Result<Cow<'_, str>, Utf8Error> {
    let escapes = (0..component.len())
        .filter(|&i| component[i] == b'%' && escaped(&component[i + 1..]).is_some())
        .count();
    if escapes == 0 && !component.contains(&b'+') {
        return std::str::from_utf8(component).map(Cow::Borrowed);
    }
    let mut decoded = Vec::with_capacity(component.len() - 2 * escapes);
    let mut rest = component;
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        decoded.push(match b {
            b'+' => b' ',
            // A `%` not followed by two hex digits stands for itself (the URL standard's
            // percent-decode, as `percent_encoding` reads it).
            b'%' => match escaped(rest) {
                Some(byte) => {
                    rest = &rest[2..];
                    byte
                }
                None => b'%',
            },
            b => b,
        });
    }
    match String::from_utf8(decoded) {
        Ok(text) => Ok(Cow::Owned(text)),
        Err(e) => Err(e.utf8_error()),
    }
}

/// The byte two hex digits at the start of `after_percent` stand for.
fn escaped(after_percent: &[u8]) -> Option<u8> {
    Some(hex(after_percent.first())? << 4 | hex(after_percent.get(1))?)
}

fn hex(digit: Option<&u8>) -> Option<u8> {
    (*digit? as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let got: Vec<_> = pairs(b"a=1&b=x+y%2Fz&&c&d=%E2%9C%93")
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y/z".into()),
                ("c".into(), "".into()),
                ("d".into(), "✓".into())
            ]
        );
    }

    #[test]
    fn decodes_as_percent_encoding_does() {
        for input in [
            &b"plain"[..],
            b"a+b",
            b"%2F%2f%",
            b"%4",
            b"%zz%41",
            b"100%",
            b"%E2%9C%93+ok",
            b"+%2B+",
        ] {
            let spaced: Vec<u8> = input
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            let expected = percent_encoding::percent_decode(&spaced)
                .decode_utf8()
                .unwrap();
            let decoded = decode(input).unwrap();
            assert_eq!(decoded, expected, "{input:?}");
            if let Cow::Owned(owned) = decoded {
                assert_eq!(owned.capacity(), owned.len(), "{input:?}: sized to fit");
            }
        }
        assert!(matches!(decode(b"plain").unwrap(), Cow::Borrowed("plain")));
    }

    proptest::proptest! {
        /// The decoder agrees with `percent_encoding` (after `+` to space) on any bytes made
        /// of the characters that matter to it.
        #[test]
        fn agrees_with_percent_encoding(input in proptest::collection::vec(
            proptest::sample::select(b"%+aF09z\xE2\x9C\x93\xFF".to_vec()), 0..24,
        )) {
            let spaced: Vec<u8> = input
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            let expected = percent_encoding::percent_decode(&spaced).decode_utf8();
            match (decode(&input), expected) {
                (Ok(got), Ok(expected)) => proptest::prop_assert_eq!(got, expected),
                (Err(_), Err(_)) => {}
                (got, expected) => proptest::prop_assert!(false, "{got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert!(pairs(b"a=%FF").next().unwrap().is_err());
    }
}
