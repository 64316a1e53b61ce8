//! `incidents list` and `suggest alert|incident`, run through the real
//! binary on Enterprise 18.1 and the shared alerts. SQLite always,
//! PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set.
//!
//! The expected technique of `suggest alert` is the one the alert's title
//! names, found by the test in the release file itself.

use std::io::Read as _;

use serde_json::Value;
use store::testing::databases;

mod support;

use support::{path, run};

/// (alert uid, technique) for the first shared alert whose title names a
/// live Enterprise 18.1 technique of at least 20 characters.
fn alert_naming_a_technique(feed: &str) -> (String, String) {
    let mut json = Vec::new();
    let gz = std::fs::read(path("attack/enterprise-attack-18.1.json.gz")).unwrap();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut json)
        .unwrap();
    let bundle: Value = serde_json::from_slice(&json).unwrap();
    let names: Vec<(String, String)> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "attack-pattern" && o["revoked"] != true)
        .filter(|o| o["x_mitre_deprecated"] != true)
        .filter_map(|o| {
            let id = o["external_references"]
                .as_array()?
                .iter()
                .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
                .as_str()?;
            Some((id.to_string(), o["name"].as_str()?.to_lowercase()))
        })
        .filter(|(_, name)| name.len() >= 20)
        .collect();
    feed.lines()
        .filter_map(|line| {
            let alert: Value = serde_json::from_str(line).ok()?;
            let title = alert["finding_info"]["title"].as_str()?.to_lowercase();
            let (id, _) = names.iter().find(|(_, n)| title.contains(n.as_str()))?;
            Some((
                alert["finding_info"]["uid"].as_str()?.to_string(),
                id.clone(),
            ))
        })
        .next()
        .expect("an alert title names a technique")
}

#[tokio::test]
async fn incidents_list_pages_and_suggest_reads_stored_alerts_and_incidents() {
    let feed = std::fs::read_to_string(path("alerts/sigma-regression-alerts.ndjson")).unwrap();
    let uids: Vec<String> = feed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["finding_info"]["uid"].clone())
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    let (named_alert, technique) = alert_naming_a_technique(&feed);

    for db in databases().await {
        let url = db.url.clone();
        let load = run(
            &url,
            &[
                "dataset",
                "load",
                &path("attack/enterprise-attack-18.1.json.gz"),
                "--actor",
                "alice",
                "--json",
            ],
        )
        .json();
        let id = load["id"].as_str().unwrap().to_string();
        assert!(run(&url, &["dataset", "validate", &id, "--actor", "alice"]).ok);
        assert!(run(&url, &["dataset", "approve", &id, "--actor", "bob"]).ok);
        assert!(run(&url, &["dataset", "activate", &id, "--actor", "bob"]).ok);
        assert!(run(&url, &["org", "create", "acme"]).ok);
        assert!(run(&url, &["org", "create", "globex"]).ok);
        let ingest = run(
            &url,
            &[
                "alerts",
                "ingest",
                &path("alerts/sigma-regression-alerts.ndjson"),
                "--org",
                "acme",
                "--json",
            ],
        );
        assert!(ingest.ok, "{}", ingest.stderr);

        // Three incidents of 1, 2 and 3 alerts, listed two at a time, most
        // recently updated first.
        let mut created = Vec::new();
        for n in 1..=3 {
            let alerts = uids[..n].join(",");
            let title = format!("incident {n}");
            let view = run(
                &url,
                &[
                    "incidents",
                    "create",
                    "--org",
                    "acme",
                    "--title",
                    &title,
                    "--alerts",
                    &alerts,
                    "--json",
                ],
            )
            .json();
            created.push((
                view["updated_at"].as_str().unwrap().to_string(),
                view["id"].as_str().unwrap().to_string(),
                n as u64,
            ));
        }
        created.sort();
        created.reverse();
        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..3 {
            let mut args = vec![
                "incidents",
                "list",
                "--org",
                "acme",
                "--limit",
                "2",
                "--json",
            ];
            if let Some(c) = &cursor {
                args.extend(["--cursor", c.as_str()]);
            }
            let page = run(&url, &args).json();
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            listed.extend(items.iter().map(|i| {
                (
                    i["updated_at"].as_str().unwrap().to_string(),
                    i["id"].as_str().unwrap().to_string(),
                    i["alert_count"].as_u64().unwrap(),
                )
            }));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(listed, created);
        let text = run(&url, &["incidents", "list", "--org", "acme"]);
        assert!(text.ok, "{}", text.stderr);
        assert_eq!(text.stdout.lines().count(), 4, "a header and 3 incidents");
        let other = run(&url, &["incidents", "list", "--org", "globex", "--json"]).json();
        assert_eq!(other["items"], serde_json::json!([]));
        assert!(
            !run(
                &url,
                &["incidents", "list", "--org", "acme", "--limit", "0"]
            )
            .ok
        );

        // Suggestions for the alert whose title names a technique.
        let answer = run(
            &url,
            &[
                "suggest",
                "alert",
                &named_alert,
                "--org",
                "acme",
                "--limit",
                "5",
                "--json",
            ],
        )
        .json();
        let top: Vec<&str> = answer["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["technique"].as_str())
            .collect();
        assert!(
            top.contains(&technique.as_str()),
            "{technique} not in {top:?}"
        );
        assert_eq!(answer["subject"]["kind"], "alert");
        assert_eq!(answer["alerts_read"], 1);

        // An incident reads every live alert.
        let incident = &created[0].1;
        let answer = run(
            &url,
            &["suggest", "incident", incident, "--org", "acme", "--json"],
        )
        .json();
        assert_eq!(answer["subject"]["id"], incident.as_str());
        assert_eq!(answer["alerts_read"], created[0].2);
        assert!(!answer["suggestions"].as_array().unwrap().is_empty());

        // Another org's alert is a missing one.
        let foreign = run(&url, &["suggest", "alert", &named_alert, "--org", "globex"]);
        assert!(!foreign.ok);
        assert!(foreign.stderr.contains("not found"), "{}", foreign.stderr);
    }
}
