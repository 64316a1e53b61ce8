//! The matrix API (issue 6) over real data: Enterprise 18.1, the
//! 2026-01-01 Sigma pack and the shared alerts in one org. The heatmap,
//! read from rollups, must agree with the drilldown, read from raw
//! mappings, alert for alert; the other org sees nothing of it; exports
//! are refused to viewers and come as files to analysts.

use std::collections::BTreeSet;
use std::io::BufReader;

use service::{Actor, LoadOptions, Role};

use crate::helpers::{TestApp, backends, shared_dir};

fn steward(name: &str) -> Actor {
    Actor {
        name: name.into(),
        org: None,
        role: Role::Steward,
    }
}

async fn with_activity(app: &TestApp) {
    let file = shared_dir().join("attack/enterprise-attack-18.1.json.gz");
    let service = &app.app;
    let dataset = service
        .load_dataset(
            &steward("alice"),
            &file.display().to_string(),
            &LoadOptions::default(),
        )
        .await
        .unwrap();
    service
        .validate_dataset(&steward("alice"), &dataset.id)
        .await
        .unwrap();
    service
        .approve_dataset(&steward("bob"), &dataset.id)
        .await
        .unwrap();
    service
        .activate_dataset(&steward("bob"), &dataset.id)
        .await
        .unwrap();
    let operator = Actor::operator("op");
    let org = service.create_org(&operator, "acme").await.unwrap();
    let engineer = Actor {
        name: "eve".into(),
        org: Some(org.id.clone()),
        role: Role::Engineer,
    };
    service
        .import_sigma(
            &engineer,
            "acme",
            &shared_dir().join("sigma/sigma-rules-c5e6d0ecd.tar.gz"),
        )
        .await
        .unwrap();
    let feed = std::fs::read(shared_dir().join("alerts/sigma-regression-alerts.ndjson")).unwrap();
    let report = service
        .ingest_alerts(
            &engineer,
            "acme",
            Box::new(BufReader::new(std::io::Cursor::new(feed))),
        )
        .await
        .unwrap();
    assert_eq!(report.ingested, 111);
}

#[tokio::test]
async fn heatmap_drilldown_and_exports_agree_and_stay_in_their_org() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_activity(&app).await;
        let viewer = app.token("acme", Role::Viewer).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let other = app.token("globex", Role::Admin).await;

        // What the web UI sends: the whole filter form, empty fields included.
        let query = "domain=enterprise-attack&from=&to=&source=&severity=&connector=&platform=&band=&mode=count";
        let answer = app.get(&format!("/api/v1/matrix?{query}"), &viewer).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let data = answer.json()["data"].clone();
        assert!(
            data["formula"]
                .as_str()
                .is_some_and(|f| f.contains("severity weight"))
        );
        let cells = data["cells"].as_array().unwrap().clone();
        assert!(!cells.is_empty(), "{backend}");
        for key in [
            "tactic",
            "technique",
            "count",
            "intensity",
            "low_confidence",
            "low_confidence_share",
            "anomaly",
        ] {
            assert!(cells[0].get(key).is_some(), "{backend}: `{key}`");
        }

        // Three cells: paging through each drilldown, three alerts a page,
        // lists exactly as many distinct alerts as the cell counts.
        for cell in cells.iter().take(3) {
            let (tactic, technique) = (
                cell["tactic"].as_str().unwrap(),
                cell["technique"].as_str().unwrap(),
            );
            let mut seen = BTreeSet::new();
            let mut cursor = String::new();
            loop {
                let answer = app
                    .get(
                        &format!(
                            "/api/v1/matrix/drilldown?tactic={tactic}&technique={technique}&limit=3&cursor={cursor}"
                        ),
                        &viewer,
                    )
                    .await;
                assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
                let body = answer.json();
                for alert in body["data"]["alerts"].as_array().unwrap() {
                    assert!(seen.insert(alert["alert_id"].as_str().unwrap().to_string()));
                    assert!(alert["mappings"][0]["override_history"].is_array());
                }
                match body["meta"]["next_cursor"].as_str() {
                    Some(next) => cursor = next.to_string(),
                    None => break,
                }
            }
            assert_eq!(
                seen.len() as u64,
                cell["count"].as_u64().unwrap(),
                "{backend}: {tactic}/{technique}"
            );
        }

        // Another org sees an empty matrix and an empty cell.
        let theirs = app.get("/api/v1/matrix", &other).await.json();
        assert_eq!(theirs["data"]["cells"], serde_json::json!([]), "{backend}");
        let (tactic, technique) = (
            cells[0]["tactic"].as_str().unwrap(),
            cells[0]["technique"].as_str().unwrap(),
        );
        let theirs = app
            .get(
                &format!("/api/v1/matrix/drilldown?tactic={tactic}&technique={technique}"),
                &other,
            )
            .await
            .json();
        assert_eq!(theirs["data"]["alerts"], serde_json::json!([]), "{backend}");

        // Exports: refused to a viewer, a named file for an analyst.
        let refused = app
            .get("/api/v1/matrix/export?format=navigator", &viewer)
            .await;
        assert_eq!(refused.status, 403, "{backend}");
        let layer = app
            .get("/api/v1/matrix/export?format=navigator", &analyst)
            .await;
        assert_eq!(layer.status, 200, "{backend}: {}", layer.text());
        assert!(
            layer.headers["content-disposition"]
                .to_str()
                .unwrap()
                .contains(".json")
        );
        assert_eq!(layer.json()["versions"]["layer"], "4.5", "{backend}");
        let csv = app.get("/api/v1/matrix/export?format=csv", &analyst).await;
        assert_eq!(csv.status, 200, "{backend}");
        assert_eq!(csv.text().lines().count(), cells.len() + 1, "{backend}");
        let bad = app.get("/api/v1/matrix/export?format=pdf", &analyst).await;
        assert_eq!(bad.status, 400, "{backend}");
    }
}
