//! Matrix rollups: canonical mappings counted per org, day and dimension,
//! and the exclusion windows admins define over them.
//!
//! The store adds and subtracts what it is given; which alert dimension
//! goes in which column is the service's decision.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::alerts::get;
use crate::{Backend, Context, OrgId, OrgScope, Store, StoreError, Tx, parse_ts, ts};

/// Rollup rows per statement: 12 parameters each stays far below both
/// backends' parameter limits.
const ROWS_PER_STATEMENT: usize = 500;

const KEY_COLUMNS: &str =
    "org_id, day, tactic, technique, source, severity, connector, platform, band";

/// One rollup row, or a change to one (a negative count subtracts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupRecord {
    /// The day the alerts were observed (UTC).
    pub day: NaiveDate,
    /// The tactic the mappings name; empty when they name none.
    pub tactic: String,
    /// The technique's exact ATT&CK ID.
    pub technique: String,
    /// `manual`, `rule` or `ai`.
    pub source: String,
    /// The alerts' normalized severity word.
    pub severity: String,
    /// The alert product the alerts came from.
    pub connector: String,
    /// The platform the alerts were raised on; empty when unknown.
    pub platform: String,
    /// `low`, `medium` or `high`.
    pub band: String,
    /// Canonical mappings (negative in a delta that removes some).
    pub count: i64,
    /// Alerts counted at the technique: each alert once per technique,
    /// however many tactics its mappings of that technique name.
    pub alerts: i64,
    /// Sum of the mappings' confidence values.
    pub confidence_sum: f64,
}

/// The key of a rollup row: every column but the two measures.
type Key = (
    NaiveDate,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn key_of(r: &RollupRecord) -> Key {
    (
        r.day,
        r.tactic.clone(),
        r.technique.clone(),
        r.source.clone(),
        r.severity.clone(),
        r.connector.clone(),
        r.platform.clone(),
        r.band.clone(),
    )
}

/// Sums deltas that share a key, dropping those that cancel out: one
/// statement may not touch a row twice (PostgreSQL refuses an `ON CONFLICT`
/// update that hits the same row twice). A delta cancels out only when all
/// three sums do: a mapping whose confidence changes in place (0.68 to 0.62)
/// leaves its count, and may leave its alert count, as they were.
fn merge(deltas: Vec<RollupRecord>) -> Vec<RollupRecord> {
    let mut merged: BTreeMap<Key, RollupRecord> = BTreeMap::new();
    for d in deltas {
        match merged.get_mut(&key_of(&d)) {
            Some(m) => {
                m.count += d.count;
                m.alerts += d.alerts;
                m.confidence_sum += d.confidence_sum;
            }
            None => {
                merged.insert(key_of(&d), d);
            }
        }
    }
    // Confidence values are sums of a few decimals of at most 3 places:
    // what is left of a cancelled pair is rounding, far below 1e-9.
    merged
        .into_values()
        .filter(|d| d.count != 0 || d.alerts != 0 || d.confidence_sum.abs() > 1e-9)
        .collect()
}

fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn parse_day(what: &str, s: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("`{s}` is not a YYYY-MM-DD day: {e}"),
    })
}

/// Adds `deltas` to the org's rollups in the caller's transaction, so that
/// the rollups change together with the canonical mappings they count.
/// Rows whose count drops to zero are removed.
pub async fn apply_delta(
    tx: &mut Tx,
    scope: &OrgScope,
    deltas: Vec<RollupRecord>,
) -> Result<(), StoreError> {
    let deltas = merge(deltas);
    if deltas.is_empty() {
        return Ok(());
    }
    let backend = tx.backend;
    let mut emptied_days: Vec<NaiveDate> = deltas
        .iter()
        .filter(|d| d.count < 0)
        .map(|d| d.day)
        .collect();
    emptied_days.sort();
    emptied_days.dedup();

    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO matrix_rollups ({KEY_COLUMNS}, count, alerts, confidence_sum) VALUES {} \
             ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET \
             count = matrix_rollups.count + excluded.count, \
             alerts = matrix_rollups.alerts + excluded.alerts, \
             confidence_sum = matrix_rollups.confidence_sum + excluded.confidence_sum",
            values_list(backend, 12, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for d in chunk {
            query = query
                .bind(scope.org().as_str())
                .bind(day_text(d.day))
                .bind(d.tactic.as_str())
                .bind(d.technique.as_str())
                .bind(d.source.as_str())
                .bind(d.severity.as_str())
                .bind(d.connector.as_str())
                .bind(d.platform.as_str())
                .bind(d.band.as_str())
                .bind(d.count)
                .bind(d.alerts)
                .bind(d.confidence_sum);
        }
        query
            .execute(tx.conn())
            .await
            .context(|| format!("updating the matrix rollups of org {}", scope.org()))?;
    }

    // Only days that lost mappings can hold emptied rows; looking there
    // keeps the clean-up off the rest of the org's rollups.
    for day in emptied_days {
        sqlx::query("DELETE FROM matrix_rollups WHERE org_id = $1 AND day = $2 AND count <= 0")
            .bind(scope.org().as_str())
            .bind(day_text(day))
            .execute(tx.conn())
            .await
            .context(|| format!("removing emptied rollups of org {} on {day}", scope.org()))?;
    }
    Ok(())
}

/// Removes every rollup row of the org (before a rebuild).
pub async fn clear(tx: &mut Tx, scope: &OrgScope) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM matrix_rollups WHERE org_id = $1")
        .bind(scope.org().as_str())
        .execute(tx.conn())
        .await
        .context(|| format!("clearing the matrix rollups of org {}", scope.org()))?;
    Ok(done.rows_affected())
}

/// `(?, ?, ...), (...)` on SQLite, `($1, $2, ...), (...)` on PostgreSQL.
fn values_list(backend: Backend, columns: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push(',');
            }
            n += 1;
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => out.push_str(&format!("${n}")),
            }
        }
        out.push(')');
    }
    out
}

fn rollup_from_row(row: &AnyRow) -> Result<RollupRecord, StoreError> {
    let t = "matrix_rollups";
    Ok(RollupRecord {
        day: parse_day("matrix_rollups.day", &get::<String>(row, t, "day")?)?,
        tactic: get(row, t, "tactic")?,
        technique: get(row, t, "technique")?,
        source: get(row, t, "source")?,
        severity: get(row, t, "severity")?,
        connector: get(row, t, "connector")?,
        platform: get(row, t, "platform")?,
        band: get(row, t, "band")?,
        count: get(row, t, "count")?,
        alerts: get(row, t, "alerts")?,
        confidence_sum: get(row, t, "confidence_sum")?,
    })
}

/// A noisy source window excluded from an org's views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExclusionRecord {
    /// Identifier.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// The connector whose rows are excluded.
    pub connector: String,
    /// First excluded day.
    pub from: NaiveDate,
    /// First day no longer excluded.
    pub to: NaiveDate,
    /// Why.
    pub reason: String,
    /// Who defined it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Stores an exclusion window in the caller's transaction (with its audit
/// event).
pub async fn insert_exclusion(tx: &mut Tx, window: &ExclusionRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO matrix_exclusions (id, org_id, connector, from_day, to_day, reason, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(window.id.as_str())
    .bind(window.org_id.as_str())
    .bind(window.connector.as_str())
    .bind(day_text(window.from))
    .bind(day_text(window.to))
    .bind(window.reason.as_str())
    .bind(window.created_by.as_str())
    .bind(ts(&window.created_at))
    .execute(tx.conn())
    .await
    .context(|| format!("storing exclusion window {}", window.id))?;
    Ok(())
}

impl Store {
    /// The org's rollup rows whose day lies in `[from, to)` (open ends when
    /// `None`).
    pub async fn rollups(
        &self,
        scope: &OrgScope,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<RollupRecord>, StoreError> {
        // Text days compare in calendar order; the bounds beyond any real
        // day stand in for open ends so there is one statement to plan.
        let from = from.map_or_else(|| "0000-01-01".to_string(), day_text);
        let to = to.map_or_else(|| "9999-12-31".to_string(), day_text);
        let sql = format!(
            "SELECT day, tactic, technique, source, severity, connector, platform, band, count, \
             alerts, confidence_sum FROM matrix_rollups \
             WHERE org_id = $1 AND day >= $2 AND day < $3 AND {}",
            self.statement_scope("$1")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(from.as_str())
            .bind(to.as_str())
            .fetch_all(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the matrix rollups of org {}", scope.org()))?;
        rows.iter().map(rollup_from_row).collect()
    }

    /// The org's exclusion windows, oldest first.
    pub async fn exclusions(&self, scope: &OrgScope) -> Result<Vec<ExclusionRecord>, StoreError> {
        let sql = format!(
            "SELECT id, org_id, connector, from_day, to_day, reason, created_by, created_at \
             FROM matrix_exclusions WHERE org_id = $1 AND {} ORDER BY created_at, id",
            self.statement_scope("$1")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .fetch_all(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the exclusion windows of org {}", scope.org()))?;
        let t = "matrix_exclusions";
        rows.iter()
            .map(|row| {
                Ok(ExclusionRecord {
                    id: get(row, t, "id")?,
                    org_id: OrgId(get(row, t, "org_id")?),
                    connector: get(row, t, "connector")?,
                    from: parse_day(
                        "matrix_exclusions.from_day",
                        &get::<String>(row, t, "from_day")?,
                    )?,
                    to: parse_day(
                        "matrix_exclusions.to_day",
                        &get::<String>(row, t, "to_day")?,
                    )?,
                    reason: get(row, t, "reason")?,
                    created_by: get(row, t, "created_by")?,
                    created_at: parse_ts("created_at", &get::<String>(row, t, "created_at")?)?,
                })
            })
            .collect()
    }
}

/// One current canonical mapping of an alert, with the alert fields a
/// drilldown list shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMappingRecord {
    /// The alert's product id.
    pub alert_id: String,
    /// The alert's own id in its source.
    pub source_uid: String,
    /// Title.
    pub title: String,
    /// When the activity happened, else when the alert was received.
    pub observed_at: DateTime<Utc>,
    /// Normalized severity word.
    pub severity: String,
    /// The connector it came through.
    pub connector: Option<String>,
    /// The product that raised it.
    pub product: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// User name.
    pub user: Option<String>,
    /// The technique.
    pub technique: String,
    /// The tactic the mapping names.
    pub tactic: Option<String>,
    /// `manual`, `rule` or `ai`.
    pub source: String,
    /// Confidence.
    pub confidence: f64,
    /// Band.
    pub band: String,
    /// Candidate ids behind the mapping (JSON text).
    pub candidate_ids: String,
    /// Override ids behind the mapping (JSON text).
    pub override_ids: String,
}

impl Store {
    /// A page of the current canonical mappings of `technique` in the org,
    /// alerts observed in `[from, to)`, most recently stored alert first
    /// (alert ids are time-ordered), below alert id `before` when given.
    /// Reads raw mappings: a drilldown lists alerts, which rollups cannot.
    pub async fn cell_mappings(
        &self,
        scope: &OrgScope,
        technique: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CellMappingRecord>, StoreError> {
        let from = from.as_ref().map_or_else(|| "0000".to_string(), ts);
        let to = to.as_ref().map_or_else(|| "9999".to_string(), ts);
        // The index on (org_id, technique, alert_id) hands the mappings over
        // in page order, so the read stops after one page instead of
        // sorting every mapping the technique has. The order holds the
        // newest alerts first, where a view ending today finds its page at
        // once; a range further back first passes over the technique's
        // newer mappings. The order names the alert id alone, which the
        // index gives as it is: with the tactic as a second key PostgreSQL
        // estimates the time range to keep a row or two, and then sorts
        // every mapping of the technique rather than stopping after a
        // page (110 ms instead of 1 ms for 19,000 mappings). An alert's
        // mappings are put in tactic order below. Without a cursor the
        // bound is left out rather than given a value that sorts last,
        // which no collation promises.
        let below = if before.is_some() {
            "AND m.alert_id < $6"
        } else {
            ""
        };
        let sql = format!(
            "SELECT a.id, a.source_uid, a.title, COALESCE(a.time, a.received_at) AS observed_at, \
             a.severity, a.connector, a.product, a.host, a.user_name, m.technique, m.tactic, \
             m.source, m.confidence, m.band, m.candidate_ids, m.override_ids \
             FROM canonical_mappings m JOIN alerts a ON a.org_id = m.org_id \
             AND a.id = m.alert_id AND a.canonical_version = m.version \
             WHERE m.org_id = $1 AND m.technique = $2 \
             AND COALESCE(a.time, a.received_at) >= $3 AND COALESCE(a.time, a.received_at) < $4 \
             {below} AND {} ORDER BY m.alert_id DESC LIMIT $5",
            self.statement_scope("$1")
        );
        let mut query = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(technique)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(limit);
        if let Some(before) = before {
            query = query.bind(before);
        }
        let rows = query
            .fetch_all(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the alerts behind technique {technique}"))?;
        let t = "canonical_mappings";
        let mut records = rows
            .iter()
            .map(|row| {
                Ok(CellMappingRecord {
                    alert_id: get(row, t, "id")?,
                    source_uid: get(row, t, "source_uid")?,
                    title: get(row, t, "title")?,
                    observed_at: parse_ts("observed_at", &get::<String>(row, t, "observed_at")?)?,
                    severity: get(row, t, "severity")?,
                    connector: get(row, t, "connector")?,
                    product: get(row, t, "product")?,
                    host: get(row, t, "host")?,
                    user: get(row, t, "user_name")?,
                    technique: get(row, t, "technique")?,
                    tactic: get(row, t, "tactic")?,
                    source: get(row, t, "source")?,
                    confidence: get(row, t, "confidence")?,
                    band: get(row, t, "band")?,
                    candidate_ids: get(row, t, "candidate_ids")?,
                    override_ids: get(row, t, "override_ids")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Rows of one alert are adjacent (the order is by alert); only
        // their order among themselves is left to do, so the order of the
        // alerts stays the database's, which the cursor follows.
        for alert in records.chunk_by_mut(|a, b| a.alert_id == b.alert_id) {
            alert.sort_by(|a, b| a.tactic.cmp(&b.tactic));
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(day: u32, technique: &str, count: i64) -> RollupRecord {
        RollupRecord {
            day: NaiveDate::from_ymd_opt(2026, 1, day).unwrap(),
            tactic: String::new(),
            technique: technique.into(),
            source: "rule".into(),
            severity: "high".into(),
            connector: "sigma".into(),
            platform: String::new(),
            band: "high".into(),
            count,
            alerts: count,
            confidence_sum: count as f64,
        }
    }

    #[test]
    fn deltas_on_one_key_are_summed_and_cancelled_ones_dropped() {
        let merged = merge(vec![
            delta(1, "T1059", 2),
            delta(1, "T1059", 3),
            delta(2, "T1003", 1),
            delta(2, "T1003", -1),
        ]);
        assert_eq!(merged, vec![delta(1, "T1059", 5)]);
    }

    #[test]
    fn a_change_of_confidence_alone_is_kept() {
        // One mapping replaced by another of the same cell with a lower
        // confidence: its count and alert count cancel, its sum does not.
        let old = RollupRecord {
            count: -1,
            alerts: -1,
            confidence_sum: -0.68,
            ..delta(1, "T1059", 0)
        };
        let new = RollupRecord {
            count: 1,
            alerts: 1,
            confidence_sum: 0.62,
            ..delta(1, "T1059", 0)
        };
        let merged = merge(vec![old.clone(), new]);
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert_eq!((merged[0].count, merged[0].alerts), (0, 0));
        assert!(
            (merged[0].confidence_sum + 0.06).abs() < 1e-12,
            "{merged:?}"
        );
        // The alert count alone moves when the alert's first tactic at the
        // technique becomes another one.
        let moved = RollupRecord {
            count: 1,
            alerts: 0,
            confidence_sum: 0.68,
            ..delta(1, "T1059", 0)
        };
        let merged = merge(vec![old, moved]);
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert_eq!((merged[0].count, merged[0].alerts), (0, -1));
    }

    #[test]
    fn placeholders_follow_the_backend() {
        assert_eq!(values_list(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(values_list(Backend::Postgres, 2, 2), "($1,$2),($3,$4)");
    }
}
