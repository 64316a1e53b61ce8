//! The store's conformance suite: every test runs on SQLite, and on
//! PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection, Executor, Row};
use store::testing::{TestDatabase, databases};
use store::{
    AlertId, Backend, DatasetFilter, DatasetId, IncidentId, IncidentRecord, NewAuditEvent,
    NewDataset, Org, OrgId, OrgScope, Outcome, ReferenceMigration, ReviewRecord, StateChange,
    Store, StoreError, TokenId, TokenRecord,
};
use taxonomy::lifecycle::DatasetState;
use taxonomy::{Domain, LoadHints, Release};

fn shared() -> PathBuf {
    std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn bundle(name: &str) -> Vec<u8> {
    std::fs::read(shared().join("attack").join(name)).expect("shared ATT&CK bundle")
}

fn parse(bytes: &[u8], name: &str) -> Release {
    let hints = LoadHints {
        file_name: Some(name.to_string()),
        ..LoadHints::default()
    };
    taxonomy::parse(bytes, &hints).expect("official release parses")
}

/// Counts STIX objects per type straight from the raw bundle, without the
/// parser under test.
fn raw_type_counts(gz: &[u8]) -> BTreeMap<String, usize> {
    let mut json = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut json)
        .expect("gunzip");
    let bundle: serde_json::Value = serde_json::from_str(&json).expect("json");
    let mut counts = BTreeMap::new();
    for object in bundle["objects"].as_array().expect("objects") {
        let kind = object["type"].as_str().unwrap_or_default().to_string();
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

async fn insert(store: &Store, release: &Release, bytes: &[u8], loaded_by: &str) -> DatasetId {
    let id = DatasetId::generate();
    let mut tx = store.begin_all().await.expect("begin");
    tx.insert_dataset(&NewDataset {
        id: id.clone(),
        release,
        bundle: bytes,
        source: "test".into(),
        loaded_by: loaded_by.into(),
        loaded_at: store::now(),
        change_summary: None,
    })
    .await
    .expect("insert dataset");
    tx.commit().await.expect("commit");
    id
}

fn change(from: DatasetState, to: DatasetState) -> StateChange {
    StateChange {
        from,
        to,
        actor: "tester".into(),
        at: store::now(),
        reason: None,
        previous_active: None,
    }
}

async fn raw_connection(db: &TestDatabase) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(&db.url)
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn dollar_placeholders_bind_by_number_on_every_backend() {
    for db in databases().await {
        let store = db.store().await;
        let mut conn = raw_connection(&db).await;
        // Out of order and reused: SQLite must bind `$N` by its number, not
        // by position, for one SQL text to serve both databases.
        let row = sqlx::query("SELECT $2 AS b, $1 AS a, $2 AS b_again")
            .bind("first")
            .bind("second")
            .fetch_one(&mut conn)
            .await
            .expect("query");
        let got: (String, String, String) = (row.get("a"), row.get("b"), row.get("b_again"));
        assert_eq!(
            got,
            ("first".into(), "second".into(), "second".into()),
            "{}",
            db.label()
        );
        store.close().await;
    }
}

#[tokio::test]
async fn unknown_urls_are_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mistyped = format!("sqlite:{}", dir.path().join("x.db").display());
    let err = Store::connect(&mistyped).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(Store::connect("mysql://localhost/x").await.is_err());
}

/// Migrates the SQLite database at `path` through the store, then answers
/// the page size the file says it has.
async fn page_size_after_migrating(path: &std::path::Path) -> i64 {
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let mut conn = AnyConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let size: i64 = sqlx::query("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    conn.close().await.unwrap();
    size
}

#[tokio::test]
async fn new_sqlite_databases_get_large_pages_and_old_ones_keep_theirs() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    assert_eq!(page_size_after_migrating(&fresh).await, 16_384);

    // A database made before (here with SQLite's default of 4 KiB) keeps
    // its pages: a page size changes only with a rebuild of the file.
    let old = dir.path().join("old.db");
    let mut conn = AnyConnection::connect(&format!("sqlite://{}?mode=rwc", old.display()))
        .await
        .unwrap();
    conn.execute("PRAGMA page_size = 4096; CREATE TABLE earlier (x INTEGER)")
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(page_size_after_migrating(&old).await, 4_096);
}

#[tokio::test]
async fn a_release_is_stored_whole() {
    let name = "enterprise-attack-18.1.json.gz";
    let bytes = bundle(name);
    let raw = raw_type_counts(&bytes);
    let release = parse(&bytes, name);

    for db in databases().await {
        let store = db.store().await;
        let id = insert(&store, &release, &bytes, "alice").await;

        let dataset = store.dataset(&id).await.unwrap().expect("stored");
        assert_eq!(dataset.state, DatasetState::Loaded);
        assert_eq!(dataset.domain, Domain::Enterprise);
        assert_eq!(dataset.release, "18.1");
        assert_eq!(dataset.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(
            (
                dataset.counts.tactics,
                dataset.counts.techniques,
                dataset.counts.subtechniques,
                dataset.counts.deprecated,
                dataset.counts.revoked
            ),
            (14, 216, 475, 12, 132),
            "{}",
            db.label()
        );

        // Every attack-pattern and tactic of the raw bundle has its row.
        let mut conn = raw_connection(&db).await;
        let count = |table: &'static str| {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE dataset_id = $1");
            (sql, id.to_string())
        };
        for (table, stix_type) in [
            ("techniques", "attack-pattern"),
            ("tactics", "x-mitre-tactic"),
            ("matrices", "x-mitre-matrix"),
        ] {
            let (sql, id) = count(table);
            let n: i64 = sqlx::query(&sql)
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get("n");
            assert_eq!(n as usize, raw[stix_type], "{table} on {}", db.label());
        }
        let subs = store.count_techniques(&id, true).await.unwrap();
        assert_eq!(
            subs as usize,
            release
                .techniques
                .iter()
                .filter(|t| t.is_subtechnique)
                .count()
        );

        // The bundle comes back byte for byte.
        assert_eq!(store.bundle(&id).await.unwrap().unwrap(), bytes);
        store.close().await;
    }
}

#[tokio::test]
async fn one_active_dataset_per_domain_is_enforced_by_the_database() {
    let (old_name, new_name) = ("ics-attack-17.1.json.gz", "ics-attack-18.1.json.gz");
    let (old_bytes, new_bytes) = (bundle(old_name), bundle(new_name));
    let (old, new) = (parse(&old_bytes, old_name), parse(&new_bytes, new_name));

    for db in databases().await {
        let store = db.store().await;
        let a = insert(&store, &old, &old_bytes, "alice").await;
        let b = insert(&store, &new, &new_bytes, "alice").await;

        let mut tx = store.begin_all().await.unwrap();
        for id in [&a, &b] {
            assert!(
                tx.change_state(id, &change(DatasetState::Loaded, DatasetState::Validated))
                    .await
                    .unwrap()
            );
            assert!(
                tx.change_state(id, &change(DatasetState::Validated, DatasetState::Approved))
                    .await
                    .unwrap()
            );
        }
        assert!(
            tx.change_state(&a, &change(DatasetState::Approved, DatasetState::Active))
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();

        let mut tx = store.begin_all().await.unwrap();
        let err = tx
            .change_state(&b, &change(DatasetState::Approved, DatasetState::Active))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { .. }),
            "{}: {err}",
            db.label()
        );
        drop(tx);

        // A change from a state the dataset is not in touches nothing.
        let mut tx = store.begin_all().await.unwrap();
        let stale = change(DatasetState::Loaded, DatasetState::Validated);
        assert!(!tx.change_state(&b, &stale).await.unwrap());
        tx.commit().await.unwrap();

        let active = store.active_dataset(Domain::Ics).await.unwrap().unwrap();
        assert_eq!(active.id, a);
        let approved = store
            .list_datasets(&DatasetFilter {
                domain: Some(Domain::Ics),
                state: Some(DatasetState::Approved),
            })
            .await
            .unwrap();
        assert_eq!(approved.iter().map(|d| &d.id).collect::<Vec<_>>(), vec![&b]);
        store.close().await;
    }
}

fn event(n: usize, org: Option<&OrgId>) -> NewAuditEvent {
    NewAuditEvent {
        org_id: org.cloned(),
        actor: format!("actor-{n}"),
        action: "dataset_load".into(),
        target_kind: "dataset".into(),
        target_id: format!("d{n}"),
        outcome: if n.is_multiple_of(2) {
            Outcome::Ok
        } else {
            Outcome::Denied
        },
        details: serde_json::json!({"n": n, "z": "last", "a": "first"}),
    }
}

#[tokio::test]
async fn the_audit_chain_links_hashes_and_refuses_changes() {
    for db in databases().await {
        let store = db.store().await;
        let org = Org {
            id: OrgId::generate(),
            name: "acme".into(),
            created_at: store::now(),
        };
        let mut tx = store.begin_all().await.unwrap();
        tx.insert_org(&org).await.unwrap();
        tx.commit().await.unwrap();

        let mut stored = Vec::new();
        for n in 0..5_usize {
            let org = n.is_multiple_of(2).then_some(&org.id);
            stored.push(store.append_audit(&event(n, org)).await.unwrap());
        }

        // Recompute the first hash here, from the documented serialization.
        let first = &stored[0];
        let fields = [
            "1".to_string(),
            first
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            org.id.to_string(),
            "actor-0".into(),
            "dataset_load".into(),
            "dataset".into(),
            "d0".into(),
            "ok".into(),
            serde_json::to_string(&first.details).unwrap(),
            "0".repeat(64),
        ];
        let expected = hex::encode(Sha256::digest(serde_json::to_string(&fields).unwrap()));
        assert_eq!(first.hash, expected, "{}", db.label());
        for pair in stored.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }

        let ok = store.verify_audit().await.unwrap();
        assert!(ok.ok, "{}: {ok:?}", db.label());
        assert_eq!(ok.events, 5);

        // Scoped listing: the org sees its 3 events, newest first.
        let scope = OrgScope::new(org.id.clone());
        let seqs: Vec<i64> = store
            .list_audit(Some(&scope), None, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![5, 3, 1]);
        let page: Vec<i64> = store
            .list_audit(None, Some(4), 2)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(page, vec![3, 2]);

        // The triggers refuse UPDATE and DELETE.
        let mut conn = raw_connection(&db).await;
        let update = conn
            .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
            .await;
        assert!(update.is_err(), "{}: UPDATE must be refused", db.label());
        let delete = conn.execute("DELETE FROM audit_log WHERE seq = 5").await;
        assert!(delete.is_err(), "{}: DELETE must be refused", db.label());
        assert!(store.verify_audit().await.unwrap().ok);

        // Someone with the power to drop the triggers can still edit a
        // row, but verification names the row.
        drop_audit_triggers(&mut conn, db.backend).await;
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
            .await
            .unwrap();
        let broken = store.verify_audit().await.unwrap();
        assert!(!broken.ok);
        assert_eq!(broken.first_bad_seq, Some(2), "{}: {broken:?}", db.label());
        store.close().await;
    }
}

#[tokio::test]
async fn a_truncated_audit_tail_is_detected() {
    for db in databases().await {
        let store = db.store().await;
        for n in 0..3 {
            store.append_audit(&event(n, None)).await.unwrap();
        }
        let mut conn = raw_connection(&db).await;
        drop_audit_triggers(&mut conn, db.backend).await;
        conn.execute("DELETE FROM audit_log WHERE seq = 3")
            .await
            .unwrap();
        let verification = store.verify_audit().await.unwrap();
        assert!(!verification.ok, "{}", db.label());
        assert_eq!(verification.first_bad_seq, Some(3));
        store.close().await;
    }
}

async fn drop_audit_triggers(conn: &mut AnyConnection, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER audit_log_no_update ON audit_log",
            "DROP TRIGGER audit_log_no_delete ON audit_log",
        ],
    };
    for sql in statements {
        conn.execute(*sql).await.unwrap();
    }
}

#[tokio::test]
async fn orgs_and_tokens_are_unique_and_scoped() {
    for db in databases().await {
        let store = db.store().await;
        let acme = Org {
            id: OrgId::generate(),
            name: "acme".into(),
            created_at: store::now(),
        };
        let other = Org {
            id: OrgId::generate(),
            name: "other".into(),
            created_at: store::now(),
        };
        let mut tx = store.begin_all().await.unwrap();
        tx.insert_org(&acme).await.unwrap();
        tx.insert_org(&other).await.unwrap();
        tx.commit().await.unwrap();

        let duplicate = Org {
            id: OrgId::generate(),
            ..acme.clone()
        };
        let mut tx = store.begin_all().await.unwrap();
        let err = tx.insert_org(&duplicate).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { .. }),
            "{}: {err}",
            db.label()
        );
        drop(tx);
        assert_eq!(store.org_by_name("acme").await.unwrap(), Some(acme.clone()));

        let token = TokenRecord {
            id: TokenId::generate(),
            org_id: acme.id.clone(),
            role: "viewer".into(),
            label: "ci".into(),
            secret_sha256: "ab".repeat(32),
            created_at: store::now(),
            revoked_at: None,
        };
        let mut tx = store
            .begin_in(&OrgScope::new(acme.id.clone()))
            .await
            .unwrap();
        tx.insert_token(&token).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.token_by_hash(&"ab".repeat(32)).await.unwrap(),
            Some(token.clone())
        );

        // Another org's scope cannot revoke it.
        let other_scope = OrgScope::new(other.id.clone());
        let mut tx = store.begin_in(&other_scope).await.unwrap();
        let now = store::now();
        assert!(
            !tx.revoke_token(&other_scope, &token.id, &now)
                .await
                .unwrap()
        );
        drop(tx);
        let mut tx = store
            .begin_in(&OrgScope::new(acme.id.clone()))
            .await
            .unwrap();
        assert!(
            tx.revoke_token(&OrgScope::new(acme.id.clone()), &token.id, &now)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        let revoked = store.token(&token.id).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(now));
        assert_eq!(
            store.list_tokens(&OrgScope::new(other.id)).await.unwrap(),
            vec![]
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_same_bytes_are_one_live_dataset() {
    let name = "ics-attack-18.1.json.gz";
    let bytes = bundle(name);
    let release = parse(&bytes, name);

    for db in databases().await {
        let store = db.store().await;
        let first = insert(&store, &release, &bytes, "alice").await;
        let mut tx = store.begin_all().await.unwrap();
        let copy = NewDataset {
            id: DatasetId::generate(),
            release: &release,
            bundle: &bytes,
            source: "again".into(),
            loaded_by: "alice".into(),
            loaded_at: store::now(),
            change_summary: None,
        };
        let err = tx.insert_dataset(&copy).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { .. }),
            "{}: {err}",
            db.label()
        );
        drop(tx);

        // Once the first copy is rejected, the bytes may be loaded again.
        let mut tx = store.begin_all().await.unwrap();
        assert!(
            tx.change_state(
                &first,
                &change(DatasetState::Loaded, DatasetState::Rejected)
            )
            .await
            .unwrap()
        );
        tx.insert_dataset(&copy).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .list_datasets(&DatasetFilter::default())
                .await
                .unwrap()
                .len(),
            2
        );
        store.close().await;
    }
}

#[tokio::test]
async fn technique_references_list_reference_migrations() {
    let name = "ics-attack-18.1.json.gz";
    let bytes = bundle(name);
    let release = parse(&bytes, name);

    for db in databases().await {
        let store = db.store().await;
        let dataset = insert(&store, &release, &bytes, "alice").await;
        let migration = ReferenceMigration {
            id: store::MigrationId::generate(),
            org_id: None,
            dataset_id: dataset.clone(),
            ref_kind: "mapping".into(),
            ref_id: "m-1".into(),
            old_technique: "T0001".into(),
            new_technique: "T0002".into(),
            applied_by: "bob".into(),
            applied_at: store::now(),
        };
        let mut tx = store.begin_all().await.unwrap();
        tx.insert_reference_migration(&migration).await.unwrap();
        tx.commit().await.unwrap();

        let references = store.technique_references().await.unwrap();
        assert_eq!(references.len(), 1, "{}", db.label());
        assert_eq!(references[0].kind, store::REFERENCE_MIGRATION);
        assert_eq!(references[0].id, migration.id.to_string());
        assert_eq!(references[0].technique_id, "T0002");
        assert_eq!(
            store.reference_migrations(&dataset).await.unwrap(),
            vec![migration.clone()]
        );

        // The same reference cannot be migrated twice for one dataset.
        let again = ReferenceMigration {
            id: store::MigrationId::generate(),
            ..migration
        };
        let mut tx = store.begin_all().await.unwrap();
        let err = tx.insert_reference_migration(&again).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        // Closing the pool waits for every connection, this one included.
        drop(tx);
        store.close().await;
    }
}

/// Migration 0009 on a database that already holds alert review items
/// (written through the 0008 schema, as an older build wrote them): every
/// item is kept as it was, the queue's indexes are there again, an item
/// names exactly one subject, and an incident has one open item per reason
/// (a second open is ignored, one resolved makes room for a new one).
#[tokio::test]
async fn review_items_survive_0009_and_name_an_alert_or_an_incident() {
    for db in databases().await {
        let label = db.label();
        sqlx::any::install_default_drivers();
        let url = match db.backend {
            // The file does not exist before the first migration.
            Backend::Sqlite => format!("{}?mode=rwc", db.url),
            Backend::Postgres => db.url.clone(),
        };
        let mut conn = AnyConnection::connect(&url).await.expect("raw connection");
        let mut migrator = match db.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        let every = migrator.migrations.clone();
        migrator.migrations = every
            .iter()
            .filter(|m| m.version < 9)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        migrator.run(&mut conn).await.expect("migrate to 0008");

        // Rows as the 0008 schema takes them; on PostgreSQL the login is
        // the tables' owner, which the policies bind unless it names an org.
        if db.backend == Backend::Postgres {
            conn.execute("SELECT set_config('nexus.org', '*', false)")
                .await
                .unwrap();
        }
        let (org, alert) = ("org-1", "alert-1");
        for sql in [
            format!("INSERT INTO orgs (id, name, created_at) VALUES ('{org}', 'acme', '{T0}')"),
            format!(
                "INSERT INTO alerts (id, org_id, source_uid, format, time, received_at, title, \
                 severity, severity_weight, content_sha256, raw, normalized, mapping_state, \
                 canonical_version, stale, locked) VALUES ('{alert}', '{org}', 'uid-1', \
                 'native', '{T0}', '{T0}', 'alert', 'high', 0.8, 'sha', '{{}}', '{{}}', \
                 'unmapped', 0, 0, 0)"
            ),
            format!(
                "INSERT INTO review_queue (id, org_id, alert_id, reason, detail, state, \
                 opened_at, resolved_at, resolved_by, resolution, interactions) VALUES \
                 ('item-1', '{org}', '{alert}', 'low_confidence', '[1]', 'open', '{T0}', NULL, \
                 NULL, NULL, 0), \
                 ('item-2', '{org}', '{alert}', 'ai_only', '[2]', 'accepted', '{T0}', '{T1}', \
                 'ann', '{{\"notes\":\"ok\"}}', 3)"
            ),
        ] {
            conn.execute(sql.as_str()).await.expect(&sql);
        }
        migrator.migrations = every;
        migrator.run(&mut conn).await.expect("migrate from 0008 on");
        let _ = conn.close().await;

        let store = db.store().await;
        let scope = OrgScope::new(OrgId(org.into()));
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let kept = |id: &str, reason: &str, detail: &str, state: &str| ReviewRecord {
            id: id.into(),
            org_id: scope.org().clone(),
            alert_id: Some(AlertId(alert.into())),
            incident_id: None,
            reason: reason.into(),
            detail: detail.into(),
            state: state.into(),
            opened_at: at(T0),
            resolved_at: None,
            resolved_by: None,
            resolution: None,
            interactions: 0,
        };
        let expected = vec![
            kept("item-1", "low_confidence", "[1]", "open"),
            ReviewRecord {
                resolved_at: Some(at(T1)),
                resolved_by: Some("ann".into()),
                resolution: Some(r#"{"notes":"ok"}"#.into()),
                interactions: 3,
                ..kept("item-2", "ai_only", "[2]", "accepted")
            },
        ];
        assert_eq!(
            store.reviews(&scope, None, 10).await.unwrap(),
            expected,
            "{label}"
        );

        // The queue's indexes, under their names, after the rebuild.
        let mut conn = raw_connection(&db).await;
        let sql = match db.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'index' \
                 AND tbl_name = 'review_queue' AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT indexname::text AS name FROM pg_indexes \
                 WHERE tablename = 'review_queue' AND indexname <> 'review_queue_pkey' \
                 ORDER BY name"
            }
        };
        let indexes: Vec<String> = sqlx::query(sql)
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        assert_eq!(
            indexes,
            [
                "review_queue_one_open",
                "review_queue_one_open_incident",
                "review_queue_org_state"
            ],
            "{label}"
        );
        let _ = conn.close().await;

        // An item names one subject: neither, or both, is refused.
        let incident = IncidentRecord {
            id: IncidentId("incident-1".into()),
            org_id: scope.org().clone(),
            title: "incident".into(),
            status: "open".into(),
            severity: "high".into(),
            lead: None,
            created_by: "ann".into(),
            created_at: at(T0),
            updated_at: at(T0),
            merged_into: None,
            split_from: None,
            stale: true,
            stale_reasons: r#"[{"reason":"reopened"}]"#.into(),
        };
        let mut tx = store.begin_in(&scope).await.unwrap();
        tx.insert_incident(&incident).await.unwrap();
        tx.commit().await.unwrap();
        let of_incident = |id: &str| ReviewRecord {
            id: id.into(),
            alert_id: None,
            incident_id: Some(incident.id.clone()),
            reason: "stale".into(),
            detail: r#"[{"reason":"reopened"}]"#.into(),
            ..kept(id, "stale", "[]", "open")
        };
        for (what, bad) in [
            (
                "neither",
                ReviewRecord {
                    incident_id: None,
                    ..of_incident("bad-1")
                },
            ),
            (
                "both",
                ReviewRecord {
                    alert_id: Some(AlertId(alert.into())),
                    ..of_incident("bad-2")
                },
            ),
        ] {
            let mut tx = store.begin_in(&scope).await.unwrap();
            let refused = tx.open_reviews(vec![bad]).await;
            assert!(
                refused.is_err(),
                "{label}: an item naming {what} was stored"
            );
        }

        // One open item per incident and reason.
        let mut tx = store.begin_in(&scope).await.unwrap();
        assert_eq!(
            tx.open_reviews(vec![of_incident("inc-1")]).await.unwrap(),
            1
        );
        assert_eq!(
            tx.open_reviews(vec![of_incident("inc-2")]).await.unwrap(),
            0
        );
        let open = tx
            .open_incident_reviews(&scope, "stale", std::slice::from_ref(&incident.id))
            .await
            .unwrap();
        assert_eq!(open, vec![of_incident("inc-1")], "{label}");
        let detail = r#"[{"reason":"reopened"},{"reason":"merged"}]"#;
        let changed = tx
            .set_review_details(&scope, &[("inc-1".into(), detail.into())])
            .await
            .unwrap();
        assert_eq!(changed, 1, "{label}");
        assert!(
            tx.resolve_review(&scope, "inc-1", "accepted", "ann", &at(T1), None)
                .await
                .unwrap()
        );
        assert_eq!(
            tx.open_reviews(vec![of_incident("inc-3")]).await.unwrap(),
            1
        );
        tx.commit().await.unwrap();
        let first = store.review(&scope, "inc-1").await.unwrap().unwrap();
        assert_eq!(
            (first.detail.as_str(), first.state.as_str()),
            (detail, "accepted")
        );
        let open: Vec<String> = store
            .reviews(&scope, Some("open"), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(open, ["inc-3", "item-1"], "{label}");
        store.close().await;
    }
}

/// Timestamps of [`review_items_survive_0009_and_name_an_alert_or_an_incident`].
const T0: &str = "2025-01-01T00:00:00.000Z";
const T1: &str = "2025-01-01T00:05:00.000Z";

/// Every text column compares byte by byte on PostgreSQL (migration 0014),
/// as SQLite compares all text: one collation for every key, so no join
/// mixes two (an index serves a comparison under its own collation only),
/// and both databases order text alike. A later migration whose column
/// forgets `COLLATE "C"` fails here.
#[tokio::test]
async fn every_text_column_compares_bytewise() {
    for db in databases().await {
        let store = db.store().await;
        let mut conn = raw_connection(&db).await;
        let others: Vec<String> = match db.backend {
            Backend::Postgres => sqlx::query(
                "SELECT c.table_name || '.' || c.column_name AS name \
                 FROM information_schema.columns c \
                 JOIN information_schema.tables t USING (table_schema, table_name) \
                 WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
                   AND c.data_type = 'text' AND c.table_name <> '_sqlx_migrations' \
                   AND c.collation_name IS DISTINCT FROM 'C' \
                 ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await
            .expect("columns")
            .iter()
            .map(|row| row.get("name"))
            .collect(),
            // A column's collation is in its declaration; none names one.
            Backend::Sqlite => sqlx::query(
                "SELECT name || ': ' || sql AS name FROM sqlite_master \
                 WHERE type = 'table' AND upper(sql) LIKE '%COLLATE%' ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await
            .expect("tables")
            .iter()
            .map(|row| row.get("name"))
            .collect(),
        };
        assert_eq!(others, Vec::<String>::new(), "{}", db.label());
        // Byte order, not a language's: upper case before lower case, a
        // hyphen (0x2D) before a digit, ASCII before any other letter.
        let ids = ["b1", "é", "B2", "b-1", "a"];
        for id in ids {
            sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $1, $2)")
                .bind(id)
                .bind("2026-01-01T00:00:00Z")
                .execute(&mut conn)
                .await
                .expect("org");
        }
        let ordered: Vec<String> = sqlx::query("SELECT id FROM orgs ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("orgs")
            .iter()
            .map(|row| row.get("id"))
            .collect();
        let mut bytewise: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        bytewise.sort();
        assert_eq!(ordered, bytewise, "{}", db.label());
        store.close().await;
    }
}

/// Regression: a database that stopped answering failed every call as a
/// plain database error (an API 500). A closed pool, where a pool timeout
/// or a broken connection leaves its callers, answers
/// [`StoreError::Unavailable`], on both backends.
#[tokio::test]
async fn a_database_that_stopped_answering_is_unavailable() {
    for db in databases().await {
        let store = db.store().await;
        store.close().await;
        let err = store.list_orgs().await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable { .. }),
            "{}: {err:?}",
            db.label()
        );
    }
}
