//! Incident commands: `incidents ...` (list, create, attach, detach, show,
//! merge, split, adjust, status, severity, evidence, schema) and
//! `bench incidents`.
//! Each parses its arguments, calls one use case and prints the answer
//! (JSON with `--json`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;
use service::{
    Actor, AdjustmentInput, App, IncidentInput, IncidentProfileView, PageRequest, Role,
    incident_profile_schema,
};

/// The org and who acts.
#[derive(Debug, Args)]
pub struct IncidentOrgArgs {
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

/// `incidents ...`
#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// The org's incidents, most recently updated first; `--json` prints
    /// `{"items": [...], "next_cursor": ...}`.
    List {
        /// How many (1 to 500).
        #[arg(long, default_value_t = PageRequest::DEFAULT_LIMIT)]
        limit: usize,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Create an incident, optionally with alerts.
    Create {
        /// Title.
        #[arg(long)]
        title: String,
        /// Alerts: product ids or source uids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        alerts: Vec<String>,
        /// Severity: informational, low, medium (default), high, critical.
        #[arg(long)]
        severity: Option<String>,
        /// The incident lead.
        #[arg(long)]
        lead: Option<String>,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Attach alerts to an incident.
    Attach {
        /// Incident id.
        id: String,
        /// Alerts: product ids or source uids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        alerts: Vec<String>,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Detach alerts from an incident (the attachment stays as history).
    Detach {
        /// Incident id.
        id: String,
        /// Alerts: product ids or source uids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        alerts: Vec<String>,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// The incident with its ATT&CK profile, lineage and adjustments.
    Show {
        /// Incident id.
        id: String,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Merge incident B into incident A (A survives).
    Merge {
        /// The surviving incident.
        a: String,
        /// The incident merged into A.
        b: String,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Move alerts out of an incident into a new one.
    Split {
        /// Incident id.
        id: String,
        /// Alerts to move: product ids or source uids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        alerts: Vec<String>,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Adjust the incident's canonical mapping (as incident lead).
    Adjust {
        /// Incident id.
        id: String,
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
        /// Reason code: wrong_technique, missing_technique,
        /// wrong_subtechnique, false_positive, taxonomy_update, other.
        #[arg(long)]
        reason: Option<String>,
        /// Why (required).
        #[arg(long)]
        rationale: Option<String>,
        /// Evidence references (repeatable or comma-separated); the
        /// incident's own references count when none is given.
        #[arg(long, value_delimiter = ',')]
        evidence: Vec<String>,
        /// lead (default), engineer or admin.
        #[arg(long, default_value = "lead")]
        role: String,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Change the status: open, contained, resolved, closed, reopened.
    Status {
        /// Incident id.
        id: String,
        /// The new status.
        #[arg(long)]
        status: String,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Change the severity: informational, low, medium, high, critical.
    Severity {
        /// Incident id.
        id: String,
        /// The new severity.
        #[arg(long)]
        severity: String,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Add an evidence reference to the incident record.
    Evidence {
        /// Incident id.
        id: String,
        /// The reference (ticket, URL, file path, ...).
        #[arg(long)]
        add: String,
        /// Its kind.
        #[arg(long, default_value = "reference")]
        kind: String,
        #[command(flatten)]
        org: IncidentOrgArgs,
    },
    /// Print the JSON Schema of `incidents show --json`
    /// (docs/schemas/incident-profile.v1.json).
    Schema,
    /// Benchmark: profile recomputation of an incident of N stored alerts
    /// and the merge of two such incidents (needs 2N alerts in the org).
    Bench {
        /// Alerts per incident.
        #[arg(long, default_value_t = 10_000)]
        alerts: usize,
        /// Profile computations to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[command(flatten)]
        org: IncidentOrgArgs,
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

/// The actor for an org command: an operator of that org with `role`.
async fn actor(app: &App, org: &IncidentOrgArgs, role: Role) -> anyhow::Result<Actor> {
    let found = app
        .org_by_name(&Actor::operator(org.actor.clone()), &org.org)
        .await?;
    Ok(Actor {
        name: org.actor.clone(),
        org: Some(found.id),
        role,
    })
}

/// `incidents list`: one page, as JSON or one line per incident.
async fn list_incidents(
    app: &App,
    org: &IncidentOrgArgs,
    limit: usize,
    cursor: Option<String>,
) -> anyhow::Result<ExitCode> {
    if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
        return Err(service::ServiceError::InvalidInput {
            field: "limit".into(),
            message: format!(
                "--limit must be from 1 to {}, got {limit}",
                PageRequest::MAX_LIMIT
            ),
        }
        .into());
    }
    let actor = actor(app, org, Role::PlatformAdmin).await?;
    let page = PageRequest {
        cursor,
        limit: Some(limit),
    };

    let incidents = app.list_incidents(&actor, &org.org, &page).await?;

    let answer = json!({ "items": incidents.items, "next_cursor": incidents.next_cursor });
    print(org.json, &answer, || {
        let mut text = format!(
            "{:<36}  {:<9}  {:<13}  {:>6}  {:<24}  title",
            "id", "status", "severity", "alerts", "updated"
        );
        for i in &incidents.items {
            text.push_str(&format!(
                "\n{:<36}  {:<9}  {:<13}  {:>6}  {:<24}  {}{}",
                i.id,
                i.status,
                i.severity,
                i.alert_count,
                i.updated_at,
                i.title,
                match &i.merged_into {
                    Some(into) => format!(" (merged into {into})"),
                    None => String::new(),
                }
            ));
        }
        if let Some(next) = &incidents.next_cursor {
            text.push_str(&format!("\nmore: --cursor '{next}'"));
        }
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A profile as short text: one line per entry.
fn profile_text(v: &IncidentProfileView) -> String {
    let mut text = format!(
        "incident {} [{}] {} ({} severity), {} alert(s){}",
        v.id,
        v.status,
        v.title,
        v.severity,
        v.alerts.len(),
        if v.stale { ", STALE" } else { "" }
    );
    if let Some(into) = &v.merged_into {
        text.push_str(&format!("\nmerged into {into}"));
    }
    for e in &v.profile {
        text.push_str(&format!(
            "\n  {} {} x{} {:.2} ({}) from {}{}",
            e.technique,
            e.tactic.as_deref().unwrap_or("-"),
            e.frequency,
            e.confidence,
            e.band,
            e.sources.join("+"),
            if e.stale { " stale" } else { "" }
        ));
    }
    for a in &v.adjustments {
        text.push_str(&format!(
            "\n  adjustment v{} {} {} by {}: {}",
            a.version, a.action, a.technique, a.actor, a.rationale
        ));
    }
    text
}

/// Runs `incidents ...`.
pub async fn incidents(app: &App, command: IncidentsCommand) -> anyhow::Result<ExitCode> {
    let (org, view) = match command {
        IncidentsCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&incident_profile_schema())?
            );
            return Ok(ExitCode::SUCCESS);
        }
        IncidentsCommand::Bench { alerts, runs, org } => {
            return bench_incidents(app, &org, alerts, runs).await;
        }
        IncidentsCommand::List { limit, cursor, org } => {
            return list_incidents(app, &org, limit, cursor).await;
        }
        IncidentsCommand::Create {
            title,
            alerts,
            severity,
            lead,
            org,
        } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let input = IncidentInput {
                title,
                severity,
                lead,
                alerts,
            };
            let view = app.create_incident(&actor, &org.org, input).await?;
            (org, view)
        }
        IncidentsCommand::Attach { id, alerts, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app.attach_alerts(&actor, &org.org, &id, &alerts).await?;
            (org, view)
        }
        IncidentsCommand::Detach { id, alerts, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app.detach_alerts(&actor, &org.org, &id, &alerts).await?;
            (org, view)
        }
        IncidentsCommand::Show { id, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app.incident_profile(&actor, &org.org, &id).await?;
            (org, view)
        }
        IncidentsCommand::Merge { a, b, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app.merge_incidents(&actor, &org.org, &a, &b).await?;
            (org, view)
        }
        IncidentsCommand::Split { id, alerts, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let outcome = app.split_incident(&actor, &org.org, &id, &alerts).await?;
            print(org.json, &outcome, || {
                format!(
                    "split {} alert(s) out of {} into {}\n{}",
                    outcome.created.alerts.len(),
                    outcome.split_from,
                    outcome.id,
                    profile_text(&outcome.created)
                )
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        IncidentsCommand::Adjust {
            id,
            action,
            technique,
            tactic,
            replace,
            reason,
            rationale,
            evidence,
            role,
            org,
        } => {
            let role = role
                .parse::<Role>()
                .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let actor = actor(app, &org, role).await?;
            let input = AdjustmentInput {
                action,
                technique,
                tactic,
                replaces: replace,
                replaces_tactic: None,
                reason,
                rationale,
                evidence,
                confidence: None,
            };
            let view = app.adjust_incident(&actor, &org.org, &id, input).await?;
            (org, view)
        }
        IncidentsCommand::Status { id, status, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app
                .set_incident_status(&actor, &org.org, &id, &status)
                .await?;
            (org, view)
        }
        IncidentsCommand::Severity { id, severity, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app
                .set_incident_severity(&actor, &org.org, &id, &severity)
                .await?;
            (org, view)
        }
        IncidentsCommand::Evidence { id, add, kind, org } => {
            let actor = actor(app, &org, Role::PlatformAdmin).await?;
            let view = app
                .add_incident_evidence(&actor, &org.org, &id, &kind, &add)
                .await?;
            (org, view)
        }
    };
    print(org.json, &view, || profile_text(&view))?;
    Ok(ExitCode::SUCCESS)
}

/// Measures profile recomputation and merge on the configured database:
/// two incidents of `alerts` alerts each, built from the org's stored
/// alerts (which must number at least `2 * alerts`).
async fn bench_incidents(
    app: &App,
    org: &IncidentOrgArgs,
    alerts: usize,
    runs: usize,
) -> anyhow::Result<ExitCode> {
    let actor = actor(app, org, Role::PlatformAdmin).await?;
    let scope = store::OrgScope::new(actor.org.clone().context("the org has an id")?);
    let mut ids = Vec::with_capacity(2 * alerts);
    let mut after: Option<store::AlertId> = None;
    while ids.len() < 2 * alerts {
        let page = app
            .store()
            .alerts_page(&scope, after.as_ref(), 1000)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        ids.extend(page.into_iter().map(|a| a.id.to_string()));
    }
    anyhow::ensure!(
        ids.len() >= 2 * alerts,
        "the org holds {} alerts; the benchmark needs {} (ingest more, e.g. with `bench ingest`)",
        ids.len(),
        2 * alerts
    );
    let (left, right) = ids.split_at(alerts);
    let right = &right[..alerts];

    let input = |title: &str, alerts: &[String]| IncidentInput {
        title: title.into(),
        alerts: alerts.to_vec(),
        ..IncidentInput::default()
    };
    let a = app
        .create_incident(&actor, &org.org, input("bench a", left))
        .await?;
    let b = app
        .create_incident(&actor, &org.org, input("bench b", right))
        .await?;

    let mut profile_ms = Vec::with_capacity(runs);
    let mut entries = 0;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let view = app.incident_profile(&actor, &org.org, &a.id).await?;
        profile_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        entries = view.profile.len();
    }
    let started = Instant::now();
    let merged = app.merge_incidents(&actor, &org.org, &a.id, &b.id).await?;
    let merge_ms = started.elapsed().as_secs_f64() * 1000.0;

    profile_ms.sort_by(f64::total_cmp);
    let median = profile_ms[profile_ms.len() / 2];
    let report = json!({
        "alerts_per_incident": alerts,
        "profile_entries": entries,
        "profile_ms_median": median,
        "profile_ms_max": profile_ms.last(),
        "merge_ms": merge_ms,
        "merged_alerts": merged.alerts.len(),
        "backend": format!("{:?}", app.store().backend()),
    });
    print(org.json, &report, || {
        format!(
            "profile of {alerts} alerts ({entries} entries): median {median:.1} ms over {} runs; \
             merge of two such incidents: {merge_ms:.1} ms ({} alerts)",
            profile_ms.len(),
            merged.alerts.len()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
