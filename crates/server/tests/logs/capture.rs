//! What the server writes to its log: request spans with route and org,
//! internal causes, and never a token.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use service::Role;
use sqlx::Connection as _;

use crate::helpers::{TestApp, error_of};

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

// `#[tokio::test]` runs on one thread, so a thread-local subscriber sees
// every span of the requests.
#[tokio::test]
async fn spans_carry_route_and_org_and_internal_causes_stay_in_the_log() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::new("sqlite").await;
    let admin = app.token("acme", Role::Admin).await;
    let org = app
        .app
        .org_by_name(&service::Actor::operator("test"), "acme")
        .await
        .expect("org exists");

    let ok = app.get("/api/v1/datasets", &admin).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let probe = "0190f0a0-0000-7000-8000-0000000000ff";
    let missing = app.get(&format!("/api/v1/datasets/{probe}"), &admin).await;
    assert_eq!(missing.status, 404);

    // Break the database under the running app: the next read fails inside
    // the store.
    let mut db = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .expect("open test database");
    sqlx::query("ALTER TABLE datasets RENAME TO datasets_moved_by_test")
        .execute(&mut db)
        .await
        .expect("rename table");
    let broken = app.get("/api/v1/datasets", &admin).await;
    assert_eq!(broken.status, 500, "{}", broken.text());
    let error = error_of(&broken);
    assert_eq!(error["code"], "internal");
    let body = broken.text();
    for leak in ["datasets", "SELECT", "sqlite", "no such table"] {
        assert!(!body.contains(leak), "error body reveals `{leak}`: {body}");
    }

    let bad_token = app
        .send(
            Method::GET,
            "/api/v1/audit",
            Some("nxa_secret_probe_value"),
            None,
        )
        .await;
    assert_eq!(bad_token.status, 401);

    let logs = captured.text();
    assert!(
        logs.contains("route=/api/v1/datasets"),
        "span has the route template:\n{logs}"
    );
    assert!(
        logs.contains(&format!("org={}", org.id)),
        "span has the org:\n{logs}"
    );
    assert!(
        logs.contains(&format!("dataset={probe}")),
        "span has the dataset:\n{logs}"
    );
    assert!(
        logs.contains("no such table"),
        "the cause is logged:\n{logs}"
    );
    assert!(!logs.contains(&admin), "a valid token reached the log");
    assert!(
        !logs.contains("nxa_secret_probe_value"),
        "a presented token reached the log"
    );
}
