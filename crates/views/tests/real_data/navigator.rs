//! Navigator layer export: validation, full matrix, golden file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use views::{
    IntensityFormula, LayerOptions, MatrixFilter, MatrixView, Provenance, ScoreBy, matrix,
    multi_layer, navigator_layer, validate_layer,
};

use crate::{day, enterprise_18_1, raw_techniques, row};

/// A small fixed view: a multi-tactic technique without tactic, a parent
/// and its sub-technique, one low-confidence AI row.
pub fn small_view() -> MatrixView {
    let mut ai = row(day(2), "credential-access", "T1003.001", 2);
    ai.source = mapping::Source::Ai;
    ai.band = mapping::Band::Low;
    ai.confidence_sum = 0.6;
    let rows = [
        row(day(1), "", "T1078", 3),
        row(day(1), "execution", "T1059", 1),
        row(day(2), "execution", "T1059.001", 4),
        ai,
    ];
    matrix(
        enterprise_18_1(),
        rows.iter(),
        &MatrixFilter {
            from: Some(day(1)),
            to: Some(day(8)),
            ..MatrixFilter::default()
        },
        &IntensityFormula::default(),
    )
}

/// Options with a fixed timestamp so the output is reproducible.
pub fn options(full_matrix: bool, score: ScoreBy) -> LayerOptions {
    LayerOptions {
        name: "acme activity".into(),
        description: "ATT&CK activity of acme, 2026-03-01 to 2026-03-08".into(),
        full_matrix,
        score,
        provenance: Provenance {
            org: "acme".into(),
            generated_at: "2026-03-08T00:00:00Z".into(),
            requested_by: Some("analyst@acme".into()),
        },
    }
}

#[test]
fn annotated_layer_validates_and_scores_every_cell() {
    let view = small_view();

    let layer = navigator_layer(&view, enterprise_18_1(), &options(false, ScoreBy::Count));

    assert_eq!(validate_layer(&layer), Ok(()));
    assert_eq!(layer["versions"]["layer"], "4.5");
    assert_eq!(layer["versions"]["attack"], "18");
    assert_eq!(layer["domain"], "enterprise-attack");
    let entries = layer["techniques"].as_array().expect("techniques");
    // T1078 has one entry per raw tactic, the three others one each.
    let expected = raw_techniques()["T1078"].len() + 3;
    assert_eq!(entries.len(), expected);
    assert!(entries.iter().all(|e| e["score"].is_number()));
    let t1059 = entries
        .iter()
        .find(|e| e["techniqueID"] == "T1059")
        .expect("T1059 entry");
    assert_eq!(t1059["showSubtechniques"], true);
    assert_eq!(layer["gradient"]["maxValue"], 4.0);
    let metadata: BTreeMap<&str, &str> = layer["metadata"]
        .as_array()
        .expect("metadata")
        .iter()
        .filter_map(|m| Some((m["name"].as_str()?, m["value"].as_str()?)))
        .collect();
    assert_eq!(metadata["org"], "acme");
    assert_eq!(metadata["attack_release"], "enterprise-attack 18.1");
    assert!(metadata["formula"].starts_with("intensity ="));
    // 3 + 1 + 4 + 2 mappings, the 2 AI ones low.
    assert_eq!(
        metadata["confidence"],
        "10 mappings, 2 in the low band (20.0%)"
    );
}

#[test]
fn full_matrix_layer_lists_every_live_technique_of_the_release() {
    let view = small_view();

    let layer = navigator_layer(&view, enterprise_18_1(), &options(true, ScoreBy::Intensity));

    assert_eq!(validate_layer(&layer), Ok(()));
    let entries = layer["techniques"].as_array().expect("techniques");
    let listed: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e["techniqueID"].as_str())
        .collect();
    let raw = raw_techniques();
    let live: BTreeSet<&str> = raw.keys().map(String::as_str).collect();
    assert_eq!(listed, live);
    assert_eq!(listed.len(), 216 + 475, "README reference counts");
    // One entry per (technique, tactic) pair of the raw kill-chain phases.
    let pairs: usize = raw.values().map(|phases| phases.len().max(1)).sum();
    assert_eq!(entries.len(), pairs);
    let scored = entries.iter().filter(|e| e.get("score").is_some()).count();
    assert_eq!(scored, view.cells.len());
}

#[test]
fn multi_layer_file_is_an_array_of_valid_layers() {
    let view = small_view();
    let release = enterprise_18_1();

    let file = multi_layer(vec![
        navigator_layer(&view, release, &options(false, ScoreBy::Count)),
        navigator_layer(&view, release, &options(false, ScoreBy::Intensity)),
    ]);

    let layers = file.as_array().expect("array");
    assert_eq!(layers.len(), 2);
    for layer in layers {
        assert_eq!(validate_layer(layer), Ok(()));
    }
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/small_layer.json")
}

/// The small view's annotated layer matches the reviewed golden file; set
/// `UPDATE_GOLDEN=1` to rewrite it after an intended change.
#[test]
fn small_layer_matches_golden_file() {
    let layer = navigator_layer(
        &small_view(),
        enterprise_18_1(),
        &options(false, ScoreBy::Count),
    );
    let text = serde_json::to_string_pretty(&layer).expect("serialize") + "\n";
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden");
    }

    let golden = std::fs::read_to_string(&path).expect("read golden");
    let golden: Value = serde_json::from_str(&golden).expect("golden is JSON");

    assert_eq!(layer, golden);
}

#[test]
fn an_ics_full_matrix_layer_validates_and_names_the_ics_domain() {
    let path = crate::shared().join("attack/ics-attack-18.1.json.gz");
    let bytes = std::fs::read(&path).expect("read ics 18.1");
    let hints = taxonomy::LoadHints {
        file_name: Some("ics-attack-18.1.json.gz".into()),
        ..taxonomy::LoadHints::default()
    };
    let ics = taxonomy::parse(&bytes, &hints).expect("parse ics 18.1");
    let rows = [row(day(1), "", "T0800", 2)];
    let view = matrix(
        &ics,
        rows.iter(),
        &MatrixFilter::default(),
        &IntensityFormula::default(),
    );

    let layer = navigator_layer(&view, &ics, &options(true, ScoreBy::Count));

    assert_eq!(validate_layer(&layer), Ok(()));
    assert_eq!(layer["domain"], "ics-attack");
    assert_eq!(view.technique_count("T0800"), 2);
    assert!(!view.cells.is_empty());
}
