//! Multi-row inserts for bulk paths (alert ingestion, rule pack imports).
//!
//! One statement per chunk of rows instead of one per row: a round trip and
//! a statement execution per row would cap ingestion far below the
//! 20,000 alerts per second the mapping engine must sustain.
//!
//! Both databases get `VALUES` lists of parameters, moved into the driver's
//! arguments; PostgreSQL receives them in binary and parses no value. The
//! chunks come in a few fixed sizes (see [`chunk_sizes`]), so that each
//! size's statement is prepared once per connection (and on PostgreSQL
//! planned once). PostgreSQL used to get one array literal per column,
//! unnested into rows: parsing the literals and materialising the rows
//! made its bulk ingest a seventh slower.

use std::borrow::Cow;

use sqlx::any::AnyTypeInfoKind;
use sqlx::{AnyConnection, Row};
use sqlx_core::any::AnyValueKind;

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
    /// Bytes.
    Blob(Vec<u8>),
}

/// Text as both databases can store it: PostgreSQL refuses a NUL character
/// in text (and with it the whole statement), so it becomes U+FFFD on
/// both, and the two keep the same values.
fn storable(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    }
}

impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(Some(storable(s)))
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(Some(storable(s.to_string())))
    }
}

impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Self {
        Val::Text(s.map(storable))
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
    placeholders_after(backend, 0, columns, rows)
}

/// [`placeholders`] numbered after `offset` other parameters.
fn placeholders_after(backend: Backend, offset: usize, columns: usize, rows: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    let mut n = offset;
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
    let tail = if ignore_duplicates {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    let (inserted, _) = insert_chunks(conn, backend, table, columns, rows, tail, None).await?;
    Ok(inserted)
}

/// [`insert_rows`] of rows the caller keeps, without conflict handling:
/// PostgreSQL encodes each value into its message from a reference, so
/// the caller can send the rows again should this insert be refused.
pub(crate) async fn insert_rows_borrowed(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: &[&[Val]],
) -> Result<u64, StoreError> {
    let mut done = Done {
        inserted: 0,
        returned: Vec::new(),
        returning: None,
        table,
    };
    let values = rows.iter().flat_map(|row| row.iter()).map(borrowed_value);
    insert_values(
        conn,
        backend,
        table,
        columns,
        rows.len(),
        values,
        "",
        &mut done,
    )
    .await?;
    Ok(done.inserted)
}

/// Inserts `rows`, skipping each that the unique key `key` (a column list)
/// refuses, and returns the `returning` column of the rows inserted: the
/// caller learns which rows were new without reading them first.
pub(crate) async fn insert_new_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    key: &str,
    returning: &str,
) -> Result<Vec<String>, StoreError> {
    let tail = format!(" ON CONFLICT ({key}) DO NOTHING RETURNING {returning}");
    let (_, returned) =
        insert_chunks(conn, backend, table, columns, rows, &tail, Some(returning)).await?;
    Ok(returned)
}

/// Runs the statements of one bulk insert; `tail` follows the rows
/// (conflict handling, `RETURNING`). Returns the rows inserted and, with
/// `returning`, that column of each.
async fn insert_chunks(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    tail: &str,
    returning: Option<&str>,
) -> Result<(u64, Vec<String>), StoreError> {
    let mut done = Done {
        inserted: 0,
        returned: Vec::new(),
        returning,
        table,
    };
    let count = rows.len();
    let values = rows.into_iter().flatten().map(any_value);
    insert_values(
        conn, backend, table, columns, count, values, tail, &mut done,
    )
    .await?;
    Ok((done.inserted, done.returned))
}

/// What the statements of one bulk insert have answered so far.
struct Done<'a> {
    inserted: u64,
    returned: Vec<String>,
    returning: Option<&'a str>,
    table: &'a str,
}

impl Done<'_> {
    /// Runs one statement and adds up what it answers.
    async fn run<'q>(
        &mut self,
        conn: &mut AnyConnection,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<(), StoreError> {
        let table = self.table;
        match self.returning {
            None => {
                let done = query
                    .execute(&mut *conn)
                    .await
                    .context(|| format!("inserting rows into {table}"))?;
                self.inserted += done.rows_affected();
            }
            Some(column) => {
                let rows = query
                    .fetch_all(&mut *conn)
                    .await
                    .context(|| format!("inserting rows into {table}"))?;
                self.inserted += rows.len() as u64;
                for row in &rows {
                    self.returned
                        .push(row.try_get::<String, _>(column).context(|| {
                            format!("reading {column} of the rows inserted into {table}")
                        })?);
                }
            }
        }
        Ok(())
    }
}

/// The sizes of the chunks `rows` rows are sent in: as many chunks of
/// `full` rows as fit, then the rest as a sum of powers of two (1,000 rows
/// of at most 666: 666, 256, 64, 8, 4, 2). A table thus has at most a dozen
/// statements, whatever the row counts, and each stays prepared.
fn chunk_sizes(rows: usize, full: usize) -> impl Iterator<Item = usize> {
    let mut left = rows;
    std::iter::from_fn(move || {
        let size = match left {
            0 => return None,
            n if n >= full => full,
            n => 1 << n.ilog2(),
        };
        left -= size;
        Some(size)
    })
}

/// Columns that a bulk insert usually gives one value in every row: the
/// org, the release a batch was mapped under, its timestamp, the version
/// and state a new row starts with.
const USUALLY_SHARED: [&str; 13] = [
    "org_id",
    "domain",
    "release",
    "dataset_id",
    "created_at",
    "computed_at",
    "received_at",
    "version",
    "cause",
    "canonical_version",
    "stale",
    "stale_reason",
    "locked",
];

/// `VALUES` lists of parameters, in chunks of [`chunk_sizes`]: `rows` rows
/// whose `values` come one row after the other.
///
/// On PostgreSQL, the columns of [`USUALLY_SHARED`] that hold one value in
/// every row of a chunk are sent once, beside the `VALUES` list
/// (`INSERT ... SELECT $1, v.c2, ... FROM (VALUES ...) v`): the server
/// receives and sets up each `VALUES` parameter row by row, which was a
/// seventh of its work in a bulk ingest, and a third of an alert's
/// parameters repeat the batch's org, release and time. SQLite binds a
/// parameter for next to nothing and keeps the plain statement.
#[allow(clippy::too_many_arguments)]
async fn insert_values<'v>(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    columns: &[&str],
    rows: usize,
    mut values: impl Iterator<Item = AnyValueKind<'v>>,
    tail: &str,
    done: &mut Done<'_>,
) -> Result<(), StoreError> {
    let width = columns.len();
    let full = (MAX_PARAMS / width).clamp(1, MAX_ROWS);
    let candidates: Vec<usize> = match backend {
        Backend::Postgres => (0..width)
            .filter(|&c| USUALLY_SHARED.contains(&columns[c]))
            .collect(),
        Backend::Sqlite => Vec::new(),
    };
    for size in chunk_sizes(rows, full) {
        // Put into the arguments, not bound: `bind` clones an owned value,
        // and SQLite's driver copies a borrowed one, on the writer's
        // thread, which sets the pace of a bulk ingest (a quarter of its
        // time on SQLite). Owned values are moved in whole.
        let mut chunk: Vec<AnyValueKind<'v>> = Vec::with_capacity(size * width);
        chunk.extend(values.by_ref().take(size * width));
        let shared: Vec<usize> = if size > 1 {
            candidates
                .iter()
                .copied()
                .filter(|&c| {
                    let first = &chunk[c];
                    chunk[c..]
                        .iter()
                        .step_by(width)
                        .all(|v| same_value(v, first))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut args = sqlx::any::AnyArguments::default();
        let sql = if shared.is_empty() {
            args.values.0 = chunk;
            format!(
                "INSERT INTO {table} ({}) VALUES {}{tail}",
                columns.join(", "),
                placeholders(backend, width, size)
            )
        } else {
            let mut is_shared = vec![false; width];
            for &c in &shared {
                is_shared[c] = true;
            }
            // The shared values first ($1, $2, ...), in column order, taken
            // from the first row; then every row without them.
            let mut first_row = Vec::with_capacity(shared.len());
            let mut rest = Vec::with_capacity(size * (width - shared.len()));
            for (i, value) in chunk.into_iter().enumerate() {
                let c = i % width;
                if !is_shared[c] {
                    rest.push(value);
                } else if i < width {
                    first_row.push(value);
                }
            }
            let mut selected = Vec::with_capacity(width);
            let (mut s, mut v) = (0, 0);
            for &shared_here in &is_shared {
                if shared_here {
                    s += 1;
                    selected.push(format!("${s}"));
                } else {
                    v += 1;
                    selected.push(format!("v.c{v}"));
                }
            }
            let names: Vec<String> = (1..=v).map(|n| format!("c{n}")).collect();
            first_row.append(&mut rest);
            args.values.0 = first_row;
            format!(
                "INSERT INTO {table} ({}) SELECT {} FROM (VALUES {}) AS v ({}){tail}",
                columns.join(", "),
                selected.join(", "),
                placeholders_after(backend, s, v, size),
                names.join(", ")
            )
        };
        done.run(conn, sqlx::query_with(&sql, args)).await?;
    }
    Ok(())
}

/// Whether two arguments are the same value of the same type (a NULL of
/// one type is not a NULL of another: each becomes a typed parameter).
fn same_value(a: &AnyValueKind<'_>, b: &AnyValueKind<'_>) -> bool {
    use AnyValueKind as K;
    match (a, b) {
        (K::Null(x), K::Null(y)) => x == y,
        (K::Bool(x), K::Bool(y)) => x == y,
        (K::SmallInt(x), K::SmallInt(y)) => x == y,
        (K::Integer(x), K::Integer(y)) => x == y,
        (K::BigInt(x), K::BigInt(y)) => x == y,
        // Bit for bit: a shared value is sent once for every row.
        (K::Real(x), K::Real(y)) => x.to_bits() == y.to_bits(),
        (K::Double(x), K::Double(y)) => x.to_bits() == y.to_bits(),
        (K::Text(x), K::Text(y)) => x == y,
        (K::Blob(x), K::Blob(y)) => x == y,
        _ => false,
    }
}

/// A value as the `Any` driver holds an argument, owning its text or
/// bytes. `AnyValueKind` is the driver's own (hidden) representation of
/// an argument: the only way to hand it a value without a copy.
fn any_value(value: Val) -> AnyValueKind<'static> {
    match value {
        Val::Text(Some(t)) => AnyValueKind::Text(Cow::Owned(t)),
        Val::Text(None) => AnyValueKind::Null(AnyTypeInfoKind::Text),
        Val::Int(Some(n)) => AnyValueKind::BigInt(n),
        Val::Int(None) => AnyValueKind::Null(AnyTypeInfoKind::BigInt),
        Val::Real(x) => AnyValueKind::Double(x),
        Val::Blob(b) => AnyValueKind::Blob(Cow::Owned(b)),
    }
}

/// A value as the `Any` driver holds an argument, borrowing its text or
/// bytes. SQLite's driver copies a borrowed value before use (see
/// [`insert_values`]); PostgreSQL's encodes it from the reference.
fn borrowed_value(value: &Val) -> AnyValueKind<'_> {
    match value {
        Val::Text(Some(t)) => AnyValueKind::Text(Cow::Borrowed(t)),
        Val::Text(None) => AnyValueKind::Null(AnyTypeInfoKind::Text),
        Val::Int(Some(n)) => AnyValueKind::BigInt(*n),
        Val::Int(None) => AnyValueKind::Null(AnyTypeInfoKind::BigInt),
        Val::Real(x) => AnyValueKind::Double(*x),
        Val::Blob(b) => AnyValueKind::Blob(Cow::Borrowed(b)),
    }
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
    fn chunks_are_full_then_powers_of_two_and_add_up() {
        let sizes = |rows, full| chunk_sizes(rows, full).collect::<Vec<_>>();
        assert_eq!(sizes(0, 666), Vec::<usize>::new());
        assert_eq!(sizes(1, 666), [1]);
        assert_eq!(sizes(1_000, 666), [666, 256, 64, 8, 4, 2]);
        assert_eq!(sizes(1_335, 666), [666, 666, 2, 1]);
        assert_eq!(sizes(7, 1), [1; 7]);
        // Any count: the chunks add up, and only a few sizes occur.
        let mut seen = std::collections::BTreeSet::new();
        for rows in 0..3_000 {
            let chunks = sizes(rows, 666);
            assert_eq!(chunks.iter().sum::<usize>(), rows);
            seen.extend(chunks);
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
    }

    #[test]
    fn placeholders_number_every_parameter_on_postgres_only() {
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(placeholders(Backend::Postgres, 2, 2), "($1,$2),($3,$4)");
        assert_eq!(in_list(Backend::Postgres, 1, 3), "$2, $3, $4");
        assert_eq!(in_list(Backend::Sqlite, 1, 2), "?, ?");
    }
}
