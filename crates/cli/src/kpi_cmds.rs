//! `kpis`: the mapping KPIs of an org, as a table or JSON. Parses its
//! arguments, calls one use case and prints the answer.

use std::process::ExitCode;

use clap::Args;
use service::{Actor, App, Kpi, KpiDimension, KpiRequest};

/// `nexus-attack kpis` arguments.
#[derive(Debug, Clone, Args)]
pub struct KpisCommand {
    /// Org name or id.
    #[arg(long)]
    org: String,
    /// First day counted (YYYY-MM-DD or RFC 3339); default: everything.
    #[arg(long)]
    from: Option<String>,
    /// First day no longer counted; default: open.
    #[arg(long)]
    to: Option<String>,
    /// Break the KPIs down by source, severity or connector.
    #[arg(long)]
    by: Option<String>,
    /// Who asks (recorded in the audit log on refusal).
    #[arg(long, default_value = "operator")]
    actor: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `kpis`. The matrix query p95 is measured by `serve` only, so it is
/// empty here.
pub async fn kpis(app: &App, command: KpisCommand) -> anyhow::Result<ExitCode> {
    let by = command
        .by
        .as_deref()
        .map(str::parse::<KpiDimension>)
        .transpose()?;
    let request = KpiRequest {
        from: command.from,
        to: command.to,
        by,
    };

    let report = app
        .kpis(
            &Actor::operator(command.actor),
            &command.org,
            &request,
            None,
        )
        .await?;

    if command.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("KPIs of {}", report.org);
    print_table(&report.kpis);
    for segment in &report.segments {
        let by = report.by.map_or("", |b| b.as_str());
        println!("\n{by} = {}", segment.key);
        print_table(&segment.kpis);
    }
    Ok(ExitCode::SUCCESS)
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn print_table(kpis: &[Kpi]) {
    println!(
        "{:<30} {:>14} {:>14} {:>14}  unit",
        "kpi", "value", "numerator", "denominator"
    );
    for k in kpis {
        println!(
            "{:<30} {:>14} {:>14} {:>14}  {}",
            k.name,
            number(k.value),
            number(k.numerator),
            number(k.denominator),
            k.unit
        );
    }
}
