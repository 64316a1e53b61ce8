//! Test harness: a real `service::App` on a fresh database per test, the
//! real router called without a socket, and independent readings of the
//! shared ATT&CK bundles.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use server::{HttpMethod, ServerConfig};
use service::{Actor, App, AppConfig, Role};
use store::testing::{POSTGRES_ENV, TestDatabase};
use tower::ServiceExt as _;

/// The shared data folder: `NEXUS_ATTACK_SHARED`, else `<workspace>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// The bytes of a shared ATT&CK release file (gzipped).
pub fn bundle_bytes(file: &str) -> Vec<u8> {
    let path = shared_dir().join("attack").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Enterprise 18.1 decoded with serde_json, once per test binary: the
/// independent source of expected values.
pub fn enterprise_18_raw() -> &'static Value {
    static RAW: OnceLock<Value> = OnceLock::new();
    RAW.get_or_init(|| {
        let gz = bundle_bytes("enterprise-attack-18.1.json.gz");
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut json)
            .expect("gunzip enterprise 18.1");
        serde_json::from_slice(&json).expect("enterprise 18.1 is JSON")
    })
}

/// Which databases this run covers: SQLite always, PostgreSQL when
/// `NEXUS_ATTACK_TEST_POSTGRES` names a server.
pub fn backends() -> Vec<&'static str> {
    let mut list = vec!["sqlite"];
    if std::env::var(POSTGRES_ENV).is_ok_and(|v| !v.is_empty()) {
        list.push("postgres");
    }
    list
}

/// A fresh database of `backend`, removed when dropped.
async fn fresh_database(backend: &str) -> TestDatabase {
    match backend {
        "sqlite" => TestDatabase::sqlite(),
        "postgres" => {
            let admin_url = std::env::var(POSTGRES_ENV).expect("PostgreSQL admin URL");
            TestDatabase::postgres(&admin_url).await
        }
        other => panic!("unknown backend {other}"),
    }
}

/// The app under test: the real router over a real database.
pub struct TestApp {
    pub backend: &'static str,
    /// The database under the app; the log-capture test binary breaks it
    /// on purpose, this binary never reads it.
    #[allow(dead_code)]
    pub database_url: String,
    pub app: App,
    pub router: Router,
    _database: TestDatabase,
}

/// One answer: status, headers, body bytes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The body as JSON (panics with the body text if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl TestApp {
    /// A fresh database, migrated, with the default server configuration.
    pub async fn new(backend: &'static str) -> TestApp {
        Self::with_config(backend, ServerConfig::default()).await
    }

    /// A fresh database with a given server configuration.
    pub async fn with_config(backend: &'static str, config: ServerConfig) -> TestApp {
        let database = fresh_database(backend).await;
        let url = database.url.clone();
        let app = App::connect(AppConfig::new(url.clone()))
            .await
            .unwrap_or_else(|e| panic!("connect {backend}: {e}"));
        let router = server::router(app.clone(), config);
        TestApp {
            backend,
            database_url: url,
            app,
            router,
            _database: database,
        }
    }

    /// Creates `org` if needed and a token with `role` in it; answers the secret.
    pub async fn token(&self, org: &str, role: Role) -> String {
        let operator = Actor::operator("test-operator");
        if self.app.org_by_name(&operator, org).await.is_err() {
            self.app
                .create_org(&operator, org)
                .await
                .unwrap_or_else(|e| panic!("create org {org}: {e}"));
        }
        let token = self
            .app
            .create_token(&operator, org, role, Some("test"))
            .await
            .unwrap_or_else(|e| panic!("create {role} token in {org}: {e}"));
        token.secret.expose().to_string()
    }

    /// Sends one request through the router.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some((content_type, bytes)) => request
                .header("content-type", content_type)
                .body(Body::from(bytes)),
            None => request.body(Body::empty()),
        }
        .expect("valid request");
        self.send_request(request).await
    }

    /// Sends a request built by the caller (one the other helpers cannot
    /// build, such as a body without a `Content-Type`).
    pub async fn send_request(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("read body")
            .to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    /// `GET path` with a token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// `POST path` with a token and a JSON body.
    pub async fn post_json(&self, path: &str, token: &str, body: Value) -> Answer {
        let bytes = serde_json::to_vec(&body).expect("serialize body");
        self.send(
            Method::POST,
            path,
            Some(token),
            Some(("application/json", bytes)),
        )
        .await
    }

    /// `POST path` with a token and no body.
    pub async fn post(&self, path: &str, token: &str) -> Answer {
        self.send(Method::POST, path, Some(token), None).await
    }
}

/// The error object of an error answer, after checking the envelope shape.
pub fn error_of(answer: &Answer) -> Value {
    let body = answer.json();
    let object = body.as_object().expect("error body is an object");
    assert_eq!(object.len(), 1, "only `error` at top level: {body}");
    let error = body["error"].clone();
    assert!(error["code"].is_string(), "error.code: {body}");
    assert!(error["message"].is_string(), "error.message: {body}");
    error
}

/// Percent-encodes a query value (cursors are opaque: they may hold any
/// character).
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A small hand-made STIX 2.0 Enterprise bundle: one matrix, two tactics,
/// techniques T9001 and T9002 (and T9001.001); with `revoke_t9002`, T9002
/// is revoked by T9003. `release` goes into the matrix description so
/// that each release has its own bytes. Ours, not shared data: tests of the lifecycle and
/// the diff that need no full release.
pub fn tiny_bundle(release: &str, revoke_t9002: bool) -> Vec<u8> {
    use serde_json::json;
    let created = "2025-01-01T00:00:00.000Z";
    let reference = |id: &str, kind: &str| {
        json!([{
            "source_name": "mitre-attack",
            "external_id": id,
            "url": format!("https://attack.mitre.org/{kind}/{}", id.replace('.', "/")),
        }])
    };
    let tactic = |n: u32, id: &str, name: &str, short: &str| {
        json!({
            "type": "x-mitre-tactic",
            "id": format!("x-mitre-tactic--00000000-0000-4000-8000-00000000000{n}"),
            "created": created, "modified": created,
            "name": name, "description": format!("{name} tactic"),
            "x_mitre_shortname": short, "x_mitre_version": "1.0",
            "x_mitre_domains": ["enterprise-attack"],
            "external_references": reference(id, "tactics"),
        })
    };
    let technique = |n: u32, id: &str, name: &str, phase: &str, revoked: bool| {
        let mut t = json!({
            "type": "attack-pattern",
            "id": format!("attack-pattern--00000000-0000-4000-8000-0000000000{n:02}"),
            "created": created, "modified": created,
            "name": name, "description": format!("{name} technique"),
            "kill_chain_phases": [{ "kill_chain_name": "mitre-attack", "phase_name": phase }],
            "x_mitre_platforms": ["Windows", "Linux"],
            "x_mitre_is_subtechnique": id.contains('.'),
            "x_mitre_version": "1.0",
            "x_mitre_domains": ["enterprise-attack"],
            "external_references": reference(id, "techniques"),
        });
        if revoked {
            t["revoked"] = json!(true);
        }
        t
    };
    let mut objects = vec![
        json!({
            "type": "x-mitre-matrix",
            "id": "x-mitre-matrix--00000000-0000-4000-8000-000000000099",
            "created": created, "modified": created,
            "name": "Tiny Enterprise", "description": format!("test matrix {release}"),
            "tactic_refs": [
                "x-mitre-tactic--00000000-0000-4000-8000-000000000001",
                "x-mitre-tactic--00000000-0000-4000-8000-000000000002",
            ],
            "x_mitre_version": "1.0",
            "external_references": [{ "source_name": "mitre-attack", "external_id": "enterprise-attack" }],
        }),
        tactic(1, "TA0002", "Execution", "execution"),
        tactic(2, "TA0003", "Persistence", "persistence"),
        technique(10, "T9001", "Tiny Execution", "execution", false),
        technique(11, "T9001.001", "Tiny Sub", "execution", false),
        technique(12, "T9002", "Tiny Persistence", "persistence", revoke_t9002),
        json!({
            "type": "relationship",
            "id": "relationship--00000000-0000-4000-8000-000000000201",
            "created": created, "modified": created,
            "relationship_type": "subtechnique-of",
            "source_ref": "attack-pattern--00000000-0000-4000-8000-000000000011",
            "target_ref": "attack-pattern--00000000-0000-4000-8000-000000000010",
        }),
    ];
    if revoke_t9002 {
        objects.push(technique(
            13,
            "T9003",
            "Tiny Replacement",
            "persistence",
            false,
        ));
        objects.push(json!({
            "type": "relationship",
            "id": "relationship--00000000-0000-4000-8000-000000000202",
            "created": created, "modified": created,
            "relationship_type": "revoked-by",
            "source_ref": "attack-pattern--00000000-0000-4000-8000-000000000012",
            "target_ref": "attack-pattern--00000000-0000-4000-8000-000000000013",
        }));
    }
    let bundle = json!({
        "type": "bundle",
        "id": "bundle--00000000-0000-4000-8000-000000000000",
        "spec_version": "2.0",
        "objects": objects,
    });
    serde_json::to_vec(&bundle).expect("serialize tiny bundle")
}

impl TestApp {
    /// Uploads a tiny bundle as `release` and answers the dataset id.
    pub async fn upload_tiny(&self, token: &str, release: &str, revoke_t9002: bool) -> String {
        let answer = self
            .send(
                Method::POST,
                &format!("/api/v1/datasets?domain=enterprise-attack&release={release}"),
                Some(token),
                Some(("application/json", tiny_bundle(release, revoke_t9002))),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        answer.json()["data"]["id"]
            .as_str()
            .expect("dataset id")
            .to_string()
    }
}

/// The `http` method of a route-table method.
pub fn http_method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
    }
}

/// A concrete path for a route template: the real domain, and an id that
/// names nothing.
pub fn concrete_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{domain}" => "enterprise-attack",
            s if s.starts_with('{') => "0190f0a0-0000-7000-8000-00000000abcd",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl TestApp {
    /// Enterprise 18.1 loaded, validated, approved (four eyes) and
    /// activated, `org` created, and the 2026-01-01 Sigma pack imported as
    /// its mapping rules: what mapping the shared alerts needs.
    pub async fn with_enterprise_and_sigma(&self, org: &str) {
        let steward = |name: &str| Actor {
            name: name.into(),
            org: None,
            role: Role::Steward,
        };
        let file = shared_dir().join("attack/enterprise-attack-18.1.json.gz");
        let service = &self.app;
        let dataset = service
            .load_dataset(
                &steward("alice"),
                &file.display().to_string(),
                &service::LoadOptions::default(),
            )
            .await
            .expect("load enterprise 18.1");
        service
            .validate_dataset(&steward("alice"), &dataset.id)
            .await
            .expect("validate enterprise 18.1");
        service
            .approve_dataset(&steward("bob"), &dataset.id)
            .await
            .expect("approve enterprise 18.1");
        service
            .activate_dataset(&steward("bob"), &dataset.id)
            .await
            .expect("activate enterprise 18.1");

        let created = service
            .create_org(&Actor::operator("op"), org)
            .await
            .unwrap_or_else(|e| panic!("create org {org}: {e}"));
        let engineer = Actor {
            name: "eve".into(),
            org: Some(created.id.clone()),
            role: Role::Engineer,
        };
        service
            .import_sigma(
                &engineer,
                org,
                &shared_dir().join("sigma/sigma-rules-c5e6d0ecd.tar.gz"),
            )
            .await
            .unwrap_or_else(|e| panic!("import the Sigma pack into {org}: {e}"));
    }

    /// Follows `meta.next_cursor` from the first page of `path` (with or
    /// without a query) to the last, checking each page's size; answers
    /// every item in order.
    pub async fn all_pages(&self, token: &str, path: &str, limit: usize) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut cursor: Option<String> = None;
        let mut items = Vec::new();
        for _ in 0..1000 {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}limit={limit}&cursor={}", encode_query(c)),
                None => format!("{path}{separator}limit={limit}"),
            };
            let answer = self.get(&url, token).await;
            assert_eq!(answer.status, StatusCode::OK, "{url}: {}", answer.text());
            let body = answer.json();
            let page = body["data"].as_array().expect("data is a list");
            assert!(page.len() <= limit, "{url}: page larger than limit");
            items.extend(page.iter().cloned());
            match body["meta"]["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return items,
            }
        }
        panic!("{path}: pagination does not end");
    }
}
