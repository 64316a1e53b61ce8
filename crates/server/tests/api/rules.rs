//! Rules, Sigma packs, the incident list and suggestions for stored alerts
//! and incidents over HTTP (issues 3, 4 and 5), on Enterprise 18.1, the
//! shared Sigma packs and the shared alerts. Expected values come from the
//! test's own reading of the pack archives (a minimal tar reader and a
//! line scan of the YAML), of the alert feed and of the release.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read as _};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use service::{Actor, LoadOptions, Role};

use crate::helpers::{TestApp, backends, enterprise_18_raw, error_of, shared_dir};

const PACK_2026_01: &str = "sigma-rules-c5e6d0ecd.tar.gz";
const PACK_2026_08: &str = "sigma-rules-8eaafff1f.tar.gz";

/// The files of a `.tar.gz` as (path, bytes), read with no tar library:
/// 512-byte headers, the name split over ustar `prefix` and `name`, or
/// carried by a GNU long-name (`L`) or pax (`x`) record before the entry.
fn tar_files(file: &str) -> Vec<(String, Vec<u8>)> {
    let gz = std::fs::read(shared_dir().join("sigma").join(file)).expect("read pack");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut tar)
        .expect("gunzip pack");
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let mut files = Vec::new();
    let mut long_name: Option<String> = None;
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|b| *b != 0) {
        let header = &tar[at..at + 512];
        let size = usize::from_str_radix(text(&header[124..136]).trim(), 8).expect("tar size");
        let data = &tar[at + 512..at + 512 + size];
        match header[156] {
            b'L' => long_name = Some(text(data)),
            b'x' => {
                // Records are `<len> path=<name>\n`.
                long_name = String::from_utf8_lossy(data)
                    .lines()
                    .find_map(|r| r.split_once(" path=").map(|(_, p)| p.to_string()))
                    .or(long_name);
            }
            kind => {
                let (name, prefix) = (text(&header[0..100]), text(&header[345..500]));
                let path = match long_name.take() {
                    Some(long) => long,
                    None if prefix.is_empty() => name,
                    None => format!("{prefix}/{name}"),
                };
                if kind == b'0' || kind == 0 {
                    files.push((path, data.to_vec()));
                }
            }
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    files
}

/// What the test reads from one Sigma rule file, by plain line scanning.
struct ScannedRule {
    status: Option<String>,
    technique_tags: BTreeSet<String>,
}

/// The rule files of a pack (YAML with a top-level `detection` or
/// `correlation` key).
fn scan_pack(file: &str) -> Vec<ScannedRule> {
    tar_files(file)
        .into_iter()
        .filter(|(path, _)| {
            let lower = path.to_ascii_lowercase();
            lower.ends_with(".yml") || lower.ends_with(".yaml")
        })
        .filter_map(|(_, bytes)| {
            let text = String::from_utf8(bytes).ok()?;
            let top = |key: &str| text.lines().any(|l| l.starts_with(&format!("{key}:")));
            if !top("detection") && !top("correlation") {
                return None;
            }
            let status = text
                .lines()
                .find_map(|l| l.strip_prefix("status:"))
                .map(|s| uncommented(s).to_ascii_lowercase());
            let mut technique_tags = BTreeSet::new();
            let mut in_tags = false;
            for line in text.lines() {
                if !line.starts_with([' ', '\t', '-']) {
                    in_tags = line.starts_with("tags:");
                    continue;
                }
                let item = uncommented(line.trim().trim_start_matches('-')).to_ascii_lowercase();
                let is_technique = item
                    .strip_prefix("attack.t")
                    .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()));
                if in_tags && is_technique {
                    technique_tags.insert(item);
                }
            }
            Some(ScannedRule {
                status,
                technique_tags,
            })
        })
        .collect()
}

/// A YAML scalar without its trailing comment (`deprecated # why`).
fn uncommented(value: &str) -> &str {
    value.split(" #").next().unwrap_or(value).trim()
}

fn skipped_by_status(rule: &ScannedRule) -> bool {
    matches!(rule.status.as_deref(), Some("deprecated" | "unsupported"))
}

/// Every ATT&CK ID of an attack-pattern in Enterprise 18.1, and whether it
/// is live (neither revoked nor deprecated).
fn release_techniques() -> BTreeMap<String, bool> {
    enterprise_18_raw()["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["type"] == "attack-pattern")
        .filter_map(|o| {
            let id = o["external_references"]
                .as_array()?
                .iter()
                .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
                .as_str()?
                .to_ascii_lowercase();
            let live = o["revoked"] != json!(true) && o["x_mitre_deprecated"] != json!(true);
            Some((id, live))
        })
        .collect()
}

/// The shared alert feed, parsed.
fn feed() -> Vec<Value> {
    std::fs::read_to_string(shared_dir().join("alerts/sigma-regression-alerts.ndjson"))
        .expect("read alerts")
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect()
}

fn steward(name: &str) -> Actor {
    Actor {
        name: name.into(),
        org: None,
        role: Role::Steward,
    }
}

/// Enterprise 18.1 active, the org created.
async fn with_release(app: &TestApp) {
    let file = shared_dir().join("attack/enterprise-attack-18.1.json.gz");
    let service = &app.app;
    let dataset = service
        .load_dataset(
            &steward("alice"),
            &file.display().to_string(),
            &LoadOptions::default(),
        )
        .await
        .expect("load 18.1");
    service
        .validate_dataset(&steward("alice"), &dataset.id)
        .await
        .expect("validate");
    service
        .approve_dataset(&steward("bob"), &dataset.id)
        .await
        .expect("approve");
    service
        .activate_dataset(&steward("bob"), &dataset.id)
        .await
        .expect("activate");
}

/// Ingests the shared feed into `org` (the alerts routes are not this
/// suite's subject).
async fn ingest_feed(app: &TestApp, org: &str) {
    let operator = Actor::operator("op");
    let bytes = std::fs::read(shared_dir().join("alerts/sigma-regression-alerts.ndjson")).unwrap();
    let report = app
        .app
        .ingest_alerts(
            &operator,
            org,
            Box::new(BufReader::new(std::io::Cursor::new(bytes))),
        )
        .await
        .expect("ingest");
    assert_eq!(report.ingested, feed().len());
}

async fn upload_pack(app: &TestApp, token: &str, file: &str) -> (StatusCode, Value) {
    let bytes = std::fs::read(shared_dir().join("sigma").join(file)).expect("read pack");
    let answer = app
        .send(
            Method::POST,
            &format!("/api/v1/rules/sigma?file_name={file}"),
            Some(token),
            Some(("application/gzip", bytes)),
        )
        .await;
    (answer.status, answer.json())
}

/// The canonical techniques of every stored alert of `org`, by source uid.
async fn canonical_by_uid(app: &TestApp, org: &str) -> BTreeMap<String, BTreeSet<String>> {
    let operator = Actor::operator("op");
    let mut out = BTreeMap::new();
    for alert in feed() {
        let uid = alert["finding_info"]["uid"]
            .as_str()
            .expect("uid")
            .to_string();
        let view = app
            .app
            .alert_mapping(&operator, org, &uid)
            .await
            .expect("alert mapping");
        let techniques = view
            .canonical
            .entries
            .iter()
            .map(|e| e.technique.clone())
            .collect();
        out.insert(uid, techniques);
    }
    out
}

#[tokio::test]
async fn sigma_packs_import_over_http_with_counts_the_test_reads_itself() {
    let scanned = scan_pack(PACK_2026_01);
    let skipped = scanned.iter().filter(|r| skipped_by_status(r)).count();
    let techniques = release_techniques();
    let mapped = scanned
        .iter()
        .filter(|r| !skipped_by_status(r))
        .filter(|r| {
            r.technique_tags.iter().any(|t| {
                techniques
                    .get(t.trim_start_matches("attack."))
                    .copied()
                    .unwrap_or(false)
            })
        })
        .count();
    // Technique tags of the newer pack that 18.1 has never heard of.
    let unknown_newer: BTreeSet<String> = scan_pack(PACK_2026_08)
        .iter()
        .filter(|r| !skipped_by_status(r))
        .flat_map(|r| r.technique_tags.iter().cloned())
        .filter(|t| !techniques.contains_key(t.trim_start_matches("attack.")))
        .collect();
    assert!(
        !unknown_newer.is_empty(),
        "the 2026-08 pack has tags 18.1 lacks"
    );

    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_release(&app).await;
        let engineer = app.token("acme", Role::Engineer).await;
        let analyst = app.token("acme", Role::Analyst).await;

        let denied = upload_pack(&app, &analyst, PACK_2026_01).await;
        assert_eq!(denied.0, StatusCode::FORBIDDEN, "{backend}: {}", denied.1);

        let (status, body) = upload_pack(&app, &engineer, PACK_2026_01).await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {body}");
        let summary = &body["data"];
        let unreadable = summary["skipped"]
            .as_array()
            .expect("skipped")
            .iter()
            .find(|s| s["reason"] == "unreadable")
            .map_or(0, |s| s["count"].as_u64().expect("count") as usize);
        let by_status = summary["skipped"]
            .as_array()
            .expect("skipped")
            .iter()
            .find(|s| s["reason"] == "status_deprecated_or_unsupported")
            .map_or(0, |s| s["count"].as_u64().expect("count") as usize);
        assert_eq!(by_status, skipped, "{backend}: {summary}");
        assert_eq!(
            summary["imported"].as_u64().unwrap() as usize + skipped + unreadable,
            scanned.len(),
            "{backend}: imported + skipped == rule files: {summary}"
        );
        assert_eq!(
            summary["mapped_rules"].as_u64().unwrap() as usize,
            mapped,
            "{backend}"
        );
        assert_eq!(
            summary["new_versions"], summary["mapped_rules"],
            "{backend}"
        );
        // Every technique tag of this pack exists in 18.1.
        assert_eq!(
            summary["tags_by_kind"]["technique"]["unknown"], 0,
            "{backend}"
        );

        // The rules are listed, a page at a time, each once.
        let listed = app
            .all_pages(&engineer, "/api/v1/rules?status=active", 500)
            .await;
        assert_eq!(listed.len(), mapped, "{backend}");
        let ids: BTreeSet<&str> = listed.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), mapped, "{backend}: no rule twice");

        // The stored report reads back.
        let import_id = summary["import_id"].as_str().expect("import id");
        let stored = app
            .get(&format!("/api/v1/rules/imports/{import_id}"), &analyst)
            .await;
        assert_eq!(
            stored.status,
            StatusCode::OK,
            "{backend}: {}",
            stored.text()
        );
        assert_eq!(stored.json()["data"]["rules"], summary["imported"]);

        // Re-importing the same pack stores nothing new.
        let (status, again) = upload_pack(&app, &engineer, PACK_2026_01).await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {again}");
        assert_eq!(again["data"]["new_versions"], 0, "{backend}");
        assert_eq!(again["data"]["unchanged"], summary["mapped_rules"]);

        // The newer pack: tags 18.1 does not know are reported by name.
        let (status, newer) = upload_pack(&app, &engineer, PACK_2026_08).await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {newer}");
        let reported: BTreeSet<String> = newer["data"]["tag_problems"]
            .as_array()
            .expect("tag problems")
            .iter()
            .filter(|p| p["status"] == "unknown")
            .filter_map(|p| p["tag"].as_str())
            .map(str::to_ascii_lowercase)
            .filter(|t| {
                t.starts_with("attack.t") && t[8..].starts_with(|c: char| c.is_ascii_digit())
            })
            .collect();
        assert_eq!(reported, unknown_newer, "{backend}");

        // A body that is no archive is the client's mistake and names no
        // server path.
        let junk = app
            .send(
                Method::POST,
                "/api/v1/rules/sigma?file_name=junk.tar.gz",
                Some(&engineer),
                Some(("application/gzip", b"not a tarball".to_vec())),
            )
            .await;
        assert_eq!(
            junk.status,
            StatusCode::BAD_REQUEST,
            "{backend}: {}",
            junk.text()
        );
        let error = error_of(&junk);
        assert_eq!(error["details"]["field"], "body");
        assert!(
            !junk.text().contains("nexus-attack-upload"),
            "{}",
            junk.text()
        );
    }
}

/// The rule the simulation and creation tests use: `needle` in the command
/// line maps to Execution Guardrails, a technique no Sigma rule of the
/// pack gives these alerts.
fn needle_rule(version: u32, needle: &str) -> String {
    format!(
        "id: test-needle\nversion: {version}\ntitle: Needle in the command line\n\
         author: test\nrationale: the test's own rule\nconfidence: 0.8\n\
         match:\n  field: process.cmd_line\n  contains: \"{needle}\"\n\
         techniques:\n  - id: T1480\n"
    )
}

/// The source uids of the feed's alerts whose command line contains
/// `needle` (ignoring case) and that do not map to T1480 yet.
fn needle_alerts(needle: &str, canonical: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    feed()
        .iter()
        .filter(|a| {
            a["process"]["cmd_line"]
                .as_str()
                .is_some_and(|c| c.to_lowercase().contains(&needle.to_lowercase()))
        })
        .filter_map(|a| a["finding_info"]["uid"].as_str().map(str::to_string))
        .filter(|uid| !canonical[uid].contains("T1480"))
        .collect()
}

#[tokio::test]
async fn rules_simulate_create_refuse_and_roll_back_over_http() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_release(&app).await;
        let engineer = app.token("acme", Role::Engineer).await;
        let viewer = app.token("acme", Role::Viewer).await;
        let (status, body) = upload_pack(&app, &engineer, PACK_2026_01).await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {body}");
        ingest_feed(&app, "acme").await;
        let before = canonical_by_uid(&app, "acme").await;
        let rules_before = app.all_pages(&engineer, "/api/v1/rules", 500).await;

        // Simulation: exactly the alerts the test picks would change, and
        // nothing is stored.
        let expected = needle_alerts("cmd.exe", &before);
        assert!(!expected.is_empty(), "the feed has cmd.exe command lines");
        let simulated = app
            .post_json(
                "/api/v1/rules/simulate",
                &viewer,
                json!({ "rule": needle_rule(1, "cmd.exe") }),
            )
            .await;
        assert_eq!(
            simulated.status,
            StatusCode::OK,
            "{backend}: {}",
            simulated.text()
        );
        let simulation = simulated.json()["data"].clone();
        assert_eq!(simulation["alerts_scanned"], before.len(), "{backend}");
        let changed: BTreeSet<String> = simulation["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .map(|c| c["source_uid"].as_str().expect("uid").to_string())
            .collect();
        assert_eq!(changed, expected, "{backend}");
        for change in simulation["changes"].as_array().unwrap() {
            let after: Vec<&str> = change["after"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|pair| pair[0].as_str())
                .collect();
            assert!(after.contains(&"T1480"), "{backend}: {change}");
        }
        assert_eq!(canonical_by_uid(&app, "acme").await, before, "{backend}");

        // A rule that does not parse: 422 naming the line; one naming an
        // unknown technique: 422 naming the field. Nothing changes.
        let broken = app
            .post_json(
                "/api/v1/rules",
                &engineer,
                json!({ "rule": "id: broken\nversion: 1\nmatch: [unclosed\ntitle: x\n" }),
            )
            .await;
        assert_eq!(
            broken.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{backend}: {}",
            broken.text()
        );
        let error = error_of(&broken);
        assert_eq!(error["code"], "invalid_rule");
        assert_eq!(error["details"]["field"], "rule");
        assert!(
            error["details"]["line"].as_u64().is_some_and(|l| l >= 3),
            "{error}"
        );
        let unknown = app
            .post_json(
                "/api/v1/rules",
                &engineer,
                json!({ "rule": needle_rule(1, "cmd.exe").replace("T1480", "T1999") }),
            )
            .await;
        assert_eq!(
            unknown.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{backend}: {}",
            unknown.text()
        );
        let error = error_of(&unknown);
        let field = error["details"]["field"].as_str().expect("field");
        assert!(field.starts_with("rule.techniques"), "{error}");
        assert_eq!(
            error["details"]["field"], "rule.techniques[0].id",
            "{error}"
        );
        assert_eq!(error["details"]["line"], 11, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("T1999"),
            "{error}"
        );
        assert_eq!(
            app.all_pages(&engineer, "/api/v1/rules", 500).await,
            rules_before
        );
        assert_eq!(canonical_by_uid(&app, "acme").await, before, "{backend}");

        // Creating it changes what the simulation said; a viewer may not.
        let refused = app
            .post_json(
                "/api/v1/rules",
                &viewer,
                json!({ "rule": needle_rule(1, "cmd.exe") }),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{backend}");
        let created = app
            .post_json(
                "/api/v1/rules",
                &engineer,
                json!({ "rule": needle_rule(1, "cmd.exe") }),
            )
            .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{backend}: {}",
            created.text()
        );
        assert_eq!(
            created.json()["data"]["changed"],
            expected.len(),
            "{backend}"
        );
        let now = canonical_by_uid(&app, "acme").await;
        let gained: BTreeSet<String> = now
            .iter()
            .filter(|(uid, t)| t.contains("T1480") && !before[*uid].contains("T1480"))
            .map(|(uid, _)| uid.clone())
            .collect();
        assert_eq!(gained, expected, "{backend}");

        // Creating it twice conflicts; the first version cannot roll back.
        let twice = app
            .post_json(
                "/api/v1/rules",
                &engineer,
                json!({ "rule": needle_rule(1, "cmd.exe") }),
            )
            .await;
        assert_eq!(twice.status, StatusCode::CONFLICT, "{backend}");
        let first = app
            .post("/api/v1/rules/test-needle/rollback", &engineer)
            .await;
        assert_eq!(
            first.status,
            StatusCode::CONFLICT,
            "{backend}: {}",
            first.text()
        );

        // Version 2 narrows the needle; rolling back restores version 1.
        let narrower = needle_alerts("whoami", &before);
        let updated = app
            .post_json(
                "/api/v1/rules",
                &engineer,
                json!({ "rule": needle_rule(2, "whoami"), "update": true }),
            )
            .await;
        assert_eq!(
            updated.status,
            StatusCode::OK,
            "{backend}: {}",
            updated.text()
        );
        assert_eq!(updated.json()["data"]["previous_version"], 1);
        let with_v2: BTreeSet<String> = canonical_by_uid(&app, "acme")
            .await
            .into_iter()
            .filter(|(uid, t)| t.contains("T1480") && !before[uid].contains("T1480"))
            .map(|(uid, _)| uid)
            .collect();
        assert_eq!(with_v2, narrower, "{backend}");
        let back = app
            .post("/api/v1/rules/test-needle/rollback", &engineer)
            .await;
        assert_eq!(back.status, StatusCode::OK, "{backend}: {}", back.text());
        assert_eq!(back.json()["data"]["rule"]["version"], 1);
        assert_eq!(canonical_by_uid(&app, "acme").await, now, "{backend}");

        // Another org's rule is a missing one.
        let other = app.token("globex", Role::Engineer).await;
        let foreign = app.post("/api/v1/rules/test-needle/rollback", &other).await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{backend}");
    }
}

#[tokio::test]
async fn incidents_list_newest_first_a_page_at_a_time() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_release(&app).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let other = app.token("globex", Role::Analyst).await;
        ingest_feed(&app, "acme").await;
        let uids: Vec<String> = feed()
            .iter()
            .filter_map(|a| a["finding_info"]["uid"].as_str().map(str::to_string))
            .collect();

        let mut created = Vec::new();
        for n in 1..=5 {
            let answer = app
                .post_json(
                    "/api/v1/incidents",
                    &analyst,
                    json!({ "title": format!("incident {n}"), "alerts": uids[..n] }),
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "{backend}: {}",
                answer.text()
            );
            let data = answer.json()["data"].clone();
            created.push((
                data["updated_at"].as_str().unwrap().to_string(),
                data["id"].as_str().unwrap().to_string(),
                n,
            ));
        }
        created.sort();
        created.reverse();

        let listed = app.all_pages(&analyst, "/api/v1/incidents", 2).await;
        let got: Vec<(String, String, usize)> = listed
            .iter()
            .map(|i| {
                (
                    i["updated_at"].as_str().unwrap().to_string(),
                    i["id"].as_str().unwrap().to_string(),
                    i["alert_count"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(got, created, "{backend}");
        assert!(
            listed
                .iter()
                .all(|i| i["status"] == "open" && i["severity"] == "medium")
        );

        // The other org sees none of them.
        let foreign = app.get("/api/v1/incidents", &other).await;
        assert_eq!(foreign.status, StatusCode::OK);
        assert_eq!(foreign.json()["data"], json!([]), "{backend}");
        let bad = app.get("/api/v1/incidents?cursor=nonsense", &analyst).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{backend}");
    }
}

/// Alerts whose title names a live 18.1 technique (a name of at least 20
/// characters, so the match is not a common word) and nothing else: no
/// other word of the title (four letters or more) is a word of another
/// technique's name. "System Information Discovery via Registry Queries"
/// also describes Query Registry and is left out; "Domain Trust Discovery
/// Via Dsquery" names one technique only.
fn alerts_naming_a_technique() -> Vec<(String, String)> {
    let names: Vec<(String, String)> = enterprise_18_raw()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "attack-pattern")
        .filter(|o| o["revoked"] != json!(true) && o["x_mitre_deprecated"] != json!(true))
        .filter_map(|o| {
            let id = o["external_references"]
                .as_array()?
                .iter()
                .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
                .as_str()?
                .to_string();
            Some((id, o["name"].as_str()?.to_lowercase()))
        })
        .collect();
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let vocabulary: BTreeSet<String> = names.iter().flat_map(|(_, n)| words(n)).collect();
    feed()
        .iter()
        .filter_map(|a| {
            let title = a["finding_info"]["title"].as_str()?.to_lowercase();
            let (id, name) = names
                .iter()
                .filter(|(_, name)| name.len() >= 20)
                .find(|(_, name)| title.contains(name.as_str()))?;
            let rest = title.replacen(name.as_str(), " ", 1);
            let ambiguous = words(&rest)
                .iter()
                .any(|w| w.len() >= 4 && vocabulary.contains(w));
            let uid = a["finding_info"]["uid"].as_str()?.to_string();
            (!ambiguous).then(|| (uid, id.clone()))
        })
        .collect()
}

#[tokio::test]
async fn suggestions_for_stored_alerts_and_incidents() {
    let naming = alerts_naming_a_technique();
    assert!(naming.len() >= 2, "the feed names techniques: {naming:?}");

    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_release(&app).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let other = app.token("globex", Role::Analyst).await;
        ingest_feed(&app, "acme").await;

        for (uid, technique) in &naming {
            let answer = app
                .get(
                    &format!("/api/v1/alerts/{uid}/suggestions?limit=5"),
                    &analyst,
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{backend}: {}",
                answer.text()
            );
            let body = answer.json();
            let top: Vec<&str> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["technique"].as_str())
                .collect();
            assert!(top.len() <= 5);
            assert!(
                top.contains(&technique.as_str()),
                "{backend}: {uid} {technique} not in {top:?}"
            );
            assert_eq!(body["meta"]["subject"]["kind"], "alert");
            assert_eq!(body["meta"]["alerts_read"], 1);

            // Another org's alert answers as a missing one.
            let foreign = app
                .get(&format!("/api/v1/alerts/{uid}/suggestions"), &other)
                .await;
            let missing = app
                .get("/api/v1/alerts/no-such-alert/suggestions", &other)
                .await;
            assert_eq!(foreign.status, StatusCode::NOT_FOUND);
            assert_eq!(foreign.bytes, missing.bytes, "{backend}");
        }

        // An incident of those alerts, with an evidence reference.
        let alerts: Vec<&str> = naming.iter().map(|(uid, _)| uid.as_str()).collect();
        let created = app
            .post_json(
                "/api/v1/incidents",
                &analyst,
                json!({ "title": "Discovery on host-01", "alerts": alerts }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let id = created.json()["data"]["id"].as_str().unwrap().to_string();
        let evidence = app
            .post_json(
                &format!("/api/v1/incidents/{id}/evidence"),
                &analyst,
                json!({ "reference": "TICKET-42", "kind": "ticket" }),
            )
            .await;
        assert_eq!(evidence.status, StatusCode::OK, "{}", evidence.text());

        let answer = app
            .get(&format!("/api/v1/incidents/{id}/suggestions"), &analyst)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{backend}: {}",
            answer.text()
        );
        let body = answer.json();
        assert_eq!(
            body["meta"]["subject"],
            json!({ "kind": "incident", "id": id })
        );
        assert_eq!(body["meta"]["alerts_read"], naming.len());
        assert_eq!(body["meta"]["evidence_read"], 1);
        let top: BTreeSet<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["technique"].as_str())
            .collect();
        let named: BTreeSet<&str> = naming.iter().map(|(_, t)| t.as_str()).collect();
        assert!(
            !top.is_disjoint(&named),
            "{backend}: the incident's suggestions {top:?} name none of {named:?}"
        );

        let foreign = app
            .get(&format!("/api/v1/incidents/{id}/suggestions"), &other)
            .await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{backend}");
        let bad = app
            .get(
                &format!("/api/v1/incidents/{id}/suggestions?limit=11"),
                &analyst,
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{backend}");
    }
}

#[tokio::test]
async fn a_rule_with_a_misspelt_key_is_refused_naming_it_and_nothing_is_stored() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_release(&app).await;
        let engineer = app.token("acme", Role::Engineer).await;
        let good = needle_rule(1, "cmd.exe");
        assert!(good.contains("confidence: 0.8\n") && good.contains("  - id: T1480\n"));

        let cases = [
            (
                good.replace("confidence: 0.8\n", "confidance: 0.8\n"),
                "rule.confidance",
            ),
            (
                good.replace("confidence: 0.8\n", "confidence: 0.8\nconfidance: 0.9\n"),
                "rule.confidance",
            ),
            (
                good.replace("  - id: T1480\n", "  - id: T1480\n    confidance: 0.9\n"),
                "rule.techniques[0].confidance",
            ),
            (
                good.replace(
                    "  contains: \"cmd.exe\"\n",
                    "  contains: \"cmd.exe\"\n  case_sensitve: true\n",
                ),
                "rule.match.case_sensitve",
            ),
        ];
        for (text, field) in &cases {
            for route in ["/api/v1/rules", "/api/v1/rules/simulate"] {
                let answer = app
                    .post_json(route, &engineer, json!({ "rule": text }))
                    .await;
                assert_eq!(
                    answer.status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{backend}: {route} {field}: {}",
                    answer.text()
                );
                let error = error_of(&answer);
                assert_eq!(error["code"], "invalid_rule");
                assert_eq!(
                    error["details"]["field"], *field,
                    "{backend}: {route}: {error}"
                );
                assert!(
                    error["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("unknown key")),
                    "{error}"
                );
            }
            // The same rule as a JSON object names the same field.
            let object: Value = serde_yaml::from_str(text).expect("the case is YAML");
            let answer = app
                .post_json("/api/v1/rules", &engineer, json!({ "rule": object }))
                .await;
            assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(error_of(&answer)["details"]["field"], *field);
        }
        let rules = app.get("/api/v1/rules", &engineer).await;
        assert_eq!(rules.json()["data"], json!([]), "{backend}: nothing stored");

        // Spelt right, it is stored.
        let stored = app
            .post_json("/api/v1/rules", &engineer, json!({ "rule": good }))
            .await;
        assert_eq!(
            stored.status,
            StatusCode::CREATED,
            "{backend}: {}",
            stored.text()
        );
    }
}

/// Regression: an error inside a nested condition (`all`, `any`, `not`)
/// lacked `details.line` when the part sat in a flow mapping, and got the
/// line of the first key of that name after the combinator (another
/// item's) otherwise. Both name the line and column of the part itself.
#[tokio::test]
async fn a_nested_condition_error_names_the_line_of_its_own_part() {
    let head = "id: nested\nversion: 1\ntitle: Nested\nauthor: test\nrationale: test\n\
                confidence: 0.8\ntechniques: [T1059]\n";
    // Lines 8 on: the bad part's line and column are counted by hand.
    let cases = [
        (
            "match:\n  all:\n    - field: process.cmd_line\n      regex: ok\n    - any:\n        - { field: process.cmd_line, regex: \"(\" }\n",
            "rule.match.all[1].any[0].regex",
            (13, 45),
        ),
        (
            "match:\n  all:\n    - field: process.cmd_line\n      regex: ok\n    - field: process.name\n      regex: \"(\"\n",
            "rule.match.all[1].regex",
            (13, 14),
        ),
        (
            "match:\n  not: {field: process.name, endswith: x}\n",
            "rule.match.not.endswith",
            (9, 40),
        ),
    ];
    for backend in backends() {
        let app = TestApp::new(backend).await;
        with_release(&app).await;
        let engineer = app.token("acme", Role::Engineer).await;
        for (condition, field, (line, column)) in cases {
            let text = format!("{head}{condition}");
            for route in ["/api/v1/rules", "/api/v1/rules/simulate"] {
                let answer = app
                    .post_json(route, &engineer, json!({ "rule": text }))
                    .await;
                assert_eq!(
                    answer.status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{backend}: {route}: {}",
                    answer.text()
                );
                let error = error_of(&answer);
                assert_eq!(error["code"], "invalid_rule", "{error}");
                assert_eq!(error["details"]["field"], field, "{backend}: {error}");
                assert_eq!(
                    error["details"]["line"], line,
                    "{backend}: {field}: {error}"
                );
                assert_eq!(
                    error["details"]["column"], column,
                    "{backend}: {field}: {error}"
                );
            }
        }
    }
}
