//! Incidents and their ATT&CK profiles (issue 4), always in the caller's
//! org: another org's incident or alert answers exactly as a missing one.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use service::access::Action;
use service::{AdjustmentInput, IncidentInput, IncidentProfileView, IncidentSummary, SplitOutcome};

use super::{page_envelope, page_request};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, AfterRoleQuery, ApiJson, PathId};

/// `GET /api/v1/incidents` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `POST /api/v1/incidents/{id}/attach|detach|split` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsBody {
    alerts: Vec<String>,
}

/// `POST /api/v1/incidents/{id}/merge` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MergeBody {
    absorbed: String,
}

/// `POST /api/v1/incidents/{id}/status` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusBody {
    status: String,
}

/// `POST /api/v1/incidents/{id}/severity` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeverityBody {
    severity: String,
}

/// `POST /api/v1/incidents/{id}/evidence` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EvidenceBody {
    reference: String,
    kind: Option<String>,
}

/// `POST /api/v1/incidents`
pub(super) async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<IncidentInput>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(input) = body
        .read(&state, &principal, Action::IncidentWrite, ("incident", "*"))
        .await?;

    let view = state
        .app
        .create_incident(&principal.actor(), &principal.org_name, input)
        .await?;
    Ok(Envelope::created(view))
}

/// `GET /api/v1/incidents`: the org's incidents, most recently updated
/// first.
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<ListQuery>,
) -> Result<Envelope<Vec<IncidentSummary>>, ApiError> {
    let query = query
        .read(&state, &principal, Action::ReadMappings, ("incident", "*"))
        .await?;
    let page = page_request(query.cursor, query.limit.as_deref())?;

    let incidents = state
        .app
        .list_incidents(&principal.actor(), &principal.org_name, &page)
        .await?;

    Ok(page_envelope(
        incidents.items,
        incidents.next_cursor,
        page.effective_limit(),
    ))
}

/// `GET /api/v1/incidents/{id}`
pub(super) async fn show(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    state
        .app
        .check_permission(
            &principal.actor(),
            Action::ReadMappings,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .incident_profile(&principal.actor(), &principal.org_name, &id)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/attach`
pub(super) async fn attach(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<AlertsBody>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .attach_alerts(&principal.actor(), &principal.org_name, &id, &body.alerts)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/detach`
pub(super) async fn detach(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<AlertsBody>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .detach_alerts(&principal.actor(), &principal.org_name, &id, &body.alerts)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/merge`
pub(super) async fn merge(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<MergeBody>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .merge_incidents(&principal.actor(), &principal.org_name, &id, &body.absorbed)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/split`
pub(super) async fn split(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<AlertsBody>>,
) -> Result<Envelope<SplitOutcome>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let outcome = state
        .app
        .split_incident(&principal.actor(), &principal.org_name, &id, &body.alerts)
        .await?;
    Ok(Envelope::created(outcome))
}

/// `POST /api/v1/incidents/{id}/adjustments`
pub(super) async fn adjust(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<AdjustmentInput>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(input) = body
        .read(
            &state,
            &principal,
            Action::IncidentAdjust,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .adjust_incident(&principal.actor(), &principal.org_name, &id, input)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/status`
pub(super) async fn status(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<StatusBody>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .set_incident_status(&principal.actor(), &principal.org_name, &id, &body.status)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/severity`
pub(super) async fn severity(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<SeverityBody>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .set_incident_severity(&principal.actor(), &principal.org_name, &id, &body.severity)
        .await?;
    Ok(Envelope::ok(view))
}

/// `POST /api/v1/incidents/{id}/evidence`
pub(super) async fn evidence(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<EvidenceBody>>,
) -> Result<Envelope<IncidentProfileView>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::IncidentWrite,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let view = state
        .app
        .add_incident_evidence(
            &principal.actor(),
            &principal.org_name,
            &id,
            body.kind.as_deref().unwrap_or("reference"),
            &body.reference,
        )
        .await?;
    Ok(Envelope::ok(view))
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

/// JSON Schema of the create body.
pub(super) fn create_schema() -> Value {
    json!({
        "type": "object",
        "required": ["title"],
        "additionalProperties": false,
        "properties": {
            "title": {"type": "string"},
            "severity": {"type": "string", "enum": service::INCIDENT_SEVERITIES},
            "lead": {"type": "string"},
            "alerts": strings("Alert ids or source uids"),
        }
    })
}

/// A valid create body.
pub(super) fn create_example() -> Value {
    json!({"title": "Credential theft on host-02", "severity": "high"})
}

/// JSON Schema of the attach, detach and split bodies.
pub(super) fn alerts_schema() -> Value {
    json!({
        "type": "object",
        "required": ["alerts"],
        "additionalProperties": false,
        "properties": {"alerts": strings("Alert ids or source uids")}
    })
}

/// A valid attach, detach or split body.
pub(super) fn alerts_example() -> Value {
    json!({"alerts": ["a6d72f204a55fc9646f25a572f92209c"]})
}

/// JSON Schema of the merge body.
pub(super) fn merge_schema() -> Value {
    super::one_string_schema("absorbed", "The incident merged into this one")
}

/// A valid merge body.
pub(super) fn merge_example() -> Value {
    json!({"absorbed": "0190f5c2-0000-7000-8000-000000000000"})
}

/// JSON Schema of the adjustment body.
pub(super) fn adjust_schema() -> Value {
    json!({
        "type": "object",
        "required": ["action", "technique", "reason", "rationale"],
        "additionalProperties": false,
        "properties": {
            "action": {"type": "string", "enum": ["add", "remove", "replace"]},
            "technique": {"type": "string"},
            "tactic": {"type": "string"},
            "replaces": {"type": "string"},
            "replaces_tactic": {"type": "string"},
            "reason": {"type": "string", "enum": service::ADJUSTMENT_REASONS},
            "rationale": {"type": "string"},
            "evidence": strings("Evidence references (at least one, here or on the incident)"),
            "confidence": {"type": "number", "minimum": 0.0, "maximum": 1.0},
        }
    })
}

/// A valid adjustment body.
pub(super) fn adjust_example() -> Value {
    json!({
        "action": "add", "technique": "T1078", "reason": "missing_technique",
        "rationale": "valid accounts used from the VPN", "evidence": ["TICKET-42"]
    })
}

/// JSON Schema of the status body.
pub(super) fn status_schema() -> Value {
    json!({
        "type": "object", "required": ["status"], "additionalProperties": false,
        "properties": {"status": {"type": "string", "enum": service::INCIDENT_STATUSES}}
    })
}

/// A valid status body.
pub(super) fn status_example() -> Value {
    json!({"status": "contained"})
}

/// JSON Schema of the severity body.
pub(super) fn severity_schema() -> Value {
    json!({
        "type": "object", "required": ["severity"], "additionalProperties": false,
        "properties": {"severity": {"type": "string", "enum": service::INCIDENT_SEVERITIES}}
    })
}

/// A valid severity body.
pub(super) fn severity_example() -> Value {
    json!({"severity": "high"})
}

/// JSON Schema of the evidence body.
pub(super) fn evidence_schema() -> Value {
    json!({
        "type": "object", "required": ["reference"], "additionalProperties": false,
        "properties": {
            "reference": {"type": "string"},
            "kind": {"type": "string", "description": "ticket, url, file, note, ..."}
        }
    })
}

/// A valid evidence body.
pub(super) fn evidence_example() -> Value {
    json!({"reference": "INC-1042", "kind": "ticket"})
}
