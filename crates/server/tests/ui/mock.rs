//! A stand-in for the matrix API answering fixed figures in its contract
//! (`GET /api/v1/matrix`, `/api/v1/matrix/drilldown` and
//! `/api/v1/matrix/export`), for what real data cannot show on demand: an
//! anomaly flag, a given count per filter, an override history. Mounted
//! beside the real router so that login, datasets and taxonomy stay real.
//!
//! It records every URI it serves (to prove filters travel and the token
//! never does) and checks the bearer token itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// The formula the mock reports; the page must show it verbatim.
pub const FORMULA: &str = "sum of severity_weight x confidence per mapping; \
     weights: informational 0.5, low 1, medium 2, high 4, critical 8";

/// What the mock knows and saw.
pub struct Mock {
    token: String,
    /// When set, every call answers 401 as for a revoked token.
    pub revoked: AtomicBool,
    /// Path and query of every request served, in order.
    pub seen: Mutex<Vec<String>>,
}

impl Mock {
    /// A mock accepting `token`.
    pub fn new(token: &str) -> Arc<Mock> {
        Arc::new(Mock {
            token: token.to_string(),
            revoked: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The URIs served so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("mock log").clone()
    }

    /// Records the call and checks its token; answers the 401 envelope when
    /// the token is wrong or revoked, `None` when the call may go on.
    fn refuse(&self, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        self.seen.lock().expect("mock log").push(uri.to_string());
        let expected = format!("Bearer {}", self.token);
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if self.revoked.load(Ordering::SeqCst) || sent != Some(expected.as_str()) {
            let body = json!({ "error": {
                "code": "unauthenticated",
                "message": "the token is revoked or unknown",
            }});
            return Some((StatusCode::UNAUTHORIZED, axum::Json(body)).into_response());
        }
        None
    }
}

/// The mock's routes.
pub fn router(mock: Arc<Mock>) -> Router {
    Router::new()
        .route("/api/v1/matrix", get(matrix))
        .route("/api/v1/matrix/drilldown", get(drilldown))
        .route("/api/v1/matrix/export", get(export))
        .with_state(mock)
}

/// T1059's count: 12 unfiltered, 5 with `source=rule`.
pub fn t1059_count(source: Option<&str>) -> u64 {
    if source == Some("rule") { 5 } else { 12 }
}

async fn matrix(
    State(mock): State<Arc<Mock>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = mock.refuse(&uri, &headers) {
        return denied;
    }
    let t1059 = t1059_count(query.get("source").map(String::as_str));
    let cells = json!([
        { "tactic": "execution", "technique": "T1059", "count": t1059, "intensity": 30.5,
          "low_confidence": 3, "low_confidence_share": 0.25, "anomaly": true },
        { "tactic": "execution", "technique": "T1059.001", "count": 7, "intensity": 20.0,
          "low_confidence": 0, "low_confidence_share": 0.0, "anomaly": false },
        // Named by tactic ID rather than shortname: both must land.
        { "tactic": "TA0003", "technique": "T1053", "count": 3, "intensity": 9.0,
          "low_confidence": 3, "low_confidence_share": 1.0, "anomaly": false },
    ]);
    let body = json!({
        "data": {
            "formula": FORMULA,
            "cells": cells,
            "techniques": [
                { "technique": "T1059", "count": t1059 },
                { "technique": "T1059.001", "count": 7 },
                { "technique": "T1053", "count": 3 },
            ],
            "exclusions_applied": [],
        },
        "meta": { "next_cursor": null },
    });
    axum::Json(body).into_response()
}

async fn drilldown(State(mock): State<Arc<Mock>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(denied) = mock.refuse(&uri, &headers) {
        return denied;
    }
    // The shape of the real drilldown: a page of alerts, each with the
    // mappings that count in the cell, and the incidents holding them.
    let body = json!({
        "data": {
            "tactic": "TA0002",
            "technique": "T1059",
            "incidents": [{
                "id": "incident-7", "title": "Hands-on-keyboard on host-12",
                "status": "open", "severity": "high", "alerts_held": 1,
            }],
            "alerts": [{
                "alert_id": "alert-42", "source_uid": "edr-42",
                "title": "Suspicious encoded PowerShell", "severity": "high",
                "observed_at": "2026-11-30T10:00:00Z", "connector": "Sigma",
                "host": "host-12", "user": null,
                "incidents": ["incident-7"], "open_reviews": [],
                "mappings": [{
                    "technique": "T1059", "tactic": "TA0002", "source": "rule",
                    "confidence": 0.9, "band": "high",
                    "evidence": [{
                        "field": "process.cmd_line", "value": "powershell -enc SQBFAFgA",
                        "matched": "Suspicious Encoded PowerShell Command Line",
                    }],
                    "override_history": [{
                        "id": "override-1", "version": 1, "action": "replace",
                        "technique": "T1059.001", "tactic": "TA0002",
                        "replaces_technique": "T1059", "replaces_tactic": "TA0002",
                        "reason": "wrong_subtechnique", "notes": "PowerShell, not generic",
                        "confidence": 1.0, "actor": "analyst@acme", "status": "proposed",
                        "created_at": "2026-12-01T09:00:00Z",
                    }],
                }],
            }],
        },
        "meta": { "next_cursor": null },
    });
    axum::Json(body).into_response()
}

async fn export(
    State(mock): State<Arc<Mock>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(denied) = mock.refuse(&uri, &headers) {
        return denied;
    }
    match query.get("format").map(String::as_str) {
        Some("csv") => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"acme-matrix.csv\"",
                ),
            ],
            "tactic,technique,count\nexecution,T1059,12\n",
        )
            .into_response(),
        _ => {
            let layer: Value = json!({ "name": "acme", "versions": { "layer": "4.5" },
                "domain": "enterprise-attack", "techniques": [] });
            axum::Json(json!({ "data": layer, "meta": { "next_cursor": null } })).into_response()
        }
    }
}
