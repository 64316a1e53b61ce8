//! Mapping engine commands: `alerts`, `rules`, `overrides`, `review` and
//! `bench ingest`. Each parses its arguments, calls one use case and prints
//! the answer (JSON with `--json`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use service::{Actor, App, OverrideInput, ReviewCorrection, ReviewDecision, ReviewItem, Role};

/// The org and who acts.
#[derive(Debug, Args)]
pub struct OrgArgs {
    /// Org name or id.
    #[arg(long)]
    org: String,
    /// Who acts (recorded in the audit log).
    #[arg(long, default_value = "operator")]
    actor: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `alerts ...`
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Ingest NDJSON alerts (OCSF, ECS or native); mapping happens at ingestion.
    Ingest {
        /// NDJSON file (`-` for stdin).
        file: PathBuf,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// The org's alerts, newest first, with their current canonical
    /// entries; `--json` prints `{"items": [...], "next_cursor": ...}`.
    List {
        /// Only alerts whose current mapping holds this technique.
        #[arg(long)]
        technique: Option<String>,
        /// Only alerts with an entry won by this source: manual, rule, ai.
        #[arg(long)]
        source: Option<String>,
        /// Only alerts with an entry in this band: low, medium, high.
        #[arg(long)]
        band: Option<String>,
        /// Only `mapped` or `unmapped` alerts.
        #[arg(long)]
        state: Option<String>,
        /// How many (1 to 500).
        #[arg(long, default_value_t = service::PageRequest::DEFAULT_LIMIT)]
        limit: usize,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// An alert's candidates and canonical mapping with provenance.
    Show {
        /// The product's alert id or the alert's source uid.
        id: String,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Print the JSON Schema of `alerts show --json` (docs/schemas/alert-mapping.v1.json).
    Schema,
    /// Re-map every alert of the org under the active release (after an
    /// activation); canonical mappings change only through precedence.
    Remap {
        #[command(flatten)]
        org: OrgArgs,
    },
}

/// `rules ...`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Import a Sigma pack (folder or .tar.gz) as mapping rules.
    ImportSigma {
        /// Folder or .tar.gz of Sigma YAML.
        path: PathBuf,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Create a mapping rule from a JSON or YAML file.
    Create {
        /// Rule file.
        file: PathBuf,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Store a new version of a rule (a higher `version` in the file).
    Update {
        /// Rule file.
        file: PathBuf,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// List rule versions.
    List {
        /// Only this status (draft, active, retired).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Show which canonical mappings a new or changed rule would change.
    Simulate {
        /// Rule file.
        file: PathBuf,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Make the previous version of a rule active again.
    Rollback {
        /// Rule id.
        id: String,
        #[command(flatten)]
        org: OrgArgs,
    },
}

/// The override itself.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// add, remove or replace.
    #[arg(long)]
    action: String,
    /// Technique added (add, replace) or removed (remove).
    #[arg(long)]
    technique: String,
    /// Tactic of the technique.
    #[arg(long)]
    tactic: Option<String>,
    /// For replace: the technique replaced.
    #[arg(long)]
    replace: Option<String>,
    /// Reason code: wrong_technique, missing_technique, wrong_subtechnique,
    /// false_positive, taxonomy_update, other (required).
    #[arg(long)]
    reason: Option<String>,
    /// Notes.
    #[arg(long)]
    notes: Option<String>,
}

impl OverrideArgs {
    fn input(self) -> OverrideInput {
        OverrideInput {
            action: self.action,
            technique: self.technique,
            tactic: self.tactic,
            replaces: self.replace,
            replaces_tactic: None,
            reason: self.reason,
            notes: self.notes,
            confidence: None,
        }
    }
}

/// `overrides ...`
#[derive(Debug, Subcommand)]
pub enum OverridesCommand {
    /// Override an alert's mapping (a lead's applies at once, an analyst's
    /// is a proposal).
    Create {
        /// The alert (id or source uid).
        alert: String,
        /// lead or analyst.
        #[arg(long, default_value = "lead")]
        role: String,
        #[command(flatten)]
        r#override: OverrideArgs,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Approve an analyst's proposal (as a lead).
    Approve {
        /// Override id.
        id: String,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Reject an analyst's proposal (as a lead).
    Reject {
        /// Override id.
        id: String,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Notifications for leads (arbitration locks).
    Notifications {
        #[command(flatten)]
        org: OrgArgs,
    },
}

/// `review ...`
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Review items, oldest first: alerts' mappings, and incidents whose
    /// profile went stale (`incident:ID stale STATE REASONS`).
    List {
        /// open, accepted, rejected, corrected, resolved_by_remap or all.
        #[arg(long, default_value = "open")]
        state: String,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// The mapping is right (an incident's item: its profile still holds,
    /// which clears the stale mark).
    Accept {
        /// Review item id.
        id: String,
        /// Notes.
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// The mapping is wrong (an incident's item: the stale mark stays for
    /// the lead).
    Reject {
        /// Review item id.
        id: String,
        /// Notes.
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        org: OrgArgs,
    },
    /// Correct the mapping with an override and resolve the item (an
    /// incident's item: a lead adjustment, `--notes` its rationale).
    Correct {
        /// Review item id.
        id: String,
        #[command(flatten)]
        r#override: OverrideArgs,
        #[command(flatten)]
        org: OrgArgs,
    },
}

/// `bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Ingest N generated alerts (variations of a sample feed) and print
    /// alerts per second and peak memory.
    Ingest {
        /// How many alerts.
        #[arg(long, default_value_t = 100_000)]
        alerts: usize,
        /// NDJSON sample whose alerts are varied (uids, hosts, times).
        #[arg(long)]
        sample: PathBuf,
        #[command(flatten)]
        org: OrgArgs,
    },
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// The actor for an org command: a platform-admin operator of that org.
async fn actor(app: &App, org: &OrgArgs, role: Role) -> anyhow::Result<Actor> {
    let found = app
        .org_by_name(&Actor::operator(org.actor.clone()), &org.org)
        .await?;
    Ok(Actor {
        name: org.actor.clone(),
        org: Some(found.id),
        role,
    })
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs `alerts ...`.
pub async fn alerts(app: &App, command: AlertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlertsCommand::Ingest { file, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let input: Box<dyn BufRead + Send> = if file.as_os_str() == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                let f =
                    File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            };
            let report = app.ingest_alerts(&actor, &org.org, input).await?;
            print(org.json, &report, || {
                let mut text = format!(
                    "ingested {} (mapped {}, unmapped {}), rejected {}, duplicates {}, \
                     updated {}, queued for review {}",
                    report.ingested,
                    report.mapped,
                    report.unmapped,
                    report.rejected,
                    report.duplicates,
                    report.updated,
                    report.queued_for_review
                );
                let d = &report.declarations;
                if d.alerts > 0 {
                    text.push_str(&format!(
                        "\ndeclared techniques not mapped as declared, in {} alerts: unknown {}, \
                         revoked {} ({} mapped to their replacement), deprecated {}, malformed {}, \
                         tactic left out {} (`alerts show` lists them)",
                        d.alerts,
                        d.unknown,
                        d.revoked,
                        d.replaced,
                        d.deprecated,
                        d.malformed,
                        d.tactic_not_kept
                    ));
                }
                for e in &report.errors {
                    text.push_str(&format!("\nline {}: [{}] {}", e.line, e.code, e.message));
                }
                text
            })?;
        }
        AlertsCommand::List {
            technique,
            source,
            band,
            state,
            limit,
            cursor,
            org,
        } => {
            let filter = service::AlertFilter {
                technique,
                source,
                band,
                mapping_state: state,
            };
            return list_alerts(app, &org, &filter, limit, cursor).await;
        }
        AlertsCommand::Show { id, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app.alert_mapping(&actor, &org.org, &id).await?;
            print(org.json, &view, || {
                let mut text = format!(
                    "alert {} ({}) {} [{}]\ncanonical v{} decided by {} under {} {}: {}",
                    view.alert.id,
                    view.alert.source_uid,
                    view.alert.title,
                    view.alert.mapping_state,
                    view.canonical.version,
                    view.canonical.decided_by.as_deref().unwrap_or("nothing"),
                    view.canonical.domain,
                    view.canonical.release,
                    view.canonical.explanation
                );
                for e in &view.canonical.entries {
                    text.push_str(&format!(
                        "\n  {} {} {} {:.2} ({}) from {}",
                        e.technique,
                        e.tactic.as_deref().unwrap_or("-"),
                        e.source,
                        e.confidence,
                        e.band,
                        e.lineage.producers.join(", ")
                    ));
                }
                text.push_str(&format!("\ncandidates: {}", view.candidates.len()));
                if !view.declarations.is_empty() {
                    text.push_str("\ndeclared by the alert, not mapped as declared:");
                }
                for d in &view.declarations {
                    text.push_str(&format!(
                        "\n  {} in {} [{}]: {}",
                        d.technique, d.field, d.status, d.message
                    ));
                }
                text
            })?;
        }
        AlertsCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&service::alert_mapping_schema())?
            );
        }
        AlertsCommand::Remap { org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let bar = crate::spinner("re-mapping", org.json);
            let mut progress = |alerts: usize, changed: usize| {
                bar.set_message(format!("re-mapping: {alerts} alerts, {changed} changed"));
            };
            let outcome = app.remap_org(&actor, &org.org, &mut progress).await;
            bar.finish_and_clear();
            let (alerts, changed) = outcome?;
            print(
                org.json,
                &json!({"alerts": alerts, "changed": changed}),
                || format!("re-mapped {alerts} alerts, {changed} changed"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `alerts list`: one page of the org's alerts, as `GET /api/v1/alerts`.
async fn list_alerts(
    app: &App,
    org: &OrgArgs,
    filter: &service::AlertFilter,
    limit: usize,
    cursor: Option<String>,
) -> anyhow::Result<ExitCode> {
    if !(1..=service::PageRequest::MAX_LIMIT).contains(&limit) {
        return Err(service::ServiceError::InvalidInput {
            field: "limit".into(),
            message: format!(
                "--limit must be from 1 to {}, got {limit}",
                service::PageRequest::MAX_LIMIT
            ),
        }
        .into());
    }
    let actor = actor(app, org, Role::PlatformAdmin).await?;
    let page = service::PageRequest {
        cursor,
        limit: Some(limit),
    };
    let alerts = app.list_alerts(&actor, &org.org, filter, &page).await?;

    let answer = json!({ "items": alerts.items, "next_cursor": alerts.next_cursor });
    print(org.json, &answer, || {
        let mut text = format!(
            "{:<36}  {:<24}  {:<13}  {:<20}  techniques",
            "id", "received", "severity", "host"
        );
        for item in &alerts.items {
            let a = &item.alert;
            let techniques: Vec<&str> = item
                .canonical
                .iter()
                .map(|e| e.technique.as_str())
                .collect();
            text.push_str(&format!(
                "\n{:<36}  {:<24}  {:<13}  {:<20}  {}",
                a.id,
                a.received_at,
                a.severity,
                a.host.as_deref().unwrap_or("-"),
                if techniques.is_empty() {
                    "(unmapped)".to_string()
                } else {
                    techniques.join(", ")
                }
            ));
        }
        if let Some(next) = &alerts.next_cursor {
            text.push_str(&format!("\nmore: --cursor '{next}'"));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `rules ...`.
pub async fn rules(app: &App, command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::ImportSigma { path, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let outcome = app.import_sigma(&actor, &org.org, &path).await?;
            let summary = outcome.summary();
            // The contract's JSON on stdout has no place for what was left
            // out of the pack, so that goes to stderr in both modes: an
            // import that skipped files must not read as a clean one.
            if outcome.report.skipped > 0 {
                eprintln!(
                    "skipped {} rules with status deprecated or unsupported",
                    outcome.report.skipped
                );
            }
            // Files that could not be read, and rules read but not kept as
            // they were (a repeated id replaces the earlier rule).
            // Names come from the pack: escaped, a line break in one cannot
            // forge a line of its own.
            for problem in &outcome.report.unreadable {
                eprintln!("{}: {}", problem.file.escape_debug(), problem.message);
            }
            // Documents that are not rules: nothing lost, but a pack whose
            // every document is accounted for reads the same as its files.
            for problem in &outcome.report.not_rules {
                eprintln!("{}: {}", problem.file.escape_debug(), problem.message);
            }
            for warning in &outcome.report.warnings {
                eprintln!(
                    "{}: rule {}: {}",
                    warning.file.escape_debug(),
                    warning.rule.escape_debug(),
                    warning.message
                );
            }
            if outcome.report.rules == 0 && outcome.report.skipped == 0 {
                eprintln!("no Sigma rule found in {}", path.display());
            }
            print(org.json, &summary, || {
                format!(
                    "import {}: {} rules, {} mapped ({} new versions); tags valid {}, unknown \
                     {}, revoked {}, deprecated {}; {} problems",
                    outcome.import_id,
                    summary.rules,
                    summary.mapped_rules,
                    outcome.new_versions,
                    summary.tags.valid,
                    summary.tags.unknown,
                    summary.tags.revoked,
                    summary.tags.deprecated,
                    summary.problems.len()
                )
            })?;
        }
        RulesCommand::Create { file, org } => save(app, &file, &org, false).await?,
        RulesCommand::Update { file, org } => save(app, &file, &org, true).await?,
        RulesCommand::List { status, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let rules = app.list_rules(&actor, &org.org, status.as_deref()).await?;
            print(org.json, &rules, || {
                rules
                    .iter()
                    .map(|r| format!("{} v{} {} {}", r.id, r.version, r.status, r.title))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        RulesCommand::Simulate { file, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let text = read_text(&file)?;
            let simulation = app.simulate_rule(&actor, &org.org, &text).await?;
            print(org.json, &simulation, || {
                let pairs = |pairs: &[(String, Option<String>)]| {
                    if pairs.is_empty() {
                        return "(unmapped)".to_string();
                    }
                    pairs
                        .iter()
                        .map(|(t, tactic)| match tactic {
                            Some(tactic) => format!("{t}/{tactic}"),
                            None => t.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut text = format!(
                    "rule {} v{}: {} of {} alerts would change",
                    simulation.rule_id,
                    simulation.version,
                    simulation.changes.len(),
                    simulation.alerts_scanned
                );
                for c in &simulation.changes {
                    text.push_str(&format!(
                        "\n  {}: {} -> {}",
                        c.source_uid,
                        pairs(&c.before),
                        pairs(&c.after)
                    ));
                }
                text
            })?;
        }
        RulesCommand::Rollback { id, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let change = app.rollback_rule(&actor, &org.org, &id).await?;
            print(org.json, &change, || {
                format!(
                    "rule {} back to v{}; {} alerts re-evaluated, {} changed",
                    change.rule.id, change.rule.version, change.reevaluated, change.changed
                )
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rules create` (`update = false`) and `rules update`.
async fn save(app: &App, file: &Path, org: &OrgArgs, update: bool) -> anyhow::Result<()> {
    let actor = actor(app, org, Role::PlatformAdmin).await?;
    let text = read_text(file)?;
    let change = app.save_rule(&actor, &org.org, &text, update).await?;
    print(org.json, &change, || {
        format!(
            "rule {} v{} active; {} alerts re-evaluated, {} changed",
            change.rule.id, change.rule.version, change.reevaluated, change.changed
        )
    })
}

/// Runs `overrides ...`.
pub async fn overrides(app: &App, command: OverridesCommand) -> anyhow::Result<ExitCode> {
    match command {
        OverridesCommand::Create {
            alert,
            role,
            r#override,
            org,
        } => {
            let role: Role = role.parse()?;
            let actor = actor(app, &org, role).await?;
            let outcome = app
                .create_override(&actor, &org.org, &alert, r#override.input())
                .await?;
            print(org.json, &outcome, || {
                format!(
                    "override {} {} (canonical v{} -> v{}){}",
                    outcome.r#override.id,
                    outcome.r#override.status,
                    outcome.before_version,
                    outcome.after_version,
                    if outcome.locked {
                        "; alert locked for arbitration"
                    } else {
                        ""
                    }
                )
            })?;
        }
        OverridesCommand::Approve { id, org } => decide(app, &id, &org, true).await?,
        OverridesCommand::Reject { id, org } => decide(app, &id, &org, false).await?,
        OverridesCommand::Notifications { org } => {
            let actor = actor(app, &org, Role::Lead).await?;
            let list = app.notifications(&actor, &org.org).await?;
            print(org.json, &list, || {
                list.iter()
                    .map(|n| format!("{} {} {}", n.created_at, n.kind, n.message))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `overrides approve` and `overrides reject`, as a lead.
async fn decide(app: &App, id: &str, org: &OrgArgs, approve: bool) -> anyhow::Result<()> {
    let actor = actor(app, org, Role::Lead).await?;
    let outcome = app.decide_override(&actor, &org.org, id, approve).await?;
    print(org.json, &outcome, || {
        format!(
            "override {} {}",
            outcome.r#override.id, outcome.r#override.status
        )
    })
}

/// One line of `review list`: an alert's item as `ID ALERT REASON STATE`
/// (as before incidents were queued), an incident's as
/// `ID incident:INCIDENT stale STATE REASON,REASON`.
fn review_line(item: &ReviewItem) -> String {
    match (&item.alert_id, &item.incident_id) {
        (Some(alert), _) => format!("{} {alert} {} {}", item.id, item.reason, item.state),
        (None, Some(incident)) => {
            let reasons: Vec<&str> = item
                .stale_reasons
                .iter()
                .flatten()
                .filter_map(|r| r["reason"].as_str())
                .collect();
            format!(
                "{} incident:{incident} {} {} {}",
                item.id,
                item.reason,
                item.state,
                reasons.join(",")
            )
        }
        (None, None) => format!("{} - {} {}", item.id, item.reason, item.state),
    }
}

/// Runs `review ...`.
pub async fn review(app: &App, command: ReviewCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReviewCommand::List { state, limit, org } => {
            let actor = actor(app, &org, Role::Analyst).await?;
            let state = (state != "all").then_some(state);
            let items = app
                .review_list(&actor, &org.org, state.as_deref(), limit)
                .await?;
            print(org.json, &items, || {
                items.iter().map(review_line).collect::<Vec<_>>().join("\n")
            })?;
        }
        ReviewCommand::Accept { id, notes, org } => {
            let actor = actor(app, &org, Role::Analyst).await?;
            let item = app
                .review_decide(
                    &actor,
                    &org.org,
                    &id,
                    ReviewDecision::Accept,
                    notes.as_deref(),
                )
                .await?;
            print(org.json, &item, || {
                format!("review item {} {}", item.id, item.state)
            })?;
        }
        ReviewCommand::Reject { id, notes, org } => {
            let actor = actor(app, &org, Role::Analyst).await?;
            let item = app
                .review_decide(
                    &actor,
                    &org.org,
                    &id,
                    ReviewDecision::Reject,
                    notes.as_deref(),
                )
                .await?;
            print(org.json, &item, || {
                format!("review item {} {}", item.id, item.state)
            })?;
        }
        ReviewCommand::Correct {
            id,
            r#override,
            org,
        } => {
            let actor = actor(app, &org, Role::Lead).await?;
            let (item, correction) = app
                .review_correct(&actor, &org.org, &id, r#override.input())
                .await?;
            // The same shape as `POST /api/v1/review/{id}/correct`.
            let (answer, by) = match &correction {
                ReviewCorrection::Override(outcome) => (
                    json!({"review": item, "override": outcome}),
                    format!("override {}", outcome.r#override.id),
                ),
                ReviewCorrection::Adjustment(incident) => (
                    json!({"review": item, "incident": incident}),
                    format!(
                        "adjustment {} of incident {}",
                        incident.adjustments.last().map_or("", |a| a.id.as_str()),
                        incident.id
                    ),
                ),
            };
            print(org.json, &answer, || {
                // `corrected`, or `open` while a proposal awaits a lead.
                format!("review item {} {} by {by}", item.id, item.state)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `bench ...`.
pub async fn bench(app: &App, command: BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Ingest {
        alerts,
        sample,
        org,
    } = command;
    let actor = actor(app, &org, Role::PlatformAdmin).await?;
    let text = read_text(&sample)?;
    let samples: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    anyhow::ensure!(
        !samples.is_empty(),
        "{} holds no JSON alert to vary",
        sample.display()
    );
    // Uids unique to this run, so that a second run on the same database
    // measures ingestion rather than duplicate detection.
    let run = chrono::Utc::now().timestamp_millis();
    let generator = Generator::new(samples, alerts, run);

    // Warm up: parse the active release and compile the org's rules, which
    // a long-running service does once, outside the measured loop.
    app.ingest_alerts(&actor, &org.org, Box::new(std::io::empty()))
        .await?;
    let started = Instant::now();
    let report = app
        .ingest_alerts(&actor, &org.org, Box::new(BufReader::new(generator)))
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = report.ingested as f64 / seconds.max(1e-9);
    let peak_rss_kib = peak_rss_kib();
    let result = json!({
        "alerts": alerts,
        "ingested": report.ingested,
        "mapped": report.mapped,
        "unmapped": report.unmapped,
        "rejected": report.rejected,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "alerts_per_second": rate.round(),
        "peak_rss_mib": peak_rss_kib.map(|k| k / 1024),
        "backend": format!("{:?}", app.store().backend()).to_lowercase(),
    });
    print(org.json, &result, || {
        format!(
            "{} alerts in {seconds:.2}s: {:.0} alerts/s ({} mapped), peak RSS {} MiB",
            report.ingested,
            rate,
            report.mapped,
            peak_rss_kib.map_or("?".to_string(), |k| (k / 1024).to_string())
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Peak resident memory of this process (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// NDJSON lines generated on the fly from sample alerts, each with a fresh
/// uid, host and time, so memory stays flat whatever the count.
struct Generator {
    templates: Vec<Template>,
    total: usize,
    run: i64,
    next: usize,
    buffer: Vec<u8>,
    offset: usize,
}

/// What a generated line puts in a slot of its sample.
#[derive(Clone, Copy)]
enum Slot {
    Uid,
    Host,
    Time,
}

impl Slot {
    /// A stand-in no real alert carries, found again in the serialized
    /// sample to cut it around.
    fn marker(self) -> &'static str {
        match self {
            Slot::Uid => "@@nexus-bench-uid@@",
            Slot::Host => "@@nexus-bench-host@@",
            Slot::Time => "@@nexus-bench-time@@",
        }
    }
}

/// A sample serialized once, cut at its slots: writing a line is copying
/// the pieces with each slot's value between them. The measured ingestion
/// then pays for reading the alerts, not for building them.
struct Template {
    pieces: Vec<Vec<u8>>,
    slots: Vec<Slot>,
}

impl Template {
    fn new(sample: &Value) -> Self {
        let mut alert = sample.clone();
        let set = |value: &mut Value, path: &[&str], slot: Slot| {
            let mut at = value;
            for key in &path[..path.len() - 1] {
                match at.get_mut(*key) {
                    Some(next) => at = next,
                    None => return,
                }
            }
            if let Some(obj) = at.as_object_mut() {
                obj.insert(path[path.len() - 1].to_string(), json!(slot.marker()));
            }
        };
        // OCSF, ECS and native ids and hosts; a nested key whose parent is
        // absent from the sample is left absent, a top-level one is added.
        set(&mut alert, &["finding_info", "uid"], Slot::Uid);
        set(&mut alert, &["metadata", "uid"], Slot::Uid);
        set(&mut alert, &["event", "id"], Slot::Uid);
        set(&mut alert, &["uid"], Slot::Uid);
        set(&mut alert, &["device", "hostname"], Slot::Host);
        set(&mut alert, &["host", "name"], Slot::Host);
        set(&mut alert, &["time_dt"], Slot::Time);
        let text = serde_json::to_string(&alert).unwrap_or_default();
        let mut pieces = Vec::new();
        let mut slots = Vec::new();
        let mut rest = text.as_str();
        loop {
            let found = [Slot::Uid, Slot::Host, Slot::Time]
                .into_iter()
                .filter_map(|slot| rest.find(slot.marker()).map(|at| (at, slot)))
                .min_by_key(|(at, _)| *at);
            let Some((at, slot)) = found else {
                pieces.push(rest.as_bytes().to_vec());
                break;
            };
            pieces.push(rest.as_bytes()[..at].to_vec());
            slots.push(slot);
            rest = &rest[at + slot.marker().len()..];
        }
        Template { pieces, slots }
    }
}

impl Generator {
    fn new(samples: Vec<Value>, total: usize, run: i64) -> Self {
        Generator {
            templates: samples.iter().map(Template::new).collect(),
            total,
            run,
            next: 0,
            buffer: Vec::new(),
            offset: 0,
        }
    }

    /// Line `n` into the buffer. The values are plain ASCII, so they go
    /// into the JSON strings as they are.
    fn line(&mut self, n: usize) {
        use std::io::Write;
        let template = &self.templates[n % self.templates.len()];
        self.buffer.clear();
        for (i, piece) in template.pieces.iter().enumerate() {
            self.buffer.extend_from_slice(piece);
            let Some(slot) = template.slots.get(i) else {
                continue;
            };
            // Writing into a Vec cannot fail.
            let _ = match slot {
                Slot::Uid => write!(self.buffer, "bench-{}-{n:09}", self.run),
                Slot::Host => write!(self.buffer, "host-{:05}.bench.example", n % 50_000),
                Slot::Time => {
                    let time = chrono::DateTime::from_timestamp(
                        1_767_225_600 + (n as i64) % 31_536_000,
                        0,
                    )
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                    self.buffer.write_all(time.as_bytes())
                }
            };
        }
        self.buffer.push(b'\n');
    }
}

impl Read for Generator {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.offset == self.buffer.len() {
            if self.next == self.total {
                return Ok(0);
            }
            self.line(self.next);
            self.offset = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buffer.len() - self.offset);
        out[..n].copy_from_slice(&self.buffer[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_are_the_sample_with_their_own_uid_host_and_time() {
        let ocsf = json!({"class_uid": 2004, "finding_info": {"uid": "a", "title": "t"},
                          "metadata": {"uid": "a"}, "device": {"hostname": "h", "os": {"name": "Linux"}},
                          "time_dt": "2025-01-01T00:00:00Z", "message": "uid @@ \"quoted\""});
        let ecs = json!({"@timestamp": "2025-01-01T00:00:00Z", "event": {"id": "e"},
                         "host": {"name": "h2"}});
        let mut generator = Generator::new(vec![ocsf.clone(), ecs.clone()], 3, 42);
        let mut text = String::new();
        generator.read_to_string(&mut text).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);

        let mut want = ocsf.clone();
        want["finding_info"]["uid"] = json!("bench-42-000000002");
        want["metadata"]["uid"] = json!("bench-42-000000002");
        want["device"]["hostname"] = json!("host-00002.bench.example");
        want["time_dt"] = json!("2026-01-01T00:00:02+00:00");
        want["uid"] = json!("bench-42-000000002");
        assert_eq!(lines[2], want);

        let mut want = ecs.clone();
        want["event"]["id"] = json!("bench-42-000000001");
        want["host"]["name"] = json!("host-00001.bench.example");
        want["uid"] = json!("bench-42-000000001");
        want["time_dt"] = json!("2026-01-01T00:00:01+00:00");
        // No `device` object in the sample: none is made up.
        assert!(lines[1].get("device").is_none());
        assert_eq!(lines[1], want);
    }
}
