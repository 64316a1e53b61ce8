//! SQLite and PostgreSQL storage: migrations, tenant-scoped repositories, audit chain, rollups.
//!
//! One code path serves both databases through sqlx's `Any` driver; the
//! schema lives in identically named migrations per backend
//! (`migrations/sqlite`, `migrations/postgres`), chosen by the URL scheme.
//! Reads go through [`Store`]; changes that must land together (a state
//! change and its audit event) go through one [`Tx`].
//!
//! Every tenant read takes an [`OrgScope`] and filters by it. On PostgreSQL
//! row-level security keeps orgs apart a second time: each connection and
//! transaction names the org it works for ([`Store::begin_in`]), or all of
//! them for deliberate cross-org work ([`Store::begin_all`]); a few reads on
//! every request's path name it within their one statement instead, which
//! saves a round trip (`Store::statement_scope`). A query that forgets its
//! `org_id` filter still sees no other org's rows
//! (`migrations/postgres/0007_row_security.sql`, docs/access-control.md).

mod alerts;
mod audit;
mod batch;
mod datasets;
mod incidents;
mod kpis;
mod notifications;
mod orgs;
mod packed;
mod records;
mod references;
mod review;
pub mod rollups;
mod rules;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row, Transaction};

pub use alerts::{
    AlertId, AlertListFilter, AlertRecord, AlertRow, CandidateRecord, CanonicalEntryRecord,
    CanonicalRecord, CanonicalSetRecord, MappingRows, MappingUpdate,
};
pub use audit::{GENESIS_HASH, canonical_hash};
pub use datasets::DatasetDocument;
pub use incidents::{
    AdjustmentRecord, AttachedAlert, EvidenceRecord, IncidentHoldingRecord, IncidentId,
    IncidentRecord, IncidentSummaryRecord, ProfileEntryRef, ProfileRowRef, ProfileRows,
};
pub use kpis::{KpiAiCandidateRow, KpiAlertRow, KpiMappingRow, KpiReviewRow, KpiWindow};
pub use notifications::{ActorBurst, NotificationAudience, NotificationEntry};
pub use records::*;
pub use references::REFERENCE_MIGRATION;
pub use review::{NotificationRecord, OverrideRecord, ReviewReasons, ReviewRecord};
pub use rollups::{CellMappingRecord, ExclusionRecord, RollupRecord};
pub use rules::{PackImportRecord, RuleRecord};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend or is malformed.
    #[error("unsupported database URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database named by a valid URL cannot be reached (refused, no
    /// answer in time, no such database or file).
    #[error("cannot connect to the database `{url}`: {reason}")]
    Unreachable {
        /// The URL with any password masked.
        url: String,
        /// The driver's cause (`Connection refused`), or the timeout.
        reason: String,
    },
    /// The database stopped answering after the store connected: no pooled
    /// connection could be had in time, the pool is closed, or a connection
    /// broke. Unlike [`StoreError::Database`] no statement is at fault, and
    /// the same work may succeed once the database is back.
    #[error("the database is unavailable while {context}: {reason}")]
    Unavailable {
        /// What the store was doing.
        context: String,
        /// The driver's cause (`pool timed out while waiting for an open
        /// connection`).
        reason: String,
    },
    /// A unique constraint refused the change (a duplicate name, a second
    /// active dataset in a domain).
    #[error("{what} already exists")]
    Conflict {
        /// What would be duplicated.
        what: String,
    },
    /// PostgreSQL broke a deadlock (or a serialization failure) by
    /// rolling this transaction back: nothing of it is stored, and the
    /// same work tried again normally succeeds.
    #[error("{context} met a concurrent transaction and was rolled back; try again")]
    Contention {
        /// What the store was doing.
        context: String,
    },
    /// A stored value does not decode (a column edited by hand, say).
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why it does not decode.
        reason: String,
    },
    /// A query failed.
    #[error("database error while {context}: {source}")]
    Database {
        /// What the store was doing.
        context: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Adds what the store was doing to a driver error, and turns unique
/// violations into [`StoreError::Conflict`], deadlocks into
/// [`StoreError::Contention`] and a database that cannot be reached into
/// [`StoreError::Unavailable`].
pub(crate) trait Context<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| {
            let unique = source
                .as_database_error()
                .is_some_and(|e| e.is_unique_violation());
            // 40P01 deadlock_detected, 40001 serialization_failure.
            let contention = source
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "40P01" || code == "40001");
            if unique {
                StoreError::Conflict { what: context() }
            } else if is_unavailable(&source) {
                StoreError::Unavailable {
                    context: context(),
                    reason: source.to_string(),
                }
            } else if contention {
                StoreError::Contention { context: context() }
            } else {
                StoreError::Database {
                    context: context(),
                    source,
                }
            }
        })
    }
}

/// Whether a driver error says the database cannot be reached, rather than
/// that a statement failed: the pool gave no connection in time or is
/// closed, the socket broke, or PostgreSQL refused or dropped the session
/// (SQLSTATE class 08 connection exception; 57P01 to 57P03, an
/// administrator or a crash shutting it down or a server still starting;
/// 53300, too many connections). SQLite's numeric codes never take those
/// forms.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The database behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, one file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// Reads the backend from a database URL, refusing anything unknown or
    /// mistyped instead of guessing (`sqlite:nexus.db` without `//`, a bare
    /// path, `postgress://`).
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "expected sqlite://PATH or postgres://USER@HOST/DB (e.g. sqlite://nexus-attack.db)",
            ));
        };
        match scheme {
            "sqlite" if rest.is_empty() || rest.starts_with('?') => {
                Err(invalid("the SQLite URL names no file"))
            }
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            other => Err(invalid(&format!(
                "unknown scheme `{other}` (supported: sqlite, postgres)"
            ))),
        }
    }
}

/// How long [`Store::connect`] waits for the first connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses a SQLite URL whose file would go into a missing directory: the
/// driver only says "unable to open database file".
fn check_sqlite_directory(url: &str) -> Result<(), StoreError> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('?')
        .next()
        .unwrap_or_default();
    if path == ":memory:" || path.is_empty() {
        return Ok(());
    }
    let parent = std::path::Path::new(path).parent();
    match parent {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(StoreError::InvalidUrl {
            url: redact(url),
            reason: format!("the directory `{}` does not exist", dir.display()),
        }),
        _ => Ok(()),
    }
}

/// Masks the password of a URL for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// A handle on the database: cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite: the one connection write transactions take turns on.
    writer: Option<AnyPool>,
    backend: Backend,
    /// How to open a connection outside the pool (for PostgreSQL
    /// migrations).
    options: AnyConnectOptions,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A pool of at most `max_connections`, set up for `backend` as each
/// connection opens and as it is given back.
fn open_pool(backend: Backend, options: &AnyConnectOptions, max_connections: u32) -> AnyPool {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                match backend {
                    Backend::Sqlite => {
                        // A new database gets 16 KiB pages (the first
                        // statement; an existing one keeps its size): an
                        // alert row of 2 to 3 KiB left a 4 KiB page half
                        // empty, and a bulk ingest wrote 5.4 GB per
                        // million alerts with 4 KiB pages, 4.5 GB with
                        // 16 KiB, and stored 1.2x faster.
                        // WAL lets readers proceed during a write; NORMAL
                        // is durable enough with WAL; the busy timeout
                        // makes a second writer wait instead of failing
                        // at once; a 64 MiB page cache keeps bulk alert
                        // ingestion from re-reading index pages (the
                        // default is 2 MiB). The WAL is copied back into
                        // the database every 16,384 pages (64 MiB with
                        // 4 KiB pages, 256 MiB with 16 KiB) instead of
                        // every 1,000: a bulk ingest's batch of 1,000
                        // alerts fills about 1,000 small pages, so each
                        // commit checkpointed, writing every page twice,
                        // and an index page changed by ten batches was
                        // copied back ten times.
                        conn.execute(
                            "PRAGMA page_size = 16384; \
                             PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
                             PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;",
                        )
                        .await?;
                    }
                    Backend::Postgres => {
                        // A superuser (how CI and many installs connect)
                        // ignores row-level security: act as the
                        // policy-bound `nexus_app` whenever this login
                        // may. Without the role (not migrated yet, or a
                        // login that may not create roles) the login's
                        // own rights apply; FORCE still binds an owner
                        // that is no superuser.
                        conn.execute(
                            "SELECT set_config('role', rolname, false) FROM pg_roles \
                             WHERE rolname = 'nexus_app' \
                             AND pg_has_role(session_user, oid, 'MEMBER')",
                        )
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .after_release(move |conn, _meta| {
            Box::pin(async move {
                // The org a connection was handed out for must not
                // follow it to its next user: a read that forgets to
                // choose one sees nothing instead of the last org's rows.
                if backend == Backend::Postgres {
                    conn.execute("RESET nexus.org").await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options.clone())
}

impl Store {
    /// Connects to `sqlite://PATH` (the file is created if missing) or
    /// `postgres://...`. Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_within(url, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// [`Store::connect`] giving up after `timeout` when the database does
    /// not answer the first connection.
    pub async fn connect_within(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        if backend == Backend::Sqlite {
            check_sqlite_directory(url)?;
        }
        let url = match backend {
            // `mode=rwc` creates the file; the caller chose the path.
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::InvalidUrl {
                url: redact(&url),
                reason: e.to_string(),
            })?
            // sqlx logs every statement, and slow ones at warn with their
            // full text: a 20,000-parameter batch insert would flood the logs.
            .disable_statement_logging();

        // One eager connection, once, with a short timeout: the pool would
        // retry a refused connection until its acquire timeout and then
        // only say "pool timed out", hiding the driver's cause.
        let unreachable = |reason: String| StoreError::Unreachable {
            url: redact(&url),
            reason,
        };
        match tokio::time::timeout(timeout, options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    timeout.as_secs_f32()
                )));
            }
        }

        // Lazy: the pools open their connections on first use, normally
        // after `migrate`, so that on a fresh cluster every pooled
        // connection finds the `nexus_app` role the migrations create.
        let pool = open_pool(backend, &options, 8);
        // SQLite lets one transaction write at a time, and a connection's
        // page cache goes cold whenever another connection has written:
        // write transactions there take turns on one connection of their
        // own, which keeps the index pages a bulk ingest revisits in its
        // cache from batch to batch (a pool hands out its connections in
        // turn, so each batch found its connection's cache stale and read
        // the pages again). PostgreSQL writers run side by side.
        let writer = match backend {
            Backend::Sqlite => Some(open_pool(backend, &options, 1)),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            writer,
            backend,
            options,
        })
    }

    /// Applies pending migrations of the backend's folder.
    ///
    /// On PostgreSQL they run on a connection of their own, outside the
    /// pool: they create tables, roles and policies as the login itself,
    /// while pooled connections act as `nexus_app`, which may do none of it.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
            Backend::Postgres => {
                let mut conn = self
                    .options
                    .connect()
                    .await
                    .context(|| "connecting to migrate".to_string())?;
                let migrated = sqlx::migrate!("./migrations/postgres").run(&mut conn).await;
                let _ = conn.close().await;
                migrated?;
                self.warn_if_policies_bypassed().await?;
            }
        }
        Ok(())
    }

    /// Logs a warning when pooled connections act as a role that ignores
    /// row-level security (a superuser that may not become `nexus_app`):
    /// the store's own org filters still apply, the database's do not.
    async fn warn_if_policies_bypassed(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT current_user::text AS name, (rolsuper OR rolbypassrls) AS bypasses \
             FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_optional(&mut *self.conn_shared().await?)
        .await
        .context(|| "checking the role of pooled connections".to_string())?;
        let bypasses = row.as_ref().and_then(|r| {
            let name: String = r.try_get("name").ok()?;
            let bypasses: bool = r.try_get("bypasses").ok()?;
            bypasses.then_some(name)
        });
        if let Some(name) = bypasses {
            tracing::warn!(
                role = %name,
                "database role bypasses row-level security and cannot act as nexus_app; \
                 org isolation rests on the store's filters alone"
            );
        }
        Ok(())
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// On SQLite, copies the committed part of the write-ahead log back
    /// into the database file without waiting for anyone (a passive
    /// checkpoint), on a pooled connection of its own; on PostgreSQL,
    /// nothing. A connection that commits past `wal_autocheckpoint` pages
    /// checkpoints right after its commit, on its own time: a bulk writer
    /// calls this beside its writes instead, so that the copying runs on
    /// another core and the writer's own checkpoint finds little left.
    /// Returns the log frames copied back, when SQLite says.
    pub async fn checkpoint_beside(&self) -> Result<Option<i64>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_optional(&self.pool)
            .await
            .context(|| "checkpointing the write-ahead log".to_string())?;
        // The answer is (busy, log frames, frames checkpointed); -1 outside
        // WAL mode.
        Ok(row.and_then(|r| r.try_get::<i64, _>(2).ok()))
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }

    /// Begins a write transaction over the rows of one org. On SQLite it
    /// takes the write lock at once (`BEGIN IMMEDIATE`): a deferred
    /// transaction that reads and then writes fails with "database is
    /// locked" instead of waiting when another writer got there first. On
    /// PostgreSQL row-level security lets it see and write that org's rows
    /// only, whatever its statements say; shared tables (orgs, datasets,
    /// the taxonomy) are open to it.
    pub async fn begin_in(&self, scope: &OrgScope) -> Result<Tx, StoreError> {
        self.begin_as(scope.org().as_str()).await
    }

    /// Begins a write transaction over every org's rows and the platform's
    /// (audit events and notifications without an org): for platform work
    /// that is cross-org on purpose, such as the dataset lifecycle, the
    /// watch and reference migrations. Prefer [`Store::begin_in`].
    pub async fn begin_all(&self) -> Result<Tx, StoreError> {
        self.begin_as(ALL_ORGS).await
    }

    async fn begin_as(&self, org: &str) -> Result<Tx, StoreError> {
        let mut tx = match self.backend {
            Backend::Sqlite => {
                let writer = self.writer.as_ref().unwrap_or(&self.pool);
                writer.begin_with("BEGIN IMMEDIATE").await
            }
            Backend::Postgres => self.pool.begin().await,
        }
        .context(|| "beginning a transaction".to_string())?;
        if self.backend == Backend::Postgres {
            // Local to the transaction: it ends with the commit or rollback.
            sqlx::query("SELECT set_config('nexus.org', $1, true)")
                .bind(org)
                .execute(&mut *tx)
                .await
                .context(|| "choosing the org of a transaction".to_string())?;
        }
        Ok(Tx {
            tx,
            backend: self.backend,
        })
    }

    /// A connection that sees one org's rows of tenant tables (on
    /// PostgreSQL, by row-level security, beside the query's own filter).
    pub(crate) async fn conn_in(
        &self,
        scope: &OrgScope,
    ) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        self.conn_as(scope.org().as_str()).await
    }

    /// A connection that sees every org's rows and the platform's: for
    /// reads that are cross-org on purpose (a token looked up before its
    /// org is known, audit chain verification, platform roles' listings,
    /// the watch's scans, the compatibility check of a new release).
    pub(crate) async fn conn_all(&self) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        self.conn_as(ALL_ORGS).await
    }

    /// A connection for the shared tables that carry no org (orgs,
    /// datasets, the taxonomy, the audit head). It chooses no org, so on
    /// PostgreSQL a tenant table read through it shows no row at all.
    pub(crate) async fn conn_shared(&self) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        self.pool
            .acquire()
            .await
            .context(|| "acquiring a connection".to_string())
    }

    /// A condition that, closing the `WHERE` of one statement read through
    /// [`Store::conn_shared`], lets that statement alone see the rows of
    /// `org`: an SQL expression, a placeholder bound to an org id (`$1`) or
    /// `'*'` for every org. It does what [`Store::conn_in`] does without the
    /// extra round trip to the server, for reads on every request's path.
    ///
    /// On PostgreSQL it is `(SELECT set_config('nexus.org', ORG, true)) IS
    /// NOT NULL`. It names no column, so the planner makes it the plan's
    /// one-time filter, checked before any row of any table is read, and so
    /// before the row-level security policies read the setting (they read
    /// it through sub-selects run at their first use). `true` makes the
    /// setting local to the statement's own implicit transaction: it is
    /// gone when the statement ends, and nothing follows the connection
    /// back to the pool. Were the filter ever checked later, the policies
    /// would read the connection's own setting, unset on a shared
    /// connection, and the statement would see no tenant row: it fails
    /// closed. Inside a [`Tx`] the setting would last to the commit, so it
    /// is for pooled reads only. SQLite has no row-level security: there
    /// the condition is always true.
    pub(crate) fn statement_scope(&self, org: &str) -> String {
        match self.backend {
            Backend::Sqlite => "1 = 1".to_string(),
            Backend::Postgres => {
                format!("(SELECT set_config('nexus.org', {org}, true)) IS NOT NULL")
            }
        }
    }

    async fn conn_as(&self, org: &str) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        let mut conn = self.conn_shared().await?;
        if self.backend == Backend::Postgres {
            // For the session: the pool resets it when the connection comes
            // back (see `after_release` in `connect_within`).
            sqlx::query("SELECT set_config('nexus.org', $1, false)")
                .bind(org)
                .execute(&mut *conn)
                .await
                .context(|| "choosing the org of a connection".to_string())?;
        }
        Ok(conn)
    }
}

/// The value of `nexus.org` that opens every org's rows (see
/// `migrations/postgres/0007_row_security.sql`). Org ids are generated
/// UUIDs, so no org can be named by it.
const ALL_ORGS: &str = "*";

/// A write transaction: everything done through it lands together on
/// [`Tx::commit`], or not at all when it is dropped.
pub struct Tx {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx
            .commit()
            .await
            .context(|| "committing a transaction".to_string())
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// A tenant boundary: every query over tenant data takes one, and one cannot
/// be built without an org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgScope {
    org: OrgId,
}

impl OrgScope {
    /// The scope of one org.
    pub fn new(org: OrgId) -> Self {
        Self { org }
    }

    /// The org.
    pub fn org(&self) -> &OrgId {
        &self.org
    }
}

/// Formats a timestamp as stored: RFC 3339 UTC with milliseconds, so that
/// text order is time order.
pub(crate) fn ts(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads a stored timestamp.
pub(crate) fn parse_ts(what: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            what: what.to_string(),
            reason: format!("`{s}` is not an RFC 3339 timestamp: {e}"),
        })
}

/// The current time at the precision the store keeps (milliseconds), so a
/// value written and read back compares equal.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_connecting() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        for bad in [
            "x.db",
            "sqlite:x.db",
            "sqlite://",
            "postgress://u@h/db",
            "mysql://h/db",
        ] {
            let err = Backend::from_url(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidUrl { .. }), "{bad}: {err}");
        }
    }

    /// Regression: a pool timeout or a broken connection was a plain
    /// database error, which the API answered 500 `internal`.
    #[test]
    fn an_unreachable_database_is_unavailable_not_a_failed_statement() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        for (error, unavailable) in [
            (sqlx::Error::PoolTimedOut, true),
            (sqlx::Error::PoolClosed, true),
            (sqlx::Error::Io(io()), true),
            (sqlx::Error::WorkerCrashed, true),
            (sqlx::Error::RowNotFound, false),
            (sqlx::Error::ColumnNotFound("x".into()), false),
        ] {
            let text = error.to_string();
            let result: Result<(), _> = Err(error);
            let err = result.context(|| "listing alerts".to_string()).unwrap_err();
            assert_eq!(
                matches!(
                    &err,
                    StoreError::Unavailable { context, reason }
                        if context == "listing alerts" && *reason == text
                ),
                unavailable,
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn passwords_never_show_in_errors() {
        let err = Backend::from_url("postgress://me:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("me:***@h/db"), "{err}");
    }
}
