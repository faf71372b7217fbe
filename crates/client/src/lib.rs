//! A Mercure client: publish updates to a hub, subscribe to topics, discover hubs.
//!
//! Works with Herald and with any hub speaking the Mercure protocol (draft-07 tokens and
//! `topic=` selectors).
//!
//! - [`Publisher`] posts updates with a token, or with the hub's key from which it mints
//!   short-lived tokens itself, and returns the id the hub assigned. Refusals are typed
//!   ([`PublishError`]) and carry the hub's reason.
//! - [`Subscriber`] gives a [`Stream`](futures_util::Stream) of [`Event`]s that reconnects by
//!   itself (backoff, the hub's `retry`, `Last-Event-ID`) without losing or repeating events.
//! - [`discovery`] finds the hub and the canonical topic of a resource from its `Link` headers.
//! - [`token`] mints tokens with the `mercure` claim.
//!
//! # Publish a book, receive it
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use herald_hub::{Hub, HubConfig, JwtKey};
//! # let key = JwtKey { algorithm: herald_client::token::Algorithm::HS256, key: b"your-hub-secret".to_vec() };
//! # let hub = Hub::new(HubConfig { publisher_key: Some(key.clone()), subscriber_key: Some(key), ..HubConfig::default() }).await?;
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let hub_url = format!("http://{}/.well-known/mercure", listener.local_addr()?);
//! # tokio::spawn(herald_hub::serve(listener, hub, std::future::pending()));
//! use futures_util::StreamExt;
//! use herald_client::token::{MercureClaim, TokenMinter};
//! use herald_client::{Publication, Publisher, Subscriber};
//! use serde_json::json;
//!
//! // hub_url: "https://hub.example.com/.well-known/mercure"
//! let publisher = Publisher::with_key(&hub_url, "your-hub-secret")?;
//!
//! // A subscriber allowed to receive private updates about books.
//! let token = TokenMinter::hmac("your-hub-secret")
//!     .mint(&MercureClaim::subscriber(["https://example.com/books/{id}"]), None)?;
//! let mut books = Subscriber::new(&hub_url)
//!     .topic("https://example.com/books/{id}")
//!     .token(token)
//!     .connect()
//!     .await?;
//!
//! let id = publisher
//!     .publish(
//!         Publication::new("https://example.com/books/1")
//!             .json(&json!({"@id": "https://example.com/books/1", "title": "Dune", "availability": "InStock"}))?
//!             .private(),
//!     )
//!     .await?;
//! let event = books.next().await.expect("the stream does not end")?;
//! assert_eq!(event.id.as_deref(), Some(id.as_str()));
//! assert_eq!(event.json::<serde_json::Value>()?["title"], "Dune");
//! # Ok(())
//! # }
//! ```
//!
//! `connect` returns once the hub has registered the subscription, so the update published
//! after it cannot be missed. ([`Subscriber::stream`] connects lazily instead, on first poll.)
//!
//! # Discover the hub of a resource
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let app = axum::Router::new().route("/books/1", axum::routing::get(|| async {
//! #     ([("Link", r#"</.well-known/mercure>; rel="mercure", </books/1>; rel="self""#)], r#"{"title":"Dune"}"#)
//! # }));
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let book_url = format!("http://{}/books/1", listener.local_addr()?);
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! use herald_client::discovery::Discovery;
//!
//! // book_url: "https://example.com/books/1"
//! let found = Discovery::fetch(&book_url).await?;
//! println!("hub {}, topic {:?}", found.hub(), found.topic);
//! # assert!(found.hub().as_str().ends_with("/.well-known/mercure"));
//! # assert_eq!(found.topic.unwrap().as_str(), book_url);
//! # Ok(())
//! # }
//! ```

pub mod discovery;
mod error;
mod publisher;
pub mod sse;
mod subscriber;
#[cfg(feature = "rustls")]
pub mod tls;
pub mod token;

pub use discovery::Discovery;
pub use error::{DiscoveryError, PublishError, SubscribeError};
pub use herald_protocol::Update;
pub use publisher::{Publication, Publisher, PublisherBuilder};
pub use reqwest::Url;
pub use sse::Event;
pub use subscriber::{EventStream, Reconnect, Subscriber};

/// The path of a hub on its host, `/.well-known/mercure`.
pub const HUB_PATH: &str = herald_protocol::HUB_PATH;

/// A builder for the HTTP clients this crate makes: with the `rustls` feature, one that speaks
/// HTTPS (see [`tls`]); without it, plain HTTP.
pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    #[cfg(feature = "rustls")]
    {
        tls::client_builder(None).unwrap_or_else(|_| tls::untrusting_builder())
    }
    #[cfg(not(feature = "rustls"))]
    reqwest::Client::builder()
}

/// Parses a hub URL, with an error a person can act on.
pub(crate) fn parse_hub_url(hub: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(hub).map_err(|e| {
        format!("the hub URL {hub:?} is not a URL ({e}); give the full URL, such as http://127.0.0.1:3000/.well-known/mercure")
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "the hub URL {hub:?} must start with http:// or https://"
        ));
    }
    Ok(url)
}
