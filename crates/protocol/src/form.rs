//! `application/x-www-form-urlencoded` decoding that refuses invalid UTF-8.
//!
//! The `form_urlencoded` crate decodes lossily (invalid bytes become U+FFFD). Mercure carries
//! text, and silently altering a publisher's data is worse than refusing it, so both the publish
//! form and the subscribe query go through this strict decoder instead.

use std::str::Utf8Error;

use percent_encoding::percent_decode;

/// Iterates over the `name=value` pairs of a form or query string, percent-decoded, `+` read as
/// a space. Empty pairs (`a=1&&b=2`) are skipped; a pair without `=` has an empty value.
pub fn pairs(input: &[u8]) -> impl Iterator<Item = Result<(String, String), Utf8Error>> + '_ {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
}

fn decode(component: &[u8]) -> Result<String, Utf8Error> {
    let spaced: Vec<u8> = component
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    Ok(percent_decode(&spaced).decode_utf8()?.into_owned())
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
                ("c".into(), String::new()),
                ("d".into(), "✓".into())
            ]
        );
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert!(pairs(b"a=%FF").next().unwrap().is_err());
    }
}
