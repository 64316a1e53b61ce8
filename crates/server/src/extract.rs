//! Extractors whose rejections are answered in the error envelope.
//!
//! axum's own extractors answer a bad path, query or body with plain text;
//! these wrappers turn every rejection into an [`ApiError`], so a client
//! always gets `{"error": {...}}`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The body limit of the matched route, put in the request extensions by the
/// router so a `payload_too_large` answer can say what the limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// Replaces a limit-less `payload_too_large` with one naming the limit.
fn with_limit(error: ApiError, limit: Option<BodyLimit>) -> ApiError {
    match limit {
        Some(BodyLimit(limit)) if error.code == "payload_too_large" => {
            ApiError::payload_too_large(Some(limit))
        }
        _ => error,
    }
}

/// Path parameters, rejected as `invalid_input`.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) = axum::extract::Path::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?;
        Ok(Self(value))
    }
}

/// Query parameters, rejected as `invalid_input`.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) = axum::extract::Query::from_request_parts(parts, state)
            .await
            .map_err(ApiError::from)?;
        Ok(Self(value))
    }
}

/// A JSON body, rejected as `invalid_input`, `unsupported_media_type` or
/// `payload_too_large`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let axum::Json(value) = axum::Json::from_request(req, state)
            .await
            .map_err(|e| with_limit(ApiError::from(e), limit))?;
        Ok(Self(value))
    }
}

/// The raw body, rejected as `payload_too_large` past the route's limit.
#[derive(Debug, Clone)]
pub struct ApiBytes(pub axum::body::Bytes);

impl<S> FromRequest<S> for ApiBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| with_limit(ApiError::from(e), limit))?;
        Ok(Self(bytes))
    }
}
