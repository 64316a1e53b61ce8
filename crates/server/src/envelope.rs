//! The one response envelope every `/api/v1` success uses.
//!
//! `{"data": ..., "meta": {"next_cursor": ..., ...}}`. Errors use the
//! matching `{"error": {...}}` shape from [`crate::error`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// A successful answer: the payload and its metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<T> {
    /// The payload.
    pub data: T,
    /// Pagination and other facts about the payload.
    pub meta: Meta,
    #[serde(skip)]
    status: StatusCode,
}

/// Metadata beside the payload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Meta {
    /// Opaque cursor of the next page; `null` on the last page and on
    /// answers that are not paginated.
    pub next_cursor: Option<String>,
    /// Further facts (page limit, dataset a taxonomy read came from, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl<T: Serialize> Envelope<T> {
    /// A `200 OK` answer without pagination.
    pub fn ok(data: T) -> Self {
        Self {
            data,
            meta: Meta::default(),
            status: StatusCode::OK,
        }
    }

    /// A `201 Created` answer.
    pub fn created(data: T) -> Self {
        Self {
            status: StatusCode::CREATED,
            ..Self::ok(data)
        }
    }

    /// A `202 Accepted` answer: the work goes on after it.
    pub fn accepted(data: T) -> Self {
        Self {
            status: StatusCode::ACCEPTED,
            ..Self::ok(data)
        }
    }

    /// A page of a list, with the cursor of the next page if there is one.
    pub fn page(data: T, next_cursor: Option<String>) -> Self {
        let mut envelope = Self::ok(data);
        envelope.meta.next_cursor = next_cursor;
        envelope
    }

    /// Adds one metadata field.
    pub fn with_meta(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.meta.extra.insert(key.to_string(), value.into());
        self
    }
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}
