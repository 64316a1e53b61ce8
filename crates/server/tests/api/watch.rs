//! The watch (issue 7): periodic audit chain verification, misuse signals
//! and the notifications API. The job functions run here directly, as
//! `serve` runs them on its intervals; expected counts come from what each
//! test did, and tampering goes behind the triggers' back with plain SQL.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use service::{Actor, MisuseKind, OverrideInput, Role};
use sqlx::{AnyConnection, Connection as _, Executor as _, Row as _};

use crate::helpers::{Answer, TestApp, backends, error_of};

/// A steward's action on a dataset id that names nothing: refused to any
/// org role before the id is looked up.
const REFUSED: &str = "/api/v1/datasets/0190f0a0-0000-7000-8000-00000000abcd/validate";

/// The value of one unlabelled or labelled series in a `/metrics` text.
fn metric(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

async fn metrics_text(app: &TestApp) -> String {
    let answer = app
        .send(axum::http::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(answer.status, 200);
    answer.text()
}

fn items(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["data"].as_array().expect("a list").clone()
}

async fn connect(app: &TestApp) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(&app.database_url)
        .await
        .expect("open the test database")
}

async fn audit_rows(app: &TestApp) -> i64 {
    let mut conn = connect(app).await;
    let row = conn
        .fetch_one("SELECT COUNT(*) AS n FROM audit_log")
        .await
        .expect("count audit rows");
    let count: i64 = row.try_get("n").expect("a count");
    conn.close().await.expect("close");
    count
}

/// Edits audit event `seq` the way a tamperer would: the append-only
/// trigger refuses, so it is dropped first.
async fn tamper(app: &TestApp, seq: i64) {
    let mut conn = connect(app).await;
    let edit = format!("UPDATE audit_log SET actor = 'mallory' WHERE seq = {seq}");
    assert!(
        conn.execute(edit.as_str()).await.is_err(),
        "{}: the trigger refuses the edit",
        app.backend
    );
    let drop = match app.backend {
        "sqlite" => "DROP TRIGGER audit_log_no_update",
        _ => "DROP TRIGGER audit_log_no_update ON audit_log",
    };
    conn.execute(drop).await.expect("drop the trigger");
    conn.execute(edit.as_str()).await.expect("edit the row");
    conn.close().await.expect("close");
}

#[tokio::test]
async fn the_watch_verifies_the_audit_chain_and_tells_platform_admins_of_a_break() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let platform = app.token("platform", Role::PlatformAdmin).await;
        let acme = app.token("acme", Role::Admin).await;
        // One refusal, so the chain holds an org event as well.
        let denied = app.post(REFUSED, &acme).await;
        assert_eq!(denied.status, 403, "{backend}");

        // Before any run the gauge is absent rather than a reassuring 1.
        let text = metrics_text(&app).await;
        assert_eq!(
            metric(&text, "nexus_attack_audit_chain_ok"),
            None,
            "{backend}"
        );
        assert_eq!(
            metric(&text, "nexus_attack_audit_verifications_total").as_deref(),
            Some("0")
        );

        let intact = app
            .app
            .watch_audit_chain()
            .await
            .expect("verification runs");
        assert!(intact.ok, "{backend}: {intact:?}");
        assert_eq!(intact.events, audit_rows(&app).await, "{backend}");
        let text = metrics_text(&app).await;
        assert_eq!(
            metric(&text, "nexus_attack_audit_chain_ok").as_deref(),
            Some("1"),
            "{backend}"
        );
        assert_eq!(
            metric(&text, "nexus_attack_audit_verifications_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            metric(&text, "nexus_attack_audit_verification_failures_total").as_deref(),
            Some("0")
        );
        assert!(items(&app.get("/api/v1/notifications", &platform).await).is_empty());

        tamper(&app, 2).await;
        // Two runs over the same break: two failures counted, one notification.
        for _ in 0..2 {
            let broken = app
                .app
                .watch_audit_chain()
                .await
                .expect("verification runs");
            assert!(!broken.ok, "{backend}");
            assert_eq!(broken.first_bad_seq, Some(2), "{backend}");
        }
        let text = metrics_text(&app).await;
        assert_eq!(
            metric(&text, "nexus_attack_audit_chain_ok").as_deref(),
            Some("0"),
            "{backend}"
        );
        assert_eq!(
            metric(&text, "nexus_attack_audit_verifications_total").as_deref(),
            Some("3")
        );
        assert_eq!(
            metric(&text, "nexus_attack_audit_verification_failures_total").as_deref(),
            Some("2")
        );

        let notes = items(&app.get("/api/v1/notifications", &platform).await);
        assert_eq!(notes.len(), 1, "{backend}: {notes:?}");
        let note = &notes[0];
        assert_eq!(note["kind"], "audit_chain_broken");
        assert_eq!(note["subject"], "event 2");
        assert_eq!(note["recipient"], "platform-admin");
        assert_eq!(note["org_id"], Value::Null);
        assert_eq!(note["read_at"], Value::Null);
        assert!(
            note["message"]
                .as_str()
                .unwrap_or_default()
                .contains("event 2")
        );

        // An org admin never sees the platform's notifications.
        assert!(items(&app.get("/api/v1/notifications", &acme).await).is_empty());
        let id = note["id"].as_str().expect("id");
        let path = format!("/api/v1/notifications/{id}/ack");
        let foreign = app.post(&path, &acme).await;
        assert_eq!(foreign.status, 404, "{backend}: {}", foreign.text());

        // The platform admin acknowledges it once.
        let acked = app.post(&path, &platform).await;
        assert_eq!(acked.status, 200, "{backend}: {}", acked.text());
        let principal = app.app.authenticate(&platform).await.expect("token");
        assert_eq!(
            acked.json()["data"]["read_by"],
            json!(format!("token:{}", principal.token_id))
        );
        assert!(acked.json()["data"]["read_at"].is_string());
        let again = app.post(&path, &platform).await;
        assert_eq!(again.status, 409, "{backend}");
        assert_eq!(error_of(&again)["code"], "conflict");
    }
}

/// A native alert mapped to T9001 by its vendor.
fn alert(uid: &str) -> Value {
    json!({
        "schema": "nexus-attack.alert/1",
        "uid": uid,
        "time": "2026-01-02T03:04:05Z",
        "title": format!("watch test {uid}"),
        "severity": "high",
        "product": "ExampleEDR",
        "techniques": [{ "id": "T9001", "tactic": "execution" }],
    })
}

fn add_t9002() -> OverrideInput {
    OverrideInput {
        action: "add".into(),
        technique: "T9002".into(),
        reason: Some("missing_technique".into()),
        ..OverrideInput::default()
    }
}

/// The tiny release, active, and `count` alerts in `org`.
async fn org_with_alerts(app: &TestApp, org: &str, count: usize) {
    let operator = Actor::operator("test-operator");
    let ingested = app
        .app
        .ingest_alert_values(
            &operator,
            org,
            (0..count).map(|i| alert(&format!("{org}-{i}"))).collect(),
        )
        .await
        .expect("ingest");
    assert_eq!(ingested.ingested, count, "{}", app.backend);
}

async fn activate_tiny(app: &TestApp) {
    let loader = app.token("platform", Role::Steward).await;
    let approver = app.token("platform", Role::Steward).await;
    let dataset = app.upload_tiny(&loader, "1.0", false).await;
    for (step, token) in [
        ("validate", &loader),
        ("approve", &approver),
        ("activate", &approver),
    ] {
        let answer = app
            .post(&format!("/api/v1/datasets/{dataset}/{step}"), token)
            .await;
        assert_eq!(answer.status, 200, "{step}: {}", answer.text());
    }
}

fn signals_of(text: &str, kind: MisuseKind) -> Option<String> {
    metric(
        text,
        &format!(
            "nexus_attack_misuse_signals_total{{kind=\"{}\"}}",
            kind.as_str()
        ),
    )
}

#[tokio::test]
async fn one_signal_per_actor_and_window_at_the_threshold_and_none_below() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let watch = app.app.config().watch;
        let overrides = watch.overrides.threshold;
        let denials = watch.denials.threshold;
        assert!(
            overrides >= 2 && denials >= 2,
            "thresholds leave room for N-1"
        );

        activate_tiny(&app).await;
        let acme_admin = app.token("acme", Role::Admin).await;
        let acme_lead = app.token("acme", Role::Lead).await;
        let globex_admin = app.token("globex", Role::Admin).await;
        let noisy_viewer = app.token("acme", Role::Viewer).await;
        let quiet_viewer = app.token("acme", Role::Viewer).await;
        let acme = app.app.authenticate(&acme_admin).await.expect("token").org;
        // Every alert gets at most one override: no per-alert flip-flop.
        org_with_alerts(&app, "acme", 2 * overrides + 1).await;
        let lead = |name: &str| Actor {
            name: name.into(),
            org: Some(acme.clone()),
            role: Role::Lead,
        };

        // N overrides by one lead, N-1 by another, across distinct alerts.
        let mut next_alert = 0;
        for (who, count) in [("lee", overrides), ("kim", overrides - 1)] {
            for _ in 0..count {
                let uid = format!("acme-{next_alert}");
                next_alert += 1;
                let outcome = app
                    .app
                    .create_override(&lead(who), "acme", &uid, add_t9002())
                    .await
                    .unwrap_or_else(|e| panic!("{backend}: override on {uid}: {e}"));
                assert!(outcome.applied && !outcome.locked, "{backend}");
            }
        }
        // N refusals for one viewer token, N-1 for another.
        for (token, count) in [(&noisy_viewer, denials), (&quiet_viewer, denials - 1)] {
            for _ in 0..count {
                let answer = app.post(REFUSED, token).await;
                assert_eq!(answer.status, 403, "{backend}");
            }
        }
        let noisy = format!(
            "token:{}",
            app.app
                .authenticate(&noisy_viewer)
                .await
                .expect("token")
                .token_id
        );

        let raised = app.app.watch_misuse().await.expect("scan runs");
        let got: BTreeSet<(MisuseKind, String, i64)> = raised
            .iter()
            .map(|s| (s.kind, s.actor.clone(), s.count))
            .collect();
        let want = BTreeSet::from([
            (
                MisuseKind::OverrideBurst,
                "lee".to_string(),
                overrides as i64,
            ),
            (MisuseKind::RepeatedDenials, noisy.clone(), denials as i64),
        ]);
        assert_eq!(got, want, "{backend}");
        assert!(raised.iter().all(|s| s.org_id.as_ref() == Some(&acme)));

        // Within the window a continuing burst raises nothing new.
        app.app
            .create_override(
                &lead("lee"),
                "acme",
                &format!("acme-{next_alert}"),
                add_t9002(),
            )
            .await
            .expect("one more override");
        next_alert += 1;
        assert_eq!(app.post(REFUSED, &noisy_viewer).await.status, 403);
        assert!(
            app.app.watch_misuse().await.expect("scan").is_empty(),
            "{backend}"
        );

        // The N-th override of the second lead crosses the threshold.
        app.app
            .create_override(
                &lead("kim"),
                "acme",
                &format!("acme-{next_alert}"),
                add_t9002(),
            )
            .await
            .expect("the N-th override");
        let raised = app.app.watch_misuse().await.expect("scan");
        assert_eq!(raised.len(), 1, "{backend}: {raised:?}");
        assert_eq!(
            (raised[0].kind, raised[0].actor.as_str(), raised[0].count),
            (MisuseKind::OverrideBurst, "kim", overrides as i64)
        );

        let text = metrics_text(&app).await;
        assert_eq!(
            signals_of(&text, MisuseKind::OverrideBurst).as_deref(),
            Some("2")
        );
        assert_eq!(
            signals_of(&text, MisuseKind::RepeatedDenials).as_deref(),
            Some("1")
        );

        // The org admin reads the three signals, newest first.
        let notes = items(&app.get("/api/v1/notifications", &acme_admin).await);
        let seen: Vec<(String, String)> = notes
            .iter()
            .map(|n| {
                assert_eq!(n["recipient"], "admin");
                assert_eq!(n["org_id"], json!(acme.as_str()));
                (
                    n["kind"].as_str().unwrap_or_default().to_string(),
                    n["subject"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(seen.len(), 3, "{backend}: {notes:?}");
        assert_eq!(
            seen[0],
            ("misuse_override_burst".to_string(), "kim".to_string())
        );
        let rest: BTreeSet<(String, String)> = seen[1..].iter().cloned().collect();
        assert_eq!(
            rest,
            BTreeSet::from([
                ("misuse_override_burst".to_string(), "lee".to_string()),
                ("misuse_repeated_denials".to_string(), noisy.clone()),
            ])
        );
        // Pages of one follow the same order.
        let paged = app.all_pages(&acme_admin, "/api/v1/notifications", 1).await;
        assert_eq!(paged, notes, "{backend}");

        // Each signal is in the org's audit log, by the watch.
        let audit = items(&app.get("/api/v1/audit?limit=500", &acme_admin).await);
        let audited = audit
            .iter()
            .filter(|e| e["action"] == "misuse_signal" && e["actor"] == "system:watch")
            .count();
        assert_eq!(audited, 3, "{backend}");

        // Leads read only leads' notifications; viewers none at all; another
        // org's admin sees none of it and cannot acknowledge it.
        assert!(items(&app.get("/api/v1/notifications", &acme_lead).await).is_empty());
        let viewer = app.get("/api/v1/notifications", &noisy_viewer).await;
        assert_eq!(viewer.status, 403, "{backend}");
        assert!(items(&app.get("/api/v1/notifications", &globex_admin).await).is_empty());
        let id = notes[0]["id"].as_str().expect("id");
        let foreign = app
            .post(&format!("/api/v1/notifications/{id}/ack"), &globex_admin)
            .await;
        assert_eq!(foreign.status, 404, "{backend}: {}", foreign.text());
        assert_eq!(error_of(&foreign)["code"], "not_found");
    }
}
