//! The ATT&CK matrix of the caller's org (issue 6): the heatmap with its
//! formula, the drilldown behind a cell, exports and layer imports.
//!
//! Every route reads the caller's own org and checks the role before it
//! reads its query or body, so a refused role is told 403 whatever it sent
//! and learns nothing from a bad parameter.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use service::access::Action;
use service::{
    Drilldown, ExportKind, ExportRequest, FilterInput, MatrixFilter, MatrixView, Principal,
    RedactionOptions,
};

use super::{
    Param, ParamType, decode_cursor, encode_cursor, parse_bool, parse_domain, parse_limit,
};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, ApiJson, ApiQuery};

/// The filters every matrix route takes.
pub(super) const FILTERS: [Param; 8] = [
    Param::query(
        "domain",
        ParamType::String,
        "ATT&CK domain whose active release lays out the matrix (default enterprise-attack)",
    ),
    Param::query("from", ParamType::String, "First day counted (YYYY-MM-DD)"),
    Param::query(
        "to",
        ParamType::String,
        "First day no longer counted (YYYY-MM-DD)",
    ),
    Param::query(
        "source",
        ParamType::String,
        "Mapping sources kept, comma-separated: manual, rule, ai",
    ),
    Param::query(
        "severity",
        ParamType::String,
        "Severities kept, comma-separated",
    ),
    Param::query(
        "connector",
        ParamType::String,
        "Connectors (alert products) kept, comma-separated",
    ),
    Param::query(
        "platform",
        ParamType::String,
        "Platforms kept, comma-separated",
    ),
    Param::query(
        "band",
        ParamType::String,
        "Confidence bands kept, comma-separated: low, medium, high",
    ),
];

/// Drilldown parameters beside the filters. `tactic` and `technique` are
/// required by the use case, which answers 400 without them.
pub(super) const DRILLDOWN: [Param; 4] = [
    Param::query(
        "tactic",
        ParamType::String,
        "Tactic ID or shortname of the cell",
    ),
    Param::query("technique", ParamType::String, "Technique ID of the cell"),
    Param::query(
        "cursor",
        ParamType::String,
        "Opaque cursor from `meta.next_cursor` of the previous page",
    ),
    Param::query(
        "limit",
        ParamType::Integer { min: 1, max: 500 },
        "Page size (default 50)",
    ),
];

/// Export parameters beside the filters.
pub(super) const EXPORT: [Param; 7] = [
    Param::query(
        "format",
        ParamType::Enum(&["navigator", "csv", "drilldown"]),
        "navigator (layer 4.5, default), csv (the cells) or drilldown (the alerts behind one \
         cell, with redaction)",
    ),
    Param::query(
        "tactic",
        ParamType::String,
        "Drilldown: tactic ID or shortname of the cell",
    ),
    Param::query(
        "technique",
        ParamType::String,
        "Drilldown: technique ID of the cell",
    ),
    Param::query(
        "full_matrix",
        ParamType::Boolean,
        "Navigator: list every technique of the release, unannotated ones included",
    ),
    Param::query("redact_host", ParamType::Boolean, "Hide host names"),
    Param::query("redact_user", ParamType::Boolean, "Hide user names"),
    Param::query("redact_alert_id", ParamType::Boolean, "Hide alert ids"),
];

/// Query of `GET /api/v1/matrix` and `POST /api/v1/matrix/import`: the
/// view, a domain and the filters. Every matrix query refuses a parameter
/// it does not take, naming it, so a misspelt filter (`tactc=`) is not
/// silently dropped from the view the client believes it asked for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatrixQuery {
    domain: Option<String>,
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    connector: Option<String>,
    platform: Option<String>,
    band: Option<String>,
}

/// Query of `GET /api/v1/matrix/drilldown`: the view, the cell and the
/// page (serde cannot refuse unknown fields beside a flattened
/// [`MatrixQuery`], so the view's fields are spelt out again).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrilldownQuery {
    domain: Option<String>,
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    connector: Option<String>,
    platform: Option<String>,
    band: Option<String>,
    tactic: Option<String>,
    technique: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// Query of `GET /api/v1/matrix/export`: the view and what to export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    domain: Option<String>,
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    connector: Option<String>,
    platform: Option<String>,
    band: Option<String>,
    format: Option<String>,
    tactic: Option<String>,
    technique: Option<String>,
    full_matrix: Option<String>,
    redact_host: Option<String>,
    redact_user: Option<String>,
    redact_alert_id: Option<String>,
}

impl DrilldownQuery {
    fn view(&self) -> MatrixQuery {
        MatrixQuery {
            domain: self.domain.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            source: self.source.clone(),
            severity: self.severity.clone(),
            connector: self.connector.clone(),
            platform: self.platform.clone(),
            band: self.band.clone(),
        }
    }
}

impl ExportQuery {
    fn view(&self) -> MatrixQuery {
        MatrixQuery {
            domain: self.domain.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            source: self.source.clone(),
            severity: self.severity.clone(),
            connector: self.connector.clone(),
            platform: self.platform.clone(),
            band: self.band.clone(),
        }
    }
}

/// Empty form fields mean "no restriction".
fn given(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The role check the use case makes first, made before the query is
/// read: a refused caller is told 403 whatever parameters it sent. The
/// target is the one the use case names, the caller's org.
async fn check_role(
    state: &AppState,
    principal: &Principal,
    action: Action,
    kind: &str,
) -> Result<(), ApiError> {
    let target = (kind, principal.org_name.as_str());
    crate::extract::check_role(state, principal, action, target).await
}

impl MatrixQuery {
    fn domain(&self) -> Result<::taxonomy::Domain, ApiError> {
        parse_domain(
            "domain",
            given(&self.domain)
                .as_deref()
                .unwrap_or("enterprise-attack"),
        )
    }

    fn filter_input(&self) -> FilterInput {
        FilterInput {
            from: given(&self.from),
            to: given(&self.to),
            source: given(&self.source),
            severity: given(&self.severity),
            connector: given(&self.connector),
            platform: given(&self.platform),
            band: given(&self.band),
        }
    }

    fn filter(&self) -> Result<MatrixFilter, ApiError> {
        Ok(self.filter_input().parse()?)
    }
}

/// `GET /api/v1/matrix`
pub(super) async fn matrix(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<MatrixQuery>, ApiError>,
) -> Result<Envelope<MatrixView>, ApiError> {
    check_role(&state, &principal, Action::ReadMappings, "matrix").await?;
    let ApiQuery(query) = query?;
    let (domain, filter) = (query.domain()?, query.filter()?);

    let view = state
        .app
        .matrix(&principal.actor(), &principal.org_name, domain, filter)
        .await?;

    Ok(Envelope::ok(view))
}

/// `GET /api/v1/matrix/drilldown`: one page of the cell's alerts and the
/// incidents holding them; the cursor is the service's alert id, wrapped.
pub(super) async fn drilldown(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<DrilldownQuery>, ApiError>,
) -> Result<Envelope<Drilldown>, ApiError> {
    check_role(&state, &principal, Action::ReadMappings, "matrix").await?;
    let ApiQuery(query) = query?;
    let view = query.view();
    let (domain, filter) = (view.domain()?, view.filter()?);
    let limit = parse_limit(query.limit.as_deref())?;
    let cursor = given(&query.cursor)
        .map(|c| decode_cursor(&c))
        .transpose()?;

    let mut page = state
        .app
        .matrix_drilldown(
            &principal.actor(),
            &principal.org_name,
            domain,
            query.tactic.as_deref().unwrap_or(""),
            query.technique.as_deref().unwrap_or(""),
            filter,
            cursor.as_deref(),
            limit,
        )
        .await?;

    let next = page.next_cursor.take().map(|c| encode_cursor(&c));
    page.next_cursor = next.clone();
    Ok(Envelope::page(page, next).with_meta("limit", limit))
}

/// `GET /api/v1/matrix/export`: the file itself, with a download name.
/// The same use case serves signed download URLs, so both give the same
/// file for the same request.
pub(super) async fn export(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<ExportQuery>, ApiError>,
) -> Result<Response, ApiError> {
    check_role(&state, &principal, Action::MatrixExport, "matrix_export").await?;
    let ApiQuery(query) = query?;
    let view = query.view();
    let domain = view.domain()?;
    let format = given(&query.format).unwrap_or_else(|| "navigator".into());
    let kind = match format.to_ascii_lowercase().as_str() {
        "navigator" => ExportKind::Navigator,
        "csv" => ExportKind::MatrixCsv,
        "drilldown" => ExportKind::DrilldownCsv,
        other => {
            return Err(ApiError::invalid_field(
                "format",
                format!("format must be navigator, csv or drilldown, got `{other}`"),
            ));
        }
    };
    let request = ExportRequest {
        kind,
        domain,
        filter: view.filter_input(),
        full_matrix: parse_bool("full_matrix", query.full_matrix.as_deref(), false)?,
        tactic: given(&query.tactic),
        technique: given(&query.technique),
        redaction: RedactionOptions {
            host: parse_bool("redact_host", query.redact_host.as_deref(), false)?,
            user: parse_bool("redact_user", query.redact_user.as_deref(), false)?,
            alert_id: parse_bool("redact_alert_id", query.redact_alert_id.as_deref(), false)?,
        },
    };

    let file = state
        .app
        .export_file(&principal.actor(), &principal.org_name, &request)
        .await?;

    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.file_name.replace('"', "")
    );
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        file.body,
    )
        .into_response())
}

/// `POST /api/v1/matrix/import` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportBody {
    /// One Navigator layer, or an array of layers.
    layer: Value,
}

/// `POST /api/v1/matrix/import`: compares a Navigator layer with the org's
/// activity under the filters of the query.
pub(super) async fn import(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<MatrixQuery>, ApiError>,
    body: AfterRole<ApiJson<ImportBody>>,
) -> Result<Envelope<Value>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::ReadMappings,
            ("matrix", &principal.org_name),
        )
        .await?;
    let ApiQuery(query) = query?;
    let (domain, filter) = (query.domain()?, query.filter()?);

    let comparison = state
        .app
        .import_layer(
            &principal.actor(),
            &principal.org_name,
            domain,
            filter,
            &body.layer.to_string(),
        )
        .await?;

    Ok(Envelope::ok(comparison))
}

/// JSON Schema of the import body.
pub(super) fn import_schema() -> Value {
    json!({
        "type": "object",
        "required": ["layer"],
        "additionalProperties": false,
        "properties": {
            "layer": {
                "description": "An ATT&CK Navigator layer (format 4.x) or an array of layers",
                "type": ["object", "array"]
            }
        }
    })
}

/// A valid import body: a one-technique layer.
pub(super) fn import_example() -> Value {
    json!({
        "layer": {
            "name": "red team plan",
            "domain": "enterprise-attack",
            "versions": {"layer": "4.5", "navigator": "5.1.0", "attack": "18"},
            "techniques": [{"techniqueID": "T1059", "score": 3}]
        }
    })
}
