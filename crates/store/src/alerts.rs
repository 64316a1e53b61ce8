//! Alerts, their mapping candidates and their canonical mappings.
//!
//! Candidates are append-only; each recomputation of an alert's canonical
//! set is a new version (`canonical_sets` plus its `canonical_mappings`
//! entries) and the alert row names the current version.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use crate::batch::{
    Val, in_list, insert_new_rows, insert_rows, insert_rows_borrowed, placeholders,
};
use crate::{Backend, Context, OrgScope, Store, StoreError, Tx, parse_ts, ts};

crate::records::id_type!(
    /// Identifies a stored alert (the product's id, not the source's).
    AlertId
);

/// One stored alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The product's id.
    pub id: AlertId,
    /// The org it belongs to.
    pub org_id: crate::OrgId,
    /// The alert's own id in its source (OCSF `finding_info.uid`, ECS `event.id`).
    pub source_uid: String,
    /// `ocsf`, `ecs` or `native`.
    pub format: String,
    /// When the activity happened.
    pub time: Option<DateTime<Utc>>,
    /// When the product received it.
    pub received_at: DateTime<Utc>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Normalized severity word.
    pub severity: String,
    /// Weight of the severity for intensity.
    pub severity_weight: f64,
    /// The connector it came through.
    pub connector: Option<String>,
    /// The product that raised it.
    pub product: Option<String>,
    /// The detection rule that raised it.
    pub analytic_uid: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// User name.
    pub user: Option<String>,
    /// SHA-256 of the raw document, to tell a re-sent alert from a changed one.
    pub content_sha256: String,
    /// The document as received (JSON text).
    pub raw: String,
    /// The normalized alert (JSON text).
    pub normalized: String,
    /// `mapped` or `unmapped`, as of the current canonical version.
    pub mapping_state: String,
    /// The current canonical set version.
    pub canonical_version: i64,
    /// True while a change waits for the mapping to be recomputed.
    pub stale: bool,
    /// Why it is stale (JSON text), when it is.
    pub stale_reason: Option<String>,
    /// True when repeated conflicting overrides locked it for arbitration.
    pub locked: bool,
}

/// One stored mapping candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// Content hash of the candidate.
    pub id: String,
    /// The org.
    pub org_id: crate::OrgId,
    /// The alert.
    pub alert_id: AlertId,
    /// The technique, exactly as the source gave it.
    pub technique: String,
    /// The tactic, when given.
    pub tactic: Option<String>,
    /// `manual`, `rule` or `ai`.
    pub source: String,
    /// 0.0 to 1.0.
    pub confidence: f64,
    /// `low`, `medium` or `high`.
    pub band: String,
    /// Evidence (JSON text, an array).
    pub evidence: String,
    /// Why.
    pub explanation: String,
    /// Rule id, for rule candidates.
    pub rule_id: Option<String>,
    /// Rule version, for rule candidates.
    pub rule_version: Option<i64>,
    /// Model version, for AI candidates.
    pub model_version: Option<String>,
    /// Declared by the alert itself.
    pub vendor_declared: bool,
    /// ATT&CK domain.
    pub domain: String,
    /// ATT&CK release.
    pub release: String,
    /// Dataset the release was loaded as.
    pub dataset_id: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// One version of an alert's canonical set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalSetRecord {
    /// The org.
    pub org_id: crate::OrgId,
    /// The alert.
    pub alert_id: AlertId,
    /// Version, from 1.
    pub version: i64,
    /// The precedence level that decided it, `None` when unmapped.
    pub decided_by: Option<String>,
    /// Review flags (JSON text, an array).
    pub flags: String,
    /// AI candidates below the bar (JSON text, an array of ids).
    pub pending: String,
    /// Number of entries.
    pub entries: i64,
    /// What caused the computation (`ingest`, `rule_change`, `override`, ...).
    pub cause: String,
    /// ATT&CK domain.
    pub domain: String,
    /// ATT&CK release.
    pub release: String,
    /// Dataset.
    pub dataset_id: Option<String>,
    /// When.
    pub computed_at: DateTime<Utc>,
}

/// One entry of a canonical set version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalEntryRecord {
    /// The org.
    pub org_id: crate::OrgId,
    /// The alert.
    pub alert_id: AlertId,
    /// The set version it belongs to.
    pub version: i64,
    /// The technique.
    pub technique: String,
    /// The tactic.
    pub tactic: Option<String>,
    /// The winning source.
    pub source: String,
    /// The winning confidence.
    pub confidence: f64,
    /// Its band.
    pub band: String,
    /// Candidate ids behind it (JSON text).
    pub candidate_ids: String,
    /// Override ids behind it (JSON text).
    pub override_ids: String,
    /// Producers behind it (JSON text).
    pub producers: String,
    /// Declared by the alert.
    pub vendor_declared: bool,
    /// Some candidate links evidence.
    pub evidence_linked: bool,
    /// Belongs in the review queue.
    pub needs_review: bool,
    /// ATT&CK domain.
    pub domain: String,
    /// ATT&CK release.
    pub release: String,
    /// Dataset.
    pub dataset_id: Option<String>,
    /// When.
    pub computed_at: DateTime<Utc>,
}

/// A computed canonical set: its header and entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalRecord {
    /// The set.
    pub set: CanonicalSetRecord,
    /// Its entries.
    pub entries: Vec<CanonicalEntryRecord>,
}

/// How an alert's mapping changes with a new canonical version.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingUpdate {
    /// The alert.
    pub alert_id: AlertId,
    /// The current version the change was computed from: the update is
    /// refused as a conflict when the alert has moved on since (an
    /// override or another re-map committed in between), instead of
    /// putting an older version back.
    pub based_on: i64,
    /// The new current version.
    pub canonical_version: i64,
    /// `mapped` or `unmapped`.
    pub mapping_state: String,
    /// The content (`content_sha256`) the change was computed from, when
    /// it matters: the update is refused as a conflict too when another
    /// writer has replaced the alert's content since, as the change's
    /// matrix rollups were counted in the cells of the content it read.
    pub content_sha256: Option<String>,
}

const ALERT_COLUMNS: [&str; 23] = [
    "id",
    "org_id",
    "source_uid",
    "format",
    "time",
    "received_at",
    "title",
    "description",
    "severity",
    "severity_weight",
    "connector",
    "product",
    "analytic_uid",
    "host",
    "user_name",
    "content_sha256",
    "raw",
    "normalized",
    "mapping_state",
    "canonical_version",
    "stale",
    "stale_reason",
    "locked",
];

const CANDIDATE_COLUMNS: [&str; 18] = [
    "id",
    "org_id",
    "alert_id",
    "technique",
    "tactic",
    "source",
    "confidence",
    "band",
    "evidence",
    "explanation",
    "rule_id",
    "rule_version",
    "model_version",
    "vendor_declared",
    "domain",
    "release",
    "dataset_id",
    "created_at",
];

const SET_COLUMNS: [&str; 12] = [
    "org_id",
    "alert_id",
    "version",
    "decided_by",
    "flags",
    "pending",
    "entries",
    "cause",
    "domain",
    "release",
    "dataset_id",
    "computed_at",
];

const ENTRY_COLUMNS: [&str; 18] = [
    "org_id",
    "alert_id",
    "version",
    "technique",
    "tactic",
    "source",
    "confidence",
    "band",
    "candidate_ids",
    "override_ids",
    "producers",
    "vendor_declared",
    "evidence_linked",
    "needs_review",
    "domain",
    "release",
    "dataset_id",
    "computed_at",
];

fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

pub(crate) fn get<T>(row: &AnyRow, table: &str, column: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column)
        .map_err(|e| corrupt(&format!("{table}.{column}"), e))
}

pub(crate) fn get_ts(row: &AnyRow, table: &str, column: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_ts(column, &get::<String>(row, table, column)?)
}

pub(crate) fn get_opt_ts(
    row: &AnyRow,
    table: &str,
    column: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<String>>(row, table, column)?
        .map(|s| parse_ts(column, &s))
        .transpose()
}

fn alert_from_row(row: &AnyRow) -> Result<AlertRecord, StoreError> {
    let t = "alerts";
    Ok(AlertRecord {
        id: AlertId(get(row, t, "id")?),
        org_id: crate::OrgId(get(row, t, "org_id")?),
        source_uid: get(row, t, "source_uid")?,
        format: get(row, t, "format")?,
        time: get_opt_ts(row, t, "time")?,
        received_at: get_ts(row, t, "received_at")?,
        title: get(row, t, "title")?,
        description: get(row, t, "description")?,
        severity: get(row, t, "severity")?,
        severity_weight: get(row, t, "severity_weight")?,
        connector: get(row, t, "connector")?,
        product: get(row, t, "product")?,
        analytic_uid: get(row, t, "analytic_uid")?,
        host: get(row, t, "host")?,
        user: get(row, t, "user_name")?,
        content_sha256: get(row, t, "content_sha256")?,
        raw: raw_from_row(row, t)?,
        normalized: get(row, t, "normalized")?,
        mapping_state: get(row, t, "mapping_state")?,
        canonical_version: get(row, t, "canonical_version")?,
        stale: get::<i64>(row, t, "stale")? != 0,
        stale_reason: get(row, t, "stale_reason")?,
        locked: get::<i64>(row, t, "locked")? != 0,
    })
}

fn candidate_from_row(row: &AnyRow) -> Result<CandidateRecord, StoreError> {
    let t = "mapping_candidates";
    Ok(CandidateRecord {
        id: get(row, t, "id")?,
        org_id: crate::OrgId(get(row, t, "org_id")?),
        alert_id: AlertId(get(row, t, "alert_id")?),
        technique: get(row, t, "technique")?,
        tactic: get(row, t, "tactic")?,
        source: get(row, t, "source")?,
        confidence: get(row, t, "confidence")?,
        band: get(row, t, "band")?,
        evidence: get(row, t, "evidence")?,
        explanation: get(row, t, "explanation")?,
        rule_id: get(row, t, "rule_id")?,
        rule_version: get(row, t, "rule_version")?,
        model_version: get(row, t, "model_version")?,
        vendor_declared: get::<i64>(row, t, "vendor_declared")? != 0,
        domain: get(row, t, "domain")?,
        release: get(row, t, "release")?,
        dataset_id: get(row, t, "dataset_id")?,
        created_at: get_ts(row, t, "created_at")?,
    })
}

fn set_from_row(row: &AnyRow) -> Result<CanonicalSetRecord, StoreError> {
    let t = "canonical_sets";
    Ok(CanonicalSetRecord {
        org_id: crate::OrgId(get(row, t, "org_id")?),
        alert_id: AlertId(get(row, t, "alert_id")?),
        version: get(row, t, "version")?,
        decided_by: get(row, t, "decided_by")?,
        flags: get(row, t, "flags")?,
        pending: get(row, t, "pending")?,
        entries: get(row, t, "entries")?,
        cause: get(row, t, "cause")?,
        domain: get(row, t, "domain")?,
        release: get(row, t, "release")?,
        dataset_id: get(row, t, "dataset_id")?,
        computed_at: get_ts(row, t, "computed_at")?,
    })
}

fn entry_from_row(row: &AnyRow) -> Result<CanonicalEntryRecord, StoreError> {
    let t = "canonical_mappings";
    Ok(CanonicalEntryRecord {
        org_id: crate::OrgId(get(row, t, "org_id")?),
        alert_id: AlertId(get(row, t, "alert_id")?),
        version: get(row, t, "version")?,
        technique: get(row, t, "technique")?,
        tactic: get(row, t, "tactic")?,
        source: get(row, t, "source")?,
        confidence: get(row, t, "confidence")?,
        band: get(row, t, "band")?,
        candidate_ids: get(row, t, "candidate_ids")?,
        override_ids: get(row, t, "override_ids")?,
        producers: get(row, t, "producers")?,
        vendor_declared: get::<i64>(row, t, "vendor_declared")? != 0,
        evidence_linked: get::<i64>(row, t, "evidence_linked")? != 0,
        needs_review: get::<i64>(row, t, "needs_review")? != 0,
        domain: get(row, t, "domain")?,
        release: get(row, t, "release")?,
        dataset_id: get(row, t, "dataset_id")?,
        computed_at: get_ts(row, t, "computed_at")?,
    })
}

fn alert_values(a: AlertRecord, backend: Backend) -> Vec<Val> {
    let raw = raw_value(a.raw, backend);
    vec![
        a.id.0.into(),
        a.org_id.0.into(),
        a.source_uid.into(),
        a.format.into(),
        a.time.as_ref().map(ts).into(),
        ts(&a.received_at).into(),
        a.title.into(),
        a.description.into(),
        a.severity.into(),
        a.severity_weight.into(),
        a.connector.into(),
        a.product.into(),
        a.analytic_uid.into(),
        a.host.into(),
        a.user.into(),
        a.content_sha256.into(),
        raw,
        a.normalized.into(),
        a.mapping_state.into(),
        a.canonical_version.into(),
        a.stale.into(),
        a.stale_reason.into(),
        a.locked.into(),
    ]
}

/// An alert as one backend's row: made where there is time for it (the
/// document packed, the texts checked), so that the writer only writes.
#[derive(Debug)]
pub struct AlertRow {
    backend: Backend,
    source_uid: String,
    values: Vec<Val>,
}

impl AlertRow {
    /// Stores the alert marked stale for `reason` (JSON text), as
    /// [`Tx::mark_org_alerts_stale`] would mark it.
    pub fn mark_stale(&mut self, reason: &str) {
        let at = |name: &str| ALERT_COLUMNS.iter().position(|c| *c == name);
        if let (Some(stale), Some(why)) = (at("stale"), at("stale_reason")) {
            self.values[stale] = true.into();
            self.values[why] = reason.into();
        }
    }

    /// The row of `alert` for `backend`.
    pub fn new(alert: AlertRecord, backend: Backend) -> Self {
        AlertRow {
            backend,
            source_uid: alert.source_uid.clone(),
            values: alert_values(alert, backend),
        }
    }
}

/// The rows of alerts' mappings (candidates, canonical sets and their
/// entries), made beforehand like [`AlertRow`].
#[derive(Debug, Default)]
pub struct MappingRows {
    candidates: Vec<Vec<Val>>,
    sets: Vec<Vec<Val>>,
    entries: Vec<Vec<Val>>,
}

impl MappingRows {
    /// The rows of one alert's candidates and canonical set. A candidate
    /// whose id repeats (the same technique declared twice by the alert,
    /// say) is one row: these rows are inserted without conflict handling.
    pub fn of(candidates: Vec<CandidateRecord>, canonical: CanonicalRecord) -> Self {
        let mut ids = HashSet::with_capacity(candidates.len());
        MappingRows {
            candidates: candidates
                .into_iter()
                .filter(|c| ids.insert(c.id.clone()))
                .map(candidate_values)
                .collect(),
            sets: vec![set_values(canonical.set)],
            entries: canonical.entries.into_iter().map(entry_values).collect(),
        }
    }

    /// Adds `other`'s rows after these.
    pub fn append(&mut self, other: MappingRows) {
        self.candidates.extend(other.candidates);
        self.sets.extend(other.sets);
        self.entries.extend(other.entries);
    }
}

/// An alert's raw document as its backend stores it: packed on SQLite
/// (see [`crate::packed`]), text on PostgreSQL.
fn raw_value(raw: String, backend: Backend) -> Val {
    match backend {
        Backend::Sqlite => Val::Blob(crate::packed::pack(&raw)),
        Backend::Postgres => raw.into(),
    }
}

/// An alert's raw document from its row: packed bytes, or text (PostgreSQL,
/// and SQLite rows written before packing).
fn raw_from_row(row: &AnyRow, t: &str) -> Result<String, StoreError> {
    match row.try_get::<String, _>("raw") {
        Ok(text) => Ok(text),
        Err(_) => {
            let packed: Vec<u8> = get(row, t, "raw")?;
            crate::packed::unpack(&packed, &format!("{t}.raw"))
        }
    }
}

fn candidate_values(c: CandidateRecord) -> Vec<Val> {
    vec![
        c.id.into(),
        c.org_id.0.into(),
        c.alert_id.0.into(),
        c.technique.into(),
        c.tactic.into(),
        c.source.into(),
        c.confidence.into(),
        c.band.into(),
        c.evidence.into(),
        c.explanation.into(),
        c.rule_id.into(),
        c.rule_version.into(),
        c.model_version.into(),
        c.vendor_declared.into(),
        c.domain.into(),
        c.release.into(),
        c.dataset_id.into(),
        ts(&c.created_at).into(),
    ]
}

fn set_values(s: CanonicalSetRecord) -> Vec<Val> {
    vec![
        s.org_id.0.into(),
        s.alert_id.0.into(),
        s.version.into(),
        s.decided_by.into(),
        s.flags.into(),
        s.pending.into(),
        s.entries.into(),
        s.cause.into(),
        s.domain.into(),
        s.release.into(),
        s.dataset_id.into(),
        ts(&s.computed_at).into(),
    ]
}

fn entry_values(e: CanonicalEntryRecord) -> Vec<Val> {
    vec![
        e.org_id.0.into(),
        e.alert_id.0.into(),
        e.version.into(),
        e.technique.into(),
        e.tactic.into(),
        e.source.into(),
        e.confidence.into(),
        e.band.into(),
        e.candidate_ids.into(),
        e.override_ids.into(),
        e.producers.into(),
        e.vendor_declared.into(),
        e.evidence_linked.into(),
        e.needs_review.into(),
        e.domain.into(),
        e.release.into(),
        e.dataset_id.into(),
        ts(&e.computed_at).into(),
    ]
}

/// The entries of one canonical set version. Unordered on purpose: asked
/// to order by technique, SQLite (without statistics) read the org's
/// technique index from its start, every mapping of the org, to save a
/// sort of a handful of rows: a second for one alert at a million alerts.
fn set_entries_sql() -> String {
    format!(
        "SELECT {} FROM canonical_mappings WHERE org_id = $1 AND alert_id = $2 AND version = $3",
        ENTRY_COLUMNS.join(", ")
    )
}

/// `$n` on PostgreSQL, `?` on SQLite (see [`crate::batch`]).
pub(crate) fn p(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => "?".to_string(),
        Backend::Postgres => format!("${n}"),
    }
}

impl Tx {
    /// Inserts new alerts in multi-row statements.
    pub async fn insert_alerts(&mut self, alerts: Vec<AlertRecord>) -> Result<u64, StoreError> {
        let backend = self.backend;
        let rows = alerts
            .into_iter()
            .map(|a| alert_values(a, backend))
            .collect();
        insert_rows(self.conn(), backend, "alerts", &ALERT_COLUMNS, rows, false).await
    }

    /// Inserts the alerts whose source uid the org has not stored yet and
    /// returns the source uids inserted; the others are left as they are
    /// (the caller tells a duplicate from an update). Bulk ingestion thus
    /// needs no lookup before a batch of new alerts.
    pub async fn insert_new_alerts(
        &mut self,
        alerts: Vec<AlertRecord>,
    ) -> Result<HashSet<String>, StoreError> {
        let backend = self.backend;
        let rows = alerts
            .into_iter()
            .map(|a| AlertRow::new(a, backend))
            .collect();
        self.insert_new_alert_rows(rows, true).await
    }

    /// [`Tx::insert_new_alerts`] with rows made beforehand. With
    /// `expect_new` (the caller's guess that none is stored yet, as in a
    /// stream of new alerts), PostgreSQL first tries a plain insert of all
    /// of them; see [`Tx::insert_all_or_none`].
    pub async fn insert_new_alert_rows(
        &mut self,
        alerts: Vec<AlertRow>,
        expect_new: bool,
    ) -> Result<HashSet<String>, StoreError> {
        let backend = self.backend;
        if let Some(other) = alerts.iter().find(|a| a.backend != backend) {
            return Err(StoreError::Corrupt {
                what: "alert row".into(),
                reason: format!("made for {:?}, written to {backend:?}", other.backend),
            });
        }
        // In key order: two writers inserting overlapping alerts then take
        // the key's locks in the same order, one waits for the other
        // instead of both waiting for each other (a deadlock PostgreSQL
        // breaks by failing one of them).
        let mut alerts = alerts;
        alerts.sort_unstable_by(|a, b| a.source_uid.cmp(&b.source_uid));
        if expect_new
            && backend == Backend::Postgres
            && let Some(all) = self.insert_all_or_none(&alerts).await?
        {
            return Ok(all);
        }
        let rows = alerts.into_iter().map(|a| a.values).collect();
        let inserted = insert_new_rows(
            self.conn(),
            backend,
            "alerts",
            &ALERT_COLUMNS,
            rows,
            "org_id, source_uid",
            "source_uid",
        )
        .await?;
        Ok(inserted.into_iter().collect())
    }

    /// Inserts every alert or, when one is stored already, none (the
    /// transaction goes on as before): `Some` with every source uid, or
    /// `None`. PostgreSQL makes each row of `ON CONFLICT DO NOTHING` a
    /// speculative insertion: a probe of the key before the row and a
    /// second log record after it, about a tenth of an alert row's cost.
    /// A savepoint costs one round trip per batch.
    async fn insert_all_or_none(
        &mut self,
        alerts: &[AlertRow],
    ) -> Result<Option<HashSet<String>>, StoreError> {
        let backend = self.backend;
        self.execute_plain("SAVEPOINT new_alerts").await?;
        let rows: Vec<&[Val]> = alerts.iter().map(|a| a.values.as_slice()).collect();
        match insert_rows_borrowed(self.conn(), backend, "alerts", &ALERT_COLUMNS, &rows).await {
            Ok(_) => {
                self.execute_plain("RELEASE SAVEPOINT new_alerts").await?;
                Ok(Some(alerts.iter().map(|a| a.source_uid.clone()).collect()))
            }
            Err(StoreError::Conflict { .. }) => {
                self.execute_plain("ROLLBACK TO SAVEPOINT new_alerts")
                    .await?;
                self.execute_plain("RELEASE SAVEPOINT new_alerts").await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn execute_plain(&mut self, sql: &str) -> Result<(), StoreError> {
        sqlx::query(sql)
            .execute(self.conn())
            .await
            .context(|| format!("running `{sql}`"))?;
        Ok(())
    }

    /// [`Store::alerts_by_source_uid`] within this transaction.
    pub async fn alerts_by_source_uid(
        &mut self,
        scope: &OrgScope,
        source_uids: &[String],
    ) -> Result<HashMap<String, (AlertId, String)>, StoreError> {
        let backend = self.backend;
        alerts_by_source_uid(self.conn(), backend, scope, source_uids).await
    }

    /// Appends candidates; a candidate already stored (same content hash)
    /// is skipped, so re-mapping to the same result adds nothing.
    pub async fn insert_candidates(
        &mut self,
        candidates: Vec<CandidateRecord>,
    ) -> Result<u64, StoreError> {
        let rows = candidates.into_iter().map(candidate_values).collect();
        self.insert_candidate_rows(rows, true).await
    }

    /// Candidate rows; with `skip_stored`, one already stored is skipped.
    async fn insert_candidate_rows(
        &mut self,
        rows: Vec<Vec<Val>>,
        skip_stored: bool,
    ) -> Result<u64, StoreError> {
        let backend = self.backend;
        insert_rows(
            self.conn(),
            backend,
            "mapping_candidates",
            &CANDIDATE_COLUMNS,
            rows,
            skip_stored,
        )
        .await
    }

    /// Appends canonical set versions and their entries.
    pub async fn insert_canonical(&mut self, sets: Vec<CanonicalRecord>) -> Result<(), StoreError> {
        let mut set_rows = Vec::with_capacity(sets.len());
        let mut entry_rows = Vec::new();
        for s in sets {
            set_rows.push(set_values(s.set));
            entry_rows.extend(s.entries.into_iter().map(entry_values));
        }
        self.insert_canonical_rows(set_rows, entry_rows).await
    }

    async fn insert_canonical_rows(
        &mut self,
        sets: Vec<Vec<Val>>,
        entries: Vec<Vec<Val>>,
    ) -> Result<(), StoreError> {
        let backend = self.backend;
        insert_rows(
            self.conn(),
            backend,
            "canonical_sets",
            &SET_COLUMNS,
            sets,
            false,
        )
        .await?;
        insert_rows(
            self.conn(),
            backend,
            "canonical_mappings",
            &ENTRY_COLUMNS,
            entries,
            false,
        )
        .await?;
        Ok(())
    }

    /// Inserts mapping rows made beforehand of alerts inserted in this
    /// transaction: the candidates, then the canonical sets and their
    /// entries. No candidate of such an alert can be stored yet, so they go
    /// in without conflict handling (see [`Tx::insert_all_or_none`] for
    /// what that saves). Returns the time each part took, for the
    /// ingestion's phase log.
    pub async fn insert_mapping_rows(
        &mut self,
        rows: MappingRows,
    ) -> Result<(std::time::Duration, std::time::Duration), StoreError> {
        let started = std::time::Instant::now();
        self.insert_candidate_rows(rows.candidates, false).await?;
        let candidates = started.elapsed();
        self.insert_canonical_rows(rows.sets, rows.entries).await?;
        Ok((candidates, started.elapsed() - candidates))
    }

    /// Points alerts at their new canonical version and clears their stale mark.
    pub async fn set_current_mapping(
        &mut self,
        scope: &OrgScope,
        updates: &[MappingUpdate],
    ) -> Result<(), StoreError> {
        for u in updates {
            let content = if u.content_sha256.is_some() {
                " AND content_sha256 = $6"
            } else {
                ""
            };
            let sql = format!(
                "UPDATE alerts SET canonical_version = $1, mapping_state = $2, stale = 0, \
                 stale_reason = NULL WHERE org_id = $3 AND id = $4 AND canonical_version = $5\
                 {content}"
            );
            let mut query = sqlx::query(&sql)
                .bind(u.canonical_version)
                .bind(u.mapping_state.as_str())
                .bind(scope.org().as_str())
                .bind(u.alert_id.as_str())
                .bind(u.based_on);
            if let Some(sha) = &u.content_sha256 {
                query = query.bind(sha.as_str());
            }
            let done = query
                .execute(self.conn())
                .await
                .context(|| format!("updating the mapping of alert {}", u.alert_id))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict {
                    what: format!(
                        "a mapping or content of alert {} newer than version {}",
                        u.alert_id, u.based_on
                    ),
                });
            }
        }
        let alerts: Vec<&AlertId> = updates.iter().map(|u| &u.alert_id).collect();
        self.refresh_mapping_copies(scope, &alerts).await
    }

    /// Replaces the content of an alert that was sent again with changes
    /// (its evidence or severity), marking its mapping stale.
    ///
    /// Only while the stored content is still `based_on` (the
    /// `content_sha256` the caller read) and its current mapping still
    /// `alert.canonical_version`: returns false, changing nothing, when
    /// another writer has replaced either since, so that the caller
    /// compares against what is stored now instead of counting a change
    /// twice or moving matrix rollups of a mapping no longer current.
    pub async fn update_alert_content(
        &mut self,
        scope: &OrgScope,
        alert: &AlertRecord,
        based_on: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE alerts SET format = $1, time = $2, title = $3, description = $4, \
             severity = $5, severity_weight = $6, connector = $7, product = $8, \
             analytic_uid = $9, host = $10, user_name = $11, content_sha256 = $12, raw = $13, \
             normalized = $14, stale = 1, stale_reason = $15 \
             WHERE org_id = $16 AND id = $17 AND content_sha256 = $18 \
             AND canonical_version = $19",
        )
        .bind(alert.format.as_str())
        .bind(alert.time.as_ref().map(ts))
        .bind(alert.title.as_str())
        .bind(alert.description.as_deref())
        .bind(alert.severity.as_str())
        .bind(alert.severity_weight)
        .bind(alert.connector.as_deref())
        .bind(alert.product.as_deref())
        .bind(alert.analytic_uid.as_deref())
        .bind(alert.host.as_deref())
        .bind(alert.user.as_deref())
        .bind(alert.content_sha256.as_str());
        let query = match self.backend {
            Backend::Sqlite => query.bind(crate::packed::pack(&alert.raw)),
            Backend::Postgres => query.bind(alert.raw.as_str()),
        };
        let done = query
            .bind(alert.normalized.as_str())
            .bind(alert.stale_reason.as_deref())
            .bind(scope.org().as_str())
            .bind(alert.id.as_str())
            .bind(based_on)
            .bind(alert.canonical_version)
            .execute(self.conn())
            .await
            .context(|| format!("updating alert {}", alert.id))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks every alert of the org stale (a rule change or a new release
    /// may change any of them) until its mapping is recomputed.
    pub async fn mark_org_alerts_stale(
        &mut self,
        scope: &OrgScope,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE alerts SET stale = 1, stale_reason = $1 WHERE org_id = $2")
            .bind(reason)
            .bind(scope.org().as_str())
            .execute(self.conn())
            .await
            .context(|| format!("marking the alerts of org {} stale", scope.org()))?;
        Ok(done.rows_affected())
    }

    /// Locks (or unlocks) an alert's mapping for arbitration.
    pub async fn set_alert_locked(
        &mut self,
        scope: &OrgScope,
        alert: &AlertId,
        locked: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE alerts SET locked = $1 WHERE org_id = $2 AND id = $3")
            .bind(i64::from(locked))
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .execute(self.conn())
            .await
            .context(|| format!("locking alert {alert}"))?;
        Ok(())
    }
}

impl Store {
    /// The stored alerts among `source_uids`, as `source_uid -> (id,
    /// content_sha256)`.
    pub async fn alerts_by_source_uid(
        &self,
        scope: &OrgScope,
        source_uids: &[String],
    ) -> Result<HashMap<String, (AlertId, String)>, StoreError> {
        let mut conn = self.conn_in(scope).await?;
        alerts_by_source_uid(&mut conn, self.backend, scope, source_uids).await
    }

    /// One alert by the product's id or, failing that, by its source uid.
    pub async fn alert(
        &self,
        scope: &OrgScope,
        id_or_uid: &str,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM alerts WHERE org_id = $1 AND (id = $2 OR source_uid = $2) \
             ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
            ALERT_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(id_or_uid)
            .fetch_optional(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading alert {id_or_uid}"))?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// A page of the org's alerts ordered by id, after `after` (a cursor).
    pub async fn alerts_page(
        &self,
        scope: &OrgScope,
        after: Option<&AlertId>,
        limit: i64,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM alerts WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            ALERT_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(after.map(|a| a.as_str()).unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("listing alerts of org {}", scope.org()))?;
        rows.iter().map(alert_from_row).collect()
    }

    /// How many alerts the org has.
    pub async fn alert_count(&self, scope: &OrgScope) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS total FROM alerts WHERE org_id = $1")
            .bind(scope.org().as_str())
            .fetch_one(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("counting alerts of org {}", scope.org()))?;
        get(&row, "alerts", "total")
    }

    /// Every candidate of an alert, oldest first.
    pub async fn candidates(
        &self,
        scope: &OrgScope,
        alert: &AlertId,
    ) -> Result<Vec<CandidateRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM mapping_candidates WHERE org_id = $1 AND alert_id = $2 \
             ORDER BY created_at, id",
            CANDIDATE_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading candidates of alert {alert}"))?;
        rows.iter().map(candidate_from_row).collect()
    }

    /// Candidates of several alerts (a drilldown page) in one read, in the
    /// order [`Store::candidates`] gives for each.
    pub async fn candidates_of_alerts(
        &self,
        scope: &OrgScope,
        alerts: &[AlertId],
    ) -> Result<Vec<CandidateRecord>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let (org, list) = (p(self.backend, 1), in_list(self.backend, 1, alerts.len()));
        let sql = format!(
            "SELECT {} FROM mapping_candidates WHERE org_id = {org} AND alert_id IN ({list}) \
             ORDER BY alert_id, created_at, id",
            CANDIDATE_COLUMNS.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for alert in alerts {
            query = query.bind(alert.as_str());
        }
        let rows = query
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading candidates of {} alerts", alerts.len()))?;
        rows.iter().map(candidate_from_row).collect()
    }

    /// One version of an alert's canonical set, with its entries.
    pub async fn canonical(
        &self,
        scope: &OrgScope,
        alert: &AlertId,
        version: i64,
    ) -> Result<Option<CanonicalRecord>, StoreError> {
        let mut conn = self.conn_in(scope).await?;
        let sql = format!(
            "SELECT {} FROM canonical_sets WHERE org_id = $1 AND alert_id = $2 AND version = $3",
            SET_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .bind(version)
            .fetch_optional(&mut *conn)
            .await
            .context(|| format!("reading canonical set {version} of alert {alert}"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let set = set_from_row(&row)?;
        let rows = sqlx::query(&set_entries_sql())
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .bind(version)
            .fetch_all(&mut *conn)
            .await
            .context(|| format!("reading canonical mappings of alert {alert}"))?;
        let mut entries: Vec<CanonicalEntryRecord> =
            rows.iter().map(entry_from_row).collect::<Result<_, _>>()?;
        // Sorted here, not by the query (see `set_entries_sql`); a technique
        // without tactic comes before the same technique with one.
        entries.sort_by(|a, b| (&a.technique, &a.tactic).cmp(&(&b.technique, &b.tactic)));
        Ok(Some(CanonicalRecord { set, entries }))
    }

    /// Every version of an alert's canonical set (headers), oldest first.
    pub async fn canonical_history(
        &self,
        scope: &OrgScope,
        alert: &AlertId,
    ) -> Result<Vec<CanonicalSetRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM canonical_sets WHERE org_id = $1 AND alert_id = $2 ORDER BY version",
            SET_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading canonical history of alert {alert}"))?;
        rows.iter().map(set_from_row).collect()
    }

    /// A page of the org's alerts, newest first, strictly before the alert
    /// `before` (the previous page's last id). Ids are time-ordered UUID v7,
    /// so id order is ingestion order and the primary key serves the page.
    pub async fn alerts_listing(
        &self,
        scope: &OrgScope,
        filter: &AlertListFilter,
        before: Option<&AlertId>,
        limit: i64,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let columns: Vec<String> = ALERT_COLUMNS.iter().map(|c| format!("a.{c}")).collect();
        let mut binds: Vec<&str> = vec![scope.org().as_str()];
        let mut sql = format!(
            "SELECT {} FROM alerts a WHERE a.org_id = {}",
            columns.join(", "),
            p(self.backend, 1)
        );
        // Each condition binds the value pushed just before it.
        let backend = self.backend;
        let condition =
            |binds: &[&str], column: &str| format!(" AND {column} = {}", p(backend, binds.len()));
        if let Some(before) = before {
            binds.push(before.as_str());
            sql.push_str(&format!(" AND a.id < {}", p(self.backend, binds.len())));
        }
        if let Some(state) = filter.mapping_state.as_deref() {
            binds.push(state);
            sql.push_str(&condition(&binds, "a.mapping_state"));
        }
        // Entry filters apply to one entry of the current canonical version
        // together: "technique T1059 decided by a rule", not T1059 from one
        // entry and `rule` from another.
        let entry_filters = [
            ("m.technique", filter.technique.as_deref()),
            ("m.source", filter.source.as_deref()),
            ("m.band", filter.band.as_deref()),
        ];
        if entry_filters.iter().any(|(_, v)| v.is_some()) {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM canonical_mappings m WHERE m.org_id = a.org_id \
                 AND m.alert_id = a.id AND m.version = a.canonical_version",
            );
            for (column, value) in entry_filters {
                if let Some(value) = value {
                    binds.push(value);
                    sql.push_str(&condition(&binds, column));
                }
            }
            sql.push(')');
        }
        sql.push_str(&format!(
            " ORDER BY a.id DESC LIMIT {}",
            p(self.backend, binds.len() + 1)
        ));

        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = query.bind(*value);
        }
        let rows = query
            .bind(limit)
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("listing alerts of org {}", scope.org()))?;
        rows.iter().map(alert_from_row).collect()
    }

    /// The entries of the current canonical version of each alert in
    /// `alerts`, by alert (alerts without entries are left out).
    pub async fn current_entries(
        &self,
        scope: &OrgScope,
        alerts: &[AlertId],
    ) -> Result<HashMap<AlertId, Vec<CanonicalEntryRecord>>, StoreError> {
        let columns: Vec<String> = ENTRY_COLUMNS.iter().map(|c| format!("m.{c}")).collect();
        let mut found: HashMap<AlertId, Vec<CanonicalEntryRecord>> = HashMap::new();
        let mut conn = self.conn_in(scope).await?;
        for chunk in alerts.chunks(500) {
            let sql = format!(
                "SELECT {} FROM canonical_mappings m JOIN alerts a ON a.org_id = m.org_id \
                 AND a.id = m.alert_id AND a.canonical_version = m.version \
                 WHERE m.org_id = {} AND m.alert_id IN ({}) \
                 ORDER BY m.alert_id, m.technique, m.tactic",
                columns.join(", "),
                p(self.backend, 1),
                in_list(self.backend, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for id in chunk {
                query = query.bind(id.as_str());
            }
            let rows = query
                .fetch_all(&mut *conn)
                .await
                .context(|| format!("reading current mappings of org {}", scope.org()))?;
            for row in &rows {
                let entry = entry_from_row(row)?;
                found.entry(entry.alert_id.clone()).or_default().push(entry);
            }
        }
        Ok(found)
    }
}

/// Filters of [`Store::alerts_listing`]; `None` leaves a filter out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertListFilter {
    /// Technique ID of a current canonical entry (`T1059.001`).
    pub technique: Option<String>,
    /// Winning source of that entry: `manual`, `rule` or `ai`.
    pub source: Option<String>,
    /// Confidence band of that entry: `low`, `medium` or `high`.
    pub band: Option<String>,
    /// `mapped` or `unmapped`.
    pub mapping_state: Option<String>,
}

/// The stored alerts of the org among `source_uids`, as `source_uid -> (id,
/// content_sha256)`.
async fn alerts_by_source_uid(
    conn: &mut AnyConnection,
    backend: Backend,
    scope: &OrgScope,
    source_uids: &[String],
) -> Result<HashMap<String, (AlertId, String)>, StoreError> {
    let mut found = HashMap::new();
    for chunk in source_uids.chunks(500) {
        // A join on a VALUES list rather than `source_uid IN (...)`:
        // PostgreSQL plans a long IN list on a freshly filled table
        // (no statistics yet) as a scan of every alert of the org, so
        // each batch took longer than the last. Each VALUES row is one
        // lookup in the (org_id, source_uid) key. Not a prepared
        // statement either: a plan cached while the table was nearly
        // empty (a hash join over a full scan) would stay in use as it
        // grows; planned afresh, each batch sees the table's current
        // size. The org goes last so that SQLite's anonymous `?` bind
        // in the same order as PostgreSQL's numbers.
        let sql = format!(
            "WITH wanted (uid) AS (VALUES {}) \
                 SELECT a.id, a.source_uid, a.content_sha256 FROM wanted \
                 JOIN alerts a ON a.org_id = {} AND a.source_uid = wanted.uid",
            placeholders(backend, 1, chunk.len()),
            p(backend, chunk.len() + 1)
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for uid in chunk {
            query = query.bind(uid.as_str());
        }
        query = query.bind(scope.org().as_str());
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .context(|| "looking up alerts by source uid".to_string())?;
        for row in &rows {
            found.insert(
                get::<String>(row, "alerts", "source_uid")?,
                (
                    AlertId(get(row, "alerts", "id")?),
                    get(row, "alerts", "content_sha256")?,
                ),
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for `sql` on a freshly migrated database.
    async fn sqlite_plan(sql: &str) -> String {
        let db = crate::testing::TestDatabase::sqlite();
        let store = db.store().await;
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let steps: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect();
        store.close().await;
        steps.join("\n")
    }

    #[tokio::test]
    async fn a_sets_entries_are_found_by_alert_not_by_scanning_the_orgs_techniques() {
        let plan = sqlite_plan(&set_entries_sql()).await;
        assert!(
            plan.contains("canonical_mappings_alert (org_id=? AND alert_id=? AND version=?)"),
            "{plan}"
        );
    }
}
