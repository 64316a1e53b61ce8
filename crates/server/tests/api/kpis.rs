//! KPIs (issue 7) over real data: the shared alerts in one org, a few in
//! another, overrides and review decisions made by the test. Every KPI is
//! recomputed here from what the test did and from other routes' answers
//! (alert mappings, the review queue, datasets, the matrix), never from the
//! KPI code's own reads.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use service::{Actor, AlertMappingView, OverrideInput, ReviewDecision, Role};

use crate::exports::{activate_enterprise, shared_alerts, with_alerts};
use crate::helpers::{TestApp, backends, error_of};

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn secs(from: &str, to: &str) -> f64 {
    (time(to) - time(from)).num_milliseconds().max(0) as f64 / 1000.0
}

/// The KPI named `name` of a list.
fn kpi<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("kpis")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no KPI {name} in {list}"))
}

/// Checks value, numerator and denominator of a ratio KPI.
fn assert_ratio(list: &Value, name: &str, numerator: f64, denominator: f64, label: &str) {
    let k = kpi(list, name);
    let close = |a: &Value, b: f64| a.as_f64().is_some_and(|a| (a - b).abs() < 1e-6);
    assert!(
        close(&k["numerator"], numerator),
        "{label} {name}: {k} vs {numerator}"
    );
    assert!(
        close(&k["denominator"], denominator),
        "{label} {name}: {k} vs {denominator}"
    );
    if denominator > 0.0 {
        assert!(
            close(&k["value"], numerator / denominator),
            "{label} {name}: {k}"
        );
    } else {
        assert!(k["value"].is_null(), "{label} {name}: {k}");
    }
    assert!(!k["definition"].as_str().unwrap_or("").is_empty());
}

fn versioned(producer: &str) -> bool {
    if let Some(rule) = producer.strip_prefix("rule:") {
        let (id, version) = rule.rsplit_once('@').unwrap_or(("?", "0"));
        return id != "?" && version.parse::<i64>().unwrap_or(0) >= 1;
    }
    if let Some(model) = producer.strip_prefix("ai:") {
        return !model.is_empty() && model != "?";
    }
    producer.starts_with("manual:")
}

#[tokio::test]
async fn kpis_match_what_the_test_did_and_stay_in_their_org() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let service = &app.app;
        let dataset = activate_enterprise(&app).await;
        let alerts = shared_alerts();
        assert_eq!(with_alerts(&app, "acme", &alerts).await, 111);
        assert_eq!(with_alerts(&app, "globex", &alerts[..5]).await, 5);
        let admin = app.token("acme", Role::Admin).await;
        let viewer = app.token("acme", Role::Viewer).await;
        let analyst_token = app.token("acme", Role::Analyst).await;
        let globex = app.token("globex", Role::Admin).await;
        let steward = app.token("platform", Role::Steward).await;
        let org = service
            .org_by_name(&Actor::operator("op"), "acme")
            .await
            .unwrap();
        let lead = Actor {
            name: "lee".into(),
            org: Some(org.id.clone()),
            role: Role::Lead,
        };

        // A second, rejected load: one of two loads reached active.
        let tiny = app.upload_tiny(&steward, "0.1", false).await;
        let rejected = app
            .post_json(
                &format!("/api/v1/datasets/{tiny}/reject"),
                &steward,
                json!({"reason": "test"}),
            )
            .await;
        assert_eq!(rejected.status, 200, "{}", rejected.text());

        // A low-confidence rule queues the alerts it maps for review.
        let engineer = Actor {
            name: "eve".into(),
            org: Some(org.id.clone()),
            role: Role::Engineer,
        };
        service
            .save_rule(
                &engineer,
                "acme",
                "{id: process-title, version: 1, title: Process in the title, author: eve, \
                 rationale: the detection names a process, confidence: 0.3, \
                 match: {field: alert.title, contains: process}, techniques: [T1057]}",
                false,
            )
            .await
            .unwrap();

        // Review work: accept one, reject one, correct two.
        let queue = service
            .review_list(&lead, "acme", Some("open"), 10_000)
            .await
            .unwrap();
        let mut by_alert: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in &queue {
            let Some(alert) = &item.alert_id else {
                continue;
            };
            by_alert
                .entry(alert.clone())
                .or_default()
                .push(item.id.clone());
        }
        let reviewed: Vec<String> = by_alert.keys().take(4).cloned().collect();
        assert_eq!(
            reviewed.len(),
            4,
            "{backend}: the feed queues reviews: {queue:?}"
        );
        let item_of = |alert: &str| by_alert[alert][0].clone();
        service
            .review_decide(
                &lead,
                "acme",
                &item_of(&reviewed[0]),
                ReviewDecision::Accept,
                None,
            )
            .await
            .unwrap();
        service
            .review_decide(
                &lead,
                "acme",
                &item_of(&reviewed[1]),
                ReviewDecision::Reject,
                None,
            )
            .await
            .unwrap();
        let add = || OverrideInput {
            action: "add".into(),
            technique: "T1105".into(),
            tactic: None,
            replaces: None,
            replaces_tactic: None,
            reason: Some("missing_technique".into()),
            notes: None,
            confidence: None,
        };
        for alert in &reviewed[2..4] {
            service
                .review_correct(&lead, "acme", &item_of(alert), add())
                .await
                .unwrap();
        }
        // An incident's item that the product resolves itself: queued by a
        // severity shift, resolved by `system:status` when the incident is
        // resolved. No analyst validated it.
        let incident = service
            .create_incident(
                &lead,
                "acme",
                service::IncidentInput {
                    title: "kpi".into(),
                    ..service::IncidentInput::default()
                },
            )
            .await
            .unwrap();
        service
            .set_incident_severity(&lead, "acme", &incident.id, "critical")
            .await
            .unwrap();
        service
            .set_incident_status(&lead, "acme", &incident.id, "resolved")
            .await
            .unwrap();

        // Two direct overrides on alerts outside the review work.
        let uids: Vec<String> = alerts
            .iter()
            .filter_map(|a| a["finding_info"]["uid"].as_str().map(str::to_string))
            .collect();
        let mut overridden = 0;
        for uid in &uids {
            if overridden == 2 {
                break;
            }
            let view = service.alert_mapping(&lead, "acme", uid).await.unwrap();
            if reviewed.contains(&view.alert.id) {
                continue;
            }
            service
                .create_override(&lead, "acme", uid, add())
                .await
                .unwrap();
            overridden += 1;
        }

        // Three refused attempts by the viewer.
        for _ in 0..3 {
            let refused = app
                .post_json("/api/v1/exports", &viewer, json!({"kind": "navigator"}))
                .await;
            assert_eq!(refused.status, 403);
        }
        // Matrix requests for the latency KPI.
        for _ in 0..3 {
            assert_eq!(app.get("/api/v1/matrix", &analyst_token).await.status, 200);
        }

        // Independent readings: every alert's mapping, the review queue,
        // the datasets.
        let mut views: Vec<AlertMappingView> = Vec::new();
        for uid in uids.iter().collect::<BTreeSet<_>>() {
            views.push(service.alert_mapping(&lead, "acme", uid).await.unwrap());
        }
        assert_eq!(views.len(), 111);
        let items = service
            .review_list(&lead, "acme", None, 10_000)
            .await
            .unwrap();
        let active = app
            .get(&format!("/api/v1/datasets/{dataset}"), &admin)
            .await
            .json()["data"]
            .clone();

        let answer = app.get("/api/v1/kpis", &admin).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let report = answer.json()["data"].clone();
        let kpis = &report["kpis"];
        assert_eq!(kpis.as_array().unwrap().len(), 16, "{backend}");
        let label = backend;

        let n = views.len() as f64;
        let covered = views
            .iter()
            .filter(|v| !v.canonical.entries.is_empty())
            .count();
        assert_ratio(kpis, "coverage", covered as f64, n, label);
        let with_override = views
            .iter()
            .filter(|v| v.overrides.iter().any(|o| o.status == "approved"))
            .count();
        assert_eq!(
            with_override, 4,
            "{backend}: two corrections and two overrides"
        );
        assert_ratio(kpis, "override_rate", 4.0, n, label);
        let stale = views.iter().filter(|v| v.alert.stale).count();
        assert_ratio(kpis, "stale_rate", stale as f64, n, label);
        let map_times: Vec<f64> = views
            .iter()
            .filter_map(|v| {
                let first = v
                    .history
                    .iter()
                    .filter(|h| h.entries > 0)
                    .map(|h| time(&h.computed_at))
                    .min()?;
                Some(
                    (first - time(&v.alert.received_at))
                        .num_milliseconds()
                        .max(0) as f64
                        / 1000.0,
                )
            })
            .collect();
        assert_ratio(
            kpis,
            "mean_time_to_map",
            map_times.iter().sum(),
            map_times.len() as f64,
            label,
        );

        let entries: Vec<_> = views
            .iter()
            .flat_map(|v| v.canonical.entries.iter().map(move |e| (v, e)))
            .collect();
        let low = entries.iter().filter(|(_, e)| e.band == "low").count();
        assert_ratio(
            kpis,
            "low_confidence_ratio",
            low as f64,
            entries.len() as f64,
            label,
        );
        let full = entries
            .iter()
            .filter(|(v, e)| {
                ["manual", "rule", "ai"].contains(&e.source.as_str())
                    && (0.0..=1.0).contains(&e.confidence)
                    && v.canonical.dataset_id.is_some()
                    && !v.canonical.release.is_empty()
                    && (e.lineage.producers.iter().any(|p| versioned(p))
                        || !e.lineage.overrides.is_empty())
            })
            .count();
        assert_ratio(
            kpis,
            "full_provenance_share",
            full as f64,
            entries.len() as f64,
            label,
        );

        // Validations are people's: the items the product resolved itself
        // (`system:` actors) are left out, and counted apart.
        let by_system = |i: &&service::ReviewItem| {
            i.resolved_by
                .as_deref()
                .is_some_and(|by| by.starts_with("system:"))
        };
        let system = items
            .iter()
            .filter(|i| i.state != "open")
            .filter(by_system)
            .count();
        assert!(
            items
                .iter()
                .any(|i| i.resolved_by.as_deref() == Some("system:status")
                    && i.incident_id.as_deref() == Some(incident.id.as_str())),
            "{backend}: the incident's item was resolved by the product"
        );
        let resolved: Vec<_> = items
            .iter()
            .filter(|i| i.state != "open")
            .filter(|i| !by_system(i))
            .collect();
        let corrected: Vec<_> = resolved.iter().filter(|i| i.state == "corrected").collect();
        assert_eq!(corrected.len(), 2, "{backend}");
        assert_ratio(kpis, "correction_rate", 2.0, resolved.len() as f64, label);
        let validate: Vec<f64> = resolved
            .iter()
            .map(|i| secs(&i.opened_at, i.resolved_at.as_deref().unwrap()))
            .collect();
        assert_ratio(
            kpis,
            "mean_time_to_validate",
            validate.iter().sum(),
            resolved.len() as f64,
            label,
        );
        assert_eq!(
            kpi(kpis, "mean_time_to_validate")["detail"],
            json!({"system_resolved": system}),
            "{backend}"
        );
        let interactions: i64 = corrected.iter().map(|i| i.interactions).sum();
        assert_ratio(
            kpis,
            "interactions_per_correction",
            interactions as f64,
            2.0,
            label,
        );
        let open = items.iter().filter(|i| i.state == "open").count();
        // The queue read before the review work plus the incident's item.
        assert_eq!(open, queue.len() + 1 - resolved.len() - system, "{backend}");
        assert_eq!(kpi(kpis, "review_queue_depth")["value"], json!(open as f64));

        assert_eq!(
            kpi(kpis, "privileged_denials")["value"],
            json!(3.0),
            "{backend}"
        );
        let lag = secs(
            active["loaded_at"].as_str().unwrap(),
            active["activated_at"].as_str().unwrap(),
        );
        assert_ratio(kpis, "taxonomy_adoption_lag", lag, 1.0, label);
        assert_ratio(kpis, "taxonomy_update_success_rate", 1.0, 2.0, label);
        let p95 = kpi(kpis, "matrix_query_p95");
        assert_eq!(p95["denominator"], json!(3.0), "{p95}");
        assert!(server::metrics::LATENCY_BUCKETS.contains(&p95["value"].as_f64().unwrap()));
        // No AI at ingestion: no AI candidate, no gap.
        assert_ratio(kpis, "ai_cap_gap", 0.0, 0.0, label);

        // Anomalies over ten October days: each day's flagged cells as the
        // matrix of that day shows them.
        let window = app
            .get("/api/v1/kpis?from=2025-10-21&to=2025-10-31", &admin)
            .await
            .json()["data"]
            .clone();
        let mut flagged = 0usize;
        for day in 22..=31 {
            let to = format!("2025-10-{day:02}");
            let matrix = app
                .get(&format!("/api/v1/matrix?to={to}"), &admin)
                .await
                .json();
            flagged += matrix["data"]["cells"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| !c["anomaly"].is_null())
                .count();
        }
        assert_ratio(
            &window["kpis"],
            "anomaly_count",
            flagged as f64,
            10.0,
            label,
        );
        let in_window = alerts
            .iter()
            .filter(|a| {
                let t = a["time_dt"].as_str().unwrap_or("");
                ("2025-10-21".."2025-10-31").contains(&t)
            })
            .count();
        assert_eq!(
            kpi(&window["kpis"], "coverage")["denominator"],
            json!(in_window as f64)
        );

        // A breakdown by severity partitions the alerts.
        let by = app.get("/api/v1/kpis?by=severity", &admin).await.json()["data"].clone();
        let segments = by["segments"].as_array().unwrap();
        let total: f64 = segments
            .iter()
            .map(|s| kpi(&s["kpis"], "coverage")["denominator"].as_f64().unwrap())
            .sum();
        assert_eq!(total, n, "{backend}");
        assert!(segments.iter().all(|s| {
            s["kpis"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["name"] != "privileged_denials")
        }));

        // The other org counts only its own five alerts and no denial.
        let theirs = app.get("/api/v1/kpis", &globex).await;
        assert_eq!(theirs.status, 200, "{}", theirs.text());
        let theirs = theirs.json()["data"].clone();
        assert_eq!(theirs["org"], "globex");
        assert_eq!(kpi(&theirs["kpis"], "coverage")["denominator"], json!(5.0));
        assert_eq!(
            kpi(&theirs["kpis"], "override_rate")["numerator"],
            json!(0.0)
        );
        assert_eq!(
            kpi(&theirs["kpis"], "privileged_denials")["value"],
            json!(0.0)
        );
        assert!(!theirs.to_string().contains("acme"));
        // An org admin asking for another org gets "not found".
        let probe = app.get("/api/v1/kpis?org=acme", &globex).await;
        assert_eq!(probe.status, 404, "{}", probe.text());
        // A platform role may ask per org.
        let platform = app.token("platform", Role::PlatformAdmin).await;
        let per_org = app.get("/api/v1/kpis?org=globex", &platform).await.json()["data"].clone();
        assert_eq!(kpi(&per_org["kpis"], "coverage")["denominator"], json!(5.0));
        // Viewers do not read KPIs.
        let refused = app.get("/api/v1/kpis", &viewer).await;
        assert_eq!(refused.status, 403);
        assert_eq!(error_of(&refused)["details"]["action"], "read_audit");
    }
}
