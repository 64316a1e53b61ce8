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

/// `demo`: a populated matrix in one command.
#[derive(Debug, Args)]
pub struct DemoCommand {
    /// The shared data folder (attack/, sigma/, alerts/).
    #[arg(long, env = "NEXUS_ATTACK_SHARED", default_value = "../shared")]
    shared: PathBuf,
    /// Address to serve the UI and the API on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Load and ingest, print the tokens, but do not serve.
    #[arg(long)]
    no_serve: bool,
}

/// The demo's tenants, each seeing its own slice of the shared feed.
const DEMO_ORGS: [&str; 3] = ["acme", "globex", "initech"];

/// Weeks the demo feed is spread over, ending today.
const DEMO_WEEKS: u32 = 4;

/// The database the demo uses: the one given with `--database` (flag or
/// environment), else a fresh SQLite file in a new temporary folder, so a
/// demo never writes into an existing database by surprise.
pub fn demo_database(given: &str, explicit: bool) -> anyhow::Result<String> {
    if explicit {
        return Ok(given.to_string());
    }
    let dir = std::env::temp_dir().join(format!(
        "nexus-attack-demo-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("demo.db").display()))
}

/// The shared alerts rewritten for one org and week: new uids (so each
/// copy is its own alert) and times moved into that week, a different
/// day per alert; every third alert of an org's feed is left out so the
/// orgs' matrices differ.
fn demo_feed(lines: &[serde_json::Value], org_index: usize, today: NaiveDate) -> String {
    let mut out = String::new();
    for week in 0..DEMO_WEEKS {
        for (i, alert) in lines.iter().enumerate() {
            if (i + org_index).is_multiple_of(3) && week % 2 == 1 {
                continue;
            }
            let mut alert = alert.clone();
            let uid = alert["finding_info"]["uid"].as_str().unwrap_or("alert");
            let uid = format!("{uid}-{}-w{week}", DEMO_ORGS[org_index]);
            alert["finding_info"]["uid"] = json!(uid);
            if alert["metadata"].is_object() {
                alert["metadata"]["uid"] = json!(uid);
            }
            let back = i64::from(week * 7) + ((i + org_index) % 7) as i64;
            let day = today - chrono::Duration::days(back);
            let time = alert["time_dt"]
                .as_str()
                .and_then(|t| t.get(10..))
                .unwrap_or("T12:00:00Z")
                .to_string();
            alert["time_dt"] = json!(format!("{}{time}", day.format("%Y-%m-%d")));
            out.push_str(&alert.to_string());
            out.push('\n');
        }
    }
    out
}

/// Runs `demo` on an opened app.
pub async fn demo(app: &App, command: DemoCommand) -> anyhow::Result<ExitCode> {
    let shared = command.shared;
    let release = shared.join("attack/enterprise-attack-18.1.json.gz");
    let pack = shared.join("sigma/sigma-rules-c5e6d0ecd.tar.gz");
    let feed = shared.join("alerts/sigma-regression-alerts.ndjson");
    for file in [&release, &pack, &feed] {
        anyhow::ensure!(
            file.exists(),
            "{} is missing; point --shared at the shared data folder",
            file.display()
        );
    }

    // Four eyes: one steward loads, another approves and activates.
    let (loader, approver) = (steward("demo-steward-a"), steward("demo-steward-b"));
    if app
        .store()
        .active_dataset(Domain::Enterprise)
        .await?
        .is_none()
    {
        let dataset = app
            .load_dataset(
                &loader,
                &release.display().to_string(),
                &service::LoadOptions::default(),
            )
            .await?;
        app.validate_dataset(&loader, &dataset.id).await?;
        app.approve_dataset(&approver, &dataset.id).await?;
        app.activate_dataset(&approver, &dataset.id).await?;
    }

    let text = std::fs::read_to_string(&feed)
        .with_context(|| format!("cannot read {}", feed.display()))?;
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let today = chrono::Utc::now().date_naive();
    let operator = Actor::operator("demo");
    let mut tokens = Vec::new();
    for (index, name) in DEMO_ORGS.iter().enumerate() {
        let org = match app.org_by_name(&operator, name).await {
            Ok(org) => org,
            Err(_) => app.create_org(&operator, name).await?,
        };
        let admin = Actor {
            name: "demo".into(),
            org: Some(org.id.clone()),
            role: Role::PlatformAdmin,
        };
        app.import_sigma(&admin, name, &pack).await?;
        let lines = demo_feed(&alerts, index, today);
        let report = app
            .ingest_alerts(
                &admin,
                name,
                Box::new(std::io::Cursor::new(lines.into_bytes())),
            )
            .await?;
        let token = app
            .create_token(&operator, name, Role::Admin, Some("demo"))
            .await?;
        eprintln!(
            "{name}: {} alerts ingested ({} mapped)",
            report.ingested, report.mapped
        );
        tokens.push((name.to_string(), token.secret.expose().to_string()));
    }

    println!("demo tokens (org admin; paste one into the login form):");
    for (org, secret) in &tokens {
        println!("  {org}: {secret}");
    }
    if command.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    println!("serving the UI on http://{}/", command.addr);
    let config = server::ServerConfig {
        addr: command.addr,
        ..server::ServerConfig::default()
    };
    server::serve(app.clone(), config).await?;
    Ok(ExitCode::SUCCESS)
}

fn steward(name: &str) -> Actor {
    Actor {
        name: name.into(),
        org: None,
        role: Role::Steward,
    }
}

/// `matrix-bench`: generated rollups over many orgs and days, then the
/// 30-day per-org matrix measured through the HTTP API.
#[derive(Debug, Args)]
pub struct MatrixBenchCommand {
    /// The shared data folder, to load Enterprise 18.1 when no release is
    /// active.
    #[arg(long, env = "NEXUS_ATTACK_SHARED", default_value = "../shared")]
    shared: PathBuf,
    /// Orgs to generate.
    #[arg(long, default_value_t = 50)]
    orgs: usize,
    /// Days of activity per org, ending today.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Rollup rows per org and day (distinct technique, tactic, source,
    /// severity, connector, platform and band combinations).
    #[arg(long, default_value_t = 200)]
    rows_per_day: usize,
    /// Mappings each generated row stands for, at most (uniform from 1).
    #[arg(long, default_value_t = 20)]
    max_count: u64,
    /// Matrix requests to time, after one untimed request per org (the
    /// first request of an org reads its rows; it is timed apart).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Also write every generated mapping as one CSV line (org, ts, tactic,
    /// technique, source, severity, connector, platform, band, confidence)
    /// so that other engines can aggregate the same data
    /// (`bench/matrix/compare.py`).
    #[arg(long)]
    raw_csv: Option<PathBuf>,
    /// Also write the first org's 30-day matrix as the API returned it, to
    /// check other engines' answers against.
    #[arg(long)]
    view_json: Option<PathBuf>,
    /// Also store every generated mapping as an alert of its own with its
    /// canonical mapping (so the rollups count exactly these alerts), then
    /// time the first page of the drilldown behind each org's busiest
    /// 30-day cell, and check on the first org that its pages together
    /// list as many alerts as the cell counts.
    #[arg(long)]
    drilldown: bool,
    /// Drilldown first pages to time, round-robin over the orgs.
    #[arg(long, default_value_t = 500)]
    drilldown_requests: usize,
    /// Generate nothing: time the orgs `bench-000`, ... an earlier run left
    /// in the database (with the same `--orgs`), each with a new token.
    #[arg(long)]
    reuse: bool,
    /// Share of the generated rows that go to one technique (T1059.001,
    /// execution), as the busiest technique of a real feed does; 0 spreads
    /// rows evenly over every live technique.
    #[arg(long, default_value_t = 0.0)]
    hot_share: f64,
}

/// splitmix64: a small deterministic generator, so that two runs of the
/// benchmark generate the same data.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

async fn ensure_release(app: &App, shared: &Path) -> anyhow::Result<()> {
    if app
        .store()
        .active_dataset(Domain::Enterprise)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let release = shared.join("attack/enterprise-attack-18.1.json.gz");
    let (loader, approver) = (steward("bench-steward-a"), steward("bench-steward-b"));
    let dataset = app
        .load_dataset(
            &loader,
            &release.display().to_string(),
            &service::LoadOptions::default(),
        )
        .await?;
    app.validate_dataset(&loader, &dataset.id).await?;
    app.approve_dataset(&approver, &dataset.id).await?;
    app.activate_dataset(&approver, &dataset.id).await?;
    Ok(())
}

/// `(technique ID, tactic shortname)` for every tactic of every live
/// technique of Enterprise 18.1: a generated mapping names one of its
/// technique's tactics, as a Sigma rule's tactic tag does, so that engines
/// without the release can aggregate the same cells.
fn live_techniques(shared: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let file = shared.join("attack/enterprise-attack-18.1.json.gz");
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let hints = taxonomy::LoadHints {
        file_name: Some("enterprise-attack-18.1.json.gz".into()),
        release: Some("18.1".into()),
        domain: Some(Domain::Enterprise),
    };
    let release = taxonomy::parse(&bytes, &hints)?;
    Ok(release
        .techniques
        .iter()
        .filter(|t| t.status.is_live())
        .flat_map(|t| {
            t.tactics
                .iter()
                .map(|tactic| (t.id.clone(), tactic.clone()))
        })
        .collect())
}

/// One raw mapping per CSV line for `bench/matrix/compare.py`.
fn write_raw(
    out: &mut impl std::io::Write,
    org: &str,
    record: &store::RollupRecord,
    confidence: f64,
    mix: &mut Mix,
) -> std::io::Result<()> {
    for _ in 0..record.count {
        let second = mix.next() % 86_400;
        writeln!(
            out,
            "{org},{} {:02}:{:02}:{:02},{},{},{},{},{},{},{},{confidence}",
            record.day.format("%Y-%m-%d"),
            second / 3600,
            second / 60 % 60,
            second % 60,
            record.tactic,
            record.technique,
            record.source,
            record.severity,
            record.connector,
            record.platform,
            record.band,
        )?;
    }
    Ok(())
}

/// The stored severity weight of a generator's severity word (OCSF's scale,
/// as `mapping::Severity::weight` gives it at ingestion).
fn severity_weight(severity: &str) -> f64 {
    match severity {
        "low" => 2.0,
        "medium" => 3.0,
        "high" => 4.0,
        "critical" => 5.0,
        _ => 1.0,
    }
}

/// One stored alert per mapping a rollup row stands for, each with a
/// canonical set of that one mapping, so that the drilldown behind a cell
/// lists exactly the alerts the rollups count: `(serial, set)`, the serial
/// numbering the alert within the run.
fn row_alerts(
    org: &store::OrgId,
    record: &store::RollupRecord,
    confidence: f64,
    serial: &mut u64,
    mix: &mut Mix,
) -> Vec<(u64, store::CanonicalRecord)> {
    (0..record.count)
        .map(|_| {
            *serial += 1;
            let second = (mix.next() % 86_400) as i64;
            let at = record.day.and_time(chrono::NaiveTime::MIN).and_utc()
                + chrono::Duration::seconds(second);
            let alert_id = store::AlertId::generate();
            let entry = store::CanonicalEntryRecord {
                org_id: org.clone(),
                alert_id: alert_id.clone(),
                version: 1,
                technique: record.technique.clone(),
                tactic: Some(record.tactic.clone()),
                source: record.source.clone(),
                confidence,
                band: record.band.clone(),
                candidate_ids: "[]".into(),
                override_ids: "[]".into(),
                producers: "[]".into(),
                vendor_declared: false,
                evidence_linked: false,
                needs_review: false,
                domain: "enterprise-attack".into(),
                release: "18.1".into(),
                dataset_id: None,
                computed_at: at,
            };
            let set = store::CanonicalRecord {
                set: store::CanonicalSetRecord {
                    org_id: org.clone(),
                    alert_id,
                    version: 1,
                    decided_by: None,
                    flags: "[]".into(),
                    pending: "[]".into(),
                    entries: 1,
                    cause: "bench".into(),
                    domain: "enterprise-attack".into(),
                    release: "18.1".into(),
                    dataset_id: None,
                    computed_at: at,
                },
                entries: vec![entry],
            };
            (*serial, set)
        })
        .collect()
}

/// The alert behind a generated canonical set.
fn set_alert(
    set: &store::CanonicalRecord,
    record: &store::RollupRecord,
    serial: u64,
) -> store::AlertRecord {
    let at = set.set.computed_at;
    let raw = json!({"platform": record.platform}).to_string();
    store::AlertRecord {
        id: set.set.alert_id.clone(),
        org_id: set.set.org_id.clone(),
        source_uid: format!("bench-{serial}"),
        format: "native".into(),
        time: Some(at),
        received_at: at,
        title: format!("{} activity", record.technique),
        description: None,
        severity: record.severity.clone(),
        severity_weight: severity_weight(&record.severity),
        connector: Some(record.connector.clone()),
        product: None,
        analytic_uid: None,
        host: Some(format!("host-{}", serial % 500)),
        user: Some(format!("user-{}", serial % 200)),
        content_sha256: format!("{serial:064x}"),
        raw,
        normalized: "{}".into(),
        mapping_state: "mapped".into(),
        canonical_version: 1,
        stale: false,
        stale_reason: None,
        locked: false,
    }
}

/// The busiest cell of a matrix answer: `(tactic, technique, count)`.
fn busiest_cell(body: &[u8]) -> anyhow::Result<(String, String, u64)> {
    let view: serde_json::Value = serde_json::from_slice(body)?;
    let cells = view["data"]["cells"]
        .as_array()
        .context("the matrix answer has no cells")?;
    cells
        .iter()
        .filter_map(|c| {
            Some((
                c["tactic"].as_str()?.to_string(),
                c["technique"].as_str()?.to_string(),
                c["count"].as_u64()?,
            ))
        })
        .max_by_key(|(_, _, count)| *count)
        .context("the matrix answer has no cell")
}

/// The value at quantile `q` of sorted durations, in milliseconds.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs `matrix-bench`.
pub async fn matrix_bench(app: &App, command: MatrixBenchCommand) -> anyhow::Result<ExitCode> {
    ensure_release(app, &command.shared).await?;
    let release = live_techniques(&command.shared)?;

    // Generate: one transaction per org, rows spread over the days.
    let operator = Actor::operator("bench");
    let today = chrono::Utc::now().date_naive();
    let mut mix = Mix(42);
    let sources = ["rule", "rule", "rule", "ai", "manual"];
    let severities = ["informational", "low", "medium", "high", "critical"];
    let connectors = ["sysmon", "crowdstrike", "defender", "okta", "cloudtrail"];
    let platforms = ["Windows", "Linux", "macOS", ""];
    let bands = ["high", "high", "medium", "low"];
    let confidence_of = |band: &str| match band {
        "high" => 0.9,
        "medium" => 0.55,
        _ => 0.25,
    };
    let mut raw = match &command.raw_csv {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    // The raw lines and the alerts take their own generators so that the
    // rollups are the same with and without `--raw-csv` and `--drilldown`.
    let mut raw_mix = Mix(7);
    let mut alert_mix = Mix(11);
    let mut serial = 0u64;
    let hot = release
        .iter()
        .find(|(technique, tactic)| technique == "T1059.001" && tactic == "execution")
        .or(release.first())
        .cloned()
        .context("the release has no live technique")?;
    let started = std::time::Instant::now();
    let mut tokens = Vec::new();
    let mut mappings = 0u64;
    for o in 0..command.orgs {
        let name = format!("bench-{o:03}");
        let org = match app.org_by_name(&operator, &name).await {
            Ok(org) => org,
            Err(_) if command.reuse => {
                anyhow::bail!("--reuse: org {name} is not in the database; run without it first")
            }
            Err(_) => app.create_org(&operator, &name).await?,
        };
        if command.reuse {
            let token = app
                .create_token(&operator, &name, Role::Viewer, Some("bench"))
                .await?;
            tokens.push(token.secret.expose().to_string());
            continue;
        }
        let scope = store::OrgScope::new(org.id.clone());
        let mut tx = app.store().begin_in(&scope).await?;
        // Oldest day first: alert ids are time-ordered when made, so they
        // then follow the days as a live feed's do.
        for d in (0..command.days).rev() {
            let day = today - chrono::Duration::days(d);
            let mut deltas = Vec::with_capacity(command.rows_per_day);
            let mut sets = Vec::new();
            let mut alerts = Vec::new();
            for _ in 0..command.rows_per_day {
                // Drawn only when asked for, so that the default run
                // generates the same rows as before the option existed.
                let is_hot = command.hot_share > 0.0
                    && (mix.next() as f64 / u64::MAX as f64) < command.hot_share;
                let (technique, tactic) = if is_hot {
                    hot.clone()
                } else {
                    mix.pick(&release).clone()
                };
                let count = 1 + (mix.next() % command.max_count.max(1)) as i64;
                let band = *mix.pick(&bands);
                let confidence = confidence_of(band);
                mappings += count as u64;
                let record = store::RollupRecord {
                    day,
                    tactic,
                    technique,
                    source: mix.pick(&sources).to_string(),
                    severity: mix.pick(&severities).to_string(),
                    connector: mix.pick(&connectors).to_string(),
                    platform: mix.pick(&platforms).to_string(),
                    band: band.to_string(),
                    count,
                    alerts: count,
                    confidence_sum: count as f64 * confidence,
                };
                if let Some(out) = raw.as_mut() {
                    write_raw(out, &name, &record, confidence, &mut raw_mix)?;
                }
                if command.drilldown {
                    let made =
                        row_alerts(&org.id, &record, confidence, &mut serial, &mut alert_mix);
                    for (n, set) in made {
                        alerts.push(set_alert(&set, &record, n));
                        sets.push(set);
                    }
                }
                deltas.push(record);
            }
            store::rollups::apply_delta(&mut tx, &scope, deltas).await?;
            if command.drilldown {
                tx.insert_alerts(alerts).await?;
                tx.insert_canonical(sets).await?;
            }
        }
        tx.commit().await?;
        let token = app
            .create_token(&operator, &name, Role::Viewer, Some("bench"))
            .await?;
        tokens.push(token.secret.expose().to_string());
    }
    if let Some(mut out) = raw {
        std::io::Write::flush(&mut out)?;
    }
    if command.reuse {
        eprintln!("reusing {} generated orgs", command.orgs);
    } else {
        eprintln!(
            "generated {} orgs x {} days x {} rows ({mappings} mappings) in {:.1}s",
            command.orgs,
            command.days,
            command.rows_per_day,
            started.elapsed().as_secs_f64()
        );
    }

    // Serve on a loopback port of our own and time the 30-day matrix.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = server::ServerConfig {
        addr,
        rate_limit: None,
        ..server::ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve_on(
        listener,
        app.clone(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let from = (today - chrono::Duration::days(29)).format("%Y-%m-%d");
    let to = (today + chrono::Duration::days(1)).format("%Y-%m-%d");
    let base = format!("http://{addr}/api/v1/matrix");
    let url = format!("{base}?from={from}&to={to}");
    let get = |url: String, token: String| {
        let client = client.clone();
        async move {
            let start = std::time::Instant::now();
            let answer = client.get(&url).bearer_auth(token).send().await?;
            let status = answer.status();
            let body = answer.bytes().await?;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                status.is_success(),
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            anyhow::Ok((ms, body))
        }
    };
    // First request of each org: it reads and decodes the org's rows.
    let mut first = Vec::with_capacity(tokens.len());
    let mut cells = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let (ms, body) = get(url.clone(), token.clone()).await?;
        first.push(ms);
        if command.drilldown {
            cells.push(busiest_cell(&body)?);
        }
        if i == 0
            && let Some(path) = &command.view_json
        {
            std::fs::write(path, &body)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let mut timings = Vec::with_capacity(command.requests);
    for i in 0..command.requests {
        let (ms, _) = get(url.clone(), tokens[i % tokens.len()].clone()).await?;
        timings.push(ms);
    }

    // The drilldown behind each org's busiest cell of the same 30 days:
    // its first page (50 alerts), a first pass per org timed apart, then
    // round-robin.
    let mut drilldown = serde_json::Value::Null;
    if command.drilldown {
        let page_url = |(tactic, technique, _): &(String, String, u64), cursor: Option<&str>| {
            let mut u = format!(
                "{base}/drilldown?from={from}&to={to}&tactic={tactic}&technique={technique}"
            );
            if let Some(cursor) = cursor {
                u.push_str(&format!("&cursor={cursor}"));
            }
            u
        };
        let mut first_pages = Vec::with_capacity(tokens.len());
        for (token, cell) in tokens.iter().zip(&cells) {
            let (ms, _) = get(page_url(cell, None), token.clone()).await?;
            first_pages.push(ms);
        }
        let mut pages = Vec::with_capacity(command.drilldown_requests);
        for i in 0..command.drilldown_requests {
            let n = i % tokens.len();
            let (ms, _) = get(page_url(&cells[n], None), tokens[n].clone()).await?;
            pages.push(ms);
        }
        // The same cells over the first 30 generated days: pages come
        // newest alert first, so this read passes over every newer mapping
        // of the technique before it finds its page (the slowest range).
        let oldest_from = today - chrono::Duration::days(command.days - 1);
        let oldest_to = oldest_from + chrono::Duration::days(30);
        let oldest_url = |(tactic, technique, _): &(String, String, u64)| {
            format!(
                "{base}/drilldown?from={}&to={}&tactic={tactic}&technique={technique}",
                oldest_from.format("%Y-%m-%d"),
                oldest_to.format("%Y-%m-%d")
            )
        };
        let mut oldest = Vec::with_capacity(command.drilldown_requests);
        for i in 0..command.drilldown_requests {
            let n = i % tokens.len();
            let (ms, _) = get(oldest_url(&cells[n]), tokens[n].clone()).await?;
            oldest.push(ms);
        }

        // Every page of the first org's cell together lists as many
        // alerts as the cell counts (one mapping per generated alert).
        let (mut listed, mut page_count, mut cursor) = (0u64, 0u64, None::<String>);
        loop {
            let (_, body) = get(page_url(&cells[0], cursor.as_deref()), tokens[0].clone()).await?;
            let page: serde_json::Value = serde_json::from_slice(&body)?;
            listed += page["data"]["alerts"].as_array().map_or(0, Vec::len) as u64;
            page_count += 1;
            cursor = page["meta"]["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        anyhow::ensure!(
            listed == cells[0].2,
            "the drilldown of {} / {} listed {listed} alerts, the cell counts {}",
            cells[0].0,
            cells[0].1,
            cells[0].2
        );

        pages.sort_by(f64::total_cmp);
        first_pages.sort_by(f64::total_cmp);
        oldest.sort_by(f64::total_cmp);
        let busiest: Vec<u64> = cells.iter().map(|c| c.2).collect();
        drilldown = json!({
            "requests": pages.len(),
            "p50_ms": quantile(&pages, 0.50),
            "p95_ms": quantile(&pages, 0.95),
            "p99_ms": quantile(&pages, 0.99),
            "first_request_per_org": {
                "requests": first_pages.len(),
                "p50_ms": quantile(&first_pages, 0.50),
                "p95_ms": quantile(&first_pages, 0.95),
                "max_ms": first_pages.last(),
            },
            "oldest_30_days": {
                "from": oldest_from,
                "to": oldest_to,
                "p50_ms": quantile(&oldest, 0.50),
                "p95_ms": quantile(&oldest, 0.95),
                "p99_ms": quantile(&oldest, 0.99),
            },
            "busiest_cell_alerts": {
                "min": busiest.iter().min(),
                "max": busiest.iter().max(),
            },
            "check": {
                "tactic": cells[0].0,
                "technique": cells[0].1,
                "cell_count": cells[0].2,
                "alerts_listed": listed,
                "pages": page_count,
            },
        });
    }
    let _ = stop.send(());
    let _ = server.await;

    timings.sort_by(f64::total_cmp);
    first.sort_by(f64::total_cmp);
    let report = json!({
        "backend": format!("{:?}", app.store().backend()),
        "orgs": command.orgs,
        "days": command.days,
        "rollup_rows": command.orgs * command.days as usize * command.rows_per_day,
        "mappings": (!command.reuse).then_some(mappings),
        "hot_share": command.hot_share,
        "requests": command.requests,
        "p50_ms": quantile(&timings, 0.50),
        "p95_ms": quantile(&timings, 0.95),
        "p99_ms": quantile(&timings, 0.99),
        "first_request_per_org": {
            "requests": first.len(),
            "p50_ms": quantile(&first, 0.50),
            "p95_ms": quantile(&first, 0.95),
            "max_ms": first.last(),
        },
        "drilldown": drilldown,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
