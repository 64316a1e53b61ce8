//! Incident ATT&CK profiles end to end on a real database (SQLite always,
//! PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set): create, attach,
//! detach, profile, merge, split, lead adjustments, staleness, bad input,
//! audit and the versioned output contract.
//!
//! Expected profiles are counted here from the raw NDJSON alerts and the
//! Sigma YAML tags of the 2026-01-01 pack, not by the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;
use service::{
    Actor, AdjustmentInput, App, ErrorKind, IncidentInput, IncidentProfileView, PageRequest, Role,
    ServiceError, check_schema, incident_profile_schema,
};
use store::testing::databases;

mod support;
use support::{activate_release, app_with_18_1, app_with_acme, member, shared};

const PACK: &str = "sigma-rules-c5e6d0ecd.tar.gz";

/// Technique ids of every usable rule of the pack, read straight from the
/// YAML: rule id -> techniques of its `attack.tNNNN[.NNN]` tags. Deprecated
/// and unsupported rules are not imported as mapping rules.
fn rule_techniques() -> BTreeMap<String, BTreeSet<String>> {
    let file = std::fs::File::open(shared().join("sigma").join(PACK)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
            continue;
        }
        let mut text = String::new();
        if entry.read_to_string(&mut text).is_ok() {
            files.push((path, text));
        }
    }
    files.sort();
    let tag = regex::Regex::new(r"^attack\.(t\d{4}(\.\d{3})?)$").unwrap();
    let mut rules = BTreeMap::new();
    for (_, text) in files {
        let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        let Some(id) = doc.get("id").and_then(|v| v.as_str()) else {
            continue;
        };
        let status = doc
            .get("status")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let techniques: BTreeSet<String> = doc
            .get("tags")
            .and_then(|v| v.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|t| t.as_str())
                    .filter_map(|t| {
                        tag.captures(&t.to_ascii_lowercase())
                            .map(|c| c[1].to_ascii_uppercase())
                    })
                    .collect()
            })
            .unwrap_or_default();
        rules.insert(id.to_string(), (status, techniques));
    }
    rules
        .into_iter()
        .filter(|(_, (status, _))| status != "deprecated" && status != "unsupported")
        .map(|(id, (_, t))| (id, t))
        .collect()
}

/// One raw alert: (source uid, host, techniques of its rule).
struct RawAlert {
    uid: String,
    host: String,
    techniques: BTreeSet<String>,
}

fn raw_alerts() -> Vec<RawAlert> {
    let rules = rule_techniques();
    std::fs::read_to_string(shared().join("alerts/sigma-regression-alerts.ndjson"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let a: Value = serde_json::from_str(l).unwrap();
            let rule = a["finding_info"]["analytic"]["uid"].as_str().unwrap();
            RawAlert {
                uid: a["finding_info"]["uid"].as_str().unwrap().to_string(),
                host: a["device"]["hostname"].as_str().unwrap().to_string(),
                techniques: rules.get(rule).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

/// Hand count: technique -> number of the alerts that carry it.
fn hand_count<'a>(alerts: impl Iterator<Item = &'a RawAlert>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in alerts {
        for t in &a.techniques {
            *counts.entry(t.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// The profile as technique -> distinct contributing alerts (over tactics).
fn frequencies(view: &IncidentProfileView) -> BTreeMap<String, usize> {
    let mut alerts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &view.profile {
        alerts
            .entry(e.technique.clone())
            .or_default()
            .extend(e.alerts.iter().cloned());
    }
    alerts.into_iter().map(|(t, a)| (t, a.len())).collect()
}

/// One profile entry without volatile fields: technique, tactic,
/// frequency, confidence (as text), alerts.
type Shape = (String, Option<String>, usize, String, Vec<String>);

/// The profile without volatile fields, to compare two computations.
fn shape(view: &IncidentProfileView) -> Vec<Shape> {
    view.profile
        .iter()
        .map(|e| {
            (
                e.technique.clone(),
                e.tactic.clone(),
                e.frequency,
                format!("{:.9}", e.confidence),
                e.alerts.clone(),
            )
        })
        .collect()
}

fn field(error: &ServiceError) -> Option<&str> {
    match error {
        ServiceError::InvalidInput { field, .. } => Some(field),
        _ => None,
    }
}

fn schema_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/incident-profile.v1.json")
}

fn adjustment(action: &str, technique: &str, rationale: Option<&str>) -> AdjustmentInput {
    AdjustmentInput {
        action: action.into(),
        technique: technique.into(),
        reason: Some("missing_technique".into()),
        rationale: rationale.map(str::to_string),
        evidence: vec!["TICKET-42".into()],
        ..AdjustmentInput::default()
    }
}

#[test]
fn the_checked_in_schema_is_the_one_the_code_generates() {
    let generated = incident_profile_schema();
    let path = schema_file();
    if std::env::var_os("NEXUS_ATTACK_UPDATE_SCHEMAS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored, generated,
        "docs/schemas/incident-profile.v1.json differs from the generated schema: a change \
         to the output contract needs a new schema version"
    );
}

/// An incident input with only a title.
fn titled(title: &str) -> IncidentInput {
    IncidentInput {
        title: title.into(),
        ..IncidentInput::default()
    }
}

/// Ingests the shared regression alerts into org `acme` as `engineer`.
async fn ingest_feed(app: &App, engineer: &Actor) {
    ingest_feed_into(app, engineer, "acme").await;
}

/// Ingests the shared regression alerts into `org` as `engineer`.
async fn ingest_feed_into(app: &App, engineer: &Actor, org: &str) {
    let file = std::fs::File::open(shared().join("alerts/sigma-regression-alerts.ndjson")).unwrap();
    app.ingest_alerts(engineer, org, Box::new(std::io::BufReader::new(file)))
        .await
        .unwrap();
}

/// Replaces the stored raw document of `org`'s alert `uid` with `raw`
/// (a corruption a test makes, or its repair). Answers the document it
/// replaced.
async fn set_stored_raw(app: &App, org: &service::Org, uid: &str, raw: &str) -> String {
    let scope = store::OrgScope::new(org.id.clone());
    let mut conn =
        store::testing::connection(app.store(), store::testing::Reach::Org(&scope)).await;
    // Read through the store: SQLite keeps the document packed.
    let stored = app
        .store()
        .alert(&scope, uid)
        .await
        .unwrap()
        .expect("the alert is stored")
        .raw;
    let changed = sqlx::query("UPDATE alerts SET raw = $1 WHERE org_id = $2 AND source_uid = $3")
        .bind(raw)
        .bind(org.id.as_str())
        .bind(uid)
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    stored
}

#[tokio::test]
async fn host_incidents_merge_split_adjust_and_refuse_bad_input() {
    let raw = raw_alerts();
    assert_eq!(raw.len(), 111);
    let mut by_host: BTreeMap<&str, Vec<&RawAlert>> = BTreeMap::new();
    for a in &raw {
        by_host.entry(a.host.as_str()).or_default().push(a);
    }
    // Two hosts whose hand-counted technique sets share a technique.
    let counts: BTreeMap<&str, BTreeMap<String, usize>> = by_host
        .iter()
        .map(|(h, alerts)| (*h, hand_count(alerts.iter().copied())))
        .collect();
    let (host_a, host_b, shared_technique) = counts
        .iter()
        .flat_map(|(a, ca)| counts.iter().map(move |(b, cb)| (a, ca, b, cb)))
        .filter(|(a, _, b, _)| a < b)
        .find_map(|(a, ca, b, cb)| {
            ca.keys()
                .find(|t| cb.contains_key(*t))
                .map(|t| (*a, *b, t.clone()))
        })
        .expect("two hosts of the feed share a technique");
    let uids =
        |host: &str| -> Vec<String> { by_host[host].iter().map(|a| a.uid.clone()).collect() };

    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let operator = Actor::operator("op");
        let acme = app.create_org(&operator, "acme").await.unwrap();
        let beta = app.create_org(&operator, "beta").await.unwrap();
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        let lead = member(&acme, "lea", Role::Lead);
        let viewer = member(&acme, "vic", Role::Viewer);
        let admin = member(&acme, "ada", Role::Admin);
        app.import_sigma(&engineer, "acme", &shared().join("sigma").join(PACK))
            .await
            .unwrap();
        let file =
            std::fs::File::open(shared().join("alerts/sigma-regression-alerts.ndjson")).unwrap();
        let report = app
            .ingest_alerts(&engineer, "acme", Box::new(std::io::BufReader::new(file)))
            .await
            .unwrap();
        assert_eq!(report.ingested, 111, "{label}");

        // Every alert of one host: exactly the union of their techniques,
        // each with its hand-counted frequency.
        let create = |title: &str, alerts: Vec<String>| IncidentInput {
            title: title.into(),
            alerts,
            ..IncidentInput::default()
        };
        let a = app
            .create_incident(&analyst, "acme", create("host a", uids(host_a)))
            .await
            .unwrap();
        let b = app
            .create_incident(&analyst, "acme", create("host b", uids(host_b)))
            .await
            .unwrap();
        assert_eq!(frequencies(&a), counts[host_a], "{label}: {host_a}");
        assert_eq!(frequencies(&b), counts[host_b], "{label}: {host_b}");
        assert_eq!(a.alerts.len(), by_host[host_a].len(), "{label}");
        assert_eq!(a.status, "open");
        assert!(!a.stale, "{label}: a new incident is not stale");
        // Lineage: every contributing alert of a rule-sourced entry names its candidates.
        for e in &a.profile {
            assert_eq!(e.lineage.len(), e.frequency, "{label}: {}", e.technique);
            assert!(e.lineage.iter().all(|l| !l.candidates.is_empty()));
            assert!(e.sources.contains(&"rule".to_string()));
        }
        let problems = check_schema(
            &incident_profile_schema(),
            &serde_json::to_value(&a).unwrap(),
        );
        assert!(problems.is_empty(), "{label}: {problems:?}");

        // Merge: the shared technique appears once with the summed frequency.
        let merged = app
            .merge_incidents(&analyst, "acme", &a.id, &b.id)
            .await
            .unwrap();
        let mut summed = counts[host_a].clone();
        for (t, n) in &counts[host_b] {
            *summed.entry(t.clone()).or_insert(0) += n;
        }
        assert_eq!(frequencies(&merged), summed, "{label}");
        assert_eq!(
            frequencies(&merged)[&shared_technique],
            counts[host_a][&shared_technique] + counts[host_b][&shared_technique]
        );
        let keys: Vec<_> = merged
            .profile
            .iter()
            .map(|e| (e.technique.clone(), e.tactic.clone()))
            .collect();
        let distinct: BTreeSet<_> = keys.iter().collect();
        assert_eq!(keys.len(), distinct.len(), "{label}: each entry once");
        assert!(merged.stale, "{label}: a merge marks the profile stale");
        assert_eq!(merged.stale_reasons[0]["reason"], "merged");
        assert_eq!(merged.merged_from, vec![b.id.clone()]);
        let absorbed = app.incident_profile(&viewer, "acme", &b.id).await.unwrap();
        assert_eq!(absorbed.merged_into.as_deref(), Some(a.id.as_str()));
        assert!(absorbed.alerts.is_empty() && absorbed.profile.is_empty());
        let err = app
            .attach_alerts(&analyst, "acme", &b.id, &uids(host_a)[..1])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{label}: merged is final");

        // Split B's alerts back out: both profiles are restored.
        let split = app
            .split_incident(&analyst, "acme", &a.id, &uids(host_b))
            .await
            .unwrap();
        assert_eq!(split.split_from, a.id);
        assert_eq!(shape(&split.remaining), shape(&a), "{label}");
        assert_eq!(shape(&split.created), shape(&b), "{label}");
        assert_eq!(split.created.split_from.as_deref(), Some(a.id.as_str()));
        assert_eq!(split.created.id, split.id);

        // Bad input: refused with a structured error, nothing changes.
        let before = app.incident_profile(&viewer, "acme", &a.id).await.unwrap();
        let err = app
            .split_incident(&analyst, "acme", &a.id, &uids(host_a))
            .await
            .unwrap_err();
        assert_eq!(field(&err), Some("alerts"), "{label}: {err}");
        let err = app
            .split_incident(&analyst, "acme", &a.id, &[])
            .await
            .unwrap_err();
        assert_eq!(field(&err), Some("alerts"), "{label}: {err}");
        let err = app
            .split_incident(&analyst, "acme", &a.id, &uids(host_b)[..1])
            .await
            .unwrap_err();
        assert_eq!(field(&err), Some("alerts"), "{label}: not in the incident");
        let beta_analyst = member(&beta, "bob", Role::Analyst);
        let other = app
            .create_incident(&beta_analyst, "beta", create("beta", vec![]))
            .await
            .unwrap();
        let foreign = app
            .attach_alerts(&beta_analyst, "beta", &other.id, &uids(host_a)[..1])
            .await
            .unwrap_err();
        let missing = app
            .attach_alerts(&beta_analyst, "beta", &other.id, &["no-such-alert".into()])
            .await
            .unwrap_err();
        assert_eq!(foreign.code(), "not_found", "{label}");
        assert_eq!(foreign.kind(), missing.kind());
        let err = app
            .merge_incidents(&analyst, "acme", &a.id, &other.id)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found", "{label}: merge across orgs");
        let err = app
            .incident_profile(&viewer, "acme", &other.id)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found", "{label}: read across orgs");
        let mixed = vec![uids(host_b)[0].clone(), "no-such-alert".to_string()];
        app.attach_alerts(&analyst, "acme", &a.id, &mixed)
            .await
            .unwrap_err();
        let err = app
            .adjust_incident(&lead, "acme", &a.id, adjustment("add", "T1078", None))
            .await
            .unwrap_err();
        assert_eq!(field(&err), Some("rationale"), "{label}: {err}");
        let mut no_evidence = adjustment("add", "T1078", Some("seen in the VPN logs"));
        no_evidence.evidence.clear();
        let err = app
            .adjust_incident(&lead, "acme", &a.id, no_evidence)
            .await
            .unwrap_err();
        assert_eq!(field(&err), Some("evidence"), "{label}: {err}");
        let err = app
            .adjust_incident(
                &analyst,
                "acme",
                &a.id,
                adjustment("add", "T1078", Some("x")),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden, "{label}: lead or above");
        let after = app.incident_profile(&viewer, "acme", &a.id).await.unwrap();
        assert_eq!(after, before, "{label}: refused changes change nothing");

        // Lead adjustments win, survive recomputation, and clear staleness.
        let adjusted = app
            .adjust_incident(
                &lead,
                "acme",
                &a.id,
                adjustment("add", "T1078", Some("valid accounts seen in the VPN logs")),
            )
            .await
            .unwrap();
        let added = adjusted
            .profile
            .iter()
            .find(|e| e.technique == "T1078")
            .unwrap();
        assert_eq!(
            added.frequency,
            counts[host_a].get("T1078").copied().unwrap_or(0)
        );
        assert!(added.sources.contains(&"manual".to_string()));
        assert_eq!(added.adjustments, vec![adjusted.adjustments[0].id.clone()]);
        assert!(!adjusted.stale, "{label}: the lead re-evaluated");
        let removed = shared_technique.clone();
        let adjusted = app
            .adjust_incident(
                &lead,
                "acme",
                &a.id,
                AdjustmentInput {
                    reason: Some("wrong_technique".into()),
                    ..adjustment("remove", &removed, Some("benign admin script"))
                },
            )
            .await
            .unwrap();
        assert!(adjusted.profile.iter().all(|e| e.technique != removed));
        assert_eq!(adjusted.adjustments.len(), 2);
        // Recomputed after an attach: both adjustments still hold.
        let grown = app
            .attach_alerts(&analyst, "acme", &a.id, &uids(host_b)[..1])
            .await
            .unwrap();
        assert!(grown.profile.iter().all(|e| e.technique != removed));
        assert!(grown.profile.iter().any(|e| e.technique == "T1078"));
        let shrunk = app
            .detach_alerts(&analyst, "acme", &a.id, &uids(host_b)[..1])
            .await
            .unwrap();
        assert_eq!(shape(&shrunk), shape(&adjusted), "{label}");

        // Merge keeps both sides' adjustments; split leaves them with the original.
        let merged = app
            .merge_incidents(&analyst, "acme", &a.id, &split.id)
            .await
            .unwrap();
        assert_eq!(merged.adjustments.len(), 2);
        assert!(merged.profile.iter().all(|e| e.technique != removed));
        let again = app
            .split_incident(&analyst, "acme", &a.id, &uids(host_b))
            .await
            .unwrap();
        assert!(again.created.adjustments.is_empty());
        assert_eq!(frequencies(&again.created), counts[host_b], "{label}");
        assert_eq!(again.remaining.adjustments.len(), 2);

        // Staleness triggers: severity shift, reopen, evidence.
        let v = app
            .set_incident_severity(&analyst, "acme", &again.id, "critical")
            .await
            .unwrap();
        assert!(v.stale && v.profile.iter().all(|e| e.stale));
        assert!(
            v.stale_reasons
                .iter()
                .any(|r| r["reason"] == "severity_shift" && r["to"] == "critical")
        );
        let c = &again.id;
        app.adjust_incident(&lead, "acme", c, adjustment("add", "T1078", Some("seen")))
            .await
            .unwrap();
        let v = app
            .set_incident_status(&analyst, "acme", c, "resolved")
            .await
            .unwrap();
        assert!(!v.stale, "{label}: resolving is no trigger");
        let v = app
            .set_incident_status(&analyst, "acme", c, "reopened")
            .await
            .unwrap();
        assert_eq!(v.status, "reopened");
        assert_eq!(v.stale_reasons[0]["reason"], "reopened", "{label}");
        let v = app
            .add_incident_evidence(&analyst, "acme", c, "ticket", "INC-7")
            .await
            .unwrap();
        assert_eq!(v.evidence.len(), 1);
        assert_eq!(v.stale_reasons[1]["reason"], "evidence_update");
        let err = app
            .set_incident_status(&analyst, "acme", c, "done")
            .await
            .unwrap_err();
        assert_eq!(field(&err), Some("status"));

        // Every mutation is audited.
        let events = app
            .audit_list(
                &admin,
                &PageRequest {
                    cursor: None,
                    limit: Some(500),
                },
            )
            .await
            .unwrap();
        let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
        for e in &events.items {
            if e.action.starts_with("incident_") && e.outcome == service::Outcome::Ok {
                *by_action.entry(e.action.clone()).or_insert(0) += 1;
            }
        }
        let expected: BTreeMap<String, usize> = [
            ("incident_create", 2),
            ("incident_merge", 2),
            ("incident_split", 2),
            ("incident_adjust", 3),
            ("incident_attach", 1),
            ("incident_detach", 1),
            ("incident_severity", 1),
            ("incident_status", 2),
            ("incident_evidence", 1),
        ]
        .into_iter()
        .map(|(a, n)| (a.to_string(), n))
        .collect();
        assert_eq!(by_action, expected, "{label}");
        let failed = events
            .items
            .iter()
            .filter(|e| e.action == "incident_adjust" && e.outcome == service::Outcome::Failed)
            .count();
        assert_eq!(failed, 2, "{label}: refused adjustments are audited");
    }
}

/// Two merges of the same pair in opposite directions at the same time:
/// exactly one lands, the other is refused as a conflict, and the survivor
/// holds both alerts while the absorbed incident is merged into it. Each
/// merge decides on the rows it locks in its own transaction; deciding on
/// reads made before it once let both land and left a live incident whose
/// own alerts were served to the incident merged into it.
#[tokio::test]
async fn opposite_merges_at_the_same_time_leave_exactly_one_merge() {
    let raw = raw_alerts();
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let lead = member(&acme, "lea", Role::Lead);
        ingest_feed(&app, &engineer).await;

        for round in 0..5 {
            let one = |n: usize| IncidentInput {
                title: format!("round {round} incident {n}"),
                alerts: vec![raw[2 * round + n].uid.clone()],
                ..IncidentInput::default()
            };
            let p = app.create_incident(&lead, "acme", one(0)).await.unwrap();
            let q = app.create_incident(&lead, "acme", one(1)).await.unwrap();
            let (pq, qp) = tokio::join!(
                app.merge_incidents(&lead, "acme", &p.id, &q.id),
                app.merge_incidents(&lead, "acme", &q.id, &p.id)
            );
            let (survivor, absorbed, refused) = match (pq, qp) {
                (Ok(view), Err(e)) => (view, q.id.clone(), e),
                (Err(e), Ok(view)) => (view, p.id.clone(), e),
                (pq, qp) => panic!(
                    "{label} round {round}: exactly one merge must land, got {:?} and {:?}",
                    pq.map(|v| v.id),
                    qp.map(|v| v.id)
                ),
            };
            assert_eq!(refused.kind(), ErrorKind::Conflict, "{label}: {refused}");
            let expected: BTreeSet<String> = [&raw[2 * round].uid, &raw[2 * round + 1].uid]
                .into_iter()
                .cloned()
                .collect();
            let now = app
                .incident_profile(&lead, "acme", &survivor.id)
                .await
                .unwrap();
            let held: BTreeSet<String> = now.alerts.iter().map(|a| a.source_uid.clone()).collect();
            assert_eq!(
                held, expected,
                "{label} round {round}: the survivor holds both"
            );
            let gone = app
                .merge_incidents(&lead, "acme", &survivor.id, &absorbed)
                .await
                .expect_err("the absorbed incident is merged already");
            assert_eq!(gone.kind(), ErrorKind::Conflict, "{label}");
        }
    }
}

/// Two splits naming a shared alert, and a split and a detach of the same
/// alerts, at the same time: exactly one lands each time, the other is
/// refused as naming an alert the incident no longer holds, and no alert
/// ends up held twice. Each decides on what the incident holds under its
/// lock; deciding on a read made before it once let both land and left the
/// shared alert live in two incidents.
#[tokio::test]
async fn concurrent_splits_and_detaches_never_take_an_alert_twice() {
    let raw = raw_alerts();
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let lead = member(&acme, "lea", Role::Lead);
        ingest_feed(&app, &engineer).await;

        for round in 0..3 {
            let uids: Vec<String> = (0..4).map(|n| raw[4 * round + n].uid.clone()).collect();
            let input = IncidentInput {
                title: format!("round {round}"),
                alerts: uids.clone(),
                ..IncidentInput::default()
            };
            let x = app
                .create_incident(&lead, "acme", input.clone())
                .await
                .unwrap();
            let (first, second) = tokio::join!(
                app.split_incident(&lead, "acme", &x.id, &uids[0..2]),
                app.split_incident(&lead, "acme", &x.id, &uids[1..3])
            );
            let landed = match (&first, &second) {
                (Ok(o), Err(e)) | (Err(e), Ok(o)) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{label}: {e}");
                    o
                }
                _ => panic!(
                    "{label} round {round}: exactly one split must land, got {:?} and {:?}",
                    first.as_ref().map(|o| &o.id),
                    second.as_ref().map(|o| &o.id)
                ),
            };
            let created: BTreeSet<String> = landed
                .created
                .alerts
                .iter()
                .map(|a| a.source_uid.clone())
                .collect();
            let left: BTreeSet<String> = app
                .incident_profile(&lead, "acme", &x.id)
                .await
                .unwrap()
                .alerts
                .iter()
                .map(|a| a.source_uid.clone())
                .collect();
            assert!(created.is_disjoint(&left), "{label} round {round}");
            let all: BTreeSet<String> = created.union(&left).cloned().collect();
            assert_eq!(all, uids.iter().cloned().collect(), "{label} round {round}");

            // A split and a detach of the same alerts.
            let y = app.create_incident(&lead, "acme", input).await.unwrap();
            let (split, detach) = tokio::join!(
                app.split_incident(&lead, "acme", &y.id, &uids[0..2]),
                app.detach_alerts(&lead, "acme", &y.id, &uids[0..2])
            );
            match (&split, &detach) {
                (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{label}: {e}")
                }
                _ => panic!(
                    "{label} round {round}: exactly one of split and detach must land, got {:?} and {:?}",
                    split.as_ref().map(|o| &o.id),
                    detach.as_ref().map(|v| &v.id)
                ),
            }
            let left = app.incident_profile(&lead, "acme", &y.id).await.unwrap();
            assert_eq!(left.alerts.len(), 2, "{label} round {round}: y keeps two");
        }
    }
}

/// The open incident items of an org's review queue, as the queue lists
/// them: (incident id, item id, reasons named by the item's stale reasons).
async fn queued_incidents(
    app: &App,
    actor: &Actor,
    org: &str,
) -> Vec<(String, String, Vec<String>)> {
    let mut items: Vec<(String, String, Vec<String>)> = app
        .review_list(actor, org, Some("open"), 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.subject == "incident")
        .map(|i| {
            assert_eq!(i.reason, "stale", "{i:?}");
            assert_eq!(i.alert_id, None, "{i:?}");
            let reasons = i
                .stale_reasons
                .unwrap_or_default()
                .iter()
                .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
                .collect();
            (i.incident_id.unwrap_or_default(), i.id, reasons)
        })
        .collect();
    items.sort();
    items
}

/// One review item by id, in any state.
async fn review_item(app: &App, actor: &Actor, org: &str, id: &str) -> service::ReviewItem {
    app.review_list(actor, org, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("review item {id} is not in the queue"))
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every staleness trigger puts the incident(s) it made stale into the
/// review queue, once: a second trigger adds its reason to the open item.
/// A lead adjustment and a review acceptance each resolve the item with its
/// time to validate; a merge resolves the absorbed incident's item. An
/// org's queue shows its own incidents only.
#[tokio::test]
async fn staleness_triggers_queue_the_incident_once_until_reviewed() {
    let raw = raw_alerts();
    let mut by_host: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in &raw {
        by_host
            .entry(a.host.as_str())
            .or_default()
            .push(a.uid.clone());
    }
    let mut hosts = by_host.values();
    let (host_a, host_b) = (hosts.next().unwrap().clone(), hosts.next().unwrap().clone());

    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let operator = Actor::operator("op");
        let acme = app.create_org(&operator, "acme").await.unwrap();
        let beta = app.create_org(&operator, "beta").await.unwrap();
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        let lead = member(&acme, "lea", Role::Lead);
        let admin = member(&acme, "ada", Role::Admin);
        let beta_analyst = member(&beta, "bob", Role::Analyst);
        app.import_sigma(&engineer, "acme", &shared().join("sigma").join(PACK))
            .await
            .unwrap();
        ingest_feed(&app, &engineer).await;
        let create = |title: &str, alerts: &[String]| IncidentInput {
            title: title.into(),
            alerts: alerts.to_vec(),
            ..IncidentInput::default()
        };
        let x = app
            .create_incident(&analyst, "acme", create("x", &host_a))
            .await
            .unwrap();
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);

        // Severity shift: one item for X; new evidence keeps it and adds
        // its reason.
        app.set_incident_severity(&analyst, "acme", &x.id, "critical")
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        let (incident, first, reasons) = &queued[0];
        assert_eq!(incident, &x.id, "{label}");
        assert_eq!(reasons, &strings(&["severity_shift"]), "{label}");
        app.add_incident_evidence(&analyst, "acme", &x.id, "ticket", "INC-1")
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(
            queued,
            vec![(
                x.id.clone(),
                first.clone(),
                strings(&["severity_shift", "evidence_update"])
            )],
            "{label}: the second trigger kept the item"
        );
        let item = review_item(&app, &analyst, "acme", first).await;
        assert_eq!(item.stale_reasons.as_ref().unwrap()[0]["to"], "critical");
        // Correcting an incident's item is a lead adjustment: an analyst
        // is refused before any correction is read, a lead is not.
        let refused = app
            .check_review_correction(&analyst, "acme", first)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "forbidden", "{label}: {refused}");
        app.check_review_correction(&lead, "acme", first)
            .await
            .unwrap();

        // A lead adjustment resolves it as corrected.
        let adjusted = app
            .adjust_incident(
                &lead,
                "acme",
                &x.id,
                adjustment("add", "T1078", Some("valid accounts in the VPN logs")),
            )
            .await
            .unwrap();
        assert!(!adjusted.stale, "{label}");
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);
        let item = review_item(&app, &analyst, "acme", first).await;
        assert_eq!(item.state, "corrected", "{label}");
        assert_eq!(item.resolved_by.as_deref(), Some("lea"));
        assert_eq!(
            item.resolution,
            Some(serde_json::json!({"adjustment": adjusted.adjustments[0].id}))
        );
        let (opened, resolved) = (
            chrono::DateTime::parse_from_rfc3339(&item.opened_at).unwrap(),
            chrono::DateTime::parse_from_rfc3339(item.resolved_at.as_deref().unwrap()).unwrap(),
        );
        assert_eq!(
            item.time_to_validate_ms,
            Some((resolved - opened).num_milliseconds()),
            "{label}"
        );

        // Reopen: a new item; accepting it resolves it and clears the mark.
        app.set_incident_status(&analyst, "acme", &x.id, "resolved")
            .await
            .unwrap();
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);
        app.set_incident_status(&analyst, "acme", &x.id, "reopened")
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        assert_eq!(
            (&queued[0].0, &queued[0].2),
            (&x.id, &strings(&["reopened"]))
        );
        assert_ne!(&queued[0].1, first, "{label}: a new item");
        let accepted = app
            .review_decide(
                &analyst,
                "acme",
                &queued[0].1,
                service::ReviewDecision::Accept,
                Some("the profile still holds"),
            )
            .await
            .unwrap();
        assert_eq!(accepted.state, "accepted");
        assert_eq!(accepted.incident_id.as_deref(), Some(x.id.as_str()));
        assert!(accepted.time_to_validate_ms.is_some_and(|ms| ms >= 0));
        let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
        assert!(
            !now.stale && now.stale_reasons.is_empty(),
            "{label}: reviewed"
        );
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);

        // Merge: the survivor is queued, the absorbed incident's item is
        // resolved with it.
        let y = app
            .create_incident(&analyst, "acme", create("y", &host_b))
            .await
            .unwrap();
        app.set_incident_severity(&analyst, "acme", &y.id, "low")
            .await
            .unwrap();
        let y_item = queued_incidents(&app, &analyst, "acme").await[0].1.clone();
        app.merge_incidents(&analyst, "acme", &x.id, &y.id)
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        assert_eq!((&queued[0].0, &queued[0].2), (&x.id, &strings(&["merged"])));
        let x_item = queued[0].1.clone();
        let closed = review_item(&app, &analyst, "acme", &y_item).await;
        assert_eq!(
            (closed.state.as_str(), closed.resolved_by.as_deref()),
            ("accepted", Some("system:merge")),
            "{label}"
        );

        // Split: both sides queued, the original keeping its item.
        let split = app
            .split_incident(&analyst, "acme", &x.id, &host_b)
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        let mut expected = vec![
            (x.id.clone(), x_item.clone(), strings(&["merged", "split"])),
            (split.id.clone(), String::new(), strings(&["split"])),
        ];
        expected.sort();
        assert_eq!(queued.len(), 2, "{label}: {queued:?}");
        for (got, want) in queued.iter().zip(&expected) {
            assert_eq!(got.0, want.0, "{label}");
            assert_eq!(got.2, want.2, "{label}");
            if !want.1.is_empty() {
                assert_eq!(got.1, want.1, "{label}: the item was kept");
            }
        }

        // Another org's incident item is in that org's queue only.
        let other = app
            .create_incident(&beta_analyst, "beta", create("beta", &[]))
            .await
            .unwrap();
        app.set_incident_severity(&beta_analyst, "beta", &other.id, "high")
            .await
            .unwrap();
        let beta_queue = queued_incidents(&app, &beta_analyst, "beta").await;
        assert_eq!(beta_queue.len(), 1, "{label}");
        assert_eq!(beta_queue[0].0, other.id);
        let acme_all = app
            .review_list(&analyst, "acme", None, 10_000)
            .await
            .unwrap();
        assert!(
            acme_all
                .iter()
                .all(|i| i.id != beta_queue[0].1 && i.incident_id.as_deref() != Some(&other.id)),
            "{label}: acme's queue shows beta's incident"
        );
        let err = app
            .review_decide(
                &analyst,
                "acme",
                &beta_queue[0].1,
                service::ReviewDecision::Accept,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found", "{label}");

        // Each resolution is audited, a person's with its time to validate,
        // the merge's (the product's own) with none.
        let events = app
            .audit_list(
                &admin,
                &PageRequest {
                    cursor: None,
                    limit: Some(500),
                },
            )
            .await
            .unwrap();
        let resolved: BTreeSet<String> = events
            .items
            .iter()
            .filter(|e| e.action == "review_resolve")
            .filter(|e| e.details["time_to_validate_ms"].is_i64())
            .map(|e| e.target_id.clone())
            .collect();
        let want: BTreeSet<String> = [first.clone(), accepted.id.clone()].into_iter().collect();
        assert_eq!(resolved, want, "{label}");
        let merged = events
            .items
            .iter()
            .find(|e| e.action == "review_resolve" && e.target_id == y_item)
            .unwrap_or_else(|| panic!("{label}: no review_resolve event for {y_item}"));
        assert_eq!(merged.details["resolved_by"], "system:merge", "{label}");
        assert_eq!(
            merged.details["time_to_validate_ms"],
            Value::Null,
            "{label}"
        );
    }
}

/// The reason names of a profile's shown stale reasons.
fn shown_reasons(view: &IncidentProfileView) -> Vec<String> {
    view.stale_reasons
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The queue and the profile agree on `release_activated`: an incident's
/// open item holds it exactly when its profile shows it (an entry computed
/// under another release than the active one).
async fn assert_release_reasons_agree(app: &App, actor: &Actor, org: &str, label: &str) {
    let queued = queued_incidents(app, actor, org).await;
    let page = PageRequest {
        cursor: None,
        limit: Some(100),
    };
    for incident in app.list_incidents(actor, org, &page).await.unwrap().items {
        let view = app
            .incident_profile(actor, org, &incident.id)
            .await
            .unwrap();
        let shown = shown_reasons(&view).contains(&"release_activated".to_string());
        let in_queue = queued.iter().any(|(i, _, reasons)| {
            *i == incident.id && reasons.contains(&"release_activated".into())
        });
        let finished = matches!(view.status.as_str(), "resolved" | "closed");
        assert_eq!(
            in_queue,
            shown && !finished && view.merged_into.is_none(),
            "{label}: incident {} ({}) shows {:?}, queue {queued:?}",
            view.title,
            view.status,
            view.stale_reasons
        );
        if shown {
            assert!(view.stale, "{label}: {}", view.title);
        }
    }
}

/// Activating a release queues the live incidents whose alerts were mapped
/// under another one, in the activation itself; the re-mapping that follows
/// settles them: an incident none of whose entries is computed under the
/// old release any more leaves the queue (its item resolved by
/// `system:recompute`, or kept with another trigger's reason), so the
/// queue and the shown `stale` agree. They did not: the item stayed open
/// while the profile showed `stale: false`. Finished (resolved or closed)
/// incidents and one without mapped alerts are not queued.
#[tokio::test]
async fn activating_a_release_queues_incidents_until_their_alerts_are_remapped() {
    let raw = raw_alerts();
    let mut by_host: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut mapped: BTreeMap<&str, bool> = BTreeMap::new();
    for a in &raw {
        by_host
            .entry(a.host.as_str())
            .or_default()
            .push(a.uid.clone());
        *mapped.entry(a.host.as_str()).or_default() |= !a.techniques.is_empty();
    }
    // Four hosts whose alerts carry techniques by the hand count.
    let hosts: Vec<&Vec<String>> = by_host
        .iter()
        .filter(|(h, _)| mapped[*h])
        .map(|(_, uids)| uids)
        .take(4)
        .collect();
    assert_eq!(hosts.len(), 4);

    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let operator = Actor::operator("op");
        let acme = app.create_org(&operator, "acme").await.unwrap();
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        app.import_sigma(&engineer, "acme", &shared().join("sigma").join(PACK))
            .await
            .unwrap();
        ingest_feed(&app, &engineer).await;
        let create = |title: &str, alerts: &[String]| IncidentInput {
            title: title.into(),
            alerts: alerts.to_vec(),
            ..IncidentInput::default()
        };
        let live = app
            .create_incident(&analyst, "acme", create("live", hosts[0]))
            .await
            .unwrap();
        let queued = app
            .create_incident(&analyst, "acme", create("queued", hosts[1]))
            .await
            .unwrap();
        let closed = app
            .create_incident(&analyst, "acme", create("closed", hosts[2]))
            .await
            .unwrap();
        let resolved = app
            .create_incident(&analyst, "acme", create("resolved", hosts[3]))
            .await
            .unwrap();
        let empty = app
            .create_incident(&analyst, "acme", create("empty", &[]))
            .await
            .unwrap();
        assert!(live.profile.iter().all(|e| !e.stale), "{label}");
        app.set_incident_status(&analyst, "acme", &closed.id, "closed")
            .await
            .unwrap();
        app.set_incident_status(&analyst, "acme", &resolved.id, "resolved")
            .await
            .unwrap();
        app.set_incident_severity(&analyst, "acme", &queued.id, "critical")
            .await
            .unwrap();
        let before = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(before.len(), 1, "{label}: {before:?}");
        let opened_before: BTreeSet<String> = app
            .review_list(&analyst, "acme", None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();

        activate_release(&app, "enterprise-attack-17.1.json.gz").await;

        // Queued by the activation: one new item, for `live` alone (`queued`
        // had its item already; finished and empty incidents none).
        let items = app
            .review_list(&analyst, "acme", None, 10_000)
            .await
            .unwrap();
        let opened: Vec<&service::ReviewItem> = items
            .iter()
            .filter(|i| i.subject == "incident" && !opened_before.contains(&i.id))
            .collect();
        assert_eq!(opened.len(), 1, "{label}: {opened:?}");
        let item = opened[0];
        assert_eq!(item.incident_id.as_deref(), Some(live.id.as_str()));
        let reasons = item.stale_reasons.clone().unwrap_or_default();
        assert_eq!(
            reasons,
            vec![serde_json::json!({"reason": "release_activated", "release": "17.1"})],
            "{label}: the item keeps why it was opened"
        );
        // Settled by the re-mapping: every alert is mapped under 17.1 now.
        assert_eq!(item.state, "accepted", "{label}");
        assert_eq!(item.resolved_by.as_deref(), Some("system:recompute"));
        assert_eq!(
            item.resolution,
            Some(serde_json::json!({"remapped_under": "17.1"}))
        );
        // The product settled it: no one's time to validate.
        assert_eq!(item.time_to_validate_ms, None, "{label}");

        let now = app
            .incident_profile(&analyst, "acme", &live.id)
            .await
            .unwrap();
        assert_eq!(now.release.as_deref(), Some("17.1"), "{label}");
        assert!(!now.stale && now.stale_reasons.is_empty(), "{label}");
        assert!(now.profile.iter().all(|e| !e.stale), "{label}");
        // `queued` keeps its item with its own reason only, and shows it.
        assert_eq!(
            queued_incidents(&app, &analyst, "acme").await,
            vec![(
                queued.id.clone(),
                before[0].1.clone(),
                strings(&["severity_shift"])
            )],
            "{label}"
        );
        let now = app
            .incident_profile(&analyst, "acme", &queued.id)
            .await
            .unwrap();
        assert_eq!(shown_reasons(&now), strings(&["severity_shift"]), "{label}");
        assert!(now.stale, "{label}");
        for quiet in [&closed, &resolved, &empty] {
            let view = app
                .incident_profile(&analyst, "acme", &quiet.id)
                .await
                .unwrap();
            assert!(!view.stale, "{label}: {}", view.title);
        }
        assert_release_reasons_agree(&app, &analyst, "acme", label).await;

        // A rollback reactivates 18.1, and is an activation like any
        // other: `live` is queued again and settled by the re-mapping,
        // which maps every alert under 18.1 again. It was neither: the
        // profile showed every entry stale under the old release and the
        // queue had nothing.
        let before_rollback: BTreeSet<String> = app
            .review_list(&analyst, "acme", None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        app.rollback_domain(&operator, taxonomy::Domain::Enterprise)
            .await
            .unwrap();
        let items = app
            .review_list(&analyst, "acme", None, 10_000)
            .await
            .unwrap();
        let opened: Vec<&service::ReviewItem> = items
            .iter()
            .filter(|i| i.subject == "incident" && !before_rollback.contains(&i.id))
            .collect();
        assert_eq!(opened.len(), 1, "{label}: {opened:?}");
        assert_eq!(opened[0].incident_id.as_deref(), Some(live.id.as_str()));
        assert_eq!(opened[0].state, "accepted", "{label}");
        assert_eq!(
            opened[0].resolution,
            Some(serde_json::json!({"remapped_under": "18.1"}))
        );
        let now = app
            .incident_profile(&analyst, "acme", &live.id)
            .await
            .unwrap();
        assert_eq!(now.release.as_deref(), Some("18.1"), "{label}");
        assert!(
            !now.stale && now.profile.iter().all(|e| !e.stale),
            "{label}"
        );
        let alert = app
            .alert_mapping(&analyst, "acme", &hosts[0][0])
            .await
            .unwrap();
        assert_eq!(alert.canonical.release, "18.1", "{label}");
        assert_release_reasons_agree(&app, &analyst, "acme", label).await;
    }
}

/// The first shared alert a Sigma rule maps: the incidents of the re-map
/// tests hold it, and its stored document is what they break.
fn mapped_carrier() -> String {
    raw_alerts()
        .into_iter()
        .find(|a| !a.techniques.is_empty())
        .expect("an alert a rule maps")
        .uid
}

/// The org with the Sigma pack and the shared feed, and an incident `x`
/// made by its analyst `ann` on `carrier`.
async fn incident_on(app: &App, org: &service::Org, carrier: &str) -> IncidentProfileView {
    let engineer = member(org, "eve", Role::Engineer);
    let analyst = member(org, "ann", Role::Analyst);
    app.import_sigma(&engineer, &org.name, &shared().join("sigma").join(PACK))
        .await
        .unwrap();
    ingest_feed_into(app, &engineer, &org.name).await;
    let input = IncidentInput {
        title: "x".into(),
        alerts: vec![carrier.to_string()],
        ..IncidentInput::default()
    };
    let x = app
        .create_incident(&analyst, &org.name, input)
        .await
        .unwrap();
    assert!(!x.profile.is_empty(), "the carrier is mapped");
    x
}

/// When the re-mapping after an activation fails, the incidents whose
/// alerts stay mapped under the old release stay queued and show `stale`
/// with `release_activated`; `alerts remap` then re-maps them and settles
/// the queue the same way.
#[tokio::test]
async fn incidents_stay_queued_and_stale_until_a_failed_remap_is_finished() {
    let carrier = mapped_carrier();
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        let x = incident_on(&app, &acme, &carrier).await;
        assert!(!x.profile.is_empty(), "{label}");

        // A stored alert that no longer decodes stops the re-mapping of its
        // org (the activation itself stands).
        let stored = set_stored_raw(&app, &acme, &carrier, "not json").await;

        activate_release(&app, "enterprise-attack-17.1.json.gz").await;

        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        assert_eq!(
            (&queued[0].0, &queued[0].2),
            (&x.id, &strings(&["release_activated"])),
            "{label}"
        );
        let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
        assert!(now.stale, "{label}: mapped under 18.1 while 17.1 is active");
        assert_eq!(shown_reasons(&now), strings(&["release_activated"]));
        assert!(now.profile.iter().all(|e| e.stale), "{label}");
        assert_release_reasons_agree(&app, &analyst, "acme", label).await;

        // Repaired and re-mapped: the item is resolved, nothing is stale.
        set_stored_raw(&app, &acme, &carrier, &stored).await;
        app.remap_org(&engineer, "acme", &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);
        let item = review_item(&app, &analyst, "acme", &queued[0].1).await;
        assert_eq!(
            (item.state.as_str(), item.resolved_by.as_deref()),
            ("accepted", Some("system:recompute")),
            "{label}"
        );
        let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
        assert!(!now.stale && now.stale_reasons.is_empty(), "{label}");
        assert_release_reasons_agree(&app, &analyst, "acme", label).await;
    }
}

/// The re-mapping after an activation goes on through every org when one
/// org's fails: it stopped at the first failed org, so the orgs after it
/// (in name order) kept every alert stale under the old release and their
/// incidents queued, although nothing was wrong with them.
#[tokio::test]
async fn a_failed_remap_of_one_org_does_not_stop_the_next_orgs() {
    let raw = raw_alerts();
    let carrier = mapped_carrier();
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let operator = Actor::operator("op");
        // Orgs are re-mapped in name order: `acme` before `beta`.
        let acme = app.create_org(&operator, "acme").await.unwrap();
        let beta = app.create_org(&operator, "beta").await.unwrap();
        let mut incidents = Vec::new();
        for org in [&acme, &beta] {
            incidents.push(incident_on(&app, org, &carrier).await);
        }
        // A stored alert of the first org that no longer decodes makes
        // that org's re-mapping fail.
        set_stored_raw(&app, &acme, &carrier, "not json").await;

        activate_release(&app, "enterprise-attack-17.1.json.gz").await;

        // The second org: every alert re-mapped under 17.1, none stale,
        // its incident settled by the re-mapping.
        let beta_analyst = member(&beta, "ann", Role::Analyst);
        for alert in &raw {
            let view = app
                .alert_mapping(&beta_analyst, "beta", &alert.uid)
                .await
                .unwrap();
            assert_eq!(
                (view.canonical.release.as_str(), view.alert.stale),
                ("17.1", false),
                "{label}: beta alert {}",
                alert.uid
            );
        }
        assert_eq!(queued_incidents(&app, &beta_analyst, "beta").await, vec![]);
        let settled: Vec<service::ReviewItem> = app
            .review_list(&beta_analyst, "beta", None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.incident_id.as_deref() == Some(incidents[1].id.as_str()))
            .collect();
        assert_eq!(settled.len(), 1, "{label}: {settled:?}");
        assert_eq!(
            (
                settled[0].state.as_str(),
                settled[0].resolved_by.as_deref(),
                settled[0].resolution.clone()
            ),
            (
                "accepted",
                Some("system:recompute"),
                Some(serde_json::json!({"remapped_under": "17.1"}))
            ),
            "{label}"
        );
        assert_release_reasons_agree(&app, &beta_analyst, "beta", label).await;

        // The first org: the incident on the corrupt alert stays queued and
        // stale under 18.1, as before.
        let acme_analyst = member(&acme, "ann", Role::Analyst);
        let now = app
            .incident_profile(&acme_analyst, "acme", &incidents[0].id)
            .await
            .unwrap();
        assert!(now.stale && now.profile.iter().all(|e| e.stale), "{label}");
        let queued = queued_incidents(&app, &acme_analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        assert_eq!(
            (&queued[0].0, &queued[0].2),
            (&incidents[0].id, &strings(&["release_activated"])),
            "{label}"
        );
        assert_release_reasons_agree(&app, &acme_analyst, "acme", label).await;
    }
}

/// Reopening an incident whose alerts are still mapped under an older
/// release than the active one (their re-mapping failed) queues it with
/// `release_activated` beside `reopened`, as its profile shows it. The new
/// item held `reopened` alone: the release's reason is derived on read,
/// not kept on the incident, so reopening lost it.
#[tokio::test]
async fn reopening_after_a_failed_remap_queues_the_release_reason_again() {
    let carrier = mapped_carrier();
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        let x = incident_on(&app, &acme, &carrier).await;
        let stored = set_stored_raw(&app, &acme, &carrier, "not json").await;
        activate_release(&app, "enterprise-attack-17.1.json.gz").await;
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        assert_eq!(queued[0].2, strings(&["release_activated"]), "{label}");

        // Resolved: its item is resolved with it.
        app.set_incident_status(&analyst, "acme", &x.id, "resolved")
            .await
            .unwrap();
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);

        // Reopened while still mapped under 18.1: both reasons, the
        // release's naming the active release.
        app.set_incident_status(&analyst, "acme", &x.id, "reopened")
            .await
            .unwrap();
        let reopened = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(reopened.len(), 1, "{label}: {reopened:?}");
        assert_ne!(reopened[0].1, queued[0].1, "{label}: a new item");
        assert_eq!(
            (&reopened[0].0, &reopened[0].2),
            (&x.id, &strings(&["reopened", "release_activated"])),
            "{label}"
        );
        let item = review_item(&app, &analyst, "acme", &reopened[0].1).await;
        assert_eq!(
            item.stale_reasons,
            Some(vec![
                serde_json::json!({"reason": "reopened"}),
                serde_json::json!({"reason": "release_activated", "release": "17.1"}),
            ]),
            "{label}"
        );
        let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
        assert_eq!(
            shown_reasons(&now),
            strings(&["reopened", "release_activated"]),
            "{label}"
        );
        assert_release_reasons_agree(&app, &analyst, "acme", label).await;

        // Repaired and re-mapped: the release's reason leaves the item,
        // which stays open for the reopening.
        set_stored_raw(&app, &acme, &carrier, &stored).await;
        app.remap_org(&engineer, "acme", &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(
            queued_incidents(&app, &analyst, "acme").await,
            vec![(x.id.clone(), reopened[0].1.clone(), strings(&["reopened"]))],
            "{label}"
        );
        assert_release_reasons_agree(&app, &analyst, "acme", label).await;
    }
}

/// Resolving or closing an incident resolves its open review item in the
/// same change (`accepted` by `system:status`, the resolution naming the
/// status, audited, with no time to validate: the product closed it); the
/// stale mark stays, and
/// reopening queues the incident again with every reason. A status change
/// that finds no open item resolves none.
#[tokio::test]
async fn resolving_or_closing_an_incident_resolves_its_review_item() {
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let analyst = member(&acme, "ann", Role::Analyst);
        let admin = member(&acme, "ada", Role::Admin);
        let input = IncidentInput {
            title: "x".into(),
            ..IncidentInput::default()
        };
        let x = app.create_incident(&analyst, "acme", input).await.unwrap();

        app.set_incident_severity(&analyst, "acme", &x.id, "critical")
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        let first = queued[0].1.clone();

        // Resolved: the item is resolved with the status as its reason.
        let resolved = app
            .set_incident_status(&analyst, "acme", &x.id, "resolved")
            .await
            .unwrap();
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);
        let item = review_item(&app, &analyst, "acme", &first).await;
        assert_eq!(item.state, "accepted", "{label}");
        assert_eq!(item.resolved_by.as_deref(), Some("system:status"));
        assert_eq!(
            item.resolution,
            Some(serde_json::json!({"incident_status": "resolved"})),
            "{label}"
        );
        // The product closed it: no one validated, so no time to validate.
        assert_eq!(item.time_to_validate_ms, None, "{label}");
        assert!(resolved.stale, "{label}: nobody reviewed the profile");
        let reasons: Vec<&str> = resolved
            .stale_reasons
            .iter()
            .map(|r| r["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["severity_shift"], "{label}");

        // Reopened: a new item holding every reason since the last review.
        app.set_incident_status(&analyst, "acme", &x.id, "reopened")
            .await
            .unwrap();
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        assert_eq!(queued[0].0, x.id, "{label}");
        assert_ne!(queued[0].1, first, "{label}: a new item");
        assert_eq!(
            queued[0].2,
            strings(&["severity_shift", "reopened"]),
            "{label}"
        );
        let second = queued[0].1.clone();

        // Closed: that item is resolved too; closing again finds none.
        app.set_incident_status(&analyst, "acme", &x.id, "closed")
            .await
            .unwrap();
        assert_eq!(queued_incidents(&app, &analyst, "acme").await, vec![]);
        let item = review_item(&app, &analyst, "acme", &second).await;
        assert_eq!(
            (item.state.as_str(), item.resolved_by.as_deref()),
            ("accepted", Some("system:status")),
            "{label}"
        );
        assert_eq!(
            item.resolution,
            Some(serde_json::json!({"incident_status": "closed"}))
        );
        app.set_incident_status(&analyst, "acme", &x.id, "closed")
            .await
            .unwrap();

        // Audited: each resolution with its time to validate, and each
        // status change with the items it resolved.
        let events = app
            .audit_list(
                &admin,
                &PageRequest {
                    cursor: None,
                    limit: Some(500),
                },
            )
            .await
            .unwrap()
            .items;
        for id in [&first, &second] {
            let item = review_item(&app, &analyst, "acme", id).await;
            let event = events
                .iter()
                .find(|e| e.action == "review_resolve" && &e.target_id == id)
                .unwrap_or_else(|| panic!("{label}: no review_resolve event for {id}"));
            assert_eq!(event.actor, "ann", "{label}");
            assert_eq!(event.details["resolved_by"], "system:status");
            assert!(item.resolved_at.is_some(), "{label}: {item:?}");
            assert_eq!(event.details["time_to_validate_ms"], Value::Null, "{label}");
        }
        // Listed newest first.
        let status_changes: Vec<(String, Value)> = events
            .iter()
            .rev()
            .filter(|e| e.action == "incident_status")
            .map(|e| {
                (
                    e.details["to"].as_str().unwrap().to_string(),
                    e.details["resolved_reviews"].clone(),
                )
            })
            .collect();
        assert_eq!(
            status_changes,
            vec![
                ("resolved".to_string(), serde_json::json!([first])),
                ("reopened".to_string(), serde_json::json!([])),
                ("closed".to_string(), serde_json::json!([second])),
                ("closed".to_string(), serde_json::json!([])),
            ],
            "{label}"
        );
    }
}

/// Staleness triggers on one incident at the same time each keep their
/// reason, on the incident and in its one review item, and two lead
/// adjustments at the same time both land: each change reads the incident
/// inside its transaction with the row locked. Reading it before the
/// transaction let the last writer overwrite the others' reasons, and two
/// adjustments count the same version.
#[tokio::test]
async fn concurrent_staleness_triggers_keep_every_reason() {
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let analyst = member(&acme, "ann", Role::Analyst);
        let lead = member(&acme, "lea", Role::Lead);
        for round in 0..6 {
            let input = IncidentInput {
                title: format!("round {round}"),
                ..IncidentInput::default()
            };
            let x = app.create_incident(&analyst, "acme", input).await.unwrap();
            let (severity, ticket, url) = tokio::join!(
                app.set_incident_severity(&analyst, "acme", &x.id, "critical"),
                app.add_incident_evidence(&analyst, "acme", &x.id, "ticket", "INC-1"),
                app.add_incident_evidence(&analyst, "acme", &x.id, "url", "https://ex/1"),
            );
            severity.unwrap();
            ticket.unwrap();
            url.unwrap();

            let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
            let mut kept: Vec<String> = now
                .stale_reasons
                .iter()
                .map(|r| match r["reason"].as_str().unwrap() {
                    "evidence_update" => r["fields"][0].as_str().unwrap().to_string(),
                    other => other.to_string(),
                })
                .collect();
            kept.sort();
            let want = strings(&["evidence.ticket", "evidence.url", "severity_shift"]);
            assert_eq!(kept, want, "{label} round {round}: on the incident");
            assert_eq!(now.severity, "critical", "{label} round {round}");
            assert_eq!(now.evidence.len(), 2, "{label} round {round}");

            let queued: Vec<_> = queued_incidents(&app, &analyst, "acme")
                .await
                .into_iter()
                .filter(|(incident, _, _)| *incident == x.id)
                .collect();
            assert_eq!(queued.len(), 1, "{label} round {round}: one item");
            let item = review_item(&app, &analyst, "acme", &queued[0].1).await;
            let mut held: Vec<String> = item
                .stale_reasons
                .unwrap_or_default()
                .iter()
                .map(|r| match r["reason"].as_str().unwrap() {
                    "evidence_update" => r["fields"][0].as_str().unwrap().to_string(),
                    other => other.to_string(),
                })
                .collect();
            held.sort();
            assert_eq!(held, want, "{label} round {round}: in the review item");

            // Two lead adjustments at the same time: both land, with
            // consecutive versions, and the last clears every reason.
            let (first, second) = tokio::join!(
                app.adjust_incident(&lead, "acme", &x.id, adjustment("add", "T1078", Some("a"))),
                app.adjust_incident(&lead, "acme", &x.id, adjustment("add", "T1133", Some("b"))),
            );
            first.unwrap();
            second.unwrap();
            let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
            let mut versions: Vec<i64> = now.adjustments.iter().map(|a| a.version).collect();
            versions.sort();
            assert_eq!(versions, [1, 2], "{label} round {round}");
            assert!(!now.stale && now.stale_reasons.is_empty(), "{label}");
        }
    }
}

/// Rejecting an incident's review item tells the leads that the stale
/// profile needs them (accepting it does not): a notification for the
/// role `lead` naming the incident, its lead, the reasons and the
/// analyst's notes, stored with the resolution and named by its audit
/// event.
#[tokio::test]
async fn rejecting_an_incident_review_notifies_the_leads() {
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let analyst = member(&acme, "ann", Role::Analyst);
        let lead = member(&acme, "lea", Role::Lead);
        let admin = member(&acme, "ada", Role::Admin);
        let page = PageRequest {
            cursor: None,
            limit: Some(100),
        };
        let create = |title: &str| IncidentInput {
            title: title.into(),
            lead: Some("lea".into()),
            ..IncidentInput::default()
        };
        let kept = app
            .create_incident(&analyst, "acme", create("kept"))
            .await
            .unwrap();
        let rejected = app
            .create_incident(&analyst, "acme", create("phishing wave"))
            .await
            .unwrap();
        for id in [&kept.id, &rejected.id] {
            app.set_incident_severity(&analyst, "acme", id, "high")
                .await
                .unwrap();
        }
        let items = queued_incidents(&app, &analyst, "acme").await;
        let item_of = |incident: &str| {
            items
                .iter()
                .find(|(i, _, _)| i == incident)
                .map(|(_, item, _)| item.clone())
                .unwrap()
        };

        app.review_decide(
            &analyst,
            "acme",
            &item_of(&kept.id),
            service::ReviewDecision::Accept,
            None,
        )
        .await
        .unwrap();
        let before = app.notification_page(&lead, &page).await.unwrap().items;
        assert_eq!(before.len(), 0, "{label}: accepting notifies nobody");

        let item = item_of(&rejected.id);
        let done = app
            .review_decide(
                &analyst,
                "acme",
                &item,
                service::ReviewDecision::Reject,
                Some("T1566 no longer fits the new severity"),
            )
            .await
            .unwrap();
        assert_eq!(done.state, "rejected", "{label}");
        let notes = app.notification_page(&lead, &page).await.unwrap().items;
        assert_eq!(notes.len(), 1, "{label}: {notes:?}");
        let note = &notes[0];
        assert_eq!(note.kind, service::INCIDENT_REVIEW_REJECTED);
        assert_eq!(note.recipient, "lead");
        assert_eq!(note.subject, Some(format!("incident:{}", rejected.id)));
        assert_eq!(note.alert_id, None);
        for part in [
            "ann rejected",
            item.as_str(),
            rejected.id.as_str(),
            "phishing wave",
            "severity_shift",
            "its lead, lea",
            "T1566 no longer fits the new severity",
        ] {
            assert!(note.message.contains(part), "{label}: `{part}` in {note:?}");
        }
        // The stale mark stays for the lead.
        let now = app
            .incident_profile(&analyst, "acme", &rejected.id)
            .await
            .unwrap();
        assert!(now.stale, "{label}");

        let events = app.audit_list(&admin, &page).await.unwrap().items;
        let event = events
            .iter()
            .find(|e| e.action == "review_resolve" && e.target_id == item)
            .unwrap();
        assert_eq!(event.details["notification"], note.id, "{label}");
        // The leads' list of the org shows it as well.
        let listed = app.notifications(&lead, "acme").await.unwrap();
        assert!(listed.iter().any(|n| n.id == note.id), "{label}");
    }
}

/// A refused change answers `conflict` with structured details naming the
/// state it met: a merged incident names the incident it was merged into
/// and the survivor at the end of its merge chain; a review item that is no
/// longer open names its state and who resolved it.
#[tokio::test]
async fn conflicts_name_the_state_they_met() {
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let analyst = member(&acme, "ann", Role::Analyst);
        let lead = member(&acme, "lea", Role::Lead);
        let x = app
            .create_incident(&analyst, "acme", titled("x"))
            .await
            .unwrap();
        let y = app
            .create_incident(&analyst, "acme", titled("y"))
            .await
            .unwrap();
        let z = app
            .create_incident(&analyst, "acme", titled("z"))
            .await
            .unwrap();

        // Y into X: a change to Y names X as both.
        app.merge_incidents(&analyst, "acme", &x.id, &y.id)
            .await
            .unwrap();
        let err = app
            .set_incident_severity(&analyst, "acme", &y.id, "low")
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.kind()), ("conflict", ErrorKind::Conflict));
        assert_eq!(
            err.details(),
            Some(serde_json::json!({
                "incident": y.id, "state": "merged", "merged_into": x.id, "survivor": x.id,
            })),
            "{label}: {err}"
        );

        // X into Z: Y's alerts serve Z now, the survivor of its chain.
        app.merge_incidents(&analyst, "acme", &z.id, &x.id)
            .await
            .unwrap();
        let expected = serde_json::json!({
            "incident": y.id, "state": "merged", "merged_into": x.id, "survivor": z.id,
        });
        let refusals = [
            app.add_incident_evidence(&analyst, "acme", &y.id, "ticket", "INC-9")
                .await
                .unwrap_err(),
            app.set_incident_status(&analyst, "acme", &y.id, "closed")
                .await
                .unwrap_err(),
            app.attach_alerts(&analyst, "acme", &y.id, &[])
                .await
                .unwrap_err(),
            app.merge_incidents(&analyst, "acme", &z.id, &y.id)
                .await
                .unwrap_err(),
            app.adjust_incident(
                &lead,
                "acme",
                &y.id,
                adjustment("add", "T1078", Some("valid accounts")),
            )
            .await
            .unwrap_err(),
        ];
        for err in refusals {
            assert_eq!(err.code(), "conflict", "{label}: {err}");
            assert_eq!(err.details(), Some(expected.clone()), "{label}: {err}");
            assert!(err.to_string().contains(z.id.as_str()), "{label}: {err}");
        }

        // Blank alert references name nothing: refused like none at all,
        // and nothing changes (they were a successful no-op that bumped
        // the incident and wrote an audit event).
        let before = app.incident_profile(&analyst, "acme", &z.id).await.unwrap();
        for blanks in [vec![" ".to_string()], vec![String::new(), "\t".to_string()]] {
            let attach = app.attach_alerts(&analyst, "acme", &z.id, &blanks).await;
            let detach = app.detach_alerts(&analyst, "acme", &z.id, &blanks).await;
            for err in [attach.unwrap_err(), detach.unwrap_err()] {
                assert_eq!(err.code(), "invalid_input", "{label}: {err}");
            }
        }
        let after = app.incident_profile(&analyst, "acme", &z.id).await.unwrap();
        assert_eq!(after.updated_at, before.updated_at, "{label}");
        assert_eq!(after.alerts, before.alerts, "{label}");
        // So does a create naming only blanks (leaving them out makes an
        // incident without alerts), and no incident is made.
        let page = PageRequest {
            cursor: None,
            limit: Some(100),
        };
        let count = |items: &[service::IncidentSummary]| items.len();
        let listed = app.list_incidents(&analyst, "acme", &page).await.unwrap();
        let blank = IncidentInput {
            title: "blank".into(),
            alerts: vec![" ".into()],
            ..IncidentInput::default()
        };
        let err = app
            .create_incident(&analyst, "acme", blank)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_input", "{label}: {err}");
        let now = app.list_incidents(&analyst, "acme", &page).await.unwrap();
        assert_eq!(count(&now.items), count(&listed.items), "{label}");

        // A review item decided twice: the second names its state.
        let queued = queued_incidents(&app, &analyst, "acme").await;
        let item = queued
            .iter()
            .find(|(incident, _, _)| *incident == z.id)
            .map(|(_, item, _)| item.clone())
            .unwrap();
        app.review_decide(
            &analyst,
            "acme",
            &item,
            service::ReviewDecision::Reject,
            None,
        )
        .await
        .unwrap();
        let resolved = review_item(&app, &analyst, "acme", &item).await;
        let err = app
            .review_decide(&lead, "acme", &item, service::ReviewDecision::Accept, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{label}: {err}");
        assert_eq!(
            err.details(),
            Some(serde_json::json!({
                "review": item, "alert": null, "incident": z.id, "state": "rejected",
                "resolved_by": "ann", "resolved_at": resolved.resolved_at,
            })),
            "{label}"
        );
    }
}

/// Two attaches of the same alerts to one incident at the same time both
/// succeed: attaching is idempotent, so the one that comes second finds
/// the alerts attached and leaves them as they are (one live attachment
/// each). It used to answer a bare 409 and attach none of its alerts.
#[tokio::test]
async fn concurrent_attaches_of_the_same_alerts_both_succeed() {
    let raw = raw_alerts();
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        let admin = member(&acme, "ada", Role::Admin);
        ingest_feed(&app, &engineer).await;

        for round in 0..4 {
            let uids: Vec<String> = (0..4).map(|n| raw[4 * round + n].uid.clone()).collect();
            let input = IncidentInput {
                title: format!("round {round}"),
                alerts: uids[0..1].to_vec(),
                ..IncidentInput::default()
            };
            let x = app.create_incident(&analyst, "acme", input).await.unwrap();
            // Both name alert 2; the first also names 1, the second 3.
            let first_named = vec![uids[1].clone(), uids[2].clone()];
            let second_named = vec![uids[2].clone(), uids[3].clone()];
            let (first, second) = tokio::join!(
                app.attach_alerts(&analyst, "acme", &x.id, &first_named),
                app.attach_alerts(&analyst, "acme", &x.id, &second_named),
            );
            let first = first.unwrap_or_else(|e| panic!("{label} round {round}: {e}"));
            let second = second.unwrap_or_else(|e| panic!("{label} round {round}: {e}"));
            for view in [&first, &second] {
                let shown: BTreeSet<&str> =
                    view.alerts.iter().map(|a| a.source_uid.as_str()).collect();
                assert!(shown.contains(uids[2].as_str()), "{label} round {round}");
            }
            let now = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
            let shown: Vec<&str> = now.alerts.iter().map(|a| a.source_uid.as_str()).collect();
            let mut want: Vec<&str> = uids.iter().map(String::as_str).collect();
            want.sort_by_key(|uid| {
                now.alerts
                    .iter()
                    .find(|a| a.source_uid == *uid)
                    .map(|a| a.id.clone())
            });
            assert_eq!(shown, want, "{label} round {round}: each alert once");
        }

        // Each alert was attached by exactly one of the two: the audit
        // events of the attaches name every alert once between them.
        let events = app
            .audit_list(
                &admin,
                &PageRequest {
                    cursor: None,
                    limit: Some(500),
                },
            )
            .await
            .unwrap()
            .items;
        let attached: Vec<String> = events
            .iter()
            .filter(|e| e.action == "incident_attach")
            .flat_map(|e| {
                e.details["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.as_str().unwrap_or_default().to_string())
            })
            .collect();
        let distinct: BTreeSet<&String> = attached.iter().collect();
        assert_eq!(attached.len(), 4 * 3, "{label}: {attached:?}");
        assert_eq!(distinct.len(), 4 * 3, "{label}: attached once each");
    }
}

/// An incident's stale reasons hold each distinct reason once, as its
/// review item does: two merges give one `merged` and two references of
/// one kind one `evidence_update` (they repeated on the incident). A
/// reason with other details is another reason: evidence of another kind,
/// and two severity shifts between different severities, stay apart.
#[tokio::test]
async fn stale_reasons_hold_each_reason_once() {
    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let analyst = member(&acme, "ann", Role::Analyst);
        let a = app
            .create_incident(&analyst, "acme", titled("a"))
            .await
            .unwrap();
        for title in ["b", "c"] {
            let absorbed = app
                .create_incident(&analyst, "acme", titled(title))
                .await
                .unwrap();
            app.set_incident_severity(&analyst, "acme", &absorbed.id, "critical")
                .await
                .unwrap();
            app.merge_incidents(&analyst, "acme", &a.id, &absorbed.id)
                .await
                .unwrap();
            // The absorbed incident takes no change and its item is
            // resolved: it shows no stale mark nobody could clear.
            let gone = app
                .incident_profile(&analyst, "acme", &absorbed.id)
                .await
                .unwrap();
            assert!(
                !gone.stale && gone.stale_reasons.is_empty(),
                "{label}: {gone:?}"
            );
        }
        for (kind, reference) in [
            ("ticket", "INC-1"),
            ("ticket", "INC-2"),
            ("url", "https://ex/1"),
        ] {
            app.add_incident_evidence(&analyst, "acme", &a.id, kind, reference)
                .await
                .unwrap();
        }
        for severity in ["high", "low", "high"] {
            app.set_incident_severity(&analyst, "acme", &a.id, severity)
                .await
                .unwrap();
        }

        let want = vec![
            serde_json::json!({"reason": "merged"}),
            serde_json::json!({"reason": "evidence_update", "fields": ["evidence.ticket"]}),
            serde_json::json!({"reason": "evidence_update", "fields": ["evidence.url"]}),
            serde_json::json!({"reason": "severity_shift", "from": "medium", "to": "high"}),
            serde_json::json!({"reason": "severity_shift", "from": "high", "to": "low"}),
            serde_json::json!({"reason": "severity_shift", "from": "low", "to": "high"}),
        ];
        let view = app.incident_profile(&analyst, "acme", &a.id).await.unwrap();
        assert_eq!(view.stale_reasons, want, "{label}: on the incident");
        let queued = queued_incidents(&app, &analyst, "acme").await;
        assert_eq!(queued.len(), 1, "{label}: {queued:?}");
        let item = review_item(&app, &analyst, "acme", &queued[0].1).await;
        assert_eq!(
            item.stale_reasons,
            Some(want),
            "{label}: in the review item"
        );
    }
}

/// A finished (resolved or closed) incident is not queued again by a
/// severity change, new evidence, a merge into it or a split of it: its
/// profile waits for nobody's review. It keeps the stale mark with every
/// reason, which the lead sees, and reopening queues it with all of them.
/// The incident a split creates is open and queued.
#[tokio::test]
async fn finished_incidents_are_not_queued_again() {
    let uids: Vec<String> = raw_alerts().into_iter().map(|a| a.uid).collect();

    for db in databases().await {
        let label = db.label();
        let (app, acme) = app_with_acme(&db).await;
        let engineer = member(&acme, "eve", Role::Engineer);
        let analyst = member(&acme, "ann", Role::Analyst);
        ingest_feed(&app, &engineer).await;

        for (round, status) in ["resolved", "closed"].into_iter().enumerate() {
            // Two alerts x keeps, two split off it, two of y merged into it.
            let own = &uids[6 * round..6 * round + 6];
            let (kept, split_off, absorbed) = (&own[0..2], &own[2..4], own[4..6].to_vec());
            let input = |title: &str, alerts: Vec<String>| IncidentInput {
                title: title.into(),
                alerts,
                ..IncidentInput::default()
            };
            let both: Vec<String> = kept.iter().chain(split_off).cloned().collect();
            let x = app
                .create_incident(&analyst, "acme", input("x", both))
                .await
                .unwrap();
            let y = app
                .create_incident(&analyst, "acme", input("y", absorbed))
                .await
                .unwrap();
            app.set_incident_status(&analyst, "acme", &x.id, status)
                .await
                .unwrap();

            app.set_incident_severity(&analyst, "acme", &x.id, "critical")
                .await
                .unwrap();
            app.add_incident_evidence(&analyst, "acme", &x.id, "ticket", "INC-1")
                .await
                .unwrap();
            app.merge_incidents(&analyst, "acme", &x.id, &y.id)
                .await
                .unwrap();
            let split = app
                .split_incident(&analyst, "acme", &x.id, split_off)
                .await
                .unwrap();

            let queued = queued_incidents(&app, &analyst, "acme").await;
            let of = |id: &str| -> Vec<Vec<String>> {
                queued
                    .iter()
                    .filter(|(i, _, _)| i == id)
                    .map(|(_, _, reasons)| reasons.clone())
                    .collect()
            };
            assert_eq!(
                of(&x.id),
                Vec::<Vec<String>>::new(),
                "{label} {status}: {queued:?}"
            );
            assert_eq!(of(&split.id), vec![strings(&["split"])], "{label} {status}");
            let all = strings(&["severity_shift", "evidence_update", "merged", "split"]);
            let view = app.incident_profile(&analyst, "acme", &x.id).await.unwrap();
            assert_eq!(view.status, status, "{label}");
            assert!(view.stale, "{label} {status}: the lead sees it");
            assert_eq!(shown_reasons(&view), all, "{label} {status}");

            app.set_incident_status(&analyst, "acme", &x.id, "reopened")
                .await
                .unwrap();
            let queued = queued_incidents(&app, &analyst, "acme").await;
            let mut reopened = all.clone();
            reopened.push("reopened".into());
            let held: Vec<&Vec<String>> = queued
                .iter()
                .filter(|(i, _, _)| *i == x.id)
                .map(|(_, _, reasons)| reasons)
                .collect();
            assert_eq!(held, vec![&reopened], "{label} {status}");
        }
    }
}
