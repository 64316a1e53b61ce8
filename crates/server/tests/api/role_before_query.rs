//! A caller whose role may not perform a route's action is told 403
//! `forbidden` whatever query string or path id it sent: the role is
//! checked before either is read, so an unknown or malformed parameter, or
//! an id that is not percent-encoded UTF-8 (`%ff`), cannot turn the
//! refusal into a 400, and every refusal is audited. The list routes
//! answered 400 first and audited nothing (the sibling of
//! `role_before_body`, which does the same for bodies).
//!
//! The routes come from the OpenAPI document the server serves, so a new
//! route is walked without being listed here.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use serde_json::Value;
use server::ServerConfig;
use service::access::{Action, Role, allows};

use crate::helpers::{Answer, TestApp, backends, concrete_path, error_of};

/// One operation of the document that needs a permission.
struct Operation {
    method: Method,
    path: String,
    action: Action,
    /// Names of its query parameters.
    query: Vec<String>,
    /// The media type and example of its body, when it takes one.
    body: Option<(String, Vec<u8>)>,
}

/// Every operation of the document with `x-required-action`.
fn operations(document: &Value) -> Vec<Operation> {
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let Some(action) = operation.get("x-required-action") else {
                continue;
            };
            let action: Action = serde_json::from_value(action.clone())
                .unwrap_or_else(|e| panic!("{path}: x-required-action {action}: {e}"));
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            // A JSON example where the document has one, so that an
            // allowed role's 400 below comes from the id, not the body.
            let body = operation["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.iter().next())
                .map(|(media, content)| {
                    let bytes = match &content["example"] {
                        Value::Null => b"{}".to_vec(),
                        Value::String(text) => text.clone().into_bytes(),
                        example => example.to_string().into_bytes(),
                    };
                    (media.clone(), bytes)
                });
            operations.push(Operation {
                method: method.to_ascii_uppercase().parse().expect("a method"),
                path: path.clone(),
                action,
                query,
                body,
            });
        }
    }
    operations
}

async fn send(app: &TestApp, operation: &Operation, uri: &str, token: &str) -> Answer {
    let body = operation
        .body
        .as_ref()
        .map(|(media, bytes)| (media.as_str(), bytes.clone()));
    app.send(operation.method.clone(), uri, Some(token), body)
        .await
}

#[tokio::test]
async fn a_refused_role_gets_403_whatever_query_or_path_id_it_sends() {
    for backend in backends() {
        let config = ServerConfig {
            // Each token sends a hundred requests or so in a burst.
            rate_limit: None,
            ..ServerConfig::default()
        };
        let app = TestApp::with_config(backend, config).await;
        let mut tokens = BTreeMap::new();
        for role in Role::ALL {
            tokens.insert(role, app.token("acme", role).await);
        }
        let served = app
            .send(Method::GET, "/api/v1/openapi.json", None, None)
            .await;
        assert_eq!(served.status, StatusCode::OK);
        let operations = operations(&served.json());

        let mut expected_denials: BTreeMap<&str, usize> = BTreeMap::new();
        let mut refused_lists = BTreeSet::new();
        let mut refused_ids = 0;
        for operation in &operations {
            let refused: Vec<Role> = Role::ALL
                .into_iter()
                .filter(|r| !allows(*r, operation.action))
                .collect();
            let allowed = Role::ALL
                .into_iter()
                .find(|r| allows(*r, operation.action))
                .expect("some role may act");
            let what = format!("{} {}", operation.method, operation.path);

            // Queries: an unknown parameter, and a malformed page size.
            if operation.method == Method::GET && !operation.query.is_empty() {
                let path = concrete_path(&operation.path);
                let mut queries = vec!["nope=1"];
                if operation.query.iter().any(|q| q == "limit") {
                    queries.push("limit=abc");
                }
                for query in &queries {
                    let uri = format!("{path}?{query}");
                    for role in &refused {
                        let answer = send(&app, operation, &uri, &tokens[role]).await;
                        assert_eq!(
                            answer.status,
                            StatusCode::FORBIDDEN,
                            "{backend}: {role} on {what} with ?{query}: {}",
                            answer.text()
                        );
                        let error = error_of(&answer);
                        assert_eq!(error["code"], "forbidden", "{what}");
                        assert_eq!(error["details"]["action"], operation.action.as_str());
                        *expected_denials
                            .entry(operation.action.as_str())
                            .or_default() += 1;
                        refused_lists.insert(operation.path.clone());
                    }
                }
                // A role that may act still gets its bad query refused.
                let uri = format!("{path}?nope=1");
                let answer = send(&app, operation, &uri, &tokens[&allowed]).await;
                assert_eq!(
                    answer.status,
                    StatusCode::BAD_REQUEST,
                    "{backend}: {allowed} on {what} with ?nope=1: {}",
                    answer.text()
                );
                assert_eq!(error_of(&answer)["code"], "invalid_input", "{what}");
            }

            // Path ids: one that does not decode.
            if operation.path.contains("{id}") {
                let uri = concrete_path(&operation.path.replace("{id}", "%ff"));
                for role in &refused {
                    let answer = send(&app, operation, &uri, &tokens[role]).await;
                    assert_eq!(
                        answer.status,
                        StatusCode::FORBIDDEN,
                        "{backend}: {role} on {what} with id %ff: {}",
                        answer.text()
                    );
                    let error = error_of(&answer);
                    assert_eq!(error["code"], "forbidden", "{what}");
                    assert_eq!(error["details"]["action"], operation.action.as_str());
                    *expected_denials
                        .entry(operation.action.as_str())
                        .or_default() += 1;
                    refused_ids += 1;
                }
                let answer = send(&app, operation, &uri, &tokens[&allowed]).await;
                assert_eq!(
                    answer.status,
                    StatusCode::BAD_REQUEST,
                    "{backend}: {allowed} on {what} with id %ff: {}",
                    answer.text()
                );
                let error = error_of(&answer);
                assert_eq!(error["code"], "invalid_input", "{what}");
                assert_eq!(error["details"]["field"], "path", "{what}: {error}");
            }
        }

        // The lists some role may not read were all walked (every role
        // reads datasets and the taxonomy, so no one is refused those).
        for list in [
            "/api/v1/alerts",
            "/api/v1/incidents",
            "/api/v1/review",
            "/api/v1/rules",
            "/api/v1/audit",
            "/api/v1/notifications",
        ] {
            assert!(refused_lists.contains(list), "{backend}: {list} not walked");
        }
        assert!(refused_ids >= 25, "only {refused_ids} refused id requests");

        // Each refusal is audited once, under the action the route names.
        let events = app
            .all_pages(&tokens[&Role::Admin], "/api/v1/audit", 500)
            .await;
        let mut denials: BTreeMap<String, usize> = BTreeMap::new();
        for event in &events {
            if event["outcome"] == "denied" {
                let action = event["action"].as_str().expect("action").to_string();
                *denials.entry(action).or_default() += 1;
            }
        }
        let expected: BTreeMap<String, usize> = expected_denials
            .into_iter()
            .map(|(a, n)| (a.to_string(), n))
            .collect();
        assert_eq!(denials, expected, "{backend}");
    }
}
