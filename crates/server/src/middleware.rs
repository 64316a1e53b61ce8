//! Per-request middleware: the tracing span, the request timeout and the
//! latency metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::{Counter, UNMATCHED_ROUTE};

/// Runs one request inside a span carrying its route template and, once
/// known, its org and dataset, bounded by the request timeout, and records its
/// latency under the route template.
///
/// The span never carries headers, so no token reaches a log.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // The template, not the raw path: bounded label values, no IDs in logs.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %request_id,
        org = tracing::field::Empty,
        dataset = tracing::field::Empty,
        status = tracing::field::Empty,
    );

    let timeout = state.config.request_timeout;
    let response = match tokio::time::timeout(timeout, next.run(request).instrument(span.clone()))
        .await
    {
        Ok(response) => response,
        Err(_) => {
            state.metrics.increment(Counter::TimedOut);
            span.in_scope(|| tracing::warn!(timeout_ms = timeout.as_millis(), "request timed out"));
            ApiError::timeout(timeout).into_response()
        }
    };

    let status = response.status().as_u16();
    let latency = started.elapsed();
    state
        .metrics
        .observe_request(&route, method, status, latency);
    span.record("status", status);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    response
}

/// The method as a metrics label; anything unusual is folded into `other`
/// so clients cannot mint new series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
