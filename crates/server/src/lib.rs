//! HTTP API of nexus-attack: routes, authentication, envelopes, metrics and
//! hardening around the `service` use cases, and the analyst web UI that
//! reads that API ([`ui`]).
//!
//! The server decides nothing about ATT&CK or permissions: it reads the
//! request, asks `service`, and answers in one envelope. Every route lives in
//! one table ([`routes::route_table`]) from which the router, the OpenAPI
//! document and the generated test suites are all built.
//!
//! ```no_run
//! # async fn run(app: service::App) -> Result<(), server::ServeError> {
//! server::serve(app, server::ServerConfig::default()).await
//! # }
//! ```

#![warn(missing_docs)]

mod auth;
pub mod config;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod metrics;
mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod ui;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::Instrument as _;

pub use auth::Authenticated;
pub use config::{RateLimit, ServerConfig};
pub use envelope::{Envelope, Meta};
pub use error::ApiError;
pub use routes::{Body, HttpMethod, Location, Param, ParamType, RouteSpec, Tenancy, route_table};

use crate::extract::BodyLimit;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;

/// What every handler can reach: the use cases and the server's own parts.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub app: service::App,
    /// The settings the server was built with.
    pub config: Arc<ServerConfig>,
    /// The Prometheus registry.
    pub metrics: Arc<Metrics>,
    /// Per-token buckets; `None` when rate limiting is off.
    pub limiter: Option<Arc<RateLimiter>>,
    /// The OpenAPI document, built once from the route table.
    pub openapi: Arc<serde_json::Value>,
}

/// Builds the complete router: every route of [`routes::route_table`] with
/// its body limit, the web UI's static files ([`ui`]), the structured
/// fallbacks, and the request middleware (span, metrics, timeout, request
/// id).
///
/// Tests call this without a socket; [`serve`] binds it.
pub fn router(app: service::App, config: ServerConfig) -> Router {
    let routes = routes::routes();
    let specs: Vec<RouteSpec> = routes.iter().map(|r| r.spec.clone()).collect();
    let metrics = Arc::new(Metrics::new().with_watch(app.watch_stats()));
    let state = AppState {
        app,
        limiter: config.rate_limit.map(|l| Arc::new(RateLimiter::new(l))),
        config: Arc::new(config),
        metrics,
        openapi: Arc::new(openapi::document(&specs)),
    };

    let mut router = Router::new();
    for route in routes {
        let limit = match route.spec.body {
            Body::Bundle => state.config.upload_limit,
            Body::Ndjson { .. } => state.config.bulk_limit,
            Body::None | Body::Json { .. } => state.config.body_limit,
        };
        let handler = route
            .handler
            .layer::<_, Infallible>(DefaultBodyLimit::max(limit))
            .layer::<_, Infallible>(axum::Extension(BodyLimit(limit)));
        router = router.route(route.spec.path, handler);
    }

    // The web UI is static and public, and not part of the API: merged
    // beside the route table rather than listed in it.
    router
        .merge(ui::router())
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .with_state(state)
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener is unusable.
    #[error("server stopped on an I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds `config.addr` and serves until SIGINT or SIGTERM, then lets the
/// requests in flight finish.
pub async fn serve(app: service::App, config: ServerConfig) -> Result<(), ServeError> {
    let addr = config.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, app, config, shutdown_signal()).await
}

/// Serves on an already bound listener until `shutdown` completes, then
/// stops accepting and waits (at most `config.shutdown_grace`) for the
/// requests in flight. Tests bind `127.0.0.1:0` and read the port from the
/// listener.
///
/// Beside the requests it runs the watch ([`service::App::run_watch`]):
/// audit chain verification and misuse scans on the intervals of the app's
/// `WatchConfig`, stopped with the server.
///
/// The connection loop is hyper's rather than `axum::serve` because the
/// latter sets no timer, so a client could hold a connection forever by
/// sending its headers one byte at a time; here headers must arrive within
/// `config.header_read_timeout`.
pub async fn serve_on(
    listener: TcpListener,
    app: service::App,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let local = listener.local_addr()?;
    let header_read_timeout = config.header_read_timeout;
    let grace = config.shutdown_grace;
    let watch = {
        let app = app.clone();
        tokio::spawn(async move { app.run_watch().await }.instrument(tracing::info_span!("watch")))
    };
    let service = TowerToHyperService::new(router(app, config));
    let connections = GracefulShutdown::new();
    tracing::info!(addr = %local, "nexus-attack API listening");

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather
                    // than spin, and keep serving the open connections.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection closed with an error");
            }
        });
    }

    drop(listener);
    watch.abort();
    tracing::info!("shutting down: waiting for requests in flight");
    if tokio::time::timeout(grace, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "requests still running after the grace period; stopping anyway"
        );
    }
    tracing::info!("nexus-attack API stopped");
    Ok(())
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C; relying on SIGTERM");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; relying on Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
