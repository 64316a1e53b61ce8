//! Stored references to techniques, and the migrations applied to them.
//!
//! [`Store::technique_references`] is the one place that lists every stored
//! record naming a technique: the compatibility check at activation reads
//! it. Each table that names techniques (candidates, canonical mappings,
//! rules, overrides) has one `UNION ALL` branch here.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{
    Context, DatasetId, MigrationId, OrgId, ReferenceMigration, Store, StoreError,
    TechniqueReference, Tx, parse_ts, ts,
};

fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(column)
        .map_err(|e| corrupt(&format!("reference_migrations.{column}"), e))
}

fn migration_from_row(row: &AnyRow) -> Result<ReferenceMigration, StoreError> {
    let org: Option<String> = row
        .try_get("org_id")
        .map_err(|e| corrupt("reference_migrations.org_id", e))?;
    Ok(ReferenceMigration {
        id: MigrationId(text(row, "id")?),
        org_id: org.map(OrgId),
        dataset_id: DatasetId(text(row, "dataset_id")?),
        ref_kind: text(row, "ref_kind")?,
        ref_id: text(row, "ref_id")?,
        old_technique: text(row, "old_technique")?,
        new_technique: text(row, "new_technique")?,
        applied_by: text(row, "applied_by")?,
        applied_at: parse_ts("reference_migrations.applied_at", &text(row, "applied_at")?)?,
    })
}

const MIGRATION_COLUMNS: &str = "id, org_id, dataset_id, ref_kind, ref_id, old_technique, \
     new_technique, applied_by, applied_at";

/// Kind of a reference-migration record in [`TechniqueReference::kind`].
pub const REFERENCE_MIGRATION: &str = "reference_migration";

impl Tx {
    /// Adds a migration record beside the original reference; a second
    /// migration of the same reference for the same dataset is a conflict.
    pub async fn insert_reference_migration(
        &mut self,
        migration: &ReferenceMigration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reference_migrations (id, org_id, dataset_id, ref_kind, ref_id, \
             old_technique, new_technique, applied_by, applied_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(migration.id.as_str())
        .bind(migration.org_id.as_ref().map(|o| o.as_str()))
        .bind(migration.dataset_id.as_str())
        .bind(migration.ref_kind.as_str())
        .bind(migration.ref_id.as_str())
        .bind(migration.old_technique.as_str())
        .bind(migration.new_technique.as_str())
        .bind(migration.applied_by.as_str())
        .bind(ts(&migration.applied_at))
        .execute(self.conn())
        .await
        .context(|| {
            format!(
                "migration of {} {} for dataset {}",
                migration.ref_kind, migration.ref_id, migration.dataset_id
            )
        })?;
        Ok(())
    }
}

impl Store {
    /// Every stored record that names a technique, across tables, ordered
    /// by kind and id.
    pub async fn technique_references(&self) -> Result<Vec<TechniqueReference>, StoreError> {
        // A migration record names its new technique: it is a reference in
        // its own right and may itself need migrating after a later release.
        // Candidates and canonical mappings are many per technique: they are
        // listed once per org and technique (`<org>:<technique>`), which is
        // what a migration acts on; rules per version, overrides each.
        let rows = sqlx::query(
            "SELECT 'reference_migration' AS kind, id, org_id, new_technique AS technique_id \
             FROM reference_migrations \
             UNION ALL \
             SELECT DISTINCT 'mapping_candidate' AS kind, org_id || ':' || technique AS id, \
             org_id, technique AS technique_id FROM mapping_candidates \
             UNION ALL \
             SELECT DISTINCT 'canonical_mapping' AS kind, m.org_id || ':' || m.technique AS id, \
             m.org_id, m.technique AS technique_id FROM canonical_mappings m \
             JOIN alerts a ON a.org_id = m.org_id AND a.id = m.alert_id \
             AND a.canonical_version = m.version \
             UNION ALL \
             SELECT DISTINCT 'rule' AS kind, r.rule_id || '@' || r.rule_version AS id, r.org_id, \
             r.technique AS technique_id FROM rule_techniques r \
             JOIN rules x ON x.org_id = r.org_id AND x.id = r.rule_id \
             AND x.version = r.rule_version AND x.status <> 'retired' \
             UNION ALL \
             SELECT 'override' AS kind, id, org_id, technique AS technique_id FROM overrides \
             ORDER BY kind, id",
        )
        .fetch_all(&mut *self.conn_all().await?)
        .await
        .context(|| "listing technique references".to_string())?;
        rows.iter()
            .map(|row| {
                let get = |c: &str| {
                    row.try_get::<String, _>(c)
                        .map_err(|e| corrupt(&format!("technique reference {c}"), e))
                };
                let org: Option<String> = row
                    .try_get("org_id")
                    .map_err(|e| corrupt("technique reference org_id", e))?;
                Ok(TechniqueReference {
                    kind: get("kind")?,
                    id: get("id")?,
                    org_id: org.map(OrgId),
                    technique_id: get("technique_id")?,
                })
            })
            .collect()
    }

    /// The migrations applied for a dataset's activation.
    pub async fn reference_migrations(
        &self,
        dataset: &DatasetId,
    ) -> Result<Vec<ReferenceMigration>, StoreError> {
        let sql = format!(
            "SELECT {MIGRATION_COLUMNS} FROM reference_migrations WHERE dataset_id = $1 ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(dataset.as_str())
            .fetch_all(&mut *self.conn_all().await?)
            .await
            .context(|| format!("listing migrations of dataset {dataset}"))?;
        rows.iter().map(migration_from_row).collect()
    }
}
