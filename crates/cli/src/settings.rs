//! `herald serve` settings: flags, environment variables, an optional TOML file, defaults.
//!
//! Precedence, highest first: a flag, its environment variable, the `--config` file, the
//! built-in default. Every setting has the same name as a flag and as a TOML key (kebab-case),
//! and `HERALD_` + its name in upper snake case as an environment variable; the JWT keys and
//! algorithms also read the variables of the reference hub's image (`MERCURE_PUBLISHER_JWT_KEY`,
//! ...), which deployments copy. Each value is parsed here so that a bad one is reported as one
//! line naming the setting and the fix.
//!
//! The settings are one struct, [`Settings`], which clap fills from flags and environment and
//! serde from the file; the rest is one concept a file:
//! - `file.rs`: reading the `--config` file, and layering it under flags and environment;
//! - `hub_config.rs`: parsing the settings into the hub's [`HubConfig`](herald_hub::HubConfig).

mod file;
mod hub_config;

use std::path::PathBuf;

use clap::Args;
use herald_hub::ConfigError;
use serde::Deserialize;

use crate::values::EnvBool;

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

/// Where `herald serve` reads its file from.
#[derive(Args, Debug)]
pub(crate) struct ConfigFile {
    /// A TOML file of settings (keys are the flag names, e.g. `listen = "0.0.0.0:3000"`).
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests;
