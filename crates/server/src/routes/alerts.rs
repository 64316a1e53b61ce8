//! Alerts of the caller's org (issue 3): ingestion one at a time or in bulk
//! (NDJSON), the list, one alert's mapping with every candidate and its
//! override history, manual overrides and their approval, and the bulk
//! re-mapping after a new release. Another org's alert or override answers
//! exactly as a missing one.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use service::access::Action;
use service::{
    AlertFilter, AlertIngestResult, AlertListItem, AlertMappingView, IngestReport, OverrideInput,
    OverrideOutcome, RemapRun,
};

use super::{Param, ParamType, page_envelope, page_request};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, AfterRoleQuery, ApiBytes, ApiJson, PathId};

/// Filters of `GET /api/v1/alerts`.
pub(super) const LIST_FILTERS: [Param; 4] = [
    Param::query(
        "technique",
        ParamType::String,
        "Only alerts with this technique (T1059.001) in their current canonical mapping",
    ),
    Param::query(
        "source",
        ParamType::Enum(&["manual", "rule", "ai"]),
        "Only alerts with a canonical entry won by this source (the same entry as `technique`)",
    ),
    Param::query(
        "band",
        ParamType::Enum(&["low", "medium", "high"]),
        "Only alerts with a canonical entry in this confidence band (the same entry as above)",
    ),
    Param::query(
        "mapping_state",
        ParamType::Enum(&["mapped", "unmapped"]),
        "Only mapped or only unmapped alerts",
    ),
];

/// Media types the bulk route reads as NDJSON. `text/plain` is what
/// `curl --data-binary` tools and log shippers often send for line-based
/// text.
const NDJSON_TYPES: [&str; 3] = ["application/x-ndjson", "application/ndjson", "text/plain"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    technique: Option<String>,
    source: Option<String>,
    band: Option<String>,
    mapping_state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `POST /api/v1/overrides/{id}/decide` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecideBody {
    decision: String,
}

/// What `POST /api/v1/alerts/bulk` answers: every line is accounted for,
/// as accepted (new, duplicate or update) or rejected with its line number.
#[derive(Debug, Serialize)]
pub(super) struct BulkSummary {
    /// Lines stored or recognised: `ingested + duplicates + updated`.
    accepted: usize,
    /// The ingestion report (`rejected` and `errors` name the bad lines).
    #[serde(flatten)]
    report: IngestReport,
}

/// What `POST /api/v1/remap` answers once the run has finished.
#[derive(Debug, Serialize)]
pub(super) struct RemapSummary {
    /// Alerts of the org re-evaluated.
    alerts: usize,
    /// Of those, alerts whose canonical mapping changed.
    changed: usize,
    /// The run, as `GET /api/v1/remap` shows it.
    run: RemapRun,
}

/// `POST /api/v1/alerts`: one alert document. A new alert answers 201 with
/// a `Location`; an alert already stored answers 200 (`result` says
/// `duplicate` or `updated`).
pub(super) async fn ingest(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<Box<RawValue>>>,
) -> Result<Response, ApiError> {
    // Read as text, checked as JSON: the document is stored as it was
    // sent (key order, number spelling), as an NDJSON line is.
    let ApiJson(alert) = body
        .read(
            &state,
            &principal,
            Action::AlertIngest,
            ("alerts", &principal.org_name),
        )
        .await?;
    if !alert.get().starts_with('{') {
        // The reason code a bulk line gets for the same mistake.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "the body must be one alert as a JSON object; send many as NDJSON to /api/v1/alerts/bulk",
        )
        .with_details(json!({"field": "body", "reason": "not_an_object"})));
    }

    let outcome = state
        .app
        .ingest_alert(
            &principal.actor(),
            &principal.org_name,
            alert.get().to_string(),
        )
        .await?
        .map_err(|refused| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", refused.message)
                .with_details(json!({ "field": "body", "reason": refused.code }))
        })?;

    if outcome.result != AlertIngestResult::Ingested {
        return Ok(Envelope::ok(outcome).into_response());
    }
    let location = format!("/api/v1/alerts/{}", outcome.mapping.alert.id);
    let mut response = Envelope::created(outcome).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `POST /api/v1/alerts/bulk`: NDJSON, one alert per line. Good lines are
/// stored even when others are refused; the summary names each refused
/// line (1-based) with a stable reason code.
pub(super) async fn bulk(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: AfterRole<ApiBytes>,
) -> Result<Envelope<BulkSummary>, ApiError> {
    let ApiBytes(body) = body
        .read(
            &state,
            &principal,
            Action::AlertIngest,
            ("alerts", &principal.org_name),
        )
        .await?;
    check_ndjson_type(&headers)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_field(
            "body",
            "the body must hold at least one alert, one JSON document per line",
        ));
    }

    let report = state
        .app
        .ingest_alerts(
            &principal.actor(),
            &principal.org_name,
            Box::new(std::io::Cursor::new(body)),
        )
        .await?;

    let accepted = report.ingested + report.duplicates + report.updated;
    Ok(Envelope::ok(BulkSummary { accepted, report }))
}

/// 415 unless the body is declared as NDJSON (or plain text).
fn check_ndjson_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match declared {
        Some(media) if NDJSON_TYPES.contains(&media.as_str()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "this route expects NDJSON with `Content-Type: application/x-ndjson` (or text/plain)",
        )
        .with_details(json!({ "accepted": NDJSON_TYPES }))),
    }
}

/// `GET /api/v1/alerts`: newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<ListQuery>,
) -> Result<Envelope<Vec<AlertListItem>>, ApiError> {
    let target = ("alerts", principal.org_name.as_str());
    let query = query
        .read(&state, &principal, Action::ReadMappings, target)
        .await?;
    let page = page_request(query.cursor, query.limit.as_deref())?;
    let filter = AlertFilter {
        technique: query.technique,
        source: query.source,
        band: query.band,
        mapping_state: query.mapping_state,
    };

    let alerts = state
        .app
        .list_alerts(&principal.actor(), &principal.org_name, &filter, &page)
        .await?;

    Ok(page_envelope(
        alerts.items,
        alerts.next_cursor,
        page.effective_limit(),
    ))
}

/// `GET /api/v1/alerts/{id}`: by the product's id or the source uid.
pub(super) async fn show(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
) -> Result<Envelope<AlertMappingView>, ApiError> {
    state
        .app
        .check_permission(
            &principal.actor(),
            Action::ReadMappings,
            ("alert", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .alert_mapping(&principal.actor(), &principal.org_name, &id)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/alerts/{id}/overrides`: applied at once for a lead,
/// otherwise a proposal that a lead decides.
pub(super) async fn create_override(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<OverrideInput>>,
) -> Result<Envelope<OverrideOutcome>, ApiError> {
    let ApiJson(input) = body
        .read(
            &state,
            &principal,
            Action::OverrideCreate,
            ("alert", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let outcome = state
        .app
        .create_override(&principal.actor(), &principal.org_name, &id, input)
        .await?;
    Ok(Envelope::created(outcome))
}

/// `POST /api/v1/overrides/{id}/decide`
pub(super) async fn decide_override(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<DecideBody>>,
) -> Result<Envelope<OverrideOutcome>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::OverrideApprove,
            ("override", id.target()),
        )
        .await?;
    let id = id.decoded()?;
    let approve = match body.decision.trim().to_ascii_lowercase().as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::invalid_field(
                "decision",
                format!(
                    "decision must be approve or reject, got `{}`",
                    service::echo(other)
                ),
            ));
        }
    };

    let outcome = state
        .app
        .decide_override(&principal.actor(), &principal.org_name, &id, approve)
        .await?;
    Ok(Envelope::ok(outcome))
}

/// `POST /api/v1/remap`: marks every alert of the org stale and re-maps it
/// under the active release and the org's rules. The run goes on beside
/// the request: finished within `remap_wait` (30 s), it answers 200 with
/// its figures; otherwise 202 with the run so far, whose progress
/// `GET /api/v1/remap` shows. A run of the org still going answers 409.
pub(super) async fn remap(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let actor = principal.actor();
    let (started, ended) = state.app.start_remap(&actor, &principal.org_name).await?;
    // Never as long as the request may last: the answer must get out.
    let wait = state
        .config
        .remap_wait
        .min(state.config.request_timeout / 2);
    match tokio::time::timeout(wait, ended).await {
        Ok(Ok(outcome)) => {
            let run = outcome?;
            Ok(Envelope::ok(RemapSummary {
                alerts: run.alerts,
                changed: run.changed,
                run,
            })
            .into_response())
        }
        // The run's task ended without an answer (it is marked failed).
        Ok(Err(_)) => Err(ApiError::from(service::ServiceError::Internal(
            "the re-map stopped before it finished; see GET /api/v1/remap".into(),
        ))),
        Err(_) => {
            let run = state
                .app
                .remap_run(&actor, &principal.org_name)
                .await
                .unwrap_or(started);
            let mut response = Envelope::accepted(run).into_response();
            response.headers_mut().insert(
                header::LOCATION,
                header::HeaderValue::from_static("/api/v1/remap"),
            );
            Ok(response)
        }
    }
}

/// `GET /api/v1/remap`: the org's latest re-map run, running or ended.
pub(super) async fn remap_run(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Envelope<RemapRun>, ApiError> {
    let run = state
        .app
        .remap_run(&principal.actor(), &principal.org_name)
        .await?;
    Ok(Envelope::ok(run))
}

/// JSON Schema of one alert: any JSON object; the format (OCSF 2004, ECS,
/// native) is detected from its fields.
pub(super) fn alert_schema() -> Value {
    json!({
        "type": "object",
        "description": "One alert: OCSF Detection Finding (class 2004), ECS/Elastic, or native \
                        (`schema: nexus-attack.alert/1`); the format is detected from its fields",
    })
}

/// A valid native alert.
pub(super) fn alert_example() -> Value {
    json!({
        "schema": "nexus-attack.alert/1",
        "uid": "edr-123",
        "time": "2026-01-02T03:04:05Z",
        "title": "Encoded PowerShell",
        "severity": "high",
        "product": "ExampleEDR",
        "host": "ws-01",
        "rule_uid": "edr-rule-42",
        "fields": { "process": { "cmd_line": "powershell -enc SQBFAFgA" } }
    })
}

/// A valid NDJSON body of two native alerts.
pub(super) fn bulk_example() -> String {
    [
        json!({"schema": "nexus-attack.alert/1", "uid": "edr-124", "title": "Encoded PowerShell",
               "severity": "high", "fields": {"process": {"cmd_line": "powershell -enc SQBFAFgA"}}}),
        json!({"schema": "nexus-attack.alert/1", "uid": "edr-125", "title": "Shadow copies deleted",
               "severity": "critical", "fields": {"process": {"cmd_line": "vssadmin delete shadows /all"}}}),
    ]
    .iter()
    .map(|alert| format!("{alert}\n"))
    .collect()
}

/// JSON Schema of an override body (alerts and review corrections).
pub(super) fn override_schema() -> Value {
    json!({
        "type": "object",
        "required": ["action", "technique", "reason"],
        "additionalProperties": false,
        "properties": {
            "action": {"type": "string", "enum": ["add", "remove", "replace"]},
            "technique": {"type": "string", "description": "Technique added, removed or put in"},
            "tactic": {"type": "string"},
            "replaces": {"type": "string", "description": "For replace: the technique replaced"},
            "replaces_tactic": {"type": "string"},
            "reason": {
                "type": "string",
                "enum": ["wrong_technique", "missing_technique", "wrong_subtechnique",
                         "false_positive", "taxonomy_update", "other"]
            },
            "notes": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0.0, "maximum": 1.0},
        }
    })
}

/// A valid override body.
pub(super) fn override_example() -> Value {
    json!({
        "action": "add", "technique": "T1059.001", "reason": "missing_technique",
        "notes": "encoded PowerShell on the command line"
    })
}

/// JSON Schema of the override decision body.
pub(super) fn decide_schema() -> Value {
    json!({
        "type": "object", "required": ["decision"], "additionalProperties": false,
        "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]}}
    })
}

/// A valid override decision body.
pub(super) fn decide_example() -> Value {
    json!({"decision": "approve"})
}
