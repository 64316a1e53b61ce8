//! The alert mapping output (`alerts show --json`, `GET /alerts/{id}`):
//! the alert, every candidate, the canonical mapping with lineage, the
//! overrides and the history, under a versioned JSON schema.
//!
//! [`alert_mapping_schema`] is the contract: `docs/schemas/alert-mapping.v1.json`
//! must equal it (a test checks), and every view must validate against it
//! ([`check_schema`]), so that a breaking change fails the build.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{
    AlertId, AlertRecord, CandidateRecord, CanonicalEntryRecord, CanonicalRecord, OrgScope,
    OverrideRecord,
};

use crate::{
    Action, Actor, App, IngestError, IngestReport, Page, PageRequest, Result, ServiceError,
};

/// Version of the alert mapping output; bumped on a breaking change.
pub const ALERT_MAPPING_SCHEMA_VERSION: &str = "1";

/// The statuses of [`DeclarationView::status`].
pub const DECLARATION_STATUSES: [&str; 5] = [
    "unknown",
    "revoked",
    "deprecated",
    "malformed",
    "tactic_not_kept",
];

/// The alert in the mapping view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSummary {
    /// The product's id.
    pub id: String,
    /// The alert's own id in its source.
    pub source_uid: String,
    /// `ocsf`, `ecs` or `native`.
    pub format: String,
    /// When the activity happened (RFC 3339), when known.
    pub time: Option<String>,
    /// When the product received it.
    pub received_at: String,
    /// Title.
    pub title: String,
    /// Severity word.
    pub severity: String,
    /// The detection rule that raised it.
    pub analytic_uid: Option<String>,
    /// The product that raised it.
    pub product: Option<String>,
    /// The connector it came through.
    pub connector: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// User.
    pub user: Option<String>,
    /// `mapped` or `unmapped`.
    pub mapping_state: String,
    /// True while a change waits for re-mapping.
    pub stale: bool,
    /// True when locked for arbitration.
    pub locked: bool,
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceView {
    /// Field path.
    pub field: String,
    /// Its value.
    pub value: String,
    /// What matched.
    pub matched: String,
}

/// One candidate with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateView {
    /// Candidate id (content hash).
    pub id: String,
    /// Technique, as specific as its source gave it.
    pub technique: String,
    /// Tactic, when given.
    pub tactic: Option<String>,
    /// `manual`, `rule` or `ai`.
    pub source: String,
    /// 0.0 to 1.0.
    pub confidence: f64,
    /// `low`, `medium` or `high`.
    pub band: String,
    /// Evidence.
    pub evidence: Vec<EvidenceView>,
    /// Why.
    pub explanation: String,
    /// Rule id, for rule candidates.
    pub rule_id: Option<String>,
    /// Rule version.
    pub rule_version: Option<i64>,
    /// Model version, for AI candidates.
    pub model_version: Option<String>,
    /// Declared by the alert itself.
    pub vendor_declared: bool,
    /// Domain.
    pub domain: String,
    /// Release.
    pub release: String,
    /// Dataset.
    pub dataset_id: Option<String>,
    /// When stored.
    pub created_at: String,
}

/// Where a canonical entry comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageView {
    /// Candidate ids behind it.
    pub candidates: Vec<String>,
    /// Override ids behind it, in the order applied.
    pub overrides: Vec<String>,
    /// Producers (`rule:<id>@<version>`, `vendor`, `ai:<model>`, `override:<id>`).
    pub producers: Vec<String>,
}

/// One canonical entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalEntryView {
    /// Technique.
    pub technique: String,
    /// Tactic.
    pub tactic: Option<String>,
    /// Winning source.
    pub source: String,
    /// Winning confidence.
    pub confidence: f64,
    /// Its band.
    pub band: String,
    /// Lineage.
    pub lineage: LineageView,
    /// Declared by the alert.
    pub vendor_declared: bool,
    /// Evidence links it.
    pub evidence_linked: bool,
    /// Queued for review.
    pub needs_review: bool,
}

/// The current canonical mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalView {
    /// Version (one per recomputation).
    pub version: i64,
    /// The precedence level that decided it (`null`: unmapped).
    pub decided_by: Option<String>,
    /// Why precedence chose it, in words.
    pub explanation: String,
    /// What caused this computation.
    pub cause: String,
    /// Domain.
    pub domain: String,
    /// Release.
    pub release: String,
    /// Dataset.
    pub dataset_id: Option<String>,
    /// When computed.
    pub computed_at: String,
    /// Review flags.
    pub flags: Vec<Value>,
    /// Entries.
    pub entries: Vec<CanonicalEntryView>,
}

/// One override row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideView {
    /// Id.
    pub id: String,
    /// Version on the alert.
    pub version: i64,
    /// `add`, `remove`, `replace`.
    pub action: String,
    /// Technique.
    pub technique: String,
    /// Tactic.
    pub tactic: Option<String>,
    /// Replaced technique.
    pub replaces: Option<String>,
    /// Reason code.
    pub reason: String,
    /// Notes.
    pub notes: Option<String>,
    /// Who.
    pub actor: String,
    /// `proposed`, `approved`, `rejected`; a proposal a lead decided shows
    /// the decision's status.
    pub status: String,
    /// Who decided (for a decided proposal, the lead).
    pub approved_by: Option<String>,
    /// The proposal it decides.
    pub supersedes: Option<String>,
    /// When written.
    pub created_at: String,
}

/// One past canonical version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// Version.
    pub version: i64,
    /// Decided by.
    pub decided_by: Option<String>,
    /// Number of entries.
    pub entries: i64,
    /// Cause.
    pub cause: String,
    /// Release.
    pub release: String,
    /// When.
    pub computed_at: String,
}

/// The alert mapping output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMappingView {
    /// [`ALERT_MAPPING_SCHEMA_VERSION`].
    pub schema_version: String,
    /// The alert.
    pub alert: AlertSummary,
    /// The canonical mapping now.
    pub canonical: CanonicalView,
    /// Every candidate ever proposed for the alert.
    pub candidates: Vec<CandidateView>,
    /// Every override row.
    pub overrides: Vec<OverrideView>,
    /// Every canonical version, oldest first.
    pub history: Vec<HistoryView>,
    /// Techniques the alert declares itself (OCSF `attacks`, ECS `threat`)
    /// that the release of the current canonical mapping does not take as
    /// declared, with what became of each. Left out when there are none
    /// (an optional field of schema version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declarations: Vec<DeclarationView>,
}

/// A technique the alert declared that was not mapped as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclarationView {
    /// Where in the alert (`finding_info.attacks`, `threat`, ...).
    pub field: String,
    /// The technique as declared.
    pub technique: String,
    /// `unknown`, `revoked`, `deprecated`, `malformed` or `tactic_not_kept`.
    pub status: String,
    /// For a revoked technique: its replacement, when ATT&CK names one.
    pub replaced_by: Option<String>,
    /// What the declaration was mapped to instead (the replacement of a
    /// revoked technique; the technique itself when only a tactic was left
    /// out); null when it was not mapped.
    pub mapped_to: Option<String>,
    /// The problem in words, naming the release.
    pub message: String,
}

/// One alert in a list: the alert and its current canonical entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertListItem {
    /// The alert.
    pub alert: AlertSummary,
    /// The entries of its current canonical mapping (empty: unmapped).
    pub canonical: Vec<CanonicalEntryView>,
}

/// Filters of [`App::list_alerts`]; each one given narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFilter {
    /// Alerts with this technique in their current canonical mapping.
    pub technique: Option<String>,
    /// Alerts with a current canonical entry won by this source
    /// (`manual`, `rule`, `ai`); with `technique`, that entry.
    pub source: Option<String>,
    /// Alerts with a current canonical entry in this band (`low`,
    /// `medium`, `high`); with the filters above, that entry.
    pub band: Option<String>,
    /// `mapped` or `unmapped`.
    pub mapping_state: Option<String>,
}

/// What happened to one alert sent alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertIngestResult {
    /// Stored and mapped for the first time.
    Ingested,
    /// Already stored with the same content: nothing changed.
    Duplicate,
    /// Already stored with other content: the new content was stored and
    /// the mapping recomputed.
    Updated,
}

/// One alert ingested alone: what happened and its mapping now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertIngestOutcome {
    /// Whether it was new, a duplicate or an update.
    pub result: AlertIngestResult,
    /// Its mapping view, as `GET /alerts/{id}` answers it.
    pub mapping: AlertMappingView,
}

impl App {
    /// Ingests one alert document (OCSF, ECS or native), given as the JSON
    /// text it was sent as and stored exactly so, and answers its mapping.
    /// The outer error is the use case failing (role, org, no active
    /// dataset); the inner one is the document refused, with the same code
    /// as a refused NDJSON line.
    pub async fn ingest_alert(
        &self,
        actor: &Actor,
        org: &str,
        document: String,
    ) -> Result<std::result::Result<AlertIngestOutcome, IngestError>> {
        // Decoded here only for the source uid to read back; ingestion
        // decodes again, which for one document costs nothing worth sharing.
        let source_uid = serde_json::from_str::<Value>(&document)
            .map_err(|e| e.to_string())
            .and_then(|v| mapping::alert::decode_alert(&v).map_err(|e| e.to_string()))
            .map(|a| a.source_uid);
        let report = self.ingest_alert_texts(actor, org, vec![document]).await?;
        if let Some(error) = report.errors.into_iter().next() {
            return Ok(Err(error));
        }
        let source_uid = source_uid.map_err(|e| {
            ServiceError::Internal(format!("an ingested alert does not decode again: {e}"))
        })?;

        let result = match report {
            IngestReport { ingested: 1, .. } => AlertIngestResult::Ingested,
            IngestReport { updated: 1, .. } => AlertIngestResult::Updated,
            _ => AlertIngestResult::Duplicate,
        };
        let scope = self.scope(actor, org).await?;
        let mapping = self.mapping_view(&scope, &source_uid).await?;
        Ok(Ok(AlertIngestOutcome { result, mapping }))
    }

    /// The org's alerts, newest first, one page at a time, each with its
    /// current canonical entries.
    pub async fn list_alerts(
        &self,
        actor: &Actor,
        org: &str,
        filter: &AlertFilter,
        page: &PageRequest,
    ) -> Result<Page<AlertListItem>> {
        self.authorize(actor, Action::ReadMappings, ("alerts", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let filter = store_filter(filter)?;
        let limit = page.effective_limit();
        let before = page
            .cursor
            .as_deref()
            .map(crate::id_cursor)
            .transpose()?
            .map(AlertId);

        // One row more than the page tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut alerts = self
            .store
            .alerts_listing(&scope, &filter, before.as_ref(), fetch)
            .await?;
        let next_cursor = if alerts.len() > limit {
            alerts.truncate(limit);
            alerts.last().map(|a| a.id.to_string())
        } else {
            None
        };
        let ids: Vec<AlertId> = alerts.iter().map(|a| a.id.clone()).collect();
        let mut entries = self.store.current_entries(&scope, &ids).await?;

        let items = alerts
            .iter()
            .map(|a| AlertListItem {
                alert: summary(a),
                canonical: entries
                    .remove(&a.id)
                    .unwrap_or_default()
                    .iter()
                    .map(entry_view)
                    .collect(),
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// The mapping of one alert, by the product's id or the source uid.
    pub async fn alert_mapping(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
    ) -> Result<AlertMappingView> {
        self.authorize(actor, Action::ReadMappings, ("alert", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        self.mapping_view(&scope, id).await
    }

    /// The mapping view of an alert of `scope`, by id or source uid.
    async fn mapping_view(&self, scope: &OrgScope, id: &str) -> Result<AlertMappingView> {
        let not_found = || ServiceError::NotFound {
            kind: "alert",
            id: id.to_string(),
        };
        let alert = self.store.alert(scope, id).await?.ok_or_else(not_found)?;
        let canonical = self
            .store
            .canonical(scope, &alert.id, alert.canonical_version)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal(format!("alert {} has no canonical set", alert.id))
            })?;
        let candidates = self.store.candidates(scope, &alert.id).await?;
        let overrides = self.store.overrides_of(scope, &alert.id).await?;
        let history = self.store.canonical_history(scope, &alert.id).await?;
        let declarations = self.declarations(&alert, &canonical).await?;

        let mut view = view(&alert, &canonical, &candidates, &overrides, &history);
        view.declarations = declarations;
        Ok(view)
    }

    /// The alert's declarations that the release of its current canonical
    /// mapping does not take as declared. Computed when asked rather than
    /// stored: they follow from the stored document and that release alone,
    /// so they can never disagree with the mapping shown beside them.
    async fn declarations(
        &self,
        alert: &AlertRecord,
        canonical: &CanonicalRecord,
    ) -> Result<Vec<DeclarationView>> {
        let normalized = crate::alerts::decode_stored(alert)?;
        if normalized.declared.is_empty() && normalized.malformed.is_empty() {
            return Ok(Vec::new());
        }
        let Some(dataset_id) = canonical.set.dataset_id.as_deref() else {
            return Ok(Vec::new());
        };
        let Some(dataset) = self
            .store
            .dataset(&store::DatasetId::from(dataset_id))
            .await?
        else {
            return Ok(Vec::new());
        };
        let release = self.release_of(&dataset).await?;
        Ok(mapping::engine::declaration_problems(&release, &normalized)
            .into_iter()
            .map(|p| DeclarationView {
                field: p.field,
                technique: p.technique,
                status: p.status.as_str().to_string(),
                replaced_by: p.replaced_by,
                mapped_to: p.mapped_to,
                message: p.problem,
            })
            .collect())
    }
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn strings(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn view(
    alert: &AlertRecord,
    canonical: &CanonicalRecord,
    candidates: &[CandidateRecord],
    overrides: &[OverrideRecord],
    history: &[store::CanonicalSetRecord],
) -> AlertMappingView {
    let set = &canonical.set;
    let explanation = match set.decided_by.as_deref() {
        None => "no source proposed an admissible technique: unmapped".to_string(),
        Some("manual") => "an approved manual override decides (manual > rule > ai)".to_string(),
        Some("rule") => "deterministic rule candidates decide (manual > rule > ai); \
                         AI candidates are ignored beside them"
            .to_string(),
        Some(other) => {
            format!("only {other} candidates at or above the AI bar exist (manual > rule > ai)")
        }
    };
    AlertMappingView {
        schema_version: ALERT_MAPPING_SCHEMA_VERSION.to_string(),
        alert: summary(alert),
        canonical: CanonicalView {
            version: set.version,
            decided_by: set.decided_by.clone(),
            explanation,
            cause: set.cause.clone(),
            domain: set.domain.clone(),
            release: set.release.clone(),
            dataset_id: set.dataset_id.clone(),
            computed_at: ts(&set.computed_at),
            flags: serde_json::from_str(&set.flags).unwrap_or_default(),
            entries: canonical.entries.iter().map(entry_view).collect(),
        },
        candidates: candidates
            .iter()
            .map(|c| CandidateView {
                id: c.id.clone(),
                technique: c.technique.clone(),
                tactic: c.tactic.clone(),
                source: c.source.clone(),
                confidence: c.confidence,
                band: c.band.clone(),
                evidence: serde_json::from_str::<Vec<mapping::Evidence>>(&c.evidence)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| EvidenceView {
                        field: e.field,
                        value: e.value,
                        matched: e.matched,
                    })
                    .collect(),
                explanation: c.explanation.clone(),
                rule_id: c.rule_id.clone(),
                rule_version: c.rule_version,
                model_version: c.model_version.clone(),
                vendor_declared: c.vendor_declared,
                domain: c.domain.clone(),
                release: c.release.clone(),
                dataset_id: c.dataset_id.clone(),
                created_at: ts(&c.created_at),
            })
            .collect(),
        overrides: override_views(overrides),
        history: history
            .iter()
            .map(|h| HistoryView {
                version: h.version,
                decided_by: h.decided_by.clone(),
                entries: h.entries,
                cause: h.cause.clone(),
                release: h.release.clone(),
                computed_at: ts(&h.computed_at),
            })
            .collect(),
        declarations: Vec::new(),
    }
}

fn summary(alert: &AlertRecord) -> AlertSummary {
    AlertSummary {
        id: alert.id.to_string(),
        source_uid: alert.source_uid.clone(),
        format: alert.format.clone(),
        time: alert.time.as_ref().map(ts),
        received_at: ts(&alert.received_at),
        title: alert.title.clone(),
        severity: alert.severity.clone(),
        analytic_uid: alert.analytic_uid.clone(),
        product: alert.product.clone(),
        connector: alert.connector.clone(),
        host: alert.host.clone(),
        user: alert.user.clone(),
        mapping_state: alert.mapping_state.clone(),
        stale: alert.stale,
        locked: alert.locked,
    }
}

fn entry_view(e: &CanonicalEntryRecord) -> CanonicalEntryView {
    CanonicalEntryView {
        technique: e.technique.clone(),
        tactic: e.tactic.clone(),
        source: e.source.clone(),
        confidence: e.confidence,
        band: e.band.clone(),
        lineage: LineageView {
            candidates: strings(&e.candidate_ids),
            overrides: strings(&e.override_ids),
            producers: strings(&e.producers),
        },
        vendor_declared: e.vendor_declared,
        evidence_linked: e.evidence_linked,
        needs_review: e.needs_review,
    }
}

/// Checks the list filters and turns them into the store's; a value
/// outside its vocabulary is refused rather than matching nothing.
fn store_filter(filter: &AlertFilter) -> Result<store::AlertListFilter> {
    fn one_of(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<Option<String>> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let value = value.to_ascii_lowercase();
        if allowed.contains(&value.as_str()) {
            return Ok(Some(value));
        }
        Err(ServiceError::InvalidInput {
            field: field.into(),
            message: format!(
                "`{}` is not one of {}",
                crate::echo(&value),
                allowed.join(", ")
            ),
        })
    }

    let technique = match filter.technique.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<taxonomy::TechniqueId>()
                .map_err(|e| ServiceError::InvalidInput {
                    field: "technique".into(),
                    message: e.to_string(),
                })?
                .to_string(),
        ),
    };
    Ok(store::AlertListFilter {
        technique,
        source: one_of(
            "source",
            filter.source.as_deref(),
            &["manual", "rule", "ai"],
        )?,
        band: one_of("band", filter.band.as_deref(), &["low", "medium", "high"])?,
        mapping_state: one_of(
            "mapping_state",
            filter.mapping_state.as_deref(),
            &["mapped", "unmapped"],
        )?,
    })
}

/// The views of an alert's override rows. Rows are append-only, so a
/// lead's decision on a proposal is a later row that supersedes it; the
/// proposal's view shows the status and the approver of that decision, as
/// a reader asks "what became of this proposal", while the decision's own
/// row still says which proposal it decided.
pub(crate) fn override_views(rows: &[OverrideRecord]) -> Vec<OverrideView> {
    rows.iter()
        .map(|row| {
            let mut view = override_view(row);
            if let Some(decision) = decision_of(rows, row) {
                view.status = decision.status.clone();
                view.approved_by = decision.approved_by.clone();
            }
            view
        })
        .collect()
}

/// The row that decided the proposal `proposal`, among `rows` (its alert's).
pub(crate) fn decision_of<'r>(
    rows: &'r [OverrideRecord],
    proposal: &OverrideRecord,
) -> Option<&'r OverrideRecord> {
    if proposal.status != "proposed" {
        return None;
    }
    rows.iter()
        .find(|o| o.supersedes.as_deref() == Some(proposal.id.as_str()))
}

/// The view of one override row.
pub(crate) fn override_view(o: &OverrideRecord) -> OverrideView {
    OverrideView {
        id: o.id.clone(),
        version: o.version,
        action: o.action.clone(),
        technique: o.technique.clone(),
        tactic: o.tactic.clone(),
        replaces: o.replaces_technique.clone(),
        reason: o.reason.clone(),
        notes: o.notes.clone(),
        actor: o.actor.clone(),
        status: o.status.clone(),
        approved_by: o.approved_by.clone(),
        supersedes: o.supersedes.clone(),
        created_at: ts(&o.created_at),
    }
}

/// A JSON Schema object with every property required and no other allowed
/// (the published output schemas are built from it).
pub(crate) fn object(properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

/// A JSON Schema array of `items`.
pub(crate) fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// The JSON Schema (draft 2020-12 subset) of [`AlertMappingView`], version
/// [`ALERT_MAPPING_SCHEMA_VERSION`]. Written out as
/// `docs/schemas/alert-mapping.v1.json`.
pub fn alert_mapping_schema() -> Value {
    let text = json!({"type": "string"});
    let opt_text = json!({"type": ["string", "null"]});
    let boolean = json!({"type": "boolean"});
    let confidence = json!({"type": "number", "minimum": 0.0, "maximum": 1.0});
    let band = json!({"type": "string", "enum": ["low", "medium", "high"]});
    let source = json!({"type": "string", "enum": ["manual", "rule", "ai"]});
    let technique = json!({"type": "string", "pattern": "^T[0-9]{4}(\\.[0-9]{3})?$"});
    let tactic = json!({"type": ["string", "null"], "pattern": "^TA[0-9]{4}$"});

    let alert = object(json!({
        "id": text, "source_uid": text,
        "format": {"type": "string", "enum": ["ocsf", "ecs", "native"]},
        "time": opt_text, "received_at": text, "title": text, "severity": text,
        "analytic_uid": opt_text, "product": opt_text, "connector": opt_text,
        "host": opt_text, "user": opt_text,
        "mapping_state": {"type": "string", "enum": ["mapped", "unmapped"]},
        "stale": boolean, "locked": boolean,
    }));
    let evidence = object(json!({"field": text, "value": text, "matched": text}));
    let candidate = object(json!({
        "id": text, "technique": technique, "tactic": tactic, "source": source,
        "confidence": confidence, "band": band, "evidence": array(evidence),
        "explanation": text, "rule_id": opt_text,
        "rule_version": {"type": ["integer", "null"]}, "model_version": opt_text,
        "vendor_declared": boolean, "domain": text, "release": text,
        "dataset_id": opt_text, "created_at": text,
    }));
    let lineage = object(json!({
        "candidates": array(text.clone()), "overrides": array(text.clone()),
        "producers": array(text.clone()),
    }));
    let entry = object(json!({
        "technique": technique, "tactic": tactic, "source": source,
        "confidence": confidence, "band": band, "lineage": lineage,
        "vendor_declared": boolean, "evidence_linked": boolean, "needs_review": boolean,
    }));
    let canonical = object(json!({
        "version": {"type": "integer", "minimum": 1},
        "decided_by": {"type": ["string", "null"], "enum": ["manual", "rule", "ai", null]},
        "explanation": text, "cause": text, "domain": text, "release": text,
        "dataset_id": opt_text, "computed_at": text,
        "flags": array(json!({"type": "object"})), "entries": array(entry),
    }));
    let override_row = object(json!({
        "id": text, "version": {"type": "integer"},
        "action": {"type": "string", "enum": ["add", "remove", "replace"]},
        "technique": technique, "tactic": tactic, "replaces": opt_text, "reason": text,
        "notes": opt_text, "actor": text,
        "status": {"type": "string", "enum": ["proposed", "approved", "rejected"]},
        "approved_by": opt_text, "supersedes": opt_text, "created_at": text,
    }));
    let history = object(json!({
        "version": {"type": "integer"}, "decided_by": opt_text,
        "entries": {"type": "integer"}, "cause": text, "release": text, "computed_at": text,
    }));
    let mut schema = object(json!({
        "schema_version": {"type": "string", "const": ALERT_MAPPING_SCHEMA_VERSION},
        "alert": alert, "canonical": canonical, "candidates": array(candidate),
        "overrides": array(override_row), "history": array(history),
    }));
    // Added within version 1, so optional: the view leaves it out when
    // empty, and every document valid before stays valid.
    let declaration = object(json!({
        "field": text, "technique": text,
        "status": {"type": "string", "enum": DECLARATION_STATUSES},
        "replaced_by": opt_text, "mapped_to": opt_text, "message": text,
    }));
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("declarations".into(), array(declaration));
    }
    if let Some(map) = schema.as_object_mut() {
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        map.insert(
            "$id".into(),
            json!("https://nexus-attack.example/schemas/alert-mapping.v1.json"),
        );
        map.insert(
            "title".into(),
            json!("nexus-attack alert mapping output, version 1"),
        );
    }
    schema
}

/// Checks `value` against the subset of JSON Schema that
/// [`alert_mapping_schema`] uses (type, required, additionalProperties,
/// properties, items, enum, const, pattern, minimum, maximum). Returns
/// every violation as `path: problem`.
pub fn check_schema(schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_at(schema, value, "$", &mut problems);
    problems
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn check_at(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.iter().any(|k| type_matches(k, value)) {
            problems.push(format!("{path}: expected {kinds:?}, got {value}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        problems.push(format!("{path}: expected {expected}, got {value}"));
    }
    if let (Some(pattern), Some(text)) = (
        schema.get("pattern").and_then(Value::as_str),
        value.as_str(),
    ) {
        match regex::Regex::new(pattern) {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => problems.push(format!("{path}: `{text}` does not match {pattern}")),
            Err(e) => problems.push(format!("{path}: bad pattern {pattern}: {e}")),
        }
    }
    if let Some(x) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            problems.push(format!("{path}: {x} < {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            problems.push(format!("{path}: {x} > {max}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                problems.push(format!("{path}: missing `{name}`"));
            }
        }
        for (name, v) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(s) => check_at(s, v, &format!("{path}.{name}"), problems),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    problems.push(format!("{path}: unexpected `{name}`"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, v) in values.iter().enumerate() {
            check_at(items, v, &format!("{path}[{i}]"), problems);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_finds_missing_extra_and_mistyped_fields() {
        let schema = object(json!({"a": {"type": "integer"}, "b": {"type": ["string", "null"]}}));
        assert!(check_schema(&schema, &json!({"a": 1, "b": null})).is_empty());
        let problems = check_schema(&schema, &json!({"a": "x", "c": 1}));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("missing `b`")));
        assert!(problems.iter().any(|p| p.contains("unexpected `c`")));
    }

    /// Where `new` would break a reader of documents valid under `old`, or
    /// refuse a document `old` accepted: a property removed or made
    /// required, a type, enum, const, pattern or bound changed, or objects
    /// opened or closed. Properties `new` adds must be optional.
    fn breaking_changes(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
        for key in [
            "type",
            "enum",
            "const",
            "pattern",
            "minimum",
            "maximum",
            "additionalProperties",
        ] {
            if old.get(key) != new.get(key) {
                out.push(format!("{path}: `{key}` changed"));
            }
        }
        if old.get("required") != new.get("required") {
            out.push(format!("{path}: `required` changed"));
        }
        if let Some(properties) = old.get("properties").and_then(Value::as_object) {
            for (name, schema) in properties {
                match new.get("properties").and_then(|p| p.get(name)) {
                    Some(now) => breaking_changes(schema, now, &format!("{path}.{name}"), out),
                    None => out.push(format!("{path}: `{name}` removed")),
                }
            }
        }
        match (old.get("items"), new.get("items")) {
            (Some(was), Some(now)) => breaking_changes(was, now, &format!("{path}[]"), out),
            (None, None) => {}
            _ => out.push(format!("{path}: `items` changed")),
        }
    }

    #[test]
    fn version_1_only_grows_by_optional_fields() {
        // The schema as version 1 was first published: every later change
        // within version 1 must keep its documents valid and its readers
        // working, or come with version 2.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/alert-mapping.v1.as-published.json");
        let published: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut breaking = Vec::new();
        breaking_changes(&published, &alert_mapping_schema(), "$", &mut breaking);
        assert_eq!(breaking, Vec::<String>::new());

        // The checker sees a breaking change: a field removed, one made
        // required, a type changed.
        let mut broken = alert_mapping_schema();
        broken["properties"]["alert"]["properties"]
            .as_object_mut()
            .unwrap()
            .remove("host");
        broken["required"]
            .as_array_mut()
            .unwrap()
            .push(json!("declarations"));
        broken["properties"]["canonical"]["properties"]["version"]["type"] = json!("string");
        let mut found = Vec::new();
        breaking_changes(&published, &broken, "$", &mut found);
        assert_eq!(
            found,
            vec![
                "$: `required` changed",
                "$.alert: `host` removed",
                "$.canonical.version: `type` changed",
            ]
        );
        // The field added within version 1 names the statuses the view uses.
        let declarations = &alert_mapping_schema()["properties"]["declarations"];
        assert_eq!(
            declarations["items"]["properties"]["status"]["enum"],
            json!(DECLARATION_STATUSES)
        );
    }

    #[test]
    fn the_schema_file_is_what_the_code_generates() {
        // A change to the output shape must come with a new schema file (and
        // a new version when it breaks clients): CI fails until it does.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/schemas/alert-mapping.v1.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let stored: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            stored,
            alert_mapping_schema(),
            "regenerate {} from alert_mapping_schema()",
            path.display()
        );
    }
}
