//! `herald serve`: settings in, a running hub out.

use std::io::{self, IsTerminal};

use clap::Args;
use herald_hub::{ConfigError, Hub, HubError, OpenError, RedisStartError};
use tracing_subscriber::EnvFilter;

use crate::dev;
use crate::settings::{ConfigFile, Settings};
use crate::tls::TlsSource;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    file: ConfigFile,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    #[error("{0}")]
    Setting(#[from] ConfigError),
    #[error("{0}")]
    History(#[from] OpenError),
    #[error("{0}")]
    Redis(#[from] RedisStartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    #[error("server failed: {0}")]
    Serve(io::Error),
}

pub(crate) fn run(args: ServeArgs) -> Result<(), ServeError> {
    let mut settings = match &args.file.config {
        Some(path) => args.settings.or(Settings::from_file(path)?),
        None => args.settings,
    };
    init_logging(settings.log.as_deref())?;
    let dev = settings.dev.then(|| dev::prepare(&mut settings));
    let addr = settings.listen_addr()?;
    let config = settings.hub_config()?;
    let tls_source = settings.tls_source()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    // Before the hub opens its history: a bad certificate refuses to start with nothing done.
    let tls = {
        let _runtime = runtime.enter();
        tls_source.map(TlsSource::start).transpose()?
    };
    let hub = runtime.block_on(Hub::new(config)).map_err(|e| match e {
        HubError::Config(e) => ServeError::Setting(settings.name_jwks_setting(e)),
        HubError::Storage(e) => ServeError::History(e),
        HubError::Redis(e) => ServeError::Redis(e),
        HubError::Runtime(e) => ServeError::Runtime(std::io::Error::other(e)),
    })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        // Before saying we listen: a SIGTERM from then on must be a clean shutdown.
        let shutdown = herald_hub::shutdown::signal();
        let local = listener.local_addr().map_err(ServeError::Serve)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let hub_url = format!("{scheme}://{local}{}", herald_protocol::HUB_PATH);
        tracing::info!(
            "herald {} listening on {hub_url}",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(dev) = dev {
            dev.print_banner(&hub_url);
        }
        match tls {
            Some(tls) => herald_hub::serve_tls(listener, hub, tls, shutdown).await,
            None => herald_hub::serve(listener, hub, shutdown).await,
        }
        .map_err(ServeError::Serve)
    })?;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(filter: Option<&str>) -> Result<(), ConfigError> {
    let filter = match filter {
        Some(filter) => EnvFilter::try_new(filter),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .map_err(|e| {
        ConfigError::new(
            "log",
            format!("invalid log filter: {e}"),
            "use a level (error, warn, info, debug, trace) or target=level pairs",
        )
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .init();
    Ok(())
}
