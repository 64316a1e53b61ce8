//! The role matrix, generated from the route table and `service::access`:
//! every role that a route's action does not allow is refused with 403, and
//! every refusal is in the audit log.

use std::collections::BTreeMap;

use axum::http::Method;
use server::{Body, route_table};
use service::access::{Role, allows};

use crate::helpers::{TestApp, backends, concrete_path, error_of, http_method, tiny_bundle};

/// A well-formed body for a route, so that only the role can refuse it.
pub fn sample_body(body: Body) -> Option<(&'static str, Vec<u8>)> {
    match body {
        Body::None => None,
        Body::Json { example, .. } => Some((
            "application/json",
            serde_json::to_vec(&example()).expect("example serializes"),
        )),
        Body::Bundle => Some(("application/json", tiny_bundle("1.0", false))),
        Body::Ndjson { example } => Some(("application/x-ndjson", example().into_bytes())),
    }
}

#[tokio::test]
async fn every_privileged_route_refuses_and_audits_each_denied_role() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let mut tokens = BTreeMap::new();
        for role in Role::ALL {
            tokens.insert(role, app.token("acme", role).await);
        }

        let mut expected_denials: BTreeMap<&str, usize> = BTreeMap::new();
        for route in route_table() {
            let Some(action) = route.action else { continue };
            for role in Role::ALL.into_iter().filter(|r| !allows(*r, action)) {
                let method = http_method(route.method);
                let path = if route.path == "/api/v1/datasets" && method == Method::POST {
                    "/api/v1/datasets?domain=enterprise-attack&release=1.0".to_string()
                } else {
                    concrete_path(route.path)
                };
                let answer = app
                    .send(method, &path, Some(&tokens[&role]), sample_body(route.body))
                    .await;
                assert_eq!(
                    answer.status,
                    403,
                    "{backend}: {role} on {} {}: {}",
                    route.method.as_str(),
                    route.path,
                    answer.text()
                );
                let error = error_of(&answer);
                assert_eq!(error["code"], "forbidden");
                assert_eq!(error["details"]["action"], action.as_str());
                *expected_denials.entry(action.as_str()).or_default() += 1;
            }
        }
        assert!(
            expected_denials.contains_key("dataset_approve"),
            "the matrix denies approval to some role"
        );

        // The org admin reads every denial of its org.
        let audit = app
            .get("/api/v1/audit?limit=500", &tokens[&Role::Admin])
            .await;
        assert_eq!(audit.status, 200, "{}", audit.text());
        let mut denials: BTreeMap<String, usize> = BTreeMap::new();
        for event in audit.json()["data"].as_array().expect("events") {
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
