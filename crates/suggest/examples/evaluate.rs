//! Prints the evaluation report of a release as JSON, for tuning and for the
//! figures in the crate docs:
//! `cargo run --release -p suggest --example evaluate -- [BUNDLE] [CONFIG_JSON]`.
//! The bundle defaults to Enterprise 18.1 in the shared folder; the optional
//! second argument is a JSON object overriding `SuggesterConfig` fields.

use std::path::PathBuf;

use suggest::{SuggesterConfig, evaluate};
use taxonomy::parse::{LoadHints, parse};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let mut args = std::env::args().skip(1);
    let bundle = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("attack/enterprise-attack-18.1.json.gz"));
    let config: SuggesterConfig = match args.next() {
        Some(json) => serde_json::from_str(&json)?,
        None => SuggesterConfig::default(),
    };
    config.validate()?;

    let bytes = std::fs::read(&bundle)?;
    let hints = LoadHints {
        file_name: bundle.file_name().map(|n| n.to_string_lossy().into_owned()),
        ..LoadHints::default()
    };
    let release = parse(&bytes, &hints)?;
    let report = evaluate(&release, &config);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
