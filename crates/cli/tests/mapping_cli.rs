//! The mapping engine's CLI contract (issue 3), run through the real binary:
//! `rules import-sigma --json`, `alerts ingest --json`, `alerts show --json`
//! (validated against docs/schemas/alert-mapping.v1.json) and the refusal of
//! an override without reason code. SQLite always, PostgreSQL when
//! `NEXUS_ATTACK_TEST_POSTGRES` is set.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use store::testing::databases;

mod support;

use support::{path, run};

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn mapping_commands_keep_the_issue_3_contract() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/schemas/alert-mapping.v1.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let feed = std::fs::read_to_string(path("alerts/sigma-regression-alerts.ndjson")).unwrap();
    let first: Value = serde_json::from_str(feed.lines().next().unwrap()).unwrap();
    let uid = first["finding_info"]["uid"].as_str().unwrap().to_string();

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

        let import = run(
            &url,
            &[
                "rules",
                "import-sigma",
                &path("sigma/sigma-rules-c5e6d0ecd.tar.gz"),
                "--org",
                "acme",
                "--actor",
                "eve",
                "--json",
            ],
        )
        .json();
        assert_eq!(
            keys(&import),
            set(&["rules", "mapped_rules", "tags", "problems"])
        );
        assert_eq!(
            keys(&import["tags"]),
            set(&["valid", "unknown", "revoked", "deprecated"])
        );

        // What a pack leaves out (a rule skipped for its status, a file that
        // is not Sigma) is named on stderr; stdout keeps the contract.
        let pack = tempfile::tempdir().unwrap();
        let rule = |status: &str, id: &str| {
            format!(
                "title: Rule {status}\nid: {id}\nstatus: {status}\nlogsource: {{product: windows}}\n\
                 detection: {{sel: {{a: b}}, condition: sel}}\ntags: [attack.t1059]\n"
            )
        };
        let files = [
            (
                "good.yml",
                rule("test", "5d3c1a2e-0000-4000-8000-000000000001"),
            ),
            (
                "old.yml",
                rule("deprecated", "5d3c1a2e-0000-4000-8000-000000000002"),
            ),
            ("broken.yml", "title: [unclosed\n".to_string()),
        ];
        for (name, text) in &files {
            std::fs::write(pack.path().join(name), text).unwrap();
        }
        assert!(run(&url, &["org", "create", "side"]).ok);
        let side = run(
            &url,
            &[
                "rules",
                "import-sigma",
                pack.path().to_str().unwrap(),
                "--org",
                "side",
                "--actor",
                "eve",
                "--json",
            ],
        );
        let summary = side.json();
        assert_eq!(
            keys(&summary),
            set(&["rules", "mapped_rules", "tags", "problems"])
        );
        assert_eq!(summary["mapped_rules"], 1, "{}", side.stdout);
        assert!(
            side.stderr.contains("skipped 1 rules")
                && side
                    .stderr
                    .contains("broken.yml: document 1: not valid YAML"),
            "{}",
            side.stderr
        );

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
        for key in ["ingested", "mapped", "unmapped", "rejected", "errors"] {
            assert!(ingest.get(key).is_some(), "`{key}` in {ingest}");
        }
        assert_eq!(ingest["ingested"], 111);
        assert_eq!(
            ingest["mapped"].as_u64().unwrap() + ingest["unmapped"].as_u64().unwrap(),
            111
        );

        let show = run(&url, &["alerts", "show", &uid, "--org", "acme", "--json"]).json();
        let problems = service::check_schema(&schema, &show);
        assert!(problems.is_empty(), "{}: {problems:?}", db.label());
        assert_eq!(show["alert"]["source_uid"], uid.as_str());
        // The product id finds the same alert.
        let by_id = run(
            &url,
            &[
                "alerts",
                "show",
                show["alert"]["id"].as_str().unwrap(),
                "--org",
                "acme",
                "--json",
            ],
        )
        .json();
        assert_eq!(by_id["alert"], show["alert"]);

        // `alerts list` pages through every stored alert once, newest first.
        let list = |extra: &[&str]| {
            let mut items: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut args = vec!["alerts", "list", "--org", "acme", "--json", "--limit", "40"];
                args.extend_from_slice(extra);
                let after = cursor.clone().unwrap_or_default();
                if cursor.is_some() {
                    args.extend_from_slice(&["--cursor", &after]);
                }
                let page = run(&url, &args).json();
                items.extend(page["items"].as_array().unwrap().iter().cloned());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break items,
                }
            }
        };
        let all = list(&[]);
        let listed: BTreeSet<String> = all
            .iter()
            .map(|i| i["alert"]["source_uid"].as_str().unwrap().to_string())
            .collect();
        let fed: BTreeSet<String> = feed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["finding_info"]["uid"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!((all.len(), &listed), (111, &fed), "{}", db.label());
        let unmapped = list(&["--state", "unmapped"]);
        assert_eq!(unmapped.len() as u64, ingest["unmapped"].as_u64().unwrap());
        assert!(
            unmapped
                .iter()
                .all(|i| i["canonical"] == Value::Array(vec![]))
        );
        // A technique filter keeps exactly the alerts whose entries name it.
        let technique = show["canonical"]["entries"][0]["technique"]
            .as_str()
            .unwrap()
            .to_string();
        let holding = |items: &[Value]| -> BTreeSet<String> {
            items
                .iter()
                .filter(|i| {
                    i["canonical"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["technique"] == technique.as_str())
                })
                .map(|i| i["alert"]["id"].as_str().unwrap().to_string())
                .collect()
        };
        let filtered = list(&["--technique", &technique]);
        assert!(!filtered.is_empty());
        assert_eq!(holding(&filtered).len(), filtered.len());
        assert_eq!(holding(&filtered), holding(&all));
        let bad = run(&url, &["alerts", "list", "--org", "acme", "--limit", "0"]);
        assert!(
            !bad.ok
                && bad.stderr.contains("error[invalid_input]")
                && bad.stderr.contains("--limit"),
            "{}",
            bad.stderr
        );

        // `org list` names the orgs made above.
        let orgs = run(&url, &["org", "list", "--json"]).json();
        let names: Vec<&str> = orgs
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["acme", "side"]);

        let refused = run(
            &url,
            &[
                "overrides",
                "create",
                &uid,
                "--org",
                "acme",
                "--actor",
                "lea",
                "--role",
                "lead",
                "--action",
                "add",
                "--technique",
                "T1003",
            ],
        );
        assert!(!refused.ok);
        let lines: Vec<&str> = refused.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", refused.stderr);
        assert!(
            lines[0].contains("invalid_input") && lines[0].contains("reason"),
            "{}",
            lines[0]
        );

        let verify = run(&url, &["audit", "verify", "--json"]).json();
        assert_eq!(verify["ok"], true);
    }
}

/// Environment, flags and the name the refusal must give.
type Refusal<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

/// Enterprise 18.1 loaded, validated, approved by a second person and
/// activated in the database at `url`.
fn activate_18_1(url: &str) {
    let id = run(
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
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(run(url, &["dataset", "validate", &id, "--actor", "alice"]).ok);
    assert!(run(url, &["dataset", "approve", &id, "--actor", "bob"]).ok);
    assert!(run(url, &["dataset", "activate", &id, "--actor", "bob"]).ok);
}

/// `run` with extra environment variables.
fn run_env(db: &str, env: &[(&str, &str)], args: &[&str]) -> support::Run {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nexus-attack"))
        .arg("--database")
        .arg(db)
        .args(args)
        .env_remove("NEXUS_ATTACK_DATABASE")
        .env_remove("NEXUS_ATTACK_LOG")
        .env_remove("NEXUS_ATTACK_AI_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run nexus-attack");
    support::Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The mapping policy comes from the environment or flags: a lower high
/// band threshold turns a 0.60 rule mapping from medium into high, and a
/// bad value stops the command before it touches the database.
#[tokio::test]
async fn band_thresholds_from_the_environment_change_the_band_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("rule.yml");
    std::fs::write(
        &rule,
        "{id: certutil, version: 1, title: certutil, author: eve, rationale: downloads, \
         confidence: 0.6, match: {field: alert.title, contains: certutil}, techniques: [T1105]}\n",
    )
    .unwrap();
    let alert = |uid: &str| {
        let file = dir.path().join(format!("{uid}.json"));
        std::fs::write(
            &file,
            format!("{{\"schema\": \"nexus-attack.alert/1\", \"uid\": \"{uid}\", \"title\": \"certutil download\"}}\n"),
        )
        .unwrap();
        file.to_str().unwrap().to_string()
    };
    let (default_alert, lowered_alert) = (alert("default-bands"), alert("lowered-bands"));
    let lowered = [("NEXUS_ATTACK_BANDS", "0.30,0.55")];

    for db in databases().await {
        let url = db.url.clone();
        let label = db.label();
        activate_18_1(&url);
        assert!(run(&url, &["org", "create", "acme"]).ok);
        let created = run(
            &url,
            &["rules", "create", rule.to_str().unwrap(), "--org", "acme"],
        );
        assert!(created.ok, "{label}: {}", created.stderr);

        let band = |env: &[(&str, &str)], file: &str, uid: &str| {
            let ingest = run_env(
                &url,
                env,
                &["alerts", "ingest", file, "--org", "acme", "--json"],
            );
            assert!(ingest.ok, "{label}: {}", ingest.stderr);
            let show = run_env(
                &url,
                env,
                &["alerts", "show", uid, "--org", "acme", "--json"],
            );
            let entries = show.json()["canonical"]["entries"].clone();
            assert_eq!(
                entries.as_array().map(Vec::len),
                Some(1),
                "{label}: {entries}"
            );
            assert_eq!(entries[0]["technique"], "T1105");
            entries[0]["band"].as_str().unwrap().to_string()
        };
        assert_eq!(
            band(&[], &default_alert, "default-bands"),
            "medium",
            "{label}"
        );
        assert_eq!(
            band(&lowered, &lowered_alert, "lowered-bands"),
            "high",
            "{label}"
        );

        // Refused before any work, naming the variable or flag.
        let refusals: [Refusal; 5] = [
            (
                &[("NEXUS_ATTACK_BANDS", "0.70,0.40")],
                &[],
                "NEXUS_ATTACK_BANDS",
            ),
            (&[("NEXUS_ATTACK_BANDS", "0.5")], &[], "NEXUS_ATTACK_BANDS"),
            (
                &[("NEXUS_ATTACK_AI_BAR", "1.5")],
                &[],
                "NEXUS_ATTACK_AI_BAR",
            ),
            (
                &[("NEXUS_ATTACK_MAX_TECHNIQUES", "0")],
                &[],
                "NEXUS_ATTACK_MAX_TECHNIQUES",
            ),
            (&[], &["--flip-flops=0"], "--flip-flops"),
        ];
        for (env, flags, named) in refusals {
            let mut args = vec!["org", "list"];
            args.extend_from_slice(flags);
            let refused = run_env(&url, env, &args);
            assert!(
                !refused.ok && refused.stderr.contains(named),
                "{label}: {}",
                refused.stderr
            );
        }
    }
}
