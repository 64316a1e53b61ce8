//! Multi-row inserts for bulk paths (alert ingestion, rule pack imports).
//!
//! One statement per chunk of rows instead of one per row: a round trip and
//! a statement execution per row would cap ingestion far below the
//! 20,000 alerts per second the mapping engine must sustain.

use sqlx::AnyConnection;

use crate::{Backend, Context, StoreError};

/// One bound value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// Text, or NULL.
    Text(Option<String>),
    /// A whole number, or NULL.
    Int(Option<i64>),
    /// A floating-point number.
    Real(f64),
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(Some(s))
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(Some(s.to_string()))
    }
}

impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Self {
        Val::Text(s)
    }
}

impl From<i64> for Val {
    fn from(n: i64) -> Self {
        Val::Int(Some(n))
    }
}

impl From<Option<i64>> for Val {
    fn from(n: Option<i64>) -> Self {
        Val::Int(n)
    }
}

impl From<bool> for Val {
    fn from(b: bool) -> Self {
        Val::Int(Some(i64::from(b)))
    }
}

impl From<f64> for Val {
    fn from(x: f64) -> Self {
        Val::Real(x)
    }
}

/// Most parameters in one statement. SQLite allows 32,766 and PostgreSQL
/// 65,535; staying well below both keeps each statement's text small.
const MAX_PARAMS: usize = 16_000;

/// Most rows in one statement, whatever their width.
const MAX_ROWS: usize = 1_000;

/// Placeholders for the parameters of one statement: `rows` parenthesised
/// groups of `columns` (a `VALUES` list). SQLite gets anonymous
/// `?`: it resolves numbered `$N` parameters by a linear scan of the names
/// seen so far, which makes parsing a wide statement quadratic.
pub(crate) fn placeholders(backend: Backend, columns: usize, rows: usize) -> String {
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
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&n.to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// Inserts `rows` into `table` in as few statements as the parameter limits
/// allow; with `ignore_duplicates` a row that violates a unique constraint
/// is skipped (`ON CONFLICT DO NOTHING`, the same on both databases).
/// Returns the rows inserted.
pub(crate) async fn insert_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    ignore_duplicates: bool,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let per_statement = (MAX_PARAMS / columns.len()).clamp(1, MAX_ROWS);
    let conflict = if ignore_duplicates {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per_statement).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}{conflict}",
            columns.join(", "),
            placeholders(backend, columns.len(), chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for value in row {
                query = match value {
                    Val::Text(t) => query.bind(t),
                    Val::Int(n) => query.bind(n),
                    Val::Real(x) => query.bind(x),
                };
            }
        }
        let done = query
            .execute(&mut *conn)
            .await
            .context(|| format!("inserting rows into {table}"))?;
        inserted += done.rows_affected();
    }
    Ok(inserted)
}

/// `$1, $2, ...` (or `?, ?, ...` on SQLite) for an `IN (...)` list whose
/// parameters start after `offset` others.
pub(crate) fn in_list(backend: Backend, offset: usize, n: usize) -> String {
    (1..=n)
        .map(|i| match backend {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${}", offset + i),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_parameter_on_postgres_only() {
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(placeholders(Backend::Postgres, 2, 2), "($1,$2),($3,$4)");
        assert_eq!(in_list(Backend::Postgres, 1, 3), "$2, $3, $4");
        assert_eq!(in_list(Backend::Sqlite, 1, 2), "?, ?");
    }
}
