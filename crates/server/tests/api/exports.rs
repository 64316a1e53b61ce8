//! Signed export URLs (issue 7) over real data: Enterprise 18.1, the
//! 2026-01-01 Sigma pack and the shared alerts. A signed URL downloads,
//! without a token, exactly what the direct export gives; any change to it
//! is refused; redaction removes real hosts, users and alert ids; signing
//! and downloading are both audited.

use std::io::BufReader;

use serde_json::{Value, json};
use service::{Actor, LoadOptions, Role};

use crate::helpers::{Answer, TestApp, backends, error_of, shared_dir};

fn steward(name: &str) -> Actor {
    Actor {
        name: name.into(),
        org: None,
        role: Role::Steward,
    }
}

/// The shared alerts, one JSON document per line.
pub fn shared_alerts() -> Vec<Value> {
    let text = std::fs::read_to_string(shared_dir().join("alerts/sigma-regression-alerts.ndjson"))
        .expect("read shared alerts");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect()
}

/// Activates Enterprise 18.1 (loaded by alice, approved by bob) and
/// answers its dataset id.
pub async fn activate_enterprise(app: &TestApp) -> String {
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
    dataset.id.to_string()
}

/// Creates `org` with the 2026-01-01 Sigma pack and ingests `alerts` into
/// it; answers how many were ingested.
pub async fn with_alerts(app: &TestApp, org: &str, alerts: &[Value]) -> usize {
    let service = &app.app;
    let created = service
        .create_org(&Actor::operator("op"), org)
        .await
        .unwrap();
    let engineer = Actor {
        name: "eve".into(),
        org: Some(created.id.clone()),
        role: Role::Engineer,
    };
    service
        .import_sigma(
            &engineer,
            org,
            &shared_dir().join("sigma/sigma-rules-c5e6d0ecd.tar.gz"),
        )
        .await
        .unwrap();
    let feed: String = alerts.iter().map(|a| format!("{a}\n")).collect();
    let report = service
        .ingest_alerts(
            &engineer,
            org,
            Box::new(BufReader::new(std::io::Cursor::new(feed.into_bytes()))),
        )
        .await
        .unwrap();
    report.ingested
}

/// The query pairs of a URL, percent-decoded.
fn pairs(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let mut bytes = Vec::new();
            let mut rest = v.as_bytes();
            while let Some((&b, tail)) = rest.split_first() {
                if b == b'%' && tail.len() >= 2 {
                    let hex = std::str::from_utf8(&tail[..2]).expect("hex");
                    bytes.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                    rest = &tail[2..];
                } else {
                    bytes.push(b);
                    rest = tail;
                }
            }
            (k.to_string(), String::from_utf8(bytes).expect("UTF-8"))
        })
        .collect()
}

fn url_of(pairs: &[(String, String)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::helpers::encode_query(v)))
        .collect();
    format!("/api/v1/exports/download?{}", query.join("&"))
}

fn with(pairs: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

async fn sign(app: &TestApp, token: &str, body: Value) -> String {
    let answer = app.post_json("/api/v1/exports", token, body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let data = answer.json()["data"].clone();
    let url = data["url"].as_str().expect("url").to_string();
    assert!(url.starts_with("/api/v1/exports/download?"), "{url}");
    // Valid for the default 15 minutes (give or take the test's own time).
    let expires: i64 = pairs(&url)
        .iter()
        .find(|(k, _)| k == "expires")
        .and_then(|(_, v)| v.parse().ok())
        .expect("expires");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((895..=901).contains(&(expires - now)), "{}", expires - now);
    url
}

async fn download(app: &TestApp, url: &str) -> Answer {
    app.send(axum::http::Method::GET, url, None, None).await
}

/// A Navigator layer without the time it was generated.
fn timeless(layer: &[u8]) -> Value {
    let mut layer: Value = serde_json::from_slice(layer).expect("layer JSON");
    if let Some(items) = layer["metadata"].as_array_mut() {
        items.retain(|m| m["name"] != "generated_at");
    }
    layer
}

#[tokio::test]
async fn signed_urls_give_the_direct_export_and_refuse_any_change() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        activate_enterprise(&app).await;
        // The shared feed names hosts but no user: one copy of a real
        // alert gains a user, so that user redaction has something to hide.
        let mut alerts = shared_alerts();
        let mut with_user = alerts[0].clone();
        let copy_uid = "kpi-export-copy-0001";
        with_user["metadata"]["uid"] = json!(copy_uid);
        with_user["finding_info"]["uid"] = json!(copy_uid);
        with_user["actor"] = json!({"user": {"name": "svc-backup-7"}});
        alerts.push(with_user);
        assert_eq!(with_alerts(&app, "acme", &alerts).await, 112);
        let analyst = app.token("acme", Role::Analyst).await;
        let viewer = app.token("acme", Role::Viewer).await;
        let admin = app.token("acme", Role::Admin).await;
        let globex = app.token("globex", Role::Admin).await;

        // A cell of the matrix with the copied alert behind it, and the
        // real alerts beside it.
        let matrix = app.get("/api/v1/matrix", &analyst).await.json();
        let mut found = None;
        for cell in matrix["data"]["cells"].as_array().expect("cells") {
            let (tactic, technique) = (
                cell["tactic"].as_str().unwrap().to_string(),
                cell["technique"].as_str().unwrap().to_string(),
            );
            let drill = app
                .get(
                    &format!(
                        "/api/v1/matrix/drilldown?tactic={tactic}&technique={technique}&limit=500"
                    ),
                    &analyst,
                )
                .await
                .json();
            let behind = drill["data"]["alerts"].as_array().expect("alerts").clone();
            if behind.iter().any(|a| a["source_uid"] == copy_uid) {
                found = Some((tactic, technique, behind));
                break;
            }
        }
        let (tactic, technique, behind) = found.expect("a cell behind the copied alert");
        let host = behind
            .iter()
            .find_map(|a| a["host"].as_str())
            .expect("an alert with a host")
            .to_string();
        let user = behind
            .iter()
            .find_map(|a| a["user"].as_str())
            .expect("an alert with a user")
            .to_string();
        let uid = behind
            .iter()
            .filter_map(|a| a["source_uid"].as_str())
            .find(|u| *u != copy_uid)
            .expect("a real alert in the cell")
            .to_string();
        // Real values of the shared feed, read independently.
        let raw =
            std::fs::read_to_string(shared_dir().join("alerts/sigma-regression-alerts.ndjson"))
                .unwrap();
        for value in [&host, &uid] {
            assert!(
                raw.contains(value.as_str()),
                "{value} is in the shared feed"
            );
        }

        // Each kind: the signed download is the direct export.
        let cases = [
            (
                "navigator",
                "navigator",
                json!({"kind": "navigator", "filters": {"source": "rule"}}),
            ),
            (
                "csv",
                "matrix_csv",
                json!({"kind": "matrix_csv", "filters": {"severity": "high,critical"}}),
            ),
            (
                "drilldown",
                "drilldown_csv",
                json!({"kind": "drilldown_csv", "tactic": tactic, "technique": technique}),
            ),
        ];
        for (format, kind, body) in cases {
            let url = sign(&app, &analyst, body.clone()).await;
            let got = download(&app, &url).await;
            assert_eq!(got.status, 200, "{backend} {kind}: {}", got.text());
            assert_eq!(got.headers["cache-control"], "no-store");
            let mut direct = format!("/api/v1/matrix/export?format={format}");
            if let Some(source) = body["filters"]["source"].as_str() {
                direct.push_str(&format!("&source={source}"));
            }
            if let Some(severity) = body["filters"]["severity"].as_str() {
                direct.push_str(&format!(
                    "&severity={}",
                    crate::helpers::encode_query(severity)
                ));
            }
            if kind == "drilldown_csv" {
                direct.push_str(&format!("&tactic={tactic}&technique={technique}"));
            }
            let expected = app.get(&direct, &analyst).await;
            assert_eq!(expected.status, 200, "{}", expected.text());
            assert_eq!(
                got.headers["content-type"],
                expected.headers["content-type"]
            );
            if kind == "navigator" {
                assert_eq!(timeless(&got.bytes), timeless(&expected.bytes), "{backend}");
            } else {
                assert_eq!(got.text(), expected.text(), "{backend} {kind}");
            }
            if kind == "drilldown_csv" {
                let text = got.text();
                for value in [&host, &user, &uid] {
                    assert!(text.contains(value.as_str()), "{value} unredacted");
                }
            }
        }

        // Redaction removes the real host, user and alert id everywhere.
        let url = sign(
            &app,
            &analyst,
            json!({"kind": "drilldown_csv", "tactic": tactic, "technique": technique,
                   "redaction": {"host": true, "user": true, "alert_id": true}}),
        )
        .await;
        let redacted = download(&app, &url).await;
        assert_eq!(redacted.status, 200, "{}", redacted.text());
        let text = redacted.text();
        for value in [&host, &user, &uid, &copy_uid.to_string()] {
            assert!(!text.contains(value.as_str()), "{backend}: {value} leaked");
        }
        assert!(
            text.lines().nth(1).unwrap().starts_with("redacted,"),
            "{text}"
        );

        // Tampering with any parameter is refused with a structured 403.
        let genuine = pairs(&url);
        let globex_org = app
            .app
            .org_by_name(&Actor::operator("op"), "globex")
            .await
            .unwrap()
            .id
            .to_string();
        let sig = genuine.iter().find(|(k, _)| k == "sig").unwrap().1.clone();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { "1" } else { "0" },
            &sig[1..]
        );
        let expires: i64 = genuine
            .iter()
            .find(|(k, _)| k == "expires")
            .unwrap()
            .1
            .parse()
            .unwrap();
        let tampered = [
            with(&genuine, "org", &globex_org),
            with(&genuine, "technique", "T1003"),
            with(&genuine, "expires", &(expires + 3600).to_string()),
            with(&genuine, "sig", &flipped),
            with(&genuine, "role", "admin"),
            genuine
                .iter()
                .filter(|(k, _)| k != "redact_host")
                .cloned()
                .collect(),
            genuine
                .iter()
                .cloned()
                .chain([("source".to_string(), "ai".to_string())])
                .collect(),
        ];
        for pairs in &tampered {
            let answer = download(&app, &url_of(pairs)).await;
            assert_eq!(answer.status, 403, "{backend}: {}", answer.text());
            let error = error_of(&answer);
            assert_eq!(error["code"], "export_url_invalid", "{error}");
            assert!(
                !answer.text().contains(&sig),
                "the signature is never echoed"
            );
        }

        // Signing is the export permission: a viewer is refused and audited.
        let refused = app
            .post_json("/api/v1/exports", &viewer, json!({"kind": "navigator"}))
            .await;
        assert_eq!(refused.status, 403);
        assert_eq!(error_of(&refused)["details"]["action"], "matrix_export");
        let bad = app
            .post_json(
                "/api/v1/exports",
                &analyst,
                json!({"kind": "drilldown_csv"}),
            )
            .await;
        assert_eq!(bad.status, 400, "{}", bad.text());
        assert_eq!(error_of(&bad)["details"]["field"], "tactic");
        // A cell that does not exist is refused when signing, not at download.
        let unknown = app
            .post_json(
                "/api/v1/exports",
                &analyst,
                json!({"kind": "drilldown_csv", "tactic": "TA9999", "technique": "T1059"}),
            )
            .await;
        assert_eq!(unknown.status, 400, "{}", unknown.text());
        assert_eq!(error_of(&unknown)["details"]["field"], "tactic");

        // Both signing and downloads are audited with the signer, org,
        // scope and redaction, and never the signature.
        let audit = app.get("/api/v1/audit?limit=500", &admin).await;
        assert_eq!(audit.status, 200);
        assert!(
            !audit.text().contains(&sig),
            "no signature in the audit log"
        );
        let events = audit.json()["data"].as_array().unwrap().clone();
        let signed: Vec<&Value> = events
            .iter()
            .filter(|e| e["action"] == "export_sign")
            .collect();
        let downloaded: Vec<&Value> = events
            .iter()
            .filter(|e| e["action"] == "export_download")
            .collect();
        assert_eq!(signed.len(), 4, "{backend}");
        assert_eq!(
            downloaded.len(),
            4,
            "{backend}: tampered URLs download nothing"
        );
        let last = downloaded
            .iter()
            .find(|e| e["details"]["redaction"]["user"] == true)
            .expect("the redacted download");
        assert!(last["actor"].as_str().unwrap().starts_with("token:"));
        assert_eq!(last["details"]["signed_by"], last["actor"]);
        assert_eq!(last["details"]["scope"]["technique"], technique.as_str());
        assert_eq!(
            last["details"]["redaction"],
            json!({"host": true, "user": true, "alert_id": true})
        );

        // A URL stops working when the token that signed it is revoked,
        // before its expiry.
        let operator = Actor::operator("op");
        let leaving = app
            .app
            .create_token(&operator, "acme", Role::Analyst, Some("leaving"))
            .await
            .unwrap();
        let url = sign(&app, leaving.secret.expose(), json!({"kind": "matrix_csv"})).await;
        assert_eq!(download(&app, &url).await.status, 200, "{backend}");
        app.app.revoke_token(&operator, &leaving.id).await.unwrap();
        let after = download(&app, &url).await;
        assert_eq!(after.status, 403, "{backend}: {}", after.text());
        assert_eq!(error_of(&after)["code"], "export_url_invalid");

        // The other org's admin cannot read this org's export audit.
        let theirs = app.get("/api/v1/audit?limit=500", &globex).await;
        assert!(!theirs.text().contains("export_sign"), "{backend}");
    }
}

#[tokio::test]
async fn a_short_lived_url_expires() {
    let config = server::ServerConfig {
        export_url_ttl: std::time::Duration::from_secs(0),
        ..server::ServerConfig::default()
    };
    for backend in backends() {
        let app = TestApp::with_config(backend, config.clone()).await;
        let analyst = app.token("acme", Role::Analyst).await;
        // Signing needs no data; a zero lifetime expires at once.
        let answer = app
            .post_json("/api/v1/exports", &analyst, json!({"kind": "matrix_csv"}))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let url = answer.json()["data"]["url"].as_str().unwrap().to_string();
        let expired = download(&app, &url).await;
        assert_eq!(expired.status, 403, "{}", expired.text());
        assert_eq!(error_of(&expired)["code"], "export_url_expired");
    }
}
