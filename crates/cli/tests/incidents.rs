//! The incident CLI contract (issue 4), run through the real binary:
//! `incidents create|attach|detach|show|merge|split|adjust|status|severity|
//! evidence`, the `show --json` output validated against
//! docs/schemas/incident-profile.v1.json, and refusals that change nothing.
//! SQLite always, PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set.
//!
//! Expected frequencies come from `alerts show --json` of each alert (the
//! alerts' own canonical mappings), not from the incident code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use store::testing::databases;

mod support;

use support::{path, run};

/// Technique -> distinct alerts over the profile entries.
fn frequencies(view: &Value) -> BTreeMap<String, usize> {
    let mut alerts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in view["profile"].as_array().unwrap() {
        let set = alerts
            .entry(e["technique"].as_str().unwrap().to_string())
            .or_default();
        for a in e["alerts"].as_array().unwrap() {
            set.insert(a.as_str().unwrap().to_string());
        }
    }
    alerts.into_iter().map(|(t, a)| (t, a.len())).collect()
}

#[tokio::test]
async fn incident_commands_keep_the_issue_4_contract() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/schemas/incident-profile.v1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let feed = std::fs::read_to_string(path("alerts/sigma-regression-alerts.ndjson")).unwrap();
    let mut by_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in feed.lines().filter(|l| !l.trim().is_empty()) {
        let a: Value = serde_json::from_str(line).unwrap();
        by_host
            .entry(a["device"]["hostname"].as_str().unwrap().to_string())
            .or_default()
            .push(a["finding_info"]["uid"].as_str().unwrap().to_string());
    }
    let hosts: Vec<&String> = by_host.keys().collect();
    let (first, second) = (&by_host[hosts[2]], &by_host[hosts[3]]);

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
        let pack = path("sigma/sigma-rules-c5e6d0ecd.tar.gz");
        let org = ["--org", "acme", "--actor", "eve"];
        let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
            head.iter()
                .chain(org.iter())
                .chain(tail.iter())
                .map(|s| s.to_string())
                .collect()
        };
        let go = |args: Vec<String>| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&url, &refs)
        };
        assert!(go(with(&["rules", "import-sigma", &pack], &[])).ok);
        let feed_path = path("alerts/sigma-regression-alerts.ndjson");
        assert!(go(with(&["alerts", "ingest", &feed_path], &[])).ok);

        // Expected: each alert's canonical techniques, read per alert.
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        for uid in first {
            let view = go(with(&["alerts", "show", uid], &["--json"])).json();
            let techniques: BTreeSet<String> = view["canonical"]["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["technique"].as_str().unwrap().to_string())
                .collect();
            for t in techniques {
                *expected.entry(t).or_insert(0) += 1;
            }
        }

        let alerts = first.join(",");
        let created = go(with(
            &["incidents", "create", "--title", "host three"],
            &["--alerts", &alerts, "--json"],
        ))
        .json();
        let a = created["id"].as_str().unwrap().to_string();
        let shown = go(with(&["incidents", "show", &a], &["--json"])).json();
        for key in ["id", "status", "profile", "adjustments"] {
            assert!(shown.get(key).is_some(), "{key}");
        }
        for e in shown["profile"].as_array().unwrap() {
            for key in [
                "technique",
                "tactic",
                "frequency",
                "confidence",
                "sources",
                "alerts",
            ] {
                assert!(e.get(key).is_some(), "{key}");
            }
        }
        let problems = service::check_schema(&schema, &shown);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(frequencies(&shown), expected);
        assert_eq!(shown["status"], "open");

        // Attach and detach by product id, merge, split back.
        let b = go(with(
            &["incidents", "create", "--title", "host four"],
            &["--json"],
        ))
        .json()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let second_alerts = second.join(",");
        assert!(
            go(with(
                &["incidents", "attach", &b],
                &["--alerts", &second_alerts]
            ))
            .ok
        );
        let b_view = go(with(&["incidents", "show", &b], &["--json"])).json();
        let product_id = b_view["alerts"][0]["id"].as_str().unwrap().to_string();
        assert!(
            go(with(
                &["incidents", "detach", &b],
                &["--alerts", &product_id]
            ))
            .ok
        );
        let detached = go(with(&["incidents", "show", &b], &["--json"])).json();
        assert_eq!(
            detached["alerts"].as_array().unwrap().len(),
            second.len() - 1
        );
        assert!(
            go(with(
                &["incidents", "attach", &b],
                &["--alerts", &product_id]
            ))
            .ok
        );

        let merged = go(with(&["incidents", "merge", &a, &b], &["--json"])).json();
        assert_eq!(merged["id"], a.as_str());
        assert_eq!(
            merged["alerts"].as_array().unwrap().len(),
            first.len() + second.len()
        );
        // B takes no further change: the refusal names the survivor, on
        // its one line, as the API's details do.
        let refused = go(with(
            &["incidents", "severity", &b],
            &["--severity", "low", "--json"],
        ));
        assert!(!refused.ok);
        let lines: Vec<&str> = refused.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", refused.stderr);
        let (head, details) = lines[0]
            .split_once("; details: ")
            .unwrap_or_else(|| panic!("details in: {}", lines[0]));
        assert!(head.starts_with("error[conflict]: "), "{head}");
        let details: Value = serde_json::from_str(details).unwrap();
        assert_eq!(
            details,
            serde_json::json!({"incident": b, "state": "merged", "merged_into": a, "survivor": a})
        );

        let split = go(with(
            &["incidents", "split", &a],
            &["--alerts", &second_alerts, "--json"],
        ))
        .json();
        let c = split["id"].as_str().unwrap().to_string();
        assert_ne!(c, a);
        let back = go(with(&["incidents", "show", &a], &["--json"])).json();
        assert_eq!(frequencies(&back), expected);

        // Refusals change nothing.
        let before = go(with(&["incidents", "show", &a], &["--json"])).stdout;
        let empty = go(with(&["incidents", "split", &a], &["--alerts", &alerts]));
        assert!(!empty.ok);
        assert!(empty.stderr.contains("[invalid_input]"), "{}", empty.stderr);
        let no_rationale = go(with(
            &["incidents", "adjust", &a],
            &[
                "--action",
                "add",
                "--technique",
                "T1078",
                "--reason",
                "missing_technique",
                "--evidence",
                "TICKET-1",
            ],
        ));
        assert!(!no_rationale.ok);
        assert!(
            no_rationale.stderr.contains("rationale"),
            "{}",
            no_rationale.stderr
        );
        let viewer = go(with(
            &["incidents", "adjust", &a],
            &[
                "--action",
                "add",
                "--technique",
                "T1078",
                "--reason",
                "missing_technique",
                "--rationale",
                "x",
                "--evidence",
                "TICKET-1",
                "--role",
                "analyst",
            ],
        ));
        assert!(viewer.stderr.contains("[forbidden]"), "{}", viewer.stderr);
        assert_eq!(
            go(with(&["incidents", "show", &a], &["--json"])).stdout,
            before
        );

        // A lead adjustment, then staleness triggers.
        let adjusted = go(with(
            &["incidents", "adjust", &a],
            &[
                "--action",
                "add",
                "--technique",
                "T1078",
                "--reason",
                "missing_technique",
                "--rationale",
                "valid accounts in the VPN logs",
                "--evidence",
                "TICKET-1",
                "--json",
            ],
        ))
        .json();
        assert_eq!(
            adjusted["adjustments"][0]["rationale"],
            "valid accounts in the VPN logs"
        );
        assert_eq!(adjusted["stale"], false);
        let v = go(with(
            &["incidents", "severity", &a],
            &["--severity", "high", "--json"],
        ))
        .json();
        assert_eq!(v["stale_reasons"][0]["reason"], "severity_shift");
        let v = go(with(
            &["incidents", "status", &a],
            &["--status", "reopened", "--json"],
        ))
        .json();
        assert_eq!(v["status"], "reopened");
        let v = go(with(
            &["incidents", "evidence", &a],
            &["--add", "INC-9", "--json"],
        ))
        .json();
        assert_eq!(v["evidence"][0]["reference"], "INC-9");
        assert_eq!(v["stale"], true);
        assert!(service::check_schema(&schema, &v).is_empty());

        // The stale incidents wait in the review queue: A with the reasons
        // since the adjustment, C (split out) with its own; an alert's line
        // keeps its four fields.
        let listed = go(with(&["review", "list"], &["--limit", "10000"]));
        assert!(listed.ok, "{}", listed.stderr);
        let mut incident_lines: Vec<Vec<&str>> = listed
            .stdout
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|fields| fields[1].starts_with("incident:"))
            .collect();
        incident_lines.sort_by_key(|fields| fields[1]);
        let mut want = vec![
            (
                format!("incident:{a}"),
                "severity_shift,reopened,evidence_update",
            ),
            (format!("incident:{c}"), "split"),
        ];
        want.sort();
        let got: Vec<(String, &str)> = incident_lines
            .iter()
            .map(|fields| {
                assert_eq!(&fields[2..4], ["stale", "open"], "{fields:?}");
                (fields[1].to_string(), fields[4])
            })
            .collect();
        assert_eq!(got, want, "{}", listed.stdout);
        assert!(
            listed
                .stdout
                .lines()
                .filter(|l| !l.contains(" incident:"))
                .all(|l| l.split(' ').count() == 4),
            "{}",
            listed.stdout
        );
        let items = go(with(&["review", "list"], &["--limit", "10000", "--json"])).json();
        let c_item = items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["incident_id"] == c.as_str())
            .unwrap();
        assert_eq!(c_item["subject"], "incident");
        assert_eq!(c_item["alert_id"], Value::Null);
        assert_eq!(c_item["stale_reasons"][0]["reason"], "split");
        let accepted = go(with(
            &["review", "accept", c_item["id"].as_str().unwrap()],
            &["--json"],
        ))
        .json();
        assert_eq!(accepted["state"], "accepted");
        let c_now = go(with(&["incidents", "show", &c], &["--json"])).json();
        assert_eq!(c_now["stale"], false);
    }
}
