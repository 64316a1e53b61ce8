//! Incidents: the record, its alert attachments (with history), evidence
//! references and lead adjustments, plus the one query the profile needs.
//!
//! The profile is not stored: [`Store::incident_profile_rows`] reads the
//! current canonical entries of every live attached alert in one query and
//! the service aggregates them, so the profile cannot drift from the
//! alerts' mappings.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::alerts::{get, get_opt_ts, get_ts, p};
use crate::batch::{Val, in_list, insert_rows};
use crate::{AlertId, Context, OrgId, OrgScope, Store, StoreError, Tx, ts};

crate::records::id_type!(
    /// Identifies an incident.
    IncidentId
);

/// One stored incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentRecord {
    /// The product's id.
    pub id: IncidentId,
    /// Its org.
    pub org_id: OrgId,
    /// Title.
    pub title: String,
    /// `open`, `contained`, `resolved`, `closed` or `reopened`.
    pub status: String,
    /// Severity word (`low`, `medium`, `high`, `critical`, ...).
    pub severity: String,
    /// The incident lead, when named.
    pub lead: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last change of the record, its alerts, evidence or adjustments.
    pub updated_at: DateTime<Utc>,
    /// The incident this one was merged into, once merged.
    pub merged_into: Option<IncidentId>,
    /// The incident this one was split from.
    pub split_from: Option<IncidentId>,
    /// True while a staleness trigger waits for a lead's review.
    pub stale: bool,
    /// The stale reasons since the last review (JSON text, an array).
    pub stale_reasons: String,
}

/// A live attachment: the alert's ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedAlert {
    /// The product's alert id.
    pub alert_id: AlertId,
    /// The alert's own id in its source.
    pub source_uid: String,
    /// When it was attached.
    pub attached_at: DateTime<Utc>,
}

/// One evidence reference of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The incident.
    pub incident_id: IncidentId,
    /// What kind of reference (`ticket`, `url`, `file`, `note`, ...).
    pub kind: String,
    /// The reference itself.
    pub reference: String,
    /// Who added it.
    pub added_by: String,
    /// When.
    pub added_at: DateTime<Utc>,
}

/// One lead adjustment row (append-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdjustmentRecord {
    /// Id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The incident it was made on (a merge does not move it).
    pub incident_id: IncidentId,
    /// Per-incident sequence number, from 1.
    pub version: i64,
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// Technique added (add, replace) or removed (remove).
    pub technique: String,
    /// Its tactic.
    pub tactic: Option<String>,
    /// For replace: the technique replaced.
    pub replaces_technique: Option<String>,
    /// For replace: its tactic.
    pub replaces_tactic: Option<String>,
    /// Reason code.
    pub reason: String,
    /// The lead's rationale (required).
    pub rationale: String,
    /// Evidence references behind it (JSON text, an array).
    pub evidence: String,
    /// Confidence the entry gets.
    pub confidence: f64,
    /// Who made it.
    pub actor: String,
    /// `proposed`, `approved` or `rejected`.
    pub status: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When; orders "last approved wins".
    pub approved_at: Option<DateTime<Utc>>,
    /// The adjustment it supersedes.
    pub supersedes: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// One current canonical entry of an attached alert, as the profile needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    /// The alert.
    pub alert_id: AlertId,
    /// The technique.
    pub technique: String,
    /// The tactic.
    pub tactic: Option<String>,
    /// The winning source.
    pub source: String,
    /// The winning confidence.
    pub confidence: f64,
    /// Candidate ids (JSON text).
    pub candidate_ids: String,
    /// Override ids (JSON text).
    pub override_ids: String,
    /// Producers (JSON text).
    pub producers: String,
    /// ATT&CK release the entry was computed under.
    pub release: String,
}

/// One incident as the org's incident list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSummaryRecord {
    /// The product's id.
    pub id: IncidentId,
    /// Title.
    pub title: String,
    /// Status.
    pub status: String,
    /// Severity word.
    pub severity: String,
    /// Live attached alerts.
    pub alert_count: i64,
    /// Last change of the record, its alerts, evidence or adjustments.
    pub updated_at: DateTime<Utc>,
    /// The incident it was merged into, once merged.
    pub merged_into: Option<IncidentId>,
    /// True while a staleness trigger waits for a lead's review.
    pub stale: bool,
}

const INCIDENT_COLUMNS: [&str; 13] = [
    "id",
    "org_id",
    "title",
    "status",
    "severity",
    "lead",
    "created_by",
    "created_at",
    "updated_at",
    "merged_into",
    "split_from",
    "stale",
    "stale_reasons",
];

const ADJUSTMENT_COLUMNS: [&str; 19] = [
    "id",
    "org_id",
    "incident_id",
    "version",
    "action",
    "technique",
    "tactic",
    "replaces_technique",
    "replaces_tactic",
    "reason",
    "rationale",
    "evidence",
    "confidence",
    "actor",
    "status",
    "approved_by",
    "approved_at",
    "supersedes",
    "created_at",
];

const ATTACH_COLUMNS: [&str; 6] = [
    "id",
    "org_id",
    "incident_id",
    "alert_id",
    "attached_at",
    "attached_by",
];

fn incident_from_row(row: &AnyRow) -> Result<IncidentRecord, StoreError> {
    let t = "incidents";
    Ok(IncidentRecord {
        id: IncidentId(get(row, t, "id")?),
        org_id: OrgId(get(row, t, "org_id")?),
        title: get(row, t, "title")?,
        status: get(row, t, "status")?,
        severity: get(row, t, "severity")?,
        lead: get(row, t, "lead")?,
        created_by: get(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        updated_at: get_ts(row, t, "updated_at")?,
        merged_into: get::<Option<String>>(row, t, "merged_into")?.map(IncidentId),
        split_from: get::<Option<String>>(row, t, "split_from")?.map(IncidentId),
        stale: get::<i64>(row, t, "stale")? != 0,
        stale_reasons: get(row, t, "stale_reasons")?,
    })
}

fn adjustment_from_row(row: &AnyRow) -> Result<AdjustmentRecord, StoreError> {
    let t = "incident_adjustments";
    Ok(AdjustmentRecord {
        id: get(row, t, "id")?,
        org_id: OrgId(get(row, t, "org_id")?),
        incident_id: IncidentId(get(row, t, "incident_id")?),
        version: get(row, t, "version")?,
        action: get(row, t, "action")?,
        technique: get(row, t, "technique")?,
        tactic: get(row, t, "tactic")?,
        replaces_technique: get(row, t, "replaces_technique")?,
        replaces_tactic: get(row, t, "replaces_tactic")?,
        reason: get(row, t, "reason")?,
        rationale: get(row, t, "rationale")?,
        evidence: get(row, t, "evidence")?,
        confidence: get(row, t, "confidence")?,
        actor: get(row, t, "actor")?,
        status: get(row, t, "status")?,
        approved_by: get(row, t, "approved_by")?,
        approved_at: get_opt_ts(row, t, "approved_at")?,
        supersedes: get(row, t, "supersedes")?,
        created_at: get_ts(row, t, "created_at")?,
    })
}

impl Tx {
    /// Inserts a new incident.
    pub async fn insert_incident(&mut self, i: &IncidentRecord) -> Result<(), StoreError> {
        let backend = self.backend;
        let row: Vec<Val> = vec![
            i.id.0.clone().into(),
            i.org_id.0.clone().into(),
            i.title.clone().into(),
            i.status.clone().into(),
            i.severity.clone().into(),
            i.lead.clone().into(),
            i.created_by.clone().into(),
            ts(&i.created_at).into(),
            ts(&i.updated_at).into(),
            i.merged_into.as_ref().map(|m| m.0.clone()).into(),
            i.split_from.as_ref().map(|m| m.0.clone()).into(),
            i.stale.into(),
            i.stale_reasons.clone().into(),
        ];
        insert_rows(
            self.conn(),
            backend,
            "incidents",
            &INCIDENT_COLUMNS,
            vec![row],
            false,
        )
        .await?;
        Ok(())
    }

    /// Writes the mutable fields of an incident record (status, severity,
    /// lead, title, merged_into, stale flag and reasons, updated_at).
    pub async fn update_incident(
        &mut self,
        scope: &OrgScope,
        i: &IncidentRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE incidents SET title = $1, status = $2, severity = $3, lead = $4, \
             updated_at = $5, merged_into = $6, stale = $7, stale_reasons = $8 \
             WHERE org_id = $9 AND id = $10",
        )
        .bind(i.title.as_str())
        .bind(i.status.as_str())
        .bind(i.severity.as_str())
        .bind(i.lead.as_deref())
        .bind(ts(&i.updated_at))
        .bind(i.merged_into.as_ref().map(|m| m.0.clone()))
        .bind(i64::from(i.stale))
        .bind(i.stale_reasons.as_str())
        .bind(scope.org().as_str())
        .bind(i.id.as_str())
        .execute(self.conn())
        .await
        .context(|| format!("updating incident {}", i.id))?;
        Ok(())
    }

    /// Attaches alerts to an incident (the caller leaves out alerts already
    /// attached; a duplicate live attachment is refused as a conflict).
    pub async fn attach_alerts(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
        alerts: &[AlertId],
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let backend = self.backend;
        let rows = alerts
            .iter()
            .map(|a| {
                vec![
                    uuid::Uuid::now_v7().to_string().into(),
                    scope.org().0.clone().into(),
                    incident.0.clone().into(),
                    a.0.clone().into(),
                    ts(at).into(),
                    by.into(),
                ]
            })
            .collect();
        insert_rows(
            self.conn(),
            backend,
            "incident_alerts",
            &ATTACH_COLUMNS,
            rows,
            false,
        )
        .await
    }

    /// Ends the live attachments of `alerts` to an incident; the rows stay
    /// as history. Returns the attachments ended.
    pub async fn detach_alerts(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
        alerts: &[AlertId],
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let backend = self.backend;
        let mut ended = 0;
        for chunk in alerts.chunks(500) {
            let sql = format!(
                "UPDATE incident_alerts SET detached_at = {}, detached_by = {} \
                 WHERE org_id = {} AND incident_id = {} AND detached_at IS NULL \
                 AND alert_id IN ({})",
                p(backend, 1),
                p(backend, 2),
                p(backend, 3),
                p(backend, 4),
                in_list(backend, 4, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(ts(at))
                .bind(by)
                .bind(scope.org().as_str())
                .bind(incident.as_str());
            for a in chunk {
                query = query.bind(a.as_str());
            }
            let done = query
                .execute(self.conn())
                .await
                .context(|| format!("detaching alerts from incident {incident}"))?;
            ended += done.rows_affected();
        }
        Ok(ended)
    }

    /// Ends every live attachment of an incident (a merge moves them all)
    /// in one statement; the rows stay as history. Returns the attachments
    /// ended.
    pub async fn detach_all_alerts(
        &mut self,
        scope: &OrgScope,
        incident: &IncidentId,
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE incident_alerts SET detached_at = $1, detached_by = $2 \
             WHERE org_id = $3 AND incident_id = $4 AND detached_at IS NULL",
        )
        .bind(ts(at))
        .bind(by)
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .execute(self.conn())
        .await
        .context(|| format!("detaching the alerts of incident {incident}"))?;
        Ok(done.rows_affected())
    }

    /// Appends an evidence reference.
    pub async fn insert_evidence(&mut self, e: &EvidenceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO incident_evidence (id, org_id, incident_id, kind, ref, added_by, \
             added_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.as_str())
        .bind(e.org_id.as_str())
        .bind(e.incident_id.as_str())
        .bind(e.kind.as_str())
        .bind(e.reference.as_str())
        .bind(e.added_by.as_str())
        .bind(ts(&e.added_at))
        .execute(self.conn())
        .await
        .context(|| format!("adding evidence to incident {}", e.incident_id))?;
        Ok(())
    }

    /// Appends a lead adjustment.
    pub async fn insert_adjustment(&mut self, a: &AdjustmentRecord) -> Result<(), StoreError> {
        let backend = self.backend;
        let row: Vec<Val> = vec![
            a.id.clone().into(),
            a.org_id.0.clone().into(),
            a.incident_id.0.clone().into(),
            a.version.into(),
            a.action.clone().into(),
            a.technique.clone().into(),
            a.tactic.clone().into(),
            a.replaces_technique.clone().into(),
            a.replaces_tactic.clone().into(),
            a.reason.clone().into(),
            a.rationale.clone().into(),
            a.evidence.clone().into(),
            a.confidence.into(),
            a.actor.clone().into(),
            a.status.clone().into(),
            a.approved_by.clone().into(),
            a.approved_at.as_ref().map(ts).into(),
            a.supersedes.clone().into(),
            ts(&a.created_at).into(),
        ];
        insert_rows(
            self.conn(),
            backend,
            "incident_adjustments",
            &ADJUSTMENT_COLUMNS,
            vec![row],
            false,
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// One incident of the scope.
    pub async fn incident(
        &self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Option<IncidentRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM incidents WHERE org_id = $1 AND id = $2",
            INCIDENT_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .context(|| format!("reading incident {id}"))?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// A page of the scope's incidents, most recently updated first (ties
    /// by id, descending), strictly after `before` (the `(updated_at, id)`
    /// of the last incident of the previous page).
    pub async fn incidents_page(
        &self,
        scope: &OrgScope,
        before: Option<(&DateTime<Utc>, &IncidentId)>,
        limit: i64,
    ) -> Result<Vec<IncidentSummaryRecord>, StoreError> {
        const SELECT: &str = "SELECT i.id, i.title, i.status, i.severity, i.updated_at, \
             i.merged_into, i.stale, (SELECT COUNT(*) FROM incident_alerts ia \
             WHERE ia.org_id = i.org_id AND ia.incident_id = i.id AND ia.detached_at IS NULL) \
             AS alert_count FROM incidents i WHERE i.org_id = $1";
        let mut conn = self.conn().await?;
        let rows = match before {
            // Timestamps are stored as fixed-width RFC 3339 text in UTC, so
            // text order is time order on both databases.
            Some((at, id)) => {
                let sql = format!(
                    "{SELECT} AND (i.updated_at < $2 OR (i.updated_at = $2 AND i.id < $3)) \
                     ORDER BY i.updated_at DESC, i.id DESC LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(scope.org().as_str())
                    .bind(ts(at))
                    .bind(id.as_str())
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
            }
            None => {
                let sql = format!("{SELECT} ORDER BY i.updated_at DESC, i.id DESC LIMIT $2");
                sqlx::query(&sql)
                    .bind(scope.org().as_str())
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
            }
        }
        .context(|| "listing incidents".to_string())?;
        rows.iter()
            .map(|row| {
                let t = "incidents";
                Ok(IncidentSummaryRecord {
                    id: IncidentId(get(row, t, "id")?),
                    title: get(row, t, "title")?,
                    status: get(row, t, "status")?,
                    severity: get(row, t, "severity")?,
                    alert_count: get(row, t, "alert_count")?,
                    updated_at: get_ts(row, t, "updated_at")?,
                    merged_into: get::<Option<String>>(row, t, "merged_into")?.map(IncidentId),
                    stale: get::<i64>(row, t, "stale")? != 0,
                })
            })
            .collect()
    }

    /// The ids of the incidents merged into `id`, directly or through a
    /// chain of merges.
    pub async fn incidents_merged_into(
        &self,
        scope: &OrgScope,
        id: &IncidentId,
    ) -> Result<Vec<IncidentId>, StoreError> {
        let mut conn = self.conn().await?;
        let mut found = Vec::new();
        let mut frontier = vec![id.clone()];
        while let Some(next) = frontier.pop() {
            let rows =
                sqlx::query("SELECT id FROM incidents WHERE org_id = $1 AND merged_into = $2")
                    .bind(scope.org().as_str())
                    .bind(next.as_str())
                    .fetch_all(&mut *conn)
                    .await
                    .context(|| format!("reading incidents merged into {next}"))?;
            for row in &rows {
                let merged = IncidentId(get(row, "incidents", "id")?);
                if merged != *id && !found.contains(&merged) {
                    found.push(merged.clone());
                    frontier.push(merged);
                }
            }
        }
        Ok(found)
    }

    /// The ids of the alerts attached to an incident now, ordered; read
    /// from the live-attachment index alone, for merge, split, attach and
    /// detach, which need nothing else.
    pub async fn incident_alert_ids(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<AlertId>, StoreError> {
        let rows = sqlx::query(
            "SELECT alert_id FROM incident_alerts \
             WHERE org_id = $1 AND incident_id = $2 AND detached_at IS NULL ORDER BY alert_id",
        )
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_all(&mut *self.conn().await?)
        .await
        .context(|| format!("reading the alert ids of incident {incident}"))?;
        rows.iter()
            .map(|row| Ok(AlertId(get(row, "incident_alerts", "alert_id")?)))
            .collect()
    }

    /// The live attachments of an incident, ordered by alert id.
    pub async fn incident_alerts(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<AttachedAlert>, StoreError> {
        let rows = sqlx::query(
            // CROSS JOIN: a fixed join order on SQLite (see
            // `incident_profile_rows`), a plain join on PostgreSQL.
            "SELECT ia.alert_id, a.source_uid, ia.attached_at FROM incident_alerts ia \
             CROSS JOIN alerts a \
             WHERE ia.org_id = $1 AND ia.incident_id = $2 AND ia.detached_at IS NULL \
             AND a.org_id = ia.org_id AND a.id = ia.alert_id \
             ORDER BY ia.alert_id",
        )
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_all(&mut *self.conn().await?)
        .await
        .context(|| format!("reading the alerts of incident {incident}"))?;
        rows.iter()
            .map(|row| {
                let t = "incident_alerts";
                Ok(AttachedAlert {
                    alert_id: AlertId(get(row, t, "alert_id")?),
                    source_uid: get(row, t, "source_uid")?,
                    attached_at: get_ts(row, t, "attached_at")?,
                })
            })
            .collect()
    }

    /// The live attachments of an incident, ordered by alert id, and the
    /// current canonical entries of those alerts, in one query (the profile
    /// of a 10,000-alert incident must take < 50 ms).
    pub async fn incident_profile_rows(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<(Vec<AttachedAlert>, Vec<ProfileRow>), StoreError> {
        let rows = sqlx::query(
            // One statement instead of an attachment list and a mapping
            // read: the per-row cost of the driver, not the database, is
            // most of the time. SQLite takes a CROSS JOIN as a fixed join
            // order, so it starts from the incident's attachments (a range
            // of incident_alerts_live, already in alert id order) instead
            // of scanning every alert of the org; PostgreSQL reads it as a
            // plain join and plans it the same way. The alert columns come
            // from the covering index alerts_incident_lookup.
            "SELECT ia.alert_id, a.source_uid, ia.attached_at, m.technique, m.tactic, \
             m.source, m.confidence, m.candidate_ids, m.override_ids, m.producers, m.release \
             FROM incident_alerts ia CROSS JOIN alerts a \
             LEFT JOIN canonical_mappings m ON m.org_id = a.org_id AND m.alert_id = a.id \
             AND m.version = a.canonical_version \
             WHERE ia.org_id = $1 AND ia.incident_id = $2 AND ia.detached_at IS NULL \
             AND a.org_id = ia.org_id AND a.id = ia.alert_id \
             ORDER BY ia.alert_id",
        )
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_all(&mut *self.conn().await?)
        .await
        .context(|| format!("reading the mappings of incident {incident}"))?;

        let t = "canonical_mappings";
        let mut alerts: Vec<AttachedAlert> = Vec::new();
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let alert_id: String = get(row, t, "alert_id")?;
            // Rows come ordered by alert id: an alert with several entries
            // is one run of rows.
            if alerts.last().is_none_or(|a| a.alert_id.0 != alert_id) {
                alerts.push(AttachedAlert {
                    alert_id: AlertId(alert_id.clone()),
                    source_uid: get(row, t, "source_uid")?,
                    attached_at: get_ts(row, t, "attached_at")?,
                });
            }
            // No technique: an attached alert without canonical entries.
            let Some(technique) = get::<Option<String>>(row, t, "technique")? else {
                continue;
            };
            entries.push(ProfileRow {
                alert_id: AlertId(alert_id),
                technique,
                tactic: get(row, t, "tactic")?,
                source: get(row, t, "source")?,
                confidence: get(row, t, "confidence")?,
                candidate_ids: get(row, t, "candidate_ids")?,
                override_ids: get(row, t, "override_ids")?,
                producers: get(row, t, "producers")?,
                release: get(row, t, "release")?,
            });
        }
        Ok((alerts, entries))
    }

    /// Evidence references of an incident, oldest first.
    pub async fn incident_evidence(
        &self,
        scope: &OrgScope,
        incident: &IncidentId,
    ) -> Result<Vec<EvidenceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, incident_id, kind, ref, added_by, added_at \
             FROM incident_evidence WHERE org_id = $1 AND incident_id = $2 \
             ORDER BY added_at, id",
        )
        .bind(scope.org().as_str())
        .bind(incident.as_str())
        .fetch_all(&mut *self.conn().await?)
        .await
        .context(|| format!("reading the evidence of incident {incident}"))?;
        rows.iter()
            .map(|row| {
                let t = "incident_evidence";
                Ok(EvidenceRecord {
                    id: get(row, t, "id")?,
                    org_id: OrgId(get(row, t, "org_id")?),
                    incident_id: IncidentId(get(row, t, "incident_id")?),
                    kind: get(row, t, "kind")?,
                    reference: get(row, t, "ref")?,
                    added_by: get(row, t, "added_by")?,
                    added_at: get_ts(row, t, "added_at")?,
                })
            })
            .collect()
    }

    /// The adjustment rows made on any of `incidents`, oldest first.
    pub async fn incident_adjustments(
        &self,
        scope: &OrgScope,
        incidents: &[IncidentId],
    ) -> Result<Vec<AdjustmentRecord>, StoreError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM incident_adjustments WHERE org_id = {} AND incident_id IN ({}) \
             ORDER BY created_at, version",
            ADJUSTMENT_COLUMNS.join(", "),
            p(self.backend, 1),
            in_list(self.backend, 1, incidents.len())
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for i in incidents {
            query = query.bind(i.as_str());
        }
        let rows = query
            .fetch_all(&mut *self.conn().await?)
            .await
            .context(|| "reading incident adjustments".to_string())?;
        rows.iter().map(adjustment_from_row).collect()
    }

    /// The stored alerts named by `refs` (product ids or source uids), as
    /// `(ref, alert id)` pairs; refs that name nothing in the scope are
    /// left out, so another org's alert looks exactly like a missing one.
    pub async fn resolve_alert_refs(
        &self,
        scope: &OrgScope,
        refs: &[String],
    ) -> Result<Vec<(String, AlertId)>, StoreError> {
        let mut by_id = std::collections::HashMap::new();
        let mut by_uid = std::collections::HashMap::new();
        let mut conn = self.conn().await?;
        for chunk in refs.chunks(400) {
            let sql = format!(
                "SELECT id, source_uid FROM alerts WHERE org_id = {} AND (id IN ({}) \
                 OR source_uid IN ({}))",
                p(self.backend, 1),
                in_list(self.backend, 1, chunk.len()),
                in_list(self.backend, 1 + chunk.len(), chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for r in chunk.iter().chain(chunk) {
                query = query.bind(r.as_str());
            }
            let rows = query
                .fetch_all(&mut *conn)
                .await
                .context(|| "resolving alert references".to_string())?;
            for row in &rows {
                let id: String = get(row, "alerts", "id")?;
                let uid: String = get(row, "alerts", "source_uid")?;
                by_uid.insert(uid, AlertId(id.clone()));
                by_id.insert(id.clone(), AlertId(id));
            }
        }
        // A product id wins over a source uid that happens to be equal.
        Ok(refs
            .iter()
            .filter_map(|r| {
                by_id
                    .get(r)
                    .or_else(|| by_uid.get(r))
                    .map(|a| (r.clone(), a.clone()))
            })
            .collect())
    }
}

/// One live attachment of an alert to an incident, with the incident's
/// summary: what a matrix drilldown lists beside the alerts of a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentHoldingRecord {
    /// The incident.
    pub incident_id: IncidentId,
    /// Its title.
    pub title: String,
    /// Its status.
    pub status: String,
    /// Its severity word.
    pub severity: String,
    /// The alert it holds.
    pub alert_id: AlertId,
}

impl Store {
    /// The live attachments of `alerts` to the scope's incidents, ordered by
    /// incident and alert. Another org's alert ids find nothing.
    pub async fn incidents_holding(
        &self,
        scope: &OrgScope,
        alerts: &[AlertId],
    ) -> Result<Vec<IncidentHoldingRecord>, StoreError> {
        let mut found = Vec::new();
        let mut conn = self.conn().await?;
        for chunk in alerts.chunks(400) {
            let sql = format!(
                "SELECT i.id, i.title, i.status, i.severity, ia.alert_id \
                 FROM incident_alerts ia JOIN incidents i \
                 ON i.org_id = ia.org_id AND i.id = ia.incident_id \
                 WHERE ia.org_id = {} AND ia.detached_at IS NULL AND ia.alert_id IN ({})",
                p(self.backend, 1),
                in_list(self.backend, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str());
            for alert in chunk {
                query = query.bind(alert.as_str());
            }
            let rows = query
                .fetch_all(&mut *conn)
                .await
                .context(|| "reading the incidents holding alerts".to_string())?;
            for row in &rows {
                let t = "incidents";
                found.push(IncidentHoldingRecord {
                    incident_id: IncidentId(get(row, t, "id")?),
                    title: get(row, t, "title")?,
                    status: get(row, t, "status")?,
                    severity: get(row, t, "severity")?,
                    alert_id: AlertId(get(row, "incident_alerts", "alert_id")?),
                });
            }
        }
        // Chunks each come back in the database's order: sort once here.
        found.sort_by(|a, b| {
            (a.incident_id.as_str(), a.alert_id.as_str())
                .cmp(&(b.incident_id.as_str(), b.alert_id.as_str()))
        });
        Ok(found)
    }
}
