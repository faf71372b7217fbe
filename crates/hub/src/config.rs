//! The hub's settings, as a library user builds them, and their validation.
//!
//! The `herald` binary fills a [`HubConfig`] from flags, environment variables and a TOML file;
//! an application embedding the hub fills it in code. Either way [`HubConfig::validate`] (called
//! by [`Hub::new`](crate::Hub::new)) refuses a bad combination with an error naming the setting
//! and the fix, before anything listens.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{Algorithm, TokenVerifier};

use crate::jwks::{JwksRefresh, JwksSource, JwksVerifier, KeySource};
use crate::transport::{Durability, HistoryLimits, RedisOptions};

/// A key that verifies tokens.
#[derive(Clone)]
pub struct JwtKey {
    /// The one algorithm tokens must be signed with (no `none`, no other family).
    pub algorithm: Algorithm,
    /// The shared secret (HS*) or the PEM-encoded public key (every other family).
    pub key: Vec<u8>,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Everything the hub needs to know. `Default` is a hub with no keys, which does not validate:
/// set at least one key (or JWK Set).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Verifies publishers' tokens. Without it, publishing is disabled.
    pub publisher_key: Option<JwtKey>,
    /// Verifies subscribers' tokens. Without it, only anonymous subscribers are possible.
    pub subscriber_key: Option<JwtKey>,
    /// A JSON Web Key Set verifying publishers' tokens, instead of `publisher_key` [R18].
    pub publisher_jwks: Option<JwksSource>,
    /// A JSON Web Key Set verifying subscribers' tokens, instead of `subscriber_key` [R18].
    pub subscriber_jwks: Option<JwksSource>,
    /// How JWK Sets are kept fresh.
    pub jwks_refresh: JwksRefresh,
    /// Allow subscribers without a token [R21].
    pub anonymous: bool,
    /// Origins allowed to call the hub from a browser (CORS) [R23]. `*` allows any origin, but
    /// then without credentials (cookies), as browsers require.
    pub cors_origins: Vec<String>,
    /// Origins from which a cookie-authenticated publish is accepted (CSRF guard) [R22].
    pub publish_origins: Vec<String>,
    /// Name of the authorization cookie [R19].
    pub cookie_name: String,
    /// Idle time before a heartbeat comment; `None` disables heartbeats [R10].
    pub heartbeat: Option<Duration>,
    /// Maximum lifetime of a subscription, jittered down by up to 20% so that clients do not
    /// all reconnect at once; `None` disables it [R11].
    pub write_timeout: Option<Duration>,
    /// Largest accepted publish body, in bytes [R17].
    pub max_body_bytes: usize,
    /// Most bytes of frames waiting for one subscriber before it is disconnected.
    pub queue_bytes: usize,
    /// Most distinct URI templates (in subscriptions and tokens) the hub tracks at once; a
    /// publish checks each distinct template once, so this bounds what subscribers can make a
    /// publish cost. A subscription that would pass it is refused with 503.
    pub max_templates: usize,
    /// What the URI templates of one request and one client may cost (see
    /// [`crate::selector`]).
    pub template_limits: TemplateLimits,
    /// Publish subscription events and serve the subscriptions API [R30][R31].
    pub subscriptions: bool,
    /// Where history is kept.
    pub storage: Storage,
    /// How much history is kept [R29].
    pub history: HistoryLimits,
    /// How long a graceful shutdown waits for connections to finish.
    pub shutdown_timeout: Duration,
    /// Connection deadlines (slowloris and idle sockets); see [`Timeouts`].
    pub timeouts: Timeouts,
    /// Most subscriptions (open streams) served at once; past it, a new subscription gets 503
    /// with `Retry-After`, while publishes and `/healthz` are still served. Connections (sockets)
    /// are capped too, a little higher, as a guard on file descriptors (see
    /// [`HubConfig::connection_cap`]). `None`: as many as the open-files limit allows.
    pub max_connections: Option<usize>,
    /// Serve the built-in web UI (debugger and playground) at `/.well-known/mercure/ui/`.
    pub ui: bool,
    /// Development mode: with `ui`, the UI may mint tokens signed with the publisher key
    /// (`POST /.well-known/mercure/ui/token`, HS* keys only). Never on in production.
    pub dev_mode: bool,
    /// The hub's public URL, e.g. `https://hub.example/.well-known/mercure`: its OAuth resource
    /// identifier, which Mercure 1.0 access tokens must name in `aud`, what relative 1.0 URL
    /// patterns and topics resolve against (and the reserved-namespace check), and where the
    /// protected resource metadata is advertised [V1][V2][V6]. Without it, 1.0 access tokens are
    /// refused and relative patterns resolve against `https://localhost/.well-known/mercure`.
    pub hub_url: Option<String>,
    /// The protocol editions served (`--protocols`; both by default).
    pub protocols: herald_protocol::ProtocolSet,
    /// Trusted issuers of publishers' 1.0 access tokens (`iss`); empty: any issuer
    /// (self-issued tokens signed with the publisher key). Advertised as authorization servers.
    pub publisher_issuers: Vec<String>,
    /// Trusted issuers of subscribers' 1.0 access tokens (`iss`); empty: any issuer.
    pub subscriber_issuers: Vec<String>,
    /// Where [`serve`](crate::serve) serves Prometheus metrics (`/metrics`), `/healthz` and
    /// `/readyz`, on a listener of their own so that metrics are not public by accident;
    /// `None`: no metrics listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Most subscriptions one client keeps open at once; past it, 429 with `Retry-After`. A
    /// client is its address, and its token if it presents one (see `limits.rs`). `None`: no
    /// per-client cap.
    pub max_subscriptions_per_client: Option<usize>,
    /// Reverse proxies whose `X-Forwarded-For` is believed, to know a client's address.
    pub trusted_proxies: Vec<crate::peer::ProxyNetwork>,
    /// On shutdown every stream ends with a `retry:` field drawn at random up to this, so that
    /// clients do not all reconnect at once; zero sends none.
    pub drain_spread: Duration,
    /// Serve a small page at `/` saying what this is (404 there when off).
    pub front_page: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            publisher_key: None,
            subscriber_key: None,
            publisher_jwks: None,
            subscriber_jwks: None,
            jwks_refresh: JwksRefresh::default(),
            anonymous: false,
            cors_origins: Vec::new(),
            publish_origins: Vec::new(),
            cookie_name: "mercureAuthorization".into(),
            heartbeat: Some(Duration::from_secs(40)),
            write_timeout: Some(Duration::from_secs(600)),
            max_body_bytes: 1024 * 1024,
            queue_bytes: 4 * 1024 * 1024,
            max_templates: 10_000,
            template_limits: TemplateLimits::default(),
            subscriptions: false,
            storage: Storage::Memory,
            history: HistoryLimits::default(),
            shutdown_timeout: Duration::from_secs(10),
            timeouts: Timeouts::default(),
            max_connections: None,
            ui: false,
            dev_mode: false,
            hub_url: None,
            protocols: herald_protocol::ProtocolSet::default(),
            publisher_issuers: Vec::new(),
            subscriber_issuers: Vec::new(),
            metrics_listen: None,
            max_subscriptions_per_client: Some(100),
            trusted_proxies: Vec::new(),
            drain_spread: Duration::from_secs(5),
            front_page: true,
        }
    }
}

/// How long each phase of a connection may last, so that no client can hold a socket (and its
/// memory) by sending slowly or not at all. Every one is required: zero is refused.
///
/// A subscription's own lifetime is [`HubConfig::write_timeout`]; a subscriber that stopped
/// reading is found out by the TCP user timeout (server/accept.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The time a client has to send its first bytes after connecting, then its request head:
    /// an HTTP/1 head (from connecting for a subscription, from the first byte otherwise), or
    /// for HTTP/2 the preface, the SETTINGS exchange and the first request's HEADERS (from
    /// connecting). On HTTP/1, also from the end of a response to the end of the next request
    /// head, which bounds idle keep-alive connections.
    pub header: Duration,
    /// From the start of a publish to the last byte of its body (408 past it), which bounds a
    /// body sent a byte at a time.
    pub body: Duration,
    /// An HTTP/2 connection with no open stream is closed (GOAWAY) after this.
    pub http2_idle: Duration,
    /// Interval of the HTTP/2 PINGs the hub sends on a quiet connection; a peer that does not
    /// answer one within the same time is disconnected.
    pub http2_keep_alive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            body: Duration::from_secs(30),
            http2_idle: Duration::from_secs(120),
            http2_keep_alive: Duration::from_secs(30),
        }
    }
}

/// What URI templates may cost, in bytes of compiled matcher as estimated before compiling
/// ([`herald_protocol::TemplateCost`]). Each bounds memory and CPU that one client can make the
/// hub spend: compiling costs time in proportion, and matching a topic against a template costs
/// at worst time in proportion per topic byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Most one template may cost; past it the selector is refused with 400 and what to
    /// simplify. Default 128 KiB: about forty variables, or a realistic level-4 template many
    /// times over (`https://example.com/books/{id}` costs 7 KiB).
    pub max_cost: u64,
    /// Most the distinct templates of one request may cost together (its `topic=` selectors,
    /// and separately its token's `mercure.subscribe`); past it, 400. Default 1 MiB.
    pub max_request_cost: u64,
    /// Most the distinct templates one client keeps alive may cost together, over all its
    /// open subscriptions; past it, 429. A client is its token; anonymous subscribers are
    /// counted per address (an IPv4 address or an IPv6 /64; together when the address is
    /// unknown), and a template costs once however many subscriptions use it. Default 16 MiB.
    pub max_client_cost: u64,
}

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            max_cost: 128 << 10,
            max_request_cost: 1 << 20,
            max_client_cost: 16 << 20,
        }
    }
}

impl Timeouts {
    /// The longest deadline accepted: longer is no deadline at all, and timers (hyper's too)
    /// add these to the current instant, which must not overflow.
    const MAX: Duration = Duration::from_secs(7 * 24 * 3600);

    /// Refuses a zero or endless deadline, naming the setting.
    fn validate(&self) -> Result<(), ConfigError> {
        for (setting, value) in [
            ("header-timeout", self.header),
            ("body-timeout", self.body),
            ("http2-idle-timeout", self.http2_idle),
            ("http2-keep-alive", self.http2_keep_alive),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(
                    setting,
                    "must be more than 0: every phase of a connection needs a deadline",
                    "set a duration such as 30s",
                ));
            }
            if value > Self::MAX {
                return Err(ConfigError::new(
                    setting,
                    format!("{value:?} is longer than the 7 days allowed"),
                    "set a duration such as 30s",
                ));
            }
        }
        Ok(())
    }
}

impl TemplateLimits {
    /// Each limit between the cheapest template and the compiler's ceiling, and the three in
    /// order.
    fn validate(&self) -> Result<(), ConfigError> {
        let ceiling = herald_protocol::template::MAX_TEMPLATE_COST;
        let floor = herald_protocol::TemplateCost::default().bytes();
        if !(floor..=ceiling).contains(&self.max_cost) {
            return Err(ConfigError::new(
                "max-template-cost",
                format!("{} bytes is outside {floor}..={ceiling}", self.max_cost),
                "set it between 8KiB and 16MiB (default 128KiB)",
            ));
        }
        if self.max_request_cost < self.max_cost {
            return Err(ConfigError::new(
                "max-request-template-cost",
                "is below --max-template-cost: a request could not hold one template",
                "raise it to at least --max-template-cost (default 1MiB)",
            ));
        }
        if self.max_client_cost < self.max_request_cost {
            return Err(ConfigError::new(
                "max-client-template-cost",
                "is below --max-request-template-cost: a client could not open one request",
                "raise it to at least --max-request-template-cost (default 16MiB)",
            ));
        }
        Ok(())
    }
}

/// Where history is kept.
///
/// The library defaults to [`Storage::Memory`] so that embedding the hub creates no files behind
/// the application's back; the `herald` binary defaults to [`Storage::Embedded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A bounded ring in memory: lost on restart.
    Memory,
    /// A redb file on local disk, written by group commit.
    Embedded {
        /// The history file (`--data-dir`/history.redb for `herald serve`).
        path: PathBuf,
        /// What an acknowledged publish survives.
        durability: Durability,
    },
    /// A Redis Stream shared by every node of a cluster (see `transport::redis`).
    Redis(RedisOptions),
}

/// A setting that cannot work, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {problem}; {fix}")]
pub struct ConfigError {
    /// The setting, as its command-line flag without dashes.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl ConfigError {
    /// An error naming `setting`, its `problem` and the `fix`.
    pub fn new(setting: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ConfigError {
            setting,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl HubConfig {
    /// The hub's resource identifier, [`HubConfig::hub_url`] parsed; an error names the
    /// setting when it is not an absolute http(s) URL.
    pub fn hub_resource(&self) -> Result<Option<url::Url>, ConfigError> {
        let Some(hub_url) = &self.hub_url else {
            return Ok(None);
        };
        match url::Url::parse(hub_url) {
            Ok(url)
                if matches!(url.scheme(), "https" | "http")
                    && url.host().is_some()
                    && url.fragment().is_none() =>
            {
                Ok(Some(url))
            }
            _ => Err(ConfigError::new(
                "hub-url",
                format!("{hub_url:?} is not an absolute http(s) URL"),
                "set the hub's public URL, e.g. https://hub.example/.well-known/mercure",
            )),
        }
    }

    /// The most connections (sockets) served at once, when `max_connections` caps
    /// subscriptions: that many plus a tenth (at least 100) for publishers, health checks and
    /// the UI, which are served while subscriptions are refused. Past it a connection gets 503
    /// and is closed: the guard that keeps the process within its file descriptors.
    pub fn connection_cap(&self) -> Option<usize> {
        self.max_connections
            .map(|max| max.saturating_add((max / 10).max(100)))
    }

    /// Checks the settings together, and builds the token verifiers. A JWK Set is loaded here:
    /// this reads its file or fetches its URL (waiting at most `jwks_refresh.timeout`).
    pub fn validate(&self) -> Result<Verifiers, ConfigError> {
        if self.publisher_key.is_none()
            && self.subscriber_key.is_none()
            && self.publisher_jwks.is_none()
            && self.subscriber_jwks.is_none()
        {
            return Err(ConfigError::new(
                "jwt-key",
                "no publisher key and no subscriber key",
                "set --jwt-key (or MERCURE_PUBLISHER_JWT_KEY / MERCURE_SUBSCRIBER_JWT_KEY) or \
                 --jwks, or run with --dev for a generated key",
            ));
        }
        for (role, key, jwks, setting) in [
            (
                "publishers'",
                &self.publisher_key,
                &self.publisher_jwks,
                "publisher-jwks",
            ),
            (
                "subscribers'",
                &self.subscriber_key,
                &self.subscriber_jwks,
                "subscriber-jwks",
            ),
        ] {
            if key.is_some() && jwks.is_some() {
                return Err(ConfigError::new(
                    setting,
                    format!("the {role} tokens have both a key and a JWK Set"),
                    "give them one or the other: remove the key or the JWK Set",
                ));
            }
        }
        let publisher = verifier("publisher-jwt-key", &self.publisher_key)?;
        let subscriber = verifier("subscriber-jwt-key", &self.subscriber_key)?;
        for origin in &self.cors_origins {
            check_origin("cors-origin", origin, true)?;
        }
        for origin in &self.publish_origins {
            check_origin("publish-origin", origin, false)?;
        }
        if self.cookie_name.is_empty()
            || !self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError::new(
                "cookie-name",
                format!("{:?} is not a valid cookie name", self.cookie_name),
                "use letters, digits and -_. only",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                "max-body-size",
                "must be more than 0",
                "set it to at least the largest update you publish (default 1 MiB)",
            ));
        }
        if self.queue_bytes < self.max_body_bytes * 2 {
            return Err(ConfigError::new(
                "subscriber-queue-size",
                format!(
                    "{} bytes cannot hold two of the largest accepted updates ({} bytes each)",
                    self.queue_bytes, self.max_body_bytes
                ),
                "raise it to at least twice --max-body-size",
            ));
        }
        self.timeouts.validate()?;
        if self.max_connections == Some(0) {
            return Err(ConfigError::new(
                "max-connections",
                "must be more than 0",
                "leave it unset for no limit, or set the most connections to serve at once",
            ));
        }
        if self.max_subscriptions_per_client == Some(0) {
            return Err(ConfigError::new(
                "max-subscriptions-per-client",
                "must be more than 0",
                "set it to more than 0, or to no limit (0 on the command line, None in code)",
            ));
        }
        if self.drain_spread > Timeouts::MAX {
            return Err(ConfigError::new(
                "drain-spread",
                "is longer than 7 days",
                "use a few seconds, e.g. 5s (the default)",
            ));
        }
        self.template_limits.validate()?;
        self.hub_resource()?;
        for issuer in self
            .publisher_issuers
            .iter()
            .chain(&self.subscriber_issuers)
        {
            if issuer.trim().is_empty() || issuer.trim() != issuer {
                return Err(ConfigError::new(
                    "issuer",
                    format!("{issuer:?} is not an issuer identifier"),
                    "write the issuer exactly as tokens carry it in iss, e.g. https://app.example",
                ));
            }
        }
        if let Storage::Redis(redis) = &self.storage {
            redis.client().map_err(|problem| {
                ConfigError::new(
                    "transport",
                    problem,
                    "write it as redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS)",
                )
            })?;
            if redis.stream.is_empty() {
                return Err(ConfigError::new(
                    "redis-stream",
                    "is empty",
                    "name the stream, e.g. herald (the default)",
                ));
            }
        }
        // Last, as loading a set may take a network round trip.
        let publisher_jwks = self
            .publisher_jwks
            .clone()
            .map(|source| JwksVerifier::load("publisher-jwks", source, self.jwks_refresh))
            .transpose()?;
        let subscriber_jwks = match (&self.subscriber_jwks, &publisher_jwks) {
            // One set for both roles is loaded and refreshed once.
            (Some(source), Some(shared)) if self.publisher_jwks.as_ref() == Some(source) => {
                Some(Arc::clone(shared))
            }
            (Some(source), _) => Some(JwksVerifier::load(
                "subscriber-jwks",
                source.clone(),
                self.jwks_refresh,
            )?),
            (None, _) => None,
        };
        Ok(Verifiers {
            publisher: publisher
                .map(|v| KeySource::Static(Box::new(v)))
                .or(publisher_jwks.map(KeySource::Jwks)),
            subscriber: subscriber
                .map(|v| KeySource::Static(Box::new(v)))
                .or(subscriber_jwks.map(KeySource::Jwks)),
        })
    }
}

/// The token verifiers a valid configuration yields.
#[derive(Debug, Clone)]
pub struct Verifiers {
    /// Verifies publishers' tokens; `None`: nobody may publish over HTTP.
    pub publisher: Option<KeySource>,
    /// Verifies subscribers' tokens; `None`: only anonymous subscribers, if allowed.
    pub subscriber: Option<KeySource>,
}

fn verifier(
    setting: &'static str,
    key: &Option<JwtKey>,
) -> Result<Option<TokenVerifier>, ConfigError> {
    key.as_ref()
        .map(|key| {
            TokenVerifier::new(key.algorithm, &key.key).map_err(|e| {
                ConfigError::new(
                    setting,
                    e.to_string(),
                    "give the HMAC secret for HS256/384/512, or the PEM public key (or @file) \
                     for RS*, PS*, ES*, EdDSA",
                )
            })
        })
        .transpose()
}

/// An origin is `scheme://host[:port]`, exactly as browsers send it in `Origin`.
fn check_origin(setting: &'static str, origin: &str, allow_star: bool) -> Result<(), ConfigError> {
    if allow_star && origin == "*" {
        return Ok(());
    }
    let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !rest.is_empty()
            && !rest.contains(['/', '?', '#', ' '])
    });
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            setting,
            format!("{origin:?} is not an origin"),
            "write it as scheme://host[:port] with no path, e.g. https://example.com",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> HubConfig {
        HubConfig {
            publisher_key: Some(JwtKey {
                algorithm: Algorithm::HS256,
                key: b"k".to_vec(),
            }),
            ..HubConfig::default()
        }
    }

    #[test]
    fn no_key_is_refused() {
        assert_eq!(
            HubConfig::default().validate().unwrap_err().setting,
            "jwt-key"
        );
    }

    #[test]
    fn bad_origins_are_refused() {
        let mut c = keyed();
        c.cors_origins = vec!["https://example.com/path".into()];
        assert_eq!(c.validate().unwrap_err().setting, "cors-origin");
        c.cors_origins = vec!["*".into(), "http://localhost:8080".into()];
        assert!(c.validate().is_ok());
        c.publish_origins = vec!["*".into()];
        assert_eq!(c.validate().unwrap_err().setting, "publish-origin");
    }

    #[test]
    fn a_bad_pem_names_the_setting() {
        let mut c = keyed();
        c.subscriber_key = Some(JwtKey {
            algorithm: Algorithm::RS256,
            key: b"nope".to_vec(),
        });
        assert_eq!(c.validate().unwrap_err().setting, "subscriber-jwt-key");
    }

    #[test]
    fn a_key_and_a_jwks_for_one_role_are_refused() {
        let mut c = keyed();
        c.publisher_jwks = Some(JwksSource::parse("/nonexistent/jwks.json"));
        assert_eq!(c.validate().unwrap_err().setting, "publisher-jwks");
    }

    #[test]
    fn a_zero_timeout_names_the_setting() {
        let mut c = keyed();
        c.timeouts.body = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().setting, "body-timeout");
        c.timeouts.body = Duration::from_secs(30);
        c.timeouts.http2_idle = Duration::MAX;
        assert_eq!(c.validate().unwrap_err().setting, "http2-idle-timeout");
    }

    #[test]
    fn a_missing_jwks_file_names_the_setting() {
        let c = HubConfig {
            subscriber_jwks: Some(JwksSource::parse("/nonexistent/jwks.json")),
            ..HubConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.setting, "subscriber-jwks");
        assert!(e.problem.contains("/nonexistent/jwks.json"), "{e}");
    }
}
