//! The signal that starts a graceful shutdown: SIGINT (Ctrl-C) or SIGTERM (what service managers
//! and container runtimes send).

use std::future::Future;

/// Registers for SIGINT and SIGTERM now, and returns a future that resolves when either
/// arrives.
///
/// Registration happens in this call, not when the future is first polled, so that a signal
/// sent right after the hub reports that it listens still shuts it down cleanly instead of
/// killing it. Must be called inside a tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(i), Ok(t)) => (i, t),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("cannot listen for SIGINT/SIGTERM: {e}");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        } else {
            std::future::pending::<()>().await;
        }
    }
}
