//! One log line per request, when its response is ready: method, path,
//! status, latency and the request id. The handler runs with its request id
//! in [`telemetry::REQUEST_ID`], so whatever it logs carries the id too.
//!
//! This replaces tower-http's `TraceLayer`, whose span per request (fields
//! formatted at creation, entered and left on every poll) and formatted
//! response event cost about a fifth of a `GET /jwks` (docs/performance.md,
//! fourth round).
//!
//! The path only, never the query: a query may carry codes, tokens or
//! emails. The line is at `info`, or `error` for a 5xx answer; its target is
//! `stepgate::request`, so `log.level = "info,stepgate::request=warn"`
//! keeps the request lines out and every other line in.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::telemetry::{self, RequestId};

/// Logs each request once answered; the request id is read from `header`
/// (set before this layer by `SetRequestIdLayer`).
#[derive(Clone)]
pub struct AccessLogLayer {
    header: HeaderName,
}

impl AccessLogLayer {
    pub fn new(header: HeaderName) -> Self {
        Self { header }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            header: self.header.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B, R> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = TaskLocalFuture<RequestId, Logged<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(&self.header)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("-"));
        let logged = Logged {
            method: request.method().clone(),
            uri: request.uri().clone(),
            start: Instant::now(),
            inner: self.inner.call(request),
        };
        telemetry::REQUEST_ID.scope(RequestId(id), logged)
    }
}

pin_project_lite::pin_project! {
    /// The handler's future; logs the request's line when it is ready.
    pub struct Logged<F> {
        method: Method,
        uri: Uri,
        start: Instant,
        #[pin]
        inner: F,
    }
}

impl<F, R, E> Future for Logged<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let latency_us = u64::try_from(this.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let (method, path) = (this.method.as_str(), this.uri.path());
        match &result {
            Ok(response) if response.status().is_server_error() => tracing::error!(
                target: "stepgate::request",
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                latency_us,
                "request failed"
            ),
            Ok(response) => tracing::info!(
                target: "stepgate::request",
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                latency_us,
                "request"
            ),
            // axum's services are infallible; a layer's error still gets a line.
            Err(_) => tracing::error!(
                target: "stepgate::request",
                method = %method,
                path = %path,
                latency_us,
                "request failed without a response"
            ),
        }
        Poll::Ready(result)
    }
}
