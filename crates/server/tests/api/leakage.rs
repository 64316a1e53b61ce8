//! Tenant leakage, generated from the route table: every route is visited
//! with tokens of two orgs. Shared reference data must answer both orgs
//! byte for byte alike; org-owned data must never show one org's rows to
//! the other. A route whose tenancy has no case here fails the suite.

use std::collections::BTreeSet;

use serde_json::Value;
use server::{HttpMethod, Location, RouteSpec, Tenancy, route_table};
use service::Role;

use crate::helpers::{Answer, TestApp, backends, http_method};
use crate::roles::sample_body;

/// Sample values for path and query parameters, by name. A new parameter
/// without a sample fails the suite, so it must be added here.
fn sample_value(route: &RouteSpec, name: &str, dataset: &str) -> String {
    match name {
        "domain" => "enterprise-attack".to_string(),
        "id" if route.path.contains("/techniques/") => "T9001".to_string(),
        "id" | "from" | "to" => dataset.to_string(),
        other => panic!(
            "no leakage sample for parameter `{other}` of {}",
            route.path
        ),
    }
}

fn concrete(route: &RouteSpec, dataset: &str) -> String {
    let mut path = route.path.to_string();
    let mut query = Vec::new();
    for param in &route.params {
        match param.location {
            Location::Path => {
                path = path.replace(
                    &format!("{{{}}}", param.name),
                    &sample_value(route, param.name, dataset),
                );
            }
            Location::Query if param.required => {
                query.push(format!(
                    "{}={}",
                    param.name,
                    sample_value(route, param.name, dataset)
                ));
            }
            Location::Query => {}
        }
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

async fn call(app: &TestApp, route: &RouteSpec, token: &str, dataset: &str) -> Answer {
    app.send(
        http_method(route.method),
        &concrete(route, dataset),
        Some(token),
        sample_body(route.body),
    )
    .await
}

/// Every org id in an audit listing.
fn orgs_in(answer: &Answer) -> BTreeSet<String> {
    answer.json()["data"]
        .as_array()
        .expect("audit rows")
        .iter()
        .filter_map(|e| e["org_id"].as_str().map(str::to_string))
        .collect()
}

/// The ids of a listing's items (`alert.id` for alerts, `id` otherwise).
fn ids_in(answer: &Answer) -> BTreeSet<String> {
    answer.json()["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["alert"]["id"].as_str().or(i["id"].as_str()))
        .map(str::to_string)
        .collect()
}

/// Ids of an alert, an override and a review item of `token`'s org,
/// made through the API: what another org probes.
struct Owned {
    alert: String,
    r#override: String,
    review: String,
}

async fn owned_by(app: &TestApp, token: &str) -> Owned {
    let alert = serde_json::json!({
        "schema": "nexus-attack.alert/1", "uid": "leak-probe-1", "title": "vendor mapped",
        "severity": "low", "techniques": [{"id": "T9001"}]
    });
    let created = app.post_json("/api/v1/alerts", token, alert).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let alert = created.json()["data"]["mapping"]["alert"]["id"]
        .as_str()
        .expect("alert id")
        .to_string();
    // A low-confidence manual mapping queues the alert for review.
    let body = serde_json::json!({
        "action": "add", "technique": "T9002", "reason": "missing_technique", "confidence": 0.2
    });
    let overridden = app
        .post_json(&format!("/api/v1/alerts/{alert}/overrides"), token, body)
        .await;
    assert_eq!(overridden.status, 201, "{}", overridden.text());
    let r#override = overridden.json()["data"]["override"]["id"]
        .as_str()
        .expect("override id")
        .to_string();
    let queue = app.get("/api/v1/review", token).await;
    let review = queue.json()["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a review item: {}", queue.text()))
        .to_string();
    Owned {
        alert,
        r#override,
        review,
    }
}

fn seqs_in(answer: &Answer) -> BTreeSet<i64> {
    answer.json()["data"]
        .as_array()
        .expect("audit rows")
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .collect()
}

#[tokio::test]
async fn no_route_shows_one_org_what_belongs_to_another() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let steward_a = app.token("platform", Role::Steward).await;
        let steward_b = app.token("platform", Role::Steward).await;
        let acme = app.token("acme", Role::Admin).await;
        let globex = app.token("globex", Role::Admin).await;

        let dataset = app.upload_tiny(&steward_a, "1.0", false).await;
        for (step, token) in [
            ("validate", &steward_a),
            ("approve", &steward_b),
            ("activate", &steward_b),
        ] {
            let answer = app
                .post(&format!("/api/v1/datasets/{dataset}/{step}"), token)
                .await;
            assert_eq!(answer.status, 200, "{step}: {}", answer.text());
        }

        // Each org leaves audit rows of its own (denied lifecycle attempts).
        for token in [&acme, &globex] {
            let denied = app
                .post(&format!("/api/v1/datasets/{dataset}/approve"), token)
                .await;
            assert_eq!(denied.status, 403);
        }

        let owned = owned_by(&app, &acme).await;

        for route in route_table() {
            let name = format!("{backend}: {} {}", route.method.as_str(), route.path);
            match route.tenancy {
                // No token and no tenant data: nothing to leak.
                Tenancy::Public => assert!(!route.auth, "{name}"),
                // No token; the signed URL binds one org: a URL acme signed
                // downloads acme's file only, and re-aimed at globex it is
                // refused.
                Tenancy::Signed => {
                    assert!(!route.auth, "{name}");
                    assert_eq!(route.operation_id, "downloadExport", "{name}: add a case");
                    let signed = app
                        .post_json(
                            "/api/v1/exports",
                            &acme,
                            serde_json::json!({"kind": "matrix_csv"}),
                        )
                        .await;
                    assert_eq!(signed.status, 200, "{name}: {}", signed.text());
                    let url = signed.json()["data"]["url"]
                        .as_str()
                        .expect("url")
                        .to_string();
                    let own = app.send(http_method(route.method), &url, None, None).await;
                    assert_eq!(own.status, 200, "{name}: {}", own.text());
                    assert!(!own.text().contains("globex"), "{name}");
                    let operator = service::Actor::operator("op");
                    let org_id = |name: &'static str| {
                        let app = &app.app;
                        let operator = operator.clone();
                        async move { app.org_by_name(&operator, name).await.expect("org").id }
                    };
                    let (acme_id, globex_id) = (org_id("acme").await, org_id("globex").await);
                    let aimed = url.replace(&format!("org={acme_id}"), &format!("org={globex_id}"));
                    assert_ne!(aimed, url, "{name}: the URL names its org");
                    let refused = app
                        .send(http_method(route.method), &aimed, None, None)
                        .await;
                    assert_eq!(refused.status, 403, "{name}: {}", refused.text());
                    assert_eq!(
                        refused.json()["error"]["code"],
                        "export_url_invalid",
                        "{name}"
                    );
                }
                // Shared reference data: both orgs get the same bytes.
                Tenancy::Shared => {
                    let a = call(&app, &route, &acme, &dataset).await;
                    let b = call(&app, &route, &globex, &dataset).await;
                    assert_eq!(a.status, b.status, "{name}");
                    assert_eq!(a.text(), b.text(), "{name}");
                    if route.method == HttpMethod::Get {
                        assert_eq!(a.status, 200, "{name}: {}", a.text());
                    }
                }
                Tenancy::Org => match route.operation_id {
                    "listAudit" => {
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200), "{name}");
                        let (orgs_a, orgs_b) = (orgs_in(&a), orgs_in(&b));
                        assert_eq!(
                            orgs_a.len(),
                            1,
                            "{name}: acme sees its own rows: {orgs_a:?}"
                        );
                        assert_eq!(orgs_b.len(), 1, "{name}: globex sees its own rows");
                        assert!(orgs_a.is_disjoint(&orgs_b), "{name}");
                        assert!(seqs_in(&a).is_disjoint(&seqs_in(&b)), "{name}");
                    }
                    // The matrix routes read the caller's org only: each
                    // org gets the same kind of answer, naming itself and
                    // never the other.
                    "getMatrix" | "getMatrixDrilldown" | "exportMatrix" | "importMatrixLayer"
                    | "signExport" | "getKpis" => {
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        assert_eq!(a.status, b.status, "{name}: {}", a.text());
                        assert!(!a.text().contains("globex"), "{name}: {}", a.text());
                        assert!(!b.text().contains("acme"), "{name}: {}", b.text());
                    }
                    // Incident routes: the sample id and alert uid name
                    // nothing in either org, so both get the same answer,
                    // and a created incident names only its own org's data.
                    "createIncident"
                    | "getIncident"
                    | "attachIncidentAlerts"
                    | "detachIncidentAlerts"
                    | "mergeIncidents"
                    | "splitIncident"
                    | "adjustIncident"
                    | "setIncidentStatus"
                    | "setIncidentSeverity"
                    | "addIncidentEvidence" => {
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        assert_eq!(a.status, b.status, "{name}: {}", a.text());
                        assert!(!a.text().contains("globex"), "{name}: {}", a.text());
                        assert!(!b.text().contains("acme"), "{name}: {}", b.text());
                    }
                    // Alert and review routes without an id: each org acts
                    // on and lists its own rows only.
                    "ingestAlert" | "ingestAlertsBulk" | "listAlerts" | "remapAlerts"
                    | "listReview" => {
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        assert_eq!(a.status, b.status, "{name}: {}", a.text());
                        assert!(!a.text().contains("globex"), "{name}: {}", a.text());
                        assert!(!b.text().contains("acme"), "{name}: {}", b.text());
                        if route.method == HttpMethod::Get {
                            let (ids_a, ids_b) = (ids_in(&a), ids_in(&b));
                            assert!(ids_a.is_disjoint(&ids_b), "{name}");
                            assert!(!ids_b.contains(&owned.alert), "{name}");
                            assert!(!ids_b.contains(&owned.review), "{name}");
                        }
                    }
                    // The latest re-map run: each org sees its own only.
                    "getRemapRun" => {
                        for token in [&acme, &globex] {
                            let started = app.post("/api/v1/remap", token).await;
                            assert!(
                                matches!(started.status.as_u16(), 200 | 202 | 409),
                                "{name}: {}",
                                started.text()
                            );
                        }
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        let statuses = (a.status.as_u16(), b.status.as_u16());
                        assert_eq!(statuses, (200, 200), "{name}: {}", a.text());
                        assert!(!a.text().contains("globex"), "{name}: {}", a.text());
                        assert!(!b.text().contains("acme"), "{name}: {}", b.text());
                        assert_ne!(a.json()["data"]["id"], b.json()["data"]["id"], "{name}");
                    }
                    // Another org's alert, override or review item answers
                    // exactly as a missing one, byte for byte.
                    "getAlert" | "createOverride" | "decideOverride" | "decideReview"
                    | "correctReview" => {
                        let id = match route.operation_id {
                            "decideOverride" => &owned.r#override,
                            "decideReview" | "correctReview" => &owned.review,
                            _ => &owned.alert,
                        };
                        let mut answers = Vec::new();
                        for probe in [id.as_str(), "0190f0a0-0000-7000-8000-00000000abcd"] {
                            let path = route.path.replace("{id}", probe);
                            let body = sample_body(route.body);
                            let method = http_method(route.method);
                            answers.push(app.send(method, &path, Some(&globex), body).await);
                        }
                        let (foreign, missing) = (&answers[0], &answers[1]);
                        assert_eq!(foreign.status, 404, "{name}: {}", foreign.text());
                        assert_eq!(foreign.text(), missing.text(), "{name}");
                    }
                    // Notifications: each admin lists its own org's only
                    // (the watch suite raises real ones in one org and
                    // checks the other sees none); acknowledging an id that
                    // is not the caller's answers as a missing one.
                    "listNotifications" | "acknowledgeNotification" => {
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        assert_eq!(a.status, b.status, "{name}: {}", a.text());
                        assert!(!a.text().contains("globex"), "{name}: {}", a.text());
                        assert!(!b.text().contains("acme"), "{name}: {}", b.text());
                        if route.method == HttpMethod::Get {
                            assert_eq!(a.status, 200, "{name}: {}", a.text());
                            let (orgs_a, orgs_b) = (orgs_in(&a), orgs_in(&b));
                            assert!(orgs_a.len() <= 1 && orgs_b.len() <= 1, "{name}");
                            assert!(orgs_a.is_disjoint(&orgs_b), "{name}");
                        } else {
                            assert_eq!(a.status, 404, "{name}: {}", a.text());
                            assert_eq!(a.text(), b.text(), "{name}");
                        }
                    }
                    // Rules, rule packs, the incident list and incident
                    // suggestions: each org lists and acts on its own rows;
                    // the sample ids name nothing in either org.
                    "listIncidents"
                    | "listRules"
                    | "saveRule"
                    | "simulateRule"
                    | "importSigmaPack"
                    | "getRulePackImport"
                    | "rollbackRule"
                    | "suggestIncidentTechniques" => {
                        let a = call(&app, &route, &acme, &dataset).await;
                        let b = call(&app, &route, &globex, &dataset).await;
                        assert_eq!(a.status, b.status, "{name}: {}", a.text());
                        assert!(!a.text().contains("globex"), "{name}: {}", a.text());
                        assert!(!b.text().contains("acme"), "{name}: {}", b.text());
                        if route.paginated {
                            assert_eq!(a.status, 200, "{name}: {}", a.text());
                            assert!(ids_in(&a).is_disjoint(&ids_in(&b)), "{name}");
                        }
                    }
                    // Suggestions for another org's alert answer exactly as
                    // for a missing one; the owner gets them.
                    "suggestAlertTechniques" => {
                        let path = |id: &str| route.path.replace("{id}", id);
                        let own = app.get(&path(&owned.alert), &acme).await;
                        assert_eq!(own.status, 200, "{name}: {}", own.text());
                        let foreign = app.get(&path(&owned.alert), &globex).await;
                        let missing = app
                            .get(&path("0190f0a0-0000-7000-8000-00000000abcd"), &globex)
                            .await;
                        assert_eq!(foreign.status, 404, "{name}: {}", foreign.text());
                        assert_eq!(foreign.text(), missing.text(), "{name}");
                    }
                    other => panic!(
                        "{name}: org-owned route `{other}` has no leakage case; add one here"
                    ),
                },
            }
        }

        // A lifecycle body sent by an org admin changed nothing.
        let after: Value = app
            .get(&format!("/api/v1/datasets/{dataset}"), &acme)
            .await
            .json();
        assert_eq!(after["data"]["state"], "active", "{backend}");
    }
}
