//! Manual overrides (append-only), the review queue and notifications.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::alerts::{AlertId, get, get_opt_ts, get_ts, p};
use crate::batch::{Val, in_list, insert_rows, placeholders};
use crate::{Context, IncidentId, OrgId, OrgScope, Store, StoreError, Tx, ts};

/// One override row. A decision on a proposal is a new row whose
/// `supersedes` names the proposal; rows are never edited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideRecord {
    /// Override id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The alert it changes.
    pub alert_id: AlertId,
    /// Per-alert sequence number, from 1.
    pub version: i64,
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// The technique added or removed.
    pub technique: String,
    /// Its tactic.
    pub tactic: Option<String>,
    /// For `replace`, the technique replaced.
    pub replaces_technique: Option<String>,
    /// For `replace`, its tactic.
    pub replaces_tactic: Option<String>,
    /// Reason code.
    pub reason: String,
    /// Notes.
    pub notes: Option<String>,
    /// Confidence of the manual mapping.
    pub confidence: f64,
    /// Who proposed or made it.
    pub actor: String,
    /// `proposed`, `approved` or `rejected`.
    pub status: String,
    /// Who approved or rejected it.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<DateTime<Utc>>,
    /// The proposal this row decides.
    pub supersedes: Option<String>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// One review queue item. Its subject is an alert or an incident: exactly
/// one of `alert_id` and `incident_id` is set (the table refuses anything
/// else).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// Item id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The alert to review, for an alert's item.
    pub alert_id: Option<AlertId>,
    /// The incident to review, for an incident's item (its profile went
    /// stale).
    pub incident_id: Option<IncidentId>,
    /// `low_confidence`, `ai_only`, `stale`, `conflict`, `over_mapping` or
    /// `no_evidence`; an incident's item is `stale`.
    pub reason: String,
    /// What exactly (JSON text): an alert's flags, an incident's stale
    /// reasons.
    pub detail: String,
    /// `open`, `accepted`, `rejected`, `corrected` or `resolved_by_remap`
    /// (the product closed it: a recomputation of the alert's canonical set
    /// removed its reason).
    pub state: String,
    /// When it was queued.
    pub opened_at: DateTime<Utc>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// By whom.
    pub resolved_by: Option<String>,
    /// Resolution notes or the correcting override (JSON text).
    pub resolution: Option<String>,
    /// How many actions touched it.
    pub interactions: i64,
}

/// A recomputed alert, for [`Tx::close_reviews_gone`]: the review reasons
/// its new canonical set gives, and the resolution (JSON text) its closed
/// items get.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewReasons {
    /// The alert.
    pub alert_id: AlertId,
    /// The reasons that still apply.
    pub reasons: Vec<String>,
    /// What closed the others: cause, actor, canonical version.
    pub resolution: String,
}

/// A message for the org's leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// Role or person it is for (`lead`).
    pub recipient: String,
    /// Kind (`arbitration_lock`).
    pub kind: String,
    /// The alert concerned.
    pub alert_id: Option<AlertId>,
    /// Text.
    pub message: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

const OVERRIDE_COLUMNS: &str = "id, org_id, alert_id, version, action, technique, tactic, \
     replaces_technique, replaces_tactic, reason, notes, confidence, actor, status, approved_by, \
     approved_at, supersedes, created_at";

const REVIEW_COLUMNS: [&str; 12] = [
    "id",
    "org_id",
    "alert_id",
    "incident_id",
    "reason",
    "detail",
    "state",
    "opened_at",
    "resolved_at",
    "resolved_by",
    "resolution",
    "interactions",
];

fn override_from_row(row: &AnyRow) -> Result<OverrideRecord, StoreError> {
    let t = "overrides";
    Ok(OverrideRecord {
        id: get(row, t, "id")?,
        org_id: OrgId(get(row, t, "org_id")?),
        alert_id: AlertId(get(row, t, "alert_id")?),
        version: get(row, t, "version")?,
        action: get(row, t, "action")?,
        technique: get(row, t, "technique")?,
        tactic: get(row, t, "tactic")?,
        replaces_technique: get(row, t, "replaces_technique")?,
        replaces_tactic: get(row, t, "replaces_tactic")?,
        reason: get(row, t, "reason")?,
        notes: get(row, t, "notes")?,
        confidence: get(row, t, "confidence")?,
        actor: get(row, t, "actor")?,
        status: get(row, t, "status")?,
        approved_by: get(row, t, "approved_by")?,
        approved_at: get_opt_ts(row, t, "approved_at")?,
        supersedes: get(row, t, "supersedes")?,
        created_at: get_ts(row, t, "created_at")?,
    })
}

fn review_from_row(row: &AnyRow) -> Result<ReviewRecord, StoreError> {
    let t = "review_queue";
    Ok(ReviewRecord {
        id: get(row, t, "id")?,
        org_id: OrgId(get(row, t, "org_id")?),
        alert_id: get::<Option<String>>(row, t, "alert_id")?.map(AlertId),
        incident_id: get::<Option<String>>(row, t, "incident_id")?.map(IncidentId),
        reason: get(row, t, "reason")?,
        detail: get(row, t, "detail")?,
        state: get(row, t, "state")?,
        opened_at: get_ts(row, t, "opened_at")?,
        resolved_at: get_opt_ts(row, t, "resolved_at")?,
        resolved_by: get(row, t, "resolved_by")?,
        resolution: get(row, t, "resolution")?,
        interactions: get(row, t, "interactions")?,
    })
}

impl Tx {
    /// Appends an override row.
    pub async fn insert_override(&mut self, o: &OverrideRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO overrides ({OVERRIDE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(o.id.as_str())
        .bind(o.org_id.as_str())
        .bind(o.alert_id.as_str())
        .bind(o.version)
        .bind(o.action.as_str())
        .bind(o.technique.as_str())
        .bind(o.tactic.as_deref())
        .bind(o.replaces_technique.as_deref())
        .bind(o.replaces_tactic.as_deref())
        .bind(o.reason.as_str())
        .bind(o.notes.as_deref())
        .bind(o.confidence)
        .bind(o.actor.as_str())
        .bind(o.status.as_str())
        .bind(o.approved_by.as_deref())
        .bind(o.approved_at.as_ref().map(ts))
        .bind(o.supersedes.as_deref())
        .bind(ts(&o.created_at))
        .execute(self.conn())
        .await
        .context(|| format!("override version {} of alert {}", o.version, o.alert_id))?;
        Ok(())
    }

    /// Opens review items; an item already open for the same alert (or
    /// incident) and reason is left as it is. Answers the items opened.
    pub async fn open_reviews(&mut self, items: Vec<ReviewRecord>) -> Result<u64, StoreError> {
        let backend = self.backend;
        let rows = items
            .into_iter()
            .map(|r| {
                vec![
                    Val::from(r.id),
                    r.org_id.0.into(),
                    r.alert_id.map(|a| a.0).into(),
                    r.incident_id.map(|i| i.0).into(),
                    r.reason.into(),
                    r.detail.into(),
                    r.state.into(),
                    ts(&r.opened_at).into(),
                    r.resolved_at.as_ref().map(ts).into(),
                    r.resolved_by.into(),
                    r.resolution.into(),
                    r.interactions.into(),
                ]
            })
            .collect();
        insert_rows(
            self.conn(),
            backend,
            "review_queue",
            &REVIEW_COLUMNS,
            rows,
            true,
        )
        .await
    }

    /// Resolves an open item; false when it is not open (or not the org's).
    pub async fn resolve_review(
        &mut self,
        scope: &OrgScope,
        id: &str,
        state: &str,
        by: &str,
        at: &DateTime<Utc>,
        resolution: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE review_queue SET state = $1, resolved_by = $2, resolved_at = $3, \
             resolution = $4, interactions = interactions + 1 \
             WHERE org_id = $5 AND id = $6 AND state = 'open'",
        )
        .bind(state)
        .bind(by)
        .bind(ts(at))
        .bind(resolution)
        .bind(scope.org().as_str())
        .bind(id)
        .execute(self.conn())
        .await
        .context(|| format!("resolving review item {id}"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes `resolution` (JSON text) on an item that stays open (a
    /// correction awaiting a lead's approval, or one the lead rejected) and
    /// counts the action; false when it is not open (or not the org's).
    pub async fn note_open_review(
        &mut self,
        scope: &OrgScope,
        id: &str,
        resolution: &str,
    ) -> Result<bool, StoreError> {
        self.note_on_open(scope, id, resolution, "", "noting on")
            .await
    }

    /// Notes `resolution` (JSON text naming a proposed correction) on an
    /// open item and counts the action, unless the item already awaits
    /// another proposal's approval: false then, or when it is not open.
    /// The check is part of the update so that two corrections sent at
    /// once cannot both be noted, the later hiding the earlier.
    pub async fn note_awaited_proposal(
        &mut self,
        scope: &OrgScope,
        id: &str,
        resolution: &str,
    ) -> Result<bool, StoreError> {
        self.note_on_open(
            scope,
            id,
            resolution,
            " AND (resolution IS NULL OR resolution NOT LIKE '%\"awaiting_approval\"%')",
            "noting a proposal on",
        )
        .await
    }

    /// The update behind both notes: `also` narrows which open items take
    /// it (a fixed SQL condition, never input).
    async fn note_on_open(
        &mut self,
        scope: &OrgScope,
        id: &str,
        resolution: &str,
        also: &str,
        what: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE review_queue SET resolution = $1, interactions = interactions + 1 \
             WHERE org_id = $2 AND id = $3 AND state = 'open'{also}"
        );
        let done = sqlx::query(&sql)
            .bind(resolution)
            .bind(scope.org().as_str())
            .bind(id)
            .execute(self.conn())
            .await
            .context(|| format!("{what} review item {id}"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The open items of an alert, read inside this transaction, oldest
    /// first.
    pub async fn open_alert_reviews(
        &mut self,
        scope: &OrgScope,
        alert: &AlertId,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM review_queue WHERE org_id = $1 AND alert_id = $2 \
             AND state = 'open' ORDER BY id",
            REVIEW_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .fetch_all(self.conn())
            .await
            .context(|| format!("reading the open review items of alert {alert}"))?;
        rows.iter().map(review_from_row).collect()
    }

    /// One review item, read inside this transaction.
    pub async fn review(
        &mut self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Option<ReviewRecord>, StoreError> {
        review_by_id(self.conn(), scope, id).await
    }

    /// Resolves every open item of an alert with `reason` (a recomputation
    /// cleared a stale mark, an arbitration lifted a lock), noting
    /// `resolution` (JSON text) when given.
    pub async fn close_reviews_of(
        &mut self,
        scope: &OrgScope,
        alert: &AlertId,
        reason: &str,
        state: &str,
        by: &str,
        resolution: Option<&str>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE review_queue SET state = $1, resolved_by = $2, resolved_at = $3, \
             resolution = COALESCE($4, resolution) \
             WHERE org_id = $5 AND alert_id = $6 AND reason = $7 AND state = 'open'",
        )
        .bind(state)
        .bind(by)
        .bind(ts(&crate::now()))
        .bind(resolution)
        .bind(scope.org().as_str())
        .bind(alert.as_str())
        .bind(reason)
        .execute(self.conn())
        .await
        .context(|| format!("closing review items of alert {alert}"))?;
        Ok(done.rows_affected())
    }

    /// Closes, as `resolved_by_remap`, the open items of recomputed alerts
    /// whose reason no longer applies: for each alert, the items with a
    /// reason among `rederived` (the reasons a canonical set decides) that
    /// is not among the reasons its new set still gives. An item whose
    /// correction awaits a lead (`awaiting_approval` in its resolution)
    /// stays open: the lead's decision settles it. A few statements
    /// whatever the number of alerts. Answers the items closed.
    pub async fn close_reviews_gone(
        &mut self,
        scope: &OrgScope,
        rederived: &[&str],
        alerts: &[ReviewReasons],
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if rederived.is_empty() {
            return Ok(0);
        }
        let backend = self.backend;
        let at = ts(at);
        let mut closed = 0;
        for chunk in alerts.chunks(200) {
            // SQLite numbers `?` by position, so the constants ride in the
            // VALUES rows, which come first. The reasons that still apply
            // travel as one `,a,b,` text per alert, which a LIKE reads the
            // same way on both databases (the `_` of a reason matches any
            // one character, and no two reasons differ by one character).
            let values = 5 * chunk.len();
            let sql = format!(
                "UPDATE review_queue SET state = 'resolved_by_remap', resolved_by = v.column3, \
                 resolved_at = v.column4, resolution = v.column5 \
                 FROM (VALUES {}) AS v \
                 WHERE review_queue.alert_id = v.column1 AND review_queue.org_id = {} \
                 AND review_queue.state = 'open' AND review_queue.reason IN ({}) \
                 AND v.column2 NOT LIKE '%,' || review_queue.reason || ',%' \
                 AND (review_queue.resolution IS NULL \
                      OR review_queue.resolution NOT LIKE '%\"awaiting_approval\"%')",
                placeholders(backend, 5, chunk.len()),
                p(backend, values + 1),
                in_list(backend, values + 1, rederived.len())
            );
            let mut query = sqlx::query(&sql);
            for a in chunk {
                let still = format!(",{},", a.reasons.join(","));
                query = query
                    .bind(a.alert_id.as_str())
                    .bind(still)
                    .bind(by)
                    .bind(at.as_str())
                    .bind(a.resolution.as_str());
            }
            query = query.bind(scope.org().as_str());
            for reason in rederived {
                query = query.bind(*reason);
            }
            let done = query
                .execute(self.conn())
                .await
                .context(|| "closing review items a re-map made moot".to_string())?;
            closed += done.rows_affected();
        }
        Ok(closed)
    }

    /// The open items of `incidents` with `reason`, read inside this
    /// transaction (so a trigger adds to the item it finds, not to one a
    /// concurrent resolution just closed), by incident.
    pub async fn open_incident_reviews(
        &mut self,
        scope: &OrgScope,
        reason: &str,
        incidents: &[IncidentId],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let backend = self.backend;
        let mut found = Vec::new();
        for chunk in incidents.chunks(400) {
            let sql = format!(
                "SELECT {} FROM review_queue WHERE org_id = {} AND reason = {} \
                 AND state = 'open' AND incident_id IN ({})",
                REVIEW_COLUMNS.join(", "),
                p(backend, 1),
                p(backend, 2),
                in_list(backend, 2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope.org().as_str()).bind(reason);
            for incident in chunk {
                query = query.bind(incident.as_str());
            }
            let rows = query
                .fetch_all(self.conn())
                .await
                .context(|| "reading the open review items of incidents".to_string())?;
            for row in &rows {
                found.push(review_from_row(row)?);
            }
        }
        found.sort_by(|a, b| a.incident_id.cmp(&b.incident_id));
        Ok(found)
    }

    /// Every open item of the scope's incidents with `reason`, read inside
    /// this transaction, by incident.
    pub async fn open_incident_reviews_of_org(
        &mut self,
        scope: &OrgScope,
        reason: &str,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM review_queue WHERE org_id = $1 AND reason = $2 \
             AND state = 'open' AND incident_id IS NOT NULL ORDER BY incident_id, id",
            REVIEW_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(reason)
            .fetch_all(self.conn())
            .await
            .context(|| "reading the open review items of the org's incidents".to_string())?;
        rows.iter().map(review_from_row).collect()
    }

    /// Rewrites the detail of open items, `(item id, detail)` each, in a
    /// few statements whatever their number. Answers the items changed; an
    /// item resolved meanwhile, or another org's, is left alone.
    pub async fn set_review_details(
        &mut self,
        scope: &OrgScope,
        details: &[(String, String)],
    ) -> Result<u64, StoreError> {
        let backend = self.backend;
        let mut changed = 0;
        for chunk in details.chunks(500) {
            // A VALUES list names its columns column1, column2 on both
            // databases; UPDATE ... FROM is SQLite 3.33+ and PostgreSQL.
            let sql = format!(
                "UPDATE review_queue SET detail = v.column2 FROM (VALUES {}) AS v \
                 WHERE review_queue.id = v.column1 AND review_queue.org_id = {} \
                 AND review_queue.state = 'open'",
                placeholders(backend, 2, chunk.len()),
                p(backend, 2 * chunk.len() + 1)
            );
            let mut query = sqlx::query(&sql);
            for (id, detail) in chunk {
                query = query.bind(id.as_str()).bind(detail.as_str());
            }
            let done = query
                .bind(scope.org().as_str())
                .execute(self.conn())
                .await
                .context(|| "rewriting the detail of review items".to_string())?;
            changed += done.rows_affected();
        }
        Ok(changed)
    }

    /// Stores a notification.
    pub async fn insert_notification(&mut self, n: &NotificationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notifications (id, org_id, recipient, kind, alert_id, message, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(n.id.as_str())
        .bind(n.org_id.as_str())
        .bind(n.recipient.as_str())
        .bind(n.kind.as_str())
        .bind(n.alert_id.as_ref().map(|a| a.as_str()))
        .bind(n.message.as_str())
        .bind(ts(&n.created_at))
        .execute(self.conn())
        .await
        .context(|| format!("notification {}", n.id))?;
        Ok(())
    }
}

impl Store {
    /// Every override row of an alert, by version.
    pub async fn overrides_of(
        &self,
        scope: &OrgScope,
        alert: &AlertId,
    ) -> Result<Vec<OverrideRecord>, StoreError> {
        let sql = format!(
            "SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE org_id = $1 AND alert_id = $2 \
             ORDER BY version"
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(alert.as_str())
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading overrides of alert {alert}"))?;
        rows.iter().map(override_from_row).collect()
    }

    /// Overrides of several alerts (a drilldown page) in one read, by
    /// alert, then version.
    pub async fn overrides_of_alerts(
        &self,
        scope: &OrgScope,
        alerts: &[AlertId],
    ) -> Result<Vec<OverrideRecord>, StoreError> {
        if alerts.is_empty() {
            return Ok(Vec::new());
        }
        let (org, list) = (p(self.backend, 1), in_list(self.backend, 1, alerts.len()));
        let sql = format!(
            "SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE org_id = {org} AND alert_id IN ({list}) \
             ORDER BY alert_id, version"
        );
        let mut query = sqlx::query(&sql).bind(scope.org().as_str());
        for alert in alerts {
            query = query.bind(alert.as_str());
        }
        let rows = query
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading overrides of {} alerts", alerts.len()))?;
        rows.iter().map(override_from_row).collect()
    }

    /// One override row.
    pub async fn override_by_id(
        &self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Option<OverrideRecord>, StoreError> {
        let sql = format!("SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(id)
            .fetch_optional(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading override {id}"))?;
        row.as_ref().map(override_from_row).transpose()
    }

    /// Review items of the org in a state (`None`: all), oldest first.
    pub async fn reviews(
        &self,
        scope: &OrgScope,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM review_queue WHERE org_id = $1 AND ($2 IS NULL OR state = $2) \
             ORDER BY opened_at, id LIMIT $3",
            REVIEW_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(state)
            .bind(limit)
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("listing review items of org {}", scope.org()))?;
        rows.iter().map(review_from_row).collect()
    }

    /// A page of the org's review items in a state (`None`: all), oldest
    /// first, after the item `after` (the previous page's last id). Item ids
    /// are time-ordered UUID v7, so id order is queueing order and a page
    /// boundary stays put when items before it are resolved.
    pub async fn reviews_after(
        &self,
        scope: &OrgScope,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM review_queue WHERE org_id = $1 AND ($2 IS NULL OR state = $2) \
             AND id > $3 ORDER BY id LIMIT $4",
            REVIEW_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(state)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("listing review items of org {}", scope.org()))?;
        rows.iter().map(review_from_row).collect()
    }

    /// One review item.
    pub async fn review(
        &self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Option<ReviewRecord>, StoreError> {
        review_by_id(&mut *self.conn_in(scope).await?, scope, id).await
    }

    /// The org's notifications, newest first.
    pub async fn notifications(
        &self,
        scope: &OrgScope,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, org_id, recipient, kind, alert_id, message, created_at \
             FROM notifications WHERE org_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(scope.org().as_str())
        .fetch_all(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("listing notifications of org {}", scope.org()))?;
        rows.iter()
            .map(|row| {
                let t = "notifications";
                Ok(NotificationRecord {
                    id: get(row, t, "id")?,
                    org_id: OrgId(get(row, t, "org_id")?),
                    recipient: get(row, t, "recipient")?,
                    kind: get(row, t, "kind")?,
                    alert_id: get::<Option<String>>(row, t, "alert_id")?.map(AlertId),
                    message: get(row, t, "message")?,
                    created_at: get_ts(row, t, "created_at")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// The open review items of `alerts`, oldest first: what a matrix
    /// drilldown offers to accept or reject beside each alert.
    pub async fn open_reviews_of(
        &self,
        scope: &OrgScope,
        alerts: &[AlertId],
    ) -> Result<Vec<ReviewRecord>, StoreError> {
        let mut found = Vec::new();
        let mut conn = self.conn_in(scope).await?;
        for chunk in alerts.chunks(400) {
            let sql = format!(
                "SELECT {} FROM review_queue WHERE org_id = {} AND state = 'open' \
                 AND alert_id IN ({})",
                REVIEW_COLUMNS.join(", "),
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
                .context(|| "reading the open review items of alerts".to_string())?;
            for row in &rows {
                found.push(review_from_row(row)?);
            }
        }
        // Item ids are time-ordered UUID v7: id order is queueing order.
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

/// One review item of `scope`, read on `conn` (a transaction's or a pooled
/// connection).
async fn review_by_id(
    conn: &mut sqlx::AnyConnection,
    scope: &OrgScope,
    id: &str,
) -> Result<Option<ReviewRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM review_queue WHERE org_id = $1 AND id = $2",
        REVIEW_COLUMNS.join(", ")
    );
    let row = sqlx::query(&sql)
        .bind(scope.org().as_str())
        .bind(id)
        .fetch_optional(conn)
        .await
        .context(|| format!("reading review item {id}"))?;
    row.as_ref().map(review_from_row).transpose()
}
