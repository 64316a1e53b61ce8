//! The mapping engine end to end on a real database (SQLite always,
//! PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set): Sigma packs, alert
//! ingestion, rules, simulation, rollback, overrides and the review queue.
//! Expected values are computed here from the raw Sigma YAML and NDJSON,
//! not by the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::PathBuf;

use serde_json::Value;
use service::{
    Actor, App, AppConfig, ErrorKind, OverrideInput, ReviewDecision, Role, ServiceError,
};
use store::testing::databases;

mod support;
use support::{activate_release, app_with_18_1, approved_release, member, shared, steward};

fn sigma_pack(name: &str) -> PathBuf {
    shared().join("sigma").join(name)
}

fn regression_alerts() -> PathBuf {
    shared().join("alerts/sigma-regression-alerts.ndjson")
}

const FIRST_PACK: &str = "sigma-rules-c5e6d0ecd.tar.gz";
const SECOND_PACK: &str = "sigma-rules-8eaafff1f.tar.gz";

/// Sigma rules read straight from the archive: id -> (status, lowercased tags).
/// Files in name order; a later file with the same id replaces the earlier.
fn raw_sigma_rules(name: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let file = std::fs::File::open(sigma_pack(name)).unwrap();
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
        let tags = doc
            .get("tags")
            .and_then(|v| v.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|t| t.as_str())
                    .map(|t| t.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        rules.insert(id.to_string(), (status, tags));
    }
    rules
        .into_iter()
        .filter(|(_, (status, _))| status != "deprecated" && status != "unsupported")
        .collect()
}

/// The technique ids (`T1059.001`) of a rule's `attack.t*` tags.
fn technique_tags(tags: &[String]) -> BTreeSet<String> {
    let re = regex::Regex::new(r"^attack\.(t\d{4}(\.\d{3})?)$").unwrap();
    tags.iter()
        .filter_map(|t| re.captures(t).map(|c| c[1].to_ascii_uppercase()))
        .collect()
}

fn raw_alerts() -> Vec<Value> {
    std::fs::read_to_string(regression_alerts())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn techniques(view: &service::AlertMappingView) -> BTreeSet<String> {
    view.canonical
        .entries
        .iter()
        .map(|e| e.technique.clone())
        .collect()
}

fn invalid_field(error: &ServiceError) -> Option<&str> {
    match error {
        ServiceError::InvalidInput { field, .. } => Some(field),
        _ => None,
    }
}

#[tokio::test]
async fn sigma_packs_map_the_regression_alerts_and_people_correct_them() {
    let first = raw_sigma_rules(FIRST_PACK);
    let expected_technique_tags: usize = first
        .values()
        .map(|(_, tags)| technique_tags(tags).len())
        .sum();
    let alerts = raw_alerts();
    assert_eq!(alerts.len(), 111);
    let expected: BTreeMap<String, BTreeSet<String>> = alerts
        .iter()
        .map(|a| {
            let uid = a["finding_info"]["uid"].as_str().unwrap().to_string();
            let rule = a["finding_info"]["analytic"]["uid"].as_str().unwrap();
            let set = first
                .get(rule)
                .map(|(_, tags)| technique_tags(tags))
                .unwrap_or_default();
            (uid, set)
        })
        .collect();
    let expected_unmapped = expected.values().filter(|s| s.is_empty()).count();
    assert!(
        expected_unmapped > 0,
        "the feed has alerts without technique tags"
    );

    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let operator = Actor::operator("op");
        let org = app.create_org(&operator, "acme").await.unwrap();
        let engineer = member(&org, "eve", Role::Engineer);
        let lead = member(&org, "lea", Role::Lead);
        let analyst = member(&org, "ann", Role::Analyst);

        // First pack: every technique tag is valid in 18.1.
        let import = app
            .import_sigma(&engineer, "acme", &sigma_pack(FIRST_PACK))
            .await
            .unwrap();
        let report = &import.report;
        assert_eq!(
            report.tags_by_kind.technique.valid, expected_technique_tags,
            "{label}"
        );
        assert_eq!(
            (
                report.tags.unknown,
                report.tags.revoked,
                report.tags.deprecated
            ),
            (0, 0, 0),
            "{label}: {:?}",
            report.problems.first()
        );
        assert_eq!(report.rules, first.len(), "{label}");
        let stored = app
            .rule_pack_import(&engineer, "acme", &import.import_id)
            .await
            .unwrap();
        assert_eq!(&stored, report, "{label}: the report is stored");

        let active_rules = |org_id: store::OrgId| {
            let app = &app;
            async move {
                app.store()
                    .rules(&store::OrgScope::new(org_id), Some("active"))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| (r.id, r.version))
                    .collect::<BTreeMap<String, i64>>()
            }
        };
        // What each active rule maps: its techniques (in any order) and
        // its confidence, read from the stored definitions.
        let active_mappings = |org_id: store::OrgId| {
            let app = &app;
            async move {
                app.store()
                    .rules(&store::OrgScope::new(org_id), Some("active"))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| {
                        let definition: Value = serde_json::from_str(&r.definition).unwrap();
                        let mut techniques: Vec<String> = definition["techniques"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(Value::to_string)
                            .collect();
                        techniques.sort();
                        (r.id, (techniques, definition["confidence"].to_string()))
                    })
                    .collect::<BTreeMap<String, (Vec<String>, String)>>()
            }
        };
        let first_active = active_rules(org.id.clone()).await;
        let first_mappings = active_mappings(org.id.clone()).await;
        assert_eq!(first_active.len(), import.report.mapped_rules, "{label}");
        // Regression: the listing shows each rule's techniques, the tags of
        // its Sigma rule (it once showed none).
        let listed = app
            .list_rules(&engineer, "acme", Some("active"))
            .await
            .unwrap();
        let mut compared = 0;
        for rule in &listed {
            let Some((_, tags)) = rule.id.strip_prefix("sigma:").and_then(|id| first.get(id))
            else {
                continue;
            };
            let shown: BTreeSet<String> = rule.techniques.iter().map(|(t, _)| t.clone()).collect();
            assert_eq!(shown, technique_tags(tags), "{label}: rule {}", rule.id);
            compared += 1;
        }
        assert_eq!(
            compared,
            listed.len(),
            "{label}: every listed rule compared"
        );

        // Second pack, in another org: tags 18.1 does not know are reported.
        let beta_org = app.create_org(&operator, "beta").await.unwrap();
        let beta = app
            .import_sigma(&operator, "beta", &sigma_pack(SECOND_PACK))
            .await
            .unwrap();
        for tag in ["attack.t1685", "attack.stealth"] {
            assert!(
                beta.report
                    .problems
                    .iter()
                    .any(|p| p.tag == tag && serde_json::to_value(p.status).unwrap() == "unknown"),
                "{label}: {tag} reported unknown"
            );
        }

        // Regression: going back to the older pack and forward again
        // reactivates the stored versions instead of failing on them.
        // Going back, every rule maps as the older pack says (a rule the
        // two packs map alike keeps its version: its dates alone changed).
        let second_active = active_rules(beta_org.id.clone()).await;
        app.import_sigma(&operator, "beta", &sigma_pack(FIRST_PACK))
            .await
            .unwrap();
        let back = active_mappings(beta_org.id.clone()).await;
        for (id, mapped) in &first_mappings {
            assert_eq!(back.get(id), Some(mapped), "{label}: rule {id}");
        }
        let forward = app
            .import_sigma(&operator, "beta", &sigma_pack(SECOND_PACK))
            .await
            .unwrap();
        assert!(forward.new_versions > 0, "{label}");
        let forward_active = active_rules(beta_org.id.clone()).await;
        for (id, version) in &second_active {
            assert_eq!(forward_active.get(id), Some(version), "{label}: rule {id}");
        }

        // Ingest with a malformed line 5: it is rejected, the rest stored.
        let mut lines: Vec<String> = alerts.iter().map(|a| a.to_string()).collect();
        lines.insert(4, "{\"class_uid\": 2004, broken".to_string());
        let feed = lines.join("\n").into_bytes();
        let ingest = app
            .ingest_alerts(
                &engineer,
                "acme",
                Box::new(BufReader::new(std::io::Cursor::new(feed.clone()))),
            )
            .await
            .unwrap();
        assert_eq!(ingest.ingested, 111, "{label}");
        assert_eq!(ingest.rejected, 1, "{label}");
        assert_eq!(ingest.errors[0].line, 5, "{label}");
        assert_eq!(ingest.errors[0].code, "invalid_json", "{label}");
        assert_eq!(ingest.unmapped, expected_unmapped, "{label}");
        assert_eq!(ingest.mapped, 111 - expected_unmapped, "{label}");

        // Each alert's canonical mapping equals its rule's technique tags,
        // and the output validates against the published schema.
        let schema = service::alert_mapping_schema();
        for (uid, want) in &expected {
            let view = app.alert_mapping(&analyst, "acme", uid).await.unwrap();
            assert_eq!(&techniques(&view), want, "{label}: alert {uid}");
            assert_eq!(view.canonical.release, "18.1");
            let problems = service::check_schema(&schema, &serde_json::to_value(&view).unwrap());
            assert!(problems.is_empty(), "{label}: {problems:?}");
        }

        // Re-ingesting does not duplicate.
        let again = app
            .ingest_alerts(
                &engineer,
                "acme",
                Box::new(BufReader::new(std::io::Cursor::new(feed))),
            )
            .await
            .unwrap();
        assert_eq!((again.ingested, again.duplicates), (0, 111), "{label}");

        rules_simulate_create_update_rollback(&app, &engineer, &analyst, label).await;
        overrides_and_review(&app, &lead, &analyst, &expected, label).await;

        let verification = app.audit_verify(&operator).await.unwrap();
        assert!(verification.ok, "{label}: {:?}", verification.problem);
    }
}

/// Alerts whose title contains `needle`, case-insensitively, from the raw feed.
fn titles_with(needle: &str) -> BTreeSet<String> {
    raw_alerts()
        .iter()
        .filter(|a| {
            a["finding_info"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains(needle)
        })
        .map(|a| a["finding_info"]["uid"].as_str().unwrap().to_string())
        .collect()
}

fn rule_text(version: u32, technique: &str, confidence: f64) -> String {
    format!(
        "{{id: powershell-title, version: {version}, title: PowerShell in the title, \
         author: eve, rationale: the detection names PowerShell, confidence: {confidence}, \
         match: {{field: alert.title, contains: powershell}}, techniques: [{technique}]}}"
    )
}

async fn rules_simulate_create_update_rollback(
    app: &App,
    engineer: &Actor,
    analyst: &Actor,
    label: &str,
) {
    let hits = titles_with("powershell");
    assert!(!hits.is_empty());
    let some = hits.iter().next().unwrap().clone();

    // Refused: not a rule, an unknown technique, an analyst.
    let bad = app
        .save_rule(engineer, "acme", "{id: x, version: [", false)
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput, "{label}: {bad}");
    let unknown = app
        .save_rule(engineer, "acme", &rule_text(1, "T1685", 0.9), false)
        .await
        .unwrap_err();
    assert_eq!(
        invalid_field(&unknown).map(|f| f.starts_with("rule")),
        Some(true)
    );
    assert!(unknown.to_string().contains("T1685"), "{label}: {unknown}");
    let denied = app
        .save_rule(analyst, "acme", &rule_text(1, "T1059.001", 0.9), false)
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::Forbidden);

    // Simulation reports the alerts that would change and changes nothing.
    let before = app.alert_mapping(analyst, "acme", &some).await.unwrap();
    let simulation = app
        .simulate_rule(engineer, "acme", &rule_text(1, "T1059.001", 0.3))
        .await
        .unwrap();
    let simulated: BTreeSet<String> = simulation
        .changes
        .iter()
        .map(|c| c.source_uid.clone())
        .collect();
    let already: BTreeSet<String> = {
        let mut s = BTreeSet::new();
        for uid in &hits {
            let v = app.alert_mapping(analyst, "acme", uid).await.unwrap();
            // An alert whose rules already map T1059.001 without tactic does
            // not change.
            if v.canonical
                .entries
                .iter()
                .any(|e| e.technique == "T1059.001" && e.tactic.is_none())
            {
                s.insert(uid.clone());
            }
        }
        s
    };
    let want: BTreeSet<String> = hits.difference(&already).cloned().collect();
    assert_eq!(simulated, want, "{label}");
    assert_eq!(simulation.alerts_scanned, 111);
    let unchanged = app.alert_mapping(analyst, "acme", &some).await.unwrap();
    assert_eq!(
        unchanged.canonical.version, before.canonical.version,
        "{label}"
    );

    // Create v1 (low confidence: queued for review), update v2, roll back.
    let created = app
        .save_rule(engineer, "acme", &rule_text(1, "T1059.001", 0.3), false)
        .await
        .unwrap();
    assert_eq!(created.rule.version, 1);
    assert_eq!(created.reevaluated, hits.len(), "{label}");
    let v1 = app.alert_mapping(analyst, "acme", &some).await.unwrap();
    assert!(techniques(&v1).contains("T1059.001"), "{label}");
    assert!(v1.canonical.version > before.canonical.version);

    let updated = app
        .save_rule(engineer, "acme", &rule_text(2, "T1059.003", 0.9), true)
        .await
        .unwrap();
    assert_eq!(updated.previous_version, Some(1));
    let stale_version = app
        .save_rule(engineer, "acme", &rule_text(2, "T1059.003", 0.9), true)
        .await
        .unwrap_err();
    assert_eq!(stale_version.kind(), ErrorKind::InvalidInput);
    let v2 = app.alert_mapping(analyst, "acme", &some).await.unwrap();
    assert!(techniques(&v2).contains("T1059.003"), "{label}");

    let rolled = app
        .rollback_rule(engineer, "acme", "powershell-title")
        .await
        .unwrap();
    assert_eq!((rolled.rule.version, rolled.previous_version), (1, Some(2)));
    let back = app.alert_mapping(analyst, "acme", &some).await.unwrap();
    assert!(techniques(&back).contains("T1059.001"), "{label}");
    assert!(!techniques(&back).contains("T1059.003"), "{label}");
    let active: Vec<(String, i64)> = app
        .list_rules(engineer, "acme", Some("active"))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id == "powershell-title")
        .map(|r| (r.status, r.version))
        .collect();
    assert_eq!(active, vec![("active".to_string(), 1)], "{label}");

    // The low-confidence rule queued its alerts for review.
    let queue = app
        .review_list(analyst, "acme", Some("open"), 1000)
        .await
        .unwrap();
    let low: BTreeSet<String> = queue
        .iter()
        .filter(|i| i.reason == "low_confidence")
        .filter_map(|i| i.alert_id.clone())
        .collect();
    assert!(low.contains(&v1.alert.id), "{label}: {queue:?}");
    let item = queue.iter().find(|i| i.reason == "low_confidence").unwrap();
    let accepted = app
        .review_decide(
            analyst,
            "acme",
            &item.id,
            ReviewDecision::Accept,
            Some("ok"),
        )
        .await
        .unwrap();
    assert_eq!(accepted.state, "accepted");
    assert!(accepted.time_to_validate_ms.is_some_and(|ms| ms >= 0));
}

async fn overrides_and_review(
    app: &App,
    lead: &Actor,
    analyst: &Actor,
    expected: &BTreeMap<String, BTreeSet<String>>,
    label: &str,
) {
    let (uid, _) = expected.iter().find(|(_, s)| !s.is_empty()).unwrap();
    let before = app.alert_mapping(lead, "acme", uid).await.unwrap();
    let add = |technique: &str, reason: Option<&str>| OverrideInput {
        action: "add".into(),
        technique: technique.into(),
        reason: reason.map(str::to_string),
        ..OverrideInput::default()
    };

    // No reason code: refused, nothing changes.
    let refused = app
        .create_override(lead, "acme", uid, add("T1003", None))
        .await
        .unwrap_err();
    assert_eq!(
        invalid_field(&refused),
        Some("reason"),
        "{label}: {refused}"
    );

    // An analyst proposes; nothing changes until a lead approves.
    let proposal = app
        .create_override(
            analyst,
            "acme",
            uid,
            add("T1003", Some("missing_technique")),
        )
        .await
        .unwrap();
    assert!(!proposal.applied);
    // The proposer cannot decide their own proposal, even holding a lead's
    // role (four eyes); the refusal changes nothing.
    let same_person = Actor {
        role: Role::Lead,
        ..analyst.clone()
    };
    let self_approval = app
        .decide_override(&same_person, "acme", &proposal.r#override.id, true)
        .await
        .unwrap_err();
    assert_eq!(self_approval.code(), "four_eyes", "{label}");
    assert_eq!(self_approval.kind(), ErrorKind::Forbidden, "{label}");
    let same = app.alert_mapping(lead, "acme", uid).await.unwrap();
    assert_eq!(same.canonical.version, before.canonical.version, "{label}");
    let approved = app
        .decide_override(lead, "acme", &proposal.r#override.id, true)
        .await
        .unwrap();
    assert!(approved.applied);
    // Deciding it again is a conflict naming the decision it met.
    let again = app
        .decide_override(lead, "acme", &proposal.r#override.id, false)
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{label}");
    assert_eq!(
        again.details(),
        Some(serde_json::json!({
            "override": proposal.r#override.id,
            "status": "approved",
            "decision": {"id": approved.r#override.id, "status": "approved", "by": lead.name},
        })),
        "{label}"
    );
    let after = app.alert_mapping(lead, "acme", uid).await.unwrap();
    let mut want = techniques(&before);
    want.insert("T1003".into());
    assert_eq!(techniques(&after), want, "{label}");
    let manual = after
        .canonical
        .entries
        .iter()
        .find(|e| e.technique == "T1003")
        .unwrap();
    assert_eq!(manual.source, "manual");
    // The old mapping stays in the history.
    assert_eq!(
        after.history.last().map(|h| h.version),
        Some(after.canonical.version)
    );
    assert!(after.history.len() >= 2);

    // Flip-flops past the threshold (3) lock the alert and notify leads.
    let remove = OverrideInput {
        action: "remove".into(),
        technique: "T1003".into(),
        reason: Some("wrong_technique".into()),
        ..OverrideInput::default()
    };
    let mut locked = false;
    for step in 0..3 {
        let input = if step % 2 == 0 {
            remove.clone()
        } else {
            add("T1003", Some("missing_technique"))
        };
        locked = app
            .create_override(lead, "acme", uid, input)
            .await
            .unwrap()
            .locked;
    }
    assert!(locked, "{label}");
    let notes = app.notifications(lead, "acme").await.unwrap();
    assert_eq!(notes.len(), 1, "{label}");
    assert_eq!(notes[0].kind, "arbitration_lock");
    let blocked = app
        .create_override(
            analyst,
            "acme",
            uid,
            add("T1005", Some("missing_technique")),
        )
        .await
        .unwrap_err();
    assert_eq!(blocked.kind(), ErrorKind::Conflict, "{label}");
    let alert = app.alert_mapping(lead, "acme", uid).await.unwrap();
    assert_eq!(
        blocked.details(),
        Some(serde_json::json!({"alert": alert.alert.id, "state": "locked"})),
        "{label}"
    );
}

#[tokio::test]
async fn vendor_declared_techniques_and_changed_alerts() {
    let ocsf = |severity_id: i64, technique: &str| {
        serde_json::json!({
            "class_uid": 2004, "severity_id": severity_id, "time_dt": "2026-01-02T03:04:05Z",
            "metadata": {"product": {"name": "EDR"}},
            "finding_info": {"uid": "vendor-1", "title": "Credential dumping",
                "attacks": [{"technique": {"uid": technique}, "tactics": [{"uid": "TA0006"}]}]},
            "device": {"hostname": "h1"}
        })
    };
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;

        // The alert's own ATT&CK context is a rule-source candidate marked
        // vendor-declared, with the declared tactic.
        let report = app
            .ingest_alert_values(&engineer, "acme", vec![ocsf(3, "T1003.001")])
            .await
            .unwrap();
        assert_eq!((report.ingested, report.mapped), (1, 1), "{label}");
        let view = app
            .alert_mapping(&engineer, "acme", "vendor-1")
            .await
            .unwrap();
        assert_eq!(view.canonical.entries.len(), 1, "{label}");
        let entry = &view.canonical.entries[0];
        assert_eq!(
            (
                entry.technique.as_str(),
                entry.tactic.as_deref(),
                entry.source.as_str()
            ),
            ("T1003.001", Some("TA0006"), "rule")
        );
        assert!(entry.vendor_declared && view.candidates[0].vendor_declared);
        assert_eq!(view.candidates[0].release, "18.1");

        // The same uid again with another severity and technique: updated,
        // re-mapped to a new canonical version; the old one stays in history.
        let again = app
            .ingest_alert_values(&engineer, "acme", vec![ocsf(5, "T1003.002")])
            .await
            .unwrap();
        assert_eq!((again.ingested, again.updated), (0, 1), "{label}");
        let after = app
            .alert_mapping(&engineer, "acme", "vendor-1")
            .await
            .unwrap();
        assert_eq!(after.alert.severity, "critical", "{label}");
        assert!(!after.alert.stale);
        assert_eq!(
            techniques(&after),
            BTreeSet::from(["T1003.002".to_string()])
        );
        assert_eq!(after.canonical.cause, "alert_update");
        assert_eq!(after.history.len(), 2, "{label}");
        assert_eq!(
            after.alert.id, view.alert.id,
            "{label}: same alert, not a new one"
        );

        // Regression: a second update numbers its mapping after the stored
        // version (it once restarted from the first and collided).
        let third = app
            .ingest_alert_values(&engineer, "acme", vec![ocsf(4, "T1003.001")])
            .await
            .unwrap();
        assert_eq!(third.updated, 1, "{label}");
        let after = app
            .alert_mapping(&engineer, "acme", "vendor-1")
            .await
            .unwrap();
        assert_eq!(after.canonical.version, 3, "{label}");
        assert_eq!(after.history.len(), 3, "{label}");
        assert_eq!(after.alert.severity, "high", "{label}");
        assert_eq!(
            techniques(&after),
            BTreeSet::from(["T1003.001".to_string()])
        );

        // A newly activated release re-maps stored alerts under it.
        activate_release(&app, "enterprise-attack-17.1.json.gz").await;
        let remapped = app
            .alert_mapping(&engineer, "acme", "vendor-1")
            .await
            .unwrap();
        assert_eq!(remapped.canonical.release, "17.1", "{label}");
        assert_eq!(remapped.canonical.cause, "release_activated", "{label}");
        assert!(!remapped.alert.stale, "{label}");
        assert_eq!(techniques(&remapped), techniques(&after), "{label}");
    }
}

/// In a service (`remap_beside`), an activation returns once it has
/// committed and its re-map goes on beside the caller: nothing else
/// re-maps here, yet every alert ends up mapped under the new release and
/// no longer stale.
#[tokio::test]
async fn a_service_activation_returns_and_its_remap_goes_on_beside() {
    for db in databases().await {
        let label = db.label();
        let mut config = AppConfig::new(db.url.clone());
        config.remap_beside = true;
        let app = App::connect(config).await.unwrap();
        activate_release(&app, "enterprise-attack-18.1.json.gz").await;
        let engineer = acme_engineer(&app).await;
        let uids: Vec<String> = (0..1_200).map(|n| format!("bs-{n:05}")).collect();
        let alerts = uids.iter().map(|u| credential_dumping(u, 3)).collect();
        app.ingest_alert_values(&engineer, "acme", alerts)
            .await
            .unwrap();

        activate_release(&app, "enterprise-attack-17.1.json.gz").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        for uid in [&uids[0], &uids[599], &uids[1_199]] {
            loop {
                let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
                if view.canonical.release == "17.1" && !view.alert.stale {
                    assert_eq!(view.canonical.cause, "release_activated", "{label}");
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{label}: {uid} still under {} (stale: {})",
                    view.canonical.release,
                    view.alert.stale
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        // The activation's re-map is the org's run, as one asked for over
        // the API would be: an API caller waits for it and can follow it.
        let run = loop {
            let run = app.remap_run(&engineer, "acme").await.unwrap();
            if run.state != service::RemapState::Running {
                break run;
            }
            assert!(std::time::Instant::now() < deadline, "{label}: {run:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(run.state, service::RemapState::Finished, "{label}: {run:?}");
        assert_eq!((run.total, run.alerts), (1_200, 1_200), "{label}: {run:?}");
    }
}

/// A re-map that started before an activation stops once the release it
/// maps with is retired, rather than write that release's mappings over
/// the ones the activation's own re-map made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remap_stops_when_its_release_is_retired_under_it() {
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let uids: Vec<String> = (0..1_200).map(|n| format!("rt-{n:05}")).collect();
        let alerts = uids.iter().map(|u| credential_dumping(u, 3)).collect();
        app.ingest_alert_values(&engineer, "acme", alerts)
            .await
            .unwrap();

        // After the first page of 500, 17.1 is activated (and its re-map
        // runs to the end) before the re-map goes on.
        let (remapping, actor, activating) = (app.clone(), engineer.clone(), app.clone());
        let run = tokio::spawn(async move {
            let mut activated = false;
            let mut progress = move |_: usize, _: usize| {
                if !std::mem::replace(&mut activated, true) {
                    tokio::task::block_in_place(|| {
                        tokio::runtime::Handle::current().block_on(activate_release(
                            &activating,
                            "enterprise-attack-17.1.json.gz",
                        ))
                    });
                }
            };
            remapping.remap_org(&actor, "acme", &mut progress).await
        });
        let err = run.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{label}: {err}");
        for uid in [&uids[0], &uids[600], &uids[1_199]] {
            let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
            let state = (view.canonical.release.as_str(), view.alert.stale);
            assert_eq!(state, ("17.1", false), "{label}: {uid}");
        }
    }
}

/// The org `acme` with the engineer `eve`, who acts in the tests.
async fn acme_engineer(app: &App) -> Actor {
    let org = app
        .create_org(&Actor::operator("op"), "acme")
        .await
        .unwrap();
    member(&org, "eve", Role::Engineer)
}

/// An OCSF finding declaring T1003.
fn credential_dumping(uid: &str, severity_id: i64) -> Value {
    serde_json::json!({
        "class_uid": 2004, "severity_id": severity_id, "time_dt": "2026-01-02T03:04:05Z",
        "finding_info": {"uid": uid, "title": "Credential dumping",
            "attacks": [{"technique": {"uid": "T1003"}}]},
    })
}

/// [`credential_dumping`] findings of `uids`.
fn credential_dumps(uids: &[String], severity_id: i64) -> Vec<Value> {
    uids.iter()
        .map(|u| credential_dumping(u, severity_id))
        .collect()
}

/// Two ingestions updating the same stored alerts, one in the opposite
/// order of the other, both succeed: updates take the alerts' locks in key
/// order, and a deadlock PostgreSQL breaks anyway is tried again. (Found
/// by a trial: one ingestion failed with `deadlock detected`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestions_updating_the_same_alerts_in_opposite_orders_both_succeed() {
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let uids: Vec<String> = (0..2_000).map(|n| format!("op-{n:05}")).collect();
        let feed = |severity: i64| credential_dumps(&uids, severity);
        app.ingest_alert_values(&engineer, "acme", feed(3))
            .await
            .unwrap();
        let up = feed(4);
        let mut down = feed(5);
        down.reverse();
        // A re-map of the org beside them marks every alert stale in one
        // statement, which meets both ingestions' row locks.
        let mut quiet = |_: usize, _: usize| {};
        let (a, b, remap) = tokio::join!(
            app.ingest_alert_values(&engineer, "acme", up),
            app.ingest_alert_values(&engineer, "acme", down),
            app.remap_org(&engineer, "acme", &mut quiet)
        );
        let (alerts, _) = remap.unwrap_or_else(|e| panic!("{label}: re-map: {e}"));
        assert_eq!(alerts, uids.len(), "{label}");
        for report in [a, b] {
            let report = report.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(report.updated, uids.len(), "{label}: {report:?}");
        }
        for uid in [&uids[0], &uids[999], &uids[1_999]] {
            let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
            assert!(!view.alert.stale, "{label}: {uid}");
            assert!(
                ["high", "critical"].contains(&view.alert.severity.as_str()),
                "{label}: {uid}: {}",
                view.alert.severity
            );
        }
    }
}

/// An ingestion that an activation overtakes ends with every alert mapped
/// under the new release: batches stored after the activation go in marked
/// stale and are re-mapped when the ingestion ends, since the activation's
/// own re-map may have passed them. (Found by a trial: alerts stored late
/// kept the retired release's mappings and read as current.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingestion_overtaken_by_an_activation_ends_under_the_new_release() {
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let older = approved_release(&app, "enterprise-attack-17.1.json.gz").await;

        // The feed arrives in two parts: the second only after 17.1 is
        // active and its re-map has passed every alert stored by then, as a
        // slow sender's would.
        let uids: Vec<String> = (0..4_000).map(|n| format!("ov-{n:05}")).collect();
        let lines: Vec<String> = uids
            .iter()
            .map(|u| format!("{}\n", credential_dumping(u, 3)))
            .collect();
        let (send, receive) = std::sync::mpsc::channel::<Vec<u8>>();
        send.send(lines[..2_000].concat().into_bytes()).unwrap();
        let feed = Box::new(BufReader::new(Parts(
            receive,
            std::io::Cursor::new(Vec::new()),
        )));
        let (ingesting, actor) = (app.clone(), engineer.clone());
        let ingestion =
            tokio::spawn(async move { ingesting.ingest_alerts(&actor, "acme", feed).await });
        while app
            .alert_mapping(&engineer, "acme", &uids[1_999])
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        app.activate_dataset(&steward("bob"), &older).await.unwrap();
        send.send(lines[2_000..].concat().into_bytes()).unwrap();
        drop(send);
        let report = ingestion.await.unwrap().unwrap();
        assert_eq!(report.ingested, uids.len(), "{label}");
        for uid in uids.iter().step_by(250).chain(uids.last()) {
            let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
            let state = (view.canonical.release.as_str(), view.alert.stale);
            assert_eq!(state, ("17.1", false), "{label}: {uid}");
        }
    }
}

/// A feed read in parts as they arrive on a channel; it ends when the
/// sender is dropped.
struct Parts(std::sync::mpsc::Receiver<Vec<u8>>, std::io::Cursor<Vec<u8>>);

impl Read for Parts {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.1.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.0.recv() {
                Ok(next) => self.1 = std::io::Cursor::new(next),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// Copies of one alert within one request are applied in line order: the
/// last line is what is stored, and each change counts as an update.
#[tokio::test]
async fn the_last_copy_of_an_alert_in_a_request_wins() {
    let ocsf = credential_dumping;
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let severity = |uid: &'static str| {
            let app = &app;
            let engineer = &engineer;
            async move {
                app.alert_mapping(engineer, "acme", uid)
                    .await
                    .unwrap()
                    .alert
                    .severity
            }
        };
        // One request: (ingested, updated, duplicates).
        let send = |alerts: Vec<Value>| {
            let app = &app;
            let engineer = &engineer;
            async move {
                let report = app
                    .ingest_alert_values(engineer, "acme", alerts)
                    .await
                    .unwrap();
                (report.ingested, report.updated, report.duplicates)
            }
        };

        // Low, critical, low: stored once, then two real changes; the
        // third line equals the first but not the line before it.
        let counts = send(vec![ocsf("aba", 2), ocsf("aba", 5), ocsf("aba", 2)]).await;
        assert_eq!(counts, (1, 2, 0), "{label}");
        assert_eq!(severity("aba").await, "low", "{label}");

        // Stored as informational; the request brings medium, then
        // critical, then critical again: two updates, one duplicate, and
        // the stored alert's own update comes first.
        send(vec![ocsf("bc", 1)]).await;
        let counts = send(vec![ocsf("bc", 3), ocsf("bc", 5), ocsf("bc", 5)]).await;
        assert_eq!(counts, (0, 2, 1), "{label}");
        assert_eq!(severity("bc").await, "critical", "{label}");

        // Several stored alerts changed in one request, two of them more
        // than once: the updates of different alerts go together, each
        // alert's later copy after, and compared with, its earlier one.
        send(["m1", "m2", "m3", "m4"].map(|uid| ocsf(uid, 1)).to_vec()).await;
        let counts = send(vec![
            ocsf("m1", 3),
            ocsf("m2", 3),
            ocsf("m1", 5),
            ocsf("m3", 1),
            ocsf("m4", 4),
            ocsf("m2", 2),
            // Back to what is stored, but not to the copy before.
            ocsf("m1", 1),
        ])
        .await;
        assert_eq!(counts, (0, 6, 1), "{label}");
        for (uid, expected) in [
            ("m1", "informational"),
            ("m2", "low"),
            ("m3", "informational"),
            ("m4", "high"),
        ] {
            assert_eq!(severity(uid).await, expected, "{label}: {uid}");
        }
    }
}

/// Two ingestions of the same alerts in opposite orders at once: each
/// alert is stored once and neither fails (PostgreSQL once broke such runs
/// as a deadlock, each writer holding keys the other wanted).
#[tokio::test]
async fn opposite_ingestions_of_the_same_alerts_at_once_both_finish() {
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        for round in 0..3 {
            let forward: Vec<Value> = (0..3000)
                .map(|n| credential_dumping(&format!("r{round}-{n:05}"), 3))
                .collect();
            let backward: Vec<Value> = forward.iter().rev().cloned().collect();
            let (a, b) = tokio::join!(
                app.ingest_alert_values(&engineer, "acme", forward),
                app.ingest_alert_values(&engineer, "acme", backward),
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.ingested + b.ingested, 3000, "{label} round {round}");
            assert_eq!(a.duplicates + b.duplicates, 3000, "{label} round {round}");
        }
    }
}

/// The same changed alerts sent twice at once change each alert once: one
/// ingestion counts them updated and the other duplicates, and the matrix
/// counts each alert once, as a rebuild from the mappings does. (Found by a
/// trial: both ingestions compared with the content stored before either
/// wrote, counted every alert updated and rolled its change up twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_changes_sent_twice_at_once_count_and_roll_up_once() {
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let uids: Vec<String> = (0..1_500).map(|n| format!("tw-{n:05}")).collect();
        let feed = |severity: i64| credential_dumps(&uids, severity);
        app.ingest_alert_values(&engineer, "acme", feed(3))
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            app.ingest_alert_values(&engineer, "acme", feed(5)),
            app.ingest_alert_values(&engineer, "acme", feed(5)),
        );
        let (a, b) = (
            a.unwrap_or_else(|e| panic!("{label}: {e}")),
            b.unwrap_or_else(|e| panic!("{label}: {e}")),
        );
        assert_eq!(a.updated + b.updated, uids.len(), "{label}: {a:?} {b:?}");
        assert_eq!(
            a.duplicates + b.duplicates,
            uids.len(),
            "{label}: {a:?} {b:?}"
        );

        let matrix = || async {
            app.matrix(
                &engineer,
                "acme",
                taxonomy::Domain::Enterprise,
                service::MatrixFilter::default(),
            )
            .await
            .unwrap()
        };
        // Each cell's counts, and its intensity to 6 decimals: rollups sum
        // confidences in another order than a rebuild does.
        let cells = |view: &service::MatrixView| -> Vec<String> {
            view.cells
                .iter()
                .map(|c| {
                    format!(
                        "{} {} {} {:.6} {:?} {:?}",
                        c.tactic, c.technique, c.count, c.intensity, c.bands, c.sources
                    )
                })
                .collect()
        };
        let view = matrix().await;
        let t1003: u64 = view
            .techniques
            .iter()
            .filter(|t| t.technique == "T1003")
            .map(|t| t.count)
            .sum();
        assert_eq!(t1003, uids.len() as u64, "{label}");
        let admin = Actor {
            role: Role::Admin,
            ..engineer.clone()
        };
        app.rebuild_matrix(&admin, "acme").await.unwrap();
        assert_eq!(
            cells(&matrix().await),
            cells(&view),
            "{label}: the rollups differ from a rebuild"
        );

        // Different changes at once: each alert changes each time, and the
        // rollups follow the content that ends up stored. (Found by the
        // trial's second round: the re-map after each content change
        // counted its mappings in the cells of the content it had written,
        // though the other ingestion's content had replaced it.)
        let declaring = |severity: i64, technique: &str| -> Vec<Value> {
            feed(severity)
                .into_iter()
                .map(|mut v| {
                    v["finding_info"]["attacks"][0]["technique"]["uid"] = technique.into();
                    v
                })
                .collect()
        };
        // Three at once: an alert that keeps changing under a round of
        // updates is taken on its own rather than failing the ingestion.
        let (a, b, c) = tokio::join!(
            app.ingest_alert_values(&engineer, "acme", declaring(4, "T1059")),
            app.ingest_alert_values(&engineer, "acme", declaring(2, "T1047")),
            app.ingest_alert_values(&engineer, "acme", declaring(1, "T1106")),
        );
        let updated: usize = [a, b, c]
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{label}: {e}")).updated)
            .sum();
        assert_eq!(updated, 3 * uids.len(), "{label}");
        let view = matrix().await;
        app.rebuild_matrix(&admin, "acme").await.unwrap();
        assert_eq!(
            cells(&matrix().await),
            cells(&view),
            "{label}: the rollups differ from a rebuild after different changes"
        );
    }
}

/// PostgreSQL text cannot hold a NUL character. An alert carrying one in
/// its uid, title or host used to fail its whole batch there (SQLite took
/// it): now both databases store it with U+FFFD in those columns, the
/// other lines of the batch land, and the same file again is duplicates.
#[tokio::test]
async fn a_nul_character_in_an_alert_fails_neither_its_batch_nor_a_database() {
    let lines = [
        r#"{"class_uid":2004,"severity_id":3,"time_dt":"2026-01-02T03:04:05Z","finding_info":{"uid":"nul\u0000uid","title":"bad\u0000title"},"device":{"hostname":"h\u0000st"}}"#,
        r#"{"class_uid":2004,"severity_id":3,"time_dt":"2026-01-02T03:04:05Z","finding_info":{"uid":"plain","title":"plain title"},"device":{"hostname":"host"}}"#,
        r#"{"schema":"nexus-attack.alert/1","uid":"native-1","title":"native\u0000title","severity":"high"}"#,
    ];
    let feed = lines.join("\n");
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let ingest = || {
            app.ingest_alerts(
                &engineer,
                "acme",
                Box::new(std::io::Cursor::new(feed.clone().into_bytes())),
            )
        };
        let report = ingest().await.unwrap();
        assert_eq!(
            (report.ingested, report.rejected),
            (3, 0),
            "{label}: {report:?}"
        );
        let view = app
            .alert_mapping(&engineer, "acme", "nul\u{FFFD}uid")
            .await
            .unwrap();
        assert_eq!(view.alert.title, "bad\u{FFFD}title", "{label}");
        let native = app
            .alert_mapping(&engineer, "acme", "native-1")
            .await
            .unwrap();
        assert_eq!(native.alert.title, "native\u{FFFD}title", "{label}");
        let again = ingest().await.unwrap();
        assert_eq!(
            (again.ingested, again.duplicates),
            (0, 3),
            "{label}: {again:?}"
        );
    }
}

/// Trial finding: OCSF `finding_info.uid: 12345678901234567890123` was
/// stored as `1.2345678901234568e+22`, and `...124` then "updated" it. Both
/// lines are refused with their line numbers and nothing of them is stored;
/// the same ids sent as strings are two alerts.
#[tokio::test]
async fn numeric_uids_beyond_64_bits_are_refused_not_rounded_into_one() {
    let line = |uid: &str| {
        format!(
            r#"{{"class_uid":2004,"severity_id":3,"time_dt":"2026-01-02T03:04:05Z","finding_info":{{"uid":{uid},"title":"t"}}}}"#
        )
    };
    let feed = [
        line("12345678901234567890123"),
        line("12345678901234567890124"),
        r#"{"@timestamp":"2026-01-02T03:04:05Z","event":{"id":18446744073709551616},"message":"m"}"#
            .to_string(),
    ]
    .join("\n");
    let as_text = [
        line(r#""12345678901234567890123""#),
        line(r#""12345678901234567890124""#),
    ]
    .join("\n");
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let ingest = |text: String| {
            app.ingest_alerts(
                &engineer,
                "acme",
                Box::new(std::io::Cursor::new(text.into_bytes())),
            )
        };
        let report = ingest(feed.clone()).await.unwrap();
        assert_eq!(
            (report.ingested, report.updated, report.rejected),
            (0, 0, 3),
            "{label}: {report:?}"
        );
        let refused: Vec<(usize, &str)> = report
            .errors
            .iter()
            .map(|e| (e.line, e.code.as_str()))
            .collect();
        assert_eq!(
            refused,
            [(1, "bad_field"), (2, "bad_field"), (3, "bad_field")]
        );
        assert!(
            report.errors[0].message.contains("finding_info.uid")
                && report.errors[0].message.contains("as a JSON string"),
            "{label}: {}",
            report.errors[0].message
        );
        assert!(report.errors[2].message.contains("event.id"), "{label}");
        let listed = app
            .list_alerts(
                &engineer,
                "acme",
                &service::AlertFilter::default(),
                &service::PageRequest::default(),
            )
            .await
            .unwrap();
        assert!(listed.items.is_empty(), "{label}: nothing stored");

        let report = ingest(as_text.clone()).await.unwrap();
        assert_eq!((report.ingested, report.updated), (2, 0), "{label}");
        for uid in ["12345678901234567890123", "12345678901234567890124"] {
            let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
            assert_eq!(view.alert.source_uid, uid, "{label}");
        }
    }
}

/// A re-map of the org while leads override some of its alerts: an
/// override that commits between the re-map reading a page and writing it
/// gives that alert a newer version than the one the re-map computed from.
/// The re-map recomputes such alerts as they are now, instead of failing
/// half done with every later alert left stale or putting the older
/// version back.
#[tokio::test]
async fn a_remap_beside_overrides_finishes_and_leaves_nothing_stale() {
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let org = app
            .org_by_name(&Actor::operator("op"), "acme")
            .await
            .unwrap();
        let lead = member(&org, "lea", Role::Lead);
        let uids: Vec<String> = (0..3000).map(|n| format!("rm-{n:05}")).collect();
        let alerts = uids.iter().map(|u| credential_dumping(u, 3)).collect();
        app.ingest_alert_values(&engineer, "acme", alerts)
            .await
            .unwrap();

        let overrides = async {
            // Spread over the pages, so that some land while the re-map is
            // between reading and writing theirs.
            for uid in uids.iter().step_by(97) {
                let input = OverrideInput {
                    action: "add".into(),
                    technique: "T1105".into(),
                    reason: Some("missing_technique".into()),
                    ..OverrideInput::default()
                };
                app.create_override(&lead, "acme", uid, input)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        };
        let mut reported = Vec::new();
        let mut progress = |alerts: usize, changed: usize| reported.push((alerts, changed));
        let (remapped, ()) =
            tokio::join!(app.remap_org(&engineer, "acme", &mut progress), overrides);
        let (seen, changed) = remapped.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(seen, uids.len(), "{label}");
        // Progress after every page of 500, growing, ending at the result.
        assert_eq!(reported.len(), uids.len().div_ceil(500), "{label}");
        assert!(
            reported
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(reported.last(), Some(&(seen, changed)), "{label}");

        for (n, uid) in uids.iter().enumerate() {
            let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
            assert!(!view.alert.stale, "{label}: {uid} left stale");
            let techniques: BTreeSet<String> = view
                .canonical
                .entries
                .iter()
                .map(|e| e.technique.clone())
                .collect();
            let mut expected = BTreeSet::from(["T1003".to_string()]);
            if n % 97 == 0 {
                expected.insert("T1105".to_string());
            }
            assert_eq!(techniques, expected, "{label}: {uid}");
        }
    }
}

/// A rule of `eve` mapping `technique` when `condition` holds.
fn exists_rule(id: &str, condition: &str, technique: &str) -> String {
    format!(
        "{{id: {id}, version: 1, title: {id}, author: eve, rationale: presence of a field, \
         confidence: 0.8, match: {condition}, techniques: [{technique}]}}"
    )
}

/// Regression: `exists` saw only scalars, so `{field: unmapped, exists:
/// false}` matched every Sigma alert although each has an `unmapped`
/// object, and `finding_info.attacks` (an array of objects) never existed.
/// Ingestion decodes only the fields the rules test, so this goes through it.
#[tokio::test]
async fn exists_sees_the_objects_and_arrays_of_ingested_alerts() {
    let alerts: Vec<Value> = raw_alerts().into_iter().take(3).collect();
    // What the rules must see, from the raw documents.
    assert!(alerts.iter().all(|a| a["unmapped"].is_object()));
    assert!(
        alerts
            .iter()
            .all(|a| a["finding_info"]["attacks"].is_null())
    );
    let mut declaring = alerts[1].clone();
    declaring["finding_info"]["attacks"] = serde_json::json!([{"technique": {"uid": "T1059.001"}}]);
    let declaring_uid = declaring["finding_info"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let alerts = vec![alerts[0].clone(), declaring, alerts[2].clone()];

    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let absent = exists_rule(
            "unmapped-absent",
            "{field: unmapped, exists: false}",
            "T1027",
        );
        let attacks = exists_rule(
            "attacks-declared",
            "{field: finding_info.attacks, exists: true}",
            "T1105",
        );
        for rule in [&absent, &attacks] {
            app.save_rule(&engineer, "acme", rule, false).await.unwrap();
        }

        let report = app
            .ingest_alert_values(&engineer, "acme", alerts.clone())
            .await
            .unwrap();
        assert_eq!(report.ingested, 3, "{label}");
        for alert in &alerts {
            let uid = alert["finding_info"]["uid"].as_str().unwrap();
            let view = app.alert_mapping(&engineer, "acme", uid).await.unwrap();
            let mapped = techniques(&view);
            assert!(!mapped.contains("T1027"), "{label}: {uid}: {mapped:?}");
            assert_eq!(
                mapped.contains("T1105"),
                uid == declaring_uid,
                "{label}: {uid}: {mapped:?}"
            );
        }

        // Simulation re-reads stored alerts whole: the same answer there.
        let present = exists_rule(
            "unmapped-present",
            "{field: unmapped, exists: true}",
            "T1027",
        );
        let simulated = app
            .simulate_rule(&engineer, "acme", &present)
            .await
            .unwrap();
        assert_eq!(simulated.changes.len(), 3, "{label}");
        let simulated = app.simulate_rule(&engineer, "acme", &absent).await.unwrap();
        assert_eq!(simulated.alerts_scanned, 3, "{label}");
        assert!(simulated.changes.is_empty(), "{label}");
    }
}

/// Regression: a numeric OCSF technique uid (`"uid": 1105`) mapped nothing
/// and was missing from the alert's declaration problems.
#[tokio::test]
async fn a_numeric_technique_uid_is_counted_as_a_malformed_declaration() {
    let mut alert = credential_dumping("numeric-1", 3);
    alert["finding_info"]["attacks"] = serde_json::json!([{"technique": {"uid": 1105}}]);
    for db in databases().await {
        let label = db.label();
        let app = app_with_18_1(&db).await;
        let engineer = acme_engineer(&app).await;
        let report = app
            .ingest_alert_values(&engineer, "acme", vec![alert.clone()])
            .await
            .unwrap();
        assert_eq!((report.ingested, report.mapped), (1, 0), "{label}");
        assert_eq!(
            (report.declarations.alerts, report.declarations.malformed),
            (1, 1),
            "{label}: {:?}",
            report.declarations
        );
    }
}

/// The uids of the shared alerts whose Sigma rule in the first pack tags a
/// technique: the pack decides them by rule, and AI candidates no longer
/// count.
fn ruled_by_first_pack() -> BTreeSet<String> {
    let first = raw_sigma_rules(FIRST_PACK);
    raw_alerts()
        .iter()
        .filter_map(|a| {
            let uid = a["finding_info"]["uid"].as_str()?;
            let rule = a["finding_info"]["analytic"]["uid"].as_str()?;
            let tags = first.get(rule).map(|(_, t)| technique_tags(t))?;
            (!tags.is_empty()).then(|| uid.to_string())
        })
        .collect()
}

/// An app asking for AI candidates at ingestion, with Enterprise 18.1
/// active and org `ai` holding the 111 shared alerts (no rules yet: AI
/// alone maps them); its operator, engineer `eve`, lead `lea` and analyst
/// `ann`.
async fn ai_org_with_feed(db: &store::testing::TestDatabase) -> (App, [Actor; 4]) {
    let mut config = AppConfig::new(db.url.clone());
    config.mapping.ai_at_ingest = true;
    let app = App::connect(config).await.unwrap();
    activate_release(&app, "enterprise-attack-18.1.json.gz").await;
    let operator = Actor::operator("op");
    let org = app.create_org(&operator, "ai").await.unwrap();
    let engineer = member(&org, "eve", Role::Engineer);
    let lead = member(&org, "lea", Role::Lead);
    let analyst = member(&org, "ann", Role::Analyst);
    let feed = std::fs::File::open(regression_alerts()).unwrap();
    let ingest = app
        .ingest_alerts(&engineer, "ai", Box::new(BufReader::new(feed)))
        .await
        .unwrap();
    assert_eq!(ingest.ingested, 111, "{}", db.label());
    (app, [operator, engineer, lead, analyst])
}

/// The review items of `org` in every state, by item id.
async fn review_items_by_id(
    app: &App,
    actor: &Actor,
    org: &str,
) -> BTreeMap<String, service::ReviewItem> {
    app.review_list(actor, org, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect()
}

/// Asserts that `item` was closed by a re-map that `by` caused.
fn closed_by_remap(item: &service::ReviewItem, by: &str, label: &str) {
    assert_eq!(item.state, "resolved_by_remap", "{label}: {item:?}");
    assert_eq!(item.resolved_by.as_deref(), Some("system:remap"), "{label}");
    assert!(item.resolved_at.is_some(), "{label}: {item:?}");
    // Regression: the product closing it was timed as if someone had
    // validated it.
    assert_eq!(item.time_to_validate_ms, None, "{label}: {item:?}");
    let closed = &item.resolution.as_ref().unwrap()["resolved_by_remap"];
    assert_eq!(closed["by"], by, "{label}: {item:?}");
}

/// Regression: review items stayed open after a re-map removed their
/// reason: AI-only items once a Sigma pack decided their alerts by rule,
/// low-confidence items once a rule update raised the confidence, conflict
/// items once a lead's arbitration unlocked the alert. The product closing
/// them is no analyst's validation.
#[tokio::test]
async fn a_remap_closes_the_review_items_whose_reason_it_removed() {
    let ruled = ruled_by_first_pack();

    for db in databases().await {
        let label = db.label();
        let (app, [operator, engineer, lead, analyst]) = ai_org_with_feed(&db).await;
        let mut uid_of = BTreeMap::new();
        for a in raw_alerts() {
            let uid = a["finding_info"]["uid"].as_str().unwrap().to_string();
            let view = app.alert_mapping(&analyst, "ai", &uid).await.unwrap();
            uid_of.insert(view.alert.id, uid);
        }

        // AI alone mapped the feed: every AI-only item is open.
        let queued: Vec<service::ReviewItem> = review_items_by_id(&app, &analyst, "ai")
            .await
            .into_values()
            .filter(|i| i.reason == "ai_only")
            .collect();
        assert!(queued.iter().all(|i| i.state == "open"), "{label}");
        let decided: usize = queued
            .iter()
            .filter(|i| ruled.contains(&uid_of[i.alert_id.as_ref().unwrap()]))
            .count();
        assert!(decided > 0 && decided < queued.len(), "{label}");

        // The pack decides most alerts by rule: their AI-only items close,
        // the others' stay open.
        app.import_sigma(&engineer, "ai", &sigma_pack(FIRST_PACK))
            .await
            .unwrap();
        let now = review_items_by_id(&app, &analyst, "ai").await;
        for item in &queued {
            let uid = &uid_of[item.alert_id.as_ref().unwrap()];
            let after = &now[&item.id];
            if ruled.contains(uid) {
                closed_by_remap(after, "eve", label);
            } else {
                assert_eq!(after.state, "open", "{label}: {uid}: {after:?}");
            }
        }
        // Closed by the product, not validated by a person.
        let report = app
            .kpis(&operator, "ai", &service::KpiRequest::default(), None)
            .await
            .unwrap();
        let kpi = |name: &str| report.kpis.iter().find(|k| k.name == name).unwrap();
        assert_eq!(kpi("mean_time_to_validate").value, None, "{label}");
        let closed = now
            .values()
            .filter(|i| i.state == "resolved_by_remap")
            .count();
        assert!(closed >= decided, "{label}");
        assert_eq!(
            kpi("mean_time_to_validate").detail,
            Some(serde_json::json!({"system_resolved": closed})),
            "{label}"
        );
        assert_eq!(kpi("correction_rate").value, None, "{label}");

        // A low-confidence rule queues its alerts; raising its confidence
        // above the band closes those items.
        let before_rule = review_items_by_id(&app, &analyst, "ai").await;
        app.save_rule(&engineer, "ai", &rule_text(1, "T1059.001", 0.3), false)
            .await
            .unwrap();
        let low: Vec<String> = review_items_by_id(&app, &analyst, "ai")
            .await
            .into_values()
            .filter(|i| i.reason == "low_confidence" && i.state == "open")
            .filter(|i| !before_rule.contains_key(&i.id))
            .map(|i| i.id)
            .collect();
        assert!(!low.is_empty(), "{label}");
        app.save_rule(&engineer, "ai", &rule_text(2, "T1059.001", 0.9), true)
            .await
            .unwrap();
        let now = review_items_by_id(&app, &analyst, "ai").await;
        for id in &low {
            closed_by_remap(&now[id], "eve", label);
        }

        // Flip-flopping overrides lock an alert with a conflict item; the
        // lead's arbitration unlocks it and closes the item.
        let uid = ruled.iter().next().unwrap();
        let alert = app.alert_mapping(&lead, "ai", uid).await.unwrap().alert.id;
        let flip = |step: usize| OverrideInput {
            action: if step.is_multiple_of(2) {
                "add"
            } else {
                "remove"
            }
            .into(),
            technique: "T1003".into(),
            reason: Some("wrong_technique".into()),
            ..OverrideInput::default()
        };
        let mut step = 0;
        while !app
            .create_override(&lead, "ai", uid, flip(step))
            .await
            .unwrap()
            .locked
        {
            step += 1;
            assert!(step < 10, "{label}: never locked");
        }
        let conflict = review_items_by_id(&app, &analyst, "ai")
            .await
            .into_values()
            .find(|i| i.reason == "conflict" && i.alert_id.as_ref() == Some(&alert))
            .unwrap();
        assert_eq!(conflict.state, "open", "{label}");
        let arbitration = app
            .create_override(&lead, "ai", uid, flip(step + 1))
            .await
            .unwrap();
        assert!(arbitration.applied && !arbitration.locked, "{label}");
        let now = review_items_by_id(&app, &analyst, "ai").await;
        closed_by_remap(&now[&conflict.id], "lea", label);
    }
}

/// Acme with the regression feed ingested and then a low-confidence rule
/// saved over it, which queues the alerts the rule maps: the app, the org,
/// its lead and analyst, and the open `low_confidence` items.
async fn low_confidence_queue(
    db: &store::testing::TestDatabase,
) -> (App, service::Org, Actor, Actor, Vec<service::ReviewItem>) {
    let app = app_with_18_1(db).await;
    let operator = Actor::operator("op");
    let org = app.create_org(&operator, "acme").await.unwrap();
    let engineer = member(&org, "eve", Role::Engineer);
    let lead = member(&org, "lea", Role::Lead);
    let analyst = member(&org, "ann", Role::Analyst);
    let feed = std::fs::File::open(regression_alerts()).unwrap();
    app.ingest_alerts(&engineer, "acme", Box::new(BufReader::new(feed)))
        .await
        .unwrap();
    app.save_rule(&engineer, "acme", &rule_text(1, "T1059.001", 0.3), false)
        .await
        .unwrap();
    let low = app
        .review_list(&analyst, "acme", Some("open"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.reason == "low_confidence")
        .collect();
    (app, org, lead, analyst, low)
}

/// Regression: an analyst's correction resolved the item as `corrected`
/// while it was only a proposal, and a lead's rejection left it so, out of
/// the queue with the mapping unchanged. The item now waits in the open
/// queue for the lead: corrected on approval, timed to it; open again on
/// rejection. A lead's correction applies and resolves at once.
#[tokio::test]
async fn an_analysts_correction_waits_for_the_lead_in_the_open_queue() {
    for db in databases().await {
        let label = db.label();
        let (app, _, lead, analyst, low) = low_confidence_queue(&db).await;
        let operator = Actor::operator("op");
        assert!(low.len() >= 2, "{label}: {low:?}");
        let (item, other) = (low[0].clone(), low[1].clone());
        let alert = item.alert_id.clone().unwrap();
        let remove = OverrideInput {
            action: "remove".into(),
            technique: "T1059.001".into(),
            reason: Some("false_positive".into()),
            ..OverrideInput::default()
        };
        let mapped = |app: &App| {
            let (app, lead, alert) = (app.clone(), lead.clone(), alert.clone());
            async move {
                let view = app.alert_mapping(&lead, "acme", &alert).await.unwrap();
                techniques(&view).contains("T1059.001")
            }
        };
        let kpi = |name: &'static str| {
            let (app, operator) = (app.clone(), operator.clone());
            async move {
                let report = app
                    .kpis(&operator, "acme", &service::KpiRequest::default(), None)
                    .await
                    .unwrap();
                let k = report.kpis.into_iter().find(|k| k.name == name).unwrap();
                (k.numerator, k.denominator)
            }
        };

        // The analyst's correction is a proposal: the item stays open,
        // awaiting it, and nothing counts as validated.
        let (proposed, correction) = app
            .review_correct(&analyst, "acme", &item.id, remove.clone())
            .await
            .unwrap();
        let service::ReviewCorrection::Override(outcome) = correction else {
            panic!("{label}: an alert's item is corrected by an override");
        };
        assert!(!outcome.applied, "{label}");
        assert_eq!(proposed.state, "open", "{label}: {proposed:?}");
        assert_eq!(
            proposed.awaiting_approval.as_deref(),
            Some(outcome.r#override.id.as_str()),
            "{label}"
        );
        assert_eq!(proposed.time_to_validate_ms, None, "{label}");
        assert!(mapped(&app).await, "{label}");
        let queue = app
            .review_list(&analyst, "acme", Some("open"), 1000)
            .await
            .unwrap();
        assert!(queue.iter().any(|i| i.id == item.id), "{label}");
        assert_eq!(kpi("correction_rate").await, (Some(0.0), Some(0.0)));

        // Rejected: open again, no longer awaiting, mapping unchanged.
        app.decide_override(&lead, "acme", &outcome.r#override.id, false)
            .await
            .unwrap();
        let rejected = app.review_list(&analyst, "acme", None, 1000).await.unwrap();
        let rejected = rejected.iter().find(|i| i.id == item.id).unwrap();
        assert_eq!(rejected.state, "open", "{label}: {rejected:?}");
        assert_eq!(rejected.awaiting_approval, None, "{label}");
        assert!(mapped(&app).await, "{label}");

        // Proposed again and approved: corrected by the analyst, timed
        // from the opening to the approval.
        let (_, correction) = app
            .review_correct(&analyst, "acme", &item.id, remove.clone())
            .await
            .unwrap();
        let service::ReviewCorrection::Override(outcome) = correction else {
            panic!("{label}: an alert's item is corrected by an override");
        };
        let approval = app
            .decide_override(&lead, "acme", &outcome.r#override.id, true)
            .await
            .unwrap();
        assert!(approval.applied, "{label}");
        assert!(!mapped(&app).await, "{label}");
        let all = app.review_list(&analyst, "acme", None, 1000).await.unwrap();
        let approved = all.iter().find(|i| i.id == item.id).unwrap();
        assert_eq!(approved.state, "corrected", "{label}: {approved:?}");
        assert_eq!(approved.resolved_by.as_deref(), Some("ann"), "{label}");
        assert_eq!(approved.awaiting_approval, None, "{label}");
        let approved_at = approval.r#override.created_at.clone();
        assert!(
            approved.resolved_at.as_deref() >= Some(approved_at.as_str()),
            "{label}: {approved:?} before {approved_at}"
        );
        assert_eq!(
            approved.resolution.as_ref().unwrap()["override"],
            outcome.r#override.id.as_str(),
            "{label}"
        );

        // A lead's correction applies and resolves at once, although the
        // re-map it causes removes the item's reason.
        let (corrected, correction) = app
            .review_correct(&lead, "acme", &other.id, remove)
            .await
            .unwrap();
        let service::ReviewCorrection::Override(outcome) = correction else {
            panic!("{label}: an alert's item is corrected by an override");
        };
        assert!(outcome.applied, "{label}");
        assert_eq!(corrected.state, "corrected", "{label}: {corrected:?}");
        assert_eq!(corrected.resolved_by.as_deref(), Some("lea"), "{label}");
        assert_eq!(kpi("correction_rate").await, (Some(2.0), Some(2.0)));
    }
}

/// Trial findings: an analyst's second correction of one item replaced
/// the first (`awaiting_approval` moved to the second), so approving the
/// first changed the mapping without crediting the item; and an approved
/// proposal still showed `status: proposed`, while deciding it again was
/// refused as "not an open proposal (status proposed, already decided)".
/// A second correction is refused naming the pending proposal; the
/// proposal shows its decision.
#[tokio::test]
async fn a_second_correction_waits_for_the_first_and_a_decided_proposal_shows_its_decision() {
    for db in databases().await {
        let label = db.label();
        let (app, org, lead, analyst, low) = low_confidence_queue(&db).await;
        let other_analyst = member(&org, "abe", Role::Analyst);
        let item = low.first().expect("a low-confidence item").clone();
        let alert = item.alert_id.clone().unwrap();
        let remove = OverrideInput {
            action: "remove".into(),
            technique: "T1059.001".into(),
            reason: Some("false_positive".into()),
            ..OverrideInput::default()
        };
        let add = OverrideInput {
            action: "add".into(),
            technique: "T1059".into(),
            reason: Some("wrong_subtechnique".into()),
            ..OverrideInput::default()
        };

        let (_, first) = app
            .review_correct(&analyst, "acme", &item.id, remove)
            .await
            .unwrap();
        let service::ReviewCorrection::Override(first) = first else {
            panic!("{label}: an alert's item is corrected by an override");
        };
        let first_id = first.r#override.id.clone();
        let overrides_before = app
            .alert_mapping(&lead, "acme", &alert)
            .await
            .unwrap()
            .overrides
            .len();

        // A second correction, by anyone, is refused naming the first.
        for who in [&analyst, &other_analyst, &lead] {
            let refused = app
                .review_correct(who, "acme", &item.id, add.clone())
                .await
                .unwrap_err();
            let ServiceError::StateConflict { message, details } = &refused else {
                panic!("{label}: {refused:?}");
            };
            assert!(message.contains(&first_id), "{label}: {message}");
            assert_eq!(details["awaiting_approval"], first_id.as_str(), "{label}");
        }
        let view = app.alert_mapping(&lead, "acme", &alert).await.unwrap();
        assert_eq!(
            view.overrides.len(),
            overrides_before,
            "{label}: nothing stored"
        );
        let items = review_items_by_id(&app, &analyst, "acme").await;
        assert_eq!(
            items[&item.id].awaiting_approval.as_deref(),
            Some(first_id.as_str()),
            "{label}"
        );

        // The lead approves the first: the item is credited to the analyst,
        // and the proposal shows the decision.
        let decision = app
            .decide_override(&lead, "acme", &first_id, true)
            .await
            .unwrap();
        let items = review_items_by_id(&app, &analyst, "acme").await;
        assert_eq!(items[&item.id].state, "corrected", "{label}");
        assert_eq!(
            items[&item.id].resolved_by.as_deref(),
            Some("ann"),
            "{label}"
        );
        let view = app.alert_mapping(&lead, "acme", &alert).await.unwrap();
        let proposal = view.overrides.iter().find(|o| o.id == first_id).unwrap();
        assert_eq!(proposal.status, "approved", "{label}: {proposal:?}");
        assert_eq!(proposal.approved_by.as_deref(), Some("lea"), "{label}");
        let decided = view
            .overrides
            .iter()
            .find(|o| o.id == decision.r#override.id)
            .unwrap();
        assert_eq!(decided.supersedes.as_deref(), Some(first_id.as_str()));
        let problems = service::check_schema(
            &service::alert_mapping_schema(),
            &serde_json::to_value(&view).unwrap(),
        );
        assert!(problems.is_empty(), "{label}: {problems:?}");

        let again = app
            .decide_override(&lead, "acme", &first_id, false)
            .await
            .unwrap_err();
        let ServiceError::StateConflict { message, details } = &again else {
            panic!("{label}: {again:?}");
        };
        assert!(
            message.contains("already approved by lea"),
            "{label}: {message}"
        );
        assert!(!message.contains("proposed"), "{label}: {message}");
        assert_eq!(details["status"], "approved", "{label}");
    }
}

/// An item whose correction awaits a lead is settled by the lead's
/// decision alone: the item cannot be accepted or rejected meanwhile, and a
/// re-map that removes its reason leaves it open, so that the approval
/// still credits the analyst's correction.
#[tokio::test]
async fn a_correction_awaiting_a_lead_outlives_a_remap_and_blocks_decisions() {
    let ruled = ruled_by_first_pack();

    for db in databases().await {
        let label = db.label();
        let (app, [_, engineer, lead, analyst]) = ai_org_with_feed(&db).await;

        // An AI-only item of an alert the Sigma pack will decide by rule.
        let mut waiting = None;
        for item in review_items_by_id(&app, &analyst, "ai").await.into_values() {
            let alert = item.alert_id.clone().unwrap();
            let view = app.alert_mapping(&analyst, "ai", &alert).await.unwrap();
            let uid = view.alert.source_uid.clone();
            if item.reason == "ai_only" && ruled.contains(&uid) {
                waiting = Some(item);
                break;
            }
        }
        let waiting =
            waiting.unwrap_or_else(|| panic!("{label}: an AI-only item of a ruled alert"));
        let add = OverrideInput {
            action: "add".into(),
            technique: "T1033".into(),
            reason: Some("missing_technique".into()),
            ..OverrideInput::default()
        };
        let (_, correction) = app
            .review_correct(&analyst, "ai", &waiting.id, add)
            .await
            .unwrap();
        let service::ReviewCorrection::Override(proposal) = correction else {
            panic!("{label}: an alert's item is corrected by an override");
        };
        assert!(!proposal.applied, "{label}");

        // Neither accepted nor rejected while the lead has not decided.
        for decision in [ReviewDecision::Accept, ReviewDecision::Reject] {
            let err = app
                .review_decide(&analyst, "ai", &waiting.id, decision, None)
                .await
                .unwrap_err();
            assert!(
                matches!(err, ServiceError::StateConflict { .. }),
                "{label}: {err}"
            );
        }

        // The pack's re-map removes the AI-only reason; the item stays
        // open, still awaiting the proposal.
        app.import_sigma(&engineer, "ai", &sigma_pack(FIRST_PACK))
            .await
            .unwrap();
        let after = &review_items_by_id(&app, &analyst, "ai").await[&waiting.id];
        assert_eq!(after.state, "open", "{label}: {after:?}");
        assert_eq!(
            after.awaiting_approval.as_deref(),
            Some(proposal.r#override.id.as_str()),
            "{label}"
        );

        // The approval settles it: corrected, credited to the analyst.
        app.decide_override(&lead, "ai", &proposal.r#override.id, true)
            .await
            .unwrap();
        let settled = &review_items_by_id(&app, &analyst, "ai").await[&waiting.id];
        assert_eq!(settled.state, "corrected", "{label}: {settled:?}");
        assert_eq!(settled.resolved_by.as_deref(), Some("ann"), "{label}");
    }
}
