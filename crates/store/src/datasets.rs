//! Datasets: lifecycle rows, their bundles and their taxonomy tables.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};
use taxonomy::lifecycle::DatasetState;
use taxonomy::{Domain, IdentitySource, Release, ReleaseCounts, Status};

use crate::{
    Backend, Context, Dataset, DatasetFilter, DatasetId, NewDataset, StateChange, Store,
    StoreError, Tx, parse_ts, ts,
};

const DATASET_COLUMNS: &str = "id, domain, release, state, sha256, source, identity_source, \
     spec_version, counts, validation_errors, validation_warnings, loaded_by, loaded_at, \
     validated_by, validated_at, approved_by, approved_at, activated_by, activated_at, \
     rejected_by, rejected_at, rejection_reason, retired_at, rolled_back_at, previous_active";

/// Bind parameters per multi-row statement. SQLite resolves `$N`
/// parameters by a linear scan of their names, so the cost of one statement
/// grows with the square of its parameters: a thousand keeps each statement
/// cheap while still saving a round trip per row.
const MAX_PARAMS: usize = 1_000;

fn corrupt(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn get<T>(row: &AnyRow, column: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column)
        .map_err(|e| corrupt(&format!("datasets.{column}"), e))
}

fn opt_ts(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|s| parse_ts(column, &s))
        .transpose()
}

fn dataset_from_row(row: &AnyRow) -> Result<Dataset, StoreError> {
    let domain: String = get(row, "domain")?;
    let state: String = get(row, "state")?;
    let identity: String = get(row, "identity_source")?;
    let counts: String = get(row, "counts")?;
    Ok(Dataset {
        id: DatasetId(get(row, "id")?),
        domain: domain
            .parse::<Domain>()
            .map_err(|e| corrupt("datasets.domain", e))?,
        release: get(row, "release")?,
        state: state
            .parse::<DatasetState>()
            .map_err(|e| corrupt("datasets.state", e))?,
        sha256: get(row, "sha256")?,
        source: get(row, "source")?,
        identity_source: serde_json::from_value::<IdentitySource>(serde_json::Value::String(
            identity,
        ))
        .map_err(|e| corrupt("datasets.identity_source", e))?,
        spec_version: get(row, "spec_version")?,
        counts: serde_json::from_str::<ReleaseCounts>(&counts)
            .map_err(|e| corrupt("datasets.counts", e))?,
        validation_errors: get(row, "validation_errors")?,
        validation_warnings: get(row, "validation_warnings")?,
        loaded_by: get(row, "loaded_by")?,
        loaded_at: parse_ts("loaded_at", &get::<String>(row, "loaded_at")?)?,
        validated_by: get(row, "validated_by")?,
        validated_at: opt_ts(row, "validated_at")?,
        approved_by: get(row, "approved_by")?,
        approved_at: opt_ts(row, "approved_at")?,
        activated_by: get(row, "activated_by")?,
        activated_at: opt_ts(row, "activated_at")?,
        rejected_by: get(row, "rejected_by")?,
        rejected_at: opt_ts(row, "rejected_at")?,
        rejection_reason: get(row, "rejection_reason")?,
        retired_at: opt_ts(row, "retired_at")?,
        rolled_back_at: opt_ts(row, "rolled_back_at")?,
        previous_active: get::<Option<String>>(row, "previous_active")?.map(DatasetId),
    })
}

fn identity_str(source: IdentitySource) -> &'static str {
    match source {
        IdentitySource::Collection => "collection",
        IdentitySource::FileName => "file_name",
        IdentitySource::Caller => "caller",
    }
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serialising plain vectors and maps of strings cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

impl Tx {
    /// Whether `id` is still the active dataset of its domain, held so until
    /// this transaction ends: on PostgreSQL the row is locked for share, and
    /// an activation or rollback, which must update it, waits for the
    /// commit; SQLite runs one write transaction at a time. A mapping
    /// written under a release checked so cannot land after the re-map that
    /// follows that release's retirement has passed it.
    pub async fn hold_active(&mut self, id: &DatasetId) -> Result<bool, StoreError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let sql = format!("SELECT id FROM datasets WHERE id = $1 AND state = $2{lock}");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(DatasetState::Active.as_str())
            .fetch_optional(self.conn())
            .await
            .context(|| format!("holding dataset {id} active"))?;
        Ok(row.is_some())
    }

    /// Stores a new dataset in state `loaded`: its row, its bundle bytes and
    /// its tactics, techniques, procedures and matrices.
    pub async fn insert_dataset(&mut self, new: &NewDataset<'_>) -> Result<Dataset, StoreError> {
        let release = new.release;
        let id = new.id.as_str();
        let counts = release.counts();
        sqlx::query(
            "INSERT INTO datasets (id, domain, release, state, sha256, source, identity_source, \
             spec_version, counts, change_summary, loaded_by, loaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(release.domain.as_str())
        .bind(release.version.as_str())
        .bind(DatasetState::Loaded.as_str())
        .bind(release.sha256.as_str())
        .bind(new.source.as_str())
        .bind(identity_str(release.identity_source))
        .bind(release.spec_version.as_str())
        .bind(json_text(&counts))
        .bind(new.change_summary.as_ref().map(json_text))
        .bind(new.loaded_by.as_str())
        .bind(ts(&new.loaded_at))
        .execute(self.conn())
        .await
        .context(|| format!("a live dataset with sha256 {}", release.sha256))?;

        sqlx::query("INSERT INTO dataset_bundles (dataset_id, bytes) VALUES ($1, $2)")
            .bind(id)
            .bind(new.bundle.to_vec())
            .execute(self.conn())
            .await
            .context(|| format!("storing the bundle of dataset {id}"))?;

        insert_taxonomy(self.conn(), id, release).await?;
        fetch_dataset(self.conn(), &new.id)
            .await?
            .ok_or_else(|| corrupt("datasets", format!("dataset {id} vanished after insert")))
    }

    /// One dataset, read inside the transaction.
    pub async fn dataset(&mut self, id: &DatasetId) -> Result<Option<Dataset>, StoreError> {
        fetch_dataset(self.conn(), id).await
    }

    /// The active dataset of a domain, read inside the transaction.
    pub async fn active_dataset(&mut self, domain: Domain) -> Result<Option<Dataset>, StoreError> {
        fetch_active(self.conn(), domain).await
    }

    /// Applies a lifecycle change if the dataset is still in `change.from`;
    /// returns false when it is not (a concurrent change won).
    pub async fn change_state(
        &mut self,
        id: &DatasetId,
        change: &StateChange,
    ) -> Result<bool, StoreError> {
        let at = ts(&change.at);
        let actor = change.actor.as_str();
        // Each state stamps its own columns; the rest stay as they were.
        let (sql, binds): (&str, Vec<Option<String>>) = match change.to {
            DatasetState::Validated => (
                "validated_by = $3, validated_at = $4",
                vec![Some(actor.into()), Some(at)],
            ),
            DatasetState::Approved => (
                "approved_by = $3, approved_at = $4",
                vec![Some(actor.into()), Some(at)],
            ),
            DatasetState::Active => (
                "activated_by = $3, activated_at = $4, previous_active = $5",
                vec![
                    Some(actor.into()),
                    Some(at),
                    change.previous_active.as_ref().map(|d| d.0.clone()),
                ],
            ),
            DatasetState::Rejected => (
                "rejected_by = $3, rejected_at = $4, rejection_reason = $5",
                vec![Some(actor.into()), Some(at), change.reason.clone()],
            ),
            DatasetState::Retired => ("retired_at = $3", vec![Some(at)]),
            DatasetState::RolledBack => ("rolled_back_at = $3", vec![Some(at)]),
            DatasetState::Loaded => {
                return Err(corrupt("state change", "no change leads back to loaded"));
            }
        };
        let statement = format!(
            "UPDATE datasets SET state = $1, {sql} WHERE id = $2 AND state = ${}",
            binds.len() + 3
        );
        let mut query = sqlx::query(&statement)
            .bind(change.to.as_str())
            .bind(id.as_str());
        for value in binds {
            query = query.bind(value);
        }
        let done = query
            .bind(change.from.as_str())
            .execute(self.conn())
            .await
            .context(|| format!("active dataset of the domain of {id}"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores the Gate A report (JSON) and its counts.
    pub async fn set_validation(
        &mut self,
        id: &DatasetId,
        report: &serde_json::Value,
        errors: i64,
        warnings: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE datasets SET validation_report = $1, validation_errors = $2, \
             validation_warnings = $3 WHERE id = $4",
        )
        .bind(json_text(report))
        .bind(errors)
        .bind(warnings)
        .bind(id.as_str())
        .execute(self.conn())
        .await
        .context(|| format!("storing the validation report of {id}"))?;
        Ok(())
    }

    /// Stores the compatibility report of an activation (JSON).
    pub async fn set_compatibility(
        &mut self,
        id: &DatasetId,
        report: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE datasets SET compatibility_report = $1 WHERE id = $2")
            .bind(json_text(report))
            .bind(id.as_str())
            .execute(self.conn())
            .await
            .context(|| format!("storing the compatibility report of {id}"))?;
        Ok(())
    }
}

impl Store {
    /// One dataset.
    pub async fn dataset(&self, id: &DatasetId) -> Result<Option<Dataset>, StoreError> {
        fetch_dataset(&mut *self.conn_shared().await?, id).await
    }

    /// The active dataset of a domain.
    pub async fn active_dataset(&self, domain: Domain) -> Result<Option<Dataset>, StoreError> {
        fetch_active(&mut *self.conn_shared().await?, domain).await
    }

    /// A dataset with these bundle bytes, if one was loaded already.
    pub async fn dataset_by_sha256(&self, sha256: &str) -> Result<Option<Dataset>, StoreError> {
        let sql =
            format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE sha256 = $1 ORDER BY id LIMIT 1");
        let row = sqlx::query(&sql)
            .bind(sha256)
            .fetch_optional(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("looking up sha256 {sha256}"))?;
        row.as_ref().map(dataset_from_row).transpose()
    }

    /// Datasets, newest first.
    pub async fn list_datasets(&self, filter: &DatasetFilter) -> Result<Vec<Dataset>, StoreError> {
        let sql = format!(
            "SELECT {DATASET_COLUMNS} FROM datasets \
             WHERE ($1 IS NULL OR domain = $1) AND ($2 IS NULL OR state = $2) \
             ORDER BY loaded_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.domain.map(|d| d.as_str()))
            .bind(filter.state.map(|s| s.as_str()))
            .fetch_all(&mut *self.conn_shared().await?)
            .await
            .context(|| "listing datasets".to_string())?;
        rows.iter().map(dataset_from_row).collect()
    }

    /// The bundle bytes exactly as loaded.
    pub async fn bundle(&self, id: &DatasetId) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT bytes FROM dataset_bundles WHERE dataset_id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the bundle of {id}"))?;
        row.map(|r| get::<Vec<u8>>(&r, "bytes")).transpose()
    }

    /// The stored JSON documents of a dataset: `validation_report`,
    /// `change_summary` or `compatibility_report`.
    pub async fn dataset_document(
        &self,
        id: &DatasetId,
        document: DatasetDocument,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let column = document.column();
        let sql = format!("SELECT {column} FROM datasets WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut *self.conn_shared().await?)
            .await
            .context(|| format!("reading the {column} of {id}"))?;
        let Some(text) = row.map(|r| get::<Option<String>>(&r, column)).transpose()? else {
            return Ok(None);
        };
        text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(column, e)))
            .transpose()
    }

    /// Number of technique rows stored for a dataset, by sub-technique flag.
    pub async fn count_techniques(
        &self,
        id: &DatasetId,
        subtechniques: bool,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM techniques WHERE dataset_id = $1 AND is_subtechnique = $2",
        )
        .bind(id.as_str())
        .bind(flag(subtechniques))
        .fetch_one(&mut *self.conn_shared().await?)
        .await
        .context(|| format!("counting techniques of {id}"))?;
        get(&row, "n")
    }
}

/// A JSON document stored beside a dataset row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetDocument {
    /// The Gate A report.
    ValidationReport,
    /// Changes against the dataset that was active at load time.
    ChangeSummary,
    /// The compatibility check of the activation.
    CompatibilityReport,
}

impl DatasetDocument {
    fn column(self) -> &'static str {
        match self {
            DatasetDocument::ValidationReport => "validation_report",
            DatasetDocument::ChangeSummary => "change_summary",
            DatasetDocument::CompatibilityReport => "compatibility_report",
        }
    }
}

async fn fetch_dataset(
    conn: &mut AnyConnection,
    id: &DatasetId,
) -> Result<Option<Dataset>, StoreError> {
    let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .context(|| format!("reading dataset {id}"))?;
    row.as_ref().map(dataset_from_row).transpose()
}

async fn fetch_active(
    conn: &mut AnyConnection,
    domain: Domain,
) -> Result<Option<Dataset>, StoreError> {
    let sql = format!("SELECT {DATASET_COLUMNS} FROM datasets WHERE domain = $1 AND state = $2");
    let row = sqlx::query(&sql)
        .bind(domain.as_str())
        .bind(DatasetState::Active.as_str())
        .fetch_optional(conn)
        .await
        .context(|| format!("reading the active dataset of {domain}"))?;
    row.as_ref().map(dataset_from_row).transpose()
}

/// Builds `INSERT INTO table (cols) VALUES ($1, ...), (...)` for `rows` rows.
fn multi_insert(table: &str, columns: &[&str], rows: usize) -> String {
    let width = columns.len();
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// One column value of a taxonomy row.
enum Cell<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Owned(String),
    Int(i64),
    OptInt(Option<i64>),
}

async fn insert_table(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Cell<'_>>>,
) -> Result<(), StoreError> {
    let per_statement = (MAX_PARAMS / columns.len()).max(1);
    for chunk in rows.chunks(per_statement) {
        let sql = multi_insert(table, columns, chunk.len());
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for cell in row {
                query = match cell {
                    Cell::Text(s) => query.bind(*s),
                    Cell::OptText(s) => query.bind(*s),
                    Cell::Owned(s) => query.bind(s.as_str()),
                    Cell::Int(i) => query.bind(*i),
                    Cell::OptInt(i) => query.bind(*i),
                };
            }
        }
        query
            .execute(&mut *conn)
            .await
            .context(|| format!("inserting {} rows into {table}", chunk.len()))?;
    }
    Ok(())
}

fn status_cells(status: &Status) -> [Cell<'_>; 2] {
    [
        Cell::Int(flag(status.deprecated)),
        Cell::Int(flag(status.revoked)),
    ]
}

async fn insert_taxonomy(
    conn: &mut AnyConnection,
    dataset: &str,
    release: &Release,
) -> Result<(), StoreError> {
    let tactics = release
        .tactics
        .iter()
        .map(|t| {
            let [deprecated, revoked] = status_cells(&t.status);
            vec![
                Cell::Text(dataset),
                Cell::Text(&t.stix_id),
                Cell::Text(&t.id),
                Cell::Text(&t.name),
                Cell::Text(&t.shortname),
                Cell::OptInt(t.matrix_order.and_then(|o| i64::try_from(o).ok())),
                Cell::Text(&t.description),
                Cell::Text(&t.version),
                Cell::Text(&t.modified),
                deprecated,
                revoked,
                Cell::OptText(t.status.revoked_by.as_deref()),
            ]
        })
        .collect();
    insert_table(
        conn,
        "tactics",
        &[
            "dataset_id",
            "stix_id",
            "attack_id",
            "name",
            "shortname",
            "matrix_order",
            "description",
            "version",
            "modified",
            "deprecated",
            "revoked",
            "revoked_by",
        ],
        tactics,
    )
    .await?;

    let techniques = release
        .techniques
        .iter()
        .map(|t| {
            let [deprecated, revoked] = status_cells(&t.status);
            vec![
                Cell::Text(dataset),
                Cell::Text(&t.stix_id),
                Cell::Text(&t.id),
                Cell::Text(&t.name),
                Cell::Int(flag(t.is_subtechnique)),
                Cell::OptText(t.parent.as_deref()),
                Cell::Owned(json_text(&t.tactics)),
                Cell::Owned(json_text(&t.kill_chain_phases)),
                Cell::Owned(json_text(&t.platforms)),
                Cell::Text(&t.description),
                Cell::Text(&t.detection),
                Cell::Text(&t.version),
                Cell::Text(&t.modified),
                deprecated,
                revoked,
                Cell::OptText(t.status.revoked_by.as_deref()),
            ]
        })
        .collect();
    insert_table(
        conn,
        "techniques",
        &[
            "dataset_id",
            "stix_id",
            "attack_id",
            "name",
            "is_subtechnique",
            "parent_id",
            "tactics",
            "kill_chain_phases",
            "platforms",
            "description",
            "detection",
            "version",
            "modified",
            "deprecated",
            "revoked",
            "revoked_by",
        ],
        techniques,
    )
    .await?;

    let procedures = release
        .procedures
        .iter()
        .map(|p| {
            let [deprecated, revoked] = status_cells(&p.status);
            vec![
                Cell::Text(dataset),
                Cell::Text(&p.stix_id),
                Cell::Text(&p.source_ref),
                Cell::OptText(p.source_name.as_deref()),
                Cell::Text(&p.technique_stix_id),
                Cell::OptText(p.technique_id.as_deref()),
                Cell::Text(&p.description),
                deprecated,
                revoked,
            ]
        })
        .collect();
    insert_table(
        conn,
        "procedures",
        &[
            "dataset_id",
            "stix_id",
            "source_ref",
            "source_name",
            "technique_stix_id",
            "technique_id",
            "description",
            "deprecated",
            "revoked",
        ],
        procedures,
    )
    .await?;

    let matrices = release
        .matrices
        .iter()
        .map(|m| {
            let [deprecated, revoked] = status_cells(&m.status);
            vec![
                Cell::Text(dataset),
                Cell::Text(&m.stix_id),
                Cell::Text(&m.id),
                Cell::Text(&m.name),
                Cell::Owned(json_text(&m.tactic_refs)),
                Cell::Text(&m.version),
                Cell::Text(&m.modified),
                deprecated,
                revoked,
            ]
        })
        .collect();
    insert_table(
        conn,
        "matrices",
        &[
            "dataset_id",
            "stix_id",
            "attack_id",
            "name",
            "tactic_refs",
            "version",
            "modified",
            "deprecated",
            "revoked",
        ],
        matrices,
    )
    .await
}
