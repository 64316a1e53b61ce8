//! The matrix and KPI routes take exactly the query parameters their entry
//! in the OpenAPI document lists: every listed one is accepted, and any
//! other name (a misspelt filter, a parameter of a sibling route) is
//! refused with 400 `invalid_input` naming it, after the role check.

use axum::http::{Method, StatusCode};
use serde_json::Value;
use service::Role;

use crate::helpers::{Answer, TestApp, backends, error_of};

/// The routes, with a role that may call each.
const ROUTES: [(&str, &str, Role); 5] = [
    ("get", "/api/v1/matrix", Role::Analyst),
    ("get", "/api/v1/matrix/drilldown", Role::Analyst),
    ("get", "/api/v1/matrix/export", Role::Analyst),
    ("post", "/api/v1/matrix/import", Role::Analyst),
    ("get", "/api/v1/kpis", Role::Admin),
];

/// A value the route accepts for a documented parameter: a cell of the
/// tiny release, a day, or by the documented type (an empty filter means
/// no restriction, as the web UI's empty form fields send it).
fn value_for(parameter: &Value) -> String {
    let schema = &parameter["schema"];
    match parameter["name"].as_str().expect("parameter name") {
        "domain" => "enterprise-attack".into(),
        "from" => "2026-01-01".into(),
        "to" => "2027-01-01".into(),
        "tactic" => "TA0002".into(),
        "technique" => "T9001".into(),
        _ if schema["type"] == "integer" => schema["minimum"].to_string(),
        _ if schema["type"] == "boolean" => "false".into(),
        _ if schema["enum"].is_array() => schema["enum"][0].as_str().expect("enum").into(),
        _ => String::new(),
    }
}

/// The answer of one route to one query string.
async fn call(app: &TestApp, method: &str, path: &str, query: &str, token: &str) -> Answer {
    let url = format!("{path}?{query}");
    if method == "post" {
        let layer = serde_json::json!({
            "layer": {"name": "plan", "domain": "enterprise-attack",
                      "techniques": [{"techniqueID": "T9001", "score": 1}]}
        });
        app.post_json(&url, token, layer).await
    } else {
        app.get(&url, token).await
    }
}

#[tokio::test]
async fn matrix_and_kpi_routes_refuse_unknown_query_parameters_naming_them() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let steward_a = app.token("platform", Role::Steward).await;
        let steward_b = app.token("platform", Role::Steward).await;
        let id = app.upload_tiny(&steward_a, "1.0", false).await;
        for (step, token) in [
            ("validate", &steward_a),
            ("approve", &steward_b),
            ("activate", &steward_b),
        ] {
            let answer = app
                .post(&format!("/api/v1/datasets/{id}/{step}"), token)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{step}: {}", answer.text());
        }
        let viewer = app.token("acme", Role::Viewer).await;

        let document = app
            .send(Method::GET, "/api/v1/openapi.json", None, None)
            .await
            .json();
        for (method, path, role) in ROUTES {
            let token = app.token("acme", role).await;
            let parameters = document["paths"][path][method]["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{path} has parameters"));
            let names: Vec<&str> = parameters
                .iter()
                .map(|p| p["name"].as_str().expect("name"))
                .collect();

            // Every documented parameter at once is accepted.
            let all: Vec<String> = parameters
                .iter()
                .map(|p| format!("{}={}", p["name"].as_str().expect("name"), value_for(p)))
                .collect();
            let answer = call(&app, method, path, &all.join("&"), &token).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{backend}: {path}?{}: {}",
                all.join("&"),
                answer.text()
            );

            // A misspelt name, and every name a sibling route takes but
            // this one does not.
            let mut unknown = vec!["tactc".to_string()];
            for (sibling_method, sibling, _) in ROUTES {
                let theirs = document["paths"][sibling][sibling_method]["parameters"]
                    .as_array()
                    .expect("parameters");
                for p in theirs {
                    let name = p["name"].as_str().expect("name");
                    if !names.contains(&name) && !unknown.iter().any(|u| u == name) {
                        unknown.push(name.to_string());
                    }
                }
            }
            for name in &unknown {
                let query = format!("{name}=1");
                let answer = call(&app, method, path, &query, &token).await;
                assert_eq!(
                    answer.status,
                    StatusCode::BAD_REQUEST,
                    "{backend}: {path}?{query}: {}",
                    answer.text()
                );
                let error = error_of(&answer);
                assert_eq!(error["code"], "invalid_input", "{path}?{query}");
                assert_eq!(error["details"]["field"], name.as_str(), "{path}?{query}");
                // The message names the parameter and lists what the
                // route takes: exactly the documented names.
                let message = error["message"].as_str().expect("message");
                let (named, expected) = message
                    .split_once(", expected ")
                    .unwrap_or_else(|| panic!("{path}?{query}: {message}"));
                assert_eq!(named, format!("unknown query parameter `{name}`"));
                let mut listed: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
                listed.sort_unstable();
                let mut documented = names.clone();
                documented.sort_unstable();
                assert_eq!(listed, documented, "{path}?{query}: {message}");
            }
            assert!(unknown.len() > 1, "{path}: siblings add names");

            // A role that may not call the route is refused before its
            // query is read.
            let refused_role = if role == Role::Admin {
                &viewer
            } else {
                &steward_a
            };
            let answer = call(&app, method, path, "tactc=1", refused_role).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{backend}: {path}: {}",
                answer.text()
            );
            assert_eq!(error_of(&answer)["code"], "forbidden");
        }
    }
}
