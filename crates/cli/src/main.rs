//! `nexus-attack`: every operator command, including `serve`.
//!
//! A thin layer over [`service::App`]: parse arguments, call one use case,
//! print the answer (JSON with `--json`), and on failure print one line on
//! stderr and exit non-zero. The CLI acts as a local operator: a
//! platform-admin named by `--actor`.

mod incident_cmds;
mod kpi_cmds;
mod mapping_cmds;
mod matrix_cmds;
mod output;
mod suggest_cmds;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use service::{
    Actor, App, AppConfig, DatasetFilter, DatasetId, DatasetState, LoadOptions, PageRequest, Role,
    ServiceError, StatusFilter, TechniqueFilter,
};
use taxonomy::Domain;

use crate::output::Printer;

// Bulk ingestion allocates and frees many short-lived strings per alert;
// mimalloc keeps that off the critical path where glibc's allocator spends
// a large share of the time consolidating and splitting chunks. It also
// stands in for `malloc` (the `override` feature), so the bundled SQLite's
// own allocations, a fifth of its time in a bulk ingest, go through it too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// MITRE ATT&CK as governed reference data: load, validate, approve,
/// activate and diff releases; orgs, tokens and the audit log; the HTTP API.
#[derive(Debug, Parser)]
#[command(name = "nexus-attack", version, about)]
struct Cli {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "NEXUS_ATTACK_DATABASE",
        default_value = "sqlite://nexus-attack.db"
    )]
    database: String,

    #[command(flatten)]
    policy: PolicyArgs,

    #[command(subcommand)]
    command: Command,
}

/// The mapping policy, for `serve` and every one-shot command that maps
/// (ingestion, re-mapping, rule changes). Each error names its variable:
/// clap reports a bad value under the flag only, and an operator who set
/// the variable in a unit file would look for the wrong thing.
#[derive(Debug, Args)]
struct PolicyArgs {
    /// Confidence band thresholds as LOW,HIGH: medium from LOW, high from
    /// HIGH (default 0.40,0.70; 0 < LOW < HIGH <= 1).
    #[arg(long, global = true, env = "NEXUS_ATTACK_BANDS", value_name = "LOW,HIGH", value_parser = parse_bands)]
    bands: Option<mapping::BandThresholds>,
    /// The confidence an AI-only candidate needs to become canonical
    /// (default 0.70; 0 to 1).
    #[arg(long, global = true, env = "NEXUS_ATTACK_AI_BAR", value_name = "CONFIDENCE", value_parser = parse_ai_bar)]
    ai_bar: Option<mapping::Confidence>,
    /// More distinct techniques than this on one alert or incident is
    /// flagged as over-mapping (default 10; at least 1).
    #[arg(long, global = true, env = "NEXUS_ATTACK_MAX_TECHNIQUES", value_name = "COUNT", value_parser = parse_max_techniques)]
    max_techniques: Option<usize>,
    /// Conflicting approved overrides on one alert that lock it for
    /// arbitration by a lead (default 3; at least 1).
    #[arg(long, global = true, env = "NEXUS_ATTACK_FLIP_FLOPS", value_name = "COUNT", value_parser = parse_flip_flops)]
    flip_flops: Option<usize>,
}

impl PolicyArgs {
    /// Sets what was given on `config`, keeping the defaults otherwise.
    fn apply(&self, config: &mut service::MappingConfig) {
        let policy = &mut config.policy;
        policy.thresholds = self.bands.unwrap_or(policy.thresholds);
        policy.ai_bar = self.ai_bar.unwrap_or(policy.ai_bar);
        policy.max_techniques = self.max_techniques.unwrap_or(policy.max_techniques);
        config.flip_flop_threshold = self.flip_flops.unwrap_or(config.flip_flop_threshold);
    }
}

/// Band thresholds from `LOW,HIGH` (`0.40,0.70`).
fn parse_bands(s: &str) -> Result<mapping::BandThresholds, String> {
    let bad = || {
        format!(
            "NEXUS_ATTACK_BANDS (--bands): expected LOW,HIGH with 0 < LOW < HIGH <= 1 \
             (e.g. 0.40,0.70), got `{s}`"
        )
    };
    let (low, high) = s.split_once(',').ok_or_else(bad)?;
    let low: f64 = low.trim().parse().map_err(|_| bad())?;
    let high: f64 = high.trim().parse().map_err(|_| bad())?;
    mapping::BandThresholds::new(low, high).map_err(|_| bad())
}

/// The AI bar, a confidence from 0 to 1.
fn parse_ai_bar(s: &str) -> Result<mapping::Confidence, String> {
    let bad =
        || format!("NEXUS_ATTACK_AI_BAR (--ai-bar): expected a confidence from 0 to 1, got `{s}`");
    let value: f64 = s.trim().parse().map_err(|_| bad())?;
    mapping::Confidence::new(value).map_err(|_| bad())
}

/// A count of at least 1, for `variable` (`--flag`).
fn parse_count(s: &str, variable: &str, flag: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{variable} ({flag}): expected a whole number of at least 1, got `{s}`"
        )),
    }
}

fn parse_max_techniques(s: &str) -> Result<usize, String> {
    parse_count(s, "NEXUS_ATTACK_MAX_TECHNIQUES", "--max-techniques")
}

fn parse_flip_flops(s: &str) -> Result<usize, String> {
    parse_count(s, "NEXUS_ATTACK_FLIP_FLOPS", "--flip-flops")
}

#[derive(Debug, Subcommand)]
enum Command {
    /// ATT&CK datasets and their lifecycle.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Orgs (tenants).
    #[command(subcommand)]
    Org(OrgCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Read the active taxonomy of a domain.
    #[command(subcommand)]
    Taxonomy(TaxonomyCommand),
    /// Alerts: ingest (mapped at ingestion) and show their mappings.
    #[command(subcommand)]
    Alerts(mapping_cmds::AlertsCommand),
    /// Mapping rules and rule packs.
    #[command(subcommand)]
    Rules(mapping_cmds::RulesCommand),
    /// Manual overrides of alert mappings.
    #[command(subcommand)]
    Overrides(mapping_cmds::OverridesCommand),
    /// The review queue.
    #[command(subcommand)]
    Review(mapping_cmds::ReviewCommand),
    /// Incidents and their ATT&CK profiles: list, create, attach, detach,
    /// show, merge, split, adjust, status, severity, evidence.
    #[command(subcommand)]
    Incidents(incident_cmds::IncidentsCommand),
    /// The ATT&CK matrix of an org (`--json` for scripts), its rollups and
    /// exclusion windows.
    Matrix(matrix_cmds::MatrixCommand),
    /// Export an org's matrix view: Navigator layer or CSV.
    #[command(subcommand)]
    Export(matrix_cmds::ExportCommand),
    /// Load Enterprise 18.1, a Sigma pack and the shared alerts into a few
    /// orgs of a fresh database (unless --database is given), print a token
    /// per org and serve the UI.
    Demo(matrix_cmds::DemoCommand),
    /// Benchmark: generated rollups over many orgs and days, then the
    /// 30-day per-org matrix timed through the HTTP API (p50/p95/p99).
    MatrixBench(matrix_cmds::MatrixBenchCommand),
    /// Mapping KPIs of an org (coverage, override and correction rates,
    /// review times, provenance, denials, taxonomy upkeep, anomalies), each
    /// with numerator, denominator and definition.
    Kpis(kpi_cmds::KpisCommand),
    /// Benchmarks on the configured database.
    #[command(subcommand)]
    Bench(mapping_cmds::BenchCommand),
    /// AI-assisted technique suggestions: text, batch, a stored alert or
    /// incident, evaluate.
    #[command(subcommand)]
    Suggest(suggest_cmds::SuggestCommand),
    /// Documentation generated from the code (the role matrix).
    #[command(subcommand)]
    Docs(DocsCommand),
    /// Run the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "NEXUS_ATTACK_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Domains that must have an active dataset for /readyz
        /// (comma-separated).
        #[arg(
            long,
            env = "NEXUS_ATTACK_REQUIRED_DOMAINS",
            value_delimiter = ',',
            default_value = "enterprise-attack"
        )]
        require_domain: Vec<String>,
        /// Seconds between audit chain verifications, as `audit verify`
        /// runs them (default 300; 0 turns them off).
        #[arg(long, env = "NEXUS_ATTACK_AUDIT_VERIFY_INTERVAL", value_name = "SECS")]
        audit_verify_interval: Option<u64>,
        /// Seconds between misuse scans (default 60; 0 turns them off).
        #[arg(long, env = "NEXUS_ATTACK_MISUSE_SCAN_INTERVAL", value_name = "SECS")]
        misuse_scan_interval: Option<u64>,
        /// Overrides by one actor within a window that raise a misuse
        /// signal, as COUNT/SECONDS (default 20/600).
        #[arg(long, env = "NEXUS_ATTACK_MISUSE_OVERRIDES", value_name = "COUNT/SECS", value_parser = parse_signal_rule)]
        misuse_overrides: Option<service::SignalRule>,
        /// Refusals of one actor within a window that raise a misuse
        /// signal, as COUNT/SECONDS (default 10/600).
        #[arg(long, env = "NEXUS_ATTACK_MISUSE_DENIALS", value_name = "COUNT/SECS", value_parser = parse_signal_rule)]
        misuse_denials: Option<service::SignalRule>,
    },
}

/// The steward acting, recorded in lifecycle columns and the audit log.
#[derive(Debug, Args)]
struct ActorArg {
    /// Who acts (recorded in the audit log; approval needs someone other
    /// than the loader).
    #[arg(long)]
    actor: String,
}

/// `--json` output switch.
#[derive(Debug, Args)]
struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Load a release from a file or an http(s) URL (gzip or plain STIX).
    Load {
        /// Bundle file or URL.
        source: String,
        /// Release version, when neither the bundle nor the file name says.
        #[arg(long)]
        release: Option<String>,
        /// Domain, when neither the bundle nor the file name says.
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Run Gate A validation.
    Validate {
        /// Dataset id.
        id: String,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Approve a validated dataset (not by its loader).
    Approve {
        /// Dataset id.
        id: String,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Reject a dataset.
    Reject {
        /// Dataset id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Activate an approved dataset (runs the compatibility check).
    Activate {
        /// Dataset id.
        id: String,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Reactivate the previously active dataset of a domain.
    Rollback {
        /// Domain (enterprise-attack, mobile-attack, ics-attack).
        #[arg(long)]
        domain: String,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// List datasets, newest first.
    List {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show one dataset.
    Show {
        /// Dataset id.
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Show the Gate A report of a dataset.
    Report {
        /// Dataset id.
        id: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Changes between two releases (dataset ids, files or URLs).
    Diff {
        /// Older side.
        from: String,
        /// Newer side.
        to: String,
        /// Print JSON.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print a Markdown changelog (the default).
        #[arg(long)]
        markdown: bool,
    },
    /// Load and validate new releases from a directory or URL; never activates.
    Sync {
        /// Directory of bundles, a bundle file or a URL.
        #[arg(long)]
        source: String,
        /// One pass (the default).
        #[arg(long, conflicts_with = "interval")]
        once: bool,
        /// Poll every SECS seconds until interrupted.
        #[arg(long, value_name = "SECS")]
        interval: Option<u64>,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Reference migrations suggested by an activation.
    Migrations(MigrationsArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct MigrationsArgs {
    /// Dataset id whose suggestions to list.
    #[arg(required = true)]
    id: Option<String>,
    #[command(flatten)]
    json: JsonArg,
    #[command(subcommand)]
    apply: Option<MigrationsCommand>,
}

#[derive(Debug, Subcommand)]
enum MigrationsCommand {
    /// Apply the suggestions: new records beside the originals.
    Apply {
        /// Dataset id.
        id: String,
        #[command(flatten)]
        actor: ActorArg,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// List the orgs, by name.
    List {
        /// Who acts.
        #[arg(long, default_value = "operator")]
        actor: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Create an org.
    Create {
        /// Unique org name.
        name: String,
        /// Who acts.
        #[arg(long, default_value = "operator")]
        actor: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token; its secret is printed once.
    Create {
        /// Org name.
        #[arg(long)]
        org: String,
        /// viewer, analyst, lead, engineer, admin, steward or platform-admin.
        #[arg(long)]
        role: String,
        /// A label to recognise the token by.
        #[arg(long)]
        label: Option<String>,
        /// Who acts.
        #[arg(long, default_value = "operator")]
        actor: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Revoke an API token.
    Revoke {
        /// Token id.
        id: String,
        /// Who acts.
        #[arg(long, default_value = "operator")]
        actor: String,
    },
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// Print the role matrix (actions x roles) as Markdown, as embedded in
    /// docs/access-control.md.
    Roles,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Re-compute the hash chain; exits non-zero when it is broken.
    Verify {
        #[command(flatten)]
        json: JsonArg,
    },
    /// Audit events, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        json: JsonArg,
    },
}

#[derive(Debug, Subcommand)]
enum TaxonomyCommand {
    /// Tactics in matrix order.
    Tactics {
        /// Domain.
        #[arg(long, default_value = "enterprise-attack")]
        domain: String,
        #[command(flatten)]
        json: JsonArg,
    },
    /// Techniques and sub-techniques, filtered.
    Techniques {
        /// Domain.
        #[arg(long, default_value = "enterprise-attack")]
        domain: String,
        /// Tactic ID or shortname.
        #[arg(long)]
        tactic: Option<String>,
        /// Platform.
        #[arg(long)]
        platform: Option<String>,
        /// live, deprecated, revoked or all.
        #[arg(long, default_value = "live")]
        status: String,
        /// Leave sub-techniques out.
        #[arg(long)]
        no_subtechniques: bool,
        #[command(flatten)]
        json: JsonArg,
    },
    /// One technique with its sub-techniques and replacement.
    Technique {
        /// Technique ID (T1059.001).
        id: String,
        /// Domain.
        #[arg(long, default_value = "enterprise-attack")]
        domain: String,
        #[command(flatten)]
        json: JsonArg,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print and succeed.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own text spans several lines (usage, tips); the
            // contract is one line, so keep the message part, joined.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{} (see --help)", message.join(" "));
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Serve { .. }) {
        // Rust ignores SIGPIPE, so `... --json | head` would panic inside
        // println!; a CLI command should end quietly like other Unix tools.
        // The server keeps ignoring it: a closed client socket is an error
        // to answer, not a reason to exit.
        sigpipe::reset();
    }
    init_logging(&cli.command);

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let database = cli.database.clone();
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", one_line(&error, &database));
            ExitCode::FAILURE
        }
    }
}

/// `nexus-attack docs ...`: documentation rendered from the code's own data.
fn docs(command: DocsCommand) -> ExitCode {
    match command {
        DocsCommand::Roles => print!("{}", service::access::role_matrix_markdown()),
    }
    ExitCode::SUCCESS
}

/// `error[code]: message` on one line, with the cause chain joined. A
/// conflict ends with the structured details the API answers in
/// `error.details`, as compact JSON (`; details: {...}`), so a script reads
/// the state it met (the survivor of a merged incident, a review item's
/// state) without parsing the message. A database that stopped answering
/// is named (`database`, its password masked), since the driver's words
/// alone (`pool timed out`) do not say which one.
fn one_line(error: &anyhow::Error, database: &str) -> String {
    let service = error.chain().find_map(|e| e.downcast_ref::<ServiceError>());
    let code = service
        .map(|e| format!("[{}]", e.code()))
        .unwrap_or_default();
    if let Some(ServiceError::Store(store::StoreError::Unavailable { context, reason })) = service {
        return format!(
            "error{code}: the database `{}` stopped answering while {context} ({reason}); \
             check that it is running and reachable, then try again",
            store::redact(database)
        );
    }
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let conflict = service.filter(|e| e.kind() == service::ErrorKind::Conflict);
    match conflict.and_then(ServiceError::details) {
        Some(details) => format!("error{code}: {message}; details: {details}"),
        None => format!("error{code}: {message}"),
    }
}

/// Logs go to stderr, JSON when `NEXUS_ATTACK_LOG_FORMAT=json`. The level
/// comes from `NEXUS_ATTACK_LOG`; by default only warnings, except for the
/// long-running `serve` and `dataset sync`, which report progress at info.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Serve { .. } | Command::Dataset(DatasetCommand::Sync { .. }) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEXUS_ATTACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("NEXUS_ATTACK_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// A spinner on stderr for long steps; hidden for JSON output and when
/// stderr is not a terminal.
fn spinner(message: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn parse_domain(s: &str) -> anyhow::Result<Domain> {
    s.parse::<Domain>().map_err(|e| invalid_arg("domain", e))
}

/// A misuse signal rule from `COUNT/SECONDS` (`20/600`), both at least 1.
fn parse_signal_rule(s: &str) -> Result<service::SignalRule, String> {
    let bad = || format!("expected COUNT/SECONDS with both at least 1 (e.g. 20/600), got `{s}`");
    let (count, seconds) = s.trim().split_once('/').ok_or_else(bad)?;
    let threshold: usize = count.trim().parse().map_err(|_| bad())?;
    let seconds: u64 = seconds.trim().parse().map_err(|_| bad())?;
    if threshold == 0 || seconds == 0 {
        return Err(bad());
    }
    Ok(service::SignalRule {
        threshold,
        window: Duration::from_secs(seconds),
    })
}

/// A bad command-line value as the service's `invalid_input`, so it prints
/// with its code like every other refusal.
fn invalid_arg(field: &str, error: impl std::fmt::Display) -> anyhow::Error {
    ServiceError::InvalidInput {
        field: field.into(),
        message: error.to_string(),
    }
    .into()
}

/// The shortest `dataset sync --interval`: polling faster only loads the
/// release source and the database for nothing (0 would busy-loop).
const MIN_SYNC_INTERVAL_SECS: u64 = 10;

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Suggestions may come from a release file without any database.
    let cli = match cli.command {
        Command::Suggest(command) => return suggest_cmds::run(&cli.database, command).await,
        // Generated documentation reads the code, not a database.
        Command::Docs(command) => return Ok(docs(command)),
        command => Cli { command, ..cli },
    };
    // The demo writes into a fresh database unless one was named.
    let cli = match cli.command {
        Command::Demo(_) => {
            let explicit = std::env::var_os("NEXUS_ATTACK_DATABASE").is_some()
                || std::env::args().any(|a| a == "--database" || a.starts_with("--database="));
            Cli {
                database: matrix_cmds::demo_database(&cli.database, explicit)?,
                ..cli
            }
        }
        _ => cli,
    };
    let mut config = AppConfig::new(&cli.database);
    cli.policy.apply(&mut config.mapping);
    // AI candidates at ingestion are opt-in (see MappingConfig::ai_at_ingest).
    config.mapping.ai_at_ingest = std::env::var("NEXUS_ATTACK_AI_AT_INGEST")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"));
    if let Command::Serve {
        require_domain,
        audit_verify_interval,
        misuse_scan_interval,
        misuse_overrides,
        misuse_denials,
        ..
    } = &cli.command
    {
        config.required_domains = require_domain
            .iter()
            .map(|d| parse_domain(d))
            .collect::<anyhow::Result<_>>()?;
        // An activation over the API answers once it has committed; the
        // re-map it starts goes on in the server.
        config.remap_beside = true;
        let watch = &mut config.watch;
        if let Some(secs) = audit_verify_interval {
            watch.audit_interval = Duration::from_secs(*secs);
        }
        if let Some(secs) = misuse_scan_interval {
            watch.misuse_interval = Duration::from_secs(*secs);
        }
        watch.overrides = misuse_overrides.unwrap_or(watch.overrides);
        watch.denials = misuse_denials.unwrap_or(watch.denials);
    }
    let app = App::connect(config)
        .await
        .context("cannot open the database")?;
    match cli.command {
        Command::Dataset(command) => dataset(&app, command).await,
        Command::Org(OrgCommand::List { actor, json }) => {
            let orgs = app.list_orgs(&Actor::operator(actor)).await?;
            Printer::new(json.json).orgs(&orgs)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Org(OrgCommand::Create { name, actor, json }) => {
            let org = app.create_org(&Actor::operator(actor), &name).await?;
            Printer::new(json.json).org(&org)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Create {
            org,
            role,
            label,
            actor,
            json,
        }) => {
            let role: Role = role.parse().map_err(|e| invalid_arg("role", e))?;
            let token = app
                .create_token(&Actor::operator(actor), &org, role, label.as_deref())
                .await?;
            Printer::new(json.json).token(&token)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Revoke { id, actor }) => {
            let id = service::TokenId(id);
            app.revoke_token(&Actor::operator(actor), &id).await?;
            println!("token {id} revoked");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Verify { json }) => {
            let verification = app.audit_verify(&Actor::operator("operator")).await?;
            Printer::new(json.json).verification(&verification)?;
            if verification.ok {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error[audit_tampered]: audit chain broken at event {}: {}",
                    verification.first_bad_seq.unwrap_or_default(),
                    verification.problem.as_deref().unwrap_or("unknown problem")
                );
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Audit(AuditCommand::List { limit, json }) => {
            let page = PageRequest {
                cursor: None,
                limit: Some(limit),
            };
            let events = app.audit_list(&Actor::operator("operator"), &page).await?;
            Printer::new(json.json).audit_events(&events.items)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Taxonomy(command) => taxonomy(&app, command).await,
        // Answered above, before the database opens; listed for completeness.
        Command::Suggest(command) => suggest_cmds::run(&cli.database, command).await,
        Command::Docs(command) => Ok(docs(command)),
        Command::Alerts(command) => mapping_cmds::alerts(&app, command).await,
        Command::Rules(command) => mapping_cmds::rules(&app, command).await,
        Command::Overrides(command) => mapping_cmds::overrides(&app, command).await,
        Command::Review(command) => mapping_cmds::review(&app, command).await,
        Command::Bench(command) => mapping_cmds::bench(&app, command).await,
        Command::Matrix(command) => matrix_cmds::matrix(&app, command).await,
        Command::Export(command) => matrix_cmds::export(&app, command).await,
        Command::MatrixBench(command) => matrix_cmds::matrix_bench(&app, command).await,
        Command::Kpis(command) => kpi_cmds::kpis(&app, command).await,
        Command::Demo(command) => {
            suggest_cmds::configure_provider(&app)?;
            eprintln!("demo database: {}", cli.database);
            matrix_cmds::demo(&app, command).await
        }
        Command::Incidents(command) => incident_cmds::incidents(&app, command).await,
        Command::Serve { addr, .. } => {
            suggest_cmds::configure_provider(&app)?;
            let mut config = server::ServerConfig {
                addr,
                ..server::ServerConfig::default()
            };
            config.export_key = export_key()?;
            server::serve(app, config).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The key that signs export URLs: `NEXUS_ATTACK_EXPORT_KEY`, else a
/// random key of this process. Several `serve` nodes behind one balancer
/// need the same configured key, or a URL signed by one fails on another.
fn export_key() -> anyhow::Result<service::ExportKey> {
    match std::env::var("NEXUS_ATTACK_EXPORT_KEY") {
        Ok(secret) if !secret.trim().is_empty() => Ok(service::ExportKey::from_secret(&secret)?),
        _ => {
            // The key itself is never logged, only that it is ephemeral.
            tracing::info!(
                "export URL signing key is ephemeral (NEXUS_ATTACK_EXPORT_KEY unset): signed \
                 URLs stop working when this process stops and are refused by other nodes"
            );
            Ok(service::ExportKey::random())
        }
    }
}

async fn dataset(app: &App, command: DatasetCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatasetCommand::Load {
            source,
            release,
            domain,
            actor,
            json,
        } => {
            let options = LoadOptions {
                release,
                domain: domain.as_deref().map(parse_domain).transpose()?,
                file_name: None,
            };
            let bar = spinner(&format!("loading {source}"), json.json);
            let loaded = app
                .load_dataset(&Actor::operator(actor.actor), &source, &options)
                .await;
            bar.finish_and_clear();
            Printer::new(json.json).loaded(&loaded?)?;
        }
        DatasetCommand::Validate { id, actor, json } => {
            let bar = spinner("validating", json.json);
            let report = app
                .validate_dataset(&Actor::operator(actor.actor), &DatasetId(id.clone()))
                .await;
            bar.finish_and_clear();
            let report = report?;
            Printer::new(json.json).validation(&report)?;
            if report.errors > 0 {
                let first = report
                    .findings
                    .iter()
                    .find(|f| f.severity == "error")
                    .map(|f| format!("{} {}: {}", f.code, f.object, f.message))
                    .unwrap_or_default();
                bail!(ServiceError::ValidationFailed {
                    dataset: id,
                    errors: report.errors,
                    first,
                });
            }
        }
        DatasetCommand::Approve { id, actor, json } => {
            let dataset = app
                .approve_dataset(&Actor::operator(actor.actor), &DatasetId(id))
                .await?;
            Printer::new(json.json).dataset(&dataset)?;
        }
        DatasetCommand::Reject {
            id,
            reason,
            actor,
            json,
        } => {
            let dataset = app
                .reject_dataset(&Actor::operator(actor.actor), &DatasetId(id), &reason)
                .await?;
            Printer::new(json.json).dataset(&dataset)?;
        }
        DatasetCommand::Activate { id, actor, json } => {
            let bar = spinner("activating", json.json);
            let activation = app
                .activate_dataset(&Actor::operator(actor.actor), &DatasetId(id))
                .await;
            bar.finish_and_clear();
            Printer::new(json.json).activation(&activation?)?;
        }
        DatasetCommand::Rollback {
            domain,
            actor,
            json,
        } => {
            let rollback = app
                .rollback_domain(&Actor::operator(actor.actor), parse_domain(&domain)?)
                .await?;
            Printer::new(json.json).rollback(&rollback)?;
        }
        DatasetCommand::List {
            domain,
            state,
            json,
        } => {
            let filter = DatasetFilter {
                domain: domain.as_deref().map(parse_domain).transpose()?,
                state: state
                    .as_deref()
                    .map(str::parse::<DatasetState>)
                    .transpose()
                    .map_err(|e| invalid_arg("state", e))?,
            };
            let datasets = app
                .list_datasets(&Actor::operator("operator"), &filter)
                .await?;
            Printer::new(json.json).datasets(&datasets)?;
        }
        DatasetCommand::Show { id, json } => {
            let dataset = app
                .dataset(&Actor::operator("operator"), &DatasetId(id))
                .await?;
            Printer::new(json.json).dataset(&dataset)?;
        }
        DatasetCommand::Report { id, json } => {
            let report = app
                .validation_report(&Actor::operator("operator"), &DatasetId(id))
                .await?;
            Printer::new(json.json).validation(&report)?;
        }
        DatasetCommand::Diff { from, to, json, .. } => {
            let bar = spinner("comparing releases", json);
            let report = app.diff(&Actor::operator("operator"), &from, &to).await;
            bar.finish_and_clear();
            Printer::new(json).diff(&report?)?;
        }
        DatasetCommand::Sync {
            source,
            interval,
            actor,
            json,
            ..
        } => {
            if let Some(secs) = interval.filter(|&s| s < MIN_SYNC_INTERVAL_SECS) {
                return Err(invalid_arg(
                    "interval",
                    format!("{secs} s is too short; poll every {MIN_SYNC_INTERVAL_SECS} s or more"),
                ));
            }
            let actor = Actor::operator(actor.actor);
            loop {
                let bar = spinner(&format!("syncing {source}"), json.json);
                let report = app.sync_once(&actor, &source).await;
                bar.finish_and_clear();
                let report = report?;
                Printer::new(json.json).sync(&report)?;
                let Some(secs) = interval else {
                    // One pass: every bundle was tried and reported above;
                    // a failed one must still fail the command for scripts.
                    if let Some((source, reason)) = report.failed.first() {
                        eprintln!(
                            "error[sync_failed]: {} of {} bundle(s) failed; first: {source}: {reason}",
                            report.failed.len(),
                            report.failed.len() + report.loaded.len() + report.skipped.len()
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    break;
                };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
        DatasetCommand::Migrations(MigrationsArgs { id, json, apply }) => match (apply, id) {
            (Some(MigrationsCommand::Apply { id, actor, json }), _) => {
                let applied = app
                    .apply_migrations(&Actor::operator(actor.actor), &DatasetId(id))
                    .await?;
                Printer::new(json.json).applied_migrations(&applied)?;
            }
            (None, Some(id)) => {
                let suggestions = app
                    .migrations(&Actor::operator("operator"), &DatasetId(id))
                    .await?;
                Printer::new(json.json).migrations(&suggestions)?;
            }
            (None, None) => bail!("give a dataset id, or `apply ID --actor NAME`"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

async fn taxonomy(app: &App, command: TaxonomyCommand) -> anyhow::Result<ExitCode> {
    let actor = Actor::operator("operator");
    match command {
        TaxonomyCommand::Tactics { domain, json } => {
            let list = app.tactics(&actor, parse_domain(&domain)?).await?;
            Printer::new(json.json).tactics(&list)?;
        }
        TaxonomyCommand::Techniques {
            domain,
            tactic,
            platform,
            status,
            no_subtechniques,
            json,
        } => {
            let status = match status.to_ascii_lowercase().as_str() {
                "live" => StatusFilter::Live,
                "deprecated" => StatusFilter::Deprecated,
                "revoked" => StatusFilter::Revoked,
                "all" => StatusFilter::All,
                other => {
                    return Err(invalid_arg(
                        "status",
                        format!(
                            "unknown status `{other}` (expected live, deprecated, revoked or all)"
                        ),
                    ));
                }
            };
            let filter = TechniqueFilter {
                tactic,
                platform,
                status,
                exclude_subtechniques: no_subtechniques,
            };
            let domain = parse_domain(&domain)?;
            // The CLI prints everything: walk the pages.
            let mut page = PageRequest {
                cursor: None,
                limit: Some(PageRequest::MAX_LIMIT),
            };
            let mut techniques = Vec::new();
            loop {
                let answer = app.techniques(&actor, domain, &filter, &page).await?;
                techniques.extend(answer.page.items);
                match answer.page.next_cursor {
                    Some(cursor) => page.cursor = Some(cursor),
                    None => break,
                }
            }
            Printer::new(json.json).techniques(&techniques)?;
        }
        TaxonomyCommand::Technique { id, domain, json } => {
            let detail = app.technique(&actor, parse_domain(&domain)?, &id).await?;
            Printer::new(json.json).technique(&detail)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a database that stopped answering in the middle of a
    /// command printed the driver's words (`pool timed out ...`) without
    /// saying which database.
    #[test]
    fn a_database_that_stopped_answering_is_named_without_its_password() {
        let error = anyhow::Error::from(ServiceError::Store(store::StoreError::Unavailable {
            context: "listing alerts".into(),
            reason: "pool timed out while waiting for an open connection".into(),
        }));
        assert_eq!(
            one_line(&error, "postgres://me:secret@db.example/nexus"),
            "error[database_unavailable]: the database `postgres://me:***@db.example/nexus` \
             stopped answering while listing alerts (pool timed out while waiting for an open \
             connection); check that it is running and reachable, then try again"
        );
    }
}
