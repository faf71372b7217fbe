//! Just enough of Caddy's Caddyfile syntax to read the reference hub's `mercure { ... }` block.
//!
//! Users of the reference hub (a Caddy module) configure it with a Caddyfile, or with the
//! image's `MERCURE_EXTRA_DIRECTIVES`, which is pasted into that file's `mercure` block. This
//! module turns such text into [`Directive`]s; `mercure_compat` decides what each one means for
//! Herald. It is a small hand parser, not Caddy: words, `"quoted"` and `` `backtick` ``
//! arguments, `#` comments, `{$VAR}` / `{$VAR:default}` (replaced in the text before
//! tokenizing, as Caddy does) and `{env.VAR}` (replaced in a word) placeholders, and braces.
//! A nested block inside the `mercure` block (`transport bolt { ... }`) is kept as the
//! directive's [`Directive::block`] so the caller can read or skip it; nothing else of Caddy
//! (snippets, imports, matchers) is understood.

/// One line of a `mercure` block: `name arg...`, and the lines of its nested block if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// Line number (1-based) in the text it came from.
    pub line: usize,
    /// The directives of a `{ ... }` block opened on the same line, if any.
    pub block: Option<Vec<Directive>>,
}

/// The `mercure` block of a Caddyfile, and the address of the site that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MercureBlock {
    /// The first site address of the enclosing site block (`localhost:3000`, `:80`, ...), if the
    /// block sits in one.
    pub site_address: Option<String>,
    pub directives: Vec<Directive>,
}

/// A syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

#[derive(Debug, Clone)]
struct Located {
    token: Token,
    line: usize,
}

/// Parses directives given one per line, as in `MERCURE_EXTRA_DIRECTIVES` (the body of a
/// `mercure` block without its braces).
pub(crate) fn parse_directives(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let tokens = tokenize(&substitute_env(text))?;
    let mut position = 0;
    let directives = block_body(&tokens, &mut position, false)?;
    Ok(directives)
}

/// Finds and parses the first `mercure { ... }` block of a whole Caddyfile.
pub(crate) fn parse_mercure_block(text: &str) -> Result<Option<MercureBlock>, SyntaxError> {
    let tokens = tokenize(&substitute_env(text))?;
    // The words before each open brace still open: a site block's are its addresses.
    let mut stack: Vec<Vec<String>> = Vec::new();
    let mut line_words: Vec<String> = Vec::new();
    let mut last_line = 0;
    let mut i = 0;
    while i < tokens.len() {
        let Located { token, line } = &tokens[i];
        if *line != last_line {
            line_words.clear();
            last_line = *line;
        }
        match token {
            Token::Word(word) => line_words.push(word.clone()),
            Token::Open if line_words.last().map(String::as_str) == Some("mercure") => {
                let mut position = i + 1;
                let directives = block_body(&tokens, &mut position, true)?;
                let site_address = stack.iter().rev().find_map(|words| words.first().cloned());
                return Ok(Some(MercureBlock {
                    site_address: site_address.map(|a| a.trim_end_matches(',').to_owned()),
                    directives,
                }));
            }
            Token::Open => stack.push(std::mem::take(&mut line_words)),
            Token::Close => {
                stack.pop();
            }
        }
        i += 1;
    }
    Ok(None)
}

/// Directives until the closing brace (when `braced`) or the end. Leaves `position` after the
/// closing brace.
fn block_body(
    tokens: &[Located],
    position: &mut usize,
    braced: bool,
) -> Result<Vec<Directive>, SyntaxError> {
    let mut directives: Vec<Directive> = Vec::new();
    while let Some(Located { token, line }) = tokens.get(*position) {
        *position += 1;
        match token {
            Token::Close if braced => return Ok(directives),
            Token::Close => {
                return Err(SyntaxError {
                    line: *line,
                    problem: "a } closes a block that was never opened".into(),
                });
            }
            Token::Open => match directives.last_mut() {
                Some(last) if last.line == *line && last.block.is_none() => {
                    last.block = Some(block_body(tokens, position, true)?);
                }
                _ => {
                    return Err(SyntaxError {
                        line: *line,
                        problem: "a { must follow a directive on its line".into(),
                    });
                }
            },
            Token::Word(word) => match directives.last_mut() {
                Some(last) if last.line == *line && last.block.is_none() => {
                    last.args.push(word.clone())
                }
                _ => directives.push(Directive {
                    name: word.clone(),
                    args: Vec::new(),
                    line: *line,
                    block: None,
                }),
            },
        }
    }
    if braced {
        let line = tokens.last().map_or(1, |t| t.line);
        return Err(SyntaxError {
            line,
            problem: "a { block is never closed: add the missing }".into(),
        });
    }
    Ok(directives)
}

/// `{$VAR}` and `{$VAR:default}`, replaced in the text before tokenizing (Caddy's own rule, so
/// that `{$MERCURE_EXTRA_DIRECTIVES}` may expand to several lines).
fn substitute_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{$") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let value = std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `{env.VAR}` inside a word, replaced by the variable's value (empty if unset).
fn substitute_placeholders(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(start) = rest.find("{env.") {
        let after = &rest[start + "{env.".len()..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&std::env::var(&after[..end]).unwrap_or_default());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn tokenize(text: &str) -> Result<Vec<Located>, SyntaxError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '"' | '`' => {
                let quote = c;
                let start_line = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(SyntaxError {
                                line: start_line,
                                problem: format!("a {quote} quote is never closed"),
                            });
                        }
                        Some('\\') if quote == '"' && chars.peek() == Some(&'"') => {
                            word.push('"');
                            chars.next();
                        }
                        Some(c) if c == quote => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            word.push(c);
                        }
                    }
                }
                tokens.push(Located {
                    token: Token::Word(substitute_placeholders(&word)),
                    line: start_line,
                });
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                let token = match word.as_str() {
                    "{" => Token::Open,
                    "}" => Token::Close,
                    _ => {
                        let word = substitute_placeholders(&word);
                        // A placeholder for an unset variable leaves no argument, as in Caddy.
                        if word.is_empty() {
                            continue;
                        }
                        Token::Word(word)
                    }
                };
                tokens.push(Located { token, line });
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(directives: &[Directive]) -> Vec<(&str, Vec<&str>)> {
        directives
            .iter()
            .map(|d| (d.name.as_str(), d.args.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn directives_one_per_line_with_quotes_and_comments() {
        let text = "anonymous\n# a comment\ncors_origins https://a.example \"https://b.example\"\n\
                    heartbeat 15s # trailing\npublisher_jwt `key with spaces` HS256\n";
        let directives = parse_directives(text).unwrap();
        assert_eq!(
            names(&directives),
            [
                ("anonymous", vec![]),
                (
                    "cors_origins",
                    vec!["https://a.example", "https://b.example"]
                ),
                ("heartbeat", vec!["15s"]),
                ("publisher_jwt", vec!["key with spaces", "HS256"]),
            ]
        );
        assert_eq!(directives[2].line, 4);
    }

    #[test]
    fn a_nested_block_is_kept_with_its_directive() {
        let text = "transport bolt {\n  path /data/mercure.db\n  size 1000\n}\nui\n";
        let directives = parse_directives(text).unwrap();
        assert_eq!(
            names(&directives),
            [("transport", vec!["bolt"]), ("ui", vec![])]
        );
        let block = directives[0].block.as_ref().unwrap();
        assert_eq!(
            names(block),
            [("path", vec!["/data/mercure.db"]), ("size", vec!["1000"])]
        );
    }

    #[test]
    fn the_mercure_block_of_a_caddyfile_and_its_site_address() {
        let text = "{\n  order mercure after encode\n}\n\nlocalhost:3000, example.com {\n  \
                    encode zstd gzip\n  mercure {\n    anonymous\n    subscriptions\n  }\n  \
                    respond \"Not Found\" 404\n}\n";
        let block = parse_mercure_block(text).unwrap().unwrap();
        assert_eq!(block.site_address.as_deref(), Some("localhost:3000"));
        assert_eq!(
            names(&block.directives),
            [("anonymous", vec![]), ("subscriptions", vec![])]
        );
        assert_eq!(
            parse_mercure_block("localhost {\n respond 404\n}\n").unwrap(),
            None
        );
    }

    #[test]
    fn unbalanced_braces_and_quotes_are_syntax_errors_with_their_line() {
        let e = parse_mercure_block("site {\n mercure {\n  anonymous\n").unwrap_err();
        assert!(e.problem.contains("never closed"), "{e}");
        let e = parse_directives("anonymous\npublisher_jwt \"open").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_directives("}\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn placeholders_read_the_environment() {
        // PATH is set in every test environment; an unset variable leaves no argument.
        let path = std::env::var("PATH").unwrap();
        let directives =
            parse_directives("cookie_name {env.PATH}\npublisher_jwt k {env.HERALD_SURELY_UNSET}\n")
                .unwrap();
        assert_eq!(directives[0].args, [path]);
        assert_eq!(directives[1].args, ["k"]);
        let directives = parse_directives("cookie_name {$HERALD_SURELY_UNSET:fallback}").unwrap();
        assert_eq!(directives[0].args, ["fallback"]);
    }
}
