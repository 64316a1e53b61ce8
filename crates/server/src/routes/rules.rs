//! Mapping rules and Sigma rule packs of the caller's org: list, create or
//! update (a new version), simulate, roll back, import a Sigma pack, read a
//! stored import report.
//!
//! A rule is sent as text in the rule language (JSON or YAML, as the CLI
//! reads it from a file) or as a JSON object. A rule that does not parse or
//! is refused on its content answers 422 `invalid_rule` naming the field
//! and, for a syntax error, the line and column; nothing is stored.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use service::access::Action;
use service::{RuleChange, RuleView, ServiceError, SigmaImportOutcome, Simulation};

use super::{Param, ParamType, invalid_cursor, page_envelope, parse_limit};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRole, AfterRoleQuery, ApiBytes, ApiJson, ApiQuery, PathId};

/// Filter of `GET /api/v1/rules`.
pub(super) const LIST_FILTERS: [Param; 1] = [Param::query(
    "status",
    ParamType::Enum(&["draft", "active", "retired"]),
    "Only rule versions in this status (default: every version)",
)];

/// Identity hint of `POST /api/v1/rules/sigma`.
pub(super) const SIGMA_PARAMS: [Param; 1] = [Param::query(
    "file_name",
    ParamType::String,
    "Original file name of the pack (sigma-rules-c5e6d0ecd.tar.gz), recorded with the import",
)];

/// `POST /api/v1/rules` and `POST /api/v1/rules/simulate` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleBody {
    /// The rule: its text (JSON or YAML) or a JSON object.
    rule: Value,
    /// Store a new version of an existing rule (its `version` must be
    /// higher than every stored one) instead of creating one.
    #[serde(default)]
    update: bool,
}

impl RuleBody {
    /// The rule as text in the rule language.
    fn text(&self) -> Result<String, ApiError> {
        match &self.rule {
            Value::String(text) => Ok(text.clone()),
            // JSON is YAML: the object reads as the same rule, one key a
            // line, so a field error still points at a line of it.
            object @ Value::Object(_) => {
                serde_json::to_string_pretty(object).map_err(|e| ApiError::internal(&e))
            }
            _ => Err(ApiError::invalid_field(
                "rule",
                "rule must be the rule's text (JSON or YAML) or a JSON object",
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigmaQuery {
    file_name: Option<String>,
}

/// `GET /api/v1/rules`: every rule version of the org ordered by rule id
/// then version, paginated here because the use case answers the whole
/// list (a Sigma pack brings thousands of rules).
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<ListQuery>,
) -> Result<Envelope<Vec<RuleView>>, ApiError> {
    let target = ("rule", principal.org_name.as_str());
    let query = query
        .read(&state, &principal, Action::ReadMappings, target)
        .await?;
    let status = query
        .status
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty());
    if let Some(s) = &status
        && !["draft", "active", "retired"].contains(&s.as_str())
    {
        return Err(ApiError::invalid_field(
            "status",
            format!("status must be draft, active or retired, got `{s}`"),
        ));
    }
    let limit = parse_limit(query.limit.as_deref())?;
    let after = query
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(parse_rule_cursor)
        .transpose()?;

    let mut rules = state
        .app
        .list_rules(&principal.actor(), &principal.org_name, status.as_deref())
        .await?;

    // Sorted here rather than trusted from the database: the two backends
    // collate text differently, and the cursor compares in this order.
    rules.sort_by(|a, b| (&a.id, a.version).cmp(&(&b.id, b.version)));
    let start = match &after {
        Some((id, version)) => rules.partition_point(|r| (&r.id, r.version) <= (id, *version)),
        None => 0,
    };
    let mut page: Vec<RuleView> = rules.into_iter().skip(start).take(limit + 1).collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|r| format!("{}|{}", r.version, r.id))
    } else {
        None
    };
    Ok(page_envelope(page, next, limit))
}

/// The `(id, version)` of the last rule of the previous page.
fn parse_rule_cursor(cursor: &str) -> Result<(String, i64), ApiError> {
    let inner = super::decode_cursor(cursor)?;
    let (version, id) = inner.split_once('|').ok_or_else(invalid_cursor)?;
    let version = version.parse::<i64>().map_err(|_| invalid_cursor())?;
    Ok((id.to_string(), version))
}

/// `POST /api/v1/rules`: create a rule, or with `update` store a new
/// version; the new version is active and the alerts it or its predecessor
/// matches are re-evaluated.
pub(super) async fn save(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<RuleBody>>,
) -> Result<Envelope<RuleChange>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::RuleWrite,
            ("rule", &principal.org_name),
        )
        .await?;
    let text = body.text()?;

    let change = state
        .app
        .save_rule(&principal.actor(), &principal.org_name, &text, body.update)
        .await
        .map_err(|e| rule_error(e, &text))?;

    Ok(if body.update {
        Envelope::ok(change)
    } else {
        Envelope::created(change)
    })
}

/// `POST /api/v1/rules/simulate`: which alerts' canonical mapping the rule
/// would change, before and after; changes nothing.
pub(super) async fn simulate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    body: AfterRole<ApiJson<RuleBody>>,
) -> Result<Envelope<Simulation>, ApiError> {
    let ApiJson(body) = body
        .read(
            &state,
            &principal,
            Action::ReadMappings,
            ("rule", &principal.org_name),
        )
        .await?;
    let text = body.text()?;

    let simulation = state
        .app
        .simulate_rule(&principal.actor(), &principal.org_name, &text)
        .await
        .map_err(|e| rule_error(e, &text))?;

    Ok(Envelope::ok(simulation))
}

/// `POST /api/v1/rules/{id}/rollback`: the previous version is active again.
pub(super) async fn rollback(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
) -> Result<Envelope<RuleChange>, ApiError> {
    crate::extract::check_role(&state, &principal, Action::RuleWrite, ("rule", id.target()))
        .await?;
    let id = id.decoded()?;

    let change = state
        .app
        .rollback_rule(&principal.actor(), &principal.org_name, &id)
        .await?;

    Ok(Envelope::ok(change))
}

/// `GET /api/v1/rules/imports/{id}`: a stored rule pack import report.
pub(super) async fn import_report(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
) -> Result<Envelope<Value>, ApiError> {
    let target = ("rule_pack", id.target());
    crate::extract::check_role(&state, &principal, Action::ReadMappings, target).await?;
    let id = id.decoded()?;

    let report = state
        .app
        .rule_pack_import(&principal.actor(), &principal.org_name, &id)
        .await?;

    let report = serde_json::to_value(report).map_err(|e| ApiError::internal(&e))?;
    Ok(Envelope::ok(report))
}

/// `POST /api/v1/rules/sigma`: the body is a `.tar.gz` of Sigma YAML.
/// Every ATT&CK tag is checked against the active Enterprise release;
/// rules with a valid technique tag become mapping rules; the answer is the
/// import summary.
pub(super) async fn import_sigma(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: Result<ApiQuery<SigmaQuery>, ApiError>,
    body: AfterRole<ApiBytes>,
) -> Result<Envelope<Value>, ApiError> {
    // The use case names the pack by its path on this server, a private
    // directory not worth recording: a refusal names the upload.
    let ApiBytes(body) = body
        .read(
            &state,
            &principal,
            Action::RuleWrite,
            ("rule_pack", "upload"),
        )
        .await?;
    let ApiQuery(query) = query?;
    let file_name = upload_name(query.file_name.as_deref());
    if body.is_empty() {
        return Err(ApiError::invalid_field(
            "body",
            "the request body must be a .tar.gz of Sigma rules (YAML)",
        ));
    }

    // The use case imports from a path (a folder or an archive), so the
    // upload is written to a private directory removed after the import.
    let upload = tokio::task::spawn_blocking(move || Upload::write(&body, &file_name))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?;
    let outcome = state
        .app
        .import_sigma(&principal.actor(), &principal.org_name, upload.path())
        .await
        .map_err(|e| upload.error(e))?;

    Ok(Envelope::created(import_summary(&outcome)))
}

/// What `POST /api/v1/rules/sigma` answers: the rules imported, those
/// skipped and why, and every tag the active release does not accept.
fn import_summary(outcome: &SigmaImportOutcome) -> Value {
    let report = &outcome.report;
    let mut skipped = Vec::new();
    if report.skipped > 0 {
        skipped.push(json!({
            "reason": "status_deprecated_or_unsupported",
            "message": "Sigma rules with status deprecated or unsupported are kept for history, not deployment",
            "count": report.skipped,
        }));
    }
    if !report.unreadable.is_empty() {
        skipped.push(json!({
            "reason": "unreadable",
            "message": "files or documents that could not be read as a Sigma rule",
            "count": report.unreadable.len(),
            "files": report.unreadable,
        }));
    }
    if !report.not_rules.is_empty() {
        skipped.push(json!({
            "reason": "not_a_rule",
            "message": "YAML documents that are not Sigma rules (filters, collection actions, \
                        documents without detection)",
            "count": report.not_rules.len(),
            "files": report.not_rules,
        }));
    }
    let unmapped = report.rules - report.mapped_rules;
    json!({
        "import_id": outcome.import_id,
        "imported": report.rules,
        "mapped_rules": report.mapped_rules,
        "unmapped_rules": unmapped,
        "new_versions": outcome.new_versions,
        "unchanged": outcome.unchanged,
        "skipped": skipped,
        "tags": report.tags,
        "tags_by_kind": report.tags_by_kind,
        "tag_problems": report.problems,
        "warnings": report.warnings,
        "reevaluated": outcome.reevaluated,
        "changed": outcome.changed,
    })
}

/// A rule refused on its text or content answers 422 `invalid_rule`
/// naming the field and, when the parser says, the line and column; every
/// other error keeps its usual answer.
fn rule_error(error: ServiceError, text: &str) -> ApiError {
    let ServiceError::InvalidInput { field, message } = &error else {
        return error.into();
    };
    if field != "rule" && !field.starts_with("rule.") {
        return error.into();
    }
    // The simulation names the whole rule; the parser's message says where.
    let field = match (field.as_str(), path_in(message)) {
        ("rule", Some(path)) if !path.is_empty() => format!("rule.{path}"),
        _ => field.clone(),
    };
    let mut details = json!({ "field": field });
    match line_column(message) {
        Some((line, column)) => {
            details["line"] = json!(line);
            details["column"] = json!(column);
        }
        None => {
            // The node the path names, at any depth (inside `all`, `any`
            // and `not` too); the whole rule for `rule`.
            let path = field.strip_prefix("rule").unwrap_or_default();
            let path = path.strip_prefix('.').unwrap_or(path);
            if let Some(at) = mapping::locate_rule_path(text, path) {
                details["line"] = json!(at.line);
                details["column"] = json!(at.column);
            }
        }
    }
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_rule",
        format!("invalid {field}: {message}"),
    )
    .with_details(details)
}

/// The rule path in a rule error message (`` at `match.all[1].regex`: ... ``).
fn path_in(message: &str) -> Option<&str> {
    let start = message.find("at `")? + 4;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The first `line N column M` of a YAML or JSON parser message.
fn line_column(message: &str) -> Option<(u64, u64)> {
    let at = message.find("line ")?;
    let mut words = message[at..].split_whitespace();
    let (_, line, _, column) = (words.next()?, words.next()?, words.next()?, words.next()?);
    let digits = |s: &str| {
        s.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<u64>()
            .ok()
    };
    Some((digits(line)?, digits(column)?))
}

/// The name an upload is stored under: the final component of the client's
/// file name with only safe characters, else `sigma-pack.tar.gz`.
fn upload_name(raw: Option<&str>) -> String {
    let name = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect::<String>();
    if name.trim_matches('.').is_empty() {
        "sigma-pack.tar.gz".to_string()
    } else {
        name
    }
}

/// An uploaded pack written to a fresh private directory, removed when
/// dropped.
struct Upload {
    dir: PathBuf,
    file: PathBuf,
    name: String,
}

impl Upload {
    fn write(bytes: &[u8], name: &str) -> std::io::Result<Upload> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // `create_dir` fails on an existing path, so a directory left by
        // another process is never reused.
        let dir = loop {
            let candidate = std::env::temp_dir().join(format!(
                "nexus-attack-upload-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            match builder.create(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let upload = Upload {
            file: dir.join(name),
            dir,
            name: name.to_string(),
        };
        std::fs::write(&upload.file, bytes)?;
        Ok(upload)
    }

    fn path(&self) -> &Path {
        &self.file
    }

    /// The use case's error, with the server's directory replaced by the
    /// upload's name: a pack that is not a readable archive is the
    /// client's mistake, and no server path reaches a client.
    fn error(&self, error: ServiceError) -> ApiError {
        match error {
            ServiceError::Fetch { message, .. } => {
                let message = message.replace(&self.file.display().to_string(), &self.name);
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    format!("the body is not a readable .tar.gz of Sigma rules: {message}"),
                )
                .with_details(json!({ "field": "body" }))
            }
            other => other.into(),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(%error, dir = %self.dir.display(), "cannot remove an upload directory");
        }
    }
}

/// JSON Schema of the create, update and simulate body.
pub(super) fn rule_schema() -> Value {
    json!({
        "type": "object",
        "required": ["rule"],
        "additionalProperties": false,
        "properties": {
            "rule": {
                "type": ["string", "object"],
                "description": "The rule in the rule language: its JSON or YAML text, or a JSON object"
            },
            "update": {
                "type": "boolean",
                "description": "Store a new (higher) version of an existing rule (create only: ignored by simulate)"
            }
        }
    })
}

/// A valid create body.
pub(super) fn rule_example() -> Value {
    let rule = [
        "id: encoded-powershell",
        "version: 1",
        "title: Encoded PowerShell command line",
        "author: detection-team",
        "rationale: -enc hides the script; this is PowerShell execution.",
        "confidence: 0.8",
        "match:",
        "  all:",
        "    - { field: process.file.path, suffix: \\powershell.exe }",
        "    - { field: process.cmd_line, contains: [\" -enc \", \" -encodedcommand \"] }",
        "techniques:",
        "  - { id: T1059.001, tactic: execution }",
    ];
    json!({ "rule": rule.join("\n") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_come_from_the_parser_message() {
        let message = "rule: rule is not valid JSON or YAML: did not find expected key at line 3 \
                       column 5, while parsing a block mapping at line 1 column 1";
        assert_eq!(line_column(message), Some((3, 5)));
        assert_eq!(line_column("at `version`: missing"), None);
    }

    #[test]
    fn a_field_error_points_at_the_line_of_its_part() {
        let text = "id: x\nversion: 1\nmatch:\n  all:\n    - field: a\n      regex: \"(\"\n\
                    techniques:\n  - { id: T1999 }\n";
        let line = |path: &str| mapping::locate_rule_path(text, path).map(|at| at.line);
        assert_eq!(line("match.all[0].regex"), Some(6));
        assert_eq!(line("version"), Some(2));
        assert_eq!(line("techniques[0].id"), Some(8));
        assert_eq!(line(""), Some(1));
        assert_eq!(
            path_in("at `match.all[0].regex`: bad"),
            Some("match.all[0].regex")
        );
    }

    #[test]
    fn upload_names_keep_only_the_last_safe_component() {
        assert_eq!(upload_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(upload_name(Some("C:\\packs\\rules.tar.gz")), "rules.tar.gz");
        assert_eq!(upload_name(Some("..")), "sigma-pack.tar.gz");
        assert_eq!(upload_name(None), "sigma-pack.tar.gz");
    }
}
