//! Signed export URLs (issue 7): a user allowed to export asks for a
//! short-lived URL; whoever holds it downloads the file without a token.
//!
//! The download route is [`Tenancy::Signed`](super::Tenancy::Signed): it
//! takes no bearer token, and the org it reads comes only from the signed
//! parameters, so a URL cannot be re-aimed at another org. The query string
//! carries the signature, so neither the request span nor the metrics ever
//! see the raw URL (they record the route template only).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use service::access::Action;
use service::{ExportKind, ExportRequest, ExportUrlError, FilterInput, RedactionOptions};

use super::{Param, ParamType, parse_domain};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, ApiJson, ApiQuery};

/// The parameters of a download URL, as [`service::download_url`] writes
/// them.
pub(super) const DOWNLOAD_PARAMS: [Param; 20] = [
    Param::query("org", ParamType::String, "Org id the export reads").required(),
    Param::query("by", ParamType::String, "Who signed").required(),
    Param::query("role", ParamType::String, "The signer's role").required(),
    Param::query(
        "kind",
        ParamType::Enum(&["navigator", "matrix_csv", "drilldown_csv"]),
        "What the file is",
    )
    .required(),
    Param::query("domain", ParamType::String, "ATT&CK domain").required(),
    Param::query("from", ParamType::String, "First day counted"),
    Param::query("to", ParamType::String, "First day no longer counted"),
    Param::query("source", ParamType::String, "Mapping sources kept"),
    Param::query("severity", ParamType::String, "Severities kept"),
    Param::query("connector", ParamType::String, "Connectors kept"),
    Param::query("platform", ParamType::String, "Platforms kept"),
    Param::query("band", ParamType::String, "Confidence bands kept"),
    Param::query(
        "full_matrix",
        ParamType::Enum(&["1"]),
        "Navigator: every technique",
    ),
    Param::query("tactic", ParamType::String, "Drilldown: the cell's tactic"),
    Param::query(
        "technique",
        ParamType::String,
        "Drilldown: the cell's technique",
    ),
    Param::query("redact_host", ParamType::Enum(&["1"]), "Host names hidden"),
    Param::query("redact_user", ParamType::Enum(&["1"]), "User names hidden"),
    Param::query(
        "redact_alert_id",
        ParamType::Enum(&["1"]),
        "Alert ids hidden",
    ),
    Param::query(
        "expires",
        ParamType::Integer {
            min: 0,
            max: i64::MAX,
        },
        "Expiry, Unix seconds",
    )
    .required(),
    Param::query(
        "sig",
        ParamType::String,
        "HMAC-SHA-256 of the other parameters, hex",
    )
    .required(),
];

/// `POST /api/v1/exports` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignBody {
    kind: ExportKind,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    filters: FilterBody,
    #[serde(default)]
    full_matrix: bool,
    #[serde(default)]
    tactic: Option<String>,
    #[serde(default)]
    technique: Option<String>,
    #[serde(default)]
    redaction: RedactionOptions,
}

/// The matrix filters, as the matrix routes take them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    connector: Option<String>,
    platform: Option<String>,
    band: Option<String>,
}

/// Empty strings mean "no restriction", as in the matrix routes' forms.
fn given(value: Option<String>) -> Option<String> {
    value
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `POST /api/v1/exports`: a signed URL, valid for the configured time.
pub(super) async fn sign(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<SignBody>>,
) -> Result<Envelope<Value>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::MatrixExport,
            ("export", &principal.org_name),
        )
        .await?;
    let domain = parse_domain(
        "domain",
        given(body.domain).as_deref().unwrap_or("enterprise-attack"),
    )?;
    let f = body.filters;
    let request = ExportRequest {
        kind: body.kind,
        domain,
        filter: FilterInput {
            from: given(f.from),
            to: given(f.to),
            source: given(f.source),
            severity: given(f.severity),
            connector: given(f.connector),
            platform: given(f.platform),
            band: given(f.band),
        },
        full_matrix: body.full_matrix,
        tactic: given(body.tactic),
        technique: given(body.technique),
        redaction: body.redaction,
    };

    let signed = state
        .app
        .sign_export(
            &principal.actor(),
            &principal.org_name,
            &request,
            &state.config.export_key,
            state.config.export_url_ttl,
        )
        .await?;

    Ok(Envelope::ok(json!({
        "url": signed.url,
        "expires_at": signed.expires_at,
        "kind": signed.kind,
    })))
}

/// `GET /api/v1/exports/download`: the file, when the URL is genuine and
/// not expired.
pub(super) async fn download(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let params =
        service::verify_export_url(&state.config.export_key, &query, now).map_err(refused)?;
    tracing::Span::current().record("org", tracing::field::display(&params.org));
    if !state.app.export_signer_active(&params).await? {
        return Err(refused(ExportUrlError::Invalid(
            "the token that signed it was revoked".into(),
        )));
    }

    let file = state.app.signed_export(&params).await?;

    let disposition = format!(
        "attachment; filename=\"{}\"",
        file.file_name.replace('"', "")
    );
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            // The URL is a credential: keep the answer out of shared caches.
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        file.body,
    )
        .into_response())
}

/// 403 with the URL error's code; the message never repeats the signature.
fn refused(error: ExportUrlError) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, error.code(), error.to_string())
}

/// JSON Schema of the signing body.
pub(super) fn sign_schema() -> Value {
    let text = json!({"type": "string"});
    json!({
        "type": "object",
        "required": ["kind"],
        "additionalProperties": false,
        "properties": {
            "kind": {
                "type": "string",
                "enum": ["navigator", "matrix_csv", "drilldown_csv"],
                "description": "Navigator layer 4.5, the matrix cells as CSV, or the alerts behind one cell as CSV"
            },
            "domain": {"type": "string", "description": "ATT&CK domain (default enterprise-attack)"},
            "filters": {
                "type": "object",
                "additionalProperties": false,
                "description": "The matrix filters, as GET /api/v1/matrix takes them",
                "properties": {
                    "from": text, "to": text, "source": text, "severity": text,
                    "connector": text, "platform": text, "band": text
                }
            },
            "full_matrix": {"type": "boolean", "description": "Navigator: every technique of the release"},
            "tactic": {"type": "string", "description": "Drilldown: the cell's tactic (required for drilldown_csv)"},
            "technique": {"type": "string", "description": "Drilldown: the cell's technique (required for drilldown_csv)"},
            "redaction": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "host": {"type": "boolean"},
                    "user": {"type": "boolean"},
                    "alert_id": {"type": "boolean"}
                }
            }
        }
    })
}

/// A valid signing body.
pub(super) fn sign_example() -> Value {
    json!({
        "kind": "matrix_csv",
        "filters": {"source": "rule"},
        "redaction": {"host": true, "user": true, "alert_id": false}
    })
}
