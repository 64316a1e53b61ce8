//! The worked example of docs/rules.md, run through the real binary on the
//! shared data: the rule files are read from the page itself, and what each
//! step must do is computed here from the shared alert feed and the raw
//! release, never from the mapping engine. Also the CLI side of two input
//! checks: a rule with a misspelt key is refused naming it, and an alert's
//! own technique declarations that the release does not take are shown and
//! counted. SQLite always, PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use store::testing::databases;

mod support;

use support::{path, run, shared};

/// The YAML blocks of docs/rules.md whose first line is `# <file name>`,
/// as (file name, text).
fn doc_files() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md"),
    )
    .expect("read docs/rules.md");
    let mut files = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in page.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```yaml") => block = Some(Vec::new()),
            (Some(lines), "```") => {
                if let Some(name) = lines.first().and_then(|l| l.strip_prefix("# ")) {
                    files.push((name.to_string(), lines[1..].join("\n") + "\n"));
                }
                block = None;
            }
            (Some(lines), _) => lines.push(line),
            (None, _) => {}
        }
    }
    files
}

/// The feed's alerts, parsed.
fn feed() -> Vec<Value> {
    std::fs::read_to_string(shared().join("alerts/sigma-regression-alerts.ndjson"))
        .expect("read the feed")
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect()
}

/// What the page's version 1 matches, read by hand: certutil.exe, a
/// ` -urlcache ` or ` /urlcache ` argument, an http(s) URL, Sysmon event 1.
fn certutil_downloads() -> BTreeSet<String> {
    feed()
        .iter()
        .filter(|a| {
            let image = a["process"]["file"]["path"].as_str().unwrap_or("");
            let cmd = a["process"]["cmd_line"]
                .as_str()
                .unwrap_or("")
                .to_lowercase();
            image.to_lowercase().ends_with("\\certutil.exe")
                && (cmd.contains(" -urlcache ") || cmd.contains(" /urlcache "))
                && (cmd.contains("http://") || cmd.contains("https://"))
                && a["unmapped"]["event_id"] == json!(1)
        })
        .map(|a| a["finding_info"]["uid"].as_str().unwrap().to_string())
        .collect()
}

/// The feed's uids whose command line names raw.githubusercontent.com.
fn test_downloads() -> BTreeSet<String> {
    feed()
        .iter()
        .filter(|a| {
            a["process"]["cmd_line"]
                .as_str()
                .is_some_and(|c| c.to_lowercase().contains("raw.githubusercontent.com"))
        })
        .map(|a| a["finding_info"]["uid"].as_str().unwrap().to_string())
        .collect()
}

/// The id of the tactic with this shortname in the raw 18.1 bundle.
fn tactic_id(shortname: &str) -> String {
    let gz = std::fs::read(shared().join("attack/enterprise-attack-18.1.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "x-mitre-tactic" && o["x_mitre_shortname"] == shortname)
        .and_then(|o| {
            o["external_references"]
                .as_array()?
                .iter()
                .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
                .as_str()
                .map(str::to_string)
        })
        .expect("the tactic is in 18.1")
}

fn activate_18_1(url: &str) {
    let load = run(
        url,
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
    assert!(run(url, &["dataset", "validate", &id, "--actor", "alice"]).ok);
    assert!(run(url, &["dataset", "approve", &id, "--actor", "bob"]).ok);
    assert!(run(url, &["dataset", "activate", &id, "--actor", "bob"]).ok);
    assert!(run(url, &["org", "create", "acme"]).ok);
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// The canonical (technique, tactic) pairs of an alert, via `alerts show`.
fn canonical(url: &str, uid: &str) -> Vec<(String, Option<String>)> {
    let show = run(url, &["alerts", "show", uid, "--org", "acme", "--json"]).json();
    show["canonical"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["technique"].as_str().unwrap().to_string(),
                e["tactic"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_worked_example_of_docs_rules_md_does_what_the_page_says() {
    let files = doc_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "certutil-download.yaml",
            "certutil-download-v2.yaml",
            "certutil-download-typo.yaml"
        ]
    );
    let downloads = certutil_downloads();
    let tests = test_downloads();
    assert_eq!(downloads.len(), 3, "the feed's certutil downloads");
    let dropped: BTreeSet<String> = downloads.intersection(&tests).cloned().collect();
    assert_eq!(dropped.len(), 2, "of which test downloads");
    let t1105 = vec![("T1105".to_string(), Some(tactic_id("command-and-control")))];

    for db in databases().await {
        let url = db.url.clone();
        let dir = tempfile::tempdir().unwrap();
        activate_18_1(&url);
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
        )
        .json();
        assert_eq!(ingest["mapped"], 0, "{}: no rule yet", db.label());
        let file = |i: usize| write(dir.path(), &files[i].0, &files[i].1);
        let rules = |args: &[&str]| {
            let mut all = vec!["rules"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["--org", "acme", "--actor", "eve", "--json"]);
            run(&url, &all)
        };

        // Version 1 maps the certutil downloads, and nothing else.
        let created = rules(&["create", &file(0)]).json();
        assert_eq!(created["reevaluated"], downloads.len(), "{}", db.label());
        assert_eq!(created["changed"], downloads.len(), "{}", db.label());
        for uid in &downloads {
            assert_eq!(canonical(&url, uid), t1105, "{}: {uid}", db.label());
        }

        // Simulating version 2 names exactly the test downloads, and
        // changes nothing.
        let simulated = rules(&["simulate", &file(1)]).json();
        let changes: BTreeSet<String> = simulated["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["before"], json!([["T1105", t1105[0].1]]));
                assert_eq!(c["after"], json!([]));
                c["source_uid"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(changes, dropped, "{}", db.label());
        for uid in &dropped {
            assert_eq!(
                canonical(&url, uid),
                t1105,
                "{}: simulation stored",
                db.label()
            );
        }

        // Version 2 does what the simulation said; rolling back undoes it.
        // Both re-map every alert either version matches, and each of
        // those canonical mappings changes: the dropped ones lose T1105,
        // the others keep it with lineage to the other version.
        let updated = rules(&["update", &file(1)]).json();
        assert_eq!(updated["previous_version"], 1);
        assert_eq!(updated["reevaluated"], downloads.len(), "{}", db.label());
        assert_eq!(updated["changed"], downloads.len(), "{}", db.label());
        for uid in &downloads {
            let expected = if dropped.contains(uid) {
                vec![]
            } else {
                t1105.clone()
            };
            assert_eq!(canonical(&url, uid), expected, "{}: {uid}", db.label());
        }
        let rolled = rules(&["rollback", "certutil-download"]).json();
        assert_eq!(rolled["rule"]["version"], 1);
        assert_eq!(rolled["changed"], downloads.len(), "{}", db.label());
        for uid in &downloads {
            assert_eq!(canonical(&url, uid), t1105, "{}: {uid}", db.label());
        }

        // The misspelt key: refused, named, nothing stored.
        let before = rules(&["list"]).json();
        let typo = rules(&["create", &file(2)]);
        assert!(!typo.ok, "{}: {}", db.label(), typo.stdout);
        assert!(
            typo.stderr.contains("confidance") && typo.stderr.contains("unknown key"),
            "{}",
            typo.stderr
        );
        assert_eq!(rules(&["list"]).json(), before, "{}", db.label());
    }
}

#[tokio::test]
async fn declarations_the_release_does_not_take_are_shown_and_counted_by_the_cli() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/schemas/alert-mapping.v1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // The first shared alert, declaring a revoked (T1086, replaced by
    // T1059.001 in 18.1), a deprecated (T1064) and an unknown (T1685)
    // technique, and a value that is no technique id.
    let mut alert = feed().remove(0);
    alert["finding_info"]["uid"] = json!("declared-cli-1");
    alert["finding_info"]["attacks"] = json!([
        {"technique": {"uid": "T1086"}},
        {"technique": {"uid": "T1064"}},
        {"technique": {"uid": "T1685"}},
        {"technique": {"uid": "T1059-001"}}
    ]);

    for db in databases().await {
        let url = db.url.clone();
        let dir = tempfile::tempdir().unwrap();
        activate_18_1(&url);
        let feed_file = write(dir.path(), "declared.ndjson", &format!("{alert}\n"));
        let ingest = run(
            &url,
            &["alerts", "ingest", &feed_file, "--org", "acme", "--json"],
        )
        .json();
        assert_eq!(
            ingest["declarations"],
            json!({"alerts": 1, "unknown": 1, "revoked": 1, "replaced": 1,
                   "deprecated": 1, "malformed": 1, "tactic_not_kept": 0}),
            "{}",
            db.label()
        );

        let show = run(
            &url,
            &[
                "alerts",
                "show",
                "declared-cli-1",
                "--org",
                "acme",
                "--json",
            ],
        )
        .json();
        let problems = service::check_schema(&schema, &show);
        assert!(problems.is_empty(), "{}: {problems:?}", db.label());
        let statuses: BTreeSet<(String, String)> = show["declarations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["technique"].as_str().unwrap().to_string(),
                    d["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: BTreeSet<(String, String)> = [
            ("T1086", "revoked"),
            ("T1064", "deprecated"),
            ("T1685", "unknown"),
            ("T1059-001", "malformed"),
        ]
        .into_iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect();
        assert_eq!(statuses, expected, "{}", db.label());
        // Without --json the same list is printed.
        let text = run(&url, &["alerts", "show", "declared-cli-1", "--org", "acme"]);
        assert!(text.ok, "{}", text.stderr);
        for (technique, status) in &expected {
            assert!(
                text.stdout.contains(&format!("{technique} in ")) && text.stdout.contains(status),
                "{}",
                text.stdout
            );
        }
    }
}
