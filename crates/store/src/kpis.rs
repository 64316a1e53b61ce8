//! Reads behind the KPIs: compact per-row facts of one org over a time
//! window, for the service to count. No KPI is decided here: the store
//! answers rows, the service's `kpis` module says what they mean.
//!
//! Every window is half-open, `[from, to)`, on each table's own timestamp
//! (an alert's observed time, else its arrival; a review item's opening; an
//! audit row's time; a candidate's creation). Timestamps are stored as
//! RFC 3339 UTC text with milliseconds, so text order is time order on both
//! databases, and open ends become bounds beyond any real time so that each
//! read is one statement to plan.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alerts::{get, get_opt_ts, get_ts};
use crate::{Context, OrgScope, Store, StoreError, ts};

/// A half-open time window; `None` ends are open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiWindow {
    /// First instant counted.
    pub from: Option<DateTime<Utc>>,
    /// First instant no longer counted.
    pub to: Option<DateTime<Utc>>,
}

impl KpiWindow {
    fn bounds(&self) -> (String, String) {
        (
            self.from
                .as_ref()
                .map_or_else(|| "0000-01-01T00:00:00.000Z".to_string(), ts),
            self.to
                .as_ref()
                .map_or_else(|| "9999-12-31T23:59:59.999Z".to_string(), ts),
        )
    }
}

/// One alert of the window with what the KPIs ask of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiAlertRow {
    /// Alert id.
    pub id: String,
    /// Severity word as ingested.
    pub severity: String,
    /// Connector it came through.
    pub connector: Option<String>,
    /// Product that raised it.
    pub product: Option<String>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Marked stale.
    pub stale: bool,
    /// Entries of its current canonical set.
    pub current_entries: i64,
    /// When a canonical set with at least one entry was first computed.
    pub first_mapped_at: Option<DateTime<Utc>>,
    /// Approved override rows (direct or decided proposals).
    pub approved_overrides: i64,
}

/// One entry of an alert's current canonical set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiMappingRow {
    /// The alert.
    pub alert_id: String,
    /// `manual`, `rule` or `ai`.
    pub source: String,
    /// Confidence, 0 to 1.
    pub confidence: f64,
    /// Confidence band.
    pub band: String,
    /// Producers (JSON array text: `rule:ID@VERSION`, `ai:MODEL`, `manual:ID`, `vendor`).
    pub producers: String,
    /// Overrides behind the entry (JSON array text).
    pub override_ids: String,
    /// ATT&CK release the mapping was made against.
    pub release: String,
    /// Dataset of that release.
    pub dataset_id: Option<String>,
}

/// One review item opened in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiReviewRow {
    /// The alert under review; empty for an incident's item, which has no
    /// alert's severity or connector and so counts in no segment of those.
    pub alert_id: String,
    /// `open`, `accepted`, `rejected` or `corrected`.
    pub state: String,
    /// When it was queued.
    pub opened_at: DateTime<Utc>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it: a person, or `system:...` for a resolution the
    /// product made itself (a recomputation, a merge, a status change).
    pub resolved_by: Option<String>,
    /// Actions that touched it.
    pub interactions: i64,
}

/// One AI candidate created in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiAiCandidateRow {
    /// The alert.
    pub alert_id: String,
    /// Technique proposed.
    pub technique: String,
    /// Effective (possibly capped) confidence.
    pub confidence: f64,
    /// The suggester's explanation, which states the calibrated value and
    /// the cap.
    pub explanation: String,
}

impl Store {
    /// The org's alerts observed in the window (observed time, else
    /// arrival), with their mapping facts.
    pub async fn kpi_alerts(
        &self,
        scope: &OrgScope,
        window: &KpiWindow,
    ) -> Result<Vec<KpiAlertRow>, StoreError> {
        let (from, to) = window.bounds();
        let rows = sqlx::query(
            "SELECT a.id, a.severity, a.connector, a.product, a.received_at, a.stale, \
             (SELECT COUNT(*) FROM canonical_mappings m WHERE m.org_id = a.org_id \
                AND m.alert_id = a.id AND m.version = a.canonical_version) AS current_entries, \
             (SELECT MIN(s.computed_at) FROM canonical_sets s WHERE s.org_id = a.org_id \
                AND s.alert_id = a.id AND s.entries > 0) AS first_mapped_at, \
             (SELECT COUNT(*) FROM overrides o WHERE o.org_id = a.org_id \
                AND o.alert_id = a.id AND o.status = 'approved') AS approved_overrides \
             FROM alerts a WHERE a.org_id = $1 \
             AND COALESCE(a.time, a.received_at) >= $2 AND COALESCE(a.time, a.received_at) < $3 \
             ORDER BY a.id",
        )
        .bind(scope.org().as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("reading KPI alert facts of org {}", scope.org()))?;
        let t = "alerts";
        rows.iter()
            .map(|row| {
                Ok(KpiAlertRow {
                    id: get(row, t, "id")?,
                    severity: get(row, t, "severity")?,
                    connector: get(row, t, "connector")?,
                    product: get(row, t, "product")?,
                    received_at: get_ts(row, t, "received_at")?,
                    stale: get::<i64>(row, t, "stale")? != 0,
                    current_entries: get(row, t, "current_entries")?,
                    first_mapped_at: get_opt_ts(row, t, "first_mapped_at")?,
                    approved_overrides: get(row, t, "approved_overrides")?,
                })
            })
            .collect()
    }

    /// The current canonical entries of the org's alerts observed in the
    /// window.
    pub async fn kpi_mappings(
        &self,
        scope: &OrgScope,
        window: &KpiWindow,
    ) -> Result<Vec<KpiMappingRow>, StoreError> {
        let (from, to) = window.bounds();
        let rows = sqlx::query(
            "SELECT m.alert_id, m.source, m.confidence, m.band, m.producers, m.override_ids, \
             m.release, m.dataset_id \
             FROM alerts a JOIN canonical_mappings m ON m.org_id = a.org_id \
                AND m.alert_id = a.id AND m.version = a.canonical_version \
             WHERE a.org_id = $1 \
             AND COALESCE(a.time, a.received_at) >= $2 AND COALESCE(a.time, a.received_at) < $3 \
             ORDER BY m.alert_id, m.technique",
        )
        .bind(scope.org().as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("reading KPI mapping facts of org {}", scope.org()))?;
        let t = "canonical_mappings";
        rows.iter()
            .map(|row| {
                Ok(KpiMappingRow {
                    alert_id: get(row, t, "alert_id")?,
                    source: get(row, t, "source")?,
                    confidence: get(row, t, "confidence")?,
                    band: get(row, t, "band")?,
                    producers: get(row, t, "producers")?,
                    override_ids: get(row, t, "override_ids")?,
                    release: get(row, t, "release")?,
                    dataset_id: get(row, t, "dataset_id")?,
                })
            })
            .collect()
    }

    /// The org's review items opened in the window, alerts' and incidents'.
    pub async fn kpi_reviews(
        &self,
        scope: &OrgScope,
        window: &KpiWindow,
    ) -> Result<Vec<KpiReviewRow>, StoreError> {
        let (from, to) = window.bounds();
        let rows = sqlx::query(
            "SELECT COALESCE(alert_id, '') AS alert_id, state, opened_at, resolved_at, \
             resolved_by, interactions FROM review_queue \
             WHERE org_id = $1 AND opened_at >= $2 AND opened_at < $3 ORDER BY opened_at, id",
        )
        .bind(scope.org().as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("reading KPI review facts of org {}", scope.org()))?;
        let t = "review_queue";
        rows.iter()
            .map(|row| {
                Ok(KpiReviewRow {
                    alert_id: get(row, t, "alert_id")?,
                    state: get(row, t, "state")?,
                    opened_at: get_ts(row, t, "opened_at")?,
                    resolved_at: get_opt_ts(row, t, "resolved_at")?,
                    resolved_by: get(row, t, "resolved_by")?,
                    interactions: get(row, t, "interactions")?,
                })
            })
            .collect()
    }

    /// Audit rows of the org in the window whose outcome is `denied`.
    pub async fn kpi_denials(
        &self,
        scope: &OrgScope,
        window: &KpiWindow,
    ) -> Result<i64, StoreError> {
        let (from, to) = window.bounds();
        let row = sqlx::query(
            "SELECT COUNT(*) AS denials FROM audit_log \
             WHERE org_id = $1 AND outcome = 'denied' AND at >= $2 AND at < $3",
        )
        .bind(scope.org().as_str())
        .bind(from)
        .bind(to)
        .fetch_one(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("counting denials of org {}", scope.org()))?;
        get(&row, "audit_log", "denials")
    }

    /// The org's AI candidates created in the window.
    pub async fn kpi_ai_candidates(
        &self,
        scope: &OrgScope,
        window: &KpiWindow,
    ) -> Result<Vec<KpiAiCandidateRow>, StoreError> {
        let (from, to) = window.bounds();
        let rows = sqlx::query(
            "SELECT alert_id, technique, confidence, explanation FROM mapping_candidates \
             WHERE org_id = $1 AND source = 'ai' AND created_at >= $2 AND created_at < $3 \
             ORDER BY alert_id, id",
        )
        .bind(scope.org().as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("reading AI candidates of org {}", scope.org()))?;
        let t = "mapping_candidates";
        rows.iter()
            .map(|row| {
                Ok(KpiAiCandidateRow {
                    alert_id: get(row, t, "alert_id")?,
                    technique: get(row, t, "technique")?,
                    confidence: get(row, t, "confidence")?,
                    explanation: get(row, t, "explanation")?,
                })
            })
            .collect()
    }
}
