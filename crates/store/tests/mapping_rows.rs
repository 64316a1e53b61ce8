//! Bulk alert and mapping rows, on SQLite always and on PostgreSQL when
//! `NEXUS_ATTACK_TEST_POSTGRES` is set: inserting only the new alerts of a
//! batch, every text value read back byte for byte (both databases receive
//! them as bound parameters; PostgreSQL once received array literals), and
//! mapping rows that must name an alert of their own org.

use sqlx::{AnyConnection, Connection, Executor};
use store::testing::{TestDatabase, databases};
use store::{
    AlertId, AlertRecord, Backend, CandidateRecord, CanonicalRecord, CanonicalSetRecord, Org,
    OrgId, OrgScope, Store, StoreError,
};

/// Text that a literal or a bound parameter could mangle: quotes,
/// backslashes, the literal's own separators, the word NULL, nothing at
/// all, line breaks and non-ASCII text.
const AWKWARD: [&str; 8] = [
    r#"say "hi""#,
    r"C:\Windows\System32\cmd.exe \\ \",
    "{a,b},{c}",
    "NULL",
    "",
    "line one\nline two\r\n\ttabbed",
    "ünïcödé ✓ 日本",
    r#"{"json": ["inside", "text"], "esc": "\u0041\\"}"#,
];

fn alert(org: &OrgId, uid: &str, text: &str) -> AlertRecord {
    AlertRecord {
        id: AlertId::generate(),
        org_id: org.clone(),
        source_uid: uid.to_string(),
        format: "native".into(),
        time: None,
        received_at: store::now(),
        title: text.to_string(),
        description: Some(format!("{text}|description")),
        severity: "high".into(),
        severity_weight: 0.8,
        connector: None,
        product: Some(text.to_string()),
        analytic_uid: None,
        host: Some(format!("{text}|host")),
        user: None,
        content_sha256: format!("sha-of-{uid}"),
        raw: format!("{{\"title\": {}}}", serde_json::Value::from(text)),
        normalized: "{}".into(),
        mapping_state: "unmapped".into(),
        canonical_version: 1,
        stale: false,
        stale_reason: None,
        locked: false,
    }
}

fn candidate(org: &OrgId, alert: &AlertId, id: &str) -> CandidateRecord {
    CandidateRecord {
        id: id.to_string(),
        org_id: org.clone(),
        alert_id: alert.clone(),
        technique: "T1059".into(),
        tactic: None,
        source: "rule".into(),
        confidence: 0.7,
        band: "high".into(),
        evidence: "[]".into(),
        explanation: "test".into(),
        rule_id: Some("r1".into()),
        rule_version: Some(1),
        model_version: None,
        vendor_declared: false,
        domain: "enterprise-attack".into(),
        release: "18.1".into(),
        dataset_id: None,
        created_at: store::now(),
    }
}

fn canonical(org: &OrgId, alert: &AlertId) -> CanonicalRecord {
    CanonicalRecord {
        set: CanonicalSetRecord {
            org_id: org.clone(),
            alert_id: alert.clone(),
            version: 2,
            decided_by: None,
            flags: "[]".into(),
            pending: "[]".into(),
            entries: 0,
            cause: "test".into(),
            domain: "enterprise-attack".into(),
            release: "18.1".into(),
            dataset_id: None,
            computed_at: store::now(),
        },
        entries: Vec::new(),
    }
}

async fn new_org(store: &Store, name: &str) -> OrgScope {
    let org = Org {
        id: OrgId::generate(),
        name: name.into(),
        created_at: store::now(),
    };
    let scope = OrgScope::new(org.id.clone());
    let mut tx = store.begin_in(&scope).await.unwrap();
    tx.insert_org(&org).await.unwrap();
    tx.commit().await.unwrap();
    scope
}

async fn candidate_count(store: &Store, scope: &OrgScope, alert: &AlertId) -> usize {
    store.candidates(scope, alert).await.unwrap().len()
}

/// A connection as the database's login (the tables' owner on
/// PostgreSQL), outside the store's pool.
async fn owner_connection(db: &TestDatabase) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&db.url).await.unwrap();
    if db.backend == Backend::Postgres {
        conn.execute("SELECT set_config('nexus.org', '*', false)")
            .await
            .unwrap();
    }
    conn
}

#[tokio::test]
async fn only_new_alerts_are_inserted_and_every_text_reads_back_unchanged() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let scope = new_org(&store, "acme").await;
        let org = scope.org().clone();

        let first: Vec<AlertRecord> = AWKWARD
            .iter()
            .enumerate()
            .map(|(i, text)| alert(&org, &format!("uid-{i}"), text))
            .collect();
        let mut tx = store.begin_in(&scope).await.unwrap();
        let inserted = tx.insert_new_alerts(first.clone()).await.unwrap();
        tx.commit().await.unwrap();
        let expected: std::collections::HashSet<String> =
            (0..AWKWARD.len()).map(|i| format!("uid-{i}")).collect();
        assert_eq!(inserted, expected, "{label}");

        // Two known uids with other content and two new: only the new ones
        // go in, the stored two keep their content. PostgreSQL's plain
        // insert, tried first, writes `uid--early` (first in key order)
        // before `uid-0` refuses it; the savepoint must take that row back
        // for the insert that skips known uids to succeed.
        let again = vec![
            alert(&org, "uid-0", "changed"),
            alert(&org, "uid-new", "fresh"),
            alert(&org, "uid-3", "changed too"),
            alert(&org, "uid--early", "fresh too"),
        ];
        let mut tx = store.begin_in(&scope).await.unwrap();
        let inserted = tx.insert_new_alerts(again).await.unwrap();
        let known = tx
            .alerts_by_source_uid(&scope, &["uid-0".into(), "uid-3".into(), "nope".into()])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            inserted,
            ["uid-new".to_string(), "uid--early".to_string()].into(),
            "{label}"
        );
        assert_eq!(
            known.get("uid-0"),
            Some(&(first[0].id.clone(), "sha-of-uid-0".to_string())),
            "{label}"
        );
        assert_eq!(known.len(), 2, "{label}: {known:?}");

        for (i, sent) in first.iter().enumerate() {
            let stored = store
                .alert(&scope, &format!("uid-{i}"))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{label}: uid-{i} stored"));
            assert_eq!(stored.id, sent.id, "{label}");
            assert_eq!(stored.title, AWKWARD[i], "{label}: title {i}");
            assert_eq!(stored.description, sent.description, "{label}: {i}");
            assert_eq!(stored.product, sent.product, "{label}: {i}");
            assert_eq!(stored.host, sent.host, "{label}: {i}");
            assert_eq!(stored.raw, sent.raw, "{label}: raw {i}");
            assert_eq!(stored.user, None, "{label}: a NULL stays NULL");
            assert_eq!(stored.severity_weight, 0.8, "{label}");
        }
        store.close().await;
    }
}

#[tokio::test]
async fn mapping_rows_of_new_alerts_store_a_repeated_candidate_once() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let scope = new_org(&store, "acme").await;
        let org = scope.org().clone();
        let a = alert(&org, "a-1", "declared twice");
        // The same technique declared twice by the alert: one content
        // hash, so one candidate, inserted without conflict handling.
        let rows = store::MappingRows::of(
            vec![
                candidate(&org, &a.id, "c-same"),
                candidate(&org, &a.id, "c-same"),
                candidate(&org, &a.id, "c-other"),
            ],
            canonical(&org, &a.id),
        );
        let mut tx = store.begin_in(&scope).await.unwrap();
        tx.insert_new_alerts(vec![a.clone()]).await.unwrap();
        tx.insert_mapping_rows(rows).await.unwrap();
        tx.commit().await.unwrap();
        let mut ids: Vec<String> = store
            .candidates(&scope, &a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["c-other", "c-same"], "{label}");
        store.close().await;
    }
}

#[tokio::test]
async fn mapping_rows_must_name_a_stored_alert_of_their_org() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let a = new_org(&store, "org-a").await;
        let b = new_org(&store, "org-b").await;
        let a_alert = alert(a.org(), "a-1", "alert of a");
        let mut tx = store.begin_in(&a).await.unwrap();
        tx.insert_new_alerts(vec![a_alert.clone()]).await.unwrap();
        tx.insert_candidates(vec![candidate(a.org(), &a_alert.id, "c-ok")])
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let refused = |err: StoreError| {
            let text = err.to_string();
            assert!(
                text.contains("foreign key") || text.contains("FOREIGN KEY"),
                "{label}: {text}"
            );
        };
        // An alert that does not exist: refused, with the statement's good
        // row, on both databases.
        let ghost = AlertId::generate();
        let mut tx = store.begin_in(&a).await.unwrap();
        let err = tx
            .insert_candidates(vec![
                candidate(a.org(), &a_alert.id, "c-good"),
                candidate(a.org(), &ghost, "c-ghost"),
            ])
            .await
            .unwrap_err();
        refused(err);
        drop(tx);
        let mut tx = store.begin_in(&a).await.unwrap();
        let err = tx
            .insert_canonical(vec![canonical(a.org(), &ghost)])
            .await
            .unwrap_err();
        refused(err);
        drop(tx);
        assert_eq!(candidate_count(&store, &a, &a_alert.id).await, 1, "{label}");

        // A row of org B naming org A's alert, written by a transaction that
        // may see every org: PostgreSQL checks the pair, SQLite's foreign
        // key only the alert id.
        if db.backend == Backend::Postgres {
            let mut tx = store.begin_all().await.unwrap();
            let err = tx
                .insert_candidates(vec![candidate(b.org(), &a_alert.id, "c-cross")])
                .await
                .unwrap_err();
            refused(err);
            drop(tx);
            let mut tx = store.begin_all().await.unwrap();
            let err = tx
                .insert_canonical(vec![canonical(b.org(), &a_alert.id)])
                .await
                .unwrap_err();
            refused(err);
            drop(tx);
            assert_eq!(candidate_count(&store, &b, &a_alert.id).await, 0, "{label}");
        }

        // Alerts are never deleted, not even by the tables' owner.
        let mut conn = owner_connection(&db).await;
        if db.backend == Backend::Postgres {
            // The raw document is compressed with LZ4 (this server has it).
            let method: String = sqlx::query_scalar(
                "SELECT attcompression::text FROM pg_attribute \
                 WHERE attrelid = 'alerts'::regclass AND attname = 'raw'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(method, "l", "{label}");
        }
        let err = conn.execute("DELETE FROM alerts").await.unwrap_err();
        assert!(
            err.to_string().contains("alerts are kept"),
            "{label}: {err}"
        );
        if db.backend == Backend::Postgres {
            let err = conn.execute("TRUNCATE alerts CASCADE").await.unwrap_err();
            assert!(
                err.to_string().contains("alerts are kept"),
                "{label}: {err}"
            );
        }
        let _ = conn.close().await;
        assert!(
            store.alert(&a, "a-1").await.unwrap().is_some(),
            "{label}: the alert is still there"
        );
        store.close().await;
    }
}

/// Migration 0016: on PostgreSQL the org of new alerts is checked once per
/// statement instead of by a foreign key per row; the guarantee stays what
/// the foreign key gave, on both databases.
#[tokio::test]
async fn alerts_must_name_a_stored_org_and_that_org_stays() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let a = new_org(&store, "org-a").await;
        let kept = alert(a.org(), "a-1", "alert of a");
        let mut tx = store.begin_in(&a).await.unwrap();
        tx.insert_new_alerts(vec![kept.clone()]).await.unwrap();
        tx.commit().await.unwrap();

        let refused = |err: StoreError| {
            let text = err.to_string();
            assert!(
                text.contains("foreign key") || text.contains("FOREIGN KEY"),
                "{label}: {text}"
            );
        };
        // An org that was never stored, as the transaction's own org (one
        // check per statement on PostgreSQL) and from a transaction that
        // may see every org (a check per row).
        let ghost = OrgScope::new(OrgId::generate());
        let mut tx = store.begin_in(&ghost).await.unwrap();
        let err = tx
            .insert_new_alerts(vec![alert(ghost.org(), "g-1", "ghost")])
            .await
            .unwrap_err();
        refused(err);
        drop(tx);
        let mut tx = store.begin_all().await.unwrap();
        let err = tx
            .insert_new_alerts(vec![
                alert(a.org(), "a-2", "good row"),
                alert(ghost.org(), "g-2", "ghost"),
            ])
            .await
            .unwrap_err();
        refused(err);
        drop(tx);
        assert_eq!(store.alert_count(&a).await.unwrap(), 1, "{label}");

        // An org its alerts name neither goes nor changes its id; its
        // other columns still change.
        let mut conn = owner_connection(&db).await;
        let org = a.org().as_str();
        for statement in [
            format!("DELETE FROM orgs WHERE id = '{org}'"),
            format!("UPDATE orgs SET id = 'renamed' WHERE id = '{org}'"),
        ] {
            let err = conn.execute(statement.as_str()).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("FOREIGN KEY") || text.contains("orgs are kept"),
                "{label}: {statement}: {text}"
            );
        }
        if db.backend == Backend::Postgres {
            let err = conn.execute("TRUNCATE orgs CASCADE").await.unwrap_err();
            assert!(err.to_string().contains("orgs are kept"), "{label}: {err}");
        }
        conn.execute(format!("UPDATE orgs SET name = 'org-a renamed' WHERE id = '{org}'").as_str())
            .await
            .unwrap();
        let _ = conn.close().await;
        let stored = store.alert(&a, "a-1").await.unwrap();
        assert_eq!(stored.map(|s| s.id), Some(kept.id), "{label}");
        store.close().await;
    }
}

/// On PostgreSQL a column that holds one value in every row of a
/// statement is sent once beside the rows (`store::batch`). Whether a
/// column is shared or varies from row to row, and whether the shared
/// value is NULL, every row reads back as it was sent.
#[tokio::test]
async fn columns_shared_by_every_row_or_not_read_back_as_sent() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let scope = new_org(&store, "acme").await;
        let org = scope.org().clone();
        let received = store::now();
        // First batch: the state columns vary in a few rows (a stale
        // reason, another version); second batch: all of them shared, the
        // stale reason a shared NULL.
        let varied: Vec<AlertRecord> = (0..40)
            .map(|i| {
                let mut a = alert(&org, &format!("varied-{i}"), "t");
                a.received_at = received;
                if i == 7 || i == 30 {
                    a.stale = true;
                    a.stale_reason = Some(format!("reason {i}"));
                }
                if i == 12 {
                    a.canonical_version = 5;
                }
                a
            })
            .collect();
        let shared: Vec<AlertRecord> = (0..40)
            .map(|i| {
                let mut a = alert(&org, &format!("shared-{i}"), "t");
                a.received_at = received;
                a
            })
            .collect();
        let mut tx = store.begin_in(&scope).await.unwrap();
        tx.insert_new_alerts(varied.clone()).await.unwrap();
        tx.insert_alerts(shared.clone()).await.unwrap();
        // Sets of one version and of several.
        let sets: Vec<CanonicalRecord> = varied
            .iter()
            .chain(&shared)
            .enumerate()
            .map(|(i, a)| {
                let mut set = canonical(&org, &a.id);
                if i % 17 == 3 {
                    set.set.version = 9;
                }
                set
            })
            .collect();
        tx.insert_canonical(sets.clone()).await.unwrap();
        tx.commit().await.unwrap();

        for sent in varied.iter().chain(&shared) {
            let stored = store
                .alert(&scope, &sent.source_uid)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{label}: {} stored", sent.source_uid));
            assert_eq!(&stored, sent, "{label}");
        }
        for (i, sent) in sets.iter().enumerate() {
            let history = store
                .canonical_history(&scope, &sent.set.alert_id)
                .await
                .unwrap();
            let versions: Vec<i64> = history.iter().map(|s| s.version).collect();
            let expected = if i % 17 == 3 { 9 } else { 2 };
            assert_eq!(versions, [expected], "{label}: set {i}");
            assert_eq!(history[0], sent.set, "{label}: set {i}");
        }
        store.close().await;
    }
}
