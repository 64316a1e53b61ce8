//! Re-mapping after a new ATT&CK release becomes active: every org's
//! alerts are marked stale, then re-mapped under the new release; their
//! canonical mappings change only through precedence. Incidents the
//! activation queued as mapped under the old release leave the review
//! queue once their alerts are re-mapped.

use serde_json::json;
use store::OrgScope;
use taxonomy::Domain;

use crate::{Actor, App, Dataset, Result};

/// What the re-mapping after an activation did, over every org.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Remap {
    /// Orgs whose alerts were to be re-mapped.
    pub orgs: usize,
    /// Orgs whose re-mapping (or the settling of their incidents) failed;
    /// each failure was logged with its org.
    pub failed_orgs: usize,
    /// Alerts read, summed over the orgs that succeeded.
    pub alerts: usize,
    /// Alerts whose canonical mapping changed, summed likewise.
    pub changed: usize,
}

impl Remap {
    /// Counts and logs one org's failure; the orgs after it go on.
    fn org_failed(&mut self, scope: &OrgScope, dataset: &Dataset, error: &crate::ServiceError) {
        self.failed_orgs += 1;
        tracing::warn!(
            org = %scope.org(),
            dataset = %dataset.id,
            error = %error,
            "re-mapping an org after activation failed; its alerts stay stale until \
             `alerts remap`"
        );
    }
}

impl App {
    /// Marks the alerts of every org stale and re-maps them under the
    /// newly active Enterprise dataset, org by org. Called after an
    /// activation has committed: a failure leaves that org's alerts marked
    /// stale (and `alerts remap` finishes the job) rather than undoing the
    /// activation, and does not stop the orgs after it, which were as
    /// stale and have nothing to do with it. Each org's failure is logged
    /// with the org and counted in [`Remap::failed_orgs`]; only a failure
    /// to list the orgs is an error.
    ///
    /// Every org is marked before the first is re-mapped: re-mapping takes
    /// minutes on a large org, and the orgs after it must not read as
    /// current under the retired release meanwhile.
    pub(crate) async fn remap_after_activation(
        &self,
        actor: &Actor,
        dataset: &Dataset,
    ) -> Result<Remap> {
        let mut remap = Remap::default();
        if dataset.domain != Domain::Enterprise {
            return Ok(remap);
        }
        let mut marked = Vec::new();
        for org in self.store.list_orgs().await? {
            remap.orgs += 1;
            let scope = OrgScope::new(org.id.clone());
            match self.mark_release_stale(&scope, dataset).await {
                Ok(count) => marked.push((scope, count)),
                Err(e) => remap.org_failed(&scope, dataset, &e),
            }
        }
        for (scope, count) in marked {
            match self
                .remap_org_after_activation(actor, &scope, dataset, count)
                .await
            {
                Ok((alerts, changed)) => {
                    remap.alerts += alerts;
                    remap.changed += changed;
                }
                Err(e) => remap.org_failed(&scope, dataset, &e),
            }
        }
        Ok(remap)
    }

    /// Marks the org's alerts stale for the release `dataset` replaced;
    /// answers how many.
    async fn mark_release_stale(&self, scope: &OrgScope, dataset: &Dataset) -> Result<u64> {
        let reason = json!([{"reason": "release_activated", "release": dataset.release}]);
        self.mark_org_stale(scope, &reason.to_string()).await
    }

    /// One org's part of [`App::remap_after_activation`] once its `marked`
    /// alerts are marked stale: re-maps them and settles its incidents.
    /// Answers `(alerts, changed)`, or the first failure.
    async fn remap_org_after_activation(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        dataset: &Dataset,
        marked: u64,
    ) -> Result<(usize, usize)> {
        let remapped = if marked == 0 {
            Ok((0, 0))
        } else {
            // The org's run, seen by `GET /api/v1/remap`, and one at a time
            // with the runs asked for over the API.
            let claim = self.claim_remap(scope, &actor.name, marked).await;
            let mut progress = claim.progress();
            let remapped = match self.engine(scope).await {
                Ok(engine) => {
                    self.recompute_org(
                        actor,
                        scope,
                        &engine,
                        "release_activated",
                        |_| true,
                        &mut progress,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            claim.end(&remapped);
            remapped
        };
        // The activation queued the org's incidents mapped under the
        // old release; those whose alerts are all re-mapped now leave
        // the queue, also when a later page of alerts failed.
        let settled = self
            .settle_release_stale(actor, scope, dataset.domain, &dataset.release)
            .await;
        match (remapped, settled) {
            (Ok(counts), Ok(_)) => Ok(counts),
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            (Err(e), Err(settling)) => {
                // The re-mapping's failure is the one answered; the
                // settling's would otherwise be lost.
                tracing::warn!(
                    org = %scope.org(),
                    dataset = %dataset.id,
                    error = %settling,
                    "settling incidents after a failed re-mapping failed too"
                );
                Err(e)
            }
        }
    }
}
