//! The matrix of an org end to end on a real database (SQLite always,
//! PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set): Enterprise 18.1,
//! the 2026-01-01 Sigma pack and the shared regression alerts. Expected
//! counts come from the raw Sigma YAML, the raw NDJSON and the parsed
//! release, not from the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};

use serde_json::Value;
use service::{
    Actor, App, AppConfig, ErrorKind, ExclusionInput, MatrixFilter, OverrideInput, Role,
};
use store::testing::{TestDatabase, databases};
use taxonomy::{Domain, Release};

mod support;
use support::{activate_release, member, shared};

const PACK: &str = "sigma/sigma-rules-c5e6d0ecd.tar.gz";
const ALERTS: &str = "alerts/sigma-regression-alerts.ndjson";
const RELEASE: &str = "attack/enterprise-attack-18.1.json.gz";

/// Sigma rule id -> lowercased tags, read straight from the archive (a
/// later file with the same id replaces an earlier one; deprecated and
/// unsupported rules are not imported).
fn sigma_tags() -> BTreeMap<String, Vec<String>> {
    let file = std::fs::File::open(shared().join(PACK)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        if (path.ends_with(".yml") || path.ends_with(".yaml"))
            && entry.read_to_string(&mut text).is_ok()
        {
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
        let status = doc.get("status").and_then(|v| v.as_str()).unwrap_or("");
        if matches!(status, "deprecated" | "unsupported") {
            rules.remove(id);
            continue;
        }
        let tags = doc
            .get("tags")
            .and_then(|v| v.as_sequence())
            .map(|s| {
                s.iter()
                    .filter_map(|t| t.as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        rules.insert(id.to_string(), tags);
    }
    rules
}

fn raw_alerts() -> Vec<Value> {
    std::fs::read_to_string(shared().join(ALERTS))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn release() -> Release {
    let bytes = std::fs::read(shared().join(RELEASE)).unwrap();
    let hints = taxonomy::LoadHints {
        file_name: Some("enterprise-attack-18.1.json.gz".into()),
        release: Some("18.1".into()),
        domain: Some(Domain::Enterprise),
    };
    taxonomy::parse(&bytes, &hints).unwrap()
}

/// What the matrix must show, worked out from the raw data: per technique
/// the number of alerts whose rule carries its tag, and per (tactic ID,
/// technique) cell the number of alerts counted there. A technique counts
/// in the tactics the rule names that are its own, or in each of its
/// tactics when the rule names none of them.
struct Expected {
    techniques: BTreeMap<String, u64>,
    cells: BTreeMap<(String, String), u64>,
}

fn expected(release: &Release) -> Expected {
    let rules = sigma_tags();
    let technique_tag = regex::Regex::new(r"^attack\.(t\d{4}(\.\d{3})?)$").unwrap();
    let mut techniques = BTreeMap::new();
    let mut cells = BTreeMap::new();
    for alert in raw_alerts() {
        let rule = alert["finding_info"]["analytic"]["uid"].as_str().unwrap();
        let Some(tags) = rules.get(rule) else {
            continue;
        };
        let mut named_tactics = BTreeSet::new();
        let mut tagged = BTreeSet::new();
        for tag in tags {
            if let Some(c) = technique_tag.captures(tag) {
                tagged.insert(c[1].to_ascii_uppercase());
            } else if let Some(t) = tag
                .strip_prefix("attack.")
                .and_then(|name| release.tactic(&name.replace('_', "-")))
            {
                named_tactics.insert(t.id.clone());
            }
        }
        for id in tagged {
            *techniques.entry(id.clone()).or_insert(0) += 1;
            let technique = release
                .techniques
                .iter()
                .find(|t| t.id == id && t.status.is_live())
                .unwrap_or_else(|| panic!("{id} is live in 18.1"));
            let own: BTreeSet<String> = release
                .tactics_of(technique)
                .iter()
                .map(|t| t.id.clone())
                .collect();
            let fitting: BTreeSet<String> = own.intersection(&named_tactics).cloned().collect();
            for tactic in if fitting.is_empty() { own } else { fitting } {
                *cells.entry((tactic, id.clone())).or_insert(0) += 1;
            }
        }
    }
    Expected { techniques, cells }
}

async fn app_with_activity(db: &TestDatabase) -> (App, service::Org) {
    let app = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
    activate_release(&app, "enterprise-attack-18.1.json.gz").await;
    let org = app
        .create_org(&Actor::operator("op"), "acme")
        .await
        .unwrap();
    let engineer = member(&org, "eve", Role::Engineer);
    app.import_sigma(&engineer, "acme", &shared().join(PACK))
        .await
        .unwrap();
    let feed = std::fs::read(shared().join(ALERTS)).unwrap();
    let report = app
        .ingest_alerts(
            &engineer,
            "acme",
            Box::new(BufReader::new(std::io::Cursor::new(feed))),
        )
        .await
        .unwrap();
    assert_eq!(report.ingested, 111);
    (app, org)
}

/// Rollup rows in a stable order, with the float rounded so that sums made
/// in another order compare equal.
async fn rollup_snapshot(app: &App, org: &service::Org) -> Vec<String> {
    let scope = store::OrgScope::new(org.id.clone());
    let mut rows: Vec<String> = app
        .store()
        .rollups(&scope, None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {} {} {} {} {:.6}",
                r.day,
                r.tactic,
                r.technique,
                r.source,
                r.severity,
                r.connector,
                r.platform,
                r.band,
                r.count,
                r.alerts,
                r.confidence_sum
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn matrix_counts_equal_the_alerts_whose_rule_carries_the_tag() {
    let release = release();
    let want = expected(&release);
    assert!(!want.techniques.is_empty());
    assert!(
        want.cells.len() > want.techniques.len(),
        "some technique shows in several tactics"
    );

    for db in databases().await {
        let label = db.label();
        let (app, org) = app_with_activity(&db).await;
        let viewer = member(&org, "vic", Role::Viewer);

        let view = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        let techniques: BTreeMap<String, u64> = view
            .techniques
            .iter()
            .map(|t| (t.technique.clone(), t.count))
            .collect();
        assert_eq!(techniques, want.techniques, "{label}: per-technique totals");
        let cells: BTreeMap<(String, String), u64> = view
            .cells
            .iter()
            .map(|c| ((c.tactic.clone(), c.technique.clone()), c.count))
            .collect();
        assert_eq!(cells, want.cells, "{label}: cells");
        assert!(view.unplaced.is_empty(), "{label}: {:?}", view.unplaced);
        assert!(view.formula.contains("severity weight"), "{label}");
        // Asked again, the view comes from the cache: the same as the one a
        // process without any cache computes.
        let again = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        let cold = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
        let fresh = cold
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        assert_eq!(again, view, "{label}");
        assert_eq!(fresh, view, "{label}");

        // A filter that keeps nothing empties the view; the `to` bound is
        // exclusive, so a range ending before the first alert is empty.
        let first_day = raw_alerts()
            .iter()
            .filter_map(|a| a["time_dt"].as_str())
            .map(|t| t[..10].to_string())
            .min()
            .unwrap();
        let before = service::FilterInput {
            to: Some(first_day),
            ..Default::default()
        }
        .parse()
        .unwrap();
        let empty = app
            .matrix(&viewer, "acme", Domain::Enterprise, before)
            .await
            .unwrap();
        assert!(empty.cells.is_empty(), "{label}");

        // An override changes the canonical mapping; incremental rollups
        // then equal rollups rebuilt from raw mappings.
        let lead = member(&org, "lea", Role::Lead);
        let uid = raw_alerts()[0]["finding_info"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        app.create_override(
            &lead,
            "acme",
            &uid,
            OverrideInput {
                action: "add".into(),
                technique: "T1003".into(),
                tactic: None,
                replaces: None,
                replaces_tactic: None,
                reason: Some("missing_technique".into()),
                notes: None,
                confidence: Some(0.9),
            },
        )
        .await
        .unwrap();
        let after_override = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        assert_eq!(
            after_override.technique_count("T1003"),
            want.techniques.get("T1003").copied().unwrap_or(0) + 1,
            "{label}: the override counts at once"
        );
        // A second process on the same database (another `serve` node)
        // ingests an alert: the first one's cached matrix must see it.
        let other = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
        let declared = serde_json::json!({
            "class_uid": 2004, "severity_id": 4, "time_dt": chrono::Utc::now().to_rfc3339(),
            "metadata": {"product": {"name": "EDR"}},
            "finding_info": {"uid": "second-node-1", "title": "Credential dumping",
                "attacks": [{"technique": {"uid": "T1003"}, "tactics": [{"uid": "TA0006"}]}]},
            "device": {"hostname": "h1"}
        });
        let engineer = member(&org, "eve", Role::Engineer);
        let report = other
            .ingest_alert_values(&engineer, "acme", vec![declared])
            .await
            .unwrap();
        assert_eq!(report.mapped, 1, "{label}");
        let after_second_node = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        assert_eq!(
            after_second_node.technique_count("T1003"),
            after_override.technique_count("T1003") + 1,
            "{label}: another node's ingestion counts at once"
        );
        let after_override = after_second_node;

        let incremental = rollup_snapshot(&app, &org).await;
        let admin = member(&org, "ada", Role::Admin);
        let rebuilt = app.rebuild_matrix(&admin, "acme").await.unwrap();
        assert_eq!(rebuilt.alerts, 112, "{label}");
        assert_eq!(rollup_snapshot(&app, &org).await, incremental, "{label}");
        let denied = app.rebuild_matrix(&viewer, "acme").await.unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Forbidden, "{label}");

        // An exclusion window over every day removes every mapping and says so.
        let total_mappings: u64 = after_override.cells.iter().map(|c| c.count).sum();
        let connector = after_override.cells[0].sources.rule; // non-zero: rules mapped
        assert!(connector > 0, "{label}");
        let connectors: BTreeSet<String> = app
            .store()
            .rollups(&store::OrgScope::new(org.id.clone()), None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.connector)
            .collect();
        for c in &connectors {
            app.add_exclusion(
                &admin,
                "acme",
                ExclusionInput {
                    connector: c.clone(),
                    from: chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap(),
                    to: chrono::NaiveDate::from_ymd_opt(2100, 1, 1).unwrap(),
                    reason: "noisy test source".into(),
                },
            )
            .await
            .unwrap();
        }
        let excluded = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        assert!(excluded.cells.is_empty(), "{label}");
        let removed: u64 = excluded
            .exclusions_applied
            .iter()
            .map(|e| e.mappings_removed)
            .sum();
        // Cells count a mapping once per tactic shown; rows are removed once.
        assert!(removed > 0 && removed <= total_mappings, "{label}");
        let denied = app
            .add_exclusion(
                &viewer,
                "acme",
                ExclusionInput {
                    connector: "x".into(),
                    from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    to: chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
                    reason: "r".into(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Forbidden, "{label}");
        assert_eq!(
            app.exclusions(&viewer, "acme").await.unwrap().len(),
            connectors.len(),
            "{label}"
        );
    }
}

#[tokio::test]
async fn drilldown_and_exports_follow_the_cell_and_the_role() {
    let release = release();
    let want = expected(&release);
    // The busiest cell, worked out from the raw data.
    let ((tactic, technique), count) = want
        .cells
        .iter()
        .max_by_key(|(key, n)| (**n, std::cmp::Reverse((*key).clone())))
        .map(|(k, n)| (k.clone(), *n))
        .unwrap();

    for db in databases().await {
        let label = db.label();
        let (app, org) = app_with_activity(&db).await;
        let viewer = member(&org, "vic", Role::Viewer);
        let analyst = member(&org, "ann", Role::Analyst);

        // Paging through the cell two alerts at a time visits each alert once.
        let mut seen = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = app
                .matrix_drilldown(
                    &viewer,
                    "acme",
                    Domain::Enterprise,
                    &tactic,
                    &technique,
                    MatrixFilter::default(),
                    cursor.as_deref(),
                    2,
                )
                .await
                .unwrap();
            for alert in &page.alerts {
                assert!(seen.insert(alert.alert_id.clone()), "{label}: paged twice");
                let m = &alert.mappings[0];
                assert_eq!(m.technique, technique, "{label}");
                assert_eq!(m.source, "rule", "{label}");
                assert!(!m.evidence.is_empty(), "{label}: evidence shown");
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(
            seen.len() as u64,
            count,
            "{label}: alerts behind {tactic}/{technique}"
        );

        // Exports: analysts may, viewers may not; both are audited.
        let denied = app
            .export_navigator(
                &viewer,
                "acme",
                Domain::Enterprise,
                MatrixFilter::default(),
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Forbidden, "{label}");
        let layer = app
            .export_navigator(
                &analyst,
                "acme",
                Domain::Enterprise,
                MatrixFilter::default(),
                false,
            )
            .await
            .unwrap();
        assert_eq!(layer["versions"]["layer"], "4.5", "{label}");
        let entry = layer["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["techniqueID"] == technique.as_str())
            .unwrap();
        assert!(entry["score"].as_f64().unwrap() >= 1.0, "{label}");
        let full = app
            .export_navigator(
                &analyst,
                "acme",
                Domain::Enterprise,
                MatrixFilter::default(),
                true,
            )
            .await
            .unwrap();
        assert!(
            full["techniques"].as_array().unwrap().len()
                > layer["techniques"].as_array().unwrap().len(),
            "{label}: the full matrix lists unannotated techniques"
        );
        let csv = app
            .export_csv(
                &analyst,
                "acme",
                Domain::Enterprise,
                MatrixFilter::default(),
                &service::Redaction::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            csv.lines().count(),
            want.cells.len() + 1,
            "{label}: header + cells"
        );

        // Importing the exported layer compares equal with the org's activity.
        let comparison = app
            .import_layer(
                &viewer,
                "acme",
                Domain::Enterprise,
                MatrixFilter::default(),
                &layer.to_string(),
            )
            .await
            .unwrap();
        assert_eq!(comparison["release"], "18.1", "{label}");
        assert!(
            comparison["layers"][0]["comparison"]
                .as_array()
                .is_some_and(|c| !c.is_empty()),
            "{label}"
        );
        let verification = app.audit_verify(&Actor::operator("op")).await.unwrap();
        assert!(verification.ok, "{label}");
    }
}

/// A warm matrix request reads the org by name from memory and the active
/// release by id from memory: what another `serve` node changes must still
/// show at once.
#[tokio::test]
async fn a_warm_matrix_follows_what_another_node_changes() {
    for db in databases().await {
        let label = db.label();
        let app = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
        let other = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
        activate_release(&app, "enterprise-attack-18.1.json.gz").await;
        let operator = Actor::operator("op");
        let org = app.create_org(&operator, "acme").await.unwrap();
        let viewer = member(&org, "vic", Role::Viewer);
        let view = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        assert_eq!(view.release, "18.1", "{label}");

        // Another node activates another release: the next request here
        // lays the matrix out by it.
        activate_release(&other, "enterprise-attack-17.1.json.gz").await;
        let view = app
            .matrix(&viewer, "acme", Domain::Enterprise, MatrixFilter::default())
            .await
            .unwrap();
        assert_eq!(
            view.release, "17.1",
            "{label}: the release activated elsewhere"
        );

        // An org not found here is not remembered as missing: once another
        // node creates it, it is found.
        let missing = app.org_by_name(&operator, "globex").await.unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{label}");
        let created = other.create_org(&operator, "globex").await.unwrap();
        let found = app.org_by_name(&operator, "globex").await.unwrap();
        assert_eq!(found, created, "{label}");
        // Found by id as well, and still refused to another org's member.
        let by_id = app
            .org_by_name(&operator, created.id.as_str())
            .await
            .unwrap();
        assert_eq!(by_id, created, "{label}");
        let refused = app.org_by_name(&viewer, "globex").await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::NotFound, "{label}");
    }
}
