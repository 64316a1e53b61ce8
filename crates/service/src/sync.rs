//! `dataset sync`: load and validate what a release source has that is new,
//! and readiness.

use sha2::{Digest, Sha256};

use crate::fetch::{Location, fetch};
use crate::{
    Action, Actor, App, DatasetRef, DomainReadiness, LoadOptions, Readiness, Result, ServiceError,
    SyncReport, SyncedRelease,
};

impl App {
    /// One pass over a directory or URL: every bundle whose SHA-256 is not
    /// loaded yet is loaded and validated, and its change summary against
    /// the active dataset stored and logged. Never activates.
    pub async fn sync_once(&self, actor: &Actor, source: &str) -> Result<SyncReport> {
        self.authorize(actor, Action::DatasetSync, ("dataset", source))
            .await?;
        let sources = match Location::parse(source)? {
            Location::Url(url) => vec![url],
            Location::Path(path) if path.is_dir() => bundle_files(&path)?,
            Location::Path(path) => vec![path.to_string_lossy().into_owned()],
        };

        let mut report = SyncReport {
            loaded: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
        };
        for source in sources {
            match self.sync_one(actor, &source).await {
                Ok(Some(synced)) => report.loaded.push(synced),
                Ok(None) => {}
                Err(SyncSkip::Known(id)) => report.skipped.push((source, id)),
                Err(SyncSkip::Failed(e)) => {
                    tracing::warn!(source = %source, code = e.code(), error = %e, "sync could not load a release");
                    report.failed.push((source, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    async fn sync_one(
        &self,
        actor: &Actor,
        source: &str,
    ) -> std::result::Result<Option<SyncedRelease>, SyncSkip> {
        let bytes = fetch(source, self.config.max_bundle_bytes).await?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(existing) = self
            .store
            .dataset_by_sha256(&sha256)
            .await
            .map_err(ServiceError::from)?
        {
            return Err(SyncSkip::Known(existing.id));
        }

        let options = LoadOptions {
            file_name: Location::parse(source)?.file_name(),
            ..LoadOptions::default()
        };
        let dataset = self.store_release(actor, bytes, &options, source).await?;
        let validation = self.validate_dataset(actor, &dataset.id).await?;
        let change_summary = self
            .store
            .dataset_document(&dataset.id, store::DatasetDocument::ChangeSummary)
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(
            source = %source,
            dataset = %dataset.id,
            release = %dataset.release,
            errors = validation.errors,
            warnings = validation.warnings,
            changes = %change_summary.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            "sync loaded a new release"
        );
        let dataset = self.existing(&dataset.id).await?;
        Ok(Some(SyncedRelease {
            source: source.to_string(),
            dataset,
            change_summary,
        }))
    }

    /// Database reachable and every required domain has an active dataset.
    pub async fn readiness(&self) -> Readiness {
        let database = self.store.ping().await;
        let mut domains = Vec::with_capacity(self.config.required_domains.len());
        for &domain in &self.config.required_domains {
            let active = if database {
                self.store.active_dataset(domain).await.ok().flatten()
            } else {
                None
            };
            domains.push(DomainReadiness {
                domain,
                active: active.map(|d| DatasetRef {
                    id: d.id,
                    domain,
                    release: d.release,
                }),
            });
        }
        Readiness {
            ready: database && domains.iter().all(|d| d.active.is_some()),
            database,
            domains,
        }
    }
}

/// Why a sync source produced no new dataset.
enum SyncSkip {
    /// Its bytes are loaded already.
    Known(crate::DatasetId),
    /// It could not be read, parsed or stored.
    Failed(ServiceError),
}

impl From<ServiceError> for SyncSkip {
    fn from(e: ServiceError) -> Self {
        SyncSkip::Failed(e)
    }
}

/// The bundle files of a directory (`*.json`, `*.json.gz`), by name.
fn bundle_files(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| ServiceError::Fetch {
        source_name: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut files: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_ascii_lowercase());
            name.is_some_and(|n| n.ends_with(".json") || n.ends_with(".json.gz"))
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    Ok(files)
}
