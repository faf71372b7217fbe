//! The layers every route shares, as one stack: security headers, the head limit, CORS and
//! the discovery `Link` header.
//!
//! `Router::layer` boxes each layer it is given around every route, and each request clones
//! those boxes, so that every layer cost a few allocations per request: about 45 of the ~110 a
//! subscription cost (heaptrack, docs/benchmarks.md). Given as one `ServiceBuilder`, the stack is
//! boxed once per route; and the two layers that were `axum::middleware` functions (which box
//! their `Next` and their future on every call) are plain tower services here.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::{HeaderValue, Request, header};
use tower::{Layer, Service};

use crate::rejection::Rejection;
use crate::subscription_conn::MAX_HEAD_BYTES;

/// Adds the security headers to every response that does not set its own: no content may load
/// or frame it (`Content-Security-Policy`, `X-Frame-Options`), and no browser may guess its type
/// (`X-Content-Type-Options`). One layer for the three, where `tower_http`'s `SetResponseHeader`
/// took one each (a future and a header lookup per header per request).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SecurityHeadersLayer;

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> SecurityHeaders<S> {
        SecurityHeaders { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SecurityHeaders<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for SecurityHeaders<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = WithSecurityHeaders<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        WithSecurityHeaders {
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct WithSecurityHeaders<F> {
        #[pin]
        inner: F,
    }
}

impl<F> Future for WithSecurityHeaders<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut response) = std::task::ready!(self.project().inner.poll(cx));
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
        Poll::Ready(Ok(response))
    }
}

/// Refuses a request whose head is over [`MAX_HEAD_BYTES`] with 431, whichever connection path
/// read it: the subscription fast path counts the bytes it reads, but hyper's own limit is on
/// its read buffer, which lets somewhat larger heads through; this makes both paths give the
/// same answer to the same request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitHeadLayer;

impl<S> Layer<S> for LimitHeadLayer {
    type Service = LimitHead<S>;

    fn layer(&self, inner: S) -> LimitHead<S> {
        LimitHead { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct LimitHead<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for LimitHead<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
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
            return Either::Left(ready(Ok(rejection.into_response())));
        }
        Either::Right(self.inner.call(request))
    }
}

/// Adds `Link: <hub URL>; rel="mercure"` to the responses of the hub's endpoints and of the
/// metadata document, when the hub knows its URL [R2].
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

#[derive(Clone, Debug)]
pub(crate) struct AddLinksLayer {
    /// The header's value, made once.
    link: Option<HeaderValue>,
}

impl AddLinksLayer {
    pub(crate) fn new(hub_url: Option<&str>) -> AddLinksLayer {
        let link = hub_url
            .and_then(|url| HeaderValue::from_str(&format!("<{url}>; rel=\"mercure\"")).ok());
        AddLinksLayer { link }
    }
}

impl<S> Layer<S> for AddLinksLayer {
    type Service = AddLinks<S>;

    fn layer(&self, inner: S) -> AddLinks<S> {
        AddLinks {
            inner,
            link: self.link.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct AddLinks<S> {
    inner: S,
    link: Option<HeaderValue>,
}

impl<S> Service<Request<Body>> for AddLinks<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = WithLink<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let ours = path == herald_protocol::HUB_PATH
            || path.starts_with("/.well-known/mercure/")
            || path == super::discovery::METADATA_PATH;
        WithLink {
            link: self.link.clone().filter(|_| ours),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's response, with the `Link` header added if `link` is set.
    pub(crate) struct WithLink<F> {
        link: Option<HeaderValue>,
        #[pin]
        inner: F,
    }
}

impl<F> Future for WithLink<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.inner.poll(cx));
        if let Some(link) = this.link.take() {
            response.headers_mut().append(header::LINK, link);
        }
        Poll::Ready(Ok(response))
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
