//! `herald serve` settings: flags, environment variables, an optional TOML file, defaults.
//!
//! Precedence, highest first: a flag, its environment variable, the `--config` file, the
//! built-in default. Every setting has the same name as a flag and as a TOML key (kebab-case),
//! and `HERALD_` + its name in upper snake case as an environment variable; the JWT keys and
//! algorithms also read the variables of the reference hub's image (`MERCURE_PUBLISHER_JWT_KEY`,
//! ...), which deployments copy. Each value is parsed here so that a bad one is reported as one
//! line naming the setting and the fix.

use std::path::{Path, PathBuf};

use clap::Args;
use herald_hub::config::{TemplateLimits, Timeouts};
use herald_hub::{
    ConfigError, Durability, HistoryLimits, HubConfig, JwksSource, JwtKey, RedisOptions, Storage,
};
use serde::Deserialize;

use crate::values::{EnvBool, algorithm, count, optional_duration, read_key, size};

/// The settings of `herald serve`. All optional: absent ones fall through to the next source.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Settings {
    /// Address to listen on [default: 127.0.0.1:3000].
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Key verifying both publishers' and subscribers' tokens: the HMAC secret, or for
    /// RS*/PS*/ES*/EdDSA a PEM public key. `@path` reads the key from a file.
    #[arg(
        long,
        env = "HERALD_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub jwt_key: Option<String>,

    /// Algorithm of --jwt-key [default: HS256].
    #[arg(long, env = "HERALD_JWT_ALG", value_name = "ALG")]
    pub jwt_alg: Option<String>,

    /// Key verifying publishers' tokens (overrides --jwt-key for them).
    #[arg(
        long,
        env = "MERCURE_PUBLISHER_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub publisher_jwt_key: Option<String>,

    /// Algorithm of the publisher key: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384, EdDSA [default: HS256].
    #[arg(long, env = "MERCURE_PUBLISHER_JWT_ALG", value_name = "ALG")]
    pub publisher_jwt_alg: Option<String>,

    /// Key verifying subscribers' tokens (overrides --jwt-key for them).
    #[arg(
        long,
        env = "MERCURE_SUBSCRIBER_JWT_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub subscriber_jwt_key: Option<String>,

    /// Algorithm of the subscriber key [default: HS256].
    #[arg(long, env = "MERCURE_SUBSCRIBER_JWT_ALG", value_name = "ALG")]
    pub subscriber_jwt_alg: Option<String>,

    /// JSON Web Key Set verifying both publishers' and subscribers' tokens, instead of a key: a
    /// file path or an http(s):// URL. The key is chosen by the token's `kid`; the set is
    /// reloaded when a token names an unknown `kid` (at most every 30s), and a URL every 5
    /// minutes.
    #[arg(long, env = "HERALD_JWKS", value_name = "SOURCE")]
    pub jwks: Option<String>,

    /// JSON Web Key Set verifying publishers' tokens (overrides --jwks and --jwt-key for them).
    #[arg(long, env = "HERALD_PUBLISHER_JWKS", value_name = "SOURCE")]
    pub publisher_jwks: Option<String>,

    /// JSON Web Key Set verifying subscribers' tokens (overrides --jwks and --jwt-key for them).
    #[arg(long, env = "HERALD_SUBSCRIBER_JWKS", value_name = "SOURCE")]
    pub subscriber_jwks: Option<String>,

    /// Allow subscribers without a token (they receive public updates only).
    #[arg(long, env = "HERALD_ANONYMOUS", value_parser = EnvBool)]
    pub anonymous: bool,

    /// Serve the web UI (a debugger and a playground) at /.well-known/mercure/ui/
    /// [default: off; --dev turns it on].
    #[arg(long, env = "HERALD_UI", value_parser = EnvBool)]
    pub ui: bool,

    /// Publish an event when a subscription starts or ends, and serve the subscriptions API at
    /// /.well-known/mercure/subscriptions.
    #[arg(long, env = "HERALD_SUBSCRIPTIONS", value_parser = EnvBool)]
    pub subscriptions: bool,

    /// Origin allowed to use the hub from a browser (CORS); repeatable. `*` allows any origin
    /// without cookies. [default: none]
    #[arg(
        long = "cors-origin",
        env = "HERALD_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(rename = "cors-origin")]
    pub cors_origins: Vec<String>,

    /// Origin from which a publish authenticated by cookie is accepted (CSRF guard); repeatable.
    /// [default: none, so cookie-authenticated publishing is refused]
    #[arg(
        long = "publish-origin",
        env = "HERALD_PUBLISH_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(rename = "publish-origin")]
    pub publish_origins: Vec<String>,

    /// Name of the cookie holding a token [default: mercureAuthorization].
    #[arg(long, env = "HERALD_COOKIE_NAME", value_name = "NAME")]
    pub cookie_name: Option<String>,

    /// Idle time after which a heartbeat comment is sent; 0s disables [default: 40s].
    #[arg(long, env = "HERALD_HEARTBEAT", value_name = "DURATION")]
    pub heartbeat: Option<String>,

    /// Maximum lifetime of a subscription (jittered down by up to 20%), after which the client
    /// reconnects; 0s disables [default: 600s].
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", value_name = "DURATION")]
    pub write_timeout: Option<String>,

    /// Largest publish body accepted, e.g. 1MiB or 65536 [default: 1MiB].
    #[arg(long, env = "HERALD_MAX_BODY_SIZE", value_name = "BYTES")]
    pub max_body_size: Option<String>,

    /// Bytes of updates that may wait for one slow subscriber before it is disconnected (it then
    /// reconnects and replays from history) [default: 4MiB].
    #[arg(long, env = "HERALD_SUBSCRIBER_QUEUE_SIZE", value_name = "BYTES")]
    pub subscriber_queue_size: Option<String>,

    /// Where history is kept: `embedded` (a file in --data-dir, survives restarts), `memory`
    /// (lost on restart), or a Redis URL, `redis://[:PASSWORD@]HOST:PORT[/DB]` (`rediss://` for
    /// TLS), shared by every node of a cluster [default: embedded].
    #[arg(long, env = "HERALD_TRANSPORT", value_name = "KIND|URL")]
    pub transport: Option<String>,

    /// With a Redis transport: the stream's key, also the prefix of the other keys
    /// (NAME:ids, NAME:live, ...). Nodes with the same NAME form one hub [default: herald].
    #[arg(long, env = "HERALD_REDIS_STREAM", value_name = "NAME")]
    pub redis_stream: Option<String>,

    /// Directory of the embedded history (created on first start) [default: herald-data].
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// What an acknowledged publish survives: `sync` (each group commit is fsync'd: survives
    /// kill -9 and power loss) or `periodic` (synced every 100 ms: a crash can lose the last
    /// 100 ms) [default: sync].
    #[arg(long, env = "HERALD_DURABILITY", value_name = "POLICY")]
    pub durability: Option<String>,

    /// Most distinct URI templates subscriptions and tokens may use at once; beyond it a
    /// subscription is refused with 503 (every publish checks each distinct template once)
    /// [default: 10000].
    #[arg(long, env = "HERALD_MAX_TEMPLATES", value_name = "COUNT")]
    pub max_templates: Option<String>,

    /// Most one URI template may cost, in estimated bytes of compiled matcher (which bounds its
    /// compile time and match time too); a costlier selector is refused with 400 and what to
    /// simplify [default: 128KiB].
    #[arg(long, env = "HERALD_MAX_TEMPLATE_COST", value_name = "BYTES")]
    pub max_template_cost: Option<String>,

    /// Most the distinct URI templates of one subscribe request may cost together (and
    /// separately those of its token's mercure.subscribe); past it, 400 [default: 1MiB].
    #[arg(long, env = "HERALD_MAX_REQUEST_TEMPLATE_COST", value_name = "BYTES")]
    pub max_request_template_cost: Option<String>,

    /// Most the distinct URI templates one client (a token; anonymous subscribers per address)
    /// keeps alive over its open subscriptions may cost; past it, 429 [default: 16MiB].
    #[arg(long, env = "HERALD_MAX_CLIENT_TEMPLATE_COST", value_name = "BYTES")]
    pub max_client_template_cost: Option<String>,

    /// Most updates kept in history for reconnecting subscribers; 0 keeps none
    /// [default: 100000].
    #[arg(long, env = "HERALD_HISTORY_SIZE", value_name = "COUNT")]
    pub history_size: Option<String>,

    /// Updates older than this are dropped from history; 0s keeps them until --history-size
    /// pushes them out [default: 24h].
    #[arg(long, env = "HERALD_HISTORY_MAX_AGE", value_name = "DURATION")]
    pub history_max_age: Option<String>,

    /// How long a graceful shutdown waits for connections [default: 10s].
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,

    /// Time a client has to send a request head: from connecting (for HTTP/2: the preface,
    /// settings and first request), and on HTTP/1 from the end of a response, which also
    /// closes idle keep-alive connections [default: 30s].
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,

    /// Time a publisher has to send a whole request body; 408 after it [default: 30s].
    #[arg(long, env = "HERALD_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,

    /// An HTTP/2 connection with no open stream is closed after this [default: 120s].
    #[arg(long, env = "HERALD_HTTP2_IDLE_TIMEOUT", value_name = "DURATION")]
    pub http2_idle_timeout: Option<String>,

    /// Interval of HTTP/2 PINGs on a quiet connection; a peer that does not answer within the
    /// same time is disconnected [default: 30s].
    #[arg(long, env = "HERALD_HTTP2_KEEP_ALIVE", value_name = "DURATION")]
    pub http2_keep_alive: Option<String>,

    /// Most subscriptions (open streams) served at once; past it a new subscription gets 503
    /// with Retry-After while publishes are still served. Connections are capped a tenth higher
    /// (at least 100 more) as a file-descriptor guard; 0 for no limit but the open-files limit
    /// [default: 0].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", value_name = "COUNT")]
    pub max_connections: Option<String>,

    /// Most subscriptions one client keeps open at once; past it, 429 with Retry-After. A
    /// client is its IP address (an IPv6 /64), with its token if it sends one; 0 for no limit
    /// [default: 100].
    #[arg(
        long,
        env = "HERALD_MAX_SUBSCRIPTIONS_PER_CLIENT",
        value_name = "COUNT"
    )]
    pub max_subscriptions_per_client: Option<String>,

    /// Reverse proxy (an IP address or a network, e.g. 10.0.0.0/8) whose X-Forwarded-For
    /// header names the client; repeatable. Without it, behind a proxy every client is the
    /// proxy's address [default: none].
    #[arg(
        long = "trusted-proxy",
        env = "HERALD_TRUSTED_PROXIES",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    #[serde(rename = "trusted-proxy")]
    pub trusted_proxies: Vec<String>,

    /// On shutdown, each stream ends with a `retry:` field drawn at random up to this, so
    /// that clients do not all reconnect at once; 0s sends none [default: 5s].
    #[arg(long, env = "HERALD_DRAIN_SPREAD", value_name = "DURATION")]
    pub drain_spread: Option<String>,

    /// Serve nothing at / (404) instead of the page saying what this is.
    #[arg(long, env = "HERALD_NO_FRONT_PAGE")]
    pub no_front_page: bool,

    /// Log filter, e.g. info, debug, herald_hub=debug [default: info; RUST_LOG also works].
    #[arg(long, env = "HERALD_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Development mode: anonymous subscribers, any CORS origin, a generated key unless one is
    /// given, and ready-to-use tokens and curl commands printed at start.
    #[arg(long, env = "HERALD_DEV", value_parser = EnvBool)]
    pub dev: bool,

    /// The hub's public URL, e.g. https://hub.example/.well-known/mercure: the resource
    /// identifier Mercure 1.0 access tokens must name in aud, and where the protected resource
    /// metadata is advertised. Without it, 1.0 access tokens are refused. [default: none]
    #[arg(long, env = "HERALD_HUB_URL", value_name = "URL")]
    pub hub_url: Option<String>,

    /// The protocol editions served: draft-07, 1.0 or both [default: draft-07,1.0].
    #[arg(long, env = "HERALD_PROTOCOLS", value_name = "LIST")]
    pub protocols: Option<String>,

    /// Trusted issuer (iss) of 1.0 access tokens for both roles; repeatable. Without any, 1.0
    /// tokens of any issuer signed with the hub's keys are accepted. [default: none]
    #[arg(
        long = "issuer",
        env = "HERALD_ISSUERS",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(rename = "issuer")]
    pub issuers: Vec<String>,

    /// Trusted issuer of publishers' 1.0 access tokens, when the roles' issuers differ
    /// (replaces --issuer for publishers); repeatable.
    #[arg(
        long = "publisher-issuer",
        env = "HERALD_PUBLISHER_ISSUERS",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(rename = "publisher-issuer")]
    pub publisher_issuers: Vec<String>,

    /// Trusted issuer of subscribers' 1.0 access tokens, when the roles' issuers differ
    /// (replaces --issuer for subscribers); repeatable.
    #[arg(
        long = "subscriber-issuer",
        env = "HERALD_SUBSCRIBER_ISSUERS",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(rename = "subscriber-issuer")]
    pub subscriber_issuers: Vec<String>,

    /// Address of a second listener serving Prometheus metrics at /metrics, with /healthz and
    /// /readyz, e.g. 127.0.0.1:9090 (keep it private) [default: none].
    #[arg(long, env = "HERALD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Log format: `text` (for people) or `json` (one object per line, for log shippers)
    /// [default: text].
    #[arg(long, env = "HERALD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Start even with a weak HMAC key (shorter than 32 bytes, or a well-known tutorial key),
    /// which anyone may guess to mint tokens. Outside --dev such a key is refused without it.
    #[arg(long, env = "HERALD_ALLOW_WEAK_KEY", value_parser = EnvBool)]
    pub allow_weak_key: bool,

    /// TLS certificate chain (PEM, server certificate first); with --tls-key, the hub serves
    /// HTTPS with HTTP/2 and HTTP/1.1, and reloads both files when they change or on SIGHUP.
    #[arg(long, env = "HERALD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HERALD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a certificate for this name from an ACME CA (Let's Encrypt by
    /// default), obtained and renewed by TLS-ALPN-01 on this hub's port, which must be port 443
    /// of the name; repeatable. Needs --acme-cache; excludes --tls-cert.
    #[arg(
        long = "acme-domain",
        env = "HERALD_ACME_DOMAINS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(rename = "acme-domain")]
    pub acme_domains: Vec<String>,

    /// Contact for the ACME account, as mailto:you@example.com; repeatable.
    #[arg(
        long = "acme-contact",
        env = "HERALD_ACME_CONTACTS",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(rename = "acme-contact")]
    pub acme_contacts: Vec<String>,

    /// Directory keeping the ACME account and certificates across restarts.
    #[arg(long, env = "HERALD_ACME_CACHE", value_name = "DIR")]
    pub acme_cache: Option<PathBuf>,

    /// ACME directory URL [default: Let's Encrypt production].
    #[arg(long, env = "HERALD_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,

    /// CA certificate (PEM) to trust for the ACME directory's own HTTPS, for a private or test
    /// CA [default: the system's store].
    #[arg(long, env = "HERALD_ACME_DIRECTORY_CA", value_name = "FILE")]
    pub acme_directory_ca: Option<PathBuf>,
}

/// A bad setting: which, what is wrong, what to do.
pub(crate) type SettingError = ConfigError;

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

/// Where `herald serve` reads its file from.
#[derive(Args, Debug)]
pub(crate) struct ConfigFile {
    /// A TOML file of settings (keys are the flag names, e.g. `listen = "0.0.0.0:3000"`).
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_duration_names_the_setting() {
        let settings = Settings {
            jwt_key: Some("k".into()),
            heartbeat: Some("5 fortnights please".into()),
            ..Settings::default()
        };
        let e = settings.hub_config().unwrap_err();
        assert_eq!(e.setting, "heartbeat");
    }

    #[test]
    fn a_bad_file_names_its_line_column_and_key() {
        let dir = std::env::temp_dir().join(format!("herald-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("herald.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:0\"\n\nheartbeat = 5\n").unwrap();
        let e = Settings::from_file(&path).unwrap_err();
        let line = e.to_string();
        assert!(line.contains("herald.toml:3:13, key heartbeat"), "{line}");
        std::fs::write(&path, "listen = \"x\"\nhartbeat = \"5s\"\n").unwrap();
        let line = Settings::from_file(&path).unwrap_err().to_string();
        assert!(
            line.contains(":2:1, key hartbeat") && line.contains("unknown field"),
            "{line}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_disables_durations() {
        let settings = Settings {
            heartbeat: Some("0s".into()),
            ..Settings::default()
        };
        assert_eq!(settings.hub_config().unwrap().heartbeat, None);
    }

    #[test]
    fn flags_win_over_the_file() {
        let flags = Settings {
            listen: Some("127.0.0.1:1".into()),
            ..Settings::default()
        };
        let file: Settings = toml::from_str(
            "listen = \"127.0.0.1:2\"\ncookie-name = \"c\"\ncors-origin = [\"http://a\"]",
        )
        .unwrap();
        let merged = flags.or(file);
        assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(merged.cookie_name.as_deref(), Some("c"));
        assert_eq!(merged.cors_origins, ["http://a"]);
    }

    #[test]
    fn v2_issuers_apply_to_both_roles_unless_a_role_has_its_own() {
        let file: Settings = toml::from_str(
            "hub-url = \"https://hub.example/.well-known/mercure\"\nprotocols = \"1.0\"\n\
             issuer = [\"https://app.example\"]\nsubscriber-issuer = [\"https://idp.example\"]",
        )
        .unwrap();
        let config = Settings::default().or(file).hub_config().unwrap();
        assert_eq!(config.publisher_issuers, ["https://app.example"]);
        assert_eq!(config.subscriber_issuers, ["https://idp.example"]);
        assert!(config.protocols.v1 && !config.protocols.draft07);
        let bad = Settings {
            protocols: Some("draft-06".into()),
            ..Settings::default()
        };
        assert_eq!(bad.hub_config().unwrap_err().setting, "protocols");
        for hub_url in ["not a url", "/.well-known/mercure", "ftp://hub.example/"] {
            let relative = Settings {
                jwt_key: Some("k".into()),
                hub_url: Some(hub_url.into()),
                ..Settings::default()
            };
            let e = relative.hub_config().unwrap().validate().unwrap_err();
            assert_eq!(e.setting, "hub-url", "{hub_url}");
        }
    }

    #[test]
    fn jwks_is_a_flag_and_a_file_key() {
        let file: Settings = toml::from_str(
            "jwks = \"https://idp.example.com/jwks.json\"\npublisher-jwt-key = \"k\"",
        )
        .unwrap();
        let config = Settings::default().or(file).hub_config().unwrap();
        assert_eq!(
            config.subscriber_jwks,
            Some(JwksSource::Url("https://idp.example.com/jwks.json".into()))
        );
        assert_eq!(config.publisher_jwks, None);
        assert!(config.publisher_key.is_some());
    }

    #[test]
    fn a_bad_shared_jwks_is_reported_as_jwks() {
        let settings = Settings {
            jwks: Some("/nonexistent".into()),
            ..Settings::default()
        };
        let e = ConfigError::new("subscriber-jwks", "cannot read", "fix it");
        assert_eq!(settings.name_jwks_setting(e).setting, "jwks");
        let settings = Settings {
            subscriber_jwks: Some("/nonexistent".into()),
            ..settings
        };
        let e = ConfigError::new("subscriber-jwks", "cannot read", "fix it");
        assert_eq!(settings.name_jwks_setting(e).setting, "subscriber-jwks");
    }

    #[test]
    fn a_key_and_a_jwks_for_one_role_are_refused() {
        let shared = Settings {
            jwt_key: Some("k".into()),
            jwks: Some("/etc/jwks.json".into()),
            ..Settings::default()
        };
        assert_eq!(shared.hub_config().unwrap_err().setting, "jwks");
        let own = Settings {
            subscriber_jwt_key: Some("k".into()),
            subscriber_jwks: Some("/etc/jwks.json".into()),
            ..Settings::default()
        };
        assert_eq!(own.hub_config().unwrap_err().setting, "subscriber-jwks");
    }

    #[test]
    fn timeouts_are_flags_and_file_keys() {
        let file: Settings =
            toml::from_str("header-timeout = \"5s\"\nhttp2-idle-timeout = \"1m\"").unwrap();
        let flags = Settings {
            jwt_key: Some("k".into()),
            body_timeout: Some("2s".into()),
            ..Settings::default()
        };
        let timeouts = flags.or(file).hub_config().unwrap().timeouts;
        assert_eq!(timeouts.header, std::time::Duration::from_secs(5));
        assert_eq!(timeouts.body, std::time::Duration::from_secs(2));
        assert_eq!(timeouts.http2_idle, std::time::Duration::from_secs(60));
        assert_eq!(
            timeouts.http2_keep_alive,
            Timeouts::default().http2_keep_alive
        );
        // 0s does not disable a deadline: the hub refuses it, naming the setting.
        let zero = Settings {
            jwt_key: Some("k".into()),
            header_timeout: Some("0s".into()),
            ..Settings::default()
        };
        let e = zero.hub_config().unwrap().validate().unwrap_err();
        assert_eq!(e.setting, "header-timeout");
        let connections = Settings {
            jwt_key: Some("k".into()),
            max_connections: Some("20000".into()),
            ..Settings::default()
        };
        assert_eq!(
            connections.hub_config().unwrap().max_connections,
            Some(20000)
        );
    }

    #[test]
    fn the_overload_settings_are_flags_and_file_keys() {
        let file: Settings = toml::from_str(
            "no-front-page = true\ntrusted-proxy = [\"10.0.0.0/8\"]\ndrain-spread = \"2s\"",
        )
        .unwrap();
        let config = Settings {
            jwt_key: Some("k".into()),
            max_subscriptions_per_client: Some("0".into()),
            ..Settings::default()
        }
        .or(file)
        .hub_config()
        .unwrap();
        assert!(!config.front_page);
        assert_eq!(config.max_subscriptions_per_client, None);
        assert_eq!(config.trusted_proxies, ["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(config.drain_spread, std::time::Duration::from_secs(2));
        let defaults = Settings {
            jwt_key: Some("k".into()),
            ..Settings::default()
        }
        .hub_config()
        .unwrap();
        assert!(defaults.front_page);
        assert_eq!(defaults.max_subscriptions_per_client, Some(100));
        let bad = Settings {
            jwt_key: Some("k".into()),
            trusted_proxies: vec!["proxy.local".into()],
            ..Settings::default()
        };
        assert_eq!(bad.hub_config().unwrap_err().setting, "trusted-proxy");
    }

    #[test]
    fn ui_is_a_flag_and_a_file_key() {
        let file: Settings = toml::from_str("ui = true").unwrap();
        let merged = Settings::default().or(file);
        assert!(merged.ui);
        let config = Settings {
            jwt_key: Some("k".into()),
            ..merged
        }
        .hub_config()
        .unwrap();
        assert!(config.ui);
        assert!(!config.dev_mode);
    }

    #[test]
    fn a_redis_transport_is_a_url_with_its_stream_name() {
        let file: Settings =
            toml::from_str("transport = \"redis://:pw@127.0.0.1:6379/2\"\nredis-stream = \"chat\"")
                .unwrap();
        let config = Settings {
            jwt_key: Some("k".into()),
            ..Settings::default()
        }
        .or(file)
        .hub_config()
        .unwrap();
        let Storage::Redis(options) = &config.storage else {
            panic!("not redis: {:?}", config.storage)
        };
        assert_eq!(options.url, "redis://:pw@127.0.0.1:6379/2");
        assert_eq!(options.stream, "chat");
        assert!(
            !format!("{config:?}").contains(":pw@"),
            "no password in Debug"
        );
        let tls = Settings {
            transport: Some("rediss://cache.example.com:6380".into()),
            ..Settings::default()
        };
        assert!(matches!(
            tls.hub_config().unwrap().storage,
            Storage::Redis(_)
        ));
        let bad = Settings {
            transport: Some("postgres://x".into()),
            ..Settings::default()
        };
        assert_eq!(bad.hub_config().unwrap_err().setting, "transport");
    }
}
