//! Reads on every request's path name their org inside the statement
//! (`Store::statement_scope`) instead of choosing it on the connection with a
//! round trip of its own: the token with its org, the org's audit head with
//! the active dataset, rollups, exclusion windows and drilldown pages.
//!
//! Each must see its own org's rows and no other's, see them at all on
//! PostgreSQL (where row-level security shows no tenant row to a statement
//! whose org was not chosen before its tables were read), and leave no org
//! chosen on the connection afterwards. Runs on SQLite always and on
//! PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set.

use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use store::testing::{Reach, connection, databases, statement_scope};
use store::{
    AlertId, AlertRecord, Backend, CanonicalEntryRecord, CanonicalRecord, CanonicalSetRecord,
    DatasetId, ExclusionRecord, NewAuditEvent, NewDataset, Org, OrgId, OrgScope, Outcome,
    RollupRecord, StateChange, Store, TokenId, TokenRecord,
};
use taxonomy::lifecycle::DatasetState;
use taxonomy::{Domain, LoadHints};

fn shared() -> PathBuf {
    std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// A stored ICS dataset (the smallest official bundle), not yet active.
async fn ics_dataset(store: &Store) -> DatasetId {
    let name = "ics-attack-18.1.json.gz";
    let bytes = std::fs::read(shared().join("attack").join(name)).expect("shared ICS bundle");
    let hints = LoadHints {
        file_name: Some(name.to_string()),
        ..LoadHints::default()
    };
    let release = taxonomy::parse(&bytes, &hints).expect("official release parses");
    let id = DatasetId::generate();
    let mut tx = store.begin_all().await.unwrap();
    tx.insert_dataset(&NewDataset {
        id: id.clone(),
        release: &release,
        bundle: &bytes,
        source: "test".into(),
        loaded_by: "steward".into(),
        loaded_at: store::now(),
        change_summary: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn org(store: &Store, name: &str) -> Org {
    let org = Org {
        id: OrgId::generate(),
        name: name.into(),
        created_at: store::now(),
    };
    let mut tx = store
        .begin_in(&OrgScope::new(org.id.clone()))
        .await
        .unwrap();
    tx.insert_org(&org).await.unwrap();
    tx.commit().await.unwrap();
    org
}

fn token(org: &OrgId, hash: &str) -> TokenRecord {
    TokenRecord {
        id: TokenId::generate(),
        org_id: org.clone(),
        role: "viewer".into(),
        label: "test".into(),
        secret_sha256: hash.into(),
        created_at: store::now(),
        revoked_at: None,
    }
}

fn event(org: &OrgId, n: i64) -> NewAuditEvent {
    NewAuditEvent {
        org_id: Some(org.clone()),
        actor: "analyst".into(),
        action: "test".into(),
        target_kind: "org".into(),
        target_id: org.to_string(),
        outcome: Outcome::Ok,
        details: serde_json::json!({"n": n}),
    }
}

fn rollup(technique: &str) -> RollupRecord {
    RollupRecord {
        day: chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
        tactic: "execution".into(),
        technique: technique.into(),
        source: "rule".into(),
        severity: "high".into(),
        connector: "sysmon".into(),
        platform: String::new(),
        band: "high".into(),
        count: 1,
        alerts: 1,
        confidence_sum: 0.9,
    }
}

fn exclusion(org: &OrgId, connector: &str) -> ExclusionRecord {
    ExclusionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org.clone(),
        connector: connector.into(),
        from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        to: chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
        reason: "noisy".into(),
        created_by: "admin".into(),
        created_at: store::now(),
    }
}

/// One generated alert of a drilldown: when it happened and what its
/// current canonical set maps it to.
struct Mapped {
    id: AlertId,
    at: DateTime<Utc>,
    technique: &'static str,
}

fn alert(org: &OrgId, m: &Mapped, n: usize, version: i64) -> AlertRecord {
    AlertRecord {
        id: m.id.clone(),
        org_id: org.clone(),
        source_uid: format!("uid-{n}"),
        format: "native".into(),
        time: Some(m.at),
        received_at: m.at,
        title: format!("alert {n}"),
        description: None,
        severity: "high".into(),
        severity_weight: 4.0,
        connector: Some("sysmon".into()),
        product: None,
        analytic_uid: None,
        host: None,
        user: None,
        content_sha256: format!("{n:064}"),
        raw: "{}".into(),
        normalized: "{}".into(),
        mapping_state: "mapped".into(),
        canonical_version: version,
        stale: false,
        stale_reason: None,
        locked: false,
    }
}

fn canonical(org: &OrgId, alert: &AlertId, version: i64, technique: &str) -> CanonicalRecord {
    let at = store::now();
    CanonicalRecord {
        set: CanonicalSetRecord {
            org_id: org.clone(),
            alert_id: alert.clone(),
            version,
            decided_by: None,
            flags: "[]".into(),
            pending: "[]".into(),
            entries: 1,
            cause: "test".into(),
            domain: "enterprise-attack".into(),
            release: "18.1".into(),
            dataset_id: None,
            computed_at: at,
        },
        entries: vec![CanonicalEntryRecord {
            org_id: org.clone(),
            alert_id: alert.clone(),
            version,
            technique: technique.into(),
            tactic: Some("execution".into()),
            source: "rule".into(),
            confidence: 0.9,
            band: "high".into(),
            candidate_ids: "[]".into(),
            override_ids: "[]".into(),
            producers: "[]".into(),
            vendor_declared: false,
            evidence_linked: false,
            needs_review: false,
            domain: "enterprise-attack".into(),
            release: "18.1".into(),
            dataset_id: None,
            computed_at: at,
        }],
    }
}

/// Stores `alerts` of an org, each with a current canonical set of one
/// mapping; `superseded` alerts also keep an older set (version 1) that
/// mapped them to T1059, which no longer counts.
async fn store_alerts(store: &Store, org: &OrgId, alerts: &[Mapped], superseded: &[usize]) {
    let scope = OrgScope::new(org.clone());
    let mut tx = store.begin_in(&scope).await.unwrap();
    let mut records = Vec::new();
    let mut sets = Vec::new();
    for (n, m) in alerts.iter().enumerate() {
        let version = if superseded.contains(&n) { 2 } else { 1 };
        records.push(alert(org, m, n, version));
        if version == 2 {
            sets.push(canonical(org, &m.id, 1, "T1059"));
        }
        sets.push(canonical(org, &m.id, version, m.technique));
    }
    tx.insert_alerts(records).await.unwrap();
    tx.insert_canonical(sets).await.unwrap();
    tx.commit().await.unwrap();
}

/// The `n` column of a one-row count.
async fn count(conn: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(conn)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

#[tokio::test]
async fn reads_that_name_their_org_see_it_and_no_other() {
    for db in databases().await {
        let store = db.store().await;
        let label = db.label();
        let a = org(&store, "org-a").await;
        let b = org(&store, "org-b").await;
        let (scope_a, scope_b) = (OrgScope::new(a.id.clone()), OrgScope::new(b.id.clone()));

        // A token is found with its org, whoever's it is; an unknown one is not.
        let (hash_a, hash_b) = ("a1".repeat(32), "b2".repeat(32));
        for (scope, hash) in [(&scope_a, &hash_a), (&scope_b, &hash_b)] {
            let mut tx = store.begin_in(scope).await.unwrap();
            tx.insert_token(&token(scope.org(), hash)).await.unwrap();
            tx.commit().await.unwrap();
        }
        let (found, found_org) = store
            .token_and_org_by_hash(&hash_b)
            .await
            .unwrap()
            .expect("org B's token");
        assert_eq!(found.secret_sha256, hash_b, "{label}");
        assert_eq!(found_org, b, "{label}: the token's org, as stored");
        assert_eq!(
            store.token_and_org_by_hash(&"c3".repeat(32)).await.unwrap(),
            None,
            "{label}"
        );

        // The audit head is the org's own last event, interleaved with the
        // other org's; the active dataset shows once activated.
        let mut last_a = 0;
        for n in 0..3 {
            last_a = store.append_audit(&event(&a.id, n)).await.unwrap().seq;
            store.append_audit(&event(&b.id, n)).await.unwrap();
        }
        store.append_audit(&event(&b.id, 9)).await.unwrap();
        let dataset = ics_dataset(&store).await;
        assert_eq!(
            store
                .org_audit_head_and_active_dataset(&scope_a, Domain::Ics)
                .await
                .unwrap(),
            (last_a, None),
            "{label}"
        );
        let mut tx = store.begin_all().await.unwrap();
        let change = StateChange {
            from: DatasetState::Loaded,
            to: DatasetState::Active,
            actor: "steward".into(),
            at: store::now(),
            reason: None,
            previous_active: None,
        };
        assert!(tx.change_state(&dataset, &change).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .org_audit_head_and_active_dataset(&scope_a, Domain::Ics)
                .await
                .unwrap(),
            (last_a, Some(dataset.clone())),
            "{label}"
        );
        assert_eq!(
            store
                .org_audit_head_and_active_dataset(&scope_a, Domain::Enterprise)
                .await
                .unwrap(),
            (last_a, None),
            "{label}: no active Enterprise dataset"
        );

        // Rollups and exclusion windows: the org's own.
        for (scope, techniques) in [(&scope_a, &["T1001", "T1002"][..]), (&scope_b, &["T1003"])] {
            let mut tx = store.begin_in(scope).await.unwrap();
            let rows = techniques.iter().map(|t| rollup(t)).collect();
            store::rollups::apply_delta(&mut tx, scope, rows)
                .await
                .unwrap();
            for t in techniques.iter() {
                store::rollups::insert_exclusion(&mut tx, &exclusion(scope.org(), t))
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        let mut techniques: Vec<String> = store
            .rollups(&scope_a, None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.technique)
            .collect();
        techniques.sort();
        assert_eq!(techniques, ["T1001", "T1002"], "{label}");
        let connectors: Vec<String> = store
            .exclusions(&scope_a)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.connector)
            .collect();
        assert_eq!(connectors, ["T1001", "T1002"], "{label}");
        store.close().await;
    }
}

#[tokio::test]
async fn drilldown_pages_list_the_cell_newest_alert_first() {
    for db in databases().await {
        let store = db.store().await;
        let label = db.label();
        let a = org(&store, "org-a").await;
        let b = org(&store, "org-b").await;
        let scope_a = OrgScope::new(a.id.clone());

        // Alert ids are time-ordered as generated; the stored times are
        // shuffled against that order so the two cannot be confused.
        let now = store::now();
        let (from, to) = (now - Duration::days(10), now);
        let days_ago = [3, 12, 1, 5, 2, 7, 4, 30, 6];
        let techniques = [
            "T1059", "T1059", "T1059", "T1003", "T1059", "T1059", "T1059", "T1059", "T1059",
        ];
        let mapped: Vec<Mapped> = days_ago
            .iter()
            .zip(techniques)
            .map(|(d, technique)| Mapped {
                id: AlertId::generate(),
                at: now - Duration::days(*d),
                technique,
            })
            .collect();
        // Alert 3 was re-mapped from T1059 to T1003: its old set must not
        // count.
        store_alerts(&store, &a.id, &mapped, &[3]).await;
        let others: Vec<Mapped> = (0..2)
            .map(|d| Mapped {
                id: AlertId::generate(),
                at: now - Duration::days(d + 1),
                technique: "T1059",
            })
            .collect();
        store_alerts(&store, &b.id, &others, &[]).await;

        // Expected: org A's alerts now mapped to T1059 inside the range,
        // by alert id, newest first.
        let mut want: Vec<String> = mapped
            .iter()
            .filter(|m| m.technique == "T1059" && m.at >= from && m.at < to)
            .map(|m| m.id.to_string())
            .collect();
        want.sort();
        want.reverse();
        assert_eq!(want.len(), 6, "the fixture itself");

        for limit in [1, 4, 50] {
            let (mut listed, mut before) = (Vec::new(), None::<String>);
            loop {
                let page = store
                    .cell_mappings(
                        &scope_a,
                        "T1059",
                        Some(from),
                        Some(to),
                        before.as_deref(),
                        limit,
                    )
                    .await
                    .unwrap();
                listed.extend(page.iter().map(|r| r.alert_id.clone()));
                if page.len() < limit as usize {
                    break;
                }
                before = page.last().map(|r| r.alert_id.clone());
            }
            assert_eq!(listed, want, "{label}: pages of {limit}");
        }
        store.close().await;
    }
}

#[tokio::test]
async fn an_org_named_in_a_statement_binds_that_statement_only() {
    for db in databases().await {
        let store = db.store().await;
        let label = db.label();
        let a = org(&store, "org-a").await;
        let b = org(&store, "org-b").await;
        let now = store::now();
        let alerts = |n: i64| -> Vec<Mapped> {
            (0..n)
                .map(|d| Mapped {
                    id: AlertId::generate(),
                    at: now - Duration::days(d),
                    technique: "T1059",
                })
                .collect()
        };
        store_alerts(&store, &a.id, &alerts(2), &[]).await;
        store_alerts(&store, &b.id, &alerts(3), &[]).await;

        // On one shared connection: a statement naming org A counts A's
        // rows; one naming B counts none of A's (row-level security); and
        // the next statement, naming nobody, sees no tenant row at all on
        // PostgreSQL: the choice ended with its statement.
        let mut conn = connection(&store, Reach::Nothing).await;
        let quoted = |org: &Org| format!("'{}'", org.id);
        let of_a = format!(
            "SELECT COUNT(*) AS n FROM alerts WHERE org_id = '{}' AND ",
            a.id
        );
        let named_a = count(
            &mut conn,
            &format!("{of_a}{}", statement_scope(&store, &quoted(&a))),
        )
        .await;
        let named_b = count(
            &mut conn,
            &format!("{of_a}{}", statement_scope(&store, &quoted(&b))),
        )
        .await;
        let after = count(&mut conn, "SELECT COUNT(*) AS n FROM alerts").await;
        let named_all = count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) AS n FROM alerts WHERE {}",
                statement_scope(&store, "'*'")
            ),
        )
        .await;
        let want = match db.backend {
            Backend::Postgres => (2, 0, 0),
            // No row-level security: the statements' own filters decide.
            Backend::Sqlite => (2, 2, 5),
        };
        assert_eq!((named_a, named_b, after), want, "{label}");
        assert_eq!(named_all, 5, "{label}");
        drop(conn);
        store.close().await;
    }
}
