//! `nexus-attack suggest`: AI-assisted technique suggestions (issue 5).
//!
//! The suggester comes from the active dataset of a domain in the database,
//! or, with `--bundle FILE`, straight from a release file without any
//! database. `suggest text`, `suggest alert` and `suggest incident` also ask
//! the external provider when `NEXUS_ATTACK_AI_URL` is set (see
//! `suggest::provider`). `suggest alert` and `suggest incident` read a
//! stored alert or incident of an org; nothing is stored.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};
use service::{Actor, App, AppConfig, MAX_SUGGESTIONS};
use suggest::{
    CapGap, ExternalProvider, ProviderConfig, SuggestInput, Suggester, SuggesterConfig, Suggestion,
};
use taxonomy::Domain;

/// Most bytes read from stdin by `suggest text`; the suggester itself reads
/// only the first 32 KiB, the rest is drained so a pipe does not break.
const MAX_STDIN_BYTES: u64 = 64 * 1024 * 1024;

/// Longest line `suggest batch` parses; longer lines get an error line.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// `suggest` subcommands.
#[derive(Debug, Subcommand)]
pub enum SuggestCommand {
    /// Suggest techniques for text read from stdin.
    Text {
        #[command(flatten)]
        from: SuggesterSource,
        /// How many suggestions (1 to 10).
        #[arg(long, default_value_t = MAX_SUGGESTIONS)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suggest for each JSON line of FILE; one JSON line out per line in.
    ///
    /// Each line is an object with a `text` field and optional `title`,
    /// `description`, `command_line`, `process_name`, `parent_process`,
    /// `event_id`, `registry_path`, `analyst_notes`. A line that cannot be
    /// read answers `{"error": {"code", "line", "message"}}` in its place.
    Batch {
        /// JSON lines file, or `-` for stdin.
        file: PathBuf,
        #[command(flatten)]
        from: SuggesterSource,
        /// Output is always JSON lines; accepted for symmetry.
        #[arg(long)]
        json: bool,
    },
    /// Suggest techniques for a stored alert (its title, rule name and
    /// process, registry and event fields).
    Alert {
        /// Alert id, or the alert's own id in its source.
        id: String,
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Suggest techniques for a stored incident (its title, the text and
    /// fields of its alerts, its evidence references).
    Incident {
        /// Incident id.
        id: String,
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// Evaluate the suggester on the release's held-out procedure examples.
    Evaluate {
        #[command(flatten)]
        from: SuggesterSource,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The org of a stored alert or incident and the output options.
#[derive(Debug, Args)]
pub struct SubjectArgs {
    /// Org name or id.
    #[arg(long)]
    org: String,
    /// How many suggestions (1 to 10).
    #[arg(long, default_value_t = MAX_SUGGESTIONS)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where the suggester comes from.
#[derive(Debug, Args)]
pub struct SuggesterSource {
    /// Domain whose active dataset to use.
    #[arg(long, default_value = "enterprise-attack")]
    domain: String,
    /// Build from this release file (STIX, gzip accepted) instead of the
    /// database's active dataset.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
}

/// A ready suggester and where it came from.
struct Loaded {
    suggester: Suggester,
    /// `enterprise-attack 18.1`, plus the dataset id when from the database.
    source: Value,
}

/// The suggester for a command: from the bundle, or from the database.
enum Backing {
    Bundle(Box<Loaded>),
    Database {
        // Boxed: the app's handles make it the far larger variant.
        app: Box<App>,
        actor: Actor,
        domain: Domain,
    },
}

impl Backing {
    async fn open(database: &str, from: &SuggesterSource) -> anyhow::Result<Self> {
        let domain: Domain = from.domain.parse()?;
        let Some(path) = &from.bundle else {
            let app = App::connect(AppConfig::new(database))
                .await
                .context("cannot open the database")?;
            return Ok(Backing::Database {
                app: Box::new(app),
                actor: Actor::operator("cli"),
                domain,
            });
        };
        let release = read_release(path, domain)?;
        let source = bundle_source(&release, path);
        let suggester = tokio::task::spawn_blocking(move || {
            Suggester::build(&release, &SuggesterConfig::default())
        })
        .await
        .context("the suggester build stopped")?;
        Ok(Backing::Bundle(Box::new(Loaded { suggester, source })))
    }
}

/// The `source` of an answer built from a bundle file.
fn bundle_source(release: &taxonomy::Release, path: &Path) -> Value {
    json!({
        "domain": release.domain,
        "release": release.version,
        "bundle": path.display().to_string(),
    })
}

/// Parses a release file; the file name gives the identity when the bundle
/// does not, else `domain` is assumed.
fn read_release(path: &Path, domain: Domain) -> anyhow::Result<taxonomy::Release> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let hints = taxonomy::LoadHints {
        file_name: file_name.clone(),
        release: None,
        domain: None,
    };
    match taxonomy::parse(&bytes, &hints) {
        Ok(release) => Ok(release),
        // Neither the bundle nor the file name named the domain: assume the
        // one asked for (its release version stays unknown).
        Err(_) => taxonomy::parse(
            &bytes,
            &taxonomy::LoadHints {
                file_name,
                release: Some("unknown".into()),
                domain: Some(domain),
            },
        )
        .with_context(|| format!("cannot parse {}", path.display())),
    }
}

/// Sets the external provider of `app` from `NEXUS_ATTACK_AI_*` (for
/// `serve`); leaves it off when `NEXUS_ATTACK_AI_URL` is not set.
pub fn configure_provider(app: &App) -> anyhow::Result<()> {
    if let Some(config) = ProviderConfig::from_env()? {
        app.set_ai_provider(Some(ExternalProvider::new(config)?));
    }
    Ok(())
}

/// Runs one `suggest` subcommand.
pub async fn run(database: &str, command: SuggestCommand) -> anyhow::Result<ExitCode> {
    match command {
        SuggestCommand::Text { from, limit, json } => text(database, &from, limit, json).await,
        SuggestCommand::Batch { file, from, .. } => batch(database, &from, &file).await,
        SuggestCommand::Alert { id, subject } => stored(database, "alert", &id, &subject).await,
        SuggestCommand::Incident { id, subject } => {
            stored(database, "incident", &id, &subject).await
        }
        SuggestCommand::Evaluate { from, json } => evaluate(database, &from, json).await,
    }
}

/// What `suggest alert|incident --json` prints.
#[derive(Debug, Serialize)]
struct SubjectAnswer {
    subject: Value,
    source: Value,
    model_version: String,
    suggestions: Vec<Suggestion>,
    alerts_read: usize,
    alerts_unread: usize,
    evidence_read: usize,
    input_truncated: bool,
    known_terms: usize,
    cap_gap: CapGap,
    provider: Option<Value>,
}

/// `suggest alert ID` (`kind = "alert"`) and `suggest incident ID`.
async fn stored(
    database: &str,
    kind: &str,
    id: &str,
    args: &SubjectArgs,
) -> anyhow::Result<ExitCode> {
    if !(1..=MAX_SUGGESTIONS).contains(&args.limit) {
        bail!(
            "--limit must be from 1 to {MAX_SUGGESTIONS}, got {}",
            args.limit
        );
    }
    let app = App::connect(AppConfig::new(database))
        .await
        .context("cannot open the database")?;
    configure_provider(&app)?;
    let actor = Actor::operator("cli");

    let found = if kind == "alert" {
        app.suggest_for_stored_alert(&actor, &args.org, id, Some(args.limit))
            .await?
    } else {
        app.suggest_for_incident(&actor, &args.org, id, Some(args.limit))
            .await?
    };

    let list = found.list;
    let answer = SubjectAnswer {
        subject: json!({ "kind": found.subject, "id": found.id }),
        source: serde_json::to_value(&list.dataset)?,
        model_version: list.model_version,
        suggestions: list.suggestions,
        alerts_read: found.alerts_read,
        alerts_unread: found.alerts_unread,
        evidence_read: found.evidence_read,
        input_truncated: list.input_truncated,
        known_terms: list.known_terms,
        cap_gap: list.cap_gap,
        provider: list.provider.map(serde_json::to_value).transpose()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!(
            "{kind} {}: {} alert(s) read{}",
            answer.subject["id"].as_str().unwrap_or(id),
            answer.alerts_read,
            if answer.alerts_unread > 0 {
                format!(", {} left unread (input full)", answer.alerts_unread)
            } else {
                String::new()
            }
        );
        print_rows(&answer.suggestions, answer.input_truncated);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `suggest text --json` prints.
#[derive(Debug, Serialize)]
struct TextAnswer {
    source: Value,
    model_version: String,
    suggestions: Vec<Suggestion>,
    input_truncated: bool,
    known_terms: usize,
    cap_gap: CapGap,
    provider: Option<Value>,
}

async fn text(
    database: &str,
    from: &SuggesterSource,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !(1..=MAX_SUGGESTIONS).contains(&limit) {
        bail!("--limit must be from 1 to {MAX_SUGGESTIONS}, got {limit}");
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES)
        .read_to_end(&mut bytes)
        .context("cannot read stdin")?;
    let input = SuggestInput::from_bytes(&bytes);
    let provider = match ProviderConfig::from_env()? {
        Some(config) => Some(ExternalProvider::new(config)?),
        None => None,
    };

    let answer = match Backing::open(database, from).await? {
        Backing::Bundle(loaded) => {
            let outcome = loaded.suggester.suggest_with_outcome(&input);
            let (mut suggestions, provider) = match provider {
                Some(p) => {
                    let o = p.rerank(&input, outcome.suggestions.clone()).await;
                    let report = serde_json::to_value(service::ProviderReport::from(&o))?;
                    (o.suggestions, Some(report))
                }
                None => (outcome.suggestions.clone(), None),
            };
            suggestions.truncate(limit);
            TextAnswer {
                source: loaded.source.clone(),
                model_version: loaded.suggester.model_version().to_string(),
                cap_gap: suggest::cap_gap(&suggestions),
                suggestions,
                input_truncated: outcome.input_truncated,
                known_terms: outcome.known_terms,
                provider,
            }
        }
        Backing::Database { app, actor, domain } => {
            app.set_ai_provider(provider);
            let list = app
                .suggest_text(&actor, domain, &input, Some(limit))
                .await?;
            TextAnswer {
                source: serde_json::to_value(&list.dataset)?,
                model_version: list.model_version,
                cap_gap: list.cap_gap,
                suggestions: list.suggestions,
                input_truncated: list.input_truncated,
                known_terms: list.known_terms,
                provider: list.provider.map(serde_json::to_value).transpose()?,
            }
        }
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print_table(&answer);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(answer: &TextAnswer) {
    print_rows(&answer.suggestions, answer.input_truncated);
}

/// The suggestions as a table, best first.
fn print_rows(suggestions: &[Suggestion], input_truncated: bool) {
    if suggestions.is_empty() {
        println!("no suggestion: the text has no term the model knows");
        return;
    }
    println!(
        "{:<4} {:<11} {:>10} {:<7} {:<6} {:<40} evidence",
        "rank", "technique", "confidence", "band", "capped", "name"
    );
    for (i, s) in suggestions.iter().enumerate() {
        let terms: Vec<&str> = s
            .evidence
            .iter()
            .flat_map(|e| e.input_terms.iter().map(String::as_str))
            .take(5)
            .collect();
        let band = serde_json::to_value(s.band)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let name: String = s.name.chars().take(40).collect();
        println!(
            "{:<4} {:<11} {:>10.2} {:<7} {:<6} {:<40} {}",
            i + 1,
            s.technique,
            s.confidence,
            band,
            if s.capped { "yes" } else { "no" },
            name,
            terms.join(", ")
        );
    }
    if input_truncated {
        println!("(only the beginning of the input was read)");
    }
}

/// One line of a batch: the input, or why it cannot be read.
fn batch_input(line: &[u8], number: usize) -> Result<SuggestInput, Value> {
    let error = |code: &str, message: String| json!({ "error": { "code": code, "line": number, "message": message } });
    if line.len() > MAX_LINE_BYTES {
        return Err(error(
            "line_too_long",
            format!("line {number} exceeds {MAX_LINE_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(line)
        .map_err(|e| error("invalid_utf8", format!("line {number}: {e}")))?;
    if text.trim().is_empty() {
        return Err(error(
            "invalid_input",
            format!("line {number} is empty; expected a JSON object with a `text` field"),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| error("invalid_json", format!("line {number}: {e}")))?;
    if !value.is_object() {
        return Err(error(
            "invalid_input",
            format!("line {number} is not a JSON object"),
        ));
    }
    let input: SuggestInput = serde_json::from_value(value)
        .map_err(|e| error("invalid_input", format!("line {number}: {e}")))?;
    if input.fields().is_empty() {
        return Err(error(
            "invalid_input",
            format!("line {number} has no `text` (nor any other field) to suggest from"),
        ));
    }
    Ok(input)
}

async fn batch(database: &str, from: &SuggesterSource, file: &Path) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        ))
    };
    // Build (or find) the suggester once, before the first line.
    let backing = Backing::open(database, from).await?;
    let active = match &backing {
        Backing::Database { app, actor, domain } => {
            Some(app.active_suggester(actor, *domain).await?)
        }
        Backing::Bundle(_) => None,
    };
    let suggester: &Suggester = match (&backing, &active) {
        (Backing::Bundle(loaded), _) => &loaded.suggester,
        (_, Some(active)) => &active.suggester,
        (Backing::Database { .. }, None) => bail!("no suggester for the domain"),
    };

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, line) in reader.split(b'\n').enumerate() {
        let mut line = line.with_context(|| format!("cannot read {}", file.display()))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let answer = match batch_input(&line, i + 1) {
            Ok(input) => {
                let mut suggestions = suggester.suggest(&input);
                suggestions.truncate(MAX_SUGGESTIONS);
                json!({ "suggestions": suggestions })
            }
            Err(error) => error,
        };
        writeln!(out, "{answer}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn evaluate(database: &str, from: &SuggesterSource, json: bool) -> anyhow::Result<ExitCode> {
    let domain: Domain = from.domain.parse()?;
    let (mut answer, source) = match &from.bundle {
        // Evaluation trains its own model without the held-out examples:
        // no need to build the full suggester first.
        Some(path) => {
            let release = read_release(path, domain)?;
            let source = bundle_source(&release, path);
            let report = tokio::task::spawn_blocking(move || {
                suggest::evaluate(&release, &SuggesterConfig::default())
            })
            .await
            .context("the evaluation stopped")?;
            (serde_json::to_value(report)?, source)
        }
        None => {
            let app = App::connect(AppConfig::new(database))
                .await
                .context("cannot open the database")?;
            let evaluation = app
                .suggest_evaluate(&Actor::operator("cli"), domain)
                .await?;
            (
                serde_json::to_value(&evaluation.report)?,
                serde_json::to_value(&evaluation.dataset)?,
            )
        }
    };
    if let Some(object) = answer.as_object_mut() {
        object.insert("source".into(), source);
    }

    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        let f = |k: &str| answer[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "model {} ({})",
            answer["model_version"].as_str().unwrap_or(""),
            answer["release"].as_str().unwrap_or("")
        );
        println!(
            "held out {}, trained on {}",
            answer["held_out"], answer["trained_on"]
        );
        println!(
            "recall@1 {:.3}  recall@3 {:.3}  recall@5 {:.3}  parent recall@1 {:.3}",
            f("recall_at_1"),
            f("recall_at_3"),
            f("recall_at_5"),
            f("parent_recall_at_1")
        );
        println!(
            "ECE {:.3} (10 bins)  capped share {:.3}",
            f("ece"),
            f("capped_share")
        );
    }
    Ok(ExitCode::SUCCESS)
}
