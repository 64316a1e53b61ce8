//! The analyst flow in headless Chromium: log in, read the matrix of
//! Enterprise 18.1, expand sub-techniques by keyboard, switch the heatmap,
//! filter, drill down, export, lose the session on a 401, and override a
//! mapping from the drilldown as a lead.
//!
//! Three servers over one database: the real app before any alert, the
//! real app with a stand-in for the matrix API ([`crate::mock`]) for
//! figures real data cannot show on demand, then the real app with the
//! shared Sigma pack and alerts, where a lead overrides from the drilldown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;
use server::ServerConfig;
use service::Role;

use crate::helpers::{TestApp, bundle_bytes, enterprise_18_raw};
use crate::mock::{self, FORMULA, Mock};
use crate::webdriver::{CHROMEDRIVER, CHROMIUM, Driver, ENTER, ESCAPE, SPACE, Session};

// ------------------------------------------------------ expected values

fn objects(kind: &str) -> impl Iterator<Item = &'static Value> {
    enterprise_18_raw()["objects"]
        .as_array()
        .expect("bundle objects")
        .iter()
        .filter(move |o| o["type"] == kind)
}

fn attack_id(object: &Value) -> Option<String> {
    object["external_references"]
        .as_array()?
        .iter()
        .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
        .as_str()
        .map(str::to_string)
}

fn is_live(object: &Value) -> bool {
    object["revoked"] != true && object["x_mitre_deprecated"] != true
}

/// (ID, name) of each tactic in the order of the matrix's `tactic_refs`,
/// read from the raw bundle with serde_json.
fn tactics_in_matrix_order() -> Vec<(String, String)> {
    let by_stix: BTreeMap<&str, (String, String)> = objects("x-mitre-tactic")
        .filter_map(|t| {
            let name = t["name"].as_str()?.to_string();
            Some((t["id"].as_str()?, (attack_id(t)?, name)))
        })
        .collect();
    let matrix = objects("x-mitre-matrix")
        .find(|m| is_live(m))
        .expect("Enterprise has a matrix");
    matrix["tactic_refs"]
        .as_array()
        .expect("tactic_refs")
        .iter()
        .map(|r| by_stix[r.as_str().expect("tactic ref")].clone())
        .collect()
}

/// Live sub-techniques of `parent` whose kill-chain phases include `phase`.
fn live_subtechniques(parent: &str, phase: &str) -> BTreeSet<String> {
    let prefix = format!("{parent}.");
    objects("attack-pattern")
        .filter(|t| is_live(t))
        .filter(|t| {
            t["kill_chain_phases"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["phase_name"] == phase))
        })
        .filter_map(attack_id)
        .filter(|id| id.starts_with(&prefix))
        .collect()
}

/// The name of a technique in the raw bundle.
fn technique_name(id: &str) -> String {
    objects("attack-pattern")
        .find(|t| attack_id(t).as_deref() == Some(id))
        .and_then(|t| t["name"].as_str())
        .expect("technique in the bundle")
        .to_string()
}

// ------------------------------------------------------------- harness

/// Where screenshots go: `<target>/ui-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir.canonicalize().unwrap_or(dir)
}

/// Loads, validates, approves (four eyes) and activates Enterprise 18.1.
async fn activate_enterprise_18(app: &TestApp) {
    let loader = app.token("platform", Role::Steward).await;
    let approver = app.token("platform", Role::Steward).await;
    let upload = app
        .send(
            axum::http::Method::POST,
            "/api/v1/datasets?file_name=enterprise-attack-18.1.json.gz",
            Some(&loader),
            Some((
                "application/gzip",
                bundle_bytes("enterprise-attack-18.1.json.gz"),
            )),
        )
        .await;
    assert_eq!(upload.status, 201, "{}", upload.text());
    let id = upload.json()["data"]["id"]
        .as_str()
        .expect("dataset id")
        .to_string();
    for (step, token) in [
        ("validate", &loader),
        ("approve", &approver),
        ("activate", &approver),
    ] {
        let answer = app
            .post(&format!("/api/v1/datasets/{id}/{step}"), token)
            .await;
        assert_eq!(answer.status, 200, "{step}: {}", answer.text());
    }
}

/// A server on a loopback port with its stop switch.
struct Running {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The real app alone, through `server::serve_on`.
    async fn real(test: &TestApp) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving =
            server::serve_on(listener, test.app.clone(), ServerConfig::default(), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            serving.await.expect("server stops cleanly");
        });
        Running { base, stop, task }
    }

    /// The real router behind the matrix stand-in.
    async fn with_mock(test: &TestApp, mock: Arc<Mock>) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        // The stand-in answers the matrix routes first; everything else
        // (UI, taxonomy, auth) falls through to the real router.
        let real = server::router(test.app.clone(), ServerConfig::default());
        let router = mock::router(mock).fallback_service(real);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("mock server stops cleanly");
        });
        Running { base, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task did not panic");
    }
}

/// Whether the browser test can run: skips outside CI when the browser is
/// missing, panics with the fix in CI.
fn browser_available() -> bool {
    if std::env::var("NEXUS_ATTACK_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("NEXUS_ATTACK_SKIP_BROWSER=1: browser test skipped");
        return false;
    }
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    // On a developer's machine without the browser the test says how to
    // get it and steps aside; CI (which sets CI=true and runs .ci/ui-deps
    // first) must never skip it.
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if !missing.is_empty() && !in_ci {
        eprintln!(
            "browser test skipped: {} missing; run `.ci/ui-deps` (as root) to install \
             Debian's chromium and chromium-driver",
            missing.join(" and ")
        );
        return false;
    }
    assert!(
        missing.is_empty(),
        "{} missing: run `.ci/ui-deps` (as root) to install Debian's chromium and \
         chromium-driver, or set NEXUS_ATTACK_SKIP_BROWSER=1 to skip this test",
        missing.join(" and ")
    );
    true
}

// ---------------------------------------------------------------- steps

async fn log_in(browser: &Session, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    let field = browser.find("#token").await;
    assert!(browser.displayed(&field).await, "login form shown first");
    browser.keys(&field, token).await;
    browser.keys(&field, ENTER).await;
}

/// Waits until the matrix has been painted (`data-state` set).
async fn matrix_state(browser: &Session) -> String {
    browser
        .wait_for("the matrix", || async move {
            let matrix = browser.find("#matrix").await;
            browser.attribute(&matrix, "data-state").await
        })
        .await
}

async fn cell(browser: &Session, tactic: &str, technique: &str) -> crate::webdriver::Element {
    browser
        .find(&format!(
            "section.tactic[data-tactic=\"{tactic}\"] button.cell[data-technique=\"{technique}\"]"
        ))
        .await
}

async fn figure_text(browser: &Session, tactic: &str, technique: &str) -> String {
    browser
        .wait_for("a shown figure", || async move {
            let css = format!(
                "section.tactic[data-tactic=\"{tactic}\"] button.cell[data-technique=\"{technique}\"] .figure.shown"
            );
            let found = browser.find_all(&css).await.into_iter().next()?;
            Some(browser.text(&found).await)
        })
        .await
}

// ----------------------------------------------------------------- test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_flow_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let test = TestApp::new("sqlite").await;
    activate_enterprise_18(&test).await;
    let analyst = test.token("acme", Role::Analyst).await;
    let artifacts = artifacts_dir();

    let driver = Driver::start().await;
    let session = driver.session().await;
    let browser = &session;

    // ---- The real app and its matrix API, before any alert is ingested.
    let real = Running::real(&test).await;

    // A wrong token is refused on the login form with the API's message.
    log_in(browser, &real.base, "not-a-token").await;
    let refused = browser.wait_text("#login-error", |t| !t.is_empty()).await;
    assert!(refused.contains("unauthenticated"), "{refused}");
    assert!(browser.displayed(&browser.find("#login").await).await);

    log_in(browser, &real.base, &analyst).await;
    assert_eq!(matrix_state(browser).await, "loaded");
    let status = browser.wait_text("#status", |t| !t.is_empty()).await;
    assert!(status.contains("0 active cells"), "{status}");
    assert!(status.contains("No mapped activity"), "{status}");
    // The token stays out of the URL and in this tab's sessionStorage.
    let url = browser.script("return location.href").await;
    assert!(!url.as_str().unwrap_or_default().contains(&analyst));
    assert_eq!(
        browser
            .script("return sessionStorage.getItem('nexus-attack.token')")
            .await,
        Value::String(analyst.clone())
    );
    let release = browser.wait_text("#release", |t| !t.is_empty()).await;
    assert_eq!(release, "release 18.1");

    // Tactic columns in the matrix order of the raw bundle, names shown.
    let expected_tactics = tactics_in_matrix_order();
    assert_eq!(expected_tactics.len(), 14);
    let columns = browser.find_all("section.tactic").await;
    assert_eq!(columns.len(), expected_tactics.len());
    for (column, (id, _)) in columns.iter().zip(&expected_tactics) {
        assert_eq!(
            browser.attribute(column, "data-tactic-id").await.as_deref(),
            Some(id.as_str())
        );
    }
    let headings = browser.find_all("section.tactic .tactic-name").await;
    let mut shown = Vec::new();
    for heading in &headings {
        shown.push(browser.text(heading).await);
    }
    let names: Vec<String> = expected_tactics.iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(shown, names, "tactic headings, left to right");

    // T1059 in Execution, its sub-techniques folded away.
    let t1059 = cell(browser, "execution", "T1059").await;
    let t1059_text = browser.text(&t1059).await;
    assert!(
        t1059_text.contains(&technique_name("T1059")) && t1059_text.contains("T1059"),
        "{t1059_text}"
    );
    let toggle = browser
        .find(
            "section.tactic[data-tactic=\"execution\"] button.sub-toggle[data-technique=\"T1059\"]",
        )
        .await;
    assert_eq!(
        browser.attribute(&toggle, "aria-expanded").await.as_deref(),
        Some("false")
    );
    let sub_css = "section.tactic[data-tactic=\"execution\"] #subs-execution-T1059 button.cell";
    let subs = browser.find_all(sub_css).await;
    let expected_subs = live_subtechniques("T1059", "execution");
    assert!(expected_subs.len() >= 10, "T1059 has many sub-techniques");
    assert_eq!(subs.len(), expected_subs.len());
    assert!(!browser.displayed(&subs[0]).await, "folded at first");

    // Keyboard: Enter opens, Space closes.
    browser.keys(&toggle, ENTER).await;
    assert_eq!(
        browser.attribute(&toggle, "aria-expanded").await.as_deref(),
        Some("true")
    );
    let mut shown_subs = BTreeSet::new();
    for sub in &browser.find_all(sub_css).await {
        assert!(browser.displayed(sub).await, "expanded sub-technique shown");
        shown_subs.insert(
            browser
                .attribute(sub, "data-technique")
                .await
                .unwrap_or_default(),
        );
    }
    assert_eq!(shown_subs, expected_subs);
    browser.keys(&toggle, SPACE).await;
    assert_eq!(
        browser.attribute(&toggle, "aria-expanded").await.as_deref(),
        Some("false")
    );
    assert!(!browser.displayed(&subs[0]).await, "folded again");

    // Heatmap mode: label and formula change.
    let count_label = browser.text(&browser.find("#mode-label").await).await;
    let count_formula = browser.text(&browser.find("#formula").await).await;
    assert_eq!(count_label, "raw count");
    browser.click(&browser.find("#mode-intensity").await).await;
    let label = browser.wait_text("#mode-label", |t| t != count_label).await;
    assert_eq!(label, "weighted intensity");
    let formula = browser.text(&browser.find("#formula").await).await;
    assert_ne!(formula, count_formula);
    // The real API's formula, shown beside the picture.
    assert!(formula.contains("severity weight"), "{formula}");

    // Filters reach the API, which still finds nothing.
    browser.select("#f-source", "rule").await;
    browser.click(&browser.find("#apply").await).await;
    let status = browser
        .wait_text("#status", |t| t.contains("active cells"))
        .await;
    assert!(status.contains("No mapped activity"), "{status}");

    // Drilldown and export work on an empty view.
    browser.click(&t1059).await;
    let note = browser
        .wait_text("#drilldown-body .drill-empty", |t| !t.is_empty())
        .await;
    assert!(note.contains("No alerts or incidents"), "{note}");
    let title = browser.text(&browser.find("#drilldown-title").await).await;
    assert!(title.starts_with("T1059 "), "{title}");
    browser.click(&browser.find("#export-csv").await).await;
    let status = browser.wait_text("#status", |t| t.contains("xport")).await;
    assert!(status.contains("Exported"), "{status}");
    assert!(browser.text(&browser.find("#error").await).await.is_empty());

    // Escape closes the drilldown and gives the focus back to the cell.
    browser.keys(&browser.active().await, ESCAPE).await;
    assert!(!browser.displayed(&browser.find("#drilldown").await).await);
    assert_eq!(browser.active().await, t1059, "focus back on the cell");
    browser.click(&t1059).await;

    let empty_png = artifacts.join("matrix-no-data.png");
    browser.screenshot(&empty_png).await;
    println!("screenshot: {}", empty_png.display());
    real.stop().await;

    // ---- The real app with the matrix API contract served by the mock.
    let stand_in = Mock::new(&analyst);
    let mocked = Running::with_mock(&test, stand_in.clone()).await;
    log_in(browser, &mocked.base, &analyst).await;
    assert_eq!(matrix_state(browser).await, "loaded");

    // Counts per cell as the API gave them; tactic IDs resolve too.
    let t1059 = cell(browser, "execution", "T1059").await;
    assert_eq!(figure_text(browser, "execution", "T1059").await, "12");
    assert_eq!(
        browser
            .attribute(&t1059, "data-low-confidence-share")
            .await
            .as_deref(),
        Some("0.250")
    );
    let anomaly = browser
        .find("section.tactic[data-tactic=\"execution\"] button.cell[data-technique=\"T1059\"] .anomaly")
        .await;
    assert!(browser.displayed(&anomaly).await, "anomaly flag shown");
    assert_eq!(figure_text(browser, "persistence", "T1053").await, "3");
    let t1053_elsewhere = cell(browser, "execution", "T1053").await;
    assert_eq!(
        browser
            .attribute(&t1053_elsewhere, "data-count")
            .await
            .as_deref(),
        Some("0"),
        "a cell counts in the tactic the API names only"
    );

    // Intensity mode shows the API's formula verbatim and intensities.
    browser.click(&browser.find("#mode-intensity").await).await;
    browser
        .wait_text("#mode-label", |t| t == "weighted intensity")
        .await;
    let formula = browser.text(&browser.find("#formula").await).await;
    assert!(formula.contains(FORMULA), "{formula}");
    assert_eq!(figure_text(browser, "execution", "T1059").await, "30.5");
    browser.click(&browser.find("#mode-count").await).await;
    browser.wait_text("#mode-label", |t| t == "raw count").await;

    // A filter reaches the API and changes the picture.
    browser.select("#f-source", "rule").await;
    browser.select("#f-band", "high").await;
    browser.click(&browser.find("#apply").await).await;
    let expected = mock::t1059_count(Some("rule")).to_string();
    let expected = expected.as_str();
    browser
        .wait_for("the filtered count", || async move {
            let count = figure_text(browser, "execution", "T1059").await;
            (count == expected).then_some(())
        })
        .await;
    let seen = stand_in.seen();
    assert!(
        seen.iter()
            .any(|u| u.contains("source=rule") && u.contains("band=high")),
        "{seen:?}"
    );

    // Drilldown: the incident, the alert with source, confidence,
    // evidence and override history.
    let toggle = browser
        .find(
            "section.tactic[data-tactic=\"execution\"] button.sub-toggle[data-technique=\"T1059\"]",
        )
        .await;
    browser.keys(&toggle, ENTER).await;
    let t1059 = cell(browser, "execution", "T1059").await;
    browser.keys(&t1059, ENTER).await;
    let alert = browser
        .wait_for("the drilldown's alert", || async move {
            let found = browser.find_all("#drilldown-body .drill-item").await;
            let first = found.first()?;
            Some(browser.text(first).await)
        })
        .await;
    assert_eq!(
        browser.find_all("#drilldown-body .drill-item").await.len(),
        1
    );
    for fact in [
        "alert-42",
        "rule",
        "0.90 (high)",
        "process.cmd_line = powershell -enc SQBFAFgA (matched Suspicious Encoded PowerShell Command Line)",
        "wrong_subtechnique",
        "T1059 → T1059.001",
        "incident-7",
    ] {
        assert!(alert.contains(fact), "drilldown shows {fact}: {alert}");
    }
    let incident = browser
        .text(&browser.find("#drilldown-body .drill-incident").await)
        .await;
    assert!(
        incident.contains("Hands-on-keyboard on host-12")
            && incident.contains("open")
            && incident.contains("holds 1 alert"),
        "{incident}"
    );
    assert!(
        stand_in
            .seen()
            .iter()
            .any(|u| u.starts_with("/api/v1/matrix/drilldown?")
                && u.contains("tactic=TA0002")
                && u.contains("technique=T1059")
                && u.contains("source=rule")),
        "drilldown asked with the cell and the filters"
    );
    // Focus moved into the panel, for keyboard users.
    let focused = browser.active().await;
    assert_eq!(focused, browser.find("#drilldown-title").await);

    // Export: the file the API names.
    browser.click(&browser.find("#export-csv").await).await;
    let status = browser
        .wait_text("#status", |t| t.starts_with("Exported"))
        .await;
    assert!(status.contains("acme-matrix.csv"), "{status}");

    // Readable at 1280 px: the page never scrolls sideways, only the
    // matrix box does; no technique name is cut inside its cell.
    let overflow = browser
        .script(
            "const d = document.documentElement;
             const wide = [...document.querySelectorAll('body *')]
               .filter(e => e.getBoundingClientRect().right > d.clientWidth + 1
                 && !e.closest('.matrix-scroll'))
               .map(e => e.tagName + '#' + e.id + '.' + e.className);
             const clipped = [...document.querySelectorAll('.cell-name')]
               .filter(e => e.scrollWidth > e.clientWidth + 1).length;
             return { page: d.scrollWidth - d.clientWidth, wide, clipped,
                      matrix: document.querySelector('.matrix-scroll').scrollWidth };",
        )
        .await;
    assert_eq!(overflow["page"], 0, "page scrolls sideways: {overflow}");
    assert_eq!(overflow["clipped"], 0, "clipped names: {overflow}");
    assert!(
        overflow["matrix"].as_u64().unwrap_or(0) > 1280,
        "14 columns scroll inside the matrix box: {overflow}"
    );

    let screenshot = artifacts.join("matrix-heatmap.png");
    let bytes = browser.screenshot(&screenshot).await;
    assert!(bytes > 10_000, "a real picture, not a blank page");
    println!("screenshot: {}", screenshot.display());

    // The token never travelled in a URL.
    assert!(stand_in.seen().iter().all(|u| !u.contains(&analyst)));

    // A revoked token ends the session with the API's message.
    stand_in.revoked.store(true, Ordering::SeqCst);
    browser.click(&browser.find("#apply").await).await;
    let message = browser.wait_text("#login-error", |t| !t.is_empty()).await;
    assert!(message.contains("revoked"), "{message}");
    assert_eq!(
        browser
            .script("return sessionStorage.getItem('nexus-attack.token')")
            .await,
        Value::Null,
        "the token is forgotten"
    );

    // No script error and no Content-Security-Policy violation on the way
    // (the 401s and 404s the flow provoked on purpose are logged too, as
    // failed loads, and are not script errors).
    let console = browser.console().await;
    let broken: Vec<&String> = console
        .iter()
        .filter(|m| {
            m.contains("Uncaught")
                || m.contains("Content Security Policy")
                || m.contains("TypeError")
                || m.contains("SyntaxError")
        })
        .collect();
    assert!(broken.is_empty(), "console errors: {broken:#?}");
    assert!(
        console.iter().any(|m| m.contains("401")),
        "the console is really read: the provoked 401 is in it: {console:#?}"
    );

    mocked.stop().await;

    // ---- The real app with real activity: a lead overrides from the
    // drilldown and sees the new mapping.
    let lead = test.token("acme", Role::Lead).await;
    let (alert_id, cell_key) = real_activity(&test, &analyst).await;
    let real = Running::real(&test).await;
    log_in(browser, &real.base, &lead).await;
    assert_eq!(matrix_state(browser).await, "loaded");
    override_from_the_drilldown(browser, &test, &lead, &alert_id, &cell_key).await;

    let override_png = artifacts.join("drilldown-override.png");
    let bytes = browser.screenshot(&override_png).await;
    assert!(bytes > 10_000, "a real picture, not a blank page");
    println!("screenshot: {}", override_png.display());

    let console = browser.console().await;
    let broken: Vec<&String> = console
        .iter()
        .filter(|m| {
            m.contains("Uncaught")
                || m.contains("Content Security Policy")
                || m.contains("TypeError")
                || m.contains("SyntaxError")
        })
        .collect();
    assert!(broken.is_empty(), "console errors: {broken:#?}");

    session.quit().await;
    real.stop().await;
}

/// A cell as the page names it: tactic shortname and technique ID.
struct CellKey {
    tactic: String,
    technique: String,
}

/// Imports the 2026-01-01 Sigma pack and the shared alerts into `acme`
/// through the API, puts the first alert of the first active technique
/// cell into an incident, and answers that alert and cell.
async fn real_activity(test: &TestApp, analyst: &str) -> (String, CellKey) {
    let engineer = test.token("acme", Role::Engineer).await;
    let pack =
        std::fs::read(crate::helpers::shared_dir().join("sigma/sigma-rules-c5e6d0ecd.tar.gz"))
            .expect("read the Sigma pack");
    let imported = test
        .send(
            axum::http::Method::POST,
            "/api/v1/rules/sigma?file_name=sigma-rules-c5e6d0ecd.tar.gz",
            Some(&engineer),
            Some(("application/gzip", pack)),
        )
        .await;
    assert!(imported.status.is_success(), "{}", imported.text());
    let feed =
        std::fs::read(crate::helpers::shared_dir().join("alerts/sigma-regression-alerts.ndjson"))
            .expect("read the shared alerts");
    let bulk = test
        .send(
            axum::http::Method::POST,
            "/api/v1/alerts/bulk",
            Some(&engineer),
            Some(("application/x-ndjson", feed)),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text());

    let matrix = test.get("/api/v1/matrix", analyst).await.json();
    let cell = matrix["data"]["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| !c["technique"].as_str().unwrap_or(".").contains('.'))
        .expect("an active technique cell")
        .clone();
    let key = CellKey {
        tactic: cell["tactic_shortname"].as_str().expect("shortname").into(),
        technique: cell["technique"].as_str().expect("technique").into(),
    };
    let drilldown = test
        .get(
            &format!(
                "/api/v1/matrix/drilldown?tactic={}&technique={}",
                cell["tactic"].as_str().expect("tactic"),
                key.technique
            ),
            analyst,
        )
        .await
        .json();
    let alert_id = drilldown["data"]["alerts"][0]["alert_id"]
        .as_str()
        .expect("an alert behind the cell")
        .to_string();
    let created = test
        .post_json(
            "/api/v1/incidents",
            analyst,
            serde_json::json!({"title": "Node.js child process on host-01", "severity": "high",
                               "alerts": [alert_id]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    (alert_id, key)
}

/// Opens the cell by keyboard, checks the incident row and the alert's
/// evidence against the API, overrides the alert's technique with a reason
/// and waits for the page to show the new mapping.
async fn override_from_the_drilldown(
    browser: &Session,
    test: &TestApp,
    lead: &str,
    alert_id: &str,
    key: &CellKey,
) {
    let before = test
        .get(&format!("/api/v1/alerts/{alert_id}"), lead)
        .await
        .json();
    let evidence: Vec<String> = before["data"]["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter(|c| c["technique"] == key.technique.as_str())
        .flat_map(|c| c["evidence"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            format!(
                "{} = {} (matched {})",
                e["field"].as_str().unwrap_or_default(),
                e["value"].as_str().unwrap_or_default(),
                e["matched"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(!evidence.is_empty(), "the rule candidate has evidence");
    let target = if key.technique == "T1003" {
        "T1005"
    } else {
        "T1003"
    };

    let opener = cell(browser, &key.tactic, &key.technique).await;
    browser.keys(&opener, ENTER).await;
    let incident = browser
        .wait_text("#drilldown-body .drill-incident", |t| !t.is_empty())
        .await;
    assert!(
        incident.contains("Node.js child process on host-01")
            && incident.contains("open")
            && incident.contains("high"),
        "{incident}"
    );
    let article = format!("#drilldown-body article.drill-item[data-id=\"{alert_id}\"]");
    let shown = browser
        .script(&format!(
            "return [...document.querySelectorAll('{} .drill-evidence li')].map(e => e.textContent)",
            article.replace('\'', "\\'")
        ))
        .await;
    let shown: Vec<String> = serde_json::from_value(shown).expect("evidence texts");
    for item in &evidence {
        assert!(shown.contains(item), "evidence {item} shown: {shown:?}");
    }

    // The override form, by keyboard where a user would use it.
    let toggle = browser
        .find(&format!("{article} button.override-toggle"))
        .await;
    browser.keys(&toggle, ENTER).await;
    let technique = browser
        .find(&format!("{article} input[name=technique]"))
        .await;
    assert!(browser.displayed(&technique).await, "the form opened");
    browser.keys(&technique, target).await;
    browser
        .select(&format!("{article} select[name=reason]"), "wrong_technique")
        .await;
    browser
        .keys(
            &browser
                .find(&format!("{article} textarea[name=notes]"))
                .await,
            "credential dumping, not execution",
        )
        .await;
    browser
        .click(
            &browser
                .find(&format!("{article} button.override-submit"))
                .await,
        )
        .await;

    let current = browser
        .wait_text(&format!("{article} .drill-current"), |t| !t.is_empty())
        .await;
    assert!(
        current.contains(target) && current.contains("manual"),
        "{current}"
    );
    assert!(
        !current.contains(&format!("{} ", key.technique)),
        "{current}"
    );
    let message = browser
        .text(
            &browser
                .find(&format!("{article} .drill-action-message"))
                .await,
        )
        .await;
    assert_eq!(message, "Override applied.");
    let history = browser
        .text(&browser.find(&format!("{article} .drill-history-box")).await)
        .await;
    assert!(
        history.contains("wrong_technique")
            && history.contains(&format!("{} → {target}", key.technique)),
        "{history}"
    );

    // What the page shows is what the API now holds.
    let after = test
        .get(&format!("/api/v1/alerts/{alert_id}"), lead)
        .await
        .json();
    let techniques: Vec<&str> = after["data"]["canonical"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["technique"].as_str())
        .collect();
    assert!(techniques.contains(&target), "{techniques:?}");
    assert!(
        !techniques.contains(&key.technique.as_str()),
        "{techniques:?}"
    );
}
