//! Turning settings into the hub's configuration, each value parsed with the setting named.
//!
//! [`Settings::hub_config`] builds the [`HubConfig`] (with the built-in defaults for what is
//! unset); the helpers here each own one part of it: the keys or JWK Sets of each role, the
//! timeouts, the template limits, the storage. A bad value is a [`SettingError`] naming the
//! setting the user actually wrote and the fix.

use std::path::PathBuf;

use herald_hub::config::{TemplateLimits, Timeouts};
use herald_hub::{
    ConfigError, Durability, HistoryLimits, HubConfig, JwksSource, JwtKey, RedisOptions, Storage,
};

use super::{SettingError, Settings};
use crate::values::{algorithm, count, optional_duration, read_key, size};

impl Settings {
    /// The template cost limits; checked together by [`HubConfig::validate`].
    fn template_limits(&self, defaults: TemplateLimits) -> Result<TemplateLimits, SettingError> {
        let bytes = |setting, value: &Option<String>, default: u64| {
            let default = usize::try_from(default).unwrap_or(usize::MAX);
            size(setting, value, default).map(|n| n as u64)
        };
        Ok(TemplateLimits {
            max_cost: bytes(
                "max-template-cost",
                &self.max_template_cost,
                defaults.max_cost,
            )?,
            max_request_cost: bytes(
                "max-request-template-cost",
                &self.max_request_template_cost,
                defaults.max_request_cost,
            )?,
            max_client_cost: bytes(
                "max-client-template-cost",
                &self.max_client_template_cost,
                defaults.max_client_cost,
            )?,
        })
    }

    /// The listen address, parsed.
    pub(crate) fn listen_addr(&self) -> Result<std::net::SocketAddr, SettingError> {
        let text = self.listen.as_deref().unwrap_or("127.0.0.1:3000");
        text.parse().map_err(|_| {
            ConfigError::new(
                "listen",
                format!("{text:?} is not an address"),
                "write it as IP:PORT, e.g. 127.0.0.1:3000 or 0.0.0.0:80",
            )
        })
    }

    /// The metrics listener's address, parsed.
    fn metrics_listen_addr(&self) -> Result<Option<std::net::SocketAddr>, SettingError> {
        self.metrics_listen
            .as_deref()
            .map(|text| {
                text.parse().map_err(|_| {
                    ConfigError::new(
                        "metrics-listen",
                        format!("{text:?} is not an address"),
                        "write it as IP:PORT, e.g. 127.0.0.1:9090",
                    )
                })
            })
            .transpose()
    }

    /// The hub configuration these settings describe. Dev-mode defaults are applied by the
    /// caller before this.
    pub(crate) fn hub_config(&self) -> Result<HubConfig, SettingError> {
        let defaults = HubConfig::default();
        let shared_alg = algorithm("jwt-alg", self.jwt_alg.as_deref())?;
        let (publisher_key, publisher_jwks) =
            self.role("publisher", &self.publisher_jwt_key, &self.publisher_jwks)?;
        let (subscriber_key, subscriber_jwks) = self.role(
            "subscriber",
            &self.subscriber_jwt_key,
            &self.subscriber_jwks,
        )?;
        let publisher_alg = match &self.publisher_jwt_alg {
            Some(alg) => algorithm("publisher-jwt-alg", Some(alg))?,
            None => shared_alg,
        };
        let subscriber_alg = match &self.subscriber_jwt_alg {
            Some(alg) => algorithm("subscriber-jwt-alg", Some(alg))?,
            None => shared_alg,
        };
        Ok(HubConfig {
            publisher_key: publisher_key.map(|key| JwtKey {
                algorithm: publisher_alg,
                key,
            }),
            subscriber_key: subscriber_key.map(|key| JwtKey {
                algorithm: subscriber_alg,
                key,
            }),
            publisher_jwks,
            subscriber_jwks,
            jwks_refresh: defaults.jwks_refresh,
            anonymous: self.anonymous,
            subscriptions: self.subscriptions,
            cors_origins: self.cors_origins.clone(),
            publish_origins: self.publish_origins.clone(),
            cookie_name: self.cookie_name.clone().unwrap_or(defaults.cookie_name),
            heartbeat: optional_duration("heartbeat", &self.heartbeat, defaults.heartbeat)?,
            write_timeout: optional_duration(
                "write-timeout",
                &self.write_timeout,
                defaults.write_timeout,
            )?,
            max_body_bytes: size(
                "max-body-size",
                &self.max_body_size,
                defaults.max_body_bytes,
            )?,
            queue_bytes: size(
                "subscriber-queue-size",
                &self.subscriber_queue_size,
                defaults.queue_bytes,
            )?,
            max_templates: count("max-templates", &self.max_templates, defaults.max_templates)?,
            template_limits: self.template_limits(defaults.template_limits)?,
            storage: self.storage()?,
            history: HistoryLimits {
                max_events: count(
                    "history-size",
                    &self.history_size,
                    defaults.history.max_events,
                )?,
                max_age: optional_duration(
                    "history-max-age",
                    &self.history_max_age,
                    defaults.history.max_age,
                )?,
            },
            shutdown_timeout: optional_duration(
                "shutdown-timeout",
                &self.shutdown_timeout,
                Some(defaults.shutdown_timeout),
            )?
            .unwrap_or_default(),
            timeouts: self.timeouts(&defaults.timeouts)?,
            max_connections: Some(count("max-connections", &self.max_connections, 0)?)
                .filter(|&n| n > 0),
            ui: self.ui,
            dev_mode: self.dev,
            hub_url: self.hub_url.clone(),
            protocols: match &self.protocols {
                None => defaults.protocols,
                Some(list) => herald_protocol::ProtocolSet::parse(list).map_err(|problem| {
                    ConfigError::new(
                        "protocols",
                        problem,
                        "write a comma-separated list: draft-07, 1.0 or draft-07,1.0",
                    )
                })?,
            },
            publisher_issuers: self.role_issuers(&self.publisher_issuers),
            subscriber_issuers: self.role_issuers(&self.subscriber_issuers),
            metrics_listen: self.metrics_listen_addr()?,
            max_subscriptions_per_client: Some(count(
                "max-subscriptions-per-client",
                &self.max_subscriptions_per_client,
                defaults.max_subscriptions_per_client.unwrap_or(0),
            )?)
            .filter(|&n| n > 0),
            trusted_proxies: self
                .trusted_proxies
                .iter()
                .map(|text| {
                    text.parse().map_err(|problem| {
                        ConfigError::new(
                            "trusted-proxy",
                            problem,
                            "give an IP address or a network, e.g. 127.0.0.1 or 10.0.0.0/8",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            drain_spread: optional_duration(
                "drain-spread",
                &self.drain_spread,
                Some(defaults.drain_spread),
            )?
            .unwrap_or_default(),
            front_page: !self.no_front_page,
        })
    }
}

impl Settings {
    /// A role's trusted issuers: its own setting when given, else `--issuer`.
    fn role_issuers(&self, own: &[String]) -> Vec<String> {
        if own.is_empty() {
            self.issuers.clone()
        } else {
            own.to_vec()
        }
    }

    /// A hub's error about a role's JWK Set, renamed to `jwks` when that is the setting the user
    /// actually wrote.
    pub(crate) fn name_jwks_setting(&self, mut e: ConfigError) -> ConfigError {
        let own = match e.setting {
            "publisher-jwks" => &self.publisher_jwks,
            "subscriber-jwks" => &self.subscriber_jwks,
            _ => return e,
        };
        if own.is_none() && self.jwks.is_some() {
            e.setting = "jwks";
        }
        e
    }

    /// What verifies the tokens of `role`: its own key or JWK Set, else the shared ones; never
    /// both a key and a set. An error names the setting the user actually wrote.
    #[allow(clippy::type_complexity)]
    fn role(
        &self,
        role: &'static str,
        own_key: &Option<String>,
        own_jwks: &Option<String>,
    ) -> Result<(Option<Vec<u8>>, Option<JwksSource>), SettingError> {
        let (key_setting, jwks_setting) = match role {
            "publisher" => ("publisher-jwt-key", "publisher-jwks"),
            _ => ("subscriber-jwt-key", "subscriber-jwks"),
        };
        match (own_key, own_jwks) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                jwks_setting,
                format!("both {key_setting} and {jwks_setting} are set"),
                format!("give the {role}s' tokens a key or a JWK Set, not both: remove one"),
            )),
            (Some(key), None) => Ok((Some(read_key(key_setting, key)?), None)),
            (None, Some(jwks)) => Ok((None, Some(JwksSource::parse(jwks)))),
            (None, None) => match (&self.jwt_key, &self.jwks) {
                (Some(_), Some(_)) => Err(ConfigError::new(
                    "jwks",
                    "both jwt-key and jwks are set",
                    "verify tokens with a key or a JWK Set, not both: remove one (or give each \
                     role its own with --publisher-jwt-key / --subscriber-jwks...)",
                )),
                (Some(key), None) => Ok((Some(read_key("jwt-key", key)?), None)),
                (None, Some(jwks)) => Ok((None, Some(JwksSource::parse(jwks)))),
                (None, None) => Ok((None, None)),
            },
        }
    }

    /// The connection deadlines; `0s` is passed on as zero, which the hub refuses by name.
    fn timeouts(&self, defaults: &Timeouts) -> Result<Timeouts, SettingError> {
        let required = |setting, text: &Option<String>, default| {
            optional_duration(setting, text, Some(default)).map(Option::unwrap_or_default)
        };
        Ok(Timeouts {
            header: required("header-timeout", &self.header_timeout, defaults.header)?,
            body: required("body-timeout", &self.body_timeout, defaults.body)?,
            http2_idle: required(
                "http2-idle-timeout",
                &self.http2_idle_timeout,
                defaults.http2_idle,
            )?,
            http2_keep_alive: required(
                "http2-keep-alive",
                &self.http2_keep_alive,
                defaults.http2_keep_alive,
            )?,
        })
    }

    fn storage(&self) -> Result<Storage, SettingError> {
        let durability = match self.durability.as_deref() {
            None | Some("sync") => Durability::Sync,
            Some("periodic") => Durability::Periodic,
            Some(other) => {
                return Err(ConfigError::new(
                    "durability",
                    format!("{other:?} is not a durability policy"),
                    "use sync or periodic",
                ));
            }
        };
        match self.transport.as_deref() {
            None | Some("embedded") => {
                let dir = self
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("herald-data"));
                Ok(Storage::Embedded {
                    path: dir.join("history.redb"),
                    durability,
                })
            }
            Some("memory") => Ok(Storage::Memory),
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let mut options = RedisOptions::new(url);
                if let Some(stream) = &self.redis_stream {
                    options.stream.clone_from(stream);
                }
                Ok(Storage::Redis(options))
            }
            Some(other) => Err(ConfigError::new(
                "transport",
                format!("{other:?} is not a transport"),
                "use embedded, memory, or a Redis URL: redis://HOST:PORT[/DB] (rediss:// for TLS)",
            )),
        }
    }
}
