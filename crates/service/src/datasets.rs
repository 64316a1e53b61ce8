//! The dataset lifecycle: load, validate, approve, reject, activate, roll back.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use store::{DatasetDocument, NewDataset, StateChange};
use taxonomy::lifecycle::{self, DatasetState, LifecycleAction, LifecycleError};
use taxonomy::{Domain, Release, ReleaseDiff};

use crate::fetch::{Location, fetch};
use crate::{
    Action, Activation, Actor, App, CompatibilityIssue, CompatibilityReport, Dataset,
    DatasetFilter, DatasetId, DiffReport, DiffSide, FindingView, LoadOptions, MigrationSuggestion,
    Outcome, ReferenceMigration, ReferenceStatus, Result, Rollback, ServiceError,
    ValidationSummary, audit_event, parse_bytes_within,
};

const DATASET: &str = "dataset";

impl App {
    /// Loads a release from a file path or an http(s) URL (gzip or plain).
    pub async fn load_dataset(
        &self,
        actor: &Actor,
        source: &str,
        options: &LoadOptions,
    ) -> Result<Dataset> {
        self.authorize(actor, Action::DatasetLoad, (DATASET, source))
            .await?;
        let fetched = match Location::parse(source) {
            Ok(location) => fetch(source, self.config.max_bundle_bytes)
                .await
                .map(|bytes| (location, bytes)),
            Err(e) => Err(e),
        };
        let (location, bytes) = match fetched {
            Ok(fetched) => fetched,
            Err(e) => {
                self.audit_failed_load(actor, source, &e).await;
                return Err(e);
            }
        };
        let options = LoadOptions {
            file_name: options.file_name.clone().or_else(|| location.file_name()),
            ..options.clone()
        };
        self.store_release(actor, bytes, &options, source).await
    }

    /// Loads a release from bytes (an upload); `options.file_name` may name it.
    pub async fn load_dataset_bytes(
        &self,
        actor: &Actor,
        bytes: Vec<u8>,
        options: &LoadOptions,
    ) -> Result<Dataset> {
        self.authorize(actor, Action::DatasetLoad, (DATASET, "upload"))
            .await?;
        let source = options.file_name.as_deref().unwrap_or("upload").to_string();
        if bytes.len() > self.config.max_bundle_bytes {
            let e = ServiceError::InvalidInput {
                field: "body".into(),
                message: format!(
                    "{} bytes is more than the {}-byte limit for a bundle",
                    bytes.len(),
                    self.config.max_bundle_bytes
                ),
            };
            self.audit_failed_load(actor, &source, &e).await;
            return Err(e);
        }
        self.store_release(actor, bytes, options, &source).await
    }

    /// [`App::try_store_release`], auditing a failure: a refused load is
    /// a lifecycle action too, and operators look for it in the log.
    pub(crate) async fn store_release(
        &self,
        actor: &Actor,
        bytes: Vec<u8>,
        options: &LoadOptions,
        source: &str,
    ) -> Result<Dataset> {
        let stored = self.try_store_release(actor, bytes, options, source).await;
        if let Err(e) = &stored {
            self.audit_failed_load(actor, source, e).await;
        }
        stored
    }

    /// Records a failed load. The audit event is the only write, so nothing
    /// already stored changes; failing to record it is logged, and the
    /// caller still gets the load's own error rather than the audit's.
    async fn audit_failed_load(&self, actor: &Actor, source: &str, error: &ServiceError) {
        let mut event = audit_event(
            actor,
            Action::DatasetLoad.as_str(),
            (DATASET, source),
            Outcome::Failed,
            json!({"source": source, "code": error.code(), "error": error.to_string()}),
        );
        // Datasets are platform-wide: a failed load belongs to no org.
        event.org_id = None;
        if let Err(audit) = self.store.append_audit(&event).await {
            tracing::error!(source = %source, error = %audit, "cannot audit a failed load");
        }
    }

    /// Parses, refuses a duplicate, summarises the changes against the
    /// active dataset, and stores the dataset with its audit event.
    async fn try_store_release(
        &self,
        actor: &Actor,
        bytes: Vec<u8>,
        options: &LoadOptions,
        source: &str,
    ) -> Result<Dataset> {
        let hints = taxonomy::LoadHints {
            file_name: options.file_name.clone(),
            release: options.release.clone(),
            domain: options.domain,
        };
        let bundle = bytes.clone();
        let limit = self.config.max_bundle_bytes as u64;
        let release = Arc::new(parse_bytes_within(bytes, hints, source, limit).await?);

        // The same bytes twice would be two datasets of one release; loading
        // again is allowed only when every earlier copy is out of the
        // lifecycle (rejected or rolled back).
        let same_bytes = self.store.list_datasets(&DatasetFilter::default()).await?;
        if let Some(existing) = same_bytes.iter().find(|d| {
            d.sha256 == release.sha256
                && !matches!(d.state, DatasetState::Rejected | DatasetState::RolledBack)
        }) {
            return Err(ServiceError::Conflict(format!(
                "these bytes are already loaded as dataset {} ({} {}, {})",
                existing.id, existing.domain, existing.release, existing.state
            )));
        }
        // Other bytes of the same release (the plain .json after the .gz)
        // would be a second copy of one release in the lifecycle: refused
        // while a live copy exists. Retire, reject or roll back that one
        // first to load it again.
        if let Some(existing) = same_bytes.iter().find(|d| {
            d.domain == release.domain
                && d.release == release.version
                && !matches!(
                    d.state,
                    DatasetState::Rejected | DatasetState::Retired | DatasetState::RolledBack
                )
        }) {
            return Err(ServiceError::Conflict(format!(
                "{} {} is already loaded as dataset {} ({})",
                existing.domain, existing.release, existing.id, existing.state
            )));
        }

        let change_summary = self.change_summary(&release).await?;
        let id = DatasetId::generate();
        let new = NewDataset {
            id: id.clone(),
            release: &release,
            bundle: &bundle,
            source: source.to_string(),
            loaded_by: actor.name.clone(),
            loaded_at: store::now(),
            change_summary: change_summary.clone(),
        };
        let details = json!({
            "domain": release.domain,
            "release": release.version,
            "sha256": release.sha256,
            "source": source,
            "counts": release.counts(),
            "change_summary": change_summary,
        });

        let mut tx = self.store.begin_all().await?;
        let dataset = match tx.insert_dataset(&new).await {
            Ok(dataset) => dataset,
            Err(store::StoreError::Conflict { what }) => {
                // A concurrent load of the same bytes won the race since the
                // check above: name its dataset, as the check would have.
                let winner = self.store.dataset_by_sha256(&release.sha256).await?;
                return Err(ServiceError::Conflict(match winner {
                    Some(d) => format!(
                        "these bytes are already loaded as dataset {} ({} {}, {})",
                        d.id, d.domain, d.release, d.state
                    ),
                    None => format!("{what} already exists"),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        tx.append_audit(&audit_event(
            actor,
            Action::DatasetLoad.as_str(),
            (DATASET, id.as_str()),
            Outcome::Ok,
            details,
        ))
        .await?;
        tx.commit().await?;

        tracing::info!(dataset = %id, domain = %release.domain, release = %release.version, "dataset loaded");
        self.cache(&id, release);
        Ok(dataset)
    }

    /// Counts per change category against the domain's active dataset or,
    /// when none is active (a sync loading 17.1 then 18.1 in one pass),
    /// against the newest dataset of the domain that Gate A did not reject;
    /// `against.basis` says which.
    async fn change_summary(&self, release: &Arc<Release>) -> Result<Option<serde_json::Value>> {
        let (active, basis) = match self.store.active_dataset(release.domain).await? {
            Some(active) => (active, "active"),
            None => {
                let filter = DatasetFilter {
                    domain: Some(release.domain),
                    state: None,
                };
                let newest = self
                    .store
                    .list_datasets(&filter)
                    .await?
                    .into_iter()
                    .filter(|d| d.state != DatasetState::Rejected)
                    .max_by_key(|d| d.loaded_at);
                match newest {
                    Some(newest) => (newest, "newest_loaded"),
                    None => return Ok(None),
                }
            }
        };
        let old = self.release_of(&active).await?;
        let new = release.clone();
        let diff = tokio::task::spawn_blocking(move || taxonomy::diff(&old, &new))
            .await
            .map_err(|e| ServiceError::Internal(format!("diff stopped unexpectedly: {e}")))?;
        Ok(Some(summarise(&diff, &active, basis)))
    }

    /// Runs Gate A: `validated` without errors, `rejected` with errors.
    pub async fn validate_dataset(
        &self,
        actor: &Actor,
        id: &DatasetId,
    ) -> Result<ValidationSummary> {
        let action = Action::DatasetValidate;
        self.authorize(actor, action, (DATASET, id.as_str()))
            .await?;
        let dataset = self.existing(id).await?;
        self.check_transition(actor, action, &dataset, LifecycleAction::ValidatePass)
            .await?;

        let release = self.release_of(&dataset).await?;
        let report = tokio::task::spawn_blocking(move || taxonomy::validate(&release))
            .await
            .map_err(|e| ServiceError::Internal(format!("validation stopped unexpectedly: {e}")))?;
        let summary = ValidationSummary {
            dataset_id: id.clone(),
            errors: report.errors().count(),
            warnings: report.warnings().count(),
            findings: report
                .findings
                .iter()
                .map(|f| FindingView {
                    severity: match f.severity {
                        taxonomy::Severity::Error => "error".into(),
                        taxonomy::Severity::Warning => "warning".into(),
                    },
                    code: f.code.clone(),
                    object: f.object.clone(),
                    attack_id: Some(f.attack_id.clone()).filter(|a| !a.is_empty()),
                    message: f.message.clone(),
                })
                .collect(),
        };

        let (step, reason) = if report.is_blocking() {
            let reason = format!("Gate A found {} error(s)", summary.errors);
            (LifecycleAction::ValidateFail, Some(reason))
        } else {
            (LifecycleAction::ValidatePass, None)
        };
        let to = lifecycle::transition(dataset.state, step).map_err(|source| {
            ServiceError::Lifecycle {
                dataset: id.to_string(),
                source,
            }
        })?;
        let details = json!({"errors": summary.errors, "warnings": summary.warnings, "state": to});
        let report_json = serde_json::to_value(&summary).unwrap_or_default();

        let mut tx = self.store.begin_all().await?;
        tx.set_validation(
            id,
            &report_json,
            count(summary.errors),
            count(summary.warnings),
        )
        .await?;
        let change = self.state_change(actor, dataset.state, to, reason, None);
        self.apply(&mut tx, id, &change).await?;
        tx.append_audit(&audit_event(
            actor,
            action.as_str(),
            (DATASET, id.as_str()),
            Outcome::Ok,
            details,
        ))
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Approves a validated dataset; the loader cannot approve (four eyes).
    pub async fn approve_dataset(&self, actor: &Actor, id: &DatasetId) -> Result<Dataset> {
        let action = Action::DatasetApprove;
        self.authorize(actor, action, (DATASET, id.as_str()))
            .await?;
        let dataset = self.existing(id).await?;
        let to = match lifecycle::approve(dataset.state, &dataset.loaded_by, &actor.name) {
            Ok(to) => to,
            Err(source) => return Err(self.refuse(actor, action, id, source).await),
        };

        let change = self.state_change(actor, dataset.state, to, None, None);
        self.transition_and_audit(actor, action, id, &change, json!({}))
            .await
    }

    /// Rejects a loaded, validated or approved dataset with a reason.
    pub async fn reject_dataset(
        &self,
        actor: &Actor,
        id: &DatasetId,
        reason: &str,
    ) -> Result<Dataset> {
        let action = Action::DatasetReject;
        self.authorize(actor, action, (DATASET, id.as_str()))
            .await?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ServiceError::InvalidInput {
                field: "reason".into(),
                message: "a rejection needs a reason".into(),
            });
        }
        let dataset = self.existing(id).await?;
        let to = self
            .check_transition(actor, action, &dataset, LifecycleAction::Reject)
            .await?;

        let change = self.state_change(actor, dataset.state, to, Some(reason.to_string()), None);
        self.transition_and_audit(actor, action, id, &change, json!({"reason": reason}))
            .await
    }

    /// Activates an approved dataset, retiring the domain's active one, and
    /// runs the compatibility check over every stored technique reference.
    /// In the same transaction, incidents whose profile has entries computed
    /// under another release of the domain go to the review queue as stale.
    pub async fn activate_dataset(&self, actor: &Actor, id: &DatasetId) -> Result<Activation> {
        let action = Action::DatasetActivate;
        self.authorize(actor, action, (DATASET, id.as_str()))
            .await?;
        let dataset = self.existing(id).await?;
        let to = self
            .check_transition(actor, action, &dataset, LifecycleAction::Activate)
            .await?;

        let release = self.release_of(&dataset).await?;
        let compatibility = self.compatibility(id, &release).await?;
        let report_json = serde_json::to_value(&compatibility).unwrap_or_default();
        let orgs = self.org_ids().await?;

        let mut tx = self.store.begin_all().await?;
        let current = tx.active_dataset(dataset.domain).await?;
        if let Some(current) = &current {
            let retire = self.state_change(
                actor,
                DatasetState::Active,
                DatasetState::Retired,
                None,
                None,
            );
            self.apply(&mut tx, &current.id, &retire).await?;
        }
        let previous = current.as_ref().map(|c| c.id.clone());
        let change = self.state_change(actor, dataset.state, to, None, previous.clone());
        self.apply(&mut tx, id, &change).await?;
        tx.set_compatibility(id, &report_json).await?;
        let stale_incidents = self
            .queue_release_stale(&mut tx, &orgs, dataset.domain, &dataset.release)
            .await?;
        let details = json!({
            "domain": dataset.domain,
            "release": dataset.release,
            "retired": previous,
            "references_checked": compatibility.references_checked,
            "issues": compatibility.issues.len(),
            "stale_incidents": stale_incidents,
        });
        tx.append_audit(&audit_event(
            actor,
            action.as_str(),
            (DATASET, id.as_str()),
            Outcome::Ok,
            details,
        ))
        .await?;
        tx.commit().await?;

        tracing::info!(dataset = %id, domain = %dataset.domain, issues = compatibility.issues.len(), "dataset activated");
        // Stored alerts were mapped under the previous release: re-map them.
        let activated = self.existing(id).await?;
        self.remap_after(actor, &activated, "activation").await;
        Ok(Activation {
            dataset: self.existing(id).await?,
            retired: previous,
            compatibility,
        })
    }

    /// Reactivates the dataset that was active before the current one of
    /// the domain; the current becomes `rolled_back`. A rollback is an
    /// activation of the previous release: incidents mapped under another
    /// release are queued in the same transaction, and the alerts are
    /// re-mapped under the reactivated release afterwards.
    pub async fn rollback_domain(&self, actor: &Actor, domain: Domain) -> Result<Rollback> {
        let action = Action::DatasetRollback;
        self.authorize(actor, action, (DATASET, domain.as_str()))
            .await?;
        let current =
            self.store
                .active_dataset(domain)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "active dataset of domain",
                    id: domain.to_string(),
                })?;
        let Some(previous_id) = current.previous_active.clone() else {
            let message = format!(
                "dataset {} is the first active dataset of {domain}: there is nothing to roll back to",
                current.id
            );
            self.audit_outcome(
                actor,
                action.as_str(),
                (DATASET, current.id.as_str()),
                Outcome::Failed,
                json!({"code": "conflict", "message": message}),
            )
            .await?;
            return Err(ServiceError::Conflict(message));
        };
        let previous = self.existing(&previous_id).await?;
        let reactivated_state = self
            .check_transition(actor, action, &previous, LifecycleAction::Reactivate)
            .await?;

        let orgs = self.org_ids().await?;

        let mut tx = self.store.begin_all().await?;
        let roll_back = self.state_change(
            actor,
            DatasetState::Active,
            DatasetState::RolledBack,
            None,
            None,
        );
        self.apply(&mut tx, &current.id, &roll_back).await?;
        // The reactivated dataset keeps its own predecessor, so a second
        // rollback steps one release further back.
        let reactivate = self.state_change(
            actor,
            previous.state,
            reactivated_state,
            None,
            previous.previous_active.clone(),
        );
        self.apply(&mut tx, &previous.id, &reactivate).await?;
        let stale_incidents = self
            .queue_release_stale(&mut tx, &orgs, domain, &previous.release)
            .await?;
        let details = json!({"domain": domain, "rolled_back": current.id,
            "reactivated": previous.id, "stale_incidents": stale_incidents});
        tx.append_audit(&audit_event(
            actor,
            action.as_str(),
            (DATASET, current.id.as_str()),
            Outcome::Ok,
            details,
        ))
        .await?;
        tx.commit().await?;

        tracing::info!(domain = %domain, rolled_back = %current.id, reactivated = %previous.id, "domain rolled back");
        // Stored alerts were mapped under the rolled-back release.
        let reactivated = self.existing(&previous.id).await?;
        self.remap_after(actor, &reactivated, "rollback").await;
        Ok(Rollback {
            reactivated: self.existing(&previous.id).await?,
            rolled_back: self.existing(&current.id).await?,
        })
    }

    /// Runs [`App::report_remap`] before returning, or beside the caller
    /// when the configuration says so (`AppConfig::remap_beside`).
    async fn remap_after(&self, actor: &Actor, dataset: &Dataset, after: &'static str) {
        if self.config.remap_beside {
            let (app, actor, dataset) = (self.clone(), actor.clone(), dataset.clone());
            tokio::spawn(async move { app.report_remap(&actor, &dataset, after).await });
        } else {
            self.report_remap(actor, dataset, after).await;
        }
    }

    /// Re-maps every org's alerts after `after` (`activation`, `rollback`)
    /// made `dataset` active, and logs what failed: the activation has
    /// committed and stands, so a failed re-mapping is the operator's to
    /// finish with `alerts remap`, not the caller's error.
    async fn report_remap(&self, actor: &Actor, dataset: &Dataset, after: &str) {
        match self.remap_after_activation(actor, dataset).await {
            Ok(remap) if remap.failed_orgs > 0 => tracing::warn!(
                dataset = %dataset.id,
                failed_orgs = remap.failed_orgs,
                orgs = remap.orgs,
                alerts = remap.alerts,
                changed = remap.changed,
                "re-mapping after {after} failed for some orgs; their alerts stay stale"
            ),
            Ok(remap) => tracing::info!(
                dataset = %dataset.id,
                orgs = remap.orgs,
                alerts = remap.alerts,
                changed = remap.changed,
                "alerts re-mapped after {after}"
            ),
            Err(e) => tracing::warn!(
                dataset = %dataset.id,
                error = %e,
                "re-mapping after {after} failed; alerts stay stale"
            ),
        }
    }

    /// Every org's id: the orgs whose incidents an activation or a
    /// rollback queues.
    async fn org_ids(&self) -> Result<Vec<store::OrgId>> {
        Ok(self
            .store
            .list_orgs()
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect())
    }

    /// Lists datasets, newest first.
    pub async fn list_datasets(
        &self,
        actor: &Actor,
        filter: &DatasetFilter,
    ) -> Result<Vec<Dataset>> {
        self.authorize(actor, Action::ReadDatasets, (DATASET, "*"))
            .await?;
        Ok(self.store.list_datasets(filter).await?)
    }

    /// One dataset.
    pub async fn dataset(&self, actor: &Actor, id: &DatasetId) -> Result<Dataset> {
        self.authorize(actor, Action::ReadDatasets, (DATASET, id.as_str()))
            .await?;
        self.existing(id).await
    }

    /// The Gate A report of a validated (or rejected) dataset.
    pub async fn validation_report(
        &self,
        actor: &Actor,
        id: &DatasetId,
    ) -> Result<ValidationSummary> {
        self.authorize(actor, Action::ReadDatasets, (DATASET, id.as_str()))
            .await?;
        self.existing(id).await?;
        let value = self
            .store
            .dataset_document(id, DatasetDocument::ValidationReport)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "validation report of dataset",
                id: id.to_string(),
            })?;
        decode(value, "validation report")
    }

    /// The compatibility report stored at the dataset's activation.
    pub async fn compatibility_report(
        &self,
        actor: &Actor,
        id: &DatasetId,
    ) -> Result<CompatibilityReport> {
        self.authorize(actor, Action::ReadDatasets, (DATASET, id.as_str()))
            .await?;
        self.existing(id).await?;
        let value = self
            .store
            .dataset_document(id, DatasetDocument::CompatibilityReport)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "compatibility report of dataset",
                id: id.to_string(),
            })?;
        decode(value, "compatibility report")
    }

    /// Diff between two releases; each side is a dataset id, or a path or
    /// URL for actors who may load releases (reading files and URLs acts on
    /// the service's machine).
    pub async fn diff(&self, actor: &Actor, from: &str, to: &str) -> Result<DiffReport> {
        self.authorize(actor, Action::ReadDatasets, (DATASET, from))
            .await?;
        let (old, from_side) = self.diff_side(actor, from).await?;
        let (new, to_side) = self.diff_side(actor, to).await?;
        if old.domain != new.domain {
            return Err(ServiceError::InvalidInput {
                field: "to".into(),
                message: format!(
                    "cannot diff {} against {}: the domains differ",
                    old.domain, new.domain
                ),
            });
        }

        let diff = tokio::task::spawn_blocking(move || taxonomy::diff(&old, &new))
            .await
            .map_err(|e| ServiceError::Internal(format!("diff stopped unexpectedly: {e}")))?;
        Ok(DiffReport {
            from: from_side,
            to: to_side,
            markdown: taxonomy::to_markdown(&diff),
            diff: serde_json::to_value(&diff).unwrap_or_default(),
        })
    }

    async fn diff_side(&self, actor: &Actor, source: &str) -> Result<(Arc<Release>, DiffSide)> {
        // A stored dataset id wins over a file of the same name: ids are
        // UUIDs, nobody names a bundle file like one.
        if let Some(dataset) = self.store.dataset(&DatasetId::from(source)).await? {
            let release = self.release_of(&dataset).await?;
            let side = DiffSide {
                source: source.to_string(),
                domain: dataset.domain,
                release: dataset.release,
                dataset_id: Some(dataset.id),
            };
            return Ok((release, side));
        }
        // Reading a path or URL acts on the machine that runs the service:
        // only those who may load releases may do it, not every reader.
        self.authorize(actor, Action::DatasetLoad, (DATASET, source))
            .await?;
        let location = Location::parse(source)?;
        let bytes = fetch(source, self.config.max_bundle_bytes)
            .await
            .map_err(|e| match e {
                // Either side may be an id or a file: a reader who mistyped an
                // id must not be told only that no such file exists.
                ServiceError::Fetch {
                    source_name,
                    message,
                } => ServiceError::UnknownDiffSide {
                    input: source_name,
                    reason: message,
                },
                other => other,
            })?;
        let hints = taxonomy::LoadHints {
            file_name: location.file_name(),
            ..Default::default()
        };
        let limit = self.config.max_bundle_bytes as u64;
        let release = parse_bytes_within(bytes, hints, source, limit).await?;
        let side = DiffSide {
            source: source.to_string(),
            domain: release.domain,
            release: release.version.clone(),
            dataset_id: None,
        };
        Ok((Arc::new(release), side))
    }

    /// The migrations suggested by the dataset's activation report.
    pub async fn migrations(
        &self,
        actor: &Actor,
        id: &DatasetId,
    ) -> Result<Vec<MigrationSuggestion>> {
        let report = self.compatibility_report(actor, id).await?;
        let applied: HashSet<(String, String)> = self
            .store
            .reference_migrations(id)
            .await?
            .into_iter()
            .map(|m| (m.ref_kind, m.ref_id))
            .collect();
        Ok(report
            .issues
            .into_iter()
            .filter_map(|issue| {
                let new_technique = issue.replaced_by?;
                let applied = applied.contains(&(issue.kind.clone(), issue.id.clone()));
                Some(MigrationSuggestion {
                    ref_kind: issue.kind,
                    ref_id: issue.id,
                    org_id: issue.org_id,
                    old_technique: issue.technique_id,
                    new_technique,
                    applied,
                })
            })
            .collect())
    }

    /// Applies the suggested migrations not yet applied: new records beside
    /// the originals, audited.
    pub async fn apply_migrations(
        &self,
        actor: &Actor,
        id: &DatasetId,
    ) -> Result<Vec<ReferenceMigration>> {
        let action = Action::DatasetMigrate;
        self.authorize(actor, action, (DATASET, id.as_str()))
            .await?;
        let pending: Vec<MigrationSuggestion> = self
            .migrations(actor, id)
            .await?
            .into_iter()
            .filter(|m| !m.applied)
            .collect();

        let mut applied = Vec::with_capacity(pending.len());
        let mut tx = self.store.begin_all().await?;
        for suggestion in pending {
            let migration = ReferenceMigration {
                id: store::MigrationId::generate(),
                org_id: suggestion.org_id,
                dataset_id: id.clone(),
                ref_kind: suggestion.ref_kind,
                ref_id: suggestion.ref_id,
                old_technique: suggestion.old_technique,
                new_technique: suggestion.new_technique,
                applied_by: actor.name.clone(),
                applied_at: store::now(),
            };
            tx.insert_reference_migration(&migration).await?;
            let details = json!({
                "dataset": id,
                "ref_kind": migration.ref_kind,
                "ref_id": migration.ref_id,
                "old_technique": migration.old_technique,
                "new_technique": migration.new_technique,
            });
            let event = store::NewAuditEvent {
                org_id: migration.org_id.clone(),
                ..audit_event(
                    actor,
                    action.as_str(),
                    ("reference_migration", migration.id.as_str()),
                    Outcome::Ok,
                    details,
                )
            };
            tx.append_audit(&event).await?;
            applied.push(migration);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Checks every stored technique reference against `release`.
    async fn compatibility(
        &self,
        id: &DatasetId,
        release: &Release,
    ) -> Result<CompatibilityReport> {
        let references = self.store.technique_references().await?;
        let issues = references
            .iter()
            .filter_map(|r| {
                let (status, replaced_by) = match release.technique(&r.technique_id) {
                    None => (ReferenceStatus::Unknown, None),
                    Some(t) if t.status.revoked => {
                        (ReferenceStatus::Revoked, t.status.revoked_by.clone())
                    }
                    Some(t) if t.status.deprecated => (ReferenceStatus::Deprecated, None),
                    Some(_) => return None,
                };
                Some(CompatibilityIssue {
                    kind: r.kind.clone(),
                    id: r.id.clone(),
                    org_id: r.org_id.clone(),
                    technique_id: r.technique_id.clone(),
                    status,
                    replaced_by,
                })
            })
            .collect();
        Ok(CompatibilityReport {
            dataset_id: id.clone(),
            references_checked: references.len(),
            issues,
        })
    }

    /// A dataset, or `not_found`.
    pub(crate) async fn existing(&self, id: &DatasetId) -> Result<Dataset> {
        self.store
            .dataset(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: DATASET,
                id: id.to_string(),
            })
    }

    /// The state `step` leads to, or the refusal, audited.
    async fn check_transition(
        &self,
        actor: &Actor,
        action: Action,
        dataset: &Dataset,
        step: LifecycleAction,
    ) -> Result<DatasetState> {
        match lifecycle::transition(dataset.state, step) {
            Ok(to) => Ok(to),
            Err(source) => Err(self.refuse(actor, action, &dataset.id, source).await),
        }
    }

    /// Audits a lifecycle refusal and turns it into the error to return.
    async fn refuse(
        &self,
        actor: &Actor,
        action: Action,
        id: &DatasetId,
        source: LifecycleError,
    ) -> ServiceError {
        let outcome = match source {
            LifecycleError::FourEyes { .. } => Outcome::Denied,
            LifecycleError::InvalidTransition { .. } => Outcome::Failed,
        };
        let details = json!({"code": source.code(), "message": source.to_string()});
        let error = ServiceError::Lifecycle {
            dataset: id.to_string(),
            source,
        };
        match self
            .audit_outcome(
                actor,
                action.as_str(),
                (DATASET, id.as_str()),
                outcome,
                details,
            )
            .await
        {
            Ok(()) => error,
            Err(audit_error) => audit_error,
        }
    }

    fn state_change(
        &self,
        actor: &Actor,
        from: DatasetState,
        to: DatasetState,
        reason: Option<String>,
        previous_active: Option<DatasetId>,
    ) -> StateChange {
        StateChange {
            from,
            to,
            actor: actor.name.clone(),
            at: store::now(),
            reason,
            previous_active,
        }
    }

    /// Applies a state change; a concurrent change that got there first
    /// makes it a conflict and the transaction is dropped.
    async fn apply(&self, tx: &mut store::Tx, id: &DatasetId, change: &StateChange) -> Result<()> {
        if tx.change_state(id, change).await? {
            return Ok(());
        }
        Err(ServiceError::Conflict(format!(
            "dataset {id} changed concurrently (it is no longer {})",
            change.from
        )))
    }

    async fn transition_and_audit(
        &self,
        actor: &Actor,
        action: Action,
        id: &DatasetId,
        change: &StateChange,
        details: serde_json::Value,
    ) -> Result<Dataset> {
        let mut tx = self.store.begin_all().await?;
        self.apply(&mut tx, id, change).await?;
        tx.append_audit(&audit_event(
            actor,
            action.as_str(),
            (DATASET, id.as_str()),
            Outcome::Ok,
            details,
        ))
        .await?;
        tx.commit().await?;
        self.existing(id).await
    }
}

/// The stored change summary: per category counts against `against`.
fn summarise(diff: &ReleaseDiff, against: &Dataset, basis: &str) -> serde_json::Value {
    let counts = |changes: &taxonomy::diff::Changes| {
        changes
            .categories()
            .iter()
            .map(|(name, entries)| ((*name).to_string(), json!(entries.len())))
            .collect::<serde_json::Map<_, _>>()
    };
    json!({
        "against": {"dataset_id": against.id, "release": against.release, "basis": basis},
        "tactics": counts(&diff.tactics.changes),
        "techniques": counts(&diff.techniques.changes),
        "tactics_renamed": diff.tactics.renamed.len(),
        "techniques_moved": diff.techniques.tactic_changes.len(),
        "platforms": {"added": diff.platforms.added, "removed": diff.platforms.removed},
    })
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| ServiceError::Internal(format!("stored {what} does not decode: {e}")))
}
