//! The audit log, scoped by the use case to the caller's org (platform
//! roles also see platform events).

use axum::extract::State;
use serde::Deserialize;
use service::AuditEvent;
use service::access::Action;

use super::{page_envelope, page_request};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::AfterRoleQuery;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/audit`
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<AuditQuery>,
) -> Result<Envelope<Vec<AuditEvent>>, ApiError> {
    let query = query
        .read(&state, &principal, Action::ReadAudit, ("audit", "*"))
        .await?;
    let page = page_request(query.cursor, query.limit.as_deref())?;

    let events = state.app.audit_list(&principal.actor(), &page).await?;

    Ok(page_envelope(
        events.items,
        events.next_cursor,
        page.effective_limit(),
    ))
}
