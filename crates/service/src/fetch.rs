//! Reading bundle bytes from a file or an http(s) URL.
//!
//! Bytes are returned as published: gzip is detected and undone by the
//! parser, so the stored bytes and their SHA-256 are those of the source.

use std::time::Duration;

use crate::{Result, ServiceError};

/// Where a release comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local file.
    Path(std::path::PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
}

impl Location {
    /// Reads `source` as a URL when it has an http(s) scheme, else as a
    /// path; other URL schemes are refused rather than read as odd paths.
    pub(crate) fn parse(source: &str) -> Result<Location> {
        let lower = source.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Location::Url(source.to_string()));
        }
        if let Some((scheme, _)) = source.split_once("://") {
            return Err(ServiceError::InvalidInput {
                field: "source".into(),
                message: format!(
                    "`{scheme}://` is not supported; give a file path or an http(s) URL"
                ),
            });
        }
        Ok(Location::Path(source.into()))
    }

    /// The last path segment, from which the parser may read the identity
    /// (`enterprise-attack-18.1.json.gz`).
    pub(crate) fn file_name(&self) -> Option<String> {
        match self {
            Location::Path(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Location::Url(u) => {
                let path = u.split(['?', '#']).next().unwrap_or(u);
                path.rsplit('/')
                    .next()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            }
        }
    }
}

/// Reads at most `max_bytes` from a file or URL.
pub(crate) async fn fetch(source: &str, max_bytes: usize) -> Result<Vec<u8>> {
    let fail = |message: String| ServiceError::Fetch {
        source_name: source.to_string(),
        message,
    };
    let too_large = |size: u64| {
        fail(format!(
            "{size} bytes is more than the {max_bytes}-byte limit for a bundle"
        ))
    };

    match Location::parse(source)? {
        Location::Path(path) => {
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| fail(e.to_string()))?;
            if !meta.is_file() {
                return Err(fail("not a regular file".into()));
            }
            if meta.len() > max_bytes as u64 {
                return Err(too_large(meta.len()));
            }
            tokio::fs::read(&path)
                .await
                .map_err(|e| fail(e.to_string()))
        }
        Location::Url(url) => {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(15))
                .timeout(Duration::from_secs(300))
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let mut response = client
                .get(&url)
                .send()
                .await
                .map_err(|e| fail(e.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(fail(format!("HTTP status {}", response.status())));
            }
            if let Some(len) = response.content_length().filter(|l| *l > max_bytes as u64) {
                return Err(too_large(len));
            }
            // Read in chunks so that a server lying about (or omitting) its
            // length cannot make us buffer more than the limit.
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| fail(e.without_url().to_string()))?
            {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > max_bytes {
                    return Err(too_large(bytes.len() as u64));
                }
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_classified_by_scheme() {
        assert_eq!(
            Location::parse("https://x/enterprise-attack-18.1.json?a=b").unwrap(),
            Location::Url("https://x/enterprise-attack-18.1.json?a=b".into())
        );
        assert_eq!(
            Location::parse("https://x/enterprise-attack-18.1.json?a=b")
                .unwrap()
                .file_name()
                .as_deref(),
            Some("enterprise-attack-18.1.json")
        );
        assert_eq!(
            Location::parse("/data/ics-attack-17.1.json.gz")
                .unwrap()
                .file_name()
                .as_deref(),
            Some("ics-attack-17.1.json.gz")
        );
        assert!(Location::parse("ftp://x/y.json").is_err());
    }
}
