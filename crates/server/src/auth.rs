//! Bearer-token authentication and the per-token rate limit.
//!
//! The token is checked by `service::App::authenticate` (which compares
//! hashes in constant time); this module only reads the header, records the
//! org in the request span and applies the rate limit. Role checks are not
//! made here: each use case asks `service::access` and audits a denial.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use service::{ErrorKind, Principal};

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Counter;

/// The identity behind a request's valid bearer token.
///
/// Taking this extractor makes a handler require authentication; it answers
/// `401 unauthenticated` without a valid token and `429 rate_limited` when
/// the token's bucket is empty.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = match authenticate(parts, state).await {
            Ok(principal) => principal,
            Err(error) => {
                if error.status == axum::http::StatusCode::UNAUTHORIZED {
                    state.metrics.increment(Counter::Unauthenticated);
                }
                return Err(error);
            }
        };
        tracing::Span::current().record("org", tracing::field::display(&principal.org));

        if let Some(limiter) = &state.limiter
            && let Err(wait) = limiter.check(principal.token_id.as_str())
        {
            state.metrics.increment(Counter::RateLimited);
            return Err(ApiError::rate_limited(wait));
        }
        Ok(Authenticated(principal))
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated("missing `Authorization: Bearer <token>` header")
    })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not valid text"))?;
    let token = bearer_token(value).ok_or_else(|| {
        ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
    })?;

    // The service's own message may say why (unknown, revoked); the answer
    // stays the same for every failure so tokens cannot be probed.
    state.app.authenticate(token).await.map_err(|error| {
        if error.kind() == ErrorKind::Unauthenticated {
            ApiError::unauthenticated("the bearer token is not valid")
        } else {
            ApiError::from(error)
        }
    })
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive, as
/// RFC 7235 says), or `None`.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer nxa_abc"), Some("nxa_abc"));
        assert_eq!(bearer_token("bearer   nxa_abc "), Some("nxa_abc"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("nxa_abc"), None);
    }
}
