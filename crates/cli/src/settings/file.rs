//! The `--config` file: reading its TOML, and layering it under flags and environment.
//!
//! [`Settings::from_file`] reads the file into the same [`Settings`] the flags fill (its keys
//! are the flag names), reporting a bad file as one line with the line, column and key;
//! [`Settings::or`] then fills what flags and environment left unset from it: the file's
//! place in the precedence the parent (`settings.rs`) describes.

use std::path::Path;

use herald_hub::ConfigError;

use super::{SettingError, Settings};

impl Settings {
    /// Reads a TOML file of settings.
    pub(crate) fn from_file(path: &Path) -> Result<Settings, SettingError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "config",
                format!("cannot read {}: {e}", path.display()),
                "check the path given to --config",
            )
        })?;
        toml::from_str(&text).map_err(|e| {
            ConfigError::new(
                "config",
                format!(
                    "{}{}: {}",
                    path.display(),
                    toml_location(&text, e.span()),
                    e.message().trim_end()
                ),
                "keys are the flag names without dashes in front, e.g. listen = \"0.0.0.0:3000\"",
            )
        })
    }

    /// Fills what `self` (flags and environment) left unset from `file`.
    pub(crate) fn or(self, file: Settings) -> Settings {
        let list = |a: Vec<String>, b: Vec<String>| if a.is_empty() { b } else { a };
        Settings {
            listen: self.listen.or(file.listen),
            jwt_key: self.jwt_key.or(file.jwt_key),
            jwt_alg: self.jwt_alg.or(file.jwt_alg),
            publisher_jwt_key: self.publisher_jwt_key.or(file.publisher_jwt_key),
            publisher_jwt_alg: self.publisher_jwt_alg.or(file.publisher_jwt_alg),
            subscriber_jwt_key: self.subscriber_jwt_key.or(file.subscriber_jwt_key),
            subscriber_jwt_alg: self.subscriber_jwt_alg.or(file.subscriber_jwt_alg),
            jwks: self.jwks.or(file.jwks),
            publisher_jwks: self.publisher_jwks.or(file.publisher_jwks),
            subscriber_jwks: self.subscriber_jwks.or(file.subscriber_jwks),
            anonymous: self.anonymous || file.anonymous,
            subscriptions: self.subscriptions || file.subscriptions,
            ui: self.ui || file.ui,
            cors_origins: list(self.cors_origins, file.cors_origins),
            publish_origins: list(self.publish_origins, file.publish_origins),
            cookie_name: self.cookie_name.or(file.cookie_name),
            heartbeat: self.heartbeat.or(file.heartbeat),
            write_timeout: self.write_timeout.or(file.write_timeout),
            max_body_size: self.max_body_size.or(file.max_body_size),
            subscriber_queue_size: self.subscriber_queue_size.or(file.subscriber_queue_size),
            transport: self.transport.or(file.transport),
            redis_stream: self.redis_stream.or(file.redis_stream),
            data_dir: self.data_dir.or(file.data_dir),
            durability: self.durability.or(file.durability),
            max_templates: self.max_templates.or(file.max_templates),
            max_template_cost: self.max_template_cost.or(file.max_template_cost),
            max_request_template_cost: self
                .max_request_template_cost
                .or(file.max_request_template_cost),
            max_client_template_cost: self
                .max_client_template_cost
                .or(file.max_client_template_cost),
            history_size: self.history_size.or(file.history_size),
            history_max_age: self.history_max_age.or(file.history_max_age),
            shutdown_timeout: self.shutdown_timeout.or(file.shutdown_timeout),
            header_timeout: self.header_timeout.or(file.header_timeout),
            body_timeout: self.body_timeout.or(file.body_timeout),
            http2_idle_timeout: self.http2_idle_timeout.or(file.http2_idle_timeout),
            http2_keep_alive: self.http2_keep_alive.or(file.http2_keep_alive),
            max_connections: self.max_connections.or(file.max_connections),
            max_subscriptions_per_client: self
                .max_subscriptions_per_client
                .or(file.max_subscriptions_per_client),
            trusted_proxies: list(self.trusted_proxies, file.trusted_proxies),
            drain_spread: self.drain_spread.or(file.drain_spread),
            no_front_page: self.no_front_page || file.no_front_page,
            log: self.log.or(file.log),
            dev: self.dev || file.dev,
            hub_url: self.hub_url.or(file.hub_url),
            protocols: self.protocols.or(file.protocols),
            issuers: list(self.issuers, file.issuers),
            publisher_issuers: list(self.publisher_issuers, file.publisher_issuers),
            subscriber_issuers: list(self.subscriber_issuers, file.subscriber_issuers),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            log_format: self.log_format.or(file.log_format),
            allow_weak_key: self.allow_weak_key || file.allow_weak_key,
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            acme_domains: list(self.acme_domains, file.acme_domains),
            acme_contacts: list(self.acme_contacts, file.acme_contacts),
            acme_cache: self.acme_cache.or(file.acme_cache),
            acme_directory: self.acme_directory.or(file.acme_directory),
            acme_directory_ca: self.acme_directory_ca.or(file.acme_directory_ca),
        }
    }
}

/// `:LINE:COLUMN` of a TOML error, and the key of its line (`, key heartbeat`), from its span.
fn toml_location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(start) = span.map(|s| s.start.min(text.len())) else {
        return String::new();
    };
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches('"'))
        .filter(|key| !key.is_empty() && !key.starts_with('#') && !key.starts_with('['));
    match key {
        Some(key) => format!(":{line}:{column}, key {key}"),
        None => format!(":{line}:{column}"),
    }
}
