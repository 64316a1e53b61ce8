//! Short-lived signed export URLs and the drilldown CSV export.
//!
//! A user allowed to export asks for a URL once ([`App::sign_export`]);
//! whoever holds the URL may download the file until it expires, without a
//! token ([`App::signed_export`]). The URL carries everything the export
//! needs (org, signer, the signer's role, kind, filters, redaction, expiry)
//! and an HMAC-SHA-256 over a canonical form of exactly those values, so
//! changing any of them, adding one or dropping one voids it. Both the
//! signing and each download are audited; the signature itself is never
//! logged or audited.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use mapping::{Band, Severity, Source};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use taxonomy::Domain;
use views::{DrilldownRow, MatrixFilter, Redaction};

use crate::{Action, Actor, App, FilterInput, OrgId, Result, Role, ServiceError};

/// How long a signed URL stays valid unless configured otherwise.
pub const DEFAULT_EXPORT_TTL: Duration = Duration::from_secs(15 * 60);

/// Shortest key accepted from configuration, in bytes.
pub const MIN_EXPORT_KEY_BYTES: usize = 32;

/// The route a signed URL points at.
pub const DOWNLOAD_PATH: &str = "/api/v1/exports/download";

/// Most drilldown rows one export writes.
const MAX_DRILLDOWN_ROWS: usize = 100_000;

/// The server key that signs export URLs. Never printed: `Debug` hides it.
#[derive(Clone)]
pub struct ExportKey {
    bytes: Arc<Vec<u8>>,
    ephemeral: bool,
}

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportKey")
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

impl ExportKey {
    /// A random 32-byte key for this process only: URLs it signs die with
    /// the process and are refused by other nodes.
    pub fn random() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self {
            bytes: Arc::new(bytes),
            ephemeral: true,
        }
    }

    /// A configured key (`NEXUS_ATTACK_EXPORT_KEY`): its bytes as given, at
    /// least [`MIN_EXPORT_KEY_BYTES`] of them.
    pub fn from_secret(secret: &str) -> Result<Self> {
        let secret = secret.trim();
        if secret.len() < MIN_EXPORT_KEY_BYTES {
            return Err(ServiceError::InvalidInput {
                field: "export_key".into(),
                message: format!(
                    "the export signing key must be at least {MIN_EXPORT_KEY_BYTES} bytes, got {}",
                    secret.len()
                ),
            });
        }
        Ok(Self {
            bytes: Arc::new(secret.as_bytes().to_vec()),
            ephemeral: false,
        })
    }

    /// True for a key generated at start rather than configured.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }
}

/// What an export produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// ATT&CK Navigator layer 4.5 (JSON).
    Navigator,
    /// The matrix view's cells as CSV.
    MatrixCsv,
    /// The alerts behind one cell as CSV, with redaction.
    DrilldownCsv,
}

impl ExportKind {
    /// The kind as written in URLs, bodies and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportKind::Navigator => "navigator",
            ExportKind::MatrixCsv => "matrix_csv",
            ExportKind::DrilldownCsv => "drilldown_csv",
        }
    }
}

impl FromStr for ExportKind {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "navigator" => Ok(ExportKind::Navigator),
            "matrix_csv" => Ok(ExportKind::MatrixCsv),
            "drilldown_csv" => Ok(ExportKind::DrilldownCsv),
            other => Err(ServiceError::InvalidInput {
                field: "kind".into(),
                message: format!("`{other}` is not navigator, matrix_csv or drilldown_csv"),
            }),
        }
    }
}

/// Which identifiers an export hides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionOptions {
    /// Hide host names.
    #[serde(default)]
    pub host: bool,
    /// Hide user names.
    #[serde(default)]
    pub user: bool,
    /// Hide alert identifiers.
    #[serde(default)]
    pub alert_id: bool,
}

impl RedactionOptions {
    /// The CSV writer's redaction (hidden values become `redacted`).
    pub fn redaction(&self) -> Redaction {
        Redaction {
            host: self.host,
            user: self.user,
            alert_id: self.alert_id,
            key: None,
        }
    }
}

/// One export: its kind and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// What to produce.
    pub kind: ExportKind,
    /// Domain whose active release lays out the matrix.
    pub domain: Domain,
    /// The view's filters, as the matrix routes take them.
    pub filter: FilterInput,
    /// Navigator: list every technique of the release.
    pub full_matrix: bool,
    /// Drilldown: the cell's tactic.
    pub tactic: Option<String>,
    /// Drilldown: the cell's technique.
    pub technique: Option<String>,
    /// Identifiers to hide.
    pub redaction: RedactionOptions,
}

impl ExportRequest {
    /// Checks the request as the export will read it.
    fn check(&self) -> Result<MatrixFilter> {
        let filter = self.filter.parse()?;
        if self.kind == ExportKind::DrilldownCsv {
            for (field, value) in [("tactic", &self.tactic), ("technique", &self.technique)] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    return Err(ServiceError::InvalidInput {
                        field: field.into(),
                        message: format!("a drilldown export needs the cell's {field}"),
                    });
                }
            }
        }
        Ok(filter)
    }

    /// The scope for audit events (no secret in it).
    fn audit_scope(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "domain": self.domain.as_str(),
            "filter": self.filter,
            "full_matrix": self.full_matrix,
            "tactic": self.tactic,
            "technique": self.technique,
        })
    }
}

/// Everything a signed URL carries besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedParams {
    /// The org the export reads, and the only one.
    pub org: OrgId,
    /// Who signed (the audit name of the signer).
    pub by: String,
    /// The signer's role when signing; the download acts with it.
    pub role: Role,
    /// The export.
    pub request: ExportRequest,
    /// Expiry, in Unix seconds.
    pub expires: i64,
}

/// Why a signed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportUrlError {
    /// A parameter is missing, repeated, unknown or unreadable, or the
    /// signature does not match: the URL was not issued as it is.
    #[error("the export URL is not valid: {0}")]
    Invalid(String),
    /// The URL is genuine but past its expiry.
    #[error("the export URL expired at {0}")]
    Expired(DateTime<Utc>),
}

impl ExportUrlError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ExportUrlError::Invalid(_) => "export_url_invalid",
            ExportUrlError::Expired(_) => "export_url_expired",
        }
    }
}

/// A signed URL just issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedExport {
    /// Relative URL of the download, signature included. A bearer
    /// credential until it expires: hand it only to its recipient.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The export it gives.
    pub kind: ExportKind,
}

/// An export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// MIME type.
    pub content_type: &'static str,
    /// Suggested file name.
    pub file_name: String,
    /// The file.
    pub body: String,
}

/// The signed parameters in URL order, as (name, value); empty values are
/// left out of the URL but still signed (as empty).
fn fields(p: &SignedParams) -> Vec<(&'static str, String)> {
    let flag = |b: bool| if b { "1" } else { "" }.to_string();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let r = &p.request;
    vec![
        ("org", p.org.as_str().to_string()),
        ("by", p.by.clone()),
        ("role", p.role.as_str().to_string()),
        ("kind", r.kind.as_str().to_string()),
        ("domain", r.domain.as_str().to_string()),
        ("from", text(&r.filter.from)),
        ("to", text(&r.filter.to)),
        ("source", text(&r.filter.source)),
        ("severity", text(&r.filter.severity)),
        ("connector", text(&r.filter.connector)),
        ("platform", text(&r.filter.platform)),
        ("band", text(&r.filter.band)),
        ("full_matrix", flag(r.full_matrix)),
        ("tactic", text(&r.tactic)),
        ("technique", text(&r.technique)),
        ("redact_host", flag(r.redaction.host)),
        ("redact_user", flag(r.redaction.user)),
        ("redact_alert_id", flag(r.redaction.alert_id)),
        ("expires", p.expires.to_string()),
    ]
}

/// The exact bytes signed: a versioned JSON array of every field in fixed
/// order, so no value can bleed into another whatever it contains.
fn canonical(p: &SignedParams) -> String {
    let mut items = vec![("v", "nexus-attack-export-1".to_string())];
    items.extend(fields(p));
    serde_json::to_string(&items).unwrap_or_default()
}

/// The hex HMAC-SHA-256 of a URL's parameters.
pub fn signature(key: &ExportKey, params: &SignedParams) -> String {
    let mut mac = key.mac();
    mac.update(canonical(params).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The relative download URL of signed parameters.
pub fn download_url(key: &ExportKey, params: &SignedParams) -> String {
    let query: Vec<String> = fields(params)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(&v)))
        .chain([format!("sig={}", signature(key, params))])
        .collect();
    format!("{DOWNLOAD_PATH}?{}", query.join("&"))
}

/// Reads and verifies a download URL's query pairs at `now` (Unix
/// seconds). The signature is checked before anything else is trusted and
/// in constant time; expiry is checked only on a genuine URL, so a
/// tampered expiry reads as invalid, not expired.
pub fn verify(
    key: &ExportKey,
    query: &[(String, String)],
    now: i64,
) -> Result<SignedParams, ExportUrlError> {
    let invalid = |why: String| ExportUrlError::Invalid(why);
    const NAMES: [&str; 20] = [
        "org",
        "by",
        "role",
        "kind",
        "domain",
        "from",
        "to",
        "source",
        "severity",
        "connector",
        "platform",
        "band",
        "full_matrix",
        "tactic",
        "technique",
        "redact_host",
        "redact_user",
        "redact_alert_id",
        "expires",
        "sig",
    ];
    let mut values: std::collections::HashMap<&str, &str> = Default::default();
    for (name, value) in query {
        let Some(known) = NAMES.iter().find(|n| **n == name) else {
            return Err(invalid(format!(
                "unknown parameter `{}`",
                crate::echo(name)
            )));
        };
        if values.insert(known, value.as_str()).is_some() {
            return Err(invalid(format!("parameter `{known}` given twice")));
        }
    }
    let text = |name: &str| values.get(name).map(|v| v.to_string()).unwrap_or_default();
    let optional = |name: &str| Some(text(name)).filter(|v| !v.is_empty());
    let flag = |name: &str| match values.get(name).copied() {
        None => Ok(false),
        Some("1") => Ok(true),
        Some(_) => Err(invalid(format!("parameter `{name}` must be 1 or absent"))),
    };
    let required = |name: &str| optional(name).ok_or_else(|| invalid(format!("`{name}` missing")));

    let sig = hex::decode(required("sig")?).map_err(|_| invalid("`sig` is not hex".into()))?;
    let params = SignedParams {
        org: OrgId::from(required("org")?.as_str()),
        by: required("by")?,
        role: required("role")?
            .parse()
            .map_err(|_| invalid("`role` names no role".into()))?,
        request: ExportRequest {
            kind: required("kind")?
                .parse()
                .map_err(|_| invalid("`kind` names no export".into()))?,
            domain: required("domain")?
                .parse()
                .map_err(|_| invalid("`domain` names no domain".into()))?,
            filter: FilterInput {
                from: optional("from"),
                to: optional("to"),
                source: optional("source"),
                severity: optional("severity"),
                connector: optional("connector"),
                platform: optional("platform"),
                band: optional("band"),
            },
            full_matrix: flag("full_matrix")?,
            tactic: optional("tactic"),
            technique: optional("technique"),
            redaction: RedactionOptions {
                host: flag("redact_host")?,
                user: flag("redact_user")?,
                alert_id: flag("redact_alert_id")?,
            },
        },
        expires: required("expires")?
            .parse()
            .map_err(|_| invalid("`expires` is not a Unix time".into()))?,
    };

    let mut mac = key.mac();
    mac.update(canonical(&params).as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig)
        .map_err(|_| invalid("the signature does not match".into()))?;
    if now >= params.expires {
        let at = DateTime::from_timestamp(params.expires, 0).unwrap_or_default();
        return Err(ExportUrlError::Expired(at));
    }
    Ok(params)
}

/// The text of an evidence item worth a CSV cell.
fn evidence_text(evidence: &[Value]) -> String {
    evidence
        .iter()
        .filter_map(|e| e.get("matched").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("; ")
}

impl App {
    /// Signs a download URL for an export of the caller's org, valid for
    /// `ttl`, and audits the signing (signer, org, scope, redaction,
    /// expiry; never the signature).
    pub async fn sign_export(
        &self,
        actor: &Actor,
        org: &str,
        request: &ExportRequest,
        key: &ExportKey,
        ttl: Duration,
    ) -> Result<SignedExport> {
        self.authorize(actor, Action::MatrixExport, ("export", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        request.check()?;
        // A URL that could never download is refused now, not at download.
        if let (Some(tactic), Some(technique)) = (&request.tactic, &request.technique) {
            let release = self.matrix_release(request.domain).await?;
            if release.tactic(tactic.trim()).is_none() {
                return Err(ServiceError::InvalidInput {
                    field: "tactic".into(),
                    message: format!("`{tactic}` is not a tactic of {}", release.version),
                });
            }
            let technique = technique.trim().to_ascii_uppercase();
            if !release.techniques.iter().any(|t| t.id == technique) {
                return Err(ServiceError::InvalidInput {
                    field: "technique".into(),
                    message: format!("`{technique}` is not a technique of {}", release.version),
                });
            }
        }

        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|e| ServiceError::Internal(format!("export URL lifetime: {e}")))?;
        let expires_at = store::now() + ttl;
        let params = SignedParams {
            org: scope.org().clone(),
            by: actor.name.clone(),
            role: actor.role,
            request: request.clone(),
            expires: expires_at.timestamp(),
        };
        let url = download_url(key, &params);
        let expires_at = DateTime::from_timestamp(params.expires, 0).unwrap_or(expires_at);

        let mut tx = self.store.begin_in(&scope).await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "export_sign",
            ("export", scope.org().as_str()),
            json!({
                "user": actor.name,
                "org": scope.org(),
                "scope": request.audit_scope(),
                "redaction": request.redaction,
                "expires_at": expires_at,
            }),
        ))
        .await?;
        tx.commit().await?;
        Ok(SignedExport {
            url,
            expires_at,
            kind: request.kind,
        })
    }

    /// Whether the signer of a verified URL may still act: a URL signed
    /// through a token stops working once that token is revoked, before its
    /// expiry.
    pub async fn export_signer_active(&self, params: &SignedParams) -> Result<bool> {
        let Some(id) = params.by.strip_prefix("token:") else {
            return Ok(true);
        };
        let token = self.store.token(&store::TokenId(id.to_string())).await?;
        Ok(token.is_some_and(|t| t.revoked_at.is_none() && t.org_id == params.org))
    }

    /// The export a verified URL names, acting as its signer in its org;
    /// audits the download with the signer, org, scope and redaction.
    pub async fn signed_export(&self, params: &SignedParams) -> Result<ExportFile> {
        let org = self
            .store
            .org(&params.org)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "org",
                id: params.org.to_string(),
            })?;
        let actor = Actor {
            name: params.by.clone(),
            org: Some(org.id.clone()),
            role: params.role,
        };
        let scope = store::OrgScope::new(org.id.clone());
        let expires_at = DateTime::from_timestamp(params.expires, 0);
        self.audit_outcome(
            &actor,
            "export_download",
            ("export", org.id.as_str()),
            store::Outcome::Ok,
            json!({
                "signed_by": params.by,
                "org": scope.org(),
                "scope": params.request.audit_scope(),
                "redaction": params.request.redaction,
                "expires_at": expires_at,
                "via": "signed_url",
            }),
        )
        .await?;
        self.export_file(&actor, &org.name, &params.request).await
    }

    /// One export of `org` as a file.
    pub async fn export_file(
        &self,
        actor: &Actor,
        org: &str,
        request: &ExportRequest,
    ) -> Result<ExportFile> {
        let filter = request.check()?;
        let stem = format!("nexus-attack-{org}-{}", request.domain.as_str());
        match request.kind {
            ExportKind::Navigator => {
                let layer = self
                    .export_navigator(actor, org, request.domain, filter, request.full_matrix)
                    .await?;
                let body = serde_json::to_string_pretty(&layer)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                Ok(ExportFile {
                    content_type: "application/json",
                    file_name: format!("{stem}.json"),
                    body,
                })
            }
            ExportKind::MatrixCsv => {
                let body = self
                    .export_csv(
                        actor,
                        org,
                        request.domain,
                        filter,
                        &request.redaction.redaction(),
                    )
                    .await?;
                Ok(ExportFile {
                    content_type: "text/csv; charset=utf-8",
                    file_name: format!("{stem}.csv"),
                    body,
                })
            }
            ExportKind::DrilldownCsv => {
                let body = self
                    .export_drilldown_csv(
                        actor,
                        org,
                        request.domain,
                        request.tactic.as_deref().unwrap_or(""),
                        request.technique.as_deref().unwrap_or(""),
                        filter,
                        request.redaction,
                    )
                    .await?;
                Ok(ExportFile {
                    content_type: "text/csv; charset=utf-8",
                    file_name: format!("{stem}-drilldown.csv"),
                    body,
                })
            }
        }
    }

    /// The alerts behind one cell as CSV (one row per mapping), with host,
    /// user and alert identifiers hidden as asked, audited like every
    /// export. A hidden value is also blanked where it appears in the
    /// evidence text, which quotes alert fields.
    #[allow(clippy::too_many_arguments)]
    pub async fn export_drilldown_csv(
        &self,
        actor: &Actor,
        org: &str,
        domain: Domain,
        tactic: &str,
        technique: &str,
        filter: MatrixFilter,
        redaction: RedactionOptions,
    ) -> Result<String> {
        self.authorize(actor, Action::MatrixExport, ("matrix_export", org))
            .await?;
        let scope = self.scope(actor, org).await?;

        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .matrix_drilldown(
                    actor,
                    org,
                    domain,
                    tactic,
                    technique,
                    filter.clone(),
                    cursor.as_deref(),
                    500,
                )
                .await?;
            for alert in &page.alerts {
                let hidden: Vec<&str> = [
                    (redaction.host, alert.host.as_deref()),
                    (redaction.user, alert.user.as_deref()),
                    (redaction.alert_id, Some(alert.source_uid.as_str())),
                    (redaction.alert_id, Some(alert.alert_id.as_str())),
                ]
                .into_iter()
                .filter_map(|(hide, value)| value.filter(|v| hide && !v.trim().is_empty()))
                .collect();
                for m in &alert.mappings {
                    let mut explanation = evidence_text(&m.evidence);
                    for value in &hidden {
                        explanation = explanation.replace(value, "redacted");
                    }
                    rows.push(DrilldownRow {
                        alert_id: alert.source_uid.clone(),
                        observed_at: alert.observed_at.to_rfc3339(),
                        host: alert.host.clone(),
                        user: alert.user.clone(),
                        connector: alert.connector.clone(),
                        technique: m.technique.clone(),
                        tactic: m.tactic.clone(),
                        source: Source::from_str(&m.source).map_err(|_| {
                            ServiceError::Internal(format!("unknown source `{}`", m.source))
                        })?,
                        confidence: m.confidence,
                        band: serde_json::from_value::<Band>(json!(m.band.to_ascii_lowercase()))
                            .map_err(|_| {
                                ServiceError::Internal(format!("unknown band `{}`", m.band))
                            })?,
                        severity: Severity::from_word(&alert.severity),
                        explanation,
                    });
                }
            }
            cursor = page.next_cursor;
            if cursor.is_none() || rows.len() >= MAX_DRILLDOWN_ROWS {
                break;
            }
        }
        rows.truncate(MAX_DRILLDOWN_ROWS);
        let csv = views::drilldown_csv(&rows, &redaction.redaction())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;

        let mut tx = self.store.begin_in(&scope).await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "matrix_export",
            ("matrix", scope.org().as_str()),
            json!({
                "format": "drilldown_csv",
                "user": actor.name,
                "filter": filter,
                "tactic": tactic,
                "technique": technique,
                "rows": rows.len(),
                "redaction": redaction,
            }),
        ))
        .await?;
        tx.commit().await?;
        Ok(csv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(expires: i64) -> SignedParams {
        SignedParams {
            org: OrgId::from("org-1"),
            by: "token:abc".into(),
            role: Role::Analyst,
            request: ExportRequest {
                kind: ExportKind::DrilldownCsv,
                domain: Domain::Enterprise,
                filter: FilterInput {
                    source: Some("rule".into()),
                    ..FilterInput::default()
                },
                full_matrix: false,
                tactic: Some("TA0002".into()),
                technique: Some("T1059".into()),
                redaction: RedactionOptions {
                    host: true,
                    user: false,
                    alert_id: true,
                },
            },
            expires,
        }
    }

    /// The query pairs of a URL, decoded as a server would.
    fn pairs(url: &str) -> Vec<(String, String)> {
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let mut bytes = Vec::new();
                let raw = v.as_bytes();
                let mut i = 0;
                while i < raw.len() {
                    if raw[i] == b'%' {
                        bytes.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        bytes.push(raw[i]);
                        i += 1;
                    }
                }
                (k.to_string(), String::from_utf8(bytes).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_genuine_url_verifies_to_what_was_signed() {
        let key = ExportKey::random();
        let signed = params(2_000);
        let url = download_url(&key, &signed);
        assert!(url.starts_with("/api/v1/exports/download?org=org-1&by=token%3Aabc&role=analyst"));
        assert_eq!(verify(&key, &pairs(&url), 1_999), Ok(signed));
    }

    #[test]
    fn an_expired_url_is_refused_as_expired() {
        let key = ExportKey::random();
        let url = download_url(&key, &params(1_000));
        let error = verify(&key, &pairs(&url), 1_000).unwrap_err();
        assert_eq!(error.code(), "export_url_expired");
        assert_eq!(
            error,
            ExportUrlError::Expired(DateTime::from_timestamp(1_000, 0).unwrap())
        );
    }

    #[test]
    fn any_change_voids_the_signature() {
        let key = ExportKey::random();
        let genuine = pairs(&download_url(&key, &params(5_000)));
        let changes: [(&str, &str); 7] = [
            ("org", "org-2"),
            ("role", "admin"),
            ("source", "ai"),
            ("technique", "T1003"),
            ("redact_host", "0"),
            ("expires", "9999"),
            ("sig", "00"),
        ];
        for (name, value) in changes {
            let tampered: Vec<(String, String)> = genuine
                .iter()
                .map(|(k, v)| {
                    let v = if k == name {
                        value.to_string()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect();
            let error = verify(&key, &tampered, 0).unwrap_err();
            assert_eq!(error.code(), "export_url_invalid", "{name}");
        }
        // Dropping a redaction flag, adding a filter, or repeating one.
        let dropped: Vec<_> = genuine
            .iter()
            .filter(|(k, _)| k != "redact_alert_id")
            .cloned()
            .collect();
        assert_eq!(
            verify(&key, &dropped, 0).unwrap_err().code(),
            "export_url_invalid"
        );
        let mut added = genuine.clone();
        added.push(("severity".into(), "high".into()));
        assert_eq!(
            verify(&key, &added, 0).unwrap_err().code(),
            "export_url_invalid"
        );
        let mut repeated = genuine.clone();
        repeated.push(("org".into(), "org-1".into()));
        assert_eq!(
            verify(&key, &repeated, 0).unwrap_err().code(),
            "export_url_invalid"
        );
        // Another key's signature.
        assert_eq!(
            verify(&ExportKey::random(), &genuine, 0)
                .unwrap_err()
                .code(),
            "export_url_invalid"
        );
    }

    #[test]
    fn keys_never_print_and_short_ones_are_refused() {
        let key = ExportKey::from_secret("0123456789abcdef0123456789abcdef").unwrap();
        assert!(!format!("{key:?}").contains("0123"));
        assert!(!key.is_ephemeral());
        assert!(ExportKey::random().is_ephemeral());
        assert!(ExportKey::from_secret("short").is_err());
    }
}
