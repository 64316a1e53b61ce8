//! The audit log: listing and chain verification.

use store::OrgScope;

use crate::{
    Action, Actor, App, AuditEvent, AuditVerification, Page, PageRequest, Result, ServiceError,
};

impl App {
    /// Audit events newest first. Org roles see their org's events;
    /// platform roles see every event.
    pub async fn audit_list(&self, actor: &Actor, page: &PageRequest) -> Result<Page<AuditEvent>> {
        self.authorize(actor, Action::ReadAudit, ("audit", "*"))
            .await?;
        let scope = if actor.role.is_platform() {
            None
        } else {
            let org = actor.org.clone().ok_or_else(|| ServiceError::Forbidden {
                role: actor.role,
                action: Action::ReadAudit,
            })?;
            Some(OrgScope::new(org))
        };
        let before = page
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().map_err(|_| ServiceError::InvalidInput {
                    field: "cursor".into(),
                    message: "not a cursor returned by this API".into(),
                })
            })
            .transpose()?;
        // The API refuses these before they get here; the CLI passes them
        // on, and both must answer alike rather than clamp 0 to 1.
        if let Some(asked) = page
            .limit
            .filter(|l| !(1..=PageRequest::MAX_LIMIT).contains(l))
        {
            return Err(ServiceError::InvalidInput {
                field: "limit".into(),
                message: format!(
                    "limit must be an integer from 1 to {}, got `{asked}`",
                    PageRequest::MAX_LIMIT
                ),
            });
        }
        let limit = page.effective_limit();

        // One extra row tells whether another page follows.
        let mut items = self
            .store
            .list_audit(
                scope.as_ref(),
                before,
                i64::try_from(limit + 1).unwrap_or(i64::MAX),
            )
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Re-computes the whole hash chain.
    pub async fn audit_verify(&self, actor: &Actor) -> Result<AuditVerification> {
        self.authorize(actor, Action::VerifyAudit, ("audit", "*"))
            .await?;
        Ok(self.store.verify_audit().await?)
    }
}
