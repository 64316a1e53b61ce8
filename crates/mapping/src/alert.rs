//! Alert decoding: OCSF Detection Findings, Elastic/ECS alerts and the
//! product's own alert JSON become one [`NormalizedAlert`].
//!
//! # The native alert format
//!
//! ```json
//! {
//!   "schema": "nexus-attack.alert/1",
//!   "uid": "edr-123",
//!   "time": "2026-01-02T03:04:05Z",
//!   "title": "Encoded PowerShell",
//!   "description": "powershell -enc ...",
//!   "severity": "high",
//!   "product": "ExampleEDR",
//!   "connector": "edr-eu",
//!   "host": "ws-01",
//!   "user": "alice",
//!   "rule_uid": "edr-rule-42",
//!   "fields": { "process": { "cmd_line": "powershell -enc ..." } },
//!   "techniques": [ { "id": "T1059.001", "tactic": "execution" } ]
//! }
//! ```
//!
//! `uid` and `title` are required; `schema` is optional (it makes detection
//! explicit); `fields` is flattened into the field map at its own paths;
//! `techniques` are vendor-declared.
//!
//! # Field map
//!
//! Every scalar leaf of the alert (of `fields` for native alerts) is kept
//! under its dotted path; arrays contribute all their elements under one path
//! (no indices), and dotted keys (`"kibana.alert.rule.name"`) land on the same
//! path as their nested form. Rules also see the normalized attributes as
//! `alert.*` fields (see [`NormalizedAlert::field`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use taxonomy::TechniqueId;

/// The wire format an alert came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    /// OCSF Detection Finding (class 2004) or legacy Security Finding (2001).
    Ocsf,
    /// Elastic Common Schema / Kibana alert document.
    Ecs,
    /// The product's own alert JSON.
    Native,
}

/// Normalized severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Not given or not understood.
    Unknown,
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
    /// Fatal (OCSF 6).
    Fatal,
}

impl Severity {
    /// The severity as the API spells it (`high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
            Severity::Fatal => "fatal",
        }
    }

    /// The weight the heatmap's severity weighting uses: OCSF's scale,
    /// Informational 1 to Fatal 6, with Unknown counted like Informational so
    /// that an unrated alert still counts.
    pub fn weight(self) -> f64 {
        match self {
            Severity::Unknown | Severity::Informational => 1.0,
            Severity::Low => 2.0,
            Severity::Medium => 3.0,
            Severity::High => 4.0,
            Severity::Critical => 5.0,
            Severity::Fatal => 6.0,
        }
    }

    /// From an OCSF `severity_id`.
    pub fn from_ocsf_id(id: i64) -> Self {
        match id {
            1 => Severity::Informational,
            2 => Severity::Low,
            3 => Severity::Medium,
            4 => Severity::High,
            5 => Severity::Critical,
            6 => Severity::Fatal,
            _ => Severity::Unknown,
        }
    }

    /// From a word (`high`, `Critical`, `info`, `moderate`).
    pub fn from_word(word: &str) -> Self {
        match word.trim().to_ascii_lowercase().as_str() {
            "informational" | "info" | "information" => Severity::Informational,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            "fatal" => Severity::Fatal,
            _ => Severity::Unknown,
        }
    }

    /// From a 0-100 risk score, with Elastic's ranges (low 0-21, medium
    /// 22-47, high 48-73, critical 74-100).
    pub fn from_risk_score(score: f64) -> Self {
        match score {
            s if !(0.0..=100.0).contains(&s) => Severity::Unknown,
            s if s < 22.0 => Severity::Low,
            s if s < 48.0 => Severity::Medium,
            s if s < 74.0 => Severity::High,
            _ => Severity::Critical,
        }
    }
}

/// A scalar value of the field map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
}

impl FieldValue {
    /// The value as text (numbers and booleans in their JSON spelling).
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            FieldValue::Text(s) => std::borrow::Cow::Borrowed(s),
            FieldValue::Number(n) => std::borrow::Cow::Owned(format_number(*n)),
            FieldValue::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    /// The value as a number, parsing text when it holds one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            FieldValue::Number(n) => Some(*n),
            FieldValue::Text(s) => s.trim().parse().ok(),
            FieldValue::Bool(_) => None,
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Dotted path to every scalar value found there.
pub type FieldMap = BTreeMap<String, Vec<FieldValue>>;

/// A technique the alert itself declares (OCSF `attacks`, ECS `threat`,
/// native `techniques`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredTechnique {
    /// The technique or sub-technique.
    pub technique: TechniqueId,
    /// Tactics the alert names beside it (ids, shortnames or names, as given).
    pub tactics: Vec<String>,
    /// Where in the alert it was declared (`finding_info.attacks`).
    pub field: String,
}

/// An alert in the product's terms, whatever format it came in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalizedAlert {
    /// The format it came in.
    pub format: AlertFormat,
    /// The alert's own id: OCSF `finding_info.uid`, ECS `event.id` or
    /// `kibana.alert.uuid`, native `uid`.
    pub source_uid: String,
    /// True when the alert carried no id and `source_uid` is a SHA-256 of its
    /// content (so re-ingesting the same document still deduplicates).
    pub source_uid_derived: bool,
    /// When the activity happened.
    pub time: Option<DateTime<Utc>>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Normalized severity.
    pub severity: Severity,
    /// The product that raised it (OCSF `metadata.product.name`).
    pub product: Option<String>,
    /// The product's vendor.
    pub vendor: Option<String>,
    /// The connector it came through, when the format says.
    pub connector: Option<String>,
    /// The detection rule that raised it (OCSF `finding_info.analytic.uid`,
    /// ECS `kibana.alert.rule.rule_id` / `rule.id`, native `rule_uid`).
    pub analytic_uid: Option<String>,
    /// That rule's name.
    pub analytic_name: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// User name.
    pub user: Option<String>,
    /// Every scalar of the alert by dotted path.
    pub fields: FieldMap,
    /// Paths of a [`FieldSelection::Only`] that hold an object or array with
    /// a value below it. The selection keeps no subtree, so without this a
    /// rule testing `exists` on an object would see it absent. A decoding of
    /// every field leaves it empty: `fields` has the values below the path.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub present: BTreeSet<String>,
    /// Techniques the alert declares itself.
    pub declared: Vec<DeclaredTechnique>,
    /// Declarations that could not be read (a malformed technique id), kept
    /// so they are reported rather than silently dropped.
    pub warnings: Vec<String>,
    /// The same malformed declarations, as the alert gave them, for the
    /// per-alert report of declarations not kept.
    #[serde(default)]
    pub malformed: Vec<MalformedDeclaration>,
}

/// A technique declaration whose id is not a technique id (`T1059-001`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedDeclaration {
    /// The value as the alert gave it.
    pub value: String,
    /// Where in the alert it was declared (`finding_info.attacks`).
    pub field: String,
}

/// The normalized attributes rules read as `alert.*` fields.
pub(crate) const ATTRIBUTES: [&str; 12] = [
    "source_uid",
    "title",
    "description",
    "severity",
    "product",
    "vendor",
    "connector",
    "analytic_uid",
    "analytic_name",
    "host",
    "user",
    "format",
];

/// A value seen by the rule language: a normalized attribute or raw fields.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef<'a> {
    /// No such field.
    Missing,
    /// A normalized attribute.
    One(std::borrow::Cow<'a, str>),
    /// Raw field values.
    Many(&'a [FieldValue]),
}

impl NormalizedAlert {
    /// True when `path` names a normalized attribute rather than a raw
    /// field (see [`NormalizedAlert::field`]).
    pub fn is_attribute(path: &str) -> bool {
        path.strip_prefix("alert.")
            .is_some_and(|attr| ATTRIBUTES.contains(&attr))
    }

    /// Resolves a rule field. `alert.source_uid`, `alert.title`,
    /// `alert.description`, `alert.severity`, `alert.product`, `alert.vendor`,
    /// `alert.connector`, `alert.analytic_uid`, `alert.analytic_name`,
    /// `alert.host`, `alert.user` and `alert.format` name the normalized
    /// attributes (the same whatever the format); any other path names raw
    /// fields.
    pub fn field(&self, path: &str) -> FieldRef<'_> {
        use std::borrow::Cow;
        fn opt(v: &Option<String>) -> FieldRef<'_> {
            v.as_deref()
                .map_or(FieldRef::Missing, |s| FieldRef::One(Cow::Borrowed(s)))
        }
        if let Some(attr) = path.strip_prefix("alert.") {
            match attr {
                "source_uid" => return FieldRef::One(Cow::Borrowed(&self.source_uid)),
                "title" => return FieldRef::One(Cow::Borrowed(&self.title)),
                "description" => return opt(&self.description),
                "severity" => return FieldRef::One(Cow::Borrowed(self.severity.as_str())),
                "product" => return opt(&self.product),
                "vendor" => return opt(&self.vendor),
                "connector" => return opt(&self.connector),
                "analytic_uid" => return opt(&self.analytic_uid),
                "analytic_name" => return opt(&self.analytic_name),
                "host" => return opt(&self.host),
                "user" => return opt(&self.user),
                "format" => {
                    let f = match self.format {
                        AlertFormat::Ocsf => "ocsf",
                        AlertFormat::Ecs => "ecs",
                        AlertFormat::Native => "native",
                    };
                    return FieldRef::One(Cow::Borrowed(f));
                }
                _ => {}
            }
        }
        match self.fields.get(path) {
            Some(values) if !values.is_empty() => FieldRef::Many(values),
            _ => FieldRef::Missing,
        }
    }

    /// True when the rule field `path` holds a value: a scalar, or an object
    /// or array with a value somewhere below it. JSON `null`, `{}`, `[]` and
    /// containers of nothing but those count as absent, as in Elasticsearch's
    /// `exists` query, which detection engineers already know.
    pub fn has(&self, path: &str) -> bool {
        if !matches!(self.field(path), FieldRef::Missing) || self.present.contains(path) {
            return true;
        }
        // A decoding of every field keeps the scalars below an object, and
        // their paths extend this one after a dot.
        let below = format!("{path}.");
        self.fields
            .range::<str, _>((
                std::ops::Bound::Included(below.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(p, _)| p.starts_with(&below))
            .any(|(_, values)| !values.is_empty())
    }
}

/// Why an alert could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("an alert must be a JSON object")]
    NotAnObject,
    /// No format recognised.
    #[error(
        "unrecognised alert format: expected OCSF (class_uid), Elastic/ECS (@timestamp, \
         event, threat or kibana.alert.*) or native (uid and title)"
    )]
    UnrecognizedFormat,
    /// An OCSF class other than a finding.
    #[error(
        "OCSF class_uid {0} is not supported (expected 2004 Detection Finding or 2001 Security \
         Finding)"
    )]
    UnsupportedClass(i64),
    /// A required field is missing.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type or value.
    #[error("field `{field}`: {message}")]
    BadField {
        /// The field path.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl DecodeError {
    /// A stable error code for APIs and CLI output.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Json(_) => "invalid_json",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::UnrecognizedFormat => "unrecognized_format",
            DecodeError::UnsupportedClass(_) => "unsupported_class",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::BadField { .. } => "bad_field",
        }
    }
}

/// Decodes one alert, detecting its format: `class_uid` means OCSF;
/// `@timestamp`, `ecs`, `event`, `threat`, `kibana` or a `kibana.alert.*`
/// key means ECS; `schema` = `nexus-attack.alert/1`, or `uid` with `title`,
/// means native.
pub fn decode_alert(json: &Value) -> Result<NormalizedAlert, DecodeError> {
    decode_alert_keeping(json, &FieldSelection::All)
}

/// [`decode_alert`] keeping only the raw fields `fields` selects in the
/// field map; everything else (format, attributes, declarations, errors) is
/// the same.
pub fn decode_alert_keeping(
    json: &Value,
    fields: &FieldSelection,
) -> Result<NormalizedAlert, DecodeError> {
    let obj = json.as_object().ok_or(DecodeError::NotAnObject)?;
    let format = detect_format(obj).ok_or(DecodeError::UnrecognizedFormat)?;
    decode_as(json, format, fields)
}

/// Decodes one alert in a format the caller knows.
pub fn decode_alert_as(json: &Value, format: AlertFormat) -> Result<NormalizedAlert, DecodeError> {
    decode_as(json, format, &FieldSelection::All)
}

fn decode_as(
    json: &Value,
    format: AlertFormat,
    fields: &FieldSelection,
) -> Result<NormalizedAlert, DecodeError> {
    if !json.is_object() {
        return Err(DecodeError::NotAnObject);
    }
    match format {
        AlertFormat::Ocsf => decode_ocsf(json, fields),
        AlertFormat::Ecs => decode_ecs(json, fields),
        AlertFormat::Native => decode_native(json, fields),
    }
}

/// Which raw fields a decoding keeps in [`NormalizedAlert::fields`].
///
/// Mapping at ingestion only needs the paths its rules test; building the
/// map of every scalar of every alert, to drop it a moment later, was a
/// fifth of the time spent decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldSelection {
    /// Every scalar (what storage, staleness checks and the suggester see).
    #[default]
    All,
    /// Only these dotted paths.
    Only(BTreeSet<String>),
}

impl FieldSelection {
    /// True when `path` is kept.
    fn keeps(&self, path: &str) -> bool {
        match self {
            FieldSelection::All => true,
            FieldSelection::Only(paths) => paths.contains(path),
        }
    }

    /// True when `path` is one the selection names, so an object there is
    /// recorded as present (only a selection records presence; see
    /// [`NormalizedAlert::present`]).
    fn wants_presence(&self, path: &str) -> bool {
        match self {
            FieldSelection::All => false,
            FieldSelection::Only(paths) => paths.contains(path),
        }
    }

    /// True when a kept path is `prefix` or lies under it, so the subtree
    /// at `prefix` must be walked.
    fn reaches(&self, prefix: &str) -> bool {
        match self {
            FieldSelection::All => true,
            // An empty prefix is the root, or an empty key at the root,
            // which joins its children without a dot: anything may follow.
            FieldSelection::Only(_) if prefix.is_empty() => true,
            FieldSelection::Only(paths) => paths
                .range::<str, _>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|p| p.starts_with(prefix))
                .any(|p| p.len() == prefix.len() || p.as_bytes()[prefix.len()] == b'.'),
        }
    }
}

/// Parses and decodes one alert from JSON text.
pub fn decode_alert_str(text: &str) -> Result<NormalizedAlert, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    decode_alert(&value)
}

fn detect_format(obj: &Map<String, Value>) -> Option<AlertFormat> {
    if obj.get("schema").and_then(Value::as_str) == Some(NATIVE_SCHEMA) {
        return Some(AlertFormat::Native);
    }
    if obj.contains_key("class_uid") {
        return Some(AlertFormat::Ocsf);
    }
    let ecs_marker = ["@timestamp", "ecs", "event", "threat", "kibana"]
        .iter()
        .any(|k| obj.contains_key(*k))
        || obj.keys().any(|k| {
            k.starts_with("kibana.alert.") || k.starts_with("threat.") || k.starts_with("event.")
        });
    if ecs_marker {
        return Some(AlertFormat::Ecs);
    }
    if obj.contains_key("uid") && obj.contains_key("title") {
        return Some(AlertFormat::Native);
    }
    None
}

/// The `schema` value that marks a native alert.
pub const NATIVE_SCHEMA: &str = "nexus-attack.alert/1";

// ---------------------------------------------------------------- lookups

/// Every value at `path`, where each step may be a nested key or a dotted
/// key (`{"kibana.alert": {"rule.name": ..}}`), fanning out over arrays.
fn get_all<'v>(value: &'v Value, path: &str) -> Vec<&'v Value> {
    let mut out = Vec::new();
    collect(value, path, &mut out);
    out
}

fn collect<'v>(value: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect(v, path, out)),
        _ if path.is_empty() => out.push(value),
        Value::Object(map) => {
            // Longest dotted key first, then shorter ones: both forms may
            // coexist. The keys are prefixes of `path` ending at a dot, so
            // slicing the path avoids building strings.
            let whole = std::iter::once(path.len());
            let dots = path.rmatch_indices('.').map(|(i, _)| i);
            for end in whole.chain(dots) {
                if let Some(child) = map.get(&path[..end]) {
                    let rest = path.get(end + 1..).unwrap_or("");
                    collect(child, rest, out);
                }
            }
        }
        _ => {}
    }
}

/// The first non-empty string (or number, as text) at any of `paths`, with
/// any NUL character replaced (see [`without_nul`]).
fn first_text(value: &Value, paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| {
        get_all(value, p).into_iter().find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(without_nul(s)),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    })
}

/// The source uid at the first of `paths` that holds one, read as
/// [`first_text`] reads; a number whose text JSON parsing could not keep
/// is refused instead (see [`exact_number_text`]).
fn first_uid(value: &Value, paths: &[&str]) -> Result<Option<String>, DecodeError> {
    for path in paths {
        for v in get_all(value, path) {
            match v {
                Value::String(s) if !s.trim().is_empty() => return Ok(Some(without_nul(s))),
                Value::Number(n) => {
                    return match exact_number_text(n) {
                        Some(text) => Ok(Some(text)),
                        None => Err(DecodeError::BadField {
                            field: (*path).to_string(),
                            message: format!(
                                "the number {n} cannot be read exactly as an id (beyond \
                                 64-bit integers a JSON number is rounded); send the uid as a \
                                 JSON string, \"12345678901234567890123\""
                            ),
                        }),
                    };
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

/// The text of a number as sent, when parsing kept it: every 64-bit
/// integer, and a number read as a float below 2^53 in magnitude, whose
/// shortest text round-trips. A larger float is an integer written beyond
/// 64 bits (`12345678901234567890123`) or with an exponent, and its text
/// would be the rounded `1.2345678901234568e22`: two different ids would
/// become one, and the second alert an update of the first. Reading every
/// number exactly would take serde_json's `arbitrary_precision`, which
/// changes how every JSON number in the workspace is held.
fn exact_number_text(n: &serde_json::Number) -> Option<String> {
    const EXACT_FLOAT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.is_i64() || n.is_u64() {
        return Some(n.to_string());
    }
    let x = n.as_f64()?;
    (x.is_finite() && x.abs() < EXACT_FLOAT).then(|| n.to_string())
}

/// `s` with each NUL character replaced by U+FFFD. JSON may carry NUL
/// (`\u0000`) but PostgreSQL text cannot, so an alert's title, host or uid
/// holding one would fail its whole batch there while SQLite took it. The
/// raw document keeps the original, escaped.
pub fn without_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

fn all_text(value: &Value, path: &str) -> Vec<String> {
    get_all(value, path)
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(without_nul(s.trim())),
            _ => None,
        })
        .collect()
}

/// The technique ids at `path` as written: texts, and every other shape
/// but null as its JSON text. A number (`"uid": 1105`), a boolean or an
/// object (`"uid": {"id": "T1059"}`, alone or inside a list) is no
/// technique id, but dropping it would hide the declaration; kept as text
/// it is reported as malformed. A list is read item by item (see
/// [`get_all`]), so a list of ids declares each of them.
fn all_ids(value: &Value, path: &str) -> Vec<String> {
    get_all(value, path)
        .into_iter()
        .filter_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(without_nul(s.trim())),
            Value::String(_) | Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            // Compact JSON escapes a NUL, so the text is safe to store.
            Value::Object(_) | Value::Array(_) => Some(v.to_string()),
        })
        .collect()
}

fn parse_time(value: &Value, paths: &[&str]) -> Result<Option<DateTime<Utc>>, DecodeError> {
    for path in paths {
        for v in get_all(value, path) {
            match v {
                Value::String(s) => {
                    let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
                        DecodeError::BadField {
                            field: path.to_string(),
                            message: format!("`{s}` is not an RFC 3339 time: {e}"),
                        }
                    })?;
                    return Ok(Some(t.with_timezone(&Utc)));
                }
                // OCSF `time` is milliseconds since the epoch.
                Value::Number(n) => {
                    let ms = n.as_i64().ok_or_else(|| DecodeError::BadField {
                        field: path.to_string(),
                        message: format!("{n} is not an integer epoch time in milliseconds"),
                    })?;
                    let t = Utc.timestamp_millis_opt(ms).single().ok_or_else(|| {
                        DecodeError::BadField {
                            field: path.to_string(),
                            message: format!("{ms} ms is out of range"),
                        }
                    })?;
                    return Ok(Some(t));
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

fn derived_uid(value: &Value) -> String {
    let text = value.to_string();
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// True when a non-null scalar lies at or below `value`; stops at the first.
fn has_value(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Object(map) => map.values().any(has_value),
        Value::Array(items) => items.iter().any(has_value),
        _ => true,
    }
}

/// What flattening an alert keeps: the scalars, and the selected paths
/// found holding an object with a value (see [`NormalizedAlert::present`]).
#[derive(Default)]
struct Flat {
    fields: FieldMap,
    present: BTreeSet<String>,
}

/// Flattens every selected scalar under `value` into `out`, under `prefix`.
fn flatten_into(value: &Value, prefix: &mut String, out: &mut Flat, keep: &FieldSelection) {
    match value {
        Value::Object(map) => {
            // Only the presence of the object is recorded, not its subtree:
            // a rule testing `exists` needs no more.
            if keep.wants_presence(prefix)
                && !out.present.contains(prefix.as_str())
                && has_value(value)
            {
                out.present.insert(prefix.clone());
            }
            for (k, v) in map {
                let len = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                let start = prefix.len();
                prefix.push_str(k);
                // A dotted key (`"kibana.alert.rule.name"`) passes the
                // paths it spells without visiting them as objects.
                if k.contains('.') {
                    for (i, _) in k.match_indices('.') {
                        let passed = &prefix[..start + i];
                        if keep.wants_presence(passed)
                            && !out.present.contains(passed)
                            && has_value(v)
                        {
                            out.present.insert(passed.to_string());
                        }
                    }
                }
                if keep.reaches(prefix) {
                    flatten_into(v, prefix, out, keep);
                }
                prefix.truncate(len);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| flatten_into(v, prefix, out, keep)),
        Value::Null => {}
        scalar => {
            if !keep.keeps(prefix) {
                return;
            }
            let fv = match scalar {
                Value::String(s) => FieldValue::Text(s.clone()),
                Value::Bool(b) => FieldValue::Bool(*b),
                Value::Number(n) => FieldValue::Number(n.as_f64().unwrap_or(f64::NAN)),
                _ => return,
            };
            if let Some(values) = out.fields.get_mut(prefix.as_str()) {
                values.push(fv);
            } else {
                out.fields.insert(prefix.clone(), vec![fv]);
            }
        }
    }
}

fn flatten(value: &Value, keep: &FieldSelection) -> Flat {
    let mut out = Flat::default();
    if keep != &FieldSelection::Only(BTreeSet::new()) {
        flatten_into(value, &mut String::new(), &mut out, keep);
    }
    out
}

/// Adds a declaration, or merges its tactics into an earlier one of the
/// same technique.
fn declare(
    declared: &mut Vec<DeclaredTechnique>,
    malformed: &mut Vec<MalformedDeclaration>,
    raw: &str,
    tactics: &[String],
    field: &str,
) {
    let technique = match TechniqueId::parse(raw) {
        Ok(t) => t,
        Err(_) => {
            let value = raw.to_string();
            if !malformed
                .iter()
                .any(|m| m.value == value && m.field == field)
            {
                malformed.push(MalformedDeclaration {
                    value,
                    field: field.to_string(),
                });
            }
            return;
        }
    };
    if let Some(existing) = declared.iter_mut().find(|d| d.technique == technique) {
        for t in tactics {
            if !existing.tactics.contains(t) {
                existing.tactics.push(t.clone());
            }
        }
        return;
    }
    declared.push(DeclaredTechnique {
        technique,
        tactics: tactics.to_vec(),
        field: field.to_string(),
    });
}

/// The decoding warnings of malformed declarations (`field: why`).
fn warnings_of(malformed: &[MalformedDeclaration]) -> Vec<String> {
    malformed
        .iter()
        .filter_map(|m| {
            let e = TechniqueId::parse(&m.value).err()?;
            Some(format!("{}: {e}", m.field))
        })
        .collect()
}

// ---------------------------------------------------------------- OCSF

fn decode_ocsf(v: &Value, keep: &FieldSelection) -> Result<NormalizedAlert, DecodeError> {
    let class_uid =
        v.get("class_uid")
            .and_then(Value::as_i64)
            .ok_or_else(|| DecodeError::BadField {
                field: "class_uid".into(),
                message: "must be an integer".into(),
            })?;
    // 2001 Security Finding is the pre-1.1 class with the same finding_info and attacks.
    if class_uid != 2004 && class_uid != 2001 {
        return Err(DecodeError::UnsupportedClass(class_uid));
    }

    let uid = first_uid(v, &["finding_info.uid", "metadata.uid"])?;
    let severity = match v.get("severity_id").and_then(Value::as_i64) {
        Some(id) if id != 0 && id != 99 => Severity::from_ocsf_id(id),
        _ => first_text(v, &["severity"]).map_or(Severity::Unknown, |s| Severity::from_word(&s)),
    };

    let mut declared = Vec::new();
    let mut malformed = Vec::new();
    for field in ["finding_info.attacks", "attacks"] {
        for attack in get_all(v, field) {
            let mut tactics = all_text(attack, "tactic.uid");
            tactics.extend(all_text(attack, "tactic.name"));
            // OCSF 1.0 `tactics` array.
            tactics.extend(all_text(attack, "tactics.uid"));
            tactics.extend(all_text(attack, "tactics.name"));
            tactics.dedup();
            for raw in all_ids(attack, "technique.uid") {
                declare(&mut declared, &mut malformed, &raw, &tactics, field);
            }
            for raw in all_ids(attack, "sub_technique.uid") {
                declare(&mut declared, &mut malformed, &raw, &tactics, field);
            }
        }
    }

    let flat = flatten(v, keep);
    Ok(NormalizedAlert {
        format: AlertFormat::Ocsf,
        source_uid_derived: uid.is_none(),
        source_uid: uid.unwrap_or_else(|| derived_uid(v)),
        time: parse_time(v, &["time", "time_dt"])?,
        title: first_text(
            v,
            &[
                "finding_info.title",
                "message",
                "finding_info.analytic.name",
            ],
        )
        .unwrap_or_default(),
        description: first_text(v, &["finding_info.desc", "message"]),
        severity,
        product: first_text(v, &["metadata.product.name"]),
        vendor: first_text(v, &["metadata.product.vendor_name"]),
        connector: None,
        analytic_uid: first_text(v, &["finding_info.analytic.uid"]),
        analytic_name: first_text(v, &["finding_info.analytic.name"]),
        host: first_text(v, &["device.hostname", "device.name", "device.ip"]),
        user: first_text(v, &["actor.user.name", "user.name", "actor.user.uid"]),
        fields: flat.fields,
        present: flat.present,
        warnings: warnings_of(&malformed),
        declared,
        malformed,
    })
}

// ---------------------------------------------------------------- ECS

fn decode_ecs(v: &Value, keep: &FieldSelection) -> Result<NormalizedAlert, DecodeError> {
    let uid = first_uid(v, &["event.id", "kibana.alert.uuid", "_id"])?;
    let severity = if let Some(word) = first_text(v, &["kibana.alert.severity", "log.level"]) {
        Severity::from_word(&word)
    } else {
        let score = [
            "kibana.alert.risk_score",
            "event.risk_score",
            "event.severity",
        ]
        .iter()
        .find_map(|p| get_all(v, p).into_iter().find_map(Value::as_f64));
        score.map_or(Severity::Unknown, Severity::from_risk_score)
    };

    let mut declared = Vec::new();
    let mut malformed = Vec::new();
    for prefix in ["threat", "kibana.alert.rule.threat"] {
        let entries = get_all(v, prefix);
        let entries: Vec<(&Value, String)> = if entries.iter().any(|e| e.is_object()) {
            entries.into_iter().map(|e| (e, String::new())).collect()
        } else {
            // Fully dotted form (`"threat.technique.id": [...]`): read the
            // paths from the document root as one entry.
            vec![(v, format!("{prefix}."))]
        };
        for (entry, base) in entries {
            let framework = first_text(entry, &[&format!("{base}framework")]);
            if framework.is_some_and(|f| !f.to_ascii_lowercase().contains("att&ck")) {
                continue;
            }
            let mut tactics = all_text(entry, &format!("{base}tactic.id"));
            tactics.extend(all_text(entry, &format!("{base}tactic.name")));
            tactics.dedup();
            for raw in all_ids(entry, &format!("{base}technique.id")) {
                declare(&mut declared, &mut malformed, &raw, &tactics, prefix);
            }
            for raw in all_ids(entry, &format!("{base}technique.subtechnique.id")) {
                declare(&mut declared, &mut malformed, &raw, &tactics, prefix);
            }
        }
    }

    let flat = flatten(v, keep);
    Ok(NormalizedAlert {
        format: AlertFormat::Ecs,
        source_uid_derived: uid.is_none(),
        source_uid: uid.unwrap_or_else(|| derived_uid(v)),
        time: parse_time(
            v,
            &["@timestamp", "kibana.alert.original_time", "event.created"],
        )?,
        title: first_text(
            v,
            &[
                "kibana.alert.rule.name",
                "rule.name",
                "message",
                "event.action",
            ],
        )
        .unwrap_or_default(),
        description: first_text(
            v,
            &[
                "kibana.alert.reason",
                "rule.description",
                "kibana.alert.rule.description",
                "message",
            ],
        ),
        severity,
        product: first_text(v, &["observer.product", "event.module", "agent.type"]),
        vendor: first_text(v, &["observer.vendor"]),
        connector: None,
        analytic_uid: first_text(
            v,
            &[
                "kibana.alert.rule.rule_id",
                "rule.id",
                "rule.uuid",
                "kibana.alert.rule.uuid",
            ],
        ),
        analytic_name: first_text(v, &["kibana.alert.rule.name", "rule.name"]),
        host: first_text(v, &["host.name", "host.hostname"]),
        user: first_text(v, &["user.name"]),
        fields: flat.fields,
        present: flat.present,
        warnings: warnings_of(&malformed),
        declared,
        malformed,
    })
}

// ---------------------------------------------------------------- native

#[derive(Deserialize)]
struct NativeAlert {
    uid: String,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    vendor: Option<String>,
    #[serde(default)]
    connector: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    rule_uid: Option<String>,
    #[serde(default)]
    rule_name: Option<String>,
    #[serde(default)]
    fields: Option<Map<String, Value>>,
    #[serde(default)]
    techniques: Vec<NativeTechnique>,
}

#[derive(Deserialize)]
struct NativeTechnique {
    id: String,
    #[serde(default)]
    tactic: Option<String>,
}

fn decode_native(v: &Value, keep: &FieldSelection) -> Result<NormalizedAlert, DecodeError> {
    let obj = v.as_object().ok_or(DecodeError::NotAnObject)?;
    for required in ["uid", "title"] {
        if !obj.contains_key(required) {
            return Err(DecodeError::MissingField(if required == "uid" {
                "uid"
            } else {
                "title"
            }));
        }
    }
    // Said before serde does: its message would show a large number
    // already rounded, as if that were what was sent.
    if let Some(Value::Number(_)) = obj.get("uid") {
        return Err(DecodeError::BadField {
            field: "uid".into(),
            message: "must be a JSON string, not a number: send the uid in quotes, as the \
                      sender holds it"
                .into(),
        });
    }
    let alert: NativeAlert = NativeAlert::deserialize(v).map_err(|e| DecodeError::BadField {
        field: "(native alert)".into(),
        message: e.to_string(),
    })?;
    if alert.uid.trim().is_empty() {
        return Err(DecodeError::MissingField("uid"));
    }

    // Our own format is strict: a malformed technique is the sender's bug.
    let mut declared = Vec::new();
    for (i, t) in alert.techniques.iter().enumerate() {
        let technique = TechniqueId::parse(&t.id).map_err(|e| DecodeError::BadField {
            field: format!("techniques[{i}].id"),
            message: e.to_string(),
        })?;
        declared.push(DeclaredTechnique {
            technique,
            tactics: t.tactic.iter().cloned().collect(),
            field: "techniques".into(),
        });
    }
    let flat = alert
        .fields
        .map(|m| flatten(&Value::Object(m), keep))
        .unwrap_or_default();

    let text = |s: Option<String>| s.as_deref().map(without_nul);
    Ok(NormalizedAlert {
        format: AlertFormat::Native,
        source_uid: without_nul(&alert.uid),
        source_uid_derived: false,
        time: alert.time,
        title: without_nul(&alert.title),
        description: text(alert.description),
        severity: alert
            .severity
            .as_deref()
            .map_or(Severity::Unknown, Severity::from_word),
        product: text(alert.product),
        vendor: text(alert.vendor),
        connector: text(alert.connector),
        analytic_uid: text(alert.rule_uid),
        analytic_name: text(alert.rule_name),
        host: text(alert.host),
        user: text(alert.user),
        fields: flat.fields,
        present: flat.present,
        declared,
        warnings: Vec::new(),
        malformed: Vec::new(),
    })
}

// ---------------------------------------------------------------- NDJSON

/// One line of an NDJSON feed: its 1-based line number and what it decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct NdjsonLine {
    /// 1-based line number in the input.
    pub line: usize,
    /// The alert, or why the line was rejected.
    pub result: Result<NormalizedAlert, DecodeError>,
}

/// Reads NDJSON alerts one line at a time (memory stays flat in the number
/// of lines). Blank lines are skipped; a malformed line (bad JSON, bad UTF-8,
/// an alert that does not decode) yields an error with its line number and
/// reading goes on. A failing reader ends the feed after reporting the error
/// on the line it was reading, since the stream position is then unknown.
pub fn read_ndjson<R: BufRead>(reader: R) -> NdjsonReader<R> {
    NdjsonReader {
        reader,
        line: 0,
        buf: Vec::new(),
        done: false,
    }
}

/// Iterator returned by [`read_ndjson`].
#[derive(Debug)]
pub struct NdjsonReader<R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> Iterator for NdjsonReader<R> {
    type Item = NdjsonLine;

    fn next(&mut self) -> Option<NdjsonLine> {
        while !self.done {
            self.buf.clear();
            self.line += 1;
            let result = match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    continue;
                }
                Ok(_) => match std::str::from_utf8(&self.buf) {
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => decode_alert_str(text),
                    Err(e) => Err(DecodeError::Json(format!("line is not UTF-8: {e}"))),
                },
                Err(e) => {
                    self.done = true;
                    Err(DecodeError::Json(format!("unreadable input: {e}")))
                }
            };
            return Some(NdjsonLine {
                line: self.line,
                result,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "ocsf_attacks" => include_str!("../tests/fixtures/ocsf_attacks.json"),
            "ocsf_legacy_attacks" => include_str!("../tests/fixtures/ocsf_legacy_attacks.json"),
            "ecs_nested" => include_str!("../tests/fixtures/ecs_nested.json"),
            "kibana_alert" => include_str!("../tests/fixtures/kibana_alert.json"),
            "ecs_flat" => include_str!("../tests/fixtures/ecs_flat.json"),
            "native_alert" => include_str!("../tests/fixtures/native_alert.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn declared(alert: &NormalizedAlert) -> Vec<(String, Vec<String>)> {
        alert
            .declared
            .iter()
            .map(|d| (d.technique.to_string(), d.tactics.clone()))
            .collect()
    }

    #[test]
    fn ocsf_with_finding_info_attacks() {
        let a = decode_alert(&fixture("ocsf_attacks")).unwrap();
        assert_eq!(a.format, AlertFormat::Ocsf);
        assert_eq!(a.source_uid, "edr-finding-0001");
        assert_eq!(a.time.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(a.title, "Credential dumping via LSASS access");
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.severity.weight(), 5.0);
        assert_eq!(a.product.as_deref(), Some("ExampleEDR"));
        assert_eq!(a.vendor.as_deref(), Some("Example Corp"));
        assert_eq!(a.analytic_uid.as_deref(), Some("edr-rule-77"));
        assert_eq!(a.host.as_deref(), Some("ws-042.corp.example"));
        assert_eq!(a.user.as_deref(), Some("alice"));
        let tactics = vec!["TA0006".to_string(), "Credential Access".to_string()];
        assert_eq!(
            declared(&a),
            vec![
                ("T1003".into(), tactics.clone()),
                ("T1003.001".into(), tactics)
            ]
        );
        assert_eq!(a.declared[0].field, "finding_info.attacks");
        assert_eq!(
            a.fields["process.cmd_line"],
            vec![FieldValue::Text(
                "procdump.exe -ma lsass.exe out.dmp".into()
            )]
        );
        assert_eq!(a.fields["process.pid"], vec![FieldValue::Number(4242.0)]);
    }

    #[test]
    fn ocsf_legacy_top_level_attacks_and_bad_ids() {
        let a = decode_alert(&fixture("ocsf_legacy_attacks")).unwrap();
        assert_eq!(a.source_uid, "legacy-7");
        assert_eq!(a.time.unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00");
        assert_eq!(a.severity, Severity::Medium);
        assert_eq!(
            declared(&a),
            vec![
                (
                    "T1059".into(),
                    vec!["TA0002".into(), "Execution".into(), "Persistence".into()]
                ),
                ("T1685".into(), vec![]),
            ]
        );
        assert_eq!(a.warnings.len(), 1);
        assert!(a.warnings[0].contains("T1059-001"), "{:?}", a.warnings);
        assert_eq!(
            a.malformed,
            vec![MalformedDeclaration {
                value: "T1059-001".into(),
                field: "attacks".into()
            }]
        );
    }

    /// Regression: a numeric technique uid was skipped without a word.
    #[test]
    fn a_numeric_technique_uid_is_a_malformed_declaration() {
        let doc = serde_json::json!({
            "class_uid": 2004,
            "finding_info": {"uid": "n-1", "title": "t",
                             "attacks": [{"technique": {"uid": 1105}}]}
        });
        let a = decode_alert(&doc).unwrap();
        assert!(a.declared.is_empty());
        assert_eq!(
            a.malformed,
            vec![MalformedDeclaration {
                value: "1105".into(),
                field: "finding_info.attacks".into()
            }]
        );
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    }

    /// Regression: a technique uid given as an object, or as a list
    /// holding one, was skipped without a word, while a number was
    /// reported; every non-text shape is now a malformed declaration and
    /// the alert's other declarations are kept.
    #[test]
    fn an_object_technique_uid_is_a_malformed_declaration() {
        let doc = serde_json::json!({
            "class_uid": 2004,
            "finding_info": {"uid": "o-1", "title": "t", "attacks": [
                {"technique": {"uid": {"id": "T1059"}}},
                {"technique": {"uid": [{"id": "T1105"}, "T1003"]}},
                {"sub_technique": {"uid": {}}},
                {"technique": {"uid": "T1078"}}
            ]}
        });
        let a = decode_alert(&doc).unwrap();
        assert_eq!(
            declared(&a),
            vec![("T1003".into(), vec![]), ("T1078".into(), vec![])]
        );
        let field = "finding_info.attacks".to_string();
        assert_eq!(
            a.malformed,
            vec![
                MalformedDeclaration {
                    value: r#"{"id":"T1059"}"#.into(),
                    field: field.clone()
                },
                MalformedDeclaration {
                    value: r#"{"id":"T1105"}"#.into(),
                    field: field.clone()
                },
                MalformedDeclaration {
                    value: "{}".into(),
                    field
                },
            ]
        );
        assert_eq!(a.warnings.len(), 3, "{:?}", a.warnings);
    }

    /// The same for ECS: an object technique id is reported, not dropped.
    #[test]
    fn an_object_ecs_technique_id_is_a_malformed_declaration() {
        let doc = serde_json::json!({
            "@timestamp": "2026-01-01T00:00:00Z",
            "event": {"id": "e-1"},
            "message": "m",
            "threat": [{"framework": "MITRE ATT&CK",
                        "technique": [{"id": {"value": "T1059"}},
                                      {"id": "T1105", "subtechnique": [{"id": ["x", {"a": 1}]}]}]}]
        });
        let a = decode_alert(&doc).unwrap();
        assert_eq!(declared(&a), vec![("T1105".into(), vec![])]);
        let values: Vec<&str> = a.malformed.iter().map(|m| m.value.as_str()).collect();
        assert_eq!(values, [r#"{"value":"T1059"}"#, "x", r#"{"a":1}"#]);
        assert!(a.malformed.iter().all(|m| m.field == "threat"));
    }

    #[test]
    fn ecs_nested_threat() {
        let a = decode_alert(&fixture("ecs_nested")).unwrap();
        assert_eq!(a.format, AlertFormat::Ecs);
        assert_eq!(a.source_uid, "ecs-evt-0001");
        assert_eq!(a.analytic_uid.as_deref(), Some("edr-ps-enc"));
        assert_eq!(a.title, "Encoded PowerShell");
        assert_eq!(a.host.as_deref(), Some("ws-007"));
        assert_eq!(a.user.as_deref(), Some("carol"));
        assert_eq!(a.product.as_deref(), Some("endpoint"));
        // event.severity 47 on the 0-100 risk scale is medium.
        assert_eq!(a.severity, Severity::Medium);
        let tactics = vec!["TA0002".to_string(), "Execution".to_string()];
        assert_eq!(
            declared(&a),
            vec![
                ("T1059".into(), tactics.clone()),
                ("T1059.001".into(), tactics)
            ]
        );
        assert_eq!(a.fields["process.args"].len(), 3);
    }

    #[test]
    fn kibana_dotted_rule_threat_merges_tactics_of_one_technique() {
        let a = decode_alert(&fixture("kibana_alert")).unwrap();
        assert_eq!(a.format, AlertFormat::Ecs);
        assert_eq!(a.source_uid, "4f1c0a5e-kibana-alert-0001");
        assert_eq!(a.analytic_uid.as_deref(), Some("e2a1f7c2-valid-accounts"));
        assert_eq!(a.title, "Logon from a new country");
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.host.as_deref(), Some("srv-01"));
        assert_eq!(
            declared(&a),
            vec![(
                "T1078".into(),
                vec![
                    "TA0003".into(),
                    "Persistence".into(),
                    "TA0001".into(),
                    "Initial Access".into()
                ]
            )]
        );
        assert_eq!(a.declared[0].field, "kibana.alert.rule.threat");
        assert_eq!(
            a.fields["source.geo.country_iso_code"],
            vec![FieldValue::Text("NZ".into())]
        );
    }

    #[test]
    fn kibana_fully_nested_rule_threat() {
        let v = serde_json::json!({
            "@timestamp": "2026-01-04T08:30:00Z",
            "kibana": {"alert": {
                "uuid": "k-2",
                "severity": "critical",
                "rule": {
                    "rule_id": "r-9",
                    "name": "Nested",
                    "threat": {
                        "framework": "MITRE ATT&CK",
                        "tactic": {"id": "TA0002", "name": "Execution"},
                        "technique": {"id": "T1059", "subtechnique": {"id": "T1059.001"}}
                    }
                }
            }}
        });
        let a = decode_alert(&v).unwrap();
        assert_eq!(a.source_uid, "k-2");
        assert_eq!(a.analytic_uid.as_deref(), Some("r-9"));
        assert_eq!(a.severity, Severity::Critical);
        let tactics = vec!["TA0002".to_string(), "Execution".to_string()];
        assert_eq!(
            declared(&a),
            vec![
                ("T1059".into(), tactics.clone()),
                ("T1059.001".into(), tactics)
            ]
        );
        // Another framework's entries are not ATT&CK declarations.
        let other = serde_json::json!({
            "@timestamp": "2026-01-04T08:30:00Z",
            "threat": {"framework": "Acme Kill Chain", "technique": {"id": "T1059"}}
        });
        assert!(decode_alert(&other).unwrap().declared.is_empty());
    }

    #[test]
    fn ecs_fully_dotted_threat() {
        let a = decode_alert(&fixture("ecs_flat")).unwrap();
        assert_eq!(a.source_uid, "flat-0009");
        assert_eq!(a.analytic_uid.as_deref(), Some("cred-dump-generic"));
        assert_eq!(a.severity, Severity::Critical);
        let tactics = vec!["TA0006".to_string(), "Credential Access".to_string()];
        assert_eq!(
            declared(&a),
            vec![
                ("T1003".into(), tactics.clone()),
                ("T1003.001".into(), tactics)
            ]
        );
    }

    #[test]
    fn native_alert() {
        let a = decode_alert(&fixture("native_alert")).unwrap();
        assert_eq!(a.format, AlertFormat::Native);
        assert_eq!(a.source_uid, "edr-123");
        assert_eq!(a.connector.as_deref(), Some("edr-eu"));
        assert_eq!(a.analytic_uid.as_deref(), Some("edr-rule-42"));
        assert_eq!(a.severity, Severity::High);
        assert_eq!(
            declared(&a),
            vec![("T1059.001".into(), vec!["execution".into()])]
        );
        assert_eq!(a.fields["process.pid"], vec![FieldValue::Number(777.0)]);
        assert_eq!(a.field("alert.host"), FieldRef::One("ws-01".into()));
        assert_eq!(a.field("alert.severity"), FieldRef::One("high".into()));
        assert_eq!(a.field("alert.nothing"), FieldRef::Missing);
    }

    #[test]
    fn native_without_schema_is_detected_and_strict() {
        let a = decode_alert(&serde_json::json!({"uid": "u1", "title": "t"})).unwrap();
        assert_eq!(a.format, AlertFormat::Native);
        let bad = serde_json::json!({"uid": "u1", "title": "t", "techniques": [{"id": "T59"}]});
        let err = decode_alert(&bad).unwrap_err();
        assert_eq!(err.code(), "bad_field");
        assert!(err.to_string().contains("techniques[0].id"), "{err}");
        let no_uid = serde_json::json!({"schema": NATIVE_SCHEMA, "title": "t"});
        assert_eq!(
            decode_alert(&no_uid).unwrap_err(),
            DecodeError::MissingField("uid")
        );
    }

    #[test]
    fn a_field_selection_keeps_exactly_its_paths_and_nothing_else_changes() {
        let doc = serde_json::json!({
            "@timestamp": "2026-01-04T08:30:00.000Z",
            "kibana.alert.uuid": "u-1",
            "kibana.alert.rule.threat": [{"tactic": {"id": "TA0003"},
                                          "technique": [{"id": "T1078"}]}],
            "kibana.alert": {"rule.name": "nested dotted"},
            "kibana.alert.rule.name": "flat dotted",
            "process": {"args": ["-enc", "abc"], "pid": 7, "parent": {"name": "cmd.exe"}},
            // Sorts between `process` and `process.args` and must not hide
            // the paths after it.
            "process-x": {"args": "decoy"},
            // An empty key at the root joins its children without a dot.
            "": {"process.args": "from an empty key"},
            "user": {"name": "bob"}
        });
        let wanted = ["kibana.alert.rule.name", "process.args", "process.parent"];
        let selection = FieldSelection::Only(wanted.iter().map(|s| s.to_string()).collect());
        let full = decode_alert(&doc).unwrap();
        let kept = decode_alert_keeping(&doc, &selection).unwrap();

        let expected: FieldMap = full
            .fields
            .iter()
            .filter(|(path, _)| wanted.contains(&path.as_str()))
            .map(|(path, values)| (path.clone(), values.clone()))
            .collect();
        assert_eq!(kept.fields, expected);
        // Both spellings of the rule name, and both arguments, are there;
        // `process.parent` is an object, not a scalar: no value is kept,
        // only that it is present.
        assert_eq!(kept.fields["kibana.alert.rule.name"].len(), 2);
        assert_eq!(
            kept.fields["process.args"],
            [
                FieldValue::Text("from an empty key".into()),
                FieldValue::Text("-enc".into()),
                FieldValue::Text("abc".into())
            ]
        );
        assert_eq!(kept.fields.len(), 2);
        assert_eq!(kept.present, BTreeSet::from(["process.parent".to_string()]));
        assert!(full.fields.len() > 6);
        assert!(full.present.is_empty());
        assert_eq!(
            NormalizedAlert {
                fields: full.fields.clone(),
                present: BTreeSet::new(),
                ..kept.clone()
            },
            full
        );

        let none = decode_alert_keeping(&doc, &FieldSelection::Only(BTreeSet::new())).unwrap();
        assert!(none.fields.is_empty());
        assert_eq!(none.declared, full.declared);
        assert_eq!(
            decode_alert_keeping(&doc, &FieldSelection::All).unwrap(),
            full
        );
    }

    #[test]
    fn attributes_are_the_normalized_fields_only() {
        assert!(NormalizedAlert::is_attribute("alert.analytic_uid"));
        assert!(NormalizedAlert::is_attribute("alert.format"));
        assert!(!NormalizedAlert::is_attribute("alert.custom"));
        assert!(!NormalizedAlert::is_attribute("analytic_uid"));
        assert!(!NormalizedAlert::is_attribute("process.name"));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            decode_alert(&serde_json::json!([1])).unwrap_err(),
            DecodeError::NotAnObject
        );
        assert_eq!(
            decode_alert(&serde_json::json!({"foo": 1})).unwrap_err(),
            DecodeError::UnrecognizedFormat
        );
        assert_eq!(
            decode_alert(&serde_json::json!({"class_uid": 3002})).unwrap_err(),
            DecodeError::UnsupportedClass(3002)
        );
        let bad_time = serde_json::json!({"class_uid": 2004, "time_dt": "yesterday"});
        let err = decode_alert(&bad_time).unwrap_err();
        assert!(err.to_string().contains("time_dt"), "{err}");
    }

    #[test]
    fn missing_uid_is_derived_from_content_and_stable() {
        let v = serde_json::json!({"class_uid": 2004, "finding_info": {"title": "x"}});
        let a = decode_alert(&v).unwrap();
        let b = decode_alert(&v).unwrap();
        assert!(a.source_uid_derived);
        assert_eq!(a.source_uid, b.source_uid);
        assert_eq!(
            a.source_uid,
            hex::encode(Sha256::digest(v.to_string().as_bytes()))
        );
    }

    #[test]
    fn ndjson_reports_bad_lines_with_numbers_and_goes_on() {
        let text = concat!(
            "{\"uid\": \"a\", \"title\": \"one\"}\n",
            "\n",
            "{not json}\n",
            "{\"uid\": \"b\", \"title\": \"two\"}\n",
            "[]\n",
            "{\"uid\": \"c\", \"title\": \"three\"}\n",
        );
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(b"{\"uid\": \"\xff\", \"title\": \"latin\"}\n");
        bytes.extend_from_slice(b"{\"uid\": \"d\", \"title\": \"four\"}");
        let lines: Vec<NdjsonLine> = read_ndjson(bytes.as_slice()).collect();
        let summary: Vec<(usize, Result<String, &str>)> = lines
            .iter()
            .map(|l| {
                let r = match &l.result {
                    Ok(a) => Ok(a.source_uid.clone()),
                    Err(e) => Err(e.code()),
                };
                (l.line, r)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, Ok("a".to_string())),
                (3, Err("invalid_json")),
                (4, Ok("b".to_string())),
                (5, Err("not_an_object")),
                (6, Ok("c".to_string())),
                (7, Err("invalid_json")),
                (8, Ok("d".to_string())),
            ]
        );
    }

    #[test]
    fn severities_from_words_ids_and_scores() {
        assert_eq!(Severity::from_word("Info"), Severity::Informational);
        assert_eq!(Severity::from_word("moderate"), Severity::Medium);
        assert_eq!(Severity::from_word("bogus"), Severity::Unknown);
        assert_eq!(Severity::from_ocsf_id(6), Severity::Fatal);
        assert_eq!(Severity::from_ocsf_id(99), Severity::Unknown);
        assert_eq!(Severity::from_risk_score(21.0), Severity::Low);
        assert_eq!(Severity::from_risk_score(22.0), Severity::Medium);
        assert_eq!(Severity::from_risk_score(73.0), Severity::High);
        assert_eq!(Severity::from_risk_score(74.0), Severity::Critical);
        assert_eq!(Severity::from_risk_score(101.0), Severity::Unknown);
    }
    /// Trial finding: a numeric uid beyond 64-bit integers was stored
    /// rounded (`1.2345678901234568e+22`), so `...123` and `...124` became
    /// one alert. Such a uid is refused, naming its field; 64-bit integers
    /// and short decimals keep their exact text.
    #[test]
    fn a_numeric_uid_that_json_cannot_hold_exactly_is_refused() {
        let ocsf = |uid: &str| {
            serde_json::from_str::<Value>(&format!(
                r#"{{"class_uid": 2004, "finding_info": {{"uid": {uid}, "title": "t"}}}}"#
            ))
            .unwrap()
        };
        for big in [
            "12345678901234567890123",
            "12345678901234567890124",
            "18446744073709551616",
            "-9223372036854775809",
            "1e22",
        ] {
            let error = decode_alert(&ocsf(big)).unwrap_err();
            assert_eq!(error.code(), "bad_field", "{big}");
            let DecodeError::BadField { field, message } = &error else {
                panic!("{big}: {error:?}");
            };
            assert_eq!(field, "finding_info.uid", "{big}");
            assert!(
                message.contains("send the uid as a JSON string"),
                "{message}"
            );
        }
        for (exact, text) in [
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("9007199254740991", "9007199254740991"),
            ("42", "42"),
            ("1.5", "1.5"),
        ] {
            assert_eq!(decode_alert(&ocsf(exact)).unwrap().source_uid, text);
        }

        let ecs = |uid: &str| {
            serde_json::from_str::<Value>(&format!(
                r#"{{"@timestamp": "2026-01-01T00:00:00Z", "event": {{"id": {uid}}}}}"#
            ))
            .unwrap()
        };
        let error = decode_alert(&ecs("12345678901234567890123")).unwrap_err();
        assert!(
            matches!(&error, DecodeError::BadField { field, .. } if field == "event.id"),
            "{error:?}"
        );
        assert_eq!(decode_alert(&ecs("77")).unwrap().source_uid, "77");

        let native: Value =
            serde_json::from_str(r#"{"uid": 12345678901234567890123, "title": "t"}"#).unwrap();
        let error = decode_alert(&native).unwrap_err();
        let DecodeError::BadField { field, message } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(field, "uid");
        assert!(!message.contains("e22"), "no rounded number: {message}");
    }

    #[test]
    fn an_unsupported_class_names_both_finding_classes() {
        let v: Value = serde_json::from_str(r#"{"class_uid": 3002}"#).unwrap();
        let message = decode_alert(&v).unwrap_err().to_string();
        assert!(message.contains("2004"), "{message}");
        assert!(message.contains("2001"), "{message}");
    }
}
