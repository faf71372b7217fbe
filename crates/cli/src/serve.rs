//! `herald serve`: settings in, a running hub out.
//!
//! The settings are layered, highest first: flags, their environment variables, the `--config`
//! TOML file, then the reference hub's configuration (`mercure_compat`: `MERCURE_EXTRA_DIRECTIVES`,
//! `SERVER_NAME`, `--mercure-config`). A refusal names the source the user wrote
//! (`setting_origin`), and weak HMAC keys are refused outside `--dev` (`key_strength`).

use std::io::{self, IsTerminal};

use clap::Args;
use herald_hub::{ConfigError, Hub, HubError, OpenError, RedisStartError};
use tracing_subscriber::EnvFilter;

use crate::dev;
use crate::mercure_compat::{self, MercureArgs};
use crate::setting_origin::Origins;
use crate::settings::{ConfigFile, Settings};
use crate::tls::TlsSource;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    file: ConfigFile,
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    mercure: MercureArgs,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    #[error("{0}")]
    Setting(#[from] ConfigError),
    #[error("{0}")]
    History(#[from] OpenError),
    #[error("{0}")]
    Redis(#[from] RedisStartError),
    #[error("cannot listen on {addr}: {source}{}", bind_hint(source))]
    Bind { addr: String, source: io::Error },
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    #[error("server failed: {0}")]
    Serve(io::Error),
}

/// The blocking pool serves history reads (replays) and expensive template matching. Tokio's
/// default lets it grow to 512 threads: a reconnection wave of 10,000 subscribers resuming with
/// `Last-Event-ID` grew it to 241 threads in the soak, each with its stack and its share of
/// malloc's per-thread arenas, and the memory stayed with the process after they exited. The
/// reads are short (pages from the page cache), so a few threads per core keep up; more only
/// add memory. See docs/benchmarks.md, "Soak".
const MAX_BLOCKING_THREADS: usize = 16;

pub(crate) fn run(args: ServeArgs) -> Result<(), ServeError> {
    let mercure = mercure_compat::load(&args.mercure)?;
    let origins = Origins::new(args.file.config.as_deref(), mercure.origins);
    let annotate = |e: ConfigError| ServeError::Setting(origins.annotate(e));
    let mut settings = match &args.file.config {
        Some(path) => args.settings.or(Settings::from_file(path)?),
        None => args.settings,
    }
    .or(mercure.settings);
    init_logging(settings.log.as_deref(), settings.log_format.as_deref())?;
    if !mercure.not_applied.is_empty() {
        tracing::warn!(
            "the reference hub's configuration has settings Herald does not apply (see \
             docs/migrating-from-mercure.md): {}",
            mercure.not_applied.join("; ")
        );
    }
    let dev = match settings.dev {
        true => Some(dev::prepare(&mut settings).map_err(annotate)?),
        false => None,
    };
    let addr = settings.listen_addr().map_err(annotate)?;
    let config = settings.hub_config().map_err(annotate)?;
    crate::key_strength::check(&settings, &config).map_err(annotate)?;
    let tls_source = settings.tls_source().map_err(annotate)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .map_err(ServeError::Runtime)?;
    // Before the hub opens its history: a bad certificate refuses to start with nothing done.
    let tls = {
        let _runtime = runtime.enter();
        tls_source.map(TlsSource::start).transpose()?
    };
    let hub = runtime.block_on(Hub::new(config)).map_err(|e| match e {
        HubError::Config(e) => annotate(settings.name_jwks_setting(e)),
        HubError::Storage(e) => ServeError::History(e),
        HubError::Redis(e) => ServeError::Redis(e),
        HubError::Runtime(e) => ServeError::Runtime(std::io::Error::other(e)),
    })?;
    runtime.block_on(async move {
        let listener = herald_hub::bind(addr).map_err(|source| ServeError::Bind {
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

/// What to do about a failed bind, when the cause is a usual one.
fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "; another process (another herald?) listens there: stop it, or choose another \
             address with --listen ADDR (or HERALD_LISTEN), e.g. --listen 127.0.0.1:3001"
        }
        io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE: choose another with \
             --listen ADDR (or HERALD_LISTEN), e.g. --listen 0.0.0.0:3000"
        }
        io::ErrorKind::AddrNotAvailable => {
            "; this machine has no such address: use 127.0.0.1 or 0.0.0.0 in --listen \
             (or HERALD_LISTEN)"
        }
        _ => "",
    }
}

/// Logs to stderr, filtered by `filter` (or `RUST_LOG`), as text for people or, with
/// `--log-format json`, one JSON object per line for log shippers (timestamp, level, target,
/// message and fields, e.g. a disconnect's `subscriber` and `reason`).
fn init_logging(filter: Option<&str>, format: Option<&str>) -> Result<(), ConfigError> {
    let json = match format {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "log-format",
                format!("{other:?} is not a log format"),
                "use text or json",
            ));
        }
    };
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.with_ansi(io::stderr().is_terminal()).init();
    }
    Ok(())
}
