//! The incident profile's one-statement read and merges that move no
//! attachment, on SQLite always and on PostgreSQL when
//! `NEXUS_ATTACK_TEST_POSTGRES` is set.
//!
//! Expected rows are written out here from the seeded alerts: every value
//! comes back exactly (confidences to the last bit, source uids with quotes,
//! non-ASCII text and the column separator itself), only the alert's
//! current canonical version counts, and after a merge the survivor holds
//! its own alerts and the absorbed incident's, each once.

use std::time::Duration;

use store::testing::databases;
use store::{
    AlertId, AlertRecord, Backend, CanonicalEntryRecord, CanonicalRecord, CanonicalSetRecord,
    IncidentId, IncidentRecord, MappingUpdate, Org, OrgId, OrgScope, ProfileRows, Store,
    StoreError, Tx,
};

/// One canonical entry as seeded and as read back: technique, tactic,
/// source, confidence, candidate ids, override ids, producers, release.
type Entry = (
    &'static str,
    Option<&'static str>,
    &'static str,
    f64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// One alert: its source uid and the entries of its current canonical set
/// (its version 2; version 1 holds one entry that must never show).
struct Seeded {
    id: AlertId,
    uid: &'static str,
    entries: Vec<Entry>,
}

/// A row as [`ProfileRows`] answers it, owned.
type Row = (
    String,
    String,
    Option<(
        String,
        Option<String>,
        String,
        f64,
        String,
        String,
        String,
        String,
    )>,
);

fn seeded() -> Vec<Seeded> {
    let specs: Vec<(&'static str, Vec<Entry>)> = vec![
        (
            "uid-0",
            vec![
                // 0.1 + 0.2 and 1/3: a 15-digit text would not read back the same.
                (
                    "T1059",
                    Some("TA0002"),
                    "rule",
                    0.1 + 0.2,
                    r#"["c0a","c0b"]"#,
                    "[]",
                    r#"["rule:r1@1"]"#,
                    "18.1",
                ),
                (
                    "T1003",
                    None,
                    "ai",
                    1.0 / 3.0,
                    r#"["c0c"]"#,
                    r#"["ov-1"]"#,
                    r#"["ai:m1"]"#,
                    "17.0",
                ),
            ],
        ),
        (
            "uid 1, \"quoted\", ünïcode",
            vec![(
                "T1059",
                Some("TA0002"),
                "rule",
                0.7,
                r#"["c1"]"#,
                "[]",
                r#"["rule:r1@1"]"#,
                "18.1",
            )],
        ),
        // Unmapped: a row without an entry. Its uid holds the separators
        // of the attachments' mapping copies, which it must come back with.
        ("uid\u{1c}2\u{1f}\u{1d}\u{1c}", vec![]),
        // The column separator inside a value: read one row at a time.
        (
            "uid\u{1e}3",
            vec![(
                "T1566.001",
                Some("TA0001"),
                "manual",
                1.0,
                r#"["c3"]"#,
                r#"["ov-3"]"#,
                r#"["override:ov-3"]"#,
                "18.1",
            )],
        ),
    ];
    specs
        .into_iter()
        .map(|(uid, entries)| Seeded {
            id: AlertId::generate(),
            uid,
            entries,
        })
        .collect()
}

fn alert_record(org: &OrgId, s: &Seeded) -> AlertRecord {
    AlertRecord {
        id: s.id.clone(),
        org_id: org.clone(),
        source_uid: s.uid.to_string(),
        format: "native".into(),
        time: Some(store::now()),
        received_at: store::now(),
        title: "alert".into(),
        description: None,
        severity: "high".into(),
        severity_weight: 0.8,
        connector: None,
        product: None,
        analytic_uid: None,
        host: None,
        user: None,
        content_sha256: format!("{:0>64}", s.uid.len()),
        raw: "{}".into(),
        normalized: "{}".into(),
        mapping_state: if s.entries.is_empty() {
            "unmapped"
        } else {
            "mapped"
        }
        .into(),
        canonical_version: 2,
        stale: false,
        stale_reason: None,
        locked: false,
    }
}

fn canonical(org: &OrgId, alert: &AlertId, version: i64, entries: &[Entry]) -> CanonicalRecord {
    let now = store::now();
    CanonicalRecord {
        set: CanonicalSetRecord {
            org_id: org.clone(),
            alert_id: alert.clone(),
            version,
            decided_by: None,
            flags: "[]".into(),
            pending: "[]".into(),
            entries: i64::try_from(entries.len()).unwrap(),
            cause: "ingest".into(),
            domain: "enterprise-attack".into(),
            release: "18.1".into(),
            dataset_id: None,
            computed_at: now,
        },
        entries: entries
            .iter()
            .map(|e| CanonicalEntryRecord {
                org_id: org.clone(),
                alert_id: alert.clone(),
                version,
                technique: e.0.into(),
                tactic: e.1.map(str::to_string),
                source: e.2.into(),
                confidence: e.3,
                band: "high".into(),
                candidate_ids: e.4.into(),
                override_ids: e.5.into(),
                producers: e.6.into(),
                vendor_declared: false,
                evidence_linked: false,
                needs_review: false,
                domain: "enterprise-attack".into(),
                release: e.7.into(),
                dataset_id: None,
                computed_at: now,
            })
            .collect(),
    }
}

fn incident(org: &OrgId, title: &str) -> IncidentRecord {
    IncidentRecord {
        id: IncidentId::generate(),
        org_id: org.clone(),
        title: title.into(),
        status: "open".into(),
        severity: "high".into(),
        lead: None,
        created_by: "ann".into(),
        created_at: store::now(),
        updated_at: store::now(),
        merged_into: None,
        split_from: None,
        stale: false,
        stale_reasons: "[]".into(),
    }
}

/// The rows expected for `alerts`: ordered by alert id, then technique and
/// tactic, each alert once.
fn expected(alerts: &[&Seeded]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for a in alerts {
        if a.entries.is_empty() {
            rows.push((a.id.to_string(), a.uid.to_string(), None));
        }
        for e in &a.entries {
            rows.push((
                a.id.to_string(),
                a.uid.to_string(),
                Some((
                    e.0.into(),
                    e.1.map(str::to_string),
                    e.2.into(),
                    e.3,
                    e.4.into(),
                    e.5.into(),
                    e.6.into(),
                    e.7.into(),
                )),
            ));
        }
    }
    rows.sort_by(|a, b| {
        let key = |r: &Row| {
            let (t, c) =
                r.2.as_ref()
                    .map_or((String::new(), None), |e| (e.0.clone(), e.1.clone()));
            (r.0.clone(), t, c)
        };
        key(a).cmp(&key(b))
    });
    rows
}

fn owned(rows: &ProfileRows) -> Vec<Row> {
    rows.iter()
        .map(|r| {
            (
                r.alert_id.to_string(),
                r.source_uid.to_string(),
                r.entry.map(|e| {
                    (
                        e.technique.to_string(),
                        e.tactic.map(str::to_string),
                        e.source.to_string(),
                        e.confidence,
                        e.candidate_ids.to_string(),
                        e.override_ids.to_string(),
                        e.producers.to_string(),
                        e.release.to_string(),
                    )
                }),
            )
        })
        .collect()
}

/// A transaction of `scope` that has stored `org`, the `alerts` and their
/// canonical sets (version 2), left open for what a test adds.
async fn seeded_in(store: &Store, org: &Org, scope: &OrgScope, alerts: &[Seeded]) -> Tx {
    let mut tx = store.begin_in(scope).await.unwrap();
    tx.insert_org(org).await.unwrap();
    tx.insert_alerts(alerts.iter().map(|s| alert_record(&org.id, s)).collect())
        .await
        .unwrap();
    let sets = alerts
        .iter()
        .map(|s| canonical(&org.id, &s.id, 2, &s.entries))
        .collect();
    tx.insert_canonical(sets).await.unwrap();
    tx
}

async fn rows_of(store: &Store, scope: &OrgScope, incident: &IncidentId) -> Vec<Row> {
    owned(&store.incident_profile_rows(scope, incident).await.unwrap())
}

async fn alert_count(store: &Store, scope: &OrgScope, incident: &IncidentId) -> i64 {
    store
        .incidents_page(scope, None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == *incident)
        .unwrap()
        .alert_count
}

/// A new org (not yet stored) and its scope.
fn new_org() -> (Org, OrgScope) {
    let org = Org {
        id: OrgId::generate(),
        name: "acme".into(),
        created_at: store::now(),
    };
    let scope = OrgScope::new(org.id.clone());
    (org, scope)
}

#[tokio::test]
async fn profile_rows_are_exact_and_merged_attachments_serve_the_survivor() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let (org, scope) = new_org();
        let alerts = seeded();
        let [a0, a1, a2, a3] = [&alerts[0], &alerts[1], &alerts[2], &alerts[3]];
        let mut a = incident(&org.id, "a");
        let mut b = incident(&org.id, "b");
        let z = incident(&org.id, "z");

        let mut tx = store.begin_in(&scope).await.unwrap();
        tx.insert_org(&org).await.unwrap();
        tx.insert_alerts(alerts.iter().map(|s| alert_record(&org.id, s)).collect())
            .await
            .unwrap();
        let old = [(
            "T1566",
            None,
            "rule",
            0.5,
            r#"["old"]"#,
            "[]",
            r#"["rule:r0@1"]"#,
            "18.1",
        )];
        let mut sets = Vec::new();
        for s in &alerts {
            sets.push(canonical(&org.id, &s.id, 1, &old));
            sets.push(canonical(&org.id, &s.id, 2, &s.entries));
        }
        tx.insert_canonical(sets).await.unwrap();
        let now = store::now();
        for (i, held) in [(&a, vec![a0, a1]), (&b, vec![a1, a2]), (&z, vec![a3])] {
            tx.insert_incident(i).await.unwrap();
            let ids: Vec<AlertId> = held.iter().map(|s| s.id.clone()).collect();
            tx.attach_alerts(&scope, &i.id, &ids, "ann", &now)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();

        assert_eq!(
            rows_of(&store, &scope, &a.id).await,
            expected(&[a0, a1]),
            "{label}"
        );
        assert_eq!(
            rows_of(&store, &scope, &z.id).await,
            expected(&[a3]),
            "{label}: a separator in a value"
        );

        // B into A: A gains a2 and shares a1, which it holds once.
        let mut tx = store.begin_in(&scope).await.unwrap();
        let counts = tx.merge_incident(&scope, &a.id, &b.id).await.unwrap();
        b.merged_into = Some(a.id.clone());
        tx.update_incident(&scope, &b).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(counts, (1, 1), "{label}: (gained, shared)");
        assert_eq!(
            rows_of(&store, &scope, &a.id).await,
            expected(&[a0, a1, a2]),
            "{label}"
        );
        assert_eq!(rows_of(&store, &scope, &b.id).await, vec![], "{label}");
        let mut held: Vec<AlertId> = [a0, a1, a2].iter().map(|s| s.id.clone()).collect();
        held.sort();
        assert_eq!(store.incident_alert_ids(&scope, &a.id).await.unwrap(), held);
        let listed = store.incident_alerts(&scope, &a.id).await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|l| l.alert_id.clone())
                .collect::<Vec<_>>(),
            held,
            "{label}"
        );
        assert_eq!(alert_count(&store, &scope, &a.id).await, 3, "{label}");
        assert_eq!(alert_count(&store, &scope, &b.id).await, 0, "{label}");
        let holding = store
            .incidents_holding(&scope, std::slice::from_ref(&a1.id))
            .await
            .unwrap();
        assert_eq!(
            holding
                .iter()
                .map(|h| h.incident_id.clone())
                .collect::<Vec<_>>(),
            vec![a.id.clone()],
            "{label}: the survivor holds the shared alert, once"
        );

        // A into Z: Z takes A's alerts and, through A, B's.
        let mut tx = store.begin_in(&scope).await.unwrap();
        let counts = tx.merge_incident(&scope, &z.id, &a.id).await.unwrap();
        a.merged_into = Some(z.id.clone());
        tx.update_incident(&scope, &a).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(counts, (3, 0), "{label}");
        assert_eq!(
            rows_of(&store, &scope, &z.id).await,
            expected(&[a0, a1, a2, a3]),
            "{label}"
        );
        assert_eq!(rows_of(&store, &scope, &a.id).await, vec![], "{label}");
        let mut merged = store.incidents_merged_into(&scope, &z.id).await.unwrap();
        merged.sort();
        let mut both = vec![a.id.clone(), b.id.clone()];
        both.sort();
        assert_eq!(merged, both, "{label}");
        let holding = store
            .incidents_holding(&scope, std::slice::from_ref(&a2.id))
            .await
            .unwrap();
        assert_eq!(holding.len(), 1, "{label}");
        assert_eq!(holding[0].incident_id, z.id, "{label}");
        assert_eq!(holding[0].title, "z", "{label}");

        // The survivor of B is the end of its chain, Z, not A, which B was
        // merged into; an unmerged incident has none; inside a transaction
        // too.
        for (merged, want) in [(&b, Some(&z.id)), (&a, Some(&z.id)), (&z, None)] {
            let found = store.incident_survivor(&scope, &merged.id).await.unwrap();
            assert_eq!(
                found.as_ref(),
                want,
                "{label}: survivor of {}",
                merged.title
            );
        }
        let mut tx = store.begin_in(&scope).await.unwrap();
        let found = tx.incident_survivor(&scope, &b.id).await.unwrap();
        assert_eq!(found.as_ref(), Some(&z.id), "{label}");
        drop(tx);

        // Detaching a1 from Z ends its attachments to A and to B.
        let mut tx = store.begin_in(&scope).await.unwrap();
        let ended = tx
            .detach_alerts(&scope, &z.id, std::slice::from_ref(&a1.id), "ann", &now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ended, 2, "{label}");
        assert_eq!(
            rows_of(&store, &scope, &z.id).await,
            expected(&[a0, a2, a3]),
            "{label}"
        );
        assert_eq!(alert_count(&store, &scope, &z.id).await, 3, "{label}");
    }
}

/// Points `alert`, now at version `from`, at a new canonical version
/// holding `entries`.
async fn remap(
    store: &Store,
    scope: &OrgScope,
    alert: &Seeded,
    (from, version): (i64, i64),
    entries: &[Entry],
) {
    let mut tx = store.begin_in(scope).await.unwrap();
    remap_in(&mut tx, scope, alert, (from, version), entries).await;
    tx.commit().await.unwrap();
}

async fn remap_in(
    tx: &mut store::Tx,
    scope: &OrgScope,
    alert: &Seeded,
    (from, version): (i64, i64),
    entries: &[Entry],
) {
    tx.insert_canonical(vec![canonical(scope.org(), &alert.id, version, entries)])
        .await
        .unwrap();
    let state = if entries.is_empty() {
        "unmapped"
    } else {
        "mapped"
    };
    tx.set_current_mapping(
        scope,
        &[MappingUpdate {
            alert_id: alert.id.clone(),
            based_on: from,
            canonical_version: version,
            mapping_state: state.into(),
            content_sha256: None,
        }],
    )
    .await
    .unwrap();
}

/// `alert` as it reads once its current entries are `entries`.
fn with_entries(alert: &Seeded, entries: &[Entry]) -> Seeded {
    Seeded {
        id: alert.id.clone(),
        uid: alert.uid,
        entries: entries.to_vec(),
    }
}

/// The attachments keep a copy of each alert's current canonical entries
/// (migration 0012); a new current version of an alert must reach the
/// profile of every incident holding it, and an alert attached while its
/// mapping changes in another transaction must not keep the old copy.
#[tokio::test]
async fn a_new_canonical_version_reaches_every_incident_holding_the_alert() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let (org, scope) = new_org();
        let alerts = seeded();
        let [a0, a1] = [&alerts[0], &alerts[1]];
        let a = incident(&org.id, "a");
        let b = incident(&org.id, "b");

        let mut tx = seeded_in(&store, &org, &scope, &alerts).await;
        let now = store::now();
        for (i, held) in [(&a, vec![a0, a1]), (&b, vec![a1])] {
            tx.insert_incident(i).await.unwrap();
            let ids: Vec<AlertId> = held.iter().map(|s| s.id.clone()).collect();
            tx.attach_alerts(&scope, &i.id, &ids, "ann", &now)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();

        let third: Vec<Entry> = vec![(
            "T1059.001",
            Some("execution"),
            "manual",
            1.0 / 3.0,
            r#"["c-3"]"#,
            r#"["o-3"]"#,
            r#"["lead:lee"]"#,
            "18.1",
        )];
        remap(&store, &scope, a1, (2, 3), &third).await;
        let a1_third = with_entries(a1, &third);
        assert_eq!(
            rows_of(&store, &scope, &a.id).await,
            expected(&[a0, &a1_third]),
            "{label}"
        );
        assert_eq!(
            rows_of(&store, &scope, &b.id).await,
            expected(&[&a1_third]),
            "{label}"
        );
        // A version without entries: the alert stays, unmapped.
        remap(&store, &scope, a1, (3, 4), &[]).await;
        let a1_none = with_entries(a1, &[]);
        assert_eq!(
            rows_of(&store, &scope, &b.id).await,
            expected(&[&a1_none]),
            "{label}"
        );

        // A change computed from version 3, written after version 4 was:
        // refused as a conflict, and version 4 stays current.
        let mut late = store.begin_in(&scope).await.unwrap();
        let refused = late
            .set_current_mapping(
                &scope,
                &[MappingUpdate {
                    alert_id: a1.id.clone(),
                    based_on: 3,
                    canonical_version: 3,
                    mapping_state: "mapped".into(),
                    content_sha256: None,
                }],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(refused, StoreError::Conflict { .. }),
            "{label}: {refused}"
        );
        drop(late);
        assert_eq!(
            rows_of(&store, &scope, &b.id).await,
            expected(&[&a1_none]),
            "{label}"
        );

        // PostgreSQL runs the two at once: the attachment of a0 to C made
        // while a0's new version is not yet committed must end up with that
        // version, not the one its transaction could see when it began.
        if db.backend == Backend::Postgres {
            let fifth: Vec<Entry> = vec![(
                "T1021",
                None,
                "rule",
                0.7,
                r#"["c-5"]"#,
                "[]",
                r#"["rule:r5@1"]"#,
                "18.1",
            )];
            let c = incident(&org.id, "c");
            let mut changing = store.begin_in(&scope).await.unwrap();
            remap_in(&mut changing, &scope, a0, (2, 5), &fifth).await;
            let attaching = {
                let (store, scope, c, a0) =
                    (store.clone(), scope.clone(), c.clone(), a0.id.clone());
                tokio::spawn(async move {
                    let mut tx = store.begin_in(&scope).await.unwrap();
                    tx.insert_incident(&c).await.unwrap();
                    tx.attach_alerts(&scope, &c.id, &[a0], "ann", &store::now())
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            changing.commit().await.unwrap();
            attaching.await.unwrap();
            assert_eq!(
                rows_of(&store, &scope, &c.id).await,
                expected(&[&with_entries(a0, &fifth)]),
                "{label}: attached while the mapping changed"
            );
        }
    }
}

/// The live attachments of `alert` to `incident`, counted row by row.
async fn live_rows(store: &Store, scope: &OrgScope, incident: &IncidentId, alert: &AlertId) -> i64 {
    let mut conn = store::testing::connection(store, store::testing::Reach::Org(scope)).await;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM incident_alerts WHERE org_id = $1 AND incident_id = $2 \
         AND alert_id = $3 AND detached_at IS NULL",
    )
    .bind(scope.org().as_str())
    .bind(incident.as_str())
    .bind(alert.as_str())
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::Row::get(&row, "n")
}

/// Attaching an alert the incident holds live already leaves it as it is:
/// a second attach, after the first or while it is still running, writes
/// nothing and is no error. The unique index on live attachments used to
/// refuse it as a bare conflict, failing the whole attach. An alert that
/// does not exist is still refused.
#[tokio::test]
async fn attaching_an_attached_alert_again_leaves_it_as_it_is() {
    for db in databases().await {
        let label = db.label();
        let store = db.store().await;
        let (org, scope) = new_org();
        let alerts = seeded();
        let [a0, a1, a2] = [&alerts[0], &alerts[1], &alerts[2]];
        let a = incident(&org.id, "a");

        let mut tx = seeded_in(&store, &org, &scope, &alerts).await;
        tx.insert_incident(&a).await.unwrap();
        let made = tx
            .attach_alerts(
                &scope,
                &a.id,
                std::slice::from_ref(&a0.id),
                "ann",
                &store::now(),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(made, 1, "{label}");

        // Again, beside an alert not attached yet: only that one is new.
        let mut tx = store.begin_in(&scope).await.unwrap();
        let made = tx
            .attach_alerts(
                &scope,
                &a.id,
                &[a0.id.clone(), a1.id.clone()],
                "bob",
                &store::now(),
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        tx.commit().await.unwrap();
        assert_eq!(made, 1, "{label}: a1 only");
        assert_eq!(
            rows_of(&store, &scope, &a.id).await,
            expected(&[a0, a1]),
            "{label}"
        );
        assert_eq!(live_rows(&store, &scope, &a.id, &a0.id).await, 1, "{label}");

        // Two at once: the second waits for the first and finds a2 there.
        let mut first = store.begin_in(&scope).await.unwrap();
        let made_first = first
            .attach_alerts(
                &scope,
                &a.id,
                std::slice::from_ref(&a2.id),
                "ann",
                &store::now(),
            )
            .await
            .unwrap();
        let second = {
            let (store, scope, a, a2) = (store.clone(), scope.clone(), a.id.clone(), a2.id.clone());
            tokio::spawn(async move {
                let mut tx = store.begin_in(&scope).await?;
                let made = tx
                    .attach_alerts(&scope, &a, &[a2], "bob", &store::now())
                    .await?;
                tx.commit().await?;
                Ok::<_, store::StoreError>(made)
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.commit().await.unwrap();
        let made_second = second
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!((made_first, made_second), (1, 0), "{label}");
        assert_eq!(live_rows(&store, &scope, &a.id, &a2.id).await, 1, "{label}");
        assert_eq!(alert_count(&store, &scope, &a.id).await, 3, "{label}");

        // An alert that does not exist is refused, and nothing is attached.
        let mut tx = store.begin_in(&scope).await.unwrap();
        let missing = tx
            .attach_alerts(&scope, &a.id, &[AlertId::generate()], "ann", &store::now())
            .await;
        assert!(missing.is_err(), "{label}: {missing:?}");
    }
}
