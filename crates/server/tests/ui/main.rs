//! Tests of the web UI: the files as the server delivers them, and the
//! whole analyst flow in Debian's headless Chromium driven through
//! chromedriver (W3C WebDriver).
//!
//! Run `.ci/ui-deps` once to install `chromium` and `chromium-driver`; set
//! `NEXUS_ATTACK_SKIP_BROWSER=1` to skip the browser test where they cannot
//! be installed.

// The API suite's harness (fresh database, real router, raw bundle
// readings): shared by path so both suites start the app the same way.
// This binary uses only part of it.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod assets;
mod browser;
mod mock;
mod webdriver;
