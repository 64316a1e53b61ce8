//! A caller whose role may not perform a write is told 403 `forbidden`
//! whatever it sent: the role is checked before the body is read, so a
//! malformed, empty or undeclared body cannot turn the refusal into a 400.
//!
//! The routes come from the OpenAPI document the server serves, so a new
//! write route is walked without being listed here.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use serde_json::Value;
use server::{Body, ServerConfig, route_table};
use service::access::{Action, Role, allows};

use crate::helpers::{TestApp, backends, concrete_path, error_of};

/// A JSON document cut short: no route can parse it.
const TRUNCATED: &[u8] = b"{\"nope\":";

/// Every body limit of the app under test, so that an oversized body is
/// small enough to send in bulk.
const LIMIT: usize = 1024;

/// One write operation of the document.
struct Write {
    path: String,
    action: Action,
    /// The media type the document declares for the body; `None` for a
    /// write that takes no body.
    media: Option<String>,
    /// Whether the body is a JSON document and nothing else (not a bundle,
    /// which may also be gzip, nor NDJSON).
    json_only: bool,
}

/// Every `POST` of the document that needs a permission.
fn writes(document: &Value) -> Vec<Write> {
    let paths = document["paths"].as_object().expect("paths");
    let mut writes = Vec::new();
    for (path, item) in paths {
        let Some(operation) = item.get("post") else {
            continue;
        };
        let Some(action) = operation.get("x-required-action") else {
            continue;
        };
        let action: Action = serde_json::from_value(action.clone())
            .unwrap_or_else(|e| panic!("{path}: x-required-action {action}: {e}"));
        let content = operation["requestBody"]["content"].as_object();
        // NDJSON routes also accept text/plain; the first declared type is
        // the one a client is told to send.
        let media = content.and_then(|c| c.keys().find(|k| k.as_str() != "text/plain").cloned());
        let json_only = content.is_some_and(|c| c.len() == 1 && c.contains_key("application/json"));
        writes.push(Write {
            path: path.clone(),
            action,
            media,
            json_only,
        });
    }
    writes
}

#[tokio::test]
async fn a_refused_role_gets_403_whatever_body_it_sends() {
    for backend in backends() {
        let config = ServerConfig {
            body_limit: LIMIT,
            upload_limit: LIMIT,
            bulk_limit: LIMIT,
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
        let writes = writes(&served.json());

        // The document and the route table agree on which writes read a
        // body, so none is missed by reading the document.
        let with_body = writes.iter().filter(|w| w.media.is_some()).count();
        let in_table = route_table()
            .iter()
            .filter(|r| r.action.is_some() && !matches!(r.body, Body::None))
            .count();
        assert_eq!(with_body, in_table, "writes with a body");
        assert!(with_body >= 25, "only {with_body} writes with a body");

        let mut expected_denials: BTreeMap<&str, usize> = BTreeMap::new();
        for write in &writes {
            let path = concrete_path(&write.path);
            let media = write.media.as_deref().unwrap_or("application/json");
            let oversized = vec![b'{'; LIMIT * 2];
            let sent: [(&str, Option<&str>, &[u8]); 4] = [
                ("empty", Some(media), b""),
                ("truncated", Some(media), TRUNCATED),
                ("undeclared", None, TRUNCATED),
                ("oversized", Some(media), &oversized),
            ];

            for role in Role::ALL.into_iter().filter(|r| !allows(*r, write.action)) {
                for (what, content_type, bytes) in sent {
                    let answer = send(&app, &path, &tokens[&role], content_type, bytes).await;
                    assert_eq!(
                        answer.status,
                        StatusCode::FORBIDDEN,
                        "{backend}: {role} on POST {} with body {what}: {}",
                        write.path,
                        answer.text()
                    );
                    let error = error_of(&answer);
                    assert_eq!(error["code"], "forbidden", "{}", write.path);
                    assert_eq!(error["details"]["action"], write.action.as_str());
                    *expected_denials.entry(write.action.as_str()).or_default() += 1;
                }
            }

            // A role that may act still gets its bad body refused: the
            // check moved, the body is still read.
            let Some(media) = write.media.as_deref() else {
                continue;
            };
            let role = Role::ALL
                .into_iter()
                .find(|r| allows(*r, write.action))
                .expect("some role may act");
            let mut bad: Vec<(&str, &[u8])> = vec![("empty", b"")];
            if write.json_only {
                bad.push(("truncated", TRUNCATED));
            }
            for (what, bytes) in bad {
                let answer = send(&app, &path, &tokens[&role], Some(media), bytes).await;
                assert_eq!(
                    answer.status,
                    StatusCode::BAD_REQUEST,
                    "{backend}: {role} on POST {} with body {what}: {}",
                    write.path,
                    answer.text()
                );
                assert_eq!(error_of(&answer)["code"], "invalid_input", "{}", write.path);
            }
            let answer = send(&app, &path, &tokens[&role], Some(media), &oversized).await;
            assert_eq!(
                answer.status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "{backend}: {role} on POST {} with an oversized body: {}",
                write.path,
                answer.text()
            );
        }

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

async fn send(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> crate::helpers::Answer {
    match content_type {
        Some(media) => {
            app.send(
                Method::POST,
                path,
                Some(token),
                Some((media, bytes.to_vec())),
            )
            .await
        }
        None => {
            let request = axum::http::Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::from(bytes.to_vec()))
                .expect("valid request");
            app.send_request(request).await
        }
    }
}
