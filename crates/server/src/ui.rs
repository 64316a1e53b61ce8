//! The analyst web UI: static HTML, CSS and ES modules embedded in the
//! binary and served at `/` and `/ui/*`.
//!
//! The UI is a client of the public API like any other: it holds no secret
//! and reads everything through `/api/v1` with the analyst's bearer token.
//! These routes are therefore not API routes: they stay out of
//! [`crate::routes::route_table`], the OpenAPI document and the tenancy
//! suites, need no token, and carry no tenant data.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles
//! and API calls only from this origin, no inline script or style, no
//! framing. A stolen page cannot then run injected markup, and the UI never
//! needs an exception because it has no inline code by construction.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

/// The policy sent with every UI file. `connect-src 'self'` is what keeps
/// the token from being sent anywhere but this server; `form-action 'none'`
/// keeps a form from ever submitting natively (the script handles every
/// form, so a native submit could only leak the token into a request);
/// export downloads are `blob:` links, which navigation rather than
/// `default-src` governs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, its content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file of the UI. `include_bytes!` makes the binary self-contained:
/// `nexus-attack serve` needs no asset folder beside it.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../ui/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/api.js"),
    },
    Asset {
        name: "matrix.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../ui/matrix.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../ui/favicon.svg"),
    },
];

/// The UI routes: `/` and `/ui/` answer the page, `/ui/{file}` one asset.
/// Unknown files get the API's `route_not_found` envelope, like any
/// unmatched path.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(asset))
}

/// The names of the embedded files, for tests and diagnostics.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

async fn index() -> Response {
    asset(Path("index.html".to_string())).await
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return ApiError::route_not_found().into_response();
    };

    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary only; revalidating each load keeps
    // an upgraded server from running an old script against a new API.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_once_and_non_empty() {
        let mut names: Vec<&str> = asset_names().collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "asset listed twice");
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
    }

    #[test]
    fn scripts_insert_api_text_as_text_only() {
        // Technique names, evidence and override notes come from the API and
        // ultimately from alert feeds: markup in them must stay text.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let script = std::str::from_utf8(asset.bytes).expect("scripts are UTF-8");
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!script.contains(sink), "{} uses {sink}", asset.name);
            }
        }
    }

    #[test]
    fn no_inline_script_or_style_in_the_page() {
        // The CSP forbids inline code; the page must not rely on it.
        let index = ASSETS
            .iter()
            .find(|a| a.name == "index.html")
            .expect("the page is embedded");
        let page = std::str::from_utf8(index.bytes).expect("index.html is UTF-8");
        let scripts = page.matches("<script").count();
        let external = page.matches("<script type=\"module\" src=").count();
        assert_eq!(scripts, external, "every script is an external module");
        assert!(!page.contains("style="), "no inline style attribute");
        assert!(!page.contains("<style"), "no style element");
        let handlers = page.match_indices(" on").filter(|(at, _)| {
            let rest = &page[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handlers.count(), 0, "no inline event handler");
    }
}
