//! The Herald hub as a library.
//!
//! A [`Hub`] is built from a [`HubConfig`]; [`Hub::router`] gives an axum `Router` that serves the
//! Mercure endpoint (`/.well-known/mercure`) and `/healthz`, which an application can mount in
//! its own server next to its own routes, and [`serve`] runs it on a listener with the limits and
//! graceful shutdown a standalone hub needs.
//!
//! Inside, one update travels: `routes` (parse, authorize) → [`Transport::publish`] (position,
//! history) → [`Registry::dispatch`] (selector index, one shared frame per update) → each
//! subscriber's `Outbox` → its `EventStream` body (everything queued written at once).
//! See docs/architecture.md.
//!
//! This crate must not know about the command line: the `herald` binary turns flags, environment
//! and files into a [`HubConfig`].

mod auth;
pub mod config;
pub mod jwks;
mod outbox;
pub mod registry;
mod rejection;
mod routes;
mod selector;
mod server;
pub mod shutdown;
mod stream;
mod subscription_conn;
mod subscriptions;
pub mod transport;
mod ui;

use std::sync::Arc;

use axum::Router;
use herald_protocol::Update;

pub use config::{ConfigError, HubConfig, JwtKey, Storage};
pub use jwks::{JwksRefresh, JwksSource};
pub use registry::Registry;
pub use server::serve;
pub use transport::HistoryLimits;
pub use transport::embedded::OpenError;
pub use transport::{Durability, RedisOptions, RedisStartError, Transport, TransportError};

use auth::Authorizer;
use transport::{EmbeddedTransport, MemoryTransport, RedisTransport};

/// Why a hub could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] OpenError),
    #[error(transparent)]
    Redis(#[from] RedisStartError),
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
}

impl Hub {
    /// Builds a hub, opening its history, or says which setting is wrong.
    pub fn new(config: HubConfig) -> Result<Hub, HubError> {
        let verifiers = config.validate()?;
        let registry = Registry::new(config.queue_bytes, config.max_templates);
        let transport: Arc<dyn Transport> = match &config.storage {
            Storage::Memory => Arc::new(MemoryTransport::new(registry.clone(), config.history)),
            Storage::Embedded { path, durability } => Arc::new(EmbeddedTransport::open(
                path,
                registry.clone(),
                config.history,
                *durability,
            )?),
            // Until the hub is built asynchronously: the CLI and the tests call this inside a
            // multi-threaded runtime's context.
            Storage::Redis(options) => {
                let connect = RedisTransport::connect(options, registry.clone(), config.history);
                let handle = tokio::runtime::Handle::current();
                Arc::new(tokio::task::block_in_place(|| handle.block_on(connect))?)
            }
        };
        let authorizer = Authorizer::new(
            verifiers,
            config.cookie_name.clone(),
            config.publish_origins.clone(),
            config.anonymous,
        );
        Ok(Hub {
            shared: Arc::new(Shared {
                config,
                authorizer,
                registry,
                transport,
            }),
        })
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
        self.shared.transport.publish(update).await
    }

    /// Ends every open stream (clients reconnect) and any that open from now on.
    pub fn close_streams(&self) {
        self.shared.registry.close_all();
    }

    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.shared.transport
    }

    fn authorizer(&self) -> &Authorizer {
        &self.shared.authorizer
    }
}
