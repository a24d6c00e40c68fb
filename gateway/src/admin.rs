//! The admin HTTP server (DESIGN.md §9), HTTP/1.1 only:
//!
//! - `/livez`: 200 while the process runs;
//! - `/readyz`: 200 once the listeners are bound and the backend is ready; 503 before that and
//!   during a drain, so a load balancer stops sending new clients;
//! - `/metrics`: Prometheus text format.
//!
//! It runs on the same accept loop as the protocol listeners and stays up until the drain is over.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::BackendRef;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::health::Health;
use crate::listener::Handler;

/// How long `/readyz` waits for the backend's first health check after start.
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(2);
/// Slow clients must not hold admin connections open forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the endpoints report on.
pub(crate) struct AdminState {
    /// The backend's health from the background checks (see `health`).
    health: watch::Receiver<Health>,
    /// The gateway's drain signal: `true` once shutdown began.
    drain: watch::Receiver<bool>,
    listeners_bound: AtomicBool,
    metrics: PrometheusHandle,
}

impl AdminState {
    pub fn new(
        backend: BackendRef,
        drain: watch::Receiver<bool>,
        metrics: PrometheusHandle,
    ) -> Self {
        AdminState {
            health: crate::health::monitor(backend),
            drain,
            listeners_bound: AtomicBool::new(false),
            metrics,
        }
    }

    pub fn set_listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    /// `Err(reason)` when the gateway should not get new clients.
    async fn readiness(&self) -> Result<(), String> {
        if *self.drain.borrow() {
            return Err("draining".into());
        }
        if !self.listeners_bound.load(Ordering::Acquire) {
            return Err("listeners not bound yet".into());
        }
        // Just after start, the answer of the first check rather than "not checked yet".
        let mut health = self.health.clone();
        let _ = tokio::time::timeout(FIRST_CHECK_WAIT, health.wait_for(Option::is_some)).await;
        match &*self.health.borrow() {
            Some(Ok(())) => Ok(()),
            Some(Err(cause)) => Err(format!("backend not ready: {cause}")),
            None => Err("backend not checked yet".into()),
        }
    }
}

/// The connection handler of the admin listener. `stop` turns true at the very end of shutdown;
/// open HTTP connections then finish their current request and close.
pub(crate) fn handler(state: Arc<AdminState>) -> Handler {
    Arc::new(move |stream, mut stop| {
        let state = state.clone();
        Box::pin(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                // Only the method and path matter; the (empty) body is never read.
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                async move { Ok::<_, Infallible>(route(&state, &method, &path).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                // The `Ref` that `wait_for` returns is not `Send`; drop it before awaiting more.
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            result.map_err(io::Error::other)
        })
    })
}

async fn route(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let known = matches!(path, "/livez" | "/readyz" | "/metrics");
    if known && !matches!(*method, Method::GET | Method::HEAD) {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.readiness().await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            // With no exporter task of its own, the recorder's histograms are maintained here.
            state.metrics.run_upkeep();
            let mut response = text(StatusCode::OK, state.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
