//! The layers every route shares, as one stack, outermost first (`routes/mod.rs`): security
//! headers (outermost, so that CORS preflights and 431s get them too), the head limit, CORS and
//! the discovery `Link` header (innermost: only the routes' own responses get it).
//!
//! `Router::layer` boxes each layer it is given around every route, and each request clones
//! those boxes, so that every layer cost a few allocations per request: about 45 of the ~110 a
//! subscription cost (heaptrack, docs/benchmarks.md). Given as one `ServiceBuilder`, the stack is
//! boxed once per route; and the two layers that were `axum::middleware` functions (which box
//! their `Next` and their future on every call) are plain tower services here.
//!
//! Herald's own three layers differ only in what they do to the request and the response, so
//! each is an [`Around`]: what it reads of the request (and whether it answers in the routes'
//! place), and what it adds to their response. One tower skeleton, [`AroundLayer`], runs any of
//! them, without a box or an allocation per request: its future is the inner service's future
//! and the note the request left for the response, or the answer given in the routes' place
//! (the future of the whole stack around a route measured 536 bytes, as with the three
//! hand-written futures this replaced).

use std::convert::Infallible;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, header};
use tower::{Layer, Service};

use crate::rejection::Rejection;
use crate::subscription_conn::MAX_HEAD_BYTES;

/// What one layer does around the routes: it reads the request on its way in, and may answer it
/// in their place; it finishes their response on its way out.
pub(crate) trait Around: Clone {
    /// What the request tells the response (`()`: nothing). `Default` is what is left in the
    /// future once the note is handed to `on_response`.
    type Note: Default;

    /// Reads the request before the inner service sees it: `Continue` calls the inner service,
    /// `Break` is the answer in its place.
    fn on_request(&self, request: &Request<Body>) -> ControlFlow<Response, Self::Note>;

    /// Finishes the inner service's response (not an answer `on_request` gave).
    fn on_response(note: Self::Note, response: &mut Response);
}

/// The tower [`Layer`] of an [`Around`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct AroundLayer<A>(pub(crate) A);

impl<A: Around, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> AroundService<A, S> {
        AroundService {
            around: self.0.clone(),
            inner,
        }
    }
}

/// The inner service `S` with `A` around it.
#[derive(Clone, Debug)]
pub(crate) struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S> Service<Request<Body>> for AroundService<A, S>
where
    A: Around,
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AroundFuture<S::Future, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self.around.on_request(&request) {
            ControlFlow::Continue(note) => AroundFuture::Inner {
                inner: self.inner.call(request),
                note,
            },
            ControlFlow::Break(answer) => AroundFuture::Answered {
                answer: Some(answer),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response, finished by `A`; or the answer `A` gave in its place.
    #[project = AroundFutureProjection]
    pub(crate) enum AroundFuture<F, A: Around> {
        Inner {
            #[pin]
            inner: F,
            note: A::Note,
        },
        Answered {
            answer: Option<Response>,
        },
    }
}

impl<F, A> Future for AroundFuture<F, A>
where
    F: Future<Output = Result<Response, Infallible>>,
    A: Around,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AroundFutureProjection::Inner { inner, note } => {
                let Ok(mut response) = std::task::ready!(inner.poll(cx));
                A::on_response(std::mem::take(note), &mut response);
                Poll::Ready(Ok(response))
            }
            AroundFutureProjection::Answered { answer } => {
                let answer = answer.take().expect("AroundFuture polled after completion");
                Poll::Ready(Ok(answer))
            }
        }
    }
}

/// Adds the security headers to every response that does not set its own: no content may load
/// or frame it (`Content-Security-Policy`, `X-Frame-Options`), and no browser may guess its type
/// (`X-Content-Type-Options`). One layer for the three, where `tower_http`'s `SetResponseHeader`
/// took one each (a future and a header lookup per header per request).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SecurityHeaders;

impl Around for SecurityHeaders {
    type Note = ();

    fn on_request(&self, _: &Request<Body>) -> ControlFlow<Response> {
        ControlFlow::Continue(())
    }

    fn on_response((): (), response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ] {
            if let header::Entry::Vacant(entry) = headers.entry(name) {
                entry.insert(HeaderValue::from_static(value));
            }
        }
    }
}

/// Refuses a request whose head is over [`MAX_HEAD_BYTES`] with 431, whichever connection path
/// read it: the subscription fast path counts the bytes it reads, but hyper's own limit is on
/// its read buffer, which lets somewhat larger heads through; this makes both paths give the
/// same answer to the same request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitHead;

impl Around for LimitHead {
    type Note = ();

    fn on_request(&self, request: &Request<Body>) -> ControlFlow<Response> {
        let uri = target_len(request.uri());
        let headers: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if uri.saturating_add(headers) > MAX_HEAD_BYTES {
            let rejection = Rejection::new(
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large (the limit is 512 KiB)",
            )
            .with_detail(format!("{headers} bytes of headers"));
            return ControlFlow::Break(rejection.into_response());
        }
        ControlFlow::Continue(())
    }

    fn on_response((): (), _: &mut Response) {}
}

/// The length of the request-target as `uri` prints it, counted without printing it.
fn target_len(uri: &http::Uri) -> usize {
    let scheme = uri
        .scheme_str()
        .map_or(0, |scheme| scheme.len() + "://".len());
    let authority = uri
        .authority()
        .map_or(0, |authority| authority.as_str().len());
    let path = uri.path_and_query().map_or(0, |path| path.as_str().len());
    scheme + authority + path
}

/// Adds `Link: <hub URL>; rel="mercure"` to the responses of the hub's endpoints and of the
/// metadata document, when the hub knows its URL [R2].
#[derive(Clone, Debug)]
pub(crate) struct AddLinks {
    /// The header's value, made once.
    link: Option<HeaderValue>,
}

impl AddLinks {
    pub(crate) fn new(hub_url: Option<&str>) -> AddLinks {
        let link = hub_url
            .and_then(|url| HeaderValue::from_str(&format!("<{url}>; rel=\"mercure\"")).ok());
        AddLinks { link }
    }
}

impl Around for AddLinks {
    /// The header to add, if the request is for one of the hub's endpoints.
    type Note = Option<HeaderValue>;

    fn on_request(&self, request: &Request<Body>) -> ControlFlow<Response, Option<HeaderValue>> {
        let path = request.uri().path();
        let ours = path == herald_protocol::HUB_PATH
            || path.starts_with("/.well-known/mercure/")
            || path == super::discovery::METADATA_PATH;
        ControlFlow::Continue(self.link.clone().filter(|_| ours))
    }

    fn on_response(link: Option<HeaderValue>, response: &mut Response) {
        if let Some(link) = link {
            response.headers_mut().append(header::LINK, link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_len_is_the_printed_length() {
        for uri in [
            "/.well-known/mercure?topic=a%2Fb",
            "/",
            "*",
            "https://hub.example:8443/.well-known/mercure?topic=x",
            "http://hub.example",
            "hub.example:443",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(target_len(&uri), uri.to_string().len(), "{uri}");
        }
    }
}
