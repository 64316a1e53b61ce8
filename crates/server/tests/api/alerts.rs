//! The alert, override and review API (issue 3) over real data: Enterprise
//! 18.1, the 2026-01-01 Sigma pack and the shared Sigma regression alerts.
//! Expected techniques come from the pack's YAML, read here with
//! serde_yaml, never from the mapping engine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;

use axum::http::Method;
use serde_json::{Value, json};
use service::Role;

use crate::helpers::{Answer, TestApp, backends, error_of, shared_dir};

/// Sigma rule id -> the techniques of its `attack.tNNNN[.NNN]` tags, for
/// the rules of the 2026-01-01 pack that are neither deprecated nor
/// unsupported.
fn sigma_techniques() -> BTreeMap<String, BTreeSet<String>> {
    let path = shared_dir().join("sigma/sigma-rules-c5e6d0ecd.tar.gz");
    let file = std::fs::File::open(&path).expect("open the Sigma pack");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let mut text = String::new();
        if (name.ends_with(".yml") || name.ends_with(".yaml"))
            && entry.read_to_string(&mut text).is_ok()
        {
            files.push((name, text));
        }
    }
    files.sort();

    let tag = regex::Regex::new(r"^attack\.(t\d{4}(\.\d{3})?)$").expect("tag pattern");
    let mut rules = BTreeMap::new();
    for (_, text) in files {
        let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        let Some(id) = doc.get("id").and_then(|v| v.as_str()) else {
            continue;
        };
        let status = doc.get("status").and_then(|v| v.as_str()).unwrap_or("");
        if matches!(status, "deprecated" | "unsupported") {
            rules.remove(id);
            continue;
        }
        let techniques: BTreeSet<String> = doc
            .get("tags")
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .filter_map(|t| {
                tag.captures(&t.to_ascii_lowercase())
                    .map(|c| c[1].to_ascii_uppercase())
            })
            .collect();
        rules.insert(id.to_string(), techniques);
    }
    rules
}

/// The shared feed, one alert per line.
fn feed() -> Vec<String> {
    let path = shared_dir().join("alerts/sigma-regression-alerts.ndjson");
    std::fs::read_to_string(&path)
        .expect("read the shared alerts")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The techniques of the entries of a canonical entry list.
fn techniques(entries: &Value) -> BTreeSet<String> {
    entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["technique"].as_str().expect("technique").to_string())
        .collect()
}

async fn post_ndjson(app: &TestApp, token: &str, content_type: &str, body: String) -> Answer {
    app.send(
        Method::POST,
        "/api/v1/alerts/bulk",
        Some(token),
        Some((content_type, body.into_bytes())),
    )
    .await
}

#[tokio::test]
async fn ingested_alerts_map_to_the_techniques_their_sigma_rules_tag() {
    let rules = sigma_techniques();
    let lines = feed();
    assert_eq!(lines.len(), 111, "the shared feed");
    let first: Value = serde_json::from_str(&lines[0]).expect("first alert");
    let first_rule = first["finding_info"]["analytic"]["uid"]
        .as_str()
        .expect("rule uid");
    let first_expected = rules[first_rule].clone();
    assert!(
        !first_expected.is_empty(),
        "the first alert's rule is tagged"
    );

    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;

        // One alert alone: 201, its id in Location, mapped to the rule's tags.
        let answer = app
            .post_json("/api/v1/alerts", &engineer, first.clone())
            .await;
        assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        let data = answer.json()["data"].clone();
        assert_eq!(data["result"], "ingested");
        let id = data["mapping"]["alert"]["id"]
            .as_str()
            .expect("id")
            .to_string();
        assert_eq!(
            answer.headers["location"].to_str().expect("location"),
            format!("/api/v1/alerts/{id}")
        );
        assert_eq!(
            data["mapping"]["alert"]["source_uid"],
            first["finding_info"]["uid"]
        );
        assert_eq!(
            techniques(&data["mapping"]["canonical"]["entries"]),
            first_expected,
            "{backend}"
        );
        assert_eq!(data["mapping"]["canonical"]["decided_by"], "rule");

        // The same alert again changes nothing and says so.
        let again = app
            .post_json("/api/v1/alerts", &engineer, first.clone())
            .await;
        assert_eq!(again.status, 200, "{backend}: {}", again.text());
        assert_eq!(again.json()["data"]["result"], "duplicate");
        assert_eq!(again.json()["data"]["mapping"]["alert"]["id"], id.as_str());

        // The feed in bulk with two bad lines put in: line 3 is not JSON,
        // line 50 is JSON in no alert format.
        let mut body_lines: Vec<String> = lines.clone();
        body_lines.insert(2, "{\"class_uid\": 2004, broken".to_string());
        body_lines.insert(49, json!({"hello": "world"}).to_string());
        let bad: Vec<usize> = body_lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !lines.contains(l))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(bad, vec![3, 50]);
        let body: String = body_lines.iter().map(|l| format!("{l}\n")).collect();
        let answer = post_ndjson(&app, &engineer, "application/x-ndjson", body).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let summary = answer.json()["data"].clone();
        assert_eq!(summary["accepted"], lines.len(), "{backend}: {summary}");
        assert_eq!(summary["ingested"], lines.len() - 1, "the first was stored");
        assert_eq!(summary["duplicates"], 1);
        assert_eq!(summary["rejected"], bad.len());
        let errors = summary["errors"].as_array().expect("errors");
        let lines_reported: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
        assert_eq!(lines_reported, vec![3, 50]);
        assert_eq!(errors[0]["code"], "invalid_json");
        assert_eq!(errors[1]["code"], "unrecognized_format");
        assert!(
            errors
                .iter()
                .all(|e| e["message"].as_str().is_some_and(|m| !m.is_empty()))
        );

        // Every alert, newest first, carries its rule's techniques.
        let listed = app.all_pages(&engineer, "/api/v1/alerts", 40).await;
        assert_eq!(listed.len(), lines.len(), "{backend}");
        let ids: Vec<&str> = listed
            .iter()
            .map(|i| i["alert"]["id"].as_str().unwrap())
            .collect();
        let mut newest_first = ids.clone();
        newest_first.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(ids, newest_first, "{backend}: newest first");
        assert_eq!(
            *ids.last().unwrap(),
            id.as_str(),
            "the single alert came first"
        );
        for item in &listed {
            let rule = item["alert"]["analytic_uid"]
                .as_str()
                .expect("analytic uid");
            assert_eq!(
                techniques(&item["canonical"]),
                rules[rule],
                "{backend}: alert {} of rule {rule}",
                item["alert"]["source_uid"]
            );
        }

        // The technique filter lists exactly the alerts whose rule tags it.
        let wanted = first_expected.iter().next().unwrap().clone();
        let expected_count = listed
            .iter()
            .filter(|i| rules[i["alert"]["analytic_uid"].as_str().unwrap()].contains(&wanted))
            .count();
        let filtered = app
            .all_pages(
                &engineer,
                &format!("/api/v1/alerts?technique={wanted}&source=rule"),
                500,
            )
            .await;
        assert_eq!(filtered.len(), expected_count, "{backend}: {wanted}");
        let none = app.get("/api/v1/alerts?source=manual", &engineer).await;
        assert_eq!(none.json()["data"], json!([]), "{backend}: no override yet");
        let bad_filter = app.get("/api/v1/alerts?technique=t1059-1", &engineer).await;
        assert_eq!(bad_filter.status, 400);
        assert_eq!(error_of(&bad_filter)["details"]["field"], "technique");

        // One alert in full: every candidate with its provenance.
        let shown = app.get(&format!("/api/v1/alerts/{id}"), &engineer).await;
        assert_eq!(shown.status, 200, "{backend}: {}", shown.text());
        let view = shown.json()["data"].clone();
        let problems = service::check_schema(&service::alert_mapping_schema(), &view);
        assert!(problems.is_empty(), "{backend}: {problems:?}");
        let candidates = view["candidates"].as_array().expect("candidates");
        let candidate_techniques: BTreeSet<String> = candidates
            .iter()
            .map(|c| c["technique"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(candidate_techniques, first_expected);
        for candidate in candidates {
            assert_eq!(candidate["source"], "rule");
            assert!(candidate["rule_id"].as_str().is_some_and(|r| !r.is_empty()));
            assert!(candidate["rule_version"].as_i64().is_some());
            assert_eq!(candidate["release"], "18.1");
        }
        assert!(
            view["canonical"]["explanation"]
                .as_str()
                .is_some_and(|e| e.contains("manual > rule > ai"))
        );

        // Another org sees none of it, exactly as if it did not exist.
        let other = app.token("globex", Role::Admin).await;
        let foreign = app.get(&format!("/api/v1/alerts/{id}"), &other).await;
        let missing = app
            .get(
                "/api/v1/alerts/0190f0a0-0000-7000-8000-00000000abcd",
                &other,
            )
            .await;
        assert_eq!(foreign.status, 404);
        assert_eq!(foreign.text(), missing.text());
        assert_eq!(
            app.get("/api/v1/alerts", &other).await.json()["data"],
            json!([])
        );
    }
}

#[tokio::test]
async fn bulk_ingestion_reads_ndjson_only_and_names_each_bad_line() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;
        let line = feed().remove(0);

        // text/plain is read as NDJSON too; blank lines are no alerts.
        let answer = post_ndjson(
            &app,
            &engineer,
            "text/plain; charset=utf-8",
            format!("\n{line}\n\n"),
        )
        .await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        assert_eq!(answer.json()["data"]["accepted"], 1);

        // A JSON content type is refused before anything is read.
        let answer = post_ndjson(&app, &engineer, "application/json", line.clone()).await;
        assert_eq!(answer.status, 415, "{backend}: {}", answer.text());
        assert_eq!(error_of(&answer)["code"], "unsupported_media_type");

        // Only malformed lines: every one is named, nothing is stored.
        let body = "{\"class_uid\": 2004,\n[1, 2]\n{\"uid\": \"x\"}\n".to_string();
        let answer = post_ndjson(&app, &engineer, "application/x-ndjson", body).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let summary = answer.json()["data"].clone();
        assert_eq!(summary["accepted"], 0);
        assert_eq!(summary["rejected"], 3);
        let reasons: Vec<(u64, &str)> = summary["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (1, "invalid_json"),
                (2, "not_an_object"),
                (3, "unrecognized_format")
            ],
            "{backend}"
        );

        // One alert that is no alert: a structured 400.
        let answer = app
            .post_json("/api/v1/alerts", &engineer, json!({"hello": 1}))
            .await;
        assert_eq!(answer.status, 400, "{backend}: {}", answer.text());
        let error = error_of(&answer);
        assert_eq!(error["code"], "invalid_input");
        assert_eq!(
            error["details"],
            json!({"field": "body", "reason": "unrecognized_format"})
        );

        // An empty body is refused.
        let answer = post_ndjson(&app, &engineer, "application/x-ndjson", "\n".into()).await;
        assert_eq!(answer.status, 400);

        // Viewers read, they do not ingest.
        let viewer = app.token("acme", Role::Viewer).await;
        let answer = post_ndjson(&app, &viewer, "application/x-ndjson", line).await;
        assert_eq!(answer.status, 403);
    }
}

/// Eleven live Enterprise 18.1 techniques: one more than the default
/// over-mapping limit (10).
const OVER_MAPPED: [&str; 11] = [
    "T1003", "T1021", "T1027", "T1053", "T1055", "T1059", "T1070", "T1078", "T1105", "T1547",
    "T1566",
];

/// A native alert whose vendor declares every technique of
/// [`OVER_MAPPED`]: mapped, and queued for review as over-mapped.
fn over_mapped_alert(uid: &str) -> Value {
    let declared: Vec<Value> = OVER_MAPPED.iter().map(|t| json!({"id": t})).collect();
    json!({
        "schema": "nexus-attack.alert/1",
        "uid": uid,
        "title": "vendor names everything",
        "severity": "medium",
        "techniques": declared
    })
}

#[tokio::test]
async fn overrides_keep_history_and_review_items_leave_the_open_queue() {
    let rules = sigma_techniques();
    let first: Value = serde_json::from_str(&feed()[0]).expect("first alert");
    let rule = first["finding_info"]["analytic"]["uid"].as_str().unwrap();
    let old: BTreeSet<String> = rules[rule].clone();
    let replaced = old.iter().next().unwrap().clone();

    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;
        let lead = app.token("acme", Role::Lead).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let created = app
            .post_json("/api/v1/alerts", &engineer, first.clone())
            .await;
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json()["data"]["mapping"]["alert"]["id"]
            .as_str()
            .unwrap()
            .to_string();

        // A lead's replacement applies at once; old and new stay visible.
        let body = json!({
            "action": "replace", "technique": "T1003", "replaces": replaced,
            "reason": "wrong_technique", "notes": "credential dumping, not what the rule says"
        });
        let answer = app
            .post_json(&format!("/api/v1/alerts/{id}/overrides"), &lead, body)
            .await;
        assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        let outcome = answer.json()["data"].clone();
        assert_eq!(outcome["applied"], true);
        assert_eq!(outcome["before_version"], 1);
        assert_eq!(outcome["after_version"], 2);
        assert_eq!(outcome["override"]["status"], "approved");

        let view = app
            .get(&format!("/api/v1/alerts/{id}"), &analyst)
            .await
            .json()["data"]
            .clone();
        let mut now: BTreeSet<String> = old.clone();
        now.remove(&replaced);
        now.insert("T1003".into());
        assert_eq!(techniques(&view["canonical"]["entries"]), now, "{backend}");
        assert_eq!(view["canonical"]["decided_by"], "manual");
        let history = view["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{backend}");
        assert_eq!(history[0]["decided_by"], "rule");
        assert_eq!(history[0]["entries"], old.len());
        assert_eq!(history[1]["decided_by"], "manual");
        let overrides = view["overrides"].as_array().unwrap();
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides[0]["replaces"], replaced.as_str());
        assert_eq!(overrides[0]["technique"], "T1003");
        assert_eq!(overrides[0]["reason"], "wrong_technique");

        // Without a reason code nothing is written.
        let answer = app
            .post_json(
                &format!("/api/v1/alerts/{id}/overrides"),
                &lead,
                json!({"action": "add", "technique": "T1078"}),
            )
            .await;
        assert_eq!(answer.status, 400, "{backend}: {}", answer.text());
        assert_eq!(error_of(&answer)["details"]["field"], "reason");

        // An analyst proposes; only a lead decides.
        let answer = app
            .post_json(
                &format!("/api/v1/alerts/{id}/overrides"),
                &analyst,
                json!({"action": "add", "technique": "T1078", "reason": "missing_technique"}),
            )
            .await;
        assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        let proposal = answer.json()["data"].clone();
        assert_eq!(proposal["applied"], false);
        assert_eq!(proposal["override"]["status"], "proposed");
        let proposal_id = proposal["override"]["id"].as_str().unwrap().to_string();
        let decide = format!("/api/v1/overrides/{proposal_id}/decide");
        let refused = app
            .post_json(&decide, &analyst, json!({"decision": "approve"}))
            .await;
        assert_eq!(refused.status, 403);
        let approved = app
            .post_json(&decide, &lead, json!({"decision": "approve"}))
            .await;
        assert_eq!(approved.status, 200, "{backend}: {}", approved.text());
        assert_eq!(approved.json()["data"]["applied"], true);
        assert_eq!(
            approved.json()["data"]["override"]["supersedes"],
            proposal_id.as_str()
        );
        let again = app
            .post_json(&decide, &lead, json!({"decision": "reject"}))
            .await;
        assert_eq!(again.status, 409, "{backend}: decided once");
        now.insert("T1078".into());
        let view = app
            .get(&format!("/api/v1/alerts/{id}"), &analyst)
            .await
            .json()["data"]
            .clone();
        assert_eq!(techniques(&view["canonical"]["entries"]), now, "{backend}");
        let manual = app
            .all_pages(&analyst, "/api/v1/alerts?source=manual", 10)
            .await;
        assert_eq!(manual.len(), 1);
        assert_eq!(manual[0]["alert"]["id"], id.as_str());

        // Two over-mapped alerts wait for review.
        for uid in ["vendor-1", "vendor-2"] {
            let answer = app
                .post_json("/api/v1/alerts", &engineer, over_mapped_alert(uid))
                .await;
            assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        }
        let open = app
            .all_pages(&analyst, "/api/v1/review?state=open", 1)
            .await;
        let mut declared = Vec::new();
        for source_uid in ["vendor-1", "vendor-2"] {
            let shown = app
                .get(&format!("/api/v1/alerts/{source_uid}"), &analyst)
                .await;
            declared.push(
                shown.json()["data"]["alert"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let (alert_1, alert_2) = (declared[0].clone(), declared[1].clone());
        let item_of = |alert: &str| {
            open.iter()
                .find(|i| i["alert_id"] == alert)
                .unwrap_or_else(|| panic!("{backend}: no open review item for {alert}: {open:?}"))["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let (item_1, item_2) = (item_of(&alert_1), item_of(&alert_2));

        // Accepting one takes it out of the open queue.
        let answer = app
            .post_json(
                &format!("/api/v1/review/{item_1}/decide"),
                &analyst,
                json!({"decision": "accept", "notes": "the EDR is right"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        assert_eq!(answer.json()["data"]["state"], "accepted");
        assert_eq!(
            answer.json()["data"]["resolution"],
            json!({"notes": "the EDR is right"})
        );

        // Correcting the other overrides its mapping and resolves it.
        let answer = app
            .post_json(
                &format!("/api/v1/review/{item_2}/correct"),
                &lead,
                json!({"action": "replace", "technique": "T1566.001", "replaces": "T1566",
                       "reason": "wrong_subtechnique"}),
            )
            .await;
        let mut corrected_techniques: BTreeSet<String> =
            OVER_MAPPED.iter().map(|t| t.to_string()).collect();
        corrected_techniques.remove("T1566");
        corrected_techniques.insert("T1566.001".into());
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let correction = answer.json()["data"].clone();
        assert_eq!(correction["review"]["state"], "corrected");
        assert_eq!(correction["override"]["applied"], true);
        let corrected = app
            .get(&format!("/api/v1/alerts/{alert_2}"), &analyst)
            .await
            .json();
        assert_eq!(
            techniques(&corrected["data"]["canonical"]["entries"]),
            corrected_techniques
        );

        let still_open: BTreeSet<String> = app
            .all_pages(&analyst, "/api/v1/review?state=open", 50)
            .await
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !still_open.contains(&item_1) && !still_open.contains(&item_2),
            "{backend}"
        );
        assert_eq!(still_open.len(), open.len() - 2, "{backend}");
        let accepted = app
            .get("/api/v1/review?state=accepted", &analyst)
            .await
            .json();
        assert_eq!(accepted["data"][0]["id"], item_1.as_str());
        let twice = app
            .post_json(
                &format!("/api/v1/review/{item_1}/decide"),
                &analyst,
                json!({"decision": "reject"}),
            )
            .await;
        assert_eq!(twice.status, 409, "{backend}");
        let unknown_state = app.get("/api/v1/review?state=closed", &analyst).await;
        assert_eq!(unknown_state.status, 400);

        // `state=all` means every state, as `review list --state all` does:
        // the union of the lists of each state, here open and accepted
        // items (and the corrected one) together.
        let ids = |items: Vec<Value>| -> BTreeSet<String> {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        let mut every_state = BTreeSet::new();
        for state in [
            "open",
            "accepted",
            "rejected",
            "corrected",
            "resolved_by_remap",
        ] {
            let path = format!("/api/v1/review?state={state}");
            every_state.extend(ids(app.all_pages(&analyst, &path, 50).await));
        }
        let all = app.get("/api/v1/review?state=all", &analyst).await;
        assert_eq!(all.status, 200, "{backend}: {}", all.text());
        let all = ids(app.all_pages(&analyst, "/api/v1/review?state=all", 2).await);
        assert_eq!(all, every_state, "{backend}");
        assert!(all.contains(&item_1) && all.contains(&item_2), "{backend}");
        let document = app
            .send(Method::GET, "/api/v1/openapi.json", None, None)
            .await
            .json();
        let documented = document["paths"]["/api/v1/review"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "state")
            .map(|p| p["schema"]["enum"].clone());
        assert!(
            documented
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|values| values.contains(&json!("all"))),
            "{documented:?}"
        );

        // A re-map re-evaluates every alert and keeps the overrides' effect.
        let refused = app.post("/api/v1/remap", &analyst).await;
        assert_eq!(refused.status, 403);
        let answer = app.post("/api/v1/remap", &engineer).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        assert_eq!(answer.json()["data"]["alerts"], 3);
        let view = app
            .get(&format!("/api/v1/alerts/{id}"), &analyst)
            .await
            .json()["data"]
            .clone();
        assert_eq!(techniques(&view["canonical"]["entries"]), now, "{backend}");
    }
}

/// A stale incident shares the review queue with the alerts: the list
/// names it (subject, incident id, stale reasons; no alert), alert items
/// keep their shape, and correcting the item is a lead adjustment of the
/// incident that resolves it.
#[tokio::test]
async fn stale_incidents_are_listed_and_corrected_through_the_review_queue() {
    let first: Value = serde_json::from_str(&feed()[0]).expect("first alert");

    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;
        let lead = app.token("acme", Role::Lead).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let created = app
            .post_json("/api/v1/alerts", &engineer, first.clone())
            .await;
        assert_eq!(created.status, 201, "{}", created.text());
        let alert = created.json()["data"]["mapping"]["alert"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let answer = app
            .post_json(
                "/api/v1/incidents",
                &analyst,
                json!({"title": "host-1", "alerts": [alert]}),
            )
            .await;
        assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        let incident = answer.json()["data"]["id"].as_str().unwrap().to_string();
        let alert_items = app
            .all_pages(&analyst, "/api/v1/review?state=open", 50)
            .await;

        for (path, body) in [
            ("severity", json!({"severity": "critical"})),
            (
                "evidence",
                json!({"reference": "TICKET-9", "kind": "ticket"}),
            ),
        ] {
            let answer = app
                .post_json(
                    &format!("/api/v1/incidents/{incident}/{path}"),
                    &analyst,
                    body,
                )
                .await;
            assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        }
        let open = app
            .all_pages(&analyst, "/api/v1/review?state=open", 50)
            .await;
        let incident_items: Vec<&Value> =
            open.iter().filter(|i| i["subject"] == "incident").collect();
        assert_eq!(incident_items.len(), 1, "{backend}: {open:?}");
        let item = incident_items[0];
        assert_eq!(item["incident_id"], incident.as_str(), "{backend}");
        assert_eq!(item["alert_id"], Value::Null);
        assert_eq!(item["reason"], "stale");
        let reasons: Vec<&str> = item["stale_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["severity_shift", "evidence_update"], "{backend}");
        // Alert items: the same fields as before, and the new ones empty.
        let alerts_now: Vec<&Value> = open.iter().filter(|i| i["subject"] == "alert").collect();
        assert_eq!(alerts_now.len(), alert_items.len(), "{backend}");
        for (now, before) in alerts_now.iter().zip(&alert_items) {
            assert_eq!(*now, before, "{backend}");
            assert_eq!(now["alert_id"], alert.as_str());
            assert_eq!(now["incident_id"], Value::Null);
            assert_eq!(now["stale_reasons"], Value::Null);
        }

        // Correcting is a lead adjustment: an analyst is refused, a lead's
        // resolves the item and answers the incident.
        let id = item["id"].as_str().unwrap();
        let correction = json!({"action": "add", "technique": "T1078",
            "reason": "missing_technique", "notes": "valid accounts in the VPN logs"});
        let path = format!("/api/v1/review/{id}/correct");
        let refused = app.post_json(&path, &analyst, correction.clone()).await;
        assert_eq!(refused.status, 403, "{backend}: {}", refused.text());
        let answer = app.post_json(&path, &lead, correction.clone()).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let data = answer.json()["data"].clone();
        assert_eq!(data["review"]["state"], "corrected", "{backend}");
        // Correcting it again is a conflict whose details name the state
        // the item is in and who put it there.
        let again = app.post_json(&path, &lead, correction).await;
        assert_eq!(again.status, 409, "{backend}: {}", again.text());
        let error = again.json()["error"].clone();
        assert_eq!(error["code"], "conflict", "{backend}");
        let details = &error["details"];
        assert_eq!(details["review"], id, "{backend}: {error}");
        assert_eq!(details["incident"], incident.as_str(), "{backend}");
        assert_eq!(details["alert"], Value::Null, "{backend}");
        assert_eq!(details["state"], "corrected", "{backend}");
        assert_eq!(details["resolved_at"], data["review"]["resolved_at"]);
        assert_eq!(details["resolved_by"], data["review"]["resolved_by"]);
        assert_eq!(data["incident"]["id"], incident.as_str());
        assert_eq!(data["incident"]["stale"], false);
        assert!(data.get("override").is_none(), "{backend}: {data}");
        let adjustment = data["incident"]["adjustments"][0]["id"].clone();
        assert_eq!(
            data["review"]["resolution"],
            json!({"adjustment": adjustment})
        );
        let still_open = app
            .all_pages(&analyst, "/api/v1/review?state=open", 50)
            .await;
        assert!(
            still_open.iter().all(|i| i["subject"] != "incident"),
            "{backend}: {still_open:?}"
        );
    }
}

/// Where an ATT&CK id stands in Enterprise 18.1, read from the raw bundle:
/// `("live" | "revoked" | "deprecated" | "unknown", replaced_by)`, the
/// replacement from the `revoked-by` relationship.
fn status_in_18_1(id: &str) -> (&'static str, Option<String>) {
    let objects = crate::helpers::enterprise_18_raw()["objects"]
        .as_array()
        .expect("objects");
    let attack_id = |o: &Value| -> Option<String> {
        o["external_references"]
            .as_array()?
            .iter()
            .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
            .as_str()
            .map(str::to_string)
    };
    let Some(found) = objects
        .iter()
        .find(|o| o["type"] == "attack-pattern" && attack_id(o).as_deref() == Some(id))
    else {
        return ("unknown", None);
    };
    if found["revoked"] == json!(true) {
        let replaced_by = objects
            .iter()
            .find(|o| {
                o["type"] == "relationship"
                    && o["relationship_type"] == "revoked-by"
                    && o["source_ref"] == found["id"]
            })
            .and_then(|r| {
                objects
                    .iter()
                    .find(|o| o["id"] == r["target_ref"])
                    .and_then(attack_id)
            });
        return ("revoked", replaced_by);
    }
    if found["x_mitre_deprecated"] == json!(true) {
        return ("deprecated", None);
    }
    ("live", None)
}

#[tokio::test]
async fn declared_techniques_the_release_does_not_take_are_shown_per_alert_and_counted() {
    let rules = sigma_techniques();
    let lines = feed();
    let base: Value = serde_json::from_str(&lines[0]).expect("first alert");
    let rule = base["finding_info"]["analytic"]["uid"].as_str().unwrap();
    // A real alert whose vendor also declares techniques: one revoked, one
    // deprecated, one unknown in 18.1.
    let declared = ["T1086", "T1064", "T1685"];
    let with_attacks = |uid: &str| {
        let mut alert = base.clone();
        alert["finding_info"]["uid"] = json!(uid);
        alert["finding_info"]["attacks"] = json!([
            {"technique": {"uid": "T1086"}, "tactic": {"uid": "TA0002"}},
            {"technique": {"uid": "T1064"}},
            {"technique": {"uid": "T1685"}}
        ]);
        alert
    };
    let expected: Vec<(String, &str, Option<String>)> = declared
        .iter()
        .map(|id| {
            let (status, replaced_by) = status_in_18_1(id);
            (id.to_string(), status, replaced_by)
        })
        .collect();
    assert_eq!(
        expected.iter().map(|e| e.1).collect::<Vec<_>>(),
        ["revoked", "deprecated", "unknown"],
        "the release's own statuses"
    );
    let replacement = expected[0]
        .2
        .clone()
        .expect("ATT&CK names T1086's replacement");
    assert_eq!(status_in_18_1(&replacement).0, "live");

    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;

        let answer = app
            .post_json("/api/v1/alerts", &engineer, with_attacks("declared-1"))
            .await;
        assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        let view = answer.json()["data"]["mapping"].clone();
        let problems = service::check_schema(&service::alert_mapping_schema(), &view);
        assert!(problems.is_empty(), "{backend}: {problems:?}");

        // Each declaration not taken as declared is listed, with what
        // became of it.
        let listed: Vec<(String, &str, Option<String>, Option<String>)> = view["declarations"]
            .as_array()
            .expect("declarations")
            .iter()
            .map(|d| {
                assert_eq!(d["field"], "finding_info.attacks");
                assert!(
                    d["message"].as_str().is_some_and(|m| m.contains("18.1")),
                    "{d}"
                );
                (
                    d["technique"].as_str().unwrap().to_string(),
                    d["status"].as_str().unwrap(),
                    d["replaced_by"].as_str().map(str::to_string),
                    d["mapped_to"].as_str().map(str::to_string),
                )
            })
            .collect();
        let wanted: Vec<(String, &str, Option<String>, Option<String>)> = expected
            .iter()
            .map(|(id, status, replaced_by)| {
                let mapped_to = (*status == "revoked").then(|| replacement.clone());
                (id.clone(), *status, replaced_by.clone(), mapped_to)
            })
            .collect();
        assert_eq!(listed, wanted, "{backend}");

        // The revoked one maps to its replacement, vendor-declared, beside
        // the Sigma rule's techniques; the others map to nothing.
        let mut canonical = rules[rule].clone();
        canonical.insert(replacement.clone());
        assert_eq!(
            techniques(&view["canonical"]["entries"]),
            canonical,
            "{backend}"
        );
        let vendor: Vec<&Value> = view["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["vendor_declared"] == true)
            .collect();
        assert_eq!(vendor.len(), 1, "{backend}: {vendor:?}");
        assert_eq!(vendor[0]["technique"], replacement.as_str());
        assert_eq!(vendor[0]["tactic"], "TA0002");
        assert_eq!(vendor[0]["evidence"][0]["value"], "T1086");
        assert!(
            vendor[0]["explanation"]
                .as_str()
                .is_some_and(|e| e.contains("T1086") && e.contains("replaced by")),
            "{}",
            vendor[0]["explanation"]
        );
        let shown = app.get("/api/v1/alerts/declared-1", &engineer).await;
        assert_eq!(shown.json()["data"]["declarations"], view["declarations"]);

        // Bulk: counted in the summary, beside the contract keys; an alert
        // with nothing to report has no `declarations` in its view.
        let mut plain = base.clone();
        plain["finding_info"]["uid"] = json!("plain-1");
        let body = format!("{}\n{}\n", with_attacks("declared-2"), plain);
        let answer = post_ndjson(&app, &engineer, "application/x-ndjson", body).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let summary = answer.json()["data"].clone();
        for key in ["ingested", "mapped", "unmapped", "rejected", "errors"] {
            assert!(summary.get(key).is_some(), "{backend}: {key} in {summary}");
        }
        assert_eq!(summary["ingested"], 2);
        assert_eq!(
            summary["declarations"],
            json!({"alerts": 1, "unknown": 1, "revoked": 1, "replaced": 1,
                   "deprecated": 1, "malformed": 0, "tactic_not_kept": 0}),
            "{backend}"
        );
        let plain_view = app.get("/api/v1/alerts/plain-1", &engineer).await.json()["data"].clone();
        assert!(
            plain_view.get("declarations").is_none(),
            "{backend}: {plain_view}"
        );
        assert_eq!(techniques(&plain_view["canonical"]["entries"]), rules[rule]);
    }
}

#[tokio::test]
async fn a_list_cursor_this_api_did_not_issue_is_refused() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;
        let body: String = feed().iter().take(3).map(|l| format!("{l}\n")).collect();
        let answer = post_ndjson(&app, &engineer, "application/x-ndjson", body).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());

        // The API's cursors are base64url of the use case's own: a cursor
        // that decodes, but to no alert id, is as bad as one that does not.
        let encoded = |inner: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(inner)
        };
        for list in [
            "/api/v1/alerts?",
            "/api/v1/review?",
            "/api/v1/matrix/drilldown?tactic=TA0002&technique=T1059&",
        ] {
            for cursor in [
                "%%%".to_string(),
                encoded("not-an-alert-id"),
                encoded("' OR 1=1 --"),
            ] {
                let path = format!("{list}cursor={}", crate::helpers::encode_query(&cursor));
                let answer = app.get(&path, &engineer).await;
                assert_eq!(answer.status, 400, "{backend}: {path}: {}", answer.text());
                let error = error_of(&answer);
                assert_eq!(error["code"], "invalid_input", "{backend}: {path}");
                assert_eq!(error["details"]["field"], "cursor", "{backend}: {path}");
            }
        }

        // A cursor the API issued still pages, and the pages add up.
        let first = app.get("/api/v1/alerts?limit=2", &engineer).await.json();
        let next = first["meta"]["next_cursor"]
            .as_str()
            .expect("a second page");
        let second = app
            .get(
                &format!(
                    "/api/v1/alerts?limit=2&cursor={}",
                    crate::helpers::encode_query(next)
                ),
                &engineer,
            )
            .await;
        assert_eq!(second.status, 200, "{backend}: {}", second.text());
        let count = first["data"].as_array().unwrap().len()
            + second.json()["data"].as_array().unwrap().len();
        assert_eq!(count, 3, "{backend}");
    }
}

#[tokio::test]
async fn one_alert_is_stored_exactly_as_it_was_sent() {
    // Keys out of order, a number no f64 holds, a float spelled with a
    // trailing zero, escapes and line breaks: a re-serialized document
    // would differ in each.
    let sent = "{\n  \"time\": 1764000000000,\n  \"class_uid\": 2004,\n  \
        \"finding_info\": {\"uid\": \"exact-1\", \"title\": \"caf\\u00e9 \\\"quoted\\\"\",\n    \
        \"analytic\": {\"uid\": \"no-such-rule\"}},\n  \
        \"count\": 123456789012345678901234567890,\n  \"score\": 1.50,\n  \
        \"severity_id\": 3\n}";
    assert!(serde_json::from_str::<Value>(sent).is_ok());

    for backend in backends() {
        let app = TestApp::new(backend).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;

        let answer = app
            .send(
                Method::POST,
                "/api/v1/alerts",
                Some(&engineer),
                Some(("application/json", sent.as_bytes().to_vec())),
            )
            .await;
        assert_eq!(answer.status, 201, "{backend}: {}", answer.text());
        assert_eq!(
            answer.json()["data"]["mapping"]["alert"]["source_uid"],
            "exact-1"
        );

        let org = app
            .app
            .org_by_name(&service::Actor::operator("op"), "acme")
            .await
            .unwrap();
        let stored = app
            .app
            .store()
            .alert(&store::OrgScope::new(org.id), "exact-1")
            .await
            .unwrap()
            .expect("the alert is stored")
            .raw;
        assert_eq!(stored, sent, "{backend}");

        // Not an object: refused before anything is stored.
        let answer = app
            .send(
                Method::POST,
                "/api/v1/alerts",
                Some(&engineer),
                Some(("application/json", b" [1, 2] ".to_vec())),
            )
            .await;
        assert_eq!(answer.status, 400, "{backend}: {}", answer.text());
        assert_eq!(
            error_of(&answer)["details"],
            json!({"field": "body", "reason": "not_an_object"})
        );

        // Refused before it is JSON: each with its reason code.
        let bodies: [(&[u8], &str); 4] = [
            (b"", "invalid_json"),
            (b"{\"class_uid\": 2004, ", "invalid_json"),
            (b"\xEF\xBB\xBF{\"a\": 1}", "invalid_json"),
            (b"{\"a\": \"\xFF\"}", "invalid_json"),
        ];
        for (body, reason) in bodies {
            let answer = app
                .send(
                    Method::POST,
                    "/api/v1/alerts",
                    Some(&engineer),
                    Some(("application/json", body.to_vec())),
                )
                .await;
            assert_eq!(answer.status, 400, "{backend}: {}", answer.text());
            assert_eq!(
                error_of(&answer)["details"],
                json!({"field": "body", "reason": reason}),
                "{backend}: {:?}",
                String::from_utf8_lossy(body)
            );
        }
        // JSON of the wrong shape for the route.
        let lead = app.token("acme", Role::Lead).await;
        let answer = app
            .post_json(
                "/api/v1/overrides/no-such-override/decide",
                &lead,
                json!({"decision": 5}),
            )
            .await;
        assert_eq!(answer.status, 400, "{backend}: {}", answer.text());
        assert_eq!(
            error_of(&answer)["details"],
            json!({"field": "body", "reason": "wrong_shape"})
        );
    }
}

/// A re-map that outlasts its wait answers 202 and runs on beside the
/// request; `GET /api/v1/remap` shows it until it has finished with every
/// alert re-evaluated and none left stale. A second re-map while one runs
/// is refused with 409, naming the run.
#[tokio::test]
async fn a_remap_answers_before_it_ends_and_shows_its_progress() {
    let lines = feed();
    for backend in backends() {
        let config = server::ServerConfig {
            remap_wait: std::time::Duration::ZERO,
            ..server::ServerConfig::default()
        };
        let app = TestApp::with_config(backend, config).await;
        app.with_enterprise_and_sigma("acme").await;
        let engineer = app.token("acme", Role::Engineer).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let none = app.get("/api/v1/remap", &analyst).await;
        assert_eq!(none.status, 404, "{backend}: no run yet: {}", none.text());

        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let answer = post_ndjson(&app, &engineer, "application/x-ndjson", body).await;
        assert_eq!(answer.status, 200, "{backend}: {}", answer.text());
        let ingested = answer.json()["data"]["ingested"].as_u64().unwrap();
        assert_eq!(ingested, lines.len() as u64, "{backend}");

        assert_eq!(app.post("/api/v1/remap", &analyst).await.status, 403);
        let started = app.post("/api/v1/remap", &engineer).await;
        assert_eq!(started.status, 202, "{backend}: {}", started.text());
        let location = started
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok());
        assert_eq!(location, Some("/api/v1/remap"), "{backend}");
        let run = started.json()["data"].clone();
        assert_eq!(run["state"], "running", "{backend}: {run}");
        // The run counts the org's alerts itself, so the answer may come
        // before the count.
        assert!(
            run["total"] == 0 || run["total"] == ingested,
            "{backend}: {run}"
        );
        let id = run["id"].as_str().unwrap().to_string();

        let again = app.post("/api/v1/remap", &engineer).await;
        match again.status.as_u16() {
            409 => assert_eq!(error_of(&again)["details"]["run"], id.as_str(), "{backend}"),
            // The first had finished already: this is a run of its own.
            202 => assert_ne!(again.json()["data"]["id"], id.as_str(), "{backend}"),
            other => panic!("{backend}: {other}: {}", again.text()),
        }

        let mut seen = Value::Null;
        for _ in 0..600 {
            seen = app.get("/api/v1/remap", &analyst).await.json()["data"].clone();
            if seen["state"] != "running" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(seen["state"], "finished", "{backend}: {seen}");
        assert_eq!(seen["alerts"], ingested, "{backend}: {seen}");
        assert_eq!(seen["total"], ingested, "{backend}: {seen}");
        assert!(seen["finished_at"].is_string(), "{backend}: {seen}");
        assert_eq!(seen["error"], Value::Null, "{backend}: {seen}");

        let alerts = app.all_pages(&analyst, "/api/v1/alerts", 100).await;
        assert_eq!(alerts.len() as u64, ingested, "{backend}");
        let stale: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["alert"]["stale"] != false)
            .collect();
        assert!(stale.is_empty(), "{backend}: still stale: {stale:?}");
    }
}
