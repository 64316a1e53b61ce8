//! Re-mapping after a new ATT&CK release becomes active: every org's
//! alerts are marked stale, then re-mapped under the new release; their
//! canonical mappings change only through precedence. Incidents the
//! activation queued as mapped under the old release leave the review
//! queue once their alerts are re-mapped.

use serde_json::json;
use store::OrgScope;
use taxonomy::Domain;

use crate::{Actor, App, Dataset, Result};

impl App {
    /// Marks the alerts of every org stale and re-maps them under the
    /// newly active Enterprise dataset. Returns `(alerts, changed)` summed
    /// over orgs. Called after an activation has committed: a failure
    /// leaves the alerts marked stale (and `alerts remap` finishes the job)
    /// rather than undoing the activation.
    pub(crate) async fn remap_after_activation(
        &self,
        actor: &Actor,
        dataset: &Dataset,
    ) -> Result<(usize, usize)> {
        if dataset.domain != Domain::Enterprise {
            return Ok((0, 0));
        }
        let reason = json!([{"reason": "release_activated", "release": dataset.release}]);
        let (mut alerts, mut changed) = (0, 0);
        for org in self.store.list_orgs().await? {
            let scope = OrgScope::new(org.id.clone());
            let mut tx = self.store.begin_in(&scope).await?;
            let marked = tx
                .mark_org_alerts_stale(&scope, &reason.to_string())
                .await?;
            tx.commit().await?;
            let remapped = if marked == 0 {
                Ok((0, 0))
            } else {
                let engine = self.engine(&scope).await?;
                self.recompute_org(actor, &scope, &engine, "release_activated", |_| true)
                    .await
            };
            // The activation queued the org's incidents mapped under the
            // old release; those whose alerts are all re-mapped now leave
            // the queue, also when a later page of alerts failed.
            self.settle_release_stale(actor, &scope, dataset.domain, &dataset.release)
                .await?;
            let (seen, moved) = remapped?;
            alerts += seen;
            changed += moved;
        }
        Ok((alerts, changed))
    }
}
