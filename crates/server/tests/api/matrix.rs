//! The matrix API (issue 6) over real data: Enterprise 18.1, the
//! 2026-01-01 Sigma pack and the shared alerts in one org. The heatmap,
//! read from rollups, must agree with the drilldown, read from raw
//! mappings, alert for alert; the other org sees nothing of it; exports
//! are refused to viewers and come as files to analysts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;

use axum::http::Method;
use serde_json::{Value, json};
use service::{Actor, LoadOptions, Role};

use crate::helpers::{TestApp, backends, encode_query, shared_dir};

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

        // What the web UI sends: the domain and its whole filter form, empty
        // fields included (the heatmap mode radios sit outside the form and
        // never reach the API).
        let query =
            "domain=enterprise-attack&from=&to=&source=&severity=&connector=&platform=&band=";
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

/// Every alert of a cell's drilldown under `query` (extra filters, may be
/// empty), `limit` a page, and the incidents each page named.
async fn drilldown_pages(
    app: &TestApp,
    token: &str,
    cell: (&str, &str),
    query: &str,
    limit: usize,
) -> (Vec<Value>, Vec<Value>) {
    let (tactic, technique) = cell;
    let (mut alerts, mut incidents) = (Vec::new(), Vec::new());
    let mut cursor = String::new();
    for _ in 0..1000 {
        let url = format!(
            "/api/v1/matrix/drilldown?tactic={tactic}&technique={technique}&limit={limit}\
             &cursor={}{query}",
            encode_query(&cursor)
        );
        let answer = app.get(&url, token).await;
        assert_eq!(answer.status, 200, "{url}: {}", answer.text());
        let body = answer.json();
        alerts.extend(body["data"]["alerts"].as_array().unwrap().iter().cloned());
        incidents.extend(
            body["data"]["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        match body["meta"]["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return (alerts, incidents),
        }
    }
    panic!("{tactic}/{technique}: the drilldown does not end");
}

/// Copies of the first shared alerts under new uids, each naming the OS it
/// ran on; answers the uid and ATT&CK platform of each copy.
fn alerts_with_platforms() -> (String, BTreeMap<String, &'static str>) {
    let feed = std::fs::read_to_string(shared_dir().join("alerts/sigma-regression-alerts.ndjson"))
        .unwrap();
    let mut body = String::new();
    let mut platforms = BTreeMap::new();
    for (i, line) in feed.lines().take(24).enumerate() {
        let mut alert: Value = serde_json::from_str(line).unwrap();
        let uid = format!("{}-os{i}", alert["finding_info"]["uid"].as_str().unwrap());
        // Every third one on Linux, the others on Windows, in the OS words
        // OCSF producers write rather than ATT&CK's spelling.
        let (os, platform) = if i % 3 == 0 {
            ("Ubuntu Linux 22.04", "Linux")
        } else {
            ("Windows 11 Enterprise", "Windows")
        };
        alert["finding_info"]["uid"] = json!(uid);
        alert["metadata"]["uid"] = json!(uid);
        alert["device"]["os"] = json!({ "name": os });
        platforms.insert(uid, platform);
        body.push_str(&alert.to_string());
        body.push('\n');
    }
    (body, platforms)
}

#[tokio::test]
async fn drilldown_names_incidents_reviews_and_follows_the_platform_filter() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_activity(&app).await;
        let engineer = app.token("acme", Role::Engineer).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let (feed, platform_of) = alerts_with_platforms();
        let bulk = app
            .send(
                Method::POST,
                "/api/v1/alerts/bulk",
                Some(&engineer),
                Some(("application/x-ndjson", feed.into_bytes())),
            )
            .await;
        assert_eq!(bulk.status, 200, "{backend}: {}", bulk.text());
        assert_eq!(bulk.json()["data"]["accepted"], 24, "{backend}");

        // Platform: every Windows cell's drilldown lists exactly the
        // Windows copies behind the cell, as many as the cell counts.
        let windows = app
            .get("/api/v1/matrix?platform=Windows", &analyst)
            .await
            .json();
        let cells = windows["data"]["cells"].as_array().unwrap().clone();
        assert!(!cells.is_empty(), "{backend}: the copies map");
        for cell in &cells {
            let key = (
                cell["tactic"].as_str().unwrap(),
                cell["technique"].as_str().unwrap(),
            );
            let (filtered, _) = drilldown_pages(&app, &analyst, key, "&platform=Windows", 2).await;
            let shown: BTreeSet<&str> = filtered
                .iter()
                .map(|a| a["source_uid"].as_str().unwrap())
                .collect();
            let (all, _) = drilldown_pages(&app, &analyst, key, "", 500).await;
            let expected: BTreeSet<&str> = all
                .iter()
                .map(|a| a["source_uid"].as_str().unwrap())
                .filter(|uid| platform_of.get(*uid) == Some(&"Windows"))
                .collect();
            assert_eq!(shown, expected, "{backend}: {key:?}");
            assert_eq!(
                shown.len() as u64,
                cell["count"].as_u64().unwrap(),
                "{backend}: {key:?}"
            );
        }

        // The busiest cell: two of its alerts and one from elsewhere go
        // into an incident.
        let matrix = app.get("/api/v1/matrix", &analyst).await.json();
        let busiest = matrix["data"]["cells"]
            .as_array()
            .unwrap()
            .iter()
            .max_by_key(|c| c["count"].as_u64().unwrap())
            .unwrap()
            .clone();
        let key = (
            busiest["tactic"].as_str().unwrap(),
            busiest["technique"].as_str().unwrap(),
        );
        let (whole, _) = drilldown_pages(&app, &analyst, key, "", 500).await;
        assert!(whole.len() >= 3, "{backend}: {key:?} has {}", whole.len());
        let in_cell: BTreeSet<String> = whole
            .iter()
            .map(|a| a["alert_id"].as_str().unwrap().to_string())
            .collect();
        let listed = app.all_pages(&analyst, "/api/v1/alerts", 200).await;
        let elsewhere = listed
            .iter()
            .map(|a| a["alert"]["id"].as_str().unwrap().to_string())
            .find(|id| !in_cell.contains(id))
            .expect("an alert outside the busiest cell");
        let held = [
            whole[0]["alert_id"].as_str().unwrap().to_string(),
            whole[2]["alert_id"].as_str().unwrap().to_string(),
        ];
        let created = app
            .post_json(
                "/api/v1/incidents",
                &analyst,
                json!({"title": "host-01 activity", "severity": "high",
                       "alerts": [held[0], held[1], elsewhere]}),
            )
            .await;
        assert_eq!(created.status, 201, "{backend}: {}", created.text());
        let incident = created.json()["data"]["id"].as_str().unwrap().to_string();

        // One alert a page: the incident shows on the pages of its alerts
        // only, and its counts add up to the two it holds in the cell.
        let (paged, incidents) = drilldown_pages(&app, &analyst, key, "", 1).await;
        assert_eq!(paged.len(), whole.len(), "{backend}");
        let mut held_per_incident: BTreeMap<String, u64> = BTreeMap::new();
        for i in &incidents {
            *held_per_incident
                .entry(i["id"].as_str().unwrap().to_string())
                .or_default() += i["alerts_held"].as_u64().unwrap();
            assert_eq!(i["title"], "host-01 activity", "{backend}");
            assert_eq!(i["status"], "open", "{backend}");
            assert_eq!(i["severity"], "high", "{backend}");
        }
        assert_eq!(
            held_per_incident,
            BTreeMap::from([(incident.clone(), 2)]),
            "{backend}"
        );
        for (one, alert) in paged.iter().zip(&whole) {
            // A page never cuts an alert's mappings short.
            assert_eq!(one["alert_id"], alert["alert_id"], "{backend}");
            assert_eq!(one["mappings"], alert["mappings"], "{backend}");
            let id = one["alert_id"].as_str().unwrap();
            let expected: Vec<&str> = if held.iter().any(|h| h == id) {
                vec![incident.as_str()]
            } else {
                vec![]
            };
            assert_eq!(one["incidents"], json!(expected), "{backend}: {id}");
        }

        // Open review items: the queue's, alert for alert.
        let queue = app
            .all_pages(&analyst, "/api/v1/review?state=open", 200)
            .await;
        let expected: BTreeSet<(String, String)> = queue
            .iter()
            .filter(|r| in_cell.contains(r["alert_id"].as_str().unwrap()))
            .map(|r| {
                (
                    r["alert_id"].as_str().unwrap().to_string(),
                    r["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let shown: BTreeSet<(String, String)> = whole
            .iter()
            .flat_map(|a| {
                a["open_reviews"].as_array().unwrap().iter().map(|r| {
                    (
                        a["alert_id"].as_str().unwrap().to_string(),
                        r["id"].as_str().unwrap().to_string(),
                    )
                })
            })
            .collect();
        assert_eq!(shown, expected, "{backend}");
    }
}
