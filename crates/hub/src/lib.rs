//! The Herald hub as a library.
//!
//! A [`Hub`] is built from a [`HubConfig`]; [`Hub::router`] gives an axum `Router` that serves the
//! Mercure endpoint (`/.well-known/mercure`), `/healthz`, `/readyz` and a front page at `/`
//! (unless [`HubConfig::front_page`] is off), which an application can mount in its own server
//! next to its own routes, and [`serve`] runs it on a listener with the limits and graceful
//! shutdown a standalone hub needs (and, with [`HubConfig::metrics_listen`], the Prometheus
//! metrics on a listener of their own: [`serve_metrics`]).
//!
//! Inside, one update travels: `routes` (parse, authorize) → [`Transport::publish`] (position,
//! history) → the hub's one [`Dispatcher`] (selector index, one shared frame per update) → each
//! subscriber's outbox → its stream body (everything queued written at once). A transport is a
//! type an application can supply ([`Hub::builder`]); see docs/architecture.md.
//!
//! This crate must not know about the command line: the `herald` binary turns flags, environment
//! and files into a [`HubConfig`].

pub mod acme;
mod auth;
pub mod config;
mod deadline;
pub mod delivery;
mod front_page;
mod grants;
pub mod jwks;
mod limits;
mod metrics;
mod peer;
mod rejection;
mod routes;
mod selector;
mod server;
pub mod shutdown;
mod subscription_conn;
mod subscriptions;
pub mod tls;
pub mod transport;
mod ui;

use std::sync::Arc;

use axum::Router;
use herald_protocol::Update;

pub use config::{ConfigError, HubConfig, JwtKey, Storage};
pub use delivery::{DispatchBatch, Dispatcher};
pub use jwks::{JwksRefresh, JwksSource};
pub use metrics::endpoints::{READY_TIMEOUT, serve_metrics};
pub use peer::ProxyNetwork;
pub use server::{LISTEN_BACKLOG, bind, serve, serve_tls};
pub use transport::HistoryLimits;
pub use transport::embedded::OpenError;
pub use transport::{Durability, RedisOptions, RedisStartError, Transport, TransportError};

use auth::Authorizer;
use delivery::registry::Registry;
use transport::{EmbeddedTransport, MemoryTransport, RedisTransport};

/// Why a hub could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A setting is invalid or a key cannot be loaded (the error names the setting and the fix).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The history database cannot be opened (the error names the file, the problem, the fix).
    #[error(transparent)]
    Storage(#[from] OpenError),
    /// The Redis transport could not start (the error says why).
    #[error(transparent)]
    Redis(#[from] RedisStartError),
    /// The task that validates the configuration failed (it panicked or the runtime is
    /// shutting down).
    #[error("the hub could not be built: {0}")]
    Runtime(String),
}

/// A cheap `Clone` handle to one hub: its configuration, subscribers and history.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    config: HubConfig,
    authorizer: Authorizer,
    registry: Registry,
    transport: Arc<dyn Transport>,
    /// `HubConfig::hub_url`, parsed: the base of relative 1.0 URL patterns and topics.
    url_base: url::Url,
    /// The caps on open subscriptions (limits.rs).
    limits: limits::SubscriptionLimits,
    /// The live subscriptions as they are announced (subscriptions.rs), with `--subscriptions`.
    active_subscriptions: subscriptions::ActiveSubscriptions,
}

/// Makes a transport from the hub's [`Dispatcher`]; see [`HubBuilder::transport`].
type TransportFactory = Box<dyn FnOnce(Dispatcher) -> Arc<dyn Transport> + Send>;

/// Builds a [`Hub`], optionally with a transport of the application's own.
pub struct HubBuilder {
    config: HubConfig,
    transport: Option<TransportFactory>,
}

impl HubBuilder {
    /// Uses the transport `make` returns instead of the one `HubConfig::storage` names.
    ///
    /// `make` receives the hub's one [`Dispatcher`]: the transport must deliver every event
    /// through it, in position order (see [`Transport`]).
    ///
    /// ```
    /// # async fn example() -> Result<(), herald_hub::HubError> {
    /// use std::sync::Arc;
    /// use herald_hub::transport::MemoryTransport;
    /// use herald_hub::{Hub, HubConfig, HistoryLimits, Transport};
    ///
    /// let config = HubConfig { anonymous: true, ..HubConfig::default() };
    /// let hub = Hub::builder(config)
    ///     .transport(|dispatcher| {
    ///         Arc::new(MemoryTransport::new(dispatcher, HistoryLimits::default()))
    ///             as Arc<dyn Transport>
    ///     })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn transport(
        mut self,
        make: impl FnOnce(Dispatcher) -> Arc<dyn Transport> + Send + 'static,
    ) -> HubBuilder {
        self.transport = Some(Box::new(make));
        self
    }

    /// Checks the configuration, loads keys (a JWK Set URL is fetched on a blocking thread,
    /// not on the caller's task), opens history, and returns the hub.
    pub async fn build(self) -> Result<Hub, HubError> {
        let HubBuilder { config, transport } = self;
        crate::tls::install_default_provider();
        let (config, verifiers) = tokio::task::spawn_blocking(move || {
            let verifiers = config.validate();
            (config, verifiers)
        })
        .await
        .map_err(|e| HubError::Runtime(e.to_string()))?;
        let verifiers = verifiers?;
        let (registry, dispatcher) = Registry::new(config.queue_bytes, config.max_templates);
        let transport: Arc<dyn Transport> = match transport {
            Some(make) => make(dispatcher),
            None => match &config.storage {
                Storage::Memory => Arc::new(MemoryTransport::new(dispatcher, config.history)),
                Storage::Embedded { path, durability } => Arc::new(EmbeddedTransport::open(
                    path,
                    dispatcher,
                    config.history,
                    *durability,
                )?),
                Storage::Redis(options) => Arc::new(
                    RedisTransport::connect(
                        options,
                        dispatcher,
                        config.history,
                        config.subscriptions,
                    )
                    .await?,
                ),
            },
        };
        let authorizer = Authorizer::new(
            verifiers,
            config.cookie_name.clone(),
            config.publish_origins.clone(),
            config.anonymous,
            routes::discovery::access_settings(&config)?,
        );
        let url_base =
            herald_protocol::url_pattern::base_url(config.hub_url.as_deref()).map_err(|e| {
                ConfigError::new(
                    "hub-url",
                    e.to_string(),
                    "give the hub's public URL, e.g. https://hub.example/.well-known/mercure",
                )
            })?;
        let limits = limits::SubscriptionLimits::new(
            config.max_connections,
            config.max_subscriptions_per_client,
        );
        Ok(Hub {
            shared: Arc::new(Shared {
                limits,
                config,
                authorizer,
                registry,
                transport,
                url_base,
                active_subscriptions: subscriptions::ActiveSubscriptions::default(),
            }),
        })
    }
}

impl Hub {
    /// Builds a hub with the transport its configuration names, or says which setting is wrong.
    pub async fn new(config: HubConfig) -> Result<Hub, HubError> {
        Hub::builder(config).build().await
    }

    /// A builder, to supply a transport of the application's own.
    pub fn builder(config: HubConfig) -> HubBuilder {
        HubBuilder {
            config,
            transport: None,
        }
    }

    /// The hub's routes, to serve with [`serve`] or to merge into an application's router.
    ///
    /// An application serving this router with its own server should call
    /// [`Hub::close_streams`] when it shuts down, or open streams will hold the shutdown until
    /// their lifetime ends.
    pub fn router(&self) -> Router {
        routes::router(self.clone())
    }

    /// Publishes an update from inside the application, bypassing HTTP and authorization.
    pub async fn publish(&self, update: Update) -> Result<(), TransportError> {
        let result = self.shared.transport.publish(update).await;
        let metrics = self.metrics();
        match &result {
            Ok(()) => metrics::Metrics::inc(&metrics.updates_total),
            Err(_) => metrics::Metrics::inc(&metrics.transport_errors),
        }
        result
    }

    /// The routes of the metrics listener: `/metrics` (Prometheus text), `/healthz` and
    /// `/readyz`; see [`serve_metrics`].
    pub fn metrics_router(&self) -> Router {
        metrics::endpoints::router(self.clone())
    }

    /// Ends every open stream (clients reconnect) and any that open from now on.
    pub fn close_streams(&self) {
        self.shared.registry.close_all();
    }

    /// Closes the transport once the last publish was answered, at the end of a shutdown:
    /// acknowledged updates are made durable and the history file is closed cleanly, so that
    /// the next start needs no repair. [`serve`] calls it; an application serving
    /// [`Hub::router`] itself calls it after its server stopped. Publishes after it fail.
    pub async fn close(&self) {
        self.shared.transport.close().await;
    }

    /// The configuration this hub was built with, after validation.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// How many subscribers are connected to this hub (this node, in a cluster).
    pub fn subscriber_count(&self) -> usize {
        self.shared.registry.len()
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    pub(crate) fn metrics(&self) -> &Arc<metrics::Metrics> {
        self.shared.registry.metrics()
    }

    /// The transport, for an application that wants to plan a replay itself.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.shared.transport
    }

    /// The base of relative 1.0 URL patterns and topics (`HubConfig::hub_url`).
    pub(crate) fn url_base(&self) -> &url::Url {
        &self.shared.url_base
    }

    pub(crate) fn limits(&self) -> &limits::SubscriptionLimits {
        &self.shared.limits
    }

    pub(crate) fn active_subscriptions(&self) -> &subscriptions::ActiveSubscriptions {
        &self.shared.active_subscriptions
    }

    fn authorizer(&self) -> &Authorizer {
        &self.shared.authorizer
    }
}
