//! AI-assisted technique suggestions for pasted text or alert fields
//! (issue 5), from the suggester of a domain's active dataset.
//!
//! Suggestions are computed from shared reference data and the caller's own
//! input; nothing is stored, so both orgs asking the same get the same.
//! Suggestions for a stored alert or incident read it in the caller's org
//! only: another org's answers exactly as a missing one.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use service::access::Action;
use service::{MAX_SUGGESTIONS, SubjectSuggestions, SuggestionList};
use suggest::{SuggestInput, Suggestion};

use super::{Param, ParamType, parse_domain};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, AfterRoleQuery, ApiJson, PathId};

/// Most inputs in one batch request.
pub const MAX_BATCH_INPUTS: usize = 100;

/// Page size of the suggestion routes for stored alerts and incidents.
pub(super) const SUBJECT_PARAMS: [Param; 1] = [Param::query(
    "limit",
    ParamType::Integer {
        min: 1,
        max: MAX_SUGGESTIONS as i64,
    },
    "Most suggestions (default 10)",
)];

/// `GET /api/v1/alerts/{id}/suggestions` and
/// `GET /api/v1/incidents/{id}/suggestions` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubjectQuery {
    limit: Option<String>,
}

impl SubjectQuery {
    fn limit(&self) -> Result<Option<usize>, ApiError> {
        self.limit
            .as_deref()
            .map(|raw| {
                raw.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_SUGGESTIONS).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "limit",
                            format!(
                                "limit must be an integer from 1 to {MAX_SUGGESTIONS}, got `{raw}`"
                            ),
                        )
                    })
            })
            .transpose()
    }
}

/// The input fields of a suggestion request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputBody {
    text: Option<String>,
    title: Option<String>,
    description: Option<String>,
    command_line: Option<String>,
    process_name: Option<String>,
    parent_process: Option<String>,
    /// A string or an integer (`4698`).
    event_id: Option<Value>,
    registry_path: Option<String>,
    analyst_notes: Option<String>,
}

impl InputBody {
    fn into_input(self, at: &str) -> Result<SuggestInput, ApiError> {
        let event_id = match self.event_id {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    &format!("{at}event_id"),
                    "event_id must be a string or an integer",
                ));
            }
        };
        Ok(SuggestInput {
            text: self.text.unwrap_or_default(),
            title: self.title,
            description: self.description,
            command_line: self.command_line,
            process_name: self.process_name,
            parent_process: self.parent_process,
            event_id,
            registry_path: self.registry_path,
            analyst_notes: self.analyst_notes,
        })
    }
}

/// `POST /api/v1/suggest` body: the input fields beside `domain` and
/// `limit` (spelled out: serde cannot refuse unknown fields of a flattened
/// struct).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SuggestBody {
    domain: Option<String>,
    limit: Option<usize>,
    text: Option<String>,
    title: Option<String>,
    description: Option<String>,
    command_line: Option<String>,
    process_name: Option<String>,
    parent_process: Option<String>,
    event_id: Option<Value>,
    registry_path: Option<String>,
    analyst_notes: Option<String>,
}

impl SuggestBody {
    fn input(self) -> InputBody {
        InputBody {
            text: self.text,
            title: self.title,
            description: self.description,
            command_line: self.command_line,
            process_name: self.process_name,
            parent_process: self.parent_process,
            event_id: self.event_id,
            registry_path: self.registry_path,
            analyst_notes: self.analyst_notes,
        }
    }
}

/// `POST /api/v1/suggest/batch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchBody {
    domain: Option<String>,
    limit: Option<usize>,
    inputs: Vec<InputBody>,
}

const INPUT_PROPERTIES: [(&str, &str); 9] = [
    ("text", "Free text (pasted text, an alert rendered as text)"),
    ("title", "Alert or incident title"),
    ("description", "Alert or incident description"),
    ("command_line", "Process command line"),
    ("process_name", "Process image name or path"),
    ("parent_process", "Parent process image name or path"),
    ("event_id", "Event ID as logged (string or integer)"),
    ("registry_path", "Registry key or value path"),
    ("analyst_notes", "Analyst notes"),
];

fn input_properties() -> serde_json::Map<String, Value> {
    INPUT_PROPERTIES
        .iter()
        .map(|(name, description)| {
            let kind = if *name == "event_id" {
                json!(["string", "integer"])
            } else {
                json!("string")
            };
            (
                name.to_string(),
                json!({ "type": kind, "description": description }),
            )
        })
        .collect()
}

fn common_properties() -> serde_json::Map<String, Value> {
    let mut properties = serde_json::Map::new();
    properties.insert(
        "domain".into(),
        json!({ "type": "string", "description": "ATT&CK domain (default enterprise-attack)" }),
    );
    properties.insert(
        "limit".into(),
        json!({
            "type": "integer", "minimum": 1, "maximum": MAX_SUGGESTIONS,
            "description": "Most suggestions per input (default 10)"
        }),
    );
    properties
}

/// JSON Schema of the suggest body.
pub(super) fn suggest_schema() -> Value {
    let mut properties = common_properties();
    properties.extend(input_properties());
    json!({ "type": "object", "additionalProperties": false, "properties": properties })
}

/// Example suggest body.
pub(super) fn suggest_example() -> Value {
    json!({
        "title": "Scheduled task created",
        "command_line": "schtasks /create /tn Updater /tr C:\\Users\\Public\\u.exe /sc onlogon",
        "event_id": "4698",
        "limit": 5
    })
}

/// JSON Schema of the batch body.
pub(super) fn batch_schema() -> Value {
    let mut properties = common_properties();
    properties.insert(
        "inputs".into(),
        json!({
            "type": "array",
            "maxItems": MAX_BATCH_INPUTS,
            "items": {
                "type": "object",
                "additionalProperties": false,
                "properties": input_properties()
            }
        }),
    );
    json!({
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": false,
        "properties": properties
    })
}

/// Example batch body.
pub(super) fn batch_example() -> Value {
    json!({
        "inputs": [
            { "text": "vssadmin delete shadows /all /quiet" },
            { "process_name": "C:\\Windows\\System32\\rundll32.exe", "command_line": "rundll32.exe comsvcs.dll MiniDump 624 lsass.dmp full" }
        ]
    })
}

fn domain_of(raw: Option<&str>) -> Result<taxonomy::Domain, ApiError> {
    parse_domain("domain", raw.unwrap_or("enterprise-attack"))
}

/// The suggestion list's facts other than the suggestions, for `meta`.
fn list_meta(
    envelope: Envelope<Vec<Suggestion>>,
    list: &SuggestionList,
) -> Envelope<Vec<Suggestion>> {
    let dataset = json!({
        "id": list.dataset.id,
        "domain": list.dataset.domain,
        "release": list.dataset.release,
    });
    let envelope = envelope
        .with_meta("dataset", dataset)
        .with_meta("model_version", list.model_version.clone())
        .with_meta("input_truncated", list.input_truncated)
        .with_meta("known_terms", list.known_terms)
        .with_meta(
            "cap_gap",
            serde_json::to_value(list.cap_gap).unwrap_or(Value::Null),
        );
    match &list.provider {
        Some(p) => envelope.with_meta("provider", serde_json::to_value(p).unwrap_or(Value::Null)),
        None => envelope,
    }
}

/// `POST /api/v1/suggest`
pub(super) async fn suggest(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<SuggestBody>>,
) -> Result<Envelope<Vec<Suggestion>>, ApiError> {
    let ApiJson(body) = body
        .read(&state, &principal, Action::Suggest, ("suggester", "text"))
        .await?;

    let domain = domain_of(body.domain.as_deref())?;
    let limit = body.limit;
    let input = body.input().into_input("")?;

    let list = state
        .app
        .suggest_text(&principal.actor(), domain, &input, limit)
        .await?;

    Ok(list_meta(Envelope::ok(list.suggestions.clone()), &list))
}

/// `POST /api/v1/suggest/batch`: one `{"suggestions": [...]}` per input, in
/// order; the built-in suggester only.
pub(super) async fn batch(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<BatchBody>>,
) -> Result<Envelope<Vec<Value>>, ApiError> {
    let ApiJson(body) = body
        .read(&state, &principal, Action::Suggest, ("suggester", "batch"))
        .await?;

    let domain = domain_of(body.domain.as_deref())?;
    if body.inputs.len() > MAX_BATCH_INPUTS {
        return Err(ApiError::invalid_field(
            "inputs",
            format!(
                "at most {MAX_BATCH_INPUTS} inputs per request, got {}",
                body.inputs.len()
            ),
        ));
    }
    let inputs = body
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.into_input(&format!("inputs[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;

    let lists = state
        .app
        .suggest_batch(&principal.actor(), domain, &inputs, body.limit)
        .await?;

    let model_version = lists.first().map(|l| l.model_version.clone());
    let data = lists
        .into_iter()
        .map(|l| {
            json!({
                "suggestions": l.suggestions,
                "input_truncated": l.input_truncated,
                "known_terms": l.known_terms,
            })
        })
        .collect();
    let envelope = Envelope::ok(data);
    Ok(match model_version {
        Some(v) => envelope.with_meta("model_version", v),
        None => envelope,
    })
}

/// Suggestions for a stored subject: the ranked list as data, what was read
/// beside the list's own facts in `meta`.
fn subject_envelope(found: SubjectSuggestions) -> Envelope<Vec<Suggestion>> {
    let envelope = list_meta(Envelope::ok(found.list.suggestions.clone()), &found.list)
        .with_meta("subject", json!({ "kind": found.subject, "id": found.id }))
        .with_meta("alerts_read", found.alerts_read);
    if found.alerts_unread > 0 || found.evidence_read > 0 {
        envelope
            .with_meta("alerts_unread", found.alerts_unread)
            .with_meta("evidence_read", found.evidence_read)
    } else {
        envelope
    }
}

/// `GET /api/v1/alerts/{id}/suggestions`: the alert by the product's id or
/// its source uid.
pub(super) async fn alert(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    query: AfterRoleQuery<SubjectQuery>,
) -> Result<Envelope<Vec<Suggestion>>, ApiError> {
    let query = query
        .read(&state, &principal, Action::Suggest, ("alert", id.target()))
        .await?;
    let id = id.decoded()?;
    let limit = query.limit()?;

    let found = state
        .app
        .suggest_for_stored_alert(&principal.actor(), &principal.org_name, &id, limit)
        .await?;

    Ok(subject_envelope(found))
}

/// `GET /api/v1/incidents/{id}/suggestions`: from the incident's title, its
/// live alerts and its evidence references.
pub(super) async fn incident(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    query: AfterRoleQuery<SubjectQuery>,
) -> Result<Envelope<Vec<Suggestion>>, ApiError> {
    let query = query
        .read(
            &state,
            &principal,
            Action::Suggest,
            ("incident", id.target()),
        )
        .await?;
    let id = id.decoded()?;
    let limit = query.limit()?;

    let found = state
        .app
        .suggest_for_incident(&principal.actor(), &principal.org_name, &id, limit)
        .await?;

    Ok(subject_envelope(found))
}
