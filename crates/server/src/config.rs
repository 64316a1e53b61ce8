//! Server settings: where to listen and the hardening limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Everything the HTTP layer needs to know that is not business data.
///
/// `Default` gives the values an operator gets without configuration; the
/// CLI overrides single fields from its flags. Which domains `/readyz`
/// requires is the service's setting (`service::AppConfig`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; loopback by default so a fresh install is not exposed.
    pub addr: SocketAddr,
    /// Largest request body accepted by ordinary routes, in bytes.
    pub body_limit: usize,
    /// Largest request body accepted by dataset upload, in bytes: a gzipped
    /// Enterprise bundle is ~5 MB, an uncompressed one ~50 MB.
    pub upload_limit: usize,
    /// Largest NDJSON body accepted by bulk alert ingestion, in bytes: an
    /// OCSF detection finding weighs 2 to 5 kB, so the default takes some
    /// ten thousand alerts per request.
    pub bulk_limit: usize,
    /// Time a request may take before it is answered with `timeout`.
    pub request_timeout: Duration,
    /// How long `POST /api/v1/remap` waits for its run before answering
    /// `202 Accepted` while the run goes on; well below `request_timeout`.
    pub remap_wait: Duration,
    /// Time a client has to send a request's headers (slow-client defence).
    pub header_read_timeout: Duration,
    /// On shutdown, how long requests in flight may still run.
    pub shutdown_grace: Duration,
    /// Per-token rate limit; `None` turns rate limiting off.
    pub rate_limit: Option<RateLimit>,
    /// Key that signs export download URLs (`NEXUS_ATTACK_EXPORT_KEY`);
    /// the default is a random key of this process (ephemeral).
    pub export_key: service::ExportKey,
    /// How long a signed export URL stays valid.
    pub export_url_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            body_limit: 2 * 1024 * 1024,
            upload_limit: 64 * 1024 * 1024,
            bulk_limit: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            remap_wait: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            rate_limit: Some(RateLimit::default()),
            export_key: service::ExportKey::random(),
            export_url_ttl: service::DEFAULT_EXPORT_TTL,
        }
    }
}

/// A token bucket per API token: `burst` requests at once, refilled at
/// `per_second` requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per token.
    pub per_second: f64,
    /// Requests a token may make at once after being idle.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 100,
        }
    }
}
