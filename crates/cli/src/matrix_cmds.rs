//! Analyst view commands: `matrix` (the matrix as JSON or text, `rebuild`,
//! `exclusions`) and `export` (Navigator layer, CSV). Each parses its
//! arguments, calls one use case and prints or writes the answer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde_json::json;
use service::{Actor, App, ExclusionInput, FilterInput, Role};
use taxonomy::Domain;

/// The org and who acts.
#[derive(Debug, Clone, Args)]
pub struct MatrixOrg {
    /// Org name or id.
    #[arg(long)]
    org: String,
    /// Who acts (recorded in the audit log).
    #[arg(long, default_value = "operator")]
    actor: String,
}

/// Which activity a view counts.
#[derive(Debug, Clone, Args)]
pub struct MatrixFilterArgs {
    /// First day counted (YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// First day no longer counted (YYYY-MM-DD).
    #[arg(long)]
    to: Option<String>,
    /// Mapping sources kept, comma-separated (manual, rule, ai).
    #[arg(long)]
    source: Option<String>,
    /// Severities kept, comma-separated.
    #[arg(long)]
    severity: Option<String>,
    /// Connectors (alert products) kept, comma-separated.
    #[arg(long)]
    connector: Option<String>,
    /// Platforms kept, comma-separated.
    #[arg(long)]
    platform: Option<String>,
    /// Confidence bands kept, comma-separated (low, medium, high).
    #[arg(long)]
    band: Option<String>,
    /// ATT&CK domain whose active release lays out the matrix.
    #[arg(long, default_value = "enterprise-attack")]
    domain: String,
}

impl MatrixFilterArgs {
    fn input(&self) -> FilterInput {
        FilterInput {
            from: self.from.clone(),
            to: self.to.clone(),
            source: self.source.clone(),
            severity: self.severity.clone(),
            connector: self.connector.clone(),
            platform: self.platform.clone(),
            band: self.band.clone(),
        }
    }

    fn domain(&self) -> anyhow::Result<Domain> {
        Ok(self.domain.parse::<Domain>()?)
    }
}

/// `matrix ...`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MatrixCommand {
    #[command(subcommand)]
    action: Option<MatrixAction>,
    /// Org name or id.
    #[arg(long, required = true)]
    org: Option<String>,
    /// Who acts (recorded in the audit log).
    #[arg(long, default_value = "operator")]
    actor: String,
    #[command(flatten)]
    filter: MatrixFilterArgs,
    /// Print the view as JSON: `formula`, `cells`, `techniques` and more.
    #[arg(long)]
    json: bool,
}

/// `matrix rebuild` and `matrix exclusions ...`
#[derive(Debug, Subcommand)]
pub enum MatrixAction {
    /// Rebuild the org's rollups from its current canonical mappings.
    Rebuild {
        #[command(flatten)]
        org: MatrixOrg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exclusion windows for noisy sources.
    #[command(subcommand)]
    Exclusions(ExclusionsCommand),
}

/// `matrix exclusions ...`
#[derive(Debug, Subcommand)]
pub enum ExclusionsCommand {
    /// Exclude a connector's activity over `[from, to)` from views.
    Add {
        #[command(flatten)]
        org: MatrixOrg,
        /// The connector whose rows are left out.
        #[arg(long)]
        connector: String,
        /// First excluded day (YYYY-MM-DD).
        #[arg(long)]
        from: NaiveDate,
        /// First day no longer excluded (YYYY-MM-DD).
        #[arg(long)]
        to: NaiveDate,
        /// Why (shown with every view it applies to).
        #[arg(long)]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The org's exclusion windows.
    List {
        #[command(flatten)]
        org: MatrixOrg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `export ...`
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write the view as an ATT&CK Navigator layer (format 4.5), validated.
    Navigator {
        #[command(flatten)]
        org: MatrixOrg,
        #[command(flatten)]
        filter: MatrixFilterArgs,
        /// List every technique of the release, unannotated ones included.
        #[arg(long)]
        full_matrix: bool,
        /// Output file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Write the view as CSV, one row per cell.
    Csv {
        #[command(flatten)]
        org: MatrixOrg,
        #[command(flatten)]
        filter: MatrixFilterArgs,
        /// Output file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

/// The CLI acts as a platform-admin operator of the org.
async fn actor(app: &App, org: &str, name: &str) -> anyhow::Result<Actor> {
    let found = app.org_by_name(&Actor::operator(name), org).await?;
    Ok(Actor {
        name: name.to_string(),
        org: Some(found.id),
        role: Role::PlatformAdmin,
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `matrix ...`.
pub async fn matrix(app: &App, command: MatrixCommand) -> anyhow::Result<ExitCode> {
    match command.action {
        Some(MatrixAction::Rebuild { org, json }) => {
            let who = actor(app, &org.org, &org.actor).await?;
            let report = app.rebuild_matrix(&who, &org.org).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "rollups of {} rebuilt: {} alerts, {} mappings ({} old rows replaced)",
                    org.org, report.alerts, report.mappings, report.rows_removed
                );
            }
        }
        Some(MatrixAction::Exclusions(ExclusionsCommand::Add {
            org,
            connector,
            from,
            to,
            reason,
            json,
        })) => {
            let who = actor(app, &org.org, &org.actor).await?;
            let input = ExclusionInput {
                connector,
                from,
                to,
                reason,
            };
            let window = app.add_exclusion(&who, &org.org, input).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&window)?);
            } else {
                println!(
                    "exclusion {} added: {} from {} to {}",
                    window.id, window.connector, window.from, window.to
                );
            }
        }
        Some(MatrixAction::Exclusions(ExclusionsCommand::List { org, json })) => {
            let who = actor(app, &org.org, &org.actor).await?;
            let windows = app.exclusions(&who, &org.org).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&windows)?);
            } else {
                for w in &windows {
                    println!(
                        "{}  {}  {} .. {}  {}",
                        w.id, w.connector, w.from, w.to, w.reason
                    );
                }
            }
        }
        None => {
            // clap requires --org without a subcommand; this only guards it.
            let org = command.org.context("--org is required")?;
            let who = actor(app, &org, &command.actor).await?;
            let filter = command.filter.input().parse()?;
            let view = app
                .matrix(&who, &org, command.filter.domain()?, filter)
                .await?;
            if command.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("{}", view.formula);
                for cell in &view.cells {
                    println!(
                        "{:<8} {:<11} {:>7} {:>10.2}  low {}",
                        cell.tactic,
                        cell.technique,
                        cell.count,
                        cell.intensity,
                        cell.low_confidence
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `export ...`.
pub async fn export(app: &App, command: ExportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExportCommand::Navigator {
            org,
            filter,
            full_matrix,
            output,
        } => {
            let who = actor(app, &org.org, &org.actor).await?;
            let layer = app
                .export_navigator(
                    &who,
                    &org.org,
                    filter.domain()?,
                    filter.input().parse()?,
                    full_matrix,
                )
                .await?;
            write(&output, &serde_json::to_string_pretty(&layer)?)?;
            let entries = layer["techniques"].as_array().map_or(0, Vec::len);
            eprintln!("{}", json!({"written": output, "techniques": entries}));
        }
        ExportCommand::Csv {
            org,
            filter,
            output,
        } => {
            let who = actor(app, &org.org, &org.actor).await?;
            let csv = app
                .export_csv(
                    &who,
                    &org.org,
                    filter.domain()?,
                    filter.input().parse()?,
                    &service::Redaction::default(),
                )
                .await?;
            write(&output, &csv)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
