//! The Sigma regression alerts mapped with the 2026-01-01 pack.

use std::collections::BTreeSet;
use std::io::BufReader;

use mapping::alert::{AlertFormat, Severity, read_ndjson};
use mapping::rules::RuleSet;
use mapping::{Mapper, Source, Subject};

use crate::{enterprise_18_1, first_pack, raw_rules, shared};

fn alerts_file() -> std::path::PathBuf {
    shared().join("alerts/sigma-regression-alerts.ndjson")
}

#[test]
fn every_line_decodes_as_ocsf_with_its_analytic_uid() {
    let text = std::fs::read_to_string(alerts_file()).unwrap();
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    let decoded: Vec<_> = read_ndjson(BufReader::new(text.as_bytes())).collect();
    assert_eq!(decoded.len(), lines);
    for (i, line) in decoded.iter().enumerate() {
        assert_eq!(line.line, i + 1);
        let alert = line.result.as_ref().unwrap();
        assert_eq!(alert.format, AlertFormat::Ocsf);
        assert!(!alert.source_uid_derived);
        let raw: serde_json::Value = serde_json::from_str(text.lines().nth(i).unwrap()).unwrap();
        assert_eq!(
            alert.analytic_uid.as_deref(),
            raw["finding_info"]["analytic"]["uid"].as_str()
        );
        assert_eq!(
            alert.source_uid,
            raw["finding_info"]["uid"].as_str().unwrap()
        );
        assert_eq!(alert.host.as_deref(), raw["device"]["hostname"].as_str());
        let word = serde_json::to_value(alert.severity).unwrap();
        let raw_word = raw["severity"].as_str().unwrap().to_lowercase();
        assert_eq!(word.as_str(), Some(raw_word.as_str()));
        assert_ne!(alert.severity, Severity::Unknown);
        assert!(
            alert.declared.is_empty(),
            "the regression alerts carry no ATT&CK context"
        );
    }
}

#[test]
fn canonical_mapping_equals_the_rule_technique_tags() {
    let raw = raw_rules("sigma-rules-c5e6d0ecd.tar.gz");
    let mapper = Mapper::new(
        enterprise_18_1(),
        RuleSet::new(first_pack().mapping_rules.clone()),
        Some("ds-test".into()),
    );
    let text = std::fs::read_to_string(alerts_file()).unwrap();

    let mut unmapped = 0;
    let mut expected_unmapped = 0;
    for line in read_ndjson(BufReader::new(text.as_bytes())) {
        let alert = line.result.unwrap();
        let uid = alert.analytic_uid.clone().unwrap();
        let expected = raw[&uid].technique_ids();
        if expected.is_empty() {
            expected_unmapped += 1;
        }

        let subject = Subject::alert(alert.source_uid.clone());
        let (mapping, set) = mapper.map(&subject, &alert, &[]);
        let got: BTreeSet<String> = set.techniques().iter().map(|t| t.to_string()).collect();
        assert_eq!(got, expected, "alert {} (rule {uid})", alert.source_uid);
        if set.is_unmapped() {
            unmapped += 1;
            assert!(mapping.candidates.is_empty());
            assert_eq!(set.decided_by, None);
        } else {
            assert_eq!(set.decided_by, Some(Source::Rule));
            for e in &set.entries {
                assert_eq!(e.source, Source::Rule);
                assert!(e.evidence_linked);
                assert!(!e.candidates.is_empty());
            }
            for c in &mapping.candidates {
                assert_eq!(c.rule_id.as_deref(), Some(format!("sigma:{uid}").as_str()));
                assert_eq!(c.release, "18.1");
                assert_eq!(c.evidence[0].field, "alert.analytic_uid");
                assert_eq!(c.evidence[0].value, uid);
                assert_eq!(c.evidence[0].matched, uid);
            }
        }
    }
    assert_eq!(unmapped, expected_unmapped);
    assert_eq!(
        expected_unmapped, 15,
        "15 regression alerts come from untagged rules"
    );
}
