//! A small W3C WebDriver client over reqwest, and the chromedriver process
//! it talks to. The protocol is a handful of JSON calls; speaking it
//! directly keeps the test free of a browser-automation framework.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Debian's Chromium, which the UI must work in.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromium-driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key WebDriver's element-identifier field is named by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Unicode private-use code points WebDriver maps to keys.
pub const ENTER: &str = "\u{E007}";
/// The Escape key.
pub const ESCAPE: &str = "\u{E00C}";
/// The space bar.
pub const SPACE: &str = " ";

/// A running chromedriver, stopped when dropped.
pub struct Driver {
    child: Child,
    base: String,
    _profile: tempfile::TempDir,
    profile_dir: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until it is
    /// ready.
    pub async fn start() -> Driver {
        // Ask the kernel for a free port, then hand it to chromedriver; the
        // short window in between is harmless on a test machine.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let profile_dir = profile.path().to_path_buf();
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _profile: profile,
            profile_dir,
        };

        let client = http();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .and_then(|r| r.error_for_status().ok());
            if let Some(response) = ready
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready on port {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a headless Chromium session at 1280 x 900.
    pub async fn session(&self) -> Session {
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                // Keeps the console so tests can check for script errors and
                // Content-Security-Policy violations.
                "goog:loggingPrefs": { "browser": "ALL" },
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-dev-shm-usage",
                        format!("--user-data-dir={}", self.profile_dir.display()),
                        "--window-size=1280,900",
                    ],
                },
            }},
        });
        let client = http();
        let response = client
            .post(format!("{}/session", self.base))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers POST /session");
        let body: Value = response.json().await.expect("session answer is JSON");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start: {body}"))
            .to_string();
        Session {
            client,
            url: format!("{}/session/{id}", self.base),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver's own shutdown closes the Chromium it started, also
        // when a failed assertion skipped `Session::quit`. The blocking
        // client needs a thread of its own outside the async runtime.
        let shutdown = format!("{}/shutdown", self.base);
        let _ = std::thread::spawn(move || {
            reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .and_then(|client| client.get(shutdown).send())
        })
        .join();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Our own child, by handle: nothing else is touched.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// One browser session.
pub struct Session {
    client: reqwest::Client,
    url: String,
}

/// A DOM element of the session's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let mut request = self.client.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: answer is not JSON: {e}"));
        assert!(
            status.is_success(),
            "WebDriver {method} {path} answered {status}: {}",
            body["value"]
        );
        body["value"].clone()
    }

    /// Loads a URL and waits for the document.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Every element matching a CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let value = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        value
            .as_array()
            .expect("element list")
            .iter()
            .map(|e| {
                let id = e[ELEMENT_KEY]
                    .as_str()
                    .unwrap_or_else(|| panic!("`{css}`: no element id in {e}"));
                Element(id.to_string())
            })
            .collect()
    }

    /// The one element matching a CSS selector (panics on none or several).
    pub async fn find(&self, css: &str) -> Element {
        let mut all = self.find_all(css).await;
        assert_eq!(all.len(), 1, "exactly one element matches `{css}`");
        all.remove(0)
    }

    /// Clicks an element.
    pub async fn click(&self, element: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            None,
        )
        .await;
    }

    /// Types into an element (which WebDriver focuses first).
    pub async fn keys(&self, element: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The rendered text of an element, as the user sees it.
    pub async fn text(&self, element: &Element) -> String {
        let value = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/text", element.0),
                None,
            )
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// An attribute of an element, `None` when absent.
    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{}/attribute/{name}", element.0),
                None,
            )
            .await;
        value.as_str().map(str::to_string)
    }

    /// Whether the element is rendered visibly.
    pub async fn displayed(&self, element: &Element) -> bool {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{}/displayed", element.0),
            None,
        )
        .await
            == true
    }

    /// Selects an option of a `<select>` by its value, as a user would:
    /// clicking the option.
    pub async fn select(&self, select_css: &str, value: &str) {
        let option = self
            .find(&format!("{select_css} option[value=\"{value}\"]"))
            .await;
        self.click(&option).await;
    }

    /// Runs a script in the page and answers its return value.
    pub async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// The element that has the keyboard focus.
    pub async fn active(&self) -> Element {
        let value = self
            .call(reqwest::Method::GET, "/element/active", None)
            .await;
        Element(
            value[ELEMENT_KEY]
                .as_str()
                .expect("active element")
                .to_string(),
        )
    }

    /// Saves a PNG screenshot of the viewport; answers its size in bytes.
    pub async fn screenshot(&self, path: &Path) -> usize {
        let value = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("screenshot is base64"))
            .expect("screenshot decodes");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        std::fs::write(path, &png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        png.len()
    }

    /// Polls `probe` every 100 ms until it answers `Some`, for at most 15 s.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of the element matching `css` satisfies `check`;
    /// answers the text.
    pub async fn wait_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        loop {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                last = self.text(&element).await;
                if check(&last) {
                    return last;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on the text of `{css}`; last seen: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The browser console messages since the last call (chromedriver's
    /// log extension; W3C WebDriver has no console endpoint).
    pub async fn console(&self) -> Vec<String> {
        let value = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await;
        value
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session, which closes Chromium.
    pub async fn quit(self) {
        let _ = self.client.delete(&self.url).send().await;
    }
}
