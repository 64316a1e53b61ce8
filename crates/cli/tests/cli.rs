//! The CLI contract, checked by running the real binary on the shared
//! releases: SQLite always, PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is
//! set. Expected values come from the raw bundles, not from the product.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::process::Command;

use serde_json::Value;
use sqlx::{AnyConnection, Connection, Executor};
use store::Backend;
use store::testing::{TestDatabase, databases};

mod support;

use support::{run, shared};

fn attack(name: &str) -> String {
    shared().join("attack").join(name).display().to_string()
}

fn raw(name: &str) -> Value {
    let bytes = std::fs::read(attack(name)).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn external_id(object: &Value) -> Option<&str> {
    object["external_references"]
        .as_array()?
        .iter()
        .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
        .as_str()
}

fn of_type<'a>(bundle: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |o| o["type"] == kind)
}

fn is_live(o: &Value) -> bool {
    o["revoked"] != true && o["x_mitre_deprecated"] != true
}

/// What one run of the binary gave.
fn load(db: &str, file: &str, actor: &str) -> Value {
    run(
        db,
        &["dataset", "load", &attack(file), "--actor", actor, "--json"],
    )
    .json()
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

/// Loads, validates, approves and activates; returns the dataset id.
fn activate(db: &str, file: &str) -> (String, Value) {
    let id = id_of(&load(db, file, "alice"));
    assert!(run(db, &["dataset", "validate", &id, "--actor", "alice"]).ok);
    assert!(run(db, &["dataset", "approve", &id, "--actor", "bob"]).ok);
    let activation = run(
        db,
        &["dataset", "activate", &id, "--actor", "bob", "--json"],
    )
    .json();
    (id, activation)
}

fn list(db: &str) -> Value {
    run(db, &["dataset", "list", "--json"]).json()
}

#[test]
fn enterprise_18_1_goes_through_the_lifecycle() {
    // Counts from the raw bundle.
    let bundle = raw("enterprise-attack-18.1.json.gz");
    let patterns: Vec<&Value> = of_type(&bundle, "attack-pattern").collect();
    let live_sub = |sub: bool| {
        patterns
            .iter()
            .filter(|o| is_live(o) && (o["x_mitre_is_subtechnique"] == true) == sub)
            .count()
    };
    let expected = serde_json::json!({
        "tactics": of_type(&bundle, "x-mitre-tactic").filter(|o| is_live(o)).count(),
        "techniques": live_sub(false),
        "subtechniques": live_sub(true),
        "deprecated": patterns.iter().filter(|o| o["x_mitre_deprecated"] == true && o["revoked"] != true).count(),
        "revoked": patterns.iter().filter(|o| o["revoked"] == true).count(),
    });
    assert_eq!(
        expected,
        serde_json::json!({"tactics": 14, "techniques": 216, "subtechniques": 475, "deprecated": 12, "revoked": 132})
    );

    for db in runtime().block_on(databases()) {
        let url = db.url.as_str();
        let loaded = load(url, "enterprise-attack-18.1.json.gz", "alice");
        assert_eq!(loaded["counts"], expected, "{}", db.label());
        assert_eq!(loaded["domain"], "enterprise-attack");
        assert_eq!(loaded["release"], "18.1");
        assert_eq!(loaded["state"], "loaded");
        let keys: BTreeSet<&str> = loaded
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "domain", "release", "state", "counts"])
        );
        let id = id_of(&loaded);

        run(url, &["dataset", "activate", &id, "--actor", "bob"]).fails_with("invalid_transition");
        assert!(run(url, &["dataset", "validate", &id, "--actor", "alice"]).ok);
        run(url, &["dataset", "approve", &id, "--actor", "alice"]).fails_with("four_eyes");
        assert!(run(url, &["dataset", "approve", &id, "--actor", "bob"]).ok);
        let activation = run(
            url,
            &["dataset", "activate", &id, "--actor", "carol", "--json"],
        )
        .json();
        assert_eq!(activation["dataset"]["state"], "active");

        let shown = run(url, &["dataset", "show", &id, "--json"]).json();
        assert_eq!(
            (
                &shown["loaded_by"],
                &shown["approved_by"],
                &shown["activated_by"]
            ),
            (&"alice".into(), &"bob".into(), &"carol".into())
        );
        let tactics = run(url, &["taxonomy", "tactics", "--json"]).json();
        assert_eq!(tactics.as_array().unwrap().len(), 14);
        let techniques = run(url, &["taxonomy", "techniques", "--json"]).json();
        assert_eq!(techniques.as_array().unwrap().len(), 216 + 475);
        let t1574 = run(url, &["taxonomy", "technique", "T1574", "--json"]).json();
        assert_eq!(t1574["technique"]["id"], "T1574");

        let verified = run(url, &["audit", "verify", "--json"]).json();
        assert_eq!(verified["ok"], true);
    }
}

#[test]
fn activation_reports_references_and_rollback_restores_the_previous_release() {
    for db in runtime().block_on(databases()) {
        let url = db.url.as_str();
        let (first, _) = activate(url, "enterprise-attack-16.1.json.gz");
        seed_reference(&db, &first, "T1574.002");

        let (second, activation) = activate(url, "enterprise-attack-17.1.json.gz");
        let issues = activation["compatibility"]["issues"].as_array().unwrap();
        assert_eq!(issues.len(), 1, "{}: {activation}", db.label());
        assert_eq!(issues[0]["technique_id"], "T1574.002");
        assert_eq!(issues[0]["status"], "revoked");
        assert_eq!(issues[0]["replaced_by"], "T1574.001");

        // The diff of the two datasets names the same revocation.
        let diff = run(url, &["dataset", "diff", &first, &second, "--json"]).json();
        let revoked = diff["techniques"]["revoked"].as_array().unwrap();
        let entry = revoked
            .iter()
            .find(|e| e["id"] == "T1574.002")
            .expect("T1574.002");
        assert_eq!(entry["replaced_by"], "T1574.001");
        let markdown = run(url, &["dataset", "diff", &first, &second, "--markdown"]);
        assert!(markdown.ok && markdown.stdout.contains("T1574.002"));

        let pending = run(url, &["dataset", "migrations", &second, "--json"]).json();
        assert_eq!(pending[0]["new_technique"], "T1574.001");
        assert_eq!(pending[0]["applied"], false);
        let applied = run(
            url,
            &[
                "dataset",
                "migrations",
                "apply",
                &second,
                "--actor",
                "carol",
                "--json",
            ],
        )
        .json();
        assert_eq!(applied.as_array().unwrap().len(), 1);
        let after = run(url, &["dataset", "migrations", &second, "--json"]).json();
        assert_eq!(after[0]["applied"], true);

        let rollback = run(
            url,
            &[
                "dataset",
                "rollback",
                "--domain",
                "enterprise",
                "--actor",
                "carol",
                "--json",
            ],
        )
        .json();
        assert_eq!(rollback["reactivated"]["id"], first.as_str());
        assert_eq!(rollback["rolled_back"]["state"], "rolled_back");
        let states: Vec<(String, String)> = list(url)
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["release"].as_str().unwrap().into(),
                    d["state"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert!(
            states.contains(&("16.1".into(), "active".into())),
            "{states:?}"
        );
        assert!(states.contains(&("17.1".into(), "rolled_back".into())));
        assert_eq!(run(url, &["audit", "verify", "--json"]).json()["ok"], true);
    }
}

/// Stores a record that names `technique`, as later issues' mappings will.
fn seed_reference(db: &TestDatabase, dataset: &str, technique: &str) {
    runtime().block_on(async {
        let store = store::Store::connect(&db.url).await.unwrap();
        let reference = store::ReferenceMigration {
            id: store::MigrationId::generate(),
            org_id: None,
            dataset_id: store::DatasetId(dataset.to_string()),
            ref_kind: "mapping".into(),
            ref_id: "alert-1".into(),
            old_technique: "T1073".into(),
            new_technique: technique.into(),
            applied_by: "seed".into(),
            applied_at: store::now(),
        };
        let mut tx = store.begin_all().await.unwrap();
        tx.insert_reference_migration(&reference).await.unwrap();
        tx.commit().await.unwrap();
        store.close().await;
    });
}

#[test]
fn diff_of_files_lists_added_techniques() {
    let old = raw("enterprise-attack-17.1.json.gz");
    let new = raw("enterprise-attack-18.1.json.gz");
    let old_ids: HashSet<&str> = of_type(&old, "attack-pattern")
        .filter_map(|o| o["id"].as_str())
        .collect();
    let added: BTreeSet<&str> = of_type(&new, "attack-pattern")
        .filter(|o| is_live(o) && !old_ids.contains(o["id"].as_str().unwrap()))
        .filter_map(external_id)
        .collect();
    assert_eq!(added.len(), 12);

    let db = TestDatabase::sqlite();
    let diff = run(
        &db.url,
        &[
            "dataset",
            "diff",
            &attack("enterprise-attack-17.1.json.gz"),
            &attack("enterprise-attack-18.1.json.gz"),
            "--json",
        ],
    )
    .json();
    let got: BTreeSet<&str> = diff["techniques"]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, added);
    for id in ["T1677", "T1678", "T1679", "T1680", "T1681"] {
        assert!(got.contains(id), "{id}");
    }
    for key in [
        "added",
        "major",
        "minor",
        "deprecated",
        "revoked",
        "removed",
    ] {
        assert!(diff["techniques"][key].is_array(), "techniques.{key}");
        assert!(diff["tactics"][key].is_array(), "tactics.{key}");
    }
    let markdown = run(
        &db.url,
        &[
            "dataset",
            "diff",
            &attack("enterprise-attack-17.1.json.gz"),
            &attack("enterprise-attack-18.1.json.gz"),
        ],
    );
    assert!(markdown.ok && markdown.stdout.contains("T1681"));
}

#[test]
fn audit_verify_detects_a_changed_row() {
    for db in runtime().block_on(databases()) {
        let url = db.url.as_str();
        assert!(run(url, &["org", "create", "acme"]).ok);
        let id = id_of(&load(url, "ics-attack-18.1.json.gz", "alice"));
        run(url, &["dataset", "approve", &id, "--actor", "bob"]).fails_with("invalid_transition");
        let verified = run(url, &["audit", "verify", "--json"]).json();
        assert_eq!(
            (verified["ok"].clone(), verified["events"].clone()),
            (true.into(), 3.into())
        );

        runtime().block_on(async {
            sqlx::any::install_default_drivers();
            let mut conn = AnyConnection::connect(url).await.unwrap();
            // The trigger refuses the edit...
            let refused = conn
                .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
                .await;
            assert!(refused.is_err(), "{}", db.label());
            // ...so a tamperer first drops it.
            let drop = match db.backend {
                Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
                Backend::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log",
            };
            conn.execute(drop).await.unwrap();
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
                .await
                .unwrap();
            conn.close().await.unwrap();
        });

        let tampered = run(url, &["audit", "verify"]);
        tampered.fails_with("audit_tampered");
        assert!(tampered.stderr.contains("event 2"), "{}", tampered.stderr);
    }
}

#[test]
fn bad_input_fails_on_one_line_and_changes_nothing() {
    let gz = std::fs::read(attack("enterprise-attack-18.1.json.gz")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("enterprise-attack-18.1.json.gz");
    std::fs::write(&truncated, &gz[..gz.len() / 3]).unwrap();
    let invalid = dir.path().join("enterprise-attack-18.0.json");
    std::fs::write(
        &invalid,
        "{\"type\": \"bundle\", \"objects\": [ {\"type\": }",
    )
    .unwrap();
    let (truncated, invalid) = (
        truncated.display().to_string(),
        invalid.display().to_string(),
    );

    for db in runtime().block_on(databases()) {
        let url = db.url.as_str();
        activate(url, "ics-attack-18.1.json.gz");
        let before = list(url);

        let cases: Vec<(Vec<&str>, &str)> = vec![
            (
                vec!["dataset", "load", &truncated, "--actor", "a", "--json"],
                "parse_error",
            ),
            (
                vec!["dataset", "load", &invalid, "--actor", "a", "--json"],
                "line 1",
            ),
            (
                vec![
                    "dataset", "load", &invalid, "--domain", "cloud", "--actor", "a",
                ],
                "unknown ATT&CK domain",
            ),
            (
                vec!["dataset", "load", "/nonexistent.json", "--actor", "a"],
                "fetch_failed",
            ),
            (vec!["dataset", "show", "no-such-id"], "not_found"),
            (vec!["dataset", "load", &truncated], "--actor"),
            (
                vec!["token", "create", "--org", "nope", "--role", "root"],
                "unknown role",
            ),
            (
                vec!["token", "create", "--org", "nope", "--role", "viewer"],
                "not_found",
            ),
        ];
        for (args, code) in cases {
            run(url, &args).fails_with(code);
        }
        assert_eq!(list(url), before, "{}", db.label());
        assert_eq!(run(url, &["audit", "verify", "--json"]).json()["ok"], true);
    }

    // A mistyped database URL is refused and creates nothing.
    let target = dir.path().join("typo.db");
    let typo = format!("sqlite:{}", target.display());
    run(&typo, &["dataset", "list"]).fails_with("unsupported database URL");
    assert!(!target.exists());
}

#[test]
fn orgs_and_tokens_from_the_command_line() {
    let db = TestDatabase::sqlite();
    let url = db.url.as_str();
    let org = run(url, &["org", "create", "acme", "--json"]).json();
    assert_eq!(org["name"], "acme");
    run(url, &["org", "create", "acme"]).fails_with("conflict");

    let token = run(
        url,
        &[
            "token", "create", "--org", "acme", "--role", "analyst", "--json",
        ],
    )
    .json();
    let secret = token["secret"].as_str().unwrap();
    assert!(secret.starts_with("nxa_"));
    assert_eq!(token["role"], "analyst");

    // The secret is stored only as its hash.
    let principal = runtime().block_on(async {
        let app = service::App::connect(service::AppConfig::new(url))
            .await
            .unwrap();
        app.authenticate(secret).await.unwrap()
    });
    assert_eq!(principal.org_name, "acme");
    let db_bytes = std::fs::read(db.url.trim_start_matches("sqlite://")).unwrap();
    let needle = secret.as_bytes();
    assert!(!db_bytes.windows(needle.len()).any(|w| w == needle));

    let events = run(url, &["audit", "list", "--json"]).json();
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["token_create", "org_create"]);
}

#[test]
fn sync_loads_each_new_release_once() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    for name in ["ics-attack-17.1.json.gz", "ics-attack-18.1.json.gz"] {
        std::os::unix::fs::symlink(attack(name), dir.path().join(name)).unwrap();
    }
    let source = dir.path().display().to_string();
    let sync = || {
        run(
            &db.url,
            &[
                "dataset", "sync", "--source", &source, "--once", "--actor", "sync", "--json",
            ],
        )
        .json()
    };

    let first = sync();
    let releases: Vec<&str> = first["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["dataset"]["release"].as_str().unwrap())
        .collect();
    assert_eq!(releases, vec!["17.1", "18.1"]);
    let second = sync();
    assert_eq!(second["loaded"], serde_json::json!([]));
    assert_eq!(second["skipped"].as_array().unwrap().len(), 2);
    let states: BTreeSet<String> = list(&db.url)
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, BTreeSet::from(["validated".to_string()]));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn broken_pipe_ends_quietly_without_a_panic() {
    let db = TestDatabase::sqlite();
    activate(&db.url, "ics-attack-18.1.json.gz");
    // `techniques --json` prints far more than a pipe buffer (64 KiB), so
    // the writer meets the closed pipe mid-output.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus-attack"))
        .args(["--database", &db.url])
        .args([
            "taxonomy",
            "techniques",
            "--domain",
            "ics-attack",
            "--status",
            "all",
            "--json",
        ])
        .env_remove("NEXUS_ATTACK_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn nexus-attack");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "ends quietly, like head's upstream");
}

#[test]
fn sync_interval_0_is_refused() {
    let db = TestDatabase::sqlite();
    let source = shared().join("attack").display().to_string();
    for interval in ["0", "9"] {
        let run = run(
            &db.url,
            &[
                "dataset",
                "sync",
                "--source",
                &source,
                "--interval",
                interval,
                "--actor",
                "s",
            ],
        );
        run.fails_with("error[invalid_input]: invalid interval");
        assert!(run.stderr.contains("10 s or more"), "{}", run.stderr);
    }
    assert_eq!(list(&db.url), serde_json::json!([]), "nothing synced");
}

#[test]
fn sync_once_fails_when_a_source_or_bundle_fails() {
    let db = TestDatabase::sqlite();
    let missing = run(
        &db.url,
        &[
            "dataset",
            "sync",
            "--source",
            "/nonexistent/attack",
            "--once",
            "--actor",
            "s",
        ],
    );
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .lines()
            .any(|l| l.starts_with("error[sync_failed]: 1 of 1")),
        "{}",
        missing.stderr
    );

    // One good bundle and one broken: the good one loads, the command fails.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        attack("ics-attack-17.1.json.gz"),
        dir.path().join("ics-attack-17.1.json.gz"),
    )
    .unwrap();
    std::fs::write(dir.path().join("ics-attack-18.1.json"), "{\"type\": ").unwrap();
    let source = dir.path().display().to_string();
    let mixed = run(
        &db.url,
        &[
            "dataset", "sync", "--source", &source, "--once", "--actor", "s",
        ],
    );
    assert!(!mixed.ok);
    assert!(
        mixed.stdout.contains("loaded ics-attack 17.1"),
        "{}",
        mixed.stdout
    );
    assert!(mixed.stdout.contains("failed "), "{}", mixed.stdout);
    let error: Vec<&str> = mixed
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(error.len(), 1, "{}", mixed.stderr);
    assert!(error[0].starts_with("error[sync_failed]: 1 of 2 bundle(s) failed; first: "));
    assert_eq!(list(&db.url).as_array().unwrap().len(), 1);
}

#[test]
fn argument_errors_carry_codes_and_conflicts_say_conflict_once() {
    let db = TestDatabase::sqlite();
    let url = db.url.as_str();
    run(url, &["audit", "list", "--limit", "0"]).fails_with("error[invalid_input]: invalid limit");
    run(url, &["dataset", "list", "--domain", "cloud"]).fails_with("error[invalid_input]");
    run(url, &["dataset", "list", "--state", "sleeping"]).fails_with("error[invalid_input]");
    run(url, &["taxonomy", "techniques", "--status", "odd"]).fails_with("error[invalid_input]");
    run(url, &["token", "create", "--org", "x", "--role", "root"])
        .fails_with("error[invalid_input]");
    run(
        url,
        &[
            "dataset",
            "load",
            &attack("ics-attack-17.1.json.gz"),
            "--actor",
            " ",
        ],
    )
    .fails_with("error[invalid_input]: invalid actor: actor must name a person");

    assert!(run(url, &["org", "create", "acme"]).ok);
    let again = run(url, &["org", "create", "acme"]);
    again.fails_with("error[conflict]: ");
    assert!(
        !again.stderr.contains("conflict: conflict"),
        "{}",
        again.stderr
    );

    let unknown = "00000000-0000-0000-0000-000000000000";
    run(url, &["dataset", "diff", unknown, unknown]).fails_with(&format!(
        "error[not_found]: `{unknown}` is neither a known dataset id nor a readable file or URL"
    ));

    run("mysql://x", &["dataset", "list"]).fails_with("error[invalid_config]");
    run("postgres://postgres@127.0.0.1:1/x", &["dataset", "list"]).fails_with(
        "error[database_unavailable]: cannot open the database: cannot connect to the database \
         `postgres://postgres@127.0.0.1:1/x`",
    );
}
