//! Deadlines for the connections hyper serves without a head timer of its own: HTTP/2, and the
//! connections whose first bytes did not tell their protocol (`auto::Builder`).
//!
//! hyper's HTTP/1 `header_read_timeout` bounds an HTTP/1 head (and, since its clock starts when
//! hyper waits for the next head, an idle keep-alive connection). Nothing in hyper bounds the
//! rest: a client that sends `P` (the first byte of the HTTP/2 preface) and then nothing waits
//! in `auto::Builder`'s version detection forever; one that sends the whole preface waits in the
//! HTTP/2 handshake forever; and an HTTP/2 connection whose streams are all closed stays open
//! as long as the peer answers PINGs. Each of those sockets costs a file descriptor and some
//! memory, so enough of them lock everyone out.
//!
//! So these connections are served by [`serve`], which watches what the connection is doing
//! through an [`Activity`] shared with the service ([`Tracked`]): a request is in progress from
//! the moment hyper hands it to the service until its response body is dropped (sent or
//! abandoned). While none is in progress a deadline runs: [`Timeouts::header`] from the start
//! of the connection until the first request, [`Timeouts::http2_idle`] after each one. Past
//! it the connection is shut down gracefully (GOAWAY for HTTP/2), and dropped if it has not
//! ended within one more header timeout (a handshake that never completes cannot end by
//! itself).
//!
//! The cost is one `Arc` per connection and, per request, one boxed future, one wrapped body
//! and two uncontended lock operations: this path never serves the HTTP/1 subscriptions that
//! make up most connections (`subscription_conn/`), nor HTTP/1 recognized by its first bytes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Timeouts;

/// What one connection is doing: how many requests are in progress, and since when none is.
pub(crate) struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when the last request in progress ends.
    idle: Notify,
}

struct ActivityState {
    in_progress: usize,
    /// When the connection last became idle (its start, before any request).
    idle_since: Instant,
    /// Whether any request has started: before the first one, the header timeout applies.
    served: bool,
}

impl Activity {
    /// The activity of a connection accepted at `accepted`: the header timeout runs from
    /// there (over TLS, the handshake has used part of it).
    pub(crate) fn since(accepted: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                idle_since: accepted,
                served: false,
            }),
            idle: Notify::new(),
        })
    }

    /// A request starts; it is in progress until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> InProgress {
        let mut state = self.lock();
        state.in_progress += 1;
        state.served = true;
        InProgress(Arc::clone(self))
    }

    /// When the connection must end if nothing starts before: `None` while a request is in
    /// progress.
    fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        let state = self.lock();
        if state.in_progress > 0 {
            return None;
        }
        let limit = if state.served {
            timeouts.http2_idle
        } else {
            timeouts.header
        };
        Some(state.idle_since + limit)
    }

    /// The counters are plain integers, valid whatever a panicking holder left half done, so
    /// a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request in progress on a connection (a drop guard).
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_progress -= 1;
        if state.in_progress == 0 {
            state.idle_since = Instant::now();
            drop(state);
            // A stored permit if the connection's task is not waiting yet: it is not lost.
            self.0.idle.notify_one();
        }
    }
}

/// Serves `connection` until it ends, shutting it down when it stays without a request in
/// progress past its deadline, or when the hub stops.
pub(crate) async fn serve<C>(
    connection: C,
    activity: &Activity,
    timeouts: Timeouts,
    stopping: &CancellationToken,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(connection);
    let expired = loop {
        let deadline = activity.deadline(&timeouts);
        tokio::select! {
            result = connection.as_mut() => return result,
            () = stopping.cancelled() => break false,
            () = wait(activity, deadline) => {
                if activity.deadline(&timeouts).is_some_and(|d| d <= Instant::now()) {
                    break true;
                }
            }
        }
    };
    connection.as_mut().graceful_shutdown();
    if !expired {
        // Shutting down: the server bounds the whole wait by its shutdown timeout.
        return connection.await;
    }
    tracing::debug!("closing a connection left without a request past its deadline");
    match tokio::time::timeout(timeouts.header, connection).await {
        Ok(result) => result,
        // Still in a handshake that will never complete: drop it, which closes the socket.
        Err(_) => Ok(()),
    }
}

/// Until `deadline`, or until the connection becomes idle when it is busy (`None`).
async fn wait(activity: &Activity, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => activity.idle.notified().await,
    }
}

/// A hyper service that marks each request in progress on its connection's [`Activity`] until
/// its response body is dropped.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, B> hyper::service::Service<Request<B>> for Tracked<S>
where
    S: hyper::service::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<B>) -> Self::Future {
        let in_progress = self.activity.begin();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _in_progress: in_progress,
                })
            }))
        })
    }
}

/// A response body that holds its request's [`InProgress`] guard.
struct Guarded {
    body: Body,
    _in_progress: InProgress,
}

impl HttpBody for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
