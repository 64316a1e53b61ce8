//! Operations endpoints and the OpenAPI document.

use std::collections::BTreeSet;

use axum::http::Method;
use serde_json::Value;
use server::{Location, Tenancy, route_table};
use service::Role;

use crate::helpers::{TestApp, backends, concrete_path, error_of, http_method};

#[tokio::test]
async fn liveness_and_readiness_on_an_empty_database() {
    let app = TestApp::new("sqlite").await;

    let health = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.text().trim(), "ok");

    let ready = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 503);
    let error = error_of(&ready);
    assert_eq!(error["code"], "not_ready");
    assert_eq!(error["details"]["database"], true);
    assert_eq!(error["details"]["missing_domains"][0], "enterprise-attack");
}

/// Regression: with the database gone (a pool timeout, a broken
/// connection; here the pool closed under the server) every API route
/// answered 500 `internal`. It answers 503 `database_unavailable` in the
/// error envelope with a Retry-After, `/readyz` says the database is
/// unreachable, and `/healthz` still answers: the process is up.
#[tokio::test]
async fn a_database_that_stopped_answering_is_503_database_unavailable() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let analyst = app.token("acme", Role::Analyst).await;
        let before = app.get("/api/v1/review", &analyst).await;
        assert_eq!(before.status, 200, "{backend}: {}", before.text());

        app.app.store().close().await;

        let answer = app.get("/api/v1/review", &analyst).await;
        assert_eq!(answer.status, 503, "{backend}: {}", answer.text());
        let error = error_of(&answer);
        assert_eq!(error["code"], "database_unavailable", "{backend}: {error}");
        assert_eq!(error["details"]["dependency"], "database", "{backend}");
        assert_eq!(
            answer
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("10"),
            "{backend}"
        );
        let message = error["message"].as_str().expect("message");
        assert!(
            !message.contains("pool"),
            "{backend}: driver text leaked: {message}"
        );

        let ready = app.send(Method::GET, "/readyz", None, None).await;
        assert_eq!(ready.status, 503, "{backend}");
        let error = error_of(&ready);
        assert_eq!(error["code"], "not_ready", "{backend}");
        assert_eq!(error["details"]["database"], false, "{backend}");
        assert_eq!(error["message"], "the database is unreachable", "{backend}");
        let health = app.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(health.status, 200, "{backend}");
    }
}

fn metric_value(text: &str, line_prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_histogram_per_route_template() {
    let app = TestApp::new("sqlite").await;
    let viewer = app.token("acme", Role::Viewer).await;

    // Three requests on one template with different raw paths, two statuses.
    for domain in ["enterprise-attack", "mobile-attack"] {
        let answer = app
            .send(
                Method::GET,
                &format!("/api/v1/taxonomy/{domain}/tactics"),
                None,
                None,
            )
            .await;
        assert_eq!(answer.status, 401);
    }
    let answer = app
        .get("/api/v1/taxonomy/pre-attack/tactics", &viewer)
        .await;
    assert_eq!(answer.status, 400);
    app.send(Method::GET, "/no/such/route/12345", None, None)
        .await;

    let metrics = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let text = metrics.text();
    let series = |status: u16| {
        format!("route=\"/api/v1/taxonomy/{{domain}}/tactics\",method=\"GET\",status=\"{status}\"")
    };
    let family = "nexus_attack_http_request_duration_seconds";
    assert!(text.contains(&format!("# TYPE {family} histogram")));
    assert_eq!(
        metric_value(&text, &format!("{family}_count{{{}}}", series(401))),
        Some(2)
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("{family}_bucket{{{},le=\"+Inf\"}}", series(401))
        ),
        Some(2)
    );
    assert_eq!(
        metric_value(&text, &format!("{family}_count{{{}}}", series(400))),
        Some(1)
    );
    assert_eq!(
        metric_value(
            &text,
            &format!("nexus_attack_http_requests_total{{{}}}", series(401))
        ),
        Some(2)
    );
    assert_eq!(
        metric_value(&text, "nexus_attack_unauthenticated_total"),
        Some(2)
    );
    // Raw paths never become labels.
    assert!(!text.contains("12345") && !text.contains("pre-attack"));
    assert!(text.contains("route=\"unmatched\""));
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes_served() {
    let app = TestApp::new("sqlite").await;
    let answer = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(answer.status, 200);
    let doc = answer.json();
    assert_eq!(doc["openapi"], "3.1.0");

    let table = route_table();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (path.clone(), method.to_uppercase()))
        })
        .collect();
    let listed: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.path.to_string(), r.method.as_str().to_string()))
        .collect();
    assert_eq!(documented, listed);
    assert!(listed.len() >= 17, "issue 2 routes are all there");

    for route in &table {
        let op = &doc["paths"][route.path][route.method.as_lower()];
        assert_eq!(op["operationId"], route.operation_id);
        let params: BTreeSet<&str> = op["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for param in &route.params {
            assert!(params.contains(param.name), "{} {}", route.path, param.name);
            if param.location == Location::Path {
                assert!(route.path.contains(&format!("{{{}}}", param.name)));
            }
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(secured, route.auth, "{}", route.path);
        assert_eq!(op["x-tenancy"], route.tenancy.as_str());

        // The router serves every documented route: without a token a
        // protected route answers 401, a public or signed one anything but
        // a routing error.
        let served = app
            .send(
                http_method(route.method),
                &concrete_path(route.path),
                None,
                None,
            )
            .await;
        if matches!(route.tenancy, Tenancy::Public | Tenancy::Signed) {
            assert!(
                ![404, 405].contains(&served.status.as_u16()),
                "{} {} answered {}",
                route.method.as_str(),
                route.path,
                served.status
            );
        } else {
            assert_eq!(
                served.status,
                401,
                "{} {}",
                route.method.as_str(),
                route.path
            );
        }
    }

    // And a route missing from the table is not served.
    let undocumented = app
        .send(Method::GET, "/api/v1/datasets/x/y/z", None, None)
        .await;
    assert_eq!(undocumented.status, 404);
    assert_eq!(error_of(&undocumented)["code"], "route_not_found");

    let error_schema: &Value = &doc["components"]["schemas"]["Error"];
    assert_eq!(error_schema["required"][0], "error");
}

#[tokio::test]
async fn openapi_lists_404_for_diff_and_rollback_which_answer_it() {
    let app = TestApp::new("sqlite").await;
    let doc = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .json();
    let steward = app.token("platform", Role::Steward).await;

    // Both answer 404 on an empty database...
    let unknown = "00000000-0000-0000-0000-000000000000";
    let diff = app
        .get(
            &format!("/api/v1/datasets/diff?from={unknown}&to={unknown}"),
            &steward,
        )
        .await;
    assert_eq!(diff.status, 404, "{}", diff.text());
    let rollback = app
        .post_json(
            "/api/v1/datasets/rollback",
            &steward,
            serde_json::json!({ "domain": "ics-attack" }),
        )
        .await;
    assert_eq!(rollback.status, 404, "{}", rollback.text());

    // ...and the document says so.
    for (path, method) in [
        ("/api/v1/datasets/diff", "get"),
        ("/api/v1/datasets/rollback", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"]["404"].is_object(),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn missing_active_dataset_404_names_the_domain() {
    let app = TestApp::new("sqlite").await;
    let viewer = app.token("acme", Role::Viewer).await;
    let answer = app
        .get("/api/v1/taxonomy/mobile-attack/tactics", &viewer)
        .await;
    assert_eq!(answer.status, 404);
    let error = error_of(&answer);
    assert_eq!(error["code"], "not_found");
    assert_eq!(
        error["message"],
        "no active dataset for domain mobile-attack"
    );
}

/// Every object of a body schema that lists its properties, and where it
/// sits (`$.filters`), without `additionalProperties: false`.
fn open_objects(schema: &Value, at: &str, out: &mut Vec<String>) {
    if schema.get("properties").is_some() && schema["additionalProperties"] != Value::Bool(false) {
        out.push(at.to_string());
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, inner) in properties {
            open_objects(inner, &format!("{at}.{name}"), out);
        }
    }
    if schema.get("items").is_some() {
        open_objects(&schema["items"], &format!("{at}[]"), out);
    }
}

#[tokio::test]
async fn json_bodies_are_closed_in_the_document_as_the_server_refuses_unknown_fields() {
    let app = TestApp::new("sqlite").await;
    let doc = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .json();

    let mut checked = 0;
    for route in route_table() {
        let server::Body::Json { example, .. } = route.body else {
            continue;
        };
        let name = format!("{} {}", route.method.as_str(), route.path);
        let schema = &doc["paths"][route.path][route.method.as_lower()]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert!(schema.is_object(), "{name}: documented body schema");
        // One alert is any OCSF, ECS or native document: open on purpose,
        // and documented as such (no property list).
        if schema.get("properties").is_none() {
            assert_eq!(
                route.path, "/api/v1/alerts",
                "{name}: only the alert body is open"
            );
            continue;
        }
        let mut open = Vec::new();
        open_objects(schema, "$", &mut open);
        assert!(
            open.is_empty(),
            "{name}: objects without additionalProperties: false: {open:?}"
        );

        // The server agrees: the documented example with one more field is
        // refused, by a role the route allows, before anything is looked up.
        let action = route
            .action
            .expect("JSON bodies belong to permissioned routes");
        let role = Role::ALL
            .into_iter()
            .find(|r| service::access::allows(*r, action))
            .expect("some role may call it");
        let token = app.token("acme", role).await;
        let mut body = example();
        body["unexpected_field"] = Value::Bool(true);
        let answer = app
            .send(
                http_method(route.method),
                &concrete_path(route.path),
                Some(&token),
                Some(("application/json", serde_json::to_vec(&body).unwrap())),
            )
            .await;
        assert_eq!(answer.status, 400, "{name} as {role}: {}", answer.text());
        let error = error_of(&answer);
        assert_eq!(error["code"], "invalid_input", "{name}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("unexpected_field")),
            "{name}: {error}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} JSON bodies checked");
}
