//! Mapping rules: create and update (versioned), list, simulate, roll back,
//! and Sigma pack import. Every change re-evaluates the alerts it affects.

use std::path::Path;

use mapping::engine::{SimulatedChange, simulate};
use mapping::rules::Rule;
use mapping::sigma::{ImportReport, SigmaOptions, TagCounts, TagProblem};
use mapping::{Mapper, RuleSet, Subject};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{AlertId, OrgScope, PackImportRecord, RuleRecord};

use crate::alerts::{Engine, decode_stored, override_from_record};
use crate::{Action, Actor, App, Outcome, Result, ServiceError};

/// One stored rule version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// Rule id.
    pub id: String,
    /// Version.
    pub version: i64,
    /// `draft`, `active` or `retired`.
    pub status: String,
    /// Title.
    pub title: String,
    /// Author.
    pub author: String,
    /// Rationale.
    pub rationale: String,
    /// Evidence pattern.
    pub evidence_pattern: Option<String>,
    /// Effective date.
    pub effective_date: Option<String>,
    /// Techniques (and tactics) it maps to.
    pub techniques: Vec<(String, Option<String>)>,
    /// The rule pack import that brought it.
    pub pack_id: Option<String>,
    /// Who stored it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// The rule definition.
    pub definition: Value,
}

/// What a rule change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleChange {
    /// The version now active.
    pub rule: RuleView,
    /// The version it replaced, if any.
    pub previous_version: Option<i64>,
    /// Alerts re-evaluated.
    pub reevaluated: usize,
    /// Alerts whose canonical mapping changed.
    pub changed: usize,
}

/// One alert whose canonical mapping a proposed rule would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimulatedAlert {
    /// The product's alert id.
    pub alert_id: String,
    /// The source uid.
    pub source_uid: String,
    /// (technique, tactic) pairs now.
    pub before: Vec<(String, Option<String>)>,
    /// (technique, tactic) pairs under the proposed rule.
    pub after: Vec<(String, Option<String>)>,
}

/// What `rules simulate` found; nothing is changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    /// The rule simulated.
    pub rule_id: String,
    /// Its version.
    pub version: u32,
    /// Alerts scanned.
    pub alerts_scanned: usize,
    /// Alerts whose canonical mapping would change.
    pub changes: Vec<SimulatedAlert>,
}

/// The Sigma import answer, as the CLI contract prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigmaImportSummary {
    /// Rules imported.
    pub rules: usize,
    /// Rules that became mapping rules.
    pub mapped_rules: usize,
    /// Tags by status.
    pub tags: TagCounts,
    /// Every invalid tag.
    pub problems: Vec<TagProblem>,
}

/// What a Sigma import did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigmaImportOutcome {
    /// The stored import id.
    pub import_id: String,
    /// The full report (stored).
    pub report: ImportReport,
    /// Mapping rules stored as new versions.
    pub new_versions: usize,
    /// Mapping rules already stored at the same version.
    pub unchanged: usize,
    /// Alerts re-evaluated.
    pub reevaluated: usize,
    /// Alerts whose canonical mapping changed.
    pub changed: usize,
}

impl SigmaImportOutcome {
    /// The CLI contract's shape.
    pub fn summary(&self) -> SigmaImportSummary {
        SigmaImportSummary {
            rules: self.report.rules,
            mapped_rules: self.report.mapped_rules,
            tags: self.report.tags,
            problems: self.report.problems.clone(),
        }
    }
}

fn rule_view(r: &RuleRecord) -> RuleView {
    let definition: Value = serde_json::from_str(&r.definition).unwrap_or(Value::Null);
    // Listing reads rule rows alone; the techniques are in the stored
    // definition, which is what the rule maps to.
    let techniques = if r.techniques.is_empty() {
        definition_techniques(&definition)
    } else {
        r.techniques.clone()
    };
    RuleView {
        id: r.id.clone(),
        version: r.version,
        status: r.status.clone(),
        title: r.title.clone(),
        author: r.author.clone(),
        rationale: r.rationale.clone(),
        evidence_pattern: r.evidence_pattern.clone(),
        effective_date: r.effective_date.clone(),
        techniques,
        pack_id: r.pack_id.clone(),
        created_by: r.created_by.clone(),
        created_at: r
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        definition,
    }
}

/// The `(technique, tactic)` pairs of a rule's JSON definition.
fn definition_techniques(definition: &Value) -> Vec<(String, Option<String>)> {
    definition["techniques"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|t| {
                    let id = t["id"].as_str()?.to_string();
                    Some((id, t["tactic"].as_str().map(str::to_string)))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rule_record(scope: &OrgScope, rule: &Rule, actor: &Actor, pack_id: Option<&str>) -> RuleRecord {
    RuleRecord {
        org_id: scope.org().clone(),
        id: rule.id.clone(),
        version: i64::from(rule.version),
        status: "active".into(),
        title: rule.title.clone(),
        definition: rule.to_value().to_string(),
        author: rule.author.clone(),
        rationale: rule.rationale.clone(),
        evidence_pattern: rule.evidence_pattern.clone(),
        effective_date: rule.effective_date.map(|d| d.to_string()),
        pack_id: pack_id.map(str::to_string),
        created_by: actor.name.clone(),
        created_at: store::now(),
        techniques: rule
            .techniques
            .iter()
            .map(|t| (t.id.to_string(), t.tactic.as_ref().map(|x| x.to_string())))
            .collect(),
    }
}

/// What a Sigma import stores: the rules it makes active, split into new
/// versions and stored versions active again, and how many were unchanged.
#[derive(Debug, Default)]
struct SigmaPlan {
    /// Every rule that becomes active, at the version it is stored under.
    fresh: Vec<Rule>,
    /// The ones among them to store (a version never stored).
    new: Vec<Rule>,
    /// The ones stored already, as (id, version), made active again.
    reactivated: Vec<(String, i64)>,
    /// Rules whose active version maps the same.
    unchanged: usize,
}

/// Decides, per imported rule, by what it maps ([`mapping::rules::mapping_content`])
/// and not by its dates: a rule whose active version maps the same is
/// unchanged; one that maps as a stored, retired version did (an older pack
/// imported again after a newer one) makes that version active again, since
/// stored versions never change; any other is a new version, numbered by
/// its date (`YYYYMMDD`, else 1) when that is above every stored version of
/// its id and one above the highest otherwise. Authors often change a tag
/// without touching `modified`, and a rule without a readable date would
/// otherwise stay at version 1 for ever.
fn plan_sigma_versions(imported: &[Rule], stored: &[RuleRecord]) -> SigmaPlan {
    let mut by_id: std::collections::HashMap<&str, Vec<(i64, bool, Value)>> =
        std::collections::HashMap::new();
    for record in stored {
        let definition: Value = serde_json::from_str(&record.definition).unwrap_or(Value::Null);
        by_id.entry(record.id.as_str()).or_default().push((
            record.version,
            record.status == "active",
            mapping::rules::mapping_content(&definition),
        ));
    }

    let mut plan = SigmaPlan::default();
    for rule in imported {
        let content = rule.mapping_content();
        let versions = by_id.get(rule.id.as_str()).map_or(&[][..], Vec::as_slice);
        if versions
            .iter()
            .any(|(_, active, c)| *active && *c == content)
        {
            plan.unchanged += 1;
            continue;
        }
        let mut rule = rule.clone();
        let same = versions
            .iter()
            .filter(|(_, _, c)| *c == content)
            .map(|(v, _, _)| *v)
            .max();
        if let Some(version) = same {
            rule.version = u32::try_from(version).unwrap_or(u32::MAX);
            plan.reactivated.push((rule.id.clone(), version));
        } else {
            let above = versions.iter().map(|(v, _, _)| *v).max().unwrap_or(0) + 1;
            rule.version = rule.version.max(u32::try_from(above).unwrap_or(u32::MAX));
            plan.new.push(rule.clone());
        }
        plan.fresh.push(rule);
    }
    plan
}

/// Whether an alert is touched by a change between two rule versions: one
/// of them matches it, or it has candidates from the rule.
fn touched_by(old: &RuleSet, new: &RuleSet, alert: &mapping::NormalizedAlert) -> bool {
    !old.evaluate(alert).is_empty() || !new.evaluate(alert).is_empty()
}

impl App {
    /// Creates (`update = false`) or updates (`update = true`) a mapping
    /// rule from JSON or YAML text. The rule is parsed and validated against
    /// the active Enterprise release: one that does not parse or names an
    /// unknown, revoked or deprecated technique is refused with the reason.
    /// An update must carry a higher version than every stored one. The new
    /// version becomes active and the alerts it or its predecessor matches
    /// are re-evaluated.
    pub async fn save_rule(
        &self,
        actor: &Actor,
        org: &str,
        text: &str,
        update: bool,
    ) -> Result<RuleChange> {
        self.authorize(actor, Action::RuleWrite, ("rule", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let engine = self.engine(&scope).await?;
        let rule = match mapping::parse_rule(text, &engine.release) {
            Ok(rule) => rule,
            Err(e) => {
                let field = match &e {
                    mapping::RuleError::Syntax(_) => "rule".to_string(),
                    mapping::RuleError::Invalid { path, .. }
                    | mapping::RuleError::Technique { path, .. } => format!("rule.{path}"),
                };
                let details = json!({"code": "invalid_input", "message": e.to_string()});
                self.audit_outcome(actor, "rule_save", ("rule", org), Outcome::Failed, details)
                    .await?;
                return Err(ServiceError::InvalidInput {
                    field,
                    message: e.to_string(),
                });
            }
        };

        let versions = self.store.rule_versions(&scope, &rule.id).await?;
        let latest = versions.iter().map(|v| v.version).max();
        match (update, latest) {
            (false, Some(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "rule {} already exists: use update with a higher version",
                    rule.id
                )));
            }
            (true, None) => {
                return Err(ServiceError::NotFound {
                    kind: "rule",
                    id: rule.id.clone(),
                });
            }
            (true, Some(v)) if i64::from(rule.version) <= v => {
                return Err(ServiceError::InvalidInput {
                    field: "rule.version".into(),
                    message: format!(
                        "version {} is not higher than the stored version {v} of rule {}",
                        rule.version, rule.id
                    ),
                });
            }
            _ => {}
        }
        let previous = versions.iter().find(|v| v.status == "active");
        let old_rule = previous.and_then(|p| self.parse_stored(p, &engine));

        let record = rule_record(&scope, &rule, actor, None);
        let details = json!({
            "rule": rule.id,
            "before": previous.map(|p| json!({"version": p.version, "definition": rule_json(p)})),
            "after": {"version": rule.version, "definition": rule.to_value()},
        });
        let mut tx = self.store.begin_in(&scope).await?;
        tx.retire_active_rules(&scope, std::slice::from_ref(&rule.id))
            .await?;
        tx.insert_rules(vec![record.clone()]).await?;
        tx.bump_rule_revision(&scope).await?;
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            if update { "rule_update" } else { "rule_create" },
            ("rule", &rule.id),
            details,
        ))
        .await?;
        tx.commit().await?;

        let old = RuleSet::new(old_rule);
        let new = RuleSet::new([rule]);
        let (reevaluated, changed) = self
            .reevaluate(actor, &scope, "rule_version", |a| touched_by(&old, &new, a))
            .await?;
        Ok(RuleChange {
            rule: rule_view(&record),
            previous_version: previous.map(|p| p.version),
            reevaluated,
            changed,
        })
    }

    /// Rules of the org: every version, or only those in `status`.
    pub async fn list_rules(
        &self,
        actor: &Actor,
        org: &str,
        status: Option<&str>,
    ) -> Result<Vec<RuleView>> {
        self.authorize(actor, Action::ReadMappings, ("rule", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        Ok(self
            .store
            .rules(&scope, status)
            .await?
            .iter()
            .map(rule_view)
            .collect())
    }

    /// Runs a new or changed rule over the stored alerts and reports whose
    /// canonical mapping would change. Changes nothing.
    pub async fn simulate_rule(&self, actor: &Actor, org: &str, text: &str) -> Result<Simulation> {
        self.authorize(actor, Action::ReadMappings, ("rule", org))
            .await?;
        let scope = self.scope(actor, org).await?;
        let engine = self.engine(&scope).await?;
        let rule =
            mapping::parse_rule(text, &engine.release).map_err(|e| ServiceError::InvalidInput {
                field: "rule".into(),
                message: e.to_string(),
            })?;
        let (rule_id, version) = (rule.id.clone(), rule.version);
        // A later rule with the same id replaces the earlier one.
        let proposed_rules = RuleSet::new(engine.rules.rules.rules().iter().cloned().chain([rule]));
        let dataset = Some(engine.dataset.id.to_string());
        let current = engine.mapper();
        let proposed =
            Mapper::new(&engine.release, proposed_rules, dataset).with_policy(engine.policy);

        let mut changes = Vec::new();
        let mut scanned = 0;
        let mut after: Option<AlertId> = None;
        loop {
            let page = self.store.alerts_page(&scope, after.as_ref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            scanned += page.len();
            let mut inputs = Vec::with_capacity(page.len());
            for alert in &page {
                let overrides: Vec<mapping::Override> = self
                    .store
                    .overrides_of(&scope, &alert.id)
                    .await?
                    .iter()
                    .filter_map(override_from_record)
                    .collect();
                inputs.push((decode_stored(alert)?, overrides));
            }
            let found: Vec<SimulatedChange> = simulate(
                &current,
                &proposed,
                page.iter()
                    .zip(&inputs)
                    .map(|(a, (n, o))| (Subject::alert(a.id.as_str()), n, o.as_slice())),
            );
            for change in found {
                let uid = page
                    .iter()
                    .find(|a| a.id.as_str() == change.subject.id)
                    .map(|a| a.source_uid.clone())
                    .unwrap_or_default();
                changes.push(SimulatedAlert {
                    alert_id: change.subject.id,
                    source_uid: uid,
                    before: change.before,
                    after: change.after,
                });
            }
        }
        Ok(Simulation {
            rule_id,
            version,
            alerts_scanned: scanned,
            changes,
        })
    }

    /// Rolls a rule back one version: the active version is retired, the
    /// previous one is active again, and affected alerts are re-evaluated.
    pub async fn rollback_rule(&self, actor: &Actor, org: &str, id: &str) -> Result<RuleChange> {
        self.authorize(actor, Action::RuleWrite, ("rule", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let engine = self.engine(&scope).await?;
        let versions = self.store.rule_versions(&scope, id).await?;
        let not_found = || ServiceError::NotFound {
            kind: "rule",
            id: id.to_string(),
        };
        let current = versions
            .iter()
            .find(|v| v.status == "active")
            .ok_or_else(not_found)?;
        let Some(previous) = versions
            .iter()
            .filter(|v| v.version < current.version)
            .max_by_key(|v| v.version)
        else {
            let message = format!(
                "rule {id} v{} is its first version: there is nothing to roll back to",
                current.version
            );
            self.audit_outcome(
                actor,
                "rule_rollback",
                ("rule", id),
                Outcome::Failed,
                json!({"code": "conflict", "message": message}),
            )
            .await?;
            return Err(ServiceError::Conflict(message));
        };

        let old = RuleSet::new(self.parse_stored(current, &engine));
        let new = RuleSet::new(self.parse_stored(previous, &engine));
        let details = json!({
            "rule": id,
            "before": {"version": current.version, "definition": rule_json(current)},
            "after": {"version": previous.version, "definition": rule_json(previous)},
        });
        let mut tx = self.store.begin_in(&scope).await?;
        tx.set_rule_status(&scope, id, current.version, "retired")
            .await?;
        tx.set_rule_status(&scope, id, previous.version, "active")
            .await?;
        tx.bump_rule_revision(&scope).await?;
        tx.append_audit(&self.org_event(actor, &scope, "rule_rollback", ("rule", id), details))
            .await?;
        tx.commit().await?;

        let (reevaluated, changed) = self
            .reevaluate(actor, &scope, "rule_rollback", |a| {
                touched_by(&old, &new, a)
            })
            .await?;
        let mut restored = previous.clone();
        restored.status = "active".into();
        Ok(RuleChange {
            rule: rule_view(&restored),
            previous_version: Some(current.version),
            reevaluated,
            changed,
        })
    }

    /// Imports a Sigma pack (folder or `.tar.gz`): every ATT&CK tag is
    /// checked against the active Enterprise release, rules with a valid
    /// technique tag become mapping rules (a new version when changed), the
    /// report is stored, and stored alerts are re-evaluated.
    pub async fn import_sigma(
        &self,
        actor: &Actor,
        org: &str,
        path: &Path,
    ) -> Result<SigmaImportOutcome> {
        let source = path.display().to_string();
        self.authorize(actor, Action::RuleWrite, ("rule_pack", &source))
            .await?;
        let scope = self.scope(actor, org).await?;
        let engine = self.engine(&scope).await?;
        let release = engine.release.clone();
        let owned = path.to_path_buf();
        let import = tokio::task::spawn_blocking(move || {
            mapping::sigma::import_path(&owned, &release, SigmaOptions::default())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("the Sigma import stopped: {e}")))?
        .map_err(|e| ServiceError::Fetch {
            source_name: source.clone(),
            message: e.to_string(),
        })?;

        let stored = self.store.rules(&scope, None).await?;
        let plan = plan_sigma_versions(&import.mapping_rules, &stored);
        let import_id = uuid::Uuid::now_v7().to_string();
        let ids: Vec<String> = plan.fresh.iter().map(|r| r.id.clone()).collect();
        let records: Vec<RuleRecord> = plan
            .new
            .iter()
            .map(|r| rule_record(&scope, r, actor, Some(&import_id)))
            .collect();
        let reactivated = plan.reactivated;
        let new_versions = plan.fresh.len();
        let unchanged = plan.unchanged;
        let fresh = plan.fresh;
        let report_text = serde_json::to_string(&import.report).unwrap_or_default();
        let details = json!({
            "source": source,
            "rules": import.report.rules,
            "mapped_rules": import.report.mapped_rules,
            "tags": import.report.tags,
            "problems": import.report.problems.len(),
            "new_versions": new_versions,
            "reactivated_versions": reactivated.len(),
            "dataset": engine.dataset.id,
        });

        let mut tx = self.store.begin_in(&scope).await?;
        tx.insert_pack_import(&PackImportRecord {
            id: import_id.clone(),
            org_id: scope.org().clone(),
            kind: "sigma".into(),
            source: source.clone(),
            dataset_id: Some(engine.dataset.id.to_string()),
            report: report_text,
            imported_by: actor.name.clone(),
            imported_at: store::now(),
        })
        .await?;
        tx.retire_active_rules(&scope, &ids).await?;
        tx.insert_rules(records).await?;
        for (id, version) in &reactivated {
            tx.set_rule_status(&scope, id, *version, "active").await?;
        }
        if new_versions > 0 {
            tx.bump_rule_revision(&scope).await?;
        }
        tx.append_audit(&self.org_event(
            actor,
            &scope,
            "rule_import_sigma",
            ("rule_pack", &import_id),
            details,
        ))
        .await?;
        tx.commit().await?;

        let (reevaluated, changed) = if new_versions > 0 {
            let touched = RuleSet::new(fresh);
            self.reevaluate(actor, &scope, "rule_import", |a| {
                !touched.evaluate(a).is_empty()
            })
            .await?
        } else {
            (0, 0)
        };
        Ok(SigmaImportOutcome {
            import_id,
            report: import.report,
            new_versions,
            unchanged,
            reevaluated,
            changed,
        })
    }

    /// A stored rule pack import report.
    pub async fn rule_pack_import(
        &self,
        actor: &Actor,
        org: &str,
        id: &str,
    ) -> Result<ImportReport> {
        self.authorize(actor, Action::ReadMappings, ("rule_pack", id))
            .await?;
        let scope = self.scope(actor, org).await?;
        let record =
            self.store
                .pack_import(&scope, id)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "rule pack import",
                    id: id.to_string(),
                })?;
        serde_json::from_str(&record.report).map_err(|e| {
            ServiceError::Internal(format!("stored import report {id} does not decode: {e}"))
        })
    }

    /// Re-evaluates the org's alerts that `touched` selects under the
    /// current engine (rebuilt after the change).
    async fn reevaluate(
        &self,
        actor: &Actor,
        scope: &OrgScope,
        cause: &str,
        touched: impl Fn(&mapping::NormalizedAlert) -> bool,
    ) -> Result<(usize, usize)> {
        let engine = self.engine(scope).await?;
        let mut selected = 0;
        let (_, changed) = self
            .recompute_org(
                actor,
                scope,
                &engine,
                cause,
                |a| {
                    let hit = decode_stored(a).map(|n| touched(&n)).unwrap_or(true);
                    selected += usize::from(hit);
                    hit
                },
                &mut |_, _| {},
            )
            .await?;
        Ok((selected, changed))
    }

    fn parse_stored(&self, record: &RuleRecord, engine: &Engine) -> Option<Rule> {
        let value: Value = serde_json::from_str(&record.definition).ok()?;
        mapping::rules::parse_rule_value(&value, &engine.release).ok()
    }
}

fn rule_json(record: &RuleRecord) -> Value {
    serde_json::from_str(&record.definition).unwrap_or(Value::Null)
}
