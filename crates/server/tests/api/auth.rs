//! Authentication and the per-token rate limit.

use axum::http::Method;
use server::{RateLimit, ServerConfig};
use service::Role;

use crate::helpers::{TestApp, backends, error_of};

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    for backend in backends() {
        let app = TestApp::new(backend).await;
        let admin = app.token("acme", Role::Admin).await;

        let cases: [(Option<String>, &str); 4] = [
            (None, "no header"),
            (Some("Bearer nxa_not_a_real_token".into()), "unknown token"),
            (Some(format!("Basic {admin}")), "wrong scheme"),
            (Some("Bearer".into()), "empty token"),
        ];
        for (header, case) in cases {
            let mut request = axum::http::Request::builder().uri("/api/v1/audit");
            if let Some(value) = &header {
                request = request.header("authorization", value);
            }
            let request = request.body(axum::body::Body::empty()).expect("request");
            let response = tower::ServiceExt::oneshot(app.router.clone(), request)
                .await
                .expect("infallible");
            assert_eq!(response.status(), 401, "{backend}: {case}");
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{case}"
            );
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(body["error"]["code"], "unauthenticated", "{case}");
            // The answer never echoes the presented token.
            assert!(!String::from_utf8_lossy(&bytes).contains("nxa_"), "{case}");
        }

        let ok = app.get("/api/v1/audit", &admin).await;
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
}

#[tokio::test]
async fn each_token_has_its_own_bucket() {
    let config = ServerConfig {
        rate_limit: Some(RateLimit {
            per_second: 0.001,
            burst: 3,
        }),
        ..ServerConfig::default()
    };
    let app = TestApp::with_config("sqlite", config).await;
    let first = app.token("acme", Role::Admin).await;
    let second = app.token("acme", Role::Admin).await;

    for n in 0..3 {
        let answer = app.get("/api/v1/audit", &first).await;
        assert_eq!(answer.status, 200, "request {n}: {}", answer.text());
    }
    let limited = app.get("/api/v1/audit", &first).await;
    assert_eq!(limited.status, 429);
    let error = error_of(&limited);
    assert_eq!(error["code"], "rate_limited");
    // One request per 1000 s: the wait is about that long.
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((999..=1000).contains(&retry), "retry-after {retry}");
    assert_eq!(error["details"]["retry_after_seconds"], retry);

    assert_eq!(app.get("/api/v1/audit", &second).await.status, 200);

    // Public routes are not limited.
    let health = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);

    let metrics = app.send(Method::GET, "/metrics", None, None).await.text();
    assert!(
        metrics.contains("nexus_attack_rate_limited_total 1"),
        "{metrics}"
    );
}
