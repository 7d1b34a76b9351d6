//! One log line per request, when its response is ready: method, path,
//! status, latency and the request id. The handler runs with its request id
//! in [`telemetry::REQUEST_ID`], so whatever it logs on the request's task
//! carries the id too.
//!
//! The request id is the caller's `x-request-id` when it is a plain token
//! (1 to 128 of `A-Z a-z 0-9 . _ : -`, as proxies make them), else a fresh
//! UUID, written into the request so that the answer echoes it. A
//! caller-chosen id with spaces or `=` in it would otherwise read, in the
//! human log format, like more fields of every line it is appended to.
//!
//! This replaces tower-http's `TraceLayer`, whose span per request (fields
//! formatted at creation, entered and left on every poll) and formatted
//! response event cost about a fifth of a `GET /jwks` (docs/performance.md,
//! fourth round).
//!
//! With metrics on, the same place counts the request and its latency
//! (`crate::metrics`), labelled with the route template axum matched
//! (`MatchedPath`, set before this layer runs: it is applied per route by
//! `Router::layer`), or `unmatched`; and it runs the handler with that
//! registry in reach of `metrics::db_error`.
//!
//! The path only, never the query: a query may carry codes, tokens or
//! emails. The line is at `info`, or `error` for a 5xx answer; its target is
//! `stepgate::request`, so `log.level = "info,stepgate::request=warn"`
//! keeps the lines of answers below 500 out and those of 5xx answers in.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::metrics::{self, Metrics};
use crate::telemetry::{self, RequestId};

/// Gives each request an id in `header` (module comment) and logs it once
/// answered.
#[derive(Clone)]
pub struct AccessLogLayer {
    header: HeaderName,
    metrics: Option<Arc<Metrics>>,
}

impl AccessLogLayer {
    /// `metrics`: where requests are counted; `None` counts nothing.
    pub fn new(header: HeaderName, metrics: Option<Arc<Metrics>>) -> Self {
        Self { header, metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            header: self.header.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    header: HeaderName,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B, R> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future =
        TaskLocalFuture<RequestId, TaskLocalFuture<Option<Arc<Metrics>>, Logged<S::Future>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = match request.headers().get(&self.header) {
            Some(theirs) if plain_token(theirs.as_bytes()) => theirs.clone(),
            _ => {
                let mut buffer = uuid::Uuid::encode_buffer();
                let fresh = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
                let fresh = HeaderValue::from_str(fresh).expect("a UUID is a header value");
                request
                    .headers_mut()
                    .insert(self.header.clone(), fresh.clone());
                fresh
            }
        };
        // The route template when a route matched, cloned only with
        // metrics on (it is a reference count).
        let route = self
            .metrics
            .as_ref()
            .and_then(|_| request.extensions().get::<MatchedPath>().cloned());
        let logged = Logged {
            method: request.method().clone(),
            uri: request.uri().clone(),
            start: Instant::now(),
            metrics: self.metrics.clone(),
            route,
            inner: self.inner.call(request),
        };
        let counted = metrics::scope(self.metrics.clone(), logged);
        telemetry::REQUEST_ID.scope(RequestId(id), counted)
    }
}

/// A request id a caller may choose: short, and nothing that could read as
/// more log fields or lines.
fn plain_token(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

pin_project_lite::pin_project! {
    /// The handler's future; logs the request's line when it is ready.
    pub struct Logged<F> {
        method: Method,
        uri: Uri,
        start: Instant,
        metrics: Option<Arc<Metrics>>,
        route: Option<MatchedPath>,
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
        let elapsed = this.start.elapsed();
        let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let (Some(metrics), Ok(response)) = (this.metrics.as_ref(), &result) {
            metrics.request(
                this.route.as_ref().map(MatchedPath::as_str),
                this.method,
                response.status().as_u16(),
                elapsed.as_secs_f64(),
            );
        }
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

#[cfg(test)]
mod tests {
    use super::plain_token;

    #[test]
    fn only_plain_tokens_are_kept_as_request_ids() {
        for kept in [
            "dcc39434-9a90-48d9-9e75-96af611028df",
            "7f3a9c",
            "edge-1:req.42_a",
        ] {
            assert!(plain_token(kept.as_bytes()), "{kept}");
        }
        let long = "a".repeat(129);
        for replaced in [
            "",
            "x status=500 path=/admin",
            "a\tb",
            "quote\"d",
            "semi;colon",
            long.as_str(),
        ] {
            assert!(!plain_token(replaced.as_bytes()), "{replaced}");
        }
        assert!(plain_token("a".repeat(128).as_bytes()));
    }
}
