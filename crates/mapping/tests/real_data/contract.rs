//! The JSON shape of an alert's mapping output: a golden file reviewed by
//! eye, so that renaming or dropping a field fails here before it breaks a
//! consumer. Regenerate with `UPDATE_GOLDEN=1 cargo test -p mapping` and
//! review the diff.

use mapping::alert::decode_alert;
use mapping::rules::{RuleSet, parse_rule};
use mapping::{Mapper, Subject};
use serde_json::json;

use crate::enterprise_18_1;

#[test]
fn alert_mapping_output_matches_the_golden_file() {
    let release = enterprise_18_1();
    let rule = parse_rule(
        "{id: lsass-dump, version: 2, title: LSASS dump, author: det-eng, \
         rationale: procdump of lsass is credential dumping, evidence_pattern: cmd_line has lsass, \
         effective_date: 2026-01-01, confidence: 0.85, \
         match: {field: process.cmd_line, contains: lsass}, \
         techniques: [{id: T1003.001, tactic: credential-access}]}",
        release,
    )
    .unwrap();
    let mapper = Mapper::new(release, RuleSet::new([rule]), Some("ds-18.1".into()));
    let fixture = include_str!("../fixtures/ocsf_attacks.json");
    let alert = decode_alert(&serde_json::from_str(fixture).unwrap()).unwrap();
    let (mapping, canonical) = mapper.map(&Subject::alert("alert-1"), &alert, &[]);
    let output = json!({
        "contract": mapping::MAPPING_CONTRACT_VERSION,
        "candidates": mapping.candidates,
        "problems": mapping.problems,
        "canonical": canonical,
    });
    let text = serde_json::to_string_pretty(&output).unwrap() + "\n";

    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/alert_mapping.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).expect("golden file exists");
    assert_eq!(
        text, golden,
        "mapping output changed; review and regenerate"
    );
}
