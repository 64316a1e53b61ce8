//! Mapping rules (versioned), their techniques, rule pack imports and the
//! per-org rule revision that tells service nodes to rebuild their index.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::alerts::{get, get_ts};
use crate::batch::{Val, insert_rows};
use crate::{Context, OrgId, OrgScope, Store, StoreError, Tx, ts};

/// One version of a mapping rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// The org owning the rule.
    pub org_id: OrgId,
    /// Rule id (`sigma:<uuid>` for Sigma-derived rules).
    pub id: String,
    /// Version.
    pub version: i64,
    /// `draft`, `active` or `retired`.
    pub status: String,
    /// Title.
    pub title: String,
    /// The rule as JSON text, re-parsed against the active release on load.
    pub definition: String,
    /// Author.
    pub author: String,
    /// Rationale.
    pub rationale: String,
    /// Evidence pattern.
    pub evidence_pattern: Option<String>,
    /// Effective date (`YYYY-MM-DD`).
    pub effective_date: Option<String>,
    /// The rule pack import that brought it, if any.
    pub pack_id: Option<String>,
    /// Who stored this version.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// (technique, tactic) pairs it maps to.
    pub techniques: Vec<(String, Option<String>)>,
}

/// A stored rule pack import report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackImportRecord {
    /// Import id.
    pub id: String,
    /// The org.
    pub org_id: OrgId,
    /// `sigma`.
    pub kind: String,
    /// The path imported.
    pub source: String,
    /// The dataset tags were validated against.
    pub dataset_id: Option<String>,
    /// The report (JSON text).
    pub report: String,
    /// Who imported.
    pub imported_by: String,
    /// When.
    pub imported_at: DateTime<Utc>,
}

const RULE_COLUMNS: [&str; 13] = [
    "org_id",
    "id",
    "version",
    "status",
    "title",
    "definition",
    "author",
    "rationale",
    "evidence_pattern",
    "effective_date",
    "pack_id",
    "created_by",
    "created_at",
];

fn rule_from_row(row: &AnyRow) -> Result<RuleRecord, StoreError> {
    let t = "rules";
    Ok(RuleRecord {
        org_id: OrgId(get(row, t, "org_id")?),
        id: get(row, t, "id")?,
        version: get(row, t, "version")?,
        status: get(row, t, "status")?,
        title: get(row, t, "title")?,
        definition: get(row, t, "definition")?,
        author: get(row, t, "author")?,
        rationale: get(row, t, "rationale")?,
        evidence_pattern: get(row, t, "evidence_pattern")?,
        effective_date: get(row, t, "effective_date")?,
        pack_id: get(row, t, "pack_id")?,
        created_by: get(row, t, "created_by")?,
        created_at: get_ts(row, t, "created_at")?,
        techniques: Vec::new(),
    })
}

impl Tx {
    /// Stores rule versions and their techniques.
    pub async fn insert_rules(&mut self, rules: Vec<RuleRecord>) -> Result<(), StoreError> {
        let backend = self.backend;
        let mut rule_rows = Vec::with_capacity(rules.len());
        let mut technique_rows = Vec::new();
        for r in rules {
            for (technique, tactic) in &r.techniques {
                technique_rows.push(vec![
                    Val::from(r.org_id.0.clone()),
                    r.id.clone().into(),
                    r.version.into(),
                    technique.clone().into(),
                    tactic.clone().into(),
                ]);
            }
            rule_rows.push(vec![
                r.org_id.0.into(),
                r.id.into(),
                r.version.into(),
                r.status.into(),
                r.title.into(),
                r.definition.into(),
                r.author.into(),
                r.rationale.into(),
                r.evidence_pattern.into(),
                r.effective_date.into(),
                r.pack_id.into(),
                r.created_by.into(),
                ts(&r.created_at).into(),
            ]);
        }
        insert_rows(
            self.conn(),
            backend,
            "rules",
            &RULE_COLUMNS,
            rule_rows,
            false,
        )
        .await?;
        insert_rows(
            self.conn(),
            backend,
            "rule_techniques",
            &["org_id", "rule_id", "rule_version", "technique", "tactic"],
            technique_rows,
            false,
        )
        .await?;
        Ok(())
    }

    /// Sets the status of one rule version; false when there is no such version.
    pub async fn set_rule_status(
        &mut self,
        scope: &OrgScope,
        id: &str,
        version: i64,
        status: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE rules SET status = $1 WHERE org_id = $2 AND id = $3 AND version = $4",
        )
        .bind(status)
        .bind(scope.org().as_str())
        .bind(id)
        .bind(version)
        .execute(self.conn())
        .await
        .context(|| format!("setting rule {id} v{version} {status}"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Retires the active version of each named rule (before activating new ones).
    pub async fn retire_active_rules(
        &mut self,
        scope: &OrgScope,
        ids: &[String],
    ) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query(
                "UPDATE rules SET status = 'retired' WHERE org_id = $1 AND id = $2 \
                 AND status = 'active'",
            )
            .bind(scope.org().as_str())
            .bind(id.as_str())
            .execute(self.conn())
            .await
            .context(|| format!("retiring rule {id}"))?;
        }
        Ok(())
    }

    /// Moves the org's rule revision on; service nodes rebuild their index.
    pub async fn bump_rule_revision(&mut self, scope: &OrgScope) -> Result<(), StoreError> {
        let updated =
            sqlx::query("UPDATE rule_revisions SET revision = revision + 1 WHERE org_id = $1")
                .bind(scope.org().as_str())
                .execute(self.conn())
                .await
                .context(|| "moving the rule revision".to_string())?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO rule_revisions (org_id, revision) VALUES ($1, 1)")
                .bind(scope.org().as_str())
                .execute(self.conn())
                .await
                .context(|| "starting the rule revision".to_string())?;
        }
        Ok(())
    }

    /// Stores a rule pack import report.
    pub async fn insert_pack_import(
        &mut self,
        import: &PackImportRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rule_pack_imports (id, org_id, kind, source, dataset_id, report, \
             imported_by, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(import.id.as_str())
        .bind(import.org_id.as_str())
        .bind(import.kind.as_str())
        .bind(import.source.as_str())
        .bind(import.dataset_id.as_deref())
        .bind(import.report.as_str())
        .bind(import.imported_by.as_str())
        .bind(ts(&import.imported_at))
        .execute(self.conn())
        .await
        .context(|| format!("rule pack import {}", import.id))?;
        Ok(())
    }
}

impl Store {
    /// The org's rule revision (0 before any rule change).
    pub async fn rule_revision(&self, scope: &OrgScope) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT revision FROM rule_revisions WHERE org_id = $1")
            .bind(scope.org().as_str())
            .fetch_optional(&mut *self.conn_in(scope).await?)
            .await
            .context(|| "reading the rule revision".to_string())?;
        row.map(|r| get(&r, "rule_revisions", "revision"))
            .transpose()
            .map(|r| r.unwrap_or(0))
    }

    /// Rule versions of the org, filtered by status (`None`: all), ordered by
    /// id then version.
    pub async fn rules(
        &self,
        scope: &OrgScope,
        status: Option<&str>,
    ) -> Result<Vec<RuleRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM rules WHERE org_id = $1 AND ($2 IS NULL OR status = $2) \
             ORDER BY id, version",
            RULE_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(status)
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("listing rules of org {}", scope.org()))?;
        rows.iter().map(rule_from_row).collect()
    }

    /// Every version of one rule, oldest first.
    pub async fn rule_versions(
        &self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Vec<RuleRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM rules WHERE org_id = $1 AND id = $2 ORDER BY version",
            RULE_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(scope.org().as_str())
            .bind(id)
            .fetch_all(&mut *self.conn_in(scope).await?)
            .await
            .context(|| format!("reading rule {id}"))?;
        rows.iter().map(rule_from_row).collect()
    }

    /// A stored rule pack import.
    pub async fn pack_import(
        &self,
        scope: &OrgScope,
        id: &str,
    ) -> Result<Option<PackImportRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, org_id, kind, source, dataset_id, report, imported_by, imported_at \
             FROM rule_pack_imports WHERE org_id = $1 AND id = $2",
        )
        .bind(scope.org().as_str())
        .bind(id)
        .fetch_optional(&mut *self.conn_in(scope).await?)
        .await
        .context(|| format!("reading rule pack import {id}"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let t = "rule_pack_imports";
        Ok(Some(PackImportRecord {
            id: get(&row, t, "id")?,
            org_id: OrgId(get(&row, t, "org_id")?),
            kind: get(&row, t, "kind")?,
            source: get(&row, t, "source")?,
            dataset_id: get(&row, t, "dataset_id")?,
            report: get(&row, t, "report")?,
            imported_by: get(&row, t, "imported_by")?,
            imported_at: get_ts(&row, t, "imported_at")?,
        }))
    }
}
