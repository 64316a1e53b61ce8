//! Use cases end to end on a real database: SQLite always, PostgreSQL when
//! `NEXUS_ATTACK_TEST_POSTGRES` is set. Expected values are computed from the
//! raw bundles here, not by the code under test.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;

use serde_json::{Value, json};
use service::{
    Actor, App, AppConfig, DatasetFilter, DatasetState, LoadOptions, Outcome, PageRequest,
    ReferenceStatus, Role, StatusFilter, TechniqueFilter,
};
use store::testing::{TestDatabase, databases};
use taxonomy::Domain;

mod support;
use support::{shared, steward};

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

fn objects<'a>(bundle: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |o| o["type"] == kind)
}

fn external_id(object: &Value) -> Option<&str> {
    object["external_references"]
        .as_array()?
        .iter()
        .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
        .as_str()
}

fn live(object: &Value) -> bool {
    object["revoked"] != true && object["x_mitre_deprecated"] != true
}

async fn app(db: &TestDatabase) -> App {
    App::connect(AppConfig::new(db.url.clone())).await.unwrap()
}

/// Loads, validates, approves (by someone else) and activates a release.
async fn activate(app: &App, file: &str) -> service::Activation {
    let alice = steward("alice");
    let dataset = app
        .load_dataset(&alice, &attack(file), &LoadOptions::default())
        .await
        .unwrap();
    let report = app.validate_dataset(&alice, &dataset.id).await.unwrap();
    assert_eq!(report.errors, 0, "{file}: {:?}", report.findings.first());
    app.approve_dataset(&steward("bob"), &dataset.id)
        .await
        .unwrap();
    app.activate_dataset(&steward("carol"), &dataset.id)
        .await
        .unwrap()
}

/// ATT&CK ID of the `revoked-by` target of the object with `id`, from raw JSON.
fn raw_revoked_by(bundle: &Value, id: &str) -> Option<String> {
    let by_stix: HashMap<&str, &Value> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap_or_default(), o))
        .collect();
    let object = objects(bundle, "attack-pattern")
        .find(|o| external_id(o) == Some(id) && o["revoked"] == true)?;
    let relationship = objects(bundle, "relationship")
        .find(|r| r["relationship_type"] == "revoked-by" && r["source_ref"] == object["id"])?;
    let target = by_stix.get(relationship["target_ref"].as_str()?)?;
    external_id(target).map(str::to_string)
}

#[tokio::test]
async fn activation_checks_stored_references_and_rollback_restores() {
    let new_release = raw("enterprise-attack-17.1.json.gz");
    let expected_replacement = raw_revoked_by(&new_release, "T1574.002");
    assert_eq!(expected_replacement.as_deref(), Some("T1574.001"));

    for db in databases().await {
        let app = app(&db).await;
        let first = activate(&app, "enterprise-attack-16.1.json.gz").await;
        assert_eq!(first.retired, None);

        // A stored record that names T1574.002, live in 16.1.
        let reference = store::ReferenceMigration {
            id: store::MigrationId::generate(),
            org_id: None,
            dataset_id: first.dataset.id.clone(),
            ref_kind: "mapping".into(),
            ref_id: "alert-7".into(),
            old_technique: "T1073".into(),
            new_technique: "T1574.002".into(),
            applied_by: "seed".into(),
            applied_at: store::now(),
        };
        let mut tx = app.store().begin_all().await.unwrap();
        tx.insert_reference_migration(&reference).await.unwrap();
        tx.commit().await.unwrap();

        let second = activate(&app, "enterprise-attack-17.1.json.gz").await;
        assert_eq!(
            second.retired.as_ref(),
            Some(&first.dataset.id),
            "{}",
            db.label()
        );
        assert_eq!(
            second.dataset.previous_active.as_ref(),
            Some(&first.dataset.id)
        );
        let issue = second
            .compatibility
            .issues
            .iter()
            .find(|i| i.id == reference.id.to_string())
            .expect("the T1574.002 reference is reported");
        assert_eq!(issue.status, ReferenceStatus::Revoked);
        assert_eq!(issue.replaced_by, expected_replacement);
        assert_eq!(second.compatibility.references_checked, 1);

        // The change summary stored at load compares with 16.1.
        let stored = app
            .store()
            .dataset_document(&second.dataset.id, store::DatasetDocument::ChangeSummary)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored["against"]["release"], "16.1");

        // Migration: suggested, applied beside the original, then marked.
        let carol = steward("carol");
        let suggested = app.migrations(&carol, &second.dataset.id).await.unwrap();
        assert_eq!(suggested.len(), 1);
        assert_eq!(suggested[0].new_technique, "T1574.001");
        assert!(!suggested[0].applied);
        let applied = app
            .apply_migrations(&carol, &second.dataset.id)
            .await
            .unwrap();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].old_technique, "T1574.002");
        assert!(app.migrations(&carol, &second.dataset.id).await.unwrap()[0].applied);
        let originals = app
            .store()
            .reference_migrations(&first.dataset.id)
            .await
            .unwrap();
        assert_eq!(
            originals,
            vec![reference.clone()],
            "the original is never rewritten"
        );
        assert!(
            app.apply_migrations(&carol, &second.dataset.id)
                .await
                .unwrap()
                .is_empty()
        );

        // Rollback: 16.1 active again, 17.1 rolled back.
        let rollback = app
            .rollback_domain(&carol, Domain::Enterprise)
            .await
            .unwrap();
        assert_eq!(rollback.reactivated.id, first.dataset.id);
        assert_eq!(rollback.reactivated.state, DatasetState::Active);
        assert_eq!(rollback.rolled_back.state, DatasetState::RolledBack);
        let active = app
            .store()
            .active_dataset(Domain::Enterprise)
            .await
            .unwrap();
        assert_eq!(active.map(|d| d.release).as_deref(), Some("16.1"));
        // Nothing was active before 16.1.
        let err = app
            .rollback_domain(&carol, Domain::Enterprise)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");

        let verification = app.audit_verify(&carol).await.unwrap();
        assert!(verification.ok, "{verification:?}");
        let actions: Vec<String> = app
            .audit_list(&carol, &PageRequest::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| e.action.clone())
            .collect();
        for action in ["dataset_activate", "dataset_rollback", "dataset_migrate"] {
            assert!(actions.iter().any(|a| a == action), "{action} audited");
        }
    }
}

#[tokio::test]
async fn lifecycle_rules_are_enforced_and_refusals_audited() {
    for db in databases().await {
        let app = app(&db).await;
        let alice = steward("alice");
        let ics = attack("ics-attack-18.1.json.gz");
        let dataset = app
            .load_dataset(&alice, &ics, &LoadOptions::default())
            .await
            .unwrap();
        assert_eq!(dataset.state, DatasetState::Loaded);

        let err = app.activate_dataset(&alice, &dataset.id).await.unwrap_err();
        assert_eq!(err.code(), "invalid_transition", "{err}");
        assert!(err.to_string().contains("loaded"), "{err}");

        app.validate_dataset(&alice, &dataset.id).await.unwrap();
        let err = app.approve_dataset(&alice, &dataset.id).await.unwrap_err();
        assert_eq!(err.code(), "four_eyes", "{err}");

        // An org viewer may read but not approve; the denial is audited.
        let viewer = Actor {
            name: "token:v".into(),
            org: None,
            role: Role::Viewer,
        };
        let err = app.approve_dataset(&viewer, &dataset.id).await.unwrap_err();
        assert_eq!(err.code(), "forbidden");

        let unchanged = app.dataset(&alice, &dataset.id).await.unwrap();
        assert_eq!(unchanged.state, DatasetState::Validated);
        assert_eq!(unchanged.approved_by, None);

        let events = app
            .audit_list(&alice, &PageRequest::default())
            .await
            .unwrap()
            .items;
        let outcomes: Vec<(String, Outcome)> = events
            .iter()
            .rev()
            .map(|e| (e.action.clone(), e.outcome))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("dataset_load".to_string(), Outcome::Ok),
                ("dataset_activate".to_string(), Outcome::Failed),
                ("dataset_validate".to_string(), Outcome::Ok),
                ("dataset_approve".to_string(), Outcome::Denied),
                ("dataset_approve".to_string(), Outcome::Denied),
            ],
            "{}",
            db.label()
        );

        // The same bytes again are refused while the first copy is alive.
        let err = app
            .load_dataset(&alice, &ics, &LoadOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");

        // A rejection needs a reason, then ends the dataset's road.
        let err = app
            .reject_dataset(&alice, &dataset.id, "  ")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_input");
        let rejected = app
            .reject_dataset(&steward("bob"), &dataset.id, "wrong feed")
            .await
            .unwrap();
        assert_eq!(rejected.state, DatasetState::Rejected);
        assert_eq!(rejected.rejection_reason.as_deref(), Some("wrong feed"));
    }
}

/// A small STIX 2.0 bundle whose only technique is a sub-technique without
/// its parent.
fn orphan_bundle() -> Vec<u8> {
    let modified = "2024-01-01T00:00:00.000Z";
    let refs = |id: &str| json!([{"source_name": "mitre-attack", "external_id": id}]);
    json!({
        "type": "bundle",
        "id": "bundle--00000000-0000-4000-8000-000000000000",
        "spec_version": "2.0",
        "objects": [
            {
                "type": "x-mitre-matrix", "id": "x-mitre-matrix--1", "name": "Enterprise ATT&CK",
                "external_references": refs("enterprise-attack"),
                "tactic_refs": ["x-mitre-tactic--1"], "created": modified, "modified": modified,
                "x_mitre_version": "1.0"
            },
            {
                "type": "x-mitre-tactic", "id": "x-mitre-tactic--1", "name": "Execution",
                "x_mitre_shortname": "execution", "external_references": refs("TA0002"),
                "created": modified, "modified": modified, "x_mitre_version": "1.0",
                "description": "Run code."
            },
            {
                "type": "attack-pattern", "id": "attack-pattern--1", "name": "Orphan",
                "external_references": refs("T9999.001"), "x_mitre_is_subtechnique": true,
                "kill_chain_phases": [{"kill_chain_name": "mitre-attack", "phase_name": "execution"}],
                "x_mitre_platforms": ["Windows"], "created": modified, "modified": modified,
                "x_mitre_version": "1.0", "description": "No parent."
            }
        ]
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let good = std::fs::read(attack("ics-attack-18.1.json.gz")).unwrap();
    for db in databases().await {
        let app = app(&db).await;
        let alice = steward("alice");
        let active = activate(&app, "ics-attack-17.1.json.gz").await.dataset;
        let before = app
            .list_datasets(&alice, &DatasetFilter::default())
            .await
            .unwrap();
        let audit_before = app.store().verify_audit().await.unwrap().events;

        let named = |name: &str| LoadOptions {
            file_name: Some(name.into()),
            ..LoadOptions::default()
        };
        let cases: Vec<(&str, Vec<u8>, LoadOptions)> = vec![
            (
                "truncated gzip",
                good[..good.len() / 2].to_vec(),
                named("ics-attack-18.1.json.gz"),
            ),
            (
                "invalid JSON",
                b"{\"type\": \"bundle\", \"objects\": [".to_vec(),
                named("ics-attack-18.1.json"),
            ),
            (
                "unknown domain",
                orphan_bundle(),
                named("cloud-attack-1.0.json"),
            ),
        ];
        for (case, bytes, options) in cases {
            let err = app
                .load_dataset_bytes(&alice, bytes, &options)
                .await
                .unwrap_err();
            assert_eq!(err.code(), "parse_error", "{case}: {err}");
            assert!(!err.to_string().contains('\n'), "{case}: one line");
        }
        let err = app
            .load_dataset(
                &alice,
                "/nonexistent/enterprise-attack-18.1.json",
                &LoadOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "fetch_failed");
        assert_eq!(
            app.list_datasets(&alice, &DatasetFilter::default())
                .await
                .unwrap(),
            before,
            "{}",
            db.label()
        );
        // Failed loads are audited (four above) and nothing else is written.
        assert_eq!(
            app.store().verify_audit().await.unwrap().events,
            audit_before + 4
        );
        let failed = app
            .audit_list(&Actor::operator("auditor"), &PageRequest::default())
            .await
            .unwrap()
            .items;
        let codes: Vec<(&str, Outcome, Option<&service::OrgId>, &str)> = failed[..4]
            .iter()
            .map(|e| {
                let code = e.details["code"].as_str().unwrap_or_default();
                (e.action.as_str(), e.outcome, e.org_id.as_ref(), code)
            })
            .collect();
        let expected = ["fetch_failed", "parse_error", "parse_error", "parse_error"]
            .map(|code| ("dataset_load", Outcome::Failed, None, code));
        assert_eq!(codes, expected);
        assert!(failed[..4].iter().all(|e| e.actor == "alice"));

        // A sub-technique without parent loads, then Gate A rejects it and
        // names the object; the active dataset stays.
        let orphan = app
            .load_dataset_bytes(
                &alice,
                orphan_bundle(),
                &named("enterprise-attack-99.1.json"),
            )
            .await
            .unwrap();
        let report = app.validate_dataset(&alice, &orphan.id).await.unwrap();
        let error = report
            .findings
            .iter()
            .find(|f| f.severity == "error" && f.code == "missing_parent")
            .expect("missing_parent reported");
        assert_eq!(error.attack_id.as_deref(), Some("T9999.001"));
        let orphan = app.dataset(&alice, &orphan.id).await.unwrap();
        assert_eq!(orphan.state, DatasetState::Rejected);
        assert_eq!(orphan.validation_errors, Some(report.errors as i64));
        let err = app.activate_dataset(&alice, &orphan.id).await.unwrap_err();
        assert_eq!(err.code(), "invalid_transition");
        let still = app
            .store()
            .active_dataset(Domain::Ics)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(still.id, active.id);
    }
}

#[tokio::test]
async fn tokens_authenticate_within_their_org() {
    for db in databases().await {
        let app = app(&db).await;
        let root = Actor::operator("root");
        let acme = app.create_org(&root, "acme").await.unwrap();
        let other = app.create_org(&root, "other").await.unwrap();
        assert_eq!(
            app.create_org(&root, "acme").await.unwrap_err().code(),
            "conflict"
        );

        let admin = app
            .create_token(&root, "acme", Role::Admin, Some("acme admin"))
            .await
            .unwrap();
        let secret = admin.secret.expose().to_string();
        assert!(secret.starts_with("nxa_") && secret.len() > 40);
        assert!(
            !format!("{admin:?}").contains(&secret),
            "Debug never shows the secret"
        );

        let principal = app.authenticate(&format!("Bearer {secret}")).await.unwrap();
        assert_eq!(principal.org, acme.id);
        assert_eq!(principal.role, Role::Admin);
        for bad in [
            "",
            "Bearer ",
            "nxa_nope",
            "Bearer abc",
            &secret[..secret.len() - 1],
        ] {
            let err = app.authenticate(bad).await.unwrap_err();
            assert_eq!(err.code(), "unauthenticated", "{bad:?}");
        }

        // The org admin mints tokens for its own org, never above itself.
        let acting = principal.actor();
        let viewer = app
            .create_token(&acting, "acme", Role::Viewer, None)
            .await
            .unwrap();
        let err = app
            .create_token(&acting, "acme", Role::Steward, None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        // Another org's name answers like a missing one.
        let foreign = app
            .create_token(&acting, "other", Role::Viewer, None)
            .await
            .unwrap_err();
        let missing = app
            .create_token(&acting, "no-such-org", Role::Viewer, None)
            .await
            .unwrap_err();
        assert_eq!((foreign.code(), missing.code()), ("not_found", "not_found"));
        assert_eq!(foreign.kind(), missing.kind());

        // Revocation ends authentication; another org's admin cannot revoke.
        let other_admin = app
            .create_token(&root, "other", Role::Admin, None)
            .await
            .unwrap();
        let other_actor = app
            .authenticate(other_admin.secret.expose())
            .await
            .unwrap()
            .actor();
        let err = app
            .revoke_token(&other_actor, &viewer.id)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
        app.authenticate(viewer.secret.expose()).await.unwrap();
        app.revoke_token(&acting, &viewer.id).await.unwrap();
        let err = app.authenticate(viewer.secret.expose()).await.unwrap_err();
        assert_eq!(err.code(), "unauthenticated");

        // Each org reads only its own audit events.
        let events = app
            .audit_list(&acting, &PageRequest::default())
            .await
            .unwrap()
            .items;
        assert!(!events.is_empty());
        assert!(
            events.iter().all(|e| e.org_id.as_ref() == Some(&acme.id)),
            "{}",
            db.label()
        );
        let other_events = app
            .audit_list(&other_actor, &PageRequest::default())
            .await
            .unwrap()
            .items;
        assert!(
            other_events
                .iter()
                .all(|e| e.org_id.as_ref() == Some(&other.id))
        );
        assert!(app.audit_verify(&root).await.unwrap().ok);
    }
}

#[tokio::test]
async fn taxonomy_reads_answer_from_the_active_release() {
    let bundle = raw("enterprise-attack-18.1.json.gz");
    let stix_to_attack: HashMap<&str, &str> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| Some((o["id"].as_str()?, external_id(o)?)))
        .collect();
    let matrix = objects(&bundle, "x-mitre-matrix")
        .find(|m| live(m))
        .unwrap();
    let matrix_order: Vec<&str> = matrix["tactic_refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| stix_to_attack[r.as_str().unwrap()])
        .collect();
    let live_patterns: Vec<&Value> = objects(&bundle, "attack-pattern")
        .filter(|o| live(o))
        .collect();
    let all_live: BTreeSet<&str> = live_patterns
        .iter()
        .filter_map(|o| external_id(o))
        .collect();
    let windows_execution: BTreeSet<&str> = live_patterns
        .iter()
        .filter(|o| {
            o["kill_chain_phases"].as_array().is_some_and(|p| {
                p.iter().any(|k| {
                    k["kill_chain_name"] == "mitre-attack" && k["phase_name"] == "execution"
                })
            }) && o["x_mitre_platforms"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == "Windows"))
        })
        .filter_map(|o| external_id(o))
        .collect();
    let t1574_subs: BTreeSet<&str> = objects(&bundle, "attack-pattern")
        .filter(|o| o["x_mitre_is_subtechnique"] == true)
        .filter_map(|o| external_id(o))
        .filter(|id| id.starts_with("T1574."))
        .collect();

    for db in databases().await {
        let app = app(&db).await;
        let viewer = Actor {
            name: "v".into(),
            org: None,
            role: Role::Viewer,
        };
        let err = app.tactics(&viewer, Domain::Enterprise).await.unwrap_err();
        assert_eq!(err.code(), "not_found", "nothing active yet");
        activate(&app, "enterprise-attack-18.1.json.gz").await;

        let tactics = app.tactics(&viewer, Domain::Enterprise).await.unwrap();
        let ids: Vec<&str> = tactics.tactics.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, matrix_order, "{}", db.label());
        assert_eq!(tactics.dataset.release, "18.1");

        // Walk every page of live techniques.
        let mut page = PageRequest {
            cursor: None,
            limit: Some(100),
        };
        let mut seen = Vec::new();
        loop {
            let answer = app
                .techniques(
                    &viewer,
                    Domain::Enterprise,
                    &TechniqueFilter::default(),
                    &page,
                )
                .await
                .unwrap();
            assert!(answer.page.items.len() <= 100);
            seen.extend(answer.page.items.into_iter().map(|t| t.id));
            match answer.page.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => break,
            }
        }
        let unique: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(seen.len(), unique.len(), "no duplicates across pages");
        assert_eq!(unique, all_live);
        assert_eq!(seen.len(), 216 + 475);

        let filter = TechniqueFilter {
            tactic: Some("TA0002".into()),
            platform: Some("windows".into()),
            ..TechniqueFilter::default()
        };
        let page = PageRequest {
            cursor: None,
            limit: Some(500),
        };
        let got = app
            .techniques(&viewer, Domain::Enterprise, &filter, &page)
            .await
            .unwrap();
        let got: BTreeSet<&str> = got.page.items.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(got, windows_execution);

        let revoked = TechniqueFilter {
            status: StatusFilter::Revoked,
            exclude_subtechniques: false,
            ..TechniqueFilter::default()
        };
        let got = app
            .techniques(&viewer, Domain::Enterprise, &revoked, &page)
            .await
            .unwrap();
        assert_eq!(got.page.items.len(), 132);

        let t1574 = app
            .technique(&viewer, Domain::Enterprise, "t1574")
            .await
            .unwrap();
        let subs: BTreeSet<&str> = t1574.subtechniques.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(subs, t1574_subs);

        // T1073 was revoked in favour of T1574.002 (itself revoked in 17.1).
        let t1073 = app
            .technique(&viewer, Domain::Enterprise, "T1073")
            .await
            .unwrap();
        assert!(t1073.technique.status.revoked);
        assert_eq!(
            t1073.replacement.map(|r| r.id),
            raw_revoked_by(&bundle, "T1073")
        );
        let err = app
            .technique(&viewer, Domain::Enterprise, "T1059-1")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_input");
        let err = app
            .technique(&viewer, Domain::Enterprise, "T9999")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");

        let ready = app.readiness().await;
        assert!(ready.ready && ready.database);
    }
}

#[tokio::test]
async fn sync_loads_new_releases_once_and_never_activates() {
    for db in databases().await {
        let app = app(&db).await;
        let alice = steward("alice");
        let dir = tempfile::tempdir().unwrap();
        let link = |name: &str| {
            std::os::unix::fs::symlink(attack(name), dir.path().join(name)).unwrap();
        };
        link("ics-attack-17.1.json.gz");
        std::fs::write(dir.path().join("notes.txt"), "not a bundle").unwrap();
        let source = dir.path().display().to_string();

        let first = app.sync_once(&alice, &source).await.unwrap();
        assert_eq!(first.loaded.len(), 1, "{}: {first:?}", db.label());
        assert_eq!(first.loaded[0].dataset.state, DatasetState::Validated);
        assert_eq!(first.loaded[0].change_summary, None);
        let again = app.sync_once(&alice, &source).await.unwrap();
        assert!(again.loaded.is_empty());
        assert_eq!(again.skipped.len(), 1);

        let id = first.loaded[0].dataset.id.clone();
        app.approve_dataset(&steward("bob"), &id).await.unwrap();
        app.activate_dataset(&steward("bob"), &id).await.unwrap();

        link("ics-attack-18.1.json.gz");
        let second = app.sync_once(&alice, &source).await.unwrap();
        assert_eq!(second.loaded.len(), 1);
        let summary = second.loaded[0].change_summary.as_ref().expect("summary");
        assert_eq!(summary["against"]["dataset_id"], json!(id));
        assert_eq!(second.loaded[0].dataset.state, DatasetState::Validated);
        let active = app
            .store()
            .active_dataset(Domain::Ics)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(active.release, "17.1", "sync never activates");
    }
}

/// Serves `files` (path -> bytes) over HTTP/1.1 on a loopback port until
/// the test ends; anything else is a 404.
async fn serve_files(files: HashMap<String, Vec<u8>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0_u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match files.get(&path) {
                Some(body) => ("200 OK", body.clone()),
                None => ("404 Not Found", b"missing".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.shutdown().await;
        }
    });
    base
}

#[tokio::test]
async fn releases_load_from_urls_gzipped_or_plain() {
    let gz = std::fs::read(attack("mobile-attack-18.1.json.gz")).unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    let expected_tactics = objects(&serde_json::from_slice(&plain).unwrap(), "x-mitre-tactic")
        .filter(|o| live(o))
        .count();
    let base = serve_files(HashMap::from([
        ("/attack/mobile-attack-18.1.json.gz".to_string(), gz.clone()),
        ("/plain/mobile-attack-18.1.json".to_string(), plain.clone()),
    ]))
    .await;

    for db in databases().await {
        let app = app(&db).await;
        let alice = steward("alice");
        let from_gz = app
            .load_dataset(
                &alice,
                &format!("{base}/attack/mobile-attack-18.1.json.gz"),
                &LoadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            (from_gz.domain, from_gz.release.as_str()),
            (Domain::Mobile, "18.1")
        );
        assert_eq!(from_gz.counts.tactics, expected_tactics, "{}", db.label());
        assert_eq!(
            from_gz.source,
            format!("{base}/attack/mobile-attack-18.1.json.gz")
        );
        // The stored bytes are those served, gzip and all.
        assert_eq!(app.store().bundle(&from_gz.id).await.unwrap().unwrap(), gz);

        // Plain JSON is other bytes of the same release: refused while the
        // gzip copy is live, loaded once that one is rejected.
        let plain_url = format!("{base}/plain/mobile-attack-18.1.json");
        let err = app
            .load_dataset(&alice, &plain_url, &LoadOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
        assert!(err.to_string().contains(from_gz.id.as_str()), "{err}");
        app.reject_dataset(&alice, &from_gz.id, "loading the plain copy")
            .await
            .unwrap();
        let from_plain = app
            .load_dataset(
                &alice,
                &format!("{base}/plain/mobile-attack-18.1.json"),
                &LoadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(from_plain.counts, from_gz.counts);
        assert_ne!(from_plain.sha256, from_gz.sha256);

        let err = app
            .load_dataset(
                &alice,
                &format!("{base}/nothing/mobile-attack-18.1.json"),
                &LoadOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "fetch_failed");
        assert!(err.to_string().contains("404"), "{err}");

        // A diff side may be a URL too.
        let diff = app
            .diff(
                &alice,
                from_gz.id.as_str(),
                &format!("{base}/plain/mobile-attack-18.1.json"),
            )
            .await
            .unwrap();
        assert_eq!(diff.diff["techniques"]["added"], json!([]));
        assert_eq!(diff.to.dataset_id, None);
    }
}

#[tokio::test]
async fn readers_diff_datasets_but_not_files() {
    let db = TestDatabase::sqlite();
    let app = app(&db).await;
    let loaded = app
        .load_dataset(
            &steward("alice"),
            &attack("ics-attack-17.1.json.gz"),
            &LoadOptions::default(),
        )
        .await
        .unwrap();
    let viewer = Actor {
        name: "v".into(),
        org: None,
        role: Role::Viewer,
    };
    let same = app
        .diff(&viewer, loaded.id.as_str(), loaded.id.as_str())
        .await
        .unwrap();
    assert_eq!(same.diff["techniques"]["added"], json!([]));
    let err = app
        .diff(&viewer, loaded.id.as_str(), "/etc/hostname")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "forbidden");
}

/// A gzip stream of `plain_len` spaces, compressed in 1 MiB chunks.
fn gzip_of_spaces(plain_len: usize) -> Vec<u8> {
    use std::io::Write;
    let chunk = vec![b' '; 1 << 20];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..plain_len / chunk.len() {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_bomb_upload_is_too_large_at_the_configured_cap() {
    for db in databases().await {
        let mut config = AppConfig::new(db.url.clone());
        config.max_bundle_bytes = 1 << 20;
        let app = App::connect(config).await.unwrap();
        let bomb = gzip_of_spaces(16 << 20);
        assert!(
            bomb.len() < 1 << 20,
            "small on disk, so it passes the upload cap"
        );
        let options = LoadOptions {
            file_name: Some("enterprise-attack-18.1.json.gz".into()),
            ..LoadOptions::default()
        };
        let err = app
            .load_dataset_bytes(&steward("alice"), bomb, &options)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "too_large", "{}: {err}", db.label());
        assert_eq!(
            err.details(),
            Some(json!({"source": "enterprise-attack-18.1.json.gz", "limit": 1_048_576}))
        );
        assert!(
            app.list_datasets(&steward("alice"), &DatasetFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn blank_actor_is_refused_for_every_lifecycle_use_case() {
    for db in databases().await {
        let app = app(&db).await;
        let id = service::DatasetId("00000000-0000-0000-0000-000000000000".into());
        for name in ["", "   ", "\t\n"] {
            let blank = steward(name);
            let errors = [
                app.load_dataset(
                    &blank,
                    &attack("ics-attack-17.1.json.gz"),
                    &LoadOptions::default(),
                )
                .await
                .unwrap_err(),
                app.validate_dataset(&blank, &id).await.unwrap_err(),
                app.approve_dataset(&blank, &id).await.unwrap_err(),
                app.activate_dataset(&blank, &id).await.unwrap_err(),
                app.sync_once(&blank, &attack("ics-attack-17.1.json.gz"))
                    .await
                    .unwrap_err(),
                app.create_org(&Actor::operator(name), "acme")
                    .await
                    .unwrap_err(),
            ];
            for err in errors {
                assert_eq!(err.code(), "invalid_input", "{name:?}: {err}");
                assert_eq!(err.to_string(), "invalid actor: actor must name a person");
            }
        }
        assert!(
            app.list_datasets(&steward("alice"), &DatasetFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
        // Names are trimmed, not refused, when something is left.
        assert_eq!(Actor::operator("  alice ").name, "alice");
    }
}

#[tokio::test]
async fn same_release_loaded_twice_is_a_conflict_naming_the_first() {
    let gz = std::fs::read(attack("ics-attack-17.1.json.gz")).unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    for db in databases().await {
        let app = app(&db).await;
        let alice = steward("alice");
        let first = app
            .load_dataset(
                &alice,
                &attack("ics-attack-17.1.json.gz"),
                &LoadOptions::default(),
            )
            .await
            .unwrap();
        let options = LoadOptions {
            file_name: Some("ics-attack-17.1.json".into()),
            ..LoadOptions::default()
        };
        let err = app
            .load_dataset_bytes(&alice, plain.clone(), &options)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "{}", db.label());
        assert_eq!(
            err.to_string(),
            format!(
                "ics-attack 17.1 is already loaded as dataset {} (loaded)",
                first.id
            )
        );
        let all = app
            .list_datasets(&alice, &DatasetFilter::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 1);

        // Once the first is out of the lifecycle (rejected), loading again works.
        app.reject_dataset(&alice, &first.id, "wrong copy")
            .await
            .unwrap();
        let again = app
            .load_dataset_bytes(&alice, plain.clone(), &options)
            .await;
        assert!(again.is_ok(), "{again:?}");
    }
}

#[tokio::test]
async fn sync_summarises_against_the_newest_loaded_when_none_is_active() {
    for db in databases().await {
        let app = app(&db).await;
        let alice = steward("alice");
        let dir = tempfile::tempdir().unwrap();
        for name in ["ics-attack-17.1.json.gz", "ics-attack-18.1.json.gz"] {
            std::os::unix::fs::symlink(attack(name), dir.path().join(name)).unwrap();
        }
        let report = app
            .sync_once(&alice, &dir.path().display().to_string())
            .await
            .unwrap();
        let releases: Vec<&str> = report
            .loaded
            .iter()
            .map(|s| s.dataset.release.as_str())
            .collect();
        assert_eq!(releases, ["17.1", "18.1"], "{}", db.label());
        assert_eq!(report.loaded[0].change_summary, None);
        let summary = report.loaded[1].change_summary.as_ref().expect("a summary");
        assert_eq!(
            summary["against"],
            json!({
                "dataset_id": report.loaded[0].dataset.id,
                "release": "17.1",
                "basis": "newest_loaded"
            })
        );
    }
}

#[tokio::test]
async fn revoking_a_revoked_token_says_already_revoked() {
    for db in databases().await {
        let app = app(&db).await;
        let root = Actor::operator("root");
        app.create_org(&root, "acme").await.unwrap();
        let token = app
            .create_token(&root, "acme", Role::Viewer, None)
            .await
            .unwrap();
        app.revoke_token(&root, &token.id).await.unwrap();
        let err = app.revoke_token(&root, &token.id).await.unwrap_err();
        assert_eq!(err.code(), "conflict", "{}", db.label());
        assert_eq!(
            err.to_string(),
            format!("token {} is already revoked", token.id)
        );
    }
}

#[tokio::test]
async fn audit_list_limit_0_is_invalid_input() {
    for db in databases().await {
        let app = app(&db).await;
        let root = Actor::operator("root");
        app.create_org(&root, "acme").await.unwrap();
        for limit in [0, 501] {
            let page = PageRequest {
                cursor: None,
                limit: Some(limit),
            };
            let err = app.audit_list(&root, &page).await.unwrap_err();
            assert_eq!(err.code(), "invalid_input", "{limit}");
        }
        let one = PageRequest {
            cursor: None,
            limit: Some(1),
        };
        assert_eq!(app.audit_list(&root, &one).await.unwrap().items.len(), 1);
    }
}

#[tokio::test]
async fn long_input_is_truncated_in_error_messages() {
    for db in databases().await {
        let app = app(&db).await;
        let long = "x".repeat(100_000);
        let err = app
            .dataset(&steward("alice"), &service::DatasetId(long.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
        assert_eq!(
            err.to_string(),
            format!("dataset `{}…` not found", "x".repeat(80))
        );
    }
}

#[tokio::test]
async fn diff_of_an_unknown_id_is_not_found_not_a_file_error() {
    for db in databases().await {
        let app = app(&db).await;
        let unknown = "00000000-0000-0000-0000-000000000000";
        let err = app
            .diff(&Actor::operator("root"), unknown, unknown)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found", "{}", db.label());
        assert!(
            err.to_string().starts_with(&format!(
                "`{unknown}` is neither a known dataset id nor a readable file or URL"
            )),
            "{err}"
        );
    }
}

#[tokio::test]
async fn unreachable_database_reports_the_drivers_cause_quickly() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let mut config = AppConfig::new("postgres://postgres@127.0.0.1:1/none");
    config.connect_timeout = std::time::Duration::from_secs(5);
    let started = std::time::Instant::now();
    let Err(err) = App::connect(config).await else {
        panic!("port 1 refused nothing");
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(err.code(), "database_unavailable");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("connection refused"),
        "{err}"
    );

    for (url, reason) in [
        ("mysql://x", "unknown scheme `mysql`"),
        ("sqlite:/x", "expected sqlite://PATH"),
        ("sqlite:///nonexistent-dir-4711/db.sqlite", "does not exist"),
    ] {
        let Err(err) = App::connect(AppConfig::new(url)).await else {
            panic!("{url} was accepted");
        };
        assert_eq!(err.code(), "invalid_config", "{url}");
        assert!(err.to_string().contains(reason), "{url}: {err}");
    }
}
