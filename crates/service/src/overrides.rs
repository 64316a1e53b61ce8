//! Manual overrides (a lead applies at once, an analyst proposes and a lead
//! approves), arbitration locks after repeated flip-flops, the review queue
//! and lead notifications.
//!
//! The review queue holds two kinds of item. An alert's item asks whether
//! its mapping is right (flags of precedence, arbitration locks); accepting
//! or rejecting resolves it, and correcting it is an override of the alert.
//! An incident's item (reason `stale`) asks whether a profile that a
//! staleness trigger made stale still holds (see `crate::incidents`):
//! accepting it says it does and clears the incident's stale mark;
//! rejecting it leaves the mark for the lead; correcting it is a lead
//! adjustment of the incident, which clears the mark. Every resolution
//! records its time to validate.

use mapping::overrides::{OverrideMeta, OverrideRequest, flip_flops};
use mapping::{OverrideStatus, Subject};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{AlertRecord, NotificationRecord, OrgScope, OverrideRecord};

use crate::alert_view::{OverrideView, decision_of, override_view};
use crate::alerts::{Engine, override_from_record};
use crate::{Action, Actor, App, Outcome, Result, ServiceError, access};

/// An override as asked for. Unknown fields are refused: a misspelt
/// `note` would otherwise drop the analyst's notes without a word.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideInput {
    /// `add`, `remove` or `replace`.
    pub action: String,
    /// The technique added (add, replace) or removed (remove).
    pub technique: String,
    /// Its tactic.
    pub tactic: Option<String>,
    /// For `replace`: the technique replaced.
    pub replaces: Option<String>,
    /// For `replace`: its tactic.
    pub replaces_tactic: Option<String>,
    /// Reason code (required): `wrong_technique`, `missing_technique`,
    /// `wrong_subtechnique`, `false_positive`, `taxonomy_update`, `other`.
    pub reason: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Confidence of the manual mapping (default 1.0).
    pub confidence: Option<f64>,
}

/// What an override did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideOutcome {
    /// The row written.
    pub r#override: OverrideView,
    /// True when it changed the canonical mapping now (approved).
    pub applied: bool,
    /// Canonical version before.
    pub before_version: i64,
    /// Canonical version after.
    pub after_version: i64,
    /// True when the alert is now locked for arbitration.
    pub locked: bool,
}

/// One review queue item: an alert's mapping, or an incident's profile
/// that a staleness trigger made stale (`subject` tells which).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Id.
    pub id: String,
    /// The alert, for an alert's item (null for an incident's).
    pub alert_id: Option<String>,
    /// Why queued.
    pub reason: String,
    /// Details (flags).
    pub detail: serde_json::Value,
    /// `open`, `accepted`, `rejected`, `corrected` or `resolved_by_remap`.
    pub state: String,
    /// Queued at.
    pub opened_at: String,
    /// Resolved at.
    pub resolved_at: Option<String>,
    /// By.
    pub resolved_by: Option<String>,
    /// Resolution notes (or the correcting override).
    pub resolution: Option<serde_json::Value>,
    /// Actions taken on it.
    pub interactions: i64,
    /// Time to validate in milliseconds, once a person resolved it; null
    /// while open and when the product closed it itself (a `system:`
    /// resolver, such as `resolved_by_remap`): no one validated anything,
    /// as the `mean_time_to_validate` KPI counts it.
    pub time_to_validate_ms: Option<i64>,
    /// For an open alert's item an analyst corrected: the proposed
    /// override that awaits a lead. The item stays open (and unvalidated)
    /// until the lead approves it (the item becomes `corrected`) or rejects
    /// it (the item stays open, this goes back to null).
    pub awaiting_approval: Option<String>,
    /// What is reviewed: `alert` or `incident`.
    pub subject: String,
    /// The incident, for an incident's item (null for an alert's).
    pub incident_id: Option<String>,
    /// For an incident's item, why its profile is stale: the incident's
    /// `stale_reasons` objects (`reopened`, `severity_shift`,
    /// `evidence_update`, `merged`, `split`, `release_activated`) recorded
    /// while the item was open. Null for an alert's item.
    pub stale_reasons: Option<Vec<serde_json::Value>>,
}

/// What correcting a review item changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewCorrection {
    /// An alert's item: the override of the alert's mapping.
    Override(Box<OverrideOutcome>),
    /// An incident's item: the incident after the lead adjustment.
    Adjustment(Box<crate::IncidentProfileView>),
}

/// The states of a review item. `resolved_by_remap`: the product closed it,
/// as a recomputation of the alert's canonical set (a rule change, an alert
/// update, a dataset activation, an override, an arbitration) removed its
/// reason; its resolution names the cause and who caused it.
pub const REVIEW_STATES: &[&str] = &[
    "open",
    "accepted",
    "rejected",
    "corrected",
    "resolved_by_remap",
];

/// What a review list may be filtered on: one of [`REVIEW_STATES`], or
/// `all` for every state, the word `review list --state all` takes, so that
/// the CLI and the API accept the same values with the same meaning.
pub const REVIEW_STATE_FILTERS: &[&str] = &[
    "open",
    "accepted",
    "rejected",
    "corrected",
    "resolved_by_remap",
    "all",
];

/// A review decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The mapping is right.
    Accept,
    /// The mapping is wrong; no correction given.
    Reject,
}

/// A lead notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// The alert.
    pub alert_id: Option<String>,
    /// Text.
    pub message: String,
    /// When.
    pub created_at: String,
}

fn ts(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A refusal of a change to a review item that is not open (any more):
/// its details name the item, its subject, its state, and who resolved it
/// and when.
pub(crate) fn review_conflict(message: String, item: &store::ReviewRecord) -> ServiceError {
    ServiceError::StateConflict {
        message,
        details: json!({
            "review": item.id,
            "alert": item.alert_id,
            "incident": item.incident_id,
            "state": item.state,
            "resolved_by": item.resolved_by,
            "resolved_at": item.resolved_at.as_ref().map(ts),
        }),
    }
}

/// The notes of a stored resolution (`{"notes": ...}`), if any.
fn notes_of(resolution: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(resolution?).ok()?;
    value.get("notes")?.as_str().map(str::to_string)
}

/// The proposal an open item's correction awaits, from the note
/// `{"awaiting_approval": {"override": ID, ...}}` its resolution holds.
fn awaiting_approval(resolution: Option<&str>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(resolution?).ok()?;
    let id = value.get("awaiting_approval")?.get("override")?.as_str()?;
    Some(id.to_string())
}

/// The proposal an open item awaits, if any.
fn pending_proposal(item: &store::ReviewRecord) -> Option<String> {
    (item.state == "open")
        .then(|| awaiting_approval(item.resolution.as_deref()))
        .flatten()
}

/// The refusal of a second correction of an item whose first awaits a
/// lead. Noting the second would hide the first: its approval would then
/// change the mapping without crediting the item. The lead decides the
/// first; then the item takes a correction again (or is settled by the
/// approval).
fn pending_correction(item: &store::ReviewRecord, proposal: &str) -> ServiceError {
    let mut error = review_conflict(
        format!(
            "review item {} already has a correction awaiting a lead: the proposed override \
             {proposal}; the lead approves or rejects it (POST \
             /api/v1/overrides/{proposal}/decide) before the item takes another correction",
            item.id
        ),
        item,
    );
    if let ServiceError::StateConflict { details, .. } = &mut error {
        details["awaiting_approval"] = json!(proposal);
    }
    error
}

fn review_item(r: &store::ReviewRecord) -> ReviewItem {
    let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
    ReviewItem {
        id: r.id.clone(),
        alert_id: r.alert_id.as_ref().map(|a| a.to_string()),
        reason: r.reason.clone(),
        stale_reasons: r.incident_id.as_ref().map(|_| match &detail {
            serde_json::Value::Array(reasons) => reasons.clone(),
            _ => Vec::new(),
        }),
        detail,
        state: r.state.clone(),
        opened_at: ts(&r.opened_at),
        resolved_at: r.resolved_at.as_ref().map(ts),
        resolved_by: r.resolved_by.clone(),
        resolution: r
            .resolution
            .as_deref()
            .map(|t| serde_json::from_str(t).unwrap_or(json!(t))),
        interactions: r.interactions,
        time_to_validate_ms: r
            .resolved_at
            .filter(|_| {
                !r.resolved_by
                    .as_deref()
                    .is_some_and(crate::kpis::is_system_actor)
            })
            .map(|at| (at - r.opened_at).num_milliseconds()),
        awaiting_approval: match r.state.as_str() {
            "open" => awaiting_approval(r.resolution.as_deref()),
            _ => None,
        },
        subject: match r.incident_id {
            Some(_) => "incident".into(),
            None => "alert".into(),
        },
        incident_id: r.incident_id.as_ref().map(|i| i.to_string()),
    }
}

impl App {
    /// Overrides an alert's mapping. The reason code is required. When the
    /// actor may approve overrides (a lead) it applies at once; otherwise it
    /// is a proposal that a lead approves. An alert locked for arbitration
    /// takes only a lead's override, which settles the arbitration.
    pub async fn create_override(
        &self,
        actor: &Actor,
        org: &str,
        alert: &str,
        input: OverrideInput,
    ) -> Result<OverrideOutcome> {
        self.override_alert(actor, org, alert, input, None).await
    }

    /// [`App::create_override`], correcting the open review item `review`
    /// of the alert when given (see [`App::write_override`]).
    async fn override_alert(
        &self,
        actor: &Actor,
        org: &str,
        alert: &str,
        input: OverrideInput,
        review: Option<&store::ReviewRecord>,
    ) -> Result<OverrideOutcome> {
        self.authorize(actor, Action::OverrideCreate, ("alert", alert))
            .await?;
        let scope = self.scope(actor, org).await?;
        let engine = self.engine(&scope).await?;
        let record = self.existing_alert(&scope, alert).await?;
        let applies = access::allows(actor.role, Action::OverrideApprove);
        if record.locked && !applies {
            return Err(ServiceError::StateConflict {
                message: format!(
                    "alert {} is locked for arbitration: a lead decides",
                    record.id
                ),
                details: json!({"alert": record.id, "state": "locked"}),
            });
        }

        let rows = self.store.overrides_of(&scope, &record.id).await?;
        let version = rows.iter().map(|o| o.version).max().unwrap_or(0) + 1;
        let id = uuid::Uuid::now_v7().to_string();
        let now = store::now();
        let request = OverrideRequest {
            action: input.action.clone(),
            technique: input.technique.clone(),
            tactic: input.tactic.clone(),
            replaces_technique: input.replaces.clone(),
            replaces_tactic: input.replaces_tactic.clone(),
            reason: input.reason.clone(),
            notes: input.notes.clone(),
            confidence: input.confidence,
        };
        let meta = OverrideMeta {
            id: id.clone(),
            subject: Subject::alert(record.id.as_str()),
            version: u32::try_from(version).unwrap_or(u32::MAX),
            actor: actor.name.clone(),
            status: if applies {
                OverrideStatus::Approved
            } else {
                OverrideStatus::Proposed
            },
            decided_at: applies.then_some(now),
        };
        let validated = match request.validate(&engine.release, meta) {
            Ok(o) => o,
            Err(e) => {
                let details = json!({"code": "invalid_input", "message": e.to_string()});
                self.audit_outcome(
                    actor,
                    "override_create",
                    ("alert", record.id.as_str()),
                    Outcome::Failed,
                    details,
                )
                .await?;
                let field = if input.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    "reason"
                } else {
                    "override"
                };
                return Err(ServiceError::InvalidInput {
                    field: field.into(),
                    message: e.to_string(),
                });
            }
        };
        let row = OverrideRecord {
            id,
            org_id: scope.org().clone(),
            alert_id: record.id.clone(),
            version,
            action: input.action.trim().to_ascii_lowercase(),
            technique: validated.target.technique.to_string(),
            tactic: validated.target.tactic.as_ref().map(|t| t.to_string()),
            replaces_technique: validated.replaces.as_ref().map(|t| t.technique.to_string()),
            replaces_tactic: validated
                .replaces
                .as_ref()
                .and_then(|t| t.tactic.as_ref().map(|x| x.to_string())),
            reason: input.reason.unwrap_or_default().trim().to_string(),
            notes: validated.notes.clone(),
            confidence: validated.confidence.value(),
            actor: actor.name.clone(),
            status: if applies { "approved" } else { "proposed" }.into(),
            approved_by: applies.then(|| actor.name.clone()),
            approved_at: applies.then_some(now),
            supersedes: None,
            created_at: now,
        };
        self.write_override(actor, &scope, &engine, &record, row, applies, review)
            .await
    }

    /// Approves (`approve = true`) or rejects an analyst's proposal: a new
    /// override row that supersedes it; an approval changes the mapping.
    pub async fn decide_override(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        approve: bool,
    ) -> Result<OverrideOutcome> {
        self.authorize(actor, Action::OverrideApprove, ("override", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let engine = self.engine(&scope).await?;
        let not_found = || ServiceError::NotFound {
            kind: "override",
            id: id.to_string(),
        };
        let proposal = self
            .store
            .override_by_id(&scope, id)
            .await?
            .ok_or_else(not_found)?;
        let rows = self.store.overrides_of(&scope, &proposal.alert_id).await?;
        let decision = decision_of(&rows, &proposal);
        if proposal.status != "proposed" || decision.is_some() {
            // The status is the one the override's view shows: a decided
            // proposal shows its decision's.
            let (message, status) = match decision {
                Some(d) => (
                    format!(
                        "override {id} was already {} by {}; a proposal is decided once",
                        d.status,
                        d.approved_by.as_deref().unwrap_or("a lead")
                    ),
                    d.status.as_str(),
                ),
                None => (
                    format!(
                        "override {id} is not a proposal: it was {} when written, so there is \
                         nothing to decide",
                        proposal.status
                    ),
                    proposal.status.as_str(),
                ),
            };
            return Err(ServiceError::StateConflict {
                message,
                details: json!({
                    "override": id,
                    "status": status,
                    "decision": decision.map(|d| json!({
                        "id": d.id, "status": d.status, "by": d.approved_by,
                    })),
                }),
            });
        }
        if proposal
            .actor
            .trim()
            .eq_ignore_ascii_case(actor.name.trim())
        {
            let details = json!({"role": actor.role.as_str(), "code": "four_eyes"});
            self.audit_outcome(
                actor,
                Action::OverrideApprove.as_str(),
                ("override", id),
                Outcome::Denied,
                details,
            )
            .await?;
            return Err(ServiceError::SelfApproval {
                id: id.to_string(),
                actor: actor.name.clone(),
            });
        }
        let record = self
            .existing_alert(&scope, proposal.alert_id.as_str())
            .await?;
        let now = store::now();
        let row = OverrideRecord {
            id: uuid::Uuid::now_v7().to_string(),
            version: rows.iter().map(|o| o.version).max().unwrap_or(0) + 1,
            status: if approve { "approved" } else { "rejected" }.into(),
            approved_by: Some(actor.name.clone()),
            approved_at: Some(now),
            supersedes: Some(id.to_string()),
            created_at: now,
            ..proposal
        };
        self.write_override(actor, &scope, &engine, &record, row, approve, None)
            .await
    }

    /// Stores an override row with its audit event, recomputes the alert
    /// when the row is approved, and locks the alert for arbitration when
    /// approved overrides flip-flop past the threshold.
    ///
    /// `review` is the open item the override corrects: an applied
    /// override resolves it as `corrected`; a proposal leaves it open,
    /// noted as awaiting approval. A lead's decision on a proposal settles
    /// the items awaiting it: corrected on approval (timed to the
    /// approval), open again on rejection. Both happen in the override's
    /// transaction, before the re-map, which would otherwise close an item
    /// whose reason the correction removed as `resolved_by_remap`.
    #[allow(clippy::too_many_arguments)]
    async fn write_override(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        engine: &Engine,
        alert: &AlertRecord,
        row: OverrideRecord,
        applies: bool,
        review: Option<&store::ReviewRecord>,
    ) -> Result<OverrideOutcome> {
        let before = alert.canonical_version;
        let action = match (row.status.as_str(), row.supersedes.is_some()) {
            ("approved", true) => "override_approve",
            ("rejected", _) => "override_reject",
            ("approved", false) => "override_apply",
            _ => "override_propose",
        };
        let details = json!({
            "alert": alert.id,
            "reason": row.reason,
            "notes": row.notes,
            "action": row.action,
            "technique": row.technique,
            "tactic": row.tactic,
            "replaces": row.replaces_technique,
            "status": row.status,
            "supersedes": row.supersedes,
            "before": {"canonical_version": before},
        });
        let mut tx = self.store.begin_in(scope).await?;
        tx.insert_override(&row).await?;
        tx.append_audit(&self.org_event(actor, scope, action, ("override", &row.id), details))
            .await?;
        // Reasons a reviewer settled with this override: its re-map does not
        // queue them again for the alert, even where the corrected set
        // still shows them (still over-mapped after a sub-technique was
        // put right); the reviewer has just validated that set.
        let mut corrected_reasons = Vec::new();
        if let Some(item) = review {
            if applies {
                corrected_reasons.push(item.reason.clone());
            }
            let settled = if applies {
                let resolution = json!({"override": row.id});
                self.correct_in(&mut tx, actor, scope, item, &actor.name, resolution)
                    .await?
            } else {
                let note =
                    json!({"awaiting_approval": {"override": row.id, "proposed_by": actor.name}});
                tx.note_awaited_proposal(scope, &item.id, &note.to_string())
                    .await?
            };
            if !settled {
                drop(tx);
                let current = self.store.review(scope, &item.id).await?;
                return Err(match current {
                    Some(current) => match pending_proposal(&current) {
                        Some(proposal) => pending_correction(&current, &proposal),
                        None => review_conflict(
                            format!("review item {} was resolved concurrently", item.id),
                            &current,
                        ),
                    },
                    None => ServiceError::Conflict(format!(
                        "review item {} was resolved concurrently",
                        item.id
                    )),
                });
            }
        }
        if let Some(proposal) = row.supersedes.as_deref() {
            let awaiting: Vec<store::ReviewRecord> = tx
                .open_alert_reviews(scope, &alert.id)
                .await?
                .into_iter()
                .filter(|r| awaiting_approval(r.resolution.as_deref()).as_deref() == Some(proposal))
                .collect();
            for item in &awaiting {
                // The analyst who proposed the correction validated the
                // item; the approval is when it took effect.
                if applies {
                    let resolution = json!({
                        "override": proposal, "approved_by": actor.name, "decision": row.id,
                    });
                    if self
                        .correct_in(&mut tx, actor, scope, item, &row.actor, resolution)
                        .await?
                    {
                        corrected_reasons.push(item.reason.clone());
                    }
                } else {
                    let note = json!({"override_rejected": {
                        "override": proposal, "rejected_by": actor.name, "decision": row.id,
                    }});
                    tx.note_open_review(scope, &item.id, &note.to_string())
                        .await?;
                }
            }
        }
        // A lead's override on a locked alert is the arbitration; the
        // lock was the conflict item's reason.
        if applies && alert.locked {
            tx.set_alert_locked(scope, &alert.id, false).await?;
            let resolution = json!({
                "resolved_by_remap": {"cause": "arbitration", "by": actor.name, "override": row.id}
            });
            tx.close_reviews_of(
                scope,
                &alert.id,
                "conflict",
                "resolved_by_remap",
                crate::alerts::REMAP_ACTOR,
                Some(&resolution.to_string()),
            )
            .await?;
        }
        tx.commit().await?;
        if !applies {
            return Ok(OverrideOutcome {
                r#override: override_view(&row),
                applied: false,
                before_version: before,
                after_version: before,
                locked: alert.locked,
            });
        }

        let mut current = alert.clone();
        current.locked = false;
        self.recompute(
            actor,
            scope,
            engine,
            std::slice::from_ref(&current),
            "override",
            &corrected_reasons,
        )
        .await?;
        let after = self.existing_alert(scope, alert.id.as_str()).await?;

        // Flip-flops count over approved overrides; reaching the threshold
        // locks the alert (unless this very override settled a lock).
        let overrides: Vec<mapping::Override> = self
            .store
            .overrides_of(scope, &alert.id)
            .await?
            .iter()
            .filter_map(override_from_record)
            .collect();
        let flips = flip_flops(&Subject::alert(alert.id.as_str()), &overrides);
        let threshold = self.config.mapping.flip_flop_threshold.max(1);
        let locked = !alert.locked && flips >= threshold;
        if locked {
            let now = store::now();
            let message = format!(
                "alert {} ({}) flip-flopped {flips} times between overrides; locked for \
                 arbitration by a lead",
                alert.id, alert.source_uid
            );
            let mut tx = self.store.begin_in(scope).await?;
            tx.set_alert_locked(scope, &alert.id, true).await?;
            tx.insert_notification(&NotificationRecord {
                id: uuid::Uuid::now_v7().to_string(),
                org_id: scope.org().clone(),
                recipient: "lead".into(),
                kind: "arbitration_lock".into(),
                alert_id: Some(alert.id.clone()),
                message: message.clone(),
                created_at: now,
            })
            .await?;
            tx.open_reviews(vec![store::ReviewRecord {
                id: uuid::Uuid::now_v7().to_string(),
                org_id: scope.org().clone(),
                alert_id: Some(alert.id.clone()),
                incident_id: None,
                reason: "conflict".into(),
                detail: json!([{"flip_flops": flips, "threshold": threshold}]).to_string(),
                state: "open".into(),
                opened_at: now,
                resolved_at: None,
                resolved_by: None,
                resolution: None,
                interactions: 0,
            }])
            .await?;
            tx.append_audit(&self.org_event(
                actor,
                scope,
                "alert_lock",
                ("alert", alert.id.as_str()),
                json!({"flip_flops": flips, "threshold": threshold, "message": message}),
            ))
            .await?;
            tx.commit().await?;
        }
        Ok(OverrideOutcome {
            r#override: override_view(&row),
            applied: true,
            before_version: before,
            after_version: after.canonical_version,
            locked,
        })
    }

    /// Resolves the open alert item `item` as `corrected` by `by` inside
    /// `tx`, with its audit event; false when it is no longer open.
    async fn correct_in(
        &self,
        tx: &mut store::Tx,
        actor: &Actor,
        scope: &OrgScope,
        item: &store::ReviewRecord,
        by: &str,
        resolution: serde_json::Value,
    ) -> Result<bool> {
        let now = store::now();
        let resolution = resolution.to_string();
        if !tx
            .resolve_review(scope, &item.id, "corrected", by, &now, Some(&resolution))
            .await?
        {
            return Ok(false);
        }
        let details = json!({
            "alert": item.alert_id,
            "reason": item.reason,
            "before": "open",
            "after": "corrected",
            "corrected_by": by,
            "time_to_validate_ms": (now - item.opened_at).num_milliseconds(),
            "resolution": resolution,
        });
        tx.append_audit(&self.org_event(
            actor,
            scope,
            "review_resolve",
            ("review", &item.id),
            details,
        ))
        .await?;
        Ok(true)
    }

    /// Review items of the org (`state`: `open` by default semantics of the
    /// caller; `None` lists every state), oldest first.
    pub async fn review_list(
        &self,
        actor: &Actor,
        org: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>> {
        self.authorize(actor, Action::ReadMappings, ("review", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        Ok(self
            .store
            .reviews(&scope, state, limit)
            .await?
            .iter()
            .map(review_item)
            .collect())
    }

    /// One page of the org's review items in a state (`None`: every
    /// state), oldest first: what the API lists.
    pub async fn review_page(
        &self,
        actor: &Actor,
        org: &str,
        state: Option<&str>,
        page: &crate::PageRequest,
    ) -> Result<crate::Page<ReviewItem>> {
        self.authorize(actor, Action::ReadMappings, ("review", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let state = match state.map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("all") => None,
            Some(s) if REVIEW_STATES.contains(&s) => Some(s),
            Some(other) => {
                return Err(ServiceError::InvalidInput {
                    field: "state".into(),
                    message: format!(
                        "`{}` is not one of {}",
                        crate::echo(other),
                        REVIEW_STATE_FILTERS.join(", ")
                    ),
                });
            }
        };
        let limit = page.effective_limit();
        let after = page.cursor.as_deref().map(crate::id_cursor).transpose()?;

        // One row more than the page tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut rows = self
            .store
            .reviews_after(&scope, state, after.as_deref(), fetch)
            .await?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(crate::Page {
            items: rows.iter().map(review_item).collect(),
            next_cursor,
        })
    }

    /// Accepts or rejects an open review item; the time to validate is
    /// recorded.
    pub async fn review_decide(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        decision: ReviewDecision,
        notes: Option<&str>,
    ) -> Result<ReviewItem> {
        self.authorize(actor, Action::ReviewWork, ("review", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let state = match decision {
            ReviewDecision::Accept => "accepted",
            ReviewDecision::Reject => "rejected",
        };
        // A correction awaiting a lead settles the item when the lead
        // decides it; accepting or rejecting the item meanwhile would leave
        // the approval nothing to credit.
        if let Some(item) = self.store.review(&scope, id).await?
            && item.state == "open"
            && let Some(proposal) = awaiting_approval(item.resolution.as_deref())
        {
            return Err(review_conflict(
                format!(
                    "review item {id} awaits a lead's decision on the proposed override \
                     {proposal}; the lead approves or rejects it (POST \
                     /api/v1/overrides/{proposal}/decide) before the item can be decided"
                ),
                &item,
            ));
        }
        let resolution = notes.map(|n| json!({"notes": n}).to_string());
        self.resolve(actor, &scope, id, state, resolution).await
    }

    /// The role check a correction of review item `id` makes before its
    /// body is read (a denial is audited): `review_work`, and for an
    /// incident's item the `incident_adjust` its correction is. An item
    /// that is not there is left to [`App::review_correct`] to report.
    pub async fn check_review_correction(&self, actor: &Actor, org: &str, id: &str) -> Result<()> {
        self.authorize(actor, Action::ReviewWork, ("review", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        if let Some(incident) = self
            .store
            .review(&scope, id)
            .await?
            .and_then(|item| item.incident_id)
        {
            self.authorize(
                actor,
                Action::IncidentAdjust,
                ("incident", incident.as_str()),
            )
            .await?;
        }
        Ok(())
    }

    /// Corrects an open review item and resolves it as `corrected`: an
    /// alert's item with an override of the alert's mapping (reason code
    /// required), an incident's item with a lead adjustment of the
    /// incident's profile (role lead or above; the override's notes are
    /// the rationale, the incident's evidence references back it). An
    /// analyst's override of an alert is a proposal: the item stays open,
    /// `awaiting_approval` naming it, until a lead decides (see
    /// [`App::decide_override`]).
    pub async fn review_correct(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
        input: OverrideInput,
    ) -> Result<(ReviewItem, ReviewCorrection)> {
        self.authorize(actor, Action::ReviewWork, ("review", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let item = self.open_review(&scope, id).await?;
        if let Some(proposal) = pending_proposal(&item) {
            return Err(pending_correction(&item, &proposal));
        }
        if let Some(incident) = &item.incident_id {
            let adjustment = crate::AdjustmentInput {
                action: input.action,
                technique: input.technique,
                tactic: input.tactic,
                replaces: input.replaces,
                replaces_tactic: input.replaces_tactic,
                reason: input.reason,
                rationale: input.notes,
                evidence: Vec::new(),
                confidence: input.confidence,
            };
            let view = self
                .adjust_incident_resolving(actor, org, incident.as_str(), adjustment, Some(id))
                .await?;
            let resolved = self
                .store
                .review(&scope, id)
                .await?
                .ok_or_else(|| ServiceError::Internal(format!("review item {id} vanished")))?;
            return Ok((
                review_item(&resolved),
                ReviewCorrection::Adjustment(Box::new(view)),
            ));
        }
        let alert = item.alert_id.as_ref().ok_or_else(|| {
            ServiceError::Internal(format!("review item {id} names neither alert nor incident"))
        })?;
        let outcome = self
            .override_alert(actor, org, alert.as_str(), input, Some(&item))
            .await?;
        let now = self
            .store
            .review(&scope, id)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("review item {id} vanished")))?;
        Ok((
            review_item(&now),
            ReviewCorrection::Override(Box::new(outcome)),
        ))
    }

    /// Notifications for the org's leads, newest first.
    pub async fn notifications(&self, actor: &Actor, org: &str) -> Result<Vec<Notification>> {
        self.authorize(actor, Action::ReadMappings, ("notifications", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        Ok(self
            .store
            .notifications(&scope)
            .await?
            .into_iter()
            .map(|n| Notification {
                id: n.id,
                kind: n.kind,
                alert_id: n.alert_id.map(|a| a.to_string()),
                message: n.message,
                created_at: ts(&n.created_at),
            })
            .collect())
    }

    async fn open_review(&self, scope: &OrgScope, id: &str) -> Result<store::ReviewRecord> {
        let item = self
            .store
            .review(scope, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "review item",
                id: id.to_string(),
            })?;
        if item.state != "open" {
            return Err(review_conflict(
                format!("review item {id} is already {}", item.state),
                &item,
            ));
        }
        Ok(item)
    }

    async fn resolve(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        id: &str,
        state: &str,
        resolution: Option<String>,
    ) -> Result<ReviewItem> {
        let item = self.open_review(scope, id).await?;
        let now = store::now();
        // Accepting an incident's item says its profile still holds: the
        // review the stale mark waited for. Rejecting leaves it for the lead.
        let clears_stale = state == "accepted" && item.incident_id.is_some();
        let mut details = json!({
            "alert": item.alert_id,
            "reason": item.reason,
            "before": "open",
            "after": state,
            "time_to_validate_ms": (now - item.opened_at).num_milliseconds(),
            "resolution": resolution,
        });
        if let Some(incident) = &item.incident_id {
            details["incident"] = json!(incident);
            details["cleared_stale"] = json!(clears_stale);
        }
        let mut tx = self.store.begin_in(scope).await?;
        if !tx
            .resolve_review(scope, id, state, &actor.name, &now, resolution.as_deref())
            .await?
        {
            drop(tx);
            let message = format!("review item {id} was resolved concurrently");
            return Err(match self.store.review(scope, id).await? {
                Some(current) => review_conflict(message, &current),
                None => ServiceError::Conflict(message),
            });
        }
        if let (true, Some(incident)) = (clears_stale, &item.incident_id) {
            crate::incidents::clear_stale_mark(&mut tx, scope, incident, now).await?;
        }
        // Rejecting an incident's item says its stale profile needs the
        // lead: the leads hear of it, as they hear of an alert locked for
        // arbitration, instead of finding it in the queue's history.
        if let (true, Some(incident)) = (state == "rejected", &item.incident_id) {
            let notified = crate::incidents::notify_rejected_review(
                &mut tx,
                scope,
                incident,
                &item,
                &actor.name,
                notes_of(resolution.as_deref()),
                now,
            )
            .await?;
            details["notification"] = json!(notified);
        }
        tx.append_audit(&self.org_event(actor, scope, "review_resolve", ("review", id), details))
            .await?;
        tx.commit().await?;
        let resolved = self
            .store
            .review(scope, id)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("review item {id} vanished")))?;
        Ok(review_item(&resolved))
    }

    /// An alert of the scope by id or source uid, or `not_found`.
    pub(crate) async fn existing_alert(&self, scope: &OrgScope, id: &str) -> Result<AlertRecord> {
        self.store
            .alert(scope, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "alert",
                id: id.to_string(),
            })
    }
}
