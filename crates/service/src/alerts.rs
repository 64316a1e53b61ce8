//! Alerts: ingestion with mapping at ingestion, the alert mapping view, and
//! the recomputation of canonical mappings that rule changes, overrides,
//! changed alerts and new releases trigger.
//!
//! Ingestion streams: a blocking worker decodes and maps one batch of lines
//! while the database takes the previous one, so memory stays flat in the
//! number of alerts and both cores work.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use mapping::alert::{FieldSelection, decode_alert, decode_alert_keeping};
use mapping::engine::AlertMapping;
use mapping::overrides::Target;
use mapping::precedence::ReviewFlag;
use mapping::{
    CanonicalSet, Confidence, DecodeError, Evidence, Mapper, MappingCandidate, NormalizedAlert,
    Override, OverrideAction, OverrideStatus, PrecedencePolicy, ReasonCode, RuleSet, Source,
    Subject,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::{
    AlertId, AlertRecord, CandidateRecord, CanonicalEntryRecord, CanonicalRecord,
    CanonicalSetRecord, MappingUpdate, OrgScope, OverrideRecord, ReviewRecord, RollupRecord,
};
use taxonomy::{Domain, Release, TacticId, TechniqueId};

use crate::{Action, Actor, App, Dataset, OrgId, Outcome, Result, ServiceError, audit_event};

/// Settings of the mapping engine.
#[derive(Debug, Clone)]
pub struct MappingConfig {
    /// Band thresholds, the AI bar and the over-mapping limit.
    pub policy: PrecedencePolicy,
    /// Conflicting approved overrides on one alert (flip-flops) that lock it
    /// for arbitration by a lead.
    pub flip_flop_threshold: usize,
    /// Alerts per ingestion transaction.
    pub batch_size: usize,
    /// Ask the built-in suggester for `ai` candidates at ingestion when no
    /// rule and no vendor context maps an alert.
    pub ai_at_ingest: bool,
}

impl Default for MappingConfig {
    /// Default policy, arbitration after 3 flip-flops, 1,000 alerts per
    /// batch, AI suggestions at ingestion off (opt in: they add `ai`
    /// candidates that reviewers must work through).
    fn default() -> Self {
        MappingConfig {
            policy: PrecedencePolicy::default(),
            flip_flop_threshold: 3,
            batch_size: 1_000,
            ai_at_ingest: false,
        }
    }
}

/// One rejected NDJSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestError {
    /// 1-based line number (position in the list for JSON arrays).
    pub line: usize,
    /// Stable code (`invalid_json`, `unrecognized_format`, `missing_field`, ...).
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// What an ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// New alerts stored.
    pub ingested: usize,
    /// Of those, alerts with at least one canonical mapping.
    pub mapped: usize,
    /// Of those, alerts without canonical mapping.
    pub unmapped: usize,
    /// Lines refused.
    pub rejected: usize,
    /// Alerts already stored with the same content (not stored again).
    pub duplicates: usize,
    /// Alerts already stored whose content changed: re-mapped.
    pub updated: usize,
    /// Review items opened.
    pub queued_for_review: usize,
    /// Techniques the stored alerts declared themselves (OCSF `attacks`, ECS
    /// `threat`) that the active release did not take as declared; each
    /// alert's view lists its own.
    pub declarations: DeclarationCounts,
    /// Why each refused line was refused.
    pub errors: Vec<IngestError>,
    /// New alerts stored after an activation retired the release they were
    /// mapped under (stored marked stale, re-mapped when the ingestion
    /// ends).
    #[serde(skip)]
    pub(crate) retired_release: Vec<AlertId>,
}

impl IngestReport {
    /// Adds what another part of the same ingestion did.
    fn absorb(&mut self, other: IngestReport) {
        self.retired_release.extend(other.retired_release);
        self.ingested += other.ingested;
        self.mapped += other.mapped;
        self.unmapped += other.unmapped;
        self.rejected += other.rejected;
        self.duplicates += other.duplicates;
        self.updated += other.updated;
        self.queued_for_review += other.queued_for_review;
        self.declarations.merge(&other.declarations);
        self.errors.extend(other.errors);
    }
}

/// Declarations of the alerts stored by one ingestion that were not mapped
/// as declared, by status (see `docs/alert-formats.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarationCounts {
    /// Alerts with at least one such declaration.
    pub alerts: usize,
    /// Techniques unknown in the release: not mapped.
    pub unknown: usize,
    /// Revoked techniques.
    pub revoked: usize,
    /// Of the revoked, those mapped to the live technique ATT&CK replaced
    /// them with.
    pub replaced: usize,
    /// Deprecated techniques: not mapped.
    pub deprecated: usize,
    /// Values that are not technique ids: not mapped.
    pub malformed: usize,
    /// Techniques mapped without a tactic the alert named beside them,
    /// which is not one of their tactics in the release.
    pub tactic_not_kept: usize,
}

impl DeclarationCounts {
    /// Counts one alert's problems.
    fn add(&mut self, problems: &[mapping::engine::DeclarationProblem]) {
        use mapping::engine::DeclarationStatus as S;
        if problems.is_empty() {
            return;
        }
        self.alerts += 1;
        for p in problems {
            match p.status {
                S::Unknown => self.unknown += 1,
                S::Revoked => {
                    self.revoked += 1;
                    if p.mapped_to.is_some() {
                        self.replaced += 1;
                    }
                }
                S::Deprecated => self.deprecated += 1,
                S::Malformed => self.malformed += 1,
                S::TacticNotKept => self.tactic_not_kept += 1,
            }
        }
    }

    /// Adds another batch's counts.
    fn merge(&mut self, other: &DeclarationCounts) {
        self.alerts += other.alerts;
        self.unknown += other.unknown;
        self.revoked += other.revoked;
        self.replaced += other.replaced;
        self.deprecated += other.deprecated;
        self.malformed += other.malformed;
        self.tactic_not_kept += other.tactic_not_kept;
    }
}

/// Batches a bulk ingest writes between two checkpoints beside it: four
/// batches of 1,000 alerts are about 16 MiB of log, a quarter of what makes
/// a writer checkpoint on its own (`wal_autocheckpoint`).
const CHECKPOINT_EVERY: usize = 4;

/// Batches of one ingestion PostgreSQL stores at once, each in its own
/// transaction on its own connection. Measured on two cores: one writer
/// left 40 % of the machine idle and made 6,700 alerts/s, two left 15 %
/// and made 9,200/s, three made no more.
const POSTGRES_INGEST_WRITERS: usize = 2;

/// How often a transaction that PostgreSQL rolled back to break a
/// deadlock is tried again before the error is answered.
const CONTENTION_ATTEMPTS: usize = 5;

/// The compiled rules of one org under one dataset.
#[derive(Debug)]
pub(crate) struct CompiledRules {
    dataset_id: crate::DatasetId,
    revision: i64,
    pub(crate) rules: Arc<RuleSet>,
}

/// Per-org compiled rule indexes, rebuilt when the org's rule revision or
/// the active dataset changes (so every node of a cluster notices changes
/// made through another node).
#[derive(Debug, Default)]
pub(crate) struct RuleCache {
    by_org: RwLock<HashMap<OrgId, Arc<CompiledRules>>>,
}

/// Everything needed to map an org's alerts now.
#[derive(Clone)]
pub(crate) struct Engine {
    pub(crate) dataset: Dataset,
    pub(crate) release: Arc<Release>,
    pub(crate) rules: Arc<CompiledRules>,
    pub(crate) policy: PrecedencePolicy,
    /// The suggester of the same dataset, when AI candidates are wanted.
    pub(crate) ai: Option<crate::ActiveSuggester>,
}

impl Engine {
    pub(crate) fn mapper(&self) -> Mapper<'_> {
        Mapper::new(
            &self.release,
            self.rules.rules.clone(),
            Some(self.dataset.id.to_string()),
        )
        .with_policy(self.policy)
    }
}

/// One decoded line, mapped, ready to store.
struct Prepared {
    line: usize,
    id: AlertId,
    raw: String,
    content_sha256: String,
    alert: NormalizedAlert,
    /// The platform the matrix counts it under (see `matrix::platform_in`).
    platform: String,
    mapping: AlertMapping,
    set: CanonicalSet,
}

/// The changes of re-sent alerts whose content differs from what is
/// stored (see `App::content_changes`).
#[derive(Default)]
struct ContentChanges {
    /// For every alert sent, whether its content changed.
    outcomes: Vec<bool>,
    /// The new contents, each with the `content_sha256` it replaces.
    records: Vec<(AlertRecord, String)>,
    rollup: Vec<store::RollupRecord>,
    events: Vec<store::NewAuditEvent>,
}

/// What storing one new alert adds: its row, its candidates, its first
/// canonical set, its review items and its rollup changes. The decoding
/// worker builds them, so the writer, which sets the pace, only writes.
struct NewRecords {
    alert: store::AlertRow,
    mapping: MappingRecords,
}

/// The rows of a new alert's mapping, written once its alert row is in.
struct MappingRecords {
    /// Its candidates and first canonical set, as rows.
    rows: store::MappingRows,
    reviews: Vec<ReviewRecord>,
    rollup: Vec<RollupRecord>,
}

/// One batch from the decoding worker.
struct Batch {
    prepared: Vec<Prepared>,
    /// The records of each prepared alert, in the same order, should it
    /// turn out to be new.
    records: Vec<NewRecords>,
    errors: Vec<IngestError>,
    first_line: usize,
    last_line: usize,
}

impl Batch {
    /// The source uids of the batch's alerts.
    fn uids(&self) -> HashSet<String> {
        self.prepared
            .iter()
            .map(|p| p.alert.source_uid.clone())
            .collect()
    }

    /// True when the batch names one of `uids`.
    fn names_any(&self, uids: &HashSet<String>) -> bool {
        self.prepared
            .iter()
            .any(|p| uids.contains(p.alert.source_uid.as_str()))
    }
}

/// Where an ingestion spent its time, logged at debug level: the decoding
/// worker and the writer overlap, so the slower of the two sets the pace.
#[derive(Debug, Default)]
struct IngestPhases {
    /// Decoding, mapping and hashing lines (the worker).
    decode_map: std::time::Duration,
    /// The worker waiting for the writer to take a batch.
    worker_blocked: std::time::Duration,
    /// The writer waiting for the worker to hand over a batch.
    writer_idle: std::time::Duration,
    /// Looking up stored alerts by source uid.
    lookup: std::time::Duration,
    /// Turning mapped alerts into records and rollup deltas.
    records: std::time::Duration,
    /// The write transaction, from begin to commit; the parts below are
    /// within it.
    write: std::time::Duration,
    /// Inserting alert rows.
    write_alerts: std::time::Duration,
    /// Inserting candidate rows.
    write_candidates: std::time::Duration,
    /// Inserting canonical sets and their entries.
    write_canonical: std::time::Duration,
    /// Applying rollup deltas.
    write_rollups: std::time::Duration,
    /// Review items, the audit event and the commit.
    write_rest: std::time::Duration,
}

impl IngestPhases {
    /// Adds the phases of a batch stored beside another one.
    fn absorb(&mut self, other: &IngestPhases) {
        self.lookup += other.lookup;
        self.records += other.records;
        self.write += other.write;
        self.write_alerts += other.write_alerts;
        self.write_candidates += other.write_candidates;
        self.write_canonical += other.write_canonical;
        self.write_rollups += other.write_rollups;
        self.write_rest += other.write_rest;
    }
}

/// Where the lines come from.
pub(crate) enum Lines {
    /// NDJSON text.
    Reader(Box<dyn BufRead + Send>),
    /// Already parsed documents.
    Values(Vec<Value>),
    /// Whole documents as sent, each stored as written (a pretty-printed
    /// one keeps its line breaks).
    Texts(Vec<String>),
}

impl App {
    /// Ingests NDJSON alerts (OCSF, ECS or native, detected per line) for an
    /// org, mapping each at ingestion. A malformed line is rejected with its
    /// line number while the others are stored; an alert already stored with
    /// the same source uid is a duplicate, or an update when its content
    /// changed.
    pub async fn ingest_alerts(
        &self,
        actor: &Actor,
        org: &str,
        input: Box<dyn BufRead + Send>,
    ) -> Result<IngestReport> {
        self.ingest(actor, org, Lines::Reader(input)).await
    }

    /// Ingests alerts given as JSON documents (the API's JSON array body);
    /// `line` in errors is the 1-based position in the list.
    pub async fn ingest_alert_values(
        &self,
        actor: &Actor,
        org: &str,
        alerts: Vec<Value>,
    ) -> Result<IngestReport> {
        self.ingest(actor, org, Lines::Values(alerts)).await
    }

    /// Ingests alert documents given as JSON text, each stored exactly as
    /// written; `line` in errors is the 1-based position in the list.
    pub async fn ingest_alert_texts(
        &self,
        actor: &Actor,
        org: &str,
        alerts: Vec<String>,
    ) -> Result<IngestReport> {
        self.ingest(actor, org, Lines::Texts(alerts)).await
    }

    async fn ingest(&self, actor: &Actor, org: &str, lines: Lines) -> Result<IngestReport> {
        self.authorize(actor, Action::AlertIngest, ("alerts", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let mut engine = self.engine(&scope).await?;
        if self.config.mapping.ai_at_ingest {
            let ai = self.active_suggester(actor, Domain::Enterprise).await?;
            // The suggester must speak the release the rules were checked
            // against; right after an activation both follow the new one.
            engine.ai = (ai.dataset.id == engine.dataset.id).then_some(ai);
        }

        let batch_size = self.config.mapping.batch_size.max(1);
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(self.ingest_writers() + 1);
        let worker_engine = engine.clone();
        let backend = self.store.backend();
        let worker_scope = scope.clone();
        let worker = tokio::task::spawn_blocking(move || {
            produce(
                lines,
                &worker_scope,
                &worker_engine,
                batch_size,
                backend,
                &sender,
            )
        });

        let mut report = IngestReport::default();
        let mut phases = IngestPhases::default();
        let mut checkpoint: Option<tokio::task::JoinHandle<()>> = None;
        let (mut batches, mut next_checkpoint) = (0usize, CHECKPOINT_EVERY);
        // PostgreSQL stores several batches at once on as many
        // connections: one writer left the server idle while the client
        // built the next statement and the other way round. SQLite has one
        // writer at a time anyway.
        let writers = self.ingest_writers();
        let expect_new = AtomicBool::new(true);
        let store_one = |batch: Batch, id: u64| {
            let (scope, engine, expect_new) = (&scope, &engine, &expect_new);
            async move {
                let (mut part, mut part_phases) =
                    (IngestReport::default(), IngestPhases::default());
                let stored = self
                    .store_batch(
                        actor,
                        scope,
                        engine,
                        batch,
                        expect_new,
                        &mut part,
                        &mut part_phases,
                    )
                    .await;
                (id, stored.map(|()| (part, part_phases)))
            }
        };
        // Each writer takes the next batch as soon as it is done with its
        // last. Stored in pairs, each pair waiting for its slower half, the
        // two connections left a seventh of both cores idle (measured with
        // `perf` on PostgreSQL; 1.15x faster at 200,000 alerts).
        let mut flying = futures_util::stream::FuturesUnordered::new();
        let mut flying_uids: HashMap<u64, HashSet<String>> = HashMap::new();
        let mut carried: Option<Batch> = None;
        let (mut closed, mut next_id) = (false, 0u64);
        loop {
            // Batches naming the same alert go one after the other, so that
            // the later line is the later write.
            if let Some(batch) = carried.take() {
                if flying.len() < writers && !flying_uids.values().any(|u| batch.names_any(u)) {
                    flying_uids.insert(next_id, batch.uids());
                    flying.push(store_one(batch, next_id));
                    next_id += 1;
                } else {
                    carried = Some(batch);
                }
            }
            let take = carried.is_none() && !closed && flying.len() < writers;
            if !take && flying.is_empty() {
                if carried.is_some() {
                    continue;
                }
                break;
            }
            let waiting = std::time::Instant::now();
            let idle = flying.is_empty();
            tokio::select! {
                Some((id, outcome)) = flying.next(), if !flying.is_empty() => {
                    flying_uids.remove(&id);
                    let (part, part_phases) = outcome?;
                    report.absorb(part);
                    phases.absorb(&part_phases);
                    batches += 1;
                }
                batch = receiver.recv(), if take => match batch {
                    Some(batch) => carried = Some(batch),
                    None => closed = true,
                },
            }
            if idle {
                phases.writer_idle += waiting.elapsed();
            }
            // Every few batches the log written so far is copied back into
            // the database beside the writer (SQLite; a no-op elsewhere),
            // one copy at a time.
            if batches >= next_checkpoint && checkpoint.as_ref().is_none_or(|c| c.is_finished()) {
                next_checkpoint = batches + CHECKPOINT_EVERY;
                let store = self.store.clone();
                checkpoint = Some(tokio::spawn(async move {
                    if let Err(e) = store.checkpoint_beside().await {
                        tracing::debug!(error = %e, "checkpoint beside a bulk ingest skipped");
                    }
                }));
            }
        }
        let (decode_map, worker_blocked) = worker
            .await
            .map_err(|e| ServiceError::Internal(format!("the alert decoder stopped: {e}")))?;
        phases.decode_map = decode_map;
        phases.worker_blocked = worker_blocked;
        report.errors.sort_by_key(|e| e.line);
        let retired = std::mem::take(&mut report.retired_release);
        if !retired.is_empty() {
            self.remap_after_retirement(actor, &scope, retired).await;
        }
        tracing::info!(org = %scope.org(), ingested = report.ingested, rejected = report.rejected, "alerts ingested");
        tracing::debug!(org = %scope.org(), ?phases, "ingestion phases");
        Ok(report)
    }

    /// How many batches of one ingestion are stored at once.
    fn ingest_writers(&self) -> usize {
        match self.store.backend() {
            store::Backend::Postgres => POSTGRES_INGEST_WRITERS,
            store::Backend::Sqlite => 1,
        }
    }

    /// Stores one batch in one transaction with its audit event.
    /// `expect_new` is shared by the batches of one ingestion (see
    /// `Tx::insert_new_alert_rows`).
    #[allow(clippy::too_many_arguments)]
    async fn store_batch(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        engine: &Engine,
        batch: Batch,
        expect_new: &AtomicBool,
        report: &mut IngestReport,
        phases: &mut IngestPhases,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        report.rejected += batch.errors.len();
        report.errors.extend(batch.errors.iter().cloned());
        // Within the batch the first copy of a uid is the candidate for
        // insertion; a later copy is a duplicate of the copy before it or,
        // with other content, an update once the first is stored. `seen`
        // holds the content of the last copy so far, so that A, B, A is two
        // updates and ends with A.
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut alerts: Vec<store::AlertRow> = Vec::new();
        let mut fresh: Vec<(Prepared, MappingRecords)> = Vec::new();
        let mut updates: Vec<(Option<AlertId>, Prepared)> = Vec::new();
        let mut duplicates = 0;
        for (p, records) in batch.prepared.into_iter().zip(batch.records) {
            match seen.get_mut(&p.alert.source_uid) {
                Some(last) if *last == p.content_sha256 => duplicates += 1,
                Some(last) => {
                    last.clone_from(&p.content_sha256);
                    updates.push((None, p));
                }
                None => {
                    seen.insert(p.alert.source_uid.clone(), p.content_sha256.clone());
                    alerts.push(records.alert);
                    fresh.push((p, records.mapping));
                }
            }
        }
        phases.records += started.elapsed();

        let started = std::time::Instant::now();
        let mut tx = self.store.begin_in(scope).await?;
        // An activation since the batch was mapped: its alerts go in marked
        // stale and are re-mapped when the ingestion ends, as the
        // activation's own re-map may have passed them already.
        let retired = !tx.hold_active(&engine.dataset.id).await?;
        if retired {
            let release = tx
                .active_dataset(Domain::Enterprise)
                .await?
                .map(|d| d.release)
                .unwrap_or_default();
            let reason = json!([{"reason": "release_activated", "release": release}]).to_string();
            for row in &mut alerts {
                row.mark_stale(&reason);
            }
        }
        let mut lap = std::time::Instant::now();
        let mut split = |part: &mut std::time::Duration| {
            *part += lap.elapsed();
            lap = std::time::Instant::now();
        };
        // Insert first, look up only what the database refused: a batch of
        // new alerts, the usual case, costs no read.
        let sent = alerts.len();
        let inserted = tx
            .insert_new_alert_rows(alerts, expect_new.load(Ordering::Relaxed))
            .await?;
        // A batch with alerts stored already (a feed sent again) makes the
        // next one skip the plain insert that would be refused.
        expect_new.store(inserted.len() == sent, Ordering::Relaxed);
        split(&mut phases.write_alerts);
        let refused: Vec<String> = fresh
            .iter()
            .filter(|(p, _)| !inserted.contains(&p.alert.source_uid))
            .map(|(p, _)| p.alert.source_uid.clone())
            .collect();
        let stored = if refused.is_empty() {
            HashMap::new()
        } else {
            tx.alerts_by_source_uid(scope, &refused).await?
        };
        split(&mut phases.lookup);

        let (mut ingested, mut mapped) = (0, 0);
        let mut declarations = DeclarationCounts::default();
        let mut mapping_rows = store::MappingRows::default();
        let mut reviews = Vec::new();
        let mut rollup = Vec::new();
        let mut done = Vec::with_capacity(fresh.len());
        for (p, records) in fresh {
            if !inserted.contains(&p.alert.source_uid) {
                match stored.get(&p.alert.source_uid) {
                    Some((_, sha)) if *sha == p.content_sha256 => duplicates += 1,
                    Some((id, _)) => updates.push((Some(id.clone()), p)),
                    // Refused by the key yet not visible: PostgreSQL makes a
                    // conflicting insert wait for the other writer's commit,
                    // so this does not happen; should it, the stored copy
                    // stands and this one counts as a duplicate.
                    None => duplicates += 1,
                }
                continue;
            }
            ingested += 1;
            if !p.set.is_unmapped() {
                mapped += 1;
            }
            declarations.add(&p.mapping.problems);
            reviews.extend(records.reviews);
            mapping_rows.append(records.rows);
            rollup.extend(records.rollup);
            done.push(p);
        }
        if retired {
            report
                .retired_release
                .extend(done.iter().map(|p| p.id.clone()));
        }
        // Freeing a thousand decoded documents is a measurable share of the
        // writer's time, and the writer sets the pace; the blocking pool
        // frees them beside it.
        tokio::task::spawn_blocking(move || drop(done));
        let (candidates_took, _) = tx.insert_mapping_rows(mapping_rows).await?;
        split(&mut phases.write_canonical);
        phases.write_canonical = phases.write_canonical.saturating_sub(candidates_took);
        phases.write_candidates += candidates_took;
        store::rollups::apply_delta(&mut tx, scope, rollup).await?;
        split(&mut phases.write_rollups);
        let queued = reviews.len();
        tx.open_reviews(reviews).await?;
        let details = json!({
            "lines": [batch.first_line, batch.last_line],
            "ingested": ingested,
            "mapped": mapped,
            "duplicates": duplicates,
            "rejected": batch.errors.len(),
            "dataset": engine.dataset.id,
            "rule_revision": engine.rules.revision,
        });
        tx.append_audit(&self.org_event(
            actor,
            scope,
            "alert_ingest",
            ("alerts", "batch"),
            details,
        ))
        .await?;
        tx.commit().await?;
        split(&mut phases.write_rest);
        phases.write += started.elapsed();

        report.ingested += ingested;
        report.mapped += mapped;
        report.unmapped += ingested - mapped;
        report.duplicates += duplicates;
        report.queued_for_review += queued;
        report.declarations.merge(&declarations);

        // In line order: the update of a stored alert's first copy comes
        // before those of its later copies, and the last line wins.
        updates.sort_by_key(|(_, p)| p.line);
        let mut pending = Vec::with_capacity(updates.len());
        for (id, p) in updates {
            let id = match id {
                Some(id) => id,
                None => match self.store.alert(scope, &p.alert.source_uid).await? {
                    Some(a) => a.id,
                    None => continue,
                },
            };
            pending.push((id, p));
        }
        // Stored in rounds of one transaction each, in which no alert comes
        // twice: a later copy of an alert waits for the next round, so it
        // compares with the content its earlier copy left.
        while !pending.is_empty() {
            let mut named = std::collections::HashSet::new();
            let (round, later): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|(id, _)| named.insert(id.clone()));
            pending = later;
            let problems: Vec<_> = round
                .iter()
                .map(|(_, p)| p.mapping.problems.clone())
                .collect();
            let outcomes = self.update_alerts(actor, scope, engine, round).await?;
            for (updated, problems) in outcomes.into_iter().zip(problems) {
                if updated {
                    report.updated += 1;
                    report.declarations.add(&problems);
                } else {
                    report.duplicates += 1;
                }
            }
        }
        Ok(())
    }

    /// Stored alerts sent again with other content, each alert at most
    /// once: where what changed can change an alert's mapping (severity,
    /// evidence, analytic, declarations), the new content is stored, the
    /// mapping is marked stale and recomputed. One transaction for the
    /// contents and one for the mappings: two per alert made a stream of
    /// re-sent alerts crawl. Answers, for each, whether it was updated
    /// (false when nothing relevant changed).
    async fn update_alerts(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        engine: &Engine,
        updates: Vec<(AlertId, Prepared)>,
    ) -> Result<Vec<bool>> {
        // The contents are compared with what is stored, and written only
        // while that is still stored: another ingestion that updated one
        // of these alerts in between makes this one read them again, so
        // that a change is counted, audited and rolled up once.
        let (outcomes, records) = match self.store_changes(actor, scope, &updates).await? {
            Some(changes) => (changes.outcomes, changes.records),
            // Another ingestion keeps changing some of these alerts: one at
            // a time, each read again until its write lands, so that one
            // busy alert does not hold back the rest of the round.
            None => {
                let (mut outcomes, mut records) = (Vec::new(), Vec::new());
                for update in updates.chunks(1) {
                    let changes = self.store_changes(actor, scope, update).await?.ok_or_else(
                        || {
                            ServiceError::Conflict(format!(
                                "alert {} kept being updated by other ingestions while this one \
                             updated it; send it again",
                                update[0].1.alert.source_uid
                            ))
                        },
                    )?;
                    outcomes.extend(changes.outcomes);
                    records.extend(changes.records);
                }
                (outcomes, records)
            }
        };
        if records.is_empty() {
            return Ok(outcomes);
        }
        // In key order, as `content_changes` leaves one round of them.
        let mut records: Vec<AlertRecord> = records.into_iter().map(|(r, _)| r).collect();
        records.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        match self
            .recompute_settled(actor, scope, engine, records.clone(), "alert_update")
            .await
        {
            // An activation since the ingestion began retired the release
            // its engine maps with (the write holds the release, so this is
            // known before anything is written): the new contents, stored
            // already, are mapped under the active one instead of failing.
            Err(ServiceError::Conflict(_)) => {
                let fresh = self.engine(scope).await?;
                self.recompute_settled(actor, scope, &fresh, records, "alert_update")
                    .await?;
            }
            outcome => {
                outcome?;
            }
        }
        Ok(outcomes)
    }

    /// Compares `updates` with what is stored and stores the changes, read
    /// again and tried again while another writer changes the same alerts
    /// in between (see `update_alert_content`); `None` when that kept
    /// happening.
    async fn store_changes(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        updates: &[(AlertId, Prepared)],
    ) -> Result<Option<ContentChanges>> {
        for _ in 0..CONTENTION_ATTEMPTS {
            let changes = self.content_changes(actor, scope, updates).await?;
            if changes.records.is_empty() {
                return Ok(Some(changes));
            }
            match self.store_contents(scope, &changes).await {
                Ok(true) => return Ok(Some(changes)),
                Ok(false) | Err(ServiceError::Store(store::StoreError::Contention { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Compares each sent alert with its stored content: the new contents
    /// of those that changed, with the content they replace, their rollup
    /// changes and audit events, and for every alert whether it changed.
    async fn content_changes(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        updates: &[(AlertId, Prepared)],
    ) -> Result<ContentChanges> {
        let mut changes = ContentChanges::default();
        for (id, p) in updates {
            let Some(before) = self.store.alert(scope, id.as_str()).await? else {
                changes.outcomes.push(false);
                continue;
            };
            let old: NormalizedAlert = decode_stored(&before)?;
            // Ingestion kept only the fields the rules read; the evidence
            // comparison needs them all.
            let new = mapping::alert::decode_alert_str(&p.raw).map_err(|e| {
                ServiceError::Internal(format!("alert {} decoded once but not twice: {e}", p.line))
            })?;
            let reasons = mapping::staleness::alert_changes(&old, &new);
            if reasons.is_empty() {
                changes.outcomes.push(false);
                continue;
            }
            let mut record = alert_record(scope, p, store::now());
            // The new content keeps the stored mapping's identity:
            // recompute numbers the next canonical version after the
            // stored one, and a locked alert stays locked.
            record.id = id.clone();
            record.canonical_version = before.canonical_version;
            record.mapping_state = before.mapping_state.clone();
            record.locked = before.locked;
            record.received_at = before.received_at;
            record.stale = true;
            record.stale_reason = Some(serde_json::to_string(&reasons).unwrap_or_default());

            let details =
                json!({"source_uid": p.alert.source_uid, "line": p.line, "changes": reasons});
            let current = self
                .store
                .canonical(scope, id, before.canonical_version)
                .await?;
            changes.rollup.extend(crate::matrix::content_deltas(
                &before,
                &record,
                current.as_ref(),
            ));
            changes.events.push(self.org_event(
                actor,
                scope,
                "alert_update",
                ("alert", id.as_str()),
                details,
            ));
            changes.records.push((record, before.content_sha256));
            changes.outcomes.push(true);
        }
        // In key order, as new alerts are inserted: two ingestions updating
        // the same alerts then lock them in the same order, and one waits
        // for the other instead of both waiting for each other.
        changes
            .records
            .sort_by(|a, b| a.0.id.as_str().cmp(b.0.id.as_str()));
        Ok(changes)
    }

    /// The new contents of updated alerts, their rollup changes and audit
    /// events, in one transaction; false, with nothing stored, when one of
    /// the alerts no longer holds the content or the current mapping its
    /// change was computed from.
    async fn store_contents(&self, scope: &OrgScope, changes: &ContentChanges) -> Result<bool> {
        let mut tx = self.store.begin_in(scope).await?;
        for (record, based_on) in &changes.records {
            if !tx.update_alert_content(scope, record, based_on).await? {
                return Ok(false);
            }
        }
        store::rollups::apply_delta(&mut tx, scope, changes.rollup.clone()).await?;
        for event in &changes.events {
            tx.append_audit(event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The org scope for `org` (name or id), refusing another org's actor.
    pub(crate) async fn scope(&self, actor: &Actor, org: &str) -> Result<OrgScope> {
        let org = self.org_by_name(actor, org).await?;
        Ok(OrgScope::new(org.id))
    }

    /// The active Enterprise dataset and the org's compiled rules under it.
    pub(crate) async fn engine(&self, scope: &OrgScope) -> Result<Engine> {
        let dataset = self
            .store
            .active_dataset(Domain::Enterprise)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "active dataset of domain",
                id: Domain::Enterprise.to_string(),
            })?;
        let release = self.release_of(&dataset).await?;
        let revision = self.store.rule_revision(scope).await?;
        let cached = {
            let map = self
                .mapping_cache
                .by_org
                .read()
                .unwrap_or_else(|e| e.into_inner());
            map.get(scope.org()).cloned()
        };
        let rules = match cached {
            Some(c) if c.revision == revision && c.dataset_id == dataset.id => c,
            _ => {
                let compiled = Arc::new(
                    self.compile_rules(scope, &dataset, &release, revision)
                        .await?,
                );
                let mut map = self
                    .mapping_cache
                    .by_org
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                map.insert(scope.org().clone(), compiled.clone());
                compiled
            }
        };
        Ok(Engine {
            dataset,
            release,
            rules,
            policy: self.config.mapping.policy,
            ai: None,
        })
    }

    /// Parses the org's active rules against the release. A stored rule
    /// the release refuses (its technique revoked since) is left out and
    /// logged: the compatibility check at activation lists it.
    async fn compile_rules(
        &self,
        scope: &OrgScope,
        dataset: &Dataset,
        release: &Arc<Release>,
        revision: i64,
    ) -> Result<CompiledRules> {
        let stored = self.store.rules(scope, Some("active")).await?;
        let release = release.clone();
        let org = scope.org().clone();
        let rules = tokio::task::spawn_blocking(move || {
            let mut parsed = Vec::with_capacity(stored.len());
            let mut refused = Vec::new();
            for r in &stored {
                let value: Value = match serde_json::from_str(&r.definition) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(org = %org, rule = %r.id, error = %e, "stored rule is not JSON");
                        continue;
                    }
                };
                match mapping::rules::parse_rule_value(&value, &release) {
                    Ok(rule) => parsed.push(rule),
                    Err(e) => {
                        tracing::debug!(org = %org, rule = %r.id, error = %e, "stored rule refused by the active release");
                        refused.push(r.id.as_str());
                    }
                }
            }
            // One line, not one per rule: after activating an older
            // release a pack's rules can be refused by the hundred, and
            // the CLI's stderr is where its own reports go.
            if !refused.is_empty() {
                let first: Vec<&str> = refused.iter().take(5).copied().collect();
                tracing::warn!(org = %org, refused = refused.len(), first = ?first, "stored rules refused by the active release are left out (the activation's compatibility report and `dataset migrations` list them; NEXUS_ATTACK_LOG=service=debug names each)");
            }
            RuleSet::new(parsed)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("compiling rules stopped: {e}")))?;
        Ok(CompiledRules {
            dataset_id: dataset.id.clone(),
            revision,
            rules: Arc::new(rules),
        })
    }

    /// An audit event of the scope's org.
    pub(crate) fn org_event(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        action: &str,
        target: (&str, &str),
        details: Value,
    ) -> store::NewAuditEvent {
        store::NewAuditEvent {
            org_id: Some(scope.org().clone()),
            ..audit_event(actor, action, target, Outcome::Ok, details)
        }
    }

    /// Re-maps `alerts` with the engine's rules, their stored AI and manual
    /// candidates and their overrides; stores a new canonical version for
    /// each alert whose canonical set changed and clears every stale mark.
    /// Opens the review items the new sets call for, except those of
    /// `corrected_reasons` (a reviewer's correction caused this re-map and
    /// settled them), and closes open items whose reason is gone.
    /// Returns the alerts whose canonical set changed.
    pub(crate) async fn recompute(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        engine: &Engine,
        alerts: &[AlertRecord],
        cause: &str,
        corrected_reasons: &[String],
    ) -> Result<Vec<AlertId>> {
        let now = store::now();
        let context = engine_context(engine);
        let mapper = engine.mapper();
        let mut candidates = Vec::new();
        let mut sets = Vec::new();
        let mut updates = Vec::new();
        let mut reviews = Vec::new();
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        let mut rollup = Vec::new();
        for alert in alerts {
            let normalized = decode_stored(alert)?;
            let subject = Subject::alert(alert.id.as_str());
            let kept = self.kept_candidates(scope, &alert.id).await?;
            let overrides = self.mapping_overrides(scope, &alert.id).await?;
            let mut mapping = mapper.candidates(&subject, &normalized);
            mapping.candidates.extend(kept);
            let set = mapping::canonical(&subject, &mapping.candidates, &overrides, &engine.policy);

            let current = self
                .store
                .canonical(scope, &alert.id, alert.canonical_version)
                .await?;
            let same = current.as_ref().is_some_and(|c| {
                same_set(c, &set) && c.set.dataset_id.as_deref() == Some(engine.dataset.id.as_str())
            });
            if same {
                unchanged.push(alert.id.clone());
                continue;
            }
            let version = alert.canonical_version + 1;
            candidates.extend(
                mapping
                    .candidates
                    .iter()
                    .filter(|c| c.source == Source::Rule)
                    .map(|c| candidate_record(scope, &alert.id, c, now)),
            );
            let mut items = review_items(scope, &alert.id, &set, now);
            let mut reasons: Vec<String> = items.iter().map(|r| r.reason.clone()).collect();
            items.retain(|r| !corrected_reasons.contains(&r.reason));
            // The lock, not the set, keeps a conflict item open.
            if alert.locked {
                reasons.push("conflict".into());
            }
            gone.push(store::ReviewReasons {
                alert_id: alert.id.clone(),
                reasons,
                resolution: json!({
                    "resolved_by_remap": {
                        "cause": cause,
                        "by": actor.name,
                        "canonical_version": version,
                    }
                })
                .to_string(),
            });
            reviews.extend(items);
            sets.push(canonical_record(
                scope, &alert.id, version, &set, cause, &context, now,
            ));
            rollup.extend(crate::matrix::change_deltas(
                alert,
                current.as_ref(),
                sets.last(),
            ));
            updates.push(MappingUpdate {
                alert_id: alert.id.clone(),
                based_on: alert.canonical_version,
                canonical_version: version,
                mapping_state: if set.is_unmapped() {
                    "unmapped"
                } else {
                    "mapped"
                }
                .into(),
                // The rollup change above counts in this content's cells.
                content_sha256: Some(alert.content_sha256.clone()),
            });
            changed.push(alert.id.clone());
        }
        // Unchanged alerts keep their version; only their stale mark goes.
        let cleared: Vec<MappingUpdate> = alerts
            .iter()
            .filter(|a| a.stale && unchanged.contains(&a.id))
            .map(|a| MappingUpdate {
                alert_id: a.id.clone(),
                based_on: a.canonical_version,
                canonical_version: a.canonical_version,
                mapping_state: a.mapping_state.clone(),
                content_sha256: Some(a.content_sha256.clone()),
            })
            .collect();
        if changed.is_empty() && cleared.is_empty() {
            return Ok(changed);
        }

        let details = json!({
            "cause": cause,
            "alerts": alerts.len(),
            "changed": changed,
            "dataset": engine.dataset.id,
        });
        let mut tx = self.store.begin_in(scope).await?;
        if !tx.hold_active(&engine.dataset.id).await? {
            return Err(retired(engine));
        }
        tx.insert_candidates(candidates).await?;
        tx.insert_canonical(sets).await?;
        store::rollups::apply_delta(&mut tx, scope, rollup).await?;
        tx.set_current_mapping(scope, &updates).await?;
        tx.set_current_mapping(scope, &cleared).await?;
        for a in alerts.iter().filter(|a| a.stale) {
            tx.close_reviews_of(scope, &a.id, "stale", "accepted", "system:recompute", None)
                .await?;
        }
        // Items whose reason the new set no longer gives close before the
        // new set's items open; one that still applies stays as it is.
        tx.close_reviews_gone(scope, REDERIVED_REASONS, &gone, REMAP_ACTOR, &now)
            .await?;
        tx.open_reviews(reviews).await?;
        tx.append_audit(&self.org_event(
            actor,
            scope,
            "mapping_recompute",
            ("alerts", cause),
            details,
        ))
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Recomputes every alert of the org, a page at a time; returns
    /// `(alerts seen, alerts whose canonical set changed)`.
    pub(crate) async fn recompute_org(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        engine: &Engine,
        cause: &str,
        mut affected: impl FnMut(&AlertRecord) -> bool,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<(usize, usize)> {
        const PAGE: i64 = 500;
        let (mut seen, mut changed) = (0, 0);
        let mut after: Option<AlertId> = None;
        loop {
            self.still_active(engine).await?;
            let page = self.store.alerts_page(scope, after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            seen += page.len();
            let chosen: Vec<AlertRecord> = page.into_iter().filter(|a| affected(a)).collect();
            changed += self
                .recompute_settled(actor, scope, engine, chosen, cause)
                .await?
                .len();
            progress(seen, changed);
        }
        Ok((seen, changed))
    }

    /// Refuses to go on mapping with `engine` once another release has
    /// become active: a long re-map that started before an activation
    /// would otherwise write the retired release's mappings over the ones
    /// the activation's own re-map made. That re-map covers every alert,
    /// so stopping leaves nothing behind.
    async fn still_active(&self, engine: &Engine) -> Result<()> {
        let active = self.store.active_dataset(Domain::Enterprise).await?;
        match active {
            Some(dataset) if dataset.id == engine.dataset.id => Ok(()),
            _ => Err(retired(engine)),
        }
    }

    /// Re-maps, under the release now active, alerts an ingestion stored
    /// after an activation retired the one it mapped with. They were stored
    /// marked stale; a failure here leaves them so, for `alerts remap`.
    async fn remap_after_retirement(&self, actor: &Actor, scope: &OrgScope, ids: Vec<AlertId>) {
        let outcome = async {
            let engine = self.engine(scope).await?;
            let mut alerts = Vec::with_capacity(ids.len());
            for id in &ids {
                alerts.extend(self.store.alert(scope, id.as_str()).await?);
            }
            self.recompute_settled(actor, scope, &engine, alerts, "release_activated")
                .await
        }
        .await;
        match outcome {
            Ok(_) => {
                tracing::info!(org = %scope.org(), alerts = ids.len(), "alerts stored after an activation re-mapped under the active release")
            }
            Err(e) => {
                tracing::warn!(org = %scope.org(), alerts = ids.len(), error = %e, "alerts stored after an activation stay stale until `alerts remap`")
            }
        }
    }

    /// Marks every alert of the org stale for `reason`; answers how many.
    /// One statement over the org's alerts meets every ingestion updating
    /// them, and PostgreSQL may break the deadlock by rolling it back: it is
    /// tried again, as a marking that silently failed would leave the org
    /// reading as current.
    pub(crate) async fn mark_org_stale(&self, scope: &OrgScope, reason: &str) -> Result<u64> {
        let mut attempt = 1;
        loop {
            let marked = async {
                let mut tx = self.store.begin_in(scope).await?;
                let marked = tx.mark_org_alerts_stale(scope, reason).await?;
                tx.commit().await?;
                Ok::<_, store::StoreError>(marked)
            }
            .await;
            match marked {
                Err(store::StoreError::Contention { .. }) if attempt < CONTENTION_ATTEMPTS => {
                    attempt += 1;
                }
                outcome => return Ok(outcome?),
            }
        }
    }

    /// [`App::recompute`], for alerts read before it runs. Their mapping
    /// may have moved on meanwhile (an override, an update or another
    /// re-map committed in between): the store then refuses the write as a
    /// conflict rather than put an older version back, and the alerts are
    /// recomputed one at a time as they are now, a few times at most each.
    pub(crate) async fn recompute_settled(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        engine: &Engine,
        alerts: Vec<AlertRecord>,
        cause: &str,
    ) -> Result<Vec<AlertId>> {
        const ATTEMPTS: usize = 8;
        match self
            .recompute(actor, scope, engine, &alerts, cause, &[])
            .await
        {
            Err(ServiceError::Store(
                store::StoreError::Conflict { .. } | store::StoreError::Contention { .. },
            )) => {}
            other => return other,
        }
        tracing::debug!(org = %scope.org(), alerts = alerts.len(), cause, "recompute met a concurrent change; one alert at a time");
        let mut changed = Vec::new();
        for alert in alerts {
            let mut attempt = 1;
            loop {
                // The change that moved the alert on may have been the
                // re-map of a newer release: then this engine's result
                // would undo it.
                self.still_active(engine).await?;
                let Some(now) = self.store.alert(scope, alert.id.as_str()).await? else {
                    break;
                };
                match self
                    .recompute(actor, scope, engine, std::slice::from_ref(&now), cause, &[])
                    .await
                {
                    Err(ServiceError::Store(
                        store::StoreError::Conflict { .. } | store::StoreError::Contention { .. },
                    )) if attempt < ATTEMPTS => {
                        attempt += 1;
                    }
                    outcome => {
                        changed.extend(outcome?);
                        break;
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Marks every alert of the org stale (a new release became active) and
    /// recomputes them; the canonical mapping changes only through
    /// precedence. Incidents queued as mapped under another release leave
    /// the review queue once none of their entries is. Tells `progress`
    /// the alerts re-evaluated and changed so far after each page. Returns
    /// `(alerts, changed)`.
    pub async fn remap_org(
        &self,
        actor: &Actor,
        org: &str,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<(usize, usize)> {
        self.authorize(actor, Action::RuleWrite, ("alerts", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        self.remap_scope(actor, &scope, progress).await
    }

    /// [`App::remap_org`] once authorized.
    pub(crate) async fn remap_scope(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<(usize, usize)> {
        let engine = self.engine(scope).await?;
        let reason = json!([{"reason": "release_activated", "release": engine.dataset.release}]);
        self.mark_org_stale(scope, &reason.to_string()).await?;
        let remapped = self
            .recompute_org(
                actor,
                scope,
                &engine,
                "release_activated",
                |_| true,
                progress,
            )
            .await;
        // Incidents queued as mapped under an older release leave the queue
        // once their alerts are re-mapped (see `settle_release_stale`).
        self.settle_release_stale(actor, scope, engine.dataset.domain, &engine.dataset.release)
            .await?;
        remapped
    }

    /// Stored AI and manual candidates of an alert: they survive a re-map,
    /// which only re-runs the rules and the alert's declarations.
    async fn kept_candidates(
        &self,
        scope: &OrgScope,
        alert: &AlertId,
    ) -> Result<Vec<MappingCandidate>> {
        let stored = self.store.candidates(scope, alert).await?;
        Ok(stored
            .into_iter()
            .filter(|c| c.source != "rule")
            .filter_map(|c| candidate_from_record(&c))
            .collect())
    }

    /// An alert's overrides as the precedence logic takes them.
    pub(crate) async fn mapping_overrides(
        &self,
        scope: &OrgScope,
        alert: &AlertId,
    ) -> Result<Vec<Override>> {
        let stored = self.store.overrides_of(scope, alert).await?;
        Ok(stored.iter().filter_map(override_from_record).collect())
    }
}

/// Decodes, maps and batches lines on a blocking thread. Returns the time
/// spent working and the time spent waiting for the writer.
fn produce(
    lines: Lines,
    scope: &OrgScope,
    engine: &Engine,
    batch_size: usize,
    backend: store::Backend,
    sender: &tokio::sync::mpsc::Sender<Batch>,
) -> (std::time::Duration, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut blocked = std::time::Duration::ZERO;
    let mapper = engine.mapper();
    let context = engine_context(engine);
    // The suggester reads any field; the rules only the ones they test.
    let selection = if engine.ai.is_some() {
        FieldSelection::All
    } else {
        engine.rules.rules.field_selection()
    };
    let mut batch = Batch {
        prepared: Vec::with_capacity(batch_size),
        records: Vec::new(),
        errors: Vec::new(),
        first_line: 1,
        last_line: 0,
    };
    let mut handle = |line: usize, item: std::result::Result<(String, Value), DecodeError>| {
        batch.last_line = line;
        let decoded = item.and_then(|(raw, value)| {
            let alert = decode_alert_keeping(&value, &selection)?;
            let platform = value
                .as_object()
                .map(crate::matrix::platform_in)
                .unwrap_or_default();
            Ok((raw, alert, platform))
        });
        match decoded {
            Ok((raw, alert, platform)) => {
                let id = AlertId::generate();
                let subject = Subject::alert(id.as_str());
                let (mut mapping, mut set) = mapper.map(&subject, &alert, &[]);
                // AI only where no rule and no vendor context spoke: it never
                // competes with them (precedence would ignore it anyway), and
                // skipping it keeps rule-mapped ingestion at full speed.
                if let Some(ai) = engine.ai.as_ref().filter(|_| mapping.candidates.is_empty()) {
                    let thresholds = &engine.policy.thresholds;
                    mapping
                        .candidates
                        .extend(crate::ai_candidates(ai, &subject, &alert, thresholds));
                    set = mapping::canonical(&subject, &mapping.candidates, &[], &engine.policy);
                }
                batch.prepared.push(Prepared {
                    line,
                    id,
                    content_sha256: hex::encode(Sha256::digest(raw.as_bytes())),
                    raw,
                    alert,
                    platform,
                    mapping,
                    set,
                });
            }
            Err(e) => batch.errors.push(IngestError {
                line,
                code: e.code().to_string(),
                message: e.to_string(),
            }),
        }
        if batch.prepared.len() + batch.errors.len() >= batch_size {
            let next = Batch {
                prepared: Vec::with_capacity(batch_size),
                records: Vec::new(),
                errors: Vec::new(),
                first_line: line + 1,
                last_line: line,
            };
            let mut full = std::mem::replace(&mut batch, next);
            seal(&mut full, scope, &context, backend);
            // The receiver only goes away when storing failed; that error
            // is what the caller sees, so stop quietly.
            let sending = std::time::Instant::now();
            let sent = sender.blocking_send(full).is_ok();
            blocked += sending.elapsed();
            return sent;
        }
        true
    };

    let mut stopped = false;
    match lines {
        Lines::Reader(mut reader) => {
            let mut buf = Vec::new();
            let mut line = 0;
            loop {
                buf.clear();
                line += 1;
                let item = match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => match std::str::from_utf8(&buf) {
                        Ok(text) if text.trim().is_empty() => continue,
                        Ok(text) => serde_json::from_str::<Value>(text)
                            .map(|v| (text.trim_end().to_string(), v))
                            .map_err(|e| DecodeError::Json(e.to_string())),
                        Err(e) => Err(DecodeError::Json(format!("line is not UTF-8: {e}"))),
                    },
                    Err(e) => {
                        // The stream position is unknown after a read error:
                        // report it on this line and stop.
                        let failed = Err(DecodeError::Json(format!("unreadable input: {e}")));
                        handle(line, failed);
                        break;
                    }
                };
                if !handle(line, item) {
                    stopped = true;
                    break;
                }
            }
        }
        Lines::Values(values) => {
            for (i, value) in values.into_iter().enumerate() {
                if !handle(i + 1, Ok((value.to_string(), value))) {
                    stopped = true;
                    break;
                }
            }
        }
        Lines::Texts(texts) => {
            for (i, text) in texts.into_iter().enumerate() {
                let item = serde_json::from_str::<Value>(&text)
                    .map(|v| (text.trim().to_string(), v))
                    .map_err(|e| DecodeError::Json(e.to_string()));
                if !handle(i + 1, item) {
                    stopped = true;
                    break;
                }
            }
        }
    }
    if !stopped && (!batch.prepared.is_empty() || !batch.errors.is_empty()) {
        seal(&mut batch, scope, &context, backend);
        let sending = std::time::Instant::now();
        let _ = sender.blocking_send(batch);
        blocked += sending.elapsed();
    }
    (started.elapsed().saturating_sub(blocked), blocked)
}

/// Builds the records of every alert of a full batch, with one timestamp
/// for the batch.
fn seal(batch: &mut Batch, scope: &OrgScope, context: &Context, backend: store::Backend) {
    let now = store::now();
    batch.records = batch
        .prepared
        .iter()
        .map(|p| {
            let alert = alert_record(scope, p, now);
            let canonical = canonical_record(scope, &p.id, 1, &p.set, "ingest", context, now);
            let rollup = crate::matrix::ingest_deltas(&alert, &p.platform, &canonical);
            NewRecords {
                alert: store::AlertRow::new(alert, backend),
                mapping: MappingRecords {
                    rows: store::MappingRows::of(
                        p.mapping
                            .candidates
                            .iter()
                            .map(|c| candidate_record(scope, &p.id, c, now))
                            .collect(),
                        canonical,
                    ),
                    reviews: review_items(scope, &p.id, &p.set, now),
                    rollup,
                },
            }
        })
        .collect();
}

/// Decodes a stored alert again from its raw document (decoding is
/// deterministic, and the raw document is the evidence of record).
pub(crate) fn decode_stored(alert: &AlertRecord) -> Result<NormalizedAlert> {
    let corrupt = |e: String| {
        ServiceError::Internal(format!("stored alert {} does not decode: {e}", alert.id))
    };
    let value: Value = serde_json::from_str(&alert.raw).map_err(|e| corrupt(e.to_string()))?;
    decode_alert(&value).map_err(|e| corrupt(e.to_string()))
}

/// The answer of a mapping whose release an activation retired under it.
fn retired(engine: &Engine) -> ServiceError {
    ServiceError::Conflict(format!(
        "release {} stopped being the active one while mapping with it; \
         the re-map that follows the activation takes over",
        engine.dataset.release
    ))
}

/// The normalized attributes stored beside the raw document that have no
/// column of their own: the declared techniques, decoding warnings, vendor
/// and analytic name. The field map is the raw document flattened and the
/// rest has columns; storing them again would double every alert row.
fn normalized_text(alert: &NormalizedAlert) -> String {
    json!({
        "declared": alert.declared,
        "warnings": alert.warnings,
        "vendor": alert.vendor,
        "analytic_name": alert.analytic_name,
        "source_uid_derived": alert.source_uid_derived,
    })
    .to_string()
}

/// The (domain, release, dataset) a mapping is made under.
pub(crate) struct Context {
    domain: String,
    release: String,
    dataset_id: String,
}

pub(crate) fn engine_context(engine: &Engine) -> Context {
    Context {
        domain: engine.dataset.domain.as_str().to_string(),
        release: engine.dataset.release.clone(),
        dataset_id: engine.dataset.id.to_string(),
    }
}

fn alert_record(scope: &OrgScope, p: &Prepared, now: chrono::DateTime<chrono::Utc>) -> AlertRecord {
    let a = &p.alert;
    AlertRecord {
        id: p.id.clone(),
        org_id: scope.org().clone(),
        source_uid: a.source_uid.clone(),
        format: match a.format {
            mapping::AlertFormat::Ocsf => "ocsf",
            mapping::AlertFormat::Ecs => "ecs",
            mapping::AlertFormat::Native => "native",
        }
        .to_string(),
        time: a.time,
        received_at: now,
        title: a.title.clone(),
        description: a.description.clone(),
        severity: a.severity.as_str().to_string(),
        severity_weight: a.severity.weight(),
        connector: a.connector.clone(),
        product: a.product.clone(),
        analytic_uid: a.analytic_uid.clone(),
        host: a.host.clone(),
        user: a.user.clone(),
        content_sha256: p.content_sha256.clone(),
        raw: p.raw.clone(),
        normalized: normalized_text(a),
        mapping_state: if p.set.is_unmapped() {
            "unmapped"
        } else {
            "mapped"
        }
        .to_string(),
        canonical_version: 1,
        stale: false,
        stale_reason: None,
        locked: false,
    }
}

pub(crate) fn candidate_record(
    scope: &OrgScope,
    alert: &AlertId,
    c: &MappingCandidate,
    now: chrono::DateTime<chrono::Utc>,
) -> CandidateRecord {
    CandidateRecord {
        id: c.id.clone(),
        org_id: scope.org().clone(),
        alert_id: alert.clone(),
        technique: c.technique.to_string(),
        tactic: c.tactic.as_ref().map(|t| t.to_string()),
        source: c.source.as_str().to_string(),
        confidence: c.confidence.value(),
        band: c.band.as_str().to_string(),
        evidence: serde_json::to_string(&c.evidence).unwrap_or_else(|_| "[]".into()),
        explanation: c.explanation.clone(),
        rule_id: c.rule_id.clone(),
        rule_version: c.rule_version.map(i64::from),
        model_version: c.model_version.clone(),
        vendor_declared: c.vendor_declared,
        domain: c.domain.as_str().to_string(),
        release: c.release.clone(),
        dataset_id: c.dataset_id.clone(),
        created_at: now,
    }
}

fn candidate_from_record(c: &CandidateRecord) -> Option<MappingCandidate> {
    let thresholds = mapping::BandThresholds::default();
    let confidence = Confidence::new(c.confidence).ok()?;
    Some(MappingCandidate {
        id: c.id.clone(),
        subject: Subject::alert(c.alert_id.as_str()),
        technique: TechniqueId::parse(&c.technique).ok()?,
        tactic: c.tactic.as_deref().and_then(|t| TacticId::parse(t).ok()),
        source: c.source.parse::<Source>().ok()?,
        confidence,
        band: thresholds.band(confidence),
        evidence: serde_json::from_str::<Vec<Evidence>>(&c.evidence).unwrap_or_default(),
        explanation: c.explanation.clone(),
        rule_id: c.rule_id.clone(),
        rule_version: c.rule_version.and_then(|v| u32::try_from(v).ok()),
        model_version: c.model_version.clone(),
        vendor_declared: c.vendor_declared,
        domain: c.domain.parse::<Domain>().ok()?,
        release: c.release.clone(),
        dataset_id: c.dataset_id.clone(),
    })
}

pub(crate) fn override_from_record(o: &OverrideRecord) -> Option<Override> {
    let target = |technique: &str, tactic: Option<&str>| -> Option<Target> {
        Some(Target {
            technique: TechniqueId::parse(technique).ok()?,
            tactic: tactic.and_then(|t| TacticId::parse(t).ok()),
        })
    };
    Some(Override {
        id: o.id.clone(),
        subject: Subject::alert(o.alert_id.as_str()),
        version: u32::try_from(o.version).ok()?,
        action: o.action.parse::<OverrideAction>().ok()?,
        target: target(&o.technique, o.tactic.as_deref())?,
        replaces: match &o.replaces_technique {
            Some(t) => Some(target(t, o.replaces_tactic.as_deref())?),
            None => None,
        },
        reason: o.reason.parse::<ReasonCode>().ok()?,
        notes: o.notes.clone(),
        confidence: Confidence::new(o.confidence).ok()?,
        actor: o.actor.clone(),
        status: match o.status.as_str() {
            "approved" => OverrideStatus::Approved,
            "rejected" => OverrideStatus::Rejected,
            _ => OverrideStatus::Proposed,
        },
        decided_at: o.approved_at,
    })
}

pub(crate) fn canonical_record(
    scope: &OrgScope,
    alert: &AlertId,
    version: i64,
    set: &CanonicalSet,
    cause: &str,
    context: &Context,
    now: chrono::DateTime<chrono::Utc>,
) -> CanonicalRecord {
    let entries = set
        .entries
        .iter()
        .map(|e| CanonicalEntryRecord {
            org_id: scope.org().clone(),
            alert_id: alert.clone(),
            version,
            technique: e.technique.to_string(),
            tactic: e.tactic.as_ref().map(|t| t.to_string()),
            source: e.source.as_str().to_string(),
            confidence: e.confidence.value(),
            band: e.band.as_str().to_string(),
            candidate_ids: json_text(&e.candidates),
            override_ids: json_text(&e.overrides),
            producers: json_text(&e.producers),
            vendor_declared: e.vendor_declared,
            evidence_linked: e.evidence_linked,
            needs_review: e.needs_review,
            domain: context.domain.clone(),
            release: context.release.clone(),
            dataset_id: Some(context.dataset_id.clone()),
            computed_at: now,
        })
        .collect();
    CanonicalRecord {
        set: CanonicalSetRecord {
            org_id: scope.org().clone(),
            alert_id: alert.clone(),
            version,
            decided_by: set.decided_by.map(|s| s.as_str().to_string()),
            flags: json_text(&set.flags),
            pending: json_text(&set.pending_review),
            entries: i64::try_from(set.entries.len()).unwrap_or(i64::MAX),
            cause: cause.to_string(),
            domain: context.domain.clone(),
            release: context.release.clone(),
            dataset_id: Some(context.dataset_id.clone()),
            computed_at: now,
        },
        entries,
    }
}

/// JSON text of plain serializable values (vectors of strings and flags,
/// which cannot fail to serialize).
fn json_text<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// True when a stored canonical version holds the same entries (technique,
/// tactic, source, confidence, lineage) as a freshly derived set.
fn same_set(stored: &CanonicalRecord, set: &CanonicalSet) -> bool {
    if stored.entries.len() != set.entries.len()
        || stored.set.decided_by.as_deref() != set.decided_by.map(|s| s.as_str())
    {
        return false;
    }
    stored.entries.iter().zip(&set.entries).all(|(s, e)| {
        s.technique == e.technique.as_str()
            && s.tactic.as_deref() == e.tactic.as_ref().map(|t| t.as_str())
            && s.source == e.source.as_str()
            && (s.confidence - e.confidence.value()).abs() < 1e-9
            && s.candidate_ids == json_text(&e.candidates)
            && s.override_ids == json_text(&e.overrides)
    })
}

/// The review reasons a recomputation decides again: those of the set's
/// flags and of its pending AI candidates, and `conflict`, which holds while
/// the alert is locked. `stale` is left out: the stale mark closes its items
/// (as `accepted`) when it is cleared.
pub(crate) const REDERIVED_REASONS: &[&str] = &[
    "low_confidence",
    "ai_only",
    "over_mapping",
    "no_evidence",
    "conflict",
];

/// Who closes a review item whose reason a recomputation removed: the
/// product, so the KPIs of people's validations leave it out.
pub(crate) const REMAP_ACTOR: &str = "system:remap";

/// Review items for a freshly derived set: one per reason.
pub(crate) fn review_items(
    scope: &OrgScope,
    alert: &AlertId,
    set: &CanonicalSet,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<ReviewRecord> {
    let mut by_reason: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut add = |reason: &'static str, detail: Value| match by_reason
        .iter_mut()
        .find(|(r, _)| *r == reason)
    {
        Some((_, details)) => details.push(detail),
        None => by_reason.push((reason, vec![detail])),
    };
    for flag in &set.flags {
        let reason = match flag {
            ReviewFlag::OverMapping { .. } => "over_mapping",
            ReviewFlag::NoEvidence { .. } => "no_evidence",
            ReviewFlag::AiOnly { .. } => "ai_only",
            ReviewFlag::LowConfidence { .. } => "low_confidence",
        };
        add(reason, serde_json::to_value(flag).unwrap_or(Value::Null));
    }
    if !set.pending_review.is_empty() {
        add("ai_only", json!({"pending_candidates": set.pending_review}));
    }
    by_reason
        .into_iter()
        .map(|(reason, details)| ReviewRecord {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: scope.org().clone(),
            alert_id: Some(alert.clone()),
            incident_id: None,
            reason: reason.to_string(),
            detail: Value::Array(details).to_string(),
            state: "open".into(),
            opened_at: now,
            resolved_at: None,
            resolved_by: None,
            resolution: None,
            interactions: 0,
        })
        .collect()
}
