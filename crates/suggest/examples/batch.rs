//! Reads JSON lines of `SuggestInput` from stdin and writes one JSON line of
//! suggestions per input line, in order (the shape of `suggest batch`):
//! `cargo run --release -p suggest --example batch -- [BUNDLE] < inputs.jsonl`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use suggest::{SuggestInput, Suggester, SuggesterConfig};
use taxonomy::parse::{LoadHints, parse};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = std::env::var_os("NEXUS_ATTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let bundle = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| shared.join("attack/enterprise-attack-18.1.json.gz"));
    let bytes = std::fs::read(&bundle)?;
    let hints = LoadHints {
        file_name: bundle.file_name().map(|n| n.to_string_lossy().into_owned()),
        ..LoadHints::default()
    };
    let release = parse(&bytes, &hints)?;
    let suggester = Suggester::build(&release, &SuggesterConfig::default());

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let input: SuggestInput = serde_json::from_str(&line?)?;
        let suggestions = suggester.suggest(&input);
        writeln!(out, "{}", serde_json::json!({ "suggestions": suggestions }))?;
    }
    Ok(())
}
