//! Extractors whose rejections are answered in the error envelope.
//!
//! axum's own extractors answer a bad path, query or body with plain text;
//! these wrappers turn every rejection into an [`ApiError`], so a client
//! always gets `{"error": {...}}`. [`AfterRole`], [`AfterRoleQuery`] and
//! [`PathId`] put a body, a query string and a path id off until the
//! caller's role has been checked, so a caller who may not act is told
//! `403` (and audited) whatever it sent, never `400`.

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use service::Principal;
use service::access::Action;

use crate::AppState;
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

/// A body read only once the caller's role allows the action: a caller who
/// may not act is told `403 forbidden` whatever it sent (a malformed,
/// incomplete or oversized body, the wrong media type), and the refusal is
/// audited as the use case would audit it. Its body is not even read.
///
/// `E` is the body extractor ([`ApiJson`], [`ApiBytes`]); the handler takes
/// `AfterRole<E>` as its last argument and calls [`AfterRole::read`] with
/// the action and target the use case itself authorizes.
pub struct AfterRole<E> {
    request: Request,
    body: std::marker::PhantomData<fn() -> E>,
}

impl<S, E> FromRequest<S> for AfterRole<E>
where
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            request,
            body: std::marker::PhantomData,
        })
    }
}

impl<E> AfterRole<E>
where
    E: FromRequest<AppState, Rejection = ApiError>,
{
    /// Checks that `principal` may perform `action` on `target` (a denial is
    /// audited), then reads the body.
    pub async fn read(
        self,
        state: &AppState,
        principal: &Principal,
        action: Action,
        target: (&str, &str),
    ) -> Result<E, ApiError> {
        check_role(state, principal, action, target).await?;
        E::from_request(self.request, state).await
    }
}

/// Checks that `principal` may perform `action` on `target`; a denial is
/// audited by the use case's own check. Routes call it before reading
/// anything else the caller sent.
pub(crate) async fn check_role(
    state: &AppState,
    principal: &Principal,
    action: Action,
    target: (&str, &str),
) -> Result<(), ApiError> {
    state
        .app
        .check_permission(&principal.actor(), action, target)
        .await
        .map_err(ApiError::from)
}

/// A query string read only once the caller's role allows the action: the
/// query counterpart of [`AfterRole`]. A caller who may not act is told
/// `403 forbidden` whatever parameters it sent (unknown, malformed or out
/// of range), and the refusal is audited as the use case would audit it.
///
/// The handler takes `AfterRoleQuery<Q>` in place of `ApiQuery<Q>`, calls
/// [`AfterRoleQuery::read`] with the action and target the use case itself
/// authorizes, and checks the parameters' values only after that.
pub struct AfterRoleQuery<T> {
    uri: Uri,
    query: std::marker::PhantomData<fn() -> T>,
}

impl<S, T> FromRequestParts<S> for AfterRoleQuery<T>
where
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            uri: parts.uri.clone(),
            query: std::marker::PhantomData,
        })
    }
}

impl<T> AfterRoleQuery<T>
where
    T: DeserializeOwned,
{
    /// Checks that `principal` may perform `action` on `target` (a denial is
    /// audited), then parses the query string (rejected as `invalid_input`).
    pub async fn read(
        self,
        state: &AppState,
        principal: &Principal,
        action: Action,
        target: (&str, &str),
    ) -> Result<T, ApiError> {
        check_role(state, principal, action, target).await?;
        let axum::extract::Query(value) =
            axum::extract::Query::try_from_uri(&self.uri).map_err(ApiError::from)?;
        Ok(value)
    }
}

/// The `{id}` segment of a route, whose decoding answers only after the
/// role check: a segment that is not percent-encoded UTF-8 (`%ff`) is
/// `invalid_input`, but a caller who may not act is told `403` first.
///
/// The handler names [`PathId::target`] in the role check (the id, or the
/// segment as sent when it does not decode, so the audited refusal says
/// what was asked for) and takes the id with [`PathId::decoded`] after it.
#[derive(Debug)]
pub struct PathId {
    decoded: Result<String, ApiError>,
    raw: String,
}

impl<S> FromRequestParts<S> for PathId
where
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw_id(parts).unwrap_or_else(|| parts.uri.path().to_string());
        let decoded = ApiPath::<String>::from_request_parts(parts, state)
            .await
            .map(|ApiPath(id)| id);
        Ok(Self { decoded, raw })
    }
}

impl PathId {
    /// The id to name in the role check: decoded, or the segment as sent
    /// (still percent-encoded, so printable) when it does not decode.
    pub fn target(&self) -> &str {
        match &self.decoded {
            Ok(id) => id,
            Err(_) => &self.raw,
        }
    }

    /// The decoded id, or the `invalid_input` error of a segment that does
    /// not decode. Call it after the role check.
    pub fn decoded(self) -> Result<String, ApiError> {
        self.decoded
    }
}

/// The `{id}` segment of the request path as sent, found at the position
/// of `{id}` in the matched route template.
fn raw_id(parts: &Parts) -> Option<String> {
    let template = parts.extensions.get::<MatchedPath>()?;
    let position = template.as_str().split('/').position(|s| s == "{id}")?;
    parts
        .uri
        .path()
        .split('/')
        .nth(position)
        .map(str::to_string)
}
