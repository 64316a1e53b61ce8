//! The one application error of the HTTP layer and its single mapping to a
//! status code and the error envelope
//! `{"error": {"code", "message", "details"}}`.
//!
//! Client errors are answered and logged at debug level only: a bad request
//! is not an operator's problem. Internal errors are answered with a generic
//! body and logged with their cause inside the request span, so no SQL, path
//! or stack trace reaches a client.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// How long a client is told to wait before retrying while the database
/// is unavailable: the pool's own acquire timeout is 10 s, so sooner
/// would mostly meet the same outage.
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(10);

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code clients may branch on.
    pub code: String,
    /// Human-readable explanation; never contains secrets, SQL or paths.
    pub message: String,
    /// Structured context (field, line, allowed values, ...).
    pub details: Option<Value>,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `invalid_input` naming the offending field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            .with_details(json!({ "field": field }))
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 404 `not_found` for an API resource. The body is the same whether the
    /// resource does not exist or belongs to another org.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the requested resource does not exist",
        )
    }

    /// 404 `route_not_found` for a path no route matches.
    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no API route matches this path; see /api/v1/openapi.json",
        )
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept this HTTP method; see /api/v1/openapi.json",
        )
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(limit: Option<usize>) -> Self {
        let error = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this route accepts",
        );
        match limit {
            Some(limit) => error.with_details(json!({ "limit_bytes": limit })),
            None => error,
        }
    }

    /// 429 `rate_limited` with the time to wait.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests for this token; retry later",
        )
        .with_details(json!({ "retry_after_seconds": seconds }));
        error.retry_after = Some(Duration::from_secs(seconds));
        error
    }

    /// 503 `timeout`: the request ran past the configured timeout.
    pub fn timeout(limit: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took longer than the server allows",
        )
        .with_details(json!({ "timeout_seconds": limit.as_secs_f64() }))
    }

    /// 503 `database_unavailable`: the database did not answer (no pooled
    /// connection in time, a broken connection): the same request may
    /// succeed once it answers again.
    pub fn database_unavailable() -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; retry later",
        )
        .with_details(json!({
            "dependency": "database",
            "retry_after_seconds": DATABASE_RETRY_AFTER.as_secs(),
        }));
        error.retry_after = Some(DATABASE_RETRY_AFTER);
        error
    }

    /// 500 `internal`: logs `cause` inside the current (request) span and
    /// answers a body that reveals nothing of it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %cause, source = ?cause.source(), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the cause is in the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::debug!(code = %self.code, message = %self.message, "client error");
        }
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            body["details"] = details;
        }

        let mut response = (self.status, Json(json!({ "error": body }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"nexus-attack\""),
            );
        }
        if let Some(wait) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&wait.as_secs().to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::payload_too_large(None);
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            rejection.body_text(),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(None),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "this route expects a JSON body with `Content-Type: application/json`",
            ),
            _ => {
                // The same reason codes a bulk line gets where they apply.
                let reason = match &rejection {
                    JsonRejection::JsonSyntaxError(_) => "invalid_json",
                    JsonRejection::JsonDataError(_) => "wrong_shape",
                    _ => "unreadable_body",
                };
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    rejection.body_text(),
                )
                .with_details(json!({ "field": "body", "reason": reason }))
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    /// An unknown parameter (a query struct refusing unknown fields) is
    /// named as the field, so a client sees which of its parameters is
    /// misspelt; other rejections name the query as a whole.
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        if let Some((name, expected)) = unknown_parameter(&text) {
            let name = service::echo(name);
            return ApiError::invalid_field(
                &name,
                format!("unknown query parameter `{name}`, expected {expected}"),
            );
        }
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", text)
            .with_details(json!({ "field": "query" }))
    }
}

/// The name and the expected names in serde's unknown-field message
/// (``unknown field `tactc`, expected one of `domain`, `from` ``).
fn unknown_parameter(text: &str) -> Option<(&str, &str)> {
    let (_, rest) = text.split_once("unknown field `")?;
    rest.split_once("`, expected ")
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            rejection.body_text(),
        )
        .with_details(json!({ "field": "path" }))
    }
}

impl From<service::ServiceError> for ApiError {
    /// The one mapping from a use case's error to an HTTP answer.
    fn from(error: service::ServiceError) -> Self {
        use service::{ErrorKind, ServiceError};

        let status = match error.kind() {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Internal => return ApiError::internal(&error),
            ErrorKind::Unavailable => {
                // The operator's problem, with the driver's cause; the
                // client learns only which dependency and to retry.
                tracing::error!(error = %error, "dependency unavailable");
                return ApiError::database_unavailable();
            }
        };

        // The body names only the kind of object, never the id asked for:
        // a missing object and another org's object must answer the same
        // bytes, whatever id was probed.
        if let ServiceError::NotFound { kind, id } = &error {
            // A domain is public ATT&CK vocabulary, not tenant data: naming
            // it leaks nothing and tells the caller which one lacks a dataset.
            if *kind == "active dataset of domain" {
                return ApiError::new(
                    status,
                    error.code(),
                    format!("no active dataset for domain {}", service::echo(id)),
                )
                .with_details(json!({ "kind": kind, "domain": service::echo(id) }));
            }
            return ApiError::new(status, error.code(), format!("{kind} not found"))
                .with_details(json!({ "kind": kind }));
        }

        let error_body = ApiError::new(status, error.code(), error.to_string());
        match error.details() {
            Some(details) => error_body.with_details(details),
            None => error_body,
        }
    }
}
