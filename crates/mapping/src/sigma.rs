//! Sigma rule pack import (the pure part): read a folder or `.tar.gz` of
//! Sigma YAML, validate every ATT&CK tag against a release, report, and turn
//! each rule into a mapping rule for the alerts it raises.
//!
//! # Tags
//!
//! Tags are read case-insensitively. Under the `attack.` namespace:
//! `attack.tNNNN[.NNN]` is a technique; `attack.taNNNN` a tactic by id; any
//! other word (`attack.execution`, `attack.command_and_control`,
//! `attack.stealth`) a tactic by shortname, underscores read as hyphens;
//! group, software, campaign, mitigation, data source and detection ids
//! (`attack.g0001`, `attack.s0002`, `attack.c0001`, `attack.m1040`,
//! `attack.ds0005`, `attack.de0001`, `attack.an0001`) are ignored. Tags
//! outside `attack.` are ignored. Each technique or tactic tag is `valid`,
//! `unknown`, `revoked` (with its replacement) or `deprecated` in the
//! release; counts are per rule and tag (a tag repeated in one rule counts
//! once).
//!
//! # Mapping rules
//!
//! A rule with at least one valid technique tag becomes a mapping rule
//! `alert.analytic_uid equals <sigma id>` whose techniques are its valid
//! technique tags. When the rule names tactics, each technique is paired with
//! every named (valid) tactic that is one of its tactics in the release; a
//! technique none of the named tactics fits, or any technique of a rule that
//! names no tactic, is mapped without tactic. Invalid tags are dropped from
//! the mapping and listed in the report's problems, never silently.
//!
//! Confidence comes from the rule's metadata (see [`sigma_confidence`]).
//! The mapping rule's version proposed here is the rule's `modified` (else
//! `date`) as `YYYYMMDD`, else 1. It is only a first guess: whether a
//! re-imported rule changed is decided by what it maps (see
//! [`mapping_content`]), since authors edit tags without touching the dates;
//! the service numbers a changed rule above its stored versions. A date that
//! is present but unreadable is reported in [`ImportReport::warnings`].
//!
//! Rules with status `deprecated` or `unsupported` are skipped unless
//! [`SigmaOptions::include_deprecated`] is set: SigmaHQ keeps them for
//! history, not for deployment, and they are counted as `skipped`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_yaml::Value as Yaml;
use taxonomy::{Release, TacticId, TechniqueId};

use crate::candidate::find_tactic;
use crate::compat::{RefStatus, check_reference};
use crate::confidence::Confidence;
use crate::rules::{Condition, Rule, RuleTechnique};

/// Import options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigmaOptions {
    /// Import rules whose status is `deprecated` or `unsupported` too.
    pub include_deprecated: bool,
}

/// What a tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    /// A technique or sub-technique.
    Technique,
    /// A tactic.
    Tactic,
}

/// Where a tag stands in the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagStatus {
    /// Live in the release.
    Valid,
    /// Not in the release.
    Unknown,
    /// Revoked in the release.
    Revoked,
    /// Deprecated in the release.
    Deprecated,
}

/// One checked ATT&CK tag of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCheck {
    /// The tag as written.
    pub tag: String,
    /// Technique or tactic.
    pub kind: TagKind,
    /// The ATT&CK id it resolves to (tactic shortnames resolve to the id).
    pub attack_id: Option<String>,
    /// Its status.
    pub status: TagStatus,
    /// The replacement of a revoked technique.
    pub replaced_by: Option<String>,
}

/// One Sigma rule as read from the pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigmaRule {
    /// The rule's `id` (a UUID), what alerts name as their analytic uid.
    pub id: String,
    /// Title.
    pub title: String,
    /// `status` (stable, test, experimental, deprecated, unsupported).
    pub status: Option<String>,
    /// `level` (informational, low, medium, high, critical).
    pub level: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// `modified`, else `date`.
    pub date: Option<NaiveDate>,
    /// Why a `modified` or `date` that is present could not be read.
    #[serde(default)]
    pub date_warnings: Vec<String>,
    /// All tags as written.
    pub tags: Vec<String>,
    /// The technique and tactic tags, checked.
    pub checks: Vec<TagCheck>,
    /// The file it came from (path inside the pack).
    pub file: String,
}

impl SigmaRule {
    /// The valid technique ids.
    pub fn valid_techniques(&self) -> Vec<TechniqueId> {
        self.checks
            .iter()
            .filter(|c| c.kind == TagKind::Technique && c.status == TagStatus::Valid)
            .filter_map(|c| {
                c.attack_id
                    .as_deref()
                    .and_then(|id| TechniqueId::parse(id).ok())
            })
            .collect()
    }
}

/// Tag counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCounts {
    /// Live.
    pub valid: usize,
    /// Not in the release.
    pub unknown: usize,
    /// Revoked.
    pub revoked: usize,
    /// Deprecated.
    pub deprecated: usize,
}

impl TagCounts {
    fn add(&mut self, status: TagStatus) {
        match status {
            TagStatus::Valid => self.valid += 1,
            TagStatus::Unknown => self.unknown += 1,
            TagStatus::Revoked => self.revoked += 1,
            TagStatus::Deprecated => self.deprecated += 1,
        }
    }
}

/// One tag that is not valid, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagProblem {
    /// The Sigma rule id.
    pub rule: String,
    /// The tag as written.
    pub tag: String,
    /// unknown, revoked or deprecated.
    pub status: TagStatus,
    /// Replacement of a revoked technique.
    pub replaced_by: Option<String>,
}

/// A file or document of the pack that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProblem {
    /// Path inside the pack.
    pub file: String,
    /// Why.
    pub message: String,
}

/// Something of a rule that was imported but not read as written (an
/// unreadable `date`), as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleWarning {
    /// The Sigma rule id.
    pub rule: String,
    /// Path inside the pack.
    pub file: String,
    /// What was not read, and what was used instead.
    pub message: String,
}

/// Counts split by tag kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsByKind {
    /// Technique tags.
    pub technique: TagCounts,
    /// Tactic tags.
    pub tactic: TagCounts,
}

/// The import report (`rules import-sigma --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Rules imported.
    pub rules: usize,
    /// Rules that became mapping rules (at least one valid technique tag).
    pub mapped_rules: usize,
    /// Technique and tactic tags by status.
    pub tags: TagCounts,
    /// Every tag that is not valid.
    pub problems: Vec<TagProblem>,
    /// The same counts split by kind.
    pub tags_by_kind: TagsByKind,
    /// Rules skipped for their status (deprecated, unsupported).
    pub skipped: usize,
    /// Files or documents that could not be read, with the reason.
    pub unreadable: Vec<FileProblem>,
    /// YAML documents of the pack that are not Sigma rules (a filter, an
    /// `action: global` or `action: reset` collection document, a document
    /// without `detection` that does not look like a broken rule either):
    /// nothing to import, but listed so that the pack's every document is
    /// accounted for. Absent from reports stored before it was counted.
    #[serde(default)]
    pub not_rules: Vec<FileProblem>,
    /// Rules imported with something not read as written (an unreadable
    /// date). Reports stored before this field read back with none.
    #[serde(default)]
    pub warnings: Vec<RuleWarning>,
}

/// What an import produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaImport {
    /// Every imported rule, with checked tags.
    pub rules: Vec<SigmaRule>,
    /// Mapping rules for rules with at least one valid technique.
    pub mapping_rules: Vec<Rule>,
    /// The report.
    pub report: ImportReport,
}

/// Why a pack could not be read at all (single bad files are reported instead).
#[derive(Debug, thiserror::Error)]
pub enum SigmaError {
    /// The path cannot be read.
    #[error("cannot read Sigma pack {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The archive is not a readable `.tar.gz`.
    #[error("cannot read archive {path}: {source}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The confidence a Sigma rule's mapping gets: a base by `level`
/// (critical 0.90, high 0.80, medium 0.65, low 0.50, informational 0.40,
/// absent 0.55) times a factor by `status` (stable 1.0, test 0.95,
/// experimental 0.85, deprecated or unsupported 0.75, absent 0.90), rounded
/// to two decimals. The tags are the author's mapping of what the rule
/// detects; level and status say how reliably it fires on that behaviour.
pub fn sigma_confidence(level: Option<&str>, status: Option<&str>) -> Confidence {
    let base = match level.map(|l| l.trim().to_ascii_lowercase()).as_deref() {
        Some("critical") => 0.90,
        Some("high") => 0.80,
        Some("medium") => 0.65,
        Some("low") => 0.50,
        Some("informational") => 0.40,
        _ => 0.55,
    };
    let factor = match status.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("stable") => 1.0,
        Some("test") => 0.95,
        Some("experimental") => 0.85,
        Some("deprecated") | Some("unsupported") => 0.75,
        _ => 0.90,
    };
    Confidence::saturating((base * factor * 100.0_f64).round() / 100.0)
}

/// The largest rule file read. SigmaHQ rules are a few KiB; a bigger file in
/// a pack is reported rather than read, so a hostile archive cannot make the
/// import allocate without bound.
pub const MAX_RULE_FILE_BYTES: u64 = 1 << 20;

/// Imports a pack from a folder or a `.tar.gz` / `.tgz` file.
pub fn import_path(
    path: &Path,
    release: &Release,
    options: SigmaOptions,
) -> Result<SigmaImport, SigmaError> {
    let mut too_big = Vec::new();
    let files = if path.is_dir() {
        read_folder(path, &mut too_big)?
    } else {
        read_archive(path, &mut too_big)?
    };
    let mut import = import_files(files, release, options);
    import.report.unreadable.extend(too_big);
    Ok(import)
}

fn too_big(name: String, size: u64) -> FileProblem {
    FileProblem {
        file: name,
        message: format!(
            "{size} bytes is more than the {MAX_RULE_FILE_BYTES} a rule file may have"
        ),
    }
}

/// A pack file: its path inside the pack and its bytes.
pub type PackFile = (String, Vec<u8>);

fn is_yaml(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yml") || lower.ends_with(".yaml")
}

fn read_folder(root: &Path, skipped: &mut Vec<FileProblem>) -> Result<Vec<PackFile>, SigmaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SigmaError::Io { path, source }
    };
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && is_yaml(&path.to_string_lossy()) {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let size = entry.metadata().map_err(io(&path))?.len();
                if size > MAX_RULE_FILE_BYTES {
                    skipped.push(too_big(name, size));
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                files.push((name, bytes));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn read_archive(path: &Path, skipped: &mut Vec<FileProblem>) -> Result<Vec<PackFile>, SigmaError> {
    let archive_err = |source| SigmaError::Archive {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|source| SigmaError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(archive_err)?
            .to_string_lossy()
            .into_owned();
        if !is_yaml(&name) {
            continue;
        }
        let size = entry.size();
        if size > MAX_RULE_FILE_BYTES {
            skipped.push(too_big(name, size));
            continue;
        }
        let mut bytes = Vec::new();
        // The header's size is checked above; `take` also bounds a lying header.
        (&mut entry)
            .take(MAX_RULE_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(archive_err)?;
        files.push((name, bytes));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Imports pack files already in memory (the core of [`import_path`]).
pub fn import_files(
    files: impl IntoIterator<Item = PackFile>,
    release: &Release,
    options: SigmaOptions,
) -> SigmaImport {
    let mut report = ImportReport::default();
    let mut rules: Vec<SigmaRule> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();

    for (name, bytes) in files {
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                report.unreadable.push(FileProblem {
                    file: name,
                    message: format!("not UTF-8: {e}"),
                });
                continue;
            }
        };
        let documents = read_documents(&name, &text, &mut report.unreadable);
        report.not_rules.extend(documents.collections);
        for (number, doc) in documents.rules {
            let rule = match rule_from_doc(&name, &doc, release) {
                Ok(Some(rule)) => rule,
                Ok(None) => {
                    let what = if doc.get("filter").is_some() {
                        "a Sigma filter"
                    } else {
                        "no detection or correlation block"
                    };
                    report.not_rules.push(FileProblem {
                        file: name.clone(),
                        message: format!("document {number}: not a Sigma rule ({what})"),
                    });
                    continue;
                }
                Err(message) => {
                    report.unreadable.push(FileProblem {
                        file: name.clone(),
                        message,
                    });
                    continue;
                }
            };
            let status = rule.status.as_deref().unwrap_or("").to_ascii_lowercase();
            if !options.include_deprecated && (status == "deprecated" || status == "unsupported") {
                report.skipped += 1;
                continue;
            }
            if let Some(first) = seen.insert(rule.id.clone(), name.clone()) {
                report.unreadable.push(FileProblem {
                    file: name.clone(),
                    message: format!(
                        "rule id {} already defined in {first}; this one replaces it",
                        rule.id
                    ),
                });
                rules.retain(|r| r.id != rule.id);
            }
            rules.push(rule);
        }
    }

    let mut mapping_rules = Vec::new();
    for rule in &rules {
        for check in &rule.checks {
            report.tags.add(check.status);
            match check.kind {
                TagKind::Technique => report.tags_by_kind.technique.add(check.status),
                TagKind::Tactic => report.tags_by_kind.tactic.add(check.status),
            }
            if check.status != TagStatus::Valid {
                report.problems.push(TagProblem {
                    rule: rule.id.clone(),
                    tag: check.tag.clone(),
                    status: check.status,
                    replaced_by: check.replaced_by.clone(),
                });
            }
        }
        for message in &rule.date_warnings {
            report.warnings.push(RuleWarning {
                rule: rule.id.clone(),
                file: rule.file.clone(),
                message: message.clone(),
            });
        }
        if let Some(mapping) = mapping_rule(rule, release) {
            mapping_rules.push(mapping);
        }
    }
    report.rules = rules.len();
    report.mapped_rules = mapping_rules.len();

    SigmaImport {
        rules,
        mapping_rules,
        report,
    }
}

/// The documents of a file: the candidate rules, numbered from 1 in the
/// file, with `action: global` documents merged into the ones that follow
/// (until `action: reset`), as Sigma collections define; and those
/// collection documents themselves, for the report.
struct Documents {
    rules: Vec<(usize, Yaml)>,
    collections: Vec<FileProblem>,
}

fn read_documents(name: &str, text: &str, problems: &mut Vec<FileProblem>) -> Documents {
    use serde::Deserialize as _;
    let mut docs = Vec::new();
    let mut collections = Vec::new();
    let mut global: Option<serde_yaml::Mapping> = None;
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = match Yaml::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                problems.push(FileProblem {
                    file: name.to_string(),
                    message: format!("document {}: not valid YAML: {e}", i + 1),
                });
                // After a syntax error the stream position is unreliable.
                break;
            }
        };
        let number = i + 1;
        let Yaml::Mapping(map) = value else {
            // An empty document (a trailing `---`) is no document at all.
            if !value.is_null() {
                collections.push(FileProblem {
                    file: name.to_string(),
                    message: format!("document {number}: not a Sigma rule (not a mapping)"),
                });
            }
            continue;
        };
        match map.get("action").and_then(Yaml::as_str) {
            Some("global") => {
                let mut g = map.clone();
                g.remove("action");
                global = Some(g);
                collections.push(FileProblem {
                    file: name.to_string(),
                    message: format!(
                        "document {number}: not a Sigma rule (`action: global`, merged into \
                         the documents that follow it)"
                    ),
                });
                continue;
            }
            Some("reset") => {
                global = None;
                collections.push(FileProblem {
                    file: name.to_string(),
                    message: format!("document {number}: not a Sigma rule (`action: reset`)"),
                });
                continue;
            }
            _ => {}
        }
        let mut merged = global.clone().unwrap_or_default();
        for (k, v) in map {
            merged.insert(k, v);
        }
        merged.remove("action");
        docs.push((number, Yaml::Mapping(merged)));
    }
    Documents {
        rules: docs,
        collections,
    }
}

fn text_of(doc: &Yaml, key: &str) -> Option<String> {
    match doc.get(key)? {
        Yaml::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A YAML value as one line of a message (escaped: it comes from the pack).
fn yaml_text(value: &Yaml) -> String {
    let text = match value {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    text.chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y/%m/%d"))
        .ok()
}

/// A rule's tags, trimmed. The Sigma specification makes `tags` a list, but
/// a single tag written as a string (`tags: attack.t1105`) is common enough
/// in hand-written rules that dropping it would leave the rule counted yet
/// mapping nothing, without a word; it is read as a one-tag list.
fn tags_of(doc: &Yaml) -> Vec<String> {
    match doc.get("tags") {
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(|t| t.as_str().map(|s| s.trim().to_string()))
            .collect(),
        Some(Yaml::String(tag)) => vec![tag.trim().to_string()],
        _ => Vec::new(),
    }
}

/// A Sigma detection or correlation rule; `None` for other documents
/// (filters, metadata); an error for a rule that cannot be used.
fn rule_from_doc(file: &str, doc: &Yaml, release: &Release) -> Result<Option<SigmaRule>, String> {
    let is_rule = doc.get("detection").is_some() || doc.get("correlation").is_some();
    if !is_rule {
        // Filters (`filter:`) and collection actions (`action:`) are other
        // documents; one that still carries a rule's logsource or ATT&CK tags
        // is a broken rule, reported rather than dropped without a word.
        let other_kind = doc.get("filter").is_some() || doc.get("action").is_some();
        let attack_tagged = tags_of(doc)
            .iter()
            .any(|t| t.to_ascii_lowercase().starts_with("attack."));
        if !other_kind && (doc.get("logsource").is_some() || attack_tagged) {
            let title = text_of(doc, "title").unwrap_or_default();
            return Err(format!(
                "rule \"{title}\" has no detection block, so it cannot match anything"
            ));
        }
        return Ok(None);
    }
    let title = text_of(doc, "title").unwrap_or_default();
    let Some(id) = text_of(doc, "id") else {
        return Err(format!(
            "rule \"{title}\" has no id, so no alert can name it"
        ));
    };
    let tags = tags_of(doc);
    let author = match doc.get("author") {
        Some(Yaml::Sequence(items)) => {
            // Blank names would join into a blank author, which the rule
            // language refuses.
            let names: Vec<&str> = items
                .iter()
                .filter_map(Yaml::as_str)
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            (!names.is_empty()).then(|| names.join(", "))
        }
        _ => text_of(doc, "author"),
    };
    // `modified` first, as Sigma intends; an unreadable one falls back to
    // `date` and is reported, so a typo never goes unnoticed.
    let mut date_warnings = Vec::new();
    let mut date = None;
    for key in ["modified", "date"] {
        let Some(text) = doc.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        match text_of(doc, key).and_then(|d| parse_date(&d)) {
            Some(d) => {
                date = Some(d);
                break;
            }
            None => date_warnings.push(format!(
                "`{key}: {}` is not a date (YYYY-MM-DD), so it is not used",
                yaml_text(text)
            )),
        }
    }

    let mut checks = Vec::new();
    let mut seen = BTreeSet::new();
    for tag in &tags {
        let lower = tag.to_ascii_lowercase();
        if !seen.insert(lower.clone()) {
            continue;
        }
        if let Some(check) = check_tag(tag, &lower, release) {
            checks.push(check);
        }
    }

    Ok(Some(SigmaRule {
        id,
        title,
        status: text_of(doc, "status"),
        level: text_of(doc, "level"),
        author,
        date,
        date_warnings,
        tags,
        checks,
        file: file.to_string(),
    }))
}

/// Checks one tag; `None` for tags that name neither a technique nor a tactic.
pub fn check_tag(tag: &str, lower: &str, release: &Release) -> Option<TagCheck> {
    let rest = lower.strip_prefix("attack.")?;
    let digits_after = |prefix: &str| {
        rest.strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    // Groups, software, campaigns, mitigations, data sources, detection
    // strategies and analytics: not mappings.
    if ["g", "s", "c", "m", "ds", "dc", "de", "an"]
        .iter()
        .any(|p| digits_after(p))
    {
        return None;
    }

    if rest.starts_with('t') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
        let (status, attack_id, replaced_by) = match TechniqueId::parse(rest) {
            Err(_) => (TagStatus::Unknown, None, None),
            Ok(id) => match check_reference(id.as_str(), release) {
                RefStatus::Live => (TagStatus::Valid, Some(id.to_string()), None),
                RefStatus::Deprecated => (TagStatus::Deprecated, Some(id.to_string()), None),
                RefStatus::Revoked { replaced_by } => {
                    (TagStatus::Revoked, Some(id.to_string()), replaced_by)
                }
                RefStatus::Unknown => (TagStatus::Unknown, Some(id.to_string()), None),
            },
        };
        return Some(TagCheck {
            tag: tag.to_string(),
            kind: TagKind::Technique,
            attack_id,
            status,
            replaced_by,
        });
    }

    let is_word = rest
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_');
    if !digits_after("ta") && !is_word {
        return None;
    }
    let (status, attack_id) = match find_tactic(release, rest) {
        None => (TagStatus::Unknown, None),
        Some(t) if t.status.revoked => (TagStatus::Revoked, Some(t.id.clone())),
        Some(t) if t.status.deprecated => (TagStatus::Deprecated, Some(t.id.clone())),
        Some(t) => (TagStatus::Valid, Some(t.id.clone())),
    };
    Some(TagCheck {
        tag: tag.to_string(),
        kind: TagKind::Tactic,
        attack_id,
        status,
        replaced_by: None,
    })
}

/// The mapping rule of a Sigma rule, when it has a valid technique tag.
pub fn mapping_rule(rule: &SigmaRule, release: &Release) -> Option<Rule> {
    let techniques = rule.valid_techniques();
    if techniques.is_empty() {
        return None;
    }
    let named_tactics: Vec<&taxonomy::Tactic> = rule
        .checks
        .iter()
        .filter(|c| c.kind == TagKind::Tactic && c.status == TagStatus::Valid)
        .filter_map(|c| c.attack_id.as_deref().and_then(|id| release.tactic(id)))
        .collect();

    let mut outputs = Vec::new();
    for technique in techniques {
        let own = release
            .technique(technique.as_str())
            .map(|t| t.tactics.clone())
            .unwrap_or_default();
        let fitting: Vec<TacticId> = named_tactics
            .iter()
            .filter(|t| own.iter().any(|s| s.eq_ignore_ascii_case(&t.shortname)))
            .filter_map(|t| TacticId::parse(&t.id).ok())
            .collect();
        if fitting.is_empty() {
            outputs.push(RuleTechnique {
                id: technique,
                tactic: None,
            });
        } else {
            for tactic in fitting {
                outputs.push(RuleTechnique {
                    id: technique.clone(),
                    tactic: Some(tactic),
                });
            }
        }
    }

    let version = rule
        .date
        .map(|d| d.format("%Y%m%d").to_string().parse::<u32>().unwrap_or(1))
        .unwrap_or(1);
    let tags: Vec<&str> = rule.checks.iter().map(|c| c.tag.as_str()).collect();
    Some(Rule {
        id: format!("sigma:{}", rule.id),
        version,
        // Sigma requires a title but packs are not always valid Sigma; the
        // rule language requires one too, so an untitled rule is named by its id.
        title: if rule.title.is_empty() {
            format!("Sigma rule {}", rule.id)
        } else {
            rule.title.clone()
        },
        author: rule
            .author
            .clone()
            .unwrap_or_else(|| "unknown (Sigma rule)".into()),
        rationale: format!("the Sigma rule's author tagged it {}", tags.join(", ")),
        evidence_pattern: Some(format!("an alert raised by Sigma rule {}", rule.id)),
        effective_date: rule.date,
        confidence: sigma_confidence(rule.level.as_deref(), rule.status.as_deref()),
        condition: Condition::analytic_uid_equals(&rule.id),
        techniques: outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidate::tests::tiny_release;

    fn file(name: &str, text: &str) -> PackFile {
        (name.to_string(), text.as_bytes().to_vec())
    }

    const RULE_A: &str = "title: A
id: 11111111-1111-1111-1111-111111111111
status: test
level: high
author: someone
date: 2024-01-01
modified: 2025-03-12
tags:
    - attack.execution
    - attack.t1059.001
    - attack.T1059
    - attack.t1059
    - attack.t1086
    - attack.t1064
    - attack.t1685
    - attack.stealth
    - attack.g0007
    - attack.s0002
    - attack.ds0005
    - cve.2021-44228
logsource: {product: windows}
detection: {sel: {Image|endswith: x}, condition: sel}
";

    #[test]
    fn tags_are_checked_and_reported() {
        let r = tiny_release();
        let import = import_files([file("a.yml", RULE_A)], &r, SigmaOptions::default());
        let rule = &import.rules[0];
        let checks: Vec<(&str, TagKind, TagStatus, Option<&str>)> = rule
            .checks
            .iter()
            .map(|c| (c.tag.as_str(), c.kind, c.status, c.replaced_by.as_deref()))
            .collect();
        use TagKind::*;
        use TagStatus::*;
        assert_eq!(
            checks,
            vec![
                ("attack.execution", Tactic, Valid, None),
                ("attack.t1059.001", Technique, Valid, None),
                ("attack.T1059", Technique, Valid, None),
                ("attack.t1086", Technique, Revoked, Some("T1059.001")),
                ("attack.t1064", Technique, Deprecated, None),
                ("attack.t1685", Technique, Unknown, None),
                ("attack.stealth", Tactic, Unknown, None),
            ]
        );
        let report = &import.report;
        assert_eq!((report.rules, report.mapped_rules), (1, 1));
        assert_eq!(
            report.tags,
            TagCounts {
                valid: 3,
                unknown: 2,
                revoked: 1,
                deprecated: 1
            }
        );
        assert_eq!(report.problems.len(), 4);
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["problems"][0]["status"], "revoked");
        assert_eq!(json["problems"][0]["replaced_by"], "T1059.001");
        assert_eq!(
            json["problems"][0]["rule"],
            "11111111-1111-1111-1111-111111111111"
        );

        let mapping = &import.mapping_rules[0];
        assert_eq!(mapping.id, "sigma:11111111-1111-1111-1111-111111111111");
        assert_eq!(mapping.version, 20250312);
        assert_eq!(mapping.confidence.value(), 0.76);
        let outputs: Vec<(String, Option<String>)> = mapping
            .techniques
            .iter()
            .map(|t| (t.id.to_string(), t.tactic.as_ref().map(|t| t.to_string())))
            .collect();
        assert_eq!(
            outputs,
            vec![
                ("T1059.001".into(), Some("TA0002".into())),
                ("T1059".into(), Some("TA0002".into())),
            ]
        );
    }

    /// Found by the `sigma` fuzz target: a rule without a title (or with only
    /// blank author names) produced a mapping rule that `parse_rule` refuses,
    /// so the stored rule could not be read back.
    #[test]
    fn untitled_sigma_rule_yields_a_valid_mapping_rule() {
        let r = tiny_release();
        let text = "id: d8af0da1-2959-40f9-a3e4-37a6aa1228b7
author: ['  ', '']
tags: [attack.t1059]
detection: {condition: sel}
";
        let import = import_files([file("u.yml", text)], &r, SigmaOptions::default());
        let mapping = &import.mapping_rules[0];
        assert_eq!(
            mapping.title,
            "Sigma rule d8af0da1-2959-40f9-a3e4-37a6aa1228b7"
        );
        assert_eq!(mapping.author, "unknown (Sigma rule)");
        let again = crate::rules::parse_rule_value(&mapping.to_value(), &r).unwrap();
        assert_eq!(&again, mapping);
    }

    /// Regression: `tags: attack.t1059` (a string, not a list) was counted
    /// as a rule that mapped nothing, with no problem reported.
    #[test]
    fn a_single_tag_written_as_a_string_is_a_one_tag_list() {
        let r = tiny_release();
        let text = "title: S\nid: s\ntags: attack.t1059\ndetection: {condition: x}\n";
        let import = import_files([file("s.yml", text)], &r, SigmaOptions::default());
        let techniques: Vec<String> = import.mapping_rules[0]
            .techniques
            .iter()
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(techniques, ["T1059"]);
        assert_eq!(import.report.mapped_rules, 1);
    }

    #[test]
    fn tactics_pair_only_with_techniques_they_fit() {
        let r = tiny_release();
        let text = "title: B
id: b
tags: [attack.persistence, attack.ta0006, attack.t1078, attack.t1003, attack.t1059]
detection: {condition: x}
";
        let import = import_files([file("b.yml", text)], &r, SigmaOptions::default());
        let outputs: Vec<(String, Option<String>)> = import.mapping_rules[0]
            .techniques
            .iter()
            .map(|t| (t.id.to_string(), t.tactic.as_ref().map(|t| t.to_string())))
            .collect();
        assert_eq!(
            outputs,
            vec![
                ("T1078".into(), Some("TA0003".into())),
                ("T1003".into(), Some("TA0006".into())),
                ("T1059".into(), None),
            ]
        );
        // No level, no status: 0.55 x 0.90.
        assert_eq!(import.mapping_rules[0].confidence.value(), 0.5);
    }

    #[test]
    fn multi_document_files_global_action_and_bad_files() {
        let r = tiny_release();
        let multi = "action: global
title: Shared title
status: stable
level: critical
tags: [attack.t1003]
detection: {condition: sel}
---
id: c1
logsource: {product: windows}
---
id: c2
tags: [attack.t1059]
---
action: reset
---
title: a filter, not a rule
filter: {rules: [c1]}
---
title: no id
detection: {condition: x}
---
title: notes, neither rule nor filter
---
";
        let retired = "title: R\nid: r1\nstatus: deprecated\ntags: [attack.t1059]\ndetection: {condition: x}\n";
        let files = vec![
            file("multi.yml", multi),
            file("broken.yml", "title: [unclosed\n"),
            file("latin1.yml", ""),
            file("retired.yml", retired),
        ];
        let mut files = files;
        files[2].1 = vec![0xff, 0xfe, b'x'];
        let import = import_files(files, &r, SigmaOptions::default());
        let ids: Vec<(&str, &str)> = import
            .rules
            .iter()
            .map(|r| (r.id.as_str(), r.title.as_str()))
            .collect();
        assert_eq!(ids, vec![("c1", "Shared title"), ("c2", "Shared title")]);
        assert_eq!(import.rules[1].tags, vec!["attack.t1059"]);
        assert_eq!(import.mapping_rules[0].confidence.value(), 0.9);
        assert_eq!(import.report.skipped, 1);
        let unreadable: Vec<&str> = import
            .report
            .unreadable
            .iter()
            .map(|p| p.file.as_str())
            .collect();
        assert_eq!(unreadable, vec!["multi.yml", "broken.yml", "latin1.yml"]);
        assert!(import.report.unreadable[0].message.contains("no id"));
        // Regression: the documents that are not rules were skipped without
        // a word. multi.yml's are its 1st (global), 4th (reset) and 5th
        // (filter) documents, and a trailing empty document is none.
        let not_rules: Vec<(&str, &str)> = import
            .report
            .not_rules
            .iter()
            .map(|p| (p.file.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            not_rules,
            vec![
                (
                    "multi.yml",
                    "document 1: not a Sigma rule (`action: global`, merged into the documents \
                     that follow it)"
                ),
                (
                    "multi.yml",
                    "document 4: not a Sigma rule (`action: reset`)"
                ),
                ("multi.yml", "document 5: not a Sigma rule (a Sigma filter)"),
                (
                    "multi.yml",
                    "document 7: not a Sigma rule (no detection or correlation block)"
                ),
            ]
        );

        let all = import_files(
            [file("retired.yml", retired)],
            &r,
            SigmaOptions {
                include_deprecated: true,
            },
        );
        assert_eq!(all.report.rules, 1);
        assert_eq!(all.mapping_rules[0].confidence.value(), 0.41);
    }

    /// Two rules with one id: the later in pack order is kept, and the
    /// report names both places instead of replacing without a word.
    #[test]
    fn a_repeated_rule_id_keeps_the_later_rule_and_is_reported() {
        let r = tiny_release();
        let rule = |title: &str| {
            format!("title: {title}\nid: dup\ntags: [attack.t1059]\ndetection: {{condition: x}}\n")
        };
        let import = import_files(
            [
                file("a.yml", &rule("first")),
                file("b.yml", &rule("second")),
            ],
            &r,
            SigmaOptions::default(),
        );
        let kept: Vec<(&str, &str)> = import
            .rules
            .iter()
            .map(|r| (r.id.as_str(), r.title.as_str()))
            .collect();
        assert_eq!(kept, vec![("dup", "second")]);
        assert_eq!(import.report.rules, 1);
        assert_eq!(
            import.report.unreadable,
            vec![FileProblem {
                file: "b.yml".into(),
                message: "rule id dup already defined in a.yml; this one replaces it".into(),
            }]
        );
    }

    #[test]
    fn a_rule_without_detection_is_reported_not_dropped() {
        let r = tiny_release();
        let text = "title: y\nid: 33333333-3333-3333-3333-333333333333\ntags: [attack.t1059]\n\
                    logsource: {product: windows}\n";
        let import = import_files([file("nodet.yml", text)], &r, SigmaOptions::default());
        assert!(import.rules.is_empty());
        assert_eq!(import.report.unreadable.len(), 1);
        assert_eq!(import.report.unreadable[0].file, "nodet.yml");
        assert!(
            import.report.unreadable[0].message.contains("no detection"),
            "{}",
            import.report.unreadable[0].message
        );
    }

    /// Trial finding: `date: 2025-13-45` was dropped without a word.
    /// An unreadable date is listed in the report's warnings; an unreadable
    /// `modified` falls back to a readable `date`.
    #[test]
    fn an_unreadable_date_is_a_warning() {
        let r = tiny_release();
        let rule = |id: &str, meta: &str| {
            format!(
                "title: {id}\nid: {id}\n{meta}tags: [attack.t1059]\ndetection: {{condition: x}}\n"
            )
        };
        let files = [
            file("bad.yml", &rule("bad", "date: 2025-13-45\n")),
            file(
                "fallback.yml",
                &rule("fallback", "date: 2024-02-03\nmodified: soon\n"),
            ),
            file("fine.yml", &rule("fine", "date: 2024/02/03\n")),
            file("none.yml", &rule("none", "")),
        ];
        let import = import_files(files, &r, SigmaOptions::default());
        let warned: Vec<(&str, &str)> = import
            .report
            .warnings
            .iter()
            .map(|w| (w.rule.as_str(), w.file.as_str()))
            .collect();
        assert_eq!(warned, [("bad", "bad.yml"), ("fallback", "fallback.yml")]);
        assert!(
            import.report.warnings[0]
                .message
                .contains("`date: 2025-13-45`")
        );
        assert!(
            import.report.warnings[1]
                .message
                .contains("`modified: soon`")
        );
        let versions: Vec<(&str, u32)> = import
            .mapping_rules
            .iter()
            .map(|m| (m.id.as_str(), m.version))
            .collect();
        assert_eq!(
            versions,
            [
                ("sigma:bad", 1),
                ("sigma:fallback", 20240203),
                ("sigma:fine", 20240203),
                ("sigma:none", 1),
            ]
        );
        // A report stored before warnings existed still reads.
        let mut old = serde_json::to_value(&import.report).unwrap();
        old.as_object_mut().unwrap().remove("warnings");
        let read: ImportReport = serde_json::from_value(old).unwrap();
        assert!(read.warnings.is_empty());
    }

    /// What a re-import compares: the techniques and the confidence count,
    /// the title, dates and tag order do not.
    #[test]
    fn mapping_content_is_what_the_rule_maps() {
        let r = tiny_release();
        let content = |text: &str| {
            import_files([file("c.yml", text)], &r, SigmaOptions::default()).mapping_rules[0]
                .mapping_content()
        };
        let base = content(
            "title: A\nid: c\nlevel: high\ndate: 2024-01-01\ntags: [attack.t1059, attack.t1003]\n\
             detection: {condition: x}\n",
        );
        let described_otherwise = content(
            "title: B\nid: c\nlevel: high\ndate: 2025-06-07\ntags: [attack.t1003, attack.t1059]\n\
             detection: {condition: x}\n",
        );
        assert_eq!(base, described_otherwise);
        let other_tag = content(
            "title: A\nid: c\nlevel: high\ndate: 2024-01-01\ntags: [attack.t1059, attack.t1078]\n\
             detection: {condition: x}\n",
        );
        assert_ne!(base, other_tag);
        let other_level = content(
            "title: A\nid: c\nlevel: low\ndate: 2024-01-01\ntags: [attack.t1059, attack.t1003]\n\
             detection: {condition: x}\n",
        );
        assert_ne!(base, other_level);
    }

    #[test]
    fn confidence_table() {
        let c = |l: Option<&str>, s: Option<&str>| sigma_confidence(l, s).value();
        assert_eq!(c(Some("critical"), Some("stable")), 0.9);
        assert_eq!(c(Some("high"), Some("test")), 0.76);
        assert_eq!(c(Some("medium"), Some("test")), 0.62);
        assert_eq!(c(Some("medium"), Some("experimental")), 0.55);
        assert_eq!(c(Some("low"), Some("stable")), 0.5);
        assert_eq!(c(Some("informational"), Some("test")), 0.38);
        assert_eq!(c(Some("HIGH"), Some("Stable")), 0.8);
    }
}
