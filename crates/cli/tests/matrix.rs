//! The matrix CLI contract (issue 6), run through the real binary:
//! `matrix --org ORG --json` prints `formula`, `cells` and per-technique
//! `techniques` totals equal to the alerts whose Sigma rule carries the
//! tag (counted here from the raw YAML and NDJSON); `matrix rebuild`
//! changes nothing; `export navigator -o FILE` writes a layer 4.5.
//! SQLite always, PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use store::testing::databases;

fn shared() -> PathBuf {
    std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn path(rel: &str) -> String {
    shared().join(rel).display().to_string()
}

fn run(db: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nexus-attack"))
        .arg("--database")
        .arg(db)
        .args(args)
        .env_remove("NEXUS_ATTACK_DATABASE")
        .env_remove("NEXUS_ATTACK_LOG")
        .output()
        .expect("run nexus-attack");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(db: &str, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(db, args);
    assert!(success, "{args:?} failed: {stderr}");
    stdout
}

/// Technique ID -> number of alerts of the feed whose rule (in the
/// 2026-01-01 pack, deprecated and unsupported rules left out) carries the
/// `attack.tNNNN[.NNN]` tag.
fn expected_technique_counts() -> BTreeMap<String, u64> {
    let file = std::fs::File::open(path("sigma/sigma-rules-c5e6d0ecd.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        if (name.ends_with(".yml") || name.ends_with(".yaml"))
            && entry.read_to_string(&mut text).is_ok()
        {
            files.push((name, text));
        }
    }
    files.sort();
    let tag = regex::Regex::new(r"^attack\.(t\d{4}(\.\d{3})?)$").unwrap();
    let mut rules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
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
        let techniques = doc
            .get("tags")
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .filter_map(|t| {
                tag.captures(&t.to_ascii_lowercase())
                    .map(|c| c[1].to_ascii_uppercase())
            })
            .collect();
        rules.insert(id.to_string(), techniques);
    }
    let mut counts = BTreeMap::new();
    let feed = std::fs::read_to_string(path("alerts/sigma-regression-alerts.ndjson")).unwrap();
    for line in feed.lines().filter(|l| !l.trim().is_empty()) {
        let alert: Value = serde_json::from_str(line).unwrap();
        let rule = alert["finding_info"]["analytic"]["uid"].as_str().unwrap();
        for technique in rules.get(rule).into_iter().flatten() {
            *counts.entry(technique.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test]
async fn matrix_json_counts_each_alert_once_per_technique() {
    let want = expected_technique_counts();
    assert!(!want.is_empty());

    for db in databases().await {
        let label = db.label();
        let url = db.url.clone();
        let load: Value = serde_json::from_str(&ok(
            &url,
            &[
                "dataset",
                "load",
                &path("attack/enterprise-attack-18.1.json.gz"),
                "--actor",
                "alice",
                "--json",
            ],
        ))
        .unwrap();
        let id = load["id"].as_str().unwrap().to_string();
        ok(&url, &["dataset", "validate", &id, "--actor", "alice"]);
        ok(&url, &["dataset", "approve", &id, "--actor", "bob"]);
        ok(&url, &["dataset", "activate", &id, "--actor", "bob"]);
        ok(&url, &["org", "create", "acme"]);
        ok(
            &url,
            &[
                "rules",
                "import-sigma",
                &path("sigma/sigma-rules-c5e6d0ecd.tar.gz"),
                "--org",
                "acme",
            ],
        );
        ok(
            &url,
            &[
                "alerts",
                "ingest",
                &path("alerts/sigma-regression-alerts.ndjson"),
                "--org",
                "acme",
            ],
        );

        let text = ok(&url, &["matrix", "--org", "acme", "--json"]);
        let view: Value = serde_json::from_str(&text).unwrap();
        assert!(
            view["formula"]
                .as_str()
                .is_some_and(|f| f.contains("intensity"))
        );
        let techniques: BTreeMap<String, u64> = view["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["technique"].as_str().unwrap().to_string(),
                    t["count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(techniques, want, "{label}");
        let cells = view["cells"].as_array().unwrap();
        for cell in cells {
            for key in [
                "tactic",
                "technique",
                "count",
                "intensity",
                "low_confidence",
            ] {
                assert!(cell.get(key).is_some(), "{label}: `{key}` in {cell}");
            }
            // A cell never counts more alerts than its technique has.
            let technique = cell["technique"].as_str().unwrap();
            assert!(
                cell["count"].as_u64().unwrap() <= want[technique],
                "{label}: {cell}"
            );
        }
        let techniques_in_cells: BTreeSet<&str> = cells
            .iter()
            .map(|c| c["technique"].as_str().unwrap())
            .collect();
        assert_eq!(
            techniques_in_cells,
            want.keys().map(String::as_str).collect(),
            "{label}"
        );

        // Filters narrow: no rule mapping is AI-made.
        let ai: Value = serde_json::from_str(&ok(
            &url,
            &["matrix", "--org", "acme", "--source", "ai", "--json"],
        ))
        .unwrap();
        assert_eq!(ai["cells"].as_array().unwrap().len(), 0, "{label}");
        let (bad, _, stderr) = run(
            &url,
            &["matrix", "--org", "acme", "--band", "hgh", "--json"],
        );
        assert!(!bad && stderr.contains("band"), "{label}: {stderr}");

        // A rebuild from raw mappings gives the same matrix.
        ok(&url, &["matrix", "rebuild", "--org", "acme"]);
        let again: Value =
            serde_json::from_str(&ok(&url, &["matrix", "--org", "acme", "--json"])).unwrap();
        assert_eq!(again["cells"], view["cells"], "{label}");
        assert_eq!(again["techniques"], view["techniques"], "{label}");

        // The Navigator export: a layer 4.5 with one entry per cell.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layer.json");
        ok(
            &url,
            &[
                "export",
                "navigator",
                "--org",
                "acme",
                "-o",
                &file.display().to_string(),
            ],
        );
        let layer: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(layer["versions"]["layer"], "4.5", "{label}");
        assert_eq!(layer["domain"], "enterprise-attack", "{label}");
        let scored = layer["techniques"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t.get("score").is_some_and(|s| !s.is_null()))
            .count();
        assert_eq!(scored, cells.len(), "{label}");
    }
}
