//! Views on the real ATT&CK releases in the shared folder, fed with
//! synthetic rollup rows built here.
//!
//! Expected values come from the raw STIX JSON read directly with
//! serde_json (tactic order from the matrix object, kill-chain phases,
//! revoked-by relationships) or are counted by hand from the rows, never
//! from the code under test.

mod csv;
mod import;
mod matrix;
mod navigator;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::NaiveDate;
use mapping::{Band, Severity, Source};
use serde_json::Value;
use taxonomy::{LoadHints, Release};
use views::RollupRow;

/// The shared folder: `NEXUS_ATTACK_SHARED`, else `<workspace root>/../shared`.
pub fn shared() -> PathBuf {
    match std::env::var_os("NEXUS_ATTACK_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn read_bundle(version: &str) -> Vec<u8> {
    let path = shared().join(format!("attack/enterprise-attack-{version}.json.gz"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse(version: &str) -> Release {
    let hints = LoadHints {
        file_name: Some(format!("enterprise-attack-{version}.json.gz")),
        ..LoadHints::default()
    };
    taxonomy::parse(&read_bundle(version), &hints).expect("parse release")
}

/// Enterprise ATT&CK 18.1, parsed once.
pub fn enterprise_18_1() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| parse("18.1"))
}

/// Enterprise ATT&CK 16.1, parsed once.
pub fn enterprise_16_1() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| parse("16.1"))
}

/// The STIX objects of Enterprise 18.1, read without the taxonomy crate.
pub fn raw_18_1() -> &'static Vec<Value> {
    static RAW: OnceLock<Vec<Value>> = OnceLock::new();
    RAW.get_or_init(|| {
        let bytes = read_bundle("18.1");
        let mut json = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut json)
            .expect("gunzip 18.1");
        let bundle: Value = serde_json::from_str(&json).expect("18.1 is JSON");
        bundle["objects"].as_array().expect("objects").clone()
    })
}

/// The `mitre-attack` external ID of a STIX object.
pub fn external_id(object: &Value) -> Option<&str> {
    object["external_references"]
        .as_array()?
        .iter()
        .find(|r| r["source_name"] == "mitre-attack")?["external_id"]
        .as_str()
}

/// Neither revoked nor deprecated, by the raw flags.
pub fn raw_live(object: &Value) -> bool {
    object["revoked"] != Value::Bool(true) && object["x_mitre_deprecated"] != Value::Bool(true)
}

/// Live attack-patterns of the raw bundle by ATT&CK ID, with their
/// kill-chain phase names.
pub fn raw_techniques() -> HashMap<String, Vec<String>> {
    raw_18_1()
        .iter()
        .filter(|o| o["type"] == "attack-pattern" && raw_live(o))
        .filter_map(|o| {
            let phases = o["kill_chain_phases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["kill_chain_name"] == "mitre-attack")
                .filter_map(|p| p["phase_name"].as_str().map(str::to_string))
                .collect();
            Some((external_id(o)?.to_string(), phases))
        })
        .collect()
}

/// Tactic shortname -> ATT&CK ID, from the raw live tactic objects.
pub fn raw_tactic_ids() -> HashMap<String, String> {
    raw_18_1()
        .iter()
        .filter(|o| o["type"] == "x-mitre-tactic" && raw_live(o))
        .filter_map(|o| {
            Some((
                o["x_mitre_shortname"].as_str()?.to_string(),
                external_id(o)?.to_string(),
            ))
        })
        .collect()
}

/// A day of March 2026.
pub fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, n).expect("valid day")
}

/// A rule-sourced, high-band, high-severity sysmon row on Windows with
/// confidence 1 per mapping; tests change the fields they exercise.
pub fn row(day: NaiveDate, tactic: &str, technique: &str, count: u64) -> RollupRow {
    RollupRow {
        day,
        tactic: tactic.to_string(),
        technique: technique.to_string(),
        source: Source::Rule,
        severity: Severity::High,
        connector: "sysmon".to_string(),
        platform: Some("Windows".to_string()),
        band: Band::High,
        count,
        confidence_sum: count as f64,
    }
}
