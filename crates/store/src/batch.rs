//! Multi-row inserts for bulk paths (alert ingestion, rule pack imports).
//!
//! One statement per chunk of rows instead of one per row: a round trip and
//! a statement execution per row would cap ingestion far below the
//! 20,000 alerts per second the mapping engine must sustain.
//!
//! The two databases get different statements. SQLite binds every value
//! (`VALUES (?, ?), (?, ?)`): binding is a function call there, and its
//! statements are cheap to compile. PostgreSQL gets one array parameter per
//! column (`SELECT * FROM unnest($1::text[], $2::bigint[])`): a `VALUES` list
//! of thousands of parameters costs it more to parse, plan and set up than
//! to insert the rows, while the unnest statement has the same text for
//! every chunk, so it is prepared once per connection.

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
    let tail = if ignore_duplicates {
        " ON CONFLICT DO NOTHING"
    } else {
        ""
    };
    let (inserted, _) = insert_chunks(conn, backend, table, columns, rows, tail, None).await?;
    Ok(inserted)
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
    if rows.is_empty() {
        return Ok((0, Vec::new()));
    }
    match backend {
        Backend::Sqlite => insert_values(conn, table, columns, rows, tail, &mut done).await?,
        Backend::Postgres => insert_unnest(conn, table, columns, rows, tail, &mut done).await?,
    }
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

/// Most rows in one PostgreSQL array statement: a chunk's arrays are held
/// as text twice (built here, copied by the driver), so a few megabytes of
/// alert JSON at most.
const MAX_ARRAY_ROWS: usize = 2_000;

/// PostgreSQL: one array literal per column, unnested into rows. The
/// element type of each column comes from the first row's values (every
/// row of a table is built by one function, so they agree).
async fn insert_unnest(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    tail: &str,
    done: &mut Done<'_>,
) -> Result<(), StoreError> {
    let types: Vec<&str> = rows[0]
        .iter()
        .map(|v| match v {
            Val::Text(_) => "text",
            Val::Int(_) => "bigint",
            Val::Real(_) => "double precision",
            Val::Blob(_) => "bytea",
        })
        .collect();
    let arrays = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({arrays}){tail}",
        columns.join(", ")
    );
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(MAX_ARRAY_ROWS).collect();
        // Sized up front: growing a megabyte literal by doubling copies it
        // again and again.
        let mut sizes = vec![2; columns.len()];
        for row in &chunk {
            for (size, value) in sizes.iter_mut().zip(row) {
                *size += match value {
                    // Room for escapes: JSON text quotes every key.
                    Val::Text(Some(t)) => t.len() + t.len() / 4 + 3,
                    Val::Blob(b) => 2 * b.len() + 5,
                    _ => 24,
                };
            }
        }
        let mut literals: Vec<String> = sizes
            .into_iter()
            .map(|size| {
                let mut literal = String::with_capacity(size);
                literal.push('{');
                literal
            })
            .collect();
        for (r, row) in chunk.iter().enumerate() {
            // Rows and column lists are built side by side in this crate.
            debug_assert_eq!(row.len(), columns.len(), "a row for {table}");
            for (literal, value) in literals.iter_mut().zip(row) {
                if r > 0 {
                    literal.push(',');
                }
                push_element(literal, value);
            }
        }
        for literal in &mut literals {
            literal.push('}');
        }
        // By reference: binding an owned string copies it, megabytes here.
        let mut query = sqlx::query(&sql);
        for literal in &literals {
            query = query.bind(literal.as_str());
        }
        done.run(conn, query).await?;
        free_beside(chunk);
    }
    Ok(())
}

/// Frees a chunk of rows on the blocking pool. The rows were made on
/// another thread, and freeing memory another thread allocated is slow
/// with the allocator the binary uses: a fifth of the writer's own time,
/// while the writer sets the pace of a bulk ingest.
fn free_beside(rows: Vec<Vec<Val>>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(rows))),
        Err(_) => drop(rows),
    }
}

/// Appends one value to a PostgreSQL array literal: NULL bare, numbers as
/// written, text quoted with `"` and `\` escaped (the array input syntax).
fn push_element(literal: &mut String, value: &Val) {
    use std::fmt::Write;
    match value {
        Val::Text(None) | Val::Int(None) => literal.push_str("NULL"),
        Val::Int(Some(n)) => {
            let _ = write!(literal, "{n}");
        }
        Val::Real(x) if x.is_nan() => literal.push_str("NaN"),
        Val::Real(x) if x.is_infinite() => {
            literal.push_str(if *x > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Val::Real(x) => {
            let _ = write!(literal, "{x:?}");
        }
        // Quoted, with bytea's hex input `\x..` whose backslash the array
        // syntax wants doubled.
        Val::Blob(b) => {
            literal.push_str("\"\\\\x");
            literal.push_str(&hex::encode(b));
            literal.push('"');
        }
        Val::Text(Some(t)) => {
            literal.push('"');
            // Whole runs between the characters to escape: alert JSON is
            // mostly such runs, and pushing it a char at a time was the
            // writer's largest cost.
            let mut rest = t.as_str();
            while let Some(at) = rest.find(['"', '\\']) {
                literal.push_str(&rest[..at]);
                literal.push('\\');
                literal.push_str(&rest[at..=at]);
                rest = &rest[at + 1..];
            }
            literal.push_str(rest);
            literal.push('"');
        }
    }
}

/// SQLite: `VALUES` lists of bound parameters.
async fn insert_values(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Val>>,
    tail: &str,
    done: &mut Done<'_>,
) -> Result<(), StoreError> {
    let backend = Backend::Sqlite;
    let per_statement = (MAX_PARAMS / columns.len()).clamp(1, MAX_ROWS);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per_statement).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {}{tail}",
            columns.join(", "),
            placeholders(backend, columns.len(), chunk.len())
        );
        // Moved into the arguments, not bound: the driver sends them to
        // SQLite's own thread, and a borrowed value (or an owned one bound
        // through `bind`, which clones it) is copied first, on the writer's
        // thread, which sets the pace of a bulk ingest. SQLite copies each
        // value once more as it binds it, on its thread.
        let mut args = sqlx::any::AnyArguments::default();
        args.values.0.reserve(chunk.len() * columns.len());
        for value in chunk.into_iter().flatten() {
            args.values.0.push(any_value(value));
        }
        let query = sqlx::query_with(&sql, args);
        done.run(conn, query).await?;
    }
    Ok(())
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
    fn array_elements_are_quoted_escaped_or_bare() {
        let mut literal = String::new();
        for value in [
            Val::from(r#"a "b" c\d,{e}"#),
            Val::Text(None),
            Val::from(-3_i64),
            Val::from(0.7),
            Val::Real(f64::NEG_INFINITY),
            Val::from(""),
            Val::Blob(vec![1, 0xab]),
        ] {
            literal.push('|');
            push_element(&mut literal, &value);
        }
        assert_eq!(
            literal,
            r#"|"a \"b\" c\\d,{e}"|NULL|-3|0.7|-Infinity|""|"\\x01ab""#
        );
    }

    #[test]
    fn placeholders_number_every_parameter_on_postgres_only() {
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?,?),(?,?)");
        assert_eq!(placeholders(Backend::Postgres, 2, 2), "($1,$2),($3,$4)");
        assert_eq!(in_list(Backend::Postgres, 1, 3), "$2, $3, $4");
        assert_eq!(in_list(Backend::Sqlite, 1, 2), "?, ?");
    }
}
