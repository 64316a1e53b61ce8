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

        for route in route_table() {
            let name = format!("{backend}: {} {}", route.method.as_str(), route.path);
            match route.tenancy {
                // No token and no tenant data: nothing to leak.
                Tenancy::Public => assert!(!route.auth, "{name}"),
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
                    "getMatrix" | "getMatrixDrilldown" | "exportMatrix" | "importMatrixLayer" => {
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
