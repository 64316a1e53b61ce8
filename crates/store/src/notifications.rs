//! Notifications as admins read them (platform-wide ones included), raised
//! at most once per window, acknowledged once; and the scans over every org
//! that find misuse for the watch.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::alerts::{AlertId, get, get_opt_ts, get_ts};
use crate::{Backend, Context, OrgId, OrgScope, Store, StoreError, Tx, ts};

/// One notification with every stored column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationEntry {
    /// Id (UUID v7, so id order is creation order).
    pub id: String,
    /// The org; `None` for a platform notification (a broken audit chain).
    pub org_id: Option<OrgId>,
    /// The role it is for (`lead`, `admin`, `platform-admin`).
    pub recipient: String,
    /// Kind (`arbitration_lock`, `incident_review_rejected`,
    /// `audit_chain_broken`, `misuse_override_burst`).
    pub kind: String,
    /// What it is about, for raising it once (the actor, the bad event).
    pub subject: Option<String>,
    /// The alert concerned.
    pub alert_id: Option<AlertId>,
    /// Text.
    pub message: String,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
    /// When it was acknowledged.
    pub read_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub read_by: Option<String>,
}

/// Who reads notifications: which org's, for which recipient roles, and
/// whether the platform-wide ones too.
#[derive(Debug, Clone, Copy)]
pub struct NotificationAudience<'a> {
    /// The reader's org; `None` sees no org's notifications.
    pub org: Option<&'a OrgScope>,
    /// Recipient roles of the org's notifications that the reader sees.
    pub recipients: &'a [&'a str],
    /// Whether the reader also sees platform notifications (no org).
    pub platform: bool,
}

/// One actor's activity at or over a threshold within a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorBurst {
    /// The org acted in; `None` for platform actions.
    pub org_id: Option<OrgId>,
    /// The actor as audited (`token:<id>` for API tokens).
    pub actor: String,
    /// How many events in the window.
    pub count: i64,
}

const NOTIFICATION_COLUMNS: &str =
    "id, org_id, recipient, kind, subject, alert_id, message, created_at, read_at, read_by";

fn entry_from_row(row: &AnyRow) -> Result<NotificationEntry, StoreError> {
    let t = "notifications";
    Ok(NotificationEntry {
        id: get(row, t, "id")?,
        org_id: get::<Option<String>>(row, t, "org_id")?.map(OrgId),
        recipient: get(row, t, "recipient")?,
        kind: get(row, t, "kind")?,
        subject: get(row, t, "subject")?,
        alert_id: get::<Option<String>>(row, t, "alert_id")?.map(AlertId),
        message: get(row, t, "message")?,
        created_at: get_ts(row, t, "created_at")?,
        read_at: get_opt_ts(row, t, "read_at")?,
        read_by: get(row, t, "read_by")?,
    })
}

fn burst_from_row(row: &AnyRow, table: &str) -> Result<ActorBurst, StoreError> {
    Ok(ActorBurst {
        org_id: get::<Option<String>>(row, table, "org_id")?.map(OrgId),
        actor: get(row, table, "author")?,
        count: get(row, table, "n")?,
    })
}

/// The WHERE condition selecting what `audience` sees, with its parameters
/// numbered from `$1`; answers the condition and the next free number.
fn audience_condition(audience: &NotificationAudience<'_>) -> (String, usize) {
    let org_part = if audience.recipients.is_empty() {
        "1 = 0".to_string()
    } else {
        let slots: Vec<String> = (0..audience.recipients.len())
            .map(|i| format!("${}", i + 3))
            .collect();
        format!("org_id = $1 AND recipient IN ({})", slots.join(", "))
    };
    let condition = format!("(({org_part}) OR ($2 = 1 AND org_id IS NULL))");
    (condition, audience.recipients.len() + 3)
}

impl Tx {
    /// Stores `entry` unless a notification of the same org, kind and
    /// subject was raised at or after `since` (`None`: ever). Answers whether
    /// it was stored. Concurrent raisers (several `serve` nodes) are
    /// serialised so that only one of them stores it.
    pub async fn insert_notification_once(
        &mut self,
        entry: &NotificationEntry,
        since: Option<&DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        // SQLite transactions here already hold the write lock (BEGIN
        // IMMEDIATE); PostgreSQL needs a lock that conflicts with itself
        // and with inserts, held until commit.
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE notifications IN SHARE ROW EXCLUSIVE MODE")
                .execute(self.conn())
                .await
                .context(|| "locking the notifications".to_string())?;
        }
        let org = entry.org_id.as_ref().map(OrgId::as_str);
        let existing = sqlx::query(
            "SELECT id FROM notifications WHERE kind = $1 AND subject = $2 \
             AND (org_id = $3 OR (org_id IS NULL AND $3 IS NULL)) AND created_at >= $4 LIMIT 1",
        )
        .bind(entry.kind.as_str())
        .bind(entry.subject.as_deref())
        .bind(org)
        .bind(since.map_or_else(String::new, ts))
        .fetch_optional(self.conn())
        .await
        .context(|| format!("looking for an earlier {} notification", entry.kind))?;
        if existing.is_some() {
            return Ok(false);
        }
        self.insert_notification_entry(entry).await?;
        Ok(true)
    }

    /// Stores `entry` as it is, every column included: for a notification
    /// of one event that is raised once by nature (a review item is
    /// rejected once), which needs no check for an earlier one.
    pub async fn insert_notification_entry(
        &mut self,
        entry: &NotificationEntry,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(entry.id.as_str())
        .bind(entry.org_id.as_ref().map(OrgId::as_str))
        .bind(entry.recipient.as_str())
        .bind(entry.kind.as_str())
        .bind(entry.subject.as_deref())
        .bind(entry.alert_id.as_ref().map(AlertId::as_str))
        .bind(entry.message.as_str())
        .bind(ts(&entry.created_at))
        .bind(entry.read_at.as_ref().map(ts))
        .bind(entry.read_by.as_deref())
        .execute(self.conn())
        .await
        .context(|| format!("notification {}", entry.id))?;
        Ok(())
    }

    /// Marks a notification read by `by`; false when it was already read
    /// (or does not exist).
    pub async fn ack_notification(
        &mut self,
        id: &str,
        by: &str,
        at: &DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE notifications SET read_at = $1, read_by = $2 WHERE id = $3 AND read_at IS NULL",
        )
        .bind(ts(at))
        .bind(by)
        .bind(id)
        .execute(self.conn())
        .await
        .context(|| format!("acknowledging notification {id}"))?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// What `audience` sees, newest first, below the id `before` (the last
    /// id of the previous page).
    pub async fn notification_entries(
        &self,
        audience: &NotificationAudience<'_>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationEntry>, StoreError> {
        let (visible, next) = audience_condition(audience);
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE {visible} \
             AND (${next} IS NULL OR id < ${next}) ORDER BY id DESC LIMIT ${}",
            next + 1
        );
        let mut query = sqlx::query(&sql)
            .bind(audience.org.map(|s| s.org().as_str()))
            .bind(i64::from(audience.platform));
        for recipient in audience.recipients {
            query = query.bind(*recipient);
        }
        let rows = query
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *self.conn_for(audience).await?)
            .await
            .context(|| "listing notifications".to_string())?;
        rows.iter().map(entry_from_row).collect()
    }

    /// One notification if `audience` sees it; another org's answers `None`
    /// like a missing one.
    pub async fn notification_entry(
        &self,
        audience: &NotificationAudience<'_>,
        id: &str,
    ) -> Result<Option<NotificationEntry>, StoreError> {
        let (visible, next) = audience_condition(audience);
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE {visible} AND id = ${next}"
        );
        let mut query = sqlx::query(&sql)
            .bind(audience.org.map(|s| s.org().as_str()))
            .bind(i64::from(audience.platform));
        for recipient in audience.recipients {
            query = query.bind(*recipient);
        }
        let row = query
            .bind(id)
            .fetch_optional(&mut *self.conn_for(audience).await?)
            .await
            .context(|| format!("reading notification {id}"))?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// A connection that sees what `audience` may see: one org's rows, or
    /// every row when platform notifications (which have no org) are
    /// wanted; the query's own condition narrows it down from there.
    async fn conn_for(
        &self,
        audience: &NotificationAudience<'_>,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        match (audience.org, audience.platform) {
            (_, true) => self.conn_all().await,
            (Some(scope), false) => self.conn_in(scope).await,
            (None, false) => self.conn_shared().await,
        }
    }

    /// Actors who wrote at least `threshold` overrides at or after `since`,
    /// in any org: a proposal or direct change counts for its author, an
    /// approval for the approver; rejections change no mapping and do not
    /// count.
    ///
    /// This reads across orgs on purpose: the watch is a platform job, and
    /// each burst names its org so that only that org's admins hear of it.
    pub async fn override_bursts(
        &self,
        since: &DateTime<Utc>,
        threshold: i64,
    ) -> Result<Vec<ActorBurst>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, author, COUNT(*) AS n FROM (\
                 SELECT org_id, CASE WHEN supersedes IS NULL THEN actor ELSE approved_by END \
                 AS author FROM overrides WHERE created_at >= $1 AND status <> 'rejected'\
             ) recent WHERE author IS NOT NULL \
             GROUP BY org_id, author HAVING COUNT(*) >= $2 ORDER BY org_id, author",
        )
        .bind(ts(since))
        .bind(threshold)
        .fetch_all(&mut *self.conn_all().await?)
        .await
        .context(|| "counting recent overrides by actor".to_string())?;
        rows.iter()
            .map(|r| burst_from_row(r, "overrides"))
            .collect()
    }

    /// Actors refused at least `threshold` times at or after `since` (audit
    /// events with outcome `denied`), per org; platform actors have no org.
    /// Reads across orgs for the same reason as [`Store::override_bursts`].
    pub async fn denial_bursts(
        &self,
        since: &DateTime<Utc>,
        threshold: i64,
    ) -> Result<Vec<ActorBurst>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, actor AS author, COUNT(*) AS n FROM audit_log \
             WHERE outcome = 'denied' AND at >= $1 \
             GROUP BY org_id, actor HAVING COUNT(*) >= $2 ORDER BY org_id, actor",
        )
        .bind(ts(since))
        .bind(threshold)
        .fetch_all(&mut *self.conn_all().await?)
        .await
        .context(|| "counting recent denials by actor".to_string())?;
        rows.iter()
            .map(|r| burst_from_row(r, "audit_log"))
            .collect()
    }
}
