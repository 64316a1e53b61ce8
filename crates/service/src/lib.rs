//! Use cases that wire pure logic to storage; shared by the server and the CLI.
//!
//! [`App`] is the entry point: cheap to clone, it holds the [`store::Store`]
//! and a cache of parsed active releases. Every use case takes the [`Actor`]
//! who asks, checks the permission matrix of [`access`], audits refusals and
//! lifecycle actions, and answers with a [`ServiceError`] carrying a stable
//! code.
//!
//! Use cases, by area:
//! - orgs and tokens: [`App::create_org`], [`App::org_by_name`],
//!   [`App::create_token`], [`App::revoke_token`], [`App::authenticate`];
//! - dataset lifecycle: [`App::load_dataset`], [`App::load_dataset_bytes`],
//!   [`App::validate_dataset`], [`App::approve_dataset`],
//!   [`App::reject_dataset`], [`App::activate_dataset`],
//!   [`App::rollback_domain`], [`App::sync_once`], [`App::migrations`],
//!   [`App::apply_migrations`];
//! - dataset reads: [`App::list_datasets`], [`App::dataset`],
//!   [`App::validation_report`], [`App::compatibility_report`], [`App::diff`];
//! - taxonomy reads on the active dataset: [`App::tactics`],
//!   [`App::techniques`], [`App::technique`];
//! - audit: [`App::audit_list`], [`App::audit_verify`];
//! - incidents: [`App::create_incident`], [`App::attach_alerts`],
//!   [`App::detach_alerts`], [`App::incident_profile`],
//!   [`App::merge_incidents`], [`App::split_incident`],
//!   [`App::adjust_incident`], [`App::set_incident_status`],
//!   [`App::set_incident_severity`], [`App::add_incident_evidence`];
//! - notifications: [`App::notification_page`],
//!   [`App::acknowledge_notification`];
//! - the watch that `serve` runs: [`App::watch_audit_chain`],
//!   [`App::watch_misuse`], [`App::run_watch`];
//! - exports and KPIs: [`App::sign_export`], [`App::signed_export`],
//!   [`App::export_file`], [`App::export_drilldown_csv`], [`App::kpis`];
//! - operations: [`App::readiness`].

pub mod access;
mod alert_view;
mod alerts;
mod audit;
mod datasets;
mod error;
mod exports;
mod fetch;
mod incidents;
mod kpis;
mod matrix;
mod orgs;
mod overrides;
mod reads;
mod remap;
mod remap_runs;
mod rollup_cache;
mod rules;
mod suggestions;
mod sync;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use taxonomy::{Domain, Release, Tactic, Technique};

pub use access::{Action, Role};
pub use alert_view::{
    ALERT_MAPPING_SCHEMA_VERSION, AlertFilter, AlertIngestOutcome, AlertIngestResult,
    AlertListItem, AlertMappingView, AlertSummary, CandidateView, CanonicalEntryView,
    CanonicalView, DECLARATION_STATUSES, DeclarationView, EvidenceView, HistoryView, LineageView,
    OverrideView, alert_mapping_schema, check_schema,
};
pub use alerts::{DeclarationCounts, IngestError, IngestReport, MappingConfig};
pub use error::{ErrorKind, ServiceError, echo};
pub use exports::{
    DEFAULT_EXPORT_TTL, DOWNLOAD_PATH, ExportFile, ExportKey, ExportKind, ExportRequest,
    ExportUrlError, MIN_EXPORT_KEY_BYTES, RedactionOptions, SignedExport, SignedParams,
    download_url, signature, verify as verify_export_url,
};
pub use incidents::{
    ADJUSTMENT_REASONS, AdjustmentInput, AdjustmentView, AlertLineage,
    INCIDENT_PROFILE_SCHEMA_VERSION, INCIDENT_REVIEW_REJECTED, INCIDENT_SEVERITIES,
    INCIDENT_STATUSES, IncidentAlertView, IncidentEvidenceView, IncidentInput, IncidentProfileView,
    IncidentSummary, ProfileEntryView, SplitOutcome, incident_profile_schema,
};
pub use kpis::{
    KPI_DEFINITIONS, Kpi, KpiDefinition, KpiDimension, KpiReport, KpiRequest, KpiSegment,
    MatrixLatency, kpi_definition,
};
pub use matrix::{
    Drilldown, DrilldownAlert, DrilldownIncident, DrilldownMapping, DrilldownReview,
    ExclusionInput, FilterInput, RebuildReport,
};
pub use overrides::{
    Notification, OverrideInput, OverrideOutcome, REVIEW_STATE_FILTERS, REVIEW_STATES,
    ReviewCorrection, ReviewDecision, ReviewItem,
};
pub use remap_runs::{RemapRun, RemapState};
pub use rules::{
    RuleChange, RuleView, SigmaImportOutcome, SigmaImportSummary, SimulatedAlert, Simulation,
};
pub use store::{
    AuditEvent, AuditVerification, Dataset, DatasetFilter, DatasetId, Org, OrgId, Outcome,
    ReferenceMigration, TokenId,
};
pub use suggestions::{
    ActiveSuggester, MAX_SUGGESTIONS, ProviderReport, SubjectSuggestions, SuggestEvaluation,
    SuggestionList, ai_candidates, alert_input, incident_input,
};
pub use taxonomy::lifecycle::DatasetState;
pub use views::{MatrixFilter, MatrixView, Redaction};
pub use watch::{
    AUDIT_CHAIN_BROKEN, MisuseKind, MisuseSignal, NotificationView, SignalRule, WATCH_ACTOR,
    WatchConfig, WatchSnapshot, WatchStats,
};

/// Result of a use case.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// How the application is set up.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `sqlite://path` or `postgres://...`; anything else is refused.
    pub database_url: String,
    /// Domains that must have an active dataset for [`App::readiness`].
    pub required_domains: Vec<Domain>,
    /// Largest bundle accepted from a file, URL or upload, in bytes.
    pub max_bundle_bytes: usize,
    /// Mapping engine settings (precedence policy, arbitration threshold,
    /// ingestion batch size).
    pub mapping: MappingConfig,
    /// How long to wait for the database's first connection before
    /// reporting it unreachable.
    pub connect_timeout: std::time::Duration,
    /// What `serve` checks on its own (audit chain, misuse signals) and how
    /// often.
    pub watch: WatchConfig,
    /// Whether the re-map after an activation or a rollback runs beside
    /// the caller instead of before the call returns. A service sets it:
    /// re-mapping a large org outlasts any request. The CLI leaves it off,
    /// since its process ends with the command.
    pub remap_beside: bool,
}

impl AppConfig {
    /// Defaults for a database URL: readiness requires Enterprise, bundles
    /// up to 256 MiB (Enterprise 18.1 is 7 MB gzipped, 50 MB plain).
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            required_domains: vec![Domain::Enterprise],
            max_bundle_bytes: 256 * 1024 * 1024,
            mapping: MappingConfig::default(),
            connect_timeout: store::DEFAULT_CONNECT_TIMEOUT,
            watch: WatchConfig::default(),
            remap_beside: false,
        }
    }
}

/// Who asks for a use case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Name recorded in the audit log and in lifecycle columns.
    pub name: String,
    /// The org acted for; `None` for a local operator or platform action.
    pub org: Option<OrgId>,
    /// The role that the permission matrix checks.
    pub role: Role,
}

impl Actor {
    /// A local operator at the CLI: platform-admin, no org.
    /// Surrounding blanks are trimmed; a blank name is refused by every use
    /// case.
    pub fn operator(name: impl Into<String>) -> Self {
        Self {
            name: name.into().trim().to_string(),
            org: None,
            role: Role::PlatformAdmin,
        }
    }
}

/// The identity behind a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The token used.
    pub token_id: TokenId,
    /// The token's org.
    pub org: OrgId,
    /// The org's name.
    pub org_name: String,
    /// The token's role.
    pub role: Role,
    /// The token's label.
    pub label: String,
}

impl Principal {
    /// The actor for use cases: named after the token so that the audit log
    /// says which credential acted.
    pub fn actor(&self) -> Actor {
        Actor {
            name: format!("token:{}", self.token_id),
            org: Some(self.org.clone()),
            role: self.role,
        }
    }
}

/// A token secret: printed once at creation, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to hand to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A token just created, with its secret (shown this once).
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Token identifier.
    pub id: TokenId,
    /// Its org.
    pub org: Org,
    /// Its role.
    pub role: Role,
    /// Its label.
    pub label: String,
    /// The bearer secret (`nxa_...`).
    pub secret: Secret,
}

/// Identity hints for a load when the bundle does not carry them.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Release version (`--release`).
    pub release: Option<String>,
    /// Domain (`--domain`).
    pub domain: Option<Domain>,
    /// File name to read the identity from, for uploads.
    pub file_name: Option<String>,
}

/// One Gate A finding as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingView {
    /// `error` or `warning`.
    pub severity: String,
    /// Stable finding code (`missing_parent`).
    pub code: String,
    /// STIX id of the object at fault.
    pub object: String,
    /// Its ATT&CK ID, when it has one.
    pub attack_id: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// The Gate A report of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationSummary {
    /// The dataset.
    pub dataset_id: DatasetId,
    /// Number of errors (they block activation).
    pub errors: usize,
    /// Number of warnings.
    pub warnings: usize,
    /// Every finding.
    pub findings: Vec<FindingView>,
}

/// How a stored reference fares in a new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceStatus {
    /// Revoked; see `replaced_by`.
    Revoked,
    /// Deprecated.
    Deprecated,
    /// Not in the release at all.
    Unknown,
}

/// One stored technique reference that the new release breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatibilityIssue {
    /// Kind of the stored record (`reference_migration`, later `mapping`, `rule`).
    pub kind: String,
    /// Its identifier.
    pub id: String,
    /// Its org, for tenant records.
    pub org_id: Option<OrgId>,
    /// The technique it names.
    pub technique_id: String,
    /// What the new release says about that technique.
    pub status: ReferenceStatus,
    /// The replacement ATT&CK names, for revoked techniques.
    pub replaced_by: Option<String>,
}

/// The compatibility check run at activation; stored with the dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompatibilityReport {
    /// The dataset activated.
    pub dataset_id: DatasetId,
    /// References checked.
    pub references_checked: usize,
    /// References that become revoked, deprecated or unknown.
    pub issues: Vec<CompatibilityIssue>,
}

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    /// The dataset now active.
    pub dataset: Dataset,
    /// The dataset it retired, if one was active.
    pub retired: Option<DatasetId>,
    /// The compatibility check over stored references.
    pub compatibility: CompatibilityReport,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollback {
    /// The dataset now active again.
    pub reactivated: Dataset,
    /// The dataset that was active and is now rolled back.
    pub rolled_back: Dataset,
}

/// A suggested migration of a stored reference (from an activation's
/// compatibility report), and whether it was already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationSuggestion {
    /// Kind of the stored record.
    pub ref_kind: String,
    /// Its identifier.
    pub ref_id: String,
    /// Its org.
    pub org_id: Option<OrgId>,
    /// The technique it names.
    pub old_technique: String,
    /// The replacement.
    pub new_technique: String,
    /// True when a migration record already exists for it.
    pub applied: bool,
}

/// One side of a diff: a stored dataset or a bundle file or URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSide {
    /// What the caller named (dataset id, path or URL).
    pub source: String,
    /// Domain of the release.
    pub domain: Domain,
    /// Release version.
    pub release: String,
    /// The dataset, when the side is one.
    pub dataset_id: Option<DatasetId>,
}

/// A release diff in both renderings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    /// The older side.
    pub from: DiffSide,
    /// The newer side.
    pub to: DiffSide,
    /// The diff as JSON (`techniques.{added,major,minor,deprecated,revoked,removed}`,
    /// `tactics` likewise, `matrices`, `platforms`).
    pub diff: serde_json::Value,
    /// The diff as a Markdown changelog.
    pub markdown: String,
}

/// The active dataset a taxonomy read was answered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// Dataset identifier.
    pub id: DatasetId,
    /// Domain.
    pub domain: Domain,
    /// Release version.
    pub release: String,
}

/// A domain's tactics in matrix order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TacticList {
    /// Where they come from.
    pub dataset: DatasetRef,
    /// Live tactics in matrix order.
    pub tactics: Vec<Tactic>,
}

/// Which techniques by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// Neither revoked nor deprecated (default).
    #[default]
    Live,
    /// Deprecated, not revoked.
    Deprecated,
    /// Revoked.
    Revoked,
    /// Everything.
    All,
}

/// Filters for [`App::techniques`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TechniqueFilter {
    /// Tactic ID (`TA0002`) or shortname (`execution`).
    pub tactic: Option<String>,
    /// Platform name, case-insensitive (`Windows`).
    pub platform: Option<String>,
    /// Status to include.
    pub status: StatusFilter,
    /// Leave sub-techniques out.
    pub exclude_subtechniques: bool,
}

/// A page request: an opaque cursor from a previous page and a size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size; default 50, at most 500.
    pub limit: Option<usize>,
}

impl PageRequest {
    /// Default page size.
    pub const DEFAULT_LIMIT: usize = 50;
    /// Largest page size.
    pub const MAX_LIMIT: usize = 500;

    /// The effective page size.
    pub fn effective_limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// The id inside the cursor of a list keyed on time-ordered ids (alerts,
/// review items, drilldown rows): a UUID, spelled as stored (lower-case,
/// hyphenated). Anything else is refused: compared as text it would
/// silently page from an arbitrary place, or show nothing.
pub(crate) fn id_cursor(cursor: &str) -> Result<String> {
    uuid::Uuid::parse_str(cursor.trim())
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| ServiceError::InvalidInput {
            field: "cursor".into(),
            message: "not a cursor returned by this API; start again without a cursor".into(),
        })
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in a stable order.
    pub items: Vec<T>,
    /// Cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of techniques with the dataset it was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TechniquePage {
    /// Where they come from.
    pub dataset: DatasetRef,
    /// Techniques ordered by ATT&CK ID.
    pub page: Page<Technique>,
}

/// One technique with its family and replacement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TechniqueDetail {
    /// Where it comes from.
    pub dataset: DatasetRef,
    /// The technique.
    pub technique: Technique,
    /// Its parent, for a sub-technique.
    pub parent: Option<Technique>,
    /// Its sub-techniques (all statuses), ordered by ID.
    pub subtechniques: Vec<Technique>,
    /// The technique that replaces it, when revoked and ATT&CK names one.
    pub replacement: Option<Technique>,
}

/// One release found by a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncedRelease {
    /// The source file or URL.
    pub source: String,
    /// The dataset created (validated or rejected).
    pub dataset: Dataset,
    /// The change summary against the active dataset, if any.
    pub change_summary: Option<serde_json::Value>,
}

/// What one sync pass did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Releases loaded and validated in this pass.
    pub loaded: Vec<SyncedRelease>,
    /// Sources skipped because their bytes are already loaded (`source`, dataset id).
    pub skipped: Vec<(String, DatasetId)>,
    /// Sources that failed (`source`, one-line reason).
    pub failed: Vec<(String, String)>,
}

/// One domain's readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainReadiness {
    /// The domain.
    pub domain: Domain,
    /// Its active dataset, if any.
    pub active: Option<DatasetRef>,
}

/// Whether the service can answer reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// True when the database answers and every required domain has an
    /// active dataset.
    pub ready: bool,
    /// The database answered.
    pub database: bool,
    /// Required domains.
    pub domains: Vec<DomainReadiness>,
}

/// The application: the store plus a cache of parsed active releases.
#[derive(Clone)]
pub struct App {
    store: store::Store,
    config: Arc<AppConfig>,
    /// Parsed releases keyed by dataset id. Datasets never change content,
    /// so entries never go stale; only activation decides which is read.
    releases: Arc<RwLock<HashMap<DatasetId, Arc<Release>>>>,
    /// Compiled mapping rules per org.
    mapping_cache: Arc<alerts::RuleCache>,
    /// Decoded matrix rollups of recent reads.
    rollup_cache: Arc<rollup_cache::RollupCache>,
    /// Orgs read before (orgs never change once created).
    orgs: Arc<orgs::OrgCache>,
    /// Built suggesters per dataset and the optional external provider.
    suggesters: Arc<suggestions::SuggestState>,
    /// The watch's counters, read by `/metrics`.
    watch: WatchStats,
    /// The latest re-map run of each org (see [`remap_runs`]).
    remap_runs: Arc<remap_runs::RemapRuns>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects to the configured database and applies pending migrations.
    pub async fn connect(config: AppConfig) -> Result<App> {
        let store =
            store::Store::connect_within(&config.database_url, config.connect_timeout).await?;
        store.migrate().await?;
        Ok(App {
            store,
            config: Arc::new(config),
            releases: Arc::default(),
            mapping_cache: Arc::default(),
            rollup_cache: Arc::default(),
            orgs: Arc::default(),
            suggesters: Arc::default(),
            watch: WatchStats::default(),
            remap_runs: Arc::default(),
        })
    }

    /// The underlying store, for wiring and tests.
    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Checks the permission matrix; a refusal is audited (outcome `denied`)
    /// before it is returned.
    pub(crate) async fn authorize(
        &self,
        actor: &Actor,
        action: Action,
        target: (&str, &str),
    ) -> Result<()> {
        // Every use case passes here, so this is the one place that refuses
        // an anonymous actor: the audit log and the four-eyes rule need a
        // name to tell people apart.
        if actor.name.trim().is_empty() {
            return Err(ServiceError::InvalidInput {
                field: "actor".into(),
                message: "actor must name a person".into(),
            });
        }
        if access::allows(actor.role, action) {
            return Ok(());
        }
        let details = serde_json::json!({"role": actor.role.as_str(), "code": "forbidden"});
        self.audit_outcome(actor, action.as_str(), target, Outcome::Denied, details)
            .await?;
        Err(ServiceError::Forbidden {
            role: actor.role,
            action,
        })
    }

    /// The role check every use case makes first (a denial is audited), for
    /// a caller that must answer it before reading the rest of a request:
    /// an actor without the role is refused whatever else it sent.
    pub async fn check_permission(
        &self,
        actor: &Actor,
        action: Action,
        target: (&str, &str),
    ) -> Result<()> {
        self.authorize(actor, action, target).await
    }

    /// Appends one audit event in its own transaction (refusals and
    /// failures, which change nothing else).
    pub(crate) async fn audit_outcome(
        &self,
        actor: &Actor,
        action: &str,
        target: (&str, &str),
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<()> {
        self.store
            .append_audit(&audit_event(actor, action, target, outcome, details))
            .await?;
        Ok(())
    }

    /// The parsed release of a dataset: from the cache, else re-parsed from
    /// the stored bundle with the identity recorded at load.
    pub(crate) async fn release_of(&self, dataset: &Dataset) -> Result<Arc<Release>> {
        if let Some(release) = self.cached(&dataset.id) {
            return Ok(release);
        }
        let bytes =
            self.store
                .bundle(&dataset.id)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "dataset bundle",
                    id: dataset.id.to_string(),
                })?;
        let hints = taxonomy::LoadHints {
            file_name: None,
            release: Some(dataset.release.clone()),
            domain: Some(dataset.domain),
        };
        let release = Arc::new(parse_bytes(bytes, hints, &dataset.source).await?);
        self.cache(&dataset.id, release.clone());
        Ok(release)
    }

    fn cached(&self, id: &DatasetId) -> Option<Arc<Release>> {
        // A poisoned lock only means another reader panicked mid-insert; the
        // map itself is still a valid map of immutable releases.
        let map = self.releases.read().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    pub(crate) fn cache(&self, id: &DatasetId, release: Arc<Release>) {
        let mut map = self.releases.write().unwrap_or_else(|e| e.into_inner());
        // A parsed Enterprise release weighs tens of megabytes: keep a few
        // (the active ones of each domain and the one being worked on) and
        // start over when full rather than track recency.
        if map.len() >= MAX_CACHED_RELEASES && !map.contains_key(id) {
            map.clear();
        }
        map.insert(id.clone(), release);
    }
}

/// Most parsed releases kept in memory at once.
const MAX_CACHED_RELEASES: usize = 4;

/// An audit event for `actor`.
pub(crate) fn audit_event(
    actor: &Actor,
    action: &str,
    target: (&str, &str),
    outcome: Outcome,
    details: serde_json::Value,
) -> store::NewAuditEvent {
    store::NewAuditEvent {
        org_id: actor.org.clone(),
        actor: actor.name.clone(),
        action: action.to_string(),
        target_kind: target.0.to_string(),
        target_id: target.1.to_string(),
        outcome,
        details,
    }
}

/// Parses bundle bytes off the async runtime: a large release takes a
/// noticeable amount of CPU time.
pub(crate) async fn parse_bytes(
    bytes: Vec<u8>,
    hints: taxonomy::LoadHints,
    source_name: &str,
) -> Result<Release> {
    // Stored bundles passed the cap when they were loaded; a cap lowered
    // since must not make them unreadable.
    parse_bytes_within(bytes, hints, source_name, u64::MAX).await
}

/// [`parse_bytes`] for new input: refuses a bundle larger than `limit`
/// bytes once decompressed.
pub(crate) async fn parse_bytes_within(
    bytes: Vec<u8>,
    hints: taxonomy::LoadHints,
    source_name: &str,
    limit: u64,
) -> Result<Release> {
    let parsed =
        tokio::task::spawn_blocking(move || taxonomy::parse_with_limit(&bytes, &hints, limit))
            .await
            .map_err(|e| ServiceError::Parse {
                source_name: source_name.to_string(),
                message: format!("the parser stopped unexpectedly: {e}"),
                location: None,
            })?;
    parsed.map_err(|e| {
        if let taxonomy::ParseError::TooLarge { limit } = e {
            return ServiceError::TooLarge {
                source_name: source_name.to_string(),
                limit,
            };
        }
        let location = match &e {
            taxonomy::ParseError::Json {
                line,
                column,
                offset,
                ..
            } => Some(format!("line {line}, column {column} (byte {offset})")),
            taxonomy::ParseError::NotABundle { line, column, .. } if *line > 0 => {
                Some(format!("line {line}, column {column}"))
            }
            _ => None,
        };
        ServiceError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
            location,
        }
    })
}
