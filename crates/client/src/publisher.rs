//! Publishing updates.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_protocol::Update;
use serde::Serialize;

use crate::error::{PublishError, Redacted, error_chain, reason_from_body};
use crate::token::{MercureClaim, MintError, TokenMinter};

/// One update to publish: its topics (the first is canonical), its data, and the optional SSE
/// fields. Built with [`Publication::new`] and its chained setters, or converted from a
/// [`herald_protocol::Update`] (whose empty `id` means "let the hub assign one").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publication {
    /// The topics the update is about: the first is its canonical IRI, the others alternates.
    pub topics: Vec<String>,
    /// The content sent to subscribers; `None` sends no `data` field (an empty message).
    pub data: Option<String>,
    /// Whether only subscribers authorized for one of the topics receive it (see
    /// [`Publication::private`]).
    pub private: bool,
    /// The id to use; `None` lets the hub generate one (`urn:uuid:...`).
    pub id: Option<String>,
    /// The SSE `event:` field.
    pub event_type: Option<String>,
    /// The SSE `retry:` field, in milliseconds: how long subscribers wait before reconnecting.
    pub retry: Option<u64>,
}

impl Publication {
    /// An update on `topic`, its canonical topic.
    pub fn new(topic: impl Into<String>) -> Publication {
        Publication {
            topics: vec![topic.into()],
            ..Publication::default()
        }
    }

    /// Adds an alternate topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Publication {
        self.topics.push(topic.into());
        self
    }

    /// The data, as text.
    pub fn data(mut self, data: impl Into<String>) -> Publication {
        self.data = Some(data.into());
        self
    }

    /// The data, as the JSON serialization of `value`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Publication, PublishError> {
        let text = serde_json::to_string(value)
            .map_err(|e| PublishError::InvalidUpdate(format!("data is not serializable: {e}")))?;
        self.data = Some(text);
        Ok(self)
    }

    /// Makes the update private: only subscribers whose token's `mercure.subscribe` claim
    /// matches one of its topics receive it.
    pub fn private(mut self) -> Publication {
        self.private = true;
        self
    }

    /// Sets the id instead of letting the hub generate one.
    pub fn id(mut self, id: impl Into<String>) -> Publication {
        self.id = Some(id.into());
        self
    }

    /// Sets the SSE event type (`event:`), which `EventSource` dispatches to
    /// `addEventListener(type, ...)` instead of `onmessage`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Publication {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets the SSE `retry:` field, in milliseconds.
    pub fn retry(mut self, milliseconds: u64) -> Publication {
        self.retry = Some(milliseconds);
        self
    }

    /// The form fields of the publish request.
    fn form(&self) -> Vec<(&'static str, String)> {
        let mut form: Vec<(&'static str, String)> =
            self.topics.iter().map(|t| ("topic", t.clone())).collect();
        if let Some(data) = &self.data {
            form.push(("data", data.clone()));
        }
        if self.private {
            form.push(("private", "on".into()));
        }
        if let Some(id) = &self.id {
            form.push(("id", id.clone()));
        }
        if let Some(event_type) = &self.event_type {
            form.push(("type", event_type.clone()));
        }
        if let Some(retry) = self.retry {
            form.push(("retry", retry.to_string()));
        }
        form
    }
}

impl From<Update> for Publication {
    fn from(update: Update) -> Publication {
        Publication {
            topics: update.topics,
            data: Some(update.data),
            private: update.private,
            id: (!update.id.is_empty()).then_some(update.id),
            event_type: update.event_type,
            retry: update.retry,
        }
    }
}

impl From<&Update> for Publication {
    fn from(update: &Update) -> Publication {
        Publication::from(update.clone())
    }
}

/// How a publisher authenticates.
enum Credentials {
    /// A token given by the caller, sent as is.
    Token(String),
    /// A key: tokens are minted on demand and reused until shortly before they expire.
    Key {
        minter: TokenMinter,
        claim: MercureClaim,
        ttl: Duration,
        cached: Mutex<Option<(String, Instant)>>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.debug_tuple("Token").field(&Redacted).finish(),
            Credentials::Key {
                minter, claim, ttl, ..
            } => f
                .debug_struct("Key")
                .field("minter", minter)
                .field("claim", claim)
                .field("ttl", ttl)
                .finish(),
        }
    }
}

impl Credentials {
    fn token(&self) -> Result<String, MintError> {
        match self {
            Credentials::Token(token) => Ok(token.clone()),
            Credentials::Key {
                minter,
                claim,
                ttl,
                cached,
            } => {
                let mut cached = cached.lock().unwrap();
                // Reuse a token while more than half of its lifetime is left, so that it never
                // expires in flight, even with some clock skew.
                if let Some((token, refresh_at)) = cached.as_ref()
                    && Instant::now() < *refresh_at
                {
                    return Ok(token.clone());
                }
                let token = minter.mint(claim, Some(*ttl))?;
                *cached = Some((token.clone(), Instant::now() + *ttl / 2));
                Ok(token)
            }
        }
    }
}

/// Publishes updates to one hub.
///
/// Cheap to clone (the HTTP client and the credentials are shared), safe to use from many tasks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use herald_hub::{Hub, HubConfig, JwtKey};
/// # let key = JwtKey { algorithm: herald_client::token::Algorithm::HS256, key: b"your-hub-secret".to_vec() };
/// # let hub = Hub::new(HubConfig { publisher_key: Some(key), ..HubConfig::default() }).await?;
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let hub_url = format!("http://{}/.well-known/mercure", listener.local_addr()?);
/// # tokio::spawn(herald_hub::serve(listener, hub, std::future::pending()));
/// use herald_client::{Publication, Publisher};
/// use serde_json::json;
///
/// // hub_url: "https://hub.example.com/.well-known/mercure"
/// // A publisher that mints its own short-lived tokens with the hub's key.
/// let publisher = Publisher::with_key(&hub_url, "your-hub-secret")?;
/// let id = publisher
///     .publish(
///         Publication::new("https://example.com/books/1")
///             .json(&json!({"title": "Dune", "status": "available"}))?,
///     )
///     .await?;
/// println!("published {id}");
/// # assert!(id.starts_with("urn:uuid:"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: reqwest::Url,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Publisher {
    /// A publisher sending `token` (a JWT whose `mercure.publish` claim covers the topics).
    pub fn new(hub: &str, token: impl Into<String>) -> Result<Publisher, PublishError> {
        PublisherBuilder::new(hub).token(token).build()
    }

    /// A publisher minting its own HS256 tokens with the hub's `secret`, allowed to publish to
    /// every topic and valid for five minutes each.
    pub fn with_key(hub: &str, secret: impl AsRef<[u8]>) -> Result<Publisher, PublishError> {
        PublisherBuilder::new(hub)
            .minter(TokenMinter::hmac(secret))
            .build()
    }

    /// A builder, for a key with another algorithm, narrower rights, a custom HTTP client...
    pub fn builder(hub: &str) -> PublisherBuilder {
        PublisherBuilder::new(hub)
    }

    /// The hub's URL.
    pub fn hub(&self) -> &str {
        self.inner.hub.as_str()
    }

    /// Publishes `update` and returns the id the hub gave it.
    pub async fn publish(&self, update: impl Into<Publication>) -> Result<String, PublishError> {
        let update = update.into();
        if update.topics.is_empty() {
            return Err(PublishError::InvalidUpdate(
                "an update needs at least one topic".into(),
            ));
        }
        let token = self.inner.credentials.token()?;
        let network = |source| PublishError::Network {
            url: self.inner.hub.to_string(),
            source,
        };
        let response = self
            .inner
            .http
            .post(self.inner.hub.clone())
            .bearer_auth(token)
            .form(&update.form())
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        let body = response.text().await.map_err(network)?;
        if status.is_success() {
            Ok(body.trim_end_matches(['\r', '\n']).to_owned())
        } else {
            Err(PublishError::from_status(
                status.as_u16(),
                reason_from_body(&body),
            ))
        }
    }
}

/// Configures a [`Publisher`].
#[must_use]
pub struct PublisherBuilder {
    hub: String,
    token: Option<String>,
    minter: Option<TokenMinter>,
    claim: MercureClaim,
    ttl: Duration,
    http: Option<reqwest::Client>,
    timeout: Duration,
}

impl PublisherBuilder {
    fn new(hub: &str) -> PublisherBuilder {
        PublisherBuilder {
            hub: hub.to_owned(),
            token: None,
            minter: None,
            claim: MercureClaim::publisher(["*"]),
            ttl: Duration::from_secs(300),
            http: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends this token with every publish.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self.minter = None;
        self
    }

    /// Mints tokens with this minter (any algorithm) instead of sending a fixed token.
    pub fn minter(mut self, minter: TokenMinter) -> Self {
        self.minter = Some(minter);
        self.token = None;
        self
    }

    /// The topics minted tokens allow publishing to (default: `*`, every topic).
    pub fn publish_selectors<S: Into<String>>(
        mut self,
        selectors: impl IntoIterator<Item = S>,
    ) -> Self {
        self.claim.publish = Some(selectors.into_iter().map(Into::into).collect());
        self
    }

    /// The lifetime of minted tokens (default 5 minutes); a token is renewed once half of it
    /// has passed.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(2));
        self
    }

    /// The HTTP client to use (default: a new one with [`PublisherBuilder::timeout`]).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How long one publish may take, connection included (default 30 s). Ignored with
    /// [`PublisherBuilder::http_client`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The publisher, or [`PublishError::Config`] if the hub URL is not one, neither a token
    /// nor a minter was given, or the HTTP client cannot be built.
    pub fn build(self) -> Result<Publisher, PublishError> {
        let hub = crate::parse_hub_url(&self.hub).map_err(PublishError::Config)?;
        let credentials = match (self.token, self.minter) {
            (Some(token), _) => Credentials::Token(token),
            (None, Some(minter)) => Credentials::Key {
                minter,
                claim: self.claim,
                ttl: self.ttl,
                cached: Mutex::new(None),
            },
            (None, None) => {
                return Err(PublishError::Config(
                    "a publisher needs a token or a key".into(),
                ));
            }
        };
        let http = match self.http {
            Some(http) => http,
            None => crate::http_client_builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                .build()
                .map_err(|e| {
                    PublishError::Config(format!(
                        "cannot build an HTTP client: {}",
                        error_chain(&e)
                    ))
                })?,
        };
        Ok(Publisher {
            inner: std::sync::Arc::new(Inner {
                hub,
                credentials,
                http,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_update_becomes_a_publication() {
        let update = Update {
            id: String::new(),
            topics: vec!["a".into(), "b".into()],
            data: "d".into(),
            private: true,
            event_type: Some("t".into()),
            retry: Some(5),
        };
        let publication = Publication::from(update);
        assert_eq!(publication.id, None);
        assert_eq!(
            publication.form(),
            vec![
                ("topic", "a".to_string()),
                ("topic", "b".to_string()),
                ("data", "d".to_string()),
                ("private", "on".to_string()),
                ("type", "t".to_string()),
                ("retry", "5".to_string()),
            ]
        );
    }

    #[test]
    fn minted_tokens_are_reused_then_renewed() {
        let credentials = Credentials::Key {
            minter: TokenMinter::hmac("k"),
            claim: MercureClaim::publisher(["*"]),
            ttl: Duration::from_secs(60),
            cached: Mutex::new(None),
        };
        let first = credentials.token().unwrap();
        assert_eq!(credentials.token().unwrap(), first);
        if let Credentials::Key { cached, .. } = &credentials {
            cached.lock().unwrap().as_mut().unwrap().1 = Instant::now();
        }
        // Renewed: a fresh mint (`iat` may be the same second, so compare the refresh time).
        credentials.token().unwrap();
        if let Credentials::Key { cached, .. } = &credentials {
            assert!(cached.lock().unwrap().as_ref().unwrap().1 > Instant::now());
        }
    }
}
