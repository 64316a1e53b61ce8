//! The UI files over a real socket: content types, the security headers,
//! and that they stay out of the API's route table and document.

use serde_json::Value;
use server::ServerConfig;

use crate::helpers::TestApp;

/// Fetches `path` from a running server without a token.
async fn fetch(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test]
async fn ui_files_are_served_with_their_types_and_a_strict_policy() {
    let test = TestApp::new("sqlite").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve_on(
        listener,
        test.app.clone(),
        ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let cases = [
        ("/", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/api.js", "text/javascript; charset=utf-8"),
        ("/ui/matrix.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ];
    for (path, content_type) in cases {
        let response = fetch(&base, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let policy = headers["content-security-policy"]
            .to_str()
            .expect("policy is ASCII");
        assert_eq!(policy, server::ui::CONTENT_SECURITY_POLICY, "{path}");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {directive}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: no inline code");
        assert!(!policy.contains("unsafe-eval"), "{path}: no eval");
    }

    // The page's own file on disk is what `/` answers: the binary embeds
    // the files rather than reading a folder at run time.
    let page = fetch(&base, "/").await.text().await.expect("page text");
    let on_disk = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/index.html"),
    )
    .expect("read ui/index.html");
    assert_eq!(page, on_disk);

    // An unknown UI file gets the API's structured 404.
    let missing = fetch(&base, "/ui/nothing.js").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("error envelope");
    assert_eq!(body["error"]["code"], "route_not_found");

    // Not API routes: the OpenAPI document lists none of them.
    let doc: Value = fetch(&base, "/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("document");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        paths.keys().all(|p| p != "/" && !p.starts_with("/ui")),
        "UI paths stay out of the API document: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(
        server::route_table()
            .iter()
            .all(|r| r.path != "/" && !r.path.starts_with("/ui")),
        "UI paths stay out of the route table"
    );

    stop.send(()).expect("server running");
    let result = server.await.expect("server task");
    assert!(result.is_ok(), "{result:?}");
}

/// The matrix routes refuse a query parameter they do not document, and the
/// page sends its filter form's fields (`FormData` of `#filters`) to each
/// of them: every field must be one they take.
#[test]
fn the_filter_form_sends_only_parameters_the_matrix_routes_take() {
    let page = include_str!("../../ui/index.html");
    let start = page.find("<form id=\"filters\"").expect("the filter form");
    let form = &page[start..];
    let form = &form[..form.find("</form>").expect("the form ends")];
    let fields: Vec<&str> = form
        .split("name=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        fields.contains(&"from") && fields.contains(&"band"),
        "{fields:?}"
    );

    for path in [
        "/api/v1/matrix",
        "/api/v1/matrix/drilldown",
        "/api/v1/matrix/export",
    ] {
        let route = server::route_table()
            .into_iter()
            .find(|r| r.path == path)
            .expect("a matrix route");
        let taken: Vec<&str> = route.params.iter().map(|p| p.name).collect();
        for field in &fields {
            assert!(taken.contains(field), "{path} does not take `{field}`");
        }
    }
}
