//! Incidents and their ATT&CK profiles (issue 4): create, attach and detach
//! alerts, show the profile with lineage, merge, split, lead adjustments,
//! status, severity and evidence, with staleness.
//!
//! # The profile
//!
//! Computed on every read by [`mapping::incident::profile_of_entries`] (the
//! rule of [`mapping::incident::profile`]) from the current canonical
//! mappings of the live attached alerts and the incident's lead
//! adjustments; never stored, never copied from one alert. Frequency counts
//! contributing alerts; confidence is a noisy-OR over distinct producers (see
//! the `mapping::incident` documentation); each entry links back to every
//! contributing alert and the candidates behind it on that alert.
//!
//! # Merge and split
//!
//! - `merge(A, B)`: A survives. B's live alerts become A's (an alert in both
//!   counts once) without a write per alert: B's attachments serve A from
//!   then on (see `store::Tx::merge_incident`); B is marked
//!   `merged_into = A`, holds no alert itself and takes no further change.
//!   Alert overrides follow the alerts (they are the alerts' own). Lead
//!   adjustments stay where they were made, and A reads its own plus those
//!   of every incident merged into it, in approval order, so A keeps its own
//!   and takes B's.
//! - `split(X, alerts)`: a new incident takes the named alerts (and with them
//!   their overrides and lineage); X keeps its identity, its other alerts and
//!   every lead adjustment. Both sides must keep at least one alert.
//!
//! Each side's profile is recomputed from its alerts afterwards.
//!
//! # Staleness
//!
//! Reopening, a severity shift, a new evidence reference, a merge (the
//! survivor) and a split (both sides) mark the incident's profile stale with
//! the reason, each distinct reason (kind and details) once; a lead
//! adjustment (the lead re-evaluating the profile) clears the mark. An
//! entry computed under an ATT&CK release other than the active one is
//! stale on read (a new active release).
//!
//! Stale incidents wait in the review queue beside the alerts, so analysts
//! working the queue see them: every trigger opens the incident's `stale`
//! item in the transaction of the change, or adds its reasons to the item
//! already open (one open item per incident and reason). A finished
//! (resolved or closed) incident is marked but not queued; reopening queues
//! it. Activating a release queues, in the activation's transaction, every
//! incident neither merged nor finished whose profile has an entry computed
//! under another release of the domain, with reason `release_activated`;
//! the re-mapping that follows takes that reason off again once none of the
//! incident's entries is outdated, resolving an item left without a reason
//! (`system:recompute`). A merge resolves the absorbed incident's open item
//! (`system:merge`): it takes no further change. Those closures by the
//! product carry no time to validate. The item is resolved, with its time
//! to validate, by a lead adjustment (`corrected`), or by the
//! review actions: accept (the profile still holds; clears the stale mark),
//! reject (the mark stays for the lead), correct (a lead adjustment). See
//! `crate::overrides`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;

use mapping::incident::{AlertEntry, Incident, IncidentError, merge, profile_of_entries, split};
use mapping::overrides::{OverrideMeta, OverrideRequest};
use mapping::staleness::StaleReason;
use mapping::{
    CanonicalSet, Confidence, Override, OverrideAction, OverrideStatus, ReasonCode, Source, Subject,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{
    AdjustmentRecord, AlertId, EvidenceRecord, IncidentId, IncidentRecord, OrgId, OrgScope,
    ProfileRows, ReviewRecord, Tx,
};
use taxonomy::{Domain, TacticId, TechniqueId};

use crate::alert_view::{array, object};
use crate::{Action, Actor, App, Outcome, Page, PageRequest, Result, ServiceError};

/// Version of the `incidents show --json` contract
/// (`docs/schemas/incident-profile.v1.json`).
pub const INCIDENT_PROFILE_SCHEMA_VERSION: &str = "1";

/// Incident statuses, in lifecycle order.
pub const INCIDENT_STATUSES: [&str; 5] = ["open", "contained", "resolved", "closed", "reopened"];

/// Incident severities, least to most severe.
pub const INCIDENT_SEVERITIES: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// Reason codes of a lead adjustment (those of overrides).
pub const ADJUSTMENT_REASONS: [&str; 6] = ReasonCode::ALL;

/// A new incident as asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentInput {
    /// Title (required).
    pub title: String,
    /// Severity (default `medium`).
    #[serde(default)]
    pub severity: Option<String>,
    /// The incident lead.
    #[serde(default)]
    pub lead: Option<String>,
    /// Alerts to attach: product ids or source uids.
    #[serde(default)]
    pub alerts: Vec<String>,
}

/// A lead adjustment as asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentInput {
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// The technique added (add, replace) or removed (remove).
    pub technique: String,
    /// Its tactic.
    #[serde(default)]
    pub tactic: Option<String>,
    /// For `replace`: the technique replaced.
    #[serde(default)]
    pub replaces: Option<String>,
    /// For `replace`: its tactic.
    #[serde(default)]
    pub replaces_tactic: Option<String>,
    /// Reason code (required), as for overrides.
    #[serde(default)]
    pub reason: Option<String>,
    /// The lead's rationale (required).
    #[serde(default)]
    pub rationale: Option<String>,
    /// Evidence references behind it; the incident's own references count
    /// when none are given, and at least one is needed.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Confidence of the entry (default 1.0).
    #[serde(default)]
    pub confidence: Option<f64>,
}

/// One alert of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAlertView {
    /// The product's alert id.
    pub id: String,
    /// The alert's source uid.
    pub source_uid: String,
}

/// The candidates behind a profile entry on one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLineage {
    /// The product's alert id.
    pub alert: String,
    /// The alert's source uid.
    pub source_uid: String,
    /// Candidate ids on that alert.
    pub candidates: Vec<String>,
    /// Alert override ids behind the entry on that alert.
    pub overrides: Vec<String>,
}

/// One entry of an incident profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileEntryView {
    /// The technique.
    pub technique: String,
    /// The tactic.
    pub tactic: Option<String>,
    /// Contributing alerts that carry the pair.
    pub frequency: usize,
    /// Aggregated confidence.
    pub confidence: f64,
    /// Its band.
    pub band: String,
    /// Sources behind the pair, sorted.
    pub sources: Vec<String>,
    /// Contributing alert ids, sorted.
    pub alerts: Vec<String>,
    /// Candidate ids behind the pair, sorted.
    pub candidates: Vec<String>,
    /// Per contributing alert, the candidates behind the pair.
    pub lineage: Vec<AlertLineage>,
    /// Lead adjustments that shaped the entry, in order applied.
    pub adjustments: Vec<String>,
    /// True when a staleness trigger since the last review affects it.
    pub stale: bool,
}

/// One lead adjustment as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdjustmentView {
    /// Id.
    pub id: String,
    /// The incident it was made on (another one before a merge).
    pub incident: String,
    /// Per-incident version.
    pub version: i64,
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// Technique.
    pub technique: String,
    /// Tactic.
    pub tactic: Option<String>,
    /// For replace: the technique replaced.
    pub replaces: Option<String>,
    /// Reason code.
    pub reason: String,
    /// The lead's rationale.
    pub rationale: String,
    /// Evidence references.
    pub evidence: Vec<String>,
    /// Confidence the entry gets.
    pub confidence: f64,
    /// Who made it.
    pub actor: String,
    /// `proposed`, `approved` or `rejected`.
    pub status: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<String>,
    /// When it was stored.
    pub created_at: String,
}

/// One evidence reference as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentEvidenceView {
    /// Id.
    pub id: String,
    /// Kind of reference.
    pub kind: String,
    /// The reference.
    pub reference: String,
    /// Who added it.
    pub added_by: String,
    /// When.
    pub added_at: String,
}

/// An incident with its ATT&CK profile: the `incidents show --json`
/// contract, version [`INCIDENT_PROFILE_SCHEMA_VERSION`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentProfileView {
    /// Contract version.
    pub schema_version: String,
    /// The incident id.
    pub id: String,
    /// Title.
    pub title: String,
    /// `open`, `contained`, `resolved`, `closed` or `reopened`.
    pub status: String,
    /// Severity.
    pub severity: String,
    /// The incident lead.
    pub lead: Option<String>,
    /// The incident this one was merged into.
    pub merged_into: Option<String>,
    /// The incident this one was split from.
    pub split_from: Option<String>,
    /// Incidents merged into this one.
    pub merged_from: Vec<String>,
    /// True when any profile entry is stale.
    pub stale: bool,
    /// Why (staleness reasons since the last review).
    pub stale_reasons: Vec<Value>,
    /// The active Enterprise release the profile is read under, if any.
    pub release: Option<String>,
    /// Live attached alerts, ordered by id.
    pub alerts: Vec<IncidentAlertView>,
    /// The profile, ordered by technique then tactic.
    pub profile: Vec<ProfileEntryView>,
    /// Every lead adjustment (own and merged in), oldest first.
    pub adjustments: Vec<AdjustmentView>,
    /// Evidence references, oldest first.
    pub evidence: Vec<IncidentEvidenceView>,
    /// Created at.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// One incident in the org's incident list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummary {
    /// The incident id.
    pub id: String,
    /// Title.
    pub title: String,
    /// `open`, `contained`, `resolved`, `closed` or `reopened`.
    pub status: String,
    /// Severity.
    pub severity: String,
    /// Live attached alerts.
    pub alert_count: u64,
    /// Last change of the record, its alerts, evidence or adjustments.
    pub updated_at: String,
    /// The incident this one was merged into (it takes no further change).
    pub merged_into: Option<String>,
    /// True while a staleness trigger waits for a lead's review.
    pub stale: bool,
}

/// What a split did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOutcome {
    /// The new incident's id.
    pub id: String,
    /// The incident split (it keeps its identity).
    pub split_from: String,
    /// The new incident with its profile.
    pub created: IncidentProfileView,
    /// The original incident with its recomputed profile.
    pub remaining: IncidentProfileView,
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `(updated_at, id)` inside an incident list cursor.
fn parse_incident_cursor(cursor: &str) -> Result<(chrono::DateTime<chrono::Utc>, IncidentId)> {
    let bad = || invalid("cursor", "not a cursor returned by this API");
    let (at, id) = cursor.split_once('|').ok_or_else(bad)?;
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&chrono::Utc);
    if id.is_empty() {
        return Err(bad());
    }
    Ok((at, IncidentId(id.to_string())))
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidInput {
        field: field.to_string(),
        message: message.into(),
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound {
        kind: "incident",
        id: id.to_string(),
    }
}

fn json_list(text: &str, what: &str) -> Result<Vec<String>> {
    if text == "[]" {
        return Ok(Vec::new());
    }
    serde_json::from_str(text)
        .map_err(|e| ServiceError::Internal(format!("stored {what} `{text}` is corrupt: {e}")))
}

/// The record's stale reasons, each distinct reason once (a record written
/// before reasons were kept distinct may hold one twice).
fn stale_reasons(record: &IncidentRecord) -> Vec<Value> {
    let stored: Vec<Value> = serde_json::from_str(&record.stale_reasons).unwrap_or_default();
    let mut reasons = Vec::with_capacity(stored.len());
    for reason in stored {
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    reasons
}

/// Adds a staleness reason to the record (kept until a lead review). A
/// reason is kept once: one of the same kind with the same details (two
/// merges, two evidence references of one kind) is the same reason, while
/// two severity shifts between different severities are two.
fn mark_stale(record: &mut IncidentRecord, reason: &StaleReason) {
    let mut reasons = stale_reasons(record);
    let reason = serde_json::to_value(reason).unwrap_or(Value::Null);
    if !reasons.contains(&reason) {
        reasons.push(reason);
    }
    record.stale = true;
    record.stale_reasons = Value::Array(reasons).to_string();
}

/// The review reason of an incident's item.
const STALE: &str = "stale";

/// The `reason` of [`StaleReason::ReleaseActivated`] as stored.
const RELEASE_ACTIVATED: &str = "release_activated";

/// Who resolves an incident's open review item that only waited for its
/// alerts to be re-mapped under the active release, once they are (see
/// [`App::settle_release_stale`]); alerts' stale items resolved by a
/// recomputation name the same.
const REMAP_RESOLVER: &str = "system:recompute";

/// Who resolves an incident's open review item when the incident is
/// resolved or closed (the audit event names the person who changed the
/// status).
const STATUS_RESOLVER: &str = "system:status";

/// True for the statuses of a finished incident (`resolved`, `closed`).
fn is_done(status: &str) -> bool {
    matches!(status, "resolved" | "closed")
}

/// The stale incident and its reasons as [`queue_stale`] takes them, unless
/// it is finished: a resolved or closed incident's profile waits for
/// nobody's review. It keeps the stale mark and its reasons, which the lead
/// still sees, and reopening it queues it with all of them.
fn to_queue(record: &IncidentRecord) -> Vec<(IncidentId, Vec<Value>)> {
    if is_done(&record.status) {
        return Vec::new();
    }
    vec![(record.id.clone(), stale_reasons(record))]
}

/// Puts stale incidents in the review queue inside `tx`, the transaction of
/// the change that made them stale: an incident without an open `stale`
/// item gets one whose detail is `reasons`; one with an open item keeps it,
/// and its detail gains the reasons it did not hold yet. Answers the items
/// opened.
pub(crate) async fn queue_stale(
    tx: &mut Tx,
    scope: &OrgScope,
    stale: &[(IncidentId, Vec<Value>)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    if stale.is_empty() {
        return Ok(0);
    }
    let ids: Vec<IncidentId> = stale.iter().map(|(id, _)| id.clone()).collect();
    let open = tx.open_incident_reviews(scope, STALE, &ids).await?;
    let open: HashMap<&IncidentId, &ReviewRecord> = open
        .iter()
        .filter_map(|r| Some((r.incident_id.as_ref()?, r)))
        .collect();

    let mut new = Vec::new();
    let mut details = Vec::new();
    for (incident, reasons) in stale {
        match open.get(incident) {
            Some(item) => {
                let mut held: Vec<Value> = serde_json::from_str(&item.detail).unwrap_or_default();
                let before = held.len();
                for reason in reasons {
                    if !held.contains(reason) {
                        held.push(reason.clone());
                    }
                }
                if held.len() != before {
                    details.push((item.id.clone(), Value::Array(held).to_string()));
                }
            }
            None => new.push(ReviewRecord {
                id: uuid::Uuid::now_v7().to_string(),
                org_id: scope.org().clone(),
                alert_id: None,
                incident_id: Some(incident.clone()),
                reason: STALE.into(),
                detail: Value::Array(reasons.clone()).to_string(),
                state: "open".into(),
                opened_at: now,
                resolved_at: None,
                resolved_by: None,
                resolution: None,
                interactions: 0,
            }),
        }
    }
    tx.set_review_details(scope, &details).await?;
    Ok(tx.open_reviews(new).await?)
}

/// How [`App::resolve_stale_items`] resolves an incident's items.
#[derive(Clone, Copy)]
struct StaleResolution<'a> {
    /// `accepted`, `rejected` or `corrected`.
    state: &'a str,
    /// Who (an actor, or `system:...`).
    by: &'a str,
    /// The resolution (JSON text).
    resolution: &'a str,
    /// When.
    at: chrono::DateTime<chrono::Utc>,
}

/// Notification kind of an incident's review item rejected by an analyst.
pub const INCIDENT_REVIEW_REJECTED: &str = "incident_review_rejected";

/// Tells the org's leads, inside `tx`, that `by` rejected the review item
/// of an incident's stale profile: the profile needs the lead (the stale
/// mark stays). Addressed to the role `lead`, like every notification for
/// leads (they are read by role); the message names the incident's own lead
/// when it has one, and the subject (`incident:<id>`) the incident. Answers
/// the notification's id.
pub(crate) async fn notify_rejected_review(
    tx: &mut Tx,
    scope: &OrgScope,
    incident: &IncidentId,
    item: &ReviewRecord,
    by: &str,
    notes: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let record = tx
        .lock_incidents(scope, &[incident])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(incident.as_str()))?;
    let reasons: Vec<Value> = serde_json::from_str(&item.detail).unwrap_or_default();
    let reasons: Vec<&str> = reasons
        .iter()
        .filter_map(|r| r.get("reason").and_then(Value::as_str))
        .collect();
    let lead = match &record.lead {
        Some(lead) => format!("its lead, {lead}"),
        None => "a lead".to_string(),
    };
    let mut message = format!(
        "{by} rejected review item {} of incident {} ({}): its profile is stale ({}) and \
         needs {lead}",
        item.id,
        record.id,
        record.title,
        reasons.join(", ")
    );
    if let Some(notes) = notes.filter(|n| !n.trim().is_empty()) {
        message.push_str(&format!("; notes: {}", notes.trim()));
    }
    let entry = store::NotificationEntry {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: Some(scope.org().clone()),
        recipient: "lead".into(),
        kind: INCIDENT_REVIEW_REJECTED.into(),
        subject: Some(format!("incident:{}", record.id)),
        alert_id: None,
        message,
        created_at: now,
        read_at: None,
        read_by: None,
    };
    tx.insert_notification_entry(&entry).await?;
    Ok(entry.id)
}

/// Clears the stale mark of an incident inside `tx` (its review said the
/// profile still holds).
pub(crate) async fn clear_stale_mark(
    tx: &mut Tx,
    scope: &OrgScope,
    incident: &IncidentId,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    for mut record in tx.lock_incidents(scope, &[incident]).await? {
        if record.stale || record.stale_reasons != "[]" {
            record.stale = false;
            record.stale_reasons = "[]".into();
            record.updated_at = now;
            tx.update_incident(scope, &record).await?;
        }
    }
    Ok(())
}

fn normalized(value: &str, allowed: &[&str], field: &str) -> Result<String> {
    let v = value.trim().to_ascii_lowercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(invalid(
            field,
            format!("`{value}` is not one of: {}", allowed.join(", ")),
        ))
    }
}

/// An incident of the pure model holding only its alerts' identities, to
/// run the pure merge and split checks over stored attachments.
fn shell(id: &IncidentId, alerts: &[AlertId]) -> Incident {
    Incident {
        id: id.to_string(),
        alerts: alerts
            .iter()
            .map(|a| CanonicalSet {
                subject: Subject::alert(a.as_str()),
                decided_by: None,
                entries: Vec::new(),
                flags: Vec::new(),
                pending_review: Vec::new(),
            })
            .collect(),
        adjustments: Vec::new(),
    }
}

/// Refuses naming an alert the incident does not hold; nothing changes.
fn refuse_unheld(
    incident: &IncidentId,
    wanted: &[AlertId],
    held: &BTreeSet<AlertId>,
) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|a| !held.contains(*a))
        .map(AlertId::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(invalid(
        "alerts",
        format!(
            "incident {incident} does not hold alert(s) {}",
            missing.join(", ")
        ),
    ))
}

/// The refusal of a change to a merged incident, which takes none: its
/// details name the incident it was merged into and the survivor (the end of
/// its merge chain, `survivor` as stored, else the incident it was merged
/// into), which holds its alerts now and is the one to change.
fn merged_conflict(record: &IncidentRecord, survivor: Option<IncidentId>) -> ServiceError {
    let Some(into) = &record.merged_into else {
        return ServiceError::Internal(format!("incident {} is not merged", record.id));
    };
    let survivor = survivor.unwrap_or_else(|| into.clone());
    let message = if &survivor == into {
        format!(
            "incident {} was merged into {into}: change that one",
            record.id
        )
    } else {
        format!(
            "incident {} was merged into {into}, itself merged into {survivor}: change that one",
            record.id
        )
    };
    ServiceError::StateConflict {
        message,
        details: json!({
            "incident": record.id,
            "state": "merged",
            "merged_into": into,
            "survivor": survivor,
        }),
    }
}

fn incident_error(e: IncidentError) -> ServiceError {
    let field = match e {
        IncidentError::SelfMerge(_) => "incidents",
        _ => "alerts",
    };
    invalid(field, e.to_string())
}

/// A stored adjustment as the pure model's override of `subject`.
fn adjustment_override(a: &AdjustmentRecord, subject: &Subject) -> Result<Override> {
    let corrupt = |what: &str| {
        ServiceError::Internal(format!("stored adjustment {} has a corrupt {what}", a.id))
    };
    let target = |technique: &str, tactic: Option<&str>| -> Result<mapping::overrides::Target> {
        Ok(mapping::overrides::Target {
            technique: TechniqueId::parse(technique).map_err(|_| corrupt("technique"))?,
            tactic: tactic
                .map(TacticId::parse)
                .transpose()
                .map_err(|_| corrupt("tactic"))?,
        })
    };
    Ok(Override {
        id: a.id.clone(),
        subject: subject.clone(),
        version: u32::try_from(a.version).map_err(|_| corrupt("version"))?,
        action: a
            .action
            .parse::<OverrideAction>()
            .map_err(|_| corrupt("action"))?,
        target: target(&a.technique, a.tactic.as_deref())?,
        replaces: a
            .replaces_technique
            .as_deref()
            .map(|t| target(t, a.replaces_tactic.as_deref()))
            .transpose()?,
        reason: a
            .reason
            .parse::<ReasonCode>()
            .map_err(|_| corrupt("reason"))?,
        notes: Some(a.rationale.clone()),
        confidence: Confidence::new(a.confidence).map_err(|_| corrupt("confidence"))?,
        actor: a.actor.clone(),
        status: match a.status.as_str() {
            "approved" => OverrideStatus::Approved,
            "rejected" => OverrideStatus::Rejected,
            _ => OverrideStatus::Proposed,
        },
        decided_at: a.approved_at,
    })
}

fn adjustment_view(a: &AdjustmentRecord) -> AdjustmentView {
    AdjustmentView {
        id: a.id.clone(),
        incident: a.incident_id.to_string(),
        version: a.version,
        action: a.action.clone(),
        technique: a.technique.clone(),
        tactic: a.tactic.clone(),
        replaces: a.replaces_technique.clone(),
        reason: a.reason.clone(),
        rationale: a.rationale.clone(),
        evidence: serde_json::from_str(&a.evidence).unwrap_or_default(),
        confidence: a.confidence,
        actor: a.actor.clone(),
        status: a.status.clone(),
        approved_by: a.approved_by.clone(),
        approved_at: a.approved_at.as_ref().map(ts),
        created_at: ts(&a.created_at),
    }
}

/// The stored rows of a profile, decoded once for the aggregation and the
/// lineage: each ATT&CK id parsed once per distinct text, each alert's
/// candidate ids borrowed from the stored JSON text. A 10,000-alert incident
/// has some 12,000 entries; building a canonical set of owned strings per
/// alert cost more than the aggregation itself.
struct DecodedRows<'r> {
    /// The live alerts, ordered by id: (alert id, source uid).
    alerts: Vec<(&'r str, &'r str)>,
    /// The canonical entries, ordered by alert id.
    entries: Vec<DecodedEntry<'r>>,
    /// The distinct techniques and tactics the entries name.
    techniques: Vec<TechniqueId>,
    tactics: Vec<TacticId>,
    /// The candidate ids and producer keys of every entry, back to back.
    ids: Vec<Cow<'r, str>>,
}

/// One canonical entry of [`DecodedRows`].
struct DecodedEntry<'r> {
    /// Index of its alert in [`DecodedRows::alerts`].
    alert: usize,
    /// Index of its technique and tactic in [`DecodedRows`].
    technique: usize,
    tactic: Option<usize>,
    source: Source,
    confidence: Confidence,
    candidates: Range<usize>,
    producers: Range<usize>,
    override_ids: &'r str,
    release: &'r str,
}

/// Gives each distinct text an index, parsing it once.
struct Interner<'r, T> {
    index: HashMap<&'r str, usize>,
    values: Vec<T>,
}

impl<'r, T> Interner<'r, T> {
    fn new() -> Self {
        Interner {
            index: HashMap::new(),
            values: Vec::new(),
        }
    }

    fn get_or_parse(
        &mut self,
        text: &'r str,
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Result<usize> {
        if let Some(&at) = self.index.get(text) {
            return Ok(at);
        }
        self.values.push(parse(text)?);
        self.index.insert(text, self.values.len() - 1);
        Ok(self.values.len() - 1)
    }
}

impl<'r> DecodedRows<'r> {
    fn new(rows: &'r ProfileRows) -> Result<DecodedRows<'r>> {
        let mut alerts: Vec<(&'r str, &'r str)> = Vec::new();
        let mut entries = Vec::with_capacity(rows.len());
        let mut techniques = Interner::new();
        let mut tactics = Interner::new();
        let mut ids = Vec::with_capacity(2 * rows.len());
        // Producer keys repeat across alerts (one rule, many alerts): their
        // ids are decoded once per distinct text.
        let mut producers: HashMap<&'r str, Range<usize>> = HashMap::new();
        for row in rows.iter() {
            // Rows come ordered by alert id: an alert with several entries
            // is one run of rows.
            if alerts.last().is_none_or(|(id, _)| *id != row.alert_id) {
                alerts.push((row.alert_id, row.source_uid));
            }
            let Some(e) = row.entry else { continue };
            let corrupt = |what: &str| {
                ServiceError::Internal(format!(
                    "stored canonical mapping of alert {} has a corrupt {what}",
                    row.alert_id
                ))
            };
            let technique = techniques.get_or_parse(e.technique, |t| {
                TechniqueId::parse(t).map_err(|_| corrupt("technique"))
            })?;
            let tactic = e
                .tactic
                .map(|t| {
                    tactics.get_or_parse(t, |t| TacticId::parse(t).map_err(|_| corrupt("tactic")))
                })
                .transpose()?;
            let candidates = id_list(e.candidate_ids, "candidate ids", &mut ids)?;
            let producers = match producers.get(e.producers) {
                Some(range) => range.clone(),
                None => {
                    let range = id_list(e.producers, "producers", &mut ids)?;
                    producers.insert(e.producers, range.clone());
                    range
                }
            };
            entries.push(DecodedEntry {
                alert: alerts.len() - 1,
                technique,
                tactic,
                source: e.source.parse::<Source>().map_err(|_| corrupt("source"))?,
                confidence: Confidence::new(e.confidence).map_err(|_| corrupt("confidence"))?,
                candidates,
                producers,
                override_ids: e.override_ids,
                release: e.release,
            });
        }
        Ok(DecodedRows {
            alerts,
            entries,
            techniques: techniques.values,
            tactics: tactics.values,
            ids,
        })
    }

    /// The pair an entry feeds.
    fn pair(&self, e: &DecodedEntry<'r>) -> (&TechniqueId, Option<&TacticId>) {
        (
            &self.techniques[e.technique],
            e.tactic.map(|t| &self.tactics[t]),
        )
    }

    /// The entries as the aggregation reads them.
    fn alert_entries(&self) -> impl Iterator<Item = AlertEntry<'_, Cow<'r, str>>> + '_ {
        self.entries.iter().map(|e| {
            let (technique, tactic) = self.pair(e);
            AlertEntry {
                alert: self.alerts[e.alert].0,
                technique,
                tactic,
                source: e.source,
                confidence: e.confidence,
                candidates: &self.ids[e.candidates.clone()],
                producers: &self.ids[e.producers.clone()],
            }
        })
    }
}

/// Appends the ids of a stored JSON array to `ids` and answers their range
/// there; borrowed from the text unless an id holds an escape.
fn id_list<'r>(text: &'r str, what: &str, ids: &mut Vec<Cow<'r, str>>) -> Result<Range<usize>> {
    let start = ids.len();
    if text != "[]" {
        match serde_json::from_str::<Vec<&'r str>>(text) {
            Ok(list) => ids.extend(list.into_iter().map(Cow::Borrowed)),
            Err(_) => ids.extend(json_list(text, what)?.into_iter().map(Cow::Owned)),
        }
    }
    Ok(start..ids.len())
}

impl App {
    /// An incident of the scope, or `not_found` (also for another org's).
    async fn existing_incident(&self, scope: &OrgScope, id: &str) -> Result<IncidentRecord> {
        self.store
            .incident(scope, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// What attach and detach both start from: the incident, which may
    /// still change (not merged into another one), and the alerts the
    /// caller names (resolved in the org; naming none is refused).
    async fn alert_change(
        &self,
        scope: &OrgScope,
        id: &str,
        alerts: &[String],
    ) -> Result<(IncidentRecord, Vec<AlertId>)> {
        let record = self.open_incident(scope, id).await?;
        // Blank references name nothing (resolving drops them): a request
        // of blanks alone is refused like an empty one, not a no-op.
        if alerts.iter().all(|a| a.trim().is_empty()) {
            return Err(invalid("alerts", "name at least one alert"));
        }
        let wanted = self.resolve_alerts(scope, alerts).await?;
        Ok((record, wanted))
    }

    /// An incident that may still change: not merged into another one.
    async fn open_incident(&self, scope: &OrgScope, id: &str) -> Result<IncidentRecord> {
        let record = self.existing_incident(scope, id).await?;
        if record.merged_into.is_some() {
            let survivor = self.store.incident_survivor(scope, &record.id).await?;
            return Err(merged_conflict(&record, survivor));
        }
        Ok(record)
    }

    /// An incident that may still change, read inside `tx` with its row
    /// locked until the transaction ends: a change decides on, and writes
    /// over, the record as it is now, so two concurrent changes (two
    /// staleness triggers each adding a reason, say) cannot undo each
    /// other. PostgreSQL locks the row (`FOR UPDATE`); SQLite's write
    /// transaction holds the database's write lock from its start.
    async fn lock_open_incident(
        &self,
        tx: &mut Tx,
        scope: &OrgScope,
        id: &str,
    ) -> Result<IncidentRecord> {
        let id = IncidentId(id.to_string());
        let record = tx
            .lock_incidents(scope, &[&id])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| not_found(id.as_str()))?;
        if record.merged_into.is_some() {
            let survivor = tx.incident_survivor(scope, &record.id).await?;
            return Err(merged_conflict(&record, survivor));
        }
        Ok(record)
    }

    /// [`App::lock_open_incident`] with the alerts the incident holds, read
    /// under that lock: attach, detach and split decide on them, and a
    /// change committed since any earlier read (a concurrent attach,
    /// detach or split of the same alerts) is decided over, not undone.
    async fn lock_with_alerts(
        &self,
        tx: &mut Tx,
        scope: &OrgScope,
        id: &IncidentId,
    ) -> Result<(IncidentRecord, BTreeSet<AlertId>)> {
        let record = self.lock_open_incident(tx, scope, id.as_str()).await?;
        let held = tx
            .incident_alert_ids(scope, &record.id)
            .await?
            .into_iter()
            .collect();
        Ok((record, held))
    }

    /// Resolves alert references (ids or source uids) of the scope; any
    /// reference that names nothing there is `not_found`, whether missing
    /// or another org's.
    async fn resolve_alerts(&self, scope: &OrgScope, refs: &[String]) -> Result<Vec<AlertId>> {
        let refs: Vec<String> = refs
            .iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        let found = self.store.resolve_alert_refs(scope, &refs).await?;
        let known: HashMap<&str, &AlertId> = found.iter().map(|(r, a)| (r.as_str(), a)).collect();
        let mut ids = Vec::with_capacity(refs.len());
        // A set, not a scan of `ids`: 10,000 references were 50 million
        // comparisons.
        let mut seen = HashSet::with_capacity(refs.len());
        for r in &refs {
            let id = known
                .get(r.as_str())
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "alert",
                    id: r.clone(),
                })?;
            if seen.insert(*id) {
                ids.push((*id).clone());
            }
        }
        Ok(ids)
    }

    /// Creates an incident, optionally with alerts. Role analyst or above.
    pub async fn create_incident(
        &self,
        actor: &Actor,
        org: &str,
        input: IncidentInput,
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentWrite, ("incident", "*"))
            .await?;
        let scope = self.scope(actor, org).await?;
        let title = input.title.trim();
        if title.is_empty() {
            return Err(invalid("title", "an incident needs a title"));
        }
        let severity = normalized(
            input.severity.as_deref().unwrap_or("medium"),
            &INCIDENT_SEVERITIES,
            "severity",
        )?;
        // Leaving the alerts out makes an incident without alerts; naming
        // only blanks is a slip, refused as attach refuses it.
        if !input.alerts.is_empty() && input.alerts.iter().all(|a| a.trim().is_empty()) {
            return Err(invalid(
                "alerts",
                "name at least one alert, or leave `alerts` out for an incident without alerts",
            ));
        }
        let alerts = self.resolve_alerts(&scope, &input.alerts).await?;

        let now = store::now();
        let record = IncidentRecord {
            id: IncidentId::generate(),
            org_id: scope.org().clone(),
            title: title.to_string(),
            status: "open".into(),
            severity,
            lead: input.lead.filter(|l| !l.trim().is_empty()),
            created_by: actor.name.clone(),
            created_at: now,
            updated_at: now,
            merged_into: None,
            split_from: None,
            stale: false,
            stale_reasons: "[]".into(),
        };
        let mut tx = self.store.begin_in(&scope).await?;
        tx.insert_incident(&record).await?;
        tx.attach_alerts(&scope, &record.id, &alerts, &actor.name, &now)
            .await?;
        let details = json!({"title": record.title, "severity": record.severity,
            "alerts": alerts.len()});
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_create",
            ("incident", record.id.as_str()),
            details,
        ))
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// Attaches alerts (ids or source uids) to an incident; alerts already
    /// attached are left as they are, also when a concurrent attach of the
    /// same alerts commits first (decided under the incident's lock). An
    /// alert of another org is `not_found`, and then nothing is attached.
    pub async fn attach_alerts(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        alerts: &[String],
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentWrite, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let (record, wanted) = self.alert_change(&scope, id, alerts).await?;

        let now = store::now();
        let mut tx = self.store.begin_in(&scope).await?;
        let (mut record, held) = self.lock_with_alerts(&mut tx, &scope, &record.id).await?;
        let new: Vec<AlertId> = wanted.into_iter().filter(|a| !held.contains(a)).collect();
        record.updated_at = now;
        tx.attach_alerts(&scope, &record.id, &new, &actor.name, &now)
            .await?;
        tx.update_incident(&scope, &record).await?;
        let details = json!({"alerts": new});
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_attach",
            ("incident", record.id.as_str()),
            details,
        ))
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// Detaches alerts from an incident; the attachment stays as history.
    /// Naming an alert the incident does not hold is refused and nothing
    /// changes.
    pub async fn detach_alerts(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        alerts: &[String],
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentWrite, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let (record, wanted) = self.alert_change(&scope, id, alerts).await?;

        let now = store::now();
        let mut tx = self.store.begin_in(&scope).await?;
        let (mut record, held) = self.lock_with_alerts(&mut tx, &scope, &record.id).await?;
        refuse_unheld(&record.id, &wanted, &held)?;
        record.updated_at = now;
        tx.detach_alerts(&scope, &record.id, &wanted, &actor.name, &now)
            .await?;
        tx.update_incident(&scope, &record).await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_detach",
            ("incident", record.id.as_str()),
            json!({"alerts": wanted}),
        ))
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// The incident with its ATT&CK profile, recomputed now.
    pub async fn incident_profile(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::ReadMappings, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let record = self.existing_incident(&scope, id).await?;
        self.profile_view(&scope, &record).await
    }

    /// The org's incidents, most recently updated first, a page at a time.
    /// The cursor is the `updated_at|id` of the last incident of the
    /// previous page, so incidents changed while a client pages move to the
    /// front instead of being listed twice.
    pub async fn list_incidents(
        &self,
        actor: &Actor,
        org: &str,
        page: &PageRequest,
    ) -> Result<Page<IncidentSummary>> {
        self.authorize(actor, Action::ReadMappings, ("incident", "*"))
            .await?;
        let scope = self.scope(actor, org).await?;
        let before = page
            .cursor
            .as_deref()
            .map(parse_incident_cursor)
            .transpose()?;
        let limit = page.effective_limit();

        // One extra row tells whether another page follows.
        let mut rows = self
            .store
            .incidents_page(
                &scope,
                before.as_ref().map(|(at, id)| (at, id)),
                i64::try_from(limit + 1).unwrap_or(i64::MAX),
            )
            .await?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last()
                .map(|r| format!("{}|{}", ts(&r.updated_at), r.id))
        } else {
            None
        };
        let items = rows
            .into_iter()
            .map(|r| IncidentSummary {
                id: r.id.to_string(),
                title: r.title,
                status: r.status,
                severity: r.severity,
                alert_count: u64::try_from(r.alert_count).unwrap_or(0),
                updated_at: ts(&r.updated_at),
                merged_into: r.merged_into.map(|m| m.to_string()),
                stale: r.stale,
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    /// Merges incident `absorbed` into `survivor` (see the module
    /// documentation); both must belong to the org and be unmerged.
    pub async fn merge_incidents(
        &self,
        actor: &Actor,
        org: &str,
        survivor: &str,
        absorbed: &str,
    ) -> Result<IncidentProfileView> {
        let started = std::time::Instant::now();
        self.authorize(actor, Action::IncidentWrite, ("incident", survivor))
            .await?;
        let scope = self.scope(actor, org).await?;
        let kept = self.open_incident(&scope, survivor).await?;
        let gone = self.open_incident(&scope, absorbed).await?;
        // The pure rule refuses merging an incident with itself; the union
        // it defines (an alert both hold counts once) is what the survivor
        // reads from then on: its own attachments and the absorbed one's.
        merge(&shell(&kept.id, &[]), &shell(&gone.id, &[])).map_err(incident_error)?;

        // Decide again on the rows as they are inside the transaction: a
        // merge of the same pair the other way round may have committed
        // since the reads above.
        let mut tx = self.store.begin_in(&scope).await?;
        let locked = tx.lock_incidents(&scope, &[&kept.id, &gone.id]).await?;
        let mut current = Vec::with_capacity(2);
        for id in [&kept.id, &gone.id] {
            let record = locked
                .iter()
                .find(|r| &r.id == id)
                .cloned()
                .ok_or_else(|| not_found(id.as_str()))?;
            if record.merged_into.is_some() {
                let survivor = tx.incident_survivor(&scope, &record.id).await?;
                return Err(merged_conflict(&record, survivor));
            }
            current.push(record);
        }
        let (mut kept, mut gone) = (current.remove(0), current.remove(0));
        let now = store::now();
        kept.updated_at = now;
        mark_stale(&mut kept, &StaleReason::Merged);
        gone.updated_at = now;
        gone.merged_into = Some(kept.id.clone());
        // Its review item is resolved below and it takes no further change,
        // so nobody could clear a stale mark on it: what was stale about
        // its alerts is the survivor's to review now.
        gone.stale = false;
        gone.stale_reasons = "[]".into();
        let (moved, shared) = tx.merge_incident(&scope, &kept.id, &gone.id).await?;
        tx.update_incident(&scope, &gone).await?;
        tx.update_incident(&scope, &kept).await?;
        queue_stale(&mut tx, &scope, &to_queue(&kept), now).await?;
        // The absorbed incident takes no further change: nothing is left to
        // review on it, its alerts are the survivor's (queued above unless
        // the survivor is finished).
        let resolution = json!({"merged_into": kept.id}).to_string();
        let closed = self
            .resolve_stale_items(
                &mut tx,
                actor,
                &scope,
                &gone.id,
                &StaleResolution {
                    state: "accepted",
                    by: "system:merge",
                    resolution: &resolution,
                    at: now,
                },
                None,
            )
            .await?;
        let details = json!({"absorbed": gone.id, "moved_alerts": moved,
            "shared_alerts": shared, "closed_reviews": closed});
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_merge",
            ("incident", kept.id.as_str()),
            details,
        ))
        .await?;
        tx.commit().await?;
        let committed = started.elapsed();

        let view = self.profile_view(&scope, &kept).await?;
        tracing::debug!(
            incident = %kept.id,
            absorbed = %gone.id,
            moved_alerts = moved,
            committed_ms = committed.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "incidents merged"
        );
        Ok(view)
    }

    /// Splits the named alerts out of an incident into a new one (see the
    /// module documentation). Both sides must keep at least one alert.
    pub async fn split_incident(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        alerts: &[String],
    ) -> Result<SplitOutcome> {
        self.authorize(actor, Action::IncidentWrite, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let original = self.open_incident(&scope, id).await?;
        let moved = self.resolve_alerts(&scope, alerts).await?;
        let new_id = IncidentId::generate();
        let moved_ids: Vec<String> = moved.iter().map(|a| a.to_string()).collect();

        let now = store::now();
        let mut tx = self.store.begin_in(&scope).await?;
        // Decided on what the incident holds under the lock: two splits, or
        // a split and a detach, of the same alerts at once must not both
        // take them.
        let (mut original, held) = self.lock_with_alerts(&mut tx, &scope, &original.id).await?;
        let held: Vec<AlertId> = held.into_iter().collect();
        let (_, created) = split(&shell(&original.id, &held), &moved_ids, new_id.as_str())
            .map_err(incident_error)?;
        let moving: Vec<AlertId> = created
            .alerts
            .iter()
            .map(|s| AlertId(s.subject.id.clone()))
            .collect();
        let mut record = IncidentRecord {
            id: new_id,
            org_id: scope.org().clone(),
            title: format!("{} (split)", original.title),
            status: "open".into(),
            severity: original.severity.clone(),
            lead: original.lead.clone(),
            created_by: actor.name.clone(),
            created_at: now,
            updated_at: now,
            merged_into: None,
            split_from: Some(original.id.clone()),
            stale: false,
            stale_reasons: "[]".into(),
        };
        mark_stale(&mut record, &StaleReason::Split);
        original.updated_at = now;
        mark_stale(&mut original, &StaleReason::Split);
        tx.insert_incident(&record).await?;
        tx.detach_alerts(&scope, &original.id, &moving, &actor.name, &now)
            .await?;
        tx.attach_alerts(&scope, &record.id, &moving, &actor.name, &now)
            .await?;
        tx.update_incident(&scope, &original).await?;
        // The new incident is open and always queued; the original only
        // while it is not finished.
        let mut queued = to_queue(&original);
        queued.extend(to_queue(&record));
        queue_stale(&mut tx, &scope, &queued, now).await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_split",
            ("incident", original.id.as_str()),
            json!({"created": record.id, "moved_alerts": moving}),
        ))
        .await?;
        tx.commit().await?;

        Ok(SplitOutcome {
            id: record.id.to_string(),
            split_from: original.id.to_string(),
            created: self.profile_view(&scope, &record).await?,
            remaining: self.profile_view(&scope, &original).await?,
        })
    }

    /// A lead adjustment of the incident's canonical mapping: role lead or
    /// above, reason code and rationale required, at least one evidence
    /// reference (given or already on the incident). Applied at once
    /// (approved), it wins over the computed profile on every recomputation
    /// and clears the stale mark (the lead re-evaluated the profile), which
    /// resolves the incident's open review item as `corrected`.
    pub async fn adjust_incident(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        input: AdjustmentInput,
    ) -> Result<IncidentProfileView> {
        self.adjust_incident_resolving(actor, org, id, input, None)
            .await
    }

    /// [`App::adjust_incident`]; with `review`, that open item of the
    /// incident must be among those it resolves (a review correction), or
    /// nothing changes.
    pub(crate) async fn adjust_incident_resolving(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        input: AdjustmentInput,
        review: Option<&str>,
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentAdjust, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let record = self.open_incident(&scope, id).await?;
        let engine = self.engine(&scope).await?;
        let evidence: Vec<String> = input
            .evidence
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        let evidence = if evidence.is_empty() {
            self.store
                .incident_evidence(&scope, &record.id)
                .await?
                .into_iter()
                .map(|e| e.reference)
                .collect()
        } else {
            evidence
        };

        let version = self
            .store
            .incident_adjustments(&scope, std::slice::from_ref(&record.id))
            .await?
            .iter()
            .map(|a| a.version)
            .max()
            .unwrap_or(0)
            + 1;
        let adjustment_id = uuid::Uuid::now_v7().to_string();
        let now = store::now();
        let request = OverrideRequest {
            action: input.action.clone(),
            technique: input.technique.clone(),
            tactic: input.tactic.clone(),
            replaces_technique: input.replaces.clone(),
            replaces_tactic: input.replaces_tactic.clone(),
            reason: input.reason.clone(),
            notes: input.rationale.clone(),
            confidence: input.confidence,
        };
        let meta = OverrideMeta {
            id: adjustment_id.clone(),
            subject: Subject::incident(record.id.as_str()),
            version: u32::try_from(version).unwrap_or(u32::MAX),
            actor: actor.name.clone(),
            status: OverrideStatus::Approved,
            decided_at: Some(now),
        };
        let checked = request.validate(&engine.release, meta).map_err(|e| {
            let field = match e {
                mapping::overrides::OverrideError::MissingRationale => "rationale",
                mapping::overrides::OverrideError::MissingReason
                | mapping::overrides::OverrideError::UnknownReason { .. } => "reason",
                _ => "adjustment",
            };
            invalid(field, e.to_string())
        });
        let checked = match (checked, evidence.is_empty()) {
            (Ok(_), true) => Err(invalid(
                "evidence",
                "an incident-level mapping needs at least one evidence reference \
                 (--evidence, or add one to the incident first)",
            )),
            (other, _) => other,
        };
        let validated = match checked {
            Ok(v) => v,
            Err(e) => {
                let details = json!({"code": e.code(), "message": e.to_string()});
                self.audit_outcome(
                    actor,
                    "incident_adjust",
                    ("incident", record.id.as_str()),
                    Outcome::Failed,
                    details,
                )
                .await?;
                return Err(e);
            }
        };

        let mut row = AdjustmentRecord {
            id: adjustment_id,
            org_id: scope.org().clone(),
            incident_id: record.id.clone(),
            version,
            action: input.action.trim().to_ascii_lowercase(),
            technique: validated.target.technique.to_string(),
            tactic: validated.target.tactic.as_ref().map(|t| t.to_string()),
            replaces_technique: validated.replaces.as_ref().map(|t| t.technique.to_string()),
            replaces_tactic: validated
                .replaces
                .as_ref()
                .and_then(|t| t.tactic.as_ref().map(|x| x.to_string())),
            reason: input.reason.unwrap_or_default().trim().to_string(),
            rationale: validated.notes.clone().unwrap_or_default(),
            evidence: json!(evidence).to_string(),
            confidence: validated.confidence.value(),
            actor: actor.name.clone(),
            status: "approved".into(),
            approved_by: Some(actor.name.clone()),
            approved_at: Some(now),
            supersedes: None,
            created_at: now,
        };
        let mut tx = self.store.begin_in(&scope).await?;
        let mut record = self
            .lock_open_incident(&mut tx, &scope, record.id.as_str())
            .await?;
        // Counted again under the lock: a concurrent adjustment may have
        // taken the version counted above, and adjustments of one incident
        // hold the lock while they count and insert theirs.
        row.version = tx.last_adjustment_version(&scope, &record.id).await? + 1;
        record.updated_at = now;
        record.stale = false;
        record.stale_reasons = "[]".into();
        tx.insert_adjustment(&row).await?;
        tx.update_incident(&scope, &record).await?;
        let resolution = json!({"adjustment": row.id}).to_string();
        let resolved = self
            .resolve_stale_items(
                &mut tx,
                actor,
                &scope,
                &record.id,
                &StaleResolution {
                    state: "corrected",
                    by: &actor.name,
                    resolution: &resolution,
                    at: now,
                },
                review,
            )
            .await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_adjust",
            ("incident", record.id.as_str()),
            json!({"adjustment": row.id, "action": row.action, "technique": row.technique,
                "replaces": row.replaces_technique, "reason": row.reason,
                "resolved_reviews": resolved}),
        ))
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// Changes the incident's status. Reopening (to `reopened`, or from
    /// `resolved` or `closed` back to `open` or `contained`) marks the
    /// profile stale and queues it for review. Resolving or closing it
    /// resolves its open review item in the same transaction (`accepted` by
    /// `system:status`, the resolution naming the new status): a finished
    /// incident's profile waits for nobody's review. The stale mark and its
    /// reasons stay, so reopening queues them again with `reopened`.
    pub async fn set_incident_status(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        status: &str,
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentWrite, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let status = normalized(status, &INCIDENT_STATUSES, "status")?;

        let now = store::now();
        let mut tx = self.store.begin_in(&scope).await?;
        let mut record = self.lock_open_incident(&mut tx, &scope, id).await?;
        let was_done = is_done(&record.status);
        let reopened =
            status == "reopened" || (was_done && matches!(status.as_str(), "open" | "contained"));
        let before = std::mem::replace(&mut record.status, status);
        if reopened {
            mark_stale(&mut record, &StaleReason::Reopened);
        }
        record.updated_at = now;
        tx.update_incident(&scope, &record).await?;
        if reopened {
            let mut stale = to_queue(&record);
            // `release_activated` is not kept on the record: the profile
            // derives it on read from entries computed under another
            // release. The new item must hold it too while the alerts
            // still wait for their re-mapping (after one that failed), or
            // the re-mapping that finishes the job has nothing to settle
            // and the queue and the profile disagree.
            if let Some(reason) = self.release_reason(&mut tx, &scope, &record.id).await? {
                for (_, reasons) in &mut stale {
                    reasons.push(reason.clone());
                }
            }
            queue_stale(&mut tx, &scope, &stale, now).await?;
        }
        let mut resolved = Vec::new();
        if is_done(&record.status) {
            let resolution = json!({"incident_status": record.status}).to_string();
            let how = StaleResolution {
                state: "accepted",
                by: STATUS_RESOLVER,
                resolution: &resolution,
                at: now,
            };
            resolved = self
                .resolve_stale_items(&mut tx, actor, &scope, &record.id, &how, None)
                .await?;
        }
        let details = json!({"from": before, "to": record.status, "stale": reopened,
            "resolved_reviews": resolved});
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "incident_status",
            ("incident", record.id.as_str()),
            details,
        ))
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// Changes the incident's severity; a change marks the profile stale.
    pub async fn set_incident_severity(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        severity: &str,
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentWrite, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let severity = normalized(severity, &INCIDENT_SEVERITIES, "severity")?;

        let now = store::now();
        let mut tx = self.store.begin_in(&scope).await?;
        let mut record = self.lock_open_incident(&mut tx, &scope, id).await?;
        let before = std::mem::replace(&mut record.severity, severity);
        let shifted = before != record.severity;
        if shifted {
            let reason = StaleReason::SeverityShift {
                from: before.clone(),
                to: record.severity.clone(),
            };
            mark_stale(&mut record, &reason);
        }
        record.updated_at = now;
        let details = json!({"from": before, "to": record.severity, "stale": shifted});
        self.save_incident(
            &mut tx,
            actor,
            &scope,
            &record,
            ("incident_severity", details),
            shifted,
        )
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// Adds an evidence reference (`kind` such as `ticket`, `url`, `file`,
    /// `note`). New evidence is a major update: the profile is marked stale.
    pub async fn add_incident_evidence(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        kind: &str,
        reference: &str,
    ) -> Result<IncidentProfileView> {
        self.authorize(actor, Action::IncidentWrite, ("incident", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(invalid("evidence", "an evidence reference cannot be empty"));
        }
        let kind = match kind.trim() {
            "" => "reference".to_string(),
            k => k.to_ascii_lowercase(),
        };

        let now = store::now();
        let mut tx = self.store.begin_in(&scope).await?;
        let mut record = self.lock_open_incident(&mut tx, &scope, id).await?;
        let evidence = EvidenceRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: scope.org().clone(),
            incident_id: record.id.clone(),
            kind: kind.clone(),
            reference: reference.to_string(),
            added_by: actor.name.clone(),
            added_at: now,
        };
        record.updated_at = now;
        mark_stale(
            &mut record,
            &StaleReason::EvidenceUpdate {
                fields: vec![format!("evidence.{kind}")],
            },
        );
        tx.insert_evidence(&evidence).await?;
        let details = json!({"evidence": evidence.id, "kind": kind, "reference": reference});
        self.save_incident(
            &mut tx,
            actor,
            &scope,
            &record,
            ("incident_evidence", details),
            true,
        )
        .await?;
        tx.commit().await?;

        self.profile_view(&scope, &record).await
    }

    /// Saves the record (read locked inside `tx`) and its audit event
    /// `(action, details)` in `tx`, and queues the incident for review when
    /// the change made it `stale` and it is not finished.
    async fn save_incident(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        scope: &OrgScope,
        record: &IncidentRecord,
        (action, details): (&str, Value),
        stale: bool,
    ) -> Result<()> {
        tx.update_incident(scope, record).await?;
        if stale {
            queue_stale(tx, scope, &to_queue(record), record.updated_at).await?;
        }
        tx.append_audit(&self.org_event(
            actor,
            scope,
            action,
            ("incident", record.id.as_str()),
            details,
        ))
        .await?;
        Ok(())
    }

    /// Resolves the open `stale` items of an incident inside `tx` as `how`
    /// says, each with its `review_resolve` audit event and time to
    /// validate (null when `by` is the product itself, a `system:` actor),
    /// like an alert's item. With `expected`, that item must be
    /// among them, or the change is refused (a concurrent resolution got
    /// there first). Answers the item ids.
    async fn resolve_stale_items(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        scope: &OrgScope,
        incident: &IncidentId,
        how: &StaleResolution<'_>,
        expected: Option<&str>,
    ) -> Result<Vec<String>> {
        let StaleResolution {
            state,
            by,
            resolution,
            at: now,
        } = *how;
        let open = tx
            .open_incident_reviews(scope, STALE, std::slice::from_ref(incident))
            .await?;
        if let Some(id) = expected.filter(|id| !open.iter().any(|r| r.id == *id)) {
            let message = format!("review item {id} is no longer open for incident {incident}");
            return Err(match tx.review(scope, id).await? {
                Some(current) => crate::overrides::review_conflict(message, &current),
                None => ServiceError::Conflict(message),
            });
        }
        let mut resolved = Vec::with_capacity(open.len());
        for item in open {
            if !tx
                .resolve_review(scope, &item.id, state, by, &now, Some(resolution))
                .await?
            {
                continue;
            }
            let details = json!({
                "incident": incident,
                "reason": item.reason,
                "before": "open",
                "after": state,
                "resolved_by": by,
                // The product closing an item is no one's validation.
                "time_to_validate_ms": (!crate::kpis::is_system_actor(by))
                    .then(|| (now - item.opened_at).num_milliseconds()),
                "resolution": resolution,
            });
            tx.append_audit(&self.org_event(
                actor,
                scope,
                "review_resolve",
                ("review", item.id.as_str()),
                details,
            ))
            .await?;
            resolved.push(item.id);
        }
        Ok(resolved)
    }

    /// Queues for review, inside the transaction activating `release` of
    /// `domain`, the incidents of `orgs` (neither merged nor finished) whose
    /// profile has an entry computed under another release of the domain:
    /// one statement per org finds them, a few more queue them all. Answers
    /// the incidents queued (items opened or kept). The re-mapping that
    /// follows the activation settles them again
    /// ([`App::settle_release_stale`]).
    pub(crate) async fn queue_release_stale(
        &self,
        tx: &mut Tx,
        orgs: &[OrgId],
        domain: Domain,
        release: &str,
    ) -> Result<usize> {
        let reason = StaleReason::ReleaseActivated {
            release: release.to_string(),
        };
        let reason = serde_json::to_value(&reason).unwrap_or(Value::Null);
        let now = store::now();
        let mut queued = 0;
        for org in orgs {
            let scope = OrgScope::new(org.clone());
            let stale: Vec<(IncidentId, Vec<Value>)> = tx
                .incidents_mapped_outside(&scope, domain.as_str(), release)
                .await?
                .into_iter()
                .map(|id| (id, vec![reason.clone()]))
                .collect();
            queue_stale(tx, &scope, &stale, now).await?;
            queued += stale.len();
        }
        Ok(queued)
    }

    /// The `release_activated` reason the profile of `incident` shows on
    /// read, read inside `tx`: `Some` when one of its entries is computed
    /// under another release than the active Enterprise one.
    async fn release_reason(
        &self,
        tx: &mut Tx,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Option<Value>> {
        let Some(active) = tx.active_dataset(Domain::Enterprise).await? else {
            return Ok(None);
        };
        let outdated = tx
            .incidents_among_mapped_outside(
                scope,
                Domain::Enterprise.as_str(),
                &active.release,
                std::slice::from_ref(incident),
            )
            .await?;
        if outdated.is_empty() {
            return Ok(None);
        }
        let reason = StaleReason::ReleaseActivated {
            release: active.release,
        };
        Ok(Some(serde_json::to_value(reason).unwrap_or(Value::Null)))
    }

    /// After the alerts of an org were re-mapped under the active `release`
    /// of `domain` (the re-mapping that follows an activation, or `alerts
    /// remap`): an open `stale` item holding `release_activated` whose
    /// incident has no entry computed under another release of the domain
    /// any more drops that reason, as the incident's profile does on read.
    /// An item left without a reason is resolved (`accepted` by
    /// [`REMAP_RESOLVER`], with no time to validate); one that still holds
    /// another trigger's reason stays open with that one. An incident whose
    /// alerts were not all re-mapped (a re-mapping that failed part way)
    /// keeps its reason, as it stays stale on read. Answers the items
    /// resolved.
    pub(crate) async fn settle_release_stale(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        domain: Domain,
        release: &str,
    ) -> Result<usize> {
        let is_release = |reason: &Value| reason["reason"] == RELEASE_ACTIVATED;
        let mut tx = self.store.begin_in(scope).await?;
        let mut incidents: Vec<IncidentId> = tx
            .open_incident_reviews_of_org(scope, STALE)
            .await?
            .into_iter()
            .filter(|item| {
                let reasons: Vec<Value> = serde_json::from_str(&item.detail).unwrap_or_default();
                reasons.iter().any(is_release)
            })
            .filter_map(|item| item.incident_id)
            .collect();
        if incidents.is_empty() {
            return Ok(0);
        }
        incidents.sort();
        incidents.dedup();

        // Locked in id order, as every staleness trigger locks its incident
        // before it queues it: the details rewritten below are the items as
        // a concurrent trigger left them, not as read before it committed.
        let locking: Vec<&IncidentId> = incidents.iter().collect();
        tx.lock_incidents(scope, &locking).await?;
        let outdated: HashSet<IncidentId> = tx
            .incidents_among_mapped_outside(scope, domain.as_str(), release, &incidents)
            .await?
            .into_iter()
            .collect();
        let settled: Vec<IncidentId> = incidents
            .into_iter()
            .filter(|i| !outdated.contains(i))
            .collect();
        let now = store::now();
        let resolution = json!({"remapped_under": release}).to_string();
        let how = StaleResolution {
            state: "accepted",
            by: REMAP_RESOLVER,
            resolution: &resolution,
            at: now,
        };
        let mut details = Vec::new();
        let mut resolved = 0;
        for item in tx.open_incident_reviews(scope, STALE, &settled).await? {
            let Some(incident) = &item.incident_id else {
                continue;
            };
            let held: Vec<Value> = serde_json::from_str(&item.detail).unwrap_or_default();
            let left: Vec<Value> = held.iter().filter(|r| !is_release(r)).cloned().collect();
            if left.len() == held.len() {
                continue;
            }
            if left.is_empty() {
                // The item keeps the detail it was opened with: its history
                // says why it was queued.
                resolved += self
                    .resolve_stale_items(&mut tx, actor, scope, incident, &how, None)
                    .await?
                    .len();
            } else {
                details.push((item.id.clone(), Value::Array(left).to_string()));
            }
        }
        tx.set_review_details(scope, &details).await?;
        tx.commit().await?;
        Ok(resolved)
    }

    /// Computes the profile of a stored incident and renders the contract.
    async fn profile_view(
        &self,
        scope: &OrgScope,
        record: &IncidentRecord,
    ) -> Result<IncidentProfileView> {
        let started = std::time::Instant::now();
        // The rows take most of the time; the records beside them are read
        // at once on other connections of the pool.
        let rows = async {
            let rows = self.store.incident_profile_rows(scope, &record.id).await;
            (rows, started.elapsed())
        };
        let adjustments = async {
            let merged_from = self.store.incidents_merged_into(scope, &record.id).await?;
            let mut own = vec![record.id.clone()];
            own.extend(merged_from.iter().cloned());
            let rows = self.store.incident_adjustments(scope, &own).await?;
            Ok::<_, store::StoreError>((merged_from, rows))
        };
        let ((rows, rows_read), adjustments, evidence, dataset) = tokio::join!(
            rows,
            adjustments,
            self.store.incident_evidence(scope, &record.id),
            self.store.active_dataset(Domain::Enterprise),
        );
        let (rows, (merged_from, adjustment_rows), evidence) = (rows?, adjustments?, evidence?);
        let release = dataset?.map(|d| d.release);
        let records_read = started.elapsed();

        let decoded = DecodedRows::new(&rows)?;
        // Entries computed under another release than the active one are
        // stale until their alerts are re-mapped.
        let outdated: HashSet<(&TechniqueId, Option<&TacticId>)> = match &release {
            Some(active) => decoded
                .entries
                .iter()
                .filter(|e| e.release != active)
                .map(|e| decoded.pair(e))
                .collect(),
            None => HashSet::new(),
        };
        let mut reasons = stale_reasons(record);
        if let (false, Some(active)) = (outdated.is_empty(), &release) {
            let reason = StaleReason::ReleaseActivated {
                release: active.clone(),
            };
            reasons.push(serde_json::to_value(reason).unwrap_or(Value::Null));
        }

        let thresholds = self.config.mapping.policy.thresholds;
        let subject = Subject::incident(record.id.as_str());
        let adjustments = adjustment_rows
            .iter()
            .map(|a| adjustment_override(a, &subject))
            .collect::<Result<Vec<_>>>()?;
        let computed = profile_of_entries(
            record.id.as_str(),
            decoded.alerts.len(),
            decoded.alert_entries(),
            &adjustments,
            &thresholds,
        );
        let computed_at = started.elapsed();

        // The lineage of an entry on an alert is the candidates and
        // overrides of that alert's canonical entry for the same pair. The
        // entries of a pair, like its alerts, are in alert id order.
        let mut by_pair: HashMap<(&TechniqueId, Option<&TacticId>), Vec<&DecodedEntry>> =
            HashMap::new();
        for e in &decoded.entries {
            by_pair.entry(decoded.pair(e)).or_default().push(e);
        }
        let mut profile = Vec::with_capacity(computed.entries.len());
        for e in computed.entries {
            let pair = (&e.technique, e.tactic.as_ref());
            let carriers = by_pair.get(&pair).map_or(&[][..], Vec::as_slice);
            let mut next = carriers.iter().peekable();
            let mut lineage = Vec::with_capacity(e.alerts.len());
            for alert in &e.alerts {
                // The first entry of the alert for the pair; any further one
                // (a set never holds a pair twice) is passed over.
                let alert_id = alert.as_str();
                let mut found = None;
                while let Some(carrier) = next.next_if(|c| decoded.alerts[c.alert].0 <= alert_id) {
                    if decoded.alerts[carrier.alert].0 == alert_id && found.is_none() {
                        found = Some(*carrier);
                    }
                }
                lineage.push(match found {
                    Some(carrier) => AlertLineage {
                        alert: alert.clone(),
                        source_uid: decoded.alerts[carrier.alert].1.to_string(),
                        candidates: decoded.ids[carrier.candidates.clone()]
                            .iter()
                            .map(|c| c.to_string())
                            .collect(),
                        overrides: json_list(carrier.override_ids, "override ids")?,
                    },
                    None => AlertLineage {
                        alert: alert.clone(),
                        source_uid: String::new(),
                        candidates: Vec::new(),
                        overrides: Vec::new(),
                    },
                });
            }
            let stale = record.stale || outdated.contains(&pair);
            profile.push(ProfileEntryView {
                technique: e.technique.to_string(),
                tactic: e.tactic.as_ref().map(|t| t.to_string()),
                frequency: e.frequency,
                confidence: e.confidence.value(),
                band: e.band.as_str().to_string(),
                sources: e.sources.iter().map(|s| s.as_str().to_string()).collect(),
                alerts: e.alerts,
                candidates: e.candidates,
                lineage,
                adjustments: e.adjustments,
                stale,
            });
        }

        tracing::debug!(
            incident = %record.id,
            alerts = decoded.alerts.len(),
            rows_ms = rows_read.as_secs_f64() * 1e3,
            records_ms = records_read.as_secs_f64() * 1e3,
            computed_ms = computed_at.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "incident profile computed"
        );
        Ok(IncidentProfileView {
            schema_version: INCIDENT_PROFILE_SCHEMA_VERSION.into(),
            id: record.id.to_string(),
            title: record.title.clone(),
            status: record.status.clone(),
            severity: record.severity.clone(),
            lead: record.lead.clone(),
            merged_into: record.merged_into.as_ref().map(|m| m.to_string()),
            split_from: record.split_from.as_ref().map(|m| m.to_string()),
            merged_from: merged_from.iter().map(|m| m.to_string()).collect(),
            stale: record.stale || !outdated.is_empty(),
            stale_reasons: reasons,
            release,
            alerts: decoded
                .alerts
                .iter()
                .map(|(id, source_uid)| IncidentAlertView {
                    id: id.to_string(),
                    source_uid: source_uid.to_string(),
                })
                .collect(),
            profile,
            adjustments: adjustment_rows.iter().map(adjustment_view).collect(),
            evidence: evidence
                .iter()
                .map(|e| IncidentEvidenceView {
                    id: e.id.clone(),
                    kind: e.kind.clone(),
                    reference: e.reference.clone(),
                    added_by: e.added_by.clone(),
                    added_at: ts(&e.added_at),
                })
                .collect(),
            created_at: ts(&record.created_at),
            updated_at: ts(&record.updated_at),
        })
    }
}

/// The JSON Schema (draft 2020-12 subset, checked by
/// [`crate::check_schema`]) of [`IncidentProfileView`], version
/// [`INCIDENT_PROFILE_SCHEMA_VERSION`]. Written out as
/// `docs/schemas/incident-profile.v1.json`; a test fails when the two differ.
pub fn incident_profile_schema() -> Value {
    let text = json!({"type": "string"});
    let opt_text = json!({"type": ["string", "null"]});
    let boolean = json!({"type": "boolean"});
    let confidence = json!({"type": "number", "minimum": 0.0, "maximum": 1.0});
    let band = json!({"type": "string", "enum": ["low", "medium", "high"]});
    let source = json!({"type": "string", "enum": ["manual", "rule", "ai"]});
    let technique = json!({"type": "string", "pattern": "^T[0-9]{4}(\\.[0-9]{3})?$"});
    let tactic = json!({"type": ["string", "null"], "pattern": "^TA[0-9]{4}$"});
    let count = json!({"type": "integer", "minimum": 0});

    let alert = object(json!({"id": text, "source_uid": text}));
    let lineage = object(json!({
        "alert": text, "source_uid": text,
        "candidates": array(text.clone()), "overrides": array(text.clone()),
    }));
    let entry = object(json!({
        "technique": technique, "tactic": tactic, "frequency": count,
        "confidence": confidence, "band": band, "sources": array(source),
        "alerts": array(text.clone()), "candidates": array(text.clone()),
        "lineage": array(lineage), "adjustments": array(text.clone()), "stale": boolean,
    }));
    let adjustment = object(json!({
        "id": text, "incident": text, "version": {"type": "integer", "minimum": 1},
        "action": {"type": "string", "enum": ["add", "remove", "replace"]},
        "technique": technique, "tactic": tactic, "replaces": opt_text, "reason": text,
        "rationale": text, "evidence": array(text.clone()), "confidence": confidence,
        "actor": text,
        "status": {"type": "string", "enum": ["proposed", "approved", "rejected"]},
        "approved_by": opt_text, "approved_at": opt_text, "created_at": text,
    }));
    let evidence = object(json!({
        "id": text, "kind": text, "reference": text, "added_by": text, "added_at": text,
    }));
    let mut schema = object(json!({
        "schema_version": {"type": "string", "const": INCIDENT_PROFILE_SCHEMA_VERSION},
        "id": text, "title": text,
        "status": {"type": "string", "enum": INCIDENT_STATUSES},
        "severity": {"type": "string", "enum": INCIDENT_SEVERITIES},
        "lead": opt_text, "merged_into": opt_text, "split_from": opt_text,
        "merged_from": array(text.clone()), "stale": boolean,
        "stale_reasons": array(json!({"type": "object"})), "release": opt_text,
        "alerts": array(alert), "profile": array(entry), "adjustments": array(adjustment),
        "evidence": array(evidence), "created_at": text, "updated_at": text,
    }));
    if let Some(map) = schema.as_object_mut() {
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        map.insert(
            "$id".into(),
            json!("https://nexus-attack.example/schemas/incident-profile.v1.json"),
        );
        map.insert(
            "title".into(),
            json!("nexus-attack incident ATT&CK profile output, version 1"),
        );
    }
    schema
}
