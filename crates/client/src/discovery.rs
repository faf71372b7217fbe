//! Discovery: finding the hub of a resource, and its canonical topic, from its `Link` headers.
//!
//! A Mercure-enabled application answers with
//! `Link: <https://hub.example.com/.well-known/mercure>; rel="mercure"` (several hubs may be
//! listed) and may give the resource's canonical topic with `Link: <...>; rel="self"`. Links
//! follow RFC 8288: several per header, several headers, `rel` quoted or not and holding several
//! space-separated relation types, targets relative to the response's URL.
//!
//! ```
//! use herald_client::discovery::Discovery;
//! use reqwest::header::{HeaderMap, HeaderValue, LINK};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(
//!     LINK,
//!     HeaderValue::from_static(r#"</.well-known/mercure>; rel="mercure", <https://example.com/books/1>; rel="self""#),
//! );
//! let base = "https://example.com/books/1?format=json".parse().unwrap();
//! let found = Discovery::from_headers(&headers, &base).unwrap();
//! assert_eq!(found.hub().as_str(), "https://example.com/.well-known/mercure");
//! assert_eq!(found.topic.unwrap().as_str(), "https://example.com/books/1");
//! ```

use reqwest::Url;
use reqwest::header::{HeaderMap, LINK};

use crate::error::DiscoveryError;

/// What a resource advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The hubs (`rel="mercure"`), in the order given: the first is the preferred one. Never
    /// empty.
    pub hubs: Vec<Url>,
    /// The canonical topic (`rel="self"`), if given.
    pub topic: Option<Url>,
}

impl Discovery {
    /// The preferred hub.
    pub fn hub(&self) -> &Url {
        &self.hubs[0]
    }

    /// Reads the `Link` headers of a response fetched from `base` (relative targets are
    /// resolved against it).
    pub fn from_headers(headers: &HeaderMap, base: &Url) -> Result<Discovery, DiscoveryError> {
        let mut hubs = Vec::new();
        let mut topic = None;
        for value in headers.get_all(LINK) {
            // A header that is not valid text cannot hold a usable URL; read what is readable.
            let text = String::from_utf8_lossy(value.as_bytes());
            for link in parse_link_header(&text) {
                // A link with an anchor is about another resource.
                if link.param("anchor").is_some() {
                    continue;
                }
                let Ok(target) = base.join(&link.target) else {
                    continue;
                };
                if link.has_rel("mercure") && !hubs.contains(&target) {
                    hubs.push(target.clone());
                }
                if link.has_rel("self") && topic.is_none() {
                    topic = Some(target);
                }
            }
        }
        if hubs.is_empty() {
            return Err(DiscoveryError::NoHub {
                url: base.to_string(),
            });
        }
        Ok(Discovery { hubs, topic })
    }

    /// Reads the `Link` headers of `response`, resolved against its final URL (after
    /// redirects).
    pub fn from_response(response: &reqwest::Response) -> Result<Discovery, DiscoveryError> {
        Discovery::from_headers(response.headers(), response.url())
    }

    /// GETs `url` and reads its `Link` headers.
    pub async fn fetch(url: &str) -> Result<Discovery, DiscoveryError> {
        let client = crate::http_client_builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| DiscoveryError::Network {
                url: url.to_owned(),
                source,
            })?;
        Discovery::fetch_with(&client, url).await
    }

    /// GETs `url` with `client` and reads its `Link` headers.
    pub async fn fetch_with(
        client: &reqwest::Client,
        url: &str,
    ) -> Result<Discovery, DiscoveryError> {
        let parsed = Url::parse(url).map_err(|e| DiscoveryError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let response =
            client
                .get(parsed)
                .send()
                .await
                .map_err(|source| DiscoveryError::Network {
                    url: url.to_owned(),
                    source,
                })?;
        if !response.status().is_success() {
            return Err(DiscoveryError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        Discovery::from_response(&response)
    }
}

/// One link of a `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target, as written (possibly relative).
    pub target: String,
    /// The parameters, names lowercased, values unquoted, in order.
    pub params: Vec<(String, String)>,
}

impl Link {
    /// The first value of parameter `name` (RFC 8288: later occurrences are ignored).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether one of the relation types of `rel` is `rel_type` (case-insensitive).
    pub fn has_rel(&self, rel_type: &str) -> bool {
        self.param("rel").is_some_and(|rels| {
            rels.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case(rel_type))
        })
    }
}

/// Parses the value of a `Link` header (RFC 8288 §3) into its links. Malformed links are skipped,
/// the rest still parsed.
pub fn parse_link_header(value: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return links;
        }
        let Some(after_open) = rest.strip_prefix('<') else {
            rest = skip_to_next_link(rest);
            continue;
        };
        let Some(close) = after_open.find('>') else {
            return links;
        };
        let target = after_open[..close].trim().to_owned();
        rest = &after_open[close + 1..];
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start();
            let Some(after_semicolon) = rest.strip_prefix(';') else {
                break;
            };
            rest = after_semicolon.trim_start();
            let name_end = rest
                .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_whitespace())
                .unwrap_or(rest.len());
            let name = rest[..name_end].to_ascii_lowercase();
            rest = rest[name_end..].trim_start();
            let mut param_value = String::new();
            if let Some(after_equals) = rest.strip_prefix('=') {
                rest = after_equals.trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    let (text, after) = read_quoted(quoted);
                    param_value = text;
                    rest = after;
                } else {
                    let end = rest
                        .find(|c: char| c == ';' || c == ',' || c.is_whitespace())
                        .unwrap_or(rest.len());
                    param_value = rest[..end].to_owned();
                    rest = &rest[end..];
                }
            }
            // RFC 8187 `rel*`-style extended parameters are not used by Mercure; keep them as
            // written. An empty name is garbage.
            if !name.is_empty() {
                params.push((name, param_value));
            }
        }
        links.push(Link { target, params });
        if !rest.trim_start().starts_with(',') && !rest.trim().is_empty() {
            rest = skip_to_next_link(rest);
        }
    }
}

/// Reads a quoted string whose opening quote was consumed: its unescaped text and what follows
/// the closing quote.
fn read_quoted(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    (value, "")
}

/// Skips garbage up to the next comma that is outside quotes and angle brackets.
fn skip_to_next_link(text: &str) -> &str {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' if !in_angle => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => return &text[i + 1..],
            _ => {}
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn rels(links: &[Link]) -> Vec<(&str, Option<&str>)> {
        links
            .iter()
            .map(|l| (l.target.as_str(), l.param("rel")))
            .collect()
    }

    #[test]
    fn parses_several_links_quoted_and_unquoted() {
        let links = parse_link_header(
            r#"<https://hub.example.com/.well-known/mercure>; rel="mercure", </books/1>;rel=self ; type="application/ld+json""#,
        );
        assert_eq!(
            rels(&links),
            vec![
                (
                    "https://hub.example.com/.well-known/mercure",
                    Some("mercure")
                ),
                ("/books/1", Some("self")),
            ]
        );
        assert_eq!(links[1].param("type"), Some("application/ld+json"));
    }

    #[test]
    fn commas_and_semicolons_inside_targets_and_quotes_do_not_split() {
        let links = parse_link_header(
            r#"<https://example.com/a,b;c>; title="x, \"y\"; z"; rel="mercure", <https://two>; rel="alternate mercure""#,
        );
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].target, "https://example.com/a,b;c");
        assert_eq!(links[0].param("title"), Some(r#"x, "y"; z"#));
        assert!(links[0].has_rel("mercure"));
        assert!(links[1].has_rel("MERCURE"));
        assert!(links[1].has_rel("alternate"));
        assert!(!links[1].has_rel("self"));
    }

    #[test]
    fn garbage_is_skipped_and_the_rest_kept() {
        let links = parse_link_header(r#"garbage; rel="mercure", <https://ok>; rel=mercure, <"#);
        assert_eq!(rels(&links), vec![("https://ok", Some("mercure"))]);
        // Only the first `rel` counts.
        let links = parse_link_header(r#"<https://x>; rel=self; rel=mercure"#);
        assert!(!links[0].has_rel("mercure"));
    }

    #[test]
    fn discovery_reads_every_header_and_resolves_relative_targets() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            HeaderValue::from_static(r#"<https://cdn.example.com/style.css>; rel=preload"#),
        );
        headers.append(
            LINK,
            HeaderValue::from_static(
                r#"<../.well-known/mercure>; rel="mercure", <https://other.example.com/hub>; rel=mercure, <1>; rel="self""#,
            ),
        );
        let base: Url = "https://example.com/books/1".parse().unwrap();
        let found = Discovery::from_headers(&headers, &base).unwrap();
        assert_eq!(
            found.hubs.iter().map(Url::as_str).collect::<Vec<_>>(),
            vec![
                "https://example.com/.well-known/mercure",
                "https://other.example.com/hub"
            ]
        );
        assert_eq!(found.topic.unwrap().as_str(), "https://example.com/books/1");
    }

    #[test]
    fn no_mercure_link_is_an_error_naming_the_url() {
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_static(r#"</x>; rel="self""#));
        let base: Url = "https://example.com/books/1".parse().unwrap();
        let err = Discovery::from_headers(&headers, &base).unwrap_err();
        assert!(
            err.to_string().contains("https://example.com/books/1"),
            "{err}"
        );
        // An anchored link describes another resource.
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"</hub>; rel="mercure"; anchor="/elsewhere""#),
        );
        assert!(Discovery::from_headers(&headers, &base).is_err());
    }
}
