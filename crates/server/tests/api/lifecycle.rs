//! The dataset lifecycle over HTTP: upload, validate, four-eyes approval,
//! activation, diff, rollback, rejection; role denials and their audit.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use service::Role;

use crate::helpers::{TestApp, backends, bundle_bytes, error_of};
use crate::taxonomy::{check_enterprise_18, expected_tactic_order, expected_techniques};

/// Audit events the org of `token` can read, all pages.
async fn audit_events(app: &TestApp, token: &str) -> Vec<Value> {
    app.all_pages(token, "/api/v1/audit", 500).await
}

#[tokio::test]
async fn enterprise_18_goes_live_through_the_api() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let steward_a = app.token("platform", Role::Steward).await;
        let steward_b = app.token("platform", Role::Steward).await;
        let viewer = app.token("acme", Role::Viewer).await;
        let admin = app.token("acme", Role::Admin).await;
        let other_admin = app.token("globex", Role::Admin).await;

        // Not ready before a release is active.
        let ready = app
            .send(axum::http::Method::GET, "/readyz", None, None)
            .await;
        assert_eq!(ready.status, 503, "{backend}: {}", ready.text());
        let error = error_of(&ready);
        assert_eq!(error["code"], "not_ready");
        assert_eq!(
            error["details"]["missing_domains"],
            json!(["enterprise-attack"])
        );

        // Load: counts as the raw bundle gives them.
        let upload = app
            .send(
                axum::http::Method::POST,
                "/api/v1/datasets?file_name=enterprise-attack-18.1.json.gz",
                Some(&steward_a),
                Some((
                    "application/gzip",
                    bundle_bytes("enterprise-attack-18.1.json.gz"),
                )),
            )
            .await;
        assert_eq!(upload.status, 201, "{backend}: {}", upload.text());
        let dataset = upload.json()["data"].clone();
        let id = dataset["id"].as_str().expect("dataset id").to_string();
        assert_eq!(dataset["state"], "loaded");
        assert_eq!(dataset["release"], "18.1");
        assert_eq!(dataset["domain"], "enterprise-attack");
        assert_eq!(dataset["counts"]["tactics"], expected_tactic_order().len());
        assert_eq!(
            dataset["counts"]["techniques"],
            expected_techniques(None, None, false).len()
        );
        assert_eq!(
            dataset["counts"]["subtechniques"],
            expected_techniques(None, None, true).len()
                - expected_techniques(None, None, false).len()
        );
        assert_eq!(
            upload.headers["location"].to_str().ok(),
            Some(format!("/api/v1/datasets/{id}").as_str())
        );

        // Activating before validation is a lifecycle conflict.
        let early = app
            .post(&format!("/api/v1/datasets/{id}/activate"), &steward_b)
            .await;
        assert_eq!(early.status, 409, "{}", early.text());
        assert_eq!(error_of(&early)["code"], "invalid_transition");

        let validated = app
            .post(&format!("/api/v1/datasets/{id}/validate"), &steward_a)
            .await;
        assert_eq!(validated.status, 200, "{}", validated.text());
        assert_eq!(validated.json()["data"]["errors"], 0);
        let report = app
            .get(&format!("/api/v1/datasets/{id}/validation"), &viewer)
            .await;
        assert_eq!(report.status, 200);
        assert_eq!(report.json()["data"], validated.json()["data"]);

        // A viewer may not approve; the denial is audited in its org only.
        let denied = app
            .post(&format!("/api/v1/datasets/{id}/approve"), &viewer)
            .await;
        assert_eq!(denied.status, 403, "{}", denied.text());
        let error = error_of(&denied);
        assert_eq!(error["code"], "forbidden");
        assert_eq!(error["details"]["action"], "dataset_approve");
        let acme_events = audit_events(&app, &admin).await;
        assert!(
            acme_events.iter().any(|e| e["action"] == "dataset_approve"
                && e["outcome"] == "denied"
                && e["target_id"] == id.as_str()),
            "{backend}: denial audited: {acme_events:?}"
        );
        let acme_orgs: BTreeSet<String> = acme_events
            .iter()
            .filter_map(|e| e["org_id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(acme_orgs.len(), 1, "acme sees only acme's org events");
        let globex_events = audit_events(&app, &other_admin).await;
        assert!(
            globex_events
                .iter()
                .all(|e| e["org_id"].as_str().is_none_or(|o| !acme_orgs.contains(o))),
            "{backend}: another org's audit rows never leak"
        );

        // Four eyes: the loader cannot approve.
        let own = app
            .post(&format!("/api/v1/datasets/{id}/approve"), &steward_a)
            .await;
        assert_eq!(own.status, 403, "{}", own.text());
        assert_eq!(error_of(&own)["code"], "four_eyes");

        let approved = app
            .post(&format!("/api/v1/datasets/{id}/approve"), &steward_b)
            .await;
        assert_eq!(approved.status, 200, "{}", approved.text());
        assert_eq!(approved.json()["data"]["state"], "approved");
        let active = app
            .post(&format!("/api/v1/datasets/{id}/activate"), &steward_b)
            .await;
        assert_eq!(active.status, 200, "{}", active.text());
        assert_eq!(active.json()["data"]["dataset"]["state"], "active");

        let ready = app
            .send(axum::http::Method::GET, "/readyz", None, None)
            .await;
        assert_eq!(ready.status, 200, "{backend}: {}", ready.text());
        assert_eq!(ready.json()["data"]["ready"], true);

        check_enterprise_18(&app, &viewer).await;

        let list = app.get("/api/v1/datasets?state=active", &viewer).await;
        assert_eq!(list.status, 200);
        let body = list.json();
        let ids: Vec<&str> = body["data"]
            .as_array()
            .expect("datasets")
            .iter()
            .filter_map(|d| d["id"].as_str())
            .collect();
        assert_eq!(ids, vec![id.as_str()]);
    }
}

#[tokio::test]
async fn diff_rollback_and_rejection_on_small_releases() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let steward_a = app.token("platform", Role::Steward).await;
        let steward_b = app.token("platform", Role::Steward).await;
        let viewer = app.token("acme", Role::Viewer).await;

        let mut ids = Vec::new();
        for (release, revoke) in [("1.0", false), ("2.0", true)] {
            let id = app.upload_tiny(&steward_a, release, revoke).await;
            for (step, token) in [
                ("validate", &steward_a),
                ("approve", &steward_b),
                ("activate", &steward_b),
            ] {
                let answer = app
                    .post(&format!("/api/v1/datasets/{id}/{step}"), token)
                    .await;
                assert_eq!(
                    answer.status,
                    200,
                    "{backend} {release} {step}: {}",
                    answer.text()
                );
            }
            ids.push(id);
        }
        let (v1, v2) = (&ids[0], &ids[1]);

        // Diff: T9002 revoked by T9003, T9003 added.
        let diff = app
            .get(&format!("/api/v1/datasets/diff?from={v1}&to={v2}"), &viewer)
            .await;
        assert_eq!(diff.status, 200, "{}", diff.text());
        let techniques = diff.json()["data"]["diff"]["techniques"].clone();
        let revoked = techniques["revoked"].as_array().expect("revoked list");
        assert_eq!(revoked.len(), 1, "{techniques}");
        assert_eq!(revoked[0]["id"], "T9002");
        assert_eq!(revoked[0]["replaced_by"], "T9003");
        let added: Vec<&Value> = techniques["added"]
            .as_array()
            .expect("added")
            .iter()
            .collect();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0]["id"], "T9003");
        let markdown = app
            .get(
                &format!("/api/v1/datasets/diff?from={v1}&to={v2}&format=markdown"),
                &viewer,
            )
            .await;
        assert_eq!(markdown.status, 200);
        assert!(
            markdown.headers["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/markdown"))
        );
        assert!(markdown.text().contains("T9002") && markdown.text().contains("T9003"));

        // Over HTTP, a diff side must be a stored dataset, never a server
        // path or URL.
        for side in ["/etc/passwd", "http://127.0.0.1:9/x.json"] {
            let probe = app
                .get(
                    &format!(
                        "/api/v1/datasets/diff?from={}&to={v2}",
                        crate::helpers::encode_query(side)
                    ),
                    &viewer,
                )
                .await;
            assert_eq!(probe.status, 404, "{side}: {}", probe.text());
        }
        let missing = app
            .get(&format!("/api/v1/datasets/diff?to={v2}"), &viewer)
            .await;
        assert_eq!(missing.status, 400);
        assert_eq!(error_of(&missing)["details"]["field"], "from");

        // The list pages newest first with no duplicate.
        let first = app.get("/api/v1/datasets?limit=1", &viewer).await.json();
        assert_eq!(first["data"][0]["id"], v2.as_str());
        let cursor = first["meta"]["next_cursor"]
            .as_str()
            .expect("second page")
            .to_string();
        let second = app
            .get(
                &format!("/api/v1/datasets?limit=1&cursor={cursor}"),
                &viewer,
            )
            .await
            .json();
        assert_eq!(second["data"][0]["id"], v1.as_str());
        assert_eq!(second["meta"]["next_cursor"], Value::Null);
        let bad_cursor = app.get("/api/v1/datasets?cursor=%%%", &viewer).await;
        assert_eq!(bad_cursor.status, 400);

        // Rollback reactivates 1.0; reads follow.
        let rollback = app
            .post_json(
                "/api/v1/datasets/rollback",
                &steward_b,
                json!({ "domain": "enterprise-attack" }),
            )
            .await;
        assert_eq!(rollback.status, 200, "{}", rollback.text());
        let body = rollback.json();
        assert_eq!(body["data"]["reactivated"]["id"], v1.as_str());
        assert_eq!(body["data"]["rolled_back"]["id"], v2.as_str());
        let tactics = app
            .get("/api/v1/taxonomy/enterprise-attack/tactics", &viewer)
            .await;
        assert_eq!(tactics.json()["meta"]["dataset"]["id"], v1.as_str());
        let t9003 = app
            .get(
                "/api/v1/taxonomy/enterprise-attack/techniques/T9003",
                &viewer,
            )
            .await;
        assert_eq!(t9003.status, 404, "T9003 does not exist in 1.0");

        let no_domain = app
            .post_json("/api/v1/datasets/rollback", &steward_b, json!({}))
            .await;
        assert_eq!(no_domain.status, 400);
        assert_eq!(error_of(&no_domain)["code"], "invalid_input");

        // Rejection needs a reason.
        let v3 = app.upload_tiny(&steward_a, "3.0", false).await;
        let blank = app
            .post_json(
                &format!("/api/v1/datasets/{v3}/reject"),
                &steward_b,
                json!({ "reason": " " }),
            )
            .await;
        assert_eq!(blank.status, 400);
        assert_eq!(error_of(&blank)["details"]["field"], "reason");
        let rejected = app
            .post_json(
                &format!("/api/v1/datasets/{v3}/reject"),
                &steward_b,
                json!({ "reason": "test release" }),
            )
            .await;
        assert_eq!(rejected.status, 200, "{}", rejected.text());
        assert_eq!(rejected.json()["data"]["state"], "rejected");

        // A viewer cannot load.
        let upload = app
            .send(
                axum::http::Method::POST,
                "/api/v1/datasets?domain=enterprise-attack&release=9.0",
                Some(&viewer),
                Some((
                    "application/json",
                    crate::helpers::tiny_bundle("9.0", false),
                )),
            )
            .await;
        assert_eq!(upload.status, 403);
        assert_eq!(error_of(&upload)["code"], "forbidden");
    }
}

#[tokio::test]
async fn missing_and_unknown_datasets_answer_identical_bodies() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let steward = app.token("platform", Role::Steward).await;
        let viewer = app.token("acme", Role::Viewer).await;
        let other = app.token("globex", Role::Viewer).await;
        let real = app.upload_tiny(&steward, "1.0", false).await;

        let probes = [
            "0190f0a0-0000-7000-8000-000000000001",
            "0190f0a0-0000-7000-8000-000000000002",
        ];
        let mut bodies = BTreeSet::new();
        for probe in probes {
            for suffix in ["", "/validation"] {
                for token in [&viewer, &other] {
                    let answer = app
                        .get(&format!("/api/v1/datasets/{probe}{suffix}"), token)
                        .await;
                    assert_eq!(answer.status, 404, "{backend}: {}", answer.text());
                    assert_eq!(error_of(&answer)["code"], "not_found");
                    bodies.insert(answer.bytes);
                }
            }
        }
        assert_eq!(
            bodies.len(),
            1,
            "one body for every missing dataset: {bodies:?}"
        );

        // Datasets are shared reference data: every org reads the same one.
        let a = app.get(&format!("/api/v1/datasets/{real}"), &viewer).await;
        let b = app.get(&format!("/api/v1/datasets/{real}"), &other).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.bytes, b.bytes);
    }
}
