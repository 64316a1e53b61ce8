//! Operations endpoints: liveness, readiness, metrics and the document.
//! None needs a token and none carries tenant data.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::envelope::Envelope;
use crate::error::ApiError;

/// `GET /healthz`: the process is up; says nothing about the database.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when the database answers and every required domain
/// has an active dataset, else 503 with what is missing.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.app.readiness().await;
    if readiness.ready {
        return Envelope::ok(readiness).into_response();
    }

    let missing: Vec<&str> = readiness
        .domains
        .iter()
        .filter(|d| d.active.is_none())
        .map(|d| d.domain.as_str())
        .collect();
    let message = if !readiness.database {
        "the database is unreachable".to_string()
    } else {
        format!("no active dataset for: {}", missing.join(", "))
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
        .with_details(json!({
            "database": readiness.database,
            "missing_domains": missing,
            "domains": readiness.domains,
        }))
        .into_response()
}

/// `GET /metrics`: Prometheus text exposition format.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    (content_type, state.metrics.render()).into_response()
}

/// `GET /api/v1/openapi.json`: the document is not wrapped in the envelope
/// so that OpenAPI tools can read it as is.
pub(super) async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi.as_ref().clone())
}
