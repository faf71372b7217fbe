//! A drop-in for the reference hub's configuration: its Docker image's variables and its
//! Caddyfile's `mercure { ... }` block, turned into Herald [`Settings`].
//!
//! A deployment moving from the reference hub keeps its environment: `MERCURE_PUBLISHER_JWT_KEY`
//! and friends are read by `settings` directly (they are the env names of the key flags), and
//! this module reads the rest: `MERCURE_EXTRA_DIRECTIVES` (directives, one per line),
//! `SERVER_NAME` (the site address, which gives the listen address) and, with
//! `--mercure-config FILE`, the `mercure` block of a Caddyfile (parsed by `caddyfile`).
//!
//! Each directive with a Herald equivalent sets that setting (the table is in
//! docs/migrating-from-mercure.md, and [`apply`] is that table); the ones without are collected
//! in [`MercureSettings::not_applied`], which `serve` prints as one warning line at start.
//! What comes from here is the lowest layer of the settings: a Herald flag, environment variable
//! or `--config` key always wins over it.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;
use herald_hub::ConfigError;

use crate::caddyfile::{self, Directive};
use crate::settings::Settings;

/// The variable of the reference image holding extra directives, one per line.
pub(crate) const EXTRA_DIRECTIVES: &str = "MERCURE_EXTRA_DIRECTIVES";
/// The variable of the reference image holding the site address.
pub(crate) const SERVER_NAME: &str = "SERVER_NAME";

/// Where the reference hub's configuration comes from, besides the environment.
#[derive(Args, Debug, Default)]
pub(crate) struct MercureArgs {
    /// A Caddyfile of the reference Mercure hub: its `mercure { ... }` block (and the address of
    /// the site holding it) configure Herald, under every Herald setting. See
    /// docs/migrating-from-mercure.md.
    #[arg(long, env = "HERALD_MERCURE_CONFIG", value_name = "FILE")]
    pub mercure_config: Option<PathBuf>,
}

/// What the reference hub's configuration says, in Herald's terms.
#[derive(Debug, Default)]
pub(crate) struct MercureSettings {
    pub settings: Settings,
    /// For each setting set here, where it was written (for error messages).
    pub origins: HashMap<&'static str, String>,
    /// Directives (or parts of them) that Herald does not apply, as written.
    pub not_applied: Vec<String>,
}

/// Reads `--mercure-config`, then `MERCURE_EXTRA_DIRECTIVES`, then `SERVER_NAME` (later ones win).
pub(crate) fn load(args: &MercureArgs) -> Result<MercureSettings, ConfigError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    load_from(
        args.mercure_config.as_ref(),
        env(EXTRA_DIRECTIVES).as_deref(),
        env(SERVER_NAME).as_deref(),
    )
}

fn load_from(
    file: Option<&PathBuf>,
    extra_directives: Option<&str>,
    server_name: Option<&str>,
) -> Result<MercureSettings, ConfigError> {
    let mut out = MercureSettings::default();
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "mercure-config",
                format!("cannot read {shown}: {e}"),
                "check the path given to --mercure-config",
            )
        })?;
        let block = caddyfile::parse_mercure_block(&text)
            .map_err(|e| {
                ConfigError::new(
                    "mercure-config",
                    format!("{shown}: {e}"),
                    "fix the Caddyfile's syntax (a directive and its arguments per line, \
                     balanced braces and quotes)",
                )
            })?
            .ok_or_else(|| {
                ConfigError::new(
                    "mercure-config",
                    format!("{shown} has no mercure {{ ... }} block"),
                    "give the Caddyfile that configures the reference hub",
                )
            })?;
        if let Some(address) = &block.site_address {
            out.server_name(address, &format!("{shown} (site address {address})"));
        }
        for directive in &block.directives {
            let origin = format!("{shown}:{}", directive.line);
            out.apply(directive, &origin)
                .map_err(|(problem, fix)| ConfigError::new("mercure-config", problem, fix))?;
        }
    }
    if let Some(text) = extra_directives {
        let directives = caddyfile::parse_directives(text).map_err(|e| {
            ConfigError::new(
                EXTRA_DIRECTIVES,
                e.to_string(),
                "write one directive per line, e.g. anonymous, cors_origins https://app.example.com",
            )
        })?;
        for directive in &directives {
            let origin = format!("{EXTRA_DIRECTIVES} (line {})", directive.line);
            out.apply(directive, &origin)
                .map_err(|(problem, fix)| ConfigError::new(EXTRA_DIRECTIVES, problem, fix))?;
        }
    }
    if let Some(name) = server_name {
        out.server_name(name, &format!("{SERVER_NAME}={name}"));
    }
    Ok(out)
}

impl MercureSettings {
    fn set(&mut self, setting: &'static str, origin: &str, directive: &Directive) {
        let written = std::iter::once(directive.name.as_str())
            .chain(directive.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        self.origins
            .insert(setting, format!("{origin}: `{written}`"));
    }

    fn skip(&mut self, directive: &Directive, why: &str) {
        let mut written = std::iter::once(directive.name.as_str())
            .chain(directive.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        if directive.block.is_some() {
            written.push_str(" { ... }");
        }
        self.not_applied.push(format!("{written} ({why})"));
    }

    /// Applies one directive: the table directive -> Herald setting. An `Err` is a directive
    /// that cannot mean anything (missing argument): the problem and the fix.
    fn apply(&mut self, d: &Directive, origin: &str) -> Result<(), (String, String)> {
        let needs = |what: &str, example: &str| {
            (
                format!("{origin}: {} needs {what}", d.name),
                format!("write it as `{} {example}`", d.name),
            )
        };
        let first = || d.args.first().cloned();
        let s = &mut self.settings;
        match d.name.as_str() {
            "anonymous" => {
                s.anonymous = true;
                self.set("anonymous", origin, d);
            }
            "subscriptions" => {
                s.subscriptions = true;
                self.set("subscriptions", origin, d);
            }
            "ui" => {
                s.ui = true;
                self.set("ui", origin, d);
            }
            "demo" => {
                s.ui = true;
                self.set("ui", origin, d);
                self.skip(d, "the web UI is served, the demo endpoints are not");
            }
            "cors_origins" => {
                if d.args.is_empty() {
                    return Err(needs("origins", "https://app.example.com"));
                }
                s.cors_origins.clone_from(&d.args);
                self.set("cors-origin", origin, d);
            }
            "publish_origins" => {
                if d.args.is_empty() {
                    return Err(needs("origins", "https://app.example.com"));
                }
                let (any, listed): (Vec<String>, Vec<String>) =
                    d.args.iter().cloned().partition(|o| o == "*");
                s.publish_origins = listed;
                self.set("publish-origin", origin, d);
                if !any.is_empty() {
                    self.not_applied.push(
                        "publish_origins * (cookie-authenticated publishing from any site is \
                         refused: list the origins)"
                            .into(),
                    );
                }
            }
            "cookie_name" => {
                s.cookie_name =
                    Some(first().ok_or_else(|| needs("a name", "mercureAuthorization"))?);
                self.set("cookie-name", origin, d);
            }
            "heartbeat" => {
                s.heartbeat = Some(first().ok_or_else(|| needs("a duration", "40s"))?);
                self.set("heartbeat", origin, d);
            }
            "write_timeout" => {
                s.write_timeout = Some(first().ok_or_else(|| needs("a duration", "600s"))?);
                self.set("write-timeout", origin, d);
            }
            "max_request_body_size" => {
                s.max_body_size = Some(first().ok_or_else(|| needs("a size", "1MB"))?);
                self.set("max-body-size", origin, d);
            }
            "publisher_jwt" | "subscriber_jwt" => {
                let key = first().ok_or_else(|| needs("a key", "KEY [ALGORITHM]"))?;
                let alg = d.args.get(1).cloned();
                if d.name == "publisher_jwt" {
                    s.publisher_jwt_key = Some(key);
                    s.publisher_jwt_alg = alg;
                    self.set("publisher-jwt-key", origin, d);
                    self.set("publisher-jwt-alg", origin, d);
                } else {
                    s.subscriber_jwt_key = Some(key);
                    s.subscriber_jwt_alg = alg;
                    self.set("subscriber-jwt-key", origin, d);
                    self.set("subscriber-jwt-alg", origin, d);
                }
            }
            "publisher_jwks_url" => {
                s.publisher_jwks = Some(first().ok_or_else(|| needs("a URL", "https://…"))?);
                self.set("publisher-jwks", origin, d);
            }
            "subscriber_jwks_url" => {
                s.subscriber_jwks = Some(first().ok_or_else(|| needs("a URL", "https://…"))?);
                self.set("subscriber-jwks", origin, d);
            }
            "transport_url" => {
                let url = first().ok_or_else(|| needs("a URL", "bolt://mercure.db"))?;
                self.transport_url(&url, d, origin);
            }
            "transport" => {
                let name = first().ok_or_else(|| needs("a name", "bolt"))?;
                self.transport(&name, d, origin);
            }
            "dispatch_timeout" | "publish_timeout" => self.skip(
                d,
                "Herald never blocks a publish on a slow subscriber: it disconnects the \
                 subscriber past --subscriber-queue-size",
            ),
            "protocol_version_compatibility" => self.skip(d, "Herald speaks the current protocol"),
            "topic_selector_cache" | "subscriber_list_cache_size" | "lru_cache" | "cache" => {
                self.skip(d, "Herald's caches size themselves")
            }
            "publisher_jwks_algorithms" | "subscriber_jwks_algorithms" => {
                self.skip(d, "the key's own type decides")
            }
            "name" => self.skip(d, "one hub per process"),
            _ => self.skip(d, "not a directive Herald knows"),
        }
        Ok(())
    }

    /// `transport_url`: `local://` keeps no history on disk, `bolt://` is the on-disk history.
    fn transport_url(&mut self, url: &str, d: &Directive, origin: &str) {
        let scheme = url.split("://").next().unwrap_or("");
        match scheme {
            "local" => {
                self.settings.transport = Some("memory".into());
                self.set("transport", origin, d);
            }
            "bolt" => {
                self.settings.transport = Some("embedded".into());
                self.set("transport", origin, d);
                let size = url
                    .split_once('?')
                    .into_iter()
                    .flat_map(|(_, query)| query.split('&'))
                    .find_map(|pair| pair.strip_prefix("size="));
                self.history_size(size, d, origin);
                self.not_applied.push(format!(
                    "the path of {url} (history is in --data-dir, default herald-data/)"
                ));
            }
            _ => self.skip(d, "use --transport with a redis:// URL for a cluster"),
        }
    }

    /// `transport NAME { options }`.
    fn transport(&mut self, name: &str, d: &Directive, origin: &str) {
        let options = d.block.clone().unwrap_or_default();
        match name {
            "local" => {
                self.settings.transport = Some("memory".into());
                self.set("transport", origin, d);
            }
            "bolt" => {
                self.settings.transport = Some("embedded".into());
                self.set("transport", origin, d);
                for option in &options {
                    match option.name.as_str() {
                        "size" => {
                            self.history_size(option.args.first().map(String::as_str), d, origin)
                        }
                        _ => self.skip(option, "history is in --data-dir, default herald-data/"),
                    }
                }
            }
            _ => self.skip(d, "use --transport with a redis:// URL for a cluster"),
        }
    }

    /// Bolt's `size`: `0` means unbounded there, so it leaves Herald's bound alone.
    fn history_size(&mut self, size: Option<&str>, d: &Directive, origin: &str) {
        match size {
            Some("0") | None => {}
            Some(size) => {
                self.settings.history_size = Some(size.to_owned());
                self.set("history-size", origin, d);
            }
        }
    }

    /// A site address (`SERVER_NAME`, or the Caddyfile's) as a listen address, where it maps to
    /// one; otherwise it is named in the warning.
    fn server_name(&mut self, address: &str, origin: &str) {
        match listen_address(address) {
            Ok((listen, note)) => {
                self.settings.listen = Some(listen);
                self.origins.insert("listen", origin.to_owned());
                if let Some(note) = note {
                    self.not_applied.push(format!("{origin} ({note})"));
                }
            }
            Err(why) => self.not_applied.push(format!("{origin} ({why})")),
        }
    }
}

/// The listen address a Caddy site address stands for, and what of it Herald does not do.
///
/// Caddy listens on every interface for a site; Herald does so too, except for a loopback name
/// (`localhost`, `127.0.0.1`, `[::1]`), which stays on loopback. A name without a port means
/// HTTPS on 443 with an automatic certificate in Caddy, which Herald does not do: that one is
/// not applied.
fn listen_address(address: &str) -> Result<(String, Option<String>), String> {
    let mut addresses = address.split([',', ' ']).filter(|a| !a.is_empty());
    let first = addresses.next().ok_or("an empty address")?;
    let others = addresses.count();
    let (scheme, rest) = match first.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, first),
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (authority, None),
    };
    let port = match (port, scheme) {
        (Some(port), _) => port,
        (None, Some("http")) => "80",
        (None, _) => {
            return Err(
                "without a port the reference hub serves HTTPS on 443 with its own certificate; \
                 Herald serves HTTP: give a port (SERVER_NAME=:80) or --listen, and terminate \
                 TLS in front"
                    .into(),
            );
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" | "127.0.0.1" => "127.0.0.1".to_owned(),
        "::1" => "[::1]".to_owned(),
        _ => match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            Ok(ip) => ip.to_string(),
            Err(_) => "0.0.0.0".to_owned(),
        },
    };
    let mut notes = Vec::new();
    if scheme == Some("https") {
        notes.push("served as plain HTTP: terminate TLS in front".to_owned());
    }
    if others > 0 {
        notes.push(format!(
            "only the first address is used, {others} more ignored"
        ));
    }
    Ok((
        format!("{ip}:{port}"),
        (!notes.is_empty()).then(|| notes.join("; ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(text: &str) -> MercureSettings {
        load_from(None, Some(text), None).unwrap()
    }

    #[test]
    fn server_names_become_listen_addresses() {
        let listen = |a| listen_address(a).map(|(l, _)| l);
        assert_eq!(listen(":80").unwrap(), "0.0.0.0:80");
        assert_eq!(listen("localhost:3000").unwrap(), "127.0.0.1:3000");
        assert_eq!(listen("http://example.com").unwrap(), "0.0.0.0:80");
        assert_eq!(listen("http://localhost:8080/").unwrap(), "127.0.0.1:8080");
        assert_eq!(listen("[::1]:3000").unwrap(), "[::1]:3000");
        assert_eq!(listen("10.0.0.5:81").unwrap(), "10.0.0.5:81");
        assert!(listen("localhost").is_err());
        assert!(listen("example.com").is_err());
        let (_, note) = listen_address("https://example.com:8443, :80").unwrap();
        let note = note.unwrap();
        assert!(note.contains("TLS") && note.contains("1 more"), "{note}");
    }

    #[test]
    fn directives_with_an_equivalent_are_applied() {
        let m = directives(
            "anonymous\nsubscriptions\nui\ncors_origins https://a.example https://b.example\n\
             publish_origins https://a.example\ncookie_name auth\nheartbeat 15s\n\
             write_timeout 1m\nmax_request_body_size 2MB\npublisher_jwt pk RS256\n\
             subscriber_jwt sk\ntransport local\n",
        );
        let s = &m.settings;
        assert!(s.anonymous && s.subscriptions && s.ui);
        assert_eq!(s.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.publish_origins, ["https://a.example"]);
        assert_eq!(s.cookie_name.as_deref(), Some("auth"));
        assert_eq!(s.heartbeat.as_deref(), Some("15s"));
        assert_eq!(s.write_timeout.as_deref(), Some("1m"));
        assert_eq!(s.max_body_size.as_deref(), Some("2MB"));
        assert_eq!(s.publisher_jwt_key.as_deref(), Some("pk"));
        assert_eq!(s.publisher_jwt_alg.as_deref(), Some("RS256"));
        assert_eq!(s.subscriber_jwt_key.as_deref(), Some("sk"));
        assert_eq!(s.subscriber_jwt_alg, None);
        assert_eq!(s.transport.as_deref(), Some("memory"));
        assert!(m.not_applied.is_empty(), "{:?}", m.not_applied);
        assert!(m.origins["heartbeat"].contains("`heartbeat 15s`"));
    }

    #[test]
    fn directives_without_one_are_listed() {
        let m = directives(
            "dispatch_timeout 5s\nprotocol_version_compatibility 7\ndemo\nfrobnicate\n\
             publish_origins *\ntransport bolt {\n path /data/mercure.db\n size 500\n}\n",
        );
        let listed = m.not_applied.join(" | ");
        for name in [
            "dispatch_timeout 5s",
            "protocol_version_compatibility 7",
            "demo",
            "frobnicate",
            "publish_origins *",
            "path /data/mercure.db",
        ] {
            assert!(listed.contains(name), "{name} missing from {listed}");
        }
        assert!(m.settings.ui, "demo serves the UI");
        assert_eq!(m.settings.transport.as_deref(), Some("embedded"));
        assert_eq!(m.settings.history_size.as_deref(), Some("500"));
    }

    #[test]
    fn a_directive_missing_its_argument_is_refused_naming_the_variable() {
        let e = load_from(None, Some("anonymous\nheartbeat\n"), None).unwrap_err();
        assert_eq!(e.setting, EXTRA_DIRECTIVES);
        assert!(
            e.problem.contains("line 2") && e.problem.contains("heartbeat"),
            "{e}"
        );
    }
}
