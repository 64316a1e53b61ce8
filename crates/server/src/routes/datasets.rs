//! The dataset lifecycle: list, show, validation report, diff, and the
//! steward actions (load, validate, approve, reject, activate, rollback).
//!
//! Every handler has the same rhythm: read the input, ask the use case
//! (which checks the role and audits), answer in the envelope. A body, a
//! list's query and a path id are read only after the role check
//! ([`AfterRole`], [`AfterRoleQuery`], [`DatasetPath`]), so a refused
//! caller is told 403 whatever it sent.

use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use service::access::Action;
use service::{
    Activation, Dataset, DatasetFilter, DatasetId, DatasetState, LoadOptions, Principal, Rollback,
    ValidationSummary,
};

use super::{
    Param, ParamType, decode_cursor, invalid_cursor, page_envelope, parse_domain, parse_limit,
};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, AfterRoleQuery, ApiBytes, ApiJson, ApiQuery, PathId};

const STATES: &[&str] = &[
    "loaded",
    "validated",
    "approved",
    "active",
    "rejected",
    "retired",
    "rolled_back",
];

/// The audit target kind of datasets, as the use cases write it.
const DATASET: &str = "dataset";

/// Filters of `GET /api/v1/datasets`.
pub(super) const LIST_FILTERS: [Param; 2] = [
    Param::query(
        "domain",
        ParamType::Enum(&["enterprise-attack", "mobile-attack", "ics-attack"]),
        "Only datasets of this domain",
    ),
    Param::query(
        "state",
        ParamType::Enum(STATES),
        "Only datasets in this lifecycle state",
    ),
];

/// Identity hints of `POST /api/v1/datasets`.
pub(super) const LOAD_PARAMS: [Param; 3] = [
    Param::query(
        "release",
        ParamType::String,
        "Release version (18.1) when the bundle has no x-mitre-collection",
    ),
    Param::query(
        "domain",
        ParamType::Enum(&["enterprise-attack", "mobile-attack", "ics-attack"]),
        "Domain when the bundle has no x-mitre-collection",
    ),
    Param::query(
        "file_name",
        ParamType::String,
        "Original file name (enterprise-attack-18.1.json.gz), to read the identity from",
    ),
];

/// Sides of `GET /api/v1/datasets/diff`.
pub(super) const DIFF_PARAMS: [Param; 3] = [
    Param::query("from", ParamType::String, "Dataset id of the older side").required(),
    Param::query("to", ParamType::String, "Dataset id of the newer side").required(),
    Param::query(
        "format",
        ParamType::Enum(&["json", "markdown"]),
        "json (default, in the envelope) or markdown (text/markdown)",
    ),
];

/// JSON Schema of the rollback body.
pub(super) fn rollback_schema() -> Value {
    super::one_string_schema("domain", "ATT&CK domain to roll back")
}

/// Example rollback body.
pub(super) fn rollback_example() -> Value {
    json!({ "domain": "enterprise-attack" })
}

/// Example reject body.
pub(super) fn reject_example() -> Value {
    json!({ "reason": "release notes list a known defect" })
}

/// JSON Schema of the reject body.
pub(super) fn reject_schema() -> Value {
    super::one_string_schema(
        "reason",
        "Why the dataset is rejected (kept in the audit log)",
    )
}

/// The `{id}` of a dataset route, decoded only after the role check (see
/// [`PathId`]); recorded as the `dataset` field of the request span so that
/// every log line of the request names it.
pub(super) struct DatasetPath(PathId);

impl FromRequestParts<AppState> for DatasetPath {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let id = PathId::from_request_parts(parts, state).await?;
        tracing::Span::current().record("dataset", tracing::field::display(id.target()));
        Ok(Self(id))
    }
}

impl DatasetPath {
    /// The dataset to name in the role check.
    fn target(&self) -> (&'static str, &str) {
        (DATASET, self.0.target())
    }

    /// The dataset's id; call it after the role check.
    fn decoded(self) -> Result<DatasetId, ApiError> {
        self.0.decoded().map(DatasetId)
    }

    /// Checks that `principal` may perform `action` on the dataset (a
    /// denial is audited), then answers its id.
    async fn after_role(
        self,
        state: &AppState,
        principal: &Principal,
        action: Action,
    ) -> Result<DatasetId, ApiError> {
        crate::extract::check_role(state, principal, action, self.target()).await?;
        self.decoded()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    domain: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/datasets`: newest first, paginated here because the use
/// case answers the whole (short) list.
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<ListQuery>,
) -> Result<Envelope<Vec<Dataset>>, ApiError> {
    let query = query
        .read(&state, &principal, Action::ReadDatasets, (DATASET, "*"))
        .await?;
    let filter = DatasetFilter {
        domain: query
            .domain
            .as_deref()
            .map(|d| parse_domain("domain", d))
            .transpose()?,
        state: query.state.as_deref().map(parse_state).transpose()?,
    };
    let limit = parse_limit(query.limit.as_deref())?;
    let after = query
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(parse_dataset_cursor)
        .transpose()?;

    let datasets = state.app.list_datasets(&principal.actor(), &filter).await?;

    let (items, next) = page_after(datasets, after.as_ref(), limit)?;
    Ok(page_envelope(items, next, limit))
}

/// `POST /api/v1/datasets`: the body is the bundle, plain or gzipped.
pub(super) async fn load(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<LoadQuery>, ApiError>,
    body: AfterRole<ApiBytes>,
) -> Result<Response, ApiError> {
    let ApiBytes(body) = body
        .read(&state, &principal, Action::DatasetLoad, (DATASET, "upload"))
        .await?;
    let ApiQuery(query) = query?;
    let options = LoadOptions {
        release: query.release.filter(|r| !r.trim().is_empty()),
        domain: query
            .domain
            .as_deref()
            .map(|d| parse_domain("domain", d))
            .transpose()?,
        file_name: query.file_name.filter(|f| !f.trim().is_empty()),
    };
    if body.is_empty() {
        return Err(ApiError::invalid_field(
            "body",
            "the request body must be an ATT&CK STIX bundle (JSON or gzip)",
        ));
    }

    let dataset = state
        .app
        .load_dataset_bytes(&principal.actor(), body.to_vec(), &options)
        .await?;

    tracing::Span::current().record("dataset", tracing::field::display(&dataset.id));
    let location = format!("/api/v1/datasets/{}", dataset.id);
    let mut response = Envelope::created(dataset).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoadQuery {
    release: Option<String>,
    domain: Option<String>,
    file_name: Option<String>,
}

/// `GET /api/v1/datasets/{id}`
pub(super) async fn show(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: DatasetPath,
) -> Result<Envelope<Dataset>, ApiError> {
    let id = path
        .after_role(&state, &principal, Action::ReadDatasets)
        .await?;
    let dataset = state.app.dataset(&principal.actor(), &id).await?;
    Ok(Envelope::ok(dataset))
}

/// `GET /api/v1/datasets/{id}/validation`
pub(super) async fn validation(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: DatasetPath,
) -> Result<Envelope<ValidationSummary>, ApiError> {
    let id = path
        .after_role(&state, &principal, Action::ReadDatasets)
        .await?;
    let report = state.app.validation_report(&principal.actor(), &id).await?;
    Ok(Envelope::ok(report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `GET /api/v1/datasets/diff?from=&to=`
pub(super) async fn diff(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> Result<Response, ApiError> {
    let from = required(query.from, "from")?;
    let to = required(query.to, "to")?;
    let markdown = match query.format.as_deref().map(str::trim) {
        None | Some("" | "json") => false,
        Some("markdown" | "md") => true,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "format",
                format!("format must be json or markdown, got `{other}`"),
            ));
        }
    };
    let actor = principal.actor();

    // The use case also accepts file paths and URLs (for the CLI). Over
    // HTTP both sides must be stored datasets: a client must not make the
    // server read its files or fetch URLs of the client's choosing.
    for id in [&from, &to] {
        state.app.dataset(&actor, &DatasetId(id.clone())).await?;
    }
    let report = state.app.diff(&actor, &from, &to).await?;

    if markdown {
        let content_type = [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")];
        return Ok((content_type, report.markdown).into_response());
    }
    Ok(Envelope::ok(report).into_response())
}

/// `POST /api/v1/datasets/{id}/validate`
pub(super) async fn validate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: DatasetPath,
) -> Result<Envelope<ValidationSummary>, ApiError> {
    let id = path
        .after_role(&state, &principal, Action::DatasetValidate)
        .await?;
    let report = state.app.validate_dataset(&principal.actor(), &id).await?;
    Ok(Envelope::ok(report))
}

/// `POST /api/v1/datasets/{id}/approve`
pub(super) async fn approve(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: DatasetPath,
) -> Result<Envelope<Dataset>, ApiError> {
    let id = path
        .after_role(&state, &principal, Action::DatasetApprove)
        .await?;
    let dataset = state.app.approve_dataset(&principal.actor(), &id).await?;
    Ok(Envelope::ok(dataset))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RejectBody {
    reason: String,
}

/// `POST /api/v1/datasets/{id}/reject`
pub(super) async fn reject(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: DatasetPath,
    body: AfterRole<ApiJson<RejectBody>>,
) -> Result<Envelope<Dataset>, ApiError> {
    let ApiJson(body) = body
        .read(&state, &principal, Action::DatasetReject, path.target())
        .await?;
    let id = path.decoded()?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid_field(
            "reason",
            "a rejection needs a reason",
        ));
    }

    let dataset = state
        .app
        .reject_dataset(&principal.actor(), &id, reason)
        .await?;
    Ok(Envelope::ok(dataset))
}

/// `POST /api/v1/datasets/{id}/activate`
pub(super) async fn activate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    path: DatasetPath,
) -> Result<Envelope<Activation>, ApiError> {
    let id = path
        .after_role(&state, &principal, Action::DatasetActivate)
        .await?;
    let activation = state.app.activate_dataset(&principal.actor(), &id).await?;
    Ok(Envelope::ok(activation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    domain: String,
}

/// `POST /api/v1/datasets/rollback`
pub(super) async fn rollback(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<RollbackBody>>,
) -> Result<Envelope<Rollback>, ApiError> {
    // The domain is in the body, read only once the role allows it: a
    // refusal is audited against every domain (`*`).
    let ApiJson(body) = body
        .read(&state, &principal, Action::DatasetRollback, (DATASET, "*"))
        .await?;
    let domain = parse_domain("domain", &body.domain)?;

    let rollback = state
        .app
        .rollback_domain(&principal.actor(), domain)
        .await?;
    Ok(Envelope::ok(rollback))
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid_field(field, format!("`{field}` is required")))
}

fn parse_state(raw: &str) -> Result<DatasetState, ApiError> {
    raw.trim().parse::<DatasetState>().map_err(|_| {
        ApiError::invalid_field("state", format!("unknown state `{raw}`"))
            .with_details(json!({ "field": "state", "allowed": STATES }))
    })
}

/// Inner cursor of the dataset list: the id of the last dataset shown.
fn dataset_cursor(id: &DatasetId) -> String {
    format!("dataset:{id}")
}

fn parse_dataset_cursor(cursor: &str) -> Result<DatasetId, ApiError> {
    decode_cursor(cursor)?
        .strip_prefix("dataset:")
        .map(|id| DatasetId(id.to_string()))
        .ok_or_else(invalid_cursor)
}

/// The `limit` datasets after `after` (or from the start), and the cursor
/// of the next page. Keyset on the id, so datasets loaded while a client
/// pages (they go to the front) cause no duplicate.
fn page_after(
    datasets: Vec<Dataset>,
    after: Option<&DatasetId>,
    limit: usize,
) -> Result<(Vec<Dataset>, Option<String>), ApiError> {
    let start = match after {
        None => 0,
        Some(id) => {
            datasets
                .iter()
                .position(|d| &d.id == id)
                .ok_or_else(invalid_cursor)?
                + 1
        }
    };
    let rest = datasets.len().saturating_sub(start);
    let items: Vec<Dataset> = datasets.into_iter().skip(start).take(limit).collect();
    let next = (rest > items.len())
        .then(|| items.last().map(|d| dataset_cursor(&d.id)))
        .flatten();
    Ok((items, next))
}
