//! Fresh databases for tests: a temporary SQLite file always, and a
//! PostgreSQL database with a random name when `NEXUS_ATTACK_TEST_POSTGRES`
//! names a server (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Write a test once and run it on every backend:
//!
//! ```no_run
//! # async fn example() {
//! for db in store::testing::databases().await {
//!     let store = db.store().await;
//!     // ... assertions ...
//! }
//! # }
//! ```

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Executor};

use crate::{Backend, OrgScope, Store};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "NEXUS_ATTACK_TEST_POSTGRES";

/// A database that exists for one test and is removed afterwards.
pub struct TestDatabase {
    /// URL to connect to it.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The temporary directory holding the SQLite file goes with it.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// `DROP DATABASE name` through the admin URL.
    Postgres { admin_url: String, name: String },
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Every backend to run a test on: SQLite, plus PostgreSQL when configured.
///
/// # Panics
/// When the temporary file or the PostgreSQL database cannot be created: a
/// test without its database cannot run.
pub async fn databases() -> Vec<TestDatabase> {
    let mut all = vec![TestDatabase::sqlite()];
    if let Ok(admin_url) = std::env::var(POSTGRES_ENV) {
        all.push(TestDatabase::postgres(&admin_url).await);
    }
    all
}

impl TestDatabase {
    /// A fresh SQLite file in a temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("a temporary directory for the test database");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDatabase {
            url,
            backend: Backend::Sqlite,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database with a random name on the server of
    /// `admin_url`.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn postgres(admin_url: &str) -> TestDatabase {
        sqlx::any::install_default_drivers();
        let name = format!("nxa_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = AnyConnection::connect(admin_url)
            .await
            .expect("connect to the PostgreSQL test server");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("the PostgreSQL URL ends with /DATABASE");
        TestDatabase {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            cleanup: Cleanup::Postgres {
                admin_url: admin_url.to_string(),
                name,
            },
        }
    }

    /// A short label for assertion messages (`sqlite`, `postgres`).
    pub fn label(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// A migrated store on this database.
    ///
    /// # Panics
    /// When connecting or migrating fails.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

/// Which rows a connection from [`connection`] is meant to reach.
#[derive(Debug, Clone, Copy)]
pub enum Reach<'a> {
    /// One org's rows, as the store's repositories read them.
    Org(&'a OrgScope),
    /// Every org's rows and the platform's (deliberate cross-org work).
    All,
    /// No org chosen: on PostgreSQL no tenant row at all.
    Nothing,
}

/// A pooled connection exactly as the store hands it to its repositories,
/// for raw SQL that checks what row-level security lets through on
/// PostgreSQL (SQLite has none: there the connection reaches every row).
///
/// # Panics
/// When no connection can be had.
pub async fn connection(store: &Store, reach: Reach<'_>) -> PoolConnection<Any> {
    match reach {
        Reach::Org(scope) => store.conn_in(scope).await,
        Reach::All => store.conn_all().await,
        Reach::Nothing => store.conn_shared().await,
    }
    .expect("a pooled connection")
}

/// The condition by which one statement names its own org
/// (`Store::statement_scope`), for raw SQL that checks what it lets through:
/// `org` is an SQL expression (`'...'` quoted, or a placeholder).
pub fn statement_scope(store: &Store, org: &str) -> String {
    store.statement_scope(org)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        let shown = name.clone();
        // Drop runs inside the test's runtime, which cannot block on
        // itself: drop the database from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = AnyConnection::connect(&admin_url).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                admin.execute(sql.as_str()).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {shown}");
        }
    }
}
