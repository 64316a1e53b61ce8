//! AI-assisted suggestions on the active dataset of a real database
//! (SQLite always, PostgreSQL when `NEXUS_ATTACK_TEST_POSTGRES` is set):
//! role check, limits, `ai` mapping candidates, and the rebuild on
//! activation and rollback. Expected techniques come from the raw bundles
//! and from what the input plainly describes, not from the code under test.

use std::collections::BTreeSet;
use std::io::Read;

use mapping::{Source, Subject};
use serde_json::{Value, json};
use service::{Actor, App, AppConfig, LoadOptions, Outcome, Role, ServiceError};
use store::testing::databases;
use suggest::SuggestInput;
use taxonomy::Domain;

mod support;
use support::shared;

fn attack(name: &str) -> String {
    shared().join("attack").join(name).display().to_string()
}

/// ATT&CK IDs of the live attack-patterns of a raw bundle.
fn live_ids(name: &str) -> BTreeSet<String> {
    let bytes = std::fs::read(attack(name)).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "attack-pattern")
        .filter(|o| o["revoked"] != true && o["x_mitre_deprecated"] != true)
        .filter_map(|o| {
            o["external_references"]
                .as_array()?
                .iter()
                .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn actor(name: &str, role: Role) -> Actor {
    Actor {
        name: name.into(),
        org: None,
        role,
    }
}

async fn activate(app: &App, file: &str) {
    let loader = actor("alice", Role::Steward);
    let dataset = app
        .load_dataset(&loader, &attack(file), &LoadOptions::default())
        .await
        .unwrap();
    app.validate_dataset(&loader, &dataset.id).await.unwrap();
    let other = actor("bob", Role::Steward);
    app.approve_dataset(&other, &dataset.id).await.unwrap();
    app.activate_dataset(&other, &dataset.id).await.unwrap();
}

fn shadow_copy_input() -> SuggestInput {
    SuggestInput {
        title: Some("Volume shadow copies deleted".into()),
        command_line: Some("vssadmin.exe delete shadows /all /quiet".into()),
        process_name: Some("C:\\Windows\\System32\\vssadmin.exe".into()),
        ..SuggestInput::default()
    }
}

#[tokio::test]
async fn suggestions_follow_the_active_dataset_and_feed_the_mapping_engine() {
    let live_18 = live_ids("enterprise-attack-18.1.json.gz");
    for db in databases().await {
        let app = App::connect(AppConfig::new(db.url.clone())).await.unwrap();
        let analyst = actor("ann", Role::Analyst);

        // No active dataset yet: a clear not-found, not a crash.
        let none = app
            .suggest_text(&analyst, Domain::Enterprise, &shadow_copy_input(), None)
            .await
            .unwrap_err();
        assert_eq!(none.code(), "not_found", "{}", db.url);

        activate(&app, "enterprise-attack-18.1.json.gz").await;

        // Deleting shadow copies is Inhibit System Recovery.
        let list = app
            .suggest_text(&analyst, Domain::Enterprise, &shadow_copy_input(), Some(5))
            .await
            .unwrap();
        assert_eq!(list.dataset.release, "18.1");
        assert_eq!(
            list.suggestions[0].technique, "T1490",
            "{:?}",
            list.suggestions[0]
        );
        assert!(list.suggestions.len() <= 5);
        for s in &list.suggestions {
            assert!(
                live_18.contains(&s.technique),
                "{} is not live",
                s.technique
            );
            assert!(s.confidence <= s.raw_confidence + 1e-12);
        }
        let capped = list.suggestions.iter().filter(|s| s.capped).count();
        assert_eq!(list.cap_gap.capped, capped);
        assert_eq!(list.cap_gap.suggestions, list.suggestions.len());
        let first_version = list.model_version.clone();

        // Empty and garbage input: no suggestion.
        for text in ["", "   \n\t", "\u{0}\u{1}\u{fffd}\u{fffd}"] {
            let empty = app
                .suggest_text(
                    &analyst,
                    Domain::Enterprise,
                    &SuggestInput::text(text),
                    None,
                )
                .await
                .unwrap();
            assert!(empty.suggestions.is_empty(), "{text:?}");
            assert_eq!(empty.known_terms, 0);
        }

        // Limits outside 1..=10 are refused.
        for bad in [0, 11] {
            let error = app
                .suggest_text(
                    &analyst,
                    Domain::Enterprise,
                    &shadow_copy_input(),
                    Some(bad),
                )
                .await
                .unwrap_err();
            assert!(matches!(error, ServiceError::InvalidInput { .. }), "{bad}");
        }

        // A viewer may not ask, and the refusal is audited.
        let viewer = actor("vic", Role::Viewer);
        let denied = app
            .suggest_text(&viewer, Domain::Enterprise, &shadow_copy_input(), None)
            .await
            .unwrap_err();
        assert_eq!(denied.code(), "forbidden");
        let audit = app
            .audit_list(&actor("root", Role::PlatformAdmin), &Default::default())
            .await
            .unwrap();
        assert!(
            audit
                .items
                .iter()
                .any(|e| e.actor == "vic" && e.action == "suggest" && e.outcome == Outcome::Denied),
            "the denial is audited"
        );

        // An OCSF alert becomes `ai` candidates with the model version and
        // evidence pointing at the alert's fields.
        let alert = mapping::decode_alert(&json!({
            "class_uid": 2004,
            "time_dt": "2026-01-02T03:04:05Z",
            "severity_id": 4,
            "metadata": { "version": "1.3.0", "product": { "name": "EDR" } },
            "finding_info": { "uid": "f-1", "title": "Volume shadow copies deleted" },
            "process": {
                "cmd_line": "vssadmin.exe delete shadows /all /quiet",
                "file": { "path": "C:\\Windows\\System32\\vssadmin.exe" }
            }
        }))
        .unwrap();
        let subject = Subject::alert("a-1");
        let candidates = app
            .suggest_for_alert(&analyst, Domain::Enterprise, &subject, &alert)
            .await
            .unwrap();
        assert_eq!(candidates[0].technique.as_str(), "T1490");
        for c in &candidates {
            assert_eq!(c.source, Source::Ai);
            assert_eq!(c.subject, subject);
            assert_eq!(c.model_version.as_deref(), Some(first_version.as_str()));
            assert_eq!(c.release, "18.1");
            assert_eq!(
                c.dataset_id.as_deref(),
                Some(list.dataset.id.to_string().as_str())
            );
            assert!(live_18.contains(c.technique.as_str()));
            assert!(!c.explanation.is_empty());
        }
        let fields: BTreeSet<&str> = candidates[0]
            .evidence
            .iter()
            .map(|e| e.field.as_str())
            .collect();
        assert!(
            fields.contains("process.cmd_line") || fields.contains("alert.title"),
            "{fields:?}"
        );

        // A new active dataset gets its own suggester; a rollback returns to
        // the previous one.
        activate(&app, "enterprise-attack-17.1.json.gz").await;
        let newer = app
            .suggest_text(&analyst, Domain::Enterprise, &shadow_copy_input(), None)
            .await
            .unwrap();
        assert_eq!(newer.dataset.release, "17.1");
        assert_ne!(newer.model_version, first_version);
        app.rollback_domain(&actor("carol", Role::Steward), Domain::Enterprise)
            .await
            .unwrap();
        let back = app
            .suggest_text(&analyst, Domain::Enterprise, &shadow_copy_input(), Some(5))
            .await
            .unwrap();
        assert_eq!(back.dataset.release, "18.1");
        assert_eq!(back.model_version, first_version);
        assert_eq!(back.suggestions, list.suggestions);
    }
}

/// A native alert that no rule maps and that carries no ATT&CK context, but
/// whose command line plainly deletes shadow copies (Inhibit System
/// Recovery, T1490).
fn unruled_shadow_copy_alert(uid: &str) -> Value {
    json!({
        "uid": uid,
        "title": "Volume shadow copies deleted",
        "severity": "high",
        "product": "ExampleEDR",
        "host": "ws-07",
        "fields": {
            "process": {
                "cmd_line": "vssadmin.exe delete shadows /all /quiet",
                "name": "vssadmin.exe"
            }
        }
    })
}

#[tokio::test]
async fn ingestion_adds_ai_candidates_only_when_asked_and_only_live_techniques() {
    let live_18 = live_ids("enterprise-attack-18.1.json.gz");
    for db in databases().await {
        for ai_at_ingest in [false, true] {
            let mut config = AppConfig::new(db.url.clone());
            config.mapping.ai_at_ingest = ai_at_ingest;
            let app = App::connect(config).await.unwrap();
            // Same database both rounds: activate once.
            if !ai_at_ingest {
                activate(&app, "enterprise-attack-18.1.json.gz").await;
            }
            let org_name = format!("ai-{ai_at_ingest}");
            let org = app
                .create_org(&Actor::operator("ops"), &org_name)
                .await
                .unwrap();
            // Integrations ingest with an engineer token.
            let analyst = Actor {
                name: "ingest-bot".into(),
                org: Some(org.id.clone()),
                role: Role::Engineer,
            };

            let report = app
                .ingest_alert_values(
                    &analyst,
                    &org_name,
                    vec![unruled_shadow_copy_alert("vss-1")],
                )
                .await
                .unwrap();
            assert_eq!(report.ingested, 1, "{}", db.url);

            let view = app
                .alert_mapping(&analyst, &org_name, "vss-1")
                .await
                .unwrap();
            let ai: Vec<_> = view
                .candidates
                .iter()
                .filter(|c| c.source == "ai")
                .collect();
            if !ai_at_ingest {
                assert!(ai.is_empty(), "AI is opt-in: {:?}", view.candidates);
                assert!(view.canonical.entries.is_empty());
                continue;
            }
            // The suggester's best guess is the technique the command line
            // describes; every candidate is a live 18.1 technique with the
            // model version and evidence a reviewer can check.
            let best = ai
                .iter()
                .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
                .expect("at least one ai candidate");
            assert_eq!(best.technique, "T1490", "{ai:?}");
            for c in &ai {
                assert!(live_18.contains(&c.technique), "{}", c.technique);
                assert!(
                    c.model_version
                        .as_deref()
                        .is_some_and(|v| v.starts_with("suggest-"))
                );
                assert!(!c.evidence.is_empty(), "{c:?}");
                assert!((0.0..=1.0).contains(&c.confidence));
            }
            // Canonical entries from AI alone are always flagged for review,
            // and only candidates at or above the AI bar (0.70) get there.
            for entry in &view.canonical.entries {
                assert_eq!(entry.source, "ai");
                assert!(entry.confidence >= 0.70, "{entry:?}");
                assert!(entry.needs_review, "{entry:?}");
            }
        }
    }
}
