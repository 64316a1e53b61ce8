//! Notifications for the caller's role in its org: arbitration locks
//! (leads), misuse signals (admins), and for platform admins also the
//! platform's own (a broken audit chain). Another org's notification
//! answers exactly as a missing one.

use axum::extract::State;
use serde::Deserialize;
use service::NotificationView;
use service::access::Action;

use super::{page_envelope, page_request};
use crate::AppState;
use crate::auth::Authenticated;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{AfterRoleQuery, PathId};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/notifications`
pub(super) async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    query: AfterRoleQuery<NotificationQuery>,
) -> Result<Envelope<Vec<NotificationView>>, ApiError> {
    let target = ("notifications", "*");
    let query = query
        .read(&state, &principal, Action::ReadNotifications, target)
        .await?;
    let page = page_request(query.cursor, query.limit.as_deref())?;

    let notifications = state
        .app
        .notification_page(&principal.actor(), &page)
        .await?;

    Ok(page_envelope(
        notifications.items,
        notifications.next_cursor,
        page.effective_limit(),
    ))
}

/// `POST /api/v1/notifications/{id}/ack`
pub(super) async fn acknowledge(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    id: PathId,
) -> Result<Envelope<NotificationView>, ApiError> {
    let target = ("notification", id.target());
    crate::extract::check_role(&state, &principal, Action::ReadNotifications, target).await?;
    let id = id.decoded()?;

    let acknowledged = state
        .app
        .acknowledge_notification(&principal.actor(), &id)
        .await?;
    Ok(Envelope::ok(acknowledged))
}
