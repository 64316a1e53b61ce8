//! CSV exports of a matrix view and of drilldown rows, with redaction of
//! host, user and alert identifiers.
//!
//! Quoting is the `csv` crate's (RFC 4180: fields with commas, quotes or
//! newlines are quoted, quotes doubled). Text that a spreadsheet would run
//! as a formula (starting with `=`, `+`, `-`, `@`, tab or carriage return)
//! gets a leading `'`: alert fields come from outside and an export must not
//! turn into code when an analyst opens it.

use hmac::{Hmac, Mac};
use mapping::{Band, Severity, Source};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::matrix::MatrixView;

/// Why a CSV export failed.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The CSV writer failed.
    #[error("writing CSV failed: {0}")]
    Write(#[from] csv::Error),
    /// Flushing the CSV buffer failed.
    #[error("flushing CSV failed: {0}")]
    Flush(String),
    /// The output was not UTF-8 (cannot happen with UTF-8 input).
    #[error("CSV output is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// One alert behind a matrix cell, as a drilldown list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrilldownRow {
    /// The alert's ID.
    pub alert_id: String,
    /// When the alert was observed (RFC 3339).
    pub observed_at: String,
    /// The host the alert names.
    pub host: Option<String>,
    /// The user the alert names.
    pub user: Option<String>,
    /// The alert product.
    pub connector: String,
    /// Technique ATT&CK ID.
    pub technique: String,
    /// Tactic ATT&CK ID, when the mapping names one.
    pub tactic: Option<String>,
    /// Who or what mapped.
    pub source: Source,
    /// Mapping confidence, 0 to 1.
    pub confidence: f64,
    /// Confidence band.
    pub band: Band,
    /// Alert severity.
    pub severity: Severity,
    /// Why the mapping was made.
    pub explanation: String,
}

/// Which identifiers a drilldown export hides, and how.
///
/// With a `key`, a hidden value becomes a stable keyed hash (HMAC-SHA-256,
/// first 16 hex digits, `h-` prefix): the same host gives the same token
/// across rows and exports with the same key, so analysts can still group
/// by it, while the name cannot be recovered without the key. Without a key
/// it becomes `redacted`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    /// Hide host names.
    pub host: bool,
    /// Hide user names.
    pub user: bool,
    /// Hide alert IDs.
    pub alert_id: bool,
    /// Key of the stable hash; `None` writes `redacted`.
    #[serde(skip_serializing)]
    pub key: Option<Vec<u8>>,
}

// The key is a secret: it must never reach a log through `{:?}`.
impl std::fmt::Debug for Redaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redaction")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("alert_id", &self.alert_id)
            .field("key", &self.key.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Redaction {
    /// The value to write for `field` (`host`, `user`, `alert_id`).
    fn apply(&self, hide: bool, field: &str, value: &str) -> String {
        if !hide {
            return value.to_string();
        }
        let Some(key) = &self.key else {
            return "redacted".to_string();
        };
        // HMAC accepts keys of any length, so this cannot fail; the field
        // name separates domains so a host and a user with the same name
        // get different tokens.
        let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => return "redacted".to_string(),
        };
        mac.update(field.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("h-{}", &hex::encode(digest)[..16])
    }
}

/// Prefixes text a spreadsheet would evaluate as a formula.
fn neutralize(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn finish(writer: csv::Writer<Vec<u8>>) -> Result<String, CsvError> {
    let bytes = writer
        .into_inner()
        .map_err(|e| CsvError::Flush(e.error().to_string()))?;
    Ok(String::from_utf8(bytes)?)
}

/// The view's cells as CSV, one row per cell in matrix order, with a
/// header row.
pub fn view_csv(view: &MatrixView) -> Result<String, CsvError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "tactic",
        "tactic_name",
        "technique",
        "technique_name",
        "parent",
        "count",
        "intensity",
        "low_confidence",
        "low_confidence_share",
        "anomaly_score",
    ])?;
    for cell in &view.cells {
        writer.write_record([
            neutralize(&cell.tactic),
            neutralize(&cell.tactic_name),
            neutralize(&cell.technique),
            neutralize(&cell.technique_name),
            cell.parent.as_deref().map(neutralize).unwrap_or_default(),
            cell.count.to_string(),
            cell.intensity.to_string(),
            cell.low_confidence.to_string(),
            cell.low_confidence_share.to_string(),
            cell.anomaly
                .as_ref()
                .map(|a| a.score.to_string())
                .unwrap_or_default(),
        ])?;
    }
    finish(writer)
}

/// Drilldown rows as CSV with a header row, identifiers hidden as
/// `redaction` says.
pub fn drilldown_csv(rows: &[DrilldownRow], redaction: &Redaction) -> Result<String, CsvError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "alert_id",
        "observed_at",
        "host",
        "user",
        "connector",
        "technique",
        "tactic",
        "source",
        "confidence",
        "band",
        "severity",
        "explanation",
    ])?;
    for row in rows {
        let optional = |hide: bool, field: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| neutralize(&redaction.apply(hide, field, v)))
                .unwrap_or_default()
        };
        writer.write_record([
            neutralize(&redaction.apply(redaction.alert_id, "alert_id", &row.alert_id)),
            neutralize(&row.observed_at),
            optional(redaction.host, "host", &row.host),
            optional(redaction.user, "user", &row.user),
            neutralize(&row.connector),
            neutralize(&row.technique),
            row.tactic.as_deref().map(neutralize).unwrap_or_default(),
            row.source.as_str().to_string(),
            row.confidence.to_string(),
            row.band.as_str().to_string(),
            row.severity.as_str().to_string(),
            neutralize(&row.explanation),
        ])?;
    }
    finish(writer)
}
