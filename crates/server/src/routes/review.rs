//! The review queue of the caller's org: low-confidence, AI-only,
//! evidence-less and conflicting alert mappings, and incidents whose
//! profile a staleness trigger made stale, waiting for an analyst, who
//! accepts, rejects or corrects each (an incident's correction is a lead
//! adjustment). Another org's item answers exactly as a missing one.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service::access::Action;
use service::{
    IncidentProfileView, OverrideInput, OverrideOutcome, ReviewCorrection, ReviewDecision,
    ReviewItem,
};

use super::{Param, ParamType, page_envelope, page_request};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, AfterRoleQuery, ApiJson, PathId};

/// Filter of `GET /api/v1/review`.
pub(super) const LIST_FILTERS: [Param; 1] = [Param::query(
    "state",
    ParamType::Enum(service::REVIEW_STATE_FILTERS),
    "Only items in this state; `all`, or no value, lists every state",
)];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `POST /api/v1/review/{id}/decide` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecideBody {
    decision: ReviewDecision,
    notes: Option<String>,
}

/// What `POST /api/v1/review/{id}/correct` answers.
#[derive(Debug, Serialize)]
pub(super) struct Correction {
    /// The item, now `corrected`.
    review: ReviewItem,
    /// An alert's item: the override that corrected the mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    r#override: Option<OverrideOutcome>,
    /// An incident's item: the incident after the lead adjustment.
    #[serde(skip_serializing_if = "Option::is_none")]
    incident: Option<IncidentProfileView>,
}

/// `GET /api/v1/review`: oldest first, so the queue is worked in order.
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<ListQuery>,
) -> Result<Envelope<Vec<ReviewItem>>, ApiError> {
    let target = ("review", principal.org_name.as_str());
    let query = query
        .read(&state, &principal, Action::ReadMappings, target)
        .await?;
    let page = page_request(query.cursor, query.limit.as_deref())?;

    let items = state
        .app
        .review_page(
            &principal.actor(),
            &principal.org_name,
            query.state.as_deref(),
            &page,
        )
        .await?;

    Ok(page_envelope(
        items.items,
        items.next_cursor,
        page.effective_limit(),
    ))
}

/// `POST /api/v1/review/{id}/decide`: accept or reject the mapping as it is.
pub(super) async fn decide(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<DecideBody>>,
) -> Result<Envelope<ReviewItem>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::ReviewWork,
            ("review", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let item = state
        .app
        .review_decide(
            &principal.actor(),
            &principal.org_name,
            &id,
            body.decision,
            body.notes.as_deref(),
        )
        .await?;
    Ok(Envelope::ok(item))
}

/// `POST /api/v1/review/{id}/correct`: correct an alert's mapping with an
/// override, or an incident's profile with a lead adjustment (reason code
/// required), and resolve the item.
pub(super) async fn correct(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
    body: AfterRole<ApiJson<OverrideInput>>,
) -> Result<Envelope<Correction>, ApiError> {
    // An incident's item needs a role the route table cannot know: the
    // item says which, and it is checked before the body too. An id that
    // does not decode names no item, so only the first check applies.
    state
        .app
        .check_review_correction(&principal.actor(), &principal.org_name, id.target())
        .await?;
    let ApiJson(input) = body
        .read(
            &state,
            &principal,
            Action::ReviewWork,
            ("review", id.target()),
        )
        .await?;
    let id = id.decoded()?;

    let (review, correction) = state
        .app
        .review_correct(&principal.actor(), &principal.org_name, &id, input)
        .await?;
    let (r#override, incident) = match correction {
        ReviewCorrection::Override(outcome) => (Some(*outcome), None),
        ReviewCorrection::Adjustment(view) => (None, Some(*view)),
    };
    Ok(Envelope::ok(Correction {
        review,
        r#override,
        incident,
    }))
}

/// JSON Schema of the decision body.
pub(super) fn decide_schema() -> Value {
    json!({
        "type": "object", "required": ["decision"], "additionalProperties": false,
        "properties": {
            "decision": {"type": "string", "enum": ["accept", "reject"]},
            "notes": {"type": "string"}
        }
    })
}

/// A valid decision body.
pub(super) fn decide_example() -> Value {
    json!({"decision": "accept", "notes": "the rule's evidence matches the process tree"})
}
