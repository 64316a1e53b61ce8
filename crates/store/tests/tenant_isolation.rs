//! Tenant isolation below the repositories: every tenant table holds rows of
//! two orgs and of the platform, and a raw query without any `org_id`
//! filter, on a connection of one org, must count that org's rows only
//! (PostgreSQL row-level security); a connection that chose no org sees and
//! writes nothing. On SQLite, which has no row-level security, the same
//! data checks the repositories' own org filters.
//!
//! Runs on SQLite always and on PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES`
//! is set; CI connects as a superuser, which the store turns into the
//! policy-bound `nexus_app` role, so these tests see what the service sees.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use sqlx::{Executor, Row};
use store::testing::{Reach, connection, databases};
use store::{
    AdjustmentRecord, AlertId, AlertRecord, Backend, CandidateRecord, CanonicalEntryRecord,
    CanonicalRecord, CanonicalSetRecord, DatasetId, EvidenceRecord, ExclusionRecord, IncidentId,
    IncidentRecord, MigrationId, NewAuditEvent, NewDataset, NotificationEntry, NotificationRecord,
    Org, OrgId, OrgScope, Outcome, OverrideRecord, PackImportRecord, ReferenceMigration,
    ReviewRecord, RollupRecord, RuleRecord, Store, TokenId, TokenRecord,
};
use taxonomy::LoadHints;

/// How many rows [`seed`] puts in a table for an org seeded with `k` of
/// everything.
type RowsFor = fn(i64) -> i64;

/// Every table with an `org_id` column, with its [`RowsFor`].
const TENANT_TABLES: &[(&str, RowsFor)] = &[
    ("alerts", |k| k),
    ("api_tokens", |k| k),
    ("audit_log", |k| k),
    ("canonical_mappings", |k| k),
    ("canonical_sets", |k| k),
    ("incident_adjustments", |k| k),
    ("incident_alerts", |k| k),
    ("incident_evidence", |k| k),
    ("incidents", |k| k),
    ("mapping_candidates", |k| k),
    ("matrix_exclusions", |k| k),
    ("matrix_rollups", |k| k),
    ("notifications", |k| k),
    ("overrides", |k| k),
    ("reference_migrations", |k| k),
    // One item per alert and one per incident.
    ("review_queue", |k| 2 * k),
    ("rule_pack_imports", |k| k),
    // One revision counter per org, bumped once.
    ("rule_revisions", |_| 1),
    // Each rule names two techniques.
    ("rule_techniques", |k| 2 * k),
    ("rules", |k| k),
];

/// Rows without an org that [`seed_platform`] adds: one audit event, one
/// notification, one reference migration.
const PLATFORM_TABLES: &[&str] = &["audit_log", "notifications", "reference_migrations"];

/// Rows per table of org A and org B: different, so that a count names
/// whose rows it saw.
const K_A: i64 = 2;
const K_B: i64 = 3;

fn shared() -> PathBuf {
    std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// A stored dataset, for the reference migrations that must name one.
async fn dataset(store: &Store) -> DatasetId {
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

async fn org(store: &Store, name: &str) -> OrgScope {
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

fn alert(org: &OrgId, n: i64) -> AlertRecord {
    AlertRecord {
        id: AlertId::generate(),
        org_id: org.clone(),
        source_uid: format!("uid-{n}"),
        format: "native".into(),
        time: Some(store::now()),
        received_at: store::now(),
        title: format!("alert {n}"),
        description: None,
        severity: "high".into(),
        severity_weight: 0.8,
        connector: Some("sysmon".into()),
        product: None,
        analytic_uid: None,
        host: Some("host-1".into()),
        user: None,
        content_sha256: format!("{n:064}"),
        raw: "{}".into(),
        normalized: "{}".into(),
        mapping_state: "mapped".into(),
        canonical_version: 1,
        stale: false,
        stale_reason: None,
        locked: false,
    }
}

/// Puts `k` rows of org `scope` into every tenant table through the store's
/// own API, in one transaction of that org.
async fn seed(store: &Store, scope: &OrgScope, dataset: &DatasetId, k: i64) -> Vec<AlertId> {
    let org = scope.org();
    let now = store::now();
    let mut tx = store.begin_in(scope).await.unwrap();

    let alerts: Vec<AlertRecord> = (0..k).map(|n| alert(org, n)).collect();
    let ids: Vec<AlertId> = alerts.iter().map(|a| a.id.clone()).collect();
    tx.insert_alerts(alerts).await.unwrap();

    let mut candidates = Vec::new();
    let mut canonical = Vec::new();
    let mut incidents = Vec::new();
    for (n, alert) in ids.iter().enumerate() {
        candidates.push(CandidateRecord {
            id: format!("candidate-{n}"),
            org_id: org.clone(),
            alert_id: alert.clone(),
            technique: "T1059".into(),
            tactic: Some("execution".into()),
            source: "rule".into(),
            confidence: 0.9,
            band: "high".into(),
            evidence: "[]".into(),
            explanation: "test".into(),
            rule_id: Some("rule-0".into()),
            rule_version: Some(1),
            model_version: None,
            vendor_declared: false,
            domain: "enterprise-attack".into(),
            release: "18.1".into(),
            dataset_id: None,
            created_at: now,
        });
        canonical.push(CanonicalRecord {
            set: CanonicalSetRecord {
                org_id: org.clone(),
                alert_id: alert.clone(),
                version: 1,
                decided_by: Some("rule".into()),
                flags: "[]".into(),
                pending: "[]".into(),
                entries: 1,
                cause: "ingest".into(),
                domain: "enterprise-attack".into(),
                release: "18.1".into(),
                dataset_id: None,
                computed_at: now,
            },
            entries: vec![CanonicalEntryRecord {
                org_id: org.clone(),
                alert_id: alert.clone(),
                version: 1,
                technique: "T1059".into(),
                tactic: Some("execution".into()),
                source: "rule".into(),
                confidence: 0.9,
                band: "high".into(),
                candidate_ids: format!("[\"candidate-{n}\"]"),
                override_ids: "[]".into(),
                producers: "[]".into(),
                vendor_declared: false,
                evidence_linked: true,
                needs_review: false,
                domain: "enterprise-attack".into(),
                release: "18.1".into(),
                dataset_id: None,
                computed_at: now,
            }],
        });
        tx.insert_override(&OverrideRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            alert_id: alert.clone(),
            version: 1,
            action: "add".into(),
            technique: "T1105".into(),
            tactic: None,
            replaces_technique: None,
            replaces_tactic: None,
            reason: "analyst_correction".into(),
            notes: None,
            confidence: 1.0,
            actor: "analyst".into(),
            status: "approved".into(),
            approved_by: None,
            approved_at: None,
            supersedes: None,
            created_at: now,
        })
        .await
        .unwrap();
        tx.insert_notification(&NotificationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            recipient: "lead".into(),
            kind: "arbitration_lock".into(),
            alert_id: Some(alert.clone()),
            message: "locked".into(),
            created_at: now,
        })
        .await
        .unwrap();
        incidents.push(IncidentRecord {
            id: IncidentId::generate(),
            org_id: org.clone(),
            title: format!("incident {n}"),
            status: "open".into(),
            severity: "high".into(),
            lead: None,
            created_by: "analyst".into(),
            created_at: now,
            updated_at: now,
            merged_into: None,
            split_from: None,
            stale: false,
            stale_reasons: "[]".into(),
        });
    }
    tx.insert_candidates(candidates).await.unwrap();
    tx.insert_canonical(canonical).await.unwrap();
    let reviews = ids
        .iter()
        .map(|alert| ReviewRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            alert_id: Some(alert.clone()),
            incident_id: None,
            reason: "low_confidence".into(),
            detail: "{}".into(),
            state: "open".into(),
            opened_at: now,
            resolved_at: None,
            resolved_by: None,
            resolution: None,
            interactions: 0,
        })
        .collect();
    tx.open_reviews(reviews).await.unwrap();

    for (incident, alert) in incidents.iter().zip(&ids) {
        tx.insert_incident(incident).await.unwrap();
        tx.attach_alerts(
            scope,
            &incident.id,
            std::slice::from_ref(alert),
            "analyst",
            &now,
        )
        .await
        .unwrap();
        tx.insert_evidence(&EvidenceRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            incident_id: incident.id.clone(),
            kind: "ticket".into(),
            reference: "T-1".into(),
            added_by: "analyst".into(),
            added_at: now,
        })
        .await
        .unwrap();
        tx.insert_adjustment(&AdjustmentRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            incident_id: incident.id.clone(),
            version: 1,
            action: "add".into(),
            technique: "T1105".into(),
            tactic: None,
            replaces_technique: None,
            replaces_tactic: None,
            reason: "lead_review".into(),
            rationale: "seen".into(),
            evidence: "[]".into(),
            confidence: 0.9,
            actor: "lead".into(),
            status: "approved".into(),
            approved_by: Some("lead".into()),
            approved_at: Some(now),
            supersedes: None,
            created_at: now,
        })
        .await
        .unwrap();
    }
    let stale = incidents
        .iter()
        .map(|incident| ReviewRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            alert_id: None,
            incident_id: Some(incident.id.clone()),
            reason: "stale".into(),
            detail: r#"[{"reason":"reopened"}]"#.into(),
            state: "open".into(),
            opened_at: now,
            resolved_at: None,
            resolved_by: None,
            resolution: None,
            interactions: 0,
        })
        .collect();
    assert_eq!(tx.open_reviews(stale).await.unwrap(), k as u64);

    let rules = (0..k)
        .map(|n| RuleRecord {
            org_id: org.clone(),
            id: format!("rule-{n}"),
            version: 1,
            status: "active".into(),
            title: format!("rule {n}"),
            definition: "{}".into(),
            author: "engineer".into(),
            rationale: "test".into(),
            evidence_pattern: None,
            effective_date: None,
            pack_id: None,
            created_by: "engineer".into(),
            created_at: now,
            techniques: vec![
                ("T1059".into(), Some("execution".into())),
                ("T1105".into(), None),
            ],
        })
        .collect();
    tx.insert_rules(rules).await.unwrap();
    tx.bump_rule_revision(scope).await.unwrap();

    let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let mut deltas = Vec::new();
    for n in 0..k {
        tx.insert_pack_import(&PackImportRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org.clone(),
            kind: "sigma".into(),
            source: "pack.tar.gz".into(),
            dataset_id: None,
            report: "{}".into(),
            imported_by: "engineer".into(),
            imported_at: now,
        })
        .await
        .unwrap();
        store::rollups::insert_exclusion(
            &mut tx,
            &ExclusionRecord {
                id: uuid::Uuid::now_v7().to_string(),
                org_id: org.clone(),
                connector: "sysmon".into(),
                from: day,
                to: day.succ_opt().unwrap(),
                reason: "noisy".into(),
                created_by: "admin".into(),
                created_at: now,
            },
        )
        .await
        .unwrap();
        deltas.push(RollupRecord {
            day,
            tactic: "execution".into(),
            technique: format!("T{:04}", 1000 + n),
            source: "rule".into(),
            severity: "high".into(),
            connector: "sysmon".into(),
            platform: String::new(),
            band: "high".into(),
            count: 1,
            alerts: 1,
            confidence_sum: 0.9,
        });
        tx.insert_token(&TokenRecord {
            id: TokenId::generate(),
            org_id: org.clone(),
            role: "viewer".into(),
            label: format!("token {n}"),
            secret_sha256: format!("{:064x}", uuid::Uuid::new_v4().as_u128()),
            created_at: now,
            revoked_at: None,
        })
        .await
        .unwrap();
        tx.insert_reference_migration(&ReferenceMigration {
            id: MigrationId::generate(),
            org_id: Some(org.clone()),
            dataset_id: dataset.clone(),
            ref_kind: "override".into(),
            ref_id: format!("{org}-{n}"),
            old_technique: "T1073".into(),
            new_technique: "T1574.002".into(),
            applied_by: "steward".into(),
            applied_at: now,
        })
        .await
        .unwrap();
        tx.append_audit(&NewAuditEvent {
            org_id: Some(org.clone()),
            actor: "analyst".into(),
            action: "test".into(),
            target_kind: "org".into(),
            target_id: org.to_string(),
            outcome: Outcome::Ok,
            details: serde_json::json!({"n": n}),
        })
        .await
        .unwrap();
    }
    store::rollups::apply_delta(&mut tx, scope, deltas)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ids
}

/// One row without an org in each table that allows it.
async fn seed_platform(store: &Store, dataset: &DatasetId) {
    let mut tx = store.begin_all().await.unwrap();
    let entry = NotificationEntry {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: None,
        recipient: "platform-admin".into(),
        kind: "audit_chain_broken".into(),
        subject: Some("event 1".into()),
        alert_id: None,
        message: "broken".into(),
        created_at: store::now(),
        read_at: None,
        read_by: None,
    };
    assert!(tx.insert_notification_once(&entry, None).await.unwrap());
    tx.insert_reference_migration(&ReferenceMigration {
        id: MigrationId::generate(),
        org_id: None,
        dataset_id: dataset.clone(),
        ref_kind: "mapping".into(),
        ref_id: "platform".into(),
        old_technique: "T1073".into(),
        new_technique: "T1574.002".into(),
        applied_by: "steward".into(),
        applied_at: store::now(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    store
        .append_audit(&NewAuditEvent {
            org_id: None,
            actor: "operator".into(),
            action: "dataset_load".into(),
            target_kind: "dataset".into(),
            target_id: dataset.to_string(),
            outcome: Outcome::Ok,
            details: serde_json::json!({}),
        })
        .await
        .unwrap();
}

/// Rows of `table` that a connection of `reach` sees, asked without any
/// `org_id` condition: what a query that forgot its filter would get.
async fn count(store: &Store, reach: Reach<'_>, table: &str) -> i64 {
    let mut conn = connection(store, reach).await;
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    sqlx::query(&sql)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

/// The tables of the schema that have an `org_id` column, by name.
async fn tables_with_org_id(store: &Store, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT m.name AS name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND c.name = 'org_id' ORDER BY m.name"
        }
        Backend::Postgres => {
            "SELECT c.table_name::text AS name FROM information_schema.columns c \
             JOIN information_schema.tables t ON t.table_schema = c.table_schema \
             AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' \
             WHERE c.table_schema = current_schema() AND c.column_name = 'org_id' \
             ORDER BY 1"
        }
    };
    let mut conn = connection(store, Reach::Nothing).await;
    sqlx::query(sql)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .collect()
}

fn expected(table: &str, k: i64) -> i64 {
    TENANT_TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, rows)| rows(k))
        .unwrap_or_else(|| panic!("{table} is not a known tenant table"))
}

#[tokio::test]
async fn a_query_without_an_org_filter_sees_only_its_org() {
    for db in databases().await {
        let store = db.store().await;
        let label = db.label();
        let dataset = dataset(&store).await;
        let a = org(&store, "org-a").await;
        let b = org(&store, "org-b").await;
        seed(&store, &a, &dataset, K_A).await;
        let b_alerts = seed(&store, &b, &dataset, K_B).await;
        seed_platform(&store, &dataset).await;

        // The table list here is the schema's: a new tenant table must be
        // seeded above (and, on PostgreSQL, get a policy).
        let mut listed: Vec<String> = TENANT_TABLES.iter().map(|(t, _)| t.to_string()).collect();
        listed.sort();
        assert_eq!(
            tables_with_org_id(&store, db.backend).await,
            listed,
            "{label}"
        );

        for &(table, _) in TENANT_TABLES {
            let platform = i64::from(PLATFORM_TABLES.contains(&table));
            let everything = expected(table, K_A) + expected(table, K_B) + platform;
            assert_eq!(
                count(&store, Reach::All, table).await,
                everything,
                "{label}: every row of {table} across orgs"
            );
            let (of_b, unscoped) = match db.backend {
                Backend::Postgres => (expected(table, K_B), 0),
                // No row-level security: the raw query sees every row, and
                // the repositories' filters below are the boundary.
                Backend::Sqlite => (everything, everything),
            };
            assert_eq!(
                count(&store, Reach::Org(&b), table).await,
                of_b,
                "{label}: rows of {table} seen as org B without a filter"
            );
            assert_eq!(
                count(&store, Reach::Nothing, table).await,
                unscoped,
                "{label}: rows of {table} seen without an org"
            );
        }

        // The repositories' own filters, on both backends.
        let page = store.alerts_page(&b, None, 100).await.unwrap();
        let mut ids: Vec<AlertId> = page.iter().map(|a| a.id.clone()).collect();
        ids.sort();
        let mut want = b_alerts.clone();
        want.sort();
        assert_eq!(ids, want, "{label}: org B's alerts");
        let tokens = store.list_tokens(&b).await.unwrap();
        assert_eq!(tokens.len(), K_B as usize, "{label}");
        assert!(tokens.iter().all(|t| &t.org_id == b.org()), "{label}");
        let rules = store.rules(&b, None).await.unwrap();
        assert_eq!(rules.len(), K_B as usize, "{label}");
        assert!(rules.iter().all(|r| &r.org_id == b.org()), "{label}");
        let exclusions = store.exclusions(&b).await.unwrap();
        assert_eq!(exclusions.len(), K_B as usize, "{label}");
        let rollups = store.rollups(&b, None, None).await.unwrap();
        assert_eq!(rollups.len(), K_B as usize, "{label}");
        let reviews = store.reviews(&b, Some("open"), 100).await.unwrap();
        assert_eq!(reviews.len(), 2 * K_B as usize, "{label}");
        assert!(reviews.iter().all(|r| &r.org_id == b.org()), "{label}");
        // Org B's incident items name org B's incidents, and only those.
        let mut queued: Vec<String> = reviews
            .iter()
            .filter_map(|r| r.incident_id.as_ref().map(|i| i.to_string()))
            .collect();
        queued.sort();
        let mut b_incidents: Vec<String> = store
            .incidents_page(&b, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id.to_string())
            .collect();
        b_incidents.sort();
        assert_eq!(queued, b_incidents, "{label}");
        let audit = store.list_audit(Some(&b), None, 100).await.unwrap();
        assert_eq!(audit.len(), K_B as usize, "{label}");
        assert!(
            audit.iter().all(|e| e.org_id.as_ref() == Some(b.org())),
            "{label}"
        );
        let incidents = store.incidents_page(&b, None, 100).await.unwrap();
        assert_eq!(incidents.len(), K_B as usize, "{label}");
        // Org A's alert asked for through org B's scope is not there.
        let a_alert = store.alerts_page(&a, None, 1).await.unwrap();
        let a_alert = &a_alert[0].id;
        assert_eq!(
            store.alert(&b, a_alert.as_str()).await.unwrap(),
            None,
            "{label}"
        );
        assert!(
            store.candidates(&b, a_alert).await.unwrap().is_empty(),
            "{label}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_connection_writes_only_rows_of_its_org() {
    for db in databases().await {
        if db.backend != Backend::Postgres {
            // SQLite has no row-level security: only the repositories'
            // filters, checked above, keep orgs apart there.
            continue;
        }
        let store = db.store().await;
        let dataset = dataset(&store).await;
        let a = org(&store, "org-a").await;
        let b = org(&store, "org-b").await;
        let a_alerts = seed(&store, &a, &dataset, K_A).await;
        seed(&store, &b, &dataset, K_B).await;

        // Inserting a row: refused without an org, and for another org.
        let insert = |org: &OrgId| {
            format!(
                "INSERT INTO matrix_exclusions (id, org_id, connector, from_day, to_day, reason, \
                 created_by, created_at) VALUES ('{}', '{org}', 'sysmon', '2025-01-01', \
                 '2025-01-02', 'noisy', 'admin', '2025-01-01T00:00:00.000Z')",
                uuid::Uuid::now_v7()
            )
        };
        let mut none = connection(&store, Reach::Nothing).await;
        let refused = none.execute(insert(b.org()).as_str()).await;
        assert!(
            refused.is_err(),
            "a connection without an org inserted a row"
        );
        let mut as_b = connection(&store, Reach::Org(&b)).await;
        let refused = as_b.execute(insert(a.org()).as_str()).await;
        let message = refused
            .expect_err("org B inserted a row of org A")
            .to_string();
        assert!(message.contains("row-level security"), "{message}");
        as_b.execute(insert(b.org()).as_str()).await.unwrap();

        // Updates and deletes without a filter reach the connection's org only.
        let updated = as_b
            .execute("UPDATE alerts SET title = 'renamed'")
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), K_B as u64);
        let deleted = as_b.execute("DELETE FROM matrix_rollups").await.unwrap();
        assert_eq!(deleted.rows_affected(), K_B as u64);
        drop((none, as_b));
        let a_alert = store
            .alert(&a, a_alerts[0].as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a_alert.title, "alert 0");
        assert_eq!(
            store.rollups(&a, None, None).await.unwrap().len(),
            K_A as usize
        );

        // A transaction of org B that writes a record of org A fails whole.
        let mut tx = store.begin_in(&b).await.unwrap();
        let err = tx
            .insert_alerts(vec![alert(a.org(), 99)])
            .await
            .expect_err("org B's transaction stored an alert of org A");
        assert!(err.to_string().contains("row-level security"), "{err}");
        drop(tx);

        // The org a connection was handed out for does not follow it back
        // into the pool: the next user without an org sees nothing.
        for _ in 0..8 {
            assert_eq!(count(&store, Reach::Org(&b), "alerts").await, K_B);
            assert_eq!(count(&store, Reach::Nothing, "alerts").await, 0);
        }
        store.close().await;
    }
}

#[tokio::test]
async fn every_tenant_table_has_a_forced_policy_on_postgres() {
    for db in databases().await {
        if db.backend != Backend::Postgres {
            continue;
        }
        let store = db.store().await;
        let tables = tables_with_org_id(&store, db.backend).await;
        assert!(!tables.is_empty());
        let mut conn = connection(&store, Reach::Nothing).await;
        let rows = sqlx::query(
            "SELECT c.relname::text AS name, \
             CASE WHEN c.relrowsecurity THEN 1 ELSE 0 END AS enabled, \
             CASE WHEN c.relforcerowsecurity THEN 1 ELSE 0 END AS forced, \
             (SELECT COUNT(*) FROM pg_policies p WHERE p.schemaname = n.nspname \
              AND p.tablename = c.relname) AS policies \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let found: BTreeMap<String, (i32, i32, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r.get("name"),
                    (r.get("enabled"), r.get("forced"), r.get("policies")),
                )
            })
            .collect();
        for table in &tables {
            assert_eq!(
                found.get(table),
                Some(&(1, 1, 1)),
                "{table}: row-level security enabled, forced, one policy"
            );
        }

        // Pooled connections act as the policy-bound role, not as the
        // superuser CI connects as.
        let role = sqlx::query("SELECT current_user::text AS role")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get::<String, _>("role");
        assert_eq!(role, "nexus_app");
        drop(conn);
        store.close().await;
    }
}
