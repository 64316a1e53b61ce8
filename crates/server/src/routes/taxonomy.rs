//! Taxonomy reads: tactics, techniques and one technique of the active
//! dataset of a domain. Lists answer the items as `data` and the dataset
//! they were read from as `meta.dataset`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use service::{DatasetRef, StatusFilter, TechniqueFilter};
use taxonomy::{Tactic, Technique};

use super::{Param, ParamType, page_envelope, page_request, parse_bool, parse_domain};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

/// The filters of `GET /api/v1/taxonomy/{domain}/techniques`.
pub(super) const TECHNIQUE_FILTERS: [Param; 4] = [
    Param::query(
        "tactic",
        ParamType::String,
        "Only techniques of this tactic: ID (TA0002) or shortname (execution)",
    ),
    Param::query(
        "platform",
        ParamType::String,
        "Only techniques for this platform (Windows, Linux, ...), case-insensitive",
    ),
    Param::query(
        "status",
        ParamType::Enum(&["live", "deprecated", "revoked", "all"]),
        "Status to include (default live: neither revoked nor deprecated)",
    ),
    Param::query(
        "subtechniques",
        ParamType::Boolean,
        "Include sub-techniques (default true)",
    ),
];

/// Query of the technique list; unknown parameters are refused so that a
/// typo (`?tatic=`) does not silently return everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TechniqueQuery {
    tactic: Option<String>,
    platform: Option<String>,
    status: Option<String>,
    subtechniques: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/taxonomy/{domain}/tactics`
pub(super) async fn tactics(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(domain): ApiPath<String>,
) -> Result<Envelope<Vec<Tactic>>, ApiError> {
    let domain = parse_domain("domain", &domain)?;

    let list = state.app.tactics(&principal.actor(), domain).await?;

    Ok(Envelope::ok(list.tactics).with_meta("dataset", dataset_meta(&list.dataset)))
}

/// `GET /api/v1/taxonomy/{domain}/techniques`
pub(super) async fn techniques(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(domain): ApiPath<String>,
    ApiQuery(query): ApiQuery<TechniqueQuery>,
) -> Result<Envelope<Vec<Technique>>, ApiError> {
    let domain = parse_domain("domain", &domain)?;
    let filter = TechniqueFilter {
        tactic: query.tactic.filter(|t| !t.trim().is_empty()),
        platform: query.platform.filter(|p| !p.trim().is_empty()),
        status: parse_status(query.status.as_deref())?,
        exclude_subtechniques: !parse_bool("subtechniques", query.subtechniques.as_deref(), true)?,
    };
    let page = page_request(query.cursor, query.limit.as_deref())?;

    let result = state
        .app
        .techniques(&principal.actor(), domain, &filter, &page)
        .await?;

    let envelope = page_envelope(
        result.page.items,
        result.page.next_cursor,
        page.effective_limit(),
    );
    Ok(envelope.with_meta("dataset", dataset_meta(&result.dataset)))
}

/// `GET /api/v1/taxonomy/{domain}/techniques/{id}`
pub(super) async fn technique(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath((domain, id)): ApiPath<(String, String)>,
) -> Result<Envelope<Value>, ApiError> {
    let domain = parse_domain("domain", &domain)?;

    let detail = state.app.technique(&principal.actor(), domain, &id).await?;

    let data = json!({
        "technique": detail.technique,
        "parent": detail.parent,
        "subtechniques": detail.subtechniques,
        "replacement": detail.replacement,
    });
    Ok(Envelope::ok(data).with_meta("dataset", dataset_meta(&detail.dataset)))
}

fn parse_status(raw: Option<&str>) -> Result<StatusFilter, ApiError> {
    match raw.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "live") => Ok(StatusFilter::Live),
        Some("deprecated") => Ok(StatusFilter::Deprecated),
        Some("revoked") => Ok(StatusFilter::Revoked),
        Some("all") => Ok(StatusFilter::All),
        Some(other) => Err(ApiError::invalid_field(
            "status",
            format!("status must be live, deprecated, revoked or all, got `{other}`"),
        )),
    }
}

fn dataset_meta(dataset: &DatasetRef) -> Value {
    json!({ "id": dataset.id, "domain": dataset.domain, "release": dataset.release })
}
