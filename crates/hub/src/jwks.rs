//! JSON Web Key Sets in the hub: loading one from a file or a URL, and keeping it fresh [R18].
//!
//! Which key verifies a token is decided by [`herald_protocol::KeySet`]; this module does the
//! I/O. A set is loaded when the hub is built (a file that cannot be read, a URL that cannot be
//! fetched or a set that cannot be used stops the hub from starting, naming the setting). After
//! that, verifying a token never waits for the network, with one exception: a token whose `kid`
//! the set does not know makes the hub reload the set (refetch the URL, reread the file), at most
//! once per [`JwksRefresh::min_interval`], so that keys rotated in by the identity provider are
//! picked up without letting tokens with made-up `kid`s hammer it. A URL is also refetched every
//! [`JwksRefresh::interval`] in the background. A failed reload keeps the set in use and logs a
//! warning.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_protocol::{Claims, KeySet, TokenError, TokenRules, TokenVerifier};
use tokio::time::Instant;

use crate::config::ConfigError;

/// The largest JWK Set the hub accepts (sets of real identity providers are a few KiB).
const MAX_SET_BYTES: usize = 1024 * 1024;

/// Where a JWK Set is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file, reread when a token names an unknown key.
    File(PathBuf),
    /// An `http://` or `https://` URL, refetched periodically and when a token names an unknown
    /// key.
    Url(String),
}

impl JwksSource {
    /// A URL when `text` starts with `http://` or `https://`, else a file path.
    pub fn parse(text: &str) -> JwksSource {
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            JwksSource::Url(text.to_owned())
        } else {
            JwksSource::File(PathBuf::from(text))
        }
    }
}

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "file {}", path.display()),
            JwksSource::Url(url) => write!(f, "URL {url}"),
        }
    }
}

/// How JWK Sets are kept fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksRefresh {
    /// How often a set served from a URL is refetched in the background.
    pub interval: Duration,
    /// The least time between two reloads caused by tokens naming unknown keys.
    pub min_interval: Duration,
    /// How long one fetch of a URL may take.
    pub timeout: Duration,
}

impl Default for JwksRefresh {
    fn default() -> Self {
        JwksRefresh {
            interval: Duration::from_secs(5 * 60),
            min_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What verifies the tokens of one role: a configured key, or a JWK Set.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A single key from the settings (an HMAC secret or a PEM public key).
    Static(Box<TokenVerifier>),
    /// The keys of a JWK Set fetched from a URL or read from a file, kept fresh [R18].
    Jwks(Arc<JwksVerifier>),
}

impl KeySource {
    /// Verifies `token`. Only a token naming a key the set does not know may wait, for one
    /// rate-limited reload of the set.
    /// A 1.0 access token is judged by `rules` too (audience, issuer, editions).
    pub async fn verify(&self, token: &str, rules: &TokenRules) -> Result<Claims, TokenError> {
        match self {
            KeySource::Static(verifier) => verifier.verify_with(token, rules),
            // Boxed: a set's verification may wait for a reload, and that future would size
            // every request's future, static key or not.
            KeySource::Jwks(jwks) => Box::pin(jwks.verify(token, rules)).await,
        }
    }
}

/// A JWK Set kept fresh from its source.
pub struct JwksVerifier {
    setting: &'static str,
    source: JwksSource,
    refresh: JwksRefresh,
    set: RwLock<Arc<KeySet>>,
    /// When the set was last (re)loaded or a reload was attempted; held during a reload so that
    /// concurrent misses wait for one reload instead of each starting their own.
    last_load: tokio::sync::Mutex<Instant>,
    client: Option<HttpClient>,
    refresher_started: AtomicBool,
}

impl fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("setting", &self.setting)
            .field("source", &self.source)
            .field("kids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// Loads the set now (blocking the calling thread for at most `refresh.timeout` for a URL),
    /// or says why it cannot be used, naming `setting`.
    pub fn load(
        setting: &'static str,
        source: JwksSource,
        refresh: JwksRefresh,
    ) -> Result<Arc<JwksVerifier>, ConfigError> {
        let set = match &source {
            JwksSource::File(path) => read_file(path),
            JwksSource::Url(url) => fetch_blocking(url, refresh.timeout),
        }
        .map_err(|problem| {
            ConfigError::new(
                setting,
                format!("cannot use the JWK Set ({source}): {problem}"),
                "give a readable file or an http(s) URL serving a JSON Web Key Set \
                 ({\"keys\": [...]}) of RSA, EC (P-256, P-384) or Ed25519 public keys",
            )
        })?;
        tracing::info!(
            setting,
            %source,
            kids = ?set.kids().collect::<Vec<_>>(),
            skipped = set.skipped(),
            "JWK Set loaded"
        );
        let client = match &source {
            JwksSource::Url(_) => Some(client().map_err(|e| {
                ConfigError::new(setting, e, "check the system's TLS root certificates")
            })?),
            JwksSource::File(_) => None,
        };
        let verifier = Arc::new(JwksVerifier {
            setting,
            source,
            refresh,
            set: RwLock::new(Arc::new(set)),
            last_load: tokio::sync::Mutex::new(Instant::now()),
            client,
            refresher_started: AtomicBool::new(false),
        });
        verifier.start_refresher();
        Ok(verifier)
    }

    /// The `kid`s of the keys in use.
    pub fn key_ids(&self) -> Vec<String> {
        self.current().kids().map(str::to_owned).collect()
    }

    /// Verifies `token` with the set, reloading it once (rate-limited) if the token names a key
    /// it does not know.
    pub async fn verify(
        self: &Arc<Self>,
        token: &str,
        rules: &TokenRules,
    ) -> Result<Claims, TokenError> {
        self.start_refresher();
        let set = self.current();
        match set.verify_with(token, rules) {
            Err(TokenError::UnknownKeyId(kid)) => {
                if self.reload_on_miss(&set).await {
                    self.current().verify_with(token, rules)
                } else {
                    Err(TokenError::UnknownKeyId(kid))
                }
            }
            other => other,
        }
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap().clone()
    }

    fn replace(&self, set: KeySet) {
        *self.set.write().unwrap() = Arc::new(set);
    }

    /// Reloads the set unless it was (re)loaded less than `min_interval` ago; true when the set
    /// in use is newer than `seen`.
    async fn reload_on_miss(&self, seen: &Arc<KeySet>) -> bool {
        let mut last_load = self.last_load.lock().await;
        if !Arc::ptr_eq(seen, &self.current()) {
            return true; // reloaded while this request waited
        }
        if last_load.elapsed() < self.refresh.min_interval {
            return false;
        }
        *last_load = Instant::now();
        self.reload("a token names an unknown key id").await
    }

    async fn reload(&self, why: &str) -> bool {
        let result = match &self.source {
            JwksSource::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&path))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
            JwksSource::Url(url) => match &self.client {
                Some(client) => fetch(client, url, self.refresh.timeout).await,
                None => Err("no HTTP client".to_owned()),
            },
        };
        match result {
            Ok(set) => {
                tracing::debug!(
                    setting = self.setting,
                    source = %self.source,
                    kids = ?set.kids().collect::<Vec<_>>(),
                    "JWK Set reloaded ({why})"
                );
                self.replace(set);
                true
            }
            Err(e) => {
                tracing::warn!(
                    setting = self.setting,
                    source = %self.source,
                    "cannot reload the JWK Set ({why}), keeping the one in use: {e}"
                );
                false
            }
        }
    }

    /// Starts the periodic refetch of a URL set, once, if a runtime is available (else on the
    /// first verification). The task ends with the hub.
    fn start_refresher(self: &Arc<Self>) {
        if !matches!(self.source, JwksSource::Url(_))
            || self.refresher_started.load(Ordering::Relaxed)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refresher_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        let interval = self.refresh.interval;
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(this) = weak.upgrade() else { break };
                let mut last_load = this.last_load.lock().await;
                *last_load = Instant::now();
                this.reload("periodic refresh").await;
            }
        });
    }
}

fn read_file(path: &std::path::Path) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    KeySet::from_json(&bytes).map_err(|e| e.to_string())
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// An HTTP(S) client with rustls on ring, given explicitly (nothing process-wide is installed).
fn client() -> Result<HttpClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https),
    )
}

/// Fetches and parses the set at `url`, in at most `timeout`. Redirects are not followed.
async fn fetch(client: &HttpClient, url: &str, timeout: Duration) -> Result<KeySet, String> {
    use http_body_util::BodyExt;

    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let request = http::Request::get(uri)
        .header(
            http::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .header(
            http::header::USER_AGENT,
            concat!("herald/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::new())
        .map_err(|e| format!("not a URL: {e}"))?;
    let body = tokio::time::timeout(timeout, async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("cannot fetch: {}", with_sources(&e)))?;
        if !response.status().is_success() {
            return Err(format!("the server answered {}", response.status()));
        }
        http_body_util::Limited::new(response.into_body(), MAX_SET_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| format!("cannot read the response: {e}"))
    })
    .await
    .map_err(|_| format!("no answer within {timeout:?}"))??;
    KeySet::from_json(&body).map_err(|e| e.to_string())
}

/// An error with its causes, as hyper's errors keep the useful part in their sources.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Fetches a set from synchronous code, inside or outside a runtime: on a thread of its own
/// with a runtime of its own (and a client of its own, as a client's pooled connections belong
/// to the runtime that made them).
fn fetch_blocking(url: &str, timeout: Duration) -> Result<KeySet, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?;
                runtime.block_on(async { fetch(&client()?, url, timeout).await })
            })
            .join()
            .unwrap_or_else(|_| Err("the fetch panicked".to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            JwksSource::parse("https://idp.example.com/jwks.json"),
            JwksSource::Url("https://idp.example.com/jwks.json".into())
        );
        assert_eq!(
            JwksSource::parse("HTTP://localhost/k"),
            JwksSource::Url("HTTP://localhost/k".into())
        );
        assert_eq!(
            JwksSource::parse("/etc/herald/jwks.json"),
            JwksSource::File("/etc/herald/jwks.json".into())
        );
    }
}
